package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// plain is an account without TLS for a loopback server.
func plain(addr string, fallback ...string) Account {
	return Account{
		Dialer:   &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost", Timeout: 5 * time.Second},
		Addr:     addr,
		Fallback: fallback,
	}
}

// withAuth adds plain-text AUTH to a loopback account.
func withAuth(a Account) Account {
	a.Dialer.AllowInsecureAuth = true
	a.Username = "bot"
	a.Password = func() (string, error) { return "pw", nil }
	return a
}

// records returns the log records with message msg.
func (h *logCapture) records(msg string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range h.recs {
		if r.Message == msg {
			out = append(out, r)
		}
	}
	return out
}

func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

const (
	greeting421 = `
S: 421 4.3.2 fake.test busy, try later
! close
`
	greeting554 = `
S: 554 5.3.2 fake.test no service for you
! close
`
	auth454 = `
S: 220 fake.test ESMTP
C~ ^EHLO
S: 250-fake.test
S: 250 AUTH PLAIN
C~ ^AUTH PLAIN
S: 454 4.7.0 Temporary authentication failure
! expect-eof
`
	auth535 = `
S: 220 fake.test ESMTP
C~ ^EHLO
S: 250-fake.test
S: 250 AUTH PLAIN
C~ ^AUTH PLAIN
S: 535 5.7.8 Authentication credentials invalid
! expect-eof
`
	// ehlo421 refuses EHLO (and the HELO that follows) with 421.
	ehlo421 = `
S: 220 fake.test ESMTP
C~ ^EHLO
S: 421 4.7.0 fake.test closing
! close
`
)

