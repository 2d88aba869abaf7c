package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// DefaultFireLockWait is how long Fire waits for a run of the same script
// in progress (in a daemon, or another fire) when FireRequest.LockWait is 0.
const DefaultFireLockWait = 5 * time.Minute

// FireRequest says which trigger Fire runs and with what event.
type FireRequest struct {
	// ID is "<script>#<n>" or "<script>#<name>" (see ParseTriggerID).
	ID string
	// File is the file handed to a file trigger. It must lie in the
	// trigger's folder (or below it, for a recursive one) and match its
	// pattern. Required for file triggers, refused for the others.
	File string
	// At is the scheduled time handed to an every or cron trigger, as
	// ParseFireTime reads it in the trigger's time zone; "" means now.
	// Refused for the other kinds.
	At string
	// DryRun leaves the file of a file trigger where it is: the after
	// action (or the move to failed/) is reported, not done, and the
	// ledger is not written. The caller points Config.StateDir at an
	// overlay so that nothing else real is written either.
	DryRun bool
	// LockWait bounds the wait for the script's lock; 0 means
	// DefaultFireLockWait.
	LockWait time.Duration
}

// FireResult is what a fired run did.
type FireResult struct {
	// Trigger is the trigger that ran.
	Trigger TriggerInfo
	// Err is the handler's error; nil when it succeeded.
	Err error
	// Outcome is RunOK, RunError, RunTimeout or RunMemory.
	Outcome string
	// Duration is how long the handler ran.
	Duration time.Duration
	// ScheduledAt is the scheduled time handed to a schedule.
	ScheduledAt time.Time
	// File is what became of a file trigger's file; in a dry run, what
	// would have (Action "would keep", "would delete", "would move",
	// "would fail", "would retry"). Nil for other kinds.
	File *Disposition
}

// StateDirNeededError is returned by Fire for a file trigger while a
// daemon holds the state directory: the file ledger is the daemon's, and
// the daemon would handle the file in its watched folder itself.
type StateDirNeededError struct {
	InUse *StateDirInUseError
	Dir   string // the trigger's drop folder
}

// Error implements error.
func (e *StateDirNeededError) Error() string {
	pid := "another mailbot"
	if e.InUse.PID > 0 {
		pid = fmt.Sprintf("mailbot PID %d", e.InUse.PID)
	}
	return fmt.Sprintf("%s (the daemon) watches %s and keeps its file ledger: it handles files there itself; use --dry-run to try the handler, or stop the daemon to fire it for real", pid, e.Dir)
}

// Unwrap returns the state directory's lock error.
func (e *StateDirNeededError) Unwrap() error { return e.InUse }

// Fire loads the script named by req.ID (top-level code included, as a
// daemon's reload would) and runs that one trigger's handler once, now,
// with the event it would get under "mailbot run", plus fired = true.
// Runs never overlap with the daemon's runs of the same script: Fire holds
// the script's lock (LockScript) from load to the end, waiting up to
// req.LockWait for a run in progress. The daemon's own state_dir lock is
// not needed, except for file triggers outside a dry run (see
// StateDirNeededError). The last-run marks of schedules (their catch-up
// record) are left alone; the run's outcome is recorded for
// "mailbot triggers".
//
// Errors in preparing the run (an unknown ID, a file outside the
// trigger's folder, a script that fails to load, the lock's wait running
// out) are returned as the error; the handler's own error is in
// FireResult.Err.
func Fire(ctx context.Context, cfg Config, req FireRequest, opts ...Option) (*FireResult, error) {
	scriptFile, which, err := ParseTriggerID(req.ID)
	if err != nil {
		return nil, err
	}
	e, err := New(cfg, opts...)
	if err != nil {
		return nil, err
	}
	e.firing = true
	path := filepath.Join(e.cfg.ScriptsDir, scriptFile)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: no script %s in %s", ErrUnknownTrigger, scriptFile, e.cfg.ScriptsDir)
	}
	wait := req.LockWait
	if wait <= 0 {
		wait = DefaultFireLockWait
	}
	lctx, lcancel := context.WithTimeout(ctx, wait)
	lock, err := LockScript(lctx, e.cfg.StateDir, scriptFile, func() {
		e.log.Info("waiting for the run of the script in progress", "script", scriptFile, "wait", wait)
	})
	lcancel()
	if err != nil {
		return nil, err
	}
	defer lock.Release()

	store, err := OpenStateStore(e.cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.store = store
	var cancel context.CancelFunc
	e.runBase, cancel = context.WithCancel(ctx)
	defer cancel()
	s, err := e.newScript(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", scriptFile, err)
	}
	defer s.close()
	t, err := s.find(which)
	if err != nil {
		return nil, err
	}
	if req.File != "" && t.file == nil {
		return nil, fmt.Errorf("%s is a %s trigger: --file is for file triggers", t.ID(), triggerKinds[t.kind])
	}
	if req.At != "" && t.sched == nil {
		return nil, fmt.Errorf("%s is a %s trigger: --at is for every and cron triggers", t.ID(), triggerKinds[t.kind])
	}
	res := &FireResult{}
	ev := map[string]lua.LValue{}
	var (
		rf     ReadyFile
		ledger *Ledger
	)
	switch {
	case t.sched != nil:
		at := e.clock.Now().In(t.loc)
		if req.At != "" {
			if at, err = ParseFireTime(req.At, t.loc); err != nil {
				return nil, err
			}
		}
		res.ScheduledAt = at
		ev["scheduled_at"] = lua.LNumber(at.Unix())
	case t.file != nil:
		if rf, err = fireFile(t.file, req.File); err != nil {
			return nil, err
		}
		ev = fileEvent(rf)
		if !req.DryRun {
			sl, err := LockStateDir(e.cfg.StateDir)
			var inUse *StateDirInUseError
			if errors.As(err, &inUse) {
				return nil, &StateDirNeededError{InUse: inUse, Dir: t.file.spec.Dir}
			}
			if err != nil {
				return nil, err
			}
			defer sl.Release()
			if ledger, err = OpenLedger(filepath.Join(e.cfg.StateDir, "ledger.jsonl"), LedgerOptions{Clock: e.clock}); err != nil {
				return nil, fmt.Errorf("engine: %w", err)
			}
			defer ledger.Close()
		}
	}
	if t.isAlert() {
		ev[alertEventKey] = sampleAlert(t)
	}
	ev["fired"] = lua.LTrue

	start := time.Now()
	var runCtx context.Context
	res.Err = e.runWith(t, ev, nil, func(ctx context.Context) { runCtx = ctx })
	res.Duration = time.Since(start)
	if runCtx == nil { // the run did not start
		runCtx = ctx
	}
	res.Outcome = classifyRun(runCtx, res.Err)
	if t.file != nil {
		d, err := finishFiredFile(t.file, rf, res.Err, ledger, e.clock, req.DryRun)
		res.File = &d
		if err != nil {
			return res, err
		}
	}
	outcomes, _ := ReadRunOutcomes(e.cfg.StateDir, s.name)
	marks := map[string]time.Time{}
	if t.sched != nil {
		if m, ok := store.LastRun(t.sched.key); ok {
			marks[t.sched.key] = m
		}
	}
	res.Trigger = t.info(e.clock.Now(), marks, outcomes)
	return res, nil
}

