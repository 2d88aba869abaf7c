package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"
)

// StateStore backs mailbot.state: a key/value map per script, kept in
// <state_dir>/state/<script>.json, plus the last-run times used for
// schedule catch-up in <state_dir>/state/.lastrun.json. Every file is
// replaced atomically (temp file, fsync, rename, fsync dir), so a crash
// leaves either the previous or the new content. It is safe for concurrent
// use.
type StateStore struct {
	dir string

	mu      sync.Mutex
	scripts map[string]*ScriptState
	lastRun map[string]time.Time
	lrMu    sync.Mutex // serialises last-run file writes
}

// lastRunFile starts with a dot so it can never collide with a script's
// file: script names may not start with one.
const lastRunFile = ".lastrun.json"

var scriptNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// StateValueError reports a value that cannot be stored because it has no
// JSON form (a function, NaN, a map with non-string keys...).
type StateValueError struct {
	Script, Key string
	Err         error
}

// Error implements error.
func (e *StateValueError) Error() string {
	return fmt.Sprintf("engine: state %s: key %q: %v", e.Script, e.Key, e.Err)
}

// Unwrap returns the underlying cause.
func (e *StateValueError) Unwrap() error { return e.Err }

// OpenStateStore opens (creating if needed) <stateDir>/state and loads the
// last-run times. Script states are loaded on first use.
func OpenStateStore(stateDir string) (*StateStore, error) {
	dir := filepath.Join(stateDir, "state")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("engine: open state store: %w", err)
	}
	s := &StateStore{dir: dir, scripts: make(map[string]*ScriptState), lastRun: make(map[string]time.Time)}
	if err := readJSONFile(filepath.Join(dir, lastRunFile), &s.lastRun); err != nil {
		return nil, fmt.Errorf("engine: load last-run times: %w", err)
	}
	return s, nil
}

// Dir returns the directory holding the state files.
func (s *StateStore) Dir() string { return s.dir }

