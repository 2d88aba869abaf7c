package smtp_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// ehloScript opens a script: greeting and an EHLO reply with exts.
func ehloScript(exts ...string) string {
	var b strings.Builder
	b.WriteString("S: 220 fake.test ESMTP\nC: EHLO localhost\n")
	if len(exts) == 0 {
		b.WriteString("S: 250 fake.test\n")
		return b.String()
	}
	b.WriteString("S: 250-fake.test\n")
	for i, e := range exts {
		sep := "-"
		if i == len(exts)-1 {
			sep = " "
		}
		b.WriteString("S: 250" + sep + e + "\n")
	}
	return b.String()
}

const quitScript = "C: QUIT\nS: 221 bye\n"

func out(from string, to []string, data string, o *smtp.SendOptions) smtp.Outgoing {
	return smtp.Outgoing{From: from, To: to, Data: []byte(data), Opts: o}
}

// TestSendMailChunking plays one SendMail per case against a scripted
// server offering CHUNKING and checks the wire, the captured body and the
// result.
func TestSendMailChunking(t *testing.T) {
	chunking := ehloScript("PIPELINING", "CHUNKING", "SIZE 1000000", "8BITMIME", "ENHANCEDSTATUSCODES")
	tests := []struct {
		name   string
		script string
		lmtp   bool
		setup  func(c *smtp.Client)
		to     []string
		msg    string
		opts   *smtp.SendOptions
		// body is what the server must have received, if set.
		body  string
		check func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error)
	}{
		{
			name: "one BDAT LAST, line ends made CRLF, no dot-stuffing, no extra reply",
			script: chunking + `C: MAIL FROM:<bot@example.org> SIZE=25
C: RCPT TO:<a@example.org>
C: BDAT 25 LAST
! chunk
S: 250 2.1.0 ok
S: 250 2.1.5 ok
S: 250 2.0.0 queued as BD1
` + quitScript,
			to: []string{"a@example.org"}, msg: "Subject: x\n\n.dot\nend",
			body: "Subject: x\r\n\r\n.dot\r\nend\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				if err != nil || len(refused) != 0 || !strings.Contains(rep.Text(), "BD1") {
					t.Errorf("got %v, %v, %q; want accepted with the queue id", refused, err, rep.Text())
				}
			},
		},
		{
			name: "chunks of the chosen size, a CRLF never split, only the last one LAST",
			script: chunking + `C: MAIL FROM:<bot@example.org> SIZE=28
C: RCPT TO:<a@example.org>
C: BDAT 11
! chunk
C: BDAT 10
! chunk
C: BDAT 7 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 2.0.0 chunk 1
S: 250 2.0.0 chunk 2
S: 250 2.0.0 done
` + quitScript,
			// the 10th byte is the CR of a CRLF: the first chunk takes its LF too
			to: []string{"a@example.org"}, msg: "123456789\r\nabcdefghij\nxyz", opts: &smtp.SendOptions{ChunkSize: 10},
			body: "123456789\r\nabcdefghij\r\nxyz\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				if err != nil || rep.Text() != "done" {
					t.Errorf("got %v, %q; want accepted, the LAST chunk's reply", err, rep.Text())
				}
			},
		},
		{
			name: "partial refusal sends to the rest",
			script: chunking + `C~ ^MAIL FROM:<bot@example.org> SIZE=\d+$
C: RCPT TO:<a@example.org>
C: RCPT TO:<gone@example.org>
C~ ^BDAT \d+ LAST$
! chunk
S: 250 ok
S: 250 ok
S: 550 5.1.1 no such user
S: 250 2.0.0 queued
` + quitScript,
			to: []string{"a@example.org", "gone@example.org"}, msg: "hi\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				if err != nil || strings.Join(refused.Permanent(), ",") != "gone@example.org" {
					t.Errorf("got %v, %v; want gone@ refused, the message accepted", refused, err)
				}
			},
		},
		{
			name: "all refused: the BDAT reply is read and dropped, RSET follows",
			script: chunking + `C~ ^MAIL
C: RCPT TO:<gone@example.org>
C~ ^BDAT \d+ LAST$
! chunk
S: 250 ok
S: 550 5.1.1 no such user
S: 554 5.5.1 no valid recipients
C: RSET
S: 250 ok
` + quitScript,
			to: []string{"gone@example.org"}, msg: "hi\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				var rr *smtp.RecipientsRefusedError
				if !errors.As(err, &rr) || rr.Recipients["gone@example.org"].Code != 550 {
					t.Errorf("err = %v, want *RecipientsRefusedError with the RCPT's 550", err)
				}
			},
		},
		{
			name: "sender refused",
			script: chunking + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C~ ^BDAT \d+ LAST$
! chunk
S: 553 5.7.1 sender not allowed
S: 503 5.5.1 need MAIL
S: 503 5.5.1 need MAIL
C: RSET
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "hi\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				var sr *smtp.SenderRefusedError
				if !errors.As(err, &sr) || sr.Err.Code != 553 {
					t.Errorf("err = %v, want *SenderRefusedError 553", err)
				}
			},
		},
		{
			name: "a refused chunk is a DataError naming BDAT; the rest are dropped",
			script: chunking + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C: BDAT 4
! chunk
C: BDAT 2 LAST
! chunk
S: 250 ok
S: 250 ok
S: 552 5.3.4 too big
S: 503 5.5.1 no transaction
C: RSET
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "abcd\r\n", opts: &smtp.SendOptions{ChunkSize: 4},
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				var de *smtp.DataError
				if !errors.As(err, &de) || de.Err.Code != 552 || de.Err.Command != "BDAT" {
					t.Errorf("err = %v, want *DataError 552 for BDAT", err)
				}
			},
		},
		{
			name: "4xx to BDAT LAST is a temporary DataError for the message's end",
			script: chunking + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C~ ^BDAT \d+ LAST$
! chunk
S: 250 ok
S: 250 ok
S: 451 4.3.0 try later
C: RSET
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "hi\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				var de *smtp.DataError
				if !errors.As(err, &de) || !de.Err.Temporary() || de.Err.Command != "." {
					t.Errorf("err = %v, want a temporary *DataError for the end of the message", err)
				}
			},
		},
		{
			name: "connection lost after LAST: the outcome is unknown",
			script: chunking + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C~ ^BDAT \d+ LAST$
! chunk
S: 250 ok
S: 250 ok
! close
`,
			to: []string{"a@example.org"}, msg: "hi\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				var uo *smtp.UnknownOutcomeError
				if !errors.As(err, &uo) {
					t.Errorf("err = %v, want *UnknownOutcomeError", err)
				}
			},
		},
		{
			name:  "no verdict within DataTimeout after LAST: a timeout, the outcome unknown",
			setup: func(c *smtp.Client) { c.DataTimeout = 200 * time.Millisecond },
			script: chunking + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C~ ^BDAT \d+ LAST$
! chunk
S: 250 ok
S: 250 ok
! hang
`,
			to: []string{"a@example.org"}, msg: "hi\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				var uo *smtp.UnknownOutcomeError
				if !errors.As(err, &uo) || !smtp.IsTimeout(err) {
					t.Errorf("err = %v, want a timeout inside *UnknownOutcomeError", err)
				}
			},
		},
		{
			name: "LMTP: one reply per accepted recipient after BDAT LAST",
			lmtp: true,
			script: strings.Replace(chunking, "EHLO", "LHLO", 1) + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C: RCPT TO:<b@example.org>
C: RCPT TO:<c@example.org>
C~ ^BDAT \d+ LAST$
! chunk
S: 250 ok
S: 250 ok
S: 550 5.1.1 unknown
S: 250 ok
S: 250 2.0.0 a delivered
S: 452 4.2.2 c over quota
` + quitScript,
			to: []string{"a@example.org", "b@example.org", "c@example.org"}, msg: "hi\r\n",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				if err != nil || refused["b@example.org"].Code != 550 || refused["c@example.org"].Code != 452 ||
					refused["c@example.org"].Command != "." || rep.Text() != "a delivered" {
					t.Errorf("got %v, %v, %q; want b@ and c@ refused, a@ delivered", refused, err, rep.Text())
				}
			},
		},
		{
			name: "a body that needs BINARYMIME goes byte for byte when offered",
			script: ehloScript("PIPELINING", "CHUNKING", "BINARYMIME", "SIZE", "8BITMIME") + `C: MAIL FROM:<bot@example.org> SIZE=9 BODY=BINARYMIME
C: RCPT TO:<a@example.org>
C: BDAT 9 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "a\x00\nb\r\xff\r\nc",
			body: "a\x00\nb\r\xff\r\nc",
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				if err != nil {
					t.Error(err)
				}
			},
		},
		{
			name: "a declared BODY=BINARYMIME goes byte for byte",
			script: ehloScript("PIPELINING", "CHUNKING", "BINARYMIME") + `C: MAIL FROM:<bot@example.org> BODY=BINARYMIME
C: RCPT TO:<a@example.org>
C: BDAT 3 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "a\nb", opts: &smtp.SendOptions{MailParams: []string{"BODY=BINARYMIME"}},
			body: "a\nb",
		},
		{
			name: "8-bit text that fits 8BITMIME is not sent as binary",
			script: ehloScript("PIPELINING", "CHUNKING", "BINARYMIME", "8BITMIME") + `C: MAIL FROM:<bot@example.org> BODY=8BITMIME
C: RCPT TO:<a@example.org>
C: BDAT 11 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "caf\xc3\xa9\nok", body: "caf\xc3\xa9\r\nok\r\n",
		},
		{
			name: "chunking = false in the options: DATA",
			script: chunking + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C: DATA
S: 250 ok
S: 250 ok
S: 354 go ahead
! data
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: ".hi\r\n", opts: &smtp.SendOptions{NoChunking: true},
			body: "..hi\r\n",
		},
		{
			name:  "Client.NoChunking: DATA",
			setup: func(c *smtp.Client) { c.NoChunking = true },
			script: chunking + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C: DATA
S: 250 ok
S: 250 ok
S: 354 go ahead
! data
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "hi\r\n",
		},
		{
			name: "a server without CHUNKING gets DATA",
			script: ehloScript("PIPELINING", "SIZE") + `C~ ^MAIL
C: RCPT TO:<a@example.org>
C: DATA
S: 250 ok
S: 250 ok
S: 354 go ahead
! data
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "hi\r\n",
		},
		{
			name: "CHUNKING without PIPELINING: DATA in lockstep",
			script: ehloScript("CHUNKING") + `C: MAIL FROM:<bot@example.org>
S: 250 ok
C: RCPT TO:<a@example.org>
S: 250 ok
C: DATA
S: 354 go ahead
! data
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "hi\r\n",
		},
		{
			name:   "a declared BODY=BINARYMIME the server does not offer: nothing sent",
			script: chunking + quitScript,
			to:     []string{"a@example.org"}, msg: "a\x00b", opts: &smtp.SendOptions{MailParams: []string{"BODY=BINARYMIME"}},
			check: func(t *testing.T, refused smtp.Refusals, rep smtp.Reply, err error) {
				var ns *smtp.NotSupportedError
				if !errors.As(err, &ns) || ns.Extension != "BINARYMIME" {
					t.Errorf("err = %v, want *NotSupportedError for BINARYMIME", err)
				}
			},
		},
		{
			name: "an empty message is BDAT 0 LAST",
			script: chunking + `C: MAIL FROM:<bot@example.org> SIZE=0
C: RCPT TO:<a@example.org>
C: BDAT 0 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
` + quitScript,
			to: []string{"a@example.org"}, msg: "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tc.script)
			d := plainDialer()
			d.LMTP = tc.lmtp
			c := dial(t, srv, d)
			if tc.setup != nil {
				tc.setup(c)
			}
			refused, rep, err := c.SendMailReply(ctx, "bot@example.org", tc.to, []byte(tc.msg), tc.opts)
			if tc.check != nil {
				tc.check(t, refused, rep, err)
			} else if err != nil {
				t.Errorf("SendMail: %v", err)
			}
			if strings.Contains(tc.script, quitScript) {
				c.Quit(ctx)
			}
			waitServer(t, srv)
			if tc.body != "" {
				data := srv.Data()
				if len(data) != 1 || string(data[0]) != tc.body {
					t.Errorf("server received %q, want %q", data, tc.body)
				}
			}
		})
	}
}

