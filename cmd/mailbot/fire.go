package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/outbox"
)

const fireDesc = `Runs one trigger's handler once, now, with the event it would get under
"mailbot run", and exits with the outcome. ID is <script>#<n> or
<script>#<name>, as "mailbot triggers" lists them. The script is loaded
as a daemon's reload would (its top-level code runs), with the accounts,
sandbox and outbox of the config.

  file trigger   --file PATH is required: a file in the trigger's folder
                 whose name matches its pattern. ev.path and the rest are
                 set as for a dropped file; afterwards the trigger's after
                 action (or the move to failed/) is done and the ledger
                 records the file, as in the daemon.
  every, cron    ev.scheduled_at is --at TIME: RFC 3339, or
                 "2026-12-07 08:00" in the trigger's time zone; default now.
  start          no event fields.

The event also has fired = true. The run's outcome is recorded for
"mailbot triggers"; a schedule's catch-up mark is not changed.

With a daemon running: fire takes the script's lock (state_dir/locks), which
the daemon takes around each run of that script, so runs never overlap;
fire waits up to --wait for a run in progress, then gives up. A file
trigger cannot be fired for real while a daemon runs (the daemon owns the
ledger and handles the files in its folders itself): use --dry-run, or stop
the daemon.

Mail queued with mail.send is delivered before fire exits, as
"exec --deliver" does, unless a daemon is running: then the daemon's outbox
delivery sends it. A refusal then exits with its stage's status (below).

With --dry-run nothing leaves the machine and nothing real is written: SMTP
goes to a local capture server whose messages land in the dry-run folder
(default <state_dir>/dry-run) as .eml and .transcript files, state is
written to a copy inside that folder, and a file trigger's file is not
moved (what would become of it is printed).

` + exitStatusHelp

// cmdFire implements "mailbot fire".
func (m *Main) cmdFire(ctx context.Context, args []string) int {
	fs := m.newFlagSet("fire", "[-c mailbot.yaml] [--dry-run [DIR]] [--file PATH] [--at TIME] [--wait 5m] ID", fireDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	var dry dryRunFlag
	fs.Var(&dry, "dry-run", "capture messages into a folder and write no real state")
	file := fs.String("file", "", "the file handed to a file trigger")
	at := fs.String("at", "", `the scheduled time handed to a schedule (RFC 3339, or "2026-12-07 08:00" in the trigger's time zone; default now)`)
	wait := fs.Duration("wait", engine.DefaultFireLockWait, "how long to wait for a run of the same script in progress")
	// Trigger IDs always hold '#', dry-run folders never need to.
	args = splitDryRunArg(args, func(next string) bool { return !strings.Contains(next, "#") })
	pos, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return status
	}
	switch {
	case len(pos) == 0:
		return m.usageError(fs, "missing the trigger ID (see mailbot triggers)")
	case len(pos) > 1:
		return m.usageError(fs, "unexpected argument %q", pos[1])
	}
	cfg, status, ok := m.loadConfig(m.configPath(*cfgFlag, "mailbot.yaml"))
	if !ok {
		return status
	}
	logger, err := m.newLogger(cfg)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot fire: %v\n", err)
		return exitConfig
	}
	env, err := m.prepareScripts(cfg, logger, &dry, true)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot fire: %v\n", err)
		return exitFailure
	}
	defer env.Close()

	ecfg, err := fireEngineConfig(cfg, env)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot fire: %v\n", err)
		return exitFailure
	}
	res, err := engine.Fire(ctx, ecfg, engine.FireRequest{
		ID: pos[0], File: *file, At: *at, DryRun: env.capture != nil, LockWait: *wait,
	}, engine.WithLogger(logger))
	if err != nil && res == nil {
		fmt.Fprintf(m.Stderr, "mailbot fire: %s\n", firstLine(luabind.DescribeError(err)))
		return exitFailure
	}
	m.reportFire(res)
	code := exitOK
	switch {
	case res.Err != nil && res.Outcome == engine.RunTimeout:
		code = exitDisconnect
	case res.Err != nil:
		fmt.Fprintf(m.Stderr, "mailbot fire: %s\n", luabind.DescribeError(res.Err))
		code = exitForScriptError(res.Err)
	case err != nil: // the handler succeeded, finishing its file did not
		fmt.Fprintf(m.Stderr, "mailbot fire: %v\n", err)
		code = exitFailure
	}
	if res.Err == nil && env.outbox != nil {
		if c := m.fireDeliver(ctx, env, cfg.Resolve(cfg.StateDir), logger); code == exitOK {
			code = c
		}
	}
	if cerr := env.Close(); cerr != nil {
		fmt.Fprintf(m.Stderr, "mailbot fire: %v\n", cerr)
		if code == exitOK {
			code = exitFailure
		}
	}
	if env.capture != nil {
		logger.Info("dry run finished", "messages", env.capture.Count(), "dir", env.capture.dir)
	}
	return code
}

