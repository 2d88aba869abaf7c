package luabind

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // zone names must work on minimal hosts without /usr/share/zoneinfo

	lua "github.com/yuin/gopher-lua"
)

// openTime returns the loader of the time module. Points in time are plain
// numbers: unix seconds with a fraction (microsecond precision), so they
// compare and subtract like any number and mix with os.time(). Zones are IANA
// names ("Asia/Shanghai", "UTC", "Local"); when a call names none,
// Options.Location applies. Lua's os.time/os.date are left as they are.
//
//	time.now() -> t
//	time.format(t, layout [, tz]) -> string
//	time.parse(s, layout [, tz]) -> t      -- tz applies when s has no offset
//	time.date(t [, tz]) -> {year, month, day, hour, min, sec, wday, yday, isdst, zone, offset}
//	                                       -- wday 1 = Sunday, as os.date("*t")
//	time.add(t, d) -> t                    -- d: seconds or a duration string
//	time.duration(s) -> seconds            -- "90s", "1h30m", "2d" (d = 24h), "-5m"
//
// A layout is a strftime pattern when it contains '%' ("%Y-%m-%d %H:%M:%S"),
// one of the names RFC3339, RFC3339Nano, RFC1123, RFC1123Z, RFC822Z, DateTime,
// DateOnly, TimeOnly, Kitchen, or else a Go reference layout
// ("2006-01-02 15:04"). strftime directives: %Y %y %m %d %e %H %I %M %S %p
// %b %h %B %a %A %j %Z %z %F %T %R %D %c %x %X %% %n %t; time.format also
// knows %s (unix seconds), %u (1-7, Monday 1), %w (0-6, Sunday 0) and %f
// (microseconds). For time.parse, literal text in a strftime pattern must not
// look like a Go layout element (such as "Jan" or a lone digit).
func openTime(o *Options) lua.LGFunction {
	zones := map[string]*time.Location{}
	location := func(L *lua.LState, n int, fname string) *time.Location {
		name := L.OptString(n, "")
		if name == "" {
			return o.Location
		}
		if loc, ok := zones[name]; ok {
			return loc
		}
		loc, err := time.LoadLocation(name)
		if err != nil {
			L.RaiseError("%s: unknown time zone %q", fname, name)
		}
		zones[name] = loc
		return loc
	}
	funcs := map[string]lua.LGFunction{
		"now": func(L *lua.LState) int {
			L.Push(lua.LNumber(fromTime(o.Now())))
			return 1
		},
		"format": func(L *lua.LState) int {
			t := toTime(float64(L.CheckNumber(1)))
			layout := L.CheckString(2)
			t = t.In(location(L, 3, "time.format"))
			L.Push(lua.LString(formatTime(t, layout)))
			return 1
		},
		"parse": func(L *lua.LState) int {
			s, layout := L.CheckString(1), L.CheckString(2)
			loc := location(L, 3, "time.parse")
			goLayout, err := goLayoutFor(layout)
			if err != nil {
				L.RaiseError("time.parse: %v", err)
			}
			t, err := time.ParseInLocation(goLayout, s, loc)
			if err != nil {
				L.RaiseError("time.parse: %q does not match layout %q: %v", s, layout, err)
			}
			L.Push(lua.LNumber(fromTime(t)))
			return 1
		},
		"date": func(L *lua.LState) int {
			var t time.Time
			if L.Get(1) == lua.LNil {
				t = o.Now()
			} else {
				t = toTime(float64(L.CheckNumber(1)))
			}
			t = t.In(location(L, 2, "time.date"))
			zone, offset := t.Zone()
			tb := L.CreateTable(0, 11)
			for k, v := range map[string]int{
				"year": t.Year(), "month": int(t.Month()), "day": t.Day(),
				"hour": t.Hour(), "min": t.Minute(), "sec": t.Second(),
				"wday": int(t.Weekday()) + 1, "yday": t.YearDay(), "offset": offset,
			} {
				tb.RawSetString(k, lua.LNumber(v))
			}
			tb.RawSetString("isdst", lua.LBool(t.IsDST()))
			tb.RawSetString("zone", lua.LString(zone))
			L.Push(tb)
			return 1
		},
		"add": func(L *lua.LState) int {
			t := float64(L.CheckNumber(1))
			var secs float64
			switch d := L.CheckAny(2).(type) {
			case lua.LNumber:
				secs = float64(d)
			case lua.LString:
				dur, err := parseDuration(string(d))
				if err != nil {
					L.RaiseError("time.add: %v", err)
				}
				secs = dur.Seconds()
			default:
				L.ArgError(2, "duration must be a number of seconds or a string like \"1h30m\"")
			}
			L.Push(lua.LNumber(t + secs))
			return 1
		},
		"duration": func(L *lua.LState) int {
			d, err := parseDuration(L.CheckString(1))
			if err != nil {
				L.RaiseError("time.duration: %v", err)
			}
			L.Push(lua.LNumber(d.Seconds()))
			return 1
		},
	}
	return func(L *lua.LState) int {
		mod := L.NewTable()
		L.SetFuncs(mod, funcs)
		L.Push(mod)
		return 1
	}
}

