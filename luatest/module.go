package luatest

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
)

// Failure is what a failing test reports.
type Failure struct {
	// Where is "file:line" of the assertion (or of the call that raised).
	Where string
	// Message says what failed: "t.eq: values differ", the error raised.
	Message string
	// Expected and Got are set by the comparing assertions.
	Expected, Got string
	// Note is the optional message the test passed to the assertion.
	Note string
}

// Details renders the failure's lines below "--- FAIL".
func (f *Failure) Details() string {
	var b strings.Builder
	if f.Where != "" {
		b.WriteString(f.Where + ": ")
	}
	b.WriteString(f.Message)
	if f.Note != "" {
		b.WriteString("\n    " + f.Note)
	}
	if f.Expected != "" || f.Got != "" {
		b.WriteString("\n    expected: " + f.Expected)
		b.WriteString("\n    got:      " + f.Got)
	}
	return b.String()
}

// where returns "file:line" of the Lua code that called the Go function
// running now.
func where(L *lua.LState) string {
	for level := 1; level < 8; level++ {
		w := strings.TrimSuffix(L.Where(level), ":")
		if w != "" && !strings.HasPrefix(w, "[G]") {
			return w
		}
		if _, ok := L.GetStack(level); !ok {
			break
		}
	}
	return ""
}

// fail records the failure of the running test and stops it.
func (s *session) fail(L *lua.LState, f *Failure) int {
	if f.Where == "" {
		f.Where = where(L)
	}
	s.failure = f
	L.Error(s.marker, 0)
	return 0
}

// note reads an assertion's optional message argument.
func note(L *lua.LState, n int) string {
	if v := L.Get(n); v != lua.LNil {
		return lua.LVAsString(v)
	}
	return ""
}

// loader returns the loader of the "testing" module.
func (s *session) loader(L *lua.LState) int {
	mod := L.NewTable()
	L.SetFuncs(mod, map[string]lua.LGFunction{
		"load":  s.luaLoad,
		"test":  s.luaTest,
		"sent":  s.luaSent,
		"eq":    s.luaEq,
		"ne":    s.luaNe,
		"ok":    s.luaOk,
		"match": s.luaMatch,
		"error": s.luaError,
		"fail": func(L *lua.LState) int {
			return s.fail(L, &Failure{Message: "t.fail: " + L.OptString(1, "failed")})
		},
	})
	clock := L.NewTable()
	L.SetFuncs(clock, map[string]lua.LGFunction{
		"set": func(L *lua.LState) int {
			t, err := parseTime(L.Get(1))
			if err != nil {
				L.ArgError(1, err.Error())
			}
			s.clock.set(t)
			return 0
		},
		"advance": func(L *lua.LState) int {
			var d time.Duration
			switch v := L.Get(1).(type) {
			case lua.LNumber:
				d = time.Duration(float64(v) * float64(time.Second))
			case lua.LString:
				x, err := time.ParseDuration(string(v))
				if err != nil {
					L.ArgError(1, fmt.Sprintf("%q is not a duration like \"90m\"", string(v)))
				}
				d = x
			default:
				L.ArgError(1, "a duration string or a number of seconds expected")
			}
			s.clock.set(s.clock.now().Add(d))
			return 0
		},
	})
	mod.RawSetString("clock", clock)
	fsT := L.NewTable()
	L.SetFuncs(fsT, map[string]lua.LGFunction{
		"write": func(L *lua.LState) int {
			if err := s.writePrivate(L.CheckString(1), []byte(L.CheckString(2))); err != nil {
				L.RaiseError("t.fs.write: %v", err)
			}
			return 0
		},
		"read": func(L *lua.LState) int {
			data, err := s.readPrivate(L.CheckString(1))
			if err != nil {
				L.Push(lua.LNil)
				L.Push(lua.LString(err.Error()))
				return 2
			}
			L.Push(lua.LString(data))
			return 1
		},
	})
	mod.RawSetString("fs", fsT)
	smtpT := L.NewTable()
	smtpT.RawSetString("reply", L.NewFunction(func(L *lua.LState) int {
		if err := s.cap.addReply(L.CheckString(1), L.CheckString(2)); err != nil {
			L.RaiseError("t.smtp.reply: %v", err)
		}
		return 0
	}))
	mod.RawSetString("smtp", smtpT)
	envT := L.NewTable()
	envT.RawSetString("set", L.NewFunction(func(L *lua.LState) int {
		name := L.CheckString(1)
		if v := L.Get(2); v == lua.LNil {
			delete(s.env, name)
		} else {
			s.env[name] = lua.LVAsString(v)
		}
		return 0
	}))
	mod.RawSetString("env", envT)

	L.Push(mod)
	return 1
}

