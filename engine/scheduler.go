package engine

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Entry is one scheduled trigger.
type Entry struct {
	// ID names the trigger; ticks carry it back. Adding an Entry whose ID is
	// already present replaces the old one.
	ID string
	// Schedule decides when the trigger fires.
	Schedule Schedule
}

// Tick is emitted when an entry's scheduled time is reached.
type Tick struct {
	ID string
	// ScheduledAt is the activation time computed from the schedule, not the
	// (slightly later) time the tick was delivered.
	ScheduledAt time.Time
}

// Scheduler fires Ticks for a set of entries. Like cron's Cron it has one
// goroutine that owns the entries and sleeps on a single Clock timer until
// the earliest activation; Add and Remove talk to that goroutine.
//
// The Scheduler never runs anything itself and has no overlap logic: the
// dispatcher that reads Ticks decides, using an OverlapGuard per trigger.
//
// Delivery never blocks the loop. If the reader falls behind, at most one
// undelivered tick is kept per entry; further activations of that entry are
// dropped until it is delivered, so a stalled reader cannot cause a burst.
// If the clock jumps over several activations, one tick is emitted for the
// earliest and the next activation is computed from the current time, as
// cron does.
type Scheduler struct {
	clock Clock
	ticks chan Tick

	mu      sync.Mutex
	running bool
	entries map[string]*schedEntry // owned by the loop while running

	add     chan schedChange
	remove  chan schedChange
	nextReq chan nextReq
	stop    chan struct{}
	done    chan struct{}
}

type schedEntry struct {
	Entry
	next time.Time // zero: never fires again
}

// schedChange is an Add or Remove sent to the loop; done is closed once
// the loop has applied it and re-armed its timer, so that when Add or
// Remove returns the change is in effect (a FakeClock advanced right after
// sees the new timer).
type schedChange struct {
	entry *schedEntry // nil for Remove
	id    string
	done  chan struct{}
}

type nextReq struct {
	id    string
	reply chan time.Time
}

// NewScheduler returns a stopped Scheduler reading time from clock (nil
// means RealClock()).
func NewScheduler(clock Clock) *Scheduler {
	if clock == nil {
		clock = RealClock()
	}
	return &Scheduler{
		clock:   clock,
		ticks:   make(chan Tick),
		entries: make(map[string]*schedEntry),
		add:     make(chan schedChange),
		remove:  make(chan schedChange),
		nextReq: make(chan nextReq),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Ticks returns the channel on which ticks are delivered. It is closed when
// the Scheduler stops.
func (s *Scheduler) Ticks() <-chan Tick { return s.ticks }

// Add schedules e, replacing any entry with the same ID. Its first
// activation is computed from the clock's time at the call when the
// Scheduler is running, or at Start otherwise.
func (s *Scheduler) Add(e Entry) error {
	if e.ID == "" {
		return errors.New("engine: scheduler entry without ID")
	}
	if e.Schedule == nil {
		return fmt.Errorf("engine: scheduler entry %q without schedule", e.ID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		s.entries[e.ID] = &schedEntry{Entry: e}
		return nil
	}
	// The first activation is computed here, not in the loop, so that it
	// is relative to the time of the call even if the clock moves before
	// the loop gets to it.
	ch := schedChange{entry: &schedEntry{Entry: e, next: e.Schedule.Next(s.clock.Now())}, done: make(chan struct{})}
	select {
	case s.add <- ch:
		<-ch.done
		return nil
	case <-s.done:
		return errors.New("engine: scheduler stopped")
	}
}

// Remove unschedules the entry with the given ID; unknown IDs are ignored.
// A tick for it that is already on its way may still be delivered.
func (s *Scheduler) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		delete(s.entries, id)
		return
	}
	ch := schedChange{id: id, done: make(chan struct{})}
	select {
	case s.remove <- ch:
		<-ch.done
	case <-s.done:
	}
}

// Next returns the next activation of entry id, or false if there is no
// such entry, it never fires again or the Scheduler is not running.
func (s *Scheduler) Next(id string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return time.Time{}, false
	}
	r := nextReq{id: id, reply: make(chan time.Time, 1)}
	select {
	case s.nextReq <- r:
	case <-s.done:
		return time.Time{}, false
	}
	t := <-r.reply
	return t, !t.IsZero()
}

// Start starts the loop goroutine. Starting twice, or after Stop, does
// nothing.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return
	}
	select {
	case <-s.stop:
		return // stopped for good
	default:
	}
	s.running = true
	now := s.clock.Now()
	for _, e := range s.entries {
		e.next = e.Schedule.Next(now)
	}
	go s.run(s.entries)
}

