package selfsigned

import (
	"crypto/x509"
	"net"
	"testing"
)

func TestCertificateNamesAndTrust(t *testing.T) {
	cert, err := Certificate("mailbot test", "mail.example.test", "192.0.2.7", "127.0.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	for _, name := range []string{"localhost", "mail.example.test", "127.0.0.1", "::1", "192.0.2.7"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}); err == nil {
		t.Error("verified for a name it was not made for")
	}
	if n := len(cert.Leaf.IPAddresses); n != 3 || !cert.Leaf.IPAddresses[2].Equal(net.ParseIP("192.0.2.7")) {
		t.Errorf("IP addresses %v: loopback must not be added twice", cert.Leaf.IPAddresses)
	}
}
