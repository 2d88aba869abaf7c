package luabind

import (
	"fmt"
	"math"
	"strings"
	"unsafe"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind/internal/luapattern"
)

// Built-ins that can build a large result in one Go call, where the
// watchdog (which acts between Lua instructions) cannot stop them, are
// replaced by versions that refuse a result larger than the memory limit
// before allocating it, and that check the run's context while they work,
// so that a run timeout interrupts them too.

// chunkBytes is how much a capped built-in copies between two checks of
// the run's context.
const chunkBytes = 1 << 20

// installLimits replaces string.rep, string.format, string.gsub and
// table.concat with their capped versions, and makes coroutines run under
// the context of the run that resumes them.
func installLimits(L *lua.LState, o *Options) {
	registerMemoryErrorType(L)
	limit := memoryLimit(o)
	if str, ok := L.GetGlobal(lua.StringLibName).(*lua.LTable); ok {
		str.RawSetString("rep", L.NewFunction(strRep(limit)))
		str.RawSetString("gsub", L.NewFunction(strGsub(limit)))
		str.RawSetString("find", L.NewFunction(strFind))
		str.RawSetString("match", L.NewFunction(strMatch))
		gmatch := L.NewFunction(strGmatch)
		str.RawSetString("gmatch", gmatch)
		str.RawSetString("gfind", gmatch)
		if orig, ok := str.RawGetString("format").(*lua.LFunction); ok && orig.IsG {
			str.RawSetString("format", L.NewFunction(strFormat(limit, orig.GFunction)))
		}
	}
	if tab, ok := L.GetGlobal(lua.TabLibName).(*lua.LTable); ok {
		tab.RawSetString("concat", L.NewFunction(tableConcat(limit)))
	}
	if co, ok := L.GetGlobal(lua.CoroutineLibName).(*lua.LTable); ok {
		wrapCoroutines(L, co)
	}
	capLoaders(L, limit)
}

// compileFactor is how many bytes compiling takes per byte of source, at
// its peak (gopher-lua builds a full syntax tree first): about 90 for
// code made of many short statements.
const compileFactor = 128

// capLoaders makes loadstring and load refuse a source whose compilation
// would take more memory than the limit: a single Go call, where the
// watchdog cannot stop it.
func capLoaders(L *lua.LState, limit int64) {
	loadstring, ok := L.GetGlobal("loadstring").(*lua.LFunction)
	if !ok || !loadstring.IsG || limit <= 0 {
		return
	}
	orig := loadstring.GFunction
	L.SetGlobal("loadstring", L.NewFunction(func(L *lua.LState) int {
		refuse(L, limit, "loadstring", float64(len(L.CheckString(1)))*compileFactor)
		return orig(L)
	}))
	if _, ok := L.GetGlobal("load").(*lua.LFunction); !ok {
		return
	}
	// load(f [, name]): gopher-lua's reading of the pieces, then the
	// size check, then the compilation loadstring does.
	L.SetGlobal("load", L.NewFunction(func(L *lua.LState) int {
		fn := L.CheckFunction(1)
		name := L.OptString(2, "?")
		var b strings.Builder
		for {
			L.Push(fn)
			L.Call(0, 1)
			ret := L.Get(-1)
			L.Pop(1)
			if ret == lua.LNil {
				break
			}
			if !lua.LVCanConvToString(ret) {
				L.Push(lua.LNil)
				L.Push(lua.LString("reader function must return a string"))
				return 2
			}
			piece := lua.LVAsString(ret)
			if piece == "" {
				break
			}
			refuse(L, limit, "load", float64(b.Len()+len(piece))*compileFactor)
			b.WriteString(piece)
		}
		L.SetTop(0)
		L.Push(lua.LString(b.String()))
		L.Push(lua.LString(name))
		return orig(L)
	}))
}

// chunkedBuilder builds a string of a known or unknown final size, checking
// the run's context every chunkBytes and refusing to grow past the limit.
// It grows its buffer by doubling, capped at the limit, so that building
// up to the limit allocates at most about twice the limit.
type chunkedBuilder struct {
	L     *lua.LState
	buf   []byte
	limit int64
	fn    string
	next  int // length at which to check the context again
}

