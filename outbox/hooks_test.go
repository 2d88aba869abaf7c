package outbox

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
)

func TestDeliveryAndSessionHooks(t *testing.T) {
	var (
		mu       sync.Mutex
		events   []DeliveryEvent
		sessions []SessionEvent
	)
	e := newEnv(t, func(o *Options) {
		o.OnDelivery = func(ev DeliveryEvent) { mu.Lock(); events = append(events, ev); mu.Unlock() }
		o.OnSession = func(ev SessionEvent) { mu.Lock(); sessions = append(sessions, ev); mu.Unlock() }
	})
	srv := startServer(t, devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
		switch to {
		case "gone@mailbot.test":
			return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
		case "later@mailbot.test":
			return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 3, 0}, Message: "try later"}
		}
		return nil
	}})
	e.enqueue(t, 1, "ok@mailbot.test")
	e.enqueue(t, 2, "gone@mailbot.test")
	e.enqueue(t, 3, "later@mailbot.test")
	e.deliverOnce(t, account(srv.Addr()))
	e.clock.Advance(2 * time.Hour) // the deferred message is due again
	e.deliverOnce(t, account(closedPort(t)))

	mu.Lock()
	defer mu.Unlock()
	byMsg := map[string]DeliveryEvent{}
	for _, ev := range events {
		if _, seen := byMsg[ev.MessageID]; !seen { // the first attempt
			byMsg[ev.MessageID] = ev
		}
	}
	for _, tc := range []struct {
		msgID, result, rcpt, reply string
	}{
		{"m1@mailbot.test", ResultSent, "ok@mailbot.test", ""},
		{"m2@mailbot.test", ResultPermanent, "gone@mailbot.test", "550 5.1.1 no such user"},
		{"m3@mailbot.test", ResultTemporary, "later@mailbot.test", "451 4.3.0 try later"},
	} {
		ev, ok := byMsg[tc.msgID]
		if !ok {
			t.Errorf("no delivery event for %s in %+v", tc.msgID, events)
			continue
		}
		if ev.Result != tc.result || ev.Account != "default" || !slices.Equal(ev.Recipients, []string{tc.rcpt}) || ev.Attempts != 1 || ev.Time.IsZero() {
			t.Errorf("event for %s = %+v, want result %s to %s", tc.msgID, ev, tc.result, tc.rcpt)
		}
		if tc.reply != "" && ev.Reply != tc.reply {
			t.Errorf("reply for %s = %q, want %q", tc.msgID, ev.Reply, tc.reply)
		}
	}
	if len(sessions) < 2 || sessions[0].Err != nil || sessions[0].Account != "default" || sessions[len(sessions)-1].Err == nil {
		t.Errorf("sessions = %+v, want an open one, then a failed one", sessions)
	}
}
