package ops

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Auth is the credentials the server asks for. The zero value asks for
// none (allowed on loopback only; the config check enforces that).
type Auth struct {
	// Username and Password, when Username is set, require HTTP basic
	// authentication.
	Username, Password string
	// Token, when set, requires "Authorization: Bearer <token>".
	Token string
}

// enabled reports whether a credential is required.
func (a Auth) enabled() bool { return a.Username != "" || a.Token != "" }

// Options configures a Server.
type Options struct {
	// Backend is the daemon the server reads and steers. Required.
	Backend Backend
	// Metrics is served on /metrics; nil serves none.
	Metrics *Metrics
	// Auth is the credentials required (see Auth); SetAuth changes it.
	Auth Auth
	// Logger receives request errors; nil discards.
	Logger *slog.Logger
}

// Server is the operations HTTP endpoint. Routes:
//
//	GET  /healthz                 200 while the process serves (no auth)
//	GET  /readyz                  200 once ready, else 503 {"ready":false,"reason":...} (no auth)
//	GET  /metrics                 Prometheus text format
//	GET  /api/status              Status as JSON
//	GET  /api/csrf                {"token": "..."}: the CSRF token for POSTs
//	POST /api/fire                {"id": "<script>#<n>"}: fire a trigger now
//	POST /api/dead/{id}/retry     requeue a dead letter
//	POST /api/dead/{id}/delete    delete a dead letter
//	GET  /                        the status page (page.go)
//
// POST bodies may be JSON or a form (fields id, csrf_token).
type Server struct {
	opts    Options
	auth    atomic.Pointer[Auth]
	csrfKey []byte
	mux     *http.ServeMux
	log     *slog.Logger
}

// pageRoutes, when set (by page.go's init), registers the status page's
// routes (GET /{$} and whatever it needs) on the server's mux. Handlers
// registered there run behind the same authentication as the API; forms
// posting to the /api/... routes must carry the CSRF token
// (s.CSRFToken(r)) in a hidden "csrf_token" field, and may send a
// "redirect" field (a path starting with "/") to be redirected there
// with 303 See Other after success instead of getting JSON.
var pageRoutes func(s *Server, mux *http.ServeMux)

// NewServer returns a server for opts.
func NewServer(opts Options) (*Server, error) {
	if opts.Backend == nil {
		return nil, errors.New("ops: Options.Backend is required")
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.csrfKey = make([]byte, 32)
	if _, err := rand.Read(s.csrfKey); err != nil {
		return nil, fmt.Errorf("ops: CSRF key: %w", err)
	}
	a := opts.Auth
	s.auth.Store(&a)
	s.routes()
	return s, nil
}

// Backend returns the server's backend, for the status page.
func (s *Server) Backend() Backend { return s.opts.Backend }

// SetAuth replaces the required credentials, for a config reload.
func (s *Server) SetAuth(a Auth) { s.auth.Store(&a) }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	m.HandleFunc("GET /readyz", s.handleReady)
	if s.opts.Metrics != nil {
		m.Handle("GET /metrics", s.authed(promhttp.HandlerFor(s.opts.Metrics.Registry(), promhttp.HandlerOpts{})))
	}
	m.Handle("GET /api/status", s.authed(http.HandlerFunc(s.handleStatus)))
	m.Handle("GET /api/csrf", s.authed(http.HandlerFunc(s.handleCSRF)))
	m.Handle("POST /api/fire", s.authed(s.csrf(http.HandlerFunc(s.handleFire))))
	m.Handle("POST /api/dead/{id}/retry", s.authed(s.csrf(http.HandlerFunc(s.handleRetry))))
	m.Handle("POST /api/dead/{id}/delete", s.authed(s.csrf(http.HandlerFunc(s.handleDelete))))
	if pageRoutes != nil {
		page := http.NewServeMux()
		pageRoutes(s, page)
		// Only the page's paths: any other path stays with this mux (404,
		// or 405 for an API path asked with the wrong method).
		m.Handle("GET /{$}", s.authed(page))
		m.Handle("/ui/", s.authed(page))
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

// Serve serves on ln until ctx is done, then shuts down within 5 seconds.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		case <-done:
		}
	}()
	err := hs.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("ops: serving: %w", err)
}

