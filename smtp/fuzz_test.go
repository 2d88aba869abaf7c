package smtp

// Fuzz tests for the pure parts of the client that hostile or broken peers
// and callers reach directly: the reply reader (every byte a server sends),
// the EHLO keyword parser, the DATA encoder (every byte a caller sends,
// where a slip means a smuggled command or a corrupted message), and the
// reading of a chunked batch's replies.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzReadReply feeds raw server bytes to readReply, reading replies until
// the stream ends or one is malformed, and checks the limits and that every
// accepted reply survives formatting and parsing again unchanged.
func FuzzReadReply(f *testing.F) {
	for _, seed := range []string{
		"220 mx.example.org ESMTP ready\r\n",
		"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
		"550 5.1.1 <nobody@example.org>: user unknown\r\n",
		"250 2.0.0 Ok: queued as 4F3C2\r\n221 2.0.0 Bye\r\n",
		"421 4.3.2 shutting down\r\n",
		"354 End data with <CR><LF>.<CR><LF>\r\n",
		"250 ok\n",
		"250\r\n",
		"250 \r\n",
		"250 2.0.0\r\n",
		"250 2.01.000 odd enhanced code\r\n",
		"550 2.0.0 class disagrees with the code\r\n",
		"250 1.2.3 looks like a version\r\n",
		"250-first\r\n251 second has another code\r\n",
		"2500 four digits\r\n",
		"25\r\n",
		"199 too small\r\n",
		"600 too big\r\n",
		"250 no line end",
		"250-a\r\n",
		"250 a\rb\r\r\n",
		"250 " + strings.Repeat("x", MaxReplyLineLength-6) + "\r\n",
		"250 " + strings.Repeat("x", MaxReplyLineLength-5) + "\n",
		"250 " + strings.Repeat("x", MaxReplyLineLength) + "\r\n",
		strings.Repeat("250-x\r\n", MaxReplyLines-1) + "250 end\r\n",
		strings.Repeat("250-x\r\n", MaxReplyLines) + "250 end\r\n",
		"334 VXNlcm5hbWU6\r\n",
		"250 \xff\xfe binary \x00 text\r\n",
	} {
		f.Add([]byte(seed), uint16(4096))
		f.Add([]byte(seed), uint16(16))
	}
	f.Fuzz(func(t *testing.T, data []byte, bufSize uint16) {
		// Small buffers make readLine assemble lines from several
		// ErrBufferFull fragments; bufio raises sizes below 16.
		r := bufio.NewReaderSize(bytes.NewReader(data), int(bufSize%8192))
		for range 1 + MaxReplyLines {
			rep, err := readReply(r)
			if err != nil {
				var pe *ProtocolError
				if !errors.As(err, &pe) && err != io.EOF {
					t.Fatalf("readReply error %v (%T): want *ProtocolError or io.EOF", err, err)
				}
				return
			}
			fuzzCheckReply(t, rep)
		}
	})
}

