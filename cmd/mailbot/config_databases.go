package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailbot/mailbot/sqldb"
)

// DatabaseConfig is one entry of the databases section: a database scripts
// open by name with sql.open (see the sqldb package). Secrets are never
// inline; scripts see neither the DSN nor the password.
//
//	databases:
//	  sales:   { driver: sqlite, path: data/sales.db }
//	  billing: { driver: postgres, dsn_env: BILLING_DSN }
//	  crm:     { driver: mysql, host: db.internal, user: reports, database: crm, password_file: /etc/mailbot/crm-pw }
type DatabaseConfig struct {
	// Driver is sqlite, postgres or mysql (MariaDB too).
	Driver string `yaml:"driver"`
	// Path is the SQLite file, relative to the config file.
	Path string `yaml:"path"`
	// Seed is an SQL script (relative to the config file) that creates
	// the SQLite file when it does not exist yet, at the first sql.open.
	Seed string `yaml:"seed"`
	// DSN and Password exist only so that an inline secret is reported
	// with advice rather than as an unknown key; Validate rejects them.
	DSN      any `yaml:"dsn"`
	Password any `yaml:"password"`
	// DSNEnv and DSNFile are where a server database's whole DSN is.
	DSNEnv  string `yaml:"dsn_env" secret:"env"`
	DSNFile string `yaml:"dsn_file" secret:"file"`
	// Host, Port, User, Database, the password's source and Options
	// build the DSN when there is no dsn_env or dsn_file.
	Host         string            `yaml:"host"`
	Port         int               `yaml:"port"`
	User         string            `yaml:"user"`
	Database     string            `yaml:"database"`
	PasswordEnv  string            `yaml:"password_env" secret:"env"`
	PasswordFile string            `yaml:"password_file" secret:"file"`
	Options      map[string]string `yaml:"options"`
	// ReadOnly refuses writes; absent means true.
	ReadOnly *bool `yaml:"read_only"`
	// MaxRows bounds the rows of one query (default 100000).
	MaxRows int `yaml:"max_rows"`
	// Timeout bounds one query (default 30s); the run timeout bounds it
	// too.
	Timeout time.Duration `yaml:"timeout"`
	// MaxOpen bounds the pool's connections (default 4).
	MaxOpen int `yaml:"max_open"`
}

func init() {
	secretHints["databases"] = "use sql.open(name): mailbot connects with it"
	configTypes["main.DatabaseConfig"] = reflect.TypeFor[DatabaseConfig]()
}

// readOnly reports the entry's read_only with its default.
func (d *DatabaseConfig) readOnly() bool { return d.ReadOnly == nil || *d.ReadOnly }

