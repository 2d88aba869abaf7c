package luabind

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	lua "github.com/yuin/gopher-lua"
)

// defaultFileMode is used by fs.write for new files when no mode is given.
const defaultFileMode fs.FileMode = 0o644

// openFS returns the loader of the fs module. Relative paths resolve against
// Options.BaseDir. Every access goes through the state's file gate: secret
// files and the /proc files that leak secrets are refused in both
// sandboxes, and under strict only Options.FSRoots are reachable (see
// fileAccess). Failures raise an error naming the function and the path,
// e.g. "fs.read: open /srv/x: permission denied" or "fs.read: path
// /etc/passwd is outside fs_roots (config line 4)".
//
//	fs.read(path) -> string
//	fs.write(path, data [, {append = true, mode = "0600"}])
//	      -- replaces the file atomically (temp file + rename) unless append;
//	      -- mode is an octal string or a number; default: the existing
//	      -- file's mode, else 0644
//	fs.list(dir) -> {names...}          -- sorted
//	fs.glob(pattern) -> {paths...}      -- filepath.Glob syntax, sorted; relative
//	                                    -- patterns give paths relative to BaseDir
//	fs.stat(path) -> {size, mtime, is_dir, mode} | nil, "no such file: path"
//	                                    -- mtime in unix seconds, mode an octal string
//	fs.exists(path) -> boolean
//	fs.move(src, dst)                   -- rename; copies then removes across file systems
//	fs.remove(path [, {recursive = true}])
//	fs.mkdir(path)                      -- creates parents as needed
//	fs.basename(path), fs.dirname(path), fs.join(parts...) -> string
func openFS(o *Options) lua.LGFunction {
	a := o.files
	fail := func(L *lua.LState, fname string, err error) {
		L.RaiseError("fs.%s: %v", fname, err)
	}
	funcs := map[string]lua.LGFunction{
		"read": func(L *lua.LState) int {
			// Read at most the run's memory limit (and one byte more to
			// tell): a huge file is refused, not read whole.
			limit := memoryLimit(o)
			b, size, err := a.readFileMax(L.CheckString(1), limit)
			if err != nil {
				fail(L, "read", err)
			}
			if limit > 0 && size > limit {
				refuse(L, limit, "fs.read", float64(size))
			}
			L.Push(lua.LString(b))
			return 1
		},
		"write": func(L *lua.LState) int {
			path, data := L.CheckString(1), L.CheckString(2)
			appendMode, mode, haveMode := false, defaultFileMode, false
			if opts := L.OptTable(3, nil); opts != nil {
				appendMode = lua.LVAsBool(opts.RawGetString("append"))
				if mv := opts.RawGetString("mode"); mv != lua.LNil {
					m, err := parseFileMode(mv)
					if err != nil {
						L.ArgError(3, err.Error())
					}
					mode, haveMode = m, true
				}
			}
			var err error
			if appendMode {
				err = a.appendFile(path, data, mode)
			} else {
				err = a.writeAtomic(path, data, mode, haveMode)
			}
			if err != nil {
				fail(L, "write", err)
			}
			return 0
		},
		"list": func(L *lua.LState) int {
			entries, err := a.list(L.CheckString(1))
			if err != nil {
				fail(L, "list", err)
			}
			t := L.CreateTable(len(entries), 0)
			for _, e := range entries {
				t.Append(lua.LString(e.Name()))
			}
			L.Push(t)
			return 1
		},
		"glob": func(L *lua.LState) int {
			pattern := L.CheckString(1)
			matches, err := a.glob(pattern)
			if err != nil {
				var oe *OutsideRootsError
				if errors.As(err, &oe) {
					fail(L, "glob", err)
				}
				fail(L, "glob", fmt.Errorf("%s: %w", pattern, err))
			}
			t := L.CreateTable(len(matches), 0)
			for _, m := range matches { // lexical order
				if !filepath.IsAbs(pattern) && o.BaseDir != "" {
					// Hand back paths in the form the pattern was given.
					if rel, err := filepath.Rel(absClean(o.BaseDir), m); err == nil {
						m = rel
					}
				}
				t.Append(lua.LString(m))
			}
			L.Push(t)
			return 1
		},
		"stat": func(L *lua.LState) int {
			path := L.CheckString(1)
			fi, err := a.stat(path)
			if errors.Is(err, fs.ErrNotExist) {
				L.Push(lua.LNil)
				L.Push(lua.LString("no such file: " + path))
				return 2
			}
			if err != nil {
				fail(L, "stat", err)
			}
			t := L.CreateTable(0, 4)
			t.RawSetString("size", lua.LNumber(fi.Size()))
			t.RawSetString("mtime", lua.LNumber(float64(fi.ModTime().UnixNano())/1e9))
			t.RawSetString("is_dir", lua.LBool(fi.IsDir()))
			t.RawSetString("mode", lua.LString(fmt.Sprintf("%04o", fi.Mode().Perm())))
			L.Push(t)
			return 1
		},
		"exists": func(L *lua.LState) int {
			_, err := a.stat(L.CheckString(1))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				fail(L, "exists", err)
			}
			L.Push(lua.LBool(err == nil))
			return 1
		},
		"move": func(L *lua.LState) int {
			if err := a.move(L.CheckString(1), L.CheckString(2)); err != nil {
				fail(L, "move", err)
			}
			return 0
		},
		"remove": func(L *lua.LState) int {
			path := L.CheckString(1)
			recursive := false
			if opts := L.OptTable(2, nil); opts != nil {
				recursive = lua.LVAsBool(opts.RawGetString("recursive"))
			}
			if err := a.remove(path, recursive); err != nil {
				fail(L, "remove", err)
			}
			return 0
		},
		"mkdir": func(L *lua.LState) int {
			if err := a.mkdirAll(L.CheckString(1)); err != nil {
				fail(L, "mkdir", err)
			}
			return 0
		},
		"basename": func(L *lua.LState) int {
			L.Push(lua.LString(filepath.Base(L.CheckString(1))))
			return 1
		},
		"dirname": func(L *lua.LState) int {
			L.Push(lua.LString(filepath.Dir(L.CheckString(1))))
			return 1
		},
		"join": func(L *lua.LState) int {
			parts := make([]string, L.GetTop())
			for i := range parts {
				parts[i] = L.CheckString(i + 1)
			}
			L.Push(lua.LString(filepath.Join(parts...)))
			return 1
		},
	}
	return func(L *lua.LState) int {
		mod := L.NewTable()
		L.SetFuncs(mod, funcs)
		L.Push(mod)
		return 1
	}
}

