package smtp_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

var update = flag.Bool("update", false, "rewrite testdata/golden files")

// TestDebugTranscriptRedacted runs the seeds' flow with the debug
// transcript on and compares it with a golden file: credentials are
// replaced by <redacted> and the body is summarised.
func TestDebugTranscriptRedacted(t *testing.T) {
	s := `S: 220 fake.test ESMTP
C: EHLO localhost
S: 250-fake.test
S: 250-AUTH PLAIN LOGIN
S: 250 ENHANCEDSTATUSCODES
C: AUTH PLAIN AHVzZXIAaHVudGVyMg==
S: 235 2.7.0 ok
C: AUTH LOGIN
S: 334 VXNlcm5hbWU6
C: dXNlcg==
S: 334 UGFzc3dvcmQ6
C: aHVudGVyMg==
S: 235 2.7.0 ok
C: MAIL FROM:<bot@example.org>
S: 250 2.1.0 ok
C: RCPT TO:<ops@example.org>
S: 250 2.1.5 ok
C: DATA
S: 354 go ahead
! data
S: 250 2.0.0 queued
C: AUTH PLAIN AHVzZXIAaHVudGVyMg==
S: 503 already authenticated
C: QUIT
S: 221 2.0.0 bye
`
	srv := smtptest.NewServer(t, s)
	var buf bytes.Buffer
	d := plainDialer()
	d.AllowInsecureAuth = true
	d.Debug = &buf
	c := dial(t, srv, d)
	if err := c.Auth(ctx, smtp.PlainAuth("", "user", "hunter2")); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(ctx, smtp.LoginAuth("user", "hunter2")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, []byte("Subject: secret report\r\n\r\nbody\r\n"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DoCmd(ctx, "AUTH PLAIN AHVzZXIAaHVudGVyMg=="); err != nil {
		t.Fatal(err)
	}
	quit(t, c)
	waitServer(t, srv)

	got := buf.String()
	for _, secret := range []string{"hunter2", "aHVudGVyMg", "AHVzZXIAaHVudGVyMg", "secret report"} {
		if strings.Contains(got, secret) {
			t.Errorf("transcript leaks %q:\n%s", secret, got)
		}
	}
	golden := filepath.Join("testdata", "golden", "debug_redacted.golden")
	if *update {
		os.MkdirAll(filepath.Dir(golden), 0o755)
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./smtp -run TestDebugTranscriptRedacted -update)", err)
	}
	if got != string(want) {
		t.Errorf("transcript differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
	}
}
