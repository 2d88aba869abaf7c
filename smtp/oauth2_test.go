package smtp_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
	"github.com/mailbot/mailbot/smtp"
	"github.com/mailbot/mailbot/smtp/smtptest"
)

// oauthServer is a devserver that takes, for user itFrom, only the token
// it currently holds as valid; refusal decides how it refuses others.
type oauthServer struct {
	*devserver.Server
	mu      sync.Mutex
	valid   string
	refusal devserver.TokenRefusal
	seen    []string // tokens presented, in order
}

func startOAuthServer(t *testing.T, valid string, refusal devserver.TokenRefusal) *oauthServer {
	t.Helper()
	s := &oauthServer{valid: valid, refusal: refusal}
	s.Server = devtest.Start(t, devserver.Config{OAuth2: s.check})
	return s
}

func (s *oauthServer) check(user, token string) *devserver.TokenRefusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, token)
	if user == itFrom && token == s.valid {
		return nil
	}
	r := s.refusal
	return &r
}

func (s *oauthServer) presented() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

var googleRefusal = devserver.TokenRefusal{Status: "401", Scope: "https://mail.google.com/"}

func TestLoginOAuth2(t *testing.T) {
	const advice = "invalid_grant: the refresh token was revoked; run `mailbot oauth login m365`"
	tests := []struct {
		name       string
		valid      string // the token the server takes
		refusal    devserver.TokenRefusal
		tokenErr   error
		refreshErr error
		wantErr    []string // substrings of the error; nil means success
		step       string
		temporary  bool
		presented  []string
		refreshes  int
	}{
		{name: "first use", valid: "tok-1", presented: []string{"tok-1"}},
		{name: "refused then refreshed", valid: "tok-2", refusal: googleRefusal,
			presented: []string{"tok-1", "tok-2"}, refreshes: 1},
		{name: "refused without a challenge (Microsoft)", valid: "tok-2",
			refusal:   devserver.TokenRefusal{Reply: &devserver.Reject{Code: 535, Enhanced: [3]int{5, 7, 3}, Message: "Authentication unsuccessful"}},
			presented: []string{"tok-1", "tok-2"}, refreshes: 1},
		{name: "refreshed token refused too", valid: "never", refusal: googleRefusal,
			wantErr: []string{"refreshed access token too", "535 5.7.8", `status "401"`, "consent missing for scope https://mail.google.com/"},
			step:    "retry", presented: []string{"tok-1", "tok-2"}, refreshes: 1},
		{name: "insufficient scope", valid: "never", refusal: devserver.TokenRefusal{Status: "insufficient_scope"},
			wantErr: []string{"refreshed access token too", "consent missing for a scope"},
			step:    "retry", presented: []string{"tok-1", "tok-2"}, refreshes: 1},
		{name: "refresh fails", valid: "tok-2", refusal: googleRefusal, refreshErr: errors.New(advice),
			wantErr: []string{"refused the access token", "535 5.7.8", "refreshing it failed", advice},
			step:    "refresh", presented: []string{"tok-1"}},
		{name: "no token at all", valid: "tok-1", tokenErr: errors.New("no refresh token cached; run `mailbot oauth login m365`"),
			wantErr: []string{"getting an access token", "run `mailbot oauth login m365`"}, step: "token"},
		{name: "temporary failure is not a refusal", valid: "tok-2",
			refusal: devserver.TokenRefusal{Reply: &devserver.Reject{Code: 454, Enhanced: [3]int{4, 7, 0}, Message: "Temporary authentication failure"}},
			wantErr: []string{"454 4.7.0"}, temporary: true, presented: []string{"tok-1"}},
	}
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		for _, tc := range tests {
			t.Run(mech+"/"+tc.name, func(t *testing.T) {
				ctx := itContext(t)
				srv := startOAuthServer(t, tc.valid, tc.refusal)
				ts := smtptest.NewTokenSource("tok-1", "tok-2", "tok-3")
				ts.SetErrors(tc.tokenErr, tc.refreshErr)
				var transcript bytes.Buffer
				d := itDialer(srv.Server)
				d.Debug = &transcript
				c, err := d.Dial(ctx, srv.Addr())
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				err = c.LoginOAuth2(ctx, itFrom, ts, mech)
				if got := srv.presented(); strings.Join(got, ",") != strings.Join(tc.presented, ",") {
					t.Errorf("server saw tokens %q, want %q", got, tc.presented)
				}
				if got := ts.Refreshes(); got != tc.refreshes {
					t.Errorf("refreshes = %d, want %d", got, tc.refreshes)
				}
				for _, tok := range []string{"tok-1", "tok-2", base64.StdEncoding.EncodeToString([]byte("tok-1"))} {
					if strings.Contains(transcript.String(), tok) || err != nil && strings.Contains(err.Error(), tok) {
						t.Errorf("token %q appears in the transcript or error:\n%s\n%v", tok, transcript.String(), err)
					}
				}
				if tc.wantErr == nil {
					if err != nil {
						t.Fatalf("LoginOAuth2: %v", err)
					}
					if _, err := c.SendMail(ctx, itFrom, []string{"ops@example.org"}, []byte("Subject: x\r\n\r\nhi\r\n"), nil); err != nil {
						t.Fatalf("SendMail: %v", err)
					}
					if m := itWait(t, ctx, srv.Server, 1); m.AuthUser != itFrom {
						t.Errorf("AuthUser = %q, want %q", m.AuthUser, itFrom)
					}
					return
				}
				var ae *smtp.AuthError
				if !errors.As(err, &ae) {
					t.Fatalf("LoginOAuth2 = %v (%T), want *smtp.AuthError", err, err)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q lacks %q", err, want)
					}
				}
				if ae.Step != tc.step || ae.Temporary() != tc.temporary {
					t.Errorf("Step, Temporary = %q, %v; want %q, %v", ae.Step, ae.Temporary(), tc.step, tc.temporary)
				}
				if tc.refreshErr != nil && !errors.Is(err, tc.refreshErr) {
					t.Errorf("the token source's error is not wrapped: %v", err)
				}
				if tc.refusal.Status != "" && (ae.OAuth2 == nil || ae.OAuth2.Status != tc.refusal.Status) {
					t.Errorf("OAuth2 = %+v, want status %q from the server's JSON", ae.OAuth2, tc.refusal.Status)
				}
				// A refused login leaves the session usable.
				if _, err := c.Noop(ctx); err != nil {
					t.Errorf("NOOP after the failed login: %v", err)
				}
			})
		}
	}
}

