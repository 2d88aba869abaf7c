package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mailbot/mailbot/message"
	"github.com/mailbot/mailbot/smtp"
)

const sendDesc = `Sends one message, like swaks: connect, STARTTLS, AUTH, MAIL, RCPT, DATA.

With -c, --account names a configured account (default: default_account);
its host, TLS mode, user, password source (or OAuth2 token: an account
with an oauth2 section logs in with XOAUTH2 or OAUTHBEARER, with the access
token cached under <state_dir>/oauth, refreshed before it expires and once
more when the server refuses it; if the refresh token was revoked, run
"mailbot oauth login ACCOUNT"), CA and sender apply, and the flags below
override them (--password-env replaces the account's OAuth2 too).
An account with a dkim section DKIM-signs the message (in a dry run too).
Without a config, --server says where to send.
Passwords never appear on the command line: --password-env names an
environment variable holding it.

--debug prints the SMTP transcript to stderr, AUTH payloads redacted.
With --dry-run nothing leaves the machine: the message goes to a local
capture server and is written to the dry-run folder (default
<state_dir>/dry-run with -c, ./dry-run without) as <time>-<n>.eml with its
transcript in <time>-<n>.transcript.

` + exitStatusHelp

// sendFlags are the flags of "mailbot send".
type sendFlags struct {
	config, account, from, subject, body, bodyFile, htmlFile string
	to, cc, bcc                                              stringList
	attach                                                   repeatFlag
	debug                                                    bool
	dry                                                      dryRunFlag

	server, tlsMode, user, passwordEnv, caFile, fingerprint string
	allowInsecureAuth                                       bool
	timeout                                                 time.Duration

	// cmd names the command in messages; "" is "send" (probe reuses
	// sendTarget for its AUTH check).
	cmd string
}

func (f *sendFlags) cmdName() string {
	if f.cmd == "" {
		return "send"
	}
	return f.cmd
}

