package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LocksDir is the folder in state_dir holding one lock file per script.
const LocksDir = "locks"

// ScriptLock is the cross-process lock of one script's runs, taken with
// LockScript. The engine holds it around every run of the script under
// "mailbot run", and "mailbot fire" holds it while it loads and runs a
// trigger, so that runs of one script never overlap, whichever process
// makes them. Unlike the state directory's lock (LockStateDir) it is held
// only while a run goes on.
type ScriptLock struct {
	f *os.File
}

// LockScript takes the lock of the named script (a file name such as
// "daily-report.lua", or the name without ".lua") in
// stateDir/locks/<script>.lock, waiting until it is free or ctx is done.
// On Unix it is a flock(2) lock, released by the kernel if the holder dies.
// waiting, when not nil, is called once if the lock is held elsewhere and
// the call has to wait.
func LockScript(ctx context.Context, stateDir, script string, waiting func()) (*ScriptLock, error) {
	base := strings.TrimSuffix(filepath.Base(script), ".lua")
	if !scriptNameRE.MatchString(base) {
		return nil, fmt.Errorf("engine: script lock: invalid script name %q", script)
	}
	dir := filepath.Join(stateDir, LocksDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("engine: script lock: %w", err)
	}
	path := filepath.Join(dir, base+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("engine: script lock: %w", err)
	}
	// Fast path: the lock is free (the usual case).
	switch err := tryFlock(f); {
	case err == nil:
		return &ScriptLock{f: f}, nil
	case err != errLocked:
		f.Close()
		return nil, fmt.Errorf("engine: lock %s: %w", path, err)
	}
	if waiting != nil {
		waiting()
	}
	// A blocking flock cannot be interrupted, so it waits in a goroutine;
	// if ctx ends first, the goroutine drops the lock as soon as it gets it.
	type result struct{ err error }
	got := make(chan result) // unbuffered: exactly one side closes f
	abandon := make(chan struct{})
	go func() {
		err := waitFlock(f)
		select {
		case got <- result{err}:
		case <-abandon:
			f.Close()
		}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			f.Close()
			return nil, fmt.Errorf("engine: lock %s: %w", path, r.err)
		}
		return &ScriptLock{f: f}, nil
	case <-ctx.Done():
		close(abandon)
		return nil, fmt.Errorf("engine: waiting for the lock of %s (a run of it is in progress): %w", script, ctx.Err())
	}
}

// Release drops the lock. It is safe to call more than once and on nil.
func (l *ScriptLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	unlockFlock(l.f)
	err := l.f.Close()
	l.f = nil
	return err
}
