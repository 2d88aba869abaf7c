package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailbot/mailbot/smtp"
)

// Account says how to deliver the messages enqueued for one account name.
type Account struct {
	// Dialer opens sessions; nil means a zero smtp.Dialer (STARTTLS
	// required, certificates verified).
	Dialer *smtp.Dialer
	// Addr is the relay, "host:port".
	Addr string
	// Username enables AUTH; Password is asked for at each new session,
	// so a rotated secret is picked up. Neither is ever logged. With
	// OAuth2 set, sessions log in with a token instead (see below).
	Username string
	Password func() (string, error)
	// Concurrency is the number of parallel sessions; default 1.
	Concurrency int
	// RatePerSecond caps messages per second over all sessions of the
	// account; 0 means no cap. It uses the real clock.
	RatePerSecond float64
	// SendOptions are passed to every SendMail (DSN, REQUIRETLS...).
	SendOptions *smtp.SendOptions
	// OAuth2, when set, logs in with an OAuth2 access token instead of
	// the password; OAuth2Mechanism is "XOAUTH2" (default) or "OAUTHBEARER".
	OAuth2          smtp.TokenSource
	OAuth2Mechanism string
	// Sign, when set, DKIM-signs each message sent with this account.
	Sign func(msg []byte) ([]byte, error)
	// Fallback names the accounts the outbox tries next when this one
	// cannot be reached or refuses the session before DATA (outbox only).
	Fallback []string
	// IdleTimeout is how long Deliver keeps a session open with nothing
	// to send, so the next burst of messages goes out without a new
	// connection, TLS handshake and login. A session that was idle is
	// checked with NOOP before it carries mail again (the server may
	// have closed it meanwhile); one that fails the check is replaced
	// without counting an attempt. Zero means DefaultIdleTimeout;
	// negative closes the session as soon as nothing is due. DeliverOnce
	// always closes its sessions when it returns.
	IdleTimeout time.Duration
	// Transcript, when set, is called for every new session; the
	// session's transcript (as smtp.Dialer.Debug writes it, AUTH
	// redacted) goes to the writer it returns, if not nil. Dry runs use it
	// to file each message's transcript beside it.
	Transcript func() io.Writer
}

// DefaultIdleTimeout is Account.IdleTimeout's default: a relay that
// closes idle connections sooner does so without harm (see NOOP check).
const DefaultIdleTimeout = 30 * time.Second

// idleCheckAfter is how long a session may sit unused before it is
// checked with NOOP before its next transaction.
var idleCheckAfter = time.Second

// ErrDelivering is returned by Deliver and DeliverOnce while another
// Deliver or DeliverOnce of the same Outbox runs.
var ErrDelivering = errors.New("outbox: Deliver is already running")

// Report counts the outcomes of delivery attempts.
type Report struct {
	Sent     int // messages delivered to every remaining recipient
	Deferred int // attempts that left recipients queued for a retry
	Bounced  int // messages moved to dead letters
}

// Deliver runs delivery workers for every account until ctx ends, and
// returns ctx's error then. Messages enqueued through this Outbox wake it
// at once; changes made by other processes are seen within PollInterval.
// Messages for account names not in accounts stay queued. Only one
// Deliver or DeliverOnce runs per Outbox at a time.
func (o *Outbox) Deliver(ctx context.Context, accounts map[string]Account) error {
	if o.opts.SkipRecovery {
		return errSkipRecovery
	}
	if !o.deliverMu.TryLock() {
		return ErrDelivering
	}
	defer o.deliverMu.Unlock()
	if err := o.rescan(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(o.opts.PollInterval)
		defer t.Stop()
		lastPrune := time.Time{}
		for {
			if time.Since(lastPrune) > time.Hour {
				o.prune()
				lastPrune = time.Now()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := o.rescan(); err != nil {
					o.log.Warn("outbox: rescan", "error", err)
				}
			}
		}
	})
	var rep report
	o.deliverGenerations(ctx, &wg, accounts, &rep)
	wg.Wait()
	if err := o.flushSent(); err != nil {
		o.log.Warn("outbox: flush sent records", "error", err)
	}
	return ctx.Err()
}

