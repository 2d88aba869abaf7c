package smtp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// TokenSource supplies OAuth 2.0 access tokens to LoginOAuth2. It must be
// safe for concurrent use: the sessions of one account (outbox workers,
// scripts) share one.
type TokenSource interface {
	// Token returns an access token that is valid now, refreshing a
	// cached one that is about to expire.
	Token(ctx context.Context) (string, error)
	// Refresh is called after the server refused the token rejected. It
	// returns a fresh token, or the one another caller already refreshed
	// to. Its errors should say what the operator can do about them.
	Refresh(ctx context.Context, rejected string) (string, error)
}

// OAuth2Error is the error a server reports when it refuses an OAuth 2.0
// bearer token: the JSON object of RFC 7628 §3.2.2, which OAUTHBEARER
// sends in a 334 challenge and Gmail's XOAUTH2 sends the same way. It
// never holds the token.
type OAuth2Error struct {
	// Status is the OAuth error code ("invalid_token",
	// "insufficient_scope") or, from Gmail, an HTTP status ("401", "400").
	Status string `json:"status"`
	// Scope is the scope the server wants the token to have, if it says.
	Scope string `json:"scope,omitempty"`
	// Schemes lists the token types the server accepts ("bearer").
	Schemes string `json:"schemes,omitempty"`
}

// String describes the error for messages: `status "401", scope "..."`.
func (e *OAuth2Error) String() string {
	var parts []string
	if e.Status != "" {
		parts = append(parts, "status "+strconv.Quote(e.Status))
	}
	if e.Scope != "" {
		parts = append(parts, "scope "+strconv.Quote(e.Scope))
	}
	if len(parts) == 0 {
		return "no details"
	}
	return strings.Join(parts, ", ")
}

// scopeMissing reports whether the server says the token lacks a scope.
func (e *OAuth2Error) scopeMissing() bool {
	return e != nil && (e.Status == "insufficient_scope" || e.Status == "403")
}

// parseOAuth2Error decodes a server's JSON error challenge. A challenge
// that is not such an object still counts as a refusal, with no details;
// strings are cut short and stripped of control characters, since they
// end up in logs.
func parseOAuth2Error(challenge []byte) *OAuth2Error {
	var e OAuth2Error
	if err := json.Unmarshal(challenge, &e); err != nil {
		return &OAuth2Error{}
	}
	clean := func(s string) string {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, s)
		return truncate(s, 200)
	}
	e.Status, e.Scope, e.Schemes = clean(e.Status), clean(e.Scope), clean(e.Schemes)
	return &e
}

// oauth2Refusal is implemented by the OAuth 2.0 mechanisms: the server's
// JSON error, once it sent one.
type oauth2Refusal interface {
	oauth2Error() *OAuth2Error
}

// checkBearer refuses tokens that cannot travel in a SASL message: empty,
// or holding spaces or control characters (RFC 6750 b64token has neither).
// The message never quotes the token.
func checkBearer(token string) error {
	if token == "" {
		return errors.New("the access token is empty")
	}
	for i := 0; i < len(token); i++ {
		if token[i] <= ' ' || token[i] == 0x7f {
			return fmt.Errorf("the access token contains a space or control character at offset %d, which a bearer token cannot (RFC 6750 §2.1)", i)
		}
	}
	return nil
}

// OAuthBearerAuth returns the OAUTHBEARER mechanism (RFC 7628) with an
// OAuth 2.0 access token. host and port name the server the client
// connected to (port 0 leaves it out). When the server refuses the token
// it sends a JSON error, which the client answers with the single byte
// 0x01 (§3.2.3); the *AuthError then carries the decoded error in OAuth2.
func OAuthBearerAuth(username, token, host string, port int) Mechanism {
	return &oauthBearerAuth{username: username, token: token, host: host, port: port}
}

type oauthBearerAuth struct {
	username, token, host string
	port                  int
	refused               *OAuth2Error
}

