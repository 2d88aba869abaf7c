package smtptest_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/smtp/smtptest"
)

// rawClient is a bare line-oriented client, so that the fake server is tested
// independently of mailbot's SMTP client.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dial(t *testing.T, addr string) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return wrap(t, conn)
}

func wrap(t *testing.T, conn net.Conn) *rawClient {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn)}
}

// write sends s as given.
func (c *rawClient) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// send sends one line with CRLF.
func (c *rawClient) send(line string) { c.t.Helper(); c.write(line + "\r\n") }

// expect reads one line and checks it, CRLF stripped.
func (c *rawClient) expect(want string) {
	c.t.Helper()
	got, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read, want %q: %v (partial %q)", want, err, got)
	}
	if got = strings.TrimSuffix(got, "\r\n"); got != want {
		c.t.Fatalf("read %q, want %q", got, want)
	}
}

// expectEOF checks that the server closed the connection.
func (c *rawClient) expectEOF() {
	c.t.Helper()
	rest, err := io.ReadAll(c.r)
	if err != nil || len(rest) != 0 {
		c.t.Fatalf("want EOF, got %q, %v", rest, err)
	}
}

// checkErr compares err with want field by field; want.Err is matched with
// errors.Is.
func checkErr(t *testing.T, err error, want *smtptest.ScriptError) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("Wait() = %v, want nil", err)
		}
		return
	}
	var se *smtptest.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("Wait() = %v, want a *ScriptError", err)
	}
	if se.Conn != want.Conn || se.Line != want.Line || se.Step != want.Step || se.Got != want.Got || !errors.Is(se.Err, want.Err) {
		t.Fatalf("Wait() = %#v (%v), want %#v", se, se, want)
	}
}

const greeting = `
# greeting and EHLO
S: 220 fake.test ESMTP
C: EHLO localhost
S: 250-fake.test
S: 250 8BITMIME
`

