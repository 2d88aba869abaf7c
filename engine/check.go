package engine

import (
	"context"
	"os"

	lua "github.com/yuin/gopher-lua"
)

// CheckScript loads the script at path the way Run would — compiles it and
// runs its top-level code, so that every mailbot.on_file, every, cron and
// on_start registration is validated (cron specs, durations, time zones,
// options) — and then throws the state away. Nothing is started, no handler
// runs, state goes to a temporary folder, and the smtp module is replaced by
// one that refuses to connect: top-level code that sends mail would do so at
// every reload, so it is reported as a problem. The error carries file:line
// (see luabind.ErrorLocation).
func CheckScript(cfg Config, path string) error {
	e, cleanup, err := newCheckEngine(cfg)
	if err != nil {
		return err
	}
	defer cleanup()
	s, err := e.newScript(path)
	if err != nil {
		return err
	}
	s.close()
	return nil
}

// newCheckEngine is an engine that loads scripts as CheckScript does: state
// in a temporary folder, no outbox, an smtp module that refuses to connect.
func newCheckEngine(cfg Config) (*Engine, func(), error) {
	tmp, err := os.MkdirTemp("", "mailbot-check")
	if err != nil {
		return nil, nil, err
	}
	cfg.StateDir = tmp
	cfg.Lua.Outbox = nil
	mods := map[string]lua.LGFunction{}
	for name, mod := range cfg.Lua.Modules {
		mods[name] = mod
	}
	mods["smtp"] = refusingSMTP
	cfg.Lua.Modules = mods
	e, err := New(cfg)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	store, err := OpenStateStore(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, nil, err
	}
	e.store = store
	var cancel context.CancelFunc
	e.runBase, cancel = context.WithCancel(context.Background())
	return e, func() { cancel(); os.RemoveAll(tmp) }, nil
}

// refusingSMTP stands in for the smtp module while checking.
func refusingSMTP(L *lua.LState) int {
	refuse := func(L *lua.LState) int {
		L.RaiseError("smtp is not available at load time: connect inside a handler (mailbot.on_start, on_file, every or cron), or the script sends mail at every reload")
		return 0
	}
	L.Push(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{"connect": refuse, "new": refuse}))
	return 1
}
