package outbox

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// TestDeliveryHelloAgainAfterStartTLS is the outbox's part of the
// RFC 3207 §4.2 table (see smtp's TestHelloAgainAfterStartTLS): whatever
// the account's TLS settings, the deliverer's session sends EHLO again
// right after the handshake, before AUTH or MAIL.
func TestDeliveryHelloAgainAfterStartTLS(t *testing.T) {
	rec := smtptest.NewRecorder(t)
	rows := []struct {
		name  string
		d     smtp.Dialer
		user  string
		after string
	}{
		{"starttls, verified, login", smtp.Dialer{TLS: smtp.TLSStartTLS, TLSConfig: &tls.Config{RootCAs: rec.CertPool(), ServerName: "localhost"}}, "u", "EHLO AUTH MAIL"},
		{"starttls, pinned, no login", smtp.Dialer{TLS: smtp.TLSStartTLS, TLSFingerprints: [][32]byte{rec.TLSFingerprintSHA256()}}, "", "EHLO MAIL"},
		{"starttls-if-offered", smtp.Dialer{TLS: smtp.TLSStartTLSIfOffered, TLSConfig: &tls.Config{InsecureSkipVerify: true}}, "", "EHLO MAIL"},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.enqueue(t, 1)
			d := tc.d
			d.LocalName, d.Timeout = "client.test", 5*time.Second
			before := len(rec.Sessions())
			rep := e.deliverOnce(t, map[string]Account{"default": {Dialer: &d, Addr: rec.Addr(), Username: tc.user,
				Password: func() (string, error) { return "p", nil }}})
			if rep.Sent != 1 {
				t.Fatalf("report %+v, want 1 sent", rep)
			}
			sessions := rec.Sessions()
			if len(sessions) != before+1 {
				t.Fatalf("%d sessions, want %d", len(sessions), before+1)
			}
			s := sessions[before]
			if err := smtptest.CheckHelloAfterTLS(s, "MAIL"); err != nil {
				t.Fatal(err)
			}
			if got := smtptest.VerbsAfterTLS(s); !strings.HasPrefix(got, tc.after) {
				t.Errorf("after the handshake: %q, want it to start with %q", got, tc.after)
			}
		})
	}
}
