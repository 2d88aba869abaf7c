package message

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// MinDKIMRSABits is the smallest RSA key a [DKIMSigner] accepts: RFC 8301
// section 3.2 forbids signing with shorter keys (and recommends 2048 bits).
const MinDKIMRSABits = 1024

// DefaultDKIMHeaders are the header fields a [DKIMSigner] signs when
// DKIMOptions.Headers is empty: those RFC 6376 section 5.4.1 recommends
// that mailbot's messages carry, plus the List-Unsubscribe fields (RFC 8058
// wants List-Unsubscribe-Post signed for one-click unsubscription).
var DefaultDKIMHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// DKIMOptions configures a [DKIMSigner].
type DKIMOptions struct {
	// Domain is the signing domain (d=); the public key is published at
	// Selector._domainkey.Domain.
	Domain   string
	Selector string
	// Key is an *rsa.PrivateKey (rsa-sha256, at least MinDKIMRSABits) or
	// an ed25519.PrivateKey (ed25519-sha256); see [ParseDKIMKey].
	Key crypto.Signer
	// Headers are the header fields to sign; empty means
	// DefaultDKIMHeaders. It must include From.
	Headers []string
}

// DKIMSigner adds a DKIM-Signature (RFC 6376; RFC 8463 for Ed25519) to
// messages, with relaxed/relaxed canonicalization. It is safe for
// concurrent use.
type DKIMSigner struct {
	domain, selector string
	key              crypto.Signer
	headers          []string
	algo             string
}

// NewDKIMSigner checks opts and returns a signer.
func NewDKIMSigner(opts DKIMOptions) (*DKIMSigner, error) {
	if opts.Domain == "" {
		return nil, errors.New("dkim: no domain")
	}
	if opts.Selector == "" {
		return nil, errors.New("dkim: no selector")
	}
	if opts.Key == nil {
		return nil, errors.New("dkim: no key")
	}
	algo, err := dkimKeyAlgorithm(opts.Key)
	if err != nil {
		return nil, err
	}
	headers := opts.Headers
	if len(headers) == 0 {
		headers = DefaultDKIMHeaders
	}
	if err := CheckDKIMHeaders(headers); err != nil {
		return nil, err
	}
	return &DKIMSigner{domain: opts.Domain, selector: opts.Selector, key: opts.Key,
		headers: append([]string(nil), headers...), algo: algo}, nil
}

// CheckDKIMHeaders reports a header list a [DKIMSigner] cannot use: one
// without From, or with a name that is not a header field name.
func CheckDKIMHeaders(headers []string) error {
	from := false
	for _, h := range headers {
		if h == "" || strings.IndexFunc(h, func(r rune) bool { return r <= ' ' || r > '~' || r == ':' }) >= 0 {
			return fmt.Errorf("dkim: %q is not a header field name", h)
		}
		if strings.EqualFold(h, "From") {
			from = true
		}
	}
	if !from {
		return errors.New("dkim: the header list must include From (RFC 6376 section 5.4)")
	}
	return nil
}

// Algorithm returns the signature algorithm, "rsa-sha256" or
// "ed25519-sha256".
func (s *DKIMSigner) Algorithm() string { return s.algo }

// Sign returns msg with a DKIM-Signature header field prepended. Line ends
// are made CRLF first (as the SMTP client sends them), so the signature
// covers the bytes on the wire. A signature this signer (same domain and
// selector) added earlier is replaced rather than kept, so a message
// signed again carries one signature of ours.
//
// Each header field in the list is signed as often as the message has it;
// fields the message lacks are left out, except From, which is signed
// once more than it occurs so that a From added in transit breaks the
// signature.
func (s *DKIMSigner) Sign(msg []byte) ([]byte, error) {
	msg = toCRLF(msg)
	header, body, ok := splitHeader(msg)
	if !ok {
		return nil, errors.New("dkim: the message has no header/body separator")
	}
	if body == nil {
		// Header fields only: add the empty line that ends them, which
		// the signer needs; the message sent is the same one.
		msg = append(msg[:len(msg):len(msg)], '\r', '\n')
		body = []byte{}
	}
	fields := headerFields(header)
	kept := fields[:0:0]
	for _, f := range fields {
		if !s.ownSignature(f) {
			kept = append(kept, f)
		}
	}
	if len(kept) != len(fields) {
		var b bytes.Buffer
		for _, f := range kept {
			b.WriteString(f)
		}
		b.WriteString("\r\n")
		b.Write(body)
		msg = b.Bytes()
	}
	count := map[string]int{}
	for _, f := range kept {
		name, _, _ := strings.Cut(f, ":")
		count[strings.ToLower(strings.TrimSpace(name))]++
	}
	var keys []string
	seen := map[string]bool{}
	for _, h := range s.headers {
		l := strings.ToLower(h)
		if seen[l] {
			continue
		}
		seen[l] = true
		n := count[l]
		if l == "from" {
			n++
		}
		for range n {
			keys = append(keys, h)
		}
	}
	var out bytes.Buffer
	out.Grow(len(msg) + 512)
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain:                 s.domain,
		Selector:               s.selector,
		Signer:                 s.key,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             keys,
	})
	if err != nil {
		return nil, fmt.Errorf("dkim: sign: %w", err)
	}
	return out.Bytes(), nil
}

