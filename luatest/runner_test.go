package luatest

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/luabind"
)

// fixture writes scripts and test files into a fresh scripts folder.
func fixture(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// run runs every test file of dir and returns the result and the report.
func run(t *testing.T, dir string, mod func(*Options)) (*Result, string) {
	t.Helper()
	files, err := Find(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	opts := Options{ScriptsDir: dir, Out: &out, Base: dir, RunTimeout: 20 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	res := Run(context.Background(), files, opts)
	return res, out.String()
}

const mailer = `
local smtp = require("smtp")
local mail = require("mail")
local time = require("time")
local env  = require("env")
local function send()
  local c = smtp.connect{ host = "smtp.example.com", port = 587 }   -- not a real host in a test
  c:send_message(mail.message{ from = "bot@example.com", to = { env.get("TO") or "ops@example.com" },
    subject = "Report " .. time.format(time.now(), "%Y-%m-%d"), text = "hello" })
  c:quit()
  mailbot.state.set("runs", (mailbot.state.get("runs") or 0) + 1)
end
mailbot.cron("0 8 * * *", send, { name = "daily" })
mailbot.every("5m", send)
`

func TestRunnerOutcomes(t *testing.T) {
	cases := []struct {
		name      string
		test      string
		opts      func(*Options)
		exit      int
		want      []string // in the report
		notWanted []string
	}{
		{
			name: "pass",
			test: `local t = require("testing")
local m = t.load("mailer.lua")
t.test("sends", function()
  t.clock.set("2026-12-07T08:00:00Z")
  m.fire("daily")
  t.eq(#t.sent(), 1)
  t.eq(t.sent()[1].subject, "Report 2026-12-07")
end)`,
			exit: ExitPass,
			want: []string{"ok  \tmailer_test.lua\t", "PASS: 1 tests in 1 files"},
		},
		{
			name: "failure reports file:line, expected and got; the next test still runs",
			test: `local t = require("testing")
t.test("first", function()
  t.eq(1 + 1, 3)
  t.fail("not reached")
end)
t.test("second", function() t.ok(true) end)`,
			opts: func(o *Options) { o.Verbose = true },
			exit: ExitFail,
			want: []string{"--- FAIL: first (mailer_test.lua:3)\n    mailer_test.lua:3: t.eq: values differ\n        expected: 3\n        got:      2\n",
				"=== RUN   second\n--- PASS: second", "FAIL\tmailer_test.lua\t", "FAIL: 1 of 2 tests failed"},
			notWanted: []string{"not reached"},
		},
		{
			name: "an unexpected error fails at the test file's line",
			test: `local t = require("testing")
local m = t.load("mailer.lua")
t.test("boom", function()
  m.fire("nope")
end)`,
			exit: ExitFail,
			want: []string{"--- FAIL: boom (mailer_test.lua:4)", `has no trigger "nope"; it has mailer.lua#daily (cron 0 8 * * *), mailer.lua#2 (every 5m)`},
		},
		{
			name: "load error of a script",
			test: `local t = require("testing")
local m = t.load("missing.lua")
t.test("never", function() end)`,
			exit: ExitLoadError,
			want: []string{"--- FAIL: mailer_test.lua [load error]", "missing.lua", "FAIL\tmailer_test.lua\t[load error]", "1 of 1 files did not load"},
		},
		{
			name: "syntax error in the test file",
			test: "local t = require('testing')\nt.test('x', function()\n",
			exit: ExitLoadError,
			want: []string{"[load error]", "mailer_test.lua"},
		},
		{
			name: "-run selects tests",
			test: `local t = require("testing")
t.test("alpha one", function() end)
t.test("beta", function() t.fail("beta ran") end)
t.test("alpha two", function() end)`,
			opts:      func(o *Options) { o.Run = regexp.MustCompile("^alpha"); o.Verbose = true },
			exit:      ExitPass,
			want:      []string{"--- PASS: alpha one", "--- PASS: alpha two", "PASS: 2 tests"},
			notWanted: []string{"beta"},
		},
		{
			name: "assertions",
			test: `local t = require("testing")
t.test("all pass", function()
  t.eq({ 1, { a = "x" } }, { 1, { a = "x" } })
  t.ne("a", "b")
  t.ok(1)
  t.match("total 12", "total %d+")
  local e = t.error(function() error("disk full") end, "disk")
  t.match(e, "disk full")
  t.error(function() error({ kind = "SMTPDataError", message = "no" }) end, "SMTPDataError")
end)
t.test("t.error without an error", function() t.error(function() end) end)
t.test("t.error with another error", function() t.error(function() error("x") end, "^y") end)
t.test("t.match", function() t.match("abc", "^b") end)
t.test("t.ne", function() t.ne({ 1 }, { 1 }) end)
t.test("t.ok", function() t.ok(nil, "should be set") end)`,
			exit: ExitFail,
			want: []string{"FAIL: 5 of 6 tests failed",
				"--- FAIL: t.error without an error (mailer_test.lua:11)", "expected: an error\n        got:      no error",
				"--- FAIL: t.error with another error (mailer_test.lua:12)", `t.error: a different error was raised`,
				"--- FAIL: t.match (mailer_test.lua:13)", `expected: a string matching "^b"`,
				"--- FAIL: t.ne (mailer_test.lua:14)",
				"--- FAIL: t.ok (mailer_test.lua:15)", "should be set"},
			notWanted: []string{"--- FAIL: all pass"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := fixture(t, map[string]string{"mailer.lua": mailer, "mailer_test.lua": c.test})
			res, out := run(t, dir, c.opts)
			if got := res.ExitCode(); got != c.exit {
				t.Errorf("exit = %d, want %d\n%s", got, c.exit, out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks %q:\n%s", w, out)
				}
			}
			for _, w := range c.notWanted {
				if strings.Contains(out, w) {
					t.Errorf("report has %q:\n%s", w, out)
				}
			}
		})
	}
}

// Each test starts from fresh state: sent list, clock, environment,
// replies, files and the script itself (its mailbot.state).
func TestStateResetBetweenTests(t *testing.T) {
	dir := fixture(t, map[string]string{"mailer.lua": mailer, "mailer_test.lua": `
local t = require("testing")
local m = t.load("mailer.lua")
t.clock.set("2026-01-01T00:00:00Z")     -- the top level sets what every test starts from
t.env.set("TO", "base@example.com")
t.fs.write("shared.txt", "from the top level")
t.test("one", function()
  t.clock.set("2026-12-07T08:00:00Z")
  t.env.set("TO", "changed@example.com")
  t.fs.write("mine.txt", "x")
  m.fire("#2")
  t.eq(t.sent()[1].to, { "changed@example.com" })
  t.eq(m.state().runs, 1)
  t.smtp.reply("MAIL", "451 4.3.0 later")
  t.smtp.reply("MAIL", "451 4.3.0 later")   -- one is left over at the end of the test
  t.error(function() m.fire("daily") end, "SMTPSenderRefused")
end)
t.test("two", function()
  t.eq(#t.sent(), 0)
  t.eq(m.state().runs, nil)
  t.eq(t.fs.read("mine.txt"), nil)
  t.eq(t.fs.read("shared.txt"), "from the top level")
  m.fire("daily")                        -- no scripted reply is left over
  local s = t.sent()[1]
  t.eq(s.to, { "base@example.com" })
  t.eq(s.subject, "Report 2026-01-01")
  t.match(s.headers.Date, "^Thu, 01 Jan 2026 00:00:00")
end)`})
	res, out := run(t, dir, nil)
	if res.ExitCode() != ExitPass {
		t.Fatalf("exit %d:\n%s", res.ExitCode(), out)
	}
}

// env and os.getenv see only t.env.set, never the process environment.
func TestEnvIsolation(t *testing.T) {
	t.Setenv("MAILBOT_LUATEST_SECRET", "real value")
	dir := fixture(t, map[string]string{
		"envy.lua": `local env = require("env")
SEEN = { env.get("MAILBOT_LUATEST_SECRET"), os.getenv("MAILBOT_LUATEST_SECRET") }
mailbot.on_start(function() mailbot.state.set("seen", env.get("MAILBOT_LUATEST_SECRET") or "unset") end)`,
		"envy_test.lua": `local t = require("testing")
local e = t.load("envy.lua")
t.test("unset", function()
  t.eq(os.getenv("MAILBOT_LUATEST_SECRET"), nil)
  e.fire("#1")
  t.eq(e.state().seen, "unset")
end)
t.test("set by the test", function()
  t.env.set("MAILBOT_LUATEST_SECRET", "fake")
  e.fire("#1")
  t.eq(e.state().seen, "fake")
end)`})
	res, out := run(t, dir, nil)
	if res.ExitCode() != ExitPass {
		t.Fatalf("exit %d:\n%s", res.ExitCode(), out)
	}
}

// A script aiming at a real host reaches the capture server: the message
// is captured with its envelope, nothing leaves the machine. Accounts log
// in with a placeholder password, never the real secret.
func TestNoNetwork(t *testing.T) {
	dir := fixture(t, map[string]string{
		"relay.lua": `local smtp = require("smtp")
local mail = require("mail")
mailbot.on_file({ dir = "in", pattern = "*.csv", name = "csv" }, function(ev)
  local c = smtp.connect{ account = "relay" }
  c:login()
  c:sendmail("bounce@example.com", { "a@example.com", "b@example.com" },
    mail.message{ from = "Bot <bot@example.com>", to = { "a@example.com" }, cc = { "b@example.com" },
      subject = "=?utf-8?q?Gr=C3=BC=C3=9Fe?= " .. ev.name, text = "see attached", html = "<p>see</p>",
      attachments = { { path = ev.path } } })
  c:quit()
end)`,
		"relay_test.lua": `local t = require("testing")
local r = t.load("relay.lua")
t.test("captured", function()
  t.fs.write("in/x.csv", "a,b\n1,2\n")
  t.error(function() r.fire("csv", { file = "in/x.txt" }) end, "does not match")
  r.fire("csv", { file = "in/x.csv" })
  local m = t.sent()[1]
  t.eq(m.mail_from, "bounce@example.com")
  t.eq(m.rcpt, { "a@example.com", "b@example.com" })
  t.eq(m.from, "bot@example.com")
  t.eq(m.cc, { "b@example.com" })
  t.eq(m.subject, "Grüße x.csv")
  t.eq(m.text, "see attached")
  t.eq(m.html, "<p>see</p>")
  t.eq(m.attachments[1].filename, "x.csv")
  t.eq(m.attachments[1].size, 8)
  t.eq(m.attachments[1].content_type, "text/csv")
  t.match(m.raw, "^.*\r\n\r\n")
end)`})
	pwCalled := false
	res, out := run(t, dir, func(o *Options) {
		o.Lua.SMTP.Accounts = map[string]luabind.Account{"relay": {
			Host: "smtp.invalid", Port: 587, TLS: "starttls", Username: "u",
			Password: func() (string, error) { pwCalled = true; return "real-secret", nil }}}
	})
	if res.ExitCode() != ExitPass {
		t.Fatalf("exit %d:\n%s", res.ExitCode(), out)
	}
	if pwCalled {
		t.Error("the account's real password source was read")
	}
}

// Paths of scripts and t.fs stay in the private folder; the real scripts
// folder is copied there, never written.
func TestPrivateFolder(t *testing.T) {
	dir := fixture(t, map[string]string{
		"templates/hi.txt": "hi {{.name}}",
		"writer.lua": `local fs = require("fs")
local template = require("template")
mailbot.every("1h", function()
  fs.mkdir("out")
  fs.write("out/result.txt", template.render(fs.read("templates/hi.txt"), { name = "x" }))
  fs.write("templates/hi.txt", "changed")
end)`,
		"writer_test.lua": `local t = require("testing")
local w = t.load("writer.lua")
t.test("writes privately", function()
  w.fire("#1")
  t.eq(t.fs.read("out/result.txt"), "hi x")
  t.eq(t.fs.read("templates/hi.txt"), "changed")
end)
t.test("cannot leave the folder", function()
  t.error(function() t.fs.write("../../escape.txt", "x") end, "outside the test's private folder")
  t.error(function() t.fs.write("/etc/escape.txt", "x") end, "outside")
end)`})
	res, out := run(t, dir, nil)
	if res.ExitCode() != ExitPass {
		t.Fatalf("exit %d:\n%s", res.ExitCode(), out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "templates/hi.txt")); string(b) != "hi {{.name}}" {
		t.Errorf("the real template was changed to %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("the script wrote into the real scripts folder")
	}
}

func TestJUnit(t *testing.T) {
	dir := fixture(t, map[string]string{
		"a_test.lua": `local t = require("testing")
t.test("good", function() end)
t.test("bad", function() t.eq("x", "y") end)`,
		"tests/b_test.lua": `local t = require("testing")
t.load("nope.lua")`,
	})
	res, _ := run(t, dir, nil)
	if res.ExitCode() != ExitLoadError {
		t.Errorf("exit = %d, want %d", res.ExitCode(), ExitLoadError)
	}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, res); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests  int `xml:"tests,attr"`
		Fails  int `xml:"failures,attr"`
		Errors int `xml:"errors,attr"`
		Suites []struct {
			Name  string `xml:"name,attr"`
			Tests int    `xml:"tests,attr"`
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Body    string `xml:",chardata"`
				} `xml:"failure"`
				Error *struct {
					Message string `xml:"message,attr"`
				} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if doc.Tests != 3 || doc.Fails != 1 || doc.Errors != 1 || len(doc.Suites) != 2 {
		t.Fatalf("totals tests=%d failures=%d errors=%d suites=%d\n%s", doc.Tests, doc.Fails, doc.Errors, len(doc.Suites), buf.String())
	}
	a, b := doc.Suites[0], doc.Suites[1]
	if a.Name != "a_test.lua" || len(a.Cases) != 2 || a.Cases[0].Name != "good" || a.Cases[0].Failure != nil {
		t.Errorf("suite a: %+v", a)
	}
	if f := a.Cases[1].Failure; f == nil || f.Message != "a_test.lua:3: t.eq: values differ" || !strings.Contains(f.Body, `expected: "y"`) {
		t.Errorf("failure of bad: %+v", f)
	}
	if b.Name != filepath.Join("tests", "b_test.lua") || len(b.Cases) != 1 || b.Cases[0].Error == nil || !strings.Contains(b.Cases[0].Error.Message, "nope.lua") {
		t.Errorf("suite b: %+v", b)
	}
}

// A handler that never returns is stopped by the run timeout and fails
// its test; the next test runs.
func TestHandlerTimeout(t *testing.T) {
	dir := fixture(t, map[string]string{
		"loop.lua": `mailbot.every("1m", function() while true do end end, { name = "spin" })`,
		"loop_test.lua": `local t = require("testing")
local l = t.load("loop.lua")
t.test("spins", function() l.fire("spin") end)
t.test("after", function() t.ok(true) end)`,
	})
	res, out := run(t, dir, func(o *Options) { o.RunTimeout = 300 * time.Millisecond })
	if res.ExitCode() != ExitFail || len(res.Files[0].Tests) != 2 || res.Files[0].Tests[1].Failure != nil {
		t.Fatalf("exit %d:\n%s", res.ExitCode(), out)
	}
	if !strings.Contains(out, "--- FAIL: spins (loop_test.lua:3)") {
		t.Errorf("report:\n%s", out)
	}
}

func TestRegistrationChecks(t *testing.T) {
	cases := map[string]string{
		`mailbot.every("5m", function() end, { name = "a" }); mailbot.cron("0 * * * *", function() end, { name = "a" })`: `name "a" is already used`,
		`mailbot.every("5m", function() end, { nmae = "a" })`:                                                            `unknown option "nmae"`,
		`mailbot.cron("61 * * * *", function() end)`:                                                                     "mailbot.cron",
		`mailbot.on_file({ pattern = "*" }, function() end)`:                                                             "dir is required",
	}
	for src, want := range cases {
		dir := fixture(t, map[string]string{"s.lua": src, "s_test.lua": `require("testing").load("s.lua")`})
		res, out := run(t, dir, nil)
		if res.ExitCode() != ExitLoadError || !strings.Contains(out, want) {
			t.Errorf("%s: exit %d, want load error with %q:\n%s", src, res.ExitCode(), want, out)
		}
	}
}

// The fake clock drives time.now and the schedules' ev.scheduled_at; the
// event carries the script and trigger label as under the engine.
func TestFakeClockEvent(t *testing.T) {
	dir := fixture(t, map[string]string{
		"ev.lua": `local time = require("time")
mailbot.cron("0 8 * * *", function(ev)
  mailbot.state.set("ev", { at = ev.scheduled_at, now = time.now(), script = ev.script, trigger = ev.trigger })
end)`,
		"ev_test.lua": `local t = require("testing")
local e = t.load("ev.lua")
t.test("clock", function()
  t.clock.set("2026-12-07T08:00:00Z")
  e.fire("ev#1")
  t.eq(e.state().ev, { at = 1796630400, now = 1796630400, script = "ev.lua", trigger = "cron 0 8 * * *" })
  t.clock.advance(60)
  e.fire("ev.lua#1")
  t.eq(e.state().ev.at, 1796630460)
end)`})
	res, out := run(t, dir, nil)
	if res.ExitCode() != ExitPass {
		t.Fatalf("exit %d:\n%s", res.ExitCode(), out)
	}
}

// Alert handlers are captured like the other triggers, and a test fires
// them with the event it wants them to see.
func TestAlertHandlersFire(t *testing.T) {
	dir := fixture(t, map[string]string{
		"ops.lua": `
mailbot.on_dead_letter(function(ev)
  mailbot.state.set("dead", ev.id .. " " .. ev.recipients[1])
end, { name = "dl" })
mailbot.on_run_failed(function(ev)
  mailbot.state.set("failed", ev.script .. " " .. ev.trigger .. " " .. ev.where)
end)`,
		"ops_test.lua": `local t = require("testing")
local ops = t.load("ops.lua")
t.test("alerts", function()
  ops.fire("dl", { id = "Q1", recipients = { "gone@example.com" } })
  t.eq(ops.state().dead, "Q1 gone@example.com")
  ops.fire("#2", { script = "report.lua", trigger = "report#daily", where = "report.lua:7" })
  t.eq(ops.state().failed, "report.lua report#daily report.lua:7")
  t.eq(#ops.triggers(), 2)
end)`})
	res, out := run(t, dir, nil)
	if res.ExitCode() != ExitPass {
		t.Fatalf("exit %d:\n%s", res.ExitCode(), out)
	}
}
