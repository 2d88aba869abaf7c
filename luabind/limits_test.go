package luabind

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// testLimit keeps the memory tests small: a run is stopped at 32 MiB.
const testLimit = 32 << 20

// runLimited runs src in a fresh state under StartRun with a memory limit
// and a timeout. The global expire(f, ...) cancels the run's context and
// then calls the Go function f directly, so a test can check that a
// built-in notices a context that ends while it works.
func runLimited(t *testing.T, limit int64, timeout time.Duration, src string) (error, context.Context) {
	t.Helper()
	L := NewState(Options{MemoryLimit: limit})
	t.Cleanup(L.Close)
	parent, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	expiring, expire := context.WithCancel(parent)
	defer expire()
	runCtx, stop := StartRun(expiring, L)
	defer stop()
	L.SetGlobal("expire", L.NewFunction(func(L *lua.LState) int {
		L.CheckFunction(1)
		expire()
		L.Call(L.GetTop()-1, lua.MultRet) // the function and its arguments
		return L.GetTop()
	}))
	proto, err := CompileString(src, "limits.lua")
	if err != nil {
		t.Fatal(err)
	}
	return DoProto(L, proto), runCtx
}

// wantMemoryError checks that err is a raised {kind = "memory"} table.
func wantMemoryError(t *testing.T, err error, fn string) {
	t.Helper()
	if err == nil {
		t.Fatal("the run succeeded, want a memory error")
	}
	me, ok := AsMemoryError(nil, err)
	if !ok {
		t.Fatalf("error %q is not a memory error", DescribeError(err))
	}
	if me.Func != fn {
		t.Errorf("func = %q, want %q (%s)", me.Func, fn, DescribeError(err))
	}
	msg := DescribeError(err)
	if !strings.HasPrefix(msg, "limits.lua:") || !strings.Contains(msg, "memory: ") ||
		!strings.Contains(msg, "limits.memory") || !strings.Contains(msg, "32 MiB") {
		t.Errorf("message %q should name the place, the limit and limits.memory", msg)
	}
}

func TestMemoryLimitStopsRuns(t *testing.T) {
	tests := []struct {
		name, src string
	}{
		{"table growth", `local t = {} for i = 1, 1e9 do t[i] = i end`},
		{"global table of strings", `big = {} for i = 1, 1e9 do big[i] = "s" .. i end`},
		{"doubling concatenation", `local s = "x" while true do s = s .. s end`},
		{"nested tables", `local t = {} while true do t = { t, {}, {} } end`},
		{"inside a coroutine", `coroutine.wrap(function() local t = {} for i = 1, 1e9 do t[i] = i end end)()`},
		{"inside coroutine.resume", `
local co = coroutine.create(function() local t = {} for i = 1, 1e9 do t[i] = i end end)
local ok, err = coroutine.resume(co)
error(err, 0)`},
		{"pcall cannot keep it going", `
local keep = {}
while true do
  pcall(function() for i = 1, 1e9 do keep[#keep + 1] = i end end)
end`},
		{"xpcall with a handler", `
local t = {}
while true do
  xpcall(function() for i = 1, 1e9 do t[#t + 1] = i end end, function(e) return e end)
end`},
		{"many closures", `local fs = {} for i = 1, 1e9 do local x = i fs[i] = function() return x end end`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err, ctx := runLimited(t, testLimit, time.Minute, tt.src)
			wantMemoryError(t, err, "")
			if _, ok := AsMemoryError(ctx, nil); !ok {
				t.Errorf("context.Cause(ctx) = %v, want the *MemoryError", context.Cause(ctx))
			}
			t.Logf("stopped after %v: %s", time.Since(start).Round(time.Millisecond), DescribeError(err))
		})
	}
}

func TestMemoryErrorIsATable(t *testing.T) {
	err, _ := runLimited(t, testLimit, time.Minute, `
local ok, err = pcall(string.rep, "x", 1e9)
assert(not ok and type(err) == "table", "want an error table")
assert(err.kind == "memory" and err.func == "string.rep", err.kind)
assert(err.limit == 32 * 1024 * 1024 and err.size == 1e9, err.size)
assert(tostring(err):find("^memory: string.rep: a result of 953.7 MiB would exceed the memory limit of 32 MiB %(limits.memory%)"), tostring(err))
`)
	if err != nil {
		t.Fatal(DescribeError(err))
	}
}