// fuzzCheckReply asserts the invariants of a reply readReply accepted, and that
// parse(format(rep)) == rep with the reply formatted as a server sends it.
func fuzzCheckReply(t *testing.T, rep Reply) {
	t.Helper()
	if rep.Code < 200 || rep.Code > 599 {
		t.Fatalf("accepted reply code %d outside 200-599", rep.Code)
	}
	if len(rep.Lines) == 0 || len(rep.Lines) > MaxReplyLines {
		t.Fatalf("accepted reply with %d lines, want 1..%d", len(rep.Lines), MaxReplyLines)
	}
	for i, l := range rep.Lines {
		if len(l)+len("250 \n") > MaxReplyLineLength {
			t.Fatalf("line %d is %d bytes, longer than the %d-byte limit allows", i, len(l), MaxReplyLineLength)
		}
		if strings.Contains(l, "\n") {
			t.Fatalf("line %d contains LF: %q", i, l)
		}
	}
	if e := rep.Enhanced; !e.IsZero() {
		if e[0] != rep.Code/100 || e[1] < 0 || e[1] > 999 || e[2] < 0 || e[2] > 999 {
			t.Fatalf("enhanced code %v does not fit reply code %d", e, rep.Code)
		}
	}

	wire := strings.ReplaceAll(rep.String(), "\n", "\r\n") + "\r\n"
	// Formatting may lengthen a line (a bare-LF line end becomes CRLF, the
	// enhanced code is re-added): then the limit, not equality, applies.
	tooLong := false
	for _, l := range strings.SplitAfter(wire, "\r\n") {
		tooLong = tooLong || len(l) > MaxReplyLineLength
	}
	back, err := readReply(bufio.NewReader(strings.NewReader(wire)))
	if tooLong {
		if !errors.Is(err, errLineTooLong) {
			t.Fatalf("re-reading an over-long formatted reply: err = %v, want errLineTooLong", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("re-reading formatted reply %q: %v", wire, err)
	}
	if !reflect.DeepEqual(back, rep) {
		t.Fatalf("round trip changed the reply:\n got  %#v\n want %#v\n wire %q", back, rep, wire)
	}
}

// FuzzParseEhlo checks the EHLO keyword parser on arbitrary reply lines.
func FuzzParseEhlo(f *testing.F) {
	for _, seed := range []string{
		"mx.example.org greets you\nPIPELINING\nSIZE 10240000\nAUTH PLAIN LOGIN\n8BITMIME\nSTARTTLS",
		"mx\nAUTH=LOGIN PLAIN\nAUTH plain cram-md5\nauth=xoauth2",
		"mx\n  dsn  \nENHANCEDSTATUSCODES\nsmtputf8",
		"mx\n-BAD\nBAD_KEYWORD x\n\n \nAUTH=\nAUTH",
		"mx\nSIZE\nSIZE 0\nX-VENDOR-THING a b c",
		"only the greeting line",
		"mx\nAUTH\tPLAIN\nAUTH= LOGIN\n\xffAUTH PLAIN",
		"mx\nAUTH PLAIN PLAIN plain\nAUTH LOGIN PLAIN",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		// Reply lines never contain LF, so LF splits the input into lines.
		lines := strings.Split(reply, "\n")
		ext, mechs := parseEhlo(lines)
		for kw, params := range ext {
			if !validKeyword(kw) || kw != strings.ToUpper(kw) {
				t.Errorf("keyword %q is not an upper-case RFC 5321 ehlo-keyword", kw)
			}
			if params != strings.TrimSpace(params) {
				t.Errorf("params of %s = %q, not trimmed", kw, params)
			}
		}
		seen := make(map[string]bool)
		for _, m := range mechs {
			if m == "" || m != strings.ToUpper(m) || strings.ContainsAny(m, " \t\r\n") {
				t.Errorf("mechanism %q is empty, not upper case, or has white space", m)
			}
			if seen[m] {
				t.Errorf("mechanism %q listed twice in %q", m, mechs)
			}
			seen[m] = true
		}
		if auth, ok := ext["AUTH"]; ok && auth != strings.Join(mechs, " ") {
			t.Errorf("ext[AUTH] = %q, mechanisms %q", auth, mechs)
		}
		if len(mechs) > 0 {
			if _, ok := ext["AUTH"]; !ok {
				t.Errorf("mechanisms %q without an AUTH keyword", mechs)
			}
		}
		// The first line is the server's name, never a keyword.
		if len(lines) == 1 && len(ext) != 0 {
			t.Errorf("greeting line alone produced keywords %v", ext)
		}
	})
}

// FuzzDotWriter encodes arbitrary bytes, cut into Write calls at fuzzed
// points, and decodes the result the way an SMTP server does.
func FuzzDotWriter(f *testing.F) {
	for _, seed := range []struct {
		data string
		cuts string
	}{
		{"Subject: x\r\n\r\nbody\r\n", ""},
		{".leading dot\r\n..two\r\n.\r\n", "\x01\x05"},
		{"bare\nLF\nlines\n", "\x03"},
		{"bare\rCR\rlines", "\x04\x01"},
		{"a\r\nb", "\x02"},            // CR ends the first Write, LF starts the next
		{"a\r\n.b", "\x02\x01"},       // and a dot follows the split CRLF
		{"a\r\r\n", "\x02\x00\x01"},   // an empty Write between CR and LF
		{"\r", ""},                    // a lone CR is the whole body
		{"\n.\n", "\x01\x01\x01"},     // the SMTP smuggling sequence
		{"\r\n.\r\n", "\x02\x01\x02"}, // an end-of-data marker in the body
		{"", ""},
		{".", ""},
		{"no final newline", "\x07"},
		{"\x00\xff\x80 binary", "\x01"},
		{strings.Repeat("0123456789", 500) + "\r\n." + strings.Repeat("x", 4100), "\xff\xff\xff"},
	} {
		f.Add([]byte(seed.data), []byte(seed.cuts))
	}
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var out bytes.Buffer
		bw := bufio.NewWriterSize(&out, 64)
		dw := newDotWriter(bw)
		rest := data
		for _, c := range cuts {
			n := min(int(c), len(rest))
			if w, err := dw.Write(rest[:n]); err != nil || w != n {
				t.Fatalf("Write(%d bytes) = %d, %v", n, w, err)
			}
			rest = rest[n:]
		}
		if w, err := dw.Write(rest); err != nil || w != len(rest) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(rest), w, err)
		}
		if err := dw.terminate(); err != nil {
			t.Fatalf("terminate: %v", err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		enc := out.Bytes()

		for i, b := range enc {
			if b == '\r' && (i+1 == len(enc) || enc[i+1] != '\n') {
				t.Fatalf("bare CR at offset %d of %q", i, enc)
			}
			if b == '\n' && (i == 0 || enc[i-1] != '\r') {
				t.Fatalf("bare LF at offset %d of %q", i, enc)
			}
		}
		if !bytes.HasSuffix(enc, []byte("\r\n.\r\n")) && !bytes.Equal(enc, []byte(".\r\n")) {
			t.Fatalf("encoding does not end with the end-of-data marker: %q", enc)
		}

		got, ok := fuzzDecodeData(enc)
		if !ok {
			t.Fatalf("end-of-data marker before the end of %q", enc)
		}
		want := fuzzNormaliseCRLF(data)
		if len(want) > 0 && !bytes.HasSuffix(want, []byte("\r\n")) {
			want = append(want, "\r\n"...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("decoded body differs from the input\n input %q\n cuts  %v\n wire  %q\n got   %q\n want  %q", data, cuts, enc, got, want)
		}
		if dw.n != int64(len(data)) {
			t.Errorf("byte count = %d, want %d", dw.n, len(data))
		}
		if lines := int64(bytes.Count(want, []byte("\r\n"))); dw.lines != lines {
			t.Errorf("line count = %d, want %d", dw.lines, lines)
		}
	})
}

