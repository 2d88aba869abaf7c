local time = require("time")

function TestYesterdaysReportName(t)
  local now = time.now()
  local yesterday = time.add(now, "-1d")
  t:eq(time.format(yesterday, "report-%Y%m%d.csv", "Asia/Shanghai"), "report-20240309.csv")
end

function TestParseFormatRoundTrip(t)
  local s = "2024-12-31 23:59:59"
  local ts = time.parse(s, "%Y-%m-%d %H:%M:%S", "Europe/Berlin")
  t:eq(time.format(ts, "%Y-%m-%d %H:%M:%S", "Europe/Berlin"), s)
  t:eq(time.format(ts, "%H:%M", "UTC"), "22:59")
end

function TestNumbersCompare(t)
  local a = time.parse("2024-01-01", "DateOnly")
  local b = time.parse("2024-01-02", "DateOnly")
  t:eq(b - a, time.duration("24h"))
  t:ok(a < b)
end
