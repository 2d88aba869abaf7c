package main

import (
	"strings"
	"testing"
)

func TestValidateFallback(t *testing.T) {
	t.Parallel()
	const head = `scripts_dir: scripts
state_dir: state
accounts:
  backup:
    host: backup.example.org
  third:
    host: third.example.org
    fallback: [backup]
  main:
    host: smtp.example.org
    fallback:
`
	tests := []struct {
		name  string
		items string
		want  []string // "line: key: message" of each problem
	}{
		{"valid, fallbacks of fallbacks allowed", "      - third\n      - backup\n", nil},
		{"unknown account", "      - backup\n      - nowhere\n", []string{`13: accounts.main.fallback: no account named "nowhere" under accounts`}},
		{"itself", "      - main\n", []string{`12: accounts.main.fallback: "main" is this account; list other accounts`}},
		{"duplicate", "      - backup\n      - third\n      - backup\n", []string{`14: accounts.main.fallback: "backup" is listed twice`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("mailbot.yaml", []byte(head+tc.items))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range cfg.Validate() {
				got = append(got, strings.TrimPrefix(p.String(), "mailbot.yaml:"))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	// The flow style reports the item's line too.
	cfg, err := ParseConfig("mailbot.yaml", []byte(strings.TrimSuffix(head, "    fallback:\n")+"    fallback: [backup, gone]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if probs := cfg.Validate(); len(probs) != 1 || probs[0].Line != 11 || !strings.Contains(probs[0].Msg, `"gone"`) {
		t.Errorf("flow list: %v", probs)
	}
}
