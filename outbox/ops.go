package outbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The operations below serve `mailbot queue ...`. They read the spool
// directly, so they see what every process sharing it has done, and they
// are safe next to a running Deliver in another process: readers only see
// whole files (every write is a rename of a complete file), and writers
// take the message's lock, which a delivery holds for the whole attempt
// (ErrBusy then). List, Dead, Get, Corrupt, Inspect and Stats only read.

// List returns the queued messages, oldest first. Damaged files are left
// out (and left where they are): Corrupt reports them.
func (o *Outbox) List() ([]Item, error) { return o.list(StateQueued) }

// Dead returns the dead letters, oldest first, each with the replies that
// refused it in Refused and the reason in DeadReason. Damaged files are
// left out: Corrupt reports them.
func (o *Outbox) Dead() ([]Item, error) { return o.list(StateDead) }

func (o *Outbox) list(s State) ([]Item, error) {
	ids, err := o.listIDs(s)
	if err != nil {
		return nil, err
	}
	slices.Sort(ids) // ids start with the enqueue time
	items := make([]Item, 0, len(ids))
	for _, id := range ids {
		b, err := os.ReadFile(o.path(s, id))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // delivered or moved meanwhile
			}
			return nil, fmt.Errorf("outbox: list %s: %w", s, err)
		}
		// The whole file is checked, so a message whose bytes are damaged
		// is never listed as if it could be delivered.
		if _, _, damaged := diagnose(b, id, s); damaged {
			continue
		}
		it, _, _ := decodeFile(b)
		items = append(items, it)
	}
	return items, nil
}

// Get returns a queued, dead or delivered (sent) message, in that order
// of search, with its bytes; Item.State says which.
// It returns ErrNotFound for an unknown id.
func (o *Outbox) Get(id string) (Item, []byte, error) {
	if !validID(id) {
		return Item{}, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	for _, s := range []State{StateQueued, StateDead, StateSent} {
		b, err := os.ReadFile(o.path(s, id))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Item{}, nil, fmt.Errorf("outbox: get %s: %w", id, err)
		}
		it, data, err := decodeFile(b)
		if err != nil {
			return Item{}, nil, fmt.Errorf("outbox: get %s: %w", id, err)
		}
		// A sent/ file usually keeps the queued metadata it was
		// delivered with (the move is a rename): say where it is, and
		// add its receipt (the relay's reply).
		it.State = s
		if s == StateSent {
			o.applyReceipt(&it)
		}
		return it, data, nil
	}
	return Item{}, nil, fmt.Errorf("%w: %s", ErrNotFound, id)
}

// Retry makes a queued message due now.
func (o *Outbox) Retry(id string) error {
	return o.rewrite(StateQueued, id, func(it *Item) { it.NextAttempt = o.opts.Now() })
}

