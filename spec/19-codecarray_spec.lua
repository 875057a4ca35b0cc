-- The codec's arrays (issue 11): the encoder reads t[1], t[2]...
-- straight from a table's array part where Lua 5.4's layout is known
-- (lua/ltable54.c), then goes on with lua_next. Every pair must cross
-- once: none dropped, none twice, whichever part of the table holds the
-- integer keys. The decoder writes runs of numbers straight into the
-- array part of the table it makes: the copy must be an ordinary table
-- ('#', ipairs, table.insert), equal to the original.

local cf = require "concurrent.futures"
local ch = require "codechelper"
local helpers = require "spec.helpers"

local arrays = require "spec.support.arrays"
local same, npairs, counts, seq = arrays.same, arrays.npairs, arrays.counts, arrays.seq

-- Tables whose integer keys sit where the array part's view stops short
-- of them, or in the hash after other keys. Each maker builds a fresh
-- table: where a key lives depends on how the table was filled.
local shapes = {
  ["1 in the hash after string keys"] = function()
    local t = { x = 1, y = 2, z = 3 }
    t[1] = 1.5
    return t
  end,
  ["a string at 1 in the hash"] = function()
    local t = { x = 1, y = 2, z = 3 }
    t[1] = "a"
    return t
  end,
  ["keys 1, 2 in a constructor's hash"] = function()
    return { [1] = 1.5, [2] = 2.5, k = 3 }
  end,
  ["keys 1..3 after hash keys in a constructor"] = function()
    return { a = 1, b = 2, [1] = 7, [2] = 8.5, [3] = 9 }
  end,
  ["border below the array size"] = function()
    local t = seq(8, function(i) return i + 0.5 end)
    t[8], t[7] = nil, nil
    return t
  end,
  ["border below the array size, after #"] = function()
    local t = seq(5, function(i) return i * 0.25 end)
    assert(#t == 5)  -- lowers the array's limit to 5 of 8
    t[7] = 7.5
    return t
  end,
  ["holes"] = function()
    local t = { 1.5, nil, 3.5, nil, 5, 6.5 }
    t.n = 6
    return t
  end,
  ["leading holes"] = function() return { nil, nil, 3.5, 4.5 } end,
  ["a hole in a long run"] = function()
    local t = seq(1000, function(i) return i / 3 end)
    t[500] = nil
    return t
  end,
  ["mixed values in a numeric run"] = function()
    return { 1.5, 2, "s", 3.5, true, 4, false, 5.5, 6, 7 }
  end,
  ["nested tables in a numeric run"] = function()
    return seq(300, function(i)
      return i % 50 == 0 and { i, i + 0.5, "x", { i } } or i + 0.5
    end)
  end,
  ["functions in a numeric run"] = function()
    return seq(40, function(i)
      return i % 7 == 0 and function() return i end or i
    end)
  end,
  ["special numbers"] = function()
    local sp = { 0.0, -0.0, 0 / 0, math.huge, -math.huge, math.mininteger,
      math.maxinteger, 2 ^ 63, 5e-324, 3.0, 3, -1 }
    return seq(120, function(i) return sp[(i - 1) % #sp + 1] end)
  end,
  ["integers and floats alternating"] = function()
    return seq(64, function(i) return i % 2 == 0 and i or i + 0.0 end)
  end,
  ["array and hash keys"] = function()
    local t = seq(100, function(i) return i * 1.5 end)
    for i = 1, 20 do t["k" .. i] = i end
    t[102], t[-1], t[0], t[2.5] = 1, 2, 3, 4
    return t
  end,
  ["hash keys first, then the array grown"] = function()
    local t = {}
    for i = 1, 7 do t["k" .. i] = i end
    for i = 1, 37 do t[i] = i * 0.5 end
    return t
  end,
  ["a metatable with __index and __len"] = function()
    return setmetatable({ 1.5, 2.5, nil, 4 }, {
      __index = function() return 0 end,
      __len = function() return 99 end,
    })
  end,
  ["weak values"] = function()
    return setmetatable({ 1.5, 2, 3.5, 4 }, { __mode = "v" })
  end,
  ["runs longer than 256, integers then floats"] = function()
    return seq(1500, function(i)
      if i <= 600 then return i % 3 == 0 and math.mininteger or -i end
      return i == 900 and 0 / 0 or i * -0.125
    end)
  end,
  ["runs split by strings, booleans and a nil"] = function()
    return seq(700, function(i)
      if i % 97 == 0 then return "s" .. i end
      if i % 131 == 0 then return i % 2 == 0 end
      if i == 333 then return nil end
      return i % 5 == 0 and i or i - 0.5
    end)
  end,
  ["a trailing nil in a sized array"] = function()
    local t = seq(20, function(i) return i + 0.5 end)
    t[20] = nil
    return t
  end,
}

describe("transfer of arrays", function()
  local S

  before_each(function() S = ch.state() end)
  after_each(function() S:close() end)

  it("reads tables through the layout view in this build", function()
    -- the check at the first encode of a state (lconc_arraycheck) passes
    -- with this Lua, so the encoder uses the view; and the view reads
    -- what the API reads, never a key it does not hold
    for name, make in pairs(shapes) do
      local t = make()
      local ok, view = ch.arrayview(t)
      assert.is_true(ok, name)
      for i, v in ipairs(view) do
        local raw = rawget(t, i)
        if type(v) == "boolean" then
          assert.equal(v, raw ~= nil, name .. " [" .. i .. "]")
          assert.is_not.equal("number", type(raw), name)
        else
          assert.is_true(same(raw, v), name .. " [" .. i .. "]")
        end
      end
    end
    local t = { x = 1, y = 2, z = 3 }
    t[1] = 1.5
    assert.equal(0, #select(2, ch.arrayview(t)))
    local ok, view = ch.arrayview(seq(1000, function(i) return i end))
    assert.is_true(ok)
    assert.equal(1000, view[1000])
  end)

  it("sends every pair once, whichever part holds it", function()
    for name, make in pairs(shapes) do
      local t = make()
      local narr, nhash = counts(ch.encode(t))
      assert.equal(npairs(t), narr + nhash, name)
      assert.is_true(same(t, ch.decode(ch.encode(t))), name)
      assert.is_true(same(t, (S:roundtrip(t))), name)
    end
  end)

  it("sends every pair once through a thread pool, both ways", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local fs = {}
    for name, make in pairs(shapes) do
      fs[name] = ex:submit(function(x)
        local n = 0
        for _ in next, x do n = n + 1 end
        return x, n
      end, make())
    end
    for name, make in pairs(shapes) do
      local r, n = fs[name]:result(30)
      local t = make()
      assert.equal(npairs(t), n, name)
      assert.is_true(same(t, r), name)
    end
  end)

  it("sends float runs of every length, ended at every place", function()
    -- the encoder and the decoder take floats eight at a time while they
    -- last: each length and each place of another value in the run
    for n = 0, 20 do
      for at = 1, n + 1 do
        for _, other in ipairs({ 7, "s", 0.5 }) do
          local t = seq(n, function(i) return i + 0.25 end)
          t[at] = other
          local name = n .. " floats, " .. tostring(other) .. " at " .. at
          assert.is_true(same(t, ch.decode(ch.encode(t))), name)
          assert.is_true(same(t, (S:roundtrip(t))), name)
        end
      end
    end
  end)

  it("sends huge arrays with every kind of element", function()
    -- in a child: freeing the 16 MB arrays would raise glibc's mmap and
    -- trim thresholds for the rest of the suite, whose RSS checks
    -- (stress 02) then see memory the allocator keeps
    local out, ok = helpers.run_lua([[
      local ch = require "codechelper"
      local arrays = require "spec.support.arrays"
      local t = arrays.seq(1000000, function(i) return i / 3 end)
      t[500000], t[700000], t[900000] = "s", 7, { 1.5 }
      t.k = true
      local narr, nhash = arrays.counts(ch.encode(t))
      assert(narr == 1000000, narr)
      assert(nhash == 1, nhash)
      local S = ch.state()
      assert(arrays.same(t, (S:roundtrip(t))))
      S:close()
      print("huge ok")
    ]])
    assert.is_true(ok, out)
    assert.matches("huge ok", out)
  end)

  it("keeps shared and cyclic tables met in a numeric run", function()
    local s = { 1.5, 2.5 }
    local t = { 0.5, s, 1.5, s, 2 }
    t[6] = t
    local r = S:roundtrip(t)
    assert.is_true(same(t, r))
    assert.equal(r[2], r[4])
    assert.equal(r, r[6])
  end)

  it("decodes arrays that behave as arrays", function()
    -- '#' finds the last item, ipairs walks them all, table.insert
    -- appends past them and the array part grows: whatever the decoder
    -- wrote into the array part, Lua reads as its own
    local kinds = {
      floats = function(i) return i / 3 end,
      integers = function(i) return i * 7 - 3000 end,
      mixed = function(i) return i % 4 == 0 and "s" or i % 2 == 0 and i or -0.0 end,
    }
    for _, n in ipairs({ 1, 2, 15, 16, 17, 256, 257, 1000, 4100 }) do
      for kind, f in pairs(kinds) do
        local name = kind .. " " .. n
        local t = seq(n, f)
        for _, r in ipairs({ ch.decode(ch.encode(t)), (S:roundtrip(t)) }) do
          assert.is_true(same(t, r), name)
          assert.equal(n, #r, name)
          local walked = 0
          for i, v in ipairs(r) do
            walked = i
            assert.is_true(same(t[i], v), name)
          end
          assert.equal(n, walked, name)
          table.insert(r, 0.25)
          table.insert(r, 1, "first")
          assert.equal(n + 2, #r, name)
          assert.equal("first", r[1], name)
          assert.is_true(same(t[n], r[n + 1]), name)
          assert.equal(0.25, r[n + 2], name)
          for i = n + 3, 2 * n + 10 do r[i] = i end
          assert.equal(2 * n + 10, #r, name)
          assert.equal(0.25, table.remove(r, n + 2), name)
          assert.equal(2 * n + 9, #r, name)
        end
      end
    end
    local r = ch.decode(ch.encode(seq(20, function(i)
      return i < 20 and i + 0.5 or nil
    end)))
    assert.equal(19, #r)
    r[20] = 1
    assert.equal(20, #r)
  end)

  it("returns a pool task's array as an array", function()
    local ex <close> = cf.ThreadPoolExecutor(2)
    local xs = seq(1000, function(i) return i * 0.5 end)
    local fs = {}
    for i = 1, 20 do
      fs[i] = ex:submit(function(a, k)
        local out = {}
        for j = 1, #a do out[j] = a[j] * k end
        out[#out + 1] = k  -- an integer after the floats
        return out
      end, xs, i)
    end
    for i = 1, 20 do
      local r = fs[i]:result(30)
      assert.equal(1001, #r)
      assert.equal(math.type(xs[1] * i), math.type(r[1]))
      for j = 1, 1000 do assert.equal(xs[j] * i, r[j]) end
      assert.equal("integer", math.type(r[1001]))
      assert.equal(i, r[1001])
      r[#r + 1] = "more"
      assert.equal(1002, #r)
    end
  end)

  it("decodes arrays while the collector steps and finalizers run", function()
    -- strings and tables between runs allocate: collector steps (each
    -- mode) run finalizers that allocate too, mid-decode; the numbers
    -- written straight into the array part must all survive, and a
    -- collection after must find every table whole (make asan)
    local out, ok = helpers.run_lua([[
      local ch = require "codechelper"
      local arrays = require "spec.support.arrays"
      local S = ch.state()
      local t = arrays.seq(1200, function(i)
        if i % 50 == 0 then return { i, "n" .. i, i + 0.5 } end
        if i % 77 == 0 then return ("x"):rep(i % 300) end
        return i % 3 == 0 and i or i / 7
      end)
      t[1201] = t
      t.k = { t[50], 1.5 }
      local junk, decoding, during = {}, false, 0
      local function arm()
        for _ = 1, 10 do
          setmetatable({}, { __gc = function()
            if decoding then during = during + 1 end
            junk[#junk % 8 + 1] = arrays.seq(50, function(i) return { i } end)
          end })
        end
      end
      for _, mode in ipairs({ "incremental", "generational" }) do
        if mode == "incremental" then
          collectgarbage("incremental", 10, 1000, 0)
        else
          collectgarbage("generational", 1, 10)
        end
        for _ = 1, 4 do
          local b = ch.encode(t)
          arm()
          decoding = true
          local r = ch.decode(b)
          decoding = false
          arm()
          local r2 = S:roundtrip(t)
          collectgarbage()
          assert(arrays.same(t, r) and arrays.same(t, r2), mode)
          assert(r[1201] == r and r.k[1] == r[50], mode)
        end
      end
      S:close()
      assert(during > 0, "no finalizer ran during a decode")
      print("gc ok " .. during)
    ]])
    assert.is_true(ok, out)
    assert.matches("gc ok", out)
  end)

  it("rereads the array after a finalizer resized it mid-encode", function()
    -- dumping the functions in the array allocates; a collector step
    -- then runs a finalizer that grows the very table being encoded,
    -- which moves its array part: the encoder must not read the old one
    -- (a use after free, make asan) and must send the table as the
    -- finalizer left it, the grown part included, nothing twice (or as
    -- it was, when the finalizer ran once the encode was over)
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local ch = require "codechelper"
      local ex = cf.ThreadPoolExecutor(1)
      local t, before
      local function arm()
        collectgarbage("stop")
        t, before = {}, {}
        for i = 1, 300 do
          t[i] = i % 10 == 0 and load("return function() end")() or i + 0.5
          before[i] = t[i]
        end
        setmetatable({}, { __gc = function()
          local n = #t
          for i = n + 1, 2 * n do t[i] = i * 0.25 end
          for i = 1, 40 do t["g" .. i] = i end
        end })
        collectgarbage("restart")  -- a step per allocation (below)
      end
      local function equal(r, w)
        local n = 0
        for k, v in next, w do
          n = n + 1
          if not (type(v) == "function" and type(r[k]) == "function"
                  or r[k] == v) then return false end
        end
        for _ in next, r do n = n - 1 end
        return n == 0
      end
      local function check(r)
        if equal(r, t) and r[301] then return 1 end
        assert(equal(r, before), "neither the table before nor after")
        return 0
      end
      collectgarbage("incremental", 10, 1000, 0)
      local grown = 0
      for _ = 1, 10 do
        arm()
        grown = grown + check(ch.decode((ch.encode(t))))
        arm()
        check(ex:submit(function(x) return x end, t):result(30))
      end
      -- the collector was stopped up to the encode: a grown copy was
      -- grown during it
      assert(grown > 0, "no finalizer ran during an encode")
      ex:shutdown()
      print("ok " .. grown)
    ]])
    assert.is_true(ok, out)
    assert.matches("ok", out)
  end)

  it("keeps the state's buffer after an error that is no refusal", function()
    -- a finalizer run by an allocation of the encode empties the table
    -- being encoded and rehashes it: lua_next then raises "invalid key
    -- to 'next'" from inside the encode, not through its refusal. The
    -- state's buffer must not stay marked busy: every encode after
    -- would make a new buffer (and check the layout again), which the
    -- collector's count shows (some 0.75 KB an encode) as memory
    -- allocated by encodes of a small table that allocate next to none
    -- with the state's buffer
    local out, ok = helpers.run_lua([[
      local ch = require "codechelper"
      local small = { 1, 2, 3 }
      local function allocated()
        ch.encode(small)
        collectgarbage()
        collectgarbage("stop")
        local before = collectgarbage("count")
        for _ = 1, 100 do ch.encode(small) end
        local kb = collectgarbage("count") - before
        collectgarbage("restart")
        return kb
      end
      assert(allocated() < 8, "encodes allocate before any error")
      collectgarbage("incremental", 10, 1000, 0)
      local raised
      for _ = 1, 300 do
        collectgarbage("stop")
        local t = {}
        for i = 1, 64 do
          t[i] = i % 4 == 0 and load("return function() end")() or i + 0.5
        end
        setmetatable({}, { __gc = function()
          for j = 1, 64 do t[j] = nil end
          for j = 1, 40 do t["k" .. j] = j end
        end })
        collectgarbage("restart")  -- a step per allocation (the dumps)
        local ok, e = pcall(ch.encode, t)
        if not ok then
          assert(tostring(e):find("invalid key to 'next'", 1, true), e)
          raised = true
          break
        end
      end
      collectgarbage("incremental", 200, 100)
      assert(raised, "no encode raised")
      local kb = allocated()
      assert(kb < 8, kb .. " KB allocated by 100 encodes after the error")
      print("ok")
    ]])
    assert.is_true(ok, out)
    assert.matches("ok", out)
  end)

  it("keeps an encode's buffer when a coroutine that died in one is closed", function()
    -- a coroutine whose encode raised holds the buffer to be closed
    -- until coroutine.close; a finalizer closing it in the middle of the
    -- owner's next encode (a big 'seen' map) must leave that encode's
    -- buffer alone (a freed map read after, make asan)
    local out, ok = helpers.run_lua([[
      local ch = require "codechelper"
      local co = coroutine.create(function() return ch.encode({ io.stdout }) end)
      assert(not coroutine.resume(co))
      collectgarbage("incremental", 10, 1000, 0)
      local closed, inside = false, false
      for _ = 1, 50 do
        collectgarbage("stop")
        local t = {}
        for i = 1, 3000 do t[i] = { i } end
        for i = 1500, 3000, 20 do t[i] = load("return function() end")() end
        setmetatable({}, { __gc = function()
          if inside then closed = true coroutine.close(co) end
        end })
        inside = true
        collectgarbage("restart")  -- a step per allocation (the dumps)
        local r = ch.decode((ch.encode(t)))
        inside = false
        for i = 1, 3000 do
          assert(type(r[i]) == type(t[i]) and (type(t[i]) ~= "table" or r[i][1] == i))
        end
        if closed then break end
      end
      collectgarbage("incremental", 200, 100)
      assert(closed, "the coroutine was not closed during an encode")
      print("ok")
    ]])
    assert.is_true(ok, out)
    assert.matches("ok", out)
  end)
end)
