-- Check that the API reference (doc/reference/, from 'ldoc .')
-- documents every function the module exports: each function of
-- concurrent.futures, each method of an executor and of a future, and the
-- error classes. Run by 'make doc' with the module paths set.
local cf = require "concurrent.futures"

-- With more than one module, index.html lists them and each has a page.
local dir = arg[1] or "doc/reference"
local pages = { dir .. "/index.html" }
local ls = io.popen("ls " .. dir .. "/modules 2>/dev/null")
for name in ls:lines() do pages[#pages + 1] = dir .. "/modules/" .. name end
ls:close()
local parts = {}
for _, page in ipairs(pages) do
  local f = assert(io.open(page))
  parts[#parts + 1] = f:read("a")
  f:close()
end
local html = table.concat(parts)
local documented = {}
for name in html:gmatch('name = "([^"]+)"') do documented[name] = true end

local want = {}
for name, v in pairs(cf) do
  if type(v) == "function" then want[#want + 1] = name end
  if type(v) == "table" and v.is then want[#want + 1] = "ErrorClass" end
end
local ex <close> = cf.ThreadPoolExecutor(1)
for name in pairs(getmetatable(ex).__index) do want[#want + 1] = "Executor:" .. name end
for name in pairs(getmetatable(cf.Future()).__index) do want[#want + 1] = "Future:" .. name end

local missing, seen = {}, {}
for _, name in ipairs(want) do
  if not documented[name] and not seen[name] then missing[#missing + 1] = name end
  seen[name] = true
end
table.sort(missing)
if #missing > 0 then
  io.stderr:write("doc/reference: not documented: ", table.concat(missing, ", "), "\n")
  os.exit(1)
end
print(("doc/reference: all %d exported functions documented"):format(#want))
