package smtp

import (
	"bufio"
	"bytes"
	"context"
	"io"
)

// dotWriter encodes a message body for DATA (RFC 5321 §4.5.2): a "." at the
// start of a line is doubled, and bare CR and bare LF become CRLF, since a
// lone LF is not a line end on the wire and some servers reject it (or, worse,
// treat "\n.\n" as the end of data: SMTP smuggling). It copies clean runs of
// the input in one write, so a large, well-formed body costs little more
// than writing it.
type dotWriter struct {
	w         *bufio.Writer
	lineStart bool // the next byte starts a line
	pendingCR bool // the last byte written was a CR whose LF may follow
	n         int64
	lines     int64
}

func newDotWriter(w *bufio.Writer) *dotWriter {
	return &dotWriter{w: w, lineStart: true}
}

var (
	cr   = []byte("\r")
	crlf = []byte("\r\n")
	dot  = []byte(".")
	lf   = []byte("\n")
)

func (d *dotWriter) Write(p []byte) (int, error) {
	total := len(p)
	if d.pendingCR && len(p) > 0 {
		// The previous Write ended in CR, already sent; complete the
		// CRLF, swallowing the LF if it is here.
		d.pendingCR = false
		if _, err := d.w.Write(lf); err != nil {
			return 0, err
		}
		if p[0] == '\n' {
			p = p[1:]
		}
		d.lineStart = true
		d.lines++
	}
	if d.lineStart && len(p) > 0 {
		// Fast path: whole clean CRLF lines go out as they are.
		n, lines := cleanPrefix(p)
		if n > 0 {
			if _, err := d.w.Write(p[:n]); err != nil {
				return 0, err
			}
			d.lines += lines
			p = p[n:]
		}
	}
	start, i := 0, 0
	for i < len(p) {
		if d.lineStart {
			d.lineStart = false
			if p[i] == '.' {
				if err := d.flushRun(p[start:i], dot); err != nil {
					return 0, err
				}
				start = i
			}
		}
		j := indexLineBreak(p[i:])
		if j < 0 {
			break
		}
		j += i
		d.lineStart = true
		d.lines++
		if p[j] == '\n' { // bare LF
			if err := d.flushRun(p[start:j], crlf); err != nil {
				return 0, err
			}
			start, i = j+1, j+1
			continue
		}
		if j+1 == len(p) { // CR at the end: its LF may come next Write
			d.lineStart = false
			d.lines--
			d.pendingCR = true
			i = len(p)
			break
		}
		if p[j+1] == '\n' { // CRLF: part of the clean run
			i = j + 2
			continue
		}
		// Bare CR.
		if err := d.flushRun(p[start:j+1], lf); err != nil {
			return 0, err
		}
		start, i = j+1, j+1
	}
	if _, err := d.w.Write(p[start:]); err != nil {
		return 0, err
	}
	d.n += int64(total)
	return total, nil
}

// cleanPrefix returns the length of the longest prefix of p (which starts a
// line) made of whole CRLF-terminated lines needing no encoding: no leading
// dot, no bare CR or LF. It costs one IndexByte per line plus one vectorised
// Count, where the general loop costs two IndexBytes per line.
func cleanPrefix(p []byte) (n int, lines int64) {
	for n < len(p) && p[n] != '.' {
		j := bytes.IndexByte(p[n:], '\n')
		if j < 1 || p[n+j-1] != '\r' {
			break
		}
		n += j + 1
		lines++
	}
	// Any CR other than those ending lines is bare: leave the prefix to
	// the general loop.
	if n == 0 || bytes.Count(p[:n], cr) != int(lines) {
		return 0, 0
	}
	return n, lines
}

func (d *dotWriter) flushRun(run, extra []byte) error {
	if _, err := d.w.Write(run); err != nil {
		return err
	}
	_, err := d.w.Write(extra)
	return err
}

// indexLineBreak returns the index of the first CR or LF in p, or -1. It
// uses two vectorised scans instead of a byte loop.
func indexLineBreak(p []byte) int {
	n := bytes.IndexByte(p, '\n')
	if n < 0 {
		return bytes.IndexByte(p, '\r')
	}
	if r := bytes.IndexByte(p[:n], '\r'); r >= 0 {
		return r
	}
	return n
}

// terminate ends the body: a line end if the body lacks one, then ".".
func (d *dotWriter) terminate() error {
	var err error
	switch {
	case d.pendingCR:
		d.pendingCR = false
		_, err = d.w.WriteString("\n.\r\n")
		d.lines++
	case d.lineStart:
		_, err = d.w.WriteString(".\r\n")
	default:
		_, err = d.w.WriteString("\r\n.\r\n")
		d.lines++
	}
	return err
}