func newChunkedBuilder(L *lua.LState, limit int64, fn string, size int) *chunkedBuilder {
	cb := &chunkedBuilder{L: L, limit: limit, fn: fn, next: chunkBytes}
	if size > 0 && limit > 0 && int64(size) <= limit {
		cb.buf = make([]byte, 0, size) // known size: one allocation, no copies
	}
	return cb
}

// write appends s.
func (cb *chunkedBuilder) write(s string) {
	n := len(cb.buf) + len(s)
	if cb.limit > 0 && int64(n) > cb.limit {
		refuse(cb.L, cb.limit, cb.fn, float64(n))
	}
	if n > cap(cb.buf) {
		c := max(2*cap(cb.buf), n, 64)
		if cb.limit > 0 {
			c = min(c, int(cb.limit))
		}
		buf := make([]byte, len(cb.buf), c)
		copy(buf, cb.buf)
		cb.buf = buf
	}
	cb.buf = append(cb.buf, s...)
	if len(cb.buf) >= cb.next {
		checkRun(cb.L)
		cb.next = len(cb.buf) + chunkBytes
	}
}

// String returns the result; the builder must not be written to after.
func (cb *chunkedBuilder) String() string {
	if len(cb.buf) == 0 {
		return ""
	}
	return unsafe.String(&cb.buf[0], len(cb.buf))
}

// strRep: string.rep(s, n), refusing a result over the limit and building
// a large one in chunks.
func strRep(limit int64) lua.LGFunction {
	return func(L *lua.LState) int {
		s := L.CheckString(1)
		n := math.Trunc(float64(L.CheckNumber(2)))
		if n <= 0 || s == "" || n != n {
			L.Push(lua.LString(""))
			return 1
		}
		size := float64(len(s)) * n
		refuse(L, limit, "string.rep", size)
		if size >= 1<<62 {
			L.RaiseError("string.rep: result too large")
		}
		count := int(n)
		if size <= chunkBytes {
			L.Push(lua.LString(strings.Repeat(s, count)))
			return 1
		}
		per := max(1, chunkBytes/len(s))
		block := strings.Repeat(s, per)
		cb := newChunkedBuilder(L, limit, "string.rep", int(size))
		for ; count >= per; count -= per {
			cb.write(block)
		}
		cb.write(strings.Repeat(s, count))
		L.Push(lua.LString(cb.String()))
		return 1
	}
}

// tableConcat: table.concat(t [, sep [, i [, j]]]), with gopher-lua's
// handling of i and j, refusing a result over the limit.
func tableConcat(limit int64) lua.LGFunction {
	return func(L *lua.LState) int {
		tbl := L.CheckTable(1)
		sep := L.OptString(2, "")
		n := tbl.Len()
		i := L.OptInt(3, 1)
		j := L.OptInt(4, n)
		if L.GetTop() == 3 && (i > n || i < 1) {
			L.Push(lua.LString(""))
			return 1
		}
		i = max(min(i, n), 1)
		j = min(j, n)
		if i > j {
			L.Push(lua.LString(""))
			return 1
		}
		size := float64(len(sep)) * float64(j-i)
		for k := i; k <= j; k++ {
			v := tbl.RawGetInt(k)
			if !lua.LVCanConvToString(v) {
				L.RaiseError("invalid value (%s) at index %d in table for concat", v.Type().String(), k)
			}
			size += float64(len(lua.LVAsString(v)))
		}
		refuse(L, limit, "table.concat", size)
		cb := newChunkedBuilder(L, limit, "table.concat", int(size))
		for k := i; k <= j; k++ {
			cb.write(lua.LVAsString(tbl.RawGetInt(k)))
			if k != j {
				cb.write(sep)
			}
		}
		L.Push(lua.LString(cb.String()))
		return 1
	}
}

