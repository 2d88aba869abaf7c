package devserver

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// Defaults applied by [Start] to zero-valued [Config] fields.
const (
	DefaultAddr            = "127.0.0.1:2525"
	DefaultDomain          = "localhost"
	DefaultMaxMessageBytes = 25 << 20 // 25 MiB
	// DefaultReadTimeout bounds how long an idle or stalled client may hold
	// a connection. RFC 5321 §4.5.3.2.7 asks servers to wait at least five
	// minutes for the next command.
	DefaultReadTimeout = 5 * time.Minute
	// DefaultWriteTimeout bounds a single reply write to a client that has
	// stopped reading.
	DefaultWriteTimeout = time.Minute
)

// Config describes a development server. The zero value is usable: it
// listens for SMTP on [DefaultAddr], accepts any AUTH credentials after
// STARTTLS and keeps messages in memory only.
type Config struct {
	// Addr is the listen address. Empty means DefaultAddr; tests use
	// "127.0.0.1:0". With Network "unix" it is the socket path.
	Addr string
	// Network is "tcp" (default), "tcp4", "tcp6" or "unix".
	Network string
	// Domain is the name used in the greeting and the EHLO reply.
	// Empty means DefaultDomain.
	Domain string
	// Maildir, if set, is a directory in which every accepted message is
	// stored as one file (written to tmp/, synced, renamed into new/). The
	// tmp, new and cur subdirectories are created when missing.
	Maildir string
	// Users maps AUTH user names to passwords. A nil or empty map accepts
	// any user name with any password, which is what a throwaway dev
	// server wants.
	Users map[string]string
	// OAuth2, when set, also offers XOAUTH2 and OAUTHBEARER (RFC 7628)
	// and accepts a bearer token for a user when it returns nil. A
	// refusal follows the TokenRefusal: a JSON error challenge, then 535
	// 5.7.8 unless it names another reply. It is called concurrently for
	// concurrent connections. Tokens are never logged.
	OAuth2 func(user, token string) *TokenRefusal
	// RequireAuth refuses MAIL FROM until the client has authenticated,
	// as a submission server does.
	RequireAuth bool
	// AllowInsecureAuth offers and accepts AUTH on a connection without
	// TLS. By default AUTH is only possible after STARTTLS (or with
	// ImplicitTLS), so credentials never cross the wire in clear text.
	AllowInsecureAuth bool
	// ImplicitTLS serves TLS from the first byte (port-465 style) instead
	// of offering STARTTLS.
	ImplicitTLS bool
	// LMTP makes the server speak LMTP (RFC 2033): LHLO instead of EHLO
	// and one DATA reply per recipient.
	LMTP bool
	// BinaryMIME advertises BINARYMIME (RFC 3030), so clients may send
	// binary bodies with BDAT.
	BinaryMIME bool
	// MaxMessageBytes is the advertised and enforced SIZE limit. Zero
	// means DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// MaxRecipients limits RCPT commands per message; zero means no limit.
	MaxRecipients int
	// MaxKept bounds how many messages are kept in memory for
	// [Server.Messages]; the oldest are dropped first. Zero keeps all,
	// which suits tests; a long-running dev server with a Maildir should
	// set a bound.
	MaxKept int
	// ReadTimeout and WriteTimeout bound each command read (including a
	// whole DATA transfer) and each reply write. Zero means
	// DefaultReadTimeout / DefaultWriteTimeout.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// TLSCertFile and TLSKeyFile name a PEM certificate chain and key.
	// When both are empty a self-signed certificate is generated at start.
	TLSCertFile string
	TLSKeyFile  string
	// Logger receives one line per received message (sender, recipients,
	// size, path, TLS, authenticated user) and protocol-level warnings.
	// Passwords are never logged. Nil discards.
	Logger *slog.Logger
	// Hooks lets tests refuse mail at chosen points.
	Hooks Hooks
}