// cmdSend implements "mailbot send".
func (m *Main) cmdSend(ctx context.Context, args []string) int {
	fs := m.newFlagSet("send", "[-c mailbot.yaml] [--account NAME | --server HOST:PORT] --from ADDR --to ADDR [--cc ADDR] --subject TEXT [--body TEXT | --body-file F] [--html-file F] [--attach F ...] [--debug] [--dry-run [DIR]]", sendDesc)
	var f sendFlags
	fs.StringVar(&f.config, "c", "", "config file (default $"+envConfig+"; none: use --server)")
	fs.StringVar(&f.account, "account", "", "configured account to send with (default: default_account)")
	fs.StringVar(&f.from, "from", "", "sender address (default: the account's from)")
	fs.Var(&f.to, "to", "recipient; repeat or separate with commas")
	fs.Var(&f.cc, "cc", "copy recipient; repeat or separate with commas")
	fs.Var(&f.bcc, "bcc", "blind copy recipient; repeat or separate with commas")
	fs.StringVar(&f.subject, "subject", "", "subject line")
	fs.StringVar(&f.body, "body", "", "plain-text body")
	fs.StringVar(&f.bodyFile, "body-file", "", "read the plain-text body from a file (- for stdin)")
	fs.StringVar(&f.htmlFile, "html-file", "", "read an HTML body from a file")
	fs.Var(&f.attach, "attach", "attach a file; repeat for more")
	fs.BoolVar(&f.debug, "debug", false, "print the SMTP transcript to stderr")
	fs.Var(&f.dry, "dry-run", "capture the message into a folder instead of sending it")
	fs.StringVar(&f.server, "server", "", "SMTP server host:port (without an account)")
	fs.StringVar(&f.tlsMode, "tls", "", "starttls, implicit, none or starttls-if-offered (default: implicit for port 465, else starttls)")
	fs.StringVar(&f.user, "user", "", "user name for AUTH")
	fs.StringVar(&f.passwordEnv, "password-env", "", "environment variable holding the AUTH password")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM file of CA certificates to trust instead of the system roots")
	fs.StringVar(&f.fingerprint, "tls-fingerprint", "", "accept only a server certificate with this SHA-256 fingerprint")
	fs.BoolVar(&f.allowInsecureAuth, "allow-insecure-auth", false, "allow AUTH without TLS (passwords in the clear)")
	fs.DurationVar(&f.timeout, "timeout", 0, "connect and per-command timeout (default 30s)")
	args = splitDryRunArg(args, func(string) bool { return true })
	if status, ok := m.parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() > 0 {
		return m.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	if f.body != "" && f.bodyFile != "" {
		return m.usageError(fs, "give --body or --body-file, not both")
	}

	cfg, logger, status, ok := m.optionalConfig("send", f.config)
	if !ok {
		return status
	}
	tgt, status := m.sendTarget(cfg, &f, logger)
	if status != exitOK {
		return status
	}
	defer tgt.dev.Close()
	if len(f.to)+len(f.cc)+len(f.bcc) == 0 {
		return m.usageError(fs, "missing --to")
	}
	if tgt.from == "" {
		return m.usageError(fs, "missing --from (and the account has no from)")
	}

	msg, err := m.buildMessage(&f, tgt.from)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot send: %v\n", err)
		return exitFailure
	}
	data, err := msg.Bytes()
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot send: %v\n", err)
		return exitFailure
	}
	envFrom, err := msg.EnvelopeFrom()
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot send: %v\n", err)
		return exitFailure
	}
	rcpts, err := msg.Recipients()
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot send: %v\n", err)
		return exitFailure
	}
	if tgt.sign != nil {
		// Dry runs sign too: the captured .eml shows the signature.
		if data, err = tgt.sign(data); err != nil {
			fmt.Fprintf(m.Stderr, "mailbot send: DKIM-signing: %v\n", err)
			return exitFailure
		}
	}

	var (
		capt *capture
		dry  *dryRunEnv
	)
	if f.dry.on {
		dry, err = setupDryRun(cfg, f.dry.folder(cfg), logger)
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot send: %v\n", err)
			return exitFailure
		}
		defer dry.Close()
		capt = dry.capture
		tgt.redirect(capt)
	}
	if f.debug {
		tgt.dialer.Debug = addWriter(tgt.dialer.Debug, m.Stderr)
	}

	status = m.deliver(ctx, tgt, envFrom, rcpts, data)
	if capt != nil {
		if err := dry.Close(); err != nil {
			fmt.Fprintf(m.Stderr, "mailbot send: %v\n", err)
			return exitFailure
		}
		if status == exitOK {
			fmt.Fprintf(m.Stdout, "dry run: message written to %s (nothing was sent)\n", capt.dir)
		}
		return status
	}
	if status == exitOK {
		fmt.Fprintf(m.Stdout, "sent %s to %s via %s\n", msg.MessageID, strings.Join(rcpts, ", "), tgt.addr)
	}
	return status
}

// sendTarget is where and how send delivers.
type sendTarget struct {
	addr     string
	dialer   smtp.Dialer
	user     string
	password func() (string, error)
	// oauth2, when set, replaces the password: LoginOAuth2 with
	// oauth2Mech.
	oauth2     smtp.TokenSource
	oauth2Mech string
	from       string
	dev        *embeddedDev
	// sign DKIM-signs the message when the account has a dkim section.
	sign func([]byte) ([]byte, error)
}

// redirect aims the target at the dry-run capture server, keeping the
// conversation (STARTTLS, AUTH) the real one would have.
func (t *sendTarget) redirect(c *capture) {
	t.dialer.Debug = addWriter(t.dialer.Debug, c.Transcript(t.addr))
	t.addr = c.srv.Addr()
	t.dialer.TLSConfig = &tls.Config{RootCAs: c.srv.CertPool(), ServerName: "localhost"}
	t.dialer.TLSFingerprints = nil
	if t.dialer.TLS == smtp.TLSImplicit {
		// The capture server offers STARTTLS only; the message still
		// travels encrypted.
		t.dialer.TLS = smtp.TLSStartTLS
	}
	if t.password != nil || t.oauth2 != nil {
		// The capture server takes any password; the real one may not be
		// available where the dry run happens, and a token request would
		// reach the identity provider.
		t.password = func() (string, error) { return "dry-run", nil }
		t.oauth2, t.oauth2Mech = nil, ""
	}
}

func addWriter(w, add io.Writer) io.Writer {
	if w == nil {
		return add
	}
	return io.MultiWriter(w, add)
}

