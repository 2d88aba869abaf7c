// Package chart renders the line, bar and pie charts that mailbot scripts
// put into report mails. A chart is described by a plain Spec (title,
// category labels, named series of numbers, size, theme) and rendered with
// github.com/go-analyze/charts to PNG or SVG bytes.
//
// Rendering is reproducible: the text is drawn with the Roboto Medium font
// that the charts module embeds in its chartdraw/drawing/fonts (copyright The
// Roboto Project Authors, SIL Open Font License 1.1), never with a system
// font, and the
// theme is chosen explicitly rather than taken from the library's global
// default. The same Spec gives the same image on every machine.
//
// Every Spec is checked before anything is drawn; a bad one yields an
// *InvalidError naming the field at fault. Sizes and data are bounded
// (MinSize..MaxSize pixels a side, MaxSeries series, MaxPoints labels), so a
// rendering takes bounded time and memory.
package chart

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/go-analyze/charts"
)

// Kind is the type of chart.
type Kind string

// The chart kinds Render draws.
const (
	Line Kind = "line"
	Bar  Kind = "bar"
	Pie  Kind = "pie"
)

// Output formats.
const (
	PNG = "png"
	SVG = "svg"
)

// Themes.
const (
	ThemeLight = "light"
	ThemeDark  = "dark"
)

// Bounds of a Spec. They keep a chart's raster (4 bytes a pixel) and the
// time spent drawing it small.
const (
	DefaultWidth  = 800
	DefaultHeight = 400
	MinSize       = 100  // pixels, each side
	MaxSize       = 4000 // pixels, each side
	MaxSeries     = 64
	MaxPoints     = 10000 // category labels (x values, or pie slices)
)

// fontFamily is the embedded font all text is drawn with; it is named here so
// that a change of the library's default font does not change mailbot's
// charts.
const fontFamily = charts.FontFamilyRoboto

// Series is one named row of values, one value per category label.
type Series struct {
	Name   string
	Values []float64
}

// Spec describes a chart. The zero values of the optional fields are
// usable: an 800×400 light PNG without axis title, not stacked.
type Spec struct {
	Kind  Kind
	Title string
	// X are the category labels: the x axis of line and bar charts, the
	// slice names of a pie chart.
	X []string
	// Series hold the values: each has one value per label in X. A pie
	// chart has exactly one series.
	Series []Series
	// Width and Height in pixels; 0 means DefaultWidth and DefaultHeight.
	Width, Height int
	// YLabel titles the value axis (line and bar charts).
	YLabel string
	// Theme is ThemeLight (default, also for "") or ThemeDark.
	Theme string
	// Stacked stacks the series of a bar or line chart on each other.
	Stacked bool
	// Format is PNG (default, also for "") or SVG.
	Format string
}

// InvalidError reports a Spec that cannot be drawn.
type InvalidError struct {
	// Field names the part of the Spec at fault, in the terms of the Lua
	// API: "width", "series[2].values", "x".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *InvalidError) Error() string {
	if e.Field == "" {
		return "chart: " + e.Reason
	}
	return "chart: " + e.Field + ": " + e.Reason
}

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Check reports whether s can be drawn, returning an *InvalidError if not.
func (s Spec) Check() error {
	switch s.Kind {
	case Line, Bar, Pie:
	default:
		return invalid("kind", "unknown chart kind %q (want line, bar or pie)", s.Kind)
	}
	for _, d := range []struct {
		field string
		v     int
	}{{"width", s.Width}, {"height", s.Height}} {
		if d.v != 0 && (d.v < MinSize || d.v > MaxSize) {
			return invalid(d.field, "%d pixels is outside %d..%d", d.v, MinSize, MaxSize)
		}
	}
	switch s.Theme {
	case "", ThemeLight, ThemeDark:
	default:
		return invalid("theme", "unknown theme %q (want %q or %q)", s.Theme, ThemeLight, ThemeDark)
	}
	switch s.Format {
	case "", PNG, SVG:
	default:
		return invalid("format", "unknown format %q (want %q or %q)", s.Format, PNG, SVG)
	}
	if len(s.X) == 0 {
		return invalid("x", "no labels: a chart needs at least one x label")
	}
	if len(s.X) > MaxPoints {
		return invalid("x", "%d labels is more than the %d a chart can show", len(s.X), MaxPoints)
	}
	if len(s.Series) == 0 {
		return invalid("series", "no series: a chart needs at least one")
	}
	if len(s.Series) > MaxSeries {
		return invalid("series", "%d series is more than the %d a chart can show", len(s.Series), MaxSeries)
	}
	if s.Kind == Pie {
		if len(s.Series) != 1 {
			return invalid("series", "a pie chart has exactly one series, got %d", len(s.Series))
		}
		if s.Stacked {
			return invalid("stacked", "only bar and line charts can be stacked")
		}
		if s.YLabel != "" {
			return invalid("y_label", "a pie chart has no value axis")
		}
	}
	for i, sr := range s.Series {
		field := fmt.Sprintf("series[%d].values", i+1)
		if len(sr.Values) != len(s.X) {
			return invalid(field, "%d values for %d x labels (give one value per label)", len(sr.Values), len(s.X))
		}
		for j, v := range sr.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return invalid(fmt.Sprintf("%s[%d]", field, j+1), "%v is not a finite number", v)
			}
			if s.Kind == Pie && v < 0 {
				return invalid(fmt.Sprintf("%s[%d]", field, j+1), "a pie slice cannot be negative (%v)", v)
			}
		}
	}
	if s.Kind == Pie {
		sum := 0.0
		for _, v := range s.Series[0].Values {
			sum += v
		}
		if sum == 0 {
			return invalid("series[1].values", "all slices are zero: nothing to draw")
		}
	}
	return nil
}

