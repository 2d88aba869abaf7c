package oauth

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/oauth2"
)

// Kind classifies an Error so callers can branch on it.
type Kind int

// Error kinds.
const (
	// KindEndpoint: the token endpoint failed or answered with an error
	// not covered by another kind, or could not be reached.
	KindEndpoint Kind = iota
	// KindInvalidGrant: the refresh token (or device code) was revoked,
	// expired or belongs to another client.
	KindInvalidGrant
	// KindNoRefreshToken: there is no refresh token to start from.
	KindNoRefreshToken
	// KindConsent: the user or an administrator has not consented to the
	// scopes, or a scope is invalid for the client.
	KindConsent
	// KindClient: the endpoint refused the client (ID or secret).
	KindClient
	// KindDeviceExpired: the device code expired before sign-in finished.
	KindDeviceExpired
	// KindAccessDenied: the user declined the device sign-in.
	KindAccessDenied
	// KindSecret: the client secret or refresh-token seed could not be read.
	KindSecret
	// KindCache: the token cache could not be read or written.
	KindCache
	// KindConfig: the account's configuration does not allow the operation.
	KindConfig
)

// Error is every failure of this package that concerns an account. Its
// message says what to do and never contains a token or secret.
type Error struct {
	Account string
	Kind    Kind
	// Code is the OAuth2 error code of the endpoint ("invalid_grant"),
	// if any; Description its scrubbed error_description, shortened.
	Code        string
	Description string
	// Scopes are the scopes requested, for consent errors.
	Scopes []string
	// Msg is the explanation; Err an underlying cause (network, file
	// system), never an endpoint response body.
	Msg string
	Err error
}

// Error formats the message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Msg)
	if e.Description != "" {
		b.WriteString(" (" + e.Description + ")")
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is matches sentinel errors by kind: errors.Is(err, ErrInvalidGrant).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Account == "" && t.Msg == "" && t.Kind == e.Kind
}

// Sentinels for errors.Is.
var (
	ErrInvalidGrant   error = &Error{Kind: KindInvalidGrant}
	ErrNoRefreshToken error = &Error{Kind: KindNoRefreshToken}
	ErrConsent        error = &Error{Kind: KindConsent}
	ErrClient         error = &Error{Kind: KindClient}
	ErrDeviceExpired  error = &Error{Kind: KindDeviceExpired}
	ErrAccessDenied   error = &Error{Kind: KindAccessDenied}
)

func loginHint(account string) string {
	return "run `mailbot oauth login " + account + "`"
}

// endpointError turns an error of a token or device request into an
// *Error. Secrets in secrets are cut out of whatever the endpoint said;
// response bodies are never included.
func (s *Source) endpointError(err error, step string, secrets ...string) error {
	acct := s.cfg.Account
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		var oe *Error
		if errors.As(err, &oe) {
			return err
		}
		return &Error{Account: acct, Kind: KindEndpoint, Msg: fmt.Sprintf("oauth account %s: %s", acct, step), Err: scrubErr(err, secrets)}
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	return s.codeError(re.ErrorCode, re.ErrorDescription, status, step, secrets...)
}

// codeError builds the *Error for an OAuth2 error code.
func (s *Source) codeError(code, desc string, status int, step string, secrets ...string) error {
	acct := s.cfg.Account
	desc = shorten(scrub(desc, secrets))
	e := &Error{Account: acct, Code: code, Description: desc, Scopes: s.cfg.Scopes}
	scopes := strings.Join(s.cfg.Scopes, " ")
	if scopes == "" {
		scopes = "(none requested)"
	}
	switch {
	case s.cfg.Provider == ProviderGoogle && code == "invalid_scope" && step == "device authorization request":
		e.Kind = KindConsent
		e.Msg = fmt.Sprintf("oauth account %s: invalid_scope: Google's device flow does not allow scope %s; get a refresh token with a Desktop app client instead and give it to mailbot with refresh_token_file (see the README, \"Gmail and Microsoft 365\")", acct, scopes)
	case isConsent(code, desc):
		e.Kind = KindConsent
		e.Msg = fmt.Sprintf("oauth account %s: consent missing for scope %s: grant it to client %s (Microsoft: admin consent in Entra ID > Enterprise applications; Google: the OAuth consent screen), then %s", acct, scopes, s.cfg.ClientID, loginHint(acct))
	case code == "invalid_grant" && step == "device token poll":
		e.Kind = KindInvalidGrant
		e.Msg = fmt.Sprintf("oauth account %s: invalid_grant: the sign-in code was refused (expired or already used); %s again", acct, loginHint(acct))
	case code == "invalid_grant":
		e.Kind = KindInvalidGrant
		if s.cfg.Grant == GrantClientCredentials {
			e.Msg = fmt.Sprintf("oauth account %s: invalid_grant: the token endpoint refused the client credentials grant; check the tenant and the application's permissions", acct)
		} else {
			e.Msg = fmt.Sprintf("oauth account %s: invalid_grant: the refresh token was revoked or expired; %s", acct, loginHint(acct))
		}
	case code == "invalid_client" || code == "unauthorized_client":
		e.Kind = KindClient
		e.Msg = fmt.Sprintf("oauth account %s: %s: the token endpoint refused client %s; check client_id and the client secret (a public client must be allowed to use public client flows)", acct, code, s.cfg.ClientID)
	case code != "":
		e.Kind = KindEndpoint
		e.Msg = fmt.Sprintf("oauth account %s: %s: the token endpoint answered %s", acct, step, code)
	default:
		e.Kind = KindEndpoint
		e.Msg = fmt.Sprintf("oauth account %s: %s: the token endpoint answered HTTP %d", acct, step, status)
	}
	return e
}

// isConsent recognises missing-consent answers: invalid_scope, consent_required,
// and Microsoft's AADSTS65001 (no consent) / AADSTS70011 (invalid scope),
// which come with invalid_grant or invalid_request.
func isConsent(code, desc string) bool {
	switch code {
	case "invalid_scope", "consent_required", "interaction_required":
		return true
	}
	for _, c := range []string{"AADSTS65001", "AADSTS65004", "AADSTS70011", "AADSTS650052"} {
		if strings.Contains(desc, c) {
			return true
		}
	}
	return false
}

// scrub removes every non-empty secret from s.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// scrubErr keeps err when its text holds no secret, else replaces it.
func scrubErr(err error, secrets []string) error {
	msg := err.Error()
	if clean := scrub(msg, secrets); clean != msg {
		return errors.New(clean)
	}
	return err
}

// shorten keeps the first line of an endpoint's description, at most 200
// bytes (Microsoft appends trace and correlation IDs on later lines).
func shorten(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