func parseTime(v lua.LValue) (time.Time, error) {
	switch x := v.(type) {
	case lua.LNumber:
		sec := float64(x)
		return time.Unix(int64(sec), int64((sec-float64(int64(sec)))*1e9)), nil
	case lua.LString:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
			if t, err := time.Parse(layout, string(x)); err == nil {
				return t, nil
			}
		}
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time like \"2026-12-07T08:00:00+01:00\"", string(x))
	}
	return time.Time{}, fmt.Errorf("an RFC 3339 time string or a Unix time expected")
}

// luaLoad: t.load("daily-report.lua") loads a script of scripts_dir with
// its triggers captured.
func (s *session) luaLoad(L *lua.LState) int {
	rel := L.CheckString(1)
	path := rel
	if !filepath.IsAbs(path) {
		path = filepath.Join(s.opts.ScriptsDir, rel)
	}
	proto, err := luabind.CompileFile(path)
	if err != nil {
		L.RaiseError("t.load: %v", err)
	}
	ls := &loaded{sess: s, name: filepath.Base(path), path: path, proto: proto}
	if _, err := ls.current(); err != nil {
		L.RaiseError("t.load: %v", err)
	}
	s.scripts = append(s.scripts, ls)
	obj := L.NewTable()
	obj.RawSetString("name", lua.LString(ls.name))
	// Functions bound to the script, so report.fire("daily") and
	// report:fire("daily") both work.
	for name, fn := range map[string]func(*lua.LState, *loaded, int) int{
		"fire": s.luaFire, "triggers": s.luaTriggers, "state": s.luaState,
	} {
		obj.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			first := 1
			if L.Get(1) == obj {
				first = 2
			}
			return fn(L, ls, first)
		}))
	}
	L.Push(obj)
	return 1
}

// luaFire: report.fire(id [, event]) runs one trigger's handler now.
func (s *session) luaFire(L *lua.LState, ls *loaded, i int) int {
	id := L.CheckString(i)
	var ev *lua.LTable
	if v := L.Get(i + 1); v != lua.LNil {
		ev = L.CheckTable(i + 1)
	}
	raised, err := ls.fire(id, ev)
	if err != nil {
		L.RaiseError("fire: %v", err)
	}
	if raised != nil {
		L.Error(raised, 0)
	}
	return 0
}

// luaTriggers: report.triggers() lists the captured registrations.
func (s *session) luaTriggers(L *lua.LState, ls *loaded, _ int) int {
	inst, err := ls.current()
	if err != nil {
		L.RaiseError("triggers: %v", err)
	}
	out := L.CreateTable(len(inst.triggers), 0)
	for _, t := range inst.triggers {
		row := L.CreateTable(0, 5)
		row.RawSetString("id", lua.LString(t.id(ls.name)))
		row.RawSetString("kind", lua.LString(t.kind))
		row.RawSetString("spec", lua.LString(t.spec))
		row.RawSetString("label", lua.LString(t.label))
		if t.name != "" {
			row.RawSetString("name", lua.LString(t.name))
		}
		out.Append(row)
	}
	L.Push(out)
	return 1
}

// luaState: report.state() returns a copy of the script's mailbot.state.
func (s *session) luaState(L *lua.LState, ls *loaded, _ int) int {
	inst, err := ls.current()
	if err != nil {
		L.RaiseError("state: %v", err)
	}
	m := make(map[string]any, len(inst.state))
	for k, v := range inst.state {
		m[k] = v
	}
	L.Push(luabind.FromGo(L, m))
	return 1
}

// luaTest: t.test(name, fn) registers a test; tests run after the file's
// top-level code, in order.
func (s *session) luaTest(L *lua.LState) int {
	name := L.CheckString(1)
	fn := L.CheckFunction(2)
	if s.gen != 0 {
		L.RaiseError("t.test: tests are declared by the file's top-level code, not inside a test")
	}
	for _, t := range s.tests {
		if t.name == name {
			L.RaiseError("t.test: a test named %q already exists", name)
		}
	}
	s.tests = append(s.tests, &testCase{name: name, fn: fn})
	return 0
}

