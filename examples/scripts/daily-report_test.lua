-- Tests of daily-report.lua; run them with
--   mailbot test -c examples/mailbot.yaml
local t = require("testing")
local report = t.load("daily-report.lua")   -- its triggers are captured, none runs

local CSV = "service,requests,errors,p95_ms\napi,100,2,80\nsearch,50,0,40\n"

t.test("mails the report with the CSV attached", function()
  t.clock.set("2026-12-07T08:00:00+01:00")   -- a Monday
  t.fs.write("../data/report.csv", CSV)       -- the path the script reads, in a private folder
  report.fire("daily")
  local sent = t.sent()
  t.eq(#sent, 1)
  local m = sent[1]
  t.eq(m.via, "mail.send")
  t.eq(m.subject, "Service report 2026-12-07")
  t.eq(m.to, { "team@localhost" })
  t.match(m.text, "Total: 150 requests, 2 errors%.")
  t.match(m.html, "<td>search</td>")
  t.eq(m.attachments[1].filename, "report.csv")
  t.eq(m.attachments[1].data, CSV)
  t.eq(m.key, "daily-report-2026-12-07")
  t.eq(report.state().last_report, "2026-12-07")
end)

t.test("a second run on the same day sends nothing more", function()
  t.clock.set("2026-12-07T08:00:00+01:00")
  t.fs.write("../data/report.csv", CSV)
  report.fire("daily")
  report.fire("#1")                           -- the same trigger, by registration order
  t.eq(#t.sent(), 1)
  t.clock.advance("24h")
  report.fire("daily")
  t.eq(#t.sent(), 2)
  t.eq(t.sent()[2].subject, "Service report 2026-12-08")
end)

t.test("is scheduled on weekdays at 08:00", function()
  local tr = report.triggers()
  t.eq(#tr, 1)
  t.eq(tr[1].id, "daily-report.lua#daily")
  t.eq(tr[1].kind, "cron")
  t.eq(tr[1].spec, "0 8 * * 1-5")
end)

t.test("fails when the CSV is missing", function()
  -- every test starts with a fresh private folder: no report.csv here
  t.error(function() report.fire("daily") end, "report%.csv")
  t.eq(#t.sent(), 0)
end)
