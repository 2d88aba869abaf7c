package oauth

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// registry holds one entry per cache file, so every Source of the process
// that uses the same file shares its lock and its in-memory token.
type registry struct {
	mu      sync.Mutex
	entries map[string]*entry
}

func newRegistry() *registry { return &registry{entries: make(map[string]*entry)} }

// processRegistry is shared by all Sources of the process.
var processRegistry = newRegistry()

func (r *registry) get(path string) *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[path]
	if !ok {
		e = &entry{path: path, lock: make(chan struct{}, 1)}
		r.entries[path] = e
	}
	return e
}

// entry is the shared state of one cache file. lock is held (a value in
// the channel) while the token is read, refreshed or written; waiting for
// it honours the caller's context.
type entry struct {
	path string
	lock chan struct{}
	// Guarded by lock:
	tok  *cached
	info os.FileInfo // of the file when tok was read or written
	// dirty: tok is newer than the file, whose write failed. tok is kept
	// (it may hold the only valid, rotated refresh token) and written
	// again with the next store.
	dirty bool
}

func (e *entry) acquire(ctx context.Context) error {
	select {
	case e.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *entry) release() { <-e.lock }

// load returns the cached token, re-reading the file when another process
// (or a login) changed it since it was last seen. Called with lock held.
func (e *entry) load() (*cached, error) {
	if e.dirty {
		return e.tok, nil
	}
	if e.tok != nil {
		fi, err := os.Stat(e.path)
		if err == nil && e.info != nil && os.SameFile(fi, e.info) && fi.ModTime().Equal(e.info.ModTime()) && fi.Size() == e.info.Size() {
			return e.tok, nil
		}
		if err != nil && e.info == nil && os.IsNotExist(err) {
			return e.tok, nil
		}
	}
	c, fi, err := readCache(e.path)
	if err != nil {
		return nil, err
	}
	e.tok, e.info = c, fi
	return c, nil
}

// writeCacheFile is writeCache; tests replace it to make writes fail.
var writeCacheFile = writeCache

// store writes c to the file and keeps it. Called with lock held.
func (e *entry) store(c *cached) error {
	fi, err := writeCacheFile(e.path, c)
	if err != nil {
		e.tok, e.dirty = c, true
		return err
	}
	e.tok, e.info, e.dirty = c, fi, false
	return nil
}

// Source supplies access tokens for one account. It implements the method
// set of smtp.TokenSource. It is safe for concurrent use.
type Source struct {
	cfg *resolved
	e   *entry
}

// New checks cfg and returns its Source. It does not contact the token
// endpoint or read the cache.
func New(cfg Config) (*Source, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	path, err := filepath.Abs(filepath.Join(r.CacheDir, r.Account+".json"))
	if err != nil {
		return nil, fmt.Errorf("oauth account %s: cache path: %w", r.Account, err)
	}
	return &Source{cfg: r, e: r.reg.get(path)}, nil
}

// String describes the source without any secret.
func (s *Source) String() string {
	return fmt.Sprintf("oauth2 account %s (%s, %s)", s.cfg.Account, s.cfg.Provider, s.cfg.Grant)
}

// GoString is String, so %#v shows no token either.
func (s *Source) GoString() string { return s.String() }

// LogValue is String, for slog.
func (s *Source) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Account returns the account name.
func (s *Source) Account() string { return s.cfg.Account }

// Grant returns the grant in use.
func (s *Source) Grant() string { return s.cfg.Grant }

// CachePath returns the token cache file.
func (s *Source) CachePath() string { return s.e.path }

// HasDeviceFlow reports whether DeviceLogin can work for this account: the
// grant is refresh_token and a device authorization URL is known.
func (s *Source) HasDeviceFlow() bool {
	return s.cfg.Grant == GrantRefreshToken && s.cfg.endpoint.DeviceAuthURL != ""
}

// usable reports whether c's access token may be used now.
func (s *Source) usable(c *cached) bool {
	if c.AccessToken == "" {
		return false
	}
	if c.Expiry.IsZero() {
		return true // the endpoint did not say; use it until refused
	}
	return s.cfg.Now().Add(ExpiryMargin).Before(c.Expiry)
}

// Token returns an access token that is valid for at least ExpiryMargin,
// refreshing it first when needed.
func (s *Source) Token(ctx context.Context) (string, error) {
	return s.get(ctx, nil)
}

// Refresh is called after the server refused the access token rejected.
// If the cached token is still rejected it is refreshed; if another caller
// (of this process or another) has refreshed it meanwhile, the newer token
// is returned without a request.
func (s *Source) Refresh(ctx context.Context, rejected string) (string, error) {
	return s.get(ctx, &rejected)
}

// fresh reports whether c's access token can be handed out: usable, and
// not the one the server refused.
func (s *Source) fresh(c *cached, rejected *string) bool {
	if !s.usable(c) {
		return false
	}
	return rejected == nil || subtle.ConstantTimeCompare([]byte(c.AccessToken), []byte(*rejected)) == 0
}

func (s *Source) get(ctx context.Context, rejected *string) (string, error) {
	if err := s.e.acquire(ctx); err != nil {
		return "", err
	}
	defer s.e.release()
	c, err := s.e.load()
	if err != nil {
		return "", s.cacheError(err)
	}
	if s.fresh(c, rejected) {
		return c.AccessToken, nil
	}
	// Other processes with the same state_dir: one refresh at a time, and
	// whoever waited sees the token the other one stored.
	unlock, err := lockFile(ctx, s.e.path+".lock")
	if err != nil {
		return "", s.cacheError(err)
	}
	defer unlock()
	if c, err = s.e.load(); err != nil {
		return "", s.cacheError(err)
	}
	if s.fresh(c, rejected) {
		return c.AccessToken, nil
	}
	return s.refreshLocked(ctx, c)
}

func (s *Source) cacheError(err error) error {
	return &Error{Account: s.cfg.Account, Kind: KindCache, Msg: fmt.Sprintf("oauth account %s", s.cfg.Account), Err: err}
}

// httpContext carries the HTTP client to x/oauth2.
func (s *Source) httpContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
}

