package luabind

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Errors that name what was nil.
//
// gopher-lua reports a call of nil as "attempt to call a non-function
// object" and indexing nil as "attempt to index a non-table object(nil)",
// without saying which variable it was. PUC Lua 5.1 says "attempt to call
// field 'sendmial' (a nil value)". To get there, nil gets a metatable whose
// __call, __index and __newindex raise the error themselves: the VM calls
// them instead of raising its own, with the calling Lua frame still on the
// stack. From that frame's current instruction the variable is found the
// way PUC Lua's getobjname does (a symbolic execution of the function's
// bytecode up to that instruction: OP_GETGLOBAL is a global, OP_GETTABLE
// with a constant key a field, OP_SELF a method, OP_GETUPVAL an upvalue, a
// local's register a local), and names one edit away on the same object,
// module table or among the globals are offered as "did you mean ...?".
//
// Only nil is given a metatable: calling or indexing a table, a userdata or
// a string is unchanged, and nothing changes for code that does not fail.

// nilErrorsKey is the Lua registry field holding the state's method-name
// lists (see registerMethodNames).
const nilErrorsKey = "mailbot.methodnames"

// installNilErrors gives nil the metatable described above.
func installNilErrors(L *lua.LState) {
	mt := L.NewTable()
	mt.RawSetString("__call", L.NewFunction(nilCall))
	mt.RawSetString("__index", L.NewFunction(nilIndex))
	mt.RawSetString("__newindex", L.NewFunction(nilIndex))
	// getmetatable(nil) gives false: falsy, as nil was, and the table
	// stays out of scripts' reach.
	mt.RawSetString("__metatable", lua.LFalse)
	L.SetMetatable(lua.LNil, mt)
}

// registerMethodNames records the method names of objects whose metatable
// has an __index function (which cannot be listed), for "did you mean".
func registerMethodNames(L *lua.LState, mt *lua.LTable, names []string) {
	reg, ok := L.GetField(L.Get(lua.RegistryIndex), nilErrorsKey).(*lua.LTable)
	if !ok {
		reg = L.NewTable()
		L.SetField(L.Get(lua.RegistryIndex), nilErrorsKey, reg)
	}
	list := L.NewTable()
	for _, n := range names {
		list.Append(lua.LString(n))
	}
	reg.RawSet(mt, list)
}

// nilCall is nil's __call: the arguments are the nil itself and then the
// call's arguments (for a method call, the receiver first).
func nilCall(L *lua.LState) int {
	L.RaiseError("attempt to call %s", callMessage(L))
	return 0
}

// callMessage names the nil being called: "field 'x' (a nil value); did
// you mean y?", or "a nil value" when it has no name.
func callMessage(L *lua.LState) (what string) {
	what = "a nil value"
	defer func() {
		// Naming is a courtesy: whatever goes wrong, the plain message.
		if recover() != nil {
			what = "a nil value"
		}
	}()
	f, ok := callerFrame(L)
	if !ok {
		return what
	}
	i := f.fn.Proto.Code[f.pc]
	if op := opcode(i); op != lua.OP_CALL && op != lua.OP_TAILCALL {
		return what
	}
	kind, name := f.objName(argA(i), f.pc)
	if kind == "" {
		return what
	}
	return fmt.Sprintf("%s '%s' (a nil value)", kind, name) + suggest(name, f.candidates(kind, argA(i), L.Get(2), true))
}

// nilIndex is nil's __index and __newindex: the arguments are the nil and
// the key (and, for __newindex, the value).
func nilIndex(L *lua.LState) int {
	L.RaiseError("%s", indexMessage(L))
	return 0
}

// indexMessage names the nil being indexed.
func indexMessage(L *lua.LState) (msg string) {
	msg = fmt.Sprintf("attempt to index a nil value with key '%s'", L.Get(2).String())
	plain := msg
	defer func() {
		if recover() != nil {
			msg = plain
		}
	}()
	f, ok := callerFrame(L)
	if !ok {
		return msg
	}
	i := f.fn.Proto.Code[f.pc]
	obj := -1
	switch opcode(i) {
	case lua.OP_GETTABLE, lua.OP_GETTABLEKS, lua.OP_SELF:
		obj = argB(i)
	case lua.OP_SETTABLE, lua.OP_SETTABLEKS:
		obj = argA(i)
	default:
		return msg
	}
	kind, name := f.objName(obj, f.pc)
	if kind == "" {
		return msg
	}
	return fmt.Sprintf("attempt to index %s '%s' (a nil value)", kind, name) + suggest(name, f.candidates(kind, obj, lua.LNil, false))
}

