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
	"strings"
	"time"

	"github.com/mailbot/mailbot/engine"
	"github.com/mailbot/mailbot/luabind"
)

const checkDesc = `Validates the config file (strictly: unknown keys, wrong types, bad values,
inline passwords, unset password variables, unreadable files, DKIM keys that
cannot sign, fallback lists naming unknown accounts, oauth2 sections: provider,
grant, endpoints, inline or unset client secrets and refresh tokens, and an
account with neither a cached login nor a refresh token to start from) and
compiles every *.lua script under scripts_dir. Then it loads each script the way
"mailbot run" would, without starting anything, so that its trigger
registrations are checked too (cron specs, durations, time zones, options);
top-level code that connects with smtp is reported, since it would send mail
at every reload. Each problem is printed as "file:line: message". Exit
status 0 when all is well, 1 otherwise.`

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
	var probs []Problem
	cfg, err := LoadConfig(path)
	var ce *ConfigError
	switch {
	case errors.As(err, &ce):
		probs = append(probs, ce.Problems...)
	case err != nil:
		probs = append(probs, Problem{File: path, Msg: err.Error()})
	}
	nScripts := 0
	if cfg != nil {
		probs = append(probs, cfg.CheckSecrets(m.lookupEnv)...)
		var sp []Problem
		nScripts, sp = checkScripts(cfg.Resolve(cfg.ScriptsDir), displayBase())
		probs = append(probs, sp...)
		if len(sp) == 0 {
			probs = append(probs, m.checkRegistrations(cfg, displayBase())...)
		}
	}
	for _, p := range probs {
		fmt.Fprintln(m.Stdout, p.String())
	}
	if len(probs) > 0 {
		fmt.Fprintf(m.Stderr, "mailbot check: %d problem(s)\n", len(probs))
		return exitFailure
	}
	fmt.Fprintf(m.Stdout, "%s: ok (%d account(s), %d script(s))\n", path, len(cfg.Accounts), nScripts)
	return exitOK
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
func checkScripts(dir, base string) (int, []Problem) {
	var probs []Problem
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
		}
		return nil
	})
	if err != nil {
		probs = append(probs, Problem{File: dir, Msg: fmt.Sprintf("cannot read scripts: %v", unwrapPathError(err))})
	}
	sort.SliceStable(probs, func(i, j int) bool { return probs[i].File < probs[j].File })
	return n, probs
}

// checkRegistrations loads each script the way "mailbot run" would, so
// that its trigger registrations (cron specs, durations, time zones,
// options) are validated too, without starting anything (see
// engine.CheckScript).
func (m *Main) checkRegistrations(cfg *Config, base string) []Problem {
	dir := cfg.Resolve(cfg.ScriptsDir)
	paths, err := filepath.Glob(filepath.Join(dir, "*.lua"))
	if err != nil {
		return []Problem{{File: dir, Msg: err.Error()}}
	}
	lopts := luabind.Options{Getenv: m.lookupEnv, Logger: slog.New(slog.DiscardHandler), MemoryLimit: cfg.memoryLimit()}
	cfg.applySandbox(&lopts)
	ecfg := engine.Config{ScriptsDir: dir, RunTimeout: cfg.RunTimeout, Lua: lopts}
	if cfg.Timezone != "" {
		if loc, err := time.LoadLocation(cfg.Timezone); err == nil {
			ecfg.Location = loc
		}
	}
	var probs []Problem
	for _, p := range paths {
		if strings.HasPrefix(filepath.Base(p), ".") || engine.IsTestFile(p) {
			continue
		}
		err := engine.CheckScript(ecfg, p)
		if err == nil {
			continue
		}
		show := p
		if rel, rerr := filepath.Rel(base, p); base != "" && rerr == nil {
			show = rel
		}
		prob := Problem{File: show, Msg: firstLine(luabind.DescribeError(err))}
		if _, line, ok := luabind.ErrorLocation(err); ok {
			prob.Line = line
			// The message repeats "file:line:"; keep what follows.
			if i := strings.Index(prob.Msg, fmt.Sprintf(":%d: ", line)); i >= 0 {
				prob.Msg = prob.Msg[i+len(fmt.Sprintf(":%d: ", line)):]
			}
		}
		probs = append(probs, prob)
	}
	return probs
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
