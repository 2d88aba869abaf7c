package ops

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/engine"
)

// pageBackend is a Backend with canned answers that records its calls.
type pageBackend struct {
	mu        sync.Mutex
	status    Status
	statusErr error
	fire      engine.TriggerInfo
	fireErr   error
	deadErr   error
	calls     []string
}

func (f *pageBackend) Status(context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.statusErr
}

func (f *pageBackend) Fire(_ context.Context, id string) (engine.TriggerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "fire "+id)
	return f.fire, f.fireErr
}

func (f *pageBackend) RetryDead(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "retry "+id)
	return f.deadErr
}

func (f *pageBackend) DeleteDead(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "delete "+id)
	return f.deadErr
}

var quiet = slog.New(slog.DiscardHandler)

func ptr[T any](v T) *T { return &v }

const hostile = `<script>alert("x")</script><img src=x onerror=alert(1)>`

func sampleStatus() Status {
	next := time.Date(2026, 12, 8, 8, 0, 0, 0, time.UTC)
	last := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	return Status{
		Version: "1.2.3", Started: last, Ready: true,
		Scripts: []ScriptStatus{
			{Path: "/etc/mailbot/scripts/report.lua", Hash: "0123456789abcdef0123"},
			{Path: "/etc/mailbot/scripts/broken.lua", LoadError: "broken.lua:3: unexpected symbol near '" + hostile + "'"},
		},
		Triggers: []engine.TriggerInfo{
			{ID: "report#daily", Script: "report.lua", Kind: "cron", Spec: "0 8 * * 1-5 Europe/Berlin", NextRun: &next, LastRun: &last, LastOutcome: "ok", LastDurationMS: ptr(int64(12))},
			{ID: "report#2", Script: "report.lua", Kind: "every", Spec: "5m", LastRun: &last, LastOutcome: "error", LastDurationMS: ptr(int64(3)), LastError: "report.lua:9: " + hostile},
		},
		Outbox: OutboxCounts{Queued: 4, Dead: 1, Corrupt: 0},
		Dead:   []DeadLetter{{ID: "20261207T080000-abc", Account: "relay", Recipients: []string{"a@example.com", "b@example.com"}, Subject: "Report " + hostile, LastError: "550 5.1.1 no such user", Attempts: 3}},
		Recent: []Delivery{{Time: last, Account: "relay", MessageID: "<m1@example.com>", Recipients: []string{"ops@example.com"}, Reply: "250 2.0.0 Ok: queued as 4ZxAB"}},
	}
}

