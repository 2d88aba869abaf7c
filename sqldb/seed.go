package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// seedTimeout bounds building a database from its seed script.
const seedTimeout = 2 * time.Minute

// seed creates the SQLite file cfg.Path from the SQL script cfg.Seed when
// the file does not exist yet: an example or a fixture database that
// mailbot builds on first use. The script runs on a temporary file in the
// same folder, which is flushed and then linked into place, so a reader
// never sees a half-built database, and of two processes seeding at once
// the first to finish wins and the other uses its file. An existing file
// is never touched, whatever it holds.
func seed(ctx context.Context, cfg Config) error {
	if cfg.Seed == "" {
		return nil
	}
	if _, err := os.Stat(cfg.Path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	script, err := os.ReadFile(cfg.Seed)
	if err != nil {
		return fmt.Errorf("read the seed script: %w", err)
	}
	dir := filepath.Dir(cfg.Path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(cfg.Path)+".seed-*")
	if err != nil {
		return err
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpPath)

	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	db, err := sql.Open("sqlite", sqliteDSN(tmpPath, false))
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, string(script))
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("run the seed script %s: %w", cfg.Seed, err)
	}
	if err := syncFile(tmpPath); err != nil {
		return err
	}
	// Link, not rename: rename would replace a file another process
	// seeded (or an operator put there) in the meantime.
	if err := os.Link(tmpPath, cfg.Path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncFile(dir)
}

// syncFile flushes a file or folder to stable storage.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