// strFormat: string.format, refusing a format whose widths, precisions and
// arguments add up to a result over the limit (Go's fmt, behind
// gopher-lua's string.format, allows widths up to a million per directive).
func strFormat(limit int64, orig lua.LGFunction) lua.LGFunction {
	return func(L *lua.LState) int {
		f := L.CheckString(1)
		if limit > 0 {
			refuse(L, limit, "string.format", formatResultSize(L, f))
		}
		return orig(L)
	}
}

// formatResultSize bounds from above the length of string.format(f, ...) with
// the arguments on L's stack.
func formatResultSize(L *lua.LState, f string) float64 {
	size := float64(len(f))
	arg := 2
	for k := 0; k < len(f); k++ {
		if f[k] != '%' {
			continue
		}
		k++
		if k < len(f) && f[k] == '%' {
			continue
		}
		for k < len(f) && strings.IndexByte("-+ #0", f[k]) >= 0 {
			k++
		}
		width, prec := 0, 0
		for k < len(f) && f[k] >= '0' && f[k] <= '9' {
			width = min(width*10+int(f[k]-'0'), 1e7)
			k++
		}
		if k < len(f) && f[k] == '.' {
			k++
			for k < len(f) && f[k] >= '0' && f[k] <= '9' {
				prec = min(prec*10+int(f[k]-'0'), 1e7)
				k++
			}
		}
		verb := byte(0)
		if k < len(f) {
			verb = f[k]
		}
		n := 32.0
		if arg <= L.GetTop() {
			if s, ok := L.Get(arg).(lua.LString); ok {
				n = float64(len(s))
				if verb == 'q' {
					n = 2*n + 2
				}
			}
		}
		size += float64(max(width, prec)) + n
		arg++
	}
	return size
}

// gsubBatch is how many matches string.gsub finds between two checks of
// the run's context.
const gsubBatch = 1024

// strGsub: string.gsub(s, pattern, repl [, n]). gopher-lua's version
// copies the whole string once per match; this one builds the result in
// one pass, refuses to grow it past the limit, and checks the run's
// context between batches of matches.
func strGsub(limit int64) lua.LGFunction {
	return func(L *lua.LState) int {
		str := L.CheckString(1)
		pat := L.CheckString(2)
		L.CheckTypes(3, lua.LTString, lua.LTTable, lua.LTFunction)
		repl := L.CheckAny(3)
		maxN := L.OptInt(4, -1)
		src := unsafe.Slice(unsafe.StringData(str), len(str))
		anchored := strings.HasPrefix(pat, "^")

		cb := newChunkedBuilder(L, limit, "string.gsub", 0)
		count, prev, offset := 0, 0, 0
		for maxN < 0 || count < maxN {
			want := gsubBatch
			if maxN >= 0 {
				want = min(want, maxN-count)
			}
			mds, err := luapattern.Find(pat, src, offset, want, func() { checkRun(L) })
			if err != nil {
				L.RaiseError("%s", err.Error())
			}
			for _, md := range mds {
				start, end := md.Capture(0), md.Capture(1)
				cb.write(str[prev:start])
				if r, ok := gsubReplacement(L, str, repl, md); ok {
					cb.write(r)
				} else {
					cb.write(str[start:end])
				}
				prev = end
				offset = max(start+1, end)
			}
			count += len(mds)
			if len(mds) < want || anchored || offset > len(str) {
				break
			}
			checkRun(L)
		}
		if count == 0 {
			L.SetTop(1)
			L.Push(lua.LNumber(0))
			return 2
		}
		cb.write(str[prev:])
		L.Push(lua.LString(cb.String()))
		L.Push(lua.LNumber(count))
		return 2
	}
}

