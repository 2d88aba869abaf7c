package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

// relayConfig writes a config whose default account "relay" is srv, with
// STARTTLS, AUTH (password from $RELAY_PW) and srv's certificate trusted.
func relayConfig(t *testing.T, srv *devserver.Server) string {
	t.Helper()
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	writeFile(t, filepath.Join(dir, "relay-ca.pem"), string(ca))
	host, port, _ := net.SplitHostPort(srv.Addr())
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), fmt.Sprintf(`scripts_dir: scripts
state_dir: state
default_account: relay
accounts:
  relay:
    host: %s
    port: %s
    tls: starttls
    username: bot
    password_env: RELAY_PW
    ca_file: relay-ca.pem
`, host, port))
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	return dir
}

var relayEnv = []string{"RELAY_PW=s3cret"}

func TestMailSendQueueAndDeliver(t *testing.T) {
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
	writeFile(t, filepath.Join(dir, "enqueue.lua"), `
local mail = require("mail")
local to = arg[1]
local id, dup = mail.send(mail.message{ from = "bot@example.org", to = to, subject = "queued for " .. to, text = "hi" },
                          { key = "k-" .. to })
print(id, dup)`)

	// exec without --deliver only queues.
	r := mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "enqueue.lua", "ops@example.org")
	if r.code != 0 {
		t.Fatalf("exec: %v", r)
	}
	id := strings.Fields(r.stdout)[0]
	if len(srv.Messages()) != 0 {
		t.Fatal("exec without --deliver sent mail")
	}
	// The same key again is a no-op returning the same id.
	r = mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "enqueue.lua", "ops@example.org")
	if f := strings.Fields(r.stdout); r.code != 0 || f[0] != id || f[1] != "true" {
		t.Fatalf("second enqueue with the same key: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "list")
	if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "ops@example.org") {
		t.Fatalf("queue list: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "show", id)
	if r.code != 0 || !strings.Contains(r.stdout, "Subject: queued for ops@example.org") {
		t.Fatalf("queue show: %v", r)
	}

	// exec --deliver delivers everything due, this message included.
	r = mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "--deliver", "enqueue.lua", "gone@example.org")
	if r.code != exitFailure || !strings.Contains(r.stderr, "1 bounced") {
		t.Fatalf("exec --deliver with one permanent refusal: %v", r)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].To[0] != "ops@example.org" || !msgs[0].TLS || msgs[0].AuthUser != "bot" {
		t.Fatalf("delivered: %+v", msgs)
	}

	// The refused one is a dead letter with the server's reply; requeue
	// puts it back. queue dead exits 1 while there are dead letters.
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "dead")
	if r.code != exitFailure || !strings.Contains(r.stdout, "gone@example.org") || !strings.Contains(r.stdout, "550") {
		t.Fatalf("queue dead: %v", r)
	}
	deadID := regexp.MustCompile(`(?m)^(\S+)\s+relay`).FindStringSubmatch(r.stdout)
	if deadID == nil {
		t.Fatalf("no id in %q", r.stdout)
	}
	if r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "requeue", deadID[1]); r.code != 0 {
		t.Fatalf("requeue: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "list")
	if !strings.Contains(r.stdout, deadID[1]) {
		t.Fatalf("requeued message not listed: %v", r)
	}
	if r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "delete", deadID[1]); r.code != 0 {
		t.Fatalf("delete: %v", r)
	}
	if r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "show", deadID[1]); r.code == 0 {
		t.Fatalf("show after delete: %v", r)
	}
}

// TestMailSendListDelivered: exec --deliver delivers what one mail.send
// of a list queued, each message once, and a repeated run with the same
// keys queues nothing new.
func TestMailSendListDelivered(t *testing.T) {
	t.Parallel()
	srv := devtest.Start(t, devserver.Config{Users: map[string]string{"bot": "s3cret"}})
	dir := relayConfig(t, srv)
	writeFile(t, filepath.Join(dir, "list.lua"), `
local mail = require("mail")
local items = {}
for i = 1, 50 do
  items[i] = { msg = mail.message{ from = "bot@example.org", to = "ops@example.org", subject = "n" .. i, text = "hi" }, key = "k" .. i }
end
local dups = 0
for _, r in ipairs(mail.send(items)) do if r.duplicate then dups = dups + 1 end end
print(dups)`)
	for run, wantDups := range []string{"0", "50"} {
		r := mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "--deliver", "list.lua")
		if r.code != 0 || strings.TrimSpace(r.stdout) != wantDups {
			t.Fatalf("run %d: %v (want %s duplicates)", run, r, wantDups)
		}
		if n := len(srv.Messages()); n != 50 {
			t.Fatalf("run %d: relay has %d messages, want 50", run, n)
		}
	}
}

