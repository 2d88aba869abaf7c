// Package devtest starts a [devserver.Server] for the duration of a test.
//
// It lives apart from devserver so that the mailbot binary, which embeds
// the development server, does not link the testing package.
package devtest

import (
	"testing"

	"github.com/mailbot/mailbot/devserver"
)

// Start starts a development server for tb and closes it in tb.Cleanup.
// An empty cfg.Addr (with TCP) becomes "127.0.0.1:0", so parallel tests
// never compete for a port. It stops the test if the server cannot start,
// and reports an error if closing it fails.
func Start(tb testing.TB, cfg devserver.Config) *devserver.Server {
	tb.Helper()
	if cfg.Addr == "" && (cfg.Network == "" || cfg.Network == "tcp") {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := devserver.Start(cfg)
	if err != nil {
		tb.Fatalf("start dev server: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close dev server: %v", err)
		}
	})
	return s
}
