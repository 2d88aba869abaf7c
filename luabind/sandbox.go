package luabind

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// strictOS lists the os functions a strict state keeps: clocks and dates,
// nothing that touches processes or files.
var strictOS = map[string]bool{
	"time": true, "clock": true, "date": true, "difftime": true, "getenv": true,
}

// strictPackage lists the package fields a strict state keeps; loadlib goes.
var strictPackage = map[string]bool{
	"preload": true, "loaded": true, "loaders": true, "path": true,
	"cpath": true, "config": true, "seeall": true,
}

// strictBaseRemoved lists base functions that read files by name, bypassing
// the require confinement.
var strictBaseRemoved = []string{"dofile", "loadfile"}

// openLibs opens the standard library subset for o.Sandbox and confines
// require to o.ScriptsDir.
func openLibs(L *lua.LState, o *Options) {
	if o.Sandbox == SandboxTrusted {
		L.OpenLibs()
	} else {
		libs := []struct {
			name string
			open lua.LGFunction
		}{
			// package and base first: the others register into package.loaded.
			{lua.LoadLibName, lua.OpenPackage},
			{lua.BaseLibName, lua.OpenBase},
			{lua.TabLibName, lua.OpenTable},
			{lua.StringLibName, lua.OpenString},
			{lua.MathLibName, lua.OpenMath},
			{lua.CoroutineLibName, lua.OpenCoroutine},
			{lua.OsLibName, lua.OpenOs},
		}
		for _, lib := range libs {
			L.Push(L.NewFunction(lib.open))
			L.Push(lua.LString(lib.name))
			L.Call(1, 0)
		}
		// Allow-lists rather than deny-lists, so a library upgrade that adds
		// a function does not silently widen the sandbox.
		keepOnly(L.GetGlobal(lua.OsLibName), strictOS)
		keepOnly(L.GetGlobal(lua.LoadLibName), strictPackage)
		for _, name := range strictBaseRemoved {
			L.SetGlobal(name, lua.LNil)
		}
	}
	if osmod, ok := L.GetGlobal(lua.OsLibName).(*lua.LTable); ok {
		osmod.RawSetString("getenv", L.NewFunction(func(L *lua.LState) int {
			name := L.CheckString(1)
			if err := o.Secrets.CheckEnv(name); err != nil {
				L.RaiseError("%v", err)
			}
			if v, ok := o.Getenv(name); ok {
				L.Push(lua.LString(v))
			} else {
				L.Push(lua.LNil)
			}
			return 1
		}))
	}
	if o.Sandbox == SandboxTrusted {
		guardTrustedFiles(L, o.files)
	}
	confineRequire(L, o.ScriptsDir, o.files)
}

// guardTrustedFiles wraps the trusted sandbox's own file functions (io.open,
// io.lines, io.input, io.output, os.remove, os.rename, dofile, loadfile) so
// that they refuse
// secret files and /proc leaks too. It cannot make trusted a jail:
// os.execute and io.popen still run any program.
func guardTrustedFiles(L *lua.LState, a *fileAccess) {
	wrap := func(t *lua.LTable, name string, arg int) {
		var orig lua.LValue
		if t == nil {
			orig = L.GetGlobal(name)
		} else {
			orig = t.RawGetString(name)
		}
		fn, ok := orig.(*lua.LFunction)
		if !ok {
			return
		}
		guarded := L.NewFunction(func(L *lua.LState) int {
			if s, ok := L.Get(arg).(lua.LString); ok {
				if err := a.checkTrusted(string(s)); err != nil {
					L.RaiseError("%v", err)
				}
			}
			top := L.GetTop()
			L.Push(fn)
			for i := 1; i <= top; i++ {
				L.Push(L.Get(i))
			}
			L.Call(top, lua.MultRet)
			return L.GetTop() - top
		})
		if t == nil {
			L.SetGlobal(name, guarded)
		} else {
			t.RawSetString(name, guarded)
		}
	}
	if io, ok := L.GetGlobal(lua.IoLibName).(*lua.LTable); ok {
		for _, name := range []string{"open", "lines", "input", "output"} {
			wrap(io, name, 1)
		}
	}
	if osmod, ok := L.GetGlobal(lua.OsLibName).(*lua.LTable); ok {
		// Removing or renaming a secret file breaks its account or moves
		// it where the checks above no longer find it by path.
		wrap(osmod, "remove", 1)
		wrap(osmod, "rename", 1)
	}
	wrap(nil, "dofile", 1)
	wrap(nil, "loadfile", 1)
}

