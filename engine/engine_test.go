package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
)

// hit is one call of probe.hit(name, value) from a handler.
type hit struct {
	name  string
	value string
}

// logTap is a slog handler that forwards records to the test.
type logTap struct {
	mu   sync.Mutex
	recs []slog.Record
	ch   chan slog.Record
}

func (l *logTap) Enabled(context.Context, slog.Level) bool { return true }
func (l *logTap) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
	select {
	case l.ch <- r:
	default:
	}
	return nil
}
func (l *logTap) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logTap) WithGroup(string) slog.Handler      { return l }

func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// harness runs an engine over a temporary scripts dir. Handlers report to
// the test through the probe module: probe.hit(name, value) and
// probe.block(name), which waits until the test releases name.
type harness struct {
	t        *testing.T
	scripts  string
	state    string
	hits     chan hit
	logs     *logTap
	clock    Clock
	e        *Engine
	cancel   context.CancelFunc
	done     chan error
	blockMu  sync.Mutex
	blockers map[string]chan struct{}
	cfg      Config
}

func newHarness(t *testing.T, clock Clock) *harness {
	t.Helper()
	root := t.TempDir()
	h := &harness{
		t: t, scripts: filepath.Join(root, "scripts"), state: filepath.Join(root, "state"),
		hits: make(chan hit, 4096), logs: &logTap{ch: make(chan slog.Record, 4096)},
		clock: clock, blockers: map[string]chan struct{}{},
	}
	if err := os.MkdirAll(h.scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	h.cfg = Config{ScriptsDir: h.scripts, StateDir: h.state, Grace: 5 * time.Second, RunTimeout: 10 * time.Second}
	return h
}

func (h *harness) probeLoader(L *lua.LState) int {
	mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"hit": func(L *lua.LState) int {
			h.hits <- hit{L.CheckString(1), L.OptString(2, "")}
			return 0
		},
		"block": func(L *lua.LState) int {
			h.blocker(L.CheckString(1)) // created on demand
			select {
			case <-h.blocker(L.CheckString(1)):
			case <-L.Context().Done():
			}
			return 0
		},
		"dir": func(L *lua.LState) int {
			L.Push(lua.LString(filepath.Dir(h.scripts)))
			return 1
		},
	})
	L.Push(mod)
	return 1
}

func (h *harness) blocker(name string) chan struct{} {
	h.blockMu.Lock()
	defer h.blockMu.Unlock()
	ch, ok := h.blockers[name]
	if !ok {
		ch = make(chan struct{})
		h.blockers[name] = ch
	}
	return ch
}

func (h *harness) release(name string) { close(h.blocker(name)) }

func (h *harness) write(name, src string) {
	h.t.Helper()
	// Write then rename, as editors do, so the watcher never sees half a file.
	tmp := filepath.Join(h.scripts, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(src), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.scripts, name)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) start() {
	h.t.Helper()
	opts := []Option{WithLogger(slog.New(h.logs)), WithModule("probe", h.probeLoader)}
	if h.clock != nil {
		opts = append(opts, WithClock(h.clock))
	}
	e, err := New(h.cfg, opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.e = e
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- e.Run(ctx) }()
	h.waitLog("engine started", "")
	h.t.Cleanup(h.stop)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("engine stopped with %v", err)
		}
	case <-time.After(20 * time.Second):
		h.t.Fatal("engine did not stop")
	}
}

// waitLog waits for a log record with msg (and script, if not empty).
func (h *harness) waitLog(msg, script string) slog.Record {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-h.logs.ch:
			if r.Message == msg && (script == "" || attr(r, "script") == script) {
				return r
			}
		case <-deadline:
			h.t.Fatalf("no log record %q for %q within 10s", msg, script)
		}
	}
}

// waitLogged waits until a record msg for script has been logged at any
// time, including before the call (waitLog only sees later ones).
func (h *harness) waitLogged(msg, script string) {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		h.logs.mu.Lock()
		for _, r := range h.logs.recs {
			if r.Message == msg && attr(r, "script") == script {
				h.logs.mu.Unlock()
				return
			}
		}
		h.logs.mu.Unlock()
		select {
		case <-h.logs.ch: // something new was logged: look again
		case <-deadline:
			h.dumpLogs()
			h.t.Fatalf("no log record %q for %q within 10s", msg, script)
		}
	}
}

