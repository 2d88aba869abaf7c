package engine

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestCronDST drives the Scheduler with a fake clock across the 2026
// daylight-saving changes and asserts every fire time (given in UTC).
// America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT, 2026-11-01 02:00 EDT
// -> 01:00 EST. Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST,
// 2026-10-25 02:00 BST -> 01:00 GMT.
func TestCronDST(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	london := mustLoc(t, "Europe/London")
	shanghai := mustLoc(t, "Asia/Shanghai")
	tests := []struct {
		name     string
		spec     string
		loc      *time.Location
		from, to string // UTC window
		want     []string
	}{
		// Fixed-time jobs: once a day, a missing time at the end of the gap,
		// a repeated time at its first occurrence.
		{"NY spring: 02:30 runs at 03:00 EDT", "30 2 * * *", ny, "2026-03-07 17:00", "2026-03-09 17:00",
			[]string{"2026-03-08 07:00", "2026-03-09 06:30"}},
		{"NY spring: six fields", "0 30 2 * * *", ny, "2026-03-07 17:00", "2026-03-09 17:00",
			[]string{"2026-03-08 07:00", "2026-03-09 06:30"}},
		{"NY spring: two times in the gap run once", "0,30 2 * * *", ny, "2026-03-07 17:00", "2026-03-09 17:00",
			[]string{"2026-03-08 07:00", "2026-03-09 06:00", "2026-03-09 06:30"}},
		{"NY spring: 01:30 unaffected", "30 1 * * *", ny, "2026-03-07 17:00", "2026-03-09 17:00",
			[]string{"2026-03-08 06:30", "2026-03-09 05:30"}},
		{"NY spring: 03:00 once", "0 3 * * *", ny, "2026-03-07 17:00", "2026-03-09 17:00",
			[]string{"2026-03-08 07:00", "2026-03-09 07:00"}},
		{"NY fall: 01:30 once, first occurrence (EDT)", "30 1 * * *", ny, "2026-10-31 16:00", "2026-11-02 17:00",
			[]string{"2026-11-01 05:30", "2026-11-02 06:30"}},
		{"NY fall: 02:30 once", "30 2 * * *", ny, "2026-10-31 16:00", "2026-11-02 17:00",
			[]string{"2026-11-01 07:30", "2026-11-02 07:30"}},
		{"NY fall: 01:00 once", "0 1 * * *", ny, "2026-10-31 16:00", "2026-11-02 17:00",
			[]string{"2026-11-01 05:00", "2026-11-02 06:00"}},
		{"NY @daily both days", "@daily", ny, "2026-03-07 17:00", "2026-03-09 17:00",
			[]string{"2026-03-08 05:00", "2026-03-09 04:00"}},
		{"NY @daily fall", "@daily", ny, "2026-10-31 16:00", "2026-11-02 17:00",
			[]string{"2026-11-01 04:00", "2026-11-02 05:00"}},
		// Wildcard jobs follow the wall clock: no make-up for the skipped
		// hour, the repeated hour runs again.
		{"NY spring: every 2 hours skips 02:00", "0 */2 * * *", ny, "2026-03-08 04:30", "2026-03-08 10:30",
			[]string{"2026-03-08 05:00", "2026-03-08 08:00", "2026-03-08 10:00"}},
		{"NY fall: every 2 hours, 00:00 EDT then 02:00 EST", "0 */2 * * *", ny, "2026-11-01 03:30", "2026-11-01 09:30",
			[]string{"2026-11-01 04:00", "2026-11-01 07:00", "2026-11-01 09:00"}},
		{"NY fall: hourly runs every real hour", "0 * * * *", ny, "2026-11-01 04:30", "2026-11-01 08:30",
			[]string{"2026-11-01 05:00", "2026-11-01 06:00", "2026-11-01 07:00", "2026-11-01 08:00"}},
		{"NY spring: every 30 minutes", "*/30 * * * *", ny, "2026-03-08 06:00", "2026-03-08 07:45",
			[]string{"2026-03-08 06:30", "2026-03-08 07:00", "2026-03-08 07:30"}},
		// Europe/London changes at 01:00 UTC.
		{"London spring: 01:30 runs at 02:00 BST", "30 1 * * *", london, "2026-03-28 12:00", "2026-03-30 12:00",
			[]string{"2026-03-29 01:00", "2026-03-30 00:30"}},
		{"London fall: 01:30 once (BST)", "30 1 * * *", london, "2026-10-24 12:00", "2026-10-26 12:00",
			[]string{"2026-10-25 00:30", "2026-10-26 01:30"}},
		// Zones without daylight saving.
		{"Shanghai", "30 2 * * *", shanghai, "2026-03-07 04:00", "2026-03-09 04:00",
			[]string{"2026-03-07 18:30", "2026-03-08 18:30"}},
		{"UTC", "30 2 * * *", time.UTC, "2026-03-07 04:00", "2026-03-09 04:00",
			[]string{"2026-03-08 02:30", "2026-03-09 02:30"}},
		{"UTC fall", "30 1 * * *", time.UTC, "2026-10-31 04:00", "2026-11-02 04:00",
			[]string{"2026-11-01 01:30", "2026-11-02 01:30"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sched, err := ParseSchedule(tc.spec, tc.loc)
			if err != nil {
				t.Fatal(err)
			}
			from, to := utc(tc.from), utc(tc.to)
			clock := NewFakeClock(from.In(tc.loc))
			s := newTestScheduler(t, clock)
			if err := s.Add(Entry{ID: "job", Schedule: sched}); err != nil {
				t.Fatal(err)
			}
			s.Start()
			var got []string
			for {
				next, ok := s.Next("job")
				if !ok || next.After(to) {
					break
				}
				if err := clock.WaitForTimers(waitCtx(t), 1); err != nil {
					t.Fatal(err)
				}
				clock.Set(next)
				tk := recvTick(t, s)
				if !tk.ScheduledAt.Equal(next) {
					t.Fatalf("tick at %v, want %v", tk.ScheduledAt, next)
				}
				got = append(got, tk.ScheduledAt.UTC().Format("2006-01-02 15:04"))
				if len(got) > len(tc.want)+2 {
					break
				}
			}
			if strings.Join(got, ", ") != strings.Join(tc.want, ", ") {
				t.Fatalf("fired at %v (UTC), want %v", got, tc.want)
			}
		})
	}
}

