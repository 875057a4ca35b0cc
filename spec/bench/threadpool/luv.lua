-- One workload of the thread-pool benchmark, for luv's work queue
-- (run with UV_THREADPOOL_SIZE=2, or the number of workers). usage:
-- lua5.4 luv.lua w1|w2|w4|w4drop. cpu_us_per_task: as ours.lua's (os.clock: the
-- whole process, every thread, user + system).
local uv = require "luv"
local which = arg[1]
local now = function() return uv.hrtime() / 1e9 end
local clock = os.clock

local measure = dofile(arg[0]:gsub("[^/]*$", "") .. "measure.lua")
local cpu, minflt = measure.cpu, measure.minflt

if which == "w1" then
  local N = 100000
  local sum, count = 0, 0
  local work = uv.new_work(function(x) return x + 1 end,
    function(r) sum = sum + r count = count + 1 end)
  local t0, c0 = now(), clock()
  for i = 1, N do work:queue(i) end
  uv.run()
  local dt = now() - t0
  cpu(c0, N)
  assert(count == N and sum == N * (N + 1) // 2 + N)
  print("tasks_per_s", N / dt)
elseif which == "w2" then
  local N = 10000
  local got
  local work = uv.new_work(function(x) return x + 1 end, function(r) got = r end)
  for i = 1, 200 do work:queue(i) uv.run() end
  local lat = {}
  local c0 = clock()
  for i = 1, N do
    local t0 = now()
    got = nil
    work:queue(i)
    uv.run()
    lat[i] = now() - t0
    assert(got == i + 1)
  end
  cpu(c0, N)
  table.sort(lat)
  print("median_us", lat[N // 2] * 1e6)
  print("p99_us", lat[math.floor(N * 0.99)] * 1e6)
elseif which == "w4" or which == "w4drop" then
  -- (luv keeps no result: w4drop is w4)
  -- luv passes only scalars and strings: the array is packed to a string
  local N, M = 2000, 1000
  local xs = {}
  for i = 1, M do xs[i] = i * 0.5 end
  local fmt = string.rep("d", M)
  local count = 0
  local work = uv.new_work(function(s, m)
    local f = string.rep("d", m)
    local a = { string.unpack(f, s) }
    for i = 1, m do a[i] = a[i] * 2.0 end
    return string.pack(f, table.unpack(a, 1, m))
  end, function(r)
    local last = string.unpack("d", r, #r - 7)
    assert(last == M * 1.0)
    count = count + 1
  end)
  local t0, c0, f0 = now(), clock(), minflt()
  for _ = 1, N do work:queue(string.pack(fmt, table.unpack(xs)), M) end
  uv.run()
  local dt = now() - t0
  cpu(c0, N)
  print("faults_per_task", (minflt() - f0) / N)
  assert(count == N)
  print("mb_per_s", N * M * 8 * 2 / dt / 1e6)
end
