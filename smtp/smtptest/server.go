package smtptest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// MaxLineLength is the longest line, CRLF included, the scripted server
// accepts from a client. RFC 5321 allows 512 bytes for a command and 1000
// for a text line; the cap is far above both so that it only trips on a
// client that never ends its line.
const MaxLineLength = 64 << 10

// MaxDataSize caps one DATA body captured by "! data", so a client that never
// sends the final "." cannot exhaust memory before the read deadline.
const MaxDataSize = 64 << 20

const (
	defaultReadTimeout   = 5 * time.Second
	defaultAcceptTimeout = 10 * time.Second
)

// Errors a [*ScriptError] wraps. Other causes (read deadlines, resets) are
// wrapped as the network returned them, so errors.Is(err,
// os.ErrDeadlineExceeded) identifies a client that sent nothing in time.
var (
	// ErrMismatch means the client sent a line other than the script expected.
	ErrMismatch = errors.New("line does not match the script")
	// ErrLineTooLong means the client sent more than MaxLineLength bytes without LF.
	ErrLineTooLong = errors.New("line longer than smtptest.MaxLineLength")
	// ErrBareLF means the client ended a command line with LF instead of CRLF.
	ErrBareLF = errors.New("line ends in a bare LF, not CRLF")
	// ErrDataTooLarge means a DATA body exceeded MaxDataSize.
	ErrDataTooLarge = errors.New("DATA body larger than smtptest.MaxDataSize")
	// ErrNotEOF means the client sent data where the script expected it to close.
	ErrNotEOF = errors.New("client sent data instead of closing the connection")
	// ErrUnexpectedEOF means the client closed the connection before the script ended.
	ErrUnexpectedEOF = errors.New("client closed the connection")
	// ErrDataBeforeTLS means the client sent bytes after STARTTLS without waiting
	// for the TLS handshake; such bytes would be read as if they had been
	// protected by TLS (the STARTTLS command injection flaw, CVE-2011-0411).
	ErrDataBeforeTLS = errors.New("client sent data after STARTTLS before the TLS handshake")
	// ErrServerClosed means the server was closed before the step could finish.
	ErrServerClosed = errors.New("server closed")
)

// ScriptError describes where playing a script against a connection failed.
type ScriptError struct {
	Conn int    // 1-based connection number, in accept order
	Line int    // 1-based script line; 0 when the failure precedes the script (accept, TLS)
	Step string // the script line, e.g. "C: EHLO localhost"
	Got  string // the line the client sent, when one was read
	Err  error  // the cause: one of the Err* values or a network error
}

// Error returns a message such as
//
//	smtptest: connection 1, script line 3 "C: EHLO localhost": got "HELO x": line does not match the script
func (e *ScriptError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "smtptest: connection %d", e.Conn)
	if e.Line > 0 {
		fmt.Fprintf(&sb, ", script line %d %q", e.Line, e.Step)
	}
	if e.Got != "" || errors.Is(e.Err, ErrMismatch) || errors.Is(e.Err, ErrNotEOF) {
		fmt.Fprintf(&sb, ": got %q", e.Got)
	}
	fmt.Fprintf(&sb, ": %v", e.Err)
	return sb.String()
}

// Unwrap returns the cause.
func (e *ScriptError) Unwrap() error { return e.Err }

// Option configures a [Server].
type Option func(*config)

type config struct {
	implicitTLS   bool
	tlsConfig     *tls.Config
	readTimeout   time.Duration
	acceptTimeout time.Duration
	conns         int
}

// WithImplicitTLS makes the server speak TLS from the first byte, as on the
// submissions port 465 (RFC 8314), before the script starts.
func WithImplicitTLS() Option { return func(c *config) { c.implicitTLS = true } }

// WithTLSConfig sets the server-side TLS configuration used by implicit TLS
// and "! starttls". Without it the server presents the generated certificate.
func WithTLSConfig(cfg *tls.Config) Option { return func(c *config) { c.tlsConfig = cfg } }

// WithReadTimeout sets how long the server waits for each client line, for the
// TLS handshake and for each write (default 5s). A client that stalls makes
// [Server.Wait] return an error wrapping os.ErrDeadlineExceeded.
func WithReadTimeout(d time.Duration) Option { return func(c *config) { c.readTimeout = d } }

// WithAcceptTimeout sets how long the server waits for each expected
// connection to arrive (default 10s), so that a test whose client never
// dials gets an error from [Server.Wait] instead of hanging.
func WithAcceptTimeout(d time.Duration) Option { return func(c *config) { c.acceptTimeout = d } }

