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

  it("runs states in threads of its own, closing them while they share futures", function()
    local out, ok = embedtest("states")
    assert.is_true(ok, out)
    assert.matches("ok\n$", out)
  end)
end)
