package luabind

import (
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// TestLuaHelloAgainAfterStartTLS is the Lua side of the smtp package's
// RFC 3207 §4.2 table: every way a script completes STARTTLS (connect's
// TLS options, certificate pinning, starttls-if-offered, c:starttls() by
// hand) followed by raw and ordinary commands sends EHLO with the same
// name first.
func TestLuaHelloAgainAfterStartTLS(t *testing.T) {
	rec := smtptest.NewRecorder(t)
	L := newSMTPTestState(t, nil)
	L.SetGlobal("PORT", lua.LNumber(rec.Port()))
	L.SetGlobal("FP", lua.LString(smtp.FormatFingerprint(rec.TLSFingerprintSHA256())))
	const opts = `host = "127.0.0.1", port = PORT, local_hostname = "client.test"`
	const byHand = `local c = smtp.new{ ` + opts + ` }
c:connect("127.0.0.1", PORT)
c:ehlo()
c:starttls{ insecure_skip_verify = true }
`
	msg := `"Subject: x\r\n\r\nx\r\n"`
	rows := []struct {
		name, src, after string
	}{
		{"connect starttls, insecure_skip_verify, docmd", `local c = smtp.connect{ ` + opts + `, tls = "starttls", insecure_skip_verify = true }
c:docmd("NOOP")`, "EHLO NOOP"},
		{"connect starttls, tls_fingerprint, noop", `local c = smtp.connect{ ` + opts + `, tls = "starttls", tls_fingerprint = FP }
c:noop()`, "EHLO NOOP"},
		{"connect starttls-if-offered, putcmd", `local c = smtp.connect{ ` + opts + `, tls = "starttls-if-offered", insecure_skip_verify = true }
c:putcmd("NOOP"); c:getreply()`, "EHLO NOOP"},
		{"connect starttls, login", `local c = smtp.connect{ ` + opts + `, tls = "starttls", insecure_skip_verify = true }
c:login("u", "p")`, "EHLO AUTH"},
		{"connect starttls, sendmail", `local c = smtp.connect{ ` + opts + `, tls = "starttls", insecure_skip_verify = true }
c:sendmail("a@example.org", "b@example.org", ` + msg + `)`, "EHLO MAIL RCPT DATA"},
		{"starttls by hand, docmd", byHand + `c:docmd("NOOP")`, "EHLO NOOP"},
		{"starttls by hand, noop", byHand + `c:noop()`, "EHLO NOOP"},
		{"starttls by hand, rset", byHand + `c:rset()`, "EHLO RSET"},
		{"starttls by hand, help", byHand + `c:help()`, "EHLO HELP"},
		{"starttls by hand, verify", byHand + `c:verify("ops@example.org")`, "EHLO VRFY"},
		{"starttls by hand, mail rcpt data", byHand + `c:mail("a@example.org"); c:rcpt("b@example.org"); c:data(` + msg + `)`, "EHLO MAIL RCPT DATA"},
		{"starttls by hand, rcpt", byHand + `c:rcpt("b@example.org")`, "EHLO RCPT"},
		{"starttls by hand, ehlo as smtplib", byHand + `c:ehlo(); c:noop()`, "EHLO NOOP"},
		{"starttls by hand, login", byHand + `c:login("u", "p")`, "EHLO AUTH"},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.Sessions())
			if err := L.DoString(`local smtp = require("smtp")
` + tc.src + `
c:quit()`); err != nil {
				t.Fatal(DescribeError(err))
			}
			sessions := rec.Sessions()
			if len(sessions) != before+1 {
				t.Fatalf("%d sessions, want %d", len(sessions), before+1)
			}
			s := sessions[before]
			want := strings.Fields(tc.after)
			if err := smtptest.CheckHelloAfterTLS(s, want[len(want)-1]); err != nil {
				t.Fatal(err)
			}
			if got, want := smtptest.VerbsAfterTLS(s), strings.TrimSpace(tc.after+" QUIT"); got != want {
				t.Errorf("after the handshake: %q, want %q (session %q)", got, want, s)
			}
		})
	}
}