// gsubReplacement returns the replacement of one match, with gopher-lua's
// semantics; ok is false when a table or function gave false or nil (the
// match is kept).
func gsubReplacement(L *lua.LState, str string, repl lua.LValue, md *luapattern.MatchData) (string, bool) {
	switch r := repl.(type) {
	case lua.LString:
		return expandReplacement(L, str, string(r), md), true
	case *lua.LTable:
		idx := 0
		if md.CaptureLength() > 2 {
			idx = 2
		}
		var v lua.LValue
		if md.IsPosCapture(idx) {
			v = L.GetTable(r, lua.LNumber(md.Capture(idx)))
		} else {
			v = L.GetField(r, str[md.Capture(idx):md.Capture(idx+1)])
		}
		if lua.LVIsFalse(v) {
			return "", false
		}
		return lua.LVAsString(v), true
	case *lua.LFunction:
		L.Push(r)
		nargs := 0
		if md.CaptureLength() > 2 {
			for i := 2; i < md.CaptureLength(); i += 2 {
				if md.IsPosCapture(i) {
					L.Push(lua.LNumber(md.Capture(i)))
				} else {
					L.Push(lua.LString(captured(L, md, str, i)))
				}
				nargs++
			}
		} else {
			L.Push(lua.LString(captured(L, md, str, 0)))
			nargs++
		}
		L.Call(nargs, 1)
		v := L.Get(-1)
		L.Pop(1)
		if lua.LVIsFalse(v) {
			return "", false
		}
		return lua.LVAsString(v), true
	}
	return "", false
}

// expandReplacement expands %0-%9 and %% in a gsub replacement string.
func expandReplacement(L *lua.LState, str, repl string, md *luapattern.MatchData) string {
	if strings.IndexByte(repl, '%') < 0 {
		return repl
	}
	var b strings.Builder
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c != '%' || i == len(repl)-1 {
			b.WriteByte(c)
			continue
		}
		i++
		switch d := repl[i]; {
		case d == '%':
			b.WriteByte('%')
		case d >= '0' && d <= '9':
			b.WriteString(captured(L, md, str, 2*int(d-'0')))
		default:
			b.WriteByte('%')
			b.WriteByte(d)
		}
	}
	return b.String()
}

// captured returns capture idx (a capture-array index: 2*n) of a match;
// %1 without captures is the whole match.
func captured(L *lua.LState, md *luapattern.MatchData, str string, idx int) string {
	if idx > 2 && idx >= md.CaptureLength() {
		L.RaiseError("invalid capture index")
	}
	if idx >= md.CaptureLength() && idx == 2 {
		idx = 0
	}
	if md.IsPosCapture(idx) {
		return fmt.Sprint(md.Capture(idx))
	}
	return str[md.Capture(idx):md.Capture(idx+1)]
}

// wrapCoroutines makes coroutine.resume and the functions coroutine.wrap
// returns run the coroutine under the resuming run's context. gopher-lua
// gives a coroutine a child of the context current when it was created:
// the coroutine would then not call the memory hook, and one created in
// an earlier run would fail with that run's ended context.
func wrapCoroutines(L *lua.LState, co *lua.LTable) {
	resume, ok1 := co.RawGetString("resume").(*lua.LFunction)
	wrap, ok2 := co.RawGetString("wrap").(*lua.LFunction)
	if !ok1 || !ok2 || !resume.IsG || !wrap.IsG {
		return
	}
	co.RawSetString("resume", L.NewFunction(func(L *lua.LState) int {
		adoptContext(L, L.CheckThread(1))
		return resume.GFunction(L)
	}))
	co.RawSetString("wrap", L.NewFunction(func(L *lua.LState) int {
		if wrap.GFunction(L) != 1 {
			return 0
		}
		fn, ok := L.Get(-1).(*lua.LFunction)
		if !ok || len(fn.Upvalues) != 1 {
			return 1
		}
		th, ok := fn.Upvalues[0].Value().(*lua.LState)
		if !ok {
			return 1
		}
		aux := fn.GFunction
		L.Pop(1)
		// The closure keeps the thread as its first upvalue, where
		// gopher-lua's resume helper looks for it.
		L.Push(L.NewClosure(func(L *lua.LState) int {
			adoptContext(L, th)
			return aux(L)
		}, th))
		return 1
	}))
}

// adoptContext gives th the context of the running L.
func adoptContext(L, th *lua.LState) {
	if ctx := L.Context(); ctx != nil && th.Context() != ctx {
		th.SetContext(ctx)
	}
}

