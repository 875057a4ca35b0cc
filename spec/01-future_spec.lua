-- Future on its own: states, results, exceptions, timeouts, cancel rules,
-- callbacks, and completion from host threads through the C API.

local cf = require "concurrent.futures"
local th = require "testhelper"
local helpers = require "spec.helpers"

describe("Future", function()
  it("starts pending and shows its state in tostring", function()
    local f = cf.Future()
    assert.equal("Future<pending>", tostring(f))
    assert.is_false(f:done())
    assert.is_false(f:running())
    assert.is_false(f:cancelled())
    assert.is_true(f:set_running_or_notify_cancel())
    assert.equal("Future<running>", tostring(f))
    assert.is_true(f:running())
    f:set_result(1)
    assert.equal("Future<finished>", tostring(f))
    assert.is_true(f:done())
  end)

  it("returns every value given to set_result, nils included", function()
    local f = cf.Future()
    f:set_result(1, nil, "three", nil)
    local r = table.pack(f:result())
    assert.equal(4, r.n)
    assert.same({ 1, nil, "three", nil, n = 4 }, r)
  end)

  it("returns the very same tables on every call in the setting state", function()
    local f = cf.Future()
    local t = { x = 1 }
    f:set_result(t)
    assert.equal(t, f:result())
    assert.equal(f:result(), f:result())
    assert.is_nil(f:exception())
  end)

  it("re-raises the error value of set_exception, and exception() returns it", function()
    local f = cf.Future()
    local e = { code = 42 }
    f:set_exception(e)
    local ok, err = pcall(f.result, f)
    assert.is_false(ok)
    assert.equal(e, err)
    assert.equal(e, f:exception())
    assert.is_nil(f:traceback())
  end)

  -- API.md: "the worker-side traceback string of a failed task, or nil";
  -- it gave no value at all for a pending or successful future, so that
  -- type(f:traceback()) raised "value expected".
  it("gives one value from traceback(), nil where there is none", function()
    local f = cf.Future()
    assert.equal(1, select("#", f:traceback()))
    assert.equal("nil", type(f:traceback()))
    f:set_result(1)
    assert.equal(1, select("#", f:traceback()))
    -- so does exception() for a success ("or nil if it succeeded")
    assert.equal(1, select("#", f:exception()))
    local ex <close> = cf.ThreadPoolExecutor(1)
    assert.equal(1, select("#", ex:submit(function() return 1, 2 end):exception(10)))
    local g = cf.Future()
    g:set_exception("e")
    assert.equal(1, select("#", g:traceback()))
    local h = cf.Future()
    h:cancel()
    assert.equal(1, select("#", h:traceback()))
  end)

  it("turns a nil exception into lua.c's message and keeps false", function()
    local f = cf.Future()
    f:set_exception(nil)
    assert.equal("(error object is a nil value)", f:exception())
    local g = cf.Future()
    g:set_exception(false)
    assert.equal(false, g:exception())
    local ok, err = pcall(g.result, g)
    assert.is_false(ok)
    assert.equal(false, err)
  end)

  it("may hold itself as its result, in the setting state", function()
    local f = cf.Future()
    f:set_result(f, { f })
    local a, b = f:result()
    assert.equal(f, a)
    assert.equal(f, b[1])
  end)

  -- issue 9, item 7: a -> b -> a through results leaked both futures
  it("frees futures that hold each other through their results", function()
    -- under a sanitizer host, whose quarantine keeps freed memory, a few
    -- cycles and its leak checker (the exit status) tell instead
    local sanitized = (os.getenv("SPEC_LUA") or "lua5.4") ~= (os.getenv("LUA") or "lua5.4")
    local out, ok = helpers.run_lua((sanitized and "SANITIZED = true\n" or "") .. [[
      local cf = require "concurrent.futures"
      local function rss()
        local f = io.open("/proc/self/statm")
        local _, r = f:read("n", "n")
        f:close()
        return r * 4096
      end
      local function round()
        for _ = 1, SANITIZED and 10 or 20000 do
          local a, b, c = cf.Future(), cf.Future(), cf.Future()
          a:set_result(b)
          b:set_result({ c })
          c:set_result(a)
          assert(c:result() == a and a:result() == b)
        end
        collectgarbage()
        collectgarbage()
      end
      round()
      local r0 = rss()
      for _ = 1, 5 do round() end
      -- a leak is 300k futures and payloads (over 50 MB)
      print(("grew %d MB"):format((rss() - r0) // 2^20))
    ]])
    assert.is_true(ok, out)
    local mb = tonumber(out:match("grew (%d+) MB"))
    assert.is_true(mb ~= nil and (sanitized or mb < 16), out)
  end)

  it("fails a task whose results would reach its own future", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local gate, g = cf.Future(), cf.Future()
    local f = ex:submit(function(gt, x) gt:result() return x end, gate, g)
    g:set_result(f)  -- f runs still: no cycle yet
    gate:set_result(true)
    local ok, err = pcall(f.result, f)
    assert.is_false(ok)
    assert.is_true(cf.InvalidStateError:is(err))
    assert.equal("a task's outcome cannot hold its own future", err.message)
    assert.equal(f, g:result())
  end)

  -- issue 9, item 5: a worker state ran Lua's incremental collector,
  -- under which short-lived finalized futures piled up (44 MB)
  it("made and dropped inside a task are reclaimed as they go", function()
    local ex = cf.ThreadPoolExecutor(1)
    local kb = ex:submit(function()
      local f = require("concurrent.futures").Future
      local peak = 0
      for i = 1, 6e5 do
        local _ = f()
        if i % 1000 == 0 then peak = math.max(peak, collectgarbage("count")) end
      end
      return peak
    end):result()
    ex:shutdown()
    assert.is_true(kb < 8 * 1024, kb .. " KB")
  end)

  it("raises InvalidStateError when set twice", function()
    local f = cf.Future()
    f:set_result(1)
    local ok, err = pcall(f.set_result, f, 2)
    assert.is_false(ok)
    assert.is_true(cf.InvalidStateError:is(err))
    ok, err = pcall(f.set_exception, f, "x")
    assert.is_false(ok)
    assert.is_true(cf.InvalidStateError:is(err))
    assert.equal(1, f:result())
  end)

  it("raises InvalidStateError from set_running_or_notify_cancel when not pending", function()
    local f = cf.Future()
    f:set_running_or_notify_cancel()
    local ok, err = pcall(f.set_running_or_notify_cancel, f)
    assert.is_false(ok)
    assert.is_true(cf.InvalidStateError:is(err))
    assert.matches("running", err.message)
  end)

  describe("timeouts", function()
    it("result(0) on a pending future raises TimeoutError at once", function()
      local f = cf.Future()
      local t0 = os.clock()
      local ok, err = pcall(f.result, f, 0)
      assert.is_false(ok)
      assert.is_true(cf.TimeoutError:is(err))
      assert.is_string(err.message)
      assert.is_true(os.clock() - t0 < 0.5)
    end)

    it("exception(timeout) waits about that long, then raises TimeoutError", function()
      local f = cf.Future()
      local ok, err = pcall(f.exception, f, 0.05)
      assert.is_false(ok)
      assert.is_true(cf.TimeoutError:is(err))
    end)

    it("refuses a negative or non-number timeout with an argument error", function()
      local f = cf.Future()
      local ok, err = pcall(function() return f:result(-1) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'result' %(timeout must be non%-negative%)", err)
      ok, err = pcall(function() return f:exception("soon") end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'exception' %(number expected, got string%)", err)
      ok, err = pcall(f.result, f, 0 / 0)
      assert.is_false(ok)
      assert.matches("bad argument #%d to '%?' %(timeout is not a number %(NaN%)%)", err)
      -- a numeric string is no number either, as for map and await (it
      -- was converted here only)
      ok, err = pcall(function() return f:result("1") end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'result' %(number expected, got string%)", err)
      ok, err = pcall(function() return cf.wait({ f }, "1") end)
      assert.is_false(ok)
      assert.matches("bad argument #2 to 'wait' %(number expected, got string%)", err)
      ok, err = pcall(cf.dispatch, "0")
      assert.is_false(ok)
      assert.matches("bad argument #1 to '[%w.]*dispatch' %(number expected, got string%)", err)
    end)

    -- issue 9, item 9: now + 2^63 s overflowed time_t and expired at once
    it("treats a timeout of 2^63 s or more (or inf) as forever", function()
      for _, t in ipairs({ math.maxinteger, 2^63, 1e19, 1e300, math.huge }) do
        local f = cf.Future()
        local job = th.complete({ f }, 0.01, "result", 1)
        assert.equal(2, f:result(t))
        job:join()
        local g = cf.Future()
        job = th.complete({ g }, 0.01, "exception", "late")
        assert.equal("late", g:exception(t))
        job:join()
      end
    end)
  end)

  -- issue 9: lua.c's SIGINT handler sets a hook, which a blocked wait
  -- never ran: the first Ctrl-C was lost, the second killed the process
  describe("Ctrl-C in lua5.4", function()
    -- Start 'code' in lua5.4 with a file to create once it is about to
    -- block (arg[1]), send SIGINT once it blocks, and return its exit status and
    -- stderr (a process still alive 5 s later is killed: "hung").
    local function interrupt(code)
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. dir))
      local f = assert(io.open(dir .. "/s.lua", "w"))
      f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath))
      f:write(code)
      f:close()
      local p = assert(io.popen(([[
        d=%s
        %s $d/s.lua $d/ready 2>$d/err & pid=$!
        i=0
        while [ ! -e $d/ready ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
        sleep 0.2
        kill -INT $pid
        i=0
        while kill -0 $pid 2>/dev/null && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
        if kill -0 $pid 2>/dev/null; then kill -9 $pid; wait $pid; echo hung
        else wait $pid; echo "status $?"; fi
        cat $d/err]]):format(dir, os.getenv("LUA") or "lua5.4")))
      local out = p:read("a")
      p:close()
      os.execute("rm -rf " .. dir)
      return out
    end

    local stock = (os.getenv("SPEC_LUA") or "lua5.4") == (os.getenv("LUA") or "lua5.4")

    it("ends a result() blocked on a never-completed future at the first signal", function()
      if not stock then return pending("the sanitizer host has no SIGINT handler") end
      local out = interrupt([[
        local f = require("concurrent.futures").Future()
        io.open(arg[1], "w"):close()
        f:result()
      ]])
      assert.matches("^status 1\n.*interrupted!", out)
      assert.matches("in method 'result'", out)
    end)

    it("ends wait, as_completed and dispatch the same way", function()
      if not stock then return pending("the sanitizer host has no SIGINT handler") end
      for _, call in ipairs({ "cf.wait({ f })", "for _ in cf.as_completed({ f }) do end",
                              "cf.dispatch(math.huge)" }) do
        local out = interrupt([[
          local cf = require "concurrent.futures"
          local f = cf.Future()
          f:add_done_callback(print)
          io.open(arg[1], "w"):close()
          ]] .. call)
        assert.matches("^status 1\n.*interrupted!", out)
      end
    end)

    -- lua.c hooks the main thread; a wait in a coroutine looked at the
    -- coroutine's own hook, so Ctrl-C waited for the wait to end
    it("ends a wait inside a coroutine at the first signal", function()
      if not stock then return pending("the sanitizer host has no SIGINT handler") end
      for _, call in ipairs({ "f:result()", "cf.wait({ f })", "cf.dispatch(math.huge)" }) do
        local out = interrupt([[
          local cf = require "concurrent.futures"
          local f = cf.Future()
          f:add_done_callback(print)
          io.open(arg[1], "w"):close()
          coroutine.wrap(function() ]] .. call .. [[ end)()
          print("not reached")
          ]])
        assert.matches("^status 1\n.*interrupted!", out)
      end
    end)
  end)

  describe("cancel", function()
    it("cancels a pending future, which then raises CancelledError", function()
      local f = cf.Future()
      assert.is_true(f:cancel())
      assert.is_true(f:cancelled())
      assert.is_true(f:done())
      assert.is_true(f:cancel())  -- already cancelled
      assert.equal("Future<cancelled>", tostring(f))
      local ok, err = pcall(f.result, f)
      assert.is_false(ok)
      assert.is_true(cf.CancelledError:is(err))
      ok, err = pcall(f.exception, f)
      assert.is_false(ok)
      assert.is_true(cf.CancelledError:is(err))
      assert.is_false(f:set_running_or_notify_cancel())
    end)

    it("does not cancel a running or finished future", function()
      local f = cf.Future()
      f:set_running_or_notify_cancel()
      assert.is_false(f:cancel())
      f:set_result("x")
      assert.is_false(f:cancel())
      assert.equal("x", f:result())
    end)

    it("makes set_result on a cancelled future an InvalidStateError", function()
      local f = cf.Future()
      f:cancel()
      local ok, err = pcall(f.set_result, f, 1)
      assert.is_false(ok)
      assert.is_true(cf.InvalidStateError:is(err))
    end)
  end)

  describe("callbacks", function()
    it("run once at set_result, with the bound arguments after the future", function()
      local f = cf.Future()
      local calls = {}
      f:add_done_callback(function(fut, a, b)
        calls[#calls + 1] = { fut, a, b }
      end, "x", nil)
      assert.same({}, calls)
      f:set_result(1)
      assert.equal(1, #calls)
      assert.equal(f, calls[1][1])
      assert.equal("x", calls[1][2])
      assert.is_nil(calls[1][3])
      f:result()
      cf.dispatch()
      assert.equal(1, #calls)
    end)

    it("run in registration order", function()
      local f = cf.Future()
      local order = {}
      for i = 1, 5 do
        f:add_done_callback(function() order[#order + 1] = i end)
      end
      f:cancel()
      assert.same({ 1, 2, 3, 4, 5 }, order)
    end)

    it("run immediately when the future is already done", function()
      local f = cf.Future()
      f:set_result(7)
      local got
      f:add_done_callback(function(fut, k) got = fut:result() + k end, 3)
      assert.equal(10, got)
    end)

    it("reports an erroring callback on stderr and still runs the others", function()
      local f = cf.Future()
      local ran = 0
      f:add_done_callback(function() error("boom in callback") end)
      f:add_done_callback(function() ran = ran + 1 end)
      f:set_result(true)
      assert.equal(1, ran)
    end)

    it("accept callable tables and refuse non-callables", function()
      local f = cf.Future()
      local hit = false
      local obj = setmetatable({}, { __call = function() hit = true end })
      f:add_done_callback(obj)
      f:set_result(1)
      assert.is_true(hit)
      local ok, err = pcall(function() f:add_done_callback(42) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'add_done_callback' "
                     .. "%(function expected, got number%)", err)
    end)

    it("run the future's own result() inside a callback without losing entries", function()
      local fs, t = {}, {}
      for i = 1, 20 do
        fs[i] = cf.Future()
        fs[i]:add_done_callback(function(f) t[#t + 1] = f:result() end)
      end
      local job = th.complete(fs, 0.0005, "result", 0)
      for _, f in ipairs(fs) do f:result(10) end
      job:join()
      assert.equal(20, #t)
    end)
  end)

  describe("completed from another OS thread", function()
    it("wakes a caller blocked in result()", function()
      local f = cf.Future()
      local job = th.complete({ f }, 0.05, "result", 100)
      assert.equal(101, f:result(10))
      assert.equal(0, job:join())
    end)

    it("wakes a caller blocked in exception()", function()
      local f = cf.Future()
      local job = th.complete({ f }, 0.02, "exception", "host failed")
      assert.equal("host failed", f:exception(10))
      local ok, err = pcall(f.result, f)
      assert.is_false(ok)
      assert.equal("host failed", err)
      job:join()
    end)

    it("can be cancelled by the host while Lua waits", function()
      local f = cf.Future()
      local job = th.complete({ f }, 0.02, "cancel")
      local ok, err = pcall(f.result, f, 10)
      assert.is_false(ok)
      assert.is_true(cf.CancelledError:is(err))
      job:join()
    end)

    it("queues Lua callbacks to the owner, run at its next safe point", function()
      local f = cf.Future()
      local ran = 0
      f:add_done_callback(function() ran = ran + 1 end)
      local job = th.complete({ f }, 0, "result", 1)
      assert.is_true(th.wait_c(f, 10))
      assert.equal(0, ran)  -- never on the host thread
      assert.equal(1, cf.dispatch(10))
      assert.equal(1, ran)
      job:join()
    end)

    it("refuses a second completion from the host with CONC_ESTATE", function()
      local f = cf.Future()
      f:set_result("lua first")
      local job = th.complete({ f }, 0, "result", 1)
      assert.equal(1, job:join())
      assert.equal("lua first", f:result())
    end)

    it("refuses raw bytes as a result: a state never decodes them", function()
      -- what the host sets must be a payload of api->encode (with
      -- api->freepayload), else CONC_EINVAL (-1): raw bytes read as a
      -- transfer were a header of garbage (a crash)
      for _, bytes in ipairs { "hello", string.rep("\255", 64), "" } do
        for _, exc in ipairs { false, true } do
          local f = cf.Future()
          assert.equal(-1, th.set_raw(f, bytes, exc))
          assert.is_false(f:done())
          f:set_result("lua's")
          assert.equal("lua's", f:result())
        end
      end
    end)

    -- NULL is "no values" in the C API (conc_lua_api_t); result() raised
    -- "the future's values could not be transferred to this state"
    it("gives no values for a host's result of NULL, and an error saying "
       .. "so for its exception of NULL", function()
      local f = cf.Future()
      assert.equal(0, th.set_raw(f, nil))
      assert.equal(0, select("#", f:result()))
      assert.is_nil(f:exception())
      local g = cf.Future()
      assert.equal(0, th.set_raw(g, nil, "exception"))
      local ok, err = pcall(g.result, g)
      assert.is_false(ok)
      assert.equal("the future failed without an error value", err)
      assert.equal(err, g:exception())
      assert.is_nil(g:traceback())
      -- a worker gets them the same way
      local ex <close> = cf.ThreadPoolExecutor(1)
      assert.same({ n = 0 }, ex:submit(function(f) return table.pack(f:result()) end, f):result())
      assert.equal(err, ex:submit(function(g) return g:exception() end, g):result())
    end)

    it("runs C callbacks exactly once, on completion", function()
      local f = cf.Future()
      local c1 = th.c_callback(f)
      assert.equal(0, c1:get())
      f:set_result(1)
      assert.equal(1, c1:get())
      local c2 = th.c_callback(f)   -- done already: at once
      assert.equal(1, c2:get())
      assert.equal(1, c1:get())
    end)
  end)

  it("is the same handle when the same future comes back", function()
    local f = cf.Future()
    local done = cf.wait({ f, f }, 0)
    assert.same({}, done)
    f:set_result(1)
    done = cf.wait({ f })
    assert.equal(f, done[1])
  end)

  it("refuses non-futures as self with a type error", function()
    local f = cf.Future()
    local ok, err = pcall(f.result, {})
    assert.is_false(ok)
    assert.matches("concurrent.Future expected", err)
  end)

  it("refuses a userdata that has the Future metatable or looks like one", function()
    local f = cf.Future()
    local mt = getmetatable(f)
    local function refused(bad)
      for _, m in ipairs { f.result, f.exception, f.done, f.cancel, f.traceback,
                           f.add_done_callback, f.set_result, mt.__gc, mt.__tostring } do
        local ok, err = pcall(m, bad, print)
        assert.is_false(ok)
        assert.matches("bad argument #1 to '.-' %(concurrent.Future expected, got ", err)
      end
      local ok, err = pcall(cf.wait, { bad })
      assert.is_false(ok)
      assert.matches("future expected at index 1, got ", err)
    end
    helpers.each_lookalike(mt, 128, refused)
    f:set_result(4)
    assert.equal(4, f:result())
  end)
end)

-- Out of memory in the owner state while a future's values are kept
-- there (testhelper's failalloc(n, fn, ...): the state's allocator grants
-- n allocations during fn, then fails). Each run must end with "not
-- enough memory" or as it would have without the failure, and leave the
-- future and the state as they were.
describe("Future out of memory", function()
  local N = 40

  it("result() decodes again after running out, never loses the values", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local fails = 0
    for n = 0, N do
      local f = ex:submit(function() return { 1, { 2 } }, "two" end)
      local g = ex:submit(function() return { a = 1 } end)
      cf.wait({ f, g }, 10)
      local _, ok, a, b = th.failalloc(n, f.result, f)
      local _, ok2, c = th.failalloc(n, g.result, g)
      if not ok then assert.equal("not enough memory", a) fails = fails + 1 end
      if not ok2 then assert.equal("not enough memory", c) end
      -- before: a single table result read as nil after a failed keep
      local x, y = f:result(0)
      local z = g:result(0)
      assert.same({ { 1, { 2 } }, "two" }, { x, y })
      assert.same({ a = 1 }, z)
      if ok then assert.equal(a, x) assert.equal("two", b) end
      if ok2 then assert.equal(c, z) end
    end
    assert.is_true(fails > 0)
  end)

  it("set_result() raises and leaves the future pending, or finishes it whole", function()
    local warm = cf.Future()  -- the encoder's first use in a state is costlier
    warm:set_result({ 1 })
    local ex <close> = cf.ThreadPoolExecutor(1)
    local fails = 0
    for n = 0, N do
      local f = cf.Future()
      local fired = 0
      f:add_done_callback(function() fired = fired + 1 end)
      local v = { n, { 2 } }
      local _, ok, err = th.failalloc(n, f.set_result, f, v, "s")
      if ok then
        -- the very values, for this state
        assert.same({ true, v, "s" }, { pcall(f.result, f, 0) })
        assert.equal(1, fired)
      else
        -- before: finished with no values ("could not be transferred")
        assert.equal("not enough memory", err)
        assert.is_false(f:done())
        fails = fails + 1
        f:set_result(v, "s")
        assert.equal(v, f:result(0))
        assert.equal(1, fired)
      end
      -- other states get a copy
      assert.same(v, ex:submit(function(g) return (g:result()) end, f):result(10))
    end
    assert.is_true(fails > 0)
  end)

  it("callbacks still run at safe points after a callback ran out", function()
    -- before: out of memory unpacking a callback's arguments escaped the
    -- loop running them, which left the state "inside a callback" for
    -- good: no safe point ran any callback again. Now that callback fails
    -- alone, reported on stderr as a callback's own error.
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local th = require "testhelper"
      local ex <close> = cf.ThreadPoolExecutor(1)
      local args = {}
      for i = 1, 5000 do args[i] = i end  -- a larger stack to unpack them
      local missed, stuck = 0, 0
      for n = 0, 40 do
        local f, called = cf.Future(), false
        f:add_done_callback(function() called = true end, table.unpack(args))
        collectgarbage()  -- (shrinks the stack)
        th.failalloc(n, f.set_result, f, 1)
        if not f:done() then f:set_result(1) end
        if not called then missed = missed + 1 end
        local ran = false
        local t = ex:submit(function() return 1 end)
        t:add_done_callback(function() ran = true end)
        t:result(10)
        if not ran then stuck = stuck + 1 end
      end
      print("missed", missed > 0, "stuck", stuck)
    ]])
    assert.is_true(ok, out)
    assert.matches("missed\ttrue\tstuck\t0\n", out)
    assert.matches("concurrent: error in done callback: not enough memory", out)
  end)
end)

describe("error classes", function()
  it("are classes with is(), inheritance and a message", function()
    local e = cf.BrokenThreadPool("initializer failed")
    assert.equal("initializer failed", e.message)
    assert.is_true(cf.BrokenThreadPool:is(e))
    assert.is_true(cf.BrokenExecutor:is(e))
    assert.is_false(cf.BrokenProcessPool:is(e))
    assert.is_false(cf.TimeoutError:is(e))
    assert.is_true(cf.BrokenExecutor:is(cf.BrokenProcessPool("x")))
    assert.is_false(cf.TimeoutError:is("TimeoutError"))
    assert.is_false(cf.TimeoutError:is(nil))
    assert.equal("BrokenThreadPool: initializer failed", tostring(e))
    for _, name in ipairs { "CancelledError", "TimeoutError", "InvalidStateError",
                            "BrokenExecutor", "BrokenThreadPool", "BrokenProcessPool" } do
      assert.equal(name, cf[name].name)
      assert.is_true(cf[name]:is(cf[name]("m")))
    end
  end)

  it("survive reopening the module (busted reloads it between files)", function()
    local e = cf.TimeoutError("x")
    package.loaded["concurrent.core"] = nil
    package.loaded["concurrent.futures"] = nil
    local cf2 = require "concurrent.futures"
    assert.is_true(cf2.TimeoutError:is(e))
    local f = cf2.Future()
    f:set_result(5)
    assert.equal(5, f:result())
  end)

  -- Under TSan, each error raised out of the module's C functions once
  -- left their frames on TSan's shadow stack (spec/support/tsanjmp.c says
  -- why): some 100,000 of them overran it, in the main state as in a
  -- worker's, and the process died at a garbage address.
  it("raised by the hundred thousand leave the state working", function()
    local function raise_many(n)
      local futures = require "concurrent.futures"
      local f = futures.Future()
      for _ = 1, n do
        local ok, err = pcall(f.result, f, "x")
        if ok or not err:find("number expected", 1, true) then return false end
      end
      f:set_result(n)
      return f:result()
    end
    assert.equal(150000, raise_many(150000))
    local ex <close> = cf.ThreadPoolExecutor(1)
    assert.equal(150000, ex:submit(raise_many, 150000):result())
  end)
end)

describe("cf.partial", function()
  it("binds arguments first, then the call's own", function()
    local p = cf.partial(function(...) return table.pack(...) end, 1, nil)
    assert.same({ 1, nil, 3, n = 3 }, p(3))
    assert.same({ 1, nil, n = 2 }, p())
    assert.equal(5, cf.partial(math.max, 5)())
  end)

  it("returns a plain Lua function and refuses non-callables", function()
    assert.equal("function", type(cf.partial(print)))
    local ok, err = pcall(cf.partial, 3)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'partial' %(function expected, got number%)", err)
  end)
end)

-- Ported from CPython's Lib/test/test_concurrent_futures/test_future.py
-- (spec/CPYTHON.md lists every case). Its fixtures, one future per state;
-- a cancelled future is always notified here (Python's CANCELLED and
-- CANCELLED_AND_NOTIFIED are one state).
describe("Future (CPython test_future)", function()
  local function states()
    local pending, running, cancelled = cf.Future(), cf.Future(), cf.Future()
    local failed, succeeded = cf.Future(), cf.Future()
    running:set_running_or_notify_cancel()
    cancelled:cancel()
    failed:set_exception({ oserror = true })
    succeeded:set_result(42)
    return { pending = pending, running = running, cancelled = cancelled,
             failed = failed, succeeded = succeeded }
  end

  it("calls a callback that reads the result (test_done_callback_with_result)", function()
    local f, got = cf.Future(), nil
    f:add_done_callback(function(fut) got = fut:result() end)
    f:set_result(5)
    assert.equal(5, got)
  end)

  it("calls a callback that reads the error (test_done_callback_with_exception)", function()
    local f, got = cf.Future(), nil
    f:add_done_callback(function(fut) got = fut:exception() end)
    f:set_exception({ "test" })
    assert.same({ "test" }, got)
  end)

  it("calls a callback at cancel (test_done_callback_with_cancel)", function()
    local f, was = cf.Future(), nil
    f:add_done_callback(function(fut) was = fut:cancelled() end)
    assert.is_true(f:cancel())
    assert.is_true(was)
  end)

  it("calls a callback added after a failure at once "
     .. "(test_done_callback_already_failed)", function()
    local f, got = cf.Future(), nil
    f:set_exception({ "test" })
    f:add_done_callback(function(fut) got = fut:exception() end)
    assert.same({ "test" }, got)
  end)

  it("calls a callback added after a cancel at once "
     .. "(test_done_callback_already_cancelled)", function()
    local f, was = cf.Future(), nil
    assert.is_true(f:cancel())
    f:add_done_callback(function(fut) was = fut:cancelled() end)
    assert.is_true(was)
  end)

  it("reports a raising callback added to a done future "
     .. "(test_done_callback_raises_already_succeeded)", function()
    local out, ok = helpers.run_lua [[
      local cf = require "concurrent.futures"
      local f = cf.Future()
      f:set_result(5)
      f:add_done_callback(function() error("doh!") end)
      print("still here")
    ]]
    assert.is_true(ok, out)
    assert.matches("error in done callback: .*doh!", out)
    assert.matches("still here", out)
  end)

  it("reports a callback's error whose __tostring raises or returns no string", function()
    -- as lua.c does: before, the report had no message at all (a
    -- __tostring returning a table) or the __tostring's own error
    local out, ok = helpers.run_lua [[
      local cf = require "concurrent.futures"
      local f = cf.Future()
      f:add_done_callback(function() error(setmetatable({}, { __tostring = function() return {} end })) end)
      f:add_done_callback(function() error(setmetatable({}, { __tostring = function() error("inner") end })) end)
      f:add_done_callback(function() error(setmetatable({}, { __tostring = function() return "told" end })) end)
      f:set_result(1)
      print("still here")
    ]]
    assert.is_true(ok, out)
    local _, n = out:gsub("error in done callback: %(error object is a table value%)\n", "")
    assert.equal(2, n, out)
    assert.matches("error in done callback: told\n", out)
    assert.not_matches("inner", out)
    assert.matches("still here", out)
  end)

  it("cancels only a pending future (test_cancel)", function()
    local s = states()
    assert.is_true(s.pending:cancel())
    assert.equal("Future<cancelled>", tostring(s.pending))
    assert.is_false(s.running:cancel())
    assert.equal("Future<running>", tostring(s.running))
    assert.is_true(s.cancelled:cancel())
    assert.equal("Future<cancelled>", tostring(s.cancelled))
    assert.is_false(s.failed:cancel())
    assert.equal("Future<finished>", tostring(s.failed))
    assert.is_false(s.succeeded:cancel())
    assert.equal(42, s.succeeded:result(0))
  end)

  it("tells each state by cancelled(), done() and running() "
     .. "(test_cancelled, test_done, test_running, test_repr)", function()
    local s = states()
    local want = {  -- cancelled, done, running, tostring
      pending = { false, false, false, "pending" },
      running = { false, false, true, "running" },
      cancelled = { true, true, false, "cancelled" },
      failed = { false, true, false, "finished" },
      succeeded = { false, true, false, "finished" },
    }
    for name, w in pairs(want) do
      local f = s[name]
      assert.same({ name, w[1], w[2], w[3], "Future<" .. w[4] .. ">" },
                  { name, f:cancelled(), f:done(), f:running(), tostring(f) })
    end
  end)

  it("result(0) raises, returns or times out by state (test_result_with_timeout)", function()
    local s = states()
    for _, name in ipairs { "pending", "running" } do
      assert.is_true(cf.TimeoutError:is(select(2, pcall(s[name].result, s[name], 0))))
    end
    assert.is_true(cf.CancelledError:is(select(2, pcall(s.cancelled.result, s.cancelled, 0))))
    assert.same({ oserror = true }, select(2, pcall(s.failed.result, s.failed, 0)))
    assert.equal(42, s.succeeded:result(0))
  end)

  it("exception(0) raises, returns or times out by state (test_exception_with_timeout)", function()
    local s = states()
    for _, name in ipairs { "pending", "running" } do
      assert.is_true(cf.TimeoutError:is(select(2, pcall(s[name].exception, s[name], 0))))
    end
    assert.is_true(cf.CancelledError:is(select(2, pcall(s.cancelled.exception, s.cancelled, 0))))
    assert.same({ oserror = true }, s.failed:exception(0))
    assert.is_nil(s.succeeded:exception(0))
  end)

  it("keeps the first error when set twice (test_multiple_set_exception)", function()
    local f = cf.Future()
    local e = { "value error" }
    f:set_exception(e)
    local ok, err = pcall(f.set_exception, f, { "another" })
    assert.is_false(ok)
    assert.is_true(cf.InvalidStateError:is(err))
    assert.equal(e, f:exception())
  end)
end)

describe("futures made while the state closes", function()
  it("are refused: a finalizer at lua_close gets an error, not a leak", function()
    -- Lua runs no finalizer of what is made while it closes: a handle
    -- made then kept its reference for good (a leak LeakSanitizer saw),
    -- whether made by cf.Future (so cf.all and cf.async) or by decoding
    -- values that hold a future
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ex = cf.ThreadPoolExecutor(1)
      local holds = ex:submit(function()
        local f = require("concurrent.futures").Future()
        f:set_result(1)
        return f
      end)
      while not holds:done() do end  -- (not read: decoded at close)
      ex:shutdown()
      local done = cf.Future()
      done:set_result(1)
      local function try(what, fn, ...)
        local ok, err = pcall(fn, ...)
        io.write(what, " ", tostring(ok), " ",
          tostring(err):match("the Lua state is closing") or tostring(err), "; ")
      end
      do  -- a finalizer of a normal collection may still make them
        setmetatable({}, { __gc = function()
          try("gc", function() return cf.Future():done() end)
        end })
      end
      collectgarbage()
      keep = setmetatable({}, { __gc = function()
        try("Future", cf.Future)
        try("decode", holds.result, holds)
        try("all", cf.all, { done })
        try("async", cf.async, function() return 1 end)
        try("set", done.set_result, done, 2)  -- no handle made
      end })
    ]])
    assert.is_true(ok, out)
    local closing = " false the Lua state is closing; "
    assert.equal("gc true false; Future" .. closing .. "decode" .. closing
      .. "all" .. closing .. "async" .. closing, out:match("^(.-)set "))
    assert.matches("set false [^;]*InvalidStateError", out)
  end)

  it("says where cf.all, cf.any and cf.async were called when the state closes", function()
    -- before: "lua/concurrent/futures.lua:656: the Lua state is closing"
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local done = cf.Future()
      done:set_result(1)
      keep = setmetatable({}, { __gc = function()
        for _, fn in ipairs { cf.all, cf.any, cf.async } do
          local ok, err = pcall(function()
            local f = fn(fn == cf.async and print or { done })  -- line 9 (run_lua adds 2)
            return f
          end)
          io.write(tostring(ok), " ", tostring(err), "\n")
        end
      end })
    ]])
    assert.is_true(ok, out)
    local _, n = out:gsub("false [^\n]*:9: the Lua state is closing\n", "")
    assert.equal(3, n, out)
    assert.not_matches("futures%.lua", out)
  end)
end)
