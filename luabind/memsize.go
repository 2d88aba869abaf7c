package luabind

import (
	"unsafe"

	lua "github.com/yuin/gopher-lua"
)

// Approximate costs, in bytes, of gopher-lua's representations on a 64-bit
// machine, measured against the Go heap: they make stateSize track what a
// script really holds within a few tens of percent.
const (
	sizeSlot       = 16  // an LValue (interface) in a table, stack or upvalue
	sizeNumber     = 8   // the boxed float64 behind a number value
	sizeArraySpare = 16  // spare capacity of a growing array part, per entry
	sizeHashEntry  = 140 // a hash-part entry with its key and value: map slot, key list, index
	sizeHashPart   = 320 // the maps of a table's hash part, however small
	sizeTable      = 120 // an empty table
	sizeFunction   = 80  // a closure, without upvalues
	sizeUpvalue    = 48
	sizeUserData   = 64  // a userdata; the Go value behind it is not counted
	sizeThread     = 512 // a coroutine, besides its value stack
	sizeString     = 16  // string header, besides the bytes
	// dedupBytes is the length from which strings are counted once per
	// backing array: a large string stored under many keys costs one copy.
	dedupBytes = 256
)

// sizer adds up the Lua values reachable from a state.
type sizer struct {
	limit  int64 // stop once total exceeds it (0: walk everything)
	total  int64
	seen   map[unsafe.Pointer]struct{}
	strs   map[*byte]struct{}
	protos map[*lua.FunctionProto]struct{}
	todo   []lua.LValue
}

// stateSize estimates the memory held by the Lua values reachable from L's
// global state: the globals, the registry (loaded modules), the stacks of
// the running thread and its resumers, and everything reachable from
// those, including other coroutines' stacks. over reports that the estimate
// exceeds limit; the walk stops there, so size is then a lower bound. It
// must run on the goroutine that runs L, between instructions.
func stateSize(L *lua.LState, limit int64) (size int64, over bool) {
	s := &sizer{limit: limit, seen: map[unsafe.Pointer]struct{}{}, strs: map[*byte]struct{}{},
		protos: map[*lua.FunctionProto]struct{}{}}
	g := L.G
	s.push(g.Registry)
	s.push(g.Global)
	s.push(g.MainThread)
	for th := g.CurrentThread; th != nil; th = th.Parent {
		s.push(th)
	}
	for len(s.todo) > 0 {
		if s.limit > 0 && s.total > s.limit {
			return s.total, true
		}
		v := s.todo[len(s.todo)-1]
		s.todo = s.todo[:len(s.todo)-1]
		s.visit(v)
	}
	return s.total, s.limit > 0 && s.total > s.limit
}

// push counts v's inline cost and queues the values it references.
func (s *sizer) push(v lua.LValue) {
	switch x := v.(type) {
	case nil, *lua.LNilType, lua.LBool:
	case lua.LNumber:
		s.total += sizeNumber
	case lua.LString:
		s.str(string(x))
	case *lua.LTable:
		s.ref(unsafe.Pointer(x), v)
	case *lua.LFunction:
		s.ref(unsafe.Pointer(x), v)
	case *lua.LUserData:
		s.ref(unsafe.Pointer(x), v)
	case *lua.LState:
		s.ref(unsafe.Pointer(x), v)
	default: // channels (trusted sandbox only)
		s.total += sizeUserData
	}
}

// ref queues a reference value the first time it is seen.
func (s *sizer) ref(p unsafe.Pointer, v lua.LValue) {
	if p == nil {
		return
	}
	if _, ok := s.seen[p]; ok {
		return
	}
	s.seen[p] = struct{}{}
	s.todo = append(s.todo, v)
}

// str counts a string's bytes, once per backing array for large strings.
func (s *sizer) str(x string) {
	if len(x) >= dedupBytes {
		p := unsafe.StringData(x)
		if _, ok := s.strs[p]; ok {
			return
		}
		s.strs[p] = struct{}{}
	}
	s.total += sizeString + int64(len(x))
}

// visit counts a reference value's own memory and pushes its contents.
func (s *sizer) visit(v lua.LValue) {
	switch x := v.(type) {
	case *lua.LTable:
		s.total += sizeTable
		hashed := false
		x.ForEach(func(k, val lua.LValue) {
			if _, isNum := k.(lua.LNumber); isNum {
				// Most likely in the array part, where keys take no room.
				s.total += sizeSlot + sizeArraySpare
			} else {
				s.total += sizeHashEntry
				hashed = true
				s.push(k)
			}
			s.push(val)
		})
		if hashed {
			s.total += sizeHashPart
		}
		if x.Metatable != nil {
			s.push(x.Metatable)
		}
	case *lua.LFunction:
		s.total += sizeFunction + int64(len(x.Upvalues))*(sizeUpvalue+sizeSlot)
		for _, uv := range x.Upvalues {
			if uv != nil {
				s.push(uv.Value())
			}
		}
		if x.Env != nil {
			s.push(x.Env)
		}
		if x.Proto != nil {
			s.proto(x.Proto)
		}
	case *lua.LUserData:
		s.total += sizeUserData
		s.push(x.Metatable)
		if x.Env != nil {
			s.push(x.Env)
		}
	case *lua.LState:
		s.thread(x)
	}
}

// proto counts a compiled function once: bytecode, constants, debug data.
func (s *sizer) proto(p *lua.FunctionProto) {
	if _, ok := s.protos[p]; ok {
		return
	}
	s.protos[p] = struct{}{}
	s.total += int64(len(p.Code))*4 + int64(len(p.DbgSourcePositions))*4 +
		int64(len(p.DbgLocals)+len(p.DbgCalls))*32 + int64(len(p.Constants))*sizeSlot
	for _, c := range p.Constants {
		s.push(c)
	}
	for _, c := range p.FunctionPrototypes {
		s.proto(c)
	}
}

// thread counts a coroutine (or the main state): its value stack and the
// values in every frame, the functions running there included.
func (s *sizer) thread(th *lua.LState) {
	s.total += sizeThread + int64(th.Options.RegistrySize)*sizeSlot
	if th.Env != nil {
		s.push(th.Env)
	}
	for level := 0; level <= th.Options.CallStackSize; level++ {
		dbg, ok := th.GetStack(level)
		if !ok {
			break
		}
		if fn, err := th.GetInfo("f", dbg, lua.LNil); err == nil {
			s.push(fn)
		}
		for n := 1; ; n++ {
			name, val := th.GetLocal(dbg, n)
			if name == "" {
				break
			}
			s.total += sizeSlot
			s.push(val)
		}
	}
}
