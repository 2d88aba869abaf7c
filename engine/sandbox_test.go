package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A strict script's drop folder is open to its handler (ev.path, the
// derived files next to it, attachments), while a sibling folder it never
// registered and the engine's state store stay closed.
func TestOnFileFolderIsAnFSRoot(t *testing.T) {
	h := newHarness(t, nil)
	top := filepath.Dir(h.scripts)
	drop, private := filepath.Join(top, "drop"), filepath.Join(top, "private")
	if err := os.MkdirAll(private, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(private, "x.txt"), []byte("private"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.write("drop.lua", fmt.Sprintf(`
local probe, fs, mail = require("probe"), require("fs"), require("mail")
mailbot.on_file({ dir = %q, pattern = "*.csv", settle = "50ms" }, function(ev)
  local data = fs.read(ev.path)
  fs.write(ev.dir .. "/" .. ev.name .. ".seen", data)
  local m = mail.message{ from = "a@example.com", to = "b@example.com", text = "x",
    attachments = { { path = ev.path } } }
  assert(m:as_string():find(ev.name, 1, true))
  local ok1, e1 = pcall(fs.read, %q)
  local ok2, e2 = pcall(fs.list, %q)
  probe.hit("file", data .. "|" .. tostring(ok1) .. " " .. tostring(e1) .. "|" .. tostring(ok2) .. " " .. tostring(e2))
end)`, drop, filepath.Join(private, "x.txt"), h.state))
	h.start()
	waitDir(t, drop)
	if err := os.WriteFile(filepath.Join(drop, "a.csv"), []byte("1,2"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(h.waitHit("file").value, "|")
	if len(got) != 3 || got[0] != "1,2" {
		t.Fatalf("handler saw %q", got)
	}
	if !strings.HasPrefix(got[1], "false ") || !strings.Contains(got[1], "is outside fs_roots") {
		t.Errorf("read of an unregistered folder: %q", got[1])
	}
	if !strings.HasPrefix(got[2], "false ") || !strings.Contains(got[2], "fs_roots") {
		t.Errorf("list of the state store: %q", got[2])
	}
	if b, err := os.ReadFile(filepath.Join(drop, "a.csv.seen")); err != nil || string(b) != "1,2" {
		t.Errorf("derived file: %q, %v", b, err)
	}
}
