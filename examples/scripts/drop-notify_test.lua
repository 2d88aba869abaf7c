-- Tests of drop-notify.lua; run them with
--   mailbot test -c examples/mailbot.yaml
local t = require("testing")
local drop = t.load("drop-notify.lua")

t.test("mails a dropped file as an attachment", function()
  t.fs.write("../var/drop/hello.txt", "hello\n")
  drop.fire("drop", { file = "../var/drop/hello.txt" })
  local sent = t.sent()
  t.eq(#sent, 1)
  t.eq(sent[1].via, "smtp")
  t.eq(sent[1].subject, "New file: hello.txt")
  t.eq(sent[1].to[1], "ops@localhost")
  t.match(sent[1].text, "hello%.txt %(6 bytes")
  t.eq(sent[1].attachments[1].filename, "hello.txt")
  t.eq(sent[1].attachments[1].data, "hello\n")
end)

t.test("summarises a large file instead of attaching it", function()
  t.fs.write("../var/drop/big.iso", "x")
  -- event fields given to fire override the ones read from the file
  drop.fire("drop", { file = "../var/drop/big.iso", size = 6 * 1024 * 1024 })
  local m = t.sent()[1]
  t.eq(m.subject, "New large file: big.iso")
  t.match(m.text, "6%.0 MiB")
  t.eq(#m.attachments, 0)
end)

t.test("fails the run when the relay refuses, so the file goes to failed/", function()
  t.fs.write("../var/drop/report.csv", "a,b\n")
  t.smtp.reply("RCPT", "450 4.2.0 try later")
  local err = t.error(function() drop.fire("drop", { file = "../var/drop/report.csv" }) end,
                      "SMTPRecipientsRefused")
  t.eq(err.temporary, true)
  t.eq(#t.sent(), 0)
end)
