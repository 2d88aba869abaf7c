-- daily-report.lua: every weekday at 08:00, read a CSV, render it as an
-- HTML table plus a plain-text version, attach the CSV and mail it.
-- The report must arrive even if the relay is down at 08:00, so it goes
-- through the durable outbox (mail.send), which retries for days; the key
-- makes a second run on the same day a no-op instead of a second report.
-- The last report date is remembered in mailbot.state; with catchup = true
-- a report missed while mailbot was down is sent once at the next start.
--
-- Send one now with
--   mailbot exec -c examples/mailbot.yaml --deliver examples/scripts/daily-report.lua

local mail     = require("mail")
local csv      = require("csv")
local template = require("template")
local log      = require("log")
local time     = require("time")

local FROM   = "Reports <mailbot@localhost>"
local TO     = { "team@localhost" }
local REPORT = "../data/report.csv"  -- relative to the scripts folder

-- Go templates (see the template module). html = true escapes every value.
local HTML = [[
<html><body>
<h2>Service report {{.date}}</h2>
<table border="1" cellpadding="4" cellspacing="0">
<tr>{{range .header}}<th>{{.}}</th>{{end}}</tr>
{{range $row := .rows}}<tr>{{range $.header}}<td>{{index $row .}}</td>{{end}}</tr>
{{end}}</table>
<p>{{.total_requests}} requests, {{.total_errors}} errors.</p>
</body></html>
]]

local TEXT = [[
Service report {{.date}}

{{range .rows}}{{printf "%-10s" .service}} {{printf "%8s" .requests}} requests, {{.errors}} errors, p95 {{.p95_ms}} ms
{{end}}
Total: {{.total_requests}} requests, {{.total_errors}} errors.
The CSV is attached.
]]

local function send_report()
  local rows, header = csv.read(REPORT, { header = true, trim = true })
  local data = {
    date = time.format(time.now(), "%Y-%m-%d"),
    header = header, rows = rows,
    total_requests = 0, total_errors = 0,
  }
  for _, r in ipairs(rows) do
    data.total_requests = data.total_requests + tonumber(r.requests)
    data.total_errors = data.total_errors + tonumber(r.errors)
  end

  local m = mail.message{
    from = FROM, to = TO,
    subject = "Service report " .. data.date,
    text = template.render(TEXT, data, { strict = true, name = "report.txt" }),
    html = template.render(HTML, data, { html = true, strict = true, name = "report.html" }),
    attachments = { { path = REPORT } },
  }
  local id, duplicate = mail.send(m, { key = "daily-report-" .. data.date })
  if duplicate then
    log.info("daily report already queued today", { date = data.date, id = id })
    return
  end
  log.info("daily report queued", { date = data.date, id = id, rows = #rows, previous = mailbot.state.get("last_report") })
  mailbot.state.set("last_report", data.date)
end

mailbot.cron("0 8 * * 1-5", send_report, { catchup = true, name = "daily" })

-- Under "mailbot exec", send the report right away.
if arg then
  send_report()
end
