package ops

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/internal/browsertest"
	"github.com/mailbot/mailbot/outbox"
	"github.com/mailbot/mailbot/smtp"
)

// liveBackend is a Backend over a real scripts directory, fired with
// engine.Fire, and a real outbox.
type liveBackend struct {
	cfg engine.Config
	ob  *outbox.Outbox
}

func (b *liveBackend) Status(context.Context) (Status, error) {
	st := Status{Version: "test", Started: time.Now(), Ready: true}
	trigs, errs := engine.ListTriggers(b.cfg, time.Now())
	st.Triggers = trigs
	paths, _ := filepath.Glob(filepath.Join(b.cfg.ScriptsDir, "*.lua"))
	for _, p := range paths {
		s := ScriptStatus{Path: p}
		for _, err := range errs {
			if strings.HasPrefix(err.Error(), filepath.Base(p)+":") {
				s.LoadError = err.Error()
			}
		}
		if s.LoadError == "" {
			src, err := os.ReadFile(p)
			if err != nil {
				return st, err
			}
			sum := sha256.Sum256(src)
			s.Hash = hex.EncodeToString(sum[:])
		}
		st.Scripts = append(st.Scripts, s)
	}
	stats, err := b.ob.Stats()
	if err != nil {
		return st, err
	}
	st.Outbox = OutboxCounts{Queued: stats.Queued, Dead: stats.Dead, Corrupt: stats.Corrupt}
	dead, err := b.ob.Dead()
	if err != nil {
		return st, err
	}
	for _, it := range dead {
		d := DeadLetter{ID: it.ID, Account: it.Account, Recipients: it.To, LastError: it.LastError, Attempts: it.Attempts}
		if _, data, err := b.ob.Get(it.ID); err == nil {
			if m, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
				d.Subject = m.Header.Get("Subject")
			}
		}
		st.Dead = append(st.Dead, d)
	}
	return st, nil
}

func (b *liveBackend) Fire(ctx context.Context, id string) (engine.TriggerInfo, error) {
	res, err := engine.Fire(ctx, b.cfg, engine.FireRequest{ID: id, LockWait: 10 * time.Second}, engine.WithLogger(quiet))
	if err != nil {
		return engine.TriggerInfo{}, err
	}
	return res.Trigger, nil
}

func (b *liveBackend) RetryDead(_ context.Context, id string) error { return b.ob.Requeue(id) }

func (b *liveBackend) DeleteDead(_ context.Context, id string) error { return b.ob.Delete(id) }

