package devserver

import (
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// TokenRefusal is how [Config.OAuth2] refuses a bearer token.
type TokenRefusal struct {
	// Status and Scope go into the JSON error challenge that XOAUTH2 and
	// OAUTHBEARER (RFC 7628 §3.2.2) send before the final reply. An empty
	// Status sends no challenge: the final reply comes at once, as
	// Microsoft 365 answers XOAUTH2.
	Status, Scope string
	// Reply is the final reply; nil means 535 5.7.8. A 454 4.7.0 models a
	// temporary failure of the server's token check.
	Reply *Reject
}

var errTokenRefused = &gosmtp.SMTPError{
	Code:         535,
	EnhancedCode: gosmtp.EnhancedCode{5, 7, 8},
	Message:      "Username and Password not accepted",
}

func (r *TokenRefusal) final() *gosmtp.SMTPError {
	if r.Reply == nil {
		return errTokenRefused
	}
	return r.Reply.smtpError()
}

func (r *TokenRefusal) challenge() []byte {
	// Built by hand so the field order is the one Gmail sends.
	q := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	s := `{"status":` + q(r.Status) + `,"schemes":"bearer"`
	if r.Scope != "" {
		s += `,"scope":` + q(r.Scope)
	}
	return []byte(s + "}")
}

// checkToken runs the OAuth2 validator and records the user on success.
func (ss *session) checkToken(user, token string) *TokenRefusal {
	if r := ss.s.cfg.OAuth2(user, token); r != nil {
		ss.authFailed(user, "bearer token refused")
		return r
	}
	ss.authUser, ss.authed = user, true
	return nil
}

// xoauth2Server is the server side of XOAUTH2 as Gmail speaks it: the
// initial response "user=U\x01auth=Bearer T\x01\x01"; a refusal is a 334
// JSON challenge, an empty client response, then the final reply.
type xoauth2Server struct {
	ss      *session
	refusal *TokenRefusal
	done    bool
}

// Next implements sasl.Server.
func (x *xoauth2Server) Next(response []byte) ([]byte, bool, error) {
	if x.refusal != nil {
		if len(response) != 0 {
			return nil, true, errors.New("XOAUTH2: expected an empty response to the error")
		}
		return nil, true, x.refusal.final()
	}
	if x.done {
		return nil, true, sasl.ErrUnexpectedClientResponse
	}
	if response == nil {
		return []byte{}, false, nil // ask for the initial response
	}
	x.done = true
	var user, token string
	for _, kv := range strings.Split(string(response), "\x01") {
		switch k, v, _ := strings.Cut(kv, "="); k {
		case "user":
			user = v
		case "auth":
			if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
				token = v[7:]
			}
		}
	}
	if user == "" || token == "" || !strings.HasSuffix(string(response), "\x01\x01") {
		return nil, true, &gosmtp.SMTPError{Code: 501, EnhancedCode: gosmtp.EnhancedCode{5, 5, 2}, Message: "Malformed XOAUTH2 response"}
	}
	r := x.ss.checkToken(user, token)
	switch {
	case r == nil:
		return nil, true, nil
	case r.Status == "":
		return nil, true, r.final()
	}
	x.refusal = r
	return r.challenge(), false, nil
}

// oauthBearerServer wraps go-sasl's OAUTHBEARER server so that a refusal
// ends with the TokenRefusal's reply (go-smtp would send 454 for the
// mechanism's own error) and a malformed dummy response cannot reach
// go-sasl's check of it.
type oauthBearerServer struct {
	inner   sasl.Server
	refusal *TokenRefusal
}

func (ss *session) newOAuthBearerServer() *oauthBearerServer {
	o := &oauthBearerServer{}
	o.inner = sasl.NewOAuthBearerServer(func(opts sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
		if o.refusal = ss.checkToken(opts.Username, opts.Token); o.refusal == nil {
			return nil
		}
		return &sasl.OAuthBearerError{Status: o.refusal.Status, Schemes: "bearer", Scope: o.refusal.Scope}
	})
	return o
}

// Next implements sasl.Server.
func (o *oauthBearerServer) Next(response []byte) ([]byte, bool, error) {
	if o.refusal != nil {
		if len(response) != 1 || response[0] != 0x01 {
			return nil, true, errors.New("OAUTHBEARER: expected %x01 in answer to the error")
		}
		return nil, true, o.refusal.final()
	}
	challenge, done, err := o.inner.Next(response)
	if o.refusal != nil && o.refusal.Status == "" {
		return nil, true, o.refusal.final()
	}
	var be *sasl.OAuthBearerError
	if errors.As(err, &be) {
		err = errTokenRefused
	}
	return challenge, done, err
}
