package message

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Attachment is a file carried in a message, either as an attachment the
// reader saves or as an inline part an HTML body refers to.
type Attachment struct {
	// Filename is the name offered to the reader. It may contain any UTF-8
	// text; non-ASCII names are sent with RFC 2231 encoding.
	Filename string
	// ContentType is a media type such as "text/csv". When empty it is
	// guessed from Filename's extension, falling back to
	// application/octet-stream.
	ContentType string
	// Content is the exact bytes; they are sent base64 encoded.
	Content []byte
	// ContentID names an inline part for "cid:" URLs in the HTML body, without
	// angle brackets. It is required for inline parts and ignored for
	// attachments.
	ContentID string
}

// AttachFile reads the file at path into an Attachment named after the last
// element of path, with its content type guessed from the extension.
func AttachFile(path string) (Attachment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Attachment{}, fmt.Errorf("message: attach file: %w", err)
	}
	name := filepath.Base(path)
	return Attachment{Filename: name, ContentType: guessType(name), Content: data}, nil
}

// guessType returns the media type for a file name's extension, or
// application/octet-stream. Types that MIME forbids to be base64 encoded
// (multipart/*, message/*) also become application/octet-stream, since
// attachments are always base64.
func guessType(filename string) string {
	t := mime.TypeByExtension(filepath.Ext(filename))
	mt, _, err := mime.ParseMediaType(t)
	if t == "" || err != nil || !base64Allowed(mt) {
		return "application/octet-stream"
	}
	return t
}

// base64Allowed reports whether RFC 2046 allows a base64 body for the media
// type; composite types must be 7bit, 8bit or binary.
func base64Allowed(mediaType string) bool {
	return !strings.HasPrefix(mediaType, "multipart/") && !strings.HasPrefix(mediaType, "message/")
}

// Message is an e-mail message to build. The zero value is an empty message;
// a message needs at least From to be written.
//
// Address fields take one address per entry, either "Name <a@example.com>" or
// bare "a@example.com".
//
// Writing a message fills in Date and MessageID when they are empty and
// remembers the MIME boundaries it chose, so writing the same message again
// gives the same bytes. A Message is therefore not safe for concurrent use.
type Message struct {
	From    string   // author; required
	Sender  string   // agent sending on behalf of From; optional
	ReplyTo []string // where replies should go
	To      []string
	Cc      []string
	// Bcc addresses receive the message but are never written into it.
	Bcc []string

	Subject string
	// Text is the plain-text body and HTML the HTML body. With both, the
	// message is multipart/alternative with the text first.
	Text, HTML string

	// Attachments are files for the reader to save.
	Attachments []Attachment
	// Inline parts (usually images) are shown inside the HTML body, which
	// refers to them as "cid:" + ContentID. They need an HTML body.
	Inline []Attachment

	// Date is the origination date; when zero, the time of the first write
	// is used and stored here.
	Date time.Time
	// MessageID is the Message-ID, with or without angle brackets. When
	// empty, a random one at the From address's domain is generated at the
	// first write and stored here.
	MessageID string

	// Now returns the current time for Date. Nil means time.Now.
	Now func() time.Time
	// Rand supplies randomness for Message-IDs and MIME boundaries. Nil
	// means crypto/rand. Tests set it to get reproducible output.
	Rand io.Reader

	extra      []field   // custom headers in insertion order, values raw
	boundaries [3]string // chosen MIME boundaries, by multipart kind
}

// Attach appends an attachment. A non-empty ContentID does not make it
// inline; append to m.Inline for that.
func (m *Message) Attach(a Attachment) {
	m.Attachments = append(m.Attachments, a)
}

// Header names whose values live in Message fields or that the builder
// writes itself. Keys are in textproto canonical form.
const (
	hSubject   = "Subject"
	hFrom      = "From"
	hSender    = "Sender"
	hTo        = "To"
	hCc        = "Cc"
	hBcc       = "Bcc"
	hReplyTo   = "Reply-To"
	hDate      = "Date"
	hMessageID = "Message-Id"
)

// builderOwned are headers that describe the MIME structure; the builder
// derives them from the content, so callers may not set them.
var builderOwned = map[string]bool{
	"Mime-Version":              true,
	"Content-Type":              true,
	"Content-Transfer-Encoding": true,
	"Content-Disposition":       true,
	"Content-Id":                true,
}

// SetHeader sets a header, replacing any earlier value. Standard headers
// (Subject, From, Sender, To, Cc, Bcc, Reply-To, Date, Message-ID) set the
// matching Message field; address lists are parsed with
// net/mail.ParseAddressList. MIME structure headers (MIME-Version,
// Content-*) are refused because the builder writes them.
//
// The name must be printable ASCII without colon (RFC 5322 ftext). A name or
// value with CR, LF or NUL is refused with a *HeaderError wrapping
// ErrHeaderInjection. Non-ASCII values are written as RFC 2047 encoded-words.
func (m *Message) SetHeader(name, value string) error {
	return m.setHeader(name, value, false)
}

