package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

type ftHarness struct {
	t     *testing.T
	ft    *FileTrigger
	clock *FakeClock
	obs   *observer
	spec  FileSpec
}

func newFT(t *testing.T, clock *FakeClock, spec FileSpec, opts FileTriggerOptions) *ftHarness {
	t.Helper()
	if clock == nil {
		clock = NewFakeClock(t0)
	}
	if spec.Settle == 0 {
		spec.Settle = 2 * time.Second
	}
	obs := newObserver()
	opts.Clock, opts.Observed = clock, obs.hook
	ft, err := NewFileTrigger(spec, opts)
	if err != nil {
		t.Fatalf("NewFileTrigger: %v", err)
	}
	t.Cleanup(func() { ft.Close() })
	if err := ft.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return &ftHarness{t: t, ft: ft, clock: clock, obs: obs, spec: spec}
}

func (h *ftHarness) recv() ReadyFile {
	h.t.Helper()
	select {
	case rf, ok := <-h.ft.Ready():
		if !ok {
			h.t.Fatal("Ready closed")
		}
		return rf
	case err := <-h.ft.Errors():
		h.t.Fatalf("trigger error: %v", err)
	case <-time.After(10 * time.Second):
		h.t.Fatal("no ready file delivered")
	}
	return ReadyFile{}
}

// expectReady processes what is due and checks exactly these files (by
// path, any order) are delivered, and nothing more.
func (h *ftHarness) expectReady(paths ...string) map[string]ReadyFile {
	h.t.Helper()
	if n := h.ft.barrier(); n != len(paths) {
		h.t.Fatalf("%d ready files pending, want %d %v", n, len(paths), paths)
	}
	got := map[string]ReadyFile{}
	for range paths {
		rf := h.recv()
		if _, dup := got[rf.Path]; dup {
			h.t.Fatalf("%s delivered twice", rf.Path)
		}
		got[rf.Path] = rf
	}
	for _, p := range paths {
		if _, ok := got[p]; !ok {
			h.t.Fatalf("ready %v, want %v", keys(got), paths)
		}
	}
	if n := h.ft.barrier(); n != 0 {
		h.t.Fatalf("%d more ready files pending", n)
	}
	return got
}

// settle lets the settle period pass once the trigger has armed its timer.
func (h *ftHarness) settle() {
	h.t.Helper()
	if err := h.clock.WaitForTimers(waitCtx(h.t), 1); err != nil {
		h.t.Fatalf("no settle timer armed: %v", err)
	}
	h.clock.Advance(h.spec.Settle)
}

