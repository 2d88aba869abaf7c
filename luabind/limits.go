package luabind

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// DefaultMemoryLimit is the memory limit of a run when Options.MemoryLimit
// is zero: 512 MiB.
const DefaultMemoryLimit int64 = 512 << 20

// memoryLimitKey names the limit in error messages: the config key an
// operator changes.
const memoryLimitKey = "limits.memory"

// memoryErrorTypeName is the metatable of raised memory error tables.
const memoryErrorTypeName = "mailbot.memory.error"

// MemoryError is why a run was stopped or a built-in refused its result:
// the run's Lua values took more memory than the limit (Func empty), or a
// built-in such as string.rep would have built a result larger than it.
type MemoryError struct {
	// Limit is the memory limit in bytes.
	Limit int64
	// Size is the estimated size of the state's Lua values when the run
	// was stopped, or the size of the refused result.
	Size int64
	// Func names the built-in that refused its result ("string.rep"),
	// empty when the watchdog stopped the run.
	Func string
}

// Error implements error.
func (e *MemoryError) Error() string {
	if e.Func != "" {
		return fmt.Sprintf("%s: a result of %s would exceed the memory limit of %s (%s)",
			e.Func, formatSize(e.Size), formatSize(e.Limit), memoryLimitKey)
	}
	return fmt.Sprintf("the script's Lua values take more than the memory limit of %s (%s)",
		formatSize(e.Limit), memoryLimitKey)
}

// formatSize renders n bytes the way the config accepts them: "512 MiB".
func formatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 || f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', 0, 64) + " " + units[i]
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + units[i]
}

// memoryLimit returns the state's memory limit in bytes, 0 when disabled.
func memoryLimit(o *Options) int64 {
	if o == nil || o.MemoryLimit < 0 {
		return 0
	}
	if o.MemoryLimit == 0 {
		return DefaultMemoryLimit
	}
	return o.MemoryLimit
}

// raiseMemory raises e as a Lua error table {kind = "memory", message,
// limit, size, func, where}, catchable with pcall like the smtp errors.
func raiseMemory(L *lua.LState, e *MemoryError) {
	raiseMemoryAt(L, e, 1)
}

// raiseMemoryAt is raiseMemory with the error's place looked up from stack
// level (0: the running Lua function, as seen from the VM hook).
func raiseMemoryAt(L *lua.LState, e *MemoryError, level int) {
	t := L.NewTable()
	t.RawSetString("kind", lua.LString("memory"))
	t.RawSetString("message", lua.LString(e.Error()))
	t.RawSetString("limit", lua.LNumber(e.Limit))
	t.RawSetString("size", lua.LNumber(e.Size))
	if e.Func != "" {
		t.RawSetString("func", lua.LString(e.Func))
	}
	if where := whereFrom(L, level); where != "" {
		t.RawSetString("where", lua.LString(where))
	}
	if mt, ok := L.GetTypeMetatable(memoryErrorTypeName).(*lua.LTable); ok {
		L.SetMetatable(t, mt)
	}
	L.Error(t, 0)
}

// whereFrom returns "file:line" of the innermost Lua frame from level up.
func whereFrom(L *lua.LState, level int) string {
	for ; level < 16; level++ {
		w := strings.TrimSuffix(L.Where(level), ":")
		if w != "" && !strings.HasPrefix(w, "[G]") {
			return w
		}
		if _, ok := L.GetStack(level); !ok {
			break
		}
	}
	return ""
}

// registerMemoryErrorType creates the metatable that makes tostring(err)
// read "memory: message".
func registerMemoryErrorType(L *lua.LState) {
	mt := L.NewTypeMetatable(memoryErrorTypeName)
	L.SetField(mt, "__tostring", L.NewFunction(func(L *lua.LState) int {
		t := L.CheckTable(1)
		L.Push(lua.LString(L.GetField(t, "kind").String() + ": " + L.GetField(t, "message").String()))
		return 1
	}))
}

// refuse raises a memory error for a built-in result of size bytes when it
// exceeds the state's limit.
func refuse(L *lua.LState, limit int64, fn string, size float64) {
	if limit > 0 && size > float64(limit) {
		n := int64(math.MaxInt64)
		if size < math.MaxInt64 {
			n = int64(size)
		}
		raiseMemory(L, &MemoryError{Limit: limit, Size: n, Func: fn})
	}
}

