package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/ops"
)

func TestHTTPConfigValidate(t *testing.T) {
	t.Parallel()
	const base = "scripts_dir: s\nstate_dir: st\n"
	tests := []struct {
		name, http string
		want       string // "" for no problem; else a substring, with the line
	}{
		{"absent", "", ""},
		{"loopback without auth", "http:\n  listen: 127.0.0.1:9725\n", ""},
		{"default listen", "http: {}\n", ""},
		{"ipv6 loopback", "http:\n  listen: \"[::1]:9725\"\n", ""},
		{"localhost", "http:\n  listen: localhost:9725\n", ""},
		{"any address without auth", "http:\n  listen: 0.0.0.0:9725\n", "mailbot.yaml:5: http.listen: 0.0.0.0:9725 is not a loopback address"},
		{"lan address without auth", "http:\n  listen: 192.168.1.5:9725\n", "needs http.auth"},
		{"any address with basic", "http:\n  listen: :9725\n  auth:\n    basic: { username: ops, password_env: PW }\n", ""},
		{"any address with bearer", "http:\n  listen: :9725\n  auth:\n    bearer: { token_file: tok }\n", ""},
		{"bad port", "http:\n  listen: 127.0.0.1:http\n", "mailbot.yaml:5: http.listen: want host:port"},
		{"no port", "http:\n  listen: 127.0.0.1\n", "want host:port"},
		{"inline password", "http:\n  auth:\n    basic: { username: ops, password: x }\n", "http.auth.basic.password: inline passwords are not allowed"},
		{"inline token", "http:\n  auth:\n    bearer: { token: x }\n", "http.auth.bearer.token: inline tokens are not allowed"},
		{"both methods", "http:\n  auth:\n    basic: { username: ops, password_env: PW }\n    bearer: { token_env: T }\n", "mailbot.yaml:7: http.auth.bearer: set only one of basic and bearer"},
		{"no method", "http:\n  auth: {}\n", "http.auth: set basic"},
		{"no username", "http:\n  auth:\n    basic: { password_env: PW }\n", "http.auth.basic.username: missing or invalid username"},
		{"no password source", "http:\n  auth:\n    basic: { username: ops }\n", "http.auth.basic: set password_env or password_file"},
		{"two password sources", "http:\n  auth:\n    basic: { username: ops, password_env: PW, password_file: f }\n", "set only one of password_env and password_file"},
		{"no token source", "http:\n  auth:\n    bearer: {}\n", "http.auth.bearer: set token_env or token_file"},
		{"unknown key", "http:\n  listen: 127.0.0.1:9725\n  port: 1\n", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := validationText("mailbot.yaml", []byte(base+"\n"+tc.http))
			if tc.want == "" && all != "" || tc.want != "" && !strings.Contains(all, tc.want) {
				t.Errorf("problems:\n%s\nwant %q", all, tc.want)
			}
		})
	}
}

func TestHTTPAuthSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tok")
	if err := os.WriteFile(tokFile, []byte("file-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PW": "env-pw"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name, http string
		want       ops.Auth
		problem    string
	}{
		{"basic from env", "http:\n  auth:\n    basic: { username: ops, password_env: PW }\n", ops.Auth{Username: "ops", Password: "env-pw"}, ""},
		{"bearer from file", "http:\n  auth:\n    bearer: { token_file: tok }\n", ops.Auth{Token: "file-token"}, ""},
		{"env unset", "http:\n  auth:\n    basic: { username: ops, password_env: NOPE }\n", ops.Auth{}, "http.auth.basic.password_env: environment variable NOPE is not set"},
		{"file missing", "http:\n  auth:\n    bearer: { token_file: missing }\n", ops.Auth{}, "http.auth.bearer.token_file: cannot read password file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig(filepath.Join(dir, "mailbot.yaml"), []byte("scripts_dir: s\nstate_dir: st\n"+tc.http))
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.httpAuth(getenv)
			if tc.problem == "" && (err != nil || got != tc.want) {
				t.Errorf("httpAuth = %+v, %v; want %+v", got, err, tc.want)
			}
			var probs []string
			for _, p := range cfg.CheckSecrets(getenv) {
				probs = append(probs, p.String())
			}
			all := strings.Join(probs, "\n")
			if tc.problem == "" && all != "" || tc.problem != "" && !strings.Contains(all, tc.problem) {
				t.Errorf("CheckSecrets:\n%s\nwant %q", all, tc.problem)
			}
		})
	}
}

func TestHTTPSecretsInRegistry(t *testing.T) {
	t.Parallel()
	cfg, err := ParseConfig("/etc/mailbot/mailbot.yaml", []byte("scripts_dir: s\nstate_dir: st\nhttp:\n  auth:\n    bearer: { token_file: tok }\n"))
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, k := range cfg.SecretKeys() {
		if strings.Join(k.Path, ".") == "http.auth.bearer.token_file" && k.Kind == "file" && k.Value == "/etc/mailbot/tok" {
			found = true
		}
	}
	if !found {
		t.Errorf("http.auth.bearer.token_file is not in the secret registry: %+v", cfg.SecretKeys())
	}
}
