package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/internal/dkimtest"
	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/oauth/oauthtest"
	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// The tests below prove OAuth2 accounts end to end, through the config
// alone: an account with an oauth2 section (provider generic) gets its
// tokens from a fake identity provider (oauthtest) on loopback, and a
// go-smtp server (devserver) accepts only the access token the provider
// currently deems valid. When a test ends, every file mailbot wrote and
// everything it printed is searched for the provider's tokens and the
// client secret.

const (
	oauthUser         = "reports@contoso.test"
	oauthSeedEnv      = "IDP_REFRESH_TOKEN"
	oauthSecretEnv    = "IDP_CLIENT_SECRET"
	oauthClientSecret = "cl1ent-s3cret-value"
)

// oauthOpts shape an oauthFixture.
type oauthOpts struct {
	mech          string        // SASL mechanism; "" for the default (XOAUTH2)
	clientCreds   bool          // grant client_credentials with a client secret
	rotate        bool          // the provider rotates refresh tokens
	expiresIn     time.Duration // access-token lifetime; 0 for 1 h
	noSeed        bool          // no refresh_token_env: the cache comes from `oauth login`
	accountExtra  string        // more keys of account m365 (indented 4 spaces)
	otherAccounts string        // more accounts (indented 2 spaces)
}

// oauthFixture is an identity provider, an SMTP server that demands its
// valid token, and a config whose default account m365 logs in to the
// server with OAuth2.
type oauthFixture struct {
	idp    *oauthtest.Server
	srv    *devserver.Server
	dir    string
	config string
	cache  string
	env    map[string]string
	seed   string // the refresh token in oauthSeedEnv, if any

	refuseAll atomic.Bool // the SMTP server refuses every token

	mu        sync.Mutex
	presented []string // access tokens the SMTP server was shown, in order
	printed   []string // everything mailbot printed
}

func newOAuthFixture(t *testing.T, o oauthOpts) *oauthFixture {
	t.Helper()
	f := &oauthFixture{idp: oauthtest.NewServer(), env: map[string]string{}}
	t.Cleanup(f.idp.Close)
	f.idp.Rotate = o.rotate
	f.idp.ExpiresIn = o.expiresIn
	f.srv = devtest.Start(t, devserver.Config{RequireAuth: true, OAuth2: func(user, token string) *devserver.TokenRefusal {
		f.mu.Lock()
		f.presented = append(f.presented, token)
		f.mu.Unlock()
		if user == oauthUser && !f.refuseAll.Load() && f.idp.ValidAccess(token) {
			return nil
		}
		return &devserver.TokenRefusal{Status: "401", Scope: "https://outlook.office365.com/SMTP.Send"}
	}})
	f.dir = t.TempDir()
	f.config = filepath.Join(f.dir, "mailbot.yaml")
	f.cache = filepath.Join(f.dir, "state", "oauth", "m365.json")
	host, port, _ := net.SplitHostPort(f.srv.Addr())
	writeFile(t, filepath.Join(f.dir, "ca.pem"), string(pemOf(f.srv)))

	oauth2 := fmt.Sprintf(`    oauth2:
      provider: generic
      token_url: %s
      device_authorization_url: %s
      client_id: %s
`, f.idp.TokenURL(), f.idp.DeviceURL(), f.idp.ClientID)
	if o.mech != "" {
		oauth2 += "      mechanism: " + o.mech + "\n"
	}
	switch {
	case o.clientCreds:
		f.idp.ClientSecret = oauthClientSecret
		f.env[oauthSecretEnv] = oauthClientSecret
		oauth2 += "      grant: client_credentials\n      client_secret_env: " + oauthSecretEnv + "\n"
	case !o.noSeed:
		f.seed = f.idp.IssueRefreshToken()
		f.env[oauthSeedEnv] = f.seed
		oauth2 += "      refresh_token_env: " + oauthSeedEnv + "\n"
	}
	writeFile(t, f.config, fmt.Sprintf(`scripts_dir: scripts
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
%s%s%s`, host, port, oauthUser, oauthUser, o.accountExtra, oauth2, o.otherAccounts))
	os.MkdirAll(filepath.Join(f.dir, "scripts"), 0o755)
	t.Cleanup(func() { f.assertNoSecrets(t) })
	return f
}

