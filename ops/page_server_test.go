package ops

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/internal/browsertest"
)

// TestServerServesPage: the Server mounts the page behind its
// authentication, and the page's forms carry the Server's CSRF token.
func TestServerServesPage(t *testing.T) {
	fb := &pageBackend{status: sampleStatus(), fire: engine.TriggerInfo{ID: "report#daily", LastOutcome: "ok", LastDurationMS: ptr(int64(7))}}
	s, err := NewServer(Options{Backend: fb, Auth: Auth{Username: "ops", Password: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, form url.Values, auth bool) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, srv.URL+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if auth {
			req.SetBasicAuth("ops", "s3cret")
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := do("GET", "/", nil, false); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET / without credentials = %d, want 401", resp.StatusCode)
	}
	resp, page := do("GET", "/", nil, true)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", resp.StatusCode)
	}
	m := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	authReq, _ := http.NewRequest("GET", "/", nil)
	authReq.SetBasicAuth("ops", "s3cret")
	if m[1] != s.CSRFToken(authReq) {
		t.Errorf("page token %q is not the server's", m[1])
	}
	if resp, _ := do("POST", "/ui/fire", url.Values{"id": {"report#daily"}, "csrf_token": {m[1]}}, false); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /ui/fire without credentials = %d, want 401", resp.StatusCode)
	}
	if resp, _ := do("POST", "/ui/fire", url.Values{"id": {"report#daily"}}, true); resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST /ui/fire without token = %d, want 403", resp.StatusCode)
	}
	resp, _ = do("POST", "/ui/fire", url.Values{"id": {"report#daily"}, "csrf_token": {m[1]}}, true)
	if resp.StatusCode != http.StatusSeeOther || len(fb.calls) != 1 {
		t.Errorf("POST /ui/fire = %d, calls %v", resp.StatusCode, fb.calls)
	}
}

// TestServerPageBrowser clicks "fire now" on the page as the Server
// serves it (loopback, no auth): its CSRF token and routes work in a
// real browser.
func TestServerPageBrowser(t *testing.T) {
	b := newLiveBackend(t, map[string]string{"report.lua": reportScript})
	s, err := NewServer(Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	ctx := browsertest.New(t, browsertest.Options{})
	daily := `tr[data-trigger="report#daily"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.Click(chromedp.CSS(daily+` button[name="fire"]`)),
		chromedp.WaitVisible(chromedp.CSS(daily+` .outcome .badge.ok`)),
		chromedp.Click(chromedp.CSS(`tr[data-dead] button[name="delete"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#no-dead`)),
	); err != nil {
		t.Fatal(err)
	}
	flash, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#flash`)))
	if err != nil || !strings.HasSuffix(flash, " deleted") {
		t.Errorf("flash after delete = %q (%v)", flash, err)
	}
}
