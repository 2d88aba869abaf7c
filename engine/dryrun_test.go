package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeFileAll is writeFile creating the folders on the way.
func writeFileAll(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, content)
}

// folderDigest hashes the names, modes, sizes, modification times and
// contents of everything under dir, dir itself included.
func folderDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestFileTriggerObserveOnly: in a dry run, the after action, the move to
// failed/ and the retry say what they would do, and the drop folder is
// left exactly as it was.
func TestFileTriggerObserveOnly(t *testing.T) {
	tests := []struct {
		name    string
		after   string
		err     error
		preset  string // a file already at the destination
		want    string // Disposition.Action
		wantRel string // Disposition.Path, relative to the drop folder
	}{
		{name: "keep", after: "keep", want: "kept", wantRel: "r.csv"},
		{name: "delete", after: "delete", want: "deleted", wantRel: "r.csv"},
		{name: "move", after: "move:done", want: "moved", wantRel: "done/r.csv"},
		{name: "move to a taken name", after: "move:done", preset: "done/r.csv", want: "moved", wantRel: "done/r-1.csv"},
		{name: "failure", after: "move:done", err: errors.New("bad row"), want: "failed", wantRel: "failed/r.csv"},
		{name: "retry", after: "delete", err: Retry(errors.New("relay down")), want: "retry", wantRel: "r.csv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			after, err := ParseAfter(tc.after)
			if err != nil {
				t.Fatal(err)
			}
			if tc.preset != "" {
				writeFileAll(t, filepath.Join(dir, tc.preset), "older")
			}
			l, err := OpenLedger(filepath.Join(t.TempDir(), "l.jsonl"), LedgerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			spec := FileSpec{Dir: dir, Pattern: "*.csv", After: after, Backoff: DefaultBackoff()}
			h := newFT(t, nil, spec, FileTriggerOptions{Ledger: l, ObserveOnly: true})
			src := filepath.Join(dir, "r.csv")
			h.drop(src, "payload")
			h.settle()
			rf := h.expectReady(src)[src]
			before := folderDigest(t, dir)
			d := h.complete(rf, tc.err)
			if d.Action != tc.want || d.Path != filepath.Join(dir, tc.wantRel) || !d.DryRun {
				t.Errorf("Disposition = %+v, want %s at %s, DryRun", d, tc.want, tc.wantRel)
			}
			if got := folderDigest(t, dir); got != before {
				t.Errorf("the drop folder changed")
			}
			if tc.err == nil && !l.Seen(rf.Key()) {
				t.Errorf("the (overlay) ledger did not record the file")
			}
		})
	}
}

