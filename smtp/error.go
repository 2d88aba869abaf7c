package smtp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
)

// The error types below mirror Python smtplib's exception hierarchy so that
// script authors recognise them, and they nest so that errors.As finds the
// most useful one:
//
//	*SMTPError               any negative reply (smtplib SMTPResponseException)
//	*SenderRefusedError      MAIL FROM refused (SMTPSenderRefused), wraps *SMTPError
//	*RecipientsRefusedError  every RCPT refused (SMTPRecipientsRefused)
//	*DataError               DATA or the final dot refused (SMTPDataError), wraps *SMTPError
//	*ConnectError            dial or greeting failed (SMTPConnectError)
//	*HeloError               EHLO and HELO refused (SMTPHeloError), wraps *SMTPError
//	*AuthError               authentication failed (SMTPAuthenticationError)
//	*NotSupportedError       extension not offered (SMTPNotSupportedError)
//	*DisconnectedError       connection lost or closed (SMTPServerDisconnected)
//	*TimeoutError            a deadline passed; also a net.Error with Timeout() true
//	*ProtocolError           malformed reply; the connection was closed
//	*UnknownOutcomeError     lost after the final dot: the message may have been delivered

// SMTPError is a negative (4yz or 5yz) or otherwise unexpected server reply.
// Only the client's reply reader constructs it.
type SMTPError struct {
	// Command is the verb that got the reply: "MAIL", "RCPT", "DATA", "."
	// (the end of the message: the final dot, or BDAT LAST), "BDAT" (a
	// chunk before the last), "AUTH", "EHLO", "greeting", ...
	Command string
	// Code is the three-digit reply code.
	Code int
	// Enhanced is the RFC 3463 status code, zero if the server sent none.
	Enhanced EnhancedCode
	// Message is the reply text, lines joined with "\n", the enhanced code
	// stripped.
	Message string
}

func (e *SMTPError) Error() string {
	var b strings.Builder
	b.WriteString("smtp: ")
	if e.Command != "" {
		b.WriteString(e.Command)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "%d", e.Code)
	if !e.Enhanced.IsZero() {
		b.WriteByte(' ')
		b.WriteString(e.Enhanced.String())
	}
	if e.Message != "" {
		b.WriteByte(' ')
		b.WriteString(strings.ReplaceAll(e.Message, "\n", " / "))
	}
	if e.Code == 421 {
		b.WriteString(" (the server closed the connection)")
	}
	return b.String()
}

// ReplyText returns the reply text as the server sent it after the code,
// like smtplib's smtp_error: lines joined with "\n", the enhanced status
// code kept at the start when the server sent one ("5.1.1 user unknown").
// Message is the same text without the enhanced code.
func (e *SMTPError) ReplyText() string {
	if e.Enhanced.IsZero() {
		return e.Message
	}
	if e.Message == "" || e.Message[0] == '\n' {
		return e.Enhanced.String() + e.Message
	}
	return e.Enhanced.String() + " " + e.Message
}

// Temporary reports whether the failure is transient (a 4yz reply), so the
// same command may succeed later.
func (e *SMTPError) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// Permanent reports whether the failure is permanent (a 5yz reply).
func (e *SMTPError) Permanent() bool { return e.Code >= 500 && e.Code < 600 }

func replyError(cmd string, r Reply) *SMTPError {
	return &SMTPError{Command: cmd, Code: r.Code, Enhanced: r.Enhanced, Message: r.Text()}
}

// SenderRefusedError reports that the server refused MAIL FROM.
type SenderRefusedError struct {
	Sender string
	Err    *SMTPError
}

func (e *SenderRefusedError) Error() string {
	return fmt.Sprintf("smtp: sender <%s> refused: %s", e.Sender, strings.TrimPrefix(e.Err.Error(), "smtp: "))
}

// Unwrap returns the server's reply.
func (e *SenderRefusedError) Unwrap() error { return e.Err }

// Refusals maps a recipient address to the server's refusal of it.
type Refusals map[string]*SMTPError

// Temporary returns the sorted addresses refused with a 4yz reply: trying
// them again later may succeed.
func (r Refusals) Temporary() []string { return r.filter((*SMTPError).Temporary) }

// Permanent returns the sorted addresses refused with a 5yz reply.
func (r Refusals) Permanent() []string { return r.filter((*SMTPError).Permanent) }

