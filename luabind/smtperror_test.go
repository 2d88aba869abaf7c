package luabind

import (
	"strconv"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/smtp/smtptest"
)

// TestErrorMessageIsServerText checks that an error raised from a server
// reply carries the server's own text in message (multi-line replies
// joined with "\n", the enhanced code kept), while tostring and the log
// form keep the whole context: kind, command, code, what was refused.
func TestErrorMessageIsServerText(t *testing.T) {
	const ehlo = "S: 220 x\nC: EHLO localhost\nS: 250-x\nS: 250 ENHANCEDSTATUSCODES\n"
	tests := []struct {
		name, script, lua string
		message, str      string
	}{
		{"sender refused, enhanced code",
			ehlo + "C: MAIL FROM:<a@example.org>\nS: 553 5.7.1 sender blocked\nC: RSET\nS: 250 ok\nC: *\n",
			`c:sendmail("a@example.org", "b@example.org", "x\r\n")`,
			"5.7.1 sender blocked",
			"SMTPSenderRefused: sender <a@example.org> refused: MAIL: 553 5.7.1 sender blocked"},
		{"multi-line refusal",
			ehlo + "C: MAIL FROM:<a@example.org>\nS: 250 ok\nC: RCPT TO:<b@example.org>\nS: 250 ok\nC: DATA\nS: 354 go\n! data\nS: 554-5.7.1 rejected as spam\nS: 554 5.7.1 see https://example.org/why\nC: RSET\nS: 250 ok\nC: *\n",
			`c:sendmail("a@example.org", "b@example.org", "x\r\n")`,
			"5.7.1 rejected as spam\n5.7.1 see https://example.org/why",
			"SMTPDataError: message refused: .: 554 5.7.1 rejected as spam / 5.7.1 see https://example.org/why"},
		{"no enhanced code",
			ehlo + "C: MAIL FROM:<a@example.org>\nS: 250 ok\nC: RCPT TO:<b@example.org>\nS: 550 no such user here\nC: RSET\nS: 250 ok\nC: *\n",
			`c:sendmail("a@example.org", "b@example.org", "x\r\n")`,
			"no such user here",
			"SMTPRecipientsRefused: all recipients refused: <b@example.org>: 550 no such user here"},
		{"enhanced code only",
			"S: 220 x\nC: EHLO localhost\nS: 250-x\nS: 250 STARTTLS\nC: STARTTLS\nS: 454 4.7.0\nC: *\n",
			`c:starttls()`,
			"4.7.0",
			"SMTPResponseException: STARTTLS: 454 4.7.0"},
		{"server closing",
			ehlo + "C: NOOP\nS: 421 4.3.2 shutting down\n",
			`c:docmd("EHLO localhost"); c:noop(); c:noop()`, // the 421 is returned, the next call raises
			"4.3.2 shutting down",
			"SMTPServerDisconnected: NOOP: server disconnected: connection closed after an earlier error: smtp: NOOP: server disconnected: NOOP: 421 4.3.2 shutting down (the server closed the connection)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tc.script)
			L := newSMTPTestState(t, nil)
			err := L.DoString(`local smtp = require("smtp")
local c = smtp.connect{ host = "127.0.0.1", port = ` + strconv.Itoa(port(t, srv.Addr())) + `, tls = "none", local_hostname = "localhost" }
local ok, err = pcall(function() ` + tc.lua + ` end)
assert(not ok, "the command did not fail")
MESSAGE, STR, KIND = err.message, tostring(err), err.kind
error(err, 0)`)
			if got := L.GetGlobal("MESSAGE").String(); got != tc.message {
				t.Errorf("message = %q, want %q", got, tc.message)
			}
			if got := L.GetGlobal("STR").String(); got != tc.str {
				t.Errorf("tostring(err) = %q, want %q", got, tc.str)
			}
			// The log form (DescribeError) keeps the context too.
			if got := DescribeError(err); !strings.HasSuffix(got, tc.str) {
				t.Errorf("DescribeError = %q, want it to end with %q", got, tc.str)
			}
		})
	}
}
