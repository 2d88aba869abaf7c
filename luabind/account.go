package luabind

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/mailbot/mailbot/outbox"
	"github.com/mailbot/mailbot/smtp"
)

// tlsDefaults applies the port and TLS defaults scripts get from
// smtp.connect: no TLS mode → implicit on 465, STARTTLS otherwise; no port
// → 465 for implicit, 25 for none, 587 otherwise.
func tlsDefaults(mode string, port int) (smtp.TLSMode, int, error) {
	var m smtp.TLSMode
	switch {
	case mode != "":
		var err error
		if m, err = smtp.ParseTLSMode(mode); err != nil {
			return 0, 0, err
		}
	case port == 465:
		m = smtp.TLSImplicit
	default:
		m = smtp.TLSStartTLS
	}
	if port == 0 {
		switch m {
		case smtp.TLSImplicit:
			port = 465
		case smtp.TLSNone:
			port = 25
		default:
			port = 587
		}
	}
	return m, port, nil
}

// OutboxAccount turns an account into the outbox's delivery settings, with
// the same defaults scripts get from smtp.connect{account = ...}. In a dry
// run (dry not nil) delivery goes to the capture server instead.
func (a Account) OutboxAccount(dry *DryRun) (outbox.Account, error) {
	mode, port, err := tlsDefaults(a.TLS, a.Port)
	if err != nil {
		return outbox.Account{}, fmt.Errorf("account %s: %w", a.Host, err)
	}
	cfg := &tls.Config{RootCAs: a.RootCAs}
	d := &smtp.Dialer{TLS: mode, TLSConfig: cfg, TLSFingerprints: a.TLSFingerprints,
		AllowInsecureAuth: a.AllowInsecureAuth, NoChunking: a.NoChunking}
	if a.Timeout > 0 {
		d.Timeout, d.CommandTimeout = a.Timeout, a.Timeout
	}
	addr := net.JoinHostPort(a.Host, strconv.Itoa(port))
	var transcript func() io.Writer
	if dry != nil {
		cfg.RootCAs, cfg.ServerName = dry.RootCAs, "localhost"
		d.TLSFingerprints = nil
		if d.TLS == smtp.TLSImplicit {
			d.TLS = smtp.TLSStartTLS
		}
		if dry.Transcript != nil {
			meant := addr
			transcript = func() io.Writer { return dry.Transcript(meant) }
		}
		addr = dry.Addr
	}
	password := a.Password
	if dry != nil && password != nil {
		real := password
		password = func() (string, error) {
			if p, err := real(); err == nil {
				return p, nil
			}
			return "dry-run", nil // the capture server accepts any password
		}
	}
	oa := outbox.Account{Dialer: d, Addr: addr, Username: a.Username, Password: password,
		Concurrency: a.Concurrency, RatePerSecond: a.RatePerSecond, IdleTimeout: a.IdleTimeout,
		OAuth2: a.OAuth2, OAuth2Mechanism: a.OAuth2Mechanism}
	if dry != nil && oa.OAuth2 != nil {
		// Nothing leaves the machine in a dry run, a token request to the
		// identity provider included: the capture server takes any
		// password.
		oa.OAuth2, oa.OAuth2Mechanism = nil, ""
		oa.Password = func() (string, error) { return "dry-run", nil }
	}
	// Dry runs sign too, so the captured .eml shows the signature.
	oa.Sign = a.Sign
	oa.Fallback = a.Fallback
	oa.Transcript = transcript
	return oa, nil
}