// newLiveBackend writes the scripts, and makes one dead letter (with a
// hostile subject) by delivering to a loopback relay that refuses it.
func newLiveBackend(t *testing.T, scripts map[string]string) *liveBackend {
	t.Helper()
	root := t.TempDir()
	cfg := engine.Config{ScriptsDir: filepath.Join(root, "scripts"), StateDir: filepath.Join(root, "state"), RunTimeout: 10 * time.Second, Grace: 5 * time.Second}
	if err := os.MkdirAll(cfg.ScriptsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range scripts {
		if err := os.WriteFile(filepath.Join(cfg.ScriptsDir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ob, err := outbox.Open(filepath.Join(root, "outbox"), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Close() })
	relay := devtest.Start(t, devserver.Config{Hooks: devserver.Hooks{
		Rcpt: func(string) *devserver.Reject {
			return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
		},
	}})
	msg := "From: bot@example.com\r\nTo: nobody@example.com\r\nSubject: weekly <script>alert(1)</script> report\r\nMessage-ID: <dead1@example.com>\r\n\r\nhello\r\n"
	ctx := context.Background()
	if _, _, err := ob.Enqueue(ctx, outbox.Envelope{Account: "relay", From: "bot@example.com", To: []string{"nobody@example.com"}}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	accounts := map[string]outbox.Account{"relay": {Addr: relay.Addr(), Dialer: &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost", Timeout: 5 * time.Second}}}
	if _, err := ob.DeliverOnce(ctx, accounts); err != nil {
		t.Fatal(err)
	}
	if dead, err := ob.Dead(); err != nil || len(dead) != 1 {
		t.Fatalf("dead letters %v, %v; want one", dead, err)
	}
	return &liveBackend{cfg: cfg, ob: ob}
}

const reportScript = `
mailbot.cron("0 8 * * 1-5", function(ev) mailbot.state.set("ran", "yes") end, { name = "daily" })
mailbot.every("1h", function() error("<script>document.title='pwned'</script> went wrong") end, { name = "broken" })
`

func servePage(t *testing.T, b Backend) string {
	t.Helper()
	srv := httptest.NewServer(PageHandler(b, PageOptions{Refresh: -1, Logger: quiet}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestPageBrowserFireAndRetry clicks "fire now" and "retry" in Chromium
// and sees the outcomes appear.
func TestPageBrowserFireAndRetry(t *testing.T) {
	b := newLiveBackend(t, map[string]string{"report.lua": reportScript, "broken.lua": "mailbot.every(\"1h\", function() end\n"})
	url := servePage(t, b)
	ctx := browsertest.New(t, browsertest.Options{})

	daily := `tr[data-trigger="report#daily"]`
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/"),
		chromedp.WaitVisible(chromedp.CSS(daily)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-dead]`)),
	); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	loadErr, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#scripts tr.bad pre`)))
	if err != nil || !strings.Contains(loadErr, "broken.lua:") {
		t.Errorf("load error shown %q (%v), want one naming broken.lua:line", loadErr, err)
	}

	// fire: the flash says how the run went and the row shows its outcome.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(daily+` button[name="fire"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#flash`)),
		chromedp.WaitVisible(chromedp.CSS(daily+` .outcome .badge.ok`)),
	); err != nil {
		t.Fatalf("fire report#daily: %v", err)
	}
	flash, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#flash`)))
	if err != nil || !strings.HasPrefix(flash, "fired report#daily: ok in ") || !strings.HasSuffix(flash, " ms") {
		t.Errorf("flash after fire = %q (%v)", flash, err)
	}

	// A failing run: its hostile error shows as text, and runs no script.
	broken := `tr[data-trigger="report#broken"]`
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(broken+` button[name="fire"]`)),
		chromedp.WaitVisible(chromedp.CSS(broken+` .outcome .badge.bad`)),
	); err != nil {
		t.Fatalf("fire report#broken: %v", err)
	}
	lastErr, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(broken+` pre`)))
	if err != nil || !strings.Contains(lastErr, "<script>document.title='pwned'</script> went wrong") {
		t.Errorf("last error shown %q (%v)", lastErr, err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title == "pwned" {
		t.Errorf("title %q (%v): the error ran as a script", title, err)
	}

	// retry: the dead letter leaves the dead list and is queued again.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`tr[data-dead] button[name="retry"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#no-dead`)),
	); err != nil {
		t.Fatalf("retry the dead letter: %v", err)
	}
	flash, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#flash`)))
	if err != nil || !strings.Contains(flash, "queued again for delivery") {
		t.Errorf("flash after retry = %q (%v)", flash, err)
	}
	if st, err := b.ob.Stats(); err != nil || st.Dead != 0 || st.Queued != 1 {
		t.Errorf("outbox after retry: %+v, %v; want 1 queued, 0 dead", st, err)
	}
}

// TestPageBrowserLayout renders the page at a phone's and a desktop's
// width: nothing overflows sideways, and the screenshots are kept for a
// look (in $MAILBOT_SCREENSHOT_DIR when set).
func TestPageBrowserLayout(t *testing.T) {
	tests := []struct {
		name          string
		width, height int
		mobile        bool
	}{
		{"phone", 390, 844, true},
		{"desktop", 1280, 900, false},
	}
	fb := &pageBackend{status: sampleStatus()}
	long := strings.Repeat("a-very-long-unbroken-token-", 8)
	fb.status.Triggers[1].LastError += " " + long
	fb.status.Recent[0].MessageID = "<" + long + "@example.com>"
	url := servePage(t, fb)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := browsertest.New(t, browsertest.Options{Width: tc.width, Height: tc.height})
			emulate := chromedp.EmulateViewport(int64(tc.width), int64(tc.height))
			if tc.mobile {
				emulate = chromedp.EmulateViewport(int64(tc.width), int64(tc.height), chromedp.EmulateScale(2), chromedp.EmulateMobile)
			}
			if err := chromedp.Do(ctx,
				emulate,
				chromedp.Navigate(url+"/"),
				chromedp.WaitVisible(chromedp.CSS(`#recent`)),
			); err != nil {
				t.Fatal(err)
			}
			sizes, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
			if err != nil {
				t.Fatal(err)
			}
			if len(sizes) != 2 || sizes[0] > sizes[1] {
				t.Errorf("page is %v wide (scrollWidth, innerWidth): it overflows", sizes)
			}
			png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if d := os.Getenv("MAILBOT_SCREENSHOT_DIR"); d != "" {
				dir = d
			}
			shot := filepath.Join(dir, "status-"+tc.name+".png")
			if err := os.WriteFile(shot, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s (%d bytes)", shot, len(png))
		})
	}
}
