package luabind

import (
	"bytes"
	"errors"
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
	limit := memoryLimit(stateOptions(L))
	var big *resultTooLarge
	data, err := toGo(L.Get(2), "$", 0, map[*lua.LTable]bool{}, &budget{max: limit})
	if errors.As(err, &big) {
		refuse(L, limit, fname, float64(big.size))
	}
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
	w := &limitedWriter{L: L, max: limit, next: chunkBytes}
	err = renderTemplate(w, name, text, data, html, strict)
	if errors.As(err, &big) {
		refuse(L, limit, fname, float64(big.size))
	}
	if err != nil {
		checkRun(L) // a write stopped by the run's end raises that
		L.RaiseError("%s: %v", fname, err)
	}
	L.Push(lua.LString(w.buf.String()))
	return 1
}

// limitedWriter collects template output up to max bytes (0: no limit),
// failing the write once the run's context has ended.
type limitedWriter struct {
	L    *lua.LState
	buf  bytes.Buffer
	max  int64
	next int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	n := w.buf.Len() + len(p)
	if w.max > 0 && int64(n) > w.max {
		return 0, &resultTooLarge{size: n}
	}
	w.buf.Write(p)
	if n >= w.next {
		w.next = n + chunkBytes
		if ctx := w.L.Context(); ctx != nil && ctx.Err() != nil {
			return len(p), ctx.Err()
		}
	}
	return len(p), nil
}

// budget bounds the Go data toGo builds: a table shared by many others is
// converted once per reference.
type budget struct {
	max, used int64 // max 0: no limit
}

func (b *budget) add(n int64) error {
	if b == nil || b.max <= 0 {
		return nil
	}
	b.used += n
	if b.used > b.max {
		return &resultTooLarge{size: int(min(b.used, 1<<62))}
	}
	return nil
}

// RenderTemplate executes a Go template over data: text/template, or
// html/template when html is set. With strict, a missing map key is an error.
// The template module uses it; hosts can call it with data from ToGo.
func RenderTemplate(name, text string, data any, html, strict bool) (string, error) {
	var buf bytes.Buffer
	if err := renderTemplate(&buf, name, text, data, html, strict); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// renderTemplate is RenderTemplate writing to w.
func renderTemplate(w io.Writer, name, text string, data any, html, strict bool) error {
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
			return err
		}
		tmpl = t
	} else {
		t, err := texttemplate.New(name).Funcs(templateFuncs).Option(missing).Parse(text)
		if err != nil {
			return err
		}
		tmpl = t
	}
	return tmpl.Execute(w, data)
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
	return toGo(v, "$", 0, map[*lua.LTable]bool{}, nil)
}

// toGo is ToGo; b, when not nil, bounds the size of the result.
func toGo(v lua.LValue, path string, depth int, visiting map[*lua.LTable]bool, b *budget) (any, error) {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil, nil
	case lua.LBool:
		return bool(x), nil
	case lua.LString:
		return string(x), b.add(16 + int64(len(x)))
	case lua.LNumber:
		return goNumber(float64(x)), b.add(16)
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
		if err := b.add(64 + 48*int64(sh.n+len(sh.keys))); err != nil {
			return nil, err
		}
		if sh.kind == shapeArray && (sh.n > 0 || isMarkedArray(x)) {
			list := make([]any, sh.n)
			for i := range list {
				e, err := toGo(x.RawGetInt(i+1), fmt.Sprintf("%s[%d]", path, i+1), depth+1, visiting, b)
				if err != nil {
					return nil, err
				}
				list[i] = e
			}
			return list, nil
		}
		m := make(map[string]any, len(sh.keys))
		for _, k := range sh.keys {
			e, err := toGo(x.RawGet(k.key), path+"."+k.name, depth+1, visiting, b)
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
