package luabind

import (
	"context"
	"errors"
	"fmt"
	"math"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/chart"
)

// chartFields are the fields chart.line{}, chart.bar{} and chart.pie{} accept.
var chartFields = map[string]bool{
	"title": true, "x": true, "series": true, "width": true, "height": true,
	"y_label": true, "theme": true, "stacked": true, "format": true,
}

// chartSeriesFields are the fields of one entry of series.
var chartSeriesFields = map[string]bool{"name": true, "values": true}

// openChart is the loader of the chart module:
//
//	chart.line{ title = "Mails per day",
//	            x = { "Mon", "Tue" },                          -- labels: strings or numbers
//	            series = { { name = "sent", values = { 120, 132 } } },
//	            width = 800, height = 400,                     -- pixels, 100..4000
//	            y_label = "mails", theme = "light" | "dark",
//	            stacked = false, format = "png" | "svg" }  -> bytes (a string)
//	chart.bar{ ... }  -> bytes                             -- the same fields
//	chart.pie{ title =, x = { slice names }, series = { { values = {...} } } } -> bytes
//
// The bytes go to m:attach{ content = png, filename = "chart.png",
// content_type = "image/png", cid = "chart" } for <img src="cid:chart">.
// Bad input raises {kind = "invalid", message = "chart.line: series[2].values:
// 3 values for 4 x labels ..."}; a chart whose raster (4 bytes a pixel) would
// exceed the memory limit raises {kind = "memory"}.
func openChart(o *Options) lua.LGFunction {
	return func(L *lua.LState) int {
		mod := L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"line": func(L *lua.LState) int { return chartRender(L, o, chart.Line) },
			"bar":  func(L *lua.LState) int { return chartRender(L, o, chart.Bar) },
			"pie":  func(L *lua.LState) int { return chartRender(L, o, chart.Pie) },
		})
		L.Push(mod)
		return 1
	}
}

// chartRender: chart.<kind>{...} -> bytes
func chartRender(L *lua.LState, o *Options, kind chart.Kind) int {
	fn := "chart." + string(kind)
	spec, msg := chartSpec(L.CheckTable(1), kind)
	if msg != "" {
		raiseKind(L, kindInvalid, "%s: %s", fn, msg)
	}
	var ie *chart.InvalidError
	if err := spec.Check(); errors.As(err, &ie) {
		if ie.Field == "" {
			raiseKind(L, kindInvalid, "%s: %s", fn, ie.Reason)
		}
		raiseKind(L, kindInvalid, "%s: %s: %s", fn, ie.Field, ie.Reason)
	}
	w, h := spec.Size()
	refuse(L, memoryLimit(o), fn, float64(w)*float64(h)*4)
	checkRun(L)
	ctx := L.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	out, err := chart.Render(ctx, spec)
	if err != nil {
		checkRun(L) // the run ended while drawing: raise its error
		L.RaiseError("%s: %v", fn, err)
	}
	L.Push(lua.LString(out))
	return 1
}

