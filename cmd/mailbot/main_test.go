package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/smtp"
)

// mailbotBin is the binary under test, built once in TestMain.
var mailbotBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mailbot-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mailbotBin = filepath.Join(dir, "mailbot")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	build := exec.Command(goBin, "build", "-o", mailbotBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building mailbot:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one mailbot invocation produced.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s\n--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// cleanEnv is the test process environment without MAILBOT_ variables,
// plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAILBOT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// mailbot runs the binary in dir with env additions and waits for it.
func mailbot(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mailbotBin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv(env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run mailbot %v: %v", args, err)
	}
	return r
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeCA writes srv's certificate as PEM and returns the path.
func writeCA(t *testing.T, srv *devserver.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// attachment returns the decoded content of the attachment named name in
// the raw message, walking nested multiparts.
func attachment(t *testing.T, raw []byte, name string) ([]byte, bool) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	return findPart(t, msg.Header.Get("Content-Type"), msg.Body, name)
}

func findPart(t *testing.T, ctype string, body io.Reader, name string) ([]byte, bool) {
	mt, params, err := mime.ParseMediaType(ctype)
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return nil, false
	}
	mr := multipart.NewReader(body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return nil, false
		}
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		if p.FileName() == name {
			data, err := io.ReadAll(p)
			if err != nil {
				t.Fatal(err)
			}
			if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "base64") {
				data, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(data)))
				if err != nil {
					t.Fatalf("decode attachment: %v", err)
				}
			}
			return data, true
		}
		if data, ok := findPart(t, p.Header.Get("Content-Type"), p, name); ok {
			return data, true
		}
	}
}

// subject returns the decoded Subject of a raw message.
func subject(t *testing.T, raw []byte) string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	s, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("decode subject: %v", err)
	}
	return s
}

func waitMessages(t *testing.T, srv *devserver.Server, n int) []devserver.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := srv.WaitMessages(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"version", []string{"version"}, 0, []string{"mailbot devel"}},
		{"top help", []string{"--help"}, 0, []string{"run ", "check ", "exec ", "send ", "probe ", "dev-server ", "version "}},
		{"no args", nil, 1, []string{"Commands:"}},
		{"unknown command", []string{"frobnicate"}, 1, []string{`unknown command "frobnicate"`}},
		{"send help", []string{"send", "--help"}, 0, []string{"Usage: mailbot send", "-password-env", "Exit status:", "5  authentication failed", "OAuth2", "XOAUTH2 or OAUTHBEARER", "mailbot oauth login ACCOUNT"}},
		{"exec help", []string{"exec", "--help"}, 0, []string{"Usage: mailbot exec", "-dry-run", "arg[0]", "3  connect failed"}},
		{"run help", []string{"help", "run"}, 0, []string{"Usage: mailbot run", "SIGTERM"}},
		{"probe help", []string{"probe", "-h"}, 0, []string{"Usage: mailbot probe", "-tls", "OAuth2 token (XOAUTH2 or OAUTHBEARER"}},
		{"check help", []string{"check", "--help"}, 0, []string{"Usage: mailbot check", "oauth2 sections", "DKIM keys", "fallback lists"}},
		{"dev-server help", []string{"dev-server", "--help"}, 0, []string{"Usage: mailbot dev-server", "-maildir", "-ca-out"}},
		{"check help", []string{"check", "--help"}, 0, []string{"Usage: mailbot check"}},
		{"bad flag", []string{"send", "--nope"}, 1, []string{"flag provided but not defined"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := mailbot(t, t.TempDir(), nil, tc.args...)
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %v", tc.code, r)
			}
			all := r.stdout + r.stderr
			for _, s := range tc.contains {
				if !strings.Contains(all, s) {
					t.Errorf("output lacks %q:\n%v", s, r)
				}
			}
		})
	}
}