// TestFileTriggerObserveOnlyLeavesLedgerDone: a file the ledger knows as
// done but not yet moved (a crash between the two) is left as it is in a
// dry run, where a real run would finish the move.
func TestFileTriggerObserveOnlyLeavesLedgerDone(t *testing.T) {
	dir := t.TempDir()
	clock := NewFakeClock(t0)
	src := filepath.Join(dir, "paid.csv")
	writeFile(t, src, "invoice")
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(filepath.Join(t.TempDir(), "l.jsonl"), LedgerOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Record(LedgerKey{src, fi.Size(), fi.ModTime(), sha("invoice")}, OutcomeDone); err != nil {
		t.Fatal(err)
	}
	before := folderDigest(t, dir)
	h := newFT(t, clock, FileSpec{Dir: dir, After: After{Kind: AfterMove, Dir: DoneDir}}, FileTriggerOptions{Ledger: l, ObserveOnly: true})
	h.settle()
	h.expectReady()
	if got := folderDigest(t, dir); got != before {
		t.Fatal("a dry run finished the after action")
	}
}

// TestSeedDryRunState: the overlay becomes a copy of the engine's state
// (ledger, mailbot.state, last runs) whatever it held before, and writes
// to it never reach the real directory.
func TestSeedDryRunState(t *testing.T) {
	real := t.TempDir()
	overlay := filepath.Join(t.TempDir(), "overlay")
	writeFileAll(t, filepath.Join(real, "ledger.jsonl"), `{"path":"/x","size":1,"mtime_ns":1,"sha256":"ab","outcome":"done","at":"2026-01-01T00:00:00Z"}`+"\n")
	writeFileAll(t, filepath.Join(real, "state", "report.json"), `{"n": 1}`+"\n")
	writeFileAll(t, filepath.Join(real, "state", lastRunFile), `{"report|every 1h": "2026-01-01T00:00:00Z"}`+"\n")
	writeFileAll(t, filepath.Join(real, "state", ".report.json.tmp-123"), "half written")
	writeFileAll(t, filepath.Join(overlay, "state", "gone.json"), `{"from": "an earlier dry run"}`+"\n")
	writeFileAll(t, filepath.Join(overlay, "mailbot.lock"), "123\n")
	before := folderDigest(t, real)

	if err := SeedDryRunState(real, overlay); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"ledger.jsonl": true, "state/report.json": true, "state/" + lastRunFile: true,
		"state/.report.json.tmp-123": false, "state/gone.json": false, "mailbot.lock": true,
	} {
		if _, err := os.Stat(filepath.Join(overlay, name)); (err == nil) != want {
			t.Errorf("%s in the overlay: %v, want present %v", name, err, want)
		}
	}
	store, err := OpenStateStore(overlay)
	if err != nil {
		t.Fatal(err)
	}
	if last, ok := store.LastRun("report|every 1h"); !ok || !last.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("seeded last run = %v %v", last, ok)
	}
	st, err := store.Script("report")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Set("n", 2); err != nil {
		t.Fatal(err)
	}
	if err := store.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := store.SetLastRun("report|every 1h", time.Now()); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLedger(filepath.Join(overlay, "ledger.jsonl"), LedgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(LedgerKey{Path: "/y", Size: 1, ModTime: time.Now(), SHA256: "cd"}, OutcomeDone); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if got := folderDigest(t, real); got != before {
		t.Error("writes to the overlay changed the real state directory")
	}
	// A missing real directory (a first run) seeds an empty overlay.
	if err := SeedDryRunState(filepath.Join(t.TempDir(), "none"), overlay); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(overlay, "state")); !os.IsNotExist(err) {
		t.Errorf("overlay state after seeding from nothing: %v", err)
	}
}

// TestEngineDryRun: with Config.DryRun a dropped file is handled and left
// where it was (the log says where a real run would put it), and a
// missing drop folder is not created.
func TestEngineDryRun(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.DryRun = true
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	missing := filepath.Join(filepath.Dir(h.scripts), "missing")
	writeFileAll(t, filepath.Join(drop, "a.csv"), "x,y\n1,2\n")
	h.write("drop.lua", fmt.Sprintf(`
local probe = require("probe")
mailbot.on_file({ dir = %q, pattern = "*.csv", settle = "20ms", after = "move:done" }, function(ev)
  probe.hit("file", ev.name)
end)
mailbot.on_file({ dir = %q }, function(ev) end)`, drop, missing))
	before := folderDigest(t, drop)
	h.start()
	if v := h.waitHit("file").value; v != "a.csv" {
		t.Errorf("handler saw %q", v)
	}
	r := h.waitLog("dry run: file handled and left in place", "drop.lua")
	if got, want := attr(r, "would_be_at"), filepath.Join(drop, "done", "a.csv"); got != want || attr(r, "would_be") != "moved" {
		t.Errorf("logged %s to %q, want moved to %q", attr(r, "would_be"), got, want)
	}
	h.waitLogged("dry run: drop folder missing; a real run would create it, this one does not watch it", "drop.lua")
	h.stop()
	if got := folderDigest(t, drop); got != before {
		t.Error("the dry run changed the drop folder")
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("the dry run created the missing drop folder: %v", err)
	}
}
