package luatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
)

// DefaultRunTimeout bounds each test, each script load and each fired
// handler unless Options.RunTimeout says otherwise.
const DefaultRunTimeout = 60 * time.Second

// Options configure a test run.
type Options struct {
	// ScriptsDir is where t.load finds scripts and require() finds modules.
	ScriptsDir string
	// Lua is the template of every state: sandbox, accounts, time zone,
	// secrets, logger. The runner replaces what would reach real state:
	// BaseDir and FSRoots (a private temporary folder), Getenv (t.env),
	// Now (the fake clock), Outbox and the SMTP dry run (the capture).
	Lua luabind.Options
	// RunTimeout bounds each test and each script load; default
	// DefaultRunTimeout.
	RunTimeout time.Duration
	// Run, when set, selects the tests whose names it matches.
	Run *regexp.Regexp
	// Verbose prints "=== RUN" and "--- PASS" lines too.
	Verbose bool
	// Out receives the go test-like report; nil discards it.
	Out io.Writer
	// Base, when set, shortens the file names in reports: they are shown
	// relative to it.
	Base string
}

// TestResult is the outcome of one test.
type TestResult struct {
	Name     string
	Duration time.Duration
	// Failure is nil when the test passed.
	Failure *Failure
}

// FileResult is the outcome of one test file.
type FileResult struct {
	// File is the file as reported.
	File     string
	Duration time.Duration
	// LoadError is set when the file (or a script it loads at top level)
	// could not be loaded; no test ran then.
	LoadError string
	Tests     []TestResult
}

// Failed reports whether a test of the file failed or the file did not load.
func (f *FileResult) Failed() bool {
	if f.LoadError != "" {
		return true
	}
	for _, t := range f.Tests {
		if t.Failure != nil {
			return true
		}
	}
	return false
}

// Result is the outcome of a run.
type Result struct {
	Files    []FileResult
	Duration time.Duration
}

// Exit statuses of a run.
const (
	ExitPass      = 0
	ExitFail      = 1
	ExitLoadError = 2
)

// ExitCode is 0 when every test passed, 1 when one failed and 2 when a
// file did not load.
func (r *Result) ExitCode() int {
	code := ExitPass
	for _, f := range r.Files {
		if f.LoadError != "" {
			return ExitLoadError
		}
		if f.Failed() {
			code = ExitFail
		}
	}
	return code
}

// Find lists the test files of a scripts folder: *_test.lua in it and in
// its tests/ folder, sorted.
func Find(scriptsDir string) ([]string, error) {
	var out []string
	for _, dir := range []string{scriptsDir, filepath.Join(scriptsDir, "tests")} {
		m, err := filepath.Glob(filepath.Join(dir, "*_test.lua"))
		if err != nil {
			return nil, fmt.Errorf("listing test files: %w", err)
		}
		sort.Strings(m)
		out = append(out, m...)
	}
	return out, nil
}

// Run runs the test files in order, each in its own Lua state, writing
// the report to opts.Out.
func Run(ctx context.Context, files []string, opts Options) *Result {
	if opts.RunTimeout <= 0 {
		opts.RunTimeout = DefaultRunTimeout
	}
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	start := time.Now()
	res := &Result{}
	tests, failed := 0, 0
	for _, f := range files {
		fr := runFile(ctx, f, &opts, out)
		res.Files = append(res.Files, fr)
		tests += len(fr.Tests)
		for _, t := range fr.Tests {
			if t.Failure != nil {
				failed++
			}
		}
	}
	res.Duration = time.Since(start)
	loadErrs := 0
	for _, f := range res.Files {
		if f.LoadError != "" {
			loadErrs++
		}
	}
	switch {
	case loadErrs > 0 || failed > 0:
		fmt.Fprintf(out, "FAIL: %d of %d tests failed", failed, tests)
		if loadErrs > 0 {
			fmt.Fprintf(out, ", %d of %d files did not load", loadErrs, len(files))
		}
		fmt.Fprintf(out, " (%.3fs)\n", res.Duration.Seconds())
	default:
		fmt.Fprintf(out, "PASS: %d tests in %d files (%.3fs)\n", tests, len(files), res.Duration.Seconds())
	}
	return res
}

