package luabind

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// rootsFixture lays out:
//
//	base/               the root (config folder)
//	  in.txt
//	  state/            denied: the state store
//	    ledger.jsonl
//	    files/          a root inside it: the scripts' area
//	  up -> ../outside  relative symlink leaving the root
//	  abs -> outside    absolute symlink
//	  st -> state       relative symlink into the state store
//	other/              a second root
//	outside/            no root
//	  secret.txt
type rootsFixture struct {
	base, other, outside string
}

func newRootsFixture(t *testing.T) rootsFixture {
	t.Helper()
	top := t.TempDir()
	fx := rootsFixture{base: filepath.Join(top, "base"), other: filepath.Join(top, "other"), outside: filepath.Join(top, "outside")}
	for _, d := range []string{fx.base, fx.other, fx.outside, filepath.Join(fx.base, "state", "files")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{
		filepath.Join(fx.base, "in.txt"):                "inside",
		filepath.Join(fx.base, "state", "ledger.jsonl"): "ledger",
		filepath.Join(fx.outside, "secret.txt"):         "outside",
	} {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		filepath.Join(fx.base, "up"):  "../outside",
		filepath.Join(fx.base, "abs"): fx.outside,
		filepath.Join(fx.base, "st"):  "state",
	} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

func (fx rootsFixture) state(t *testing.T, sandbox Sandbox, fixed bool) *lua.LState {
	t.Helper()
	L := newTestState(t, Options{
		ScriptsDir: fx.base, BaseDir: fx.base, Sandbox: sandbox,
		FSRoots:       []string{fx.base, fx.other, filepath.Join(fx.base, "state", "files")},
		FSRootsSource: "config line 7", FSRootsFixed: fixed,
		FSDenied: []string{filepath.Join(fx.base, "state")},
	})
	L.SetGlobal("BASE", luaString(fx.base))
	L.SetGlobal("OTHER", luaString(fx.other))
	L.SetGlobal("OUTSIDE", luaString(fx.outside))
	return L
}

func TestStrictFSConfinedToRoots(t *testing.T) {
	outside := "is outside fs_roots (config line 7)"
	denied := "which scripts may not touch"
	tests := []struct{ name, src, want string }{
		{"absolute path", `return fs.read("/etc/passwd")`, "path /etc/passwd " + outside},
		{"dot-dot", `return fs.read("../../../../../../etc/passwd")`, outside},
		{"dot-dot to sibling", `return fs.read("../outside/secret.txt")`, outside},
		{"relative symlink out", `return fs.read("up/secret.txt")`, outside},
		{"absolute symlink", `return fs.read("abs/secret.txt")`, outside},
		{"write outside", `fs.write(OUTSIDE .. "/new.txt", "x")`, outside},
		{"write through symlink", `fs.write("up/new.txt", "x")`, outside},
		{"append through symlink", `fs.write("up/new.txt", "x", {append = true})`, outside},
		{"list outside", `return fs.list("/")`, outside},
		{"list through symlink", `return fs.list("up")`, outside},
		{"glob outside", `return fs.glob("/etc/*")`, outside},
		{"glob above the roots", `return fs.glob("../*/secret.txt")`, outside},
		{"stat outside", `return fs.stat(OUTSIDE .. "/secret.txt")`, outside},
		{"exists outside", `return fs.exists("/etc/passwd")`, outside},
		{"move out", `fs.move("in.txt", OUTSIDE .. "/in.txt")`, outside},
		{"move in", `fs.move(OUTSIDE .. "/secret.txt", "got.txt")`, outside},
		{"move out through symlink", `fs.move("in.txt", "up/in.txt")`, outside},
		{"remove outside", `fs.remove(OUTSIDE .. "/secret.txt")`, outside},
		{"remove through symlink", `fs.remove("up/secret.txt")`, outside},
		{"mkdir outside", `fs.mkdir(OUTSIDE .. "/d")`, outside},
		{"mkdir through symlink", `fs.mkdir("up/d")`, outside},
		{"csv outside", `return require("csv").read("up/secret.txt")`, outside},
		{"template outside", `return require("template").render_file("/etc/passwd", {})`, outside},
		{"attachment outside", `return require("mail").message{from = "a@example.com", to = "b@example.com", text = "x",
			attachments = {{path = "up/secret.txt"}}}:as_string()`, outside},
		{"read the state store", `return fs.read("state/ledger.jsonl")`, denied},
		{"write the state store", `fs.write("state/ledger.jsonl", "")`, denied},
		{"write the state store via symlink", `fs.write("st/outbox.x", "")`, denied},
		{"remove the state store", `fs.remove("state", {recursive = true})`, denied},
		{"move the state store away", `fs.move("state", "gone")`, denied},
		{"glob in the state store", `return fs.glob("state/*")`, denied},
		{"glob does not list the state store", `return table.concat(fs.glob("st*/*"), ",")`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := newRootsFixture(t)
			L := fx.state(t, SandboxStrict, true)
			out, err := evalLua(L, `fs = require("fs")`+"\n"+tc.src)
			if tc.want == "" {
				if err != nil || len(out) != 1 || out[0].String() != "st/files,state/files" {
					t.Fatalf("got %v, %v; want only the files area", out, err)
				}
				return
			}
			msg := luaErrorMessage(err)
			if err == nil || !strings.Contains(msg, tc.want) {
				t.Fatalf("got %v, error %q; want an error containing %q", out, msg, tc.want)
			}
			if strings.Contains(msg, "outside\n") || (len(out) > 0 && strings.Contains(out[0].String(), "outside")) {
				t.Errorf("outside content leaked")
			}
			// Nothing outside changed.
			if b, err := os.ReadFile(filepath.Join(fx.outside, "secret.txt")); err != nil || string(b) != "outside" {
				t.Errorf("outside/secret.txt = %q, %v", b, err)
			}
			if ents, _ := os.ReadDir(fx.outside); len(ents) != 1 {
				t.Errorf("outside/ has %d entries, want 1", len(ents))
			}
			if b, err := os.ReadFile(filepath.Join(fx.base, "state", "ledger.jsonl")); err != nil || string(b) != "ledger" {
				t.Errorf("the ledger = %q, %v", b, err)
			}
		})
	}
}

func TestStrictFSInsideRootsWorks(t *testing.T) {
	fx := newRootsFixture(t)
	L := fx.state(t, SandboxStrict, true)
	src := `
		local fs = require("fs")
		fs.write("a.txt", "one")
		fs.write("a.txt", "two", {append = true})
		assert(fs.read("a.txt") == "onetwo")
		fs.mkdir("d/e")
		fs.move("a.txt", "d/e/a.txt")                      -- same root
		fs.move("d/e/a.txt", OTHER .. "/a.txt")            -- across roots
		assert(fs.read(OTHER .. "/a.txt") == "onetwo")
		assert(not fs.exists("d/e/a.txt"))
		fs.write("state/files/mine.json", "{}")            -- the scripts' area
		assert(fs.read("st/files/mine.json") == "{}")
		local g = fs.glob("*.txt")
		assert(#g == 1 and g[1] == "in.txt", table.concat(g, ","))
		assert(fs.list("d")[1] == "e")
		fs.remove("d", {recursive = true})
		assert(not fs.exists("d"))
		assert(fs.stat("sub/../in.txt").size == 6)
		return "ok"`
	if got := evalString(t, L, src); got != "ok" {
		t.Fatal(got)
	}
}

func TestTrustedFSUnconfined(t *testing.T) {
	fx := newRootsFixture(t)
	L := fx.state(t, SandboxTrusted, true)
	if got := evalString(t, L, `return require("fs").read("up/secret.txt") .. require("fs").read("state/ledger.jsonl")`); got != "outsideledger" {
		t.Errorf("got %q", got)
	}
}

func TestAddFSRoot(t *testing.T) {
	fx := newRootsFixture(t)
	read := `return require("fs").read(OUTSIDE .. "/secret.txt")`
	t.Run("default roots take the folder", func(t *testing.T) {
		L := fx.state(t, SandboxStrict, false)
		if _, err := evalLua(L, read); err == nil {
			t.Fatal("read outside before AddFSRoot")
		}
		if err := AddFSRoot(L, fx.outside); err != nil {
			t.Fatal(err)
		}
		if got := evalString(t, L, read); got != "outside" {
			t.Errorf("got %q", got)
		}
		// Another state is not widened.
		if _, err := evalLua(fx.state(t, SandboxStrict, false), read); err == nil {
			t.Error("AddFSRoot widened another state")
		}
	})
	t.Run("fixed roots refuse it", func(t *testing.T) {
		L := fx.state(t, SandboxStrict, true)
		err := AddFSRoot(L, fx.outside)
		if err == nil || !strings.Contains(err.Error(), "outside fs_roots (config line 7)") {
			t.Fatalf("AddFSRoot = %v", err)
		}
		if err := AddFSRoot(L, filepath.Join(fx.base, "drop")); err != nil {
			t.Errorf("a folder inside the roots: %v", err)
		}
	})
}

func TestRequireRefusesStateStore(t *testing.T) {
	fx := newRootsFixture(t)
	if err := os.WriteFile(filepath.Join(fx.base, "state", "mod.lua"), []byte("return 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	L := fx.state(t, SandboxStrict, true)
	_, err := evalLua(L, `return require("state.mod")`)
	if msg := luaErrorMessage(err); !strings.Contains(msg, "which scripts may not touch") {
		t.Fatalf("require of a state file: %q", msg)
	}
}