func (a *oauthBearerAuth) Name() string { return "OAUTHBEARER" }

func (a *oauthBearerAuth) Start() ([]byte, error) {
	if err := checkBearer(a.token); err != nil {
		return nil, err
	}
	if strings.ContainsAny(a.username+a.host, "\x00\x01") {
		return nil, errors.New("the user name or host contains NUL or 0x01, which OAUTHBEARER cannot carry")
	}
	a.refused = nil
	var b strings.Builder
	// GS2 header (RFC 5801 §4): no channel binding, the user as the
	// authorization identity, with ',' and '=' escaped.
	b.WriteString("n,")
	if a.username != "" {
		b.WriteString("a=")
		b.WriteString(strings.NewReplacer("=", "=3D", ",", "=2C").Replace(a.username))
	}
	b.WriteString(",")
	if a.host != "" {
		b.WriteString("\x01host=" + a.host)
	}
	if a.port > 0 {
		b.WriteString("\x01port=" + strconv.Itoa(a.port))
	}
	b.WriteString("\x01auth=Bearer " + a.token + "\x01\x01")
	return []byte(b.String()), nil
}

func (a *oauthBearerAuth) Next(challenge []byte) ([]byte, error) {
	if a.refused != nil {
		return nil, errors.New("unexpected challenge after the server's OAUTHBEARER error")
	}
	a.refused = parseOAuth2Error(challenge)
	// RFC 7628 §3.2.3: the client answers the error with a dummy
	// response, %x01, and the server then ends the exchange.
	return []byte{0x01}, nil
}

func (a *oauthBearerAuth) oauth2Error() *OAuth2Error { return a.refused }

func (a *xoauth2Auth) oauth2Error() *OAuth2Error { return a.refused }

// Mechanism names LoginOAuth2 knows.
const (
	MechXOAuth2     = "XOAUTH2"
	MechOAuthBearer = "OAUTHBEARER"
)

// LoginOAuth2 authenticates user with an access token from ts, using
// mechanism "XOAUTH2" or "OAUTHBEARER" ("" picks XOAUTH2 when the server
// offers it, else OAUTHBEARER). It sends EHLO first if needed and, like
// Login, refuses to authenticate over an unencrypted connection unless
// AllowInsecureAuth is set.
//
// When the server refuses the token (a JSON error challenge, or 535), it
// calls ts.Refresh once and retries once on the same session. Errors are
// *AuthError, with Step saying what failed: "token" (ts.Token failed),
// "refresh" (the token was refused and ts.Refresh failed; its error is
// wrapped), "retry" (the refreshed token was refused too). Other refusals
// (454 temporary failure, 504 mechanism unknown, ...) are returned as Auth
// returns them, without a refresh. No message ever holds a token.
func (c *Client) LoginOAuth2(ctx context.Context, user string, ts TokenSource, mechanism string) error {
	if ts == nil {
		return errors.New("smtp: LoginOAuth2: no token source")
	}
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		return err
	}
	if err := c.authAllowed(); err != nil {
		return err
	}
	name, err := c.oauth2MechanismName(mechanism)
	if err != nil {
		return err
	}
	tok, err := ts.Token(ctx)
	if err != nil {
		return &AuthError{Mechanism: name, Step: "token", Err: fmt.Errorf("getting an access token: %w", err)}
	}
	err = c.Auth(ctx, c.oauth2Mechanism(name, user, tok))
	first, refused := tokenRefused(err)
	if !refused || c.closed {
		return err
	}
	fresh, rerr := ts.Refresh(ctx, tok)
	if rerr != nil {
		return &AuthError{Mechanism: name, Step: "refresh", OAuth2: first.OAuth2,
			Err: fmt.Errorf("the server refused the access token (%s) and refreshing it failed: %w", describeRefusal(first), rerr)}
	}
	if fresh == tok {
		return &AuthError{Mechanism: name, Step: "refresh", OAuth2: first.OAuth2,
			Err: fmt.Errorf("the server refused the access token (%s) and the token source returned the same token again", describeRefusal(first))}
	}
	err = c.Auth(ctx, c.oauth2Mechanism(name, user, fresh))
	second, refused := tokenRefused(err)
	if !refused {
		return err
	}
	return &AuthError{Mechanism: name, Step: "retry", OAuth2: second.OAuth2,
		Err: &explained{msg: "the server refused the refreshed access token too (" + describeRefusal(second) + ")" + retryAdvice(user, second.OAuth2),
			err: second.Err}}
}