// AddHeader adds a header after those already set, keeping earlier values
// of the same name. For address headers it appends to the list; other
// standard headers may appear only once (RFC 5322 section 3.6), so adding a
// second one is an error. Names and values are checked as in SetHeader.
func (m *Message) AddHeader(name, value string) error {
	return m.setHeader(name, value, true)
}

func (m *Message) setHeader(name, value string, add bool) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkValue(name, "", value); err != nil {
		return err
	}
	key := textproto.CanonicalMIMEHeaderKey(name)
	if builderOwned[key] {
		return &HeaderError{Name: name, Reason: "is written by the message builder and cannot be set"}
	}
	once := func(cur string) error {
		if add && cur != "" {
			return &HeaderError{Name: name, Reason: "may appear only once"}
		}
		return nil
	}
	switch key {
	case hSubject:
		if err := once(m.Subject); err != nil {
			return err
		}
		m.Subject = value
	case hFrom, hSender:
		p := &m.From
		if key == hSender {
			p = &m.Sender
		}
		if err := once(*p); err != nil {
			return err
		}
		if _, err := parseAddress(key, -1, value); err != nil {
			return err
		}
		*p = value
	case hTo, hCc, hBcc, hReplyTo:
		list, err := mail.ParseAddressList(value)
		if err != nil {
			return &AddressError{Field: key, Index: -1, Address: value, Err: err}
		}
		strs := make([]string, 0, len(list))
		for i, a := range list {
			if err := checkAddrSpec(a.Address); err != nil {
				return &AddressError{Field: key, Index: i, Address: a.Address, Err: err}
			}
			strs = append(strs, formatAddress(a, firstBudget(key, i)))
		}
		p := m.addressList(key)
		if add {
			*p = append(*p, strs...)
		} else {
			*p = strs
		}
	case hDate:
		if add && !m.Date.IsZero() {
			return &HeaderError{Name: name, Reason: "may appear only once"}
		}
		t, err := mail.ParseDate(value)
		if err != nil {
			return &HeaderError{Name: name, Reason: "invalid date: " + err.Error()}
		}
		m.Date = t
	case hMessageID:
		if err := once(m.MessageID); err != nil {
			return err
		}
		if _, err := formatMessageID(value); err != nil {
			return err
		}
		m.MessageID = value
	default:
		if !add {
			for i := range m.extra {
				if textproto.CanonicalMIMEHeaderKey(m.extra[i].name) == key {
					// Replace in place, keeping the header's position.
					m.extra[i] = field{name: name, value: value}
					m.extra = deleteFields(m.extra, key, i+1)
					return nil
				}
			}
		}
		m.extra = append(m.extra, field{name: name, value: value})
	}
	return nil
}

// deleteFields removes fields named key at or after index from.
func deleteFields(fs []field, key string, from int) []field {
	out := fs[:from]
	for _, f := range fs[from:] {
		if textproto.CanonicalMIMEHeaderKey(f.name) != key {
			out = append(out, f)
		}
	}
	return out
}

func (m *Message) addressList(key string) *[]string {
	switch key {
	case hTo:
		return &m.To
	case hCc:
		return &m.Cc
	case hBcc:
		return &m.Bcc
	default:
		return &m.ReplyTo
	}
}

// Header returns the first value of the named header, or "" when it is not
// set. Standard headers report their Message fields (address lists joined
// with ", ", Date in RFC 5322 format when set); values are unencoded.
func (m *Message) Header(name string) string {
	switch key := textproto.CanonicalMIMEHeaderKey(name); key {
	case hSubject:
		return m.Subject
	case hFrom:
		return m.From
	case hSender:
		return m.Sender
	case hTo, hCc, hBcc, hReplyTo:
		return strings.Join(*m.addressList(key), ", ")
	case hDate:
		if m.Date.IsZero() {
			return ""
		}
		return m.Date.Format(time.RFC1123Z)
	case hMessageID:
		return m.MessageID
	default:
		for _, f := range m.extra {
			if textproto.CanonicalMIMEHeaderKey(f.name) == key {
				return f.value
			}
		}
		return ""
	}
}

// DelHeader removes a custom header, or clears the Message field of a
// standard one.
func (m *Message) DelHeader(name string) {
	switch key := textproto.CanonicalMIMEHeaderKey(name); key {
	case hSubject:
		m.Subject = ""
	case hFrom:
		m.From = ""
	case hSender:
		m.Sender = ""
	case hTo, hCc, hBcc, hReplyTo:
		*m.addressList(key) = nil
	case hDate:
		m.Date = time.Time{}
	case hMessageID:
		m.MessageID = ""
	default:
		m.extra = deleteFields(m.extra, key, 0)
	}
}

