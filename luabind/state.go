package luabind

import (
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailbot/mailbot/sqldb"
)

// Sandbox selects how much of the Lua standard library a state gets.
type Sandbox int

const (
	// SandboxStrict is the default. Scripts get base, package, table, string,
	// math and coroutine, plus os.time, os.clock, os.date, os.difftime and
	// os.getenv. There is no io library, no dofile/loadfile, no
	// package.loadlib, and require only loads preloaded modules and files
	// inside Options.ScriptsDir.
	SandboxStrict Sandbox = iota
	// SandboxTrusted opens the full gopher-lua standard library (io, os,
	// debug, channel, dofile, loadfile) for scripts the operator trusts.
	// require stays confined to Options.ScriptsDir.
	SandboxTrusted
)

// String returns "strict" or "trusted".
func (s Sandbox) String() string {
	switch s {
	case SandboxStrict:
		return "strict"
	case SandboxTrusted:
		return "trusted"
	}
	return "Sandbox(" + strconv.Itoa(int(s)) + ")"
}

// Default bounds for a state. They are small enough that a runaway recursion
// or an ever-growing stack ends in a Lua error long before it hurts the host.
const (
	DefaultCallStackSize   = 256     // Lua call frames
	DefaultRegistrySize    = 1024    // initial value-stack slots
	DefaultRegistryMaxSize = 1 << 20 // value-stack slots the state may grow to

	// registryGrowStep is the value-stack growth increment. gopher-lua copies
	// the whole stack on each growth, and a Go function such as unpack grows
	// it without checking the context, so small steps (the library default
	// is 32) make filling a 1<<20-slot stack take tens of seconds.
	registryGrowStep = 1 << 14
)

// Options configures NewState. The zero value is usable: a strict sandbox,
// no scripts directory, paths relative to the process working directory,
// logging to slog.Default(), the process environment and the system clock.
type Options struct {
	// ScriptsDir is the only directory require() loads files from;
	// require("a.b") loads ScriptsDir/a/b.lua. Empty means require finds
	// only preloaded modules.
	ScriptsDir string
	// BaseDir anchors relative paths in the fs, csv and template modules
	// (and mail attachments). Default: ScriptsDir, or the process working
	// directory when that is empty too.
	BaseDir string
	// Sandbox selects the standard library subset; default SandboxStrict.
	Sandbox Sandbox
	// ScriptName, when set, is added as the "script" attribute to every
	// record written by the log module.
	ScriptName string
	// Logger receives the log module's records; default slog.Default().
	Logger *slog.Logger
	// Getenv backs the env module and os.getenv; default os.LookupEnv.
	Getenv func(string) (string, bool)
	// Now backs time.now(); default time.Now.
	Now func() time.Time
	// Location is the time module's zone when a call names none;
	// default time.Local.
	Location *time.Location
	// Outbox backs mail.send, the durable enqueue; nil disables it.
	Outbox Enqueuer
	// SMTP configures the smtp module: accounts, transcript logger, dry run.
	// Its Logger defaults to Logger.
	SMTP SMTPOptions
	// HTTP configures the http module: allowed hosts, roots, limits.
	// Its Logger defaults to Logger.
	HTTP HTTPOptions
	// Modules are extra host modules, preloaded for require() under their
	// map keys. An entry replaces a toolbox module of the same name.
	Modules map[string]lua.LGFunction
	// CallStackSize bounds the Lua call depth; default DefaultCallStackSize.
	CallStackSize int
	// RegistrySize is the initial value-stack size; default DefaultRegistrySize.
	RegistrySize int
	// RegistryMaxSize bounds value-stack growth; default DefaultRegistryMaxSize.
	RegistryMaxSize int
	// MemoryLimit bounds, in bytes, the Lua values of a state during a run
	// started with StartRun, and the result of a single built-in call
	// (string.rep, table.concat, string.format, string.gsub, loadstring,
	// json.encode/decode, csv.parse/read, template.render).
	// 0 means DefaultMemoryLimit; a negative value disables the limit.
	MemoryLimit int64

	// FSRoots are the folders a strict script's files may be in: fs, csv,
	// template, mail attachments and ca_file reach nothing else, through
	// os.Root so that ".." and symlinks cannot escape (require stays
	// inside ScriptsDir). Nil means ScriptsDir and BaseDir. The engine adds
	// each on_file folder a script registers (see AddFSRoot). Ignored
	// under SandboxTrusted.
	FSRoots []string
	// FSRootsFixed makes AddFSRoot refuse folders outside FSRoots instead
	// of adding them: the configuration listed the roots explicitly.
	FSRootsFixed bool
	// FSRootsSource says where FSRoots come from in errors ("path X is
	// outside fs_roots (config line 12)"); empty reads "default".
	FSRootsSource string
	// FSDenied are folders inside the roots that strict scripts may not
	// touch (the state store: ledger, outbox, mailbot.state), except for
	// roots that lie inside them (state_dir/files).
	FSDenied []string
	// Secrets are the variables and files scripts may not read, in either
	// sandbox; nil: none.
	Secrets *Secrets
	// SQL is the configured databases the sql module opens by name,
	// shared by every state of a configuration (one pool per database);
	// nil: none.
	SQL *sqldb.Set

	// files is the gate every file access goes through; set by NewState.
	files *fileAccess
}

