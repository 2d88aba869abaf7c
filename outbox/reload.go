package outbox

import (
	"context"
	"sync"
)

// accountsUpdate carries the accounts given to SetAccounts to the running
// Deliver. The zero value is ready.
type accountsUpdate struct {
	mu      sync.Mutex
	next    map[string]Account
	pending bool
	changed chan struct{} // buffered 1: "next is set"
}

func (u *accountsUpdate) signal() chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.changed == nil {
		u.changed = make(chan struct{}, 1)
	}
	return u.changed
}

func (u *accountsUpdate) set(accounts map[string]Account) {
	ch := u.signal()
	u.mu.Lock()
	u.next, u.pending = accounts, true
	u.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default: // already signalled; next is the newest anyway
	}
}

// take returns the accounts set last, if any since the last take.
func (u *accountsUpdate) take() (map[string]Account, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	a, ok := u.next, u.pending
	u.next, u.pending = nil, false
	return a, ok
}

// SetAccounts hands a running Deliver new accounts (a reloaded
// configuration): relays, credentials, concurrency, rate limits, DKIM,
// fallbacks. Nothing in flight is interrupted: each current worker
// finishes the batch it is sending, over its open session, then ends, and
// new workers open their sessions with the new settings. Messages for
// accounts no longer listed stay queued. A call while no Deliver runs is
// ignored; the next Deliver uses the accounts it is given.
func (o *Outbox) SetAccounts(accounts map[string]Account) { o.accounts.set(accounts) }

// deliverGenerations starts the workers of accounts and replaces them
// with a new generation at each SetAccounts, until ctx ends.
func (o *Outbox) deliverGenerations(ctx context.Context, wg *sync.WaitGroup, accounts map[string]Account, rep *report) {
	changed := o.accounts.signal()
	// Accounts set while no Deliver ran are older than these.
	select {
	case <-changed:
	default:
	}
	o.accounts.take()
	stop := make(chan struct{})
	o.startWorkers(ctx, wg, accounts, false, rep, stop)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			next, ok := o.accounts.take()
			if !ok {
				continue
			}
			close(stop)
			stop = make(chan struct{})
			o.log.Info("outbox: accounts updated; new sessions use them", "accounts", len(next))
			o.startWorkers(ctx, wg, next, false, rep, stop)
		}
	})
}

// retired reports whether SetAccounts replaced the worker's generation.
func (w *worker) retired() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}
