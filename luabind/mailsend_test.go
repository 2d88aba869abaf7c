package luabind

import (
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/outbox"
)

func TestMailSendEnqueuesDurably(t *testing.T) {
	ob, err := outbox.Open(t.TempDir(), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	L := NewState(Options{Outbox: ob, SMTP: SMTPOptions{DefaultAccount: "relay", Accounts: map[string]Account{"relay": {}}}})
	defer L.Close()
	err = L.DoString(`
local mail = require("mail")
local m = mail.message{ from = "Reports <reports@example.com>", to = "ops@example.com",
                        bcc = "audit@example.com", subject = "daily", text = "hi" }
id1, dup1 = mail.send(m, { key = "daily-2026-11-22" })
id2, dup2 = mail.send(m, { key = "daily-2026-11-22" })
ok, err = pcall(mail.send, m, { account = "nope" })`)
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := L.GetGlobal("id1").String(), L.GetGlobal("id2").String()
	if id1 == "" || id1 != id2 || L.GetGlobal("dup1") != lua.LFalse || L.GetGlobal("dup2") != lua.LTrue {
		t.Errorf("ids %q %q, duplicates %v %v: the same key must be queued once", id1, id2, L.GetGlobal("dup1"), L.GetGlobal("dup2"))
	}
	if !strings.Contains(L.GetGlobal("err").String(), `unknown account "nope"`) {
		t.Errorf("unknown account error = %v", L.GetGlobal("err"))
	}
	item, data, err := ob.Get(id1)
	if err != nil {
		t.Fatal(err)
	}
	if item.Account != "relay" || item.From != "reports@example.com" || strings.Join(item.To, ",") != "ops@example.com,audit@example.com" {
		t.Errorf("queued envelope %+v", item)
	}
	if !strings.Contains(string(data), "Subject: daily") || strings.Contains(string(data), "audit@") {
		t.Errorf("queued bytes:\n%s", data)
	}
}

func TestMailSendWithoutOutboxExplains(t *testing.T) {
	L := NewState(Options{})
	defer L.Close()
	err := L.DoString(`require("mail").send(require("mail").message{ from = "a@example.com", to = "b@example.com" })`)
	if err == nil || !strings.Contains(err.Error(), "no outbox") {
		t.Fatalf("mail.send without an outbox = %v", err)
	}
}
