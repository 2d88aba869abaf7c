//go:build linux

package outbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncBatch makes the files of a committed batch, and the directory
// entries naming them, durable. On Linux one syncfs(2) flushes the whole
// spool file system in a single journal commit, which on the disks
// mailbot was measured on costs about the same as one fsync while
// covering any number of files and renames; per-file fsync plus directory
// fsync costs one flush each. The files must already be renamed into
// place: syncfs covers them wherever they are.
func syncBatch(spool *os.File, _ []string, _ []string) error {
	if err := unix.Syncfs(int(spool.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", spool.Name(), err)
	}
	return nil
}

// syncBeforeRename reports whether syncBatch needs the files flushed
// before they are renamed (per-file fsync) or covers them afterwards.
const syncBeforeRename = false