// The pattern functions below are gopher-lua's, on luapattern, whose
// matcher checks the run's context while it backtracks.

// findOne returns the first match of pat in str from offset, or nil.
func findOne(L *lua.LState, pat, str string, offset int) *luapattern.MatchData {
	src := unsafe.Slice(unsafe.StringData(str), len(str))
	mds, err := luapattern.Find(pat, src, offset, 1, func() { checkRun(L) })
	if err != nil {
		L.RaiseError("%s", err.Error())
	}
	if len(mds) == 0 {
		return nil
	}
	return mds[0]
}

// pushCaptures pushes the captures of md (from capture index first).
func pushCaptures(L *lua.LState, str string, md *luapattern.MatchData, first int) {
	for i := first; i < md.CaptureLength(); i += 2 {
		if md.IsPosCapture(i) {
			L.Push(lua.LNumber(md.Capture(i)))
		} else {
			L.Push(lua.LString(str[md.Capture(i):md.Capture(i+1)]))
		}
	}
}

// stringIndex converts a Lua string index to a Go one, as gopher-lua does.
func stringIndex(str string, i int, start bool) int {
	if start && i != 0 {
		i--
	}
	l := len(str)
	if i < 0 {
		i = l + i + 1
	}
	i = max(0, i)
	if !start && i > l {
		i = l
	}
	return i
}

// strFind: string.find(s, pattern [, init [, plain]])
func strFind(L *lua.LState) int {
	str := L.CheckString(1)
	pattern := L.CheckString(2)
	if len(pattern) == 0 {
		L.Push(lua.LNumber(1))
		L.Push(lua.LNumber(0))
		return 2
	}
	init := stringIndex(str, L.OptInt(3, 1), true)
	if L.GetTop() == 4 && lua.LVAsBool(L.Get(4)) {
		pos := strings.Index(str[min(init, len(str)):], pattern)
		if pos < 0 {
			L.Push(lua.LNil)
			return 1
		}
		L.Push(lua.LNumber(init+pos) + 1)
		L.Push(lua.LNumber(init + pos + len(pattern)))
		return 2
	}
	md := findOne(L, pattern, str, init)
	if md == nil {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LNumber(md.Capture(0) + 1))
	L.Push(lua.LNumber(md.Capture(1)))
	pushCaptures(L, str, md, 2)
	return md.CaptureLength()/2 + 1
}

// strMatch: string.match(s, pattern [, init])
func strMatch(L *lua.LState) int {
	str := L.CheckString(1)
	pattern := L.CheckString(2)
	offset := L.OptInt(3, 1)
	if offset < 0 {
		offset = len(str) + offset + 1
	}
	offset = max(offset-1, 0)
	md := findOne(L, pattern, str, offset)
	if md == nil {
		L.Push(lua.LNil)
		return 1
	}
	if md.CaptureLength() == 2 {
		L.Push(lua.LString(str[md.Capture(0):md.Capture(1)]))
		return 1
	}
	pushCaptures(L, str, md, 2)
	return md.CaptureLength()/2 - 1
}

// strGmatch: string.gmatch(s, pattern) returns an iterator that finds the
// next match at each call (gopher-lua's finds them all first).
func strGmatch(L *lua.LState) int {
	str := L.CheckString(1)
	pattern := L.CheckString(2)
	anchored := strings.HasPrefix(pattern, "^")
	offset, done := 0, false
	L.Push(L.NewFunction(func(L *lua.LState) int {
		if done || offset > len(str) {
			return 0
		}
		md := findOne(L, pattern, str, offset)
		if md == nil || anchored {
			done = true
		}
		if md == nil {
			return 0
		}
		offset = max(md.Capture(0)+1, md.Capture(1))
		if md.CaptureLength() == 2 {
			L.Push(lua.LString(str[md.Capture(0):md.Capture(1)]))
			return 1
		}
		pushCaptures(L, str, md, 2)
		return md.CaptureLength()/2 - 1
	}))
	return 1
}
