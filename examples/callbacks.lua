-- callbacks.lua: done-callbacks, as in Python's
--   results = []
--   future.add_done_callback(lambda f: results.append(f.result()))
-- and functools.partial(when_finished, id=1). Callbacks run in this
-- state, at its safe points (result, wait, as_completed, dispatch).
local cf = require "concurrent.futures"

local results = {}
local function when_finished(future, id)
  print(("task %d finished with %s"):format(id, future:result()))
end

do
  local ex <close> = cf.ThreadPoolExecutor(2)
  local fs = {}
  for id = 1, 3 do
    local f = ex:submit(function(k) return k * k end, id)
    f:add_done_callback(function(fut) results[#results + 1] = fut:result() end)
    f:add_done_callback(when_finished, id)   -- bound argument, like partial
    fs[id] = f
  end
  cf.wait(fs)
end

table.sort(results)
print("results: " .. table.concat(results, ", "))

-- cf.partial binds arguments up front and may itself be submitted:
local ex <close> = cf.ThreadPoolExecutor(1)
local add10 = cf.partial(function(a, b) return a + b end, 10)
print("partial in a worker: " .. ex:submit(add10, 5):result())
