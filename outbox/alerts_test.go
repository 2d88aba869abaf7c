package outbox

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
	// Closing settles the moves into sent/ and flushes the receipts.
	e.ob.Close()
	for _, ob := range []*Outbox{e.ob, e.open(t, func(o *Options) { o.SkipRecovery = true })} {
		it, _, err := ob.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if it.State != StateSent || it.Reply != wantReply || it.MessageID != "<m1@mailbot.test>" ||
			it.Subject != "report 1" || !it.SentAt.Equal(e.clock.Now()) || it.Attempts != 1 {
			t.Errorf("sent record %+v", it)
		}
	}
	raw, err := os.ReadFile(filepath.Join(e.dir, dirReceipts, e.clock.Now().UTC().Format(receiptDay)+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"` + id + `","at":"2026-03-02T08:00:00Z","reply":"` + wantReply + `","attempts":1}` + "\n"; string(raw) != want {
		t.Errorf("receipts file %q, want %q", raw, want)
	}
}

// Receipts are pruned once their messages' sent/ files are.
func TestReceiptsPruned(t *testing.T) {
	e := newEnv(t, nil)
	srv := startServer(t, devserver.Hooks{})
	e.enqueue(t, 1)
	e.deliverOnce(t, account(srv.Addr()))
	day := filepath.Join(e.dir, dirReceipts, e.clock.Now().UTC().Format(receiptDay)+".jsonl")
	if _, err := os.Stat(day); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(DefaultKeyRetention)
	if err := e.ob.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(day); err != nil {
		t.Errorf("receipts pruned too early: %v", err)
	}
	e.clock.Advance(48 * time.Hour)
	if err := e.ob.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(day); !os.IsNotExist(err) {
		t.Errorf("receipts not pruned: %v", err)
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
