package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/smtp"
)

const devServerDesc = `Runs a local SMTP server for trying mailbot out: STARTTLS with a freshly
generated self-signed certificate, AUTH PLAIN and LOGIN (after STARTTLS),
and every accepted message stored as a file in a Maildir (DIR/new/).

Without --user any user name and password are accepted. The certificate's
SHA-256 fingerprint is printed so clients can pin it (tls_fingerprint), and
the certificate is written as PEM to DIR/../dev-ca.pem (or --ca-out) for
ca_file. With -c, the dev_server section supplies the defaults.

Stop it with Ctrl-C (SIGINT) or SIGTERM.`

// cmdDevServer implements "mailbot dev-server".
func (m *Main) cmdDevServer(ctx context.Context, args []string) int {
	fs := m.newFlagSet("dev-server", "[-c mailbot.yaml] [--listen 127.0.0.1:2525] [--maildir DIR] [--ca-out FILE] [--user NAME:PASSWORD ...]", devServerDesc)
	cfgFlag := fs.String("c", "", "config file whose dev_server section supplies defaults")
	listen := fs.String("listen", "", "address to listen on (default "+devserver.DefaultAddr+")")
	maildir := fs.String("maildir", "", "Maildir folder for received messages (default: keep them in memory only)")
	caOut := fs.String("ca-out", "", "write the certificate as PEM here (default DIR/../dev-ca.pem with --maildir)")
	var users repeatFlag
	fs.Var(&users, "user", "accept only this NAME:PASSWORD (throwaway test credentials); repeat for more")
	insecure := fs.Bool("allow-insecure-auth", false, "also offer AUTH without TLS")
	pos, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return m.usageError(fs, "unexpected argument %q", pos[0])
	}

	var cfg *Config
	if *cfgFlag != "" {
		c, status, ok := m.loadConfig(*cfgFlag)
		if !ok {
			return status
		}
		cfg = c
	}
	dc := devserver.Config{MaxKept: 16}
	if cfg != nil && cfg.DevServer != nil {
		dc.Addr = cfg.DevServer.Listen
		dc.Maildir = cfg.Resolve(cfg.DevServer.Maildir)
		dc.Users = cfg.DevServer.Users
	}
	if *listen != "" {
		dc.Addr = *listen
	}
	if *maildir != "" {
		dc.Maildir = *maildir
	}
	if len(users) > 0 {
		dc.Users = map[string]string{}
		for _, u := range users {
			name, pw, ok := strings.Cut(u, ":")
			if !ok || name == "" {
				return m.usageError(fs, "--user wants NAME:PASSWORD, got %q", u)
			}
			dc.Users[name] = pw
		}
	}
	dc.AllowInsecureAuth = *insecure
	logger, err := m.newLogger(cfg)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot dev-server: %v\n", err)
		return exitConfig
	}
	dc.Logger = logger
	srv, err := devserver.Start(dc)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot dev-server: %v\n", err)
		return exitFailure
	}
	defer srv.Close()

	ca := *caOut
	if ca == "" && dc.Maildir != "" {
		ca = devCAPath(dc.Maildir)
	}
	if ca != "" {
		if err := writeCertPEM(ca, srv.Certificate()); err != nil {
			fmt.Fprintf(m.Stderr, "mailbot dev-server: %v\n", err)
			return exitFailure
		}
	}
	auth := "any user and password"
	if len(dc.Users) > 0 {
		auth = fmt.Sprintf("%d configured user(s)", len(dc.Users))
	}
	fmt.Fprintf(m.Stdout, "mailbot dev-server listening on %s (SMTP with STARTTLS; AUTH PLAIN/LOGIN after STARTTLS, %s)\n", srv.Addr(), auth)
	if dc.Maildir != "" {
		abs, _ := filepath.Abs(dc.Maildir)
		fmt.Fprintf(m.Stdout, "messages are stored in %s\n", filepath.Join(abs, "new"))
	} else {
		fmt.Fprintln(m.Stdout, "messages are kept in memory only (use --maildir DIR to store them)")
	}
	fmt.Fprintf(m.Stdout, "certificate SHA-256 fingerprint: %s\n", smtp.FormatFingerprint(smtp.CertificateFingerprint(srv.Certificate())))
	if ca != "" {
		fmt.Fprintf(m.Stdout, "certificate written to %s (use it as ca_file)\n", ca)
	}
	<-ctx.Done()
	fmt.Fprintln(m.Stdout, "mailbot dev-server stopping")
	if err := srv.Close(); err != nil {
		fmt.Fprintf(m.Stderr, "mailbot dev-server: %v\n", err)
		return exitFailure
	}
	return exitOK
}
