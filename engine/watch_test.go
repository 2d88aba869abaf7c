package engine

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// observer records what a component has seen, so tests can wait for a
// specific raw event before they move the fake clock.
type observer struct{ ch chan WatchEvent }

func newObserver() *observer { return &observer{ch: make(chan WatchEvent, 100000)} }

func (o *observer) hook(path string, op Op) { o.ch <- WatchEvent{Path: path, Op: op} }

// waitFor blocks until an event for path including op has been observed.
func (o *observer) waitFor(t *testing.T, path string, op Op) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-o.ch:
			if ev.Path == path && ev.Op&op != 0 {
				return
			}
		case <-deadline:
			t.Fatalf("no %v event observed for %s", op, path)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func recvEvent(t *testing.T, w *Watcher) WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("Events closed")
		}
		return ev
	case err := <-w.Errors():
		t.Fatalf("watch error: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no event delivered")
	}
	return WatchEvent{}
}

// expectEvents flushes what is due and checks the events delivered, in any
// order, and that nothing else is pending.
func expectEvents(t *testing.T, w *Watcher, want ...WatchEvent) {
	t.Helper()
	if n := w.barrier(); n != len(want) {
		t.Fatalf("%d events pending, want %d (%v)", n, len(want), want)
	}
	got := map[WatchEvent]bool{}
	for range want {
		got[recvEvent(t, w)] = true
	}
	for _, ev := range want {
		if !got[ev] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	if n := w.barrier(); n != 0 {
		t.Fatalf("%d more events pending", n)
	}
}

func newTestWatcher(t *testing.T, dir string, opts WatchOptions) (*Watcher, *FakeClock, *observer) {
	t.Helper()
	clock := NewFakeClock(t0)
	obs := newObserver()
	opts.Clock, opts.Observed = clock, obs.hook
	w, err := NewWatcher(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, clock, obs
}

func luaOnly(path string) bool { return strings.HasSuffix(path, ".lua") }

func TestWatcherAtomicSaveIsOneEvent(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "job.lua")
	writeFile(t, target, "-- v1")
	w, clock, obs := newTestWatcher(t, dir, WatchOptions{Filter: luaOnly})

	// An editor's save: write a temp file, then rename it over the target.
	tmp := filepath.Join(dir, "job.lua.tmp1234")
	writeFile(t, tmp, "-- v2")
	if err := os.Rename(tmp, target); err != nil {
		t.Fatal(err)
	}
	obs.waitFor(t, target, OpCreate)
	expectEvents(t, w) // the quiet period has not passed yet
	clock.Advance(DefaultDebounce)
	expectEvents(t, w, WatchEvent{Path: target, Op: OpCreate})
}

func TestWatcherCoalescing(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.lua")
	writeFile(t, existing, "x")
	w, clock, obs := newTestWatcher(t, dir, WatchOptions{Debounce: time.Second})

	// A temp file that appears and is renamed away within the window is not
	// reported; its final name is.
	tmp, final := filepath.Join(dir, "new.part"), filepath.Join(dir, "new.lua")
	writeFile(t, tmp, "a")
	if err := os.Rename(tmp, final); err != nil {
		t.Fatal(err)
	}
	obs.waitFor(t, final, OpCreate)

	// Many writes to one file: one event.
	busy := filepath.Join(dir, "busy.lua")
	f, err := os.Create(busy)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := f.WriteString("line\n"); err != nil {
			t.Fatal(err)
		}
		obs.waitFor(t, busy, OpWrite)
		if i == 2 {
			// Half-way, time passes but less than the quiet period since
			// the last write: nothing is flushed.
			clock.Advance(500 * time.Millisecond)
			expectEvents(t, w)
		}
	}
	f.Close()

	if err := os.Remove(existing); err != nil {
		t.Fatal(err)
	}
	obs.waitFor(t, existing, OpRemove)

	clock.Advance(time.Second)
	expectEvents(t, w,
		WatchEvent{Path: final, Op: OpCreate},
		WatchEvent{Path: busy, Op: OpCreate | OpWrite},
		WatchEvent{Path: existing, Op: OpRemove},
	)
}

