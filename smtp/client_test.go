package smtp_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// script loads testdata/transcripts/name.txt.
func script(t *testing.T, name string) string {
	t.Helper()
	return smtptest.LoadScript(t, filepath.Join("testdata", "transcripts", name+".txt"))
}

// plainDialer returns a dialer for a scripted server: no TLS, a fixed EHLO
// name, short timeouts so a broken test fails fast.
func plainDialer() *smtp.Dialer {
	return &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost", Timeout: 5 * time.Second,
		CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second}
}

func dial(t *testing.T, srv *smtptest.Server, d *smtp.Dialer) *smtp.Client {
	t.Helper()
	c, err := d.Dial(context.Background(), srv.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitServer checks that the server played its whole script.
func waitServer(t *testing.T, srv *smtptest.Server) {
	t.Helper()
	if err := srv.Wait(); err != nil {
		t.Fatalf("server: %v\ntranscript:\n%s", err, srv.Transcript())
	}
}

func quit(t *testing.T, c *smtp.Client) {
	t.Helper()
	if _, err := c.Quit(context.Background()); err != nil {
		t.Fatalf("quit: %v", err)
	}
}

var ctx = context.Background()

func TestStartTLSRequiredBeforeAuth(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "starttls_required_for_auth"))
	c := dial(t, srv, plainDialer())
	err := c.Login(ctx, "user", "secret")
	var ns *smtp.NotSupportedError
	if !errors.As(err, &ns) || ns.Extension != "AUTH" {
		t.Fatalf("Login over plain connection = %v, want *NotSupportedError for AUTH", err)
	}
	if !strings.Contains(err.Error(), "only after STARTTLS") {
		t.Errorf("error %q does not tell the user to use STARTTLS", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestStartTLSThenAuth(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "starttls_then_auth"))
	d := plainDialer()
	d.TLS = smtp.TLSStartTLS
	d.TLSConfig = &tls.Config{RootCAs: srv.CertPool(), ServerName: "localhost"}
	c := dial(t, srv, d)
	st, ok := c.TLSConnectionState()
	if !ok || st.Version < tls.VersionTLS12 || !st.HandshakeComplete {
		t.Fatalf("TLS state = %v %+v, want TLS >= 1.2", ok, st.Version)
	}
	if c.HasExtension("AUTH") {
		t.Fatal("extensions from before STARTTLS were kept")
	}
	if err := c.Login(ctx, "user", "secret"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if got, want := c.AuthMechanisms(), []string{"PLAIN", "LOGIN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("mechanisms after TLS = %v, want %v", got, want)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestStartTLSDiscardsInjectedReplies(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "starttls_injection"))
	c := dial(t, srv, plainDialer())
	if err := c.StartTLS(ctx, &tls.Config{RootCAs: srv.CertPool(), ServerName: "localhost"}); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	if got := c.HelloReply().Lines[0]; got != "fake.test" {
		t.Errorf("EHLO reply after TLS = %q, want the real one, not the injected one", got)
	}
	if got := c.AuthMechanisms(); !reflect.DeepEqual(got, []string{"LOGIN"}) {
		t.Errorf("mechanisms = %v, want [LOGIN] from the TLS session", got)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestCertificateVerifiedByDefault(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 fake.test\n", smtptest.WithImplicitTLS())
	d := plainDialer()
	d.TLS = smtp.TLSImplicit // no RootCAs: the self-signed certificate must fail
	_, err := d.Dial(ctx, srv.Addr())
	var te *smtp.TLSError
	if !errors.As(err, &te) {
		t.Fatalf("dial = %v, want *TLSError", err)
	}
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &cve) {
		t.Errorf("error %v does not carry the certificate verification failure", err)
	}
}

func TestCertificatePinning(t *testing.T) {
	for _, tc := range []struct {
		name  string
		right bool
	}{{"right pin", true}, {"wrong pin", false}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, "S: 220 fake.test\nC: QUIT\nS: 221 bye\n", smtptest.WithImplicitTLS())
			pin := srv.TLSFingerprintSHA256()
			if !tc.right {
				pin[0] ^= 0xff
			}
			d := plainDialer()
			d.TLS = smtp.TLSImplicit
			d.TLSFingerprints = [][32]byte{pin}
			c, err := d.Dial(ctx, srv.Addr())
			if !tc.right {
				var te *smtp.TLSError
				if !errors.As(err, &te) || !strings.Contains(err.Error(), "fingerprint") {
					t.Fatalf("dial with wrong pin = %v, want *TLSError about the fingerprint", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial with right pin: %v", err)
			}
			quit(t, c)
			waitServer(t, srv)
		})
	}
}

func TestSenderRefusedThenReset(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "auth_required_on_mail"))
	c := dial(t, srv, plainDialer())
	_, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, []byte("hi\r\n"), nil)
	var sr *smtp.SenderRefusedError
	if !errors.As(err, &sr) {
		t.Fatalf("SendMail = %v, want *SenderRefusedError", err)
	}
	want := &smtp.SMTPError{Command: "MAIL", Code: 553, Enhanced: smtp.EnhancedCode{5, 7, 1}, Message: "authentication is required"}
	if !reflect.DeepEqual(sr.Err, want) || sr.Sender != "bot@example.org" {
		t.Errorf("refusal = %+v, want %+v", sr.Err, want)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestImplicitTLS(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "implicit_tls"), smtptest.WithImplicitTLS())
	d := plainDialer()
	d.TLS = smtp.TLSImplicit
	d.TLSConfig = &tls.Config{RootCAs: srv.CertPool(), ServerName: "localhost"}
	c := dial(t, srv, d)
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("implicit TLS connection reports no TLS state")
	}
	if _, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, []byte("Subject: x\r\n\r\n"), nil); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestAuthMechanisms(t *testing.T) {
	cram := func(user, secret, challenge string) string {
		m := hmac.New(md5.New, []byte(secret))
		m.Write([]byte(challenge))
		return base64.StdEncoding.EncodeToString([]byte(user + " " + hex.EncodeToString(m.Sum(nil))))
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	const challenge = "<1896.697170952@postoffice.example.net>"
	tests := []struct {
		name     string
		offered  string
		auth     func(c *smtp.Client) error
		exchange string
	}{
		{
			name: "CRAM-MD5 chosen by Login", offered: "PLAIN LOGIN CRAM-MD5",
			auth:     func(c *smtp.Client) error { return c.Login(ctx, "tim", "tanstaaftanstaaf") },
			exchange: "C: AUTH CRAM-MD5\nS: 334 " + b64(challenge) + "\nC: " + cram("tim", "tanstaaftanstaaf", challenge) + "\nS: 235 ok\n",
		},
		{
			name: "PLAIN with UTF-8 credentials", offered: "PLAIN",
			auth:     func(c *smtp.Client) error { return c.Login(ctx, "jürgen", "pässwört✓") },
			exchange: "C: AUTH PLAIN " + b64("\x00jürgen\x00pässwört✓") + "\nS: 235 ok\n",
		},
		{
			name: "LOGIN sends the user name as its own step", offered: "LOGIN",
			auth:     func(c *smtp.Client) error { return c.Login(ctx, "user", "secret") },
			exchange: "C: AUTH LOGIN\nS: 334 VXNlcm5hbWU6\nC: " + b64("user") + "\nS: 334 UGFzc3dvcmQ6\nC: " + b64("secret") + "\nS: 235 ok\n",
		},
		{
			name: "LOGIN with initial response when asked", offered: "LOGIN",
			auth:     func(c *smtp.Client) error { return c.Auth(ctx, smtp.LoginAuthInitial("user", "secret")) },
			exchange: "C: AUTH LOGIN " + b64("user") + "\nS: 334 UGFzc3dvcmQ6\nC: " + b64("secret") + "\nS: 235 ok\n",
		},
		{
			name: "XOAUTH2", offered: "XOAUTH2",
			auth:     func(c *smtp.Client) error { return c.Auth(ctx, smtp.XOAuth2Auth("me@example.org", "ya29.token")) },
			exchange: "C: AUTH XOAUTH2 " + b64("user=me@example.org\x01auth=Bearer ya29.token\x01\x01") + "\nS: 235 ok\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := "S: 220 fake.test\nC: EHLO localhost\nS: 250-fake.test\nS: 250 AUTH " + tc.offered + "\n" +
				tc.exchange + "C: QUIT\nS: 221 bye\n"
			srv := smtptest.NewServer(t, s)
			d := plainDialer()
			d.AllowInsecureAuth = true
			c := dial(t, srv, d)
			if err := tc.auth(c); err != nil {
				t.Fatalf("auth: %v", err)
			}
			quit(t, c)
			waitServer(t, srv)
		})
	}
}

