package smtptest

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// sinkBufSize is the size of a Sink connection's read and write buffers. It
// is large enough that a pipelined burst of commands, or a sizeable piece of
// a DATA body, is handled per read system call.
const sinkBufSize = 64 << 10

// SinkOption configures a [Sink].
type SinkOption func(*sinkConfig)

type sinkConfig struct {
	noPipelining bool
	dsn          bool
	chunking     bool
}

// WithoutPipelining makes the sink leave PIPELINING (RFC 2920) out of its
// EHLO reply, so a client must wait for each reply. The sink still answers
// correctly if a client pipelines anyway.
func WithoutPipelining() SinkOption { return func(c *sinkConfig) { c.noPipelining = true } }

// WithDSN makes the sink advertise DSN (RFC 3461). The sink accepts the DSN
// parameters of MAIL and RCPT either way, since it ignores all parameters.
func WithDSN() SinkOption { return func(c *sinkConfig) { c.dsn = true } }

// WithChunking makes the sink advertise CHUNKING (RFC 3030) and accept
// messages sent with BDAT as well as DATA.
func WithChunking() SinkOption { return func(c *sinkConfig) { c.chunking = true } }

// Sink is a minimal, fast ESMTP server that accepts every message and counts
// messages and bytes. It serves any number of concurrent connections on
// 127.0.0.1. Its EHLO reply advertises PIPELINING, 8BITMIME, SIZE,
// ENHANCEDSTATUSCODES and SMTPUTF8 (and DSN with [WithDSN]).
//
// It implements EHLO, HELO, MAIL, RCPT, DATA, BDAT (with [WithChunking]),
// RSET, NOOP and QUIT, with the
// command order RFC 5321 requires (503 for MAIL inside a transaction, RCPT
// before MAIL, DATA without a recipient); other commands get 502.
type Sink struct {
	ln   net.Listener
	ehlo []byte

	messages atomic.Int64
	bytes    atomic.Int64

	wg        sync.WaitGroup
	closeOnce sync.Once
	mu        sync.Mutex
	closed    bool
	conns     map[net.Conn]struct{}
}

// NewSink starts a sink on 127.0.0.1:0 and registers tb.Cleanup to close it.
func NewSink(tb testing.TB, opts ...SinkOption) *Sink {
	tb.Helper()
	var cfg sinkConfig
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("smtptest: sink listen: %v", err)
	}
	ehlo := "250-sink.test\r\n"
	if !cfg.noPipelining {
		ehlo += "250-PIPELINING\r\n"
	}
	ehlo += "250-8BITMIME\r\n250-SIZE\r\n250-ENHANCEDSTATUSCODES\r\n"
	if cfg.dsn {
		ehlo += "250-DSN\r\n"
	}
	if cfg.chunking {
		ehlo += "250-CHUNKING\r\n"
	}
	ehlo += "250 SMTPUTF8\r\n"
	s := &Sink{ln: ln, ehlo: []byte(ehlo), conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go s.serve()
	tb.Cleanup(s.Close)
	return s
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Host returns the listening IP address, "127.0.0.1".
func (s *Sink) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port returns the listening TCP port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Messages returns the number of messages accepted so far.
func (s *Sink) Messages() int64 { return s.messages.Load() }

// Bytes returns the total size of the accepted DATA bodies as received
// (dot-stuffed, CRLF line endings, without the terminating ".\r\n").
func (s *Sink) Bytes() int64 { return s.bytes.Load() }

// Close stops the sink, closes every connection and waits for the handlers
// to return. It is idempotent.
func (s *Sink) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	s.wg.Wait()
}

func (s *Sink) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed; a sink has no one to report accept errors to
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.Close()
		}()
	}
}

// Replies, allocated once.
var (
	sinkGreeting   = []byte("220 sink.test ESMTP mailbot smtptest sink\r\n")
	sinkHelo       = []byte("250 sink.test\r\n")
	sinkMailOK     = []byte("250 2.1.0 Ok\r\n")
	sinkRcptOK     = []byte("250 2.1.5 Ok\r\n")
	sinkDataGo     = []byte("354 End data with <CR><LF>.<CR><LF>\r\n")
	sinkQueued     = []byte("250 2.0.0 Ok: queued\r\n")
	sinkOK         = []byte("250 2.0.0 Ok\r\n")
	sinkBye        = []byte("221 2.0.0 Bye\r\n")
	sinkBadSeqMail = []byte("503 5.5.1 Error: nested MAIL command\r\n")
	sinkBadSeqRcpt = []byte("503 5.5.1 Error: need MAIL command\r\n")
	sinkBadSeqData = []byte("503 5.5.1 Error: need RCPT command\r\n")
	sinkNotImpl    = []byte("502 5.5.1 Error: command not implemented\r\n")
	sinkTooLong    = []byte("500 5.5.6 Error: line too long\r\n")
	sinkBadBDAT    = []byte("501 5.5.4 Error: want BDAT <size> [LAST]\r\n")
)

// parseBDAT reads "BDAT <size>[ LAST]\r\n".
func parseBDAT(line []byte) (size int64, last bool, ok bool) {
	f := bytes.Fields(line[4:])
	if len(f) < 1 || len(f) > 2 || len(f[0]) > 10 {
		return 0, false, false
	}
	for _, c := range f[0] {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		size = size*10 + int64(c-'0')
	}
	if len(f) == 2 {
		if !bytes.EqualFold(f[1], []byte("LAST")) {
			return 0, false, false
		}
		last = true
	}
	return size, last, size <= 1<<30
}

