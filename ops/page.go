package ops

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mailbot/mailbot/engine"
)

//go:embed page.tmpl
var pageTemplate string

//go:embed page.css
var pageCSS string

// pageCSP lets the page load nothing but its own inline style sheet and
// post its forms to itself.
var pageCSP = "default-src 'none'; style-src 'sha256-" + cssHash() + "'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func cssHash() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return base64.StdEncoding.EncodeToString(sum[:])
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"when":  fmtTime,
	"whenp": fmtTimePtr,
	"ms":    fmtMS,
	"short": shortHash,
	"join":  func(s []string) string { return strings.Join(s, ", ") },
}).Parse(pageTemplate))

// DefaultPageRefresh is how often the status page reloads itself.
const DefaultPageRefresh = 10 * time.Second

// flashCookie carries the outcome of a button to the page it redirects to.
const flashCookie = "mailbot_flash"

// PageOptions configures PageHandler.
type PageOptions struct {
	// Refresh is how often the page reloads itself: 0 means
	// DefaultPageRefresh, a negative value turns reloading off.
	Refresh time.Duration
	// CSRFToken returns the CSRF token of the requests of whoever sent r
	// (the ops Server's CSRFToken). The forms carry it in the field
	// "csrf_token", and a button's POST is refused (403) unless it carries
	// the token CSRFToken returns for that POST. Nil means one random token
	// for the life of the handler.
	CSRFToken func(r *http.Request) string
	// Logger logs failed actions; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// PageHandler serves the status page for people at "/" (GET or HEAD) and
// the POST targets of its buttons: /ui/fire, /ui/dead/retry and
// /ui/dead/delete, each with form fields id and csrf_token. A button's POST
// redirects back to "/" (303 See Other) with the outcome shown once as a
// flash message. Posts are refused (403) without the CSRF token, and
// when a browser says they come from another origin. Mount it at "/" of
// the ops server, behind its authentication.
func PageHandler(b Backend, opts PageOptions) http.Handler {
	if opts.Refresh == 0 {
		opts.Refresh = DefaultPageRefresh
	}
	if opts.CSRFToken == nil {
		tok := randomToken()
		opts.CSRFToken = func(*http.Request) string { return tok }
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &page{b: b, opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.serve)
	// Browsers say where a POST comes from (Sec-Fetch-Site, Origin):
	// cross-origin ones are refused before the token is even looked at.
	cop := http.NewCrossOriginProtection()
	mux.Handle("POST /ui/fire", cop.Handler(p.action(p.fire)))
	mux.Handle("POST /ui/dead/retry", cop.Handler(p.action(p.retry)))
	mux.Handle("POST /ui/dead/delete", cop.Handler(p.action(p.delete)))
	return mux
}

type page struct {
	b    Backend
	opts PageOptions
}

// flash is a button's outcome, shown once on the next page.
type flash struct {
	OK   bool   `json:"ok"`
	Text string `json:"text"`
}

// pageData is what page.tmpl renders.
type pageData struct {
	S              Status
	Err            string
	Flash          *flash
	CSRF           string
	CSS            template.CSS
	RefreshSeconds int
	Now            time.Time
	LoadErrors     int
}

func (p *page) serve(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := pageData{CSRF: p.opts.CSRFToken(r), CSS: template.CSS(pageCSS), Now: p.opts.Now()}
	if p.opts.Refresh > 0 {
		d.RefreshSeconds = max(1, int(p.opts.Refresh/time.Second))
	}
	st, err := p.b.Status(ctx)
	code := http.StatusOK
	if err != nil {
		d.Err = err.Error()
		code = http.StatusServiceUnavailable
	} else {
		d.S = st
	}
	for _, s := range d.S.Scripts {
		if s.LoadError != "" {
			d.LoadErrors++
		}
	}
	if c, err := r.Cookie(flashCookie); err == nil {
		d.Flash = decodeFlash(c.Value)
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		p.opts.Logger.Error("status page: rendering failed", "err", err)
		http.Error(w, "status page: rendering failed", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// action wraps a button's handler: form parsing, the CSRF check, and the
// redirect back to the page with the outcome as a flash message.
func (p *page) action(do func(ctx context.Context, id string) flash) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
			return
		}
		if !validCSRF(r.PostForm.Get("csrf_token"), p.opts.CSRFToken(r)) {
			http.Error(w, "missing or invalid CSRF token: reload the status page and try again", http.StatusForbidden)
			return
		}
		id := r.PostForm.Get("id")
		var f flash
		if id == "" {
			f = flash{Text: "no id given"}
		} else {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
			f = do(ctx, id)
			cancel()
		}
		if !f.OK {
			p.opts.Logger.Warn("status page: action failed", "path", r.URL.Path, "id", id, "outcome", f.Text)
		}
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: encodeFlash(f), Path: "/", MaxAge: 60, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}
}

func (p *page) fire(ctx context.Context, id string) flash {
	ti, err := p.b.Fire(ctx, id)
	if err != nil {
		return flash{Text: fmt.Sprintf("fire %s failed: %v", id, err)}
	}
	return fireFlash(id, ti)
}

// fireFlash says how a fired run went: "fired x#y: ok in 12 ms".
func fireFlash(id string, ti engine.TriggerInfo) flash {
	if ti.ID != "" {
		id = ti.ID
	}
	outcome := ti.LastOutcome
	if outcome == "" {
		outcome = "done"
	}
	text := "fired " + id + ": " + outcome
	if ti.LastDurationMS != nil {
		text += fmt.Sprintf(" in %d ms", *ti.LastDurationMS)
	}
	if ti.LastError != "" {
		text += ": " + ti.LastError
	}
	return flash{OK: outcome == engine.RunOK || outcome == "done", Text: text}
}

func (p *page) retry(ctx context.Context, id string) flash {
	if err := p.b.RetryDead(ctx, id); err != nil {
		return flash{Text: fmt.Sprintf("retry %s failed: %v", id, err)}
	}
	return flash{OK: true, Text: "dead letter " + id + " queued again for delivery"}
}

func (p *page) delete(ctx context.Context, id string) flash {
	if err := p.b.DeleteDead(ctx, id); err != nil {
		return flash{Text: fmt.Sprintf("delete %s failed: %v", id, err)}
	}
	return flash{OK: true, Text: "dead letter " + id + " deleted"}
}

// randomToken returns 32 random bytes, base64url-encoded.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// validCSRF reports whether the token sent matches the one expected.
func validCSRF(sent, want string) bool {
	return sent != "" && want != "" && subtle.ConstantTimeCompare([]byte(sent), []byte(want)) == 1
}

func encodeFlash(f flash) string {
	if len(f.Text) > 1500 { // a cookie holds about 4 KiB
		f.Text = f.Text[:1500] + "…"
	}
	b, _ := json.Marshal(f)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeFlash(v string) *flash {
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil
	}
	var f flash
	if err := json.Unmarshal(b, &f); err != nil || f.Text == "" {
		return nil
	}
	return &f
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return fmtTime(*t)
}

func fmtMS(d *int64) string {
	if d == nil {
		return "—"
	}
	return fmt.Sprintf("%d ms", *d)
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
