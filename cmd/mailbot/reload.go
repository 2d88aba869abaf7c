package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/internal/sdnotify"
	"github.com/mailbot/mailbot/luabind"
)

// restartOnlyKeys are the config keys a reload cannot change: the running
// process keeps their old values, and says so. Everything else (accounts
// with their hosts, credential sources, OAuth2, DKIM and fallbacks,
// default_account, log.level, run_timeout, limits, timezone, sandbox,
// fs_roots, http.auth, databases) applies to new work.
var restartOnlyKeys = []struct {
	key  string
	keep func(old, next *Config) bool // copies old's value into next; reports a change
}{
	{"scripts_dir", func(o, n *Config) bool { return keep(&n.ScriptsDir, o.ScriptsDir) }},
	{"state_dir", func(o, n *Config) bool { return keep(&n.StateDir, o.StateDir) }},
	{"workers", func(o, n *Config) bool { return keep(&n.Workers, o.Workers) }},
	{"log.format", func(o, n *Config) bool { return keep(&n.Log.Format, o.Log.Format) }},
	{"dev_server", func(o, n *Config) bool { return keep(&n.DevServer, o.DevServer) }},
	{"http.listen", keepHTTPListen},
}

// keepHTTPListen keeps the running endpoint's address (and its presence):
// the listener is bound once, at start. Its auth may change.
func keepHTTPListen(o, n *Config) bool {
	switch {
	case o.HTTP == nil && n.HTTP == nil:
		return false
	case o.HTTP == nil:
		n.HTTP = nil
		return true
	case n.HTTP == nil:
		n.HTTP = o.HTTP
		return true
	}
	return keep(&n.HTTP.Listen, o.HTTP.Listen)
}

// keep sets *next to old and reports whether they differed.
func keep[T any](next *T, old T) bool {
	changed := !reflect.DeepEqual(*next, old)
	*next = old
	return changed
}

// reloadHook is handed every configuration "mailbot run" accepts on
// SIGHUP, after the engine and the outbox took it, for the components that
// keep settings of their own (the HTTP endpoint's auth, for one). It must
// not block, and must apply only what changes for new work.
type reloadHook func(cfg *Config)

// daemon is what "mailbot run" keeps to reload its configuration on
// SIGHUP and to talk to systemd.
type daemon struct {
	m      *Main
	cfg    *Config // the running configuration
	env    *scriptEnv
	engine *engine.Engine
	log    *slog.Logger
	level  *slog.LevelVar
	notify *sdnotify.Notifier
	hooks  []reloadHook
}

// hangups returns the channel SIGHUPs arrive on (Main.Hangup in tests)
// and a function that stops their delivery.
func (m *Main) hangups() (<-chan os.Signal, func()) {
	if m.Hangup != nil {
		return m.Hangup, func() {}
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}

// serveSignals reloads the configuration at each SIGHUP until ctx ends,
// then tells systemd the daemon is stopping.
func (d *daemon) serveSignals(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			if err := d.notify.Stopping(); err != nil {
				d.log.Warn("systemd notification", "error", err)
			}
			return
		case <-hup:
			d.reload(ctx)
		}
	}
}

// reload re-reads the config file and hands the new configuration to the
// engine (scripts reloaded for new runs), the outbox (new sessions) and
// the log level. An invalid file changes nothing: each problem is logged
// with file:line and the running configuration stays. It reports whether
// the new configuration was taken.
func (d *daemon) reload(ctx context.Context) bool {
	if err := d.notify.Reloading(); err != nil {
		d.log.Warn("systemd notification", "error", err)
	}
	defer func() {
		if err := d.notify.Ready(); err != nil {
			d.log.Warn("systemd notification", "error", err)
		}
	}()
	path := d.cfg.Path()
	d.log.Info("reloading config", "config", path)
	start := time.Now()
	refuse := func(attrs ...any) bool {
		d.log.Error("config reload refused: the running config stays", append([]any{"config", path}, attrs...)...)
		return false
	}
	next, probs, secretProbs := d.m.reloadConfig(path)
	if len(probs) > 0 {
		for _, p := range probs {
			d.log.Error("config problem", "problem", p.String())
		}
		return refuse("problems", len(probs))
	}
	for _, k := range restartOnlyKeys {
		if k.keep(d.cfg, next) {
			d.log.Warn("config reload: this setting takes effect only at a restart; the running value stays", "key", k.key)
		}
	}
	level, err := d.m.logLevel(next)
	if err != nil {
		return refuse("error", err)
	}
	opts, err := d.m.reloadOptions(next, d.env, d.log)
	if err != nil {
		return refuse("error", err)
	}
	taken := false
	defer func() {
		if !taken {
			opts.SQL.Close() // the new pools, unused: nothing was opened
		}
	}()
	delivery, err := deliveryAccounts(opts.SMTP.Accounts, opts.SMTP.DryRun)
	if err != nil {
		return refuse("error", err)
	}
	for _, p := range secretProbs {
		d.log.Error("account credentials unavailable (password, or OAuth2 secret or refresh token); logins with this account will fail", "problem", p.String())
	}
	changed := configChanges(d.cfg, next)
	// Log records about the reload itself come out at the new level.
	d.level.Set(level)
	if err := d.engine.Reconfigure(ctx, engine.Update{Lua: opts, RunTimeout: next.RunTimeout, Location: opts.Location}); err != nil {
		return refuse("error", fmt.Errorf("engine: %w", err))
	}
	d.env.outbox.SetAccounts(delivery)
	d.env.lua, d.env.delivery = opts, delivery
	// New runs open the new databases; runs still holding an old one
	// finish their current query, then get a "closed by a config
	// reload" error.
	taken = true
	oldSQL := d.env.sql
	d.env.sql = opts.SQL
	if err := oldSQL.Close(); err != nil {
		d.log.Warn("config reload: closing the old database pools", "error", err)
	}
	for _, h := range d.hooks {
		h(next)
	}
	d.cfg = next
	d.log.Info("config reloaded", "config", path, "changed", strings.Join(changed, ","),
		"duration", time.Since(start).Round(time.Millisecond).String())
	return true
}

