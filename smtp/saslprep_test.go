package smtp_test

import (
	"encoding/base64"
	"testing"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// TestLoginFallsBackWhenSCRAMCannotPrepare checks that credentials SASLprep
// refuses make Login skip SCRAM-SHA-256 without sending anything for it,
// and go on with PLAIN, which sends them as given (RFC 4616 leaves their
// preparation to the server).
func TestLoginFallsBackWhenSCRAMCannotPrepare(t *testing.T) {
	ir := base64.StdEncoding.EncodeToString([]byte("\x00user\x00pen\acil"))
	srv := smtptest.NewServer(t, "S: 220 x\nC: EHLO localhost\nS: 250-x\nS: 250 AUTH SCRAM-SHA-256 PLAIN\n"+
		"C: AUTH PLAIN "+ir+"\nS: 235 2.7.0 ok\nC: QUIT\nS: 221 bye\n")
	d := plainDialer()
	d.AllowInsecureAuth = true
	c := dial(t, srv, d)
	if err := c.Login(ctx, "user", "pen\acil"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	quit(t, c)
	waitServer(t, srv)
}

// TestPlainRefusesNUL checks that PLAIN refuses a NUL inside a field, which
// would shift the fields the server reads (RFC 4616 §2).
func TestPlainRefusesNUL(t *testing.T) {
	if _, err := smtp.PlainAuth("", "user\x00admin", "x").Start(); err == nil {
		t.Fatal("PLAIN accepted a NUL in the user name")
	}
	if _, err := smtp.PlainAuth("", "user", "pass\x00word").Start(); err == nil {
		t.Fatal("PLAIN accepted a NUL in the password")
	}
}
