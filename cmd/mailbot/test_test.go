package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example scripts' tests run as part of go test, through the CLI,
// and leave the examples' state folder alone.
func TestExampleScriptTests(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	varDir := filepath.Join(root, "examples", "var")
	_, statErr := os.Stat(varDir)
	hadVar := statErr == nil
	junit := filepath.Join(t.TempDir(), "junit.xml")

	r := mailbot(t, root, nil, "test", "-c", "examples/mailbot.yaml", "--junit", junit)
	if r.code != 0 {
		t.Fatalf("mailbot test on the examples: %v", r)
	}
	for _, f := range []string{"daily-report_test.lua", "drop-notify_test.lua", "healthcheck_test.lua", "sales-report_test.lua"} {
		if !strings.Contains(r.stdout, "ok  \texamples/scripts/"+f+"\t") {
			t.Errorf("no ok line for %s:\n%s", f, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "PASS: ") {
		t.Errorf("no summary:\n%s", r.stdout)
	}
	if !hadVar {
		if _, err := os.Stat(varDir); err == nil {
			t.Errorf("mailbot test created %s", varDir)
			os.RemoveAll(varDir)
		}
	}

	data, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests  int `xml:"tests,attr"`
		Fails  int `xml:"failures,attr"`
		Suites []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("junit: %v\n%s", err, data)
	}
	if len(doc.Suites) != 4 || doc.Fails != 0 || doc.Tests < 12 {
		t.Errorf("junit: %d suites, %d tests, %d failures\n%s", len(doc.Suites), doc.Tests, doc.Fails, data)
	}
}

func TestTestCommand(t *testing.T) {
	const script = `mailbot.every("1h", function() mailbot.state.set("ran", true) end, { name = "tick" })`
	cases := []struct {
		name  string
		files map[string]string
		args  []string
		code  int
		out   []string // in stdout
		err   string   // in stderr
	}{
		{name: "pass", files: map[string]string{
			"s.lua":      script,
			"s_test.lua": `local t = require("testing"); local s = t.load("s.lua"); t.test("ticks", function() s.fire("tick"); t.eq(s.state().ran, true) end)`,
		}, code: 0, out: []string{"ok  \ts_test.lua\t", "PASS: 1 tests in 1 files"}},
		{name: "tests folder", files: map[string]string{
			"s.lua":            script,
			"tests/s_test.lua": `local t = require("testing"); local s = t.load("s.lua"); t.test("ticks", function() s.fire("#1") end)`,
		}, code: 0, out: []string{"ok  \t" + filepath.Join("tests", "s_test.lua")}},
		{name: "failure", files: map[string]string{
			"s_test.lua": "local t = require('testing')\nt.test('bad', function()\n  t.eq(1, 2)\nend)",
		}, args: []string{"-v"}, code: 1, out: []string{"=== RUN   bad", "--- FAIL: bad (s_test.lua:3)", "FAIL\ts_test.lua\t"}},
		{name: "load error", files: map[string]string{
			"s_test.lua": `require("testing").load("absent.lua")`,
		}, code: 2, out: []string{"[load error]", "absent.lua"}},
		{name: "-run", files: map[string]string{
			"s_test.lua": `local t = require("testing"); t.test("one", function() end); t.test("two", function() t.fail("ran") end)`,
		}, args: []string{"-run", "^one$"}, code: 0, out: []string{"PASS: 1 tests"}},
		{name: "bad -run", files: map[string]string{"s_test.lua": ``}, args: []string{"-run", "("}, code: 1, err: "-run"},
		{name: "no test files", files: map[string]string{"s.lua": script}, code: 1, err: "no *_test.lua files"},
		{name: "path given", files: map[string]string{
			"a_test.lua": `require("testing").test("a", function() end)`,
			"b_test.lua": `require("testing").test("b", function() error("b ran") end)`,
		}, args: []string{"-v", "a_test.lua"}, code: 0, out: []string{"--- PASS: a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, src := range c.files {
				writeFile(t, filepath.Join(dir, name), src)
			}
			r := mailbot(t, dir, nil, append([]string{"test"}, c.args...)...)
			if r.code != c.code {
				t.Fatalf("exit %d, want %d: %v", r.code, c.code, r)
			}
			for _, w := range c.out {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q: %v", w, r)
				}
			}
			if c.err != "" && !strings.Contains(r.stderr, c.err) {
				t.Errorf("stderr lacks %q: %v", c.err, r)
			}
		})
	}
}

// With a config, accounts work in tests without their secrets, and
// connections go to the capture, not to the configured host.
func TestTestCommandWithConfig(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), `scripts_dir: scripts
state_dir: state
default_account: relay
accounts:
  relay:
    host: smtp.invalid
    port: 587
    username: reports@example.com
    password_env: RELAY_PASSWORD_NOT_SET
    from: "Reports <reports@example.com>"
`)
	writeFile(t, filepath.Join(dir, "scripts", "r.lua"), `local smtp = require("smtp")
local mail = require("mail")
mailbot.cron("0 8 * * *", function()
  local c = smtp.connect()
  c:login()
  c:send_message(mail.message{ from = "reports@example.com", to = { "ops@example.com" }, subject = "hi", text = "x" })
  c:quit()
  mail.send(mail.message{ from = "reports@example.com", to = { "ops@example.com" }, subject = "queued", text = "y" })
end, { name = "daily" })`)
	writeFile(t, filepath.Join(dir, "scripts", "r_test.lua"), `local t = require("testing")
local r = t.load("r.lua")
t.test("sends", function()
  r.fire("daily")
  local s = t.sent()
  t.eq(#s, 2)
  t.eq(s[1].subject, "hi")
  t.eq(s[2].subject, "queued")
  t.eq(s[2].via, "mail.send")
end)`)
	r := mailbot(t, dir, nil, "test", "-c", "mailbot.yaml")
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
		t.Error("mailbot test created the state folder")
	}
}
