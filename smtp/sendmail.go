package smtp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// paramExtension maps a MAIL or RCPT parameter keyword to the EHLO keyword
// that must be advertised before it may be sent. A keyword missing here
// needs an extension of its own name (PRDR, REQUIRETLS, MT-PRIORITY, ...).
var paramExtension = map[string]string{
	"SIZE":      "SIZE",
	"BODY":      "8BITMIME",
	"SMTPUTF8":  "SMTPUTF8",
	"RET":       "DSN",
	"ENVID":     "DSN",
	"NOTIFY":    "DSN",
	"ORCPT":     "DSN",
	"AUTH":      "AUTH",
	"HOLDFOR":   "FUTURERELEASE",
	"HOLDUNTIL": "FUTURERELEASE",
	"BY":        "DELIVERBY",
}

// checkParams validates MAIL/RCPT parameters: syntax (RFC 5321 §4.1.2
// esmtp-param), and that the server advertised what each one needs, so that
// nothing is sent blindly after a HELO fallback or to a server without the
// extension.
func (c *Client) checkParams(cmd string, params []string) error {
	for _, p := range params {
		if err := validateLine(p); err != nil {
			return err
		}
		kw, val, hasVal := strings.Cut(p, "=")
		if !validKeyword(kw) || strings.ContainsAny(val, " \t=") || hasVal && val == "" {
			return fmt.Errorf("smtp: %s: malformed parameter %q (want KEYWORD or KEYWORD=value, no spaces)", cmd, p)
		}
		for i := 0; i < len(val); i++ {
			if val[i] < 33 || val[i] > 126 {
				return fmt.Errorf("smtp: %s: parameter %q has a character outside printable ASCII; xtext-encode it", cmd, p)
			}
		}
		kw = strings.ToUpper(kw)
		ext, ok := paramExtension[kw]
		if !ok {
			ext = kw
		}
		if kw == "BODY" && strings.EqualFold(val, "BINARYMIME") {
			ext = "BINARYMIME"
		}
		if !c.HasExtension(ext) {
			why := "the server did not advertise it"
			if !c.esmtp {
				why = "the session fell back to HELO, so no extension is available"
			}
			return &NotSupportedError{Extension: ext, Msg: fmt.Sprintf("%s parameter %s needs %s, but %s", cmd, kw, ext, why)}
		}
	}
	return nil
}

// ErrBinaryMIME is returned for a transaction declared BODY=BINARYMIME that
// would end with DATA: RFC 3030 §3 requires such a message to be sent with
// BDAT, which SendMail and SendBatch use only when the server offers
// CHUNKING and PIPELINING and chunking is not turned off (and which Mail,
// the step-by-step path that ends with Data, never uses). Nothing was sent
// for the transaction.
var ErrBinaryMIME = errors.New("smtp: BODY=BINARYMIME needs BDAT (RFC 3030 §3), and this transaction would end with DATA " +
	"(the server lacks CHUNKING or PIPELINING, chunking is off, or the message is sent step by step); " +
	"send the message as 7bit or BODY=8BITMIME, with binary parts base64-encoded")

// refuseWithDATA is the one check of what a message sent with DATA cannot
// declare, made on the MAIL parameters before anything is sent. It applies
// only to transactions that end with DATA.
func refuseWithDATA(mailParams []string) error {
	for _, p := range mailParams {
		kw, val, _ := strings.Cut(p, "=")
		if strings.EqualFold(kw, "BODY") && strings.EqualFold(val, "BINARYMIME") {
			return ErrBinaryMIME
		}
	}
	return nil
}

