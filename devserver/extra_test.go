package devserver_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/smtp"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogging(t *testing.T) {
	var buf syncBuffer
	srv := devtest.Start(t, devserver.Config{
		Users:  map[string]string{"bot": "pa55word-right"},
		Logger: slog.New(slog.NewJSONHandler(&buf, nil)),
	})
	err := sendTCP(t, srv, send{startTLS: true, auth: smtp.PlainAuth("", "bot", "pa55word-wrong", "127.0.0.1"),
		from: "a@example.org", to: []string{"b@example.org"}, data: testBody})
	if replyCode(err) != 535 {
		t.Fatalf("wrong password: %v, want 535", err)
	}
	err = sendTCP(t, srv, send{startTLS: true, auth: smtp.PlainAuth("", "bot", "pa55word-right", "127.0.0.1"),
		from: "a@example.org", to: []string{"b@example.org", "c@example.org"}, data: testBody})
	if err != nil {
		t.Fatal(err)
	}
	// Close so that every log line has been written.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "pa55word") {
		t.Fatalf("log contains a password:\n%s", out)
	}
	var received []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "message received" {
			delete(rec, "time")
			received = append(received, rec)
		}
	}
	want := []map[string]any{{
		"level": "INFO", "msg": "message received", "from": "a@example.org",
		"to": []any{"b@example.org", "c@example.org"}, "size": float64(len(testBody)),
		"path": "", "tls": true, "auth_user": "bot",
	}}
	if !reflect.DeepEqual(received, want) {
		t.Fatalf("message log records = %v, want %v", received, want)
	}
}

func TestReadTimeout(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{ReadTimeout: 50 * time.Millisecond})
	c := dialRaw(t, "tcp", srv.Addr(), nil)
	// Say nothing: the server must give up on us by itself.
	if msg := c.expect(421); !strings.Contains(msg, "4.4.2") {
		t.Errorf("idle reply %q, want 4.4.2", msg)
	}
	if _, err := c.ReadLine(); err == nil {
		t.Errorf("connection still open after idle timeout")
	}
}

func TestCertificateFromFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, key := selfSignedPair(t)
	writePEM(t, certFile, "CERTIFICATE", cert)
	writePEM(t, keyFile, "PRIVATE KEY", key)

	srv := devtest.Start(t, devserver.Config{TLSCertFile: certFile, TLSKeyFile: keyFile})
	if !bytes.Equal(srv.Certificate().Raw, cert) {
		t.Fatalf("Certificate() is not the configured certificate")
	}
	if err := sendTCP(t, srv, send{startTLS: true, from: "a@example.org", to: []string{"b@example.org"}, data: testBody}); err != nil {
		t.Fatalf("send with configured certificate: %v", err)
	}

	if srv, err := devserver.Start(devserver.Config{Addr: "127.0.0.1:0", TLSCertFile: keyFile, TLSKeyFile: certFile}); err == nil {
		srv.Close()
		t.Fatalf("Start with swapped key and certificate files succeeded")
	}
}

// selfSignedPair returns a DER certificate for 127.0.0.1 and its PKCS #8
// key.
func selfSignedPair(t *testing.T) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	cert, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	key, err = x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestChunking(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{})
	c := dialRaw(t, "tcp", srv.Addr(), nil)
	if ehlo := c.cmd(250, "EHLO client.test"); !strings.Contains(ehlo, "CHUNKING") {
		t.Fatalf("EHLO lacks CHUNKING: %q", ehlo)
	}
	c.cmd(250, "MAIL FROM:<a@example.org>")
	c.cmd(250, "RCPT TO:<b@example.org>")
	// BDAT carries bytes verbatim: no dot-stuffing, so a leading dot stays.
	first, last := "Subject: chunked\r\n\r\n", ".one\r\ntwo\r\n"
	for _, chunk := range []string{
		fmt.Sprintf("BDAT %d\r\n%s", len(first), first),
		fmt.Sprintf("BDAT %d LAST\r\n%s", len(last), last),
	} {
		if _, err := c.W.WriteString(chunk); err != nil {
			t.Fatal(err)
		}
		if err := c.W.Flush(); err != nil {
			t.Fatal(err)
		}
		c.expect(250)
	}
	msgs, err := srv.WaitMessages(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(msgs[0].Data), first+last; got != want {
		t.Fatalf("Data = %q, want %q", got, want)
	}
}