// TestCappedBuiltins checks that built-ins refuse results over the limit
// before allocating them, and accept those under it.
func TestCappedBuiltins(t *testing.T) {
	tests := []struct {
		name, fn, src string
	}{
		{"string.rep", "string.rep", `return string.rep("x", 1e10)`},
		{"string.rep method", "string.rep", `return ("abc"):rep(2^40)`},
		{"table.concat", "table.concat", `
local s = string.rep("x", 1024 * 1024)
local t = {} for i = 1, 64 do t[i] = s end
return table.concat(t)`},
		{"table.concat separator", "table.concat", `
local t = {} for i = 1, 1000 do t[i] = "" end
return table.concat(t, string.rep("-", 1024 * 1024))`},
		{"string.format width", "string.format", `return string.format(string.rep("%999999d", 100), unpack((function() local t = {} for i = 1, 100 do t[i] = i end return t end)()))`},
		{"string.gsub", "string.gsub", `return (string.gsub(string.rep("x", 100000), "", string.rep("y", 1000)))`},
		{"json.encode of shared subtables", "json.encode", `
local t = { string.rep("x", 1000) }
for i = 1, 30 do t = { t, t } end   -- 2^30 copies of the string once encoded
return require("json").encode(t)`},
		{"json.encode indented", "json.encode", `
local t = {} for i = 1, 3000 do t[i] = { i } end
local inner = { t, t, t, t }
return require("json").encode({ inner, inner, inner }, { indent = string.rep(" ", 200) })`},
		{"template.render of shared subtables", "template.render", `
local t = { "x" }
for i = 1, 30 do t = { t, t } end
return require("template").render("{{.}}", t)`},
		{"template.render output", "template.render", `
local t = {} for i = 1, 1000 do t[i] = i end
return require("template").render("{{range .}}{{range $}}{{range $}}xxxxxxxxxxxxxxxx{{end}}{{end}}{{end}}", t)`},
		{"json.decode", "json.decode", `return require("json").decode("[" .. string.rep("1,", 1000000) .. "1]")`},
		{"csv.parse", "csv.parse", `return require("csv").parse(string.rep("a,b,c\n", 200000))`},
		{"csv.parse with header", "csv.parse", `return require("csv").parse("x,y\n" .. string.rep("1,2\n", 200000), { header = true })`},
		{"loadstring", "loadstring", `return loadstring(string.rep("x = 1 ", 100000))`},
		{"load", "load", `
local piece, n = string.rep("x = 1 ", 1000), 0
return load(function() n = n + 1 if n <= 100 then return piece end end)`},
		{"string.gsub function", "string.gsub", `
local big = string.rep("y", 1024 * 1024)
return (string.gsub(string.rep("x", 100), "x", function() return big end))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			err, _ := runLimited(t, testLimit, time.Minute, tt.src)
			wantMemoryError(t, err, tt.fn)
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			// Garbage included (buffers grow by doubling):
			// bounded by a few times the limit, not by the result.
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 12*testLimit {
				t.Errorf("allocated %d MiB before refusing", grew>>20)
			}
		})
	}
}

func TestCappedBuiltinsKeepTheirResults(t *testing.T) {
	L := NewState(Options{MemoryLimit: testLimit})
	defer L.Close()
	_, stop := StartRun(context.Background(), L)
	defer stop()
	tests := []struct{ src, want string }{
		{`return string.rep("ab", 3)`, "ababab"},
		{`return string.rep("ab", 0) .. string.rep("ab", -1) .. string.rep("", 1e12)`, ""},
		{`return #string.rep("abc", 3 * 1024 * 1024)`, "9437184"},
		{`return table.concat({1, "b", 3}, ", ")`, "1, b, 3"},
		{`return table.concat({"a", "b", "c"}, "-", 2)`, "b-c"},
		{`return table.concat({"a", "b", "c"}, "-", 2, 2)`, "b"},
		{`return table.concat({"a", "b"}, "-", 5)`, ""},
		{`return table.concat({})`, ""},
		{`return #table.concat((function() local t = {} for i = 1, 3000 do t[i] = string.rep("z", 1000) end return t end)())`, "3000000"},
		{`return string.format("%5d|%-3s|%.2f|%q", 42, "a", 1.5, "x\n")`, "   42|a  |1.50|\"x\\n\""},
		{`return select(2, string.gsub("hello world", "o", "0"))`, "2"},
		{`return (string.gsub("hello world", "o", "0"))`, "hell0 w0rld"},
		{`return (string.gsub("hello world", "(o)", "[%1%%]", 1))`, "hell[o%] world"},
		{`return (string.gsub("abc", "", "-"))`, "-a-b-c-"},
		{`return (string.gsub("abc", "^a", "A"))`, "Abc"},
		{`return (string.gsub("a b", "%w", {a = "1"}))`, "1 b"},
		{`return (string.gsub("a b", "%w", function(c) if c == "b" then return "2" end end))`, "a 2"},
		{`return (string.gsub("key=val", "(%w+)=(%w+)", "%2=%1"))`, "val=key"},
		{`return (string.gsub("abc", "b", "%0%0"))`, "abbc"},
		{`return (string.gsub("abc", "()b", "%1"))`, "a2c"},
		{`return (string.gsub("abc", "x", "y"))`, "abc"},
		{`return (string.gsub("aaa", "a", "b", 0))`, "aaa"},
		{`return (string.gsub(string.rep("ab", 5000), "a", "c"))`, strings.Repeat("cb", 5000)},
		{`return loadstring("return 1 + 1", "=two")()`, "2"},
		{`return #require("json").decode("[" .. string.rep("1,", 10000) .. "1]")`, "10001"},
		{`return #require("csv").parse(string.rep("a,b,c\n", 10000))`, "10000"},
		{`local n = 0 return load(function() n = n + 1 if n == 1 then return "return " elseif n == 2 then return "'loaded'" end end)()`, "loaded"},
		{`return select(2, load(function() return {} end))`, "reader function must return a string"},
		{`return tostring(select(2, loadstring("x = = 1", "=bad")):find("syntax error", 1, true) ~= nil)`, "true"},
	}
	for _, tt := range tests {
		out, err := evalLua(L, tt.src)
		if err != nil || len(out) == 0 {
			t.Errorf("%s: %v", tt.src, err)
			continue
		}
		if got := out[0].String(); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.src, got, tt.want)
		}
	}
	if _, err := evalLua(L, `return string.gsub("abc", "(b)", "%2")`); err == nil || !strings.Contains(err.Error(), "invalid capture index") {
		t.Errorf("gsub with a bad capture index: %v", err)
	}
}

