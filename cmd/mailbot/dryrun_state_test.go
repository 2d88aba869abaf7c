package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailbot/mailbot/engine"
)

// dryRunFixture is a deployment with real state worth protecting: a file
// ledger that knows one dropped file, a mailbot.state, a schedule's last
// run three hours ago (so catch-up fires), and a real outbox holding a
// queued message with an idempotency key.
type dryRunFixture struct {
	dir, state, drop string
	idpHits          atomic.Int64 // requests to the OAuth2 token endpoint
}

const dryRunConfig = `scripts_dir: scripts
state_dir: state
default_account: relay
accounts:
  relay:
    host: smtp.example.invalid
    port: 587
    username: bot
    password_env: RELAY_PASSWORD
    from: bot@example.com
  m365:
    host: smtp.example.invalid
    username: bot@example.com
    from: bot@example.com
    oauth2:
      provider: generic
      token_url: %s
      client_id: mailbot-test
      refresh_token_env: M365_REFRESH
`

// dropsScript handles three kinds of drops: *.csv moved to done/ after a
// mail.send (keyed by content) and a mailbot.state write, *.del deleted,
// *.bad failing (a real run moves it to failed/ with a .error note).
const dropsScript = `local mail = require("mail")
mailbot.on_file({ dir = "../drop", pattern = "*.csv", after = "move:done", settle = "20ms" }, function(ev)
  local n = mailbot.state.get("count", 0) + 1
  mailbot.state.set("count", n)
  mail.send(mail.message{ from = "bot@example.com", to = "ops@example.com",
    subject = "drop " .. ev.name .. " #" .. n, text = "rows" }, { key = "drop-" .. ev.sha256 })
end)
mailbot.on_file({ dir = "../drop", pattern = "*.del", after = "delete", settle = "20ms" }, function(ev) end)
mailbot.on_file({ dir = "../drop", pattern = "*.bad", settle = "20ms" }, function(ev)
  error("cannot parse " .. ev.name)
end)
`

// schedScript catches up an hourly schedule: one message through
// c:sendmail, one through mail.send, and one mail.send whose key the real
// outbox already has (a duplicate, so nothing).
const schedScript = `local smtp = require("smtp")
local mail = require("mail")
mailbot.every("1h", function(ev)
  local c = smtp.connect{}
  c:login()
  c:sendmail("bot@example.com", { "ops@example.com" }, "From: bot@example.com\r\nTo: ops@example.com\r\nSubject: hourly direct\r\n\r\nhi\r\n")
  c:quit()
  mail.send(mail.message{ from = "bot@example.com", to = "ops@example.com",
    subject = "hourly queued", text = "x" }, { key = "hourly-" .. ev.scheduled_at })
  local _, dup = mail.send(mail.message{ from = "bot@example.com", to = "ops@example.com",
    subject = "report again", text = "x" }, { key = "report-1" })
  assert(dup, "the real outbox's key must count in a dry run")
end, { catchup = true })
`

// queueScript queues the real outbox's message (for exec without a dry
// run, so it stays queued).
const queueScript = `local mail = require("mail")
mail.send(mail.message{ from = "bot@example.com", to = "ops@example.com",
  subject = "report 1", text = "queued for real" }, { key = "report-1" })
`

// execScript is what exec --dry-run runs: a direct message, a queued one,
// and a duplicate of the real outbox's key.
const execScript = `local smtp = require("smtp")
local mail = require("mail")
local c = smtp.connect{}
c:login()
c:sendmail("bot@example.com", { "ops@example.com" }, "From: bot@example.com\r\nTo: ops@example.com\r\nSubject: exec direct\r\n\r\nhi\r\n")
c:quit()
mail.send(mail.message{ from = "bot@example.com", to = "ops@example.com", subject = "exec queued", text = "x" }, { key = "exec-1" })
local _, dup = mail.send(mail.message{ from = "bot@example.com", to = "ops@example.com", subject = "report again", text = "x" }, { key = "report-1" })
assert(dup, "the real outbox's key must count in a dry run")
-- The list form: queued with one flush, delivered to the capture server
-- once; the real outbox's key counts for its items too.
local res = mail.send({ mail.message{ from = "bot@example.com", to = "ops@example.com", subject = "exec list 1", text = "x" },
  { msg = mail.message{ from = "bot@example.com", to = "ops@example.com", subject = "list again", text = "x" }, key = "report-1" } })
assert(#res == 2 and not res[1].duplicate and res[2].duplicate, "mail.send with a list in a dry run")
-- An OAuth2 account: no token is asked for, none is cached.
local o = smtp.connect{ account = "m365" }
o:login()
o:sendmail("bot@example.com", { "ops@example.com" }, "From: bot@example.com\r\nTo: ops@example.com\r\nSubject: exec oauth2 direct\r\n\r\nhi\r\n")
o:quit()
mail.send(mail.message{ from = "bot@example.com", to = "ops@example.com", subject = "exec oauth2 queued", text = "x" }, { account = "m365" })
`