// WithConnections makes the server accept n connections and replay the
// script on each of them. Connections are served concurrently. It has no
// effect on [NewServerScripts], where the number of scripts decides.
func WithConnections(n int) Option { return func(c *config) { c.conns = n } }

// Server is a scripted SMTP server listening on 127.0.0.1. Create it with
// [NewServer] or [NewServerScripts]. Its methods are safe for concurrent use.
type Server struct {
	ln      net.Listener
	cfg     config
	tlsCfg  *tls.Config
	leaf    *x509.Certificate
	scripts [][]step

	closing   chan struct{} // closed by Close; ends hangs and drips
	done      chan struct{} // closed when every connection has been played
	closeOnce sync.Once

	mu     sync.Mutex
	closed bool
	conns  []net.Conn   // raw TCP connections, closed by Close
	recs   []*recording // one per accepted connection, in accept order
	errs   []error      // one per expected connection; nil when it played fine
}

// recording is what happened on one connection.
type recording struct {
	received   []string
	transcript []string
	data       [][]byte
	// chunks collects the BDAT chunks of the message in progress.
	chunks []byte
}

// NewServer parses script, starts a server on 127.0.0.1:0 that plays it
// against one connection (or several, see [WithConnections]) and registers
// tb.Cleanup to close it. A malformed script fails the test immediately.
func NewServer(tb testing.TB, script string, opts ...Option) *Server {
	tb.Helper()
	cfg := config{conns: 1}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.conns < 1 {
		tb.Fatalf("smtptest: WithConnections(%d): need at least one connection", cfg.conns)
	}
	scripts := make([]string, cfg.conns)
	for i := range scripts {
		scripts[i] = script
	}
	return newServer(tb, scripts, cfg)
}

// NewServerScripts is like [NewServer] but accepts len(scripts) connections
// and plays scripts[i] on the i-th connection accepted.
func NewServerScripts(tb testing.TB, scripts []string, opts ...Option) *Server {
	tb.Helper()
	if len(scripts) == 0 {
		tb.Fatalf("smtptest: NewServerScripts: no scripts")
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	return newServer(tb, scripts, cfg)
}

// LoadScript returns the contents of the script file at path, failing the
// test if it cannot be read.
func LoadScript(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("smtptest: load script: %v", err)
	}
	return string(b)
}

func newServer(tb testing.TB, texts []string, cfg config) *Server {
	tb.Helper()
	if cfg.readTimeout <= 0 {
		cfg.readTimeout = defaultReadTimeout
	}
	if cfg.acceptTimeout <= 0 {
		cfg.acceptTimeout = defaultAcceptTimeout
	}
	s := &Server{
		cfg:     cfg,
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		errs:    make([]error, len(texts)),
	}
	for i, text := range texts {
		steps, err := parseScript(text)
		if err != nil {
			tb.Fatalf("smtptest: script %d: %v", i+1, err)
		}
		s.scripts = append(s.scripts, steps)
	}
	if err := s.setupTLS(); err != nil {
		tb.Fatalf("smtptest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("smtptest: listen: %v", err)
	}
	s.ln = ln
	go s.serve()
	tb.Cleanup(s.Close)
	return s
}

// setupTLS picks the server TLS configuration and the certificate clients
// should trust: the one from WithTLSConfig when it carries one, else the
// generated one.
func (s *Server) setupTLS() error {
	gen, err := testCert()
	if err != nil {
		return fmt.Errorf("generate certificate: %w", err)
	}
	if s.cfg.tlsConfig == nil {
		s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{gen}, MinVersion: tls.VersionTLS12}
		s.leaf = gen.Leaf
		return nil
	}
	s.tlsCfg = s.cfg.tlsConfig
	s.leaf = gen.Leaf
	if certs := s.tlsCfg.Certificates; len(certs) > 0 && len(certs[0].Certificate) > 0 {
		leaf, err := x509.ParseCertificate(certs[0].Certificate[0])
		if err != nil {
			return fmt.Errorf("parse WithTLSConfig certificate: %w", err)
		}
		s.leaf = leaf
	}
	return nil
}