// drop writes a file with a single write and waits until the trigger has
// seen it. It does not truncate (a truncation is an event of its own, which
// could arrive after the wait and move the settle deadline), so rewrites
// must not be shorter than the old content.
func (h *ftHarness) drop(path, content string) {
	h.t.Helper()
	if fi, err := os.Stat(path); err == nil && fi.Size() > int64(len(content)) {
		h.t.Fatalf("drop(%s): new content shorter than the old", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		h.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.obs.waitFor(h.t, path, OpWrite)
}

func (h *ftHarness) complete(rf ReadyFile, err error) Disposition {
	h.t.Helper()
	d, cerr := h.ft.Complete(rf, err)
	if cerr != nil {
		h.t.Fatalf("Complete(%s): %v", rf.Name, cerr)
	}
	return d
}

func keys(m map[string]ReadyFile) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestFileTriggerSlowWriter(t *testing.T) {
	dir := t.TempDir()
	h := newFT(t, nil, FileSpec{Dir: dir, Pattern: "*.csv"}, FileTriggerOptions{})
	path := filepath.Join(dir, "big.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunks := []string{"id,name\n", "1,alice\n", "2,bob\n"}
	for i, c := range chunks {
		if _, err := f.WriteString(c); err != nil {
			t.Fatal(err)
		}
		h.obs.waitFor(t, path, OpWrite)
		if i < len(chunks)-1 {
			// Less than the settle period between chunks: never ready.
			h.clock.Advance(1500 * time.Millisecond)
			h.expectReady()
		}
	}
	h.clock.Advance(1999 * time.Millisecond)
	h.expectReady()
	h.clock.Advance(time.Millisecond)
	rf := h.expectReady(path)[path]
	content := strings.Join(chunks, "")
	want := ReadyFile{Path: path, Name: "big.csv", Dir: dir, Op: OpCreate, Size: int64(len(content)),
		ModTime: rf.ModTime, SHA256: sha(content), Attempt: 1}
	if rf != want {
		t.Fatalf("ready file\n got %+v\nwant %+v", rf, want)
	}
	h.clock.Advance(time.Hour)
	h.expectReady()
}

func TestFileTriggerRemovedBeforeSettling(t *testing.T) {
	dir := t.TempDir()
	h := newFT(t, nil, FileSpec{Dir: dir}, FileTriggerOptions{})
	path := filepath.Join(dir, "short-lived.csv")
	h.drop(path, "x")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h.obs.waitFor(t, path, OpRemove)
	h.clock.Advance(time.Hour)
	h.expectReady()
}

func TestFileTriggerExistingFiles(t *testing.T) {
	layout := []string{
		"a.csv", "b.csv", // wanted
		".hidden.csv", "c.csv.tmp", "d.csv.part", "e.csv~", "notes.txt", // never
		"done/f.csv", "failed/g.csv", "archive/h.csv", "sub/i.csv", "sub/done/j.csv", "sub/archive/k.csv",
	}
	tests := []struct {
		name string
		spec FileSpec
		want []string
	}{
		{"flat", FileSpec{Pattern: "*.csv"}, []string{"a.csv", "b.csv"}},
		{"recursive with move target", FileSpec{Pattern: "*.csv", Recursive: true, After: After{Kind: AfterMove, Dir: "archive"}},
			[]string{"a.csv", "b.csv", "sub/i.csv"}},
		{"recursive with extra ignore", FileSpec{Pattern: "*.csv", Recursive: true, IgnoreDirs: []string{"sub"}},
			[]string{"a.csv", "b.csv", "archive/h.csv"}},
		{"existing = false", FileSpec{Pattern: "*.csv", SkipExisting: true}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, p := range layout {
				full := filepath.Join(dir, p)
				if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, full, p)
			}
			tc.spec.Dir = dir
			h := newFT(t, nil, tc.spec, FileTriggerOptions{})
			if len(tc.want) > 0 {
				h.settle()
			} else {
				h.clock.Advance(time.Hour)
			}
			var want []string
			for _, p := range tc.want {
				want = append(want, filepath.Join(dir, p))
			}
			for _, rf := range h.expectReady(want...) {
				if !rf.Existing || rf.Op != OpCreate {
					t.Errorf("%s: Existing = %v, Op = %v; want true, create", rf.Name, rf.Existing, rf.Op)
				}
			}
		})
	}
}

func TestFileTriggerAfter(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name     string
		after    string
		preexist string // file already at the destination, must survive
		wantAct  string
		wantAt   func(dir string) string
	}{
		{"keep", "keep", "", "kept", func(dir string) string { return filepath.Join(dir, "r.csv") }},
		{"delete", "delete", "", "deleted", func(dir string) string { return filepath.Join(dir, "r.csv") }},
		{"move to done", "move:done", "", "moved", func(dir string) string { return filepath.Join(dir, "done", "r.csv") }},
		{"move never overwrites", "move:done", "done/r.csv", "moved", func(dir string) string { return filepath.Join(dir, "done", "r-1.csv") }},
		{"move nested relative", "move:processed/ok", "", "moved", func(dir string) string { return filepath.Join(dir, "processed", "ok", "r.csv") }},
		{"move absolute", "move:" + outside, "", "moved", func(string) string { return filepath.Join(outside, "r.csv") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			after, err := ParseAfter(tc.after)
			if err != nil {
				t.Fatal(err)
			}
			if tc.preexist != "" {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, tc.preexist)), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, tc.preexist), "older")
			}
			h := newFT(t, nil, FileSpec{Dir: dir, Pattern: "*.csv", After: after, Recursive: true}, FileTriggerOptions{})
			src := filepath.Join(dir, "r.csv")
			h.drop(src, "payload")
			h.settle()
			rf := h.expectReady(src)[src]
			d := h.complete(rf, nil)
			want := Disposition{Action: tc.wantAct, Path: tc.wantAt(dir)}
			if d != want {
				t.Fatalf("Disposition = %+v, want %+v", d, want)
			}
			switch tc.wantAct {
			case "kept":
				if !exists(src) {
					t.Fatal("kept file is gone")
				}
			case "deleted":
				if exists(src) {
					t.Fatal("deleted file still there")
				}
			case "moved":
				if exists(src) {
					t.Fatal("moved file still at its source")
				}
				if b, err := os.ReadFile(d.Path); err != nil || string(b) != "payload" {
					t.Fatalf("moved file: %q, %v", b, err)
				}
			}
			if tc.preexist != "" {
				if b, _ := os.ReadFile(filepath.Join(dir, tc.preexist)); string(b) != "older" {
					t.Fatalf("existing destination file overwritten: %q", b)
				}
			}
			// The engine's own folders never produce work, even recursive.
			h.clock.Advance(time.Hour)
			h.expectReady()
		})
	}
}

