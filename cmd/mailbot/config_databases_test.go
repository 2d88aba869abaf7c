package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/sqldb"
)

func TestDatabasesConfigValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sales.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const base = "scripts_dir: s\nstate_dir: st\ndatabases:\n"
	tests := []struct {
		name, dbs string
		want      string // "" for no problem; else a substring, with the line
	}{
		{"sqlite", "  sales: { driver: sqlite, path: sales.db }\n", ""},
		{"sqlite read-write may be created", "  new: { driver: sqlite, path: new.db, read_only: false }\n", ""},
		{"sqlite read_only must exist", "  x: { driver: sqlite, path: none.db }\n", "mailbot.yaml:4: databases.x.path: cannot use none.db"},
		{"sqlite without path", "  x: { driver: sqlite }\n", "databases.x.path: missing required value"},
		{"sqlite with a dsn", "  x: { driver: sqlite, path: sales.db, dsn_env: X }\n", "databases.x.dsn_env: is for postgres and mysql"},
		{"postgres dsn_env", "  billing: { driver: postgres, dsn_env: BILLING_DSN }\n", ""},
		{"mysql fields", "  crm:\n    driver: mysql\n    host: db\n    user: u\n    database: crm\n    password_file: pw\n    options: { tls: preferred }\n", ""},
		{"inline dsn", "  b:\n    driver: postgres\n    dsn: postgres://u:secret@h/db\n", "mailbot.yaml:6: databases.b.dsn: inline DSNs are not allowed"},
		{"inline password", "  b: { driver: mysql, host: h, user: u, database: d, password: x }\n", "databases.b.password: inline passwords are not allowed"},
		{"dsn and fields", "  b: { driver: postgres, dsn_env: D, host: h }\n", "databases.b.host: set either dsn_env/dsn_file or the fields"},
		{"two dsn sources", "  b: { driver: postgres, dsn_env: D, dsn_file: f }\n", "set only one of dsn_env and dsn_file"},
		{"no dsn, no fields", "  b: { driver: postgres }\n", "databases.b: set dsn_env or dsn_file, or host, user and database"},
		{"unknown driver", "  b: { driver: oracle }\n", `databases.b.driver: unknown driver "oracle"`},
		{"no driver", "  b: { path: x.db }\n", "databases.b.driver: missing required value"},
		{"empty", "  b:\n", "databases.b: empty database"},
		{"limits", "  b: { driver: postgres, dsn_env: D, max_rows: -1, timeout: -1s, max_open: 1000 }\n", "databases.b.max_open: must be 0-100"},
		{"bad port", "  b: { driver: mysql, host: h, port: 70000, user: u, database: d }\n", "databases.b.port: must be 1-65535"},
		{"unknown key", "  b: { driver: postgres, dsn_env: D, pasword_env: P }\n", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			all := validationText(filepath.Join(dir, "mailbot.yaml"), []byte(base+tc.dbs))
			if tc.want == "" && all != "" || tc.want != "" && !strings.Contains(all, tc.want) {
				t.Errorf("problems:\n%s\nwant %q", all, tc.want)
			}
		})
	}
}

func TestDatabasesSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "mailbot.yaml")
	data := "scripts_dir: s\nstate_dir: st\ndatabases:\n" +
		"  billing: { driver: postgres, dsn_env: BILLING_DSN }\n" +
		"  crm: { driver: mysql, host: db, user: u, database: crm, password_file: crm-pw }\n" +
		"  sales: { driver: sqlite, path: sales.db, read_only: false }\n"
	cfg, err := ParseConfig(cfgPath, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	// Scripts can read neither the variable nor the file.
	reg := cfg.Secrets()
	if err := reg.CheckEnv("BILLING_DSN"); err == nil || !strings.Contains(err.Error(), "sql.open") {
		t.Errorf("BILLING_DSN is readable by scripts: %v", err)
	}
	var keys []string
	for _, k := range cfg.SecretKeys() {
		keys = append(keys, strings.Join(k.Path, ".")+"="+k.Value)
	}
	if got, want := strings.Join(keys, " "), "databases.billing.dsn_env=BILLING_DSN databases.crm.password_file="+filepath.Join(dir, "crm-pw"); got != want {
		t.Errorf("secret keys %s, want %s", got, want)
	}
	var got []string
	for _, p := range cfg.CheckSecrets(func(string) (string, bool) { return "", false }) {
		got = append(got, p.String())
	}
	want := []string{
		cfgPath + ":4: databases.billing.dsn_env: environment variable BILLING_DSN is not set",
		cfgPath + ":5: databases.crm.password_file: cannot read password file: " + filepath.Join(dir, "crm-pw") + ": no such file or directory",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("CheckSecrets:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The set reads the secrets at the first sql.open and errors do not
	// show them; the sqlite path is relative to the config file.
	set := cfg.sqlSet(func(k string) (string, bool) {
		return map[string]string{"BILLING_DSN": "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=1"}[k], k == "BILLING_DSN"
	})
	defer set.Close()
	if names := strings.Join(set.Names(), ","); names != "billing,crm,sales" {
		t.Errorf("names %s", names)
	}
	db, err := set.Open("billing")
	if err != nil {
		t.Fatal(err)
	}
	err = db.Ping(context.Background())
	var se *sqldb.Error
	if !errors.As(err, &se) || se.Kind != sqldb.KindConnect || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("ping of a closed port: %v", err)
	}
	_, err = set.Open("crm")
	if !errors.As(err, &se) || se.Kind != sqldb.KindConnect || !strings.Contains(se.Msg, "cannot read password file") {
		t.Errorf("crm without its password file: %v", err)
	}
	sales, err := set.Open("sales")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sales.Exec(context.Background(), "CREATE TABLE t (a)"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "sales.db")); err != nil {
		t.Errorf("the sqlite file is not next to the config: %v", err)
	}
}