func (r Refusals) filter(keep func(*SMTPError) bool) []string {
	var out []string
	for addr, e := range r {
		if keep(e) {
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	return out
}

// RecipientsRefusedError reports that the server refused every recipient,
// so no message was sent. Partial refusals are not errors: SendMail returns
// them as Refusals, like smtplib.
type RecipientsRefusedError struct {
	Recipients Refusals
}

func (e *RecipientsRefusedError) Error() string {
	addrs := make([]string, 0, len(e.Recipients))
	for a := range e.Recipients {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		r := e.Recipients[a]
		parts[i] = fmt.Sprintf("<%s>: %d %s", a, r.Code, strings.ReplaceAll(r.Message, "\n", " / "))
	}
	return "smtp: all recipients refused: " + strings.Join(parts, "; ")
}

// Unwrap returns each recipient's refusal, sorted by address.
func (e *RecipientsRefusedError) Unwrap() []error {
	addrs := make([]string, 0, len(e.Recipients))
	for a := range e.Recipients {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	errs := make([]error, len(addrs))
	for i, a := range addrs {
		errs[i] = e.Recipients[a]
	}
	return errs
}

// DataError reports that the server refused DATA or the message itself.
type DataError struct {
	Err *SMTPError
}

func (e *DataError) Error() string {
	return "smtp: message refused: " + strings.TrimPrefix(e.Err.Error(), "smtp: ")
}

// Unwrap returns the server's reply.
func (e *DataError) Unwrap() error { return e.Err }

// ConnectError reports that no SMTP session could be opened: the dial failed
// or the server's greeting was not 220.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("smtp: connect to %s: %s", e.Addr, strings.TrimPrefix(e.Err.Error(), "smtp: "))
}

// Unwrap returns the cause.
func (e *ConnectError) Unwrap() error { return e.Err }

// HeloError reports that the server refused both EHLO and HELO.
type HeloError struct {
	Err *SMTPError
}

func (e *HeloError) Error() string {
	return "smtp: server refused EHLO and HELO: " + strings.TrimPrefix(e.Err.Error(), "smtp: ")
}

// Unwrap returns the server's reply.
func (e *HeloError) Unwrap() error { return e.Err }

// AuthError reports a failed authentication. Err is an *SMTPError when the
// server refused (535 for bad credentials), or a client-side failure.
type AuthError struct {
	Mechanism string
	Err       error
	// OAuth2 is the server's JSON error when it refused an OAuth 2.0
	// token (XOAUTH2, OAUTHBEARER), nil otherwise.
	OAuth2 *OAuth2Error
	// Step is set by LoginOAuth2: "token" (no access token could be had),
	// "refresh" (the token was refused and refreshing it failed), "retry"
	// (the refreshed token was refused too).
	Step string
}

func (e *AuthError) Error() string {
	s := fmt.Sprintf("smtp: AUTH %s failed: %s", e.Mechanism, strings.TrimPrefix(e.Err.Error(), "smtp: "))
	if e.OAuth2 != nil && e.Step == "" {
		s += " (the server refused the token: " + e.OAuth2.String() + ")"
	}
	return s
}

// Temporary reports whether trying again later may succeed: the server
// answered with a 4yz reply (454 temporary authentication failure), or the
// cause says it is temporary (an identity provider that is down).
func (e *AuthError) Temporary() bool {
	var se *SMTPError
	if errors.As(e.Err, &se) {
		return se.Temporary()
	}
	var t interface{ Temporary() bool }
	return errors.As(e.Err, &t) && t.Temporary()
}

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// NotSupportedError reports that the server does not offer an extension the
// operation needs. Nothing was sent for the operation.
type NotSupportedError struct {
	// Extension is the EHLO keyword that is missing, e.g. "STARTTLS", "DSN".
	Extension string
	// Msg explains what needed it and what to do.
	Msg string
}

func (e *NotSupportedError) Error() string {
	if e.Msg == "" {
		return fmt.Sprintf("smtp: server does not support %s", e.Extension)
	}
	return fmt.Sprintf("smtp: server does not support %s: %s", e.Extension, e.Msg)
}

// ErrClosed is returned by operations on a client whose connection was
// closed by Close or Quit.
var ErrClosed = errors.New("smtp: client is closed")

// DisconnectedError reports that the connection was lost (or closed by the
// server, or broken by an earlier protocol error) while doing Op.
type DisconnectedError struct {
	Op  string
	Err error
}

func (e *DisconnectedError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("smtp: %s: server disconnected", e.Op)
	}
	return fmt.Sprintf("smtp: %s: server disconnected: %s", e.Op, strings.TrimPrefix(e.Err.Error(), "smtp: "))
}

// Unwrap returns the cause.
func (e *DisconnectedError) Unwrap() error { return e.Err }

// TimeoutError reports that a deadline passed while doing Op: the per-command
// timeout, the connect timeout, or the context's deadline. The connection is
// closed, because a late reply would otherwise be read as the answer to the
// next command.
type TimeoutError struct {
	Op  string
	Err error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("smtp: %s: timed out: %v", e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *TimeoutError) Unwrap() error { return e.Err }

// Timeout reports true; *TimeoutError satisfies net.Error.
func (e *TimeoutError) Timeout() bool { return true }

// Temporary reports true, as a timeout may not recur.
func (e *TimeoutError) Temporary() bool { return true }

// ProtocolError reports a reply that breaks the SMTP reply grammar: a bad or
// four-digit code, a missing line end, a line or reply too long. The client
// closes the connection, since later replies could no longer be matched to
// their commands.
type ProtocolError struct {
	Op   string
	Err  error
	Line string // the offending line, quoted and truncated, if any
}

func (e *ProtocolError) Error() string {
	op := e.Op
	if op == "" {
		op = "reply"
	}
	if e.Line != "" {
		return fmt.Sprintf("smtp: %s: protocol error: %v: %s", op, e.Err, e.Line)
	}
	return fmt.Sprintf("smtp: %s: protocol error: %v", op, e.Err)
}

// Unwrap returns the cause.
func (e *ProtocolError) Unwrap() error { return e.Err }

// UnknownOutcomeError reports that the connection failed after the final
// "." of a message was sent and before the server's reply arrived. The server
// may have accepted the message: retrying may deliver it twice, not retrying
// may lose it. Any other failure during a transaction means the message was
// not delivered.
type UnknownOutcomeError struct {
	Err error
}

func (e *UnknownOutcomeError) Error() string {
	return "smtp: outcome unknown, the message may have been delivered: " + strings.TrimPrefix(e.Err.Error(), "smtp: ")
}

// Unwrap returns the cause, a *DisconnectedError or *TimeoutError.
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// IsTimeout reports whether err is, or wraps, a timeout.
func IsTimeout(err error) bool {
	var te *TimeoutError
	if errors.As(err, &te) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// TLSError reports a failed TLS handshake or certificate check, during
// STARTTLS or implicit-TLS connect. The connection is closed.
type TLSError struct {
	Op  string
	Err error
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("smtp: %s: TLS: %v", e.Op, e.Err)
}

// Unwrap returns the cause, often a *tls.CertificateVerificationError.
func (e *TLSError) Unwrap() error { return e.Err }
