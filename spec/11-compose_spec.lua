-- Composition over futures (API.md, "Beyond Python"): map's options and
-- its errors, cf.all / cf.any, cf.async / cf.await.

local cf = require "concurrent.futures"

-- The line of this file that called the function at level 2 of 'fn'.
local function line_of(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  return err
end

describe("ThreadPoolExecutor:map", function()
  it("cancels the task it waited on when its timeout expires", function()
    local ex = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    local busy = ex:submit(function(g) return g:result(10) end, gate)
    local ok, err = pcall(function()
      for _ in ex:map { function(x) return x end, { 1, 2 }, timeout = 0 } do end
    end)
    assert.is_false(ok)
    assert.is_true(cf.TimeoutError:is(err))
    gate:set_result(1)
    assert.equal(1, busy:result(10))
    ex:shutdown(true)
    local st = ex:stats()
    assert.equal(2, st.cancelled)
    assert.equal(1, st.completed)
  end)

  it("reports its argument errors at the caller's line", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    local here = "11%-compose_spec%.lua:%d+: "
    local cases = {
      { function() local it = ex:map(5, { 1 }) return it end, "bad argument #1 to 'map' %(function expected, got number%)" },
      { function() local it = ex:map(print, 5) return it end, "bad argument #2 to 'map' %(array or iterator function expected, got number%)" },
      { function() local it = ex:map { print, { 1 }, 5 } return it end, "bad argument #1 to 'map' %(array or iterator function expected at index 3, got number%)" },
      { function() local it = ex:map(print) return it end, "bad argument #2 to 'map' %(at least one iterable expected%)" },
      { function() local it = ex:map { print, { 1 }, timeout = -1 } return it end, "timeout must be a non%-negative number" },
      { function() local it = ex:map { print, { 1 }, chunksize = 0 } return it end, "chunksize must be an integer >= 1" },
      { function() local it = ex:map(print, { io.stdout }) return it end, "cannot transfer argument #2 %(userdata%)" },
      { function() local it = ex.map(nil, print, { 1 }) return it end, "calling 'map' on bad self" },
    }
    for _, c in ipairs(cases) do
      local err = line_of(c[1])
      assert.matches("^[^\n]-" .. here .. ".-" .. c[2], err)
    end
  end)

  it("yields in completion order with ordered = false, each index once", function()
    local ex <close> = cf.ThreadPoolExecutor(3)
    local gate = cf.Future()
    local seen = {}
    local task = function(x, g) if x == 1 then g:result(10) end return x * 10 end
    for i, v in ex:map { task, { 1, 2, 3 }, { gate, gate, gate }, ordered = false, timeout = 30 } do
      assert.equal(i * 10, v)
      seen[#seen + 1] = i
      if #seen == 2 then gate:set_result(true) end
    end
    assert.equal(1, seen[3])
    table.sort(seen)
    assert.same({ 1, 2, 3 }, seen)
  end)

  it("yields every index of every chunk once in completion order", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local xs = {}
    for i = 1, 10 do xs[i] = i end
    for _, opts in ipairs { { chunksize = 3 }, { chunksize = 3, buffersize = 1 }, { buffersize = 2 } } do
      local seen = {}
      for i, v in ex:map { function(x) return x * x end, xs, ordered = false,
                           chunksize = opts.chunksize, buffersize = opts.buffersize } do
        assert.equal(i * i, v)
        seen[#seen + 1] = i
      end
      table.sort(seen)
      assert.same(xs, seen)
    end
  end)

  it("keeps at most buffersize tasks ahead of the consumer of an endless iterator", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    for _, k in ipairs { 0, 1, 2, 5 } do
      for _, ordered in ipairs { true, false } do
        local n = 0
        local function naturals() n = n + 1 return n end
        local count = 0
        for i, v in ex:map { function(x) return -x end, naturals, buffersize = k, ordered = ordered } do
          assert.equal(-i, v)
          count = count + 1
          -- the inputs read are the tasks submitted: those yielded plus k
          assert.equal(count + k, n)
          if count == 40 then break end
        end
      end
    end
  end)

  it("cancels the buffered tasks when the loop is left", function()
    local ex = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    local k = 0
    local function gen() k = k + 1 return k end
    for _ in ex:map { function(x, g) if x > 1 then g:result(10) end return x end, gen,
                      function() return gate end, buffersize = 6 } do
      break
    end
    gate:set_result(true)
    ex:shutdown(true)
    assert.equal(7, k)
    assert.is_true(ex:stats().cancelled >= 5)
  end)

  it("raises TimeoutError in completion order and cancels what is left", function()
    local ex = cf.ThreadPoolExecutor(1)
    local gate = cf.Future()
    for _, buffersize in ipairs { false, 3 } do
      local ok, err = pcall(function()
        for _ in ex:map { function(g) return g:result(10) end, { gate, gate, gate, gate },
                          ordered = false, timeout = 0.05, buffersize = buffersize or nil } do end
      end)
      assert.is_false(ok)
      assert.is_true(cf.TimeoutError:is(err))
    end
    gate:set_result(1)
    ex:shutdown(true)
    -- the first map's first task ran; the others never started
    assert.equal(1, ex:stats().completed)
    assert.equal(6, ex:stats().cancelled)
  end)

  it("checks ordered and buffersize, and accepts integral floats", function()
    local ex <close> = cf.ThreadPoolExecutor(1)
    for _, bad in ipairs { -1, 1.5, "2", true } do
      local ok, err = pcall(ex.map, ex, { print, { 1 }, buffersize = bad })
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'map' %(buffersize must be an integer >= 0%)", err)
    end
    local ok, err = pcall(ex.map, ex, { print, { 1 }, ordered = "no" })
    assert.is_false(ok)
    assert.matches("ordered must be a boolean, got string", err)
    ok, err = pcall(ex.map, ex, { print, { 1 }, buffer_size = 2 })
    assert.is_false(ok)
    assert.matches("unknown option 'buffer_size'", err)
    local out = {}
    for i, v in ex:map { function(x) return x + 1 end, { 1, 2, 3 }, chunksize = 2.0, buffersize = 1.0 } do
      out[i] = v
    end
    assert.same({ 2, 3, 4 }, out)
  end)
end)
