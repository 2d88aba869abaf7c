package main

import (
	"errors"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/smtp"
)

// exitForKind maps an smtp error kind (the names luabind.SMTPErrorKind
// returns and Lua error tables carry) to an exit status. msg disambiguates
// SMTPNotSupportedError: a missing STARTTLS is a TLS failure, a missing AUTH
// an authentication failure.
func exitForKind(kind, msg string) int {
	switch kind {
	case "SMTPConnectError", "SMTPHeloError":
		return exitConnect
	case "tls":
		return exitTLS
	case "SMTPAuthenticationError":
		return exitAuth
	case "SMTPSenderRefused":
		return exitMail
	case "SMTPRecipientsRefused":
		return exitRcpt
	case "SMTPDataError":
		return exitData
	case "timeout", "SMTPServerDisconnected":
		return exitDisconnect
	case "SMTPNotSupportedError":
		switch {
		case strings.Contains(msg, "STARTTLS"):
			return exitTLS
		case strings.Contains(msg, "AUTH"):
			return exitAuth
		}
	}
	return exitFailure
}

// exitForError maps a Go error from the smtp package to an exit status.
func exitForError(err error) int {
	var ns *smtp.NotSupportedError
	if errors.As(err, &ns) {
		switch strings.ToUpper(ns.Extension) {
		case "STARTTLS":
			return exitTLS
		case "AUTH":
			return exitAuth
		}
		return exitFailure
	}
	return exitForKind(luabind.SMTPErrorKind(err), err.Error())
}

// exitForScriptError maps a failed script run to an exit status: a raised
// smtp error table (or any table with a kind field) by its kind, anything
// else is a script error.
func exitForScriptError(err error) int {
	var ae *lua.ApiError
	if errors.As(err, &ae) {
		if t, ok := ae.Object.(*lua.LTable); ok {
			kind, _ := t.RawGetString("kind").(lua.LString)
			msg, _ := t.RawGetString("message").(lua.LString)
			return exitForKind(string(kind), string(msg))
		}
	}
	return exitFailure
}