func pemOf(srv *devserver.Server) []byte {
	return []byte("-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString(srv.Certificate().Raw) + "\n-----END CERTIFICATE-----\n")
}

func (f *oauthFixture) lookupEnv(name string) (string, bool) {
	v, ok := f.env[name]
	return v, ok
}

func (f *oauthFixture) record(s ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.printed = append(f.printed, s...)
}

// presentedTokens returns the access tokens the server was shown so far.
func (f *oauthFixture) presentedTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.presented...)
}

// run runs one mailbot command in-process.
func (f *oauthFixture) run(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb syncBuffer
	m := &Main{Stdout: &out, Stderr: &errb, Stdin: strings.NewReader(""), LookupEnv: f.lookupEnv}
	status := -1
	for _, c := range commands() {
		if c.name == args[0] {
			status = c.run(m, ctx, args[1:])
		}
	}
	f.record(out.String(), errb.String())
	return out.String(), errb.String(), status
}

// bin runs the mailbot binary in the fixture's folder.
func (f *oauthFixture) bin(t *testing.T, args ...string) result {
	t.Helper()
	r := mailbot(t, f.dir, f.envList(), args...)
	f.record(r.stdout, r.stderr)
	return r
}

func (f *oauthFixture) envList() []string {
	var env []string
	for k, v := range f.env {
		env = append(env, k+"="+v)
	}
	return env
}

// cachedAccessToken reads the access token in the cache file.
func (f *oauthFixture) cachedAccessToken(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.cache)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), `"access_token": "`)
	if !ok {
		t.Fatalf("no access token in the cache")
	}
	at, _, _ := strings.Cut(rest, `"`)
	return at
}

// secretForms are the provider's tokens and the client secret, raw, in
// base64, and as the base64 SASL responses that carry them.
func (f *oauthFixture) secretForms() []string {
	secrets := append(f.idp.AccessTokens(), f.idp.RefreshTokens()...)
	secrets = append(secrets, oauthClientSecret)
	var forms []string
	b64 := base64.StdEncoding.EncodeToString
	for _, s := range secrets {
		forms = append(forms, s, b64([]byte(s)), base64.RawStdEncoding.EncodeToString([]byte(s)), base64.URLEncoding.EncodeToString([]byte(s)),
			b64([]byte("user="+oauthUser+"\x01auth=Bearer "+s+"\x01\x01")),
			b64([]byte("n,a="+oauthUser+",\x01auth=Bearer "+s+"\x01\x01")))
	}
	return forms
}

// assertNoSecrets searches everything mailbot printed and every file in
// the fixture's folder but the token cache.
func (f *oauthFixture) assertNoSecrets(t *testing.T) {
	t.Helper()
	forms := f.secretForms()
	check := func(where, text string) {
		for _, form := range forms {
			if strings.Contains(text, form) {
				t.Errorf("%s contains a token or secret", where)
				return
			}
		}
	}
	f.mu.Lock()
	check("mailbot's output", strings.Join(f.printed, "\n"))
	f.mu.Unlock()
	files := 0
	filepath.WalkDir(f.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == f.cache {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("read %s: %v", path, err)
			return nil
		}
		files++
		check(path, string(data))
		return nil
	})
	if files == 0 {
		t.Error("no file searched")
	}
}

func TestSendAccountOAuth2(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			f := newOAuthFixture(t, oauthOpts{mech: mech})
			out, errs, code := f.run(t, t.Context(), "send", "-c", f.config, "--account", "m365",
				"--to", "ops@contoso.test", "--subject", "oauth", "--body", "hi", "--debug")
			if code != exitOK {
				t.Fatalf("send: exit %d\n%s\n%s", code, out, errs)
			}
			msgs := waitMessages(t, f.srv, 1)
			if msgs[0].AuthUser != oauthUser || !msgs[0].TLS {
				t.Errorf("delivered as %q (TLS %v)", msgs[0].AuthUser, msgs[0].TLS)
			}
			if n := f.idp.Requests("refresh_token"); n != 1 {
				t.Errorf("refreshes = %d, want 1", n)
			}
			if !strings.Contains(errs, "C: AUTH "+mech+" <redacted>") {
				t.Errorf("transcript lacks the redacted AUTH line:\n%s", errs)
			}
			if !strings.Contains(errs, "oauth2 access token obtained") || !strings.Contains(errs, "account=m365") {
				t.Errorf("the refresh is not logged:\n%s", errs)
			}
			if fi, err := os.Stat(f.cache); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("token cache: %v %v", fi, err)
			}
		})
	}
}

