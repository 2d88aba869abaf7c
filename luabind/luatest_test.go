package luabind

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// luaTestingTypeName names the metatable of the `t` userdata handed to Lua
// test functions.
const luaTestingTypeName = "mailbot.luabind.testing.T"

// luaT is the Go side of the `t` userdata for one Lua test function.
type luaT struct {
	t      *testing.T
	failed bool // t:fatal was called; the raised error is only a stop signal
}

// errLuaFatal is the message t:fatal raises to unwind the Lua test function.
const errLuaFatal = "luatest: fatal"

// runLuaTestFile runs the Lua file at path in L and then every global
// function whose name starts with "Test", in name order, each as a subtest.
// Each function receives a `t` userdata:
//
//	t:error(msg)           -- report a failure and continue
//	t:fatal(msg)           -- report a failure and stop this test function
//	t:log(msg)             -- t.Log
//	t:eq(got, want [, msg]) -> bool   -- deep comparison of Lua values
//	t:ok(v [, msg]) -> bool           -- v must be truthy
//	t:name() -> string     -- the subtest name
//	t:tempdir() -> string  -- t.TempDir()
//
// Messages are prefixed with the calling Lua file:line. A Lua error that
// escapes a test function fails the subtest with its message and traceback.
func runLuaTestFile(t *testing.T, L *lua.LState, path string) {
	t.Helper()
	proto, err := CompileFile(path)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if err := DoProto(L, proto); err != nil {
		t.Fatalf("load %s: %s", path, describeLuaError(L, err))
	}
	var names []string
	L.G.Global.ForEach(func(k, v lua.LValue) {
		name, isStr := k.(lua.LString)
		_, isFn := v.(*lua.LFunction)
		if isStr && isFn && strings.HasPrefix(string(name), "Test") {
			names = append(names, string(name))
		}
	})
	if len(names) == 0 {
		t.Fatalf("%s defines no global Test functions", path)
	}
	sort.Strings(names)
	registerLuaT(L)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			lt := &luaT{t: t}
			ud := L.NewUserData()
			ud.Value = lt
			L.SetMetatable(ud, L.GetTypeMetatable(luaTestingTypeName))
			err := L.CallByParam(lua.P{Fn: L.GetGlobal(name), NRet: 0, Protect: true}, ud)
			if lt.failed {
				t.FailNow() // the failure was reported by t:fatal
			}
			if err != nil {
				t.Errorf("%s", describeLuaError(L, err))
			}
		})
	}
}

// describeLuaError renders an error from a Lua call, using __tostring for
// raised tables (e.g. structured mailbot errors).
func describeLuaError(L *lua.LState, err error) string {
	var ae *lua.ApiError
	if errors.As(err, &ae) && ae.Object != nil {
		if _, isStr := ae.Object.(lua.LString); !isStr {
			return L.ToStringMeta(ae.Object).String() + "\n" + ae.StackTrace
		}
	}
	return err.Error()
}

// registerLuaT installs the `t` metatable in L once.
func registerLuaT(L *lua.LState) {
	if _, ok := L.GetTypeMetatable(luaTestingTypeName).(*lua.LTable); ok {
		return
	}
	mt := L.NewTypeMetatable(luaTestingTypeName)
	L.SetField(mt, "__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"error": func(L *lua.LState) int {
			lt := checkLuaT(L)
			lt.t.Helper()
			lt.t.Errorf("%s %s", L.Where(1), luaMsg(L, 2, "error"))
			return 0
		},
		"fatal": func(L *lua.LState) int {
			lt := checkLuaT(L)
			lt.t.Helper()
			lt.t.Errorf("%s %s", L.Where(1), luaMsg(L, 2, "fatal"))
			lt.failed = true
			L.RaiseError(errLuaFatal)
			return 0
		},
		"log": func(L *lua.LState) int {
			lt := checkLuaT(L)
			lt.t.Helper()
			lt.t.Logf("%s %s", L.Where(1), luaMsg(L, 2, ""))
			return 0
		},
		"eq": func(L *lua.LState) int {
			lt := checkLuaT(L)
			lt.t.Helper()
			got, want := L.Get(2), L.Get(3)
			ok := luaDeepEqual(got, want, map[[2]*lua.LTable]bool{})
			if !ok {
				lt.t.Errorf("%s %s: got %s, want %s", L.Where(1), luaMsg(L, 4, "not equal"),
					luaRepr(got, 0), luaRepr(want, 0))
			}
			L.Push(lua.LBool(ok))
			return 1
		},
		"ok": func(L *lua.LState) int {
			lt := checkLuaT(L)
			lt.t.Helper()
			ok := lua.LVAsBool(L.Get(2))
			if !ok {
				lt.t.Errorf("%s %s: got %s", L.Where(1), luaMsg(L, 3, "not ok"), luaRepr(L.Get(2), 0))
			}
			L.Push(lua.LBool(ok))
			return 1
		},
		"name": func(L *lua.LState) int {
			L.Push(lua.LString(checkLuaT(L).t.Name()))
			return 1
		},
		"tempdir": func(L *lua.LState) int {
			L.Push(lua.LString(checkLuaT(L).t.TempDir()))
			return 1
		},
	}))
}

