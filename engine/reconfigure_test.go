package engine

import (
	"context"
	"testing"
	"time"
)

func getenvOf(v string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		if k == "WHO" {
			return v, true
		}
		return "", false
	}
}

// TestReconfigure: new configuration for new work, the run in flight
// finishes under the old one and is not cut off after the grace period,
// and on_start does not fire again.
func TestReconfigure(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Grace = time.Millisecond // an edit would cut the old run off at once
	h.cfg.Lua.Getenv = getenvOf("old")
	h.write("who.lua", `
local probe = require("probe")
probe.hit("load", os.getenv("WHO"))
mailbot.on_start(function()
  probe.hit("started", os.getenv("WHO"))
  probe.block("long")
  probe.hit("long-done", os.getenv("WHO"))
end)`)
	h.start()
	if v := h.waitHit("load").value; v != "old" {
		t.Fatalf("first load saw %q", v)
	}
	if v := h.waitHit("started").value; v != "old" {
		t.Fatalf("on_start saw %q", v)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := Update{Lua: h.cfg.Lua, RunTimeout: 20 * time.Second}
	u.Lua.Getenv = getenvOf("new")
	if err := h.e.Reconfigure(ctx, u); err != nil {
		t.Fatal(err)
	}
	if v := h.waitHit("load").value; v != "new" {
		t.Fatalf("reload saw %q", v)
	}
	h.e.mu.Lock()
	rt := h.e.cfg.RunTimeout
	h.e.mu.Unlock()
	if rt != 20*time.Second {
		t.Errorf("run timeout %v after reconfigure", rt)
	}
	// Not synchronisation: time for a grace-period cut-off (1ms) to
	// happen if reconfiguring retired the old version like an edit does.
	time.Sleep(50 * time.Millisecond)
	h.release("long")
	if v := h.waitHit("long-done").value; v != "old" {
		t.Fatalf("run in flight finished with %q", v)
	}
	h.stop() // waits for every run: a second on_start would have hit by now
	for {
		select {
		case x := <-h.hits:
			if x.name == "started" {
				t.Errorf("on_start fired again on reconfigure (%q)", x.value)
			}
			continue
		default:
		}
		break
	}
}

// TestStartedHook: the hook runs once the scripts are loaded.
func TestStartedHook(t *testing.T) {
	h := newHarness(t, nil)
	h.write("a.lua", `require("probe").hit("loaded")`)
	e, err := New(h.cfg, WithModule("probe", h.probeLoader), WithStartedHook(func() { h.hits <- hit{"hook", ""} }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	if first := <-h.hits; first.name != "loaded" {
		t.Errorf("first %q, want the script loaded before the hook", first.name)
	}
	h.waitHit("hook")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