// TestOAuth2InvalidGrant: a revoked refresh token fails the login with an
// authentication exit status and a message that names the fix.
func TestOAuth2InvalidGrant(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"send", []string{"send", "--account", "m365", "--to", "ops@contoso.test", "--subject", "oauth", "--body", "hi"}},
		{"probe", []string{"probe", "--account", "m365"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newOAuthFixture(t, oauthOpts{})
			f.idp.RevokeAll()
			r := f.bin(t, append(tc.args, "-c", "mailbot.yaml")...)
			if r.code != exitAuth {
				t.Fatalf("exit %d, want %d: %v", r.code, exitAuth, r)
			}
			for _, want := range []string{"invalid_grant", "run `mailbot oauth login m365`"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
				}
			}
			if len(f.srv.Messages()) != 0 {
				t.Error("a message was delivered")
			}
		})
	}
}

// TestOAuth2InvalidGrantQueued: mail.send through an account whose
// refresh token was revoked is deferred, and queue show gives the advice.
func TestOAuth2InvalidGrantQueued(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, oauthOpts{})
	f.idp.RevokeAll()
	writeFile(t, filepath.Join(f.dir, "q.lua"), `
local mail = require("mail")
print((mail.send(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "queued", text = "ok" })))`)
	r := f.bin(t, "exec", "-c", "mailbot.yaml", "--deliver", "q.lua")
	if r.code != exitFailure || !strings.Contains(r.stderr, "1 message(s) deferred") {
		t.Fatalf("exec --deliver: %v", r)
	}
	id := strings.TrimSpace(r.stdout)
	r = f.bin(t, "queue", "-c", "mailbot.yaml", "show", id)
	if r.code != 0 || !strings.Contains(r.stdout, "invalid_grant") || !strings.Contains(r.stdout, "run `mailbot oauth login m365`") {
		t.Fatalf("queue show lacks the advice: %v", r)
	}
	if len(f.srv.Messages()) != 0 {
		t.Error("a message was delivered")
	}
}

// TestOAuth2DryRunAsksNoToken: --dry-run never contacts the provider.
func TestOAuth2DryRunAsksNoToken(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, oauthOpts{})
	_, errs, code := f.run(t, t.Context(), "send", "-c", f.config, "--account", "m365",
		"--to", "ops@contoso.test", "--subject", "oauth", "--body", "hi", "--dry-run", filepath.Join(f.dir, "dry"))
	if code != exitOK || f.idp.Requests("refresh_token") != 0 {
		t.Fatalf("dry run: exit %d, %d token requests:\n%s", code, f.idp.Requests("refresh_token"), errs)
	}
	// exec --dry-run: neither a script's c:login() nor the outbox asks.
	writeFile(t, filepath.Join(f.dir, "scripts", "both.lua"), `
local mail, smtp = require("mail"), require("smtp")
local c = smtp.connect{ account = "m365" }
c:login()
c:send_message(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "direct", text = "d" })
c:quit()
mail.send(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "queued", text = "q" })
`)
	dry := filepath.Join(f.dir, "exec-dry")
	out, errs, code := f.run(t, t.Context(), "exec", "-c", f.config, "--dry-run", dry, "--deliver", filepath.Join(f.dir, "scripts", "both.lua"))
	emls, _ := filepath.Glob(filepath.Join(dry, "*.eml"))
	if code != exitOK || len(emls) != 2 || f.idp.Requests("refresh_token") != 0 || len(f.srv.Messages()) != 0 {
		t.Fatalf("exec --dry-run: exit %d, %d captured, %d token requests:\n%s\n%s", code, len(emls), f.idp.Requests("refresh_token"), out, errs)
	}
}

