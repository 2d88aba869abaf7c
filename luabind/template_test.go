package luabind

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestTemplateRender(t *testing.T) {
	tests := []struct {
		name, tmpl, data, opts, want string
	}{
		{"field", `Hello {{.name}}!`, `{name = "ops"}`, `nil`, "Hello ops!"},
		{"range", `{{range .rows}}{{.host}}={{.n}};{{end}}`, `{rows = {{host = "a", n = 1}, {host = "b", n = 2.5}}}`, `nil`, "a=1;b=2.5;"},
		{"integral numbers print plainly", `{{.n}}`, `{n = 3000000}`, `nil`, "3000000"},
		{"text does not escape", `{{.v}}`, `{v = "<b>&</b>"}`, `nil`, "<b>&</b>"},
		{"html escapes values", `<p>{{.v}}</p>`, `{v = "<script>x</script>"}`, `{html = true}`, "<p>&lt;script&gt;x&lt;/script&gt;</p>"},
		{"html escapes attributes", `<a title="{{.v}}">`, `{v = "\"q\""}`, `{html = true}`, `<a title="&#34;q&#34;">`},
		{"missing key default", `[{{.nope}}]`, `{}`, `nil`, "[<no value>]"},
		{"or gives a fallback", `{{or .cc "nobody"}}`, `{}`, `nil`, "nobody"},
		{"json.null is empty", `{{if .x}}set{{else}}unset{{end}}`, `{x = json.null}`, `nil`, "unset"},
		{"join upper lower", `{{join .tags ", "}} {{upper .env}} {{lower "ABC"}}`, `{tags = {"a", "b"}, env = "prod"}`, `nil`, "a, b PROD abc"},
		{"len of list", `{{len .rows}}`, `{rows = {1, 2, 3}}`, `nil`, "3"},
		{"top-level list", `{{range .}}{{.}}{{end}}`, `{"x", "y"}`, `nil`, "xy"},
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `template = require("template") json = require("json")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L.SetGlobal("tmpl", luaString(tc.tmpl))
			got := evalString(t, L, "return template.render(tmpl, "+tc.data+", "+tc.opts+")")
			if got != tc.want {
				t.Errorf("render(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name, tmpl, data, opts, want string
	}{
		{"parse error has line", "line one\n{{.a}\n", `{}`, `{name = "report"}`, `template.render: template: report:2: bad character U+007D '}'`},
		{"unknown function", "{{nope .a}}", `{}`, `nil`, `template.render: template: template:1: function "nope" not defined`},
		{"strict missing key", "{{.a}}\n{{.b}}", `{a = 1}`, `{strict = true}`, `template.render: template: template:2:2: executing "template" at <.b>: map has no entry for key "b"`},
		{"function in data", "x", `{f = print}`, `nil`, "$.f: cannot convert function"},
		{"cycle in data", "x", `(function() local t = {} t.t = t return t end)()`, `nil`, "$.t: cycle detected"},
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `template = require("template")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			L.SetGlobal("tmpl", luaString(tc.tmpl))
			_, err := evalLua(L, "return template.render(tmpl, "+tc.data+", "+tc.opts+")")
			if msg := luaErrorMessage(err); !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

func TestTemplateRenderFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"templates/report.html": "<h1>{{.title}}</h1>",
		"templates/broken.txt":  "ok\n{{if}}\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	L := newTestState(t, Options{BaseDir: dir})
	got := evalString(t, L, `return require("template").render_file("templates/report.html", {title = "A & B"}, {html = true})`)
	if want := "<h1>A &amp; B</h1>"; got != want {
		t.Errorf("render_file = %q, want %q", got, want)
	}
	_, err := evalLua(L, `return require("template").render_file("templates/broken.txt", {})`)
	want := "template.render_file: template: templates/broken.txt:2: missing value for if"
	if msg := luaErrorMessage(err); !strings.Contains(msg, want) {
		t.Errorf("error = %q, want it to contain %q", msg, want)
	}
}

func TestTemplateEscapeHTML(t *testing.T) {
	L := newTestState(t, Options{})
	got := evalString(t, L, `return require("template").escape_html([[<a href="x">'&'</a>]])`)
	if want := "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;"; got != want {
		t.Errorf("escape_html = %q, want %q", got, want)
	}
}

func TestToGo(t *testing.T) {
	tests := []struct {
		expr string
		want any
	}{
		{`nil`, nil},
		{`"s"`, "s"},
		{`true`, true},
		{`3`, int64(3)},
		{`2.5`, 2.5},
		{`1e300`, 1e300},
		{`{}`, map[string]any{}},
		{`json.array({})`, []any{}},
		{`{1, "a"}`, []any{int64(1), "a"}},
		{`{a = {b = json.null}, [2] = "two"}`, map[string]any{"a": map[string]any{"b": nil}, "2": "two"}},
		{`json.object({})`, map[string]any{}},
	}
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `json = require("json")`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			out, err := evalLua(L, "return "+tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ToGo(out[0])
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ToGo(%s) = %#v, want %#v", tc.expr, got, tc.want)
			}
		})
	}
}

func TestTemplateLuaFile(t *testing.T) {
	runLuaTestFile(t, newTestState(t, Options{}), "testdata/toolbox_template.lua")
}
