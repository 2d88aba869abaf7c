package outbox

import (
	"strconv"
	"strings"
	"time"
)

// Delivery results of DeliveryEvent.Result.
const (
	ResultSent      = "sent"      // every pending recipient accepted
	ResultTemporary = "temporary" // deferred: retried later
	ResultPermanent = "permanent" // moved to the dead letters
)

// DeliveryEvent describes the outcome of one delivery attempt, for
// Options.OnDelivery.
type DeliveryEvent struct {
	Time time.Time
	ID   string
	// Account is the account whose session carried the attempt (a
	// fallback's name when it went through one); Queue is the message's
	// own account.
	Account, Queue string
	// MessageID is the message's Message-ID header, "" if none.
	MessageID string
	// Recipients are the recipients tried in this attempt.
	Recipients []string
	// Result is ResultSent, ResultTemporary or ResultPermanent.
	Result string
	// Reply is the relay's last reply, as one line ("" when none was
	// recorded).
	Reply string
	// Attempts counts the attempts so far, this one included.
	Attempts int
}

// SessionEvent describes an SMTP session the outbox tried to open, for
// Options.OnSession.
type SessionEvent struct {
	Account string
	// Err is why it failed; nil when the session is open.
	Err error
}

// observeDelivery hands a finished attempt to Options.OnDelivery.
func (w *worker) observeDelivery(it *Item, rcpts []string, data []byte, outcome string) {
	f := w.o.opts.OnDelivery
	if f == nil {
		return
	}
	ev := DeliveryEvent{Time: it.LastAttempt, ID: it.ID, Account: w.name, Queue: w.queue, MessageID: strings.Trim(messageID(data), "<> "),
		Recipients: append([]string(nil), rcpts...), Attempts: it.Attempts}
	switch outcome {
	case "sent":
		ev.Result = ResultSent
	case "bounced":
		ev.Result = ResultPermanent
	default:
		ev.Result = ResultTemporary
	}
	if r := it.LastReply; r != nil {
		ev.Reply = replyLine(*r)
	} else if len(it.Refused) > 0 {
		ev.Reply = replyLine(it.Refused[len(it.Refused)-1].Reply)
	}
	f(ev)
}

// replyLine is a reply in one line: code, enhanced code, text.
func replyLine(r Reply) string {
	code := ""
	if r.Code != 0 {
		code = strconv.Itoa(r.Code)
	}
	return strings.Join(strings.Fields(code+" "+r.Enhanced+" "+r.Text), " ")
}

// observeSession hands a session opening to Options.OnSession.
func (w *worker) observeSession(err error) {
	if f := w.o.opts.OnSession; f != nil {
		f(SessionEvent{Account: w.name, Err: err})
	}
}
