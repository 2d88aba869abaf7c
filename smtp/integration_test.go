package smtp_test

// Integration tests: mailbot's client against devserver, a real SMTP server
// (emersion/go-smtp) running in-process on loopback. Where the scripted
// transcript tests check what the client puts on the wire, these check that a
// real, independently written server understands it: that the bytes a server
// stores are the message the caller passed, that STARTTLS, AUTH and pinning
// interoperate, and that refusals come back with the right types.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/smtp"
)

// itTimeout bounds every integration test; loopback exchanges take
// milliseconds, so hitting it means a hang, not a slow machine.
const itTimeout = 30 * time.Second

const (
	itUser = "bot"
	itPass = "s3cret"
	itFrom = "bot@example.org"
)

func itContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), itTimeout)
	t.Cleanup(cancel)
	return ctx
}

// itServer starts a devserver with one known user unless cfg says otherwise.
func itServer(t *testing.T, cfg devserver.Config) *devserver.Server {
	t.Helper()
	if cfg.Users == nil {
		cfg.Users = map[string]string{itUser: itPass}
	}
	return devtest.Start(t, cfg)
}

// itDialer is the Dialer every STARTTLS test starts from: it trusts only
// the dev server's self-signed certificate.
func itDialer(srv *devserver.Server) *smtp.Dialer {
	return &smtp.Dialer{
		LocalName:      "client.test",
		TLS:            smtp.TLSStartTLS,
		TLSConfig:      &tls.Config{RootCAs: srv.CertPool()},
		Timeout:        10 * time.Second,
		CommandTimeout: 10 * time.Second,
		DataTimeout:    10 * time.Second,
	}
}

// itLogin dials with STARTTLS and logs in: the usual submission start.
func itLogin(t *testing.T, ctx context.Context, srv *devserver.Server) *smtp.Client {
	t.Helper()
	c, err := itDialer(srv).Dial(ctx, srv.Addr())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(ctx, itUser, itPass); err != nil {
		t.Fatalf("Login: %v", err)
	}
	return c
}

// itWait returns the n-th message the server accepted (1-based).
func itWait(t *testing.T, ctx context.Context, srv *devserver.Server, n int) devserver.Message {
	t.Helper()
	msgs, err := srv.WaitMessages(ctx, n)
	if err != nil {
		t.Fatalf("WaitMessages(%d): %v", n, err)
	}
	return msgs[n-1]
}

