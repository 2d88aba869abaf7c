package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
)

// Defaults for Config fields left zero.
const (
	DefaultWorkers    = 4
	DefaultRunTimeout = 60 * time.Second
	DefaultGrace      = 30 * time.Second
)

// Config says where the engine finds scripts and keeps state, and how it
// runs them. The zero value of every field but ScriptsDir has a default.
type Config struct {
	// ScriptsDir holds the *.lua scripts; it is watched for changes.
	ScriptsDir string
	// StateDir keeps mailbot.state, the processed-files ledger and the
	// schedules' last runs. Default: ScriptsDir/.mailbot-state.
	StateDir string
	// Workers bounds how many runs (of different scripts) proceed at once.
	Workers int
	// Location is the default time zone of cron schedules.
	Location *time.Location
	// RunTimeout bounds every run unless a trigger sets its own timeout.
	RunTimeout time.Duration
	// Grace is how long shutdown and reloads wait for runs in flight.
	Grace time.Duration
	// Lua is the template of every script's Lua state: sandbox, accounts,
	// environment, logger. ScriptsDir, BaseDir and ScriptName are set per
	// script by the engine.
	Lua luabind.Options
	// DryRun makes the engine touch no file outside StateDir: dropped
	// files are read where they are and never moved, deleted or renamed
	// (the after action and the failed/ move are logged as what would
	// happen), and missing drop folders are not created. StateDir is then
	// meant to be an overlay seeded from the real state directory with
	// SeedDryRunState, so that the real one is never written.
	DryRun bool
}

// Option customises an Engine.
type Option func(*Engine)

// WithLogger sets the structured logger; default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithModule adds a Lua module every script can require, for programs that
// embed the engine and expose their own functions.
func WithModule(name string, loader lua.LGFunction) Option {
	return func(e *Engine) {
		if e.cfg.Lua.Modules == nil {
			e.cfg.Lua.Modules = map[string]lua.LGFunction{}
		}
		e.cfg.Lua.Modules[name] = loader
	}
}

// WithStateLock hands the engine a lock on its StateDir that the caller
// already holds (see LockStateDir), for programs that lock the directory
// before starting other work on it. The engine then does not lock the
// directory itself, and the caller releases the lock after Run returns.
// Without this option Run takes the lock and releases it when it returns.
func WithStateLock(l *StateLock) Option { return func(e *Engine) { e.heldLock = l } }

// WithClock replaces the real clock, so tests drive schedules and settle
// times without waiting.
func WithClock(c Clock) Option { return func(e *Engine) { e.clock = c } }

// Stats counts what the engine did since it started.
type Stats struct {
	Loads, LoadErrors, Runs, RunErrors, Timeouts, Skipped int64
}

// Engine loads every script in a directory, keeps them current as they are
// edited, and runs their handlers when files land or schedules fire. Create
// it with New and start it with Run.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	clock Clock

	heldLock  *StateLock // given by WithStateLock; nil: Run locks StateDir
	lockRuns  bool       // take each script's cross-process lock around its runs (Run)
	firing    bool       // a Fire engine: it holds the script's lock itself
	store     *StateStore
	ledger    *Ledger
	hub       *WatchHub // one inotify instance for every watched folder
	scheduler *Scheduler
	workers   chan struct{}

	mu      sync.Mutex
	scripts map[string]*script   // by file name
	sched   map[string]*schedRun // by scheduler entry ID

	// runBase is the parent of every run's context. It is cancelled only
	// when the shutdown grace period is over, so SIGTERM lets runs finish.
	runBase   context.Context
	runCancel context.CancelFunc
	inflight  runTracker

	stats struct {
		loads, loadErrors, runs, runErrors, timeouts, skipped atomic.Int64
	}
	scriptRescans atomic.Int64 // scripts dir rescans after lost events, for tests

	// onAPI, when set, runs after a script's mailbot table is installed
	// and before its top-level code (CheckScriptAll wraps the registrars).
	onAPI func(*script)

	// observer, loadRecs and loaded serve metrics and the live status
	// (observe.go).
	observer Observer
	obsMu    sync.Mutex
	loadRecs map[string]loadRecord
	loaded   atomic.Bool
}

