-- What ours.lua and luv.lua measure alike of their own process, loaded
-- by both with dofile (they run in different interpreters' setups).
local M = {}

-- CPU time per task of the whole process, every thread, user + system
-- (os.clock), since 'c0'.
function M.cpu(c0, n)
  print("cpu_us_per_task", (os.clock() - c0) / n * 1e6)
end

-- The process's minor page faults so far: field 10 of /proc/self/stat,
-- the 8th after the command name (in parentheses, which may hold spaces).
function M.minflt()
  local f = assert(io.open("/proc/self/stat"))
  local rest = f:read("a"):match("%) (.*)")
  f:close()
  local k = 0
  for v in rest:gmatch("%S+") do
    k = k + 1
    if k == 8 then return tonumber(v) end
  end
end

return M
