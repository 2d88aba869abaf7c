-- Runs in a strict state (see state_test.go) with ScriptsDir = testdata.

function TestDangerousFunctionsAreGone(t)
  t:eq(io, nil, "io library")
  t:eq(debug, nil, "debug library")
  t:eq(dofile, nil, "dofile")
  t:eq(loadfile, nil, "loadfile")
  t:eq(package.loadlib, nil, "package.loadlib")
  for _, name in ipairs({"execute", "exit", "remove", "rename", "tmpname", "setlocale", "setenv"}) do
    t:eq(os[name], nil, "os." .. name)
  end
end

function TestSafeSubsetIsPresent(t)
  for _, name in ipairs({"time", "clock", "date", "difftime", "getenv"}) do
    t:eq(type(os[name]), "function", "os." .. name)
  end
  for _, lib in ipairs({"table", "string", "math", "coroutine", "package"}) do
    t:eq(type(_G[lib]), "table", lib)
  end
  -- load compiles source text only; it stays available.
  local f = loadstring("return 1 + 1")
  t:eq(f(), 2)
end

function TestOsExecuteCallRaises(t)
  local ok, err = pcall(function() os.execute("echo pwned") end)
  t:eq(ok, false)
  t:ok(tostring(err):find("sandbox_strict.lua:%d+:"), "error points at the call: " .. tostring(err))
end

function TestRequireFromScriptsDir(t)
  local helper = require("sandbox_helper")
  t:eq(helper.greet("ops"), "hello ops")
  t:eq(require("sandbox_helper"), helper, "second require returns the cached module")
end

function TestRequireOutsideScriptsDirFails(t)
  for _, name in ipairs({"../state", "/etc/passwd", "a..b", ".hidden", "x/y"}) do
    local ok, err = pcall(require, name)
    t:eq(ok, false, name)
    t:ok(tostring(err):find("invalid module name", 1, true), name .. ": " .. tostring(err))
  end
end

function TestRequireMissingModule(t)
  local ok, err = pcall(require, "no_such_module")
  t:eq(ok, false)
  t:ok(tostring(err):find("module 'no_such_module' not found in scripts dir testdata", 1, true), tostring(err))
end

function TestPackagePathDoesNotWidenSearch(t)
  package.path = "/etc/?;/tmp/?.lua"
  local ok = pcall(require, "passwd")
  t:eq(ok, false)
end

function TestToolboxModulesArePreloaded(t)
  for _, name in ipairs({"json", "csv", "template", "log", "fs", "time", "env"}) do
    t:eq(type(require(name)), "table", name)
  end
end
