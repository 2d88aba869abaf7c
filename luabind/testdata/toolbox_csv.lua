local csv = require("csv")

function TestParseLists(t)
  local rows, header = csv.parse("a,b\n1,2\n")
  t:eq(rows, {{"a", "b"}, {"1", "2"}})
  t:eq(header, nil)
end

function TestParseHeaderAndTrim(t)
  local rows, header = csv.parse("name , count\n disk , 3 \n", {header = true, trim = true})
  t:eq(header, {"name", "count"})
  t:eq(rows, {{name = "disk", count = "3"}})
end

function TestParseQuotedMultiline(t)
  local rows = csv.parse('id,text\n1,"two\nlines"\n', {header = true})
  t:eq(rows[1].text, "two\nlines")
end

function TestErrorCarriesLine(t)
  local ok, err = pcall(csv.parse, "a,b\n1,2\n3,4,5\n")
  t:eq(ok, false)
  t:ok(tostring(err):find("line 3", 1, true), tostring(err))
end

function TestEncodeRejectsTables(t)
  local ok, err = pcall(csv.encode, {{"a", {"nested"}}})
  t:eq(ok, false)
  t:ok(tostring(err):find("row 1, column 2: cannot encode table", 1, true), tostring(err))
end
