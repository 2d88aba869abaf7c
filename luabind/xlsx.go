package luabind

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
	lua "github.com/yuin/gopher-lua"
)

// Metatables of the xlsx module's userdata; in the registry only.
const (
	xlsxBookTypeName  = "mailbot.xlsx.book"
	xlsxSheetTypeName = "mailbot.xlsx.sheet"
)

// xlsxMediaType is the content type of the bytes book:bytes() returns.
const xlsxMediaType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

// xlsxCellCost is what a cell costs in Go memory, measured with excelize: a
// cell held in the worksheet model takes about 240 bytes besides its text,
// and writing the file takes about 200 more per cell while it runs.
// Neither is a Lua value, so the memory watchdog cannot see them; the
// module counts them against the state's memory limit itself, in full when
// the cell is appended, so that the error comes at the row that makes the
// report too big rather than at book:bytes().
const xlsxCellCost = 256 + 200

// Column widths fitted to content, in characters.
const (
	xlsxMinWidth = 8
	xlsxMaxWidth = 60
)

// xlsxModule is the per-state part of the module: how much memory the
// workbooks of the current run hold.
type xlsxModule struct {
	o *Options
	// run is the context of the run the count belongs to; a new run
	// starts a new count (workbooks of earlier runs are garbage unless a
	// script kept them in a global).
	run  context.Context
	used int64
}

// charge adds n bytes to the run's count and raises a memory error, naming
// fn, when the count would exceed the memory limit. The count is kept
// unchanged in that case, so a script that catches the error can go on.
func (x *xlsxModule) charge(L *lua.LState, fn string, n int64) {
	if ctx := L.Context(); !sameContext(ctx, x.run) {
		x.run, x.used = ctx, 0
	}
	refuse(L, memoryLimit(x.o), fn, float64(x.used)+float64(n))
	x.used += n
}

// sameContext reports whether a and b are the same context. Contexts are
// compared as interface values, which panics for a dynamic type that is
// not comparable; such a context counts as a new run on every call.
func sameContext(a, b context.Context) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if !reflect.TypeOf(a).Comparable() || !reflect.TypeOf(b).Comparable() {
		return false
	}
	return a == b
}

// xlsxBook is a workbook under construction.
type xlsxBook struct {
	f      *excelize.File
	sheets []*xlsxSheet
	byName map[string]*xlsxSheet // lower-cased: Excel's sheet names ignore case
	header int                   // style ID of header cells; 0 until first used
}

// xlsxSheet is one worksheet of a book.
type xlsxSheet struct {
	book   *xlsxBook
	name   string
	rows   int       // rows written so far; the next row is rows+1
	widths []int     // widest content per column, in characters
	fixed  []float64 // widths set with sheet:width; 0 means fit to content
	// headerRow and headerCols locate the header row (0: none): it gets
	// the frozen pane and the autofilter.
	headerRow, headerCols int
}

// openXLSX is the loader of the xlsx module:
//
//	local book = xlsx.new()
//	local s = book:sheet("Report")       -- creates or gets; the first one replaces "Sheet1"
//	s:header{ "host", "sent", "ok" }      -- bold, filled, frozen, with autofilter
//	s:append{ "mx1", 120, true }          -- numbers, strings, booleans; nil/json.null/sql.null: empty
//	s:append({ "Total" }, { style = "header" })
//	s:width(1, 30)                        -- column 1 (or "A") 30 characters wide
//	local bytes = book:bytes()            -- the .xlsx file, a Lua string
//
// Errors are tables: {kind = "invalid"} for data Excel cannot hold (a
// table as a cell, row 1,048,577, a bad sheet name), {kind = "memory"} when
// the run's workbooks would exceed the memory limit.
func openXLSX(o *Options) lua.LGFunction {
	return func(L *lua.LState) int {
		x := &xlsxModule{o: o}
		xlsxRegisterTypes(L, x)
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"new": xlsxNew,
		})
		mod.RawSetString("content_type", lua.LString(xlsxMediaType))
		L.Push(mod)
		return 1
	}
}

