package luatest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/luabind"
)

// trigger is one registration captured from a script's top-level code.
type trigger struct {
	n       int    // 1-based, in registration order over every kind
	kind    string // "on_file", "every", "cron", "on_start", "on_dead_letter", "on_run_failed"
	spec    string // "5m", "0 8 * * 1-5", the on_file folder/pattern
	label   string // as the engine logs it: "cron 0 8 * * 1-5"
	name    string // the registration's name = "..." option
	fn      *lua.LFunction
	dir     string // on_file: the resolved folder
	pattern string // on_file
}

// scriptInst is one load of a script: its own Lua state, the triggers its
// top-level code registered and its in-memory mailbot.state.
type scriptInst struct {
	L        *lua.LState
	triggers []*trigger
	state    map[string]any
	loading  bool
	gen      int            // the test it was loaded for
	loc      *time.Location // cron's default zone
}

// loaded is what t.load returns on the Go side. The script is loaded again
// for every test, at its first use in that test, so each test starts from
// fresh script state.
type loaded struct {
	sess  *session
	name  string // as mailbot.script has it: the file name
	path  string
	proto *lua.FunctionProto
	inst  *scriptInst
}

// current returns the instance for the running test, loading it if need be.
func (ls *loaded) current() (*scriptInst, error) {
	if ls.inst != nil && ls.inst.gen == ls.sess.gen {
		return ls.inst, nil
	}
	if ls.inst != nil {
		ls.inst.close()
		ls.inst = nil
	}
	inst, err := ls.load()
	if err != nil {
		return nil, err
	}
	ls.inst = inst
	return inst, nil
}

func (si *scriptInst) close() {
	luabind.CloseResources(si.L)
	si.L.Close()
}

// load runs the script's top-level code in a new state built for the
// current test: private folder, fake clock and environment, capture server.
func (ls *loaded) load() (*scriptInst, error) {
	s := ls.sess
	opts := s.scriptOptions(ls.name)
	L := luabind.NewState(opts)
	inst := &scriptInst{L: L, state: map[string]any{}, gen: s.gen, loc: s.location()}
	L.SetGlobal("mailbot", inst.mailbotTable(ls, L))
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.RunTimeout)
	defer cancel()
	L.SetContext(ctx)
	inst.loading = true
	err := luabind.DoProto(L, ls.proto)
	inst.loading = false
	luabind.CloseResources(L)
	L.RemoveContext()
	if err != nil {
		inst.close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: top-level code did not finish within %v", ls.name, s.opts.RunTimeout)
		}
		return nil, fmt.Errorf("loading %s: %s", ls.name, luabind.DescribeError(err))
	}
	return inst, nil
}

// mailbotTable is the engine's mailbot global, with registrars that only
// record what they are given and an in-memory state.
func (si *scriptInst) mailbotTable(ls *loaded, L *lua.LState) *lua.LTable {
	mb := L.NewTable()
	mb.RawSetString("script", lua.LString(ls.name))
	mb.RawSetString("on_file", L.NewFunction(si.onFile))
	mb.RawSetString("every", L.NewFunction(func(L *lua.LState) int { return si.schedule(L, "every") }))
	mb.RawSetString("cron", L.NewFunction(func(L *lua.LState) int { return si.schedule(L, "cron") }))
	mb.RawSetString("on_start", L.NewFunction(si.onStart))
	for _, kind := range []string{"on_dead_letter", "on_run_failed"} {
		mb.RawSetString(kind, L.NewFunction(func(L *lua.LState) int { return si.onAlert(L, kind) }))
	}
	st := L.NewTable()
	L.SetFuncs(st, map[string]lua.LGFunction{
		"get": func(L *lua.LState) int {
			v, ok := si.state[L.CheckString(1)]
			if !ok {
				L.Push(L.Get(2))
				return 1
			}
			L.Push(luabind.FromGo(L, v))
			return 1
		},
		"set": func(L *lua.LState) int {
			key := L.CheckString(1)
			v, err := luabind.ToGo(L.Get(2))
			if err != nil {
				L.ArgError(2, err.Error())
			}
			if v == nil {
				delete(si.state, key)
			} else {
				si.state[key] = v
			}
			return 0
		},
		"delete": func(L *lua.LState) int { delete(si.state, L.CheckString(1)); return 0 },
		"all": func(L *lua.LState) int {
			m := make(map[string]any, len(si.state))
			for k, v := range si.state {
				m[k] = v
			}
			L.Push(luabind.FromGo(L, m))
			return 1
		},
		"flush": func(*lua.LState) int { return 0 },
	})
	mb.RawSetString("state", st)
	return mb
}

func (si *scriptInst) checkLoading(L *lua.LState, fn string) {
	if !si.loading {
		L.RaiseError("mailbot.%s: triggers can only be registered by the script's top-level code", fn)
	}
}

