package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

// reloadConfig is a config whose account "relay" is srv (its certificate
// in a file of its own), at the given log level, with extra appended.
func reloadConfig(t *testing.T, dir string, srv *devserver.Server, level, extra string) {
	t.Helper()
	ca := filepath.Join(dir, "ca-"+strings.ReplaceAll(srv.Addr(), ":", "-")+".pem")
	writeFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	host, port, _ := net.SplitHostPort(srv.Addr())
	// Write then rename, so the daemon never reads half a file.
	tmp := filepath.Join(dir, ".mailbot.yaml.tmp")
	writeFile(t, tmp, fmt.Sprintf(`scripts_dir: scripts
state_dir: state
log:
  level: %s
default_account: relay
accounts:
  relay:
    host: %s
    port: %s
    tls: starttls
    username: bot
    password_env: RELAY_PW
    ca_file: %s
%s`, level, host, port, filepath.Base(ca), extra))
	if err := os.Rename(tmp, filepath.Join(dir, "mailbot.yaml")); err != nil {
		t.Fatal(err)
	}
}

// notifySocket is a unixgram socket the test owns, standing in for
// systemd's $NOTIFY_SOCKET; next returns the next datagram that is not a
// WATCHDOG=1 (those are counted).
type notifySocket struct {
	t         *testing.T
	path      string
	conn      *net.UnixConn
	watchdogs int
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{t: t, path: path, conn: conn}
}

func (n *notifySocket) next(logs interface{ String() string }) string {
	n.t.Helper()
	buf := make([]byte, 4096)
	for {
		n.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		k, err := n.conn.Read(buf)
		if err != nil {
			n.t.Fatalf("no notification: %v; log:\n%s", err, logs.String())
		}
		if msg := string(buf[:k]); msg != "WATCHDOG=1" {
			return msg
		} else {
			n.watchdogs++
		}
	}
}

