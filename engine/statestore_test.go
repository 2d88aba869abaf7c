package engine

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTestStore(t *testing.T, dir string) *StateStore {
	t.Helper()
	s, err := OpenStateStore(dir)
	if err != nil {
		t.Fatalf("OpenStateStore: %v", err)
	}
	return s
}

func TestStateStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	st, err := s.Script("report")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		A int    `json:"a"`
		B string `json:"b"`
	}
	tests := []struct {
		key  string
		in   any
		want any
	}{
		{"string", "hello", "hello"},
		{"int", 42, float64(42)},
		{"float", 1.5, 1.5},
		{"bool", true, true},
		{"list", []any{"a", 1, false}, []any{"a", float64(1), false}},
		{"table", map[string]any{"n": 1, "nested": map[string]any{"x": []string{"y"}}},
			map[string]any{"n": float64(1), "nested": map[string]any{"x": []any{"y"}}}},
		{"struct", row{A: 1, B: "b"}, map[string]any{"a": float64(1), "b": "b"}},
		{"unicode key ключ", "значение", "значение"},
	}
	for _, tc := range tests {
		if err := st.Set(tc.key, tc.in); err != nil {
			t.Fatalf("Set(%s): %v", tc.key, err)
		}
	}
	if err := st.Set("gone", "x"); err != nil {
		t.Fatal(err)
	}
	st.Delete("gone")
	if err := st.Set("nil-deletes", "x"); err != nil {
		t.Fatal(err)
	}
	if err := st.Set("nil-deletes", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}

	// A fresh store reads what the first one wrote.
	st2, err := openTestStore(t, dir).Script("report")
	if err != nil {
		t.Fatal(err)
	}
	all := st2.All()
	if len(all) != len(tests) {
		t.Fatalf("All() has %d keys, want %d: %v", len(all), len(tests), all)
	}
	for _, tc := range tests {
		got, ok := st2.Get(tc.key)
		if !ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Get(%q) = %#v, %v; want %#v", tc.key, got, ok, tc.want)
		}
	}
	if _, ok := st2.Get("gone"); ok {
		t.Error("deleted key came back")
	}
	if keys := st2.Keys(); keys[0] != "bool" {
		t.Errorf("Keys() not sorted: %v", keys)
	}
}

func TestStateStoreCopies(t *testing.T) {
	st, err := openTestStore(t, t.TempDir()).Script("s")
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{"list": []any{"a"}}
	if err := st.Set("k", in); err != nil {
		t.Fatal(err)
	}
	in["list"] = "mutated by caller"
	got, _ := st.Get("k")
	got.(map[string]any)["list"].([]any)[0] = "mutated by reader"
	again, _ := st.Get("k")
	if want := map[string]any{"list": []any{"a"}}; !reflect.DeepEqual(again, want) {
		t.Fatalf("stored value changed through a caller's copy: %v", again)
	}
}

func TestStateStoreRejects(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	st, err := s.Script("s")
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"func":   func() {},
		"nan":    math.NaN(),
		"inf":    math.Inf(1),
		"chan":   make(chan int),
		"nested": map[string]any{"f": func() {}},
	} {
		var ve *StateValueError
		if err := st.Set(name, v); !errors.As(err, &ve) || ve.Key != name || ve.Script != "s" {
			t.Errorf("Set(%s) error = %v, want *StateValueError for the key", name, err)
		}
	}
	for _, name := range []string{"", ".lastrun", "../escape", "a/b", "-x", "a b"} {
		if _, err := s.Script(name); err == nil {
			t.Errorf("Script(%q) accepted", name)
		}
	}
}

func TestStateStoreAtomicFlush(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	st, err := s.Script("counter")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state", "counter.json")
	if err := st.Set("n", 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}

	// While writers keep flushing bigger values, a reader must only ever
	// see a complete JSON document: the file is replaced, never rewritten
	// in place.
	stop := make(chan struct{})
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(path)
			if err != nil {
				readErr = err
				return
			}
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				readErr = err
				return
			}
		}
	}()
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range 50 {
				if err := st.Set("n", w*1000+i); err != nil {
					t.Error(err)
				}
				if err := st.Set("pad", strings.Repeat("x", i*100)); err != nil {
					t.Error(err)
				}
				if err := st.Flush(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	if readErr != nil {
		t.Fatalf("reader saw a partial state file: %v", readErr)
	}

	// The last flush holds the last value set in memory.
	want, _ := st.Get("n")
	st2, err := openTestStore(t, dir).Script("counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := st2.Get("n"); got != want {
		t.Fatalf("on disk n = %v, in memory %v", got, want)
	}
	// No temp files are left behind.
	entries, err := os.ReadDir(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temp file left behind: %s", e.Name())
		}
	}
}

func TestStateStoreCorruptFile(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "state", "broken.json"), []byte(`{"a":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Script("broken"); err == nil {
		t.Fatal("a truncated state file loaded without error")
	}
}

func TestStateStoreLastRun(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, ok := s.LastRun("report/cron1"); ok {
		t.Fatal("LastRun on empty store reported a time")
	}
	shanghai := mustLoc(t, "Asia/Shanghai")
	at := time.Date(2025, 3, 3, 8, 0, 0, 0, shanghai)
	if err := s.SetLastRun("report/cron1", at); err != nil {
		t.Fatal(err)
	}
	if err := s.SetLastRun("other/every1", t0); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, dir)
	got, ok := s2.LastRun("report/cron1")
	if !ok || !got.Equal(at) {
		t.Fatalf("LastRun after reopen = %v, %v; want %v", got, ok, at)
	}
	// Last-run times live beside script states without clashing with them.
	if _, err := os.Stat(filepath.Join(dir, "state", lastRunFile)); err != nil {
		t.Fatal(err)
	}
}
