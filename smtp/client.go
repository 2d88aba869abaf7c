package smtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Default timeouts, following RFC 5321 §4.5.3.2: the standard's minimums are
// 5 minutes per command and 10 minutes for the reply to the final dot.
const (
	DefaultCommandTimeout = 5 * time.Minute
	DefaultDataTimeout    = 10 * time.Minute
)

// Client is one SMTP or LMTP conversation over a net.Conn. Create it with a
// Dialer, Dial, DialTLS, DialLMTP or NewClient. A Client is not safe for
// concurrent use.
type Client struct {
	// CommandTimeout bounds each command: sending it and reading its whole
	// reply. A server sending one byte at a time cannot extend it.
	CommandTimeout time.Duration
	// DataTimeout bounds the wait for the reply to the final dot.
	DataTimeout time.Duration
	// AllowInsecureAuth permits AUTH over an unencrypted connection,
	// loopback included. Off by default: passwords travel in the clear.
	AllowInsecureAuth bool
	// LocalName is the name sent with EHLO, HELO and LHLO.
	LocalName string
	// NoChunking makes SendMail and SendBatch use DATA even when the
	// server offers CHUNKING (RFC 3030 BDAT), for a server whose BDAT is
	// broken.
	NoChunking bool
	// BatchWindow is how many messages SendBatch keeps on the wire with
	// BDAT before reading the oldest one's replies; 0 means
	// DefaultBatchWindow, 1 sends one message per round trip. A larger
	// window hides more latency and puts more messages at risk of being
	// sent twice after a crash (see SendBatch).
	BatchWindow int

	conn       net.Conn
	r          *bufio.Reader
	w          *bufio.Writer
	serverName string
	tlsState   *tls.ConnectionState
	pins       [][32]byte
	debug      *transcript
	lmtp       bool

	greeting  Reply
	helloDone bool
	// helloAfterTLS records that STARTTLS completed and no hello has been
	// sent since: RFC 3207 §4.2 requires EHLO before anything else.
	helloAfterTLS bool
	esmtp         bool
	helloRep      Reply
	ext           map[string]string
	authMechs     []string

	// txUTF8 records whether the transaction in progress announced
	// SMTPUTF8; it is decided per message and reset by every MAIL.
	txUTF8 bool
	// txRcpts lists the recipients accepted in this transaction; LMTP
	// sends one reply per accepted recipient after the message.
	txRcpts []string

	closed bool
	broken error
}

// NewClient starts an SMTP conversation on an established connection: it
// reads the server's greeting. host is the server name used to verify its
// certificate on STARTTLS. If conn is a *tls.Conn the session counts as
// encrypted. On error the connection is closed.
func NewClient(conn net.Conn, host string) (*Client, error) {
	return newClient(context.Background(), conn, host, nil)
}

func newClient(ctx context.Context, conn net.Conn, host string, d *Dialer) (*Client, error) {
	c := &Client{
		CommandTimeout: DefaultCommandTimeout,
		DataTimeout:    DefaultDataTimeout,
		LocalName:      defaultLocalName(),
		conn:           conn,
		r:              bufio.NewReaderSize(conn, 4096),
		w:              bufio.NewWriterSize(conn, 32*1024),
		serverName:     host,
	}
	timeout := 30 * time.Second
	if d != nil {
		d.configure(c)
		if d.Timeout > 0 {
			timeout = d.Timeout
		}
	}
	if tc, ok := conn.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tlsState = &st
	}
	end, err := c.begin(ctx, "greeting")
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer end()
	c.setDeadline(ctx, timeout)
	rep, err := c.recv(ctx, "greeting")
	if err != nil {
		c.closeConn()
		return nil, err
	}
	c.greeting = rep
	if rep.Code != 220 {
		c.closeConn()
		return nil, replyError("greeting", rep)
	}
	return c, nil
}

func defaultLocalName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || validateLine(h) != nil || strings.ContainsAny(h, " \t<>") {
		return "localhost"
	}
	return h
}

// Greeting returns the server's 220 greeting.
func (c *Client) Greeting() Reply { return c.greeting }

// IsLMTP reports whether the client speaks LMTP (LHLO, per-recipient
// replies after DATA).
func (c *Client) IsLMTP() bool { return c.lmtp }

