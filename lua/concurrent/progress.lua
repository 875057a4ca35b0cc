-- concurrent.progress: cf.progress, a progress bar for long fan-outs. It
-- wraps cf.as_completed (or an array of futures) or a map iterator and
-- redraws one terminal line, "label  37/100  37% |####  |  12.5/s  ETA
-- 5s", at most 10 times a second.

--- @submodule concurrent.futures

local core = require "concurrent.core"

local type, floor = type, math.floor

-- Redraws at most this often (seconds), so a fast loop spends its time
-- on the work, not on the terminal.
local INTERVAL = 0.1
local BARWIDTH = 20

-- Is the file 'out' a terminal? Pure Lua has no isatty: a shell started
-- by os.execute inherits our descriptors 1 and 2 and can test them.
local function isterminal(out)
  local fd = out == io.stderr and 2 or out == io.stdout and 1 or nil
  return fd ~= nil and os.execute("test -t " .. fd) == true
end

local function duration(s)
  s = floor(s + 0.5)
  if s >= 3600 then return ("%dh%02dm"):format(s // 3600, s % 3600 // 60) end
  if s >= 60 then return ("%dm%02ds"):format(s // 60, s % 60) end
  return ("%ds"):format(s)
end

-- The line for 'count' of 'total' (nil: unknown) after 'elapsed' seconds.
local function line(label, count, total, elapsed)
  local rate = elapsed > 0 and count / elapsed or 0
  local parts = { label ~= "" and label or nil }
  if total and total > 0 then
    local frac = math.min(count / total, 1)
    local full = floor(frac * BARWIDTH)
    parts[#parts + 1] = ("%d/%d %3d%% |%s%s|"):format(count, total,
      floor(frac * 100), ("#"):rep(full), (" "):rep(BARWIDTH - full))
  else
    parts[#parts + 1] = tostring(count)
  end
  parts[#parts + 1] = ("%.1f/s"):format(rate)
  if total and rate > 0 and count < total then
    parts[#parts + 1] = "ETA " .. duration((total - count) / rate)
  end
  return table.concat(parts, "  ")
end

local function checkopts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("bad argument #2 to 'progress' (table expected, got %s)"):format(type(opts)), 3)
  end
  if opts.total ~= nil and math.type(opts.total) ~= "integer" then
    error("bad argument #2 to 'progress' (total must be an integer)", 3)
  end
  return opts
end

--- Wrap a fan-out in a progress bar: one terminal line (count, percent,
-- bar, rate, ETA) redrawn at most 10 times a second.
-- `for f in cf.progress(fs) do` yields the futures of the array `fs` as
-- they complete (it wraps `cf.as_completed(fs)`, `total` is `#fs`).
-- `for i, v in cf.progress(ex:map(fn, xs), {total = #xs}) do` yields what
-- the iterator yields; any generic-for iterator function works. The line
-- is drawn only when `out` is a terminal, unless `force` is set; the loop
-- ends it with a newline, also when left by `break` or an error.
-- @param iterable an array of futures, or an iterator function
-- @tparam[opt] table opts `total` (integer: how many steps; default `#fs`
-- for an array, else unknown), `out` (file, default `io.stderr`), `label`
-- (string, default `""`), `force` (boolean: draw even when `out` is not a
-- terminal), `clock` (function returning seconds, default monotonic)
-- @return an iterator, and a to-be-closed value that ends the line
-- @usage for f in cf.progress(fs, {label = "pages"}) do print(f:result()) end
-- @function progress
-- @within functions
local function progress(iterable, opts)
  opts = checkopts(opts)
  local total = opts.total
  local nextstep
  if type(iterable) == "table" then
    total = total or #iterable
    nextstep = core.as_completed(iterable)
  elseif type(iterable) == "function" then
    nextstep = iterable
  else
    error(("bad argument #1 to 'progress' (table of futures or iterator expected, got %s)")
      :format(type(iterable)), 2)
  end
  local out = opts.out or io.stderr
  local label = opts.label or ""
  local clock = opts.clock or core.now
  local draw = opts.force or isterminal(out)
  local start = clock()
  local count, last, finished, control = 0, nil, false, nil

  local function redraw()
    out:write("\r", line(label, count, total, clock() - start), "\27[K")
    out:flush()
  end

  local function finish()
    if finished then return end
    finished = true
    if draw then
      redraw()
      out:write("\n")
    end
  end

  local function after(...)
    control = ...
    if control == nil then
      finish()
      return nil
    end
    count = count + 1
    if draw then
      local now = clock()
      if last == nil or now - last >= INTERVAL then
        last = now
        redraw()
      end
    end
    return ...
  end

  local function step()
    if finished then return nil end
    return after(nextstep(nil, control))
  end

  if draw then redraw() end
  return step, nil, nil, setmetatable({}, { __close = finish })
end

return { progress = progress }
