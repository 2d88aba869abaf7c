package smtp

import "context"

// TokenSource supplies OAuth2 access tokens for LoginOAuth2. Token returns
// a token valid for at least the next minute; Refresh is called when the
// server refused the token rejected and returns a fresh one, or the one
// another caller has already refreshed to.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
	Refresh(ctx context.Context, rejected string) (string, error)
}