// DeliverOnce delivers every message that is due now, then returns; for
// one-shot runs. Messages deferred during the run are not retried in it.
func (o *Outbox) DeliverOnce(ctx context.Context, accounts map[string]Account) (Report, error) {
	if o.opts.SkipRecovery {
		return Report{}, errSkipRecovery
	}
	if !o.deliverMu.TryLock() {
		return Report{}, ErrDelivering
	}
	defer o.deliverMu.Unlock()
	if err := o.rescan(); err != nil {
		return Report{}, err
	}
	var wg sync.WaitGroup
	var rep report
	o.startWorkers(ctx, &wg, accounts, true, &rep, nil)
	wg.Wait()
	err := o.flushSent()
	return Report{Sent: int(rep.sent.Load()), Deferred: int(rep.deferred.Load()), Bounced: int(rep.bounced.Load())}, errors.Join(ctx.Err(), err)
}

type report struct{ sent, deferred, bounced atomic.Int64 }

// startWorkers starts the workers of accounts; each ends when ctx does,
// or, after its batch in flight, when stop is closed (nil: never).
func (o *Outbox) startWorkers(ctx context.Context, wg *sync.WaitGroup, accounts map[string]Account, once bool, rep *report, stop <-chan struct{}) {
	// One rate limiter and one circuit per account, shared by its own
	// workers and by the workers failing over to it.
	routes := make(map[string]*route, len(accounts))
	for name, acct := range accounts {
		r := &route{name: name, acct: acct, health: &health{}}
		if acct.RatePerSecond > 0 {
			r.lim = &limiter{interval: time.Duration(float64(time.Second) / acct.RatePerSecond)}
		}
		routes[name] = r
	}
	for name, acct := range accounts {
		chain := o.chain(name, routes)
		for range max(acct.Concurrency, 1) {
			w := &worker{o: o, queue: name, routes: chain, once: once, rep: rep, stop: stop}
			w.use(chain[0])
			wg.Go(func() { w.run(ctx) })
		}
	}
}

// limiter spaces sends of one account evenly.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	next     time.Time
}

func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	t := l.next
	if t.Before(now) {
		t = now
	}
	l.next = t.Add(l.interval)
	l.mu.Unlock()
	if d := t.Sub(now); d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// worker delivers one account's messages over one SMTP session at a time,
// reusing it for as long as messages are due.
type worker struct {
	o *Outbox
	// queue is the account whose messages the worker delivers; routes
	// are the accounts it may deliver them through: queue's own first,
	// then its fallbacks (see session).
	queue  string
	routes []*route
	once   bool
	rep    *report
	stop   <-chan struct{} // closed: finish the batch, then end (SetAccounts)

	// The account of the session (routes[0], or a fallback while that
	// one fails): connect opens sessions for name and acct.
	route *route
	name  string
	acct  Account

	c    *smtp.Client
	tls  bool
	user string // authenticated user, "" without AUTH
	// idleSince is when the session last went idle (zero: in use).
	idleSince time.Time

	closing sync.WaitGroup // files being closed after a batch
}

func (w *worker) run(ctx context.Context) {
	defer w.closing.Wait() // every file unlocked before the worker is done
	defer w.closeSession(ctx)
	for ctx.Err() == nil && !w.retired() {
		e, due, changed := w.o.idx.claim(w.queue, w.o.opts.Now())
		if e != nil {
			w.deliverBatch(ctx, e)
			continue
		}
		if w.once {
			return
		}
		// Idle: end the batch and make the sent records durable. The
		// session stays open for IdleTimeout, so the next burst reuses
		// it; after that it is closed rather than hold a relay
		// connection open for nothing.
		idle := w.acct.IdleTimeout
		if idle == 0 {
			idle = DefaultIdleTimeout
		}
		if idle < 0 {
			w.closeSession(ctx)
		}
		w.closing.Wait() // the batch's moves into sent/ are done
		if err := w.o.flushSent(); err != nil {
			w.o.log.Warn("outbox: flush sent records", "error", err)
		}
		w.idleSince = time.Now()
		var timeout, idleEnd <-chan time.Time
		var t, it *time.Timer
		if !due.IsZero() {
			t = time.NewTimer(max(due.Sub(w.o.opts.Now()), time.Millisecond))
			timeout = t.C
		}
	wait:
		if w.c != nil && idle > 0 {
			it = time.NewTimer(idle - time.Since(w.idleSince))
			idleEnd = it.C
		}
		select {
		case <-ctx.Done():
		case <-w.stop:
		case <-changed:
		case <-timeout:
		case <-idleEnd:
			w.closeSession(ctx)
			idleEnd = nil
			goto wait
		}
		if t != nil {
			t.Stop()
		}
		if it != nil {
			it.Stop()
		}
	}
}