func (s *session) luaSent(L *lua.LState) int {
	msgs := s.cap.messages()
	out := L.CreateTable(len(msgs), 0)
	for _, m := range msgs {
		p, err := parseMessage(m.Data)
		if err != nil {
			L.RaiseError("t.sent: %v", err)
		}
		t := L.NewTable()
		set := func(k string, v lua.LValue) { t.RawSetString(k, v) }
		set("via", lua.LString(m.Via))
		set("mail_from", lua.LString(m.MailFrom))
		set("rcpt", strList(L, m.Rcpt))
		if m.Key != "" {
			set("key", lua.LString(m.Key))
		}
		set("subject", lua.LString(p.Subject))
		set("text", lua.LString(p.Text))
		set("html", lua.LString(p.HTML))
		set("from", lua.LString(p.From))
		set("to", strList(L, p.To))
		set("cc", strList(L, p.Cc))
		h := L.NewTable()
		for k, v := range p.Headers {
			h.RawSetString(k, lua.LString(v))
		}
		set("headers", h)
		atts := L.NewTable()
		for _, a := range p.Attachments {
			at := L.NewTable()
			at.RawSetString("filename", lua.LString(a.Filename))
			at.RawSetString("content_type", lua.LString(a.ContentType))
			at.RawSetString("size", lua.LNumber(len(a.Data)))
			at.RawSetString("data", lua.LString(a.Data))
			if a.CID != "" {
				at.RawSetString("cid", lua.LString(a.CID))
			}
			at.RawSetString("inline", lua.LBool(a.Inline))
			atts.Append(at)
		}
		set("attachments", atts)
		set("raw", lua.LString(m.Data))
		out.Append(t)
	}
	L.Push(out)
	return 1
}

func strList(L *lua.LState, xs []string) *lua.LTable {
	t := L.CreateTable(len(xs), 0)
	for _, x := range xs {
		t.Append(lua.LString(x))
	}
	return t
}

func (s *session) luaEq(L *lua.LState) int {
	got, want := L.Get(1), L.Get(2)
	if !deepEqual(got, want, 0) {
		return s.fail(L, &Failure{Message: "t.eq: values differ", Expected: inspect(want, 0), Got: inspect(got, 0), Note: note(L, 3)})
	}
	return 0
}

func (s *session) luaNe(L *lua.LState) int {
	got, other := L.Get(1), L.Get(2)
	if deepEqual(got, other, 0) {
		return s.fail(L, &Failure{Message: "t.ne: values are equal", Expected: "anything but " + inspect(other, 0), Got: inspect(got, 0), Note: note(L, 3)})
	}
	return 0
}

func (s *session) luaOk(L *lua.LState) int {
	if v := L.Get(1); !lua.LVAsBool(v) {
		return s.fail(L, &Failure{Message: "t.ok: value is not true", Expected: "a true value", Got: inspect(v, 0), Note: note(L, 2)})
	}
	return 0
}

// find runs string.find(str, pattern) in L.
func find(L *lua.LState, str, pattern string) (bool, error) {
	fn := L.GetField(L.GetGlobal("string"), "find")
	if err := L.CallByParam(lua.P{Fn: fn, NRet: 1, Protect: true}, lua.LString(str), lua.LString(pattern)); err != nil {
		return false, err
	}
	r := L.Get(-1)
	L.Pop(1)
	return r != lua.LNil, nil
}

func (s *session) luaMatch(L *lua.LState) int {
	v := L.Get(1)
	pattern := L.CheckString(2)
	str, ok := v.(lua.LString)
	if !ok {
		if n, isNum := v.(lua.LNumber); isNum {
			str, ok = lua.LString(n.String()), true
		}
	}
	if !ok {
		return s.fail(L, &Failure{Message: "t.match: not a string", Expected: "a string matching " + strconv.Quote(pattern), Got: inspect(v, 0), Note: note(L, 3)})
	}
	matched, err := find(L, string(str), pattern)
	if err != nil {
		L.RaiseError("t.match: bad pattern %q: %v", pattern, err)
	}
	if !matched {
		return s.fail(L, &Failure{Message: "t.match: no match", Expected: "a string matching " + strconv.Quote(pattern), Got: inspect(str, 0), Note: note(L, 3)})
	}
	return 0
}

