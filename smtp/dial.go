package smtp

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// TLSMode says how a Dialer secures the connection.
type TLSMode int

const (
	// TLSStartTLS (the zero value) upgrades with STARTTLS after EHLO and
	// fails if the server does not offer it. The usual mode for port 587.
	TLSStartTLS TLSMode = iota
	// TLSImplicit speaks TLS from the first byte (port 465, RFC 8314).
	TLSImplicit
	// TLSNone never encrypts. AUTH is then refused unless AllowInsecureAuth.
	TLSNone
	// TLSStartTLSIfOffered upgrades when the server offers STARTTLS and
	// goes on unencrypted otherwise (opportunistic; an active attacker can
	// strip the offer).
	TLSStartTLSIfOffered
)

// String returns the mode's configuration name.
func (m TLSMode) String() string {
	switch m {
	case TLSStartTLS:
		return "starttls"
	case TLSImplicit:
		return "implicit"
	case TLSNone:
		return "none"
	case TLSStartTLSIfOffered:
		return "starttls-if-offered"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// ParseTLSMode parses "starttls", "implicit", "none" or
// "starttls-if-offered".
func ParseTLSMode(s string) (TLSMode, error) {
	for _, m := range []TLSMode{TLSStartTLS, TLSImplicit, TLSNone, TLSStartTLSIfOffered} {
		if strings.EqualFold(s, m.String()) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("smtp: unknown TLS mode %q (want starttls, implicit, none or starttls-if-offered)", s)
}

// Dialer opens SMTP sessions. The zero value dials with STARTTLS required,
// certificates verified and default timeouts.
type Dialer struct {
	// LocalName is sent with EHLO/HELO; default the host name.
	LocalName string
	// TLS selects implicit TLS, STARTTLS (default) or none.
	TLS TLSMode
	// TLSConfig is used for implicit TLS and STARTTLS. ServerName defaults
	// to the dialled host; MinVersion is raised to TLS 1.2.
	TLSConfig *tls.Config
	// TLSFingerprints pins the server certificate: the SHA-256 of the
	// leaf certificate's DER must equal one of these. Pinning replaces
	// chain and host name verification, as msmtp's tls_fingerprint does.
	TLSFingerprints [][32]byte
	// Timeout bounds connecting: TCP, TLS handshake, greeting, EHLO and
	// STARTTLS. Default 30s.
	Timeout time.Duration
	// CommandTimeout bounds each later command; default 5 minutes.
	CommandTimeout time.Duration
	// DataTimeout bounds the wait for the reply to the final dot; default
	// 10 minutes.
	DataTimeout time.Duration
	// AllowInsecureAuth permits AUTH without TLS, loopback included.
	AllowInsecureAuth bool
	// LMTP speaks LMTP (RFC 2033): LHLO, and one reply per recipient
	// after the message.
	LMTP bool
	// NoChunking sets Client.NoChunking: messages go with DATA even
	// when the server offers CHUNKING.
	NoChunking bool
	// Debug receives a transcript of the conversation, with AUTH payloads
	// redacted; DebugBody adds message bodies to it.
	Debug     io.Writer
	DebugBody bool
	// NetDialer dials the connection; default a net.Dialer.
	NetDialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
}

func (d *Dialer) configure(c *Client) {
	if d.LocalName != "" {
		c.LocalName = d.LocalName
	}
	if d.CommandTimeout > 0 {
		c.CommandTimeout = d.CommandTimeout
	}
	if d.DataTimeout > 0 {
		c.DataTimeout = d.DataTimeout
	}
	c.AllowInsecureAuth = d.AllowInsecureAuth
	c.lmtp = d.LMTP
	c.NoChunking = d.NoChunking
	c.pins = d.TLSFingerprints
	if d.Debug != nil {
		c.SetDebug(d.Debug, d.DebugBody)
	}
}

// Dial connects to addr ("host:port") over TCP and prepares the session as
// the TLSMode says: with TLSStartTLS it sends EHLO and STARTTLS, so that the
// returned client is encrypted and ready for Login. Like StartTLS, it leaves
// the new greeting to the first command, which sends EHLO before anything
// else (RFC 3207 §4.2). Every failure is a
// *ConnectError, *TLSError, *TimeoutError or *NotSupportedError, and leaves
// no connection open.
func (d *Dialer) Dial(ctx context.Context, addr string) (*Client, error) {
	return d.dial(ctx, "tcp", addr)
}

// DialUnix connects to an LMTP or SMTP server on a Unix socket.
func (d *Dialer) DialUnix(ctx context.Context, path string) (*Client, error) {
	return d.dial(ctx, "unix", path)
}

func (d *Dialer) dial(ctx context.Context, network, addr string) (*Client, error) {
	host := addr
	if network != "unix" {
		h, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, &ConnectError{Addr: addr, Err: err}
		}
		host = h
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	nd := d.NetDialer
	if nd == nil {
		nd = &net.Dialer{}
	}
	conn, err := nd.DialContext(dctx, network, addr)
	if err != nil {
		if ctx.Err() == nil && dctx.Err() != nil || isNetTimeout(err) {
			return nil, &ConnectError{Addr: addr, Err: &TimeoutError{Op: "connect", Err: err}}
		}
		return nil, &ConnectError{Addr: addr, Err: err}
	}
	if d.TLS == TLSImplicit {
		tc := tls.Client(conn, buildTLSConfig(d.TLSConfig, host, d.TLSFingerprints))
		if err := tc.HandshakeContext(dctx); err != nil {
			conn.Close()
			if dctx.Err() != nil {
				return nil, &ConnectError{Addr: addr, Err: &TimeoutError{Op: "TLS handshake", Err: err}}
			}
			return nil, &TLSError{Op: "connect", Err: err}
		}
		conn = tc
	}
	c, err := newClient(dctx, conn, host, d)
	if err != nil {
		var se *SMTPError
		if errors.As(err, &se) || errors.Is(err, io.EOF) {
			return nil, &ConnectError{Addr: addr, Err: err}
		}
		var de *DisconnectedError
		if errors.As(err, &de) {
			return nil, &ConnectError{Addr: addr, Err: err}
		}
		return nil, err
	}
	switch d.TLS {
	case TLSStartTLS, TLSStartTLSIfOffered:
		if err := c.EhloOrHeloIfNeeded(dctx); err != nil {
			c.Close()
			return nil, err
		}
		if !c.HasExtension("STARTTLS") {
			if d.TLS == TLSStartTLSIfOffered {
				break
			}
			c.Close()
			return nil, &NotSupportedError{Extension: "STARTTLS",
				Msg: fmt.Sprintf("%s did not offer STARTTLS and tls mode is starttls; use tls = \"implicit\" for port 465, or \"starttls-if-offered\"/\"none\" only on a trusted network", addr)}
		}
		if err := c.StartTLS(dctx, d.TLSConfig); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Dial connects to addr over TCP without TLS and reads the greeting, like
// smtplib.SMTP(host, port). Call StartTLS to encrypt.
func Dial(ctx context.Context, addr string) (*Client, error) {
	d := Dialer{TLS: TLSNone}
	return d.Dial(ctx, addr)
}

// DialTLS connects to addr with implicit TLS (port 465), like
// smtplib.SMTP_SSL. config may be nil.
func DialTLS(ctx context.Context, addr string, config *tls.Config) (*Client, error) {
	d := Dialer{TLS: TLSImplicit, TLSConfig: config}
	return d.Dial(ctx, addr)
}

// DialLMTP connects to an LMTP server, like smtplib.LMTP. network is "tcp"
// or "unix".
func DialLMTP(ctx context.Context, network, addr string) (*Client, error) {
	d := Dialer{TLS: TLSNone, LMTP: true}
	return d.dial(ctx, network, addr)
}

// buildTLSConfig applies mailbot's floor: TLS 1.2 at least, the server name
// set, and pinning when asked.
func buildTLSConfig(base *tls.Config, host string, pins [][32]byte) *tls.Config {
	var cfg *tls.Config
	if base != nil {
		cfg = base.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if len(pins) > 0 {
		// The pin is the trust decision, so the chain is not checked
		// against the system roots (self-signed relays are the common
		// reason to pin).
		cfg.InsecureSkipVerify = true
		want := append([][32]byte(nil), pins...)
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			got := sha256.Sum256(cs.PeerCertificates[0].Raw)
			for _, p := range want {
				if p == got {
					return nil
				}
			}
			return fmt.Errorf("certificate fingerprint %s matches no pinned fingerprint", FormatFingerprint(got))
		}
	}
	return cfg
}

// FormatFingerprint formats a SHA-256 fingerprint as colon-separated upper
// case hex, the form msmtp and openssl print.
func FormatFingerprint(fp [32]byte) string {
	h := strings.ToUpper(hex.EncodeToString(fp[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// ParseFingerprint parses a SHA-256 fingerprint in hex, with or without
// colons.
func ParseFingerprint(s string) ([32]byte, error) {
	var fp [32]byte
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return fp, fmt.Errorf("smtp: bad SHA-256 fingerprint %q: want 32 bytes of hex", s)
	}
	copy(fp[:], b)
	return fp, nil
}

// CertificateFingerprint returns the SHA-256 fingerprint of a certificate.
func CertificateFingerprint(cert *x509.Certificate) [32]byte {
	return sha256.Sum256(cert.Raw)
}

// StartTLS upgrades the session with STARTTLS (RFC 3207), sending EHLO first
// if needed. config may be nil. Afterwards the client forgets the server's
// extensions and, as RFC 3207 §4.2 requires, greets the server again before
// anything else: call Ehlo, as smtplib users do, or let the next command
// (any of them, DoCmd and PutCmd included; QUIT excepted) send EHLO with the
// same LocalName first. It also discards anything the server sent before the
// handshake, which would otherwise be read as if it came over TLS
// (CVE-2011-0411-style response injection). If the server does not offer
// STARTTLS the error is a *NotSupportedError; if it rejects the command, an
// *SMTPError; if the handshake or certificate check fails, a *TLSError.
func (c *Client) StartTLS(ctx context.Context, config *tls.Config) error {
	if c.tlsState != nil {
		return errors.New("smtp: STARTTLS: connection is already encrypted")
	}
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		return err
	}
	if !c.HasExtension("STARTTLS") {
		return &NotSupportedError{Extension: "STARTTLS", Msg: "the server did not advertise STARTTLS in its EHLO reply"}
	}
	rep, err := c.cmd(ctx, "STARTTLS", "STARTTLS")
	if err != nil {
		return err
	}
	if rep.Code != 220 {
		return replyError("STARTTLS", rep)
	}
	if n := c.r.Buffered(); n > 0 {
		c.debug.note("discarding %d bytes the server sent before the TLS handshake", n)
	}
	end, err := c.begin(ctx, "STARTTLS")
	if err != nil {
		return err
	}
	defer end()
	c.setDeadline(ctx, c.CommandTimeout)
	tc := tls.Client(c.conn, buildTLSConfig(config, c.serverName, c.pins))
	if err := tc.HandshakeContext(ctx); err != nil {
		c.broken = &TLSError{Op: "STARTTLS", Err: err}
		c.closeConn()
		if ctx.Err() != nil || isNetTimeout(err) {
			return &TimeoutError{Op: "STARTTLS handshake", Err: err}
		}
		return c.broken
	}
	c.conn = tc
	c.r = bufio.NewReaderSize(tc, 4096)
	c.w = bufio.NewWriterSize(tc, 32*1024)
	st := tc.ConnectionState()
	c.tlsState = &st
	c.debug.note("TLS established: %s, %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	c.helloDone, c.esmtp, c.ext, c.authMechs = false, false, nil, nil
	c.helloAfterTLS = true
	return nil
}
