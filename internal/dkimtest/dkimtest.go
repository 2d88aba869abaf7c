// Package dkimtest helps tests check DKIM signatures mailbot adds: keys,
// and verification with go-msgauth's verifier against a public key given
// directly instead of looked up in DNS.
package dkimtest

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailbot/mailbot/message"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaErr  error
)

// RSAKey returns a 2048-bit RSA key, the same one for the whole test
// binary (generating one takes a while).
func RSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() { rsaKey, rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	if rsaErr != nil {
		t.Fatal(rsaErr)
	}
	return rsaKey
}

// Ed25519Key returns a new Ed25519 key.
func Ed25519Key(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// PEM encodes key as a PKCS #8 "PRIVATE KEY" block.
func PEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Verify checks msg's DKIM signatures with go-msgauth's verifier, the
// record for selector._domainkey.domain being key's public half. It returns
// nil when exactly one signature is there and it verifies.
func Verify(msg []byte, key crypto.Signer, domain, selector string) error {
	rec, err := message.DKIMRecord(key)
	if err != nil {
		return err
	}
	name := selector + "._domainkey." + domain
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(q string) ([]string, error) {
			if q != name {
				return nil, fmt.Errorf("no TXT record at %s (want %s)", q, name)
			}
			return []string{rec}, nil
		},
	})
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	switch len(vs) {
	case 0:
		return errors.New("the message carries no DKIM signature")
	case 1:
		if vs[0].Err != nil {
			return fmt.Errorf("signature of %s: %w", vs[0].Domain, vs[0].Err)
		}
		return nil
	}
	return fmt.Errorf("%d DKIM signatures, want 1", len(vs))
}

// ShortRSAPEM is a 512-bit RSA key (openssl genrsa 512), too short to
// sign DKIM.
const ShortRSAPEM = `-----BEGIN RSA PRIVATE KEY-----
MIIBOwIBAAJBAN05iQkn35VcXATdU4wnqwV/XS0PnEtdxmy0Px10mAiIdUiKFDTq
ehrAOHOS/kxt0DAKvzvorZAhLOeo8Js4d6ECAwEAAQJBAL2hIP8xJ61PQy2ETqZ4
JlgLCeKjW/UaiAkMJIHqPJwqS707zrayD8Ru7ta//TNEbiWb3t2uGWGdfCezKZ8Q
ZQECIQD8EXM/HlJwo5nn725E4FdH2ygnam6NoMBHIxD+V2DnMQIhAOCs7BjKKPGW
w1uDg+84pmaHAyfG2H3Io8zeFYcChFtxAiA7ltB82mk40aQ/rV2PEM3xYcDjWIjc
GGV8K7EHv5Zb8QIhALTWupohbd82qDuqmbEc+eKgXUvQ40QrEJy/TLiEsCAhAiBi
EXKP3tB4vzn1HyxAWPECbt3b3e4KagoIey33aFwgOQ==
-----END RSA PRIVATE KEY-----
`