// fireFile checks that path suits the file trigger and describes it.
func fireFile(fr *fileRun, path string) (ReadyFile, error) {
	spec := fr.spec
	pattern := spec.Pattern
	if pattern == "" {
		pattern = "*"
	}
	if path == "" {
		return ReadyFile{}, fmt.Errorf("%s is a file trigger: give the file to hand over with --file PATH (a file in %s matching %s)", fr.ID(), spec.Dir, pattern)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return ReadyFile{}, fmt.Errorf("--file %s: %w", path, err)
	}
	dir, name := filepath.Dir(abs), filepath.Base(abs)
	root := filepath.Clean(spec.Dir)
	inside := dir == root
	if spec.Recursive && !inside {
		rel, err := filepath.Rel(root, dir)
		inside = err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
	}
	if !inside {
		where := "in"
		if spec.Recursive {
			where = "in or below"
		}
		return ReadyFile{}, fmt.Errorf("--file %s: not %s the trigger's folder %s (%s watches %s)", path, where, root, fr.ID(), filepath.Join(root, pattern))
	}
	if ok, _ := filepath.Match(pattern, name); !ok {
		return ReadyFile{}, fmt.Errorf("--file %s: the name %q does not match the trigger's pattern %q (%s)", path, name, pattern, fr.ID())
	}
	fi, err := statFile(abs)
	if err != nil {
		return ReadyFile{}, fmt.Errorf("--file: %w", err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return ReadyFile{}, fmt.Errorf("--file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ReadyFile{}, fmt.Errorf("--file %s: %w", path, err)
	}
	return ReadyFile{Path: abs, Name: name, Dir: dir, Op: OpCreate, Size: fi.Size(), ModTime: fi.ModTime(),
		SHA256: hex.EncodeToString(h.Sum(nil)), Existing: true, Attempt: 1}, nil
}

// finishFiredFile does (or, in a dry run, describes) what the daemon does
// with a file once its handler returned.
func finishFiredFile(fr *fileRun, rf ReadyFile, handlerErr error, ledger *Ledger, clock Clock, dry bool) (Disposition, error) {
	var err error
	if handlerErr != nil {
		retry := wantsRetry(handlerErr)
		err = &describedError{handlerErr}
		if retry {
			err = Retry(err)
		}
	}
	if dry {
		var re *RetryError
		switch {
		case err == nil && fr.spec.After.Kind == AfterDelete:
			return Disposition{Action: "would delete", Path: rf.Path}, nil
		case err == nil && fr.spec.After.Kind == AfterMove:
			dir := fr.spec.After.Dir
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(rf.Dir, dir)
			}
			return Disposition{Action: "would move", Path: filepath.Join(dir, rf.Name)}, nil
		case err == nil:
			return Disposition{Action: "would keep", Path: rf.Path}, nil
		case errors.As(err, &re) && !fr.spec.Backoff.Exhausted(rf.Attempt):
			return Disposition{Action: "would retry", Path: rf.Path}, nil
		}
		return Disposition{Action: "would fail", Path: filepath.Join(rf.Dir, FailedDir, rf.Name)}, nil
	}
	// A trigger that is never started does the file operations of
	// Complete, and nothing else.
	ft, nerr := NewFileTrigger(fr.spec, FileTriggerOptions{Clock: clock, Ledger: ledger})
	if nerr != nil {
		return Disposition{}, nerr
	}
	ft.Close()
	return ft.Complete(rf, err)
}
