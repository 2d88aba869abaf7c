//go:build unix

package outbox

import (
	"errors"
	"os"
	"testing"

	"github.com/mailbot/mailbot/devserver"
)

// TestSentMarkSurvivesCrash: a process marks a message delivered (the
// fchmod right after the server's 250) and dies before moving it into
// sent/. The next delivery run must finish the move and never send the
// message again; the CLI must not requeue it either.
func TestSentMarkSurvivesCrash(t *testing.T) {
	e := newEnv(t, nil)
	delivered := e.enqueue(t, 1)
	other := e.enqueue(t, 2)
	lf, err := lockFile(e.ob.path(StateQueued, delivered))
	if err != nil {
		t.Fatal(err)
	}
	if err := lf.markSent(); err != nil {
		t.Fatal(err)
	}
	lf.unlock() // the "crash": lock gone, file still in queue/, marked

	if err := e.ob.Retry(delivered); !errors.Is(err, ErrNotFound) {
		t.Errorf("Retry of a delivered message = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(e.ob.path(StateSent, delivered)); err != nil {
		t.Fatalf("Retry should have finished the move into sent/: %v", err)
	}

	// A second crashed delivery, found by the delivery run instead.
	lf, err = lockFile(e.ob.path(StateQueued, other))
	if err != nil {
		t.Fatal(err)
	}
	lf.markSent()
	lf.unlock()
	reopened := e.open(t, nil)
	e.ob = reopened
	srv := startServer(t, devserver.Hooks{})
	e.deliverOnce(t, account(srv.Addr()))
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d message(s) sent again after a crash that followed their delivery", n)
	}
	for _, id := range []string{delivered, other} {
		if _, err := os.Stat(e.ob.path(StateSent, id)); err != nil {
			t.Errorf("%s not in sent/: %v", id, err)
		}
		if _, err := os.Stat(e.ob.path(StateQueued, id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still queued: %v", id, err)
		}
	}
}