// TestFailoverReasons: every way an account can fail to open a session
// moves its messages to the fallback, which delivers each exactly once,
// and the spool says which account delivered.
func TestFailoverReasons(t *testing.T) {
	rows := []struct {
		name    string
		primary func(t *testing.T) Account
		level   slog.Level // of the primary's "cannot open a session" record
		errText string
	}{
		{"connection refused", func(t *testing.T) Account { return plain(closedPort(t)) }, slog.LevelWarn, "connect to"},
		{"TLS mismatch", func(t *testing.T) Account {
			a := plain(startServer(t, devserver.Hooks{}).Addr())
			a.Dialer.TLS = smtp.TLSImplicit // the server speaks plain SMTP
			return a
		}, slog.LevelError, "TLS"},
		{"untrusted certificate at STARTTLS", func(t *testing.T) Account {
			a := plain(startServer(t, devserver.Hooks{}).Addr())
			a.Dialer.TLS = smtp.TLSStartTLS // system roots do not know the dev server
			return a
		}, slog.LevelError, "TLS"},
		{"421 at greeting", func(t *testing.T) Account { return plain(smtptest.NewServer(t, greeting421).Addr()) }, slog.LevelWarn, "421"},
		{"554 at greeting", func(t *testing.T) Account { return plain(smtptest.NewServer(t, greeting554).Addr()) }, slog.LevelError, "554"},
		{"421 at EHLO", func(t *testing.T) Account { return plain(smtptest.NewServer(t, ehlo421).Addr()) }, slog.LevelWarn, "421"},
		{"454 at AUTH", func(t *testing.T) Account { return withAuth(plain(smtptest.NewServer(t, auth454).Addr())) }, slog.LevelWarn, "454"},
		{"535 at AUTH", func(t *testing.T) Account { return withAuth(plain(smtptest.NewServer(t, auth535).Addr())) }, slog.LevelError, "535"},
		{"password unavailable", func(t *testing.T) Account {
			a := withAuth(plain(startServer(t, devserver.Hooks{}).Addr()))
			a.Password = func() (string, error) { return "", errors.New("environment variable PW is not set") }
			return a
		}, slog.LevelError, "PW is not set"},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			backup := startServer(t, devserver.Hooks{})
			primary := tc.primary(t)
			primary.Fallback = []string{"backup"}
			ids := []string{e.enqueue(t, 1), e.enqueue(t, 2), e.enqueue(t, 3)}
			rep := e.deliverOnce(t, map[string]Account{"default": primary, "backup": plain(backup.Addr())})
			if rep != (Report{Sent: 3}) {
				t.Fatalf("report %+v, want 3 sent; logs %v", rep, e.logs.attempts())
			}
			msgs := backup.Messages()
			if len(msgs) != 3 {
				t.Fatalf("fallback got %d messages, want 3", len(msgs))
			}
			seen := map[string]int{}
			for _, m := range msgs {
				seen[messageID(m.Data)]++
			}
			for i := 1; i <= 3; i++ {
				if id := messageID(testMsg(i)); seen[id] != 1 {
					t.Errorf("message %s arrived %d times, want once", id, seen[id])
				}
			}
			for _, id := range ids {
				it, _, err := e.ob.Get(id)
				if err != nil {
					t.Fatal(err)
				}
				if it.State != StateSent || it.Via != "backup" || it.Account != "default" || len(it.Delivered) != 1 || it.Attempts != 1 {
					t.Errorf("sent record %+v: want state sent, via backup, account default, 1 attempt", it)
				}
			}
			if items, _ := e.ob.List(); len(items) != 0 {
				t.Errorf("queue not empty: %+v", items)
			}
			for _, l := range e.logs.attempts() {
				if l["outcome"].String() != "sent" || l["account"].String() != "backup" || l["fallback_for"].String() != "default" || l["host"].String() != backup.Addr() {
					t.Errorf("attempt record %v: want sent through backup for default", l)
				}
			}
			// The primary was dialled once for the whole batch, and its
			// failure logged at the level its kind deserves.
			down := e.logs.records("outbox: account cannot open a session; trying the next fallback")
			if len(down) != 1 {
				t.Fatalf("%d records of the primary's failure, want 1", len(down))
			}
			if down[0].Level != tc.level || attr(down[0], "account") != "default" || attr(down[0], "next") != "backup" ||
				!strings.Contains(attr(down[0], "error"), tc.errText) {
				t.Errorf("primary's failure logged at %v: %q (account %q, next %q), want %v with %q",
					down[0].Level, attr(down[0], "error"), attr(down[0], "account"), attr(down[0], "next"), tc.level, tc.errText)
			}
			if n := len(e.logs.records("outbox: delivering through a fallback account")); n != 1 {
				t.Errorf("%d 'delivering through a fallback' records, want 1", n)
			}
		})
	}
}

// dataDrop accepts the message and hangs up before replying to the final
// dot: the outcome is unknown.
const dataDrop = `
S: 220 fake.test ESMTP
C~ ^EHLO
S: 250 fake.test
C~ ^MAIL FROM:<bot@mailbot.test>
S: 250 2.1.0 ok
C~ ^RCPT TO:<ops@mailbot.test>
S: 250 2.1.5 ok
C: DATA
S: 354 go ahead
! data
! close
`

// TestNoFailoverAfterData: once the message went out, a lost reply is an
// unknown outcome that stays with the account that may have delivered it.
func TestNoFailoverAfterData(t *testing.T) {
	e := newEnv(t, nil)
	primary := smtptest.NewServer(t, dataDrop)
	backup := startServer(t, devserver.Hooks{})
	id := e.enqueue(t, 1)
	rep := e.deliverOnce(t, map[string]Account{"default": plain(primary.Addr(), "backup"), "backup": plain(backup.Addr())})
	if rep != (Report{Deferred: 1}) {
		t.Fatalf("report %+v, want 1 deferred", rep)
	}
	if err := primary.Wait(); err != nil {
		t.Fatal(err)
	}
	if n := len(primary.Data()); n != 1 {
		t.Fatalf("primary received %d messages, want 1", n)
	}
	if n := len(backup.Messages()); n != 0 {
		t.Fatalf("fallback got %d messages after DATA on the primary, want 0", n)
	}
	it, _, err := e.ob.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if it.State != StateQueued || it.Via != "" || !strings.Contains(it.LastError, "outcome unknown") {
		t.Errorf("item %+v: want queued, no via, unknown outcome", it)
	}
	logs := e.logs.attempts()
	if len(logs) != 1 || logs[0]["outcome"].String() != "unknown-deferred" || logs[0]["account"].String() != "default" {
		t.Errorf("attempt records %v", logs)
	}
}

