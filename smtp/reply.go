package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on what one server reply may cost. RFC 5321 §4.5.3.1.5 caps a reply
// line at 512 octets; real servers exceed that (long EHLO lists, verbose
// rejection texts), so mailbot accepts up to MaxReplyLineLength and refuses
// anything larger rather than growing a buffer without bound.
const (
	// MaxReplyLineLength is the longest reply line accepted, CRLF included.
	MaxReplyLineLength = 8192
	// MaxReplyLines is the largest number of lines accepted in one reply.
	MaxReplyLines = 256
)

// EnhancedCode is an RFC 3463 enhanced status code, class.subject.detail,
// such as 5.7.0. The zero value means the server sent none.
type EnhancedCode [3]int

// IsZero reports whether the server sent no enhanced status code.
func (e EnhancedCode) IsZero() bool { return e == EnhancedCode{} }

// String formats the code as "5.7.0", or "" for the zero value.
func (e EnhancedCode) String() string {
	if e.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

// Reply is one complete server reply: a three-digit code and its text lines.
type Reply struct {
	// Code is the three-digit reply code, 200 to 599 (RFC 5321 §4.2).
	Code int
	// Enhanced is the RFC 3463 code from the first line, when the server
	// advertised ENHANCEDSTATUSCODES or simply sent one.
	Enhanced EnhancedCode
	// Lines holds the text of each line without the code, the separator
	// and, on the first line, the enhanced code.
	Lines []string
}

// Text returns the reply lines joined with "\n", like smtplib's message.
func (r Reply) Text() string { return strings.Join(r.Lines, "\n") }

// Positive reports whether the code is 2yz or 3yz.
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// String formats the reply as the server would send it, one line per text
// line, without CRLF: "250-first\n250 last".
func (r Reply) String() string {
	var b strings.Builder
	for i, l := range r.Lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		sep := byte(' ')
		if i < len(r.Lines)-1 {
			sep = '-'
		}
		b.WriteString(strconv.Itoa(r.Code))
		b.WriteByte(sep)
		if i == 0 && !r.Enhanced.IsZero() {
			b.WriteString(r.Enhanced.String())
			b.WriteByte(' ')
		}
		b.WriteString(l)
	}
	if len(r.Lines) == 0 {
		b.WriteString(strconv.Itoa(r.Code))
	}
	return b.String()
}

// errLineTooLong and friends describe why a reply was malformed; readReply
// wraps them in a *ProtocolError.
var (
	errLineTooLong   = fmt.Errorf("reply line longer than %d bytes", MaxReplyLineLength)
	errTooManyLines  = fmt.Errorf("reply has more than %d lines", MaxReplyLines)
	errUnterminated  = errors.New("connection closed in the middle of a reply line")
	errCodeMismatch  = errors.New("reply lines carry different codes")
	errMalformedCode = errors.New("reply line does not start with a three-digit code")
)

// readLine reads one line ending in LF (CRLF or bare LF), without the line
// end. It never buffers more than MaxReplyLineLength bytes.
func readLine(r *bufio.Reader, scratch []byte) ([]byte, error) {
	line := scratch[:0]
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > MaxReplyLineLength {
			return nil, errLineTooLong
		}
		switch err {
		case nil:
			line = append(line, frag...)
			line = line[:len(line)-1]
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line = line[:n-1]
			}
			return line, nil
		case bufio.ErrBufferFull:
			line = append(line, frag...)
			continue
		case io.EOF:
			if len(line)+len(frag) > 0 {
				return nil, errUnterminated
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

// parseReplyLine splits "250-text" into its code, continuation flag and text.
func parseReplyLine(line []byte) (code int, more bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", errMalformedCode
	}
	for _, c := range line[:3] {
		if c < '0' || c > '9' {
			return 0, false, "", errMalformedCode
		}
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if code < 200 || code > 599 {
		return 0, false, "", fmt.Errorf("reply code %d out of range 200-599", code)
	}
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case ' ':
	case '-':
		more = true
	default:
		// "2500 ok" or "250x": a fourth digit or junk where the separator
		// belongs. Guessing would desynchronise every later reply.
		return 0, false, "", errMalformedCode
	}
	return code, more, string(line[4:]), nil
}

// parseEnhancedCode extracts a leading "x.y.z " from text. The class must
// agree with the reply code's first digit (RFC 3463 §2), so that a text
// that merely starts with a version number is not taken for a status code.
func parseEnhancedCode(code int, text string) (EnhancedCode, string) {
	var ec EnhancedCode
	rest := text
	for i := 0; i < 3; i++ {
		j := 0
		for j < len(rest) && j < 4 && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if j == 0 || j > 3 || (i == 0 && j != 1) {
			return EnhancedCode{}, text
		}
		n, _ := strconv.Atoi(rest[:j])
		ec[i] = n
		rest = rest[j:]
		if i < 2 {
			if len(rest) == 0 || rest[0] != '.' {
				return EnhancedCode{}, text
			}
			rest = rest[1:]
		}
	}
	if len(rest) > 0 && rest[0] != ' ' {
		return EnhancedCode{}, text
	}
	if ec[0] != code/100 || (ec[0] != 2 && ec[0] != 4 && ec[0] != 5) {
		return EnhancedCode{}, text
	}
	return ec, strings.TrimPrefix(rest, " ")
}

// readReply reads one complete, possibly multi-line reply. Any deviation from
// the reply grammar is a *ProtocolError: the caller must then consider the
// connection broken, since the position of the next reply is unknown.
func readReply(r *bufio.Reader) (Reply, error) {
	var (
		rep     Reply
		scratch [256]byte
	)
	for {
		line, err := readLine(r, scratch[:])
		if err != nil {
			if errors.Is(err, errLineTooLong) || errors.Is(err, errUnterminated) {
				return rep, &ProtocolError{Err: err}
			}
			return rep, err
		}
		code, more, text, err := parseReplyLine(line)
		if err != nil {
			return rep, &ProtocolError{Err: err, Line: truncateForError(line)}
		}
		if len(rep.Lines) == 0 {
			rep.Code = code
			rep.Enhanced, text = parseEnhancedCode(code, text)
		} else if code != rep.Code {
			return rep, &ProtocolError{Err: errCodeMismatch, Line: truncateForError(line)}
		}
		if len(rep.Lines) == MaxReplyLines {
			return rep, &ProtocolError{Err: errTooManyLines}
		}
		rep.Lines = append(rep.Lines, text)
		if !more {
			return rep, nil
		}
	}
}

// truncateForError keeps error messages readable when a server sends junk.
func truncateForError(b []byte) string {
	const max = 80
	s := strconv.QuoteToASCII(string(b))
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