// failScript queues a message and then fails: in a dry run the message is
// in the dry-run folder all the same, as mail.send delivers at once.
const failScript = `local mail = require("mail")
mail.send(mail.message{ from = "bot@example.com", to = "ops@example.com", subject = "queued before failing", text = "x" })
local f = io.open("/sentinel")  -- io is not there under strict: the script fails here
`

var dryRunEnvVars = []string{"RELAY_PASSWORD=secret", "M365_REFRESH=refresh-token-seed"}

func newDryRunFixture(t *testing.T) *dryRunFixture {
	t.Helper()
	dir := t.TempDir()
	f := &dryRunFixture{dir: dir, state: filepath.Join(dir, "state"), drop: filepath.Join(dir, "drop")}
	// The identity provider must never hear from a dry run.
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.idpHits.Add(1)
		http.Error(w, "a dry run asked for a token", http.StatusTeapot)
	}))
	t.Cleanup(idp.Close)
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), fmt.Sprintf(dryRunConfig, idp.URL+"/token"))
	writeFile(t, filepath.Join(dir, "scripts", "drops.lua"), dropsScript)
	writeFile(t, filepath.Join(dir, "scripts", "sched.lua"), schedScript)
	writeFile(t, filepath.Join(dir, "tools", "queue.lua"), queueScript)
	writeFile(t, filepath.Join(dir, "tools", "exec.lua"), execScript)
	writeFile(t, filepath.Join(dir, "tools", "fail.lua"), failScript)
	// The real outbox: one queued message with key report-1 (the relay
	// does not exist; nothing tries to deliver it here).
	if r := mailbot(t, dir, dryRunEnvVars, "exec", "-c", "mailbot.yaml", "tools/queue.lua"); r.code != 0 {
		t.Fatalf("queueing the real message: %v", r)
	}
	writeFile(t, filepath.Join(f.state, "state", "drops.json"), `{"count": 5}`+"\n")
	last := time.Now().Add(-3*time.Hour - 10*time.Minute).UTC()
	lr, _ := json.Marshal(map[string]time.Time{"sched|every 1h": last})
	writeFile(t, filepath.Join(f.state, "state", ".lastrun.json"), string(lr)+"\n")
	// Drops: a.csv (new), x.del, y.bad, and old.csv which the ledger
	// knows as done (a real run would finish its move to done/).
	writeFile(t, filepath.Join(f.drop, "a.csv"), "day,total\nmon,12\n")
	writeFile(t, filepath.Join(f.drop, "x.del"), "delete me\n")
	writeFile(t, filepath.Join(f.drop, "y.bad"), "garbage\n")
	old := filepath.Join(f.drop, "old.csv")
	writeFile(t, old, "day,total\nsun,3\n")
	fi, err := os.Stat(old)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("day,total\nsun,3\n"))
	line, _ := json.Marshal(map[string]any{"path": old, "size": fi.Size(), "mtime_ns": fi.ModTime().UnixNano(),
		"sha256": hex.EncodeToString(sum[:]), "outcome": "done", "at": time.Now().UTC()})
	writeFile(t, filepath.Join(f.state, "ledger.jsonl"), string(line)+"\n")
	return f
}

// digest hashes the real state and the drop folder: names, modes, sizes,
// modification times and contents of everything, the folders included.
func (f *dryRunFixture) digest(t *testing.T) string {
	t.Helper()
	return treeDigest(t, f.state) + " " + treeDigest(t, f.drop)
}

// runDry runs "mailbot run --dry-run DIR" until it has captured want
// messages and reported the three drops, then stops it with SIGTERM.
func (f *dryRunFixture) runDry(t *testing.T, out string, want int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"run", "-c", "mailbot.yaml", "--dry-run"}
	if out != "" {
		args = append(args, out)
	}
	cmd := exec.CommandContext(ctx, mailbotBin, args...)
	cmd.Dir = f.dir
	cmd.Env = cleanEnv(dryRunEnvVars...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if out == "" {
		out = filepath.Join(f.state, "dry-run")
	}
	before := len(emlFiles(t, out))
	// A subprocess: poll its output with a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for len(emlFiles(t, out))-before < want || strings.Count(logs.String(), "dry run: file handled and left in place") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d messages and 3 drops; log:\n%s", want, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run --dry-run did not exit 0: %v\n%s", err, logs.String())
	}
	return logs.String()
}

func emlFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// capturedSubjects returns the subjects of the messages in files, sorted,
// checking each has its transcript.
func capturedSubjects(t *testing.T, files []string) []string {
	t.Helper()
	var out []string
	for _, e := range files {
		raw, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, subject(t, raw))
		tr, err := os.ReadFile(strings.TrimSuffix(e, ".eml") + ".transcript")
		if err != nil || !strings.Contains(string(tr), "C: RCPT TO:<ops@example.com>") {
			t.Errorf("transcript of %s: %v\n%s", filepath.Base(e), err, tr)
		}
	}
	sort.Strings(out)
	return out
}

// runDryWant is what one "run --dry-run" of the fixture captures: the
// catch-up's two messages, the drop, and the real outbox's waiting
// message, which the daemon would deliver.
var runDryWant = []string{"drop a.csv #6", "hourly direct", "hourly queued", "report 1"}

// TestDryRunLeavesRealStateUnchanged hashes the whole real state_dir and
// the drop folder before and after run --dry-run (file drops with move,
// delete and failure, a catch-up schedule, mailbot.state writes, mail.send
// with idempotency keys), exec --dry-run and send --dry-run.
func TestDryRunLeavesRealStateUnchanged(t *testing.T) {
	t.Parallel()
	f := newDryRunFixture(t)
	out := filepath.Join(f.dir, "captured")
	before := f.digest(t)

	logs := f.runDry(t, out, len(runDryWant))
	if got := capturedSubjects(t, emlFiles(t, out)); fmt.Sprint(got) != fmt.Sprint(runDryWant) {
		t.Errorf("run --dry-run captured %q, want %q", got, runDryWant)
	}
	for _, want := range []string{
		"would_be=moved would_be_at=" + filepath.Join(f.drop, "done", "a.csv"),
		"would_be=deleted would_be_at=" + filepath.Join(f.drop, "x.del"),
		"would_be=failed would_be_at=" + filepath.Join(f.drop, "failed", "y.bad"),
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "old.csv") {
		t.Errorf("old.csv, done in the real ledger, must be neither handled nor moved:\n%s", logs)
	}
	if got := f.digest(t); got != before {
		t.Fatalf("run --dry-run changed the real state or the drop folder")
	}
	// The overlay has what the run would have written.
	overlay := filepath.Join(out, "state")
	if b, err := os.ReadFile(filepath.Join(overlay, "state", "drops.json")); err != nil || !strings.Contains(string(b), `"count": 6`) {
		t.Errorf("overlay mailbot.state: %s %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(overlay, "mailbot.lock")); err != nil {
		t.Errorf("the dry run should lock its overlay: %v", err)
	}

	n := len(emlFiles(t, out))
	r := mailbot(t, f.dir, dryRunEnvVars, "exec", "-c", "mailbot.yaml", "--dry-run", out, "tools/exec.lua")
	if r.code != 0 {
		t.Fatalf("exec --dry-run: %v", r)
	}
	if got := capturedSubjects(t, emlFiles(t, out)[n:]); fmt.Sprint(got) != "[exec direct exec list 1 exec oauth2 direct exec oauth2 queued exec queued]" {
		t.Errorf("exec --dry-run captured %q", got)
	}
	if got := f.digest(t); got != before {
		t.Fatalf("exec --dry-run changed the real state")
	}
	n = len(emlFiles(t, out))
	if r := mailbot(t, f.dir, dryRunEnvVars, "exec", "-c", "mailbot.yaml", "--dry-run", out, "tools/fail.lua"); r.code == 0 {
		t.Fatalf("tools/fail.lua should fail: %v", r)
	}
	if got := capturedSubjects(t, emlFiles(t, out)[n:]); fmt.Sprint(got) != "[queued before failing]" {
		t.Errorf("exec --dry-run of a failing script captured %q", got)
	}

	n = len(emlFiles(t, out))
	r = mailbot(t, f.dir, dryRunEnvVars, "send", "-c", "mailbot.yaml", "--account", "relay", "--from", "bot@example.com",
		"--to", "ops@example.com", "--subject", "one-off", "--body", "hi", "--dry-run", out)
	if r.code != 0 {
		t.Fatalf("send --dry-run: %v", r)
	}
	r = mailbot(t, f.dir, dryRunEnvVars, "send", "-c", "mailbot.yaml", "--account", "m365", "--from", "bot@example.com",
		"--to", "ops@example.com", "--subject", "one-off oauth2", "--body", "hi", "--dry-run", out)
	if r.code != 0 {
		t.Fatalf("send --dry-run --account m365: %v", r)
	}
	if got := capturedSubjects(t, emlFiles(t, out)[n:]); fmt.Sprint(got) != "[one-off one-off oauth2]" {
		t.Errorf("send --dry-run captured %q", got)
	}
	if got := f.digest(t); got != before {
		t.Fatalf("send --dry-run changed the real state")
	}
	if n := f.idpHits.Load(); n != 0 {
		t.Errorf("the dry runs made %d request(s) to the identity provider", n)
	}
}

// TestDryRunTwiceSameMessages: a second dry run into the same (default)
// folder starts from the real state again, so it captures the same
// messages, and the state_dir holds nothing new but the dry-run folder.
func TestDryRunTwiceSameMessages(t *testing.T) {
	t.Parallel()
	f := newDryRunFixture(t)
	out := filepath.Join(f.state, "dry-run")
	f.runDry(t, "", len(runDryWant))
	first := capturedSubjects(t, emlFiles(t, out))
	if fmt.Sprint(first) != fmt.Sprint(runDryWant) {
		t.Fatalf("first dry run captured %q, want %q", first, runDryWant)
	}
	n := len(emlFiles(t, out))
	f.runDry(t, "", len(runDryWant))
	second := capturedSubjects(t, emlFiles(t, out)[n:])
	if fmt.Sprint(second) != fmt.Sprint(first) {
		t.Errorf("second dry run captured %q, the first %q", second, first)
	}
	ents, err := os.ReadDir(f.state)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[dry-run files ledger.jsonl outbox state]" {
		t.Errorf("state_dir holds %v: a dry run may add only dry-run/ (no mailbot.lock)", names)
	}
}