// RetryAll makes every queued message due now. Messages being delivered
// at that moment are skipped (they are being tried anyway), and so are
// damaged files (Corrupt reports them).
func (o *Outbox) RetryAll() error {
	ids, err := o.listIDs(StateQueued)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if err := o.Retry(id); err != nil && !errors.Is(err, ErrBusy) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Requeue moves a dead letter back to the queue, due now, for the
// recipients that were not delivered. Its age starts again, so it gets a
// full MaxAge of retries. For a damaged file (in corrupt/, or damaged in
// dead/ or queue/) it is RequeueCorrupt with the recovered account.
func (o *Outbox) Requeue(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	lf, err := o.lockExisting(StateDead, id)
	if errors.Is(err, ErrNotFound) {
		_, err = o.RequeueCorrupt(id, "")
		return err
	}
	if err != nil {
		return err
	}
	defer lf.unlock()
	it, data, err := lf.read()
	if errors.Is(err, ErrCorrupt) {
		lf.unlock()
		_, err = o.RequeueCorrupt(id, "")
		return err
	}
	if err != nil {
		return fmt.Errorf("outbox: requeue: %w", err)
	}
	now := o.opts.Now()
	it.Seq++
	it.State = StateQueued
	it.Refused, it.DeadAt, it.DeadReason = nil, time.Time{}, ""
	it.Attempts, it.Created, it.NextAttempt = 0, now, now
	content, err := encodeFile(&it, data)
	if err != nil {
		return err
	}
	// Queue copy first (flushed), then remove the dead one: a crash in
	// between leaves both, and Open keeps the higher Seq.
	if err := o.replaceFile(o.path(StateQueued, id), content, true); err != nil {
		return fmt.Errorf("outbox: requeue %s: %w", id, err)
	}
	if err := os.Remove(lf.path); err != nil {
		return fmt.Errorf("outbox: requeue %s: remove dead letter: %w", id, err)
	}
	o.idx.upsert(it, nil)
	return nil
}

// Delete removes a queued or dead message, or a damaged file in corrupt/
// with its note, for good. A deleted message's idempotency key no longer
// blocks enqueueing the same key again.
func (o *Outbox) Delete(id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	for _, s := range []State{StateQueued, StateDead} {
		lf, err := o.lockExisting(s, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		err = os.Remove(lf.path)
		lf.unlock()
		if err != nil {
			return fmt.Errorf("outbox: delete %s: %w", id, err)
		}
		if err := syncDir(filepath.Dir(lf.path)); err != nil {
			return fmt.Errorf("outbox: delete %s: %w", id, err)
		}
		if s == StateQueued {
			o.idx.remove(id)
		}
		return nil
	}
	lf, err := lockFile(o.corruptPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("outbox: %s: %w", id, err)
	}
	defer lf.unlock()
	if err := os.Remove(lf.path); err != nil {
		return fmt.Errorf("outbox: delete %s: %w", id, err)
	}
	os.Remove(lf.path + ".note")
	if err := syncDir(filepath.Dir(lf.path)); err != nil {
		return fmt.Errorf("outbox: delete %s: %w", id, err)
	}
	return nil
}

// lockExisting locks the file of id in state s, mapping "gone" to
// ErrNotFound.
func (o *Outbox) lockExisting(s State, id string) (*lockedFile, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	lf, err := lockFile(o.path(s, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("outbox: %s: %w", id, err)
	}
	if s == StateQueued && lf.sentMarked() {
		// Already delivered (its mover died before finishing): it is
		// not queued any more, and must not be sent again.
		o.moveSent(lf.path, o.path(StateSent, id))
		lf.unlock()
		return nil, fmt.Errorf("%w: %s (already delivered)", ErrNotFound, id)
	}
	return lf, nil
}

// rewrite applies fn to the metadata of id under its lock and stores the
// result durably.
func (o *Outbox) rewrite(s State, id string, fn func(*Item)) error {
	lf, err := o.lockExisting(s, id)
	if err != nil {
		return err
	}
	defer lf.unlock()
	it, data, err := lf.read()
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	fn(&it)
	it.Seq++
	content, err := encodeFile(&it, data)
	if err != nil {
		return err
	}
	if err := o.replaceFile(lf.path, content, true); err != nil {
		return fmt.Errorf("outbox: update %s: %w", id, err)
	}
	if s == StateQueued {
		o.idx.upsert(it, nil)
	}
	return nil
}

// Stats is a snapshot of the spool and of this Outbox's counters.
type Stats struct {
	// Queued and Dead count the messages on disk now, Corrupt the
	// damaged files kept in corrupt/.
	Queued, Dead, Corrupt int
	// Enqueued, Sent, Deferred and Bounced count events since Open in
	// this process: new messages, deliveries, deferred attempts and
	// messages moved to dead letters.
	Enqueued, Sent, Deferred, Bounced int64
}

// Stats returns the current counts.
func (o *Outbox) Stats() (Stats, error) {
	q, err := o.listIDs(StateQueued)
	if err != nil {
		return Stats{}, err
	}
	d, err := o.listIDs(StateDead)
	if err != nil {
		return Stats{}, err
	}
	c, err := o.listDir(dirCorrupt)
	if err != nil {
		return Stats{}, err
	}
	return Stats{
		Queued: len(q), Dead: len(d), Corrupt: len(c),
		Enqueued: o.ctr.queued.Load(), Sent: o.ctr.sent.Load(),
		Deferred: o.ctr.deferred.Load(), Bounced: o.ctr.bounced.Load(),
	}, nil
}

// Prune forgets what KeyRetention no longer needs: idempotency keys and
// the sent/ records of delivered messages older than the window. Deliver
// calls it hourly.
func (o *Outbox) Prune() error { return o.prune() }

func (o *Outbox) prune() error {
	now := o.opts.Now()
	var errs []error
	keysDir := filepath.Join(o.dir, dirKeys)
	ents, err := os.ReadDir(keysDir)
	if err != nil {
		return fmt.Errorf("outbox: prune: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(keysDir, e.Name())
		kr, err := readKeyRecord(p)
		bad := errors.Is(err, errBadKeyRecord)
		if err != nil && !bad {
			continue
		}
		if bad || now.Sub(kr.Created) >= o.opts.KeyRetention {
			if bad {
				// A key record holds no mail, only the memory of a key;
				// without it a key can at worst be enqueued twice.
				o.log.Warn("outbox: removing unreadable idempotency key record", "path", p)
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := o.pruneReceipts(now); err != nil {
		errs = append(errs, err)
	}
	ids, err := o.listIDs(StateSent)
	if err != nil {
		return err
	}
	for _, id := range ids {
		p := o.path(StateSent, id)
		it, err := readMeta(p)
		if errors.Is(err, ErrCorrupt) {
			// Its age is unknown: keep it, in corrupt/.
			o.quarantineFile(StateSent, id)
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if err != nil || now.Sub(it.Created) < o.opts.KeyRetention {
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
