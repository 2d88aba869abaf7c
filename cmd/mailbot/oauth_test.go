package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/oauth/oauthtest"
)

const oauthBase = `scripts_dir: scripts
state_dir: state
accounts:
  m365:
    host: smtp.office365.com
    port: 587
    username: reports@contoso.com
    oauth2:
      provider: microsoft
      client_id: 00000000-0000-0000-0000-000000000000
`

func TestOAuth2ConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		extra string // lines appended to the oauth2 section (6 spaces)
		repl  [2]string
		want  []string // problems, in order; nil means valid
	}{
		{name: "minimal microsoft", want: nil},
		{name: "full microsoft app-only", extra: "tenant: contoso.onmicrosoft.com\ngrant: client_credentials\nclient_secret_env: M365_SECRET\nmechanism: oauthbearer\n", want: nil},
		{name: "generic", repl: [2]string{"provider: microsoft", "provider: generic\n      token_url: https://idp.example.org/token\n      device_authorization_url: http://127.0.0.1:9/device"}, want: nil},
		{name: "inline client secret", extra: "client_secret: hunter2\n",
			want: []string{"m.yaml:11: accounts.m365.oauth2.client_secret: inline client secrets are not allowed; use client_secret_env"}},
		{name: "inline refresh token", extra: "refresh_token: 1//abc\n",
			want: []string{"m.yaml:11: accounts.m365.oauth2.refresh_token: inline refresh tokens are not allowed; run `mailbot oauth login m365`"}},
		{name: "with password", repl: [2]string{"    oauth2:\n", "    password_env: PW\n    oauth2:\n"},
			want: []string{"m.yaml:8: accounts.m365.password_env: an account with oauth2 logs in with a token, not a password"}},
		{name: "unknown provider", repl: [2]string{"provider: microsoft", "provider: yahoo"},
			want: []string{`m.yaml:9: accounts.m365.oauth2.provider: unknown provider "yahoo"`}},
		{name: "unknown grant", extra: "grant: password\n",
			want: []string{`m.yaml:11: accounts.m365.oauth2.grant: unknown grant "password"`}},
		{name: "unknown mechanism", extra: "mechanism: PLAIN\n",
			want: []string{`m.yaml:11: accounts.m365.oauth2.mechanism: unknown mechanism "PLAIN"`}},
		{name: "generic without token_url", repl: [2]string{"provider: microsoft", "provider: generic"},
			want: []string{"m.yaml:8: accounts.m365.oauth2.token_url: provider generic needs token_url"}},
		{name: "plain http to a remote host", extra: "token_url: http://login.example.org/token\n",
			want: []string{"m.yaml:11: accounts.m365.oauth2.token_url: http://login.example.org/token must use https"}},
		{name: "client credentials without secret or tenant", extra: "grant: client_credentials\n",
			want: []string{"m.yaml:8: accounts.m365.oauth2.tenant: grant client_credentials needs your tenant (domain or ID), not organizations",
				"m.yaml:11: accounts.m365.oauth2.grant: grant client_credentials needs client_secret_env or client_secret_file"}},
		{name: "google client credentials", repl: [2]string{"provider: microsoft", "provider: google"}, extra: "grant: client_credentials\nclient_secret_file: s.txt\n",
			want: []string{"accounts.m365.oauth2.grant: Google offers no client_credentials grant"}},
		{name: "unknown key", extra: "scope: x\n",
			want: []string{"m.yaml:11: accounts.m365.oauth2.scope: unknown key (known keys: provider, tenant, client_id, client_secret_env, client_secret_file, grant, scopes, mechanism, refresh_token_env"}},
		{name: "two secret sources", extra: "client_secret_env: A\nclient_secret_file: b\n",
			want: []string{"accounts.m365.oauth2.client_secret_file: set only one of client_secret_env and client_secret_file"}},
		{name: "account name with a slash", repl: [2]string{"  m365:", "  a/b:"},
			want: []string{"m.yaml:8: accounts.a/b.oauth2: an account with oauth2 needs a name that can name its token cache file"}},
		{name: "scope with a space", extra: "scopes: [\"a b\"]\n",
			want: []string{"accounts.m365.oauth2.scopes.0: a scope must be non-empty and contain no space"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := oauthBase
			if tc.repl[0] != "" {
				doc = strings.Replace(doc, tc.repl[0], tc.repl[1], 1)
			}
			for l := range strings.SplitSeq(strings.TrimSuffix(tc.extra, "\n"), "\n") {
				if l != "" {
					doc += "      " + l + "\n"
				}
			}
			var got []string
			cfg, err := ParseConfig("m.yaml", []byte(doc))
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			} else {
				for _, p := range cfg.Validate() {
					got = append(got, p.String())
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems = %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], w)
				}
			}
			if strings.Contains(strings.Join(got, "\n"), "hunter2") {
				t.Error("a problem quotes the inline secret")
			}
		})
	}
}

