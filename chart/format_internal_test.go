package chart

import "testing"

// TestFormatValue pins the axis labels' number format.
func TestFormatValue(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {2, "2"}, {2.5, "2.5"}, {0.125, "0.13"}, {1234.5, "1,234.5"},
		{1234567, "1,234,567"}, {-9876.54, "-9,876.54"}, {-0.001, "0"}, {100, "100"},
	} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
