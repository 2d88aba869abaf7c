package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func waitEvent(t *testing.T, w *Watcher, path string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w.Events():
			if ev.Path == path {
				return
			}
		case err := <-w.Errors():
			t.Fatalf("watcher error: %v", err)
		case <-timeout:
			t.Fatalf("no event for %s", path)
		}
	}
}

// TestWatchHubSharesOneInstance checks that many watchers on one hub cost
// one fsnotify watcher, that each gets only the events of its folder, and
// that closing one leaves another on the same folder working.
func TestWatchHubSharesOneInstance(t *testing.T) {
	hub, err := NewWatchHub()
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	root := t.TempDir()
	const n = 300 // beyond the default per-user inotify instance limit of 128
	ws := make([]*Watcher, n)
	for i := range ws {
		dir := filepath.Join(root, "d", string(rune('a'+i%26))+string(rune('a'+i/26)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		w, err := NewWatcher(dir, WatchOptions{Hub: hub, Debounce: -1})
		if err != nil {
			t.Fatalf("watcher %d: %v", i, err)
		}
		defer w.Close()
		ws[i] = w
	}
	twin, err := NewWatcher(ws[7].Root(), WatchOptions{Hub: hub, Debounce: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer twin.Close()

	p := filepath.Join(ws[7].Root(), "x.txt")
	os.WriteFile(p, []byte("x"), 0o644)
	waitEvent(t, ws[7], p)
	waitEvent(t, twin, p)
	select {
	case ev := <-ws[8].Events():
		t.Fatalf("watcher of another folder got %v", ev)
	default:
	}

	ws[7].Close()
	q := filepath.Join(twin.Root(), "y.txt")
	os.WriteFile(q, []byte("y"), 0o644)
	waitEvent(t, twin, q)
}

// injectErrors hands err to every subscriber n times, as a burst of
// fsnotify errors would.
func (h *WatchHub) injectErrors(err error, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := 0; i < n; i++ {
		for s := range h.subs {
			s.pushErr(err)
		}
	}
}
