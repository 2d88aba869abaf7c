package smtp

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/stringprep"
)

// Mechanism is the client side of one SASL mechanism (RFC 4422) for SMTP
// AUTH (RFC 4954).
type Mechanism interface {
	// Name is the mechanism's name as advertised, e.g. "PLAIN".
	Name() string
	// Start returns the initial response, or nil to send none.
	Start() ([]byte, error)
	// Next answers a server challenge (already base64-decoded).
	Next(challenge []byte) ([]byte, error)
}

// maxAuthChallenges bounds an AUTH exchange: a server that keeps sending
// 334 challenges would otherwise hold the client forever.
const maxAuthChallenges = 5

// PlainAuth returns the PLAIN mechanism (RFC 4616). identity is usually "".
func PlainAuth(identity, username, password string) Mechanism {
	return &plainAuth{identity, username, password}
}

type plainAuth struct{ identity, username, password string }

func (a *plainAuth) Name() string { return "PLAIN" }

// Start sends the credentials as given: RFC 4616 §2 leaves their
// preparation (SASLprep is recommended) to the server, which compares them
// with its own records, so the client must not alter them. NUL separates
// the fields and may not appear in them.
func (a *plainAuth) Start() ([]byte, error) {
	if strings.Contains(a.identity+a.username+a.password, "\x00") {
		return nil, errors.New("the identity, user name or password contains NUL, which PLAIN cannot carry (RFC 4616 §2)")
	}
	return []byte(a.identity + "\x00" + a.username + "\x00" + a.password), nil
}
func (a *plainAuth) Next([]byte) ([]byte, error) {
	return nil, errors.New("unexpected challenge for PLAIN")
}

// LoginAuth returns the LOGIN mechanism: the server prompts for the user
// name and then the password, each sent as its own step. Some servers accept
// the user name as an initial response; LoginAuthInitial does that.
func LoginAuth(username, password string) Mechanism {
	return &loginAuth{username: username, password: password}
}

// LoginAuthInitial is LoginAuth sending the user name with the AUTH command
// itself (RFC 4954 initial response), saving one round trip.
func LoginAuthInitial(username, password string) Mechanism {
	return &loginAuth{username: username, password: password, initial: true}
}

type loginAuth struct {
	username, password string
	initial            bool
	step               int
}

func (a *loginAuth) Name() string { return "LOGIN" }
func (a *loginAuth) Start() ([]byte, error) {
	a.step = 0
	if a.initial {
		a.step = 1
		return []byte(a.username), nil
	}
	return nil, nil
}
func (a *loginAuth) Next(challenge []byte) ([]byte, error) {
	// The prompts ("Username:", "Password:") are not standardised, so
	// the step count decides, as in every widely used client.
	a.step++
	switch a.step {
	case 1:
		return []byte(a.username), nil
	case 2:
		return []byte(a.password), nil
	}
	return nil, errors.New("unexpected extra challenge for LOGIN")
}

// CRAMMD5Auth returns the CRAM-MD5 mechanism (RFC 2195).
func CRAMMD5Auth(username, secret string) Mechanism {
	return &cramMD5Auth{username, secret}
}

type cramMD5Auth struct{ username, secret string }

