package outbox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

func TestRelayDownThenUp(t *testing.T) {
	e := newEnv(t, nil)
	addr := closedPort(t)
	for i := range 5 {
		e.enqueue(t, i)
	}
	rep := e.deliverOnce(t, account(addr))
	if rep != (Report{Deferred: 5}) {
		t.Fatalf("relay down: report %+v, want 5 deferred", rep)
	}
	items, err := e.ob.List()
	if err != nil || len(items) != 5 {
		t.Fatalf("List = %d items, %v", len(items), err)
	}
	for _, it := range items {
		if it.Attempts != 1 || it.LastError == "" || !it.NextAttempt.After(e.clock.Now()) {
			t.Errorf("after refused connection: %+v", it)
		}
	}
	// Not due yet: nothing is tried.
	if rep := e.deliverOnce(t, account(addr)); rep != (Report{}) {
		t.Fatalf("before backoff: report %+v, want nothing", rep)
	}
	srv := startServerAt(t, addr)
	e.clock.Advance(2 * time.Minute)
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Sent: 5}) {
		t.Fatalf("relay up: report %+v", rep)
	}
	if got := len(srv.Messages()); got != 5 {
		t.Errorf("server got %d messages, want 5", got)
	}
	if items, _ := e.ob.List(); len(items) != 0 {
		t.Errorf("queue not empty: %+v", items)
	}
}

func startServerAt(t *testing.T, addr string) *devserver.Server {
	t.Helper()
	srv, err := devserver.Start(devserver.Config{Addr: addr})
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func TestTemporaryThenSuccess(t *testing.T) {
	e := newEnv(t, nil)
	var n atomic.Int32
	srv := startServer(t, devserver.Hooks{Data: func(*devserver.Message) *devserver.Reject {
		if n.Add(1) == 1 {
			return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 3, 0}, Message: "try later"}
		}
		return nil
	}})
	id := e.enqueue(t, 1)
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Deferred: 1}) {
		t.Fatalf("first attempt: %+v", rep)
	}
	it, _, err := e.ob.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if it.LastReply == nil || it.LastReply.Code != 451 || it.LastReply.Enhanced != "4.3.0" {
		t.Fatalf("LastReply = %+v, want 451 4.3.0", it.LastReply)
	}
	if want := e.clock.Now().Add(time.Minute); !it.NextAttempt.Equal(want) {
		t.Errorf("NextAttempt = %v, want %v (Initial backoff, no jitter)", it.NextAttempt, want)
	}
	e.clock.Advance(time.Minute)
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Sent: 1}) {
		t.Fatalf("second attempt: %+v", rep)
	}
	// The bytes arrive exactly as enqueued, Message-ID included.
	msgs := srv.Messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "Message-ID: <m1@mailbot.test>") {
		t.Fatalf("server messages: %+v", msgs)
	}
	logs := e.logs.attempts()
	if len(logs) != 2 {
		t.Fatalf("%d attempt records, want 2", len(logs))
	}
	for i, want := range []struct {
		outcome string
		code    int64
	}{{"deferred", 451}, {"sent", 250}} {
		l := logs[i]
		if l["outcome"].String() != want.outcome || l["smtp_code"].Int64() != want.code ||
			l["account"].String() != "default" || l["host"].String() != srv.Addr() ||
			l["from"].String() != "bot@mailbot.test" || l["size"].Int64() != int64(len(testMsg(1))) {
			t.Errorf("record %d: %v", i, l)
		}
	}
	st, _ := e.ob.Stats()
	if st.Sent != 1 || st.Deferred != 1 || st.Enqueued != 1 || st.Queued != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestPermanentFailureIsDeadLetter(t *testing.T) {
	e := newEnv(t, nil)
	srv := startServer(t, devserver.Hooks{Mail: func(string) *devserver.Reject {
		return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 7, 1}, Message: "sender not allowed"}
	}})
	id := e.enqueue(t, 1, "a@mailbot.test", "b@mailbot.test")
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Bounced: 1}) {
		t.Fatalf("report %+v", rep)
	}
	dead, err := e.ob.Dead()
	if err != nil || len(dead) != 1 {
		t.Fatalf("Dead = %+v, %v", dead, err)
	}
	d := dead[0]
	if d.ID != id || d.State != StateDead || d.DeadReason != "refused permanently" ||
		!slices.Equal(d.To, []string{"a@mailbot.test", "b@mailbot.test"}) || len(d.Refused) != 2 {
		t.Fatalf("dead letter %+v", d)
	}
	if r := d.Refused[0].Reply; r.Code != 550 || r.Enhanced != "5.7.1" || r.Command != "MAIL" || !strings.Contains(r.Text, "sender not allowed") {
		t.Errorf("recorded reply %+v", r)
	}
	if items, _ := e.ob.List(); len(items) != 0 {
		t.Errorf("still queued: %+v", items)
	}
}