// TestIntegrationSendMailBody follows the usual flow (STARTTLS, Login,
// SendMail, Quit) and checks that the server stores exactly the message,
// after the transformations SMTP itself imposes: CRLF line ends and a final
// line end. Dot-stuffing must be invisible to the server's reader.
func TestIntegrationSendMailBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		msg      string
		want     string
		wantBody string // MAIL BODY= parameter, "" for none
	}{
		{
			name: "crlf",
			msg:  "Subject: nightly\r\n\r\nall green\r\n",
			want: "Subject: nightly\r\n\r\nall green\r\n",
		},
		{
			name: "leading dots",
			msg:  "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\n. space\r\nend\r\n",
			want: "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\n. space\r\nend\r\n",
		},
		{
			name: "bare LF",
			msg:  "Subject: lf\n\nline one\nline two\n",
			want: "Subject: lf\r\n\r\nline one\r\nline two\r\n",
		},
		{
			name: "bare CR and mixed",
			msg:  "Subject: cr\r\n\r\na\rb\r\nc\n\rd",
			want: "Subject: cr\r\n\r\na\r\nb\r\nc\r\n\r\nd\r\n",
		},
		{
			name: "no final line end",
			msg:  "Subject: short\r\n\r\nno newline at end",
			want: "Subject: short\r\n\r\nno newline at end\r\n",
		},
		{
			// A body that tries to end DATA early with "\n.\n" and start a
			// second transaction (SMTP smuggling) must arrive as one
			// message holding those lines as text.
			name: "smuggling attempt",
			msg:  "Subject: x\n\nhello\n.\nMAIL FROM:<evil@example.net>\nRCPT TO:<victim@example.org>\nDATA\nforged\n.\n",
			want: "Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nforged\r\n.\r\n",
		},
		{
			name:     "8bit body",
			msg:      "Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nnaïve café ☕\r\n",
			want:     "Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nnaïve café ☕\r\n",
			wantBody: "8BITMIME",
		},
		{
			name: "dot line at very start",
			msg:  ".\r\nfirst line was a dot\r\n",
			want: ".\r\nfirst line was a dot\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := itContext(t)
			srv := itServer(t, devserver.Config{RequireAuth: true})
			c := itLogin(t, ctx, srv)

			st, ok := c.TLSConnectionState()
			if !ok {
				t.Fatal("TLSConnectionState: not encrypted after Dial with TLSStartTLS")
			}
			if st.Version < tls.VersionTLS12 || !st.HandshakeComplete {
				t.Errorf("TLS state: version %s, handshake complete %v; want >= TLS 1.2, complete",
					tls.VersionName(st.Version), st.HandshakeComplete)
			}
			if _, isTLS := c.Conn().(*tls.Conn); !isTLS {
				t.Errorf("Conn() is %T, want *tls.Conn", c.Conn())
			}

			to := []string{"ops@example.org", "dev@example.org"}
			refused, err := c.SendMail(ctx, itFrom, to, []byte(tc.msg), nil)
			if err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			if len(refused) != 0 {
				t.Errorf("SendMail refusals = %v, want none", refused)
			}
			if _, err := c.Quit(ctx); err != nil {
				t.Errorf("Quit: %v", err)
			}

			m := itWait(t, ctx, srv, 1)
			if got := string(m.Data); got != tc.want {
				t.Errorf("server received\n%q\nwant\n%q", got, tc.want)
			}
			if m.From != itFrom || !reflect.DeepEqual(m.To, to) {
				t.Errorf("envelope = %q -> %q, want %q -> %q", m.From, m.To, itFrom, to)
			}
			if !m.TLS || m.AuthUser != itUser {
				t.Errorf("message TLS=%v AuthUser=%q, want true, %q", m.TLS, m.AuthUser, itUser)
			}
			// SIZE (RFC 1870) counts the message as sent, with CRLF line
			// ends, without dot-stuffing: exactly what the server got.
			if size, err := strconv.Atoi(m.MailOptions["SIZE"]); err != nil || size != len(tc.want) {
				t.Errorf("MAIL SIZE=%q, want %d", m.MailOptions["SIZE"], len(tc.want))
			}
			if got := m.MailOptions["BODY"]; got != tc.wantBody {
				t.Errorf("MAIL BODY=%q, want %q", got, tc.wantBody)
			}
			if _, utf8 := m.MailOptions["SMTPUTF8"]; utf8 {
				t.Error("MAIL carried SMTPUTF8 for ASCII addresses")
			}
			if got := len(srv.Messages()); got != 1 {
				t.Errorf("server stored %d messages, want 1", got)
			}
		})
	}
}

// TestIntegrationSMTPUTF8 sends to a non-ASCII address: the client must
// announce SMTPUTF8 for that message, and only for that one.
func TestIntegrationSMTPUTF8(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{})
	c := itLogin(t, ctx, srv)

	tests := []struct {
		name     string
		from     string
		to       []string
		wantUTF8 bool
	}{
		{"non-ASCII recipient", itFrom, []string{"zoë@example.org"}, true},
		{"ASCII after UTF-8", itFrom, []string{"ops@example.org"}, false},
		{"non-ASCII sender", "résumé@example.org", []string{"ops@example.org"}, true},
	}
	for i, tc := range tests {
		msg := []byte("Subject: utf8\r\n\r\n" + tc.name + "\r\n")
		if _, err := c.SendMail(ctx, tc.from, tc.to, msg, nil); err != nil {
			t.Fatalf("%s: SendMail: %v", tc.name, err)
		}
		m := itWait(t, ctx, srv, i+1)
		if _, got := m.MailOptions["SMTPUTF8"]; got != tc.wantUTF8 {
			t.Errorf("%s: SMTPUTF8 sent = %v, want %v", tc.name, got, tc.wantUTF8)
		}
		if m.From != tc.from || !reflect.DeepEqual(m.To, tc.to) {
			t.Errorf("%s: envelope = %q -> %q, want %q -> %q", tc.name, m.From, m.To, tc.from, tc.to)
		}
	}
}

