package smtptest

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// TokenSource is a fake OAuth 2.0 token source (it satisfies
// smtp.TokenSource) for tests of LoginOAuth2 and the paths built on it.
// It hands out its tokens in order: the first until a refresh, then the
// next. Like a real one it is safe for concurrent use and refreshes at most
// once per refused token: a Refresh naming a token that is no longer the
// current one returns the current token, as when another session refreshed
// first.
type TokenSource struct {
	mu         sync.Mutex
	tokens     []string
	cur        int
	tokenErr   error
	refreshErr error
	refreshes  int
	calls      int
}

// NewTokenSource returns a source handing out tokens in order.
func NewTokenSource(tokens ...string) *TokenSource {
	return &TokenSource{tokens: tokens}
}

// SetErrors makes Token fail with tokenErr and Refresh with refreshErr
// (nil for success).
func (s *TokenSource) SetErrors(tokenErr, refreshErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenErr, s.refreshErr = tokenErr, refreshErr
}

// Token returns the current token.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.tokenErr != nil {
		return "", s.tokenErr
	}
	if len(s.tokens) == 0 {
		return "", errors.New("smtptest: token source has no tokens")
	}
	return s.tokens[s.cur], nil
}

// Refresh moves on to the next token, unless rejected is already stale.
func (s *TokenSource) Refresh(ctx context.Context, rejected string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refreshErr != nil {
		return "", s.refreshErr
	}
	if len(s.tokens) == 0 {
		return "", errors.New("smtptest: token source has no tokens")
	}
	if rejected != s.tokens[s.cur] {
		return s.tokens[s.cur], nil
	}
	if s.cur+1 >= len(s.tokens) {
		return "", fmt.Errorf("smtptest: token source has no token left after %d refreshes", s.refreshes)
	}
	s.cur++
	s.refreshes++
	return s.tokens[s.cur], nil
}

// Refreshes returns how many refreshes moved to a new token.
func (s *TokenSource) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshes
}

// Calls returns how many times Token was called.
func (s *TokenSource) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}
