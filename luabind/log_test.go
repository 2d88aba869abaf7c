package luabind

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// newLogTestState returns a state whose log module writes text records
// without timestamps into the returned buffer.
func newLogTestState(t *testing.T, script string) (*bytes.Buffer, func(src string)) {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	L := newTestState(t, Options{Logger: slog.New(h), ScriptName: script})
	run := func(src string) {
		t.Helper()
		buf.Reset()
		if _, err := evalLua(L, `local log = require("log") `+src); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
	}
	return &buf, run
}

func TestLogRecords(t *testing.T) {
	tests := []struct {
		name, script, src, want string
	}{
		{"info with sorted fields", "nightly.lua", `log.info("sent", {to = "ops", count = 2, ok = true})`,
			`level=INFO msg=sent script=nightly.lua count=2 ok=true to=ops`},
		{"no script name", "", `log.warn("queue long")`, `level=WARN msg="queue long"`},
		{"debug", "", `log.debug("d")`, `level=DEBUG msg=d`},
		{"error", "", `log.error("failed", {code = 550})`, `level=ERROR msg=failed code=550`},
		{"nested table becomes group", "", `log.info("x", {smtp = {host = "mx", port = 25}})`,
			`level=INFO msg=x smtp.host=mx smtp.port=25`},
		{"list stays a list", "", `log.info("x", {rcpt = {"a@x", "b@x"}})`, `level=INFO msg=x rcpt="[a@x b@x]"`},
		{"non-string message", "", `log.info(42)`, `level=INFO msg=42`},
		{"fractional number", "", `log.info("x", {ratio = 0.25})`, `level=INFO msg=x ratio=0.25`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf, run := newLogTestState(t, tc.script)
			run(tc.src)
			if got := strings.TrimSpace(buf.String()); got != tc.want {
				t.Errorf("record = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLogRedaction(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"password", `log.info("login", {user = "bob", password = "hunter2"})`,
			`level=INFO msg=login password=<redacted> user=bob`},
		{"case and substrings", `log.info("x", {API_TOKEN = "hunter2", Authorization = "hunter2", client_secret = "hunter2"})`,
			`level=INFO msg=x API_TOKEN=<redacted> Authorization=<redacted> client_secret=<redacted>`},
		{"nested group", `log.info("x", {smtp = {host = "mx", auth = {user = "u", pass = "hunter2"}}})`,
			`level=INFO msg=x smtp.auth=<redacted> smtp.host=mx`},
		{"map inside list", `log.info("x", {accounts = {{name = "a", password = "hunter2"}}})`,
			`level=INFO msg=x accounts="[map[name:a password:<redacted>]]"`},
		{"secret table redacted whole", `log.info("x", {secrets = {"hunter2"}})`,
			`level=INFO msg=x secrets=<redacted>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf, run := newLogTestState(t, "")
			run(tc.src)
			got := strings.TrimSpace(buf.String())
			if got != tc.want {
				t.Errorf("record = %q, want %q", got, tc.want)
			}
			if strings.Contains(got, "hunter2") {
				t.Errorf("secret leaked: %q", got)
			}
		})
	}
}

func TestLogOddValuesDoNotRaise(t *testing.T) {
	buf, run := newLogTestState(t, "")
	run(`local t = {} t.self = t
		log.info("odd", {f = print, cyc = t, null = require("json").null})`)
	got := buf.String()
	for _, want := range []string{`f="function:`, `cyc.self="<cycle or too deep>"`, "null=<nil>"} {
		if !strings.Contains(got, want) {
			t.Errorf("record %q lacks %q", got, want)
		}
	}
}