// TestIntegrationAuth covers when credentials may be sent and what a
// refusal looks like.
func TestIntegrationAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		serverCfg   devserver.Config
		clientTLS   smtp.TLSMode
		clientAllow bool
		password    string
		// wantNotSupported is the Extension of the expected
		// *NotSupportedError; wantCode the SMTP code inside an
		// *AuthError; neither means Login succeeds.
		wantNotSupported string
		wantCode         int
	}{
		{
			name:             "plaintext, server offers AUTH only after TLS",
			clientTLS:        smtp.TLSNone,
			clientAllow:      true,
			password:         itPass,
			wantNotSupported: "AUTH",
		},
		{
			name:             "plaintext, client refuses to send credentials",
			serverCfg:        devserver.Config{AllowInsecureAuth: true},
			clientTLS:        smtp.TLSNone,
			password:         itPass,
			wantNotSupported: "TLS",
		},
		{
			name:        "plaintext allowed on both sides",
			serverCfg:   devserver.Config{AllowInsecureAuth: true},
			clientTLS:   smtp.TLSNone,
			clientAllow: true,
			password:    itPass,
		},
		{
			name:      "STARTTLS, right password",
			clientTLS: smtp.TLSStartTLS,
			password:  itPass,
		},
		{
			name:      "STARTTLS, wrong password",
			clientTLS: smtp.TLSStartTLS,
			password:  "wrong",
			wantCode:  535,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := itContext(t)
			srv := itServer(t, tc.serverCfg)
			d := itDialer(srv)
			d.TLS = tc.clientTLS
			d.AllowInsecureAuth = tc.clientAllow
			c, err := d.Dial(ctx, srv.Addr())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()

			err = c.Login(ctx, itUser, tc.password)
			var nse *smtp.NotSupportedError
			var ae *smtp.AuthError
			var se *smtp.SMTPError
			switch {
			case tc.wantNotSupported != "":
				if !errors.As(err, &nse) || nse.Extension != tc.wantNotSupported {
					t.Fatalf("Login error = %v (%T), want *NotSupportedError for %s", err, err, tc.wantNotSupported)
				}
			case tc.wantCode != 0:
				if !errors.As(err, &ae) {
					t.Fatalf("Login error = %v (%T), want *AuthError", err, err)
				}
				if !errors.As(err, &se) || se.Code != tc.wantCode || se.Command != "AUTH" {
					t.Fatalf("Login error = %v, want an *SMTPError AUTH %d inside", err, tc.wantCode)
				}
				// A wrong password leaves the session usable: log in
				// again with the right one.
				if err := c.Login(ctx, itUser, itPass); err != nil {
					t.Fatalf("Login after a refused password: %v", err)
				}
			default:
				if err != nil {
					t.Fatalf("Login: %v", err)
				}
			}

			if _, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, []byte("Subject: a\r\n\r\nb\r\n"), nil); err != nil {
				t.Fatalf("SendMail: %v", err)
			}
			m := itWait(t, ctx, srv, 1)
			wantUser := itUser
			if tc.wantNotSupported != "" {
				wantUser = "" // nothing was sent, so nobody logged in
			}
			_, encrypted := c.TLSConnectionState()
			if m.AuthUser != wantUser || m.TLS != encrypted {
				t.Errorf("message AuthUser=%q TLS=%v, want %q, %v", m.AuthUser, m.TLS, wantUser, encrypted)
			}
		})
	}
}

