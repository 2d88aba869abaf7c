package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors callers branch on.
var (
	// ErrNotFound: no message with that id in the state the operation needs.
	ErrNotFound = errors.New("outbox: message not found")
	// ErrBusy: the message is being delivered right now (by this or
	// another process); try again later.
	ErrBusy = errors.New("outbox: message is busy")
	// ErrClosed: the Outbox was closed.
	ErrClosed = errors.New("outbox: closed")
	// ErrInvalidEnvelope: Enqueue got an envelope that could never be
	// delivered (no recipient, CR/LF in an address...).
	ErrInvalidEnvelope = errors.New("outbox: invalid envelope")
)

// Defaults for zero Options fields.
const (
	DefaultMaxAge        = 5 * 24 * time.Hour // Postfix's maximal_queue_lifetime
	DefaultKeyRetention  = 7 * 24 * time.Hour
	DefaultInitialDelay  = time.Minute
	DefaultMaxDelay      = time.Hour
	DefaultMultiplier    = 2.0
	DefaultJitter        = 0.2
	DefaultPollInterval  = 10 * time.Second
	DefaultMaxBatch      = 256
	defaultSentSyncEvery = 256
)

// Backoff shapes the delay before retrying a temporarily failed message:
// Initial * Multiplier^(attempts-1), capped at Max, then multiplied by a
// random factor in [1-Jitter, 1+Jitter] so that messages deferred together
// do not all come back at the same instant.
type Backoff struct {
	Initial    time.Duration // default 1m
	Max        time.Duration // default 1h
	Multiplier float64       // default 2
	Jitter     float64       // 0..1, default 0.2; negative means none
}

// Options configures an Outbox. The zero value gives the defaults.
type Options struct {
	// MaxAge is how long a message may stay queued; a temporary failure
	// after that makes it a dead letter. Default 5 days.
	MaxAge time.Duration
	// KeyRetention is how long an idempotency key is remembered, counted
	// from the first enqueue. Default 7 days.
	KeyRetention time.Duration
	// Backoff shapes retry delays.
	Backoff Backoff
	// PollInterval is how often Deliver rescans the spool for changes made
	// by other processes (a CLI enqueue or retry). Changes made through
	// this Outbox wake Deliver at once. Default 10s.
	PollInterval time.Duration
	// MaxBatch bounds how many concurrent Enqueue calls one disk flush
	// covers. Default 256.
	MaxBatch int
	// Now is the clock; default time.Now. Tests inject a fake.
	Now func() time.Time
	// Rand returns a number in [0, 1) for jitter; default math/rand/v2.
	Rand func() float64
	// Logger receives one record per delivery attempt and spool warnings.
	// Nil discards.
	Logger *slog.Logger
	// OnDeadLetter, when set, is called once each time a delivery
	// attempt makes a message a dead letter (refused permanently, too old,
	// unsignable...), with the dead letter's metadata, unless the message
	// is marked NoAlert. It is called from a delivery worker and must not
	// block: hand the Item to another goroutine. Dead letters already in
	// dead/ when the Outbox opens are never reported.
	OnDeadLetter func(Item)
	// SkipRecovery opens the spool the way `mailbot queue` does: Open
	// creates nothing and runs no crash recovery (damaged files are not
	// moved to corrupt/, interrupted moves are not settled, temp files are
	// not removed), and Enqueue and Deliver are refused. List, Dead, Get,
	// Corrupt, Inspect and Stats then change nothing on disk; Retry,
	// Delete, Requeue and RequeueCorrupt change only the message they
	// name.
	SkipRecovery bool
	// Base names another spool that this one overlays, for dry runs: it
	// is only read, never written or locked. Its idempotency keys count
	// as this spool's: a key the base knows, within KeyRetention and with
	// its message still there, makes Enqueue report a duplicate. See also
	// CopyBaseQueue.
	Base string
	// OnDelivery, when set, is called after every delivery attempt with
	// its outcome (for metrics and the status page). It must not block.
	OnDelivery func(DeliveryEvent)
	// OnSession, when set, is called whenever Deliver tried to open an
	// SMTP session (dial, TLS, login). It must not block.
	OnSession func(SessionEvent)
}

