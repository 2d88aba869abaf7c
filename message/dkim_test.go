package message_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailbot/mailbot/internal/dkimtest"
	"github.com/mailbot/mailbot/message"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

// testRSAKey is one 2048-bit key for the whole test binary: generating
// one takes a while.
func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func testEd25519Key(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// verifyDKIM checks msg's signatures with go-msgauth's verifier, the
// public key coming from DKIMRecord instead of DNS. It returns the
// verifications, failing the test if the lookup is not for the expected
// name.
func verifyDKIM(t *testing.T, msg []byte, key crypto.Signer, domain, selector string) []*dkim.Verification {
	t.Helper()
	rec, err := message.DKIMRecord(key)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if name != selector+"._domainkey."+domain {
				return nil, errors.New("no such record: " + name)
			}
			return []string{rec}, nil
		},
	})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return vs
}

const dkimTestMsg = "From: Bot <bot@example.com>\r\n" +
	"To: a@example.org\r\n" +
	"Subject: Report\r\n" +
	"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"X-Unsigned: yes\r\n" +
	"\r\n" +
	"Hello,\r\n\r\nall is well.\r\n"

func TestDKIMSignVerifies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		key  crypto.Signer
		algo string
	}{
		{"rsa", testRSAKey(t), "rsa-sha256"},
		{"ed25519", testEd25519Key(t), "ed25519-sha256"},
	}
	tamper := []struct {
		name  string
		edit  func(string) string
		valid bool
	}{
		{"untouched", func(s string) string { return s }, true},
		{"body", func(s string) string { return strings.Replace(s, "all is well", "all is lost", 1) }, false},
		{"subject", func(s string) string { return strings.Replace(s, "Subject: Report", "Subject: Invoice", 1) }, false},
		{"added From", func(s string) string { return "From: evil@example.net\r\n" + s }, false},
		{"unsigned header", func(s string) string { return strings.Replace(s, "X-Unsigned: yes", "X-Unsigned: no", 1) }, true},
		// Relaxed canonicalization: whitespace changes in transit are fine.
		{"whitespace", func(s string) string { return strings.Replace(s, "Subject: Report", "Subject:   Report ", 1) }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := message.NewDKIMSigner(message.DKIMOptions{Domain: "example.com", Selector: "s1", Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			if s.Algorithm() != tc.algo {
				t.Errorf("Algorithm = %q, want %q", s.Algorithm(), tc.algo)
			}
			signed, err := s.Sign([]byte(dkimTestMsg))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(signed), "DKIM-Signature: ") || !strings.HasSuffix(string(signed), dkimTestMsg) {
				t.Fatalf("signed message:\n%s", signed)
			}
			sig := string(signed[:len(signed)-len(dkimTestMsg)])
			for _, want := range []string{"a=" + tc.algo, "c=relaxed/relaxed", "d=example.com", "s=s1"} {
				if !strings.Contains(stripSpace(sig), want) {
					t.Errorf("signature lacks %s:\n%s", want, sig)
				}
			}
			for _, tm := range tamper {
				vs := verifyDKIM(t, []byte(tm.edit(string(signed))), tc.key, "example.com", "s1")
				if len(vs) != 1 {
					t.Fatalf("%s: %d verifications, want 1", tm.name, len(vs))
				}
				if got := vs[0].Err == nil; got != tm.valid {
					t.Errorf("%s: valid = %v (%v), want %v", tm.name, got, vs[0].Err, tm.valid)
				}
			}
		})
	}
}

// stripSpace removes folding whitespace so tags can be found in a folded
// header field.
func stripSpace(s string) string {
	return strings.NewReplacer(" ", "", "\t", "", "\r", "", "\n", "").Replace(s)
}

// signedHeaders returns the h= tag of the first DKIM-Signature.
func signedHeaders(t *testing.T, signed []byte) string {
	t.Helper()
	sig := stripSpace(string(signed[:bytes.Index(signed, []byte("\r\nFrom:"))]))
	for tag := range strings.SplitSeq(sig, ";") {
		if v, ok := strings.CutPrefix(tag, "h="); ok {
			return v
		}
	}
	t.Fatalf("no h= in %s", sig)
	return ""
}