// fuzzDecodeData reads a DATA stream as RFC 5321 §4.5.2 says a server does:
// line by line, ending at the first line that is a single ".", removing one
// leading dot from every other line. ok is false if the "." line is not the
// last one, or missing.
func fuzzDecodeData(wire []byte) (body []byte, ok bool) {
	lines := bytes.SplitAfter(wire, []byte("\r\n"))
	for i, l := range lines {
		if bytes.Equal(l, []byte(".\r\n")) {
			return body, i == len(lines)-2 && len(lines[i+1]) == 0
		}
		body = append(body, bytes.TrimPrefix(l, []byte("."))...)
	}
	return body, false
}

// fuzzNormaliseCRLF is the reference for the line-end repair: CRLF stays, and a
// bare CR or bare LF becomes CRLF.
func fuzzNormaliseCRLF(p []byte) []byte {
	out := make([]byte, 0, len(p)+len(p)/8)
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\r':
			if i+1 < len(p) && p[i+1] == '\n' {
				i++
			}
			out = append(out, '\r', '\n')
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, p[i])
		}
	}
	return out
}

// scriptConn is a net.Conn whose peer says the bytes of r and then hangs
// up, and swallows whatever the client writes: a server that answers
// without listening.
type scriptConn struct {
	r *bytes.Reader
}

