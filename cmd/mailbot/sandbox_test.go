package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingListener counts the connections made to it; scripts must make
// none to a server they chose for an account's credentials.
func countingListener(t *testing.T) (port int, count func() int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port, n.Load
}

const sandboxSecret = "pw-that-must-not-leak-71"

// sandboxProbe tries every way to a secret or out of the sandbox and
// writes what happened to state_dir/files, under exec at once and under
// run from mailbot.on_start.
const sandboxProbe = `
local fs, env, smtp = require("fs"), require("env"), require("smtp")
local function try(name, fn)
  local ok, err = pcall(fn)
  return name .. ": " .. (ok and ("NOT REFUSED " .. tostring(err)) or tostring(err)) .. "\n"
end
local function checks()
  local evil = tonumber(os.getenv("EVIL_PORT") or env.get("EVIL_PORT"))
  return try("env.get", function() return env.get("MAILBOT_TEST_SECRET_PW") end)
    .. try("os.getenv", function() return os.getenv("MAILBOT_TEST_SECRET_PW") end)
    .. try("password_file", function() return fs.read("../pw.txt") end)
    .. try("password_file via symlink", function() return fs.read("pwlink") end)
    .. try("environ", function() return fs.read("/proc/self/environ") end)
    .. try("etc", function() return fs.read("/etc/passwd") end)
    .. try("outbox", function() fs.write("../state/outbox/forged", "x") end)
    .. try("override", function()
      local c = smtp.connect{account = "relay", host = "127.0.0.1", port = evil, tls = "none", allow_insecure_auth = true}
      c:login()
    end)
end
if arg then
  fs.write("../state/files/exec.txt", checks())
else
  mailbot.on_start(function() fs.write("../state/files/run.txt", checks()) end)
end
`

func TestSandboxHoldsUnderExecAndRun(t *testing.T) {
	t.Parallel()
	relayPort, relayConns := countingListener(t)
	evilPort, evilConns := countingListener(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "mailbot.yaml"), fmt.Sprintf(`scripts_dir: scripts
state_dir: state
accounts:
  relay:
    host: 127.0.0.1
    port: %d
    tls: starttls
    username: bot
    password_env: MAILBOT_TEST_SECRET_PW
  filed:
    host: 127.0.0.1
    port: %d
    username: bot
    password_file: pw.txt
`, relayPort, relayPort))
	writeFile(t, filepath.Join(dir, "pw.txt"), sandboxSecret+"\n")
	writeFile(t, filepath.Join(dir, "scripts", "probe.lua"), sandboxProbe)
	if err := os.Symlink("../pw.txt", filepath.Join(dir, "scripts", "pwlink")); err != nil {
		t.Fatal(err)
	}
	env := []string{"MAILBOT_TEST_SECRET_PW=" + sandboxSecret, fmt.Sprintf("EVIL_PORT=%d", evilPort)}

	want := map[string]string{
		"env.get":                   "MAILBOT_TEST_SECRET_PW holds a secret of account relay; use c:login()",
		"os.getenv":                 "MAILBOT_TEST_SECRET_PW holds a secret of account relay; use c:login()",
		"password_file":             "holds a secret of account filed; use c:login()",
		"password_file via symlink": "holds a secret of account filed; use c:login()",
		"environ":                   "not allowed (they hold secrets)",
		"etc":                       "path /etc/passwd is outside fs_roots (default",
		"outbox":                    "which scripts may not touch",
		"override":                  `cannot override port, tls, allow_insecure_auth of account "relay"`,
	}
	check := func(mode, report, logs string) {
		t.Helper()
		for name, w := range want {
			var line string
			for l := range strings.SplitSeq(report, "\n") {
				if strings.HasPrefix(l, name+": ") {
					line = l
				}
			}
			if !strings.Contains(line, w) {
				t.Errorf("%s: %s: got %q, want %q", mode, name, line, w)
			}
		}
		if strings.Contains(report+logs, sandboxSecret) {
			t.Errorf("%s: the secret leaked:\n%s\n%s", mode, report, logs)
		}
	}

	r := mailbot(t, dir, env, "exec", "-c", "mailbot.yaml", "scripts/probe.lua")
	if r.code != 0 {
		t.Fatalf("exec: %v", r)
	}
	b, err := os.ReadFile(filepath.Join(dir, "state", "files", "exec.txt"))
	if err != nil {
		t.Fatalf("exec wrote no report: %v\n%v", err, r)
	}
	check("exec", string(b), r.stdout+r.stderr)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mailbotBin, "run", "-c", "mailbot.yaml")
	cmd.Dir = dir
	cmd.Env = cleanEnv(env...)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	runReport := filepath.Join(dir, "state", "files", "run.txt")
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The daemon is a subprocess: poll for its report with a deadline.
		if b, err = os.ReadFile(runReport); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run wrote no report; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	t.Logf("run report:\n%s", b)
	check("run", string(b), logs.String())

	if n := evilConns(); n != 0 {
		t.Errorf("the script's server got %d connection(s)", n)
	}
	if n := relayConns(); n != 0 {
		t.Errorf("the relay got %d connection(s)", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "outbox", "forged")); err == nil {
		t.Error("a script wrote into the outbox")
	}
}
