package luabind

import (
	"strings"
	"testing"
)

func TestJSONEncode(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"string", `"hi"`, `"hi"`},
		{"integer", `42`, `42`},
		{"negative zero", `-0`, `0`},
		{"fraction", `1.5`, `1.5`},
		{"large", `1e300`, `1e+300`},
		{"2^53 as integer", `2^53`, `9007199254740992`},
		{"1e20 as integer", `1e20`, `100000000000000000000`},
		{"1e21 as exponent", `1e21`, `1e+21`},
		{"booleans", `{true, false}`, `[true,false]`},
		{"null", `json.null`, `null`},
		{"null in array keeps length", `{1, json.null, 3}`, `[1,null,3]`},
		{"array", `{1, 2, 3}`, `[1,2,3]`},
		{"empty table is an array", `{}`, `[]`},
		{"marked object", `json.object({})`, `{}`},
		{"marked array", `json.array({})`, `[]`},
		{"marked array with hole", `json.array({[1] = 1, [3] = 3})`, `[1,null,3]`},
		{"object keys sorted", `{b = 1, a = 2, c = {z = 1, y = 2}}`, `{"a":2,"b":1,"c":{"y":2,"z":1}}`},
		{"mixed keys become object", `{1, 2, x = 3}`, `{"1":1,"2":2,"x":3}`},
		{"sparse array becomes object", `{[1] = "a", [3] = "c"}`, `{"1":"a","3":"c"}`},
		{"html characters kept", `"<a href='x'>&</a>"`, `"<a href='x'>&</a>"`},
		{"escapes", "\"q\\\"b\\\\n\\nt\\tc\\1\"", `"q\"b\\n\nt\tc\u0001"`},
		{"invalid utf-8 replaced", `"a\255b"`, `"a\ufffdb"`},
		{"line separator escaped", "\"\\226\\128\\168\"", `"\u2028"`},
		{"utf-8 kept", `"héllo 你好"`, `"héllo 你好"`},
		{"shared subtable is not a cycle", `(function() local s = {1} return {a = s, b = s} end)()`, `{"a":[1],"b":[1]}`},
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `json = require("json")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := evalString(t, L, "return json.encode("+tc.expr+")")
			if got != tc.want {
				t.Errorf("json.encode(%s) = %s, want %s", tc.expr, got, tc.want)
			}
		})
	}
}

func TestJSONEncodeIndent(t *testing.T) {
	L := newTestState(t, Options{})
	got := evalString(t, L, `return require("json").encode({b = {1, 2}, a = "x"}, {indent = 2})`)
	want := "{\n  \"a\": \"x\",\n  \"b\": [\n    1,\n    2\n  ]\n}"
	if got != want {
		t.Errorf("indented = %q, want %q", got, want)
	}
}

func TestJSONEncodeErrors(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"nan", `0/0`, "json.encode: $: cannot encode NaN"},
		{"inf", `{x = {1/0}}`, "json.encode: $.x[1]: cannot encode +Inf"},
		{"function", `{f = print}`, "json.encode: $.f: cannot encode function"},
		{"cycle", `(function() local t = {} t.self = t return t end)()`, "json.encode: $.self: cycle detected"},
		{"boolean key", `{[true] = 1}`, "json.encode: $: unsupported boolean key"},
		{"array marker with string key", `json.array({1, x = 2})`, "json.encode: $: table marked as array has non-integer keys"},
		{"too deep", `(function() local t = {} for i = 1, 300 do t = {t} end return t end)()`, "nesting deeper than 200 levels"},
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `json = require("json")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := evalLua(L, "return json.encode("+tc.expr+")")
			if msg := luaErrorMessage(err); !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	docs := []string{
		`{"a":[1,2,{"b":null}],"c":"x","d":true}`,
		`[]`,
		`{}`,
		`{"empty_list":[],"empty_obj":{},"n":-1.25}`,
		`[null,null]`,
		`"just a string"`,
		`12345678`,
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `json = require("json")`); err != nil {
		t.Fatal(err)
	}
	for _, doc := range docs {
		t.Run(doc, func(t *testing.T) {
			L.SetGlobal("doc", luaString(doc))
			if got := evalString(t, L, "return json.encode(json.decode(doc))"); got != doc {
				t.Errorf("round trip = %s, want %s", got, doc)
			}
		})
	}
}

func TestJSONDecodeErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"syntax error has line and column", "{\n  \"a\": 1,\n  \"b\": x\n}", "json.decode: line 3, column 8: invalid character 'x'"},
		{"trailing data", `{"a":1} {"b":2}`, "unexpected data after the top-level value"},
		{"empty", ``, "json.decode: empty input"},
		{"truncated", `{"a": [1, 2`, "json.decode: unexpected end of input"},
		{"out of range", `1e400`, "number 1e400 out of range"},
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `json = require("json")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L.SetGlobal("doc", luaString(tc.doc))
			_, err := evalLua(L, "return json.decode(doc)")
			if msg := luaErrorMessage(err); !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

func TestJSONLuaFile(t *testing.T) {
	runLuaTestFile(t, newTestState(t, Options{}), "testdata/toolbox_json.lua")
}