// frame is the Lua function that made the failing call or index, stopped
// at instruction pc.
type frame struct {
	L   *lua.LState
	dbg *lua.Debug
	fn  *lua.LFunction
	pc  int
}

// callerFrame returns the Lua frame that called the running Go function,
// when it is a Lua function and its current instruction is known.
func callerFrame(L *lua.LState) (frame, bool) {
	dbg, ok := L.GetStack(1)
	if !ok {
		return frame{}, false
	}
	v, err := L.GetInfo("f", dbg, lua.LNil)
	fn, isFn := v.(*lua.LFunction)
	if err != nil || !isFn || fn.IsG || fn.Proto == nil {
		return frame{}, false
	}
	pc, ok := framePC(dbg)
	if !ok || pc < 0 || pc >= len(fn.Proto.Code) {
		return frame{}, false
	}
	return frame{L: L, dbg: dbg, fn: fn, pc: pc}, true
}

// framePC returns the index of the instruction a frame is executing.
// gopher-lua keeps it in an unexported field of the frame behind
// lua.Debug and offers no accessor; reading it through reflect is
// read-only and fails safe (no name in the message) should the layout
// change. TestNilCallNames pins the behaviour to the module version.
func framePC(dbg *lua.Debug) (int, bool) {
	f := reflect.ValueOf(dbg).Elem().FieldByName("frame")
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() {
		return 0, false
	}
	pc := f.Elem().FieldByName("Pc")
	if !pc.IsValid() || !pc.CanInt() {
		return 0, false
	}
	// Pc has already moved past the instruction being executed.
	return int(pc.Int()) - 1, true
}

// Instruction fields (gopher-lua's layout: opcode 6 bits, A 8, C 9, B 9).
func opcode(i uint32) int { return int(i >> 26) }
func argA(i uint32) int   { return int(i>>18) & 0xff }
func argB(i uint32) int   { return int(i & 0x1ff) }
func argC(i uint32) int   { return int(i>>9) & 0x1ff }
func argBx(i uint32) int  { return int(i & 0x3ffff) }
func argSBx(i uint32) int { return argBx(i) - (0x3ffff >> 1) }

const rkConstant = 1 << 8 // an RK operand with this bit is a constant index

// writes reports whether instruction i (at pc) changes register reg.
func writes(i uint32, reg int) bool {
	a := argA(i)
	switch opcode(i) {
	case lua.OP_MOVE, lua.OP_MOVEN, lua.OP_LOADK, lua.OP_LOADBOOL, lua.OP_GETUPVAL,
		lua.OP_GETGLOBAL, lua.OP_GETTABLE, lua.OP_GETTABLEKS, lua.OP_NEWTABLE,
		lua.OP_ADD, lua.OP_SUB, lua.OP_MUL, lua.OP_DIV, lua.OP_MOD, lua.OP_POW,
		lua.OP_UNM, lua.OP_NOT, lua.OP_LEN, lua.OP_CONCAT, lua.OP_TESTSET,
		lua.OP_FORPREP, lua.OP_CLOSURE:
		return a == reg
	case lua.OP_LOADNIL:
		return a <= reg && reg <= argB(i)
	case lua.OP_SELF:
		return reg == a || reg == a+1
	case lua.OP_FORLOOP:
		return reg == a || reg == a+3
	case lua.OP_CALL, lua.OP_TAILCALL, lua.OP_VARARG:
		return reg >= a
	case lua.OP_TFORLOOP:
		return reg >= a+2
	}
	return false
}

// setter returns the pc of the last instruction before lastpc that set
// register reg, or -1; like PUC Lua 5.1's symbexec it follows forward
// jumps that stay before lastpc and skips a closure's upvalue pseudo
// instructions.
func (f frame) setter(lastpc, reg int) int {
	p := f.fn.Proto
	last := -1
	for pc := 0; pc < lastpc; pc++ {
		i := p.Code[pc]
		if writes(i, reg) {
			last = pc
		}
		switch opcode(i) {
		case lua.OP_JMP:
			if dest := pc + 1 + argSBx(i); pc < dest && dest <= lastpc {
				pc = dest - 1
			}
		case lua.OP_CLOSURE:
			if bx := argBx(i); bx < len(p.FunctionPrototypes) {
				pc += int(p.FunctionPrototypes[bx].NumUpvalues)
			}
		}
	}
	return last
}