func TestFileTriggerFailure(t *testing.T) {
	dir := t.TempDir()
	h := newFT(t, nil, FileSpec{Dir: dir, Recursive: true}, FileTriggerOptions{})
	src := filepath.Join(dir, "bad.csv")
	h.drop(src, "broken")
	h.settle()
	rf := h.expectReady(src)[src]
	d := h.complete(rf, errors.New("line 1: unknown column"))
	dest := filepath.Join(dir, FailedDir, "bad.csv")
	if d != (Disposition{Action: "failed", Path: dest}) {
		t.Fatalf("Disposition = %+v", d)
	}
	if exists(src) || !exists(dest) {
		t.Fatalf("file not moved to failed/: src %v, dest %v", exists(src), exists(dest))
	}
	note, err := os.ReadFile(dest + ".error")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"error: line 1: unknown column", "attempts: 1", "failed_at: 2025-03-03T07:00:02Z", "file: " + strconv.Quote(src)} {
		if !strings.Contains(string(note), want) {
			t.Errorf("error note lacks %q:\n%s", want, note)
		}
	}
	// A second failure of a file with the same name keeps the first.
	h.drop(src, "broken again")
	h.settle()
	rf = h.expectReady(src)[src]
	d = h.complete(rf, errors.New("still broken"))
	if want := filepath.Join(dir, FailedDir, "bad-1.csv"); d.Path != want || !exists(want+".error") || !exists(dest) {
		t.Fatalf("second failure went to %s (want %s), first kept: %v", d.Path, want, exists(dest))
	}
	h.clock.Advance(time.Hour)
	h.expectReady()
}

// TestFileTriggerErrorNoteQuotesName drops a file whose name holds a
// newline and a forged field, and fails it with a multi-line error that
// tries the same: the note keeps one line per field.
func TestFileTriggerErrorNoteQuotesName(t *testing.T) {
	dir := t.TempDir()
	h := newFT(t, nil, FileSpec{Dir: dir}, FileTriggerOptions{})
	src := filepath.Join(dir, "x\nerror: forged\rattempts: 0.csv")
	h.drop(src, "data")
	h.settle()
	rf := h.expectReady(src)[src]
	d := h.complete(rf, errors.New("boom\nfile: /etc/passwd\r\nattempts: 99"))
	note, err := os.ReadFile(d.Path + ".error")
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(note), "\n"), "\n") {
		if strings.HasPrefix(line, "  ") {
			continue // continuation of the error
		}
		key, _, ok := strings.Cut(line, ": ")
		if !ok {
			t.Errorf("note line %q is neither a field nor a continuation", line)
		}
		fields[key]++
	}
	for _, key := range []string{"file", "sha256", "failed_at", "attempts", "error"} {
		if fields[key] != 1 {
			t.Errorf("field %q appears %d times in the note:\n%s", key, fields[key], note)
		}
	}
	if len(fields) != 5 {
		t.Errorf("note has fields %v:\n%s", fields, note)
	}
	for _, want := range []string{"file: " + strconv.Quote(src) + "\n", "attempts: 1\n", "error: boom\n  file: /etc/passwd\\r\n  attempts: 99\n"} {
		if !strings.Contains(string(note), want) {
			t.Errorf("note lacks %q:\n%s", want, note)
		}
	}
}

