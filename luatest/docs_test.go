package luatest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
)

// docsPath is the Lua API reference; its "testing" section is checked here
// (luabind's docs test cannot import this package).
const docsPath = "../docs/lua-api.md"

// docsTestMarker starts a block that is a whole test file.
const docsTestMarker = "-- mailbot test"

type docBlock struct {
	line int
	src  string
}

// testingSection returns the ```lua blocks of the testing section.
func testingSection(t *testing.T) []docBlock {
	t.Helper()
	raw, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks  []docBlock
		in      bool
		cur     *docBlock
		body    []string
		n       int
		started bool
	)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur == nil && strings.HasPrefix(line, "## ") {
			in = strings.Contains(line, "`testing`")
			started = started || in
		}
		if !in {
			continue
		}
		switch {
		case cur == nil && strings.TrimSpace(line) == "```lua":
			cur, body = &docBlock{line: n}, nil
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.src = strings.Join(body, "\n") + "\n"
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			body = append(body, line)
		}
	}
	if !started {
		t.Fatalf("%s has no `testing` section", docsPath)
	}
	return blocks
}

// moduleFunctions lists the testing module's functions as "t.clock.set("
// and the loaded script's as "report.fire(".
func moduleFunctions(t *testing.T) []string {
	t.Helper()
	s, err := newSession(context.Background(), &Options{RunTimeout: time.Minute}, "docs")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	L := lua.NewState()
	defer L.Close()
	L.PreloadModule("testing", s.loader)
	if err := L.DoString(`MOD = require("testing")`); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(prefix string, tbl *lua.LTable)
	walk = func(prefix string, tbl *lua.LTable) {
		tbl.ForEach(func(k, v lua.LValue) {
			switch x := v.(type) {
			case *lua.LFunction:
				out = append(out, prefix+k.String()+"(")
			case *lua.LTable:
				walk(prefix+k.String()+".", x)
			}
		})
	}
	walk("t.", L.GetGlobal("MOD").(*lua.LTable))
	sort.Strings(out)
	return out
}

// Every function of the testing module, and of the script objects t.load
// returns, appears in an example of the testing section.
func TestDocsCoverTestingModule(t *testing.T) {
	var code strings.Builder
	for _, b := range testingSection(t) {
		code.WriteString(b.src)
	}
	examples := code.String()
	want := moduleFunctions(t)
	if len(want) < 12 {
		t.Fatalf("found only %d functions in the testing module: %v", len(want), want)
	}
	// The script object's functions, called on any variable name.
	for _, fn := range []string{"fire", "triggers", "state"} {
		if !strings.Contains(examples, "."+fn+"(") && !strings.Contains(examples, ":"+fn+"(") {
			t.Errorf("no example in the testing section calls script.%s", fn)
		}
	}
	for _, w := range want {
		if !strings.Contains(examples, w) {
			t.Errorf("no example in the testing section of %s calls %s", docsPath, strings.TrimSuffix(w, "("))
		}
	}
}

// The script objects have exactly the documented functions.
func TestScriptObjectFunctions(t *testing.T) {
	dir := fixture(t, map[string]string{"s.lua": ``, "s_test.lua": `local t = require("testing")
local s = t.load("s.lua")
t.test("fns", function()
  local names = {}
  for k, v in pairs(s) do if type(v) == "function" then names[#names + 1] = k end end
  table.sort(names)
  t.eq(names, { "fire", "state", "triggers" })
end)`})
	if res, out := run(t, dir, nil); res.ExitCode() != ExitPass {
		t.Fatal(out)
	}
}

// The "-- mailbot test" blocks of the reference pass against the example
// scripts.
func TestDocsTestBlocks(t *testing.T) {
	scripts, err := filepath.Abs("../examples/scripts")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range testingSection(t) {
		if !strings.HasPrefix(b.src, docsTestMarker+"\n") {
			if _, err := luabind.CompileString(b.src, "docs"); err != nil {
				t.Errorf("docs/lua-api.md:%d: %v", b.line, err)
			}
			continue
		}
		n++
		t.Run("line_"+strconv.Itoa(b.line), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "docs_test.lua")
			if err := os.WriteFile(file, []byte(b.src), 0o644); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			opts := Options{ScriptsDir: scripts, Out: &out, RunTimeout: 20 * time.Second}
			// drop-notify and healthcheck use the default account.
			opts.Lua.SMTP.Accounts = map[string]luabind.Account{"dev": {Host: "127.0.0.1", Port: 2525, TLS: "starttls", Username: "mailbot"}}
			opts.Lua.SMTP.DefaultAccount = "dev"
			res := Run(context.Background(), []string{file}, opts)
			if res.ExitCode() != ExitPass {
				t.Errorf("docs/lua-api.md:%d: exit %d\n%s", b.line, res.ExitCode(), out.String())
			}
		})
	}
	if n < 8 {
		t.Errorf("found %d %q blocks, want at least 8", n, docsTestMarker)
	}
}
