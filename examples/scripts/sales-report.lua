-- sales-report.lua: the weekly sales report, straight from the database.
--
-- Queries the "sales" database (databases.sales in mailbot.yaml: an SQLite
-- file that mailbot creates from examples/data/sales.sql on first use), draws
-- the weekly revenue per region as a bar chart shown inline in the HTML part,
-- and attaches the figures as CSV and as an Excel workbook. It runs on
-- weekdays at 08:00 and once when mailbot starts, so the quickstart shows it
-- within seconds; the outbox key makes it one report per day, however often
-- mailbot restarts.
--
-- Send one now with
--   mailbot exec -c examples/mailbot.yaml --deliver examples/scripts/sales-report.lua

local sql      = require("sql")
local chart    = require("chart")
local xlsx     = require("xlsx")
local csv      = require("csv")
local mail     = require("mail")
local template = require("template")
local log      = require("log")
local time     = require("time")

local FROM  = "Reports <mailbot@localhost>"
local TO    = { "sales-team@localhost" }
local WEEKS = 4

local HTML = [[
<html><body style="font-family: sans-serif">
<h2>Sales, the {{.weeks}} weeks to {{.last}}</h2>
<p><img src="cid:revenue-chart" alt="Weekly revenue per region" width="800" height="400"></p>
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>Region</th><th>Manager</th><th>Units</th><th>Revenue (EUR)</th></tr>
{{range .regions}}<tr><td>{{.name}}</td><td>{{.manager}}</td><td align="right">{{.units}}</td><td align="right">{{.revenue}}</td></tr>
{{end}}<tr><th colspan="2">Total</th><th align="right">{{.units}}</th><th align="right">{{.revenue}}</th></tr>
</table>
<p>The daily figures are attached as CSV and as an Excel workbook.</p>
</body></html>
]]

local TEXT = [[
Sales, the {{.weeks}} weeks to {{.last}}

{{range .regions}}{{printf "%-8s" .name}} {{printf "%7d" .units}} units  {{printf "%12s" .revenue}} EUR
{{end}}
Total    {{printf "%7d" .units}} units  {{printf "%12s" .revenue}} EUR

The chart is in the HTML version; the daily figures are attached.
]]

-- money formats 1234567.8 as "1,234,567.80".
local function money(v)
  local s = string.format("%.2f", v)
  local int, frac = s:match("^(%d+)(%.%d+)$")
  int = int:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
  return int .. frac
end

local function send_report()
  local db = sql.open("sales")
  -- The report covers the latest weeks in the data, so the example works
  -- whatever today's date is.
  local last = db:query_one("SELECT max(day) AS day FROM sales").day
  if last == sql.null then
    log.warn("no sales data yet; no report")
    return
  end
  local first = db:query_one("SELECT date(?, ?) AS day", last, string.format("-%d days", WEEKS * 7 - 1)).day

  -- Weekly revenue per region: the chart.
  local weekly = db:query([[
    SELECT r.name AS region, (julianday(s.day) - julianday(?)) / 7 AS week,
           SUM(s.revenue) AS revenue
    FROM sales s JOIN regions r ON r.id = s.region
    WHERE s.day BETWEEN ? AND ?
    GROUP BY r.name, CAST((julianday(s.day) - julianday(?)) / 7 AS INTEGER)
    ORDER BY r.name, week]], first, first, last, first)
  local labels, series, by_region = {}, {}, {}
  for w = 1, WEEKS do
    labels[w] = "Week of " .. db:query_one("SELECT strftime('%d %m', date(?, ?)) AS d",
      first, string.format("+%d days", (w - 1) * 7)).d:gsub(" ", ".")
  end
  for _, row in ipairs(weekly) do
    local s = by_region[row.region]
    if not s then
      s = { name = row.region, values = {} }
      by_region[row.region] = s
      series[#series + 1] = s
    end
    s.values[math.floor(row.week) + 1] = math.floor(row.revenue + 0.5)
  end
  for _, s in ipairs(series) do
    for w = 1, WEEKS do s.values[w] = s.values[w] or 0 end
  end
  local png = chart.bar{
    title = "Weekly revenue per region (EUR)",
    x = labels, series = series, width = 800, height = 400,
  }

  -- Totals per region: the table.
  local regions = db:query([[
    SELECT r.name AS name, r.manager AS manager,
           SUM(s.units) AS units, SUM(s.revenue) AS revenue
    FROM sales s JOIN regions r ON r.id = s.region
    WHERE s.day BETWEEN ? AND ?
    GROUP BY r.name, r.manager ORDER BY revenue DESC]], first, last)
  local data = { weeks = WEEKS, first = first, last = last, regions = {}, units = 0, revenue = 0 }
  for i, r in ipairs(regions) do
    data.units = data.units + r.units
    data.revenue = data.revenue + r.revenue
    data.regions[i] = { name = r.name, units = r.units, revenue = money(r.revenue),
      manager = r.manager == sql.null and "(vacant)" or r.manager }
  end
  data.revenue = money(data.revenue)

  -- The daily figures: CSV and a workbook with a styled header row.
  local daily = db:query([[
    SELECT day, region, product, units, revenue FROM sales
    WHERE day BETWEEN ? AND ? ORDER BY day, region, product]], first, last)
  local columns = { "day", "region", "product", "units", "revenue" }
  local book = xlsx.new()
  local sheet = book:sheet("Daily sales")
  sheet:header(columns)
  local lines = { columns }
  for i, r in ipairs(daily) do
    local row = { r.day, r.region, r.product, r.units, r.revenue }
    sheet:append(row)
    lines[i + 1] = row
  end

  local m = mail.message{
    from = FROM, to = TO,
    subject = string.format("Sales report: %s to %s", first, last),
    text = template.render(TEXT, data, { strict = true, name = "sales.txt" }),
    html = template.render(HTML, data, { html = true, strict = true, name = "sales.html" }),
    inline = { { content = png, cid = "revenue-chart", filename = "revenue.png", content_type = "image/png" } },
    attachments = {
      { content = csv.encode(lines), filename = "sales-" .. last .. ".csv", content_type = "text/csv" },
      { content = book:bytes(), filename = "sales-" .. last .. ".xlsx",
        content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" },
    },
  }
  local today = time.format(time.now(), "%Y-%m-%d")
  local id, duplicate = mail.send(m, { key = "sales-report-" .. today })
  if duplicate then
    log.info("sales report already queued today", { date = today, id = id })
    return
  end
  log.info("sales report queued", { id = id, from = first, to = last, rows = #daily, png_bytes = #png })
end

mailbot.cron("0 8 * * 1-5", send_report, { name = "weekday" })
mailbot.on_start(send_report, { name = "start" })

-- Under "mailbot exec", send the report right away.
if arg then
  send_report()
end