func TestOAuth2SecretsRegistered(t *testing.T) {
	t.Parallel()
	doc := oauthBase + "      client_secret_env: M365_SECRET\n      refresh_token_file: rt.txt\n"
	cfg, err := ParseConfig("/etc/mailbot/mailbot.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, k := range cfg.SecretKeys() {
		paths = append(paths, strings.Join(k.Path, ".")+"="+k.Value)
	}
	want := "accounts.m365.oauth2.client_secret_env=M365_SECRET,accounts.m365.oauth2.refresh_token_file=/etc/mailbot/rt.txt"
	if strings.Join(paths, ",") != want {
		t.Fatalf("SecretKeys = %v, want %s", paths, want)
	}
	reg := cfg.Secrets()
	if err := reg.CheckEnv("M365_SECRET"); err == nil || err.Error() != "M365_SECRET holds a secret of account m365; use c:login()" {
		t.Errorf("CheckEnv = %v", err)
	}
}

func TestOAuth2CheckSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		extra  string
		env    map[string]string
		cached bool
		want   []string
	}{
		{"nothing to start from", "", nil, false, []string{"m.yaml:8: accounts.m365.oauth2: no refresh token yet: run `mailbot oauth login m365`"}},
		{"cached", "", nil, true, nil},
		{"seed env set", "refresh_token_env: RT\n", map[string]string{"RT": "x"}, false, nil},
		{"seed env unset", "refresh_token_env: RT\n", nil, false, []string{"accounts.m365.oauth2.refresh_token_env: environment variable RT is not set, and no token is cached"}},
		{"client secret unset", "client_secret_env: CS\n", nil, true, []string{"accounts.m365.oauth2.client_secret_env: environment variable CS is not set"}},
		{"client credentials", "tenant: contoso.com\ngrant: client_credentials\nclient_secret_env: CS\n", map[string]string{"CS": "x"}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			doc := oauthBase
			for l := range strings.SplitSeq(strings.TrimSuffix(tc.extra, "\n"), "\n") {
				if l != "" {
					doc += "      " + l + "\n"
				}
			}
			cfg, err := ParseConfig(filepath.Join(dir, "m.yaml"), []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			cfg.path = "m.yaml"
			if tc.cached {
				writeFile(t, filepath.Join(dir, "state", "oauth", "m365.json"), "{}")
			}
			probs := cfg.CheckSecrets(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if len(probs) != len(tc.want) {
				t.Fatalf("problems = %v, want %q", probs, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(probs[i].String(), w) {
					t.Errorf("problem %d = %q, want %q", i, probs[i], w)
				}
			}
		})
	}
}

// idpConfig is a config whose account "idp" uses the test IdP.
func idpConfig(idp *oauthtest.Server, extra string) string {
	return fmt.Sprintf(`scripts_dir: scripts
state_dir: state
accounts:
  idp:
    host: 127.0.0.1
    port: 2587
    username: bot@example.org
    oauth2:
      provider: generic
      token_url: %s
      device_authorization_url: %s
      client_id: %s
      scopes: [smtp]
%s  plain:
    host: 127.0.0.1
    username: u
    password_env: PLAIN_PW
`, idp.TokenURL(), idp.DeviceURL(), idp.ClientID, extra)
}

func TestOAuthLoginStatusAndAccounts(t *testing.T) {
	t.Parallel()
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.Scope = "smtp"
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), idpConfig(idp, ""))
	writeFile(t, filepath.Join(dir, "scripts", "x.lua"), "\n")

	r := mailbot(t, dir, nil, "oauth", "status", "-c", "mailbot.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "no: run `mailbot oauth login idp`") {
		t.Fatalf("status before login: %v", r)
	}
	r = mailbot(t, dir, nil, "check", "-c", "mailbot.yaml")
	if !strings.Contains(r.stdout+r.stderr, "accounts.idp.oauth2: no refresh token yet: run `mailbot oauth login idp`") {
		t.Fatalf("check before login: %v", r)
	}

	r = mailbot(t, dir, nil, "oauth", "login", "idp", "-c", "mailbot.yaml")
	if r.code != 0 {
		t.Fatalf("login: %v", r)
	}
	for _, s := range []string{idp.URL + "/activate", "WDJB-MJHT", "Signed in"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("login output lacks %q: %v", s, r)
		}
	}
	cache := filepath.Join(dir, "state", "oauth", "idp.json")
	fi, err := os.Stat(cache)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache: %v, %v", fi, err)
	}

	r2 := mailbot(t, dir, nil, "oauth", "status", "-c", "mailbot.yaml")
	if f := strings.Fields(lastLine(r2.stdout)); r2.code != 0 || len(f) < 5 || f[0] != "idp" || f[1] != "refresh_token" || f[2] != "smtp" || f[3] != "expires" || f[len(f)-1] != "yes" {
		t.Fatalf("status after login: %v", r2)
	}
	if strings.Contains(r2.stdout, "plain") {
		t.Errorf("status lists a password account: %v", r2)
	}

	// The wiring: the account gets a token source that uses the login's
	// tokens, and no password.
	cfg, err := LoadConfig(filepath.Join(dir, "mailbot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	accs, err := luaAccounts(cfg, nil, func(string) (string, bool) { return "", false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	acc := accs["idp"]
	if acc.OAuth2 == nil || acc.OAuth2Mechanism != "XOAUTH2" || acc.Password != nil {
		t.Fatalf("account idp: OAuth2 %v, mechanism %q, password %v", acc.OAuth2, acc.OAuth2Mechanism, acc.Password != nil)
	}
	if accs["plain"].OAuth2 != nil {
		t.Fatal("password account got a token source")
	}
	tok, err := acc.OAuth2.Token(context.Background())
	if err != nil || !idp.ValidAccess(tok) || idp.Requests("refresh_token") != 0 {
		t.Fatalf("Token: %v (refreshes %d)", err, idp.Requests("refresh_token"))
	}
	fresh, err := acc.OAuth2.Refresh(context.Background(), tok)
	if err != nil || fresh == tok || !idp.ValidAccess(fresh) {
		t.Fatalf("Refresh: %v", err)
	}

	// No token in anything mailbot printed or wrote, the cache aside.
	printed := r.stdout + r.stderr + r2.stdout + r2.stderr
	toks := append(idp.AccessTokens(), refreshTokenIn(t, cache))
	assertNoToken(t, "output", printed, toks)
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == cache {
			return err
		}
		b, _ := os.ReadFile(p)
		assertNoToken(t, p, string(b), toks)
		return nil
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func refreshTokenIn(t *testing.T, cache string) string {
	t.Helper()
	b, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), `"refresh_token": "`)
	if !ok {
		t.Fatalf("no refresh token in the cache")
	}
	rt, _, _ := strings.Cut(rest, `"`)
	return rt
}