// TestIntegrationAuthMechanisms drives each mechanism devserver implements
// through Auth.
func TestIntegrationAuthMechanisms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mech smtp.Mechanism
		ok   bool
	}{
		{"PLAIN", smtp.PlainAuth("", itUser, itPass), true},
		{"PLAIN wrong", smtp.PlainAuth("", itUser, "nope"), false},
		{"LOGIN", smtp.LoginAuth(itUser, itPass), true},
		{"LOGIN initial response", smtp.LoginAuthInitial(itUser, itPass), true},
		{"LOGIN wrong", smtp.LoginAuth(itUser, "nope"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := itContext(t)
			srv := itServer(t, devserver.Config{})
			c, err := itDialer(srv).Dial(ctx, srv.Addr())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			err = c.Auth(ctx, tc.mech)
			if tc.ok {
				if err != nil {
					t.Fatalf("Auth: %v", err)
				}
				return
			}
			var ae *smtp.AuthError
			var se *smtp.SMTPError
			if !errors.As(err, &ae) || ae.Mechanism != tc.mech.Name() || !errors.As(err, &se) || se.Code != 535 {
				t.Fatalf("Auth error = %v (%T), want *AuthError %s wrapping SMTP 535", err, err, tc.mech.Name())
			}
		})
	}
}

// TestIntegrationTLSVerification checks certificate verification and
// pinning against the dev server's self-signed certificate.
func TestIntegrationTLSVerification(t *testing.T) {
	t.Parallel()
	srv := itServer(t, devserver.Config{})
	right := smtp.CertificateFingerprint(srv.Certificate())
	wrong := right
	wrong[0] ^= 0xff

	tests := []struct {
		name    string
		config  *tls.Config
		pins    [][32]byte
		wantErr bool
	}{
		{name: "trusted root", config: &tls.Config{RootCAs: srv.CertPool()}},
		{name: "system roots only", config: nil, wantErr: true},
		{name: "right pin, no roots", pins: [][32]byte{right}},
		{name: "right pin among others", pins: [][32]byte{wrong, right}},
		{name: "wrong pin", pins: [][32]byte{wrong}, wantErr: true},
		// A pin is the whole trust decision: a trusted root does not
		// rescue a certificate that does not match it.
		{name: "wrong pin, trusted root", config: &tls.Config{RootCAs: srv.CertPool()}, pins: [][32]byte{wrong}, wantErr: true},
		{name: "trusted root, wrong server name", config: &tls.Config{RootCAs: srv.CertPool(), ServerName: "mail.example.org"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := itContext(t)
			d := itDialer(srv)
			d.TLSConfig = tc.config
			d.TLSFingerprints = tc.pins
			c, err := d.Dial(ctx, srv.Addr())
			if tc.wantErr {
				var te *smtp.TLSError
				if !errors.As(err, &te) {
					if c != nil {
						c.Close()
					}
					t.Fatalf("Dial error = %v (%T), want *TLSError", err, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			st, ok := c.TLSConnectionState()
			if !ok || st.Version < tls.VersionTLS12 || len(st.PeerCertificates) == 0 {
				t.Fatalf("TLS state ok=%v version=%x certs=%d, want TLS >= 1.2 with a peer certificate", ok, st.Version, len(st.PeerCertificates))
			}
			if got := smtp.CertificateFingerprint(st.PeerCertificates[0]); got != right {
				t.Errorf("peer fingerprint %s, want %s", smtp.FormatFingerprint(got), smtp.FormatFingerprint(right))
			}
			if err := c.Login(ctx, itUser, itPass); err != nil {
				t.Fatalf("Login: %v", err)
			}
		})
	}

	t.Run("system roots report the verification failure", func(t *testing.T) {
		t.Parallel()
		d := itDialer(srv)
		d.TLSConfig = nil
		_, err := d.Dial(itContext(t), srv.Addr())
		var cve *tls.CertificateVerificationError
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &cve) || !errors.As(err, &ua) {
			t.Fatalf("Dial error = %v, want a *tls.CertificateVerificationError for an unknown authority", err)
		}
	})
}

// TestIntegrationImplicitTLS connects port-465 style.
func TestIntegrationImplicitTLS(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{ImplicitTLS: true})
	c, err := smtp.DialTLS(ctx, srv.Addr(), &tls.Config{RootCAs: srv.CertPool()})
	if err != nil {
		t.Fatalf("DialTLS: %v", err)
	}
	defer c.Close()
	if err := c.Login(ctx, itUser, itPass); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if _, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, []byte("Subject: 465\r\n\r\nhi\r\n"), nil); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if m := itWait(t, ctx, srv, 1); !m.TLS || m.AuthUser != itUser {
		t.Errorf("message TLS=%v AuthUser=%q, want true, %q", m.TLS, m.AuthUser, itUser)
	}
}

