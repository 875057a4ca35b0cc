-- `make bench`, thread-pool section: each workload for concurrent, luv's
-- work queue (UV_THREADPOOL_SIZE=2) and Python's ThreadPoolExecutor(2),
-- all with 2 workers, interleaved, 3 repetitions, medians and ratios.
-- Each run is its own process (spec/bench/threadpool/*), so one cannot
-- warm or pollute another's heap. Beside the rates, the CPU time per
-- task of the whole process (every thread, user + system): a waiter that
-- spins shows up there. The same workloads also run with 4 workers
-- (BENCH_WORKERS=4, UV_THREADPOOL_SIZE=4), more threads than cores on
-- the 2-core machine: spinning must not collapse the throughput there.

local REPS = tonumber(os.getenv("BENCH_REPS")) or 5
local dir = "spec/bench/threadpool/"

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

local has_luv = os.execute("lua5.4 -e 'require\"luv\"' >/dev/null 2>&1") == true
local has_python = have("python3")

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  if not ok then error("benchmark failed: " .. cmd .. "\n" .. out) end
  local r = {}
  for k, v in out:gmatch("(%S+)%s+([%d.e+-]+)") do r[k] = tonumber(v) end
  return r
end

local runners = {
  ours = function(w) return run("lua5.4 " .. dir .. "ours.lua " .. w) end,
  luv = has_luv and function(w)
    return run("UV_THREADPOOL_SIZE=2 lua5.4 " .. dir .. "luv.lua " .. w)
  end,
  python = has_python and function(w)
    return run("python3 " .. dir .. "python.py " .. w)
  end,
  -- oversubscribed: 4 workers
  ours4 = function(w)
    return run("BENCH_WORKERS=4 lua5.4 " .. dir .. "ours.lua " .. w)
  end,
  luv4 = has_luv and function(w)
    return run("UV_THREADPOOL_SIZE=4 lua5.4 " .. dir .. "luv.lua " .. w)
  end,
  python4 = has_python and function(w)
    return run("BENCH_WORKERS=4 python3 " .. dir .. "python.py " .. w)
  end,
  -- the process pools: the same workloads over ProcessPoolExecutor(2)
  ours_proc = function(w) return run("lua5.4 " .. dir .. "ours.lua " .. w .. " process") end,
  python_proc = has_python and function(w)
    return run("python3 " .. dir .. "python.py " .. w .. " process")
  end,
}

-- (on a copy: the samples stay in repetition order, for w3's pairs)
local function median(xs)
  local c = table.move(xs, 1, #xs, 1, {})
  table.sort(c)
  return c[(#c + 1) // 2]
end

-- results[impl][workload][key] = { samples }
local results = {}
local function record(impl, w, r)
  results[impl] = results[impl] or {}
  results[impl][w] = results[impl][w] or {}
  for k, v in pairs(r) do
    local t = results[impl][w]
    t[k] = t[k] or {}
    table.insert(t[k], v)
  end
end

local workloads = {
  { "w1", { "ours", "luv", "python" } },
  { "w2", { "ours", "luv", "python" } },
  { "w3", { "ours" } },
  { "w3free", { "ours" } },
  { "w4", { "ours", "luv", "python" } },
  { "w4drop", { "ours", "luv", "python" } },
  { "pagetouch", { "ours" } },
  { "w1", { "ours4", "luv4", "python4" } },
  { "w2", { "ours4", "luv4", "python4" } },
  { "w3", { "ours4" } },
  { "w4", { "ours4", "luv4", "python4" } },
  { "w1", { "ours_proc", "python_proc" } },
  { "w2", { "ours_proc", "python_proc" } },
  { "w3", { "ours_proc", "python_proc" } },
  { "w3seq", { "python" } },
  { "w4", { "ours_proc", "python_proc" } },
}
for rep = 1, REPS do
  for _, wl in ipairs(workloads) do
    for _, impl in ipairs(wl[2]) do
      if runners[impl] then record(impl, wl[1], runners[impl](wl[1])) end
    end
  end
  io.stderr:write(("thread pool bench: repetition %d of %d done\n"):format(rep, REPS))
end
record("ours", "mem", runners.ours("mem"))
if runners.python then record("python", "mem", runners.python("mem")) end

local function get(impl, w, k)
  local t = results[impl] and results[impl][w] and results[impl][w][k]
  return t and median(t)
end

local function ratio(a, b) if a and b then return ("%.2f"):format(a / b) end return "-" end
local function fmt(v, f) return v and (f):format(v) or "-" end

local ROW = "%-34s %12s %12s %12s %10s %10s"
print(ROW:format("workload (2 workers, median of " .. REPS .. ")",
  "concurrent", "luv", "python", "vs luv", "vs python"))
local rows = {
  { "w1 submit+collect 100k, tasks/s", "w1", "tasks_per_s", "%.0f" },
  { "w2 round trip median, us", "w2", "median_us", "%.1f" },
  { "w2 round trip p99, us", "w2", "p99_us", "%.1f" },
  { "w4 1000-float arrays, MB/s", "w4", "mb_per_s", "%.1f" },
}
-- CPU time per task (process, user + system; lower is better)
local cpurows = {
  { "w1 CPU per task, us", "w1", "cpu_us_per_task", "%.2f" },
  { "w2 CPU per round trip, us", "w2", "cpu_us_per_task", "%.2f" },
  { "w4 CPU per task, us", "w4", "cpu_us_per_task", "%.1f" },
}
-- w4 as luv's callback does it: each future let go of once read (luv
-- keeps nothing, so its w4drop is its w4), and the page faults per task
-- that keeping 2,000 result tables costs (not in the chart's four)
local droprows = {
  { "w4, futures dropped once read, MB/s", "w4drop", "mb_per_s", "%.1f" },
  { "w4 page faults per task", "w4", "faults_per_task", "%.1f" },
  { "w4, dropped: page faults per task", "w4drop", "faults_per_task", "%.1f" },
}
local function table3(o, l, p, list)
  for _, row in ipairs(list) do
    local a, b, c = get(o, row[2], row[3]), get(l, row[2], row[3]),
                    get(p, row[2], row[3])
    print(ROW:format(row[1], fmt(a, row[4]), fmt(b, row[4]), fmt(c, row[4]),
      ratio(a, b), ratio(a, c)))
  end
end
table3("ours", "luv", "python", rows)
table3("ours", "luv", "python", droprows)
table3("ours", "luv", "python", cpurows)
-- w3: the speedup of the medians, each parallel run against the
-- sequential one its process timed beside it (ours.lua), and of each
-- repetition for the spread; its CPU time over the sequential run's
-- (1.00: no core spent on waiting).
local function speedups(impl, w)
  local r = results[impl] and results[impl][w or "w3"]
  if not r then return "-" end
  local par, seq = r.seconds, r.seq_seconds
  local each = {}
  for i = 1, #par do each[i] = seq[i] / par[i] end
  table.sort(each)
  return ("%.2fx (%.2f-%.2f)"):format(median(seq) / median(par), each[1], each[#each])
end
local function cpuratio(impl)
  local c = get(impl, "w3", "cpu_seconds")
  local s = get(impl, "w3", "seq_cpu_seconds")
  return c and s and ("%.2f"):format(c / s) or "-"
end
-- the cores the run had on average (CPU time over wall time): below 2
-- with 2 workers, other processes took the rest of the machine
local function cores(impl)
  local r = results[impl] and results[impl].w3
  if not r or not r.cpu_seconds then return "-" end
  local each = {}
  for i = 1, #r.seconds do each[i] = r.cpu_seconds[i] / r.seconds[i] end
  return ("%.2f"):format(median(each))
end
local ONE = "%-34s %12s"
print(ONE:format("w3 8x fib(27) speedup vs 1 state", speedups("ours")))
print(ONE:format("w3 CPU time over 1 state's", cpuratio("ours")))
print(ONE:format("w3 cores it had (CPU / wall)", cores("ours")))
-- what two separate interpreters reach on this machine: w3's ceiling
print(ONE:format("w3 ceiling: 2 separate processes", speedups("ours", "w3free")))
-- the phase of the VM the run met (ours.lua pagetouch says why)
print(ONE:format("first touch of a 4 KiB page, us",
  fmt(get("ours", "pagetouch", "us_per_page"), "%.2f")))
print(ROW:format("bytes RSS per pending future",
  fmt(get("ours", "mem", "bytes_per_pending_future"), "%.0f"), "-",
  fmt(get("python", "mem", "bytes_per_pending_future"), "%.0f"), "-",
  ratio(get("ours", "mem", "bytes_per_pending_future"),
        get("python", "mem", "bytes_per_pending_future"))))
print(ONE:format("RSS of an idle worker, KiB",
  fmt(get("ours", "mem", "idle_worker_rss_kb"), "%.0f")))
print("(ratios are concurrent / other: higher is better for rates, lower for latencies and CPU)")

print()
print(ROW:format("4 workers (oversubscribed), median", "concurrent", "luv",
  "python", "vs luv", "vs python"))
table3("ours4", "luv4", "python4", rows)
table3("ours4", "luv4", "python4", cpurows)
print(ONE:format("w3 8x fib(27) speedup vs 1 state", speedups("ours4")))
print(ONE:format("w3 CPU time over 1 state's", cpuratio("ours4")))
print(ONE:format("w3 cores it had (CPU / wall)", cores("ours4")))

local PROW = "%-34s %12s %12s %10s"
print()
print(PROW:format("process pools (2 workers)", "concurrent", "python", "vs python"))
for _, row in ipairs(rows) do
  local o, p = get("ours_proc", row[2], row[3]), get("python_proc", row[2], row[3])
  print(PROW:format(row[1], fmt(o, row[4]), fmt(p, row[4]), ratio(o, p)))
end
local ppar, pseq = get("python_proc", "w3", "seconds"), get("python", "w3seq", "seconds")
print(PROW:format("w3 8x fib(27) speedup vs 1 state", speedups("ours_proc"),
  ppar and pseq and ("%.2fx"):format(pseq / ppar) or "-", ""))

-- The table as data for the chart (mk/bench.gp draws doc/bench.svg):
-- one line per workload, "-" where an implementation has no number.
local data = os.getenv("BENCH_DATA")
if data then
  local f = assert(io.open(data, "w"))
  f:write("# workload concurrent luv python (make bench, 2 workers)\n")
  for _, row in ipairs(rows) do
    local v = {}
    for k, impl in ipairs({ "ours", "luv", "python" }) do
      v[k] = fmt(get(impl, row[2], row[3]), row[4])
    end
    f:write(("%q %s %s %s\n"):format(row[1], v[1], v[2], v[3]))
  end
  f:close()
end
