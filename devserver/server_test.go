package devserver_test

import (
	"bytes"
	"context"
	"errors"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

const testBody = "From: bot@example.org\r\nTo: ops@example.org\r\nSubject: nightly\r\n\r\nall green\r\n.leading dot survives\r\n"

// loginAuth is the client side of AUTH LOGIN, which net/smtp lacks.
type loginAuth struct{ user, pass string }

func (a loginAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }

func (a loginAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch string(fromServer) {
	case "Username:":
		return []byte(a.user), nil
	case "Password:":
		return []byte(a.pass), nil
	}
	return nil, errors.New("unexpected LOGIN challenge " + string(fromServer))
}

func TestStartTLSAuth(t *testing.T) {
	users := map[string]string{"bot": "s3cret"}
	tests := []struct {
		name     string
		users    map[string]string
		auth     smtp.Auth
		wantCode int    // 0: delivery succeeds
		wantUser string // AuthUser of the stored message
	}{
		{"plain ok", users, smtp.PlainAuth("", "bot", "s3cret", "127.0.0.1"), 0, "bot"},
		{"plain wrong password", users, smtp.PlainAuth("", "bot", "nope", "127.0.0.1"), 535, ""},
		{"plain unknown user", users, smtp.PlainAuth("", "eve", "s3cret", "127.0.0.1"), 535, ""},
		{"plain foreign identity", users, smtp.PlainAuth("root", "bot", "s3cret", "127.0.0.1"), 535, ""},
		{"login ok", users, loginAuth{"bot", "s3cret"}, 0, "bot"},
		{"login wrong password", users, loginAuth{"bot", "nope"}, 535, ""},
		{"no users accepts anyone", nil, smtp.PlainAuth("", "anyone", "anything", "127.0.0.1"), 0, "anyone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := devtest.Start(t, devserver.Config{Users: tc.users})
			err := sendTCP(t, srv, send{startTLS: true, auth: tc.auth,
				from: "bot@example.org", to: []string{"ops@example.org"}, data: testBody})
			if got := replyCode(err); got != tc.wantCode {
				t.Fatalf("reply code = %d (err %v), want %d", got, err, tc.wantCode)
			}
			if tc.wantCode != 0 {
				if n := len(srv.Messages()); n != 0 {
					t.Fatalf("stored %d messages after refused AUTH, want 0", n)
				}
				return
			}
			msgs, err := srv.WaitMessages(waitCtx(t), 1)
			if err != nil {
				t.Fatal(err)
			}
			m := msgs[0]
			if m.AuthUser != tc.wantUser || !m.TLS || m.From != "bot@example.org" ||
				!reflect.DeepEqual(m.To, []string{"ops@example.org"}) || string(m.Data) != testBody {
				t.Fatalf("stored message = %+v", m)
			}
		})
	}
}

func TestAuthNeedsTLS(t *testing.T) {
	tests := []struct {
		name          string
		allowInsecure bool
		wantAdvertise bool
		wantCode      int
	}{
		{"refused before STARTTLS", false, false, 523},
		{"allowed when insecure auth enabled", true, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := devtest.Start(t, devserver.Config{AllowInsecureAuth: tc.allowInsecure})
			c, err := smtp.Dial(srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Hello("client.test"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := c.Extension("AUTH"); ok != tc.wantAdvertise {
				t.Errorf("AUTH advertised = %v, want %v", ok, tc.wantAdvertise)
			}
			if ok, _ := c.Extension("STARTTLS"); !ok {
				t.Errorf("STARTTLS not advertised")
			}
			// PlainAuth sends to 127.0.0.1 without TLS, so the refusal
			// here comes from the server.
			err = c.Auth(smtp.PlainAuth("", "u", "p", "127.0.0.1"))
			if got := replyCode(err); got != tc.wantCode {
				t.Fatalf("AUTH reply = %d (err %v), want %d", got, err, tc.wantCode)
			}
		})
	}
}

func TestRequireAuth(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{RequireAuth: true})
	err := sendTCP(t, srv, send{startTLS: true, from: "a@example.org", to: []string{"b@example.org"}, data: testBody})
	if got := replyCode(err); got != 530 {
		t.Fatalf("MAIL without AUTH: code %d (err %v), want 530", got, err)
	}
	err = sendTCP(t, srv, send{startTLS: true, auth: smtp.PlainAuth("", "u", "p", "127.0.0.1"),
		from: "a@example.org", to: []string{"b@example.org"}, data: testBody})
	if err != nil {
		t.Fatalf("MAIL after AUTH: %v", err)
	}
}

