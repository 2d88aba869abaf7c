package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/internal/sdnotify"
	"github.com/mailbot/mailbot/outbox"
)

const runDesc = `Runs the engine: loads every script in scripts_dir, reloads them when they
change, fires their triggers (mailbot.on_file, every, cron, on_start) and
delivers their mail, until SIGINT or SIGTERM; then lets runs in flight
finish and exits 0. SIGHUP reloads the config file ("systemctl reload
mailbot"): accounts (hosts, credential sources, OAuth2, DKIM, fallbacks),
default_account, log.level, run_timeout, limits, timezone, sandbox and
fs_roots change for new work. Every script is reloaded under the new
config (its top-level code runs again; on_start handlers do not fire
again); runs in flight finish under the old one, and the outbox finishes
the sessions it has open and opens new ones with the new account settings.
scripts_dir, state_dir, workers, log.format and dev_server take effect
only at a restart. An invalid file changes nothing: each problem is logged
as file:line and the running config stays. Under systemd with
Type=notify, mailbot reports READY=1 once the scripts are loaded,
RELOADING=1 during a reload, STOPPING=1 at shutdown, and WATCHDOG=1 when
WatchdogSec is set. Messages queued with mail.send are delivered from the
outbox (<state_dir>/outbox) with retries; see "mailbot queue". Only run
calls the alert handlers: mailbot.on_dead_letter when a message becomes a
dead letter, mailbot.on_run_failed when a run fails.

With a dev_server section, the embedded development mail server is
started in-process and accounts with "host: dev_server" send to it.
An account whose password variable or file is missing is logged as an
error at startup; mailbot still starts and only that account's logins fail.

With an http section, the operations endpoint is served on http.listen
(default 127.0.0.1:9725): /metrics, /healthz, /readyz, /api/status, the
status page, and CSRF-guarded POSTs to fire triggers and retry or delete
dead letters. A listen address beyond loopback without http.auth is
refused, and so is an http.auth secret that cannot be read.

With --dry-run nothing leaves the machine and nothing real changes: every
SMTP connection goes to a local capture server, and each message (from
c:sendmail or mail.send) is written to the dry-run folder (default
<state_dir>/dry-run) as <time>-<n>.eml with its SMTP transcript in
<time>-<n>.transcript. What mailbot would write to state_dir (file ledger,
mailbot.state, last runs, outbox) goes to <dry-run folder>/state, seeded
from state_dir at each start; state_dir is only read and not locked, so a
dry run can run beside the daemon. Dropped files stay where they are: the
log says where after = "move:..."/"delete" or failed/ would have put them.`

