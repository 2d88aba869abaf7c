package luabind

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/chart"
)

// luaErrorFields returns the kind and message of a raised error table, or
// fails the test when err is not one.
func luaErrorFields(t *testing.T, err error) (kind, message string) {
	t.Helper()
	var ae *lua.ApiError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not a Lua error", err)
	}
	tb, ok := ae.Object.(*lua.LTable)
	if !ok {
		t.Fatalf("raised %s %q, want an error table", ae.Object.Type(), ae.Object.String())
	}
	return lua.LVAsString(tb.RawGetString("kind")), lua.LVAsString(tb.RawGetString("message"))
}

func TestChartLua(t *testing.T) {
	L := newTestState(t, Options{})
	tests := []struct {
		name, expr string
		w, h       int
	}{
		{"line default size", `chart.line{ title = "Mails", x = { "Mon", "Tue", "Wed" },
			series = { { name = "sent", values = { 1, 2, 3 } }, { name = "bounced", values = { 0, 1, 0 } } } }`, 800, 400},
		{"bar stacked dark with y label", `chart.bar{ x = { 2025, 2026 }, series = { { values = { 1, 2 } }, { values = { 3, 4 } } },
			stacked = true, theme = "dark", y_label = "mails", width = 640, height = 320 }`, 640, 320},
		{"pie smallest", `chart.pie{ title = "Share", x = { "api", "web" }, series = { { values = { 3, 1 } } },
			width = 100, height = 100 }`, 100, 100},
		{"largest", `chart.bar{ x = { "a" }, series = { { values = { 1 } } }, width = 4000, height = 150 }`, 4000, 150},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := evalString(t, L, `local chart = require("chart") return `+tc.expr)
			img, err := png.Decode(strings.NewReader(out))
			if err != nil {
				t.Fatalf("result is not a PNG: %v", err)
			}
			if b := img.Bounds(); b.Dx() != tc.w || b.Dy() != tc.h {
				t.Errorf("image is %dx%d, want %dx%d", b.Dx(), b.Dy(), tc.w, tc.h)
			}
		})
	}
	svg := evalString(t, L, `return require("chart").line{ x = { "a", "b" }, series = { { values = { 1, 2 } } }, format = "svg" }`)
	if !strings.HasPrefix(svg, "<svg") {
		t.Errorf("format = \"svg\" gave %.40q", svg)
	}
}