var maildirName = regexp.MustCompile(`^\d+\.\d+_\d+\.[^/:]+$`)

func TestMaildirStoresExactBytes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir") // created by Start
	srv := devtest.Start(t, devserver.Config{Maildir: dir})
	bodies := []string{testBody, "Subject: second\r\n\r\n..two dots\r\n"}
	for _, b := range bodies {
		if err := sendTCP(t, srv, send{from: "a@example.org", to: []string{"b@example.org"}, data: b}); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := srv.WaitMessages(waitCtx(t), len(bodies))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		if filepath.Dir(m.Path) != filepath.Join(dir, "new") || !maildirName.MatchString(filepath.Base(m.Path)) {
			t.Errorf("message %d path = %q, want %s/new/<unixnano>.<pid>_<n>.<host>", i, m.Path, dir)
		}
		got, err := os.ReadFile(m.Path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != bodies[i] {
			t.Errorf("message %d file = %q, want %q", i, got, bodies[i])
		}
	}
	if msgs[0].Path == msgs[1].Path {
		t.Errorf("two messages share the file %s", msgs[0].Path)
	}
	for _, sub := range []string{"tmp", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("%s/ holds %d entries, want 0", sub, len(entries))
		}
	}
}

func TestWaitMessages(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{})
	type result struct {
		msgs []devserver.Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, err := srv.WaitMessages(waitCtx(t), 2)
		done <- result{msgs, err}
	}()
	for _, to := range []string{"one@example.org", "two@example.org"} {
		if err := sendTCP(t, srv, send{from: "a@example.org", to: []string{to}, data: testBody}); err != nil {
			t.Fatal(err)
		}
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	var got []string
	for _, m := range r.msgs {
		got = append(got, m.To...)
	}
	if want := []string{"one@example.org", "two@example.org"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("recipients in arrival order = %v, want %v", got, want)
	}

	// Waiting for more than will arrive ends with the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := srv.WaitMessages(ctx, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitMessages on cancelled ctx = %v, want context.Canceled", err)
	}
}

func TestMessagesReturnsCopies(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{})
	if err := sendTCP(t, srv, send{from: "a@example.org", to: []string{"b@example.org"}, data: testBody}); err != nil {
		t.Fatal(err)
	}
	first := srv.Messages()
	first[0].Data[0] = 'X'
	first[0].To[0] = "changed"
	first[0].MailOptions["BODY"] = "changed"
	again := srv.Messages()
	if string(again[0].Data) != testBody || again[0].To[0] != "b@example.org" || again[0].MailOptions["BODY"] != "8BITMIME" {
		t.Fatalf("mutating a returned message changed the server's record: %+v", again[0])
	}
}

func TestHooksReject(t *testing.T) {
	rcptReject := &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
	tests := []struct {
		name     string
		hooks    devserver.Hooks
		wantCode int
		wantMsg  string
	}{
		{"mail", devserver.Hooks{Mail: func(from string) *devserver.Reject {
			return &devserver.Reject{Code: 553, Enhanced: [3]int{5, 1, 8}, Message: "bad sender " + from}
		}}, 553, "5.1.8 bad sender a@example.org"},
		{"rcpt", devserver.Hooks{Rcpt: func(to string) *devserver.Reject {
			if to == "nobody@example.org" {
				return rcptReject
			}
			return nil
		}}, 550, "5.1.1 no such user"},
		{"data", devserver.Hooks{Data: func(m *devserver.Message) *devserver.Reject {
			if bytes.Contains(m.Data, []byte("nightly")) {
				return &devserver.Reject{Code: 554, Enhanced: [3]int{5, 6, 0}, Message: "content refused"}
			}
			return nil
		}}, 554, "5.6.0 content refused"},
		{"temporary without enhanced code", devserver.Hooks{Rcpt: func(string) *devserver.Reject {
			return &devserver.Reject{Code: 450, Message: "mailbox busy"}
		}}, 450, "4.0.0 mailbox busy"},
		{"line break in reject is not sent", devserver.Hooks{Rcpt: func(string) *devserver.Reject {
			return &devserver.Reject{Code: 550, Message: "x\r\n250 fake"}
		}}, 451, "4.3.0 devserver: hook returned an invalid reject"},
		{"positive code in reject is not sent", devserver.Hooks{Mail: func(string) *devserver.Reject {
			return &devserver.Reject{Code: 250, Message: "ok?"}
		}}, 451, "4.3.0 devserver: hook returned an invalid reject"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := devtest.Start(t, devserver.Config{Hooks: tc.hooks})
			err := sendTCP(t, srv, send{from: "a@example.org",
				to: []string{"ok@example.org", "nobody@example.org"}, data: testBody})
			var te *textproto.Error
			if !errors.As(err, &te) {
				t.Fatalf("send error = %v, want a *textproto.Error", err)
			}
			if want := (textproto.Error{Code: tc.wantCode, Msg: tc.wantMsg}); *te != want {
				t.Fatalf("reply = %d %q, want %d %q", te.Code, te.Msg, want.Code, want.Msg)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("stored %d messages, want 0", n)
			}
		})
	}
}