func xlsxRegisterTypes(L *lua.LState, x *xlsxModule) {
	bmt := L.NewTypeMetatable(xlsxBookTypeName)
	L.SetField(bmt, "__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"sheet": func(L *lua.LState) int { return xlsxBookSheet(L, x) },
		"bytes": xlsxBookBytes,
	}))
	L.SetField(bmt, "__tostring", L.NewFunction(func(L *lua.LState) int {
		b := xlsxCheckBook(L, 1)
		names := make([]string, len(b.sheets))
		for i, s := range b.sheets {
			names[i] = strconv.Quote(s.name)
		}
		L.Push(lua.LString("xlsx.book(" + strings.Join(names, ", ") + ")"))
		return 1
	}))
	smt := L.NewTypeMetatable(xlsxSheetTypeName)
	L.SetField(smt, "__index", L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
		"append": func(L *lua.LState) int { return xlsxSheetAppend(L, x, false) },
		"header": func(L *lua.LState) int { return xlsxSheetAppend(L, x, true) },
		"width":  xlsxSheetWidth,
	}))
	L.SetField(smt, "__tostring", L.NewFunction(func(L *lua.LState) int {
		s := xlsxCheckSheet(L, 1)
		L.Push(lua.LString(fmt.Sprintf("xlsx.sheet(%q, rows=%d)", s.name, s.rows)))
		return 1
	}))
}

func xlsxCheckBook(L *lua.LState, n int) *xlsxBook {
	if b, ok := L.CheckUserData(n).Value.(*xlsxBook); ok {
		return b
	}
	L.ArgError(n, "xlsx book expected")
	return nil
}

func xlsxCheckSheet(L *lua.LState, n int) *xlsxSheet {
	if s, ok := L.CheckUserData(n).Value.(*xlsxSheet); ok {
		return s
	}
	L.ArgError(n, "xlsx sheet expected")
	return nil
}

// xlsxNew: xlsx.new() -> book
func xlsxNew(L *lua.LState) int {
	ud := L.NewUserData()
	ud.Value = &xlsxBook{f: excelize.NewFile(), byName: map[string]*xlsxSheet{}}
	L.SetMetatable(ud, L.GetTypeMetatable(xlsxBookTypeName))
	L.Push(ud)
	return 1
}

// xlsxBookSheet: book:sheet(name) -> sheet. The first sheet takes the place
// of the empty "Sheet1" a new workbook has; later ones are added after it.
func xlsxBookSheet(L *lua.LState, x *xlsxModule) int {
	b := xlsxCheckBook(L, 1)
	name := L.CheckString(2)
	s, ok := b.byName[strings.ToLower(name)]
	if !ok {
		if msg := xlsxSheetNameError(name); msg != "" {
			raiseKind(L, kindInvalid, "xlsx book:sheet: sheet name %q: %s", name, msg)
		}
		x.charge(L, "xlsx book:sheet", 4096) // an empty worksheet model
		var err error
		if len(b.sheets) == 0 {
			err = b.f.SetSheetName("Sheet1", name)
		} else {
			_, err = b.f.NewSheet(name)
		}
		if err != nil {
			raiseKind(L, kindInvalid, "xlsx book:sheet: sheet name %q: %v", name, err)
		}
		s = &xlsxSheet{book: b, name: name}
		b.sheets = append(b.sheets, s)
		b.byName[strings.ToLower(name)] = s
	}
	ud := L.NewUserData()
	ud.Value = s
	L.SetMetatable(ud, L.GetTypeMetatable(xlsxSheetTypeName))
	L.Push(ud)
	return 1
}

// xlsxSheetNameError returns why Excel would refuse a sheet name, or "".
func xlsxSheetNameError(name string) string {
	switch {
	case strings.TrimSpace(name) == "":
		return "a sheet needs a name"
	case utf8.RuneCountInString(name) > excelize.MaxSheetNameLength:
		return fmt.Sprintf("longer than Excel's %d characters", excelize.MaxSheetNameLength)
	case strings.ContainsAny(name, `:\/?*[]`):
		return `Excel forbids the characters : \ / ? * [ ]`
	case strings.HasPrefix(name, "'") || strings.HasSuffix(name, "'"):
		return "Excel forbids a ' at the start or end"
	case !utf8.ValidString(name):
		return "not valid UTF-8"
	}
	return ""
}

// xlsxCell is one converted cell value: nil for an empty cell, or a
// float64, string or bool.
type xlsxCell = any