// wireSize returns the size of msg as dotWriter sends it, for SIZE=
// (RFC 1870 §3: CRLF line ends included, the dot-stuffing and the final
// "." line not): every bare CR or bare LF becomes CRLF, one byte more, and a
// body whose last line lacks its line end gets CRLF. It counts with three
// vectorised scans and no copy.
func wireSize(msg []byte) int {
	n := len(msg)
	if n == 0 {
		return 0
	}
	lfs, crs := bytes.Count(msg, lf), bytes.Count(msg, cr)
	if lfs+crs > 0 {
		pairs := bytes.Count(msg, crlf)
		n += (lfs - pairs) + (crs - pairs)
	}
	if last := msg[len(msg)-1]; last != '\n' && last != '\r' {
		n += 2
	}
	return n
}

// DataWriter streams a message body after DATA. Close sends the final dot
// and reads the server's verdict; the message is accepted only if Close
// returns nil.
type DataWriter struct {
	c      *Client
	ctx    context.Context
	dw     *dotWriter
	rcpts  []string // LMTP: one reply per accepted recipient
	end    func()
	err    error
	closed bool
	// Refusals holds LMTP per-recipient refusals after Close.
	Refusals Refusals
	// Reply is the server's reply to the final dot after a successful
	// Close ("250 2.0.0 Ok: queued as 4Zx..."); for LMTP, the last
	// positive one. It is the zero Reply before Close or when Close fails.
	Reply Reply
}

// Write encodes p (dot-stuffing, CRLF normalisation) and sends it. A
// failure here means the message was not delivered. p is not retained.
func (w *DataWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	w.c.setDeadline(w.ctx, w.c.CommandTimeout)
	n, err := w.dw.Write(p)
	if err != nil {
		w.err = w.c.fail(w.ctx, "DATA", err)
		w.end()
		return n, w.err
	}
	return n, nil
}

// Close sends the final dot and reads the server's reply (LMTP: one reply
// per accepted recipient). Errors: *DataError when the server refuses the
// message; *UnknownOutcomeError when the connection fails after the dot was
// sent, so the message may have been delivered; for LMTP a
// *RecipientsRefusedError when every recipient refused it (partial
// refusals are in w.Refusals).
func (w *DataWriter) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	defer w.end()
	w.Reply, w.err = w.c.finishData(w.ctx, w.dw, w.rcpts, &w.Refusals)
	return w.err
}

// Data sends DATA and returns a writer for the message body; see
// DataWriter. If the server rejects DATA the error is a *DataError.
func (c *Client) Data(ctx context.Context) (*DataWriter, error) {
	if err := c.helloFirst(ctx, "DATA"); err != nil {
		return nil, err
	}
	end, err := c.begin(ctx, "DATA")
	if err != nil {
		return nil, err
	}
	c.setDeadline(ctx, c.CommandTimeout)
	c.send("DATA", "DATA")
	if err := c.w.Flush(); err != nil {
		end()
		return nil, c.fail(ctx, "DATA", err)
	}
	rep, err := c.recv(ctx, "DATA")
	if err != nil {
		end()
		return nil, err
	}
	if rep.Code != 354 {
		end()
		return nil, &DataError{Err: replyError("DATA", rep)}
	}
	return &DataWriter{c: c, ctx: ctx, dw: newDotWriter(c.w), rcpts: c.txRcpts, end: end}, nil
}

// finishData writes the terminating dot and reads the verdict. Up to the
// moment the last byte of the dot line leaves the buffer, a failure means
// "not delivered"; afterwards the outcome is unknown.
func (c *Client) finishData(ctx context.Context, dw *dotWriter, rcpts []string, refusals *Refusals) (Reply, error) {
	c.setDeadline(ctx, c.CommandTimeout)
	if err := dw.terminate(); err != nil {
		return Reply{}, c.fail(ctx, "DATA", err)
	}
	if err := c.w.Flush(); err != nil {
		// bufio keeps what it could not write: if any byte of the dot
		// line is still here, the server cannot have seen the end of
		// the message.
		failed := c.fail(ctx, "DATA", err)
		if c.w.Buffered() > 0 {
			return Reply{}, failed
		}
		return Reply{}, &UnknownOutcomeError{Err: failed}
	}
	c.debug.body(dw.n, dw.lines, nil)
	c.setDeadline(ctx, c.DataTimeout)
	if !c.lmtp {
		rep, err := c.recv(ctx, ".")
		if err != nil {
			return Reply{}, &UnknownOutcomeError{Err: err}
		}
		if rep.Code != 250 {
			return Reply{}, &DataError{Err: replyError(".", rep)}
		}
		return rep, nil
	}
	// LMTP (RFC 2033 §4.2): one reply per accepted recipient, in order.
	failed := make(Refusals)
	var last Reply
	for _, rcpt := range rcpts {
		rep, err := c.recv(ctx, ".")
		if err != nil {
			return Reply{}, &UnknownOutcomeError{Err: err}
		}
		if rep.Code != 250 {
			failed[rcpt] = replyError(".", rep)
		} else {
			last = rep
		}
	}
	if len(failed) > 0 {
		*refusals = failed
	}
	if len(rcpts) > 0 && len(failed) == len(rcpts) {
		return Reply{}, &RecipientsRefusedError{Recipients: failed}
	}
	return last, nil
}

var _ io.WriteCloser = (*DataWriter)(nil)
