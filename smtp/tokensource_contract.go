package smtp

import "context"

// TokenSource supplies OAuth 2.0 access tokens (issue-12 contract).
//
// This file only lets the DKIM branch compile with the contract's account
// fields; the i12-saslwire branch defines TokenSource in smtp/oauth2.go.
// Delete this file when merging that branch.
type TokenSource interface {
	// Token returns an access token that is valid now.
	Token(ctx context.Context) (string, error)
	// Refresh is called after the server refused the token rejected.
	Refresh(ctx context.Context, rejected string) (string, error)
}
