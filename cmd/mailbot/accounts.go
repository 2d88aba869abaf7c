package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/smtp"
)

// devPlaceholderPassword is sent to a dev server that accepts any
// credentials when the account names a user but no password source.
const devPlaceholderPassword = "dev"

// embeddedDev is the development server that accounts with host dev_server
// talk to: either started in-process or, when its address is taken, one
// that another mailbot process already runs.
type embeddedDev struct {
	srv  *devserver.Server // nil when reusing another process's server
	addr string
	pool *x509.CertPool
	// caPath is where the server's certificate was written as PEM, or "".
	caPath string
}

// Close stops the server if this process started it.
func (d *embeddedDev) Close() error {
	if d == nil || d.srv == nil {
		return nil
	}
	return d.srv.Close()
}

// devCAPath is where the dev server's certificate is written: next to the
// Maildir, so a second mailbot process (exec while run is up) and scripts
// using ca_file can find it.
func devCAPath(maildir string) string {
	if maildir == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(filepath.Clean(maildir)), "dev-ca.pem")
}

// startEmbeddedDev starts the dev_server section of cfg. If the listen
// address is taken and a dev-ca.pem from a running instance exists, that
// instance is used instead, so "mailbot exec" works while "mailbot run"
// holds the port.
func startEmbeddedDev(cfg *Config, logger *slog.Logger) (*embeddedDev, error) {
	dc := cfg.DevServer
	listen := dc.Listen
	if listen == "" {
		listen = devserver.DefaultAddr
	}
	maildir := cfg.Resolve(dc.Maildir)
	caPath := devCAPath(maildir)
	srv, err := devserver.Start(devserver.Config{
		Addr:    listen,
		Maildir: maildir,
		Users:   dc.Users,
		// A long-running dev server keeps messages in the Maildir; memory
		// holds only the latest few.
		MaxKept: 16,
		Logger:  logger.With("component", "dev_server"),
	})
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && caPath != "" {
			pool, perr := loadCAFile(caPath)
			if perr == nil {
				logger.Info("dev server address in use; using the running dev server", "addr", listen, "ca_file", caPath)
				return &embeddedDev{addr: listen, pool: pool, caPath: caPath}, nil
			}
		}
		return nil, fmt.Errorf("start dev_server: %w", err)
	}
	d := &embeddedDev{srv: srv, addr: srv.Addr(), pool: srv.CertPool()}
	if caPath != "" {
		if err := writeCertPEM(caPath, srv.Certificate()); err != nil {
			srv.Close()
			return nil, err
		}
		d.caPath = caPath
	}
	return d, nil
}

// writeCertPEM writes cert to path as PEM, creating parent folders.
func writeCertPEM(path string, cert *x509.Certificate) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write dev server certificate: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write dev server certificate: %w", err)
	}
	return nil
}

// luaAccounts converts the configured accounts for luabind. Password
// functions read the secret only when a script logs in, so an unset
// variable fails that account's logins and nothing else. Accounts with an
// oauth2 section get an OAuth2 token source instead of a password, with
// its cache under state_dir/oauth; its refreshes are logged to logger
// (never a token; nil logs nothing). dev may be nil when no dev server runs
// (dry runs redirect every connection anyway).
func luaAccounts(cfg *Config, dev *embeddedDev, getenv func(string) (string, bool), logger *slog.Logger) (map[string]luabind.Account, error) {
	out := make(map[string]luabind.Account, len(cfg.Accounts))
	for name, a := range cfg.Accounts {
		if a == nil {
			continue
		}
		acc := luabind.Account{
			Host:              a.Host,
			Port:              a.Port,
			TLS:               a.TLS,
			Username:          a.Username,
			Password:          passwordFunc(cfg, a, getenv),
			From:              a.From,
			Timeout:           a.Timeout,
			AllowInsecureAuth: a.AllowInsecureAuth,
			Concurrency:       a.Concurrency,
			RatePerSecond:     a.RateLimit,
			NoChunking:        a.chunkingOff(),
			IdleTimeout:       a.IdleTimeout,
		}
		acc.Fallback = a.Fallback
		if a.OAuth2 != nil {
			// One source per account; sources of the same account share
			// the cache file's lock process-wide (see package oauth).
			src, err := cfg.oauthSource(name, getenv, logger)
			if err != nil {
				return nil, fmt.Errorf("accounts.%s.oauth2: %w", name, err)
			}
			acc.OAuth2, acc.OAuth2Mechanism = src, a.OAuth2.mechanism()
		}
		if a.TLSFingerprint != "" {
			pin, err := smtp.ParseFingerprint(a.TLSFingerprint)
			if err != nil {
				return nil, fmt.Errorf("accounts.%s.tls_fingerprint: %w", name, err)
			}
			acc.TLSFingerprints = [][32]byte{pin}
		}
		if a.CAFile != "" {
			pool, err := loadCAFile(cfg.Resolve(a.CAFile))
			if err != nil {
				return nil, fmt.Errorf("accounts.%s.ca_file: %w", name, err)
			}
			acc.RootCAs = pool
		}
		if a.DKIM != nil {
			s, err := dkimSigner(cfg, a.DKIM)
			if err != nil {
				return nil, fmt.Errorf("accounts.%s.dkim: %w", name, err)
			}
			acc.Sign = s.Sign
		}
		if a.Host == DevServerHost {
			if err := pointAtDev(&acc, cfg, dev); err != nil {
				return nil, fmt.Errorf("accounts.%s: %w", name, err)
			}
		}
		out[name] = acc
	}
	return out, nil
}

// pointAtDev aims an account at the embedded dev server and trusts its
// generated certificate.
func pointAtDev(acc *luabind.Account, cfg *Config, dev *embeddedDev) error {
	addr := devserver.DefaultAddr
	if cfg.DevServer != nil && cfg.DevServer.Listen != "" {
		addr = cfg.DevServer.Listen
	}
	if dev != nil {
		addr = dev.addr
		acc.RootCAs = dev.pool
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dev server address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	acc.Host = host
	acc.Port, _ = strconv.Atoi(port)
	if acc.TLS == "" {
		acc.TLS = smtp.TLSStartTLS.String()
	}
	if acc.OAuth2 != nil {
		// The dev server takes passwords only; asking an identity
		// provider for a token to reach it would be pointless.
		acc.OAuth2, acc.OAuth2Mechanism = nil, ""
	}
	if acc.Username != "" && acc.Password == nil {
		pw, ok := cfg.DevServer.Users[acc.Username]
		if !ok {
			pw = devPlaceholderPassword
		}
		acc.Password = func() (string, error) { return pw, nil }
	}
	return nil
}

// passwordFunc returns the account's secret source, or nil when the
// account has none.
func passwordFunc(cfg *Config, a *AccountConfig, getenv func(string) (string, bool)) func() (string, error) {
	switch {
	case a.PasswordEnv != "":
		name := a.PasswordEnv
		return func() (string, error) {
			if v, ok := getenv(name); ok && v != "" {
				return v, nil
			}
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
	case a.PasswordFile != "":
		path := cfg.Resolve(a.PasswordFile)
		return func() (string, error) { return readPasswordFile(path) }
	}
	return nil
}
