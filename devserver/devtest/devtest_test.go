package devtest_test

import (
	"net"
	"testing"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

func TestDevtestStart(t *testing.T) {
	var addr string
	t.Run("inner", func(t *testing.T) {
		srv := devtest.Start(t, devserver.Config{})
		addr = srv.Addr()
		host, _, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("Addr() = %q, want a 127.0.0.1 address", addr)
		}
		if c, err := net.Dial("tcp", addr); err != nil {
			t.Fatalf("dial running server: %v", err)
		} else {
			c.Close()
		}
	})
	// The subtest's cleanup has closed the server.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("server at %s still accepts after the test ended", addr)
	}
}
