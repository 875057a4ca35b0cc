-- Composition over futures (API.md, "Beyond Python"): map's options and
-- its errors, cf.all / cf.any, cf.async / cf.await.

local cf = require "concurrent.futures"
local helpers = require "spec.helpers"

-- The line of this file that called the function at level 2 of 'fn'.
local function line_of(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  return err
end

describe("ThreadPoolExecutor:map", function()
  it("cancels the task it waited on when its timeout expires", function()
    local ex = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    local busy = ex:submit(function(g) return g:result(10) end, gate)
    local ok, err = pcall(function()
      for _ in ex:map { function(x) return x end, { 1, 2 }, timeout = 0 } do end
    end)
    assert.is_false(ok)
    assert.is_true(cf.TimeoutError:is(err))
    gate:set_result(1)
    assert.equal(1, busy:result(10))
    ex:shutdown(true)
    local st = ex:stats()
    assert.equal(2, st.cancelled)
    assert.equal(1, st.completed)
  end)

  it("reports its argument errors at the caller's line", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local here = "14%-compose_spec%.lua:%d+: "
    local cases = {
      { function() local it = ex:map(5, { 1 }) return it end,
        "bad argument #1 to 'map' %(function expected, got number%)" },
      { function() local it = ex:map(print, 5) return it end,
        "bad argument #2 to 'map' %(array or iterator function expected, got number%)" },
      { function() local it = ex:map { print, { 1 }, 5 } return it end,
        "bad argument #1 to 'map' %(array or iterator function expected at index 3, got number%)" },
      { function() local it = ex:map(print) return it end,
        "bad argument #2 to 'map' %(at least one iterable expected%)" },
      { function() local it = ex:map { print, { 1 }, timeout = -1 } return it end,
        "timeout must be a non%-negative number" },
      { function() local it = ex:map { print, { 1 }, chunksize = 0 } return it end,
        "chunksize must be an integer >= 1" },
      { function() local it = ex:map(print, { io.stdout }) return it end,
        "cannot transfer argument #2 %(userdata%)" },
      { function() local it = ex.map(nil, print, { 1 }) return it end,
        "calling 'map' on bad self" },
      -- before: "attempt to call a nil value", with no line
      { function() local it = ex.map(io.stdout, print, { 1 }) return it end,
        "calling 'map' on bad self %(executor expected, got FILE%*%)" },
      { function() local it = ex.map(cf.Queue(), print, { 1 }) return it end,
        "calling 'map' on bad self %(executor expected, got concurrent%.Queue%)" },
    }
    -- an array whose __len does not return an integer (before: 2.5 mapped
    -- 3 items, math.huge submitted for ever, "x" and nil failed inside
    -- futures.lua comparing a string or nil with a number)
    local function len(v) return setmetatable({ 1, 2, 3 }, { __len = function() return v end }) end
    for _, bad in ipairs { { 2.5, "2%.5" }, { "x", "string" }, { "2", "string" },
                           { math.huge, "inf" }, { 0 / 0, "%-?nan" }, { true, "boolean" } } do
      cases[#cases + 1] = { function() local it = ex:map(print, len(bad[1])) return it end,
        "bad argument #2 to 'map' %(integer length expected, got " .. bad[2] .. "%)" }
    end
    cases[#cases + 1] = { function() local it = ex:map(print, { 1 }, len(nil)) return it end,
      "bad argument #3 to 'map' %(integer length expected, got nil%)" }
    cases[#cases + 1] = { function() local it = ex:map { print, { 1 }, len(1.5) } return it end,
      "bad argument #1 to 'map' %(integer length expected at index 3, got 1%.5%)" }
    cases[#cases + 1] = { function()
        local it = ex:map(setmetatable({ print, { 1 } }, { __len = function() return "x" end }))
        return it
      end, "bad argument #1 to 'map' %(integer length expected, got string%)" }
    cases[#cases + 1] = { function() local it = ex:map { print, { 1 }, colour = 1 } return it end,
      "bad argument #1 to 'map' %(unknown option 'colour'; known: " }
    for _, c in ipairs(cases) do
      local err = line_of(c[1])
      assert.matches("^[^\n]-" .. here .. ".-" .. c[2], err)
    end
  end)

  it("yields in completion order with ordered = false, each index once", function()
    local ex <close> = cf.ThreadPoolExecutor(3)
    local gate = cf.Future()
    local seen = {}
    local task = function(x, g) if x == 1 then g:result(10) end return x * 10 end
    for i, v in ex:map { task, { 1, 2, 3 }, { gate, gate, gate }, ordered = false, timeout = 30 } do
      assert.equal(i * 10, v)
      seen[#seen + 1] = i
      if #seen == 2 then gate:set_result(true) end
    end
    assert.equal(1, seen[3])
    table.sort(seen)
    assert.same({ 1, 2, 3 }, seen)
  end)

  it("yields every index of every chunk once in completion order", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local xs = {}
    for i = 1, 10 do xs[i] = i end
    local cases = { { chunksize = 3 }, { chunksize = 3, buffersize = 1 }, { buffersize = 2 } }
    for _, opts in ipairs(cases) do
      local seen = {}
      for i, v in ex:map { function(x) return x * x end, xs, ordered = false,
                           chunksize = opts.chunksize, buffersize = opts.buffersize } do
        assert.equal(i * i, v)
        seen[#seen + 1] = i
      end
      table.sort(seen)
      assert.same(xs, seen)
    end
  end)

  it("keeps at most buffersize tasks ahead of the consumer of an endless iterator", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    for _, k in ipairs { 0, 1, 2, 5 } do
      for _, ordered in ipairs { true, false } do
        local n = 0
        local function naturals() n = n + 1 return n end
        local count = 0
        local neg = function(x) return -x end
        for i, v in ex:map { neg, naturals, buffersize = k, ordered = ordered } do
          assert.equal(-i, v)
          count = count + 1
          -- the inputs read are the tasks submitted: those yielded plus k
          assert.equal(count + k, n)
          if count == 40 then break end
        end
      end
    end
  end)

  it("refills the buffer when a later task completes before an earlier one", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local gate = cf.Future()
    local n = 0
    local function gen() n = n + 1 if n <= 4 then return n end end
    local task = function(x, g) if x == 1 then g:result(10) end return x end
    local order = {}
    for i in ex:map { task, gen, function() return gate end,
                      buffersize = 2, ordered = false } do
      order[#order + 1] = i
      -- task 1 still holds its slot: the next input is read at once
      if i == 2 then assert.equal(3, n) end
      if i == 3 then gate:set_result(true) end
    end
    assert.same({ 2, 3 }, { order[1], order[2] })
    table.sort(order)
    assert.same({ 1, 2, 3, 4 }, order)
  end)

  it("cancels the buffered tasks when the loop is left", function()
    local ex = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    local k = 0
    local function gen() k = k + 1 return k end
    local task = function(x, g) if x > 1 then g:result(10) end return x end
    for _ in ex:map { task, gen, -- luacheck: ignore 512
                      function() return gate end, buffersize = 6 } do
      break
    end
    gate:set_result(true)
    ex:shutdown(true)
    assert.equal(7, k)
    assert.is_true(ex:stats().cancelled >= 5)
  end)

  it("raises TimeoutError in completion order and cancels what is left", function()
    local ex = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    -- the only worker is held before the maps start: none of their tasks
    -- can start (a worker slow to pick the first map's first task up, on
    -- a loaded machine, made the counts below vary)
    local busy = ex:submit(function(g) return g:result(10) end, gate)
    while not busy:running() do end
    for _, buffersize in ipairs { false, 3 } do
      local ok, err = pcall(function()
        for _ in ex:map { function(g) return g:result(10) end, { gate, gate, gate, gate },
                          ordered = false, timeout = 0.05, buffersize = buffersize or nil } do end
      end)
      assert.is_false(ok)
      assert.is_true(cf.TimeoutError:is(err))
    end
    gate:set_result(1)
    ex:shutdown(true)
    -- the busy task ran; none of the maps' 4 + 3 tasks started
    assert.equal(1, ex:stats().completed)
    assert.equal(7, ex:stats().cancelled)
  end)

  it("checks ordered and buffersize, and accepts integral floats", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    for _, bad in ipairs { -1, 1.5, "2", true } do
      local ok, err = pcall(ex.map, ex, { print, { 1 }, buffersize = bad })
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'map' %(buffersize must be an integer >= 0%)", err)
    end
    local ok, err = pcall(ex.map, ex, { print, { 1 }, ordered = "no" })
    assert.is_false(ok)
    assert.matches("ordered must be a boolean, got string", err)
    ok, err = pcall(ex.map, ex, { print, { 1 }, buffer_size = 2 })
    assert.is_false(ok)
    assert.matches("unknown option 'buffer_size'", err)
    local out = {}
    local inc = function(x) return x + 1 end
    for i, v in ex:map { inc, { 1, 2, 3 }, chunksize = 2.0, buffersize = 1.0 } do
      out[i] = v
    end
    assert.same({ 2, 3, 4 }, out)
  end)
end)

describe("cf.all and cf.any", function()
  it("all: an array of each future's results as {n =, ...}, in input order", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local a = ex:submit(function() return 1, nil, 3 end)
    local b = cf.Future()
    local both = cf.all { a, b, a }
    assert.is_false(both:done())
    b:set_result("b")
    local r = both:result(10)
    assert.same({ { 1, nil, 3, n = 3 }, { "b", n = 1 }, { 1, nil, 3, n = 3 } }, r)
    assert.same({}, cf.all({}):result(0))
  end)

  it("all: fails with the first error and cancels what has not started", function()
    local ex = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    local busy = ex:submit(function(g) return g:result(10) end, gate)
    local queued = ex:submit(function() return "never" end)
    while not busy:running() do end
    local bad = cf.Future()
    local both = cf.all { busy, queued, bad }
    bad:set_exception({ code = 7 })
    local ok, err = pcall(both.result, both, 10)
    assert.is_false(ok)
    assert.same({ code = 7 }, err)
    assert.is_true(queued:cancelled())
    assert.is_false(busy:cancelled())
    gate:set_result(true)
    ex:shutdown(true)
    assert.is_true(busy:result(0))
    -- a task's error keeps its traceback
    local ex2 <close> = cf.ThreadPoolExecutor(1)
    local failing = cf.all { ex2:submit(function() error("task failed", 0) end) }
    assert.equal("task failed", failing:exception(10))
    assert.matches("stack traceback", failing:traceback())
  end)

  it("all: fails with CancelledError for a cancelled input; cancel cancels the inputs", function()
    local a, b = cf.Future(), cf.Future()
    local both = cf.all { a, b }
    a:cancel()
    local ok, err = pcall(both.result, both, 0)
    assert.is_false(ok)
    assert.is_true(cf.CancelledError:is(err))
    local c, d = cf.Future(), cf.Future()
    local two = cf.all { c, d }
    assert.is_true(two:cancel())
    assert.is_true(c:cancelled() and d:cancelled())
  end)

  it("any: the first successful results; fails only when all fail, with the last error", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local never = cf.Future()
    local bad = ex:submit(function() error("bad", 0) end)
    local good = ex:submit(function() return "x", nil end)
    assert.same({ "x", nil, n = 2 }, table.pack(cf.any({ never, bad, good }):result(10)))
    never:cancel()
    local a, b = cf.Future(), cf.Future()
    local either = cf.any { a, b }
    a:set_exception("first")
    assert.is_false(either:done())
    b:set_exception("last")
    local ok, err = pcall(either.result, either, 0)
    assert.is_false(ok)
    assert.equal("last", err)
  end)

  it("refuse what is not an array of futures", function()
    local here = "14%-compose_spec%.lua:%d+: "
    for _, c in ipairs {
      { function() local f = cf.all(5) return f end,
        "bad argument #1 to 'all' %(table of futures expected, got number%)" },
      { function() local f = cf.all { cf.Future(), "x" } return f end,
        "bad argument #1 to 'all' %(future expected at index 2, got string%)" },
      { function() local f = cf.any(nil) return f end,
        "bad argument #1 to 'any' %(table of futures expected, got nil%)" },
      { function() local f = cf.any {} return f end,
        "bad argument #1 to 'any' %(non%-empty table of futures expected%)" },
      { function() local f = cf.all(setmetatable({}, { __len = function() return "x" end })) return f end,
        "bad argument #1 to 'all' %(integer length expected, got string%)" },
    } do
      assert.matches("^[^\n]-" .. here .. c[2], line_of(c[1]))
    end
  end)

  -- before: their callback on a future the executor's finalizer ended
  -- completed a combined future whose handle the state had finalized
  -- already: "error in done callback: future handle already finalized"
  -- on stderr (cf.async's runs: "leaves its runs alone" below)
  it("complete without an error when their futures end while the state closes", function()
    for _, ending in ipairs { "", "os.exit(true, true)" } do
      local out, ok = helpers.run_lua([[
        local cf = require "concurrent.futures"
        local ex = cf.ThreadPoolExecutor(1)
        local function slow() local t = os.clock() while os.clock() - t < 0.05 do end return 1 end
        for _ = 1, 3 do
          local f, g = ex:submit(slow), ex:submit(error, "failed")
          cf.all { f, g }
          cf.any { f, g }
          cf.all { g }
          cf.any { g }
        end
      ]] .. ending)
      assert.is_true(ok, out)
      assert.equal("", out)
    end
  end)

  -- before: they stayed pending at exit, so their callbacks never ran,
  -- while the callbacks of the futures they combine did
  it("run their callbacks when their futures end while the state closes", function()
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ex = cf.ThreadPoolExecutor(1)
      local function slow(x) local t = os.clock() while os.clock() - t < 0.05 do end return x end
      local f, g = ex:submit(slow, 1), ex:submit(slow, 2)
      local h = ex:submit(error, "failed")
      f:add_done_callback(function() print("f", f:result()) end)
      cf.all { f, g }:add_done_callback(function(all)
        print("all", all:result()[1][1], all:result()[2][1])
      end)
      cf.any { h, g }:add_done_callback(function(any) print("any", any:result()) end)
      cf.all { f, h }:add_done_callback(function(all)
        print("all failed", select(2, pcall(all.result, all)))
      end)
    ]])
    assert.is_true(ok, out)
    assert.equal("f\t1\nall\t1\t2\nany\t2\nall failed\tfailed\n", out)
    -- a future done before the script's end, and finalized at its end
    -- once its callbacks ran, when one it was combined with fails then
    -- (before: "future handle already finalized" from cancelling it)
    out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ex = cf.ThreadPoolExecutor(1)
      local f = ex:submit(function() return 1 end)
      f:result()
      cf.dispatch()
      local h = ex:submit(function() local t = os.clock() while os.clock() - t < 0.05 do end error("late", 0) end)
      cf.all { f, h }:add_done_callback(function(all) print(pcall(all.result, all)) end)
    ]])
    assert.is_true(ok, out)
    assert.equal("false\tlate\n", out)
  end)

  -- before: its callback stayed on the futures not done when it was
  -- decided, holding it (and its list) while they lived: a task raced
  -- against a long-lived stop signal kept every race's future
  it("any: lets go of the futures still pending once decided", function()
    local stop = cf.Future()
    local races = setmetatable({}, { __mode = "k" })
    for i = 1, 300 do
      local f = cf.Future()
      local race = cf.any { f, stop }
      races[race] = true
      f:set_result(i)
      assert.equal(i, race:result(0))
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(races))
    assert.is_false(stop:done())
  end)

  it("let go of the futures after one decided them as it was added", function()
    -- before: a done future early in the array decided the combined
    -- future, and the futures after it still got its callback, which
    -- kept it (and every result) for as long as they stayed pending
    local never = cf.Future()
    never:set_running_or_notify_cancel()  -- (a cancel cannot end it)
    local bad, good = cf.Future(), cf.Future()
    bad:set_exception("bad")
    good:set_result("good")
    local kept = setmetatable({}, { __mode = "k" })
    for _ = 1, 10 do
      local all, any = cf.all { bad, never }, cf.any { good, never }
      assert.equal("bad", all:exception(0))
      assert.equal("good", any:result(0))
      kept[all], kept[any] = true, true
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(kept))
    assert.is_false(never:done())
  end)
