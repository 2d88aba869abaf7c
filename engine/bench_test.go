//go:build unix

package engine

// Benchmarks for the engine's targets. They measure and report; they do not
// assert timing, because a shared machine's timing is not a test verdict.
//
//   - BenchmarkLoad1000Scripts: loading 1,000 small scripts takes under 1 s
//     in all ("ms/load", up to the "engine started" record) and under
//     200 KB of live heap per loaded script state ("heap-B/script", the
//     HeapAlloc growth after a GC with every state alive).
//   - BenchmarkFileDropLatency: a dropped file's handler starts within
//     settle + 20 ms at p50 and settle + 100 ms at p99 ("p50-ms", "p99-ms":
//     handler start minus the close of the file minus settle).
//
// Run: go test -run='^$' -bench='Load1000|FileDrop' -benchtime=3x -count=3 ./engine
// (FileDropLatency wants more samples: -benchtime=100x.)

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// benchLog is a slog handler that hands the records a benchmark waits for
// to channels and counts errors. Debug records are disabled, as in a
// production logger at the default level, so "run start" costs nothing.
type benchLog struct {
	started      chan time.Time // time of the "engine started" record
	handled      chan string    // path of each "file handled" record
	errors       atomic.Int64   // records at level Error
	fileTriggers atomic.Int64   // "file trigger started" records
	mu           sync.Mutex
	errMsgs      map[string]int // first error text per message, for the report
}

func newBenchLog() *benchLog {
	return &benchLog{
		started: make(chan time.Time, 1),
		handled: make(chan string, 1024),
		errMsgs: map[string]int{},
	}
}

func (l *benchLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelDebug }

func (l *benchLog) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "engine started":
		l.started <- r.Time
	case "file trigger started":
		l.fileTriggers.Add(1)
	case "file handled":
		select {
		case l.handled <- attr(r, "path"):
		default:
		}
	}
	if r.Level >= slog.LevelError {
		l.errors.Add(1)
		l.mu.Lock()
		l.errMsgs[r.Message+": "+attr(r, "error")]++
		l.mu.Unlock()
	}
	return nil
}

func (l *benchLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *benchLog) WithGroup(string) slog.Handler      { return l }