func TestWatcherRecursive(t *testing.T) {
	dir := t.TempDir()
	w, clock, obs := newTestWatcher(t, dir, WatchOptions{
		Recursive: true,
		SkipDir:   func(p string) bool { return filepath.Base(p) == "done" },
	})
	if err := os.MkdirAll(filepath.Join(dir, "done"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "done", "ignored.txt"), "x")
	// A directory tree moved in with files already inside: no event will
	// ever mention those files, they are found by scanning the new
	// directory when it is added to the watch.
	staging := t.TempDir()
	if err := os.MkdirAll(filepath.Join(staging, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(staging, "a", "b", "deep.txt"), "x")
	if err := os.Rename(filepath.Join(staging, "a"), filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "a", "b")
	deep := filepath.Join(sub, "deep.txt")
	obs.waitFor(t, deep, OpCreate)
	clock.Advance(DefaultDebounce)
	expectEvents(t, w, WatchEvent{Path: deep, Op: OpCreate})

	// The new subdirectory is watched from now on.
	deep2 := filepath.Join(sub, "deep2.txt")
	writeFile(t, deep2, "x")
	obs.waitFor(t, deep2, OpWrite)
	clock.Advance(DefaultDebounce)
	expectEvents(t, w, WatchEvent{Path: deep2, Op: OpCreate | OpWrite})
}

func TestWatcherNoDebounce(t *testing.T) {
	dir := t.TempDir()
	w, _, _ := newTestWatcher(t, dir, WatchOptions{Debounce: -1})
	p := filepath.Join(dir, "f.csv")
	writeFile(t, p, "1")
	if ev := recvEvent(t, w); ev != (WatchEvent{Path: p, Op: OpCreate}) {
		t.Fatalf("first event %+v, want create", ev)
	}
	if ev := recvEvent(t, w); ev != (WatchEvent{Path: p, Op: OpWrite}) {
		t.Fatalf("second event %+v, want write", ev)
	}
}

func TestWatcherSurfacesRootRemoval(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "watched")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, _, _ := newTestWatcher(t, dir, WatchOptions{})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.Errors():
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Fatalf("error %v does not name the directory", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removal of the watched directory was not reported")
	}
}

func TestNewWatcherErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	writeFile(t, file, "")
	for _, p := range []string{filepath.Join(dir, "missing"), file} {
		if w, err := NewWatcher(p, WatchOptions{}); err == nil {
			w.Close()
			t.Errorf("NewWatcher(%s) succeeded", p)
		}
	}
}

func TestWatcherCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	w, err := NewWatcher(t.TempDir(), WatchOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, ok := <-w.Events(); ok {
		t.Fatal("Events open after Close")
	}
	goroutinesAtMost(t, before)
}

func TestOpString(t *testing.T) {
	tests := map[Op]string{0: "none", OpCreate: "create", OpCreate | OpWrite: "create|write", OpRemove | OpChmod: "remove|chmod"}
	for op, want := range tests {
		if got := op.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", op, got, want)
		}
	}
}

// fakeSource is an eventSource the test feeds by hand. Its channels are
// unbuffered, so a send returns once the Watcher has taken the value.
type fakeSource struct {
	events chan fsnotify.Event
	errors chan error
}

func newFakeSource() *fakeSource {
	return &fakeSource{events: make(chan fsnotify.Event), errors: make(chan error)}
}

func (f *fakeSource) Add(string) error              { return nil }
func (f *fakeSource) Events() <-chan fsnotify.Event { return f.events }
func (f *fakeSource) Errors() <-chan error          { return f.errors }
func (f *fakeSource) Close() error                  { return nil }

// TestWatcherOverflowBurst: many overflows in a burst give one
// *OverflowError, once the burst has been quiet for OverflowQuiet; other
// errors pass at once; a long burst is cut at OverflowMaxBurst.
func TestWatcherOverflowBurst(t *testing.T) {
	clock := NewFakeClock(t0)
	src := newFakeSource()
	w, err := NewWatcher(t.TempDir(), WatchOptions{Clock: clock, Debounce: -1, source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	overflows := func(n int) {
		for i := 0; i < n; i++ {
			src.errors <- fsnotify.ErrEventOverflow
		}
	}
	expectErrs := func(want int) {
		t.Helper()
		if n := w.barrierErrs(); n != want {
			t.Fatalf("%d errors pending, want %d", n, want)
		}
	}

	overflows(20)
	clock.Advance(50 * time.Millisecond)
	overflows(30)
	expectErrs(0)
	clock.Advance(OverflowQuiet - time.Millisecond)
	expectErrs(0)
	clock.Advance(time.Millisecond)
	expectErrs(1)
	err = <-w.Errors()
	var oe *OverflowError
	if !errors.As(err, &oe) || !errors.Is(err, fsnotify.ErrEventOverflow) {
		t.Fatalf("error %v, want *OverflowError matching fsnotify.ErrEventOverflow", err)
	}
	if oe.Count != 50 || oe.Span != 50*time.Millisecond+OverflowQuiet {
		t.Fatalf("OverflowError = %+v, want 50 overflows in %v", oe, 50*time.Millisecond+OverflowQuiet)
	}
	clock.Advance(time.Hour)
	expectErrs(0)

	// Another error is not held back.
	src.errors <- errors.New("boom")
	expectErrs(1)
	if err := <-w.Errors(); !strings.Contains(err.Error(), "boom") {
		t.Fatalf("error %v, want boom", err)
	}

	// A burst that never goes quiet is reported every OverflowMaxBurst.
	step := OverflowQuiet / 2
	reported := 0
	for elapsed := time.Duration(0); elapsed < OverflowMaxBurst+step; elapsed += step {
		overflows(1)
		clock.Advance(step)
		if w.barrierErrs() > 0 {
			<-w.Errors()
			reported++
		}
	}
	if reported != 1 {
		t.Fatalf("a non-stop burst over %v was reported %d times, want 1", OverflowMaxBurst, reported)
	}
}
