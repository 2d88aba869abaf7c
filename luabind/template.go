package luabind

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"io"
	"math"
	"strings"
	texttemplate "text/template"

	lua "github.com/yuin/gopher-lua"
)

// openTemplate returns the loader of the template module:
//
//	template.render(tmpl, data [, opts]) -> string
//	template.render_file(path, data [, opts]) -> string   -- path relative to Options.BaseDir
//	template.escape_html(s) -> string
//
// Templates use Go's text/template syntax, with data converted from Lua:
//
//	Hello {{.name}}!
//	{{range .rows}}{{.host}}: {{.status}}
//	{{end}}{{if .failed}}{{len .failed}} failed{{else}}all good{{end}}
//	{{join .tags ", "}} {{upper .env}} {{or .cc "nobody"}}
//
// Tables with keys 1..n become lists, other tables (and empty ones)
// string-keyed maps; integral numbers print without a fraction; nil and
// json.null are empty values. Beyond Go's builtins, the functions join (list,
// separator), upper and lower are available.
//
// opts:
//
//	html = true      -- use html/template: values are escaped for their HTML context
//	strict = true    -- a missing key is an error instead of "<no value>"
//	name = "report"  -- template name shown in errors (render_file uses the path)
//
// Parse and execution errors name the template and line, e.g.
// "template.render: template: report:3: function \"nope\" not defined".
func openTemplate(o *Options) lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.NewTable()
		L.SetFuncs(mod, map[string]lua.LGFunction{
			"render": func(L *lua.LState) int {
				text := L.CheckString(1)
				return templateRender(L, "template.render", "template", text)
			},
			"render_file": func(L *lua.LState) int {
				path := L.CheckString(1)
				src, err := o.files.readFile(path)
				if err != nil {
					L.RaiseError("template.render_file: %v", err)
				}
				return templateRender(L, "template.render_file", path, string(src))
			},
			"escape_html": func(L *lua.LState) int {
				L.Push(lua.LString(htmltemplate.HTMLEscapeString(L.CheckString(1))))
				return 1
			},
		})
		L.Push(mod)
		return 1
	}
}

// templateFuncs are the helpers added to Go's template builtins.
var templateFuncs = map[string]any{
	"join": func(list []any, sep string) string {
		parts := make([]string, len(list))
		for i, v := range list {
			parts[i] = fmt.Sprint(v)
		}
		return strings.Join(parts, sep)
	},
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

// templateRender renders text with the data at argument 2 and the options at
// argument 3, pushing the result.
func templateRender(L *lua.LState, fname, name, text string) int {
	data, err := ToGo(L.Get(2))
	if err != nil {
		L.ArgError(2, err.Error())
	}
	html, strict := false, false
	if opts := L.OptTable(3, nil); opts != nil {
		html = lua.LVAsBool(opts.RawGetString("html"))
		strict = lua.LVAsBool(opts.RawGetString("strict"))
		if n, ok := opts.RawGetString("name").(lua.LString); ok && fname == "template.render" {
			name = string(n)
		}
	}
	out, err := RenderTemplate(name, text, data, html, strict)
	if err != nil {
		L.RaiseError("%s: %v", fname, err)
	}
	L.Push(lua.LString(out))
	return 1
}

// RenderTemplate executes a Go template over data: text/template, or
// html/template when html is set. With strict, a missing map key is an error.
// The template module uses it; hosts can call it with data from ToGo.
func RenderTemplate(name, text string, data any, html, strict bool) (string, error) {
	missing := "missingkey=default"
	if strict {
		missing = "missingkey=error"
	}
	var tmpl interface {
		Execute(io.Writer, any) error
	}
	if html {
		t, err := htmltemplate.New(name).Funcs(templateFuncs).Option(missing).Parse(text)
		if err != nil {
			return "", err
		}
		tmpl = t
	} else {
		t, err := texttemplate.New(name).Funcs(templateFuncs).Option(missing).Parse(text)
		if err != nil {
			return "", err
		}
		tmpl = t
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// ToGo converts a Lua value to plain Go data: nil and json.null to nil,
// booleans and strings as such, integral numbers below 2^53 to int64 and
// other numbers to float64, tables to []any (keys 1..n, or json.array) or
// map[string]any (other tables, number keys formatted as strings). An empty
// unmarked table becomes an empty map, which templates can range over, test
// and look keys up in without errors (Lua cannot tell {} from an empty
// list). Functions, userdata, cycles and nesting deeper than 200 levels are
// errors.
func ToGo(v lua.LValue) (any, error) {
	return toGo(v, "$", 0, map[*lua.LTable]bool{})
}

func toGo(v lua.LValue, path string, depth int, visiting map[*lua.LTable]bool) (any, error) {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(x), nil
	case lua.LString:
		return string(x), nil
	case lua.LNumber:
		return goNumber(float64(x)), nil
	case *lua.LUserData:
		if x.Value == jsonNull {
			return nil, nil
		}
	case *lua.LTable:
		if depth >= maxNesting {
			return nil, fmt.Errorf("%s: nesting deeper than %d levels", path, maxNesting)
		}
		if visiting[x] {
			return nil, fmt.Errorf("%s: cycle detected (table contains itself)", path)
		}
		visiting[x] = true
		defer delete(visiting, x)
		sh, err := tableShape(x)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if sh.kind == shapeArray && (sh.n > 0 || isMarkedArray(x)) {
			list := make([]any, sh.n)
			for i := range list {
				e, err := toGo(x.RawGetInt(i+1), fmt.Sprintf("%s[%d]", path, i+1), depth+1, visiting)
				if err != nil {
					return nil, err
				}
				list[i] = e
			}
			return list, nil
		}
		m := make(map[string]any, len(sh.keys))
		for _, k := range sh.keys {
			e, err := toGo(x.RawGet(k.key), path+"."+k.name, depth+1, visiting)
			if err != nil {
				return nil, err
			}
			m[k.name] = e
		}
		return m, nil
	}
	return nil, fmt.Errorf("%s: cannot convert %s", path, v.Type())
}

// isMarkedArray reports whether t carries the json.array marker.
func isMarkedArray(t *lua.LTable) bool {
	mt, ok := t.Metatable.(*lua.LTable)
	return ok && mt.RawGetString(jsonTypeField) == lua.LString(shapeArray)
}

// goNumber maps a Lua number to int64 when that is exact, so templates and
// logs print "3" rather than "3" formatted as a float ("3e+06" for 3000000).
func goNumber(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	return f
}
