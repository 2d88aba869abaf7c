package message

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"
)

const (
	// foldLen is the line length RFC 5322 section 2.1.1 says lines SHOULD
	// keep to; header lines are folded to fit it where they can.
	foldLen = 78
	// maxLineLen is the hard limit of RFC 5322 section 2.1.1 (998 octets
	// plus CRLF). Nothing this package writes may exceed it.
	maxLineLen = 998
	// maxWordLen is the longest encoded-word RFC 2047 section 2 allows.
	maxWordLen = 75
)

// errLineTooLong is the cause when a header cannot be folded under
// maxLineLen because it has no whitespace to fold at.
var errLineTooLong = errors.New("line longer than 998 octets and cannot be folded")

// field is one header line to write. value is already encoded (pure ASCII)
// but not yet folded.
type field struct {
	name, value string
}

// checkName validates a header field name against RFC 5322 section 3.6.8:
// one or more printable ASCII characters other than colon.
func checkName(name string) error {
	if name == "" {
		return &HeaderError{Name: name, Reason: "empty header name"}
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '\r' || c == '\n' || c == 0:
			return &HeaderError{Name: name, Reason: "name contains CR/LF", Err: ErrHeaderInjection}
		case c < '!' || c > '~' || c == ':':
			return &HeaderError{Name: name, Reason: "name contains a character not allowed in header names"}
		}
	}
	return nil
}

// checkValue refuses values that would break out of their header line (CR,
// LF), that C-based mail software may truncate at (NUL), or that cannot be
// labelled utf-8 honestly (invalid UTF-8). what prefixes the reason, for
// example "filename" gives "filename contains CR/LF".
func checkValue(name, what, v string) error {
	prefix := ""
	if what != "" {
		prefix = what + " "
	}
	if strings.ContainsAny(v, "\r\n") {
		return &HeaderError{Name: name, Reason: prefix + "contains CR/LF", Err: ErrHeaderInjection}
	}
	if strings.IndexByte(v, 0) >= 0 {
		return &HeaderError{Name: name, Reason: prefix + "contains NUL", Err: ErrHeaderInjection}
	}
	if !utf8.ValidString(v) {
		return &HeaderError{Name: name, Reason: prefix + "is not valid UTF-8"}
	}
	return nil
}

// isPlain reports whether v can be written as it is: printable ASCII (and
// tab) without leading or trailing whitespace, which readers would trim.
func isPlain(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < ' ' || c > '~') && c != '\t' {
			return false
		}
	}
	return v == strings.TrimSpace(v)
}

// encodeText returns the header-ready form of an unstructured value: v itself
// when it is plain, otherwise RFC 2047 encoded-words separated by spaces. The
// first word is sized to fit on the header's first line.
func encodeText(name, v string) string {
	if isPlain(v) {
		return v
	}
	return strings.Join(encodeWords(v, foldLen-len(name)-2), " ")
}

// qSafe reports whether c may stand for itself in Q encoding. The set is the
// one RFC 2047 section 5(3) allows even inside a phrase, so the same words
// are safe in any header.
func qSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '!' || c == '*' || c == '+' || c == '-' || c == '/'
}

func qLen(c byte) int {
	if qSafe(c) || c == ' ' {
		return 1
	}
	return 3
}

func bLen(n int) int { return (n + 2) / 3 * 4 }

// encodeWords encodes s (valid UTF-8) as RFC 2047 encoded-words. Words break
// only between runes, because RFC 2047 section 5 forbids splitting a
// character across words; the first word is at most first octets long (when
// that leaves useful room) and the others at most 75. B encoding is used when
// it is shorter than Q, which is the case for most non-Latin text.
func encodeWords(s string, first int) []string {
	q := 0
	for i := 0; i < len(s); i++ {
		q += qLen(s[i])
	}
	useB := bLen(len(s)) < q
	prefix := "=?utf-8?q?"
	if useB {
		prefix = "=?utf-8?b?"
	}
	const overhead = len("=?utf-8?q?") + len("?=")

	limit := first
	if limit > maxWordLen || limit < overhead+16 {
		limit = maxWordLen
	}
	var words []string
	start, enc := 0, 0 // start of the current chunk and its encoded length
	flush := func(end int) {
		words = append(words, prefix+encodeChunk(s[start:end], useB)+"?=")
		start, enc, limit = end, 0, maxWordLen
	}
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		var n int
		if useB {
			n = bLen(i+size-start) - enc
		} else {
			for j := i; j < i+size; j++ {
				n += qLen(s[j])
			}
		}
		if enc+n > limit-overhead && i > start {
			flush(i)
			continue
		}
		enc += n
		i += size
	}
	if start < len(s) || len(words) == 0 {
		flush(len(s))
	}
	return words
}

func encodeChunk(s string, useB bool) string {
	if useB {
		return b64.EncodeToString([]byte(s))
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ':
			b.WriteByte('_')
		case qSafe(c):
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0x0f])
		}
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

var crlf = []byte("\r\n")

// isWSP reports RFC 5322 whitespace.
func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// appendField appends "name: value" CRLF to buf, folding the value at spaces
// so lines stay within 78 octets where possible. It folds only at a single
// space between two non-space characters: readers unfold by replacing the
// line break and any surrounding whitespace with one space, so folding there
// gives back exactly the original value. It fails when a line would still be
// longer than 998 octets.
func appendField(buf []byte, name, value string) ([]byte, error) {
	start := len(buf)
	buf = append(buf, name...)
	buf = append(buf, ':')
	lineStart := start
	// tokens are separated by fold points; the first token follows ": ".
	tokStart := 0
	emit := func(tok string, first bool) {
		if first {
			buf = append(buf, ' ')
			buf = append(buf, tok...)
			return
		}
		if len(buf)-lineStart+1+len(tok) > foldLen && len(buf)-lineStart > len(name)+2 {
			buf = append(buf, '\r', '\n')
			lineStart = len(buf)
		}
		buf = append(buf, ' ')
		buf = append(buf, tok...)
	}
	first := true
	for i := 1; i+1 < len(value); i++ {
		if value[i] == ' ' && !isWSP(value[i-1]) && !isWSP(value[i+1]) {
			emit(value[tokStart:i], first)
			first = false
			tokStart = i + 1
		}
	}
	emit(value[tokStart:], first)
	// Check the hard limit on every line written.
	for rest := buf[start:]; len(rest) > 0; {
		n := bytes.Index(rest, crlf)
		if n < 0 {
			n = len(rest)
		}
		if n > maxLineLen {
			return buf[:start], &HeaderError{Name: name, Reason: errLineTooLong.Error()}
		}
		if n == len(rest) {
			break
		}
		rest = rest[n+2:]
	}
	buf = append(buf, '\r', '\n')
	return buf, nil
}
