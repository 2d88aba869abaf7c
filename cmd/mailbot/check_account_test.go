package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckOAuth2DKIMFallback: `mailbot check` validates an account's
// oauth2, dkim and fallback sections together, reporting the problems
// of each in one run.
func TestCheckOAuth2DKIMFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeDKIMKeys(t, dir)
	writeFile(t, filepath.Join(dir, "scripts", "x.lua"), "local x = 1\n")
	const valid = `
    fallback: [backup]
    dkim: {domain: contoso.test, selector: s1, private_key_file: ed.pem}
    oauth2:
      provider: microsoft
      tenant: contoso.onmicrosoft.com
      client_id: 00000000-0000-0000-0000-000000000000
      refresh_token_env: M365_RT
`
	tests := []struct {
		name    string
		account string // keys of account m365 after host/username
		backup  string // keys of account backup after host
		env     map[string]string
		want    []string // each a problem's "key: message" part; none: check passes
	}{
		{"all valid", valid, "", map[string]string{"M365_RT": "x"}, nil},
		{"fallback is an OAuth2 account too", valid, `
    username: b@contoso.test
    oauth2: {provider: google, client_id: cid, client_secret_env: B_SECRET, refresh_token_env: B_RT}
`, map[string]string{"M365_RT": "x", "B_SECRET": "s", "B_RT": "r"}, nil},
		{"one problem in each section", `
    fallback: [backup, nowhere]
    dkim: {domain: contoso.test, private_key_file: ed.pem}
    oauth2:
      provider: microsoft
      refresh_token_env: M365_RT
`, "", map[string]string{"M365_RT": "x"}, []string{
			`accounts.m365.fallback: no account named "nowhere" under accounts`,
			"accounts.m365.dkim.selector: missing required value",
			"accounts.m365.oauth2.client_id: missing required value",
		}},
		{"secrets unavailable", valid, `
    username: b@contoso.test
    oauth2: {provider: google, client_id: cid, client_secret_env: B_SECRET}
`, nil, []string{
			"accounts.m365.oauth2.refresh_token_env: environment variable M365_RT is not set, and no token is cached: run `mailbot oauth login m365`",
			"accounts.backup.oauth2.client_secret_env: environment variable B_SECRET is not set",
			"accounts.backup.oauth2: no refresh token yet: run `mailbot oauth login backup`",
		}},
		{"inline secret and a password beside oauth2", valid + "      refresh_token: abc\n    password_env: PW\n", "", map[string]string{"M365_RT": "x", "PW": "p"}, []string{
			"accounts.m365.password_env: an account with oauth2 logs in with a token, not a password",
			"accounts.m365.oauth2.refresh_token: inline refresh tokens are not allowed",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sub := t.TempDir()
			cfg := filepath.Join(sub, "mailbot.yaml")
			writeFile(t, cfg, "scripts_dir: "+filepath.Join(dir, "scripts")+"\nstate_dir: state\naccounts:\n  m365:\n    host: smtp.office365.com\n    username: r@contoso.test"+
				strings.ReplaceAll(tc.account, "ed.pem", filepath.Join(dir, "ed.pem"))+"  backup:\n    host: smtp.gmail.com"+tc.backup+"\n")
			var out, errb syncBuffer
			m := &Main{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(""), LookupEnv: func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }}
			code := m.cmdCheck(t.Context(), []string{"-c", cfg})
			if len(tc.want) == 0 {
				if code != exitOK {
					t.Fatalf("check: exit %d\n%s%s", code, out.String(), errb.String())
				}
				return
			}
			if code != exitFailure {
				t.Fatalf("check: exit %d, want %d\n%s", code, exitFailure, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			for _, w := range tc.want {
				found := false
				for _, l := range lines {
					found = found || strings.Contains(l, w)
				}
				if !found {
					t.Errorf("check output lacks %q:\n%s", w, out.String())
				}
			}
			if len(lines) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", len(lines), len(tc.want), out.String())
			}
		})
	}
}
