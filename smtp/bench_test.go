package smtp_test

// Benchmarks of the client against smtptest.Sink over one loopback
// connection. The targets, measured here and not asserted (a shared
// machine's timing is not a test verdict):
//
//   - PIPELINING pays: BenchmarkSendMailPipelined reaches at least 1.8x the
//     msgs/s of BenchmarkSendMailLockstep (2 round trips per message
//     instead of 4);
//   - the DATA encoder is cheap: BenchmarkSendMail1MB stays within 1.2x of
//     BenchmarkRawWrite1MB, which writes the same already-encoded bytes and
//     commands to a plain net.Conn and reads the replies;
//   - CHUNKING pays: BenchmarkSendMailChunking (one round trip per
//     message) beats BenchmarkSendMailPipelined (two), and
//     BenchmarkSendBatchChunking (16 messages in flight) beats both.
//
// Run: go test -run='^$' -bench=. -benchtime=2s -count=3 ./smtp

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

const benchFrom = "bench@example.org"

var benchTo = []string{"sink@example.org"}

// benchMessage builds a plain-text message of about size bytes: headers,
// then 76-character CRLF lines, none starting with a dot, so its wire
// encoding is itself followed by ".\r\n". eol replaces the body's CRLFs
// (headers keep theirs) to measure line-end repair.
func benchMessage(size int, eol string) []byte {
	var b bytes.Buffer
	b.WriteString("From: bench@example.org\r\nTo: sink@example.org\r\nSubject: benchmark\r\n" +
		"Message-ID: <bench@example.org>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
	for i := 0; b.Len() < size; i++ {
		line := strings.Repeat(alphabet[i%len(alphabet):]+alphabet[:i%len(alphabet)], 2)[:76]
		b.WriteString(line)
		b.WriteString(eol)
	}
	return b.Bytes()
}

// benchClient opens a plain-text session with the sink and says EHLO, so
// that the timed loop holds transactions only.
func benchClient(b *testing.B, sink *smtptest.Sink) *smtp.Client {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := smtp.Dial(ctx, sink.Addr())
	if err != nil {
		b.Fatalf("Dial: %v", err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		b.Fatalf("EHLO: %v", err)
	}
	return c
}

// benchSendMail sends msg b.N times over one connection.
func benchSendMail(b *testing.B, sink *smtptest.Sink, msg []byte) {
	c := benchClient(b, sink)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := c.SendMail(ctx, benchFrom, benchTo, msg, nil); err != nil {
			b.Fatalf("SendMail: %v", err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if got := sink.Messages(); got != int64(b.N) {
		b.Fatalf("sink accepted %d messages, want %d", got, b.N)
	}
}

// BenchmarkSendMailPipelined sends small messages with MAIL, RCPT and DATA
// in one write.
func BenchmarkSendMailPipelined(b *testing.B) {
	sink := smtptest.NewSink(b)
	benchSendMail(b, sink, benchMessage(1024, "\r\n"))
}

// BenchmarkSendMailLockstep sends the same messages to a sink that does not
// offer PIPELINING, so every command waits for its reply.
func BenchmarkSendMailLockstep(b *testing.B) {
	sink := smtptest.NewSink(b, smtptest.WithoutPipelining())
	benchSendMail(b, sink, benchMessage(1024, "\r\n"))
}

// BenchmarkSendMail1MB sends a 1 MB message whose encoding needs no change.
func BenchmarkSendMail1MB(b *testing.B) {
	sink := smtptest.NewSink(b)
	benchSendMail(b, sink, benchMessage(1<<20, "\r\n"))
}

// BenchmarkSendMail1MBBareLF sends a 1 MB message with bare LF line ends,
// each of which the encoder must turn into CRLF.
func BenchmarkSendMail1MBBareLF(b *testing.B) {
	sink := smtptest.NewSink(b)
	benchSendMail(b, sink, benchMessage(1<<20, "\n"))
}

// BenchmarkRawWrite1MB is the reference for BenchmarkSendMail1MB: the same
// commands (pipelined, as the client sends them to this sink) and the same
// encoded body, written to a plain net.Conn, with each reply read and
// checked. It is the cost of the bytes themselves.
func BenchmarkRawWrite1MB(b *testing.B) {
	sink := smtptest.NewSink(b)
	msg := benchMessage(1<<20, "\r\n")
	conn, err := net.DialTimeout("tcp", sink.Addr(), 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	r := bufio.NewReaderSize(conn, 4096)
	if err := benchExpect(r, 220); err != nil {
		b.Fatalf("greeting: %v", err)
	}
	if _, err := conn.Write([]byte("EHLO localhost\r\n")); err != nil {
		b.Fatal(err)
	}
	if err := benchExpect(r, 250); err != nil {
		b.Fatalf("EHLO: %v", err)
	}
	cmds := []byte(fmt.Sprintf("MAIL FROM:<%s> SIZE=%d\r\nRCPT TO:<%s>\r\nDATA\r\n", benchFrom, len(msg), benchTo[0]))
	body := append(append([]byte(nil), msg...), ".\r\n"...)

	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := conn.Write(cmds); err != nil {
			b.Fatal(err)
		}
		for _, code := range []int{250, 250, 354} {
			if err := benchExpect(r, code); err != nil {
				b.Fatalf("envelope: %v", err)
			}
		}
		if _, err := conn.Write(body); err != nil {
			b.Fatal(err)
		}
		if err := benchExpect(r, 250); err != nil {
			b.Fatalf("end of data: %v", err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if got := sink.Messages(); got != int64(b.N) {
		b.Fatalf("sink accepted %d messages, want %d", got, b.N)
	}
}

// benchExpect reads one reply, possibly multi-line, and checks its code.
func benchExpect(r *bufio.Reader, want int) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 {
			return fmt.Errorf("short reply line %q", line)
		}
		if code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0'); code != want {
			return fmt.Errorf("reply %q, want code %d", line, want)
		}
		if line[3] == ' ' {
			return nil
		}
	}
}

// BenchmarkSendBatch sends the same small messages 32 at a time with
// SendBatch, which overlaps each final dot with the next envelope: one
// round trip per message instead of two. On loopback the gain is small
// (the CPU, not the round trip, is the limit); over a WAN link it halves
// the waiting.
func BenchmarkSendBatch(b *testing.B) {
	sink := smtptest.NewSink(b)
	c := benchClient(b, sink)
	ctx := context.Background()
	msg := benchMessage(1024, "\r\n")
	batch := make([]smtp.Outgoing, 32)
	for i := range batch {
		batch[i] = smtp.Outgoing{From: benchFrom, To: benchTo, Data: msg}
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(len(batch), b.N-sent)
		for _, r := range c.SendBatch(ctx, batch[:n], nil) {
			if r.Err != nil {
				b.Fatalf("SendBatch: %v", r.Err)
			}
		}
		sent += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if got := sink.Messages(); got != int64(b.N) {
		b.Fatalf("sink accepted %d messages, want %d", got, b.N)
	}
}

// BenchmarkSendMailChunking sends small messages to a sink offering
// CHUNKING: MAIL, RCPT, BDAT LAST and the body in one write, one round trip.
func BenchmarkSendMailChunking(b *testing.B) {
	sink := smtptest.NewSink(b, smtptest.WithChunking())
	benchSendMail(b, sink, benchMessage(1024, "\r\n"))
}

// BenchmarkSendMailChunking1MB sends a 1 MB message with BDAT: one chunk,
// written from the message without a copy.
func BenchmarkSendMailChunking1MB(b *testing.B) {
	sink := smtptest.NewSink(b, smtptest.WithChunking())
	benchSendMail(b, sink, benchMessage(1<<20, "\r\n"))
}

// BenchmarkSendMailChunking1MBBareLF sends a 1 MB message with bare LF line
// ends with BDAT: the chunk is written in runs with the CRLF repaired.
func BenchmarkSendMailChunking1MBBareLF(b *testing.B) {
	sink := smtptest.NewSink(b, smtptest.WithChunking())
	benchSendMail(b, sink, benchMessage(1<<20, "\n"))
}

// BenchmarkSendBatchChunking sends small messages 256 at a time with
// SendBatch over CHUNKING, with the default window of 16 in flight.
func BenchmarkSendBatchChunking(b *testing.B) {
	for _, window := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			sink := smtptest.NewSink(b, smtptest.WithChunking())
			c := benchClient(b, sink)
			c.BatchWindow = window
			ctx := context.Background()
			msg := benchMessage(1024, "\r\n")
			batch := make([]smtp.Outgoing, 256)
			for i := range batch {
				batch[i] = smtp.Outgoing{From: benchFrom, To: benchTo, Data: msg}
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				n := min(len(batch), b.N-sent)
				for _, r := range c.SendBatch(ctx, batch[:n], nil) {
					if r.Err != nil {
						b.Fatalf("SendBatch: %v", r.Err)
					}
				}
				sent += n
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if got := sink.Messages(); got != int64(b.N) {
				b.Fatalf("sink accepted %d messages, want %d", got, b.N)
			}
		})
	}
}
