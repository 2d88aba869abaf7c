package outbox

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
)

// TestSetAccountsMovesNewSessions: after SetAccounts the next delivery
// goes to the new relay, while the message in flight on the old session
// completes there.
func TestSetAccountsMovesNewSessions(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PollInterval = time.Hour; o.Now = time.Now })
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	a := startServer(t, devserver.Hooks{Data: func(m *devserver.Message) *devserver.Reject {
		if strings.Contains(string(m.Data), "report 1") {
			entered <- struct{}{}
			<-release
		}
		return nil
	}})
	b := startServer(t, devserver.Hooks{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { e.ob.Deliver(ctx, account(a.Addr())) })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()

	e.enqueue(t, 0)
	if _, err := a.WaitMessages(wctx, 1); err != nil {
		t.Fatal(err)
	}
	e.enqueue(t, 1)
	<-entered // message 1 is in DATA on the old relay
	e.ob.SetAccounts(account(b.Addr()))
	e.enqueue(t, 2)
	got, err := b.WaitMessages(wctx, 1)
	if err != nil {
		t.Fatalf("new relay: %v", err)
	}
	if !strings.Contains(string(got[0].Data), "report 2") {
		t.Errorf("new relay got %q", got[0].Data)
	}
	close(release)
	if _, err := a.WaitMessages(wctx, 2); err != nil {
		t.Fatalf("the message in flight on the old relay: %v", err)
	}
	e.logs.waitAttempts(t, 3)
	cancel()
	wg.Wait()
	if st, _ := e.ob.Stats(); st.Sent != 3 || st.Queued != 0 {
		t.Errorf("Stats = %+v", st)
	}
}
