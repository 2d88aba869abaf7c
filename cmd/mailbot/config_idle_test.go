package main

import (
	"strings"
	"testing"
	"time"
)

// TestValidateIdleTimeout: accounts.NAME.idle_timeout is checked with its
// line, and a valid value is kept.
func TestValidateIdleTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		want  string // "line: key: message", "" for valid
		idle  time.Duration
	}{
		{"", "", 0},
		{"idle_timeout: 45s", "", 45 * time.Second},
		{"idle_timeout: 11m", "6: accounts.relay.idle_timeout: must be 0-10m (0 means the default, 30s)", 0},
		{"idle_timeout: -1s", "6: accounts.relay.idle_timeout: must be 0-10m (0 means the default, 30s)", 0},
	}
	for _, tc := range tests {
		t.Run(tc.value, func(t *testing.T) {
			cfg, err := ParseConfig("mailbot.yaml", []byte("scripts_dir: scripts\nstate_dir: state\naccounts:\n  relay:\n    host: smtp.example.org\n    "+tc.value+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range cfg.Validate() {
				got = append(got, strings.TrimPrefix(p.String(), "mailbot.yaml:"))
			}
			if strings.Join(got, "\n") != tc.want {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
			if tc.want == "" && cfg.Accounts["relay"].IdleTimeout != tc.idle {
				t.Errorf("idle timeout %v, want %v", cfg.Accounts["relay"].IdleTimeout, tc.idle)
			}
		})
	}
}