func (o *Options) setDefaults() error {
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.KeyRetention == 0 {
		o.KeyRetention = DefaultKeyRetention
	}
	b := &o.Backoff
	if b.Initial == 0 {
		b.Initial = DefaultInitialDelay
	}
	if b.Max == 0 {
		b.Max = DefaultMaxDelay
	}
	if b.Multiplier == 0 {
		b.Multiplier = DefaultMultiplier
	}
	if b.Jitter == 0 {
		b.Jitter = DefaultJitter
	}
	if b.Jitter < 0 {
		b.Jitter = 0
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.MaxAge < 0 || o.KeyRetention < 0 || o.PollInterval < 0:
		return errors.New("outbox: negative duration in Options")
	case b.Initial < 0 || b.Max < b.Initial:
		return errors.New("outbox: Backoff needs 0 < Initial <= Max")
	case b.Multiplier < 1 || b.Jitter >= 1:
		return errors.New("outbox: Backoff needs Multiplier >= 1 and Jitter < 1")
	}
	return nil
}

// Outbox is a durable mail queue in a spool directory. Its methods are safe
// for concurrent use, and several Outbox values (in one or several
// processes) may share a spool.
type Outbox struct {
	dir   string
	opts  Options
	log   *slog.Logger
	spool *os.File // the spool directory, for syncfs
	lockf *os.File // dir/lock: serialises enqueue batches across processes

	enqCh     chan *enqGroup
	closing   chan struct{}
	closeOnce sync.Once
	committer sync.WaitGroup
	closeErr  error

	idx    index
	lastID time.Time // time part of the last id issued (committer only)

	deliverMu sync.Mutex     // one Deliver/DeliverOnce at a time per Outbox
	accounts  accountsUpdate // SetAccounts hands the running Deliver new accounts

	sentSync  sync.Mutex
	sentDirty int // messages moved to sent/ since the last directory flush

	// The receipts file being appended to (see writeReceipts).
	receiptMu    sync.Mutex
	receiptFile  *os.File
	receiptDay   string
	receiptDirty bool

	ctr struct{ queued, sent, deferred, bounced, corrupt atomic.Int64 }
}

// Envelope says who a message goes to and how it is identified.
type Envelope struct {
	// Account names the delivery account; Deliver's accounts map resolves it.
	Account string
	// From is the envelope sender ("" for the null sender).
	From string
	// To lists the recipients; at least one.
	To []string
	// Key is the idempotency key. Empty means the message's Message-ID
	// header; a message with neither is never deduplicated.
	Key string
}

type enqReq struct {
	env       Envelope
	data      []byte
	messageID string
	subject   string
	noAlert   bool
}

// enqGroup is one Enqueue (one request) or EnqueueBatch (atomic: all or
// nothing) call waiting for the committer, which fills res (and err, for
// an atomic group that failed as a whole) and closes done.
type enqGroup struct {
	reqs   []*enqReq
	atomic bool
	res    []enqRes
	err    error
	done   chan struct{}
}

type enqRes struct {
	id  string
	dup bool
	err error
}

// Open opens (creating if needed) the spool in dir and recovers from any
// crash: damaged files are moved to corrupt/ (never deleted),
// half-finished moves between directories are settled, stale temp files
// are deleted. With Options.SkipRecovery it only opens (see there).
func Open(dir string, opts Options) (*Outbox, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if opts.SkipRecovery {
		o := &Outbox{dir: dir, opts: opts, log: opts.Logger, closing: make(chan struct{})}
		o.idx.init()
		return o, nil
	}
	for _, d := range []string{dirQueue, dirDead, dirSent, dirKeys, dirTmp} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("outbox: create spool: %w", err)
		}
	}
	spool, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: open spool: %w", err)
	}
	lockf, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		spool.Close()
		return nil, fmt.Errorf("outbox: open spool lock: %w", err)
	}
	o := &Outbox{
		dir:     dir,
		opts:    opts,
		log:     opts.Logger,
		spool:   spool,
		lockf:   lockf,
		enqCh:   make(chan *enqGroup, opts.MaxBatch),
		closing: make(chan struct{}),
	}
	o.idx.init()
	if err := o.recover(); err != nil {
		spool.Close()
		lockf.Close()
		return nil, err
	}
	o.committer.Add(1)
	go o.commitLoop()
	return o, nil
}

