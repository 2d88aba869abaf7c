package smtptest_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mailbot/mailbot/smtp/smtptest"
)

// readReply reads one possibly multi-line reply and returns its lines.
func readReply(r *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return lines, fmt.Errorf("read reply: %w", err)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines, nil
		}
	}
}

// codes reads n replies and returns their first lines' codes.
func codes(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	for range n {
		lines, err := readReply(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, lines[0][:3])
	}
	return out
}

func TestSinkEHLO(t *testing.T) {
	tests := []struct {
		name string
		opts []smtptest.SinkOption
		want []string
	}{
		{"default", nil, []string{"250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE", "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"}},
		{"without pipelining", []smtptest.SinkOption{smtptest.WithoutPipelining()}, []string{"250-sink.test", "250-8BITMIME", "250-SIZE", "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"}},
		{"with DSN", []smtptest.SinkOption{smtptest.WithDSN()}, []string{"250-sink.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE", "250-ENHANCEDSTATUSCODES", "250-DSN", "250 SMTPUTF8"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := smtptest.NewSink(t, tc.opts...)
			c := dial(t, sink.Addr())
			if got := codes(t, c.r, 1); got[0] != "220" {
				t.Fatalf("greeting %v", got)
			}
			c.send("EHLO localhost")
			got, err := readReply(c.r)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("EHLO reply %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSinkCommandOrder(t *testing.T) {
	tests := []struct {
		name  string
		input string // pipelined in one write
		want  []string
	}{
		{"RCPT before MAIL", "RCPT TO:<a@x>\r\n", []string{"503"}},
		{"DATA before RCPT", "MAIL FROM:<a@x>\r\nDATA\r\n", []string{"250", "503"}},
		{"nested MAIL", "MAIL FROM:<a@x>\r\nmail from:<b@x>\r\n", []string{"250", "503"}},
		{"RSET ends the transaction", "MAIL FROM:<a@x>\r\nRSET\r\nRCPT TO:<b@x>\r\n", []string{"250", "250", "503"}},
		{"HELO, NOOP and lower case", "helo x\r\nnoop\r\n", []string{"250", "250"}},
		{"unknown command", "VRFY root\r\nMAILX\r\n", []string{"502", "502"}},
		{"QUIT", "QUIT\r\n", []string{"221"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := smtptest.NewSink(t)
			c := dial(t, sink.Addr())
			codes(t, c.r, 1)
			c.write(tc.input)
			if got := codes(t, c.r, len(tc.want)); !slices.Equal(got, tc.want) {
				t.Errorf("replies %v, want %v", got, tc.want)
			}
			if sink.Messages() != 0 {
				t.Errorf("Messages() = %d, want 0", sink.Messages())
			}
		})
	}
}

func TestSinkPipelinedBurst(t *testing.T) {
	sink := smtptest.NewSink(t)
	c := dial(t, sink.Addr())
	codes(t, c.r, 1)
	c.send("EHLO localhost")
	if _, err := readReply(c.r); err != nil {
		t.Fatal(err)
	}
	// The envelope in one write, as a pipelining client sends it (RFC 2920
	// section 3.1: DATA may end a pipelined group).
	c.write("MAIL FROM:<bot@example.org>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
	if got, want := codes(t, c.r, 4), []string{"250", "250", "250", "354"}; !slices.Equal(got, want) {
		t.Fatalf("replies %v, want %v", got, want)
	}
	body := "Subject: burst\r\n\r\n..stuffed\r\n"
	c.write(body + ".\r\nQUIT\r\n")
	if got, want := codes(t, c.r, 2), []string{"250", "221"}; !slices.Equal(got, want) {
		t.Fatalf("replies %v, want %v", got, want)
	}
	if sink.Messages() != 1 || sink.Bytes() != int64(len(body)) {
		t.Errorf("Messages() = %d, Bytes() = %d; want 1, %d", sink.Messages(), sink.Bytes(), len(body))
	}
}

// transaction is one pipelined message: envelope, body and terminator.
func transaction(i int, body string) string {
	return fmt.Sprintf("MAIL FROM:<s%d@example.org>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n%s.\r\n", i, body)
}

func TestSinkWholeSessionInOneWrite(t *testing.T) {
	const n = 100
	body := "Subject: x\r\n\r\nhello\r\n"
	var sb strings.Builder
	sb.WriteString("EHLO localhost\r\n")
	for i := range n {
		sb.WriteString(transaction(i, body))
	}
	sb.WriteString("QUIT\r\n")

	sink := smtptest.NewSink(t)
	c := dial(t, sink.Addr())
	go func() { _, _ = io.WriteString(c.conn, sb.String()) }()
	got := codes(t, c.r, 2+4*n+1)
	if got[0] != "220" || got[1] != "250" || got[len(got)-1] != "221" {
		t.Fatalf("replies start %v, end %v", got[:2], got[len(got)-1])
	}
	for i := range n {
		if tx := got[2+4*i : 6+4*i]; !slices.Equal(tx, []string{"250", "250", "354", "250"}) {
			t.Fatalf("message %d replies %v", i, tx)
		}
	}
	if sink.Messages() != n || sink.Bytes() != int64(n*len(body)) {
		t.Errorf("Messages() = %d, Bytes() = %d; want %d, %d", sink.Messages(), sink.Bytes(), n, n*len(body))
	}
}

func TestSinkConcurrentConnections(t *testing.T) {
	const conns, perConn = 8, 10
	sink := smtptest.NewSink(t)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() { errs <- sendSequential(sink.Addr(), perConn) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := sink.Messages(); got != conns*perConn {
		t.Errorf("Messages() = %d, want %d", got, conns*perConn)
	}
}

// sendSequential sends n messages waiting for each reply, as a client that
// does not pipeline would.
func sendSequential(addr string, n int) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	step := func(line, want string) error {
		if line != "" {
			if _, err := io.WriteString(conn, line); err != nil {
				return err
			}
		}
		got, err := readReply(r)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(got[len(got)-1], want) {
			return fmt.Errorf("after %q: got %q, want %s", line, got, want)
		}
		return nil
	}
	if err := step("", "220"); err != nil {
		return err
	}
	if err := step("EHLO localhost\r\n", "250"); err != nil {
		return err
	}
	for range n {
		for _, s := range []struct{ line, want string }{
			{"MAIL FROM:<a@x>\r\n", "250"}, {"RCPT TO:<b@x>\r\n", "250"},
			{"DATA\r\n", "354"}, {"body\r\n.\r\n", "250"},
		} {
			if err := step(s.line, s.want); err != nil {
				return err
			}
		}
	}
	return step("QUIT\r\n", "221")
}

func TestSinkCloseEndsConnections(t *testing.T) {
	sink := smtptest.NewSink(t)
	c := dial(t, sink.Addr())
	codes(t, c.r, 1)
	sink.Close()
	sink.Close() // idempotent
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("connection still open after Close")
	}
}

// BenchmarkSink measures the sink as a pipelining peer: each iteration is one
// 1 KiB message sent as a single pipelined write.
func BenchmarkSink(b *testing.B) {
	sink := smtptest.NewSink(b)
	conn, err := net.Dial("tcp", sink.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	if _, err := readReply(r); err != nil {
		b.Fatal(err)
	}
	msg := []byte(transaction(0, strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\r\n", 16)))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(msg); err != nil {
			b.Fatal(err)
		}
		for range 4 {
			if _, err := r.ReadSlice('\n'); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(sink.Messages())/b.Elapsed().Seconds(), "msgs/s")
}
