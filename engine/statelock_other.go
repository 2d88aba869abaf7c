//go:build !unix

package engine

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// tryFlock does nothing where flock(2) is missing: mailbot targets Unix,
// and elsewhere nothing stops two daemons on one state_dir.
func tryFlock(*os.File) error { return nil }

// waitFlock does nothing where flock(2) is missing.
func waitFlock(*os.File) error { return nil }

// unlockFlock does nothing where flock(2) is missing.
func unlockFlock(*os.File) {}
