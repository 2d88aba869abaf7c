package outbox

import (
	"context"
	"errors"
	"fmt"
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
	// so a rotated secret is picked up. Neither is ever logged.
	Username string
	Password func() (string, error)
	// Concurrency is the number of parallel sessions; default 1.
	Concurrency int
	// RatePerSecond caps messages per second over all sessions of the
	// account; 0 means no cap. It uses the real clock.
	RatePerSecond float64
	// SendOptions are passed to every SendMail (DSN, REQUIRETLS...).
	SendOptions *smtp.SendOptions
}

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
	if !o.deliverMu.TryLock() {
		return errors.New("outbox: Deliver is already running")
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
	o.startWorkers(ctx, &wg, accounts, false, &rep)
	wg.Wait()
	if err := o.flushSent(); err != nil {
		o.log.Warn("outbox: flush sent records", "error", err)
	}
	return ctx.Err()
}

// DeliverOnce delivers every message that is due now, then returns; for
// one-shot runs. Messages deferred during the run are not retried in it.
func (o *Outbox) DeliverOnce(ctx context.Context, accounts map[string]Account) (Report, error) {
	if !o.deliverMu.TryLock() {
		return Report{}, errors.New("outbox: Deliver is already running")
	}
	defer o.deliverMu.Unlock()
	if err := o.rescan(); err != nil {
		return Report{}, err
	}
	var wg sync.WaitGroup
	var rep report
	o.startWorkers(ctx, &wg, accounts, true, &rep)
	wg.Wait()
	err := o.flushSent()
	return Report{Sent: int(rep.sent.Load()), Deferred: int(rep.deferred.Load()), Bounced: int(rep.bounced.Load())}, errors.Join(ctx.Err(), err)
}

type report struct{ sent, deferred, bounced atomic.Int64 }