// withDefaults fills every zero field that has a default.
func (o Options) withDefaults() Options {
	if o.BaseDir == "" {
		o.BaseDir = o.ScriptsDir
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SMTP.Logger == nil {
		o.SMTP.Logger = o.Logger
	}
	if o.Getenv == nil {
		o.Getenv = os.LookupEnv
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.CallStackSize <= 0 {
		o.CallStackSize = DefaultCallStackSize
	}
	if o.RegistrySize <= 0 {
		o.RegistrySize = DefaultRegistrySize
	}
	if o.RegistryMaxSize <= 0 {
		o.RegistryMaxSize = DefaultRegistryMaxSize
	}
	if o.RegistryMaxSize < o.RegistrySize {
		o.RegistryMaxSize = o.RegistrySize
	}
	return o
}

// registryKey is where NewState keeps the state's *Options, so package code
// (ResolvePath, other modules) can reach the host configuration from an LState.
const registryKey = "mailbot.luabind.options"

// NewState returns a fully loaded Lua state: the standard library subset
// chosen by opts.Sandbox, require() confined to opts.ScriptsDir, and the
// toolbox modules (json, csv, template, log, fs, time, env, http, sql,
// chart, xlsx) plus
// opts.Modules preloaded for require().
//
// The caller owns the state: start each run with StartRun(ctx, L) so that
// cancellation and the memory limit stop the script, use it from one goroutine at a time, and
// L.Close() it when done.
func NewState(opts Options) *lua.LState {
	o := opts.withDefaults()
	L := lua.NewState(lua.Options{
		SkipOpenLibs:     true,
		CallStackSize:    o.CallStackSize,
		RegistrySize:     o.RegistrySize,
		RegistryMaxSize:  o.RegistryMaxSize,
		RegistryGrowStep: registryGrowStep,
		// A loaded script mostly sits idle between runs: let the call
		// stack grow on demand instead of holding CallStackSize frames.
		MinimizeStackMemory: true,
	})
	o.files = newFileAccess(&o)
	ud := L.NewUserData()
	ud.Value = &o
	L.SetField(L.Get(lua.RegistryIndex), registryKey, ud)

	openLibs(L, &o)
	installLimits(L, &o)
	installNilErrors(L)

	L.PreloadModule("json", openJSON)
	L.PreloadModule("csv", openCSV(&o))
	L.PreloadModule("template", openTemplate(&o))
	L.PreloadModule("log", openLog(&o))
	L.PreloadModule("fs", openFS(&o))
	L.PreloadModule("time", openTime(&o))
	L.PreloadModule("env", openEnv(&o))
	L.PreloadModule("http", openHTTP(&o))
	L.PreloadModule("chart", openChart(&o))
	L.PreloadModule("xlsx", openXLSX(&o))

	// mailbot modules: smtp, mail
	L.PreloadModule("smtp", NewSMTPModule(o.SMTP))
	mailOpts := MailOptions{BaseDir: o.BaseDir, Now: o.Now, Outbox: o.Outbox, DefaultAccount: o.SMTP.DefaultAccount,
		ReadFile: o.files.readFile}
	if o.SMTP.Accounts != nil {
		mailOpts.Accounts = make(map[string]bool, len(o.SMTP.Accounts))
		for name := range o.SMTP.Accounts {
			mailOpts.Accounts[name] = true
		}
	}
	L.PreloadModule("mail", NewMailModule(mailOpts))
	L.PreloadModule("sql", openSQL(&o))

	names := make([]string, 0, len(o.Modules))
	for name := range o.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		L.PreloadModule(name, o.Modules[name])
	}
	return L
}

// stateOptions returns the Options NewState stored in L, or nil when L was not
// built by NewState.
func stateOptions(L *lua.LState) *Options {
	ud, ok := L.GetField(L.Get(lua.RegistryIndex), registryKey).(*lua.LUserData)
	if !ok {
		return nil
	}
	o, _ := ud.Value.(*Options)
	return o
}

// ResolvePath resolves path the way the fs module does: absolute paths are
// returned cleaned, relative ones are joined to the state's Options.BaseDir.
// For a state not built by NewState, relative paths stay relative to the
// process working directory.
func ResolvePath(L *lua.LState, path string) string {
	base := ""
	if o := stateOptions(L); o != nil {
		base = o.BaseDir
	}
	return resolvePath(base, path)
}

// resolvePath joins a relative path to base; see ResolvePath.
func resolvePath(base, path string) string {
	if filepath.IsAbs(path) || base == "" {
		return filepath.Clean(path)
	}
	return filepath.Join(base, path)
}
