package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/mailbot/mailbot/luabind"
)

const checkDesc = `Validates the config file (strictly: unknown keys, wrong types, bad values,
inline passwords, unset password variables, unreadable files) and compiles
every *.lua script under scripts_dir. Each problem is printed as
"file:line: message". Exit status 0 when all is well, 1 otherwise.`

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
		n++
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
