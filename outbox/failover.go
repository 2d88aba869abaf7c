package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mailbot/mailbot/smtp"
)

// Failover
//
// An account's Fallback lists the accounts its messages go through when
// it cannot open a session. The worker of the message's account does the
// failing over itself: it keeps the message locked, opens a session with
// the fallback's whole Account (its Dialer, Addr, credentials, OAuth2,
// Sign, SendOptions) and waits on the fallback's rate limiter. The message
// stays in its account's queue throughout, so failover can neither lose
// nor duplicate it, and the crash duplicate window stays one message.
//
// Only session setup fails over: the dial, the TLS handshake, the
// greeting, EHLO, STARTTLS, the password or token lookup and AUTH. Once a
// transaction has begun (MAIL, RCPT, DATA, the final dot) a failure is the
// message's and is handled as without fallbacks; in particular an unknown
// outcome after DATA stays with the account that may have delivered it.

// route is one account a worker can deliver through.
type route struct {
	name   string
	acct   Account
	lim    *limiter
	health *health
}

// health is one account's circuit, shared by every worker of a Deliver
// run: after the account failed to open a session it is held off until
// the given time, so workers sending through a fallback do not dial it
// for every message. It is consulted only in chains of two or more
// accounts; an account without fallbacks is dialled as before.
type health struct {
	mu    sync.Mutex
	until time.Time
	at    time.Time
	err   error
}

// heldOff returns the failure that holds the account off at now, if any.
func (h *health) heldOff(now time.Time) (time.Time, error, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil || !now.Before(h.until) {
		return time.Time{}, nil, false
	}
	return h.at, h.err, true
}

func (h *health) fail(at, until time.Time, err error) {
	h.mu.Lock()
	h.at, h.until, h.err = at, until, err
	h.mu.Unlock()
}

func (h *health) ok() {
	h.mu.Lock()
	h.err = nil
	h.mu.Unlock()
}

// holdOff is how long an account that failed to open a session is
// skipped in favour of its fallbacks: the first retry delay.
func (o *Outbox) holdOff() time.Duration { return o.opts.Backoff.Initial }

// chain returns the routes of account name: its own first, then each of
// its fallbacks once, in the order listed. Only the listed accounts are
// tried: the fallbacks of a fallback are not followed, so there are no
// cycles. Names that are not among the delivery accounts are skipped
// with a warning (the configuration check reports them).
func (o *Outbox) chain(name string, routes map[string]*route) []*route {
	own := routes[name]
	chain := []*route{own}
	seen := map[string]bool{name: true}
	for _, f := range own.acct.Fallback {
		r, ok := routes[f]
		if seen[f] {
			continue
		}
		if !ok {
			o.log.Warn("outbox: fallback account is not configured; skipped", "account", name, "fallback", f)
			continue
		}
		seen[f] = true
		chain = append(chain, r)
	}
	return chain
}

// AccountError is one account's failure to open a session, part of a
// *FailoverError.
type AccountError struct {
	// Account is the account's name.
	Account string
	// HeldOff is true when the account was not dialled because it had
	// failed at At, within the hold-off; Err is that failure.
	HeldOff bool
	At      time.Time
	Err     error
}

func (e *AccountError) Error() string {
	if e.HeldOff {
		return fmt.Sprintf("%s: not tried, held off since its failure at %s: %v", e.Account, e.At.UTC().Format(time.RFC3339), e.Err)
	}
	return e.Account + ": " + e.Err.Error()
}

// Unwrap returns the account's failure.
func (e *AccountError) Unwrap() error { return e.Err }

// FailoverError reports that neither a message's account nor any of its
// fallbacks could open a session. The message is deferred with the usual
// backoff.
type FailoverError struct {
	// Account is the message's account.
	Account string
	// Errs holds each account's failure, in the order tried.
	Errs []*AccountError
}

func (e *FailoverError) Error() string {
	parts := make([]string, len(e.Errs))
	for i, ae := range e.Errs {
		parts[i] = ae.Error()
	}
	return fmt.Sprintf("outbox: account %s and its fallbacks all failed: %s", e.Account, strings.Join(parts, "; "))
}

// Unwrap returns every account's failure.
func (e *FailoverError) Unwrap() []error {
	errs := make([]error, len(e.Errs))
	for i, ae := range e.Errs {
		errs[i] = ae
	}
	return errs
}

// use makes r the account of the worker's next session.
func (w *worker) use(r *route) {
	w.route, w.name, w.acct = r, r.name, r.acct
}

