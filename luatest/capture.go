package luatest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strconv"
	"strings"
	"sync"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/outbox"
)

// Captured is one message a script sent during a test, in the order the
// capture received it.
type Captured struct {
	// Via is "smtp" for c:sendmail / c:send_message, "mail.send" for the
	// outbox.
	Via string
	// MailFrom and Rcpt are the envelope.
	MailFrom string
	Rcpt     []string
	// Key is mail.send's idempotency key ("" for SMTP sends).
	Key  string
	Data []byte
}

// capture is the in-process SMTP server every connection of a test file
// goes to (through luabind's dry-run redirection), plus the outbox that
// mail.send enqueues into. Replies scripted with t.smtp.reply are queued
// per command and used once each.
type capture struct {
	srv *devserver.Server

	mu      sync.Mutex
	sent    []Captured
	keys    map[string]string // mail.send key → message id, for duplicates
	replies map[string][]*devserver.Reject
	n       int
}

// replyCommands are the commands whose answers t.smtp.reply can script.
var replyCommands = []string{"MAIL", "RCPT", "DATA"}

func startCapture() (*capture, error) {
	c := &capture{keys: map[string]string{}, replies: map[string][]*devserver.Reject{}}
	srv, err := devserver.Start(devserver.Config{
		Addr:              "127.0.0.1:0",
		AllowInsecureAuth: true,                                                        // accounts with tls = "none" still log in
		OAuth2:            func(string, string) *devserver.TokenRefusal { return nil }, // any token
		MaxKept:           1,
		Hooks: devserver.Hooks{
			Mail: func(string) *devserver.Reject { return c.next("MAIL") },
			Rcpt: func(string) *devserver.Reject { return c.next("RCPT") },
			Data: c.onData,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("testing: start the capture server: %w", err)
	}
	c.srv = srv
	return c, nil
}

func (c *capture) close() error { return c.srv.Close() }

// next pops the scripted reply for cmd, or nil to accept.
func (c *capture) next(cmd string) *devserver.Reject {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.replies[cmd]
	if len(q) == 0 {
		return nil
	}
	c.replies[cmd] = q[1:]
	return q[0]
}

func (c *capture) onData(m *devserver.Message) *devserver.Reject {
	if r := c.next("DATA"); r != nil {
		return r
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, Captured{Via: "smtp", MailFrom: m.From, Rcpt: append([]string(nil), m.To...),
		Data: append([]byte(nil), m.Data...)})
	return nil
}

// Enqueue implements luabind.Enqueuer: mail.send's message is captured at
// once, as if the outbox had delivered it. A key seen before in the same
// test is a duplicate, as in the real outbox.
func (c *capture) Enqueue(_ context.Context, env outbox.Envelope, data []byte) (string, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if env.Key != "" {
		if id, ok := c.keys[env.Key]; ok {
			return id, true, nil
		}
	}
	c.n++
	id := fmt.Sprintf("test-%d", c.n)
	if env.Key != "" {
		c.keys[env.Key] = id
	}
	c.sent = append(c.sent, Captured{Via: "mail.send", MailFrom: env.From, Rcpt: append([]string(nil), env.To...),
		Key: env.Key, Data: append([]byte(nil), data...)})
	return id, false, nil
}

// reset forgets everything of the previous test.
func (c *capture) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent, c.keys, c.replies, c.n = nil, map[string]string{}, map[string][]*devserver.Reject{}, 0
}

func (c *capture) messages() []Captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Captured(nil), c.sent...)
}

// addReply queues a negative reply for cmd, parsed from "450 4.2.0 text".
func (c *capture) addReply(cmd, reply string) error {
	cmd = strings.ToUpper(strings.TrimSpace(cmd))
	if i := strings.IndexByte(cmd, ' '); i > 0 { // "MAIL FROM", "RCPT TO"
		cmd = cmd[:i]
	}
	known := false
	for _, k := range replyCommands {
		known = known || k == cmd
	}
	if !known {
		return fmt.Errorf("cannot script the reply to %q: only %s", cmd, strings.Join(replyCommands, ", "))
	}
	r, err := parseReply(reply)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replies[cmd] = append(c.replies[cmd], r)
	return nil
}

