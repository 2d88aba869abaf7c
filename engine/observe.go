package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
)

// Observer receives what a running engine does, for metrics. Every field
// is optional; the functions are called from the engine's goroutines and
// must not block.
type Observer struct {
	// RunFinished is called after every handler run (not for checks or
	// trigger listings).
	RunFinished func(RunEvent)
	// ScriptLoaded is called after every load attempt of a script.
	ScriptLoaded func(LoadEvent)
	// FileHandled is called when a file trigger has settled a file:
	// outcome is the disposition's action ("kept", "deleted", "moved",
	// "failed", "retry"), or "error" when it could not be settled.
	FileHandled func(script, outcome string)
}

// RunEvent describes a finished run.
type RunEvent struct {
	Script  string // file name, e.g. "report.lua"
	Trigger string // trigger ID, e.g. "report#daily"
	Kind    string // "file", "every", "cron" or "start"
	// Outcome is RunOK, RunError, RunTimeout or RunMemory.
	Outcome  string
	Duration time.Duration
	Err      error
	Fired    bool // started by FireTrigger
}

// LoadEvent describes a script load attempt.
type LoadEvent struct {
	Script string
	Path   string
	// Hash is the SHA-256 (hex) of the file loaded; "" when it failed.
	Hash string
	// Err is the load error; nil when it loaded.
	Err error
}

// WithObserver sets the engine's observer.
func WithObserver(o Observer) Option { return func(e *Engine) { e.observer = o } }

// ScriptInfo describes a script of a running engine.
type ScriptInfo struct {
	Name string
	Path string
	// Hash is the SHA-256 (hex) of the version running; "" if none runs.
	Hash string
	// LoadError is the last load's error with file:line, when the last
	// load failed (a previous version may still run).
	LoadError string
}

// loadRecord is what the engine remembers of a script's last load.
type loadRecord struct {
	path, hash, err string
}

func (e *Engine) observeLoad(path string, err error) {
	name := filepath.Base(path)
	rec := loadRecord{path: path}
	if err != nil {
		rec.err = luabind.DescribeError(err)
		if file, line, ok := luabind.ErrorLocation(err); ok {
			rec.err = fmt.Sprintf("%s:%d: %s", file, line, rec.err)
		}
	} else if data, rerr := os.ReadFile(path); rerr == nil {
		sum := sha256.Sum256(data)
		rec.hash = hex.EncodeToString(sum[:])
	}
	e.obsMu.Lock()
	if e.loadRecs == nil {
		e.loadRecs = map[string]loadRecord{}
	}
	if err != nil {
		// The previous version (if any) keeps running: keep its hash.
		rec.hash = e.loadRecs[name].hash
	}
	e.loadRecs[name] = rec
	e.obsMu.Unlock()
	if f := e.observer.ScriptLoaded; f != nil {
		ev := LoadEvent{Script: name, Path: path, Err: err}
		if err == nil {
			ev.Hash = rec.hash
		}
		f(ev)
	}
}

func (e *Engine) observeRemove(path string) {
	e.obsMu.Lock()
	delete(e.loadRecs, filepath.Base(path))
	e.obsMu.Unlock()
}

func (e *Engine) observeRun(t *trigger, start time.Time, ctx context.Context, err error) {
	if f := e.observer.RunFinished; f != nil && (e.lockRuns || e.firing) {
		f(RunEvent{Script: t.s.name, Trigger: t.ID(), Kind: triggerKinds[t.kind], Outcome: classifyRun(ctx, err),
			Duration: time.Since(start), Err: err, Fired: e.firing})
	}
}

func (e *Engine) observeFile(script, outcome string) {
	if f := e.observer.FileHandled; f != nil {
		f(script, outcome)
	}
}

// Loaded reports whether Run has done its first load of every script.
func (e *Engine) Loaded() bool { return e.loaded.Load() }