func TestFileTriggerRetryWithBackoff(t *testing.T) {
	dir := t.TempDir()
	h := newFT(t, nil, FileSpec{Dir: dir, Backoff: Backoff{Initial: 10 * time.Second, Jitter: -1, MaxAttempts: 3}}, FileTriggerOptions{})
	src := filepath.Join(dir, "flaky.csv")
	h.drop(src, "x")
	h.settle()
	rf := h.expectReady(src)[src]
	smtpDown := errors.New("mail server unavailable")
	for _, step := range []struct {
		attempt int
		delay   time.Duration
	}{{1, 10 * time.Second}, {2, 20 * time.Second}} {
		if rf.Attempt != step.attempt {
			t.Fatalf("Attempt = %d, want %d", rf.Attempt, step.attempt)
		}
		d := h.complete(rf, Retry(smtpDown))
		if want := (Disposition{Action: "retry", Path: src, RetryAt: h.clock.Now().Add(step.delay)}); d != want {
			t.Fatalf("Disposition = %+v, want %+v", d, want)
		}
		if err := h.clock.WaitForTimers(waitCtx(t), 1); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(step.delay - time.Second)
		h.expectReady()
		h.clock.Advance(time.Second)
		rf = h.expectReady(src)[src]
	}
	if rf.Attempt != 3 {
		t.Fatalf("Attempt = %d, want 3", rf.Attempt)
	}
	d := h.complete(rf, Retry(smtpDown))
	if d.Action != "failed" {
		t.Fatalf("retries exhausted: Disposition = %+v, want failed", d)
	}
	note, err := os.ReadFile(d.Path + ".error")
	if err != nil || !strings.Contains(string(note), "attempts: 3") || !strings.Contains(string(note), smtpDown.Error()) {
		t.Fatalf("error note %q, %v", note, err)
	}
}

func TestFileTriggerEventsOption(t *testing.T) {
	tests := []struct {
		name         string
		events       []string
		wantNew      bool
		wantRewrites bool
	}{
		{"create only", []string{"create"}, true, false},
		{"write only", []string{"write"}, false, true},
		{"both", []string{"create", "write"}, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			kept := filepath.Join(dir, "kept.csv")
			writeFile(t, kept, "v1")
			events, err := ParseFileEvents(tc.events)
			if err != nil {
				t.Fatal(err)
			}
			h := newFT(t, nil, FileSpec{Dir: dir, Events: events, SkipExisting: true}, FileTriggerOptions{})
			fresh := filepath.Join(dir, "new.csv")
			h.drop(fresh, "n")
			h.drop(kept, "v2")
			h.settle()
			var want []string
			if tc.wantNew {
				want = append(want, fresh)
			}
			if tc.wantRewrites {
				want = append(want, kept)
			}
			got := h.expectReady(want...)
			if rf, ok := got[kept]; ok && rf.Op != OpWrite {
				t.Errorf("rewritten file Op = %v, want write", rf.Op)
			}
			if rf, ok := got[fresh]; ok && rf.Op != OpCreate {
				t.Errorf("new file Op = %v, want create", rf.Op)
			}
		})
	}
}

func TestFileTriggerChangedWhileHandled(t *testing.T) {
	dir := t.TempDir()
	h := newFT(t, nil, FileSpec{Dir: dir}, FileTriggerOptions{})
	src := filepath.Join(dir, "live.csv")
	h.drop(src, "v1")
	h.settle()
	rf := h.expectReady(src)[src]
	h.drop(src, "v2 written while the handler ran")
	h.clock.Advance(time.Hour)
	h.expectReady() // not handed over twice at once
	h.complete(rf, nil)
	h.settle()
	rf2 := h.expectReady(src)[src]
	if rf2.SHA256 != sha("v2 written while the handler ran") || rf2.Op != OpWrite {
		t.Fatalf("second version: %+v", rf2)
	}
}

