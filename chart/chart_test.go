package chart_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/chart"
)

var update = flag.Bool("update", false, "rewrite the golden images in testdata")

// Golden comparison tolerance: a pixel differs when one of its channels is
// off by more than pixelDelta (of 255); at most maxDiffering of the pixels
// may differ, which absorbs anti-aliasing differences between CPUs (the
// rendering is pure Go, so they are a few edge pixels at most) yet still
// notices a changed title or a moved data point (TestGoldenDetectsChange).
const (
	pixelDelta   = 16
	maxDiffering = 0.0005
)

var days = []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}

// goldenSpecs are the charts whose rendering is pinned in testdata/<name>.png.
var goldenSpecs = []struct {
	name string
	spec chart.Spec
}{
	{"line", chart.Spec{Kind: chart.Line, Title: "Mails per day", X: days, YLabel: "mails", Series: []chart.Series{
		{Name: "sent", Values: []float64{120, 132, 101, 134, 90, 230, 210}},
		{Name: "bounced", Values: []float64{3, 5, 2, 8, 1, 12, 4}},
	}}},
	{"bar_stacked_dark", chart.Spec{Kind: chart.Bar, Title: "Queue by relay", X: []string{"mx1", "mx2", "mx3"},
		Theme: chart.ThemeDark, Stacked: true, Width: 600, Height: 300, Series: []chart.Series{
			{Name: "deferred", Values: []float64{1, 2, 3}},
			{Name: "held", Values: []float64{2, 2, 1}},
		}}},
	{"bar_unnamed", chart.Spec{Kind: chart.Bar, X: []string{"a", "b"}, Width: 300, Height: 200,
		Series: []chart.Series{{Values: []float64{-2, 5}}}}},
	{"bar_from_zero", chart.Spec{Kind: chart.Bar, X: []string{"mx1", "mx2"}, Width: 300, Height: 200,
		Series: []chart.Series{{Name: "sent", Values: []float64{1, 2}}}}},
	{"pie", chart.Spec{Kind: chart.Pie, Title: "Share by client", X: []string{"api", "web", "cli"},
		Series: []chart.Series{{Name: "share", Values: []float64{50, 30, 20}}}}},
}

// goldenSpec returns the golden spec called name.
func goldenSpec(t *testing.T, name string) chart.Spec {
	t.Helper()
	for _, g := range goldenSpecs {
		if g.name == name {
			return g.spec
		}
	}
	t.Fatalf("no golden spec %q", name)
	return chart.Spec{}
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenSpecs {
		t.Run(tc.name, func(t *testing.T) {
			out, err := chart.Render(context.Background(), tc.spec)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			got := decodePNG(t, out)
			w, h := tc.spec.Size()
			if b := got.Bounds(); b.Dx() != w || b.Dy() != h {
				t.Fatalf("image is %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
			}
			path := filepath.Join("testdata", tc.name+".png")
			if *update {
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (regenerate with go test ./chart -update): %v", err)
			}
			compareImages(t, got, decodePNG(t, raw))
		})
	}
}

// TestRenderDeterministic renders one spec twice: the output must not
// depend on anything but the spec.
func TestRenderDeterministic(t *testing.T) {
	a, err := chart.Render(context.Background(), goldenSpecs[0].spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := chart.Render(context.Background(), goldenSpecs[0].spec)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("two renderings of the same spec differ")
	}
}

func decodePNG(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode PNG: %v", err)
	}
	return img
}

// compareImages fails unless got and want have the same size and at most
// maxDiffering of their pixels differ by more than pixelDelta.
func compareImages(t *testing.T, got, want image.Image) {
	t.Helper()
	if got.Bounds().Size() != want.Bounds().Size() {
		t.Fatalf("image is %v, golden is %v", got.Bounds().Size(), want.Bounds().Size())
	}
	if frac := differing(got, want); frac > maxDiffering {
		t.Errorf("%.2f%% of the pixels differ from the golden, more than %.2f%% (regenerate with -update if the change is intended)",
			frac*100, maxDiffering*100)
	}
}

// differing returns the fraction of pixels of two same-sized images that
// differ by more than pixelDelta in a channel.
func differing(a, b image.Image) float64 {
	ab, bb := a.Bounds(), b.Bounds()
	n := 0
	for y := 0; y < ab.Dy(); y++ {
		for x := 0; x < ab.Dx(); x++ {
			r1, g1, b1, a1 := a.At(ab.Min.X+x, ab.Min.Y+y).RGBA()
			r2, g2, b2, a2 := b.At(bb.Min.X+x, bb.Min.Y+y).RGBA()
			for _, d := range [][2]uint32{{r1, r2}, {g1, g2}, {b1, b2}, {a1, a2}} {
				if math.Abs(float64(d[0]>>8)-float64(d[1]>>8)) > pixelDelta {
					n++
					break
				}
			}
		}
	}
	return float64(n) / float64(ab.Dx()*ab.Dy())
}