// checkIdle makes sure a session that sat unused for a while is still
// there before it carries mail: a NOOP round trip, far cheaper than a
// new session. A session the server closed meanwhile (idle timeout,
// restart) is dropped here, so session opens a fresh one instead of a
// message failing with the dead connection's error.
func (w *worker) checkIdle(ctx context.Context) {
	if w.c == nil || w.idleSince.IsZero() {
		return
	}
	since := w.idleSince
	w.idleSince = time.Time{}
	if time.Since(since) < idleCheckAfter {
		return
	}
	if _, err := w.c.Noop(ctx); err != nil {
		w.o.log.Debug("outbox: idle session gone, reconnecting", "account", w.name, "idle", time.Since(since).Round(time.Millisecond), "error", err)
		w.dropSession()
	}
}

func (w *worker) closeSession(ctx context.Context) {
	if w.c == nil {
		return
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = w.c.Quit(qctx)
	w.dropSession()
}

func (w *worker) dropSession() {
	if w.c != nil {
		w.c.Close()
		w.c = nil
	}
	w.tls, w.user = false, ""
	w.idleSince = time.Time{}
}

// connect opens and authenticates a session.
func (w *worker) connect(ctx context.Context) error {
	d := w.acct.Dialer
	if d == nil {
		d = &smtp.Dialer{}
	}
	if w.acct.Transcript != nil {
		if tw := w.acct.Transcript(); tw != nil {
			dc := *d // the account's dialer is shared by its sessions
			if dc.Debug != nil {
				dc.Debug = io.MultiWriter(dc.Debug, tw)
			} else {
				dc.Debug = tw
			}
			d = &dc
		}
	}
	c, err := d.Dial(ctx, w.acct.Addr)
	if err != nil {
		w.observeSession(err)
		return err
	}
	_, w.tls = c.TLSConnectionState()
	w.user = ""
	if w.acct.OAuth2 != nil {
		// A refused token is refreshed once and retried once by
		// LoginOAuth2; any failure, a token endpoint that is down or a
		// revoked grant included, is the account's problem and waits
		// for the next attempt with the advice in the last error.
		if err := c.LoginOAuth2(ctx, w.acct.Username, w.acct.OAuth2, w.acct.OAuth2Mechanism); err != nil {
			c.Close()
			w.observeSession(err)
			return &connectPhaseError{fmt.Errorf("outbox: OAuth2 login for account %q: %w", w.name, err)}
		}
		w.user = w.acct.Username
	} else if w.acct.Username != "" {
		pass := ""
		if w.acct.Password != nil {
			if pass, err = w.acct.Password(); err != nil {
				c.Close()
				w.observeSession(err)
				return &connectPhaseError{fmt.Errorf("outbox: password for account %q: %w", w.name, err)}
			}
		}
		if err := c.Login(ctx, w.acct.Username, pass); err != nil {
			c.Close()
			w.observeSession(err)
			return &connectPhaseError{err}
		}
		w.user = w.acct.Username
	}
	// With CHUNKING, SendBatch could keep several messages in flight;
	// one at a time keeps the duplicate window at one message (see "The
	// duplicate window" in doc.go) and still costs one round trip per
	// message.
	c.BatchWindow = 1
	w.c = c
	w.observeSession(nil)
	return nil
}

// connectPhaseError marks failures to set up a session (after the dial):
// login, password lookup. They are the account's problem, not the
// message's, so they are always retried.
type connectPhaseError struct{ err error }

func (e *connectPhaseError) Error() string { return e.err.Error() }
func (e *connectPhaseError) Unwrap() error { return e.err }

// maxBatch bounds how many due messages one session carries in a row
// with SendBatch (one round trip per message instead of two).
const maxBatch = 32

// prepared is a claimed message, locked and read, ready to send.
type prepared struct {
	e    *entry
	lf   *lockedFile
	it   Item
	data []byte
	// wire is what goes out: data, DKIM-signed when the account signs.
	wire []byte
}

// prepare locks and reads a claimed message; nil when it is not there to
// send (delivered or deleted elsewhere, busy, unreadable: all settled).
func (w *worker) prepare(e *entry) *prepared {
	o := w.o
	path := o.path(StateQueued, e.item.ID)
	lf, err := lockFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			o.idx.settle(e, nil, nil) // delivered or deleted elsewhere
			return nil
		}
		if !errors.Is(err, ErrBusy) {
			o.log.Warn("outbox: open queued message", "id", e.item.ID, "error", err)
		}
		// Busy: another process is on it. Look again after a poll.
		it := e.item
		it.NextAttempt = o.opts.Now().Add(o.opts.PollInterval)
		o.idx.settle(e, &it, e.fi)
		return nil
	}
	if lf.sentMarked() {
		// Delivered by a process that died before moving it: finish that.
		o.moveSent(path, o.path(StateSent, e.item.ID))
		lf.unlock()
		o.idx.settle(e, nil, nil)
		return nil
	}
	it, data, raw, err := lf.readRaw()
	if err != nil {
		o.settleUnreadable(e, lf, raw, err)
		lf.unlock()
		return nil
	}
	return &prepared{e: e, lf: lf, it: it, data: data}
}