// parseReply reads "450 4.2.0 try later" or "550 no such user".
func parseReply(s string) (*devserver.Reject, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil, fmt.Errorf("empty reply")
	}
	code, err := strconv.Atoi(f[0])
	if err != nil || code < 400 || code > 599 {
		return nil, fmt.Errorf("reply %q: want a 4xx or 5xx code first (positive replies are the default)", s)
	}
	r := &devserver.Reject{Code: code}
	rest := f[1:]
	if len(rest) > 0 {
		if p := strings.Split(rest[0], "."); len(p) == 3 {
			var enh [3]int
			ok := true
			for i, x := range p {
				n, err := strconv.Atoi(x)
				ok = ok && err == nil
				enh[i] = n
			}
			if ok {
				if enh[0] != code/100 {
					return nil, fmt.Errorf("reply %q: enhanced code %s does not match class %dxx", s, rest[0], code/100)
				}
				r.Enhanced = enh
				rest = rest[1:]
			}
		}
	}
	r.Message = strings.Join(rest, " ")
	if r.Message == "" {
		r.Message = "refused by the test"
	}
	return r, nil
}

// Parsed is a captured message taken apart for assertions.
type Parsed struct {
	Subject, Text, HTML, From string
	To, Cc                    []string
	Headers                   map[string]string
	Attachments               []Attachment
}

// Attachment is one attached part of a captured message.
type Attachment struct {
	Filename, ContentType string
	Data                  []byte
	// CID is the part's Content-ID without its angle brackets ("" when
	// none); Inline reports Content-Disposition: inline.
	CID    string
	Inline bool
}

var wordDecoder = &mime.WordDecoder{}

func decodeHeader(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// parseMessage takes a captured message apart: decoded headers, the text
// and HTML bodies and the attachments.
func parseMessage(data []byte) (*Parsed, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse the captured message: %w", err)
	}
	p := &Parsed{Headers: map[string]string{}}
	for k, v := range msg.Header {
		if len(v) > 0 {
			p.Headers[k] = decodeHeader(v[0])
		}
	}
	p.Subject = decodeHeader(msg.Header.Get("Subject"))
	if l, err := msg.Header.AddressList("From"); err == nil && len(l) > 0 {
		p.From = l[0].Address
	}
	for _, h := range []struct {
		name string
		dst  *[]string
	}{{"To", &p.To}, {"Cc", &p.Cc}} {
		if l, err := msg.Header.AddressList(h.name); err == nil {
			for _, a := range l {
				*h.dst = append(*h.dst, a.Address)
			}
		}
	}
	err = p.walk(msg.Header, msg.Body)
	return p, err
}

// walk visits one MIME entity and its children.
func (p *Parsed) walk(h map[string][]string, body io.Reader) error {
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	ct := get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = "application/octet-stream"
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return fmt.Errorf("parse the captured message: %w", err)
			}
			if err := p.walk(part.Header, part); err != nil {
				return err
			}
		}
	}
	var r io.Reader = body
	switch strings.ToLower(strings.TrimSpace(get("Content-Transfer-Encoding"))) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("parse the captured message: %w", err)
	}
	disp, dparams, _ := mime.ParseMediaType(get("Content-Disposition"))
	filename := dparams["filename"]
	if filename == "" {
		filename = params["name"]
	}
	filename = decodeHeader(filename)
	isBody := disp != "attachment" && filename == ""
	switch {
	case isBody && mt == "text/plain" && p.Text == "":
		p.Text = string(data)
	case isBody && mt == "text/html" && p.HTML == "":
		p.HTML = string(data)
	default:
		cid := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(get("Content-Id")), "<"), ">")
		p.Attachments = append(p.Attachments, Attachment{Filename: filename, ContentType: mt, Data: data,
			CID: cid, Inline: disp == "inline"})
	}
	return nil
}
