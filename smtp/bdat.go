package smtp

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
)

// CHUNKING (RFC 3030): a message goes as BDAT commands, each followed by
// exactly as many bytes as it announces. Nothing in the body is special to
// the server, so there is no dot-stuffing and no reply to wait for before
// the body: MAIL, RCPT, "BDAT <n> LAST" and the body leave in one write and
// all their replies come back in one read.

const (
	// DefaultChunkSize is the largest BDAT chunk SendMail and SendBatch
	// send unless SendOptions.ChunkSize says otherwise. A message up to
	// this size is one "BDAT <n> LAST".
	DefaultChunkSize = 1 << 20
	// DefaultBatchWindow is how many messages SendBatch keeps in flight
	// with BDAT unless Client.BatchWindow says otherwise.
	DefaultBatchWindow = 16
	// maxPendingReplies bounds the replies the client leaves unread
	// while it writes: the server blocks once its replies fill the
	// socket buffers, and would stop reading what the client writes.
	maxPendingReplies = 256
	// maxBinaryLine is the longest line (CRLF not counted) 7bit and
	// 8BITMIME allow (RFC 5321 §4.5.3.1.6); a longer one needs
	// BINARYMIME.
	maxBinaryLine = 998
)

// bodyMode says how a message body goes on the wire.
type bodyMode int

const (
	// bodyData: after DATA, dot-stuffed, line ends made CRLF.
	bodyData bodyMode = iota
	// bodyChunked: in BDAT chunks, line ends made CRLF as with DATA, so
	// the server receives the same message either way.
	bodyChunked
	// bodyBinary: in BDAT chunks with BODY=BINARYMIME, byte for byte.
	bodyBinary
)

// chunkingOn reports whether messages go with BDAT on this session by
// default: the server offers CHUNKING and the client did not turn it off.
// The caller has checked PIPELINING.
func (c *Client) chunkingOn() bool {
	return !c.NoChunking && c.HasExtension("CHUNKING")
}

// chunkMode decides how one message goes in a chunked batch: byte for
// byte with BINARYMIME when the caller declared BODY=BINARYMIME, or when
// the server offers BINARYMIME, the caller declared no BODY and the body
// cannot go as 8BITMIME (a NUL byte, or a line over 998 octets).
func (c *Client) chunkMode(msg []byte, o *SendOptions) bodyMode {
	for _, p := range o.MailParams {
		if isBinaryMIMEParam(p) {
			return bodyBinary
		}
	}
	if c.HasExtension("BINARYMIME") && !hasParam(o.MailParams, "BODY") && needsBinary(msg) {
		return bodyBinary
	}
	return bodyChunked
}

func isBinaryMIMEParam(p string) bool {
	kw, val, _ := strings.Cut(p, "=")
	return strings.EqualFold(kw, "BODY") && strings.EqualFold(val, "BINARYMIME")
}

// needsBinary reports whether msg cannot be sent as 7bit or 8BITMIME: it
// holds a NUL byte or a line longer than 998 octets.
func needsBinary(msg []byte) bool {
	if bytes.IndexByte(msg, 0) >= 0 {
		return true
	}
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		line := msg
		if i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) > maxBinaryLine {
			return true
		}
	}
	return false
}

// crlfSize returns the size of seg once every bare CR and bare LF is made
// CRLF. seg never ends between the CR and the LF of a pair (see
// chunkEnd).
func crlfSize(seg []byte) int {
	lfs, crs := bytes.Count(seg, lf), bytes.Count(seg, cr)
	if lfs+crs == 0 {
		return len(seg)
	}
	pairs := bytes.Count(seg, crlf)
	return len(seg) + (lfs - pairs) + (crs - pairs)
}

// needsTail reports whether a message needs CRLF added at its end, as the
// DATA path adds it: its last line has no line end.
func needsTail(msg []byte) bool {
	if len(msg) == 0 {
		return false
	}
	last := msg[len(msg)-1]
	return last != '\n' && last != '\r'
}

// chunkEnd returns where the chunk starting at start ends: size bytes on,
// or one more so that a CRLF pair is never split (each chunk is then
// normalised on its own).
func chunkEnd(msg []byte, start, size int, mode bodyMode) int {
	end := min(start+size, len(msg))
	if mode != bodyBinary && end < len(msg) && msg[end-1] == '\r' && msg[end] == '\n' {
		end++
	}
	return end
}

