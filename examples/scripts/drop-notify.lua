-- drop-notify.lua: mail a note for every file dropped into var/drop.
-- Small files travel as attachments; large ones get a summary only.
-- Once the mail is sent the file moves to var/drop/done/; if sending fails
-- it moves to var/drop/failed/ with an .error note beside it.
--
-- Try it while "mailbot run -c examples/mailbot.yaml" is running:
--   echo hello > examples/var/drop/hello.txt
-- or for one file, without the engine:
--   mailbot exec -c examples/mailbot.yaml examples/scripts/drop-notify.lua /path/to/file

local smtp = require("smtp")
local mail = require("mail")
local log  = require("log")
local fs   = require("fs")
local time = require("time")

local FROM         = "mailbot <mailbot@localhost>"
local TO           = { "ops@localhost" }
local ATTACH_LIMIT = 5 * 1024 * 1024  -- bytes; larger files are summarised

-- notify handles one file event: ev.path, ev.name, ev.size, ev.mtime ...
local function notify(ev)
  local when = time.format(ev.mtime, "%Y-%m-%d %H:%M:%S")
  local m
  if ev.size <= ATTACH_LIMIT then
    m = mail.message{
      from = FROM, to = TO,
      subject = "New file: " .. ev.name,
      text = string.format("%s (%d bytes, modified %s) is attached.\n", ev.name, ev.size, when),
      attachments = { { path = ev.path } },
    }
  else
    m = mail.message{
      from = FROM, to = TO,
      subject = "New large file: " .. ev.name,
      text = string.format("%s arrived: %.1f MiB, modified %s.\nIt is too large to attach; find it in %s.\n",
                           ev.name, ev.size / 1048576, when, ev.dir),
    }
  end
  local c = smtp.connect()
  c:login()
  c:send_message(m)
  c:quit()
  log.info("drop notified", { file = ev.name, size = ev.size, attached = ev.size <= ATTACH_LIMIT })
end

mailbot.on_file({
  dir = "../var/drop",   -- relative to the scripts folder; created when missing
  pattern = "*",
  settle = "1s",         -- size and mtime must be still this long: the upload is complete
  after = "move:done",
  name = "drop",         -- the trigger's id is drop-notify.lua#drop
}, notify)

-- Under "mailbot exec": notify about the file named on the command line
-- (an absolute path, or one relative to the scripts folder).
if arg and arg[1] then
  local st = fs.stat(arg[1])
  if not st then
    error("no such file: " .. arg[1])
  end
  notify({ path = arg[1], name = fs.basename(arg[1]), dir = fs.dirname(arg[1]),
           size = st.size, mtime = st.mtime })
end
