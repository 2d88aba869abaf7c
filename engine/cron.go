package engine

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// This file is mailbot's cron parser and its activation search. It keeps
// the spec syntax of robfig/cron v3 (5 or 6 fields, descriptors, CRON_TZ)
// and handles daylight-saving changes the way Vixie cron does: see
// cronSpec.Next.

// cronField describes one field of a cron spec.
type cronField struct {
	name     string // as the error message names it
	min, max int
	names    map[string]int // accepted names, upper case
	question bool           // "?" is accepted as "*"
	forms    string         // the accepted values, for the error message
}

var (
	secondField = cronField{name: "second", min: 0, max: 59, forms: "0-59"}
	minuteField = cronField{name: "minute", min: 0, max: 59, forms: "0-59"}
	hourField   = cronField{name: "hour", min: 0, max: 23, forms: "0-23"}
	domField    = cronField{name: "day-of-month", min: 1, max: 31, question: true, forms: "1-31 or ?"}
	monthField  = cronField{name: "month", min: 1, max: 12, forms: "1-12 or JAN-DEC", names: map[string]int{
		"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
		"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12,
	}}
	dowField = cronField{name: "day-of-week", min: 0, max: 7, question: true,
		forms: "0-7 (0 and 7 are Sunday), SUN-SAT or ?", names: map[string]int{
			"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6,
		}}
)

// cronDescriptors maps the @ shorthands to their 5-field specs.
var cronDescriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// cronSpec is a parsed cron specification.
type cronSpec struct {
	spec                           string // as written, trimmed
	second, minute, hour, dom, mon uint64 // bit i set: value i matches
	dow                            uint64
	domStar, dowStar               bool // field written as * or ?
	wild                           bool // minute or hour field starts with *
	loc                            *time.Location
	hasLoc                         bool // loc came from a CRON_TZ= prefix
}

// cronSearchYears bounds the search for the next activation; it covers
// February 29th.
const cronSearchYears = 8

// parseCron parses the cron forms of ParseSchedule (not "@every"). Errors
// are plain; ParseSchedule wraps them in a ScheduleError.
func parseCron(spec string) (*cronSpec, error) {
	s := &cronSpec{spec: spec}
	rest := spec
	for _, prefix := range []string{"CRON_TZ=", "TZ="} {
		tail, ok := strings.CutPrefix(rest, prefix)
		if !ok {
			continue
		}
		name, after, _ := strings.Cut(tail, " ")
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("%s needs a time zone name, e.g. %sEurope/Berlin 0 8 * * *", prefix, prefix)
		}
		loc, err := time.LoadLocation(name)
		if err != nil {
			return nil, fmt.Errorf("time zone %q is not a known IANA zone name (such as Europe/Berlin)", name)
		}
		s.loc, s.hasLoc = loc, true
		rest = strings.TrimSpace(after)
		if rest == "" {
			return nil, fmt.Errorf("nothing follows %s%s", prefix, name)
		}
		break
	}
	if strings.HasPrefix(rest, "@") {
		d, ok := cronDescriptors[strings.ToLower(rest)]
		if !ok {
			return nil, fmt.Errorf("unknown descriptor %q: want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or \"@every <duration>\"", rest)
		}
		rest = d
	}
	fields := strings.Fields(rest)
	if len(fields) == 5 {
		fields = append([]string{"0"}, fields...)
	} else if len(fields) != 6 {
		return nil, fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading seconds field, got %d", len(fields))
	}
	defs := []cronField{secondField, minuteField, hourField, domField, monthField, dowField}
	bits := []*uint64{&s.second, &s.minute, &s.hour, &s.dom, &s.mon, &s.dow}
	for i, f := range fields {
		b, err := defs[i].parse(f)
		if err != nil {
			return nil, err
		}
		*bits[i] = b
	}
	if s.dow&(1<<7) != 0 {
		s.dow = s.dow&^(1<<7) | 1 // 7 is Sunday too
	}
	star := func(f string) bool { return strings.HasPrefix(f, "*") || strings.HasPrefix(f, "?") }
	s.domStar, s.dowStar = star(fields[3]), star(fields[5])
	s.wild = star(fields[1]) || star(fields[2])
	return s, nil
}