// clientSecret reads the client secret; "" for a public client.
func (s *Source) clientSecret() (string, error) {
	if s.cfg.ClientSecret == nil {
		return "", nil
	}
	sec, err := s.cfg.ClientSecret()
	if err != nil {
		return "", &Error{Account: s.cfg.Account, Kind: KindSecret, Msg: fmt.Sprintf("oauth account %s: client secret", s.cfg.Account), Err: err}
	}
	if sec == "" {
		return "", &Error{Account: s.cfg.Account, Kind: KindSecret, Msg: fmt.Sprintf("oauth account %s: the client secret is empty", s.cfg.Account)}
	}
	return sec, nil
}

func (s *Source) oauth2Config(secret string) *oauth2.Config {
	return &oauth2.Config{ClientID: s.cfg.ClientID, ClientSecret: secret, Endpoint: s.cfg.endpoint, Scopes: s.cfg.Scopes}
}

// refreshLocked gets a new access token with the configured grant and
// stores it. Called with the entry's lock held.
func (s *Source) refreshLocked(ctx context.Context, c *cached) (string, error) {
	secret, err := s.clientSecret()
	if err != nil {
		return "", err
	}
	if s.cfg.Grant == GrantClientCredentials {
		cc := &clientcredentials.Config{ClientID: s.cfg.ClientID, ClientSecret: secret, TokenURL: s.cfg.endpoint.TokenURL,
			Scopes: s.cfg.Scopes, AuthStyle: s.cfg.endpoint.AuthStyle}
		tok, err := cc.Token(s.httpContext(ctx))
		if err != nil {
			return "", s.endpointError(err, "client credentials grant", secret)
		}
		return s.save(tok, "", false)
	}

	// Refresh-token grant: the cached refresh token first; the seed when
	// the cache has none, or when the cached one was refused and the seed
	// holds a different (newer) one.
	candidates := []string{}
	if c.RefreshToken != "" {
		candidates = append(candidates, c.RefreshToken)
	}
	if s.cfg.RefreshTokenSeed != nil {
		seed, err := s.cfg.RefreshTokenSeed()
		if err != nil && len(candidates) == 0 {
			return "", &Error{Account: s.cfg.Account, Kind: KindSecret, Msg: fmt.Sprintf("oauth account %s: refresh token seed", s.cfg.Account), Err: err}
		}
		if seed = strings.TrimSpace(seed); err == nil && seed != "" && seed != c.RefreshToken {
			candidates = append(candidates, seed)
		}
	}
	if len(candidates) == 0 {
		return "", &Error{Account: s.cfg.Account, Kind: KindNoRefreshToken,
			Msg: fmt.Sprintf("no refresh token for account %s: %s", s.cfg.Account, loginHint(s.cfg.Account))}
	}
	var lastErr error
	for _, rt := range candidates {
		ts := s.oauth2Config(secret).TokenSource(s.httpContext(ctx), &oauth2.Token{RefreshToken: rt})
		tok, err := ts.Token()
		if err != nil {
			lastErr = s.endpointError(err, "refresh", secret, rt, c.AccessToken)
			if e, ok := lastErr.(*Error); ok && e.Kind == KindInvalidGrant {
				continue // try the seed, if there is one
			}
			return "", lastErr
		}
		return s.save(tok, rt, true)
	}
	return "", lastErr
}