// settleUnreadable settles a claimed message whose file (held in lf)
// could not be read: a damaged one is moved to corrupt/, never sent or
// deleted; after an I/O error it stays in place and is tried again later.
func (o *Outbox) settleUnreadable(e *entry, lf *lockedFile, raw []byte, err error) {
	if errors.Is(err, ErrCorrupt) {
		if _, qerr := o.quarantine(lf.path, e.item.ID, StateQueued, raw); qerr == nil {
			o.idx.settle(e, nil, nil)
			return
		}
	}
	o.log.Error("outbox: unreadable queued message left in place", "id", e.item.ID, "error", err)
	it := e.item
	it.NextAttempt = o.opts.Now().Add(o.opts.Backoff.Max)
	o.idx.settle(e, &it, e.fi)
}

// deliverBatch makes one attempt at first and at the other messages due
// now, in batches of up to maxBatch over one session. While a batch is on
// the wire the next one is claimed and read from the spool, so file work
// overlaps the SMTP exchange. With a rate limit, messages go one at a time
// so the limit holds per message.
func (w *worker) deliverBatch(ctx context.Context, first *entry) {
	batch := w.collect(ctx, first)
	for len(batch) > 0 {
		var next chan []*prepared
		if w.routes[0].lim == nil && ctx.Err() == nil {
			next = make(chan []*prepared, 1)
			go func() { next <- w.collect(ctx, nil) }()
		}
		w.sendBatch(ctx, batch)
		if next == nil {
			return
		}
		batch = <-next
	}
}

// collect prepares first (if any) and claims and prepares more due
// messages, up to maxBatch (one with a rate limit on the account). It
// runs alongside sendBatch, so it touches none of the session's fields.
func (w *worker) collect(ctx context.Context, first *entry) []*prepared {
	batch := make([]*prepared, 0, maxBatch)
	if first != nil {
		if p := w.prepare(first); p != nil {
			batch = append(batch, p)
		}
	}
	lim := w.routes[0].lim
	for (lim == nil || first == nil && len(batch) == 0) && len(batch) < maxBatch && ctx.Err() == nil {
		e, _, _ := w.o.idx.claim(w.queue, w.o.opts.Now())
		if e == nil {
			break
		}
		if p := w.prepare(e); p != nil {
			batch = append(batch, p)
		}
	}
	return batch
}

