-- Lua-side checks of the mail module: methods, fields and error handling.
-- Run by TestMailLuaAPI with a `t` object (see luatest_test.go).
local mail = require("mail")

local function base()
  return mail.message{ from = "reports@example.com", to = "a@example.com", subject = "s", text = "x" }
end

-- errmsg returns the message of the error raised by fn(...), without the
-- file:line prefix, or nil when fn did not fail.
local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  return (tostring(err):gsub("^[^:]*:%d+: ", ""))
end

function TestHeaders(t)
  local m = base()
  m:set_header("X-Report", "daily")
  m:add_header("X-Tag", "one")
  m:add_header("X-Tag", "two")
  t:eq(m:header("x-report"), "daily")
  t:eq(m:header("X-Tag"), "one")
  t:eq(m:header("X-Missing"), nil)
  m:set_header("Subject", "new subject")
  t:eq(m.subject, "new subject")
  t:eq(m:header("Subject"), "new subject")
  m:set_header("Bcc", "hidden@example.com")
  t:eq(m:recipients(), { "a@example.com", "hidden@example.com" })
end

function TestFields(t)
  local m = mail.message{ from = "R <r@example.com>", to = { "a@example.com", "b@example.com" },
    bcc = "c@example.com", text = "t", html = "<p>h</p>", date = 1795337400, message_id = "<id@example.com>" }
  t:eq(m.from, "R <r@example.com>")
  t:eq(m.to, { "a@example.com", "b@example.com" })
  t:eq(m.bcc, { "c@example.com" })
  t:eq(m.cc, {})
  t:eq(m.text, "t")
  t:eq(m.html, "<p>h</p>")
  t:eq(m.date, 1795337400)
  t:eq(m.message_id, "<id@example.com>")
  t:eq(m.subject, nil)
  t:eq(m:envelope_from(), "r@example.com")
  t:eq(errmsg(function() m.subject = "x" end),
    'mail.message: field "subject" is read-only; use m:set_header or m:attach')
end

function TestStableBytes(t)
  local m = base()
  local first = m:as_string()
  t:eq(m:as_string(), first)
  t:ok(first:find("\r\nMessage%-ID: <[0-9a-f]+@example%.com>\r\n"), "generated Message-ID")
  t:ok(not first:find("[^\r]\n"), "only CRLF line ends")
  -- A change is visible in the next build, which keeps Date and Message-ID.
  m:set_header("X-Late", "yes")
  local second = m:as_string()
  t:ok(second:find("X-Late: yes\r\n", 1, true), "new header written")
  t:eq(second:match("Message%-ID: [^\r]+"), first:match("Message%-ID: [^\r]+"))
end

function TestToString(t)
  local m = base()
  m:attach{ content = "x", filename = "x.txt" }
  t:eq(tostring(m), 'mail.message(subject="s", from="reports@example.com", recipients=1, attachments=1)')
end

function TestAttachInline(t)
  local m = mail.message{ from = "r@example.com", html = '<img src="cid:logo">' }
  m:attach{ content = "\137PNG", filename = "logo.png", cid = "logo" }
  local s = m:as_string()
  t:ok(s:find("multipart/related", 1, true), "inline part makes multipart/related")
  t:ok(s:find("Content-ID: <logo>", 1, true), "Content-ID written")
end

function TestAttachFailureKeepsMessage(t)
  local m = base()
  local before = m:as_string()
  t:eq(errmsg(m.attach, m, { content = "x", content_type = "text/plain\r\nX-Evil: 1" }),
    'mail.message:attach: field "attachments"[1]: content type contains CR/LF (header injection refused)')
  t:eq(m:as_string(), before)
end

function TestMethodErrors(t)
  local m = base()
  t:eq(errmsg(m.set_header, m, "X-A", "v\r\nBcc: victim@example.org"),
    'mail.message:set_header: header "X-A" contains CR/LF (header injection refused)')
  t:eq(errmsg(m.add_header, m, "X A", "v"),
    'mail.message:add_header: header "X A": name contains a character not allowed in header names')
  t:eq(errmsg(m.set_header, m, "Content-Type", "text/html"),
    'mail.message:set_header: header "Content-Type": is written by the message builder and cannot be set')
  t:eq(errmsg(m.set_header, m, "To", "bob"),
    'mail.message:set_header: field "to": invalid address "bob": missing \'@\' or angle-addr')
  local e = errmsg(m.attach, m, { path = "no/such/file.csv" })
  t:ok(e and e:find("^mail%.message:attach: open .*no/such/file%.csv: no such file or directory$"), e)
  t:ok(errmsg(m.as_string, "not a message"):find("mail.message expected", 1, true), "checkMessage argument error")
end
