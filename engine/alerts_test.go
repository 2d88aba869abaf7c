package engine

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/outbox"
	"github.com/mailbot/mailbot/smtp"
)

// A failed run calls every on_run_failed handler with the failure; a
// failing on_run_failed handler is logged and calls none again.
func TestOnRunFailed(t *testing.T) {
	h := newHarness(t, nil)
	h.write("a-alert.lua", `
local probe = require("probe")
mailbot.on_run_failed(function(ev)
  probe.hit("failed", table.concat({ev.script, ev.trigger, ev.kind, ev.where, ev.error}, "|"))
  error("the pager is down")
end, { name = "page" })`)
	h.write("bad.lua", `
mailbot.on_start(function()
  error("boom")
end, { name = "boot" })`)
	h.start()
	got := h.waitHit("failed").value
	parts := strings.Split(got, "|")
	if len(parts) != 5 || parts[0] != "bad.lua" || parts[1] != "bad#boot" || parts[2] != "error" ||
		parts[3] != "bad.lua:3" || !strings.Contains(parts[4], "boom") {
		t.Errorf("on_run_failed event %q, want bad.lua|bad#boot|error|bad.lua:3|...boom", got)
	}
	h.waitLogged("run failed", "a-alert.lua")
	// Shutdown waits for every run in flight, a recursive alert included.
	h.stop()
	close(h.hits)
	n := 0
	for x := range h.hits {
		if x.name == "failed" {
			n++
		}
	}
	if n != 0 {
		t.Errorf("on_run_failed called %d more times: the failing handler triggered itself", n)
	}
	if runs := h.e.Stats().Runs; runs != 2 {
		t.Errorf("%d runs, want 2 (bad#boot and one alert)", runs)
	}
}

