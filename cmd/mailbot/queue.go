package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mailbot/mailbot/outbox"
)

const queueDesc = `Inspects and manages the durable outbox that mail.send fills and
"mailbot run" delivers. It works next to a running daemon: a message being
delivered at that moment is reported as busy.

  queue list             queued messages: id, account, attempts, next attempt, and
                         why the pending recipients wait
  queue show ID          one message: its metadata, each recipient's last reply, the message
  queue retry ID|--all   make a queued message (or all) due now
  queue delete ID        remove a queued, dead or damaged message for good
  queue dead             dead letters, with the server's reply
  queue corrupt          damaged spool files, kept in corrupt/ with a note: what failed,
                         what survived, whether it can be requeued
  queue requeue ID [--account NAME]
                         put a dead letter, or what survived of a damaged message,
                         back in the queue (--account when its account was lost)

list, show, dead and corrupt only read: they change nothing on disk. Damaged
files are moved to corrupt/ by "mailbot run" and "mailbot exec" when they
open the outbox or meet one while delivering (logged at error level), never
deleted; list and dead count them, also before they are moved.

With --json, list and dead print an array of the messages' metadata
(id, state, account, from, to, delivered, refused, waiting, attempts,
next_attempt, last_attempt, last_error, last_reply, dead_at,
dead_reason, ...), [] when there are none.

Exit status: "queue dead" exits 1 when there are dead letters (so cron or
monitoring can alert on it), 0 when there are none. Every action exits 1
on failure and 2 for an invalid config file.

The outbox lives in <state_dir>/outbox.`

// cmdQueue implements "mailbot queue".
func (m *Main) cmdQueue(ctx context.Context, args []string) int {
	fs := m.newFlagSet("queue", "[-c mailbot.yaml] [--json] list|show ID|retry ID|retry --all|delete ID|dead|corrupt|requeue ID [--account NAME]", queueDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	all := fs.Bool("all", false, "with retry: every queued message")
	account := fs.String("account", "", "with requeue of a damaged message: the account to deliver it with")
	asJSON := fs.Bool("json", false, "with list and dead: print JSON")
	pos, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return status
	}
	if len(pos) == 0 {
		return m.usageError(fs, "missing the queue action (list, show, retry, delete, dead, corrupt, requeue)")
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
	// SkipRecovery: the queue command never changes the spool beyond
	// what its action says (no crash recovery, no quarantine, nothing
	// created), so read-only actions are safe next to a running daemon.
	logger, err := m.newLogger(cfg)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot queue: %v\n", err)
		return exitFailure
	}
	ob, err := outbox.Open(filepath.Join(cfg.Resolve(cfg.StateDir), "outbox"), outbox.Options{Logger: logger, SkipRecovery: true})
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot queue: %v\n", err)
		return exitFailure
	}
	defer ob.Close()

	fail := func(err error) int {
		switch {
		case errors.Is(err, outbox.ErrNotFound):
			fmt.Fprintf(m.Stderr, "mailbot queue %s: no message %q (see mailbot queue list / queue dead)\n", action, strings.Join(rest, " "))
		case errors.Is(err, outbox.ErrCorrupt):
			fmt.Fprintf(m.Stderr, "mailbot queue %s: message %s is damaged (%v); see mailbot queue show %s\n", action, strings.Join(rest, " "), err, strings.Join(rest, " "))
		case errors.Is(err, outbox.ErrUnrecoverable):
			fmt.Fprintf(m.Stderr, "mailbot queue %s: %v (see mailbot queue show %s)\n", action, err, strings.Join(rest, " "))
		case errors.Is(err, outbox.ErrBusy):
			fmt.Fprintf(m.Stderr, "mailbot queue %s: message %s is being delivered right now; try again in a moment\n", action, strings.Join(rest, " "))
		default:
			fmt.Fprintf(m.Stderr, "mailbot queue %s: %v\n", action, err)
		}
		return exitFailure
	}
	if *asJSON && action != "list" && action != "dead" {
		return m.usageError(fs, "--json applies to queue list and queue dead")
	}
	switch action {
	case "list":
		items, err := ob.List()
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return m.printItemsJSON(items, exitOK)
		}
		m.printItems(items, false)
		if err := m.printCorruptCount(ob); err != nil {
			return fail(err)
		}
	case "dead":
		items, err := ob.Dead()
		if err != nil {
			return fail(err)
		}
		code := exitOK
		if len(items) > 0 {
			code = exitFailure // dead letters: monitoring alerts on it
		}
		if *asJSON {
			return m.printItemsJSON(items, code)
		}
		m.printItems(items, true)
		if err := m.printCorruptCount(ob); err != nil {
			return fail(err)
		}
		return code
	case "corrupt":
		cs, err := ob.Corrupt()
		if err != nil {
			return fail(err)
		}
		m.printCorruptList(cs)
	case "show":
		item, data, err := ob.Get(rest[0])
		if errors.Is(err, outbox.ErrNotFound) || errors.Is(err, outbox.ErrCorrupt) {
			c, cdata, cerr := ob.Inspect(rest[0])
			if cerr == nil {
				m.printCorrupt(c, cdata)
				break
			}
		}
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
		if *all {
			if err := m.printCorruptCount(ob); err != nil {
				return fail(err)
			}
		}
	case "delete":
		if err := ob.Delete(rest[0]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(m.Stdout, "deleted %s\n", rest[0])
	case "requeue":
		if _, _, ierr := ob.Inspect(rest[0]); ierr == nil {
			it, err := ob.RequeueCorrupt(rest[0], *account)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(m.Stdout, "requeued %s, recovered from a damaged file (%d message bytes; check it with mailbot queue show %s)\n", it.ID, it.Size, it.ID)
			break
		}
		if *account != "" {
			return m.usageError(fs, "--account applies only to a damaged message (see mailbot queue corrupt)")
		}
		if err := ob.Requeue(rest[0]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(m.Stdout, "requeued %s\n", rest[0])
	default:
		return m.usageError(fs, "unknown queue action %q (list, show, retry, delete, dead, corrupt, requeue)", action)
	}
	return exitOK
}

