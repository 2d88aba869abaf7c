package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFileName is the file in state_dir whose lock marks the daemon that
// owns the directory. It holds the owner's PID.
const LockFileName = "mailbot.lock"

// StateDirInUseError reports that another process holds a state
// directory's lock. PID is 0 when the holder's PID could not be read.
type StateDirInUseError struct {
	Dir, LockFile string
	PID           int
}

// Error implements error.
func (e *StateDirInUseError) Error() string {
	pid := "unknown"
	if e.PID > 0 {
		pid = strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("state_dir %s is in use by mailbot PID %s (lock file %s); run one daemon per state_dir — cluster mode is a later feature",
		e.Dir, pid, e.LockFile)
}

// StateLock is the exclusive lock of one state directory, taken with
// LockStateDir. Only one StateLock of a directory exists at a time across
// all processes (flock(2) on Unix, so a killed daemon leaves no stale
// lock). Commands that only read or queue (exec, check, queue) do not take
// it.
type StateLock struct {
	f    *os.File
	path string
}

// LockStateDir creates dir if needed and takes its lock without waiting.
// When another process (or another StateLock in this one) holds it, the
// error is a *StateDirInUseError naming the holder's PID. The lock file
// holds this process's PID until Release.
func LockStateDir(dir string) (*StateLock, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("engine: state dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("engine: state dir: %w", err)
	}
	path := filepath.Join(abs, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("engine: lock state dir: %w", err)
	}
	if err := tryFlock(f); err != nil {
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, &StateDirInUseError{Dir: abs, LockFile: path, PID: readLockPID(path)}
		}
		return nil, fmt.Errorf("engine: lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("engine: write %s: %w", path, err)
		}
	}
	return &StateLock{f: f, path: path}, nil
}

// Path returns the lock file's path.
func (l *StateLock) Path() string { return l.path }

// Release gives the lock up. It is safe to call more than once and on nil.
func (l *StateLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	// Clear the PID first so nobody reads a stale one; the file stays, as
	// removing it would race with the next daemon opening it.
	_ = l.f.Truncate(0)
	unlockFlock(l.f)
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("engine: release %s: %w", l.path, err)
	}
	return nil
}

func readLockPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