// TestRunReloadAndNotify drives "mailbot run" under a fake systemd: READY
// after start, a good SIGHUP moving the relay account to a second server
// and turning on debug logs while a run is in flight, a bad SIGHUP that
// keeps the running config, WATCHDOG=1 with a short WATCHDOG_USEC, and
// STOPPING=1 on SIGTERM.
func TestRunReloadAndNotify(t *testing.T) {
	t.Parallel()
	users := map[string]string{"bot": "s3cret"}
	inData := make(chan struct{}, 1)
	release := make(chan struct{})
	a := devtest.Start(t, devserver.Config{Users: users, Hooks: devserver.Hooks{Data: func(m *devserver.Message) *devserver.Reject {
		if strings.Contains(string(m.Data), "Subject: slow") {
			inData <- struct{}{}
			<-release
		}
		return nil
	}}})
	b := devtest.Start(t, devserver.Config{Users: users})
	dir := t.TempDir()
	reloadConfig(t, dir, a, "info", "")
	writeFile(t, filepath.Join(dir, "scripts", "drop.lua"), `
local mail = require("mail")
local smtp = require("smtp")
mailbot.on_file({ dir = "../drop", pattern = "*.txt", settle = "50ms", after = "delete" }, function(ev)
  local m = mail.message{ from = "bot@example.org", to = "ops@example.org", subject = ev.name, text = "hi" }
  if ev.name == "slow.txt" then
    -- A run in flight during the reload: straight to the relay.
    m = mail.message{ from = "bot@example.org", to = "ops@example.org", subject = "slow", text = "hi" }
    local c = smtp.connect{ account = "relay" }
    c:login()
    c:send_message(m)
    c:quit()
    return
  end
  mail.send(m)
end)`)
	drop := func(name string) {
		t.Helper()
		tmp := filepath.Join(dir, "drop", "."+name)
		writeFile(t, tmp, "x\n")
		if err := os.Rename(tmp, filepath.Join(dir, "drop", name)); err != nil {
			t.Fatal(err)
		}
	}
	sock := newNotifySocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd, logs := startRunLogged(t, ctx, dir, cleanEnv(append(relayEnv, "NOTIFY_SOCKET="+sock.path, "WATCHDOG_USEC=100000")...))
	defer cmd.Process.Kill()
	waitMsgs := func(srv *devserver.Server, n int, what string) []devserver.Message {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
		defer wcancel()
		msgs, err := srv.WaitMessages(wctx, n)
		if err != nil {
			t.Fatalf("%s: %v; log:\n%s", what, err, logs.String())
		}
		return msgs
	}
	waitLog := func(s string, from int) int {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			out := logs.String()
			if i := strings.Index(out[from:], s); i >= 0 {
				return from + i + len(s)
			}
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q; log:\n%s", s, out)
			}
			time.Sleep(20 * time.Millisecond) // a subprocess's log: polled
		}
	}
	hup := func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	if got := sock.next(logs); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if !strings.Contains(logs.String(), "engine started") {
		t.Errorf("READY=1 before the scripts were loaded; log:\n%s", logs.String())
	}
	drop("before.txt")
	if m := waitMsgs(a, 1, "delivery to the first relay"); !strings.Contains(string(m[0].Data), "Subject: before.txt") {
		t.Fatalf("first relay got %q", m[0].Data)
	}

	// A run in flight, then a good reload.
	drop("slow.txt")
	<-inData
	reloadConfig(t, dir, b, "debug", "")
	hup()
	if got := sock.next(logs); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`).MatchString(got) {
		t.Fatalf("notification %q, want RELOADING=1 with MONOTONIC_USEC", got)
	}
	if got := sock.next(logs); got != "READY=1" {
		t.Fatalf("notification %q after reload, want READY=1", got)
	}
	at := waitLog("config reloaded", 0)
	line := logs.String()[strings.LastIndex(logs.String()[:at], "\n")+1:]
	line = line[:strings.Index(line+"\n", "\n")]
	if !strings.Contains(line, "accounts.relay") || !strings.Contains(line, "log.level") || strings.Contains(line, "s3cret") {
		t.Errorf("reload record %q should name accounts.relay and log.level, and no secret", line)
	}
	close(release)
	if m := waitMsgs(a, 2, "the run in flight"); !strings.Contains(string(m[1].Data), "Subject: slow") {
		t.Fatalf("the run in flight sent %q", m[1].Data)
	}
	drop("after.txt")
	if m := waitMsgs(b, 1, "delivery to the new relay"); !strings.Contains(string(m[0].Data), "Subject: after.txt") {
		t.Fatalf("new relay got %q", m[0].Data)
	}
	if len(a.Messages()) != 2 {
		t.Errorf("old relay got %d messages after the reload", len(a.Messages())-2)
	}
	if !strings.Contains(logs.String()[at:], "level=DEBUG") {
		t.Errorf("log.level debug not in effect after reload; log:\n%s", logs.String()[at:])
	}

	// A bad config: every problem with file:line, the old config stays.
	bad := filepath.Join(dir, "mailbot.yaml")
	good, _ := os.ReadFile(bad)
	broken := strings.Replace(string(good), "tls: starttls", "tls: sometimes", 1) + "no_such_key: 1\n"
	writeFile(t, bad, broken)
	mark := len(logs.String())
	hup()
	sock.next(logs) // RELOADING=1
	if got := sock.next(logs); got != "READY=1" {
		t.Fatalf("notification %q after a refused reload, want READY=1", got)
	}
	waitLog("config reload refused", mark)
	tail := logs.String()[mark:]
	for _, want := range []string{`mailbot.yaml:10: `, `mailbot.yaml:14: `} {
		if !strings.Contains(tail, want) {
			t.Errorf("refused reload does not report %q; log:\n%s", want, tail)
		}
	}
	drop("still.txt")
	if m := waitMsgs(b, 2, "delivery after a refused reload"); !strings.Contains(string(m[1].Data), "Subject: still.txt") {
		t.Fatalf("new relay got %q", m[1].Data)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := sock.next(logs); got != "STOPPING=1" {
		t.Errorf("notification %q on SIGTERM, want STOPPING=1", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run did not exit 0: %v\n%s", err, logs.String())
	}
	if sock.watchdogs == 0 {
		t.Error("no WATCHDOG=1 with WATCHDOG_USEC=100000")
	}
}

func TestConfigChangesAndRestartOnlyKeys(t *testing.T) {
	base := func() *Config {
		c := DefaultConfig()
		c.ScriptsDir, c.StateDir = "scripts", "state"
		c.Accounts = map[string]*AccountConfig{"relay": {Host: "a.example", Port: 587, PasswordEnv: "PW"}}
		return c
	}
	for _, tc := range []struct {
		name        string
		mod         func(*Config)
		wantChanged string
		wantRestart []string
	}{
		{"nothing", func(*Config) {}, "nothing", nil},
		{"host and level", func(c *Config) { c.Accounts["relay"].Host = "b.example"; c.Log.Level = "debug" }, "log.level,accounts.relay", nil},
		{"secret source named by account only", func(c *Config) { c.Accounts["relay"].PasswordEnv = "OTHER" }, "accounts.relay", nil},
		{"added and removed", func(c *Config) {
			c.Accounts = map[string]*AccountConfig{"backup": {Host: "c.example"}}
		}, "accounts.backup (added),accounts.relay (removed)", nil},
		{"limits", func(c *Config) { c.RunTimeout = time.Minute * 2; c.Limits.Memory = "64MiB" }, "run_timeout,limits.memory", nil},
		{"restart only", func(c *Config) { c.Workers = 9; c.StateDir = "elsewhere"; c.DevServer = &DevServerConfig{} }, "nothing", []string{"state_dir", "workers", "dev_server"}},
		{"http client", func(c *Config) { c.HTTPClient = &HTTPClientConfig{AllowHosts: []string{"api.example.com"}} }, "http_client", nil},
		{"http endpoint added", func(c *Config) { c.HTTP = &HTTPConfig{Listen: "127.0.0.1:9725"} }, "nothing", []string{"http.listen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, next := base(), base()
			tc.mod(next)
			var restart []string
			for _, k := range restartOnlyKeys {
				if k.keep(old, next) {
					restart = append(restart, k.key)
				}
			}
			if fmt.Sprint(restart) != fmt.Sprint(tc.wantRestart) {
				t.Errorf("restart-only keys %v, want %v", restart, tc.wantRestart)
			}
			if next.Workers != old.Workers || next.StateDir != old.StateDir || next.DevServer != old.DevServer {
				t.Errorf("restart-only values not kept: %+v", next)
			}
			if got := strings.Join(configChanges(old, next), ","); got != tc.wantChanged {
				t.Errorf("changes %q, want %q", got, tc.wantChanged)
			}
		})
	}
}

// fileLog reads a subprocess's log file.
type fileLog struct{ path string }

// startRunLogged starts "mailbot run -c mailbot.yaml" in dir with env, its
// output going to a file, not a pipe: the daemon's write has landed before
// the notification it sends next, so the order of the two can be asserted
// (a pipe's copier goroutine may lag behind). The caller kills the process.
func startRunLogged(t *testing.T, ctx context.Context, dir string, env []string) (*exec.Cmd, *fileLog) {
	t.Helper()
	cmd := exec.CommandContext(ctx, mailbotBin, "run", "-c", "mailbot.yaml")
	cmd.Dir, cmd.Env = dir, env
	logs := &fileLog{path: filepath.Join(t.TempDir(), "mailbot.log")}
	lf, err := os.Create(logs.path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close() // the child has its own copy of the descriptor
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, logs
}

func (f *fileLog) String() string {
	b, _ := os.ReadFile(f.path)
	return string(b)
}
