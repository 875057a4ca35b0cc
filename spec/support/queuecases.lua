-- The cf.Queue cases of every pool, for one executor class: spec/15 runs
-- them for ThreadPoolExecutor and ProcessPoolExecutor, spec/mpi for
-- MPIPoolExecutor. 'where' names the worker of a pool of other processes
-- ("worker process", "worker rank"; nil for threads), whose tasks hold a
-- proxy of the queue: the pool's owner carries out its operations on the
-- queue itself (core/remoteq.c).

local cf = require "concurrent.futures"

-- Two tasks linked by a queue, and (API.md, "Running work") a task
-- blocked on one: every blocking call of this module inside a task
-- returns at once when the task must stop; queue waits too.
local function linked(class, Pool)
  describe("a " .. class .. " task on a cf.Queue (shared)", function()
    it("links a producer and a consumer task", function()
      local ex <close> = Pool(2)
      local q = cf.Queue(1)
      local consumer = ex:submit(function(inq)
        local s, n = 0, 0
        for v in inq:values() do s, n = s + v, n + 1 end
        return s, n
      end, q)
      local producer = ex:submit(function(outq)
        for i = 1, 500 do outq:put(i) end
        outq:close()
      end, q)
      producer:result(30)
      assert.same({ 500 * 501 // 2, 500 }, { consumer:result(30) })
    end)

    it("is stopped by cancel{running = true} in get and in put", function()
      local ex <close> = Pool(2)
      local q, full, started = cf.Queue(), cf.Queue(1), cf.Queue()
      full:put(0)
      local getter = ex:submit(function(inq, s) s:put(true) return inq:get() end, q, started)
      local putter = ex:submit(function(outq, s) s:put(true) outq:put(1) end, full, started)
      started:get(30)
      started:get(30)
      assert.is_true(getter:cancel { running = true })
      assert.is_true(putter:cancel { running = true })
      assert.is_true(cf.CancelledError:is(select(2, pcall(getter.result, getter, 30))))
      assert.is_true(cf.CancelledError:is(select(2, pcall(putter.result, putter, 30))))
      -- the queues serve on: nothing was taken or added
      assert.equal(1, #full)
      q:put("v")
      assert.equal("v", ex:submit(function(inq) return inq:get(30) end, q):result(30))
    end)

    it("fails a task whose outcome holds its own future through a queue", function()
      -- before, in a process pool: the future held the queue, the queue
      -- the future, a cycle that nothing freed (a thread pool's check
      -- saw only futures, not what queues hold)
      local ex <close> = Pool(1)
      local q, go = cf.Queue(), cf.Queue()
      local f = ex:submit(function(qq, g) g:get(30) return { qq } end, q, go)
      q:put(f)
      go:put(true)
      local err = f:exception(30)
      assert.is_true(cf.InvalidStateError:is(err), tostring(err))
      assert.matches("a task's outcome cannot hold its own future", tostring(err))
      -- and a task's put of what would hold the queue is refused
      local q2 = cf.Queue()
      q2:put({ q })
      err = ex:submit(function(a, b) a:put(b) end, q, q2):exception(30)
      assert.matches("cannot put a queue into itself", err)
      assert.equal(1, #q)
    end)

    it("is stopped by its time limit", function()
      local ex <close> = Pool { max_workers = 1, task_timeout = 0.2 }
      local q = cf.Queue()
      local err = ex:submit(function(inq) return inq:get() end, q):exception(30)
      assert.is_true(cf.TimeoutError:is(err), tostring(err))
      assert.matches("task exceeded its 0.2 s time limit", tostring(err))
    end)

    it("keeps a value first in the queue when a task's max_memory stops its get", function()
      -- before: the get took the value out, its decode ran out of the
      -- worker's memory, and the value was gone with the error (a
      -- process's: the owner's queue could not take it back)
      local ex <close> = Pool { max_workers = 1, max_memory = 4 * 1024 * 1024 }
      local q = cf.Queue(2)
      local big = {}
      for i = 1, 1000000 do big[i] = i end  -- 16 MiB decoded: past the cap
      q:put(big)
      q:put("small")
      local ok, err, n = ex:submit(function(inq)
        local ok, err = pcall(inq.get, inq, 0)
        return ok, err, #inq
      end, q):result(30)
      assert.is_false(ok)
      assert.equal("not enough memory", err)
      assert.equal(2, n)
      local first = q:get(0)
      assert.equal(1000000, #first)
      assert.equal(1000000, first[1000000])
      assert.equal("small", q:get(0))
    end)
  end)
end

local function remote(class, Pool, where)
  describe("cf.Queue across a " .. class .. " (shared)", function()
    it("streams 10,000 values from a producer task while other tasks run", function()
      local ex <close> = Pool(2)
      local q = cf.Queue()
      local producer = ex:submit(function(out, n)
        for i = 1, n do out:put({ i, tostring(i) }) end
        out:close()
        return n
      end, q, 10000)
      local others, n, sum = {}, 0, 0
      for v in q:values() do
        n = n + 1
        assert.equal(n, v[1])
        assert.equal(tostring(v[1]), v[2])
        sum = sum + v[1]
        if n % 1000 == 0 then others[#others + 1] = ex:submit(function(x) return x * 2 end, n) end
      end
      assert.equal(10000, producer:result(30))
      assert.equal(10000, n)
      assert.equal(10000 * 10001 // 2, sum)
      for i, f in ipairs(others) do assert.equal(i * 2000, f:result(30)) end
    end)

    it("crosses as argument, upvalue and table field: one handle per state, and back", function()
      local ex <close> = Pool(1)
      local q, inner = cf.Queue(5), cf.Queue()
      local function task(a, t)
        a:put("from the worker")
        return rawequal(a, t.q), rawequal(a, q), #a, tostring(a), a, t.inner
      end
      local same, up, len, str, back, backinner =
        ex:submit(task, q, { q = q, inner = inner }):result(30)
      assert.is_true(same)
      assert.is_true(up)
      assert.equal(1, len)
      assert.equal("Queue<open, 1 items>", str)
      assert.equal(q, back)
      assert.equal(inner, backinner)
      assert.equal("from the worker", q:get(0))
      -- a queue put into another queue by the worker arrives as itself
      ex:submit(function(a, b) a:put({ b }) end, q, inner):result(30)
      assert.equal(inner, q:get(0)[1])
      -- and a queue got from a queue in the worker is a handle there
      q:put(inner)
      assert.equal("ok", ex:submit(function(a)
        local b = a:get(10)
        b:put("ok")
        return b:get(10)
      end, q):result(30))
      -- so is one that came as a future's result
      local gate, later = cf.Future(), cf.Queue()
      local h = ex:submit(function(g) g:result(30):put("via a future") return true end, gate)
      gate:set_result(later)
      assert.is_true(h:result(30))
      assert.equal("via a future", later:get(0))
    end)

    it("refuses to let a future, or a queue made in the worker, leave it", function()
      local ex <close> = Pool(1)
      local q = cf.Queue()
      local err = ex:submit(function(out)
        out:put(require("concurrent.futures").Future())
      end, q):exception(30)
      assert.matches("a future, or a queue made in a worker process, cannot leave it", err)
      err = ex:submit(function(out)
        out:put({ require("concurrent.futures").Queue() })
      end, q):exception(30)
      assert.matches("cannot leave it", err)
      err = ex:submit(function() return require("concurrent.futures").Queue() end):exception(30)
      assert.is_true(cf.InvalidStateError:is(err), tostring(err))
      assert.matches("a future, or a queue made in a " .. where .. ", cannot leave it",
        tostring(err))
      assert.equal(0, #q)
      local ok, e = pcall(function()
        return ex:submit(function(out) out:put({ out }) end, q):result(30)
      end)
      assert.is_false(ok)
      assert.matches("cannot put a queue into itself", e)
    end)

    it("applies back-pressure across the processes while the queue is full", function()
      local ex <close> = Pool(1)
      local q = cf.Queue(2)
      local timedout, len = ex:submit(function(out)
        local cf2 = require "concurrent.futures"
        out:put(1)
        out:put(2)
        local ok, err = pcall(out.put, out, 3, 0.05)
        return not ok and cf2.TimeoutError:is(err), #out
      end, q):result(30)
      assert.is_true(timedout)
      assert.equal(2, len)
      assert.equal(1, q:get(0))
      assert.equal(2, q:get(0))
      local narrow = cf.Queue(1)
      local producer = ex:submit(function(out)
        for i = 1, 50 do out:put(i) end
        out:close()
      end, narrow)
      local i = 0
      for v in narrow:values() do
        i = i + 1
        assert.equal(i, v)
        assert.is_true(#narrow <= 1)
      end
      producer:result(30)
      assert.equal(50, i)
    end)

    it("times out a get or put in the worker and leaves the queue usable", function()
      local ex <close> = Pool(1)
      local q = cf.Queue(1)
      local function timeouts(qq)
        local cf2 = require "concurrent.futures"
        local _, get = pcall(qq.get, qq, 0.05)
        local _, now = pcall(qq.get, qq, 0)
        qq:put("x")
        local _, put = pcall(qq.put, qq, "y", 0.05)
        return tostring(get), cf2.TimeoutError:is(now), tostring(put)
      end
      local get, now, put = ex:submit(timeouts, q):result(30)
      assert.equal("TimeoutError: get timed out", get)
      assert.is_true(now)
      assert.equal("TimeoutError: put timed out", put)
      assert.equal("x", q:get(0))
      assert.equal(0, #q)
      local f = ex:submit(function(qq) return qq:get(30) end, q)
      q:put("later")
      assert.equal("later", f:result(30))
    end)

    it("wakes a worker waiting in get or put when the queue is closed", function()
      local ex <close> = Pool(2)
      local q, full, started = cf.Queue(), cf.Queue(1), cf.Queue()
      full:put("full")
      local getter = ex:submit(function(inq, s) s:put(true) return inq:get(60) end, q, started)
      local putter = ex:submit(function(outq, s) s:put(true) outq:put("more", 60) end,
        full, started)
      started:get(30)
      started:get(30)
      q:close()
      full:close()
      assert.same({ nil, false, n = 2 }, table.pack(getter:result(30)))
      assert.matches("queue is closed", putter:exception(30))
      assert.equal("full", full:get(0))
    end)

    it("says that a value holding a future is lost when max_memory stops its get", function()
      -- only the owner's queues go back from a worker, not a future
      local ex <close> = Pool { max_workers = 1, max_memory = 4 * 1024 * 1024 }
      local q = cf.Queue()
      local big = {}
      for i = 1, 1000000 do big[i] = i end
      q:put({ cf.Future(), big })
      q:put("small")
      local ok, err = ex:submit(function(inq) return pcall(inq.get, inq, 0) end, q):result(30)
      assert.is_false(ok)
      assert.equal("not enough memory (the value taken from the queue is lost)", err)
      assert.equal("small", q:get(0))
    end)
  end)
end

return function(class, Pool, where)
  if where then remote(class, Pool, where) end
  linked(class, Pool)
end
