package engine

import (
	"context"
	"testing"
	"time"
)

// waitCtx bounds how long a test waits for something that should happen
// promptly; it is a failure deadline, not a synchronisation sleep.
func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func recvTick(t *testing.T, s *Scheduler) Tick {
	t.Helper()
	select {
	case tk, ok := <-s.Ticks():
		if !ok {
			t.Fatal("Ticks closed")
		}
		return tk
	case <-time.After(10 * time.Second):
		t.Fatal("no tick delivered")
	}
	return Tick{}
}

func advance(t *testing.T, c *FakeClock, d time.Duration) {
	t.Helper()
	if err := c.WaitForTimers(waitCtx(t), 1); err != nil {
		t.Fatalf("waiting for an armed timer: %v", err)
	}
	c.Advance(d)
}

func newTestScheduler(t *testing.T, c *FakeClock) *Scheduler {
	t.Helper()
	s := NewScheduler(c)
	t.Cleanup(s.Stop)
	return s
}

func TestSchedulerFiresAtScheduledTimes(t *testing.T) {
	clock := NewFakeClock(t0) // Monday 07:00 UTC
	s := newTestScheduler(t, clock)
	daily, err := ParseSchedule("0 8 * * *", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Entry{ID: "every", Schedule: Every{20 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Entry{ID: "daily", Schedule: daily}); err != nil {
		t.Fatal(err)
	}
	s.Start()

	type step struct {
		advance time.Duration
		want    map[Tick]bool
	}
	steps := []step{
		{19 * time.Minute, nil},
		{time.Minute, map[Tick]bool{{"every", t0.Add(20 * time.Minute)}: true}},
		{20 * time.Minute, map[Tick]bool{{"every", t0.Add(40 * time.Minute)}: true}},
		{20 * time.Minute, map[Tick]bool{
			{"every", t0.Add(60 * time.Minute)}:                    true,
			{"daily", time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)}: true,
		}},
	}
	for i, st := range steps {
		advance(t, clock, st.advance)
		for range st.want {
			tk := recvTick(t, s)
			if !st.want[tk] {
				t.Fatalf("step %d: unexpected tick %+v, want one of %v", i, tk, st.want)
			}
			delete(st.want, tk)
		}
	}
	if next, ok := s.Next("daily"); !ok || !next.Equal(time.Date(2025, 3, 4, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("Next(daily) = %v, %v", next, ok)
	}
}

func TestSchedulerAddRemoveWhileRunning(t *testing.T) {
	clock := NewFakeClock(t0)
	s := newTestScheduler(t, clock)
	if err := s.Add(Entry{ID: "a", Schedule: Every{time.Minute}}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	advance(t, clock, 30*time.Second)
	if err := s.Add(Entry{ID: "b", Schedule: Every{time.Minute}}); err != nil { // first at +90s
		t.Fatal(err)
	}
	advance(t, clock, 30*time.Second)
	if tk := recvTick(t, s); tk != (Tick{"a", t0.Add(time.Minute)}) {
		t.Fatalf("got %+v, want a at +1m", tk)
	}
	s.Remove("a")
	if _, ok := s.Next("a"); ok {
		t.Fatal("removed entry still has a next activation")
	}
	advance(t, clock, 30*time.Second)
	if tk := recvTick(t, s); tk != (Tick{"b", t0.Add(90 * time.Second)}) {
		t.Fatalf("got %+v, want b at +90s", tk)
	}
	// Replacing an entry takes the new schedule.
	if err := s.Add(Entry{ID: "b", Schedule: Every{10 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	if next, ok := s.Next("b"); !ok || !next.Equal(t0.Add(90*time.Second+10*time.Minute)) {
		t.Fatalf("Next(b) after replace = %v, %v", next, ok)
	}
	if err := s.Add(Entry{ID: "", Schedule: Every{time.Minute}}); err == nil {
		t.Fatal("Add without ID succeeded")
	}
	if err := s.Add(Entry{ID: "x"}); err == nil {
		t.Fatal("Add without schedule succeeded")
	}
}

func TestSchedulerStalledReaderGetsNoBurst(t *testing.T) {
	clock := NewFakeClock(t0)
	s := newTestScheduler(t, clock)
	if err := s.Add(Entry{ID: "a", Schedule: Every{time.Minute}}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	for range 3 { // three activations while nobody reads
		advance(t, clock, time.Minute)
	}
	if err := clock.WaitForTimers(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if tk := recvTick(t, s); tk != (Tick{"a", t0.Add(time.Minute)}) {
		t.Fatalf("first tick = %+v, want the earliest activation", tk)
	}
	advance(t, clock, time.Minute)
	if tk := recvTick(t, s); tk != (Tick{"a", t0.Add(4 * time.Minute)}) {
		t.Fatalf("next tick = %+v, want +4m (the held-back ones dropped)", tk)
	}
}

func TestSchedulerClockJump(t *testing.T) {
	clock := NewFakeClock(t0)
	s := newTestScheduler(t, clock)
	if err := s.Add(Entry{ID: "a", Schedule: Every{5 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	s.Start()
	advance(t, clock, time.Hour)
	if tk := recvTick(t, s); tk != (Tick{"a", t0.Add(5 * time.Minute)}) {
		t.Fatalf("tick = %+v", tk)
	}
	if next, ok := s.Next("a"); !ok || !next.Equal(t0.Add(65*time.Minute)) {
		t.Fatalf("Next after jump = %v, want computed from now (+65m)", next)
	}
}

func TestSchedulerStop(t *testing.T) {
	clock := NewFakeClock(t0)
	s := NewScheduler(clock)
	s.Stop() // before Start: must not block or panic
	s.Stop()
	if _, ok := <-s.Ticks(); ok {
		t.Fatal("Ticks open after Stop")
	}
	s.Start() // after Stop: no-op
	if err := clock.WaitForTimers(canceledCtx(), 1); err == nil {
		t.Fatal("a stopped scheduler armed a timer")
	}

	s2 := NewScheduler(clock)
	_ = s2.Add(Entry{ID: "a", Schedule: Every{time.Minute}})
	s2.Start()
	s2.Stop()
	if _, ok := <-s2.Ticks(); ok {
		t.Fatal("Ticks open after Stop")
	}
	if err := s2.Add(Entry{ID: "b", Schedule: Every{time.Minute}}); err == nil {
		t.Fatal("Add after Stop succeeded")
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestOverlapGuard(t *testing.T) {
	tick := func(n int) Tick { return Tick{ID: "job", ScheduledAt: t0.Add(time.Duration(n) * time.Minute)} }
	type op struct {
		start    *Tick // TryStart(tick) if set, else Done()
		want     Admission
		wantNext *Tick
	}
	startOp := func(n int, want Admission) op { tk := tick(n); return op{start: &tk, want: want} }
	doneOp := func(next *Tick) op { return op{wantNext: next} }
	t2 := tick(2)
	tests := []struct {
		name        string
		policy      OverlapPolicy
		ops         []op
		wantRunning int
	}{
		{"skip", OverlapSkip, []op{
			startOp(1, Start), startOp(2, Skipped), doneOp(nil), startOp(3, Start),
		}, 1},
		{"queue one", OverlapQueue, []op{
			startOp(1, Start), startOp(2, Queued), startOp(3, Skipped), doneOp(&t2), doneOp(nil),
		}, 0},
		{"allow", OverlapAllow, []op{startOp(1, Start), startOp(2, Start), startOp(3, Start), doneOp(nil)}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := &OverlapGuard{Policy: tc.policy}
			for i, o := range tc.ops {
				if o.start != nil {
					if got := g.TryStart(*o.start); got != o.want {
						t.Fatalf("op %d: TryStart = %v, want %v", i, got, o.want)
					}
					continue
				}
				next, ok := g.Done()
				if (o.wantNext != nil) != ok || (ok && next != *o.wantNext) {
					t.Fatalf("op %d: Done = %+v, %v; want %+v", i, next, ok, o.wantNext)
				}
			}
			if got := g.Running(); got != tc.wantRunning {
				t.Fatalf("Running = %d, want %d", got, tc.wantRunning)
			}
		})
	}
}

func TestParseOverlapPolicy(t *testing.T) {
	for in, want := range map[string]OverlapPolicy{"": OverlapSkip, "skip": OverlapSkip, "queue": OverlapQueue, "allow": OverlapAllow} {
		got, err := ParseOverlapPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseOverlapPolicy(%q) = %v, %v; want %v", in, got, err, want)
		}
		if in != "" && got.String() != in {
			t.Errorf("String() = %q, want %q", got.String(), in)
		}
	}
	if _, err := ParseOverlapPolicy("parallel"); err == nil {
		t.Error("ParseOverlapPolicy(parallel) succeeded")
	}
}
