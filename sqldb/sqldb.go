package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Drivers a Config may name.
const (
	SQLite   = "sqlite"   // modernc.org/sqlite, pure Go
	Postgres = "postgres" // github.com/jackc/pgx/v5 through database/sql
	MySQL    = "mysql"    // github.com/go-sql-driver/mysql, MariaDB too
)

// Defaults for the zero fields of a Config.
const (
	DefaultMaxRows = 100_000
	DefaultTimeout = 30 * time.Second
	DefaultMaxOpen = 4
)

// Config is one named database.
type Config struct {
	// Name is the name scripts open it by.
	Name string
	// Driver is SQLite, Postgres or MySQL.
	Driver string
	// Path is the SQLite file, absolute.
	Path string
	// Seed, for SQLite, is an SQL script (absolute path) that creates
	// Path when the file does not exist, at the first Open: an example or
	// fixture database built on first use (see seed).
	Seed string
	// DSN returns the whole data source name of a server database; nil
	// means it is built from Host, Port, User, Database, Password and
	// Options.
	DSN func() (string, error)
	// Host, Port, User and Database name a server database when DSN is
	// nil; Port 0 is the driver's default.
	Host     string
	Port     int
	User     string
	Database string
	// Password returns the password; nil means none.
	Password func() (string, error)
	// Options are driver parameters added to a built DSN (sslmode,
	// tls, charset, ...).
	Options map[string]string
	// ReadOnly refuses writes (see the package doc).
	ReadOnly bool
	// MaxRows bounds the rows of one query; 0 means DefaultMaxRows.
	MaxRows int
	// Timeout bounds one query or statement; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxOpen bounds the pool's connections; 0 means DefaultMaxOpen.
	MaxOpen int
	// ReadOnlyAt says where an operator changes read_only, for the advice
	// in errors: "mailbot.yaml (line 12)".
	ReadOnlyAt string
}

// maxRows, timeout and maxOpen return the fields with their defaults.
func (c Config) maxRows() int {
	if c.MaxRows <= 0 {
		return DefaultMaxRows
	}
	return c.MaxRows
}

func (c Config) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c Config) maxOpen() int {
	if c.MaxOpen <= 0 {
		return DefaultMaxOpen
	}
	return c.MaxOpen
}

// Set is the configured databases of one configuration, each with at most
// one pool, opened by the first Open of its name. It is safe for
// concurrent use.
type Set struct {
	mu     sync.Mutex
	cfgs   map[string]Config
	pools  map[string]*DB
	closed bool
}

// NewSet returns a Set of the databases cfgs; it opens nothing.
func NewSet(cfgs ...Config) *Set {
	s := &Set{cfgs: make(map[string]Config, len(cfgs)), pools: map[string]*DB{}}
	for _, c := range cfgs {
		s.cfgs[c.Name] = c
	}
	return s
}

// Names returns the configured names, sorted.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.cfgs))
	for n := range s.cfgs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open returns the database called name, opening its pool the first time
