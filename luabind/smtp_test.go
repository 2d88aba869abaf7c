package luabind

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// startDevServer runs the real in-process SMTP server the smtp module tests
// talk to, with hooks that refuse chosen addresses.
func startDevServer(t *testing.T, implicit bool) *devserver.Server {
	t.Helper()
	return devtest.Start(t, devserver.Config{
		Users:       map[string]string{"alice": "wonderland"},
		ImplicitTLS: implicit,
		Hooks: devserver.Hooks{
			Mail: func(from string) *devserver.Reject {
				if strings.HasPrefix(from, "blocked@") {
					return &devserver.Reject{Code: 553, Enhanced: [3]int{5, 7, 1}, Message: "sender blocked"}
				}
				return nil
			},
			Rcpt: func(to string) *devserver.Reject {
				switch {
				case strings.HasPrefix(to, "nobody@"):
					return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
				case strings.HasPrefix(to, "temp@"):
					return &devserver.Reject{Code: 450, Enhanced: [3]int{4, 2, 1}, Message: "try later"}
				}
				return nil
			},
			Data: func(m *devserver.Message) *devserver.Reject {
				for _, to := range m.To {
					if strings.HasPrefix(to, "reject-data@") {
						return &devserver.Reject{Code: 554, Enhanced: [3]int{5, 6, 0}, Message: "content refused"}
					}
				}
				return nil
			},
		},
	})
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// closedPort returns a loopback port with nothing listening.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := port(t, l.Addr().String())
	l.Close()
	return p
}

// newSMTPTestState builds a state with the smtp and mail modules and a "dev"
// account that trusts srv's certificate.
func newSMTPTestState(t *testing.T, srv *devserver.Server) *lua.LState {
	t.Helper()
	accounts := map[string]Account{}
	if srv != nil {
		accounts["dev"] = Account{Host: "127.0.0.1", Port: port(t, srv.Addr()), RootCAs: srv.CertPool(),
			Username: "alice", Password: func() (string, error) { return "wonderland", nil }}
	}
	L := NewState(Options{
		ScriptsDir: "testdata",
		Modules: map[string]lua.LGFunction{
			"smtp": NewSMTPModule(SMTPOptions{Accounts: accounts}),
			"mail": NewMailModule(MailOptions{BaseDir: "testdata"}),
		},
	})
	t.Cleanup(func() { CloseResources(L); L.Close() })
	return L
}

func TestSMTPModuleAgainstDevServer(t *testing.T) {
	srv := startDevServer(t, false)
	implicit := startDevServer(t, true)
	L := newSMTPTestState(t, srv)
	L.SetGlobal("PORT", lua.LNumber(port(t, srv.Addr())))
	L.SetGlobal("IMPLICIT_PORT", lua.LNumber(port(t, implicit.Addr())))
	L.SetGlobal("CLOSED_PORT", lua.LNumber(closedPort(t)))
	runLuaTestFile(t, L, "testdata/smtp_flow.lua")

	// The seeds' flow delivered its message with TLS and AUTH.
	var seeds *devserver.Message
	for _, m := range srv.Messages() {
		if bytes.Contains(m.Data, []byte("Subject: seeds")) {
			seeds = &m
		}
	}
	if seeds == nil {
		t.Fatal("the seeds' flow message did not arrive")
	}
	if !seeds.TLS || seeds.AuthUser != "alice" || len(seeds.To) != 2 {
		t.Errorf("seeds message: tls=%v auth=%q to=%v", seeds.TLS, seeds.AuthUser, seeds.To)
	}
	// send_message derived the envelope from the message, Bcc included,
	// and kept Bcc out of the headers.
	for _, m := range srv.Messages() {
		if bytes.Contains(m.Data, []byte("via send_message")) {
			if strings.Join(m.To, ",") != "bob@example.org,hidden@example.org" || m.From != "alice@example.org" {
				t.Errorf("send_message envelope: from %q to %v", m.From, m.To)
			}
			if bytes.Contains(m.Data, []byte("hidden@")) {
				t.Logf("%s", m.Data)
				t.Error("Bcc leaked into the message headers")
			}
		}
	}
}