// TestRefusalsNotFailedOver: MAIL and RCPT refusals are the message's,
// not the account's: they are never a reason to fail over.
func TestRefusalsNotFailedOver(t *testing.T) {
	rows := []struct {
		name  string
		hooks devserver.Hooks
		want  Report
	}{
		{"RCPT 450", devserver.Hooks{Rcpt: func(string) *devserver.Reject {
			return &devserver.Reject{Code: 450, Enhanced: [3]int{4, 2, 1}, Message: "mailbox busy"}
		}}, Report{Deferred: 1}},
		{"RCPT 550", devserver.Hooks{Rcpt: func(string) *devserver.Reject {
			return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
		}}, Report{Bounced: 1}},
		{"MAIL 451", devserver.Hooks{Mail: func(string) *devserver.Reject {
			return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 7, 1}, Message: "greylisted"}
		}}, Report{Deferred: 1}},
		{"DATA 452", devserver.Hooks{Data: func(*devserver.Message) *devserver.Reject {
			return &devserver.Reject{Code: 452, Enhanced: [3]int{4, 3, 1}, Message: "disk full"}
		}}, Report{Deferred: 1}},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			primary := startServer(t, tc.hooks)
			backup := startServer(t, devserver.Hooks{})
			e.enqueue(t, 1)
			rep := e.deliverOnce(t, map[string]Account{"default": plain(primary.Addr(), "backup"), "backup": plain(backup.Addr())})
			if rep != tc.want {
				t.Fatalf("report %+v, want %+v", rep, tc.want)
			}
			if n := len(backup.Messages()); n != 0 {
				t.Fatalf("fallback got %d messages, want 0", n)
			}
			for _, l := range e.logs.attempts() {
				if l["account"].String() != "default" {
					t.Errorf("attempt through %v, want default", l["account"])
				}
			}
		})
	}
}

// TestFailoverAllFail: when every account of the chain fails, the
// message is deferred with the usual backoff and its last error names
// each account's failure.
func TestFailoverAllFail(t *testing.T) {
	e := newEnv(t, nil)
	busy := smtptest.NewServer(t, greeting421)
	auth := smtptest.NewServer(t, auth454)
	down := closedPort(t)
	ids := []string{e.enqueue(t, 1), e.enqueue(t, 2)}
	accts := map[string]Account{
		"default": plain(down, "busy", "auth"),
		"busy":    plain(busy.Addr()),
		"auth":    withAuth(plain(auth.Addr())),
	}
	rep := e.deliverOnce(t, accts)
	if rep != (Report{Deferred: 2}) {
		t.Fatalf("report %+v, want 2 deferred", rep)
	}
	for _, id := range ids {
		it, _, err := e.ob.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		if it.State != StateQueued || it.Attempts != 1 || it.Via != "" {
			t.Errorf("item %+v", it)
		}
		if want := e.clock.Now().Add(time.Minute); !it.NextAttempt.Equal(want) {
			t.Errorf("NextAttempt %v, want %v (the usual backoff)", it.NextAttempt, want)
		}
		for _, part := range []string{"account default and its fallbacks all failed", "default: smtp: connect to " + down,
			"busy: smtp: connect to " + busy.Addr() + ": greeting: 421", "auth: smtp: AUTH PLAIN failed: AUTH: 454"} {
			if !strings.Contains(it.LastError, part) {
				t.Errorf("last error %q lacks %q", it.LastError, part)
			}
		}
		if len(it.Waiting) != 1 || !strings.Contains(it.Waiting[0].Reply.Text, "busy: ") {
			t.Errorf("waiting %+v: want the whole list as the reason", it.Waiting)
		}
	}
	if n := len(e.logs.records("outbox: account cannot open a session; no fallback left")); n != 1 {
		t.Errorf("%d 'no fallback left' records, want 1", n)
	}
	logs := e.logs.attempts()
	if len(logs) != 2 || logs[0]["account"].String() != "default" || logs[0]["outcome"].String() != "deferred" {
		t.Errorf("attempt records %v", logs)
	}
}

