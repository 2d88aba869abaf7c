package outbox

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mailbot/mailbot/devserver"
)

// A delivery's log record and its sent/ record name the message and
// carry the relay's final reply, with its queue id.
func TestDeliveryTraceable(t *testing.T) {
	e := newEnv(t, nil)
	srv := startServer(t, devserver.Hooks{})
	id := e.enqueue(t, 1, "a@mailbot.test", "b@mailbot.test")
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Sent: 1}) {
		t.Fatalf("report %+v", rep)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server got %d messages", len(msgs))
	}
	wantReply := "250 2.0.0 OK: queued as " + msgs[0].QueueID
	a := e.logs.attempts()
	if len(a) != 1 {
		t.Fatalf("%d attempt records", len(a))
	}
	rec := a[0]
	for key, want := range map[string]string{
		"message_id": "<m1@mailbot.test>",
		"account":    "default",
		"reply":      wantReply,
		"smtp_text":  "OK: queued as " + msgs[0].QueueID,
		"outcome":    "sent",
	} {
		if got := rec[key].String(); got != want {
			t.Errorf("log %s = %q, want %q", key, got, want)
		}
	}
	if got := rec["recipients"].Any(); !slices.Equal(got.([]string), []string{"a@mailbot.test", "b@mailbot.test"}) {
		t.Errorf("log recipients = %v", got)
	}
	if rec["attempt"].Int64() != 1 {
		t.Errorf("log attempt = %v", rec["attempt"])
	}
	// Closing makes the off-path sent/ record settle.
	e.ob.Close()
	it, _, err := e.ob.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(e.ob.path(StateSent, id))
	if err != nil {
		t.Fatal(err)
	}
	disk, _, err := decodeFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range []Item{it, disk} {
		if got.State != StateSent || got.Reply != wantReply || got.MessageID != "<m1@mailbot.test>" ||
			got.Subject != "report 1" || got.SentAt.IsZero() || got.Attempts != 1 {
			t.Errorf("sent record %+v", got)
		}
	}
}

// OnDeadLetter is called once per dead-lettering, with the dead letter's
// fields; reopening the spool reports nothing again, and messages
// enqueued WithoutAlerts never call it.
func TestOnDeadLetterOnce(t *testing.T) {
	var mu sync.Mutex
	var got []Item
	hook := func(o *Options) {
		o.OnDeadLetter = func(it Item) { mu.Lock(); got = append(got, it); mu.Unlock() }
	}
	e := newEnv(t, hook)
	srv := startServer(t, devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
		if strings.HasPrefix(to, "gone") {
			return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	id := e.enqueue(t, 1, "gone@mailbot.test", "ok@mailbot.test")
	quiet, _, err := e.ob.Enqueue(WithoutAlerts(context.Background()), Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"gone2@mailbot.test"}}, testMsg(2))
	if err != nil {
		t.Fatal(err)
	}
	if rep := e.deliverOnce(t, account(srv.Addr())); rep.Bounced != 2 {
		t.Fatalf("report %+v", rep)
	}
	mu.Lock()
	if len(got) != 1 {
		t.Fatalf("OnDeadLetter called %d times, want once: %+v", len(got), got)
	}
	d := got[0]
	mu.Unlock()
	if d.ID != id || d.Account != "default" || !slices.Equal(d.To, []string{"gone@mailbot.test"}) ||
		d.Subject != "report 1" || d.MessageID != "<m1@mailbot.test>" || d.Attempts != 1 ||
		!strings.Contains(d.LastError, "no such user") || d.State != StateDead || d.DeadReason != "refused permanently" {
		t.Errorf("dead letter %+v", d)
	}
	if it, _, err := e.ob.Get(quiet); err != nil || !it.NoAlert || it.State != StateDead {
		t.Errorf("quiet message %+v, %v", it, err)
	}
	e.ob.Close()
	e.ob = e.open(t, hook)
	e.deliverOnce(t, account(srv.Addr()))
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Errorf("after reopening, OnDeadLetter called %d times in all, want still once", len(got))
	}
}
