package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

// fireFixture is a config whose account "relay" is a dev server refusing
// recipients at gone@, with one script registering one trigger of each
// kind.
func fireFixture(t *testing.T) (dir string, srv *devserver.Server) {
	t.Helper()
	srv = devtest.Start(t, devserver.Config{
		Users: map[string]string{"bot": "s3cret"},
		Hooks: devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
			if strings.HasPrefix(to, "gone@") {
				return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "mailbox unavailable"}
			}
			return nil
		}},
	})
	dir = relayConfig(t, srv)
	drop := filepath.Join(dir, "drop")
	os.MkdirAll(drop, 0o755)
	writeFile(t, filepath.Join(dir, "scripts", "report.lua"), fmt.Sprintf(`
local smtp = require("smtp")
local mail = require("mail")
local function send(to, subject)
  local c = smtp.connect{ account = "relay" }
  c:sendmail("bot@example.org", { to }, "Subject: " .. subject .. "\r\n\r\nbody\r\n")
  c:quit()
end
mailbot.cron("0 8 * * 1-5", function(ev)
  send("ops@example.org", "daily " .. ev.scheduled_at .. " fired=" .. tostring(ev.fired))
end, { name = "daily", tz = "UTC" })
mailbot.every("1h", function() send("gone@example.org", "never") end)
mailbot.on_file({ dir = %q, pattern = "*.csv", after = "move:done", name = "csv" }, function(ev)
  mail.send(mail.message{ from = "bot@example.org", to = "ops@example.org", subject = "file " .. ev.name, text = "hi" })
end)
mailbot.on_start(function() end, { name = "boot" })
mailbot.every("2h", function()
  mail.send(mail.message{ from = "bot@example.org", to = "gone@example.org", subject = "bounce", text = "x" })
end, { name = "bounce" })
`, drop))
	return dir, srv
}

func subjects(t *testing.T, srv *devserver.Server) []string {
	var out []string
	for _, m := range srv.Messages() {
		out = append(out, subject(t, m.Data))
	}
	return out
}

