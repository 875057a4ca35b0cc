-- The owner's mailbox: cf.dispatch, cf.notify_fd polled by an event loop
-- (luv), callback errors on stderr, and callbacks that do not nest.

local cf = require "concurrent.futures"
local th = require "testhelper"
local helpers = require "spec.helpers"

describe("cf.dispatch", function()
  it("returns 0 at once without a timeout when nothing is ready", function()
    assert.equal(0, cf.dispatch())
    assert.equal(0, cf.dispatch(0))
  end)

  it("waits up to its timeout for a callback and counts what ran", function()
    local fs = { cf.Future(), cf.Future() }
    local ran = 0
    for _, f in ipairs(fs) do
      f:add_done_callback(function() ran = ran + 1 end)
      f:add_done_callback(function() ran = ran + 1 end)
    end
    local job = th.complete(fs, 0.02, "result", 0)
    local n = 0
    while n < 4 do n = n + cf.dispatch(10) end
    job:join()
    assert.equal(4, n)
    assert.equal(4, ran)
    assert.equal(0, cf.dispatch(0.01))
  end)

  -- issue 9, item 9: now + 2^63 s overflowed time_t and expired at once
  it("waits for a callback with a huge timeout (math.maxinteger, 1e300)", function()
    for _, t in ipairs({ math.maxinteger, 1e300 }) do
      local f = cf.Future()
      local ran = 0
      f:add_done_callback(function() ran = ran + 1 end)
      local job = th.complete({ f }, 0.01, "result", 0)
      assert.equal(1, cf.dispatch(t))
      job:join()
      assert.equal(1, ran)
    end
  end)

  it("refuses a negative timeout", function()
    local ok, err = pcall(function() return cf.dispatch(-1) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'dispatch'", err)
  end)

  it("runs no callback inside a callback; they run after it returns", function()
    local a, b = cf.Future(), cf.Future()
    local order = {}
    a:add_done_callback(function()
      order[#order + 1] = "a start"
      assert.equal(0, cf.dispatch(0.05))  -- b is ready, but must wait
      order[#order + 1] = "a end"
    end)
    b:add_done_callback(function() order[#order + 1] = "b" end)
    local job = th.complete({ a, b }, 0, "result", 0)
    assert.is_true(th.wait_c(b, 10))
    job:join()
    local n = 0
    while n < 2 do n = n + cf.dispatch(1) end
    assert.same({ "a start", "a end", "b" }, order)
  end)
end)

describe("cf.notify_fd", function()
  it("is readable while callbacks are pending, for an event loop", function()
    local uv = require "luv"
    local fd = cf.notify_fd()
    assert.is_true(math.type(fd) == "integer" and fd >= 0)
    assert.equal(fd, cf.notify_fd())
    local f = cf.Future()
    local got
    f:add_done_callback(function(fut) got = fut:result() end)
    local poll = uv.new_poll(fd)
    local timer = uv.new_timer()
    local dispatched = 0
    poll:start("r", function()
      dispatched = dispatched + cf.dispatch(0)
      if got then poll:stop() timer:stop() end
    end)
    timer:start(10000, 0, function() poll:stop() end)
    local job = th.complete({ f }, 0.02, "result", 41)
    uv.run()
    job:join()
    poll:close() timer:close()
    uv.run()
    assert.equal(42, got)
    assert.equal(1, dispatched)
  end)

  it("is not readable when nothing is pending", function()
    local uv = require "luv"
    cf.dispatch()
    local poll = uv.new_poll(cf.notify_fd())
    local timer = uv.new_timer()
    local readable = false
    poll:start("r", function() readable = true poll:stop() end)
    timer:start(30, 0, function() poll:stop() end)
    uv.run()
    poll:close() timer:close()
    uv.run()
    assert.is_false(readable)
  end)
end)

describe("callback errors", function()
  it("are reported on stderr without stopping the other callbacks", function()
    local out, ok = helpers.run_lua [[
      local cf = require "concurrent.futures"
      local f = cf.Future()
      f:add_done_callback(function() error("callback exploded") end)
      f:add_done_callback(function() print("second ran") end)
      f:set_result(1)
      print("after", f:result())
    ]]
    assert.is_true(ok)
    assert.matches("concurrent: error in done callback: .*callback exploded", out)
    assert.matches("second ran", out)
    assert.matches("after\t1", out)
  end)
end)