// TLSConnectionState returns the negotiated TLS state, and false when the
// connection is not encrypted.
func (c *Client) TLSConnectionState() (tls.ConnectionState, bool) {
	if c.tlsState == nil {
		return tls.ConnectionState{}, false
	}
	return *c.tlsState, true
}

// Conn returns the underlying connection (a *tls.Conn after STARTTLS).
func (c *Client) Conn() net.Conn { return c.conn }

// SetDebug directs a transcript of the conversation to w ("C: " lines sent,
// "S: " lines received), or turns it off when w is nil. AUTH payloads are
// replaced by <redacted>; message bodies are summarised unless showBody.
func (c *Client) SetDebug(w io.Writer, showBody bool) {
	if w == nil {
		c.debug = nil
		return
	}
	c.debug = &transcript{w: w, showBody: showBody}
}

// validateLine rejects what would let an argument smuggle a second command
// onto the wire: CR, LF, or NUL.
func validateLine(s string) error {
	if i := strings.IndexAny(s, "\r\n\x00"); i >= 0 {
		return fmt.Errorf("smtp: refusing to send %q: contains CR, LF or NUL at offset %d (command injection)", truncate(s, 60), i)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// usable reports why no command can be sent, if so.
func (c *Client) usable(op string) error {
	if c.closed {
		if c.broken != nil {
			return &DisconnectedError{Op: op, Err: fmt.Errorf("connection closed after an earlier error: %w", c.broken)}
		}
		return fmt.Errorf("smtp: %s: %w", op, ErrClosed)
	}
	return nil
}

// begin prepares an operation: it fails fast on a closed client and arms a
// watcher that unblocks any I/O when ctx is cancelled. The returned function
// must be called when the operation ends.
func (c *Client) begin(ctx context.Context, op string) (func(), error) {
	if err := c.usable(op); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, c.ctxError(op, err)
	}
	conn := c.conn
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past makes blocked reads and writes return
		// at once; the operation then reports ctx's error.
		conn.SetDeadline(time.Unix(1, 0))
	})
	return func() {
		stop()
		if !c.closed {
			c.conn.SetDeadline(time.Time{})
		}
	}, nil
}

// setDeadline arms an absolute deadline for the next step: the sooner of
// now+timeout and ctx's deadline. Absolute, so that a server trickling bytes
// cannot keep a command alive.
func (c *Client) setDeadline(ctx context.Context, timeout time.Duration) {
	var dl time.Time
	if timeout > 0 {
		dl = time.Now().Add(timeout)
	}
	if cd, ok := ctx.Deadline(); ok && (dl.IsZero() || cd.Before(dl)) {
		dl = cd
	}
	if ctx.Err() != nil {
		dl = time.Unix(1, 0)
	}
	c.conn.SetDeadline(dl)
}

func (c *Client) ctxError(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &TimeoutError{Op: op, Err: err}
	}
	return fmt.Errorf("smtp: %s: %w", op, err)
}

// fail turns an I/O or protocol failure into the typed error for op and
// closes the connection: after any of them the position of the next reply
// in the stream is unknown, so going on would pair replies with the wrong
// commands.
func (c *Client) fail(ctx context.Context, op string, err error) error {
	var out error
	var pe *ProtocolError
	switch {
	case ctx.Err() != nil:
		out = c.ctxError(op, ctx.Err())
	case errors.As(err, &pe):
		pe.Op = op
		out = pe
	case errors.Is(err, os.ErrDeadlineExceeded) || isNetTimeout(err):
		// The socket deadline may fire a moment before ctx's own timer:
		// report the context's deadline when that is what passed.
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			err = context.DeadlineExceeded
		}
		out = &TimeoutError{Op: op, Err: err}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		out = &DisconnectedError{Op: op, Err: errors.New("connection closed by server")}
	default:
		out = &DisconnectedError{Op: op, Err: err}
	}
	c.broken = out
	c.closeConn()
	return out
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// send queues one command line; shown is what the transcript displays.
func (c *Client) send(line, shown string) {
	c.debug.client(shown)
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
}

