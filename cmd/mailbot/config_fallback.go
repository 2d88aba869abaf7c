package main

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// validateFallback checks an account's fallback list: every name is
// another configured account, listed once. Only the listed accounts are
// tried, so a fallback that has fallbacks of its own is fine (they are not
// followed) and there are no cycles to reject.
func (c *Config) validateFallback(name string, a *AccountConfig) []Problem {
	var probs []Problem
	seen := map[string]bool{}
	for i, f := range a.Fallback {
		p := Problem{File: c.path, Line: c.fallbackLine(name, i), Key: "accounts." + name + ".fallback"}
		switch _, ok := c.Accounts[f]; {
		case f == name:
			p.Msg = fmt.Sprintf("%q is this account; list other accounts", f)
		case seen[f]:
			p.Msg = fmt.Sprintf("%q is listed twice", f)
		case !ok:
			p.Msg = fmt.Sprintf("no account named %q under accounts", f)
		default:
			seen[f] = true
			continue
		}
		seen[f] = true
		probs = append(probs, p)
	}
	return probs
}

// fallbackLine returns the line of item i of accounts.<name>.fallback, or
// of the key when the item cannot be found.
func (c *Config) fallbackLine(name string, i int) int {
	line := lineOf(c.root, "accounts", name, "fallback")
	n := c.root
	if n == nil {
		return line
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, key := range []string{"accounts", name, "fallback"} {
		n = mappingValue(n, key)
		if n == nil {
			return line
		}
	}
	if n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i].Line
	}
	return line
}

// mappingValue returns the value of key in mapping n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for j := 0; j+1 < len(n.Content); j += 2 {
		if n.Content[j].Value == key {
			return n.Content[j+1]
		}
	}
	return nil
}
