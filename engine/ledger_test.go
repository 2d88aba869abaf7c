package engine

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func openTestLedger(t *testing.T, path string, opts LedgerOptions) *Ledger {
	t.Helper()
	l, err := OpenLedger(path, opts)
	if err != nil {
		t.Fatalf("OpenLedger: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func testKey(path string, n int) LedgerKey {
	return LedgerKey{Path: path, Size: int64(n), ModTime: t0.Add(time.Duration(n) * time.Second),
		SHA256: fmt.Sprintf("%064x", n)}
}

func TestLedgerSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger", "drop.jsonl")
	l := openTestLedger(t, path, LedgerOptions{})
	k := testKey("/srv/drop/a.csv", 1)
	if l.Seen(k) {
		t.Fatal("empty ledger has seen a key")
	}
	if err := l.Record(k, OutcomeDone); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := openTestLedger(t, path, LedgerOptions{})
	e, ok := l2.Lookup(k)
	if !ok || e.Outcome != OutcomeDone {
		t.Fatalf("after reopen Lookup = %+v, %v", e, ok)
	}
	tests := []struct {
		name string
		key  LedgerKey
	}{
		{"other mtime (a new drop of the same content)", LedgerKey{k.Path, k.Size, k.ModTime.Add(time.Second), k.SHA256}},
		{"other content", LedgerKey{k.Path, k.Size, k.ModTime, fmt.Sprintf("%064x", 99)}},
		{"other size", LedgerKey{k.Path, k.Size + 1, k.ModTime, k.SHA256}},
		{"other path", LedgerKey{"/srv/drop/b.csv", k.Size, k.ModTime, k.SHA256}},
	}
	for _, tc := range tests {
		if l2.Seen(tc.key) {
			t.Errorf("%s: Seen = true", tc.name)
		}
	}
	if err := l2.Record(k, ""); err == nil {
		t.Error("Record without outcome succeeded")
	}
}

func TestLedgerTornLastLine(t *testing.T) {
	fixture, err := os.ReadFile(filepath.Join("testdata", "ledger_torn.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "drop.jsonl")
	if err := os.WriteFile(path, fixture, 0o600); err != nil {
		t.Fatal(err)
	}
	// Entries far in the past would be expired; judge retention from the
	// fixture's own time.
	clock := NewFakeClock(time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC))
	l := openTestLedger(t, path, LedgerOptions{Clock: clock})
	if got := l.Len(); got != 2 {
		t.Fatalf("Len = %d, want the 2 complete lines", got)
	}
	a := LedgerKey{Path: "/srv/drop/a.csv", Size: 3, ModTime: time.Unix(0, 1740985200000000000),
		SHA256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}
	if e, ok := l.Lookup(a); !ok || e.Outcome != OutcomeDone {
		t.Fatalf("Lookup(a) = %+v, %v", e, ok)
	}
	// New records after the torn line must be readable at the next open.
	k := testKey("/srv/drop/d.csv", 4)
	if err := l.Record(k, OutcomeDone); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l2 := openTestLedger(t, path, LedgerOptions{Clock: clock})
	if !l2.Seen(k) || l2.Len() != 3 {
		t.Fatalf("after reopen: Seen(d) = %v, Len = %d; want true, 3", l2.Seen(k), l2.Len())
	}
}

func TestLedgerCorruptMiddleLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drop.jsonl")
	content := `{"path":"/a","size":1,"mtime_ns":1,"sha256":"x","outcome":"done","at":"2025-03-03T07:00:00Z"}
not json at all
{"path":"/b","size":1,"mtime_ns":1,"sha256":"x","outcome":"done","at":"2025-03-03T07:00:00Z"}
`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenLedger(path, LedgerOptions{})
	if !errors.Is(err, ErrLedgerCorrupt) {
		t.Fatalf("OpenLedger error = %v, want ErrLedgerCorrupt", err)
	}
}

func TestLedgerCompaction(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present.csv")
	changed := filepath.Join(dir, "changed.csv")
	writeFile(t, present, "abc")
	writeFile(t, changed, "abc")
	fiPresent, _ := os.Stat(present)
	fiChanged, _ := os.Stat(changed)

	clock := NewFakeClock(t0)
	path := filepath.Join(dir, "state", "drop.jsonl")
	l := openTestLedger(t, path, LedgerOptions{Clock: clock, Retention: 24 * time.Hour})
	kPresent := LedgerKey{present, 3, fiPresent.ModTime(), "p"}
	kChanged := LedgerKey{changed, 3, fiChanged.ModTime(), "c"}
	kGone := LedgerKey{filepath.Join(dir, "moved-away.csv"), 3, t0, "g"}
	for _, k := range []LedgerKey{kPresent, kChanged, kGone, kGone} { // kGone twice: superseded line
		if err := l.Record(k, OutcomeDone); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, changed, "abcd")
	clock.Advance(time.Hour)
	kRecent := LedgerKey{filepath.Join(dir, "recent.csv"), 1, t0, "r"}
	if err := l.Record(kRecent, OutcomeFailed); err != nil {
		t.Fatal(err)
	}

	// Within retention nothing is dropped; duplicates are merged.
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	if n := countLines(t, path); n != 4 {
		t.Fatalf("%d lines after first compaction, want 4", n)
	}

	clock.Advance(24 * time.Hour)
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	want := map[LedgerKey]bool{kPresent: true, kChanged: false, kGone: false, kRecent: true}
	for k, seen := range want {
		if got := l.Seen(k); got != seen {
			t.Errorf("after expiry Seen(%s) = %v, want %v", filepath.Base(k.Path), got, seen)
		}
	}
	if n := countLines(t, path); n != 2 {
		t.Fatalf("%d lines after expiry, want 2", n)
	}
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

func TestLedgerConcurrentRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "drop.jsonl")
	l := openTestLedger(t, path, LedgerOptions{})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Record(testKey("/drop/f", i), OutcomeDone); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l.Close()
	l2 := openTestLedger(t, path, LedgerOptions{})
	for i := range 50 {
		if !l2.Seen(testKey("/drop/f", i)) {
			t.Fatalf("key %d lost", i)
		}
	}
	if err := l.Record(testKey("/drop/f", 1), OutcomeDone); err == nil {
		t.Fatal("Record on a closed ledger succeeded")
	}
}

func TestLedgerRecordAttempts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.jsonl")
	l := openTestLedger(t, path, LedgerOptions{})
	k := testKey("/drop/retry.csv", 1)
	if err := l.RecordAttempts(k, 2); err != nil {
		t.Fatal(err)
	}
	if l.Seen(k) {
		t.Fatal("a file being retried counts as seen")
	}
	if err := l.Record(k, OutcomeRetrying); err == nil {
		t.Fatal("Record(OutcomeRetrying) without a count succeeded")
	}
	if err := l.RecordAttempts(k, 0); err == nil {
		t.Fatal("RecordAttempts(0) succeeded")
	}
	l.Close()
	l2 := openTestLedger(t, path, LedgerOptions{})
	if e, ok := l2.Lookup(k); !ok || e.Outcome != OutcomeRetrying || e.Attempts != 2 {
		t.Fatalf("after reopen: %+v, %v; want retrying with 2 attempts", e, ok)
	}
	if err := l2.Record(k, OutcomeFailed); err != nil {
		t.Fatal(err)
	}
	if !l2.Seen(k) {
		t.Fatal("failed file not seen")
	}
}
