package engine

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff computes retry delays: exponential growth from Initial by
// Multiplier, capped at Max, with random jitter so that many files failing
// together (a mail server outage) do not retry in lockstep. Any zero field
// takes the value from DefaultBackoff, so the zero Backoff is usable.
type Backoff struct {
	// Initial is the delay before the first retry.
	Initial time.Duration
	// Max caps every delay.
	Max time.Duration
	// Multiplier is the growth factor per attempt; values below 1 mean 2.
	Multiplier float64
	// Jitter in [0, 1] is the fraction of each delay that is randomised:
	// the delay is uniformly chosen in [d*(1-Jitter), d]. Negative means no
	// jitter; 0 means the default.
	Jitter float64
	// MaxAttempts is the total number of handler runs allowed for one file
	// (the first run included) before it goes to failed/.
	MaxAttempts int
	// Rand returns a number in [0, 1); nil uses math/rand/v2. Tests set it
	// for deterministic delays.
	Rand func() float64
}

// DefaultBackoff returns the defaults: 10s, doubling, capped at 10m, 20%
// jitter, 5 attempts in total.
func DefaultBackoff() Backoff {
	return Backoff{
		Initial:     10 * time.Second,
		Max:         10 * time.Minute,
		Multiplier:  2,
		Jitter:      0.2,
		MaxAttempts: 5,
	}
}

func (b Backoff) withDefaults() Backoff {
	d := DefaultBackoff()
	if b.Initial <= 0 {
		b.Initial = d.Initial
	}
	if b.Max <= 0 {
		b.Max = d.Max
	}
	if b.Multiplier < 1 {
		b.Multiplier = d.Multiplier
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = d.Jitter
	case b.Jitter < 0:
		b.Jitter = 0
	case b.Jitter > 1:
		b.Jitter = 1
	}
	if b.MaxAttempts <= 0 {
		b.MaxAttempts = d.MaxAttempts
	}
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
	return b
}

// Delay returns the wait before retry number attempt, where attempt 1 is
// the retry after the first failed run.
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.withDefaults()
	if attempt < 1 {
		attempt = 1
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	d -= d * b.Jitter * b.Rand()
	return time.Duration(d)
}

// Exhausted reports whether a file that has been run attempts times may not
// be retried again.
func (b Backoff) Exhausted(attempts int) bool {
	return attempts >= b.withDefaults().MaxAttempts
}
