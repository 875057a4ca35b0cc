-- submit_result.lua: Python's
--   with ThreadPoolExecutor(max_workers=1) as executor:
--       future = executor.submit(pow, 323, 1235)
--       print(future.result())
-- Lua integers wrap, so the power is computed modulo a prime instead.
local cf = require "concurrent.futures"

local function powmod(base, exp, mod)
  local r = 1
  base = base % mod
  while exp > 0 do
    if exp % 2 == 1 then r = r * base % mod end
    base = base * base % mod
    exp = exp // 2
  end
  return r
end

do
  local executor <close> = cf.ThreadPoolExecutor(1)
  local future = executor:submit(powmod, 323, 1235, 1000000007)
  print(future:result())
end