// TestFallbacksNotFollowed: only the listed fallbacks are tried, not
// theirs; a fallback's own messages still use its own chain.
func TestFallbacksNotFollowed(t *testing.T) {
	e := newEnv(t, nil)
	third := startServer(t, devserver.Hooks{})
	accts := map[string]Account{
		"default": plain(closedPort(t), "second", "default", "second", "nowhere"),
		"second":  plain(closedPort(t), "third"),
		"third":   plain(third.Addr()),
	}
	e.enqueue(t, 1)
	id, _, err := e.ob.Enqueue(context.Background(), Envelope{Account: "second", From: "bot@mailbot.test", To: []string{"ops@mailbot.test"}}, testMsg(2))
	if err != nil {
		t.Fatal(err)
	}
	rep := e.deliverOnce(t, accts)
	if rep != (Report{Sent: 1, Deferred: 1}) {
		t.Fatalf("report %+v, want 1 sent (second's, through third), 1 deferred (default's)", rep)
	}
	msgs := third.Messages()
	if len(msgs) != 1 || messageID(msgs[0].Data) != messageID(testMsg(2)) {
		t.Fatalf("third got %d messages, want only second's", len(msgs))
	}
	if it, _, _ := e.ob.Get(id); it.Via != "third" {
		t.Errorf("second's message via %q, want third", it.Via)
	}
	items, _ := e.ob.List()
	if len(items) != 1 || items[0].Account != "default" {
		t.Fatalf("queue %+v", items)
	}
	// Tried once each, in order: default, second (itself and the
	// duplicate are skipped, and nowhere is not configured).
	le := items[0].LastError
	if strings.Count(le, "default: ") != 1 || strings.Count(le, "second: ") != 1 || strings.Contains(le, "third") ||
		strings.Index(le, "default: ") > strings.Index(le, "second: ") {
		t.Errorf("last error %q: want default's then second's failure only", le)
	}
	if n := len(e.logs.records("outbox: fallback account is not configured; skipped")); n != 1 {
		t.Errorf("%d warnings about the unknown fallback, want 1", n)
	}
}

// countingDialer counts the connections made to each address.
type countingDialer struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	if d.n == nil {
		d.n = map[string]int{}
	}
	d.n[addr]++
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *countingDialer) count(addr string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[addr]
}

// TestFailoverHoldOff: after the primary failed, sessions go straight to
// the fallback until the hold-off (the first retry delay) is over; then
// the primary is tried again, and used once it answers.
func TestFailoverHoldOff(t *testing.T) {
	e := newEnv(t, nil)
	primaryAddr := closedPort(t)
	backup := startServer(t, devserver.Hooks{})
	var dials countingDialer
	primary := plain(primaryAddr, "backup")
	primary.Dialer.NetDialer = &dials
	accts := map[string]Account{"default": primary, "backup": plain(backup.Addr())}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.ob.Deliver(ctx, accts) }()
	defer func() {
		cancel()
		<-done
	}()

	// Each message comes alone, so each needs a new session (the worker
	// closes it when idle).
	for i := 1; i <= 3; i++ {
		e.enqueue(t, i)
		e.logs.waitAttempts(t, i)
	}
	if n := dials.count(primaryAddr); n != 1 {
		t.Fatalf("primary dialled %d times within its hold-off, want 1", n)
	}
	// Hold-off over, primary still down: dialled once more.
	e.clock.Advance(time.Minute)
	e.enqueue(t, 4)
	e.logs.waitAttempts(t, 4)
	if n := dials.count(primaryAddr); n != 2 {
		t.Fatalf("primary dialled %d times after its hold-off, want 2", n)
	}
	// The primary comes back: after the hold-off it gets the mail again.
	srv := startServerAt(t, primaryAddr)
	e.clock.Advance(time.Minute)
	e.enqueue(t, 5)
	e.logs.waitAttempts(t, 5)
	logs := e.logs.attempts()
	for i, l := range logs {
		want := "backup"
		if i == 4 {
			want = "default"
		}
		if l["outcome"].String() != "sent" || l["account"].String() != want {
			t.Errorf("attempt %d: %v, want sent through %s", i+1, l, want)
		}
	}
	if len(backup.Messages()) != 4 || len(srv.Messages()) != 1 {
		t.Errorf("backup got %d, primary %d; want 4 and 1", len(backup.Messages()), len(srv.Messages()))
	}
}

