// Package oauthtest is a fake OAuth2 token endpoint for tests: refresh
// token, client credentials and device authorization grants, token
// rotation, scripted errors, and a check of the access tokens it issued
// (for a test SMTP server that demands XOAUTH2 or OAUTHBEARER).
package oauthtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Server is a fake identity provider. Set its fields before the first
// request; the methods are safe for concurrent use.
type Server struct {
	*httptest.Server

	// ClientID is required in every request; ClientSecret, when set, too.
	ClientID     string
	ClientSecret string
	// ExpiresIn is the lifetime of issued access tokens (default 1 h).
	ExpiresIn time.Duration
	// Rotate makes every refresh issue a new refresh token and revoke the
	// old one.
	Rotate bool
	// Scope is returned as the granted scope when set.
	Scope string
	// DeviceSteps are the answers to device-code polls before the token is
	// issued ("authorization_pending", "slow_down", "access_denied", ...).
	DeviceSteps []string
	// DeviceInterval is the poll interval announced, in seconds (default 1).
	DeviceInterval int

	mu          sync.Mutex
	refresh     map[string]bool      // refresh tokens currently valid
	issuedRT    []string             // every refresh token ever issued
	access      map[string]time.Time // access token -> expiry
	nextErr     []errAnswer
	requests    map[string]int // per grant type
	deviceCodes map[string]int // device code -> polls so far
}

type errAnswer struct{ code, desc string }

// Paths served.
const (
	TokenPath  = "/token"
	DevicePath = "/device"
)

// NewServer starts a plain-http server on loopback.
func NewServer() *Server {
	s := newServer()
	s.Server = httptest.NewServer(s.handler())
	return s
}

// NewTLSServer starts an https server on loopback; use its Client().
func NewTLSServer() *Server {
	s := newServer()
	s.Server = httptest.NewTLSServer(s.handler())
	return s
}

func newServer() *Server {
	return &Server{ClientID: "mailbot-test", refresh: map[string]bool{}, access: map[string]time.Time{},
		requests: map[string]int{}, deviceCodes: map[string]int{}}
}

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL + TokenPath }

// DeviceURL is the device authorization endpoint.
func (s *Server) DeviceURL() string { return s.URL + DevicePath }

// IssueRefreshToken makes a valid refresh token, as a past login would.
func (s *Server) IssueRefreshToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := newToken("rt")
	s.refresh[rt] = true
	s.issuedRT = append(s.issuedRT, rt)
	return rt
}

// RevokeAccess invalidates every access token issued so far; refresh
// tokens stay valid (as when a server stops accepting a token early).
func (s *Server) RevokeAccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.access {
		s.access[t] = time.Time{}
	}
}

// RefreshTokens returns every refresh token issued so far, valid or not
// (for scans of files that must not contain one).
func (s *Server) RefreshTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issuedRT...)
}

// RevokeAll invalidates every refresh and access token.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh = map[string]bool{}
	s.access = map[string]time.Time{}
}

// ValidAccess reports whether tok is an unexpired access token this server
// issued.
func (s *Server) ValidAccess(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[tok]
	return ok && time.Now().Before(exp)
}

// ValidRefresh reports whether rt is a currently valid refresh token.
func (s *Server) ValidRefresh(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh[rt]
}

// SetDeviceSteps replaces DeviceSteps once the server is in use.
func (s *Server) SetDeviceSteps(steps ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.DeviceSteps = steps
}

// FailNext makes the next token or device authorization request fail with the OAuth2 error code
// and description.
func (s *Server) FailNext(code, desc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextErr = append(s.nextErr, errAnswer{code, desc})
}

// Requests returns how many token requests used the grant type
// ("refresh_token", "client_credentials", "device_code", "device_authorization").
func (s *Server) Requests(grant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[grant]
}

// AccessTokens returns every access token issued so far (for scans of
// files that must not contain one).
func (s *Server) AccessTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.access))
	for t := range s.access {
		out = append(out, t)
	}
	return out
}

func newToken(prefix string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+TokenPath, s.token)
	mux.HandleFunc("POST "+DevicePath, s.device)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func oauthErr(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// client checks the client credentials (form or Basic auth).
func (s *Server) client(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	return id == s.ClientID && secret == s.ClientSecret
}

func (s *Server) issue(w http.ResponseWriter, withRefresh string) {
	exp := s.ExpiresIn
	if exp == 0 {
		exp = time.Hour
	}
	at := newToken("at")
	s.access[at] = time.Now().Add(exp)
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(exp / time.Second)}
	if withRefresh != "" {
		resp["refresh_token"] = withRefresh
	}
	if s.Scope != "" {
		resp["scope"] = s.Scope
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthErr(w, 400, "invalid_request", "bad form")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	grant := r.PostForm.Get("grant_type")
	if grant == "urn:ietf:params:oauth:grant-type:device_code" {
		grant = "device_code"
	}
	s.requests[grant]++
	if !s.client(r) {
		oauthErr(w, 401, "invalid_client", "unknown client or wrong secret")
		return
	}
	if len(s.nextErr) > 0 {
		e := s.nextErr[0]
		s.nextErr = s.nextErr[1:]
		oauthErr(w, 400, e.code, e.desc)
		return
	}
	switch grant {
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		if !s.refresh[rt] {
			oauthErr(w, 400, "invalid_grant", "AADSTS70000: The provided refresh token is invalid or expired.")
			return
		}
		if s.Rotate {
			delete(s.refresh, rt)
			nrt := newToken("rt")
			s.refresh[nrt] = true
			s.issuedRT = append(s.issuedRT, nrt)
			s.issue(w, nrt)
			return
		}
		s.issue(w, "")
	case "client_credentials":
		if s.ClientSecret == "" {
			oauthErr(w, 401, "invalid_client", "client credentials need a secret")
			return
		}
		s.issue(w, "")
	case "device_code":
		dc := r.PostForm.Get("device_code")
		n, ok := s.deviceCodes[dc]
		if !ok {
			oauthErr(w, 400, "invalid_grant", "unknown device code")
			return
		}
		s.deviceCodes[dc] = n + 1
		if n < len(s.DeviceSteps) {
			oauthErr(w, 400, s.DeviceSteps[n], "step")
			return
		}
		delete(s.deviceCodes, dc)
		rt := newToken("rt")
		s.refresh[rt] = true
		s.issuedRT = append(s.issuedRT, rt)
		s.issue(w, rt)
	default:
		oauthErr(w, 400, "unsupported_grant_type", grant)
	}
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthErr(w, 400, "invalid_request", "bad form")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests["device_authorization"]++
	if r.PostForm.Get("client_id") != s.ClientID {
		oauthErr(w, 401, "invalid_client", "unknown client")
		return
	}
	if len(s.nextErr) > 0 {
		e := s.nextErr[0]
		s.nextErr = s.nextErr[1:]
		oauthErr(w, 400, e.code, e.desc)
		return
	}
	dc := newToken("dc")
	s.deviceCodes[dc] = 0
	interval := s.DeviceInterval
	if interval == 0 {
		interval = 1
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code":      dc,
		"user_code":        "WDJB-MJHT",
		"verification_uri": s.URL + "/activate",
		"expires_in":       900,
		"interval":         interval,
	})
}