func TestAuthRefusedOverPlaintextEvenOnLoopback(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 fake.test\nC: EHLO localhost\nS: 250-fake.test\nS: 250 AUTH PLAIN\nC: QUIT\nS: 221 bye\n")
	c := dial(t, srv, plainDialer())
	err := c.Login(ctx, "user", "secret")
	var ns *smtp.NotSupportedError
	if !errors.As(err, &ns) || !strings.Contains(err.Error(), "allow_insecure_auth") {
		t.Fatalf("Login = %v, want a refusal that names allow_insecure_auth", err)
	}
	quit(t, c)
	waitServer(t, srv) // the server saw no AUTH line
}

func TestAuthOverPlaintextWhenAllowed(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "insecure_auth"))
	d := plainDialer()
	d.AllowInsecureAuth = true
	c := dial(t, srv, d)
	if err := c.Login(ctx, "user", "secret"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestWrongPasswordCostsOneAttempt(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "wrong_password"))
	d := plainDialer()
	d.AllowInsecureAuth = true
	c := dial(t, srv, d)
	err := c.Login(ctx, "user", "wrong")
	var ae *smtp.AuthError
	var se *smtp.SMTPError
	if !errors.As(err, &ae) || !errors.As(err, &se) || se.Code != 535 || ae.Mechanism != "CRAM-MD5" {
		t.Fatalf("Login = %v, want *AuthError with 535 from CRAM-MD5", err)
	}
	quit(t, c) // the script expects QUIT next: no PLAIN or LOGIN retry
	waitServer(t, srv)
}

