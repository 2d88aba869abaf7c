package main

import "log/slog"

// durationString is the loggers' ReplaceAttr: every time.Duration value
// is written as a Go duration string ("1.5s", "250ms"), in the JSON
// format too, whose handler would otherwise write raw nanoseconds.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
