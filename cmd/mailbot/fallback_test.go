package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

// TestFallbackDelivery: mail.send for an account whose relay is down is
// delivered by exec --deliver through its fallback, with the fallback's
// own TLS settings and credentials, exactly once; queue show says who
// delivered it.
func TestFallbackDelivery(t *testing.T) {
	t.Parallel()
	backup := devtest.Start(t, devserver.Config{Users: map[string]string{"backup-bot": "b4ckup"}, RequireAuth: true})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "backup-ca.pem"), string(mustRead(t, writeCA(t, backup))))
	downHost, downPort, _ := net.SplitHostPort(closedPort(t))
	host, port, _ := net.SplitHostPort(backup.Addr())
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), fmt.Sprintf(`scripts_dir: scripts
state_dir: state
default_account: primary
accounts:
  primary:
    host: %s
    port: %s
    tls: starttls
    username: bot
    password_env: PRIMARY_PW
    fallback: [backup]
  backup:
    host: %s
    port: %s
    tls: starttls
    username: backup-bot
    password_env: BACKUP_PW
    ca_file: backup-ca.pem
`, downHost, downPort, host, port))
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	writeFile(t, filepath.Join(dir, "send.lua"), `
local mail = require("mail")
print((mail.send(mail.message{ from = "bot@example.org", to = "ops@example.org", subject = "via backup", text = "hi" })))`)
	env := []string{"PRIMARY_PW=primary-secret", "BACKUP_PW=b4ckup"}

	r := mailbot(t, dir, env, "check", "-c", "mailbot.yaml")
	if r.code != 0 {
		t.Fatalf("check: %v", r)
	}
	r = mailbot(t, dir, env, "exec", "-c", "mailbot.yaml", "--deliver", "send.lua")
	if r.code != 0 {
		t.Fatalf("exec --deliver: %v", r)
	}
	id := strings.TrimSpace(r.stdout)
	msgs := backup.Messages()
	if len(msgs) != 1 || !msgs[0].TLS || msgs[0].AuthUser != "backup-bot" || subject(t, msgs[0].Data) != "via backup" {
		t.Fatalf("backup received %+v, want one message over TLS as backup-bot", msgs)
	}
	if !strings.Contains(r.stderr, "delivering through a fallback account") || !strings.Contains(r.stderr, "fallback_for=primary") {
		t.Errorf("log lacks the failover: %s", r.stderr)
	}
	if strings.Contains(r.stderr, "primary-secret") || strings.Contains(r.stderr, "b4ckup") {
		t.Errorf("a password appears in the log: %s", r.stderr)
	}
	r = mailbot(t, dir, env, "queue", "-c", "mailbot.yaml", "show", id)
	if r.code != 0 || !strings.Contains(r.stdout, "State:        sent") || !strings.Contains(r.stdout, "Delivered by: backup (fallback of primary)") {
		t.Fatalf("queue show: %v", r)
	}
	// Nothing left to send: a second run delivers nothing again.
	writeFile(t, filepath.Join(dir, "noop.lua"), "local x = 1\n")
	if r = mailbot(t, dir, env, "exec", "-c", "mailbot.yaml", "--deliver", "noop.lua"); r.code != 0 {
		t.Fatalf("second exec --deliver: %v", r)
	}
	if n := len(backup.Messages()); n != 1 {
		t.Errorf("backup has %d messages after a second run, want 1", n)
	}

	// A fallback that names no account is reported with its line.
	cfg := mustRead(t, filepath.Join(dir, "mailbot.yaml"))
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), strings.Replace(string(cfg), "fallback: [backup]", "fallback: [backup, nowhere]", 1))
	r = mailbot(t, dir, env, "check", "-c", "mailbot.yaml")
	if r.code != 1 || !strings.Contains(r.stdout+r.stderr, `mailbot.yaml:11: accounts.primary.fallback: no account named "nowhere"`) {
		t.Fatalf("check with an unknown fallback: %v", r)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
