package smtptest

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TLSEvent is the entry a [Recorder] adds to a session when a STARTTLS
// handshake completes.
const TLSEvent = "<TLS>"

// Recorder is an ESMTP server that records the order of what each client
// sends, to check command sequencing rules such as RFC 3207 §4.2's "EHLO
// again after STARTTLS". It serves any number of connections on 127.0.0.1
// and answers every command positively, in any order, so that a client's
// mistakes end up in the record instead of being refused:
//
//   - EHLO, LHLO advertise PIPELINING, 8BITMIME, SIZE, ENHANCEDSTATUSCODES
//     and STARTTLS; after STARTTLS, AUTH PLAIN LOGIN instead of STARTTLS;
//   - STARTTLS upgrades with the package's self-signed certificate;
//   - AUTH PLAIN and LOGIN accept any credentials;
//   - MAIL, RCPT, DATA (with its body), RSET, NOOP, HELO, VRFY, HELP, QUIT
//     succeed; anything else gets 502.
//
// Each session's record holds the client's command lines (for AUTH only the
// mechanism; SASL responses and message bodies are not recorded), with
// [TLSEvent] where a handshake completed. A command is recorded before its
// reply is sent, so once a client has read a reply, the record holds the
// command.
type Recorder struct {
	ln     net.Listener
	tlsCfg *tls.Config
	leaf   *x509.Certificate

	wg        sync.WaitGroup
	closeOnce sync.Once
	mu        sync.Mutex
	closed    bool
	conns     map[net.Conn]struct{}
	sessions  [][]string
}

// NewRecorder starts a recorder on 127.0.0.1:0 and registers tb.Cleanup to
// close it.
func NewRecorder(tb testing.TB) *Recorder {
	tb.Helper()
	cert, err := testCert()
	if err != nil {
		tb.Fatalf("smtptest: recorder certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("smtptest: recorder listen: %v", err)
	}
	r := &Recorder{
		ln:     ln,
		tlsCfg: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		leaf:   cert.Leaf,
		conns:  make(map[net.Conn]struct{}),
	}
	r.wg.Add(1)
	go r.serve()
	tb.Cleanup(r.Close)
	return r
}

// Addr returns the listening address, "127.0.0.1:port".
func (r *Recorder) Addr() string { return r.ln.Addr().String() }

// Port returns the listening TCP port.
func (r *Recorder) Port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// CertPool returns a pool that trusts the certificate the recorder presents.
func (r *Recorder) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(r.leaf)
	return pool
}

// TLSFingerprintSHA256 returns the SHA-256 digest of the presented
// certificate, for pinning.
func (r *Recorder) TLSFingerprintSHA256() [32]byte { return sha256.Sum256(r.leaf.Raw) }

// Sessions returns a copy of every session's record, in accept order.
func (r *Recorder) Sessions() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]string, len(r.sessions))
	for i, s := range r.sessions {
		out[i] = append([]string(nil), s...)
	}
	return out
}

// Close stops the recorder, closes every connection and waits for the
// handlers to return. It is idempotent.
func (r *Recorder) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.ln.Close()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	})
	r.wg.Wait()
}

func (r *Recorder) serve() {
	defer r.wg.Done()
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			conn.Close()
			return
		}
		r.conns[conn] = struct{}{}
		r.sessions = append(r.sessions, nil)
		i := len(r.sessions) - 1
		r.wg.Add(1)
		r.mu.Unlock()
		go func() {
			defer r.wg.Done()
			r.handle(conn, i)
			r.mu.Lock()
			delete(r.conns, conn)
			r.mu.Unlock()
			conn.Close()
		}()
	}
}

func (r *Recorder) record(i int, entry string) {
	r.mu.Lock()
	r.sessions[i] = append(r.sessions[i], entry)
	r.mu.Unlock()
}

// recorderIdle bounds the wait for a client's next line, so a client that
// stops talking cannot keep a test's cleanup waiting.
const recorderIdle = 10 * time.Second

