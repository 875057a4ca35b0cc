-- The examples run as scripts (and the C host as a program), so they
-- never rot.

local helpers = require "spec.helpers"

local function run_example(name)
  local out, ok = helpers.run_lua(("dofile(%q)"):format("examples/" .. name))
  assert(ok, name .. " failed:\n" .. out)
  return out
end

describe("examples", function()
  it("hello.lua computes in parallel and in order", function()
    local out = run_example("hello.lua")
    assert.matches("fib%(26%) = 121393", out)
    assert.matches("fib%(20%) = 6765", out)
    assert.matches("3\tfib%(20%) = 6765", out)
  end)

  it("map.lua maps over a process pool in chunks", function()
    local out = run_example("map.lua")
    assert.matches("longest Collatz chain below 1001: 178 steps, from 871", out)
    assert.matches("error from a worker process:\tbad input", out)
  end)

  it("submit_result.lua prints the task's result", function()
    local out = run_example("submit_result.lua")
    assert.matches("^%d+\n$", out)
  end)

  it("callbacks.lua appends in callbacks and binds arguments", function()
    local out = run_example("callbacks.lua")
    for id = 1, 3 do
      assert.matches(("task %d finished with %d"):format(id, id * id), out)
    end
    assert.matches("results: 1, 4, 9", out)
    assert.matches("partial in a worker: 15", out)
  end)

  it("cancel.lua cancels only the queued task", function()
    local out = run_example("cancel.lua")
    assert.matches("cancel queued:\ttrue\ttrue", out)
    assert.matches("cancel running:\tfalse", out)
    assert.matches("running task finished", out)
    assert.matches("queued result raises CancelledError:\ttrue", out)
    assert.not_matches("never printed", out)
  end)

  it("as_completed.lua reports each site once, errors included", function()
    local out = run_example("as_completed.lua")
    assert.matches("broken.example generated an error: connection refused", out)
    assert.matches("b.example page is 10240 bytes", out)
    assert.matches("4 of 4 sites done", out)
  end)

  it("luv_async.lua awaits three tasks in a luv loop that keeps ticking", function()
    local out = run_example("luv_async.lua")
    for i = 1, 3 do
      local line = ("step %d: %d squared is %d, %%d+ timer ticks so far"):format(i, i, i * i)
      assert.matches(line, out)
    end
    assert.matches("total: 14", out)
    assert.matches("the loop ended cleanly after [1-9]%d* timer ticks", out)
  end)

  it("queue_producer.lua drains a task's stream while other tasks run", function()
    local out = run_example("queue_producer.lua")
    assert.matches("received 50 records from a producer that sent 50", out)
    assert.matches("sum of squares: 42925", out)
    assert.matches("other task 4: 8002000", out)
    assert.matches("queue after close: Queue<closed, 0 items>", out)
  end)

  it("embed.c completes a Lua-visible future from a host thread", function()
    local exe = os.getenv("EMBED_EXAMPLE") or "build/embed"
    -- it finds the module as any Lua does: through LUA_PATH and LUA_CPATH
    local p = assert(io.popen(("LUA_PATH=%q LUA_CPATH=%q %s 2>&1")
      :format(package.path, package.cpath, exe)))
    local out = p:read("a")
    assert.is_true(p:close(), out)
    assert.matches("lua waits on\tFuture<pending>", out)
    assert.matches("callback saw\thello\t42", out)
    assert.matches("result from the host thread:\thello\t42", out)
    -- and reads, from C, the futures Lua completed
    assert.matches("host read: concurrent 3\n", out, 1, true)
    assert.matches("host read an error: boom (with a traceback)\n", out, 1, true)
    assert.matches("a pending future is done: 0; waiting 0 s: timed out", out, 1, true)
  end)
end)
