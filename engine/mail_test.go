package engine

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/luabind"
)

// TestDroppedFileIsMailed is the engine's reason to exist: a file lands,
// the handler mails it with the file attached, over STARTTLS and AUTH to a
// real SMTP server, and the file moves to done/.
func TestDroppedFileIsMailed(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{Users: map[string]string{"bot": "s3cret"}})
	_, p, _ := net.SplitHostPort(srv.Addr())
	port, _ := strconv.Atoi(p)

	h := newHarness(t, nil)
	h.cfg.Lua.SMTP = luabind.SMTPOptions{
		DefaultAccount: "relay",
		Accounts: map[string]luabind.Account{"relay": {
			Host: "127.0.0.1", Port: port, RootCAs: srv.CertPool(), Username: "bot",
			Password: func() (string, error) { return "s3cret", nil },
		}},
	}
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	h.write("notify.lua", fmt.Sprintf(`
local smtp, mail = require("smtp"), require("mail")
mailbot.on_file({ dir = %q, pattern = "*.csv", settle = "100ms", after = "move:done" }, function(ev)
  local m = mail.message{ from = "bot@example.org", to = "ops@example.org",
    subject = "arrived: " .. ev.name, text = ev.size .. " bytes",
    attachments = { { path = ev.path } } }
  local c = smtp.connect()
  c:login()
  c:send_message(m)
  c:quit()
end)`, drop))
	h.start()
	waitDir(t, drop)
	if err := os.WriteFile(filepath.Join(drop, "sales.csv"), []byte("region,total\nnorth,42\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	msgs, err := srv.WaitMessages(ctx, 1)
	if err != nil {
		h.dumpLogs()
		t.Fatalf("no mail arrived: %v", err)
	}
	m := msgs[0]
	if !m.TLS || m.AuthUser != "bot" || strings.Join(m.To, ",") != "ops@example.org" {
		t.Errorf("delivery: tls=%v auth=%q to=%v", m.TLS, m.AuthUser, m.To)
	}
	if !strings.Contains(string(m.Data), "Subject: arrived: sales.csv") || !strings.Contains(string(m.Data), "sales.csv") {
		t.Errorf("message:\n%s", m.Data)
	}
	h.waitLog("file handled", "notify.lua")
	if _, err := os.Stat(filepath.Join(drop, "done", "sales.csv")); err != nil {
		t.Errorf("file not moved to done/: %v", err)
	}
}
