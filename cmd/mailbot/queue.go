package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailbot/mailbot/outbox"
)

const queueDesc = `Inspects and manages the durable outbox that mail.send fills and
"mailbot run" delivers. It works next to a running daemon: a message being
delivered at that moment is reported as busy.

  queue list             queued messages: id, account, attempts, next attempt, last error
  queue show ID          one message: its metadata and the message itself
  queue retry ID|--all   make a queued message (or all) due now
  queue delete ID        remove a queued or dead message for good
  queue dead             dead letters, with the server's reply
  queue requeue ID       put a dead letter back in the queue

The outbox lives in <state_dir>/outbox.`

// cmdQueue implements "mailbot queue".
func (m *Main) cmdQueue(ctx context.Context, args []string) int {
	fs := m.newFlagSet("queue", "[-c mailbot.yaml] list|show ID|retry ID|retry --all|delete ID|dead|requeue ID", queueDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	all := fs.Bool("all", false, "with retry: every queued message")
	pos, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return status
	}
	if len(pos) == 0 {
		return m.usageError(fs, "missing the queue action (list, show, retry, delete, dead, requeue)")
	}
	action, rest := pos[0], pos[1:]
	needID := map[string]bool{"show": true, "delete": true, "requeue": true, "retry": !*all}
	if needID[action] && len(rest) != 1 {
		return m.usageError(fs, "queue %s takes one message id", action)
	}
	cfg, status, ok := m.loadConfig(m.configPath(*cfgFlag, "mailbot.yaml"))
	if !ok {
		return status
	}
	ob, err := outbox.Open(filepath.Join(cfg.Resolve(cfg.StateDir), "outbox"), outbox.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot queue: %v\n", err)
		return exitFailure
	}
	defer ob.Close()

	fail := func(err error) int {
		switch {
		case errors.Is(err, outbox.ErrNotFound):
			fmt.Fprintf(m.Stderr, "mailbot queue %s: no message %q (see mailbot queue list / queue dead)\n", action, strings.Join(rest, " "))
		case errors.Is(err, outbox.ErrBusy):
			fmt.Fprintf(m.Stderr, "mailbot queue %s: message %s is being delivered right now; try again in a moment\n", action, strings.Join(rest, " "))
		default:
			fmt.Fprintf(m.Stderr, "mailbot queue %s: %v\n", action, err)
		}
		return exitFailure
	}
	switch action {
	case "list":
		items, err := ob.List()
		if err != nil {
			return fail(err)
		}
		m.printItems(items, false)
	case "dead":
		items, err := ob.Dead()
		if err != nil {
			return fail(err)
		}
		m.printItems(items, true)
	case "show":
		item, data, err := ob.Get(rest[0])
		if err != nil {
			return fail(err)
		}
		m.printItem(item)
		fmt.Fprintf(m.Stdout, "\n%s", data)
	case "retry":
		if *all {
			err = ob.RetryAll()
		} else {
			err = ob.Retry(rest[0])
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(m.Stdout, "due now; a running mailbot picks it up within seconds")
	case "delete":
		if err := ob.Delete(rest[0]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(m.Stdout, "deleted %s\n", rest[0])
	case "requeue":
		if err := ob.Requeue(rest[0]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(m.Stdout, "requeued %s\n", rest[0])
	default:
		return m.usageError(fs, "unknown queue action %q (list, show, retry, delete, dead, requeue)", action)
	}
	return exitOK
}

func (m *Main) printItems(items []outbox.Item, dead bool) {
	if len(items) == 0 {
		if dead {
			fmt.Fprintln(m.Stdout, "no dead letters")
		} else {
			fmt.Fprintln(m.Stdout, "queue is empty")
		}
		return
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	if dead {
		fmt.Fprintln(tw, "ID\tACCOUNT\tFROM\tTO\tDEAD SINCE\tREASON")
	} else {
		fmt.Fprintln(tw, "ID\tACCOUNT\tFROM\tTO\tATTEMPTS\tNEXT ATTEMPT\tLAST ERROR")
	}
	for _, it := range items {
		to := strings.Join(it.To, ",")
		if dead {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.ID, it.Account, it.From, to, it.DeadAt.Format(time.RFC3339), oneLineText(deadReason(it)))
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", it.ID, it.Account, it.From, to, it.Attempts, it.NextAttempt.Format(time.RFC3339), oneLineText(it.LastError))
		}
	}
	tw.Flush()
}

func (m *Main) printItem(it outbox.Item) {
	w := m.Stdout
	fmt.Fprintf(w, "ID:           %s\n", it.ID)
	fmt.Fprintf(w, "State:        %s\n", it.State)
	fmt.Fprintf(w, "Account:      %s\n", it.Account)
	fmt.Fprintf(w, "From:         %s\n", it.From)
	fmt.Fprintf(w, "To:           %s\n", strings.Join(it.To, ", "))
	if len(it.Delivered) > 0 {
		fmt.Fprintf(w, "Delivered to: %s\n", strings.Join(it.Delivered, ", "))
	}
	if it.Key != "" {
		fmt.Fprintf(w, "Key:          %s\n", it.Key)
	}
	fmt.Fprintf(w, "Size:         %d bytes\n", it.Size)
	fmt.Fprintf(w, "Created:      %s\n", it.Created.Format(time.RFC3339))
	fmt.Fprintf(w, "Attempts:     %d\n", it.Attempts)
	if !it.NextAttempt.IsZero() {
		fmt.Fprintf(w, "Next attempt: %s\n", it.NextAttempt.Format(time.RFC3339))
	}
	if it.LastError != "" {
		fmt.Fprintf(w, "Last error:   %s\n", it.LastError)
	}
	if it.LastReply != nil {
		fmt.Fprintf(w, "Last reply:   %d %s %s\n", it.LastReply.Code, it.LastReply.Enhanced, it.LastReply.Text)
	}
	for _, r := range it.Refused {
		fmt.Fprintf(w, "Refused:      %s: %d %s %s\n", r.Recipient, r.Reply.Code, r.Reply.Enhanced, r.Reply.Text)
	}
	if it.DeadReason != "" {
		fmt.Fprintf(w, "Dead since:   %s: %s\n", it.DeadAt.Format(time.RFC3339), it.DeadReason)
	}
}

func oneLineText(s string) string {
	s = strings.ReplaceAll(s, "\n", " / ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// deadReason says why a message is dead, with the server's reply.
func deadReason(it outbox.Item) string {
	var reply *outbox.Reply
	if len(it.Refused) > 0 {
		reply = &it.Refused[0].Reply
	} else if it.LastReply != nil {
		reply = it.LastReply
	}
	if reply == nil || reply.Code == 0 {
		return it.DeadReason
	}
	return strings.TrimSpace(fmt.Sprintf("%s: %d %s %s", it.DeadReason, reply.Code, reply.Enhanced, reply.Text))
}
