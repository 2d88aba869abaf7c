package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Trigger IDs name one registration of one script: "<script>#<n>", n
// counting the script's mailbot.on_file, every, cron, on_start,
// on_dead_letter and on_run_failed calls
// from 1 in the order its top-level code made them, or "<script>#<name>"
// when the registration gave a name option. <script> is the file name
// without ".lua"; "daily-report.lua#1" is accepted too. The number form
// works for a named trigger as well.

// triggerNameRE is what a name option may hold.
var triggerNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// triggerKinds maps a registrar to the kind "mailbot triggers" shows.
var triggerKinds = map[string]string{"on_file": "file", "every": "every", "cron": "cron", "on_start": "start",
	"on_dead_letter": "dead_letter", "on_run_failed": "run_failed"}

// ID returns the trigger's ID: "<script>#<name>", else "<script>#<n>".
func (t *trigger) ID() string {
	base := strings.TrimSuffix(t.s.name, ".lua")
	if t.name != "" {
		return base + "#" + t.name
	}
	return base + "#" + strconv.Itoa(t.n)
}

// register numbers a registration.
func (s *script) register(t *trigger) {
	s.all = append(s.all, t)
	t.n = len(s.all)
}

// nameOpt reads and validates a registration's name option.
func (s *script) nameOpt(L *lua.LState, opts *lua.LTable, fn string) string {
	v := L.GetField(opts, "name")
	if v == lua.LNil {
		return ""
	}
	str, ok := v.(lua.LString)
	name := string(str)
	if !ok || !triggerNameRE.MatchString(name) {
		L.RaiseError("mailbot.%s: name must be a string of letters, digits, '_', '.' and '-', e.g. name = \"daily\"", fn)
	}
	if strings.Trim(name, "0123456789") == "" {
		L.RaiseError("mailbot.%s: name %q is a number: it would read as the trigger's position (#%s); use a word", fn, name, name)
	}
	if s.names == nil {
		s.names = map[string]bool{}
	}
	if s.names[name] {
		L.RaiseError("mailbot.%s: name %q is already taken by another trigger of this script (names are unique within a script)", fn, name)
	}
	s.names[name] = true
	return name
}