// checkRun raises the error that ended the run's context, if it ended:
// built-ins that loop in Go call it so that a timeout stops them too.
func checkRun(L *lua.LState) {
	ctx := L.Context()
	if ctx == nil || ctx.Err() == nil {
		return
	}
	var me *MemoryError
	if errors.As(context.Cause(ctx), &me) {
		raiseMemory(L, me)
	}
	L.RaiseError("%s", ctx.Err().Error())
}

// AsMemoryError returns the memory error behind a failed run: the cause of
// ctx (the context StartRun returned) when the watchdog stopped the run, or
// the error table raised by a built-in that refused an oversized result.
func AsMemoryError(ctx context.Context, err error) (*MemoryError, bool) {
	var me *MemoryError
	if ctx != nil && errors.As(context.Cause(ctx), &me) {
		return me, true
	}
	var ae *lua.ApiError
	if !errors.As(err, &ae) {
		return nil, false
	}
	t, ok := ae.Object.(*lua.LTable)
	if !ok || t.RawGetString("kind") != lua.LString("memory") {
		return nil, false
	}
	me = &MemoryError{}
	if n, ok := t.RawGetString("limit").(lua.LNumber); ok {
		me.Limit = int64(n)
	}
	if n, ok := t.RawGetString("size").(lua.LNumber); ok {
		me.Size = int64(n)
	}
	if s, ok := t.RawGetString("func").(lua.LString); ok {
		me.Func = string(s)
	}
	return me, true
}

// StartRun makes ctx the context of one run in L and enforces the state's
// memory limit (Options.MemoryLimit) during it. It replaces L.SetContext:
// call the returned stop when the run is over (it removes the context from
// L), and use the returned context to tell why the run ended
// (AsMemoryError).
//
// The limit is enforced by a process-wide watchdog. It samples the Go heap
// every few milliseconds; only when the heap has grown enough that a run
// could be over its limit does it ask that run to measure itself. The run
// does so on its own goroutine, before its next Lua instruction, by adding
// up the Lua values reachable from its state (globals, registry, the stacks
// of its threads, upvalues, strings by length). A run found over the limit
// is stopped with a Lua error {kind = "memory"}, and every later instruction
// of the run raises it again, so pcall cannot keep the run going.
func StartRun(ctx context.Context, L *lua.LState) (context.Context, func()) {
	limit := memoryLimit(stateOptions(L))
	if limit == 0 {
		L.SetContext(ctx)
		return ctx, func() { L.RemoveContext() }
	}
	inner, cancel := context.WithCancelCause(ctx)
	c := &limitCtx{Context: inner, done: inner.Done(), cancel: cancel, L: L, limit: limit}
	L.SetContext(c)
	dog.add(c)
	return c, func() {
		dog.remove(c)
		L.RemoveContext()
		cancel(context.Canceled)
	}
}

// Run flags, set by the watchdog (measure) or the run itself (dead).
const (
	flagMeasure uint32 = 1 << iota
	flagDead
)

// limitCtx is the context of a run under a memory limit. gopher-lua calls
// Done before every VM instruction, on the goroutine running the state:
// that call is the hook through which the run measures itself when the
// watchdog asks. Done is also called by other goroutines (context
// plumbing, I/O), so the hook first checks that it was called by the VM.
type limitCtx struct {
	context.Context // a WithCancelCause child of the run's context
	done            <-chan struct{}
	cancel          context.CancelCauseFunc
	L               *lua.LState
	limit           int64
	flags           atomic.Uint32
	err             *MemoryError // set before flagDead

	// Watchdog bookkeeping, guarded by dog.mu.
	base      uint64    // lowest heap seen since the last measurement
	headroom  uint64    // heap growth the run may have before it could be over
	notBefore time.Time // no new measurement before, to bound its cost
}

// Done implements context.Context; see limitCtx.
func (c *limitCtx) Done() <-chan struct{} {
	if c.flags.Load() != 0 {
		c.hook()
	}
	return c.done
}