end)

describe("cf.async and cf.await", function()
  it("runs the coroutine up to its first await and completes with its results", function()
    local gate = cf.Future()
    local steps = {}
    local job = cf.async(function(a, b)
      steps[#steps + 1] = "start"
      local v = cf.await(gate)
      steps[#steps + 1] = "resumed"
      return a + v, b, nil
    end, 1, "b")
    assert.same({ "start" }, steps)
    assert.is_false(job:done())
    gate:set_result(41)   -- runs this state's callbacks at once
    assert.same({ "start", "resumed" }, steps)
    assert.same({ 42, "b", nil, n = 3 }, table.pack(job:result(0)))
  end)

  it("is resumed only at the state's safe points", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    local task = ex:submit(function(g) return g:result(10) end, gate)
    local job = cf.async(function() return cf.await(task) * 7 end)
    gate:set_result(6)
    while not task:done() do end   -- done() is not a safe point
    assert.is_false(job:done())
    assert.is_true(cf.dispatch(10) >= 1)
    assert.is_true(job:done())
    assert.equal(42, job:result(0))
  end)

  it("awaits several pool tasks in sequence, errors of tasks raised inside", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local job = cf.async(function()
      local total = 0
      for i = 1, 5 do total = total + cf.await(ex:submit(function(x) return x * x end, i)) end
      local ok, err = pcall(cf.await, ex:submit(function() error({ why = "bad" }) end))
      return total, ok, err
    end)
    local total, ok, err = job:result(10)
    assert.equal(55, total)
    assert.is_false(ok)
    assert.same({ why = "bad" }, err)
  end)

  it("fails the future with the coroutine's error and its traceback", function()
    local gate = cf.Future()
    local function failing() cf.await(gate) error("inside async", 0) end
    local job = cf.async(failing)
    gate:set_result(true)
    local ok, err = pcall(job.result, job, 0)
    assert.is_false(ok)
    assert.equal("inside async", err)
    local tb = job:traceback()
    assert.matches("^inside async\nstack traceback:", tb)
    assert.matches("14%-compose_spec%.lua:%d+: in", tb)
    local plain = cf.async(function() error({ code = 1 }) end)
    assert.same({ code = 1 }, plain:exception(0))
    local yielding = cf.async(function() coroutine.yield(1) end)
    assert.matches("yield from a cf.async function outside cf.await", yielding:exception(0))
  end)

  -- The traceback's first line came from tostring(err), unprotected:
  -- an error whose __tostring raised (or returned no string) left the
  -- future pending for ever, its <close> variables open.
  it("fails with an error whose __tostring raises or returns no string", function()
    for _, ts in ipairs { function() error("tostring boom") end, function() return {} end } do
      local bad = setmetatable({}, { __tostring = ts })
      local gate, closed = cf.Future(), 0
      local waited = cf.async(function()
        local _ <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
        cf.await(gate)
        error(bad)
      end)
      gate:set_result(true)
      assert.equal(bad, waited:exception(0))
      assert.equal(1, closed)
      assert.matches("^%(error object is a table value%)\nstack traceback:", waited:traceback())
      local plain = cf.async(function()
        local _ <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
        error(bad)
      end)
      assert.equal(bad, plain:exception(0))
      assert.equal(2, closed)
    end
  end)

  it("fails at once when its coroutine is resumed or closed by hand", function()
    -- before, the future stayed pending until the awaited future was
    -- done, then failed with "cannot resume dead coroutine"
    local gate = cf.Future()
    local co
    local job = cf.async(function() co = coroutine.running() return cf.await(gate) end)
    local ok, err = coroutine.resume(co, true)
    assert.is_false(ok)
    assert.matches("cf.async coroutine resumed by hand", err)
    assert.is_true(job:done())
    assert.matches("^cf.async coroutine resumed by hand %(coroutine.resume%) while it awaited a future$",
      job:exception(0))
    local co2
    local job2 = cf.async(function() co2 = coroutine.running() return cf.await(gate) end)
    assert.is_true(coroutine.close(co2))
    assert.is_true(job2:done())
    assert.equal("cf.async coroutine closed by hand (coroutine.close)", job2:exception(0))
    gate:set_result(1)  -- wakes neither again
    assert.matches("resumed by hand", job:exception(0))
    assert.matches("closed by hand", job2:exception(0))
    -- closing a finished coroutine changes nothing
    local co3
    local job3 = cf.async(function() co3 = coroutine.running() return 3 end)
    assert.is_true(coroutine.close(co3))
    assert.equal(3, job3:result(0))
  end)

  it("is stopped by cancel{running = true}, which ends it CANCELLED (API.md)", function()
    -- before: cancel{running = true} returned false and the coroutine
    -- ran on to its end
    local gate, closed, after = cf.Future(), 0, false
    local calls = 0
    local job = cf.async(function()
      local _ <close> = setmetatable({}, { __close = function() closed = closed + 1 end })
      cf.await(gate)
      after = true
    end)
    job:add_done_callback(function() calls = calls + 1 end)
    assert.is_false(job:cancel())  -- plain cancel: it is running
    assert.is_true(job:cancel { running = true })
    assert.is_true(job:cancel { running = true })  -- asked again: still true
    local ok, err = pcall(job.result, job, 10)  -- a safe point: it stops there
    assert.is_false(ok)
    assert.is_true(cf.CancelledError:is(err))
    assert.is_true(job:cancelled())
    assert.equal(1, closed)
    assert.equal(1, calls)
    gate:set_result(1)
    assert.is_false(after)
    assert.is_true(job:cancel { running = true })  -- already cancelled
    assert.is_false(cf.async(function() return 1 end):cancel { running = true })  -- finished
    -- asked from a worker thread (another state)
    local ex <close> = cf.ThreadPoolExecutor(1)
    local gate2 = cf.Future()
    local job2 = cf.async(function() return cf.await(gate2) end)
    assert.is_true(ex:submit(function(j) return j:cancel { running = true } end, job2):result(10))
    assert.is_true(cf.CancelledError:is(select(2, pcall(job2.result, job2, 10))))
    -- a stop asked while the coroutine runs ends it at its next await
    local gate3, job3 = cf.Future(), nil
    job3 = cf.async(function()
      cf.await(gate3)
      assert(job3:cancel { running = true })
      cf.await(cf.Future())  -- never done: it is stopped here
      after = true
    end)
    gate3:set_result(1)
    assert.is_true(cf.CancelledError:is(select(2, pcall(job3.result, job3, 10))))
    assert.is_false(after)
    -- one that finishes before the stop is seen still ends CANCELLED
    local gate4 = cf.Future()
    local job4 = cf.async(function() return cf.await(gate4) end)
    assert.is_true(job4:cancel { running = true })
    gate4:set_result(4)  -- resumes it at once: it returns
    assert.is_true(job4:cancelled())
  end)

  it("leaves alone a future completed by hand while its coroutine waits", function()
    -- before: the coroutine's end set it again, inside a callback:
    -- "error in done callback: InvalidStateError" on stderr
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local gate = cf.Future()
      local job = cf.async(function() return cf.await(gate) end)
      job:set_result("by hand")
      local job2 = cf.async(function() cf.await(gate) error("late") end)
      job2:set_exception("by hand too")
      gate:set_result(1)
      print(job:result(0), job2:exception(0))
    ]])
    assert.is_true(ok, out)
    assert.equal("by hand\tby hand too\n", out)
  end)

  it("leaves its runs alone when they wake while the state closes", function()
    -- before: the executor's finalizer ran the wake-ups (a task ended,
    -- an await's timeout fired) after the runs' handles were finalized:
    -- "error in done callback: future handle already finalized" on
    -- stderr, once per run; os.exit(true, true) the same
    for _, ending in ipairs { "", "os.exit(true, true)" } do
      local out, ok = helpers.run_lua([[
        local cf = require "concurrent.futures"
        local ex = cf.ThreadPoolExecutor(2)
        local never = cf.Future()
        for i = 1, 200 do
          cf.async(function() cf.await(never, 0.001 * (i % 20)) end)
          cf.async(function() return cf.await(ex:submit(function() return 1 end)) end)
        end
        -- holds the executor's finalizer while the timeouts fire
        ex:submit(function() local t = os.clock() while os.clock() - t < 0.3 do end end)
      ]] .. ending)
      assert.is_true(ok, out)
      assert.equal("", out)
    end
  end)

  it("closes the to-be-closed variables of a function that fails", function()
    local closed, gate = {}, cf.Future()
    local function tbc(name)
      return setmetatable({}, { __close = function(_, e) closed[#closed + 1] = { name, e } end })
    end
    local job = cf.async(function()
      local _ <close> = tbc("a")
      cf.await(gate)
      error("boom", 0)
    end)
    gate:set_result(1)
    assert.same({ { "a", "boom" } }, closed)
    assert.equal("boom", job:exception(0))
    -- a __close that raises replaces the error, as in Lua
    local job2 = cf.async(function()
      local _ <close> = setmetatable({}, { __close = function() error("in close", 0) end })
      error("first", 0)
    end)
    assert.equal("in close", job2:exception(0))
    -- and those of one that yields outside cf.await
    closed = {}
    local job3 = cf.async(function() local _ <close> = tbc("y") coroutine.yield() end)
    assert.matches("outside cf.await", job3:exception(0))
    assert.same({ { "y" } }, closed)
  end)

  it("raises TimeoutError inside the coroutine when await's timeout passes", function()
    local never = cf.Future()
    local job = cf.async(function()
      local ok, err = pcall(cf.await, never, 0.05)
      local ok0, err0 = pcall(cf.await, never, 0)
      return ok, cf.TimeoutError:is(err), ok0, cf.TimeoutError:is(err0), tostring(err)
    end)
    assert.same({ false, true, false, true, "TimeoutError: await timed out", n = 5 },
      table.pack(job:result(10)))
    -- a finished await does not time out later
    local soon = cf.Future()
    local job2 = cf.async(function() return cf.await(soon, 0.05) end)
    soon:set_result("in time")
    assert.equal("in time", job2:result(0))
    cf.dispatch(0.1)
    assert.equal("in time", job2:result(0))
  end)

  -- before: the run's callback stayed on the awaited future until it
  -- was done (for ever for one never done), with the run, its
  -- coroutine and its future: about 2 KB per timed-out await; and a
  -- timeout that fired inside the timer's add_done_callback woke the
  -- run before its callback on the future was added, which then stayed
  it("lets go of a run whose await timed out", function()
    local stop = cf.Future()  -- lives on, never done: a heartbeat loop's
    local jobs, ended = setmetatable({}, { __mode = "k" }), 0
    for i = 1, 500 do
      local never = cf.Future()
      for _, f in ipairs { never, stop } do
        jobs[cf.async(function()
          assert(not pcall(cf.await, f, 1e-4 * (i % 5)))
          ended = ended + 1
        end)] = true
      end
    end
    local deadline = os.time() + 30
    while ended < 1000 and os.time() < deadline do cf.dispatch(0.05) end
    assert.equal(1000, ended)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(jobs))
    assert.is_false(stop:done())
  end)

  -- before: the run's callbacks on the future it awaited and on its
  -- timer stayed when it was stopped there, holding it until that
  -- future was done (for ever for one never done) or the timeout passed
  it("lets go of a run stopped while it awaits", function()
    local stop = cf.Future()
    local jobs, n, ended = setmetatable({}, { __mode = "k" }), 0, 0
    local function add(job)
      jobs[job], n = true, n + 1
      job:add_done_callback(function() ended = ended + 1 end)
      return job
    end
    for i = 1, 150 do
      for _, timeout in ipairs { false, 3600 } do
        local never = cf.Future()
        for _, f in ipairs { never, stop } do
          local job = add(cf.async(function() cf.await(f, timeout or nil) end))
          assert.is_true(job:cancel { running = true })
        end
      end
    end
    -- closed and resumed by hand while it awaits (the run fails)
    local co
    add(cf.async(function() co = coroutine.running() cf.await(stop, 3600) end))
    coroutine.close(co)
    add(cf.async(function() co = coroutine.running() cf.await(stop) end))
    coroutine.resume(co)
    co = nil  -- (a coroutine dead by an error keeps its stack)
    cf.dispatch(0)  -- the stops run at a safe point
    assert.equal(602, n)
    assert.equal(n, ended)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(jobs))
    assert.is_false(stop:done())
  end)

  it("refuses to await its own future, which only its end completes", function()
    -- before: the coroutine waited for itself, and its future stayed
    -- pending for ever
    local gate = cf.Future()
    local job
    job = cf.async(function()
      cf.await(gate)
      local ok, err = pcall(cf.await, job)
      return ok, err
    end)
    gate:set_result(true)
    local ok, err = job:result(10)
    assert.is_false(ok)
    assert.matches("cannot await its own future", err)
  end)

  it("is f:result() outside an async coroutine", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    assert.equal(3, cf.await(ex:submit(function() return 3 end)))
    local ok, err = pcall(cf.await, cf.Future(), 0.01)
    assert.is_false(ok)
    assert.is_true(cf.TimeoutError:is(err))
    local co = coroutine.wrap(function() return cf.await(ex:submit(function() return 4 end)) end)
    assert.equal(4, co())
  end)

  it("works inside a worker task", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local f = ex:submit(function()
      local cf2 = require "concurrent.futures"
      local g = cf2.Future()
      local job = cf2.async(function() return cf2.await(g) + 1 end)
      g:set_result(1)
      return job:result(1)
    end)
    assert.equal(2, f:result(10))
  end)

  it("refuses bad arguments", function()
    local here = "14%-compose_spec%.lua:%d+: "
    for _, c in ipairs {
      { function() local v = cf.await(5) return v end,
        "bad argument #1 to 'await' %(future expected, got number%)" },
      { function() local v = cf.await(cf.Future(), "1") return v end,
        "bad argument #2 to 'await' %(number expected, got string%)" },
      { function() local v = cf.await(cf.Future(), -1) return v end,
        "bad argument #2 to 'await' %(timeout must be non%-negative%)" },
      { function() local v = cf.await(cf.Future(), 0 / 0) return v end,
        "bad argument #2 to 'await' %(timeout is not a number %(NaN%)%)" },
      { function() local v = cf.async(5) return v end,
        "bad argument #1 to 'async' %(function expected, got number%)" },
    } do
      assert.matches("^[^\n]-" .. here .. c[2], line_of(c[1]))
    end
  end)
end)

