-- Writes the seed inputs of the decoder fuzzer into spec/fuzz/corpus/
-- (run from the top directory with the module paths set, as 'make fuzz'
-- does). Crash inputs the fuzzer finds are added there by hand, so the
-- specs replay them.
local ch = require "codechelper"
local core = require "concurrent.core"

local x = { 1 }
local t = { 1, 2.5, "s", { x = x, y = x }, [true] = false, [-3] = 0.5 }
t.self = t
local fl = {}
for i = 1, 20 do fl[i] = i / 7 end
-- long enough to be built on the stack by the decoder (lcodec.c)
local mixed = {}
for i = 1, 40 do
  mixed[i] = i % 5 == 0 and { i, "s" } or i % 3 == 0 and i or i + 0.25
end
local seeds = {
  scalars = { nil, true, false, 0, -1, math.mininteger, -0.0, 0 / 0, "str" },
  table = { t },
  floats = { fl, { 1, 2.5, 3.5, "x", 4.5 } },
  array = { mixed },
  meta = { setmetatable({ a = 1 }, { __index = x }) },
  named = { core.TimeoutError("late") },
  cfunc = { math.sqrt, string.rep, print },
  lfunc = { function(a) return a + x[1] end },
  module = { math, { s = string, t = table } },
}
for name, values in pairs(seeds) do
  local bytes = ch.encode(table.unpack(values, 1, 9))
  local f = assert(io.open("spec/fuzz/corpus/seed-" .. name, "wb"))
  f:write(bytes)
  f:close()
end