// fromTime converts to unix seconds with a fraction.
func fromTime(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// toTime converts unix seconds to a time.Time, rounding to the microsecond:
// a float64 holding today's epoch seconds cannot carry more, and rounding
// keeps 12:00:00 from printing as 11:59:59.999999.
func toTime(secs float64) time.Time {
	whole := math.Floor(secs)
	micros := math.Round((secs - whole) * 1e6)
	return time.Unix(int64(whole), int64(micros)*1e3)
}

// daysRE finds "<number>d" components, which Go's ParseDuration lacks.
var daysRE = regexp.MustCompile(`(\d+(?:\.\d+)?)d`)

// parseDuration is time.ParseDuration plus a "d" unit of 24 hours.
func parseDuration(s string) (time.Duration, error) {
	in := daysRE.ReplaceAllStringFunc(s, func(m string) string {
		n, err := strconv.ParseFloat(strings.TrimSuffix(m, "d"), 64)
		if err != nil {
			return m
		}
		return strconv.FormatFloat(n*24, 'f', -1, 64) + "h"
	})
	d, err := time.ParseDuration(in)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. \"90s\", \"1h30m\", \"2d\")", s)
	}
	return d, nil
}

// namedLayouts are the Go layouts scripts can ask for by name.
var namedLayouts = map[string]string{
	"RFC3339":     time.RFC3339,
	"RFC3339Nano": time.RFC3339Nano,
	"RFC1123":     time.RFC1123,
	"RFC1123Z":    time.RFC1123Z,
	"RFC822Z":     time.RFC822Z,
	"DateTime":    time.DateTime,
	"DateOnly":    time.DateOnly,
	"TimeOnly":    time.TimeOnly,
	"Kitchen":     time.Kitchen,
}

// strftimeLayouts maps strftime directives to Go layout elements.
var strftimeLayouts = map[byte]string{
	'Y': "2006", 'y': "06", 'm': "01", 'd': "02", 'e': "_2",
	'H': "15", 'I': "03", 'M': "04", 'S': "05", 'p': "PM",
	'b': "Jan", 'h': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday",
	'j': "002", 'Z': "MST", 'z': "-0700",
	'F': "2006-01-02", 'T': "15:04:05", 'R': "15:04", 'D': "01/02/06",
	'c': "Mon Jan _2 15:04:05 2006", 'x': "01/02/06", 'X': "15:04:05",
	'%': "%", 'n': "\n", 't': "\t",
}

// formatTime formats t with a named, strftime or Go layout (see openTime).
// strftime literals are copied verbatim; only directives go through Go's
// formatter, so text such as "Jan" in a pattern stays as written.
func formatTime(t time.Time, layout string) string {
	if l, ok := namedLayouts[layout]; ok {
		return t.Format(l)
	}
	if !strings.Contains(layout, "%") {
		return t.Format(layout)
	}
	var b strings.Builder
	for i := 0; i < len(layout); i++ {
		c := layout[i]
		if c != '%' || i+1 == len(layout) {
			b.WriteByte(c)
			continue
		}
		i++
		d := layout[i]
		switch d {
		case 's':
			b.WriteString(strconv.FormatInt(t.Unix(), 10))
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			b.WriteString(strconv.Itoa(wd))
		case 'w':
			b.WriteString(strconv.Itoa(int(t.Weekday())))
		case 'f':
			fmt.Fprintf(&b, "%06d", t.Nanosecond()/1000)
		case '%', 'n', 't':
			b.WriteString(strftimeLayouts[d])
		default:
			if l, ok := strftimeLayouts[d]; ok {
				b.WriteString(t.Format(l))
			} else {
				// Unknown directives are kept, as C strftime implementations do.
				b.WriteByte('%')
				b.WriteByte(d)
			}
		}
	}
	return b.String()
}

// goLayoutFor converts a named or strftime layout for time.Parse.
func goLayoutFor(layout string) (string, error) {
	if l, ok := namedLayouts[layout]; ok {
		return l, nil
	}
	if !strings.Contains(layout, "%") {
		return layout, nil
	}
	var b strings.Builder
	for i := 0; i < len(layout); i++ {
		c := layout[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(layout) {
			return "", fmt.Errorf("layout %q ends with a lone %%", layout)
		}
		i++
		l, ok := strftimeLayouts[layout[i]]
		if !ok {
			return "", fmt.Errorf("layout %q: directive %%%c cannot be parsed", layout, layout[i])
		}
		b.WriteString(l)
	}
	return b.String(), nil
}
