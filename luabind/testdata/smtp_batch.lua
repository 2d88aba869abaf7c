-- c:send_batch against the real in-process SMTP server (go-smtp, which
-- offers CHUNKING and PIPELINING). The Go test checks what arrived.
local smtp = require("smtp")
local mail = require("mail")

local function connect()
  local c = smtp.connect{ account = "dev" }
  c:login()
  return c
end

function TestBatchMixedItems(t)
  local c = connect()
  local m = mail.message{ from = "alice@example.org", to = "bob@example.org", subject = "batch message", text = "from a mail.message" }
  local res = c:send_batch({
    { from = "alice@example.org", to = "bob@example.org", msg = "Subject: batch 1\r\n\r\none\r\n" },
    { from = "alice@example.org", to = { "nobody@example.org" }, msg = "Subject: batch 2\r\n\r\ntwo\r\n" },
    m,
    { from = "alice@example.org", to = { "carol@example.org", "temp@example.org" }, msg = "Subject: batch 4\r\n\r\nfour\r\n" },
    { from = 42, to = "bob@example.org", msg = "x" },
    { from = "alice@example.org", to = "bob@example.org", msg = "Subject: batch 6\r\n\r\nsix\r\n", mail_options = { "BODY=8BITMIME" } },
    "not an item",
    { from = "alice@example.org", to = "bob@example.org", mgs = "typo" },
    { from = "blocked@example.org", to = "bob@example.org", msg = "Subject: batch 9\r\n\r\nnine\r\n" },
    { to = "ops@example.org", msg = m },
  })
  t:eq(#res, 10, "one result per item")
  t:eq(res[1].ok, true, "plain item")
  t:eq(next(res[1].refused), nil, "nobody refused")
  t:eq(res[2].ok, false, "all recipients refused")
  t:eq(res[2].error.kind, "SMTPRecipientsRefused", "kind of a refused item")
  t:eq(res[2].error.recipients["nobody@example.org"].code, 550, "refusal detail")
  t:eq(res[3].ok, true, "a mail.message item")
  t:eq(res[4].ok, true, "partial refusal still sends")
  t:eq(res[4].refused["temp@example.org"].code, 450, "the refused one is listed")
  t:eq(res[5].ok, false, "a bad from")
  t:eq(res[5].error.kind, "ValueError", "a bad item is a ValueError")
  t:ok(tostring(res[5].error):match("item 5"), "the error names the item: " .. tostring(res[5].error))
  t:eq(res[6].ok, true, "item options")
  t:eq(res[7].error.kind, "ValueError", "not a table")
  t:ok(tostring(res[8].error):match("mgs"), "an unknown field is named")
  t:eq(res[9].error.kind, "SMTPSenderRefused", "sender refused")
  t:eq(res[10].ok, true, "a mail.message as msg, from taken from it")
  c:quit()
end

function TestBatchWindowAndChunking(t)
  local c = connect()
  local items = {}
  for i = 1, 40 do
    items[i] = { from = "alice@example.org", to = "window@example.org", msg = "Subject: window " .. i .. "\r\n\r\nbody\r\n" }
  end
  for _, opts in ipairs({ { window = 1 }, { window = 3 }, { chunking = false }, {} }) do
    local res = c:send_batch(items, opts)
    for i, r in ipairs(res) do
      t:eq(r.ok, true, "item " .. i)
    end
  end
  t:eq(#c:send_batch({}), 0, "an empty list")
  local ok, err = pcall(c.send_batch, c, items, { window = 0 })
  t:eq(ok, false, "window 0 is refused")
  ok, err = pcall(c.send_batch, c, items, { windw = 2 })
  t:ok(not ok and tostring(err):match("windw"), "an unknown option is refused")
  -- sendmail's chunking option
  c:sendmail("alice@example.org", "window@example.org", "Subject: data path\r\n\r\n.dot\r\n", { chunking = false })
  c:quit()
end