const validConfig = `scripts_dir: scripts
state_dir: state
log:
  level: info
accounts:
  relay:
    host: smtp.example.com
    port: 587
    tls: starttls
    username: bot
    password_env: MAILBOT_TEST_RELAY_PW
    from: bot@example.com
default_account: relay
`

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		config  string
		scripts map[string]string
		env     []string
		code    int
		want    []string // each must appear in stdout
	}{
		{
			name:   "valid",
			config: validConfig,
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			scripts: map[string]string{
				"a.lua":     "local x = 1\n",
				"lib/b.lua": "return {}\n",
			},
			want: []string{"mailbot.yaml: ok (1 account(s), 2 script(s))"},
		},
		{
			name:   "unknown key with its line",
			config: strings.Replace(validConfig, "    port: 587\n", "    port: 587\n    hots: x\n", 1),
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			code:   1,
			want:   []string{"mailbot.yaml:9: accounts.relay.hots: unknown key (known keys: host, port, tls"},
		},
		{
			name:   "inline password rejected",
			config: strings.Replace(validConfig, "    password_env: MAILBOT_TEST_RELAY_PW\n", "    password: hunter2\n", 1),
			code:   1,
			want:   []string{"mailbot.yaml:11: accounts.relay.password: inline passwords are not allowed; use password_env"},
		},
		{
			name:   "missing password env",
			config: validConfig,
			code:   1,
			want:   []string{"mailbot.yaml:11: accounts.relay.password_env: environment variable MAILBOT_TEST_RELAY_PW is not set"},
		},
		{
			name:   "bad tls mode",
			config: strings.Replace(validConfig, "tls: starttls", "tls: ssl", 1),
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			code:   1,
			want:   []string{`mailbot.yaml:9: accounts.relay.tls: unknown mode "ssl"`},
		},
		{
			name:   "port out of range",
			config: strings.Replace(validConfig, "port: 587", "port: 70000", 1),
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			code:   1,
			want:   []string{"mailbot.yaml:8: accounts.relay.port: must be 1-65535"},
		},
		{
			name:   "wrong type",
			config: validConfig + "workers: many\nrun_timeout: 30\n",
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			code:   1,
			want:   []string{`mailbot.yaml:14: workers: cannot use "many" as a whole number`, `mailbot.yaml:15: run_timeout: cannot use "30" as a duration`},
		},
		{
			name:   "missing host and unknown default account",
			config: "default_account: nope\naccounts:\n  x:\n    port: 25\n",
			code:   1,
			want:   []string{"mailbot.yaml:1: default_account: no account named \"nope\"", "mailbot.yaml:3: accounts.x.host: missing required value"},
		},
		{
			name:   "yaml syntax error",
			config: "scripts_dir: [unclosed\n",
			code:   1,
			want:   []string{"mailbot.yaml:"},
		},
		{
			name:    "script syntax error",
			config:  validConfig,
			env:     []string{"MAILBOT_TEST_RELAY_PW=secret"},
			scripts: map[string]string{"bad.lua": "local x = 1\nlocal = 2\n"},
			code:    1,
			want:    []string{"scripts/bad.lua:2: "},
		},
		{
			name:    "bad trigger registration",
			config:  validConfig,
			env:     []string{"MAILBOT_TEST_RELAY_PW=secret"},
			scripts: map[string]string{"cron.lua": "local x = 1\nmailbot.cron(\"61 * * * *\", function() end)\n"},
			code:    1,
			want:    []string{"scripts/cron.lua:2: mailbot.cron:", `minute field "61": must be 0-59`},
		},
		{
			name:    "mail sent at load time",
			config:  validConfig,
			env:     []string{"MAILBOT_TEST_RELAY_PW=secret"},
			scripts: map[string]string{"eager.lua": "require(\"smtp\").connect{ host = \"smtp.example.com\" }\n"},
			code:    1,
			want:    []string{"scripts/eager.lua:1: smtp is not available at load time"},
		},
		{
			name:   "empty config",
			config: "",
			code:   1,
			want: []string{"mailbot.yaml:1: scripts_dir: missing required value",
				"mailbot.yaml:1: state_dir: missing required value"},
		},
		{
			name:   "dev_server.listen port out of range",
			config: validConfig + "dev_server:\n  listen: 127.0.0.1:99999\n",
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			code:   1,
			want:   []string{`mailbot.yaml:15: dev_server.listen: port "99999" must be 1-65535`},
		},
		{
			name:   "dev_server.listen beyond loopback",
			config: validConfig + "dev_server:\n  listen: 0.0.0.0:2525\n",
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			code:   1,
			want:   []string{"mailbot.yaml:15: dev_server.listen: 0.0.0.0:2525 is not a loopback address", "dev_server.allow_remote: true"},
		},
		{
			name:   "dev_server.listen beyond loopback, allowed",
			config: validConfig + "dev_server:\n  listen: \":2525\"\n  allow_remote: true\n",
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			want:   []string{"mailbot.yaml: ok"},
		},
		{
			name:   "fs_roots folder missing",
			config: validConfig + "fs_roots: [scripts, nope]\n",
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			code:   1,
			want:   []string{"mailbot.yaml:14: fs_roots: cannot use nope"},
		},
		{
			name:    "on_file outside fs_roots",
			config:  validConfig + "fs_roots: [scripts]\n",
			env:     []string{"MAILBOT_TEST_RELAY_PW=secret"},
			scripts: map[string]string{"drop.lua": "mailbot.on_file({ dir = \"/etc\" }, function() end)\n"},
			code:    1,
			want:    []string{"scripts/drop.lua:1: mailbot.on_file: dir: path /etc is outside fs_roots (config line 14)"},
		},
		{
			name:    "on_file inside fs_roots",
			config:  validConfig + "fs_roots: [scripts]\n",
			env:     []string{"MAILBOT_TEST_RELAY_PW=secret"},
			scripts: map[string]string{"drop.lua": "mailbot.on_file({ dir = \"drop\" }, function() end)\n"},
			want:    []string{"mailbot.yaml: ok"},
		},
		{
			name:   "CR LF in host",
			config: strings.Replace(validConfig, "host: smtp.example.com", `host: "smtp.example.com\r\nRCPT TO:<x@y>"`, 1),
			env:    []string{"MAILBOT_TEST_RELAY_PW=secret"},
			code:   1,
			want:   []string{"accounts.relay.host: must not contain CR, LF or NUL"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "mailbot.yaml"), tc.config)
			if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, src := range tc.scripts {
				writeFile(t, filepath.Join(dir, "scripts", name), src)
			}
			r := mailbot(t, dir, tc.env, "check", "-c", "mailbot.yaml")
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %v", tc.code, r)
			}
			for _, s := range tc.want {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%v", s, r)
				}
			}
			if strings.Contains(r.stdout+r.stderr, "hunter2") {
				t.Errorf("the inline password was echoed:\n%v", r)
			}
		})
	}
}

func TestCheckUsesMailbotConfigEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "conf", "x.yaml"), "scripts_dir: s\nstate_dir: st\n")
	if err := os.MkdirAll(filepath.Join(dir, "conf", "s"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := mailbot(t, dir, []string{"MAILBOT_CONFIG=conf/x.yaml"}, "check")
	if r.code != 0 || !strings.Contains(r.stdout, "conf/x.yaml: ok") {
		t.Fatalf("want conf/x.yaml checked ok (scripts_dir relative to it), got %v", r)
	}
}

// execServer starts a dev server for exec and send tests and returns it
// with its CA file.
func execServer(t *testing.T, cfg devserver.Config) (*devserver.Server, string) {
	srv := devtest.Start(t, cfg)
	return srv, writeCA(t, srv)
}

func TestExecExitCodes(t *testing.T) {
	t.Parallel()
	okSrv, okCA := execServer(t, devserver.Config{Users: map[string]string{"bot": "right"}})
	mailHook, mailCA := execServer(t, devserver.Config{Hooks: devserver.Hooks{
		Mail: func(string) *devserver.Reject { return &devserver.Reject{Code: 550, Message: "sender blocked"} },
	}})
	rcptHook, rcptCA := execServer(t, devserver.Config{Hooks: devserver.Hooks{
		Rcpt: func(string) *devserver.Reject { return &devserver.Reject{Code: 550, Message: "no such user"} },
	}})
	dataHook, dataCA := execServer(t, devserver.Config{Hooks: devserver.Hooks{
		Data: func(*devserver.Message) *devserver.Reject { return &devserver.Reject{Code: 554, Message: "spam"} },
	}})

	// send is a script that connects to arg[1] trusting arg[2], logs in
	// with arg[3]/arg[4] when given, and sends one message.
	const send = `
local smtp = require("smtp")
local host, port = arg[1]:match("^(.*):(%d+)$")
local c = smtp.connect{ host = host, port = tonumber(port), tls = "starttls", ca_file = arg[2] }
if arg[3] then c:login(arg[3], arg[4]) end
c:sendmail("bot@example.com", { "ops@example.com" }, "Subject: t\r\n\r\nbody\r\n")
c:quit()
`
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "send.lua"), send)
	writeFile(t, filepath.Join(dir, "fail.lua"), "local t = {}\nerror('boom: ' .. #t)\n")
	writeFile(t, filepath.Join(dir, "syntax.lua"), "x = = 1\n")
	writeFile(t, filepath.Join(dir, "args.lua"), `assert(arg[0]:match("args.lua$"), "arg[0] is " .. tostring(arg[0]))
assert(arg[1] == "one" and arg[2] == "two" and arg[3] == nil, "args")
mailbot.every("5m", function() end)
assert(mailbot.script == "args.lua", "mailbot.script")
mailbot.state.set("k", 1)
assert(mailbot.state.get("k") == 1 and mailbot.state.get("nope", "d") == "d", "state")
`)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"ok", []string{"send.lua", okSrv.Addr(), okCA, "bot", "right"}, exitOK, ""},
		{"args and mailbot table", []string{"args.lua", "one", "two"}, exitOK, ""},
		{"script error", []string{"fail.lua"}, exitFailure, "fail.lua:2: boom: 0"},
		{"syntax error", []string{"syntax.lua"}, exitFailure, "syntax.lua:1:"},
		{"missing script", []string{"nope.lua"}, exitFailure, "nope.lua"},
		{"connect refused", []string{"send.lua", closedPort(t), okCA}, exitConnect, "SMTPConnectError"},
		{"tls untrusted", []string{"send.lua", okSrv.Addr(), ""}, exitTLS, "tls"},
		{"auth failure", []string{"send.lua", okSrv.Addr(), okCA, "bot", "wrong"}, exitAuth, "SMTPAuthenticationError"},
		{"sender refused", []string{"send.lua", mailHook.Addr(), mailCA}, exitMail, "SMTPSenderRefused"},
		{"recipients refused", []string{"send.lua", rcptHook.Addr(), rcptCA}, exitRcpt, "SMTPRecipientsRefused"},
		{"data refused", []string{"send.lua", dataHook.Addr(), dataCA}, exitData, "SMTPDataError"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := mailbot(t, dir, nil, append([]string{"exec"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %v", tc.code, r)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%v", tc.stderr, r)
			}
		})
	}
	// Cleanup runs after the parallel subtests have finished.
	t.Cleanup(func() {
		if msgs := okSrv.Messages(); len(msgs) != 1 || msgs[0].AuthUser != "bot" {
			t.Errorf("want one message sent as bot, got %+v", msgs)
		}
	})
}

func TestExecTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "loop.lua"), "while true do end\n")
	r := mailbot(t, dir, nil, "exec", "--timeout", "200ms", "loop.lua")
	if r.code != exitDisconnect || !strings.Contains(r.stderr, "stopped after 200ms") {
		t.Fatalf("want exit 9 after the timeout, got %v", r)
	}
}

func TestExecInvalidConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), "workerz: 3\n")
	writeFile(t, filepath.Join(dir, "a.lua"), "\n")
	r := mailbot(t, dir, nil, "exec", "-c", "mailbot.yaml", "a.lua")
	if r.code != exitConfig || !strings.Contains(r.stderr, "mailbot.yaml:1: workerz: unknown key") {
		t.Fatalf("want exit 2 naming the key, got %v", r)
	}
}

func TestSend(t *testing.T) {
	t.Parallel()
	srv, ca := execServer(t, devserver.Config{Users: map[string]string{"bot": "s3cret"}})
	dir := t.TempDir()
	blob := make([]byte, 3000)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.bin"), blob, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "body.html"), "<p>hello</p>")
	r := mailbot(t, dir, []string{"BOT_PW=s3cret"}, "send",
		"--server", srv.Addr(), "--tls", "starttls", "--ca-file", ca, "--user", "bot", "--password-env", "BOT_PW",
		"--from", "Bot <bot@example.com>", "--to", "a@example.com,b@example.com", "--cc", "c@example.com",
		"--subject", "Grüße vom Bot", "--body", "plain text", "--html-file", "body.html", "--attach", "data.bin", "--debug")
	if r.code != 0 {
		t.Fatalf("send failed: %v", r)
	}
	msgs := waitMessages(t, srv, 1)
	m := msgs[0]
	if got := strings.Join(m.To, ","); got != "a@example.com,b@example.com,c@example.com" || m.From != "bot@example.com" || !m.TLS || m.AuthUser != "bot" {
		t.Errorf("envelope: from %q to %q tls %v auth %q", m.From, got, m.TLS, m.AuthUser)
	}
	if got := subject(t, m.Data); got != "Grüße vom Bot" {
		t.Errorf("subject %q", got)
	}
	if got, ok := attachment(t, m.Data, "data.bin"); !ok || !bytes.Equal(got, blob) {
		t.Errorf("attachment missing or changed (found %v, %d bytes)", ok, len(got))
	}
	if !strings.Contains(r.stderr, "C: AUTH PLAIN <redacted>") || strings.Contains(r.stderr, base64.StdEncoding.EncodeToString([]byte("\x00bot\x00s3cret"))) {
		t.Errorf("debug transcript should show AUTH redacted:\n%s", r.stderr)
	}
}

