package smtp

import (
	"errors"
	"strings"
	"testing"
)

// TestScramSHA256RFC7677 runs the client side of the exchange in RFC 7677
// §3 with its fixed nonce and checks every message byte for byte, and that
// a server signature that does not match is refused.
func TestScramSHA256RFC7677(t *testing.T) {
	const (
		nonce       = "rOprNGfwEbeRWgbNEkqO"
		serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
		clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
		serverFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
	)
	a := ScramSHA256Auth("user", "pencil").(*scramAuth)
	first, err := a.Start()
	if err != nil || !strings.HasPrefix(string(first), "n,,n=user,r=") {
		t.Fatalf("client-first %q, %v", first, err)
	}
	// Replay the RFC's nonce instead of the random one.
	a.clientNonce, a.clientFirstBare = nonce, "n=user,r="+nonce
	got, err := a.Next([]byte(serverFirst))
	if err != nil || string(got) != clientFinal {
		t.Fatalf("client-final:\n got %q, %v\nwant %q", got, err, clientFinal)
	}
	if _, err := a.Next([]byte(serverFinal)); err != nil {
		t.Fatalf("valid server signature refused: %v", err)
	}

	b := ScramSHA256Auth("user", "pencil").(*scramAuth)
	b.Start()
	b.clientNonce, b.clientFirstBare = nonce, "n=user,r="+nonce
	b.Next([]byte(serverFirst))
	if _, err := b.Next([]byte("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")); err == nil || !strings.Contains(err.Error(), "server signature") {
		t.Fatalf("impostor server signature accepted: %v", err)
	}
	c := ScramSHA256Auth("user", "pencil").(*scramAuth)
	c.Start()
	if _, err := c.Next([]byte("r=someone-elses-nonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")); err == nil {
		t.Fatal("a server nonce that does not extend the client's was accepted")
	}
}

// TestScramSASLprep runs the RFC 7677 exchange with credentials that
// SASLprep (RFC 4013) maps to the RFC's "user" and "pencil" (characters
// mapped to nothing, compatibility forms NFKC folds). The proof must be the
// RFC's byte for byte, which it is only if the client prepared both.
func TestScramSASLprep(t *testing.T) {
	const (
		nonce       = "rOprNGfwEbeRWgbNEkqO"
		serverFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
		clientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	)
	tests := []struct{ name, user, pass string }{
		{"soft hyphens", "us\u00ader", "pen\u00adcil"},
		{"fullwidth letters (NFKC)", "\uff55\uff53\uff45\uff52", "\uff50\uff45\uff4e\uff43\uff49\uff4c"},
		{"zero-width joiner and variation selector", "u\u200dser", "pencil\ufe0f"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := ScramSHA256Auth(tc.user, tc.pass).(*scramAuth)
			first, err := a.Start()
			if err != nil || !strings.HasPrefix(string(first), "n,,n=user,r=") {
				t.Fatalf("client-first %q, %v: want the prepared user name", first, err)
			}
			a.clientNonce, a.clientFirstBare = nonce, "n=user,r="+nonce
			got, err := a.Next([]byte(serverFirst))
			if err != nil || string(got) != clientFinal {
				t.Fatalf("client-final:\n got %q, %v\nwant %q", got, err, clientFinal)
			}
		})
	}

	// Prohibited: a control character in the password, an unassigned code
	// point (U+0221 is unassigned in Unicode 3.2) in the password; the user
	// name is a query string, where unassigned code points are allowed.
	for _, tc := range []struct {
		user, pass, field string
	}{
		{"user", "pen\acil", "password"},
		{"user", "pen\u0221cil", "password"},
		{"us\u0000er", "pencil", "user name"},
	} {
		_, err := ScramSHA256Auth(tc.user, tc.pass).Start()
		var pe *SASLprepError
		if !errors.As(err, &pe) || pe.Field != tc.field {
			t.Errorf("Start(%q, %q) = %v, want a *SASLprepError for the %s", tc.user, tc.pass, err, tc.field)
		}
		if err != nil && strings.Contains(err.Error(), "cil") {
			t.Errorf("the error reveals the password: %v", err)
		}
	}
	if first, err := ScramSHA256Auth("d\u0221", "pencil").Start(); err != nil || !strings.HasPrefix(string(first), "n,,n=d\u0221,") {
		t.Errorf("user name with an unassigned code point: %q, %v", first, err)
	}
}

// TestOAuthBearerMessages checks the client messages of RFC 7628 §3.1
// byte for byte: the GS2 header with the user escaped (RFC 5801 §4), host,
// port, the bearer token, and the %x01 answer to an error, whose JSON is
// kept for the error.
func TestOAuthBearerMessages(t *testing.T) {
	a := OAuthBearerAuth("a,b=c@example.org", "ya29.x-y_z", "smtp.example.org", 587).(*oauthBearerAuth)
	got, err := a.Start()
	want := "n,a=a=2Cb=3Dc@example.org,\x01host=smtp.example.org\x01port=587\x01auth=Bearer ya29.x-y_z\x01\x01"
	if err != nil || string(got) != want {
		t.Fatalf("Start = %q, %v\nwant %q", got, err, want)
	}
	resp, err := a.Next([]byte(`{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}`))
	if err != nil || string(resp) != "\x01" {
		t.Fatalf("Next(error) = %q, %v; want %%x01", resp, err)
	}
	if e := a.oauth2Error(); e == nil || e.Status != "invalid_token" || e.Scope != "example_scope" {
		t.Fatalf("decoded error = %+v", e)
	}
	if _, err := a.Next([]byte("again")); err == nil {
		t.Fatal("a second challenge was answered")
	}
	for _, tok := range []string{"", "has space", "ctl\x01"} {
		if _, err := OAuthBearerAuth("u", tok, "h", 0).Start(); err == nil || strings.Contains(err.Error(), tok+"\"") {
			t.Errorf("token %q: Start = %v, want a refusal that does not quote it", tok, err)
		}
		if _, err := XOAuth2Auth("u", tok).Start(); err == nil {
			t.Errorf("XOAUTH2 token %q accepted", tok)
		}
	}
	b, _ := OAuthBearerAuth("", "t", "", 0).Start()
	if string(b) != "n,,\x01auth=Bearer t\x01\x01" {
		t.Errorf("without user, host and port: %q", b)
	}
}