// session makes sure the worker has an open session: through the
// message's own account or, when that one fails to open a session and
// has fallbacks, through the first fallback that succeeds. A session
// through a fallback is kept until the own account's hold-off is over;
// then the own account is tried again. When every account fails the
// error is a *FailoverError listing each failure.
func (w *worker) session(ctx context.Context) error {
	own := w.routes[0]
	if w.c != nil {
		if w.route == own {
			return nil
		}
		if _, _, held := own.health.heldOff(w.o.opts.Now()); held {
			return nil
		}
		w.closeSession(ctx) // back to the own account
	}
	if len(w.routes) == 1 {
		w.use(own)
		return w.connect(ctx)
	}
	var errs []*AccountError
	for i, r := range w.routes {
		now := w.o.opts.Now()
		if at, cause, held := r.health.heldOff(now); held {
			errs = append(errs, &AccountError{Account: r.name, HeldOff: true, At: at, Err: cause})
			continue
		}
		w.use(r)
		err := w.connect(ctx)
		if err == nil {
			err = w.hello(ctx)
		}
		if err == nil {
			r.health.ok()
			if i > 0 {
				w.o.log.LogAttrs(ctx, slog.LevelWarn, "outbox: delivering through a fallback account",
					slog.String("account", w.queue), slog.String("via", r.name), slog.String("host", r.acct.Addr),
					slog.String("reason", (&FailoverError{Account: w.queue, Errs: errs}).Error()))
			}
			return nil
		}
		if ctx.Err() != nil {
			w.use(own)
			return err
		}
		r.health.fail(now, now.Add(w.o.holdOff()), err)
		w.logUnavailable(ctx, r, err, w.routes[i+1:])
		errs = append(errs, &AccountError{Account: r.name, At: now, Err: err})
	}
	w.use(own)
	return &FailoverError{Account: w.queue, Errs: errs}
}

// hello greets the server of a new session, if connect has not (without
// TLS or AUTH nothing has been said after the greeting yet), so that a
// refused EHLO is a failure to open the session, not one of the first
// message's transaction.
func (w *worker) hello(ctx context.Context) error {
	if err := w.c.EhloOrHeloIfNeeded(ctx); err != nil {
		w.dropSession()
		return &connectPhaseError{fmt.Errorf("outbox: greet %s: %w", w.acct.Addr, err)}
	}
	return nil
}

// logUnavailable records an account's failure to open a session in a
// failover chain. A failure that waiting will not cure (a 5yz reply such
// as 535 wrong credentials, a TLS or certificate failure, a missing
// extension or password) is a configuration problem and is logged at
// error level even though the message goes out through a fallback.
func (w *worker) logUnavailable(ctx context.Context, r *route, err error, next []*route) {
	level := slog.LevelWarn
	if !transientSetup(err) {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("account", r.name), slog.String("host", r.acct.Addr),
		slog.String("error", err.Error()),
	}
	if r.name != w.queue {
		attrs = append(attrs, slog.String("fallback_for", w.queue))
	}
	msg := "outbox: account cannot open a session; no fallback left"
	if len(next) > 0 {
		msg = "outbox: account cannot open a session; trying the next fallback"
		attrs = append(attrs, slog.String("next", next[0].name))
	}
	w.o.log.LogAttrs(ctx, level, msg, attrs...)
}

// transientSetup reports whether a session setup failure may cure itself:
// a 4yz reply, a refused or lost connection, a timeout.
func transientSetup(err error) bool {
	var (
		se *smtp.SMTPError
		te *smtp.TLSError
		ns *smtp.NotSupportedError
		ce *smtp.ConnectError
		de *smtp.DisconnectedError
	)
	switch {
	case errors.As(err, &se):
		return se.Temporary()
	case errors.As(err, &te), errors.As(err, &ns):
		return false
	case errors.As(err, &ce), errors.As(err, &de), smtp.IsTimeout(err):
		return true
	}
	return false // password or token lookup, client-side AUTH failure
}

// settleSent finishes a delivered message's move into sent/ (lf's file,
// at from). With record set, sent/ gets that content, the metadata of
// the delivering attempt (it names the fallback account that delivered),
// and the queued file is removed after; a crash in between leaves two
// copies, which Open settles by Seq in favour of the sent one.
func (o *Outbox) settleSent(from, to string, record []byte) {
	if record == nil {
		o.moveSent(from, to)
		return
	}
	if err := o.replaceFile(to, record, true); err != nil {
		o.log.Warn("outbox: record the delivering account; moving the queued file instead", "path", from, "error", err)
		o.moveSent(from, to)
		return
	}
	if err := os.Remove(from); err != nil {
		o.log.Error("outbox: remove delivered message from queue", "path", from, "error", err)
		return
	}
	o.markSentDirty()
}
