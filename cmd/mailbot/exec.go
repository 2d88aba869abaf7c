package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/outbox"
	"github.com/mailbot/mailbot/sqldb"
)

const execDesc = `Runs the top-level code of one Lua script once, for ad-hoc jobs and for
testing scripts. The script's arguments are in the global table arg:
arg[0] is the script path, arg[1]..arg[n] the arguments after it.

The smtp and mail modules work without a config file (smtp.connect{host=...});
with -c, scripts can use the configured accounts (smtp.connect{account=...}),
and a dev_server section is started in-process for them. Registrations with
mailbot.on_file, every, cron, on_start, on_dead_letter and on_run_failed
are ignored with a log line: triggers only fire under "mailbot run". With -c,
mail.send queues into the outbox (<state_dir>/outbox); the next "mailbot run"
delivers it, or --deliver delivers it before exec exits. mailbot.state
works but is kept in memory only.

With --dry-run nothing leaves the machine and nothing real changes: every
SMTP connection goes to a local capture server, and each message is written
to the dry-run folder as <time>-<n>.eml with its SMTP transcript in
<time>-<n>.transcript. mail.send queues into an outbox of the dry run's own
(<dry-run folder>/state/outbox, delivered to the capture server at once),
which knows the real outbox's idempotency keys; state_dir is only read. "--dry-run DIR" chooses the folder (default <state_dir>/dry-run with
-c, ./dry-run without).

Under the strict sandbox a script's files must be inside fs_roots (without
-c: the script's folder); --fs-root DIR lets this one run also read and
write under DIR, e.g. a message file of a load test.

` + exitStatusHelp

// cmdExec implements "mailbot exec".
func (m *Main) cmdExec(ctx context.Context, args []string) int {
	fs := m.newFlagSet("exec", "[-c mailbot.yaml] [--dry-run [DIR]] [--fs-root DIR] [--timeout 60s] script.lua [args...]", execDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+"; none: no accounts)")
	var dry dryRunFlag
	fs.Var(&dry, "dry-run", "capture messages into a folder instead of sending them")
	timeout := fs.Duration("timeout", 0, "stop the script after this long (default: the config's run_timeout, else 60s)")
	var roots pathList
	fs.Var(&roots, "fs-root", "a folder the script's files may also be in under the strict sandbox, beyond fs_roots or the script's folder (repeatable)")
	deliver := fs.Bool("deliver", false, "deliver what the script queued with mail.send before exiting (default: the next mailbot run delivers it)")
	args = splitDryRunArg(args, func(next string) bool { return !strings.HasSuffix(next, ".lua") })
	if status, ok := m.parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() < 1 {
		return m.usageError(fs, "missing the script to run")
	}
	script, scriptArgs := fs.Arg(0), fs.Args()[1:]

	cfg, logger, status, ok := m.optionalConfig("exec", *cfgFlag)
	if !ok {
		return status
	}

	proto, err := luabind.CompileFile(script)
	if err != nil {
		fmt.Fprintf(m.Stderr, "%s\n", compileMessage(err))
		return exitFailure
	}

	env, err := m.prepareScripts(cfg, logger, &dry, true)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot exec: %v\n", err)
		return exitFailure
	}
	defer env.Close()

	opts := env.lua
	absScript, err := filepath.Abs(script)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot exec: %v\n", err)
		return exitFailure
	}
	if cfg == nil {
		// Without a config, require() finds modules next to the script.
		opts.ScriptsDir = filepath.Dir(absScript)
	}
	opts.BaseDir = filepath.Dir(absScript)
	// The same name the engine gives a script: its file name.
	name := filepath.Base(script)
	opts.ScriptName = name

	for _, r := range roots {
		abs, err := filepath.Abs(r)
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot exec: --fs-root: %v\n", err)
			return exitFailure
		}
		if opts.FSRoots == nil {
			// Keep the default roots (the script's folder) next to the
			// ones the command line adds.
			opts.FSRoots = append(opts.FSRoots, opts.ScriptsDir, opts.BaseDir)
		}
		opts.FSRoots = append(opts.FSRoots, abs)
	}
	L := luabind.NewState(opts)
	defer L.Close()
	if cfg != nil && cfg.FSRoots == nil {
		// The script's own folder, which anchors its relative paths.
		if err := luabind.AddFSRoot(L, opts.BaseDir); err != nil {
			fmt.Fprintf(m.Stderr, "mailbot exec: %v\n", err)
			return exitFailure
		}
	}
	defer luabind.CloseResources(L)
	L.SetGlobal("arg", argTable(L, script, scriptArgs))
	L.SetGlobal("mailbot", execMailbotTable(L, name, logger))

	if *timeout <= 0 {
		*timeout = 60 * time.Second
		if cfg != nil {
			*timeout = cfg.RunTimeout
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	_, stopRun := luabind.StartRun(runCtx, L)
	runErr := luabind.DoProto(L, proto)
	luabind.CloseResources(L)
	stopRun()
	deliverStatus := exitOK
	if runErr == nil && env.outbox != nil {
		deliverStatus = m.deliverQueued(ctx, env, *deliver, logger)
	}
	if cerr := env.Close(); cerr != nil {
		fmt.Fprintf(m.Stderr, "mailbot exec: %v\n", cerr)
		if runErr == nil {
			return exitFailure
		}
	}
	if runErr != nil {
		if errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			fmt.Fprintf(m.Stderr, "mailbot exec: %s: stopped after %v (--timeout)\n", script, *timeout)
			return exitDisconnect
		}
		fmt.Fprintf(m.Stderr, "mailbot exec: %s\n", luabind.DescribeError(runErr))
		return exitForScriptError(runErr)
	}
	if env.capture != nil {
		logger.Info("dry run finished", "messages", env.capture.Count(), "dir", env.capture.dir)
	}
	return deliverStatus
}

