package luabind

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

const oauthUser = "reports@example.org"

// startTokenServer runs a dev server that takes only the token valid for
// oauthUser over XOAUTH2 and OAUTHBEARER, refusing others as Gmail does.
func startTokenServer(t *testing.T, valid string) *devserver.Server {
	t.Helper()
	var mu sync.Mutex
	return devtest.Start(t, devserver.Config{OAuth2: func(user, token string) *devserver.TokenRefusal {
		mu.Lock()
		defer mu.Unlock()
		if user == oauthUser && token == valid {
			return nil
		}
		return &devserver.TokenRefusal{Status: "401", Scope: "https://mail.google.com/"}
	}})
}

// newOAuthState builds a state whose account "m365" logs in to srv with
// tokens from ts, logging into logs.
func newOAuthState(t *testing.T, srv *devserver.Server, ts smtp.TokenSource, mech string, dry *DryRun, logs *bytes.Buffer) *lua.LState {
	t.Helper()
	acc := Account{Host: "127.0.0.1", Port: port(t, srv.Addr()), RootCAs: srv.CertPool(), TLS: "starttls",
		Username: oauthUser, OAuth2: ts, OAuth2Mechanism: mech}
	L := NewState(Options{
		ScriptsDir: "testdata",
		Modules: map[string]lua.LGFunction{
			"smtp": NewSMTPModule(SMTPOptions{Accounts: map[string]Account{"m365": acc}, DefaultAccount: "m365",
				Logger: slog.New(slog.NewTextHandler(logs, nil)), DryRun: dry}),
		},
	})
	t.Cleanup(func() { CloseResources(L); L.Close() })
	return L
}

