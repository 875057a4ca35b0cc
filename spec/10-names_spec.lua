-- What package.loaded holds crosses by name (API.md, "Transfer"): module
-- tables become the receiver's own require(name), C functions its own
-- module's field; of several names the standard library's wins, then the
-- shortest. A refusal says what to do instead.

local cf = require "concurrent.futures"
local ch = require "codechelper"
local helpers = require "spec.helpers"

-- Fixture modules: spec/support/modules/*.lua.
local MODULES = "spec/support/modules/?.lua;"
local FIXTURES = { "point", "counted", "broken", "m", "zzzz_alias",
  "longname", "ab", "ba", "aa", "x_longer", "mod_a", "mod_b" }

-- The bytes of one transfer of a single value: version 1, no flags, one
-- value, then 'body'.
local function one(body) return "\1\0\1" .. body end
local T_CFUNC, T_MODULE = "\11", "\15"
local function str(s) return string.char(#s) .. s end

describe("names", function()
  local saved_path

  before_each(function()
    saved_path = package.path
    package.path = MODULES .. package.path
  end)

  after_each(function()
    package.path = saved_path
    for _, m in ipairs(FIXTURES) do package.loaded[m] = nil end
    for i = 1, 40 do package.loaded["alias" .. i] = nil end
    spec_global_encode = nil  -- luacheck: ignore 111
  end)

  describe("of module tables", function()
    it("let a task use a module captured as an upvalue", function()
      local json = require "dkjson"
      local ex <close> = cf.ThreadPoolExecutor(1)
      local f = ex:submit(function(t) return json.encode(t) end, { 1, 2, 3 })
      assert.equal("[1,2,3]", f:result(10))
      assert.is_true(ex:submit(function() return cf.cpu_count() >= 1 end):result(10))
    end)

    it("keep a class module's identity on the way back", function()
      local Point = require "point"
      local ex <close> = cf.ThreadPoolExecutor(1)
      local back = ex:submit(function(p)
        assert(getmetatable(p) == Point and Point == require "point")
        return Point.new(p.x * 2, p.y * 2)
      end, Point.new(1, 2)):result(10)
      assert.equal(Point, getmetatable(back))
      assert.equal(20, back:norm2())
    end)

    it("send standard library tables by name", function()
      local m, s = math, string
      local ex <close> = cf.ThreadPoolExecutor(1)
      assert.is_true(ex:submit(function()
        return m == math and s == string
      end):result(10))
      assert.equal(math, ex:submit(function() return math end):result(10))
      assert.equal(one(T_MODULE .. str("math")), (ch.encode(math)))
    end)

    it("give the receiver its own module, loaded once, not a copy", function()
      local counted = require "counted"
      counted.extra = "caller only"
      local S = ch.state()
      local probe = function(c)
        return c.loads, c.extra, c == package.loaded.counted
      end
      assert.same({ 1, nil, true }, { S:call(probe, counted) })
      assert.same({ 1, nil, true }, { S:call(probe, counted) })
      S:close()
    end)

    it("prefer the standard library's name, then the shortest", function()
      package.loaded.m = math
      package.loaded.zzzz_alias = math
      assert.equal(one(T_MODULE .. str("math")), (ch.encode(math)))
      local t = {}
      package.loaded.longname = t
      package.loaded.ba = t
      package.loaded.ab = t
      assert.equal(one(T_MODULE .. str("ab")), (ch.encode(t)))
      package.loaded.ab = nil
      assert.equal(one(T_MODULE .. str("ba")), (ch.encode(t)))
      package.loaded.ba, package.loaded.longname = nil, nil
      assert.equal(one("\6\0\0"), (ch.encode(t)))  -- a plain table again
    end)

    it("report a module the receiver cannot load", function()
      local broken = require "broken"
      local S = ch.state()
      S:dostring("FAIL_BROKEN = true")
      local ok, err = pcall(S.roundtrip, S, { x = broken })
      assert.is_false(ok)
      assert.matches("cannot decode transfer (cannot require 'broken': ", err, 1, true)
      assert.matches("broken on purpose", err, 1, true)
      ok, err = pcall(S.decode, S, one(T_MODULE .. str("no.such")))
      assert.is_false(ok)
      assert.matches("cannot require 'no.such': module 'no.such' not found at byte", err,
                     1, true)
      S:close()
    end)
  end)

  describe("follow package.loaded from one transfer to the next", function()
    -- Each transfer checks the names against package.loaded: where this
    -- Lua's tables can be read (ch.hashview), a compare of its nodes
    -- with a snapshot, and a walk when they differ. Each case below
    -- makes its change between two transfers that find the names made.
    local PLAIN = one("\6\0\0")  -- an empty table, by value
    local function named(name) return one(T_MODULE .. str(name)) end
    local function enc(v) return (ch.encode(v)) end

    it("through the layout view in this build", function()
      assert.is_true(ch.hashview())
    end)

    it("see modules added, as many as make package.loaded grow", function()
      enc({})
      local ts = {}
      for i = 1, 40 do
        ts[i] = {}
        package.loaded["alias" .. i] = ts[i]
        assert.equal(named("alias" .. i), enc(ts[i]))
      end
      for i = 1, 40 do assert.equal(named("alias" .. i), enc(ts[i])) end
    end)

    it("see a table become a module after it crossed by value", function()
      local t = {}
      assert.equal(PLAIN, enc(t))
      package.loaded.mod_a = t
      assert.equal(named("mod_a"), enc(t))
    end)

    it("see a module replaced under its name", function()
      local t1, t2 = {}, {}
      package.loaded.mod_a = t1
      assert.equal(named("mod_a"), enc(t1))
      package.loaded.mod_a = t2
      assert.equal(named("mod_a"), enc(t2))
      assert.equal(PLAIN, enc(t1))
    end)

    it("see a module removed", function()
      local t = {}
      package.loaded.mod_a = t
      assert.equal(named("mod_a"), enc(t))
      package.loaded.mod_a = nil
      assert.equal(PLAIN, enc(t))
    end)

    it("see a module set and removed by rawset", function()
      local t = {}
      enc({})
      rawset(package.loaded, "mod_a", t)
      assert.equal(named("mod_a"), enc(t))
      rawset(package.loaded, "mod_a", nil)
      assert.equal(PLAIN, enc(t))
    end)

    it("see one module added and another removed (the same count)", function()
      local t1, t2 = {}, {}
      package.loaded.mod_a = t1
      assert.equal(named("mod_a"), enc(t1))
      package.loaded.mod_a = nil
      package.loaded.mod_b = t2
      assert.equal(named("mod_b"), enc(t2))
      assert.equal(PLAIN, enc(t1))
    end)

    it("survive running out of memory while they are made", function()
      -- a worker near its max_memory returns a table: the encode makes
      -- the state's names (a layout check, a snapshot, a table of every
      -- module's C functions), and an allocation among them fails. The
      -- next task of that worker must find no half-made names (it
      -- crashed reading them); each slack below fails another one.
      local out, ok = helpers.run_lua([[
        local cf = require "concurrent.futures"
        local CAP = 1024 * 1024
        for slack = 0, 49152, 128 do
          local ex = cf.ThreadPoolExecutor { max_workers = 1, max_memory = CAP }
          local f = ex:submit(function(k)
            local function used()
              collectgarbage()
              return math.floor(collectgarbage("count") * 1024)
            end
            local pad, unit = {}, string.rep("x", 1000)
            while used() < CAP - k - 4000 do
              for _ = 1, (CAP - k - used()) // 1100 do pad[#pad + 1] = unit .. #pad end
            end
            KEEP = { pad, string.rep("y", math.max(0, CAP - k - used() - 60)) }
            return { 1 }
          end, slack)
          pcall(f.result, f)
          local g = ex:submit(function() KEEP = nil return { 1, 2 } end)
          local got, err = pcall(g.result, g)
          -- a worker too full to encode even its error sends no outcome
          assert(got or tostring(err):find("not enough memory")
                 or tostring(err):find("could not be transferred"), err)
          ex:shutdown(true)
        end
        print("done")
      ]])
      assert.is_true(ok, out)
      assert.matches("done", out)
    end)

    it("see package.loaded itself replaced in the registry", function()
      local registry = debug.getregistry()
      local old, new, t = registry._LOADED, {}, {}
      for k, v in pairs(old) do new[k] = v end
      new.mod_a = t
      assert.equal(PLAIN, enc(t))
      registry._LOADED = new
      local ok, a, b = pcall(function() return enc(t), enc(math) end)
      registry._LOADED = old
      assert.is_true(ok, a)
      assert.equal(named("mod_a"), a)
      assert.equal(named("math"), b)
      assert.equal(PLAIN, enc(t))
    end)
  end)

  describe("of C functions", function()
    it("find math.sqrt when other loaded tables hold it too", function()
      for i = 1, 20 do package.loaded["alias" .. i] = { sqrt = math.sqrt } end
      local ex <close> = cf.ThreadPoolExecutor(1)
      assert.equal(2.0, ex:submit(math.sqrt, 4):result(10))
      assert.equal(one(T_CFUNC .. str("math") .. str("sqrt")), (ch.encode(math.sqrt)))
    end)

    it("name a base function by _G even when a module holds it", function()
      package.loaded.aa = { print = print }
      assert.equal(one(T_CFUNC .. str("_G") .. str("print")), (ch.encode(print)))
    end)

    it("prefer the shortest name outside the standard library", function()
      package.loaded.x_longer = { encode = ch.encode }
      assert.equal(one(T_CFUNC .. str("x_longer") .. str("encode")),
                   (ch.encode(ch.encode)))
    end)

    it("name a user's global by its module, which the receiver can load", function()
      spec_global_encode = ch.encode  -- luacheck: ignore 111
      assert.equal(one(T_CFUNC .. str("codechelper") .. str("encode")),
                   (ch.encode(ch.encode)))
    end)
  end)

  describe("refusals", function()
    local function refused(msg, ...)
      local ex <close> = cf.ThreadPoolExecutor(1)
      local ok, err = pcall(ex.submit, ex, ...)
      assert.is_false(ok)
      assert.equal(msg, err)
    end

    it("say what to do instead, one hint per kind", function()
      local h = io.stdout
      refused("cannot transfer argument #1(upvalue 'h') (userdata): " ..
              "create it inside the task or pass what it is made from",
              function() return h end)
      local co = coroutine.create(print)
      refused("cannot transfer argument #2.co (thread): " ..
              "create the coroutine inside the task", print, { co = co })
      refused("cannot transfer argument #2 (C function with upvalues): " ..
              "call it inside the task, through its module",
              print, coroutine.wrap(print))
      refused("cannot transfer argument #1 (C function not found in " ..
              "package.loaded): require its module or call it inside the task",
              getmetatable(io.stdout).__index.write)
    end)
  end)
end)