// A message the relay refuses permanently calls on_dead_letter once, with
// the dead letter's fields. Mail the handler sends that bounces too raises
// no alert, and a restart does not report old dead letters again.
func TestOnDeadLetter(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{Hooks: devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
		if strings.HasPrefix(to, "gone") {
			return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}}})
	h := newHarness(t, nil)
	var calls atomic.Int32
	obDir := t.TempDir()
	open := func() *outbox.Outbox {
		ob, err := outbox.Open(obDir, outbox.Options{OnDeadLetter: func(it outbox.Item) {
			calls.Add(1)
			h.e.NotifyDeadLetter(DeadLetterFromItem(it))
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ob.Close() })
		return ob
	}
	ob := open()
	accounts := map[string]outbox.Account{"relay": {
		Dialer: &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost", Timeout: 5 * time.Second}, Addr: srv.Addr()}}
	deliver := func(ob *outbox.Outbox, bounced int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rep, err := ob.DeliverOnce(ctx, accounts)
		if err != nil || rep.Bounced != bounced {
			t.Fatalf("DeliverOnce = %+v, %v; want %d bounced", rep, err, bounced)
		}
	}
	h.cfg.Lua.Outbox = ob
	h.cfg.Lua.SMTP = luabind.SMTPOptions{DefaultAccount: "relay"}
	h.write("ops.lua", `
local probe, mail = require("probe"), require("mail")
mailbot.on_start(function()
  mail.send(mail.message{ from = "bot@example.org", to = { "gone@example.org", "ok@example.org" },
    subject = "weekly report", text = "hi" })
  probe.hit("queued")
end)
mailbot.on_dead_letter(function(ev)
  probe.hit("dead", table.concat({ev.id, ev.account, table.concat(ev.recipients, ","), ev.subject,
    ev.attempts, ev.last_error, ev.message_id, ev.reason}, "|"))
  mail.send(mail.message{ from = "bot@example.org", to = "gone-ops@example.org",
    subject = "dead letter " .. ev.id, text = ev.last_error })
  probe.hit("alerted")
end, { name = "mail-ops" })`)
	h.start()
	h.waitHit("queued")
	deliver(ob, 1)
	dead, err := ob.Dead()
	if err != nil || len(dead) != 1 {
		t.Fatalf("Dead = %v, %v", dead, err)
	}
	want := fmt.Sprintf("%s|relay|gone@example.org|weekly report|1|", dead[0].ID)
	got := h.waitHit("dead").value
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "no such user") ||
		!strings.Contains(got, "|"+dead[0].MessageID+"|refused permanently") || dead[0].MessageID == "" {
		t.Errorf("on_dead_letter event %q, want %q...no such user|<message id>|refused permanently", got, want)
	}
	h.waitHit("alerted")
	deliver(ob, 1) // the handler's own mail bounces: no alert
	if n := calls.Load(); n != 1 {
		t.Errorf("OnDeadLetter called %d times, want once", n)
	}

	h.stop()
	ob.Close()
	ob = open()
	h.cfg.Lua.Outbox = ob
	h.write("ops.lua", `mailbot.on_dead_letter(function(ev) require("probe").hit("dead", ev.id) end)`)
	h.start()
	deliver(ob, 0)
	h.stop()
	if n := calls.Load(); n != 1 {
		t.Errorf("after a restart, OnDeadLetter called %d times in all, want still once", n)
	}
	close(h.hits)
	for x := range h.hits {
		if x.name == "dead" {
			t.Errorf("on_dead_letter called again: %q", x.value)
		}
	}
}

// Alert handlers are listed with their kinds, like the other triggers.
func TestAlertTriggerKinds(t *testing.T) {
	h := newHarness(t, nil)
	h.write("ops.lua", `
mailbot.on_dead_letter(function() end, { name = "dl", timeout = "5s" })
mailbot.on_run_failed(function() end)`)
	infos, errs := ListTriggers(h.cfg, time.Now())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	var got []string
	for _, ti := range infos {
		got = append(got, ti.ID+"="+ti.Kind)
	}
	if strings.Join(got, " ") != "ops#dl=dead_letter ops#2=run_failed" {
		t.Errorf("triggers %v", got)
	}
}

// mailbot fire runs an alert handler with a sample event; its failure
// calls no other alert (fire is not the daemon).
func TestFireAlertSample(t *testing.T) {
	h := newHarness(t, nil)
	h.write("ops.lua", `
local probe = require("probe")
mailbot.on_dead_letter(function(ev)
  probe.hit("dead", ev.id .. " " .. ev.recipients[1] .. " " .. tostring(ev.fired))
end, { name = "dl" })
mailbot.on_run_failed(function(ev)
  probe.hit("failed", ev.script .. " " .. ev.trigger .. " " .. ev.kind)
  error("pager down")
end, { name = "rf" })`)
	for _, tc := range []struct{ id, want string }{
		{"ops#dl", "fired-sample nobody@example.invalid true"},
		{"ops#rf", "ops.lua ops#rf error"},
	} {
		if _, err := Fire(context.Background(), h.cfg, FireRequest{ID: tc.id}, h.fireOpts(nil)...); err != nil {
			t.Fatalf("Fire %s: %v", tc.id, err)
		}
		if got := (<-h.hits).value; got != tc.want {
			t.Errorf("fire %s: handler saw %q, want %q", tc.id, got, tc.want)
		}
	}
	if len(h.hits) != 0 {
		t.Errorf("%d more handler calls", len(h.hits))
	}
}

// A failed on_dead_letter handler is a failed run like any other: the
// on_run_failed handlers hear of it.
func TestFailingDeadLetterHandlerIsReported(t *testing.T) {
	h := newHarness(t, nil)
	h.write("ops.lua", `
local probe = require("probe")
mailbot.on_dead_letter(function(ev)
  error("cannot page about " .. ev.id)
end, { name = "dl" })
mailbot.on_run_failed(function(ev)
  probe.hit("failed", ev.trigger .. " " .. ev.error)
end)`)
	h.start()
	h.e.NotifyDeadLetter(DeadLetter{ID: "Q42", Recipients: []string{"gone@example.org"}})
	if got := h.waitHit("failed").value; !strings.HasPrefix(got, "ops#dl ") || !strings.Contains(got, "cannot page about Q42") {
		t.Errorf("on_run_failed saw %q", got)
	}
}
