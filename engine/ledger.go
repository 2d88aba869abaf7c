package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
)

// The ledger is an append-only JSON-lines file, one record per line, each
// appended with a single write and fsynced before Record returns.
//
// Why one file rather than one small file per key: a drop folder can see
// thousands of files a day. One file costs one descriptor and one fsync per
// record, while a file per key costs a create, an fsync of the file and an
// fsync of the directory each time, and leaves thousands of inodes behind.
// Appends can only tear the last line in a crash, which the loader ignores;
// compaction at open (temp file, fsync, rename, fsync dir) drops superseded
// and expired lines so the file does not grow without bound.

// LedgerKey identifies one version of one file: the path, the size and
// modification time seen when it settled, and the SHA-256 of its content.
// A new drop of identical content under the same name gets a new
// modification time and is therefore a new key.
type LedgerKey struct {
	Path    string
	Size    int64
	ModTime time.Time
	SHA256  string // lower-case hex
}

func (k LedgerKey) id() string {
	return k.Path + "\x00" + strconv.FormatInt(k.Size, 10) + "\x00" +
		strconv.FormatInt(k.ModTime.UnixNano(), 10) + "\x00" + k.SHA256
}

// LedgerOutcome is what became of a file.
type LedgerOutcome string

const (
	// OutcomeDone: the handler succeeded and the after action was chosen.
	OutcomeDone LedgerOutcome = "done"
	// OutcomeFailed: the file was moved to failed/.
	OutcomeFailed LedgerOutcome = "failed"
	// OutcomeRetrying: the handler asked for a retry; Attempts runs have
	// been made. Unlike the two outcomes above it does not finish the
	// file: after a restart the next attempt is numbered Attempts+1, so
	// retries stop at the trigger's maximum instead of starting over.
	OutcomeRetrying LedgerOutcome = "retrying"
)

// Finished reports whether the outcome ends the file's handling.
func (o LedgerOutcome) Finished() bool { return o == OutcomeDone || o == OutcomeFailed }

// LedgerEntry is one ledger record.
type LedgerEntry struct {
	Key     LedgerKey
	Outcome LedgerOutcome
	// Attempts is the number of handler runs so far, for OutcomeRetrying
	// (0 in records written before mailbot kept it).
	Attempts int
	At       time.Time // when it was recorded
}

// ErrLedgerCorrupt is wrapped by OpenLedger when a line other than the last
// cannot be parsed. A torn last line is the normal trace of a crash during
// an append and is ignored instead.
var ErrLedgerCorrupt = errors.New("engine: ledger corrupt")

// DefaultLedgerRetention is used when LedgerOptions.Retention is 0.
const DefaultLedgerRetention = 30 * 24 * time.Hour

// LedgerOptions configures OpenLedger. The zero value is usable.
type LedgerOptions struct {
	// Retention: at compaction, an entry older than this is dropped unless
	// its file is still present unchanged (same path, size and mtime).
	// 0 means DefaultLedgerRetention.
	Retention time.Duration
	// Clock stamps entries and judges retention; nil means RealClock().
	Clock Clock
}

// Ledger records which file versions were processed, so that each is
// handled exactly once across restarts. It is safe for concurrent use.
// Each file trigger should have its own ledger file: the same file matched
// by two triggers is two pieces of work.
type Ledger struct {
	path  string
	opts  LedgerOptions
	clock Clock

	mu      sync.Mutex
	f       *os.File // append handle; nil after Close
	entries map[string]LedgerEntry
}

type ledgerLine struct {
	Path    string        `json:"path"`
	Size    int64         `json:"size"`
	MTimeNS int64         `json:"mtime_ns"`
	SHA256  string        `json:"sha256"`
	Outcome LedgerOutcome `json:"outcome"`
	// Attempts is written for OutcomeRetrying only.
	Attempts int       `json:"attempts,omitempty"`
	At       time.Time `json:"at"`
}

func (e LedgerEntry) line() ledgerLine {
	return ledgerLine{Path: e.Key.Path, Size: e.Key.Size, MTimeNS: e.Key.ModTime.UnixNano(),
		SHA256: e.Key.SHA256, Outcome: e.Outcome, Attempts: e.Attempts, At: e.At}
}

func (l ledgerLine) entry() LedgerEntry {
	return LedgerEntry{
		Key:      LedgerKey{Path: l.Path, Size: l.Size, ModTime: time.Unix(0, l.MTimeNS), SHA256: l.SHA256},
		Outcome:  l.Outcome,
		Attempts: l.Attempts,
		At:       l.At,
	}
}

