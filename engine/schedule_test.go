package engine

import (
	"errors"
	"testing"
	"time"
	_ "time/tzdata" // Asia/Shanghai must load on hosts without zoneinfo
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

func TestParseScheduleNext(t *testing.T) {
	shanghai := mustLoc(t, "Asia/Shanghai")
	// t0 is Monday 2025-03-03 07:00 UTC, 15:00 in Shanghai.
	tests := []struct {
		name string
		spec string
		loc  *time.Location
		want []time.Time // successive Next results from t0
	}{
		{"weekdays at 8 UTC", "0 8 * * 1-5", time.UTC, []time.Time{
			time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC),
			time.Date(2025, 3, 4, 8, 0, 0, 0, time.UTC),
		}},
		{"weekdays at 8 Shanghai", "0 8 * * 1-5", shanghai, []time.Time{
			time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC), // Tue 08:00 CST
			time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC),
		}},
		{"friday evening Shanghai skips weekend", "30 18 * * 5", shanghai, []time.Time{
			time.Date(2025, 3, 7, 10, 30, 0, 0, time.UTC),
			time.Date(2025, 3, 14, 10, 30, 0, 0, time.UTC),
		}},
		{"six fields, leading seconds", "30 0 8 * * *", time.UTC, []time.Time{
			time.Date(2025, 3, 3, 8, 0, 30, 0, time.UTC),
			time.Date(2025, 3, 4, 8, 0, 30, 0, time.UTC),
		}},
		{"six fields every 15 seconds", "*/15 * * * * *", time.UTC, []time.Time{
			t0.Add(15 * time.Second), t0.Add(30 * time.Second),
		}},
		{"spec time zone wins", "CRON_TZ=Asia/Shanghai 0 8 * * *", time.UTC, []time.Time{
			time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC),
		}},
		{"@hourly", "@hourly", time.UTC, []time.Time{t0.Add(time.Hour), t0.Add(2 * time.Hour)}},
		{"@daily", "@daily", time.UTC, []time.Time{time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)}},
		{"@daily Shanghai", "@daily", shanghai, []time.Time{time.Date(2025, 3, 3, 16, 0, 0, 0, time.UTC)}},
		{"@midnight", "@midnight", time.UTC, []time.Time{time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)}},
		{"@weekly", "@weekly", time.UTC, []time.Time{time.Date(2025, 3, 9, 0, 0, 0, 0, time.UTC)}},
		{"@monthly", "@monthly", time.UTC, []time.Time{time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)}},
		{"@yearly", "@yearly", time.UTC, []time.Time{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"@annually", "@annually", time.UTC, []time.Time{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"@every", "@every 10m", nil, []time.Time{t0.Add(10 * time.Minute), t0.Add(20 * time.Minute)}},
		{"@every compound", "@every 1h30m", nil, []time.Time{t0.Add(90 * time.Minute)}},
		{"surrounding space", "  0 8 * * *  ", time.UTC, []time.Time{time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSchedule(tc.spec, tc.loc)
			if err != nil {
				t.Fatalf("ParseSchedule(%q): %v", tc.spec, err)
			}
			at := t0
			for i, want := range tc.want {
				at = s.Next(at)
				if !at.Equal(want) {
					t.Fatalf("Next #%d = %v, want %v", i+1, at.UTC(), want)
				}
			}
		})
	}
}

func TestParseScheduleErrors(t *testing.T) {
	specs := []string{
		"",
		"   ",
		"* * *",
		"61 * * * *",
		"0 25 * * *",
		"1 2 3 4 5 6 7",
		"0 0 30 2 *", // February 30th never comes
		"@fortnightly",
		"@every",
		"@everyday",
		"@every banana",
		"@every 10ms",
		"@every -5m",
		"CRON_TZ=Mars/Olympus 0 8 * * *",
	}
	for _, spec := range specs {
		t.Run(spec, func(t *testing.T) {
			_, err := ParseSchedule(spec, time.UTC)
			var se *ScheduleError
			if !errors.As(err, &se) {
				t.Fatalf("ParseSchedule(%q) error = %v, want *ScheduleError", spec, err)
			}
			if se.Spec != spec {
				t.Fatalf("ScheduleError.Spec = %q, want %q", se.Spec, spec)
			}
		})
	}
}

func TestParseEvery(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"5m", 5 * time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{" 30s ", 30 * time.Second, false},
		{"1s", time.Second, false},
		{"1d", 24 * time.Hour, false},
		{"1w", 7 * 24 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"1w2d", 9 * 24 * time.Hour, false},
		{"1.5d", 36 * time.Hour, false},
		{"d", 0, true},
		{"1x", 0, true},
		{"1d5", 0, true},
		{"-1d", 0, true},
		{"", 0, true},
		{"0s", 0, true},
		{"500ms", 0, true},
		{"-5m", 0, true},
		{"5", 0, true},
		{"five minutes", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			e, err := ParseEvery(tc.in)
			if tc.wantErr {
				var se *ScheduleError
				if !errors.As(err, &se) || se.Spec != tc.in {
					t.Fatalf("ParseEvery(%q) error = %v, want *ScheduleError naming the spec", tc.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEvery(%q): %v", tc.in, err)
			}
			if e.Interval != tc.want {
				t.Fatalf("Interval = %v, want %v", e.Interval, tc.want)
			}
			if got := e.Next(t0); !got.Equal(t0.Add(tc.want)) {
				t.Fatalf("Next = %v, want %v", got, t0.Add(tc.want))
			}
		})
	}
}

func TestMissedSince(t *testing.T) {
	mustParse := func(spec string) Schedule {
		s, err := ParseSchedule(spec, time.UTC)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	monday8 := time.Date(2025, 3, 3, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		s          Schedule
		last, now  time.Time
		want       time.Time
		wantMissed bool
	}{
		{"every: two missed, latest returned", Every{5 * time.Minute}, t0, t0.Add(12 * time.Minute), t0.Add(10 * time.Minute), true},
		{"every: exactly due", Every{5 * time.Minute}, t0, t0.Add(5 * time.Minute), t0.Add(5 * time.Minute), true},
		{"every: not yet due", Every{5 * time.Minute}, t0, t0.Add(4 * time.Minute), time.Time{}, false},
		{"daily cron missed over two days", mustParse("0 8 * * *"), monday8, time.Date(2025, 3, 5, 9, 0, 0, 0, time.UTC),
			time.Date(2025, 3, 5, 8, 0, 0, 0, time.UTC), true},
		{"daily cron not missed", mustParse("0 8 * * *"), monday8, monday8.Add(4 * time.Hour), time.Time{}, false},
		{"weekdays: weekend outage misses nothing", mustParse("0 8 * * 1-5"),
			time.Date(2025, 3, 7, 8, 0, 0, 0, time.UTC), time.Date(2025, 3, 9, 12, 0, 0, 0, time.UTC), time.Time{}, false},
		{"per-second cron after a month down", mustParse("* * * * * *"), t0, t0.Add(30 * 24 * time.Hour),
			t0.Add(30 * 24 * time.Hour), true},
		{"yearly cron after three years", mustParse("@yearly"), time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"never ran", Every{time.Minute}, time.Time{}, t0, time.Time{}, false},
		{"clock behind last run", Every{time.Minute}, t0, t0.Add(-time.Hour), time.Time{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, missed := MissedSince(tc.s, tc.last, tc.now)
			if missed != tc.wantMissed || !got.Equal(tc.want) {
				t.Fatalf("MissedSince = %v, %v; want %v, %v", got, missed, tc.want, tc.wantMissed)
			}
		})
	}
}
