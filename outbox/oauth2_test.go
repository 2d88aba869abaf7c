package outbox

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

const oauthUser = "bot@mailbot.test"

// oauthAccount returns an account logging in to srv with tokens from ts.
func oauthAccount(srv *devserver.Server, ts smtp.TokenSource, mech string) map[string]Account {
	return map[string]Account{"default": {
		Dialer: &smtp.Dialer{TLS: smtp.TLSNone, LocalName: "localhost", Timeout: 5 * time.Second,
			AllowInsecureAuth: true},
		Addr:            srv.Addr(),
		Username:        oauthUser,
		OAuth2:          ts,
		OAuth2Mechanism: mech,
	}}
}

// tokenServer starts a server that demands AUTH with the token valid.
func tokenServer(t *testing.T, valid string, hooks devserver.Hooks) *devserver.Server {
	return devtest.Start(t, devserver.Config{
		AllowInsecureAuth: true,
		RequireAuth:       true,
		Hooks:             hooks,
		OAuth2: func(user, token string) *devserver.TokenRefusal {
			if user == oauthUser && token == valid {
				return nil
			}
			return &devserver.TokenRefusal{Status: "401", Scope: "https://mail.google.com/"}
		},
	})
}

// TestOAuth2ParallelWorkers runs four workers that each open a session at
// the same time with an expired token: every one is refused, yet the
// shared token source refreshes once, and all deliver.
func TestOAuth2ParallelWorkers(t *testing.T) {
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Now = time.Now })
			const workers = 4
			// MAIL waits until all four sessions have authenticated, so
			// four logins are in flight together.
			var mu sync.Mutex
			arrived, all := 0, make(chan struct{})
			srv := tokenServer(t, "tok-2", devserver.Hooks{Mail: func(string) *devserver.Reject {
				mu.Lock()
				arrived++
				if arrived == workers {
					close(all)
				}
				mu.Unlock()
				select {
				case <-all:
					return nil
				case <-time.After(20 * time.Second):
					return &devserver.Reject{Code: 451, Message: "the other sessions never came"}
				}
			}})
			for i := range workers {
				e.enqueue(t, i)
			}
			ts := smtptest.NewTokenSource("tok-1", "tok-2", "tok-3")
			accts := oauthAccount(srv, ts, mech)
			a := accts["default"]
			a.Concurrency, a.RatePerSecond = workers, 1000 // one message per session
			accts["default"] = a
			if rep := e.deliverOnce(t, accts); rep != (Report{Sent: workers}) {
				t.Fatalf("report %+v, want %d sent", rep, workers)
			}
			if n := ts.Refreshes(); n != 1 {
				t.Errorf("%d refreshes for %d sessions refused with the same token, want 1", n, workers)
			}
			for _, m := range srv.Messages() {
				if m.AuthUser != oauthUser {
					t.Errorf("message delivered with AuthUser %q", m.AuthUser)
				}
			}
			for _, rec := range e.logs.attempts() {
				if rec["auth_user"].String() != oauthUser {
					t.Errorf("attempt logged with auth_user %q", rec["auth_user"])
				}
			}
		})
	}
}

// TestOAuth2RefreshFailureDefers checks that a token that cannot be
// refreshed defers the message (an operator can fix the account) with the
// token source's advice as the last error, and never bounces it.
func TestOAuth2RefreshFailureDefers(t *testing.T) {
	const advice = "invalid_grant: the refresh token was revoked; run `mailbot oauth login default`"
	tests := []struct {
		name             string
		tokenErr, refErr error
		want             []string
	}{
		{"refresh fails", nil, errors.New(advice), []string{"refreshing it failed", advice, `account "default"`}},
		{"identity provider down", nil, errors.New("token endpoint: 503 Service Unavailable"), []string{"refreshing it failed", "503 Service Unavailable"}},
		{"no token", errors.New("no refresh token cached; run `mailbot oauth login default`"), nil, []string{"getting an access token", "mailbot oauth login default"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			srv := tokenServer(t, "tok-2", devserver.Hooks{})
			id := e.enqueue(t, 1)
			ts := smtptest.NewTokenSource("tok-1", "tok-2")
			ts.SetErrors(tc.tokenErr, tc.refErr)
			if rep := e.deliverOnce(t, oauthAccount(srv, ts, "")); rep != (Report{Deferred: 1}) {
				t.Fatalf("report %+v, want 1 deferred", rep)
			}
			it, _, err := e.ob.Get(id)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if it.State != StateQueued {
				t.Fatalf("state %v, want queued", it.State)
			}
			for _, w := range tc.want {
				if !strings.Contains(it.LastError, w) {
					t.Errorf("last error %q lacks %q", it.LastError, w)
				}
			}
			logs := fmt.Sprint(e.logs.attempts())
			if strings.Contains(logs+it.LastError, "tok-") {
				t.Errorf("a token appears in the logs or the last error: %s / %s", logs, it.LastError)
			}
		})
	}
}
