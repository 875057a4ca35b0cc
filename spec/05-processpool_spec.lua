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

-- This process's open file descriptors, as a sorted list, but for the
-- pipe of this io.popen itself (the listing may run before this process
-- closed the pipe's other end: a flake under load).
local function fds()
  local p = io.popen("me=$(readlink /proc/$$/fd/1); for f in /proc/" .. ph.pid()
    .. "/fd/*; do [ \"$(readlink \"$f\")\" = \"$me\" ] || echo \"${f##*/}\"; done")
  local out = p:read("a")
  p:close()
  return out
end

for _, class in ipairs { "ThreadPoolExecutor", "ProcessPoolExecutor" } do
  local Pool = cf[class]
  local Broken = class == "ThreadPoolExecutor" and cf.BrokenThreadPool
                 or cf.BrokenProcessPool

  describe(class .. " (shared)", function()
    it("returns every result of a task, and its error as a deep copy", function()
      local ex <close> = Pool(2)
      assert.same({ 13, 42, nil, n = 3 },
        table.pack(ex:submit(function(a, b) return a + b, a * b, nil end, 6, 7):result(30)))
      local e = ex:submit(function() error({ code = 7, list = { 1, 2 } }) end)
      assert.same({ code = 7, list = { 1, 2 } }, e:exception(30))
      assert.matches("in function", e:traceback())
      assert.equal(42, ex:submit(function() error(42) end):exception(30))
      assert.equal(2.5, ex:submit(function() error(2.5) end):exception(30))
      assert.equal("(error object is a nil value)",
        ex:submit(function() error() end):exception(30))
      assert.equal(false, ex:submit(function() error(false) end):exception(30))
    end)

    it("copies upvalues, submits C functions by name, keeps worker globals", function()
      local ex <close> = Pool(1)
      local counter = 10
      local function bump() counter = counter + 1 return counter end
      assert.equal(11, ex:submit(bump):result(30))
      assert.equal(10, counter)
      assert.equal(3.0, ex:submit(math.sqrt, 9):result(30))
      ex:submit(function() _G.wg = 1 end):result(30)
      assert.equal(1, ex:submit(function() return _G.wg end):result(30))
      assert.equal(package.path, ex:submit(function() return package.path end):result(30))
    end)

    it("keeps the class of module errors that cross back", function()
      local ex <close> = Pool(1)
      local e = ex:submit(function()
        local m = require "concurrent.futures"
        return m.Future():result(0)
      end):exception(30)
      assert.is_true(cf.TimeoutError:is(e))
    end)

    it("lets a task wait on futures it was given, and refuses to set them", function()
      local ex <close> = Pool(2)
      local gate, other = cf.Future(), cf.Future()
      local f = ex:submit(function(g, o)
        local a = g:result(30)
        local ok, err = pcall(o.set_result, o, 1)
        return a * 2, ok or tostring(err)
      end, gate, other)
      gate:set_result(21)
      local v, msg = f:result(30)
      assert.equal(42, v)
      if class == "ProcessPoolExecutor" then
        assert.matches("InvalidStateError", msg)
      end
    end)

    it("forwards cancels, errors and futures already done", function()
      local ex <close> = Pool(2)
      local done, failed, cancelled = cf.Future(), cf.Future(), cf.Future()
      done:set_result("early", 2)
      failed:set_exception({ why = "no" })
      cancelled:cancel()
      local r = table.pack(ex:submit(function(d, x, c)
        local m = require "concurrent.futures"
        local dn, nd = m.wait({ d, x, c }, 30)
        local n = 0
        for _ in m.as_completed({ d, x, c }, 30) do n = n + 1 end
        return select("#", d:result()), x:exception().why, c:cancelled(), #dn, #nd, n
      end, done, failed, cancelled):result(30))
      assert.same({ 2, "no", true, 3, 0, 3, n = 6 }, r)
    end)

    it("runs the seed's pattern: callbacks collect results, complete after shutdown", function()
      local ex = Pool(2)
      local got = {}
      for i = 1, 20 do
        ex:submit(function(x) return x * x end, i):add_done_callback(function(f)
          got[#got + 1] = f:result()
        end)
      end
      ex:shutdown()
      table.sort(got)
      local want = {}
      for i = 1, 20 do want[i] = i * i end
      assert.same(want, got)
    end)

    it("maps in input order, with chunksize, and stops on a task's error", function()
      local ex <close> = Pool(2)
      local out = {}
      for i, v in ex:map { function(x) return x + 1 end, { 1, 2, 3, 4, 5 }, chunksize = 2 } do
        out[i] = v
      end
      assert.same({ 2, 3, 4, 5, 6 }, out)
      assert.has_error(function()
        local function two(x) if x == 2 then error("two") end return x end
        for _ in ex:map(two, { 1, 2, 3 }) do end
      end)
    end)

    it("breaks when the initializer fails", function()
      local ex <close> = Pool { max_workers = 1, initializer = function() error("init boom") end }
      local f = ex:submit(function() return 1 end)
      local e = f:exception(30)
      assert.is_true(Broken:is(e), tostring(e))
      assert.is_true(cf.BrokenExecutor:is(e))
      assert.matches("init boom", tostring(e))
      local ok, err = pcall(ex.submit, ex, print)
      assert.is_false(ok)
      assert.is_true(Broken:is(err))
      ex:shutdown()  -- does not raise on a broken pool
    end)

    it("runs the initializer once per worker with its initargs", function()
      local ex <close> = Pool { max_workers = 1, initargs = { "x", "y" },
                                initializer = function(a, b) _G.iv = a .. b end }
      assert.equal("xy", ex:submit(function() return _G.iv end):result(30))
    end)

    it("shutdown(wait, true) cancels what is pending and waits for the rest", function()
      local ex = Pool(1)
      local gate = cf.Future()
      local first = ex:submit(function(g) return g:result(30) end, gate)
      local fs = {}
      for i = 1, 10 do fs[i] = ex:submit(function() return i end) end
      local t = os.time()
      while not first:running() and os.time() - t < 30 do end
      ex:shutdown(false, true)
      gate:set_result("ran")
      ex:shutdown(true)
      assert.equal("ran", first:result(0))
      local cancelled = 0
      for _, f in ipairs(fs) do
        assert.is_true(f:done())
        if f:cancelled() then cancelled = cancelled + 1 end
      end
      assert.is_true(cancelled >= 8)  -- a process pool may hold one ahead
      assert.equal(0, ex:stats().workers)
    end)

    it("counts completed, failed and cancelled tasks in stats", function()
      local ex <close> = Pool(1)
      ex:submit(function() end):result(30)
      ex:submit(error, "x"):exception(30)
      local st = ex:stats()
      assert.equal(1, st.completed)
      assert.equal(1, st.failed)
      assert.equal(0, st.pending)
      assert.equal(0, st.running)
    end)

    it("survives a done-callback that shuts the executor down during shutdown", function()
      local out, ok = helpers.run_lua(([[
        local cf = require "concurrent.futures"
        local ex = cf.%s(1)
        local f = ex:submit(function()
          local t = os.clock() + 0.05 while os.clock() < t do end return 1
        end)
        f:add_done_callback(function() io.write("inner ") ex:shutdown() end)
        while not f:done() do end
        ex:shutdown()
        local g = ex
        local h = cf.%s(1)
        local k = h:submit(function() return 2 end)
        k:add_done_callback(function() h:shutdown(true) end)
        h:shutdown(false)
        io.write(tostring(g), " ", k:result(30), "\n")
      ]]):format(class, class))
      assert.is_true(ok, out)
      assert.matches("inner %w+<shutdown> 2", out)
    end)

    it("refuses an executor or a submit from a finalizer while the state closes", function()
      -- Lua runs no finalizer of what is made then: a worker would outlive
      -- the module's code (a crash at exit), a handle would leak
      local out, ok = helpers.run_lua(([[
        local cf = require "concurrent.futures"
        local ex = cf.%s(1)
        local keep = setmetatable({}, { __gc = function()
          local ok, err = pcall(cf.%s, 1)
          io.write(tostring(ok), " ", tostring(err):match("the Lua state is closing") or err, "; ")
          ok, err = pcall(ex.submit, ex, function() end)
          io.write(tostring(ok), " ", tostring(err):match("the Lua state is closing") or err, "; ")
        end })
        do  -- a finalizer of a normal collection may still use the module
          setmetatable({}, { __gc = function()
            local k = cf.%s(1)
            io.write(k:submit(function() return "in gc" end):result(30), "; ")
            k:shutdown()
          end })
        end
        collectgarbage()
        io.write("end; ")
        return keep
      ]]):format(class, class, class))
      assert.is_true(ok, out)
      local closing = "false the Lua state is closing; "
      assert.equal("in gc; end; " .. closing .. closing, out)
    end)

    it("refuses to start anything once the module's state is closing", function()
      local out, ok = helpers.run_lua(([[
        local keep = setmetatable({}, { __gc = function(self)
          local ok, err = pcall(self.cf.%s, 1)
          io.write(tostring(ok), " ", tostring(err):match("closing") or tostring(err))
        end })
        keep.cf = require "concurrent.futures"
      ]]):format(class))
      assert.is_true(ok, out)
      assert.equal("false closing", out)
    end)

    it("finishes its work when the owner state closes, without a crash", function()
      -- the futures' handles are finalized before the executor (newer
      -- objects first): their callbacks get an error, not a dangling handle
      local out, ok = helpers.run_lua(([[
        local cf = require "concurrent.futures"
        local ex = cf.%s(2)
        for i = 1, 4 do
          ex:submit(function(x)
            local t = os.clock() + 0.05 while os.clock() < t do end return x
          end, i)
            :add_done_callback(function(f) io.write(pcall(f.result, f) and "" or "finalized ") end)
        end
        io.write("main ")
      ]]):format(class))
      assert.is_true(ok, out)
      assert.matches("^main ", out)
    end)

    describe("bad input", function()
      it("accepts integral floats and names unknown options", function()
        local ex <close> = Pool { max_workers = 2.0 }
        assert.equal(1, ex:submit(function() return 1 end):result(30))
        local ok, err = pcall(Pool, { maxworkers = 2 })
        assert.is_false(ok)
        assert.equal("bad argument #1 to '" .. class .. "' (unknown option 'maxworkers' "
          .. "(known: max_workers, initializer, initargs, " .. (class == "ThreadPoolExecutor"
            and "thread_name_prefix, task_timeout, max_memory"
            or "max_tasks_per_child, task_timeout, max_memory, respawn") .. "))",
          (err:gsub("'concurrent%.%w+%.", "'")))
        assert.has_error(function() Pool(2.5) end)
        assert.has_error(function() Pool(0) end)
        assert.has_error(function() Pool { max_workers = -1 } end)
      end)

      it("refuses initargs.n that table.unpack would refuse", function()
        for _, n in ipairs { 2.5, "3" } do
          local ok, err = pcall(Pool, { initializer = print, initargs = { 1, 2, n = n } })
          assert.is_false(ok)
          assert.matches("initargs.n must be an integer", err)
        end
      end)

      it("keeps the text of an error that cannot cross", function()
        local ex <close> = Pool(1)
        local f = ex:submit(function()
          error(setmetatable({ h = io.stdout }, { __tostring = function() return "custom" end }))
        end)
        local e = f:exception(30)
        assert.equal("string", type(e))
        assert.matches("^custom %(cannot transfer", e)
        assert.matches("userdata", e)
        assert.is_string(f:traceback())
      end)

      it("refuses submit after shutdown", function()
        local ex = Pool(1)
        ex:shutdown()
        assert.has_error(function() ex:submit(print) end,
          "cannot schedule new futures after shutdown")
      end)
    end)
  end)
end

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

  -- #forkbusy: with glibc's malloc only. The sanitizers' allocators of
  -- gcc 12 take no lock around fork, so a child forked while another
  -- thread allocates can inherit their lock held and hang (theirs, not
  -- this module's): 'make asan' and 'make tsan' leave this case out.
  it("forks safely while thread-pool workers and other pools are busy #forkbusy", function()
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

  it("refuses options that are not its own", function()
    assert.has_error(function() cf.ProcessPoolExecutor { thread_name_prefix = "x" } end)
    assert.has_error(function() cf.ThreadPoolExecutor { max_tasks_per_child = 1 } end)
    assert.has_error(function() cf.ProcessPoolExecutor { max_tasks_per_child = 0 } end)
  end)
end)

describe("ThreadPoolExecutor task", function()
  it("cannot wait for its own future (it would deadlock its worker)", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local box = cf.Future()
    local f = ex:submit(function(b) return b:result(30):result(30) end, box)
    box:set_result(f)
    local e = f:exception(30)
    assert.is_true(cf.InvalidStateError:is(e), tostring(e))
    assert.matches("a task cannot wait for its own future", tostring(e))
    assert.equal(1, ex:submit(function() return 1 end):result(30))
  end)
end)