func TestPartialRecipients(t *testing.T) {
	e := newEnv(t, nil)
	var bTries atomic.Int32
	srv := startServer(t, devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
		switch to {
		case "b@mailbot.test":
			if bTries.Add(1) == 1 {
				return &devserver.Reject{Code: 450, Enhanced: [3]int{4, 2, 1}, Message: "mailbox busy"}
			}
		case "c@mailbot.test":
			return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}})
	id := e.enqueue(t, 1, "a@mailbot.test", "b@mailbot.test", "c@mailbot.test")
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Deferred: 1}) {
		t.Fatalf("first attempt: %+v", rep)
	}
	it, _, _ := e.ob.Get(id)
	if !slices.Equal(it.To, []string{"b@mailbot.test"}) || !slices.Equal(it.Delivered, []string{"a@mailbot.test"}) ||
		len(it.Refused) != 1 || it.Refused[0].Recipient != "c@mailbot.test" || it.Refused[0].Reply.Code != 550 {
		t.Fatalf("after partial delivery: %+v", it)
	}
	e.clock.Advance(time.Minute)
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Bounced: 1}) {
		t.Fatalf("second attempt: %+v (c stays refused, so the message ends dead for c)", rep)
	}
	msgs := srv.Messages()
	if len(msgs) != 2 || !slices.Equal(msgs[0].To, []string{"a@mailbot.test"}) || !slices.Equal(msgs[1].To, []string{"b@mailbot.test"}) {
		t.Fatalf("server transactions: %+v", msgs)
	}
	d, _, err := e.ob.Get(id)
	if err != nil || d.State != StateDead || !slices.Equal(d.To, []string{"c@mailbot.test"}) ||
		!slices.Equal(d.Delivered, []string{"a@mailbot.test", "b@mailbot.test"}) {
		t.Fatalf("dead letter %+v, %v", d, err)
	}
}

// TestPendingRecipientReason: after a partial delivery the queued
// message's last error is why its pending recipient waits, not another
// recipient's permanent refusal (which sorts first here), and each
// pending recipient has its own reply in Waiting.
func TestPendingRecipientReason(t *testing.T) {
	e := newEnv(t, nil)
	srv := startServer(t, devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
		switch to {
		case "a-gone@mailbot.test":
			return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
		case "z-busy@mailbot.test":
			return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 2, 0}, Message: "mailbox busy"}
		}
		return nil
	}})
	id := e.enqueue(t, 1, "a-gone@mailbot.test", "m-ok@mailbot.test", "z-busy@mailbot.test")
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Deferred: 1}) {
		t.Fatalf("attempt: %+v", rep)
	}
	it, _, _ := e.ob.Get(id)
	if !slices.Equal(it.To, []string{"z-busy@mailbot.test"}) || it.LastReply == nil || it.LastReply.Code != 451 ||
		!strings.Contains(it.LastError, "mailbox busy") {
		t.Errorf("last error %q %+v, want z-busy's 451", it.LastError, it.LastReply)
	}
	if len(it.Waiting) != 1 || it.Waiting[0].Recipient != "z-busy@mailbot.test" || it.Waiting[0].Reply.Code != 451 || it.Waiting[0].Reply.Enhanced != "4.2.0" {
		t.Errorf("Waiting = %+v", it.Waiting)
	}
	if len(it.Refused) != 1 || it.Refused[0].Recipient != "a-gone@mailbot.test" || it.Refused[0].Reply.Code != 550 {
		t.Errorf("Refused = %+v", it.Refused)
	}
}

func TestMaxAgeExceeded(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxAge = 24 * time.Hour })
	addr := closedPort(t)
	id := e.enqueue(t, 1)
	e.deliverOnce(t, account(addr))
	e.clock.Advance(25 * time.Hour)
	if rep := e.deliverOnce(t, account(addr)); rep != (Report{Bounced: 1}) {
		t.Fatalf("report %+v", rep)
	}
	d, _, err := e.ob.Get(id)
	if err != nil || d.State != StateDead || d.DeadReason != "maximum queue age exceeded" || d.Attempts != 2 || len(d.Refused) != 1 {
		t.Fatalf("dead letter %+v, %v", d, err)
	}
}

func TestUnknownOutcomeIsRetriedAndLogged(t *testing.T) {
	srv := smtptest.NewServer(t, `S: 220 fake.test ESMTP
C: EHLO localhost
S: 250-fake.test
S: 250 8BITMIME
C~ ^MAIL FROM:<bot@mailbot.test>
S: 250 ok
C: RCPT TO:<ops@mailbot.test>
S: 250 ok
C: DATA
S: 354 go ahead
! data
! close
`)
	e := newEnv(t, nil)
	id := e.enqueue(t, 1)
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{Deferred: 1}) {
		t.Fatalf("report %+v", rep)
	}
	if err := srv.Wait(); err != nil {
		t.Fatal(err)
	}
	it, _, err := e.ob.Get(id)
	if err != nil || it.State != StateQueued || it.Attempts != 1 {
		t.Fatalf("item %+v, %v", it, err)
	}
	logs := e.logs.attempts()
	if len(logs) != 1 || logs[0]["outcome"].String() != "unknown-deferred" {
		t.Fatalf("attempt records %v", logs)
	}
}

