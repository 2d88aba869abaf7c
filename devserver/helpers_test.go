package devserver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
)

// waitTimeout bounds every wait in these tests so a bug shows up as a
// failure, not a hung test binary.
const waitTimeout = 10 * time.Second

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// send describes one net/smtp delivery.
type send struct {
	startTLS bool
	auth     smtp.Auth
	from     string
	to       []string
	data     string
}

// deliver runs a send over c and returns the first error, leaving the
// connection to the caller.
func deliver(c *smtp.Client, srv *devserver.Server, host string, s send) error {
	if s.startTLS {
		if err := c.StartTLS(srv.TLSConfig(host)); err != nil {
			return err
		}
	}
	if s.auth != nil {
		if err := c.Auth(s.auth); err != nil {
			return err
		}
	}
	if err := c.Mail(s.from); err != nil {
		return err
	}
	for _, rcpt := range s.to {
		if err := c.Rcpt(rcpt); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(s.data)); err != nil {
		return err
	}
	// Close returns the server's verdict on the message.
	return w.Close()
}

// sendTCP dials srv over plain TCP and runs s.
func sendTCP(t *testing.T, srv *devserver.Server, s send) error {
	t.Helper()
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if err := deliver(c, srv, "127.0.0.1", s); err != nil {
		return err
	}
	return c.Quit()
}

// replyCode returns the SMTP code of a net/smtp error, or 0.
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// rawConn is a hand-driven conversation for what net/smtp cannot express
// (LMTP, ESMTP parameters, abandoned sessions).
type rawConn struct {
	t *testing.T
	*textproto.Conn
}

func dialRaw(t *testing.T, network, addr string, tlsConfig *tls.Config) *rawConn {
	t.Helper()
	var (
		c   net.Conn
		err error
	)
	if tlsConfig != nil {
		c, err = tls.Dial(network, addr, tlsConfig)
	} else {
		c, err = net.Dial(network, addr)
	}
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	if err := c.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	rc := &rawConn{t: t, Conn: textproto.NewConn(c)}
	t.Cleanup(func() { rc.Close() })
	rc.expect(220)
	return rc
}

// expect reads one (possibly multi-line) reply and fails unless it has
// the given code. It returns the reply text.
func (rc *rawConn) expect(code int) string {
	rc.t.Helper()
	got, msg, err := rc.ReadResponse(0)
	if err != nil {
		rc.t.Fatalf("read reply (want %d): %v", code, err)
	}
	if got != code {
		rc.t.Fatalf("reply = %d %q, want %d", got, msg, code)
	}
	return msg
}

// cmd sends line and expects a reply with code.
func (rc *rawConn) cmd(code int, line string) string {
	rc.t.Helper()
	if err := rc.PrintfLine("%s", line); err != nil {
		rc.t.Fatalf("send %q: %v", line, err)
	}
	return rc.expect(code)
}

// data sends DATA, the body (dot-stuffed) and the final dot, and returns
// without reading the verdict.
func (rc *rawConn) data(body string) {
	rc.t.Helper()
	rc.cmd(354, "DATA")
	w := rc.DotWriter()
	if _, err := w.Write([]byte(body)); err != nil {
		rc.t.Fatalf("write data: %v", err)
	}
	if err := w.Close(); err != nil {
		rc.t.Fatalf("end data: %v", err)
	}
}
