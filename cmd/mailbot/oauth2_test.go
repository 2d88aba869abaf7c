package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// The tests below drive Main in-process: the token source of an OAuth2
// account is a test double, registered in testTokenSources for the
// test's own config file.

const oauthUser = "reports@contoso.test"

// oauthFixture is a server demanding the token valid, and a config whose
// default account "m365" logs in to it with tokens from ts.
type oauthFixture struct {
	srv    *devserver.Server
	ts     *smtptest.TokenSource
	dir    string
	config string
}

func newOAuthFixture(t *testing.T, valid, mech string, tokens ...string) *oauthFixture {
	t.Helper()
	var mu sync.Mutex
	srv := devtest.Start(t, devserver.Config{RequireAuth: true, OAuth2: func(user, token string) *devserver.TokenRefusal {
		mu.Lock()
		defer mu.Unlock()
		if user == oauthUser && token == valid {
			return nil
		}
		return &devserver.TokenRefusal{Status: "401", Scope: "https://outlook.office365.com/SMTP.Send"}
	}})
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(srv.Addr())
	writeFile(t, filepath.Join(dir, "ca.pem"), string(pemOf(srv)))
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), fmt.Sprintf(`scripts_dir: scripts
state_dir: state
default_account: m365
accounts:
  m365:
    host: %s
    port: %s
    tls: starttls
    username: %s
    from: "Reports <%s>"
    ca_file: ca.pem
`, host, port, oauthUser, oauthUser))
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	f := &oauthFixture{srv: srv, ts: smtptest.NewTokenSource(tokens...), dir: dir, config: filepath.Join(dir, "mailbot.yaml")}
	key := f.config + "\x00m365"
	testTokenSources.Store(key, testTokenSource{ts: f.ts, mech: mech})
	t.Cleanup(func() { testTokenSources.Delete(key) })
	return f
}

func pemOf(srv *devserver.Server) []byte {
	return []byte("-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString(srv.Certificate().Raw) + "\n-----END CERTIFICATE-----\n")
}

// run runs one mailbot command in-process.
func (f *oauthFixture) run(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb syncBuffer
	m := &Main{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(""),
		LookupEnv: func(string) (string, bool) { return "", false }}
	var status int
	for _, c := range commands() {
		if c.name == args[0] {
			status = c.run(m, ctx, args[1:])
		}
	}
	return out.String(), errb.String(), status
}

// noTokens fails if any token of the fixture, or base64 of one, appears.
func noTokens(t *testing.T, where, s string) {
	t.Helper()
	for _, tok := range []string{"tok-1", "tok-2", "tok-3"} {
		for _, form := range []string{tok, base64.StdEncoding.EncodeToString([]byte(tok))} {
			if strings.Contains(s, form) {
				t.Errorf("%s shows %q:\n%s", where, form, s)
			}
		}
	}
}

func TestSendAccountOAuth2(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			f := newOAuthFixture(t, "tok-2", mech, "tok-1", "tok-2")
			out, errs, code := f.run(t, t.Context(), "send", "-c", f.config, "--account", "m365",
				"--to", "ops@contoso.test", "--subject", "oauth", "--body", "hi", "--debug")
			if code != exitOK {
				t.Fatalf("send: exit %d\n%s\n%s", code, out, errs)
			}
			msgs := waitMessages(t, f.srv, 1)
			if msgs[0].AuthUser != oauthUser || !msgs[0].TLS {
				t.Errorf("delivered as %q (TLS %v)", msgs[0].AuthUser, msgs[0].TLS)
			}
			if f.ts.Refreshes() != 1 {
				t.Errorf("refreshes = %d, want 1", f.ts.Refreshes())
			}
			if !strings.Contains(errs, "C: AUTH "+mech+" <redacted>") {
				t.Errorf("transcript lacks the redacted AUTH line:\n%s", errs)
			}
			noTokens(t, "send's output", out+errs)
		})
	}
}

func TestSendAccountOAuth2Failures(t *testing.T) {
	t.Parallel()
	const advice = "invalid_grant: the refresh token was revoked; run `mailbot oauth login m365`"
	f := newOAuthFixture(t, "tok-2", "", "tok-1", "tok-2")
	f.ts.SetErrors(nil, errors.New(advice))
	_, errs, code := f.run(t, t.Context(), "send", "-c", f.config, "--account", "m365",
		"--to", "ops@contoso.test", "--subject", "oauth", "--body", "hi")
	if code != exitAuth || !strings.Contains(errs, advice) || !strings.Contains(errs, "refreshing it failed") {
		t.Fatalf("send with a revoked grant: exit %d, want %d with the advice:\n%s", code, exitAuth, errs)
	}
	noTokens(t, "send's output", errs)

	// --dry-run never asks the token source: the capture server takes a
	// placeholder password.
	g := newOAuthFixture(t, "tok-1", "", "tok-1")
	g.ts.SetErrors(errors.New("must not be called"), errors.New("must not be called"))
	_, errs, code = g.run(t, t.Context(), "send", "-c", g.config, "--account", "m365",
		"--to", "ops@contoso.test", "--subject", "oauth", "--body", "hi", "--dry-run", filepath.Join(g.dir, "dry"))
	if code != exitOK || g.ts.Calls() != 0 {
		t.Fatalf("dry run: exit %d, %d token requests:\n%s", code, g.ts.Calls(), errs)
	}
}

