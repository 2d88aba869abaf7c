package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
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
	// Kind is "cron" for ParseSchedule and "every" for ParseEvery.
	Kind string
	Spec string
	Err  error
}

// Error implements error, e.g.
// `cron "0 25 * * *": hour field "25": must be 0-23, ...`.
func (e *ScheduleError) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "schedule"
	}
	return fmt.Sprintf("%s %q: %v", kind, e.Spec, e.Err)
}

// Unwrap returns the underlying cause.
func (e *ScheduleError) Unwrap() error { return e.Err }

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
// Daylight-saving changes are handled as Vixie cron does (see the
// mailbot.cron section of docs/lua-api.md).
//
// A spec that can never fire (such as "0 0 30 2 *") is rejected. Errors are
// *ScheduleError values naming the spec and, for a bad field, the field and
// its accepted forms.
func ParseSchedule(spec string, loc *time.Location) (Schedule, error) {
	trimmed := strings.TrimSpace(spec)
	if trimmed == "" {
		return nil, &ScheduleError{Kind: "cron", Spec: spec, Err: errors.New("empty schedule")}
	}
	if rest, ok := strings.CutPrefix(trimmed, "@every"); ok {
		if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			return nil, &ScheduleError{Kind: "cron", Spec: spec, Err: errors.New(`"@every" needs a duration, e.g. "@every 10m"`)}
		}
		e, err := parseEvery(strings.TrimSpace(rest))
		if err != nil {
			return nil, &ScheduleError{Kind: "cron", Spec: spec, Err: err}
		}
		return e, nil
	}
	cs, err := parseCron(trimmed)
	if err != nil {
		return nil, &ScheduleError{Kind: "cron", Spec: spec, Err: err}
	}
	if !cs.hasLoc {
		cs.loc = loc
	}
	// Field combinations that never match (February 30th) give the script
	// author an error instead of a trigger that silently never runs.
	if cs.Next(time.Now()).IsZero() {
		return nil, &ScheduleError{Kind: "cron", Spec: spec, Err: errors.New("schedule never fires (no such date)")}
	}
	return cs, nil
}

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

// ParseEvery parses the argument of mailbot.every: a duration such as
// "30s", "5m", "1h30m", "1d" (24h) or "1w" (7 days), at least MinEvery.
// Errors are *ScheduleError.
func ParseEvery(s string) (Every, error) {
	e, err := parseEvery(strings.TrimSpace(s))
	if err != nil {
		return Every{}, &ScheduleError{Kind: "every", Spec: s, Err: err}
	}
	return e, nil
}

func parseEvery(s string) (Every, error) {
	if s == "" {
		return Every{}, errors.New("empty interval")
	}
	d, err := parseLongDuration(s)
	if err != nil {
		return Every{}, fmt.Errorf("interval %q: want a duration such as 30s, 5m, 1h30m, 1d or 1w (units ms, s, m, h, d = 24h, w = 7d)", s)
	}
	if d < MinEvery {
		return Every{}, fmt.Errorf("interval %v is shorter than the minimum %v", d, MinEvery)
	}
	return Every{Interval: d}, nil
}

// parseLongDuration is time.ParseDuration plus the units d (24 hours) and
// w (7 days), which may be combined with the others: "1w2d", "1d12h".
func parseLongDuration(s string) (time.Duration, error) {
	if !strings.ContainsAny(s, "dw") {
		return time.ParseDuration(s)
	}
	var total time.Duration
	var rest strings.Builder
	for s != "" {
		i := 0
		for i < len(s) && (s[i] == '.' || (s[i] >= '0' && s[i] <= '9')) {
			i++
		}
		j := i
		for j < len(s) && (s[j] < '0' || s[j] > '9') && s[j] != '.' {
			j++
		}
		num, unit := s[:i], s[i:j]
		if num == "" || unit == "" {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		s = s[j:]
		var per time.Duration
		switch unit {
		case "d":
			per = 24 * time.Hour
		case "w":
			per = 7 * 24 * time.Hour
		default:
			rest.WriteString(num + unit)
			continue
		}
		n, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q: %w", num, err)
		}
		if n*float64(per) > float64(1<<62) {
			return 0, errors.New("duration too long")
		}
		total += time.Duration(n * float64(per))
	}
	if rest.Len() > 0 {
		d, err := time.ParseDuration(rest.String())
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
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