// serve accepts the expected connections, plays one script on each and
// closes done when all have finished.
func (s *Server) serve() {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(s.done)
	}()
	// The listener closes once every expected connection has arrived, so a
	// client that dials once too often is refused instead of waiting forever
	// for a greeting.
	defer s.ln.Close()
	for i := range s.scripts {
		if tl, ok := s.ln.(*net.TCPListener); ok {
			_ = tl.SetDeadline(time.Now().Add(s.cfg.acceptTimeout))
		}
		conn, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			if s.closed {
				err = ErrServerClosed
			}
			for j := i; j < len(s.scripts); j++ {
				s.errs[j] = &ScriptError{Conn: j + 1, Err: fmt.Errorf("accept: %w", err)}
			}
			s.mu.Unlock()
			return
		}
		rec := &recording{}
		s.mu.Lock()
		if s.closed {
			s.errs[i] = &ScriptError{Conn: i + 1, Err: ErrServerClosed}
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns = append(s.conns, conn)
		s.recs = append(s.recs, rec)
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.play(i, conn, rec)
			s.mu.Lock()
			s.errs[i] = err
			s.mu.Unlock()
		}()
	}
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host returns the listening IP address, "127.0.0.1".
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port returns the listening TCP port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Certificate returns the certificate the server presents in TLS.
func (s *Server) Certificate() *x509.Certificate { return s.leaf }

// CertPool returns a pool that trusts [Server.Certificate], for a client's
// tls.Config.RootCAs.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(s.leaf)
	return pool
}

// TLSFingerprintSHA256 returns the SHA-256 digest of the DER encoding of
// [Server.Certificate], for certificate pinning tests.
func (s *Server) TLSFingerprintSHA256() [32]byte { return sha256.Sum256(s.leaf.Raw) }

// Wait blocks until the script has been played on every expected connection,
// to its end or to its first failure, and returns the failure of the
// earliest connection that failed as a [*ScriptError], or nil. Wait may be
// called more than once. A script ending in "! hang" ends only when the
// client hangs up or [Server.Close] is called.
func (s *Server) Wait() error {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Close stops the server: it closes the listener and every connection (which
// ends "! hang"), then waits for the connection handlers to return. Close is
// idempotent and is registered with tb.Cleanup by the constructors.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		s.ln.Close()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	<-s.done
}

// Received returns every line the client sent outside DATA bodies, CRLF
// stripped, in order; lines of all connections are concatenated in accept
// order. DATA bodies are returned by [Server.Data].
func (s *Server) Received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.recs {
		out = append(out, r.received...)
	}
	return out
}

// Data returns a copy of each message body captured by "! data" or by the
// "! chunk" of a BDAT LAST, in order. A DATA body is returned as received:
// dot-stuffed, with CRLF line endings, without the terminating ".\r\n"
// line. A BDAT message is its chunks joined.
func (s *Server) Data() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, r := range s.recs {
		for _, d := range r.data {
			out = append(out, bytes.Clone(d))
		}
	}
	return out
}

// Transcript returns the conversation so far, one "C: ..." or "S: ..." line
// per protocol line, followed by a newline. DATA body lines appear as
// "C: " lines ending with "C: ."; non-line events use the script notation
// ("! starttls", "! raw ...", "! flood N ...", "! close", "! hang",
// "! expect-eof"). With several connections each one starts with a
// "# connection N" line.
func (s *Server) Transcript() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sb strings.Builder
	for i, r := range s.recs {
		if len(s.scripts) > 1 {
			fmt.Fprintf(&sb, "# connection %d\n", i+1)
		}
		for _, l := range r.transcript {
			sb.WriteString(l)
			sb.WriteByte('\n')
		}
	}
	return sb.String()
}

// record appends to the transcript and, for client lines, to received.
func (s *Server) record(rec *recording, entry string, client bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.transcript = append(rec.transcript, entry)
	if client {
		rec.received = append(rec.received, strings.TrimPrefix(entry, "C: "))
	}
}

// player plays one script on one connection.
type player struct {
	s    *Server
	num  int // 1-based connection number
	raw  net.Conn
	conn net.Conn // raw, or the TLS connection on top of it
	r    *bufio.Reader
	rec  *recording
}

// play runs the script for connection i and closes the connection when the
// script ends, whatever the outcome, so that a mismatch never leaves the
// client waiting.
func (s *Server) play(i int, raw net.Conn, rec *recording) (err error) {
	p := &player{s: s, num: i + 1, raw: raw, conn: raw, rec: rec}
	defer func() {
		p.conn.Close()
	}()
	if s.cfg.implicitTLS {
		if err := p.startTLS(); err != nil {
			return &ScriptError{Conn: p.num, Err: err}
		}
	} else {
		p.r = bufio.NewReaderSize(raw, MaxLineLength)
	}
	for _, st := range s.scripts[i] {
		got, err := p.step(st)
		if err != nil {
			return &ScriptError{Conn: p.num, Line: st.line, Step: st.src, Got: got, Err: err}
		}
		if st.kind == opClose {
			break
		}
	}
	return nil
}