func TestFileTriggerLedgerAcrossRestart(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	ledgerPath := filepath.Join(state, "ledger", "drop.jsonl")
	clock := NewFakeClock(t0)
	spec := FileSpec{Dir: dir, Pattern: "*.csv"}

	// First run: two files handled and kept.
	l1, err := OpenLedger(ledgerPath, LedgerOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	h1 := newFT(t, clock, spec, FileTriggerOptions{Ledger: l1})
	a, b := filepath.Join(dir, "a.csv"), filepath.Join(dir, "b.csv")
	h1.drop(a, "a")
	h1.drop(b, "b")
	h1.settle()
	for _, rf := range h1.expectReady(a, b) {
		h1.complete(rf, nil)
	}
	if err := h1.ft.Close(); err != nil {
		t.Fatal(err)
	}
	l1.Close()

	// While down: a new file arrives and an old one is rewritten.
	c := filepath.Join(dir, "c.csv")
	writeFile(t, c, "c")
	writeFile(t, b, "b, second edition")

	l2, err := OpenLedger(ledgerPath, LedgerOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	h2 := newFT(t, clock, spec, FileTriggerOptions{Ledger: l2})
	h2.settle()
	got := h2.expectReady(b, c) // a is unchanged: not again
	if got[b].SHA256 != sha("b, second edition") {
		t.Fatalf("b handed over with the old content: %+v", got[b])
	}
}

func TestFileTriggerFinishesAfterActionFromLedger(t *testing.T) {
	// A crash after the ledger recorded success but before the file was
	// moved: the next start moves it without running the handler again.
	dir := t.TempDir()
	clock := NewFakeClock(t0)
	src := filepath.Join(dir, "paid.csv")
	writeFile(t, src, "invoice")
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(filepath.Join(t.TempDir(), "l.jsonl"), LedgerOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Record(LedgerKey{src, fi.Size(), fi.ModTime(), sha("invoice")}, OutcomeDone); err != nil {
		t.Fatal(err)
	}
	h := newFT(t, clock, FileSpec{Dir: dir, After: After{Kind: AfterMove, Dir: DoneDir}}, FileTriggerOptions{Ledger: l})
	h.settle()
	h.expectReady()
	if exists(src) || !exists(filepath.Join(dir, DoneDir, "paid.csv")) {
		t.Fatal("after action not completed from the ledger")
	}
}

func TestFileTriggerThousandFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("drops 1000 files")
	}
	const n = 1000
	dir := t.TempDir()
	l, err := OpenLedger(filepath.Join(t.TempDir(), "l.jsonl"), LedgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := runtime.NumGoroutine()
	h := newFT(t, nil, FileSpec{Dir: dir, Pattern: "*.eml", After: After{Kind: AfterMove, Dir: DoneDir}},
		FileTriggerOptions{Ledger: l, Workers: 4})

	paths := make(map[string]bool, n)
	for i := range n {
		p := filepath.Join(dir, "msg-"+strings.Repeat("0", 4-len(itoa(i)))+itoa(i)+".eml")
		writeFile(t, p, "message "+itoa(i))
		paths[p] = true
	}
	// Wait until the trigger has seen each file's write, so the whole batch
	// settles in one Advance.
	seen := make(map[string]bool, n)
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case ev := <-h.obs.ch:
			if ev.Op.Has(OpWrite) && paths[ev.Path] {
				seen[ev.Path] = true
			}
		case <-deadline:
			t.Fatalf("only %d of %d writes observed", len(seen), n)
		}
	}
	h.settle()

	peak := 0
	got := make(map[string]bool, n)
	for range n {
		rf := h.recv()
		if got[rf.Path] {
			t.Fatalf("%s delivered twice", rf.Path)
		}
		got[rf.Path] = true
		if g := runtime.NumGoroutine(); g > peak {
			peak = g
		}
		if _, err := h.ft.Complete(rf, nil); err != nil {
			t.Fatal(err)
		}
	}
	for p := range paths {
		if !got[p] {
			t.Fatalf("%s never delivered", p)
		}
	}
	h.clock.Advance(time.Hour)
	h.expectReady()
	// Loop, workers, watcher loop and fsnotify's reader: a constant, not
	// one per file.
	if limit := before + 4 + 6; peak > limit {
		t.Fatalf("goroutines peaked at %d with %d before: not bounded", peak, before)
	}
	done, err := os.ReadDir(filepath.Join(dir, DoneDir))
	if err != nil || len(done) != n {
		t.Fatalf("%d files in done/, want %d (%v)", len(done), n, err)
	}
	if err := h.ft.Close(); err != nil {
		t.Fatal(err)
	}
	goroutinesAtMost(t, before)
}