// chunkCount returns how many BDAT commands msg takes.
func chunkCount(msg []byte, size int, mode bodyMode) int {
	if len(msg) == 0 {
		return 1
	}
	n := 0
	for start := 0; start < len(msg); n++ {
		start = chunkEnd(msg, start, size, mode)
	}
	return n
}

// bdatTx is one message on the wire in a chunked batch.
type bdatTx struct {
	i      int      // index in the batch
	from   string   //
	rcpts  []string // in RCPT order
	rset   bool     // the transaction starts with RSET
	chunks int      // BDAT commands sent
	// lastEnd is the writer position (see chunker.queued) just after
	// the last byte of the LAST chunk: once the connection has taken
	// that byte, the server may deliver the message.
	lastEnd int64
	replies int // replies expected
}

// chunker runs a chunked batch: it writes transactions while fewer than
// the window are in flight and reads the oldest one's replies otherwise.
type chunker struct {
	c      *Client
	ctx    context.Context
	res    []BatchResult
	report func(upTo int)
	window int
	queued int64 // bytes c.w took since the batch began
	// werr records that a write failed: the connection is broken, and
	// nothing written from then on reached the server.
	werr    bool
	flight  []bdatTx
	pending int // replies expected for flight
	// dirty means a failed transaction may have been left open on the
	// server: the next one must start with RSET.
	dirty bool
	// broken is set once the connection failed; nothing more is sent.
	broken error
}

// batchChunked is SendBatch with PIPELINING and CHUNKING.
func (c *Client) batchChunked(ctx context.Context, msgs []Outgoing, res []BatchResult, report func(upTo int)) []BatchResult {
	e := &chunker{c: c, ctx: ctx, res: res, report: report, window: c.BatchWindow}
	if e.window <= 0 {
		e.window = DefaultBatchWindow
	}
	defer func() {
		c.txUTF8 = false
		c.txRcpts = c.txRcpts[:0]
	}()
	for i, m := range msgs {
		if e.broken != nil {
			e.abort(i)
			return res
		}
		opts := m.Opts
		if opts == nil {
			opts = &SendOptions{}
		}
		if len(m.To) == 0 {
			res[i].Err = errors.New("smtp: SendBatch: no recipients")
			continue
		}
		from, to, err := checkEnvelope(m.From, m.To, opts)
		if err != nil {
			res[i].Err = err
			continue
		}
		if opts.NoChunking {
			// DATA for this one: the transactions in flight first, so
			// the replies stay in order.
			if !e.drain(0) {
				e.abort(i)
				return res
			}
			if e.dirty {
				e.rset()
			}
			if c.closed {
				e.broken = c.usable("MAIL")
				e.abort(i)
				return res
			}
			sub := make([]BatchResult, 1)
			c.batchData(ctx, []Outgoing{{From: from, To: to, Data: m.Data, Opts: opts}}, sub, func(int) {})
			res[i] = sub[0]
			report(i + 1)
			if c.closed {
				e.broken = c.usable("MAIL")
			}
			continue
		}
		mode := c.chunkMode(m.Data, opts)
		mailParams, rcptParams, err := c.envelope(from, to, m.Data, opts, mode)
		if err != nil {
			res[i].Err = err
			continue
		}
		size := opts.ChunkSize
		if size <= 0 {
			size = DefaultChunkSize
		}
		chunks := chunkCount(m.Data, size, mode)
		need := 2 + len(to) + chunks
		if len(e.flight) >= e.window {
			if !e.drain(e.window / 2) {
				e.abort(i)
				return res
			}
		}
		if len(e.flight) > 0 && e.pending+need > maxPendingReplies {
			if !e.drain(0) {
				e.abort(i)
				return res
			}
		}
		e.write(i, from, to, m.Data, mailParams, rcptParams, mode, size, chunks)
		if e.werr && !e.drain(0) {
			e.abort(i + 1)
			return res
		}
	}
	if e.broken == nil {
		e.drain(0)
	}
	if e.broken != nil {
		e.abort(len(msgs))
		return res
	}
	if e.dirty {
		e.rset()
	}
	report(len(res))
	return res
}

// rset ends a failed transaction so the session can carry the next one.
func (e *chunker) rset() {
	e.dirty = false
	if !e.c.closed {
		e.c.simple(e.ctx, "RSET", "RSET")
	}
}

func (e *chunker) line(s string) {
	e.c.debug.client(s)
	e.putString(s)
	e.putString("\r\n")
}

