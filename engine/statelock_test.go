package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLockStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	l1, err := LockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := os.ReadFile(filepath.Join(dir, LockFileName))
	if err != nil || strings.TrimSpace(string(pid)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("lock file holds %q, %v; want our PID", pid, err)
	}
	_, err = LockStateDir(dir)
	var inUse *StateDirInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("second lock: %v, want *StateDirInUseError", err)
	}
	want := "state_dir " + dir + " is in use by mailbot PID " + strconv.Itoa(os.Getpid()) +
		" (lock file " + filepath.Join(dir, LockFileName) + "); run one daemon per state_dir — cluster mode is a later feature"
	if err.Error() != want {
		t.Fatalf("error =\n%s\nwant\n%s", err, want)
	}
	if err := l1.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := LockStateDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release()
	l2.Release() // twice is fine
}

// TestTwoEnginesOneStateDir: a second engine on a state dir in use fails
// at Run with the holder named; once the first stops, the dir is free.
func TestTwoEnginesOneStateDir(t *testing.T) {
	h := newHarness(t, nil)
	h.write("a.lua", `mailbot.on_start(function() end)`)
	h.start()

	second, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = second.Run(ctx)
	var inUse *StateDirInUseError
	if !errors.As(err, &inUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second engine Run = %v, want *StateDirInUseError with our PID", err)
	}
	if !strings.Contains(err.Error(), "run one daemon per state_dir") {
		t.Fatalf("error %q does not say what to do", err)
	}

	h.stop()
	third, err := New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx3, cancel3 := context.WithCancel(context.Background())
	cancel3() // Run still locks, loads and then stops at once
	if err := third.Run(ctx3); err != nil {
		t.Fatalf("engine after the first stopped: %v", err)
	}
}

// TestEngineWithHeldLock: an embedder that holds the lock hands it over
// and the engine runs without locking again.
func TestEngineWithHeldLock(t *testing.T) {
	h := newHarness(t, nil)
	lock, err := LockStateDir(h.state)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	e, err := New(h.cfg, WithStateLock(lock))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Run(ctx); err != nil {
		t.Fatalf("Run with a held lock: %v", err)
	}
	if _, err := LockStateDir(h.state); err == nil {
		t.Fatal("the engine released a lock it did not take")
	}
}