// itRejectRcpt returns a hook refusing the recipients in bad.
func itRejectRcpt(bad map[string]*devserver.Reject) func(string) *devserver.Reject {
	return func(to string) *devserver.Reject { return bad[to] }
}

// TestIntegrationRecipientRefusals checks partial and total refusals,
// pipelined and in lockstep, and that the connection carries the next
// message afterwards (the client's RSET put the server back in step).
func TestIntegrationRecipientRefusals(t *testing.T) {
	t.Parallel()
	bad := map[string]*devserver.Reject{
		"nobody@example.org": {Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"},
		"full@example.org":   {Code: 452, Enhanced: [3]int{4, 2, 2}, Message: "mailbox full"},
	}
	for _, noPipe := range []bool{false, true} {
		t.Run("NoPipelining="+strconv.FormatBool(noPipe), func(t *testing.T) {
			t.Parallel()
			ctx := itContext(t)
			srv := itServer(t, devserver.Config{Hooks: devserver.Hooks{Rcpt: itRejectRcpt(bad)}})
			c := itLogin(t, ctx, srv)
			opts := &smtp.SendOptions{NoPipelining: noPipe}
			msg := []byte("Subject: r\r\n\r\nbody\r\n")

			// Partial: the message goes to the accepted recipients.
			refused, err := c.SendMail(ctx, itFrom, []string{"ops@example.org", "nobody@example.org", "full@example.org"}, msg, opts)
			if err != nil {
				t.Fatalf("partial: SendMail: %v", err)
			}
			want := smtp.Refusals{
				"nobody@example.org": {Command: "RCPT", Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
				"full@example.org":   {Command: "RCPT", Code: 452, Enhanced: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"},
			}
			if !reflect.DeepEqual(refused, want) {
				t.Errorf("partial: refusals = %v, want %v", refused, want)
			}
			if got := refused.Temporary(); !reflect.DeepEqual(got, []string{"full@example.org"}) {
				t.Errorf("partial: Temporary() = %q", got)
			}
			if got := refused.Permanent(); !reflect.DeepEqual(got, []string{"nobody@example.org"}) {
				t.Errorf("partial: Permanent() = %q", got)
			}
			if m := itWait(t, ctx, srv, 1); !reflect.DeepEqual(m.To, []string{"ops@example.org"}) {
				t.Errorf("partial: delivered to %q, want [ops@example.org]", m.To)
			}

			// Total: nothing is sent and the error lists every refusal.
			refused, err = c.SendMail(ctx, itFrom, []string{"nobody@example.org", "full@example.org"}, msg, opts)
			var rre *smtp.RecipientsRefusedError
			if !errors.As(err, &rre) || refused != nil {
				t.Fatalf("total: SendMail = %v, %v (%T); want nil, *RecipientsRefusedError", refused, err, err)
			}
			if !reflect.DeepEqual(rre.Recipients, want) {
				t.Errorf("total: Recipients = %v, want %v", rre.Recipients, want)
			}
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Command != "RCPT" {
				t.Errorf("total: errors.As(*SMTPError) = %v, want a RCPT refusal through Unwrap() []error", se)
			}

			// The session is still in step: a clean message goes through.
			if refused, err := c.SendMail(ctx, itFrom, []string{"dev@example.org"}, msg, opts); err != nil || refused != nil {
				t.Fatalf("after refusals: SendMail = %v, %v", refused, err)
			}
			if m := itWait(t, ctx, srv, 2); !reflect.DeepEqual(m.To, []string{"dev@example.org"}) || m.From != itFrom {
				t.Errorf("after refusals: envelope %q -> %q", m.From, m.To)
			}
			if got := len(srv.Messages()); got != 2 {
				t.Errorf("server stored %d messages, want 2", got)
			}
			if _, err := c.Quit(ctx); err != nil {
				t.Errorf("Quit: %v", err)
			}
		})
	}
}

// TestIntegrationSenderAndDataRefusals checks the other two places a server
// refuses a transaction, and recovery after each.
func TestIntegrationSenderAndDataRefusals(t *testing.T) {
	t.Parallel()
	hooks := devserver.Hooks{
		Mail: func(from string) *devserver.Reject {
			if from == "spammer@example.net" {
				return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 7, 1}, Message: "sender blocked"}
			}
			return nil
		},
		Data: func(m *devserver.Message) *devserver.Reject {
			if bytes.Contains(m.Data, []byte("VIRUS")) {
				return &devserver.Reject{Code: 554, Enhanced: [3]int{5, 6, 0}, Message: "content rejected"}
			}
			if bytes.Contains(m.Data, []byte("GREYLIST")) {
				return &devserver.Reject{Code: 451, Enhanced: [3]int{4, 7, 1}, Message: "try again later"}
			}
			return nil
		},
	}
	for _, noPipe := range []bool{false, true} {
		t.Run("NoPipelining="+strconv.FormatBool(noPipe), func(t *testing.T) {
			t.Parallel()
			ctx := itContext(t)
			srv := itServer(t, devserver.Config{Hooks: hooks})
			c := itLogin(t, ctx, srv)
			opts := &smtp.SendOptions{NoPipelining: noPipe}
			to := []string{"ops@example.org"}

			_, err := c.SendMail(ctx, "spammer@example.net", to, []byte("Subject: s\r\n\r\nx\r\n"), opts)
			var sre *smtp.SenderRefusedError
			if !errors.As(err, &sre) || sre.Sender != "spammer@example.net" || sre.Err.Code != 550 || sre.Err.Enhanced != (smtp.EnhancedCode{5, 7, 1}) {
				t.Fatalf("blocked sender: err = %v (%T), want *SenderRefusedError 550 5.7.1", err, err)
			}

			for _, tc := range []struct {
				body      string
				code      int
				temporary bool
			}{{"VIRUS", 554, false}, {"GREYLIST", 451, true}} {
				_, err = c.SendMail(ctx, itFrom, to, []byte("Subject: d\r\n\r\n"+tc.body+"\r\n"), opts)
				var de *smtp.DataError
				if !errors.As(err, &de) || de.Err.Code != tc.code || de.Err.Command != "." || de.Err.Temporary() != tc.temporary {
					t.Fatalf("%s: err = %v (%T), want *DataError %d after the final dot", tc.body, err, err, tc.code)
				}
			}

			if _, err := c.SendMail(ctx, itFrom, to, []byte("Subject: ok\r\n\r\nfine\r\n"), opts); err != nil {
				t.Fatalf("after refusals: SendMail: %v", err)
			}
			msgs, err := srv.WaitMessages(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 1 || string(msgs[0].Data) != "Subject: ok\r\n\r\nfine\r\n" {
				t.Errorf("server stored %d messages (first %q), want only the clean one", len(msgs), msgs[0].Data)
			}
		})
	}
}

// TestIntegrationUnsupportedParam checks that a parameter the server did not
// advertise stops SendMail before anything is sent, leaving the session
// usable.
func TestIntegrationUnsupportedParam(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{})
	c := itLogin(t, ctx, srv)
	msg := []byte("Subject: p\r\n\r\nx\r\n")
	_, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, msg, &smtp.SendOptions{MailParams: []string{"MT-PRIORITY=3"}})
	var nse *smtp.NotSupportedError
	if !errors.As(err, &nse) || nse.Extension != "MT-PRIORITY" {
		t.Fatalf("SendMail error = %v (%T), want *NotSupportedError for MT-PRIORITY", err, err)
	}
	// REQUIRETLS is advertised once TLS is up, so it goes through.
	if _, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, msg, &smtp.SendOptions{MailParams: []string{"REQUIRETLS"}}); err != nil {
		t.Fatalf("SendMail with REQUIRETLS: %v", err)
	}
	m := itWait(t, ctx, srv, 1)
	if _, ok := m.MailOptions["REQUIRETLS"]; !ok {
		t.Errorf("MailOptions = %v, want REQUIRETLS", m.MailOptions)
	}
	if got := len(srv.Messages()); got != 1 {
		t.Errorf("server stored %d messages, want 1", got)
	}
}

