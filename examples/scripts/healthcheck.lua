-- healthcheck.lua: say hello when mailbot starts, then watch a heartbeat
-- file and alert only when its state changes (up -> down, down -> up), so
-- a long outage is one mail, not one every five minutes.
--
-- The heartbeat is any file a job touches when it succeeds, e.g. the last
-- line of a backup cron job: `touch /srv/mailbot/var/heartbeat`.
--
-- Under "mailbot run" the checks follow the triggers below. Run once with
--   mailbot exec -c examples/mailbot.yaml examples/scripts/healthcheck.lua

local smtp = require("smtp")
local mail = require("mail")
local log  = require("log")
local fs   = require("fs")
local time = require("time")

local FROM      = "mailbot <mailbot@localhost>"
local TO        = { "ops@localhost" }
local HEARTBEAT = "../var/heartbeat"  -- relative to the scripts folder
local MAX_AGE   = 15 * 60             -- seconds before the heartbeat counts as stale

-- notify sends one short plain-text message with the default account.
local function notify(subject, text)
  local c = smtp.connect()  -- default_account from the config
  c:login()                 -- the account's user and password; never in the script
  c:send_message(mail.message{ from = FROM, to = TO, subject = subject, text = text })
  c:quit()
end

-- status returns "up" or "down" and a human explanation.
local function status()
  local st = fs.stat(HEARTBEAT)
  if not st then
    return "down", "heartbeat file " .. HEARTBEAT .. " does not exist"
  end
  local age = math.floor(time.now() - st.mtime)
  if age > MAX_AGE then
    return "down", string.format("heartbeat is %d seconds old (limit %d)", age, MAX_AGE)
  end
  return "up", string.format("heartbeat is %d seconds old", age)
end

local function check()
  local now, why = status()
  local before = mailbot.state.get("status")
  log.info("health checked", { status = now, previous = before, detail = why })
  -- First observation: only a problem is worth a mail.
  if now == before or (before == nil and now == "up") then
    mailbot.state.set("status", now)
    return
  end
  notify("[mailbot] health " .. string.upper(now) .. ": " .. why,
         "Status changed from " .. tostring(before or "unknown") .. " to " .. now .. ".\n\n" .. why .. "\n")
  mailbot.state.set("status", now)  -- remembered across restarts
end

-- A note at every start, so a fresh setup shows mail within seconds.
mailbot.on_start(function()
  notify("[mailbot] started",
         "mailbot started at " .. time.format(time.now(), "%Y-%m-%d %H:%M:%S") ..
         " and is watching " .. HEARTBEAT .. ".\n")
  check()
end)

mailbot.every("5m", check, { name = "check" })

-- Under "mailbot exec", run the check once right away (arg only exists there).
if arg then
  check()
end
