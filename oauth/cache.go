package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// cacheVersion is written into every cache file.
const cacheVersion = 1

// cached is the content of a token cache file.
type cached struct {
	Version      int       `json:"version"`
	Grant        string    `json:"grant,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	// Scopes are those the endpoint granted, or those requested when it
	// did not say.
	Scopes  []string  `json:"scopes,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// String never shows a token.
func (c *cached) String() string { return "oauth token cache entry" }

// GoString never shows a token.
func (c *cached) GoString() string { return c.String() }

// readCache reads a cache file; a missing file is an empty entry.
func readCache(path string) (*cached, os.FileInfo, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &cached{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read token cache: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("read token cache: %w", err)
	}
	var c cached
	if err := json.NewDecoder(f).Decode(&c); err != nil {
		// The JSON error may quote part of the file; say only where.
		return nil, nil, fmt.Errorf("read token cache %s: the file is not valid JSON; delete it and run `mailbot oauth login`", path)
	}
	return &c, fi, nil
}

// writeCache writes c to path atomically: a temporary file in the same
// folder, fsynced, renamed over path, then the folder fsynced, so a crash
// leaves either the old or the new file, never a torn one.
func writeCache(path string, c *cached) (os.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	c.Version = cacheVersion
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// CreateTemp makes the file 0600 already; Chmod guards against an
	// unusual umask-free implementation.
	if err := tmp.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		syncErr := d.Sync()
		d.Close()
		if syncErr != nil {
			return nil, fmt.Errorf("write token cache: sync folder: %w", syncErr)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("write token cache: %w", err)
	}
	return fi, nil
}