func TestProbeAccount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		opts   oauthOpts
		refuse bool
		code   int
		want   string
	}{
		{"refresh token", oauthOpts{mech: "OAUTHBEARER"}, false, exitOK, "AUTH as " + oauthUser + " (OAuth2 OAUTHBEARER): OK"},
		{"client credentials", oauthOpts{clientCreds: true}, false, exitOK, "AUTH as " + oauthUser + " (OAuth2 XOAUTH2): OK"},
		{"refused", oauthOpts{mech: "OAUTHBEARER"}, true, exitAuth, "AUTH as " + oauthUser + " (OAuth2 OAUTHBEARER): FAILED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newOAuthFixture(t, tc.opts)
			f.refuseAll.Store(tc.refuse)
			out, errs, code := f.run(t, t.Context(), "probe", "-c", f.config, "--account", "m365")
			if code != tc.code || !strings.Contains(out, tc.want) || !strings.Contains(out, "AUTH mechanisms: PLAIN LOGIN XOAUTH2 OAUTHBEARER") {
				t.Fatalf("probe --account: exit %d (want %d), stdout lacks %q:\n%s\n%s", code, tc.code, tc.want, out, errs)
			}
			if tc.refuse {
				// Refused, refreshed once, refused again.
				if !strings.Contains(errs, "refreshed access token too") || len(f.presentedTokens()) != 2 {
					t.Errorf("stderr does not say why, or %d tokens tried:\n%s", len(f.presentedTokens()), errs)
				}
			}
			if len(f.srv.Messages()) != 0 {
				t.Error("probe sent mail")
			}
		})
	}
	f := newOAuthFixture(t, oauthOpts{})
	if _, errs, code := f.run(t, t.Context(), "probe", "-c", f.config, "--account", "m365", "127.0.0.1:25"); code != exitFailure || !strings.Contains(errs, "not both") {
		t.Errorf("probe with HOST and --account: exit %d\n%s", code, errs)
	}

	// An account that pins the certificate instead of trusting a CA: the
	// pin is what probe verifies, as every connection of the account does.
	pinned := newOAuthFixture(t, oauthOpts{})
	cfg, err := os.ReadFile(pinned.config)
	if err != nil {
		t.Fatal(err)
	}
	pin := smtp.FormatFingerprint(smtp.CertificateFingerprint(pinned.srv.Certificate()))
	writeFile(t, pinned.config, strings.Replace(string(cfg), "ca_file: ca.pem", "tls_fingerprint: \""+pin+"\"", 1))
	out, errs, code := pinned.run(t, t.Context(), "probe", "-c", pinned.config, "--account", "m365")
	if code != exitOK || !strings.Contains(out, "(OAuth2 XOAUTH2): OK") {
		t.Errorf("probe --account with a pinned certificate: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestOAuth2ClientCredentials: an app-only account gets its token with
// the client secret, for send and for mail.send under exec --deliver.
func TestOAuth2ClientCredentials(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, oauthOpts{clientCreds: true})
	if r := f.bin(t, "check", "-c", "mailbot.yaml"); r.code != 0 {
		t.Fatalf("check: %v", r)
	}
	if r := f.bin(t, "send", "-c", "mailbot.yaml", "--account", "m365", "--to", "ops@contoso.test", "--subject", "app-only", "--body", "hi"); r.code != 0 {
		t.Fatalf("send: %v", r)
	}
	writeFile(t, filepath.Join(f.dir, "q.lua"), `
local mail = require("mail")
mail.send(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "queued", text = "ok" })`)
	if r := f.bin(t, "exec", "-c", "mailbot.yaml", "--deliver", "q.lua"); r.code != 0 {
		t.Fatalf("exec --deliver: %v", r)
	}
	msgs := waitMessages(t, f.srv, 2)
	for _, m := range msgs {
		if m.AuthUser != oauthUser {
			t.Errorf("delivered as %q", m.AuthUser)
		}
	}
	// The second process reuses the cached, still valid access token.
	if n, m := f.idp.Requests("client_credentials"), f.idp.Requests("refresh_token"); n != 1 || m != 0 {
		t.Errorf("client_credentials requests = %d (want 1), refresh requests = %d", n, m)
	}
	if r := f.bin(t, "oauth", "status", "-c", "mailbot.yaml"); r.code != 0 || !strings.Contains(r.stdout, "client_credentials") || !strings.Contains(r.stdout, "not used") {
		t.Errorf("oauth status: %v", r)
	}
}

// startRun starts `mailbot run` (the binary) in the fixture's folder; the
// returned function stops it with SIGTERM and returns its log.
func (f *oauthFixture) startRun(t *testing.T) (stop func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, mailbotBin, "run", "-c", "mailbot.yaml")
	cmd.Dir = f.dir
	cmd.Env = cleanEnv(f.envList()...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	stop = func() string {
		t.Helper()
		if stopped {
			return logs.String()
		}
		stopped = true
		defer cancel()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Error(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("run did not exit 0 on SIGTERM: %v\n%s", err, logs.String())
		}
		f.record(logs.String())
		return logs.String()
	}
	t.Cleanup(func() { stop() })
	return stop
}

const dailyReport = `
local mail = require("mail")
mailbot.on_start(function()
  mail.send(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "daily", text = "ok" })
end)`

// TestOAuth2ExpiryAndRotationAcrossRestart: the provider issues access
// tokens that expire within the refresh margin and rotates refresh
// tokens. A first process (send) spends the seed and caches the rotated
// refresh token; a second (mailbot run) refreshes the cached access token
// before use although the server would still take it, with the rotated
// refresh token: the provider refuses the seed, which the environment
// still offers.
func TestOAuth2ExpiryAndRotationAcrossRestart(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, oauthOpts{rotate: true, expiresIn: 30 * time.Second})
	r := f.bin(t, "send", "-c", "mailbot.yaml", "--account", "m365", "--to", "ops@contoso.test", "--subject", "first", "--body", "hi")
	if r.code != 0 {
		t.Fatalf("send: %v", r)
	}
	if f.idp.ValidRefresh(f.seed) || f.idp.Requests("refresh_token") != 1 {
		t.Fatalf("the seed is still valid or %d refreshes, want 1", f.idp.Requests("refresh_token"))
	}
	if !strings.Contains(r.stderr, "refresh_token_rotated=true") {
		t.Errorf("the rotation is not logged:\n%s", r.stderr)
	}
	first := f.cachedAccessToken(t)
	if !f.idp.ValidAccess(first) {
		t.Fatal("the cached access token is not valid at the provider")
	}
	rotated := refreshTokenIn(t, f.cache)
	if rotated == f.seed || !f.idp.ValidRefresh(rotated) {
		t.Fatal("the cache does not hold the rotated refresh token")
	}

	writeFile(t, filepath.Join(f.dir, "scripts", "report.lua"), dailyReport)
	stop := f.startRun(t)
	msgs := waitMessages(t, f.srv, 2)
	logs := stop()
	if subject(t, msgs[1].Data) != "daily" || msgs[1].AuthUser != oauthUser {
		t.Errorf("second message: %+v", msgs[1])
	}
	if n := f.idp.Requests("refresh_token"); n != 2 {
		t.Errorf("refreshes = %d, want 2:\n%s", n, logs)
	}
	// The server saw the first token once (first process) and never again:
	// the second process refreshed before use, not after a refusal.
	for i, tok := range f.presentedTokens() {
		if i > 0 && tok == first {
			t.Errorf("the expiring token was presented again (attempt %d)", i+1)
		}
	}
	if f.idp.ValidRefresh(rotated) {
		t.Error("the second process did not use (and rotate) the cached refresh token")
	}
	if !strings.Contains(logs, "oauth2 access token obtained") {
		t.Errorf("the refresh is not logged:\n%s", logs)
	}
}

