-- The core queue (core/chanq.c), timer (core/timer.c) and block caches
-- (core/bufcache.c, core/payload.c's) from C alone: each case of
-- spec/support/queuetest.c runs in its own process.

-- 'make specs' passes the binary of its build (build-asan/queuetest
-- under 'make asan'); a bare busted run builds build/queuetest.
local QUEUETEST = os.getenv("QUEUETEST")
if not QUEUETEST then
  QUEUETEST = "build/queuetest"
  assert(os.execute("make -s " .. QUEUETEST), "cannot build " .. QUEUETEST)
end

local CASES = {
  { "fifo", "keeps items in order, owned by the queue until taken" },
  { "bounded", "refuses a put while full, leaving the item to the caller" },
  { "threads", "carries 100,000 items between threads through 16 slots" },
  { "close", "wakes a blocked get and put at close; drains, then refuses" },
  { "wake", "cancels a waiter's future at the next put, get or close" },
  { "unget", "takes an item back first, past maxsize and after close, waking a getter" },
  { "unref", "frees the items left with the last reference" },
  { "timer", "cancels futures at their deadlines and joins at free" },
  { "timerforever", "never cancels at a deadline that never comes (forever, NaN), nor holds others back" },
  { "null", "refuses a NULL queue in every call" },
  { "timeridle", "keeps a thread only while something is due" },
  { "timermany", "adds and removes 200,000 entries at once in O(log n) each" },
  { "process", "carries blocking put, get, timeouts and close through a process-pool child" },
  { "bufcache", "keeps big blocks within its bounds, gives back one that fits, latest first" },
  { "payloadcache", "reuses big payloads' blocks across threads while a thread pool lives" },
}

local function queuetest(args)
  local p = assert(io.popen(QUEUETEST .. " " .. args .. " 2>&1", "r"))
  local out = p:read("a")
  return out, p:close()
end

describe("core queue, timer and block caches (C)", function()
  it("lists exactly the cases this spec runs", function()
    local out, ok = queuetest("list")
    assert.is_true(ok, out)
    local listed, want = {}, {}
    for name in out:gmatch("%S+") do listed[#listed + 1] = name end
    for i, c in ipairs(CASES) do want[i] = c[1] end
    assert.same(want, listed)
  end)

  for _, c in ipairs(CASES) do
    it(c[2], function()
      local out, ok = queuetest(c[1])
      assert.is_true(ok, out)
      assert.equal("ok " .. c[1] .. "\n", out)
    end)
  end
end)
