// Package smtp is mailbot's SMTP, ESMTP and LMTP client.
//
// It covers what Python's smtplib offers — connect, EHLO/HELO, STARTTLS,
// AUTH, MAIL/RCPT/DATA, VRFY, EXPN, HELP, NOOP, RSET, QUIT and raw commands —
// with the same semantics, and adds what long-running automation needs:
//
//   - typed errors that mirror smtplib's exception hierarchy and work with
//     errors.As (SMTPError, SenderRefusedError, RecipientsRefusedError,
//     DataError, ConnectError, HeloError, AuthError, NotSupportedError,
//     DisconnectedError, TimeoutError, ProtocolError), and an
//     UnknownOutcomeError that separates "the message was not delivered" from
//     "the connection broke after the final dot, it may have been delivered";
//   - a deadline per command that a server dripping bytes cannot extend, and
//     context.Context cancellation of any blocked I/O;
//   - bounded memory on hostile replies: line length and line count are
//     capped, malformed replies are protocol errors that close the
//     connection instead of desynchronising later replies;
//   - safe defaults: TLS 1.2 minimum, certificates verified, optional
//     SHA-256 pinning, no AUTH over an unencrypted connection (loopback
//     included) unless the caller allows it, STARTTLS response-injection
//     protection and a new EHLO before any other command after STARTTLS
//     (RFC 3207 §4.2), CR/LF/NUL rejected in every argument, envelope
//     addresses that would add ESMTP parameters refused (AddressError);
//   - PIPELINING (RFC 2920) of MAIL, RCPT and DATA, SIZE (RFC 1870),
//     8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531), DSN (RFC 3461) with
//     xtext-encoded ENVID/ORCPT and per-recipient NOTIFY, REQUIRETLS
//     (RFC 8689), enhanced status codes (RFC 3463), AUTH (RFC 4954) with
//     SCRAM-SHA-256 (SASLprep, RFC 4013), CRAM-MD5, PLAIN, LOGIN,
//     XOAUTH2 and OAUTHBEARER (RFC 7628), LMTP (RFC 2033), CHUNKING and
//     BINARYMIME (RFC 3030): with CHUNKING and PIPELINING offered, a
//     message is MAIL, RCPT and BDAT chunks in one write, one round trip
//     (Client.NoChunking and SendOptions.NoChunking turn it off); a
//     transaction that ends with DATA refuses BODY=BINARYMIME
//     (ErrBinaryMIME);
//   - LoginOAuth2, which takes access tokens from a TokenSource, decodes
//     the server's JSON error when it refuses one, refreshes once and
//     retries once;
//   - SendBatch, which with CHUNKING keeps a window of messages on the
//     wire (Client.BatchWindow, default 16) and with DATA sends the next
//     message's envelope together with the previous message's final dot
//     (RFC 2920 §3.1): one round trip per message instead of two;
//   - a debug transcript with AUTH payloads redacted and message bodies
//     summarised.
//
// The package imports nothing else of mailbot, so it can be used on its own.
// A Client is not safe for concurrent use: one goroutine drives one SMTP
// conversation, as the protocol itself is sequential.
package smtp