func (s *scriptConn) Read(p []byte) (int, error)       { return s.r.Read(p) }
func (s *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (s *scriptConn) Close() error                     { return nil }
func (s *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (s *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (s *scriptConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzBDATReplies feeds arbitrary server replies to a chunked SendBatch
// (PIPELINING and CHUNKING offered, SMTP or LMTP, several messages in a
// window, one of them in several chunks) and checks that every message
// gets a verdict that agrees with itself: accepted with a 250, or failed
// with no reply; and that once the connection is gone nothing after it is
// reported accepted.
func FuzzBDATReplies(f *testing.F) {
	ok3 := "250 ok\r\n250 ok\r\n250 2.0.0 queued\r\n"
	for _, seed := range []string{
		ok3 + "250 ok\r\n" + ok3 + "250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n",
		"250 ok\r\n550 no\r\n554 no valid recipients\r\n250 ok\r\n",
		"553 sender\r\n503 need MAIL\r\n503 need MAIL\r\n",
		"250 ok\r\n250 ok\r\n552 too big\r\n",
		"250 ok\r\n250 ok\r\n421 closing\r\n",
		"250 ok\r\n250 ok\r\n",
		"250 ok\r\n250 ok\r\n250-a\r\n250 b\r\n451 later\r\n",
		"2500 odd\r\n",
		"",
	} {
		f.Add([]byte(seed), false, uint8(16))
		f.Add([]byte(seed), true, uint8(1))
	}
	f.Fuzz(func(t *testing.T, replies []byte, lmtp bool, window uint8) {
		hello := "220 x\r\n250-x\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE\r\n"
		conn := &scriptConn{r: bytes.NewReader(append([]byte(hello), replies...))}
		c, err := NewClient(conn, "x")
		if err != nil {
			t.Fatal(err)
		}
		c.lmtp = lmtp
		c.BatchWindow = int(window % 20)
		msgs := []Outgoing{
			{From: "a@x", To: []string{"b@x"}, Data: []byte("one\r\n")},
			{From: "a@x", To: []string{"b@x", "c@x"}, Data: []byte("two\nlines\n"), Opts: &SendOptions{ChunkSize: 4}},
			{From: "a@x", To: []string{"d@x"}, Data: []byte("three")},
		}
		res := c.SendBatch(context.Background(), msgs, nil)
		if len(res) != len(msgs) {
			t.Fatalf("%d results for %d messages", len(res), len(msgs))
		}
		gone := false
		for i, r := range res {
			if r.Err == nil {
				if gone {
					t.Fatalf("message %d accepted after the connection failed: %+v", i, res)
				}
				if r.Reply.Code != 250 {
					t.Fatalf("message %d accepted with reply %d", i, r.Reply.Code)
				}
				for addr, e := range r.Refused {
					if e == nil || e.Code == 250 || e.Code == 251 {
						t.Fatalf("message %d: %s listed refused with %v", i, addr, e)
					}
				}
				continue
			}
			if r.Reply.Code != 0 {
				t.Fatalf("message %d failed (%v) but has reply %d", i, r.Err, r.Reply.Code)
			}
			var uo *UnknownOutcomeError
			var de *DisconnectedError
			var pe *ProtocolError
			if errors.As(r.Err, &uo) || errors.As(r.Err, &de) || errors.As(r.Err, &pe) {
				gone = true
			}
		}
	})
}