-- Each link of these chains completes the next from a done-callback:
-- nested at once, 250 links overflowed Lua's C stack (about 190 deep) and
-- the result was lost (the error only printed on stderr). Deeper than
-- lmailbox.c's LCONC_MAXNEST, callbacks run once the outermost returns.
describe("chains of futures completing each other", function()
  local LINKS = 250

  local function chain(link)
    local root = cf.Future()
    local f = root
    for i = 1, LINKS do f = link(f, i) end
    root:set_result(42)
    assert.is_true(f:done())  -- at once: set_result ran the whole chain
    return f:result(0)
  end

  it("of cf.all, cf.any and cf.async give the result", function()
    local r = chain(function(f) return cf.all { f } end)
    for _ = 1, LINKS do r = r[1][1] end
    assert.equal(42, r)
    assert.equal(42, chain(function(f) return cf.any { f } end))
    assert.equal(42, chain(function(f)
      return cf.async(function() return cf.await(f) end)
    end))
    assert.equal(42 + LINKS, chain(function(f)
      return cf.async(function() return cf.await(f) + 1 end)
    end))
  end)

  it("of plain done-callbacks give the result, and a failure at the end", function()
    assert.equal(42 + LINKS, chain(function(f)
      local nxt = cf.Future()
      f:add_done_callback(function(d) nxt:set_result(d:result() + 1) end)
      return nxt
    end))
    local ok, err = pcall(chain, function(f, i)
      local nxt = cf.Future()
      f:add_done_callback(function(d)
        if i == LINKS then nxt:set_exception("link " .. i) else nxt:set_result(d:result()) end
      end)
      return nxt
    end)
    assert.is_false(ok)
    assert.equal("link " .. LINKS, err)
  end)

  it("still run a shallow callback's callbacks at once, in order", function()
    local log, a, b = {}, cf.Future(), cf.Future()
    b:add_done_callback(function() log[#log + 1] = "b" end)
    a:add_done_callback(function()
      b:set_result(1)
      log[#log + 1] = "after b"
    end)
    a:set_result(1)
    assert.same({ "b", "after b" }, log)
  end)
end)

-- map's chunks wrap each call's arguments two tables deep (run_chunk):
-- that wrapping must not show, neither in how deep an argument may be
-- nor in the path a refusal names.
describe("map's chunks take the arguments a task takes", function()
  local function nest(n)
    local t = {}
    for _ = 2, n do t = { t } end
    return t
  end
  local function depth(t)
    local d = 0
    while type(t) == "table" do d, t = d + 1, t[1] end
    return d
  end
  local h = io.stdout
  for _, pool in ipairs { "ThreadPoolExecutor", "ProcessPoolExecutor" } do
    it("as deep as submit's, over a " .. pool, function()
      local ex <close> = cf[pool](2)
      local id = function(x) return x end
      for _, chunksize in ipairs { 1, 2 } do
        local got = {}
        for i, v in ex:map { id, { nest(200), nest(200), nest(200) },
                             chunksize = chunksize } do
          got[i] = depth(v)
        end
        assert.same({ 200, 200, 200 }, got)
        local ok, err = pcall(function()
          for _ in ex:map { id, { 1, nest(201) }, chunksize = chunksize } do end
        end)
        assert.is_false(ok)
        assert.matches("cannot transfer argument #2" .. ("%[1%]"):rep(200)
                       .. " %(nesting deeper than 200%)", err)
      end
    end)

    it("refused with the path submit names, over a " .. pool, function()
      local ex <close> = cf[pool](1)
      local cases = {
        { function(x) return x end, { { 1, { a = h } } },
          "cannot transfer argument #2.a (userdata)" },
        { function() return h end, { { 1, 2 } },
          "cannot transfer argument #1(upvalue 'h') (userdata)" },
        { function(x, y) return x, y end, { { 1, 2 }, { 3, h } },
          "cannot transfer argument #3 (userdata)" },
        { function(x, y) return x, y end, { { 1, 2 }, { 3, { [5] = { h } } } },
          "cannot transfer argument #3[5][1] (userdata)" },
      }
      for _, c in ipairs(cases) do
        for _, chunksize in ipairs { 1, 3 } do
          local ok, err = pcall(function()
            for _ in ex:map { c[1], c[2][1], c[2][2], chunksize = chunksize } do end
          end)
          assert.is_false(ok)
          assert.matches("14%-compose_spec%.lua:%d+: " .. c[3]:gsub("%p", "%%%0"), err)
        end
      end
    end)
  end
end)

describe("composition over a process pool", function()
  it("maps in completion order and with a buffer", function()
    local ex <close> = cf.ProcessPoolExecutor(2)
    local seen = {}
    for i, v in ex:map { function(x) return x * 2 end, { 1, 2, 3, 4, 5 },
                         ordered = false, chunksize = 2 } do
      assert.equal(2 * i, v)
      seen[#seen + 1] = i
    end
    table.sort(seen)
    assert.same({ 1, 2, 3, 4, 5 }, seen)
    local n = 0
    local function naturals() n = n + 1 return n end
    local count = 0
    for i, v in ex:map { function(x) return -x end, naturals, buffersize = 2 } do
      assert.equal(-i, v)
      count = count + 1
      assert.equal(count + 2, n)
      if count == 10 then break end
    end
  end)

  it("awaits process tasks inside cf.async; all and any combine them", function()
    local ex <close> = cf.ProcessPoolExecutor(2)
    local job = cf.async(function()
      local a = cf.await(ex:submit(function() return 20 end))
      local b = cf.await(ex:submit(function(x) return x + 1 end, a), math.maxinteger)
      return a + b
    end)
    assert.equal(41, job:result(30))
    local both = cf.all { ex:submit(function() return 1 end), ex:submit(function() return 2 end) }
    assert.same({ { 1, n = 1 }, { 2, n = 1 } }, both:result(30))
    local first = cf.any { ex:submit(function() error("no", 0) end),
                           ex:submit(function() return "yes" end) }
    assert.equal("yes", first:result(30))
  end)
end)