// TestOAuth2RefusedThenRefreshed: the server stops accepting a cached,
// unexpired access token; mailbot refreshes once and logs in again.
func TestOAuth2RefusedThenRefreshed(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, oauthOpts{mech: "XOAUTH2"})
	send := func(subject string) {
		t.Helper()
		if out, errs, code := f.run(t, t.Context(), "send", "-c", f.config, "--account", "m365", "--to", "ops@contoso.test", "--subject", subject, "--body", "hi"); code != exitOK {
			t.Fatalf("send %s: exit %d\n%s\n%s", subject, code, out, errs)
		}
	}
	send("one")
	old := f.cachedAccessToken(t)
	f.idp.RevokeAccess()
	send("two")
	waitMessages(t, f.srv, 2)
	if n := f.idp.Requests("refresh_token"); n != 2 {
		t.Errorf("refreshes = %d, want 2", n)
	}
	p := f.presentedTokens()
	if len(p) != 3 || p[0] != old || p[1] != old || p[2] == old {
		t.Errorf("tokens presented: %d, want the old one twice (accepted, then refused) and a new one", len(p))
	}
}

// TestRunDeliversOAuth2 queues a message with mail.send from a script of
// mailbot run (in-process) and checks that the outbox delivers it through
// the OAuth2 account, and that queue show reveals no token.
func TestRunDeliversOAuth2(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, oauthOpts{mech: "OAUTHBEARER"})
	writeFile(t, filepath.Join(f.dir, "scripts", "report.lua"), dailyReport)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan string)
	go func() {
		_, errs, _ := f.run(t, ctx, "run", "-c", f.config)
		done <- errs
	}()
	msgs := waitMessages(t, f.srv, 1)
	cancel()
	var logs string
	select {
	case logs = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("mailbot run did not stop")
	}
	if msgs[0].AuthUser != oauthUser || subject(t, msgs[0].Data) != "daily" {
		t.Errorf("delivered %+v", msgs[0])
	}
	if n := f.idp.Requests("refresh_token"); n != 1 {
		t.Errorf("refreshes = %d, want 1", n)
	}
	if !strings.Contains(logs, "oauth2 access token obtained") {
		t.Errorf("the refresh is not logged:\n%s", logs)
	}
	out, errs, code := f.run(t, t.Context(), "queue", "-c", f.config, "list")
	if code != exitOK {
		t.Fatalf("queue list: exit %d\n%s\n%s", code, out, errs)
	}
}