// isASCII reports whether s needs no SMTPUTF8.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// has8bit reports whether a body has bytes above 127, eight bytes at a time:
// on a large message a byte loop would cost as much as sending it.
func has8bit(b []byte) bool {
	const high = 0x8080808080808080
	for len(b) >= 64 {
		_ = b[63] // one bounds check for the eight loads below
		x := binary.LittleEndian.Uint64(b[0:]) | binary.LittleEndian.Uint64(b[8:]) |
			binary.LittleEndian.Uint64(b[16:]) | binary.LittleEndian.Uint64(b[24:]) |
			binary.LittleEndian.Uint64(b[32:]) | binary.LittleEndian.Uint64(b[40:]) |
			binary.LittleEndian.Uint64(b[48:]) | binary.LittleEndian.Uint64(b[56:])
		if x&high != 0 {
			return true
		}
		b = b[64:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

func hasParam(params []string, kw string) bool {
	for _, p := range params {
		k, _, _ := strings.Cut(p, "=")
		if strings.EqualFold(k, kw) {
			return true
		}
	}
	return false
}

// Mail sends MAIL FROM:<from> with optional parameters ("SIZE=1000",
// "BODY=8BITMIME", "RET=HDRS"...), sending EHLO first if needed. An empty
// from is the null sender <>. One pair of angle brackets around from is
// accepted and removed; an address that would add to the command ("<", ">",
// spaces or quotes outside a quoted local part) is an *AddressError. A non-ASCII address adds SMTPUTF8 when the
// server offers it. A parameter the server did not advertise is refused with
// a *NotSupportedError before anything is sent. If the server rejects the
// command, the error is a *SenderRefusedError wrapping the *SMTPError.
func (c *Client) Mail(ctx context.Context, from string, params ...string) error {
	from, err := envelopeAddress("sender", from)
	if err != nil {
		return err
	}
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		return err
	}
	if !isASCII(from) && !hasParam(params, "SMTPUTF8") {
		params = append(params[:len(params):len(params)], "SMTPUTF8")
	}
	// A transaction begun with Mail ends with Data.
	if err := refuseWithDATA(params); err != nil {
		return err
	}
	if err := c.checkParams("MAIL", params); err != nil {
		return err
	}
	rep, err := c.cmd(ctx, "MAIL", mailLine(from, params))
	if err != nil {
		return err
	}
	if rep.Code != 250 {
		return &SenderRefusedError{Sender: from, Err: replyError("MAIL", rep)}
	}
	c.txUTF8 = hasParam(params, "SMTPUTF8")
	c.txRcpts = c.txRcpts[:0]
	return nil
}

func mailLine(from string, params []string) string { return pathLine("MAIL FROM:<", from, params) }
func rcptLine(to string, params []string) string   { return pathLine("RCPT TO:<", to, params) }

// pathLine formats "MAIL FROM:<addr> PARAM..." or "RCPT TO:<addr> PARAM...".
func pathLine(prefix, addr string, params []string) string {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString(addr)
	b.WriteByte('>')
	for _, p := range params {
		b.WriteByte(' ')
		b.WriteString(p)
	}
	return b.String()
}

// Rcpt sends RCPT TO:<to> with optional parameters ("NOTIFY=SUCCESS"). A
// non-ASCII address needs a transaction started with SMTPUTF8. The address
// is checked as in Mail. If the server
// rejects the command, the error is an *SMTPError.
func (c *Client) Rcpt(ctx context.Context, to string, params ...string) error {
	to, err := envelopeAddress("recipient", to)
	if err != nil {
		return err
	}
	if !isASCII(to) && !c.txUTF8 {
		return &NotSupportedError{Extension: "SMTPUTF8", Msg: fmt.Sprintf("recipient %q is not ASCII but the transaction did not start with SMTPUTF8", to)}
	}
	if err := c.checkParams("RCPT", params); err != nil {
		return err
	}
	rep, err := c.cmd(ctx, "RCPT", rcptLine(to, params))
	if err != nil {
		return err
	}
	if rep.Code != 250 && rep.Code != 251 {
		return replyError("RCPT", rep)
	}
	c.txRcpts = append(c.txRcpts, to)
	return nil
}

// DSN asks for delivery status notifications (RFC 3461).
type DSN struct {
	// Return is "FULL" or "HDRS": how much of the message a bounce
	// carries. Empty: the server decides.
	Return string
	// EnvelopeID identifies the transaction in DSNs; any text, mailbot
	// xtext-encodes it.
	EnvelopeID string
	// Notify applies to every recipient: any of "SUCCESS", "FAILURE",
	// "DELAY", or just "NEVER".
	Notify []string
	// NotifyFor overrides Notify for single recipients.
	NotifyFor map[string][]string
	// OriginalRecipient adds ORCPT=rfc822;<address> to every recipient.
	OriginalRecipient bool
}

// SendOptions adjusts one SendMail transaction. The zero value is fine.
type SendOptions struct {
	// MailParams are added to MAIL FROM, like smtplib's mail_options
	// ("REQUIRETLS", "MT-PRIORITY=3"). SIZE, BODY=8BITMIME and SMTPUTF8
	// are added automatically when needed and advertised.
	MailParams []string
	// RcptParams are added to every RCPT TO, like smtplib's rcpt_options.
	RcptParams []string
	// RcptParamsFor adds parameters to single recipients.
	RcptParamsFor map[string][]string
	// DSN requests delivery status notifications.
	DSN *DSN
	// NoPipelining sends MAIL, RCPT and DATA in lockstep even when the
	// server offers PIPELINING.
	NoPipelining bool
	// NoChunking sends the message with DATA even when the server offers
	// CHUNKING (see Client.NoChunking for the whole session).
	NoChunking bool
	// ChunkSize is the largest BDAT chunk; 0 means DefaultChunkSize.
	ChunkSize int
}

// xtext encodes a DSN value (RFC 3461 §4): "+", "=" and characters outside
// "!".."~" become "+HH".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < '!' || ch > '~' || ch == '+' || ch == '=' {
			fmt.Fprintf(&b, "+%02X", ch)
			continue
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// utf8AddrXtext encodes an address as RFC 6533 utf-8-addr-xtext: QCHARs
// (printable ASCII except "+", "=" and "\\") stay, anything else becomes
// \\x{HEX} of its code point.
func utf8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '!' && r <= '~' && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, "\\x{%X}", r)
	}
	return b.String()
}

