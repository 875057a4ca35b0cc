--- Python's `concurrent.futures` for Lua 5.4: futures, a thread pool
-- whose workers each own a `lua_State`, waiting, maps and callbacks.
-- `local cf = require "concurrent.futures"`. The C module
-- `concurrent.core` holds futures, waiting, callbacks and executors; this
-- file adds the parts that read best in Lua (`partial`, `map`, `progress`)
-- and re-exports the rest. The rules of what crosses into a worker are
-- in the README ("What crosses into a worker").
-- @module concurrent.futures

local core = require "concurrent.core"

local select, type, error = select, type, error
local pack, unpack = table.pack, table.unpack

local M = {
  _VERSION = core._VERSION,
}

for _, name in ipairs {
  "Future", "wait", "as_completed", "dispatch", "notify_fd", "cpu_count",
  "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION",
  "CancelledError", "TimeoutError", "InvalidStateError",
  "BrokenExecutor", "BrokenThreadPool", "BrokenProcessPool",
  "ThreadPoolExecutor", "ProcessPoolExecutor", "worker",
} do
  M[name] = core[name]
end

--- Executors (implemented in `lua/lexecutor.c`).
-- @section executors

--- A pool of OS threads, each worker with its own `lua_State` (the
-- standard libraries, the caller's `package.path` and `package.cpath`).
-- Workers start lazily, one per `submit` while none is idle.
-- @function ThreadPoolExecutor
-- @tparam[opt] integer|table max_workers the most workers (default
-- `cpu_count() * 5`), or a table of options: `max_workers`,
-- `initializer` (a function run once in each new worker; if it raises,
-- the pool is broken), `initargs` (its arguments, an array; `n` counts
-- them), `thread_name_prefix` (OS thread names), `task_timeout`
-- (seconds a task may run before it fails with `TimeoutError`) and
-- `max_memory` (bytes each worker's state may hold)
-- @treturn Executor an executor; leaving the scope of a to-be-closed
-- variable holding it, and its `__gc`, shut it down
-- @usage local ex <close> = cf.ThreadPoolExecutor(4)

--- A pool of forked worker processes, each with its own fresh
-- `lua_State` (the same worker runtime and rules as a thread). A
-- supervisor thread forks the workers lazily, up to `max_workers`,
-- talks to them over sockets and reaps them. A worker that dies breaks
-- the pool: its pending and running futures fail with
-- `BrokenProcessPool` (naming the pid and the exit status or signal).
-- Futures passed to a task can be waited on in the worker.
-- @function ProcessPoolExecutor
-- @tparam[opt] integer|table max_workers the most workers (default
-- `cpu_count()`), or a table of options: `max_workers`, `initializer`,
-- `initargs`, `task_timeout`, `max_memory` (as for threads),
-- `max_tasks_per_child` (a worker exits and is replaced after that many
-- tasks) and `respawn` (a dead worker fails only its own tasks and is
-- replaced)
-- @treturn Executor an executor, shut down by `<close>` and `__gc` too
-- @usage local ex <close> = cf.ProcessPoolExecutor()

--- Run `fn(...)` in a worker. Never blocks on the task; `fn` and the
-- arguments are copied into the worker (upvalues by value, `_ENV` = the
-- worker's globals; modules and C functions by name). The table form
-- `ex:submit{fn, a, b, n = 2, timeout = s}` gives the task a time limit
-- of its own (`n` counts the arguments; a table with `__call` is a
-- callable, not this form).
-- @function Executor:submit
-- @tparam function|table fn the task, or the table form
-- @param ... its arguments
-- @treturn Future the task's future
-- @raise "cannot schedule new futures after shutdown", `BrokenThreadPool`
-- or `BrokenProcessPool`,
-- or "cannot transfer argument #2.config.handle (userdata): ..." naming
-- a value that cannot cross

--- Stop accepting tasks; optionally cancel the pending ones and wait.
-- Idempotent; callbacks run meanwhile (a safe point).
-- @function Executor:shutdown
-- @tparam[opt=true] boolean wait return once every task is done and every worker exited
-- @tparam[opt=false] boolean cancel_futures cancel the tasks not started

--- Counts of the pool.
-- @function Executor:stats
-- @treturn table `{workers=, idle=, pending=, running=, completed=,
-- failed=, cancelled=, memory=}` (`memory`: bytes the workers' states
-- hold)

--- Functions.
-- @section functions

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

--- A plain Lua closure (so it can be submitted) that calls `fn` with the
-- bound arguments first, then its own (Python's `functools.partial`).
-- @tparam function fn
-- @param ... the arguments to bind
-- @treturn function
-- @usage local add10 = cf.partial(function(a, b) return a + b end, 10)
function M.partial(fn, ...)
  if not callable(fn) then
    error(("bad argument #1 to 'partial' (function expected, got %s)")
      :format(type(fn)), 2)
  end
  local bound = pack(...)
  if bound.n == 0 then
    return function(...) return fn(...) end
  end
  return function(...)
    local n = select("#", ...)
    if n == 0 then return fn(unpack(bound, 1, bound.n)) end
    local args = { unpack(bound, 1, bound.n) }
    for i = 1, n do args[bound.n + i] = select(i, ...) end
    return fn(unpack(args, 1, bound.n + n))
  end
end

-- {==================================================================
-- ex:map
-- ===================================================================

-- An iterable as a function returning the next item and whether there
-- was one: arrays up to their length, iterator functions until nil.
local function items(xs, pos)
  if type(xs) == "table" then
    local i, n = 0, #xs
    return function()
      if i >= n then return false end
      i = i + 1
      return true, xs[i]
    end
  elseif type(xs) == "function" then
    return function()
      local v = xs()
      if v == nil then return false end
      return true, v
    end
  end
  error(("bad argument #%d to 'map' (array or iterator function expected, got %s)")
    :format(pos, type(xs)), 3)
end

-- The argument lists of the calls, zipped, stopping at the shortest.
local function zip(iterables, first)
  local nexts = {}
  for k = 1, iterables.n do nexts[k] = items(iterables[k], first + k - 1) end
  local calls = {}
  while true do
    local args = { n = #nexts }
    for k, nx in ipairs(nexts) do
      local more, v = nx()
      if not more then return calls end
      args[k] = v
    end
    calls[#calls + 1] = args
  end
end

-- Runs a chunk of calls in a worker: the results of each call, packed.
local function run_chunk(fn, chunk)
  local out = {}
  for j = 1, #chunk do
    local args = chunk[j]
    out[j] = table.pack(fn(table.unpack(args, 1, args.n)))
  end
  return out
end

local function map_options(fn, ...)
  if select("#", ...) == 0 and type(fn) == "table" and not callable(fn) then
    local o = fn
    local its = { n = math.max(#o - 1, 0) }
    for k = 2, #o do its[k - 1] = o[k] end
    return o[1], its, o.timeout, o.chunksize, 1, o.task_timeout
  end
  return fn, pack(...), nil, nil, 2
end

-- Submit fn(...) with a time limit of its own when 'limit' is set.
local function submit_limited(ex, limit, fn, ...)
  if limit == nil then return ex:submit(fn, ...) end
  local t = pack(fn, ...)
  t.n, t.timeout = t.n - 1, limit
  return ex:submit(t)
end

--- Map `fn` over iterables in the pool: yields the index and the results
-- of `fn(xs[i], ys[i], ...)` in input order (the index makes a `nil`
-- result safe). Iterables are arrays or iterator functions, zipped,
-- stopping at the shortest; all tasks are submitted before the first
-- result is yielded. The table form `ex:map{fn, xs, ys, timeout =,
-- chunksize =, task_timeout =}` takes options: `timeout` (seconds from
-- the call), `chunksize` (inputs per task) and `task_timeout` (each
-- task's time limit, as `submit`'s). A task's error is raised when the
-- iteration reaches it; the remaining tasks are then cancelled, as when
-- the loop is left early.
-- @function Executor:map
-- @tparam function fn
-- @param xs an array or an iterator function; more may follow
-- @return an iterator for a generic `for`, with a to-be-closed value
-- @raise `TimeoutError` when `timeout` passes
-- @usage for i, sq in ex:map(function(x) return x * x end, {1, 2, 3}) do print(i, sq) end
local function map(ex, ...)
  local fn, iterables, timeout, chunksize, first, limit = map_options(...)
  if not callable(fn) then
    error(("bad argument #1 to 'map' (function expected, got %s)"):format(type(fn)), 2)
  end
  if iterables.n == 0 then
    error("bad argument #2 to 'map' (at least one iterable expected)", 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout) then
    error("bad argument #1 to 'map' (timeout must be a non-negative number)", 2)
  end
  if limit ~= nil and (type(limit) ~= "number" or limit <= 0 or limit ~= limit) then
    error("bad argument #1 to 'map' (task_timeout must be a positive number)", 2)
  end
  chunksize = chunksize or 1
  if math.type(chunksize) ~= "integer" or chunksize < 1 then
    error("bad argument #1 to 'map' (chunksize must be an integer >= 1)", 2)
  end
  local deadline = timeout and core.now() + timeout
  local calls = zip(iterables, first)
  local fs = {}
  if chunksize == 1 then
    for i, args in ipairs(calls) do
      fs[i] = submit_limited(ex, limit, fn, unpack(args, 1, args.n))
    end
  else
    for c = 1, #calls, chunksize do
      local chunk = { unpack(calls, c, math.min(c + chunksize - 1, #calls)) }
      fs[#fs + 1] = submit_limited(ex, limit, run_chunk, fn, chunk)
    end
  end
  local nextf, chunk, inchunk = 1, nil, 0
  local function cancel_rest()
    for k = nextf, #fs do fs[k]:cancel() end
  end
  local function step(_, i)
    i = (i or 0) + 1
    if i > #calls then return nil end
    if chunksize == 1 or inchunk == 0 then
      local f = fs[nextf]
      nextf = nextf + 1
      local remaining = deadline and math.max(deadline - core.now(), 0)
      local ok, r = pcall(function() return pack(f:result(remaining)) end)
      if not ok then cancel_rest() error(r, 0) end
      if chunksize == 1 then return i, unpack(r, 1, r.n) end
      chunk, inchunk = r[1], 0
    end
    inchunk = inchunk + 1
    local r = chunk[inchunk]
    if inchunk == chunksize then inchunk = 0 end
    return i, unpack(r, 1, r.n)
  end
  local closer = setmetatable({}, { __close = cancel_rest })
  return step, nil, nil, closer
end

core.executor_methods.map = map

-- }==================================================================

M.progress = require("concurrent.progress").progress


return M
