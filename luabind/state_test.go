package luabind

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func TestSandboxLuaFiles(t *testing.T) {
	tests := []struct {
		file    string
		sandbox Sandbox
	}{
		{"testdata/sandbox_strict.lua", SandboxStrict},
		{"testdata/sandbox_trusted.lua", SandboxTrusted},
	}
	for _, tc := range tests {
		t.Run(tc.sandbox.String(), func(t *testing.T) {
			L := NewState(Options{ScriptsDir: "testdata", Sandbox: tc.sandbox})
			defer L.Close()
			runLuaTestFile(t, L, tc.file)
		})
	}
}

func TestSandboxGlobals(t *testing.T) {
	tests := []struct {
		expr           string
		strict, trusts string // type() of expr in each mode
	}{
		{"os.execute", "nil", "function"},
		{"os.exit", "nil", "function"},
		{"os.time", "function", "function"},
		{"os.getenv", "function", "function"},
		{"io", "nil", "table"},
		{"dofile", "nil", "function"},
		{"loadfile", "nil", "function"},
		{"load", "function", "function"},
		{"package.loadlib", "nil", "function"},
		{"coroutine.wrap", "function", "function"},
	}
	for _, mode := range []Sandbox{SandboxStrict, SandboxTrusted} {
		L := NewState(Options{Sandbox: mode})
		for _, tc := range tests {
			if err := L.DoString("return type(" + tc.expr + ")"); err != nil {
				t.Fatalf("%s: %s: %v", mode, tc.expr, err)
			}
			got := L.Get(-1).String()
			L.Pop(1)
			want := tc.strict
			if mode == SandboxTrusted {
				want = tc.trusts
			}
			if got != want {
				t.Errorf("%s: type(%s) = %s, want %s", mode, tc.expr, got, want)
			}
		}
		L.Close()
	}
}

func TestStrictOSExecuteRaises(t *testing.T) {
	L := NewState(Options{})
	defer L.Close()
	err := L.DoString(`os.execute("true")`)
	var ae *lua.ApiError
	if !errors.As(err, &ae) {
		t.Fatalf("os.execute in strict mode: err = %v, want *lua.ApiError", err)
	}
}

func TestContextTimeoutStopsInfiniteLoop(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
	}{
		{"main chunk", "while true do end", 1},
		{"coroutine", "local co = coroutine.wrap(function()\n  while true do end\nend)\nco()", 2},
		// pcall catches the error, but the next instruction raises it again.
		{"pcall cannot outlive it", "local ok = pcall(function() while true do end end)\nwhile true do end", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proto, err := CompileString(tc.src, "loop.lua")
			if err != nil {
				t.Fatal(err)
			}
			L := newTestState(t, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			L.SetContext(ctx)

			err = DoProto(L, proto)
			var ae *lua.ApiError
			if !errors.As(err, &ae) {
				t.Fatalf("DoProto = %v, want *lua.ApiError", err)
			}
			if !strings.Contains(ae.Error(), context.DeadlineExceeded.Error()) {
				t.Errorf("error = %q, want it to mention %q", ae.Object, context.DeadlineExceeded)
			}
			if file, line, ok := ErrorLocation(err); !ok || file != "loop.lua" || line != tc.line {
				t.Errorf("ErrorLocation = %q, %d, %v; want loop.lua, %d, true", file, line, ok, tc.line)
			}

			// The state survives: with a fresh context it runs the next chunk.
			L.SetContext(context.Background())
			if err := L.DoString("x = 40 + 2"); err != nil {
				t.Fatalf("state unusable after timeout: %v", err)
			}
			if got := L.GetGlobal("x"); got != lua.LNumber(42) {
				t.Errorf("x = %v, want 42", got)
			}
		})
	}
}

func TestBoundedStacks(t *testing.T) {
	tests := []struct {
		name, src, want string
		opts            Options
	}{
		{"runaway recursion", "local function f(n) return 1 + f(n + 1) end return f(1)", "stack overflow", Options{}},
		{"huge unpack", "local t = {} for i = 1, 100000 do t[i] = i end return unpack(t)", "overflow",
			Options{RegistryMaxSize: 1 << 16}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L := NewState(tc.opts)
			defer L.Close()
			err := L.DoString(tc.src)
			var ae *lua.ApiError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want *lua.ApiError", err)
			}
			if !strings.Contains(ae.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", ae.Object, tc.want)
			}
		})
	}
}

func TestRequireRejectsSymlinkEscape(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.lua"), []byte("return 'leaked'"), 0o644); err != nil {
		t.Fatal(err)
	}
	scripts := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "secret.lua"), filepath.Join(scripts, "escape.lua")); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	if err := os.WriteFile(filepath.Join(scripts, "inside.lua"), []byte("return 'ok'"), 0o644); err != nil {
		t.Fatal(err)
	}
	L := NewState(Options{ScriptsDir: scripts})
	defer L.Close()

	if err := L.DoString(`assert(require("inside") == "ok")`); err != nil {
		t.Fatalf("require inside: %v", err)
	}
	if err := L.DoString(`require("escape")`); err == nil {
		t.Fatal("require of a symlink leaving the scripts dir succeeded")
	}
}

func TestRequireReportsModuleSyntaxError(t *testing.T) {
	scripts := t.TempDir()
	if err := os.WriteFile(filepath.Join(scripts, "broken.lua"), []byte("local x = \n= 2"), 0o644); err != nil {
		t.Fatal(err)
	}
	L := NewState(Options{ScriptsDir: scripts})
	defer L.Close()
	err := L.DoString(`require("broken")`)
	want := filepath.Join(scripts, "broken.lua") + ":2: syntax error near '='"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
}

