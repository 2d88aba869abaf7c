-- A module for the require tests: loaded from the scripts dir by name.
local M = {}

function M.greet(name)
  return "hello " .. name
end

return M
