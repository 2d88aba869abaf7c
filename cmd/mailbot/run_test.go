package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// copyExamples copies examples/ into a temp folder with the dev server on
// a free port, and returns the folder.
func copyExamples(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	src := filepath.Join("..", "..", "examples")
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == "var" && d.IsDir() {
			return filepath.SkipDir // a developer's local run output
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dst, "mailbot.yaml")
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	patched := strings.Replace(string(cfg), "listen: 127.0.0.1:2525", "listen: 127.0.0.1:0", 1)
	if patched == string(cfg) {
		t.Fatal("examples/mailbot.yaml no longer has listen: 127.0.0.1:2525")
	}
	// Tests run in parallel: the http endpoint gets a free port.
	patched = strings.Replace(patched, "listen: 127.0.0.1:9725", "listen: "+freePort(t), 1)
	if err := os.WriteFile(cfgPath, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// maildirMessages returns the raw messages in dir/var/maildir/new.
func maildirMessages(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "var", "maildir", "new", "*"))
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[subject(t, data)] = data
	}
	return out
}

func TestExamplesCheck(t *testing.T) {
	t.Parallel()
	dir := copyExamples(t)
	r := mailbot(t, dir, nil, "check", "-c", "mailbot.yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "ok (1 account(s), 5 script(s))") {
		t.Fatalf("the example config should check clean: %v", r)
	}
}

