package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Rows is the result of a query, read one row at a time.
type Rows struct {
	d      *DB
	ctx    context.Context // the caller's
	qctx   context.Context // with the query timeout
	cancel context.CancelFunc
	tx     *sql.Tx
	rows   *sql.Rows
	cols   []string
	types  []string // database type names, upper case
	raw    []any
	ptrs   []any
	err    error
	closed bool
}

// Columns returns the column names in query order.
func (r *Rows) Columns() []string { return r.cols }

// Next advances to the next row; false at the end or on an error (see Err).
func (r *Rows) Next() bool {
	if r.closed || r.err != nil {
		return false
	}
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			r.err = r.d.wrap(r.ctx, r.qctx, "query", err)
		}
		return false
	}
	if err := r.rows.Scan(r.ptrs...); err != nil {
		r.err = r.d.wrap(r.ctx, r.qctx, "query", err)
		return false
	}
	return true
}

// Values returns the current row, one value per column, as nil (SQL
// NULL), bool, int64, uint64 (only above the int64 range), float64,
// string or time.Time:
//
//   - text and bytes are strings;
//   - a DATE column's value is the string "2006-01-02" (an RFC 3339
//     full-date), other dates and times are time.Time;
//   - a DECIMAL or NUMERIC value is a float64 when the float prints as
//     exactly the same decimal number, else the database's string, so no
//     digit is lost;
//   - an SQLite BOOLEAN column's 0 and 1 are false and true;
//   - values of other types (PostgreSQL arrays, intervals, ...) are their
//     text.
func (r *Rows) Values() []any {
	out := make([]any, len(r.raw))
	for i, v := range r.raw {
		out[i] = normalize(v, r.types[i])
	}
	return out
}

// Err returns the error that ended Next, as an *Error.
func (r *Rows) Err() error {
	if r.err != nil {
		return r.err
	}
	return nil
}

// Close releases the rows, ends the read-only transaction and the query's
// timeout. It may be called more than once.
func (r *Rows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	var err error
	if r.rows != nil {
		err = r.rows.Close()
	}
	if r.tx != nil {
		// Nothing to keep: a read-only transaction's rollback is its
		// commit.
		_ = r.tx.Rollback()
	}
	r.cancel()
	if err != nil && r.err == nil {
		return r.d.wrap(r.ctx, r.qctx, "query", err)
	}
	return nil
}

// normalize converts a driver value to the types Values documents.
func normalize(v any, dbType string) any {
	switch x := v.(type) {
	case nil:
		return nil
	case bool, float64:
		return x
	case int64:
		if (dbType == "BOOLEAN" || dbType == "BOOL") && (x == 0 || x == 1) {
			return x == 1
		}
		return x
	case time.Time:
		if dbType == "DATE" {
			return x.Format(time.DateOnly)
		}
		return x
	case []byte:
		return text(string(x), dbType)
	case string:
		return text(x, dbType)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if u := rv.Uint(); u <= math.MaxInt64 {
			return int64(u)
		}
		return rv.Uint()
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	}
	if s, ok := v.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprint(v)
}

// text returns a text value, or a decimal column's value as a number when
// that loses nothing.
func text(s, dbType string) any {
	if dbType != "DECIMAL" && dbType != "NUMERIC" && !strings.HasPrefix(dbType, "DECIMAL") {
		return s
	}
	if f, ok := exactDecimal(s); ok {
		return f
	}
	return s
}

// exactDecimal parses a decimal number into the float64 that prints as
// the same number (12.34 -> 12.34); ok is false when none does.
func exactDecimal(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	want, ok1 := new(big.Rat).SetString(s)
	got, ok2 := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if !ok1 || !ok2 || want.Cmp(got) != 0 {
		return 0, false
	}
	return f, true
}