// checkKeys accepts the engine's options plus name.
func checkKeys(L *lua.LState, t *lua.LTable, fn string, known ...string) {
	known = append(known, "name")
	allowed := map[string]bool{}
	for _, k := range known {
		allowed[k] = true
	}
	t.ForEach(func(k, _ lua.LValue) {
		if ks, ok := k.(lua.LString); !ok || !allowed[string(ks)] {
			L.RaiseError("mailbot.%s: unknown option %q (known: %s)", fn, k.String(), strings.Join(known, ", "))
		}
	})
}

// add records a trigger, checking its name is unique.
func (si *scriptInst) add(L *lua.LState, t *trigger, opts *lua.LTable) {
	if opts != nil {
		switch v := L.GetField(opts, "name").(type) {
		case *lua.LNilType:
		case lua.LString:
			name := string(v)
			if name == "" || strings.ContainsAny(name, "# \t\n") {
				L.RaiseError("mailbot.%s: name %q must be a non-empty word without '#' or spaces", t.kind, name)
			}
			if _, err := strconv.Atoi(name); err == nil {
				L.RaiseError("mailbot.%s: name %q must not be a number (\"#%s\" means the %s registration)", t.kind, name, name, name)
			}
			for _, o := range si.triggers {
				if o.name == name {
					L.RaiseError("mailbot.%s: name %q is already used by trigger #%d (%s)", t.kind, name, o.n, o.label)
				}
			}
			t.name = name
		default:
			L.RaiseError("mailbot.%s: name must be a string", t.kind)
		}
	}
	t.n = len(si.triggers) + 1
	si.triggers = append(si.triggers, t)
}

func (si *scriptInst) onFile(L *lua.LState) int {
	si.checkLoading(L, "on_file")
	opts := L.CheckTable(1)
	fn := L.CheckFunction(2)
	checkKeys(L, opts, "on_file", "dir", "pattern", "events", "recursive", "settle", "existing", "after", "timeout", "retries", "overlap")
	dir, ok := L.GetField(opts, "dir").(lua.LString)
	if !ok || dir == "" {
		L.RaiseError("mailbot.on_file: dir is required")
	}
	pattern := ""
	if p, ok := L.GetField(opts, "pattern").(lua.LString); ok {
		if _, err := filepath.Match(string(p), "x"); err != nil {
			L.RaiseError("mailbot.on_file: pattern %q: %v", string(p), err)
		}
		pattern = string(p)
	}
	if a, ok := L.GetField(opts, "after").(lua.LString); ok {
		if _, err := engine.ParseAfter(string(a)); err != nil {
			L.RaiseError("mailbot.on_file: after: %v", err)
		}
	}
	resolved := luabind.ResolvePath(L, string(dir))
	si.add(L, &trigger{kind: "on_file", spec: filepath.Join(string(dir), pattern), fn: fn,
		label: "on_file " + filepath.Join(resolved, pattern), dir: resolved, pattern: pattern}, opts)
	return 0
}

func (si *scriptInst) schedule(L *lua.LState, kind string) int {
	si.checkLoading(L, kind)
	spec := L.CheckString(1)
	fn := L.CheckFunction(2)
	opts := L.OptTable(3, L.NewTable())
	checkKeys(L, opts, kind, "tz", "overlap", "catchup", "timeout")
	label := kind + " " + spec
	switch kind {
	case "every":
		if _, err := engine.ParseEvery(spec); err != nil {
			L.RaiseError("mailbot.every: %v", err)
		}
	case "cron":
		loc := si.loc
		if tz, ok := L.GetField(opts, "tz").(lua.LString); ok {
			l, err := time.LoadLocation(string(tz))
			if err != nil {
				L.RaiseError("mailbot.cron: tz %q: %v", string(tz), err)
			}
			loc = l
			label += " (" + string(tz) + ")"
		}
		if _, err := engine.ParseSchedule(spec, loc); err != nil {
			L.RaiseError("mailbot.cron: %v", err)
		}
	}
	if o, ok := L.GetField(opts, "overlap").(lua.LString); ok {
		if _, err := engine.ParseOverlapPolicy(string(o)); err != nil {
			L.RaiseError("mailbot.%s: overlap: %v", kind, err)
		}
	}
	si.add(L, &trigger{kind: kind, spec: spec, label: label, fn: fn}, opts)
	return 0
}

func (si *scriptInst) onStart(L *lua.LState) int {
	si.checkLoading(L, "on_start")
	fn := L.CheckFunction(1)
	si.add(L, &trigger{kind: "on_start", label: "on_start", fn: fn}, L.OptTable(2, nil))
	return 0
}

// onAlert records mailbot.on_dead_letter or mailbot.on_run_failed; a
// test fires it with the event it wants the handler to see.
func (si *scriptInst) onAlert(L *lua.LState, kind string) int {
	si.checkLoading(L, kind)
	fn := L.CheckFunction(1)
	si.add(L, &trigger{kind: kind, label: kind, fn: fn}, L.OptTable(2, nil))
	return 0
}