// parseFileMode accepts a permission as a number (e.g. 420 for 0644, Lua has
// no octal literals) or an octal string ("0644", "644").
func parseFileMode(v lua.LValue) (fs.FileMode, error) {
	var n uint64
	switch x := v.(type) {
	case lua.LNumber:
		if x < 0 {
			return 0, fmt.Errorf("invalid mode %v", x)
		}
		n = uint64(x)
	case lua.LString:
		var err error
		if n, err = strconv.ParseUint(string(x), 8, 32); err != nil {
			return 0, fmt.Errorf("invalid mode %q: want octal like \"0644\"", string(x))
		}
	default:
		return 0, fmt.Errorf("mode must be a string or a number, got %s", v.Type())
	}
	if n > 0o777 {
		return 0, fmt.Errorf("invalid mode %o: only permission bits are allowed", n)
	}
	return fs.FileMode(n), nil
}

// writeFileAtomic replaces path with data so that readers see either the old
// or the new content, never a torn file: it writes a temporary file in the
// same directory, syncs it and renames it over path. Without an explicit
// mode, an existing file keeps its permissions.
func writeFileAtomic(path, data string, mode fs.FileMode, haveMode bool) (err error) {
	if !haveMode {
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.WriteString(tmp, data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// moveFile renames src to dst, falling back to copy and remove when they are
// on different file systems (rename(2) fails with EXDEV). Directories are
// only renamed, never copied.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	fi, statErr := os.Stat(src)
	if statErr != nil {
		return statErr
	}
	if fi.IsDir() {
		return fmt.Errorf("move %s to %s: cannot move a directory across file systems: %w", src, dst, err)
	}
	if err := copyFile(src, dst, fi.Mode().Perm()); err != nil {
		return fmt.Errorf("move %s to %s: %w", src, dst, err)
	}
	if err := os.Remove(src); err != nil {
		return fmt.Errorf("move %s to %s: copied but %w", src, dst, err)
	}
	return nil
}

// copyFile copies src to dst through a temporary file, so dst is never seen
// half-written.
func copyFile(src, dst string, mode fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	dir, base := filepath.Split(dst)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, in); err != nil {
		return err
	}
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
