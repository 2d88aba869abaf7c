package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/luatest"
)

const testDesc = `Runs the Lua tests of the scripts: every *_test.lua file in scripts_dir and
its tests/ folder, or the files and folders given. Each file runs in its own
Lua state with the testing module (see docs/lua-api.md, "testing"):

  local t = require("testing")
  local report = t.load("daily-report.lua")   -- triggers captured, none started
  t.test("mails the summary", function()
    t.clock.set("2026-12-07T08:00:00+01:00")
    report.fire("daily")                       -- by name or "#1"
    t.eq(#t.sent(), 1)
  end)

Nothing touches the network or real state: every SMTP connection and
mail.send goes to an in-process capture server, the clock is fake, env
and os.getenv see only t.env.set, accounts log in with a placeholder
password, and the scripts' relative paths resolve into a private
temporary folder (a copy of scripts_dir) that is removed afterwards.

Output follows "go test": "--- FAIL: name (file:line)" with the details,
"ok"/"FAIL" per file and a summary; -v also prints each test as it runs.

Exit status:
  0  every test passed
  1  a test failed, no test files, or a usage error
  2  a test file (or a script it loads) did not load, or the config is invalid
`

// cmdTest implements "mailbot test".
func (m *Main) cmdTest(ctx context.Context, args []string) int {
	fs := m.newFlagSet("test", "[-c mailbot.yaml] [--junit FILE] [-v] [-run PATTERN] [PATH...]", testDesc)
	cfgFlag := fs.String("c", "", "config file (default $"+envConfig+"; none: the test files' folder is scripts_dir)")
	junit := fs.String("junit", "", "also write the results as JUnit XML to this file")
	verbose := fs.Bool("v", false, "print every test as it runs, and the scripts' log lines")
	runFlag := fs.String("run", "", "run only the tests whose names match this Go regular expression")
	timeout := fs.Duration("timeout", 0, "bound each test (default: the config's run_timeout, else 60s)")
	paths, status, ok := m.parseInterspersed(fs, args)
	if !ok {
		return status
	}
	var pattern *regexp.Regexp
	if *runFlag != "" {
		re, err := regexp.Compile(*runFlag)
		if err != nil {
			return m.usageError(fs, "-run: %v", err)
		}
		pattern = re
	}
	cfg, logger, status, ok := m.optionalConfig("test", *cfgFlag)
	if !ok {
		return status
	}
	if !*verbose {
		logger = slog.New(slog.DiscardHandler)
	}

	opts := luatest.Options{Run: pattern, Verbose: *verbose, Out: m.Stdout, RunTimeout: *timeout}
	opts.Lua = luabind.Options{Logger: logger}
	opts.Lua.SMTP.Logger = logger
	if cfg != nil {
		opts.ScriptsDir = cfg.Resolve(cfg.ScriptsDir)
		cfg.applySandbox(&opts.Lua)
		// Seeded SQLite databases start from their seed in every run of
		// the tests, in a folder of their own: tests see the data the
		// script was written against and change no real file.
		seedDir, err := os.MkdirTemp("", "mailbot-test-db-")
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot test: %v\n", err)
			return exitFailure
		}
		defer os.RemoveAll(seedDir)
		opts.Lua.SQL = cfg.sqlSetSeeded(m.lookupEnv, seedDir, true)
		defer opts.Lua.SQL.Close()
		cfg.applyHTTPClient(&opts.Lua)
		if cfg.Timezone != "" {
			loc, err := time.LoadLocation(cfg.Timezone)
			if err != nil {
				fmt.Fprintf(m.Stderr, "mailbot test: timezone: %v\n", err)
				return exitConfig
			}
			opts.Lua.Location = loc
		}
		// The accounts' passwords and tokens are replaced by placeholders
		// (the capture server takes any): no secret is read.
		accounts, err := luaAccounts(cfg, nil, m.lookupEnv, slog.New(slog.DiscardHandler))
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot test: %v\n", err)
			return exitConfig
		}
		opts.Lua.SMTP.Accounts, opts.Lua.SMTP.DefaultAccount = accounts, cfg.DefaultAccount
		if opts.RunTimeout <= 0 {
			opts.RunTimeout = cfg.RunTimeout
		}
	}

	files, dir, err := testFiles(paths, opts.ScriptsDir)
	if err != nil {
		fmt.Fprintf(m.Stderr, "mailbot test: %v\n", err)
		return exitConfig
	}
	if opts.ScriptsDir == "" {
		opts.ScriptsDir = dir
	}
	if abs, err := filepath.Abs(opts.ScriptsDir); err == nil {
		opts.ScriptsDir = abs
	}
	if len(files) == 0 {
		fmt.Fprintf(m.Stderr, "mailbot test: no *_test.lua files in %s or %s\n", opts.ScriptsDir, filepath.Join(opts.ScriptsDir, "tests"))
		return exitFailure
	}
	if wd, err := os.Getwd(); err == nil {
		opts.Base = wd
	}

	res := luatest.Run(ctx, files, opts)
	code := res.ExitCode()
	if *junit != "" {
		var buf bytes.Buffer
		err := luatest.WriteJUnit(&buf, res)
		if err == nil {
			err = os.WriteFile(*junit, buf.Bytes(), 0o644)
		}
		if err != nil {
			fmt.Fprintf(m.Stderr, "mailbot test: --junit: %v\n", err)
			code = max(code, exitFailure)
		}
	}
	return code
}

// testFiles lists the test files of paths (files, or folders searched like
// scripts_dir), or of scriptsDir when there are none. dir is the scripts
// folder to assume without a config: the first path's folder, or its parent
// when that is a tests/ folder.
func testFiles(paths []string, scriptsDir string) (files []string, dir string, err error) {
	if len(paths) == 0 {
		if scriptsDir == "" {
			scriptsDir = "."
		}
		files, err := luatest.Find(scriptsDir)
		return files, scriptsDir, err
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, "", fmt.Errorf("test path: %w", err)
		}
		d := p
		if st.IsDir() {
			found, err := luatest.Find(p)
			if err != nil {
				return nil, "", err
			}
			files = append(files, found...)
		} else {
			files = append(files, p)
			d = filepath.Dir(p)
		}
		if dir == "" {
			dir = d
			if filepath.Base(filepath.Clean(d)) == "tests" {
				dir = filepath.Dir(filepath.Clean(d))
			}
		}
	}
	return files, dir, nil
}
