package luabind

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// OutsideRootsError reports a path that a strict script may not reach: it
// lies outside Options.FSRoots (lexically, or through a symlink or ".."),
// or inside one of Options.FSDenied.
type OutsideRootsError struct {
	// Path is the path as the script gave it.
	Path string
	// Source says where the roots come from: "config line 12" or "default".
	Source string
	// Denied is set when the path is inside a denied folder (the state
	// store) rather than outside every root.
	Denied string
}

// Error implements error.
func (e *OutsideRootsError) Error() string {
	src := e.Source
	if src == "" {
		src = "default"
	}
	if e.Denied != "" {
		return fmt.Sprintf("path %s is inside %s, which scripts may not touch (fs_roots, %s)", e.Path, e.Denied, src)
	}
	return fmt.Sprintf("path %s is outside fs_roots (%s)", e.Path, src)
}

// fileAccess is the one gate every file a script names goes through: fs,
// csv.read, template.render_file, mail attachments, ca_file, require and
// (under trusted) io.open and friends. In both sandboxes it refuses secret
// files and /proc files that leak secrets; under strict it confines every
// access to the roots with os.Root, so neither ".." nor symlinks escape,
// and keeps the denied folders closed.
type fileAccess struct {
	base    string // anchors relative paths
	strict  bool
	source  string // for OutsideRootsError
	secrets *Secrets

	mu     sync.RWMutex
	roots  []string // absolute, cleaned; both the given and the resolved form
	denied []string // absolute, cleaned, resolved
}

// newFileAccess builds the gate for o.
func newFileAccess(o *Options) *fileAccess {
	a := &fileAccess{base: o.BaseDir, strict: o.Sandbox == SandboxStrict, source: o.FSRootsSource, secrets: o.Secrets}
	roots := o.FSRoots
	if roots == nil {
		roots = []string{o.ScriptsDir, o.BaseDir}
	}
	for _, r := range roots {
		a.addRoot(r)
	}
	for _, d := range o.FSDenied {
		if d == "" {
			continue
		}
		d = absClean(d)
		a.denied = append(a.denied, d)
		if real, err := filepath.EvalSymlinks(d); err == nil && real != d {
			a.denied = append(a.denied, real)
		}
	}
	return a
}

// absClean makes p absolute and clean.
func absClean(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// addRoot adds dir (and its symlink-resolved form) to the roots.
func (a *fileAccess) addRoot(dir string) {
	if dir == "" {
		return
	}
	dir = absClean(dir)
	a.mu.Lock()
	defer a.mu.Unlock()
	add := func(d string) {
		if !slices.Contains(a.roots, d) {
			a.roots = append(a.roots, d)
		}
	}
	add(dir)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		add(real)
	}
	// Outermost first: a symlink between two nested roots then resolves
	// inside the wider one.
	slices.SortStableFunc(a.roots, func(x, y string) int { return len(x) - len(y) })
}

// within returns p relative to dir when p is dir or inside it.
func within(dir, p string) (string, bool) {
	if p == dir {
		return ".", true
	}
	prefix := dir
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	if strings.HasPrefix(p, prefix) {
		return p[len(prefix):], true
	}
	return "", false
}

// loc is a path located for one operation: under strict an os.Root and a
// name relative to it, under trusted the host file system and the
// absolute path.
type loc struct {
	shown string // as the script gave it, for messages
	abs   string
	root  *os.Root // nil under trusted
	name  string   // relative to root, or abs
}

func (l *loc) close() {
	if l.root != nil {
		l.root.Close()
	}
}

// resolve turns a script's path into an absolute one.
func (a *fileAccess) resolve(p string) string {
	return absClean(resolvePath(a.base, p))
}

// locate finds the root that holds p. The caller closes the result.
func (a *fileAccess) locate(p string) (*loc, error) {
	abs := a.resolve(p)
	l := &loc{shown: p, abs: abs, name: abs}
	if isProcLeak(abs) {
		return nil, procError(p)
	}
	if !a.strict {
		return l, nil
	}
	a.mu.RLock()
	roots := a.roots
	a.mu.RUnlock()
	for _, r := range roots {
		rel, ok := within(r, abs)
		if !ok {
			continue
		}
		root, err := os.OpenRoot(r)
		if err != nil {
			return nil, fmt.Errorf("open fs root %s: %w", r, err)
		}
		l.root, l.name = root, rel
		if err := a.checkDenied(l, abs); err != nil {
			l.close()
			return nil, err
		}
		return l, nil
	}
	return nil, &OutsideRootsError{Path: p, Source: a.source}
}