// Close stops accepting messages, waits for pending Enqueue calls to be
// committed and flushes the record of delivered messages. It does not stop
// a running Deliver: cancel its context. Close is idempotent.
func (o *Outbox) Close() error {
	o.closeOnce.Do(func() {
		close(o.closing)
		if o.opts.SkipRecovery {
			return
		}
		o.committer.Wait()
		err := errors.Join(o.flushSent(), o.syncReceipts(true))
		if e := o.spool.Close(); err == nil {
			err = e
		}
		if e := o.lockf.Close(); err == nil {
			err = e
		}
		o.closeErr = err
	})
	return o.closeErr
}

// Dir returns the spool directory.
func (o *Outbox) Dir() string { return o.dir }

func validAddr(s string) bool {
	return !strings.ContainsAny(s, "\r\n\x00<>") && len(s) <= 1000
}

func checkEnvelope(env *Envelope) error {
	if env.Account == "" || strings.ContainsAny(env.Account, "\r\n\x00") {
		return fmt.Errorf("%w: account %q", ErrInvalidEnvelope, env.Account)
	}
	if !validAddr(env.From) {
		return fmt.Errorf("%w: sender %q", ErrInvalidEnvelope, env.From)
	}
	if len(env.To) == 0 {
		return fmt.Errorf("%w: no recipient", ErrInvalidEnvelope)
	}
	for _, r := range env.To {
		if r == "" || !validAddr(r) {
			return fmt.Errorf("%w: recipient %q", ErrInvalidEnvelope, r)
		}
	}
	return nil
}

// headerFields returns the Message-ID and the decoded Subject header of
// data, "" for each that is missing.
func headerFields(data []byte) (messageID, subject string) {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return "", ""
	}
	subject = m.Header.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	return strings.TrimSpace(m.Header.Get("Message-Id")), strings.TrimSpace(subject)
}

type noAlertKey struct{}

// WithoutAlerts returns a context whose Enqueue calls mark their messages
// NoAlert: their dead-lettering calls no Options.OnDeadLetter. Alert
// handlers enqueue with it, so mail about a dead letter that itself
// bounces raises no new alert.
func WithoutAlerts(ctx context.Context) context.Context {
	return context.WithValue(ctx, noAlertKey{}, true)
}

// deadLettered reports a new dead letter to Options.OnDeadLetter.
func (o *Outbox) deadLettered(it Item) {
	if o.opts.OnDeadLetter == nil || it.NoAlert {
		return
	}
	it.To = slices.Clone(it.To)
	it.Refused = slices.Clone(it.Refused)
	o.opts.OnDeadLetter(it)
}

// Enqueue stores a message for delivery and returns its id. It returns only
// once the message is on stable storage (written, renamed into queue/ and
// flushed), so a crash or power failure after it returns cannot lose it.
// Concurrent calls share one flush (group commit).
//
// If a message with the same idempotency key was enqueued within
// KeyRetention and is still known (queued, dead, or delivered), Enqueue
// stores nothing and returns that message's id with duplicate true.
// data is stored exactly as given; it is not copied, so the caller must
// not modify it until Enqueue returns.
func (o *Outbox) Enqueue(ctx context.Context, env Envelope, data []byte) (id string, duplicate bool, err error) {
	req, err := o.newReq(ctx, env, data)
	if err != nil {
		return "", false, err
	}
	g := &enqGroup{reqs: []*enqReq{req}}
	if err := o.submit(ctx, g); err != nil {
		return "", false, err
	}
	r := g.res[0]
	return r.id, r.dup, r.err
}

