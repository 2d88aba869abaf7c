// Package message builds Internet mail messages (RFC 5322) with MIME bodies
// (RFC 2045-2049) for mailbot.
//
// A [Message] is a plain struct: fill in the addresses, subject, bodies and
// attachments, then call [Message.Bytes] or [Message.WriteTo]. The output uses
// CRLF line ends and is ready for an SMTP DATA command. A [DKIMSigner] adds a
// DKIM signature to finished messages (with github.com/emersion/go-msgauth);
// the rest of the package uses only the standard library. It knows nothing
// about SMTP or Lua.
//
// Encoding rules:
//
//   - Header values that are not printable ASCII are written as RFC 2047
//     encoded-words (UTF-8, Q or B encoding, whichever is shorter). Header
//     lines are folded at 78 octets where possible and never exceed 998.
//   - Addresses are parsed with net/mail ("Name <a@example.com>" or bare
//     "a@example.com"); display names are re-encoded by net/mail.Address.
//     Internationalised addresses (non-ASCII local parts or domains) are
//     refused, because sending them needs SMTPUTF8.
//   - Text and HTML bodies are sent as 7bit when they are short-lined
//     printable ASCII, otherwise as quoted-printable, always with
//     charset=utf-8. Their line breaks (LF, CR or CRLF) are sent as CRLF, the
//     canonical form of text, so a reader gets the body back with CRLF breaks.
//   - Attachments and inline parts are base64 with 76-character lines and come
//     back byte for byte.
//   - The structure is the smallest that fits: a single part for one body,
//     multipart/alternative for text plus HTML (text first),
//     multipart/related around the HTML when there are inline parts, and
//     multipart/mixed around everything when there are attachments.
//   - Bcc addresses never appear in the output; they are only returned by
//     [Message.Recipients].
//
// Any header name or value that contains CR, LF or NUL is refused with a
// [*HeaderError] that wraps [ErrHeaderInjection]; this covers the subject,
// addresses, custom headers, attachment file names, content types and
// content IDs.
package message