func TestServer(t *testing.T) {
	tests := []struct {
		name         string
		script       string
		client       func(c *rawClient)
		want         *smtptest.ScriptError
		wantReceived []string
		wantData     []string
	}{
		{
			name:   "session played to the end",
			script: greeting + "C: QUIT\nS: 221 bye\n! expect-eof\n",
			client: func(c *rawClient) {
				c.expect("220 fake.test ESMTP")
				c.send("EHLO localhost")
				c.expect("250-fake.test")
				c.expect("250 8BITMIME")
				c.send("QUIT")
				c.expect("221 bye")
				c.conn.Close()
			},
			wantReceived: []string{"EHLO localhost", "QUIT"},
		},
		{
			name:   "mismatch reports the script line and closes",
			script: greeting,
			client: func(c *rawClient) {
				c.expect("220 fake.test ESMTP")
				c.send("HELO localhost")
				c.expectEOF()
			},
			want:         &smtptest.ScriptError{Conn: 1, Line: 4, Step: "C: EHLO localhost", Got: "HELO localhost", Err: smtptest.ErrMismatch},
			wantReceived: []string{"HELO localhost"},
		},
		{
			name:   "regexp and any line",
			script: "S: 220 x\nC~ ^AUTH PLAIN [A-Za-z0-9+/=]+$\nS: 235 ok\nC: *\nS: 250 ok\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				c.send("AUTH PLAIN AHVzZXIAcGFzcw==")
				c.expect("235 ok")
				c.send("XYZZY anything")
				c.expect("250 ok")
				c.expectEOF()
			},
			wantReceived: []string{"AUTH PLAIN AHVzZXIAcGFzcw==", "XYZZY anything"},
		},
		{
			name:   "regexp mismatch",
			script: "S: 220 x\nC~ ^AUTH PLAIN [A-Za-z0-9+/=]+$\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				c.send("AUTH LOGIN")
				c.expectEOF()
			},
			want:         &smtptest.ScriptError{Conn: 1, Line: 2, Step: "C~ ^AUTH PLAIN [A-Za-z0-9+/=]+$", Got: "AUTH LOGIN", Err: smtptest.ErrMismatch},
			wantReceived: []string{"AUTH LOGIN"},
		},
		{
			name:   "data body captured dot-stuffed",
			script: "S: 220 x\nC: DATA\nS: 354 go\n! data\nS: 250 queued\nC: QUIT\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				c.send("DATA")
				c.expect("354 go")
				c.write("Subject: hi\r\n\r\n..dot\r\nend\r\n.\r\n")
				c.expect("250 queued")
				c.send("QUIT")
			},
			wantReceived: []string{"DATA", "QUIT"},
			wantData:     []string{"Subject: hi\r\n\r\n..dot\r\nend\r\n"},
		},
		{
			name:   "dot after bare LF is body, not the end",
			script: "S: 220 x\nC: DATA\nS: 354 go\n! data\nS: 250 queued\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				c.send("DATA")
				c.expect("354 go")
				c.write("a\n.\r\nb\r\n.\r\n")
				c.expect("250 queued")
			},
			wantReceived: []string{"DATA"},
			wantData:     []string{"a\n.\r\nb\r\n"},
		},
		{
			name:   "empty data body",
			script: "S: 220 x\nC: DATA\nS: 354 go\n! data\nS: 250 queued\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				c.send("DATA")
				c.expect("354 go")
				c.write(".\r\n")
				c.expect("250 queued")
			},
			wantReceived: []string{"DATA"},
			wantData:     []string{""},
		},
		{
			name:   "raw bytes with escapes",
			script: `! raw 220 a\r\n250-b\x00c\\d` + "\n",
			client: func(c *rawClient) {
				got, err := io.ReadAll(c.r)
				if want := "220 a\r\n250-b\x00c\\d"; err != nil || string(got) != want {
					c.t.Fatalf("read %q, %v; want %q", got, err, want)
				}
			},
		},
		{
			name:   "drip",
			script: "! drip-interval 1ms\n! drip 220 slow\nS: 250 fast\n",
			client: func(c *rawClient) {
				c.expect("220 slow")
				c.expect("250 fast")
				c.expectEOF()
			},
		},
		{
			name:   "flood read to the end",
			script: "! flood 3 250-x\nS: 250 end\n",
			client: func(c *rawClient) {
				for range 3 {
					c.expect("250-x")
				}
				c.expect("250 end")
			},
		},
		{
			name:   "flood cut short by the client",
			script: "S: 220 x\n! flood 1000000 250-x\n! expect-eof\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				for range 10 {
					c.expect("250-x")
				}
				c.conn.Close()
			},
		},
		{
			name:   "expect-eof but the client talks",
			script: "S: 221 bye\n! expect-eof\n",
			client: func(c *rawClient) {
				c.expect("221 bye")
				c.send("QUIT")
			},
			want:         &smtptest.ScriptError{Conn: 1, Line: 2, Step: "! expect-eof", Got: "QUIT", Err: smtptest.ErrNotEOF},
			wantReceived: []string{"QUIT"},
		},
		{
			name:   "client hangs up early",
			script: "S: 220 x\nC: QUIT\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				c.conn.Close()
			},
			want: &smtptest.ScriptError{Conn: 1, Line: 2, Step: "C: QUIT", Err: smtptest.ErrUnexpectedEOF},
		},
		{
			name:   "bare LF",
			script: "S: 220 x\nC: EHLO localhost\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				c.write("EHLO localhost\n")
				c.expectEOF()
			},
			want:         &smtptest.ScriptError{Conn: 1, Line: 2, Step: "C: EHLO localhost", Got: "EHLO localhost", Err: smtptest.ErrBareLF},
			wantReceived: []string{"EHLO localhost"},
		},
		{
			name:   "line too long",
			script: "S: 220 x\nC: *\n",
			client: func(c *rawClient) {
				c.expect("220 x")
				// The server may close while this is in flight; the
				// outcome is judged by Wait.
				_, _ = c.conn.Write([]byte(strings.Repeat("A", smtptest.MaxLineLength+10)))
				_, _ = io.Copy(io.Discard, c.r)
			},
			want: &smtptest.ScriptError{Conn: 1, Line: 2, Step: "C: *", Err: smtptest.ErrLineTooLong},
		},
		{
			name:   "close directive",
			script: "S: 421 go away\n! close\n",
			client: func(c *rawClient) {
				c.expect("421 go away")
				c.expectEOF()
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.NewServer(t, tc.script)
			tc.client(dial(t, srv.Addr()))
			checkErr(t, srv.Wait(), tc.want)
			if got := srv.Received(); !slices.Equal(got, tc.wantReceived) {
				t.Errorf("Received() = %q, want %q", got, tc.wantReceived)
			}
			var data []string
			for _, d := range srv.Data() {
				data = append(data, string(d))
			}
			if !slices.Equal(data, tc.wantData) {
				t.Errorf("Data() = %q, want %q", data, tc.wantData)
			}
		})
	}
}

