package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// fireOpts are the options Fire gets in tests: the harness's probe module
// and a log tap.
func (h *harness) fireOpts(tap *logTap) []Option {
	if tap == nil {
		tap = h.logs
	}
	return []Option{WithLogger(slog.New(tap)), WithModule("probe", h.probeLoader)}
}

func newTap() *logTap { return &logTap{ch: make(chan slog.Record, 1024)} }

func TestTriggerIDsAndList(t *testing.T) {
	h := newHarness(t, nil)
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	h.write("report.lua", fmt.Sprintf(`
mailbot.on_file({ dir = %q, pattern = "*.csv" }, function() end)
mailbot.cron("0 8 * * 1-5", function() end, { name = "daily", tz = "Europe/Berlin" })
mailbot.every("5m", function() end)
mailbot.on_start(function() end, { name = "boot" })
`, drop))
	h.write("other.lua", `mailbot.every("1h", function() end, { name = "hourly" })`)
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC) // a Monday, 07:00 in Berlin
	list, errs := ListTriggers(h.cfg, now)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := []struct{ id, kind, spec string }{
		{"other#hourly", "every", "1h"},
		{"report#1", "file", filepath.Join(drop, "*.csv")},
		{"report#daily", "cron", "0 8 * * 1-5 (Europe/Berlin)"},
		{"report#3", "every", "5m"},
		{"report#boot", "start", ""},
	}
	if len(list) != len(want) {
		t.Fatalf("got %d triggers, want %d: %+v", len(list), len(want), list)
	}
	for i, w := range want {
		g := list[i]
		if g.ID != w.id || g.Kind != w.kind || g.Spec != w.spec {
			t.Errorf("trigger %d = %s %s %q, want %s %s %q", i, g.ID, g.Kind, g.Spec, w.id, w.kind, w.spec)
		}
		if g.LastRun != nil || g.LastOutcome != "" || g.LastDurationMS != nil {
			t.Errorf("%s: never ran, but shows a last run %+v", g.ID, g)
		}
	}
	if n := list[2].NextRun; n == nil || !n.Equal(time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("next run of the cron trigger = %v, want 08:00 Berlin", n)
	}
	if n := list[3].NextRun; n == nil || !n.Equal(now.Add(5*time.Minute)) {
		t.Errorf("next run of every 5m = %v, want now+5m", n)
	}
	if list[1].NextRun != nil || list[4].NextRun != nil {
		t.Error("file and start triggers have no next run")
	}
}

func TestTriggerNameOption(t *testing.T) {
	tests := []struct {
		name, src, err string
	}{
		{"every", `mailbot.every("5m", function() end, { name = "a-b_c.1" })`, ""},
		{"on_start", `mailbot.on_start(function() end, { name = "boot" })`, ""},
		{"duplicate", `mailbot.every("5m", function() end, { name = "x" })
mailbot.cron("0 8 * * *", function() end, { name = "x" })`, `name "x" is already taken`},
		{"bad characters", `mailbot.every("5m", function() end, { name = "a b" })`, "name must be a string of letters"},
		{"not a string", `mailbot.every("5m", function() end, { name = 7 })`, "name must be a string"},
		{"a number", `mailbot.every("5m", function() end, { name = "12" })`, `name "12" is a number`},
		{"on_start unknown option", `mailbot.on_start(function() end, { nmae = "x" })`, `unknown option "nmae"`},
		{"on_file", `mailbot.on_file({ dir = "drop", name = "in" }, function() end)`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "s.lua")
			os.WriteFile(p, []byte(tc.src), 0o644)
			err := CheckScript(Config{ScriptsDir: dir}, p)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestParseTriggerID(t *testing.T) {
	tests := []struct{ id, script, which, err string }{
		{"daily-report#1", "daily-report.lua", "1", ""},
		{"daily-report.lua#daily", "daily-report.lua", "daily", ""},
		{"daily-report", "", "", "want <script>#<n>"},
		{"#1", "", "", "want <script>#<n>"},
		{"../x#1", "", "", "not a script name"},
	}
	for _, tc := range tests {
		s, w, err := ParseTriggerID(tc.id)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.id, err, tc.err)
			}
			continue
		}
		if err != nil || s != tc.script || w != tc.which {
			t.Errorf("%s = %q %q %v, want %q %q", tc.id, s, w, err, tc.script, tc.which)
		}
	}
}

