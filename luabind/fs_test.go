package luabind

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFSWriteAtomic(t *testing.T) {
	tests := []struct {
		name     string
		existing fs.FileMode // 0: no existing file
		opts     string
		wantMode fs.FileMode
	}{
		{"new file default mode", 0, `nil`, 0o644},
		{"existing mode kept", 0o600, `nil`, 0o600},
		{"octal string mode", 0, `{mode = "0640"}`, 0o640},
		{"numeric mode", 0o644, `{mode = 384}`, 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.txt")
			if tc.existing != 0 {
				if err := os.WriteFile(path, []byte("old"), tc.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.existing); err != nil { // umask-proof
					t.Fatal(err)
				}
			}
			L := newTestState(t, Options{BaseDir: dir})
			if _, err := evalLua(L, `require("fs").write("out.txt", "new content", `+tc.opts+`)`); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != "new content" {
				t.Errorf("content = %q, %v; want %q", b, err, "new content")
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tc.wantMode {
				t.Errorf("mode = %o, want %o", got, tc.wantMode)
			}
			assertOnlyFiles(t, dir, "out.txt")
		})
	}
}

func TestFSWriteReplacesRatherThanTruncates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.csv")
	if err := os.WriteFile(path, []byte("old report"), 0o644); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	L := newTestState(t, Options{BaseDir: dir})
	if _, err := evalLua(L, `require("fs").write("report.csv", "new report")`); err != nil {
		t.Fatal(err)
	}
	// A reader that opened the old file still sees it whole: the new content
	// went to a new file that was renamed into place.
	b := make([]byte, 64)
	n, _ := reader.Read(b)
	if got := string(b[:n]); got != "old report" {
		t.Errorf("open reader sees %q, want %q", got, "old report")
	}
}

func TestFSWriteFailureLeavesNoTempFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "target"), 0o755); err != nil {
		t.Fatal(err)
	}
	L := newTestState(t, Options{BaseDir: dir})
	_, err := evalLua(L, `require("fs").write("target", "data")`)
	want := "fs.write: write " + filepath.Join(dir, "target")
	if msg := luaErrorMessage(err); !strings.Contains(msg, want) {
		t.Errorf("error = %q, want it to contain %q", msg, want)
	}
	assertOnlyFiles(t, dir, "target")
}

func TestFSAppend(t *testing.T) {
	dir := t.TempDir()
	L := newTestState(t, Options{BaseDir: dir})
	if _, err := evalLua(L, `local fs = require("fs")
		fs.write("log.txt", "a\n", {append = true})
		fs.write("log.txt", "b\n", {append = true})`); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "log.txt"))
	if err != nil || string(b) != "a\nb\n" {
		t.Errorf("appended content = %q, %v; want %q", b, err, "a\nb\n")
	}
}

func TestFSErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, src, want string
	}{
		{"read", `fs.read("missing.txt")`, "fs.read: open " + filepath.Join(dir, "missing.txt") + ": no such file or directory"},
		{"list", `fs.list("nodir")`, "fs.list: open " + filepath.Join(dir, "nodir")},
		{"remove", `fs.remove("ghost")`, "fs.remove: remove " + filepath.Join(dir, "ghost")},
		{"move", `fs.move("ghost", "x")`, "fs.move: rename " + filepath.Join(dir, "ghost")},
		{"bad glob", `fs.glob("[")`, "fs.glob: [: syntax error in pattern"},
		{"bad mode", `fs.write("x", "y", {mode = "rw"})`, `invalid mode "rw"`},
		{"mode beyond permission bits", `fs.write("x", "y", {mode = "4755"})`, "only permission bits are allowed"},
	}
	L := newTestState(t, Options{BaseDir: dir})
	if _, err := evalLua(L, `fs = require("fs")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := evalLua(L, tc.src)
			if msg := luaErrorMessage(err); !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := os.WriteFile(src, []byte("payload"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(src, dst, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil || string(b) != "payload" {
		t.Errorf("copy = %q, %v", b, err)
	}
	assertOnlyFiles(t, dir, "dst", "src")
}

// assertOnlyFiles fails unless dir holds exactly the given names, which
// catches leftover temporary files.
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

func TestFSLuaFile(t *testing.T) {
	// The Lua tests make their own temporary folders (t:tempdir()).
	runLuaTestFile(t, newTestState(t, Options{BaseDir: t.TempDir(), FSRoots: []string{os.TempDir()}}), "testdata/toolbox_fs.lua")
}
