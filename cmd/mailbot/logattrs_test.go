package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
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

// A delivered message's record says sent, on disk and in queue show, with
// the relay's reply naming its queue id.
func TestQueueShowSentTrace(t *testing.T) {
	t.Parallel()
	srv := devtest.Start(t, devserver.Config{Users: map[string]string{"bot": "s3cret"}})
	dir := relayConfig(t, srv)
	writeFile(t, filepath.Join(dir, "send.lua"), `
local mail = require("mail")
print((mail.send(mail.message{ from = "bot@example.org", to = "ops@example.org", subject = "weekly report", text = "t" })))`)
	r := mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "--deliver", "send.lua")
	msgs := srv.Messages()
	if r.code != 0 || len(msgs) != 1 {
		t.Fatalf("exec --deliver: %v", r)
	}
	id := strings.TrimSpace(r.stdout)
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "show", id)
	reply := "Relay reply:  250 2.0.0 OK: queued as " + msgs[0].QueueID
	if r.code != 0 || !strings.Contains(r.stdout, "State:        sent") || !strings.Contains(r.stdout, reply) ||
		!strings.Contains(r.stdout, "Subject:      weekly report") || !strings.Contains(r.stdout, "Message-ID:   <") {
		t.Fatalf("queue show: %v, want %q", r, reply)
	}
	receipts, _ := filepath.Glob(filepath.Join(dir, "*", "outbox", "receipts", "*.jsonl"))
	if len(receipts) != 1 {
		t.Fatalf("receipts files %v", receipts)
	}
	raw, err := os.ReadFile(receipts[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"id":"`+id+`"`) || !strings.Contains(string(raw), `"reply":"250 2.0.0 OK: queued as `+msgs[0].QueueID+`"`) {
		t.Errorf("receipts %s", raw)
	}
}
