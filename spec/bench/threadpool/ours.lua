-- One workload of the pool benchmark, for concurrent.futures.
-- usage: lua5.4 ours.lua w1|w2|w3|w3free|w4|w4drop|mem|pagetouch [process] ; prints "key
-- value" lines. With "process" the pool is a ProcessPoolExecutor.
-- BENCH_WORKERS sets the number of workers (default 2). cpu_us_per_task
-- (thread pools) is the CPU time of the whole process, every thread,
-- user + system (os.clock), over the timed part, per task.
local cf = require "concurrent.futures"
local now = require("concurrent.core").now
local which = arg[1]
local Pool = arg[2] == "process" and cf.ProcessPoolExecutor or cf.ThreadPoolExecutor
local W = tonumber(os.getenv("BENCH_WORKERS")) or 2
local W3_ROUNDS = 5
local clock = os.clock

local measure = dofile(arg[0]:gsub("[^/]*$", "") .. "measure.lua")
local cpu, minflt = measure.cpu, measure.minflt

local function inc(x) return x + 1 end

local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end

local function rss_kb()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

if which == "w1" then
  local N = 100000
  local ex <close> = Pool(W)
  local t0, c0 = now(), clock()
  local fs = {}
  for i = 1, N do fs[i] = ex:submit(inc, i) end
  local sum = 0
  for i = 1, N do sum = sum + fs[i]:result() end
  local dt = now() - t0
  cpu(c0, N)
  assert(sum == N * (N + 1) // 2 + N)
  print("tasks_per_s", N / dt)
elseif which == "w2" then
  local N = 10000
  local ex <close> = Pool(W)
  for i = 1, 200 do ex:submit(inc, i):result() end  -- warm up both workers
  local lat = {}
  local c0 = clock()
  for i = 1, N do
    local t0 = now()
    local v = ex:submit(inc, i):result()
    lat[i] = now() - t0
    assert(v == i + 1)
  end
  cpu(c0, N)
  table.sort(lat)
  print("median_us", lat[N // 2] * 1e6)
  print("p99_us", lat[math.floor(N * 0.99)] * 1e6)
elseif which == "w3" or which == "w3free" then
  -- w3: 8 x fib(27) on the pool; w3free, the machine's own ceiling for
  -- it: two separate interpreters, 4 x fib(27) each, from the start of
  -- both to the end of the last (a VM's two cores may not give twice
  -- one). Each of W3_ROUNDS rounds runs the 8 x fib(27) in this
  -- process's own state first, then the parallel form, so the two are
  -- timed side by side under the same load; the fastest of each is
  -- kept (a round lasts about 40 ms: on a shared VM a single one is
  -- timed with whatever else took a core meanwhile).
  local function sequential() for _ = 1, 8 do assert(fib(27) == 196418) end end
  local parallel
  if which == "w3" then
    local ex = Pool(W)
    -- start every worker before the clock does (they start on demand:
    -- one task at a time would leave the others to start in the timing)
    local warm = {}
    for i = 1, W do warm[i] = ex:submit(fib, 20) end
    for i = 1, W do warm[i]:result() end
    parallel = function()
      local fs = {}
      for i = 1, 8 do fs[i] = ex:submit(fib, 27) end
      for i = 1, 8 do assert(fs[i]:result() == 196418) end
    end
  else
    local code = "local function fib(n) if n < 2 then return n end "
                 .. "return fib(n - 1) + fib(n - 2) end for _ = 1, 4 do fib(27) end"
    local cmd = ("%s -e %q"):format(arg[-1], code)
    parallel = function()
      local a, b = io.popen(cmd), io.popen(cmd)
      a:close()
      b:close()
    end
  end
  local function timed(fn, best)
    local t0, c0 = now(), clock()
    fn()
    local dt = now() - t0
    if dt < best.seconds then best.seconds, best.cpu = dt, clock() - c0 end
  end
  local seq, par = { seconds = math.huge }, { seconds = math.huge }
  for _ = 1, W3_ROUNDS do
    timed(sequential, seq)
    timed(parallel, par)
  end
  print("seconds", par.seconds)
  print("seq_seconds", seq.seconds)
  -- os.clock counts this process's threads: a thread pool's workers,
  -- not a process pool's or w3free's children
  if which == "w3" and Pool == cf.ThreadPoolExecutor then
    print("cpu_seconds", par.cpu)
    print("seq_cpu_seconds", seq.cpu)
  end
elseif which == "w4" or which == "w4drop" then
  -- w4drop lets go of each future once its result is read, as luv.lua's
  -- callback lets go of its string: w4 keeps all 2,000 futures and their
  -- result tables (32 MB), whose first touch is the kernel's work.
  local drop = which == "w4drop"
  local N, M = 2000, 1000
  local xs = {}
  for i = 1, M do xs[i] = i * 0.5 end
  -- The task scales the array it received in place, as luv.lua's worker
  -- does with the table it unpacks: both run the same Lua loop, so the
  -- row compares moving arrays, not how a task grows a new table.
  local function scale(a)
    for i = 1, #a do a[i] = a[i] * 2.0 end
    return a
  end
  local ex <close> = Pool(W)
  local t0, c0, f0 = now(), clock(), minflt()
  local fs = {}
  for i = 1, N do fs[i] = ex:submit(scale, xs) end
  for i = 1, N do
    assert(fs[i]:result()[M] == M * 1.0)
    if drop then fs[i] = nil end
  end
  local dt = now() - t0
  cpu(c0, N)
  print("faults_per_task", (minflt() - f0) / N)
  print("mb_per_s", N * M * 8 * 2 / dt / 1e6)  -- floats in and out
elseif which == "pagetouch" then
  -- What the kernel takes to give this process a page at its first
  -- touch, now: w4 keeps 32 MB of result tables, so its rate follows
  -- this cost, which moves by a factor of ten with the VM's phase.
  -- string.rep of 64 MiB writes two fresh mappings of that size once
  -- each (its buffer, then the string copied from it); at 4 KiB a copy
  -- their writing costs a few ms of the total.
  local n, page = 64 * 1024 * 1024, ("x"):rep(4096)
  local t0 = now()
  local s = page:rep(n // 4096)
  print("us_per_page", (now() - t0) / (2 * n / 4096) * 1e6)
  assert(#s == n)
elseif which == "mem" then
  local N = 1000000  -- queued behind both workers, held on a gate
  local ex = cf.ThreadPoolExecutor(2)
  local gate = cf.Future()
  ex:submit(function(g) return g:result() end, gate)
  ex:submit(function(g) return g:result() end, gate)
  while ex:stats().running < 2 do end
  collectgarbage() collectgarbage()
  local before = rss_kb()
  local fs = {}
  for i = 1, N do fs[i] = ex:submit(inc, i) end
  collectgarbage() collectgarbage()
  local after = rss_kb()
  -- the Lua array holding the handles is the caller's, not the future's
  print("bytes_per_pending_future", (after - before) * 1024 / N)
  assert(#fs == N)
  gate:set_result(true)
  ex:shutdown(true, true)
  -- the futures go before the next measure: a done future holds its
  -- task's block, which the workers' states would otherwise not reuse
  fs = nil  -- luacheck: ignore 311
  collectgarbage() collectgarbage()
  local ex2 = cf.ThreadPoolExecutor(8)
  local g2 = cf.Future()
  local before2 = rss_kb()
  local hold = {}
  for i = 1, 8 do hold[i] = ex2:submit(function(g) return g:result() end, g2) end
  while ex2:stats().running < #hold do end
  local after2 = rss_kb()
  print("idle_worker_rss_kb", (after2 - before2) / 8)
  g2:set_result(true)
  ex2:shutdown(true)
end