// TestSendBatchChunkingWindow checks the window: every message after the
// first in flight starts with RSET, all go out before any reply is read,
// and the results come back in order, one bad item not stopping the rest.
func TestSendBatchChunkingWindow(t *testing.T) {
	s := ehloScript("PIPELINING", "CHUNKING") + `C: MAIL FROM:<bot@example.org>
C: RCPT TO:<a@example.org>
C: BDAT 5 LAST
! chunk
C: RSET
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<gone@example.org>
C: BDAT 5 LAST
! chunk
C: RSET
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<b@example.org>
C: RCPT TO:<busy@example.org>
C: BDAT 8 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 queued as 1
S: 250 ok
S: 250 ok
S: 550 5.1.1 no such user
S: 554 5.5.1 no valid recipients
S: 250 ok
S: 250 ok
S: 250 ok
S: 450 4.2.1 mailbox busy
S: 250 queued as 3
` + quitScript
	srv := smtptest.NewServer(t, s)
	c := dial(t, srv, plainDialer())
	var order []int
	res := c.SendBatch(ctx, []smtp.Outgoing{
		out("bot@example.org", []string{"a@example.org"}, "one\r\n", nil),
		out("bot@example.org", []string{"gone@example.org"}, "two\r\n", nil),
		out("bot@example.org", []string{"x@example.org\r\nRSET"}, "never sent", nil),
		out("bot@example.org", nil, "no recipients", nil),
		out("bot@example.org", []string{"b@example.org", "busy@example.org"}, ".three", nil),
	}, func(i int, r smtp.BatchResult) { order = append(order, i) })
	c.Quit(ctx)
	waitServer(t, srv)
	if fmt.Sprint(order) != "[0 1 2 3 4]" {
		t.Errorf("done called for %v, want each message once, in order", order)
	}
	if res[0].Err != nil || res[0].Reply.Text() != "queued as 1" {
		t.Errorf("message 1: %+v", res[0])
	}
	var rr *smtp.RecipientsRefusedError
	if !errors.As(res[1].Err, &rr) {
		t.Errorf("message 2: %v, want all recipients refused", res[1].Err)
	}
	if res[2].Err == nil || !strings.Contains(res[2].Err.Error(), "injection") {
		t.Errorf("message 3: %v, want the injection refused before sending", res[2].Err)
	}
	if res[3].Err == nil {
		t.Errorf("message 4: accepted without recipients")
	}
	if res[4].Err != nil || strings.Join(res[4].Refused.Temporary(), ",") != "busy@example.org" {
		t.Errorf("message 5: %+v, want accepted with busy@ refused temporarily", res[4])
	}
	if got := srv.Data(); len(got) != 3 || string(got[2]) != ".three\r\n" {
		t.Errorf("bodies: %q", got)
	}
}