func (e *chunker) putString(s string) {
	n, err := e.c.w.WriteString(s)
	e.queued += int64(n)
	e.werr = e.werr || err != nil
}

func (e *chunker) put(b []byte) {
	n, err := e.c.w.Write(b)
	e.queued += int64(n)
	e.werr = e.werr || err != nil
}

// putCRLF writes seg with every bare CR and bare LF made CRLF, in runs.
func (e *chunker) putCRLF(seg []byte) {
	start, i := 0, 0
	for i < len(seg) {
		j := indexLineBreak(seg[i:])
		if j < 0 {
			break
		}
		j += i
		if seg[j] == '\r' && j+1 < len(seg) && seg[j+1] == '\n' {
			i = j + 2
			continue
		}
		e.put(seg[start:j])
		e.put(crlf)
		start, i = j+1, j+1
	}
	e.put(seg[start:])
}

// write queues one transaction: RSET when needed, MAIL, RCPTs, and the
// body in BDAT chunks. Large chunks go straight to the connection from
// msg; nothing is copied. A failed write shows in the next flush.
func (e *chunker) write(i int, from string, to []string, msg []byte, mailParams []string, rcptParams [][]string, mode bodyMode, size, chunks int) {
	c := e.c
	c.setDeadline(e.ctx, c.CommandTimeout)
	tx := bdatTx{i: i, from: from, rcpts: to, chunks: chunks}
	if e.dirty || len(e.flight) > 0 {
		// The previous transaction's outcome is not known yet (or it
		// failed): if it failed with its MAIL accepted, some servers
		// keep it open, and this MAIL would be refused as nested while
		// its RCPTs and body joined the old one.
		e.line("RSET")
		tx.rset = true
		e.dirty = false
	}
	e.line(mailLine(from, mailParams))
	for j, r := range to {
		e.line(rcptLine(r, rcptParams[j]))
	}
	tail := mode != bodyBinary && needsTail(msg)
	if len(msg) == 0 {
		e.line("BDAT 0 LAST")
		c.debug.chunk(0, nil)
	}
	for start := 0; start < len(msg); {
		end := chunkEnd(msg, start, size, mode)
		seg := msg[start:end]
		last := end == len(msg)
		n := len(seg)
		if mode != bodyBinary {
			n = crlfSize(seg)
		}
		clean := n == len(seg)
		if last && tail {
			n += 2
		}
		cmd := "BDAT " + strconv.Itoa(n)
		if last {
			cmd += " LAST"
		}
		e.line(cmd)
		if clean {
			e.put(seg)
		} else {
			e.putCRLF(seg)
		}
		if last && tail {
			e.put(crlf)
		}
		c.debug.chunk(n, seg)
		start = end
	}
	tx.lastEnd = e.queued
	if e.werr {
		// Part of the message, at least, never left.
		tx.lastEnd = math.MaxInt64
	}
	tx.replies = 2 + len(to) + chunks
	if tx.rset {
		tx.replies++
	}
	if c.lmtp {
		tx.replies += len(to) - 1 // one per recipient after LAST
	}
	e.flight = append(e.flight, tx)
	e.pending += tx.replies
}

// drain flushes what is queued and reads replies until at most keep
// transactions are in flight. It returns false when the connection failed
// (e.broken is set).
func (e *chunker) drain(keep int) bool {
	if len(e.flight) == 0 && e.c.w.Buffered() == 0 {
		return true
	}
	if err := e.c.w.Flush(); err != nil {
		e.broken = e.c.fail(e.ctx, "BDAT", err)
		return false
	}
	for len(e.flight) > keep {
		tx := e.flight[0]
		e.flight = e.flight[1:]
		e.pending -= tx.replies
		if err := e.resolve(tx); err != nil {
			e.broken = err
			e.report(tx.i + 1)
			return false
		}
		e.report(tx.i + 1)
	}
	return true
}

// abort settles the batch after a connection failure: a message in flight
// whose LAST chunk the connection took may have been delivered; every
// other unsettled message, from index from on included, was not.
func (e *chunker) abort(from int) {
	sent := e.queued - int64(e.c.w.Buffered())
	for _, tx := range e.flight {
		r := &e.res[tx.i]
		if r.Err != nil || r.Refused != nil || r.Reply.Code != 0 {
			continue
		}
		if tx.lastEnd <= sent && !e.closedByServer() {
			r.Err = &UnknownOutcomeError{Err: e.broken}
		} else {
			r.Err = e.broken
		}
	}
	e.flight = nil
	for j := from; j < len(e.res); j++ {
		r := &e.res[j]
		if r.Err == nil && r.Refused == nil && r.Reply.Code == 0 {
			r.Err = e.broken
		}
	}
}