// cmdRun implements "mailbot run".
func (m *Main) cmdRun(ctx context.Context, args []string) int {
	fs := m.newFlagSet("run", "[-c mailbot.yaml] [--dry-run [DIR]]", runDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	var dry dryRunFlag
	fs.Var(&dry, "dry-run", "capture messages into a folder instead of sending them")
	args = splitDryRunArg(args, func(string) bool { return true })
	cfg, status, ok := m.flagsAndConfig(fs, args, cfgFlag)
	if !ok {
		return status
	}
	logger, level, err := m.newLevelLogger(cfg)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot run: %v\n", err)
		return exitConfig
	}
	// One daemon per state_dir: a second one would fire every schedule and
	// handle every file twice. exec, check and queue do not take the lock.
	// A dry run runs on an overlay, under the overlay's lock instead, and
	// may run beside the daemon.
	var lock *engine.StateLock
	if !dry.on {
		l, err := engine.LockStateDir(cfg.Resolve(cfg.StateDir))
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot run: %v\n", err)
			return exitFailure
		}
		defer l.Release()
		lock = l
	}
	// The operations endpoint binds first, so a port in use or an
	// unreadable http.auth secret fails the start.
	opsd := newDaemonOps(logger)
	if dry.on {
		if cfg.HTTP != nil {
			logger.Info("dry run: the http endpoint is not started")
		}
	} else if err := opsd.listen(cfg, m.lookupEnv); err != nil {
		logger.Error("startup failed", "error", err)
		return exitFailure
	}
	defer opsd.close()
	m.outboxHooks = opsd.outboxHooks
	env, err := m.prepareScripts(cfg, logger, &dry, true)
	if err != nil {
		logger.Error("startup failed", "error", err)
		return exitFailure
	}
	defer env.Close()
	if dry.on {
		// The delivery loop below delivers at once what scripts queue;
		// mail.send must not deliver by itself beside it.
		env.lua.Outbox = env.outbox
		lock = env.stateLock()
		// What the daemon has waiting in the real outbox, it would
		// deliver: so does its dry run, to the capture server.
		if n, err := env.outbox.CopyBaseQueue(); err != nil {
			logger.Error("startup failed", "error", err)
			return exitFailure
		} else if n > 0 {
			logger.Info("dry run: messages waiting in the real outbox are delivered to the capture server", "messages", n)
		}
	}

	// systemd (Type=notify): READY=1 once the scripts are loaded (the
	// outbox is open by now), RELOADING=1/READY=1 around each SIGHUP
	// reload, STOPPING=1 at shutdown, WATCHDOG=1 when WatchdogSec is set.
	notify := sdnotify.New(m.lookupEnv)
	ready := func() {
		if err := notify.Ready(); err != nil {
			logger.Warn("systemd notification", "error", err)
		}
	}
	e, err := engine.New(env.engineConfig(cfg), engine.WithLogger(logger), engine.WithStateLock(lock), engine.WithStartedHook(ready), opsd.engineOption())
	if err != nil {
		logger.Error("startup failed", "error", err)
		return exitFailure
	}
	// Only the daemon calls the scripts' on_dead_letter handlers.
	deadLetter := func(it outbox.Item) { e.NotifyDeadLetter(engine.DeadLetterFromItem(it)) }
	env.deadLetter.Store(&deadLetter)
	d := &daemon{m: m, cfg: cfg, env: env, engine: e, log: logger, level: level, notify: notify}
	if opsd.srv != nil {
		// New http.auth credentials apply to the next request; an
		// unreadable secret keeps the running ones.
		d.hooks = append(d.hooks, func(next *Config) {
			a, err := next.httpAuth(m.lookupEnv)
			if err != nil {
				logger.Error("config reload: http.auth unchanged", "error", err)
				return
			}
			opsd.srv.SetAuth(a)
		})
	}
	hup, stopHup := m.hangups()
	defer stopHup()
	// sctx ends with ctx, or when run returns for another reason.
	sctx, stopSignals := context.WithCancel(ctx)
	signals := make(chan struct{})
	go func() { defer close(signals); d.serveSignals(sctx, hup) }()
	defer func() { stopSignals(); <-signals }()
	go notify.Watchdog(sctx, sdnotify.WatchdogInterval(m.lookupEnv, os.Getpid()), func(err error) {
		logger.Warn("systemd watchdog notification", "error", err)
	})
	logger.Info("mailbot running", "version", version(), "config", cfg.Path())
	start := time.Now()
	// The outbox delivers what scripts queued with mail.send, alongside
	// the engine, until the same signal stops both.
	delivered := make(chan error, 1)
	go func() { delivered <- env.outbox.Deliver(ctx, env.delivery) }()
	httpCtx, stopServing := context.WithCancel(ctx)
	served := opsd.serve(httpCtx, e, env.outbox)
	runErr := e.Run(ctx)
	stopServing()
	if serr := <-served; serr != nil {
		logger.Error("http endpoint stopped", "error", serr)
	}
	if derr := <-delivered; derr != nil && !errors.Is(derr, context.Canceled) {
		logger.Error("outbox delivery stopped", "error", derr)
	}
	if cerr := env.Close(); cerr != nil {
		logger.Error("shutdown", "error", cerr)
	}
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		logger.Error("engine stopped", "error", runErr)
		return exitFailure
	}
	logger.Info("mailbot stopped", "uptime", time.Since(start).Round(time.Second))
	return exitOK
}
