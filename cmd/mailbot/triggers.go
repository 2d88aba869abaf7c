package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/luabind"
)

const triggersDesc = `Lists every trigger the scripts in scripts_dir register, loading them the
way "mailbot check" does (nothing starts, no mail can be sent):

  ID            <script>#<name> when the registration gave name = "...",
                else <script>#<n>, n counting the script's registrations
                from 1 (both forms work with "mailbot fire")
  KIND          file, every, cron or start
  SPEC          drop folder and pattern, interval, or cron spec (time zone)
  NEXT RUN      the next activation of a schedule
  LAST RUN      when the handler last started, under "mailbot run" or
                "mailbot fire"
  LAST OUTCOME  ok, error, timeout or memory, with the run's duration

Last runs and outcomes are read from state_dir, which is not written.
--json prints an array of objects with the fields id, script, kind, spec,
next_run, last_run (RFC 3339 or null), last_outcome, last_duration_ms
(or null) and last_error.

Exit status 0; 1 when a script fails to load (the others are listed);
2 for an invalid config file.`

// cmdTriggers implements "mailbot triggers".
func (m *Main) cmdTriggers(_ context.Context, args []string) int {
	fs := m.newFlagSet("triggers", "[-c mailbot.yaml] [--json]", triggersDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	cfg, status, ok := m.flagsAndConfig(fs, args, cfgFlag)
	if !ok {
		return status
	}
	ecfg, err := listingEngineConfig(cfg, m.lookupEnv)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot triggers: %v\n", err)
		return exitConfig
	}
	list, errs := engine.ListTriggers(ecfg, time.Now().Truncate(time.Second))
	if *asJSON {
		if list == nil {
			list = []engine.TriggerInfo{}
		}
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			fmt.Fprintf(m.Stderr, "mailbot triggers: %v\n", err)
			return exitFailure
		}
	} else {
		printTriggers(m.Stdout, list, ecfg.Location)
	}
	for _, err := range errs {
		fmt.Fprintf(m.Stderr, "mailbot triggers: %s\n", firstLine(luabind.DescribeError(err)))
	}
	if len(errs) > 0 {
		return exitFailure
	}
	return exitOK
}

// listingEngineConfig is the engine config that loads scripts without
// accounts or outbox, as "mailbot check" does, reading the real state_dir.
func listingEngineConfig(cfg *Config, getenv func(string) (string, bool)) (engine.Config, error) {
	lopts := luabind.Options{Getenv: getenv, Logger: slog.New(slog.DiscardHandler)}
	cfg.applySandbox(&lopts)
	// Top-level code may sql.open a database (which connects to nothing
	// by itself); the listing process exits soon after, pools with it.
	lopts.SQL = cfg.sqlSet(getenv)
	cfg.applyHTTPClient(&lopts)
	ecfg := engine.Config{
		ScriptsDir: cfg.Resolve(cfg.ScriptsDir),
		StateDir:   cfg.Resolve(cfg.StateDir),
		RunTimeout: cfg.RunTimeout,
		Location:   time.Local,
		Lua:        lopts,
	}
	if cfg.Timezone != "" {
		loc, err := time.LoadLocation(cfg.Timezone)
		if err != nil {
			return ecfg, fmt.Errorf("timezone: %w", err)
		}
		ecfg.Location = loc
	}
	return ecfg, nil
}

// printTriggers writes the table of "mailbot triggers".
func printTriggers(w io.Writer, list []engine.TriggerInfo, loc *time.Location) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no triggers registered")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tSPEC\tNEXT RUN\tLAST RUN\tLAST OUTCOME")
	for _, t := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, orDash(t.Spec),
			showTime(t.NextRun, nil), showTime(t.LastRun, loc), showOutcome(t))
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// showTime formats a time in loc (nil: its own zone), "-" for none.
func showTime(t *time.Time, loc *time.Location) string {
	if t == nil {
		return "-"
	}
	v := *t
	if loc != nil {
		v = v.In(loc)
	}
	return v.Format("2006-01-02 15:04:05 MST")
}

// showOutcome is "ok (12ms)" or "error (3ms): first line of the error".
func showOutcome(t engine.TriggerInfo) string {
	if t.LastOutcome == "" {
		return "-"
	}
	s := t.LastOutcome
	switch {
	case t.LastDurationMS == nil:
	case *t.LastDurationMS == 0:
		s += " (<1ms)"
	default:
		s += " (" + (time.Duration(*t.LastDurationMS) * time.Millisecond).String() + ")"
	}
	if t.LastError != "" {
		msg := firstLine(t.LastError)
		if r := []rune(msg); len(r) > 80 {
			msg = string(r[:79]) + "…"
		}
		s += ": " + strings.TrimSpace(msg)
	}
	return s
}
