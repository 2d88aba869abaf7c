// Package luabind exposes mailbot to Lua scripts running on gopher-lua.
//
// NewState builds a ready-to-run *lua.LState: a sandboxed subset of the Lua
// standard library, a require() confined to the scripts directory, and the
// script toolbox modules preloaded for require():
//
//	json      json.encode / json.decode, json.null, json.array, json.object
//	csv       csv.parse / csv.read / csv.encode
//	template  template.render / template.render_file (Go text/template, html/template)
//	log       log.debug / info / warn / error, structured fields, secret redaction
//	fs        files and directories relative to Options.BaseDir; under
//	          strict only inside Options.FSRoots; never secret files
//	time      time.now / format / parse / date / add / duration
//	env       env.get / env.require
//	sql       sql.open(name) of a database in Options.SQL; db:query / query_one / exec
//	http      http.get / post / request: verified TLS, timeouts bounded by
//	          the run, a body limit, Options.HTTP.AllowHosts
//
// Scripts load them explicitly:
//
//	local json = require("json")
//	local log  = require("log")
//	log.info("report ready", { rows = 12 })
//
// # Running scripts
//
// Compile a script once with CompileFile and run the shared
// *lua.FunctionProto in as many states as needed with DoProto. Each run gets
// its own LState (an LState must never be used from two goroutines at once)
// and its own context, set with StartRun before DoProto: when the context
// ends, the VM stops at the next instruction with a Lua error, so a runaway
// `while true do end` cannot hold the host; and a run whose Lua values
// outgrow Options.MemoryLimit is stopped with a {kind = "memory"} error
// (see StartRun and AsMemoryError).
//
//	proto, err := luabind.CompileFile("scripts/nightly.lua")
//	...
//	L := luabind.NewState(luabind.Options{ScriptsDir: "scripts"})
//	defer L.Close()
//	ctx, cancel := context.WithTimeout(ctx, time.Minute)
//	defer cancel()
//	runCtx, stop := luabind.StartRun(ctx, L)
//	err := luabind.DoProto(L, proto)
//	stop()
//	if _, ok := luabind.AsMemoryError(runCtx, err); ok {
//		...
//	}
//	if err != nil {
//		file, line, _ := luabind.ErrorLocation(err)
//		...
//	}
//
// # Errors
//
// Toolbox functions raise Lua errors (catchable with pcall) whose message
// starts with the function name, e.g. "fs.read: open /data/x.csv: no such
// file or directory". Misuse, such as a wrong argument type, raises through
// the usual "bad argument #n" errors.
package luabind
