local template = require("template")

function TestReportBody(t)
  local body = template.render([[
Nightly report for {{.host}}
{{range .checks}}- {{.name}}: {{if .ok}}ok{{else}}FAILED{{end}}
{{end}}]], {host = "mx1", checks = {{name = "disk", ok = true}, {name = "queue", ok = false}}})
  t:eq(body, "Nightly report for mx1\n- disk: ok\n- queue: FAILED\n")
end

function TestHTMLMode(t)
  t:eq(template.render("<td>{{.}}</td>", "a<b", {html = true}), "<td>a&lt;b</td>")
end

function TestErrorsAreCatchable(t)
  local ok, err = pcall(template.render, "{{.x", {})
  t:eq(ok, false)
  t:ok(tostring(err):find("template.render: template: template:1:", 1, true), tostring(err))
end
