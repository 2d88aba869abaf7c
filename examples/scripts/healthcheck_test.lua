-- Tests of healthcheck.lua; run them with
--   mailbot test -c examples/mailbot.yaml
local t = require("testing")
local hc = t.load("healthcheck.lua")

t.test("a fresh heartbeat is quiet", function()
  t.fs.write("../var/heartbeat", "")
  hc.fire("check")
  t.eq(#t.sent(), 0)
  t.eq(hc.state().status, "up")
end)

t.test("a stale heartbeat alerts once, and recovery once", function()
  t.fs.write("../var/heartbeat", "")
  hc.fire("check")
  t.clock.advance("1h")                       -- the heartbeat is now an hour old
  hc.fire("check")
  hc.fire("check")
  local sent = t.sent()
  t.eq(#sent, 1)
  t.match(sent[1].subject, "health DOWN: heartbeat is %d+ seconds old")
  t.fs.write("../var/heartbeat", "")          -- touched again: its mtime is the fake clock's now
  hc.fire("check")
  t.eq(#t.sent(), 2)
  t.match(t.sent()[2].subject, "health UP")
end)

t.test("says hello at start", function()
  t.clock.set("2026-12-07T09:30:00Z")
  hc.fire("#1")                               -- the on_start registration
  local sent = t.sent()
  t.eq(sent[1].subject, "[mailbot] started")
  t.match(sent[1].text, "mailbot started at 2026%-12%-07")
  t.match(sent[2].subject, "health DOWN: heartbeat file")   -- no heartbeat yet
end)
