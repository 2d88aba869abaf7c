package engine

import (
	"context"
	"path/filepath"
	"sort"
	"time"

	"github.com/mailbot/mailbot/luabind"
)

// Update is a new configuration for a running engine (see Reconfigure).
// ScriptsDir, StateDir, Workers and Grace cannot change while it runs.
type Update struct {
	// Lua replaces Config.Lua: accounts, memory limit, sandbox, logger.
	// Modules added with WithModule are kept when Lua.Modules is nil.
	Lua luabind.Options
	// RunTimeout replaces Config.RunTimeout when positive.
	RunTimeout time.Duration
	// Location replaces Config.Location when not nil.
	Location *time.Location
}

type reconfigRequest struct {
	u    Update
	done chan struct{}
}

// WithStartedHook calls fn once Run has loaded every script, before it
// serves triggers: the moment a service manager may be told the daemon is
// ready.
func WithStartedHook(fn func()) Option { return func(e *Engine) { e.onStarted = fn } }

// Reconfigure hands a running engine a new configuration and returns once
// every script has been reloaded under it. Runs in flight finish with the
// configuration they started with (however long they take, within their
// own timeouts); runs that start afterwards see the new one. Each script's
// top-level code runs again, as when the file is edited, but on_start
// handlers do not fire again (a script that failed to load before and
// loads now does fire them). It waits for Run to serve; it fails only with
// ctx's error, when ctx ends first.
func (e *Engine) Reconfigure(ctx context.Context, u Update) error {
	req := reconfigRequest{u: u, done: make(chan struct{})}
	select {
	case e.reconf <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reconfigure applies req in the Run loop, which owns e.cfg, and reloads
// every script in the scripts dir.
func (e *Engine) reconfigure(req reconfigRequest) {
	defer close(req.done)
	lua := req.u.Lua
	if lua.Modules == nil {
		lua.Modules = e.cfg.Lua.Modules
	}
	if lua.Logger == nil {
		lua.Logger = e.log
	}
	e.cfg.Lua = lua
	if req.u.RunTimeout > 0 {
		e.cfg.RunTimeout = req.u.RunTimeout
	}
	if req.u.Location != nil {
		e.cfg.Location = req.u.Location
	}
	e.reconfiguring = true
	defer func() { e.reconfiguring = false }()
	names, err := filepath.Glob(filepath.Join(e.cfg.ScriptsDir, "*.lua"))
	if err != nil {
		e.log.Error("reconfigure: listing scripts", "dir", e.cfg.ScriptsDir, "error", err)
		return
	}
	sort.Strings(names)
	present := map[string]bool{}
	for _, p := range names {
		if !isScript(p) {
			continue
		}
		present[filepath.Base(p)] = true
		e.load(p)
	}
	e.mu.Lock()
	var gone []string
	for name, s := range e.scripts {
		if !present[name] {
			gone = append(gone, s.path)
		}
	}
	e.mu.Unlock()
	for _, p := range gone {
		e.remove(p)
	}
}
