package smtptest

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseScript(t *testing.T) {
	script := strings.Join([]string{
		"# comment",
		"",
		"S: 220 x",
		"S:",
		"  C: EHLO localhost",
		"C: *",
		"C:",
		`C~ ^AUTH .+$`,
		"! data",
		"! starttls",
		`! raw a\r\n`,
		"! drip slow",
		"! drip-interval 50ms",
		"! drip slower",
		"! flood 3 250-x",
		"! expect-eof",
		"! close",
	}, "\n")
	steps, err := parseScript(script)
	if err != nil {
		t.Fatalf("parseScript: %v", err)
	}
	type summary struct {
		line  int
		kind  opKind
		text  string
		n     int
		pause time.Duration
	}
	var got []summary
	for _, st := range steps {
		got = append(got, summary{st.line, st.kind, st.text, st.n, st.pause})
	}
	want := []summary{
		{3, opSend, "220 x", 0, 0},
		{4, opSend, "", 0, 0},
		{5, opExpect, "EHLO localhost", 0, 0},
		{6, opExpectAny, "*", 0, 0},
		{7, opExpect, "", 0, 0},
		{8, opExpectRe, "^AUTH .+$", 0, 0},
		{9, opData, "", 0, 0},
		{10, opStartTLS, "", 0, 0},
		{11, opRaw, "", 0, 0},
		{12, opDrip, "slow", 0, defaultDripInterval},
		{14, opDrip, "slower", 0, 50 * time.Millisecond},
		{15, opFlood, "250-x", 3, 0},
		{16, opExpectEOF, "", 0, 0},
		{17, opClose, "", 0, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d steps %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if raw := steps[8].raw; string(raw) != "a\r\n" {
		t.Errorf("raw = %q, want %q", raw, "a\r\n")
	}
}

func TestParseScriptErrors(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		wantLine int
	}{
		{"unknown prefix", "S: 220\nX: y\n", 2},
		{"missing space", "S:220\n", 1},
		{"unknown directive", "! teleport\n", 1},
		{"bad regexp", "C~ ^(unclosed\n", 1},
		{"bad escape", `! raw a\q` + "\n", 1},
		{"short hex escape", `! raw \x4` + "\n", 1},
		{"bad hex escape", `! raw \xzz` + "\n", 1},
		{"trailing backslash", `! raw a\` + "\n", 1},
		{"empty raw", "! raw \n", 1},
		{"argument to data", "! data now\n", 1},
		{"flood without count", "! flood x 250\n", 1},
		{"flood zero", "! flood 0 250\n", 1},
		{"bad drip interval", "! drip-interval fast\n", 1},
		{"negative drip interval", "! drip-interval -1s\n", 1},
		{"step after close", "! close\n\n# fine\nS: 250\n", 4},
		{"step after hang", "! hang\nC: QUIT\n", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseScript(tc.script)
			var pe *parseError
			if !errors.As(err, &pe) {
				t.Fatalf("parseScript = %v, want a *parseError", err)
			}
			if pe.line != tc.wantLine {
				t.Errorf("error on line %d, want %d: %v", pe.line, tc.wantLine, err)
			}
		})
	}
}

func TestUnescapeRoundTrip(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
	}{
		{`plain`, []byte("plain")},
		{`a\r\nb`, []byte("a\r\nb")},
		{`\t\\\x00\xff\x7F`, []byte{'\t', '\\', 0, 0xff, 0x7f}},
	}
	for _, tc := range tests {
		got, err := unescape(tc.in)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("unescape(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		back, err := unescape(escape(got))
		if err != nil || !bytes.Equal(back, got) {
			t.Errorf("unescape(escape(%q)) = %q, %v", got, back, err)
		}
	}
}

// fatalTB records Fatalf instead of failing the real test, to check that a
// constructor rejects bad input through tb.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = format
	f.mu.Unlock()
	runtime.Goexit()
}

func TestNewServerRejectsBadScript(t *testing.T) {
	tests := []struct {
		name string
		run  func(tb testing.TB)
	}{
		{"parse error", func(tb testing.TB) { NewServer(tb, "S: 220\n! bogus\n") }},
		{"no connections", func(tb testing.TB) { NewServer(tb, "S: 220\n", WithConnections(0)) }},
		{"no scripts", func(tb testing.TB) { NewServerScripts(tb, nil) }},
		{"missing file", func(tb testing.TB) { LoadScript(tb, "/nonexistent/smtptest/script.txt") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ftb := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.run(ftb)
			}()
			<-done
			ftb.mu.Lock()
			defer ftb.mu.Unlock()
			if ftb.msg == "" {
				t.Fatal("no Fatalf for bad input")
			}
		})
	}
}
