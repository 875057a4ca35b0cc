-- Shared spec helpers (loaded by busted through .busted's 'helper').

local helpers = {}

-- Run a Lua chunk in a fresh lua5.4 process with this suite's module
-- paths; returns its combined stdout+stderr and whether it exited 0.
-- 'env' is an optional prefix of variable settings for the command.
function helpers.run_lua(code, env)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(("package.path = %q\npackage.cpath = %q\n"):format(package.path, package.cpath))
  f:write(code)
  f:close()
  local lua = os.getenv("SPEC_LUA") or "lua5.4"
  local p = assert(io.popen((env or "") .. " " .. lua .. " " .. script .. " 2>&1", "r"))
  local out = p:read("a")
  local ok = p:close()
  os.remove(script)
  return out, ok
end

-- The whole contents of a file (binary).
function helpers.readfile(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Call 'refused' on values that a type check of a userdata whose
-- metatable is 'mt' must refuse: another library's userdata of every
-- size up to 'maxsize' bytes, with 'mt' set by the debug library or
-- none; a light userdata given 'mt'; tables and strings of every length
-- up to 'maxsize' (a check by size must not read them as userdata).
function helpers.each_lookalike(mt, maxsize, refused)
  local th = require "testhelper"
  for size = 0, maxsize do
    local u = th.userdata(size, 0xa5)
    refused(u)
    debug.setmetatable(u, mt)
    refused(u)
  end
  -- light userdata share one metatable: restored however 'refused' ends
  local lu = th.lightuserdata(1)
  local old = debug.getmetatable(lu)
  debug.setmetatable(lu, mt)
  local ok, err = pcall(refused, lu)
  debug.setmetatable(lu, old)
  assert(ok, err)
  local t = {}
  for n = 1, maxsize do
    t[n] = n
    refused(t)
    refused(string.rep("x", n))
  end
end

return helpers
