-- One workload of the MPI benchmark for concurrent.futures.mpi, rank 0 of
-- mpiexec -n 3 lua5.4 -l concurrent.futures.mpi ours.lua w1|w2|w3|w4:
-- prints "key value" lines (spec/bench/mpi.lua runs it).
local mpi = require "concurrent.futures.mpi"
local now = require("concurrent.core").now
local which = arg[1]

local function inc(x) return x + 1 end

local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end

local ex <close> = mpi.MPIPoolExecutor(2)
for i = 1, 200 do ex:submit(inc, i):result() end  -- both ranks started

if which == "w1" then
  local N = 20000
  local t0 = now()
  local fs = {}
  for i = 1, N do fs[i] = ex:submit(inc, i) end
  local sum = 0
  for i = 1, N do sum = sum + fs[i]:result() end
  local dt = now() - t0
  assert(sum == N * (N + 1) // 2 + N)
  print("tasks_per_s", N / dt)
elseif which == "w2" then
  local N = 2000
  local lat = {}
  for i = 1, N do
    local t0 = now()
    local v = ex:submit(inc, i):result()
    lat[i] = now() - t0
    assert(v == i + 1)
  end
  table.sort(lat)
  print("median_us", lat[N // 2] * 1e6)
  print("p99_us", lat[math.floor(N * 0.99)] * 1e6)
elseif which == "w3" then
  local t0 = now()
  local fs = {}
  for i = 1, 8 do fs[i] = ex:submit(fib, 27) end
  for i = 1, 8 do assert(fs[i]:result() == 196418) end
  print("seconds", now() - t0)
elseif which == "w4" then
  local N, M = 2000, 1000
  local xs = {}
  for i = 1, M do xs[i] = i * 0.5 end
  local function scale(a)
    local out = {}
    for i = 1, #a do out[i] = a[i] * 2.0 end
    return out
  end
  local t0 = now()
  local fs = {}
  for i = 1, N do fs[i] = ex:submit(scale, xs) end
  for i = 1, N do assert(fs[i]:result()[M] == M * 1.0) end
  local dt = now() - t0
  print("mb_per_s", N * M * 8 * 2 / dt / 1e6)  -- floats in and out
end
