package devserver_test

import (
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/devserver/devtest"
)

// bearerAuth is a net/smtp client for XOAUTH2 and OAUTHBEARER that answers
// the server's error challenge with answer, so tests can send a wrong one.
type bearerAuth struct {
	mech, ir, answer string
	challenge        string // the error challenge received
}

func (a *bearerAuth) Start(*smtp.ServerInfo) (string, []byte, error) {
	return a.mech, []byte(a.ir), nil
}

func (a *bearerAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	a.challenge = string(fromServer)
	return []byte(a.answer), nil
}

func TestOAuth2Mechanisms(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{AllowInsecureAuth: true, OAuth2: func(user, token string) *devserver.TokenRefusal {
		switch {
		case user == "bot@example.org" && token == "good":
			return nil
		case token == "busy":
			return &devserver.TokenRefusal{Reply: &devserver.Reject{Code: 454, Enhanced: [3]int{4, 7, 0}, Message: "try later"}}
		}
		return &devserver.TokenRefusal{Status: "invalid_token", Scope: "mail"}
	}})
	const (
		xo = "user=bot@example.org\x01auth=Bearer %s\x01\x01"
		ob = "n,a=bot@example.org,\x01host=localhost\x01port=25\x01auth=Bearer %s\x01\x01"
	)
	tests := []struct {
		name, mech, ir, answer string
		code                   int // 0: accepted
		challenge              string
	}{
		{"XOAUTH2 accepted", "XOAUTH2", strings.Replace(xo, "%s", "good", 1), "", 0, ""},
		{"XOAUTH2 refused", "XOAUTH2", strings.Replace(xo, "%s", "bad", 1), "", 535, `{"status":"invalid_token","schemes":"bearer","scope":"mail"}`},
		{"XOAUTH2 wrong answer to the error", "XOAUTH2", strings.Replace(xo, "%s", "bad", 1), "x", 454, `{"status":"invalid_token","schemes":"bearer","scope":"mail"}`},
		{"XOAUTH2 malformed", "XOAUTH2", "user=bot@example.org", "", 501, ""},
		{"XOAUTH2 temporary", "XOAUTH2", strings.Replace(xo, "%s", "busy", 1), "", 454, ""},
		{"OAUTHBEARER accepted", "OAUTHBEARER", strings.Replace(ob, "%s", "good", 1), "", 0, ""},
		{"OAUTHBEARER refused", "OAUTHBEARER", strings.Replace(ob, "%s", "bad", 1), "\x01", 535, `"status":"invalid_token"`},
		// go-sasl's own check of the dummy response would index an empty
		// one; the wrapper refuses it first.
		{"OAUTHBEARER empty answer to the error", "OAUTHBEARER", strings.Replace(ob, "%s", "bad", 1), "", 454, `"status":"invalid_token"`},
		{"OAUTHBEARER temporary", "OAUTHBEARER", strings.Replace(ob, "%s", "busy", 1), "\x01", 454, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := smtp.Dial(srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Hello("client.test"); err != nil {
				t.Fatal(err)
			}
			if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "XOAUTH2 OAUTHBEARER") {
				t.Fatalf("AUTH %q, want XOAUTH2 and OAUTHBEARER offered", mechs)
			}
			a := &bearerAuth{mech: tc.mech, ir: tc.ir, answer: tc.answer}
			err = c.Auth(a)
			code := 0
			if te, ok := err.(*textproto.Error); ok {
				code = te.Code
			} else if err != nil {
				t.Fatalf("Auth: %v", err)
			}
			if code != tc.code || !strings.Contains(a.challenge, tc.challenge) {
				t.Errorf("Auth = %v (challenge %q), want code %d and a challenge with %q", err, a.challenge, tc.code, tc.challenge)
			}
		})
	}
}

func TestOAuth2OffByDefault(t *testing.T) {
	srv := devtest.Start(t, devserver.Config{AllowInsecureAuth: true})
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if _, mechs := c.Extension("AUTH"); strings.Contains(mechs, "XOAUTH2") || strings.Contains(mechs, "OAUTHBEARER") {
		t.Errorf("AUTH %q offers OAuth2 without a validator", mechs)
	}
	err = c.Auth(&bearerAuth{mech: "XOAUTH2", ir: "user=u\x01auth=Bearer t\x01\x01"})
	if te, ok := err.(*textproto.Error); !ok || te.Code/100 != 5 && te.Code != 454 {
		t.Errorf("XOAUTH2 without a validator = %v, want a refusal", err)
	}
}