// objName names what register reg held at instruction pc, the way PUC Lua
// 5.1's getobjname does: kind is "local", "global", "field", "method" or
// "upvalue", or "" when the value has no name (a call's result, say).
func (f frame) objName(reg, pc int) (kind, name string) {
	if n, ok := f.fn.LocalName(reg+1, pc); ok && !strings.HasPrefix(n, "(") {
		return "local", n
	}
	s := f.setter(pc, reg)
	if s < 0 {
		return "", ""
	}
	p := f.fn.Proto
	i := p.Code[s]
	switch opcode(i) {
	case lua.OP_GETGLOBAL:
		if k, ok := f.constant(argBx(i)).(lua.LString); ok {
			return "global", string(k)
		}
	case lua.OP_MOVE:
		if b := argB(i); b < argA(i) {
			return f.objName(b, pc)
		}
	case lua.OP_GETTABLE, lua.OP_GETTABLEKS:
		return "field", f.constName(argC(i))
	case lua.OP_GETUPVAL:
		if b := argB(i); b < len(p.DbgUpvalues) {
			return "upvalue", p.DbgUpvalues[b]
		}
		return "upvalue", "?"
	case lua.OP_SELF:
		return "method", f.constName(argC(i))
	}
	return "", ""
}

func (f frame) constant(idx int) lua.LValue {
	if idx < 0 || idx >= len(f.fn.Proto.Constants) {
		return lua.LNil
	}
	return f.fn.Proto.Constants[idx]
}

// constName is PUC Lua's kname: a constant string key, else "?".
func (f frame) constName(rk int) string {
	if rk&rkConstant != 0 {
		if s, ok := f.constant(rk &^ rkConstant).(lua.LString); ok {
			return string(s)
		}
	}
	return "?"
}

// value returns what register reg held just before instruction pc, when
// it can be found without running code: the live register when nothing
// changed it since, else what the instruction that set it read (a global,
// an upvalue, another register, a field of a known table, a constant).
func (f frame) value(reg, pc, depth int) (lua.LValue, bool) {
	if depth > 8 {
		return lua.LNil, false
	}
	changed := false
	for q := pc; q < f.pc; q++ {
		if writes(f.fn.Proto.Code[q], reg) {
			changed = true
			break
		}
	}
	if !changed {
		if n, v := f.L.GetLocal(f.dbg, reg+1); n != "" {
			return v, true
		}
	}
	s := f.setter(pc, reg)
	if s < 0 {
		return lua.LNil, false
	}
	i := f.fn.Proto.Code[s]
	switch opcode(i) {
	case lua.OP_GETGLOBAL:
		return rawIndex(f.L, f.fn.Env, f.constant(argBx(i))), true
	case lua.OP_GETUPVAL:
		if n, v := f.L.GetUpvalue(f.fn, argB(i)+1); n != "" {
			return v, true
		}
	case lua.OP_MOVE:
		return f.value(argB(i), s, depth+1)
	case lua.OP_LOADK:
		return f.constant(argBx(i)), true
	case lua.OP_GETTABLE, lua.OP_GETTABLEKS:
		t, ok := f.value(argB(i), s, depth+1)
		if !ok {
			return lua.LNil, false
		}
		var key lua.LValue
		if c := argC(i); c&rkConstant != 0 {
			key = f.constant(c &^ rkConstant)
		} else if key, ok = f.value(c, s, depth+1); !ok {
			return lua.LNil, false
		}
		return rawIndex(f.L, t, key), true
	}
	return lua.LNil, false
}

// rawIndex looks key up in v and the __index tables behind it, calling no
// metamethod functions (they could fail or have side effects).
func rawIndex(L *lua.LState, v, key lua.LValue) lua.LValue {
	for range 10 {
		if t, ok := v.(*lua.LTable); ok {
			if r := t.RawGet(key); r != lua.LNil {
				return r
			}
		}
		mt, ok := L.GetMetatable(v).(*lua.LTable)
		if !ok {
			return lua.LNil
		}
		next, ok := mt.RawGetString("__index").(*lua.LTable)
		if !ok {
			return lua.LNil
		}
		v = next
	}
	return lua.LNil
}

