package message

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"time"
)

var b64 = base64.StdEncoding

// transfer is a Content-Transfer-Encoding.
type transfer int

const (
	enc7bit transfer = iota
	encQP
	encBase64
)

// Multipart kinds, also indexes into Message.boundaries.
const (
	kindMixed = iota
	kindRelated
	kindAlternative
	kindLeaf = -1
)

var kindNames = [...]string{kindMixed: "mixed", kindRelated: "related", kindAlternative: "alternative"}

// part is one node of the MIME tree built from a Message.
type part struct {
	kind int // kindLeaf or a multipart kind
	// header holds a leaf's encoded header lines; multipart headers are
	// rendered at write time, once the boundary is known.
	header []byte
	enc    transfer
	text   string // leaf body for enc7bit (CRLF-normalised) and encQP
	data   []byte // leaf body for encBase64

	children []*part
	boundary string
}

// built is a validated message ready to write.
type built struct {
	header []byte // top-level header lines up to and including MIME-Version
	root   *part
}

// Validate reports whether the message can be written, returning the same
// error Bytes would, without filling in Date or MessageID.
func (m *Message) Validate() error {
	_, err := m.build(false)
	return err
}

// Bytes returns the message in RFC 5322 form with CRLF line ends. See
// WriteTo.
func (m *Message) Bytes() ([]byte, error) {
	b, err := m.build(true)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(b.size())
	if err := b.write(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTo writes the message in RFC 5322 form with CRLF line ends. It
// validates the whole message before writing anything, so a validation
// error leaves w untouched. It sets Date and MessageID when they are empty.
// Errors are *HeaderError, *AddressError, *AttachmentError, ErrNoFrom, or
// errors from w.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	b, err := m.build(true)
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 32<<10)
	if err := b.write(bw); err != nil {
		return cw.n, err
	}
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("message: write: %w", err)
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// build validates m and turns it into a tree of parts. With finalize it
// assigns Date, MessageID and boundaries to m; without, it uses
// placeholders so that validation has no side effects.
func (m *Message) build(finalize bool) (*built, error) {
	var h []byte
	var err error

	// RFC 5322 section 3.6 requires Date and From; Message-ID is a SHOULD
	// that every receiving system relies on.
	date := m.Date
	if date.IsZero() {
		date = m.now()
	}
	if h, err = appendField(h, "Date", date.Format(time.RFC1123Z)); err != nil {
		return nil, err
	}

	if m.From == "" {
		return nil, ErrNoFrom
	}
	from, err := parseAddress(hFrom, -1, m.From)
	if err != nil {
		return nil, err
	}
	if h, err = appendField(h, "From", formatAddress(from, firstBudget("From", 0))); err != nil {
		return nil, err
	}
	if m.Sender != "" {
		s, err := parseAddress(hSender, -1, m.Sender)
		if err != nil {
			return nil, err
		}
		if h, err = appendField(h, "Sender", formatAddress(s, firstBudget("Sender", 0))); err != nil {
			return nil, err
		}
	}
	for _, l := range []struct {
		key  string
		list []string
	}{{hReplyTo, m.ReplyTo}, {hTo, m.To}, {hCc, m.Cc}, {hBcc, m.Bcc}} {
		if len(l.list) == 0 {
			continue
		}
		strs := make([]string, len(l.list))
		for i, s := range l.list {
			a, err := parseAddress(l.key, i, s)
			if err != nil {
				return nil, err
			}
			strs[i] = formatAddress(a, firstBudget(l.key, i))
		}
		if l.key == hBcc {
			// Parsed for validation only: Bcc must never reach the output.
			continue
		}
		if h, err = appendField(h, l.key, strings.Join(strs, ", ")); err != nil {
			return nil, err
		}
	}

	if m.Subject != "" {
		if err := checkValue("Subject", "", m.Subject); err != nil {
			return nil, err
		}
		v := encodeText("Subject", m.Subject)
		h2, err := appendField(h, "Subject", v)
		if err != nil && v == m.Subject {
			// A plain subject with an unbreakable run of more than 998
			// octets: encoded-words can be folded anywhere.
			h2, err = appendField(h, "Subject", strings.Join(encodeWords(v, foldLen-len("Subject: ")), " "))
		}
		if err != nil {
			return nil, err
		}
		h = h2
	}

	id := m.MessageID
	if id == "" {
		// Validation must not consume randomness, which would make a
		// deterministic Rand give different IDs depending on call order.
		r := strings.Repeat("0", 32)
		if finalize {
			if r, err = m.randomHex(16); err != nil {
				return nil, err
			}
		}
		id = r + from.Address[strings.LastIndexByte(from.Address, '@'):]
	}
	msgID, err := formatMessageID(id)
	if err != nil {
		return nil, err
	}
	if h, err = appendField(h, "Message-ID", msgID); err != nil {
		return nil, err
	}

	for _, f := range m.extra {
		// SetHeader validated these, but extra can only be changed through
		// it, so a failure here is the line-length limit.
		if h, err = appendField(h, f.name, encodeText(f.name, f.value)); err != nil {
			return nil, err
		}
	}
	h = append(h, "MIME-Version: 1.0\r\n"...)

	root, err := m.bodyTree()
	if err != nil {
		return nil, err
	}
	if finalize {
		if err := m.assignBoundaries(root); err != nil {
			return nil, err
		}
		m.Date = date
		m.MessageID = id
	}
	return &built{header: h, root: root}, nil
}

func (m *Message) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Message) randomHex(n int) (string, error) {
	r := m.Rand
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("message: read random bytes: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// bodyTree builds the smallest MIME structure that carries the bodies and
// attachments.
func (m *Message) bodyTree() (*part, error) {
	var body *part
	var html *part
	if m.HTML != "" {
		html = textPart("html", m.HTML)
	}
	if len(m.Inline) > 0 {
		if html == nil {
			return nil, &AttachmentError{Inline: true, Index: 0, Filename: m.Inline[0].Filename,
				Err: fmt.Errorf("inline parts need an HTML body to refer to them")}
		}
		rel := &part{kind: kindRelated, children: []*part{html}}
		seen := make(map[string]bool)
		for i, a := range m.Inline {
			p, cid, err := attachmentPart(a, true, i)
			if err != nil {
				return nil, err
			}
			if seen[cid] {
				return nil, &AttachmentError{Inline: true, Index: i, Filename: a.Filename,
					Err: fmt.Errorf("duplicate content ID %q", cid)}
			}
			seen[cid] = true
			rel.children = append(rel.children, p)
		}
		html = rel
	}
	switch {
	case m.Text != "" && html != nil:
		body = &part{kind: kindAlternative, children: []*part{textPart("plain", m.Text), html}}
	case html != nil:
		body = html
	case m.Text != "" || len(m.Attachments) == 0:
		// A message always has a body; an empty text/plain one stands in
		// when nothing else was given.
		body = textPart("plain", m.Text)
	}
	if len(m.Attachments) == 0 {
		return body, nil
	}
	mixed := &part{kind: kindMixed}
	if body != nil {
		mixed.children = append(mixed.children, body)
	}
	for i, a := range m.Attachments {
		p, _, err := attachmentPart(a, false, i)
		if err != nil {
			return nil, err
		}
		mixed.children = append(mixed.children, p)
	}
	return mixed, nil
}

// textPart makes a text/<subtype> leaf, choosing 7bit for short-lined
// printable ASCII and quoted-printable for anything else.
func textPart(subtype, s string) *part {
	p := &part{kind: kindLeaf, enc: textTransfer(s)}
	cte := "7bit"
	if p.enc == encQP {
		cte = "quoted-printable"
		p.text = s // the quoted-printable writer normalises line breaks itself
	} else {
		p.text = normalizeCRLF(s)
	}
	p.header = append(p.header, "Content-Type: text/"+subtype+"; charset=utf-8\r\n"...)
	p.header = append(p.header, "Content-Transfer-Encoding: "+cte+"\r\n"...)
	return p
}

// textTransfer returns enc7bit when s is printable ASCII (plus tab and line
// breaks) with lines of at most 998 octets, as RFC 2045 section 2.7 requires
// of 7bit data, and encQP otherwise.
func textTransfer(s string) transfer {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r' || c == '\n':
			n = 0
		case c == '\t' || ' ' <= c && c <= '~':
			n++
			if n > maxLineLen {
				return encQP
			}
		default:
			return encQP
		}
	}
	return enc7bit
}

