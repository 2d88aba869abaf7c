package message_test

import (
	"fmt"
	"log"
	"net/mail"
	"strings"

	"github.com/mailbot/mailbot/message"
)

func Example() {
	m := &message.Message{
		From:    "Reports <reports@example.com>",
		To:      []string{"ops@example.com"},
		Bcc:     []string{"audit@example.com"},
		Subject: "日报 2026-11-22",
		Text:    "All jobs finished.",
		Attachments: []message.Attachment{
			{Filename: "report.csv", Content: []byte("date,count\n2026-11-22,1024\n")},
		},
	}
	if err := m.SetHeader("X-Report", "daily"); err != nil {
		log.Fatal(err)
	}
	raw, err := m.Bytes()
	if err != nil {
		log.Fatal(err)
	}
	from, _ := m.EnvelopeFrom()
	rcpt, _ := m.Recipients()
	fmt.Println("MAIL FROM:", from)
	fmt.Println("RCPT TO:", strings.Join(rcpt, " "))

	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Subject:", msg.Header.Get("Subject"))
	fmt.Println("Bcc written:", msg.Header.Get("Bcc") != "")
	// Output:
	// MAIL FROM: reports@example.com
	// RCPT TO: ops@example.com audit@example.com
	// Subject: =?utf-8?b?5pel5oqlIDIwMjYtMTEtMjI=?=
	// Bcc written: false
}
