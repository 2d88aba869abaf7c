package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/smtp"
)

// fakeClock is a settable clock for backoff and age tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// logCapture is a slog.Handler that keeps every record.
type logCapture struct {
	mu      sync.Mutex
	recs    []slog.Record
	changed chan struct{} // closed and replaced on every record
}

// waitAttempts blocks until n delivery-attempt records were logged.
func (h *logCapture) waitAttempts(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		h.mu.Lock()
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		ch := h.changed
		h.mu.Unlock()
		if len(h.attempts()) >= n {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("timed out waiting for %d delivery attempts, have %d", n, len(h.attempts()))
		}
	}
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	h.mu.Unlock()
	return nil
}
func (h *logCapture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCapture) WithGroup(string) slog.Handler      { return h }

// attempts returns the attributes of every delivery-attempt record.
func (h *logCapture) attempts() []map[string]slog.Value {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]slog.Value
	for _, r := range h.recs {
		m := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
		if _, ok := m["outcome"]; ok {
			out = append(out, m)
		}
	}
	return out
}

type env struct {
	dir   string
	clock *fakeClock
	logs  *logCapture
	ob    *Outbox
}

// newEnv opens an outbox in a temp dir with a fake clock and no jitter.
func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), clock: newClock(), logs: &logCapture{}}
	e.ob = e.open(t, mod)
	return e
}

func (e *env) open(t *testing.T, mod func(*Options)) *Outbox {
	t.Helper()
	opts := Options{
		Now:    e.clock.Now,
		Rand:   func() float64 { return 0.5 },
		Logger: slog.New(e.logs),
	}
	if mod != nil {
		mod(&opts)
	}
	ob, err := Open(e.dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

func testMsg(n int) []byte {
	return fmt.Appendf(nil, "Message-ID: <m%d@mailbot.test>\r\nFrom: bot@mailbot.test\r\nSubject: report %d\r\n\r\nbody %d\r\n", n, n, n)
}

func (e *env) enqueue(t *testing.T, n int, to ...string) string {
	t.Helper()
	if len(to) == 0 {
		to = []string{"ops@mailbot.test"}
	}
	id, dup, err := e.ob.Enqueue(context.Background(), Envelope{Account: "default", From: "bot@mailbot.test", To: to}, testMsg(n))
	if err != nil || dup {
		t.Fatalf("Enqueue(%d) = %q, %v, %v", n, id, dup, err)
	}
	return id
}

// account returns a plain-text account for a loopback server.
func account(addr string) map[string]Account {
	return map[string]Account{"default": {
		Dialer: &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost", Timeout: 5 * time.Second},
		Addr:   addr,
	}}
}

func startServer(t *testing.T, hooks devserver.Hooks) *devserver.Server {
	return devtest.Start(t, devserver.Config{Hooks: hooks})
}

// closedPort returns a loopback address on which nothing listens (yet).
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func (e *env) deliverOnce(t *testing.T, accts map[string]Account) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := e.ob.DeliverOnce(ctx, accts)
	if err != nil {
		t.Fatalf("DeliverOnce: %v", err)
	}
	return rep
}
