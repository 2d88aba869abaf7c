package luabind

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	lua "github.com/yuin/gopher-lua"
)

// openCSV returns the loader of the csv module (RFC 4180 via encoding/csv):
//
//	csv.parse(s [, opts]) -> rows, header
//	csv.read(path [, opts]) -> rows, header     -- path relative to Options.BaseDir
//	csv.encode(rows [, opts]) -> string
//
// Parse options:
//
//	header = true    -- first record names the columns; rows become tables keyed
//	                 -- by those names and the names come back as `header`
//	comma = ","      -- field delimiter, one character ("\t" for TSV)
//	comment = "#"    -- lines starting with this character are skipped (default: none)
//	trim = true      -- trim spaces around every field
//
// Without header, rows are lists of strings and header is nil. Every record
// must have as many fields as the first one. Errors carry the CSV line:
// "csv.parse: record on line 3: wrong number of fields".
//
// Encode options: header = {"name", ...} writes that header row first and
// orders keyed rows by it (default for keyed rows: the sorted union of their
// keys), comma as above, crlf = true for CRLF line endings. Numbers are
// written without a fraction when integral, booleans as true/false, nil and
// json.null as empty fields.
func openCSV(o *Options) lua.LGFunction {
	funcs := map[string]lua.LGFunction{
		"parse": func(L *lua.LState) int {
			s := L.CheckString(1)
			return csvParse(L, "csv.parse", strings.NewReader(s))
		},
		"read": func(L *lua.LState) int {
			path := L.CheckString(1)
			f, err := o.files.open(path)
			if err != nil {
				L.RaiseError("csv.read: %v", err)
			}
			defer f.Close()
			return csvParse(L, "csv.read "+path, f)
		},
		"encode": csvEncode,
	}
	return func(L *lua.LState) int {
		mod := L.NewTable()
		L.SetFuncs(mod, funcs)
		L.Push(mod)
		return 1
	}
}

// csvDelimiter reads a one-character option; def applies when it is absent.
func csvDelimiter(L *lua.LState, opts *lua.LTable, key string, def rune) rune {
	v := opts.RawGetString(key)
	if v == lua.LNil {
		return def
	}
	s, ok := v.(lua.LString)
	if ok && s == "" && def == 0 {
		return 0 // an empty optional delimiter (comment) means none
	}
	if !ok || utf8.RuneCountInString(string(s)) != 1 {
		L.ArgError(2, fmt.Sprintf("%s must be a single character", key))
	}
	r, _ := utf8.DecodeRuneInString(string(s))
	if r == '\r' || r == '\n' || r == '"' || r == utf8.RuneError {
		L.ArgError(2, fmt.Sprintf("%s cannot be %q", key, r))
	}
	return r
}

// csvParse reads all records from r and pushes rows and header.
func csvParse(L *lua.LState, fname string, r io.Reader) int {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, trim := false, false
	if opts := L.OptTable(2, nil); opts != nil {
		header = lua.LVAsBool(opts.RawGetString("header"))
		trim = lua.LVAsBool(opts.RawGetString("trim"))
		cr.Comma = csvDelimiter(L, opts, "comma", ',')
		cr.Comment = csvDelimiter(L, opts, "comment", 0)
		if cr.Comment == cr.Comma {
			L.ArgError(2, "comment and comma must differ")
		}
		cr.TrimLeadingSpace = trim
	}
	rows := L.NewTable()
	var names []string
	limit := memoryLimit(stateOptions(L))
	fn, _, _ := strings.Cut(fname, " ")
	size := 0.0 // estimate of the rows built, as memsize.go counts them
	for n := 0; ; n++ {
		if n%256 == 255 {
			checkRun(L)
		}
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// *csv.ParseError already reads "record on line N: ..." or
			// "parse error on line N, column C: ...".
			L.RaiseError("%s: %v", fname, err)
		}
		if trim {
			for i := range rec {
				rec[i] = strings.TrimSpace(rec[i])
			}
		}
		if header && names == nil {
			line, _ := cr.FieldPos(0)
			names = make([]string, len(rec))
			seen := map[string]bool{}
			for i, n := range rec {
				if n == "" {
					L.RaiseError("%s: header on line %d: column %d has no name", fname, line, i+1)
				}
				if seen[n] {
					L.RaiseError("%s: header on line %d: duplicate column %q", fname, line, n)
				}
				seen[n] = true
				names[i] = n
			}
			continue
		}
		size += sizeTable + sizeSlot + sizeArraySpare
		for _, v := range rec {
			size += sizeString + float64(len(v)) + sizeSlot + sizeArraySpare
			if header {
				size += sizeHashEntry
			}
		}
		if header {
			size += sizeHashPart
		}
		refuse(L, limit, fn, size)
		if header {
			row := L.CreateTable(0, len(rec))
			for i, v := range rec {
				row.RawSetString(names[i], lua.LString(v))
			}
			rows.Append(row)
			continue
		}
		row := L.CreateTable(len(rec), 0)
		for _, v := range rec {
			row.Append(lua.LString(v))
		}
		rows.Append(row)
	}
	L.Push(rows)
	if names == nil {
		L.Push(lua.LNil)
		return 2
	}
	ht := L.CreateTable(len(names), 0)
	for _, n := range names {
		ht.Append(lua.LString(n))
	}
	L.Push(ht)
	return 2
}