// candidates lists the names that a misspelt name of the given kind could
// have meant: for a method, the receiver's methods; for a field, the keys
// of the table indexed; for a global, the globals and the function's
// locals and upvalues. With callable set only functions are listed.
func (f frame) candidates(kind string, reg int, receiver lua.LValue, callable bool) []string {
	var obj lua.LValue = lua.LNil
	switch kind {
	case "method":
		obj = receiver
	case "field":
		s := f.setter(f.pc, reg)
		if n, ok := f.fn.LocalName(reg+1, f.pc); s < 0 || ok && !strings.HasPrefix(n, "(") {
			return nil
		}
		// Through MOVEs to the GETTABLE that produced the nil.
		for depth := 0; opcode(f.fn.Proto.Code[s]) == lua.OP_MOVE && depth < 8; depth++ {
			s = f.setter(s, argB(f.fn.Proto.Code[s]))
			if s < 0 {
				return nil
			}
		}
		i := f.fn.Proto.Code[s]
		if op := opcode(i); op != lua.OP_GETTABLE && op != lua.OP_GETTABLEKS {
			return nil
		}
		var ok bool
		if obj, ok = f.value(argB(i), s, 0); !ok {
			return nil
		}
	case "global":
		obj = f.fn.Env
	default:
		return nil
	}
	seen := map[string]bool{}
	var names []string
	add := func(name string, v lua.LValue) {
		if seen[name] || v == lua.LNil || callable && !isCallable(f.L, v) {
			return
		}
		seen[name] = true
		names = append(names, name)
	}
	v := obj
	for range 10 {
		if t, ok := v.(*lua.LTable); ok {
			t.ForEach(func(k, val lua.LValue) {
				if s, ok := k.(lua.LString); ok {
					add(string(s), val)
				}
			})
		}
		mt, ok := f.L.GetMetatable(v).(*lua.LTable)
		if !ok {
			break
		}
		if reg, ok := f.L.GetField(f.L.Get(lua.RegistryIndex), nilErrorsKey).(*lua.LTable); ok {
			if list, ok := reg.RawGet(mt).(*lua.LTable); ok {
				for j := 1; j <= list.Len(); j++ {
					add(list.RawGetInt(j).String(), lua.LTrue)
				}
			}
		}
		if v, ok = mt.RawGetString("__index").(*lua.LTable); !ok {
			break
		}
	}
	if kind == "global" {
		for n := 1; ; n++ {
			name, val := f.L.GetLocal(f.dbg, n)
			if name == "" {
				break
			}
			if _, active := f.fn.LocalName(n, f.pc); active && !strings.HasPrefix(name, "(") {
				add(name, val)
			}
		}
		for n := 1; ; n++ {
			name, val := f.L.GetUpvalue(f.fn, n)
			if name == "" {
				break
			}
			add(name, val)
		}
	}
	return names
}

// isCallable reports whether v can be called: a function, or a value
// whose metatable has __call. A registered method name counts (LTrue).
func isCallable(L *lua.LState, v lua.LValue) bool {
	switch v.(type) {
	case *lua.LFunction:
		return true
	case lua.LBool:
		return v == lua.LTrue
	case *lua.LTable, *lua.LUserData:
		mt, ok := L.GetMetatable(v).(*lua.LTable)
		return ok && mt.RawGetString("__call") != lua.LNil
	}
	return false
}

// suggest returns "; did you mean X?" naming the candidates one edit away
// from name (Damerau-Levenshtein distance 1), or "".
func suggest(name string, candidates []string) string {
	var close []string
	for _, c := range candidates {
		if c != name && oneEdit(name, c) {
			close = append(close, c)
		}
	}
	if len(close) == 0 {
		return ""
	}
	sort.Strings(close)
	if len(close) > 3 {
		close = close[:3]
	}
	list := close[0]
	if n := len(close); n > 1 {
		list = strings.Join(close[:n-1], ", ") + " or " + close[n-1]
	}
	return "; did you mean " + list + "?"
}

// oneEdit reports whether a and b are at Damerau-Levenshtein distance
// exactly 1: one character inserted, deleted, replaced, or two adjacent
// characters swapped.
func oneEdit(a, b string) bool {
	x, y := []rune(a), []rune(b)
	if len(x) > len(y) {
		x, y = y, x
	}
	switch len(y) - len(x) {
	case 0:
		var diff []int
		for i := range x {
			if x[i] != y[i] {
				diff = append(diff, i)
				if len(diff) > 2 {
					return false
				}
			}
		}
		switch len(diff) {
		case 1:
			return true
		case 2:
			i, j := diff[0], diff[1]
			return j == i+1 && x[i] == y[j] && x[j] == y[i]
		}
		return false
	case 1:
		i := 0
		for i < len(x) && x[i] == y[i] {
			i++
		}
		return string(x[i:]) == string(y[i+1:])
	}
	return false
}