// TestFireSchedule: a cron trigger fired by name and by number gets the
// --at time in its zone as ev.scheduled_at, and the outcome is recorded.
func TestFireSchedule(t *testing.T) {
	h := newHarness(t, nil)
	h.write("report.lua", `
local probe = require("probe")
mailbot.on_start(function() probe.hit("start") end)
mailbot.cron("0 8 * * 1-5", function(ev)
  mailbot.state.set("at", ev.scheduled_at)
  probe.hit("cron", tostring(ev.scheduled_at) .. " " .. tostring(ev.fired))
end, { name = "daily", tz = "Europe/Berlin" })
mailbot.every("5m", function() error("broken") end)
`)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	at := time.Date(2026, 12, 7, 8, 0, 0, 0, berlin)
	tests := []struct{ id, at string }{
		{"report#daily", "2026-12-07 08:00"},
		{"report#2", "2026-12-07T08:00:00+01:00"},
		{"report.lua#daily", "2026-12-07T07:00:00Z"},
	}
	for _, tc := range tests {
		res, err := Fire(context.Background(), h.cfg, FireRequest{ID: tc.id, At: tc.at}, h.fireOpts(nil)...)
		if err != nil {
			t.Fatalf("%s: %v", tc.id, err)
		}
		if got, want := h.waitHit("cron").value, fmt.Sprintf("%d true", at.Unix()); got != want {
			t.Errorf("%s --at %s: handler saw %q, want %q", tc.id, tc.at, got, want)
		}
		if res.Err != nil || res.Outcome != RunOK || !res.ScheduledAt.Equal(at) || res.Trigger.ID != "report#daily" {
			t.Errorf("%s: result %+v", tc.id, res)
		}
		if res.Trigger.LastOutcome != RunOK || res.Trigger.LastRun == nil || res.Trigger.LastDurationMS == nil {
			t.Errorf("%s: outcome not recorded: %+v", tc.id, res.Trigger)
		}
	}
	st, err := OpenStateStore(h.state)
	if err != nil {
		t.Fatal(err)
	}
	ss, _ := st.Script("report")
	if v, _ := ss.Get("at"); v != float64(at.Unix()) {
		t.Errorf("state at = %v, want %d", v, at.Unix())
	}
	if _, ok := st.LastRun("report|cron 0 8 * * 1-5 (Europe/Berlin)"); ok {
		t.Error("fire wrote the schedule's catch-up mark")
	}

	// A failing handler: its error is the result's, and recorded.
	res, err := Fire(context.Background(), h.cfg, FireRequest{ID: "report#3"}, h.fireOpts(nil)...)
	if err != nil || res.Err == nil || res.Outcome != RunError || !strings.Contains(res.Trigger.LastError, "broken") {
		t.Fatalf("failing handler: %v, %+v", err, res)
	}
	lcfg := h.cfg
	lcfg.Lua.Modules = map[string]lua.LGFunction{"probe": h.probeLoader}
	list, errs := ListTriggers(lcfg, time.Now())
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	byID := map[string]TriggerInfo{}
	for _, ti := range list {
		byID[ti.ID] = ti
	}
	if ti := byID["report#3"]; ti.LastOutcome != RunError || !strings.Contains(ti.LastError, "report.lua:8") {
		t.Errorf("listed %+v, want the error with its location", ti)
	}
	if ti := byID["report#daily"]; ti.LastOutcome != RunOK {
		t.Errorf("listed %+v, want ok", ti)
	}

	for _, bad := range []struct {
		req FireRequest
		err string
	}{
		{FireRequest{ID: "report#9"}, "#9 does not exist"},
		{FireRequest{ID: "report#nope"}, `no trigger named "nope"`},
		{FireRequest{ID: "missing#1"}, "no script missing.lua"},
		{FireRequest{ID: "report#daily", At: "tomorrow"}, `time "tomorrow"`},
		{FireRequest{ID: "report#1", At: "2026-12-07 08:00"}, "--at is for every and cron"},
		{FireRequest{ID: "report#daily", File: "x.csv"}, "--file is for file triggers"},
	} {
		if _, err := Fire(context.Background(), h.cfg, bad.req, h.fireOpts(nil)...); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("%+v: error %v, want %q", bad.req, err, bad.err)
		}
	}
	select {
	case x := <-h.hits:
		t.Errorf("unexpected handler run %v (fire must run only the trigger asked for)", x)
	default:
	}
}