// sendBatch makes one attempt at each prepared message and unlocks them.
func (w *worker) sendBatch(ctx context.Context, batch []*prepared) {
	defer func() {
		// Closing the files (which drops their locks) is off the
		// delivery path: every message is settled by now, and the
		// worker can start the next batch at once.
		w.closing.Go(func() {
			var receipts []receipt
			for _, p := range batch {
				if p.lf.moveTo != "" {
					w.o.settleSent(p.lf.path, p.lf.moveTo, p.lf.sentRecord)
					receipts = append(receipts, p.lf.receipt)
				}
				p.lf.unlock()
			}
			w.o.writeReceipts(receipts)
		})
	}()
	if len(batch) == 0 {
		return
	}
	// The session's account (the message's own or a fallback) decides
	// the rate limit: a message sent through a fallback counts against
	// the fallback's.
	if !w.open(ctx, batch) {
		return
	}
	if w.route.lim != nil || len(batch) == 1 {
		// One message at a time, each waiting its turn under the rate
		// limit (a batch collected for an account without a limit may be
		// going out through a fallback with one).
		for i, p := range batch {
			if i > 0 && !w.open(ctx, batch[i:]) {
				return
			}
			if err := w.route.lim.wait(ctx); err != nil {
				for _, q := range batch[i:] {
					w.o.idx.settle(q.e, &q.it, q.e.fi)
				}
				return
			}
			// Signed by the session's account, which after a failover
			// is the fallback, with its own key.
			if len(w.sign(ctx, []*prepared{p})) == 0 {
				continue
			}
			refused, reply, err := w.c.SendMailReply(ctx, p.it.From, p.it.To, p.wire, w.acct.SendOptions)
			w.finish(ctx, p.e, p.lf, &p.it, p.data, refused, reply, err)
		}
		return
	}
	w.sendReady(ctx, w.sign(ctx, batch))
}

// sign sets the bytes each message goes out as and returns the messages
// that can go. The spool keeps the unsigned bytes, so each attempt is
// signed afresh, once, by the account that delivers it; a message that
// cannot be signed is settled as refused permanently.
func (w *worker) sign(ctx context.Context, batch []*prepared) []*prepared {
	ready := batch[:0:0]
	for _, p := range batch {
		p.wire = p.data
		if w.acct.Sign != nil {
			signed, err := w.acct.Sign(p.data)
			if err != nil {
				w.finish(ctx, p.e, p.lf, &p.it, p.data, nil, smtp.Reply{}, &signError{fmt.Errorf("outbox: DKIM-sign for account %q: %w", w.name, err)})
				continue
			}
			p.wire = signed
		}
		ready = append(ready, p)
	}
	return ready
}

// signError is a message the account could not DKIM-sign: retrying cannot
// help, and sending it unsigned would break the account's promise.
type signError struct{ err error }

func (e *signError) Error() string { return e.err.Error() }
func (e *signError) Unwrap() error { return e.err }

// sendReady sends signed messages over the session with SendBatch.
func (w *worker) sendReady(ctx context.Context, batch []*prepared) {
	if len(batch) == 0 {
		return
	}
	out := make([]smtp.Outgoing, len(batch))
	for i, p := range batch {
		out[i] = smtp.Outgoing{From: p.it.From, To: p.it.To, Data: p.wire, Opts: w.acct.SendOptions}
	}
	// A delivered message is marked sent the moment its 250 is read, so a
	// crash re-sends at most the one message in flight. Failures are
	// recorded after the batch: finishing one may drop the session the
	// batch is still using.
	finished := make([]bool, len(batch))
	results := w.c.SendBatch(ctx, out, func(i int, r smtp.BatchResult) {
		if r.Err == nil {
			p := batch[i]
			w.finish(ctx, p.e, p.lf, &p.it, p.data, r.Refused, r.Reply, nil)
			finished[i] = true
		}
	})
	for i, p := range batch {
		if !finished[i] {
			w.finish(ctx, p.e, p.lf, &p.it, p.data, results[i].Refused, results[i].Reply, results[i].Err)
		}
	}
}

// open opens a session (see session) for batch. When none can be opened
// it records the failed attempt for every message of batch and for every
// other due message of the account, and returns false.
func (w *worker) open(ctx context.Context, batch []*prepared) bool {
	w.checkIdle(ctx)
	err := w.session(ctx)
	if err == nil {
		return true
	}
	for _, p := range batch {
		w.finish(ctx, p.e, p.lf, &p.it, p.data, nil, smtp.Reply{}, err)
	}
	// The relay (and every fallback) is unreachable: every other due
	// message of the account would fail the same way now, so defer them
	// all without dialling again.
	w.deferAllDue(ctx, err)
	return false
}