func TestDeliverWakesOnEnqueueAndReusesSession(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PollInterval = time.Hour; o.Now = time.Now })
	srv := startServer(t, devserver.Hooks{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var derr error
	wg.Go(func() { derr = e.ob.Deliver(ctx, account(srv.Addr())) })
	for i := range 20 {
		e.enqueue(t, i)
	}
	e.logs.waitAttempts(t, 20)
	cancel()
	wg.Wait()
	if !errors.Is(derr, context.Canceled) {
		t.Errorf("Deliver = %v, want context.Canceled", derr)
	}
	st, _ := e.ob.Stats()
	if st.Sent != 20 || st.Queued != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestSecondInstanceNextToDaemon(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PollInterval = 20 * time.Millisecond; o.Now = time.Now })
	srv := startServer(t, devserver.Hooks{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.ob.Deliver(ctx, account(srv.Addr())) })
	defer func() { cancel(); wg.Wait() }()

	cli := e.open(t, func(o *Options) { o.Now = time.Now })
	for i := range 10 {
		if _, _, err := cli.Enqueue(context.Background(), Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"x@mailbot.test"}}, testMsg(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.List(); err != nil {
			t.Fatalf("List next to a running daemon: %v", err)
		}
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if _, err := srv.WaitMessages(wctx, 10); err != nil {
		t.Fatalf("daemon did not pick up the CLI's messages: %v", err)
	}
	// The CLI's duplicate check sees what the daemon delivered.
	if _, dup, err := cli.Enqueue(context.Background(), Envelope{Account: "default", To: []string{"x@mailbot.test"}}, testMsg(3)); err != nil || !dup {
		t.Errorf("re-enqueue of a delivered message: dup=%v err=%v", dup, err)
	}
}

func TestRateLimitAndConcurrency(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Now = time.Now })
	srv := startServer(t, devserver.Hooks{})
	for i := range 6 {
		e.enqueue(t, i)
	}
	accts := account(srv.Addr())
	a := accts["default"]
	a.Concurrency, a.RatePerSecond = 3, 50
	accts["default"] = a
	start := time.Now()
	if rep := e.deliverOnce(t, accts); rep.Sent != 6 {
		t.Fatalf("report %+v", rep)
	}
	// Six sends spaced 20ms apart take at least 100ms.
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("6 messages at 50/s took %v", d)
	}
}

func TestClassify(t *testing.T) {
	se := func(code int) *smtp.SMTPError { return &smtp.SMTPError{Command: "MAIL", Code: code} }
	tests := []struct {
		name            string
		err             error
		temporary, keep bool
		unknown         bool
	}{
		{"4xx", &smtp.SenderRefusedError{Err: se(451)}, true, true, false},
		{"5xx", &smtp.DataError{Err: se(554)}, false, true, false},
		{"connect", &smtp.ConnectError{Addr: "x", Err: se(554)}, true, false, false},
		{"auth", &connectPhaseError{&smtp.AuthError{Err: se(535)}}, true, false, false},
		{"timeout", &smtp.TimeoutError{Op: "read"}, true, false, false},
		{"disconnected", &smtp.DisconnectedError{Op: "read"}, true, false, false},
		{"unknown outcome", &smtp.UnknownOutcomeError{Err: &smtp.DisconnectedError{Op: "read"}}, true, false, true},
		{"not supported", &smtp.NotSupportedError{Extension: "SMTPUTF8"}, false, true, false},
		{"other", errors.New("boom"), true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := classify(tc.err)
			if f.temporary != tc.temporary || f.keep != tc.keep || f.unknown != tc.unknown {
				t.Errorf("classify = %+v", f)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempts int
		rand     float64
		want     time.Duration
	}{
		{1, 0.5, time.Minute},
		{2, 0.5, 2 * time.Minute},
		{4, 0.5, 8 * time.Minute},
		{20, 0.5, time.Hour},
		{1, 0, 48 * time.Second},
		{1, 0.9999999999, 72 * time.Second},
	}
	for _, tc := range tests {
		ob := &Outbox{opts: Options{Rand: func() float64 { return tc.rand }}}
		if err := ob.opts.setDefaults(); err != nil {
			t.Fatal(err)
		}
		if got := ob.backoff(tc.attempts); got.Round(time.Millisecond) != tc.want {
			t.Errorf("backoff(%d, rand %v) = %v, want %v", tc.attempts, tc.rand, got, tc.want)
		}
	}
}
