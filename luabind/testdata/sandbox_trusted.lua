-- Runs in a trusted state (see state_test.go).

function TestFullStandardLibrary(t)
  t:eq(type(io), "table", "io")
  t:eq(type(os.execute), "function", "os.execute")
  t:eq(type(os.remove), "function", "os.remove")
  t:eq(type(dofile), "function", "dofile")
end

function TestRequireStaysConfined(t)
  local ok, err = pcall(require, "../state")
  t:eq(ok, false)
  t:ok(tostring(err):find("invalid module name", 1, true), tostring(err))
  t:eq(require("sandbox_helper").greet("x"), "hello x")
end