func TestTriggersCommand(t *testing.T) {
	t.Parallel()
	dir, _ := fireFixture(t)
	r := mailbot(t, dir, relayEnv, "triggers", "-c", "mailbot.yaml")
	if r.code != 0 {
		t.Fatalf("triggers: %v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "LAST OUTCOME") {
		t.Fatalf("want a header and 5 rows:\n%s", r.stdout)
	}
	for i, want := range [][]string{
		{"report#daily", "cron", "0 8 * * 1-5 (UTC)"},
		{"report#2", "every", "1h"},
		{"report#csv", "file", filepath.Join(dir, "drop", "*.csv")},
		{"report#boot", "start"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("row %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}

	// JSON: stable field names, nulls for what never happened.
	r = mailbot(t, dir, relayEnv, "triggers", "-c", "mailbot.yaml", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); r.code != 0 || err != nil || len(list) != 5 {
		t.Fatalf("triggers --json: %v %v", err, r)
	}
	var keys []string
	for k := range list[0] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := strings.Join(keys, ","); got != "id,kind,last_duration_ms,last_error,last_outcome,last_run,next_run,script,spec" {
		t.Errorf("JSON fields %s", got)
	}
	if list[0]["id"] != "report#daily" || list[0]["script"] != "report.lua" || list[0]["last_run"] != nil || list[0]["next_run"] == nil {
		t.Errorf("first trigger %v", list[0])
	}

	// After a successful and a failed fire, both show their outcome.
	mailbot(t, dir, relayEnv, "fire", "-c", "mailbot.yaml", "report#daily")
	mailbot(t, dir, relayEnv, "fire", "-c", "mailbot.yaml", "report#2")
	r = mailbot(t, dir, relayEnv, "triggers", "-c", "mailbot.yaml", "--json")
	list = nil
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if list[0]["last_outcome"] != "ok" || list[0]["last_run"] == nil || list[0]["last_duration_ms"] == nil || list[0]["last_error"] != "" {
		t.Errorf("after an ok fire: %v", list[0])
	}
	if list[1]["last_outcome"] != "error" || !strings.Contains(fmt.Sprint(list[1]["last_error"]), "SMTPRecipientsRefused") {
		t.Errorf("after a failed fire: %v", list[1])
	}
	r = mailbot(t, dir, relayEnv, "triggers", "-c", "mailbot.yaml")
	if !strings.Contains(r.stdout, "ok (") || !strings.Contains(r.stdout, "error (") {
		t.Errorf("table lacks the outcomes:\n%s", r.stdout)
	}

	// A script that fails to load is reported; the others are listed.
	writeFile(t, filepath.Join(dir, "scripts", "broken.lua"), `mailbot.every("5m", function() end, { name = "a b" })`)
	r = mailbot(t, dir, relayEnv, "triggers", "-c", "mailbot.yaml")
	if r.code != exitFailure || !strings.Contains(r.stderr, "broken.lua") || !strings.Contains(r.stdout, "report#daily") {
		t.Errorf("with a broken script: %v", r)
	}
}

func TestFireCommand(t *testing.T) {
	t.Parallel()
	dir, srv := fireFixture(t)
	at := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC).Unix()
	tests := []struct {
		name    string
		args    []string
		code    int
		stdout  string
		stderr  string
		subject string // the message the server then has last
	}{
		{"cron by name with --at", []string{"report#daily", "--at", "2026-12-07 08:00"}, exitOK, "report#daily (cron 0 8 * * 1-5 (UTC)) scheduled at 2026-12-07T08:00:00Z: ok", "",
			fmt.Sprintf("daily %d fired=true", at)},
		{"cron by number, RFC 3339", []string{"--at", "2026-12-07T09:00:00+01:00", "report#1"}, exitOK, "ok in", "",
			fmt.Sprintf("daily %d fired=true", at)},
		{"recipient refused", []string{"report#2"}, exitRcpt, "report#2 (every 1h)", "SMTPRecipientsRefused", ""},
		{"file not matching", []string{"report#csv", "--file", "drop/a.txt"}, exitFailure, "", `does not match the trigger's pattern "*.csv"`, ""},
		{"file outside", []string{"report#csv", "--file", "a.csv"}, exitFailure, "", "not in the trigger's folder", ""},
		{"unknown trigger", []string{"report#weekly"}, exitFailure, "", `no trigger named "weekly" (its named triggers: daily, csv, boot`, ""},
		{"no ID", nil, exitFailure, "", "missing the trigger ID", ""},
		{"bad time", []string{"report#daily", "--at", "8am"}, exitFailure, "", `time "8am"`, ""},
		{"queued mail refused at RCPT", []string{"report#bounce"}, exitRcpt, "report#bounce (every 2h)", "1 bounced", ""},
	}
	for _, tc := range tests {
		r := mailbot(t, dir, relayEnv, append([]string{"fire", "-c", "mailbot.yaml"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%s: want exit %d, stdout %q, stderr %q; got %v", tc.name, tc.code, tc.stdout, tc.stderr, r)
			continue
		}
		if tc.subject != "" {
			s := subjects(t, srv)
			if len(s) == 0 || s[len(s)-1] != tc.subject {
				t.Errorf("%s: server has %q, want last %q", tc.name, s, tc.subject)
			}
		}
	}

	// A file trigger: the handler's mail.send is delivered before fire
	// exits (no daemon runs), and the after action moves the file.
	writeFile(t, filepath.Join(dir, "drop", "a.csv"), "x\n")
	before := len(srv.Messages())
	r := mailbot(t, dir, relayEnv, "fire", "-c", "mailbot.yaml", "--file", "drop/a.csv", "report#csv")
	if r.code != 0 || !strings.Contains(r.stdout, "file: moved "+filepath.Join(dir, "drop", "done", "a.csv")) {
		t.Fatalf("file fire: %v", r)
	}
	if s := subjects(t, srv); len(s) != before+1 || s[len(s)-1] != "file a.csv" {
		t.Errorf("queued mail not delivered: %q", s)
	}

	// A dry run: nothing reaches the server, the file stays, the message
	// is captured.
	writeFile(t, filepath.Join(dir, "drop", "b.csv"), "y\n")
	before = len(srv.Messages())
	dry := filepath.Join(dir, "dry")
	r = mailbot(t, dir, relayEnv, "fire", "-c", "mailbot.yaml", "--dry-run", dry, "report#csv", "--file", "drop/b.csv")
	if r.code != 0 || !strings.Contains(r.stdout, "file: would move") {
		t.Fatalf("dry fire: %v", r)
	}
	if len(srv.Messages()) != before {
		t.Error("a dry run reached the real server")
	}
	if _, err := os.Stat(filepath.Join(dir, "drop", "b.csv")); err != nil {
		t.Errorf("a dry run moved the file: %v", err)
	}
	if emls, _ := filepath.Glob(filepath.Join(dry, "*.eml")); len(emls) != 1 {
		t.Errorf("dry run captured %d messages, want 1", len(emls))
	}
	r = mailbot(t, dir, relayEnv, "fire", "-c", "mailbot.yaml", "--dry-run", "report#daily")
	if r.code != 0 || len(srv.Messages()) != before {
		t.Errorf("dry cron fire: %v", r)
	}
}