// reloadConfig reads the config file at path and validates it as
// "mailbot check" does, returning every problem (sorted by line). Password
// sources that cannot deliver now are returned apart, in secretProbs: as
// at startup, they are logged and fail only that account's logins.
func (m *Main) reloadConfig(path string) (cfg *Config, probs, secretProbs []Problem) {
	cfg, all := m.checkConfig(path)
	if cfg == nil {
		return nil, all, nil
	}
	secret := map[Problem]bool{}
	for _, p := range cfg.CheckSecrets(m.lookupEnv) {
		secret[p] = true
	}
	for _, p := range all {
		if secret[p] {
			secretProbs = append(secretProbs, p)
		} else {
			probs = append(probs, p)
		}
	}
	return cfg, probs, secretProbs
}

// reloadOptions builds the scripts' Lua options for cfg the way
// prepareScripts does, reusing env's dev server, capture server and
// outbox.
func (m *Main) reloadOptions(cfg *Config, env *scriptEnv, logger *slog.Logger) (luabind.Options, error) {
	opts := env.lua // Logger, Getenv, Outbox, dry-run capture, modules
	opts.MemoryLimit = cfg.memoryLimit()
	opts.Sandbox, opts.FSRootsFixed = luabind.SandboxStrict, false
	cfg.applySandbox(&opts)
	cfg.applyHTTPClient(&opts)
	if env.dry != nil {
		opts.FSDenied = append(opts.FSDenied, env.dry.stateDir)
	}
	opts.Location = nil
	if cfg.Timezone != "" {
		loc, err := time.LoadLocation(cfg.Timezone)
		if err != nil {
			return opts, fmt.Errorf("timezone: %w", err)
		}
		opts.Location = loc
	}
	accounts, err := m.scriptAccounts(cfg, env, logger)
	if err != nil {
		return opts, err
	}
	opts.SMTP.Accounts, opts.SMTP.DefaultAccount = accounts, cfg.DefaultAccount
	opts.SQL = cfg.sqlSetSeeded(m.lookupEnv, env.dryDatabases(), false)
	return opts, nil
}

// configChanges names what differs between two configurations, for the
// "config reloaded" record: keys, and accounts by name only (never a
// value, so no secret and no secret's location is logged).
func configChanges(old, next *Config) []string {
	var out []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, key)
		}
	}
	diff("log.level", old.Log.Level, next.Log.Level)
	diff("default_account", old.DefaultAccount, next.DefaultAccount)
	diff("sandbox", old.Sandbox, next.Sandbox)
	diff("fs_roots", old.FSRoots, next.FSRoots)
	diff("timezone", old.Timezone, next.Timezone)
	diff("run_timeout", old.RunTimeout, next.RunTimeout)
	diff("limits.memory", old.Limits, next.Limits)
	diff("databases", old.Databases, next.Databases)
	diff("http_client", old.HTTPClient, next.HTTPClient)
	names := slices.Sorted(maps.Keys(old.Accounts))
	for n := range maps.Keys(next.Accounts) {
		if _, ok := old.Accounts[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		a, inOld := old.Accounts[n]
		b, inNext := next.Accounts[n]
		switch {
		case !inNext:
			out = append(out, "accounts."+n+" (removed)")
		case !inOld:
			out = append(out, "accounts."+n+" (added)")
		default:
			diff("accounts."+n, a, b)
		}
	}
	if len(out) == 0 {
		out = append(out, "nothing")
	}
	return out
}

// logLevel is the level mailbot logs at under cfg, honouring
// MAILBOT_LOG_LEVEL.
func (m *Main) logLevel(cfg *Config) (slog.Level, error) {
	level := "info"
	if cfg != nil {
		level = cfg.Log.Level
	}
	if v, ok := m.lookupEnv(envLogLevel); ok && v != "" {
		level = strings.ToLower(v)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return lv, nil
}

// newLevelLogger is newLogger with the level in a LevelVar, which a
// reload sets.
func (m *Main) newLevelLogger(cfg *Config) (*slog.Logger, *slog.LevelVar, error) {
	lv, err := m.logLevel(cfg)
	if err != nil {
		return nil, nil, err
	}
	level := new(slog.LevelVar)
	level.Set(lv)
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationString}
	if cfg != nil && cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(m.Stderr, opts)), level, nil
	}
	return slog.New(slog.NewTextHandler(m.Stderr, opts)), level, nil
}