func TestMechanismRefusedFallsThrough(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "mechanism_refused"))
	d := plainDialer()
	d.AllowInsecureAuth = true
	c := dial(t, srv, d)
	if err := c.Login(ctx, "user", "secret"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestAuthCancelledOnClientFailure(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "auth_cancel"))
	d := plainDialer()
	d.AllowInsecureAuth = true
	c := dial(t, srv, d)
	err := c.Login(ctx, "user", "secret")
	var ae *smtp.AuthError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "not base64") {
		t.Fatalf("Login = %v, want *AuthError about the bad challenge", err)
	}
	if _, err := c.Noop(ctx); err != nil {
		t.Fatalf("NOOP after cancelled AUTH: %v (session out of step)", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

// patientMech answers every challenge with an empty response, as a
// mechanism with no notion of steps would.
type patientMech struct{}

func (patientMech) Name() string                { return "XOAUTH2" }
func (patientMech) Start() ([]byte, error)      { return []byte("x"), nil }
func (patientMech) Next([]byte) ([]byte, error) { return []byte{}, nil }

func TestAuthChallengeLoopBounded(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "auth_loop"))
	d := plainDialer()
	d.AllowInsecureAuth = true
	c := dial(t, srv, d)
	err := c.Auth(ctx, patientMech{})
	if !strings.Contains(fmt.Sprint(err), "more than 5 challenges") {
		t.Fatalf("Auth = %v, want an error about too many challenges", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestHeloFallback(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "helo_fallback"))
	c := dial(t, srv, plainDialer())
	_, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, []byte("caf\xc3\xa9\r\n"),
		&smtp.SendOptions{MailParams: []string{"BODY=8BITMIME"}})
	var ns *smtp.NotSupportedError
	if !errors.As(err, &ns) || ns.Extension != "8BITMIME" || !strings.Contains(err.Error(), "HELO") {
		t.Fatalf("BODY=8BITMIME after HELO = %v, want *NotSupportedError naming 8BITMIME and HELO", err)
	}
	if c.IsESMTP() {
		t.Error("IsESMTP after HELO fallback")
	}
	if _, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, []byte("plain\r\n"), nil); err != nil {
		t.Fatalf("SendMail after fallback: %v", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestEhloParsing(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "ehlo_odd"))
	c := dial(t, srv, plainDialer())
	if _, err := c.Ehlo(ctx); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	want := map[string]string{
		"SIZE": "1000", "AUTH": "LOGIN PLAIN CRAM-MD5", "8BITMIME": "",
		"X-VENDOR-THING": "a b", "PIPELINING": "",
	}
	if got := c.Extensions(); !reflect.DeepEqual(got, want) {
		t.Errorf("extensions = %v, want %v", got, want)
	}
	if p, ok := c.Extension("Size"); !ok || p != "1000" {
		t.Errorf(`Extension("Size") = %q, %v`, p, ok)
	}
	if !c.HasExtension("pipelining") {
		t.Error("case-insensitive HasExtension failed")
	}
	if n, ok := c.MaxMessageSize(); !ok || n != 1000 {
		t.Errorf("MaxMessageSize = %d, %v", n, ok)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestPartialRefusal(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "partial_refusal"))
	c := dial(t, srv, plainDialer())
	refused, err := c.SendMail(ctx, "bot@example.org", []string{"a@example.org", "b@example.org", "c@example.org"}, []byte("hi\r\n"), nil)
	if err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if got := refused.Permanent(); !reflect.DeepEqual(got, []string{"b@example.org"}) {
		t.Errorf("permanent = %v", got)
	}
	if got := refused.Temporary(); !reflect.DeepEqual(got, []string{"c@example.org"}) {
		t.Errorf("temporary = %v", got)
	}
	if e := refused["b@example.org"]; e.Enhanced != (smtp.EnhancedCode{5, 1, 1}) || e.Message != "no such user" {
		t.Errorf("refusal of b = %+v", e)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestTotalRefusalPipelined(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "total_refusal_pipelined"))
	c := dial(t, srv, plainDialer())
	_, err := c.SendMail(ctx, "bot@example.org", []string{"a@example.org", "b@example.org"}, []byte("hi\r\n"), nil)
	var rr *smtp.RecipientsRefusedError
	if !errors.As(err, &rr) || len(rr.Recipients) != 2 || rr.Recipients["b@example.org"].Code != 551 {
		t.Fatalf("SendMail = %v, want *RecipientsRefusedError for both", err)
	}
	if _, err := c.Noop(ctx); err != nil {
		t.Fatalf("NOOP after refusal: %v", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestDisconnectBeforeDotIsNotDelivered(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "disconnect_before_dot"))
	c := dial(t, srv, plainDialer())
	// Large enough that the socket buffers cannot swallow it: the writes
	// fail once the server is gone, before the final dot.
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxy\r\n"), 400000)
	_, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, body, nil)
	var de *smtp.DisconnectedError
	var uo *smtp.UnknownOutcomeError
	if !errors.As(err, &de) || errors.As(err, &uo) {
		t.Fatalf("SendMail = %v, want *DisconnectedError and not *UnknownOutcomeError", err)
	}
	waitServer(t, srv)
}

