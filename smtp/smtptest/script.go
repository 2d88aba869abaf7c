package smtptest

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// defaultDripInterval is the pause between bytes of "! drip" until the script
// sets another with "! drip-interval".
const defaultDripInterval = 10 * time.Millisecond

// opKind says what one script step does.
type opKind int

const (
	opSend      opKind = iota // S: line
	opExpect                  // C: line (exact)
	opExpectAny               // C: *
	opExpectRe                // C~ regexp
	opData                    // ! data
	opStartTLS                // ! starttls
	opClose                   // ! close
	opRaw                     // ! raw bytes
	opDrip                    // ! drip line
	opHang                    // ! hang
	opFlood                   // ! flood N line
	opExpectEOF               // ! expect-eof
	opChunk                   // ! chunk
)

// step is one parsed script line. "! drip-interval" produces no step of its
// own: it is folded into the interval of the drips that follow it.
type step struct {
	line  int            // 1-based line number in the script
	src   string         // the script line as written, for error messages
	kind  opKind         //
	text  string         // line to send or expect
	raw   []byte         // opRaw: bytes with escapes resolved
	re    *regexp.Regexp // opExpectRe
	n     int            // opFlood: number of copies
	pause time.Duration  // opDrip: pause between bytes
}

// parseError reports a malformed script line.
type parseError struct {
	line int
	src  string
	err  error
}

func (e *parseError) Error() string {
	return fmt.Sprintf("smtptest: script line %d %q: %v", e.line, e.src, e.err)
}

func (e *parseError) Unwrap() error { return e.err }

// parseScript turns script text into steps. Both LF and CRLF line endings are
// accepted so that transcripts edited on any platform load the same way.
func parseScript(text string) ([]step, error) {
	var steps []step
	pause := defaultDripInterval
	terminal := 0 // line of a "! close" or "! hang", after which nothing may run
	for i, src := range strings.Split(text, "\n") {
		lineNo := i + 1
		src = strings.TrimSuffix(src, "\r")
		line := strings.TrimLeft(src, " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, args ...any) ([]step, error) {
			return nil, &parseError{line: lineNo, src: src, err: fmt.Errorf(format, args...)}
		}
		if terminal != 0 {
			return fail("step after the script ended on line %d", terminal)
		}
		st := step{line: lineNo, src: line}
		switch {
		case line == "S:" || strings.HasPrefix(line, "S: "):
			st.kind, st.text = opSend, cut(line, 3)
		case line == "C:" || strings.HasPrefix(line, "C: "):
			st.kind, st.text = opExpect, cut(line, 3)
			if st.text == "*" {
				st.kind = opExpectAny
			}
		case strings.HasPrefix(line, "C~ "):
			re, err := regexp.Compile(line[3:])
			if err != nil {
				return fail("bad regexp: %w", err)
			}
			st.kind, st.re, st.text = opExpectRe, re, line[3:]
		case strings.HasPrefix(line, "!"):
			word, arg, _ := strings.Cut(strings.TrimLeft(line[1:], " \t"), " ")
			switch word {
			case "data", "starttls", "close", "hang", "expect-eof", "chunk":
				if arg != "" {
					return fail("%q takes no argument", word)
				}
				st.kind = map[string]opKind{
					"data": opData, "starttls": opStartTLS, "close": opClose,
					"hang": opHang, "expect-eof": opExpectEOF, "chunk": opChunk,
				}[word]
				if st.kind == opClose || st.kind == opHang {
					terminal = lineNo
				}
			case "raw":
				b, err := unescape(arg)
				if err != nil {
					return fail("%w", err)
				}
				if len(b) == 0 {
					return fail("raw needs bytes to send")
				}
				st.kind, st.raw = opRaw, b
			case "drip":
				st.kind, st.text, st.pause = opDrip, arg, pause
			case "drip-interval":
				d, err := time.ParseDuration(arg)
				if err != nil || d < 0 {
					return fail("bad drip interval %q", arg)
				}
				pause = d
				continue
			case "flood":
				count, text, _ := strings.Cut(arg, " ")
				n, err := strconv.Atoi(count)
				if err != nil || n <= 0 {
					return fail("flood needs a positive count, got %q", count)
				}
				st.kind, st.n, st.text = opFlood, n, text
			default:
				return fail("unknown directive %q", word)
			}
		default:
			return fail(`want "S: ", "C: ", "C~ ", "!" or "#"`)
		}
		steps = append(steps, st)
	}
	return steps, nil
}

// cut returns s without its first n bytes, or "" when s is shorter.
func cut(s string, n int) string {
	if len(s) <= n {
		return ""
	}
	return s[n:]
}

// errBadEscape reports an escape sequence "! raw" does not know.
var errBadEscape = errors.New("bad escape sequence")

// unescape resolves the escapes "! raw" accepts: \r \n \t \\ and \xHH.
func unescape(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, fmt.Errorf("%w: trailing backslash", errBadEscape)
		}
		i++
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("%w: short \\x", errBadEscape)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("%w: \\x%s", errBadEscape, s[i+1:i+3])
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("%w: \\%c", errBadEscape, s[i])
		}
	}
	return out, nil
}

// escape is the inverse of unescape, used to write "! raw" steps into the
// transcript in the same notation the script used.
func escape(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == '\r':
			sb.WriteString(`\r`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\\':
			sb.WriteString(`\\`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