// OpenLedger loads the ledger at path (creating it and its directory if
// needed), compacts it and opens it for appending.
func OpenLedger(path string, opts LedgerOptions) (*Ledger, error) {
	if opts.Retention <= 0 {
		opts.Retention = DefaultLedgerRetention
	}
	l := &Ledger{path: path, opts: opts, clock: opts.Clock, entries: make(map[string]LedgerEntry)}
	if l.clock == nil {
		l.clock = RealClock()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("engine: open ledger: %w", err)
	}
	if err := l.load(); err != nil {
		return nil, err
	}
	if err := l.compactLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Ledger) load() error {
	data, err := os.ReadFile(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("engine: read ledger: %w", err)
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, raw := range lines {
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		var ln ledgerLine
		if err := json.Unmarshal(raw, &ln); err != nil || ln.Path == "" || ln.Outcome == "" {
			if i == len(lines)-1 {
				// No trailing newline: the append was cut short by a crash.
				break
			}
			return fmt.Errorf("%w: %s line %d", ErrLedgerCorrupt, l.path, i+1)
		}
		e := ln.entry()
		l.entries[e.Key.id()] = e
	}
	return nil
}

// Seen reports whether k has been recorded with a finished outcome (done
// or failed); a file still being retried is not seen.
func (l *Ledger) Seen(k LedgerKey) bool {
	e, ok := l.Lookup(k)
	return ok && e.Outcome.Finished()
}

// Lookup returns the entry recorded for k.
func (l *Ledger) Lookup(k LedgerKey) (LedgerEntry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.entries[k.id()]
	return e, ok
}

// Len returns the number of entries held.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// Record durably notes that k ended with outcome; it returns after the
// record has been fsynced.
func (l *Ledger) Record(k LedgerKey, outcome LedgerOutcome) error {
	if outcome == OutcomeRetrying {
		return errors.New("engine: ledger: record retries with RecordAttempts")
	}
	return l.record(k, outcome, 0)
}

// RecordAttempts durably notes that k has had attempts handler runs and
// will be retried (OutcomeRetrying); it returns after the record has been
// fsynced.
func (l *Ledger) RecordAttempts(k LedgerKey, attempts int) error {
	if attempts <= 0 {
		return errors.New("engine: ledger: attempts must be positive")
	}
	return l.record(k, OutcomeRetrying, attempts)
}

func (l *Ledger) record(k LedgerKey, outcome LedgerOutcome, attempts int) error {
	if k.Path == "" || outcome == "" {
		return errors.New("engine: ledger record needs a path and an outcome")
	}
	e := LedgerEntry{Key: k, Outcome: outcome, Attempts: attempts, At: l.clock.Now().UTC()}
	b, err := json.Marshal(e.line())
	if err != nil {
		return fmt.Errorf("engine: encode ledger record: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("engine: ledger closed")
	}
	if _, err := l.f.Write(b); err != nil {
		return fmt.Errorf("engine: append ledger %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("engine: sync ledger %s: %w", l.path, err)
	}
	l.entries[k.id()] = e
	return nil
}

// Compact rewrites the ledger with one line per key, dropping entries older
// than the retention whose file is no longer present unchanged.
func (l *Ledger) Compact() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("engine: ledger closed")
	}
	return l.compactLocked()
}

func (l *Ledger) compactLocked() error {
	cutoff := l.clock.Now().Add(-l.opts.Retention)
	keep := make([]LedgerEntry, 0, len(l.entries))
	for id, e := range l.entries {
		if e.At.Before(cutoff) && !stillPresent(e.Key) {
			delete(l.entries, id)
			continue
		}
		keep = append(keep, e)
	}
	// Stable order keeps the file diffable and the output deterministic.
	sort.Slice(keep, func(i, j int) bool {
		if !keep[i].At.Equal(keep[j].At) {
			return keep[i].At.Before(keep[j].At)
		}
		return keep[i].Key.id() < keep[j].Key.id()
	})
	var buf bytes.Buffer
	for _, e := range keep {
		b, err := json.Marshal(e.line())
		if err != nil {
			return fmt.Errorf("engine: encode ledger record: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if err := writeFileAtomic(l.path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("engine: compact ledger: %w", err)
	}
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("engine: open ledger: %w", err)
	}
	l.f = f
	return nil
}

func stillPresent(k LedgerKey) bool {
	fi, err := os.Stat(k.Path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() == k.Size && fi.ModTime().Equal(k.ModTime)
}

// Close closes the ledger file. It is safe to call more than once.
func (l *Ledger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("engine: close ledger: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data so that a reader or a crash sees
// either the old or the new content, never a mix: write a temp file in the
// same directory, fsync it, rename it over path, fsync the directory so the
// rename itself is durable.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod temp file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write temp file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync temp file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close temp file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename temp file: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}