// deferAllDue records a failed attempt with err for every due message.
func (w *worker) deferAllDue(ctx context.Context, cause error) {
	for ctx.Err() == nil {
		e, _, _ := w.o.idx.claim(w.queue, w.o.opts.Now())
		if e == nil {
			return
		}
		lf, err := lockFile(w.o.path(StateQueued, e.item.ID))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				w.o.idx.settle(e, nil, nil)
			} else {
				it := e.item
				it.NextAttempt = w.o.opts.Now().Add(w.o.opts.PollInterval)
				w.o.idx.settle(e, &it, e.fi)
			}
			continue
		}
		if lf.sentMarked() {
			// Delivered by a process that died before moving it: finish
			// that rather than record a deferral over the mark.
			w.o.moveSent(lf.path, w.o.path(StateSent, e.item.ID))
			lf.unlock()
			w.o.idx.settle(e, nil, nil)
			continue
		}
		it, data, raw, err := lf.readRaw()
		if err != nil {
			w.o.settleUnreadable(e, lf, raw, err)
			lf.unlock()
			continue
		}
		w.finish(ctx, e, lf, &it, data, nil, smtp.Reply{}, cause)
		lf.unlock()
	}
}

// failure classifies a whole-transaction error.
type failure struct {
	temporary bool
	unknown   bool // the server may have accepted the message
	keep      bool // the session is still usable
	reply     Reply
}

func classify(err error) failure {
	f := failure{temporary: true, reply: Reply{Text: err.Error()}}
	var fe *FailoverError
	if errors.As(err, &fe) {
		// Every account failed to open a session: no one server reply
		// says why, the error lists each account's failure.
		return f
	}
	var (
		se  *smtp.SMTPError
		uo  *smtp.UnknownOutcomeError
		ns  *smtp.NotSupportedError
		cpe *connectPhaseError
		se2 *signError
		ce  *smtp.ConnectError
		te  *smtp.TLSError
	)
	if errors.As(err, &se) {
		f.reply = Reply{Command: se.Command, Code: se.Code, Text: se.Message}
		if !se.Enhanced.IsZero() {
			f.reply.Enhanced = se.Enhanced.String()
		}
	}
	switch {
	case errors.As(err, &cpe), errors.As(err, &ce), errors.As(err, &te):
		// Cannot open a session (refused, greeting 554, bad certificate,
		// wrong password): an account problem an operator can fix, so the
		// message waits rather than bounces.
	case errors.As(err, &se2):
		// Nothing was sent; the session goes on.
		f.temporary, f.keep = false, true
	case errors.As(err, &uo):
		f.unknown = true
	case errors.As(err, &ns):
		// The message needs an extension the server lacks (SMTPUTF8,
		// REQUIRETLS, SIZE): retrying cannot help.
		f.temporary, f.keep = false, true
	case se != nil:
		// Refused MAIL, DATA or message: the client has reset the
		// transaction, the session goes on.
		f.temporary, f.keep = se.Temporary(), true
	}
	return f
}

// finish records the outcome of an attempt and settles e. lf is held.
// final is the server's reply to the final dot when the message was
// accepted for some recipient.
func (w *worker) finish(ctx context.Context, e *entry, lf *lockedFile, it *Item, data []byte, refused smtp.Refusals, final smtp.Reply, err error) {
	o := w.o
	now := o.opts.Now()
	pending := it.To

	var rre *smtp.RecipientsRefusedError
	if errors.As(err, &rre) {
		refused, err = rre.Recipients, nil
	}
	var f failure
	if err != nil {
		f = classify(err)
		if !f.keep {
			w.dropSession()
		}
		if ctx.Err() != nil && !f.unknown {
			// Interrupted by shutdown: no verdict on the message, and no
			// attempt counted.
			o.idx.settle(e, it, e.fi)
			return
		}
	}
	// Via records a fallback's session; the sent/ record must be
	// rewritten when it changes (see sent).
	via := ""
	if w.name != w.queue {
		via = w.name
	}
	viaChanged := it.Via != via
	it.Via = via
	it.Attempts++
	it.LastAttempt = now
	var temp []string
	var tempReply = map[string]Reply{}
	if err != nil {
		if f.temporary {
			temp = pending
			for _, r := range pending {
				tempReply[r] = f.reply
			}
		} else {
			for _, r := range pending {
				it.Refused = append(it.Refused, Refusal{Recipient: r, Reply: f.reply, At: now})
			}
		}
		it.LastError, it.LastReply = err.Error(), &f.reply
	} else {
		for _, r := range pending {
			se, ok := refused[r]
			switch {
			case !ok:
				it.Delivered = append(it.Delivered, r)
			case se.Temporary():
				temp = append(temp, r)
				tempReply[r] = smtpReply(se)
			default:
				it.Refused = append(it.Refused, Refusal{Recipient: r, Reply: smtpReply(se), At: now})
			}
		}
		it.LastError, it.LastReply = "", nil
		if final.Code != 0 {
			it.Reply = final.String()
		}
		if len(refused) > 0 {
			// While recipients wait, the last error is why they wait;
			// permanent refusals stay in Refused.
			first := refused[slices.Sorted(maps.Keys(refused))[0]]
			if len(temp) > 0 {
				first = refused[temp[0]]
			}
			rp := smtpReply(first)
			it.LastError, it.LastReply = first.Error(), &rp
		}
	}
	it.To = temp
	it.Waiting = nil
	for _, r := range temp {
		it.Waiting = append(it.Waiting, Refusal{Recipient: r, Reply: tempReply[r], At: now})
	}
	var outcome string
	switch {
	case len(temp) > 0 && now.Sub(it.Created) >= o.opts.MaxAge:
		for _, r := range temp {
			it.Refused = append(it.Refused, Refusal{Recipient: r, Reply: tempReply[r], At: now})
		}
		outcome = w.bury(e, lf, it, data, "maximum queue age exceeded")
	case len(temp) > 0:
		outcome = w.deferMsg(e, lf, it, data, len(it.Delivered) > 0 || len(it.Refused) > 0)
	case len(it.Refused) > 0:
		outcome = w.bury(e, lf, it, data, "refused permanently")
	default:
		outcome = w.sent(e, lf, it, data, viaChanged)
	}
	w.logAttempt(ctx, it, pending, len(data), outcome, f, final, err)
	w.observeDelivery(it, pending, data, outcome)
	if outcome == "bounced" {
		o.deadLettered(*it)
	}
}

