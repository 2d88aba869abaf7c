package message

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// This file holds the test helpers that read messages back with the
// standard library's parsers only, so the tests check the output against an
// independent implementation rather than against this package's own code.

// fixedNow is the clock used by tests that compare exact output.
var fixedNow = time.Date(2026, 11, 22, 8, 30, 0, 0, time.FixedZone("CST", 8*3600))

// seqReader is a deterministic Rand: it yields 0, 1, 2, ... modulo 256.
type seqReader struct{ n byte }

func (r *seqReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.n
		r.n++
	}
	return len(p), nil
}

// node is a decoded MIME part.
type node struct {
	header   textproto.MIMEHeader
	typ      string            // media type, lower case
	params   map[string]string // Content-Type parameters
	disp     string            // disposition, "" if absent
	filename string            // decoded filename parameter
	cid      string            // Content-ID as written
	cte      string            // Content-Transfer-Encoding
	body     []byte            // decoded body of a leaf
	children []*node
}

// shape renders the tree as "multipart/mixed(text/plain,text/csv)".
func (n *node) shape() string {
	if len(n.children) == 0 {
		return n.typ
	}
	parts := make([]string, len(n.children))
	for i, c := range n.children {
		parts[i] = c.shape()
	}
	return n.typ + "(" + strings.Join(parts, ",") + ")"
}

// leaves returns the leaf parts in order.
func (n *node) leaves() []*node {
	if len(n.children) == 0 {
		return []*node{n}
	}
	var out []*node
	for _, c := range n.children {
		out = append(out, c.leaves()...)
	}
	return out
}

// parseMessage reads raw with net/mail and decodes its MIME tree. It also
// checks properties every message must have: CRLF line ends only, and no line
// longer than maxLine octets.
func parseMessage(t *testing.T, raw []byte, maxLine int) (*mail.Message, *node) {
	t.Helper()
	checkLines(t, raw, maxLine)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v\n%s", err, raw)
	}
	if got := msg.Header.Get("MIME-Version"); got != "1.0" {
		t.Errorf("MIME-Version = %q, want 1.0", got)
	}
	return msg, decodePart(t, textproto.MIMEHeader(msg.Header), msg.Body)
}

func checkLines(t *testing.T, raw []byte, maxLine int) {
	t.Helper()
	for i, line := range bytes.Split(raw, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("line %d has a bare CR or LF: %q", i+1, line)
		}
		for _, c := range line {
			if c >= 0x80 {
				// The output must be 7-bit clean so it can be relayed
				// without the 8BITMIME extension.
				t.Errorf("line %d has a non-ASCII byte: %q", i+1, line)
				break
			}
		}
		if len(line) > maxLine {
			t.Errorf("line %d is %d octets, want <= %d: %q", i+1, len(line), maxLine, line)
		}
	}
}

func decodePart(t *testing.T, h textproto.MIMEHeader, body io.Reader) *node {
	t.Helper()
	n := &node{header: h, cte: strings.ToLower(h.Get("Content-Transfer-Encoding")), cid: h.Get("Content-ID")}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	var err error
	if n.typ, n.params, err = mime.ParseMediaType(ct); err != nil {
		t.Fatalf("parse Content-Type %q: %v", ct, err)
	}
	if d := h.Get("Content-Disposition"); d != "" {
		var dp map[string]string
		if n.disp, dp, err = mime.ParseMediaType(d); err != nil {
			t.Fatalf("parse Content-Disposition %q: %v", d, err)
		}
		n.filename = dp["filename"]
	}
	if strings.HasPrefix(n.typ, "multipart/") {
		mr := multipart.NewReader(body, n.params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("next part of %s: %v", n.typ, err)
			}
			n.children = append(n.children, decodePart(t, p.Header, p))
		}
		return n
	}
	var r io.Reader
	switch n.cte {
	case "", "7bit":
		r = body
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	default:
		t.Fatalf("unexpected Content-Transfer-Encoding %q", n.cte)
	}
	if n.body, err = io.ReadAll(r); err != nil {
		t.Fatalf("decode %s body: %v", n.cte, err)
	}
	return n
}

// decodeHeader decodes RFC 2047 encoded-words in an unstructured value.
func decodeHeader(t *testing.T, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	if err != nil {
		t.Fatalf("decode header %q: %v", v, err)
	}
	return s
}

// build is Bytes with a fixed clock and randomness, failing the test on error.
func build(t *testing.T, m *Message) []byte {
	t.Helper()
	if m.Now == nil {
		m.Now = func() time.Time { return fixedNow }
	}
	if m.Rand == nil {
		m.Rand = &seqReader{}
	}
	b, err := m.Bytes()
	if err != nil {
		t.Fatalf("Bytes: %v", err)
	}
	return b
}