// envelope computes the MAIL and RCPT parameters of one message. Everything
// is decided per message: nothing (SMTPUTF8 in particular) carries over from
// the previous transaction.
func (c *Client) envelope(from string, to []string, msg []byte, o *SendOptions, mode bodyMode) (mailParams []string, rcptParams [][]string, err error) {
	mailParams = append(mailParams, o.MailParams...)
	if mode == bodyData {
		if err := refuseWithDATA(mailParams); err != nil {
			return nil, nil, err
		}
	}
	if c.HasExtension("SIZE") && !hasParam(mailParams, "SIZE") {
		size := wireSize(msg)
		if mode == bodyBinary {
			size = len(msg) // sent as it is
		}
		mailParams = append(mailParams, "SIZE="+strconv.Itoa(size))
	}
	switch {
	case hasParam(mailParams, "BODY"):
	case mode == bodyBinary:
		mailParams = append(mailParams, "BODY=BINARYMIME")
	case c.HasExtension("8BITMIME") && has8bit(msg):
		mailParams = append(mailParams, "BODY=8BITMIME")
	}
	needUTF8 := !isASCII(from)
	for _, r := range to {
		needUTF8 = needUTF8 || !isASCII(r)
	}
	if needUTF8 && !hasParam(mailParams, "SMTPUTF8") {
		mailParams = append(mailParams, "SMTPUTF8")
	}
	if d := o.DSN; d != nil {
		if d.Return != "" {
			ret := strings.ToUpper(d.Return)
			if ret != "FULL" && ret != "HDRS" {
				return nil, nil, fmt.Errorf("smtp: DSN return %q: want FULL or HDRS", d.Return)
			}
			mailParams = append(mailParams, "RET="+ret)
		}
		if d.EnvelopeID != "" {
			mailParams = append(mailParams, "ENVID="+xtext(d.EnvelopeID))
		}
	}
	if err := c.checkParams("MAIL", mailParams); err != nil {
		return nil, nil, err
	}
	rcptParams = make([][]string, len(to))
	for i, r := range to {
		ps := append([]string(nil), o.RcptParams...)
		ps = append(ps, o.RcptParamsFor[r]...)
		if d := o.DSN; d != nil {
			notify := d.Notify
			if n, ok := d.NotifyFor[r]; ok {
				notify = n
			}
			if len(notify) > 0 {
				ps = append(ps, "NOTIFY="+strings.ToUpper(strings.Join(notify, ",")))
			}
			if d.OriginalRecipient {
				if isASCII(r) {
					ps = append(ps, "ORCPT=rfc822;"+xtext(r))
				} else {
					// RFC 6533 §3: the rfc822 type is ASCII only.
					ps = append(ps, "ORCPT=utf-8;"+utf8AddrXtext(r))
				}
			}
		}
		if err := c.checkParams("RCPT", ps); err != nil {
			return nil, nil, fmt.Errorf("recipient %s: %w", r, err)
		}
		rcptParams[i] = ps
	}
	return mailParams, rcptParams, nil
}

