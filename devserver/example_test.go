package devserver_test

import (
	"context"
	"fmt"
	"log"
	"net/smtp"
	"time"

	"github.com/mailbot/mailbot/devserver"
)

// Start a development server, send it a message over STARTTLS with
// AUTH PLAIN, and look at what it received.
func ExampleStart() {
	srv, err := devserver.Start(devserver.Config{
		Addr:  "127.0.0.1:0",
		Users: map[string]string{"bot": "s3cret"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// The server's certificate is self-signed; trust it explicitly.
	if err := c.StartTLS(srv.TLSConfig("127.0.0.1")); err != nil {
		log.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", "bot", "s3cret", "127.0.0.1")); err != nil {
		log.Fatal(err)
	}
	if err := c.Mail("bot@example.org"); err != nil {
		log.Fatal(err)
	}
	if err := c.Rcpt("ops@example.org"); err != nil {
		log.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprint(w, "Subject: nightly\r\n\r\nall green\r\n")
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := srv.WaitMessages(ctx, 1)
	if err != nil {
		log.Fatal(err)
	}
	m := msgs[0]
	fmt.Println("from:", m.From)
	fmt.Println("to:", m.To)
	fmt.Println("tls:", m.TLS, "user:", m.AuthUser)
	fmt.Printf("data: %q\n", m.Data)
	// Output:
	// from: bot@example.org
	// to: [ops@example.org]
	// tls: true user: bot
	// data: "Subject: nightly\r\n\r\nall green\r\n"
}