// nonNegative reports whether no value of s is below zero.
func (s Spec) nonNegative() bool {
	for _, sr := range s.Series {
		for _, v := range sr.Values {
			if v < 0 {
				return false
			}
		}
	}
	return true
}

// Size returns the chart's width and height in pixels, defaults applied.
func (s Spec) Size() (width, height int) {
	width, height = s.Width, s.Height
	if width == 0 {
		width = DefaultWidth
	}
	if height == 0 {
		height = DefaultHeight
	}
	return width, height
}

// Render checks s and draws it, returning PNG or SVG bytes. ctx is checked
// before and after drawing: a drawing is bounded by the Spec's limits and
// is not interrupted midway.
func Render(ctx context.Context, s Spec) ([]byte, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("chart: render %s chart: %w", s.Kind, err)
	}
	width, height := s.Size()
	format := s.Format
	if format == "" {
		format = PNG
	}
	theme := charts.GetTheme(charts.ThemeLight)
	if s.Theme == ThemeDark {
		theme = charts.GetTheme(charts.ThemeDark)
	}
	font := charts.GetFont(fontFamily)
	if font == nil {
		return nil, errors.New("chart: the embedded font " + fontFamily + " is missing")
	}
	p := charts.NewPainter(charts.PainterOptions{
		OutputFormat: format,
		Width:        width,
		Height:       height,
		Font:         font,
		Theme:        theme,
	})

	values := make([][]float64, len(s.Series))
	names := make([]string, len(s.Series))
	named := false
	for i, sr := range s.Series {
		values[i] = sr.Values
		names[i] = sr.Name
		if strings.TrimSpace(sr.Name) != "" {
			named = true
		}
	}
	legend := charts.LegendOption{SeriesNames: names, Offset: charts.OffsetRight, Show: charts.Ptr(named)}
	title := charts.TitleOption{Text: s.Title}

	var err error
	switch s.Kind {
	case Line:
		opt := charts.NewLineChartOptionWithData(values)
		opt.Theme = theme
		opt.Title = title
		opt.Legend = legend
		opt.XAxis.Labels = s.X
		opt.YAxis = []charts.YAxisOption{{Title: s.YLabel}}
		opt.ValueFormatter = formatValue
		if s.Stacked {
			opt.StackSeries = charts.Ptr(true)
		}
		err = p.LineChart(opt)
	case Bar:
		opt := charts.NewBarChartOptionWithData(values)
		opt.Theme = theme
		opt.Title = title
		opt.Legend = legend
		opt.CategoryAxis.Labels = s.X
		opt.ValueAxis = []charts.ValueAxisOption{{Title: s.YLabel}}
		opt.ValueFormatter = formatValue
		if s.nonNegative() {
			// A bar's length is its value: start the axis at zero, which the
			// library's automatic range does not always do ({1, 2} would
			// start at 1 and draw the first bar empty).
			opt.ValueAxis[0].Min = charts.Ptr(0.0)
		}
		if s.Stacked {
			opt.StackSeries = charts.Ptr(true)
		}
		err = p.BarChart(opt)
	case Pie:
		opt := charts.NewPieChartOptionWithData(s.Series[0].Values)
		opt.Theme = theme
		opt.Title = title
		// A pie's legend names the slices, which are the x labels.
		opt.Legend = charts.LegendOption{SeriesNames: s.X, Offset: charts.OffsetRight}
		err = p.PieChart(opt)
	}
	if err != nil {
		return nil, fmt.Errorf("chart: render %s chart: %w", s.Kind, err)
	}
	out, err := p.Bytes()
	if err != nil {
		return nil, fmt.Errorf("chart: encode %s chart as %s: %w", s.Kind, format, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("chart: render %s chart: %w", s.Kind, err)
	}
	return out, nil
}

// formatValue renders an axis value: at most two decimals, no trailing
// zeros, thousands separated by commas (1,234.5). It is mailbot's own, not
// the library's default, so that axis labels do not change with the
// version of the number-formatting module the build happens to select.
func formatValue(v float64) string {
	s := strconv.FormatFloat(math.Round(v*100)/100, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		s = "0"
	}
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		return sign + b.String() + "." + frac
	}
	return sign + b.String()
}
