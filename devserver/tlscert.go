package devserver

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/mailbot/mailbot/internal/selfsigned"
)

// loadCertificate returns the configured key pair, or a freshly generated
// self-signed one when no files are configured, together with its parsed
// leaf.
func loadCertificate(cfg Config) (tls.Certificate, *x509.Certificate, error) {
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("devserver: load TLS key pair: %w", err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("devserver: parse TLS certificate: %w", err)
		}
		cert.Leaf = leaf
		return cert, leaf, nil
	}
	return selfSignedCertificate(cfg.Domain)
}

// selfSignedCertificate creates a certificate valid for localhost, the
// loopback addresses and domain.
func selfSignedCertificate(domain string) (tls.Certificate, *x509.Certificate, error) {
	cert, err := selfsigned.Certificate("mailbot dev-server", domain)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("devserver: %w", err)
	}
	return cert, cert.Leaf, nil
}
