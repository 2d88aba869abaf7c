package luabind

import (
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// fixedNow is 2024-03-09 17:04:05.25 UTC, a Saturday; in Asia/Shanghai
// (UTC+8) it is already Sunday 2024-03-10 01:04:05.
var fixedNow = time.Date(2024, 3, 9, 17, 4, 5, 250_000_000, time.UTC)

func newTimeTestState(t *testing.T) *lua.LState {
	t.Helper()
	L := newTestState(t, Options{Now: func() time.Time { return fixedNow }, Location: time.UTC})
	if _, err := evalLua(L, `time = require("time") t0 = time.now()`); err != nil {
		t.Fatal(err)
	}
	return L
}

func TestTimeFormat(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"now is unix seconds", `string.format("%.2f", t0)`, "1710003845.25"},
		{"strftime default zone", `time.format(t0, "%Y-%m-%d %H:%M:%S")`, "2024-03-09 17:04:05"},
		{"strftime Shanghai", `time.format(t0, "%Y-%m-%d %H:%M", "Asia/Shanghai")`, "2024-03-10 01:04"},
		{"go layout Shanghai", `time.format(t0, "2006-01-02T15:04:05Z07:00", "Asia/Shanghai")`, "2024-03-10T01:04:05+08:00"},
		{"named layout", `time.format(t0, "RFC3339")`, "2024-03-09T17:04:05Z"},
		{"named layout with zone", `time.format(t0, "RFC1123Z", "Asia/Shanghai")`, "Sun, 10 Mar 2024 01:04:05 +0800"},
		{"names and numbers", `time.format(t0, "%a %A %b %B %e %j %I%p %Z %z")`, "Sat Saturday Mar March  9 069 05PM UTC +0000"},
		{"composite directives", `time.format(t0, "%F %T %R %D")`, "2024-03-09 17:04:05 17:04 03/09/24"},
		{"format-only directives", `time.format(t0, "%s %u %w %f %%")`, "1710003845 6 6 250000 %"},
		{"literal text kept", `time.format(t0, "Jan 1st: %d")`, "Jan 1st: 09"},
		{"fraction rounding", `time.format(0.1 + 0.2, "%S.%f", "UTC")`, "00.300000"},
		{"unknown directive kept", `time.format(t0, "%Q")`, "%Q"},
	}
	L := newTimeTestState(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := evalString(t, L, "return "+tc.expr); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
			}
		})
	}
}

func TestTimeNumbers(t *testing.T) {
	tests := []struct {
		name, expr string
		want       float64
	}{
		{"parse strftime in zone", `time.parse("2024-03-10 01:04:05", "%Y-%m-%d %H:%M:%S", "Asia/Shanghai")`, 1710003845},
		{"parse offset wins over zone", `time.parse("2024-03-09T17:04:05Z", "RFC3339", "Asia/Shanghai")`, 1710003845},
		{"parse go layout", `time.parse("09/03/2024", "02/01/2006")`, 1709942400},
		{"add duration string", `time.add(t0, "1h30m") - t0`, 5400},
		{"add days", `time.add(t0, "2d") - t0`, 172800},
		{"add seconds", `time.add(t0, -60) - t0`, -60},
		{"duration minutes", `time.duration("5m")`, 300},
		{"duration fractional days", `time.duration("1.5d")`, 129600},
		{"duration negative", `time.duration("-90s")`, -90},
		{"duration sub-second", `time.duration("250ms")`, 0.25},
	}
	L := newTimeTestState(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := evalLua(L, "return "+tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := out[0].(lua.LNumber); !ok || float64(got) != tc.want {
				t.Errorf("%s = %v, want %v", tc.expr, out[0], tc.want)
			}
		})
	}
}

func TestTimeDate(t *testing.T) {
	tests := []struct {
		name, expr string
		want       map[string]lua.LValue
	}{
		{"Shanghai", `time.date(t0, "Asia/Shanghai")`, map[string]lua.LValue{
			"year": lua.LNumber(2024), "month": lua.LNumber(3), "day": lua.LNumber(10),
			"hour": lua.LNumber(1), "min": lua.LNumber(4), "sec": lua.LNumber(5),
			"wday": lua.LNumber(1), "yday": lua.LNumber(70), "isdst": lua.LFalse,
			"zone": lua.LString("CST"), "offset": lua.LNumber(8 * 3600),
		}},
		{"New York summer", `time.date(time.parse("2024-07-01 12:00", "%Y-%m-%d %H:%M", "UTC"), "America/New_York")`, map[string]lua.LValue{
			"hour": lua.LNumber(8), "isdst": lua.LTrue, "zone": lua.LString("EDT"), "offset": lua.LNumber(-4 * 3600),
		}},
		{"nil means now", `time.date(nil, "UTC")`, map[string]lua.LValue{
			"day": lua.LNumber(9), "hour": lua.LNumber(17), "wday": lua.LNumber(7),
		}},
	}
	L := newTimeTestState(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := evalLua(L, "return "+tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			tb, ok := out[0].(*lua.LTable)
			if !ok {
				t.Fatalf("%s returned %s, want a table", tc.expr, out[0].Type())
			}
			for k, want := range tc.want {
				if got := tb.RawGetString(k); got != want {
					t.Errorf("%s.%s = %v, want %v", tc.expr, k, got, want)
				}
			}
		})
	}
}

func TestTimeErrors(t *testing.T) {
	tests := []struct {
		name, expr, want string
	}{
		{"unknown zone", `time.format(t0, "%Y", "Mars/Olympus")`, `time.format: unknown time zone "Mars/Olympus"`},
		{"parse mismatch", `time.parse("yesterday", "%Y-%m-%d")`, `time.parse: "yesterday" does not match layout "%Y-%m-%d"`},
		{"parse unsupported directive", `time.parse("1", "%s")`, "directive %s cannot be parsed"},
		{"bad duration", `time.duration("soon")`, `time.duration: invalid duration "soon"`},
		{"bad add", `time.add(t0, "1 hour")`, `time.add: invalid duration "1 hour"`},
		{"add wrong type", `time.add(t0, {})`, "duration must be a number of seconds"},
	}
	L := newTimeTestState(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := evalLua(L, "return "+tc.expr)
			if msg := luaErrorMessage(err); !strings.Contains(msg, tc.want) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.want)
			}
		})
	}
}

func TestTimeLuaFile(t *testing.T) {
	L := newTestState(t, Options{Now: func() time.Time { return fixedNow }, Location: time.UTC})
	runLuaTestFile(t, L, "testdata/toolbox_time.lua")
}