// TestCrashDuringDelivery is the outbox's promise: kill -9 the daemon in the
// middle of delivering 500 queued messages, start it again, and every
// message arrives at least once.
func TestCrashDuringDelivery(t *testing.T) {
	t.Parallel()
	srv := devtest.Start(t, devserver.Config{
		Users: map[string]string{"bot": "s3cret"},
		// A relay that takes a moment per message, so the kill lands
		// in the middle of delivery.
		Hooks: devserver.Hooks{Data: func(*devserver.Message) *devserver.Reject {
			time.Sleep(2 * time.Millisecond)
			return nil
		}},
	})
	dir := relayConfig(t, srv)
	const n = 500
	// Keys make the second start's on_start enqueue a no-op for messages
	// already accepted.
	writeFile(t, filepath.Join(dir, "scripts", "burst.lua"), fmt.Sprintf(`
local mail = require("mail")
mailbot.on_start(function()
  for i = 1, %d do
    mail.send(mail.message{ from = "bot@example.org", to = "ops@example.org",
                            subject = "burst " .. i, text = "message " .. i }, { key = "burst-" .. i })
  end
end)`, n))

	start := func() (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command(mailbotBin, "run", "-c", "mailbot.yaml")
		cmd.Dir = dir
		cmd.Env = cleanEnv(relayEnv...)
		logs := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, logs
	}
	cmd, logs := start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := srv.WaitMessages(ctx, 50); err != nil {
		t.Fatalf("delivery did not start: %v\n%s", err, logs.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	atKill := len(srv.Messages())

	cmd, logs = start()
	bySubject := map[string]int{}
	deadline := time.Now().Add(60 * time.Second)
	for len(bySubject) < n {
		if time.Now().After(deadline) {
			t.Fatalf("after restart only %d of %d messages arrived\n%s", len(bySubject), n, logs.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.WaitMessages(ctx, len(srv.Messages())+1)
		cancel()
		bySubject = map[string]int{}
		for _, m := range srv.Messages() {
			bySubject[subject(t, m.Data)]++
		}
	}
	dups := 0
	for _, c := range bySubject {
		dups += c - 1
	}
	t.Logf("killed after %d deliveries; all %d messages arrived; %d duplicate(s)", atKill, n, dups)
	if dups > 1 {
		t.Errorf("%d duplicates: more than the one message that can be in flight at the kill", dups)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("run after restart did not exit 0: %v\n%s", err, logs.String())
	}
}

// treeDigest hashes every name, mode, modification time and content
// under dir.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestQueueDamagedFiles is issue 11's scenario: bytes cut off one queued
// file, another truncated, a third filled with random bytes. The queue
// command reports all three without touching the spool, delivery keeps
// them in corrupt/ with an error record, and the one that lost only five
// bytes is requeued and delivered.
func TestQueueDamagedFiles(t *testing.T) {
	t.Parallel()
	srv := devtest.Start(t, devserver.Config{Users: map[string]string{"bot": "s3cret"}})
	dir := relayConfig(t, srv)
	writeFile(t, filepath.Join(dir, "enqueue.lua"), `
local mail = require("mail")
print((mail.send(mail.message{ from = "bot@example.org", to = arg[1], subject = "for " .. arg[1], text = "hello there" })))`)
	writeFile(t, filepath.Join(dir, "noop.lua"), `print("ok")`)
	ids := map[string]string{}
	for _, who := range []string{"cut", "trunc", "random", "intact"} {
		r := mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "enqueue.lua", who+"@example.org")
		if r.code != 0 {
			t.Fatalf("enqueue: %v", r)
		}
		ids[who] = strings.TrimSpace(r.stdout)
	}
	spool := filepath.Join(dir, "state", "outbox")
	damage := func(who string, fn func([]byte) []byte) {
		p := filepath.Join(spool, "queue", ids[who])
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(p, fn(b), 0o600)
	}
	damage("cut", func(b []byte) []byte { return b[:len(b)-5] })
	damage("trunc", func(b []byte) []byte { return b[:40] })
	damage("random", func(b []byte) []byte {
		r := rand.New(rand.NewPCG(3, 4))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return b
	})

	before := treeDigest(t, spool)
	r := mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "list")
	if r.code != 0 || !strings.Contains(r.stdout, ids["intact"]) || strings.Contains(r.stdout, ids["cut"]) ||
		!strings.Contains(r.stdout, "3 damaged message files kept aside (not delivered): see mailbot queue corrupt") {
		t.Fatalf("queue list: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "dead")
	if r.code != 0 || !strings.Contains(r.stdout, "3 damaged") {
		t.Fatalf("queue dead: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "corrupt")
	if r.code != 0 || strings.Count(r.stdout, "queue/ (not moved yet)") != 3 {
		t.Fatalf("queue corrupt: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "show", ids["cut"])
	if r.code != 0 || !strings.Contains(r.stdout, "5 missing at the end") || !strings.Contains(r.stdout, "Requeue:      yes") ||
		!strings.Contains(r.stdout, "Subject: for cut@example.org") {
		t.Fatalf("queue show (damaged): %v", r)
	}
	if after := treeDigest(t, spool); after != before {
		t.Fatal("read-only queue commands changed the spool")
	}

	// Delivery moves them to corrupt/ and says so at error level.
	r = mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "--deliver", "noop.lua")
	if r.code != 0 || strings.Count(r.stderr, "level=ERROR msg=\"outbox: damaged spool file moved to corrupt/") != 3 {
		t.Fatalf("exec --deliver: %v", r)
	}
	for _, who := range []string{"cut", "trunc", "random"} {
		for _, name := range []string{ids[who], ids[who] + ".note"} {
			if _, err := os.Stat(filepath.Join(spool, "corrupt", name)); err != nil {
				t.Errorf("corrupt/%s: %v", name, err)
			}
		}
	}
	if msgs := srv.Messages(); len(msgs) != 1 || msgs[0].To[0] != "intact@example.org" {
		t.Fatalf("delivered: %+v", msgs)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "corrupt")
	if r.code != 0 || strings.Count(r.stdout, "corrupt/ (from queue/)") != 3 || !strings.Contains(r.stdout, "no: ") {
		t.Fatalf("queue corrupt after the move: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "requeue", ids["random"])
	if r.code != exitFailure || !strings.Contains(r.stderr, "cannot be requeued") {
		t.Fatalf("requeue of random bytes: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "requeue", ids["cut"])
	if r.code != 0 || !strings.Contains(r.stdout, "recovered from a damaged file") {
		t.Fatalf("requeue: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "--deliver", "noop.lua")
	if r.code != 0 {
		t.Fatalf("exec --deliver: %v", r)
	}
	msgs := srv.Messages()
	if len(msgs) != 2 || msgs[1].To[0] != "cut@example.org" || subject(t, msgs[1].Data) != "for cut@example.org" {
		t.Fatalf("recovered message not delivered: %+v", msgs)
	}
	// The others are still kept.
	if r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "list"); !strings.Contains(r.stdout, "2 damaged") {
		t.Fatalf("queue list: %v", r)
	}
}

// TestQueuePendingReason: for a partly delivered message, queue list and
// show give why the pending recipient waits, and keep the permanent
// refusal visible as such.
func TestQueuePendingReason(t *testing.T) {
	t.Parallel()
	srv := devtest.Start(t, devserver.Config{
		Users: map[string]string{"bot": "s3cret"},
		Hooks: devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
			switch {
			case strings.HasPrefix(to, "a-gone@"):
				return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
			case strings.HasPrefix(to, "z-busy@"):
				return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 2, 0}, Message: "mailbox busy"}
			}
			return nil
		}},
	})
	dir := relayConfig(t, srv)
	writeFile(t, filepath.Join(dir, "send.lua"), `
local mail = require("mail")
print((mail.send(mail.message{ from = "bot@example.org", to = {"a-gone@example.org", "m-ok@example.org", "z-busy@example.org"}, subject = "s", text = "t" })))`)
	r := mailbot(t, dir, relayEnv, "exec", "-c", "mailbot.yaml", "--deliver", "send.lua")
	if r.code == 0 && len(srv.Messages()) != 1 {
		t.Fatalf("exec --deliver: %v", r)
	}
	id := strings.TrimSpace(r.stdout)
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "z-busy@example.org: 451 4.2.0 mailbox busy") ||
		!strings.Contains(r.stdout, "[1 refused permanently: see show]") || strings.Contains(r.stdout, "no such user") {
		t.Fatalf("queue list: %v", r)
	}
	r = mailbot(t, dir, relayEnv, "queue", "-c", "mailbot.yaml", "show", id)
	if r.code != 0 || !strings.Contains(r.stdout, "Waiting:      z-busy@example.org: 451 4.2.0 mailbox busy (temporary; retried)") ||
		!strings.Contains(r.stdout, "Refused:      a-gone@example.org: 550 5.1.1 no such user (permanent; not retried)") ||
		!strings.Contains(r.stdout, "Delivered to: m-ok@example.org") || !strings.Contains(r.stdout, "Last reply:   451") {
		t.Fatalf("queue show: %v", r)
	}
}