// checkDenied refuses a path inside a denied folder, judged on the path
// with its existing part's symlinks resolved (a symlink inside a root that
// leads into the state store counts as the state store).
func (a *fileAccess) checkDenied(l *loc, abs string) error {
	if len(a.denied) == 0 {
		return nil
	}
	real := resolveExisting(abs)
	for _, d := range a.denied {
		for _, p := range []string{abs, real} {
			if _, in := within(d, p); !in {
				continue
			}
			if a.inRootBelow(d, p) {
				continue // a root inside the denied folder: state_dir/files
			}
			return &OutsideRootsError{Path: l.shown, Source: a.source, Denied: d}
		}
	}
	return nil
}

// inRootBelow reports whether p is inside a root that itself lies inside d.
func (a *fileAccess) inRootBelow(d, p string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, r := range a.roots {
		if r == d {
			continue
		}
		if _, in := within(d, r); !in {
			continue
		}
		if _, in := within(r, p); in {
			return true
		}
	}
	return false
}

// containsDenied reports whether the folder abs holds a denied folder, so
// that removing or moving it would take the state store along.
func (a *fileAccess) containsDenied(shown, abs string) error {
	real := resolveExisting(abs)
	for _, d := range a.denied {
		for _, p := range []string{abs, real} {
			if _, in := within(p, d); in {
				return &OutsideRootsError{Path: shown, Source: a.source, Denied: d}
			}
		}
	}
	return nil
}