// TestFailoverRateLimit: messages failed over count against the
// fallback's rate limit, even when the primary has none (and so collects
// batches).
func TestFailoverRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	backup := startServer(t, devserver.Hooks{})
	fb := plain(backup.Addr())
	fb.RatePerSecond = 20 // one per 50ms
	const n = 4
	for i := range n {
		e.enqueue(t, i)
	}
	start := time.Now()
	rep := e.deliverOnce(t, map[string]Account{"default": plain(closedPort(t), "backup"), "backup": fb})
	if rep != (Report{Sent: n}) {
		t.Fatalf("report %+v", rep)
	}
	if el, min := time.Since(start), (n-1)*50*time.Millisecond; el < min {
		t.Errorf("%d messages through a 20/s fallback took %v, want at least %v", n, el, min)
	}
}

// TestFailoverConcurrentWorkers: the primary's workers and the
// fallback's own worker share the fallback; every message arrives once.
func TestFailoverConcurrentWorkers(t *testing.T) {
	e := newEnv(t, nil)
	var got sync.Map
	var dup atomic.Int32
	backup := startServer(t, devserver.Hooks{Data: func(m *devserver.Message) *devserver.Reject {
		if _, loaded := got.LoadOrStore(messageID(m.Data), true); loaded {
			dup.Add(1)
		}
		return nil
	}})
	primary := plain(closedPort(t), "backup")
	primary.Concurrency = 3
	const n = 40
	for i := range n {
		acct := "default"
		if i%4 == 0 {
			acct = "backup"
		}
		if _, _, err := e.ob.Enqueue(context.Background(), Envelope{Account: acct, From: "bot@mailbot.test", To: []string{"ops@mailbot.test"}}, testMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	rep := e.deliverOnce(t, map[string]Account{"default": primary, "backup": plain(backup.Addr())})
	if rep != (Report{Sent: n}) {
		t.Fatalf("report %+v", rep)
	}
	if len(backup.Messages()) != n || dup.Load() != 0 {
		t.Errorf("backup got %d messages (%d duplicates), want %d once each", len(backup.Messages()), dup.Load(), n)
	}
}

// TestViaFollowsTheDeliveringAccount: a message deferred by the fallback
// and then delivered by its own account is recorded as delivered by it.
func TestViaFollowsTheDeliveringAccount(t *testing.T) {
	e := newEnv(t, nil)
	addr := closedPort(t)
	var n atomic.Int32
	backup := startServer(t, devserver.Hooks{Data: func(*devserver.Message) *devserver.Reject {
		n.Add(1)
		return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 3, 0}, Message: "try later"}
	}})
	id := e.enqueue(t, 1)
	accts := map[string]Account{"default": plain(addr, "backup"), "backup": plain(backup.Addr())}
	if rep := e.deliverOnce(t, accts); rep != (Report{Deferred: 1}) {
		t.Fatalf("report %+v, want deferred by the fallback", rep)
	}
	if it, _, _ := e.ob.Get(id); it.Via != "backup" || it.LastReply == nil || it.LastReply.Code != 451 {
		t.Fatalf("after the fallback's 451: %+v", it)
	}
	srv := startServerAt(t, addr)
	e.clock.Advance(time.Minute)
	if rep := e.deliverOnce(t, accts); rep != (Report{Sent: 1}) {
		t.Fatalf("report %+v, want sent by the primary", rep)
	}
	it, _, err := e.ob.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if it.State != StateSent || it.Via != "" || it.Attempts != 2 || len(srv.Messages()) != 1 || n.Load() != 1 {
		t.Errorf("sent record %+v (primary got %d, fallback tried %d): want sent by default itself", it, len(srv.Messages()), n.Load())
	}
}

