-- ProcessPoolExecutor, and what API.md asks of both pools alike: the
-- shared cases run for ThreadPoolExecutor and ProcessPoolExecutor.

local cf = require "concurrent.futures"
local helpers = require "spec.helpers"
local ph = require "prochelper"

-- The children of this process (zombies included), counted from /proc.
local function nchildren()
  local n = 0
  local p = io.popen("cat /proc/" .. ph.pid() .. "/task/*/children")
  local out = p:read("a")
  p:close()
  for _ in out:gmatch("%d+") do n = n + 1 end
  return n - 1  -- the shell running 'cat' is one of them
end

-- This process's open file descriptors, as a sorted list. Listed into
-- a file, not a pipe: the write end of a popen pipe is still open in
-- this process for a moment after 'ls' starts, and 'ls' may see it.
local function fds()
  local name = os.tmpname()
  os.execute("ls /proc/" .. ph.pid() .. "/fd >" .. name)
  local out = helpers.readfile(name)
  os.remove(name)
  return out
end

-- loaded in this file's environment, where busted's describe and it are
local poolcases = assert(loadfile("spec/support/poolcases.lua", "t", _ENV))()
poolcases("ThreadPoolExecutor", cf.ThreadPoolExecutor, cf.BrokenThreadPool, {
  options = "max_workers, initializer, initargs, thread_name_prefix, task_timeout, "
    .. "max_memory",
  fresh = true, limits = true,
})
poolcases("ProcessPoolExecutor", cf.ProcessPoolExecutor, cf.BrokenProcessPool, {
  options = "max_workers, initializer, initargs, max_tasks_per_child, task_timeout, "
    .. "max_memory, respawn",
  fresh = true, copies = true, limits = true,
})

