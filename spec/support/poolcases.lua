-- The cases API.md asks of every pool, for one executor class: spec/05
-- runs them for ThreadPoolExecutor and ProcessPoolExecutor, spec/mpi for
-- MPIPoolExecutor. 'caps' says what the class can do:
--   options   the option names its constructor lists when refusing one
--   fresh     its cases may run in a fresh interpreter (helpers.run_lua:
--             not an MPI rank 0, which the launch line makes)
--   copies    a task's futures are proxies (set_result refused there)
--   limits    it takes task_timeout (and a submit's timeout)

local cf = require "concurrent.futures"
local helpers = require "spec.helpers"

return function(class, Pool, Broken, caps)
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
      if caps.copies then
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
      for _, chunksize in ipairs { 1, 2, 3, 7, 50 } do
        local out = {}
        for i, v in ex:map { function(x, y) return x * y end, { 1, 2, 3, 4, 5, 6, 7 },
                             { 7, 6, 5, 4, 3, 2, 1 }, chunksize = chunksize } do
          out[i] = v
        end
        assert.same({ 7, 12, 15, 16, 15, 12, 7 }, out)
      end
      assert.has_error(function()
        local function two(x) if x == 2 then error("two") end return x end
        for _ in ex:map { two, { 1, 2, 3 }, chunksize = 2 } do end
      end)
    end)

    it("cancels what a dropped map has not started once its iterator is collected", function()
      -- Python's map cancels its futures when its generator is
      -- collected; here an iterator called by hand (or a loop in a
      -- coroutine never resumed) never reaches its <close>.
      for _, opts in ipairs { {}, { buffersize = 8 }, { ordered = false } } do
        local ex <close> = Pool(1)
        local gate = cf.Future()
        local gates = {}
        for i = 1, 20 do gates[i] = gate end
        local it = ex:map { function(x, g) if x > 1 then g:result(30) end return x end,
                            { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                              17, 18, 19, 20 }, gates,
                            buffersize = opts.buffersize, ordered = opts.ordered }
        local i, v = it()
        assert.equal(1, v)
        it = nil  -- luacheck: ignore 311
        collectgarbage()
        collectgarbage()
        gate:set_result(true)
        ex:shutdown(true)
        local st = ex:stats()
        -- task 2 runs on the one worker (a process pool may hand it 3
        -- ahead); the rest were pending: 18 (or 17) of tasks 2 to 20,
        -- 7 (or 6) of the 8 (2 to 9) a buffer of 8 holds
        assert.is_true(st.cancelled >= (opts.buffersize and 6 or 17), st.cancelled)
        assert.equal(opts.buffersize and 9 or 20, st.cancelled + st.completed)
      end
    end)

    -- Drain a map over 1..9 whose call fails at x == bad: the values
    -- yielded by index, their order, and the error raised.
    local function failing_map(ex, opts, bad, err)
      local got, order = {}, {}
      local ok, e = pcall(function()
        for i, v, w in ex:map { function(x)
                                  if x == bad then error(err, 0) end
                                  return x * 10, x
                                end, { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, chunksize = 3,
                                ordered = opts.ordered, buffersize = opts.buffersize } do
          assert.equal(i, w)
          got[i], order[#order + 1] = v, i
        end
      end)
      assert.is_false(ok)
      return got, order, e
    end

    it("yields the results before a failing call of a chunk, then raises its error", function()
      local ex <close> = Pool(2)
      for _, opts in ipairs { {}, { buffersize = 1 }, { ordered = false },
                              { ordered = false, buffersize = 2 } } do
        for _, bad in ipairs { 4, 5, 6 } do  -- first, middle, last of chunk 4..6
          local got, order, e = failing_map(ex, opts, bad, { code = bad })
          assert.same({ code = bad }, e)
          if opts.ordered == false then
            -- other chunks may come first; the failing one's calls before
            -- the failure are yielded, at their own indices, and it ends the loop
            local tail = {}
            for x = 4, bad - 1 do tail[#tail + 1] = x end
            assert.same(tail, { table.unpack(order, #order - #tail + 1) })
            for x = 4, bad - 1 do assert.equal(x * 10, got[x]) end
            for x = bad, 6 do assert.is_nil(got[x]) end
          else
            local want = {}
            for x = 1, bad - 1 do want[x] = x * 10 end
            assert.same(want, got)
          end
        end
      end
      -- the error of a later call crosses as a task's would
      local _, _, e = failing_map(ex, {}, 5, nil)
      assert.equal("(error object is a nil value)", e)
      _, _, e = failing_map(ex, {}, 5, cf.TimeoutError("its own"))
      assert.is_true(cf.TimeoutError:is(e))
      assert.equal("its own", e.message)
    end)

    it("raises a call's own error carrying the partial chunk's key as it is", function()
      -- a task may raise a table that looks like the marked error of a
      -- partial chunk: it is the call's error, wherever it is in its chunk
      local ex <close> = Pool(2)
      local key = "concurrent.futures.partial"
      for _, spoof in ipairs { { [key] = true, err = "inner" },
                               { [key] = true, err = "inner", 99, { n = 1 } } } do
        for _, opts in ipairs { {}, { ordered = false } } do
          for _, bad in ipairs { 4, 5 } do
            local got, _, e = failing_map(ex, opts, bad, spoof)
            assert.same(spoof, e)
            for x = 4, 6 do assert.equal(x < bad and x * 10 or nil, got[x]) end
          end
        end
      end
    end)

    -- Drain a map of fn over 1..9, in order: what each index yielded and
    -- the error raised.
    local function drain(ex, fn, chunksize)
      local got = {}
      local ok, e = pcall(function()
        for i, v, w in ex:map { fn, { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, chunksize = chunksize } do
          got[#got + 1] = { i, v, w }
        end
      end)
      assert.is_false(ok)
      return got, e
    end

    it("fails a chunk's call whose error or results cannot cross as its own task", function()
      -- calls 1..j-1 yield their results, then call j raises what an
      -- unchunked map raises for it: an error value that cannot cross
      -- as its text with the reason, results that cannot as the error
      -- saying so
      local ex <close> = Pool(2)
      local cases = {  -- name, its function failing at x == bad, its error
        { "thread", function(bad) return function(x)
            if x == bad then error(coroutine.create(print)) end
            return x * 10, x
          end end,
          "^%(error object is a thread value%) %(cannot transfer error #1 %(thread%)" },
        { "field", function(bad) return function(x)
            if x == bad then error({ f = io.stdout }) end
            return x * 10, x
          end end,
          "^%(error object is a table value%) %(cannot transfer error #1%.f %(userdata%)" },
        { "tostring", function(bad) return function(x)
            if x == bad then
              error(setmetatable({ co = coroutine.create(print) },
                                 { __tostring = function() return "boxed" end }))
            end
            return x * 10, x
          end end,
          "^boxed %(cannot transfer error #1%.co %(thread%)" },
        -- a __tostring that raises or yields: the text of a value
        -- without one, and the calls before still yield their results
        { "tostring raises", function(bad) return function(x)
            if x == bad then
              error(setmetatable({ co = coroutine.create(print) },
                                 { __tostring = function() error("no text") end }))
            end
            return x * 10, x
          end end,
          "^%(error object is a table value%) %(cannot transfer error #1%.co %(thread%)" },
        { "tostring yields", function(bad) return function(x)
            if x == bad then
              error(setmetatable({ co = coroutine.create(print) },
                                 { __tostring = function() coroutine.yield() end }))
            end
            return x * 10, x
          end end,
          "^%(error object is a table value%) %(cannot transfer error #1%.co %(thread%)" },
        { "upvalue", function(bad) return function(x)
            local co = coroutine.create(print)
            if x == bad then error(function() return co end) end
            return x * 10, x
          end end,
          "^%(error object is a function value%) %(cannot transfer " ..
          "error #1%(upvalue 'co'%) %(thread%)" },
        { "result", function(bad) return function(x)
            if x == bad then return x * 10, coroutine.create(print) end
            return x * 10, x
          end end,
          "^cannot transfer result #2 %(thread%)" },
        { "nested", function(bad) return function(x)
            if x == bad then return { deep = { io.stdout } } end
            return x * 10, x
          end end,
          "^cannot transfer result #1%.deep%[1%] %(userdata%)" },
        -- results that cannot cross, then a later call's error
        { "result, then error", function(bad) return function(x)
            if x == bad then return x * 10, coroutine.create(print) end
            if x > bad then error("later") end
            return x * 10, x
          end end,
          "^cannot transfer result #2 %(thread%)" },
      }
      for _, case in ipairs(cases) do
        local name, make, text = case[1], case[2], case[3]
        for _, bad in ipairs { 4, 5, 6 } do  -- first, middle, last of chunk 4..6
          local want, werr = drain(ex, make(bad), 1)
          assert.equal(bad - 1, #want)
          assert.matches(text, werr, 1)
          for _, chunksize in ipairs { 3, 9 } do
            local got, err = drain(ex, make(bad), chunksize)
            assert.same(want, got, name .. " at " .. bad)
            assert.equal(werr, err, name .. " at " .. bad)
          end
        end
      end
    end)

    it("yields a chunk's results and errors as deep as a task's own", function()
      -- a chunk wraps its calls' results two tables deeper than their
      -- tasks send them: a result or error at the codec's limit (200)
      -- still crosses, and one past it fails alone, as its own task does
      local ex <close> = Pool(2)
      local function depth(v)
        local d = 0
        while type(v) == "table" do d, v = d + 1, v[1] end
        return d
      end
      -- fn over 1..9 in order: each index with the depth of its result,
      -- then the error (its depth, or its text)
      local function deepdrain(fn, chunksize)
        local got = {}
        local ok, e = pcall(function()
          for i, v, w in ex:map { fn, { 1, 2, 3, 4, 5, 6, 7, 8, 9 }, chunksize = chunksize } do
            got[#got + 1] = { i, depth(v), w }
          end
        end)
        return got, type(e) == "table" and depth(e) or e, ok
      end
      local function make(bad, d, how)
        return function(x)
          local function nest()
            local t = {}
            for _ = 2, d do t = { t } end
            return t
          end
          if x == bad and how == "error" then error(nest()) end
          if x == bad then return nest(), x end
          if x > bad and how == "later" then error("later") end
          return x, x
        end
      end
      for _, how in ipairs { "result", "error", "later" } do
        for _, d in ipairs { 199, 200, 201 } do
          for _, bad in ipairs { 4, 5, 6 } do  -- first, middle, last of chunk 4..6
            local want, werr, wok = deepdrain(make(bad, d, how), 1)
            local yields = (how == "error" or d > 200) and bad - 1
                           or how == "result" and 9 or bad
            assert.equal(yields, #want)
            for _, chunksize in ipairs { 3, 9 } do
              local got, err, ok = deepdrain(make(bad, d, how), chunksize)
              local name = ("%s %d deep at %d, chunks of %d"):format(how, d, bad, chunksize)
              assert.same(want, got, name)
              assert.equal(werr, err, name)
              assert.equal(wok, ok, name)
            end
          end
        end
      end
    end)

    if caps.limits then
      it("fails a task past its limit with TimeoutError when it filled its max_memory", function()
        -- the task holds all the memory its worker may have when its time
        -- runs out: the TimeoutError cannot be made in the worker's state
        local ex <close> = Pool { max_workers = 1, max_memory = 4 * 1024 * 1024,
                                  task_timeout = 0.3 }
        local f = ex:submit(function()
          _G.hold = {}
          pcall(function()
            for i = 1, 1e8 do _G.hold[i] = ("x"):rep(32) .. i end
          end)
          while true do end
        end)
        local e = f:exception(30)
        assert.is_true(cf.TimeoutError:is(e), tostring(e))
        assert.equal("task exceeded its 0.3 s time limit", e.message)
      end)

      it("raises a wait's TimeoutError in a task that holds all of its max_memory", function()
        -- the error is made past the cap: a task at it got "not enough
        -- memory" from result(0.05) instead
        local ex <close> = Pool { max_workers = 1, max_memory = 4 * 1024 * 1024 }
        local r = table.pack(ex:submit(function(g)
          local m = require "concurrent.futures"
          -- all made before the task fills its memory
          local calls = { function() return g:result(0.05) end,
                          function() return g:exception(0.05) end,
                          (m.as_completed({ g }, 0.05)) }
          local got, fill = { false, false, false }, function()
            for i = 1, 1e8 do _G.hold[i] = ("x"):rep(32) .. i end
          end
          _G.hold = {}
          pcall(fill)
          for k = 1, 3 do
            local ok, e = pcall(calls[k])
            got[k] = not ok and m.TimeoutError:is(e)
          end
          _G.hold = nil
          return got[1], got[2], got[3]
        end, cf.Future()):result(30))
        assert.same({ true, true, true, n = 3 }, r)
      end)

      -- A stop raised inside a call of a chunk is not that call's error:
      -- the chunk ends as a stopped task does, with none of its results.
      local core = require "concurrent.core"
      local function chunk_stopped(ex, opts, stop)
        local gate, q = cf.Future(), cf.Queue()
        local fs, submit = {}, core._submitchunk  -- how map submits a chunk
        core._submitchunk = function(...)
          local f = submit(...)
          fs[#fs + 1] = f
          return f
        end
        local ok, it, s, c, closer = pcall(ex.map, ex, {
          function(g, x, sq) if x == 2 then sq:put(x) g:result(60) end return x end,
          { gate, gate, gate }, { 1, 2, 3 }, { q, q, q },
          chunksize = 3, ordered = opts.ordered, task_timeout = opts.task_timeout })
        core._submitchunk = submit
        assert.is_true(ok, it)
        assert.equal(1, #fs)
        assert.equal(2, q:get(30))  -- the chunk's second call waits on 'gate'
        stop(fs[1])
        local got = {}
        local ran, e = pcall(function()
          for i in it, s, c, closer do got[#got + 1] = i end
        end)
        gate:set_result(true)
        assert.is_false(ran)
        assert.same({}, got)
        return fs[1], e
      end

      it("ends a chunk stopped while a call runs as cancelled or timed out", function()
        local ex <close> = Pool(2)
        for _, ordered in ipairs { true, false } do
          local f, e = chunk_stopped(ex, { ordered = ordered }, function(f)
            assert.is_true(f:cancel { running = true })
          end)
          assert.is_true(cf.CancelledError:is(e))
          assert.is_true(f:cancelled())
          f, e = chunk_stopped(ex, { ordered = ordered, task_timeout = 0.5 }, function() end)
          assert.is_true(cf.TimeoutError:is(e))
          assert.equal("task exceeded its 0.5 s time limit", e.message)
          assert.is_false(f:cancelled())
        end
      end)
    end

    it("runs the initializer once per worker with its initargs", function()
      local ex <close> = Pool { max_workers = 2, initargs = { "x", "y", n = 3 },
                                initializer = function(a, b, c) _G.iv = a .. b .. tostring(c) end }
      assert.equal("xynil", ex:submit(function() return _G.iv end):result(30))
    end)

    it("gives each pool its own worker states", function()
      -- one worker each: the two tasks of 'a' meet the same state
      local a <close> = Pool(1)
      local b <close> = Pool { max_workers = 1, initializer = function() _G.which = "b" end }
      a:submit(function() _G.which = "a" end):result(30)
      assert.equal("b", b:submit(function() return _G.which end):result(30))
      assert.equal("a", a:submit(function() return _G.which end):result(30))
    end)

    it("carries large values both ways", function()
      local ex <close> = Pool(2)
      local big = string.rep("x", 8 * 1024 * 1024)
      assert.equal(#big * 2, ex:submit(function(s) return s .. s end, big):result(60):len())
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

    it("runs callbacks while shutdown(true) waits: one may be what ends a task", function()
      local ex, other = Pool(1), cf.ThreadPoolExecutor(1)
      local gate = cf.Future()
      local f = ex:submit(function(g) return g:result(30) end, gate)
      local hold = cf.Future()
      local trigger = other:submit(function(h) return h:result(30) end, hold)
      trigger:add_done_callback(function() gate:set_result("opened") end)
      hold:set_result(true)  -- the callback is ready while shutdown waits
      ex:shutdown(true)
      assert.equal("opened", f:result(0))
      other:shutdown()
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

    -- in a fresh interpreter: the state closing, callbacks at exit
    if caps.fresh then
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

      it("runs the done-callbacks of the tasks it ends at exit on their live futures", function()
        -- before: the handles (newer than the executor) were finalized
        -- first: "future handle already finalized" on stderr
        local out, ok = helpers.run_lua(([[
          local cf = require "concurrent.futures"
          local ex = cf.%s(1)
          local function slow(v)
            local t = os.clock() + 0.1 while os.clock() < t do end return v
          end
          for _, v in ipairs { 1, 2 } do
            ex:submit(slow, v):add_done_callback(function(f, w)
              io.write(w, " ", tostring(f:result(0)), " ", tostring(f), "; ")
            end, v)
          end
          local fails = ex:submit(error, "boom", 0)
          fails:add_done_callback(function(f) io.write(f:exception(0), "; ") end)
          -- (no shutdown: lua.c closes the state at exit)
        ]]):format(class))
        assert.is_true(ok, out)
        assert.equal("1 1 Future<finished>; 2 2 Future<finished>; boom; ", out)
      end)

      it("refuses an executor or a submit from a finalizer while the state closes", function()
        -- Lua runs no finalizer of what is made then: a worker would outlive
        -- the module's code (a crash at exit), a handle would leak
        local out, ok = helpers.run_lua(([[
          local cf = require "concurrent.futures"
          local ex = cf.%s(1)
          local keep = setmetatable({}, { __gc = function()
            local ok, err = pcall(cf.%s, 1)
            io.write(tostring(ok), " ",
              tostring(err):match("the Lua state is closing") or err, "; ")
            ok, err = pcall(ex.submit, ex, function() end)
            io.write(tostring(ok), " ",
              tostring(err):match("the Lua state is closing") or err, "; ")
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
              :add_done_callback(function(f)
                io.write(pcall(f.result, f) and "" or "finalized ")
              end)
          end
          io.write("main ")
        ]]):format(class))
        assert.is_true(ok, out)
        assert.matches("^main ", out)
      end)

      it("lets done-callbacks shut their own executor down while the state closes", function()
        -- fired by the executor's own __gc (shutdown(true)) at lua_close;
        -- each callback's shutdown(true, true) runs inside that one
        local out, ok = helpers.run_lua(([[
          local cf = require "concurrent.futures"
          local ex = cf.%s(1)
          for i = 1, 6 do
            ex:submit(function(x)
              local t = os.clock() + 0.02 while os.clock() < t do end return x
            end, i):add_done_callback(function()
              ex:shutdown(true, true)
              io.write(tostring((pcall(ex.submit, ex, print))), " ")
            end)
          end
          io.write("main ")
        ]]):format(class))
        assert.is_true(ok, out)
        assert.equal("main " .. ("false "):rep(6), out)
      end)

      it("waits for a running task when a to-be-closed executor's script errors", function()
        local out, ok = helpers.run_lua(([[
          local cf = require "concurrent.futures"
          local ex <close> = cf.%s(1)
          KEEP = ex:submit(function()
            local t = os.clock() + 0.2 while os.clock() < t do end return "done"
          end)
          KEEP:add_done_callback(function(f) io.write(f:result(), " ") end)
          error("the script fails")
        ]]):format(class))
        assert.is_falsy(ok)  -- (stdout and stderr: in either order)
        assert.matches("the script fails", out, 1, true)
        assert.matches("done ", out, 1, true)
      end)
    end

    describe("bad input", function()
      it("accepts integral floats and names unknown options", function()
        local ex <close> = Pool { max_workers = 2.0 }
        assert.equal(1, ex:submit(function() return 1 end):result(30))
        local ok, err = pcall(Pool, { maxworkers = 2 })
        assert.is_false(ok)
        assert.matches("^bad argument #1 to '[%w.]*" .. class .. "' %(unknown", err)
        assert.equal("(unknown option 'maxworkers' (known: " .. caps.options .. "))",
          err:match("%(unknown.*"))
        assert.has_error(function() Pool(2.5) end)
        assert.has_error(function() Pool(0) end)
        assert.has_error(function() Pool { max_workers = -1 } end)
      end)

      -- Options were read through the table's __index, which the check
      -- of its keys never saw: a thread pool asked it for respawn (and
      -- refused the 5 it got as a process-pool option), a process pool
      -- for thread_name_prefix.
      it("reads only the options its table holds, never its __index", function()
        local asked = {}
        local opts = setmetatable({ max_workers = 1 }, {
          __index = function(_, k) asked[#asked + 1] = k return 5 end })
        local ex <close> = Pool(opts)
        assert.equal(1, ex:submit(function() return 1 end):result(30))
        assert.same({}, asked)
      end)

      -- as for result() (issue 9 bad input): NaN is not a number, not a
      -- negative or zero one
      if caps.limits then
        it("says a NaN time limit or map timeout is not a number", function()
          local nan = 0 / 0
          local ex <close> = Pool(1)
          for what, call in pairs {
            task_timeout = function() Pool { task_timeout = nan } end,
            timeout = function() ex:submit { print, timeout = nan } end,
            ["map timeout"] = function() ex:map { print, { 1 }, timeout = nan } end,
            ["map task_timeout"] = function() ex:map { print, { 1 }, task_timeout = nan } end,
          } do
            local ok, err = pcall(call)
            assert.is_false(ok)
            assert.matches(what:gsub("map ", "") .. " is not a number %(NaN%)", err)
          end
        end)
      end

      it("names the initializer that is not callable, and takes no numeric strings", function()
        local ok, err = pcall(Pool, { initializer = 5 })
        assert.is_false(ok)
        assert.matches("^bad argument #1 to '[%w.]*" .. class
          .. "' %(initializer must be a function or callable, got number%)", err)
        ok, err = pcall(Pool, { initializer = setmetatable({}, { __call = 5 }), initargs = {} })
        assert.is_true(ok)  -- a __call field makes it callable, as for submit
        err:shutdown()
        -- as the time limits and max_memory (45c59b8): numbers only
        ok, err = pcall(Pool, "2")
        assert.matches("^bad argument #1 to '[%w.]*" .. class
          .. "' %(integer or table expected, got string%)", err)
        for _, opt in ipairs { "max_workers", caps.options:find("max_tasks_per_child", 1, true) and "max_tasks_per_child" or nil } do
          ok, err = pcall(Pool, { [opt] = "2" })
          assert.is_false(ok)
          assert.matches("%(" .. opt .. " must be a positive integer%)", err)
        end
      end)

      it("unpacks initargs as table.unpack does, a negative n giving none", function()
        for _, initargs in ipairs { { 1, 2, n = -1 }, setmetatable({}, { __len = function() return -5 end }) } do
          local ex <close> = Pool { max_workers = 1, initializer = function(...) N = select("#", ...) end,
            initargs = initargs }
          assert.equal(0, ex:submit(function() return N end):result(30))
        end
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