// Submission is one message of an EnqueueBatch.
type Submission struct {
	Envelope Envelope
	// Data is the message, stored exactly as given and not copied: the
	// caller must not modify it until EnqueueBatch returns.
	Data []byte
}

// Enqueued is the outcome of one Submission: the message's id, and
// whether it was a duplicate (see Enqueue) that stored nothing.
type Enqueued struct {
	ID        string
	Duplicate bool
}

// EnqueueBatch stores many messages with one flush and returns, in the
// order of subs, each one's id. Like Enqueue it returns only once every
// message is on stable storage; unlike a loop of Enqueue calls from one
// goroutine, which pays one flush per message, the whole batch shares one.
//
// The batch is all or nothing: every envelope is checked before anything
// is written, and if a message cannot be stored, none of the batch is
// (the error names the failing message by its 1-based position). The
// exception is a failed flush: the messages are then in the spool and
// will most likely be delivered, but their durability was not confirmed,
// and the error says so. Idempotency keys work per message, as in
// Enqueue, also between messages of the same batch: a key repeated within
// the batch stores the first message and reports the later ones as its
// duplicates.
func (o *Outbox) EnqueueBatch(ctx context.Context, subs []Submission) ([]Enqueued, error) {
	g := &enqGroup{reqs: make([]*enqReq, len(subs)), atomic: true}
	for i, s := range subs {
		req, err := o.newReq(ctx, s.Envelope, s.Data)
		if err != nil {
			return nil, fmt.Errorf("outbox: message %d of %d: %w", i+1, len(subs), err)
		}
		g.reqs[i] = req
	}
	if len(subs) == 0 {
		return []Enqueued{}, nil
	}
	if err := o.submit(ctx, g); err != nil {
		return nil, err
	}
	if g.err != nil {
		return nil, g.err
	}
	out := make([]Enqueued, len(subs))
	var errs []error
	for i, r := range g.res {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("message %d of %d: %w", i+1, len(subs), r.err))
		}
		out[i] = Enqueued{ID: r.id, Duplicate: r.dup}
	}
	if len(errs) > 0 {
		// Only a failed flush answers per message in an atomic group.
		return out, errors.Join(errs...)
	}
	return out, nil
}

// newReq checks one message and prepares its enqueue request.
func (o *Outbox) newReq(ctx context.Context, env Envelope, data []byte) (*enqReq, error) {
	if err := checkEnvelope(&env); err != nil {
		return nil, err
	}
	msgID, subject := headerFields(data)
	if env.Key == "" {
		env.Key = msgID
	}
	if strings.ContainsAny(env.Key, "\r\n\x00") {
		return nil, fmt.Errorf("%w: key contains CR, LF or NUL", ErrInvalidEnvelope)
	}
	env.To = append([]string(nil), env.To...)
	if o.opts.SkipRecovery {
		return nil, errSkipRecovery
	}
	noAlert, _ := ctx.Value(noAlertKey{}).(bool)
	return &enqReq{env: env, data: data, messageID: msgID, subject: subject, noAlert: noAlert}, nil
}