// ParseTriggerID splits "<script>#<n>" or "<script>#<name>" into the
// script's file name ("daily-report.lua") and the part after '#'.
func ParseTriggerID(id string) (script, which string, err error) {
	script, which, ok := strings.Cut(id, "#")
	if !ok || script == "" || which == "" {
		return "", "", fmt.Errorf("trigger ID %q: want <script>#<n> or <script>#<name>, e.g. daily-report#1 (see mailbot triggers)", id)
	}
	if !strings.HasSuffix(script, ".lua") {
		script += ".lua"
	}
	if strings.ContainsAny(script, `/\`) || !scriptNameRE.MatchString(strings.TrimSuffix(script, ".lua")) {
		return "", "", fmt.Errorf("trigger ID %q: %q is not a script name", id, script)
	}
	return script, which, nil
}

// find returns the script's trigger for the part of an ID after '#'.
func (s *script) find(which string) (*trigger, error) {
	if n, err := strconv.Atoi(which); err == nil {
		if n < 1 || n > len(s.all) {
			return nil, fmt.Errorf("%w: %s has %d trigger(s), so #%d does not exist (see mailbot triggers)", ErrUnknownTrigger, s.name, len(s.all), n)
		}
		return s.all[n-1], nil
	}
	var names []string
	for _, t := range s.all {
		if t.name == which {
			return t, nil
		}
		if t.name != "" {
			names = append(names, t.name)
		}
	}
	known := "it names none of its triggers"
	if len(names) > 0 {
		known = "its named triggers: " + strings.Join(names, ", ")
	}
	return nil, fmt.Errorf("%w: %s has no trigger named %q (%s; #1..#%d work too)", ErrUnknownTrigger, s.name, which, known, len(s.all))
}

// ErrUnknownTrigger is wrapped by Fire when the ID names no registration.
var ErrUnknownTrigger = errors.New("unknown trigger")

// TriggerInfo describes one registered trigger, for "mailbot triggers".
// The JSON field names are stable.
type TriggerInfo struct {
	// ID is "<script>#<name>" or "<script>#<n>".
	ID string `json:"id"`
	// Script is the script's file name.
	Script string `json:"script"`
	// Kind is "file", "every", "cron", "start", "dead_letter" or
	// "run_failed".
	Kind string `json:"kind"`
	// Spec is the drop folder and pattern of a file trigger, the interval
	// of every, the cron spec with its time zone; "" for start.
	Spec string `json:"spec"`
	// NextRun is the next activation of a schedule; nil for file and start
	// triggers. For every, it counts from the last run when that is known.
	NextRun *time.Time `json:"next_run"`
	// LastRun is when the trigger's handler last started; nil if never.
	LastRun *time.Time `json:"last_run"`
	// LastOutcome is "ok", "error", "timeout" or "memory"; "" if never run.
	LastOutcome string `json:"last_outcome"`
	// LastDurationMS is the last run's duration; nil if never run.
	LastDurationMS *int64 `json:"last_duration_ms"`
	// LastError is the last run's error; "" when it succeeded.
	LastError string `json:"last_error"`
}

// info describes t, with its persisted marks.
func (t *trigger) info(now time.Time, marks map[string]time.Time, outcomes map[string]RunOutcome) TriggerInfo {
	ti := TriggerInfo{ID: t.ID(), Script: t.s.name, Kind: triggerKinds[t.kind], Spec: t.spec}
	var last time.Time
	if t.sched != nil {
		last = marks[t.sched.key]
	}
	if o, ok := outcomes[t.ID()]; ok {
		last = o.At
		ti.LastOutcome, ti.LastError = o.Outcome, o.Error
		d := o.DurationMS
		ti.LastDurationMS = &d
	}
	if !last.IsZero() {
		l := last
		ti.LastRun = &l
	}
	if t.sched != nil {
		next := t.sched.sched.Next(now)
		if ev, ok := t.sched.sched.(Every); ok {
			if m, ok := marks[t.sched.key]; ok {
				// The daemon counts intervals from its last activation.
				if n := ev.Next(m); n.After(now) {
					next = n
				}
			}
		}
		if !next.IsZero() {
			next = next.In(t.loc)
			ti.NextRun = &next
		}
	}
	return ti
}

// ListTriggers loads every script in cfg.ScriptsDir the way CheckScript
// does (nothing starts, no mail can be sent, state goes to a temporary
// folder) and describes each registration, in script name and
// registration order, with the last runs and outcomes recorded in
// cfg.StateDir, which it only reads. Scripts that fail to load are
// returned as errors, each naming its file.
func ListTriggers(cfg Config, now time.Time) ([]TriggerInfo, []error) {
	stateDir := cfg.StateDir
	e, cleanup, err := newCheckEngine(cfg)
	if err != nil {
		return nil, []error{err}
	}
	defer cleanup()
	if stateDir == "" {
		stateDir = filepath.Join(e.cfg.ScriptsDir, ".mailbot-state")
	}
	marks := map[string]time.Time{}
	var errs []error
	if err := readJSONFile(filepath.Join(stateDir, "state", lastRunFile), &marks); err != nil {
		errs = append(errs, fmt.Errorf("engine: last-run times: %w", err))
	}
	names, err := filepath.Glob(filepath.Join(e.cfg.ScriptsDir, "*.lua"))
	if err != nil {
		return nil, append(errs, fmt.Errorf("engine: listing scripts: %w", err))
	}
	sort.Strings(names)
	var out []TriggerInfo
	for _, p := range names {
		if !isScript(p) {
			continue
		}
		s, err := e.newScript(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(p), err))
			continue
		}
		outcomes, err := ReadRunOutcomes(stateDir, s.name)
		if err != nil {
			errs = append(errs, err)
		}
		for _, t := range s.all {
			out = append(out, t.info(now, marks, outcomes))
		}
		s.close()
	}
	return out, errs
}

// ParseFireTime reads the --at time of "mailbot fire": RFC 3339
// ("2026-12-07T08:00:00+01:00"), or a local date and time in loc
// ("2026-12-07 08:00", "2026-12-07 08:00:05", "2026-12-07T08:00").
func ParseFireTime(s string, loc *time.Location) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if loc == nil {
		loc = time.Local
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-12-07T08:00:00+01:00) or \"2026-12-07 08:00\" in the trigger's time zone (%s)", s, loc)
}

func jsonIndent(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("engine: encode: %w", err)
	}
	return append(data, '\n'), nil
}

// fileEvent is the event table of a file handed to an on_file handler.
func fileEvent(rf ReadyFile) map[string]lua.LValue {
	op := "create"
	if rf.Op.Has(OpWrite) && !rf.Op.Has(OpCreate) {
		op = "write"
	}
	return map[string]lua.LValue{
		"path": lua.LString(rf.Path), "name": lua.LString(rf.Name), "dir": lua.LString(rf.Dir),
		"op": lua.LString(op), "size": lua.LNumber(rf.Size), "mtime": lua.LNumber(rf.ModTime.Unix()),
		"sha256": lua.LString(rf.SHA256), "attempt": lua.LNumber(rf.Attempt), "existing": lua.LBool(rf.Existing),
	}
}

// statFile describes the file at path for a fired file trigger.
func statFile(path string) (os.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return fi, nil
}