// TestGoldenDetectsChange makes sure the tolerance is tight enough to
// notice a real change: one value moved, the title changed.
func TestGoldenDetectsChange(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", goldenSpecs[0].name+".png"))
	if err != nil {
		t.Fatal(err)
	}
	golden := decodePNG(t, raw)
	for _, change := range []struct {
		name string
		edit func(*chart.Spec)
	}{
		{"title", func(s *chart.Spec) { s.Title = "Mails per week" }},
		{"one value", func(s *chart.Spec) {
			s.Series = []chart.Series{s.Series[0], {Name: "bounced", Values: []float64{3, 5, 2, 80, 1, 12, 4}}}
		}},
	} {
		spec := goldenSpecs[0].spec
		change.edit(&spec)
		out, err := chart.Render(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		frac := differing(decodePNG(t, out), golden)
		t.Logf("%s: %.3f%% of the pixels differ", change.name, frac*100)
		if frac <= maxDiffering {
			t.Errorf("changed %s: only %.3f%% of the pixels differ, the golden tolerance hides real changes", change.name, frac*100)
		}
	}
}

func TestRenderSizes(t *testing.T) {
	for _, tc := range []struct{ w, h int }{{chart.MinSize, chart.MinSize}, {321, 123}, {0, 0}, {1200, 0}} {
		spec := goldenSpecs[0].spec
		spec.Width, spec.Height = tc.w, tc.h
		out, err := chart.Render(context.Background(), spec)
		if err != nil {
			t.Fatalf("%dx%d: %v", tc.w, tc.h, err)
		}
		w, h := spec.Size()
		if b := decodePNG(t, out).Bounds(); b.Dx() != w || b.Dy() != h {
			t.Errorf("%dx%d: image is %dx%d, want %dx%d", tc.w, tc.h, b.Dx(), b.Dy(), w, h)
		}
	}
}

func TestRenderSVG(t *testing.T) {
	spec := goldenSpec(t, "pie")
	spec.Format = chart.SVG
	out, err := chart.Render(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.HasPrefix(s, "<svg") || !strings.Contains(s, `viewBox="0 0 800 400"`) || !strings.Contains(s, "api") {
		t.Errorf("not the SVG expected: %.200s", s)
	}
}

func TestRenderContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := chart.Render(ctx, goldenSpecs[0].spec)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestCheck(t *testing.T) {
	one := []chart.Series{{Name: "s", Values: []float64{1, 2}}}
	x := []string{"a", "b"}
	for _, tc := range []struct {
		name  string
		spec  chart.Spec
		field string
	}{
		{"unknown kind", chart.Spec{Kind: "area", X: x, Series: one}, "kind"},
		{"too narrow", chart.Spec{Kind: chart.Line, X: x, Series: one, Width: 99}, "width"},
		{"too tall", chart.Spec{Kind: chart.Line, X: x, Series: one, Height: 4001}, "height"},
		{"negative", chart.Spec{Kind: chart.Line, X: x, Series: one, Width: -1}, "width"},
		{"theme", chart.Spec{Kind: chart.Line, X: x, Series: one, Theme: "solarized"}, "theme"},
		{"format", chart.Spec{Kind: chart.Line, X: x, Series: one, Format: "gif"}, "format"},
		{"no labels", chart.Spec{Kind: chart.Bar, Series: one}, "x"},
		{"no series", chart.Spec{Kind: chart.Bar, X: x}, "series"},
		{"short series", chart.Spec{Kind: chart.Bar, X: x, Series: []chart.Series{{Values: []float64{1, 2}}, {Values: []float64{1}}}}, "series[2].values"},
		{"long series", chart.Spec{Kind: chart.Line, X: x, Series: []chart.Series{{Values: []float64{1, 2, 3}}}}, "series[1].values"},
		{"NaN", chart.Spec{Kind: chart.Line, X: x, Series: []chart.Series{{Values: []float64{1, math.NaN()}}}}, "series[1].values[2]"},
		{"Inf", chart.Spec{Kind: chart.Bar, X: x, Series: []chart.Series{{Values: []float64{math.Inf(1), 2}}}}, "series[1].values[1]"},
		{"pie two series", chart.Spec{Kind: chart.Pie, X: x, Series: []chart.Series{one[0], one[0]}}, "series"},
		{"pie negative", chart.Spec{Kind: chart.Pie, X: x, Series: []chart.Series{{Values: []float64{1, -2}}}}, "series[1].values[2]"},
		{"pie zero", chart.Spec{Kind: chart.Pie, X: x, Series: []chart.Series{{Values: []float64{0, 0}}}}, "series[1].values"},
		{"pie stacked", chart.Spec{Kind: chart.Pie, X: x, Series: one, Stacked: true}, "stacked"},
		{"pie y label", chart.Spec{Kind: chart.Pie, X: x, Series: one, YLabel: "n"}, "y_label"},
		{"too many labels", chart.Spec{Kind: chart.Line, X: make([]string, chart.MaxPoints+1), Series: one}, "x"},
		{"too many series", chart.Spec{Kind: chart.Line, X: x, Series: make([]chart.Series, chart.MaxSeries+1)}, "series"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chart.Render(context.Background(), tc.spec)
			var ie *chart.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want *chart.InvalidError", err)
			}
			if ie.Field != tc.field {
				t.Errorf("Field = %q, want %q (%v)", ie.Field, tc.field, err)
			}
		})
	}
}

// TestRenderConcurrent: scripts run in parallel, each drawing its own
// charts; the library's shared fonts and themes must cope (run with -race).
func TestRenderConcurrent(t *testing.T) {
	want := make([][]byte, len(goldenSpecs))
	for i, g := range goldenSpecs {
		out, err := chart.Render(context.Background(), g.spec)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = out
	}
	errs := make(chan error, 4*len(goldenSpecs))
	for range 4 {
		for i, g := range goldenSpecs {
			go func() {
				out, err := chart.Render(context.Background(), g.spec)
				if err == nil && !bytes.Equal(out, want[i]) {
					err = errors.New(g.name + ": a concurrent rendering differs")
				}
				errs <- err
			}()
		}
	}
	for range 4 * len(goldenSpecs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