// id is the trigger's id, as "mailbot triggers" shows it.
func (t *trigger) id(script string) string {
	if t.name != "" {
		return script + "#" + t.name
	}
	return script + "#" + strconv.Itoa(t.n)
}

// find resolves "daily", "#daily", "#1", "daily-report.lua#1" or
// "daily-report#daily".
func (si *scriptInst) find(script, id string) (*trigger, error) {
	ref := id
	for _, prefix := range []string{script + "#", strings.TrimSuffix(script, ".lua") + "#"} {
		if r, ok := strings.CutPrefix(id, prefix); ok {
			ref = "#" + r
			break
		}
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(ref, "#")); err == nil && strings.HasPrefix(ref, "#") {
		if n >= 1 && n <= len(si.triggers) {
			return si.triggers[n-1], nil
		}
	} else {
		name := strings.TrimPrefix(ref, "#")
		for _, t := range si.triggers {
			if t.name == name {
				return t, nil
			}
		}
	}
	var have []string
	for _, t := range si.triggers {
		have = append(have, t.id(script)+" ("+t.label+")")
	}
	if len(have) == 0 {
		return nil, fmt.Errorf("%s registers no triggers, so there is no %q", script, id)
	}
	return nil, fmt.Errorf("%s has no trigger %q; it has %s", script, id, strings.Join(have, ", "))
}

// event builds the handler's event table for t, as the engine would.
func (ls *loaded) event(L *lua.LState, t *trigger, given *lua.LTable) (*lua.LTable, error) {
	ev := L.NewTable()
	switch t.kind {
	case "on_file":
		var file string
		if given != nil {
			if f, ok := given.RawGetString("file").(lua.LString); ok {
				file = string(f)
			}
		}
		if file == "" {
			return nil, fmt.Errorf("%s is a file trigger: fire it with {file = path}", t.label)
		}
		path := luabind.ResolvePath(L, file)
		name := filepath.Base(path)
		if t.pattern != "" {
			if ok, _ := filepath.Match(t.pattern, name); !ok {
				return nil, fmt.Errorf("%s does not match the trigger's pattern %q", name, t.pattern)
			}
		}
		data, err := ls.sess.readPrivate(path)
		if err != nil {
			return nil, fmt.Errorf("file trigger event: %w (write it first with t.fs.write)", err)
		}
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("file trigger event: %w", err)
		}
		sum := sha256.Sum256(data)
		for k, v := range map[string]lua.LValue{
			"path": lua.LString(path), "name": lua.LString(name), "dir": lua.LString(filepath.Dir(path)),
			"op": lua.LString("create"), "size": lua.LNumber(len(data)), "mtime": lua.LNumber(st.ModTime().Unix()),
			"sha256": lua.LString(hex.EncodeToString(sum[:])), "attempt": lua.LNumber(1), "existing": lua.LFalse,
		} {
			ev.RawSetString(k, v)
		}
	case "every", "cron":
		ev.RawSetString("scheduled_at", lua.LNumber(ls.sess.clock.now().Unix()))
	}
	if given != nil {
		given.ForEach(func(k, v lua.LValue) {
			if k.String() != "file" {
				ev.RawSet(k, v)
			}
		})
	}
	if t.kind == "on_run_failed" && given != nil {
		// The failed run's script and trigger, as the test gives them.
		if given.RawGetString("script") == lua.LNil {
			ev.RawSetString("script", lua.LString(ls.name))
		}
		if given.RawGetString("trigger") == lua.LNil {
			ev.RawSetString("trigger", lua.LString(t.label))
		}
		return ev, nil
	}
	ev.RawSetString("script", lua.LString(ls.name))
	ev.RawSetString("trigger", lua.LString(t.label))
	return ev, nil
}

// fire runs one trigger's handler in the script's state. A handler error
// is returned as the Lua value it raised, so t.error sees the smtp
// module's error tables as they are.
func (ls *loaded) fire(id string, given *lua.LTable) (lua.LValue, error) {
	inst, err := ls.current()
	if err != nil {
		return nil, err
	}
	t, err := inst.find(ls.name, id)
	if err != nil {
		return nil, err
	}
	L := inst.L
	ev, err := ls.event(L, t, given)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ls.sess.ctx, ls.sess.opts.RunTimeout)
	defer cancel()
	L.SetContext(ctx)
	defer L.RemoveContext()
	defer luabind.CloseResources(L)
	err = L.CallByParam(lua.P{Fn: t.fn, NRet: 0, Protect: true}, ev)
	if err == nil {
		return nil, nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return lua.LString(fmt.Sprintf("%s %s: stopped after %v", ls.name, t.label, ls.sess.opts.RunTimeout)), nil
	}
	var ae *lua.ApiError
	if errors.As(err, &ae) && ae.Object != nil {
		return ae.Object, nil
	}
	return lua.LString(err.Error()), nil
}