// (which connects to nothing yet). An unknown name is an *Error of kind
// KindUnknownDatabase; a DSN or password that cannot be read, or a
// configuration the driver refuses, one of kind KindConnect.
func (s *Set) Open(name string) (*DB, error) {
	if s == nil {
		return nil, &Error{Kind: KindUnknownDatabase, Database: name,
			Msg: "no databases are configured (add a databases section to mailbot.yaml)"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, ok := s.cfgs[name]
	if !ok {
		msg := "no database named " + quote(name) + " under databases"
		if names := s.Names(); len(names) > 0 {
			msg += " (configured: " + strings.Join(names, ", ") + ")"
		} else {
			msg += " (none are configured)"
		}
		return nil, &Error{Kind: KindUnknownDatabase, Database: name, Msg: msg}
	}
	if s.closed {
		return nil, errClosed(name)
	}
	if db := s.pools[name]; db != nil {
		return db, nil
	}
	db, err := open(s, cfg)
	if err != nil {
		return nil, err
	}
	s.pools[name] = db
	return db, nil
}

// Close closes every pool opened so far; later Opens fail. Queries under
// way finish first (see sql.DB.Close). A nil Set, or a second Close, does
// nothing.
func (s *Set) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.pools)) {
		if err := s.pools[name].db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close database %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// isClosed reports whether Close was called.
func (s *Set) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Opened reports whether the pool of name was opened: for tests of the
// lazy opening.
func (s *Set) Opened(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pools[name] != nil
}

func quote(s string) string { return fmt.Sprintf("%q", s) }

// errClosed is the error of a database whose Set was closed: a reload
// replaced it while a run held it.
func errClosed(name string) *Error {
	return &Error{Kind: KindConnect, Database: name,
		Msg: "the database was closed by a config reload or shutdown; the next run uses the new settings"}
}

// DB is one configured database with its pool.
type DB struct {
	set     *Set
	cfg     Config
	db      *sql.DB
	secrets []string // scrubbed from every error message
}

// Name returns the configured name.
func (d *DB) Name() string { return d.cfg.Name }

// Driver returns the configured driver.
func (d *DB) Driver() string { return d.cfg.Driver }

// ReadOnly reports whether writes are refused.
func (d *DB) ReadOnly() bool { return d.cfg.ReadOnly }

// MaxRows returns the row limit of one query.
func (d *DB) MaxRows() int { return d.cfg.maxRows() }

// Timeout returns the time limit of one query.
func (d *DB) Timeout() time.Duration { return d.cfg.timeout() }

// Ping connects (when no pooled connection is idle) and checks that the
// database answers, within the configured timeout.
func (d *DB) Ping(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, d.cfg.timeout())
	defer cancel()
	if err := d.db.PingContext(qctx); err != nil {
		return d.wrap(ctx, qctx, "connect", err)
	}
	return nil
}

// Exec runs a statement that returns no rows and returns the number of
// rows it affected. On a read-only database it fails at once with an
// *Error of kind KindReadOnly.
func (d *DB) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if d.cfg.ReadOnly {
		return 0, d.readOnlyError()
	}
	qctx, cancel := context.WithTimeout(ctx, d.cfg.timeout())
	defer cancel()
	res, err := d.db.ExecContext(qctx, query, args...)
	if err != nil {
		return 0, d.wrap(ctx, qctx, "query", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		// SQLite, PostgreSQL and MySQL all report it; a driver that
		// does not is no reason to fail a statement that ran.
		return 0, nil
	}
	return n, nil
}

// readOnlyError is the refusal of a write.
func (d *DB) readOnlyError() *Error {
	msg := "database " + d.cfg.Name + " is read_only; set read_only: false"
	if d.cfg.ReadOnlyAt != "" {
		msg += " in " + d.cfg.ReadOnlyAt
	}
	return &Error{Kind: KindReadOnly, Database: d.cfg.Name, Msg: msg + " to allow writes"}
}

// Query runs a query and returns its rows, which the caller must Close.
// The configured timeout runs until Close. On the server databases a
// read-only database's query runs in a read-only transaction.
func (d *DB) Query(ctx context.Context, query string, args ...any) (*Rows, error) {
	qctx, cancel := context.WithTimeout(ctx, d.cfg.timeout())
	r := &Rows{d: d, ctx: ctx, qctx: qctx, cancel: cancel}
	var q interface {
		QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	} = d.db
	if d.cfg.ReadOnly && d.cfg.Driver != SQLite {
		tx, err := d.db.BeginTx(qctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			err = d.wrap(ctx, qctx, "connect", err)
			cancel()
			return nil, err
		}
		r.tx, q = tx, tx
	}
	fail := func(err error) (*Rows, error) {
		err = d.wrap(ctx, qctx, "query", err) // before Close ends qctx
		r.Close()
		return nil, err
	}
	rows, err := q.QueryContext(qctx, query, args...)
	if err != nil {
		return fail(err)
	}
	r.rows = rows
	types, err := rows.ColumnTypes()
	if err != nil {
		return fail(err)
	}
	r.cols = make([]string, len(types))
	r.types = make([]string, len(types))
	for i, t := range types {
		r.cols[i] = t.Name()
		r.types[i] = strings.ToUpper(t.DatabaseTypeName())
	}
	r.raw = make([]any, len(types))
	r.ptrs = make([]any, len(types))
	for i := range r.raw {
		r.ptrs[i] = &r.raw[i]
	}
	return r, nil
}
