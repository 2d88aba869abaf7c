local env = require("env")

function TestGetAndRequire(t)
  t:eq(env.get("REPORT_TO"), "ops@example.org")
  t:eq(env.require("REPORT_TO"), "ops@example.org")
  t:eq(env.get("REPORT_CC", "nobody@example.org"), "nobody@example.org")
end

function TestRequireMissingRaises(t)
  local ok, err = pcall(env.require, "SMTP_PASSWORD")
  t:eq(ok, false)
  t:ok(tostring(err):find("environment variable SMTP_PASSWORD is not set", 1, true), tostring(err))
end
