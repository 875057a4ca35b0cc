-- The queue workload for concurrent: 100,000 small values from one
-- worker to the main state through a cf.Queue. usage: lua5.4 ours.lua
-- [maxsize] [process] (maxsize 0: unbounded; "process": the worker is
-- a process-pool child, each put a request to the parent)
local cf = require "concurrent.futures"
local clock = require("concurrent.core").now
local N = 100000
local maxsize = tonumber(arg[1]) or 0
local Pool = arg[2] == "process" and cf.ProcessPoolExecutor or cf.ThreadPoolExecutor

local ex = Pool(1)
ex:submit(function() end):result()  -- the worker is up
local q = cf.Queue(maxsize)
local t0 = clock()
local producer = ex:submit(function(out, n)
  for i = 1, n do out:put(i) end
  out:close()
end, q, N)
local count, sum = 0, 0
for v in q:values() do count, sum = count + 1, sum + v end
local dt = clock() - t0
producer:result()
ex:shutdown()
assert(count == N and sum == N * (N + 1) // 2, "lost values")
print("values_per_s", N / dt)