// TestIntegrationDSN checks that DSN parameters reach a real parser intact:
// RET, ENVID (xtext-encoded on the wire, decoded by the server), NOTIFY per
// recipient and ORCPT.
func TestIntegrationDSN(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{})
	c := itLogin(t, ctx, srv)
	if !c.HasExtension("DSN") {
		t.Fatal("devserver did not advertise DSN")
	}
	envID := "run 42+retry=1 (nightly)"
	opts := &smtp.SendOptions{DSN: &smtp.DSN{
		Return:            "hdrs",
		EnvelopeID:        envID,
		Notify:            []string{"failure", "delay"},
		NotifyFor:         map[string][]string{"quiet@example.org": {"NEVER"}},
		OriginalRecipient: true,
	}}
	to := []string{"ops@example.org", "quiet@example.org", "a+tag@example.org"}
	if _, err := c.SendMail(ctx, itFrom, to, []byte("Subject: dsn\r\n\r\nx\r\n"), opts); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	m := itWait(t, ctx, srv, 1)
	if got := m.MailOptions["RET"]; got != "HDRS" {
		t.Errorf("RET = %q, want HDRS", got)
	}
	if got := m.MailOptions["ENVID"]; got != envID {
		t.Errorf("ENVID decoded by the server = %q, want %q", got, envID)
	}
	want := map[string]map[string]string{
		"ops@example.org":   {"NOTIFY": "FAILURE,DELAY", "ORCPT": "RFC822;ops@example.org"},
		"quiet@example.org": {"NOTIFY": "NEVER", "ORCPT": "RFC822;quiet@example.org"},
		"a+tag@example.org": {"NOTIFY": "FAILURE,DELAY", "ORCPT": "RFC822;a+tag@example.org"},
	}
	if !reflect.DeepEqual(m.RcptOptions, want) {
		t.Errorf("RcptOptions = %v, want %v", m.RcptOptions, want)
	}
}

