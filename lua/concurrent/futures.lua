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
  "ThreadPoolExecutor", "ProcessPoolExecutor", "Queue", "worker",
} do
  M[name] = core[name]
end

--- Executors (implemented in `lua/lexecutor.c`).
-- @section executors

--- A pool of OS threads, each worker with its own `lua_State` (the
-- standard libraries, the caller's `package.path` and `package.cpath`).
-- Workers start lazily, one per `submit` while none is idle.
-- @function ThreadPoolExecutor
-- @tparam[opt] integer|table max_workers the most workers, 1 to
-- 100000 (default `cpu_count() * 5`), or a table of options: `max_workers`,
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
-- @tparam[opt] integer|table max_workers the most workers, 1 to
-- 100000 (default `cpu_count()`), or a table of options: `max_workers`, `initializer`,
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

-- The length of the table 't', its __len's too, which must be an integer
-- (or a float with an integral value, as luaL_len takes). Otherwise an
-- error at 'level' above the caller of this function: "bad argument #arg
-- to 'fname' (integer length expected<at>, got 2.5)".
local function length(t, arg, fname, level, at)
  local n = #t
  local i = math.type(n) and math.tointeger(n)
  if not i then
    error(("bad argument #%d to '%s' (integer length expected%s, got %s)")
      :format(arg, fname, at or "", math.type(n) and tostring(n) or type(n)),
      level + 1)
  end
  return i
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

-- Where this file's errors say they come from: a refusal raised inside
-- map's own calls is re-raised at the caller's line instead.
local HERE = debug.getinfo(1, "S").short_src .. ":"

-- An iterable as a function returning the next item and whether there
-- was one: arrays up to their length, iterator functions until nil.
-- 'level' is where an argument error points (the caller of map).
local function items(xs, pos, tableform, level)
  if type(xs) == "table" then
    local i, n = 0, nil
    if tableform then
      n = length(xs, 1, "map", level, (" at index %d"):format(pos + 1))
    else
      n = length(xs, pos, "map", level)
    end
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
  if tableform then
    error(("bad argument #1 to 'map' (array or iterator function expected at index %d, got %s)")
      :format(pos + 1, type(xs)), level)
  end
  error(("bad argument #%d to 'map' (array or iterator function expected, got %s)")
    :format(pos, type(xs)), level)
end

-- A function returning the next call's argument list of the zipped
-- iterables, or nil once the shortest is exhausted (inputs are read
-- lazily: an endless iterator is fine).
local function zip(iterables, first)
  local nexts = {}
  for k = 1, iterables.n do
    -- level 4: items <- zip <- map <- the caller
    nexts[k] = items(iterables[k], first + k - 1, first == 1, 4)
  end
  local over = false
  return function()
    if over then return nil end
    local args = { n = #nexts }
    for k, nx in ipairs(nexts) do
      local more, v = nx()
      if not more then over = true return nil end
      args[k] = v
    end
    return args
  end
end

-- The key that marks the error of a chunk whose call j > 1 failed.
local PARTIAL = "concurrent.futures.partial"

-- Runs a chunk of calls in a worker: each call's pcall, packed (its
-- results from index 2). A failing call ends the chunk. Call j fails
-- as its own task would, by raising or by returning results that
-- cannot cross (the error then says so). The first call's error is
-- raised as it is; a later one's goes in a table
-- { [PARTIAL] = true, err = the error, the results before it... }, so
-- the caller yields those results first and raises the error at its own
-- index (a nil error as a task's reads, API.md; an error that cannot
-- cross as its text, as the worker sends a task's: core._chunkerror).
-- A first call's own error that carries the key is wrapped too (with
-- no results), else the caller would take it for the mark and unwrap
-- it. The results are checked (core._chunkresults) when a call failed,
-- else only once the worker's encode of them refused: the worker then
-- raises the error 'settle()' gives for the task (core._chunkkeep,
-- lua/lworker.c 'refused'), so a chunk that crosses costs no check.
-- 'out' wraps each result two tables deeper than its own task would
-- send it; core._chunkkeep names 'out' to the worker, whose encode of
-- it (as the results, or as the error) does not count those two levels
-- toward the codec's nesting limit (LCONC_ENC_WRAP, lua/lcodec.c). So a
-- result as deep as a task's may be crosses in a chunk too, and one
-- deeper fails alone as its task would. The error in 'out' is one level
-- deeper only and crosses alone (core._chunkerror) before it goes in.
-- Flat results (counts, then every call's values) would need no such
-- allowance, but not every chunk could return them: the calls' values
-- together can pass Lua's stack limit where each call's do not, and a
-- partial chunk raises one error value, which must hold its results.
-- A stop of the task (a running cancel, a time limit) is caught here
-- as any error, which is harmless: the worker raises it again at every
-- instruction until the task has unwound, and decides a stopped task's
-- outcome from the stop, whatever the task raised (lua/lworker.c,
-- 'stophook' and 'rt_run'). Telling it apart by its class would be
-- wrong: a call may fail with its own TimeoutError.
local function run_chunk(fn, chunk)
  local out = {}
  -- The chunk's error: call j's, which failed with 'e', unless the
  -- results of a call before it cannot cross; with no j, the first
  -- call's whose results cannot, or nil if none.
  local function settle(j, e)
    local bad, why = core._chunkresults(out, (j or #out + 1) - 1)
    if bad then j, e = bad, why
    elseif j == nil then return nil end  -- all at once failed (memory)
    if j == 1 and not (type(e) == "table" and rawget(e, PARTIAL) ~= nil) then
      return e
    end
    for k = #out, j, -1 do out[k] = nil end
    out[PARTIAL] = true
    if e == nil then out.err = "(error object is a nil value)"
    else out.err = core._chunkerror(e) end
    return out
  end
  core._chunkkeep(settle, out)
  for j = 1, #chunk do
    local args = chunk[j]
    local r = table.pack(pcall(fn, table.unpack(args, 1, args.n)))
    if not r[1] then error(settle(j, r[2]), 0) end
    out[j] = r
  end
  return out
end

-- ex:submit, but a refusal reads as raised at 'level' above the caller
-- of this function (never inside this file).
local function submit(ex, level, ...)
  local ok, f = pcall(ex.submit, ex, ...)
  if ok then return f end
  if type(f) == "string" and f:sub(1, #HERE) == HERE then
    f = f:gsub("^[^\n]-:%d+: ", "", 1)
  end
  error(f, level + 1)
end

-- The path of a refusal in a chunk's submit (run_chunk #1, fn #2,
-- chunk[j][k] the k-th argument of call j) as submit(fn, ...) names it:
-- fn is argument #1, call j's k-th argument #k + 1.
local function chunkpath(msg)
  local k, rest = msg:match("^cannot transfer argument #3%[%d+%]%[(%d+)%](.*)$")
  if k then return ("cannot transfer argument #%d%s"):format(k + 1, rest) end
  rest = msg:match("^cannot transfer argument #2(%D.*)$")
  if rest then return "cannot transfer argument #1" .. rest end
  return msg
end

-- submit(ex, level, run_chunk, fn, chunk) (or its table form) for a
-- chunk of map's calls: core._submitchunk, so that the chunk's two
-- tables of wrapping count neither toward the nesting limit nor in the
-- path of a refusal, which reads as submit's for one call.
local function submitchunk(ex, level, ...)
  local ok, f = pcall(core._submitchunk, ex, ...)
  if ok then return f end
  if type(f) == "string" then f = chunkpath(f) end
  error(f, level + 1)
end

local MAP_OPTIONS = { timeout = true, chunksize = true, ordered = true,
                      buffersize = true, task_timeout = true }

local function map_options(fn, ...)
  if select("#", ...) == 0 and type(fn) == "table" and not callable(fn) then
    local o = fn
    -- level 4: map_options <- check_map <- map <- the caller
    local n = length(o, 1, "map", 4)
    for k in pairs(o) do
      if not (MAP_OPTIONS[k] or math.type(k) == "integer" and k >= 1 and k <= n) then
        error(("bad argument #1 to 'map' (unknown option '%s'; known: %s)")
          :format(tostring(k), "buffersize, chunksize, ordered, task_timeout, timeout"), 4)
      end
    end
    local its = { n = math.max(n - 1, 0) }
    for k = 2, n do its[k - 1] = o[k] end
    return o[1], its, o, 1
  end
  return fn, pack(...), {}, 2
end

-- An option that must be an integer >= 'min' (an integral float counts,
-- as for luaL_checkinteger), or absent.
local function intoption(o, name, min)
  local v = o[name]
  if v == nil then return nil end
  local i = type(v) == "number" and math.tointeger(v)
  if not i or i < min then
    error(("bad argument #1 to 'map' (%s must be an integer >= %d)"):format(name, min), 4)
  end
  return i
end

-- The name of the type of 'v' for an argument error: its metatable's
-- __name ("FILE*", "concurrent.Queue"), else its Lua type.
local function typename(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then return mt.__name end
  return type(v)
end

-- Whether 'v' is an executor: every executor class (threads, processes,
-- MPI) has the methods table as its __index.
local function isexecutor(v)
  local mt = type(v) == "userdata" and getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__index") == core.executor_methods
end

local function check_map(ex, ...)
  -- (any other userdata failed later with "attempt to call a nil value")
  if not isexecutor(ex) then
    error(("calling 'map' on bad self (executor expected, got %s)"):format(typename(ex)), 3)
  end
  local fn, iterables, o, first = map_options(...)
  if not callable(fn) then
    error(("bad argument #1 to 'map' (function expected, got %s)"):format(type(fn)), 3)
  end
  if iterables.n == 0 then
    error("bad argument #2 to 'map' (at least one iterable expected)", 3)
  end
  local timeout, limit = o.timeout, o.task_timeout
  for name, t in pairs { timeout = timeout, task_timeout = limit } do
    if t ~= t then
      error(("bad argument #1 to 'map' (%s is not a number (NaN))"):format(name), 3)
    end
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("bad argument #1 to 'map' (timeout must be a non-negative number)", 3)
  end
  if limit ~= nil and (type(limit) ~= "number" or limit <= 0) then
    error("bad argument #1 to 'map' (task_timeout must be a positive number)", 3)
  end
  if o.ordered ~= nil and type(o.ordered) ~= "boolean" then
    error(("bad argument #1 to 'map' (ordered must be a boolean, got %s)")
      :format(type(o.ordered)), 3)
  end
  return fn, iterables, first, {
    deadline = timeout and core.now() + timeout,
    chunksize = intoption(o, "chunksize", 1) or 1,
    buffersize = intoption(o, "buffersize", 0),
    ordered = o.ordered ~= false,
    task_timeout = limit,
  }
end

-- Seconds left before the map's deadline (nil: no timeout).
local function remaining(opts)
  return opts.deadline and math.max(opts.deadline - core.now(), 0)
end

-- The finalizer of a map's guard (T.guard): not while the state closes,
-- where the executor finishes its submitted work and the handles may be
-- finalized already.
local MAP_GUARD = { __gc = function(g)
  local T = g.T
  if T == nil or core._closing() then return end
  for t = T.lo, T.nt do
    local f = T.fs[t]
    if f then pcall(f.cancel, f) end  -- one error must not spare the rest
  end
  if T.waiter then pcall(getmetatable(T.waiter).__close, T.waiter) end
end }

-- The tasks of one map: 'fs[t]' is task t's future until its results
-- are taken, 'first[t]' the index of its first input, 'index[f]' is t;
-- tasks lo..nt are submitted and 'live' of them not taken yet (in
-- completion order those need not be lo..lo+live-1). 'up'
-- arguments count the frames from the function given it up to map's
-- caller, where a refusal of submit is reported.
local function tasks(ex, fn, nextargs, chunksize, limit)
  local T = { fs = {}, first = {}, index = {}, nt = 0, lo = 1, live = 0,
              inputs = 0, over = false }
  -- submit's arguments for fn(...): with a time limit, its table form
  local function call(...)
    if limit == nil then return ... end
    local t = pack(...)
    t.n, t.timeout = t.n - 1, limit
    return t
  end
  -- Submit the next task, if there is input left.
  function T.submit(up)
    if T.over then return false end
    local f, n
    if chunksize == 1 then
      local args = nextargs()
      if args == nil then T.over = true return false end
      f, n = submit(ex, up + 1, call(fn, unpack(args, 1, args.n))), 1
    else
      local chunk = {}
      for j = 1, chunksize do
        chunk[j] = nextargs()
        if chunk[j] == nil then T.over = true break end
      end
      if #chunk == 0 then return false end
      f, n = submitchunk(ex, up + 1, call(run_chunk, fn, chunk)), #chunk
    end
    T.nt, T.live = T.nt + 1, T.live + 1
    T.fs[T.nt], T.first[T.nt], T.index[f] = f, T.inputs + 1, T.nt
    T.inputs = T.inputs + n
    return true
  end
  -- Keep 'k' tasks submitted and not taken (k = nil: every task).
  function T.fill(k, up)
    local nt = T.nt
    while (k == nil or T.live < k) and T.submit(up + 1) do end
    if T.nt ~= nt then T.guard() end
  end
  -- A map left unfinished without its <close> (its iterator called by
  -- hand and dropped, or its loop in a coroutine never resumed) cancels
  -- what has not started once the iterator is collected, as Python's map
  -- does when its generator is. Lua finalizes the newest objects first,
  -- so a new guard follows each fill that submitted: it is finalized
  -- before the handles of the futures it cancels.
  function T.guard()
    if T.guarded then T.guarded.T = nil end
    T.guarded = setmetatable({ T = T }, MAP_GUARD)
  end
  function T.cancel()
    for t = T.lo, T.nt do
      local f = T.fs[t]
      if f then f:cancel() end
    end
    if T.waiter then getmetatable(T.waiter).__close(T.waiter) end
  end
  -- Task t is done: forget it and return its results (packed), or
  -- raise its error after cancelling the rest. A chunk that failed after
  -- its first call also cancels the rest, but returns its partial
  -- results (run_chunk): the caller raises its error after them.
  function T.take(t)
    local f = T.fs[t]
    T.fs[t], T.first[t], T.index[f] = nil, nil, nil
    T.live = T.live - 1
    while T.lo <= T.nt and T.fs[T.lo] == nil do T.lo = T.lo + 1 end
    local ok, r = pcall(function() return pack(f:result(0)) end)
    if ok then return r end
    T.cancel()
    if chunksize == 1 or type(r) ~= "table" or rawget(r, PARTIAL) ~= true then
      error(r, 0)
    end
    T.over = true  -- nothing more to submit
    return pack(r)
  end
  return T
end

-- The next task in submission order, once done; nil when none is left.
local function wait_ordered(T, opts)
  local t = T.lo
  if t > T.nt then return nil end
  local f = T.fs[t]
  local ok, err = pcall(f.result, f, remaining(opts))
  if not ok and not f:done() then T.cancel() error(err, 0) end
  return t  -- T.take raises a task's error
end

-- The next task to complete. With every task submitted up front, one
-- as_completed pass over them; with a buffer, a wait over the few
-- submitted ones.
local function wait_unordered(T, opts, buffered)
  if T.lo > T.nt then return nil end
  local ok, f
  if not buffered then
    if T.waiter == nil then
      local fs = {}
      for t = T.lo, T.nt do fs[#fs + 1] = T.fs[t] end
      local acstep, _, _, waiter = core.as_completed(fs, remaining(opts))
      T.acstep, T.waiter = acstep, waiter
    end
    ok, f = pcall(T.acstep)
  else
    T.ready = T.ready or {}
    if #T.ready == 0 then
      local pending = {}
      for t = T.lo, T.nt do pending[#pending + 1] = T.fs[t] end
      local done
      ok, done = pcall(core.wait, pending, remaining(opts), "FIRST_COMPLETED")
      if ok and #done == 0 then
        ok, done = false, core.TimeoutError(("%d (of %d) futures unfinished")
          :format(#pending, #pending))
      end
      if not ok then T.cancel() error(done, 0) end
      for k = #done, 1, -1 do T.ready[#T.ready + 1] = done[k] end
    end
    ok, f = true, table.remove(T.ready)
  end
  if not ok then T.cancel() error(f, 0) end
  return T.index[f]
end

--- Map `fn` over iterables in the pool: yields the index and the results
-- of `fn(xs[i], ys[i], ...)` in input order (the index makes a `nil`
-- result safe). Iterables are arrays or iterator functions, zipped,
-- stopping at the shortest; all tasks are submitted before the first
-- result is yielded. The table form `ex:map{fn, xs, ys, ...}` takes
-- options: `timeout` (seconds from the call), `chunksize` (inputs per
-- task), `ordered = false` (yield in completion order, each index once)
-- and `buffersize = k` (at most `k` tasks submitted ahead of the
-- consumer, inputs read lazily: an endless iterator maps in bounded
-- memory) and `task_timeout` (each task's time limit, as `submit`'s). A
-- call's error is raised when the iteration reaches it (in a chunk,
-- after the results of the calls before it, and as it would be without
-- chunks when the error or the results cannot cross); the remaining
-- tasks are then cancelled, as when the timeout passes (the task waited on
-- included), the loop is left early, or the iterator is collected
-- unfinished (called by hand, or in a coroutine never resumed). A chunk
-- stopped by its time limit raises at its first index.
-- @function Executor:map
-- @tparam function fn
-- @param xs an array or an iterator function; more may follow
-- @return an iterator for a generic `for`, with a to-be-closed value
-- @raise `TimeoutError` when `timeout` passes
-- @usage for i, sq in ex:map(function(x) return x * x end, {1, 2, 3}) do print(i, sq) end
-- @usage for i, v in ex:map{fetch, urls, ordered = false, buffersize = 8} do print(i, v) end
local function map(ex, ...)
  local fn, iterables, first, opts = check_map(ex, ...)
  local T = tasks(ex, fn, zip(iterables, first), opts.chunksize,
                  opts.task_timeout)
  local k, buffered = opts.buffersize, opts.buffersize ~= nil
  local chunk, ci, cfirst
  T.fill(k, 2)
  -- Yield the rest of a chunk's results before taking the next task;
  -- past a partial chunk's results, raise the error of its failed call.
  local function fromchunk()
    ci = ci + 1
    local r = chunk[ci]
    if r == nil then
      local err = chunk.err
      chunk = nil
      error(err, 0)
    end
    if ci == #chunk and not chunk[PARTIAL] then chunk = nil end
    return cfirst + ci - 1, unpack(r, 2, r.n)
  end
  local function step()
    if chunk then return fromchunk() end
    if buffered then T.fill(math.max(k, 1), 2) end  -- k = 0: one at a time
    local t
    if opts.ordered then t = wait_ordered(T, opts)
    else t = wait_unordered(T, opts, buffered) end
    if t == nil then return nil end
    local i = T.first[t]
    local r = T.take(t)
    if buffered then T.fill(k, 2) end  -- the next one starts meanwhile
    if opts.chunksize == 1 then return i, unpack(r, 1, r.n) end
    chunk, ci, cfirst = r[1], 0, i
    return fromchunk()
  end
  local closer = setmetatable({}, { __close = function() T.cancel() end })
  return step, nil, nil, closer
end

core.executor_methods.map = map

-- }==================================================================

-- {==================================================================
-- Composition: cf.all, cf.any, cf.async, cf.await
-- ===================================================================

-- Every handle of a future shares this metatable.
local FUTURE = getmetatable(core.Future())

-- The array of futures 'fs' (argument #1 of 'name'), checked; errors at
-- the caller of the function calling this.
local function futures(fs, name)
  if type(fs) ~= "table" then
    error(("bad argument #1 to '%s' (table of futures expected, got %s)")
      :format(name, typename(fs)), 3)
  end
  local list = {}
  for i = 1, length(fs, 1, name, 3) do
    local f = fs[i]
    if getmetatable(f) ~= FUTURE then
      error(("bad argument #1 to '%s' (future expected at index %d, got %s)")
        :format(name, i, typename(f)), 3)
    end
    list[i] = f
  end
  return list
end

-- A new future for cf.all, cf.any or cf.async; a refusal ("the Lua state
-- is closing", in a finalizer run by lua_close) reads as raised at the
-- line that called them, not in this file (called by pcall, the C
-- function's error has no position of its own).
local function newfuture()
  local ok, f = pcall(core.Future)
  if ok then return f end
  error(f, 3)  -- newfuture <- all, any or async <- their caller
end

-- The outcome of the done future 'f' packed: ok, values... or false,
-- error (CancelledError for a cancelled one).
local function outcome(f)
  return pack(pcall(f.result, f, 0))
end

-- Fail 'out' as 'f' failed: its error, and its traceback when it has one.
local function fail_like(out, f, err)
  local tb = f:traceback()
  if tb then core._fail(out, err, tb) else out:set_exception(err) end
end

-- Cancel the futures of 'list'. While the state closes, one whose
-- callbacks have all run may be finalized already: it is done, and
-- there is nothing to cancel.
local function cancel_all(list)
  for _, f in ipairs(list) do
    local ok, err = pcall(f.cancel, f)
    if not ok and not core._closing() then error(err, 0) end
  end
end

-- Once the combined future 'out' is done, its callback 'ondone' on the
-- futures of 'list' goes: one of them never done (a stop signal raced
-- by cf.any) kept it, with 'out', for ever. Cancelling 'out' cancels the
-- futures it waits on. This callback also keeps 'out' usable while the
-- state closes (a handle with callbacks pending keeps its future until
-- the state's owner goes, lfuture.c): an executor's finalizer that ends
-- the futures of 'list' then still completes 'out', and its callbacks run.
local function settles(out, list, ondone)
  out:add_done_callback(function()
    for _, f in ipairs(list) do core._uncallback(f, ondone) end
    if out:cancelled() then cancel_all(list) end
  end)
end

-- Add 'ondone' (with its index) to the futures of 'list' until 'out' is
-- done: a future done already may decide it as its callback is added,
-- and the callback on those after it would keep 'out' while they are
-- pending (settles let go of the ones added before).
local function adduntil(out, list, ondone)
  for i, f in ipairs(list) do
    if out:done() then return end
    f:add_done_callback(ondone, i)
  end
end

--- A future that completes when every future of `fs` has: its result is
-- an array whose i-th entry is the table of `fs[i]`'s results
-- (`{n =, ...}`). It fails with the first error (and that future's
-- traceback), then cancels the futures not yet started; cancelling it
-- cancels them too. It advances at this state's safe points.
-- @tparam {Future,...} fs an array of futures
-- @treturn Future
-- @usage local r = cf.all{ex:submit(f, 1), ex:submit(f, 2)}:result()
-- print(r[1][1], r[2][1])
function M.all(fs)
  local list = futures(fs, "all")
  local out, results, left = newfuture(), {}, #list
  if left == 0 then out:set_result(results) return out end
  local function ondone(f, i)
    if out:done() then return end
    local r = outcome(f)
    if r[1] then
      results[i] = pack(unpack(r, 2, r.n))
      left = left - 1
      if left == 0 then out:set_result(results) end
    else
      fail_like(out, f, r[2])
      cancel_all(list)
    end
  end
  settles(out, list, ondone)
  adduntil(out, list, ondone)
  return out
end

--- A future of the results of the first future of `fs` to succeed; it
-- fails only once all have failed, with the last error. Cancelling it
-- cancels the futures of `fs`.
-- @tparam {Future,...} fs a non-empty array of futures
-- @treturn Future
-- @usage local fastest = cf.any{ex:submit(mirror1), ex:submit(mirror2)}:result()
function M.any(fs)
  local list = futures(fs, "any")
  if #list == 0 then
    error("bad argument #1 to 'any' (non-empty table of futures expected)", 2)
  end
  local out, left = newfuture(), #list
  local function ondone(f)
    if out:done() then return end
    local r = outcome(f)
    left = left - 1
    if r[1] then
      out:set_result(unpack(r, 2, r.n))
    elseif left == 0 then
      fail_like(out, f, r[2])
    end
  end
  settles(out, list, ondone)
  adduntil(out, list, ondone)
  return out
end

local AWAIT = {}  -- what cf.await yields to the driver of its coroutine
local WAKE = {}   -- what the driver resumes it with: a resume by hand lacks it
-- coroutine of cf.async -> its run: { out = its future, co = it, hold =
-- core._asyncstoppable's, sig = the future a running cancel of 'out'
-- cancels, done = its end was settled (endrun), quiet = its coroutine
-- ends or closes as the driver knows (not by hand), stop = a running
-- cancel came while the coroutine ran, unwait = what lets go of the
-- await it is suspended in }
local asyncs = setmetatable({}, { __mode = "k" })

-- The message a traceback starts with, for any error value, as lua.c
-- makes it: its __tostring's string, else what type it is. Never
-- raises: the run would stay unfinished, its future pending for ever.
local function errmsg(err)
  if type(err) == "string" or math.type(err) then return tostring(err) end
  local mt = debug.getmetatable(err)
  if type(mt) == "table" and rawget(mt, "__tostring") ~= nil then
    local ok, s = pcall(tostring, err)
    if ok and type(s) == "string" then return s end
  end
  return ("(error object is a %s value)"):format(type(err))
end

-- The run has ended: no running cancel can come any more. True if its
-- future needs no completing: a running cancel came (it is then
-- CANCELLED, and this state's callbacks of it have run), or the user
-- completed it by hand (set_result on it); else the caller completes it.
local function endrun(run)
  run.done, run.quiet = true, true
  asyncs[run.co] = nil
  if run.unwait then run.unwait() end  -- it ends while it awaits
  run.sig:cancel()  -- lets go of its callback (and of 'run')
  if core._asyncend(run.hold) then
    run.out:cancel()  -- (cancelled already: runs the callbacks now)
    return true
  end
  return run.out:done()
end

-- End the run 'run', which its driver no longer resumes, failing its
-- future with 'msg' (and 'tb').
local function abandon(run, msg, tb)
  if run.done then return end
  if not endrun(run) then
    core._fail(run.out, msg, tb or debug.traceback(msg, 2))
  end
end

-- A running cancel of the future (its 'sig' cancelled): stop the run,
-- closing its coroutine, once it is suspended in cf.await; one that runs
-- (a safe point inside it ran this) stops at its next await or its end.
local function stoprun(run)
  if run.done then return end
  if coroutine.status(run.co) ~= "suspended" then
    run.stop = true
    return
  end
  run.quiet = true
  coroutine.close(run.co)  -- its to-be-closed variables close
  endrun(run)
end

-- A to-be-closed variable of every cf.async coroutine: closed when its
-- function returns, or by coroutine.close: by the driver (quiet), else
-- by hand, which must not leave the future pending for ever.
local RUN = {
  __close = function(run)
    if not run.quiet then
      abandon(run, "cf.async coroutine closed by hand (coroutine.close)")
    end
  end,
}

-- The function of a cf.async coroutine: 'fn(...)' inside its run.
local function body(run, fn, ...)
  local _ <close> = run
  local r = pack(fn(...))
  run.quiet = true
  return unpack(r, 1, r.n)
end

-- Resume the coroutine of the run 'run' with ...; it runs up to its next
-- cf.await on a pending future, whose done-callback (or its timer's)
-- resumes it at one of the state's safe points.
local function advance(run, ...)
  local co, out = run.co, run.out
  if run.done then return end  -- stopped, closed or resumed by hand
  local r = pack(coroutine.resume(co, ...))
  if run.done then return end
  if coroutine.status(co) == "dead" then
    if r[1] then
      if not endrun(run) then out:set_result(unpack(r, 2, r.n)) end
      return
    end
    -- its to-be-closed variables close as the error leaves it (as
    -- coroutine.wrap does), before the future fails; one that raises
    -- replaces the error (close returns the error it ends with)
    local err, tb = r[2], debug.traceback(co, errmsg(r[2]))
    run.quiet = true
    local _, cerr = coroutine.close(co)
    if not rawequal(cerr, err) then err, tb = cerr, errmsg(cerr) end
    if not endrun(run) then core._fail(out, err, tb) end
    return
  end
  if r[2] ~= AWAIT then
    local msg = "attempt to yield from a cf.async function outside cf.await"
    local tb = debug.traceback(co, msg)
    run.quiet = true
    coroutine.close(co)  -- it is never resumed: close its variables now
    abandon(run, msg, tb)
    return
  end
  if run.stop then return stoprun(run) end
  local f, timeout = r[3], r[4]
  local resumed, timer, wake = false, nil, nil
  -- The await is over: let go of its callbacks on 'f' and on its timer,
  -- which hold the run ('f' may never be done, the timer be far off).
  -- When it timed out, when 'f' is done, and when the run ends while it
  -- waits (a running cancel, a resume or close by hand: endrun).
  local function unwait()
    resumed, run.unwait = true, nil
    core._uncallback(f, wake)
    if timer then
      core._untimer(timer)
      timer:cancel()
    end
  end
  function wake(_, timedout)
    if resumed then return end
    -- a wake-up while the state closes (a callback an executor's
    -- finalizer runs, a timeout firing then) finds the run's handles
    -- finalized, or about to be: the run is left suspended, as Lua
    -- leaves a coroutine at lua_close
    if core._closing() then
      resumed = true
      return
    end
    unwait()
    advance(run, WAKE, timedout)
  end
  run.unwait = unwait
  if timeout then
    timer = core.Future()
    if core._timer(timer, timeout) then
      timer:add_done_callback(wake, true)
    else
      timer = nil  -- forever
    end
  end
  -- a timeout short enough has woken it already, inside
  -- add_done_callback: then 'f' needs no callback (it would stay)
  if not resumed then f:add_done_callback(wake, false) end
end

--- Run `fn(...)` as a coroutine of this state, at once up to its first
-- `await` of a pending future. The coroutine is then suspended and
-- resumed from that future's done-callback, so it advances at this
-- state's safe points (`dispatch`, any blocking call): with `notify_fd`
-- in an event loop, code inside reads sequentially and never blocks the
-- loop.
-- @tparam function fn
-- @param ... its arguments
-- @treturn Future of `fn`'s results; it fails with `fn`'s error and the
-- coroutine's traceback (`Future:traceback`)
-- @usage local job = cf.async(function()
--   local a = cf.await(ex:submit(step1))
--   return cf.await(ex:submit(step2, a))
-- end)
function M.async(fn, ...)
  if not callable(fn) then
    error(("bad argument #1 to 'async' (function expected, got %s)"):format(typename(fn)), 2)
  end
  local out, sig = newfuture(), newfuture()
  local co = coroutine.create(body)
  out:set_running_or_notify_cancel()
  local run = setmetatable({ out = out, co = co, sig = sig,
                             hold = core._asyncstoppable(out, sig) }, RUN)
  asyncs[co] = run
  sig:add_done_callback(function()
    if not core._closing() then stoprun(run) end  -- (as wake)
  end)
  advance(run, run, fn, ...)
  return out
end

--- The results of `f`. Inside a coroutine made by `async`, only that
-- coroutine waits for them; anywhere else it is `f:result(timeout)`.
-- @tparam Future f
-- @tparam[opt] number timeout seconds; `nil` waits forever
-- @return `f`'s results
-- @raise `TimeoutError` (inside the coroutine) when `timeout` passes,
-- `CancelledError`, or `f`'s own error
function M.await(f, timeout)
  if getmetatable(f) ~= FUTURE then
    error(("bad argument #1 to 'await' (future expected, got %s)"):format(typename(f)), 2)
  end
  if timeout ~= nil then
    if type(timeout) ~= "number" then
      error(("bad argument #2 to 'await' (number expected, got %s)"):format(typename(timeout)), 2)
    elseif timeout ~= timeout then
      error("bad argument #2 to 'await' (timeout is not a number (NaN))", 2)
    elseif timeout < 0 then
      error("bad argument #2 to 'await' (timeout must be non-negative)", 2)
    end
  end
  local co = coroutine.running()
  local run = asyncs[co]
  if not run then return f:result(timeout) end
  -- its own future pending: it would wait for ever, since only its end
  -- completes it (asyncio refuses it too: "Task cannot await on itself")
  if rawequal(f, run.out) and not f:done() then
    error("bad argument #1 to 'await' (a cf.async coroutine cannot await its own future)", 2)
  end
  if not f:done() then
    if timeout == 0 then error(core.TimeoutError("await timed out")) end
    local by, timedout = coroutine.yield(AWAIT, f, timeout)
    if by ~= WAKE then
      local msg = "cf.async coroutine resumed by hand (coroutine.resume) " ..
                  "while it awaited a future"
      if asyncs[co] then abandon(run, msg) end
      error(msg, 2)
    end
    if timedout then error(core.TimeoutError("await timed out")) end
  end
  return f:result(0)
end

-- }==================================================================

M.progress = require("concurrent.progress").progress


return M
