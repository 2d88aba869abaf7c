package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailbot/mailbot/sqldb"
)

// seedDB writes an SQLite file with a table t holding one value v.
func seedDB(t *testing.T, path string, v int) {
	t.Helper()
	set := sqldb.NewSet(sqldb.Config{Name: "seed", Driver: sqldb.SQLite, Path: path})
	defer set.Close()
	db, err := set.Open("seed")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE TABLE t (v INTEGER)", "INSERT INTO t VALUES (?)"} {
		args := []any{}
		if strings.Contains(q, "?") {
			args = append(args, v)
		}
		if _, err := db.Exec(context.Background(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
}

const sqlConfig = `scripts_dir: scripts
state_dir: state
databases:
  sales: { driver: sqlite, path: %s }
  notes: { driver: sqlite, path: notes.db, read_only: false }
`

// exec runs a script's queries against the configured files; a dry run
// executes no db:exec and logs it.
func TestExecSQL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	seedDB(t, filepath.Join(dir, "sales.db"), 7)
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), strings.Replace(sqlConfig, "%s", "sales.db", 1))
	writeFile(t, filepath.Join(dir, "scripts", "report.lua"), `
local sql = require("sql")
local v = sql.open("sales"):query_one("SELECT v FROM t").v
local notes = sql.open("notes")
notes:exec("CREATE TABLE IF NOT EXISTS n (v INTEGER)")
notes:exec("INSERT INTO n VALUES (?)", v)
print("v=" .. v .. " n=" .. notes:query_one("SELECT count(*) AS c FROM n").c)
`)
	r := mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "scripts/report.lua")
	if r.code != 0 || !strings.Contains(r.stdout, "v=7 n=1") {
		t.Fatalf("exec: %v", r)
	}
	r = mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "--dry-run", "scripts/report.lua")
	if r.code != 0 || !strings.Contains(r.stdout, "v=7 n=1") || !strings.Contains(r.stderr, "dry run: not executed: db:exec") {
		t.Fatalf("dry-run exec: %v", r)
	}
}

// check connects to each database: one that does not answer is a warning,
// not a failure.
func TestCheckPingsDatabases(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	seedDB(t, filepath.Join(dir, "sales.db"), 1)
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), strings.Replace(sqlConfig, "%s", "sales.db", 1)+
		"  billing: { driver: postgres, dsn_env: BILLING_DSN }\n")
	r := mailbot(t, dir, []string{"BILLING_DSN=postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2"}, "check", "-c", "mailbot.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "mailbot.yaml:6: databases.billing: warning: cannot connect: ") ||
		strings.Contains(r.stdout, "hunter2") || strings.Contains(r.stdout, "databases.sales") {
		t.Fatalf("check: %v", r)
	}
	r = mailbot(t, dir, nil, "check", "-c", "mailbot.yaml")
	if r.code != 1 || !strings.Contains(r.stdout, "mailbot.yaml:6: databases.billing.dsn_env: environment variable BILLING_DSN is not set") {
		t.Fatalf("check without the DSN: %v", r)
	}
}

// A reload replaces the pools: runs after it use the new settings.
func TestRunReloadSwitchesDatabases(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	seedDB(t, filepath.Join(dir, "one.db"), 1)
	seedDB(t, filepath.Join(dir, "two.db"), 2)
	config := func(path string) {
		tmp := filepath.Join(dir, ".mailbot.yaml.tmp")
		writeFile(t, tmp, strings.Replace(sqlConfig, "%s", path, 1))
		if err := os.Rename(tmp, filepath.Join(dir, "mailbot.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	config("one.db")
	writeFile(t, filepath.Join(dir, "scripts", "q.lua"), `
local sql, log = require("sql"), require("log")
mailbot.on_file({ dir = "../drop", pattern = "*.txt", settle = "20ms", after = "delete" }, function(ev)
  log.info("sql value", { file = ev.name, v = sql.open("sales"):query_one("SELECT v FROM t").v })
end)`)
	if err := os.MkdirAll(filepath.Join(dir, "drop"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd, logs := startRunLogged(t, ctx, dir, cleanEnv())
	defer cmd.Process.Kill()
	waitLog := func(s string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(logs.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q; log:\n%s", s, logs.String())
			}
			time.Sleep(20 * time.Millisecond) // a subprocess's log: polled
		}
	}
	drop := func(name string) {
		t.Helper()
		tmp := filepath.Join(dir, "drop", "."+name)
		writeFile(t, tmp, "x\n")
		if err := os.Rename(tmp, filepath.Join(dir, "drop", name)); err != nil {
			t.Fatal(err)
		}
	}
	waitLog("engine started")
	drop("a.txt")
	waitLog(`file=a.txt v=1`)
	config("two.db")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("changed=databases")
	drop("b.txt")
	waitLog(`file=b.txt v=2`)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run did not exit 0: %v\n%s", err, logs.String())
	}
}