func TestDKIMHeadersOption(t *testing.T) {
	t.Parallel()
	key := testEd25519Key(t)
	tests := []struct {
		name    string
		headers []string
		wantH   string
		// edits made after signing and whether the signature survives.
		toChangeValid bool
	}{
		{"default", nil, "From:From:Subject:Date:To:Message-ID", false},
		{"from and subject", []string{"From", "Subject"}, "From:From:Subject", true},
		{"lower case, absent and repeated", []string{"from", "subject", "List-Unsubscribe", "from"}, "from:from:subject", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := message.NewDKIMSigner(message.DKIMOptions{Domain: "example.com", Selector: "s1", Key: key, Headers: tc.headers})
			if err != nil {
				t.Fatal(err)
			}
			signed, err := s.Sign([]byte(dkimTestMsg))
			if err != nil {
				t.Fatal(err)
			}
			if got := signedHeaders(t, signed); got != tc.wantH {
				t.Errorf("h= %q, want %q", got, tc.wantH)
			}
			edited := strings.Replace(string(signed), "To: a@example.org", "To: b@example.org", 1)
			vs := verifyDKIM(t, []byte(edited), key, "example.com", "s1")
			if got := vs[0].Err == nil; got != tc.toChangeValid {
				t.Errorf("after changing To: valid = %v (%v), want %v", got, vs[0].Err, tc.toChangeValid)
			}
		})
	}
}

