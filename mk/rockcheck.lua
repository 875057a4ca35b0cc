-- Check that the rockspec builds what the Makefile builds.
-- Usage: lua5.4 mk/rockcheck.lua ROCKSPEC C-SOURCE... -- LUA-SOURCE...
-- The C sources must be exactly those of modules["concurrent.core"]; each
-- lua/<path>.lua must be installed as the module named by <path>.

local rockspec = assert(arg[1], "usage: rockcheck.lua ROCKSPEC C... -- LUA...")
local c_files, lua_files = {}, {}
local list = c_files
for i = 2, #arg do
  if arg[i] == "--" then list = lua_files else list[#list + 1] = arg[i] end
end

-- A rockspec is Lua that assigns globals: run it in an empty environment.
local spec = {}
local chunk = assert(loadfile(rockspec, "t", spec))
chunk()

local problems = {}
local function problem(fmt, ...)
  problems[#problems + 1] = rockspec .. ": " .. fmt:format(...)
end

local modules = spec.build and spec.build.modules or {}
local core = modules["concurrent.core"]
local listed = {}
for _, src in ipairs(type(core) == "table" and core.sources or {}) do
  listed[src] = true
end
for _, src in ipairs(c_files) do
  if not listed[src] then
    problem("concurrent.core lacks '%s', which the Makefile builds", src)
  end
  listed[src] = nil
end
for src in pairs(listed) do
  problem("concurrent.core lists '%s', which the Makefile does not build", src)
end

local lua_modules = {}
for name, value in pairs(modules) do
  if type(value) == "string" and value:match("%.lua$") then
    lua_modules[value] = name
  end
end
for _, file in ipairs(lua_files) do
  local want = file:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/", ".")
  if lua_modules[file] ~= want then
    problem("module '%s' should be \"%s\"", want, file)
  end
  lua_modules[file] = nil
end
for file, name in pairs(lua_modules) do
  problem("module '%s' is '%s', which the Makefile does not install",
          name, file)
end

if #problems > 0 then
  table.sort(problems)
  io.stderr:write(table.concat(problems, "\n"), "\n")
  os.exit(1)
end
print(rockspec .. ": sources match the Makefile")
