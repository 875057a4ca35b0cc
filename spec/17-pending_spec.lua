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

  it("keep an outcome a host gave a running task's future", function()
    -- the room of a running future's stopper is its outcome's once it
    -- finished: the task's end must not touch it
    local th = require "testhelper"
    local ex = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    local fut = ex:submit(function(g) return g:result() end, gate)
    while ex:stats().running < 1 do end
    local calls = th.c_callback(fut)
    assert.equal(0, th.complete({fut}, 0, "result", 10):join())
    assert.is_false(fut:cancel({running = true}))  -- done already
    gate:set_result("late")
    ex:shutdown()
    assert.equal(11, fut:result())
    assert.equal(1, calls:get())
  end)

  it("run C callbacks once, in order, beside waiters", function()
    local th = require "testhelper"
    local f = cf.Future()
    local c1 = th.c_callback(f)
    local done = cf.as_completed({f}, 5)  -- a watcher between callbacks
    local c2 = th.c_callback(f)
    local job = th.complete({f}, 0.01, "result", 1)
    assert.equal(f, done())
    assert.equal(0, job:join())
    assert.equal(1, c1:get())
    assert.equal(1, c2:get())
    assert.equal(2, f:result())
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
