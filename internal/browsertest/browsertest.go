// Package browsertest drives a headless Chromium from tests, through
// chromedp, with the flags that keep it off the network.
//
// Tests using it skip when no Chromium is found, except under CI
// (CI=true), where .ci/run installs one and a missing browser fails.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// candidates are the browser executables Find looks for on PATH (or as
// absolute paths), in order, after $CHROMIUM.
var candidates = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// ErrNotFound is returned by Find when no Chromium is installed.
var ErrNotFound = errors.New("chromium not found: apt-get install chromium; CI installs it")

// Find returns the Chromium executable: $CHROMIUM when set, else the first
// of /usr/bin/chromium, chromium, chromium-browser, google-chrome found.
func Find() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("$CHROMIUM=%s: %v: %w", p, err, ErrNotFound)
		}
		return path, nil
	}
	for _, c := range candidates {
		if path, err := exec.LookPath(c); err == nil {
			return path, nil
		}
	}
	return "", ErrNotFound
}

// Options shapes the browser New starts.
type Options struct {
	// Width and Height are the window's size in CSS pixels; 0 means
	// 1280x900.
	Width, Height int
	// Timeout bounds the whole browser session; 0 means one minute.
	Timeout time.Duration
}

// New starts a fresh headless Chromium (its own temporary profile, no
// sandbox, no GPU, no QUIC, no background networking, component updates
// or sync) and returns a chromedp context of one tab in it. The browser is
// closed in tb.Cleanup. Without a Chromium the test skips, or fails when
// the CI environment variable is "true".
func New(tb testing.TB, o Options) context.Context {
	tb.Helper()
	path, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("CI=true but %v", err)
		}
		tb.Skip(err.Error())
	}
	if o.Width == 0 {
		o.Width, o.Height = 1280, 900
	}
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	profile := tb.TempDir() // removed after the browser is closed below
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(o.Width, o.Height),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), o.Timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(tb.Logf))
	tb.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser process to exit
		cancelTimeout()
	})
	if err := chromedp.Do(bctx); err != nil {
		tb.Fatalf("start %s: %v", path, err)
	}
	return bctx
}
