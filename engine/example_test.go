package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/engine"
)

// Example embeds the engine in a Go program: a scripts folder, a module of
// the host's own ("host.report") that scripts call, and Run until the
// context ends.
func Example() {
	dir, _ := os.MkdirTemp("", "mailbot-example")
	defer os.RemoveAll(dir)
	scripts := filepath.Join(dir, "scripts")
	os.MkdirAll(scripts, 0o755)
	os.WriteFile(filepath.Join(scripts, "hello.lua"), []byte(`
local host = require("host")
mailbot.on_start(function(ev)
  host.report(mailbot.script .. " started by " .. ev.trigger)
end)`), 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reported := make(chan string, 1)
	hostModule := func(L *lua.LState) int {
		L.Push(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
			"report": func(L *lua.LState) int {
				reported <- L.CheckString(1)
				return 0
			},
		}))
		return 1
	}
	e, err := engine.New(engine.Config{ScriptsDir: scripts, StateDir: filepath.Join(dir, "state")},
		engine.WithLogger(slog.New(slog.DiscardHandler)),
		engine.WithModule("host", hostModule))
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	fmt.Println(<-reported)
	cancel()
	fmt.Println("stopped:", <-done)
	// Output:
	// hello.lua started by on_start
	// stopped: <nil>
}