// Scripts describes the scripts of the running engine, by name: those
// loaded and those whose load failed.
func (e *Engine) Scripts() []ScriptInfo {
	e.obsMu.Lock()
	out := make([]ScriptInfo, 0, len(e.loadRecs))
	for name, r := range e.loadRecs {
		out = append(out, ScriptInfo{Name: name, Path: r.path, Hash: r.hash, LoadError: r.err})
	}
	e.obsMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Triggers describes the triggers of the running engine's scripts, in
// script name and registration order, like ListTriggers, with next runs
// taken from the live scheduler.
func (e *Engine) Triggers() []TriggerInfo {
	e.mu.Lock()
	scripts := make([]*script, 0, len(e.scripts))
	for _, s := range e.scripts {
		scripts = append(scripts, s)
	}
	e.mu.Unlock()
	sort.Slice(scripts, func(i, j int) bool { return scripts[i].name < scripts[j].name })
	now := e.clock.Now()
	out := []TriggerInfo{}
	for _, s := range scripts {
		outcomes, _ := ReadRunOutcomes(e.cfg.StateDir, s.name)
		for _, t := range s.all {
			marks := map[string]time.Time{}
			if t.sched != nil && e.store != nil {
				if m, ok := e.store.LastRun(t.sched.key); ok {
					marks[t.sched.key] = m
				}
			}
			ti := t.info(now, marks, outcomes)
			if t.sched != nil && e.scheduler != nil {
				if next, ok := e.scheduler.Next(t.sched.id()); ok && !next.IsZero() {
					n := next.In(t.loc)
					ti.NextRun = &n
				}
			}
			out = append(out, ti)
		}
	}
	return out
}

// FireTrigger runs the trigger with the ID (see ParseTriggerID) of the
// running engine now, in process, and waits for the run: a schedule gets
// scheduled_at = now, every handler fired = true. The run takes the
// script's lock and a worker slot like any other run. File triggers are
// refused (wrapping ErrFireNeedsFile): drop the file in their folder, or
// use "mailbot fire --file". Errors in preparing the run are returned
// as the error; the handler's own error is in FireResult.Err.
func (e *Engine) FireTrigger(ctx context.Context, id string) (*FireResult, error) {
	scriptFile, which, err := ParseTriggerID(id)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	s := e.scripts[scriptFile]
	e.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("%w: no script %s is running", ErrUnknownTrigger, scriptFile)
	}
	t, err := s.find(which)
	if err != nil {
		return nil, err
	}
	if t.file != nil {
		return nil, fmt.Errorf("%w: %s watches %s; drop a file there, or use mailbot fire %s --file PATH", ErrFireNeedsFile, t.ID(), t.file.spec.Dir, t.ID())
	}
	if !e.inflight.begin() {
		return nil, fmt.Errorf("engine: shutting down: %s not fired", t.ID())
	}
	res := &FireResult{}
	ev := map[string]lua.LValue{"fired": lua.LTrue}
	if t.sched != nil {
		res.ScheduledAt = e.clock.Now().In(t.loc)
		ev["scheduled_at"] = lua.LNumber(res.ScheduledAt.Unix())
	}
	done := make(chan struct{})
	go func() {
		defer e.inflight.end()
		defer close(done)
		start := time.Now()
		var runCtx context.Context
		res.Err = e.runWith(t, ev, nil, func(ctx context.Context) { runCtx = ctx })
		res.Duration = time.Since(start)
		if runCtx == nil {
			runCtx = context.Background()
		}
		res.Outcome = classifyRun(runCtx, res.Err)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("engine: waiting for the run of %s: %w", t.ID(), ctx.Err())
	}
	res.Trigger = t.info(e.clock.Now(), nil, nil)
	for _, ti := range e.Triggers() {
		if ti.ID == t.ID() {
			res.Trigger = ti
		}
	}
	return res, nil
}

// ErrFireNeedsFile is wrapped by FireTrigger for file triggers.
var ErrFireNeedsFile = errors.New("file trigger needs a file")
