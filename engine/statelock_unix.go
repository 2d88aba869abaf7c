//go:build unix

package engine

import (
	"errors"
	"os"
	"syscall"
)

var errLocked = errors.New("locked")

// tryFlock takes f's exclusive flock(2) lock without waiting. flock locks
// belong to the open file, so two opens conflict even within one process.
func tryFlock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return errLocked
		}
		return err
	}
}

// waitFlock takes f's exclusive flock(2) lock, waiting for it.
func waitFlock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		return err
	}
}

// unlockFlock drops f's flock(2) lock. Closing f alone is not enough while
// a child process forked by this one (an exec in progress) still holds a
// copy of the descriptor: the lock belongs to the open file, which the
// copy keeps alive until the child's exec closes it.
func unlockFlock(f *os.File) {
	for {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}
