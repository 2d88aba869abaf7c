package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailbot/mailbot/smtp"
)

const probeDesc = `Shows what an SMTP server offers, like msmtp --serverinfo: the greeting,
the EHLO extensions before and after STARTTLS, AUTH mechanisms, the SIZE
limit, the TLS version and cipher, and the certificate chain with subjects,
expiry and SHA-256 fingerprints (usable as tls_fingerprint).

The certificate is shown even when it does not verify; the verification
result is reported. probe sends no mail.

With -c and --account NAME instead of HOST, probe inspects the account's
server (host, port, TLS mode and CA as the account says) and then checks
its credentials: it logs in with the account's user and password, or its
OAuth2 token (XOAUTH2 or OAUTHBEARER, refreshed once if the server refuses
it), over a second connection verified as mailbot always verifies, and
reports whether AUTH succeeded. Without --account it never authenticates.

The port defaults to 465 with --tls implicit, 25 with --tls none, else 587.

Exit status: 0 the server answered and its certificate (if any) verifies,
(with --account) and AUTH succeeded, 1 usage error, 2 invalid config file,
3 connect failed, 4 TLS failed or the certificate does not verify
(everything is still shown), 5 AUTH failed, 9 timeout.`

// cmdProbe implements "mailbot probe".
func (m *Main) cmdProbe(ctx context.Context, args []string) int {
	fs := m.newFlagSet("probe", "HOST[:PORT] | -c mailbot.yaml --account NAME [--tls starttls|implicit|none|starttls-if-offered] [--ca-file F] [--timeout 30s]", probeDesc)
	cfgFlag := fs.String("c", "", "config file, for --account (default $"+envConfig+")")
	account := fs.String("account", "", "probe this configured account's server and check its credentials")
	tlsMode := fs.String("tls", "", "starttls (default; STARTTLS when offered), implicit, none or starttls-if-offered")
	caFile := fs.String("ca-file", "", "PEM file of CA certificates to verify against instead of the system roots")
	serverName := fs.String("server-name", "", "name to verify the certificate for (default: the host)")
	timeout := fs.Duration("timeout", 30*time.Second, "connect and per-command timeout")
	pos, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return status
	}
	var auth *sendTarget
	if *account != "" {
		if len(pos) != 0 {
			return m.usageError(fs, "give HOST[:PORT] or --account, not both")
		}
		cfg, logger, status, ok := m.optionalConfig("probe", *cfgFlag)
		if !ok {
			return status
		}
		if cfg == nil {
			return m.usageError(fs, "--account needs a config file (-c)")
		}
		tgt, status := m.sendTarget(cfg, &sendFlags{account: *account, tlsMode: *tlsMode, caFile: *caFile, timeout: *timeout, cmd: "probe"}, logger)
		if status != exitOK {
			return status
		}
		defer tgt.dev.Close()
		auth = tgt
		pos = []string{tgt.addr}
		if *tlsMode == "" {
			*tlsMode = tgt.dialer.TLS.String()
		}
	}
	if len(pos) != 1 {
		return m.usageError(fs, "want exactly one HOST[:PORT]")
	}
	mode := smtp.TLSStartTLSIfOffered
	if *tlsMode != "" {
		md, err := smtp.ParseTLSMode(*tlsMode)
		if err != nil {
			return m.usageError(fs, "--tls: %v", err)
		}
		mode = md
	}
	host, port, err := net.SplitHostPort(pos[0])
	if err != nil {
		host, port = pos[0], ""
	}
	if port == "" {
		switch {
		case mode == smtp.TLSImplicit:
			port = "465"
		case mode == smtp.TLSNone:
			port = "25"
		default:
			port = "587"
		}
	} else if port == "465" && *tlsMode == "" {
		mode = smtp.TLSImplicit
	}
	var roots *x509.CertPool
	if *caFile != "" {
		if roots, err = loadCAFile(*caFile); err != nil {
			return m.usageError(fs, "--ca-file: %v", err)
		}
	} else if auth != nil {
		roots = auth.dialer.TLSConfig.RootCAs
	}
	name := *serverName
	if name == "" {
		name = host
	}
	p := &prober{w: m.Stdout, roots: roots, serverName: name}
	if auth != nil {
		p.pins = auth.dialer.TLSFingerprints
	}
	status = p.run(ctx, net.JoinHostPort(host, port), mode, *timeout, m)
	if auth == nil || status != exitOK && status != exitTLS {
		return status
	}
	if as := p.checkAuth(ctx, auth, *account, *timeout, m); as != exitOK {
		return as
	}
	return status
}