func TestRejectError(t *testing.T) {
	tests := []struct {
		r    devserver.Reject
		want string
	}{
		{devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}, "devserver: 550 5.1.1 no such user"},
		{devserver.Reject{Code: 451, Message: "later"}, "devserver: 451 later"},
	}
	for _, tc := range tests {
		var err error = &tc.r
		if got := err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestLMTPOverUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	srv := devtest.Start(t, devserver.Config{
		Network: "unix", Addr: sock, LMTP: true,
		Hooks: devserver.Hooks{DataRcpt: func(m *devserver.Message, rcpt string) *devserver.Reject {
			if rcpt == "full@example.org" {
				return &devserver.Reject{Code: 452, Enhanced: [3]int{4, 2, 2}, Message: "mailbox full"}
			}
			return nil
		}},
	})
	if srv.Addr() != sock {
		t.Fatalf("Addr() = %q, want %q", srv.Addr(), sock)
	}
	c := dialRaw(t, "unix", sock, nil)
	c.cmd(500, "EHLO client.test") // LMTP servers only answer LHLO
	c.cmd(250, "LHLO client.test")
	c.cmd(250, "MAIL FROM:<bot@example.org>")
	c.cmd(250, "RCPT TO:<ops@example.org>")
	c.cmd(250, "RCPT TO:<full@example.org>")
	c.data(testBody)
	if msg := c.expect(250); !strings.Contains(msg, "<ops@example.org>") {
		t.Errorf("first DATA reply %q does not name ops@example.org", msg)
	}
	if msg := c.expect(452); !strings.Contains(msg, "4.2.2") || !strings.Contains(msg, "<full@example.org>") {
		t.Errorf("second DATA reply %q, want 4.2.2 for full@example.org", msg)
	}
	c.cmd(221, "QUIT")

	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("stored %d messages, want 1", len(msgs))
	}
	if want := []string{"ops@example.org"}; !reflect.DeepEqual(msgs[0].To, want) || string(msgs[0].Data) != testBody {
		t.Fatalf("stored message To=%v Data=%q, want To=%v and the sent body", msgs[0].To, msgs[0].Data, want)
	}
}

func TestImplicitTLS(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{ImplicitTLS: true})
	c := dialRaw(t, "tcp", srv.Addr(), srv.TLSConfig("localhost"))
	ehlo := c.cmd(250, "EHLO client.test")
	if strings.Contains(ehlo, "STARTTLS") || !strings.Contains(ehlo, "AUTH PLAIN LOGIN") || !strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("EHLO over implicit TLS = %q, want AUTH and REQUIRETLS but no STARTTLS", ehlo)
	}
	c.cmd(250, "MAIL FROM:<a@example.org> REQUIRETLS")
	c.cmd(250, "RCPT TO:<b@example.org>")
	c.data(testBody)
	c.expect(250)
	msgs, err := srv.WaitMessages(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !msgs[0].TLS {
		t.Errorf("message TLS = false over implicit TLS")
	}
	if _, ok := msgs[0].MailOptions["REQUIRETLS"]; !ok {
		t.Errorf("REQUIRETLS not recorded: %v", msgs[0].MailOptions)
	}
}