// xlsxSheetAppend: sheet:append(row [, {style = "header"}]) and
// sheet:header(row). A header row is bold and filled; the first header of
// a sheet is also frozen (it stays in view when scrolling) and gets the
// autofilter, which covers the rows below it.
func xlsxSheetAppend(L *lua.LState, x *xlsxModule, header bool) int {
	s := xlsxCheckSheet(L, 1)
	fn := "xlsx sheet:append"
	if header {
		fn = "xlsx sheet:header"
	}
	row := L.CheckTable(2)
	if header && L.GetTop() >= 3 {
		L.ArgError(3, "sheet:header takes no options")
	}
	if opts, ok := L.Get(3).(*lua.LTable); ok {
		var bad string
		opts.ForEach(func(k, v lua.LValue) {
			switch {
			case k == lua.LString("style") && v == lua.LString("header"):
				header = true
			case k == lua.LString("style"):
				bad = fmt.Sprintf("style %q: the only row style is \"header\"", v.String())
			default:
				bad = fmt.Sprintf("unknown option %s", k.String())
			}
		})
		if bad != "" {
			raiseKind(L, kindInvalid, "%s: %s", fn, bad)
		}
	} else if L.GetTop() >= 3 && L.Get(3) != lua.LNil {
		L.ArgError(3, "options table expected")
	}

	cells, msg := xlsxRow(row)
	if msg != "" {
		raiseKind(L, kindInvalid, "%s: sheet %q row %d: %s", fn, s.name, s.rows+1, msg)
	}
	if s.rows >= excelize.TotalRows {
		raiseKind(L, kindInvalid, "%s: sheet %q is full: Excel allows %d rows", fn, s.name, excelize.TotalRows)
	}
	cost := int64(0)
	for _, c := range cells {
		if c != nil {
			cost += xlsxCellCost
		}
		if str, ok := c.(string); ok {
			cost += int64(len(str))
		}
	}
	x.charge(L, fn, cost)

	b := s.book
	r := s.rows + 1
	for i, c := range cells {
		if c == nil {
			continue
		}
		ref, err := excelize.CoordinatesToCellName(i+1, r)
		if err == nil {
			switch v := c.(type) {
			case float64:
				err = b.f.SetCellFloat(s.name, ref, v, -1, 64)
			case string:
				err = b.f.SetCellStr(s.name, ref, v)
			case bool:
				err = b.f.SetCellBool(s.name, ref, v)
			}
		}
		if err != nil {
			L.RaiseError("%s: sheet %q row %d column %d: %v", fn, s.name, r, i+1, err)
		}
		s.fit(i, c, header)
	}
	if header && len(cells) > 0 {
		if err := s.styleHeader(r, len(cells)); err != nil {
			L.RaiseError("%s: sheet %q row %d: %v", fn, s.name, r, err)
		}
	}
	s.rows = r
	return 0
}

// xlsxRow converts a Lua row to cells, or returns why it cannot. Holes are
// empty cells, so {"a", nil, 3} has three columns.
func xlsxRow(t *lua.LTable) ([]xlsxCell, string) {
	n := 0
	var bad string
	t.ForEach(func(k, _ lua.LValue) {
		num, ok := k.(lua.LNumber)
		if !ok || num < 1 || num != lua.LNumber(math.Trunc(float64(num))) {
			if bad == "" {
				bad = fmt.Sprintf("key %s: a row is a list of cells", k.String())
			}
			return
		}
		if num > excelize.MaxColumns {
			if bad == "" {
				bad = fmt.Sprintf("column %v is past Excel's %d columns", num, excelize.MaxColumns)
			}
			return
		}
		n = max(n, int(num))
	})
	if bad != "" {
		return nil, bad
	}
	cells := make([]xlsxCell, n)
	for i := range n {
		switch v := t.RawGetInt(i + 1).(type) {
		case lua.LNumber:
			f := float64(v)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Sprintf("column %d: %v is not a number Excel can store", i+1, f)
			}
			cells[i] = f
		case lua.LString:
			str := string(v)
			if !utf8.ValidString(str) {
				return nil, fmt.Sprintf("column %d: text is not valid UTF-8", i+1)
			}
			if xlsxTextLen(str) > excelize.TotalCellChars {
				return nil, fmt.Sprintf("column %d: text longer than Excel's %d characters a cell", i+1, excelize.TotalCellChars)
			}
			cells[i] = str
		case lua.LBool:
			cells[i] = bool(v)
		case *lua.LNilType, *lua.LUserData:
			// Empty: nil, and the null sentinels of json and sql (userdata).
		default:
			return nil, fmt.Sprintf("column %d: a %s cannot be a cell (give a number, string, boolean or nil)", i+1, v.Type())
		}
	}
	return cells, ""
}

