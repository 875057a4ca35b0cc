-- map.lua: a process pool maps a function over many inputs, a chunk of
-- them per task (one frame each way per chunk), in input order. Each
-- worker is a forked process with a fresh Lua state.
local cf = require "concurrent.futures"

local function collatz_steps(n)
  local steps = 0
  while n ~= 1 do
    n = n % 2 == 0 and n // 2 or 3 * n + 1
    steps = steps + 1
  end
  return steps
end

local ex <close> = cf.ProcessPoolExecutor(2)

local inputs = {}
for i = 1, 1000 do inputs[i] = i end

local best, at = 0, 0
for i, steps in ex:map { collatz_steps, inputs, chunksize = 100 } do
  if steps > best then best, at = steps, i end
end
print(("longest Collatz chain below 1001: %d steps, from %d"):format(best, at))

-- A task's error crosses back with its value and traceback.
local f = ex:submit(function() error({ reason = "bad input" }) end)
print("error from a worker process:", f:exception().reason)