func get(t *testing.T, h http.Handler, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestPageRendersStatus(t *testing.T) {
	h := PageHandler(&pageBackend{status: sampleStatus()}, PageOptions{CSRFToken: func(*http.Request) string { return "tok123" }})
	w := get(t, h)
	if w.Code != http.StatusOK {
		t.Fatalf("GET / = %d\n%s", w.Code, w.Body)
	}
	body := w.Body.String()
	for _, want := range []string{
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<meta http-equiv="refresh" content="10; url=/">`,
		`mailbot <small>1.2.3</small>`, `>ready<`,
		`/etc/mailbot/scripts/report.lua`, `<code>0123456789ab</code>`, `1 with load errors`, `broken.lua:3: unexpected symbol`,
		`report#daily`, `cron`, `0 8 * * 1-5 Europe/Berlin`, `2026-12-08 08:00:00 UTC`, `2026-12-07 08:00:00 UTC`, `12 ms`,
		`queued <b>4</b>`, `dead <b class="bad">1</b>`,
		`20261207T080000-abc`, `a@example.com, b@example.com`, `550 5.1.1 no such user`,
		`&lt;m1@example.com&gt;`, `250 2.0.0 Ok: queued as 4ZxAB`,
		`action="/ui/fire"`, `action="/ui/dead/retry"`, `action="/ui/dead/delete"`,
		`name="csrf_token" value="tok123"`, `name="id" value="report#daily"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "default-src 'none'; style-src 'sha256-",
	} {
		if got := w.Header().Get(k); !strings.HasPrefix(got, want) {
			t.Errorf("%s = %q, want %q...", k, got, want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("page has a script or an outside reference")
	}
}

// TestPageEscapes: script errors, subjects and load errors are text.
func TestPageEscapes(t *testing.T) {
	w := get(t, PageHandler(&pageBackend{status: sampleStatus()}, PageOptions{}))
	body := w.Body.String()
	if strings.Contains(body, hostile) || strings.Contains(body, "<script>") || strings.Contains(body, "<img") {
		t.Fatalf("hostile text rendered as HTML:\n%s", body)
	}
	esc := `&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;`
	for _, where := range []string{"report.lua:9: " + esc, "Report " + esc, "broken.lua:3: unexpected symbol near &#39;" + esc} {
		if !strings.Contains(body, where) {
			t.Errorf("page lacks escaped %q", where)
		}
	}
}

func TestPageRefresh(t *testing.T) {
	tests := []struct {
		refresh time.Duration
		want    string
	}{
		{0, `content="10; url=/"`},
		{30 * time.Second, `content="30; url=/"`},
		{-1, ""},
	}
	for _, tc := range tests {
		body := get(t, PageHandler(&pageBackend{}, PageOptions{Refresh: tc.refresh})).Body.String()
		has := strings.Contains(body, `http-equiv="refresh"`)
		if tc.want == "" && has || tc.want != "" && !strings.Contains(body, tc.want) {
			t.Errorf("Refresh %v: meta refresh wrong, want %q", tc.refresh, tc.want)
		}
	}
}

func TestPageStatusError(t *testing.T) {
	w := get(t, PageHandler(&pageBackend{statusErr: errors.New("engine <stopped>")}, PageOptions{}))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "cannot read the status: engine &lt;stopped&gt;") {
		t.Errorf("GET / with a failing backend = %d\n%s", w.Code, w.Body)
	}
}

func TestPageRoutes(t *testing.T) {
	h := PageHandler(&pageBackend{}, PageOptions{})
	tests := []struct {
		method, path string
		code         int
	}{
		{"GET", "/", 200},
		{"HEAD", "/", 200},
		{"GET", "/nothing", 404},
		{"GET", "/ui/fire", 405},
		{"POST", "/", 405},
	}
	for _, tc := range tests {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != tc.code {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, w.Code, tc.code)
		}
	}
}

// TestPageActions: each button posts, the backend is called, and the
// page it redirects to shows the outcome once.
func TestPageActions(t *testing.T) {
	const tok = "good-token"
	tests := []struct {
		name     string
		fb       *pageBackend
		path, id string
		csrf     string
		code     int
		call     string
		flash    string
		flashOK  bool
		// crossSite sends the headers of a browser posting from elsewhere.
		crossSite bool
	}{
		{name: "fire ok", fb: &pageBackend{fire: engine.TriggerInfo{ID: "daily-report#daily", LastOutcome: "ok", LastDurationMS: ptr(int64(12))}},
			path: "/ui/fire", id: "daily-report#daily", csrf: tok, code: 303, call: "fire daily-report#daily", flash: "fired daily-report#daily: ok in 12 ms", flashOK: true},
		{name: "fire run failed", fb: &pageBackend{fire: engine.TriggerInfo{ID: "r#1", LastOutcome: "error", LastDurationMS: ptr(int64(3)), LastError: "r.lua:2: <boom>"}},
			path: "/ui/fire", id: "r#1", csrf: tok, code: 303, call: "fire r#1", flash: "fired r#1: error in 3 ms: r.lua:2: &lt;boom&gt;"},
		{name: "fire unknown", fb: &pageBackend{fireErr: errors.New("no trigger x#9")},
			path: "/ui/fire", id: "x#9", csrf: tok, code: 303, call: "fire x#9", flash: "fire x#9 failed: no trigger x#9"},
		{name: "retry", path: "/ui/dead/retry", id: "m1", csrf: tok, code: 303, call: "retry m1", flash: "dead letter m1 queued again for delivery", flashOK: true},
		{name: "retry fails", fb: &pageBackend{deadErr: errors.New("no dead letter m1")}, path: "/ui/dead/retry", id: "m1", csrf: tok, code: 303, call: "retry m1", flash: "retry m1 failed: no dead letter m1"},
		{name: "delete", path: "/ui/dead/delete", id: "m2", csrf: tok, code: 303, call: "delete m2", flash: "dead letter m2 deleted", flashOK: true},
		{name: "no id", path: "/ui/fire", csrf: tok, code: 303, flash: "no id given"},
		{name: "no token", path: "/ui/fire", id: "r#1", code: 403},
		{name: "wrong token", path: "/ui/dead/delete", id: "m2", csrf: "bad-token", code: 403},
		{name: "cross-site", path: "/ui/fire", id: "r#1", csrf: tok, crossSite: true, code: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fb := tc.fb
			if fb == nil {
				fb = &pageBackend{}
			}
			h := PageHandler(fb, PageOptions{Logger: quiet, CSRFToken: func(*http.Request) string { return tok }})
			form := url.Values{}
			if tc.id != "" {
				form.Set("id", tc.id)
			}
			if tc.csrf != "" {
				form.Set("csrf_token", tc.csrf)
			}
			r := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.crossSite {
				r.Header.Set("Sec-Fetch-Site", "cross-site")
				r.Header.Set("Origin", "https://evil.example")
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("POST %s = %d, want %d\n%s", tc.path, w.Code, tc.code, w.Body)
			}
			if got := strings.Join(fb.calls, ","); got != tc.call {
				t.Errorf("backend calls %q, want %q", got, tc.call)
			}
			if tc.code != 303 {
				return
			}
			if loc := w.Header().Get("Location"); loc != "/" {
				t.Errorf("redirect to %q, want /", loc)
			}
			cookies := w.Result().Cookies()
			page := get(t, h, cookies...)
			body := page.Body.String()
			if !strings.Contains(body, tc.flash) {
				t.Errorf("page after redirect lacks flash %q:\n%s", tc.flash, body)
			}
			if bad := strings.Contains(body, `class="flash bad"`); bad == tc.flashOK {
				t.Errorf("flash marked bad=%v, want ok=%v", bad, tc.flashOK)
			}
			cleared := false
			for _, c := range page.Result().Cookies() {
				cleared = cleared || c.Name == flashCookie && c.MaxAge < 0
			}
			if !cleared {
				t.Errorf("the flash cookie is not cleared after it was shown")
			}
		})
	}
}

// TestPageDefaultCSRF: without a CSRFToken the page makes its own, and
// posts need it.
func TestPageDefaultCSRF(t *testing.T) {
	fb := &pageBackend{status: sampleStatus()}
	h := PageHandler(fb, PageOptions{Logger: quiet})
	body := get(t, h).Body.String()
	const marker = `name="csrf_token" value="`
	i := strings.Index(body, marker)
	if i < 0 {
		t.Fatal("no csrf token on the page")
	}
	tok := body[i+len(marker):]
	tok = tok[:strings.IndexByte(tok, '"')]
	if len(tok) < 40 {
		t.Fatalf("token %q too short", tok)
	}
	for _, tc := range []struct {
		tok  string
		code int
	}{{"", 403}, {tok + "x", 403}, {tok, 303}} {
		r := httptest.NewRequest(http.MethodPost, "/ui/dead/retry", strings.NewReader(url.Values{"id": {"m"}, "csrf_token": {tc.tok}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.code {
			t.Errorf("token %q: %d, want %d", tc.tok, w.Code, tc.code)
		}
	}
	if len(fb.calls) != 1 {
		t.Errorf("calls %v, want one retry", fb.calls)
	}
}
