package main

import (
	"testing"

	"github.com/mailbot/mailbot/smtp/smtptest"
)

// TestProbeHelloAgainAfterStartTLS is probe's part of the RFC 3207 §4.2
// table (see smtp's TestHelloAgainAfterStartTLS): after STARTTLS, probe
// sends EHLO again before anything else, in each TLS mode that upgrades.
func TestProbeHelloAgainAfterStartTLS(t *testing.T) {
	rec := smtptest.NewRecorder(t)
	for _, args := range [][]string{
		{rec.Addr()}, // starttls-if-offered, probe's default
		{rec.Addr(), "--tls", "starttls"},
	} {
		before := len(rec.Sessions())
		r := mailbot(t, t.TempDir(), nil, append([]string{"probe"}, args...)...)
		if r.code != exitTLS { // the recorder's certificate is self-signed
			t.Fatalf("probe %v: want exit %d, got %v", args, exitTLS, r)
		}
		sessions := rec.Sessions()
		if len(sessions) != before+1 {
			t.Fatalf("%d sessions, want %d", len(sessions), before+1)
		}
		s := sessions[before]
		if err := smtptest.CheckHelloAfterTLS(s, "QUIT"); err != nil {
			t.Fatalf("probe %v: %v", args, err)
		}
		if got := smtptest.VerbsAfterTLS(s); got != "EHLO QUIT" {
			t.Errorf("probe %v after the handshake: %q, want EHLO QUIT", args, got)
		}
	}
}
