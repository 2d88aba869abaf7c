-- smtp-raw.lua: one SMTP conversation step by step, the way Python's
-- smtplib spells it: connect, EHLO, STARTTLS, EHLO again, AUTH, a raw
-- VRFY, the message, QUIT. debug = true logs every line of the transcript
-- (AUTH payloads redacted). Useful to see what a server does.
--
--   mailbot exec -c examples/mailbot.yaml examples/scripts/smtp-raw.lua [recipient]
--
-- It uses the default account of the config (the embedded dev server in
-- examples/mailbot.yaml, which exec starts in-process).

-- This is a tool for "mailbot exec" (which sets the global arg); when
-- "mailbot run" loads it with the other scripts it does nothing.
if not arg then
  return
end

local smtp = require("smtp")
local mail = require("mail")
local log  = require("log")

local FROM = "mailbot@localhost"
local TO   = arg[1] or "ops@localhost"

local c = smtp.new{ debug = true }       -- the default account, not yet connected
local code, text = c:connect()           -- TCP and the greeting, no TLS yet
log.info("connected", { code = code, greeting = text })

c:ehlo()
log.info("offered before TLS", { starttls = c:has_extn("STARTTLS") })
c:starttls()                             -- verifies the certificate (the dev server's is trusted)
c:ehlo()                                 -- extensions must be asked again after STARTTLS
local tls = c:tls_info()
log.info("encrypted", { version = tls.version, cipher = tls.cipher })

c:login()                                -- the account's user and password
code, text = c:docmd("VRFY", TO)         -- docmd never raises on a reply code
log.info("VRFY", { code = code, text = text })

local msg = mail.message{
  from = FROM, to = { TO },
  subject = "smtp-raw: step by step",
  text = "Sent by examples/scripts/smtp-raw.lua, one command at a time.\n",
}
local refused = c:sendmail(FROM, { TO }, msg)
for addr, why in pairs(refused) do
  log.warn("refused", { to = addr, code = why.code })
end
c:quit()