// summary returns the distinct error records and their counts.
func (l *benchLog) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for m, n := range l.errMsgs {
		parts = append(parts, fmt.Sprintf("%dx %s", n, m))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// benchEngine is one running engine.
type benchEngine struct {
	e      *Engine
	cancel context.CancelFunc
	done   chan error
}

// startBenchEngine starts an engine and returns once it logged "engine
// started", with the time from the call to that record.
func startBenchEngine(b *testing.B, cfg Config, log *benchLog, opts ...Option) (*benchEngine, time.Duration) {
	b.Helper()
	t0 := time.Now()
	// t0 is taken before New, so option handling and defaults are included.
	e, err := New(cfg, append([]Option{WithLogger(slog.New(log))}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	be := &benchEngine{e: e, cancel: cancel, done: make(chan error, 1)}
	go func() { be.done <- e.Run(ctx) }()
	select {
	case at := <-log.started:
		return be, at.Sub(t0)
	case err := <-be.done:
		b.Fatalf("engine stopped before it started: %v", err)
	case <-time.After(2 * time.Minute):
		b.Fatal("no \"engine started\" within 2 minutes")
	}
	return nil, 0
}

func (be *benchEngine) stop(b *testing.B) {
	b.Helper()
	be.cancel()
	select {
	case err := <-be.done:
		if err != nil {
			b.Errorf("engine stopped with %v", err)
		}
	case <-time.After(2 * time.Minute):
		b.Fatal("engine did not stop within 2 minutes")
	}
}

// liveHeap returns the heap in use and the goroutine stacks after a full
// collection.
func liveHeap() (heap, stack uint64) {
	runtime.GC()
	runtime.GC() // a second cycle frees what the first one's finalisers released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}

// cpuTime returns the CPU time (user + system) the process has used. It is
// reported next to wall time because a loaded machine stretches the latter.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const benchScripts = 1000

// writeBenchScripts writes n small scripts into dir. Each keeps a little
// state in an upvalue and registers one trigger, as a typical job does.
func writeBenchScripts(b *testing.B, dir, kind, drop string, n int) {
	b.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		var helpers, reg string
		switch kind {
		case "every":
			reg = fmt.Sprintf(`mailbot.every("%dm", function(ev)
  runs = runs + 1
  last = ev.scheduled_at
end)`, 5+i%55)
		case "every_10fn":
			// A job split into helpers, as real ones are: ten small local
			// functions besides the handler.
			var hb strings.Builder
			for f := range 10 {
				fmt.Fprintf(&hb, "local function step%d(x) return (x or 0) + %d end\n", f, f)
			}
			helpers = hb.String()
			reg = fmt.Sprintf(`mailbot.every("%dm", function(ev)
  runs = step9(step8(step7(step6(step5(step4(step3(step2(step1(step0(runs))))))))))
  last = ev.scheduled_at
end)`, 5+i%55)
		case "on_file":
			reg = fmt.Sprintf(`mailbot.on_file({ dir = %q, pattern = "job%04d-*.csv", settle = "2s", after = "move:done" }, function(ev)
  runs = runs + 1
  last = ev.name
end)`, drop, i)
		default:
			b.Fatalf("unknown script kind %q", kind)
		}
		src := fmt.Sprintf("-- job %04d: a small %s job\nlocal runs, last = 0, nil\n%s%s\n", i, kind, helpers, reg)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("job%04d.lua", i)), []byte(src), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad1000Scripts starts an engine on 1,000 scripts and measures
// the time to "engine started" and the live memory per loaded script.
//
// The every variant is the target as stated; every_10fn adds ten small
// local functions to each script, because every compiled function has a
// fixed memory cost. The on_file variant also waits until every script's
// file trigger has started or failed (they start in the background after
// the load) and reports the failures ("trigger-errors"). Its
// "stack-B/script" and "goroutines/script" show what a trigger's
// goroutines cost besides the Lua state.
func BenchmarkLoad1000Scripts(b *testing.B) {
	for _, kind := range []string{"every", "every_10fn", "on_file"} {
		b.Run(kind, func(b *testing.B) { benchLoad(b, kind) })
	}
}

func benchLoad(b *testing.B, kind string) {
	root := b.TempDir()
	scripts := filepath.Join(root, "scripts")
	drop := filepath.Join(root, "drop")
	writeBenchScripts(b, scripts, kind, drop, benchScripts)

	var loadTotal, cpuTotal time.Duration
	var heapTotal, stackTotal, gTotal float64
	var triggerErrs int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		log := newBenchLog()
		cfg := Config{ScriptsDir: scripts, StateDir: filepath.Join(root, fmt.Sprintf("state%d", i))}
		heap0, stack0 := liveHeap()
		g0 := runtime.NumGoroutine()
		cpu0 := cpuTime()
		b.StartTimer()

		be, took := startBenchEngine(b, cfg, log)

		b.StopTimer()
		cpuTotal += cpuTime() - cpu0
		loadTotal += took
		if st := be.e.Stats(); st.Loads != benchScripts || st.LoadErrors != 0 {
			b.Fatalf("loaded %d scripts with %d errors, want %d: %s", st.Loads, st.LoadErrors, benchScripts, log.summary())
		}
		if kind == "on_file" {
			triggerErrs += waitFileTriggers(b, log)
		}
		heap1, stack1 := liveHeap()
		runtime.KeepAlive(be.e) // every state is alive while measured
		heapTotal += float64(int64(heap1)-int64(heap0)) / benchScripts
		stackTotal += float64(int64(stack1)-int64(stack0)) / benchScripts
		gTotal += float64(runtime.NumGoroutine()-g0) / benchScripts
		be.stop(b)
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(loadTotal.Microseconds())/1000/n, "ms/load")
	b.ReportMetric(float64(cpuTotal.Microseconds())/1000/n, "cpu-ms/load")
	b.ReportMetric(heapTotal/n, "heap-B/script")
	b.ReportMetric(stackTotal/n, "stack-B/script")
	b.ReportMetric(gTotal/n, "goroutines/script")
	if kind == "on_file" {
		b.ReportMetric(float64(triggerErrs)/n, "trigger-errors")
	}
}

// waitFileTriggers waits until every on_file trigger has either started
// or logged an error, and returns the number of errors.
func waitFileTriggers(b *testing.B, log *benchLog) int64 {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		started, failed := log.fileTriggers.Load(), log.errors.Load()
		if started+failed >= benchScripts {
			if failed > 0 {
				b.Logf("errors: %s", log.summary())
			}
			return failed
		}
		if time.Now().After(deadline) {
			b.Fatalf("file triggers: %d started, %d failed, want %d in all", started, failed, benchScripts)
		}
		// Polling a counter: the triggers start in the background.
		time.Sleep(10 * time.Millisecond)
	}
}

// dropHit is a handler's report: which file, and when it started.
type dropHit struct {
	name string
	at   time.Time
}

// BenchmarkFileDropLatency drops files one at a time into a folder watched
// by an on_file trigger with settle = "100ms" on the real clock, and
// reports the handler's start delay beyond the settle time: handler start
// (time.Now() in the first Go call the handler makes) minus the close of
// the written file minus settle. One file is one iteration; the next is
// dropped only when the engine has finished with the previous one.
func BenchmarkFileDropLatency(b *testing.B) {
	const settle = 100 * time.Millisecond
	root := b.TempDir()
	scripts := filepath.Join(root, "scripts")
	drop := filepath.Join(root, "drop")
	for _, d := range []string{scripts, drop} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	src := fmt.Sprintf(`local probe = require("probe")
mailbot.on_file({ dir = %q, pattern = "*.csv", settle = "%dms", after = "delete" }, function(ev)
  probe.hit(ev.name)
end)
`, drop, settle.Milliseconds())
	if err := os.WriteFile(filepath.Join(scripts, "drop.lua"), []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	hits := make(chan dropHit, 16)
	log := newBenchLog()
	probe := func(L *lua.LState) int {
		L.Push(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"hit": func(L *lua.LState) int {
				at := time.Now() // first thing: this is "handler start"
				hits <- dropHit{L.CheckString(1), at}
				return 0
			},
		}))
		return 1
	}

	// A file present before the start is picked up by the trigger's first
	// scan, which runs after its watch is set: once its handler ran, drops
	// are seen.
	writeDrop := func(name string) time.Time {
		f, err := os.Create(filepath.Join(drop, name))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.WriteString("id,amount\n1,10\n2,20\n3,30\n"); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		return time.Now()
	}
	waitHandled := func(name string) dropHit {
		var h dropHit
		timeout := time.After(time.Minute)
		for got := false; !got; {
			select {
			case h = <-hits:
				got = h.name == name
			case <-timeout:
				b.Fatalf("%s not handled within a minute", name)
			}
		}
		// The engine has applied the after action and the ledger: the next
		// drop does not compete with this one's bookkeeping.
		for {
			select {
			case p := <-log.handled:
				if filepath.Base(p) == name {
					return h
				}
			case <-timeout:
				b.Fatalf("%s: no \"file handled\" within a minute", name)
			}
		}
	}
	writeDrop("warmup.csv")
	be, _ := startBenchEngine(b, Config{ScriptsDir: scripts, StateDir: filepath.Join(root, "state")}, log, WithModule("probe", probe))
	defer be.stop(b)
	waitHandled("warmup.csv")

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("f%06d.csv", i)
		closed := writeDrop(name)
		h := waitHandled(name)
		lat = append(lat, h.at.Sub(closed)-settle)
	}
	b.StopTimer()
	if n := log.errors.Load(); n > 0 {
		b.Errorf("engine logged %d errors: %s", n, log.summary())
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(lat, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(ms(lat[0]), "min-ms")
}

// percentile returns the nearest-rank p-th percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
