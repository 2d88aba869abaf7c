package engine

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule describes when a trigger fires. It is cron's one-method
// interface: Next returns the first activation strictly after t, or the zero
// time if the schedule never fires again.
type Schedule interface {
	Next(t time.Time) time.Time
}

// MinEvery is the shortest interval accepted by ParseEvery and "@every". A
// shorter period would let a script spin the engine in a busy loop.
const MinEvery = time.Second

// ScheduleError reports a schedule specification that could not be parsed.
// Spec is the text exactly as the script gave it.
type ScheduleError struct {
	Spec string
	Err  error
}

// Error implements error.
func (e *ScheduleError) Error() string {
	return fmt.Sprintf("engine: schedule %q: %v", e.Spec, e.Err)
}

// Unwrap returns the underlying cause.
func (e *ScheduleError) Unwrap() error { return e.Err }

// cronParser accepts 5 fields (minute first) or 6 fields (leading seconds)
// plus the @yearly/@monthly/@weekly/@daily/@hourly descriptors. "@every" is
// intercepted before it reaches the parser so that it gets mailbot's own
// Every type and minimum.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour |
	cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a cron specification:
//
//   - 5 fields: "min hour dom month dow", e.g. "0 8 * * 1-5";
//   - 6 fields: a leading seconds field, e.g. "30 0 8 * * 1-5";
//   - descriptors: @yearly (@annually), @monthly, @weekly, @daily
//     (@midnight), @hourly;
//   - "@every <duration>", e.g. "@every 10m" (see ParseEvery).
//
// Cron specs are evaluated in loc. A "CRON_TZ=<zone> " prefix in spec takes
// precedence over loc. A nil loc means the location of the time passed to
// Next, which for the engine is the clock's (normally time.Local).
//
// A spec that can never fire (such as "0 0 30 2 *") is rejected. Errors are
// *ScheduleError values naming the spec.
func ParseSchedule(spec string, loc *time.Location) (Schedule, error) {
	trimmed := strings.TrimSpace(spec)
	if trimmed == "" {
		return nil, &ScheduleError{Spec: spec, Err: errors.New("empty schedule")}
	}
	if rest, ok := strings.CutPrefix(trimmed, "@every"); ok {
		if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			return nil, &ScheduleError{Spec: spec, Err: errors.New(`"@every" needs a duration, e.g. "@every 10m"`)}
		}
		e, err := parseEvery(strings.TrimSpace(rest))
		if err != nil {
			return nil, &ScheduleError{Spec: spec, Err: err}
		}
		return e, nil
	}
	parsed, err := cronParser.Parse(trimmed)
	if err != nil {
		return nil, &ScheduleError{Spec: spec, Err: err}
	}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		// The parser only returns other types for @every, handled above.
		return nil, &ScheduleError{Spec: spec, Err: fmt.Errorf("unexpected schedule type %T", parsed)}
	}
	hasTZ := strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ=")
	if !hasTZ {
		if loc == nil {
			loc = time.Local
		}
		ss.Location = loc
	}
	// The parser accepts field combinations that never match (February 30th);
	// catching them here gives the script author an error instead of a
	// trigger that silently never runs. cron searches five years ahead, which
	// covers leap days.
	if ss.Next(time.Now()).IsZero() {
		return nil, &ScheduleError{Spec: spec, Err: errors.New("schedule never fires")}
	}
	return &cronSchedule{spec: trimmed, s: ss}, nil
}

// cronSchedule wraps cron's SpecSchedule so that it prints as its spec.
type cronSchedule struct {
	spec string
	s    *cron.SpecSchedule
}

func (c *cronSchedule) Next(t time.Time) time.Time { return c.s.Next(t) }

func (c *cronSchedule) String() string { return c.spec }

// Every is a fixed-interval Schedule: it fires Interval after the previous
// activation (or after the time the trigger was added).
type Every struct {
	Interval time.Duration
}

// Next returns t + Interval, or the zero time for a non-positive interval.
func (e Every) Next(t time.Time) time.Time {
	if e.Interval <= 0 {
		return time.Time{}
	}
	return t.Add(e.Interval)
}

// String returns the spec form, e.g. "@every 5m0s".
func (e Every) String() string { return "@every " + e.Interval.String() }

// ParseEvery parses the argument of mailbot.every: a Go duration such as
// "30s", "5m" or "1h30m", at least MinEvery. Errors are *ScheduleError.
func ParseEvery(s string) (Every, error) {
	e, err := parseEvery(strings.TrimSpace(s))
	if err != nil {
		return Every{}, &ScheduleError{Spec: s, Err: err}
	}
	return e, nil
}

func parseEvery(s string) (Every, error) {
	if s == "" {
		return Every{}, errors.New("empty interval")
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return Every{}, fmt.Errorf("parse interval: %w", err)
	}
	if d < MinEvery {
		return Every{}, fmt.Errorf("interval %v is shorter than the minimum %v", d, MinEvery)
	}
	return Every{Interval: d}, nil
}

// MissedSince reports whether s had an activation in (last, now], that is
// one that should have run while the engine was down, and returns the most
// recent such activation. It is the catch-up check: a trigger with
// catchup=true runs once at start, scheduled at the returned time, however
// many activations were missed. A zero last (the trigger never ran) reports
// nothing missed.
func MissedSince(s Schedule, last, now time.Time) (time.Time, bool) {
	if last.IsZero() || !now.After(last) {
		return time.Time{}, false
	}
	first := s.Next(last)
	if first.IsZero() || first.After(now) {
		return time.Time{}, false
	}
	if e, ok := s.(Every); ok {
		n := now.Sub(last) / e.Interval
		return last.Add(n * e.Interval), true
	}
	// Walking forward from last could take millions of steps after a long
	// outage with a per-second schedule. Instead, look back from now in
	// doubling windows until one contains an activation, then walk only that
	// window; the window is at most about twice the gap to the latest
	// activation.
	start := last
	for d := time.Second; d > 0 && d < 1<<62; d *= 2 {
		p := now.Add(-d)
		if !p.After(last) {
			break
		}
		if n := s.Next(p); !n.IsZero() && !n.After(now) {
			start = p
			break
		}
	}
	latest := first
	for t := s.Next(start); !t.IsZero() && !t.After(now); t = s.Next(t) {
		latest = t
	}
	return latest, true
}
