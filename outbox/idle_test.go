package outbox

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

// TestSessionKeptBetweenBursts: Deliver carries bursts of messages that
// arrive within the idle timeout over the one session it opened; with a
// negative IdleTimeout every burst opens its own; a session the server
// closed while idle is replaced without failing a message.
func TestSessionKeptBetweenBursts(t *testing.T) {
	tests := []struct {
		name         string
		idle         time.Duration
		serverIdle   time.Duration // server's ReadTimeout; 0: default
		pause        time.Duration // between bursts, after the burst was delivered
		wantSessions int64
		atLeast      bool // messages trickling in may each open a session
	}{
		{name: "default idle timeout", idle: 0, wantSessions: 1},
		{name: "closed when idle", idle: -1, wantSessions: 3, atLeast: true},
		{name: "idle timeout ran out", idle: 20 * time.Millisecond, pause: 200 * time.Millisecond, wantSessions: 3},
		{name: "server closed the idle session", idle: time.Minute, serverIdle: 100 * time.Millisecond,
			pause: 400 * time.Millisecond, wantSessions: 3},
	}
	defer func(d time.Duration) { idleCheckAfter = d }(idleCheckAfter)
	idleCheckAfter = 50 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sessions, notSent atomic.Int64
			e := newEnv(t, func(o *Options) {
				o.OnSession = func(ev SessionEvent) {
					if ev.Err == nil {
						sessions.Add(1)
					}
				}
				o.OnDelivery = func(ev DeliveryEvent) {
					if ev.Result != ResultSent {
						notSent.Add(1)
					}
				}
			})
			srv := devtest.Start(t, devserver.Config{ReadTimeout: tt.serverIdle})
			accts := account(srv.Addr())
			a := accts["default"]
			a.IdleTimeout = tt.idle
			accts["default"] = a
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { e.ob.Deliver(ctx, accts) })
			defer func() { cancel(); wg.Wait() }()
			n := 0
			for burst := range 3 {
				for range 4 {
					n++
					e.enqueue(t, n)
				}
				wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := srv.WaitMessages(wctx, n)
				wcancel()
				if err != nil {
					t.Fatalf("burst %d: %v", burst, err)
				}
				// The pause is the idle time under test, not a wait for
				// an event.
				time.Sleep(tt.pause)
			}
			if got := sessions.Load(); got != tt.wantSessions && !(tt.atLeast && got > tt.wantSessions) {
				t.Errorf("%d sessions for 3 bursts, want %d", got, tt.wantSessions)
			}
			if got := notSent.Load(); got != 0 {
				t.Errorf("%d attempts did not deliver", got)
			}
		})
	}
}