func TestLoginOAuth2Account(t *testing.T) {
	const advice = "invalid_grant: the refresh token was revoked; run `mailbot oauth login m365`"
	tests := []struct {
		name       string
		mech       string
		refreshErr error
		script     string
		refreshes  int
		delivered  bool
		wantLog    string
	}{
		{name: "XOAUTH2 refreshed after a refusal", mech: "", refreshes: 1, delivered: true, wantLog: "C: AUTH XOAUTH2 <redacted>", script: `
			local c = smtp.connect{ debug = true }
			assert(c:login() == 235)
			c:sendmail("reports@example.org", "ops@example.org", "Subject: oauth\r\n\r\nhi\r\n")
			c:quit()`},
		{name: "OAUTHBEARER account", mech: "OAUTHBEARER", refreshes: 1, delivered: true, wantLog: "C: AUTH OAUTHBEARER <redacted>", script: `
			local c = smtp.connect{ account = "m365", debug = true }
			assert(c:login() == 235)
			c:sendmail("reports@example.org", "ops@example.org", "Subject: oauth\r\n\r\nhi\r\n")
			c:quit()`},
		{name: "mechanism chosen in the call", mech: "XOAUTH2", refreshes: 1, delivered: true, wantLog: "C: AUTH OAUTHBEARER <redacted>", script: `
			local c = smtp.connect{ debug = true }
			assert(c:login(nil, nil, { mechanism = "OAUTHBEARER" }) == 235)
			c:sendmail("reports@example.org", "ops@example.org", "Subject: oauth\r\n\r\nhi\r\n")
			c:quit()`},
		{name: "password mechanism refused", script: `
			local c = smtp.connect()
			local ok, err = pcall(c.login, c, nil, nil, { mechanism = "PLAIN" })
			assert(not ok and tostring(err):find("mechanism must be XOAUTH2 or OAUTHBEARER", 1, true), tostring(err))`},
		{name: "refresh fails", refreshErr: errors.New(advice), script: `
			local c = smtp.connect{ debug = true }
			local ok, err = pcall(c.login, c)
			assert(not ok and err.kind == "SMTPAuthenticationError", tostring(err))
			assert(err.oauth2.step == "refresh" and err.oauth2.status == "401", err.oauth2.step)
			assert(err.oauth2.scope == "https://mail.google.com/")
			assert(tostring(err):find("mailbot oauth login m365", 1, true), tostring(err))
			assert(err.message:find("refreshing it failed", 1, true), err.message)
			assert(c:noop() == 250)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startTokenServer(t, "tok-2")
			ts := smtptest.NewTokenSource("tok-1", "tok-2", "tok-3")
			ts.SetErrors(nil, tc.refreshErr)
			var logs bytes.Buffer
			L := newOAuthState(t, srv, ts, tc.mech, nil, &logs)
			if err := L.DoString(`local smtp = require("smtp")` + tc.script); err != nil {
				t.Fatalf("script: %v", DescribeError(err))
			}
			if got := ts.Refreshes(); got != tc.refreshes {
				t.Errorf("refreshes = %d, want %d", got, tc.refreshes)
			}
			msgs := srv.Messages()
			if tc.delivered && (len(msgs) != 1 || msgs[0].AuthUser != oauthUser) {
				t.Fatalf("messages %+v, want one sent as %s", msgs, oauthUser)
			}
			for _, tok := range []string{"tok-1", "tok-2", base64.StdEncoding.EncodeToString([]byte("tok-1"))[:6]} {
				if strings.Contains(logs.String(), tok) {
					t.Errorf("the log shows %q:\n%s", tok, logs.String())
				}
			}
			if tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("the transcript log lacks %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

// TestLoginTokenFromScript covers scripts that fetch a token themselves:
// c:login(user, token, { mechanism = ... }) for both mechanisms, and the
// server's JSON error in the raised table when the token is refused.
func TestLoginTokenFromScript(t *testing.T) {
	srv := startTokenServer(t, "script-token")
	var logs bytes.Buffer
	L := newOAuthState(t, srv, nil, "", nil, &logs) // an account without OAuth2
	err := L.DoString(`
		local smtp = require("smtp")
		for _, mech in ipairs{ "XOAUTH2", "OAUTHBEARER" } do
			local c = smtp.connect()
			local ok, err = pcall(c.login, c, "reports@example.org", "stale-token", { mechanism = mech })
			assert(not ok and err.kind == "SMTPAuthenticationError", mech .. ": " .. tostring(err))
			assert(err.code == 535 and err.oauth2.status == "401" and err.oauth2.step == nil, mech)
			assert(c:login("reports@example.org", "script-token", { mechanism = mech }) == 235, mech)
			c:quit()
		end`)
	if err != nil {
		t.Fatalf("script: %v", DescribeError(err))
	}
}

// TestLoginOAuth2DryRun checks that a dry run never asks the token source
// (which would reach the identity provider) and logs in to the capture
// server instead.
func TestLoginOAuth2DryRun(t *testing.T) {
	capture := devtest.Start(t, devserver.Config{})
	real := startTokenServer(t, "tok-1")
	ts := smtptest.NewTokenSource("tok-1")
	ts.SetErrors(errors.New("must not be called"), errors.New("must not be called"))
	var logs bytes.Buffer
	L := newOAuthState(t, real, ts, "", &DryRun{Addr: capture.Addr(), RootCAs: capture.CertPool()}, &logs)
	if err := L.DoString(`local smtp = require("smtp")
		local c = smtp.connect()
		assert(c:login() == 235)
		c:sendmail("reports@example.org", "ops@example.org", "Subject: dry\r\n\r\nhi\r\n")
		c:quit()`); err != nil {
		t.Fatalf("script: %v", DescribeError(err))
	}
	if ts.Calls() != 0 {
		t.Errorf("the token source was asked %d times in a dry run", ts.Calls())
	}
	if n := len(capture.Messages()); n != 1 {
		t.Errorf("capture server got %d messages, want 1", n)
	}
	acc := Account{Host: "smtp.example.org", Username: oauthUser, OAuth2: ts}
	oa, err := acc.OutboxAccount(&DryRun{Addr: capture.Addr()})
	if err != nil || oa.OAuth2 != nil || oa.Password == nil {
		t.Errorf("dry-run outbox account: OAuth2 %v, password %v, err %v; want a placeholder password and no token source", oa.OAuth2, oa.Password != nil, err)
	}
	if oa, _ := acc.OutboxAccount(nil); oa.OAuth2 != ts {
		t.Error("OutboxAccount dropped the token source")
	}
}