// New prepares an engine; nothing runs until Run.
func New(cfg Config, opts ...Option) (*Engine, error) {
	if cfg.ScriptsDir == "" {
		return nil, errors.New("engine: ScriptsDir is required")
	}
	abs, err := filepath.Abs(cfg.ScriptsDir)
	if err != nil {
		return nil, fmt.Errorf("engine: scripts dir: %w", err)
	}
	cfg.ScriptsDir = abs
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(abs, ".mailbot-state")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.RunTimeout <= 0 {
		cfg.RunTimeout = DefaultRunTimeout
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	e := &Engine{
		cfg:     cfg,
		log:     slog.Default(),
		clock:   RealClock(),
		scripts: make(map[string]*script),
		sched:   make(map[string]*schedRun),
		workers: make(chan struct{}, cfg.Workers),
	}
	for _, o := range opts {
		o(e)
	}
	if e.cfg.Lua.Logger == nil {
		e.cfg.Lua.Logger = e.log
	}
	return e, nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{
		Loads: e.stats.loads.Load(), LoadErrors: e.stats.loadErrors.Load(),
		Runs: e.stats.runs.Load(), RunErrors: e.stats.runErrors.Load(),
		Timeouts: e.stats.timeouts.Load(), Skipped: e.stats.skipped.Load(),
	}
}

// Run loads the scripts, watches them and serves their triggers until ctx
// is done. Then it stops taking events, lets runs in flight finish within
// the grace period, persists state and returns. A script that fails to load
// is logged and skipped; Run fails only when the engine itself cannot work
// (scripts dir missing, state dir not writable, or in use by another
// engine: see LockStateDir and WithStateLock).
func (e *Engine) Run(ctx context.Context) error {
	if st, err := os.Stat(e.cfg.ScriptsDir); err != nil || !st.IsDir() {
		return fmt.Errorf("engine: scripts dir %s: not a readable directory (create it or fix scripts_dir)", e.cfg.ScriptsDir)
	}
	if e.heldLock == nil {
		// Two engines on one state dir would fire every schedule twice and
		// handle every dropped file twice.
		lock, err := LockStateDir(e.cfg.StateDir)
		if err != nil {
			return err
		}
		defer lock.Release()
	}
	store, err := OpenStateStore(e.cfg.StateDir)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.store = store
	e.lockRuns = true
	ledger, err := OpenLedger(filepath.Join(e.cfg.StateDir, "ledger.jsonl"), LedgerOptions{})
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	e.ledger = ledger
	hub, err := NewWatchHub()
	if err != nil {
		ledger.Close()
		return err
	}
	e.hub = hub
	e.runBase, e.runCancel = context.WithCancel(context.Background())
	e.scheduler = NewScheduler(e.clock)
	e.scheduler.Start()

	watcher, err := NewWatcher(e.cfg.ScriptsDir, WatchOptions{
		Filter: func(p string) bool { return isScript(p) },
		Clock:  e.clock,
		Hub:    hub,
	})
	if err != nil {
		e.scheduler.Stop()
		ledger.Close()
		hub.Close()
		return fmt.Errorf("engine: watching %s: %w", e.cfg.ScriptsDir, err)
	}

	names, err := filepath.Glob(filepath.Join(e.cfg.ScriptsDir, "*.lua"))
	if err != nil {
		return fmt.Errorf("engine: listing scripts: %w", err)
	}
	sort.Strings(names)
	for _, p := range names {
		if IsTestFile(p) {
			continue
		}
		e.load(p)
	}
	e.loaded.Store(true)
	e.log.Info("engine started", "scripts_dir", e.cfg.ScriptsDir, "scripts", len(e.scripts), "workers", e.cfg.Workers)

	for {
		select {
		case <-ctx.Done():
			watcher.Close()
			return e.shutdown()
		case ev, ok := <-watcher.Events():
			if !ok {
				continue
			}
			if ev.Op.Has(OpRemove) {
				e.remove(ev.Path)
			} else {
				e.load(ev.Path)
			}
		case err, ok := <-watcher.Errors():
			if ok {
				e.log.Error("watching scripts dir", "dir", e.cfg.ScriptsDir, "error", err)
				if errors.Is(err, fsnotify.ErrEventOverflow) {
					// Changes were lost: compare the folder with what runs.
					e.rescanScripts()
				}
			}
		case t := <-e.scheduler.Ticks():
			e.mu.Lock()
			sr := e.sched[t.ID]
			e.mu.Unlock()
			if sr != nil {
				e.fireSchedule(sr, t)
			}
		}
	}
}

// rescanScripts loads every script that is new or changed since it was
// loaded and removes the ones that are gone, for when watcher events were
// lost.
func (e *Engine) rescanScripts() {
	e.scriptRescans.Add(1)
	names, err := filepath.Glob(filepath.Join(e.cfg.ScriptsDir, "*.lua"))
	if err != nil {
		e.log.Error("rescanning scripts dir", "dir", e.cfg.ScriptsDir, "error", err)
		return
	}
	present := map[string]bool{}
	for _, p := range names {
		if !isScript(p) {
			continue
		}
		present[filepath.Base(p)] = true
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		e.mu.Lock()
		s := e.scripts[filepath.Base(p)]
		e.mu.Unlock()
		if s == nil || !s.modTime.Equal(st.ModTime()) || s.size != st.Size() {
			e.load(p)
		}
	}
	e.mu.Lock()
	var gone []string
	for name, s := range e.scripts {
		if !present[name] {
			gone = append(gone, s.path)
		}
	}
	e.mu.Unlock()
	for _, p := range gone {
		e.remove(p)
	}
}

func isScript(p string) bool {
	b := filepath.Base(p)
	return strings.HasSuffix(b, ".lua") && !strings.HasPrefix(b, ".") && !IsTestFile(p)
}

// IsTestFile reports whether p is a test file of "mailbot test"
// (name_test.lua). Test files sit next to the scripts, but the engine
// never loads them as scripts.
func IsTestFile(p string) bool { return strings.HasSuffix(filepath.Base(p), "_test.lua") }

// shutdown stops every trigger, waits for runs within the grace period,
// then cancels what is left and persists state.
func (e *Engine) shutdown() error {
	e.log.Info("engine stopping", "grace", e.cfg.Grace)
	e.scheduler.Stop()
	e.mu.Lock()
	all := make([]*script, 0, len(e.scripts))
	for _, s := range e.scripts {
		all = append(all, s)
	}
	e.scripts = map[string]*script{}
	e.mu.Unlock()
	for _, s := range all {
		s.stopTriggers()
	}
	done := e.inflight.closeAndWait()
	timer := time.NewTimer(e.cfg.Grace)
	select {
	case <-done:
		timer.Stop()
	case <-timer.C:
		e.log.Warn("grace period over: stopping runs still in flight")
		e.runCancel()
		<-done
	}
	e.runCancel()
	for _, s := range all {
		s.close()
	}
	var errs []error
	if err := e.store.Flush(); err != nil {
		errs = append(errs, err)
	}
	if err := e.ledger.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := e.hub.Close(); err != nil {
		errs = append(errs, err)
	}
	st := e.Stats()
	e.log.Info("engine stopped", "runs", st.Runs, "run_errors", st.RunErrors, "timeouts", st.Timeouts, "skipped", st.Skipped)
	return errors.Join(errs...)
}

// remove stops a deleted script's triggers.
func (e *Engine) remove(path string) {
	name := filepath.Base(path)
	e.mu.Lock()
	old := e.scripts[name]
	delete(e.scripts, name)
	e.mu.Unlock()
	e.observeRemove(path)
	if old == nil {
		return
	}
	e.retire(old)
	e.log.Info("script removed", "script", name)
}

// retire stops an old version's triggers and closes its state once its
// runs in flight are done (bounded by the grace period).
func (e *Engine) retire(old *script) {
	old.stopTriggers()
	e.mu.Lock()
	for id, sr := range e.sched {
		if sr.s == old {
			e.scheduler.Remove(id)
			delete(e.sched, id)
		}
	}
	e.mu.Unlock()
	go func() {
		if !old.waitRuns(e.cfg.Grace) {
			e.log.Warn("runs of the old version still going after the grace period; stopping them", "script", old.name)
			old.cancel()
			old.waitRuns(e.cfg.Grace)
		}
		old.close()
	}()
}

// acquire takes a worker slot, or fails when ctx ends first.
func (e *Engine) acquire(ctx context.Context) error {
	select {
	case e.workers <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) release() { <-e.workers }

// runTracker counts handler runs in progress. Unlike a WaitGroup it refuses
// new runs once shutdown has begun, so no run can start after the wait.
type runTracker struct {
	mu      sync.Mutex
	n       int
	closing bool
	zero    chan struct{}
}

func (f *runTracker) begin() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.n++
	return true
}

func (f *runTracker) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 && f.zero != nil {
		close(f.zero)
		f.zero = nil
	}
}

// closeAndWait refuses new runs and returns a channel closed when the
// runs in progress are done.
func (f *runTracker) closeAndWait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing = true
	ch := make(chan struct{})
	if f.n == 0 {
		close(ch)
	} else {
		f.zero = ch
	}
	return ch
}