func assertNoToken(t *testing.T, what, text string, toks []string) {
	t.Helper()
	for _, tok := range toks {
		if tok == "" {
			continue
		}
		for _, form := range []string{tok, base64.StdEncoding.EncodeToString([]byte(tok))} {
			if strings.Contains(text, form) {
				t.Errorf("%s contains a token", what)
			}
		}
	}
}

func TestOAuthLoginRefusals(t *testing.T) {
	t.Parallel()
	idp := oauthtest.NewServer()
	defer idp.Close()
	dir := t.TempDir()
	cfg := idpConfig(idp, `  app:
    host: 127.0.0.1
    username: bot@example.org
    oauth2:
      provider: generic
      token_url: `+idp.TokenURL()+`
      client_id: x
      grant: client_credentials
      client_secret_env: APP_SECRET
  nodevice:
    host: 127.0.0.1
    username: bot@example.org
    oauth2:
      provider: generic
      token_url: `+idp.TokenURL()+`
      client_id: x
`)
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), cfg)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"login", "plain"}, "account plain has no oauth2 section"},
		{[]string{"login", "nope"}, `no account named "nope"`},
		{[]string{"login", "app"}, "uses grant client_credentials, which needs no login"},
		{[]string{"login", "nodevice"}, "has no device flow: set oauth2.device_authorization_url"},
		{[]string{"login"}, "oauth login takes one account name"},
		{[]string{"frob"}, `unknown action "frob"`},
		{[]string{"status", "plain"}, "account plain has no oauth2 section"},
	} {
		r := mailbot(t, dir, []string{"APP_SECRET=s"}, append([]string{"oauth", "-c", "mailbot.yaml"}, tc.args...)...)
		if r.code != exitFailure || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("oauth %v: want exit 1 and %q, got %v", tc.args, tc.want, r)
		}
	}
	// A revoked login is reported with what to do.
	idp.SetDeviceSteps("access_denied")
	r := mailbot(t, dir, nil, "oauth", "-c", "mailbot.yaml", "login", "idp")
	if r.code != exitFailure || !strings.Contains(r.stderr, "access_denied: the sign-in was declined") {
		t.Errorf("declined login: %v", r)
	}
}

