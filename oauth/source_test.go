package oauth

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbot/mailbot/oauth/oauthtest"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testConfig returns a generic config against idp with a fresh registry,
// so each call behaves like a new process unless reg is shared.
func testConfig(idp *oauthtest.Server, dir string, clock *fakeClock) Config {
	return Config{
		Account:       "acct",
		Provider:      ProviderGeneric,
		ClientID:      idp.ClientID,
		TokenURL:      idp.TokenURL(),
		DeviceAuthURL: idp.DeviceURL(),
		Scopes:        []string{"smtp"},
		CacheDir:      dir,
		HTTPClient:    idp.Client(),
		Now:           clock.Now,
		reg:           newRegistry(),
	}
}

func seed(rt string) func() (string, error) { return func() (string, error) { return rt, nil } }

func mustNew(t *testing.T, cfg Config) *Source {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertNoSecret fails when text contains any secret or its base64.
func assertNoSecret(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		for _, form := range []string{sec, base64.StdEncoding.EncodeToString([]byte(sec)), base64.RawURLEncoding.EncodeToString([]byte(sec))} {
			if strings.Contains(text, form) {
				t.Errorf("%s contains a secret: %q", what, text)
			}
		}
	}
}

func TestFirstUseFromSeedThenCached(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	rt := idp.IssueRefreshToken()
	dir := t.TempDir()
	cfg := testConfig(idp, dir, newClock())
	cfg.RefreshTokenSeed = seed(rt)
	s := mustNew(t, cfg)
	ctx := context.Background()

	tok, err := s.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !idp.ValidAccess(tok) {
		t.Fatal("token not issued by the IdP")
	}
	again, err := s.Token(ctx)
	if err != nil || again != tok {
		t.Fatalf("second Token = %v, %v; want the cached one", again != tok, err)
	}
	if n := idp.Requests("refresh_token"); n != 1 {
		t.Fatalf("refresh requests = %d, want 1", n)
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.RefreshToken || !st.AccessToken || st.AccessTokenExpiry.IsZero() || st.Grant != GrantRefreshToken {
		t.Fatalf("status = %+v", st)
	}
	assertNoSecret(t, "status", fmt.Sprintf("%+v %v %#v", st, s, s), rt, tok)
}

func TestExpiryRefresh(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.ExpiresIn = 10 * time.Minute
	clock := newClock()
	cfg := testConfig(idp, t.TempDir(), clock)
	cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken())
	s := mustNew(t, cfg)
	ctx := context.Background()
	first, err := s.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		advance     time.Duration
		wantRefresh bool
	}{
		{8 * time.Minute, false},             // 2 min left: still good
		{time.Minute + 30*time.Second, true}, // 30 s left: within the 60 s margin
	} {
		clock.Advance(tc.advance)
		before := idp.Requests("refresh_token")
		tok, err := s.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if refreshed := idp.Requests("refresh_token") > before; refreshed != tc.wantRefresh {
			t.Fatalf("after %v: refreshed = %v, want %v", tc.advance, refreshed, tc.wantRefresh)
		}
		if tc.wantRefresh == (tok == first) {
			t.Fatalf("after %v: token changed = %v", tc.advance, tok != first)
		}
	}
}

