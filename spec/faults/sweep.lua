-- The fault sweep of 'make faults' (issue 9): every scenario below runs
-- once to count the module's calls that can fail (malloc, calloc,
-- realloc, mmap, pthread_create, eventfd, socketpair, fork, and the worker
-- states' allocations: see faults.c),
-- then once per call number N with that call failing. Each run must end
-- its script (a failure is a Lua error or a failed future, caught by the
-- scenario), exit 0 and, under the ASan host, leak nothing. A crash, an
-- abort, a hang (past HANG seconds) or a leak fails the run.
-- Usage: lua5.4 spec/faults/sweep.lua BUILD-DIR SECONDS
-- Output ends "N passed, M failed", as the specs' does.

local build = assert(arg[1], "usage: sweep.lua BUILD-DIR SECONDS")
local budget = tonumber(arg[2]) or 120
local host = build .. "/host"
local HANG = 20
-- Past this many call numbers a scenario is sampled: the first ones
-- (module and pool start-up, where most error paths are) all, then
-- evenly spread ones up to the last call.
local DENSE, SPREAD = 60, 160
-- FAULTS_SCENARIO=name runs that scenario alone, failing every call.
local alone = os.getenv("FAULTS_SCENARIO")
if alone then DENSE = math.huge end

-- What every scenario runs first: the faults build's module, and 'try'
-- (pcall that tolerates a failure, but not a bad one: a failure must be
-- an error value a user can read). A scenario runs in a 'try' as a
-- whole, and in one for each step, so that the steps after a failure
-- run too (on whatever state the failure left).
local prelude = ([[
package.path = "lua/?.lua;" .. package.path
package.cpath = %q .. "/?.so;" .. package.cpath
local function try(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then
    local s = tostring(err)
    assert(type(s) == "string" and #s > 0, "an unreadable error")
  end
  return ok, err
end
local cf
if not try(function() cf = require "concurrent.futures" end) then
  print("END")
  return
end
]]):format(build)

local scenarios = {
  submit = [[
    local ex = cf.ThreadPoolExecutor(2)
    local fs = {}
    for i = 1, 6 do
      try(function() fs[#fs + 1] = ex:submit(function(x) return x * 2, { x } end, i) end)
    end
    for _, f in ipairs(fs) do try(f.result, f) end
    try(ex.shutdown, ex)
  ]],
  map = [[
    local ex = cf.ThreadPoolExecutor(3)
    try(function()
      for _, v in ex:map(function(a, b) return a + b end, { 1, 2, 3, 4 }, { 5, 6, 7, 8 }) do
        assert(v >= 6)
      end
    end)
    try(function()
      for _ in ex:map{ function(x) return x end, { 1, 2, 3, 4, 5 }, chunksize = 2 } do end
    end)
    try(ex.shutdown, ex)
  ]],
  -- cf.await's timer (its heap and index grow past 16 and 32 entries,
  -- its thread starts), timeouts that win, lose and are cut short by a
  -- running cancel, and cf.any letting go of what is still pending.
  -- (Named to sort after the older scenarios, which the time budget
  -- reaches first; FAULTS_SCENARIO=timers runs it alone.)
  timers = [[
    local never, soon = cf.Future(), cf.Future()
    local jobs = {}
    for i = 1, 40 do
      try(function()
        jobs[#jobs + 1] = cf.async(function()
          return cf.await(i % 2 == 0 and never or soon, 0.001 * (i % 4) + 0.01)
        end)
      end)
    end
    try(soon.set_result, soon, "soon")
    try(function() jobs[1]:cancel { running = true } end)
    try(function() cf.any { soon, never }:result(0) end)
    for _, job in ipairs(jobs) do try(job.result, job, 10) end
  ]],
  -- Queues holding queues and futures: the cycle walk (its set grows
  -- past 16 entries) refuses a put that would hold the queue, and a
  -- task's put and outcome go through it too. (Named to sort after the
  -- older scenarios, as 'timers'; FAULTS_SCENARIO=walk runs it alone.)
  walk = [[
    local ex = cf.ThreadPoolExecutor(1)
    local qs = {}
    for _ = 1, 20 do try(function() qs[#qs + 1] = cf.Queue() end) end
    for i = 2, #qs do try(qs[i].put, qs[i], { qs[i - 1], i }) end
    local f = cf.Future()
    try(f.set_result, f, qs[#qs])
    try(qs[1].put, qs[1], { f })  -- a cycle: refused
    try(qs[1].put, qs[1], "plain")
    try(function()
      return ex:submit(function(a, b) a:put({ b }) return a:get(0) end, qs[1], qs[2]):result(10)
    end)
    for _, q in ipairs(qs) do try(q.get, q, 0) end
    try(ex.shutdown, ex)
  ]],
  wait = [[
    local ex = cf.ThreadPoolExecutor(2)
    local fs = {}
    for i = 1, 4 do
      try(function() fs[#fs + 1] = ex:submit(function(x) return x end, i) end)
    end
    local own = cf.Future()
    fs[#fs + 1] = own
    try(own.set_result, own, "mine")
    try(cf.wait, fs)
    try(cf.wait, fs, 10, cf.FIRST_COMPLETED)
    try(function() for _ in cf.as_completed(fs, 10) do end end)
    try(ex.shutdown, ex)
  ]],
  callbacks = [[
    local ran = 0
    local fs = {}
    for i = 1, 4 do
      try(function()
        local f = cf.Future()
        f:add_done_callback(function(_, k) ran = ran + k end, i)
        fs[#fs + 1] = f
      end)
    end
    for _, f in ipairs(fs) do try(f.set_result, f, 1) end
    local ex = cf.ThreadPoolExecutor(1)
    try(function()
      local f = ex:submit(function() return 1 end)
      f:add_done_callback(function() ran = ran + 1 end)
      f:result()
    end)
    try(cf.dispatch, 0)
    try(cf.notify_fd)
    try(ex.shutdown, ex)
  ]],
  shutdown = [[
    local gate = cf.Future()
    local ex = cf.ThreadPoolExecutor(2)
    local fs = {}
    for i = 1, 5 do
      try(function() fs[#fs + 1] = ex:submit(function(g, x) g:result() return x end, gate, i) end)
    end
    try(ex.shutdown, ex, false, true)
    try(gate.set_result, gate, true)
    for _, f in ipairs(fs) do try(f.result, f) end
    try(ex.shutdown, ex, true)
    try(function()
      local ex2 <close> = cf.ThreadPoolExecutor(1)
      ex2:submit(function() return 1 end)
    end)
    local ex3 = cf.ThreadPoolExecutor(1)  -- luacheck: ignore 211 (left to __gc)
    try(ex3.submit, ex3, function() return 2 end)
  ]],
  errors = [[
    local ex = cf.ThreadPoolExecutor(2)
    local fs = {}
    local raise = {
      function() error("plain") end,
      function() error({ code = 1, list = { 1, 2, 3 } }) end,
      function() error(42) end,
      function() error(setmetatable({}, { __tostring = function() return "obj" end })) end,
      function() error({ handle = io.stdout }) end,  -- cannot cross back
      function() local t = nil; return t.x end,
    }
    for i, fn in ipairs(raise) do
      try(function() fs[i] = ex:submit(fn) end)
    end
    for _, f in pairs(fs) do
      try(f.result, f)
      try(f.exception, f)
      try(f.traceback, f)
    end
    try(ex.shutdown, ex)
  ]],
  -- the supervisor's allocations (tasks, frames, forwarded futures, its
  -- poll set), its fork and socketpair, and a child's own calls
  process = [[
    local ex = cf.ProcessPoolExecutor(2)
    local given = cf.Future()
    local fs = {}
    local function task(x, g) return x * 2, g:result(10) end
    for i = 1, 4 do
      try(function() fs[#fs + 1] = ex:submit(task, i, given) end)
    end
    try(given.set_result, given, { 1, "two" })
    for _, f in ipairs(fs) do try(f.result, f, 15) end
    try(function()
      for _ in ex:map{ function(x) return x end, { 1, 2, 3 }, chunksize = 2 } do end
    end)
    try(function() ex:submit(function() error({ code = 1 }) end):exception(15) end)
    try(ex.shutdown, ex)
    local re = cf.ProcessPoolExecutor { max_workers = 1, respawn = true, max_tasks_per_child = 2 }
    try(function() re:submit(os.exit, 3):exception(15) end)
    for i = 1, 3 do try(function() re:submit(math.abs, -i):result(15) end) end
    try(re.shutdown, re)
  ]],
  -- a process child's get whose value cannot be made there (its
  -- max_memory): the value goes back first in the parent's queue
  -- (F_QUNGET), or is lost with an error that says so. (Named to sort
  -- after the older scenarios; FAULTS_SCENARIO=unget runs it alone.)
  unget = [[
    local px = cf.ProcessPoolExecutor { max_workers = 1, max_memory = 1024 * 1024 }
    local q = cf.Queue()
    local big = {}
    for i = 1, 100000 do big[i] = i end
    try(q.put, q, big)
    try(function() px:submit(function(inq) return pcall(inq.get, inq, 0) end, q):result(15) end)
    try(q.get, q, 0)
    try(px.shutdown, px)
  ]],
  -- a task's one block (future, task and arguments of at most 256
  -- bytes; an outcome moved into the arguments' room), the shared bytes
  -- of function dumps (several functions, one met only through a weak
  -- table), a process child's read buffer grown for a long frame, and
  -- the block caches (big payloads; a worker state's big tables, from
  -- its cache and back)
  blocks = [[
    local ex = cf.ThreadPoolExecutor(1)
    local fs = {}
    for _, n in ipairs { 0, 200, 250, 300, 5000, 5000 } do
      try(function() fs[#fs + 1] = ex:submit(function(s) return #s, s end, ("b"):rep(n)) end)
    end
    for _, n in ipairs { 1000, 1000 } do
      try(function()
        fs[#fs + 1] = ex:submit(function(k)
          local t = {}
          for i = 1, k do t[i] = i end
          t = nil
          collectgarbage()
          local u = {}
          for i = 1, k do u[i] = i end
          return u
        end, n)
      end)
    end
    local weak = setmetatable({ function() return 1 end }, { __mode = "v" })
    for i = 1, 3 do
      try(function()
        fs[#fs + 1] = ex:submit(function(w, k) return k + (w[1] and w[1]() or 0) end, weak, i)
      end)
    end
    for _, f in ipairs(fs) do try(f.result, f) try(f.result, f) end
    try(ex.shutdown, ex)
    local px = cf.ProcessPoolExecutor(1)
    try(function() px:submit(function(s) return #s end, ("p"):rep(40000)):result(15) end)
    try(function() px:submit(function() return 1 end):result(15) end)
    try(px.shutdown, px)
  ]],
  codec = [[
    local ex = cf.ThreadPoolExecutor(1)
    local big = string.rep("x", 100000)
    local shared = { 1, 2.5, "three" }
    local t = { a = shared, b = shared, nested = { { { "deep" } } }, f = cf.Future() }
    t.self = t
    local up = 42
    local function fn(v, s) return v.a == v.b and #s + up, v end
    for _ = 1, 2 do
      try(function() ex:submit(fn, t, big):result() end)
    end
    try(function() ex:submit(function() error({ code = 7 }) end):result() end)
    try(function() ex:submit(function() return big, { big } end):result() end)
    local f = cf.Future()
    try(f.set_result, f, t, big)
    try(function() ex:submit(function(g) return g:result() end, f):result() end)
    try(ex.shutdown, ex)
  ]],
  -- Arrays through the layout paths (ltable54.c): the encoder's runs read
  -- from array parts, with tables between numbers (the view read again),
  -- and the decoder's runs written into new tables, in the owner and in
  -- a worker; a refused value inside a run, then the buffer used again.
  arrays = [[
    local ex = cf.ThreadPoolExecutor(1)
    local nums = {}
    for i = 1, 3000 do nums[i] = i % 3 == 0 and i or i + 0.5 end
    local mixed = {}
    for i = 1, 600 do mixed[i] = i % 50 == 0 and { i, "s" } or i * 0.25 end
    local bad = { 1, 2, 3.5, io.stdout, 5 }
    for _ = 1, 2 do
      try(function() ex:submit(function(a, b) return a, b, #a + #b end, nums, mixed):result() end)
      try(function() ex:submit(function(a) return a end, bad):result() end)
      try(function()
        ex:submit(function(k)
          local t = {}
          for i = 1, k do t[i] = i % 7 == 0 and { i } or i / 2 end
          return t
        end, 2000):result()
      end)
    end
    try(ex.shutdown, ex)
  ]],
}

-- A case's code: three tasks on an executor of kind 'kind' that cannot
-- start a worker; each fails, at submit or in its future, with the same
-- 'class' error. Prints how many did and the error.
local function broken_code(kind, class)
  return ([[
    local ex = cf.%s(2)
    local seen, n = {}, 0
    for i = 1, 3 do
      local ok, f = pcall(ex.submit, ex, function(x) return x end, i)
      local _, err = pcall(function() return ok and f:result() or error(f) end)
      if cf.%s:is(err) then
        n = n + 1
        seen[tostring(err)] = true
      end
    end
    local msg = next(seen)
    print(n .. " " .. (next(seen, msg) and "different errors" or msg))
    ex:shutdown()
  ]]):format(kind, class)
end

-- Regression cases of issue 9: a fault at a given call, then what the
-- script must print.
local cases = {
  {
    -- item 3: the encoder's first growth failing named its values from
    -- an uninitialised path entry ("[no value]", or a crash in strlen)
    name = "first encoder growth failing",
    env = "CONC_FAULT_ONLY=realloc CONC_FAULT=1",
    code = [[
      local ex = cf.ThreadPoolExecutor(1)
      print(select(2, pcall(ex.submit, ex, function() end)))
      ex:shutdown()
    ]],
    expect = "^cannot transfer arguments %(not enough memory%)\nEND\n$",
  },
  {
    -- the encoder's growth failing while it writes a table's own bytes
    -- (its header, a run of numbers) named the table from the path entry
    -- an earlier value left ("argument #2[1]arguments"); the buffer is
    -- used again after
    name = "encoder growth failing in a table",
    env = "CONC_FAULT_ONLY=realloc CONC_FAULT=3",
    code = [[
      local ex = cf.ThreadPoolExecutor(1)
      local a = {}
      for i = 1, 300 do a[i] = i + 0.5 end
      print(select(2, pcall(ex.submit, ex, function() end, { a })))
      print(ex:submit(function(t) return #t[1] end, { a }):result())
      ex:shutdown()
    ]],
    expect = "^cannot transfer argument #2%[1%] %(not enough memory%)\n300\nEND\n$",
  },
  {
    -- item 4: a worker whose state cannot be made leaves; the pool goes
    -- on with the one that started (the second task waits for it)
    name = "the second worker's state failing",
    env = "CONC_FAULT_ONLY=newstate CONC_FAULT=2",
    code = [[
      local ex = cf.ThreadPoolExecutor(2)
      local gate = cf.Future()
      local a = ex:submit(function(g) g:result() return 1 end, gate)
      local b = ex:submit(function() return 2 end)
      gate:set_result(true)
      print(a:result() + b:result())
      ex:shutdown()
    ]],
    expect = "^3\nEND\n$",
  },
  {
    -- item 4: with no worker at all, every future (or a submit made once
    -- the pool broke) fails with BrokenThreadPool saying why
    name = "every worker state failing",
    env = "CONC_FAULT_ONLY=newstate CONC_FAULT=1 CONC_FAULT_FROM=1",
    code = broken_code("ThreadPoolExecutor", "BrokenThreadPool"),
    expect = "^3 BrokenThreadPool: cannot start a worker: cannot create a Lua "
             .. "state %(not enough memory%)\nEND\n$",
  },
  {
    name = "every worker thread failing to start",
    env = "CONC_FAULT_ONLY=pthread_create CONC_FAULT=1 CONC_FAULT_FROM=1",
    code = broken_code("ThreadPoolExecutor", "BrokenThreadPool"),
    expect = "^3 BrokenThreadPool: cannot start a worker: cannot create a "
             .. "thread\nEND\n$",
  },
  {
    -- the slabs of task blocks (future.c) were not in this build (ASan):
    -- a chunk's mmap failing, the block is malloc's; the next submit
    -- maps a chunk again
    name = "a chunk of task blocks failing to map",
    env = "CONC_FAULT_ONLY=mmap CONC_FAULT=1",
    reaches = true,
    code = [[
      local ex = cf.ThreadPoolExecutor(1)
      local fs = {}
      for i = 1, 40 do fs[i] = ex:submit(function(x) return x end, i) end
      local sum = 0
      for _, f in ipairs(fs) do sum = sum + f:result() end
      print(sum)
      ex:shutdown()
    ]],
    expect = "^820\nEND\n$",
  },
  {
    name = "every chunk of task blocks failing to map",
    env = "CONC_FAULT_ONLY=mmap CONC_FAULT=1 CONC_FAULT_FROM=1",
    reaches = true,
    code = [[
      local ex = cf.ThreadPoolExecutor(2)
      local fs = {}
      for i = 1, 40 do fs[i] = ex:submit(function(x) return x end, i) end
      local sum = 0
      for _, f in ipairs(fs) do sum = sum + f:result() end
      print(sum)
      ex:shutdown()
    ]],
    expect = "^820\nEND\n$",
  },
  {
    -- item 4, processes: the second fork failing leaves one worker
    name = "the second fork failing",
    env = "CONC_FAULT_ONLY=fork CONC_FAULT=2",
    code = [[
      local ex = cf.ProcessPoolExecutor(2)
      local fs = {}
      for i = 1, 4 do fs[i] = ex:submit(function(x) return x end, i) end
      local sum = 0
      for _, f in ipairs(fs) do sum = sum + f:result() end
      print(sum)
      ex:shutdown()
    ]],
    expect = "^10\nEND\n$",
  },
  {
    name = "every fork failing",
    env = "CONC_FAULT_ONLY=fork CONC_FAULT=1 CONC_FAULT_FROM=1",
    code = broken_code("ProcessPoolExecutor", "BrokenProcessPool"),
    expect = "^3 BrokenProcessPool: cannot start a worker process: fork: "
             .. "Resource temporarily unavailable\nEND\n$",
  },
  {
    -- the supervisor thread failing to start said "submit: No such file
    -- or directory" (errno, which pthread_create does not set)
    name = "the process pool's supervisor failing to start",
    env = "CONC_FAULT_ONLY=pthread_create CONC_FAULT=1",
    code = broken_code("ProcessPoolExecutor", "BrokenProcessPool"),
    expect = "^3 BrokenProcessPool: cannot start the process pool's "
             .. "supervisor thread: Resource temporarily unavailable\nEND\n$",
  },
}

local function readfile(name)
  local f = io.open(name)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local tmp = os.tmpname()
local script, out, countfile = tmp .. ".lua", tmp .. ".out", tmp .. ".count"

-- Run scenario 'code' failing call 'n' (0: none), or every call from
-- 'n' on if 'from': nil, or why it failed.
local function run(code, n, from)
  local f = assert(io.open(script, "w"))
  f:write(prelude, "try(function()\n", code, '\nend)\nprint("END")\n')
  f:close()
  local cmd = ("%sCONC_FAULT=%d CONC_FAULT_COUNT=%s timeout -s KILL %d %s %s >%s 2>&1")
              :format(from and "CONC_FAULT_FROM=1 " or "", n, countfile, HANG, host,
                      script, out)
  local ok, how, status = os.execute(cmd)
  local text = readfile(out) or ""
  if ok and text:match("END\n") then return nil end
  if how == "exit" and status == 137 then return "hung (killed after " .. HANG .. " s)" end
  return ("%s %s: %s"):format(how, tostring(status), text:sub(-1500))
end

-- Run case 'c': nil, or why it failed. A case that 'reaches' must have
-- made a call of the kind it fails.
local function runcase(c)
  local f = assert(io.open(script, "w"))
  f:write(prelude, c.code, '\nprint("END")\n')
  f:close()
  os.remove(countfile)
  local ok, how, status = os.execute(("%s CONC_FAULT_COUNT=%s timeout -s KILL %d %s %s >%s 2>&1")
                                     :format(c.env, countfile, HANG, host, script, out))
  local text = readfile(out) or ""
  if c.reaches and (tonumber(readfile(countfile) or "") or 0) == 0 then
    return "no call of the kind it fails was made"
  end
  if ok and text:match(c.expect) then return nil end
  return ("%s %s: %s"):format(how, tostring(status), text:sub(-1500))
end

-- item 3: a thread-local of the general-dynamic model is allocated by
-- glibc on a thread's first use, which aborts the process when that
-- fails: the module must use none (no __tls_get_addr).
local function lazytls()
  local p = io.popen("nm -D --undefined-only " .. build .. "/concurrent/core.so 2>&1")
  local syms = p:read("a")
  p:close()
  if syms:match("__tls_get_addr") then return "the module uses lazily allocated TLS" end
  return nil
end

-- The call numbers to fail for a scenario that made 'count' calls.
local function numbers(count)
  local list = {}
  for n = 1, math.min(count, DENSE) do list[#list + 1] = n end
  if count > DENSE then
    local step = (count - DENSE) / SPREAD
    for k = 1, SPREAD do
      local n = DENSE + math.floor(k * step + 0.5)
      if n > list[#list] then list[#list + 1] = n end
    end
  end
  return list
end

local names = {}
for name in pairs(scenarios) do
  if not alone or name == alone then names[#names + 1] = name end
end
table.sort(names)

local passed, failed, skipped = 0, 0, 0
local start = os.time()
for _, c in ipairs(cases) do
  local why = runcase(c)
  if why then
    failed = failed + 1
    print(("FAIL %s: %s"):format(c.name, why))
  else
    passed = passed + 1
  end
end
do
  local why = lazytls()
  if why then
    failed = failed + 1
    print("FAIL " .. why)
  else
    passed = passed + 1
  end
end
for _, name in ipairs(names) do
  os.remove(countfile)
  local why = run(scenarios[name], 0)
  local count = tonumber(readfile(countfile) or "")
  if why or not count then
    failed = failed + 1
    print(("%s: fails without a fault: %s"):format(name, why or "no call count"))
  else
    passed = passed + 1
    local list = numbers(count)
    io.write(("%s: %d calls, failing %d of them\n"):format(name, count, #list))
    for _, n in ipairs(list) do
      for _, from in ipairs({ false, true }) do
        if os.time() - start > budget then
          skipped = skipped + 1
        else
          why = run(scenarios[name], n, from)
          if why then
            failed = failed + 1
            print(("FAIL %s, call %d%s failing: %s")
                  :format(name, n, from and " and on" or "", why))
          else
            passed = passed + 1
          end
        end
      end
    end
  end
end
os.remove(tmp)
os.remove(script)
os.remove(out)
os.remove(countfile)
if skipped > 0 then
  print(("%d runs skipped: past the %d s budget"):format(skipped, budget))
end
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
