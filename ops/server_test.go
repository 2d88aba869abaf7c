package ops

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/engine"
)

// fakeBackend is a Backend with a settable status that records calls.
type fakeBackend struct {
	mu     sync.Mutex
	status Status
	calls  []string
}

func (f *fakeBackend) Status(context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, nil
}

func (f *fakeBackend) record(call string) {
	f.mu.Lock()
	f.calls = append(f.calls, call)
	f.mu.Unlock()
}

func (f *fakeBackend) Fire(_ context.Context, id string) (engine.TriggerInfo, error) {
	if id == "nope#1" {
		return engine.TriggerInfo{}, fmt.Errorf("%w: no such trigger", ErrNotFound)
	}
	f.record("fire " + id)
	return engine.TriggerInfo{ID: id, LastOutcome: "ok"}, nil
}

func (f *fakeBackend) RetryDead(_ context.Context, id string) error {
	if id == "missing" {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	f.record("retry " + id)
	return nil
}

func (f *fakeBackend) DeleteDead(_ context.Context, id string) error {
	f.record("delete " + id)
	return nil
}

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func newTestServer(t *testing.T, auth Auth) (*Server, *fakeBackend, *httptest.Server) {
	t.Helper()
	fb := &fakeBackend{status: Status{Version: "test", ReadyReason: "loading scripts"}}
	s, err := NewServer(Options{Backend: fb, Metrics: NewMetrics(fb.Status), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, fb, hs
}

type req struct {
	method, path string
	header       map[string]string
	body         string
}

func do(t *testing.T, hs *httptest.Server, r req) (int, string) {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, hs.URL+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.header {
		if k == "Host" {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	resp, err := hs.Client().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func TestReadyz(t *testing.T) {
	_, fb, hs := newTestServer(t, Auth{})
	if code, body := do(t, hs, req{method: "GET", path: "/healthz"}); code != 200 {
		t.Errorf("healthz = %d %s", code, body)
	}
	code, body := do(t, hs, req{method: "GET", path: "/readyz"})
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"reason": "loading scripts"`) {
		t.Errorf("readyz before load = %d %s, want 503 with the reason", code, body)
	}
	fb.mu.Lock()
	fb.status.Ready, fb.status.ReadyReason = true, ""
	fb.mu.Unlock()
	if code, body := do(t, hs, req{method: "GET", path: "/readyz"}); code != 200 || !strings.Contains(body, `"ready": true`) {
		t.Errorf("readyz after load = %d %s, want 200", code, body)
	}
}

func TestAuth(t *testing.T) {
	basic := "Basic " + b64("ops:s3cret")
	tests := []struct {
		name   string
		auth   Auth
		path   string
		header map[string]string
		want   int
	}{
		{"basic: none given", Auth{Username: "ops", Password: "s3cret"}, "/api/status", nil, 401},
		{"basic: wrong password", Auth{Username: "ops", Password: "s3cret"}, "/api/status", map[string]string{"Authorization": "Basic " + b64("ops:wrong")}, 401},
		{"basic: wrong user", Auth{Username: "ops", Password: "s3cret"}, "/metrics", map[string]string{"Authorization": "Basic " + b64("root:s3cret")}, 401},
		{"basic: right", Auth{Username: "ops", Password: "s3cret"}, "/api/status", map[string]string{"Authorization": basic}, 200},
		{"basic: metrics", Auth{Username: "ops", Password: "s3cret"}, "/metrics", map[string]string{"Authorization": basic}, 200},
		{"basic: csrf", Auth{Username: "ops", Password: "s3cret"}, "/api/csrf", nil, 401},
		{"basic: healthz needs none", Auth{Username: "ops", Password: "s3cret"}, "/healthz", nil, 200},
		{"bearer: none given", Auth{Token: "tok"}, "/api/status", nil, 401},
		{"bearer: wrong", Auth{Token: "tok"}, "/api/status", map[string]string{"Authorization": "Bearer tok2"}, 401},
		{"bearer: basic given", Auth{Token: "tok"}, "/api/status", map[string]string{"Authorization": basic}, 401},
		{"bearer: right", Auth{Token: "tok"}, "/api/status", map[string]string{"Authorization": "Bearer tok"}, 200},
		{"bearer: any Host", Auth{Token: "tok"}, "/api/status", map[string]string{"Authorization": "Bearer tok", "Host": "mailbot.example.com"}, 200},
		{"none: loopback", Auth{}, "/api/status", nil, 200},
		{"none: rebinding Host refused", Auth{}, "/api/status", map[string]string{"Host": "evil.example.com:9725"}, 403},
		{"none: localhost Host", Auth{}, "/api/status", map[string]string{"Host": "localhost:9725"}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, hs := newTestServer(t, tc.auth)
			code, body := do(t, hs, req{method: "GET", path: tc.path, header: tc.header})
			if code != tc.want {
				t.Errorf("GET %s = %d %s, want %d", tc.path, code, body, tc.want)
			}
			if strings.Contains(body, "s3cret") || (tc.auth.Token != "" && strings.Contains(body, tc.auth.Token+`"`)) {
				t.Errorf("response carries the secret: %s", body)
			}
		})
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestSetAuth(t *testing.T) {
	s, _, hs := newTestServer(t, Auth{Token: "old"})
	s.SetAuth(Auth{Token: "new"})
	if code, _ := do(t, hs, req{method: "GET", path: "/api/status", header: map[string]string{"Authorization": "Bearer old"}}); code != 401 {
		t.Errorf("old token after SetAuth = %d, want 401", code)
	}
	if code, _ := do(t, hs, req{method: "GET", path: "/api/status", header: map[string]string{"Authorization": "Bearer new"}}); code != 200 {
		t.Errorf("new token after SetAuth = %d, want 200", code)
	}
}

func csrfToken(t *testing.T, hs *httptest.Server, header map[string]string) string {
	t.Helper()
	code, body := do(t, hs, req{method: "GET", path: "/api/csrf", header: header})
	var v struct{ Token string }
	if err := json.Unmarshal([]byte(body), &v); code != 200 || err != nil || v.Token == "" {
		t.Fatalf("GET /api/csrf = %d %s", code, body)
	}
	return v.Token
}

func TestCSRF(t *testing.T) {
	alice := map[string]string{"Authorization": "Bearer alice"}
	_, fb, hs := newTestServer(t, Auth{Token: "alice"})
	tok := csrfToken(t, hs, alice)
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": "Bearer alice"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name string
		r    req
		want int
		call string
	}{
		{"fire without token", req{method: "POST", path: "/api/fire", header: alice, body: `{"id":"a#1"}`}, 403, ""},
		{"fire with a wrong token", req{method: "POST", path: "/api/fire", header: with(map[string]string{"X-CSRF-Token": "x" + tok}), body: `{"id":"a#1"}`}, 403, ""},
		{"fire with the header token", req{method: "POST", path: "/api/fire", header: with(map[string]string{"X-CSRF-Token": tok}), body: `{"id":"a#1"}`}, 200, "fire a#1"},
		{"fire with JSON sent as a form (curl -d)", req{method: "POST", path: "/api/fire", header: with(map[string]string{"X-CSRF-Token": tok, "Content-Type": form}), body: `{"id":"c#3"}`}, 200, "fire c#3"},
		{"fire from a form with the header token", req{method: "POST", path: "/api/fire", header: with(map[string]string{"X-CSRF-Token": tok, "Content-Type": form}), body: "id=d%234"}, 200, "fire d#4"},
		{"fire with bad JSON", req{method: "POST", path: "/api/fire", header: with(map[string]string{"X-CSRF-Token": tok}), body: `{"id":`}, 400, ""},
		{"fire from a form", req{method: "POST", path: "/api/fire", header: with(map[string]string{"Content-Type": form}),
			body: url.Values{"id": {"b#2"}, "csrf_token": {tok}}.Encode()}, 200, "fire b#2"},
		{"form redirect", req{method: "POST", path: "/api/dead/m1/retry", header: with(map[string]string{"Content-Type": form}),
			body: url.Values{"csrf_token": {tok}, "redirect": {"/"}}.Encode()}, 303, "retry m1"},
		{"form without token", req{method: "POST", path: "/api/dead/m1/delete", header: with(map[string]string{"Content-Type": form}),
			body: url.Values{"id": {"m1"}}.Encode()}, 403, ""},
		{"cross-site browser request", req{method: "POST", path: "/api/dead/m1/delete", header: with(map[string]string{"X-CSRF-Token": tok, "Sec-Fetch-Site": "cross-site"})}, 403, ""},
		{"delete with token", req{method: "POST", path: "/api/dead/m1/delete", header: with(map[string]string{"X-CSRF-Token": tok})}, 200, "delete m1"},
		{"retry unknown", req{method: "POST", path: "/api/dead/missing/retry", header: with(map[string]string{"X-CSRF-Token": tok})}, 404, ""},
		{"fire unknown", req{method: "POST", path: "/api/fire", header: with(map[string]string{"X-CSRF-Token": tok}), body: `{"id":"nope#1"}`}, 404, ""},
		{"fire without id", req{method: "POST", path: "/api/fire", header: with(map[string]string{"X-CSRF-Token": tok}), body: `{}`}, 400, ""},
		{"GET is not allowed", req{method: "GET", path: "/api/fire", header: alice}, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fb.Calls())
			hs.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			code, body := do(t, hs, tc.r)
			if code != tc.want {
				t.Errorf("%s %s = %d %s, want %d", tc.r.method, tc.r.path, code, body, tc.want)
			}
			calls := fb.Calls()[before:]
			if tc.call == "" && len(calls) > 0 || tc.call != "" && (len(calls) != 1 || calls[0] != tc.call) {
				t.Errorf("backend calls %v, want %q", calls, tc.call)
			}
		})
	}
}

func TestCSRFTokenBoundToCredentials(t *testing.T) {
	s, _, _ := newTestServer(t, Auth{Username: "ops", Password: "pw"})
	a := httptest.NewRequest("GET", "/", nil)
	a.SetBasicAuth("ops", "pw")
	b := httptest.NewRequest("GET", "/", nil)
	b.SetBasicAuth("ops", "other")
	if s.CSRFToken(a) == s.CSRFToken(b) {
		t.Error("the CSRF token does not depend on the credentials")
	}
	if s.CSRFToken(a) != s.CSRFToken(a.Clone(context.Background())) {
		t.Error("the CSRF token is not stable for the same credentials")
	}
}

func TestStatusJSON(t *testing.T) {
	_, fb, hs := newTestServer(t, Auth{})
	next := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	fb.status = Status{
		Version: "1.2.3", Ready: true,
		Scripts:  []ScriptStatus{{Path: "/s/a.lua", Hash: "abc"}, {Path: "/s/b.lua", LoadError: "b.lua:2: syntax error"}},
		Triggers: []engine.TriggerInfo{{ID: "a#daily", Script: "a.lua", Kind: "cron", Spec: "0 8 * * *", NextRun: &next}},
		Outbox:   OutboxCounts{Queued: 2, Dead: 1},
		Dead:     []DeadLetter{{ID: "m1", Account: "relay", Recipients: []string{"x@example.com"}, LastError: "550 no such user", Attempts: 1}},
		Recent:   []Delivery{{Account: "relay", MessageID: "id@x", Reply: "250 2.0.0 Ok: queued as 4Zx"}},
	}
	code, body := do(t, hs, req{method: "GET", path: "/api/status"})
	if code != 200 {
		t.Fatalf("status = %d %s", code, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"load_error": "b.lua:2: syntax error"`, `"next_run": "2026-12-07T08:00:00Z"`, `"last_duration_ms": null`,
		`"queued": 2`, `"last_error": "550 no such user"`, `"reply": "250 2.0.0 Ok: queued as 4Zx"`, `"message_id": "id@x"`, `"recipients": [`} {
		if !strings.Contains(body, want) {
			t.Errorf("status JSON lacks %s:\n%s", want, body)
		}
	}
}

func TestMetricsNames(t *testing.T) {
	s, fb, hs := newTestServer(t, Auth{})
	m := s.opts.Metrics
	next := time.Unix(1700000000, 0)
	fb.status.Scripts = []ScriptStatus{{Path: "a.lua", Hash: "h"}, {Path: "b.lua", LoadError: "x"}}
	fb.status.Triggers = []engine.TriggerInfo{{ID: "a#1", Script: "a.lua", NextRun: &next}}
	fb.status.Outbox = OutboxCounts{Queued: 3, Dead: 1}
	m.RunFinished("a.lua", "a#1", "error", 20*time.Millisecond)
	m.FileHandled("a.lua", "moved")
	m.Delivery("relay", "sent")
	m.Session("relay", "ok")
	_, body := do(t, hs, req{method: "GET", path: "/metrics"})
	for _, want := range []string{
		`mailbot_script_runs_total{outcome="error",script="a.lua",trigger="a#1"} 1`,
		`mailbot_script_run_duration_seconds_count{script="a.lua",trigger="a#1"} 1`,
		`mailbot_files_handled_total{outcome="moved",script="a.lua"} 1`,
		`mailbot_outbox_deliveries_total{account="relay",result="sent"} 1`,
		`mailbot_smtp_sessions_total{account="relay",outcome="ok"} 1`,
		`mailbot_scripts_loaded 1`,
		`mailbot_script_load_errors 1`,
		`mailbot_trigger_next_run_timestamp_seconds{script="a.lua",trigger="a#1"} 1.7e+09`,
		`mailbot_outbox_messages{state="queued"} 3`,
		`mailbot_outbox_messages{state="dead"} 1`,
		`go_goroutines `,
		`process_open_fds `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestRecent(t *testing.T) {
	r := NewRecent(3)
	if got := r.List(); len(got) != 0 {
		t.Fatalf("empty List = %v", got)
	}
	for i := range 5 {
		r.Add(Delivery{MessageID: fmt.Sprint(i)})
	}
	var ids []string
	for _, d := range r.List() {
		ids = append(ids, d.MessageID)
	}
	if strings.Join(ids, ",") != "4,3,2" {
		t.Errorf("List = %v, want the last three, newest first", ids)
	}
}