func TestExamplesExec(t *testing.T) {
	t.Parallel()
	tests := []struct {
		script  string
		args    func(dir string) []string
		subject string
		check   func(t *testing.T, dir string, raw []byte)
	}{
		{script: "smtp-raw.lua", subject: "smtp-raw: step by step"},
		{
			script:  "daily-report.lua",
			subject: "Service report ",
			check: func(t *testing.T, dir string, raw []byte) {
				want, err := os.ReadFile(filepath.Join(dir, "data", "report.csv"))
				if err != nil {
					t.Fatal(err)
				}
				if got, ok := attachment(t, raw, "report.csv"); !ok || !bytes.Equal(got, want) {
					t.Errorf("report.csv attachment missing or changed")
				}
				if !bytes.Contains(raw, []byte("text/html")) || !bytes.Contains(raw, []byte("text/plain")) {
					t.Errorf("want HTML and plain-text bodies")
				}
			},
		},
		{script: "healthcheck.lua", subject: "[mailbot] health DOWN: heartbeat file"},
		{
			script: "drop-notify.lua",
			args: func(dir string) []string {
				p := filepath.Join(dir, "incoming.txt")
				writeFile(t, p, "dropped content\n")
				return []string{p}
			},
			subject: "New file: incoming.txt",
			check: func(t *testing.T, dir string, raw []byte) {
				if got, ok := attachment(t, raw, "incoming.txt"); !ok || string(got) != "dropped content\n" {
					t.Errorf("attachment %q", got)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.script, func(t *testing.T) {
			t.Parallel()
			dir := copyExamples(t)
			// --deliver: daily-report queues through the outbox.
			args := []string{"exec", "-c", "mailbot.yaml", "--deliver", filepath.Join("scripts", tc.script)}
			if tc.args != nil {
				args = append(args, tc.args(dir)...)
			}
			r := mailbot(t, dir, nil, args...)
			if r.code != 0 {
				t.Fatalf("exec %s: %v", tc.script, r)
			}
			msgs := maildirMessages(t, dir)
			if len(msgs) != 1 {
				t.Fatalf("want one message in the Maildir, got %d: %v", len(msgs), r)
			}
			for subj, raw := range msgs {
				if !strings.HasPrefix(subj, tc.subject) {
					t.Errorf("subject %q, want prefix %q", subj, tc.subject)
				}
				if tc.check != nil {
					tc.check(t, dir, raw)
				}
			}
		})
	}
}

func TestExamplesExecDryRun(t *testing.T) {
	t.Parallel()
	dir := copyExamples(t)
	r := mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "--dry-run", "scripts/smtp-raw.lua")
	if r.code != 0 {
		t.Fatalf("dry-run exec: %v", r)
	}
	if n := len(maildirMessages(t, dir)); n != 0 {
		t.Errorf("dry run delivered %d message(s) to the dev server", n)
	}
	// Default folder: <state_dir>/dry-run.
	emls, _ := filepath.Glob(filepath.Join(dir, "var", "state", "dry-run", "*.eml"))
	trs, _ := filepath.Glob(filepath.Join(dir, "var", "state", "dry-run", "*.transcript"))
	if len(emls) != 1 || len(trs) != 1 {
		t.Fatalf("want one .eml and one .transcript, got %v %v\n%v", emls, trs, r)
	}
	tr, err := os.ReadFile(trs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"C: STARTTLS", "C: VRFY ops@localhost", "C: QUIT"} {
		if !strings.Contains(string(tr), want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
}

// TestRun starts the daemon on a copy of the examples, waits for the
// healthcheck's start note, drops a file and waits for its notification,
// then stops the daemon with SIGTERM.
func TestRun(t *testing.T) {
	t.Parallel()
	dir := copyExamples(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mailbotBin, "run", "-c", "mailbot.yaml")
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The daemon is a subprocess, so poll its Maildir with a deadline.
	waitFor := func(what string, cond func(map[string][]byte) bool) map[string][]byte {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			msgs := maildirMessages(t, dir)
			if cond(msgs) {
				return msgs
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the start note", func(m map[string][]byte) bool { _, ok := m["[mailbot] started"]; return ok })

	drop := filepath.Join(dir, "var", "drop")
	writeFile(t, filepath.Join(drop, ".incoming"), "payload 42\n")
	// Rename into place, as careful uploaders do.
	if err := os.Rename(filepath.Join(drop, ".incoming"), filepath.Join(drop, "payload.txt")); err != nil {
		t.Fatal(err)
	}
	msgs := waitFor("the drop notification", func(m map[string][]byte) bool { _, ok := m["New file: payload.txt"]; return ok })
	if got, ok := attachment(t, msgs["New file: payload.txt"], "payload.txt"); !ok || string(got) != "payload 42\n" {
		t.Errorf("attachment %q", got)
	}
	for _, s := range []string{"[mailbot] started", "[mailbot] health DOWN: heartbeat file ../var/heartbeat does not exist"} {
		if _, ok := msgs[s]; !ok {
			t.Errorf("missing message %q", s)
		}
	}
	// The sales report goes out at start: chart inline, CSV and XLSX
	// attached, from the SQLite database built from its seed.
	const salesSubject = "Sales report: 2026-11-09 to 2026-12-06"
	msgs = waitFor("the sales report", func(m map[string][]byte) bool { _, ok := m[salesSubject]; return ok })
	sales := msgs[salesSubject]
	if png, ok := attachment(t, sales, "revenue.png"); !ok || !(bytes.HasPrefix(png, []byte("\x89PNG")) || bytes.HasPrefix(png, []byte("iVBORw0KGgo"))) {
		t.Errorf("the sales report has no PNG chart (found %v)", ok)
	}
	for _, name := range []string{"sales-2026-12-06.csv", "sales-2026-12-06.xlsx"} {
		if _, ok := attachment(t, sales, name); !ok {
			t.Errorf("the sales report has no %s", name)
		}
	}
	if !bytes.Contains(sales, []byte("cid:revenue-chart")) || !bytes.Contains(sales, []byte("<revenue-chart>")) {
		t.Errorf("the sales report's HTML does not show the chart inline")
	}
	if _, err := os.Stat(filepath.Join(dir, "var", "sales.db")); err != nil {
		t.Errorf("the example database was not created from its seed: %v", err)
	}
	if _, ok := msgs["smtp-raw: step by step"]; ok {
		t.Errorf("smtp-raw.lua must not send under run")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run did not exit 0 on SIGTERM: %v\n%s", err, logs.String())
	}
	if _, err := os.Stat(filepath.Join(drop, "done", "payload.txt")); err != nil {
		t.Errorf("the dropped file was not moved to done/: %v", err)
	}
	for _, s := range []string{"dev server listening", "engine started", "drop notified", "mailbot stopped"} {
		if !strings.Contains(logs.String(), s) {
			t.Errorf("log lacks %q", s)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the subprocess copier goroutines
// and the test reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunDryRun checks that "run --dry-run" sends nothing to the dev
// server and writes the start note as .eml with its transcript.
func TestRunDryRun(t *testing.T) {
	t.Parallel()
	dir := copyExamples(t)
	out := filepath.Join(dir, "captured")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mailbotBin, "run", "-c", "mailbot.yaml", "--dry-run", out)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	var emls []string
	for len(emls) < 2 { // the start note and the health alert
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for captured messages; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
		emls, _ = filepath.Glob(filepath.Join(out, "*.eml"))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run --dry-run did not exit 0: %v\n%s", err, logs.String())
	}
	subjects := map[string]bool{}
	for _, e := range emls {
		raw, err := os.ReadFile(e)
		if err != nil {
			t.Fatal(err)
		}
		subjects[subject(t, raw)] = true
		tr, err := os.ReadFile(strings.TrimSuffix(e, ".eml") + ".transcript")
		if err != nil || !strings.Contains(string(tr), "C: AUTH PLAIN <redacted>") {
			t.Errorf("transcript for %s: %v\n%s", e, err, tr)
		}
	}
	if !subjects["[mailbot] started"] {
		t.Errorf("captured subjects %v lack the start note", subjects)
	}
	if n := len(maildirMessages(t, dir)); n != 0 {
		t.Errorf("dry run delivered %d message(s)", n)
	}
}

// TestRunSecondDaemonRefused starts one daemon, checks that a second one on
// the same state_dir is refused with the holder's PID while exec, check
// and queue still work, and that the state_dir is free once the first has
// stopped.
func TestRunSecondDaemonRefused(t *testing.T) {
	t.Parallel()
	dir := copyExamples(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	startDaemon := func() (*exec.Cmd, *syncBuffer) {
		t.Helper()
		cmd := exec.CommandContext(ctx, mailbotBin, "run", "-c", "mailbot.yaml")
		cmd.Dir = dir
		cmd.Env = cleanEnv()
		logs := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		// A subprocess: poll its log with a deadline.
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(logs.String(), "engine started") {
			if time.Now().After(deadline) {
				t.Fatalf("daemon did not start; log:\n%s", logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return cmd, logs
	}
	stop := func(cmd *exec.Cmd, logs *syncBuffer) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("daemon did not exit 0: %v\n%s", err, logs.String())
		}
	}

	first, firstLogs := startDaemon()
	r := mailbot(t, dir, nil, "run", "-c", "mailbot.yaml")
	lockFile := filepath.Join(dir, "var", "state", "mailbot.lock")
	want := fmt.Sprintf("is in use by mailbot PID %d (lock file %s); run one daemon per state_dir", first.Process.Pid, lockFile)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Fatalf("second daemon: want a refusal containing %q, got %v", want, r)
	}
	for _, args := range [][]string{
		{"check", "-c", "mailbot.yaml"},
		{"queue", "list", "-c", "mailbot.yaml"},
		{"exec", "-c", "mailbot.yaml", "--dry-run", "scripts/smtp-raw.lua"},
	} {
		if r := mailbot(t, dir, nil, args...); r.code != 0 {
			t.Errorf("%v next to a running daemon: %v", args, r)
		}
	}
	stop(first, firstLogs)
	again, againLogs := startDaemon()
	stop(again, againLogs)
}