// keepOnly removes every string key of t that is not in keep.
func keepOnly(v lua.LValue, keep map[string]bool) {
	t, ok := v.(*lua.LTable)
	if !ok {
		return
	}
	var drop []lua.LValue
	t.ForEach(func(k, _ lua.LValue) {
		if s, ok := k.(lua.LString); !ok || !keep[string(s)] {
			drop = append(drop, k)
		}
	})
	for _, k := range drop {
		t.RawSet(k, lua.LNil)
	}
}

// confineRequire replaces package.loaders with the preload loader followed by
// a loader that reads only from dir, through an os.Root so that neither ".."
// nor a symlink can lead outside it. package.path is informational: changing
// it from a script does not widen the search.
func confineRequire(L *lua.LState, dir string, a *fileAccess) {
	pkg, ok := L.GetGlobal(lua.LoadLibName).(*lua.LTable)
	if !ok {
		return
	}
	oldLoaders, _ := pkg.RawGetString("loaders").(*lua.LTable)
	loaders := L.NewTable()
	if oldLoaders != nil {
		// gopher-lua's first loader is the package.preload one.
		if preload := oldLoaders.RawGetInt(1); preload != lua.LNil {
			loaders.Append(preload)
		}
	}
	loaders.Append(L.NewFunction(scriptsLoader(dir, a)))
	pkg.RawSetString("loaders", loaders)
	L.SetField(L.Get(lua.RegistryIndex), "_LOADERS", loaders)

	path := ""
	if dir != "" {
		path = filepath.Join(dir, "?.lua")
	}
	pkg.RawSetString("path", lua.LString(path))
	pkg.RawSetString("cpath", lua.LString(""))
}

// scriptsLoader returns the package.loaders entry that finds module "a.b" as
// dir/a/b.lua. As the last loader it raises the "not found" error itself, so
// the message names the scripts directory instead of listing loader internals.
func scriptsLoader(dir string, a *fileAccess) lua.LGFunction {
	return func(L *lua.LState) int {
		name := L.CheckString(1)
		if !validModuleName(name) {
			L.RaiseError("invalid module name %q: use dot-separated names of letters, digits, '_' and '-'", name)
		}
		if dir == "" {
			L.RaiseError("module '%s' not found (no scripts dir configured)", name)
		}
		rel := strings.ReplaceAll(name, ".", "/") + ".lua"
		root, err := os.OpenRoot(dir)
		if err != nil {
			L.RaiseError("module '%s': open scripts dir: %v", name, err)
		}
		defer root.Close()
		f, err := root.Open(rel)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				L.RaiseError("module '%s' not found in scripts dir %s", name, dir)
			}
			L.RaiseError("module '%s': %v", name, err)
		}
		defer f.Close()
		if a != nil {
			// A secret file or one in the state store is not Lua to run:
			// its content would show up in the syntax error.
			if err := a.verify(&loc{shown: filepath.Join(dir, filepath.FromSlash(rel))}, f); err != nil {
				L.RaiseError("module '%s': %v", name, err)
			}
		}
		chunkName := filepath.Join(dir, filepath.FromSlash(rel))
		proto, err := compileReader(f, chunkName)
		if err != nil {
			L.RaiseError("%s", err.Error())
		}
		L.Push(L.NewFunctionFromProto(proto))
		return 1
	}
}

// validModuleName reports whether name is a dot-separated list of non-empty
// parts made of letters, digits, '_' and '-'. This rules out "..", absolute
// paths and path separators before any file system access.
func validModuleName(name string) bool {
	if name == "" {
		return false
	}
	for part := range strings.SplitSeq(name, ".") {
		if part == "" {
			return false
		}
		for _, r := range part {
			ok := r == '_' || r == '-' ||
				(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
			if !ok {
				return false
			}
		}
	}
	return true
}