// chartSpec reads the table of chart.<kind>{...} into a Spec, or returns a
// message naming the field at fault. Bounds and lengths are left to
// Spec.Check.
func chartSpec(t *lua.LTable, kind chart.Kind) (chart.Spec, string) {
	spec := chart.Spec{Kind: kind}
	if msg := mailUnknownKeys(t, chartFields); msg != "" {
		return spec, msg
	}
	str := func(name string, dst *string) string {
		switch v := t.RawGetString(name).(type) {
		case *lua.LNilType:
		case lua.LString:
			*dst = string(v)
		default:
			return fmt.Sprintf("%s: string expected, got %s", name, v.Type())
		}
		return ""
	}
	size := func(name string, dst *int) string {
		switch v := t.RawGetString(name).(type) {
		case *lua.LNilType:
		case lua.LNumber:
			f := float64(v)
			if f != math.Trunc(f) || math.Abs(f) > 1e9 {
				return fmt.Sprintf("%s: whole number of pixels expected, got %v", name, v)
			}
			if f == 0 {
				return fmt.Sprintf("%s: 0 pixels is outside %d..%d", name, chart.MinSize, chart.MaxSize)
			}
			*dst = int(f)
		default:
			return fmt.Sprintf("%s: number expected, got %s", name, v.Type())
		}
		return ""
	}
	for _, msg := range []string{
		str("title", &spec.Title), str("y_label", &spec.YLabel), str("theme", &spec.Theme),
		str("format", &spec.Format), size("width", &spec.Width), size("height", &spec.Height),
	} {
		if msg != "" {
			return spec, msg
		}
	}
	switch v := t.RawGetString("stacked").(type) {
	case *lua.LNilType:
	case lua.LBool:
		spec.Stacked = bool(v)
	default:
		return spec, "stacked: boolean expected, got " + v.Type().String()
	}

	xs, ok := t.RawGetString("x").(*lua.LTable)
	if !ok {
		return spec, "x: list of labels expected, got " + t.RawGetString("x").Type().String()
	}
	n := luaListLen(xs)
	if n < 0 {
		return spec, "x: list of labels expected (keys 1..n, no holes)"
	}
	if n > chart.MaxPoints {
		return spec, fmt.Sprintf("x: %d labels is more than the %d a chart can show", n, chart.MaxPoints)
	}
	spec.X = make([]string, n)
	for i := range n {
		switch v := xs.RawGetInt(i + 1).(type) {
		case lua.LString, lua.LNumber:
			spec.X[i] = v.String()
		default:
			return spec, fmt.Sprintf("x[%d]: string or number expected, got %s", i+1, v.Type())
		}
	}

	ss, ok := t.RawGetString("series").(*lua.LTable)
	if !ok {
		return spec, "series: list of {name =, values =} expected, got " + t.RawGetString("series").Type().String()
	}
	n = luaListLen(ss)
	if n < 0 {
		return spec, "series: list of {name =, values =} expected (keys 1..n, no holes)"
	}
	if n > chart.MaxSeries {
		return spec, fmt.Sprintf("series: %d series is more than the %d a chart can show", n, chart.MaxSeries)
	}
	for i := range n {
		field := fmt.Sprintf("series[%d]", i+1)
		st, ok := ss.RawGetInt(i + 1).(*lua.LTable)
		if !ok {
			return spec, fmt.Sprintf("%s: table {name =, values =} expected, got %s", field, ss.RawGetInt(i+1).Type())
		}
		if msg := mailUnknownKeys(st, chartSeriesFields); msg != "" {
			return spec, field + ": " + msg
		}
		var sr chart.Series
		switch v := st.RawGetString("name").(type) {
		case *lua.LNilType:
		case lua.LString, lua.LNumber:
			sr.Name = v.String()
		default:
			return spec, fmt.Sprintf("%s.name: string expected, got %s", field, v.Type())
		}
		vt, ok := st.RawGetString("values").(*lua.LTable)
		if !ok {
			return spec, fmt.Sprintf("%s.values: list of numbers expected, got %s", field, st.RawGetString("values").Type())
		}
		m := luaListLen(vt)
		if m < 0 {
			return spec, field + ".values: list of numbers expected (keys 1..n, no holes: use 0 for a missing value)"
		}
		if m > chart.MaxPoints {
			return spec, fmt.Sprintf("%s.values: %d values is more than the %d a chart can show", field, m, chart.MaxPoints)
		}
		sr.Values = make([]float64, m)
		for j := range m {
			num, ok := vt.RawGetInt(j + 1).(lua.LNumber)
			if !ok {
				return spec, fmt.Sprintf("%s.values[%d]: number expected, got %s (use tonumber for text)",
					field, j+1, vt.RawGetInt(j+1).Type())
			}
			sr.Values[j] = float64(num)
		}
		spec.Series = append(spec.Series, sr)
	}
	return spec, ""
}
