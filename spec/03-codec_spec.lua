-- The transfer codec (API.md, "Transfer"): values cross into a second,
-- fresh lua_State and back through spec/support/codechelper.c.

local ch = require "codechelper"
local core = require "concurrent.core"

-- Deep equality that keeps subtypes (-0.0, nan) and the sharing shape:
-- an object of 'a' met twice must map to one object of 'b'.
local same = require("spec.support.arrays").same

local function nest(n)
  local t = {}
  for _ = 2, n do t = { t } end
  return t
end

local function corpusfiles()
  local files = {}
  local p = io.popen("ls spec/fuzz/corpus 2>/dev/null")
  for name in p:lines() do files[#files + 1] = "spec/fuzz/corpus/" .. name end
  p:close()
  return files
end

local readfile = require("spec.helpers").readfile
local helpers = require "spec.helpers"

-- A transfer by hand: version 1, flags, count, then the value bytes.
local function raw(flags, count, body)
  return string.char(1, flags, count) .. body
end

describe("transfer", function()
  local S

  before_each(function() S = ch.state() end)
  after_each(function() S:close() end)

  describe("of plain values", function()
    it("keeps nil, booleans and the count of values", function()
      assert.equal(0, select("#", S:roundtrip()))
      assert.equal(3, select("#", S:roundtrip(nil, false, nil)))
      local a, b, c = S:roundtrip(true, false, nil)
      assert.is_true(a)
      assert.is_false(b)
      assert.is_nil(c)
    end)

    it("keeps integers and floats with their subtype", function()
      local values = { 0, 1, -1, 127, 128, -129, math.maxinteger,
        math.mininteger, 0.0, -0.0, 1.5, -2.25, 1e308, 5e-324,
        math.huge, -math.huge, 0 / 0, 2 ^ 53, 3.0, math.pi }
      local back = { S:roundtrip(table.unpack(values)) }
      for i, v in ipairs(values) do
        assert.equal(math.type(v), math.type(back[i]))
        assert.is_true(same(v, back[i]), "value " .. i)
      end
      assert.equal(-math.huge, 1 / select(1, S:roundtrip(-0.0)))
    end)

    it("keeps strings of any bytes", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      local big = ("\0\1xyz\255"):rep(200000)
      local a, b, c = S:roundtrip("", all, big)
      assert.equal("", a)
      assert.equal(all, b)
      assert.equal(big, c)
    end)
  end)

  describe("of tables", function()
    it("copies nested tables with every kind of key", function()
      local t = { 1, 2, 3, x = { y = { z = "deep" } }, [2.5] = "f",
        [true] = "t", [-7] = "neg", [100] = "far", n = 3 }
      assert.is_true(same(t, (S:roundtrip(t))))
    end)

    it("keeps holes and mixed arrays", function()
      local r = S:roundtrip({ 1, nil, 3, 4.5, "s", 6.25, 7.5, n = 7 })
      assert.is_true(same({ 1, nil, 3, 4.5, "s", 6.25, 7.5, n = 7 }, r))
      local fl = {}
      for i = 1, 1000 do fl[i] = i / 3 end
      fl[500] = 7
      assert.is_true(same(fl, (S:roundtrip(fl))))
    end)

    -- Arrays: numbers travel as runs of one subtype (FLTS, INTS), and
    -- an array of 16 to 65536 items without other pairs or references
    -- is built in one call on the receiving side (lcodec.c, 'stacked').
    local function seq(n, f)
      local t = {}
      for i = 1, n do t[i] = f(i) end
      return t
    end

    it("keeps the subtype and the bits of every number in a run", function()
      local specials = { 0.0, -0.0, 0 / 0, math.huge, -math.huge, 5e-324,
        2 ^ 53, 3.0, math.maxinteger, math.mininteger, 0, -1, 1, 127, 128 }
      for _, n in ipairs({ 15, 16, 17, 40, 1000 }) do
        local t = seq(n, function(i) return specials[(i - 1) % #specials + 1] end)
        local r = S:roundtrip(t)
        assert.is_true(same(t, r), "length " .. n)
        for i = 1, n do
          assert.equal(math.type(t[i]), math.type(r[i]), "element " .. i)
        end
      end
      local r = S:roundtrip(seq(20, function() return -0.0 end))
      assert.equal(-math.huge, 1 / r[20])
    end)

    it("keeps mixed arrays, holes and a hash part beside the array", function()
      local mixed = seq(100, function(i)
        local k = i % 7
        if k == 0 then return "s" .. i end
        if k == 1 then return i end
        if k == 2 then return { i } end
        if k == 3 then return i % 2 == 0 end
        return i + 0.5
      end)
      assert.is_true(same(mixed, (S:roundtrip(mixed))))
      local holes = seq(100, function(i) return i * 1.5 end)
      holes[1], holes[33], holes[64], holes[100] = nil, nil, nil, nil
      assert.is_true(same(holes, (S:roundtrip(holes))))
      local hashed = seq(100, function(i) return i end)
      hashed.n, hashed[101.5], hashed[1000] = 100, "f", "far"
      hashed["50"] = "a string key, not t[50]"
      local r = S:roundtrip(hashed)
      assert.is_true(same(hashed, r))
      assert.equal(50, r[50])
      assert.equal("a string key, not t[50]", r["50"])
      -- keys 1..40 inserted backwards live in the hash part, not in order
      local back = { x = 1, y = 2 }
      for i = 40, 1, -1 do back[i] = i / 4 end
      assert.is_true(same(back, (S:roundtrip(back))))
      local meta = setmetatable(seq(50, function(i) return i end),
                                { __index = function() return "mt" end })
      r = S:roundtrip(meta)
      assert.equal(50, #r)
      assert.equal(50, r[50])
      assert.equal("mt", r[51])
    end)

    it("keeps huge and nested arrays", function()
      for _, n in ipairs({ 65535, 65536, 65537, 200000 }) do
        local t = seq(n, function(i) return i % 3 == 0 and i or i / 2 end)
        local r = S:roundtrip(t)
        assert.equal(n, #r)
        assert.is_true(same(t, r), "length " .. n)
      end
      local grid = seq(64, function(i)
        return seq(64, function(j) return { i, j + 0.5, tostring(i * j) } end)
      end)
      assert.is_true(same(grid, (S:roundtrip(grid))))
      local deep = seq(20, function(i) return i end)
      for _ = 1, 150 do deep = seq(20, function(i) return i == 7 and deep or i + 0.5 end) end
      assert.is_true(same(deep, (S:roundtrip(deep))))
    end)

    it("keeps references into and out of a long array", function()
      local t = seq(100, function(i) return i end)
      local shared = { "shared" }
      t[50], t[60], t[70] = t, shared, shared
      local r = S:roundtrip(t)
      assert.equal(r, r[50])
      assert.equal(r[60], r[70])
      assert.is_true(same(t, r))
      local outer = { t, t }
      r = S:roundtrip(outer)
      assert.equal(r[1], r[2])
      assert.equal(r[1], r[1][50])
    end)

    it("keeps cycles and shared references as one object", function()
      local t = { name = "t" }
      t.self = t
      local s = { "shared" }
      local u = { a = s, b = s, t = t }
      local r = S:roundtrip(u)
      assert.equal(r.a, r.b)
      assert.equal(r.t, r.t.self)
      assert.is_true(same(u, r))
    end)

    it("makes one transfer of all the values", function()
      local s = {}
      local a, b = S:roundtrip(s, { s })
      assert.equal(a, b[1])
    end)

    it("carries tables used as keys", function()
      local k = { "key" }
      local r = S:roundtrip({ [k] = "v", k = k })
      assert.equal("v", r[r.k])
    end)

    it("copies a table of 10000 string keys", function()
      local t = {}
      for i = 1, 10000 do t["key" .. i] = i end
      assert.is_true(same(t, (S:roundtrip(t))))
    end)

    it("copies metatables by value, shared ones once", function()
      local mt = { __index = { x = 1 } }
      local a, b = S:roundtrip(setmetatable({}, mt), setmetatable({}, mt))
      assert.equal(1, a.x)
      assert.not_equal(mt, getmetatable(a))
      assert.equal(getmetatable(a), getmetatable(b))
      local t = {}
      setmetatable(t, t)
      local r = S:roundtrip(t)
      assert.equal(r, getmetatable(r))
    end)

    it("sends a registry-named metatable by name", function()
      local e = core.TimeoutError("too slow")
      local r = S:roundtrip(e)
      assert.equal(core.TimeoutError, getmetatable(r))
      assert.is_true(core.TimeoutError:is(r))
      assert.equal("too slow", r.message)
      assert.equal(core.TimeoutError, (S:roundtrip(core.TimeoutError)))
      local ok, msg = S:call(function(err)
        local c = require "concurrent.core"
        return c.TimeoutError:is(err), err.message
      end, e)
      assert.is_true(ok)
      assert.equal("too slow", msg)
    end)

    it("refuses a named metatable the other state lacks", function()
      local reg = debug.getregistry()
      local mt = { __name = "spec.OnlyHere" }
      reg["spec.OnlyHere"] = mt
      local ok, err = pcall(S.roundtrip, S, setmetatable({}, mt))
      reg["spec.OnlyHere"] = nil
      assert.is_false(ok)
      assert.matches("no registry table 'spec.OnlyHere' here", err, 1, true)
    end)
  end)

  describe("of functions", function()
    it("copies upvalues by value at every transfer", function()
      local n = 1
      local function get() return n end
      assert.equal(1, S:call(get))
      n = 2
      assert.equal(2, S:call(get))
      local count = 0
      local function inc() count = count + 1; return count end
      assert.equal(1, S:call(inc))
      assert.equal(1, S:call(inc))
      assert.equal(0, count)
    end)

    it("runs a recursive local function", function()
      local function fact(n) return n <= 1 and 1 or n * fact(n - 1) end
      for _ = 1, 3 do  -- loaded, then made again from the cached dump
        assert.equal(3628800, S:call(fact, 10))
      end
    end)

    it("keeps debug info in closures made from a cached dump", function()
      local x = 1
      local function fail() if x then error("fails here") end end
      for _ = 1, 2 do
        local ok, err = pcall(S.call, S, fail)
        assert.is_false(ok)
        assert.matches("03%-codec_spec%.lua:%d+: fails here", err)
      end
    end)

    it("binds _ENV to the receiving state's globals", function()
      S:dostring("MARK = 'there'")
      local function mark() return MARK end  -- luacheck: globals MARK
      assert.equal("there", S:call(mark))
      local function mk()
        local _ENV = { MARK = "custom" }  -- luacheck: ignore 211
        return function() return MARK end  -- luacheck: ignore 113
      end
      assert.equal("there", S:call(mk()))
      local back = S:roundtrip(function() return _ENV end)
      assert.equal(debug.getregistry()[2], back())  -- LUA_RIDX_GLOBALS
    end)

    it("keeps upvalues shared between closures shared", function()
      local n = 0
      local function inc() n = n + 1 end
      local function get() return n end
      for _ = 1, 3 do
        assert.equal(2, S:call(function(i, g) i(); i(); return g() end,
                               inc, get))
      end
      local i2, g2 = S:roundtrip(inc, { get = get })
      i2()
      assert.equal(1, g2.get())
      assert.equal(0, n)
    end)

    it("keeps closures of one prototype apart", function()
      local function mk(x) return function() return x end end
      local a, b = S:call(function(f, g) return f(), g() end, mk(1), mk(2))
      assert.equal(1, a)
      assert.equal(2, b)
    end)

    it("loads a function once per receiving state", function()
      S:dostring("PREV = nil")
      local function probe(g)
        local seen = rawequal(PREV, g)  -- luacheck: globals PREV
        PREV = g  -- luacheck: ignore 111
        return seen
      end
      local function pure() return 1 end
      assert.is_false(S:call(probe, pure))
      assert.is_true(S:call(probe, pure))
      assert.is_true(S:call(function(a, b) return rawequal(a, b) end,
                            pure, pure))
    end)

    it("sends C functions by their name", function()
      assert.equal(4.0, S:call(math.sqrt, 16))
      assert.equal("ababab", S:call(function(f) return f("ab", 3) end,
                                    string.rep))
      assert.is_true(S:call(function(f) return f == io.write end, io.write))
      assert.is_true(S:call(function(f) return f == print end, print))
      assert.is_true(S:call(function(f) return f() > 0 end, core.cpu_count))
      assert.equal(math.sqrt, (S:roundtrip(math.sqrt)))
    end)

    it("requires the module of a C function the receiver lacks", function()
      S:dostring("package.loaded.codechelper = nil")
      assert.equal("function", S:call(function(f) return type(f) end,
                                      ch.encode))
    end)
  end)

  describe("of futures", function()
    it("shares the handle instead of copying", function()
      local f = core.Future()
      assert.equal(f, (S:roundtrip(f)))
      local _, nfut = ch.encode(f, f, { f })
      assert.equal(1, nfut)
      assert.is_false(S:call(function(x) return x:done() end, f))
      f:set_result(42)
      assert.equal(42, S:call(function(x) return x:result() end, f))
    end)
  end)

  describe("of errors", function()
    it("raises the error value copied", function()
      local ok, err = pcall(S.call, S, function() error("boom", 0) end)
      assert.is_false(ok)
      assert.equal("boom", err)
      ok, err = pcall(S.call, S, function() error({ code = 7 }) end)
      assert.is_false(ok)
      assert.same({ code = 7 }, err)
      ok, err = pcall(S.call, S, function()
        error(require("concurrent.core").InvalidStateError("bad"))
      end)
      assert.is_false(ok)
      assert.is_true(core.InvalidStateError:is(err))
    end)
  end)

  -- issue 9, item 6: the reused 'seen' table kept the caller's last
  -- arguments alive until the next transfer
  it("keeps no value alive once a transfer ended, refused or not", function()
    local weak = setmetatable({}, { __mode = "k" })
    do
      local t, u = { 1, { 2 } }, { x = {} }
      weak[t], weak[t[2]], weak[u] = true, true, true
      S:roundtrip(t, u, t)
      local bad = { keep = {}, io.stdout }
      weak[bad], weak[bad.keep] = true, true
      assert.is_false(pcall(S.roundtrip, S, bad))
      local f = core.Future()
      f:set_result(u)
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
  end)

  describe("refusal", function()
    -- the path and the type; the hint that follows is spec/10-names'
    local function refused(pattern, ...)
      local ok, err = pcall(S.roundtrip, S, ...)
      assert.is_false(ok)
      assert.equal("cannot transfer " .. pattern, (err:gsub("%): [^()]*$", ")")))
    end

    it("names the path and the type", function()
      refused("value #1.config.handle (userdata)",
              { config = { handle = io.stdout } })
      refused("value #2.x (userdata)", 1, { x = io.stdout })
      refused("value #1[3] (userdata)", { 1, 2, io.stdout })
      local long = {}
      for i = 1, 99 do long[i] = i % 2 == 0 and i or { i } end
      long[100] = io.stdout
      refused("value #1[100] (userdata)", long)
      long[100], long.key = 100, { [77] = io.stdout }
      refused("value #1.key[77] (userdata)", long)
      refused("value #1[10] (userdata)", { [10] = io.stdout })
      local co = coroutine.create(print)
      refused("value #1[2.5] (thread)", { [2.5] = co })
      refused("value #1[true] (thread)", { [true] = co })
      refused("value #1[userdata] (userdata)", { [io.stdout] = 1 })
      refused("value #1 (thread)", co)
      local function f() return co end
      refused("value #1.list[1](upvalue 'co') (thread)", { list = { f } })
      refused("value #1(metatable).__index (userdata)",
              setmetatable({}, { __index = io.stdout }))
      refused("value #1 (light userdata)",
              debug.getregistry()["concurrent.capi"])
    end)

    it("names an upvalue of a stripped function by its number", function()
      -- its name was Lua's "(no name)": "(upvalue '(no name)')"
      local co = coroutine.create(print)
      local stripped = load(string.dump(function() return 1, co end, true))
      debug.setupvalue(stripped, 1, co)
      refused("value #1(upvalue #1) (thread)", stripped)
    end)

    it("names a string key with NUL bytes whole", function()
      -- the key was cut at its first NUL: ".a" for "a\0b"
      refused("value #1.a\\0b.c\\0 (userdata)", { ["a\0b"] = { ["c\0"] = io.stdout } })
    end)

    it("refuses C functions with upvalues or without a name", function()
      refused("value #1 (C function with upvalues)",
              coroutine.wrap(function() end))
      refused("value #1 (C function not found in package.loaded)",
              getmetatable(io.stdout).__index.write)
    end)

    it("limits the nesting on encode", function()
      assert.is_true(same(nest(200), (S:roundtrip(nest(200)))))
      local ok, err = pcall(S.roundtrip, S, nest(201))
      assert.is_false(ok)
      assert.matches("(nesting deeper than 200)", err, 1, true)
    end)

    it("names functions and upvalues at the deepest level", function()
      local x = { 1 }
      local deep = { math.sqrt, function() return x end,
                     setmetatable({}, { __index = x }) }
      for _ = 1, 196 do deep = { deep } end
      local r = S:roundtrip(deep)
      for _ = 1, 196 do r = r[1] end
      assert.equal(math.sqrt, r[1])
      assert.equal(1, r[2]()[1])
      assert.equal(r[2](), getmetatable(r[3]).__index)
    end)

    it("leaves the codec usable after a refusal", function()
      pcall(S.roundtrip, S, { io.stdout })
      assert.is_true(same({ 1, { 2 } }, (S:roundtrip({ 1, { 2 } }))))
    end)
  end)

  describe("decoding hostile bytes", function()
    local function rejected(why, bytes)
      local ok, err = pcall(ch.decode, bytes)
      assert.is_false(ok)
      assert.matches("cannot decode transfer (" .. why, err, 1, true)
      ok, err = pcall(S.decode, S, bytes)
      assert.is_false(ok)
      assert.matches("cannot decode transfer (" .. why, err, 1, true)
    end

    it("checks the header", function()
      rejected("truncated", "")
      rejected("unknown format version", "\2\0\0")
      rejected("unknown flags", "\1\4\0")
      rejected("trailing bytes", raw(0, 1, "\0\0"))
      rejected("count larger than the input", "\1\0\5\0")
    end)

    it("checks tags, counts and references", function()
      rejected("bad tag", raw(0, 1, "\99"))
      rejected("truncated", raw(0, 1, "\3"))
      rejected("varint overflow", raw(0, 1, "\3" .. ("\255"):rep(11)))
      rejected("count larger than the input",
               raw(0, 1, "\5\255\255\255\255\15abc"))
      rejected("count larger than the input", raw(0, 1, "\6\255\255\3\0"))
      rejected("bad reference", raw(0, 1, "\8\1"))
      rejected("bad reference", raw(1, 1, "\8\1"))
      rejected("bad reference", raw(1, 1, "\6\0\1\5\1k\8\2"))
      rejected("future handle in raw bytes", raw(0, 1, "\12\0"))
      rejected("nil key", raw(0, 1, "\6\0\1\0\0"))
      rejected("NaN key", raw(0, 1, "\6\0\1\4" ..
                                  string.pack("<d", 0 / 0) .. "\0"))
      rejected("metatable is not a table", raw(0, 1, "\7\0\0\2"))
      rejected("bad number run", raw(0, 1, "\6\1\0\13\2" ..
                                         ("\0"):rep(16)))
      rejected("bad number run", raw(0, 1, "\6\1\0\14\2\0\0"))
      rejected("bad number run", raw(0, 1, "\6\1\0\14\0\0"))
      -- an array long enough to be built on the stack
      rejected("bad number run", raw(0, 1, "\6\20\0\14\21" .. ("\0"):rep(21)))
      rejected("count larger than the input",
               raw(0, 1, "\6\20\0\14\20" .. ("\0"):rep(19)))
      rejected("count larger than the input",
               raw(0, 1, "\6\20\0\13\20" .. ("\0"):rep(159)))
      rejected("truncated", raw(0, 1, "\6\20\0\14\19" .. ("\0"):rep(19)))
      local pad = ("\0"):rep(19)  -- 20 items need 20 bytes at least
      rejected("varint overflow", raw(0, 1, "\6\20\0\14\1" ..
                                          ("\255"):rep(9) .. "\2" .. pad))
      rejected("varint overflow", raw(0, 1, "\6\20\0\14\1" ..
                                          ("\255"):rep(9) .. "\129" .. pad))
      rejected("truncated", raw(0, 1, "\3" .. ("\255"):rep(9) .. "\129"))
      assert.equal(math.mininteger,
                   ch.decode(raw(0, 1, "\3" .. ("\255"):rep(9) .. "\1")))
      rejected("bad tag", raw(0, 1, "\14\1\0"))
      rejected("bad tag", raw(0, 1, "\13\1" .. ("\0"):rep(8)))
      rejected("no registry table 'no.such' here", raw(0, 1, "\9\7no.such"))
      rejected("C function 'nosuch.mod.x'", raw(0, 1, "\11\10nosuch.mod\1x"))
      local function fnv1a(b)  -- the hash that guards a dump
        local h = 2166136261
        for i = 1, #b do h = ((h ~ b:byte(i)) * 16777619) & 0xffffffff end
        return string.pack("<I4", h)
      end
      rejected("bad bytecode", raw(0, 1, "\10\4junk" .. fnv1a("junk") .. "\0"))
      rejected("bad bytecode: hash mismatch",
               raw(0, 1, "\10\4junk" .. fnv1a("junK") .. "\0"))
    end)

    it("limits the nesting on decode", function()
      rejected("nesting deeper than 200",
               raw(0, 1, ("\6\1\0"):rep(201) .. "\0"))
      -- flag 2: a chunk of map's calls, two levels of wrapping more
      local t = ch.decode(raw(2, 1, ("\6\1\0"):rep(202) .. "\0"))
      for _ = 1, 201 do t = t[1] end
      assert.same({}, t)
      rejected("nesting deeper than 200",
               raw(2, 1, ("\6\1\0"):rep(203) .. "\0"))
    end)

    it("checks upvalue descriptors", function()
      local x = 1
      local bytes = ch.encode(function() return x end)
      -- the last bytes are: nups = 1, UV_VAL, INT 1
      local head = bytes:sub(1, -5)
      assert.equal("\1\0\3\2", bytes:sub(-4))
      rejected("wrong upvalue count", head .. "\2\0\3\2")
      rejected("bad upvalue tag", head .. "\1\9")
      rejected("bad reference", head .. "\1\2\9\1")
      ch.decode(bytes)  -- the unmodified bytes decode
    end)

    it("fails cleanly on every truncation and corruption", function()
      local x = { 1 }
      local t = { 1, 2.5, "s", { x = x, y = x }, [true] = false,
        f = function() return x end, m = math.max,
        e = core.TimeoutError("e") }
      t.self = t
      local bytes = ch.encode(t, -1, 1e300)
      for n = 0, #bytes - 1 do
        local ok, err = pcall(ch.decode, bytes:sub(1, n))
        assert.is_false(ok)
        assert.matches("^cannot decode transfer %(", err)
      end
      for i = 1, #bytes do
        for _, flip in ipairs({ 0x01, 0x80, 0xff }) do
          local c = string.char(bytes:byte(i) ~ flip)
          local ok, err = pcall(ch.decode,
                                bytes:sub(1, i - 1) .. c .. bytes:sub(i + 1))
          if not ok then
            assert.matches("^cannot decode transfer %(", err)
          end
        end
      end
    end)

    it("replays the fuzz corpus", function()
      local files = corpusfiles()
      assert.is_true(#files > 0)
      for _, name in ipairs(files) do
        local bytes = readfile(name)
        local ok, err = pcall(S.decode, S, bytes)
        if not ok then
          assert.matches("cannot decode transfer %(", err)
        end
      end
    end)
  end)

  describe("property", function()
    -- Random nested values from a seeded generator: shared references,
    -- cycles and metatables included.
    local function generator(seed)
      local rnd = math.random
      math.randomseed(seed)
      local pool = {}
      local bytes = {}  -- random strings are slices of one random blob
      for i = 1, 4096 do bytes[i] = string.char(rnd(0, 255)) end
      local blob = table.concat(bytes)
      local specials = { 0, -1, math.maxinteger, math.mininteger, -0.0,
        math.huge, -math.huge, 0 / 0, 0.1, 2 ^ 63 }
      local value
      local function scalar()
        local k = rnd(6)
        if k == 1 then return rnd(2) == 1 end
        if k == 2 then return rnd(-1000, 1000) end
        if k == 3 then return specials[rnd(#specials)] end
        if k == 4 then return (rnd() - 0.5) * 10 ^ rnd(-300, 300) end
        local n = rnd(0, rnd(2) == 1 and 8 or 300)
        local at = rnd(1, #blob - n)
        return blob:sub(at, at + n - 1)
      end
      local function key()
        local v
        repeat v = scalar() until v == v
        return v
      end
      function value(depth)
        if depth <= 0 or rnd(3) == 1 then return scalar() end
        if #pool > 0 and rnd(8) == 1 then return pool[rnd(#pool)] end
        local t = {}
        pool[#pool + 1] = t
        for i = 1, rnd(0, 6) do t[i] = value(depth - 1) end
        if rnd(5) == 1 then
          for i = 1, 40 do t[#t + 1] = rnd() * i end
        end
        for _ = 1, rnd(0, 5) do t[key()] = value(depth - 1) end
        if rnd(10) == 1 then setmetatable(t, { tag = scalar() }) end
        if rnd(12) == 1 then setmetatable(t, pool[rnd(#pool)]) end
        return t
      end
      -- Each case draws two values that may share tables; the pool starts
      -- empty for every case, so values stay small and cases independent.
      -- Depth 3 keeps a value to some hundred nodes (depth 5 made tens
      -- of thousands, minutes per run) while nesting still goes deeper
      -- through the shared references and metatables from the pool.
      return function()
        pool = {}
        return value(3), value(3)
      end
    end

    it("round-trips thousands of random values deep-equal", function()
      local gen = generator(20261128)
      for case = 1, 3000 do
        local v, w = gen()
        local a, b = S:roundtrip(v, w)
        assert(same(v, a) and same(w, b), "case " .. case)
      end
    end)
  end)
end)

describe("encoding in a finalizer at lua_close", function()
  it("leaks nothing, and refuses a function first sent then", function()
    -- Lua never finalizes what is made while it closes: the state's
    -- encode buffer made then (or used again after its own finalizer
    -- ran) kept what the encode grew, and a function's dump cached then
    -- was never released (leaks that LeakSanitizer saw, make asan)
    local out, ok = helpers.run_lua([[
      local cf = require "concurrent.futures"
      local q = cf.Queue()
      local function fn() return 1 end
      local function try(what, f, ...)
        local ok, err = pcall(f, ...)
        io.write(what, " ", tostring(ok), " ", tostring(err), "; ")
      end
      keep = setmetatable({}, { __gc = function()
        local big = {}
        for i = 1, 1000 do big[i] = { i, tostring(i) } end
        try("big", q.put, q, big)  -- the state's first encode
        try("refused", q.put, q, { a = { 1, io.stdout } })
        try("fn", q.put, q, { 1, fn })
      end })
    ]])
    assert.is_true(ok, out)
    assert.equal("big true nil; refused false cannot transfer argument "
      .. "#1.a[2] (userdata): create it inside the task or pass what it is "
      .. "made from; fn false cannot transfer argument #1[2] (the Lua state "
      .. "is closing); ", out)
  end)
end)
