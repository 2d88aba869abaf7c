package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
)

// script is one loaded version of a *.lua file: its Lua state and the
// triggers its top-level code registered. Runs of one script share its
// state, so they are serialised by mu; different scripts run in parallel.
type script struct {
	e       *Engine
	name    string // file name, e.g. "daily-report.lua"
	path    string
	version int64
	// modTime and size identify the file version loaded, for rescans.
	modTime time.Time
	size    int64
	L       *lua.LState
	mu      sync.Mutex
	state   *ScriptState

	ctx      context.Context // parent of this version's runs
	cancelFn context.CancelFunc
	runs     sync.WaitGroup

	loading  bool // registrars work only while the top-level code runs
	schedule []*schedRun
	files    []*fileRun
	starts   []*trigger
	// all holds every registration in order; all[n-1] is "<script>#<n>".
	all   []*trigger
	names map[string]bool // the name options given so far

	closeOnce sync.Once

	// fileMu guards the file triggers' start against stopTriggers.
	fileMu  sync.Mutex
	stopped bool
}

// trigger is one registered handler.
type trigger struct {
	s       *script
	kind    string // "on_file", "every", "cron", "on_start"
	label   string // "every 5m", "cron 0 8 * * 1-5", "on_file /srv/drop/*.csv"
	fn      *lua.LFunction
	timeout time.Duration
	n       int            // registration order within the script, from 1
	name    string         // the name option; "" when none was given
	loc     *time.Location // schedules: the zone --at times are read in
	spec    string         // what "mailbot triggers" shows as the spec
	sched   *schedRun      // set for every and cron
	file    *fileRun       // set for on_file
}

type schedRun struct {
	trigger
	sched   Schedule
	guard   *OverlapGuard
	key     string // stable across restarts, for the last-run record
	catchup bool
}

type fileRun struct {
	trigger
	spec FileSpec
	ft   *FileTrigger
	done chan struct{}
}

var versions atomic.Int64

// load compiles and loads the script at path in a fresh state. Only if
// that succeeds does it replace the running version; otherwise the old
// version keeps running and the error is logged with file:line.
func (e *Engine) load(path string) {
	name := filepath.Base(path)
	start := time.Now()
	s, err := e.newScript(path)
	if err != nil {
		e.stats.loadErrors.Add(1)
		attrs := []any{"script", name, "error", luabind.DescribeError(err)}
		if file, line, ok := luabind.ErrorLocation(err); ok {
			attrs = append(attrs, "at", fmt.Sprintf("%s:%d", file, line))
		}
		e.mu.Lock()
		_, running := e.scripts[name]
		e.mu.Unlock()
		if running {
			attrs = append(attrs, "note", "the previous version keeps running")
		}
		e.log.Error("script load failed", attrs...)
		e.observeLoad(path, err)
		return
	}
	e.stats.loads.Add(1)
	e.observeLoad(path, nil)

	e.mu.Lock()
	old := e.scripts[name]
	e.scripts[name] = s
	for _, sr := range s.schedule {
		e.sched[sr.id()] = sr
	}
	e.mu.Unlock()
	if old != nil {
		e.retire(old)
	}
	now := e.clock.Now()
	for _, sr := range s.schedule {
		if err := e.scheduler.Add(Entry{ID: sr.id(), Schedule: sr.sched}); err != nil {
			e.log.Error("adding schedule", "script", name, "trigger", sr.label, "error", err)
			continue
		}
		e.catchUp(sr, now)
	}
	verb := "script loaded"
	if old != nil {
		verb = "script reloaded"
	}
	e.log.Info(verb, "script", name, "schedules", len(s.schedule), "file_triggers", len(s.files),
		"on_start", len(s.starts), "duration", time.Since(start).Round(time.Microsecond))

	// File triggers start once the old version's runs are over, so a file
	// in flight there is not picked up a second time here.
	go func() {
		if old != nil {
			old.waitRuns(e.cfg.Grace)
		}
		for _, fr := range s.files {
			e.startFileTrigger(fr)
		}
	}()
	for _, t := range s.starts {
		if !e.inflight.begin() {
			break
		}
		go func(t *trigger) {
			defer e.inflight.end()
			e.run(t, map[string]lua.LValue{}, nil)
		}(t)
	}
}

func (sr *schedRun) id() string {
	return fmt.Sprintf("%s#%d#%s", sr.s.name, sr.s.version, sr.label)
}

