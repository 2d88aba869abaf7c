package luabind

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCSVEncode(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"lists", `{{"a", "b"}, {1, 2.5}}`, "a,b\n1,2.5\n"},
		{"quoting", `{{"x,y", 'say "hi"', "multi\nline", " lead"}}`, "\"x,y\",\"say \"\"hi\"\"\",\"multi\nline\",\" lead\"\n"},
		{"keyed rows derive sorted header", `{{host = "mx1", ok = true}, {host = "mx2", ok = false, note = "slow"}}`,
			"host,note,ok\nmx1,,true\nmx2,slow,false\n"},
		{"explicit header orders keyed rows", `{{host = "mx1", ok = true}}, {header = {"ok", "host"}}`, "ok,host\ntrue,mx1\n"},
		{"header before lists", `{{1, 2}}, {header = {"a", "b"}}`, "a,b\n1,2\n"},
		{"null and nil are empty", `{{json.null, "x"}}`, ",x\n"},
		{"tab separated with crlf", `{{"a", "b"}}, {comma = "\t", crlf = true}`, "a\tb\r\n"},
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `csv = require("csv") json = require("json")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := evalString(t, L, "return csv.encode("+tc.expr+")"); got != tc.want {
				t.Errorf("csv.encode(%s) = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
}

func TestCSVParseRoundTrip(t *testing.T) {
	L := newTestState(t, Options{})
	src := `
		local csv = require("csv")
		local rows = {{"plain", "x,y"}, {'q"uote', "new\nline"}, {"", " spaced "}}
		local back = csv.parse(csv.encode(rows))
		for i, row in ipairs(rows) do
			for j, v in ipairs(row) do
				if back[i][j] ~= v then error(("row %d col %d: %q ~= %q"):format(i, j, back[i][j], v)) end
			end
		end
		return #back`
	out, err := evalLua(L, src)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].String() != "3" {
		t.Errorf("rows after round trip = %v, want 3", out[0])
	}
}

func TestCSVParseErrors(t *testing.T) {
	tests := []struct {
		name, doc, opts, want string
	}{
		{"ragged record", "a,b\n1,2\n3\n", `{}`, "csv.parse: record on line 3: wrong number of fields"},
		{"bare quote", "a,b\n1,x\"y\n", `{}`, "csv.parse: parse error on line 2, column 4: bare \" in non-quoted-field"},
		{"duplicate header", "a,a\n1,2\n", `{header = true}`, `csv.parse: header on line 1: duplicate column "a"`},
		{"empty header name", "a,\n1,2\n", `{header = true}`, "csv.parse: header on line 1: column 2 has no name"},
		{"bad comma", "a", `{comma = ",,"}`, "comma must be a single character"},
		{"quote as comma", "a", `{comma = '"'}`, "comma cannot be"},
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `csv = require("csv")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L.SetGlobal("doc", luaString(tc.doc))
			_, err := evalLua(L, "return csv.parse(doc, "+tc.opts+")")
			if msg := luaErrorMessage(err); !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

func TestCSVRead(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hosts.csv"), []byte("host;status\n# staging skipped\nmx1;ok\nmx2;down\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	L := newTestState(t, Options{BaseDir: dir})
	got := evalString(t, L, `
		local csv = require("csv")
		local rows, header = csv.read("hosts.csv", {header = true, comma = ";", comment = "#"})
		local out = {}
		for _, r in ipairs(rows) do out[#out + 1] = r.host .. "=" .. r.status end
		return table.concat(header, "|") .. " " .. table.concat(out, ",")`)
	if want := "host|status mx1=ok,mx2=down"; got != want {
		t.Errorf("csv.read = %q, want %q", got, want)
	}

	_, err := evalLua(L, `return require("csv").read("missing.csv")`)
	want := "csv.read: open " + filepath.Join(dir, "missing.csv")
	if msg := luaErrorMessage(err); !strings.Contains(msg, want) {
		t.Errorf("error = %q, want it to contain %q", msg, want)
	}
}

func TestCSVLuaFile(t *testing.T) {
	runLuaTestFile(t, newTestState(t, Options{}), "testdata/toolbox_csv.lua")
}
