-- #stress A running cancel must reach its task (issue 12): a task just
-- started is cancelled right after the one before it was, over and over.
-- The stop reaches a running Lua task by lua_sethook from another
-- thread, and Lua makes that safe only on the state's own thread: the
-- worker could turn its traps off at the same instant, or take away the
-- hook of the previous stop just as this one set it, and the task then
-- ran on (thousands of rounds found it in seconds). Bounded in count
-- and time; the spinning task ends by itself should a cancel be lost.

local cf = require "concurrent.futures"

local ROUNDS, SECONDS = 20000, 8

local function spin()
  local t = os.time() + 10
  while os.time() < t do end
end

describe("#stress running cancel", function()
  for _, class in ipairs { "ThreadPoolExecutor", "ProcessPoolExecutor" } do
    it("stops every task of a " .. class .. " cancelled as it starts", function()
      local ex <close> = cf[class](1)
      local stop = os.time() + SECONDS
      for i = 1, ROUNDS do
        local a = ex:submit(function(k) return k end, i)
        local b = ex:submit(spin)
        while not a:running() and not a:done() do end
        a:cancel { running = true }
        while not b:running() and not b:done() do end
        b:cancel { running = true }
        local ok, e = pcall(b.exception, b, 5)
        assert.is_false(ok, "round " .. i)
        assert.is_true(cf.CancelledError:is(e), "round " .. i .. ": " .. tostring(e))
        if os.time() > stop then break end
      end
    end)
  end
end)