// TestDryRunBesideDaemon: a dry run neither takes nor needs the real
// state_dir's lock, so it runs while the daemon holds it.
func TestDryRunBesideDaemon(t *testing.T) {
	t.Parallel()
	f := newDryRunFixture(t)
	lock, err := engine.LockStateDir(f.state) // the daemon's lock
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	out := filepath.Join(f.dir, "captured")
	f.runDry(t, out, len(runDryWant))
	if got := capturedSubjects(t, emlFiles(t, out)); fmt.Sprint(got) != fmt.Sprint(runDryWant) {
		t.Errorf("captured %q, want %q", got, runDryWant)
	}
}

// TestSetupDryRun checks the overlay: seeded afresh from state_dir at each
// setup (what an earlier dry run left is gone), locked so that a second dry
// run cannot share the folder, and free again after Close.
func TestSetupDryRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := &Config{StateDir: "state", dir: dir}
	state := filepath.Join(dir, "state")
	writeFile(t, filepath.Join(state, "state", "s.json"), `{"n": 1}`+"\n")
	writeFile(t, filepath.Join(state, "ledger.jsonl"), "")
	logger := slog.New(slog.DiscardHandler)
	out := filepath.Join(dir, "dry")
	stale := filepath.Join(out, "state", "state", "stale.json")
	writeFile(t, stale, `{"left": "by an earlier dry run"}`+"\n")
	writeFile(t, filepath.Join(out, "state", "outbox", "queue", "x"), "an earlier dry run's message")

	d, err := setupDryRun(cfg, out, logger)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "state", "state", "s.json")); err != nil || string(b) != `{"n": 1}`+"\n" {
		t.Errorf("overlay not seeded: %q %v", b, err)
	}
	for _, p := range []string{stale, filepath.Join(out, "state", "outbox")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived the new dry run's setup: %v", p, err)
		}
	}
	if _, err := setupDryRun(cfg, out, logger); err == nil || !strings.Contains(err.Error(), "in use by another dry run") {
		t.Errorf("a second dry run into the same folder: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = setupDryRun(cfg, out, logger)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	d.Close()
	if _, err := os.Stat(filepath.Join(state, engine.LockFileName)); !os.IsNotExist(err) {
		t.Errorf("the real state_dir got a lock file: %v", err)
	}

	for _, tc := range []struct {
		dir string
		ok  bool
	}{
		{state, false},
		{dir, false},
		{filepath.Join(state, "state", "x"), false},
		{filepath.Join(state, "outbox"), false},
		{filepath.Join(state, "files", "dry"), false},
		{filepath.Join(state, "dry-run"), true},
		{filepath.Join(state, "dry-run-2"), true},
		{filepath.Join(dir, "elsewhere"), true},
	} {
		d, err := setupDryRun(cfg, tc.dir, logger)
		if (err == nil) != tc.ok {
			t.Errorf("setupDryRun(%s): %v, want ok %v", tc.dir, err, tc.ok)
		}
		d.Close()
	}
}
