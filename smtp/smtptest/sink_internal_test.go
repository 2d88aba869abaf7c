package smtptest

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// naiveBodyLen is the reference for readDataBody: the body ends where
// "\r\n.\r\n" first occurs, counting the CRLF before the body.
func naiveBodyLen(stream []byte) int64 {
	i := bytes.Index(append([]byte("\r\n"), stream...), dataEnd)
	if i < 0 {
		return -1
	}
	return int64(i) // (i + 2 bytes of CRLF) - 2 bytes of the prepended CRLF
}

func TestReadDataBody(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   int64
	}{
		{"empty body", ".\r\nQUIT\r\n", 0},
		{"one line", "hello\r\n.\r\n", 7},
		{"dot-stuffed", "..x\r\n.\r\n", 5},
		{"dot after bare LF", "a\n.\r\nb\r\n.\r\n", 8},
		{"CR runs", "\r\r\n\r\r\n.\r\n", 6},
		{"dot not alone", "a\r\n.x\r\n.\r\n", 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if naive := naiveBodyLen([]byte(tc.stream)); naive != tc.want {
				t.Fatalf("bad case: naive length %d, want %d", naive, tc.want)
			}
			// One byte per read forces every marker to straddle buffers.
			for _, r := range []*bufio.Reader{
				bufio.NewReader(strings.NewReader(tc.stream)),
				bufio.NewReader(iotest.OneByteReader(strings.NewReader(tc.stream))),
			} {
				got, err := readDataBody(r)
				if err != nil || got != tc.want {
					t.Errorf("readDataBody = %d, %v; want %d", got, err, tc.want)
				}
			}
		})
	}
}

func FuzzReadDataBody(f *testing.F) {
	for _, s := range []string{".\r\n", "a\r\n.\r\n", "\r\n.\r\r\n.\r\n", "x\r\n.\n.\r\n"} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		want := naiveBodyLen(stream)
		r := bufio.NewReaderSize(iotest.HalfReader(&chunkReader{b: stream, n: int(chunk%16) + 1}), 16)
		got, err := readDataBody(r)
		if want < 0 {
			if err == nil {
				t.Fatalf("readDataBody(%q) = %d, want an error: no terminator", stream, got)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("readDataBody(%q) = %d, %v; want %d", stream, got, err, want)
		}
	})
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}