func TestSMTPModuleMisbehavingServers(t *testing.T) {
	helo := smtptest.NewServer(t, "S: 220 x\nC: EHLO localhost\nS: 500 no\nC: HELO localhost\nS: 501 no either\nC: *\nS: 221 bye\n")
	disc := smtptest.NewServer(t, "S: 220 x\nC: NOOP\n! close\n")
	hang := smtptest.NewServer(t, "S: 220 x\nC: NOOP\n! hang\n")
	refused := smtptest.NewServer(t, "S: 220 x\nC: EHLO localhost\nS: 250-x\nS: 250 STARTTLS\nC: STARTTLS\nS: 454 4.7.0 TLS not available\nC: *\n")
	L := newSMTPTestState(t, nil)
	for name, p := range map[string]string{"HELO_PORT": helo.Addr(), "DISCONNECT_PORT": disc.Addr(),
		"HANG_PORT": hang.Addr(), "STARTTLS_REFUSED_PORT": refused.Addr()} {
		L.SetGlobal(name, lua.LNumber(port(t, p)))
	}
	// The scripted servers expect "EHLO localhost".
	src := `
local smtp = require("smtp")
local connect = smtp.connect
smtp.connect = function(o) o.local_hostname = "localhost"; return connect(o) end`
	if err := L.DoString(src); err != nil {
		t.Fatal(err)
	}
	runLuaTestFile(t, L, "testdata/smtp_misbehaving.lua")
}

// TestLuaMessageRoundTrip sends a message built in Lua with a Chinese
// subject and body and an attachment, and decodes what the server got.
func TestLuaMessageRoundTrip(t *testing.T) {
	srv := startDevServer(t, false)
	L := newSMTPTestState(t, srv)
	attachment := make([]byte, 256)
	for i := range attachment {
		attachment[i] = byte(i)
	}
	L.SetGlobal("BLOB", lua.LString(attachment))
	err := L.DoString(`
local smtp, mail = require("smtp"), require("mail")
local m = mail.message{ from = "报表 <reports@example.org>", to = { "ops@example.org" },
  subject = "日报 2026-11-22", text = "你好，世界\n第二行",
  attachments = { { filename = "数据.bin", content = BLOB, content_type = "application/octet-stream" } } }
local c = smtp.connect{ account = "dev" }
c:login()
c:sendmail("reports@example.org", "ops@example.org", m)
c:quit()`)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := srv.WaitMessages(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := mail.ReadMessage(bytes.NewReader(msgs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	if subj, _ := dec.DecodeHeader(pm.Header.Get("Subject")); subj != "日报 2026-11-22" {
		t.Errorf("subject = %q", subj)
	}
	from, err := mail.ParseAddress(pm.Header.Get("From"))
	if err != nil || from.Name != "报表" {
		t.Errorf("from = %v, %v", from, err)
	}
	_, params, _ := mime.ParseMediaType(pm.Header.Get("Content-Type"))
	mr := multipart.NewReader(pm.Body, params["boundary"])
	var text, blob []byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p) // multipart decodes quoted-printable itself
		if p.FileName() == "数据.bin" {
			blob = decodeBase64(t, b)
		} else {
			text = b
		}
	}
	if got := strings.ReplaceAll(string(text), "\r\n", "\n"); got != "你好，世界\n第二行" {
		t.Errorf("body = %q", got)
	}
	if !bytes.Equal(blob, attachment) {
		t.Errorf("attachment bytes differ: %x", blob)
	}
}

func TestCloseResourcesClosesOpenClients(t *testing.T) {
	srv := startDevServer(t, false)
	L := newSMTPTestState(t, srv)
	if err := L.DoString(`c = require("smtp").connect{ account = "dev" }`); err != nil {
		t.Fatal(err)
	}
	CloseResources(L)
	err := L.DoString(`c:noop()`)
	if err == nil || !strings.Contains(DescribeError(err), "SMTPServerDisconnected") {
		t.Fatalf("noop after CloseResources = %v, want SMTPServerDisconnected", err)
	}
}

func TestSMTPTimeoutStopsWithRunContext(t *testing.T) {
	hang := smtptest.NewServer(t, "S: 220 x\nC: *\n! hang\n")
	L := newSMTPTestState(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	L.SetContext(ctx)
	start := time.Now()
	err := L.DoString(`require("smtp").connect{ host = "127.0.0.1", port = ` + strconv.Itoa(port(t, hang.Addr())) + `, tls = "none" }:noop()`)
	if err == nil {
		t.Fatal("a hung server did not stop the run")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run took %v after its context ended", d)
	}
}

func decodeBase64(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
	if err != nil {
		t.Fatalf("attachment is not base64: %v", err)
	}
	return out
}