// TestFireFile: a file trigger gets --file if it lies in its folder and
// matches its pattern; its after action and the ledger apply, except in a
// dry run.
func TestFireFile(t *testing.T) {
	h := newHarness(t, nil)
	root := filepath.Dir(h.scripts)
	drop := filepath.Join(root, "drop")
	os.MkdirAll(drop, 0o755)
	h.write("in.lua", fmt.Sprintf(`
mailbot.on_file({ dir = %q, pattern = "*.csv", after = "move:done", name = "csv" }, function(ev)
  require("probe").hit("file", ev.name .. " " .. ev.size .. " " .. tostring(ev.fired))
  if ev.name == "bad.csv" then error("cannot parse") end
end)`, drop))
	write := func(name, content string) string {
		p := filepath.Join(drop, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// Dry run first: the file stays, what would happen is reported.
	p := write("a.csv", "x,y\n")
	res, err := Fire(context.Background(), h.cfg, FireRequest{ID: "in#csv", File: p, DryRun: true}, h.fireOpts(nil)...)
	if err != nil || res.Err != nil {
		t.Fatalf("dry fire: %v, %+v", err, res)
	}
	if got := h.waitHit("file").value; got != "a.csv 4 true" {
		t.Errorf("handler saw %q", got)
	}
	if res.File == nil || res.File.Action != "would move" || res.File.Path != filepath.Join(drop, "done", "a.csv") {
		t.Errorf("dry disposition %+v", res.File)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("a dry run moved the file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.state, "ledger.jsonl")); err == nil {
		t.Error("a dry run wrote the ledger")
	}

	// For real: moved, and recorded in the ledger.
	res, err = Fire(context.Background(), h.cfg, FireRequest{ID: "in#1", File: p}, h.fireOpts(nil)...)
	if err != nil || res.Err != nil {
		t.Fatalf("fire: %v, %+v", err, res)
	}
	h.waitHit("file")
	if res.File == nil || res.File.Action != "moved" {
		t.Errorf("disposition %+v", res.File)
	}
	if _, err := os.Stat(filepath.Join(drop, "done", "a.csv")); err != nil {
		t.Errorf("file not moved to done/: %v", err)
	}
	ledger, err := os.ReadFile(filepath.Join(h.state, "ledger.jsonl"))
	if err != nil || !strings.Contains(string(ledger), `"outcome":"done"`) || !strings.Contains(string(ledger), "a.csv") {
		t.Errorf("ledger %q, %v", ledger, err)
	}

	// A failing handler moves the file to failed/, as the daemon does.
	bad := write("bad.csv", "?")
	res, err = Fire(context.Background(), h.cfg, FireRequest{ID: "in#csv", File: bad}, h.fireOpts(nil)...)
	if err != nil || res.Err == nil || res.File == nil || res.File.Action != "failed" {
		t.Fatalf("failing fire: %v, %+v", err, res)
	}
	h.waitHit("file")
	if _, err := os.Stat(filepath.Join(drop, "failed", "bad.csv.error")); err != nil {
		t.Errorf("no error note: %v", err)
	}

	other := filepath.Join(root, "elsewhere")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "b.csv"), nil, 0o644)
	txt := write("b.txt", "")
	for _, tc := range []struct{ file, err string }{
		{txt, `the name "b.txt" does not match the trigger's pattern "*.csv"`},
		{filepath.Join(other, "b.csv"), "not in the trigger's folder " + drop},
		{filepath.Join(drop, "missing.csv"), "no such file"},
		{"", "give the file to hand over with --file PATH"},
	} {
		_, err := Fire(context.Background(), h.cfg, FireRequest{ID: "in#csv", File: tc.file}, h.fireOpts(nil)...)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("--file %q: error %v, want %q", tc.file, err, tc.err)
		}
	}

	// With a daemon holding the state dir, a real file fire is refused.
	lock, err := LockStateDir(h.state)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	q := write("c.csv", "1")
	_, err = Fire(context.Background(), h.cfg, FireRequest{ID: "in#csv", File: q}, h.fireOpts(nil)...)
	var need *StateDirNeededError
	if !errors.As(err, &need) || !strings.Contains(err.Error(), "use --dry-run") {
		t.Fatalf("fire with a daemon running: %v, want *StateDirNeededError", err)
	}
	if _, err := os.Stat(q); err != nil {
		t.Errorf("refused fire touched the file: %v", err)
	}
	select {
	case x := <-h.hits:
		t.Errorf("handler ran although refused: %v", x)
	default:
	}
}