// describe renders a raised value: smtp error tables as "kind: message".
func describe(v lua.LValue) string {
	if t, ok := v.(*lua.LTable); ok {
		kind, msg := t.RawGetString("kind"), t.RawGetString("message")
		switch {
		case kind != lua.LNil && msg != lua.LNil:
			return kind.String() + ": " + msg.String()
		case kind != lua.LNil:
			return kind.String()
		case msg != lua.LNil:
			return msg.String()
		}
		return inspect(t, 0)
	}
	return lua.LVAsString(v)
}

// luaError: t.error(fn [, kind_or_pattern]) calls fn and fails unless it
// raises an error whose kind equals kind_or_pattern or whose message
// matches it as a Lua pattern. It returns the error.
func (s *session) luaError(L *lua.LState) int {
	fn := L.CheckFunction(1)
	want := L.Get(2)
	if want != lua.LNil {
		want = lua.LString(L.CheckString(2))
	}
	at := where(L)
	err := L.CallByParam(lua.P{Fn: fn, NRet: 0, Protect: true})
	if err == nil {
		exp := "an error"
		if want != lua.LNil {
			exp = "an error matching " + strconv.Quote(string(want.(lua.LString)))
		}
		return s.fail(L, &Failure{Where: at, Message: "t.error: the function raised no error", Expected: exp, Got: "no error", Note: note(L, 3)})
	}
	var raised lua.LValue = lua.LString(err.Error())
	if ae, ok := err.(*lua.ApiError); ok && ae.Object != nil {
		raised = ae.Object
	}
	if raised == s.marker {
		L.Error(raised, 0) // an assertion failed inside fn
	}
	if want == lua.LNil {
		L.Push(raised)
		return 1
	}
	pattern := string(want.(lua.LString))
	if t, ok := raised.(*lua.LTable); ok && t.RawGetString("kind").String() == pattern {
		L.Push(raised)
		return 1
	}
	desc := describe(raised)
	if ok, ferr := find(L, desc, pattern); ferr == nil && ok {
		L.Push(raised)
		return 1
	}
	return s.fail(L, &Failure{Where: at, Message: "t.error: a different error was raised",
		Expected: "an error of kind or matching " + strconv.Quote(pattern), Got: strconv.Quote(desc), Note: note(L, 3)})
}

// deepEqual compares Lua values, tables by content.
func deepEqual(a, b lua.LValue, depth int) bool {
	ta, aok := a.(*lua.LTable)
	tb, bok := b.(*lua.LTable)
	if !aok || !bok {
		return a.Type() == b.Type() && lua.LVAsString(a) == lua.LVAsString(b) && (a.Type() != lua.LTUserData && a.Type() != lua.LTFunction || a == b)
	}
	if ta == tb {
		return true
	}
	if depth > 32 {
		return false
	}
	equal := true
	n := 0
	ta.ForEach(func(k, v lua.LValue) {
		n++
		if equal && !deepEqual(v, tb.RawGet(k), depth+1) {
			equal = false
		}
	})
	if !equal {
		return false
	}
	m := 0
	tb.ForEach(func(lua.LValue, lua.LValue) { m++ })
	return n == m
}

// inspect renders a value for failure reports.
func inspect(v lua.LValue, depth int) string {
	switch x := v.(type) {
	case lua.LString:
		return strconv.Quote(string(x))
	case *lua.LTable:
		if depth > 3 {
			return "{...}"
		}
		var parts []string
		n := x.Len()
		for i := 1; i <= n; i++ {
			parts = append(parts, inspect(x.RawGetInt(i), depth+1))
		}
		var keys []string
		vals := map[string]lua.LValue{}
		x.ForEach(func(k, val lua.LValue) {
			if num, ok := k.(lua.LNumber); ok && float64(num) >= 1 && float64(num) <= float64(n) && float64(num) == float64(int(num)) {
				return
			}
			ks := k.String()
			if _, ok := k.(lua.LString); !ok {
				ks = "[" + ks + "]"
			}
			keys = append(keys, ks)
			vals[ks] = val
		})
		sort.Strings(keys)
		for _, k := range keys {
			parts = append(parts, k+" = "+inspect(vals[k], depth+1))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case *lua.LNilType:
		return "nil"
	}
	return v.String()
}
