-- Builds the daily report message of the mail module's contract. The Go test
-- provides out/report.csv and chart.png under MailOptions.BaseDir and decodes
-- the returned text.
local mail = require("mail")

local m = mail.message{
  from = "日报机器人 <reports@example.com>",
  to = { "a@example.com", "Bob Smith <bob@example.com>" },
  cc = "ops@example.com",
  bcc = { "audit@example.com" },
  reply_to = nil,
  subject = "日报 2026-11-22",
  text = "各位好：\n今日共处理邮件 1024 封。\n",
  html = '<p>各位好：</p><img src="cid:chart">',
  attachments = {
    { path = "out/report.csv" },
    { filename = "note.txt", content = "remember\0the\255bytes", content_type = "text/plain" },
  },
  inline = { { path = "chart.png", cid = "chart" } },
  headers = { ["X-Report"] = "daily", ["X-Tag"] = { "one", "two" } },
}
m:attach{ filename = "日报.txt", content = "第二个附件" }

return m:as_string(), m:as_string(), m:recipients(), m:envelope_from(), tostring(m)
