package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/luabind"
)

const checkDesc = `Validates the config file (strictly: unknown keys, wrong types, bad values,
inline passwords, unset password variables, unreadable files, DKIM keys that
cannot sign, fallback lists naming unknown accounts, oauth2 sections: provider,
grant, endpoints, inline or unset client secrets and refresh tokens, and an
account with neither a cached login nor a refresh token to start from,
http_client's allowed hosts, ca_file, max_bytes and timeout) and
compiles every *.lua script under scripts_dir. Then it loads each script the way
"mailbot run" would, without starting anything, so that its trigger
registrations are checked too (cron specs, durations, time zones, options);
top-level code that connects with smtp or makes http requests is reported,
since it would do so at every reload. When the config is fine, each database
under databases is connected to, and one that does not answer is printed as a
warning (it does not change the exit status). Every problem is reported, not only the first: all of the
config's, then each script's (every failed registration; an error elsewhere
in the top-level code ends that script's check). Each problem is printed as
"file:line: message", config first, then scripts by path, followed by
"N problems in M files" on stderr. Exit status 0 when all is well, 1
otherwise.`

// cmdCheck implements "mailbot check".
func (m *Main) cmdCheck(_ context.Context, args []string) int {
	fset := m.newFlagSet("check", "[-c mailbot.yaml]", checkDesc)
	cfgFlag := fset.String("c", "", "config file (default $"+envConfig+", else mailbot.yaml)")
	pos, status, ok := m.parseInterspersed(fset, args)
	if !ok {
		return status
	}
	if len(pos) > 0 {
		return m.usageError(fset, "unexpected argument %q", pos[0])
	}
	path := m.configPath(*cfgFlag, "mailbot.yaml")
	cfg, probs := m.checkConfig(path)
	nScripts := 0
	var notChecked string
	switch {
	case cfg == nil:
		notChecked = "the config could not be decoded far enough to find scripts_dir"
	case cfg.ScriptsDir == "":
		notChecked = "scripts_dir is not set"
	default:
		base := displayBase()
		var sp []Problem
		var ok []string
		nScripts, ok, sp = checkScripts(cfg.Resolve(cfg.ScriptsDir), base)
		sp = append(sp, m.checkRegistrations(cfg, base, ok)...)
		sort.SliceStable(sp, func(i, j int) bool {
			if sp[i].File != sp[j].File {
				return sp[i].File < sp[j].File
			}
			return sp[i].Line < sp[j].Line
		})
		for i, p := range sp {
			// A broken module is reported once, not again by each
			// script requiring it.
			if i == 0 || p != sp[i-1] {
				probs = append(probs, p)
			}
		}
	}
	for _, p := range probs {
		fmt.Fprintln(m.Stdout, p.String())
	}
	if cfg != nil && len(cfg.Databases) > 0 && len(probs) == 0 {
		// Warnings, not problems: a server down now is no mistake in
		// the file, and run starts without connecting.
		for _, p := range cfg.pingDatabases(m.lookupEnv) {
			fmt.Fprintln(m.Stdout, p.String())
		}
	}
	if notChecked != "" {
		fmt.Fprintf(m.Stderr, "mailbot check: scripts not checked: %s\n", notChecked)
	}
	if len(probs) > 0 {
		files := map[string]bool{}
		for _, p := range probs {
			files[p.File] = true
		}
		fmt.Fprintf(m.Stderr, "mailbot check: %s in %s\n", plural(len(probs), "problem"), plural(len(files), "file"))
		return exitFailure
	}
	if notChecked != "" {
		return exitFailure
	}
	fmt.Fprintf(m.Stdout, "%s: ok (%d account(s), %d script(s))\n", path, len(cfg.Accounts), nScripts)
	return exitOK
}

// plural formats "1 problem", "2 problems".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// checkConfig reads and validates the config at path, returning every
// problem in it (sorted by line) and the config as far as it could be
// decoded, or nil. A key that cannot be decoded (unknown, wrong type) does
// not hide the problems of the others, nor the scripts.
func (m *Main) checkConfig(path string) (*Config, []Problem) {
	var probs []Problem
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []Problem{{File: path, Msg: fmt.Sprintf("cannot read config: %v", unwrapPathError(err))}}
	}
	cfg, err := parseConfig(path, data)
	var ce *ConfigError
	switch {
	case errors.As(err, &ce):
		probs = append(probs, ce.Problems...)
	case err != nil:
		probs = append(probs, Problem{File: path, Msg: err.Error()})
	}
	if cfg != nil {
		// A key that could not be decoded already has its problem; its
		// default value would only add a confusing second one.
		bad := map[string]bool{}
		for _, p := range probs {
			if p.Key != "" {
				bad[p.Key] = true
			}
		}
		for _, p := range append(cfg.Validate(), cfg.CheckSecrets(m.lookupEnv)...) {
			if !bad[p.Key] {
				probs = append(probs, p)
			}
		}
	}
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].Line < probs[j].Line })
	return cfg, probs
}

