package smtp

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
)

// limitConn is a scriptConn whose connection breaks once the client has
// written limit bytes: a Write beyond it takes what fits and fails.
type limitConn struct {
	scriptConn
	limit, written int
}

func (l *limitConn) Write(p []byte) (int, error) {
	room := l.limit - l.written
	if len(p) <= room {
		l.written += len(p)
		return len(p), nil
	}
	l.written = l.limit
	return room, syscall.EPIPE
}

// TestChunkedWriteFailure breaks the connection while a chunked batch is
// being written: a message whose LAST chunk the connection took may have
// been delivered, one cut off was not, whether the failure shows at the
// final flush (small messages, all buffered) or in the middle of a large
// chunk written straight from the message.
func TestChunkedWriteFailure(t *testing.T) {
	const ehlo = "EHLO localhost\r\n"
	const first = "MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nBDAT 5 LAST\r\none\r\n"
	for _, second := range []string{"two\r\n", strings.Repeat("x", 100<<10) + "\r\n"} {
		hello := "220 x\r\n250-x\r\n250-PIPELINING\r\n250 CHUNKING\r\n"
		conn := &limitConn{scriptConn: scriptConn{r: bytes.NewReader([]byte(hello))}, limit: len(ehlo) + len(first) + 10}
		c, err := NewClient(conn, "x")
		if err != nil {
			t.Fatal(err)
		}
		c.LocalName = "localhost"
		res := c.SendBatch(context.Background(), []Outgoing{
			{From: "a@x", To: []string{"b@x"}, Data: []byte("one\r\n")},
			{From: "a@x", To: []string{"b@x"}, Data: []byte(second)},
			{From: "a@x", To: []string{"b@x"}, Data: []byte("three\r\n")},
		}, nil)
		var uo *UnknownOutcomeError
		var de *DisconnectedError
		if !errors.As(res[0].Err, &uo) {
			t.Errorf("second body %d bytes: message 1 = %v, want *UnknownOutcomeError (all of it was written)", len(second), res[0].Err)
		}
		for i := 1; i < 3; i++ {
			if !errors.As(res[i].Err, &de) || errors.As(res[i].Err, &uo) {
				t.Errorf("second body %d bytes: message %d = %v, want *DisconnectedError: not delivered", len(second), i+1, res[i].Err)
			}
		}
	}
}
