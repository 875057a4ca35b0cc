-- cf.Queue (API.md, "Beyond Python", Queues): a FIFO of copied values,
-- bounded or not, with timeouts and close; its waits are safe points.

local cf = require "concurrent.futures"
local helpers = require "spec.helpers"

describe("cf.Queue", function()
  it("is a FIFO of copies, with #q its length", function()
    local q = cf.Queue()
    local t = { 1, { 2 } }
    q:put(t)
    q:put("two")
    q:put(nil)
    q:put(3.5)
    t[1] = "changed"
    assert.equal(4, #q)
    local v, ok = q:get()
    assert.same({ 1, { 2 } }, v)
    assert.is_true(ok)
    assert.equal("two", q:get())
    assert.same({ nil, true, n = 2 }, table.pack(q:get()))
    assert.equal(3.5, q:get(0))
    assert.equal(0, #q)
    assert.equal("Queue<open, 0 items>", tostring(q))
  end)

  it("keeps futures as shared handles", function()
    local q = cf.Queue()
    local f = cf.Future()
    q:put({ f = f })
    assert.equal(f, q:get().f)
  end)

  it("refuses a put that would hold the queue through other queues or futures", function()
    -- before: only a value holding the queue itself was refused; q1 in
    -- q2 and q2 in q1 (or through a finished future) went in, a cycle
    -- of references that nothing freed once the handles were gone
    local q1, q2, q3 = cf.Queue(), cf.Queue(), cf.Queue()
    q1:put({ q2 })
    q2:put(q3)
    local ok, err = pcall(q3.put, q3, { a = q1 })
    assert.is_false(ok)
    assert.matches("cannot put a queue into itself", err)
    ok, err = pcall(q2.put, q2, q1)
    assert.is_false(ok)
    assert.matches("cannot put a queue into itself", err)
    local f = cf.Future()
    f:set_result("x", q1)
    ok, err = pcall(q3.put, q3, { f })
    assert.is_false(ok)
    assert.matches("cannot put a queue into itself", err)
    assert.equal(0, #q3)
    -- no cycle: the same queue twice, a future of another queue
    q1:put(q3)
    q1:put(q3)
    local g = cf.Future()
    g:set_result(q3)
    q1:put(g)
    assert.equal(4, #q1)
    -- once q2 left q1, q1 may go into q2
    assert.equal(q2, q1:get(0)[1])
    q2:put(q1)
  end)

  it("raises TimeoutError from put while full and get while empty", function()
    local q = cf.Queue(2)
    q:put(1)
    q:put(2)
    local ok, err = pcall(q.put, q, 3, 0.02)
    assert.is_false(ok)
    assert.is_true(cf.TimeoutError:is(err))
    assert.equal("TimeoutError: put timed out", tostring(err))
    ok, err = pcall(q.put, q, 3, 0)
    assert.is_false(ok)
    assert.is_true(cf.TimeoutError:is(err))
    assert.equal(2, #q)
    q:get()
    q:get()
    ok, err = pcall(q.get, q, 0.02)
    assert.is_false(ok)
    assert.equal("TimeoutError: get timed out", tostring(err))
    ok, err = pcall(q.get, q, 0)
    assert.is_false(ok)
    assert.is_true(cf.TimeoutError:is(err))
  end)

  it("refuses put after close; get drains what is left, then returns nil, false", function()
    local q = cf.Queue()
    q:put("a")
    q:put("b")
    q:close()
    local ok, err = pcall(q.put, q, "c")
    assert.is_false(ok)
    assert.matches("queue is closed", err)
    assert.equal("a", q:get())
    local seen = {}
    for v in q:values() do seen[#seen + 1] = v end
    assert.same({ "b" }, seen)
    assert.same({ nil, false, n = 2 }, table.pack(q:get()))
    assert.same({ nil, false, n = 2 }, table.pack(q:get(0)))
    assert.equal("Queue<closed, 0 items>", tostring(q))
  end)

  it("runs callbacks while get or put waits: closing the queue there wakes them", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local q = cf.Queue()
    local f = ex:submit(function() return "done" end)
    f:add_done_callback(function() q:close() end)
    assert.same({ nil, false, n = 2 }, table.pack(q:get(10)))
    local full = cf.Queue(1)
    full:put(1)
    local g = ex:submit(function() return "done" end)
    g:add_done_callback(function() full:close() end)
    local ok, err = pcall(full.put, full, 2, 10)
    assert.is_false(ok)
    assert.matches("queue is closed", err)
    -- a callback that makes room lets a waiting put through
    local room = cf.Queue(1)
    room:put(1)
    local h = ex:submit(function() return "done" end)
    h:add_done_callback(function() room:get() end)
    room:put(2, 10)
    assert.equal(2, room:get(0))
  end)

  it("refuses a value that cannot be transferred, naming its path", function()
    local q = cf.Queue()
    local ok, err = pcall(q.put, q, { config = { handle = io.stdout } })
    assert.is_false(ok)
    assert.matches("cannot transfer argument #1%.config%.handle %(userdata%)", err)
    assert.equal(0, #q)
  end)

  it("checks maxsize", function()
    for _, bad in ipairs { -1, 1.5, "3", true } do
      local ok, err = pcall(cf.Queue, bad)
      assert.is_false(ok)
      assert.matches("bad argument #1 to '.-Queue'", err)
    end
    local q = cf.Queue(0)
    for i = 1, 100 do q:put(i) end
    assert.equal(100, #q)
    assert.equal(1, #cf.Queue(2.0) + 1)
  end)

  it("checks its arguments", function()
    local q = cf.Queue()
    local function err(fn) local ok, e = pcall(fn) assert.is_false(ok) return e end
    assert.matches("bad argument #1 to 'put' %(value expected%)", err(function() q:put() end))
    assert.matches("bad argument #2 to 'put' %(timeout must be non%-negative%)",
      err(function() q:put(1, -1) end))
    assert.matches("bad argument #1 to 'get' %(number expected, got string%)",
      err(function() q:get("x") end))
    assert.matches("bad argument #1 to 'get'", err(function() q:get(0 / 0) end))
    assert.matches("concurrent.Queue expected, got table", err(function() q.get({}) end))
  end)

  it("raises, and does not crash, once its __gc was called by hand", function()
    -- a fresh process: before the fix, each of these used the queue the
    -- handle had let go of (a NULL or freed pointer)
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local function show(what, ok, err) print(what, ok, err) end
      local q = cf.Queue()
      q:put(1)
      getmetatable(q).__gc(q)
      getmetatable(q).__gc(q)  -- idempotent
      show("put", pcall(q.put, q, 2))
      show("get", pcall(q.get, q, 0))
      show("close", pcall(q.close, q))
      show("values", pcall(q.values, q))
      show("len", pcall(function() return #q end))
      show("tostring", pcall(tostring, q))
      -- finalized by a callback while get (empty) or put (full) waits:
      -- the wait ends then (before, it lasted its whole timeout, or for
      -- ever without one: freeing the queue did not wake its waiters)
      local ex <close> = cf.ThreadPoolExecutor(1)
      local empty = cf.Queue()
      local t0 = os.time()
      ex:submit(function() return 1 end)
        :add_done_callback(function() getmetatable(empty).__gc(empty) end)
      show("waitget", pcall(empty.get, empty, 30))
      local full = cf.Queue(1)
      full:put(1)
      ex:submit(function() return 1 end)
        :add_done_callback(function() getmetatable(full).__gc(full) end)
      show("waitput", pcall(full.put, full, 2, 30))
      print("waited", os.time() - t0 < 10)
      print("survived")
    ]])
    assert.is_true(ok, out)
    for _, what in ipairs { "put", "get", "close", "values", "len", "tostring", "waitget", "waitput" } do
      assert.matches(what .. "\tfalse\t[^\n]*queue handle already finalized", out)
    end
    assert.matches("waited\ttrue", out)
    assert.matches("survived", out)
  end)

end)

describe("cf.Queue across a thread pool", function()
  it("crosses into tasks as a shared handle, one per state", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local q = cf.Queue()
    local same, back = ex:submit(function(a, t) return rawequal(a, t.q), a end, q, { q = q })
      :result(10)
    assert.is_true(same)
    assert.equal(q, back)
    local inner = cf.Queue()
    q:put(inner)
    assert.equal(inner, q:get())
    local ok, err = pcall(q.put, q, { q })
    assert.is_false(ok)
    assert.matches("cannot put a queue into itself", err)
  end)

  it("streams values from a task while the main state drains them", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local q = cf.Queue(3)
    local producer = ex:submit(function(out, n)
      for i = 1, n do out:put({ i, tostring(i) }) end
      out:close()
      return n
    end, q, 200)
    local n, sum = 0, 0
    for v in q:values() do
      n = n + 1
      assert.equal(tostring(v[1]), v[2])
      sum = sum + v[1]
    end
    assert.equal(200, producer:result(10))
    assert.equal(200, n)
    assert.equal(200 * 201 // 2, sum)
  end)

  it("wakes a task waiting in get when the main state closes the queue", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local q = cf.Queue()
    local started = cf.Queue()
    local f = ex:submit(function(inq, s) s:put(true) return inq:get(30) end, q, started)
    started:get(10)
    q:close()
    assert.same({ nil, false, n = 2 }, table.pack(f:result(10)))
  end)

  it("fails a task whose put waits when the queue is closed", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local q = cf.Queue(1)
    q:put("full")
    local started = cf.Queue()
    local f = ex:submit(function(outq, s) s:put(true) outq:put("more", 30) end, q, started)
    started:get(10)
    q:close()
    local err = f:exception(10)
    assert.matches("queue is closed", err)
    assert.equal("full", q:get(0))
  end)

  it("refuses at put, in a task, a value that cannot be transferred", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local q = cf.Queue()
    local err = ex:submit(function(outq) outq:put({ f = io.stdout }) end, q):exception(10)
    assert.matches("cannot transfer argument #1%.f %(userdata%)", err)
    assert.equal(0, #q)
  end)
end)

-- A queue crosses into a process-pool task as a handle too: the child
-- holds a proxy whose operations its parent's supervisor carries out on
-- the queue itself (API.md, "Queues": threads and processes alike). The
-- cases every pool of other processes shares are queuecases.lua's; these
-- are the process pool's own.
local queuecases = assert(loadfile("spec/support/queuecases.lua", "t", _ENV))()
queuecases("ProcessPoolExecutor", cf.ProcessPoolExecutor, "worker process")

describe("cf.Queue across a process pool", function()
  it("serves a thread pool inside the child", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local q = cf.Queue(3)
    local f = ex:submit(function(out)
      local tp <close> = require("concurrent.futures").ThreadPoolExecutor(4)
      local fs = {}
      for k = 1, 4 do
        fs[k] = tp:submit(function(o, base) for i = 1, 50 do o:put(base + i) end end, out, k * 1000)
      end
      for _, g in ipairs(fs) do g:result() end
      out:close()
      return "threads done"
    end, q)
    local n, sum = 0, 0
    for v in q:values() do n, sum = n + 1, sum + v end
    assert.equal("threads done", f:result(30))
    assert.equal(200, n)
    assert.equal(10000 * 50 + 4 * (50 * 51 // 2), sum)
  end)

  it("answers a thread the child keeps after its task returned, while the "
     .. "worker is idle", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local q, go = cf.Queue(), cf.Queue()
    assert.is_true(ex:submit(function(out, start)
      -- luacheck: push ignore KEPT
      KEPT = require("concurrent.futures").ThreadPoolExecutor(1)
      KEPT:submit(function(o, s) o:put(s:get(30) * 2) end, out, start)
      -- luacheck: pop
      return true
    end, q, go):result(30))
    cf.wait({ cf.Future() }, 0.1)  -- the worker idles, its thread waits on 'go'
    go:put(21)
    assert.equal(42, q:get(30))
    assert.equal("done", ex:submit(function() KEPT:shutdown(true) return "done" end):result(30))  -- luacheck: ignore
  end)

  it("crosses on into a process pool made inside the child", function()
    local ex <close> = cf.ProcessPoolExecutor(1)
    local q = cf.Queue(2)
    local f = ex:submit(function(out)
      local inner <close> = require("concurrent.futures").ProcessPoolExecutor(1)
      local function produce(o) for i = 1, 20 do o:put(i) end o:close() return "done" end
      return inner:submit(produce, out):result(30)
    end, q)
    f:add_done_callback(function() q:close() end)  -- a failed task ends the loop
    local sum = 0
    for v in q:values() do sum = sum + v end
    assert.equal("done", f:result(30))
    assert.equal(210, sum)
  end)

  it("refuses a queue or a future in a process pool's initargs", function()
    for _, shared in ipairs { cf.Queue(), cf.Future() } do
      local ok, err = pcall(cf.ProcessPoolExecutor, {
        initializer = function(x) _G.X = x end, initargs = { { shared } } })
      assert.is_false(ok)
      assert.matches("initargs of a ProcessPoolExecutor cannot hold a future or a queue", err)
    end
    local tp <close> = cf.ThreadPoolExecutor {
      initializer = function(x) _G.X = x end, initargs = { cf.Queue() } }
    assert.is_true(tp:submit(function() return _G.X ~= nil end):result(30))
  end)

  it("stays usable when a child waiting on it is killed (respawn = true)", function()
    local ex <close> = cf.ProcessPoolExecutor { max_workers = 1, respawn = true }
    local q, started = cf.Queue(), cf.Queue()
    local f = ex:submit(function(inq, s)
      s:put(require("concurrent.futures").worker().pid)
      return inq:get()
    end, q, started)
    local pid = started:get(30)
    os.execute("kill -9 " .. math.tointeger(pid))
    local err = f:exception(30)
    assert.is_true(cf.BrokenProcessPool:is(err), tostring(err))
    assert.equal(0, #q)
    q:put("after")
    assert.equal("after", ex:submit(function(inq) return inq:get(30) end, q):result(30))
    local g = ex:submit(function(inq) return inq:get(30) end, q)
    q:put("again")
    assert.equal("again", g:result(30))
  end)
end)

-- The thread pool's tasks linked by a queue or blocked on one (the
-- process pool's are in the queuecases above).
queuecases("ThreadPoolExecutor", cf.ThreadPoolExecutor)

describe("queues while the state closes", function()
  it("refuses new handles and waits without a leak in a finalizer at lua_close", function()
    -- Lua runs no finalizer of what is made while it closes: a queue's
    -- handle made then (cf.Queue, or decoding a value that holds a queue)
    -- kept its reference for good, and so did the wake future a waiting
    -- get or put made (leaks that LeakSanitizer saw, make asan)
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ex = cf.ThreadPoolExecutor(1)
      local holds = ex:submit(function()
        return require("concurrent.futures").Queue()
      end)
      while not holds:done() do end  -- (not read: decoded at close)
      ex:shutdown()
      local full = cf.Queue(1)
      full:put(0)
      local function try(what, fn, ...)
        local ok, err = pcall(fn, ...)
        io.write(what, " ", tostring(ok), " ",
          tostring(err):match("the Lua state is closing")
          or tostring(err):match("TimeoutError") or tostring(err), "; ")
      end
      keep = setmetatable({}, { __gc = function()
        try("Queue", cf.Queue)
        try("decode", holds.result, holds)
        try("put", full.put, full, 1, 0.01)  -- waits: full
        full:get(0)
        try("get", full.get, full, 0.01)  -- waits: empty
      end })
    ]])
    assert.is_true(ok, out)
    local closing = " false the Lua state is closing; "
    assert.equal("Queue" .. closing .. "decode" .. closing
      .. "put false TimeoutError; get false TimeoutError; ", out)
  end)
end)
