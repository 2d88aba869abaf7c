-- Tests of sales-report.lua; run them with
--   mailbot test -c examples/mailbot.yaml
-- The "sales" database is built afresh from examples/data/sales.sql for
-- every run of the tests (its seed), so the figures below are fixed.
local t = require("testing")
local report = t.load("sales-report.lua")

t.test("mails the report: chart inline, CSV and XLSX attached", function()
  t.clock.set("2026-12-07T08:00:00+01:00")   -- a Monday
  report.fire("weekday")
  local sent = t.sent()
  t.eq(#sent, 1)
  local m = sent[1]
  t.eq(m.via, "mail.send")
  t.eq(m.subject, "Sales report: 2026-11-09 to 2026-12-06")
  t.eq(m.to, { "sales-team@localhost" })
  t.eq(m.key, "sales-report-2026-12-07")
  t.match(m.text, "Total +5151 units +159,665.90 EUR")
  t.match(m.html, '<img src="cid:revenue%-chart"')
  t.match(m.html, "<td>West</td><td>%(vacant%)</td>")   -- a NULL manager

  t.eq(#m.attachments, 3)
  local png, csvfile, book = m.attachments[1], m.attachments[2], m.attachments[3]
  t.eq(png.content_type, "image/png")
  t.eq(png.cid, "revenue-chart")
  t.eq(png.inline, true)
  t.eq(png.data:sub(2, 4), "PNG")
  t.eq(csvfile.filename, "sales-2026-12-06.csv")
  t.eq(csvfile.inline, false)
  local lines = 0
  for _ in csvfile.data:gmatch("\n") do lines = lines + 1 end
  t.eq(lines, 1 + 28 * 4 * 3)                  -- header, 28 days x 4 regions x 3 products
  t.match(csvfile.data, "^day,region,product,units,revenue\r?\n2026%-11%-09,east,gadget,")
  t.eq(book.filename, "sales-2026-12-06.xlsx")
  t.eq(book.data:sub(1, 2), "PK")
end)

t.test("one report per day, whether at start or on the schedule", function()
  t.clock.set("2026-12-07T07:59:00+01:00")
  report.fire("start")
  report.fire("weekday")
  t.eq(#t.sent(), 1)
  t.clock.advance("24h")
  report.fire("weekday")
  t.eq(#t.sent(), 2)
end)

t.test("runs at start and on weekdays at 08:00", function()
  local tr = report.triggers()
  t.eq(#tr, 2)
  t.eq(tr[1].id, "sales-report.lua#weekday")
  t.eq(tr[1].spec, "0 8 * * 1-5")
  t.eq(tr[2].id, "sales-report.lua#start")
  t.eq(tr[2].kind, "on_start")
end)
