package smtp

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// TestWireSizeMatchesWhatIsSent checks the SIZE= value against the bytes
// dotWriter actually sends, minus dot-stuffing and the final "." line
// (RFC 1870 §3), for bodies with bare LF, bare CR, mixed line ends and no
// final line end.
func TestWireSizeMatchesWhatIsSent(t *testing.T) {
	for _, body := range []string{
		"", "x", "x\r\n", "x\n", "x\r", "a\nb\nc\n", "a\rb\r\nc\n\rd", "\r\r\n\n\r",
		".leading dot\n..two\n", "Subject: lf\n\nline one\nline two\n", "no newline at end",
		strings.Repeat("0123456789\n", 1000), "\n", "\r", "\r\n",
	} {
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		d := newDotWriter(w)
		if _, err := d.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
		d.terminate()
		w.Flush()
		sent := strings.TrimSuffix(buf.String(), ".\r\n")
		want := 0
		for _, line := range strings.SplitAfter(sent, "\r\n") {
			if strings.HasPrefix(line, "..") {
				line = line[1:] // the stuffed dot is not part of the message
			}
			want += len(line)
		}
		if got := wireSize([]byte(body)); got != want {
			t.Errorf("wireSize(%q) = %d, want %d (sent %q)", body, got, want, sent)
		}
	}
}
