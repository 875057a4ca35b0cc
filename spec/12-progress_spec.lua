-- cf.progress: one line redrawn on a terminal (read through a
-- pseudo-terminal made by script(1)), nothing on a plain file unless
-- forced, at most 10 redraws a second.

local cf = require "concurrent.futures"

local function tmpscript(code)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath))
  f:write(code)
  f:close()
  return name
end

-- Run a Lua chunk with its stdout and stderr on a pseudo-terminal; what
-- the terminal received.
local function onterminal(code)
  local name = tmpscript(code)
  local lua = os.getenv("SPEC_LUA") or "lua5.4"
  local p = assert(io.popen(("script -qec '%s %s' /dev/null"):format(lua, name)))
  local out = p:read("a")
  local ok = p:close()
  os.remove(name)
  assert(ok, out)
  return out
end

-- The terminal line as a reader sees it at the end: each \r starts the
-- line over, \27[K clears the rest.
local function screen(out)
  local lines = {}
  for raw in out:gsub("\r\n", "\n"):gmatch("([^\n]*)\n") do
    local shown = raw:match("([^\r]*)$"):gsub("\27%[K", "")
    lines[#lines + 1] = shown
  end
  return lines
end

local function readfile(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- A clock that advances 'step' seconds at each reading.
local function fakeclock(step)
  local t = 0
  return function() t = t + step return t end
end

describe("cf.progress", function()
  it("redraws one line on a terminal and ends it with a newline", function()
    local out = onterminal([[
      local cf = require "concurrent.futures"
      local ex <close> = cf.ThreadPoolExecutor(2)
      local fs = {}
      for i = 1, 8 do fs[i] = ex:submit(function(k) return k end, i) end
      local sum = 0
      for f in cf.progress(fs, { label = "tasks" }) do sum = sum + f:result() end
      print("sum", sum)
      for _ in cf.progress(ex:map(function(x) return x end, { 1, 2, 3 }),
                           { total = 3, label = "mapped", out = io.stdout }) do end
    ]])
    assert.matches("\r", out, 1, true)
    local lines = screen(out)
    assert.matches("^tasks  8/8 100%% |#+|  [%d.]+/s$", lines[1])
    assert.equal("sum\t36", lines[2])
    assert.matches("^mapped  3/3 100%% |#+|  [%d.]+/s$", lines[3])
  end)

  -- An iterator of n steps, as a generic for calls it.
  local function steps(n)
    return function(_, i)
      i = (i or 0) + 1
      if i <= n then return i end
    end
  end

  local function tofile(fn)
    local name = os.tmpname()
    local file = assert(io.open(name, "w"))
    fn(file)
    file:close()
    local s = readfile(name)
    os.remove(name)
    return s
  end

  it("draws nothing on a plain file unless forced", function()
    local seen = 0
    assert.equal("", tofile(function(file)
      for _ in cf.progress(steps(5), { out = file, total = 5 }) do seen = seen + 1 end
    end))
    assert.equal(5, seen)
    local fs = {}
    for i = 1, 4 do
      fs[i] = cf.Future()
      fs[i]:set_result(i)
    end
    local out = tofile(function(file)
      for _ in cf.progress(fs, { out = file, force = true, label = "x",
                                 clock = fakeclock(1) }) do end
    end)
    assert.matches("^x  4/4 100%% |####################|  [%d.]+/s$", screen(out)[1])
    assert.equal(1, #screen(out))
  end)

  it("redraws at most 10 times a second", function()
    local out = tofile(function(file)
      for _ in cf.progress(steps(1000), { out = file, force = true, total = 1000,
                                          clock = fakeclock(0.001) }) do end
    end)
    -- 1000 steps read the clock about 1,020 times: about 2 s, 20 redraws
    local _, redraws = out:gsub("\r", "")
    assert.is_true(redraws >= 10 and redraws <= 25, tostring(redraws))
    assert.matches("1000/1000 100%", screen(out)[1], 1, true)
  end)

  it("ends the line when the loop is left early", function()
    local out = tofile(function(file)
      for i in cf.progress(steps(10), { out = file, force = true, total = 10 }) do
        if i == 3 then break end
      end
    end)
    assert.matches("^3/10  30%% |######", screen(out)[1])
    assert.matches("ETA", screen(out)[1], 1, true)
    assert.equal("\n", out:sub(-1))
  end)

  it("checks its arguments", function()
    assert.has_error(function() cf.progress(42) end,
      "bad argument #1 to 'progress' (table of futures or iterator expected, got number)")
    assert.has_error(function() cf.progress({}, 5) end,
      "bad argument #2 to 'progress' (table expected, got number)")
    assert.has_error(function() cf.progress({}, { total = 1.5 }) end,
      "bad argument #2 to 'progress' (total must be an integer)")
  end)
end)
