package luabind

import (
	"bufio"
	"net"
	"strings"
	"sync"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

// recordingServer is a plain-text SMTP server that offers AUTH PLAIN and
// records every connection and command it gets: a server of a script's
// choosing that would like to learn an account's password.
type recordingServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	lines []string
	wg    sync.WaitGroup
}

func startRecordingServer(t *testing.T) *recordingServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &recordingServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				c.Write([]byte("220 evil ESMTP\r\n"))
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line = strings.TrimRight(line, "\r\n")
					s.mu.Lock()
					s.lines = append(s.lines, line)
					s.mu.Unlock()
					switch cmd := strings.ToUpper(strings.Fields(line + " x")[0]); cmd {
					case "EHLO":
						c.Write([]byte("250-evil\r\n250 AUTH PLAIN LOGIN\r\n"))
					case "AUTH":
						c.Write([]byte("235 thanks\r\n"))
					case "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte("250 ok\r\n"))
					}
				}
			}()
		}
	}()
	return s
}

func (s *recordingServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// stop closes the server and returns what it saw.
func (s *recordingServer) stop() (int, []string) {
	s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, s.lines
}

func TestAccountCredentialsGoOnlyToTheAccountsServer(t *testing.T) {
	tests := []struct {
		name string
		// account settings: the relay's own server is RELAY, the
		// script's choice EVIL (both ports).
		relayTLS      string
		relayInsecure bool
		src, want     string
	}{
		{"issue example: host, port, tls, allow_insecure_auth", "starttls", false,
			`local c = smtp.connect{account = "relay", host = "127.0.0.1", port = EVIL, tls = "none", allow_insecure_auth = true}; c:login()`,
			"cannot override port, tls, allow_insecure_auth of account \"relay\""},
		{"port only", "none", true,
			`local c = smtp.connect{account = "relay", port = EVIL}; c:login()`, "cannot override port"},
		{"host", "none", true,
			`local c = smtp.connect{account = "relay", host = "localhost"}; c:login()`, "cannot override host"},
		{"tls", "starttls", true,
			`local c = smtp.connect{account = "relay", tls = "none"}; c:login()`, "cannot override tls"},
		{"socket", "none", true,
			`local c = smtp.connect{account = "relay", socket = "/tmp/x.sock"}; c:login()`, "cannot override socket"},
		{"insecure_skip_verify", "starttls", false,
			`local c = smtp.connect{account = "relay", insecure_skip_verify = true}; c:login()`, "cannot override insecure_skip_verify"},
		{"ca_file", "starttls", false,
			`local c = smtp.connect{account = "relay", ca_file = "x.pem"}; c:login()`, "cannot override ca_file"},
		{"tls_fingerprint", "starttls", false,
			`local c = smtp.connect{account = "relay", tls_fingerprint = string.rep("a", 64)}; c:login()`, "cannot override tls_fingerprint"},
		{"default account with a port", "none", true,
			`local c = smtp.connect{port = EVIL}; c:login()`, `the default account "relay" (used because no host is given)`},
		{"smtp.new with account, then connect elsewhere", "none", true,
			`local c = smtp.new{account = "relay"}; c:connect("127.0.0.1", EVIL); c:login()`, `this client uses account "relay"`},
		{"smtp.new with the default account, then connect elsewhere", "none", true,
			`local c = smtp.new(); c:connect("127.0.0.1:" .. EVIL); c:login()`, `this client uses account "relay"`},
		{"plain connect to a starttls account, login without starttls", "starttls", true,
			`local c = smtp.new{account = "relay"}; c:connect(); c:login()`, `requires TLS (tls = starttls)`},
		{"own server, then login without arguments", "none", true,
			`local c = smtp.connect{host = "127.0.0.1", port = EVIL, tls = "none", allow_insecure_auth = true}; c:login()`,
			"the connection has no account"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay, evil := startRecordingServer(t), startRecordingServer(t)
			if tc.name == "plain connect to a starttls account, login without starttls" {
				evil = relay // the account's own server, but without TLS
			}
			accounts := map[string]Account{"relay": {Host: "127.0.0.1", Port: relay.port(), TLS: tc.relayTLS,
				AllowInsecureAuth: tc.relayInsecure, Username: "bot",
				Password: func() (string, error) { return testSecret, nil }}}
			for _, sb := range []Sandbox{SandboxStrict, SandboxTrusted} {
				L := newTestState(t, Options{Sandbox: sb, SMTP: SMTPOptions{Accounts: accounts, DefaultAccount: "relay"}})
				L.SetGlobal("EVIL", lua.LNumber(evil.port()))
				_, err := evalLua(L, `local smtp = require("smtp")`+"\n"+tc.src)
				CloseResources(L)
				if msg := luaErrorMessage(err); err == nil || !strings.Contains(msg, tc.want) {
					t.Errorf("%s: error %q, want it to contain %q", sb, msg, tc.want)
				}
			}
			_, rl := relay.stop()
			en, el := evil.stop()
			for _, l := range append(rl, el...) {
				if strings.HasPrefix(strings.ToUpper(l), "AUTH") {
					t.Errorf("AUTH was sent: %q", l)
				}
			}
			if evil != relay && en != 0 && !strings.HasPrefix(tc.name, "own server") {
				t.Errorf("the script's server got %d connection(s)", en)
			}
		})
	}
}

func TestAccountSettingsMayBeRepeatedOrRelaxed(t *testing.T) {
	relay := startRecordingServer(t)
	accounts := map[string]Account{"relay": {Host: "127.0.0.1", Port: relay.port(), TLS: "none",
		AllowInsecureAuth: true, Username: "bot", Password: func() (string, error) { return testSecret, nil }}}
	L := newTestState(t, Options{SMTP: SMTPOptions{Accounts: accounts}})
	L.SetGlobal("PORT", lua.LNumber(relay.port()))
	src := `local smtp = require("smtp")
		-- the account's own values, a timeout and debug are no override
		local c = smtp.connect{account = "relay", host = "127.0.0.1", port = PORT, tls = "none", timeout = 5, debug = true, local_hostname = "bot.example"}
		c:login()
		c:quit()`
	if _, err := evalLua(L, src); err != nil {
		t.Fatal(err)
	}
	CloseResources(L)
	_, lines := relay.stop()
	found := false
	for _, l := range lines {
		found = found || strings.HasPrefix(l, "AUTH PLAIN")
	}
	if !found {
		t.Errorf("login did not reach the account's own server: %q", lines)
	}
}