// ownSignature reports whether the header field f is a DKIM-Signature with
// this signer's domain and selector.
func (s *DKIMSigner) ownSignature(f string) bool {
	name, value, ok := strings.Cut(f, ":")
	if !ok || !strings.EqualFold(strings.TrimSpace(name), "DKIM-Signature") {
		return false
	}
	var d, sel string
	for tag := range strings.SplitSeq(value, ";") {
		k, v, _ := strings.Cut(tag, "=")
		k, v = stripFWS(k), stripFWS(v)
		switch k {
		case "d":
			d = v
		case "s":
			sel = v
		}
	}
	return strings.EqualFold(d, s.domain) && strings.EqualFold(sel, s.selector)
}

func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// toCRLF makes every bare CR and bare LF a CRLF, as the SMTP client does
// on DATA. msg is returned as is when it needs no change.
func toCRLF(msg []byte) []byte {
	clean := true
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') || c == '\r' && (i+1 == len(msg) || msg[i+1] != '\n') {
			clean = false
			break
		}
	}
	if clean {
		return msg
	}
	out := make([]byte, 0, len(msg)+len(msg)/32)
	for i := 0; i < len(msg); i++ {
		switch c := msg[i]; {
		case c == '\r' && i+1 < len(msg) && msg[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// splitHeader splits a CRLF message at its first empty line: header (each
// field with its CRLF) and body. A message of header fields only (no empty
// line) has a nil body.
func splitHeader(msg []byte) (header, body []byte, ok bool) {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return nil, msg[2:], true
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+2], msg[i+4:], true
	}
	if bytes.HasSuffix(msg, []byte("\r\n")) {
		return msg, nil, true
	}
	return nil, nil, false
}

// headerFields splits a header into its fields, continuation lines
// included, each ending in CRLF.
func headerFields(header []byte) []string {
	var fields []string
	for len(header) > 0 {
		end := 0
		for {
			i := bytes.Index(header[end:], []byte("\r\n"))
			if i < 0 {
				end = len(header)
				break
			}
			end += i + 2
			if end >= len(header) || header[end] != ' ' && header[end] != '\t' {
				break
			}
		}
		fields = append(fields, string(header[:end]))
		header = header[end:]
	}
	return fields
}

// dkimKeyAlgorithm names the DKIM algorithm for key, or says why key
// cannot sign.
func dkimKeyAlgorithm(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if n := pub.N.BitLen(); n < MinDKIMRSABits {
			return "", fmt.Errorf("dkim: RSA key of %d bits is too short (RFC 8301 wants at least %d; use 2048)", n, MinDKIMRSABits)
		}
		return "rsa-sha256", nil
	case ed25519.PublicKey:
		return "ed25519-sha256", nil
	default:
		return "", fmt.Errorf("dkim: unsupported key type %T (want RSA or Ed25519)", pub)
	}
}

// ParseDKIMKey reads a DKIM private key: PEM "RSA PRIVATE KEY" (PKCS #1)
// or "PRIVATE KEY" (PKCS #8, RSA or Ed25519), or, for Ed25519, the base64
// of the 32-byte seed or of the 64-byte private key (as rspamd and
// OpenDKIM's ed25519 tools write it). RSA keys shorter than
// MinDKIMRSABits are refused.
func ParseDKIMKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return parseRawEd25519(data)
	}
	if _, ok := block.Headers["DEK-Info"]; ok || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("dkim: the key is encrypted; store it unencrypted, readable only by mailbot (openssl pkey -in enc.pem -out key.pem)")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return nil, errors.New("dkim: ECDSA keys cannot sign DKIM; use RSA (2048 bits) or Ed25519")
	default:
		return nil, fmt.Errorf("dkim: PEM block %q is not a private key (want RSA PRIVATE KEY or PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: %s: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dkim: unsupported key type %T (want RSA or Ed25519)", key)
	}
	if _, err := dkimKeyAlgorithm(signer); err != nil {
		return nil, err
	}
	return signer, nil
}

func parseRawEd25519(data []byte) (crypto.Signer, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, errors.New("dkim: not a PEM private key nor a base64 Ed25519 key")
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		key := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !bytes.Equal(key[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
			return nil, errors.New("dkim: the 64-byte Ed25519 key's public half does not match its seed")
		}
		return key, nil
	}
	return nil, fmt.Errorf("dkim: a base64 Ed25519 key has %d or %d bytes, not %d", ed25519.SeedSize, ed25519.PrivateKeySize, len(raw))
}

// LoadDKIMKey reads and parses the key file at path (see [ParseDKIMKey]).
func LoadDKIMKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim: read key: %w", err)
	}
	key, err := ParseDKIMKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// DKIMRecord returns the DNS TXT record (RFC 6376 section 3.6.1) that
// publishes key's public half, e.g. "v=DKIM1; k=rsa; p=MIIBIjAN...". It
// goes at <selector>._domainkey.<domain>.
func DKIMRecord(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", fmt.Errorf("dkim: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	default:
		return "", fmt.Errorf("dkim: unsupported key type %T", pub)
	}
}
