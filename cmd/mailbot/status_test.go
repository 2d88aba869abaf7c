package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

// freePort returns a loopback address nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// opsClient talks to a daemon's endpoint.
type opsClient struct {
	t     *testing.T
	base  string
	token string
}

func (c *opsClient) do(method, path, csrf, body string, auth bool) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// waitUntil polls cond (the daemon is a subprocess) with a deadline.
func waitUntil(t *testing.T, what string, logs *syncBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const opsScript = `
local mail = require("mail")
mailbot.every("1h", function(ev)
  mail.send(mail.message{ from = "bot@example.org", to = "ops@example.org", subject = "hourly report", text = "hi" })
  mail.send(mail.message{ from = "bot@example.org", to = "gone@example.org", subject = "to a gone user", text = "hi" })
end, { name = "hourly" })
mailbot.every("2h", function(ev) error("broken on purpose") end, { name = "broken" })
`

// TestOperationsEndpoint runs the daemon with the http endpoint, fires
// triggers through it, watches the outbox deliver to a dev server, and
// checks metrics, status, the status CLI and the queue CLI, with the
// daemon and without it.
func TestOperationsEndpoint(t *testing.T) {
	t.Parallel()
	srv := devtest.Start(t, devserver.Config{
		Users: map[string]string{"bot": "s3cret"},
		Hooks: devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
			if strings.HasPrefix(to, "gone@") {
				return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "mailbox unavailable"}
			}
			return nil
		}},
	})
	dir := relayConfig(t, srv)
	addr := freePort(t)
	f, err := os.OpenFile(filepath.Join(dir, "mailbot.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "http:\n  listen: %s\n  auth:\n    bearer: { token_env: MB_TOKEN }\n", addr)
	f.Close()
	writeFile(t, filepath.Join(dir, "scripts", "ops.lua"), opsScript)
	env := append([]string{"MB_TOKEN=t0ken-for-tests"}, relayEnv...)

	// No daemon yet: status reads the state dir.
	r := mailbot(t, dir, env, "status", "-c", "mailbot.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "no daemon running") || !strings.Contains(r.stdout, "ops#hourly") ||
		!strings.Contains(r.stdout, "outbox: 0 queued, 0 dead") {
		t.Fatalf("status without a daemon: %v", r)
	}
	if r := mailbot(t, dir, env, "queue", "-c", "mailbot.yaml", "dead"); r.code != 0 || !strings.Contains(r.stdout, "no dead letters") {
		t.Fatalf("queue dead without dead letters: %v", r)
	}
	if r := mailbot(t, dir, env, "queue", "-c", "mailbot.yaml", "dead", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("queue dead --json without dead letters: %v", r)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mailbotBin, "run", "-c", "mailbot.yaml")
	cmd.Dir = dir
	cmd.Env = cleanEnv(env...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	c := &opsClient{t: t, base: "http://" + addr, token: "t0ken-for-tests"}
	waitUntil(t, "readyz", &logs, func() bool { code, _ := c.do("GET", "/readyz", "", "", false); return code == 200 })
	if code, body := c.do("GET", "/api/status", "", "", false); code != 401 {
		t.Errorf("status without credentials = %d %s, want 401", code, body)
	}
	code, body := c.do("GET", "/api/csrf", "", "", true)
	var tok struct{ Token string }
	if err := json.Unmarshal([]byte(body), &tok); code != 200 || err != nil {
		t.Fatalf("csrf = %d %s", code, body)
	}
	if code, body := c.do("POST", "/api/fire", "", `{"id":"ops#hourly"}`, true); code != 403 {
		t.Errorf("fire without the CSRF token = %d %s, want 403", code, body)
	}
	for _, tc := range []struct{ id, outcome string }{{"ops#hourly", "ok"}, {"ops#broken", "error"}} {
		code, body := c.do("POST", "/api/fire", tok.Token, `{"id":"`+tc.id+`"}`, true)
		if code != 200 || !strings.Contains(body, `"last_outcome": "`+tc.outcome+`"`) {
			t.Errorf("fire %s = %d %s, want 200 with outcome %s", tc.id, code, body, tc.outcome)
		}
	}
	if code, body := c.do("POST", "/api/fire", tok.Token, `{"id":"ops#nope"}`, true); code != 404 {
		t.Errorf("fire of an unknown trigger = %d %s, want 404", code, body)
	}

	var st statusReport
	waitUntil(t, "one delivery and one dead letter", &logs, func() bool {
		_, body := c.do("GET", "/api/status", "", "", true)
		st = statusReport{}
		if json.Unmarshal([]byte(body), &st.Status) != nil || len(st.Recent) != 1 || len(st.Dead) != 1 {
			return false
		}
		// The delivery counters are updated just after the spool records
		// the outcome: wait for them too.
		_, m := c.do("GET", "/metrics", "", "", true)
		return strings.Contains(m, `mailbot_outbox_deliveries_total{account="relay",result="permanent"} 1`) &&
			strings.Contains(m, `mailbot_outbox_deliveries_total{account="relay",result="sent"} 1`)
	})
	if !st.Ready || len(st.Scripts) != 1 || len(st.Scripts[0].Hash) != 64 || len(st.Triggers) != 2 || st.Triggers[0].NextRun == nil {
		t.Errorf("status = %+v", st.Status)
	}
	if d := st.Recent[0]; d.Account != "relay" || !strings.HasSuffix(d.MessageID, "@example.org") || d.Recipients[0] != "ops@example.org" {
		t.Errorf("recent delivery = %+v", d)
	}
	dead := st.Dead[0]
	if dead.Account != "relay" || dead.Recipients[0] != "gone@example.org" || dead.Subject != "to a gone user" || !strings.Contains(dead.LastError, "550") {
		t.Errorf("dead letter = %+v", dead)
	}

	_, metrics := c.do("GET", "/metrics", "", "", true)
	for _, want := range []string{
		`mailbot_script_runs_total{outcome="ok",script="ops.lua",trigger="ops#hourly"} 1`,
		`mailbot_script_runs_total{outcome="error",script="ops.lua",trigger="ops#broken"} 1`,
		`mailbot_script_run_duration_seconds_count{script="ops.lua",trigger="ops#hourly"} 1`,
		`mailbot_scripts_loaded 1`,
		`mailbot_script_load_errors 0`,
		`mailbot_trigger_next_run_timestamp_seconds{script="ops.lua",trigger="ops#hourly"} `,
		`mailbot_outbox_messages{state="queued"} 0`,
		`mailbot_outbox_messages{state="dead"} 1`,
		`mailbot_outbox_deliveries_total{account="relay",result="sent"} 1`,
		`mailbot_outbox_deliveries_total{account="relay",result="permanent"} 1`,
		`mailbot_smtp_sessions_total{account="relay",outcome="ok"} `,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, "t0ken") || strings.Contains(metrics, "s3cret") {
		t.Error("metrics carry a secret")
	}

	// The CLI asks the daemon.
	r = mailbot(t, dir, env, "status", "-c", "mailbot.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "running since") || !strings.Contains(r.stdout, "(ready)") ||
		!strings.Contains(r.stdout, dead.ID) || !strings.Contains(r.stdout, "outbox: 0 queued, 1 dead") || !strings.Contains(r.stdout, "ops@example.org") {
		t.Errorf("status with the daemon: %v", r)
	}
	r = mailbot(t, dir, env, "status", "-c", "mailbot.yaml", "--json")
	var js statusReport
	if err := json.Unmarshal([]byte(r.stdout), &js); r.code != 0 || err != nil || js.Source != "daemon" || len(js.Dead) != 1 {
		t.Errorf("status --json with the daemon: %v (%v)", r, err)
	}
	if r := mailbot(t, dir, []string{"MB_TOKEN=wrong"}, "status", "-c", "mailbot.yaml"); r.code != exitFailure || !strings.Contains(r.stderr, "401") {
		t.Errorf("status with a wrong token: %v", r)
	}
	if r := mailbot(t, dir, relayEnv, "status", "-c", "mailbot.yaml"); r.code != exitFailure || !strings.Contains(r.stderr, "MB_TOKEN is not set") {
		t.Errorf("status without the token's variable: %v", r)
	}
	r = mailbot(t, dir, env, "queue", "-c", "mailbot.yaml", "dead")
	if r.code != exitFailure || !strings.Contains(r.stdout, dead.ID) {
		t.Errorf("queue dead with a dead letter must exit 1: %v", r)
	}
	r = mailbot(t, dir, env, "queue", "-c", "mailbot.yaml", "dead", "--json")
	var items []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &items); r.code != exitFailure || err != nil || len(items) != 1 || items[0]["id"] != dead.ID {
		t.Errorf("queue dead --json with a dead letter: %v", r)
	}
	if r := mailbot(t, dir, env, "queue", "-c", "mailbot.yaml", "list", "--json"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("queue list --json: %v", r)
	}

	// Deleting a dead letter needs the token too.
	if code, _ := c.do("POST", "/api/dead/"+dead.ID+"/delete", "", "", true); code != 403 {
		t.Errorf("delete without the CSRF token = %d, want 403", code)
	}
	if code, body := c.do("POST", "/api/dead/"+dead.ID+"/delete", tok.Token, "", true); code != 200 {
		t.Errorf("delete = %d %s", code, body)
	}
	if code, _ := c.do("POST", "/api/dead/"+dead.ID+"/retry", tok.Token, "", true); code != 404 {
		t.Errorf("retry of a deleted dead letter = %d, want 404", code)
	}
	if r := mailbot(t, dir, env, "queue", "-c", "mailbot.yaml", "dead"); r.code != 0 {
		t.Errorf("queue dead after the delete: %v", r)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run did not exit 0 on SIGTERM: %v\n%s", err, logs.String())
	}
	// Stopped: status falls back to the state dir, with the runs'
	// outcomes; it needs no credentials for that.
	r = mailbot(t, dir, relayEnv, "status", "-c", "mailbot.yaml", "--json")
	js = statusReport{}
	if err := json.Unmarshal([]byte(r.stdout), &js); r.code != 0 || err != nil || js.Source != "state_dir" || len(js.Triggers) != 2 {
		t.Fatalf("status --json after the daemon stopped: %v (%v)", r, err)
	}
	if js.Triggers[1].ID != "ops#broken" || js.Triggers[1].LastOutcome != "error" {
		t.Errorf("state-dir status lost the last outcome: %+v", js.Triggers)
	}
}

func TestHTTPBeyondLoopbackNeedsAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), "scripts_dir: scripts\nstate_dir: state\nhttp:\n  listen: 0.0.0.0:9725\n")
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	for _, tc := range []struct {
		cmd  string
		code int
	}{{"run", exitConfig}, {"check", exitFailure}} {
		cmd := tc.cmd
		r := mailbot(t, dir, nil, cmd, "-c", "mailbot.yaml")
		if r.code != tc.code || !strings.Contains(r.stderr+r.stdout, "mailbot.yaml:4: http.listen: 0.0.0.0:9725 is not a loopback address") {
			t.Errorf("mailbot %s with http beyond loopback and no auth: %v", cmd, r)
		}
	}
}

func TestRunRefusesUnreadableHTTPSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), "scripts_dir: scripts\nstate_dir: state\nhttp:\n  listen: 127.0.0.1:0\n  auth:\n    bearer: { token_env: MB_UNSET_TOKEN }\n")
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	r := mailbot(t, dir, nil, "run", "-c", "mailbot.yaml")
	if r.code != exitFailure || !strings.Contains(r.stderr, "environment variable MB_UNSET_TOKEN is not set") {
		t.Errorf("run with an unset http.auth token variable: %v", r)
	}
	r = mailbot(t, dir, nil, "check", "-c", "mailbot.yaml")
	if r.code == 0 || !strings.Contains(r.stdout, "mailbot.yaml:6: http.auth.bearer.token_env: environment variable MB_UNSET_TOKEN is not set") {
		t.Errorf("check with an unset http.auth token variable: %v", r)
	}
}

func TestQueueHelpSaysDeadExitStatus(t *testing.T) {
	t.Parallel()
	r := mailbot(t, t.TempDir(), nil, "queue", "--help")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, `"queue dead" exits 1 when there are dead letters`) {
		t.Errorf("queue --help: %v", r)
	}
}