func (a *cramMD5Auth) Name() string           { return "CRAM-MD5" }
func (a *cramMD5Auth) Start() ([]byte, error) { return nil, nil }
func (a *cramMD5Auth) Next(challenge []byte) ([]byte, error) {
	mac := hmac.New(md5.New, []byte(a.secret))
	mac.Write(challenge)
	return []byte(a.username + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

// XOAuth2Auth returns the XOAUTH2 mechanism used by Gmail and Microsoft 365
// with an OAuth 2.0 access token. When the server refuses the token it
// sends a JSON error as a challenge and expects an empty response before
// its final 535 (Google's documentation); the *AuthError then carries the
// decoded error in OAuth2.
func XOAuth2Auth(username, token string) Mechanism {
	return &xoauth2Auth{username: username, token: token}
}

type xoauth2Auth struct {
	username, token string
	refused         *OAuth2Error
}

func (a *xoauth2Auth) Name() string { return "XOAUTH2" }
func (a *xoauth2Auth) Start() ([]byte, error) {
	if err := checkBearer(a.token); err != nil {
		return nil, err
	}
	if strings.ContainsAny(a.username, "\x00\x01") {
		return nil, errors.New("the user name contains NUL or 0x01, which XOAUTH2 cannot carry")
	}
	a.refused = nil
	return []byte("user=" + a.username + "\x01auth=Bearer " + a.token + "\x01\x01"), nil
}
func (a *xoauth2Auth) Next(challenge []byte) ([]byte, error) {
	if a.refused != nil {
		return nil, errors.New("unexpected challenge after the server's XOAUTH2 error")
	}
	a.refused = parseOAuth2Error(challenge)
	return []byte{}, nil
}

// ScramSHA256Auth returns the SCRAM-SHA-256 mechanism (RFC 7677), which
// proves the password without sending it and authenticates the server too.
// The user name and password are prepared with SASLprep (RFC 4013) as
// RFC 5802 §5.1 requires, so that, for example, a password typed with a
// no-break space or in a different Unicode normalisation form gives the same
// proof as the one the server stored. Credentials SASLprep refuses (control
// characters, for example) make Start fail with a *SASLprepError before
// anything is sent.
func ScramSHA256Auth(username, password string) Mechanism {
	return &scramAuth{username: username, password: password}
}

// SASLprepError reports credentials that SASLprep (RFC 4013) refuses, so
// SCRAM cannot use them. Nothing was sent; Login goes on with the next
// mechanism the server offers.
type SASLprepError struct {
	// Field is "user name" or "password".
	Field string
	// Err is the cause. For a password it does not name the character.
	Err error
}

func (e *SASLprepError) Error() string {
	return fmt.Sprintf("the %s is not valid under SASLprep (RFC 4013), which SCRAM requires: %v", e.Field, e.Err)
}

// Unwrap returns the cause.
func (e *SASLprepError) Unwrap() error { return e.Err }

// saslprepQuery is SASLprep for query strings: RFC 5802 §5.1 prepares the
// SCRAM user name as a query (code points unassigned in Unicode 3.2
// allowed) and the password as a stored string (they are prohibited), while
// stringprep.SASLprep implements stored strings only.
var saslprepQuery = func() stringprep.Profile {
	p := stringprep.SASLprep
	p.Prohibits = nil
	for _, set := range stringprep.SASLprep.Prohibits {
		if len(set) > 0 && &set[0] == &stringprep.TableA1[0] {
			continue
		}
		p.Prohibits = append(p.Prohibits, set)
	}
	return p
}()

// saslprep prepares s with profile p. Printable ASCII, the usual case, is
// left as it is: SASLprep maps, normalises and prohibits none of it.
func saslprep(p stringprep.Profile, s string) (string, error) {
	ascii := true
	for i := 0; i < len(s) && ascii; i++ {
		ascii = s[i] >= 0x20 && s[i] < 0x7f
	}
	if ascii {
		return s, nil
	}
	return p.Prepare(s)
}

type scramAuth struct {
	username, password string
	// prepared is the SASLprep-ed password the proof is computed from.
	prepared        string
	clientNonce     string
	clientFirstBare string
	serverSignature []byte
	step            int
}

func (a *scramAuth) Name() string { return "SCRAM-SHA-256" }

func (a *scramAuth) Start() ([]byte, error) {
	nonce := make([]byte, 18)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	user, err := saslprep(saslprepQuery, a.username)
	if err != nil {
		return nil, &SASLprepError{Field: "user name", Err: err}
	}
	if a.prepared, err = saslprep(stringprep.SASLprep, a.password); err != nil {
		return nil, &SASLprepError{Field: "password", Err: errors.New("it contains a prohibited character (a control, private-use or unassigned code point)")}
	}
	a.clientNonce = base64.RawStdEncoding.EncodeToString(nonce)
	a.clientFirstBare = "n=" + scramEscape(user) + ",r=" + a.clientNonce
	a.step = 0
	return []byte("n,," + a.clientFirstBare), nil
}

func (a *scramAuth) Next(challenge []byte) ([]byte, error) {
	a.step++
	switch a.step {
	case 1:
		return a.clientFinal(string(challenge))
	case 2:
		attrs := scramAttrs(string(challenge))
		if e, ok := attrs["e"]; ok {
			return nil, fmt.Errorf("server reported SCRAM error %q", e)
		}
		v, err := base64.StdEncoding.DecodeString(attrs["v"])
		if err != nil || !hmac.Equal(v, a.serverSignature) {
			return nil, errors.New("server signature does not match: the server does not know the password (possible impostor)")
		}
		return []byte{}, nil
	}
	return nil, errors.New("unexpected extra challenge for SCRAM-SHA-256")
}

func (a *scramAuth) clientFinal(serverFirst string) ([]byte, error) {
	attrs := scramAttrs(serverFirst)
	nonce, salt64, iterStr := attrs["r"], attrs["s"], attrs["i"]
	if !strings.HasPrefix(nonce, a.clientNonce) || len(nonce) == len(a.clientNonce) {
		return nil, errors.New("server nonce does not extend the client nonce")
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil {
		return nil, fmt.Errorf("bad salt: %w", err)
	}
	iter, err := strconv.Atoi(iterStr)
	if err != nil || iter < 1 || iter > 1<<20 {
		return nil, fmt.Errorf("bad iteration count %q", iterStr)
	}
	salted := pbkdf2SHA256([]byte(a.prepared), salt, iter)
	clientKey := hmacSHA256(salted, []byte("Client Key"))
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=biws,r=" + nonce
	authMsg := a.clientFirstBare + "," + serverFirst + "," + withoutProof
	clientSig := hmacSHA256(storedKey[:], []byte(authMsg))
	proof := make([]byte, len(clientKey))
	for i := range clientKey {
		proof[i] = clientKey[i] ^ clientSig[i]
	}
	serverKey := hmacSHA256(salted, []byte("Server Key"))
	a.serverSignature = hmacSHA256(serverKey, []byte(authMsg))
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func scramEscape(s string) string {
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}

func scramAttrs(s string) map[string]string {
	m := make(map[string]string)
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && len(k) == 1 {
			m[k] = v
		}
	}
	return m
}

func hmacSHA256(key, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(data)
	return h.Sum(nil)
}

// pbkdf2SHA256 is PBKDF2 (RFC 8018) with HMAC-SHA-256 and a 32-byte key,
// the only shape SCRAM-SHA-256 needs.
func pbkdf2SHA256(password, salt []byte, iter int) []byte {
	prf := hmac.New(sha256.New, password)
	prf.Write(salt)
	prf.Write([]byte{0, 0, 0, 1})
	u := prf.Sum(nil)
	out := append([]byte(nil), u...)
	for i := 1; i < iter; i++ {
		prf.Reset()
		prf.Write(u)
		u = prf.Sum(u[:0])
		for j := range out {
			out[j] ^= u[j]
		}
	}
	return out
}

// loginPreference is the order Login tries mechanisms in: strongest first.
// SCRAM-SHA-256 never reveals the password; CRAM-MD5, PLAIN and LOGIN follow
// in smtplib's order.
var loginPreference = []string{"SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"}

// Login authenticates with the strongest mechanism both sides support, like
// smtplib's login, sending EHLO first if needed. A wrong password costs one
// attempt: Login moves on to the next mechanism only when the server refuses
// the mechanism itself (504, 534, 538), never after 535. It refuses to send
// credentials over an unencrypted connection unless AllowInsecureAuth is
// set. Errors: *NotSupportedError when the server offers no usable AUTH
// (the message says when STARTTLS must come first), *AuthError otherwise.
func (c *Client) Login(ctx context.Context, username, password string) error {
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		return err
	}
	if err := c.authAllowed(); err != nil {
		return err
	}
	offered := make(map[string]bool)
	for _, m := range c.authMechs {
		offered[m] = true
	}
	var lastErr error
	tried := 0
	for _, name := range loginPreference {
		if !offered[name] {
			continue
		}
		var mech Mechanism
		switch name {
		case "SCRAM-SHA-256":
			mech = ScramSHA256Auth(username, password)
		case "CRAM-MD5":
			mech = CRAMMD5Auth(username, password)
		case "PLAIN":
			mech = PlainAuth("", username, password)
		case "LOGIN":
			mech = LoginAuth(username, password)
		}
		tried++
		err := c.Auth(ctx, mech)
		if err == nil {
			return nil
		}
		lastErr = err
		var se *SMTPError
		if errors.As(err, &se) && mechanismRefused(se.Code) && !c.closed {
			continue
		}
		// Credentials SCRAM cannot prepare: nothing was sent, and a
		// mechanism that sends them as they are may still work.
		var pe *SASLprepError
		if errors.As(err, &pe) {
			continue
		}
		return err
	}
	if tried == 0 {
		return &NotSupportedError{Extension: "AUTH", Msg: fmt.Sprintf("no supported mechanism among those offered (%s); mailbot supports %s",
			strings.Join(c.authMechs, " "), strings.Join(loginPreference, " "))}
	}
	return lastErr
}

// mechanismRefused reports replies that reject the mechanism rather than
// the credentials (RFC 4954 §6): 504 unrecognised, 534 too weak, 538
// encryption required for this mechanism.
func mechanismRefused(code int) bool {
	return code == 504 || code == 534 || code == 538
}

// authAllowed checks the preconditions shared by Login and Auth.
func (c *Client) authAllowed() error {
	if !c.HasExtension("AUTH") {
		if c.tlsState == nil && c.HasExtension("STARTTLS") {
			return &NotSupportedError{Extension: "AUTH", Msg: "the server offers AUTH only after STARTTLS; " +
				"connect with tls = \"starttls\" (or call starttls() and ehlo() before login)"}
		}
		return &NotSupportedError{Extension: "AUTH", Msg: "the server did not advertise AUTH (SMTP AUTH extension not supported by server)"}
	}
	if c.tlsState == nil && !c.AllowInsecureAuth {
		return &NotSupportedError{Extension: "TLS", Msg: "refusing to send credentials over an unencrypted connection; " +
			"use tls = \"starttls\" or \"implicit\", or set allow_insecure_auth = true if this network is trusted"}
	}
	return nil
}

// Auth authenticates with one mechanism, sending EHLO first if needed. An
// exchange longer than five challenges is cancelled. When the mechanism
// fails on the client side mid-exchange (a bad challenge, an impostor
// server's SCRAM signature), Auth sends "*" to cancel it (RFC 4954 §4) so
// the session stays in step. The error is an *AuthError wrapping the
// server's *SMTPError or the client-side cause.
func (c *Client) Auth(ctx context.Context, mech Mechanism) error {
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		return err
	}
	if err := c.authAllowed(); err != nil {
		return err
	}
	name := mech.Name()
	if err := validateLine(name); err != nil {
		return err
	}
	ir, err := mech.Start()
	if err != nil {
		return &AuthError{Mechanism: name, Err: err}
	}
	line := "AUTH " + name
	shown := line
	if ir != nil {
		enc := "="
		if len(ir) > 0 {
			enc = base64.StdEncoding.EncodeToString(ir)
		}
		line += " " + enc
		shown += " " + redacted
	}
	rep, err := c.cmdShown(ctx, "AUTH", line, shown)
	for n := 0; err == nil && rep.Code == 334; n++ {
		if n == maxAuthChallenges {
			return c.cancelAuth(ctx, name, fmt.Errorf("server sent more than %d challenges", maxAuthChallenges))
		}
		challenge, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(rep.Text()))
		if derr != nil {
			return c.cancelAuth(ctx, name, fmt.Errorf("challenge is not base64: %w", derr))
		}
		resp, merr := mech.Next(challenge)
		if merr != nil {
			return c.cancelAuth(ctx, name, merr)
		}
		rep, err = c.cmdShown(ctx, "AUTH", base64.StdEncoding.EncodeToString(resp), redacted)
	}
	if err != nil {
		return err
	}
	if rep.Code != 235 {
		ae := &AuthError{Mechanism: name, Err: replyError("AUTH", rep)}
		if r, ok := mech.(oauth2Refusal); ok {
			ae.OAuth2 = r.oauth2Error()
		}
		return ae
	}
	return nil
}

// cancelAuth aborts an exchange with "*" and reads the server's 501.
func (c *Client) cancelAuth(ctx context.Context, mech string, cause error) error {
	if _, err := c.cmd(ctx, "AUTH", "*"); err != nil {
		return &AuthError{Mechanism: mech, Err: fmt.Errorf("%w (and cancelling failed: %v)", cause, err)}
	}
	return &AuthError{Mechanism: mech, Err: cause}
}