// Stop stops the loop and waits for it to exit, then closes Ticks. It is
// safe to call more than once and without Start.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return
	default:
	}
	close(s.stop)
	wasRunning := s.running
	s.mu.Unlock()
	if wasRunning {
		<-s.done
	} else {
		close(s.done)
		close(s.ticks)
	}
}

func (s *Scheduler) run(entries map[string]*schedEntry) {
	defer close(s.done)
	defer close(s.ticks)

	timer := s.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()

	var (
		pending   []Tick
		isPending = make(map[string]bool)
	)
	rearm := func() {
		var earliest time.Time
		for _, e := range entries {
			if !e.next.IsZero() && (earliest.IsZero() || e.next.Before(earliest)) {
				earliest = e.next
			}
		}
		if earliest.IsZero() {
			timer.Stop()
			return
		}
		timer.Reset(earliest.Sub(s.clock.Now()))
	}
	rearm()

	for {
		var (
			out  chan Tick
			head Tick
		)
		if len(pending) > 0 {
			out, head = s.ticks, pending[0]
		}
		select {
		case <-timer.C():
			now := s.clock.Now()
			for _, e := range entries {
				if e.next.IsZero() || e.next.After(now) {
					continue
				}
				if !isPending[e.ID] {
					pending = append(pending, Tick{ID: e.ID, ScheduledAt: e.next})
					isPending[e.ID] = true
				}
				e.next = e.Schedule.Next(now)
			}
			rearm()
		case out <- head:
			pending = pending[1:]
			delete(isPending, head.ID)
		case ch := <-s.add:
			entries[ch.entry.ID] = ch.entry
			rearm()
			close(ch.done)
		case ch := <-s.remove:
			delete(entries, ch.id)
			rearm()
			close(ch.done)
		case r := <-s.nextReq:
			var t time.Time
			if e, ok := entries[r.id]; ok {
				t = e.next
			}
			r.reply <- t
		case <-s.stop:
			return
		}
	}
}

// OverlapPolicy says what happens when a trigger fires while its previous
// run is still going. The zero value is OverlapSkip.
type OverlapPolicy int

const (
	// OverlapSkip drops the new activation (cron's SkipIfStillRunning).
	OverlapSkip OverlapPolicy = iota
	// OverlapQueue keeps one activation waiting and runs it when the current
	// run finishes; further activations while one waits are dropped.
	OverlapQueue
	// OverlapAllow starts every activation, runs may overlap.
	OverlapAllow
)

// ParseOverlapPolicy parses the overlap option of mailbot.cron and
// mailbot.every: "skip" (also ""), "queue" or "allow".
func ParseOverlapPolicy(s string) (OverlapPolicy, error) {
	switch s {
	case "", "skip":
		return OverlapSkip, nil
	case "queue":
		return OverlapQueue, nil
	case "allow":
		return OverlapAllow, nil
	}
	return 0, fmt.Errorf("engine: overlap %q: want skip, queue or allow", s)
}

// String returns the option spelling.
func (p OverlapPolicy) String() string {
	switch p {
	case OverlapSkip:
		return "skip"
	case OverlapQueue:
		return "queue"
	case OverlapAllow:
		return "allow"
	}
	return fmt.Sprintf("OverlapPolicy(%d)", int(p))
}

// Admission is OverlapGuard.TryStart's verdict.
type Admission int

const (
	// Start means the caller should run the tick now and call Done after.
	Start Admission = iota
	// Skipped means the tick was dropped because a run is in progress.
	Skipped
	// Queued means the tick is held and will be returned by Done.
	Queued
)

// String returns "start", "skipped" or "queued".
func (a Admission) String() string {
	switch a {
	case Start:
		return "start"
	case Skipped:
		return "skipped"
	case Queued:
		return "queued"
	}
	return fmt.Sprintf("Admission(%d)", int(a))
}

// OverlapGuard applies an OverlapPolicy to one trigger. It is safe for
// concurrent use. The zero value is a guard with OverlapSkip.
type OverlapGuard struct {
	Policy OverlapPolicy

	mu      sync.Mutex
	running int
	queued  *Tick
}

// TryStart decides what to do with tick t.
func (g *OverlapGuard) TryStart(t Tick) Admission {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running == 0 || g.Policy == OverlapAllow {
		g.running++
		return Start
	}
	if g.Policy == OverlapQueue && g.queued == nil {
		g.queued = &t
		return Queued
	}
	return Skipped
}

// Done ends a run started by TryStart. If a tick was queued meanwhile, it is
// returned with ok true and counts as started: the caller runs it and calls
// Done again afterwards.
func (g *OverlapGuard) Done() (next Tick, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.queued != nil {
		next, g.queued = *g.queued, nil
		return next, true // the run slot passes straight to the queued tick
	}
	if g.running > 0 {
		g.running--
	}
	return Tick{}, false
}

// Running reports how many runs are in progress.
func (g *OverlapGuard) Running() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running
}