// TestCronNextFromInsideRepeatedHour checks that a fixed-time job does not
// run again when the search starts in the second occurrence of the hour.
func TestCronNextFromInsideRepeatedHour(t *testing.T) {
	ny := mustLoc(t, "America/New_York")
	s, err := ParseSchedule("30 1 * * *", ny)
	if err != nil {
		t.Fatal(err)
	}
	from := utc("2026-11-01 06:10") // 01:10 EST, the second 01:10
	if got, want := s.Next(from), utc("2026-11-02 06:30"); !got.Equal(want) {
		t.Fatalf("Next = %v, want %v", got.UTC(), want)
	}
	w, err := ParseSchedule("*/30 * * * *", ny)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.Next(from), utc("2026-11-01 06:30"); !got.Equal(want) {
		t.Fatalf("wildcard Next = %v, want %v (01:30 EST)", got.UTC(), want)
	}
}

func TestCronFieldErrors(t *testing.T) {
	const forms = ", a list (1,2), a range (1-5) or a step (*/2)"
	tests := []struct {
		spec, want string
	}{
		{"0 25 * * *", `cron "0 25 * * *": hour field "25": must be 0-23` + forms},
		{"61 * * * *", `cron "61 * * * *": minute field "61": must be 0-59` + forms},
		{"0 0 32 * *", `cron "0 0 32 * *": day-of-month field "32": must be 1-31 or ?` + forms},
		{"0 0 0 * *", `cron "0 0 0 * *": day-of-month field "0": must be 1-31 or ?` + forms},
		{"0 0 * 13 *", `cron "0 0 * 13 *": month field "13": must be 1-12 or JAN-DEC` + forms},
		{"0 0 * FOO *", `cron "0 0 * FOO *": month field "FOO": must be 1-12 or JAN-DEC` + forms},
		{"0 0 * * 8", `cron "0 0 * * 8": day-of-week field "8": must be 0-7 (0 and 7 are Sunday), SUN-SAT or ?` + forms},
		{"60 0 0 * * *", `cron "60 0 0 * * *": second field "60": must be 0-59` + forms},
		{"*/0 * * * *", `cron "*/0 * * * *": minute field "*/0": must be 0-59` + forms},
		{"0 5-1 * * *", `cron "0 5-1 * * *": hour field "5-1": must be 0-23` + forms},
		{"0 1,,2 * * *", `cron "0 1,,2 * * *": hour field "1,,2": must be 0-23` + forms},
		{"0 ? * * *", `cron "0 ? * * *": hour field "?": must be 0-23` + forms},
		{"x * * * *", `cron "x * * * *": minute field "x": must be 0-59` + forms},
		{"* * *", `cron "* * *": want 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading seconds field, got 3`},
		{"1 2 3 4 5 6 7", `cron "1 2 3 4 5 6 7": want 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading seconds field, got 7`},
		{"@fortnightly", `cron "@fortnightly": unknown descriptor "@fortnightly": want @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or "@every <duration>"`},
		{"CRON_TZ=Mars/Olympus 0 8 * * *", `cron "CRON_TZ=Mars/Olympus 0 8 * * *": time zone "Mars/Olympus" is not a known IANA zone name (such as Europe/Berlin)`},
		{"0 0 30 2 *", `cron "0 0 30 2 *": schedule never fires (no such date)`},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			_, err := ParseSchedule(tc.spec, time.UTC)
			var se *ScheduleError
			if !errors.As(err, &se) {
				t.Fatalf("error = %v, want *ScheduleError", err)
			}
			if err.Error() != tc.want {
				t.Fatalf("error =\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
}

func TestCronSyntax(t *testing.T) {
	// t0 is Monday 2025-03-03 07:00 UTC.
	tests := []struct {
		spec string
		want string // first activation after t0, UTC
	}{
		{"0 8 * * MON-FRI", "2025-03-03 08:00"},
		{"0 8 * * sun", "2025-03-09 08:00"},
		{"0 8 * * 7", "2025-03-09 08:00"},
		{"0 8 * * 0", "2025-03-09 08:00"},
		{"0 8 1 * *", "2025-04-01 08:00"},
		{"0 8 ? * 3", "2025-03-05 08:00"},
		{"0 0 1 jan *", "2026-01-01 00:00"},
		{"5/20 * * * *", "2025-03-03 07:05"},
		{"0 9-17/4 * * *", "2025-03-03 09:00"},
		{"0 0 29 2 *", "2028-02-29 00:00"},
		// Both day fields restricted: either matches (Vixie cron).
		{"0 8 15 * 5", "2025-03-07 08:00"},
		{"TZ=Asia/Shanghai 0 16 * * *", "2025-03-03 08:00"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := ParseSchedule(tc.spec, time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(t0).UTC().Format("2006-01-02 15:04"); got != tc.want {
				t.Fatalf("Next = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestScriptScheduleSpecs loads scripts through the engine: every("1d")
// and every("1w") load, a bad cron field fails the load with the field
// named.
func TestScriptScheduleSpecs(t *testing.T) {
	h := newHarness(t, nil)
	h.write("long.lua", `
mailbot.every("1d", function() end)
mailbot.every("1w", function() end)
mailbot.cron("30 2 * * *", function() end, { tz = "America/New_York" })`)
	h.write("bad.lua", `mailbot.cron("0 25 * * *", function() end)`)
	h.start()
	h.waitLogged("script loaded", "long.lua")
	h.waitLogged("script load failed", "bad.lua")
	h.logs.mu.Lock()
	defer h.logs.mu.Unlock()
	for _, r := range h.logs.recs {
		if r.Message == "script load failed" && attr(r, "script") == "bad.lua" {
			want := `mailbot.cron: cron "0 25 * * *": hour field "25": must be 0-23, a list (1,2), a range (1-5) or a step (*/2)`
			if got := attr(r, "error"); !strings.Contains(got, want) {
				t.Fatalf("load error %q, want it to contain %q", got, want)
			}
			if at := attr(r, "at"); !strings.HasSuffix(at, "bad.lua:1") {
				t.Errorf("at = %q, want bad.lua:1", at)
			}
			return
		}
	}
}
