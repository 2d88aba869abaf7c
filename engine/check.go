package engine

import (
	"context"
	"errors"
	"os"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// CheckScript loads the script at path the way Run would — compiles it and
// runs its top-level code, so that every mailbot.on_file, every, cron and
// on_start registration is validated (cron specs, durations, time zones,
// options) — and then throws the state away. Nothing is started, no handler
// runs, state goes to a temporary folder, the smtp module is replaced by
// one that refuses to connect and the http module allows no host: top-level
// code that sends mail or makes requests would do so at every reload, so it
// is reported as a problem. The error carries file:line
// (see luabind.ErrorLocation). It is the first problem; CheckScriptAll
// reports them all.
func CheckScript(cfg Config, path string) error {
	if errs := checkScript(cfg, path, false); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// CheckScriptAll is CheckScript reporting every problem it can: a trigger
// registration that fails is recorded and the top-level code goes on, so
// each bad registration of the script is reported, in the order they ran.
// Any other error stops the top-level code, as it would stop the load, and
// is the last problem. Each error carries file:line.
func CheckScriptAll(cfg Config, path string) []error {
	return checkScript(cfg, path, true)
}

func checkScript(cfg Config, path string, all bool) []error {
	e, cleanup, err := newCheckEngine(cfg)
	if err != nil {
		return []error{err}
	}
	defer cleanup()
	var errs []error
	if all {
		e.onAPI = func(s *script) { recordRegistrationErrors(s.L, &errs) }
	}
	s, err := e.newScript(path)
	if err != nil {
		return append(errs, err)
	}
	s.close()
	return errs
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
	// No requests either: a top-level one would run at every reload.
	cfg.Lua.HTTP.AllowHosts = []string{}
	cfg.Lua.HTTP.AllowHostsSource = "the hosts a check may reach (none: make requests inside a handler, or the script makes them at every reload)"
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

// recordRegistrationErrors replaces the registrars of the mailbot table with
// ones that call the real registrar and, when it raises, record the error
// and return, so the top-level code goes on to its next registration.
func recordRegistrationErrors(L *lua.LState, errs *[]error) {
	mb, ok := L.GetGlobal("mailbot").(*lua.LTable)
	if !ok {
		return
	}
	for _, name := range []string{"on_file", "every", "cron", "on_start", "on_dead_letter", "on_run_failed"} {
		orig := mb.RawGetString(name)
		if orig == lua.LNil {
			continue
		}
		mb.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			top := L.GetTop()
			L.Push(orig)
			for i := 1; i <= top; i++ {
				L.Push(L.Get(i))
			}
			err := L.PCall(top, 0, nil)
			if err == nil {
				return 0
			}
			var ae *lua.ApiError
			if errors.As(err, &ae) {
				if msg, ok := ae.Object.(lua.LString); ok {
					// Called through this wrapper, argument errors name
					// no function; give them the registrar's name.
					ae.Object = lua.LString(strings.Replace(string(msg), " to (anonymous) (", " to "+name+" (", 1))
				}
			}
			*errs = append(*errs, err)
			return 0
		}))
	}
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
