-- A C host embedding Lua in states of its own (spec/support/embedtest.c):
-- the lifetimes of its states, its threads and the futures they share.
local exe = os.getenv("EMBEDTEST") or "build/embedtest"

-- Run one case of embedtest: its output and whether it exited 0.
local function embedtest(case)
  local p = assert(io.popen(("LUA_PATH=%q LUA_CPATH=%q %s %s 2>&1")
    :format(package.path, package.cpath, exe, case)))
  local out = p:read("a")
  return out, p:close()
end

describe("a C host embedding Lua", function()
  it("completes and releases a future after the last state has closed", function()
    -- lua_close dlclosed the module: the host's next call jumped into
    -- unmapped pages (a segfault)
    local out, ok = embedtest("afterclose")
    assert.is_true(ok, out)
    assert.matches("ok\n$", out)
  end)

  it("lets a finalizer use the module in a collection the host calls through a function", function()
    -- a finalizer that lua_close runs and one that the host's own
    -- lua_gc runs at the top level (no function called below it) look
    -- the same: the second is refused as the first must be (README,
    -- "From C"); through a lua_pcall, it runs as any finalizer
    local out, ok = embedtest("hostgc")
    assert.is_true(ok, out)
    assert.equal("through a call: Future<pending>; 1\n"
      .. "at the top level: the Lua state is closing; the Lua state is closing\n"
      .. "ok\n", out)
  end)

  it("refuses to complete a future with values that reach it", function()
    -- the host's future_set_result took them (0): a cycle of references
    -- that nothing freed
    local out, ok = embedtest("cycle")
    assert.is_true(ok, out)
    assert.matches("ok\n$", out)
  end)

  it("refuses to encode values that are not on the stack, saying so", function()
    -- past the top the encoder read its own slots (a nil, its memo), at
    -- index 0 whatever was there, and a negative count made a transfer
    -- that no state could decode
    local out, ok = embedtest("encoderange")
    assert.is_true(ok, out)
    local function refused(first, n)
      return ("%d\t%d\tcannot transfer %d values from stack index %d: "
        .. "the stack has 3\n"):format(first, n, n, first)
    end
    assert.equal("1\t3\t1\t3\tx\n" .. "3\t1\tx\n" .. "-2\t2\t2\tx\n"
      .. "4\t0\n" .. refused(1, 4) .. refused(3, 2) .. refused(0, 1)
      .. refused(-4, 1) .. refused(1, -1) .. refused(2, 2147483647)
      .. "ok\n", out)
  end)

  it("refuses a NULL future in every call of its C API", function()
    -- tofuture's NULL for what is no future, passed on: each call read
    -- address 0, and pushfuture pushed a handle claiming to be finalized
    local out, ok = embedtest("nullfuture")
    assert.is_true(ok, out)
    assert.equal("cannot push a future: NULL\nok\n", out)
  end)

  it("runs states in threads of its own, closing them while they share futures", function()
    local out, ok = embedtest("states")
    assert.is_true(ok, out)
    assert.matches("ok\n$", out)
  end)
end)
