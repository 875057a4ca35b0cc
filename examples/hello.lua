-- hello.lua: `make demo`. Four workers, each with its own Lua state,
-- compute in parallel; results arrive as they complete.
local cf = require "concurrent.futures"

local function fib(n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end

local ex <close> = cf.ThreadPoolExecutor(4)

local fs = {}
for i, n in ipairs { 24, 20, 26, 22 } do
  fs[i] = ex:submit(function(k) return k, fib(k) end, n)
end

for f in cf.as_completed(fs, 60) do
  local n, value = f:result()
  print(("fib(%d) = %d"):format(n, value))
end

print("in order:")
for i, n, value in ex:map(function(k) return k, fib(k) end, { 10, 15, 20 }) do
  print(i, ("fib(%d) = %d"):format(n, value))
end