// step runs one script step. It returns the client line it read, if any,
// for the error message.
func (p *player) step(st step) (string, error) {
	switch st.kind {
	case opSend:
		p.s.record(p.rec, "S: "+st.text, false)
		return "", p.write([]byte(st.text + "\r\n"))
	case opRaw:
		p.s.record(p.rec, "! raw "+escape(st.raw), false)
		return "", p.write(st.raw)
	case opDrip:
		p.s.record(p.rec, "S: "+st.text, false)
		return "", p.drip([]byte(st.text+"\r\n"), st.pause)
	case opFlood:
		p.s.record(p.rec, fmt.Sprintf("! flood %d %s", st.n, st.text), false)
		p.flood(st.text, st.n)
		return "", nil
	case opExpect, opExpectAny, opExpectRe:
		line, err := p.readCommand()
		if err != nil {
			return line, err
		}
		p.s.record(p.rec, "C: "+line, true)
		switch {
		case st.kind == opExpect && line != st.text,
			st.kind == opExpectRe && !st.re.MatchString(line):
			return line, ErrMismatch
		}
		return "", nil
	case opData:
		return p.readData()
	case opChunk:
		return "", p.readChunk()
	case opStartTLS:
		p.s.record(p.rec, "! starttls", false)
		if n := p.r.Buffered(); n > 0 {
			return "", fmt.Errorf("%w (%d bytes)", ErrDataBeforeTLS, n)
		}
		return "", p.startTLS()
	case opClose:
		p.s.record(p.rec, "! close", false)
		return "", nil
	case opHang:
		p.s.record(p.rec, "! hang", false)
		p.hang()
		return "", nil
	case opExpectEOF:
		return p.expectEOF()
	}
	return "", fmt.Errorf("unknown step kind %d", st.kind)
}

// write sends b under a write deadline so a client that stops reading cannot
// block the server forever.
func (p *player) write(b []byte) error {
	_ = p.conn.SetWriteDeadline(time.Now().Add(p.s.cfg.readTimeout))
	if _, err := p.conn.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// drip sends b one byte at a time with a pause between bytes. Close
// interrupts the pause.
func (p *player) drip(b []byte, pause time.Duration) error {
	t := time.NewTimer(pause)
	defer t.Stop()
	for i := range b {
		if i > 0 {
			t.Reset(pause)
			select {
			case <-t.C:
			case <-p.s.closing:
				return ErrServerClosed
			}
		}
		if err := p.write(b[i : i+1]); err != nil {
			return err
		}
	}
	return nil
}

// flood sends n copies of line+CRLF in large writes. It is best effort: a
// client that hangs up or stops reading ends the flood without an error,
// because reacting that way is what flood tests check for.
func (p *player) flood(line string, n int) {
	unit := line + "\r\n"
	per := max(1, (32<<10)/len(unit))
	chunk := []byte(strings.Repeat(unit, min(per, n)))
	for n > 0 {
		k := min(per, n)
		if p.write(chunk[:k*len(unit)]) != nil {
			return
		}
		n -= k
	}
}

// readLine reads one line, LF included, under the read deadline.
func (p *player) readLine() ([]byte, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(p.s.cfg.readTimeout))
	b, err := p.r.ReadSlice('\n')
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, ErrLineTooLong
	case isClosed(err):
		if len(b) > 0 {
			return nil, fmt.Errorf("%w after a partial line %q", ErrUnexpectedEOF, b)
		}
		return nil, ErrUnexpectedEOF
	case p.s.isClosing():
		return nil, ErrServerClosed
	default:
		return nil, fmt.Errorf("read: %w", err)
	}
}

// readCommand reads one command line and strips its CRLF.
func (p *player) readCommand() (string, error) {
	b, err := p.readLine()
	if err != nil {
		return "", err
	}
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		line := string(b[:len(b)-1])
		p.s.record(p.rec, "C: "+line, true)
		return line, ErrBareLF
	}
	return string(b[:len(b)-2]), nil
}