func TestDisconnectAfterDotIsUnknownOutcome(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "disconnect_after_dot"))
	c := dial(t, srv, plainDialer())
	_, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, []byte("hi\r\n"), nil)
	var de *smtp.DisconnectedError
	var uo *smtp.UnknownOutcomeError
	if !errors.As(err, &uo) || !errors.As(err, &de) {
		t.Fatalf("SendMail = %v, want *UnknownOutcomeError wrapping *DisconnectedError", err)
	}
	waitServer(t, srv)
}

func TestSlowServerTimesOut(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "slow_server"))
	d := plainDialer()
	c := dial(t, srv, d)
	c.CommandTimeout = 300 * time.Millisecond
	_, err := c.Ehlo(ctx)
	var te *smtp.TimeoutError
	var de *smtp.DisconnectedError
	if !errors.As(err, &te) || errors.As(err, &de) || !smtp.IsTimeout(err) {
		t.Fatalf("EHLO from a dripping server = %v, want *TimeoutError", err)
	}
	// The connection is closed: a late reply must not answer the next command.
	if _, err := c.Noop(ctx); !errors.As(err, &de) {
		t.Errorf("NOOP after timeout = %v, want *DisconnectedError", err)
	}
}

func TestContextCancelStopsBlockedCommand(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 fake.test\nC: NOOP\n! hang\n")
	c := dial(t, srv, plainDialer())
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := c.Noop(cctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("NOOP with cancelled context = %v, want context.Canceled", err)
	}
	tctx, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	srv2 := smtptest.NewServer(t, "S: 220 fake.test\nC: NOOP\n! hang\n")
	c2 := dial(t, srv2, plainDialer())
	_, err = c2.Noop(tctx)
	if !smtp.IsTimeout(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NOOP past the context deadline = %v, want a timeout", err)
	}
}

