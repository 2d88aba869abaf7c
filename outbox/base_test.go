package outbox

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailbot/mailbot/devserver"
)

// TestBaseSpool: an overlay spool (a dry run's) counts the base spool's
// idempotency keys as its own, copies its queued messages on request (due
// at once), and leaves the base exactly as it was.
func TestBaseSpool(t *testing.T) {
	base := newEnv(t, nil)
	ctx := context.Background()
	envelope := func(key string) Envelope {
		return Envelope{Account: "default", From: "bot@mailbot.test", To: []string{"ops@mailbot.test"}, Key: key}
	}
	queuedID, _, err := base.ob.Enqueue(ctx, envelope("report-1"), testMsg(1))
	if err != nil {
		t.Fatal(err)
	}
	// A deferred message, not due for a while in the base.
	if rep := base.deliverOnce(t, account(closedPort(t))); rep.Deferred != 1 {
		t.Fatalf("deferring in the base: %+v", rep)
	}
	if _, _, err := base.ob.Enqueue(ctx, envelope("old-key"), testMsg(2)); err != nil {
		t.Fatal(err)
	}
	// The base's key record of a message that is gone does not count.
	goneID, _, err := base.ob.Enqueue(ctx, envelope("gone-key"), testMsg(3))
	if err != nil {
		t.Fatal(err)
	}
	if err := base.ob.Delete(goneID); err != nil {
		t.Fatal(err)
	}
	base.ob.Close()
	before := hashTree(t, base.dir)

	over := &env{dir: filepath.Join(t.TempDir(), "overlay"), clock: base.clock, logs: &logCapture{}}
	over.ob = over.open(t, func(o *Options) { o.Base = base.dir })
	tests := []struct {
		key     string
		wantDup bool
	}{
		{"report-1", true},
		{"old-key", true},
		{"gone-key", false},
		{"new-key", false},
	}
	for _, tc := range tests {
		id, dup, err := over.ob.Enqueue(ctx, envelope(tc.key), testMsg(9))
		if err != nil || dup != tc.wantDup {
			t.Errorf("Enqueue(key %s) = %s, dup %v, %v; want dup %v", tc.key, id, dup, err, tc.wantDup)
		}
		if tc.key == "report-1" && id != queuedID {
			t.Errorf("duplicate of the base's message: id %s, want %s", id, queuedID)
		}
	}
	n, err := over.ob.CopyBaseQueue()
	if err != nil || n != 2 {
		t.Fatalf("CopyBaseQueue = %d, %v; want the base's 2 queued messages", n, err)
	}
	if n, err := over.ob.CopyBaseQueue(); err != nil || n != 0 {
		t.Errorf("CopyBaseQueue again = %d, %v; want nothing new", n, err)
	}
	srv := startServer(t, devserver.Hooks{})
	// The deferred one is due at once in the overlay.
	if rep := over.deliverOnce(t, account(srv.Addr())); rep.Sent != 4 {
		t.Errorf("overlay delivered %+v, want 4 sent (2 copied, gone-key and new-key)", rep)
	}
	if got := hashTree(t, base.dir); got != before {
		t.Error("the overlay changed the base spool")
	}
}

// TestAccountTranscript: each session of an account with Transcript writes
// its conversation to a writer of its own.
func TestAccountTranscript(t *testing.T) {
	e := newEnv(t, nil)
	srv := startServer(t, devserver.Hooks{})
	var (
		mu  sync.Mutex
		all []*bytes.Buffer
	)
	acct := account(srv.Addr())
	a := acct["default"]
	a.Transcript = func() io.Writer {
		mu.Lock()
		defer mu.Unlock()
		b := &bytes.Buffer{}
		all = append(all, b)
		return lockedWriter{&mu, b}
	}
	acct["default"] = a
	e.enqueue(t, 1)
	e.enqueue(t, 2)
	if rep := e.deliverOnce(t, acct); rep.Sent != 2 {
		t.Fatalf("report %+v", rep)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(all) != 1 {
		t.Fatalf("%d transcripts, want one per session (1)", len(all))
	}
	if got := strings.Count(all[0].String(), "C: MAIL FROM:<bot@mailbot.test>"); got != 2 {
		t.Errorf("transcript holds %d transactions, want 2:\n%s", got, all[0])
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
