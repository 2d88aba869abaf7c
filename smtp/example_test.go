package smtp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/mailbot/mailbot/devserver"
	"github.com/mailbot/mailbot/smtp"
)

// exampleServer starts a development mail server on loopback for an
// example; in real use the address would be a submission server such as
// "mail.example.org:587".
func exampleServer(cfg devserver.Config) *devserver.Server {
	cfg.Addr = "127.0.0.1:0"
	if cfg.Users == nil {
		cfg.Users = map[string]string{"bot": "s3cret"}
	}
	srv, err := devserver.Start(cfg)
	if err != nil {
		log.Fatal(err)
	}
	return srv
}

// exampleMessages waits for the server to have accepted n messages.
func exampleMessages(srv *devserver.Server, n int) []devserver.Message {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := srv.WaitMessages(ctx, n)
	if err != nil {
		log.Fatal(err)
	}
	return msgs
}

// The whole submission conversation, one step at a time: connect, EHLO,
// STARTTLS, EHLO again (the server's offer changes once the connection is
// encrypted), AUTH, the message, QUIT. Dialer.Dial does the first four
// steps in one call.
func ExampleDial() {
	srv := exampleServer(devserver.Config{})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := smtp.Dial(ctx, srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Ehlo(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("AUTH before TLS:", c.HasExtension("AUTH"))

	// The dev server's certificate is self-signed: trust it explicitly.
	if err := c.StartTLS(ctx, &tls.Config{RootCAs: srv.CertPool()}); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Ehlo(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("AUTH after TLS:", c.AuthMechanisms())

	if err := c.Login(ctx, "bot", "s3cret"); err != nil {
		log.Fatal(err)
	}
	msg := []byte("From: bot@example.org\r\nTo: ops@example.org\r\nSubject: nightly\r\n\r\nall green\r\n")
	refused, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, msg, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("refused:", len(refused))
	if _, err := c.Quit(ctx); err != nil {
		log.Fatal(err)
	}

	m := exampleMessages(srv, 1)[0]
	fmt.Println("delivered to:", m.To, "tls:", m.TLS, "user:", m.AuthUser)
	// Output:
	// AUTH before TLS: false
	// AUTH after TLS: [PLAIN LOGIN]
	// refused: 0
	// delivered to: [ops@example.org] tls: true user: bot
}

// A Dialer with TLSStartTLS (its zero value) returns a client that is
// already encrypted, or an error: it never falls back to plain text.
func ExampleDialer_Dial() {
	srv := exampleServer(devserver.Config{})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	d := &smtp.Dialer{
		LocalName: "bot.example.org",
		TLS:       smtp.TLSStartTLS,
		TLSConfig: &tls.Config{RootCAs: srv.CertPool()},
		Timeout:   10 * time.Second,
	}
	c, err := d.Dial(ctx, srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	st, _ := c.TLSConnectionState()
	fmt.Println("TLS 1.2 or later:", st.Version >= tls.VersionTLS12)

	if err := c.Login(ctx, "bot", "s3cret"); err != nil {
		log.Fatal(err)
	}
	// Bare LF line ends are repaired, and a line holding a single dot
	// cannot end the message early.
	msg := []byte("Subject: report\n\nline one\n.\nline three\n")
	if _, err := c.SendMail(ctx, "bot@example.org", []string{"ops@example.org"}, msg, nil); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Quit(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("server stored: %q\n", exampleMessages(srv, 1)[0].Data)
	// Output:
	// TLS 1.2 or later: true
	// server stored: "Subject: report\r\n\r\nline one\r\n.\r\nline three\r\n"
}

// DoCmd sends a command the client has no method for and returns the reply
// whatever its code: a negative reply is an answer, not an error.
func ExampleClient_DoCmd() {
	srv := exampleServer(devserver.Config{})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := smtp.Dial(ctx, srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.EhloOrHeloIfNeeded(ctx); err != nil {
		log.Fatal(err)
	}
	for _, line := range []string{"NOOP", "VRFY ops@example.org", "ETRN example.org"} {
		rep, err := c.DoCmd(ctx, line)
		if err != nil {
			log.Fatal(err) // I/O or protocol failure
		}
		fmt.Printf("%s: %d positive=%v\n", line, rep.Code, rep.Positive())
	}
	// CR or LF in a command would smuggle a second one: refused unsent.
	_, err = c.DoCmd(ctx, "NOOP\r\nRCPT TO:<x@example.net>")
	fmt.Println("injection refused:", err != nil)
	// Output:
	// NOOP: 250 positive=true
	// VRFY ops@example.org: 252 positive=true
	// ETRN example.org: 500 positive=false
	// injection refused: true
}

// Partial refusals are not errors: SendMail delivers to the recipients the
// server accepted and returns the others. Only when every recipient is
// refused does it fail, with a *RecipientsRefusedError. Temporary (4yz)
// refusals are worth retrying later; permanent (5yz) ones are not.
func ExampleRecipientsRefusedError() {
	srv := exampleServer(devserver.Config{Hooks: devserver.Hooks{
		Rcpt: func(to string) *devserver.Reject {
			switch to {
			case "gone@example.org":
				return &devserver.Reject{Code: 550, Enhanced: [3]int{5, 1, 1}, Message: "no such user"}
			case "full@example.org":
				return &devserver.Reject{Code: 452, Enhanced: [3]int{4, 2, 2}, Message: "mailbox full"}
			}
			return nil
		},
	}})
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := (&smtp.Dialer{TLSConfig: &tls.Config{RootCAs: srv.CertPool()}}).Dial(ctx, srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	msg := []byte("Subject: hello\r\n\r\nhi\r\n")

	send := func(to ...string) {
		refused, err := c.SendMail(ctx, "bot@example.org", to, msg, nil)
		var rre *smtp.RecipientsRefusedError
		switch {
		case errors.As(err, &rre):
			fmt.Println("not sent; retry later:", rre.Recipients.Temporary(), "give up:", rre.Recipients.Permanent())
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Println("sent; retry later:", refused.Temporary(), "give up:", refused.Permanent())
			for _, addr := range refused.Permanent() {
				fmt.Printf("  %s: %d %s %s\n", addr, refused[addr].Code, refused[addr].Enhanced, refused[addr].Message)
			}
		}
	}
	send("ops@example.org", "gone@example.org", "full@example.org")
	send("gone@example.org", "full@example.org")
	// The client reset the transaction, so the connection carries on.
	send("ops@example.org")
	// Output:
	// sent; retry later: [full@example.org] give up: [gone@example.org]
	//   gone@example.org: 550 5.1.1 no such user
	// not sent; retry later: [full@example.org] give up: [gone@example.org]
	// sent; retry later: [] give up: []
}
