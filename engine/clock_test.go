package engine

import (
	"context"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 3, 7, 0, 0, 0, time.UTC) // a Monday

func recvTime(t *testing.T, ch <-chan time.Time) (time.Time, bool) {
	t.Helper()
	select {
	case v := <-ch:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestFakeClockTimers(t *testing.T) {
	c := NewFakeClock(t0)
	a := c.NewTimer(2 * time.Second)
	b := c.NewTimer(1 * time.Second)
	if got := c.Timers(); got != 2 {
		t.Fatalf("Timers() = %d, want 2", got)
	}
	c.Advance(500 * time.Millisecond)
	if _, ok := recvTime(t, a.C()); ok {
		t.Fatal("timer a fired early")
	}
	c.Advance(time.Second)
	if v, ok := recvTime(t, b.C()); !ok || !v.Equal(t0.Add(time.Second)) {
		t.Fatalf("timer b: got %v, %v; want fire at its deadline %v", v, ok, t0.Add(time.Second))
	}
	if !a.Stop() {
		t.Fatal("Stop of an armed timer reported inactive")
	}
	c.Advance(time.Hour)
	if _, ok := recvTime(t, a.C()); ok {
		t.Fatal("stopped timer fired")
	}
	if a.Reset(time.Minute) {
		t.Fatal("Reset of a stopped timer reported active")
	}
	c.Advance(time.Minute)
	if v, ok := recvTime(t, a.C()); !ok || !v.Equal(t0.Add(time.Hour+1500*time.Millisecond+time.Minute)) {
		t.Fatalf("reset timer: got %v, %v", v, ok)
	}
	if got := c.Now(); !got.Equal(t0.Add(time.Hour + 1500*time.Millisecond + time.Minute)) {
		t.Fatalf("Now() = %v", got)
	}
}

func TestFakeClockResetDropsStaleValue(t *testing.T) {
	c := NewFakeClock(t0)
	tm := c.NewTimer(time.Second)
	c.Advance(time.Second) // fires, value waits in the channel
	tm.Reset(time.Second)
	if _, ok := recvTime(t, tm.C()); ok {
		t.Fatal("stale value received after Reset")
	}
	immediate := c.NewTimer(0)
	if _, ok := recvTime(t, immediate.C()); !ok {
		t.Fatal("zero-duration timer did not fire at once")
	}
}

func TestFakeClockWaitForTimers(t *testing.T) {
	c := NewFakeClock(t0)
	armed := make(chan Timer)
	go func() { armed <- c.NewTimer(time.Minute) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitForTimers(ctx, 1); err != nil {
		t.Fatalf("WaitForTimers: %v", err)
	}
	tm := <-armed
	tm.Stop()
	short, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := c.WaitForTimers(short, 1); err == nil {
		t.Fatal("WaitForTimers returned nil with no timer armed and a cancelled context")
	}
}

func TestRealClock(t *testing.T) {
	c := RealClock()
	before := time.Now()
	if c.Now().Before(before) {
		t.Fatal("RealClock().Now() is in the past")
	}
	tm := c.NewTimer(time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(5 * time.Second):
		t.Fatal("real timer did not fire")
	}
}