// deliverQueued runs the outbox once for exec --deliver (always in a dry
// run, whose outbox nothing else would deliver); otherwise it says what
// is waiting for the next mailbot run.
func (m *Main) deliverQueued(ctx context.Context, env *scriptEnv, deliver bool, logger *slog.Logger) int {
	if !deliver && env.capture == nil {
		if st, err := env.outbox.Stats(); err == nil && st.Queued > 0 {
			logger.Info("messages queued by mail.send wait for mailbot run (or use exec --deliver)", "queued", st.Queued)
		}
		return exitOK
	}
	rep, err := env.outbox.DeliverOnce(ctx, env.delivery)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot exec: delivering the outbox: %v\n", err)
		return exitFailure
	}
	logger.Info("outbox delivered", "sent", rep.Sent, "deferred", rep.Deferred, "bounced", rep.Bounced)
	if rep.Deferred > 0 || rep.Bounced > 0 {
		fmt.Fprintf(m.Stderr, "mailbot exec: %d message(s) deferred, %d bounced; see mailbot queue list / queue dead\n", rep.Deferred, rep.Bounced)
		return exitFailure
	}
	return exitOK
}

// compileMessage renders a compile error as "file:line: message".
func compileMessage(err error) string {
	var se *luabind.SyntaxError
	if errors.As(err, &se) {
		return se.Error()
	}
	return err.Error()
}

// argTable builds Lua's conventional arg table.
func argTable(L *lua.LState, script string, args []string) *lua.LTable {
	t := L.NewTable()
	t.RawSetInt(0, lua.LString(script))
	for i, a := range args {
		t.RawSetInt(i+1, lua.LString(a))
	}
	return t
}