func (h *harness) waitHit(name string) hit {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case x := <-h.hits:
			if x.name == name {
				return x
			}
		case <-deadline:
			h.dumpLogs()
			h.t.Fatalf("no probe.hit(%q) within 10s", name)
		}
	}
}

func (h *harness) dumpLogs() {
	h.logs.mu.Lock()
	defer h.logs.mu.Unlock()
	for _, r := range h.logs.recs {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		h.t.Logf("log: %s%s", r.Message, b.String())
	}
}

// noHit checks that nothing more arrives while the engine finishes what it
// is doing: it waits for a marker hit that is sent after.
func (h *harness) drainUntil(name string) []hit {
	h.t.Helper()
	var got []hit
	deadline := time.After(10 * time.Second)
	for {
		select {
		case x := <-h.hits:
			if x.name == name {
				return got
			}
			got = append(got, x)
		case <-deadline:
			h.t.Fatalf("no probe.hit(%q) within 10s", name)
		}
	}
}

func TestOnStartAndState(t *testing.T) {
	h := newHarness(t, nil)
	h.write("counter.lua", `
local probe = require("probe")
mailbot.on_start(function(ev)
  local n = (mailbot.state.get("starts") or 0) + 1
  mailbot.state.set("starts", n)
  probe.hit("start", mailbot.script .. ":" .. ev.trigger .. ":" .. n)
end)`)
	h.start()
	if got := h.waitHit("start").value; got != "counter.lua:on_start:1" {
		t.Errorf("first start = %q", got)
	}
	h.stop()
	h.start() // state survives a restart
	if got := h.waitHit("start").value; got != "counter.lua:on_start:2" {
		t.Errorf("after restart = %q", got)
	}
}

func TestHotReload(t *testing.T) {
	h := newHarness(t, nil)
	h.write("greet.lua", `mailbot.on_start(function() require("probe").hit("version", "1") end)`)
	h.start()
	if v := h.waitHit("version").value; v != "1" {
		t.Fatalf("version %q", v)
	}

	// An atomic save (temp file + rename) activates the new version.
	h.write("greet.lua", `mailbot.on_start(function() require("probe").hit("version", "2") end)`)
	h.waitLog("script reloaded", "greet.lua")
	if v := h.waitHit("version").value; v != "2" {
		t.Fatalf("after reload: version %q", v)
	}

	// A syntax error keeps version 2 and logs file:line.
	h.write("greet.lua", "mailbot.on_start(function()\n  this is not lua\nend)")
	r := h.waitLog("script load failed", "greet.lua")
	if at := attr(r, "at"); !strings.HasSuffix(at, "greet.lua:2") {
		t.Errorf("load error at %q, want greet.lua:2 (error: %s)", at, attr(r, "error"))
	}
	h.e.mu.Lock()
	s := h.e.scripts["greet.lua"]
	h.e.mu.Unlock()
	if s == nil || len(s.starts) != 1 {
		t.Fatal("the running version was dropped by a broken edit")
	}
}

func TestDeletedScriptStopsTriggers(t *testing.T) {
	clock := NewFakeClock(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC))
	h := newHarness(t, clock)
	h.write("tick.lua", `mailbot.every("1m", function() require("probe").hit("tick") end)`)
	h.start()
	waitTimers(t, clock, 1)
	clock.Advance(time.Minute)
	h.waitHit("tick")
	os.Remove(filepath.Join(h.scripts, "tick.lua"))
	// The watcher debounces through the fake clock too.
	waitTimers(t, clock, 2)
	clock.Advance(DefaultDebounce)
	h.waitLog("script removed", "tick.lua")
	if n := clock.Timers(); n != 0 {
		t.Errorf("%d timers still armed after the script was removed", n)
	}
}

func waitTimers(t *testing.T, c *FakeClock, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitForTimers(ctx, n); err != nil {
		t.Fatalf("waiting for %d timers (have %d): %v", n, c.Timers(), err)
	}
}