func TestDKIMSignNormalisesAndSignsOnce(t *testing.T) {
	t.Parallel()
	key := testEd25519Key(t)
	s, err := message.NewDKIMSigner(message.DKIMOptions{Domain: "example.com", Selector: "s1", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	other, err := message.NewDKIMSigner(message.DKIMOptions{Domain: "example.com", Selector: "s2", Key: testEd25519Key(t)})
	if err != nil {
		t.Fatal(err)
	}
	lf := strings.ReplaceAll(dkimTestMsg, "\r\n", "\n")
	signed, err := s.Sign([]byte(lf))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ReplaceAll(signed, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("bare LF left in the signed message:\n%q", signed)
	}
	if vs := verifyDKIM(t, signed, key, "example.com", "s1"); vs[0].Err != nil {
		t.Fatalf("LF message: %v", vs[0].Err)
	}
	// Header fields only: signed with the empty line added.
	hdrOnly, err := s.Sign([]byte("From: bot@example.com\r\nSubject: empty\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(hdrOnly, []byte("Subject: empty\r\n\r\n")) {
		t.Errorf("header-only message signed as %q", hdrOnly)
	}
	if vs := verifyDKIM(t, hdrOnly, key, "example.com", "s1"); vs[0].Err != nil {
		t.Errorf("header-only message: %v", vs[0].Err)
	}
	if _, err := s.Sign([]byte("From: bot@example.com")); err == nil || !strings.Contains(err.Error(), "no header/body separator") {
		t.Errorf("message without a line end: err = %v", err)
	}

	// Signed by another selector, then by s1 twice: one s1 signature, the
	// other kept.
	both, err := other.Sign(signed)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Sign(both)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(again, []byte("DKIM-Signature:")); n != 2 {
		t.Fatalf("%d signatures after signing again, want 2:\n%s", n, again)
	}
	if n := strings.Count(stripSpace(string(again)), "s=s1;"); n != 1 {
		t.Errorf("%d s1 signatures, want 1:\n%s", n, again)
	}
	vs := verifyDKIM(t, again, key, "example.com", "s1")
	if len(vs) != 2 {
		t.Fatalf("%d verifications, want 2", len(vs))
	}
	// The lookup knows only s1's key: exactly that signature verifies.
	valid := 0
	for _, v := range vs {
		if v.Err == nil {
			valid++
		}
	}
	if valid != 1 {
		t.Errorf("%d signatures verify, want 1 (s1)", valid)
	}
}

func TestDKIMSignerOptions(t *testing.T) {
	t.Parallel()
	key := testEd25519Key(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts message.DKIMOptions
		want string
	}{
		{"no domain", message.DKIMOptions{Selector: "s1", Key: key}, "no domain"},
		{"no selector", message.DKIMOptions{Domain: "example.com", Key: key}, "no selector"},
		{"no key", message.DKIMOptions{Domain: "example.com", Selector: "s1"}, "no key"},
		{"ecdsa", message.DKIMOptions{Domain: "example.com", Selector: "s1", Key: ec}, "want RSA or Ed25519"},
		{"no From", message.DKIMOptions{Domain: "example.com", Selector: "s1", Key: key, Headers: []string{"Subject"}}, "must include From"},
		{"bad name", message.DKIMOptions{Domain: "example.com", Selector: "s1", Key: key, Headers: []string{"From", "Sub ject"}}, "not a header field name"},
		{"colon", message.DKIMOptions{Domain: "example.com", Selector: "s1", Key: key, Headers: []string{"From:"}}, "not a header field name"},
	}
	for _, tc := range tests {
		_, err := message.NewDKIMSigner(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestParseDKIMKey(t *testing.T) {
	t.Parallel()
	rk := testRSAKey(t)
	ek := testEd25519Key(t)
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		algo string // "" when the key must be refused
		want string // substring of the error
	}{
		{"pkcs1 rsa", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), "rsa-sha256", ""},
		{"pkcs8 rsa", pkcs8(rk), "rsa-sha256", ""},
		{"pkcs8 ed25519", pkcs8(ek), "ed25519-sha256", ""},
		{"base64 seed", []byte(base64.StdEncoding.EncodeToString(ek.Seed()) + "\n"), "ed25519-sha256", ""},
		{"base64 64 bytes", []byte(base64.StdEncoding.EncodeToString(ek)), "ed25519-sha256", ""},
		{"base64 64 bytes mismatched", []byte(base64.StdEncoding.EncodeToString(append(ek.Seed(), make([]byte, 32)...))), "", "does not match"},
		{"base64 wrong length", []byte(base64.StdEncoding.EncodeToString([]byte("short"))), "", "not 5"},
		{"ec", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), "", "ECDSA keys cannot sign DKIM"},
		{"pkcs8 ec", pkcs8(ec), "", "want RSA or Ed25519"},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")}), "", "not a private key"},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte("x")}), "", "encrypted"},
		{"damaged", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte("x")}), "", "RSA PRIVATE KEY"},
		{"garbage", []byte("not a key"), "", "not a PEM private key"},
		{"short rsa", []byte(dkimtest.ShortRSAPEM), "", "512"},
	}
	for _, tc := range tests {
		key, err := message.ParseDKIMKey(tc.data)
		if tc.algo == "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		s, err := message.NewDKIMSigner(message.DKIMOptions{Domain: "example.com", Selector: "s1", Key: key})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if s.Algorithm() != tc.algo {
			t.Errorf("%s: Algorithm = %q, want %q", tc.name, s.Algorithm(), tc.algo)
		}
		signed, err := s.Sign([]byte(dkimTestMsg))
		if err != nil {
			t.Fatal(err)
		}
		if vs := verifyDKIM(t, signed, key, "example.com", "s1"); vs[0].Err != nil {
			t.Errorf("%s: %v", tc.name, vs[0].Err)
		}
	}
}

func TestDKIMRecord(t *testing.T) {
	t.Parallel()
	ek := testEd25519Key(t)
	rec, err := message.DKIMRecord(ek)
	if err != nil {
		t.Fatal(err)
	}
	if want := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey)); rec != want {
		t.Errorf("record = %q, want %q", rec, want)
	}
	rec, err = message.DKIMRecord(testRSAKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rec, "v=DKIM1; k=rsa; p=MII") {
		t.Errorf("record = %q", rec)
	}
}
