package smtp_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// TestEnvelopeAddresses checks that an address cannot smuggle ESMTP
// parameters or a second pair of brackets into MAIL FROM or RCPT TO, on
// every path that sends one, and that one pair of brackets is accepted.
func TestEnvelopeAddresses(t *testing.T) {
	rec := smtptest.NewRecorder(t)
	msg := []byte("Subject: x\r\n\r\nx\r\n")
	mail := func(from string) func(c *smtp.Client) error {
		return func(c *smtp.Client) error { return c.Mail(ctx, from) }
	}
	rcpt := func(to string) func(c *smtp.Client) error {
		return func(c *smtp.Client) error {
			if err := c.Mail(ctx, "a@example.org"); err != nil {
				return err
			}
			return c.Rcpt(ctx, to)
		}
	}
	send := func(from string, to ...string) func(c *smtp.Client) error {
		return func(c *smtp.Client) error {
			_, err := c.SendMail(ctx, from, to, msg, &smtp.SendOptions{NoPipelining: true})
			return err
		}
	}
	batch := func(from string, to ...string) func(c *smtp.Client) error {
		return func(c *smtp.Client) error {
			return c.SendBatch(ctx, []smtp.Outgoing{{From: from, To: to, Data: msg}}, nil)[0].Err
		}
	}
	tests := []struct {
		name    string
		act     func(c *smtp.Client) error
		refused bool
		sent    []string // MAIL and RCPT lines the server got
	}{
		{"mail, parameters after >", mail("a@example.com> RET=FULL ENVID=x"), true, nil},
		{"mail, brackets", mail("<a@example.com>"), false, []string{"MAIL FROM:<a@example.com>"}},
		{"mail, null sender", mail(""), false, []string{"MAIL FROM:<>"}},
		{"mail, null sender in brackets", mail("<>"), false, []string{"MAIL FROM:<>"}},
		{"mail, space", mail("a@example.com SIZE=1"), true, nil},
		{"rcpt, brackets", rcpt("<d@example.com>"), false, []string{"MAIL FROM:<a@example.org>", "RCPT TO:<d@example.com>"}},
		{"rcpt, double brackets", rcpt("<<d@example.com>>"), true, []string{"MAIL FROM:<a@example.org>"}},
		{"rcpt, parameter", rcpt("d@example.com> NOTIFY=NEVER"), true, []string{"MAIL FROM:<a@example.org>"}},
		{"rcpt, tab", rcpt("d@example.com\tNOTIFY=NEVER"), true, []string{"MAIL FROM:<a@example.org>"}},
		{"rcpt, quoted local part", rcpt(`"john <doe>"@example.com`), false, []string{"MAIL FROM:<a@example.org>", `RCPT TO:<"john <doe>"@example.com>`}},
		{"rcpt, quoted local part, escaped quote", rcpt(`"a\" b"@example.com`), false, []string{"MAIL FROM:<a@example.org>", `RCPT TO:<"a\" b"@example.com>`}},
		{"rcpt, quote after the local part", rcpt(`"a"@b"> X=1 "`), true, []string{"MAIL FROM:<a@example.org>"}},
		{"rcpt, quote in the domain", rcpt(`a@b"> X=1 "`), true, []string{"MAIL FROM:<a@example.org>"}},
		{"rcpt, unterminated quote", rcpt(`"a@example.com`), true, []string{"MAIL FROM:<a@example.org>"}},
		{"sendmail, sender with parameters", send("a@example.com> RET=FULL ENVID=x", "b@example.com"), true, nil},
		{"sendmail, recipient with brackets", send("<a@example.com>", "<b@example.com>"), false, []string{"MAIL FROM:<a@example.com> SIZE=17", "RCPT TO:<b@example.com>"}},
		{"sendmail, one bad recipient", send("a@example.com", "b@example.com", "<<c@example.com>>"), true, nil},
		{"sendbatch, bad recipient", batch("a@example.com", "b@example.com> NOTIFY=NEVER"), true, nil},
		{"sendbatch, brackets", batch("<a@example.com>", "<b@example.com>"), false, []string{"MAIL FROM:<a@example.com> SIZE=17", "RCPT TO:<b@example.com>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.Sessions())
			d := &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "client.test", Timeout: 5 * time.Second}
			c, err := d.Dial(ctx, rec.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = tc.act(c)
			var ae *smtp.AddressError
			if tc.refused != errors.As(err, &ae) {
				t.Fatalf("err = %v, want an *AddressError: %v", err, tc.refused)
			}
			if tc.refused && !strings.Contains(err.Error(), "refused") {
				t.Errorf("error %q does not say the address was refused", err)
			}
			if !tc.refused && err != nil {
				t.Fatalf("err = %v", err)
			}
			c.Quit(ctx)
			var sent []string
			for _, l := range rec.Sessions()[before] {
				if strings.HasPrefix(l, "MAIL ") || strings.HasPrefix(l, "RCPT ") {
					sent = append(sent, l)
				}
			}
			if strings.Join(sent, "|") != strings.Join(tc.sent, "|") {
				t.Errorf("server got %q, want %q", sent, tc.sent)
			}
		})
	}
}