func TestMalformedReplies(t *testing.T) {
	long := "S: 220 fake.test\nC: EHLO localhost\n! raw " + strings.Repeat("x", 3*smtp.MaxReplyLineLength) + "\n! hang\n"
	tests := []struct {
		name, script string
		want         string
	}{
		{"garbage code", script(t, "garbage_code"), "three-digit code"},
		{"four-digit code", script(t, "four_digit_code"), "three-digit code"},
		{"unterminated line", script(t, "unterminated_line"), "middle of a reply line"},
		{"endless line", long, "longer than"},
		{"too many lines", script(t, "too_many_lines"), "more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tc.script)
			c := dial(t, srv, plainDialer())
			_, err := c.Ehlo(ctx)
			var pe *smtp.ProtocolError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("EHLO = %v, want *ProtocolError mentioning %q", err, tc.want)
			}
			var de *smtp.DisconnectedError
			if _, err := c.Noop(ctx); !errors.As(err, &de) {
				t.Errorf("NOOP after protocol error = %v, want *DisconnectedError", err)
			}
		})
	}
}

func TestServiceClosing421(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "service_closing"))
	c := dial(t, srv, plainDialer())
	err := c.Mail(ctx, "bot@example.org")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 421 || !strings.Contains(err.Error(), "closed the connection") {
		t.Fatalf("MAIL = %v, want 421 saying the connection was closed", err)
	}
	waitServer(t, srv) // expect-eof: the client closed its side
	var de *smtp.DisconnectedError
	if _, err := c.Noop(ctx); !errors.As(err, &de) {
		t.Errorf("NOOP after 421 = %v, want *DisconnectedError", err)
	}
}

func TestDotStuffingAndLineEnds(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "dot_stuffing"))
	c := dial(t, srv, plainDialer())
	body := "Subject: dots\n\n.hidden\n..two\nbare\rcr\r\n.\nend"
	if _, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, []byte(body), nil); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	quit(t, c)
	waitServer(t, srv)
	want := "Subject: dots\r\n\r\n..hidden\r\n...two\r\nbare\r\ncr\r\n..\r\nend\r\n"
	if got := string(srv.Data()[0]); got != want {
		t.Errorf("DATA on the wire:\n got %q\nwant %q", got, want)
	}
}

