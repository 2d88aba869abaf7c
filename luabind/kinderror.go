package luabind

import (
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// kindErrorTypeName is the shared metatable of the error tables that
// raiseKind builds: tostring(err) reads "kind: message", as for the smtp
// and memory errors.
const kindErrorTypeName = "mailbot.kind.error"

// Error kinds raised by the report modules (chart, xlsx).
const (
	// kindInvalid: the script passed data the function cannot use (a
	// series of the wrong length, a width out of bounds, a table as a
	// cell). Fix the script; retrying does not help.
	kindInvalid = "invalid"
)

// raiseKind raises a structured error table {kind = kind, message = ...,
// where = "file:line"}, catchable with pcall like the smtp errors.
func raiseKind(L *lua.LState, kind, format string, args ...any) {
	t := L.CreateTable(0, 3)
	t.RawSetString("kind", lua.LString(kind))
	t.RawSetString("message", lua.LString(fmt.Sprintf(format, args...)))
	if where := luaWhere(L); where != "" {
		t.RawSetString("where", lua.LString(where))
	}
	mt := L.NewTypeMetatable(kindErrorTypeName) // returns the existing one after the first call
	if mt.RawGetString("__tostring") == lua.LNil {
		mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
			t := L.CheckTable(1)
			L.Push(lua.LString(L.GetField(t, "kind").String() + ": " + L.GetField(t, "message").String()))
			return 1
		}))
	}
	L.SetMetatable(t, mt)
	L.Error(t, 0)
}

// luaListLen returns the length of t when its keys are exactly 1..n, or -1.
// A list with holes (a nil in the middle) is not a list here: its length
// would depend on the table's layout.
func luaListLen(t *lua.LTable) int {
	count, max := 0, 0
	list := true
	t.ForEach(func(k, _ lua.LValue) {
		count++
		n, ok := k.(lua.LNumber)
		if !ok || n < 1 || n != lua.LNumber(int(n)) {
			list = false
			return
		}
		if int(n) > max {
			max = int(n)
		}
	})
	if !list || max != count {
		return -1
	}
	return count
}