func TestEveryAndCronWithFakeClock(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 7, 59, 0, 0, time.UTC) // a Monday
	clock := NewFakeClock(t0)
	h := newHarness(t, clock)
	h.write("sched.lua", `
local probe = require("probe")
mailbot.every("30s", function(ev) probe.hit("every", tostring(ev.scheduled_at)) end)
mailbot.cron("0 8 * * 1-5", function(ev) probe.hit("cron", os.date("!%H:%M", ev.scheduled_at)) end, { tz = "UTC" })
`)
	h.start()
	waitTimers(t, clock, 1)
	clock.Advance(30 * time.Second)
	if v := h.waitHit("every").value; v != fmt.Sprint(t0.Add(30*time.Second).Unix()) {
		t.Errorf("every fired for %s", v)
	}
	h.waitLog("run ok", "sched.lua")
	clock.Advance(30 * time.Second)
	// Both are due at 08:00; they may run in either order.
	got := map[string]string{}
	for len(got) < 2 {
		x := <-h.hits
		got[x.name] = x.value
	}
	if got["cron"] != "08:00" || got["every"] != fmt.Sprint(t0.Add(time.Minute).Unix()) {
		t.Errorf("at 08:00: %v", got)
	}
}

func TestScheduleNoOverlap(t *testing.T) {
	clock := NewFakeClock(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC))
	h := newHarness(t, clock)
	h.write("slow.lua", `
local probe = require("probe")
mailbot.every("1m", function() probe.hit("started"); probe.block("slow"); probe.hit("finished") end)`)
	h.start()
	waitTimers(t, clock, 1)
	clock.Advance(time.Minute)
	h.waitHit("started")
	waitTimers(t, clock, 1)
	clock.Advance(time.Minute) // fires while the first run is blocked
	h.waitLog("schedule tick skipped: the previous run is still going", "slow.lua")
	h.release("slow")
	h.waitHit("finished")
	if st := h.e.Stats(); st.Skipped != 1 {
		t.Errorf("skipped = %d, want 1", st.Skipped)
	}
}

func TestCatchUpAfterDowntime(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC)
	clock := NewFakeClock(t0)
	h := newHarness(t, clock)
	h.write("daily.lua", `
mailbot.cron("0 8 * * *", function(ev) require("probe").hit("daily", os.date("!%d %H:%M", ev.scheduled_at)) end,
  { tz = "UTC", catchup = true })`)
	h.start()
	h.stop()
	// Down over two 08:00 activations: one catch-up run, for the latest.
	clock.Set(t0.Add(49 * time.Hour))
	h.start()
	if v := h.waitHit("daily").value; v != "24 08:00" {
		t.Errorf("catch-up ran for %q, want the 24th 08:00", v)
	}
	h.stop()
	h.start() // nothing missed since: no second catch-up
	h.stop()  // waits for every run in flight
	if len(h.hits) != 0 {
		t.Errorf("unexpected run after restart: %v", <-h.hits)
	}
}

func TestRunawayHandlerStopped(t *testing.T) {
	clock := NewFakeClock(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC))
	h := newHarness(t, clock)
	h.write("loop.lua", `mailbot.every("1m", function() while true do end end, { timeout = "200ms" })`)
	h.write("fine.lua", `mailbot.every("1m", function() require("probe").hit("fine") end)`)
	h.start()
	waitTimers(t, clock, 1)
	clock.Advance(time.Minute)
	h.waitHit("fine")
	h.waitLog("run ok", "fine.lua")
	r := h.waitLog("run stopped: timeout", "loop.lua")
	if attr(r, "trigger") != "every 1m" {
		t.Errorf("timeout logged for trigger %q", attr(r, "trigger"))
	}
	// The engine and the other script keep going.
	clock.Advance(time.Minute)
	h.waitHit("fine")
}

