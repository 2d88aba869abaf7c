package message

import (
	"errors"
	"fmt"
	"strings"
)

// ErrHeaderInjection is wrapped by every [*HeaderError] raised because a value
// contains CR, LF or NUL, which could otherwise end the header line and add
// headers or body text of the caller's choosing.
var ErrHeaderInjection = errors.New("header injection refused")

// ErrNoFrom is returned when a message has neither a From nor a Sender
// address, so there is no author and no envelope sender.
var ErrNoFrom = errors.New("message: no From address")

// errNonASCIIAddress is the cause recorded for internationalised addresses.
// They are refused rather than sent raw because delivering them needs the
// SMTPUTF8 extension end to end.
var errNonASCIIAddress = errors.New("non-ASCII address needs SMTPUTF8, which is not supported")

// HeaderError reports a header name or value that cannot be written safely.
// Name is the header concerned ("Subject", "X-Report", "Content-Disposition"
// for an attachment file name ...); Reason says what is wrong with it.
type HeaderError struct {
	Name   string
	Reason string
	// Err is ErrHeaderInjection for CR, LF and NUL, otherwise nil.
	Err error
}

// Error implements error.
func (e *HeaderError) Error() string {
	return fmt.Sprintf("message: header %q: %s", e.Name, e.Reason)
}

// Unwrap returns ErrHeaderInjection for injection attempts, so callers can
// test with errors.Is.
func (e *HeaderError) Unwrap() error { return e.Err }

// AddressError reports an address that could not be parsed or used.
type AddressError struct {
	// Field is the header the address belongs to: "From", "Sender", "To",
	// "Cc", "Bcc" or "Reply-To".
	Field string
	// Index is the position in the list field (To, Cc, Bcc, Reply-To),
	// counting from 0, or -1 for single-address fields and whole lists given
	// to SetHeader.
	Index int
	// Address is the text that was refused.
	Address string
	// Err is the cause: a net/mail parse error or a *HeaderError.
	Err error
}

// Error implements error, in the form
// `message: to[2]: invalid address "bob": mail: missing @ in addr-spec`.
func (e *AddressError) Error() string {
	return fmt.Sprintf("message: %s: invalid address %q: %s", e.Where(), e.Address, causeText(e.Err))
}

// Where names the field and list position, like "to[2]" or "from".
func (e *AddressError) Where() string {
	f := strings.ToLower(e.Field)
	if e.Index < 0 {
		return f
	}
	return fmt.Sprintf("%s[%d]", f, e.Index)
}

// Unwrap returns the cause.
func (e *AddressError) Unwrap() error { return e.Err }

// AttachmentError reports an attachment or inline part that cannot be
// written.
type AttachmentError struct {
	// Inline is true for an entry of Message.Inline, false for
	// Message.Attachments.
	Inline bool
	// Index is the position in that list, counting from 0.
	Index int
	// Filename is the attachment's file name, possibly empty.
	Filename string
	// Err is the cause, often a *HeaderError.
	Err error
}

// Error implements error.
func (e *AttachmentError) Error() string {
	list := "attachments"
	if e.Inline {
		list = "inline"
	}
	return fmt.Sprintf("message: %s[%d] (%q): %s", list, e.Index, e.Filename, causeText(e.Err))
}

// Unwrap returns the cause.
func (e *AttachmentError) Unwrap() error { return e.Err }

// causeText renders a wrapped error without repeating this package's prefix.
func causeText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return strings.TrimPrefix(err.Error(), "message: ")
}