// newScript compiles and runs the top-level code of path in a new state.
func (e *Engine) newScript(path string) (*script, error) {
	st0, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	proto, err := luabind.CompileFile(path)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(path)
	opts := e.cfg.Lua
	opts.ScriptsDir = e.cfg.ScriptsDir
	if opts.BaseDir == "" {
		opts.BaseDir = e.cfg.ScriptsDir
	}
	opts.ScriptName = name
	// The state store is the engine's, never the scripts' (strict).
	opts.FSDenied = append(append([]string(nil), opts.FSDenied...), e.cfg.StateDir)
	L := luabind.NewState(opts)
	st, err := e.store.Script(strings.TrimSuffix(name, ".lua"))
	if err != nil {
		L.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(e.runBase)
	s := &script{e: e, name: name, path: path, version: versions.Add(1), L: L, state: st, ctx: ctx, cancelFn: cancel,
		modTime: st0.ModTime(), size: st0.Size()}
	s.installAPI()
	if e.onAPI != nil {
		e.onAPI(s)
	}

	lctx, lcancel := context.WithTimeout(ctx, e.cfg.RunTimeout)
	defer lcancel()
	_, stopRun := luabind.StartRun(lctx, L)
	s.loading = true
	err = luabind.DoProto(L, proto)
	s.loading = false
	luabind.CloseResources(L)
	stopRun()
	if err != nil {
		s.close()
		if errors.Is(lctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("top-level code did not finish within %v: %w", e.cfg.RunTimeout, err)
		}
		return nil, err
	}
	return s, nil
}

// installAPI sets the global mailbot table: the script's name, its state
// store and the trigger registrars.
func (s *script) installAPI() {
	L := s.L
	mb := L.NewTable()
	L.SetField(mb, "script", lua.LString(s.name))
	L.SetField(mb, "on_file", L.NewFunction(s.luaOnFile))
	L.SetField(mb, "every", L.NewFunction(s.luaEvery))
	L.SetField(mb, "cron", L.NewFunction(s.luaCron))
	L.SetField(mb, "on_start", L.NewFunction(s.luaOnStart))
	state := L.NewTable()
	L.SetFuncs(state, map[string]lua.LGFunction{
		"get": func(L *lua.LState) int {
			v, ok := s.state.Get(L.CheckString(1))
			if !ok {
				L.Push(L.Get(2)) // optional default
				return 1
			}
			L.Push(luabind.FromGo(L, v))
			return 1
		},
		"set": func(L *lua.LState) int {
			key := L.CheckString(1)
			v, err := luabind.ToGo(L.Get(2))
			if err != nil {
				L.ArgError(2, err.Error())
			}
			if v == nil {
				s.state.Delete(key)
				return 0
			}
			if err := s.state.Set(key, v); err != nil {
				L.RaiseError("mailbot.state.set: %v", err)
			}
			return 0
		},
		"delete": func(L *lua.LState) int {
			s.state.Delete(L.CheckString(1))
			return 0
		},
		"all": func(L *lua.LState) int {
			L.Push(luabind.FromGo(L, s.state.All()))
			return 1
		},
		"flush": func(L *lua.LState) int {
			if err := s.state.Flush(); err != nil {
				L.RaiseError("mailbot.state.flush: %v", err)
			}
			return 0
		},
	})
	L.SetField(mb, "state", state)
	L.SetGlobal("mailbot", mb)
}

func (s *script) checkLoading(L *lua.LState, fn string) {
	if !s.loading {
		L.RaiseError("mailbot.%s: triggers can only be registered by the script's top-level code", fn)
	}
}

// durationOpt reads a duration option ("2s", "5m", or a number of seconds).
func durationOpt(L *lua.LState, t *lua.LTable, key string, def time.Duration, fn string) time.Duration {
	switch v := L.GetField(t, key).(type) {
	case *lua.LNilType:
		return def
	case lua.LNumber:
		return time.Duration(float64(v) * float64(time.Second))
	case lua.LString:
		d, err := time.ParseDuration(string(v))
		if err != nil || d < 0 {
			L.RaiseError("mailbot.%s: %s = %q is not a duration like \"2s\" or \"5m\"", fn, key, string(v))
		}
		return d
	default:
		L.RaiseError("mailbot.%s: %s must be a duration string or a number of seconds", fn, key)
	}
	return def
}

func checkKeys(L *lua.LState, t *lua.LTable, fn string, known ...string) {
	allowed := map[string]bool{}
	for _, k := range known {
		allowed[k] = true
	}
	t.ForEach(func(k, _ lua.LValue) {
		if ks, ok := k.(lua.LString); !ok || !allowed[string(ks)] {
			L.RaiseError("mailbot.%s: unknown option %q (known: %s)", fn, k.String(), strings.Join(known, ", "))
		}
	})
}

// luaOnFile: mailbot.on_file({dir=, pattern=, events=, recursive=, settle=, existing=, after=, timeout=}, fn)
func (s *script) luaOnFile(L *lua.LState) int {
	s.checkLoading(L, "on_file")
	opts := L.CheckTable(1)
	fn := L.CheckFunction(2)
	checkKeys(L, opts, "on_file", "dir", "pattern", "events", "recursive", "settle", "existing", "after", "timeout", "retries", "overlap", "name")
	name := s.nameOpt(L, opts, "on_file")
	if o, ok := L.GetField(opts, "overlap").(lua.LString); ok && o != "queue" {
		// Skipping would drop a file that lands while the handler runs.
		L.RaiseError("mailbot.on_file: overlap = %q is not possible: every dropped file is handled, so files queue (overlap = \"queue\", the default)", string(o))
	}
	dir, ok := L.GetField(opts, "dir").(lua.LString)
	if !ok || dir == "" {
		L.RaiseError("mailbot.on_file: dir is required")
	}
	spec := FileSpec{Dir: luabind.ResolvePath(L, string(dir)), Backoff: DefaultBackoff()}
	// Under strict, the handler may touch files in its drop folder (ev.path,
	// moving them on); with fs_roots set, the folder must lie inside them.
	if err := luabind.AddFSRoot(L, spec.Dir); err != nil {
		L.RaiseError("mailbot.on_file: dir: %v", err)
	}
	if p, ok := L.GetField(opts, "pattern").(lua.LString); ok {
		if _, err := filepath.Match(string(p), "x"); err != nil {
			L.RaiseError("mailbot.on_file: pattern %q: %v", string(p), err)
		}
		spec.Pattern = string(p)
	}
	if ev, ok := L.GetField(opts, "events").(*lua.LTable); ok {
		var names []string
		for i := 1; i <= ev.Len(); i++ {
			names = append(names, ev.RawGetInt(i).String())
		}
		op, err := ParseFileEvents(names)
		if err != nil {
			L.RaiseError("mailbot.on_file: events: %v", err)
		}
		spec.Events = op
	}
	spec.Recursive = lua.LVAsBool(L.GetField(opts, "recursive"))
	spec.Settle = durationOpt(L, opts, "settle", DefaultSettle, "on_file")
	if v := L.GetField(opts, "existing"); v != lua.LNil {
		spec.SkipExisting = !lua.LVAsBool(v)
	}
	if a, ok := L.GetField(opts, "after").(lua.LString); ok {
		after, err := ParseAfter(string(a))
		if err != nil {
			L.RaiseError("mailbot.on_file: after: %v", err)
		}
		spec.After = after
	}
	if n, ok := L.GetField(opts, "retries").(lua.LNumber); ok {
		spec.Backoff.MaxAttempts = int(n) + 1
	}
	fr := &fileRun{
		trigger: trigger{s: s, kind: "on_file", fn: fn, name: name,
			label:   "on_file " + filepath.Join(spec.Dir, spec.Pattern),
			spec:    filepath.Join(spec.Dir, spec.Pattern),
			timeout: durationOpt(L, opts, "timeout", s.e.cfg.RunTimeout, "on_file")},
		spec: spec,
	}
	if spec.Pattern == "" {
		fr.trigger.spec = filepath.Join(spec.Dir, "*")
	}
	fr.trigger.file = fr
	s.register(&fr.trigger)
	s.files = append(s.files, fr)
	return 0
}

// luaEvery: mailbot.every("5m", fn [, {overlap=, catchup=, timeout=}])
func (s *script) luaEvery(L *lua.LState) int {
	s.checkLoading(L, "every")
	spec := L.CheckString(1)
	fn := L.CheckFunction(2)
	every, err := ParseEvery(spec)
	if err != nil {
		L.RaiseError("mailbot.every: %v", err)
	}
	s.addSchedule(L, "every", spec, every, s.e.cfg.Location, fn, L.OptTable(3, L.NewTable()))
	return 0
}

// luaCron: mailbot.cron("0 8 * * 1-5", fn [, {tz=, overlap=, catchup=, timeout=}])
func (s *script) luaCron(L *lua.LState) int {
	s.checkLoading(L, "cron")
	spec := L.CheckString(1)
	fn := L.CheckFunction(2)
	opts := L.OptTable(3, L.NewTable())
	loc := s.e.cfg.Location
	if tz, ok := L.GetField(opts, "tz").(lua.LString); ok {
		l, err := time.LoadLocation(string(tz))
		if err != nil {
			L.RaiseError("mailbot.cron: tz %q: %v", string(tz), err)
		}
		loc = l
	}
	sched, err := ParseSchedule(spec, loc)
	if err != nil {
		L.RaiseError("mailbot.cron: %v", err)
	}
	if cs, ok := sched.(*cronSpec); ok && cs.hasLoc {
		loc = cs.loc // a CRON_TZ= prefix
	}
	s.addSchedule(L, "cron", spec, sched, loc, fn, opts)
	return 0
}

func (s *script) addSchedule(L *lua.LState, kind, spec string, sched Schedule, loc *time.Location, fn *lua.LFunction, opts *lua.LTable) {
	checkKeys(L, opts, kind, "tz", "overlap", "catchup", "timeout", "name")
	name := s.nameOpt(L, opts, kind)
	policy := OverlapSkip
	if o, ok := L.GetField(opts, "overlap").(lua.LString); ok {
		p, err := ParseOverlapPolicy(string(o))
		if err != nil {
			L.RaiseError("mailbot.%s: overlap: %v", kind, err)
		}
		policy = p
	}
	label := kind + " " + spec
	if tz, ok := L.GetField(opts, "tz").(lua.LString); ok {
		label += " (" + string(tz) + ")"
	}
	shown := spec
	if kind == "cron" {
		shown += " (" + loc.String() + ")"
	}
	sr := &schedRun{
		trigger: trigger{s: s, kind: kind, label: label, fn: fn, name: name, loc: loc, spec: shown,
			timeout: durationOpt(L, opts, "timeout", s.e.cfg.RunTimeout, kind)},
		sched:   sched,
		guard:   &OverlapGuard{Policy: policy},
		key:     strings.TrimSuffix(s.name, ".lua") + "|" + label,
		catchup: lua.LVAsBool(L.GetField(opts, "catchup")),
	}
	sr.trigger.sched = sr
	s.register(&sr.trigger)
	s.schedule = append(s.schedule, sr)
}

// luaOnStart: mailbot.on_start(fn [, {name=}]) runs fn once after each (re)load.
func (s *script) luaOnStart(L *lua.LState) int {
	s.checkLoading(L, "on_start")
	fn := L.CheckFunction(1)
	opts := L.OptTable(2, L.NewTable())
	checkKeys(L, opts, "on_start", "name")
	t := &trigger{s: s, kind: "on_start", label: "on_start", fn: fn, timeout: s.e.cfg.RunTimeout,
		name: s.nameOpt(L, opts, "on_start")}
	s.register(t)
	s.starts = append(s.starts, t)
	return 0
}

// stopTriggers stops the script's file triggers and cancels nothing that
// is running: runs in flight finish. Triggers not started yet never start.
func (s *script) stopTriggers() {
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	s.stopped = true
	for _, fr := range s.files {
		if fr.ft != nil {
			fr.ft.Close()
		}
	}
}

// waitRuns waits for the version's runs, up to d; false on timeout.
func (s *script) waitRuns(d time.Duration) bool {
	done := make(chan struct{})
	go func() { s.runs.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (s *script) cancel() { s.cancelFn() }

func (s *script) close() {
	s.closeOnce.Do(func() {
		s.cancelFn()
		s.mu.Lock()
		luabind.CloseResources(s.L)
		s.L.Close()
		s.mu.Unlock()
		if err := s.state.Flush(); err != nil {
			s.e.log.Error("persisting script state", "script", s.name, "error", err)
		}
	})
}

// startFileTrigger starts watching a drop folder and a goroutine that
// hands each complete file to the handler, one at a time (overlap "queue":
// no dropped file is ever skipped).
func (e *Engine) startFileTrigger(fr *fileRun) {
	if e.cfg.DryRun {
		if st, err := os.Stat(fr.spec.Dir); err != nil || !st.IsDir() {
			e.log.Warn("dry run: drop folder missing; a real run would create it, this one does not watch it", "script", fr.s.name, "dir", fr.spec.Dir)
			return
		}
	} else if err := os.MkdirAll(fr.spec.Dir, 0o755); err != nil {
		e.log.Error("creating drop folder", "script", fr.s.name, "dir", fr.spec.Dir, "error", err)
		return
	}
	fr.s.fileMu.Lock()
	defer fr.s.fileMu.Unlock()
	if fr.s.stopped { // retired or shut down before it could start
		return
	}
	ft, err := NewFileTrigger(fr.spec, FileTriggerOptions{Clock: e.clock, Ledger: e.ledger, Hub: e.hub, ObserveOnly: e.cfg.DryRun})
	if err != nil {
		e.log.Error("file trigger", "script", fr.s.name, "trigger", fr.label, "error", err)
		return
	}
	if err := ft.Start(); err != nil {
		e.log.Error("file trigger", "script", fr.s.name, "trigger", fr.label, "error", err)
		ft.Close()
		return
	}
	fr.ft = ft
	e.log.Debug("file trigger started", "script", fr.s.name, "trigger", fr.label)
	fr.s.runs.Add(1) // the dispatch loop counts as a run of this version
	go func() {
		defer fr.s.runs.Done()
		for {
			select {
			case rf, ok := <-ft.Ready():
				if !ok {
					return
				}
				e.handleFile(fr, rf)
			case err, ok := <-ft.Errors():
				if ok {
					e.log.Error("file trigger", "script", fr.s.name, "trigger", fr.label, "error", err)
				}
			case <-fr.s.ctx.Done():
				return
			}
		}
	}()
}

func (e *Engine) handleFile(fr *fileRun, rf ReadyFile) {
	ev := fileEvent(rf)
	if !e.inflight.begin() {
		return // shutting down: the file stays and is handled at next start
	}
	// The run counts as in flight until its outcome is in the ledger:
	// shutdown waits for that, or a restart would handle the file again.
	defer e.inflight.end()
	err := e.run(&fr.trigger, ev, nil)
	if err != nil {
		// The .error note gets the readable form of a raised table.
		retry := wantsRetry(err)
		err = &describedError{err}
		if retry {
			err = Retry(err)
		}
	}
	d, cerr := fr.ft.Complete(rf, err)
	if cerr != nil {
		e.observeFile(fr.s.name, "error")
		e.log.Error("finishing file", "script", fr.s.name, "path", rf.Path, "error", cerr)
		return
	}
	if d.DryRun {
		e.log.Info("dry run: file handled and left in place", "script", fr.s.name, "path", rf.Path, "would_be", d.Action, "would_be_at", d.Path)
		return
	}
	e.observeFile(fr.s.name, d.Action)
	e.log.Info("file handled", "script", fr.s.name, "path", rf.Path, "action", d.Action, "now_at", d.Path)
}

// wantsRetry reports a handler error raised as a table with retry = true:
// error({ retry = true, message = "relay down" }).
func wantsRetry(err error) bool {
	var ae *lua.ApiError
	if !errors.As(err, &ae) {
		return false
	}
	t, ok := ae.Object.(*lua.LTable)
	return ok && lua.LVAsBool(t.RawGetString("retry"))
}

// catchUp runs a catch-up schedule once if it missed an activation while
// mailbot was down, and records a first start so later downtime counts.
func (e *Engine) catchUp(sr *schedRun, now time.Time) {
	if !sr.catchup {
		return
	}
	last, ok := e.store.LastRun(sr.key)
	if !ok {
		if err := e.store.SetLastRun(sr.key, now); err != nil {
			e.log.Error("recording schedule start", "script", sr.s.name, "trigger", sr.label, "error", err)
		}
		return
	}
	if at, missed := MissedSince(sr.sched, last, now); missed {
		e.log.Info("catching up a missed schedule", "script", sr.s.name, "trigger", sr.label, "missed", at)
		e.fireSchedule(sr, Tick{ID: sr.id(), ScheduledAt: at})
	}
}

// fireSchedule applies the trigger's overlap policy to a tick.
func (e *Engine) fireSchedule(sr *schedRun, t Tick) {
	switch sr.guard.TryStart(t) {
	case Skipped:
		e.stats.skipped.Add(1)
		e.log.Warn("schedule tick skipped: the previous run is still going", "script", sr.s.name, "trigger", sr.label, "scheduled_at", t.ScheduledAt)
		return
	case Queued:
		e.log.Info("schedule tick queued behind the running one", "script", sr.s.name, "trigger", sr.label)
		return
	}
	if !e.inflight.begin() {
		sr.guard.Done()
		return
	}
	go func() {
		defer e.inflight.end()
		for {
			ev := map[string]lua.LValue{"scheduled_at": lua.LNumber(t.ScheduledAt.Unix())}
			var (
				next Tick
				more bool
			)
			// The guard is released before the run is logged, so a tick
			// that comes once the run is reported over is never skipped.
			e.run(&sr.trigger, ev, func() {
				if err := e.store.SetLastRun(sr.key, t.ScheduledAt); err != nil {
					e.log.Error("recording schedule run", "script", sr.s.name, "trigger", sr.label, "error", err)
				}
				next, more = sr.guard.Done()
			})
			if !more {
				return
			}
			t = next
		}
	}()
}

// run calls one handler with its event table, under the trigger's timeout,
// holding a worker slot and the script's state. Lua errors, panics and
// timeouts are logged with script, trigger, file:line and duration, and
// affect nothing else.
func (e *Engine) run(t *trigger, fields map[string]lua.LValue, after func()) error {
	return e.runWith(t, fields, after, nil)
}

// runWith is run; seen, when set, is handed the run's context before the
// handler starts (Fire tells a timeout by it).
func (e *Engine) runWith(t *trigger, fields map[string]lua.LValue, after func(), seen func(context.Context)) (err error) {
	s := t.s
	s.runs.Add(1)
	defer s.runs.Done()
	if err := e.acquire(s.ctx); err != nil {
		if after != nil {
			after()
		}
		return err
	}
	defer e.release()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.lockRuns {
		// Runs of one script never overlap across processes either:
		// "mailbot fire" takes the same lock.
		lock, lerr := LockScript(s.ctx, e.cfg.StateDir, s.name, func() {
			e.log.Info("run waits for the script's lock: a mailbot fire of it is running", "script", s.name, "trigger", t.label)
		})
		if lerr != nil {
			if after != nil {
				after()
			}
			e.log.Error("run not started: script lock", "script", s.name, "trigger", t.label, "error", lerr)
			return lerr
		}
		defer lock.Release()
		// mailbot fire may have changed the script's state meanwhile.
		if rerr := s.state.Refresh(); rerr != nil {
			e.log.Error("reloading script state", "script", s.name, "error", rerr)
		}
	}
	if s.ctx.Err() != nil {
		if after != nil {
			after()
		}
		return s.ctx.Err()
	}
	ctx, cancel := context.WithTimeout(s.ctx, t.timeout)
	defer cancel()
	if seen != nil {
		seen(ctx)
	}
	L := s.L
	runCtx, stopRun := luabind.StartRun(ctx, L)
	start := time.Now()
	e.stats.runs.Add(1)
	e.log.Debug("run start", "script", s.name, "trigger", t.label)

	ev := L.NewTable()
	for k, v := range fields {
		ev.RawSetString(k, v)
	}
	ev.RawSetString("script", lua.LString(s.name))
	ev.RawSetString("trigger", lua.LString(t.label))

	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in handler: %v", r)
		}
		luabind.CloseResources(L)
		stopRun()
		if ferr := s.state.Flush(); ferr != nil {
			e.log.Error("persisting script state", "script", s.name, "error", ferr)
		}
		if after != nil {
			after()
		}
		e.logRun(t, start, runCtx, err)
		e.recordOutcome(t, start, runCtx, err)
		e.observeRun(t, start, runCtx, err)
	}()
	return L.CallByParam(lua.P{Fn: t.fn, NRet: 0, Protect: true}, ev)
}

func (e *Engine) logRun(t *trigger, start time.Time, ctx context.Context, err error) {
	d := time.Since(start).Round(time.Microsecond)
	if err == nil {
		e.log.Info("run ok", "script", t.s.name, "trigger", t.label, "duration", d)
		return
	}
	e.stats.runErrors.Add(1)
	attrs := []any{"script", t.s.name, "trigger", t.label, "duration", d, "error", luabind.DescribeError(err)}
	if file, line, ok := luabind.ErrorLocation(err); ok {
		attrs = append(attrs, "at", fmt.Sprintf("%s:%d", file, line))
	}
	if me, ok := luabind.AsMemoryError(ctx, err); ok {
		e.log.Error("run stopped: memory limit", append(attrs, "limit", me.Limit)...)
		return
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		e.stats.timeouts.Add(1)
		e.log.Error("run stopped: timeout", append(attrs, "timeout", t.timeout)...)
		return
	}
	e.log.Error("run failed", attrs...)
}

// describedError renders a Lua error for people (luabind.DescribeError)
// while keeping the original for errors.As.
type describedError struct{ err error }

func (d *describedError) Error() string { return luabind.DescribeError(d.err) }
func (d *describedError) Unwrap() error { return d.err }