func TestFileDropHandledOnceAndMoved(t *testing.T) {
	h := newHarness(t, nil)
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	h.write("drop.lua", fmt.Sprintf(`
local probe = require("probe")
mailbot.on_file({ dir = %q, pattern = "*.csv", settle = "100ms", after = "move:done" }, function(ev)
  probe.hit("file", ev.name .. ":" .. ev.size .. ":" .. ev.op)
end)`, drop))
	h.start()
	waitDir(t, drop)
	if err := os.WriteFile(filepath.Join(drop, "a.csv"), []byte("x,y\n1,2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(drop, "ignored.txt"), []byte("no"), 0o644)
	if v := h.waitHit("file").value; v != "a.csv:8:create" {
		t.Errorf("handler saw %q", v)
	}
	r := h.waitLog("file handled", "drop.lua")
	if got, want := attr(r, "now_at"), filepath.Join(drop, "done", "a.csv"); got != want {
		t.Errorf("file moved to %q, want %q", got, want)
	}
}

// waitDir waits until the engine created the drop folder (file triggers
// start in the background after a load).
func waitDir(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not created", dir)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFailedFileGoesToFailedFolder(t *testing.T) {
	h := newHarness(t, nil)
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	os.MkdirAll(drop, 0o755)
	os.WriteFile(filepath.Join(drop, "bad.csv"), []byte("boom"), 0o644)
	h.write("fail.lua", fmt.Sprintf(`
mailbot.on_file({ dir = %q, settle = "50ms" }, function(ev) error("cannot parse " .. ev.name) end)`, drop))
	h.start()
	r := h.waitLog("run failed", "fail.lua")
	if !strings.Contains(attr(r, "error"), "cannot parse bad.csv") || !strings.Contains(attr(r, "at"), "fail.lua:2") {
		t.Errorf("failure logged as %q at %q", attr(r, "error"), attr(r, "at"))
	}
	h.waitLog("file handled", "fail.lua")
	note, err := os.ReadFile(filepath.Join(drop, "failed", "bad.csv.error"))
	if err != nil || !strings.Contains(string(note), "cannot parse bad.csv") {
		t.Errorf("error note: %q, %v", note, err)
	}
	if b, err := os.ReadFile(filepath.Join(drop, "failed", "bad.csv")); err != nil || string(b) != "boom" {
		t.Errorf("failed file lost: %q, %v", b, err)
	}
}

func TestSlowlyWrittenFileHandledOnceComplete(t *testing.T) {
	h := newHarness(t, nil)
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	h.write("slow.lua", fmt.Sprintf(`
mailbot.on_file({ dir = %q, settle = "300ms" }, function(ev) require("probe").hit("file", tostring(ev.size)) end)`, drop))
	h.start()
	waitDir(t, drop)
	f, err := os.Create(filepath.Join(drop, "big.dat"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		f.Write([]byte(strings.Repeat("x", 1000)))
		time.Sleep(100 * time.Millisecond) // the writer is slow: that is the test's input, not synchronisation
	}
	f.Close()
	if v := h.waitHit("file").value; v != "5000" {
		t.Errorf("handler saw size %s, want the complete 5000", v)
	}
	h.write("marker.lua", `mailbot.on_start(function() require("probe").hit("marker") end)`)
	if extra := h.drainUntil("marker"); len(extra) != 0 {
		t.Errorf("file handled more than once: %v", extra)
	}
}

func TestThousandFilesExactlyOnceAndRestart(t *testing.T) {
	h := newHarness(t, nil)
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	os.MkdirAll(drop, 0o755)
	const n = 1000
	// Half are there at start, half dropped at once while running.
	for i := 0; i < n/2; i++ {
		os.WriteFile(filepath.Join(drop, fmt.Sprintf("f%04d.txt", i)), []byte(fmt.Sprint(i)), 0o644)
	}
	h.write("many.lua", fmt.Sprintf(`
mailbot.on_file({ dir = %q, settle = "50ms" }, function(ev) require("probe").hit("file", ev.name) end)`, drop))
	g0 := runtime.NumGoroutine()
	h.start()
	h.waitLogged("file trigger started", "many.lua")
	for i := n / 2; i < n; i++ {
		os.WriteFile(filepath.Join(drop, fmt.Sprintf("f%04d.txt", i)), []byte(fmt.Sprint(i)), 0o644)
	}
	if g := runtime.NumGoroutine() - g0; g > 50 {
		t.Errorf("%d goroutines for one file trigger with %d files: not bounded", g, n)
	}
	seen := map[string]int{}
	for len(seen) < n {
		seen[h.waitHit("file").value]++
	}
	h.stop()
	for name, c := range seen {
		if c != 1 {
			t.Errorf("%s handled %d times", name, c)
		}
	}
	// Files stay in place (after = keep); the ledger prevents a second
	// run after a restart, and a file dropped while down is handled.
	os.WriteFile(filepath.Join(drop, "late.txt"), []byte("late"), 0o644)
	h.start()
	if v := h.waitHit("file").value; v != "late.txt" {
		t.Errorf("first file after restart = %q, want late.txt", v)
	}
	h.write("marker.lua", `mailbot.on_start(function() require("probe").hit("marker") end)`)
	if extra := h.drainUntil("marker"); len(extra) != 0 {
		t.Errorf("%d files reprocessed after restart, e.g. %v", len(extra), extra[0])
	}
}

func TestNewRejectsMissingScriptsDir(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without ScriptsDir succeeded")
	}
	e, err := New(Config{ScriptsDir: filepath.Join(t.TempDir(), "missing")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "scripts_dir") {
		t.Fatalf("Run with a missing scripts dir = %v", err)
	}
}

var _ = luabind.DescribeError

// TestScriptsRunInParallelUpToWorkers: with two workers, the handlers of two
// scripts run at the same time; a third script waits for a free worker.
func TestScriptsRunInParallelUpToWorkers(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Workers = 2
	for _, name := range []string{"a", "b", "c"} {
		h.write(name+".lua", fmt.Sprintf(`
local probe = require("probe")
mailbot.on_start(function() probe.hit("started", %q); probe.block(%q) end)`, name, name))
	}
	h.start()
	first := map[string]bool{h.waitHit("started").value: true, h.waitHit("started").value: true}
	if len(first) != 2 {
		t.Fatalf("two different scripts should run at once, got %v", first)
	}
	select {
	case x := <-h.hits:
		t.Fatalf("a third run started with both workers busy: %v", x)
	default:
	}
	var waiting string
	for _, n := range []string{"a", "b", "c"} {
		if !first[n] {
			waiting = n
		}
	}
	var freed string
	for n := range first {
		freed = n
		break
	}
	h.release(freed)
	if got := h.waitHit("started").value; got != waiting {
		t.Errorf("after a worker freed up, %q started, want %q", got, waiting)
	}
	for _, n := range []string{"a", "b", "c"} {
		if n != freed {
			h.release(n)
		}
	}
}

func TestOnFileOverlapSkipRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.write("skip.lua", `mailbot.on_file({ dir = "drop", overlap = "skip" }, function() end)`)
	h.start()
	h.e.mu.Lock()
	_, loaded := h.e.scripts["skip.lua"]
	h.e.mu.Unlock()
	if loaded {
		t.Fatal(`overlap = "skip" on a file trigger was accepted`)
	}
	found := false
	h.logs.mu.Lock()
	for _, r := range h.logs.recs {
		if r.Message == "script load failed" && strings.Contains(attr(r, "error"), `overlap = "skip" is not possible`) {
			found = true
		}
	}
	h.logs.mu.Unlock()
	if !found {
		t.Error("no load error explaining that files always queue")
	}
}

// TestHubOverflowRescans forces the shared watcher's per-subscriber queue
// to overflow: the file trigger must rescan its folder and still hand every
// file over exactly once.
func TestHubOverflowRescans(t *testing.T) {
	old := hubQueue
	hubQueue = 1
	t.Cleanup(func() { hubQueue = old })
	h := newHarness(t, nil)
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	h.write("burst.lua", fmt.Sprintf(`
mailbot.on_file({ dir = %q, settle = "50ms" }, function(ev) require("probe").hit("file", ev.name) end)`, drop))
	h.start()
	h.waitLogged("file trigger started", "burst.lua")
	const n = 300
	for i := 0; i < n; i++ {
		os.WriteFile(filepath.Join(drop, fmt.Sprintf("b%03d.txt", i)), []byte(fmt.Sprint(i)), 0o644)
	}
	seen := map[string]int{}
	for len(seen) < n {
		seen[h.waitHit("file").value]++
	}
	h.write("marker.lua", `mailbot.on_start(function() require("probe").hit("marker") end)`)
	for _, x := range h.drainUntil("marker") {
		seen[x.value]++
	}
	for name, c := range seen {
		if c != 1 {
			t.Errorf("%s handled %d times", name, c)
		}
	}
	overflowed := false
	h.logs.mu.Lock()
	for _, r := range h.logs.recs {
		if r.Message == "file trigger" && strings.Contains(attr(r, "error"), "overflow") {
			overflowed = true
		}
	}
	h.logs.mu.Unlock()
	if !overflowed {
		t.Error("the queue never overflowed: the rescan path was not exercised")
	}
}

// TestOverflowBurstLoggedOnce injects a burst of inotify overflows into
// the engine's hub: the scripts watcher and a file trigger each log one
// record and rescan once.
func TestOverflowBurstLoggedOnce(t *testing.T) {
	h := newHarness(t, nil)
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	h.write("burst.lua", fmt.Sprintf(`
mailbot.on_file({ dir = %q, settle = "50ms" }, function(ev) require("probe").hit("file", ev.name) end)`, drop))
	h.start()
	h.waitLogged("file trigger started", "burst.lua")
	const n = 500
	h.e.hub.injectErrors(fsnotify.ErrEventOverflow, n)
	isOverflow := func(r slog.Record) bool { return strings.Contains(attr(r, "error"), "overflow") }
	count := func(msg string) int {
		h.logs.mu.Lock()
		defer h.logs.mu.Unlock()
		c := 0
		for _, r := range h.logs.recs {
			if r.Message == msg && isOverflow(r) {
				c++
			}
		}
		return c
	}
	deadline := time.After(10 * time.Second)
	for count("file trigger") == 0 || count("watching scripts dir") == 0 {
		select {
		case <-h.logs.ch:
		case <-deadline:
			h.dumpLogs()
			t.Fatal("overflow not logged by both watchers")
		}
	}
	// Let any further (wrong) reports come: a script loaded after the
	// burst has passed through the same watcher.
	h.write("marker.lua", `mailbot.on_start(function() require("probe").hit("marker") end)`)
	h.waitHit("marker")
	if a, b := count("file trigger"), count("watching scripts dir"); a != 1 || b != 1 {
		h.dumpLogs()
		t.Fatalf("a burst of %d overflows logged %d times by the file trigger and %d by the scripts watcher, want once each", n, a, b)
	}
	if r := h.e.scriptRescans.Load(); r != 1 {
		t.Fatalf("scripts dir rescanned %d times, want 1", r)
	}
}

// TestMemoryHogStopped runs a script that grows a table without end next
// to a well-behaved one: the hog's runs are stopped with a memory error,
// the other script keeps firing and the engine keeps running.
func TestMemoryHogStopped(t *testing.T) {
	clock := NewFakeClock(time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC))
	h := newHarness(t, clock)
	h.cfg.Lua.MemoryLimit = 32 << 20
	h.write("hog.lua", `
local probe = require("probe")
mailbot.every("1m", function()
  local ok, err = pcall(function()
    local t = {}
    for i = 1, 1e9 do t[i] = i end
  end)
  probe.hit("hog caught", type(err) == "table" and err.kind or tostring(err))
  probe.hit("hog still running")  -- never reached: the run is doomed
end)`)
	h.write("fine.lua", `mailbot.every("1m", function() require("probe").hit("fine") end)`)
	h.start()
	waitTimers(t, clock, 1)
	for round := 0; round < 2; round++ {
		clock.Advance(time.Minute)
		h.waitHit("fine")
		r := h.waitLog("run stopped: memory limit", "hog.lua")
		if got := attr(r, "error"); !strings.Contains(got, "memory: ") || !strings.Contains(got, "limits.memory") {
			t.Errorf("logged error %q", got)
		}
		if attr(r, "limit") != fmt.Sprint(32<<20) {
			t.Errorf("logged limit %q", attr(r, "limit"))
		}
		waitTimers(t, clock, 1)
	}
	select {
	case x := <-h.hits:
		if strings.HasPrefix(x.name, "hog") {
			t.Errorf("the hog kept running after its memory error: %v", x)
		}
	default:
	}
}