// save stores a token the endpoint returned. usedRT is the refresh token
// the request was made with; a rotated one replaces it in the same write.
func (s *Source) save(tok *oauth2.Token, usedRT string, refreshed bool) (string, error) {
	if tok.AccessToken == "" {
		return "", &Error{Account: s.cfg.Account, Kind: KindEndpoint, Msg: fmt.Sprintf("oauth account %s: the token endpoint returned no access token", s.cfg.Account)}
	}
	next := &cached{
		Grant:        s.cfg.Grant,
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		Expiry:       tok.Expiry,
		RefreshToken: tok.RefreshToken,
		Scopes:       grantedScopes(tok, s.cfg.Scopes),
		Updated:      s.cfg.Now().UTC(),
	}
	if tok.ExpiresIn > 0 {
		// By our clock: x/oauth2 computes Expiry with time.Now.
		next.Expiry = s.cfg.Now().Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	if next.RefreshToken == "" {
		next.RefreshToken = usedRT
	}
	if s.cfg.Grant == GrantClientCredentials {
		next.RefreshToken = ""
	}
	if err := s.e.store(next); err != nil {
		return "", s.cacheError(err)
	}
	if l := s.cfg.Logger; l != nil {
		attrs := []any{"account", s.cfg.Account, "grant", s.cfg.Grant}
		if !next.Expiry.IsZero() {
			attrs = append(attrs, "expires", next.Expiry.UTC().Format(time.RFC3339))
		}
		if refreshed {
			attrs = append(attrs, "refresh_token_rotated", usedRT != "" && next.RefreshToken != usedRT)
		}
		l.Info("oauth2 access token obtained", attrs...)
	}
	return next.AccessToken, nil
}

// grantedScopes reads the "scope" field of a token response.
func grantedScopes(tok *oauth2.Token, requested []string) []string {
	if s, ok := tok.Extra("scope").(string); ok && strings.TrimSpace(s) != "" {
		return strings.Fields(s)
	}
	return append([]string(nil), requested...)
}

// Status is what is known about an account's cached tokens. It never
// holds a token.
type Status struct {
	Account  string
	Provider string
	Grant    string
	// Scopes are the granted scopes (or the configured ones when nothing
	// is cached).
	Scopes []string
	// AccessToken reports whether an access token is cached;
	// AccessTokenExpiry is its expiry (zero: unknown or none).
	AccessToken       bool
	AccessTokenExpiry time.Time
	// RefreshToken reports whether a refresh token is cached.
	RefreshToken bool
	// Updated is when the cache was last written; CachePath the file.
	Updated   time.Time
	CachePath string
}

// Status reads the cache (without contacting the endpoint).
func (s *Source) Status(ctx context.Context) (Status, error) {
	st := Status{Account: s.cfg.Account, Provider: s.cfg.Provider, Grant: s.cfg.Grant,
		Scopes: append([]string(nil), s.cfg.Scopes...), CachePath: s.e.path}
	if err := s.e.acquire(ctx); err != nil {
		return st, err
	}
	defer s.e.release()
	c, err := s.e.load()
	if err != nil {
		return st, s.cacheError(err)
	}
	if len(c.Scopes) > 0 {
		st.Scopes = append([]string(nil), c.Scopes...)
	}
	st.AccessToken = c.AccessToken != ""
	st.AccessTokenExpiry = c.Expiry
	st.RefreshToken = c.RefreshToken != ""
	st.Updated = c.Updated
	return st, nil
}