// EnvelopeFrom returns the bare address to use as the SMTP envelope sender
// (MAIL FROM): Sender if set, otherwise From, as Python's
// smtplib.send_message does. It returns ErrNoFrom when both are empty and an
// *AddressError when the address does not parse.
func (m *Message) EnvelopeFrom() (string, error) {
	key, v := hSender, m.Sender
	if v == "" {
		key, v = hFrom, m.From
	}
	if v == "" {
		return "", ErrNoFrom
	}
	a, err := parseAddress(key, -1, v)
	if err != nil {
		return "", err
	}
	return a.Address, nil
}

// Recipients returns the bare addresses of To, Cc and Bcc for the SMTP
// envelope (RCPT TO), in that order, without duplicates. Addresses compare
// equal when their local parts match exactly and their domains match
// ignoring case; the first spelling is kept. The result is empty, not an
// error, when there are no recipients. An unparsable entry gives an
// *AddressError.
func (m *Message) Recipients() ([]string, error) {
	var out []string
	seen := make(map[string]bool)
	for _, l := range []struct {
		key  string
		list []string
	}{{hTo, m.To}, {hCc, m.Cc}, {hBcc, m.Bcc}} {
		for i, s := range l.list {
			a, err := parseAddress(l.key, i, s)
			if err != nil {
				return nil, err
			}
			k := a.Address
			if at := strings.LastIndexByte(k, '@'); at >= 0 {
				k = k[:at] + strings.ToLower(k[at:])
			}
			if !seen[k] {
				seen[k] = true
				out = append(out, a.Address)
			}
		}
	}
	return out, nil
}

// parseAddress parses one address entry of the named field.
func parseAddress(key string, index int, s string) (*mail.Address, error) {
	if err := checkValue(key, "", s); err != nil {
		return nil, &AddressError{Field: key, Index: index, Address: s, Err: err}
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, &AddressError{Field: key, Index: index, Address: s, Err: err}
	}
	if err := checkAddrSpec(a.Address); err != nil {
		return nil, &AddressError{Field: key, Index: index, Address: s, Err: err}
	}
	return a, nil
}

// formatAddress writes an address for a header whose first line has room
// for first octets. An address without a name is written bare, as most mail
// software does. net/mail.Address.String quotes ASCII display names and
// writes the address part; non-ASCII names are written here as encoded-words
// instead, sized like every other encoded header so the line stays within 78
// octets (net/mail's words can overrun it after "From: "). The words use only
// characters RFC 2047 section 5(3) allows in a phrase, and net/mail decodes
// them back to the same name.
func formatAddress(a *mail.Address, first int) string {
	bare := (&mail.Address{Address: a.Address}).String()
	bare = bare[1 : len(bare)-1]
	switch {
	case a.Name == "":
		return bare
	case isPlain(a.Name):
		return a.String()
	}
	return strings.Join(encodeWords(a.Name, first), " ") + " <" + bare + ">"
}

// checkAddrSpec refuses internationalised addresses; see errNonASCIIAddress.
func checkAddrSpec(addr string) error {
	for i := 0; i < len(addr); i++ {
		if addr[i] >= 0x80 {
			return errNonASCIIAddress
		}
	}
	return nil
}

// formatMessageID validates a caller's Message-ID and returns it in angle
// brackets. It must be printable ASCII without spaces or inner brackets;
// RFC 5322's id-left "@" id-right form is recommended but not enforced.
func formatMessageID(id string) (string, error) {
	if err := checkValue("Message-ID", "", id); err != nil {
		return "", err
	}
	inner := strings.TrimSpace(id)
	if strings.HasPrefix(inner, "<") && strings.HasSuffix(inner, ">") {
		inner = inner[1 : len(inner)-1]
	}
	if inner == "" {
		return "", &HeaderError{Name: "Message-ID", Reason: "empty message ID"}
	}
	for i := 0; i < len(inner); i++ {
		if c := inner[i]; c <= ' ' || c > '~' || c == '<' || c == '>' {
			return "", &HeaderError{Name: "Message-ID", Reason: "message ID must be printable ASCII without spaces or angle brackets"}
		}
	}
	return "<" + inner + ">", nil
}

// firstBudget is the room for the first encoded-word of entry i of an
// address header: only the first entry shares a line with the header name.
func firstBudget(key string, i int) int {
	if i > 0 {
		return maxWordLen
	}
	return foldLen - len(key) - 2
}
