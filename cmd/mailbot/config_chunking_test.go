package main

import (
	"strings"
	"testing"
)

func TestAccountChunking(t *testing.T) {
	t.Parallel()
	tests := []struct {
		yaml    string
		off     bool
		problem string // a parse problem's text, with its line
	}{
		{yaml: "", off: false},
		{yaml: "    chunking: true\n", off: false},
		{yaml: "    chunking: false\n", off: true},
		{yaml: "    chunking: no\n", off: true}, // YAML 1.1 booleans are accepted
		{yaml: "    chunking: sometimes\n", problem: "mailbot.yaml:6: accounts.relay.chunking"},
	}
	for _, tc := range tests {
		t.Run(strings.TrimSpace(tc.yaml), func(t *testing.T) {
			src := "scripts_dir: scripts\nstate_dir: state\naccounts:\n  relay:\n    host: smtp.example.org\n" + tc.yaml
			cfg, err := ParseConfig("mailbot.yaml", []byte(src))
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) || !strings.Contains(err.Error(), "true or false") {
					t.Fatalf("ParseConfig = %v, want a type problem at %s", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if probs := cfg.Validate(); len(probs) != 0 {
				t.Fatalf("problems: %v", probs)
			}
			accs, err := luaAccounts(cfg, nil, func(string) (string, bool) { return "", false }, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := accs["relay"].NoChunking; got != tc.off {
				t.Errorf("NoChunking = %v, want %v", got, tc.off)
			}
			ob, err := accs["relay"].OutboxAccount(nil)
			if err != nil {
				t.Fatal(err)
			}
			if ob.Dialer.NoChunking != tc.off {
				t.Errorf("outbox Dialer.NoChunking = %v, want %v", ob.Dialer.NoChunking, tc.off)
			}
		})
	}
}
