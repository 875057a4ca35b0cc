-- MPIPoolExecutor (concurrent.futures.mpi), run by 'make test-mpi' under
-- mpiexec -n 3: this busted process is rank 0; ranks 1 and 2 became
-- workers when the launch line loaded the module. The cases API.md asks
-- of every pool are spec/support/poolcases.lua's; these are MPI's own.

local mpi = require "concurrent.futures.mpi"
local cf = require "concurrent.futures"

local Pool, Broken = mpi.MPIPoolExecutor, mpi.BrokenMPIPool

-- loaded in this file's environment, where busted's describe and it are
local poolcases = assert(loadfile("spec/support/poolcases.lua", "t", _ENV))()
poolcases("MPIPoolExecutor", Pool, Broken, {
  options = "max_workers, initializer, initargs, max_tasks_per_child, task_timeout, "
    .. "max_memory, respawn", copies = true, limits = true,
})

describe("concurrent.futures.mpi", function()
  it("runs in rank 0 of 3 ranks", function()
    assert.equal(0, mpi.rank())
    assert.equal(3, mpi.size())
    assert.is_true(cf.BrokenExecutor:is(Broken("x")))
    assert.equal(cf.BrokenExecutor, Broken.parent)
  end)

  it("runs tasks in the worker ranks, one rank per worker", function()
    local ex <close> = Pool()
    local gate = cf.Future()
    local function rank(g)
      g:result(30)
      return require("concurrent.futures.mpi").rank()
    end
    local a, b = ex:submit(rank, gate), ex:submit(rank, gate)
    gate:set_result(true)
    local ranks = { a:result(30), b:result(30) }
    table.sort(ranks)
    assert.same({ 1, 2 }, ranks)
    assert.equal(2, ex:stats().workers)
  end)

  it("keeps the remote traceback of a runtime error", function()
    local ex <close> = Pool(2)
    local s = ex:submit(function() local x = nil; return x.field end)
    assert.matches("attempt to index", s:exception(30))
    assert.matches("stack traceback", s:traceback())
  end)

  it("keeps serving after a task's Lua error (not fatal to the rank)", function()
    local ex <close> = Pool(1)
    for i = 1, 5 do
      assert.is_not_nil(ex:submit(error, "e" .. i):exception(30))
      assert.equal(i, ex:submit(function(x) return x end, i):result(30))
    end
  end)

  it("forwards one future to both ranks, and futures nested in results", function()
    local ex <close> = Pool(2)
    local inner, outer = cf.Future(), cf.Future()
    local fs = {}
    for i = 1, 4 do
      fs[i] = ex:submit(function(o) return o:result(30)[1]:result(30) + 0 end, outer)
    end
    outer:set_result({ inner })
    inner:set_result(5)
    for i = 1, 4 do assert.equal(5, fs[i]:result(30)) end
  end)

  it("refuses a future leaving a worker rank", function()
    local ex <close> = Pool(1)
    local e = ex:submit(function()
      return require("concurrent.futures").Future()
    end):exception(30)
    assert.is_true(cf.InvalidStateError:is(e), tostring(e))
    assert.matches("a future, or a queue made in a worker rank, cannot leave it", tostring(e))
  end)

  it("serves as_completed and wait", function()
    local ex <close> = Pool(2)
    local fs, seen = {}, {}
    for i = 1, 12 do fs[i] = ex:submit(function(x) return x end, i) end
    for f in cf.as_completed(fs, 30) do seen[#seen + 1] = f:result() end
    table.sort(seen)
    assert.equal(12, #seen)
    assert.equal(12, seen[12])
    local gate = cf.Future()
    local slow = ex:submit(function(g) return g:result(30) end, gate)
    local bad = ex:submit(error, "bad")
    local done, notdone = cf.wait({ slow, bad }, 30, cf.FIRST_EXCEPTION)
    assert.equal(1, #done)
    assert.equal(bad, done[1])
    assert.equal(1, #notdone)
    gate:set_result("ok")
    done = cf.wait({ slow, bad }, 30, cf.ALL_COMPLETED)
    assert.equal(2, #done)
    assert.equal("ok", slow:result(0))
  end)

  it("drops the proxies of futures that are never set, on the ranks and rank 0", function()
    -- each future a task is given has a proxy on its rank and an entry on
    -- rank 0 until it is set; one never set, given to a task that ran,
    -- or was cancelled on its rank before it ran, or to one a shutdown
    -- with cancel_futures dropped, stayed on both for the whole job
    local ex <close> = Pool(1)
    for _ = 1, 10 do
      ex:submit(function(n) return n ~= nil end, cf.Future()):result(30)
      local gate, never = cf.Future(), cf.Future()
      local first = ex:submit(function(g) return g:result(30) end, gate)
      local fs = {}
      for i = 1, 3 do fs[i] = ex:submit(function(n) return n ~= nil end, never) end
      for i = 3, 1, -1 do fs[i]:cancel { running = true } end
      gate:set_result(true)
      first:result(30)
      local other = Pool(1)
      local g2 = cf.Future()
      other:submit(function(g) return g:result(30) end, g2)
      for _ = 1, 3 do other:submit(function(n) return n ~= nil end, cf.Future()) end
      other:shutdown(false, true)
      g2:set_result(true)
      other:shutdown()
    end
    collectgarbage()
    -- the rank drops a proxy once a job ended after its last holder went
    -- (here the collection of the first task), and tells rank 0
    local left
    for _ = 1, 100 do
      ex:submit(collectgarbage):result(30)
      left = ex:submit(function()
        return require("concurrent.futures.mpi")._proxies()
      end):result(30)
      if left == 0 and mpi._proxies() == 0 then break end
    end
    assert.equal(0, left)
    assert.equal(0, mpi._proxies())
  end)

  it("keeps a future's news for the ranks that dropped its proxy and were given it again", function()
    -- a rank drops a proxy no one holds there while rank 0 may be sending
    -- it again: the mentions each side counted keep the rank told
    local ex <close> = Pool(2)
    local g = cf.Future()
    for _ = 1, 100 do
      local fs = {}
      for i = 1, 4 do
        fs[i] = ex:submit(function(f, k)
          if k == 1 then collectgarbage() end
          return f:done()
        end, g, i)
      end
      for i = 1, 4 do assert.is_false(fs[i]:result(30)) end
    end
    local waiters = {}
    for i = 1, 4 do waiters[i] = ex:submit(function(f) return f:result(30) end, g) end
    g:set_result("go")
    for i = 1, 4 do assert.equal("go", waiters[i]:result(30)) end
  end)

  it("ends every task of a storm of running cancels racing the sends ahead", function()
    local ex <close> = Pool(2)
    local fs, n = {}, 200
    local rnd = 7
    for i = 1, n do
      fs[i] = ex:submit(function(k)
        local t = os.clock() + 0.001
        while os.clock() < t do end
        return k
      end, i)
      rnd = (rnd * 1103515245 + 12345) % 2147483648
      if rnd % 2 == 0 then fs[rnd % i + 1]:cancel { running = true } end
    end
    local done, cancelled = 0, 0
    for i = 1, n do
      local ok, v = pcall(fs[i].result, fs[i], 30)
      if ok then
        assert.equal(i, v)
        done = done + 1
      else
        assert.is_true(cf.CancelledError:is(v), tostring(v))
        cancelled = cancelled + 1
      end
    end
    local st = ex:stats()
    assert.same({ done, cancelled, 0, 0 }, { st.completed, st.cancelled, st.running, st.pending })
    assert.equal("ok", ex:submit(function() return "ok" end):result(30))
  end)

  it("breaks when the initializer fails, naming the rank; the ranks serve the next pool", function()
    local ex <close> = Pool { max_workers = 1, initializer = function() error("init boom") end }
    local e = ex:submit(function() return 1 end):exception(30)
    assert.is_true(Broken:is(e), tostring(e))
    assert.matches("rank 1", tostring(e))
    ex:shutdown()
    local again <close> = Pool(2)
    assert.equal(2, again:submit(function() return 2 end):result(30))
  end)

  it("counts its ranks as workers, idle once their task is done", function()
    local ex <close> = Pool(1)
    ex:submit(function() end):result(30)
    local st = ex:stats()
    assert.equal(1, st.workers)
    assert.equal(1, st.idle)
    ex:shutdown()
    assert.equal("MPIPoolExecutor<shutdown>", tostring(ex))
  end)

  it("runs examples/mpi_primes.lua to the answer of the thread and process pools", function()
    local out = {}
    local env = setmetatable({ print = function(s) out[#out + 1] = s end }, { __index = _G })
    assert(loadfile("examples/mpi_primes.lua", "t", env))("mpi")
    assert.equal("20 tasks on mpi workers: 20 completed", out[2])
    for _, kind in ipairs { "thread", "process" } do
      local p = assert(io.popen((os.getenv("SPEC_LUA") or "lua5.4")
                                .. " examples/mpi_primes.lua " .. kind))
      local got = p:read("a")
      assert.is_true(p:close())
      assert.equal(out[1], got:match("^[^\n]*"))
    end
    assert.equal("148933 primes up to 2000000, the largest 1999993", out[1])
  end)

  describe("bad input", function()
    it("cuts max_workers to the ranks there are", function()
      local many <close> = Pool(64)
      assert.equal(1, many:submit(function() return 1 end):result(30))
    end)

    it("refuses what cannot cross, naming it", function()
      local ex <close> = Pool(1)
      assert.has_error(function() ex:submit(print, io.stdout) end)
      -- a queue or a future in initargs would reach the ranks as copies
      local ok, err = pcall(Pool, { initializer = print, initargs = { cf.Future() } })
      assert.is_false(ok)
      assert.matches("initargs of a MPIPoolExecutor cannot hold a future or a queue", err)
      assert.equal(1, ex:submit(function() return 1 end):result(30))
    end)

    -- a process pool's worker on rank 0 is a forked copy of it: MPI's
    -- state without the communication thread. A pool made there waited
    -- for that thread for ever, and the process pool's shutdown for it.
    it("refuses a pool in a forked copy of rank 0, saying why", function()
      local pp <close> = cf.ProcessPoolExecutor(1)
      local ok, err = pp:submit(function()
        local m = require "concurrent.futures.mpi"
        local ok, e = pcall(m.MPIPoolExecutor, 1)
        return ok, tostring(e), m.rank()
      end):result(30)
      assert.is_false(ok)
      assert.matches("MPIPoolExecutor cannot be made in a forked process %(a process "
                     .. "pool's worker%): only process %d+, which started MPI, can use it", err)
      pp:shutdown()
      local ex <close> = Pool(1)
      assert.equal(7, ex:submit(function() return 7 end):result(30))
    end)

    -- 1 GiB and a bit of encoding from 64 KiB of strings (as spec/05's)
    local function big()
      local s, t = ("x"):rep(1 << 16), {}
      for i = 1, (1 << 14) + 1 do t[i] = s end
      return t
    end

    -- A message carries at most 1 GiB (CONC_FRAME_MAX), as a process
    -- pool's frame: arguments past it were taken by submit and their
    -- future failed with "could not be transferred to this state"; results
    -- (or an error) past it ended the worker rank ("out of memory"), and
    -- with it the whole job.
    it("refuses arguments and results too large for a message, and serves on", function()
      local ex <close> = Pool(1)
      local ok, err = pcall(ex.submit, ex, function(t) return #t end, big())
      assert.is_false(ok)
      assert.matches("cannot transfer arguments %(%d+ bytes: too large for a "
                     .. "worker process, 1 GiB at most%)", err)
      collectgarbage()
      err = ex:submit(big):exception(120)
      assert.matches("^cannot transfer results %(%d+ bytes: too large for a "
                     .. "worker process, 1 GiB at most%)$", err)
      assert.equal(7, ex:submit(function() return 7 end):result(60))
      assert.equal(1, ex:stats().failed)
    end)

    -- the initializer goes to each rank in the message that opens the
    -- pool there: past 1 GiB the pool was made, and broke at its first
    -- task with "cannot start worker rank 1 (not enough memory)"
    it("refuses an initializer with initargs too large for a message", function()
      local ok, err = pcall(Pool, { initializer = print, initargs = { big() } })
      assert.is_false(ok)
      assert.matches("cannot transfer the initializer and its initargs %(%d+ bytes: "
                     .. "too large for a worker process, 1 GiB at most%)", err)
      collectgarbage()
      local ex <close> = Pool(1)
      assert.equal(7, ex:submit(function() return 7 end):result(60))
    end)
  end)
end)

-- A queue crosses into an MPI task as into a process-pool task: the rank
-- holds a proxy whose operations rank 0's communication thread carries
-- out on the queue itself (API.md, "Queues" and "Across machines"). The
-- cases every pool of other processes shares are queuecases.lua's; these
-- are MPI's own.
local queuecases = assert(loadfile("spec/support/queuecases.lua", "t", _ENV))()
queuecases("MPIPoolExecutor", Pool, "worker rank")

-- API.md, "Running work", over MPI: rank 0 tells the rank (M_CANCEL), whose
-- communication thread stops the task the worker loop runs.
describe("running work on a worker rank", function()
  local function spin(started)
    started:put(true)
    while true do end
  end

  it("stops a running task and one queued behind it; the rank serves on", function()
    local ex <close> = Pool(1)
    local started = cf.Queue()
    local running = ex:submit(spin, started)
    local ahead = ex:submit(spin, started)  -- sent to the rank: running
    started:get(30)
    assert.is_false(running:cancel())  -- Python's meaning: pending only
    assert.is_true(ahead:cancel { running = true })
    assert.is_true(running:cancel { running = true })
    for _, f in ipairs { running, ahead } do
      assert.is_true(cf.CancelledError:is(select(2, pcall(f.result, f, 30))))
    end
    assert.equal(0, #started)  -- the one queued behind never ran
    assert.equal(42, ex:submit(function() return 42 end):result(30))
    local st = ex:stats()
    assert.equal(2, st.cancelled)
    assert.equal(1, st.completed)
    assert.equal(0, st.running)
  end)

  -- A running cancel that reached the rank while the task was held
  -- ahead only set its flag: its stop was never repeated, and a task
  -- that took the stop's hook off (in an xpcall handler, below) ran on
  -- for ever. As xpcall's function F spins; as its handler, it takes the
  -- hook off; table.sort calls xpcall(F, F) for each comparison.
  it("stops a task held ahead for good, though it takes its stop's hook off", function()
    local function F(e)
      if e ~= nil then debug.sethook() return e end
      while true do end
    end
    local ex <close> = Pool(1)
    local started, go = cf.Queue(), cf.Queue()
    local f = ex:submit(function(s, g) s:put(true) return g:get() end,
      started, go)
    local g = ex:submit(table.sort, { F, F, F }, xpcall)  -- held ahead
    started:get(30)
    assert.is_true(g:cancel { running = true })
    go:put("first")
    assert.equal("first", f:result(30))
    local ok, err = pcall(g.result, g, 30)
    assert.is_false(ok)
    assert.is_true(cf.CancelledError:is(err), tostring(err))
    assert.equal(7, ex:submit(function() return 7 end):result(30))
  end)

  it("fails a task past its time limit, from the option or the submit", function()
    local ex <close> = Pool { max_workers = 1, task_timeout = 0.2 }
    local e = ex:submit(spin, cf.Queue()):exception(30)
    assert.is_true(cf.TimeoutError:is(e), tostring(e))
    assert.equal("task exceeded its 0.2 s time limit", e.message)
    e = ex:submit { spin, cf.Queue(), timeout = 0.1 }:exception(30)
    assert.equal("task exceeded its 0.1 s time limit", e.message)
    assert.equal(7, ex:submit(function() return 7 end):result(30))
    assert.equal(2, ex:stats().failed)
  end)
end)

-- The process pool's options over MPI (API.md, "Across machines": the
-- same options as the process pool).
describe("process pool options on worker ranks", function()
  -- the error of a constructor call, without the function's name
  local function err(fn, ...)
    local ok, e = pcall(fn, ...)
    assert.is_false(ok)
    return tostring(e):match("%((.*)%)$") or tostring(e)
  end

  describe("max_memory", function()
    local function hog()
      local t = {}
      for i = 1, 1e8 do t[i] = ("x"):rep(16) .. i end
      return #t
    end

    it("fails a task that grows past the cap; the rank serves on", function()
      local ex <close> = Pool { max_workers = 1, max_memory = 8 * 1024 * 1024 }
      assert.equal(1, ex:submit(function() return 1 end):result(30))
      assert.equal("not enough memory", ex:submit(hog):exception(30))
      -- its garbage is collected at once: the rank says so with the result
      local left = ex:stats().memory
      assert.is_true(left > 0 and left < 4 * 1024 * 1024, tostring(left))
      local r = table.pack(ex:submit(function()
        return require("concurrent.futures.mpi").rank(), collectgarbage("count")
      end):result(30))
      assert.equal(1, r[1])
      assert.is_true(r[2] * 1024 < 8 * 1024 * 1024)
    end)

    it("caps each rank of the pool, and only that pool's states", function()
      local ex <close> = Pool { max_workers = 2, max_memory = 8 * 1024 * 1024 }
      local free <close> = Pool(2)
      local gate = cf.Future()
      local function hogat(g)
        g:result(30)
        local ok, e = pcall(function()
          local t = {}
          for i = 1, 1e8 do t[i] = ("x"):rep(16) .. i end
          return #t
        end)
        return require("concurrent.futures.mpi").rank(), ok, e
      end
      local a, b = ex:submit(hogat, gate), ex:submit(hogat, gate)
      gate:set_result(true)
      local ra, oka, ea = a:result(30)
      local rb, okb, eb = b:result(30)
      assert.same({ false, false }, { oka, okb })
      assert.same({ "not enough memory", "not enough memory" }, { ea, eb })
      assert.same({ 1, 2 }, { math.min(ra, rb), math.max(ra, rb) })
      local big = free:submit(function() return #("y"):rep(16 * 1024 * 1024) end)
      assert.equal(16 * 1024 * 1024, big:result(30))
    end)

    it("reports the memory the ranks' states hold in stats()", function()
      local ex <close> = Pool(2)
      assert.equal(0, ex:stats().memory)
      local gate = cf.Future()
      local function keep(g, n)
        g:result(30)
        _G.keep = ("x"):rep(n)
        return require("concurrent.futures.mpi").rank()
      end
      local a = ex:submit(keep, gate, 4 * 1024 * 1024)
      local b = ex:submit(keep, gate, 2 * 1024 * 1024)
      gate:set_result(true)
      assert.are_not.equal(a:result(30), b:result(30))
      local mem = ex:stats().memory
      assert.is_true(mem >= 6 * 1024 * 1024 and mem < 8 * 1024 * 1024, tostring(mem))
      ex:shutdown()
      assert.equal(0, ex:stats().memory)
    end)

    it("refuses the values ThreadPoolExecutor refuses, with its words", function()
      for _, v in ipairs { 0, -5, 1.5, "1k", 2^63 } do
        local want = err(cf.ThreadPoolExecutor, { max_memory = v })
        assert.matches("max_memory must be a positive integer", want)
        assert.equal(want, err(Pool, { max_memory = v }))
      end
    end)
  end)

  -- A rank cannot be replaced as a worker process is: it closes the
  -- pool's state after that many tasks and opens a fresh one (the
  -- initializer runs again) for the next, so per-task leaks are bounded
  -- the same way. stats() and cf.worker().tasks read as for processes.
  describe("max_tasks_per_child", function()
    local function probe()
      local w = require("concurrent.futures").worker()
      local had = rawget(_G, "mark") or false
      _G.mark = true
      _G.keep = ("k"):rep(1024 * 1024)
      return w.tasks, had, _G.inits, w.id
    end
    local function init() _G.inits = (_G.inits or 0) + 1 end

    it("gives a rank a fresh state after that many tasks", function()
      local ex <close> = Pool { max_workers = 1, max_tasks_per_child = 2, initializer = init }
      local seen = {}
      for i = 1, 5 do
        local tasks, had, inits, id = ex:submit(probe):result(30)
        seen[i] = { tasks, had, inits, id }
        local st = ex:stats()
        -- as a process pool whose worker exited: no worker, no memory,
        -- until the next task opens the fresh state
        if i % 2 == 0 then
          assert.same({ 0, 0 }, { st.workers, st.memory })
        else
          assert.equal(1, st.workers)
          assert.is_true(st.memory > 1024 * 1024, tostring(st.memory))
        end
        assert.equal(i, st.completed)
      end
      assert.same({ { 1, false, 1, 1 }, { 2, true, 1, 1 }, { 1, false, 1, 1 },
                    { 2, true, 1, 1 }, { 1, false, 1, 1 } }, seen)
    end)

    it("runs a backlog sent ahead to its ranks", function()
      local ex <close> = Pool { max_workers = 2, max_tasks_per_child = 1 }
      local fs = {}
      for i = 1, 12 do fs[i] = ex:submit(probe) end
      for i = 1, 12 do
        local tasks, had = fs[i]:result(30)
        assert.same({ 1, false }, { tasks, had })
      end
      assert.equal(12, ex:stats().completed)
    end)

    it("breaks the pool when the fresh state's initializer fails", function()
      local path = os.tmpname()
      os.remove(path)
      local ex <close> = Pool { max_workers = 1, max_tasks_per_child = 1, initargs = { path },
        initializer = function(p)
          if io.open(p) then error("init boom again") end
          io.open(p, "w"):close()
        end }
      assert.equal(1, ex:submit(function() return 1 end):result(30))
      local e = ex:submit(function() return 2 end):exception(30)
      os.remove(path)
      assert.is_true(Broken:is(e), tostring(e))
      assert.matches("initializer failed: .*init boom again.*%(rank 1%)", tostring(e))
    end)

    it("refuses the values ProcessPoolExecutor refuses, with its words", function()
      for _, v in ipairs { 0, -1, 1.5, "x" } do
        local want = err(cf.ProcessPoolExecutor, { max_tasks_per_child = v })
        assert.matches("max_tasks_per_child must be a positive integer", want)
        assert.equal(want, err(Pool, { max_tasks_per_child = v }))
      end
    end)
  end)

  it("refuses respawn = true, saying why; takes respawn = false", function()
    local e = err(Pool, { max_workers = 1, respawn = true })
    assert.equal("respawn is not possible in an MPIPoolExecutor (a worker rank that "
                 .. "dies ends the whole MPI job)", e)
    assert.equal("respawn must be a boolean", err(Pool, { respawn = 1 }))
    local ex <close> = Pool { max_workers = 1, respawn = false }
    assert.equal(3, ex:submit(function() return 3 end):result(30))
  end)
end)

describe("cf.Queue across the worker ranks", function()
  it("collects from one queue passed to several tasks on both ranks", function()
    local ex <close> = Pool(2)
    local q = cf.Queue(4)
    local fs = {}
    for k = 1, 6 do
      fs[k] = ex:submit(function(out, base)
        for i = 1, 50 do out:put(base + i) end
        return require("concurrent.futures.mpi").rank()
      end, q, k * 1000)
    end
    local all = cf.all(fs)
    all:add_done_callback(function() q:close() end)
    local n, sum = 0, 0
    for v in q:values() do n, sum = n + 1, sum + v end
    local ranks = {}
    for _, r in ipairs(all:result(30)) do ranks[r[1]] = true end
    assert.equal(300, n)
    assert.equal(21000 * 50 + 6 * (50 * 51 // 2), sum)
    assert.is_true(ranks[1] and ranks[2])
  end)

  it("stops a rank's task blocked on a queue when the pool breaks; the rank serves on", function()
    local q, started = cf.Queue(), cf.Queue()
    local ex <close> = Pool { max_workers = 2, initializer = function()
      if require("concurrent.futures.mpi").rank() == 2 then error("init boom") end
    end }
    local blocked = ex:submit(function(inq, s) s:put(true) return inq:get() end, q, started)
    started:get(30)
    local e = ex:submit(function() return 1 end):exception(30)  -- rank 2: broken
    assert.matches("rank 2", tostring(e))
    assert.is_true(Broken:is(blocked:exception(30)))
    ex:shutdown()
    local again <close> = Pool(2)
    local gate = cf.Future()
    local function rank(g) g:result(30) return require("concurrent.futures.mpi").rank() end
    local a, b = again:submit(rank, gate), again:submit(rank, gate)
    gate:set_result(true)
    local ranks = { a:result(30), b:result(30) }
    table.sort(ranks)
    assert.same({ 1, 2 }, ranks)
    assert.equal(0, #q)  -- the stopped get took nothing
    q:put("x")
    assert.equal("x", again:submit(function(inq) return inq:get(30) end, q):result(30))
  end)

  it("sends a task of one of two live pools to a rank the other keeps idle", function()
    -- the consumer of one pool waits on a queue that a task of the other
    -- feeds: behind it on the same rank, the producer would never run
    local ex1 <close> = Pool(2)
    local ex2 <close> = Pool(2)
    local q = cf.Queue(2)
    local consumer = ex1:submit(function(inq)
      local s = 0
      for v in inq:values() do s = s + v end
      return s
    end, q)
    local producer = ex2:submit(function(outq)
      for i = 1, 100 do outq:put(i) end
      outq:close()
      return true
    end, q)
    local ok, e = pcall(producer.result, producer, 10)
    if not ok then q:close() end  -- the consumer ends, the pools close
    assert.is_true(ok, tostring(e))
    assert.equal(5050, consumer:result(30))
  end)

  it("serves the waiters of one queue on several ranks in the order they came", function()
    local ex <close> = Pool(2)
    local q, started = cf.Queue(), cf.Queue()
    local function take(inq, s)
      s:put(true)
      return inq:get(30), require("concurrent.futures.mpi").rank()
    end
    -- a task waits in get once it started; a pause lets the get reach
    -- rank 0 (only the order of the gets matters, not how long they take)
    local function pause() pcall(cf.Future().result, cf.Future(), 0.3) end
    local function start()
      local f = ex:submit(take, q, started)
      started:get(30)
      pause()
      return f
    end
    for round = 0, 2 do
      local v = 10 * round
      -- rank 1 waits first, then rank 2
      local a, b = start(), start()
      q:put(v + 1)
      q:put(v + 2)
      local va, ra = a:result(30)
      local vb, rb = b:result(30)
      assert.same({ v + 1, v + 2, 1, 2 }, { va, vb, ra, rb })
      -- rank 2 waits first, then rank 1 (behind a task held by a gate)
      local gate = cf.Future()
      local held = ex:submit(function(g, s) s:put(true) return g:result(30) end, gate, started)
      started:get(30)
      a = start()
      b = ex:submit(take, q, started)
      gate:set_result("open")
      started:get(30)
      pause()
      q:put(v + 3)
      q:put(v + 4)
      va, ra = a:result(30)
      vb, rb = b:result(30)
      assert.same({ v + 3, v + 4, 2, 1 }, { va, vb, ra, rb })
      assert.equal("open", held:result(30))
    end
  end)

  it("serves the waiters behind one that left the line: stopped, timed out", function()
    local ex <close> = Pool(2)
    local q, started = cf.Queue(), cf.Queue()
    local function take(inq, s, t)
      s:put(true)
      rawset(_G, "kept", inq)  -- the rank holds the queue on after the task
      return inq:get(t)
    end
    local function start(t)
      local f = ex:submit(take, q, started, t)
      started:get(30)
      pcall(cf.Future().result, cf.Future(), 0.3)  -- its get reaches rank 0
      return f
    end
    -- the first waiter's task is stopped in its wait: it never says it
    -- left, and its rank still holds the queue; its task's end tells
    local a, b = start(30), start(30)
    assert.is_true(a:cancel { running = true })
    assert.is_true(cf.CancelledError:is(select(2, pcall(a.result, a, 30))))
    q:put("after the cancel")
    assert.equal("after the cancel", b:result(30))
    -- the first waiter gives up at its timeout
    a, b = start(0.5), start(30)
    assert.is_true(cf.TimeoutError:is(a:exception(30)))
    q:put("after the timeout")
    assert.equal("after the timeout", b:result(30))
  end)

  it("serves a queue to the next pool on the same ranks once one shut down", function()
    local q = cf.Queue()
    for round = 1, 3 do
      local ex <close> = Pool(2)
      local fs = {}
      for k = 1, 4 do fs[k] = ex:submit(function(out, v) out:put(v) end, q, round * 10 + k) end
      for _, f in ipairs(fs) do f:result(30) end
      ex:shutdown()
      local got = {}
      for _ = 1, 4 do got[#got + 1] = q:get(0) end
      table.sort(got)
      assert.same({ round * 10 + 1, round * 10 + 2, round * 10 + 3, round * 10 + 4 }, got)
    end
    assert.equal(0, #q)
  end)
end)
