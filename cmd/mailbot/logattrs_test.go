package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// Durations are logged as Go duration strings in both formats; the JSON
// handler alone would write nanoseconds.
func TestLoggedDurationsAreStrings(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			m := &Main{Stderr: &buf, LookupEnv: func(string) (string, bool) { return "", false }}
			cfg := &Config{}
			cfg.Log.Level, cfg.Log.Format = "info", format
			logger, err := m.newLogger(cfg)
			if err != nil {
				t.Fatal(err)
			}
			logger.Info("run ok", "duration", 1500*time.Millisecond, slog.Group("run", "timeout", 2*time.Minute), "duration_ms", int64(1500))
			out := buf.String()
			if format == "text" {
				if !strings.Contains(out, "duration=1.5s") || !strings.Contains(out, "run.timeout=2m0s") {
					t.Errorf("text record %q", out)
				}
				return
			}
			var rec struct {
				Duration   any `json:"duration"`
				DurationMS any `json:"duration_ms"`
				Run        struct {
					Timeout any `json:"timeout"`
				} `json:"run"`
			}
			if err := json.Unmarshal([]byte(out), &rec); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if rec.Duration != "1.5s" || rec.Run.Timeout != "2m0s" || rec.DurationMS != float64(1500) {
				t.Errorf("JSON record %s: durations %v, %v, %v", out, rec.Duration, rec.Run.Timeout, rec.DurationMS)
			}
		})
	}
}
