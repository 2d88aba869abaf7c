-- Error kinds that need a misbehaving server (globals set per test by Go).
local smtp = require("smtp")

local function kind_of(f)
  local ok, err = pcall(f)
  if ok then return nil end
  if type(err) ~= "table" then return "string: " .. tostring(err) end
  return err.kind, err
end

function TestHeloError(t)
  local k, err = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = HELO_PORT, tls = "none" }
    c:ehlo_or_helo_if_needed()
  end)
  t:eq(k, "SMTPHeloError", "EHLO and HELO refused")
  t:eq(err.code, 501, "code")
end

function TestServerDisconnected(t)
  local k = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = DISCONNECT_PORT, tls = "none" }
    c:noop()
  end)
  t:eq(k, "SMTPServerDisconnected", "server hung up")
end

function TestTimeout(t)
  local k = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = HANG_PORT, tls = "none", timeout = 0.2 }
    c:noop()
  end)
  t:eq(k, "timeout", "server never answers")
end

function TestResponseException(t)
  local k, err = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = STARTTLS_REFUSED_PORT, tls = "none" }
    c:starttls()
  end)
  t:eq(k, "SMTPResponseException", "STARTTLS refused with 454")
  t:eq(err.code, 454, "code")
  t:eq(err.temporary, true, "4xx is temporary")
end
