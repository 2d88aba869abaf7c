package devserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Message is one message the server accepted.
type Message struct {
	// From is the reverse path of MAIL FROM ("" for the null sender).
	From string
	// To lists the accepted recipients in RCPT order. In LMTP mode,
	// recipients refused by Hooks.DataRcpt are left out.
	To []string
	// MailOptions holds the MAIL FROM parameters that were present, keyed
	// by their upper-case keyword: SIZE, BODY, SMTPUTF8 (value ""),
	// REQUIRETLS (value ""), RET, ENVID and AUTH (xtext-decoded, "<>" for
	// an empty identity).
	MailOptions map[string]string
	// RcptOptions holds, per recipient, the RCPT TO parameters that were
	// present: NOTIFY (comma separated, as sent) and ORCPT ("type;addr",
	// decoded).
	RcptOptions map[string]map[string]string
	// Data is the message content exactly as received, after dot
	// unstuffing, with CRLF line endings and without the final ".".
	Data []byte
	// TLS reports whether the transaction ran over TLS.
	TLS bool
	// AuthUser is the authenticated user name, or "" without AUTH.
	AuthUser string
	// Path is the Maildir file the message was stored in, or "".
	Path string
	// Received is when the server accepted the message.
	Received time.Time
	// QueueID is the server's name for the message, unique within this
	// Server. It is known to hooks and ends the reply to the final ".":
	// "250 2.0.0 OK: queued as <QueueID>", so a client's transcript names
	// the message it sent.
	QueueID string
}

// clone returns a deep copy so that callers cannot alter the server's
// record or each other's.
func (m Message) clone() Message {
	m.To = slices.Clone(m.To)
	m.MailOptions = maps.Clone(m.MailOptions)
	if m.RcptOptions != nil {
		ro := make(map[string]map[string]string, len(m.RcptOptions))
		for k, v := range m.RcptOptions {
			ro[k] = maps.Clone(v)
		}
		m.RcptOptions = ro
	}
	m.Data = slices.Clone(m.Data)
	return m
}

// Server is a running development mail server. Its methods are safe for
// concurrent use.
type Server struct {
	cfg      Config
	smtp     *gosmtp.Server
	ln       *trackingListener
	addr     string
	leaf     *x509.Certificate
	pool     *x509.CertPool
	maildir  *maildir
	serveErr chan error // receives Serve's result once

	mu       sync.Mutex
	msgs     []Message
	received int           // messages accepted since start; may exceed len(msgs)
	arrived  chan struct{} // closed and replaced on every arrival

	nextID atomic.Uint64 // numbers QueueIDs

	closeOnce sync.Once
	closeErr  error
}

// Start validates cfg, prepares TLS material and the Maildir, starts
// listening and serves connections in background goroutines until
// [Server.Close].
func Start(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cert, leaf, err := loadCertificate(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		leaf:     leaf,
		pool:     x509.NewCertPool(),
		arrived:  make(chan struct{}),
		serveErr: make(chan error, 1),
	}
	s.pool.AddCert(leaf)
	if cfg.Maildir != "" {
		if s.maildir, err = openMaildir(cfg.Maildir); err != nil {
			return nil, err
		}
	}

	tlsConfig := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	srv := gosmtp.NewServer(&backend{s: s})
	srv.Network = cfg.Network
	srv.Addr = cfg.Addr
	srv.Domain = cfg.Domain
	srv.LMTP = cfg.LMTP
	srv.TLSConfig = tlsConfig
	srv.AllowInsecureAuth = cfg.AllowInsecureAuth
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.EnableREQUIRETLS = true
	srv.EnableBINARYMIME = cfg.BinaryMIME
	srv.ErrorLog = slogPrinter{cfg.Logger}
	s.smtp = srv

	raw, err := net.Listen(cfg.Network, cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("devserver: listen on %s %s: %w", cfg.Network, cfg.Addr, err)
	}
	s.ln = newTrackingListener(raw)
	s.addr = raw.Addr().String()
	var ln net.Listener = s.ln
	if cfg.ImplicitTLS {
		// go-smtp recognises implicit TLS by the accepted conn being a
		// *tls.Conn and performs the handshake itself, under ReadTimeout.
		ln = tls.NewListener(s.ln, tlsConfig)
	}
	go func() {
		err := srv.Serve(ln)
		s.ln.serveExited()
		s.serveErr <- err
	}()
	return s, nil
}

// Addr returns the address the server listens on, with a ":0" port
// resolved; for a unix socket it is the socket path.
func (s *Server) Addr() string { return s.addr }