// Script returns the state of the named script, loading it from disk on
// first use. Names are file-name safe: letters, digits, '_', '.', '-', not
// starting with '.' or '-'.
func (s *StateStore) Script(name string) (*ScriptState, error) {
	if !scriptNameRE.MatchString(name) {
		return nil, fmt.Errorf("engine: state: invalid script name %q", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.scripts[name]; ok {
		return st, nil
	}
	st := &ScriptState{name: name, path: filepath.Join(s.dir, name+".json"), values: make(map[string]any)}
	if err := readJSONFile(st.path, &st.values); err != nil {
		return nil, fmt.Errorf("engine: load state of %s: %w", name, err)
	}
	if st.values == nil { // the file held JSON null
		st.values = make(map[string]any)
	}
	st.disk, _ = os.Stat(st.path)
	s.scripts[name] = st
	return st, nil
}

// Flush writes every script state with unsaved changes.
func (s *StateStore) Flush() error {
	s.mu.Lock()
	all := make([]*ScriptState, 0, len(s.scripts))
	for _, st := range s.scripts {
		all = append(all, st)
	}
	s.mu.Unlock()
	var errs []error
	for _, st := range all {
		if err := st.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// LastRun returns when the trigger last ran, as stored by SetLastRun.
func (s *StateStore) LastRun(triggerID string) (time.Time, bool) {
	s.lrMu.Lock()
	defer s.lrMu.Unlock()
	t, ok := s.lastRun[triggerID]
	return t, ok
}

// SetLastRun durably records that the trigger ran at t. It writes through,
// since a lost last-run time means a missed catch-up.
func (s *StateStore) SetLastRun(triggerID string, t time.Time) error {
	s.lrMu.Lock()
	defer s.lrMu.Unlock()
	prev, had := s.lastRun[triggerID]
	s.lastRun[triggerID] = t.UTC()
	data, err := json.MarshalIndent(s.lastRun, "", "  ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(s.dir, lastRunFile), append(data, '\n'), 0o600)
	}
	if err != nil {
		if had {
			s.lastRun[triggerID] = prev
		} else {
			delete(s.lastRun, triggerID)
		}
		return fmt.Errorf("engine: save last run of %s: %w", triggerID, err)
	}
	return nil
}

// ScriptState is one script's key/value map. Values are JSON values as
// decoded by encoding/json: nil, bool, float64, string, []any and
// map[string]any. Changes are kept in memory until Flush.
type ScriptState struct {
	name, path string

	mu      sync.Mutex
	values  map[string]any
	version uint64 // bumped on each change
	saved   uint64 // version last written

	flushMu sync.Mutex  // one writer at a time, so an older snapshot never lands last
	disk    os.FileInfo // the file as last read or written here; nil: none
}

// Get returns a deep copy of the value stored under key.
func (st *ScriptState) Get(key string) (any, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	v, ok := st.values[key]
	if !ok {
		return nil, false
	}
	return deepCopyJSON(v), true
}

// Set stores value under key. The value is normalised through its JSON form
// (so integers become float64, structs become maps) and copied, so later
// changes by the caller do not leak in. A value without a JSON form is
// rejected with a *StateValueError. Setting nil deletes the key, as
// assigning nil to a Lua table field does.
func (st *ScriptState) Set(key string, value any) error {
	if value == nil {
		st.Delete(key)
		return nil
	}
	norm, err := normaliseJSON(value)
	if err != nil {
		return &StateValueError{Script: st.name, Key: key, Err: err}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.values[key] = norm
	st.version++
	return nil
}

// Delete removes key.
func (st *ScriptState) Delete(key string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.values[key]; ok {
		delete(st.values, key)
		st.version++
	}
}

// All returns a deep copy of every key and value.
func (st *ScriptState) All() map[string]any {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make(map[string]any, len(st.values))
	for k, v := range st.values {
		out[k] = deepCopyJSON(v)
	}
	return out
}

// Keys returns the keys in sorted order.
func (st *ScriptState) Keys() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	keys := make([]string, 0, len(st.values))
	for k := range st.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Flush writes the state to disk atomically if it changed since the last
// Flush.
func (st *ScriptState) Flush() error {
	st.flushMu.Lock()
	defer st.flushMu.Unlock()
	st.mu.Lock()
	if st.version == st.saved {
		st.mu.Unlock()
		return nil
	}
	version := st.version
	data, err := json.MarshalIndent(st.values, "", "  ")
	st.mu.Unlock()
	if err != nil {
		return fmt.Errorf("engine: encode state of %s: %w", st.name, err)
	}
	if err := writeFileAtomic(st.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("engine: save state of %s: %w", st.name, err)
	}
	st.mu.Lock()
	st.saved = version
	st.disk, _ = os.Stat(st.path)
	st.mu.Unlock()
	return nil
}

// Refresh re-reads the state from disk when another process ("mailbot
// fire") replaced the file since this one last read or wrote it, so that
// the next run sees that process's changes instead of overwriting them.
// Changes not flushed yet win: the file is then left alone.
func (st *ScriptState) Refresh() error {
	st.flushMu.Lock()
	defer st.flushMu.Unlock()
	fi, err := os.Stat(st.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("engine: state of %s: %w", st.name, err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.version != st.saved {
		return nil
	}
	if st.disk != nil && os.SameFile(st.disk, fi) && st.disk.ModTime().Equal(fi.ModTime()) && st.disk.Size() == fi.Size() {
		return nil
	}
	values := make(map[string]any)
	if err := readJSONFile(st.path, &values); err != nil {
		return fmt.Errorf("engine: reload state of %s: %w", st.name, err)
	}
	if values == nil {
		values = make(map[string]any)
	}
	st.values, st.disk = values, fi
	return nil
}

// readJSONFile decodes path into v; a missing file leaves v unchanged.
func readJSONFile(path string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// normaliseJSON returns v's JSON round trip. Float NaN and infinities are
// checked first to give a clearer error than the encoder's.
func normaliseJSON(v any) (any, error) {
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return nil, fmt.Errorf("number %v has no JSON form", f)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("not JSON-encodable: %w", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("not JSON-encodable: %w", err)
	}
	return out, nil
}

// deepCopyJSON copies a decoded JSON value so callers cannot mutate the
// store through a returned map or slice.
func deepCopyJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopyJSON(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopyJSON(e)
		}
		return s
	default:
		return v
	}
}
