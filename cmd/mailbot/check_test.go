package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// check reports every problem, config and scripts, in a stable order, not
// only the first one.
func TestCheckReportsEveryProblem(t *testing.T) {
	t.Parallel()
	// Two config problems: an unknown key (which used to stop check
	// before any script was looked at) and a bad value.
	config := strings.Replace(validConfig, "  level: info\n", "  level: loud\n", 1) + "wrokers: 3\n"
	scripts := map[string]string{
		"a-syntax.lua":   "local x = 1\nlocal = 2\n",
		"b-cron.lua":     "mailbot.cron(\"61 * * * *\", function() end)\n",
		"c-misspelt.lua": "local ok = true\nmailbot.evry(\"5m\", function() end)\n",
		"d-fine.lua":     "mailbot.every(\"5m\", function() end)\n",
		"lib/util.lua":   "return {}\n",
	}
	tests := []struct {
		name    string
		config  string
		scripts map[string]string
		code    int
		stdout  []string // exactly these lines
		stderr  string
	}{
		{
			name:    "two config problems and three broken scripts",
			config:  config,
			scripts: scripts,
			code:    1,
			stdout: []string{
				`mailbot.yaml:4: log.level: unknown level "loud" (want debug, info, warn or error)`,
				`mailbot.yaml:14: wrokers: unknown key (known keys: scripts_dir, state_dir, log, `,
				`scripts/a-syntax.lua:2: syntax error near '='`,
				`scripts/b-cron.lua:1: mailbot.cron: cron "61 * * * *": minute field "61": must be 0-59`,
				`scripts/c-misspelt.lua:2: attempt to call field 'evry' (a nil value); did you mean every?`,
			},
			stderr: "mailbot check: 5 problems in 4 files\n",
		},
		{
			name:   "every bad registration of one script",
			config: validConfig,
			scripts: map[string]string{"many.lua": `mailbot.every("5 minutes", function() end)
mailbot.cron("0 8 * * 1-5", function() end, { tz = "Mars/Olympus" })
mailbot.on_file({ dir = "drop", settle = "soon" }, function() end)
mailbot.every("5m", function() end)
mailbot.on_start()
`},
			code: 1,
			stdout: []string{
				`scripts/many.lua:1: mailbot.every: `,
				`scripts/many.lua:2: mailbot.cron: tz "Mars/Olympus": `,
				`scripts/many.lua:3: mailbot.on_file: settle = "soon" is not a duration like "2s" or "5m"`,
				`scripts/many.lua:5: bad argument #1 to on_start (function expected, got `,
			},
			stderr: "mailbot check: 4 problems in 1 file\n",
		},
		{
			name:   "config too broken to find the scripts",
			config: "scripts_dir: [scripts\n",
			code:   1,
			stdout: []string{`mailbot.yaml:1: `},
			stderr: "mailbot check: scripts not checked: the config could not be decoded far enough to find scripts_dir\nmailbot check: 1 problem in 1 file\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "mailbot.yaml"), tc.config)
			if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
				t.Fatal(err)
			}
			for name, src := range tc.scripts {
				writeFile(t, filepath.Join(dir, "scripts", name), src)
			}
			env := []string{"MAILBOT_TEST_RELAY_PW=secret"}
			r := mailbot(t, dir, env, "check", "-c", "mailbot.yaml")
			if r.code != tc.code {
				t.Fatalf("want exit %d, got %v", tc.code, r)
			}
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			if len(lines) != len(tc.stdout) {
				t.Fatalf("want %d lines, got %d:\n%s", len(tc.stdout), len(lines), r.stdout)
			}
			for i, want := range tc.stdout {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("line %d:\n got %s\nwant %s", i+1, lines[i], want)
				}
			}
			if r.stderr != tc.stderr {
				t.Errorf("stderr %q, want %q", r.stderr, tc.stderr)
			}
			// The same run twice prints the same report.
			if again := mailbot(t, dir, env, "check", "-c", "mailbot.yaml"); again.stdout != r.stdout {
				t.Errorf("second run differs:\n%s\nvs\n%s", again.stdout, r.stdout)
			}
		})
	}
}
