package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/mailbot/mailbot/message"
)

// DKIMConfig is an account's dkim section: mailbot DKIM-signs every
// message sent with the account (c:sendmail, c:send_message and c:data on
// a client connected with it, mail.send through the outbox, mailbot send
// --account), for relays that do not sign themselves.
type DKIMConfig struct {
	// Domain is the signing domain (d=); Selector names the key under
	// it: the public key is the TXT record at
	// <selector>._domainkey.<domain>.
	Domain   string `yaml:"domain"`
	Selector string `yaml:"selector"`
	// PrivateKeyFile holds the private key: PEM (PKCS #1 or PKCS #8), RSA
	// of at least 1024 bits (2048 advised) or Ed25519, or an Ed25519 key
	// as base64. Relative to the config file. Scripts cannot read it.
	PrivateKeyFile string `yaml:"private_key_file" secret:"file"`
	// Headers are the header fields to sign; empty means
	// message.DefaultDKIMHeaders. It must include From.
	Headers []string `yaml:"headers"`
}

// dnsNameRE matches a DNS name of letters, digits, hyphens and
// underscores, without a trailing dot.
var dnsNameRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$`)

// validateDKIM checks an account's dkim section, loading the key, so that
// check (and every command that loads the config) reports a key that
// cannot sign.
func (c *Config) validateDKIM(name string, a *AccountConfig) []Problem {
	var probs []Problem
	add := func(msg string, key ...string) {
		probs = append(probs, c.problem(msg, append([]string{"accounts", name, "dkim"}, key...)...))
	}
	d := a.DKIM
	if d == nil {
		if lineOf(c.root, "accounts", name, "dkim") != lineOf(c.root, "accounts", name) {
			add("empty dkim section; it needs domain, selector and private_key_file")
		}
		return probs
	}
	for _, kv := range [][2]string{{"domain", d.Domain}, {"selector", d.Selector}} {
		switch {
		case kv[1] == "":
			add("missing required value", kv[0])
		case len(kv[1]) > 253 || !dnsNameRE.MatchString(kv[1]):
			add(fmt.Sprintf("%q is not a DNS name", kv[1]), kv[0])
		}
	}
	if len(d.Headers) > 0 {
		if err := message.CheckDKIMHeaders(d.Headers); err != nil {
			add(strings.TrimPrefix(err.Error(), "dkim: "), "headers")
		}
	}
	if d.PrivateKeyFile == "" {
		add("missing required value: the private key's PEM file", "private_key_file")
		return probs
	}
	if err := checkDKIMKeyFile(c.Resolve(d.PrivateKeyFile)); err != nil {
		add(err.Error(), "private_key_file")
	}
	return probs
}

// checkDKIMKeyFile reads and parses a DKIM private key file and reports
// why it cannot sign.
func checkDKIMKeyFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read key file: %w", unwrapPathError(err))
	}
	if _, err := message.ParseDKIMKey(data); err != nil {
		return fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "dkim: "))
	}
	return nil
}

// dkimSigner builds the signer of a dkim section, reading the key.
func dkimSigner(cfg *Config, d *DKIMConfig) (*message.DKIMSigner, error) {
	data, err := os.ReadFile(cfg.Resolve(d.PrivateKeyFile))
	if err != nil {
		return nil, fmt.Errorf("private_key_file: %w", unwrapPathError(err))
	}
	key, err := message.ParseDKIMKey(data)
	if err != nil {
		return nil, fmt.Errorf("private_key_file %s: %w", cfg.Resolve(d.PrivateKeyFile), err)
	}
	return message.NewDKIMSigner(message.DKIMOptions{Domain: d.Domain, Selector: d.Selector, Key: key, Headers: d.Headers})
}

const dkimRecordDesc = `Prints the DNS TXT record that publishes the public half of ACCOUNT's DKIM
key (accounts.ACCOUNT.dkim), at <selector>._domainkey.<domain>. The first
line is the record's name and value, for DNS providers' web forms; the
second a zone-file line with the value split into strings of at most 255
characters, as DNS requires. Nothing secret is printed.`

// cmdDKIMRecord implements "mailbot dkim-record".
func (m *Main) cmdDKIMRecord(_ context.Context, args []string) int {
	fset := m.newFlagSet("dkim-record", "[-c mailbot.yaml] ACCOUNT", dkimRecordDesc)
	cfgFlag := fset.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	pos, status, ok := m.parseInterspersed(fset, args)
	if !ok {
		return status
	}
	if len(pos) != 1 {
		return m.usageError(fset, "give one account name")
	}
	cfg, status, ok := m.loadConfig(m.configPath(*cfgFlag, "mailbot.yaml"))
	if !ok {
		return status
	}
	a, ok := cfg.Accounts[pos[0]]
	if !ok || a == nil {
		fmt.Fprintf(m.Stderr, "mailbot dkim-record: no account named %q in %s\n", pos[0], cfg.Path())
		return exitFailure
	}
	if a.DKIM == nil {
		fmt.Fprintf(m.Stderr, "mailbot dkim-record: account %q has no dkim section\n", pos[0])
		return exitFailure
	}
	data, err := os.ReadFile(cfg.Resolve(a.DKIM.PrivateKeyFile))
	if err == nil {
		var rec string
		key, perr := message.ParseDKIMKey(data)
		if perr == nil {
			rec, perr = message.DKIMRecord(key)
		}
		if perr == nil {
			name := a.DKIM.Selector + "._domainkey." + a.DKIM.Domain
			fmt.Fprintf(m.Stdout, "%s TXT %s\n", name, rec)
			fmt.Fprintf(m.Stdout, "%s. 3600 IN TXT %s\n", name, zoneStrings(rec))
			return exitOK
		}
		err = perr
	}
	fmt.Fprintf(m.Stderr, "mailbot dkim-record: accounts.%s.dkim.private_key_file: %v\n", pos[0], unwrapPathError(err))
	return exitFailure
}

// zoneStrings writes a TXT value as zone-file character strings of at most
// 255 bytes each, in parentheses when there are several.
func zoneStrings(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	parts = append(parts, `"`+v+`"`)
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, " ") + " )"
}
