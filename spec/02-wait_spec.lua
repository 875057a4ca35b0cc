-- cf.wait and cf.as_completed: return_when, duplicates, timeouts, bad
-- input, and a stress run with host threads completing many futures.

local cf = require "concurrent.futures"
local th = require "testhelper"

local function futures(n)
  local fs = {}
  for i = 1, n do fs[i] = cf.Future() end
  return fs
end

describe("huge timeouts", function()
  -- issue 9, item 9: now + 2^63 s overflowed time_t and expired at once
  it("are forever in wait and as_completed (math.maxinteger, 1e300, inf)", function()
    for _, t in ipairs({ math.maxinteger, 1e19, 1e300, math.huge }) do
      local fs = futures(2)
      local job = th.complete(fs, 0.01, "result", 0)
      local done, not_done = cf.wait(fs, t)
      job:join()
      assert.equal(2, #done)
      assert.equal(0, #not_done)
      fs = futures(2)
      job = th.complete(fs, 0.01, "result", 0)
      local n = 0
      for _ in cf.as_completed(fs, t) do n = n + 1 end
      job:join()
      assert.equal(2, n)
    end
  end)
end)

describe("cf.as_completed", function()
  it("yields already-done futures first, each once, duplicates included", function()
    local fs = futures(3)
    fs[2]:set_result("b")
    local seen, job = {}, nil
    for f in cf.as_completed({ fs[1], fs[2], fs[2], fs[3], fs[1] }, 10) do
      seen[#seen + 1] = f
      -- the others complete only once the loop watches them (a host
      -- thread started before it could finish both first, on a slow day)
      if not job then job = th.complete({ fs[3], fs[1] }, 0.01, "result", 0) end
    end
    job:join()
    assert.equal(3, #seen)
    assert.equal(fs[2], seen[1])
    assert.equal(fs[3], seen[2])
    assert.equal(fs[1], seen[3])
  end)

  it("raises TimeoutError naming how many are unfinished", function()
    local fs = futures(4)
    fs[1]:set_result(1)
    fs[3]:cancel()
    local got = 0
    local ok, err = pcall(function()
      for _ in cf.as_completed(fs, 0.05) do got = got + 1 end
    end)
    assert.is_false(ok)
    assert.is_true(cf.TimeoutError:is(err))
    assert.equal("2 (of 4) futures unfinished", err.message)
    assert.equal(2, got)
  end)

  it("yields nothing for an empty array", function()
    for _ in cf.as_completed({}) do error("no futures to yield") end
  end)

  it("runs the callbacks of each future before yielding it", function()
    local fs = futures(5)
    local ran = {}
    for i, f in ipairs(fs) do
      f:add_done_callback(function() ran[i] = true end)
    end
    local job = th.complete(fs, 0.002, "result", 0)
    for f in cf.as_completed(fs, 10) do
      for i, g in ipairs(fs) do
        if g == f then assert.is_true(ran[i]) end
      end
    end
    job:join()
  end)

  it("stops watching when the loop is left early", function()
    local fs = futures(3)
    fs[1]:set_result(1)
    for f in cf.as_completed(fs) do  -- luacheck: ignore 512 (left at once)
      assert.equal(fs[1], f)
      break
    end
    collectgarbage()
    fs[2]:set_result(2)
    fs[3]:set_result(3)
  end)

  it("names a bad argument", function()
    local ok, err = pcall(function() return cf.as_completed(5) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'as_completed' "
                   .. "%(table of futures expected, got number%)", err)
    ok, err = pcall(function() return cf.as_completed({ cf.Future(), cf.Future(), "x" }) end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'as_completed' "
                   .. "%(future expected at index 3, got string%)", err)
    ok, err = pcall(function() return cf.as_completed({}, -1) end)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'as_completed' %(timeout must be non%-negative%)", err)
  end)
end)

describe("cf.wait", function()
  it("waits for all by default and returns arrays in input order", function()
    local fs = futures(3)
    local job = th.complete({ fs[3], fs[2], fs[1] }, 0.005, "result", 0)
    local done, not_done = cf.wait(fs, 10)
    job:join()
    assert.same({}, not_done)
    assert.equal(3, #done)
    for i = 1, 3 do assert.equal(fs[i], done[i]) end
  end)

  it("returns on the first completion with FIRST_COMPLETED", function()
    local fs = futures(3)
    local job = th.complete({ fs[2] }, 0.01, "result", 0)
    local done, not_done = cf.wait(fs, 10, cf.FIRST_COMPLETED)
    assert.same({ fs[2] }, done)
    assert.same({ fs[1], fs[3] }, not_done)
    job:join()
  end)

  it("returns at once with FIRST_COMPLETED when one is already done", function()
    local fs = futures(2)
    fs[2]:cancel()
    local done, not_done = cf.wait(fs, nil, cf.FIRST_COMPLETED)
    assert.same({ fs[2] }, done)
    assert.same({ fs[1] }, not_done)
  end)

  it("returns on the first exception with FIRST_EXCEPTION", function()
    local fs = futures(3)
    fs[1]:set_result("fine")
    fs[2]:cancel()   -- cancelled is not an exception
    local job = th.complete({ fs[3] }, 0.01, "exception", "bad")
    local done, not_done = cf.wait(fs, 10, cf.FIRST_EXCEPTION)
    assert.same({ fs[1], fs[2], fs[3] }, done)
    assert.same({}, not_done)
    job:join()
    local more = futures(2)
    more[1]:set_exception("early")
    done, not_done = cf.wait(more, 10, cf.FIRST_EXCEPTION)
    assert.same({ more[1] }, done)
    assert.same({ more[2] }, not_done)
  end)

  it("acts as ALL_COMPLETED under FIRST_EXCEPTION when nothing raises", function()
    local fs = futures(2)
    local job = th.complete(fs, 0.005, "result", 0)
    local done = cf.wait(fs, 10, cf.FIRST_EXCEPTION)
    assert.equal(2, #done)
    job:join()
  end)

  it("returns what is done when the timeout passes, without raising", function()
    local fs = futures(3)
    fs[2]:set_result(1)
    local done, not_done = cf.wait(fs, 0.02)
    assert.same({ fs[2] }, done)
    assert.same({ fs[1], fs[3] }, not_done)
  end)

  it("lists a duplicated future once", function()
    local f = cf.Future()
    f:set_result(1)
    local done, not_done = cf.wait({ f, f, f })
    assert.same({ f }, done)
    assert.same({}, not_done)
  end)

  it("refuses an unknown return_when and bad arrays", function()
    local ok, err = pcall(function() return cf.wait({}, nil, "SOMETIMES") end)
    assert.is_false(ok)
    assert.matches("bad argument #3 to 'wait' %(invalid option 'SOMETIMES'%)", err)
    ok, err = pcall(function() return cf.wait("fs") end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'wait' %(table of futures expected, got string%)", err)
    ok, err = pcall(cf.wait, { cf.Future(), 2 })
    assert.is_false(ok)
    assert.matches("future expected at index 2, got number", err)
    ok, err = pcall(function() return cf.wait({}, -0.5) end)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'wait'", err)
    ok, err = pcall(function() return cf.wait({}, 0 / 0) end)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'wait' %(timeout is not a number", err)
  end)

  -- issue 9, bad input: tables were sized from '#fs' (16 GB for 1e9)
  it("sizes its work by the futures there, not by a __len", function()
    local fs = setmetatable({ cf.Future(), cf.Future() },
                            { __len = function() return 1e9 end })
    fs[1]:set_result(1)
    local ok, err = pcall(cf.wait, fs, 0)
    assert.is_false(ok)
    assert.matches("future expected at index 3, got nil", err)
    ok, err = pcall(function()
      for _ in cf.as_completed(fs, 0) do end
    end)
    assert.is_false(ok)
    assert.matches("future expected at index 3, got nil", err)
    local done = cf.wait(setmetatable({ fs[1] }, { __len = function() return 1 end }))
    assert.equal(fs[1], done[1])
  end)

  -- before: the length came through __len and the entries were read
  -- raw, "future expected at index 1, got nil", while cf.all, cf.any
  -- and map read the same proxy through its __index
  it("reads a proxy array through __index, as cf.all and cf.any do", function()
    local fs = { cf.Future(), cf.Future() }
    fs[1]:set_result(1)
    local proxy = setmetatable({}, { __index = fs, __len = function() return #fs end })
    local done, not_done = cf.wait(proxy, 0)
    assert.same({ fs[1] }, done)
    assert.same({ fs[2] }, not_done)
    fs[2]:set_result(2)
    local seen = {}
    for f in cf.as_completed(proxy, 10) do seen[#seen + 1] = f end
    assert.same(fs, seen)
    -- an __index that raises: its error, not a made-up one
    local bad = setmetatable({}, { __index = function() error("no entries here", 0) end,
                                   __len = function() return 1 end })
    assert.equal("no entries here", select(2, pcall(cf.wait, bad, 0)))
  end)
end)

describe("#stress host threads completing futures", function()
  it("delivers every result while Lua waits on them", function()
    local nthreads, per = 6, 150
    local all, jobs = {}, {}
    for t = 1, nthreads do
      local fs = futures(per)
      for _, f in ipairs(fs) do all[#all + 1] = f end
      jobs[t] = th.complete(fs, 0, "result", (t - 1) * per)
    end
    local sum, count, ran = 0, 0, 0
    for _, f in ipairs(all) do
      f:add_done_callback(function() ran = ran + 1 end)
    end
    for f in cf.as_completed(all, 60) do
      sum = sum + f:result()
      count = count + 1
    end
    for _, j in ipairs(jobs) do assert.equal(0, j:join()) end
    local n = nthreads * per
    assert.equal(n, count)
    assert.equal(n * (n + 1) // 2, sum)
    assert.equal(n, ran)
    local done, not_done = cf.wait(all, 0)
    assert.equal(n, #done)
    assert.equal(0, #not_done)
  end)

  it("survives host cancels racing Lua's set_result", function()
    for _ = 1, 20 do
      local fs = futures(50)
      local job = th.complete(fs, 0, "cancel")
      local mine = 0
      for _, f in ipairs(fs) do
        if pcall(f.set_result, f, 1) then mine = mine + 1 end
      end
      local refused = job:join()
      assert.equal(mine, refused)
      local done = cf.wait(fs, 10)
      assert.equal(50, #done)
    end
  end)
end)

-- Ported from CPython's test_wait.py and test_as_completed.py (spec/
-- CPYTHON.md lists every case), for both pools as there. A task that
-- waits on an event there waits on a gate future here. A cancelled
-- future counts as done here (API.md), where Python's wait leaves a
-- cancelled but not yet notified one out.
local function fixtures()
  local cancelled, failed, succeeded = cf.Future(), cf.Future(), cf.Future()
  cancelled:cancel()
  failed:set_exception({ oserror = true })
  succeeded:set_result(42)
  return cancelled, failed, succeeded
end

local function waits(g) return g:result(30) end
local function mul(a, b) return a * b end
local function raises() error("this is an exception", 0) end

for _, class in ipairs { "ThreadPoolExecutor", "ProcessPoolExecutor" } do
  local Pool = cf[class]

  describe(class .. " cf.wait (CPython test_wait)", function()
    it("lists a duplicated task future once (test_20369)", function()
      local ex <close> = Pool(2)
      local f = ex:submit(mul, 1, 2)
      local done, not_done = cf.wait({ f, f }, nil, cf.ALL_COMPLETED)
      assert.same({ f }, done)
      assert.same({}, not_done)
    end)

    it("returns the first task done (test_first_completed)", function()
      local ex <close> = Pool(2)
      local gate = cf.Future()
      local f1 = ex:submit(mul, 21, 2)
      local f2 = ex:submit(waits, gate)
      local done, not_done = cf.wait({ f1, f2 }, nil, cf.FIRST_COMPLETED)
      assert.same({ f1 }, done)
      assert.same({ f2 }, not_done)
      gate:set_result(true)
      assert.is_true(f2:result(30))
    end)

    it("returns at once with what is done already "
       .. "(test_first_completed_some_already_completed)", function()
      local ex <close> = Pool(1)
      local gate = cf.Future()
      local cancelled, _, succeeded = fixtures()
      local f1 = ex:submit(waits, gate)
      local done, not_done = cf.wait({ cancelled, succeeded, f1 }, nil, cf.FIRST_COMPLETED)
      assert.same({ cancelled, succeeded }, done)
      assert.same({ f1 }, not_done)
      gate:set_result(true)
      f1:result(30)
    end)

    it("returns at the first failure, with what completed before it "
       .. "(test_first_exception)", function()
      local ex <close> = Pool(3)
      local gate1, gate2 = cf.Future(), cf.Future()
      local f1 = ex:submit(mul, 2, 21)
      local f2 = ex:submit(function(g) g:result(30) error("this is an exception", 0) end, gate1)
      local f3 = ex:submit(waits, gate2)
      -- f2 fails only once f1 is done: its callback opens f2's gate
      f1:add_done_callback(function() gate1:set_result(true) end)
      local done, not_done = cf.wait({ f1, f2, f3 }, nil, cf.FIRST_EXCEPTION)
      assert.same({ f1, f2 }, done)
      assert.same({ f3 }, not_done)
      gate2:set_result(true)
      f3:result(30)
    end)

    it("counts what is done already, a cancel being no failure "
       .. "(test_first_exception_some_already_complete)", function()
      local ex <close> = Pool(2)
      local gate = cf.Future()
      local cancelled, _, succeeded = fixtures()
      local f1 = ex:submit(raises)
      local f2 = ex:submit(waits, gate)
      local done, not_done = cf.wait({ succeeded, cancelled, f1, f2 }, nil, cf.FIRST_EXCEPTION)
      assert.same({ succeeded, cancelled, f1 }, done)
      assert.same({ f2 }, not_done)
      gate:set_result(true)
      f2:result(30)
    end)

    it("returns at once when one has failed already "
       .. "(test_first_exception_one_already_failed)", function()
      local ex <close> = Pool(1)
      local gate = cf.Future()
      local _, failed = fixtures()
      local f1 = ex:submit(waits, gate)
      local done, not_done = cf.wait({ failed, f1 }, nil, cf.FIRST_EXCEPTION)
      assert.same({ failed }, done)
      assert.same({ f1 }, not_done)
      gate:set_result(true)
      f1:result(30)
    end)

    it("waits for every one, whatever its outcome (test_all_completed)", function()
      local ex <close> = Pool(2)
      local cancelled, failed, succeeded = fixtures()
      local f1 = ex:submit(raises)
      local f2 = ex:submit(mul, 2, 21)
      local all = { succeeded, cancelled, failed, f1, f2 }
      local done, not_done = cf.wait(all, nil, cf.ALL_COMPLETED)
      assert.same(all, done)
      assert.same({}, not_done)
    end)

    it("returns what is done when its timeout passes (test_timeout)", function()
      local ex <close> = Pool(1)
      local gate = cf.Future()
      local cancelled, failed, succeeded = fixtures()
      local f = ex:submit(waits, gate)
      local done, not_done = cf.wait({ cancelled, failed, succeeded, f }, 0.05, cf.ALL_COMPLETED)
      assert.same({ cancelled, failed, succeeded }, done)
      assert.same({ f }, not_done)
      gate:set_result(true)
      f:result(30)
    end)

    it("sees every task of a crowd released at once (test_pending_calls_race)", function()
      local ex <close> = Pool(4)
      local gate = cf.Future()
      local fs = {}
      for i = 1, 100 do fs[i] = ex:submit(waits, gate) end
      gate:set_result(true)
      local done, not_done = cf.wait(fs, nil, cf.ALL_COMPLETED)
      assert.equal(100, #done)
      assert.same({}, not_done)
    end)
  end)

  describe(class .. " cf.as_completed (CPython test_as_completed)", function()
    it("yields done fixtures and tasks alike (test_no_timeout)", function()
      local ex <close> = Pool(2)
      local cancelled, failed, succeeded = fixtures()
      local f1, f2 = ex:submit(mul, 2, 21), ex:submit(mul, 7, 6)
      local seen = {}
      for f in cf.as_completed({ cancelled, failed, succeeded, f1, f2 }) do seen[f] = true end
      assert.same({ [cancelled] = true, [failed] = true, [succeeded] = true,
                    [f1] = true, [f2] = true }, seen)
    end)

    it("yields the done ones, then times out on the rest (test_future_times_out)", function()
      local ex <close> = Pool(1)
      local gate = cf.Future()
      for _, timeout in ipairs { 0, 0.1 } do
        local cancelled, failed, succeeded = fixtures()
        local f = ex:submit(waits, gate)
        local seen = {}
        local ok, err = pcall(function()
          for g in cf.as_completed({ cancelled, failed, succeeded, f }, timeout) do
            seen[g] = true
          end
        end)
        assert.is_false(ok)
        assert.is_true(cf.TimeoutError:is(err))
        assert.same({ [cancelled] = true, [failed] = true, [succeeded] = true }, seen)
      end
      gate:set_result(true)
    end)

    it("yields a task future given three times once (test_duplicate_futures)", function()
      local ex <close> = Pool(1)
      local f = ex:submit(mul, 1, 2)
      local n = 0
      for _ in cf.as_completed({ f, f, f }) do n = n + 1 end
      assert.equal(1, n)
    end)
  end)
end

describe("cf.as_completed (CPython test_as_completed)", function()
  it("keeps no future it has yielded (test_free_reference_yielded_future)", function()
    -- the generic for holds the future of the current step: each step
    -- checks that the one before is gone
    local fs = {}
    for i = 1, 8 do fs[i] = cf.Future() end
    local last = cf.Future()
    last:set_result(42)
    fs[#fs + 1] = last
    last = nil  -- luacheck: ignore 311
    local gone = setmetatable({}, { __mode = "k" })
    local steps = 0
    for f in cf.as_completed(fs) do
      for i = #fs, 1, -1 do if fs[i] == f then table.remove(fs, i) end end
      collectgarbage()  -- a finalized key leaves a weak table one cycle later
      collectgarbage()
      assert.is_true(next(gone) == nil, "a yielded future is still held")
      gone[f] = true
      steps = steps + 1
      if fs[1] then fs[1]:set_result("test") end
    end
    assert.equal(9, steps)
    collectgarbage()
    collectgarbage()
    assert.is_true(next(gone) == nil)
  end)
end)
