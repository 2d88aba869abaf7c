package engine

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Clock is the engine's only source of time. Schedules, settle timers and
// debouncing all read time through a Clock so that tests can substitute a
// FakeClock and move time forward explicitly instead of waiting real minutes.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that delivers the current time on its channel
	// after at least duration d.
	NewTimer(d time.Duration) Timer
}

// Timer is the subset of *time.Timer the engine uses.
//
// After Stop or Reset returns, no value armed before the call is received
// from C (the Go 1.23 timer semantics), for both the real and the fake clock.
type Timer interface {
	// C returns the channel on which the time is delivered.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the timer was
	// active.
	Stop() bool
	// Reset changes the timer to expire after duration d. It reports whether
	// the timer was active.
	Reset(d time.Duration) bool
}

// RealClock returns a Clock backed by the time package.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

// FakeClock is a Clock whose time only moves when Advance or Set is called.
// It is exported so that programs embedding mailbot can drive the engine's
// schedules and settle timers in their own tests.
//
// The zero value is not usable; create one with NewFakeClock.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  map[*fakeTimer]struct{} // armed timers only
	seq     uint64                  // arm order, breaks ties between equal deadlines
	changed chan struct{}           // closed and replaced whenever the armed set changes
}

// NewFakeClock returns a FakeClock whose current time is t0.
func NewFakeClock(t0 time.Time) *FakeClock {
	return &FakeClock{
		now:     t0,
		timers:  make(map[*fakeTimer]struct{}),
		changed: make(chan struct{}),
	}
}

// Now returns the fake current time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when the fake time reaches Now()+d.
// A timer with d <= 0 fires immediately, as a real timer would.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{clock: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	c.arm(t, d)
	c.mu.Unlock()
	return t
}

// Advance moves the fake time forward by d, firing every timer that falls
// due on the way in deadline order. Each timer fires with the fake time set
// to its own deadline, so a receiver reading Now() while Advance is still
// running may see an intermediate time.
//
// Advance does not wait for receivers to react. A goroutine that re-arms a
// timer after receiving from it does so asynchronously; tests call
// WaitForTimers before the next Advance to know the re-arm has happened.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	c.Set(target)
}

// Set moves the fake time to t, firing due timers as Advance does. Setting a
// time before Now() only moves the clock back; no timer fires.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		next := c.earliest()
		if next == nil || next.when.After(t) {
			break
		}
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.disarm(next)
		c.fire(next)
	}
	c.now = t
}

// Timers returns the number of armed (started, not yet fired or stopped)
// timers.
func (c *FakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// BlockUntil blocks until at least n timers are armed. It is a shorthand for
// WaitForTimers with a background context.
func (c *FakeClock) BlockUntil(n int) {
	_ = c.WaitForTimers(context.Background(), n)
}

// WaitForTimers blocks until at least n timers are armed or ctx is done, in
// which case it returns ctx.Err(). Tests use it to await "the component has
// armed its timer" instead of sleeping.
func (c *FakeClock) WaitForTimers(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		armed, changed := len(c.timers), c.changed
		c.mu.Unlock()
		if armed >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// earliest returns the armed timer with the smallest deadline, arm order
// breaking ties so that timers armed for the same instant fire in the order
// they were armed. Callers hold c.mu.
func (c *FakeClock) earliest() *fakeTimer {
	if len(c.timers) == 0 {
		return nil
	}
	all := make([]*fakeTimer, 0, len(c.timers))
	for t := range c.timers {
		all = append(all, t)
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].when.Equal(all[j].when) {
			return all[i].when.Before(all[j].when)
		}
		return all[i].seq < all[j].seq
	})
	return all[0]
}

// arm (re)starts t; callers hold c.mu.
func (c *FakeClock) arm(t *fakeTimer, d time.Duration) {
	// Drop a value that fired before this re-arm, matching the Go 1.23
	// guarantee that Reset never lets a stale tick through.
	select {
	case <-t.ch:
	default:
	}
	if d <= 0 {
		c.fire(t)
		return
	}
	c.seq++
	t.when, t.seq = c.now.Add(d), c.seq
	c.timers[t] = struct{}{}
	c.notify()
}

// disarm removes t from the armed set and reports whether it was armed;
// callers hold c.mu.
func (c *FakeClock) disarm(t *fakeTimer) bool {
	if _, ok := c.timers[t]; !ok {
		return false
	}
	delete(c.timers, t)
	c.notify()
	return true
}

// fire delivers the current fake time; the channel has room for one value,
// like a real timer's, so a slow receiver never blocks the clock.
func (c *FakeClock) fire(t *fakeTimer) {
	select {
	case t.ch <- c.now:
	default:
	}
}

func (c *FakeClock) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

type fakeTimer struct {
	clock *FakeClock
	ch    chan time.Time
	when  time.Time
	seq   uint64
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	select {
	case <-t.ch:
	default:
	}
	return t.clock.disarm(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	active := t.clock.disarm(t)
	t.clock.arm(t, d)
	return active
}