func TestTranscript(t *testing.T) {
	srv := smtptest.NewServer(t, greeting+"C: DATA\nS: 354 go\n! data\n! raw 250 ok\\r\\n\n! flood 2 250-x\n! drip-interval 0s\n! drip 221 bye\n! expect-eof\n")
	c := dial(t, srv.Addr())
	c.expect("220 fake.test ESMTP")
	c.send("EHLO localhost")
	c.expect("250-fake.test")
	c.expect("250 8BITMIME")
	c.send("DATA")
	c.expect("354 go")
	c.write("line 1\r\n..line 2\r\n.\r\n")
	c.expect("250 ok")
	c.expect("250-x")
	c.expect("250-x")
	c.expect("221 bye")
	c.conn.Close()
	checkErr(t, srv.Wait(), nil)
	want := strings.Join([]string{
		"S: 220 fake.test ESMTP",
		"C: EHLO localhost",
		"S: 250-fake.test",
		"S: 250 8BITMIME",
		"C: DATA",
		"S: 354 go",
		"C: line 1",
		"C: ..line 2",
		"C: .",
		`! raw 250 ok\r\n`,
		"! flood 2 250-x",
		"S: 221 bye",
		"! expect-eof",
	}, "\n") + "\n"
	if got := srv.Transcript(); got != want {
		t.Errorf("Transcript() =\n%s\nwant\n%s", got, want)
	}
}

const startTLSScript = `
S: 220 fake.test ESMTP
C: EHLO localhost
S: 250-fake.test
S: 250 STARTTLS
C: STARTTLS
S: 220 2.0.0 ready
! starttls
C: EHLO localhost
S: 250 fake.test
C: QUIT
S: 221 bye
`

func TestStartTLS(t *testing.T) {
	for _, serverName := range []string{"localhost", "127.0.0.1"} {
		t.Run(serverName, func(t *testing.T) {
			srv := smtptest.NewServer(t, startTLSScript)
			c := dial(t, srv.Addr())
			c.expect("220 fake.test ESMTP")
			c.send("EHLO localhost")
			c.expect("250-fake.test")
			c.expect("250 STARTTLS")
			c.send("STARTTLS")
			c.expect("220 2.0.0 ready")
			tc := tls.Client(c.conn, &tls.Config{RootCAs: srv.CertPool(), ServerName: serverName})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("TLS handshake: %v", err)
			}
			certs := tc.ConnectionState().PeerCertificates
			if len(certs) == 0 || sha256.Sum256(certs[0].Raw) != srv.TLSFingerprintSHA256() {
				t.Errorf("peer certificate does not match TLSFingerprintSHA256()")
			}
			if !certs[0].Equal(srv.Certificate()) {
				t.Errorf("peer certificate differs from Certificate()")
			}
			c = wrap(t, tc)
			c.send("EHLO localhost")
			c.expect("250 fake.test")
			c.send("QUIT")
			c.expect("221 bye")
			checkErr(t, srv.Wait(), nil)
		})
	}
}