// Certificate returns the server's TLS leaf certificate.
func (s *Server) Certificate() *x509.Certificate { return s.leaf }

// CertPool returns a pool holding the server's certificate, for use as a
// client's tls.Config.RootCAs. It is a trust anchor only for the generated
// self-signed certificate; with configured files it holds just their leaf.
func (s *Server) CertPool() *x509.CertPool { return s.pool.Clone() }

// TLSConfig returns a client configuration that trusts the server's
// certificate and expects serverName ("localhost" or a loopback address,
// for the generated certificate).
func (s *Server) TLSConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: s.CertPool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// Messages returns copies of the kept messages in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = m.clone()
	}
	return out
}

// WaitMessages blocks until at least n messages have been accepted since
// start, then returns [Server.Messages]. It returns ctx's error, wrapped,
// if ctx ends first.
func (s *Server) WaitMessages(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		got, arrived := s.received, s.arrived
		s.mu.Unlock()
		if got >= n {
			return s.Messages(), nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return nil, fmt.Errorf("devserver: wait for %d messages, have %d: %w", n, got, ctx.Err())
		}
	}
}

// record stores m and wakes every waiter.
func (s *Server) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	if max := s.cfg.MaxKept; max > 0 && len(s.msgs) > max {
		// Copy down rather than reslice so dropped messages can be
		// collected.
		s.msgs = append(s.msgs[:0], s.msgs[len(s.msgs)-max:]...)
	}
	s.received++
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// Close stops the listener, closes every connection and waits until all
// connection goroutines have returned. It is idempotent: later calls return
// the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		// Close connections first, and mark the listener so a conn
		// accepted from now on is closed at once: then Shutdown, which
		// closes the listener and waits for go-smtp's connection
		// goroutines, cannot wait on a live client.
		s.ln.closeConns()
		err := s.smtp.Shutdown(context.Background())
		if serr := <-s.serveErr; serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("devserver: close: %w", err)
		}
	})
	return s.closeErr
}

// trackingListener remembers every accepted connection so Close can end
// them, including ones go-smtp has accepted but not yet registered.
//
// It also tells Close when go-smtp's accept loop is idle (blocked in
// Accept) or gone: go-smtp counts a connection in a WaitGroup right after
// Accept returns it, and Shutdown waits on that WaitGroup, so Shutdown must
// not start while an accepted connection is still on its way to being
// counted.
type trackingListener struct {
	net.Listener

	mu      sync.Mutex
	idle    *sync.Cond // signalled when waiting or exited changes
	closed  bool
	conns   map[*trackedConn]struct{}
	waiting bool // the accept loop is inside Accept
	exited  bool // the accept loop has returned
}

func newTrackingListener(raw net.Listener) *trackingListener {
	l := &trackingListener{Listener: raw, conns: make(map[*trackedConn]struct{})}
	l.idle = sync.NewCond(&l.mu)
	return l
}

func (l *trackingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.waiting = true
	l.idle.Broadcast()
	l.mu.Unlock()
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.closed {
			// Closing: refuse it here and keep accepting until Shutdown
			// closes the listener, so go-smtp counts no new connection.
			l.mu.Unlock()
			_ = c.Close()
			continue
		}
		tc := &trackedConn{Conn: c, ln: l}
		l.conns[tc] = struct{}{}
		l.waiting = false
		l.mu.Unlock()
		return tc, nil
	}
}

// closeConns ends every tracked connection, refuses new ones, and waits
// until the accept loop is back in Accept or has returned.
func (l *trackingListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		_ = c.Conn.Close()
	}
	clear(l.conns)
	for !l.waiting && !l.exited {
		l.idle.Wait()
	}
}

// serveExited records that the accept loop has returned.
func (l *trackingListener) serveExited() {
	l.mu.Lock()
	l.exited = true
	l.idle.Broadcast()
	l.mu.Unlock()
}

type trackedConn struct {
	net.Conn
	ln *trackingListener
}

func (c *trackedConn) Close() error {
	c.ln.mu.Lock()
	delete(c.ln.conns, c)
	c.ln.mu.Unlock()
	return c.Conn.Close()
}

// slogPrinter adapts a *slog.Logger to go-smtp's ErrorLog interface.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	p.l.Warn("smtp server: " + fmt.Sprintf(format, v...))
}

func (p slogPrinter) Println(v ...any) {
	p.l.Warn("smtp server: " + fmt.Sprint(v...))
}
