package sqldb

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// countRows returns the single integer a query yields.
func countRows(t *testing.T, db *DB, q string) int64 {
	t.Helper()
	rows, err := db.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("%s: no row: %v", q, rows.Err())
	}
	n, _ := rows.Values()[0].(int64)
	return n
}

func TestSeed(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "fixture.sql")
	if err := os.WriteFile(script, []byte("CREATE TABLE t (a INTEGER);\nINSERT INTO t VALUES (1), (2), (3);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sub", "data.db") // the folder is created too

	set := NewSet(Config{Name: "d", Driver: SQLite, Path: path, Seed: script, ReadOnly: true})
	db, err := set.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "SELECT count(*) FROM t"); n != 3 {
		t.Fatalf("seeded table has %d rows, want 3", n)
	}
	set.Close()
	if left, _ := filepath.Glob(filepath.Join(dir, "sub", ".*seed-*")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	// An existing file is used as it is: the seed never runs again.
	if err := os.WriteFile(script, []byte("CREATE TABLE other (b);"), 0o644); err != nil {
		t.Fatal(err)
	}
	set = NewSet(Config{Name: "d", Driver: SQLite, Path: path, Seed: script, ReadOnly: true})
	defer set.Close()
	db, err = set.Open("d")
	if err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, "SELECT count(*) FROM sqlite_master WHERE name = 'other'"); n != 0 {
		t.Errorf("the seed ran over an existing database")
	}
}

func TestSeedFails(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct{ script, want string }{
		"syntax":  {"CREATE TABLE t (a);\nINSRT INTO t VALUES (1);", "run the seed script"},
		"missing": {"", "read the seed script"},
	} {
		t.Run(name, func(t *testing.T) {
			script := filepath.Join(dir, name+".sql")
			if tc.script != "" {
				if err := os.WriteFile(script, []byte(tc.script), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, name+".db")
			set := NewSet(Config{Name: "d", Driver: SQLite, Path: path, Seed: script, ReadOnly: true})
			defer set.Close()
			_, err := set.Open("d")
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindConnect || !strings.Contains(e.Error(), tc.want) {
				t.Fatalf("Open: %v, want a connect error saying %q", err, tc.want)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a failed seed left %s: %v", path, err)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".*seed-*")); len(left) != 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}