// Hooks are optional callbacks that decide whether to accept a transaction
// step. Each returns nil to accept or a *Reject to refuse with that reply.
// They run on the connection's goroutine, concurrently for concurrent
// connections, so they must be safe for concurrent use.
type Hooks struct {
	// Mail is called for MAIL FROM with the reverse path ("" for <>).
	Mail func(from string) *Reject
	// Rcpt is called for each RCPT TO with the forward path.
	Rcpt func(to string) *Reject
	// Data is called once the message has been received, before it is
	// stored. m.Path is still empty. In LMTP mode a refusal applies to
	// every recipient.
	Data func(m *Message) *Reject
	// DataRcpt is called in LMTP mode only, once per recipient after Data
	// accepted, and decides that recipient's DATA reply. Recipients it
	// refuses are left out of the stored message's To.
	DataRcpt func(m *Message, rcpt string) *Reject
}

// Reject is a negative reply a hook sends instead of accepting. It
// implements error so tests can compare it with what a client reports.
type Reject struct {
	Code     int    // 4yz or 5yz reply code
	Enhanced [3]int // RFC 3463 status code; zero means "class.0.0"
	Message  string // reply text; must not contain CR or LF
}

// Error returns the reply as it appears on the wire, prefixed with
// "devserver: ".
func (r *Reject) Error() string {
	if r.Enhanced == ([3]int{}) {
		return fmt.Sprintf("devserver: %d %s", r.Code, r.Message)
	}
	return fmt.Sprintf("devserver: %d %d.%d.%d %s", r.Code,
		r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Message)
}

// errInvalidReject is sent in place of a hook's Reject that could not be put
// on the wire safely; a misbehaving hook must not be able to inject reply
// lines or send a positive code while claiming to refuse.
var errInvalidReject = &gosmtp.SMTPError{
	Code:         451,
	EnhancedCode: gosmtp.EnhancedCode{4, 3, 0},
	Message:      "devserver: hook returned an invalid reject",
}

// smtpError converts r into the reply go-smtp writes. go-smtp recognises
// only its own *SMTPError (by type assertion), so every refusal must be
// converted here.
func (r *Reject) smtpError() *gosmtp.SMTPError {
	if r.Code < 400 || r.Code > 599 || strings.ContainsAny(r.Message, "\r\n") {
		return errInvalidReject
	}
	for i, v := range r.Enhanced {
		if v < 0 || v > 999 || (i == 0 && r.Enhanced != ([3]int{}) && v != r.Code/100) {
			return errInvalidReject
		}
	}
	return &gosmtp.SMTPError{
		Code:         r.Code,
		EnhancedCode: gosmtp.EnhancedCode(r.Enhanced),
		Message:      r.Message,
	}
}

// ErrInvalidConfig is wrapped by the error [Start] returns for a Config it
// cannot use.
var ErrInvalidConfig = errors.New("devserver: invalid config")

// withDefaults returns a copy of c with defaults filled in, or an error
// wrapping ErrInvalidConfig.
func (c Config) withDefaults() (Config, error) {
	if c.Network == "" {
		c.Network = "tcp"
	}
	switch c.Network {
	case "tcp", "tcp4", "tcp6":
		if c.Addr == "" {
			c.Addr = DefaultAddr
		}
	case "unix":
		if c.Addr == "" {
			return c, fmt.Errorf("%w: unix network needs a socket path in Addr", ErrInvalidConfig)
		}
	default:
		return c, fmt.Errorf("%w: unsupported network %q", ErrInvalidConfig, c.Network)
	}
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	// The domain is written into the greeting and EHLO reply lines.
	if strings.ContainsAny(c.Domain, "\r\n \t") {
		return c, fmt.Errorf("%w: domain %q contains white space or a line break", ErrInvalidConfig, c.Domain)
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxMessageBytes < 0 || c.MaxRecipients < 0 || c.MaxKept < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 {
		return c, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return c, fmt.Errorf("%w: TLSCertFile and TLSKeyFile must be set together", ErrInvalidConfig)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