describe("ProcessPoolExecutor", function()
  it("runs tasks in other processes, children of this one", function()
    local ex <close> = cf.ProcessPoolExecutor(2)
    local pid, ppid = ex:submit(function()
      local h = require "prochelper"
      return h.pid(), h.ppid()
    end):result(30)
    assert.are_not.equal(ph.pid(), pid)
    assert.equal(ph.pid(), ppid)
  end)

  it("defaults to cpu_count() workers, started lazily", function()
    local ex <close> = cf.ProcessPoolExecutor()
    assert.equal(0, ex:stats().workers)
    local fs = {}
    local gate = cf.Future()
    for i = 1, cf.cpu_count() + 2 do
      fs[i] = ex:submit(function(g) return g:result(30) end, gate)
    end
    local t = os.time()
    while ex:stats().workers < cf.cpu_count() and os.time() - t < 30 do cf.dispatch(0.01) end
    assert.equal(cf.cpu_count(), ex:stats().workers)
    gate:set_result(1)
    for _, f in ipairs(fs) do assert.equal(1, f:result(30)) end
  end)

  it("breaks when a worker dies, naming the pid and the signal", function()
    local ex = cf.ProcessPoolExecutor(2)
    local gate = cf.Future()
    local slow = ex:submit(function(g) return g:result(30) end, gate)
    local go = cf.Future()  -- the worker dies once the others are queued
    local f = ex:submit(function(g)
      g:result(30)
      local h = require "prochelper"
      h.kill(h.pid(), 9)
    end, go)
    local pending = {}
    for i = 1, 5 do pending[i] = ex:submit(function() return i end) end
    go:set_result(true)
    local e = f:exception(30)
    assert.is_true(cf.BrokenProcessPool:is(e), tostring(e))
    assert.matches("pid %d+, killed by signal 9, SIGKILL", tostring(e))
    assert.is_true(cf.BrokenProcessPool:is(slow:exception(30)))
    for _, p in ipairs(pending) do
      assert.is_true(p:cancelled() or cf.BrokenProcessPool:is(p:exception(30)))
    end
    assert.has_error(function() ex:submit(print) end)
    ex:shutdown()
    assert.equal(0, ex:stats().workers)
  end)

  it("breaks when a worker exits, naming its exit status", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local e = ex:submit(os.exit, 3):exception(30)
    assert.matches("exit status 3", tostring(e))
  end)

  it("breaks with a clear error when a worker writes garbage to its socket", function()
    local truncated = "\20\0\0\0\3\1\0\0\0\0\0\0\0\0\0"  -- 15 of 20 bytes
    for _, garbage in ipairs { "\0\0\0\0", "\255\255\255\127xx", "\5\0\0\0\99abcd",
                               truncated } do
      local ex <close> = cf.ProcessPoolExecutor(1)
      -- the worker writes a bad frame, or the start of one, and leaves:
      -- a corrupt frame or the end of a truncated one breaks the pool
      local e = ex:submit(function(g)
        require("prochelper").write(3, g)
        os.exit(0)
      end, garbage):exception(30)
      assert.is_true(cf.BrokenProcessPool:is(e), tostring(e))
      assert.matches(garbage == truncated and "terminated abruptly %(pid %d+"
                     or "corrupt frame %(pid %d+%)", tostring(e))
    end
  end)

  it("replaces a worker after max_tasks_per_child tasks", function()
    local ex <close> = cf.ProcessPoolExecutor { max_workers = 1, max_tasks_per_child = 2 }
    local pids = {}
    for i = 1, 6 do
      pids[i] = ex:submit(function() return require("prochelper").pid() end):result(30)
    end
    assert.equal(pids[1], pids[2])
    assert.are_not.equal(pids[2], pids[3])
    assert.equal(pids[3], pids[4])
    assert.are_not.equal(pids[4], pids[5])
    assert.equal(6, ex:stats().completed)
  end)

  -- The supervisor took a task off the pending count, then (under the
  -- lock once more) counted it running: stats read in between showed it
  -- in neither, so shutdown(true) took the pool for idle and stopped
  -- running callbacks, one of which the task waited for. And a task
  -- cancelled as the supervisor took it stayed running in the stats
  -- after f:done() until the supervisor came back to it (rare: 2 of
  -- 10,000 cancels in one run, none in the next three, so this case
  -- seldom catches it).
  it("counts a task pending or running at every moment until it ends", function()
    local ex <close> = cf.ProcessPoolExecutor(2)
    local function id(x) return x end
    for i = 1, 20000 do
      local f = ex:submit(id, i)
      if i % 2 == 0 then f:cancel { running = true } end
      repeat
        local done = f:done()
        local st = ex:stats()
        local seen = st.pending + st.running + st.completed + st.failed + st.cancelled
        if seen ~= i or (done and st.pending + st.running ~= 0) then
          error(("task %d%s: stats account for %d tasks (pending %d, running %d, completed %d)")
                :format(i, done and " (done)" or "", seen, st.pending, st.running, st.completed))
        end
      until done
    end
  end)

  -- The supervisor completed a task's future before it published its
  -- child idle: stats read right after the result still showed the
  -- child busy for a moment.
  it("counts a child idle once its task's result can be read", function()
    local ex <close> = cf.ProcessPoolExecutor(2)
    local function id(x) return x end
    for i = 1, 5000 do
      assert.equal(i, ex:submit(id, i):result(30))
      local st = ex:stats()
      if st.idle ~= st.workers or st.running ~= 0 then
        error(("task %d: %d of %d workers idle, %d running after its result")
              :format(i, st.idle, st.workers, st.running))
      end
    end
  end)

  -- A cancelled task stayed in the pending queue until a child was free
  -- to take it, and stats counted it pending all that time: after the
  -- cancel, and after a wait on its future, while its worker was busy.
  it("counts a task cancelled while pending as cancelled, not pending", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local gate = cf.Future()
    finally(function() pcall(gate.set_result, gate, "open") end)
    local busy = ex:submit(function(g) return g:result(60) end, gate)
    while not busy:running() do cf.dispatch(0.001) end
    local fs = {}
    for i = 1, 5 do fs[i] = ex:submit(function() return i end) end
    -- (one may have gone ahead to the busy child: running, not cancelled)
    local n = 0
    for i = 1, 5 do n = n + (fs[i]:cancel() and 1 or 0) end
    assert.is_true(n >= 4)
    local st = ex:stats()
    assert.same({ 0, n, 1 + 5 - n }, { st.pending, st.cancelled, st.running })
    gate:set_result("open")
    assert.equal("open", busy:result(60))
    cf.wait(fs, 60)
    st = ex:stats()
    assert.same({ 0, 0, n, 1 + 5 - n }, { st.pending, st.running, st.cancelled, st.completed })
  end)

  it("leaves no zombie and no descriptor behind", function()
    local before_fds, before_children
    repeat  -- what earlier specs left goes first
      collectgarbage()
      collectgarbage()
      before_fds, before_children = fds(), nchildren()
      cf.dispatch(0.05)
    until fds() == before_fds and nchildren() == before_children
    for _ = 1, 3 do
      local ex = cf.ProcessPoolExecutor(2)
      for i = 1, 4 do ex:submit(function() return i end) end
      ex:submit(function() error("x") end)
      ex:shutdown(true)
      local k = cf.ProcessPoolExecutor(1)
      k:submit(os.exit, 1)
      k:shutdown()
    end
    do
      local g = cf.ProcessPoolExecutor(1)
      g:submit(function() end):result(30)
    end
    -- what other specs' threads still hold may go a moment later
    local t = os.time()
    repeat
      collectgarbage()
      collectgarbage()
      cf.dispatch(0.05)
    until (fds() == before_fds and nchildren() == before_children) or os.time() - t > 5
    assert.equal(before_children, nchildren())
    assert.equal(before_fds, fds())
  end)

  -- issue 9 item 4: the pool's eventfd was made with the executor, which
  -- then failed with "cannot create the ProcessPoolExecutor (not enough
  -- memory)"; now each way of running out of descriptors is a broken pool
  it("breaks with BrokenProcessPool when no file descriptor is left", function()
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local held = {}
      for _ = 1, 1e4 do held[#held + 1] = io.open("/dev/null") end  -- to the limit
      for free = 0, 1 do  -- none (for the supervisor), then too few for a child
        for _ = 1, free do held[#held]:close() held[#held] = nil end
        local ex = cf.ProcessPoolExecutor(1)
        local okf, err = pcall(function() return ex:submit(math.abs, -1):result(30) end)
        print(free, okf, cf.BrokenProcessPool:is(err), tostring(err))
        ex:shutdown()
      end
      for _, f in ipairs(held) do f:close() end
      local ex <close> = cf.ProcessPoolExecutor(1)
      print(ex:submit(math.abs, -1):result(30))
    ]], "ulimit -n 64;")
    assert.is_true(ok, out)
    -- none: the supervisor's eventfd fails; one: a child's socketpair
    assert.matches("0\tfalse\ttrue\tBrokenProcessPool: cannot start the process pool: "
                   .. "eventfd: Too many open files\n", out)
    assert.matches("1\tfalse\ttrue\tBrokenProcessPool: cannot start a worker process: "
                   .. "socketpair: Too many open files\n", out)
    assert.matches("\n1\n$", out)
  end)

  it("never repeats the parent's buffered output", function()
    local out, ok = helpers.run_lua([[
      io.stdout:setvbuf("full")
      io.write("once ")
      local cf = require "concurrent.futures"
      local ex = cf.ProcessPoolExecutor(2)
      for i = 1, 4 do ex:submit(function(x) io.write("child", x, " ") end, i):result(30) end
      ex:shutdown()
      io.write("end")
    ]])
    assert.is_true(ok, out)
    local _, n = out:gsub("once", "")
    assert.equal(1, n)
    local _, c = out:gsub("child%d", "")
    assert.equal(4, c)
  end)

  -- A child forked while another thread allocates must not inherit the
  -- allocator's lock held: glibc's malloc and the sanitizers' runtimes of
  -- clang 19 lock it around fork (gcc 12's do not: the Makefile says why
  -- the sanitizer builds use clang).
  it("forks safely while thread-pool workers and other pools are busy", function()
    local threads <close> = cf.ThreadPoolExecutor(4)
    local busy = {}
    for i = 1, 8 do
      busy[i] = threads:submit(function(n)
        local t, s = {}, 0
        for k = 1, 20000 do t[k] = tostring(k * n) s = s + #t[k] end
        return s
      end, i)
    end
    for round = 1, 5 do
      local ex <close> = cf.ProcessPoolExecutor(2)
      local fs = {}
      for i = 1, 4 do fs[i] = ex:submit(function(x) return x * round end, i) end
      for i = 1, 4 do assert.equal(i * round, fs[i]:result(30)) end
    end
    for i = 1, 8 do assert.is_number(busy[i]:result(60)) end
  end)

  it("can be created inside a thread-pool task", function()
    local threads <close> = cf.ThreadPoolExecutor(1)
    local v = threads:submit(function()
      local m = require "concurrent.futures"
      local ex <close> = m.ProcessPoolExecutor(1)
      return ex:submit(function() return "from a grandchild" end):result(30)
    end):result(60)
    assert.equal("from a grandchild", v)
  end)

  it("shuts down on collection", function()
    local before = nchildren()
    do
      local ex = cf.ProcessPoolExecutor(2)
      ex:submit(function() return 1 end):result(30)
    end
    collectgarbage()
    collectgarbage()
    assert.equal(before, nchildren())
  end)

  it("refuses a future leaving a worker process", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local e = ex:submit(function()
      return require("concurrent.futures").Future()
    end):exception(30)
    assert.is_true(cf.InvalidStateError:is(e), tostring(e))
  end)

  -- A library's fork handler runs in every child before our code: libuv's closes the pipe
  -- it made in this process, by number, and makes a new one. A pool made
  -- inside a child had its new child's socket under that old number,
  -- which was a pipe by its first frame (the pool broke, exit status 71).
  -- Which number it was depends on what was open when luv started: each
  -- layout from none to four files open before it.
  it("survives a library's fork handler that reuses low descriptors (luv)", function()
    for k = 0, 4 do
      local out, ok = helpers.run_lua(([[
        local hold = {}
        for i = 1, %d do hold[i] = io.open("/dev/null") end
        local uv = require "luv"
        uv.loop_alive()
        for _, f in ipairs(hold) do f:close() end
        local cf = require "concurrent.futures"
        local ex <close> = cf.ProcessPoolExecutor(1)
        io.write(ex:submit(function()
          local inner <close> = require("concurrent.futures").ProcessPoolExecutor(1)
          return inner:submit(function() return 42 end):result(30)
        end):result(60))
      ]]):format(k))
      assert.is_true(ok, out)
      assert.equal("42", out, k .. " files open before luv")
    end
  end)

  it("refuses options that are not its own", function()
    assert.has_error(function() cf.ProcessPoolExecutor { thread_name_prefix = "x" } end)
    assert.has_error(function() cf.ThreadPoolExecutor { max_tasks_per_child = 1 } end)
    assert.has_error(function() cf.ProcessPoolExecutor { max_tasks_per_child = 0 } end)
  end)
