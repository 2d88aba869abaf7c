package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A dry run of the engine keeps its state in an overlay directory: a copy,
// made when the dry run starts, of what the engine keeps in the real state
// directory (the processed-files ledger, mailbot.state, the schedules' last
// runs). The engine is then given the overlay as Config.StateDir, with
// Config.DryRun set so that its file triggers only observe: the real state
// directory is read once, by SeedDryRunState, and never written, and a
// second dry run seeded the same way does the same thing as the first.

// ledgerFile is the ledger's name in the state directory.
const ledgerFile = "ledger.jsonl"

// SeedDryRunState makes overlay a fresh copy of the engine state kept in
// stateDir: the ledger and the state/ folder (mailbot.state of every script
// and the schedules' last runs). What overlay held of them before is
// removed first; other files in overlay (a lock, a spool) are left alone.
// stateDir is only read, and may be missing (a first run). Files are
// copied with their permissions, never linked, so no write to the overlay
// can reach the real state.
func SeedDryRunState(stateDir, overlay string) error {
	if err := os.MkdirAll(overlay, 0o700); err != nil {
		return fmt.Errorf("engine: dry-run state: %w", err)
	}
	for _, name := range []string{ledgerFile, "state"} {
		if err := os.RemoveAll(filepath.Join(overlay, name)); err != nil {
			return fmt.Errorf("engine: dry-run state: clear %s: %w", name, err)
		}
	}
	if err := copyRegular(filepath.Join(stateDir, ledgerFile), filepath.Join(overlay, ledgerFile)); err != nil {
		return fmt.Errorf("engine: dry-run state: %w", err)
	}
	src := filepath.Join(stateDir, "state")
	ents, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("engine: dry-run state: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(overlay, "state"), 0o700); err != nil {
		return fmt.Errorf("engine: dry-run state: %w", err)
	}
	for _, e := range ents {
		// Script states and the last-run file; not the temp files of an
		// atomic write in progress in the real directory.
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		if err := copyRegular(filepath.Join(src, e.Name()), filepath.Join(overlay, "state", e.Name())); err != nil {
			return fmt.Errorf("engine: dry-run state: %w", err)
		}
	}
	return nil
}

// copyRegular copies the regular file src to dst (replacing it), keeping
// its permissions; a missing src copies nothing.
func copyRegular(src, dst string) error {
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, fi.Mode().Perm()); err != nil {
		return err
	}
	return nil
}

// wouldMoveTo returns where moveNoClobber would put src in dir, without
// touching anything: its own name, or name-1.ext, name-2.ext... if taken.
func wouldMoveTo(src, dir string) string {
	name := filepath.Base(src)
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 0; i < 10000; i++ {
		cand := name
		if i > 0 {
			cand = fmt.Sprintf("%s-%d%s", stem, i, ext)
		}
		dst := filepath.Join(dir, cand)
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			return dst
		}
	}
	return filepath.Join(dir, name)
}