func TestChartLuaErrors(t *testing.T) {
	L := newTestState(t, Options{})
	if _, err := evalLua(L, `chart = require("chart")`); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, expr, want string }{
		{"unknown field", `chart.line{ x = { "a" }, series = { { values = { 1 } } }, colour = "red" }`,
			`chart.line: unknown field "colour"`},
		{"x missing", `chart.line{ series = { { values = { 1 } } } }`, "chart.line: x: list of labels expected, got nil"},
		{"x empty", `chart.bar{ x = {}, series = { { values = {} } } }`,
			"chart.bar: x: no labels: a chart needs at least one x label"},
		{"x label a table", `chart.bar{ x = { "a", {} }, series = { { values = { 1, 2 } } } }`,
			"chart.bar: x[2]: string or number expected, got table"},
		{"no series", `chart.line{ x = { "a" }, series = {} }`, "chart.line: series: no series: a chart needs at least one"},
		{"series too short", `chart.line{ x = { "a", "b", "c" }, series = { { values = { 1, 2, 3 } }, { values = { 1, 2 } } } }`,
			"chart.line: series[2].values: 2 values for 3 x labels (give one value per label)"},
		{"values with a hole", `chart.line{ x = { "a", "b", "c" }, series = { { values = { 1, nil, 3 } } } }`,
			"chart.line: series[1].values: list of numbers expected (keys 1..n, no holes: use 0 for a missing value)"},
		{"value not a number", `chart.line{ x = { "a", "b" }, series = { { values = { 1, "2" } } } }`,
			"chart.line: series[1].values[2]: number expected, got string (use tonumber for text)"},
		{"value NaN", `chart.line{ x = { "a" }, series = { { values = { 0/0 } } } }`,
			"chart.line: series[1].values[1]: NaN is not a finite number"},
		{"series entry unknown field", `chart.line{ x = { "a" }, series = { { value = { 1 } } } }`,
			`chart.line: series[1]: unknown field "value"`},
		{"width too small", `chart.line{ x = { "a" }, series = { { values = { 1 } } }, width = 99 }`,
			"chart.line: width: 99 pixels is outside 100..4000"},
		{"height too large", `chart.line{ x = { "a" }, series = { { values = { 1 } } }, height = 4001 }`,
			"chart.line: height: 4001 pixels is outside 100..4000"},
		{"width zero", `chart.line{ x = { "a" }, series = { { values = { 1 } } }, width = 0 }`,
			"chart.line: width: 0 pixels is outside 100..4000"},
		{"width fractional", `chart.line{ x = { "a" }, series = { { values = { 1 } } }, width = 300.5 }`,
			"chart.line: width: whole number of pixels expected, got 300.5"},
		{"pie two series", `chart.pie{ x = { "a" }, series = { { values = { 1 } }, { values = { 2 } } } }`,
			"chart.pie: series: a pie chart has exactly one series, got 2"},
		{"pie negative", `chart.pie{ x = { "a", "b" }, series = { { values = { 1, -1 } } } }`,
			"chart.pie: series[1].values[2]: a pie slice cannot be negative (-1)"},
		{"theme", `chart.bar{ x = { "a" }, series = { { values = { 1 } } }, theme = "blue" }`,
			`chart.bar: theme: unknown theme "blue" (want "light" or "dark")`},
		{"format", `chart.bar{ x = { "a" }, series = { { values = { 1 } } }, format = "jpeg" }`,
			`chart.bar: format: unknown format "jpeg" (want "png" or "svg")`},
		{"stacked not boolean", `chart.bar{ x = { "a" }, series = { { values = { 1 } } }, stacked = "yes" }`,
			"chart.bar: stacked: boolean expected, got string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := evalLua(L, "return "+tc.expr)
			if err == nil {
				t.Fatal("no error")
			}
			kind, msg := luaErrorFields(t, err)
			if kind != kindInvalid || msg != tc.want {
				t.Errorf("got {kind = %q, message = %q}\nwant {kind = %q, message = %q}", kind, msg, kindInvalid, tc.want)
			}
		})
	}
	// tostring and DescribeError read "invalid: ..." with the place.
	out, err := evalLua(L, `local ok, e = pcall(chart.pie, { x = {}, series = {} }) return tostring(e), e.where`)
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].String(); got != "invalid: chart.pie: x: no labels: a chart needs at least one x label" {
		t.Errorf("tostring(err) = %q", got)
	}
	if got := out[1].String(); !strings.HasPrefix(got, "<string>:1") {
		t.Errorf("err.where = %q, want the calling line", got)
	}
}

// TestChartLuaLimits: a chart whose raster exceeds the memory limit is
// refused before drawing, and a run that has ended draws nothing.
func TestChartLuaLimits(t *testing.T) {
	err, _ := runLimited(t, 32<<20, 10*time.Second, `return require("chart").bar{ x = { "a" }, series = { { values = { 1 } } }, width = 4000, height = 4000 }`)
	if me, ok := AsMemoryError(nil, err); !ok || me.Func != "chart.bar" || me.Size != 4000*4000*4 {
		t.Errorf("err = %v, want a memory error of chart.bar for the 64 MB raster", DescribeError(err))
	}

	L := newTestState(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	L.SetContext(ctx)
	if _, err := evalLua(L, `chart = require("chart")`); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = evalLua(L, `return chart.line{ x = { "a" }, series = { { values = { 1 } } } }`)
	if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
		t.Errorf("after cancel: err = %v, want the run's end", err)
	}
}

// TestChartLuaMatchesGo: the Lua module draws what the chart package draws
// for the same spec.
func TestChartLuaMatchesGo(t *testing.T) {
	L := newTestState(t, Options{})
	got := evalString(t, L, `return require("chart").pie{ title = "Share", x = { "api", "web", "cli" },
		series = { { name = "share", values = { 50, 30, 20 } } }, width = 300, height = 200 }`)
	want, err := chart.Render(context.Background(), chart.Spec{Kind: chart.Pie, Title: "Share",
		X: []string{"api", "web", "cli"}, Series: []chart.Series{{Name: "share", Values: []float64{50, 30, 20}}},
		Width: 300, Height: 200})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(got), want) {
		t.Error("chart.pie{...} differs from chart.Render of the same spec")
	}
}