// parse turns one field into its bit set.
func (f cronField) parse(field string) (uint64, error) {
	bad := func() (uint64, error) {
		return 0, fmt.Errorf("%s field %q: must be %s, a list (1,2), a range (1-5) or a step (*/2)", f.name, field, f.forms)
	}
	var bits uint64
	for _, item := range strings.Split(field, ",") {
		rng, stepText, hasStep := strings.Cut(item, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n <= 0 || n > f.max-f.min+1 {
				return bad()
			}
			step = n
		}
		var lo, hi int
		switch {
		case rng == "*" || (rng == "?" && f.question):
			lo, hi = f.min, f.max
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var ok bool
			if lo, ok = f.value(a); !ok {
				return bad()
			}
			hi = lo
			if isRange {
				if hi, ok = f.value(b); !ok || hi < lo {
					return bad()
				}
			} else if hasStep {
				hi = f.max // "5/15" means 5-max/15, as in robfig/cron
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

// value parses one number or name of the field.
func (f cronField) value(s string) (int, bool) {
	if v, ok := f.names[strings.ToUpper(s)]; ok {
		return v, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < f.min || n > f.max {
		return 0, false
	}
	return n, true
}

// String returns the spec as written.
func (s *cronSpec) String() string { return s.spec }

// location returns the zone the spec is read in for a time t.
func (s *cronSpec) location(t time.Time) *time.Location {
	if s.loc != nil {
		return s.loc
	}
	return t.Location()
}

// Next returns the first activation strictly after t.
//
// Daylight-saving changes follow Vixie cron (cron.c), which ISC cron and
// cronie share:
//
//   - A fixed-time job (its minute and hour fields are not "*" or "*/n")
//     runs once for every matching wall-clock time. A time that does not
//     exist (in the hour skipped when clocks go forward) runs at the first
//     instant after the gap; a time that happens twice (clocks go back) runs
//     at its first occurrence only.
//   - A wildcard job (minute or hour field starts with "*") runs whenever
//     the wall clock matches: nothing runs for the skipped hour, and the
//     repeated hour runs again, so "0 * * * *" still runs every real hour.
func (s *cronSpec) Next(t time.Time) time.Time {
	loc := s.location(t)
	t = t.In(loc)
	if s.wild {
		return s.nextWild(t, loc)
	}
	return s.nextFixed(t, loc)
}

// nextWild returns the first instant after t whose wall clock matches.
// It walks the zone's offset periods: within one, wall clock and real time
// move together.
func (s *cronSpec) nextWild(t time.Time, loc *time.Location) time.Time {
	from := civil(t).Add(time.Second)
	cur := t
	limit := t.Year() + cronSearchYears
	for cur.Year() <= limit {
		_, off := cur.Zone()
		_, end := cur.ZoneBounds()
		c := s.nextCivil(from)
		if c.IsZero() {
			return time.Time{}
		}
		r := time.Unix(c.Unix()-int64(off), 0).In(loc)
		if end.IsZero() || r.Before(end) {
			return r
		}
		cur = end.In(loc)
		from = civil(cur)
	}
	return time.Time{}
}

// nextFixed returns the instant of the first matching wall-clock time
// later than any wall-clock time already seen by t, at its first
// occurrence or, when it falls in a gap, at the end of the gap.
func (s *cronSpec) nextFixed(t time.Time, loc *time.Location) time.Time {
	seen := civil(t)
	if start, _ := t.ZoneBounds(); !start.IsZero() {
		// After clocks went back, the wall clock before the change was later
		// than now: those times have run already.
		if p := civil(start.Add(-time.Second).In(loc)); p.After(seen) {
			seen = p
		}
	}
	c := s.nextCivil(seen.Add(time.Second))
	if c.IsZero() {
		return time.Time{}
	}
	cur := t
	limit := c.Year() + 1
	for cur.Year() <= limit {
		_, off := cur.Zone()
		start, end := cur.ZoneBounds()
		r := time.Unix(c.Unix()-int64(off), 0).In(loc)
		if !start.IsZero() && r.Before(start) {
			r = start.In(loc) // c fell in the gap before this period
		}
		if end.IsZero() || r.Before(end) {
			return r
		}
		cur = end.In(loc)
	}
	return time.Time{}
}

// civil returns t's wall clock, to the second, as a UTC time, so that
// arithmetic on it knows no daylight saving.
func civil(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}

// nextCivil returns the first wall-clock time at or after c (a UTC civil
// time) that matches the spec, or the zero time if none comes within
// cronSearchYears.
func (s *cronSpec) nextCivil(c time.Time) time.Time {
	yearLimit := c.Year() + cronSearchYears
	added := false
WRAP:
	if c.Year() > yearLimit {
		return time.Time{}
	}
	for s.mon&(1<<uint(c.Month())) == 0 {
		if !added {
			added = true
			c = time.Date(c.Year(), c.Month(), 1, 0, 0, 0, 0, time.UTC)
		}
		c = c.AddDate(0, 1, 0)
		if c.Month() == time.January {
			goto WRAP
		}
	}
	for !s.dayMatches(c) {
		if !added {
			added = true
			c = time.Date(c.Year(), c.Month(), c.Day(), 0, 0, 0, 0, time.UTC)
		}
		c = c.AddDate(0, 0, 1)
		if c.Day() == 1 {
			goto WRAP
		}
	}
	for s.hour&(1<<uint(c.Hour())) == 0 {
		if !added {
			added = true
			c = c.Truncate(time.Hour)
		}
		c = c.Add(time.Hour)
		if c.Hour() == 0 {
			goto WRAP
		}
	}
	for s.minute&(1<<uint(c.Minute())) == 0 {
		if !added {
			added = true
			c = c.Truncate(time.Minute)
		}
		c = c.Add(time.Minute)
		if c.Minute() == 0 {
			goto WRAP
		}
	}
	for s.second&(1<<uint(c.Second())) == 0 {
		if !added {
			added = true
			c = c.Truncate(time.Second)
		}
		c = c.Add(time.Second)
		if c.Second() == 0 {
			goto WRAP
		}
	}
	return c
}

// dayMatches applies cron's day rule: when day-of-month or day-of-week is
// "*", both must match; when both are restricted, either may.
func (s *cronSpec) dayMatches(c time.Time) bool {
	dom := s.dom&(1<<uint(c.Day())) != 0
	dow := s.dow&(1<<uint(c.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}