func TestESMTPParametersRecorded(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{})
	c := dialRaw(t, "tcp", srv.Addr(), nil)
	ehlo := c.cmd(250, "EHLO client.test")
	for _, ext := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "SIZE 26214400", "STARTTLS", "ENHANCEDSTATUSCODES"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO reply lacks %s: %q", ext, ehlo)
		}
	}
	// REQUIRETLS is neither advertised nor accepted without TLS.
	if strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("REQUIRETLS advertised without TLS")
	}
	c.cmd(530, "MAIL FROM:<a@example.org> REQUIRETLS")

	c.cmd(250, "MAIL FROM:<sender@example.org> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B314 AUTH=<>")
	c.cmd(250, "RCPT TO:<one@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;one+2Balias@example.org")
	c.cmd(250, "RCPT TO:<zwei@bücher.example>")
	c.data(testBody)
	c.expect(250)
	c.cmd(221, "QUIT")

	msgs, err := srv.WaitMessages(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	wantMail := map[string]string{"SIZE": "1000", "BODY": "8BITMIME", "SMTPUTF8": "", "RET": "HDRS", "ENVID": "QQ+314", "AUTH": "<>"}
	if !reflect.DeepEqual(m.MailOptions, wantMail) {
		t.Errorf("MailOptions = %v, want %v", m.MailOptions, wantMail)
	}
	wantRcpt := map[string]map[string]string{
		"one@example.org":     {"NOTIFY": "SUCCESS,FAILURE", "ORCPT": "RFC822;one+alias@example.org"},
		"zwei@bücher.example": {},
	}
	if !reflect.DeepEqual(m.RcptOptions, wantRcpt) {
		t.Errorf("RcptOptions = %v, want %v", m.RcptOptions, wantRcpt)
	}
	if m.TLS || m.AuthUser != "" {
		t.Errorf("TLS=%v AuthUser=%q on a plain unauthenticated session", m.TLS, m.AuthUser)
	}
}

func TestLimits(t *testing.T) {
	t.Run("SIZE parameter too large", func(t *testing.T) {
		srv := devtest.Start(t, devserver.Config{MaxMessageBytes: 100})
		c := dialRaw(t, "tcp", srv.Addr(), nil)
		if ehlo := c.cmd(250, "EHLO client.test"); !strings.Contains(ehlo, "SIZE 100") {
			t.Errorf("EHLO does not advertise SIZE 100: %q", ehlo)
		}
		c.cmd(552, "MAIL FROM:<a@example.org> SIZE=101")
	})
	t.Run("data too large", func(t *testing.T) {
		srv := devtest.Start(t, devserver.Config{MaxMessageBytes: 100})
		err := sendTCP(t, srv, send{from: "a@example.org", to: []string{"b@example.org"}, data: strings.Repeat("x", 200) + "\r\n"})
		if got := replyCode(err); got != 552 {
			t.Fatalf("reply = %d (err %v), want 552", got, err)
		}
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("stored %d oversized messages", n)
		}
	})
	t.Run("too many recipients", func(t *testing.T) {
		srv := devtest.Start(t, devserver.Config{MaxRecipients: 1})
		err := sendTCP(t, srv, send{from: "a@example.org", to: []string{"b@example.org", "c@example.org"}, data: testBody})
		if got := replyCode(err); got != 452 {
			t.Fatalf("reply = %d (err %v), want 452", got, err)
		}
	})
	t.Run("max kept drops oldest", func(t *testing.T) {
		srv := devtest.Start(t, devserver.Config{MaxKept: 1})
		for _, to := range []string{"old@example.org", "new@example.org"} {
			if err := sendTCP(t, srv, send{from: "a@example.org", to: []string{to}, data: testBody}); err != nil {
				t.Fatal(err)
			}
		}
		msgs, err := srv.WaitMessages(waitCtx(t), 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].To[0] != "new@example.org" {
			t.Fatalf("kept %+v, want only the newest message", msgs)
		}
	})
}

func TestStartInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  devserver.Config
	}{
		{"unknown network", devserver.Config{Network: "udp", Addr: "127.0.0.1:0"}},
		{"unix without path", devserver.Config{Network: "unix"}},
		{"domain with line break", devserver.Config{Addr: "127.0.0.1:0", Domain: "evil\r\n250 x"}},
		{"cert without key", devserver.Config{Addr: "127.0.0.1:0", TLSCertFile: "cert.pem"}},
		{"negative size", devserver.Config{Addr: "127.0.0.1:0", MaxMessageBytes: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := devserver.Start(tc.cfg)
			if err == nil {
				srv.Close()
			}
			if !errors.Is(err, devserver.ErrInvalidConfig) {
				t.Fatalf("Start error = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// goSMTPGoroutines counts goroutines inside go-smtp's accept loop or a
// connection handler. A goroutine that has already passed the handler's
// WaitGroup.Done and is merely exiting is not counted: Close cannot, and
// need not, wait for that last instant.
func goSMTPGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "go-smtp.(*Server).handleConn(") || strings.Contains(g, "go-smtp.(*Server).Serve(") {
			n++
		}
	}
	return n
}

func TestCloseEndsEverything(t *testing.T) {
	srv, err := devserver.Start(devserver.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	// One idle client and one stalled in the middle of DATA: Close must
	// not wait for either of them to finish.
	idle := dialRaw(t, "tcp", srv.Addr(), nil)
	idle.cmd(250, "EHLO idle.test")
	stalled := dialRaw(t, "tcp", srv.Addr(), nil)
	stalled.cmd(250, "EHLO stalled.test")
	stalled.cmd(250, "MAIL FROM:<a@example.org>")
	stalled.cmd(250, "RCPT TO:<b@example.org>")
	stalled.cmd(354, "DATA")
	if err := stalled.PrintfLine("Subject: never finished"); err != nil {
		t.Fatal(err)
	}
	if n := goSMTPGoroutines(); n < 3 {
		t.Fatalf("%d go-smtp goroutines before Close, want at least 3 (serve + 2 conns)", n)
	}

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return while clients were connected")
	}
	if n := goSMTPGoroutines(); n != 0 {
		t.Errorf("%d go-smtp goroutines still running after Close", n)
	}
	for _, c := range []*rawConn{idle, stalled} {
		// The server may say goodbye first; the stream must then end, and
		// not merely by the test's own deadline.
		var err error
		for err == nil {
			_, err = c.ReadLine()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection still open after Close")
		}
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if len(srv.Messages()) != 0 {
		t.Errorf("the unfinished message was stored")
	}
}

func TestCloseWaitsForRunningHandler(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	srv, err := devserver.Start(devserver.Config{Addr: "127.0.0.1:0", Hooks: devserver.Hooks{
		Data: func(*devserver.Message) *devserver.Reject {
			close(entered)
			<-release
			return nil
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, "tcp", srv.Addr(), nil)
	c.cmd(250, "EHLO client.test")
	c.cmd(250, "MAIL FROM:<a@example.org>")
	c.cmd(250, "RCPT TO:<b@example.org>")
	c.data(testBody)
	<-entered

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	// Close ends the client's connection first ...
	var rerr error
	for rerr == nil {
		_, rerr = c.ReadLine()
	}
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Fatal("Close did not close the client connection")
	}
	// ... but cannot return while the handler still runs.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a DATA handler was running", err)
	default:
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := goSMTPGoroutines(); n != 0 {
		t.Errorf("%d go-smtp goroutines still running after Close", n)
	}
}

// TestQueueIDInReply: the reply to the final dot names the message by the
// QueueID that hooks and Messages see, and every message gets its own.
func TestQueueIDInReply(t *testing.T) {
	var hookIDs []string
	var mu sync.Mutex
	srv := devtest.Start(t, devserver.Config{Hooks: devserver.Hooks{Data: func(m *devserver.Message) *devserver.Reject {
		mu.Lock()
		hookIDs = append(hookIDs, m.QueueID)
		mu.Unlock()
		return nil
	}}})
	rc := dialRaw(t, "tcp", srv.Addr(), nil)
	rc.cmd(250, "EHLO client.example")
	var replies []string
	for i := 0; i < 2; i++ {
		rc.cmd(250, "MAIL FROM:<a@example.org>")
		rc.cmd(250, "RCPT TO:<b@example.org>")
		rc.data(testBody)
		replies = append(replies, rc.expect(250))
	}
	msgs := srv.Messages()
	if len(msgs) != 2 || msgs[0].QueueID == "" || msgs[0].QueueID == msgs[1].QueueID {
		t.Fatalf("queue IDs %+v, want two distinct", msgs)
	}
	for i, m := range msgs {
		if want := "2.0.0 OK: queued as " + m.QueueID; replies[i] != want {
			t.Errorf("reply %d = %q, want %q", i, replies[i], want)
		}
		if hookIDs[i] != m.QueueID {
			t.Errorf("hook saw %q, Messages %q", hookIDs[i], m.QueueID)
		}
	}
}