func (o *Outbox) startWorkers(ctx context.Context, wg *sync.WaitGroup, accounts map[string]Account, once bool, rep *report) {
	for name, acct := range accounts {
		n := max(acct.Concurrency, 1)
		var lim *limiter
		if acct.RatePerSecond > 0 {
			lim = &limiter{interval: time.Duration(float64(time.Second) / acct.RatePerSecond)}
		}
		for range n {
			w := &worker{o: o, name: name, acct: acct, once: once, lim: lim, rep: rep}
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
//
// Each worker has a helper goroutine for the spool work around the
// transactions: while the worker sends one batch of messages, the helper
// claims, locks and reads the next batch, and moves the messages of the
// previous batch to sent/. The worker itself only marks a delivered
// message (markDelivered, one fchmod(2)) right after the server's 250.
// Batches rather than single messages go back and forth so that the
// helper runs long enough to be scheduled on another CPU instead of
// taking turns with the SMTP conversation on one. The worker has at most
// one request outstanding with its helper.
type worker struct {
	o    *Outbox
	name string
	acct Account
	once bool
	lim  *limiter
	rep  *report

	c    *smtp.Client
	tls  bool
	user string // authenticated user, "" without AUTH

	reqs        chan helperReq
	resps       chan []*job
	outstanding bool   // a request was sent to the helper and not answered
	ready       []*job // loaded, to be attempted in order
	done        []*job // delivered and marked, to be moved to sent/
}

// maxPrefetch bounds the batch a worker's helper claims ahead: enough to
// keep the helper busy for a while, small enough that the claimed
// messages (locked, invisible to other workers) stay few.
const maxPrefetch = 32

// job is a queued message claimed from the index, locked and read: ready
// for an attempt. The lock is held until the job is settled.
type job struct {
	e    *entry
	lf   *lockedFile
	it   Item
	data []byte

	// Filled in for a delivered job, for its log record: the session may
	// have changed by the time the helper writes it.
	rcpts     []string
	tls       bool
	user      string
	delivered bool
	moved     bool // already in sent/ (the mark failed)
}

// helperReq asks the helper to move sent to sent/ and then to load up to
// load due messages.
type helperReq struct {
	sent []*job
	load int
}

func (w *worker) run(ctx context.Context) {
	w.reqs = make(chan helperReq, 1)
	w.resps = make(chan []*job, 1)
	var helper sync.WaitGroup
	helper.Go(func() {
		for r := range w.reqs {
			for _, j := range r.sent {
				w.moveSent(ctx, j)
			}
			var js []*job
			for range r.load {
				j, _, _ := w.load()
				if j == nil {
					break
				}
				js = append(js, j)
			}
			w.resps <- js
		}
	})
	defer func() {
		// Give back what was claimed but not attempted; finish moving
		// what was delivered.
		w.collect()
		for _, j := range w.ready {
			w.release(j)
		}
		w.ready = nil
		if len(w.done) > 0 {
			w.ask(0)
			w.collect()
		}
		close(w.reqs)
		helper.Wait()
		w.closeSession(ctx)
	}()
	for ctx.Err() == nil {
		if len(w.ready) == 0 {
			w.collect()
		}
		if len(w.ready) == 0 {
			// Nothing was prefetched (or the prefetch found nothing due):
			// look again now, with the helper idle.
			j, due, changed := w.load()
			if j == nil {
				if len(w.done) > 0 {
					// Move the delivered messages before the idle flush.
					w.ask(0)
					w.collect()
					continue
				}
				if w.once {
					return
				}
				w.idle(ctx, due, changed)
				continue
			}
			w.ready = append(w.ready, j)
		}
		if !w.outstanding {
			// Load the next batch while this one goes out.
			w.ask(w.prefetchSize(len(w.ready)))
		}
		j := w.ready[0]
		w.ready[0] = nil
		w.ready = w.ready[1:]
		w.attempt(ctx, j)
		if j.delivered {
			w.done = append(w.done, j)
		} else {
			j.lf.unlock()
		}
	}
}

// prefetchSize is how many messages to claim ahead, given have in hand.
// With several workers per account it leaves them a fair share of the
// due messages.
func (w *worker) prefetchSize(have int) int {
	n := max(w.o.idx.dueLen(w.name, w.o.opts.Now())/max(w.acct.Concurrency, 1), 1)
	return max(min(n, maxPrefetch, maxPrefetch-have), 1)
}

// ask sends the delivered messages to the helper and asks for the next
// load messages; no request may be outstanding.
func (w *worker) ask(load int) {
	w.reqs <- helperReq{sent: w.done, load: load}
	w.done = nil
	w.outstanding = true
}

// collect waits for the helper's answer, if a request is outstanding, and
// appends the messages it loaded to w.ready. When it returns, every
// delivered message handed to the helper has been moved to sent/.
func (w *worker) collect() {
	if !w.outstanding {
		return
	}
	w.outstanding = false
	w.ready = append(w.ready, <-w.resps...)
}

// release gives a claimed job back to the index unchanged.
func (w *worker) release(j *job) {
	j.lf.unlock()
	w.o.idx.settle(j.e, &j.it, j.e.fi)
}

// idle ends a batch: it closes the session rather than hold a relay
// connection open, makes the sent records durable, and waits until a
// message is due or the queue changes.
func (w *worker) idle(ctx context.Context, due time.Time, changed <-chan struct{}) {
	w.closeSession(ctx)
	if err := w.o.flushSent(); err != nil {
		w.o.log.Warn("outbox: flush sent records", "error", err)
	}
	var timeout <-chan time.Time
	if !due.IsZero() {
		t := time.NewTimer(max(due.Sub(w.o.opts.Now()), time.Millisecond))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
	case <-changed:
	case <-timeout:
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
}

// connect opens and authenticates a session.
func (w *worker) connect(ctx context.Context) error {
	d := w.acct.Dialer
	if d == nil {
		d = &smtp.Dialer{}
	}
	c, err := d.Dial(ctx, w.acct.Addr)
	if err != nil {
		return err
	}
	_, w.tls = c.TLSConnectionState()
	w.user = ""
	if w.acct.Username != "" {
		pass := ""
		if w.acct.Password != nil {
			if pass, err = w.acct.Password(); err != nil {
				c.Close()
				return &connectPhaseError{fmt.Errorf("outbox: password for account %q: %w", w.name, err)}
			}
		}
		if err := c.Login(ctx, w.acct.Username, pass); err != nil {
			c.Close()
			return &connectPhaseError{err}
		}
		w.user = w.acct.Username
	}
	w.c = c
	return nil
}

// connectPhaseError marks failures to set up a session (after the dial):
// login, password lookup. They are the account's problem, not the
// message's, so they are always retried.
type connectPhaseError struct{ err error }

func (e *connectPhaseError) Error() string { return e.err.Error() }
func (e *connectPhaseError) Unwrap() error { return e.err }

// load claims the account's earliest due message, locks and reads it. It
// returns nil when nothing is due, with the next due time (zero if none)
// and the channel closed on the next change of the queue. Messages that
// are gone, busy (another process is delivering them) or unreadable are
// settled on the way and skipped.
func (w *worker) load() (*job, time.Time, <-chan struct{}) {
	o := w.o
	for {
		e, due, changed := o.idx.claim(w.name, o.opts.Now())
		if e == nil {
			return nil, due, changed
		}
		lf, err := lockFile(o.path(StateQueued, e.item.ID))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				o.idx.settle(e, nil, nil) // delivered or deleted elsewhere
				continue
			}
			if !errors.Is(err, ErrBusy) {
				o.log.Warn("outbox: open queued message", "id", e.item.ID, "error", err)
			}
			// Busy: another process is on it. Look again after a poll.
			it := e.item
			it.NextAttempt = o.opts.Now().Add(o.opts.PollInterval)
			o.idx.settle(e, &it, e.fi)
			continue
		}
		if lf.delivered {
			// Delivered by a process that died before moving it.
			o.finishMove(lf, e.item.ID)
			lf.unlock()
			o.idx.settle(e, nil, nil)
			continue
		}
		it, data, err := lf.read()
		if err != nil {
			lf.unlock()
			o.log.Error("outbox: unreadable queued message left in place", "id", e.item.ID, "error", err)
			it := e.item
			it.NextAttempt = o.opts.Now().Add(o.opts.Backoff.Max)
			o.idx.settle(e, &it, e.fi)
			continue
		}
		return &job{e: e, lf: lf, it: it, data: data}, time.Time{}, nil
	}
}

// attempt makes one delivery attempt at j and records its outcome, except
// that a delivered job is only flagged (j.delivered): the caller has it
// marked sent.
func (w *worker) attempt(ctx context.Context, j *job) {
	if err := w.lim.wait(ctx); err != nil {
		w.o.idx.settle(j.e, &j.it, j.e.fi)
		return
	}
	if w.c == nil {
		if err := w.connect(ctx); err != nil {
			w.finish(ctx, j, nil, err)
			// The relay is unreachable: every other due message of the
			// account would fail the same way now, so defer them all
			// without dialling again.
			w.deferAllDue(ctx, err)
			return
		}
	}
	refused, err := w.c.SendMail(ctx, j.it.From, j.it.To, j.data, w.acct.SendOptions)
	w.finish(ctx, j, refused, err)
}

// deferAllDue records a failed attempt with cause for every due message,
// the prefetched ones first.
func (w *worker) deferAllDue(ctx context.Context, cause error) {
	w.collect()
	for ctx.Err() == nil {
		var j *job
		if len(w.ready) > 0 {
			j, w.ready = w.ready[0], w.ready[1:]
		} else if j, _, _ = w.load(); j == nil {
			return
		}
		w.finish(ctx, j, nil, cause)
		j.lf.unlock()
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
	var (
		se  *smtp.SMTPError
		uo  *smtp.UnknownOutcomeError
		ns  *smtp.NotSupportedError
		cpe *connectPhaseError
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

// finish records the outcome of an attempt and settles j, which is held;
// a delivered job is only flagged, for the helper to mark sent.
func (w *worker) finish(ctx context.Context, j *job, refused smtp.Refusals, err error) {
	o := w.o
	e, lf, it, data := j.e, j.lf, &j.it, j.data
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
		if len(refused) > 0 {
			first := refused[slices.Sorted(maps.Keys(refused))[0]]
			rp := smtpReply(first)
			it.LastError, it.LastReply = first.Error(), &rp
		}
	}
	it.To = temp
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
		// The "sent" mark, right after the 250 and before anything else.
		if err := markDelivered(lf); err != nil {
			// Not marked: move it now, as the mark would have said.
			o.log.Warn("outbox: mark delivered message", "id", it.ID, "error", err)
			o.finishMove(lf, it.ID)
			j.moved = true
		}
		j.delivered, j.rcpts, j.tls, j.user = true, pending, w.tls, w.user
		return
	}
	w.logAttempt(ctx, it, pending, len(data), outcome, f, err, w.tls, w.user)
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
	it.To = nil
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

// moveSent moves a delivered, marked message to sent/ and releases it.
// The helper does this while the worker already sends the next messages;
// the mark made it safe to wait (see "The duplicate window" in the package
// documentation). The directory flush is batched (see flushSent): a power
// failure may re-send the messages moved since the last flush.
func (w *worker) moveSent(ctx context.Context, j *job) {
	o := w.o
	if !j.moved {
		o.finishMove(j.lf, j.it.ID)
	}
	j.lf.unlock()
	o.ctr.sent.Add(1)
	w.rep.sent.Add(1)
	o.idx.settle(j.e, nil, nil)
	w.logAttempt(ctx, &j.it, j.rcpts, len(j.data), "sent", failure{}, nil, j.tls, j.user)
}

// finishMove renames a delivered queued message, which the caller holds,
// into sent/.
func (o *Outbox) finishMove(lf *lockedFile, id string) {
	if err := renameFile(lf.path, o.path(StateSent, id)); err != nil {
		// Never leave a delivered message queued silently; its mark
		// keeps it from being sent again.
		o.log.Error("outbox: move delivered message to sent", "id", id, "error", err)
		return
	}
	o.markSentDirty()
}

// logAttempt writes the one record per delivery attempt, with the fields
// msmtp logs per delivery. Credentials are never among them.
func (w *worker) logAttempt(ctx context.Context, it *Item, rcpts []string, size int, outcome string, f failure, err error, tls bool, user string) {
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
	}
	attrs := []slog.Attr{
		slog.String("id", it.ID),
		slog.String("outcome", outcome),
		slog.String("account", w.name),
		slog.String("host", w.acct.Addr),
		slog.Bool("tls", tls),
		slog.String("auth_user", user),
		slog.String("from", it.From),
		slog.Any("recipients", rcpts),
		slog.Int("size", size),
		slog.Int("smtp_code", code),
		slog.String("smtp_enhanced", enhanced),
		slog.String("smtp_text", text),
		slog.Int("attempt", it.Attempts),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	if outcome == "deferred" || outcome == "unknown-deferred" {
		attrs = append(attrs, slog.Time("next_attempt", it.NextAttempt), slog.Any("pending", it.To))
	}
	w.o.log.LogAttrs(ctx, level, msg, attrs...)
}
