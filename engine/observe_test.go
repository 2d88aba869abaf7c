package engine

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// observed collects an engine's observer calls.
type observed struct {
	runs  chan RunEvent
	loads chan LoadEvent
}

func startObserved(t *testing.T, scripts map[string]string) (*Engine, *observed, *logTap) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "scripts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ob := &observed{runs: make(chan RunEvent, 100), loads: make(chan LoadEvent, 100)}
	logs := &logTap{ch: make(chan slog.Record, 4096)}
	e, err := New(Config{ScriptsDir: dir, StateDir: filepath.Join(root, "state"), Grace: 5 * time.Second},
		WithLogger(slog.New(logs)),
		WithObserver(Observer{
			RunFinished:  func(ev RunEvent) { ob.runs <- ev },
			ScriptLoaded: func(ev LoadEvent) { ob.loads <- ev },
		}))
	if err != nil {
		t.Fatal(err)
	}
	if e.Loaded() {
		t.Fatal("Loaded before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	for r := range logs.ch {
		if r.Message == "engine started" {
			break
		}
	}
	return e, ob, logs
}

func nextEvent[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no observer event within 10s")
	}
	panic("unreachable")
}

func TestObserverAndLiveAPI(t *testing.T) {
	e, ob, _ := startObserved(t, map[string]string{
		"good.lua": `
mailbot.every("1h", function(ev)
  if ev.fired then error("fired on purpose") end
end, { name = "hourly" })
mailbot.on_start(function(ev) end, { name = "boot" })
`,
		"bad.lua": "local x = 1\nnot lua at all\n",
	})
	if !e.Loaded() {
		t.Fatal("not Loaded after engine started")
	}
	loads := map[string]LoadEvent{}
	for range 2 {
		ev := nextEvent(t, ob.loads)
		loads[ev.Script] = ev
	}
	if ev := loads["good.lua"]; ev.Err != nil || len(ev.Hash) != 64 {
		t.Errorf("good.lua load event = %+v, want no error and a SHA-256", ev)
	}
	if ev := loads["bad.lua"]; ev.Err == nil || ev.Hash != "" {
		t.Errorf("bad.lua load event = %+v, want an error and no hash", ev)
	}

	scripts := e.Scripts()
	if len(scripts) != 2 || scripts[0].Name != "bad.lua" || !strings.Contains(scripts[0].LoadError, "bad.lua:2") || scripts[0].Hash != "" {
		t.Errorf("Scripts()[0] = %+v, want bad.lua with a load error at bad.lua:2", scripts[0])
	}
	if scripts[1].Name != "good.lua" || scripts[1].Hash == "" || scripts[1].LoadError != "" {
		t.Errorf("Scripts()[1] = %+v, want good.lua loaded", scripts[1])
	}

	run := nextEvent(t, ob.runs)
	if run.Trigger != "good#boot" || run.Kind != "start" || run.Outcome != RunOK || run.Script != "good.lua" {
		t.Errorf("start run event = %+v", run)
	}

	trigs := e.Triggers()
	if len(trigs) != 2 || trigs[0].ID != "good#hourly" || trigs[0].NextRun == nil {
		t.Fatalf("Triggers() = %+v, want good#hourly with a next run first", trigs)
	}
	if d := time.Until(*trigs[0].NextRun); d < 59*time.Minute || d > time.Hour+time.Second {
		t.Errorf("next run of good#hourly in %v, want about 1h", d)
	}

	res, err := e.FireTrigger(context.Background(), "good#hourly")
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != RunError || res.Err == nil || !strings.Contains(res.Err.Error(), "fired on purpose") {
		t.Errorf("FireTrigger result = %+v, want the handler's error", res)
	}
	if res.Trigger.LastOutcome != RunError || res.Trigger.LastRun == nil {
		t.Errorf("fired trigger's info = %+v, want the last outcome recorded", res.Trigger)
	}
	run = nextEvent(t, ob.runs)
	if run.Trigger != "good#hourly" || run.Outcome != RunError || run.Kind != "every" {
		t.Errorf("fired run event = %+v", run)
	}

	for _, tc := range []struct {
		id   string
		want error
	}{
		{"good#nope", ErrUnknownTrigger},
		{"missing#1", ErrUnknownTrigger},
	} {
		if _, err := e.FireTrigger(context.Background(), tc.id); !errors.Is(err, tc.want) {
			t.Errorf("FireTrigger(%q) = %v, want %v", tc.id, err, tc.want)
		}
	}
}

func TestFireTriggerRefusesFileTriggers(t *testing.T) {
	drop := t.TempDir()
	e, _, _ := startObserved(t, map[string]string{
		"files.lua": `mailbot.on_file({ dir = "` + drop + `", name = "in" }, function(ev) end)`,
	})
	if _, err := e.FireTrigger(context.Background(), "files#in"); !errors.Is(err, ErrFireNeedsFile) {
		t.Errorf("FireTrigger of a file trigger = %v, want ErrFireNeedsFile", err)
	}
}