// readData reads a DATA body up to the line ".\r\n". The terminator counts
// only at the start of a line that follows CRLF, as RFC 5321 section 4.1.1.4
// defines it: a "." line after a bare LF is body, which is how tests see a
// client that would permit SMTP smuggling.
func (p *player) readData() (string, error) {
	var body []byte
	atLineStart := true // the DATA command's CRLF precedes the body
	for {
		b, err := p.readLine()
		if err != nil {
			return "", fmt.Errorf("read DATA body: %w", err)
		}
		if atLineStart && string(b) == ".\r\n" {
			break
		}
		if len(body)+len(b) > MaxDataSize {
			return "", ErrDataTooLarge
		}
		body = append(body, b...)
		atLineStart = bytes.HasSuffix(b, []byte("\r\n"))
		p.s.record(p.rec, "C: "+strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), false)
	}
	p.s.mu.Lock()
	p.rec.transcript = append(p.rec.transcript, "C: .")
	p.rec.data = append(p.rec.data, body)
	p.s.mu.Unlock()
	return "", nil
}

// ErrNotBDAT means "! chunk" followed a line that is not a BDAT command.
var ErrNotBDAT = errors.New(`"! chunk" must follow a "BDAT <size> [LAST]" line`)

// readChunk reads the chunk announced by the last line received, which
// must be "BDAT <size>" or "BDAT <size> LAST". A LAST chunk completes a
// message, which [Server.Data] then returns.
func (p *player) readChunk() error {
	p.s.mu.Lock()
	var last string
	if n := len(p.rec.received); n > 0 {
		last = p.rec.received[n-1]
	}
	p.s.mu.Unlock()
	f := strings.Fields(last)
	if len(f) < 2 || len(f) > 3 || !strings.EqualFold(f[0], "BDAT") || len(f) == 3 && !strings.EqualFold(f[2], "LAST") {
		return fmt.Errorf("%w, got %q", ErrNotBDAT, last)
	}
	size, err := strconv.ParseUint(f[1], 10, 31)
	if err != nil {
		return fmt.Errorf("%w: bad size in %q", ErrNotBDAT, last)
	}
	if len(p.rec.chunks)+int(size) > MaxDataSize {
		return ErrDataTooLarge
	}
	buf := make([]byte, size)
	_ = p.conn.SetReadDeadline(time.Now().Add(p.s.cfg.readTimeout))
	if _, err := io.ReadFull(p.r, buf); err != nil {
		if isClosed(err) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("read BDAT chunk: %w", ErrUnexpectedEOF)
		}
		return fmt.Errorf("read BDAT chunk: %w", err)
	}
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	p.rec.transcript = append(p.rec.transcript, fmt.Sprintf("! chunk %d", size))
	p.rec.chunks = append(p.rec.chunks, buf...)
	if len(f) == 3 {
		p.rec.data = append(p.rec.data, p.rec.chunks)
		p.rec.chunks = nil
	}
	return nil
}

// startTLS runs the server side of a TLS handshake on the raw connection.
func (p *player) startTLS() error {
	tc := tls.Server(p.raw, p.s.tlsCfg)
	_ = tc.SetDeadline(time.Now().Add(p.s.cfg.readTimeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	_ = tc.SetDeadline(time.Time{})
	p.conn = tc
	p.r = bufio.NewReaderSize(tc, MaxLineLength)
	return nil
}

// hang stops answering. It keeps reading, without a deadline, only to record
// what the client sends and to notice when it hangs up; Close ends it too.
func (p *player) hang() {
	_ = p.conn.SetReadDeadline(time.Time{})
	for {
		b, err := p.r.ReadSlice('\n')
		if len(b) > 0 && err == nil {
			p.s.record(p.rec, "C: "+strings.TrimRight(string(b), "\r\n"), true)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// expectEOF checks that the client closes the connection without sending
// anything more.
func (p *player) expectEOF() (string, error) {
	_ = p.conn.SetReadDeadline(time.Now().Add(p.s.cfg.readTimeout))
	b, err := p.r.ReadSlice('\n')
	if len(b) > 0 {
		got := strings.TrimRight(string(b), "\r\n")
		p.s.record(p.rec, "C: "+got, true)
		return got, ErrNotEOF
	}
	if !isClosed(err) {
		return "", fmt.Errorf("read: %w", err)
	}
	p.s.record(p.rec, "! expect-eof", false)
	return "", nil
}

// isClosing reports whether Close has been called, so that errors caused by
// Close itself are reported as ErrServerClosed rather than as network errors.
func (s *Server) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// isClosed reports whether a read error means the client closed its side:
// an orderly EOF, or a reset when it closed with our data still unread.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}