// hook runs the measurement or re-raises the memory error, but only when
// Done was called by the VM loop, the one caller that owns the state.
func (c *limitCtx) hook() {
	if !calledByVM() {
		return
	}
	f := c.flags.Load()
	if f&flagDead != 0 {
		raiseMemoryAt(c.L.G.CurrentThread, c.err, 0)
	}
	if f&flagMeasure == 0 {
		return
	}
	start := time.Now()
	size, over := stateSize(c.L, c.limit)
	dog.measured(c, size, time.Since(start))
	// Cleared after the walk: a request made during it is already served.
	c.flags.And(^flagMeasure)
	if over {
		c.err = &MemoryError{Limit: c.limit, Size: size}
		c.flags.Or(flagDead)
		c.cancel(c.err)
		raiseMemoryAt(c.L.G.CurrentThread, c.err, 0)
	}
}

// vmLoop is the gopher-lua function that runs Lua code under a context and
// calls Done before each instruction.
const vmLoop = "github.com/yuin/gopher-lua.mainLoopWithContext"

// calledByVM reports whether (*limitCtx).Done was called by the VM loop.
// It is only asked while a flag is set, so its cost does not matter.
func calledByVM() bool {
	var pcs [8]uintptr
	n := runtime.Callers(2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	afterDone := false
	for {
		fr, more := frames.Next()
		if afterDone {
			return fr.Function == vmLoop
		}
		if fr.Function == "github.com/mailbot/mailbot/luabind.(*limitCtx).Done" {
			afterDone = true
		}
		if !more {
			return false
		}
	}
}

// watchdog samples the Go heap while runs are active and asks the runs
// that could be over their limit to measure themselves.
type watchdog struct {
	mu      sync.Mutex
	runs    map[*limitCtx]struct{}
	running bool
	heap    atomic.Uint64 // latest sample
}

// dog is the process-wide watchdog.
var dog = &watchdog{runs: map[*limitCtx]struct{}{}}

// watchInterval is how often the watchdog samples the heap.
const watchInterval = 10 * time.Millisecond

// heapMetric is the runtime metric of the bytes in heap objects, live or
// not yet swept: it grows as soon as a script allocates.
const heapMetric = "/memory/classes/heap/objects:bytes"

func (w *watchdog) add(c *limitCtx) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Until its first measurement a run could already be near its limit
	// (globals kept from earlier runs): measure once the heap reaches it.
	c.base, c.headroom = math.MaxUint64, 0
	w.runs[c] = struct{}{}
	if !w.running {
		w.running = true
		go w.loop()
	}
	w.check(c, readHeap(), time.Now())
}

func (w *watchdog) remove(c *limitCtx) {
	w.mu.Lock()
	delete(w.runs, c)
	w.mu.Unlock()
}

// loop samples the heap until no run is left.
func (w *watchdog) loop() {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for range t.C {
		h := readHeap()
		now := time.Now()
		w.mu.Lock()
		if len(w.runs) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		for c := range w.runs {
			w.check(c, h, now)
		}
		w.mu.Unlock()
	}
}

// check flags c for a measurement when the heap h could hold more than
// its limit of its values. Called with w.mu held.
func (w *watchdog) check(c *limitCtx, h uint64, now time.Time) {
	w.heap.Store(h)
	if h < c.base {
		// The GC freed memory: whatever the run adds from here counts.
		c.base = h
	}
	if h >= max(uint64(c.limit), c.base+c.headroom) && !now.Before(c.notBefore) {
		c.flags.Or(flagMeasure)
	}
}

// measured records a measurement: the run can grow by what separates its
// size from the limit (at least an eighth of the limit, so that a run near
// its limit is not measured at every sample) before it is measured again,
// and measurements take at most a fifth of the run's time.
func (w *watchdog) measured(c *limitCtx, size int64, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c.base = w.heap.Load()
	c.headroom = uint64(max(c.limit-size, c.limit/8))
	c.notBefore = time.Now().Add(4 * took)
}

// heapSample is reused by readHeap; guarded by heapMu.
var (
	heapMu     sync.Mutex
	heapSample = []metrics.Sample{{Name: heapMetric}}
)

// readHeap returns the bytes in heap objects.
func readHeap() uint64 {
	heapMu.Lock()
	defer heapMu.Unlock()
	metrics.Read(heapSample)
	if heapSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return heapSample[0].Value.Uint64()
}
