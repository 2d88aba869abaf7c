local fs = require("fs")

function TestWriteReadStat(t)
  local dir = t:tempdir()
  local p = fs.join(dir, "a.txt")
  fs.write(p, "hello")
  t:eq(fs.read(p), "hello")
  t:eq(fs.exists(p), true)
  local st = fs.stat(p)
  t:eq(st.size, 5)
  t:eq(st.is_dir, false)
  t:eq(st.mode, "0644")
  t:ok(st.mtime > 1e9, "mtime is unix seconds")
end

function TestStatMissing(t)
  local st, err = fs.stat("does-not-exist")
  t:eq(st, nil)
  t:eq(err, "no such file: does-not-exist")
  t:eq(fs.exists("does-not-exist"), false)
end

function TestListAndGlobSorted(t)
  local dir = t:tempdir()
  for _, name in ipairs({"c.log", "a.log", "b.txt"}) do
    fs.write(fs.join(dir, name), name)
  end
  fs.mkdir(fs.join(dir, "sub", "deeper"))
  t:eq(fs.list(dir), {"a.log", "b.txt", "c.log", "sub"})
  t:eq(fs.glob(fs.join(dir, "*.log")), {fs.join(dir, "a.log"), fs.join(dir, "c.log")})
  t:eq(fs.stat(fs.join(dir, "sub")).is_dir, true)
end

function TestRelativeGlobStaysRelative(t)
  -- The state's BaseDir is a fresh temporary directory.
  fs.mkdir("reports")
  fs.write("reports/1.csv", "x")
  fs.write("reports/2.csv", "y")
  t:eq(fs.glob("reports/*.csv"), {"reports/1.csv", "reports/2.csv"})
end

function TestMoveAndRemove(t)
  local dir = t:tempdir()
  local a, b = fs.join(dir, "a"), fs.join(dir, "b")
  fs.write(a, "x")
  fs.move(a, b)
  t:eq(fs.exists(a), false)
  t:eq(fs.read(b), "x")
  fs.remove(b)
  t:eq(fs.exists(b), false)
  fs.mkdir(fs.join(dir, "tree", "leaf"))
  fs.remove(fs.join(dir, "tree"), {recursive = true})
  t:eq(fs.exists(fs.join(dir, "tree")), false)
end

function TestPathHelpers(t)
  t:eq(fs.basename("/var/log/mail.log"), "mail.log")
  t:eq(fs.dirname("/var/log/mail.log"), "/var/log")
  t:eq(fs.join("a", "b", "../c"), "a/c")
end
