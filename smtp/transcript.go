package smtp

import (
	"fmt"
	"io"
	"strconv"
)

// redacted replaces credentials in transcripts and logs.
const redacted = "<redacted>"

// transcript writes the debug log of a conversation. A nil *transcript
// writes nothing, so call sites need no checks.
type transcript struct {
	w        io.Writer
	showBody bool
}

func (t *transcript) client(line string) {
	if t == nil {
		return
	}
	fmt.Fprintf(t.w, "C: %s\n", line)
}

func (t *transcript) server(r Reply) {
	if t == nil {
		return
	}
	for i, l := range r.Lines {
		sep := " "
		if i < len(r.Lines)-1 {
			sep = "-"
		}
		if i == 0 && !r.Enhanced.IsZero() {
			l = r.Enhanced.String() + " " + l
		}
		fmt.Fprintf(t.w, "S: %d%s%s\n", r.Code, sep, l)
	}
}

func (t *transcript) note(format string, args ...any) {
	if t == nil {
		return
	}
	fmt.Fprintf(t.w, "-- "+format+"\n", args...)
}

// body records a message body: summarised by default, since bodies are
// large and may hold personal data.
func (t *transcript) body(n int64, lines int64, raw []byte) {
	if t == nil {
		return
	}
	if t.showBody && raw != nil {
		fmt.Fprintf(t.w, "C: %s\n", strconv.Quote(string(raw)))
	}
	fmt.Fprintf(t.w, "C: <message body: %d bytes, %d lines>\n", n, lines)
	fmt.Fprintf(t.w, "C: .\n")
}

// chunk records one BDAT chunk of n bytes (raw is its source, before line
// ends are made CRLF), summarised unless showBody.
func (t *transcript) chunk(n int, raw []byte) {
	if t == nil {
		return
	}
	if t.showBody && raw != nil {
		fmt.Fprintf(t.w, "C: %s\n", strconv.Quote(string(raw)))
	}
	fmt.Fprintf(t.w, "C: <chunk: %d bytes>\n", n)
}
