package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailbot/mailbot/luabind"
)

// RunsDir is the folder in state_dir holding each script's last run
// outcomes, one <script>.json per script mapping trigger IDs to RunOutcome.
// A file per script lets a process that holds the script's lock
// (ScriptLock) rewrite it without clobbering another script's records.
const RunsDir = "runs"

// Outcomes of a run, as RunOutcome.Outcome spells them.
const (
	RunOK      = "ok"
	RunError   = "error"
	RunTimeout = "timeout"
	RunMemory  = "memory" // the Lua state hit its stack or registry limit
)

// maxOutcomeError bounds the error text kept per trigger.
const maxOutcomeError = 4000

// RunOutcome is what became of a trigger's last run, kept across restarts
// for "mailbot triggers" and status pages.
type RunOutcome struct {
	// At is when the run started.
	At time.Time `json:"at"`
	// Outcome is RunOK, RunError, RunTimeout or RunMemory.
	Outcome string `json:"outcome"`
	// DurationMS is how long the handler ran, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Error is the handler's error, as logged; empty when it succeeded.
	Error string `json:"error,omitempty"`
	// Fired is true for a run made by "mailbot fire".
	Fired bool `json:"fired,omitempty"`
}

// ReadRunOutcomes returns the last outcome of each trigger of the named
// script (file name, with or without ".lua"), by trigger ID, as recorded
// in stateDir. It only reads: a missing file gives an empty map.
func ReadRunOutcomes(stateDir, script string) (map[string]RunOutcome, error) {
	out := map[string]RunOutcome{}
	if err := readJSONFile(runsPath(stateDir, script), &out); err != nil {
		return nil, fmt.Errorf("engine: run outcomes of %s: %w", script, err)
	}
	if out == nil {
		out = map[string]RunOutcome{}
	}
	return out, nil
}

func runsPath(stateDir, script string) string {
	return filepath.Join(stateDir, RunsDir, strings.TrimSuffix(filepath.Base(script), ".lua")+".json")
}

// writeRunOutcome records o as the last outcome of trigger id. The caller
// holds the script's lock, so the read-modify-write races with nobody.
func writeRunOutcome(stateDir, script, id string, o RunOutcome) error {
	all, err := ReadRunOutcomes(stateDir, script)
	if err != nil {
		all = map[string]RunOutcome{} // a damaged file is replaced
	}
	all[id] = o
	if err := os.MkdirAll(filepath.Join(stateDir, RunsDir), 0o700); err != nil {
		return fmt.Errorf("engine: run outcomes: %w", err)
	}
	data, err := jsonIndent(all)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(runsPath(stateDir, script), data, 0o600); err != nil {
		return fmt.Errorf("engine: save run outcome of %s: %w", id, err)
	}
	return nil
}

// classifyRun names the outcome of a run that ended with err under ctx.
func classifyRun(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return RunOK
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return RunTimeout
	}
	msg := err.Error()
	if strings.Contains(msg, "registry overflow") || strings.Contains(msg, "stack overflow") {
		return RunMemory
	}
	return RunError
}

// recordOutcome persists the outcome of a run of t that started at start.
func (e *Engine) recordOutcome(t *trigger, start time.Time, ctx context.Context, err error) {
	if !e.lockRuns && !e.firing {
		return // checking or listing: nothing runs for real
	}
	o := RunOutcome{
		At:         start.UTC(),
		Outcome:    classifyRun(ctx, err),
		DurationMS: time.Since(start).Milliseconds(),
		Fired:      e.firing,
	}
	if err != nil {
		o.Error = luabind.DescribeError(err)
		if len(o.Error) > maxOutcomeError {
			o.Error = o.Error[:maxOutcomeError] + "…"
		}
	}
	if werr := writeRunOutcome(e.cfg.StateDir, t.s.name, t.ID(), o); werr != nil {
		e.log.Error("recording run outcome", "script", t.s.name, "trigger", t.ID(), "error", werr)
	}
}
