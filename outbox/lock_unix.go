//go:build unix

package outbox

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// tryLock takes f's exclusive flock(2) lock without waiting. flock locks
// belong to the open file, so two opens conflict even within one process,
// and the kernel drops them when a process dies: a kill -9 never leaves a
// message locked.
func tryLock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrBusy
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return nil
}

// lock takes f's exclusive lock, waiting for it.
func lock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		return nil
	}
}

// unlock releases f's lock.
func unlock(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// openRead opens a spool file for reading with a single open(2). os.Open
// also tries to register the descriptor with the network poller, which
// costs four fcntl(2) and an epoll_ctl(2) that always fail for a regular
// file; on the delivery path that is a third of the work of loading a
// message.
func openRead(path string) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

// renameFile is os.Rename without its lstat(2) of the target (which only
// guards against renaming onto a directory, something spool paths never
// name): one system call for the "sent" mark.
func renameFile(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// chmodFile changes f's permission bits with fchmod(2).
func chmodFile(f *os.File, mode os.FileMode) error { return f.Chmod(mode) }