// normalizeCRLF turns every LF, CR and CRLF line break into CRLF.
func normalizeCRLF(s string) string {
	lone := false
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' && (i == 0 || s[i-1] != '\r') || s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n') {
			lone = true
			break
		}
	}
	if !lone {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/16)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\r':
			b.WriteString("\r\n")
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
		case '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// attachmentPart validates an attachment and makes its base64 leaf. It also
// returns the content ID without brackets, for inline parts.
func attachmentPart(a Attachment, inline bool, index int) (*part, string, error) {
	fail := func(err error) (*part, string, error) {
		return nil, "", &AttachmentError{Inline: inline, Index: index, Filename: a.Filename, Err: err}
	}
	if err := checkValue("Content-Disposition", "filename", a.Filename); err != nil {
		return fail(err)
	}
	ct := a.ContentType
	if ct == "" {
		ct = guessType(a.Filename)
	} else if err := checkValue("Content-Type", "content type", ct); err != nil {
		return fail(err)
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fail(&HeaderError{Name: "Content-Type", Reason: fmt.Sprintf("invalid content type %q: %v", ct, err)})
	}
	if !base64Allowed(mt) {
		return fail(&HeaderError{Name: "Content-Type", Reason: fmt.Sprintf("content type %q cannot be base64 encoded", mt)})
	}
	if a.Filename != "" && params["name"] == "" {
		// The name parameter is obsolete (RFC 2183 replaced it) but some
		// readers still only look there.
		params["name"] = a.Filename
	}
	ctv := mime.FormatMediaType(mt, params)
	if ctv == "" {
		return fail(&HeaderError{Name: "Content-Type", Reason: fmt.Sprintf("cannot format content type %q", ct)})
	}
	disp := "attachment"
	if inline {
		disp = "inline"
	}
	var dparams map[string]string
	if a.Filename != "" {
		dparams = map[string]string{"filename": a.Filename}
	}
	dv := mime.FormatMediaType(disp, dparams)

	p := &part{kind: kindLeaf, enc: encBase64, data: a.Content}
	if p.header, err = appendField(p.header, "Content-Type", ctv); err != nil {
		return fail(err)
	}
	if p.header, err = appendField(p.header, "Content-Disposition", dv); err != nil {
		return fail(err)
	}
	var cid string
	if inline {
		if cid, err = checkContentID(a.ContentID); err != nil {
			return fail(err)
		}
		p.header = append(p.header, "Content-ID: <"+cid+">\r\n"...)
	}
	p.header = append(p.header, "Content-Transfer-Encoding: base64\r\n"...)
	return p, cid, nil
}

