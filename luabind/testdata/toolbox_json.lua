local json = require("json")

function TestDecodeValues(t)
  local v = json.decode('{"name":"nightly","count":3,"ok":true,"tags":["a","b"],"none":null}')
  t:eq(v.name, "nightly")
  t:eq(v.count, 3)
  t:eq(v.ok, true)
  t:eq(v.tags, {"a", "b"})
  t:eq(v.none, json.null, "null decodes to json.null")
  t:eq(tostring(json.null), "json.null")
end

function TestMarkersReturnTheTable(t)
  local list = {}
  t:eq(json.array(list), list)
  t:eq(json.encode(json.object({})), "{}")
end

function TestMarkerRefusesForeignMetatable(t)
  local ok, err = pcall(json.array, setmetatable({}, {}))
  t:eq(ok, false)
  t:ok(tostring(err):find("already has a metatable", 1, true), tostring(err))
end

function TestEncodeReport(t)
  local report = {host = "mx1", checks = {{name = "disk", ok = true}, {name = "queue", ok = false}}}
  t:eq(json.encode(report),
    '{"checks":[{"name":"disk","ok":true},{"name":"queue","ok":false}],"host":"mx1"}')
end

function TestDecodeErrorIsCatchable(t)
  local ok, err = pcall(json.decode, "{nope}")
  t:eq(ok, false)
  t:ok(tostring(err):find("json.decode: line 1, column 2", 1, true), tostring(err))
end
