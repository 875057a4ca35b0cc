-- concurrent.futures: the public module. The C module concurrent.core
-- holds futures, waiting, callbacks and executors; this file adds the
-- parts that read best in Lua (partial, map) and re-exports the rest.

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
  "ThreadPoolExecutor",
} do
  M[name] = core[name]
end

local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

-- cf.partial(fn, ...): a plain Lua closure (so it can be submitted) that
-- calls fn with the bound arguments first, then its own.
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
    return o[1], its, o.timeout, o.chunksize, 1
  end
  return fn, pack(...), nil, nil, 2
end

local function map(ex, ...)
  local fn, iterables, timeout, chunksize, first = map_options(...)
  if not callable(fn) then
    error(("bad argument #1 to 'map' (function expected, got %s)"):format(type(fn)), 2)
  end
  if iterables.n == 0 then
    error("bad argument #2 to 'map' (at least one iterable expected)", 2)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout) then
    error("bad argument #1 to 'map' (timeout must be a non-negative number)", 2)
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
      fs[i] = ex:submit(fn, unpack(args, 1, args.n))
    end
  else
    for c = 1, #calls, chunksize do
      local chunk = { unpack(calls, c, math.min(c + chunksize - 1, #calls)) }
      fs[#fs + 1] = ex:submit(run_chunk, fn, chunk)
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