// checkContentID validates an inline part's content ID and returns it
// without angle brackets. It must be printable ASCII without spaces or
// brackets, since it is written inside <...> and quoted in cid: URLs.
func checkContentID(id string) (string, error) {
	if err := checkValue("Content-ID", "content ID", id); err != nil {
		return "", err
	}
	if strings.HasPrefix(id, "<") && strings.HasSuffix(id, ">") {
		id = id[1 : len(id)-1]
	}
	if id == "" {
		return "", &HeaderError{Name: "Content-ID", Reason: "inline part needs a content ID"}
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == '<' || c == '>' {
			return "", &HeaderError{Name: "Content-ID", Reason: fmt.Sprintf("content ID %q must be printable ASCII without spaces or angle brackets", id)}
		}
	}
	return id, nil
}

// assignBoundaries gives every multipart node a boundary. A boundary is
// "=_" plus the kind and random hex: "=_" can appear neither in base64 nor in
// quoted-printable output, so only 7bit bodies need to be searched for it.
// Boundaries are kept in m so that writing the message again reproduces it.
func (m *Message) assignBoundaries(root *part) error {
	var plain []string
	var nodes []*part
	var walk func(p *part)
	walk = func(p *part) {
		if p.kind == kindLeaf {
			if p.enc == enc7bit {
				plain = append(plain, p.text)
			}
			return
		}
		nodes = append(nodes, p)
		for _, c := range p.children {
			walk(c)
		}
	}
	walk(root)
	for _, n := range nodes {
		b := m.boundaries[n.kind]
		for try := 0; b == "" || contained(plain, b); try++ {
			if try == 10 {
				return fmt.Errorf("message: cannot choose a MIME boundary absent from the body")
			}
			r, err := m.randomHex(12)
			if err != nil {
				return err
			}
			b = "=_" + kindNames[n.kind] + "_" + r
		}
		m.boundaries[n.kind] = b
		n.boundary = b
	}
	return nil
}

