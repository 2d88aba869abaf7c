// Package smtptest provides fake SMTP servers for testing mailbot's SMTP
// client over real TCP connections on the loopback interface, in the way
// net/http/httptest provides fake HTTP servers.
//
// # Scripted server
//
// [NewServer] plays a transcript script against one client connection. The
// script is a small text format in the style of the basicServer transcripts
// of the net/smtp tests, moved into files so that server misbehaviour which
// real servers do not produce on demand (slow replies, endless replies,
// replies without a line ending, hung connections, dropped connections) can
// be reproduced:
//
//	# a comment; blank lines are ignored
//	S: 220 fake.test ESMTP       send this line, CRLF appended
//	C: EHLO localhost            read one line; it must equal this exactly
//	S: 250-fake.test
//	S: 250 8BITMIME
//	C~ ^AUTH PLAIN .+$           read one line; it must match the regexp
//	C: *                         read any one line
//	! data                       read a DATA body up to the "." line
//	! chunk                      read the bytes the BDAT command just
//	                             received announced (RFC 3030)
//	! starttls                   upgrade to TLS (after "S: 220 ...")
//	! close                      close the connection now
//	! raw 250 no newline here    send bytes as given; \r \n \t \\ \xHH
//	! drip 250 slow reply        send line+CRLF one byte at a time
//	! drip-interval 50ms         pause between dripped bytes (default 10ms)
//	! hang                       stop responding until the client hangs up
//	                             or the server is closed
//	! flood 100000 250-x         send N copies of a line, best effort
//	! expect-eof                 the client must close the connection now
//
// Regular expressions are not anchored implicitly; write ^ and $ where the
// whole line must match. "! close" and "! hang" end a script, so nothing may
// follow them. Lines the client sends must end in CRLF: a bare LF is a
// protocol error in SMTP (RFC 5321, section 2.3.8) and the server reports it
// as [ErrBareLF], which is how tests catch a client that gets this wrong.
//
// Every read has a deadline (see [WithReadTimeout]) and any mismatch closes
// the connection, so a misbehaving client produces an error from
// [Server.Wait] rather than a hung test. The error is a [*ScriptError] that
// names the connection, the script line, what was expected and what arrived.
//
// # Sink
//
// [NewSink] starts a fast, correct, minimal ESMTP server that accepts every
// message and only counts messages and bytes. It is the reference peer for
// throughput benchmarks and honours command pipelining (RFC 2920): replies are
// flushed only when no more client input is buffered.
//
// # Certificates
//
// The scripted server presents a self-signed ECDSA certificate for
// "localhost", 127.0.0.1 and ::1 that is generated once per process, unless
// [WithTLSConfig] supplies another. [Server.CertPool] returns a pool that
// trusts the presented certificate.
package smtptest