// csvEncode: csv.encode(rows [, opts]) -> string
func csvEncode(L *lua.LState) int {
	rows := L.CheckTable(1)
	var b strings.Builder
	w := csv.NewWriter(&b)
	var header []string
	if opts := L.OptTable(2, nil); opts != nil {
		w.Comma = csvDelimiter(L, opts, "comma", ',')
		w.UseCRLF = lua.LVAsBool(opts.RawGetString("crlf"))
		if hv := opts.RawGetString("header"); hv != lua.LNil {
			ht, ok := hv.(*lua.LTable)
			if !ok {
				L.ArgError(2, "header must be a list of column names")
			}
			for i := 1; i <= ht.Len(); i++ {
				header = append(header, lua.LVAsString(ht.RawGetInt(i)))
			}
		}
	}
	rsh, err := tableShape(rows)
	if err != nil || rsh.kind != shapeArray {
		L.ArgError(1, "rows must be a list of rows")
	}
	list := make([]*lua.LTable, rsh.n)
	keyed := false
	for i := range list {
		t, ok := rows.RawGetInt(i + 1).(*lua.LTable)
		if !ok {
			L.RaiseError("csv.encode: row %d is %s, not a table", i+1, rows.RawGetInt(i+1).Type())
		}
		if sh, err := tableShape(t); err == nil && sh.kind == shapeObject {
			keyed = true
		}
		list[i] = t
	}
	if keyed && header == nil {
		header = unionKeys(list)
	}
	if header != nil {
		if err := w.Write(header); err != nil {
			L.RaiseError("csv.encode: header: %v", err)
		}
	}
	for i, t := range list {
		var cells []lua.LValue
		if sh, err := tableShape(t); err == nil && sh.kind == shapeArray {
			for j := 1; j <= sh.n; j++ {
				cells = append(cells, t.RawGetInt(j))
			}
		} else {
			for _, name := range header {
				cells = append(cells, t.RawGetString(name))
			}
		}
		rec := make([]string, len(cells))
		for j, c := range cells {
			s, err := csvCell(c)
			if err != nil {
				L.RaiseError("csv.encode: row %d, column %d: %v", i+1, j+1, err)
			}
			rec[j] = s
		}
		if err := w.Write(rec); err != nil {
			L.RaiseError("csv.encode: row %d: %v", i+1, err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		L.RaiseError("csv.encode: %v", err)
	}
	L.Push(lua.LString(b.String()))
	return 1
}

// unionKeys returns the sorted string keys over all keyed rows.
func unionKeys(rows []*lua.LTable) []string {
	seen := map[string]bool{}
	for _, t := range rows {
		t.ForEach(func(k, _ lua.LValue) {
			if s, ok := k.(lua.LString); ok {
				seen[string(s)] = true
			}
		})
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// csvCell formats one value as a field.
func csvCell(v lua.LValue) (string, error) {
	switch x := v.(type) {
	case *lua.LNilType:
		return "", nil
	case lua.LString:
		return string(x), nil
	case lua.LNumber:
		return formatLuaNumber(float64(x)), nil
	case lua.LBool:
		if x {
			return "true", nil
		}
		return "false", nil
	}
	if isJSONNull(v) {
		return "", nil
	}
	return "", fmt.Errorf("cannot encode %s", v.Type())
}