// TestFireWaitsForDaemonRun: while the daemon runs a handler of the
// script, fire cannot start; it runs once the daemon's run is over.
func TestFireWaitsForDaemonRun(t *testing.T) {
	h := newHarness(t, nil)
	h.write("s.lua", `
local probe = require("probe")
mailbot.on_start(function()
  probe.hit("daemon-start"); probe.block("gate"); probe.hit("daemon-end")
end)
mailbot.cron("0 8 * * *", function() probe.hit("fire") end, { name = "daily" })
`)
	h.start()
	h.waitHit("daemon-start")

	// The daemon's run holds the lock: a short wait runs out.
	_, err := Fire(context.Background(), h.cfg, FireRequest{ID: "s#daily", LockWait: 50 * time.Millisecond}, h.fireOpts(nil)...)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "a run of it is in progress") {
		t.Fatalf("fire during a daemon run: %v, want the lock wait to run out", err)
	}

	tap := newTap()
	done := make(chan error, 1)
	go func() {
		_, err := Fire(context.Background(), h.cfg, FireRequest{ID: "s#daily"}, h.fireOpts(tap)...)
		done <- err
	}()
	for r := range tap.ch { // fire says it waits
		if r.Message == "waiting for the run of the script in progress" {
			break
		}
	}
	h.release("gate")
	if got := <-h.hits; got.name != "daemon-end" {
		t.Fatalf("first hit after the gate = %v, want daemon-end before fire", got)
	}
	if got := h.waitHit("fire"); got.name != "fire" {
		t.Fatal(got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDaemonRunWaitsForFire: a daemon run of a script that a fire is
// running waits for it, and sees the state the fired run left.
func TestDaemonRunWaitsForFire(t *testing.T) {
	h := newHarness(t, nil)
	drop := filepath.Join(filepath.Dir(h.scripts), "drop")
	h.write("s.lua", fmt.Sprintf(`
local probe = require("probe")
mailbot.on_file({ dir = %q, settle = "50ms" }, function(ev)
  probe.hit("daemon-file", tostring(mailbot.state.get("x")))
end)
mailbot.cron("0 8 * * *", function()
  mailbot.state.set("x", "fired")
  probe.hit("fire-start"); probe.block("gate"); probe.hit("fire-end")
end, { name = "daily" })
`, drop))
	h.start()
	h.waitLogged("file trigger started", "s.lua")

	done := make(chan error, 1)
	go func() {
		_, err := Fire(context.Background(), h.cfg, FireRequest{ID: "s#daily"}, h.fireOpts(newTap())...)
		done <- err
	}()
	h.waitHit("fire-start")
	os.WriteFile(filepath.Join(drop, "f.txt"), []byte("1"), 0o644)
	h.waitLog("run waits for the script's lock: a mailbot fire of it is running", "s.lua")
	h.release("gate")
	if got := <-h.hits; got.name != "fire-end" {
		t.Fatalf("first hit after the gate = %v, want fire-end", got)
	}
	if got := h.waitHit("daemon-file"); got.value != "fired" {
		t.Errorf("daemon run saw x = %q, want the fired run's %q", got.value, "fired")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The daemon's runs record their outcome too.
	h.stop()
	outcomes, err := ReadRunOutcomes(h.state, "s.lua")
	if err != nil {
		t.Fatal(err)
	}
	if o := outcomes["s#1"]; o.Outcome != RunOK || o.Fired || o.At.IsZero() {
		t.Errorf("daemon run outcome %+v", o)
	}
	if o := outcomes["s#daily"]; o.Outcome != RunOK || !o.Fired {
		t.Errorf("fired run outcome %+v", o)
	}
}

func TestClassifyRun(t *testing.T) {
	expired, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-expired.Done()
	bg := context.Background()
	tests := []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{bg, nil, RunOK},
		{bg, errors.New("boom"), RunError},
		{expired, errors.New("context deadline exceeded"), RunTimeout},
		{bg, errors.New("registry overflow"), RunMemory},
		{bg, errors.New("stack overflow"), RunMemory},
	}
	for _, tc := range tests {
		if got := classifyRun(tc.ctx, tc.err); got != tc.want {
			t.Errorf("classifyRun(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

// TestScriptStateRefresh: another process's write is read before the next
// run; unsaved changes of this one are not overwritten.
func TestScriptStateRefresh(t *testing.T) {
	dir := t.TempDir()
	mine, _ := OpenStateStore(dir)
	st, _ := mine.Script("s")
	st.Set("a", "mine")
	if err := st.Flush(); err != nil {
		t.Fatal(err)
	}
	other, _ := OpenStateStore(dir) // "mailbot fire"
	ost, _ := other.Script("s")
	ost.Set("a", "theirs")
	if err := ost.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := st.Refresh(); err != nil {
		t.Fatal(err)
	}
	if v, _ := st.Get("a"); v != "theirs" {
		t.Fatalf("after refresh a = %v, want theirs", v)
	}
	ost.Set("a", "again")
	ost.Flush()
	st.Set("b", "unsaved")
	st.Refresh()
	if v, _ := st.Get("b"); v != "unsaved" {
		t.Fatalf("refresh dropped an unsaved change: b = %v", v)
	}
}

// TestLockScriptGivenUp: a wait that runs out leaves no lock behind.
func TestLockScriptGivenUp(t *testing.T) {
	dir := t.TempDir()
	held, err := LockScript(context.Background(), dir, "s.lua", nil)
	if err != nil {
		t.Fatal(err)
	}
	waited := false
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := LockScript(ctx, dir, "s", func() { waited = true }); !errors.Is(err, context.DeadlineExceeded) || !waited {
		t.Fatalf("lock while held: %v (waited %v)", err, waited)
	}
	held.Release()
	again, err := LockScript(context.Background(), dir, "s", nil)
	if err != nil {
		t.Fatal(err)
	}
	again.Release()
	if _, err := LockScript(context.Background(), dir, ".x.lua", nil); err == nil {
		t.Error("an invalid script name was accepted")
	}
}
