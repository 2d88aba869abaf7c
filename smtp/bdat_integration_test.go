package smtp_test

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/smtp"
)

// normaliseLikeDATA is what the DATA path delivers: every line end CRLF,
// CRLF added to a last line without one.
func normaliseLikeDATA(s string) string {
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n':
			b.WriteString("\r\n")
			i++
		case s[i] == '\r' || s[i] == '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(s[i])
		}
	}
	if n := len(s); n > 0 && s[n-1] != '\n' && s[n-1] != '\r' {
		b.WriteString("\r\n")
	}
	return b.String()
}

// TestIntegrationChunkSizes sends awkward bodies in awkward chunk sizes to
// go-smtp, which reads exactly the announced bytes per BDAT: a size that
// did not match what follows would desynchronise the session. The server
// must store each body as the DATA path would deliver it.
func TestIntegrationChunkSizes(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{})
	c := itLogin(t, ctx, srv)
	if !c.HasExtension("CHUNKING") {
		t.Fatal("the dev server does not offer CHUNKING")
	}
	bodies := []string{"a\rb\nc\r\nd", "\r\n\r\n", "\n\n\n", "\r\r\r", "x", ".\r\n.\r\n", strings.Repeat("ab\r\n", 40) + "tail\r"}
	var want []string
	for _, body := range bodies {
		for _, size := range []int{1, 2, 3, 7, 1000} {
			if _, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, []byte(body), &smtp.SendOptions{ChunkSize: size}); err != nil {
				t.Fatalf("body %q, chunk size %d: %v", body, size, err)
			}
			want = append(want, normaliseLikeDATA(body))
		}
	}
	msgs, err := srv.WaitMessages(ctx, len(want))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if string(m.Data) != want[i] {
			t.Errorf("message %d: server stored %q, want %q", i, m.Data, want[i])
		}
		if m.MailOptions["SIZE"] != strconv.Itoa(len(want[i])) {
			t.Errorf("message %d: SIZE=%s, want %d", i, m.MailOptions["SIZE"], len(want[i]))
		}
	}
}

// TestIntegrationSendBatchChunking sends a batch larger than the window
// through go-smtp, with refusals mixed in, and checks every result and
// every stored body byte for byte.
func TestIntegrationSendBatchChunking(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{Hooks: devserver.Hooks{Rcpt: itRejectRcpt(map[string]*devserver.Reject{
		"gone@example.org": {Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"},
	})}})
	c := itLogin(t, ctx, srv)
	const n = 100
	var msgs []smtp.Outgoing
	var want []string
	for i := range n {
		body := fmt.Sprintf("Subject: %d\r\n\r\n%s", i, strings.Repeat(".line\n", i%9))
		if i%10 == 0 {
			body += strings.Repeat("x", 3000) + "\r\n" // several chunks
		}
		to := []string{"ops@example.org"}
		if i%7 == 3 {
			to = []string{"gone@example.org"} // refused: the next one starts with RSET
		}
		msgs = append(msgs, smtp.Outgoing{From: itFrom, To: to, Data: []byte(body), Opts: &smtp.SendOptions{ChunkSize: 1024}})
		if i%7 != 3 {
			want = append(want, normaliseLikeDATA(body))
		}
	}
	res := c.SendBatch(ctx, msgs, nil)
	for i, r := range res {
		if (r.Err != nil) != (i%7 == 3) {
			t.Errorf("message %d: %v", i, r.Err)
		}
	}
	got, err := srv.WaitMessages(ctx, len(want))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got {
		if string(m.Data) != want[i] {
			t.Errorf("stored message %d = %q, want %q", i, m.Data, want[i])
		}
	}
	// The session is still in order.
	if _, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, []byte("after\r\n"), nil); err != nil {
		t.Errorf("SendMail after the batch: %v", err)
	}
	if _, err := c.Quit(ctx); err != nil {
		t.Errorf("Quit: %v", err)
	}
}

// TestIntegrationBinaryMIME sends a body that only BINARYMIME can carry
// and checks that go-smtp stores it byte for byte.
func TestIntegrationBinaryMIME(t *testing.T) {
	t.Parallel()
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{BinaryMIME: true})
	c := itLogin(t, ctx, srv)
	body := []byte("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\r\x02\n\xff" + strings.Repeat("z", 2000))
	if _, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, body, &smtp.SendOptions{ChunkSize: 500}); err != nil {
		t.Fatal(err)
	}
	m := itWait(t, ctx, srv, 1)
	if !bytes.Equal(m.Data, body) {
		t.Errorf("stored %q, want the body unchanged", m.Data)
	}
	if m.MailOptions["BODY"] != "BINARYMIME" {
		t.Errorf("BODY=%q, want BINARYMIME", m.MailOptions["BODY"])
	}
}