// databaseNames returns the configured names, sorted.
func (c *Config) databaseNames() []string {
	names := make([]string, 0, len(c.Databases))
	for n := range c.Databases {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// validateDatabases checks the databases section.
func (c *Config) validateDatabases() []Problem {
	var probs []Problem
	for _, name := range c.databaseNames() {
		d := c.Databases[name]
		add := func(msg string, key ...string) {
			probs = append(probs, c.problem(msg, append([]string{"databases", name}, key...)...))
		}
		if name == "" || strings.ContainsAny(name, "\r\n\x00") {
			add("database names must be non-empty and contain no CR, LF or NUL")
		}
		if d == nil {
			add("empty database; it needs at least a driver (sqlite, postgres or mysql)")
			continue
		}
		if d.DSN != nil {
			add("inline DSNs are not allowed: they hold the password; use dsn_env (an environment variable) or dsn_file (a file readable only by mailbot)", "dsn")
		}
		if d.Password != nil {
			add("inline passwords are not allowed; use password_env (an environment variable) or password_file (a file readable only by mailbot)", "password")
		}
		if d.Port != 0 && (d.Port < 1 || d.Port > 65535) {
			add("must be 1-65535", "port")
		}
		if d.MaxRows < 0 {
			add("must not be negative (0 means 100000)", "max_rows")
		}
		if d.Timeout < 0 {
			add("must not be negative (0 means 30s)", "timeout")
		}
		if d.MaxOpen < 0 || d.MaxOpen > 100 {
			add("must be 0-100 (0 means 4)", "max_open")
		}
		server := map[string]bool{"dsn_env": d.DSNEnv != "", "dsn_file": d.DSNFile != "", "host": d.Host != "",
			"port": d.Port != 0, "user": d.User != "", "database": d.Database != "", "password_env": d.PasswordEnv != "",
			"password_file": d.PasswordFile != "", "options": len(d.Options) > 0}
		switch d.Driver {
		case sqldb.SQLite:
			for _, k := range slices.Sorted(maps.Keys(server)) {
				if server[k] {
					add("is for postgres and mysql; an sqlite database has only a path", k)
				}
			}
			switch {
			case d.Path == "":
				add("missing required value: the SQLite file, relative to this config file", "path")
			case d.readOnly() && d.Seed == "":
				// mode=ro cannot create the file: say so now rather than
				// at the first query.
				if fi, err := os.Stat(c.Resolve(d.Path)); err != nil {
					add(fmt.Sprintf("cannot use %s: %v (a read_only database must exist)", d.Path, unwrapPathError(err)), "path")
				} else if fi.IsDir() {
					add(fmt.Sprintf("%s is a folder, not an SQLite file", d.Path), "path")
				}
			}
			if d.Seed != "" {
				if fi, err := os.Stat(c.Resolve(d.Seed)); err != nil {
					add(fmt.Sprintf("cannot use %s: %v (the SQL script that creates %s on first use)", d.Seed, unwrapPathError(err), d.Path), "seed")
				} else if fi.IsDir() {
					add(fmt.Sprintf("%s is a folder, not an SQL script", d.Seed), "seed")
				}
			}
		case sqldb.Postgres, sqldb.MySQL:
			if d.Path != "" {
				add("is for sqlite; a server database has dsn_env, dsn_file or host, user and database", "path")
			}
			if d.Seed != "" {
				add("is for sqlite: mailbot creates only SQLite files from a script", "seed")
			}
			if d.DSNEnv != "" && d.DSNFile != "" {
				add("set only one of dsn_env and dsn_file", "dsn_file")
			}
			if d.PasswordEnv != "" && d.PasswordFile != "" {
				add("set only one of password_env and password_file", "password_file")
			}
			if d.DSNEnv != "" || d.DSNFile != "" {
				for _, k := range []string{"host", "port", "user", "database", "password_env", "password_file", "options"} {
					if server[k] {
						add("set either dsn_env/dsn_file or the fields that build a DSN, not both", k)
					}
				}
			} else if d.Database == "" || d.User == "" {
				add("set dsn_env or dsn_file, or host, user and database (with password_env or password_file)")
			}
			for _, k := range slices.Sorted(maps.Keys(d.Options)) {
				if k == "" || strings.ContainsAny(k+d.Options[k], "\r\n\x00") {
					add(fmt.Sprintf("option %q: names must be non-empty, and names and values contain no CR, LF or NUL", k), "options")
				}
			}
		case "":
			add("missing required value: sqlite, postgres or mysql", "driver")
		default:
			add(fmt.Sprintf("unknown driver %q (want sqlite, postgres or mysql; mysql serves MariaDB too)", d.Driver), "driver")
		}
	}
	return probs
}

// checkDatabaseSecrets reports DSN and password sources that cannot
// deliver now.
func (c *Config) checkDatabaseSecrets(getenv func(string) (string, bool)) []Problem {
	var probs []Problem
	for _, name := range c.databaseNames() {
		d := c.Databases[name]
		if d == nil {
			continue
		}
		for _, s := range []struct{ key, env, file string }{
			{"dsn", d.DSNEnv, d.DSNFile}, {"password", d.PasswordEnv, d.PasswordFile},
		} {
			if _, err := c.readSecret(s.env, s.file, getenv); err != nil {
				key := s.key + "_env"
				if s.env == "" {
					key = s.key + "_file"
				}
				probs = append(probs, c.problem(err.Error(), "databases", name, key))
			}
		}
	}
	return probs
}

// readSecret reads a secret from an environment variable or the first
// line of a file; both empty means none ("" and no error).
func (c *Config) readSecret(env, file string, getenv func(string) (string, bool)) (string, error) {
	switch {
	case env != "":
		v, ok := getenv(env)
		if !ok || v == "" {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return v, nil
	case file != "":
		return readPasswordFile(c.Resolve(file))
	}
	return "", nil
}

// sqlSet returns the databases of the config for the scripts' sql module.
// It opens nothing: each pool is opened by the first sql.open of its name,
// and the DSN or password is read then.
func (c *Config) sqlSet(getenv func(string) (string, bool)) *sqldb.Set {
	return c.sqlSetSeeded(getenv, "", false)
}

// sqlSetSeeded is sqlSet with the SQLite databases that have a seed built
// under seedDir (as NAME.db) instead of at their path: always when fresh
// (mailbot test: each run of the tests starts from the seed, and the real
// file is left alone), else only when the real file does not exist yet
// (a dry run creates nothing outside its folder). An empty seedDir keeps
// every path.
func (c *Config) sqlSetSeeded(getenv func(string) (string, bool), seedDir string, fresh bool) *sqldb.Set {
	cfgs := make([]sqldb.Config, 0, len(c.Databases))
	for _, name := range c.databaseNames() {
		d := c.Databases[name]
		if d == nil {
			continue
		}
		sc := sqldb.Config{
			Name: name, Driver: d.Driver, Host: d.Host, Port: d.Port, User: d.User, Database: d.Database,
			Options: d.Options, ReadOnly: d.readOnly(), MaxRows: d.MaxRows, Timeout: d.Timeout, MaxOpen: d.MaxOpen,
			ReadOnlyAt: c.path + " (line " + strconv.Itoa(lineOf(c.root, "databases", name, "read_only")) + ")",
		}
		if d.Driver == sqldb.SQLite {
			sc.Path = c.Resolve(d.Path)
			if d.Seed != "" {
				sc.Seed = c.Resolve(d.Seed)
				if seedDir != "" {
					if _, err := os.Stat(sc.Path); fresh || err != nil {
						sc.Path = filepath.Join(seedDir, name+".db")
					}
				}
			}
		}
		if d.DSNEnv != "" || d.DSNFile != "" {
			env, file := d.DSNEnv, d.DSNFile
			sc.DSN = func() (string, error) { return c.readSecret(env, file, getenv) }
		}
		if d.PasswordEnv != "" || d.PasswordFile != "" {
			env, file := d.PasswordEnv, d.PasswordFile
			sc.Password = func() (string, error) { return c.readSecret(env, file, getenv) }
		}
		cfgs = append(cfgs, sc)
	}
	return sqldb.NewSet(cfgs...)
}

// databaseCheckTimeout bounds the connection check of each database in
// mailbot check.
const databaseCheckTimeout = 10 * time.Second

// pingDatabases connects to each configured database, in parallel, and
// returns a problem for each that does not answer. check prints them as
// warnings: a server that is down now is not a mistake in the file.
func (c *Config) pingDatabases(getenv func(string) (string, bool)) []Problem {
	// A seeded database whose file does not exist yet is built in a
	// folder of its own, which proves the seed script works and creates
	// nothing: check only reads.
	seedDir, err := os.MkdirTemp("", "mailbot-check-db-")
	if err != nil {
		return []Problem{{Msg: "databases: " + err.Error()}}
	}
	defer os.RemoveAll(seedDir)
	set := c.sqlSetSeeded(getenv, seedDir, false)
	defer set.Close()
	names := set.Names()
	probs := make([]*Problem, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), databaseCheckTimeout)
			defer cancel()
			db, err := set.Open(name)
			if err == nil {
				err = db.Ping(ctx)
			}
			if err != nil {
				p := c.problem("warning: cannot connect: "+strings.TrimPrefix(err.Error(), "sql: database "+name+": "), "databases", name)
				probs[i] = &p
			}
		})
	}
	wg.Wait()
	var out []Problem
	for _, p := range probs {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}
