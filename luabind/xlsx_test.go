package luabind

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
	lua "github.com/yuin/gopher-lua"
)

// openXLSXBytes reads back what book:bytes() returned.
func openXLSXBytes(t *testing.T, b string) *excelize.File {
	t.Helper()
	f, err := excelize.OpenReader(strings.NewReader(b))
	if err != nil {
		t.Fatalf("the bytes are not an xlsx file: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestXLSXLua(t *testing.T) {
	L := newTestState(t, Options{})
	out := evalString(t, L, `
		local xlsx, json = require("xlsx"), require("json")
		local book = xlsx.new()
		local s = book:sheet("Report")
		s:header{ "host", "sent", "ok", "note" }
		s:append{ "mx1.example.com", 120, true, "fine" }
		s:append{ "mx2", 0.25, false, json.null }
		s:append{ "mx3", nil, nil, "a much longer note than any other cell of this column, so long that it is capped" }
		local h = book:sheet("Hosts")
		h:append{ "only", 1 }
		h:width("B", 30)
		book:sheet("Styled"):append({ "k", "v" }, { style = "header" })
		book:sheet("REPORT"):append{ "total", 120.25 }  -- sheet names ignore case
		s:append({ "footer", "=1+1" }, { style = "header" })
		assert(tostring(book) == 'xlsx.book("Report", "Hosts", "Styled")', tostring(book))
		assert(tostring(s) == 'xlsx.sheet("Report", rows=6)', tostring(s))
		assert(xlsx.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
		return book:bytes()`)
	f := openXLSXBytes(t, out)

	if got, want := f.GetSheetList(), []string{"Report", "Hosts", "Styled"}; !reflect.DeepEqual(got, want) {
		t.Errorf("sheets = %q, want %q", got, want)
	}
	rows, err := f.GetRows("Report")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"host", "sent", "ok", "note"},
		{"mx1.example.com", "120", "TRUE", "fine"},
		{"mx2", "0.25", "FALSE"},
		{"mx3", "", "", "a much longer note than any other cell of this column, so long that it is capped"},
		{"total", "120.25"},
		{"footer", "=1+1"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows = %q\nwant   %q", rows, want)
	}
	types := []struct {
		cell string
		want excelize.CellType

		value string
	}{
		// A number cell has no type attribute: excelize reads it as Unset
		// with a value, an empty cell as Unset without.
		{"A2", excelize.CellTypeSharedString, "mx1.example.com"}, {"B2", excelize.CellTypeUnset, "120"},
		{"C2", excelize.CellTypeBool, "1"}, {"B3", excelize.CellTypeUnset, "0.25"},
		{"D3", excelize.CellTypeUnset, ""}, {"B4", excelize.CellTypeUnset, ""},
	}
	for _, tc := range types {
		got, err := f.GetCellType("Report", tc.cell)
		if err != nil || got != tc.want {
			t.Errorf("type of %s = %v, %v; want %v", tc.cell, got, err, tc.want)
		}
		if v, _ := f.GetCellValue("Report", tc.cell, excelize.Options{RawCellValue: true}); v != tc.value {
			t.Errorf("value of %s = %q, want %q", tc.cell, v, tc.value)
		}
	}

	// Text that looks like a formula stays text: a report never runs
	// what its data says.
	if formula, err := f.GetCellFormula("Report", "B6"); err != nil || formula != "" {
		t.Errorf("B6 formula = %q, %v; want plain text", formula, err)
	}

	bold := func(cell string) bool {
		id, err := f.GetCellStyle("Report", cell)
		if err != nil {
			t.Fatal(err)
		}
		st, err := f.GetStyle(id)
		if err != nil {
			t.Fatal(err)
		}
		return st.Font != nil && st.Font.Bold && st.Fill.Pattern == 1
	}
	for cell, want := range map[string]bool{"A1": true, "D1": true, "A2": false, "A6": true} {
		if got := bold(cell); got != want {
			t.Errorf("%s bold and filled = %v, want %v", cell, got, want)
		}
	}
	panes, err := f.GetPanes("Report")
	if err != nil || !panes.Freeze || panes.YSplit != 1 || panes.TopLeftCell != "A2" {
		t.Errorf("panes = %+v, %v; want frozen below row 1", panes, err)
	}
	// append with style = "header" is header: frozen too.
	if panes, err := f.GetPanes("Styled"); err != nil || !panes.Freeze || panes.YSplit != 1 {
		t.Errorf("Styled panes = %+v, %v; want frozen below row 1", panes, err)
	}
	names := f.GetDefinedName()
	var filter string
	for _, n := range names {
		if n.Name == "_xlnm._FilterDatabase" && n.Scope == "Report" {
			filter = n.RefersTo
		}
	}
	if filter != "'Report'!$A$1:$D$6" {
		t.Errorf("autofilter = %q (defined names %+v), want the header over all rows", filter, names)
	}

	widths := map[string]float64{}
	for _, col := range []string{"A", "B", "C", "D"} {
		if widths[col], err = f.GetColWidth("Report", col); err != nil {
			t.Fatal(err)
		}
	}
	if !(widths["A"] > widths["B"] && widths["D"] == xlsxMaxWidth && widths["C"] == xlsxMinWidth) {
		t.Errorf("widths = %v: want A wider than B, D capped at %d, C at least %d", widths, xlsxMaxWidth, xlsxMinWidth)
	}
	if w, _ := f.GetColWidth("Hosts", "B"); w != 30 {
		t.Errorf("Hosts column B width = %v, want 30 from sheet:width", w)
	}
}

func TestXLSXLuaErrors(t *testing.T) {
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `xlsx = require("xlsx") book = xlsx.new() s = book:sheet("S")`); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, src, want string }{
		{"table cell", `s:append{ "a", {} }`,
			`xlsx sheet:append: sheet "S" row 1: column 2: a table cannot be a cell (give a number, string, boolean or nil)`},
		{"function cell", `s:header{ print }`,
			`xlsx sheet:header: sheet "S" row 1: column 1: a function cannot be a cell (give a number, string, boolean or nil)`},
		{"named key", `s:append{ host = "a" }`, `xlsx sheet:append: sheet "S" row 1: key host: a row is a list of cells`},
		{"past the last column", `s:append{ [16385] = 1 }`,
			`xlsx sheet:append: sheet "S" row 1: column 16385 is past Excel's 16384 columns`},
		{"infinity", `s:append{ 1/0 }`, `xlsx sheet:append: sheet "S" row 1: column 1: +Inf is not a number Excel can store`},
		{"long text", `s:append{ string.rep("x", 32768) }`,
			`xlsx sheet:append: sheet "S" row 1: column 1: text longer than Excel's 32767 characters a cell`},
		{"row style", `s:append({ 1 }, { style = "bold" })`, `xlsx sheet:append: style "bold": the only row style is "header"`},
		{"sheet name chars", `book:sheet("a/b")`, `xlsx book:sheet: sheet name "a/b": Excel forbids the characters : \ / ? * [ ]`},
		{"sheet name length", `book:sheet(string.rep("n", 32))`,
			`xlsx book:sheet: sheet name "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn": longer than Excel's 31 characters`},
		{"sheet name empty", `book:sheet("")`, `xlsx book:sheet: sheet name "": a sheet needs a name`},
		{"width column", `s:width(0, 10)`, `xlsx sheet:width: column 0: want 1..16384 or a name like "B"`},
		{"width value", `s:width("A", 256)`, `xlsx sheet:width: width 256: want 0..255 characters`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := evalLua(L, tc.src)
			if err == nil {
				t.Fatal("no error")
			}
			kind, msg := luaErrorFields(t, err)
			if kind != kindInvalid || msg != tc.want {
				t.Errorf("got {kind = %q, message = %q}\nwant {kind = %q, message = %q}", kind, msg, kindInvalid, tc.want)
			}
		})
	}
	// A refused row writes nothing: the sheet is still empty.
	if got := evalString(t, L, `return tostring(s)`); got != `xlsx.sheet("S", rows=0)` {
		t.Errorf("after the errors: %s", got)
	}
}