func TestRequireWithoutScriptsDir(t *testing.T) {
	L := NewState(Options{})
	defer L.Close()
	err := L.DoString(`require("anything")`)
	if err == nil || !strings.Contains(err.Error(), "no scripts dir configured") {
		t.Errorf("err = %v, want a 'no scripts dir configured' error", err)
	}
}

func TestOptionsHooks(t *testing.T) {
	env := map[string]string{"MAILBOT_TEST": "from-options"}
	L := NewState(Options{
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Modules: map[string]lua.LGFunction{
			"answer": func(L *lua.LState) int {
				mod := L.NewTable()
				mod.RawSetString("value", lua.LNumber(42))
				L.Push(mod)
				return 1
			},
		},
	})
	defer L.Close()
	if err := L.DoString(`return os.getenv("MAILBOT_TEST"), os.getenv("HOME"), require("answer").value`); err != nil {
		t.Fatal(err)
	}
	if got := L.Get(-3); got != lua.LString("from-options") {
		t.Errorf("os.getenv(MAILBOT_TEST) = %v, want from-options", got)
	}
	if got := L.Get(-2); got != lua.LNil {
		t.Errorf("os.getenv(HOME) = %v, want nil (not in Options.Getenv)", got)
	}
	if got := L.Get(-1); got != lua.LNumber(42) {
		t.Errorf("require(answer).value = %v, want 42", got)
	}
}

func TestResolvePath(t *testing.T) {
	abs := filepath.Join(t.TempDir(), "x")
	tests := []struct {
		name string
		opts Options
		path string
		want string
	}{
		{"base dir", Options{BaseDir: "/srv/mailbot"}, "out/r.csv", "/srv/mailbot/out/r.csv"},
		{"scripts dir default", Options{ScriptsDir: "scripts"}, "r.csv", "scripts/r.csv"},
		{"absolute wins", Options{BaseDir: "/srv"}, abs, abs},
		{"no base", Options{}, "a/../b", "b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L := NewState(tc.opts)
			defer L.Close()
			if got := ResolvePath(L, tc.path); got != filepath.FromSlash(tc.want) {
				t.Errorf("ResolvePath(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      string
		line      int
	}{
		{"unexpected symbol", "local a = 1\nx = = 2", "scripts/a.lua:2: syntax error near '='", 2},
		{"missing end", "if true then\n  x = 1\n", "scripts/a.lua: syntax error near <eof>", 0},
		{"break outside loop", "\n\nbreak", "scripts/a.lua:3: no loop to break", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CompileString(tc.src, "scripts/a.lua")
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want *SyntaxError", err)
			}
			if err.Error() != tc.want {
				t.Errorf("err = %q, want %q", err, tc.want)
			}
			if se.Line != tc.line {
				t.Errorf("Line = %d, want %d", se.Line, tc.line)
			}
		})
	}
}

func TestCompileFile(t *testing.T) {
	dir := t.TempDir()
	shebang := filepath.Join(dir, "shebang.lua")
	if err := os.WriteFile(shebang, []byte("#!/usr/bin/env mailbot\nlocal x = 1\nerror('line three')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	proto, err := CompileFile(shebang)
	if err != nil {
		t.Fatal(err)
	}
	L := NewState(Options{})
	defer L.Close()
	err = DoProto(L, proto)
	file, line, ok := ErrorLocation(err)
	if !ok || file != shebang || line != 3 {
		t.Errorf("ErrorLocation = %q, %d, %v; want %q, 3, true (err %v)", file, line, ok, shebang, err)
	}

	_, err = CompileFile(filepath.Join(dir, "missing.lua"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CompileFile(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestErrorLocation(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
	}{
		{"string error", "local a = 1\nerror('boom')", 2},
		{"table error uses traceback", "local a = 1\n\nerror({code = 1})", 3},
		{"module error", "local json = require('json')\njson.encode(print)", 2},
		{"runtime type error", "local t = nil\nlocal x = 1\nreturn t.x", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proto, err := CompileString(tc.src, "scripts/e.lua")
			if err != nil {
				t.Fatal(err)
			}
			L := NewState(Options{})
			defer L.Close()
			err = DoProto(L, proto)
			file, line, ok := ErrorLocation(err)
			if !ok || file != "scripts/e.lua" || line != tc.line {
				t.Errorf("ErrorLocation = %q, %d, %v; want scripts/e.lua, %d, true (err %v)", file, line, ok, tc.line, err)
			}
		})
	}
	if _, _, ok := ErrorLocation(errors.New("plain")); ok {
		t.Error("ErrorLocation(plain error) ok = true, want false")
	}
}

func TestDoProtoSharesProtoAcrossStates(t *testing.T) {
	proto, err := CompileString("local json = require('json')\nresult = json.encode({n = n})", "shared.lua")
	if err != nil {
		t.Fatal(err)
	}
	const runs = 8
	results := make([]string, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			L := NewState(Options{})
			defer L.Close()
			L.SetGlobal("n", lua.LNumber(i))
			if err := DoProto(L, proto); err != nil {
				t.Errorf("run %d: %v", i, err)
				return
			}
			results[i] = L.GetGlobal("result").String()
		})
	}
	wg.Wait()
	for i, got := range results {
		if want := `{"n":` + string(rune('0'+i)) + `}`; got != want {
			t.Errorf("run %d: result = %s, want %s", i, got, want)
		}
	}
}