// explained is an error whose message describes its cause in its own
// words; errors.As still finds the cause (the server's *SMTPError).
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// oauth2MechanismName resolves the mechanism to use and checks that the
// server offers it.
func (c *Client) oauth2MechanismName(mechanism string) (string, error) {
	offered := func(m string) bool {
		for _, o := range c.authMechs {
			if o == m {
				return true
			}
		}
		return false
	}
	name := strings.ToUpper(mechanism)
	switch name {
	case "":
		switch {
		case offered(MechXOAuth2):
			return MechXOAuth2, nil
		case offered(MechOAuthBearer):
			return MechOAuthBearer, nil
		}
		return "", &NotSupportedError{Extension: "AUTH", Msg: fmt.Sprintf("the server offers neither XOAUTH2 nor OAUTHBEARER (it offers %s), so it cannot take an OAuth 2.0 token",
			strings.Join(c.authMechs, " "))}
	case MechXOAuth2, MechOAuthBearer:
		if !offered(name) {
			return "", &NotSupportedError{Extension: "AUTH", Msg: fmt.Sprintf("the server does not offer %s (it offers %s)",
				name, strings.Join(c.authMechs, " "))}
		}
		return name, nil
	}
	return "", fmt.Errorf("smtp: LoginOAuth2: unknown mechanism %q (XOAUTH2 or OAUTHBEARER)", mechanism)
}

// oauth2Mechanism builds the named mechanism for one attempt.
func (c *Client) oauth2Mechanism(name, user, token string) Mechanism {
	if name == MechOAuthBearer {
		port := 0
		if a, ok := c.conn.RemoteAddr().(*net.TCPAddr); ok {
			port = a.Port
		}
		return OAuthBearerAuth(user, token, c.serverName, port)
	}
	return XOAuth2Auth(user, token)
}

// tokenRefused reports whether err from Auth means the server refused the
// token itself: it sent a JSON error, or answered 535. A 454 without a
// JSON error is a temporary server failure, not a verdict on the token.
func tokenRefused(err error) (*AuthError, bool) {
	var ae *AuthError
	if err == nil || !errors.As(err, &ae) {
		return nil, false
	}
	var se *SMTPError
	if !errors.As(ae.Err, &se) {
		return nil, false
	}
	return ae, ae.OAuth2 != nil && se.Code >= 400 || se.Code == 535
}

// describeRefusal renders the server's refusal of a token for a message.
func describeRefusal(ae *AuthError) string {
	var se *SMTPError
	s := "refused"
	if errors.As(ae.Err, &se) {
		s = strings.TrimPrefix(se.Error(), "smtp: AUTH: ")
	}
	if ae.OAuth2 != nil {
		s += "; " + ae.OAuth2.String()
	}
	return s
}

// retryAdvice says what to check when a freshly refreshed token is refused
// too: the identity provider issues tokens this server does not take.
func retryAdvice(user string, oe *OAuth2Error) string {
	var b strings.Builder
	if oe != nil {
		if oe.Scope != "" {
			fmt.Fprintf(&b, "; consent missing for scope %s: grant it to the application and log in again", oe.Scope)
		} else if oe.scopeMissing() {
			b.WriteString("; consent missing for a scope the server needs: grant it to the application and log in again")
		}
	}
	fmt.Fprintf(&b, "; check that the token is issued for user %q, that its scopes allow SMTP, and that SMTP AUTH is enabled for the mailbox", user)
	return b.String()
}
