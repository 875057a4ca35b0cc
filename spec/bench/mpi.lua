-- `make bench`, MPI section: each workload for concurrent.futures.mpi and
-- mpi4py.futures, both under mpiexec -n 3 (rank 0 and two worker ranks on
-- the 2-core machine), interleaved, BENCH_REPS repetitions, medians. Runs
-- only once 'make mpi' has built the module (Open MPI); the mpi4py column
-- needs Debian's python3-mpi4py (mk/deps.sh mpi4py).

local REPS = tonumber(os.getenv("BENCH_REPS")) or 3
local dir = "spec/bench/mpi/"
local so = (os.getenv("LUA_CPATH") or ""):match("^([^;]*)/%?%.so") or "build"

local function sh(cmd)
  return os.execute(cmd .. " >/dev/null 2>&1") == true
end

if not (sh("command -v mpiexec") and sh("test -f " .. so .. "/concurrent/futures/mpi.so")) then
  print("MPI section skipped: 'make mpi' builds concurrent.futures.mpi (needs Open MPI)")
  return
end
local has_mpi4py = sh("/usr/bin/python3 -c 'import mpi4py.futures'")
local root = io.popen("id -u"):read("l") == "0"
local MPIEXEC = "mpiexec --oversubscribe " .. (root and "--allow-run-as-root " or "")
                .. "-x LUA_PATH -x LUA_CPATH -n 3 "

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  if not p:close() then error("benchmark failed: " .. cmd .. "\n" .. out) end
  local r = {}
  for k, v in out:gmatch("(%S+)%s+([%d.e+-]+)") do r[k] = tonumber(v) end
  return r
end

local runners = {
  ours = function(w)
    return run(MPIEXEC .. "lua5.4 -l concurrent.futures.mpi " .. dir .. "ours.lua " .. w)
  end,
  mpi4py = has_mpi4py and function(w)
    return run(MPIEXEC .. "/usr/bin/python3 -m mpi4py.futures " .. dir .. "mpi4py_futures.py " .. w)
  end,
  ours_seq = function() return run("lua5.4 spec/bench/threadpool/ours.lua w3seq") end,
  mpi4py_seq = has_mpi4py and function()
    return run("/usr/bin/python3 spec/bench/threadpool/python.py w3seq")
  end,
}

local results = {}
local function record(impl, w, r)
  local t = results[impl] or {}
  results[impl] = t
  t[w] = t[w] or {}
  for k, v in pairs(r) do
    t[w][k] = t[w][k] or {}
    table.insert(t[w][k], v)
  end
end

for rep = 1, REPS do
  for _, w in ipairs { "w1", "w2", "w3", "w4" } do
    for _, impl in ipairs { "ours", "mpi4py" } do
      if runners[impl] then record(impl, w, runners[impl](w)) end
    end
  end
  for _, impl in ipairs { "ours_seq", "mpi4py_seq" } do
    if runners[impl] then record(impl, "w3seq", runners[impl]()) end
  end
  io.stderr:write(("MPI bench: repetition %d of %d done\n"):format(rep, REPS))
end

local function get(impl, w, k)
  local t = results[impl] and results[impl][w] and results[impl][w][k]
  if not t then return nil end
  table.sort(t)
  return t[(#t + 1) // 2]
end
local function fmt(v, f) return v and f:format(v) or "-" end
local function ratio(a, b) return a and b and ("%.2f"):format(a / b) or "-" end

local ROW = "%-36s %12s %12s %10s  %s"
print(ROW:format("MPI pools (mpiexec -n 3, median of " .. REPS .. ")",
  "concurrent", "mpi4py", "ratio", "aim"))
for _, row in ipairs {
  { "w1 submit+collect 20k, tasks/s", "w1", "tasks_per_s", "%.0f", ">= 5" },
  { "w2 round trip median, us", "w2", "median_us", "%.1f", "<= 0.33" },
  { "w2 round trip p99, us", "w2", "p99_us", "%.1f", "" },
  { "w4 1000-float arrays, MB/s", "w4", "mb_per_s", "%.1f", ">= 5" },
} do
  local o, p = get("ours", row[2], row[3]), get("mpi4py", row[2], row[3])
  print(ROW:format(row[1], fmt(o, row[4]), fmt(p, row[4]), ratio(o, p), row[5]))
end
local function speedup(impl)
  local par, seq = get(impl, "w3", "seconds"), get(impl .. "_seq", "w3seq", "seconds")
  return par and seq and ("%.2fx"):format(seq / par) or "-"
end
print(ROW:format("w3 8x fib(27) speedup vs 1 process", speedup("ours"), speedup("mpi4py"),
  "", ">= 1.8"))
