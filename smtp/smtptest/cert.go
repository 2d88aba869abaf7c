package smtptest

import (
	"crypto/tls"
	"sync"

	"github.com/mailbot/mailbot/internal/selfsigned"
)

// testCert is generated once per process: key generation is the slowest part
// of starting a TLS test server, and every server can share one identity.
var testCert = sync.OnceValues(generateCert)

// generateCert creates a self-signed certificate for "localhost",
// 127.0.0.1 and ::1, its own trust anchor.
func generateCert() (tls.Certificate, error) {
	return selfsigned.Certificate("mailbot smtptest")
}