func TestRotationPersistedAcrossRestart(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.Rotate = true
	clock := newClock()
	dir := t.TempDir()
	seedRT := idp.IssueRefreshToken()
	cfg := testConfig(idp, dir, clock)
	cfg.RefreshTokenSeed = seed(seedRT)
	if _, err := mustNew(t, cfg).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if idp.ValidRefresh(seedRT) {
		t.Fatal("the IdP should have rotated the seed away")
	}
	data, err := os.ReadFile(filepath.Join(dir, "acct.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), seedRT) {
		t.Fatal("the cache still holds the rotated-away refresh token")
	}

	// "Restart": a new registry, as in a new process; the seed is the
	// old, now revoked token, and must not be needed.
	clock.Advance(2 * time.Hour)
	cfg2 := testConfig(idp, dir, clock)
	cfg2.RefreshTokenSeed = seed(seedRT)
	tok, err := mustNew(t, cfg2).Token(context.Background())
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if !idp.ValidAccess(tok) {
		t.Fatal("after restart: token not valid")
	}
	if n := idp.Requests("refresh_token"); n != 2 {
		t.Fatalf("refresh requests = %d, want 2", n)
	}
}

func TestErrorsAreClearAndTyped(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(idp *oauthtest.Server, cfg *Config)
		kind     error
		contains string
	}{
		{"no refresh token", func(idp *oauthtest.Server, cfg *Config) {}, ErrNoRefreshToken,
			"no refresh token for account acct: run `mailbot oauth login acct`"},
		{"revoked", func(idp *oauthtest.Server, cfg *Config) { cfg.RefreshTokenSeed = seed("rt-revoked-000000") }, ErrInvalidGrant,
			"invalid_grant: the refresh token was revoked or expired; run `mailbot oauth login acct`"},
		{"AADSTS65001", func(idp *oauthtest.Server, cfg *Config) {
			cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken())
			idp.FailNext("invalid_grant", "AADSTS65001: The user or administrator has not consented to use the application.\r\nTrace ID: x")
		}, ErrConsent, "consent missing for scope smtp"},
		{"invalid_scope", func(idp *oauthtest.Server, cfg *Config) {
			cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken())
			idp.FailNext("invalid_scope", "nope")
		}, ErrConsent, "consent missing for scope smtp"},
		{"wrong client secret", func(idp *oauthtest.Server, cfg *Config) {
			idp.ClientSecret = "right-secret-1234"
			cfg.ClientSecret = seed("wrong-secret-5678")
			cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken())
		}, ErrClient, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := oauthtest.NewServer()
			defer idp.Close()
			cfg := testConfig(idp, t.TempDir(), newClock())
			tc.setup(idp, &cfg)
			_, err := mustNew(t, cfg).Token(context.Background())
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("err = %q, want it to contain %q", err, tc.contains)
			}
			var secrets []string
			if cfg.ClientSecret != nil {
				s, _ := cfg.ClientSecret()
				secrets = append(secrets, s)
			}
			if cfg.RefreshTokenSeed != nil {
				s, _ := cfg.RefreshTokenSeed()
				secrets = append(secrets, s)
			}
			assertNoSecret(t, "error", fmt.Sprintf("%v %+v", err, err), secrets...)
			if strings.Contains(err.Error(), "Trace ID") {
				t.Errorf("error keeps the description's later lines: %q", err)
			}
		})
	}
}

// An endpoint that echoes the refresh token in its error description must
// not get it into the error.
func TestErrorScrubsEchoedSecrets(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	rt := idp.IssueRefreshToken()
	idp.FailNext("server_error", "could not use refresh token "+rt)
	cfg := testConfig(idp, t.TempDir(), newClock())
	cfg.RefreshTokenSeed = seed(rt)
	_, err := mustNew(t, cfg).Token(context.Background())
	if err == nil {
		t.Fatal("no error")
	}
	assertNoSecret(t, "error", err.Error(), rt)
	if !strings.Contains(err.Error(), "server_error") {
		t.Fatalf("err = %q", err)
	}
}

func TestSeedTriedWhenCachedTokenRevoked(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	clock := newClock()
	dir := t.TempDir()
	cfg := testConfig(idp, dir, clock)
	cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken())
	if _, err := mustNew(t, cfg).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	idp.RevokeAll()
	clock.Advance(2 * time.Hour)
	cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken()) // the operator put a new one in the variable
	if _, err := mustNew(t, cfg).Token(context.Background()); err != nil {
		t.Fatalf("the new seed was not tried: %v", err)
	}
}

