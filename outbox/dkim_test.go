package outbox

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/internal/dkimtest"
	"github.com/mailbot/mailbot/message"
)

// TestDeliverySignsEachAttempt: an account with Sign has every message
// signed at delivery, once per attempt, while the spool keeps the bytes
// as enqueued; a message that cannot be signed goes to dead letters
// without being sent.
func TestDeliverySignsEachAttempt(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"rsa", dkimtest.RSAKey(t)}, {"ed25519", dkimtest.Ed25519Key(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			var datas atomic.Int32
			srv := startServer(t, devserver.Hooks{Data: func(m *devserver.Message) *devserver.Reject {
				if bytes.Contains(m.Data, []byte("Subject: report 1\r\n")) && datas.Add(1) == 1 {
					return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 3, 0}, Message: "try later"}
				}
				return nil
			}})
			s, err := message.NewDKIMSigner(message.DKIMOptions{Domain: "mailbot.test", Selector: "s1", Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			var signs atomic.Int32
			accts := account(srv.Addr())
			a := accts["default"]
			a.Sign = func(msg []byte) ([]byte, error) {
				signs.Add(1)
				if bytes.Contains(msg, []byte("Subject: report 4\r\n")) {
					return nil, errors.New("cannot sign this one")
				}
				return s.Sign(msg)
			}
			accts["default"] = a
			ids := []string{e.enqueue(t, 1), e.enqueue(t, 2), e.enqueue(t, 3), e.enqueue(t, 4)}
			// One session: message 1 deferred, 2 and 3 batched, 4 unsignable.
			if rep := e.deliverOnce(t, accts); rep != (Report{Sent: 2, Deferred: 1, Bounced: 1}) {
				t.Fatalf("first run: %+v", rep)
			}
			_, data, err := e.ob.Get(ids[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, testMsg(1)) {
				t.Errorf("the deferred message's spooled bytes changed:\n%s", data)
			}
			dead, err := e.ob.Dead()
			if err != nil || len(dead) != 1 || dead[0].ID != ids[3] || !strings.Contains(dead[0].LastError, `DKIM-sign for account "default": cannot sign this one`) {
				t.Fatalf("dead letters: %+v, %v", dead, err)
			}
			e.clock.Advance(time.Minute)
			if rep := e.deliverOnce(t, accts); rep != (Report{Sent: 1}) {
				t.Fatalf("retry: %+v", rep)
			}
			if n := signs.Load(); n != 5 {
				t.Errorf("Sign called %d times, want 5 (one per attempt)", n)
			}
			msgs := srv.Messages()
			if len(msgs) != 3 {
				t.Fatalf("%d messages arrived, want 3", len(msgs))
			}
			for _, m := range msgs {
				if bytes.Contains(m.Data, []byte("Subject: report 4")) {
					t.Errorf("the unsignable message was sent")
				}
				if err := dkimtest.Verify(m.Data, tc.key, "mailbot.test", "s1"); err != nil {
					t.Errorf("%v\n%s", err, m.Data)
				}
				tampered := bytes.Replace(m.Data, []byte("body"), []byte("b0dy"), 1)
				if err := dkimtest.Verify(tampered, tc.key, "mailbot.test", "s1"); err == nil {
					t.Errorf("a changed body still verifies:\n%s", tampered)
				}
			}
		})
	}
}