// checkAuth logs in as the account says over a new connection, verified
// like every connection that carries credentials (probe's own accepts any
// certificate so that it can show it), and reports the outcome.
func (p *prober) checkAuth(ctx context.Context, t *sendTarget, account string, timeout time.Duration, m *Main) int {
	ctx, cancel := context.WithTimeout(ctx, 4*timeout)
	defer cancel()
	how := "password"
	switch {
	case t.oauth2 != nil:
		how = "OAuth2"
		if t.oauth2Mech != "" {
			how += " " + strings.ToUpper(t.oauth2Mech)
		}
	case t.user == "":
		fmt.Fprintf(p.w, "AUTH: account %q has no user name; nothing to check\n", account)
		return exitOK
	}
	c, err := t.dialer.Dial(ctx, t.addr)
	if err != nil {
		fmt.Fprintf(p.w, "AUTH as %s (%s): not tried: %v\n", t.user, how, err)
		fmt.Fprintf(m.Stderr, "mailbot probe: connect for AUTH: %v\n", err)
		return exitForError(err)
	}
	defer c.Close()
	if status := t.login(ctx, c, m.Stderr, "probe"); status != exitOK {
		fmt.Fprintf(p.w, "AUTH as %s (%s): FAILED\n", t.user, how)
		return status
	}
	fmt.Fprintf(p.w, "AUTH as %s (%s): OK\n", t.user, how)
	if _, err := c.Quit(ctx); err != nil {
		fmt.Fprintf(m.Stderr, "mailbot probe: QUIT: %v\n", err)
	}
	return exitOK
}

// prober prints what it learns as it goes, so a failure late in the
// conversation still leaves everything before it on screen.
type prober struct {
	w          io.Writer
	roots      *x509.CertPool
	serverName string
	// pins, from an account's tls_fingerprint, replace chain
	// verification, as they do for every connection of the account.
	pins      [][32]byte
	verifyErr error
	verified  bool
}

// tlsConfig accepts any certificate so the chain can be shown, and
// verifies it separately to report the result.
func (p *prober) tlsConfig() *tls.Config {
	return &tls.Config{
		ServerName:         p.serverName,
		InsecureSkipVerify: true, // verified by hand in VerifyConnection, reported, never trusted with secrets
		VerifyConnection: func(cs tls.ConnectionState) error {
			p.verified = true
			p.verifyErr = verifyChain(cs, p.roots, p.serverName)
			if len(p.pins) > 0 {
				p.verifyErr = verifyPin(cs, p.pins)
			}
			return nil
		},
	}
}

func verifyPin(cs tls.ConnectionState, pins [][32]byte) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("server sent no certificate")
	}
	got := smtp.CertificateFingerprint(cs.PeerCertificates[0])
	for _, pin := range pins {
		if got == pin {
			return nil
		}
	}
	return fmt.Errorf("certificate fingerprint %s matches no tls_fingerprint of the account", smtp.FormatFingerprint(got))
}

func verifyChain(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: name})
	return err
}

