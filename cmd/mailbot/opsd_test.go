package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/outbox"
)

// TestDaemonReadiness follows the daemon backend's readiness through a
// start: not ready before the engine exists, while it loads, and ready
// once the scripts are loaded with the outbox open.
func TestDaemonReadiness(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	writeFile(t, filepath.Join(scripts, "a.lua"), `mailbot.every("1h", function(ev) end)`)
	writeFile(t, filepath.Join(scripts, "broken.lua"), "this is not lua\n")
	logger := slog.New(slog.DiscardHandler)
	d := newDaemonOps(logger)
	ctx := context.Background()

	st, err := d.Status(ctx)
	if err != nil || st.Ready || st.ReadyReason != "starting" {
		t.Fatalf("before the engine: %+v, %v", st, err)
	}
	ob, err := outbox.Open(filepath.Join(dir, "state", "outbox"), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ob.Close()
	e, err := engine.New(engine.Config{ScriptsDir: scripts, StateDir: filepath.Join(dir, "state")}, engine.WithLogger(logger), d.engineOption())
	if err != nil {
		t.Fatal(err)
	}
	d.e, d.ob = e, ob
	if st, _ := d.Status(ctx); st.Ready || st.ReadyReason != "loading scripts" {
		t.Fatalf("before the load: %+v", st)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := e.WaitLoaded(wctx); err != nil {
		t.Fatalf("the engine did not load: %v", err)
	}
	st, err = d.Status(ctx)
	if err != nil || !st.Ready || st.ReadyReason != "" {
		t.Fatalf("after the load: %+v, %v", st, err)
	}
	if len(st.Scripts) != 2 || st.Scripts[1].LoadError == "" || st.Scripts[0].Hash == "" || len(st.Triggers) != 1 {
		t.Errorf("scripts and triggers after the load: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "outbox")); err != nil {
		t.Error(err)
	}
}
