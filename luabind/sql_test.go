package luabind

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/internal/dbtest"
	"github.com/mailbot/mailbot/sqldb"
)

// seedSQLite creates an SQLite file at path with the given statements.
func seedSQLite(t *testing.T, path string, stmts ...string) {
	t.Helper()
	set := sqldb.NewSet(sqldb.Config{Name: "seed", Driver: sqldb.SQLite, Path: path})
	defer set.Close()
	db, err := set.Open("seed")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stmts {
		if _, err := db.Exec(context.Background(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// salesDB is a small SQLite database with every kind of value.
func salesDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sales.db")
	seedSQLite(t, path,
		`CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, total REAL, paid BOOLEAN,
			placed DATETIME, day DATE, note TEXT, raw BLOB, amount DECIMAL(10,2))`,
		`INSERT INTO orders VALUES (1, 'Ada', 12.5, 1, '2026-03-01 10:30:00', '2026-03-01', NULL, x'00ff', 12.34)`,
		`INSERT INTO orders VALUES (2, 'Bob', 7, 0, '2026-03-02T08:00:00Z', '2026-03-02', 'late', NULL, 7)`,
		`INSERT INTO orders VALUES (3, 'O''Brien', 1.25, 1, '2026-03-03 09:00:00', '2026-03-03', '', x'', 1.25)`,
	)
	return path
}

// sqlState returns a state whose Options.SQL is set, with cleanup.
func sqlState(t *testing.T, set *sqldb.Set, mod func(*Options)) *lua.LState {
	t.Helper()
	o := Options{SQL: set, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&o)
	}
	L := NewState(o)
	t.Cleanup(L.Close)
	return L
}

// runSQL runs src under a run context and returns its error.
func runSQL(t *testing.T, L *lua.LState, ctx context.Context, src string) error {
	t.Helper()
	rctx, stop := StartRun(ctx, L)
	defer stop()
	_ = rctx
	return L.DoString(src)
}

// sqlErr returns the kind and message of a raised sql error table.
func sqlErr(t *testing.T, err error) (kind, msg string) {
	t.Helper()
	var ae *lua.ApiError
	if !errors.As(err, &ae) {
		t.Fatalf("want a raised error table, got %v", err)
	}
	tbl, ok := ae.Object.(*lua.LTable)
	if !ok {
		t.Fatalf("want a raised error table, got %v", err)
	}
	return tbl.RawGetString("kind").String(), tbl.RawGetString("message").String()
}

func TestSQLiteValues(t *testing.T) {
	set := sqldb.NewSet(sqldb.Config{Name: "sales", Driver: sqldb.SQLite, Path: salesDB(t), ReadOnly: true})
	t.Cleanup(func() { set.Close() })
	L := sqlState(t, set, nil)
	err := runSQL(t, L, context.Background(), `
		local sql = require("sql")
		local json = require("json")
		local db = sql.open("sales")
		local rows = db:query("SELECT * FROM orders ORDER BY id")
		assert(#rows == 3, "rows: " .. #rows)
		assert(table.concat(rows.columns, ",") == "id,customer,total,paid,placed,day,note,raw,amount", table.concat(rows.columns, ","))
		local a, b, c = rows[1], rows[2], rows[3]
		assert(a.id == 1 and type(a.id) == "number")
		assert(a.customer == "Ada")
		assert(a.total == 12.5)
		assert(a.paid == true and b.paid == false, tostring(a.paid))
		assert(a.placed == "2026-03-01T10:30:00Z", a.placed)
		assert(b.placed == "2026-03-02T08:00:00Z", b.placed)
		assert(a.day == "2026-03-01", a.day)
		assert(a.note == sql.null and a.note == json.null)
		assert(b.raw == sql.null)
		assert(a.raw == "\0\255", #a.raw)
		assert(c.raw == "" and c.note == "")
		assert(a.amount == 12.34, tostring(a.amount))
		assert(c.customer == "O'Brien")
		assert(json.encode(db:query("SELECT note FROM orders WHERE id = 1")) == '[{"note":null}]')
		assert(json.encode(db:query("SELECT id FROM orders WHERE id > 99")) == '[]')
		assert(#db:query("SELECT id FROM orders WHERE id > 99").columns == 1)
		assert(db:query_one("SELECT count(*) AS n FROM orders").n == 3)
		assert(db:query_one("SELECT id FROM orders WHERE id > 99") == nil)
		assert(db:query_one("SELECT 9007199254740993 AS big").big == "9007199254740993")
		assert(db:query_one("SELECT 9007199254740992 AS big").big == 9007199254740992)
		assert(tostring(db) == "sql database sales (sqlite, read_only)", tostring(db))
	`)
	if err != nil {
		t.Fatal(DescribeError(err))
	}
}

func TestSQLiteParams(t *testing.T) {
	set := sqldb.NewSet(sqldb.Config{Name: "sales", Driver: sqldb.SQLite, Path: salesDB(t), ReadOnly: true})
	t.Cleanup(func() { set.Close() })
	tests := []struct{ name, src string }{
		{"number", `assert(db:query_one("SELECT customer FROM orders WHERE id = ?", 2).customer == "Bob")`},
		{"float", `assert(db:query_one("SELECT ? * 2 AS x", 1.25).x == 2.5)`},
		{"string is bound, not interpolated", `
			assert(db:query_one("SELECT id FROM orders WHERE customer = ?", "O'Brien").id == 3)
			assert(db:query_one("SELECT id FROM orders WHERE customer = ?", "x' OR '1'='1") == nil)`},
		{"boolean", `assert(db:query_one("SELECT ? AS t, ? AS f", true, false).t == 1)`},
		{"nil and sql.null", `
			local r = db:query_one("SELECT ? IS NULL AS a, ? IS NULL AS b, ? AS c", nil, sql.null, 3)
			assert(r.a == 1 and r.b == 1 and r.c == 3)`},
		{"several", `assert(#db:query("SELECT id FROM orders WHERE id BETWEEN ? AND ?", 1, 2) == 2)`},
		{"options table last", `assert(#db:query("SELECT id FROM orders WHERE id >= ?", 1, {max_rows = 5}) == 3)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L := sqlState(t, set, nil)
			if err := runSQL(t, L, context.Background(), `local sql = require("sql"); local db = sql.open("sales")`+"\n"+tc.src); err != nil {
				t.Fatal(DescribeError(err))
			}
		})
	}
	for _, tc := range []struct{ src, want string }{
		{`require("sql").open("sales"):query("SELECT ?", {1}, {})`, "parameters are numbers"},
		{`require("sql").open("sales"):query("SELECT ?", {1})`, "unknown option 1"},
		{`require("sql").open("sales"):query("SELECT 1", {max_row = 1})`, "unknown option max_row"},
		{`require("sql").open("sales"):query("SELECT 1", {max_rows = 0})`, "max_rows must be at least 1"},
	} {
		L := sqlState(t, set, nil)
		err := runSQL(t, L, context.Background(), tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestSQLErrors(t *testing.T) {
	path := salesDB(t)
	set := sqldb.NewSet(
		sqldb.Config{Name: "sales", Driver: sqldb.SQLite, Path: path, ReadOnly: true, MaxRows: 2, ReadOnlyAt: "mailbot.yaml (line 7)"},
		sqldb.Config{Name: "rw", Driver: sqldb.SQLite, Path: path},
		sqldb.Config{Name: "missing", Driver: sqldb.SQLite, Path: filepath.Join(t.TempDir(), "none.db"), ReadOnly: true},
	)
	t.Cleanup(func() { set.Close() })
	tests := []struct {
		name, src, kind, msg string
	}{
		{"unknown database", `sql.open("nope")`, "unknown_database", `no database named "nope" under databases (configured: missing, rw, sales)`},
		{"exec on read_only", `sql.open("sales"):exec("DELETE FROM orders")`, "read_only",
			"database sales is read_only; set read_only: false in mailbot.yaml (line 7) to allow writes"},
		{"write through query", `sql.open("sales"):query("DELETE FROM orders RETURNING id")`, "read_only", "database sales is read_only"},
		{"temporary table", `sql.open("sales"):query("CREATE TEMP TABLE x(a)")`, "read_only", "database sales is read_only"},
		{"attach", `sql.open("rw"):query("ATTACH DATABASE '/tmp/other.db' AS o")`, "query", "not authorized"},
		{"syntax", `sql.open("sales"):query("SELEC 1")`, "query", "syntax error"},
		{"too many rows", `sql.open("sales"):query("SELECT * FROM orders")`, "too_many_rows", "more than 2 rows"},
		{"options lower the limit", `sql.open("rw"):query("SELECT * FROM orders", {max_rows = 1})`, "too_many_rows", "more than 1 rows"},
		{"options cannot raise it", `sql.open("sales"):query("SELECT * FROM orders", {max_rows = 10})`, "too_many_rows", "more than 2 rows"},
		{"missing file", `sql.open("missing"):query("SELECT 1")`, "connect", "unable to open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L := sqlState(t, set, nil)
			err := runSQL(t, L, context.Background(), `local sql = require("sql")`+"\n"+tc.src)
			kind, msg := sqlErr(t, err)
			if kind != tc.kind || !strings.Contains(msg, tc.msg) {
				t.Errorf("got %s: %s\nwant %s: ...%s...", kind, msg, tc.kind, tc.msg)
			}
			if !strings.HasPrefix(DescribeError(err), "<string>:2: "+tc.kind+": ") {
				t.Errorf("DescribeError = %q", DescribeError(err))
			}
		})
	}
	// Nothing was deleted.
	L := sqlState(t, set, nil)
	if err := runSQL(t, L, context.Background(), `assert(require("sql").open("rw"):query_one("SELECT count(*) AS n FROM orders").n == 3)`); err != nil {
		t.Fatal(DescribeError(err))
	}
}

func TestSQLiteExec(t *testing.T) {
	path := salesDB(t)
	set := sqldb.NewSet(sqldb.Config{Name: "rw", Driver: sqldb.SQLite, Path: path})
	t.Cleanup(func() { set.Close() })
	L := sqlState(t, set, nil)
	err := runSQL(t, L, context.Background(), `
		local db = require("sql").open("rw")
		assert(db:exec("UPDATE orders SET note = ? WHERE id <= ?", "seen", 2) == 2)
		assert(db:exec("INSERT INTO orders (id, customer) VALUES (?, ?)", 4, "Dee") == 1)
		assert(db:query_one("SELECT count(*) AS n FROM orders WHERE note = 'seen'").n == 2)
		assert(tostring(db) == "sql database rw (sqlite, read-write)")
	`)
	if err != nil {
		t.Fatal(DescribeError(err))
	}

	// A dry run executes nothing and says so.
	var logs bytes.Buffer
	dry := sqlState(t, set, func(o *Options) {
		o.SMTP.DryRun = &DryRun{Addr: "127.0.0.1:1"}
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.ScriptName = "nightly.lua"
	})
	err = runSQL(t, dry, context.Background(), `
		local db = require("sql").open("rw")
		assert(db:exec("DELETE FROM orders") == 0)
		assert(db:query_one("SELECT count(*) AS n FROM orders").n == 4)
	`)
	if err != nil {
		t.Fatal(DescribeError(err))
	}
	if got := logs.String(); !strings.Contains(got, `msg="dry run: not executed: db:exec" script=nightly.lua database=rw statement="DELETE FROM orders"`) {
		t.Errorf("dry-run log: %s", got)
	}
}

// slowQuery counts to a billion in a recursive CTE: seconds of work that
// only an interrupt ends early.
const slowQuery = `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT max(x) AS m FROM c`

func TestSQLiteTimeout(t *testing.T) {
	path := salesDB(t)
	t.Run("run context", func(t *testing.T) {
		set := sqldb.NewSet(sqldb.Config{Name: "sales", Driver: sqldb.SQLite, Path: path, ReadOnly: true})
		t.Cleanup(func() { set.Close() })
		L := sqlState(t, set, nil)
		// The run's deadline passes while the query works: the query
		// must end then, long before it could finish.
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := runSQL(t, L, ctx, `require("sql").open("sales"):query([[`+slowQuery+`]])`)
		kind, msg := sqlErr(t, err)
		if kind != "timeout" || !strings.Contains(msg, "the run ended") {
			t.Errorf("got %s: %s", kind, msg)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("the cancelled query took %v", d)
		}
	})
	t.Run("query timeout", func(t *testing.T) {
		set := sqldb.NewSet(sqldb.Config{Name: "sales", Driver: sqldb.SQLite, Path: path, ReadOnly: true, Timeout: 50 * time.Millisecond})
		t.Cleanup(func() { set.Close() })
		L := sqlState(t, set, nil)
		err := runSQL(t, L, context.Background(), `require("sql").open("sales"):query([[`+slowQuery+`]])`)
		kind, msg := sqlErr(t, err)
		if kind != "timeout" || !strings.Contains(msg, "longer than its timeout of 50ms (databases.sales.timeout)") {
			t.Errorf("got %s: %s", kind, msg)
		}
	})
}

func TestSQLMemoryLimit(t *testing.T) {
	set := sqldb.NewSet(sqldb.Config{Name: "sales", Driver: sqldb.SQLite, Path: salesDB(t), ReadOnly: true})
	t.Cleanup(func() { set.Close() })
	L := sqlState(t, set, func(o *Options) { o.MemoryLimit = 1 << 20 })
	err := runSQL(t, L, context.Background(), `require("sql").open("sales"):query("SELECT hex(zeroblob(700000)) AS big")`)
	kind, msg := sqlErr(t, err)
	if kind != "memory" || !strings.Contains(msg, "db:query") {
		t.Errorf("got %s: %s", kind, msg)
	}
}

func TestSQLPoolSharedAndClosed(t *testing.T) {
	set := sqldb.NewSet(sqldb.Config{Name: "sales", Driver: sqldb.SQLite, Path: salesDB(t), ReadOnly: true})
	if set.Opened("sales") {
		t.Fatal("the pool was opened before the first sql.open")
	}
	first, err := set.Open("sales")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		L := sqlState(t, set, nil)
		if err := runSQL(t, L, context.Background(), `assert(require("sql").open("sales"):query_one("SELECT 1 AS one").one == 1)`); err != nil {
			t.Fatalf("state %d: %s", i, DescribeError(err))
		}
	}
	again, err := set.Open("sales")
	if err != nil || again != first {
		t.Fatalf("a second Open returned another pool (%p, %p, %v)", first, again, err)
	}
	// A run holding the database across a reload gets a clear error.
	L := sqlState(t, set, nil)
	if err := runSQL(t, L, context.Background(), `db = require("sql").open("sales")`); err != nil {
		t.Fatal(DescribeError(err))
	}
	if err := set.Close(); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{`db:query("SELECT 1")`, `require("sql").open("sales")`} {
		kind, msg := sqlErr(t, runSQL(t, L, context.Background(), src))
		if kind != "connect" || !strings.Contains(msg, "closed by a config reload") {
			t.Errorf("%s after Close: %s: %s", src, kind, msg)
		}
	}
}

func TestSQLNotConfigured(t *testing.T) {
	L := sqlState(t, nil, nil)
	kind, msg := sqlErr(t, runSQL(t, L, context.Background(), `require("sql").open("sales")`))
	if kind != "unknown_database" || !strings.Contains(msg, "no databases are configured") {
		t.Errorf("got %s: %s", kind, msg)
	}
}

// TestSQLServers checks values, NULL, times, parameters and read-only
// refusals against real PostgreSQL and MariaDB servers.
func TestSQLServers(t *testing.T) {
	servers := []struct {
		name, env, driver string
		p1, p2            string // parameter markers
		schema            []string
		trueVal           string // how the boolean column reads
		session           string // a query whose one value is "on" or 1 in a read-only session
	}{
		{"postgres", dbtest.PostgresEnv, sqldb.Postgres, "$1", "$2", []string{
			`DROP TABLE IF EXISTS mb_orders`,
			`CREATE TABLE mb_orders (id bigint PRIMARY KEY, customer text, paid boolean, placed timestamptz,
				day date, amount numeric(30,2), raw bytea, note text)`,
		}, "true", "SHOW default_transaction_read_only"},
		{"mysql", dbtest.MySQLEnv, sqldb.MySQL, "?", "?", []string{
			`DROP TABLE IF EXISTS mb_orders`,
			`CREATE TABLE mb_orders (id bigint PRIMARY KEY, customer varchar(40), paid boolean, placed datetime(3),
				day date, amount decimal(30,2), raw blob, note text)`,
		}, "1", "SELECT @@SESSION.tx_read_only AS ro"},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			dsn := dbtest.DSN(t, s.env)
			secret := func() (string, error) { return dsn, nil }
			set := sqldb.NewSet(
				sqldb.Config{Name: "rw", Driver: s.driver, DSN: secret},
				sqldb.Config{Name: "ro", Driver: s.driver, DSN: secret, ReadOnly: true},
			)
			t.Cleanup(func() { set.Close() })
			rw, err := set.Open("rw")
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range s.schema {
				if _, err := rw.Exec(context.Background(), q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			L := sqlState(t, set, nil)
			L.SetGlobal("P1", lua.LString(s.p1))
			L.SetGlobal("P2", lua.LString(s.p2))
			L.SetGlobal("TRUE", lua.LString(s.trueVal))
			err = runSQL(t, L, context.Background(), `
				local sql = require("sql")
				local rw, ro = sql.open("rw"), sql.open("ro")
				local ins = "INSERT INTO mb_orders (id, customer, paid, placed, day, amount, raw, note) VALUES "
				assert(rw:exec(ins .. "(1, 'Ada', true, '2026-03-01 10:30:00.250', '2026-03-01', 12.34, 'ab', NULL)") == 1)
				assert(rw:exec(ins .. "(9007199254740993, 'Big', false, '2026-03-02 08:00:00', '2026-03-02', 1234567890123456789012.05, NULL, 'x')") == 1)
				local rows = ro:query("SELECT id, customer, paid, placed, day, amount, raw, note FROM mb_orders ORDER BY id")
				assert(#rows == 2 and table.concat(rows.columns, ",") == "id,customer,paid,placed,day,amount,raw,note")
				local a, b = rows[1], rows[2]
				assert(a.id == 1 and a.customer == "Ada", tostring(a.id))
				assert(tostring(a.paid) == TRUE, tostring(a.paid))
				assert(a.placed == "2026-03-01T10:30:00.25Z", a.placed)
				assert(a.day == "2026-03-01", a.day)
				assert(a.amount == 12.34, tostring(a.amount))
				assert(a.raw == "ab" and a.note == sql.null)
				assert(b.id == "9007199254740993", tostring(b.id))
				assert(b.amount == "1234567890123456789012.05", tostring(b.amount))
				assert(b.raw == sql.null)
				local one = ro:query_one("SELECT customer FROM mb_orders WHERE id = " .. P1 .. " AND customer = " .. P2, 1, "Ada")
				assert(one and one.customer == "Ada")
				assert(ro:query_one("SELECT customer FROM mb_orders WHERE customer = " .. P1, "x' OR '1'='1") == nil)
			`)
			if err != nil {
				t.Fatal(DescribeError(err))
			}
			for _, src := range []string{
				`ro:exec("DELETE FROM mb_orders")`,
				`ro:query("DELETE FROM mb_orders")`,
				`ro:query("UPDATE mb_orders SET note = 'y'")`,
			} {
				err := runSQL(t, L, context.Background(), `local ro = require("sql").open("ro")`+"\n"+src)
				kind, msg := sqlErr(t, err)
				if kind != "read_only" || strings.Contains(msg, dsn) {
					t.Errorf("%s: got %s: %s", src, kind, msg)
				}
				t.Logf("%s: %s: %s", src, kind, msg)
			}
			// Outside the read-only transaction each query runs in, the
			// session itself is read-only.
			sess, err := set.Open("ro")
			if err != nil {
				t.Fatal(err)
			}
			rows, err := sess.Query(context.Background(), s.session)
			if err != nil {
				t.Fatal(err)
			}
			if !rows.Next() {
				t.Fatalf("%s: no row: %v", s.session, rows.Err())
			}
			if v := rows.Values()[0]; v != "on" && v != int64(1) {
				t.Errorf("%s = %v (%T), want on or 1", s.session, v, v)
			}
			rows.Close()
			kind, msg := sqlErr(t, runSQL(t, L, context.Background(), `require("sql").open("ro"):query("SELEC 1")`))
			if kind != "query" {
				t.Errorf("syntax error: got %s: %s", kind, msg)
			}
			if err := runSQL(t, L, context.Background(), `assert(require("sql").open("ro"):query_one("SELECT count(*) AS n FROM mb_orders").n == 2)`); err != nil {
				t.Fatal(DescribeError(err))
			}
		})
	}
}

// TestSQLServerBadPassword checks that a failed login is kind connect and
// names no secret.
func TestSQLServerBadPassword(t *testing.T) {
	for _, s := range []struct{ env, driver, bad, good string }{
		{dbtest.PostgresEnv, sqldb.Postgres, "", ""},
		{dbtest.MySQLEnv, sqldb.MySQL, "", ""},
	} {
		t.Run(s.driver, func(t *testing.T) {
			dsn := dbtest.DSN(t, s.env)
			var bad string
			switch s.driver {
			case sqldb.Postgres:
				bad = strings.Replace(dsn, "mailbot:", "mailbot:wrong-secret-x", 1)
			default:
				bad = strings.Replace(dsn, "mailbot:", "mailbot:wrong-secret-x", 1)
			}
			set := sqldb.NewSet(sqldb.Config{Name: "x", Driver: s.driver, DSN: func() (string, error) { return bad, nil }, ReadOnly: true})
			t.Cleanup(func() { set.Close() })
			L := sqlState(t, set, nil)
			kind, msg := sqlErr(t, runSQL(t, L, context.Background(), `require("sql").open("x"):query("SELECT 1")`))
			if kind != "connect" || strings.Contains(msg, "wrong-secret-x") {
				t.Errorf("got %s: %s", kind, msg)
			}
			t.Logf("%s: %s", kind, msg)
		})
	}
}