// displayBase returns the folder that script paths are shown relative to:
// the working directory when possible, so paths can be clicked in editors.
func displayBase() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	return wd
}

// checkScripts compiles every .lua file under dir (modules in
// subfolders included) and reports syntax errors as file:line problems.
// It returns the number of files and the paths of those that compiled.
func checkScripts(dir, base string) (int, []string, []Problem) {
	var probs []Problem
	var compiled []string
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || filepath.Ext(path) != ".lua" {
			return nil
		}
		if !engine.IsTestFile(path) { // test files are compiled, not counted as scripts
			n++
		}
		show := path
		if base != "" {
			if rel, err := filepath.Rel(base, path); err == nil {
				show = rel
			}
		}
		if _, err := luabind.CompileFile(path); err != nil {
			p := Problem{File: show, Msg: err.Error()}
			var se *luabind.SyntaxError
			if errors.As(err, &se) {
				p.Line, p.Msg = se.Line, se.Msg
				switch {
				case se.Line == 0:
					p.Msg += " near <eof>"
				case se.Near != "":
					p.Msg += " near '" + se.Near + "'"
				}
			}
			probs = append(probs, p)
		} else {
			compiled = append(compiled, path)
		}
		return nil
	})
	if err != nil {
		probs = append(probs, Problem{File: dir, Msg: fmt.Sprintf("cannot read scripts: %v", unwrapPathError(err))})
	}
	return n, compiled, probs
}

// checkRegistrations loads each script of scripts_dir (not the modules in
// its subfolders) that compiled the way "mailbot run" would, so that its
// trigger registrations (cron specs, durations, time zones, options) are
// validated too, without starting anything (see engine.CheckScriptAll).
func (m *Main) checkRegistrations(cfg *Config, base string, compiled []string) []Problem {
	dir := cfg.Resolve(cfg.ScriptsDir)
	lopts := luabind.Options{Getenv: m.lookupEnv, Logger: slog.New(slog.DiscardHandler), MemoryLimit: cfg.memoryLimit()}
	cfg.applySandbox(&lopts)
	// Top-level code that queries a seeded database gets a private copy:
	// check creates no file.
	if seedDir, err := os.MkdirTemp("", "mailbot-check-db-"); err == nil {
		defer os.RemoveAll(seedDir)
		lopts.SQL = cfg.sqlSetSeeded(m.lookupEnv, seedDir, false)
	} else {
		lopts.SQL = cfg.sqlSet(m.lookupEnv)
	}
	defer lopts.SQL.Close()
	cfg.applyHTTPClient(&lopts)
	ecfg := engine.Config{ScriptsDir: dir, RunTimeout: cfg.RunTimeout, Lua: lopts}
	if ecfg.RunTimeout <= 0 { // reported with the config; check the scripts anyway
		ecfg.RunTimeout = DefaultConfig().RunTimeout
	}
	if cfg.Timezone != "" {
		if loc, err := time.LoadLocation(cfg.Timezone); err == nil {
			ecfg.Location = loc
		}
	}
	var probs []Problem
	for _, p := range compiled {
		if filepath.Dir(p) != filepath.Clean(dir) || strings.HasPrefix(filepath.Base(p), ".") || engine.IsTestFile(p) {
			continue
		}
		show := p
		if rel, rerr := filepath.Rel(base, p); base != "" && rerr == nil {
			show = rel
		}
		for _, err := range engine.CheckScriptAll(ecfg, p) {
			prob := Problem{File: show, Msg: firstLine(luabind.DescribeError(err))}
			if file, line, ok := luabind.ErrorLocation(err); ok {
				prob.Line = line
				if file != p && filepath.IsAbs(file) {
					// In a module the script requires: point there.
					prob.File = file
					if rel, rerr := filepath.Rel(base, file); base != "" && rerr == nil {
						prob.File = rel
					}
				}
				// The message repeats "file:line:"; keep what follows.
				if i := strings.Index(prob.Msg, fmt.Sprintf(":%d: ", line)); i >= 0 {
					prob.Msg = prob.Msg[i+len(fmt.Sprintf(":%d: ", line)):]
				}
			}
			probs = append(probs, prob)
		}
	}
	return probs
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