// itSocketPath returns a short Unix socket path: t.TempDir() embeds the test
// name and can exceed the 108-byte sun_path limit.
func itSocketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mbl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "lmtp.sock")
}

// TestIntegrationLMTP delivers over LMTP on a Unix socket, where the server
// answers the message once per recipient.
func TestIntegrationLMTP(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{
		Network: "unix",
		Addr:    itSocketPath(t),
		LMTP:    true,
		Hooks: devserver.Hooks{DataRcpt: func(_ *devserver.Message, rcpt string) *devserver.Reject {
			switch rcpt {
			case "over@example.org":
				return &devserver.Reject{Code: 552, Enhanced: [3]int{5, 2, 2}, Message: "over quota"}
			case "busy@example.org":
				return &devserver.Reject{Code: 450, Enhanced: [3]int{4, 2, 0}, Message: "mailbox busy"}
			}
			return nil
		}},
	})
	d := &smtp.Dialer{LMTP: true, TLS: smtp.TLSNone, LocalName: "client.test", Timeout: 10 * time.Second}
	c, err := d.DialUnix(ctx, srv.Addr())
	if err != nil {
		t.Fatalf("DialUnix: %v", err)
	}
	defer c.Close()
	if !c.IsLMTP() {
		t.Error("IsLMTP() = false")
	}
	msg := []byte("Subject: lmtp\n\nlocal delivery\n")

	refused, err := c.SendMail(ctx, itFrom, []string{"alice@example.org", "over@example.org", "carol@example.org", "busy@example.org"}, msg, nil)
	if err != nil {
		t.Fatalf("partial: SendMail: %v", err)
	}
	want := smtp.Refusals{
		// go-smtp's LMTP replies name the recipient in the text.
		"over@example.org": {Command: ".", Code: 552, Enhanced: smtp.EnhancedCode{5, 2, 2}, Message: "<over@example.org> over quota"},
		"busy@example.org": {Command: ".", Code: 450, Enhanced: smtp.EnhancedCode{4, 2, 0}, Message: "<busy@example.org> mailbox busy"},
	}
	if !reflect.DeepEqual(refused, want) {
		t.Errorf("partial: refusals = %v, want %v", refused, want)
	}
	m := itWait(t, ctx, srv, 1)
	if !reflect.DeepEqual(m.To, []string{"alice@example.org", "carol@example.org"}) {
		t.Errorf("partial: stored for %q, want alice and carol", m.To)
	}
	if got, want := string(m.Data), "Subject: lmtp\r\n\r\nlocal delivery\r\n"; got != want {
		t.Errorf("partial: data = %q, want %q", got, want)
	}

	// Every recipient refusing the message is a *RecipientsRefusedError.
	_, err = c.SendMail(ctx, itFrom, []string{"over@example.org", "busy@example.org"}, msg, nil)
	var rre *smtp.RecipientsRefusedError
	if !errors.As(err, &rre) || !reflect.DeepEqual(rre.Recipients, want) {
		t.Fatalf("total: err = %v (%T), want *RecipientsRefusedError with %v", err, err, want)
	}

	// And the session goes on.
	if refused, err := c.SendMail(ctx, itFrom, []string{"alice@example.org"}, msg, nil); err != nil || refused != nil {
		t.Fatalf("after refusals: SendMail = %v, %v", refused, err)
	}
	if m := itWait(t, ctx, srv, 2); !reflect.DeepEqual(m.To, []string{"alice@example.org"}) {
		t.Errorf("after refusals: stored for %q", m.To)
	}
	if _, err := c.Quit(ctx); err != nil {
		t.Errorf("Quit: %v", err)
	}
}