// TestSendBatchChunkingWindowOne checks BatchWindow 1: one message per
// round trip, no RSET after a success, RSET after a failure.
func TestSendBatchChunkingWindowOne(t *testing.T) {
	s := ehloScript("PIPELINING", "CHUNKING") + `C: MAIL FROM:<bot@example.org>
C: RCPT TO:<gone@example.org>
C: BDAT 5 LAST
! chunk
S: 250 ok
S: 550 no
S: 554 no valid recipients
C: RSET
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<a@example.org>
C: BDAT 5 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
S: 250 ok
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<b@example.org>
C: BDAT 7 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
` + quitScript
	srv := smtptest.NewServer(t, s)
	c := dial(t, srv, plainDialer())
	c.BatchWindow = 1
	res := c.SendBatch(ctx, []smtp.Outgoing{
		out("bot@example.org", []string{"gone@example.org"}, "one\r\n", nil),
		out("bot@example.org", []string{"a@example.org"}, "two\r\n", nil),
		out("bot@example.org", []string{"b@example.org"}, "three\r\n", nil),
	}, nil)
	quit(t, c)
	waitServer(t, srv)
	if res[0].Err == nil || res[1].Err != nil || res[2].Err != nil {
		t.Errorf("results %+v, want the first refused, the others accepted", res)
	}
}