// TestXLSXRowLimit: the row after Excel's last one is refused.
func TestXLSXRowLimit(t *testing.T) {
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `book = require("xlsx").new() s = book:sheet("Big")`); err != nil {
		t.Fatal(err)
	}
	ud, ok := L.GetGlobal("s").(*lua.LUserData)
	if !ok {
		t.Fatal("no sheet")
	}
	// Appending a million rows through Lua takes long under -race; start
	// the sheet near its end instead.
	ud.Value.(*xlsxSheet).rows = excelize.TotalRows - 1
	if _, err := evalLua(L, `s:append{ "last" }`); err != nil {
		t.Fatalf("row %d: %v", excelize.TotalRows, err)
	}
	_, err := evalLua(L, `s:append{ "one too many" }`)
	kind, msg := luaErrorFields(t, err)
	if want := `xlsx sheet:append: sheet "Big" is full: Excel allows 1048576 rows`; kind != kindInvalid || msg != want {
		t.Errorf("got {kind = %q, message = %q}, want %q", kind, msg, want)
	}
	f := openXLSXBytes(t, evalString(t, L, `return book:bytes()`))
	if v, err := f.GetCellValue("Big", "A1048576"); err != nil || v != "last" {
		t.Errorf("A1048576 = %q, %v", v, err)
	}
}

// TestXLSXMemoryLimit: the cells of a run's workbooks count against the
// memory limit; a refused row can be caught and the book still written.
func TestXLSXMemoryLimit(t *testing.T) {
	err, _ := runLimited(t, 32<<20, 30*time.Second, `
		local book = require("xlsx").new()
		local s = book:sheet("Data")
		local row = {}
		for i = 1, 100 do row[i] = i end
		local n = 0
		local ok, err = pcall(function()
			while true do s:append(row) n = n + 1 end
		end)
		assert(not ok and err.kind == "memory" and err.func == "xlsx sheet:append", tostring(err))
		-- 32 MiB / (100 cells * 456 bytes) is about 735 rows.
		assert(n > 600 and n < 800, "rows before the limit: " .. n)
		assert(#book:bytes() > 0)
		-- The count stays full: the next row is refused too.
		s:append(row)`)
	me, ok := AsMemoryError(nil, err)
	if !ok || me.Func != "xlsx sheet:append" || me.Limit != 32<<20 {
		t.Fatalf("err = %v, want the last append refused by the memory limit", DescribeError(err))
	}
}

// TestXLSXCountPerRun: a new run starts a new count, so a state that
// builds a report on every run does not run out.
func TestXLSXCountPerRun(t *testing.T) {
	L := NewState(Options{MemoryLimit: 8 << 20})
	t.Cleanup(L.Close)
	proto, err := CompileString(`
		local book = require("xlsx").new()
		local s = book:sheet("Data")
		local row = {}
		for i = 1, 100 do row[i] = i end
		for i = 1, 150 do s:append(row) end  -- 6.8 MB of the 8 MB limit
		return #book:bytes()`, "run.lua")
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 3; run++ {
		ctx, stop := StartRun(t.Context(), L)
		err := DoProto(L, proto)
		stop()
		if err != nil {
			t.Fatalf("run %d: %s (ctx %v)", run, DescribeError(err), ctx.Err())
		}
	}
}