// goroutinesAtMost waits until at most n goroutines run. Close returns
// once the component's goroutines are released, but fsnotify's reader
// finishes its deferred cleanup just after, so the count is polled (with a
// failure deadline) rather than read once.
func goroutinesAtMost(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d, want at most %d after Close", runtime.NumGoroutine(), n)
		}
		runtime.Gosched()
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

func TestParseAfter(t *testing.T) {
	tests := []struct {
		in      string
		want    After
		wantErr bool
	}{
		{"", After{Kind: AfterKeep}, false},
		{"keep", After{Kind: AfterKeep}, false},
		{"delete", After{Kind: AfterDelete}, false},
		{"move:done", After{Kind: AfterMove, Dir: "done"}, false},
		{"move:processed/ok/", After{Kind: AfterMove, Dir: "processed/ok"}, false},
		{"move:/srv/archive", After{Kind: AfterMove, Dir: "/srv/archive"}, false},
		{"move:", After{}, true},
		{"move: ", After{}, true},
		{"move:a\nb", After{}, true},
		{"archive", After{}, true},
	}
	for _, tc := range tests {
		got, err := ParseAfter(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseAfter(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && tc.in != "" && strings.TrimSuffix(tc.in, "/") != got.String() {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

func TestParseFileEvents(t *testing.T) {
	tests := []struct {
		in      []string
		want    Op
		wantErr bool
	}{
		{nil, OpCreate | OpWrite, false},
		{[]string{"create"}, OpCreate, false},
		{[]string{"write", "create"}, OpCreate | OpWrite, false},
		{[]string{"remove"}, 0, true},
	}
	for _, tc := range tests {
		got, err := ParseFileEvents(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseFileEvents(%v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestFileTriggerLifecycle(t *testing.T) {
	if _, err := NewFileTrigger(FileSpec{}, FileTriggerOptions{}); err == nil {
		t.Error("NewFileTrigger without dir succeeded")
	}
	if _, err := NewFileTrigger(FileSpec{Dir: t.TempDir(), Pattern: "[x"}, FileTriggerOptions{}); err == nil {
		t.Error("bad pattern accepted")
	}
	if ft, err := NewFileTrigger(FileSpec{Dir: filepath.Join(t.TempDir(), "missing")}, FileTriggerOptions{}); err != nil {
		t.Fatal(err)
	} else if err := ft.Start(); err == nil {
		ft.Close()
		t.Error("Start on a missing directory succeeded")
	}
	ft, err := NewFileTrigger(FileSpec{Dir: t.TempDir()}, FileTriggerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ft.Close(); err != nil { // without Start
		t.Fatal(err)
	}
	if err := ft.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ft.Start(); err == nil {
		t.Error("Start after Close succeeded")
	}
	if _, ok := <-ft.Ready(); ok {
		t.Error("Ready open after Close")
	}
}

func TestFileTriggerRealClock(t *testing.T) {
	// The production wiring: real clock, default workers. The settle period
	// is short so the test waits for the ready file, not for minutes.
	dir := t.TempDir()
	ft, err := NewFileTrigger(FileSpec{Dir: dir, Pattern: "*.csv", Settle: 20 * time.Millisecond}, FileTriggerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ft.Close()
	if err := ft.Start(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "live.csv")
	writeFile(t, path, "a,b\n")
	select {
	case rf := <-ft.Ready():
		if rf.Path != path || rf.SHA256 != sha("a,b\n") {
			t.Fatalf("ready %+v", rf)
		}
	case err := <-ft.Errors():
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("file never became ready")
	}
}

// TestFileTriggerOverflowBurstRescansOnce: a burst of overflows from the
// watcher gives the trigger one error and one rescan, which finds the file
// whose events were lost.
func TestFileTriggerOverflowBurstRescansOnce(t *testing.T) {
	dir := t.TempDir()
	src := newFakeSource()
	h := newFT(t, nil, FileSpec{Dir: dir}, FileTriggerOptions{source: src})
	lost := filepath.Join(dir, "lost.csv")
	writeTestFile(t, lost, "no event was seen for this file")
	for i := 0; i < 200; i++ {
		src.errors <- fsnotify.ErrEventOverflow
	}
	h.ft.watcher.barrier() // the burst's deadline is armed
	h.clock.Advance(OverflowQuiet)
	select {
	case err := <-h.ft.Errors():
		if !errors.Is(err, fsnotify.ErrEventOverflow) {
			t.Fatalf("error %v, want an overflow", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no overflow error reported")
	}
	h.settle()
	h.expectReady(lost)
	if n := h.ft.rescans.Load(); n != 1 {
		t.Fatalf("%d rescans for one burst, want 1", n)
	}
	select {
	case err := <-h.ft.Errors():
		t.Fatalf("second error %v for one burst", err)
	default:
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFileTriggerAttemptsSurviveRestart: retry counts are kept in the
// ledger, so a file that keeps asking for a retry goes to failed/ after
// MaxAttempts runs in total, however many restarts come between.
func TestFileTriggerAttemptsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ledgerPath := filepath.Join(t.TempDir(), "ledger.jsonl")
	clock := NewFakeClock(t0)
	spec := FileSpec{Dir: dir, Backoff: Backoff{Initial: 10 * time.Second, Jitter: -1, MaxAttempts: 3}}
	src := filepath.Join(dir, "flaky.csv")
	writeFile(t, src, "x")
	down := Retry(errors.New("mail server unavailable"))

	wantAttempts := 1
	for restart := 0; restart < 2; restart++ {
		l, err := OpenLedger(ledgerPath, LedgerOptions{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		h := newFT(t, clock, spec, FileTriggerOptions{Ledger: l})
		h.settle()
		rf := h.expectReady(src)[src]
		if rf.Attempt != wantAttempts {
			t.Fatalf("after %d restarts: Attempt = %d, want %d", restart, rf.Attempt, wantAttempts)
		}
		if d := h.complete(rf, down); d.Action != "retry" {
			t.Fatalf("attempt %d: Disposition %+v, want retry", rf.Attempt, d)
		}
		wantAttempts++
		h.ft.Close() // a restart before the retry comes due
		l.Close()
	}

	l, err := OpenLedger(ledgerPath, LedgerOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := newFT(t, clock, spec, FileTriggerOptions{Ledger: l})
	h.settle()
	rf := h.expectReady(src)[src]
	if rf.Attempt != 3 {
		t.Fatalf("after two restarts: Attempt = %d, want 3", rf.Attempt)
	}
	d := h.complete(rf, down)
	if want := filepath.Join(dir, FailedDir, "flaky.csv"); d.Action != "failed" || d.Path != want {
		t.Fatalf("last attempt: Disposition %+v, want failed to %s", d, want)
	}
	note, err := os.ReadFile(d.Path + ".error")
	if err != nil || !strings.Contains(string(note), "attempts: 3\n") {
		t.Fatalf("error note %q, %v", note, err)
	}
	if e, ok := l.Lookup(rf.Key()); !ok || e.Outcome != OutcomeFailed {
		t.Fatalf("ledger entry %+v, %v; want failed", e, ok)
	}
}