// TestIntegrationDialLMTP uses the smtplib-style constructor over a socket.
func TestIntegrationDialLMTP(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{Network: "unix", Addr: itSocketPath(t), LMTP: true})
	c, err := smtp.DialLMTP(ctx, "unix", srv.Addr())
	if err != nil {
		t.Fatalf("DialLMTP: %v", err)
	}
	defer c.Close()
	if _, err := c.SendMail(ctx, "", []string{"alice@example.org"}, []byte("x"), nil); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if m := itWait(t, ctx, srv, 1); m.From != "" || string(m.Data) != "x\r\n" {
		t.Errorf("stored From=%q Data=%q, want null sender and \"x\\r\\n\"", m.From, m.Data)
	}
}

// TestIntegrationManySends reuses one connection for many messages, as a
// batch job does, and checks every one arrived intact and in order.
func TestIntegrationManySends(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{})
	c := itLogin(t, ctx, srv)
	const n = 50
	for i := range n {
		body := "Subject: " + strconv.Itoa(i) + "\r\n\r\n" + strings.Repeat(".line\n", i%7)
		if _, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, []byte(body), nil); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	msgs, err := srv.WaitMessages(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		want := "Subject: " + strconv.Itoa(i) + "\r\n\r\n" + strings.Repeat(".line\r\n", i%7)
		if string(m.Data) != want {
			t.Errorf("message %d = %q, want %q", i, m.Data, want)
		}
	}
}

// TestIntegrationDSNNonASCIIOriginalRecipient asks for ORCPT on a non-ASCII
// recipient. RFC 6533 §3 keeps the "rfc822" address type ASCII-only: such an
// address must travel as "utf-8;" utf-8-addr-xtext. The client currently
// sends "rfc822;" with the UTF-8 bytes xtext-encoded, which go-smtp refuses
// (501 Malformed ORCPT), so the recipient is lost.
func TestIntegrationDSNNonASCIIOriginalRecipient(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{})
	c := itLogin(t, ctx, srv)
	to := []string{"zoë@example.org", "ops@example.org"}
	refused, err := c.SendMail(ctx, itFrom, to, []byte("Subject: dsn\r\n\r\nx\r\n"),
		&smtp.SendOptions{DSN: &smtp.DSN{OriginalRecipient: true}})
	if err != nil || refused != nil {
		t.Fatalf("SendMail = %v, %v; want no refusals", refused, err)
	}
	want := map[string]map[string]string{
		"zoë@example.org": {"ORCPT": "UTF-8;zoë@example.org"},
		"ops@example.org": {"ORCPT": "RFC822;ops@example.org"},
	}
	if m := itWait(t, ctx, srv, 1); !reflect.DeepEqual(m.RcptOptions, want) {
		t.Errorf("RcptOptions = %v, want %v", m.RcptOptions, want)
	}
}
