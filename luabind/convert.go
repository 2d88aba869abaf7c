package luabind

import (
	"fmt"
	"sort"

	lua "github.com/yuin/gopher-lua"
)

// FromGo converts plain Go data — nil, bool, string, numbers, []any and
// map[string]any, as ToGo and encoding/json produce — to a Lua value. Other
// types are formatted with fmt, so a host can never crash a script with an
// unexpected value.
func FromGo(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case float32:
		return lua.LNumber(x)
	case []any:
		t := L.CreateTable(len(x), 0)
		for _, e := range x {
			t.Append(FromGo(L, e))
		}
		return t
	case map[string]any:
		t := L.CreateTable(0, len(x))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			t.RawSetString(k, FromGo(L, x[k]))
		}
		return t
	}
	return lua.LString(fmt.Sprint(v))
}