// TestBuiltinsStopWhenTheRunEnds checks that long built-in calls notice a
// context that ends while they work, also with the memory limit disabled,
// and stop after at most a few chunks.
func TestBuiltinsStopWhenTheRunEnds(t *testing.T) {
	tests := []struct {
		name, src string
		limit     int64
	}{
		{"string.rep, no limit", `return expire(string.rep, "x", 6e9)`, -1},
		{"string.rep under the limit", `return expire(string.rep, "x", 30 * 1024 * 1024)`, testLimit},
		{"table.concat", `
local t = {} for i = 1, 100 do t[i] = string.rep("x", 100000) end
return expire(table.concat, t)`, -1},
		{"string.gsub", `return expire(string.gsub, string.rep("x", 100000), "x", "yy")`, -1},
		{"template.render", `
local t = {} for i = 1, 1000 do t[i] = i end
return expire(require("template").render, "{{range .}}{{range $}}{{range $}}x{{end}}{{end}}{{end}}", t)`, -1},
		{"csv.parse", `return expire(require("csv").parse, string.rep("a,b\n", 100000))`, -1},
		{"json.encode", `
local t = { string.rep("x", 1000) }
for i = 1, 30 do t = { t, t } end
return expire(require("json").encode, t)`, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			err, _ := runLimited(t, tt.limit, time.Minute, tt.src)
			if err == nil || !strings.Contains(err.Error(), "context canceled") {
				t.Fatalf("err = %v, want the run's context canceled", err)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > testLimit+16<<20 {
				t.Errorf("allocated %d MiB after the context ended", grew>>20)
			}
			t.Logf("stopped after %v", time.Since(start))
		})
	}
}

// TestMemoryLimitOff checks that a negative limit disables the watchdog and
// the caps.
func TestMemoryLimitOff(t *testing.T) {
	err, _ := runLimited(t, -1, time.Minute, `assert(#string.rep("x", 40 * 1024 * 1024) == 40 * 1024 * 1024)`)
	if err != nil {
		t.Fatal(DescribeError(err))
	}
}

