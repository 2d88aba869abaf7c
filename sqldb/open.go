package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
)

// connMaxIdle closes pooled connections idle for longer, so that a pool
// used by a nightly report does not keep server sessions all day.
const connMaxIdle = 5 * time.Minute

// open builds the pool of cfg; it connects to nothing yet.
func open(s *Set, cfg Config) (*DB, error) {
	d := &DB{set: s, cfg: cfg}
	fail := func(msg string, err error) (*DB, error) {
		e := &Error{Kind: KindConnect, Database: cfg.Name, Msg: msg, Err: err}
		if err != nil {
			e.Msg += ": " + d.scrub(err.Error())
		}
		return nil, e
	}
	var connector driver.Connector
	switch cfg.Driver {
	case SQLite:
		if err := seed(context.Background(), cfg); err != nil {
			return fail("create "+cfg.Path+" from its seed", err)
		}
		c, err := sqlite.NewConnector(sqliteDSN(cfg.Path, cfg.ReadOnly))
		if err != nil {
			return fail("open "+cfg.Path, err)
		}
		connector = sqliteConnector{c}
	case Postgres, MySQL:
		dsn, password, err := d.dsn()
		if err != nil {
			return fail(err.Error(), nil)
		}
		d.secrets = []string{dsn, password}
		if password != "" {
			d.secrets = append(d.secrets, url.QueryEscape(password), url.PathEscape(password))
		}
		if cfg.Driver == Postgres {
			pc, err := pgx.ParseConfig(dsn)
			if err != nil {
				return fail("invalid PostgreSQL DSN", err)
			}
			if password != "" && cfg.DSN == nil {
				pc.Password = password
			}
			if pc.Password != "" {
				d.secrets = append(d.secrets, pc.Password)
			}
			if cfg.ReadOnly {
				pc.RuntimeParams["default_transaction_read_only"] = "on"
			}
			connector = stdlib.GetConnector(*pc)
		} else {
			mc, err := mysql.ParseDSN(dsn)
			if err != nil {
				return fail("invalid MySQL DSN", err)
			}
			if password != "" && cfg.DSN == nil {
				mc.Passwd = password
			}
			if mc.Passwd != "" {
				d.secrets = append(d.secrets, mc.Passwd)
			}
			mc.ParseTime = true
			mc.Loc = time.UTC
			c, err := mysql.NewConnector(mc)
			if err != nil {
				return fail("invalid MySQL DSN", err)
			}
			connector = c
			if cfg.ReadOnly {
				connector = mysqlReadOnly{c}
			}
		}
	default:
		return fail(fmt.Sprintf("unknown driver %q (want sqlite, postgres or mysql)", cfg.Driver), nil)
	}
	d.db = sql.OpenDB(connector)
	d.db.SetMaxOpenConns(cfg.maxOpen())
	d.db.SetMaxIdleConns(cfg.maxOpen())
	d.db.SetConnMaxIdleTime(connMaxIdle)
	return d, nil
}

// sqliteDSN returns the SQLite URI of path: read-only (mode=ro, and the
// query_only pragma against temporary tables), or created when missing.
func sqliteDSN(path string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	if readOnly {
		q.Set("mode", "ro")
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Set("mode", "rwc")
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// sqliteConnector opens SQLite connections that cannot ATTACH other
// database files: a script reaches the configured file only, not every
// file mailbot can read.
type sqliteConnector struct{ driver.Connector }

// Connect implements driver.Connector.
func (c sqliteConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	reg, ok := conn.(sqlite.AuthorizerRegisterer)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("sqlite connection has no authorizer")
	}
	if err := reg.RegisterAuthorizer(func(action sqlite.AuthorizerActionCode, _, _, _, _ string) sqlite.AuthorizerReturnCode {
		if action == sqlite.AuthAttach || action == sqlite.AuthDetach {
			return sqlite.AuthorizerDeny
		}
		return sqlite.AuthorizerOK
	}); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// mysqlReadOnly makes every connection of a MySQL/MariaDB pool read-only
// as it is opened, before database/sql hands it out.
type mysqlReadOnly struct{ driver.Connector }

// Connect implements driver.Connector.
func (c mysqlReadOnly) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("mysql connection cannot execute statements")
	}
	if _, err := ex.ExecContext(ctx, "SET SESSION TRANSACTION READ ONLY", nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("make the session read-only: %w", err)
	}
	return conn, nil
}

// dsn returns the server DSN: the configured one, or one built from the
// fields (with the password, also returned for scrubbing).
func (d *DB) dsn() (dsn, password string, err error) {
	cfg := d.cfg
	if cfg.DSN != nil {
		dsn, err = cfg.DSN()
		if err != nil {
			return "", "", err
		}
		if dsn == "" {
			return "", "", fmt.Errorf("the DSN is empty")
		}
		return dsn, "", nil
	}
	if cfg.Password != nil {
		if password, err = cfg.Password(); err != nil {
			return "", "", err
		}
	}
	if cfg.Driver == Postgres {
		return postgresDSN(cfg), password, nil
	}
	return mysqlDSN(cfg), password, nil
}

// postgresDSN builds a postgres:// URL from the fields, without the
// password (set on the parsed config instead).
func postgresDSN(cfg Config) string {
	u := url.URL{Scheme: "postgres", Path: "/" + cfg.Database}
	host := cfg.Host
	if host == "" {
		host = "localhost"
	}
	if cfg.Port != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(cfg.Port))
	} else if net.ParseIP(host) != nil && net.ParseIP(host).To4() == nil {
		host = "[" + host + "]"
	}
	u.Host = host
	if cfg.User != "" {
		u.User = url.User(cfg.User)
	}
	q := url.Values{}
	for _, k := range slices.Sorted(maps.Keys(cfg.Options)) {
		q.Set(k, cfg.Options[k])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// mysqlDSN builds a go-sql-driver DSN from the fields, without the
// password.
func mysqlDSN(cfg Config) string {
	mc := mysql.NewConfig()
	mc.User = cfg.User
	mc.Net = "tcp"
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = 3306
	}
	mc.Addr = net.JoinHostPort(host, strconv.Itoa(port))
	mc.DBName = cfg.Database
	if len(cfg.Options) > 0 {
		mc.Params = map[string]string{}
		keys := make([]string, 0, len(cfg.Options))
		for k := range cfg.Options {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			mc.Params[k] = cfg.Options[k]
		}
	}
	return mc.FormatDSN()
}