func TestOAuthHelp(t *testing.T) {
	t.Parallel()
	r := mailbot(t, t.TempDir(), nil, "oauth", "--help")
	for _, s := range []string{"Usage: mailbot oauth", "oauth login ACCOUNT", "oauth status [ACCOUNT]", "never a token"} {
		if r.code != 0 || !strings.Contains(r.stdout, s) {
			t.Errorf("help lacks %q: %v", s, r)
		}
	}
	r = mailbot(t, t.TempDir(), nil, "--help")
	if !strings.Contains(r.stdout, "oauth ") {
		t.Errorf("top help lacks oauth: %v", r)
	}
}

// A script cannot read the client secret's variable.
func TestOAuthSecretHiddenFromScripts(t *testing.T) {
	t.Parallel()
	idp := oauthtest.NewServer()
	defer idp.Close()
	dir := t.TempDir()
	// Trusted: the registry, not the strict sandbox's closed state_dir,
	// must keep the token cache from the script.
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), "sandbox: trusted\n"+idpConfig(idp, "      client_secret_env: IDP_CLIENT_SECRET\n      refresh_token_env: IDP_REFRESH_TOKEN\n"))
	writeFile(t, filepath.Join(dir, "state", "oauth", "idp.json"), `{"refresh_token": "rt-must-not-leak-3"}`)
	writeFile(t, filepath.Join(dir, "scripts", "peek.lua"), `
local env, fs = require("env"), require("fs")
local out = ""
for _, name in ipairs({"IDP_CLIENT_SECRET", "IDP_REFRESH_TOKEN"}) do
  local ok, err = pcall(env.get, name)
  out = out .. name .. ": " .. (ok and "READ " .. tostring(err) or tostring(err)) .. "\n"
end
local ok, err = pcall(fs.read, "../state/oauth/idp.json")
out = out .. "cache: " .. (ok and "READ " .. tostring(err) or tostring(err)) .. "\n"
fs.write("../state/files/peek.txt", out)
`)
	r := mailbot(t, dir, []string{"IDP_CLIENT_SECRET=cs-must-not-leak-1", "IDP_REFRESH_TOKEN=rt-must-not-leak-2"}, "exec", "-c", "mailbot.yaml", "scripts/peek.lua")
	if r.code != 0 {
		t.Fatalf("exec: %v", r)
	}
	b, err := os.ReadFile(filepath.Join(dir, "state", "files", "peek.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"IDP_CLIENT_SECRET: scripts/peek.lua:5: IDP_CLIENT_SECRET holds a secret of account idp; use c:login()",
		"IDP_REFRESH_TOKEN: scripts/peek.lua:5: IDP_REFRESH_TOKEN holds a secret of account idp; use c:login()",
		"cache: scripts/peek.lua:8: fs.read: file ../state/oauth/idp.json holds a secret of account idp; use c:login()"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("report lacks %q:\n%s", w, b)
		}
	}
	if strings.Contains(string(b)+r.stdout+r.stderr, "must-not-leak") {
		t.Error("a secret leaked")
	}
}