// TestOAuth2ParallelWorkersOneRefresh: four outbox workers of one account
// start at once with no token cached; the provider sees one refresh.
func TestOAuth2ParallelWorkersOneRefresh(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, oauthOpts{accountExtra: "    concurrency: 4\n"})
	writeFile(t, filepath.Join(f.dir, "scripts", "burst.lua"), `
local mail = require("mail")
mailbot.on_start(function()
  for i = 1, 8 do
    mail.send(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "burst " .. i, text = "ok" })
  end
end)`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan string)
	go func() {
		_, errs, _ := f.run(t, ctx, "run", "-c", f.config)
		done <- errs
	}()
	msgs := waitMessages(t, f.srv, 8)
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("mailbot run did not stop")
	}
	if len(msgs) != 8 {
		t.Fatalf("%d messages", len(msgs))
	}
	if n := f.idp.Requests("refresh_token"); n != 1 {
		t.Errorf("refreshes = %d, want 1", n)
	}
}

// TestOAuth2DeviceLoginThenRun: an account with no seed signs in with
// `mailbot oauth login` against the provider's device endpoint; mailbot
// run then delivers with the cached access token, without a refresh.
func TestOAuth2DeviceLoginThenRun(t *testing.T) {
	t.Parallel()
	f := newOAuthFixture(t, oauthOpts{noSeed: true})
	if r := f.bin(t, "check", "-c", "mailbot.yaml"); !strings.Contains(r.stdout+r.stderr, "run `mailbot oauth login m365`") {
		t.Errorf("check before login: %v", r)
	}
	if r := f.bin(t, "oauth", "login", "m365", "-c", "mailbot.yaml"); r.code != 0 || !strings.Contains(r.stdout, "WDJB-MJHT") {
		t.Fatalf("oauth login: %v", r)
	}
	if r := f.bin(t, "check", "-c", "mailbot.yaml"); r.code != 0 {
		t.Errorf("check after login: %v", r)
	}
	writeFile(t, filepath.Join(f.dir, "scripts", "report.lua"), dailyReport)
	stop := f.startRun(t)
	waitMessages(t, f.srv, 1)
	stop()
	if n, m := f.idp.Requests("device_code"), f.idp.Requests("refresh_token"); n != 1 || m != 0 {
		t.Errorf("device_code polls = %d (want 1), refreshes = %d (want 0)", n, m)
	}
}