// reportFire prints what the fired run did, one line each.
func (m *Main) reportFire(res *engine.FireResult) {
	t := res.Trigger
	line := fmt.Sprintf("%s (%s %s)", t.ID, t.Kind, t.Spec)
	if t.Spec == "" {
		line = fmt.Sprintf("%s (%s)", t.ID, t.Kind)
	}
	if !res.ScheduledAt.IsZero() {
		line += " scheduled at " + res.ScheduledAt.Format(time.RFC3339)
	}
	fmt.Fprintf(m.Stdout, "%s: %s in %v\n", line, res.Outcome, res.Duration.Round(time.Millisecond))
	if res.File != nil && res.File.Action != "" {
		fmt.Fprintf(m.Stdout, "file: %s %s\n", res.File.Action, res.File.Path)
	}
}

// fireDeliver delivers what the run queued with mail.send, as exec
// --deliver does, unless a daemon holds state_dir: its outbox delivery then
// sends the messages. A dry run's outbox is always delivered, to the
// capture server.
func (m *Main) fireDeliver(ctx context.Context, env *scriptEnv, stateDir string, logger *slog.Logger) int {
	st, err := env.outbox.Stats()
	if err != nil || st.Queued == 0 {
		return exitOK
	}
	if env.capture == nil {
		lock, err := engine.LockStateDir(stateDir)
		var inUse *engine.StateDirInUseError
		if errors.As(err, &inUse) {
			logger.Info("messages queued by mail.send are left to the running daemon", "queued", st.Queued, "daemon_pid", inUse.PID)
			return exitOK
		}
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot fire: %v\n", err)
			return exitFailure
		}
		// Held while delivering, so a daemon starting meanwhile does not
		// deliver the same messages in parallel.
		defer lock.Release()
	}
	start := time.Now()
	rep, err := env.outbox.DeliverOnce(ctx, env.delivery)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot fire: delivering the outbox: %v\n", err)
		return exitFailure
	}
	logger.Info("outbox delivered", "sent", rep.Sent, "deferred", rep.Deferred, "bounced", rep.Bounced)
	if rep.Deferred > 0 || rep.Bounced > 0 {
		fmt.Fprintf(m.Stderr, "mailbot fire: %d message(s) deferred, %d bounced; see mailbot queue list / queue dead\n", rep.Deferred, rep.Bounced)
		return outboxExit(env.outbox, start)
	}
	return exitOK
}

// outboxExit maps the reply that failed a delivery attempt made since
// start to the exit status of its SMTP stage, as send reports it; 1 when
// no attempt got a server reply (the outbox keeps no stage for those).
func outboxExit(ob *outbox.Outbox, start time.Time) int {
	dead, _ := ob.Dead()
	queued, _ := ob.List()
	for _, it := range append(dead, queued...) {
		if it.LastAttempt.Before(start) {
			continue
		}
		replies := []*outbox.Reply{it.LastReply}
		for i := range it.Refused {
			replies = append(replies, &it.Refused[i].Reply)
		}
		for _, r := range replies {
			if r == nil || r.Code == 0 {
				continue
			}
			switch strings.ToUpper(r.Command) {
			case "MAIL":
				return exitMail
			case "RCPT":
				return exitRcpt
			case "DATA", ".", "BDAT":
				return exitData
			case "AUTH":
				return exitAuth
			case "STARTTLS":
				return exitTLS
			case "EHLO", "HELO", "LHLO", "":
				return exitConnect
			}
		}
	}
	return exitFailure
}

// fireEngineConfig is the engine configuration of fire: the config's
// scripts and state_dir, or in a dry run a state overlay in the dry-run
// folder (see setupDryRun). This is the one place fire meets the
// dry-run setup.
func fireEngineConfig(cfg *Config, env *scriptEnv) (engine.Config, error) {
	ecfg := env.engineConfig(cfg)
	ecfg.Workers = 1
	return ecfg, nil
}
