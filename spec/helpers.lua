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

return helpers