func TestSendExitCodes(t *testing.T) {
	t.Parallel()
	srv, ca := execServer(t, devserver.Config{Users: map[string]string{"bot": "right"}})
	rcpt, rcptCA := execServer(t, devserver.Config{Hooks: devserver.Hooks{
		Rcpt: func(to string) *devserver.Reject {
			if strings.HasPrefix(to, "bad") {
				return &devserver.Reject{Code: 550, Message: "no such user"}
			}
			return nil
		},
	}})
	base := []string{"send", "--from", "bot@example.com", "--subject", "x", "--body", "y"}
	tests := []struct {
		name string
		env  []string
		args []string
		code int
	}{
		{"connect refused", nil, []string{"--server", closedPort(t), "--to", "a@example.com"}, exitConnect},
		{"untrusted certificate", nil, []string{"--server", srv.Addr(), "--to", "a@example.com"}, exitTLS},
		{"no STARTTLS wanted but auth over plain", []string{"PW=right"}, []string{"--server", srv.Addr(), "--tls", "none", "--user", "bot", "--password-env", "PW", "--to", "a@example.com"}, exitAuth},
		{"wrong password", []string{"PW=wrong"}, []string{"--server", srv.Addr(), "--ca-file", ca, "--user", "bot", "--password-env", "PW", "--to", "a@example.com"}, exitAuth},
		{"password env unset", nil, []string{"--server", srv.Addr(), "--ca-file", ca, "--user", "bot", "--password-env", "PW", "--to", "a@example.com"}, exitAuth},
		{"all recipients refused", nil, []string{"--server", rcpt.Addr(), "--ca-file", rcptCA, "--to", "bad@example.com"}, exitRcpt},
		{"some recipients refused", nil, []string{"--server", rcpt.Addr(), "--ca-file", rcptCA, "--to", "bad@example.com,good@example.com"}, exitRcpt},
		{"missing --to", nil, []string{"--server", srv.Addr()}, exitFailure},
		{"no server", nil, []string{"--to", "a@example.com"}, exitFailure},
		{"header injection", nil, []string{"--server", srv.Addr(), "--ca-file", ca, "--to", "a@example.com", "--subject", "x\r\nBcc: evil@example.com"}, exitFailure},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := mailbot(t, t.TempDir(), tc.env, append(append([]string(nil), base...), tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %v", tc.code, r)
			}
		})
	}
	// Cleanup runs after the parallel subtests have finished.
	t.Cleanup(func() {
		if msgs := rcpt.Messages(); len(msgs) != 1 || strings.Join(msgs[0].To, ",") != "good@example.com" {
			t.Errorf("want exactly the partial-refusal message to good@, got %+v", msgs)
		}
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("want no message on the auth server, got %d", n)
		}
	})
}

