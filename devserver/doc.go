// Package devserver is mailbot's embedded development mail server.
//
// It serves two audiences. The "mailbot dev-server" command and the
// dev_server configuration section run it so that a newcomer can watch
// mailbot deliver real mail, with STARTTLS and AUTH, without owning a mail
// server; each accepted message is written as a file into a Maildir. The
// test suites of the other mailbot packages run it in-process on loopback as
// a real SMTP (or LMTP) peer and inspect what it received through
// [Server.Messages] and [Server.WaitMessages] (see the devtest subpackage).
//
// The protocol is spoken by github.com/emersion/go-smtp; this package only
// supplies the backend: credentials, hooks, storage and TLS material. The
// server advertises PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES, CHUNKING,
// SIZE (RFC 1870), STARTTLS (RFC 3207), AUTH PLAIN and LOGIN (RFC 4954,
// RFC 4616), with [Config.OAuth2] also XOAUTH2 and OAUTHBEARER (RFC 7628)
// checked by a token validator, SMTPUTF8 (RFC 6531), DSN (RFC 3461) and,
// once TLS is active, REQUIRETLS (RFC 8689); with [Config.BinaryMIME] also
// BINARYMIME (RFC 3030). In LMTP mode (RFC 2033) it greets LHLO and answers
// DATA once per recipient.
//
// Without a configured certificate the server generates a fresh self-signed
// ECDSA certificate for localhost, 127.0.0.1 and ::1 at start; clients trust
// it through [Server.CertPool].
package devserver
