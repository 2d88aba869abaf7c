package luabind_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mailbot/mailbot/luabind"
)

// A report script reading data as JSON and rendering a mail body.
func ExampleNewState() {
	L := luabind.NewState(luabind.Options{})
	defer L.Close()

	err := L.DoString(`
		local json = require("json")
		local template = require("template")

		local data = json.decode('{"host":"mx1","queue":[{"id":"A1","age":30},{"id":"B2","age":95}]}')
		print(template.render("{{.host}}: {{len .queue}} queued\n{{range .queue}}- {{.id}} ({{.age}}s)\n{{end}}", data))
		print(json.encode({ok = false, stuck = {"B2"}}))
	`)
	if err != nil {
		fmt.Println("error:", err)
	}
	// Output:
	// mx1: 2 queued
	// - A1 (30s)
	// - B2 (95s)
	//
	// {"ok":false,"stuck":["B2"]}
}

// Compile once, run in a fresh state per trigger, bounded by a context.
func ExampleDoProto() {
	proto, err := luabind.CompileString(`
		local time = require("time")
		print(time.format(time.now(), "%Y-%m-%d %H:%M %Z", "Asia/Shanghai"))
		while true do end -- a runaway script
	`, "scripts/daily.lua")
	if err != nil {
		fmt.Println(err)
		return
	}
	L := luabind.NewState(luabind.Options{
		Now: func() time.Time { return time.Date(2024, 3, 9, 17, 4, 0, 0, time.UTC) },
	})
	defer L.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	L.SetContext(ctx)

	err = luabind.DoProto(L, proto)
	file, line, _ := luabind.ErrorLocation(err)
	fmt.Printf("stopped at %s:%d\n", file, line)
	// Output:
	// 2024-03-10 01:04 CST
	// stopped at scripts/daily.lua:4
}

// Syntax errors read like the reference Lua compiler's.
func ExampleCompileString() {
	_, err := luabind.CompileString("local n = 1\nif n then\n  print(n\nend", "scripts/check.lua")
	fmt.Println(err)
	// Output:
	// scripts/check.lua:4: syntax error near 'end'
}

// The log module writes structured records and redacts secrets.
func ExampleOptions_logger() {
	h := slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // keep the example output stable
			}
			return a
		},
	})
	L := luabind.NewState(luabind.Options{Logger: slog.New(h), ScriptName: "nightly.lua"})
	defer L.Close()
	if err := L.DoString(`require("log").info("login", {user = "bot", password = "hunter2"})`); err != nil {
		fmt.Println(err)
	}
	// Output:
	// level=INFO msg=login script=nightly.lua password=<redacted> user=bot
}