// TestLoginOAuth2Transcript checks that the debug transcript shows the
// exchange with every client AUTH line redacted, the server's JSON error
// as it came, and neither token nor base64 of anything holding it.
func TestLoginOAuth2Transcript(t *testing.T) {
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			ctx := itContext(t)
			srv := startOAuthServer(t, "ya29.second-token", googleRefusal)
			ts := smtptest.NewTokenSource("ya29.first-token", "ya29.second-token")
			var transcript bytes.Buffer
			d := itDialer(srv.Server)
			d.Debug = &transcript
			c, err := d.Dial(ctx, srv.Addr())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if err := c.LoginOAuth2(ctx, itFrom, ts, mech); err != nil {
				t.Fatalf("LoginOAuth2: %v", err)
			}
			got := transcript.String()
			for _, want := range []string{"C: AUTH " + mech + " <redacted>\n", "S: 334 eyJ", "C: <redacted>\n", "S: 535 5.7.8", "S: 235 "} {
				if !strings.Contains(got, want) {
					t.Errorf("transcript lacks %q:\n%s", want, got)
				}
			}
			for _, secret := range []string{"first-token", "second-token", "Bearer"} {
				if strings.Contains(got, secret) {
					t.Errorf("transcript shows %q:\n%s", secret, got)
				}
			}
			for _, line := range strings.Split(got, "\n") {
				if !strings.HasPrefix(line, "C: ") {
					continue
				}
				for _, word := range strings.Fields(line[3:]) {
					if b, err := base64.StdEncoding.DecodeString(word); err == nil && bytes.Contains(b, []byte("token")) {
						t.Errorf("client line %q carries a token in base64", line)
					}
				}
			}
		})
	}
}

func TestLoginOAuth2NeedsTLS(t *testing.T) {
	ctx := itContext(t)
	s := &oauthServer{valid: "tok-1"}
	s.Server = devtest.Start(t, devserver.Config{OAuth2: s.check, AllowInsecureAuth: true})
	ts := smtptest.NewTokenSource("tok-1")
	d := itDialer(s.Server)
	d.TLS = smtp.TLSNone
	c, err := d.Dial(ctx, s.Addr())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	err = c.LoginOAuth2(ctx, itFrom, ts, "")
	var ns *smtp.NotSupportedError
	if !errors.As(err, &ns) || !strings.Contains(err.Error(), "allow_insecure_auth") {
		t.Fatalf("LoginOAuth2 over plain TCP = %v, want *NotSupportedError about allow_insecure_auth", err)
	}
	if ts.Calls() != 0 || len(s.presented()) != 0 {
		t.Errorf("a token was fetched (%d) or sent (%q) for a connection that may not carry it", ts.Calls(), s.presented())
	}
	c.AllowInsecureAuth = true
	if err := c.LoginOAuth2(ctx, itFrom, ts, ""); err != nil {
		t.Fatalf("LoginOAuth2 with AllowInsecureAuth: %v", err)
	}
}

func TestLoginOAuth2Mechanisms(t *testing.T) {
	ctx := itContext(t)
	srv := itServer(t, devserver.Config{}) // PLAIN and LOGIN only
	ts := smtptest.NewTokenSource("tok-1")
	for _, mech := range []string{"", "XOAUTH2", "OAUTHBEARER"} {
		c, err := itDialer(srv).Dial(ctx, srv.Addr())
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		err = c.LoginOAuth2(ctx, itFrom, ts, mech)
		c.Close()
		var ns *smtp.NotSupportedError
		if !errors.As(err, &ns) || !strings.Contains(err.Error(), "PLAIN LOGIN") {
			t.Errorf("LoginOAuth2(%q) on a server without OAuth2 = %v, want *NotSupportedError listing what it offers", mech, err)
		}
	}
	c, err := itDialer(srv).Dial(ctx, srv.Addr())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	if err := c.LoginOAuth2(ctx, itFrom, ts, "PLAIN"); err == nil || !strings.Contains(err.Error(), "unknown mechanism") {
		t.Errorf("LoginOAuth2(PLAIN) = %v, want an unknown-mechanism error", err)
	}
	if ts.Calls() != 0 {
		t.Errorf("Token called %d times though no login could use it", ts.Calls())
	}
}