// recv reads one reply. A 421 reply means the server is closing the
// session (RFC 5321 §3.8): the client closes its side too.
func (c *Client) recv(ctx context.Context, op string) (Reply, error) {
	rep, err := readReply(c.r)
	if err != nil {
		return rep, c.fail(ctx, op, err)
	}
	c.debug.server(rep)
	if rep.Code == 421 {
		c.broken = &DisconnectedError{Op: op, Err: replyError(op, rep)}
		c.closeConn()
	}
	return rep, nil
}

// cmd sends one command and reads its reply under one deadline. Negative
// replies are returned, not turned into errors: callers decide.
func (c *Client) cmd(ctx context.Context, op, line string) (Reply, error) {
	return c.cmdShown(ctx, op, line, line)
}

func (c *Client) cmdShown(ctx context.Context, op, line, shown string) (Reply, error) {
	if err := c.helloFirst(ctx, op); err != nil {
		return Reply{}, err
	}
	end, err := c.begin(ctx, op)
	if err != nil {
		return Reply{}, err
	}
	defer end()
	c.setDeadline(ctx, c.CommandTimeout)
	c.send(line, shown)
	if err := c.w.Flush(); err != nil {
		return Reply{}, c.fail(ctx, op, err)
	}
	return c.recv(ctx, op)
}

func (c *Client) closeConn() {
	if !c.closed {
		c.closed = true
		c.conn.Close()
	}
}

// Close closes the connection without QUIT. It is safe to call more than
// once and after Quit.
func (c *Client) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.conn.Close()
}

// isHello reports whether verb greets the server (EHLO, HELO, LHLO).
func isHello(verb string) bool {
	return verb == "EHLO" || verb == "HELO" || verb == "LHLO"
}

// helloFirst sends EHLO (with the usual HELO fallback) before the command
// verb when STARTTLS completed and no hello followed it yet. RFC 3207 §4.2:
// the client must discard what it knew and greet the server again before
// anything else. Every command path goes through here, raw ones included,
// so DoCmd("NOOP") after StartTLS is safe too. A hello itself and QUIT,
// which ends the session anyway, are sent as they are.
func (c *Client) helloFirst(ctx context.Context, verb string) error {
	if !c.helloAfterTLS || isHello(verb) || verb == "QUIT" {
		return nil
	}
	return c.EhloOrHeloIfNeeded(ctx)
}

// Ehlo sends EHLO (LHLO for LMTP) and records the extensions the server
// advertises. A negative reply is returned as an *SMTPError together with
// the reply.
func (c *Client) Ehlo(ctx context.Context) (Reply, error) {
	verb := "EHLO"
	if c.lmtp {
		verb = "LHLO"
	}
	if err := validateLine(c.LocalName); err != nil {
		return Reply{}, err
	}
	rep, err := c.cmd(ctx, verb, verb+" "+c.LocalName)
	if err != nil {
		return rep, err
	}
	if rep.Code != 250 {
		return rep, replyError(verb, rep)
	}
	c.ext, c.authMechs = parseEhlo(rep.Lines)
	c.esmtp, c.helloDone, c.helloRep, c.helloAfterTLS = true, true, rep, false
	return rep, nil
}

// Helo sends HELO. The server then offers no extensions.
func (c *Client) Helo(ctx context.Context) (Reply, error) {
	if err := validateLine(c.LocalName); err != nil {
		return Reply{}, err
	}
	rep, err := c.cmd(ctx, "HELO", "HELO "+c.LocalName)
	if err != nil {
		return rep, err
	}
	if rep.Code != 250 {
		return rep, replyError("HELO", rep)
	}
	c.ext, c.authMechs = nil, nil
	c.esmtp, c.helloDone, c.helloRep, c.helloAfterTLS = false, true, rep, false
	return rep, nil
}

// EhloOrHeloIfNeeded sends EHLO, falling back to HELO when the server refuses
// EHLO, unless a greeting exchange already happened. If both are refused the
// error is a *HeloError.
func (c *Client) EhloOrHeloIfNeeded(ctx context.Context) error {
	if c.helloDone {
		return nil
	}
	_, err := c.Ehlo(ctx)
	if err == nil {
		return nil
	}
	var se *SMTPError
	if !errors.As(err, &se) || se.Code == 421 || c.lmtp {
		if se != nil {
			return &HeloError{Err: se}
		}
		return err
	}
	_, err = c.Helo(ctx)
	if errors.As(err, &se) {
		return &HeloError{Err: se}
	}
	return err
}

