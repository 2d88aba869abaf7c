package smtp_test

import (
	"errors"
	"testing"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// TestBinaryMIMERefusedWithDATA checks that BODY=BINARYMIME, which RFC 3030
// allows only with BDAT, is refused before anything is sent on every path
// that would end the transaction with DATA, even when the server offers it.
func TestBinaryMIMERefusedWithDATA(t *testing.T) {
	const script = "S: 220 x\nC: EHLO localhost\nS: 250-x\nS: 250-8BITMIME\nS: 250-CHUNKING\nS: 250-PIPELINING\nS: 250 BINARYMIME\nC: QUIT\nS: 221 bye\n"
	msg := []byte("x\r\n")
	tests := []struct {
		name string
		act  func(c *smtp.Client) error
	}{
		{"Mail", func(c *smtp.Client) error { return c.Mail(ctx, "a@example.org", "BODY=BINARYMIME") }},
		{"Mail, lower case", func(c *smtp.Client) error { return c.Mail(ctx, "a@example.org", "body=binarymime") }},
		{"SendMail", func(c *smtp.Client) error {
			_, err := c.SendMail(ctx, "a@example.org", []string{"b@example.org"}, msg, &smtp.SendOptions{MailParams: []string{"BODY=BINARYMIME"}, NoChunking: true})
			return err
		}},
		{"SendMail, lockstep", func(c *smtp.Client) error {
			_, err := c.SendMail(ctx, "a@example.org", []string{"b@example.org"}, msg, &smtp.SendOptions{MailParams: []string{"BODY=BINARYMIME"}, NoPipelining: true})
			return err
		}},
		{"SendBatch", func(c *smtp.Client) error {
			return c.SendBatch(ctx, []smtp.Outgoing{{From: "a@example.org", To: []string{"b@example.org"}, Data: msg,
				Opts: &smtp.SendOptions{MailParams: []string{"BODY=BINARYMIME"}, NoChunking: true}}}, nil)[0].Err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, script)
			c := dial(t, srv, plainDialer())
			if _, err := c.Ehlo(ctx); err != nil {
				t.Fatal(err)
			}
			if err := tc.act(c); !errors.Is(err, smtp.ErrBinaryMIME) {
				t.Fatalf("err = %v, want ErrBinaryMIME", err)
			}
			quit(t, c)
			waitServer(t, srv)
		})
	}
}