// SendMail sends one message in a whole transaction, like smtplib's
// sendmail: EHLO if needed, MAIL, one RCPT per recipient, DATA, the body
// (dot-stuffed, line ends normalised to CRLF), and the final dot. With
// PIPELINING offered, MAIL, RCPT and DATA go out in one write (RFC 2920).
//
// Recipients the server refused are returned, with the reason; the call
// fails only if every recipient was refused (*RecipientsRefusedError). Other
// errors: *SenderRefusedError, *DataError, *NotSupportedError (a parameter
// the server did not advertise; nothing was sent), *UnknownOutcomeError
// (the connection failed after the final dot). After a refusal the client
// sends RSET, so the connection stays usable for the next message.
//
// msg is only read, and not retained after SendMail returns.
func (c *Client) SendMail(ctx context.Context, from string, to []string, msg []byte, opts *SendOptions) (Refusals, error) {
	refused, _, err := c.SendMailReply(ctx, from, to, msg, opts)
	return refused, err
}

// SendMailReply is SendMail that also returns the server's reply to the
// final dot when the message was accepted, e.g. "250 2.0.0 Ok: queued as
// 4Zx...": the relay's queue id, which traces the delivery in its logs.
func (c *Client) SendMailReply(ctx context.Context, from string, to []string, msg []byte, opts *SendOptions) (Refusals, Reply, error) {
	if len(to) == 0 {
		return nil, Reply{}, errors.New("smtp: SendMail: no recipients")
	}
	if opts == nil {
		opts = &SendOptions{}
	}
	// Reject injection attempts before anything, EHLO included, is sent.
	from, to, err := checkEnvelope(from, to, opts)
	if err != nil {
		return nil, Reply{}, err
	}
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		return nil, Reply{}, err
	}
	if c.HasExtension("PIPELINING") && !opts.NoPipelining {
		r := c.SendBatch(ctx, []Outgoing{{From: from, To: to, Data: msg, Opts: opts}}, nil)[0]
		return r.Refused, r.Reply, r.Err
	}
	mailParams, rcptParams, err := c.envelope(from, to, msg, opts, bodyData)
	if err != nil {
		return nil, Reply{}, err
	}
	return c.sendLockstep(ctx, from, to, msg, mailParams, rcptParams)
}

func (c *Client) sendLockstep(ctx context.Context, from string, to []string, msg []byte, mailParams []string, rcptParams [][]string) (Refusals, Reply, error) {
	if err := c.Mail(ctx, from, mailParams...); err != nil {
		c.resetAfterFailure(ctx)
		return nil, Reply{}, err
	}
	var refused Refusals
	for i, r := range to {
		if err := c.Rcpt(ctx, r, rcptParams[i]...); err != nil {
			var se *SMTPError
			if !errors.As(err, &se) || c.closed {
				return nil, Reply{}, err
			}
			if refused == nil {
				refused = make(Refusals)
			}
			refused[r] = se
		}
	}
	if len(refused) == len(to) {
		c.resetAfterFailure(ctx)
		return nil, Reply{}, &RecipientsRefusedError{Recipients: refused}
	}
	w, err := c.Data(ctx)
	if err != nil {
		c.resetAfterFailure(ctx)
		return nil, Reply{}, err
	}
	return c.writeBody(ctx, w, msg, refused)
}