// HelloReply returns the reply to the last successful EHLO or HELO.
func (c *Client) HelloReply() Reply { return c.helloRep }

// IsESMTP reports whether the server accepted EHLO (or LHLO).
func (c *Client) IsESMTP() bool { return c.esmtp }

// HasExtension reports whether the server advertised the EHLO keyword name,
// case-insensitively. It is false before EHLO and after STARTTLS until the
// next EHLO.
func (c *Client) HasExtension(name string) bool {
	_, ok := c.ext[strings.ToUpper(name)]
	return ok
}

// Extension returns the parameters the server advertised with the EHLO
// keyword name ("" when it has none) and whether it was advertised at all.
func (c *Client) Extension(name string) (string, bool) {
	p, ok := c.ext[strings.ToUpper(name)]
	return p, ok
}

// Extensions returns a copy of every advertised keyword (upper case) with its
// parameters.
func (c *Client) Extensions() map[string]string {
	m := make(map[string]string, len(c.ext))
	for k, v := range c.ext {
		m[k] = v
	}
	return m
}

// AuthMechanisms returns the SASL mechanisms advertised with AUTH (and the
// old-style AUTH=), upper case, in advertised order.
func (c *Client) AuthMechanisms() []string { return append([]string(nil), c.authMechs...) }

// MaxMessageSize returns the SIZE limit the server advertised, and false when
// it advertised none or no limit.
func (c *Client) MaxMessageSize() (int64, bool) {
	p, ok := c.ext["SIZE"]
	if !ok {
		return 0, false
	}
	var n int64
	if _, err := fmt.Sscan(p, &n); err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// parseEhlo reads the keywords of an EHLO reply. The first line is the
// server's name. Keywords are upper-cased; an old-style "AUTH=LOGIN PLAIN"
// line is merged into AUTH, as smtplib does, since some servers advertise
// mechanisms only that way.
func parseEhlo(lines []string) (map[string]string, []string) {
	ext := make(map[string]string)
	var mechs []string
	seenMech := make(map[string]bool)
	addMechs := func(s string) {
		for _, m := range strings.Fields(s) {
			m = strings.ToUpper(m)
			if !seenMech[m] {
				seenMech[m] = true
				mechs = append(mechs, m)
			}
		}
	}
	for i, l := range lines {
		if i == 0 {
			continue
		}
		l = strings.TrimSpace(l)
		kw, params, _ := strings.Cut(l, " ")
		if len(kw) > 5 && strings.EqualFold(kw[:5], "AUTH=") {
			params = strings.TrimSpace(kw[5:] + " " + params)
			kw = "AUTH"
		}
		if !validKeyword(kw) {
			continue
		}
		kw = strings.ToUpper(kw)
		params = strings.TrimSpace(params)
		if kw == "AUTH" {
			addMechs(params)
			ext["AUTH"] = strings.Join(mechs, " ")
			continue
		}
		ext[kw] = params
	}
	return ext, mechs
}

// validKeyword follows RFC 5321's ehlo-keyword: (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
func validKeyword(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// DoCmd sends any command line (XCLIENT, ETRN, vendor extensions) and returns
// the server's reply, like smtplib's docmd. A negative reply is not an error:
// only I/O failures, malformed replies and CR/LF in line are. Raw commands do
// not update the client's state (a raw STARTTLS or DATA is the caller's
// responsibility), with one exception: after StartTLS the client sends EHLO
// before the first raw command unless that command is itself EHLO, HELO or
// LHLO (a raw hello answered with 250 counts as the new greeting).
func (c *Client) DoCmd(ctx context.Context, line string) (Reply, error) {
	if err := validateLine(line); err != nil {
		return Reply{}, err
	}
	verb := rawVerb(line)
	rep, err := c.cmdShown(ctx, verb, line, redactRaw(line))
	if err == nil && isHello(verb) && rep.Code == 250 {
		c.helloAfterTLS = false
	}
	return rep, err
}

// rawVerb returns the upper-cased first word of a raw command line.
func rawVerb(line string) string {
	verb, _, _ := strings.Cut(line, " ")
	return strings.ToUpper(verb)
}

// PutCmd sends a command line without reading a reply, like smtplib's
// putcmd. Pair it with GetReply. After StartTLS the client first sends EHLO
// (and reads its reply) unless line is itself a hello, as DoCmd does; a raw
// hello sent here counts as the new greeting, since its reply is the
// caller's to read.
func (c *Client) PutCmd(ctx context.Context, line string) error {
	if err := validateLine(line); err != nil {
		return err
	}
	op := rawVerb(line)
	if err := c.helloFirst(ctx, op); err != nil {
		return err
	}
	if isHello(op) {
		c.helloAfterTLS = false
	}
	end, err := c.begin(ctx, op)
	if err != nil {
		return err
	}
	defer end()
	c.setDeadline(ctx, c.CommandTimeout)
	c.send(line, redactRaw(line))
	if err := c.w.Flush(); err != nil {
		return c.fail(ctx, op, err)
	}
	return nil
}

// GetReply reads one reply, like smtplib's getreply.
func (c *Client) GetReply(ctx context.Context) (Reply, error) {
	end, err := c.begin(ctx, "reply")
	if err != nil {
		return Reply{}, err
	}
	defer end()
	c.setDeadline(ctx, c.CommandTimeout)
	return c.recv(ctx, "reply")
}

// redactRaw hides credentials in raw AUTH commands sent through DoCmd.
func redactRaw(line string) string {
	verb, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.EqualFold(verb, "AUTH") {
		return line
	}
	mech, _, hasIR := strings.Cut(rest, " ")
	if hasIR {
		return verb + " " + mech + " " + redacted
	}
	return line
}

// simple sends a command whose negative reply is an *SMTPError.
func (c *Client) simple(ctx context.Context, op, line string) (Reply, error) {
	rep, err := c.cmd(ctx, op, line)
	if err != nil {
		return rep, err
	}
	if rep.Code >= 400 {
		return rep, replyError(op, rep)
	}
	return rep, nil
}

// Verify sends VRFY addr. Many servers answer 252 (cannot verify, will
// accept) to avoid leaking which users exist. If the server rejects the
// command, the error is an *SMTPError.
func (c *Client) Verify(ctx context.Context, addr string) (Reply, error) {
	if err := validateLine(addr); err != nil {
		return Reply{}, err
	}
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		return Reply{}, err
	}
	return c.simple(ctx, "VRFY", "VRFY "+addr)
}

// Expn sends EXPN list. If the server rejects the command, the error is an
// *SMTPError.
func (c *Client) Expn(ctx context.Context, list string) (Reply, error) {
	if err := validateLine(list); err != nil {
		return Reply{}, err
	}
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		return Reply{}, err
	}
	return c.simple(ctx, "EXPN", "EXPN "+list)
}

// Help sends HELP, with an optional topic. If the server rejects the
// command, the error is an *SMTPError.
func (c *Client) Help(ctx context.Context, topic string) (Reply, error) {
	if err := validateLine(topic); err != nil {
		return Reply{}, err
	}
	line := "HELP"
	if topic != "" {
		line += " " + topic
	}
	return c.simple(ctx, "HELP", line)
}

// Noop sends NOOP, useful to check that the session is alive. If the server
// rejects the command, the error is an *SMTPError.
func (c *Client) Noop(ctx context.Context) (Reply, error) {
	return c.simple(ctx, "NOOP", "NOOP")
}

// Reset sends RSET, aborting the current transaction. If the server rejects
// the command, the error is an *SMTPError.
func (c *Client) Reset(ctx context.Context) (Reply, error) {
	c.txUTF8 = false
	return c.simple(ctx, "RSET", "RSET")
}

// Quit sends QUIT and closes the connection, whatever the reply.
func (c *Client) Quit(ctx context.Context) (Reply, error) {
	rep, err := c.cmd(ctx, "QUIT", "QUIT")
	c.Close()
	if err != nil {
		return rep, err
	}
	if rep.Code >= 400 {
		return rep, replyError("QUIT", rep)
	}
	return rep, nil
}