// TestSendBatchChunkingDisconnect checks what a lost connection means for
// each message: one whose LAST chunk was sent may have been delivered, one
// not sent was not.
func TestSendBatchChunkingDisconnect(t *testing.T) {
	s := ehloScript("PIPELINING", "CHUNKING") + `C: MAIL FROM:<bot@example.org>
C: RCPT TO:<a@example.org>
C: BDAT 5 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<b@example.org>
C: BDAT 5 LAST
! chunk
S: 250 ok
! close
`
	srv := smtptest.NewServer(t, s)
	c := dial(t, srv, plainDialer())
	c.BatchWindow = 1
	res := c.SendBatch(ctx, []smtp.Outgoing{
		out("bot@example.org", []string{"a@example.org"}, "one\r\n", nil),
		out("bot@example.org", []string{"b@example.org"}, "two\r\n", nil),
		out("bot@example.org", []string{"c@example.org"}, "three\r\n", nil),
	}, nil)
	waitServer(t, srv)
	var uo *smtp.UnknownOutcomeError
	var de *smtp.DisconnectedError
	if res[0].Err != nil {
		t.Errorf("message 1: %v, want accepted", res[0].Err)
	}
	if !errors.As(res[1].Err, &uo) {
		t.Errorf("message 2: %v, want *UnknownOutcomeError (its LAST chunk was sent)", res[1].Err)
	}
	if !errors.As(res[2].Err, &de) || errors.As(res[2].Err, &uo) {
		t.Errorf("message 3: %v, want *DisconnectedError: not delivered", res[2].Err)
	}
}

