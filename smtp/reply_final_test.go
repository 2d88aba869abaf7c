package smtp_test

import (
	"testing"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// The reply to the final dot (the relay's "queued as" id) comes back from
// SendMailReply and in every BatchResult, lockstep, pipelined or LMTP.
func TestFinalReplyExposed(t *testing.T) {
	tests := []struct {
		name, script string
		lmtp         bool
		to           []string
		want         string
	}{
		{name: "lockstep", script: "partial_refusal", to: []string{"a@example.org", "b@example.org", "c@example.org"}, want: "250 2.0.0 queued"},
		{name: "pipelined", script: "batch", want: "250 2.0.0 queued as 1"},
		{name: "lmtp", script: "lmtp", lmtp: true, to: []string{"a@example.org", "b@example.org", "c@example.org"}, want: "250 2.0.0 a delivered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, script(t, tt.script))
			d := plainDialer()
			d.LMTP = tt.lmtp
			c := dial(t, srv, d)
			var got smtp.Reply
			if tt.script == "batch" {
				res := c.SendBatch(ctx, []smtp.Outgoing{
					{From: "bot@example.org", To: []string{"a@example.org"}, Data: []byte("Subject: 1\r\n\r\none\r\n")},
					{From: "bot@example.org", To: []string{"gone@example.org"}, Data: []byte("Subject: 2\r\n\r\ntwo\r\n")},
					{From: "bot@example.org", To: []string{"b@example.org", "busy@example.org"}, Data: []byte("Subject: 3\r\n\r\n.three\n")},
				}, nil)
				got = res[0].Reply
				if r := res[1].Reply; r.Code != 0 {
					t.Errorf("refused message has reply %q, want none", r)
				}
				if r := res[2].Reply.String(); r != "250 2.0.0 queued as 3" {
					t.Errorf("third message reply %q", r)
				}
			} else {
				var err error
				_, got, err = c.SendMailReply(ctx, "bot@example.org", tt.to, []byte("hi\r\n"), nil)
				if err != nil {
					t.Fatalf("SendMailReply: %v", err)
				}
			}
			if got.String() != tt.want {
				t.Errorf("final reply %q, want %q", got, tt.want)
			}
			quit(t, c)
			waitServer(t, srv)
		})
	}
}