func TestSendDryRun(t *testing.T) {
	t.Parallel()
	srv := devtest.Start(t, devserver.Config{})
	dir := t.TempDir()
	out := filepath.Join(dir, "captured")
	writeFile(t, filepath.Join(dir, "note.txt"), "attached text\n")
	r := mailbot(t, dir, []string{"PW=never-used"}, "send", "--dry-run", out,
		"--server", srv.Addr(), "--user", "bot", "--password-env", "PW",
		"--from", "bot@example.com", "--to", "ops@example.com", "--subject", "dry", "--body", "b", "--attach", "note.txt")
	if r.code != 0 {
		t.Fatalf("dry-run send failed: %v", r)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("a dry run delivered %d message(s) to the real server", n)
	}
	emls, _ := filepath.Glob(filepath.Join(out, "*.eml"))
	trs, _ := filepath.Glob(filepath.Join(out, "*.transcript"))
	if len(emls) != 1 || len(trs) != 1 || strings.TrimSuffix(emls[0], ".eml") != strings.TrimSuffix(trs[0], ".transcript") {
		t.Fatalf("want one .eml with its .transcript, got %v %v", emls, trs)
	}
	raw, err := os.ReadFile(emls[0])
	if err != nil {
		t.Fatal(err)
	}
	if subject(t, raw) != "dry" {
		t.Errorf("captured subject %q", subject(t, raw))
	}
	if got, ok := attachment(t, raw, "note.txt"); !ok || string(got) != "attached text\n" {
		t.Errorf("captured attachment %q", got)
	}
	tr, err := os.ReadFile(trs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"meant for " + srv.Addr(), "C: STARTTLS", "C: AUTH PLAIN <redacted>", "C: MAIL FROM:<bot@example.com>", "C: BDAT "} {
		if !strings.Contains(string(tr), want) {
			t.Errorf("transcript lacks %q:\n%s", want, tr)
		}
	}
}

func TestDevServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	maildir := filepath.Join(dir, "var", "maildir")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mailbotBin, "dev-server", "--listen", "127.0.0.1:0", "--maildir", maildir, "--user", "dev:devpw")
	cmd.Env = cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// Wait for the "listening" line; the fingerprint line follows it.
	sc := bufio.NewScanner(stdout)
	var addr, fingerprint string
	for sc.Scan() && (addr == "" || fingerprint == "") {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "mailbot dev-server listening on "); ok {
			addr, _, _ = strings.Cut(rest, " ")
		}
		if rest, ok := strings.CutPrefix(line, "certificate SHA-256 fingerprint: "); ok {
			fingerprint = rest
		}
	}
	if addr == "" || fingerprint == "" {
		t.Fatalf("no listening/fingerprint lines; stderr:\n%s", stderr.String())
	}
	go io.Copy(io.Discard, stdout)

	ca := filepath.Join(dir, "var", "dev-ca.pem")
	r := mailbot(t, dir, []string{"PW=devpw"}, "send", "--server", addr, "--ca-file", ca, "--tls-fingerprint", fingerprint,
		"--user", "dev", "--password-env", "PW", "--from", "a@example.com", "--to", "b@example.com", "--subject", "via dev-server", "--body", "hi")
	if r.code != 0 {
		t.Fatalf("send to dev-server: %v", r)
	}
	files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
	if len(files) != 1 {
		t.Fatalf("want one message in the Maildir, got %v", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if subject(t, raw) != "via dev-server" {
		t.Errorf("stored subject %q", subject(t, raw))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dev-server did not exit 0 on SIGTERM: %v\n%s", err, stderr.String())
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	srv, ca := execServer(t, devserver.Config{})
	fp := smtp.FormatFingerprint(smtp.CertificateFingerprint(srv.Certificate()))
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"untrusted still shows chain", []string{srv.Addr()}, exitTLS, []string{
			"Greeting: 220 ", "EHLO extensions (before STARTTLS):", "  STARTTLS", "EHLO extensions (after STARTTLS):",
			"AUTH mechanisms: PLAIN LOGIN", "SIZE: 26214400 bytes", "TLS: TLS 1.3", "SHA-256: " + fp,
			"Certificate verification: FAILED",
		}},
		{"trusted with ca-file, flags after host", []string{srv.Addr(), "--ca-file", ca}, 0, []string{"Certificate verification: OK"}},
		{"no tls", []string{srv.Addr(), "--tls", "none"}, 0, []string{"  STARTTLS", "AUTH mechanisms: none offered"}},
		{"connect refused", []string{closedPort(t)}, exitConnect, nil},
		{"implicit tls against a STARTTLS server", []string{srv.Addr(), "--tls", "implicit", "--timeout", "2s"}, exitTLS, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := mailbot(t, t.TempDir(), nil, append([]string{"probe"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %v", tc.code, r)
			}
			for _, s := range tc.want {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("stdout lacks %q:\n%v", s, r)
				}
			}
		})
	}
}