// printItemsJSON prints items as a JSON array and returns code.
func (m *Main) printItemsJSON(items []outbox.Item, code int) int {
	if items == nil {
		items = []outbox.Item{}
	}
	enc := json.NewEncoder(m.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(items); err != nil {
		fmt.Fprintf(m.Stderr, "mailbot queue: %v\n", err)
		return exitFailure
	}
	return code
}

// printCorruptCount ends list and dead with the number of damaged files,
// so they are never out of sight.
func (m *Main) printCorruptCount(ob *outbox.Outbox) error {
	cs, err := ob.Corrupt()
	if err != nil {
		return err
	}
	if n := len(cs); n > 0 {
		fmt.Fprintf(m.Stdout, "%d damaged message file%s kept aside (not delivered): see mailbot queue corrupt\n", n, map[bool]string{true: "s"}[n > 1])
	}
	return nil
}

func (m *Main) printCorruptList(cs []outbox.Corrupt) {
	if len(cs) == 0 {
		fmt.Fprintln(m.Stdout, "no damaged files")
		return
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWHERE\tMOVED\tFROM\tTO\tPROBLEM\tREQUEUE")
	for _, c := range cs {
		where := "corrupt/ (from " + c.Origin + "/)"
		if !c.Moved {
			where = c.Origin + "/ (not moved yet)"
		}
		when := "-"
		if !c.MovedAt.IsZero() {
			when = c.MovedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, where, when,
			oneLineText(printable(c.Item.From)), oneLineText(printable(strings.Join(c.Item.To, ","))), oneLineText(c.Check+": "+c.Found), requeueVerdict(c))
	}
	tw.Flush()
}

func requeueVerdict(c outbox.Corrupt) string {
	switch {
	case c.Recoverable:
		return "yes"
	case c.NeedsAccount:
		return "with --account"
	default:
		return "no: " + c.Reason
	}
}

// printCorrupt shows what a damaged file holds and what was recovered.
func (m *Main) printCorrupt(c outbox.Corrupt, data []byte) {
	w := m.Stdout
	it := c.Item
	fmt.Fprintf(w, "ID:           %s\n", c.Name)
	if c.Moved {
		fmt.Fprintf(w, "State:        damaged, kept in %s (from %s/", c.Path, c.Origin)
		if !c.MovedAt.IsZero() {
			fmt.Fprintf(w, ", moved %s", c.MovedAt.Format(time.RFC3339))
		}
		fmt.Fprintln(w, ")")
	} else {
		fmt.Fprintf(w, "State:        damaged, still in %s (mailbot run moves it to corrupt/)\n", c.Path)
	}
	fmt.Fprintf(w, "Check failed: %s\n", printable(c.Problem()))
	if c.Envelope == "" {
		fmt.Fprintln(w, "Envelope:     not recovered")
	} else {
		fmt.Fprintf(w, "Envelope:     from %s\n", c.Envelope)
		// Recovered from a damaged file: quoted unless printable.
		fmt.Fprintf(w, "Account:      %s\n", orUnknown(it.Account))
		fmt.Fprintf(w, "From:         %s\n", orUnknown(it.From))
		fmt.Fprintf(w, "To:           %s\n", orUnknown(strings.Join(it.To, ", ")))
		if len(it.Delivered) > 0 {
			fmt.Fprintf(w, "Delivered to: %s\n", printable(strings.Join(it.Delivered, ", ")))
		}
		if it.Key != "" {
			fmt.Fprintf(w, "Key:          %s\n", printable(it.Key))
		}
		if !it.Created.IsZero() {
			fmt.Fprintf(w, "Created:      %s\n", it.Created.Format(time.RFC3339))
		}
	}
	fmt.Fprintf(w, "File:         %d bytes, %d of them message bytes", c.FileSize, c.MessageBytes)
	if c.Missing > 0 {
		fmt.Fprintf(w, ", %d missing at the end", c.Missing)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Headers:      %s\n", map[bool]string{true: "complete", false: "incomplete or unreadable"}[c.Headers])
	if c.Duplicate != "" {
		fmt.Fprintf(w, "Copy:         an intact copy is in %s/\n", c.Duplicate)
	}
	switch {
	case c.Recoverable:
		fmt.Fprintf(w, "Requeue:      yes: mailbot queue requeue %s\n", c.Name)
	case c.NeedsAccount:
		fmt.Fprintf(w, "Requeue:      mailbot queue requeue %s --account NAME (%s)\n", c.Name, c.Reason)
	default:
		fmt.Fprintf(w, "Requeue:      no: %s\n", c.Reason)
	}
	if c.Headers {
		fmt.Fprintf(w, "\n%s", data)
		if c.Missing > 0 {
			fmt.Fprintf(w, "\n[... %d bytes missing]\n", c.Missing)
		}
	} else if len(data) > 0 {
		fmt.Fprintf(w, "\n[%d bytes not shown: no message headers recognised; the file is %s]\n", len(data), c.Path)
	}
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", it.ID, it.Account, it.From, to, it.Attempts, it.NextAttempt.Format(time.RFC3339), oneLineText(pendingReason(it))+refusedNote(it))
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
	switch {
	case it.State == outbox.StateSent && it.Via != "":
		fmt.Fprintf(w, "Delivered by: %s (fallback of %s)\n", it.Via, it.Account)
	case it.State == outbox.StateSent:
		fmt.Fprintf(w, "Delivered by: %s\n", it.Account)
	case it.Via != "":
		fmt.Fprintf(w, "Last tried:   through %s (fallback of %s)\n", it.Via, it.Account)
	}
	if it.Key != "" {
		fmt.Fprintf(w, "Key:          %s\n", it.Key)
	}
	printTrace(w, it)
	fmt.Fprintf(w, "Size:         %d bytes\n", it.Size)
	fmt.Fprintf(w, "Created:      %s\n", it.Created.Format(time.RFC3339))
	fmt.Fprintf(w, "Attempts:     %d\n", it.Attempts)
	if !it.NextAttempt.IsZero() && it.State != outbox.StateSent {
		fmt.Fprintf(w, "Next attempt: %s\n", it.NextAttempt.Format(time.RFC3339))
	}
	if it.LastError != "" {
		fmt.Fprintf(w, "Last error:   %s\n", it.LastError)
	}
	if it.LastReply != nil {
		fmt.Fprintf(w, "Last reply:   %d %s %s\n", it.LastReply.Code, it.LastReply.Enhanced, it.LastReply.Text)
	}
	for _, r := range it.Waiting {
		fmt.Fprintf(w, "Waiting:      %s: %s (temporary; retried)\n", r.Recipient, replyText(r.Reply))
	}
	for _, r := range it.Refused {
		if it.State == outbox.StateQueued {
			fmt.Fprintf(w, "Refused:      %s: %s (permanent; not retried)\n", r.Recipient, replyText(r.Reply))
		} else {
			fmt.Fprintf(w, "Refused:      %s: %s\n", r.Recipient, replyText(r.Reply))
		}
	}
	if it.Recovered != "" {
		fmt.Fprintf(w, "Recovered:    %s\n", it.Recovered)
	}
	if it.DeadReason != "" {
		fmt.Fprintf(w, "Dead since:   %s: %s\n", it.DeadAt.Format(time.RFC3339), it.DeadReason)
	}
}

// replyText is a recorded reply in one line: code, enhanced code, text.
func replyText(r outbox.Reply) string {
	if r.Code == 0 {
		return oneLineText(r.Text)
	}
	return strings.Join(strings.Fields(fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, strings.ReplaceAll(r.Text, "\n", " / "))), " ")
}

// pendingReason says why a queued message's pending recipients wait (the
// last error of the attempt that deferred them), and how many recipients
// were refused permanently.
func pendingReason(it outbox.Item) string {
	s := it.LastError
	if len(it.Waiting) > 0 {
		var parts []string
		for _, r := range it.Waiting {
			parts = append(parts, r.Recipient+": "+replyText(r.Reply))
		}
		s = strings.Join(parts, "; ")
	}
	return s
}

// refusedNote keeps a queued message's permanent refusals in sight in
// the list.
func refusedNote(it outbox.Item) string {
	if n := len(it.Refused); n > 0 {
		return fmt.Sprintf(" [%d refused permanently: see show]", n)
	}
	return ""
}

// orUnknown is printable(s), or "(unknown)" for "".
func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return printable(s)
}

// printable returns s when it is printable UTF-8, else quoted, so bytes
// from a damaged file cannot drive the terminal.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		return s
	}
	return strconv.Quote(s)
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