// TestOAuth2FallbackAccount: the outbox fails over from a relay that is
// down to an OAuth2 fallback account, which logs in with its own token.
func TestOAuth2FallbackAccount(t *testing.T) {
	t.Parallel()
	downHost, downPort, _ := net.SplitHostPort(closedPort(t))
	f := newOAuthFixture(t, oauthOpts{otherAccounts: fmt.Sprintf(`  primary:
    host: %s
    port: %s
    tls: starttls
    username: bot
    password_env: PRIMARY_PW
    fallback: [m365]
`, downHost, downPort)})
	f.env["PRIMARY_PW"] = "primary-pw"
	writeFile(t, filepath.Join(f.dir, "send.lua"), `
local mail = require("mail")
mail.send(mail.message{ from = "bot@example.org", to = "ops@example.org", subject = "via oauth fallback", text = "hi" }, { account = "primary" })`)
	r := f.bin(t, "exec", "-c", "mailbot.yaml", "--deliver", "send.lua")
	if r.code != 0 {
		t.Fatalf("exec --deliver: %v", r)
	}
	msgs := waitMessages(t, f.srv, 1)
	if msgs[0].AuthUser != oauthUser || subject(t, msgs[0].Data) != "via oauth fallback" {
		t.Errorf("fallback received %+v", msgs[0])
	}
	if n := f.idp.Requests("refresh_token"); n != 1 {
		t.Errorf("refreshes = %d, want 1", n)
	}
	if !strings.Contains(r.stderr, "fallback_for=primary") {
		t.Errorf("log lacks the failover:\n%s", r.stderr)
	}
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

// TestOAuth2WithDKIMAndFallback: one account with oauth2, dkim and a
// fallback list. A script's c:login() with no arguments logs in with the
// account's token, c:send_message signs with its key, mail.send through
// it is signed and delivered by it (its own fallback unused), and a
// message failed over to it from a relay that is down is signed once, by
// its key, and sent with its token. Script and outbox share one refresh.
func TestOAuth2WithDKIMAndFallback(t *testing.T) {
	t.Parallel()
	backup := devtest.Start(t, devserver.Config{})
	downHost, downPort, _ := net.SplitHostPort(closedPort(t))
	bHost, bPort, _ := net.SplitHostPort(backup.Addr())
	f := newOAuthFixture(t, oauthOpts{
		accountExtra: "    fallback: [backup]\n    dkim: {domain: contoso.test, selector: s1, private_key_file: ed.pem}\n",
		otherAccounts: fmt.Sprintf(`  primary:
    host: %s
    port: %s
    username: bot
    password_env: PRIMARY_PW
    dkim: {domain: example.org, selector: p1, private_key_file: rsa.pem}
    fallback: [m365]
  backup:
    host: %s
    port: %s
    ca_file: backup-ca.pem
`, downHost, downPort, bHost, bPort)})
	_, edKey := writeDKIMKeys(t, f.dir)
	writeFile(t, filepath.Join(f.dir, "backup-ca.pem"), string(pemOf(backup)))
	f.env["PRIMARY_PW"] = "primary-pw"
	if r := f.bin(t, "check", "-c", "mailbot.yaml"); r.code != 0 {
		t.Fatalf("check: %v", r)
	}
	writeFile(t, filepath.Join(f.dir, "scripts", "all.lua"), `
local mail, smtp = require("mail"), require("smtp")
local c = smtp.connect{ account = "m365" }
c:login()
c:send_message(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "direct", text = "d" })
c:quit()
mail.send(mail.message{ from = "reports@contoso.test", to = "ops@contoso.test", subject = "queued", text = "q" })
mail.send(mail.message{ from = "bot@example.org", to = "ops@example.org", subject = "failover", text = "f" }, { account = "primary" })
`)
	out, errs, code := f.run(t, t.Context(), "exec", "-c", f.config, "--deliver", filepath.Join(f.dir, "scripts", "all.lua"))
	if code != exitOK {
		t.Fatalf("exec --deliver: exit %d\n%s\n%s", code, out, errs)
	}
	got := map[string]bool{}
	for _, m := range waitMessages(t, f.srv, 3) {
		s := subject(t, m.Data)
		got[s] = true
		if m.AuthUser != oauthUser {
			t.Errorf("%s: delivered as %q", s, m.AuthUser)
		}
		if err := dkimtest.Verify(m.Data, edKey, "contoso.test", "s1"); err != nil {
			t.Errorf("%s: %v\n%s", s, err, m.Data)
		}
	}
	for _, s := range []string{"direct", "queued", "failover"} {
		if !got[s] {
			t.Errorf("no message %q among %v", s, got)
		}
	}
	if n := len(backup.Messages()); n != 0 {
		t.Errorf("the fallback of m365 received %d messages", n)
	}
	if n := f.idp.Requests("refresh_token"); n != 1 {
		t.Errorf("refreshes = %d, want 1", n)
	}
	if !strings.Contains(errs, "delivering through a fallback account") || !strings.Contains(errs, "via=m365") {
		t.Errorf("log lacks the failover:\n%s", errs)
	}
}
