package luabind

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/sqldb"
)

// The sql module: the databases named in the configuration (sqldb.Set in
// Options.SQL).
//
//	local sql = require("sql")
//	local db = sql.open("sales")
//	local rows = db:query("SELECT id, total FROM orders WHERE day = ?", day)
//	rows.columns           -- {"id", "total"}, the column order
//	local row = db:query_one("SELECT count(*) AS n FROM orders")  -- or nil
//	local n = db:exec("DELETE FROM old WHERE day < ?", day)         -- read_only: false only
//	sql.null               -- SQL NULL in rows and parameters (it is json.null)
//
// Failures raise {kind, message, database, where}; kinds are sqldb's plus
// too_many_rows.

const (
	sqlDBTypeName    = "mailbot.sql.db"
	sqlErrorTypeName = "mailbot.sql.error"
)

// maxExactInt is the largest integer a Lua number (float64) holds exactly.
const maxExactInt = 1 << 53

// luaDB is a script's handle on a configured database.
type luaDB struct {
	db *sqldb.DB
}

// openSQL is the loader of the sql module.
func openSQL(o *Options) lua.LGFunction {
	return func(L *lua.LState) int {
		mt := L.NewTypeMetatable(sqlDBTypeName)
		L.SetField(mt, "__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"query":     func(L *lua.LState) int { return dbQuery(L, o, false) },
			"query_one": func(L *lua.LState) int { return dbQuery(L, o, true) },
			"exec":      func(L *lua.LState) int { return dbExec(L, o) },
		}))
		L.SetField(mt, "__tostring", L.NewFunction(func(L *lua.LState) int {
			d := checkDB(L, 1).db
			mode := "read_only"
			if !d.ReadOnly() {
				mode = "read-write"
			}
			L.Push(lua.LString(fmt.Sprintf("sql database %s (%s, %s)", d.Name(), d.Driver(), mode)))
			return 1
		}))
		emt := L.NewTypeMetatable(sqlErrorTypeName)
		L.SetField(emt, "__tostring", L.NewFunction(func(L *lua.LState) int {
			t := L.CheckTable(1)
			L.Push(lua.LString(L.GetField(t, "kind").String() + ": " + L.GetField(t, "message").String()))
			return 1
		}))
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"open": func(L *lua.LState) int { return sqlOpen(L, o) },
		})
		mod.RawSetString("null", nullValue(L))
		L.Push(mod)
		return 1
	}
}

func checkDB(L *lua.LState, n int) *luaDB {
	ud := L.CheckUserData(n)
	if d, ok := ud.Value.(*luaDB); ok {
		return d
	}
	L.ArgError(n, "sql database expected (from sql.open)")
	return nil
}

// raiseSQL raises err as {kind, message, database, where}.
func raiseSQL(L *lua.LState, err error) {
	t := L.NewTable()
	var se *sqldb.Error
	if errors.As(err, &se) {
		t.RawSetString("kind", lua.LString(se.Kind))
		t.RawSetString("message", lua.LString(se.Msg))
		if se.Database != "" {
			t.RawSetString("database", lua.LString(se.Database))
		}
	} else {
		t.RawSetString("kind", lua.LString(sqldb.KindQuery))
		t.RawSetString("message", lua.LString(err.Error()))
	}
	if where := luaWhere(L); where != "" {
		t.RawSetString("where", lua.LString(where))
	}
	L.SetMetatable(t, L.GetTypeMetatable(sqlErrorTypeName))
	L.Error(t, 0)
}

// sqlOpen: sql.open(name) -> db
func sqlOpen(L *lua.LState, o *Options) int {
	name := L.CheckString(1)
	d, err := o.SQL.Open(name)
	if err != nil {
		raiseSQL(L, err)
	}
	ud := L.NewUserData()
	ud.Value = &luaDB{db: d}
	L.SetMetatable(ud, L.GetTypeMetatable(sqlDBTypeName))
	L.Push(ud)
	return 1
}

// sqlArgs reads the bind parameters from stack index 3 on, and a trailing
// options table: numbers (whole ones as integers), strings, booleans,
// nil and sql.null.
func sqlArgs(L *lua.LState) (args []any, opts *lua.LTable) {
	top := L.GetTop()
	if t, ok := L.Get(top).(*lua.LTable); ok && top >= 3 {
		opts, top = t, top-1
	}
	for i := 3; i <= top; i++ {
		switch v := L.Get(i).(type) {
		case *lua.LNilType:
			args = append(args, nil)
		case lua.LBool:
			args = append(args, bool(v))
		case lua.LString:
			args = append(args, string(v))
		case lua.LNumber:
			f := float64(v)
			if f == math.Trunc(f) && math.Abs(f) <= maxExactInt {
				args = append(args, int64(f))
			} else {
				args = append(args, f)
			}
		default:
			if isJSONNull(v) {
				args = append(args, nil)
				continue
			}
			L.ArgError(i, "parameters are numbers, strings, booleans, nil or sql.null, not "+v.Type().String()+
				" (an options table goes last)")
		}
	}
	return args, opts
}