// submit hands g to the committer and waits for its verdict.
func (o *Outbox) submit(ctx context.Context, g *enqGroup) error {
	g.done = make(chan struct{})
	select {
	case <-o.closing:
		return ErrClosed
	default:
	}
	select {
	case o.enqCh <- g:
	case <-o.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once handed over, wait for the verdict even if ctx ends: the
	// messages may already be committed, and the caller must learn their
	// ids.
	<-g.done
	return nil
}

// commitLoop is the single committer: it takes whatever Enqueue and
// EnqueueBatch calls are waiting, commits them with one flush, and
// answers them. A group (one EnqueueBatch) is never split across flushes.
func (o *Outbox) commitLoop() {
	defer o.committer.Done()
	var batch []*enqGroup
	for {
		var first *enqGroup
		select {
		case first = <-o.enqCh:
		case <-o.closing:
			// Drain calls that got in before Close.
			for {
				select {
				case g := <-o.enqCh:
					o.commit([]*enqGroup{g})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
		n := len(first.reqs)
	more:
		for n < o.opts.MaxBatch {
			select {
			case g := <-o.enqCh:
				batch = append(batch, g)
				n += len(g.reqs)
			default:
				break more
			}
		}
		o.commit(batch)
	}
}

// pending is one message of a batch being committed.
type pending struct {
	g         *enqGroup
	i         int // index in g.reqs
	item      Item
	tmp       string // message temp file
	keyName   string // keys/ name, "" if no key
	keyStored bool
	fi        os.FileInfo // of the temp file, which becomes the queued one
}

// storeKey records p's idempotency key, once p's message is in queue/:
// keys/<name> becomes a hard link to the queued file, whose metadata line
// holds the key, the id and the enqueue time (see readKeyRecord). One
// link(2) costs a fraction of writing a record file and renaming it into
// place, and like the rename it is atomic. Where the file system has no
// hard links, a record file {"key","id","created"} is written instead. An
// existing record is stale (lookupKey found none that counts) and is
// replaced.
func (o *Outbox) storeKey(p *pending, now time.Time) error {
	dst := filepath.Join(o.dir, dirKeys, p.keyName)
	src := o.path(StateQueued, p.item.ID)
	err := os.Link(src, dst)
	if errors.Is(err, fs.ErrExist) {
		if err = os.Remove(dst); err == nil || errors.Is(err, fs.ErrNotExist) {
			err = os.Link(src, dst)
		}
	}
	if err == nil {
		return nil
	}
	kb, jerr := json.Marshal(keyRecord{Key: p.item.Key, ID: p.item.ID, Created: now})
	if jerr != nil {
		return jerr
	}
	tmp, werr := o.writeTemp(append(kb, '\n'), syncBeforeRename)
	if werr != nil {
		return fmt.Errorf("link %s: %w; %w", dst, err, werr)
	}
	if rerr := os.Rename(tmp, dst); rerr != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w; %w", dst, err, rerr)
	}
	return nil
}

// commit writes a batch of groups: temp files, renames into queue/ and
// keys/, one flush. The spool lock keeps another process's batch from
// interleaving, which makes the key check-then-write atomic across
// processes. An atomic group (EnqueueBatch) that fails before the flush
// is taken out whole: its files are removed and every message of it gets
// the group's error.
func (o *Outbox) commit(groups []*enqGroup) {
	defer func() {
		for _, g := range groups {
			close(g.done)
		}
	}()
	for _, g := range groups {
		g.res = make([]enqRes, len(g.reqs))
	}
	fail := func(err error) {
		for _, g := range groups {
			for i := range g.res {
				g.res[i] = enqRes{err: err}
			}
			if g.atomic {
				g.err = err
			}
		}
	}
	if err := lock(o.lockf); err != nil {
		fail(fmt.Errorf("outbox: enqueue: %w", err))
		return
	}
	defer unlock(o.lockf)

	now := o.opts.Now()
	idTime := now
	var (
		ps      []*pending
		inBatch = map[string]string{} // key name -> id within this batch
		cleanup []string
	)
	defer func() {
		for _, p := range cleanup {
			os.Remove(p)
		}
	}()
	for _, g := range groups {
		var gps []*pending
		var gerr error
		for i, r := range g.reqs {
			if r.env.Key != "" {
				kn := keyName(r.env.Key)
				if id, ok := inBatch[kn]; ok {
					g.res[i] = enqRes{id: id, dup: true}
					continue
				}
				if id, ok := o.lookupKey(kn, now); ok {
					g.res[i] = enqRes{id: id, dup: true}
					continue
				}
			}
			p := &pending{g: g, i: i}
			// Ids sort in enqueue order even when the clock stands still
			// (or steps back).
			if !idTime.After(o.lastID) {
				idTime = o.lastID.Add(time.Microsecond)
			}
			o.lastID = idTime
			p.item = Item{
				ID: newID(idTime), Seq: 1, State: StateQueued,
				Account: r.env.Account, From: r.env.From, To: r.env.To, Key: r.env.Key,
				Created: now, NextAttempt: now,
				MessageID: r.messageID, Subject: r.subject, NoAlert: r.noAlert,
			}
			content, err := encodeFile(&p.item, r.data)
			if err == nil {
				p.tmp, p.fi, err = o.writeTempStat(content, syncBeforeRename)
			}
			if err == nil && r.env.Key != "" {
				p.keyName = keyName(r.env.Key)
				inBatch[p.keyName] = p.item.ID
			}
			if err != nil {
				err = fmt.Errorf("outbox: enqueue: %w", err)
				if p.tmp != "" {
					cleanup = append(cleanup, p.tmp)
				}
				if g.atomic {
					gerr = fmt.Errorf("outbox: message %d of %d: %w (nothing of the batch was queued)", i+1, len(g.reqs), err)
					break
				}
				g.res[i] = enqRes{err: err}
				continue
			}
			g.res[i] = enqRes{id: p.item.ID}
			gps = append(gps, p)
		}
		if gerr != nil {
			// Take the whole group out, keys included, so that no later
			// group of this commit is told it duplicates one of them.
			for _, p := range gps {
				cleanup = append(cleanup, p.tmp)
				if p.keyName != "" {
					delete(inBatch, p.keyName)
				}
			}
			o.failGroup(g, gerr)
			continue
		}
		ps = append(ps, gps...)
	}
	// Messages before keys: a key must never name a message that is not
	// there. (Both are flushed together; a key whose message did not
	// survive a crash is recognised as stale by lookupKey.)
	var renamed []*pending
	failed := map[*enqGroup]bool{}
	for _, p := range ps {
		if failed[p.g] {
			cleanup = append(cleanup, p.tmp)
			continue
		}
		if err := os.Rename(p.tmp, o.path(StateQueued, p.item.ID)); err != nil {
			err = fmt.Errorf("outbox: enqueue: commit: %w", err)
			cleanup = append(cleanup, p.tmp)
			if p.g.atomic {
				failed[p.g] = true
				o.failGroup(p.g, fmt.Errorf("outbox: message %d of %d: %w (nothing of the batch was queued)", p.i+1, len(p.g.reqs), err))
				continue
			}
			p.g.res[p.i] = enqRes{err: err}
			continue
		}
		renamed = append(renamed, p)
		if p.keyName != "" {
			if err := o.storeKey(p, now); err != nil {
				// The message is in; without its key it can only be
				// duplicated, never lost.
				o.log.Warn("outbox: store idempotency key", "id", p.item.ID, "error", err)
			} else {
				p.keyStored = true
			}
		}
	}
	if len(failed) > 0 {
		// Roll back what a failed atomic group had renamed already: none
		// of it was flushed or acknowledged.
		kept := renamed[:0]
		for _, p := range renamed {
			if !failed[p.g] {
				kept = append(kept, p)
				continue
			}
			if p.keyStored {
				os.Remove(filepath.Join(o.dir, dirKeys, p.keyName))
			}
			os.Remove(o.path(StateQueued, p.item.ID))
		}
		renamed = kept
	}
	if len(renamed) > 0 {
		dirs := []string{filepath.Join(o.dir, dirQueue), filepath.Join(o.dir, dirKeys)}
		if err := syncBatch(o.spool, nil, dirs); err != nil {
			// The messages are in the spool and will most likely be
			// delivered, but durability was not confirmed: say so.
			for _, p := range renamed {
				p.g.res[p.i] = enqRes{err: fmt.Errorf("outbox: enqueue: flush: %w", err)}
			}
		} else {
			for _, p := range renamed {
				o.ctr.queued.Add(1)
				// Knowing the file's identity spares rescan a re-read;
				// the rename kept the temp file's.
				o.idx.upsert(p.item, p.fi)
			}
		}
	}
}

// failGroup answers every message of an atomic group with err.
func (o *Outbox) failGroup(g *enqGroup, err error) {
	g.err = err
	for i := range g.res {
		g.res[i] = enqRes{err: err}
	}
}

// lookupKey returns the id recorded for a key name, if the record is
// within the retention window and its message still exists in some state.
// A key whose message is gone entirely (deleted by an operator, or never
// made durable before a crash) does not block a new enqueue.
func (o *Outbox) lookupKey(kn string, now time.Time) (string, bool) {
	if id, ok := lookupKeyIn(o.dir, kn, now, o.opts.KeyRetention); ok {
		return id, true
	}
	if o.opts.Base != "" {
		return lookupKeyIn(o.opts.Base, kn, now, o.opts.KeyRetention)
	}
	return "", false
}

// lookupKeyIn is lookupKey in the spool at dir.
func lookupKeyIn(dir, kn string, now time.Time, retention time.Duration) (string, bool) {
	kr, err := readKeyRecord(filepath.Join(dir, dirKeys, kn))
	if err != nil || !validID(kr.ID) {
		return "", false
	}
	if now.Sub(kr.Created) >= retention {
		return "", false
	}
	base := &Outbox{dir: dir}
	for _, s := range []State{StateQueued, StateSent, StateDead} {
		if _, err := os.Stat(base.path(s, kr.ID)); err == nil {
			return kr.ID, true
		}
	}
	return "", false
}

// errSkipRecovery refuses writes that need a recovered spool.
var errSkipRecovery = errors.New("outbox: opened with SkipRecovery: cannot enqueue or deliver")

// recover settles the spool after a crash. It is safe while other
// processes use the spool: it removes only temp files older than an hour,
// moves damaged files (which a completed rename never leaves) to
// corrupt/ under their lock, and resolves duplicates by Seq.
func (o *Outbox) recover() error {
	tmpDir := filepath.Join(o.dir, dirTmp)
	if ents, err := os.ReadDir(tmpDir); err == nil {
		for _, e := range ents {
			fi, err := e.Info()
			if err == nil && time.Since(fi.ModTime()) > time.Hour {
				// A temp file is never the only copy of an accepted
				// message: Enqueue returns only after its file was
				// renamed into queue/ (and a rewrite's old version stays
				// in place until the new one is renamed over it). One
				// left in tmp/ is a write whose caller got an error or
				// never got an answer (a crash), so it may go; an hour
				// keeps clear of another process writing it right now.
				p := filepath.Join(tmpDir, e.Name())
				if err := os.Remove(p); err == nil {
					o.log.Info("outbox: removed stale temp file of an unfinished write (never acknowledged)", "path", p, "size", fi.Size(), "modified", fi.ModTime())
				}
			}
		}
	}
	seen := map[string]State{}
	seqs := map[string]int64{}
	for _, s := range []State{StateSent, StateDead, StateQueued} {
		ids, err := o.listIDs(s)
		if err != nil {
			return err
		}
		for _, id := range ids {
			p := o.path(s, id)
			it, err := o.checkFile(p)
			if err != nil {
				if errors.Is(err, ErrCorrupt) {
					o.quarantineFile(s, id)
				} else if !errors.Is(err, fs.ErrNotExist) {
					o.log.Error("outbox: unreadable spool file left in place", "path", p, "error", err)
				}
				continue
			}
			if prev, ok := seen[id]; ok {
				// A move between directories was interrupted: keep the
				// newer copy.
				loser := s
				if it.Seq > seqs[id] {
					loser = prev
					seen[id], seqs[id] = s, it.Seq
				}
				o.log.Warn("outbox: settling interrupted move", "id", id, "removed_from", string(loser))
				os.Remove(o.path(loser, id))
				continue
			}
			seen[id], seqs[id] = s, it.Seq
		}
	}
	return o.rescan()
}

// checkFile reads and verifies a whole spool file.
func (o *Outbox) checkFile(path string) (Item, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Item{}, err
	}
	it, _, err := decodeFile(b)
	return it, err
}

// listIDs returns the ids of the files in state s's directory.
func (o *Outbox) listIDs(s State) ([]string, error) {
	names, err := readNames(filepath.Dir(o.path(s, "x")))
	if err != nil {
		return nil, fmt.Errorf("outbox: list %s: %w", s, err)
	}
	ids := names[:0]
	for _, n := range names {
		if validID(n) {
			ids = append(ids, n)
		}
	}
	return ids, nil
}

// readNames returns the names in directory d; none when d does not
// exist (a spool no process has opened for writing yet).
func readNames(d string) ([]string, error) {
	f, err := os.Open(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return names, nil
}

// flushSent makes the moves of delivered messages into sent/ durable.
func (o *Outbox) flushSent() error {
	o.sentSync.Lock()
	defer o.sentSync.Unlock()
	if o.sentDirty == 0 {
		return nil
	}
	o.sentDirty = 0
	if err := o.syncReceipts(false); err != nil {
		return err
	}
	if err := syncDir(filepath.Join(o.dir, dirSent)); err != nil {
		return err
	}
	return syncDir(filepath.Join(o.dir, dirQueue))
}

// moveSent moves a delivered message's file into sent/; false if it
// could not.
func (o *Outbox) moveSent(from, to string) bool {
	if err := renameFile(from, to); err != nil {
		// Never leave a delivered message queued silently.
		o.log.Error("outbox: mark delivered message as sent", "path", from, "error", err)
		return false
	}
	o.markSentDirty()
	return true
}

// markSentDirty counts a move into sent/ and flushes every
// defaultSentSyncEvery moves.
func (o *Outbox) markSentDirty() {
	o.sentSync.Lock()
	o.sentDirty++
	n := o.sentDirty
	o.sentSync.Unlock()
	if n >= defaultSentSyncEvery {
		if err := o.flushSent(); err != nil {
			o.log.Warn("outbox: flush sent records", "error", err)
		}
	}
}

// CopyBaseQueue copies the intact messages queued in Options.Base into
// this spool's queue, due now, skipping those already here, and returns
// how many it copied: a dry run of the daemon then delivers (to its
// capture server) what the real daemon has waiting. The base is only read.
func (o *Outbox) CopyBaseQueue() (int, error) {
	if o.opts.Base == "" {
		return 0, errors.New("outbox: CopyBaseQueue: no Options.Base")
	}
	if o.opts.SkipRecovery {
		return 0, errSkipRecovery
	}
	base := &Outbox{dir: o.opts.Base}
	ids, err := base.listIDs(StateQueued)
	if err != nil {
		return 0, fmt.Errorf("outbox: base spool: %w", err)
	}
	n := 0
	now := o.opts.Now()
	for _, id := range ids {
		dst := o.path(StateQueued, id)
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		b, err := os.ReadFile(base.path(StateQueued, id))
		if err != nil {
			continue // delivered meanwhile, or unreadable: not ours to report
		}
		it, data, err := decodeFile(b)
		if err != nil || it.ID != id || it.State != StateQueued {
			continue // the base's own recovery deals with damaged files
		}
		it.NextAttempt = now
		content, err := encodeFile(&it, data)
		if err != nil {
			return n, fmt.Errorf("outbox: copy %s from the base spool: %w", id, err)
		}
		tmp, err := o.writeTemp(content, false)
		if err != nil {
			return n, fmt.Errorf("outbox: copy %s from the base spool: %w", id, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return n, fmt.Errorf("outbox: copy %s from the base spool: %w", id, err)
		}
		n++
	}
	return n, o.rescan()
}

// messageID returns the Message-ID header of data, or "".
func messageID(data []byte) string {
	id, _ := headerFields(data)
	return id
}