// TestRunUnderLimitUnaffected checks that a run holding less than its
// limit is never stopped, even when the heap is larger than the limit
// because of memory the run does not own.
func TestRunUnderLimitUnaffected(t *testing.T) {
	ballast := make([]byte, 2*testLimit) // the host's memory, not the script's
	err, _ := runLimited(t, testLimit, time.Minute, `
local t = {}
for round = 1, 20 do
  for i = 1, 50000 do t[i] = "v" .. i end   -- a few MiB, rebuilt: garbage
end`)
	runtime.KeepAlive(ballast)
	if err != nil {
		t.Fatal(DescribeError(err))
	}
}

// TestStateSizeTracksTheHeap checks the estimate against what the Go heap
// really holds for typical shapes of data.
func TestStateSizeTracksTheHeap(t *testing.T) {
	tests := []struct{ name, src string }{
		{"array of numbers", `data = {} for i = 1, 200000 do data[i] = i + 0.5 end`},
		{"array of strings", `data = {} for i = 1, 100000 do data[i] = "item number " .. i end`},
		{"map of strings", `data = {} for i = 1, 100000 do data["k" .. i] = i end`},
		{"list of records", `data = {} for i = 1, 30000 do data[i] = { id = i, name = "n" .. i } end`},
		{"big strings", `data = {} for i = 1, 20 do data[i] = string.rep(string.char(65 + i), 100000) end`},
	}
	heap := func() float64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			L := NewState(Options{})
			defer L.Close()
			// The heap is shared with whatever else the test binary runs:
			// measure what dropping the data frees, a few times.
			var est, real float64
			for range 3 {
				if _, err := evalLua(L, tt.src); err != nil {
					t.Fatal(err)
				}
				with, _ := stateSize(L, 0)
				h1 := heap()
				L.SetGlobal("data", lua.LNil)
				without, _ := stateSize(L, 0)
				h0 := heap()
				est, real = float64(with-without), h1-h0
				t.Logf("estimate %.1f MiB, heap %.1f MiB", est/(1<<20), real/(1<<20))
				if est >= real/2 && est <= real*2 {
					return
				}
			}
			t.Errorf("estimate %.0f bytes, heap grew by %.0f", est, real)
		})
	}
}

// TestMemoryHookOnlyOnTheVM checks that Done called from another goroutine
// while a measurement is pending does not walk the state.
func TestMemoryHookOnlyOnTheVM(t *testing.T) {
	L := NewState(Options{MemoryLimit: testLimit})
	defer L.Close()
	ctx, stop := StartRun(context.Background(), L)
	defer stop()
	c := ctx.(*limitCtx)
	c.flags.Or(flagMeasure | flagDead)
	c.err = &MemoryError{Limit: testLimit}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ctx.Done() // as context plumbing or I/O code would
	}()
	<-done
	if c.flags.Load()&flagMeasure == 0 {
		t.Error("a call from outside the VM served the measurement")
	}
	_, err := evalLua(L, `return 1`)
	if _, ok := AsMemoryError(nil, err); !ok {
		t.Errorf("the VM did not raise the memory error: %v", err)
	}
}

func TestIndentedSizeBoundsJSONIndent(t *testing.T) {
	for _, src := range []string{`[]`, `{}`, `[1,[2,[3,{"a":"x,y[]{}\\\"","b":[]}]]]`, `{"k":{"l":{"m":[1,2,3]}}}`} {
		for _, indent := range []string{" ", "    "} {
			var out bytes.Buffer
			if err := json.Indent(&out, []byte(src), "", indent); err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			if n := indentedSize([]byte(src), len(indent)); n < out.Len() {
				t.Errorf("indentedSize(%s, %d) = %d, json.Indent wrote %d", src, len(indent), n, out.Len())
			}
		}
	}
}