// closedByServer reports whether the session ended with a 421 reply: the
// server then processed nothing after the command it answered so.
func (e *chunker) closedByServer() bool {
	var de *DisconnectedError
	var se *SMTPError
	return errors.As(e.broken, &de) && errors.As(de.Err, &se) && se.Code == 421
}

// resolve reads one transaction's replies and records its result. It
// returns an error when the connection failed or the server closed it.
func (e *chunker) resolve(tx bdatTx) error {
	c, ctx := e.c, e.ctx
	r := &e.res[tx.i]
	var failure error
	var refused Refusals
	var accepted []string
	// get reads one reply; on a failed read the message may have been
	// delivered unless a refusal already settled it.
	get := func(op string) (Reply, error) {
		rep, err := c.recv(ctx, op)
		if err != nil {
			if failure != nil {
				r.Err = failure
			} else {
				r.Err = &UnknownOutcomeError{Err: err}
			}
			return rep, err
		}
		return rep, nil
	}
	// closing handles a 421: the server ends the session and processed
	// nothing of this transaction after the command it refused.
	closing := func(op string, rep Reply) error {
		if failure == nil {
			failure = &DataError{Err: replyError(op, rep)}
			if op == "MAIL" {
				failure = &SenderRefusedError{Sender: tx.from, Err: replyError(op, rep)}
			}
		}
		r.Err = failure
		return c.broken
	}
	c.setDeadline(ctx, c.CommandTimeout)
	if tx.rset {
		rep, err := get("RSET")
		if err != nil {
			return err
		}
		if rep.Code == 421 {
			r.Err = c.broken
			return c.broken
		}
	}
	rep, err := get("MAIL")
	if err != nil {
		return err
	}
	if rep.Code != 250 {
		failure = &SenderRefusedError{Sender: tx.from, Err: replyError("MAIL", rep)}
		if rep.Code == 421 {
			return closing("MAIL", rep)
		}
	}
	for _, rcpt := range tx.rcpts {
		rep, err := get("RCPT")
		if err != nil {
			return err
		}
		if rep.Code == 421 {
			return closing("RCPT", rep)
		}
		if rep.Code == 250 || rep.Code == 251 {
			accepted = append(accepted, rcpt)
			continue
		}
		if refused == nil {
			refused = make(Refusals)
		}
		refused[rcpt] = replyError("RCPT", rep)
	}
	if failure == nil && len(accepted) == 0 {
		// The server refuses the BDATs too; their replies are read
		// and dropped below.
		failure = &RecipientsRefusedError{Recipients: refused}
	}
	var final Reply
	for k := 0; k < tx.chunks; k++ {
		last := k == tx.chunks-1
		if last {
			c.setDeadline(ctx, c.DataTimeout)
		} else {
			c.setDeadline(ctx, c.CommandTimeout)
		}
		// The reply to BDAT LAST is the verdict on the message, as the
		// reply to DATA's final dot is: its errors name the command "."
		// either way, so callers need not know which one was used.
		op := "BDAT"
		if last {
			op = "."
		}
		if last && c.lmtp && failure == nil {
			// LMTP (RFC 2033 §4.2, RFC 3030 §4.2): after BDAT LAST,
			// one reply per accepted recipient, in order.
			failed := 0
			for _, rcpt := range accepted {
				rep, err := get(op)
				if err != nil {
					return err
				}
				if rep.Code == 421 {
					return closing(op, rep)
				}
				if rep.Code != 250 {
					if refused == nil {
						refused = make(Refusals)
					}
					refused[rcpt] = replyError(op, rep)
					failed++
				} else {
					final = rep
				}
			}
			if failed == len(accepted) {
				failure = &RecipientsRefusedError{Recipients: refused}
			}
			break
		}
		rep, err := get(op)
		if err != nil {
			return err
		}
		if rep.Code == 421 {
			return closing(op, rep)
		}
		if failure == nil && rep.Code != 250 {
			failure = &DataError{Err: replyError(op, rep)}
		}
		if last {
			final = rep
		}
	}
	if failure != nil {
		r.Err = failure
		// Only the last transaction written can be left open: every
		// later one started with RSET.
		if len(e.flight) == 0 {
			e.dirty = true
		}
		return nil
	}
	r.Refused, r.Reply = refused, final
	return nil
}