func contained(texts []string, s string) bool {
	for _, t := range texts {
		if strings.Contains(t, s) {
			return true
		}
	}
	return false
}

// size estimates the encoded size so Bytes can allocate once.
func (b *built) size() int {
	return len(b.header) + b.root.size()
}

func (p *part) size() int {
	n := len(p.header) + 128
	switch {
	case p.kind != kindLeaf:
		for _, c := range p.children {
			n += c.size() + len(p.boundary) + 8
		}
	case p.enc == encBase64:
		n += b64.EncodedLen(len(p.data)) * 78 / 76
	case p.enc == encQP:
		n += len(p.text) * 3
	default:
		n += len(p.text)
	}
	return n
}

// write writes the whole message.
func (b *built) write(w io.Writer) error {
	if _, err := w.Write(b.header); err != nil {
		return fmt.Errorf("message: write header: %w", err)
	}
	return b.root.write(w)
}

// write writes a part's header lines, the blank line and its body.
func (p *part) write(w io.Writer) error {
	if p.kind != kindLeaf {
		ct := mime.FormatMediaType("multipart/"+kindNames[p.kind], map[string]string{"boundary": p.boundary})
		h, err := appendField(nil, "Content-Type", ct)
		if err != nil {
			return err
		}
		h = append(h, '\r', '\n')
		if _, err := w.Write(h); err != nil {
			return fmt.Errorf("message: write multipart header: %w", err)
		}
		for i, c := range p.children {
			// The CRLF before a delimiter belongs to the delimiter (RFC 2046
			// section 5.1.1), so bodies come back without a trailing CRLF.
			sep := "\r\n--" + p.boundary + "\r\n"
			if i == 0 {
				sep = sep[2:]
			}
			if _, err := io.WriteString(w, sep); err != nil {
				return fmt.Errorf("message: write boundary: %w", err)
			}
			if err := c.write(w); err != nil {
				return err
			}
		}
		if _, err := io.WriteString(w, "\r\n--"+p.boundary+"--\r\n"); err != nil {
			return fmt.Errorf("message: write boundary: %w", err)
		}
		return nil
	}
	if _, err := w.Write(p.header); err != nil {
		return fmt.Errorf("message: write part header: %w", err)
	}
	if _, err := io.WriteString(w, "\r\n"); err != nil {
		return fmt.Errorf("message: write part header: %w", err)
	}
	var err error
	switch p.enc {
	case enc7bit:
		_, err = io.WriteString(w, p.text)
	case encQP:
		qw := quotedprintable.NewWriter(w)
		if _, err = io.WriteString(qw, p.text); err == nil {
			err = qw.Close()
		}
	case encBase64:
		err = writeBase64(w, p.data)
	}
	if err != nil {
		return fmt.Errorf("message: write part body: %w", err)
	}
	return nil
}

// writeBase64 writes data base64 encoded in lines of 76 characters (RFC
// 2045 section 6.8), separated by CRLF. It encodes a block of lines at a
// time so a large attachment needs one small buffer, not a copy.
func writeBase64(w io.Writer, data []byte) error {
	const (
		lineIn        = 57 // input bytes per 76-character line
		linesPerBlock = 64
	)
	buf := make([]byte, 0, linesPerBlock*(76+2))
	for first := true; len(data) > 0; {
		buf = buf[:0]
		for i := 0; i < linesPerBlock && len(data) > 0; i++ {
			if !first {
				buf = append(buf, '\r', '\n')
			}
			first = false
			n := min(lineIn, len(data))
			buf = b64.AppendEncode(buf, data[:n])
			data = data[n:]
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}