// TestPatternFunctionsMatchGopherLua runs the pattern functions, which
// luabind replaces with interruptible ones, against gopher-lua's own.
func TestPatternFunctionsMatchGopherLua(t *testing.T) {
	exprs := []string{
		`return string.find("hello world", "o w")`,
		`return string.find("hello world", "o", 6)`,
		`return string.find("hello world", "l+")`,
		`return string.find("hello", "")`,
		`return string.find("a.b", ".", 1, true)`,
		`return string.find("a.b", "%.", -2)`,
		`return string.find("key = val", "(%w+)%s*=%s*(%w+)")`,
		`return string.find("abc", "()b()")`,
		`return string.find("abc", "x")`,
		`return string.find("abc", "^b")`,
		`return string.find("abc", "b", 10)`,
		`return string.match("hello 123 world", "%d+")`,
		`return string.match("2026-12-07", "(%d+)-(%d+)-(%d+)")`,
		`return string.match("abc", "^(a)")`,
		`return string.match("  trim  ", "^%s*(.-)%s*$")`,
		`return string.match("abc", "b", -2)`,
		`return string.match("x = [[a]]", "%b[]")`,
		`return string.match("abcabc", "(a)(b)c%1")`,
		`local t = {} for w in string.gmatch("one two  three", "%a+") do t[#t+1] = w end return table.concat(t, ",")`,
		`local t = {} for k, v in string.gmatch("a=1, b=2", "(%w+)=(%w+)") do t[#t+1] = k .. v end return table.concat(t, ",")`,
		`local t = {} for p in string.gmatch("abc", "()") do t[#t+1] = p end return table.concat(t, ",")`,
		`local t = {} for w in string.gmatch("abc", "") do t[#t+1] = "[" .. w .. "]" end return table.concat(t)`,
		`local t = {} for w in string.gmatch("aaa", "^a") do t[#t+1] = w end return #t`,
		`return pcall(string.find, "abc", "[a")`,
		`return pcall(string.match, "abc", "(()")`,
	}
	ours := NewState(Options{})
	defer ours.Close()
	theirs := lua.NewState()
	defer theirs.Close()
	for _, src := range exprs {
		a, errA := evalLua(ours, src)
		b, errB := evalLua(theirs, src)
		if (errA == nil) != (errB == nil) {
			t.Errorf("%s: error %v, gopher-lua %v", src, errA, errB)
			continue
		}
		// gopher-lua's match returns nothing where Lua returns nil.
		if len(a) != len(b) && !(len(a) == 1 && a[0] == lua.LNil && len(b) == 0) {
			t.Errorf("%s = %v, gopher-lua %v", src, a, b)
			continue
		}
		for i := range b {
			if a[i].String() != b[i].String() {
				t.Errorf("%s = %v, gopher-lua %v", src, a, b)
				break
			}
		}
	}
}

// TestPatternMatchingStopsWhenTheRunEnds checks that a backtracking
// pattern is interrupted.
func TestPatternMatchingStopsWhenTheRunEnds(t *testing.T) {
	for _, call := range []string{"string.find, s, p", "string.match, s, p", "string.gsub, s, p, ''",
		"string.gmatch(s, p)"} {
		start := time.Now()
		err, _ := runLimited(t, testLimit, time.Minute,
			`local s, p = string.rep("a", 3000), ".-.-.-b" return expire(`+call+`)`)
		if err == nil || !strings.Contains(err.Error(), "context canceled") {
			t.Fatalf("%s: err = %v, want the run's context canceled", call, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s took %v", call, d)
		}
	}
}

// TestFSReadCapped: fs.read of a file larger than the limit is refused
// with a memory error without reading it whole; a file under the limit
// reads as before.
func TestFSReadCapped(t *testing.T) {
	dir := t.TempDir()
	big, small := filepath.Join(dir, "big.bin"), filepath.Join(dir, "small.txt")
	if err := os.WriteFile(big, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 4<<30); err != nil { // sparse: 4 GiB, no disk
		t.Fatal(err)
	}
	if err := os.WriteFile(small, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	L := NewState(Options{MemoryLimit: testLimit, Sandbox: SandboxTrusted})
	t.Cleanup(L.Close)
	_, stop := StartRun(context.Background(), L)
	defer stop()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	proto, err := CompileString(fmt.Sprintf(`
local fs = require("fs")
assert(fs.read(%q) == "hello")
local ok, err = pcall(fs.read, %q)
assert(not ok and type(err) == "table" and err.kind == "memory" and err.func == "fs.read", tostring(err))
assert(err.size == 4 * 1024 * 1024 * 1024, err.size)
`, small, big), "fsread.lua")
	if err != nil {
		t.Fatal(err)
	}
	if err := DoProto(L, proto); err != nil {
		t.Fatal(DescribeError(err))
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > testLimit {
		t.Errorf("allocated %d MiB before refusing", grew>>20)
	}
}