// TestSentRecordCrashWindow: a crash after the sent/ record of a
// failed-over delivery was written and before the queued file was
// removed leaves two copies; Open keeps the sent one, so the message is
// not sent again.
func TestSentRecordCrashWindow(t *testing.T) {
	e := newEnv(t, nil)
	id := e.enqueue(t, 1)
	lf, err := lockFile(e.ob.path(StateQueued, id))
	if err != nil {
		t.Fatal(err)
	}
	it, data, err := lf.read()
	if err != nil {
		t.Fatal(err)
	}
	if err := lf.markSent(); err != nil {
		t.Skipf("no sent mark on this platform: %v", err)
	}
	rec := it
	rec.Seq++
	rec.State, rec.Via, rec.To, rec.Delivered = StateSent, "backup", nil, it.To
	content, err := encodeFile(&rec, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ob.replaceFile(e.ob.path(StateSent, id), content, true); err != nil {
		t.Fatal(err)
	}
	lf.unlock() // the process dies here, before removing queue/<id>
	e.ob.Close()
	ob := e.open(t, nil)
	e.ob = ob
	if items, _ := ob.List(); len(items) != 0 {
		t.Fatalf("queue after recovery: %+v", items)
	}
	got, _, err := ob.Get(id)
	if err != nil || got.State != StateSent || got.Via != "backup" {
		t.Fatalf("Get = %+v, %v: want the sent record via backup", got, err)
	}
	srv := startServer(t, devserver.Hooks{})
	if rep := e.deliverOnce(t, account(srv.Addr())); rep != (Report{}) || len(srv.Messages()) != 0 {
		t.Errorf("after recovery: report %+v, %d messages sent again", rep, len(srv.Messages()))
	}
}

// TestFailoverSignsWithTheFallbacksKey: a message that goes out through a
// fallback is DKIM-signed by the fallback's signer, once, both when it is
// sent alone and in a batch; the primary's signer is never asked.
func TestFailoverSignsWithTheFallbacksKey(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d messages", n), func(t *testing.T) {
			e := newEnv(t, nil)
			backup := startServer(t, devserver.Hooks{})
			var primarySigns, backupSigns atomic.Int32
			primary := plain(closedPort(t), "backup")
			primary.Sign = func(msg []byte) ([]byte, error) {
				primarySigns.Add(1)
				return append([]byte("X-Signed-By: primary\r\n"), msg...), nil
			}
			fb := plain(backup.Addr())
			fb.Sign = func(msg []byte) ([]byte, error) {
				backupSigns.Add(1)
				return append([]byte("X-Signed-By: backup\r\n"), msg...), nil
			}
			accts := map[string]Account{"default": primary, "backup": fb}
			for i := 1; i <= n; i++ {
				e.enqueue(t, i)
			}
			if rep := e.deliverOnce(t, accts); rep != (Report{Sent: n}) {
				t.Fatalf("report %+v, want %d sent", rep, n)
			}
			if p, b := primarySigns.Load(), backupSigns.Load(); p != 0 || b != int32(n) {
				t.Errorf("primary signed %d, backup signed %d; want 0 and %d", p, b, n)
			}
			msgs := backup.Messages()
			if len(msgs) != n {
				t.Fatalf("backup got %d messages, want %d", len(msgs), n)
			}
			for _, m := range msgs {
				if bytes.Count(m.Data, []byte("X-Signed-By:")) != 1 || !bytes.HasPrefix(m.Data, []byte("X-Signed-By: backup\r\n")) {
					t.Errorf("message not signed once by the backup:\n%.200s", m.Data)
				}
			}
		})
	}
}