func TestClientCredentials(t *testing.T) {
	idp := oauthtest.NewTLSServer()
	defer idp.Close()
	idp.ClientSecret = "s3cret-value-0001"
	cfg := testConfig(idp, t.TempDir(), newClock())
	cfg.Grant = GrantClientCredentials
	cfg.ClientSecret = seed(idp.ClientSecret)
	s := mustNew(t, cfg)
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !idp.ValidAccess(tok) || idp.Requests("client_credentials") != 1 {
		t.Fatal("no client credentials grant")
	}
	st, _ := s.Status(context.Background())
	if st.RefreshToken || st.Grant != GrantClientCredentials {
		t.Fatalf("status = %+v", st)
	}
	data, _ := os.ReadFile(s.CachePath())
	assertNoSecret(t, "cache", string(data), idp.ClientSecret)
	// A refused token gets a new one by the same grant.
	tok2, err := s.Refresh(context.Background(), tok)
	if err != nil || tok2 == tok || idp.Requests("client_credentials") != 2 {
		t.Fatalf("Refresh = changed %v, %v", tok2 != tok, err)
	}
}

func TestClientCredentialsNeedsSecret(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	cfg := testConfig(idp, t.TempDir(), newClock())
	cfg.Grant = GrantClientCredentials
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "needs a client secret") {
		t.Fatalf("err = %v", err)
	}
}

func TestParallelCallersOneRefresh(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.Rotate = true
	clock := newClock()
	dir := t.TempDir()
	reg := newRegistry()
	rt := idp.IssueRefreshToken()
	// Separate Sources sharing the cache file, like scripts and outbox
	// workers built from the same account.
	srcs := make([]*Source, 20)
	for i := range srcs {
		cfg := testConfig(idp, dir, clock)
		cfg.reg = reg
		cfg.RefreshTokenSeed = seed(rt)
		srcs[i] = mustNew(t, cfg)
	}
	for round, name := range []string{"first use", "expired"} {
		if round == 1 {
			clock.Advance(2 * time.Hour)
		}
		before := idp.Requests("refresh_token")
		var wg sync.WaitGroup
		var fails atomic.Int32
		toks := make([]string, len(srcs))
		start := make(chan struct{})
		for i, s := range srcs {
			wg.Go(func() {
				<-start
				tok, err := s.Token(context.Background())
				if err != nil {
					fails.Add(1)
				}
				toks[i] = tok
			})
		}
		close(start)
		wg.Wait()
		if fails.Load() > 0 {
			t.Fatalf("%s: %d callers failed", name, fails.Load())
		}
		if n := idp.Requests("refresh_token") - before; n != 1 {
			t.Fatalf("%s: %d refreshes, want 1", name, n)
		}
		for _, tok := range toks {
			if tok != toks[0] {
				t.Fatalf("%s: callers got different tokens", name)
			}
		}
	}
}

func TestRefreshRejected(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	cfg := testConfig(idp, t.TempDir(), newClock())
	cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken())
	s := mustNew(t, cfg)
	ctx := context.Background()
	old, err := s.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The server refused old: refresh.
	fresh, err := s.Refresh(ctx, old)
	if err != nil || fresh == old {
		t.Fatalf("Refresh(old) = changed %v, %v", fresh != old, err)
	}
	// A second caller that was refused old too gets fresh, no request.
	n := idp.Requests("refresh_token")
	again, err := s.Refresh(ctx, old)
	if err != nil || again != fresh || idp.Requests("refresh_token") != n {
		t.Fatalf("Refresh(old) after refresh: same %v, requests +%d, %v", again == fresh, idp.Requests("refresh_token")-n, err)
	}
	// Refused fresh: refresh again.
	newest, err := s.Refresh(ctx, fresh)
	if err != nil || newest == fresh || idp.Requests("refresh_token") != n+1 {
		t.Fatalf("Refresh(fresh) = changed %v, %v", newest != fresh, err)
	}
}