func smtpReply(se *smtp.SMTPError) Reply {
	r := Reply{Command: se.Command, Code: se.Code, Text: se.Message}
	if !se.Enhanced.IsZero() {
		r.Enhanced = se.Enhanced.String()
	}
	return r
}

// backoff returns the delay before attempt number attempts+1.
func (o *Outbox) backoff(attempts int) time.Duration {
	b := o.opts.Backoff
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(max(attempts-1, 0)))
	d = math.Min(d, float64(b.Max))
	d *= 1 + b.Jitter*(2*o.opts.Rand()-1)
	return time.Duration(d)
}

// deferMsg rewrites the queued file with the new schedule. The rewrite is
// flushed only when recipients were delivered or refused in this attempt
// (losing that would re-send to them); losing a plain deferral to a power
// failure only brings the retry forward.
func (w *worker) deferMsg(e *entry, lf *lockedFile, it *Item, data []byte, progress bool) string {
	o := w.o
	it.Seq++
	it.NextAttempt = it.LastAttempt.Add(o.backoff(it.Attempts))
	content, err := encodeFile(it, data)
	if err == nil {
		err = o.replaceFile(lf.path, content, progress)
	}
	if err != nil {
		o.log.Error("outbox: record deferral", "id", it.ID, "error", err)
	}
	o.ctr.deferred.Add(1)
	w.rep.deferred.Add(1)
	o.idx.settle(e, it, nil)
	return "deferred"
}

// bury moves the message to dead/ with its replies: the new file is
// written and flushed first, then the queued one removed, so a crash in
// between leaves two copies, which Open settles by Seq.
func (w *worker) bury(e *entry, lf *lockedFile, it *Item, data []byte, reason string) string {
	o := w.o
	it.Seq++
	it.State = StateDead
	it.DeadAt, it.DeadReason = it.LastAttempt, reason
	pending, waiting := it.To, it.Waiting
	it.To, it.Waiting = nil, nil
	for _, r := range it.Refused {
		it.To = append(it.To, r.Recipient)
	}
	content, err := encodeFile(it, data)
	if err == nil {
		err = o.replaceFile(o.path(StateDead, it.ID), content, true)
	}
	if err != nil {
		o.log.Error("outbox: move to dead letters failed; message stays queued", "id", it.ID, "error", err)
		it.State, it.Seq = StateQueued, it.Seq-1
		it.To, it.Waiting, it.DeadAt, it.DeadReason = pending, waiting, time.Time{}, ""
		it.NextAttempt = it.LastAttempt.Add(o.opts.Backoff.Max)
		o.idx.settle(e, it, nil)
		return "deferred"
	}
	if err := os.Remove(lf.path); err != nil {
		o.log.Warn("outbox: remove buried message from queue", "id", it.ID, "error", err)
	} else if err := syncDir(lf.path[:len(lf.path)-len(it.ID)-1]); err != nil {
		o.log.Warn("outbox: flush queue", "error", err)
	}
	o.ctr.bounced.Add(1)
	w.rep.bounced.Add(1)
	o.idx.settle(e, nil, nil)
	return "bounced"
}

