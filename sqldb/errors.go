package sqldb

import (
	"context"
	"database/sql/driver"
	"errors"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// Kinds of Error, the kind field of the Lua error tables.
const (
	KindConnect         = "connect"          // the database cannot be reached, opened or logged into
	KindQuery           = "query"            // the database refused the statement (syntax, types, ...)
	KindReadOnly        = "read_only"        // a write on a read-only database
	KindTimeout         = "timeout"          // the query timeout, or the end of the run
	KindUnknownDatabase = "unknown_database" // no database of that name is configured
	KindTooManyRows     = "too_many_rows"    // more rows than max_rows (raised by callers)
)

// Error is a failed database operation. Msg carries the driver's message,
// scrubbed of the DSN and password.
type Error struct {
	Kind     string
	Database string
	Msg      string
	// Err is the driver's error; its text may hold secrets, so it is
	// not part of Error().
	Err error
}

// Error implements error: "sql: database sales: message".
func (e *Error) Error() string {
	if e.Database == "" {
		return "sql: " + e.Msg
	}
	return "sql: database " + e.Database + ": " + e.Msg
}

// Unwrap returns the driver's error.
func (e *Error) Unwrap() error { return e.Err }

// SQLite result codes (primary, the low byte of extended ones).
const (
	sqliteReadOnly = 8
	sqliteCantOpen = 14
	sqliteNotADB   = 26
)

// MySQL and MariaDB error numbers.
const (
	myReadOnlyTx     = 1792 // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
	myReadOnlyServer = 1290 // ER_OPTION_PREVENTS_STATEMENT (--read-only)
	myAccessDenied   = 1045
	myUnknownDB      = 1049
)

// wrap classifies a driver error. ctx is the caller's context, qctx the
// query's (with the timeout); what names the operation when the error
// says nothing more specific ("connect" for Ping and BEGIN).
func (d *DB) wrap(ctx, qctx context.Context, what string, err error) error {
	e := &Error{Kind: KindQuery, Database: d.cfg.Name, Err: err}
	if what == "connect" {
		e.Kind = KindConnect
	}
	var (
		pgErr   *pgconn.PgError
		pgConn  *pgconn.ConnectError
		myErr   *mysql.MySQLError
		liteErr *sqlite.Error
		netErr  net.Error
	)
	switch {
	case ctx.Err() != nil:
		e.Kind, e.Msg = KindTimeout, "the run ended (run_timeout, or the run was stopped) before the query did"
		return e
	case qctx.Err() != nil:
		e.Kind, e.Msg = KindTimeout, "the query took longer than its timeout of "+d.cfg.timeout().String()+" (databases."+d.cfg.Name+".timeout)"
		return e
	case d.set.isClosed() && strings.Contains(err.Error(), "database is closed"):
		return errClosed(d.cfg.Name)
	case errors.As(err, &pgErr):
		if pgErr.Code == "25006" { // read_only_sql_transaction
			e.Kind = KindReadOnly
		} else if strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000" {
			e.Kind = KindConnect // connection, authorization, unknown database
		}
	case errors.As(err, &pgConn):
		e.Kind = KindConnect
	case errors.As(err, &myErr):
		switch myErr.Number {
		case myReadOnlyTx, myReadOnlyServer:
			e.Kind = KindReadOnly
		case myAccessDenied, myUnknownDB:
			e.Kind = KindConnect
		}
	case errors.As(err, &liteErr):
		switch liteErr.Code() & 0xff {
		case sqliteReadOnly:
			e.Kind = KindReadOnly
		case sqliteCantOpen, sqliteNotADB:
			e.Kind = KindConnect
		}
	case errors.As(err, &netErr), errors.Is(err, driver.ErrBadConn), errors.Is(err, mysql.ErrInvalidConn):
		e.Kind = KindConnect
	}
	e.Msg = d.scrub(err.Error())
	if e.Kind == KindReadOnly {
		e.Msg = d.readOnlyError().Msg + " (the database refused the write: " + e.Msg + ")"
	}
	return e
}

// scrub removes the DSN and password from a driver message.
func (d *DB) scrub(msg string) string {
	for _, s := range d.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return msg
}