// checkLuaT returns the *luaT at argument 1 (the method receiver).
func checkLuaT(L *lua.LState) *luaT {
	ud := L.CheckUserData(1)
	if lt, ok := ud.Value.(*luaT); ok {
		return lt
	}
	L.ArgError(1, "testing t expected")
	return nil
}

// luaMsg returns argument n as a string, or def when absent.
func luaMsg(L *lua.LState, n int, def string) string {
	if L.GetTop() < n || L.Get(n) == lua.LNil {
		return def
	}
	return L.ToStringMeta(L.Get(n)).String()
}

// luaDeepEqual compares values structurally: tables by their contents,
// everything else with raw equality (NaN equals NaN, for tests' sake).
func luaDeepEqual(a, b lua.LValue, seen map[[2]*lua.LTable]bool) bool {
	ta, okA := a.(*lua.LTable)
	tb, okB := b.(*lua.LTable)
	if !okA || !okB {
		if na, ok := a.(lua.LNumber); ok {
			if nb, ok := b.(lua.LNumber); ok && math.IsNaN(float64(na)) && math.IsNaN(float64(nb)) {
				return true
			}
		}
		return a == b
	}
	if ta == tb || seen[[2]*lua.LTable{ta, tb}] {
		return true
	}
	seen[[2]*lua.LTable{ta, tb}] = true
	equal := true
	ta.ForEach(func(k, v lua.LValue) {
		if equal && !luaDeepEqual(v, tb.RawGet(k), seen) {
			equal = false
		}
	})
	tb.ForEach(func(k, _ lua.LValue) {
		if equal && ta.RawGet(k) == lua.LNil {
			equal = false
		}
	})
	return equal
}

// luaRepr renders a value for failure messages: strings quoted, tables as
// constructors with sorted keys.
func luaRepr(v lua.LValue, depth int) string {
	switch x := v.(type) {
	case lua.LString:
		return strconv.Quote(string(x))
	case *lua.LTable:
		if depth > 8 {
			return "{...}"
		}
		type kv struct{ k, v string }
		var items []kv
		n := x.Len()
		for i := 1; i <= n; i++ {
			items = append(items, kv{"", luaRepr(x.RawGetInt(i), depth+1)})
		}
		var named []kv
		x.ForEach(func(k, val lua.LValue) {
			if num, ok := k.(lua.LNumber); ok && float64(num) == math.Trunc(float64(num)) && num >= 1 && int(num) <= n {
				return
			}
			key := fmt.Sprintf("[%s]", luaRepr(k, depth+1))
			if s, ok := k.(lua.LString); ok {
				key = string(s)
			}
			named = append(named, kv{key, luaRepr(val, depth+1)})
		})
		sort.Slice(named, func(i, j int) bool { return named[i].k < named[j].k })
		parts := make([]string, 0, len(items)+len(named))
		for _, it := range items {
			parts = append(parts, it.v)
		}
		for _, it := range named {
			parts = append(parts, it.k+" = "+it.v)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return v.String()
}

// newTestState returns NewState(opts), closed when the test ends.
func newTestState(t *testing.T, opts Options) *lua.LState {
	t.Helper()
	L := NewState(opts)
	t.Cleanup(L.Close)
	return L
}

// evalLua runs src in L and returns every value it returns.
func evalLua(L *lua.LState, src string) ([]lua.LValue, error) {
	top := L.GetTop()
	fn, err := L.LoadString(src)
	if err != nil {
		return nil, err
	}
	L.Push(fn)
	if err := L.PCall(0, lua.MultRet, nil); err != nil {
		return nil, err
	}
	n := L.GetTop() - top
	out := make([]lua.LValue, n)
	for i := range out {
		out[i] = L.Get(top + 1 + i)
	}
	L.SetTop(top)
	return out, nil
}

// evalString runs src, which must return one string, failing the test on error.
func evalString(t *testing.T, L *lua.LState, src string) string {
	t.Helper()
	out, err := evalLua(L, src)
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	if len(out) != 1 {
		t.Fatalf("%s: returned %d values, want 1", src, len(out))
	}
	s, ok := out[0].(lua.LString)
	if !ok {
		t.Fatalf("%s: returned %s, want a string", src, out[0].Type())
	}
	return string(s)
}

// luaErrorMessage returns the raised message of a Lua error (without the
// traceback), or "" for nil.
func luaErrorMessage(err error) string {
	var ae *lua.ApiError
	if errors.As(err, &ae) {
		return ae.Object.String()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// luaString converts a Go string for SetGlobal.
func luaString(s string) lua.LValue { return lua.LString(s) }
