-- `make bench`, queue section: 100,000 small values from one worker
-- thread to the main state, values/s, for a cf.Queue (unbounded, and
-- bounded at 1000 and at 1; unbounded from a process-pool worker too,
-- where each put is a round trip to the parent), luv's uv.new_async send (which coalesces
-- sends, so each value waits for an acknowledgement) and Python's
-- queue.Queue between two threads. Each run is its own process; the
-- median of BENCH_REPS (3) runs. The aim: at least 2x luv.

local REPS = tonumber(os.getenv("BENCH_REPS")) or 3
local dir = "spec/bench/queue/"

local has_luv = os.execute("lua5.4 -e 'require\"luv\"' >/dev/null 2>&1") == true
local has_python = os.execute("command -v python3 >/dev/null 2>&1") == true

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  if not p:close() then error("benchmark failed: " .. cmd .. "\n" .. out) end
  return tonumber(out:match("values_per_s%s+([%d.e+-]+)"))
end

local impls = {
  { "cf.Queue()", "lua5.4 " .. dir .. "ours.lua 0" },
  { "cf.Queue(1000)", "lua5.4 " .. dir .. "ours.lua 1000" },
  { "cf.Queue(1)", "lua5.4 " .. dir .. "ours.lua 1" },
  { "cf.Queue() process worker", "lua5.4 " .. dir .. "ours.lua 0 process" },
  has_luv and { "luv uv.new_async + ack", "lua5.4 " .. dir .. "luv.lua" } or nil,
  has_python and { "python queue.Queue", "python3 " .. dir .. "python.py" } or nil,
}

local samples = {}
for rep = 1, REPS do
  for _, impl in ipairs(impls) do
    samples[impl[1]] = samples[impl[1]] or {}
    table.insert(samples[impl[1]], run(impl[2]))
  end
  io.stderr:write(("queue bench: repetition %d of %d done\n"):format(rep, REPS))
end

local function median(xs)
  table.sort(xs)
  return xs[(#xs + 1) // 2]
end

local luv = samples["luv uv.new_async + ack"] and median(samples["luv uv.new_async + ack"])
print(("%-28s %14s %10s"):format("100,000 values, worker -> main", "values/s", "vs luv"))
for _, impl in ipairs(impls) do
  local m = median(samples[impl[1]])
  print(("%-28s %14.0f %10s"):format(impl[1], m, luv and ("%.1fx"):format(m / luv) or "-"))
end