// sqlCtx is the context of a query: the run's, so the run timeout stops it.
func sqlCtx(L *lua.LState) context.Context {
	if ctx := L.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// dbQuery: db:query(q, ... [, {max_rows = n}]) -> rows, with
// rows.columns; db:query_one(q, ...) -> row or nil.
func dbQuery(L *lua.LState, o *Options, one bool) int {
	d := checkDB(L, 1).db
	q := L.CheckString(2)
	args, opts := sqlArgs(L)
	maxRows := d.MaxRows()
	if opts != nil {
		opts.ForEach(func(k, _ lua.LValue) {
			if k != lua.LString("max_rows") {
				L.ArgError(L.GetTop(), fmt.Sprintf("unknown option %s (the options table takes max_rows; parameters are not tables)", k.String()))
			}
		})
		switch v := opts.RawGetString("max_rows").(type) {
		case *lua.LNilType:
		case lua.LNumber:
			if n := int(v); n >= 1 && n < maxRows {
				maxRows = n
			} else if n < 1 {
				L.ArgError(L.GetTop(), "max_rows must be at least 1")
			}
		default:
			L.ArgError(L.GetTop(), "max_rows must be a number")
		}
	}
	rows, err := d.Query(sqlCtx(L), q, args...)
	if err != nil {
		raiseSQL(L, err)
	}
	defer rows.Close()
	cols := rows.Columns()
	limit := memoryLimit(o)
	null := nullValue(L)
	size := float64(sizeTable + sizeHashPart)
	result := L.NewTable()
	n := 0
	for rows.Next() {
		n++
		if n > maxRows {
			rows.Close()
			raiseSQL(L, &sqldb.Error{Kind: sqldb.KindTooManyRows, Database: d.Name(),
				Msg: fmt.Sprintf("the query returned more than %d rows (max_rows); add a LIMIT, or filter in the query", maxRows)})
		}
		vals := rows.Values()
		row := L.CreateTable(0, len(cols))
		size += sizeTable + sizeHashPart + sizeSlot + sizeArraySpare
		for i, v := range vals {
			lv := sqlValue(v, null)
			if s, ok := lv.(lua.LString); ok {
				size += sizeString + float64(len(s))
			} else {
				size += sizeNumber
			}
			size += sizeHashEntry
			row.RawSetString(cols[i], lv)
		}
		refuse(L, limit, "db:query", size)
		if one {
			L.Push(row)
			return 1
		}
		result.Append(row)
	}
	if err := rows.Err(); err != nil {
		raiseSQL(L, err)
	}
	if one {
		L.Push(lua.LNil)
		return 1
	}
	ct := L.CreateTable(len(cols), 0)
	for _, c := range cols {
		ct.Append(lua.LString(c))
	}
	// The column order lives in the metatable, so that the result stays
	// a plain array for ipairs, # and json.encode.
	index := L.CreateTable(0, 1)
	index.RawSetString("columns", ct)
	mt := L.CreateTable(0, 2)
	mt.RawSetString("__index", index)
	mt.RawSetString(jsonTypeField, lua.LString(shapeArray))
	L.SetMetatable(result, mt)
	L.Push(result)
	return 1
}

// sqlValue converts a sqldb value to Lua: integers beyond 2^53 and
// unsigned ones beyond int64 become strings, as they would lose digits as
// numbers; times become RFC 3339 strings.
func sqlValue(v any, null lua.LValue) lua.LValue {
	switch x := v.(type) {
	case nil:
		return null
	case bool:
		return lua.LBool(x)
	case int64:
		if x > maxExactInt || x < -maxExactInt {
			return lua.LString(strconv.FormatInt(x, 10))
		}
		return lua.LNumber(x)
	case uint64:
		return lua.LString(strconv.FormatUint(x, 10))
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case time.Time:
		return lua.LString(x.Format(time.RFC3339Nano))
	}
	return lua.LString(fmt.Sprint(v))
}

// dbExec: db:exec(q, ...) -> rows affected. In a dry run nothing is
// executed: the statement is logged and 0 returned.
func dbExec(L *lua.LState, o *Options) int {
	d := checkDB(L, 1).db
	q := L.CheckString(2)
	args, _ := sqlArgs(L)
	if d.ReadOnly() {
		_, err := d.Exec(sqlCtx(L), q, args...) // refuses at once
		raiseSQL(L, err)
	}
	if o.SMTP.DryRun != nil {
		attrs := []any{"database", d.Name(), "statement", q, "params", len(args)}
		if o.ScriptName != "" {
			attrs = append([]any{"script", o.ScriptName}, attrs...)
		}
		o.Logger.Log(context.Background(), slog.LevelInfo, "dry run: not executed: db:exec", attrs...)
		L.Push(lua.LNumber(0))
		return 1
	}
	n, err := d.Exec(sqlCtx(L), q, args...)
	if err != nil {
		raiseSQL(L, err)
	}
	L.Push(lua.LNumber(n))
	return 1
}
