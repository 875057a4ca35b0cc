-- Pending thread-pool tasks: what each one holds while it waits (issue 11,
-- memory), and that it still runs as it was sent.
local cf = require "concurrent.futures"

-- A pool whose workers are all held on 'gate' until the test opens it.
local function heldpool(n)
  local ex = cf.ThreadPoolExecutor(n)
  local gate = cf.Future()
  for _ = 1, n do ex:submit(function(g) return g:result() end, gate) end
  while ex:stats().running < n do end
  return ex, gate
end

describe("pending thread-pool tasks", function()
  it("run a function that the sender has let go of meanwhile", function()
    -- a thread pool's task names its function's cached dump; the dump
    -- must outlive the sender's function and its cache entry
    local ex, gate = heldpool(1)
    local fs = {}
    for i = 1, 50 do
      local f = load("return function(x) return x * " .. i .. " end")()
      fs[i] = ex:submit(f, i)
    end
    collectgarbage() collectgarbage()
    gate:set_result(true)
    for i = 1, 50 do assert.equal(i * i, fs[i]:result()) end
    ex:shutdown()
  end)

  it("share one dump between tasks but keep each one's upvalues", function()
    local ex, gate = heldpool(1)
    local function mk(k) return function(x) return x + k end end
    local fs = {}
    for i = 1, 20 do fs[i] = ex:submit(mk(i * 100), i) end
    gate:set_result(true)
    for i = 1, 20 do assert.equal(i * 100 + i, fs[i]:result()) end
    ex:shutdown()
  end)

  it("keep the line numbers of the function's tracebacks", function()
    local ex = cf.ThreadPoolExecutor(1)
    local fut = ex:submit(function()
      error("boom")  -- this line is in the message
    end)
    local ok, err = pcall(fut.result, fut)
    assert.is_false(ok)
    local line = debug.getinfo(1, "l").currentline - 4
    assert.matches("17%-pending_spec%.lua:" .. line .. ": boom", tostring(err))
    ex:shutdown()
  end)

  it("send the same function to a process pool as bytes", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local k = 7
    local f = function(x) return x * k end
    local t = cf.ThreadPoolExecutor(1)
    assert.equal(21, t:submit(f, 3):result())  -- cached for a thread pool
    assert.equal(42, ex:submit(f, 6):result())  -- still crosses as bytes
    t:shutdown()
  end)
end)