// sent moves the delivered message to sent/. The rename is the "sent"
// mark: one system call right after the server's 250, so a kill -9 can
// only re-send a message caught between the two. The directory flush is
// batched (see flushSent): a power failure may re-send the messages moved
// since the last flush. With viaChanged (the delivering account, Item.Via,
// differs from what the file says) sent/ gets a new file with this
// attempt's metadata instead, written off the delivery path. Either way a
// receipt (see writeReceipts) records the relay's reply, appended off the
// delivery path too.
func (w *worker) sent(e *entry, lf *lockedFile, it *Item, data []byte, viaChanged bool) string {
	o := w.o
	var record []byte
	if viaChanged {
		rec := *it
		rec.Seq++
		rec.State = StateSent
		rec.SentAt = it.LastAttempt
		var err error
		if record, err = encodeFile(&rec, data); err != nil {
			o.log.Warn("outbox: encode sent record", "id", it.ID, "error", err)
			record = nil
		}
	}
	rc := receipt{ID: it.ID, At: it.LastAttempt, Reply: it.Reply, Attempts: it.Attempts, Via: it.Via}
	if err := lf.markSent(); err == nil {
		// Recorded on the file; the move into sent/ happens when the
		// batch's files are closed, still under the lock.
		lf.moveTo, lf.sentRecord, lf.receipt = o.path(StateSent, it.ID), record, rc
	} else {
		o.settleSent(lf.path, o.path(StateSent, it.ID), record)
		o.writeReceipts([]receipt{rc})
	}
	o.ctr.sent.Add(1)
	w.rep.sent.Add(1)
	o.idx.settle(e, nil, nil)
	return "sent"
}

// logAttempt writes the one record per delivery attempt, with the fields
// msmtp logs per delivery. Credentials are never among them.
func (w *worker) logAttempt(ctx context.Context, it *Item, rcpts []string, size int, outcome string, f failure, final smtp.Reply, err error) {
	level, msg := slog.LevelInfo, "outbox: delivered"
	code, text, enhanced := 250, "", ""
	if it.LastReply != nil {
		code, text, enhanced = it.LastReply.Code, it.LastReply.Text, it.LastReply.Enhanced
	}
	switch {
	case f.unknown:
		level, msg = slog.LevelWarn, "outbox: delivery outcome unknown, will retry: the message may arrive twice"
		outcome = "unknown-" + outcome
	case outcome == "deferred":
		level, msg = slog.LevelWarn, "outbox: deferred"
	case outcome == "bounced":
		level, msg = slog.LevelError, "outbox: bounced to dead letters"
	}
	if err == nil && it.LastReply == nil {
		code = 250
		if final.Code != 0 {
			code, text, enhanced = final.Code, final.Text(), final.Enhanced.String()
		}
	}
	attrs := []slog.Attr{
		slog.String("id", it.ID),
		slog.String("outcome", outcome),
		slog.String("account", w.name),
		slog.String("host", w.acct.Addr),
		slog.Bool("tls", w.tls),
		slog.String("auth_user", w.user),
		slog.String("from", it.From),
		slog.Any("recipients", rcpts),
		slog.Int("size", size),
		slog.Int("smtp_code", code),
		slog.String("smtp_enhanced", enhanced),
		slog.String("smtp_text", text),
		slog.Int("attempt", it.Attempts),
		slog.String("message_id", it.MessageID),
	}
	if final.Code != 0 {
		// The relay's reply to the message ("250 2.0.0 Ok: queued as
		// 4Zx..."): its queue id traces the delivery in the relay's logs.
		attrs = append(attrs, slog.String("reply", final.String()))
	}
	if w.name != w.queue {
		attrs = append(attrs, slog.String("fallback_for", w.queue))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	if outcome == "deferred" || outcome == "unknown-deferred" {
		attrs = append(attrs, slog.Time("next_attempt", it.NextAttempt), slog.Any("pending", it.To))
	}
	w.o.log.LogAttrs(ctx, level, msg, attrs...)
}