// writeBody sends the message through w and merges LMTP per-recipient
// refusals into refused.
func (c *Client) writeBody(ctx context.Context, w *DataWriter, msg []byte, refused Refusals) (Refusals, Reply, error) {
	if _, err := w.Write(msg); err != nil {
		return nil, Reply{}, err
	}
	err := w.Close()
	for r, e := range w.Refusals {
		if refused == nil {
			refused = make(Refusals)
		}
		refused[r] = e
	}
	var de *DataError
	var rr *RecipientsRefusedError
	switch {
	case errors.As(err, &rr):
		c.resetAfterFailure(ctx)
		return nil, Reply{}, &RecipientsRefusedError{Recipients: refused}
	case errors.As(err, &de):
		c.resetAfterFailure(ctx)
		return nil, Reply{}, err
	case err != nil:
		return nil, Reply{}, err
	}
	return refused, w.Reply, nil
}

// resetAfterFailure sends RSET so the session can carry the next message.
// A failing RSET only matters through the broken connection it leaves,
// which the next command reports.
func (c *Client) resetAfterFailure(ctx context.Context) {
	c.txRcpts = c.txRcpts[:0]
	c.txUTF8 = false
	if !c.closed {
		c.Reset(ctx)
	}
}

func mapValues(m map[string][]string) [][]string {
	out := make([][]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// Outgoing is one message for SendBatch.
type Outgoing struct {
	From string
	To   []string
	Data []byte
	Opts *SendOptions
}

// BatchResult is SendBatch's verdict on one message, with SendMail's
// meaning: Refused lists partial refusals, Err is nil when the message was
// accepted for at least one recipient.
type BatchResult struct {
	Refused Refusals
	Err     error
	// Reply is the server's reply to the final dot when the message was
	// accepted ("250 2.0.0 Ok: queued as 4Zx..."; for LMTP the last
	// positive one), the zero Reply otherwise.
	Reply Reply
}

// SendBatch sends several messages over the session, like SendMail for
// each, but with PIPELINING it also overlaps messages.
//
// When the server offers CHUNKING too (and neither Client.NoChunking nor
// the message's SendOptions.NoChunking is set), each message is MAIL, its
// RCPTs and its body in BDAT chunks, with no reply to wait for in between,
// and up to Client.BatchWindow messages (default DefaultBatchWindow) are
// on the wire before the oldest one's replies are read. Every message after
// the first one in flight starts with RSET, since the previous one may have
// failed in a way that leaves its transaction open on the server.
//
// With DATA, the next message's MAIL, RCPT and DATA go out right after the
// previous message's final dot, and both answers come back in one round
// trip (RFC 2920 §3.1 allows this: a transaction ends with its dot
// whatever the reply). A batch therefore costs one round trip per message
// instead of two. Without PIPELINING the messages are sent one after the
// other with SendMail.
//
// Each message gets its own result. When the connection fails, a message
// whose end (final dot, or last BDAT chunk) was sent but not answered gets
// an *UnknownOutcomeError, and the messages not sent in full get the
// connection's error (not delivered). Data is only read, never retained.
//
// done, if not nil, is called with each message's result, in order, as
// soon as it is known, before the batch goes on — so a caller can record
// "delivered" at once. A crash can then cause duplicates only of the
// messages in flight: one with DATA, up to BatchWindow with CHUNKING.
// done must not use the Client.
func (c *Client) SendBatch(ctx context.Context, msgs []Outgoing, done func(i int, r BatchResult)) []BatchResult {
	res := make([]BatchResult, len(msgs))
	reported := 0 // results[:reported] were passed to done
	report := func(upTo int) {
		for ; done != nil && reported < upTo; reported++ {
			done(reported, res[reported])
		}
	}
	defer func() { report(len(res)) }()
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		for i := range res {
			res[i].Err = err
		}
		return res
	}
	if !c.HasExtension("PIPELINING") {
		for i, m := range msgs {
			res[i].Refused, res[i].Reply, res[i].Err = c.SendMailReply(ctx, m.From, m.To, m.Data, m.Opts)
			report(i + 1)
		}
		return res
	}
	end, err := c.begin(ctx, "MAIL")
	if err != nil {
		for i := range res {
			res[i].Err = err
		}
		return res
	}
	defer end()
	if c.chunkingOn() {
		return c.batchChunked(ctx, msgs, res, report)
	}
	return c.batchData(ctx, msgs, res, report)
}

// batchData is SendBatch over PIPELINING with DATA: each message's final
// dot leaves with the next message's envelope.
func (c *Client) batchData(ctx context.Context, msgs []Outgoing, res []BatchResult, report func(upTo int)) []BatchResult {

	pending := -1 // the message whose final reply is still unread
	var pendingRefused Refusals
	var pendingAccepted []string
	readPending := func() error {
		if pending < 0 {
			return nil
		}
		i := pending
		pending = -1
		c.setDeadline(ctx, c.DataTimeout)
		if !c.lmtp {
			rep, err := c.recv(ctx, ".")
			if err != nil {
				res[i].Err = &UnknownOutcomeError{Err: err}
				return err
			}
			if rep.Code != 250 {
				res[i].Err = &DataError{Err: replyError(".", rep)}
				return nil
			}
			res[i].Refused, res[i].Reply = pendingRefused, rep
			return nil
		}
		// LMTP (RFC 2033 §4.2): one reply per accepted recipient, in order.
		failed := 0
		var last Reply
		for _, rcpt := range pendingAccepted {
			rep, err := c.recv(ctx, ".")
			if err != nil {
				res[i].Err = &UnknownOutcomeError{Err: err}
				return err
			}
			if rep.Code != 250 {
				if pendingRefused == nil {
					pendingRefused = make(Refusals)
				}
				pendingRefused[rcpt] = replyError(".", rep)
				failed++
			} else {
				last = rep
			}
		}
		if failed == len(pendingAccepted) {
			res[i].Err = &RecipientsRefusedError{Recipients: pendingRefused}
			return nil
		}
		res[i].Refused, res[i].Reply = pendingRefused, last
		return nil
	}
	fail := func(from int, err error) []BatchResult {
		for j := from; j < len(res); j++ {
			if res[j].Err == nil && res[j].Refused == nil {
				res[j].Err = err
			}
		}
		return res
	}

	for i, m := range msgs {
		if len(m.To) == 0 {
			res[i].Err = errors.New("smtp: SendBatch: no recipients")
			continue
		}
		opts := m.Opts
		if opts == nil {
			opts = &SendOptions{}
		}
		from, to, err := checkEnvelope(m.From, m.To, opts)
		if err != nil {
			res[i].Err = err
			continue
		}
		m.From, m.To = from, to
		mailParams, rcptParams, err := c.envelope(m.From, m.To, m.Data, opts, bodyData)
		if err != nil {
			res[i].Err = err
			continue
		}
		c.setDeadline(ctx, c.CommandTimeout)
		line := mailLine(m.From, mailParams)
		c.send(line, line)
		for j, r := range m.To {
			line := rcptLine(r, rcptParams[j])
			c.send(line, line)
		}
		c.send("DATA", "DATA")
		if err := c.w.Flush(); err != nil {
			ferr := c.fail(ctx, "MAIL", err)
			if pending >= 0 {
				res[pending].Err = &UnknownOutcomeError{Err: ferr}
			}
			return fail(i, ferr)
		}
		if err := readPending(); err != nil {
			return fail(i, err)
		}
		report(i)
		c.txUTF8 = hasParam(mailParams, "SMTPUTF8")
		mailRep, err := c.recv(ctx, "MAIL")
		if err != nil {
			return fail(i, err)
		}
		var refused Refusals
		var accepted []string
		for _, r := range m.To {
			c.setDeadline(ctx, c.CommandTimeout)
			rep, err := c.recv(ctx, "RCPT")
			if err != nil {
				return fail(i, err)
			}
			if rep.Code == 250 || rep.Code == 251 {
				accepted = append(accepted, r)
				continue
			}
			if refused == nil {
				refused = make(Refusals)
			}
			refused[r] = replyError("RCPT", rep)
		}
		c.setDeadline(ctx, c.CommandTimeout)
		dataRep, err := c.recv(ctx, "DATA")
		if err != nil {
			return fail(i, err)
		}
		var failure error
		switch {
		case mailRep.Code != 250:
			failure = &SenderRefusedError{Sender: m.From, Err: replyError("MAIL", mailRep)}
		case len(accepted) == 0:
			failure = &RecipientsRefusedError{Recipients: refused}
		case dataRep.Code != 354:
			failure = &DataError{Err: replyError("DATA", dataRep)}
		}
		if failure != nil {
			res[i].Err = failure
			if dataRep.Code == 354 {
				var none Refusals
				_, _ = c.finishData(ctx, newDotWriter(c.w), nil, &none)
			}
			if c.closed {
				return fail(i+1, c.broken)
			}
			if _, err := c.simple(ctx, "RSET", "RSET"); err != nil && c.closed {
				return fail(i+1, err)
			}
			continue
		}
		dw := newDotWriter(c.w)
		if _, err := dw.Write(m.Data); err != nil {
			return fail(i, c.fail(ctx, "DATA", err))
		}
		if err := dw.terminate(); err != nil {
			return fail(i, c.fail(ctx, "DATA", err))
		}
		c.debug.body(dw.n, dw.lines, nil)
		// The dot is not flushed here: it leaves with the next message's
		// envelope, or at the end of the batch.
		pending, pendingRefused, pendingAccepted = i, refused, accepted
	}
	if pending >= 0 {
		i := pending
		if err := c.w.Flush(); err != nil {
			ferr := c.fail(ctx, "DATA", err)
			if c.w.Buffered() > 0 {
				res[i].Err = ferr
			} else {
				res[i].Err = &UnknownOutcomeError{Err: ferr}
			}
			return res
		}
		readPending()
	}
	return res
}

// checkEnvelope checks an envelope and its parameters for injection and
// returns the addresses as they go on the wire (see envelopeAddress). The
// caller's slice is not modified.
func checkEnvelope(from string, to []string, o *SendOptions) (string, []string, error) {
	from, err := envelopeAddress("sender", from)
	if err != nil {
		return "", nil, err
	}
	out := make([]string, len(to))
	for i, r := range to {
		if out[i], err = envelopeAddress("recipient", r); err != nil {
			return "", nil, err
		}
	}
	for _, ps := range append([][]string{o.MailParams, o.RcptParams}, mapValues(o.RcptParamsFor)...) {
		for _, p := range ps {
			if err := validateLine(p); err != nil {
				return "", nil, err
			}
		}
	}
	return from, out, nil
}

// AddressError reports an envelope address that would change the command
// it is sent in: a ">" that ends the path early and lets the rest pass as
// ESMTP parameters ("a@example.com> RET=FULL"), a second pair of brackets,
// a space. Nothing was sent for the command.
type AddressError struct {
	// Role is "sender" or "recipient".
	Role string
	// Address is the address as given.
	Address string
	// Reason says what is wrong with it.
	Reason string
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("smtp: %s address %q refused: %s", e.Role, truncate(e.Address, 80), e.Reason)
}

// envelopeAddress returns addr as it goes between the angle brackets of
// MAIL FROM or RCPT TO. One pair of surrounding brackets is accepted and
// removed ("<a@example.com>" is a@example.com). Any other "<", ">", space,
// tab or double quote is refused unless it is inside a quoted local part
// ("\"john doe\"@example.com", RFC 5321 §4.1.2), since the server would
// read it as the end of the path or the start of a parameter. CR, LF and
// NUL are refused as injection, as on every command line.
func envelopeAddress(role, addr string) (string, error) {
	if err := validateLine(addr); err != nil {
		return "", err
	}
	a := addr
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		a = a[1 : len(a)-1]
	}
	rest := a
	if strings.HasPrefix(a, `"`) {
		end := closingQuote(a)
		if end < 0 {
			return "", &AddressError{Role: role, Address: addr, Reason: "the quoted local part has no closing quote"}
		}
		rest = a[end+1:]
		if rest != "" && rest[0] != '@' {
			return "", &AddressError{Role: role, Address: addr, Reason: "a quoted local part must be followed by @domain"}
		}
	}
	if i := strings.IndexAny(rest, "<> \t\""); i >= 0 {
		return "", &AddressError{Role: role, Address: addr,
			Reason: fmt.Sprintf("%q outside a quoted local part would end the address early (give the bare address, or one pair of <>)", rest[i])}
	}
	return a, nil
}

// closingQuote returns the index of the quote that ends the quoted string
// starting at s[0], honouring backslash escapes, or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
