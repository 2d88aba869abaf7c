package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExecFSRoot: exec --fs-root DIR opens DIR to the strict script of this
// run, and only this run.
func TestExecFSRoot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	scripts, data := filepath.Join(dir, "scripts"), filepath.Join(dir, "data")
	for _, d := range []string{scripts, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(data, "msg.txt"), "payload 7")
	script := filepath.Join(scripts, "read.lua")
	writeFile(t, script, `local fs = require("fs")
print(fs.read(arg[1]))
assert(fs.read("read.lua"))   -- the script's own folder stays open
`)
	msg := filepath.Join(data, "msg.txt")

	r := mailbot(t, dir, nil, "exec", script, msg)
	if r.code == 0 || !strings.Contains(r.stderr, "is outside fs_roots") {
		t.Fatalf("without --fs-root the read must be refused: %v", r)
	}
	r = mailbot(t, dir, nil, "exec", "--fs-root", data, script, msg)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "payload 7" {
		t.Fatalf("with --fs-root: %v", r)
	}
}
