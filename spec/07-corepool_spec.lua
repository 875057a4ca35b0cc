-- The core thread pool from C alone: each case of spec/support/pooltest.c
-- runs in its own process (a hang dies of the program's own alarm).

-- 'make specs' passes the binary of its build (build-asan/pooltest under
-- 'make asan'); a bare busted run builds build/pooltest.
local POOLTEST = os.getenv("POOLTEST")
if not POOLTEST then
  POOLTEST = "build/pooltest"
  assert(os.execute("make -s " .. POOLTEST), "cannot build " .. POOLTEST)
end

local CASES = {
  "many1", "many2", "many8", "lazy", "maxworkers", "cancelqueued",
  "precancelled", "failed", "shutdownwait", "shutdowncancel",
  "aftershutdown", "broken", "brokenlater", "nowait", "esys", "names",
  "stopctx", "threadattrs", "stress", "cbrelease", "cbwait",
  "shutdownself", "maxbound", "nullhooks", "stuck", "startwhy", "startsome", "nullrun",
  "misuse",
  "refused",
}

local DESCRIPTIONS = {
  many1 = "runs 20,000 tasks on 1 worker with correct results",
  many2 = "runs 20,000 tasks on 2 workers with correct results",
  many8 = "runs 20,000 tasks on 8 workers with correct results",
  lazy = "starts workers lazily, only while none is idle",
  maxworkers = "never starts more than max_workers",
  cancelqueued = "drops a cancelled queued task at once, without a worker",
  precancelled = "accepts and drops a task whose future is already cancelled",
  failed = "counts a task that raised as failed and keeps its worker",
  shutdownwait = "runs queued tasks on shutdown(wait) and joins every worker",
  shutdowncancel = "cancels queued tasks on shutdown(cancel)",
  aftershutdown = "refuses submit after shutdown with CONC_ESHUTDOWN",
  broken = "breaks when worker_start fails: queued tasks and submits fail",
  brokenlater = "breaks on a later worker and lets the running task finish",
  nowait = "returns from shutdown(0) while a task runs; free waits for it",
  esys = "refuses with CONC_ESYS when no worker can be created",
  names = "names threads <prefix>_<n> within 15 bytes",
  stopctx = "calls worker_stop with each worker's context",
  threadattrs = "gives workers their stack size and blocks async signals",
  stress = "accounts for every future with 4 submitters and concurrent cancels",
  cbrelease = "lets a future's C callback release its last reference",
  cbwait = "returns at once from a wait on a future inside its own C callback",
  shutdownself = "refuses shutdown(wait) from the pool's own threads with CONC_EINVAL",
  maxbound = "refuses max_workers past CONC_MAX_WORKERS with EINVAL",
  nullhooks = "runs an executor whose runtime leaves its optional hooks NULL",
  stuck = "ends a process pool's task stuck where no stop reaches with its "
    .. "runtime's outcome of a stopped task",
  startwhy = "says what failed when a runtime's start fails without a reason",
  startsome = "breaks only when no worker is left as a runtime's start runs "
    .. "out of resources (the others take the tasks), and tries it again only "
    .. "at the next submit",
  nullrun = "fails a task whose runtime returns no outcome, whatever it said",
  misuse = "refuses NULL futures, callbacks and tasks, and a future given to two tasks; "
    .. "takes a NULL error class as an empty one",
  refused = "cancels the future of a submit either executor refuses (shut "
    .. "down, broken, a forked copy)",
}

-- Run pooltest with 'args'; its output and whether it exited 0.
local function pooltest(args)
  local p = assert(io.popen(POOLTEST .. " " .. args .. " 2>&1", "r"))
  local out = p:read("a")
  return out, p:close()
end

describe("core thread pool (C)", function()
  it("lists exactly the cases this spec runs", function()
    local out, ok = pooltest("list")
    assert.is_true(ok, out)
    local listed = {}
    for name in out:gmatch("%S+") do listed[#listed + 1] = name end
    assert.same(CASES, listed)
  end)

  it("fails on a case it does not know", function()
    local out, ok = pooltest("nosuchcase")
    assert.is_falsy(ok)
    assert.matches("no such case 'nosuchcase'", out, 1, true)
  end)

  for _, name in ipairs(CASES) do
    it(DESCRIPTIONS[name], function()
      local out, ok = pooltest(name)
      assert.is_true(ok, out)
      assert.equal("ok " .. name .. "\n", out)
    end)
  end
end)
