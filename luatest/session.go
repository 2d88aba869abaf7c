package luatest

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/luabind"
	"github.com/mailbot/mailbot/smtp"
)

// fakeClock is the time every state of a test file reads: frozen at the
// file's start until t.clock.set or t.clock.advance moves it.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// session is the run of one test file: its Lua state, the capture server,
// the fake clock and environment, the private folders and the tests.
type session struct {
	ctx     context.Context
	opts    *Options
	display string // the file as reported: "examples/scripts/daily-report_test.lua"
	cap     *capture
	clock   *fakeClock
	env     map[string]string
	tmp     string // parent of every private folder of this file
	root    string // the current private folder; scripts see root/scripts as "."
	gen     int    // 0 for the top-level code, i for the i-th test
	scripts []*loaded
	tests   []*testCase
	// The state of the top-level code, which every test starts from.
	baseRoot  string
	baseEnv   map[string]string
	baseClock time.Time

	accounts map[string]luabind.Account
	marker   *lua.LUserData // raised by failing assertions
	failure  *Failure       // the current test's failure, if an assertion failed
}

type testCase struct {
	name string
	fn   *lua.LFunction
}

// testPassword and testToken are what accounts log in with under test:
// the capture server accepts any, and no real secret is ever read.
const (
	testPassword = "mailbot-test-password"
	testToken    = "mailbot-test-token"
)

type staticToken struct{}

func (staticToken) Token(context.Context) (string, error)           { return testToken, nil }
func (staticToken) Refresh(context.Context, string) (string, error) { return testToken, nil }

var _ smtp.TokenSource = staticToken{}

func newSession(ctx context.Context, opts *Options, display string) (*session, error) {
	s := &session{ctx: ctx, opts: opts, display: display, env: map[string]string{},
		clock: &fakeClock{t: time.Now().Truncate(time.Second)}}
	c, err := startCapture()
	if err != nil {
		return nil, err
	}
	s.cap = c
	tmp, err := os.MkdirTemp("", "mailbot-test-*")
	if err != nil {
		c.close()
		return nil, fmt.Errorf("testing: private folder: %w", err)
	}
	s.tmp = tmp
	s.root = filepath.Join(tmp, "base")
	if err := s.seed(s.root); err != nil {
		s.close()
		return nil, err
	}
	s.accounts = make(map[string]luabind.Account, len(opts.Lua.SMTP.Accounts))
	for name, a := range opts.Lua.SMTP.Accounts {
		if a.Password != nil || a.Username != "" {
			a.Password = func() (string, error) { return testPassword, nil }
		}
		if a.OAuth2 != nil {
			a.OAuth2 = staticToken{}
		}
		s.accounts[name] = a
	}
	return s, nil
}

func (s *session) close() {
	for _, ls := range s.scripts {
		if ls.inst != nil {
			ls.inst.close()
			ls.inst = nil
		}
	}
	if s.cap != nil {
		s.cap.close()
	}
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

func (s *session) location() *time.Location {
	if s.opts.Lua.Location != nil {
		return s.opts.Lua.Location
	}
	return time.Local
}

func (s *session) getenv(name string) (string, bool) {
	v, ok := s.env[name]
	return v, ok
}

// seed creates a private folder holding a copy of the scripts folder (its
// data files and templates; hidden entries and state folders left out) as
// root/scripts.
func (s *session) seed(root string) error {
	dst := filepath.Join(root, "scripts")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("testing: private folder: %w", err)
	}
	src := s.opts.ScriptsDir
	if src == "" {
		return nil
	}
	skip := map[string]bool{}
	for _, d := range s.opts.Lua.FSDenied {
		if abs, err := filepath.Abs(d); err == nil {
			skip[abs] = true
		}
	}
	return copyTree(src, dst, func(path string, d fs.DirEntry) bool {
		return strings.HasPrefix(d.Name(), ".") || skip[path]
	})
}

// copyTree copies the regular files under src to dst.
func copyTree(src, dst string, skip func(string, fs.DirEntry) bool) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("testing: copy %s: %w", path, err)
		}
		if path != src && skip != nil && skip(path, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			in, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("testing: copy %s: %w", path, err)
			}
			defer in.Close()
			out, err := os.Create(target)
			if err != nil {
				return fmt.Errorf("testing: copy %s: %w", path, err)
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return fmt.Errorf("testing: copy %s: %w", path, err)
			}
			return out.Close()
		}
		return nil
	})
}

// scriptOptions builds the luabind options of a script under test.
func (s *session) scriptOptions(name string) luabind.Options {
	o := s.opts.Lua
	o.ScriptsDir = s.opts.ScriptsDir
	o.BaseDir = filepath.Join(s.root, "scripts")
	o.ScriptName = name
	o.FSRoots = []string{s.root}
	o.FSRootsFixed = true
	o.FSRootsSource = "mailbot test: the test's private folder"
	o.FSDenied = nil
	o.Getenv = s.getenv
	o.Now = s.clock.now
	o.Location = s.location()
	o.Outbox = s.cap
	o.Modules = nil
	o.SMTP.Accounts = s.accounts
	o.SMTP.NetDialer = nil
	o.SMTP.DryRun = &luabind.DryRun{Addr: s.cap.srv.Addr(), RootCAs: s.cap.srv.CertPool()}
	return o
}

// private resolves a path the way the scripts do (relative to the private
// copy of the scripts folder) and checks it stays in the private folder.
func (s *session) private(p string) (string, error) {
	full := p
	if !filepath.IsAbs(p) {
		full = filepath.Join(s.root, "scripts", p)
	}
	full = filepath.Clean(full)
	rel, err := filepath.Rel(s.root, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s is outside the test's private folder (use a path relative to the script, at most one \"..\" up)", p)
	}
	return full, nil
}

func (s *session) writePrivate(p string, data []byte) error {
	full, err := s.private(p)
	if err != nil {
		return err
	}
	r, err := os.OpenRoot(s.root)
	if err != nil {
		return err
	}
	defer r.Close()
	rel, _ := filepath.Rel(s.root, full)
	if dir := filepath.Dir(rel); dir != "." {
		if err := r.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	if err := r.WriteFile(rel, data, 0o644); err != nil {
		return err
	}
	// The file is as new as the fake clock says, as if written just now.
	now := s.clock.now()
	return r.Chtimes(rel, now, now)
}

func (s *session) readPrivate(p string) ([]byte, error) {
	full, err := s.private(p)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(s.root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rel, _ := filepath.Rel(s.root, full)
	return r.ReadFile(rel)
}

// startTest resets everything a test can change to the state the file's
// top-level code left: sent messages, scripted replies, clock, environment
// and private folder. Loaded scripts load again at their first use.
func (s *session) startTest(i int) error {
	s.gen = i
	s.failure = nil
	s.cap.reset()
	s.clock.set(s.baseClock)
	s.env = make(map[string]string, len(s.baseEnv))
	for k, v := range s.baseEnv {
		s.env[k] = v
	}
	root := filepath.Join(s.tmp, fmt.Sprintf("test-%d", i))
	if err := copyTree(s.baseRoot, root, nil); err != nil {
		return err
	}
	s.root = root
	return nil
}

func (s *session) endTest() {
	if s.root != s.baseRoot {
		os.RemoveAll(s.root)
		s.root = s.baseRoot
	}
}

// snapshot records the top-level code's clock, environment and folder.
func (s *session) snapshot() {
	s.baseRoot = s.root
	s.baseClock = s.clock.now()
	s.baseEnv = s.env
}