// resolveExisting resolves the symlinks of the longest existing prefix of
// abs and appends the rest.
func resolveExisting(abs string) string {
	rest := ""
	p := abs
	for {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return abs
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

// wrap turns an os.Root escape into OutsideRootsError, and names the
// absolute path in the form os functions do ("open /srv/x: ..." rather
// than the root-relative "openat x: ...").
func (a *fileAccess) wrap(l *loc, err error) error {
	if err == nil || l.root == nil {
		return err
	}
	if strings.Contains(err.Error(), "path escapes from parent") {
		return &OutsideRootsError{Path: l.shown, Source: a.source}
	}
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		return &fs.PathError{Op: strings.TrimSuffix(pe.Op, "at"), Path: filepath.Join(l.root.Name(), pe.Path), Err: pe.Err}
	case errors.As(err, &le):
		return &os.LinkError{Op: strings.TrimSuffix(le.Op, "at"), Old: filepath.Join(l.root.Name(), le.Old),
			New: filepath.Join(l.root.Name(), le.New), Err: le.Err}
	}
	return err
}

// verify checks an opened file: not a secret (by identity), not a /proc
// leak, not in a denied folder (by the kernel's name for the descriptor).
func (a *fileAccess) verify(l *loc, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := a.secrets.CheckFile(l.shown, fi); err != nil {
		return err
	}
	if real, ok := fdPath(f); ok {
		if isProcLeak(real) {
			return procError(l.shown)
		}
		if a.strict {
			if err := a.checkDenied(l, real); err != nil {
				return err
			}
		}
	}
	return nil
}

// fdPath returns the path the kernel records for f's descriptor (Linux).
func fdPath(f *os.File) (string, bool) {
	sc, err := f.SyscallConn()
	if err != nil {
		return "", false
	}
	var p string
	var rerr error
	cerr := sc.Control(func(fd uintptr) {
		p, rerr = os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	})
	if cerr != nil || rerr != nil || !filepath.IsAbs(p) {
		return "", false
	}
	return p, true
}

// open opens p for reading through the gate.
func (a *fileAccess) open(p string) (*os.File, error) {
	l, err := a.locate(p)
	if err != nil {
		return nil, err
	}
	defer l.close()
	var f *os.File
	if l.root != nil {
		f, err = l.root.Open(l.name)
	} else {
		f, err = os.Open(l.abs)
	}
	if err != nil {
		return nil, a.wrap(l, err)
	}
	if err := a.verify(l, f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readFile reads p through the gate.
func (a *fileAccess) readFile(p string) ([]byte, error) {
	f, err := a.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// readFileMax is readFile that stops after max bytes (max <= 0: no
// bound). It returns the file's size as far as it is known: more than max
// when the file is larger (then the data is incomplete and must not be
// used).
func (a *fileAccess) readFileMax(p string, max int64) ([]byte, int64, error) {
	f, err := a.open(p)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if max <= 0 {
		b, err := io.ReadAll(f)
		return b, int64(len(b)), err
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > max {
		return nil, fi.Size(), nil
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	return b, int64(len(b)), err
}

// checkTrusted is the gate for the trusted sandbox's own file functions
// (io.open, io.lines, dofile, loadfile, ...): secrets and /proc leaks only.
// Those functions resolve relative paths against the process's working
// directory, and so does the check.
func (a *fileAccess) checkTrusted(p string) error {
	abs := absClean(p)
	if isProcLeak(abs) {
		return procError(p)
	}
	return a.secrets.checkPath(p, abs)
}

// stat stats p (following symlinks) through the gate.
func (a *fileAccess) stat(p string) (fs.FileInfo, error) {
	l, err := a.locate(p)
	if err != nil {
		return nil, err
	}
	defer l.close()
	if l.root != nil {
		fi, err := l.root.Stat(l.name)
		return fi, a.wrap(l, err)
	}
	return os.Stat(l.abs)
}

// list reads the directory p, sorted by name.
func (a *fileAccess) list(p string) ([]fs.DirEntry, error) {
	f, err := a.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(entries, func(x, y fs.DirEntry) int { return strings.Compare(x.Name(), y.Name()) })
	return entries, nil
}

// glob matches pattern (filepath.Match syntax) through the gate; matches
// are absolute.
func (a *fileAccess) glob(pattern string) ([]string, error) {
	abs := a.resolve(pattern)
	if !a.strict {
		return filepath.Glob(abs)
	}
	if _, err := filepath.Match(abs, ""); err != nil {
		return nil, err
	}
	// The folder part without wildcards must lie inside a root.
	static := abs
	for strings.ContainsAny(static, `*?[\`) {
		static = filepath.Dir(static)
	}
	l, err := a.locate(static)
	if err != nil {
		if oe := (*OutsideRootsError)(nil); errors.As(err, &oe) {
			oe.Path = pattern
		}
		return nil, err
	}
	defer l.close()
	relPattern := filepath.ToSlash(filepath.Join(l.name, relTail(abs, static)))
	relPattern = path.Clean(relPattern)
	matches, err := fs.Glob(l.root.FS(), relPattern)
	if err != nil {
		return nil, err
	}
	rootPath := l.root.Name()
	out := make([]string, 0, len(matches))
	for _, m := range matches {
		full := filepath.Join(rootPath, filepath.FromSlash(m))
		if a.checkDenied(&loc{shown: full}, full) != nil {
			continue
		}
		out = append(out, full)
	}
	return out, nil
}

// relTail returns what abs adds to its prefix static.
func relTail(abs, static string) string {
	if rel, ok := within(static, abs); ok {
		return rel
	}
	return ""
}

// mkdirAll creates p and its parents.
func (a *fileAccess) mkdirAll(p string) error {
	l, err := a.locate(p)
	if err != nil {
		return err
	}
	defer l.close()
	if l.root != nil {
		return a.wrap(l, l.root.MkdirAll(l.name, 0o755))
	}
	return os.MkdirAll(l.abs, 0o755)
}

// remove removes p, with everything below it when recursive.
func (a *fileAccess) remove(p string, recursive bool) error {
	l, err := a.locate(p)
	if err != nil {
		return err
	}
	defer l.close()
	if err := a.secrets.checkPath(p, l.abs); err != nil {
		return err
	}
	if l.root == nil {
		if recursive {
			if _, err := os.Lstat(l.abs); err != nil {
				return err
			}
			return os.RemoveAll(l.abs)
		}
		return os.Remove(l.abs)
	}
	if err := a.containsDenied(p, l.abs); err != nil {
		return err
	}
	if recursive {
		if _, err := l.root.Lstat(l.name); err != nil {
			return a.wrap(l, err)
		}
		return a.wrap(l, l.root.RemoveAll(l.name))
	}
	return a.wrap(l, l.root.Remove(l.name))
}

// writeAtomic replaces p with data through a temporary file in the same
// folder; see writeFileAtomic.
func (a *fileAccess) writeAtomic(p, data string, mode fs.FileMode, haveMode bool) error {
	l, err := a.locate(p)
	if err != nil {
		return err
	}
	defer l.close()
	if err := a.secrets.checkPath(p, l.abs); err != nil {
		return err
	}
	if l.root == nil {
		return writeFileAtomic(l.abs, data, mode, haveMode)
	}
	r := l.root
	if !haveMode {
		if fi, err := r.Stat(l.name); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	dir, base := path.Split(filepath.ToSlash(l.name))
	tmpName := dir + "." + base + ".tmp-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	tmp, err := r.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", l.abs, a.wrap(l, err))
	}
	fail := func(err error) error {
		tmp.Close()
		r.Remove(tmpName)
		return fmt.Errorf("write %s: %w", l.abs, a.wrap(l, err))
	}
	if err := a.verify(&loc{shown: p, root: r}, tmp); err != nil {
		tmp.Close()
		r.Remove(tmpName)
		return err
	}
	if _, err := io.WriteString(tmp, data); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		r.Remove(tmpName)
		return fmt.Errorf("write %s: %w", l.abs, a.wrap(l, err))
	}
	if err := r.Rename(tmpName, l.name); err != nil {
		r.Remove(tmpName)
		return fmt.Errorf("write %s: %w", l.abs, a.wrap(l, err))
	}
	return nil
}

// appendFile appends data to p, creating it with mode.
func (a *fileAccess) appendFile(p, data string, mode fs.FileMode) error {
	l, err := a.locate(p)
	if err != nil {
		return err
	}
	defer l.close()
	if err := a.secrets.checkPath(p, l.abs); err != nil {
		return err
	}
	var f *os.File
	if l.root != nil {
		f, err = l.root.OpenFile(l.name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, mode)
	} else {
		f, err = os.OpenFile(l.abs, os.O_WRONLY|os.O_APPEND|os.O_CREATE, mode)
	}
	if err != nil {
		return a.wrap(l, err)
	}
	if err := a.verify(l, f); err != nil {
		f.Close()
		return err
	}
	if _, err := io.WriteString(f, data); err != nil {
		f.Close()
		return fmt.Errorf("append %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("append %s: %w", p, err)
	}
	return nil
}

// move renames src to dst; across roots or file systems it copies and
// removes. Directories are only renamed.
func (a *fileAccess) move(src, dst string) error {
	ls, err := a.locate(src)
	if err != nil {
		return err
	}
	defer ls.close()
	ld, err := a.locate(dst)
	if err != nil {
		return err
	}
	defer ld.close()
	if err := a.secrets.checkPath(src, ls.abs); err != nil {
		return err
	}
	if err := a.secrets.checkPath(dst, ld.abs); err != nil {
		return err
	}
	if ls.root == nil {
		return moveFile(ls.abs, ld.abs)
	}
	if err := a.containsDenied(src, ls.abs); err != nil {
		return err
	}
	if ls.root.Name() == ld.root.Name() {
		err := ls.root.Rename(ls.name, ld.name)
		if err == nil || !errors.Is(err, syscall.EXDEV) {
			return a.wrap(ls, err)
		}
	}
	// Different roots (or file systems): copy, then remove.
	in, err := ls.root.Open(ls.name)
	if err != nil {
		return a.wrap(ls, err)
	}
	defer in.Close()
	if err := a.verify(ls, in); err != nil {
		return err
	}
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("move %s to %s: cannot move a directory between fs_roots or file systems", src, dst)
	}
	dir, base := path.Split(filepath.ToSlash(ld.name))
	tmpName := dir + "." + base + ".tmp-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	tmp, err := ld.root.OpenFile(tmpName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("move %s to %s: %w", ls.abs, ld.abs, a.wrap(ld, err))
	}
	fail := func(err error) error {
		tmp.Close()
		ld.root.Remove(tmpName)
		return fmt.Errorf("move %s to %s: %w", ls.abs, ld.abs, a.wrap(ld, err))
	}
	if err := a.verify(ld, tmp); err != nil {
		tmp.Close()
		ld.root.Remove(tmpName)
		return err
	}
	if _, err := io.Copy(tmp, in); err != nil {
		return fail(err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		ld.root.Remove(tmpName)
		return a.wrap(ld, err)
	}
	if err := ld.root.Rename(tmpName, ld.name); err != nil {
		ld.root.Remove(tmpName)
		return a.wrap(ld, err)
	}
	if err := ls.root.Remove(ls.name); err != nil {
		return fmt.Errorf("move %s to %s: copied but %w", src, dst, err)
	}
	return nil
}

// AddFSRoot opens dir to the strict script running in L, as the engine
// does for the folder of each mailbot.on_file the script registers, so its
// handler can read, move and remove ev.path. When the configuration fixed
// the roots (Options.FSRootsFixed), a folder outside them is refused with
// an *OutsideRootsError instead. Under trusted, or for a state not built by
// NewState, it does nothing.
func AddFSRoot(L *lua.LState, dir string) error {
	o := stateOptions(L)
	if o == nil || o.files == nil || !o.files.strict {
		return nil
	}
	a := o.files
	if o.FSRootsFixed {
		l, err := a.locate(dir)
		if err != nil {
			return err
		}
		l.close()
		return nil
	}
	a.addRoot(a.resolve(dir))
	return nil
}

// stateFiles returns the file gate of L, or a permissive one (trusted
// rules, no secrets) for a state not built by NewState.
func stateFiles(L *lua.LState) *fileAccess {
	if o := stateOptions(L); o != nil && o.files != nil {
		return o.files
	}
	return &fileAccess{}
}

// readPublic reads a file that holds public data by nature (a CA bundle
// for ca_file, usually under /etc/ssl) outside the roots: only the secret
// and /proc checks apply, and its content never reaches the script.
func (a *fileAccess) readPublic(p string) ([]byte, error) {
	abs := a.resolve(p)
	if isProcLeak(abs) {
		return nil, procError(p)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := a.secrets.CheckFile(p, mustStat(f)); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// mustStat returns f's FileInfo, or nil.
func mustStat(f *os.File) fs.FileInfo {
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	return fi
}