// authed requires the configured credentials. Without auth configured
// (loopback only), it still refuses Host headers that are not an IP
// address or localhost, so a DNS-rebinding page cannot reach the API.
func (s *Server) authed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.auth.Load()
		if !a.enabled() {
			if !localHost(r.Host) {
				http.Error(w, "forbidden: unexpected Host header", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		if !checkAuth(a, r) {
			if a.Token != "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mailbot"`)
			} else {
				w.Header().Set("WWW-Authenticate", `Basic realm="mailbot", charset="UTF-8"`)
			}
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// checkAuth compares the request's credentials with a in constant time.
func checkAuth(a *Auth, r *http.Request) bool {
	if a.Token != "" {
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		return ok && equal(tok, a.Token)
	}
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	// Both compared, always, so timing says nothing about which failed.
	uok, pok := equal(u, a.Username), equal(p, a.Password)
	return uok && pok
}

// equal compares a and b in constant time (hashing first hides the length).
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

func localHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return host == "localhost" || net.ParseIP(host) != nil
}

// CSRFToken returns the token POST requests must carry (form field
// "csrf_token" or header "X-CSRF-Token") for the requester of r: an HMAC
// of its credentials under a per-process key, so it is bound to the
// login and needs no cookie.
func (s *Server) CSRFToken(r *http.Request) string {
	mac := hmac.New(sha256.New, s.csrfKey)
	mac.Write([]byte("mailbot-csrf\x00" + r.Header.Get("Authorization")))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// csrf refuses a request without a valid CSRF token with 403, and
// cross-origin browser requests as well.
func (s *Server) csrf(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("X-CSRF-Token")
		if tok == "" && isForm(r) {
			tok = r.PostFormValue("csrf_token")
		}
		if tok == "" || !hmac.Equal([]byte(tok), []byte(s.CSRFToken(r))) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "missing or invalid CSRF token (GET /api/csrf)"})
			return
		}
		h.ServeHTTP(w, r)
	}))
}

func isForm(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/x-www-form-urlencoded") || strings.HasPrefix(ct, "multipart/form-data")
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	st, err := s.opts.Backend.Status(r.Context())
	switch {
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "status: " + err.Error()})
	case !st.Ready:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": st.ReadyReason})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	}
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.opts.Backend.Status(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleCSRF(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"token": s.CSRFToken(r)})
}

func (s *Server) handleFire(w http.ResponseWriter, r *http.Request) {
	id, err := fireID(w, r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if id == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "missing trigger id: want {\"id\": \"<script>#<n>\"} or the form field id"})
		return
	}
	ti, err := s.opts.Backend.Fire(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.done(w, r, ti)
}

// fireID reads the trigger ID of POST /api/fire: a JSON object
// {"id": ...} or a form with the field id, whatever the Content-Type
// says (curl -d sends JSON as a form).
func fireID(w http.ResponseWriter, r *http.Request) (string, error) {
	if r.PostForm != nil { // parsed already, for its CSRF token
		return r.PostForm.Get("id"), nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<16))
	if err != nil {
		return "", fmt.Errorf("reading the body: %w", err)
	}
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '{' {
		var req struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return "", fmt.Errorf("want a JSON body {\"id\": \"<script>#<n>\"}: %w", err)
		}
		return req.ID, nil
	}
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return "", fmt.Errorf("want a JSON body or a form: %w", err)
	}
	return vals.Get("id"), nil
}

func (s *Server) handleRetry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Backend.RetryDead(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.done(w, r, map[string]string{"id": id, "result": "requeued"})
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.opts.Backend.DeleteDead(r.Context(), id); err != nil {
		s.fail(w, r, err)
		return
	}
	s.done(w, r, map[string]string{"id": id, "result": "deleted"})
}

// done answers a successful POST: a redirect for a form that asks for
// one, else v as JSON.
func (s *Server) done(w http.ResponseWriter, r *http.Request, v any) {
	if isForm(r) {
		if to := r.PostFormValue("redirect"); strings.HasPrefix(to, "/") && !strings.HasPrefix(to, "//") && !strings.Contains(to, "\\") {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrBadRequest):
		code = http.StatusBadRequest
	default:
		s.log.Error("ops: request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// ErrBadRequest is wrapped by Backend methods when the request cannot be
// done as asked (a file trigger fired without a file); the server answers
// 400.
var ErrBadRequest = errors.New("bad request")

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