func (p *prober) run(ctx context.Context, addr string, mode smtp.TLSMode, timeout time.Duration, m *Main) int {
	ctx, cancel := context.WithTimeout(ctx, 4*timeout)
	defer cancel()
	fail := func(what string, err error) int {
		fmt.Fprintf(m.Stderr, "mailbot probe: %s: %v\n", what, err)
		if what == "STARTTLS" {
			if code := exitForError(err); code != exitFailure && code != exitTLS {
				return code
			}
			return exitTLS
		}
		return exitForError(err)
	}
	nd := &net.Dialer{Timeout: timeout}
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail("connect", &smtp.ConnectError{Addr: addr, Err: err})
	}
	how := "plain TCP"
	if mode == smtp.TLSImplicit {
		tc := tls.Client(conn, p.tlsConfig())
		_ = tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fail("TLS handshake", &smtp.TLSError{Op: "implicit TLS", Err: err})
		}
		_ = tc.SetDeadline(time.Time{})
		conn, how = tc, "implicit TLS"
	}
	fmt.Fprintf(p.w, "Connected to %s (%s)\n", addr, how)
	c, err := smtp.NewClient(conn, p.serverName)
	if err != nil {
		return fail("greeting", err)
	}
	defer c.Close()
	c.CommandTimeout = timeout
	fmt.Fprintf(p.w, "Greeting: %s\n", oneLine(c.Greeting()))
	if st, ok := c.TLSConnectionState(); ok {
		p.printTLS(st)
	}
	if _, err := c.Ehlo(ctx); err != nil {
		return fail("EHLO", err)
	}
	label := "EHLO extensions"
	if mode != smtp.TLSImplicit {
		label += " (before STARTTLS)"
	}
	p.printExtensions(label, c)
	if _, ok := c.TLSConnectionState(); !ok && mode != smtp.TLSNone {
		if !c.HasExtension("STARTTLS") {
			fmt.Fprintln(p.w, "STARTTLS: not offered")
			if mode == smtp.TLSStartTLS && m != nil {
				p.printSummary(c)
				return fail("STARTTLS", &smtp.NotSupportedError{Extension: "STARTTLS", Msg: "the server does not offer STARTTLS"})
			}
		} else {
			if err := c.StartTLS(ctx, p.tlsConfig()); err != nil {
				return fail("STARTTLS", err)
			}
			st, _ := c.TLSConnectionState()
			p.printTLS(st)
			if _, err := c.Ehlo(ctx); err != nil {
				return fail("EHLO after STARTTLS", err)
			}
			p.printExtensions("EHLO extensions (after STARTTLS)", c)
		}
	}
	p.printSummary(c)
	if _, err := c.Quit(ctx); err != nil {
		fmt.Fprintf(m.Stderr, "mailbot probe: QUIT: %v\n", err)
	}
	if p.verified && p.verifyErr != nil {
		// Everything was shown, but a client verifying certificates
		// (mailbot's default) would refuse this server: say so in the
		// exit status too, so scripts can act on it.
		return exitTLS
	}
	return exitOK
}

func oneLine(r smtp.Reply) string {
	return strconv.Itoa(r.Code) + " " + strings.Join(r.Lines, " / ")
}

func (p *prober) printExtensions(label string, c *smtp.Client) {
	fmt.Fprintf(p.w, "%s:\n", label)
	ext := c.Extensions()
	names := make([]string, 0, len(ext))
	for k := range ext {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if ext[k] != "" {
			fmt.Fprintf(p.w, "  %s %s\n", k, ext[k])
		} else {
			fmt.Fprintf(p.w, "  %s\n", k)
		}
	}
}

func (p *prober) printSummary(c *smtp.Client) {
	if mechs := c.AuthMechanisms(); len(mechs) > 0 {
		fmt.Fprintf(p.w, "AUTH mechanisms: %s\n", strings.Join(mechs, " "))
	} else {
		fmt.Fprintln(p.w, "AUTH mechanisms: none offered")
	}
	if n, ok := c.MaxMessageSize(); ok {
		fmt.Fprintf(p.w, "SIZE: %d bytes (%.1f MiB)\n", n, float64(n)/(1<<20))
	} else {
		fmt.Fprintln(p.w, "SIZE: no limit advertised")
	}
}

func (p *prober) printTLS(st tls.ConnectionState) {
	fmt.Fprintf(p.w, "TLS: %s, %s\n", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	fmt.Fprintln(p.w, "Certificate chain:")
	now := time.Now()
	for i, cert := range st.PeerCertificates {
		fmt.Fprintf(p.w, "  [%d] subject: %s\n", i, cert.Subject)
		fmt.Fprintf(p.w, "      issuer:  %s\n", cert.Issuer)
		left := cert.NotAfter.Sub(now).Round(time.Hour)
		state := fmt.Sprintf("expires in %d days", int(left.Hours()/24))
		if left < 0 {
			state = "EXPIRED"
		}
		fmt.Fprintf(p.w, "      valid:   %s to %s (%s)\n", cert.NotBefore.UTC().Format(time.DateOnly), cert.NotAfter.UTC().Format(time.DateOnly), state)
		var names []string
		names = append(names, cert.DNSNames...)
		for _, ip := range cert.IPAddresses {
			names = append(names, ip.String())
		}
		if len(names) > 0 {
			fmt.Fprintf(p.w, "      names:   %s\n", strings.Join(names, ", "))
		}
		fmt.Fprintf(p.w, "      SHA-256: %s\n", smtp.FormatFingerprint(smtp.CertificateFingerprint(cert)))
	}
	switch {
	case !p.verified:
	case p.verifyErr != nil:
		fmt.Fprintf(p.w, "Certificate verification: FAILED: %v\n", p.verifyErr)
	default:
		fmt.Fprintf(p.w, "Certificate verification: OK for %s\n", p.serverName)
	}
}