func (o *Options) display(path string) string {
	if o.Base != "" {
		if abs, err := filepath.Abs(path); err == nil {
			if rel, err := filepath.Rel(o.Base, abs); err == nil && !strings.HasPrefix(rel, "..") {
				return rel
			}
		}
	}
	return path
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

func runFile(ctx context.Context, path string, opts *Options, out io.Writer) FileResult {
	start := time.Now()
	fr := FileResult{File: opts.display(path)}
	loadErr := func(msg string) FileResult {
		fr.LoadError = msg
		fr.Duration = time.Since(start)
		fmt.Fprintf(out, "--- FAIL: %s [load error]\n%s\nFAIL\t%s\t[load error]\n", fr.File, indent(msg, "    "), fr.File)
		return fr
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return loadErr(err.Error())
	}
	proto, err := luabind.CompileString(string(src), fr.File)
	if err != nil {
		return loadErr(err.Error())
	}
	s, err := newSession(ctx, opts, fr.File)
	if err != nil {
		return loadErr(err.Error())
	}
	defer s.close()
	L := s.testState(path)
	defer L.Close()
	s.marker = L.NewUserData()

	// The top-level code declares the tests and may load scripts, set the
	// clock, environment and files every test starts from.
	if err := s.call(L, func() error { return luabind.DoProto(L, proto) }); err != nil {
		msg := luabind.DescribeError(err)
		if s.failure != nil {
			msg = s.failure.Details()
		}
		return loadErr(msg)
	}
	s.snapshot()

	for i, tc := range s.tests {
		if opts.Run != nil && !opts.Run.MatchString(tc.name) {
			continue
		}
		tr := s.runTest(L, i+1, tc)
		fr.Tests = append(fr.Tests, tr)
		switch {
		case tr.Failure != nil:
			where := tr.Failure.Where
			if where == "" {
				where = fr.File
			}
			if opts.Verbose {
				fmt.Fprintf(out, "=== RUN   %s\n", tc.name)
			}
			fmt.Fprintf(out, "--- FAIL: %s (%s)\n%s\n", tc.name, where, indent(tr.Failure.Details(), "    "))
		case opts.Verbose:
			fmt.Fprintf(out, "=== RUN   %s\n--- PASS: %s (%.2fs)\n", tc.name, tc.name, tr.Duration.Seconds())
		}
	}
	fr.Duration = time.Since(start)
	if fr.Failed() {
		fmt.Fprintf(out, "FAIL\t%s\t%.3fs\n", fr.File, fr.Duration.Seconds())
	} else {
		note := ""
		if len(fr.Tests) == 0 {
			note = " [no tests to run]"
		}
		fmt.Fprintf(out, "ok  \t%s\t%.3fs%s\n", fr.File, fr.Duration.Seconds(), note)
	}
	return fr
}

// call runs f with the run timeout set on L.
func (s *session) call(L *lua.LState, f func() error) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.RunTimeout)
	defer cancel()
	L.SetContext(ctx)
	defer L.RemoveContext()
	defer luabind.CloseResources(L)
	err := f()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("stopped after %v: %w", s.opts.RunTimeout, err)
	}
	return err
}

func (s *session) runTest(L *lua.LState, i int, tc *testCase) TestResult {
	start := time.Now()
	tr := TestResult{Name: tc.name}
	if err := s.startTest(i); err != nil {
		tr.Failure = &Failure{Message: err.Error()}
		return tr
	}
	defer s.endTest()
	err := s.call(L, func() error {
		return L.CallByParam(lua.P{Fn: tc.fn, NRet: 0, Protect: true})
	})
	tr.Duration = time.Since(start)
	if err == nil {
		return tr
	}
	var ae *lua.ApiError
	if errors.As(err, &ae) && ae.Object == s.marker && s.failure != nil {
		tr.Failure = s.failure
		return tr
	}
	// An error the test did not expect: report it at the test file's line
	// that led to it.
	f := &Failure{Message: "error: " + luabind.DescribeError(err)}
	if ae != nil {
		f.Message = "error: " + describeRaised(ae)
		f.Where = s.fileLine(ae)
	}
	tr.Failure = f
	return tr
}

// describeRaised renders an ApiError's value without the stack trace.
func describeRaised(ae *lua.ApiError) string {
	if _, ok := ae.Object.(*lua.LTable); ok {
		return describe(ae.Object)
	}
	if ae.Object != nil {
		return lua.LVAsString(ae.Object)
	}
	return ae.Error()
}

var lineRE = regexp.MustCompile(`^\s*(.+?):(\d+):`)

// fileLine finds the test file's innermost line in an error's message and
// traceback.
func (s *session) fileLine(ae *lua.ApiError) string {
	var lines []string
	if str, ok := ae.Object.(lua.LString); ok {
		lines = append(lines, string(str))
	}
	lines = append(lines, strings.Split(ae.StackTrace, "\n")...)
	for _, l := range lines {
		if m := lineRE.FindStringSubmatch(l); m != nil && m[1] == s.display {
			if _, err := strconv.Atoi(m[2]); err == nil {
				return m[1] + ":" + m[2]
			}
		}
	}
	return s.display
}

// testState builds the test file's own state: the testing module, the
// fake clock and environment, files readable next to the test file.
func (s *session) testState(path string) *lua.LState {
	o := s.opts.Lua
	abs, _ := filepath.Abs(path)
	dir := filepath.Dir(abs)
	o.ScriptsDir = s.opts.ScriptsDir
	o.BaseDir = dir
	o.ScriptName = filepath.Base(path)
	o.FSRoots = []string{dir}
	if s.opts.ScriptsDir != "" {
		o.FSRoots = append(o.FSRoots, s.opts.ScriptsDir)
	}
	o.FSRootsFixed = true
	o.FSRootsSource = "mailbot test: the test file's folder and scripts_dir"
	o.Getenv = s.getenv
	o.Now = s.clock.now
	o.Location = s.location()
	o.Outbox = s.cap
	o.SMTP.Accounts = s.accounts
	o.SMTP.NetDialer = nil
	o.SMTP.DryRun = &luabind.DryRun{Addr: s.cap.srv.Addr(), RootCAs: s.cap.srv.CertPool()}
	o.HTTP.AllowHosts, o.HTTP.AllowHostsSource = []string{}, "the hosts tests may reach (none: mailbot test does not reach the network)"
	mods := make(map[string]lua.LGFunction, len(o.Modules)+1)
	for k, v := range o.Modules {
		mods[k] = v
	}
	mods["testing"] = s.loader
	o.Modules = mods
	return luabind.NewState(o)
}
