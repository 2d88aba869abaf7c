package luabind

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// openEnv returns the loader of the env module, backed by Options.Getenv:
//
//	env.get(name [, default]) -> string | default | nil
//	env.require(name) -> string   -- raises "environment variable NAME is not set"
//
// A variable the configuration names as a secret (Options.Secrets) raises
// "NAME holds a secret of account X; use c:login()" in both functions.
//
// env.require also rejects a variable that is set but empty: for the
// credentials and addresses scripts read this way, empty is a misconfiguration.
func openEnv(o *Options) lua.LGFunction {
	checkName := func(L *lua.LState) string {
		name := L.CheckString(1)
		if name == "" || strings.ContainsAny(name, "=\x00") {
			L.ArgError(1, "invalid environment variable name")
		}
		if err := o.Secrets.CheckEnv(name); err != nil {
			L.RaiseError("%v", err)
		}
		return name
	}
	funcs := map[string]lua.LGFunction{
		"get": func(L *lua.LState) int {
			name := checkName(L)
			if v, ok := o.Getenv(name); ok {
				L.Push(lua.LString(v))
			} else {
				L.Push(L.Get(2)) // the default, or nil
			}
			return 1
		},
		"require": func(L *lua.LState) int {
			name := checkName(L)
			v, ok := o.Getenv(name)
			if !ok {
				L.RaiseError("environment variable %s is not set", name)
			}
			if v == "" {
				L.RaiseError("environment variable %s is set but empty", name)
			}
			L.Push(lua.LString(v))
			return 1
		},
	}
	return func(L *lua.LState) int {
		mod := L.NewTable()
		L.SetFuncs(mod, funcs)
		L.Push(mod)
		return 1
	}
}