func (r *Recorder) handle(raw net.Conn, i int) {
	conn := raw
	br := bufio.NewReader(conn)
	bw := bufio.NewWriter(conn)
	encrypted := false
	say := func(lines ...string) bool {
		for _, l := range lines {
			bw.WriteString(l)
			bw.WriteString("\r\n")
		}
		return bw.Flush() == nil
	}
	readLine := func() (string, bool) {
		conn.SetReadDeadline(time.Now().Add(recorderIdle))
		l, err := br.ReadString('\n')
		if err != nil || len(l) > MaxLineLength {
			return "", false
		}
		return strings.TrimRight(l, "\r\n"), true
	}
	if !say("220 recorder.test ESMTP mailbot smtptest recorder") {
		return
	}
	for {
		line, ok := readLine()
		if !ok {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if verb == "AUTH" {
			mech, _, _ := strings.Cut(arg, " ")
			r.record(i, "AUTH "+strings.ToUpper(mech))
		} else {
			r.record(i, line)
		}
		switch verb {
		case "EHLO", "LHLO":
			ext := []string{"250-recorder.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 10240000", "250-ENHANCEDSTATUSCODES"}
			if encrypted {
				ext = append(ext, "250 AUTH PLAIN LOGIN")
			} else {
				ext = append(ext, "250 STARTTLS")
			}
			ok = say(ext...)
		case "HELO":
			ok = say("250 recorder.test")
		case "STARTTLS":
			if encrypted {
				ok = say("503 5.5.1 TLS already active")
				break
			}
			if !say("220 2.0.0 ready") {
				return
			}
			if br.Buffered() > 0 {
				return // bytes sent before the handshake: refuse to go on
			}
			tc := tls.Server(raw, r.tlsCfg)
			tc.SetDeadline(time.Now().Add(recorderIdle))
			if err := tc.Handshake(); err != nil {
				return
			}
			tc.SetDeadline(time.Time{})
			conn, encrypted = tc, true
			br, bw = bufio.NewReader(tc), bufio.NewWriter(tc)
			r.record(i, TLSEvent)
			continue
		case "AUTH":
			ok = r.auth(arg, say, readLine)
		case "MAIL", "RCPT", "RSET", "NOOP":
			ok = say("250 2.0.0 ok")
		case "DATA":
			if !say("354 go ahead") {
				return
			}
			for {
				l, ok := readLine()
				if !ok {
					return
				}
				if l == "." {
					break
				}
			}
			ok = say("250 2.0.0 queued")
		case "VRFY":
			ok = say("252 2.1.5 cannot verify, will accept")
		case "HELP":
			ok = say("214 2.0.0 see RFC 5321")
		case "QUIT":
			say("221 2.0.0 bye")
			return
		default:
			ok = say("502 5.5.1 command not implemented")
		}
		if !ok {
			return
		}
	}
}

// auth accepts PLAIN (with or without an initial response) and LOGIN.
func (r *Recorder) auth(arg string, say func(...string) bool, readLine func() (string, bool)) bool {
	mech, ir, hasIR := strings.Cut(arg, " ")
	steps := 0
	switch strings.ToUpper(mech) {
	case "PLAIN":
		if !hasIR {
			steps = 1
		}
	case "LOGIN":
		steps = 2
		if hasIR && ir != "" {
			steps = 1
		}
	default:
		return say("504 5.5.4 mechanism not supported")
	}
	for ; steps > 0; steps-- {
		if !say("334 ") {
			return false
		}
		l, ok := readLine()
		if !ok {
			return false
		}
		if l == "*" {
			return say("501 5.0.0 cancelled")
		}
	}
	return say("235 2.7.0 accepted")
}

// CheckHelloAfterTLS checks one [Recorder] session against RFC 3207 §4.2:
// a STARTTLS handshake happened, the client's first command on the TLS
// session is the hello it sent before STARTTLS (EHLO or LHLO, same name),
// and the command next (a verb such as "NOOP", "MAIL") was sent after that
// hello.
func CheckHelloAfterTLS(session []string, next string) error {
	tlsAt := -1
	for i, e := range session {
		if e == TLSEvent {
			tlsAt = i
			break
		}
	}
	if tlsAt < 0 {
		return fmt.Errorf("no STARTTLS handshake in %q", session)
	}
	hello := ""
	for _, e := range session[:tlsAt] {
		if v := verbOfLine(e); v == "EHLO" || v == "LHLO" {
			hello = e
		}
	}
	if hello == "" {
		return fmt.Errorf("no EHLO before STARTTLS in %q", session)
	}
	if tlsAt+1 >= len(session) {
		return fmt.Errorf("nothing sent after the TLS handshake in %q", session)
	}
	if got := session[tlsAt+1]; got != hello {
		return fmt.Errorf("first command after the TLS handshake is %q, want %q (RFC 3207 §4.2) in %q", got, hello, session)
	}
	for _, e := range session[tlsAt+2:] {
		if verbOfLine(e) == strings.ToUpper(next) {
			return nil
		}
	}
	return fmt.Errorf("%s was not sent after the new hello in %q", next, session)
}

// VerbsAfterTLS returns the verbs of the commands a session sent after its
// first TLS handshake, space-separated ("EHLO NOOP QUIT"): a compact form
// for tests to compare.
func VerbsAfterTLS(session []string) string {
	var verbs []string
	seen := false
	for _, e := range session {
		if seen {
			verbs = append(verbs, verbOfLine(e))
		}
		seen = seen || e == TLSEvent
	}
	return strings.Join(verbs, " ")
}

func verbOfLine(line string) string {
	v, _, _ := strings.Cut(line, " ")
	return strings.ToUpper(v)
}