func TestProbeAccount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		valid  string
		tokens []string
		code   int
		want   string
	}{
		{"token refreshed", "tok-2", []string{"tok-1", "tok-2"}, exitOK, "AUTH as " + oauthUser + " (OAuth2 OAUTHBEARER): OK"},
		{"refused", "none", []string{"tok-1", "tok-2"}, exitAuth, "AUTH as " + oauthUser + " (OAuth2 OAUTHBEARER): FAILED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newOAuthFixture(t, tc.valid, "OAUTHBEARER", tc.tokens...)
			out, errs, code := f.run(t, t.Context(), "probe", "-c", f.config, "--account", "m365")
			if code != tc.code || !strings.Contains(out, tc.want) || !strings.Contains(out, "AUTH mechanisms: PLAIN LOGIN XOAUTH2 OAUTHBEARER") {
				t.Fatalf("probe --account: exit %d (want %d), stdout lacks %q:\n%s\n%s", code, tc.code, tc.want, out, errs)
			}
			if tc.code != exitOK && !strings.Contains(errs, "refreshed access token too") {
				t.Errorf("stderr does not say why:\n%s", errs)
			}
			if len(f.srv.Messages()) != 0 {
				t.Error("probe sent mail")
			}
			noTokens(t, "probe's output", out+errs)
		})
	}
	f := newOAuthFixture(t, "tok-1", "", "tok-1")
	if _, errs, code := f.run(t, t.Context(), "probe", "-c", f.config, "--account", "m365", "127.0.0.1:25"); code != exitFailure || !strings.Contains(errs, "not both") {
		t.Errorf("probe with HOST and --account: exit %d\n%s", code, errs)
	}

	// An account that pins the certificate instead of trusting a CA: the
	// pin is what probe verifies, as every connection of the account does.
	pinned := newOAuthFixture(t, "tok-1", "", "tok-1")
	cfg, err := os.ReadFile(pinned.config)
	if err != nil {
		t.Fatal(err)
	}
	pin := smtp.FormatFingerprint(smtp.CertificateFingerprint(pinned.srv.Certificate()))
	writeFile(t, pinned.config, strings.Replace(string(cfg), "ca_file: ca.pem", "tls_fingerprint: \""+pin+"\"", 1))
	out, errs, code := pinned.run(t, t.Context(), "probe", "-c", pinned.config, "--account", "m365")
	if code != exitOK || !strings.Contains(out, "(OAuth2): OK") {
		t.Errorf("probe --account with a pinned certificate: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestRunDeliversOAuth2 queues a message with mail.send from a script of
// mailbot run and checks that the outbox delivers it through the OAuth2
// account after refreshing the refused token, and that no file mailbot
// wrote holds a token.
func TestRunDeliversOAuth2(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, "tok-2", "", "tok-1", "tok-2")
	writeFile(t, filepath.Join(f.dir, "scripts", "report.lua"), `
local mail = require("mail")
mailbot.on_start(function()
  mail.send(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "daily", text = "ok" })
end)`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	var errs string
	go func() {
		defer close(done)
		_, errs, _ = f.run(t, ctx, "run", "-c", f.config)
	}()
	msgs := waitMessages(t, f.srv, 1)
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("mailbot run did not stop")
	}
	if msgs[0].AuthUser != oauthUser || !strings.Contains(string(msgs[0].Data), "Subject: daily") {
		t.Errorf("delivered %+v", msgs[0])
	}
	if f.ts.Refreshes() != 1 {
		t.Errorf("refreshes = %d, want 1", f.ts.Refreshes())
	}
	noTokens(t, "the log", errs)
	filepath.WalkDir(f.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, rerr := os.ReadFile(path)
		if rerr == nil {
			noTokens(t, path, string(data))
		}
		return nil
	})
}

// TestDevServerAccountDropsOAuth2 checks that an OAuth2 account aimed at
// the embedded dev server (host: dev_server) logs in with a password
// there, without asking for a token.
func TestDevServerAccountDropsOAuth2(t *testing.T) {
	acc := luabind.Account{Host: DevServerHost, Username: oauthUser, OAuth2: smtptest.NewTokenSource("tok-1"), OAuth2Mechanism: "XOAUTH2"}
	if err := pointAtDev(&acc, &Config{DevServer: &DevServerConfig{}}, nil); err != nil {
		t.Fatal(err)
	}
	if acc.OAuth2 != nil || acc.OAuth2Mechanism != "" || acc.Password == nil {
		t.Errorf("dev server account: OAuth2 %v, mechanism %q, password set %v", acc.OAuth2, acc.OAuth2Mechanism, acc.Password != nil)
	}
}