// execMailbotTable is the mailbot global under exec: the script's name, an
// in-memory state, and registrars that log and do nothing, since triggers
// belong to the engine.
func execMailbotTable(L *lua.LState, name string, logger *slog.Logger) *lua.LTable {
	t := L.NewTable()
	t.RawSetString("script", lua.LString(name))
	for _, reg := range []string{"on_file", "every", "cron", "on_start", "on_dead_letter", "on_run_failed"} {
		reg := reg
		t.RawSetString(reg, L.NewFunction(func(L *lua.LState) int {
			logger.Info("exec: trigger registration ignored; triggers fire only under 'mailbot run'", "script", name, "trigger", "mailbot."+reg)
			return 0
		}))
	}
	state := map[string]lua.LValue{}
	st := L.NewTable()
	L.SetFuncs(st, map[string]lua.LGFunction{
		"get": func(L *lua.LState) int {
			v, ok := state[L.CheckString(1)]
			if !ok {
				v = L.Get(2) // optional default, as under the engine
			}
			L.Push(v)
			return 1
		},
		"set": func(L *lua.LState) int {
			k, v := L.CheckString(1), L.Get(2)
			if v == lua.LNil {
				delete(state, k)
			} else {
				state[k] = v
			}
			return 0
		},
		"delete": func(L *lua.LState) int {
			delete(state, L.CheckString(1))
			return 0
		},
		"all": func(L *lua.LState) int {
			keys := make([]string, 0, len(state))
			for k := range state {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			out := L.NewTable()
			for _, k := range keys {
				out.RawSetString(k, state[k])
			}
			L.Push(out)
			return 1
		},
	})
	t.RawSetString("state", st)
	return t
}

// scriptEnv is what scripts run against: Lua options with accounts, and
// the servers started for them (dev server, dry-run capture).
type scriptEnv struct {
	lua     luabind.Options
	dev     *embeddedDev
	capture *capture
	// dry is the dry run's isolation (nil when not a dry run); capture is
	// its capture server.
	dry *dryRunEnv
	// outbox backs mail.send (nil without a config); delivery holds the
	// accounts it delivers through.
	outbox   *outbox.Outbox
	delivery map[string]outbox.Account
	// sql is the databases' pools, shared by every run; a reload
	// replaces it and closes the old one.
	sql    *sqldb.Set
	closed bool
	// deadLetter, once set (by run only), is told of each new dead letter
	// (outbox.Options.OnDeadLetter): the daemon's alert handlers.
	deadLetter atomic.Pointer[func(outbox.Item)]
}

// Close stops what prepareScripts started; later calls do nothing.
func (e *scriptEnv) Close() error {
	if e == nil || e.closed {
		return nil
	}
	e.closed = true
	var errs []error
	if e.outbox != nil {
		errs = append(errs, e.outbox.Close())
	}
	errs = append(errs, e.sql.Close())
	if e.dry != nil {
		errs = append(errs, e.dry.Close())
	} else if e.capture != nil {
		errs = append(errs, e.capture.Close())
	}
	errs = append(errs, e.dev.Close())
	return errors.Join(errs...)
}

// prepareScripts builds the Lua options for cfg (nil: no config), starting
// the configured dev server (unless this is a dry run) and the dry-run
// capture server. Missing password sources are logged, not fatal: only the
// logins of that account will fail.
func (m *Main) prepareScripts(cfg *Config, logger *slog.Logger, dry *dryRunFlag, startDev bool) (*scriptEnv, error) {
	env := &scriptEnv{}
	fail := func(err error) (*scriptEnv, error) {
		env.Close()
		return nil, err
	}
	opts := luabind.Options{Logger: logger, Getenv: m.lookupEnv}
	opts.SMTP.Logger = logger
	if dry != nil && dry.on {
		d, err := setupDryRun(cfg, dry.folder(cfg), logger)
		if err != nil {
			return fail(err)
		}
		env.dry, env.capture = d, d.capture
		opts.SMTP.DryRun = d.capture.Options()
	}
	if cfg != nil {
		opts.ScriptsDir = cfg.Resolve(cfg.ScriptsDir)
		opts.MemoryLimit = cfg.memoryLimit()
		cfg.applySandbox(&opts)
		cfg.applyHTTPClient(&opts)
		if env.dry != nil {
			// The overlay is state too, wherever the dry-run folder is.
			opts.FSDenied = append(opts.FSDenied, env.dry.stateDir)
		} else if err := cfg.makeFilesArea(); err != nil {
			// A dry run creates nothing in state_dir, not even the
			// scripts' area.
			return fail(err)
		}
		if cfg.Timezone != "" {
			loc, err := time.LoadLocation(cfg.Timezone)
			if err != nil {
				return fail(fmt.Errorf("timezone: %w", err))
			}
			opts.Location = loc
		}
		for _, p := range cfg.CheckSecrets(m.lookupEnv) {
			logger.Error("account credentials unavailable (password, or OAuth2 secret or refresh token); logins with this account will fail", "problem", p.String())
		}
		if cfg.DevServer != nil && startDev && (dry == nil || !dry.on) {
			dev, err := startEmbeddedDev(cfg, logger)
			if err != nil {
				return fail(err)
			}
			env.dev = dev
			if dev.srv != nil { // not when reusing another process's server
				logger.Info("dev server listening", "addr", dev.addr, "maildir", cfg.Resolve(cfg.DevServer.Maildir), "ca_file", dev.caPath)
			}
		}
		accounts, err := m.scriptAccounts(cfg, env, logger)
		if err != nil {
			return fail(err)
		}
		opts.SMTP.Accounts, opts.SMTP.DefaultAccount = accounts, cfg.DefaultAccount
		env.sql = cfg.sqlSetSeeded(m.lookupEnv, env.dryDatabases(), false)
		opts.SQL = env.sql

		// The outbox behind mail.send. A dry run gets its own in the
		// overlay, delivered to the capture server, so a later real run
		// never sends what a dry run queued; it reads the real one's
		// idempotency keys.
		dir := filepath.Join(cfg.Resolve(cfg.StateDir), "outbox")
		obOpts := outbox.Options{Logger: logger, OnDeadLetter: func(it outbox.Item) {
			if f := env.deadLetter.Load(); f != nil {
				(*f)(it)
			}
		}}
		if env.dry != nil {
			dir, obOpts = env.dry.outboxDir(), env.dry.outboxOptions(obOpts)
		}
		if m.outboxHooks != nil {
			m.outboxHooks(&obOpts)
		}
		ob, err := outbox.Open(dir, obOpts)
		if err != nil {
			return fail(fmt.Errorf("outbox: %w", err))
		}
		env.outbox = ob
		opts.Outbox = ob
		if env.delivery, err = deliveryAccounts(accounts, opts.SMTP.DryRun); err != nil {
			return fail(err)
		}
		if env.dry != nil {
			// A dry run's mail.send delivers at once, so each message
			// is in the dry-run folder when mail.send returns.
			opts.Outbox = &deliverAtOnce{ob: ob, accounts: env.delivery, log: logger}
		}
	}
	env.lua = opts
	return env, nil
}

// scriptAccounts builds the Lua accounts of cfg for env: aimed at its dev
// server, and trusting its capture server in a dry run.
func (m *Main) scriptAccounts(cfg *Config, env *scriptEnv, logger *slog.Logger) (map[string]luabind.Account, error) {
	accounts, err := luaAccounts(cfg, env.dev, m.lookupEnv, logger)
	if err != nil {
		return nil, err
	}
	if env.capture != nil {
		// Everything goes to the capture server, whose certificate
		// must then be trusted for scripts that call starttls()
		// themselves after connecting to an account.
		for name, acc := range accounts {
			acc.RootCAs = env.capture.srv.CertPool()
			accounts[name] = acc
		}
	}
	return accounts, nil
}

// deliveryAccounts converts the Lua accounts for the outbox.
func deliveryAccounts(accounts map[string]luabind.Account, dry *luabind.DryRun) (map[string]outbox.Account, error) {
	out := make(map[string]outbox.Account, len(accounts))
	for name, acc := range accounts {
		oa, err := acc.OutboxAccount(dry)
		if err != nil {
			return nil, fmt.Errorf("accounts.%s: %w", name, err)
		}
		out[name] = oa
	}
	return out, nil
}

// engineConfig is the engine's configuration for cfg and this
// environment, shared by run and fire. In a dry run its StateDir is the
// overlay and DryRun is set, so the engine writes nothing outside the
// dry-run folder and leaves dropped files where they are.
func (e *scriptEnv) engineConfig(cfg *Config) engine.Config {
	ecfg := engine.Config{
		ScriptsDir: cfg.Resolve(cfg.ScriptsDir),
		StateDir:   cfg.Resolve(cfg.StateDir),
		Workers:    cfg.Workers,
		RunTimeout: cfg.RunTimeout,
		Location:   e.lua.Location,
		Lua:        e.lua,
	}
	if e.dry != nil {
		ecfg.StateDir, ecfg.DryRun = e.dry.stateDir, true
	}
	return ecfg
}

// stateLock is the lock the engine runs under, for engine.WithStateLock:
// in a dry run the overlay's, held since prepareScripts (the real
// state_dir's lock is neither taken nor created); otherwise nil, and the
// caller takes the real one with engine.LockStateDir.
func (e *scriptEnv) stateLock() *engine.StateLock {
	if e.dry != nil {
		return e.dry.lock
	}
	return nil
}

// pathList is a repeatable flag of paths.
type pathList []string

func (p *pathList) String() string { return strings.Join(*p, ",") }

// Set adds one path.
func (p *pathList) Set(v string) error {
	if v == "" {
		return errors.New("empty path")
	}
	*p = append(*p, v)
	return nil
}