// sendTarget resolves the account and flags into a dialer.
func (m *Main) sendTarget(cfg *Config, f *sendFlags, logger *slog.Logger) (*sendTarget, int) {
	fail := func(format string, a ...any) (*sendTarget, int) {
		fmt.Fprintf(m.Stderr, "mailbot %s: %s\n", f.cmdName(), fmt.Sprintf(format, a...))
		return nil, exitFailure
	}
	t := &sendTarget{}
	var host string
	var port int
	tlsMode := ""
	var pool *x509.CertPool
	var pins [][32]byte
	timeout := 30 * time.Second

	accountName := f.account
	if accountName == "" && cfg != nil && f.server == "" {
		accountName = cfg.DefaultAccount
	}
	if accountName != "" {
		if cfg == nil {
			return fail("--account needs a config file (-c)")
		}
		a, ok := cfg.Accounts[accountName]
		if !ok || a == nil {
			return fail("no account named %q in %s", accountName, cfg.Path())
		}
		if a.Host == DevServerHost && !f.dry.on {
			dev, err := startEmbeddedDev(cfg, logger)
			if err != nil {
				return fail("%v", err)
			}
			t.dev = dev
		}
		accs, err := luaAccounts(&Config{Accounts: map[string]*AccountConfig{accountName: a}, DevServer: cfg.DevServer, StateDir: cfg.StateDir, path: cfg.path, dir: cfg.dir}, t.dev, m.lookupEnv, logger)
		if err != nil {
			t.dev.Close()
			return fail("%v", err)
		}
		acc := accs[accountName]
		host, port, tlsMode, pool = acc.Host, acc.Port, acc.TLS, acc.RootCAs
		t.user, t.password, t.from = acc.Username, acc.Password, acc.From
		t.oauth2, t.oauth2Mech = acc.OAuth2, acc.OAuth2Mechanism
		t.sign = acc.Sign
		t.dialer.AllowInsecureAuth = acc.AllowInsecureAuth
		t.dialer.NoChunking = acc.NoChunking
		if acc.Timeout > 0 {
			timeout = acc.Timeout
		}
		if a.TLSFingerprint != "" {
			pin, err := smtp.ParseFingerprint(a.TLSFingerprint)
			if err != nil {
				t.dev.Close()
				return fail("accounts.%s.tls_fingerprint: %v", accountName, err)
			}
			pins = append(pins, pin)
		}
	} else if f.server == "" {
		if f.dry.on {
			f.server = "localhost:25"
		} else {
			return fail("say where to send: --server host:port, or -c with an account")
		}
	}
	if f.server != "" {
		h, p, err := net.SplitHostPort(f.server)
		if err != nil {
			// A bare host: the port follows the TLS mode below.
			h, p = f.server, ""
		}
		host = h
		port = 0
		if p != "" {
			if port, err = strconv.Atoi(p); err != nil || port < 1 || port > 65535 {
				return fail("--server %q: port must be 1-65535", f.server)
			}
		}
	}
	if f.tlsMode != "" {
		tlsMode = f.tlsMode
	}
	if f.user != "" {
		t.user = f.user
	}
	if f.passwordEnv != "" {
		t.oauth2, t.oauth2Mech = nil, ""
		name := f.passwordEnv
		t.password = func() (string, error) {
			if v, ok := m.lookupEnv(name); ok && v != "" {
				return v, nil
			}
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
	}
	if f.caFile != "" {
		p, err := loadCAFile(f.caFile)
		if err != nil {
			return fail("--ca-file: %v", err)
		}
		pool = p
	}
	if f.fingerprint != "" {
		pin, err := smtp.ParseFingerprint(f.fingerprint)
		if err != nil {
			return fail("--tls-fingerprint: %v", err)
		}
		pins = [][32]byte{pin}
	}
	if f.allowInsecureAuth {
		t.dialer.AllowInsecureAuth = true
	}
	if f.timeout > 0 {
		timeout = f.timeout
	}
	if f.from != "" {
		t.from = f.from
	}
	switch {
	case tlsMode != "":
		mode, err := smtp.ParseTLSMode(tlsMode)
		if err != nil {
			return fail("--tls: %v", err)
		}
		t.dialer.TLS = mode
	case port == 465:
		t.dialer.TLS = smtp.TLSImplicit
	default:
		t.dialer.TLS = smtp.TLSStartTLS
	}
	if port == 0 {
		switch t.dialer.TLS {
		case smtp.TLSImplicit:
			port = 465
		case smtp.TLSNone:
			port = 25
		default:
			port = 587
		}
	}
	if strings.ContainsAny(host+t.user, "\r\n\x00") {
		return fail("server and user must not contain CR, LF or NUL")
	}
	t.addr = net.JoinHostPort(host, strconv.Itoa(port))
	t.dialer.TLSConfig = &tls.Config{RootCAs: pool}
	t.dialer.TLSFingerprints = pins
	t.dialer.Timeout, t.dialer.CommandTimeout = timeout, timeout
	return t, exitOK
}

// buildMessage assembles the message from the flags.
func (m *Main) buildMessage(f *sendFlags, from string) (*message.Message, error) {
	msg := &message.Message{From: from, To: f.to, Cc: f.cc, Bcc: f.bcc, Subject: f.subject, Text: f.body}
	if f.bodyFile != "" {
		var data []byte
		var err error
		if f.bodyFile == "-" {
			data, err = io.ReadAll(m.Stdin)
		} else {
			data, err = os.ReadFile(f.bodyFile)
		}
		if err != nil {
			return nil, fmt.Errorf("--body-file: %w", err)
		}
		msg.Text = string(data)
	}
	if f.htmlFile != "" {
		data, err := os.ReadFile(f.htmlFile)
		if err != nil {
			return nil, fmt.Errorf("--html-file: %w", err)
		}
		msg.HTML = string(data)
	}
	for _, p := range f.attach {
		a, err := message.AttachFile(p)
		if err != nil {
			return nil, fmt.Errorf("--attach: %w", err)
		}
		msg.Attach(a)
	}
	if err := msg.Validate(); err != nil {
		return nil, err
	}
	return msg, nil
}

// deliver runs the SMTP conversation and returns the exit status of the
// stage that failed.
func (m *Main) deliver(ctx context.Context, t *sendTarget, from string, to []string, data []byte) int {
	fail := func(stage string, err error) int {
		fmt.Fprintf(m.Stderr, "mailbot send: %s: %v\n", stage, err)
		return exitForError(err)
	}
	c, err := t.dialer.Dial(ctx, t.addr)
	if err != nil {
		return fail("connect to "+t.addr, err)
	}
	defer c.Close()
	if status := t.login(ctx, c, m.Stderr, "send"); status != exitOK {
		return status
	}
	refused, err := c.SendMail(ctx, from, to, data, nil)
	if err != nil {
		return fail("send", err)
	}
	if _, err := c.Quit(ctx); err != nil {
		// The message was accepted already; a failed QUIT changes nothing.
		fmt.Fprintf(m.Stderr, "mailbot send: quit: %v\n", err)
	}
	if len(refused) > 0 {
		for _, addr := range append(refused.Permanent(), refused.Temporary()...) {
			fmt.Fprintf(m.Stderr, "mailbot send: recipient %s refused: %v\n", addr, refused[addr])
		}
		return exitRcpt
	}
	return exitOK
}

// login authenticates c as the target says: with the OAuth2 token source,
// else with the password, else not at all (no user). It returns exitOK or
// the exit status, having printed why.
func (t *sendTarget) login(ctx context.Context, c *smtp.Client, stderr io.Writer, cmd string) int {
	switch {
	case t.oauth2 != nil:
		if err := c.LoginOAuth2(ctx, t.user, t.oauth2, t.oauth2Mech); err != nil {
			fmt.Fprintf(stderr, "mailbot %s: login: %v\n", cmd, err)
			return exitForError(err)
		}
	case t.user != "":
		if t.password == nil {
			fmt.Fprintf(stderr, "mailbot %s: no password for user %q: use --password-env or an account with password_env/password_file\n", cmd, t.user)
			return exitAuth
		}
		pw, err := t.password()
		if err != nil {
			fmt.Fprintf(stderr, "mailbot %s: password for user %q: %v\n", cmd, t.user, err)
			return exitAuth
		}
		if err := c.Login(ctx, t.user, pw); err != nil {
			fmt.Fprintf(stderr, "mailbot %s: login: %v\n", cmd, err)
			return exitForError(err)
		}
	}
	return exitOK
}