func TestStartTLSRejectsPipelinedPlaintext(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 x\nC: STARTTLS\nS: 220 ready\n! starttls\n")
	c := dial(t, srv.Addr())
	c.expect("220 x")
	// One write, so both lines reach the server's buffer together, as they
	// would from a client that pipelines across STARTTLS.
	c.write("STARTTLS\r\nEHLO injected\r\n")
	c.expect("220 ready")
	checkErr(t, srv.Wait(), &smtptest.ScriptError{Conn: 1, Line: 4, Step: "! starttls", Err: smtptest.ErrDataBeforeTLS})
}

func TestImplicitTLS(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 tls.test ESMTP\nC: QUIT\nS: 221 bye\n", smtptest.WithImplicitTLS())
	conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: srv.CertPool(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("tls.Dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := wrap(t, conn)
	c.expect("220 tls.test ESMTP")
	c.send("QUIT")
	c.expect("221 bye")
	checkErr(t, srv.Wait(), nil)
}

func TestImplicitTLSPlaintextClient(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 tls.test\n", smtptest.WithImplicitTLS())
	c := dial(t, srv.Addr())
	c.send("EHLO localhost")
	err := srv.Wait()
	var se *smtptest.ScriptError
	if !errors.As(err, &se) || se.Line != 0 || se.Conn != 1 {
		t.Fatalf("Wait() = %v, want a handshake *ScriptError for connection 1", err)
	}
}

func TestWithTLSConfig(t *testing.T) {
	own := selfSigned(t, "own.test")
	cfg := &tls.Config{Certificates: []tls.Certificate{own}, MinVersion: tls.VersionTLS13}
	srv := smtptest.NewServer(t, "S: 220 own\n", smtptest.WithImplicitTLS(), smtptest.WithTLSConfig(cfg))
	if !srv.Certificate().Equal(own.Leaf) {
		t.Fatal("Certificate() is not the WithTLSConfig certificate")
	}
	conn, err := tls.Dial("tcp", srv.Addr(), &tls.Config{RootCAs: srv.CertPool(), ServerName: "own.test"})
	if err != nil {
		t.Fatalf("tls.Dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	st := conn.ConnectionState()
	if st.Version != tls.VersionTLS13 || sha256.Sum256(st.PeerCertificates[0].Raw) != srv.TLSFingerprintSHA256() {
		t.Errorf("version %x, fingerprint match %v", st.Version, sha256.Sum256(st.PeerCertificates[0].Raw) == srv.TLSFingerprintSHA256())
	}
	wrap(t, conn).expect("220 own")
	checkErr(t, srv.Wait(), nil)
}

// selfSigned makes a certificate unlike the package's generated one.
func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		DNSNames:              []string{name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

func TestHang(t *testing.T) {
	t.Run("ended by Close", func(t *testing.T) {
		srv := smtptest.NewServer(t, "S: 220 x\n! hang\n")
		c := dial(t, srv.Addr())
		c.expect("220 x")
		c.send("NOOP")
		srv.Close()
		srv.Close() // idempotent
		if _, err := c.r.ReadByte(); err == nil {
			t.Fatal("connection still open after Close")
		}
		checkErr(t, srv.Wait(), nil)
	})
	t.Run("ended by the client", func(t *testing.T) {
		srv := smtptest.NewServer(t, "S: 220 x\n! hang\n")
		c := dial(t, srv.Addr())
		c.expect("220 x")
		c.send("NOOP")
		c.send("QUIT")
		c.conn.Close()
		checkErr(t, srv.Wait(), nil)
		if got, want := srv.Received(), []string{"NOOP", "QUIT"}; !slices.Equal(got, want) {
			t.Errorf("Received() = %q, want %q", got, want)
		}
	})
}

func TestReadTimeout(t *testing.T) {
	srv := smtptest.NewServer(t, greeting, smtptest.WithReadTimeout(50*time.Millisecond))
	c := dial(t, srv.Addr())
	c.expect("220 fake.test ESMTP")
	err := srv.Wait() // the client stays silent
	checkErr(t, err, &smtptest.ScriptError{Conn: 1, Line: 4, Step: "C: EHLO localhost", Err: os.ErrDeadlineExceeded})
	c.expectEOF()
}

func TestAcceptTimeout(t *testing.T) {
	srv := smtptest.NewServer(t, greeting, smtptest.WithAcceptTimeout(20*time.Millisecond))
	checkErr(t, srv.Wait(), &smtptest.ScriptError{Conn: 1, Err: os.ErrDeadlineExceeded})
}

func TestWaitAfterCloseWithoutClient(t *testing.T) {
	srv := smtptest.NewServer(t, greeting)
	srv.Close()
	checkErr(t, srv.Wait(), &smtptest.ScriptError{Conn: 1, Err: smtptest.ErrServerClosed})
}

func TestServerScripts(t *testing.T) {
	srv := smtptest.NewServerScripts(t, []string{
		"S: 421 try later\n! close\n",
		"S: 220 welcome\nC: QUIT\nS: 221 bye\n",
	})
	c := dial(t, srv.Addr())
	c.expect("421 try later")
	c.expectEOF()
	c = dial(t, srv.Addr())
	c.expect("220 welcome")
	c.send("QUIT")
	c.expect("221 bye")
	checkErr(t, srv.Wait(), nil)
	want := "# connection 1\nS: 421 try later\n! close\n# connection 2\nS: 220 welcome\nC: QUIT\nS: 221 bye\n"
	if got := srv.Transcript(); got != want {
		t.Errorf("Transcript() =\n%s\nwant\n%s", got, want)
	}
	// Every expected connection has arrived, so the listener is closed.
	if conn, err := net.Dial("tcp", srv.Addr()); err == nil {
		conn.Close()
		t.Error("a connection beyond the scripts was accepted")
	}
}

func TestWithConnectionsConcurrent(t *testing.T) {
	const n = 4
	srv := smtptest.NewServer(t, "S: 220 x\nC~ ^NOOP [0-9]$\nS: 250 ok\n", smtptest.WithConnections(n))
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dial(t, srv.Addr())
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, c := range clients {
		wg.Go(func() {
			line, err := c.r.ReadString('\n')
			if err == nil && line != "220 x\r\n" {
				err = errors.New("bad greeting " + line)
			}
			if err == nil {
				_, err = io.WriteString(c.conn, "NOOP "+string(rune('0'+i))+"\r\n")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkErr(t, srv.Wait(), nil)
	got := srv.Received()
	slices.Sort(got)
	if want := []string{"NOOP 0", "NOOP 1", "NOOP 2", "NOOP 3"}; !slices.Equal(got, want) {
		t.Errorf("Received() = %q, want %q", got, want)
	}
}

func TestLoadScript(t *testing.T) {
	path := filepath.Join(t.TempDir(), "session.txt")
	// CRLF line endings, as a transcript edited on Windows would have.
	script := "# saved transcript\r\nS: 220 file.test\r\nC: QUIT\r\nS: 221 bye\r\n"
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := smtptest.NewServer(t, smtptest.LoadScript(t, path))
	c := dial(t, srv.Addr())
	c.expect("220 file.test")
	c.send("QUIT")
	c.expect("221 bye")
	checkErr(t, srv.Wait(), nil)
}

func TestAddr(t *testing.T) {
	srv := smtptest.NewServer(t, "S: 220 x\n")
	host, port, err := net.SplitHostPort(srv.Addr())
	if err != nil || host != "127.0.0.1" || host != srv.Host() || port == "0" || port != strconv.Itoa(srv.Port()) {
		t.Errorf("Addr() = %q, Host() = %q, Port() = %d", srv.Addr(), srv.Host(), srv.Port())
	}
}
