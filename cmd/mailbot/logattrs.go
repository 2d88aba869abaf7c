package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/mailbot/mailbot/outbox"
)

// durationString is the loggers' ReplaceAttr: every time.Duration value
// is written as a Go duration string ("1.5s", "250ms"), in the JSON
// format too, whose handler would otherwise write raw nanoseconds.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// printTrace prints what traces a message at the relay: its Message-ID
// and Subject, and for a delivered one when and the relay's reply (with
// its queue id).
func printTrace(w io.Writer, it outbox.Item) {
	if it.MessageID != "" {
		fmt.Fprintf(w, "Message-ID:   %s\n", printable(it.MessageID))
	}
	if it.Subject != "" {
		fmt.Fprintf(w, "Subject:      %s\n", printable(it.Subject))
	}
	if !it.SentAt.IsZero() {
		fmt.Fprintf(w, "Sent:         %s\n", it.SentAt.Format(time.RFC3339))
	}
	if it.Reply != "" {
		fmt.Fprintf(w, "Relay reply:  %s\n", printable(it.Reply))
	}
}
