package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailbot/mailbot/luabind"
)

func TestCheckScriptAll(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		want  []string // "line: message prefix" of each problem, in order
		first string   // what CheckScript returns
	}{
		{"fine", "mailbot.every(\"5m\", function() end)\n", nil, ""},
		{"every bad registration", `mailbot.every("soon", function() end)
mailbot.every("5m", function() end)
mailbot.cron("0 8 * * *", function() end, { tz = "Nowhere/City" })
mailbot.on_file({ dir = "d", colour = "red" }, function() end)
`, []string{`1: mailbot.every:`, `3: mailbot.cron: tz "Nowhere/City"`, `4: mailbot.on_file: unknown option "colour"`},
			`1: mailbot.every:`},
		{"an error elsewhere ends the script", `mailbot.every("soon", function() end)
local smtp = require("smtp")
smtp.conect()
mailbot.every("later", function() end)
`, []string{`1: mailbot.every:`, `3: attempt to call field 'conect' (a nil value); did you mean connect?`},
			`1: mailbot.every:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "s.lua")
			if err := os.WriteFile(path, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := Config{ScriptsDir: dir, RunTimeout: 10 * time.Second}
			errs := CheckScriptAll(cfg, path)
			var got []string
			for _, err := range errs {
				got = append(got, describe(err, path))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems %q, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("problem %d: got %q, want prefix %q", i+1, got[i], tt.want[i])
				}
			}
			err := CheckScript(cfg, path)
			switch {
			case tt.first == "" && err != nil:
				t.Errorf("CheckScript: %v, want nil", err)
			case tt.first != "" && (err == nil || !strings.HasPrefix(describe(err, path), tt.first)):
				t.Errorf("CheckScript: %v, want %q", err, tt.first)
			}
		})
	}
}

// describe renders an error as "line: message" without the file name.
func describe(err error, path string) string {
	return strings.TrimPrefix(luabind.DescribeError(err), path+":")
}
