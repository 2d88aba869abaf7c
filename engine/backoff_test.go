package engine

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	fixed := func(v float64) func() float64 { return func() float64 { return v } }
	tests := []struct {
		name    string
		b       Backoff
		attempt int
		want    time.Duration
	}{
		{"first retry, no jitter", Backoff{Initial: time.Second, Jitter: -1}, 1, time.Second},
		{"doubles", Backoff{Initial: time.Second, Jitter: -1}, 4, 8 * time.Second},
		{"custom multiplier", Backoff{Initial: time.Second, Multiplier: 3, Jitter: -1}, 3, 9 * time.Second},
		{"capped", Backoff{Initial: time.Second, Max: 5 * time.Second, Jitter: -1}, 10, 5 * time.Second},
		{"huge attempt stays capped", Backoff{Initial: time.Second, Max: time.Minute, Jitter: -1}, 5000, time.Minute},
		{"jitter lowers by fraction", Backoff{Initial: 10 * time.Second, Jitter: 0.5, Rand: fixed(1)}, 1, 5 * time.Second},
		{"jitter with zero draw", Backoff{Initial: 10 * time.Second, Jitter: 0.5, Rand: fixed(0)}, 1, 10 * time.Second},
		{"zero value uses defaults", Backoff{Rand: fixed(0)}, 1, 10 * time.Second},
		{"attempt below one", Backoff{Initial: time.Second, Jitter: -1}, 0, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.b.Delay(tc.attempt); got != tc.want {
				t.Fatalf("Delay(%d) = %v, want %v", tc.attempt, got, tc.want)
			}
		})
	}
}

func TestBackoffJitterRange(t *testing.T) {
	b := Backoff{Initial: time.Second, Jitter: 0.2}
	for i := 0; i < 200; i++ {
		d := b.Delay(1)
		if d < 800*time.Millisecond || d > time.Second {
			t.Fatalf("Delay(1) = %v, outside [0.8s, 1s]", d)
		}
	}
}

func TestBackoffExhausted(t *testing.T) {
	tests := []struct {
		b        Backoff
		attempts int
		want     bool
	}{
		{Backoff{MaxAttempts: 3}, 2, false},
		{Backoff{MaxAttempts: 3}, 3, true},
		{Backoff{}, 4, false},
		{Backoff{}, 5, true},
	}
	for _, tc := range tests {
		if got := tc.b.Exhausted(tc.attempts); got != tc.want {
			t.Errorf("%+v.Exhausted(%d) = %v, want %v", tc.b, tc.attempts, got, tc.want)
		}
	}
}
