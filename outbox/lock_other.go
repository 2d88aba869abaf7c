//go:build !unix

package outbox

import (
	"errors"
	"os"
)

// On systems without flock(2) the spool is only safe for one process at a
// time; mailbot targets Unix.

func tryLock(*os.File) error { return nil }
func lock(*os.File) error    { return nil }
func unlock(*os.File) error  { return nil }

func openRead(path string) (*os.File, error) { return os.Open(path) }
func renameFile(from, to string) error       { return os.Rename(from, to) }

// chmodFile is not used for the sent mark here: permission bits do not
// mean the same everywhere, so delivery renames into sent/ at once.
func chmodFile(*os.File, os.FileMode) error { return errors.ErrUnsupported }