func TestLMTPPerRecipientReplies(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "lmtp"))
	d := plainDialer()
	d.LMTP = true
	c := dial(t, srv, d)
	refused, err := c.SendMail(ctx, "bot@example.org", []string{"a@example.org", "b@example.org", "c@example.org"}, []byte("hi\r\n"), nil)
	if err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	if got := refused.Permanent(); !reflect.DeepEqual(got, []string{"b@example.org"}) {
		t.Errorf("permanent = %v", got)
	}
	if got := refused.Temporary(); !reflect.DeepEqual(got, []string{"c@example.org"}) {
		t.Errorf("temporary = %v (LMTP reply after the dot)", got)
	}
	if refused["c@example.org"].Command != "." {
		t.Errorf("c refused at %q, want after the message", refused["c@example.org"].Command)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestDSNParameters(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "dsn_params"))
	c := dial(t, srv, plainDialer())
	opts := &smtp.SendOptions{DSN: &smtp.DSN{
		Return: "hdrs", EnvelopeID: "report+1=x y",
		Notify: []string{"success", "failure"}, NotifyFor: map[string][]string{"b@example.org": {"NEVER"}},
		OriginalRecipient: true,
	}}
	if _, err := c.SendMail(ctx, "bot@example.org", []string{"a@example.org", "b@example.org"}, []byte("hi\r\n"), opts); err != nil {
		t.Fatalf("SendMail: %v", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestSMTPUTF8DecidedPerMessage(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "smtputf8_per_message"))
	c := dial(t, srv, plainDialer())
	for _, to := range []string{"jörg@example.org", "ops@example.org"} {
		if _, err := c.SendMail(ctx, "bot@example.org", []string{to}, []byte("hello\n"), nil); err != nil {
			t.Fatalf("SendMail to %s: %v", to, err)
		}
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestParametersNotAdvertised(t *testing.T) {
	tests := []struct {
		name string
		opts *smtp.SendOptions
		to   string
		ext  string
	}{
		{"RET without DSN", &smtp.SendOptions{DSN: &smtp.DSN{Return: "FULL"}}, "ops@example.org", "DSN"},
		{"NOTIFY without DSN", &smtp.SendOptions{RcptParams: []string{"NOTIFY=NEVER"}}, "ops@example.org", "DSN"},
		{"REQUIRETLS not offered", &smtp.SendOptions{MailParams: []string{"REQUIRETLS"}}, "ops@example.org", "REQUIRETLS"},
		{"SMTPUTF8 not offered", nil, "jörg@example.org", "SMTPUTF8"},
	}
	srv := smtptest.NewServer(t, script(t, "not_advertised"))
	c := dial(t, srv, plainDialer())
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SendMail(ctx, "bot@example.org", []string{tc.to}, []byte("hi\r\n"), tc.opts)
			var ns *smtp.NotSupportedError
			if !errors.As(err, &ns) || ns.Extension != tc.ext {
				t.Fatalf("SendMail = %v, want *NotSupportedError for %s", err, tc.ext)
			}
		})
	}
	quit(t, c)
	waitServer(t, srv) // nothing but EHLO and QUIT reached the server
}

func TestCommandInjectionRejected(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 fake.test\nC: QUIT\nS: 221 bye\n")
	c := dial(t, srv, plainDialer())
	evil := "a@example.org>\r\nRCPT TO:<victim@example.org"
	checks := map[string]error{
		"Mail":     c.Mail(ctx, evil),
		"Rcpt":     c.Rcpt(ctx, evil),
		"DoCmd":    func() error { _, err := c.DoCmd(ctx, "NOOP\r\nQUIT"); return err }(),
		"Verify":   func() error { _, err := c.Verify(ctx, "x\ny"); return err }(),
		"SendMail": func() error { _, err := c.SendMail(ctx, "a@example.org", []string{evil}, nil, nil); return err }(),
		"NUL":      func() error { _, err := c.DoCmd(ctx, "NOOP \x00"); return err }(),
		"Param": func() error {
			_, err := c.SendMail(ctx, "a@b", []string{"c@d"}, nil, &smtp.SendOptions{MailParams: []string{"X=1\r\nDATA"}})
			return err
		}(),
	}
	for name, err := range checks {
		if err == nil || !strings.Contains(err.Error(), "injection") {
			t.Errorf("%s with CR/LF = %v, want an injection error", name, err)
		}
	}
	quit(t, c)
	waitServer(t, srv) // the server saw nothing before QUIT
}

func TestDoCmdNeverRaisesOnReplyCodes(t *testing.T) {
	srv := smtptest.NewServer(t, script(t, "docmd"))
	c := dial(t, srv, plainDialer())
	for _, tc := range []struct {
		line string
		code int
	}{{"XCLIENT ADDR=192.0.2.1", 550}, {"ETRN example.org", 250}, {"VRFY postmaster", 252}} {
		rep, err := c.DoCmd(ctx, tc.line)
		if err != nil || rep.Code != tc.code {
			t.Errorf("DoCmd(%q) = %v, %v; want code %d and no error", tc.line, rep, err, tc.code)
		}
	}
	quit(t, c)
	waitServer(t, srv)
}

func TestPutCmdGetReply(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 fake.test\nC: NOOP\nC: NOOP\nS: 250 one\nS: 250 two\nC: QUIT\nS: 221 bye\n")
	c := dial(t, srv, plainDialer())
	for i := 0; i < 2; i++ {
		if err := c.PutCmd(ctx, "NOOP"); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"one", "two"} {
		rep, err := c.GetReply(ctx)
		if err != nil || rep.Text() != want {
			t.Fatalf("GetReply = %v, %v; want %q", rep, err, want)
		}
	}
	quit(t, c)
	waitServer(t, srv)
}