func TestEndpointMustBeHTTPS(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://login.example.org/token", true},
		{"http://127.0.0.1:8080/token", true},
		{"http://127.5.6.7/token", true},
		{"http://[::1]:9/token", true},
		{"http://localhost/token", true},
		{"http://idp.example.org/token", false},
		{"http://10.0.0.1/token", false},
		{"ftp://idp.example.org/token", false},
		{"/token", false},
	} {
		err := CheckEndpoint(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckEndpoint(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
		_, err = New(Config{Account: "a", Provider: ProviderGeneric, ClientID: "c", TokenURL: tc.url, CacheDir: t.TempDir()})
		if (err == nil) != tc.ok {
			t.Errorf("New with %q = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}

func TestRedirectToPlainHTTPRefused(t *testing.T) {
	// A loopback endpoint that redirects to a non-loopback http URL.
	srv := oauthtest.NewServer()
	defer srv.Close()
	redirector := http.NewServeMux()
	redirector.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://idp.example.org/token", http.StatusTemporaryRedirect)
	})
	hs := httptestServer(t, redirector)
	cfg := testConfig(srv, t.TempDir(), newClock())
	cfg.TokenURL = hs + "/token"
	cfg.RefreshTokenSeed = seed("rt-abcdef")
	_, err := mustNew(t, cfg).Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "must use https") {
		t.Fatalf("err = %v", err)
	}
}

func TestCacheFileModeAndAtomicWrite(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	dir := filepath.Join(t.TempDir(), "oauth")
	cfg := testConfig(idp, dir, newClock())
	cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken())
	s := mustNew(t, cfg)
	// A temp file left by a crash during an earlier write is ignored.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".acct.json.tmp-123"), []byte(`{"access_to`), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.CachePath())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("cache mode = %o, want 600", perm)
	}
	di, _ := os.Stat(dir)
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Fatalf("cache folder mode = %o, want 700", perm)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != ".acct.json.tmp-123,acct.json,acct.json.lock" {
		t.Fatalf("files = %v: the write left a temp file behind", names)
	}
	// A write replaces the file (new inode), never truncates it in place,
	// so a reader holding the old file sees it whole.
	old, err := os.Open(s.CachePath())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldInfo, _ := old.Stat()
	if _, err := s.Refresh(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	newInfo, _ := os.Stat(s.CachePath())
	if os.SameFile(oldInfo, newInfo) {
		t.Fatal("the cache file was rewritten in place")
	}
	if fi, _ := old.Stat(); fi.Size() != oldInfo.Size() {
		t.Fatal("the old file changed")
	}
}

func TestCorruptCacheReported(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	dir := t.TempDir()
	secretish := "rt-partial-secret-value"
	if err := os.WriteFile(filepath.Join(dir, "acct.json"), []byte(`{"refresh_token":"`+secretish), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := mustNew(t, testConfig(idp, dir, newClock())).Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("err = %v", err)
	}
	assertNoSecret(t, "error", err.Error(), secretish)
}

func TestLogHasNoToken(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.Rotate = true
	var buf bytes.Buffer
	rt := idp.IssueRefreshToken()
	cfg := testConfig(idp, t.TempDir(), newClock())
	cfg.RefreshTokenSeed = seed(rt)
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	s := mustNew(t, cfg)
	tok, err := s.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger.Info("source", "src", s)
	if !strings.Contains(buf.String(), "refresh_token_rotated=true") {
		t.Fatalf("log = %q", buf.String())
	}
	data, _ := os.ReadFile(s.CachePath())
	var secrets = []string{rt, tok}
	if i := strings.Index(string(data), `"refresh_token": "`); i >= 0 {
		secrets = append(secrets, strings.SplitN(string(data)[i+18:], `"`, 2)[0])
	}
	assertNoSecret(t, "log", buf.String(), secrets...)
}

func TestConfigDefaults(t *testing.T) {
	for _, tc := range []struct {
		provider, tenant, grant string
		tokenURL                string
		scopes                  []string
	}{
		{ProviderMicrosoft, "", GrantRefreshToken, "https://login.microsoftonline.com/organizations/oauth2/v2.0/token", MicrosoftScopes},
		{ProviderMicrosoft, "contoso.onmicrosoft.com", GrantClientCredentials, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token", MicrosoftClientCredentialsScopes},
		{ProviderGoogle, "", GrantRefreshToken, "https://oauth2.googleapis.com/token", GoogleScopes},
	} {
		cfg := Config{Account: "a", Provider: tc.provider, Tenant: tc.tenant, Grant: tc.grant, ClientID: "id", CacheDir: t.TempDir(), ClientSecret: seed("x")}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.cfg.endpoint.TokenURL != tc.tokenURL || strings.Join(s.cfg.Scopes, " ") != strings.Join(tc.scopes, " ") {
			t.Errorf("%s/%s: token URL %s, scopes %v", tc.provider, tc.grant, s.cfg.endpoint.TokenURL, s.cfg.Scopes)
		}
		if !s.HasDeviceFlow() == (tc.grant == GrantRefreshToken) {
			t.Errorf("%s/%s: HasDeviceFlow = %v", tc.provider, tc.grant, s.HasDeviceFlow())
		}
	}
	for _, bad := range []Config{
		{Account: "a", Provider: "yahoo", ClientID: "id", CacheDir: "x"},
		{Account: "a", Provider: ProviderGeneric, ClientID: "id", CacheDir: "x"},
		{Account: "a", Provider: ProviderGoogle, Grant: "password", ClientID: "id", CacheDir: "x"},
		{Account: "a", Provider: ProviderGoogle, CacheDir: "x"},
		{Account: "../a", Provider: ProviderGoogle, ClientID: "id", CacheDir: "x"},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

// Two "processes" (separate registries) on one state_dir, with an IdP that
// revokes a refresh token once used: the file lock lets only one refresh,
// and the other process uses the token it stored.
func TestTwoProcessesOneRefresh(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.Rotate = true
	clock := newClock()
	dir := t.TempDir()
	rt := idp.IssueRefreshToken()
	var srcs []*Source
	for _, reg := range []*registry{newRegistry(), newRegistry()} {
		for range 5 {
			cfg := testConfig(idp, dir, clock)
			cfg.reg = reg
			cfg.RefreshTokenSeed = seed(rt)
			srcs = append(srcs, mustNew(t, cfg))
		}
	}
	errs := make([]error, len(srcs))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range srcs {
		wg.Go(func() {
			<-start
			_, errs[i] = s.Token(context.Background())
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := idp.Requests("refresh_token"); n != 1 {
		t.Fatalf("%d refreshes, want 1", n)
	}
}

// When the cache cannot be written, the rotated refresh token is kept in
// memory: the failure is reported once, later calls use the new tokens,
// and the next write stores them.
func TestCacheWriteFailureKeepsRotatedToken(t *testing.T) {
	idp := oauthtest.NewServer()
	defer idp.Close()
	idp.Rotate = true
	clock := newClock()
	cfg := testConfig(idp, t.TempDir(), clock)
	cfg.RefreshTokenSeed = seed(idp.IssueRefreshToken())
	s := mustNew(t, cfg)
	ctx := context.Background()
	if _, err := s.Token(ctx); err != nil {
		t.Fatal(err)
	}
	// Make writes fail, as on a full disk.
	clock.Advance(2 * time.Hour)
	writeCacheFile = func(string, *cached) (os.FileInfo, error) {
		return nil, errors.New("write token cache: no space left on device")
	}
	defer func() { writeCacheFile = writeCache }()
	_, err := s.Token(ctx)
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("err = %v", err)
	}
	tok, err := s.Token(ctx)
	if err != nil || !idp.ValidAccess(tok) {
		t.Fatalf("after a failed write: %v", err)
	}
	writeCacheFile = writeCache
	// The next refresh uses the rotated refresh token kept in memory.
	clock.Advance(2 * time.Hour)
	if _, err := s.Token(ctx); err != nil {
		t.Fatalf("refresh with the kept token: %v", err)
	}
	if n := idp.Requests("refresh_token"); n != 3 {
		t.Fatalf("refreshes = %d, want 3", n)
	}
	onDisk, _, err := readCache(s.CachePath())
	if err != nil || !idp.ValidRefresh(onDisk.RefreshToken) {
		t.Fatalf("the cache does not hold the valid refresh token: %v", err)
	}
}
