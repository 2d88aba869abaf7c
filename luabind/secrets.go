package luabind

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Secrets is the registry of environment variables and files that the
// host's configuration names as secrets: account passwords and any other
// *_env / *_file secret key. Scripts cannot read them in either sandbox:
// env.get, env.require and os.getenv raise a *SecretError for a registered
// variable, and every file access of the toolbox (fs, csv, template, mail
// attachments, require, ca_file; io.open and friends under trusted) refuses
// a registered file, compared by file identity (os.SameFile), so symlinks,
// hard links and ".." do not get around it.
//
// The zero value is not usable; create one with NewSecrets. It is safe for
// concurrent use, so one registry can serve every script's state.
type Secrets struct {
	mu    sync.RWMutex
	env   map[string]secretOwner
	files []secretFile
}

// secretOwner says whose secret a name holds and how scripts use it instead.
type secretOwner struct {
	owner string // e.g. "account relay"
	hint  string // e.g. "use c:login()"
}

type secretFile struct {
	path string
	secretOwner
}

// NewSecrets returns an empty registry.
func NewSecrets() *Secrets {
	return &Secrets{env: make(map[string]secretOwner)}
}

// AddEnv registers the environment variable name as a secret of owner
// ("account relay"); hint tells the script author what to do instead
// ("use c:login()").
func (s *Secrets) AddEnv(name, owner, hint string) {
	if s == nil || name == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.env[name] = secretOwner{owner, hint}
}

// AddFile registers the file at path as a secret of owner; see AddEnv.
// The file is identified at each check, so a secret file that is replaced
// (rotated) stays protected.
func (s *Secrets) AddFile(path, owner, hint string) {
	if s == nil || path == "" {
		return
	}
	abs, err := filepath.Abs(path)
	if err == nil {
		path = abs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files = append(s.files, secretFile{path, secretOwner{owner, hint}})
}

// Envs returns the registered variable names, sorted.
func (s *Secrets) Envs() []string {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.env))
	for k := range s.env {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// CheckEnv returns a *SecretError when name is a registered secret
// variable, nil otherwise.
func (s *Secrets) CheckEnv(name string) error {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	o, ok := s.env[name]
	s.mu.RUnlock()
	if !ok {
		return nil
	}
	return &SecretError{Name: name, Owner: o.owner, Hint: o.hint}
}

// CheckFile returns a *SecretError when fi (the file a script is about to
// read or change, shown as name) is a registered secret file.
func (s *Secrets) CheckFile(name string, fi fs.FileInfo) error {
	if s == nil || fi == nil {
		return nil
	}
	s.mu.RLock()
	files := s.files
	s.mu.RUnlock()
	for _, f := range files {
		sfi, err := os.Stat(f.path)
		if err != nil {
			continue
		}
		if os.SameFile(fi, sfi) {
			return &SecretError{Name: name, Owner: f.owner, Hint: f.hint, File: true}
		}
	}
	return nil
}

// checkPath is CheckFile for a path (followed through symlinks); a path
// that does not exist is no secret.
func (s *Secrets) checkPath(name, path string) error {
	if s == nil {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return s.CheckFile(name, fi)
}

// SecretError reports a script's attempt to read a secret, e.g.
// "RELAY_PASSWORD holds a secret of account relay; use c:login()".
type SecretError struct {
	// Name is the variable or the path the script used.
	Name string
	// Owner says whose secret it is ("account relay").
	Owner string
	// Hint says what to do instead ("use c:login()").
	Hint string
	// File is true for a secret file, false for a variable.
	File bool
}

// Error implements error.
func (e *SecretError) Error() string {
	var b strings.Builder
	if e.File {
		b.WriteString("file ")
	}
	fmt.Fprintf(&b, "%s holds a secret of %s", e.Name, e.Owner)
	if e.Hint != "" {
		b.WriteString("; " + e.Hint)
	}
	return b.String()
}

// procLeaks lists the files under /proc/<pid>/ (and /proc/<pid>/task/<tid>/)
// that expose a process's secrets: its environment (password variables), its
// memory (every password it has read) and its command line (a parent shell's
// "VAR=secret mailbot run"). They are refused for every process, since a
// parent's or sibling's environ holds the same variables.
var procLeaks = map[string]bool{"environ": true, "mem": true, "cmdline": true, "pagemap": true}

// isProcLeak reports whether path names one of procLeaks under /proc,
// lexically or after resolving symlinks (/proc/self, /proc/thread-self,
// /proc/self/fd/N, /dev/fd/N, a symlink a script made).
func isProcLeak(path string) bool {
	check := func(p string) bool {
		p = filepath.Clean(p)
		if !strings.HasPrefix(p, "/proc/") {
			return false
		}
		return procLeaks[filepath.Base(p)]
	}
	if check(path) {
		return true
	}
	if real, err := filepath.EvalSymlinks(path); err == nil && check(real) {
		return true
	}
	return false
}

// procError is the error for a refused /proc file.
func procError(name string) error {
	return fmt.Errorf("%s: reading a process's environment, memory or command line is not allowed (they hold secrets)", name)
}
