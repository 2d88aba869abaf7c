package sqldb

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/mailbot/mailbot/internal/dbtest"
)

func TestExactDecimal(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"12.34", 12.34},
		{"12.30", 12.3},
		{"-0.5", -0.5},
		{"100", 100.0},
		{"0.1", 0.1},
		{"123456789012345.67", 123456789012345.67},
		{"1234567890123456789012.05", "1234567890123456789012.05"},
		{"0.12345678901234567890", "0.12345678901234567890"},
		{"9007199254740993", "9007199254740993"},
		{"NaN", "NaN"},
		{"Infinity", "Infinity"},
	}
	for _, tc := range tests {
		if got := text(tc.in, "NUMERIC"); got != tc.want {
			t.Errorf("text(%q, NUMERIC) = %v (%T), want %v", tc.in, got, got, tc.want)
		}
	}
	if got := text("12.34", "TEXT"); got != "12.34" {
		t.Errorf("a TEXT column's value was converted: %v", got)
	}
}

func TestNormalize(t *testing.T) {
	ts := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	tests := []struct {
		in     any
		dbType string
		want   any
	}{
		{nil, "TEXT", nil},
		{int64(1), "BOOLEAN", true},
		{int64(0), "BOOL", false},
		{int64(2), "BOOLEAN", int64(2)},
		{int64(1), "INTEGER", int64(1)},
		{[]byte("abc"), "BLOB", "abc"},
		{ts, "DATE", "2026-03-01"},
		{ts, "TIMESTAMPTZ", ts},
		{int32(5), "INT4", int64(5)},
		{uint64(1 << 63), "BIGINT UNSIGNED", uint64(1 << 63)},
		{float32(1.5), "FLOAT4", 1.5},
	}
	for _, tc := range tests {
		if got := normalize(tc.in, tc.dbType); got != tc.want {
			t.Errorf("normalize(%v, %s) = %v (%T), want %v (%T)", tc.in, tc.dbType, got, got, tc.want, tc.want)
		}
	}
}

func TestBuiltDSNs(t *testing.T) {
	pg := postgresDSN(Config{Host: "db.internal", Port: 5433, User: "rep@x", Database: "sales",
		Options: map[string]string{"sslmode": "verify-full", "application_name": "mailbot&co"}})
	if want := "postgres://rep%40x@db.internal:5433/sales?application_name=mailbot%26co&sslmode=verify-full"; pg != want {
		t.Errorf("postgres DSN %s, want %s", pg, want)
	}
	my := mysqlDSN(Config{Host: "::1", User: "rep", Database: "crm", Options: map[string]string{"tls": "preferred"}})
	cfg, err := mysql.ParseDSN(my)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "[::1]:3306" || cfg.User != "rep" || cfg.DBName != "crm" || cfg.TLSConfig != "preferred" {
		t.Errorf("mysql DSN %s parses to %+v", my, cfg)
	}
	lite := sqliteDSN("/data/odd ?#%.db", true)
	if !strings.HasPrefix(lite, "file:/data/odd%20%3F%23%25.db?") || !strings.Contains(lite, "mode=ro") || !strings.Contains(lite, "query_only") {
		t.Errorf("read-only sqlite DSN %s", lite)
	}
}

// An SQLite path with characters that mean something in a URI still
// names that file.
func TestSQLiteOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd ?#% name.db")
	rw := NewSet(Config{Name: "rw", Driver: SQLite, Path: path})
	defer rw.Close()
	db, err := rw.Open("rw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(context.Background(), "CREATE TABLE t (a)"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the file is not where configured: %v", err)
	}
}

// The fields (host, port, user, database, password) reach the same
// servers as the DSN does, and a read-only session refuses writes.
func TestServersFromFields(t *testing.T) {
	for _, s := range []struct{ env, driver string }{
		{dbtest.PostgresEnv, Postgres},
		{dbtest.MySQLEnv, MySQL},
	} {
		t.Run(s.driver, func(t *testing.T) {
			dsn := dbtest.DSN(t, s.env)
			var c Config
			switch s.driver {
			case Postgres:
				u, err := url.Parse(dsn)
				if err != nil {
					t.Fatal(err)
				}
				pw, _ := u.User.Password()
				port, _ := strconv.Atoi(u.Port())
				c = Config{Host: u.Hostname(), Port: port, User: u.User.Username(), Database: strings.TrimPrefix(u.Path, "/"),
					Options: map[string]string{"sslmode": "disable"}, Password: func() (string, error) { return pw, nil }}
			default:
				mc, err := mysql.ParseDSN(dsn)
				if err != nil {
					t.Fatal(err)
				}
				host, port, _ := strings.Cut(mc.Addr, ":")
				n, _ := strconv.Atoi(port)
				pw := mc.Passwd
				c = Config{Host: host, Port: n, User: mc.User, Database: mc.DBName, Password: func() (string, error) { return pw, nil }}
			}
			c.Name, c.Driver, c.ReadOnly = "x", s.driver, true
			set := NewSet(c)
			defer set.Close()
			db, err := set.Open("x")
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			rows, err := db.Query(context.Background(), "CREATE TABLE mb_fields (a int)")
			if err == nil {
				for rows.Next() {
				}
				err = rows.Err()
				rows.Close()
			}
			var se *Error
			if !errors.As(err, &se) || se.Kind != KindReadOnly {
				t.Errorf("a CREATE TABLE in a read-only session: %v", err)
			}
			// A wrong password: kind connect, and not in the message.
			c.Password = func() (string, error) { return "not-the-password-x", nil }
			bad := NewSet(c)
			defer bad.Close()
			bdb, err := bad.Open("x")
			if err != nil {
				t.Fatal(err)
			}
			err = bdb.Ping(context.Background())
			if !errors.As(err, &se) || se.Kind != KindConnect || strings.Contains(err.Error(), "not-the-password-x") {
				t.Errorf("wrong password: %v", err)
			}
		})
	}
}

// A DSN the driver cannot parse is a connect error that does not quote it.
func TestBadDSNScrubbed(t *testing.T) {
	for _, tc := range []struct{ driver, dsn string }{
		{Postgres, "postgres://u:hunter2@db:notaport/x"},
		{Postgres, "host=db password=hunter2 port=notaport"},
		{MySQL, "u:hunter2@tcp(db:3306)"},
		{MySQL, "u:hunter2@tcp(db:3306)/x?parseTime=maybe"},
	} {
		set := NewSet(Config{Name: "x", Driver: tc.driver, DSN: func() (string, error) { return tc.dsn, nil }})
		_, err := set.Open("x")
		var se *Error
		if !errors.As(err, &se) || se.Kind != KindConnect || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s %s: %v", tc.driver, tc.dsn, err)
		}
		set.Close()
	}
}
