package smtp_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// TestHelloAgainAfterStartTLS checks RFC 3207 §4.2 on every path that
// completes STARTTLS: each TLS option of the Dialer and StartTLS called by
// hand, followed by each kind of command, raw ones included. The first
// command on the TLS session must be EHLO (LHLO) with the same name as
// before, sent once, and only then the command itself. QUIT alone needs no
// new greeting.
func TestHelloAgainAfterStartTLS(t *testing.T) {
	rec := smtptest.NewRecorder(t)
	base := func(mode smtp.TLSMode) *smtp.Dialer {
		return &smtp.Dialer{TLS: mode, LocalName: "client.test", Timeout: 5 * time.Second,
			CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second,
			TLSConfig: &tls.Config{RootCAs: rec.CertPool(), ServerName: "localhost"}}
	}
	noop := func(c *smtp.Client) error { _, err := c.Noop(ctx); return err }
	msg := []byte("Subject: x\r\n\r\nx\r\n")
	type row struct {
		name   string
		dialer func() *smtp.Dialer
		byHand bool // plain dial, then c.StartTLS
		act    func(c *smtp.Client) error
		after  string // verbs expected after the handshake, QUIT excluded
	}
	rows := []row{
		{name: "starttls, verified", dialer: func() *smtp.Dialer { return base(smtp.TLSStartTLS) }, act: noop, after: "EHLO NOOP"},
		{name: "starttls, insecure_skip_verify", dialer: func() *smtp.Dialer {
			d := base(smtp.TLSStartTLS)
			d.TLSConfig = &tls.Config{InsecureSkipVerify: true}
			return d
		}, act: func(c *smtp.Client) error { _, err := c.DoCmd(ctx, "NOOP"); return err }, after: "EHLO NOOP"},
		{name: "starttls, pinned fingerprint", dialer: func() *smtp.Dialer {
			d := base(smtp.TLSStartTLS)
			d.TLSConfig, d.TLSFingerprints = nil, [][32]byte{rec.TLSFingerprintSHA256()}
			return d
		}, act: noop, after: "EHLO NOOP"},
		{name: "starttls-if-offered", dialer: func() *smtp.Dialer { return base(smtp.TLSStartTLSIfOffered) }, act: noop, after: "EHLO NOOP"},
		{name: "lmtp", dialer: func() *smtp.Dialer { d := base(smtp.TLSStartTLS); d.LMTP = true; return d }, act: noop, after: "LHLO NOOP"},
	}
	byHand := []struct {
		name  string
		act   func(c *smtp.Client) error
		after string
	}{
		{"Noop", noop, "EHLO NOOP"},
		{"DoCmd", func(c *smtp.Client) error { _, err := c.DoCmd(ctx, "NOOP"); return err }, "EHLO NOOP"},
		{"DoCmd EHLO", func(c *smtp.Client) error {
			if _, err := c.DoCmd(ctx, "EHLO client.test"); err != nil {
				return err
			}
			_, err := c.DoCmd(ctx, "NOOP")
			return err
		}, "EHLO NOOP"},
		{"PutCmd", func(c *smtp.Client) error {
			if err := c.PutCmd(ctx, "NOOP"); err != nil {
				return err
			}
			_, err := c.GetReply(ctx)
			return err
		}, "EHLO NOOP"},
		{"Ehlo", func(c *smtp.Client) error {
			if _, err := c.Ehlo(ctx); err != nil {
				return err
			}
			return noop(c)
		}, "EHLO NOOP"},
		{"Reset", func(c *smtp.Client) error { _, err := c.Reset(ctx); return err }, "EHLO RSET"},
		{"Help", func(c *smtp.Client) error { _, err := c.Help(ctx, ""); return err }, "EHLO HELP"},
		{"Verify", func(c *smtp.Client) error { _, err := c.Verify(ctx, "ops@example.org"); return err }, "EHLO VRFY"},
		{"Mail, Rcpt, Data", func(c *smtp.Client) error {
			if err := c.Mail(ctx, "a@example.org"); err != nil {
				return err
			}
			if err := c.Rcpt(ctx, "b@example.org"); err != nil {
				return err
			}
			w, err := c.Data(ctx)
			if err != nil {
				return err
			}
			w.Write(msg)
			return w.Close()
		}, "EHLO MAIL RCPT DATA"},
		{"Rcpt", func(c *smtp.Client) error { return c.Rcpt(ctx, "b@example.org") }, "EHLO RCPT"},
		{"Data", func(c *smtp.Client) error {
			w, err := c.Data(ctx)
			if err != nil {
				return err
			}
			w.Write(msg)
			return w.Close()
		}, "EHLO DATA"},
		{"Login", func(c *smtp.Client) error { return c.Login(ctx, "u", "p") }, "EHLO AUTH"},
		{"Auth", func(c *smtp.Client) error { return c.Auth(ctx, smtp.LoginAuth("u", "p")) }, "EHLO AUTH"},
		{"SendMail", func(c *smtp.Client) error {
			_, err := c.SendMail(ctx, "a@example.org", []string{"b@example.org"}, msg, &smtp.SendOptions{NoPipelining: true})
			return err
		}, "EHLO MAIL RCPT DATA"},
		{"SendBatch", func(c *smtp.Client) error {
			return c.SendBatch(ctx, []smtp.Outgoing{{From: "a@example.org", To: []string{"b@example.org"}, Data: msg}}, nil)[0].Err
		}, "EHLO MAIL RCPT DATA"},
		{"Quit", func(c *smtp.Client) error { return nil }, ""},
	}
	for _, h := range byHand {
		rows = append(rows, row{name: "StartTLS by hand, then " + h.name, dialer: func() *smtp.Dialer { return base(smtp.TLSNone) },
			byHand: true, act: h.act, after: h.after})
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.Sessions())
			c, err := tc.dialer().Dial(ctx, rec.Addr())
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if tc.byHand {
				if _, err := c.Ehlo(ctx); err != nil {
					t.Fatal(err)
				}
				if err := c.StartTLS(ctx, &tls.Config{RootCAs: rec.CertPool(), ServerName: "localhost"}); err != nil {
					t.Fatalf("StartTLS: %v", err)
				}
			}
			if err := tc.act(c); err != nil {
				t.Fatalf("command after STARTTLS: %v", err)
			}
			if _, err := c.Quit(ctx); err != nil {
				t.Fatalf("quit: %v", err)
			}
			sessions := rec.Sessions()
			if len(sessions) != before+1 {
				t.Fatalf("%d sessions, want %d", len(sessions), before+1)
			}
			s := sessions[before]
			want := strings.Fields(tc.after)
			if len(want) > 0 {
				if err := smtptest.CheckHelloAfterTLS(s, want[len(want)-1]); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := smtptest.VerbsAfterTLS(s), strings.TrimSpace(tc.after+" QUIT"); got != want {
				t.Errorf("after the handshake: %q, want %q (session %q)", got, want, s)
			}
		})
	}
}
