-- Run by 'make test-mpi' under mpiexec -n 2 with a test-only switch
-- (CONCURRENT_MPI_TEST_NOMEM=1) that makes rank 0 take every queue reply
-- and every future's news it sends a rank, longer than 64 bytes, and its
-- orders (stop a task, close a pool, exit), as frames it found no memory
-- for. The rank waits for such a frame: it must get a memory error in
-- its place (or the order itself), never wait forever, so the job ends.

local mpi = require "concurrent.futures.mpi"
local cf = require "concurrent.futures"

describe("concurrent.futures.mpi when rank 0 has no memory for a frame a rank waits for", function()
  local big = string.rep("x", 200)

  it("fails the rank's get with a memory error; the queue serves on", function()
    local ex <close> = mpi.MPIPoolExecutor(1)
    local q, started = cf.Queue(), cf.Queue()
    local function get(inq, s)
      if s then s:put(true) end
      return inq:get(30)
    end
    q:put(big)
    assert.matches("get: not enough memory", ex:submit(get, q):exception(30))
    local waiting = ex:submit(get, q, started)  -- the value comes while it waits
    started:get(30)
    q:put(big)
    assert.matches("get: not enough memory", waiting:exception(30))
    q:put("small")
    assert.equal("small", ex:submit(get, q):result(30))
    assert.equal(0, #q)
  end)

  it("settles a forwarded future without its values, which the task is told", function()
    local ex <close> = mpi.MPIPoolExecutor(1)
    local late, early = cf.Future(), cf.Future()
    early:set_result(big)
    local function wait(f)
      local ok, e = pcall(f.result, f, 30)
      return ok, tostring(e)
    end
    local a = ex:submit(wait, late)
    local b = ex:submit(wait, early)
    late:set_result(big)
    for _, f in ipairs { a, b } do
      local ok, e = f:result(30)
      assert.is_false(ok)
      assert.matches("values could not be transferred", e)
    end
    local small = cf.Future()
    small:set_result(7)
    assert.equal(7, ex:submit(function(f) return f:result(30) end, small):result(30))
  end)

  it("stops a running task all the same; the rank serves on", function()
    local ex <close> = mpi.MPIPoolExecutor(1)
    local started = cf.Queue()
    -- bounded, so that a lost stop fails this case and not the whole job
    local f = ex:submit(function(s)
      s:put(true)
      local t = os.time() + 20
      while os.time() < t do end
    end, started)
    started:get(30)
    assert.is_true(f:cancel { running = true })
    local ok, e = pcall(f.result, f, 10)
    assert.is_false(ok)
    assert.is_true(cf.CancelledError:is(e), tostring(e))
    assert.equal(1, ex:submit(function() return 1 end):result(30))
  end)

  it("closes a shut down pool's state on its ranks all the same", function()
    local q = cf.Queue()
    local ex = mpi.MPIPoolExecutor(1)
    ex:submit(function(out)
      _G.guard = setmetatable({}, { __gc = function() out:put("closed") end })
    end, q):result(30)
    ex:shutdown()
    assert.equal("closed", q:get(10))
  end)
end)