// verb packs the first four bytes of a command, lower-cased, into an integer
// so that dispatch needs neither an allocation nor a string comparison.
func verb(line []byte) uint32 {
	if len(line) < 4 || (len(line) > 4 && line[4] != ' ' && line[4] != '\r' && line[4] != '\n') {
		return 0
	}
	return uint32(line[0]|0x20)<<24 | uint32(line[1]|0x20)<<16 | uint32(line[2]|0x20)<<8 | uint32(line[3]|0x20)
}

func verbOf(s string) uint32 { return verb([]byte(s)) }

var (
	vEHLO = verbOf("ehlo")
	vHELO = verbOf("helo")
	vMAIL = verbOf("mail")
	vRCPT = verbOf("rcpt")
	vDATA = verbOf("data")
	vRSET = verbOf("rset")
	vNOOP = verbOf("noop")
	vQUIT = verbOf("quit")
	vBDAT = verbOf("bdat")
)

// handle serves one connection. Replies are buffered and flushed only when
// the reader has no further input buffered: a client that pipelines its
// commands then gets all their replies in one write, which is where
// pipelining's gain comes from; a client that waits for each reply still
// gets it at once because its next command is not buffered yet.
func (s *Sink) handle(conn net.Conn) {
	r := bufio.NewReaderSize(conn, sinkBufSize)
	w := bufio.NewWriterSize(conn, sinkBufSize)
	reply := func(b []byte) bool {
		w.Write(b)
		if r.Buffered() == 0 {
			return w.Flush() == nil
		}
		return true
	}
	if !reply(sinkGreeting) {
		return
	}
	var inMail bool
	var rcpts int
	var chunked int64 // BDAT bytes of the message in progress
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				w.Write(sinkTooLong)
				w.Flush()
			}
			return
		}
		var out []byte
		switch verb(line) {
		case vEHLO:
			inMail, rcpts = false, 0
			out = s.ehlo
		case vHELO:
			inMail, rcpts = false, 0
			out = sinkHelo
		case vMAIL:
			if inMail {
				out = sinkBadSeqMail
			} else {
				inMail, out = true, sinkMailOK
			}
		case vRCPT:
			if !inMail {
				out = sinkBadSeqRcpt
			} else {
				rcpts++
				out = sinkRcptOK
			}
		case vDATA:
			if !inMail || rcpts == 0 {
				out = sinkBadSeqData
				break
			}
			// The 354 must reach the client before it sends the body,
			// unless the body is already buffered behind DATA.
			if !reply(sinkDataGo) {
				return
			}
			n, err := readDataBody(r)
			if err != nil {
				return
			}
			s.messages.Add(1)
			s.bytes.Add(n)
			inMail, rcpts = false, 0
			out = sinkQueued
		case vBDAT:
			size, last, ok := parseBDAT(line)
			if !ok {
				out = sinkBadBDAT
				break
			}
			// The chunk follows the command whatever the verdict.
			if _, err := r.Discard(int(size)); err != nil {
				return
			}
			switch {
			case !inMail || rcpts == 0:
				out = sinkBadSeqData
			case last:
				s.messages.Add(1)
				s.bytes.Add(chunked + size)
				inMail, rcpts, chunked = false, 0, 0
				out = sinkQueued
			default:
				chunked += size
				out = sinkOK
			}
		case vRSET:
			inMail, rcpts, chunked = false, 0, 0
			out = sinkOK
		case vNOOP:
			out = sinkOK
		case vQUIT:
			w.Write(sinkBye)
			w.Flush()
			return
		default:
			out = sinkNotImpl
		}
		if !reply(out) {
			return
		}
	}
}

// dataEnd is the end-of-data marker; the body's own last CRLF is its first
// two bytes.
var dataEnd = []byte("\r\n.\r\n")

// readDataBody consumes a DATA body and its terminating ".\r\n" from r,
// working on whole buffers rather than lines, and returns the body size.
func readDataBody(r *bufio.Reader) (int64, error) {
	var total int64
	state := 2 // the CRLF ending the DATA command counts as a line start
	for {
		if _, err := r.Peek(1); err != nil {
			return 0, err
		}
		buf, _ := r.Peek(r.Buffered())
		n, st, found := scanDataEnd(buf, state)
		if _, err := r.Discard(n); err != nil {
			return 0, err
		}
		total += int64(n)
		if found {
			// The last three bytes consumed are ".\r\n", not body.
			return total - 3, nil
		}
		state = st
	}
}

// scanDataEnd looks for the end-of-data marker in p, given that the last
// state bytes before p matched its first state bytes. When found, n is the
// offset just past the marker; otherwise n is len(p) and next is the number
// of marker bytes matched at the end of p.
func scanDataEnd(p []byte, state int) (n, next int, found bool) {
	// Finish or abandon a match begun in the previous buffer, byte by byte,
	// following the marker's failure function ("\r" and "\r\n" are the
	// only prefixes of "\r\n.\r\n" that recur inside it).
	i := 0
	for state > 0 && i < len(p) {
		c := p[i]
		i++
		switch {
		case c == dataEnd[state]:
			state++
			if state == len(dataEnd) {
				return i, 0, true
			}
		case c == '\r':
			state = 1
		default:
			state = 0
		}
	}
	if state > 0 {
		return len(p), state, false
	}
	if k := bytes.Index(p[i:], dataEnd); k >= 0 {
		return i + k + len(dataEnd), 0, true
	}
	// Carry any marker prefix that ends the buffer into the next one.
	for k := len(dataEnd) - 1; k > 0; k-- {
		if len(p)-i >= k && bytes.HasSuffix(p, dataEnd[:k]) {
			return len(p), k, false
		}
	}
	return len(p), 0, false
}