end)

for _, class in ipairs { "ThreadPoolExecutor", "ProcessPoolExecutor" } do
  describe(class .. " task", function()
    -- issue 9 item 13; a process-pool task waited 30 s on the proxy of
    -- its own future, and then failed with TimeoutError
    it("cannot wait for its own future (it would deadlock its worker)", function()
      local ex <close> = cf[class](1)
      local box = cf.Future()
      local f = ex:submit(function(b) return b:result(30):result(30) end, box)
      box:set_result(f)
      local e = f:exception(60)
      assert.is_true(cf.InvalidStateError:is(e), tostring(e))
      assert.matches("a task cannot wait for its own future", tostring(e))
      assert.equal(1, ex:submit(function() return 1 end):result(30))
    end)

    it("cannot wait for its own future in wait or as_completed, once it is the last", function()
      local ex <close> = cf[class](1)
      for _, how in ipairs { "all", "each", "first" } do
        local box = cf.Future()
        local f = ex:submit(function(b, h)
          local cf = require "concurrent.futures"  -- luacheck: ignore 431
          local own = b:result(30)
          local other = cf.Future()
          other:set_exception("other failed")
          -- not refused: the other future ends this one
          assert(#cf.wait({ own, other }, 30, cf.FIRST_EXCEPTION) == 1)
          if h == "all" then cf.wait({ own, other }, 30)
          elseif h == "first" then cf.wait({ own }, 30, cf.FIRST_COMPLETED)
          else for _ in cf.as_completed({ other, own }, 30) do end end
        end, box, how)
        box:set_result(f)
        local e = f:exception(60)
        assert.is_true(cf.InvalidStateError:is(e), how .. ": " .. tostring(e))
        assert.matches("a task cannot wait for its own future", tostring(e))
      end
    end)

    it("can wait for the future of another task, given before it started", function()
      local ex <close> = cf[class](2)
      local box, gate = cf.Future(), cf.Future()
      local first = ex:submit(function(g) return g:result(30) end, gate)
      local second = ex:submit(function(b) return b:result(30):result(30) + 1 end, box)
      box:set_result(first)
      gate:set_result(41)
      assert.equal(42, second:result(60))
    end)
  end)
end

-- Ported from CPython's executor.py, test_thread_pool.py,
-- test_process_pool.py, test_shutdown.py and test_init.py (spec/
-- CPYTHON.md lists every case), for both pools. Python's events are gate
-- futures here; where Python sleeps, these wait for a state they set.
local function pow(a, b)
  local r = 1
  for _ = 1, b do r = r * a end
  return r
end

local function waits(g) return g:result(30) end

-- Wait (without a timed assertion) until 'ex' has 'n' workers.
local function until_workers(ex, n)
  local t = os.time()
  while ex:stats().workers < n and os.time() - t < 30 do cf.dispatch(0.01) end
end

-- Wait until a worker of 'ex' is idle: a worker that completed a future
-- goes idle a moment later, and a submit in between starts another one
-- (CPython's idle reuse cases are flaky for that reason).
local function until_idle(ex)
  local t = os.time()
  while ex:stats().idle < 1 and os.time() - t < 30 do cf.dispatch(0.001) end
  assert.is_true(ex:stats().idle >= 1)
end

for _, class in ipairs { "ThreadPoolExecutor", "ProcessPoolExecutor" } do
  local Pool = cf[class]

  describe(class .. " (CPython executor cases)", function()
    it("maps over two arrays, with and without chunks (test_map)", function()
      local ex <close> = Pool(2)
      local xs, want = {}, {}
      for i = 1, 10 do xs[i] = i - 1 want[i] = pow(i - 1, i - 1) end
      for _, chunksize in ipairs { 1, 3 } do
        local got = {}
        for i, v in ex:map { pow, xs, xs, chunksize = chunksize } do got[i] = v end
        assert.same(want, got)
      end
    end)

    it("yields the results before a failing task, then raises its error "
       .. "(test_map_exception)", function()
      local ex <close> = Pool(2)
      local function div(a, b)
        if b == 0 then error("divide by zero", 0) end
        return a // b, a % b
      end
      local got = {}
      local ok, err = pcall(function()
        for i, q, r in ex:map(div, { 5, 5, 5, 5 }, { 2, 3, 0, 5 }) do got[i] = { q, r } end
      end)
      assert.is_false(ok)
      assert.equal("divide by zero", err)
      assert.same({ { 2, 1 }, { 1, 2 } }, got)
    end)

    it("raises TimeoutError for a task past map's timeout, after the ones before it "
       .. "(test_map_timeout)", function()
      local ex <close> = Pool(2)
      local gate = cf.Future()
      local got = {}
      local ok, err = pcall(function()
        for i in ex:map { function(g, x) if x == 3 then g:result(30) end return x end,
                          { gate, gate, gate }, { 1, 2, 3 }, timeout = 0.2 } do
          got[#got + 1] = i
        end
      end)
      assert.is_false(ok)
      assert.is_true(cf.TimeoutError:is(err))
      -- a loaded machine may not even run the first two in time: what
      -- was yielded is in input order and never the third
      for k, i in ipairs(got) do assert.equal(k, i) end
      assert.is_true(#got <= 2)
      gate:set_result(true)
    end)

    it("maps with a buffer of 1, 2, 4 and 8 (test_map_buffersize)", function()
      local ex <close> = Pool(2)
      for _, buffersize in ipairs { 1, 2, 4, 8 } do
        local got = {}
        for i, v in ex:map { tostring, { 0, 1, 2, 3 }, buffersize = buffersize } do got[i] = v end
        assert.same({ "0", "1", "2", "3" }, got)
      end
    end)

    it("maps two arrays with a buffer (test_map_buffersize_on_multiple_iterables)", function()
      local ex <close> = Pool(2)
      local xs = { 0, 1, 2, 3 }
      for _, buffersize in ipairs { 1, 2, 4, 8 } do
        local got = {}
        for i, v in ex:map { function(a, b) return a + b end, xs, xs, buffersize = buffersize } do
          got[i] = v
        end
        assert.same({ 0, 2, 4, 6 }, got)
      end
    end)

    it("maps two endless iterators with a buffer "
       .. "(test_map_buffersize_on_multiple_infinite_iterables)", function()
      local ex <close> = Pool(2)
      local function count() local n = -1 return function() n = n + 1 return n end end
      local got = {}
      for i, v in ex:map { function(a, b) return a + b end, count(), count(), buffersize = 2 } do
        got[i] = v
        if i == 3 then break end
      end
      assert.same({ 0, 2, 4 }, got)
    end)

    it("yields nothing for an empty array with a buffer "
       .. "(test_map_buffersize_on_empty_iterable)", function()
      local ex <close> = Pool(1)
      for _ in ex:map { tostring, {}, buffersize = 2 } do error("nothing to yield") end
    end)

    it("reads only buffersize inputs ahead of an idle consumer "
       .. "(test_map_buffersize_when_buffer_is_full)", function()
      local ex = Pool(2)
      local n = 0
      local function ints() if n < 4 then n = n + 1 return n - 1 end end
      local _ = ex:map { tostring, ints, buffersize = 2 }
      ex:shutdown(true)
      assert.equal(2, n)
    end)

    it("shuts down after a map it did not iterate (test_shutdown_race_issue12456, "
       .. "test_map_submits_without_iteration)", function()
      local ex = Pool(2)
      local xs = {}
      for i = 1, 10 do xs[i] = i end
      local _ = ex:map(tostring, xs)
      ex:shutdown(true)
      assert.equal(10, ex:stats().completed)
    end)

    it("keeps no reference to a task's arguments in the caller "
       .. "(test_no_stale_references)", function()
      local ex <close> = Pool(1)
      local gone = setmetatable({}, { __mode = "k" })
      do
        local obj = {}
        gone[obj] = true
        ex:submit(function(o) return o ~= nil end, obj):result(30)
      end
      collectgarbage()
      collectgarbage()
      assert.is_true(next(gone) == nil)
    end)

    it("keeps no result map has yielded (test_free_reference)", function()
      local ex <close> = Pool(2)
      local gone = setmetatable({}, { __mode = "v" })
      local xs = {}
      for i = 1, 10 do xs[i] = i end
      for i, obj in ex:map(function(x) return { x } end, xs) do
        gone[i] = obj
        obj = nil  -- luacheck: ignore 311
        collectgarbage()
        assert.is_nil(gone[i])
      end
    end)

    it("runs sequential tasks on the one idle worker (test_idle_thread_reuse, "
       .. "test_idle_process_reuse_one)", function()
      local ex <close> = Pool(4)
      assert.equal(42, ex:submit(pow, 42, 1):result(30))
      until_idle(ex)
      local started = ex:stats().workers
      assert.equal(1, started)
      for _ = 1, 2 do
        assert.equal(42, ex:submit(pow, 42, 1):result(30))
        until_idle(ex)
      end
      assert.equal(started, ex:stats().workers)
    end)

    it("starts no more workers than tasks waiting at once "
       .. "(test_idle_process_reuse_multiple)", function()
      local ex <close> = Pool(5)
      ex:submit(pow, 12, 1):result(30)
      until_idle(ex)
      ex:submit(pow, 33, 1)
      ex:submit(pow, 25, 1):result(30)
      until_idle(ex)
      ex:submit(pow, 18, 1)
      ex:submit(pow, 1, 1):result(30)
      until_idle(ex)
      ex:submit(pow, 0, 1)
      assert.is_true(ex:stats().workers <= 3)
    end)

    it("starts max_workers workers and no more for a crowd of tasks (test_saturation)", function()
      local ex = Pool(4)
      local gate = cf.Future()
      local fs = {}
      for i = 1, 15 * 4 do fs[i] = ex:submit(waits, gate) end
      until_workers(ex, 4)
      assert.equal(4, ex:stats().workers)
      gate:set_result(true)
      cf.wait(fs, 60)
      assert.equal(4, ex:stats().workers)
      ex:shutdown(true)
      assert.equal(15 * 4, ex:stats().completed)
    end)

    it("frees a task's arguments in its worker once it ran "
       .. "(test_ressources_gced_in_workers)", function()
      local ex <close> = Pool(1)
      local obj = setmetatable({}, { __gc = function() _G.collected = true end })
      ex:submit(function(o) return o ~= nil end, obj):result(30)
      assert.is_true(ex:submit(function()
        collectgarbage()
        collectgarbage()
        return _G.collected
      end):result(30))
    end)

    it("reports a result that cannot cross back as the task's error "
       .. "(test_error_during_result_pickle_on_worker)", function()
      local ex <close> = Pool(1)
      local e = ex:submit(function() return coroutine.create(print) end):exception(30)
      assert.matches("cannot transfer result #1 %(thread%)", e)
      assert.equal(1, ex:submit(pow, 1, 1):result(30))
    end)

    it("never blocks a submit while its workers are busy "
       .. "(test_gh105829_should_not_deadlock_if_wakeup_pipe_full)", function()
      local ex <close> = Pool(2)
      local gate = cf.Future()
      local fs = { ex:submit(waits, gate), ex:submit(waits, gate) }
      for i = 3, 1000 do fs[i] = ex:submit(pow, i, 1) end
      assert.is_false(gate:done())
      gate:set_result(true)
      for i = 3, 1000 do assert.equal(i, fs[i]:result(60)) end
    end)
  end)

  describe(class .. " shutdown (CPython test_shutdown)", function()
    it("finishes its tasks when the owner state exits without shutdown "
       .. "(test_interpreter_shutdown)", function()
      local out, ok = helpers.run_lua(([[
        local cf = require "concurrent.futures"
        local t = cf.%s(5)
        t:submit(function(msg)
          local d = os.clock() + 0.05 while os.clock() < d do end
          io.write(msg, "\n") io.flush()
        end, "apple")
      ]]):format(class))
      assert.is_true(ok, out)
      assert.equal("apple\n", out)
    end)

    it("finishes its tasks at exit after shutdown(false) (test_hang_gh83386)", function()
      local out, ok = helpers.run_lua(([[
        local cf = require "concurrent.futures"
        local t = cf.%s(3)
        t:submit(function(msg)
          local d = os.clock() + 0.05 while os.clock() < d do end
          io.write(msg, "\n") io.flush()
        end, "apple")
        t:shutdown(false)
      ]]):format(class))
      assert.is_true(ok, out)
      assert.equal("apple\n", out)
    end)

    it("runs nothing cancelled by shutdown(false, true) "
       .. "(test_cancel_futures_wait_false)", function()
      local out, ok = helpers.run_lua(([[
        local cf = require "concurrent.futures"
        local t = cf.%s(1)
        local gate = cf.Future()
        local first = t:submit(function(g) g:result(30) io.write("first\n") io.flush() end, gate)
        t:submit(function() io.write("apple\n") io.flush() end)
        while not first:running() do end
        t:shutdown(false, true)
        gate:set_result(true)
      ]]):format(class))
      assert.is_true(ok, out)
      -- a process pool may have handed the second task ahead: it runs
      if class == "ThreadPoolExecutor" then
        assert.equal("first\n", out)
      else
        assert.matches("^first\n", out)
      end
    end)

    it("completes every queued task at shutdown() (test_hang_issue12364)", function()
      local ex = Pool(2)
      local fs = {}
      for i = 1, 50 do fs[i] = ex:submit(pow, i, 1) end
      ex:shutdown()
      for i = 1, 50 do assert.equal(i, fs[i]:result(0)) end
    end)

    it("returns from shutdown(true) after a cancel right before it (test_hang_gh94440)", function()
      local ex = Pool(1)
      ex:submit(pow, 1, 1):result(30)
      ex:submit(pow, 1, 1):cancel()
      ex:shutdown(true)
      assert.equal(0, ex:stats().workers)
    end)

    it("ends its workers at shutdown (test_threads_terminate, test_processes_terminate)", function()
      local ex = Pool(5)
      local gate = cf.Future()
      for _ = 1, 3 do ex:submit(waits, gate) end
      until_workers(ex, 3)
      assert.equal(3, ex:stats().workers)
      gate:set_result(true)
      ex:shutdown()
      assert.equal(0, ex:stats().workers)
      assert.equal(3, ex:stats().completed)
    end)

    it("ends its workers when its <close> scope ends (test_context_manager_shutdown)", function()
      local keep
      local got = {}
      do
        local ex <close> = Pool(5)
        keep = ex
        for i, v in ex:map(math.abs, { -5, -4, -3, -2, -1, 0, 1, 2, 3, 4 }) do got[i] = v end
      end
      assert.same({ 5, 4, 3, 2, 1, 0, 1, 2, 3, 4 }, got)
      assert.equal(0, keep:stats().workers)
    end)

    it("gives map's results after the executor is dropped (test_del_shutdown)", function()
      local xs = { -5, -4, -3, -2, -1, 0, 1, 2, 3, 4 }
      local results = cf[class](5):map(math.abs, xs)
      collectgarbage()
      collectgarbage()
      local got = {}
      for i, v in results do got[i] = v end
      assert.same({ 5, 4, 3, 2, 1, 0, 1, 2, 3, 4 }, got)
    end)

    it("gives map's results after shutdown(false) (test_shutdown_no_wait)", function()
      local ex = Pool(5)
      local it, st, ctl, closing = ex:map(math.abs, { -5, -4, -3, -2, -1, 0, 1, 2, 3, 4 })
      ex:shutdown(false)
      local got = {}
      for i, v in it, st, ctl, closing do got[i] = v end
      assert.same({ 5, 4, 3, 2, 1, 0, 1, 2, 3, 4 }, got)
      ex:shutdown(true)
      assert.equal(0, ex:stats().workers)
    end)
  end)
end

-- Fixture modules (spec/support/modules) that one side of a transfer
-- cannot load: CPython's errors at unpickling. 'fn' runs with them on
-- package.path (the workers get it when the executor starts).
local function with_modules(fn)
  local saved = package.path
  package.path = "spec/support/modules/?.lua;" .. saved
  local ok, err = pcall(fn)
  package.path = saved
  package.loaded.broken, package.loaded.fatal = nil, nil
  _G.FAIL_BROKEN = nil
  if not ok then error(err, 0) end
end

-- Kill the worker process running this (a signal: see fatal.lua).
local function die()
  local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  while true do end
end

for _, class in ipairs { "ThreadPoolExecutor", "ProcessPoolExecutor" } do
  local Pool = cf[class]

  describe(class .. " (CPython test_deadlock, errors in transfers)", function()
    it("fails a task whose function names a module its worker cannot load; "
       .. "the pool serves on (test_error_at_task_unpickle)", function()
      with_modules(function()
        local broken = require "broken"
        local ex <close> = Pool { max_workers = 1,
                                  initializer = function() _G.FAIL_BROKEN = true end }
        local f = ex:submit(function() return broken.ok end)
        local e = f:exception(30)
        assert.matches("cannot require 'broken': .*broken on purpose", e)
        assert.matches("broken on purpose", select(2, pcall(f.result, f, 0)))
        assert.equal(1, ex:submit(pow, 1, 1):result(30))
      end)
    end)

    it("fails a result that names a module the caller cannot load; the pool serves on "
       .. "(test_error_during_result_unpickle_in_result_handler)", function()
      with_modules(function()
        local ex <close> = Pool(1)
        _G.FAIL_BROKEN = true
        local f = ex:submit(function() return require "broken" end)
        local ok, err = pcall(f.result, f, 30)
        assert.is_false(ok)
        assert.matches("cannot require 'broken': .*broken on purpose", err)
        _G.FAIL_BROKEN = nil
        assert.equal(1, ex:submit(pow, 1, 1):result(30))
      end)
    end)
  end)
end

describe("ProcessPoolExecutor (CPython test_process_pool, test_deadlock)", function()
  local th = require "testhelper"

  it("breaks when a worker exits while it loads a task (test_exit_at_task_unpickle)", function()
    with_modules(function()
      local fatal = require "fatal"
      local ex <close> = cf.ProcessPoolExecutor {
        max_workers = 2, initializer = function() _G.FATAL_ON_LOAD = "exit" end }
      local e = ex:submit(function() return fatal.ok end):exception(30)
      assert.is_true(cf.BrokenProcessPool:is(e), tostring(e))
      assert.matches("exit status 3", tostring(e))
    end)
  end)

  it("breaks when a worker dies while it loads a task (test_crash_at_task_unpickle)", function()
    with_modules(function()
      local fatal = require "fatal"
      local ex <close> = cf.ProcessPoolExecutor {
        max_workers = 2, initializer = function() _G.FATAL_ON_LOAD = "kill" end }
      local e = ex:submit(function() return fatal.ok end):exception(30)
      assert.is_true(cf.BrokenProcessPool:is(e), tostring(e))
      assert.matches("killed by signal 9", tostring(e))
    end)
  end)

  it("breaks, and does not hang, when a worker dies during shutdown(true) "
     .. "(test_shutdown_deadlock)", function()
    local ex = cf.ProcessPoolExecutor(2)
    local gate = cf.Future()
    local f = ex:submit(function(g, kill) g:result(30) kill() end, gate, die)
    -- a host thread opens the gate a moment later, most likely while
    -- shutdown waits; the outcome is the same if it comes first. (A
    -- done-callback cannot open it: shutdown runs callbacks only before
    -- and after its wait, see the report of this port.)
    local job = th.complete({ gate }, 0.05, "result", 0)
    ex:shutdown(true)
    job:join()
    local e = f:exception(0)
    assert.is_true(cf.BrokenProcessPool:is(e), tostring(e))
    assert.equal(0, ex:stats().workers)
  end)

  it("breaks, and does not hang, when workers die with big inputs in flight "
     .. "(test_crash_big_data)", function()
    local ex <close> = cf.ProcessPoolExecutor(2)
    local data = ("a"):rep(1 << 20)
    local xs = {}
    for i = 1, 10 do xs[i] = data end
    local ok, err = pcall(function()
      for _ in ex:map(function(_, kill) kill() end, xs, { die, die, die, die, die,
                                                          die, die, die, die, die }) do end
    end)
    assert.is_false(ok)
    assert.is_true(cf.BrokenProcessPool:is(err), tostring(err))
  end)

  it("hears of a forwarded future that completes long after its task began "
     .. "waiting, while another task runs in the same worker", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local gate = cf.Future()
    local f = ex:submit(function(g) return g:result(30) + 1 end, gate)
    local busy = ex:submit(function(n) local x = 0 for i = 1, n do x = x + i end return x end, 10)
    cf.wait({ cf.Future() }, 0.2)  -- the task waits in the worker meanwhile
    assert.is_false(f:done())
    gate:set_result(41)
    assert.equal(42, f:result(30))
    assert.equal(55, busy:result(30))
  end)

  it("carries inputs and results of every size intact, small frames and "
     .. "frames longer than one read mixed in one backlog", function()
    local ex <close> = cf.ProcessPoolExecutor(2)
    local sizes = { 0, 1, 100, 16 * 1024 - 40, 16 * 1024, 70000, 3, 1 << 20, 5 }
    local fs = {}
    for round = 1, 3 do
      for i, n in ipairs(sizes) do
        local s = ("%d:%d:"):format(round, i):rep(n // 6 + 1):sub(1, n)
        fs[#fs + 1] = { s, ex:submit(function(x) return x .. x, #x end, s) }
      end
    end
    for _, c in ipairs(fs) do
      local twice, n = c[2]:result(60)
      assert.equal(#c[1], n)
      assert.is_true(twice == c[1] .. c[1])
    end
  end)

  -- 1 GiB and a bit of encoding from 64 KiB of strings: a string crosses
  -- by value each time it is met
  local function big()
    local s, t = ("x"):rep(1 << 16), {}
    for i = 1, (1 << 14) + 1 do t[i] = s end
    return t
  end

  -- A frame between the processes carries at most 1 GiB (CONC_FRAME_MAX,
  -- core/frame.h). Arguments past it were refused only once the
  -- supervisor sent them, with a message about the way back ("could not
  -- be transferred to this state"); results past it ended the worker and
  -- broke the pool.
  it("refuses arguments and results too large for a frame, and serves on", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
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

  -- The other frames past 1 GiB: a future a task waits on ended the
  -- worker, killed for a frame it could not be sent (the pool broke); so
  -- did a queue's value got in a worker (then it was dropped); a put there
  -- read "not enough memory".
  it("fails futures and queue values too large for a frame in the worker, "
     .. "and serves on", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local function try(fn, ...)
      return ex:submit(function(...)
        local ok, e = pcall(fn, ...)
        return ok, tostring(e)
      end, ...):result(120)
    end
    local q = cf.Queue()
    local ok, err = try(function(q, big) q:put(big()) end, q, big)
    assert.is_false(ok)
    assert.matches(": put: too large for a worker process, 1 GiB at most$", err)
    assert.equal(0, #q)
    local f = cf.Future()
    local waits = ex:submit(function(f) return pcall(f.result, f, 60) end, f)
    f:set_result(big())
    ok, err = waits:result(120)
    assert.is_false(ok)
    assert.matches("^cannot transfer the future's results %(%d+ bytes: too large "
                   .. "for a worker process, 1 GiB at most%)$", err)
    f = nil
    q:put(big())
    collectgarbage()
    ok, err = try(function(q) return q:get(30) end, q)
    assert.is_false(ok)
    assert.matches(": get: too large for a worker process, 1 GiB at most$", err)
    -- the value stays first in the queue (before: taken and dropped)
    assert.equal(1, #q)
    ok, err = try(function(q) return q:get(30) end, q)
    assert.is_false(ok)
    assert.matches(": get: too large for a worker process, 1 GiB at most$", err)
    assert.equal(1, #q)
    assert.equal(7, ex:submit(function() return 7 end):result(60))
  end)

  it("maps with chunks smaller than, larger than and as large as the input "
     .. "(test_map_chunksize)", function()
    local ex <close> = cf.ProcessPoolExecutor(2)
    local xs, want = {}, {}
    for i = 1, 40 do xs[i] = i - 1 want[i] = (i - 1) * (i - 1) end
    for _, chunksize in ipairs { 6, 50, 40 } do
      local got = {}
      for i, v in ex:map { function(a, b) return a * b end, xs, xs, chunksize = chunksize } do
        got[i] = v
      end
      assert.same(want, got)
    end
    assert.has_error(function() ex:map { print, xs, chunksize = -1 } end)
  end)

  it("runs a backlog while its workers reach max_tasks_per_child "
     .. "(test_max_tasks_per_child_pending_tasks_gh115634)", function()
    for _, c in ipairs { { 1, 2, 6 }, { 2, 2, 8 } } do
      local ex = cf.ProcessPoolExecutor { max_workers = c[1], max_tasks_per_child = c[2] }
      local fs = {}
      for i = 1, c[3] do fs[i] = ex:submit(function(x) return x * 2 end, i) end
      for i = 1, c[3] do assert.equal(i * 2, fs[i]:result(30)) end
      ex:shutdown(true, true)
    end
  end)

  it("replaces a worker that reached max_tasks_per_child after shutdown(false) "
     .. "(test_shutdown_no_wait_max_tasks_gh119592)", function()
    local ex = cf.ProcessPoolExecutor { max_workers = 1, max_tasks_per_child = 1 }
    local gate = cf.Future()
    local fs = {}
    for i = 1, 3 do fs[i] = ex:submit(function(g, x) g:result(30) return x end, gate, i) end
    local t = os.time()
    while not fs[1]:running() and os.time() - t < 30 do end
    ex:shutdown(false)
    gate:set_result(true)
    for i = 1, 3 do assert.equal(i, fs[i]:result(30)) end
    ex:shutdown(true)
    assert.equal(0, ex:stats().workers)
  end)

  it("completes every task at shutdown() with max_tasks_per_child = 1 "
     .. "(test_max_tasks_early_shutdown)", function()
    local ex = cf.ProcessPoolExecutor { max_workers = 3, max_tasks_per_child = 1 }
    local fs = {}
    for i = 1, 6 do fs[i] = ex:submit(function(x) return x * x end, i) end
    ex:shutdown()
    for i = 1, 6 do assert.equal(i * i, fs[i]:result(0)) end
  end)

  it("answers the queue operations of a worker closing its state after its last "
     .. "task (max_tasks_per_child)", function()
    -- after its last task the main thread closes its state, where a
    -- finalizer (or a thread the state joins) may wait for the parent's
    -- reply; the main thread reads no more then: without a reader the
    -- worker never exits and shutdown(true) hangs
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ex = cf.ProcessPoolExecutor { max_workers = 1, max_tasks_per_child = 1 }
      local q = cf.Queue()
      local f = ex:submit(function(qq)
        _G.keep = setmetatable({}, { __gc = function() qq:put(#qq + 1) end })
        return "ran"
      end, q)
      print(f:result(30))
      print((q:get(30)))  -- before shutdown, which stops the worker
      ex:shutdown(true)
      print(ex:stats().workers)
    ]], "timeout 60")
    assert.is_true(ok, out)
    assert.equal("ran\n1\n0\n", out)
  end)

  it("shuts down without waiting after a failed task, max_tasks_per_child = 1 "
     .. "(test_shutdown_gh_132969_case_1, test_shutdown_gh_132969_case_2)", function()
    for _, n in ipairs { 2, 4 } do
      local ex = cf.ProcessPoolExecutor { max_workers = n, max_tasks_per_child = 1 }
      local f1 = ex:submit(function(x) return x end, 1)
      local f2 = ex:submit(function() error("failing task", 0) end)
      local f3 = ex:submit(function(x) return x end, 3)
      assert.equal(1, f1:result(30))
      assert.equal("failing task", f2:exception(30))
      ex:shutdown(false)
      assert.equal(3, f3:result(30))
      ex:shutdown(true)
      assert.equal(0, ex:stats().workers)
    end
  end)
end)

-- What a host program may have done before it uses a pool, and what a
-- task may do in its worker: each case runs in a fresh Lua process, as
-- it changes process-wide settings (SIGCHLD, fork, limits, the user).
describe("ProcessPoolExecutor in a hostile host", function()
  it("starts workers with SIGCHLD at its default and unblocked, whatever the "
     .. "host set, so that a task's os.execute and io.popen see exit statuses", function()
    for _, mode in ipairs { "ignore", "reap" } do
      local out, ok = helpers.run_lua(([[
        local cf = require "concurrent.futures"
        local ph = require "prochelper"
        assert(ph.sigchld(%q))
        assert(ph.block_sigchld())
        local ex = cf.ProcessPoolExecutor(1)
        print(ex:submit(function()
          local h = require "prochelper"
          local how, blocked = h.sigchld_state()
          local _, what, code = os.execute("exit 3")
          local _, _, code2 = io.popen("exit 5"):close()
          return how, blocked, what, code, code2
        end):result(30))
        ex:shutdown(true)
      ]]):format(mode), "timeout 60")
      assert.is_true(ok, out)
      assert.equal("default\tfalse\texit\t3\t5\n", out, mode)
    end
  end)

  it("reports a worker that a host's SIGCHLD setting reaped (waitpid fails with "
     .. "ECHILD) as gone with an unknown status, and keeps serving", function()
    for _, mode in ipairs { "ignore", "reap" } do
      local out, ok = helpers.run_lua(([[
        local cf = require "concurrent.futures"
        local ph = require "prochelper"
        assert(ph.sigchld(%q))
        local ex = cf.ProcessPoolExecutor { max_workers = 2, respawn = true }
        local fok = ex:submit(function() return 1 end)
        print("ok", fok:result(30))
        local fdie = ex:submit(function() os.exit(5) end)
        local e = fdie:exception(30)
        print("died", cf.BrokenProcessPool:is(e), e)
        print("after", ex:submit(function() return 2 end):result(30))
        ex:shutdown(true)
        print("workers", ex:stats().workers)
        -- retiring workers (they exit on their own) break nothing
        ex = cf.ProcessPoolExecutor { max_workers = 1, max_tasks_per_child = 1 }
        local sum = 0
        for i = 1, 4 do sum = sum + ex:submit(function(x) return x end, i):result(30) end
        print("retired", sum)
        ex:shutdown(true)
        -- and without respawn the pool breaks with that message
        ex = cf.ProcessPoolExecutor(1)
        e = ex:submit(function() os.exit(5) end):exception(30)
        print("broke", cf.BrokenProcessPool:is(e), e)
        ex:shutdown(true)
      ]]):format(mode), "timeout 60")
      assert.is_true(ok, out)
      assert.matches("^ok\t1\ndied\ttrue\tBrokenProcessPool: [^\n]*\nafter\t2\n"
                     .. "workers\t0\nretired\t10\nbroke\ttrue\tBrokenProcessPool: ", out)
      for what in out:gmatch("BrokenProcessPool: ([^\n]*)") do
        -- the host's handler may reap first or not: either status is right
        if mode == "ignore" or not what:match("exit status 5%)") then
          assert.matches("exit status unknown: reaped outside the pool", what, 1, true)
        end
      end
    end
  end)

  it("names what failed when a process limit (RLIMIT_NPROC) stops the supervisor "
     .. "thread, the fork or a worker's reader thread", function()
    local out, ok = helpers.run_lua([[
      local ph = require "prochelper"
      if not ph.become(65534) then  -- root is exempt from the limit
        print("skipped: not root")
        return
      end
      local cf = require "concurrent.futures"
      local function threads()
        for l in io.lines("/proc/self/status") do
          local n = l:match("^Threads:%s*(%d+)")
          if n then return tonumber(n) end
        end
      end
      for more = 0, 3 do  -- tasks this process may add under the limit
        local ex = cf.ProcessPoolExecutor(1)
        assert(ph.nproc(threads() + more))
        local okf, e = pcall(function() return ex:submit(math.abs, -1):result(30) end)
        assert(ph.nproc())
        print(more, okf, tostring(e))
        ex:shutdown(true)
      end
    ]], "timeout 60")
    assert.is_true(ok, out)
    if out:match("^skipped") then return end
    local san = (os.getenv("SPEC_LUA") or ""):match("/host$")
    local named = {
      "BrokenProcessPool: cannot start the process pool's supervisor thread: "
        .. "Resource temporarily unavailable",
      "BrokenProcessPool: cannot start a worker process: fork: Resource "
        .. "temporarily unavailable",
      "BrokenProcessPool: cannot start a worker process: its reader thread: "
        .. "Resource temporarily unavailable",
    }
    local lines = {}
    for more, okf, what in out:gmatch("(%d)\t(%a+)\t([^\n]*)") do
      lines[tonumber(more) + 1] = { okf == "true", what }
    end
    assert.equal(4, #lines, out)
    for i = 1, 3 do
      if san then  -- a sanitizer's own threads count too: some failure, named
        assert.is_true(lines[i][1] or lines[i][2] == named[1] or lines[i][2] == named[2]
                       or lines[i][2] == named[3], out)
      else
        assert.equal(named[i], lines[i][2], out)
      end
    end
    if not san then assert.same({ true, "1" }, lines[4]) end
  end)

  it("does not respawn workers without end when each dies while it starts "
     .. "(respawn = true, an initializer that exits): the pool breaks, as for a "
     .. "failed initializer", function()
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ex = cf.ProcessPoolExecutor { max_workers = 2, respawn = true,
                                          initializer = function() os.exit(3) end }
      local fs = {}
      for i = 1, 20 do fs[i] = ex:submit(function() return i end) end
      for i = 1, 20 do
        local e = fs[i]:exception(30)
        assert(cf.BrokenProcessPool:is(e), tostring(e))
      end
      print(fs[1]:exception(0))
      print(pcall(ex.submit, ex, math.abs, -1))
      ex:shutdown(true)
      -- the pids the workers had: a broken start is not tried again
      local pids = {}
      for i = 1, 20 do pids[tostring(fs[i]:exception(0)):match("pid (%d+)") or "-"] = true end
      local n = 0
      for _ in pairs(pids) do n = n + 1 end
      print("pids", n <= 2)
    ]], "timeout 60")
    assert.is_true(ok, out)
    assert.matches("^BrokenProcessPool: a worker process terminated abruptly while "
                   .. "starting %(pid %d+, exit status 3%)\n", out)
    assert.matches("\nfalse\tBrokenProcessPool: a worker process terminated "
                   .. "abruptly while starting %(pid %d+, exit status 3%)\npids\ttrue\n$", out)
  end)

  it("lets a host fork while a pool runs: the forked child may use, shut down, "
     .. "close or just leave the parent's pool without hanging or harming it", function()
    for _, class in ipairs { "ProcessPoolExecutor", "ThreadPoolExecutor" } do
      for _, how in ipairs { "leave", "close", "shutdown", "use" } do
        local out, ok = helpers.run_lua(([[
          local cf = require "concurrent.futures"
          local ph = require "prochelper"
          local ex = cf[%q](2)
          local gate = cf.Future()
          local f = ex:submit(function(g) return g:result(30) end, gate)
          while not f:running() do cf.dispatch(0.01) end  -- a task in flight
          local pid = ph.fork()
          if pid == 0 then
            local how = %q
            if how == "close" then
              os.exit(0, true)  -- closes the state: the pool's finalizer runs
            elseif how == "shutdown" then
              ex:shutdown(true)
            elseif how == "use" then
              local okf, e = pcall(ex.submit, ex, math.abs, -1)
              io.stdout:write("child\t", tostring(okf), "\t", tostring(e), "\n")
              io.stdout:flush()
            end
            ph.exit(0)
          end
          print("child exit", ph.waitpid(pid))
          gate:set_result("gate")
          print(f:result(30), ex:submit(math.abs, -1):result(30))
          ex:shutdown(true)
          print("workers", ex:stats().workers)
        ]]):format(class, how),
          -- (under ASan) the task in flight at the fork may be held by a
          -- thread of the parent alone, whose stack the child has not: the
          -- thread pool's worker; the process pool's supervisor, which
          -- marks a task running before it files it among its child's
          -- (seen in about one run in five). A child that exits through
          -- exit() would count it leaked
          (how == "close" and 'ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" '
           or "") .. "timeout 60")
        local what = class .. ", " .. how .. ": " .. out
        assert.is_true(ok, what)
        assert.matches("child exit\t0\ngate\t1\nworkers\t0\n$", out, 1, false, what)
        if how == "use" then
          local kind = class == "ThreadPoolExecutor" and "thread" or "process"
          assert.matches("child\tfalse\tBroken%a+Pool: this " .. kind .. " pool belongs "
                         .. "to process %d+: a forked child cannot use it\n", out, 1, false,
                         what)
        end
      end
    end
  end)

  it("keeps its sockets and descriptors from a task's children (close-on-exec, "
     .. "in the owner and in the workers)", function()
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local function list()  -- what a program this process starts holds
        local p = io.popen("ls -l /proc/self/fd")
        local s = p:read("a")
        p:close()
        return s
      end
      local ex = cf.ProcessPoolExecutor(1)
      local inworker = ex:submit(list):result(30)
      local inowner = list()
      ex:shutdown(true)
      for _, s in ipairs { inworker, inowner } do
        for fd, what in s:gmatch("(%d+) %-> (%S+)") do
          if tonumber(fd) > 2 and what:match("socket") or what:match("anon_inode") then
            print(fd .. " -> " .. what)
          end
        end
      end
      print("done")
    ]], "timeout 60")
    assert.is_true(ok, out)
    assert.equal("done\n", out)
  end)

  it("is not held up by a long-lived process a task started: shutdown(true) and "
     .. "the news of a worker's death come at once", function()
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ph = require "prochelper"
      local ex = cf.ProcessPoolExecutor(1)
      print("sleeper", ex:submit(function()
        return io.popen("sleep 30 >/dev/null 2>&1 & echo $!"):read("n")
      end):result(30))
      local t = os.time()
      ex:shutdown(true)
      print("shutdown", os.time() - t < 10)
      ex = cf.ProcessPoolExecutor(1)
      local f = ex:submit(function()
        -- its pipe's other end stays with the sleeper
        print("sleeper", io.popen("echo $$; exec sleep 30 2>/dev/null"):read("n"))
        os.exit(3)
      end)
      t = os.time()
      local e = f:exception(30)
      print("death", os.time() - t < 10, e)
      ex:shutdown(true)
    ]], "timeout 90")
    for pid in out:gmatch("sleeper\t(%d+)") do ph.kill(tonumber(pid), 9) end
    assert.is_true(ok, out)
    assert.matches("shutdown\ttrue\n", out)
    assert.matches("death\ttrue\tBrokenProcessPool: .*exit status 3", out)
  end)
end)

describe("ProcessPoolExecutor with hostile tasks", function()
  it("ends a task's forked copy that returns or raises into its worker, "
     .. "and serves on", function()
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ex = cf.ProcessPoolExecutor(1)
      for _, how in ipairs { "return", "raise" } do
        local f = ex:submit(function(h)
          local ph = require "prochelper"
          local pid = ph.fork()
          if pid == 0 then  -- the copy leaves the task as the worker would
            if h == "raise" then error("in the copy") end
            return "copy"
          end
          return "worker", ph.waitpid(pid)
        end, how)
        print(how, f:result(30))
        print("next", ex:submit(function() return "served" end):result(30))
      end
      ex:shutdown(true)
      print("done")
    ]], "timeout 60")
    assert.is_true(ok, out)
    assert.equal("return\tworker\t0\nnext\tserved\nraise\tworker\t1\nnext\tserved\ndone\n", out)
  end)
end)
