-- The seeds' flow and the smtp module's error kinds, against a real SMTP
-- server in-process (globals PORT, IMPLICIT_PORT and CLOSED_PORT come from
-- the Go test).
local smtp = require("smtp")
local mail = require("mail")

function TestSeedsFlow(t)
  -- smtplib style: connect without TLS, then STARTTLS by hand
  local c = smtp.new{ account = "dev" }
  t:eq(c:connect(), 220, "greeting")
  local code, text = c:ehlo()
  t:eq(code, 250, "ehlo")
  t:ok(c:has_extn("starttls"), "STARTTLS offered before TLS")
  t:eq(c:has_extn("auth"), false, "AUTH hidden before TLS")
  code = c:starttls()
  t:eq(code, 220, "starttls")
  t:eq(c:has_extn("auth"), false, "extensions forgotten after STARTTLS")
  code = c:ehlo()
  t:eq(code, 250, "second ehlo")
  t:ok(c:has_extn("AUTH"), "AUTH offered over TLS")
  t:ok(c:tls_info().version:match("^TLS 1%.[23]$"), "TLS version")
  t:eq(c:login("alice", "wonderland"), 235, "login")
  local vcode = c:docmd("VRFY", "alice")
  t:ok(vcode >= 200, "docmd returns a code")
  local refused = c:sendmail("alice@example.org", { "bob@example.org", "carol@example.org" },
    "Subject: seeds\r\n\r\nhello from the seeds' flow\r\n")
  t:eq(next(refused), nil, "nobody refused")
  t:eq(c:quit(), 221, "quit")
end

function TestConnectDefaultsFollowPort(t)
  -- tls defaults to starttls: login works right after connect.
  local c = smtp.connect{ host = "127.0.0.1", port = PORT, account = "dev" }
  t:ok(c:tls_info() ~= nil, "connect with default tls upgraded with STARTTLS")
  t:eq(c:starttls(), 220, "starttls after connect is harmless")
  c:login("alice", "wonderland")
  c:quit()
end

function TestSmtplibStyle(t)
  local c = smtp.new{ account = "dev" }
  local code = c:connect("127.0.0.1", PORT)
  t:eq(code, 220, "greeting")
  c:ehlo_or_helo_if_needed()
  c:starttls()
  c:ehlo()
  c:login("alice", "wonderland", { mechanism = "LOGIN" })
  local m = mail.message{ from = "Alice <alice@example.org>", to = "bob@example.org",
                          bcc = { "hidden@example.org" }, subject = "via send_message", text = "hi" }
  local refused = c:send_message(m)
  t:eq(next(refused), nil, "send_message")
  c:quit()
end

local function kind_of(f)
  local ok, err = pcall(f)
  if ok then return nil end
  if type(err) ~= "table" then return "string: " .. tostring(err) end
  return err.kind, err
end

function TestErrorKinds(t)
  local k, err = kind_of(function() smtp.connect{ host = "127.0.0.1", port = CLOSED_PORT, tls = "none" } end)
  t:eq(k, "SMTPConnectError", "refused connection")
  t:ok(tostring(err):match("^SMTPConnectError: "), "__tostring")
  t:ok(err.where and err.where:match("smtp_flow%.lua:%d+$"), "where points at the script: " .. tostring(err.where))
  local ok2, err2 = pcall(smtp.connect, { host = "127.0.0.1", port = CLOSED_PORT, tls = "none" })
  t:ok(err2.where and err2.where:match("smtp_flow%.lua:%d+$"), "where skips Go frames: " .. tostring(err2.where))

  k, err = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = PORT, account = "dev" }
    c:login("alice", "wrong")
  end)
  t:eq(k, "SMTPAuthenticationError", "wrong password")
  t:eq(err.code, 535, "535")

  k, err = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = PORT, tls = "none" }
    c:login("alice", "wonderland")
  end)
  t:eq(k, "SMTPNotSupportedError", "AUTH before STARTTLS")
  t:ok(err.message:match("STARTTLS"), "message mentions STARTTLS: " .. err.message)

  local function send(from, to)
    local c = smtp.connect{ host = "127.0.0.1", port = PORT, account = "dev" }
    c:login("alice", "wonderland")
    return c:sendmail(from, to, "Subject: x\r\n\r\nx\r\n")
  end
  k, err = kind_of(function() send("blocked@example.org", { "bob@example.org" }) end)
  t:eq(k, "SMTPSenderRefused", "sender refused")
  t:eq(err.code, 553, "553")
  t:eq(err.enhanced, "5.7.1", "enhanced code")
  t:eq(err.sender, "blocked@example.org", "sender")

  k, err = kind_of(function() send("alice@example.org", { "nobody@example.org", "temp@example.org" }) end)
  t:eq(k, "SMTPRecipientsRefused", "all recipients refused")
  t:eq(err.recipients["nobody@example.org"].code, 550, "permanent refusal")
  t:eq(err.recipients["temp@example.org"].code, 450, "temporary refusal")
  t:eq(err.recipients["temp@example.org"].temporary, true, "temporary flag")

  local refused = send("alice@example.org", { "bob@example.org", "nobody@example.org" })
  t:eq(refused["nobody@example.org"].code, 550, "partial refusal returned, not raised")

  k, err = kind_of(function() send("alice@example.org", { "reject-data@example.org" }) end)
  t:eq(k, "SMTPDataError", "data refused")
  t:eq(err.code, 554, "554")

  k = kind_of(function() smtp.connect{ host = "127.0.0.1", port = IMPLICIT_PORT, tls = "implicit" } end)
  t:eq(k, "tls", "untrusted certificate")

  k, err = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = PORT, account = "dev" }
    c:docmd("NOOP\r\nQUIT")
  end)
  t:eq(k, "ValueError", "CR/LF in a command")

  k, err = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = PORT, account = "dev" }
    c:sendmail("alice@example.org> RET=FULL ENVID=x", { "bob@example.org" }, "x")
  end)
  t:eq(k, "ValueError", "parameters smuggled through the sender address")
  k, err = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = PORT, account = "dev" }
    c:mail("alice@example.org")
    c:rcpt("<<bob@example.org>>")
  end)
  t:eq(k, "ValueError", "double brackets in rcpt")

  k, err = kind_of(function()
    local c = smtp.connect{ host = "127.0.0.1", port = PORT, account = "dev" }
    c:sendmail("alice@example.org", { "bob@example.org" }, "x", { mail_options = { "RET=FULL" }, dsn = { envid = "x" } })
  end)
  t:eq(k, nil, "DSN is offered by the dev server")
end