// xlsxTextLen counts text as Excel does: in UTF-16 code units.
func xlsxTextLen(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// fit records the width column i needs for cell c.
func (s *xlsxSheet) fit(i int, c xlsxCell, header bool) {
	var w int
	switch v := c.(type) {
	case float64:
		w = len(strconv.FormatFloat(v, 'g', -1, 64))
	case string:
		// The widest line of the text.
		for line := range strings.SplitSeq(v, "\n") {
			w = max(w, utf8.RuneCountInString(line))
		}
	case bool:
		w = 5
	}
	if header {
		w += 3 // bold text and the autofilter button
	}
	for len(s.widths) <= i {
		s.widths = append(s.widths, 0)
	}
	s.widths[i] = max(s.widths[i], w)
}

// styleHeader makes row r's first n cells a header: bold on a light fill
// with a rule below. The first header row of the sheet is also frozen and
// carries the autofilter.
func (s *xlsxSheet) styleHeader(r, n int) error {
	b := s.book
	if b.header == 0 {
		id, err := b.f.NewStyle(&excelize.Style{
			Font:   &excelize.Font{Bold: true},
			Fill:   excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"D9E1F2"}},
			Border: []excelize.Border{{Type: "bottom", Color: "8EA9DB", Style: 1}},
		})
		if err != nil {
			return fmt.Errorf("create the header style: %w", err)
		}
		b.header = id
	}
	first, _ := excelize.CoordinatesToCellName(1, r)
	last, _ := excelize.CoordinatesToCellName(n, r)
	if err := b.f.SetCellStyle(s.name, first, last, b.header); err != nil {
		return fmt.Errorf("style the header: %w", err)
	}
	if s.headerRow != 0 {
		return nil
	}
	below, _ := excelize.CoordinatesToCellName(1, r+1)
	err := b.f.SetPanes(s.name, &excelize.Panes{Freeze: true, YSplit: r, TopLeftCell: below, ActivePane: "bottomLeft",
		Selection: []excelize.Selection{{SQRef: below, ActiveCell: below, Pane: "bottomLeft"}}})
	if err != nil {
		return fmt.Errorf("freeze the header: %w", err)
	}
	s.headerRow, s.headerCols = r, n
	return nil
}

// xlsxSheetWidth: sheet:width(col, characters). col is a number (1 is A)
// or a column name ("B"); the width is 0..255 characters, 0 meaning fit to
// the content again.
func xlsxSheetWidth(L *lua.LState) int {
	s := xlsxCheckSheet(L, 1)
	var col int
	switch v := L.Get(2).(type) {
	case lua.LNumber:
		col = int(v)
		if lua.LNumber(col) != v || col < 1 || col > excelize.MaxColumns {
			raiseKind(L, kindInvalid, "xlsx sheet:width: column %v: want 1..%d or a name like \"B\"", v, excelize.MaxColumns)
		}
	case lua.LString:
		n, err := excelize.ColumnNameToNumber(string(v))
		if err != nil {
			raiseKind(L, kindInvalid, "xlsx sheet:width: column %q: %v", string(v), err)
		}
		col = n
	default:
		L.ArgError(2, "column number or name expected")
	}
	w := float64(L.CheckNumber(3))
	if math.IsNaN(w) || w < 0 || w > excelize.MaxColumnWidth {
		raiseKind(L, kindInvalid, "xlsx sheet:width: width %v: want 0..%d characters", w, excelize.MaxColumnWidth)
	}
	for len(s.fixed) < col {
		s.fixed = append(s.fixed, 0)
	}
	s.fixed[col-1] = w
	return 0
}

// xlsxBookBytes: book:bytes() -> the .xlsx file as a string. The book
// stays usable: append more and call bytes() again.
func xlsxBookBytes(L *lua.LState) int {
	b := xlsxCheckBook(L, 1)
	checkRun(L) // writing is not interrupted midway: start only in a live run
	for _, s := range b.sheets {
		if err := s.finish(); err != nil {
			L.RaiseError("xlsx book:bytes: sheet %q: %v", s.name, err)
		}
	}
	buf, err := b.f.WriteToBuffer()
	if err != nil {
		L.RaiseError("xlsx book:bytes: %v", err)
	}
	checkRun(L)
	L.Push(lua.LString(buf.Bytes()))
	return 1
}

// finish sets the column widths and the autofilter, which depend on all
// the rows written so far.
func (s *xlsxSheet) finish() error {
	f := s.book.f
	cols := max(len(s.widths), len(s.fixed))
	for i := range cols {
		w := 0.0
		if i < len(s.fixed) {
			w = s.fixed[i]
		}
		if w == 0 {
			if i >= len(s.widths) {
				continue
			}
			w = float64(min(max(s.widths[i]+2, xlsxMinWidth), xlsxMaxWidth))
		}
		name, err := excelize.ColumnNumberToName(i + 1)
		if err != nil {
			return err
		}
		if err := f.SetColWidth(s.name, name, name, w); err != nil {
			return fmt.Errorf("set the width of column %s: %w", name, err)
		}
	}
	if s.headerRow != 0 {
		first, _ := excelize.CoordinatesToCellName(1, s.headerRow)
		last, _ := excelize.CoordinatesToCellName(s.headerCols, max(s.rows, s.headerRow))
		if err := f.AutoFilter(s.name, first+":"+last, nil); err != nil {
			return fmt.Errorf("set the autofilter: %w", err)
		}
	}
	return nil
}