// TestSendBatchChunkingServiceClosing checks a 421 in the middle of a
// window: the server processed nothing after it, so the later messages in
// flight were not delivered.
func TestSendBatchChunkingServiceClosing(t *testing.T) {
	s := ehloScript("PIPELINING", "CHUNKING") + `C: MAIL FROM:<bot@example.org>
C: RCPT TO:<a@example.org>
C: BDAT 5 LAST
! chunk
C: RSET
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<b@example.org>
C: BDAT 5 LAST
! chunk
C: RSET
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<c@example.org>
C: BDAT 7 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
S: 250 ok
S: 421 4.3.2 shutting down
! close
`
	srv := smtptest.NewServer(t, s)
	c := dial(t, srv, plainDialer())
	res := c.SendBatch(ctx, []smtp.Outgoing{
		out("bot@example.org", []string{"a@example.org"}, "one\r\n", nil),
		out("bot@example.org", []string{"b@example.org"}, "two\r\n", nil),
		out("bot@example.org", []string{"c@example.org"}, "three\r\n", nil),
	}, nil)
	waitServer(t, srv)
	var uo *smtp.UnknownOutcomeError
	var sr *smtp.SenderRefusedError
	if res[0].Err != nil {
		t.Errorf("message 1: %v, want accepted", res[0].Err)
	}
	if !errors.As(res[1].Err, &sr) || sr.Err.Code != 421 {
		t.Errorf("message 2: %v, want its MAIL refused with 421", res[1].Err)
	}
	if res[2].Err == nil || errors.As(res[2].Err, &uo) {
		t.Errorf("message 3: %v, want not delivered", res[2].Err)
	}
}

// TestSendBatchChunkingMixed checks a message with NoChunking inside a
// chunked batch: the ones in flight are settled first, then it goes with
// DATA.
func TestSendBatchChunkingMixed(t *testing.T) {
	s := ehloScript("PIPELINING", "CHUNKING") + `C: MAIL FROM:<bot@example.org>
C: RCPT TO:<a@example.org>
C: BDAT 5 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<b@example.org>
C: DATA
S: 250 ok
S: 250 ok
S: 354 go ahead
! data
S: 250 ok
C: MAIL FROM:<bot@example.org>
C: RCPT TO:<c@example.org>
C: BDAT 7 LAST
! chunk
S: 250 ok
S: 250 ok
S: 250 ok
` + quitScript
	srv := smtptest.NewServer(t, s)
	c := dial(t, srv, plainDialer())
	res := c.SendBatch(ctx, []smtp.Outgoing{
		out("bot@example.org", []string{"a@example.org"}, "one\r\n", nil),
		out("bot@example.org", []string{"b@example.org"}, "two\r\n", &smtp.SendOptions{NoChunking: true}),
		out("bot@example.org", []string{"c@example.org"}, "three\r\n", nil),
	}, nil)
	quit(t, c)
	waitServer(t, srv)
	for i, r := range res {
		if r.Err != nil {
			t.Errorf("message %d: %v", i+1, r.Err)
		}
	}
}
