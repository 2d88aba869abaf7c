package smtp

import (
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
