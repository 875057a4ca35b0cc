-- `make bench`, codec section: encode + decode in one state, through
-- spec/support/codechelper.c (ch.bench: the C loop encodes the values,
-- decodes them back and drops them). Throughput is encoded bytes per
-- second of encode + decode; the best of REPS runs is kept.

local ch = require "codechelper"

local REPS = tonumber(os.getenv("BENCH_REPS")) or 5

local function best(n, ...)
  local secs, size = math.huge, 0
  for _ = 1, REPS do
    local s, z = ch.bench(n, ...)
    if s < secs then secs, size = s, z end
  end
  return secs, size
end

local function throughput(name, n, ...)
  local secs, size = best(n, ...)
  print(("%-34s %9.1f MB/s  %9.0f ns/transfer  (%d bytes)"):format(
    name, size * n / secs / 1e6, secs / n * 1e9, size))
end

local function latency(name, n, ...)
  local secs, size = best(n, ...)
  print(("%-34s %9.0f ns/transfer  (%d bytes)"):format(
    name, secs / n * 1e9, size))
end

-- Each case makes its data, runs, and drops it: the heap a decode
-- grows (and the collector walks) is that case's own.
local function case(f)
  collectgarbage()
  f()
end

-- With glibc's defaults every freed MiB goes back to the kernel, so each
-- transfer pays page faults for its fresh buffers; the same case is also
-- run in a child whose allocator keeps its memory (GLIBC_TUNABLES), which
-- shows the codec itself: two copies (into the payload, into the string).
local TUNED = "glibc.malloc.trim_threshold=268435456:" ..
              "glibc.malloc.mmap_threshold=33554432"
local function strings(name)
  local mib = ("\0\1codec"):rep((1 << 20) // 7 + 1):sub(1, 1 << 20)
  throughput(name, 2000, mib)
end
if os.getenv("CODEC_BENCH_STRING") then
  strings("    1 MiB string, allocator tuned")
  return
end
case(function()
  local floats = {}
  for i = 1, 1000 do floats[i] = i / 3 end
  throughput("(a) array of 1,000 floats", 20000, floats)
end)
case(function()
  local ints = {}
  for i = 1, 1000 do ints[i] = i * 1000 end
  throughput("    array of 1,000 integers", 20000, ints)
end)
case(function()
  strings("(b) 1 MiB string")
  local p = io.popen("GLIBC_TUNABLES=" .. TUNED .. " CODEC_BENCH_STRING=1 " ..
                     "lua5.4 spec/bench/codec.lua")
  io.write(p:read("a"))
  p:close()
  local copy = math.huge
  for _ = 1, REPS do copy = math.min(copy, ch.memcpy(1 << 20, 2000)) end
  print(("%-34s %9.1f MB/s"):format("    memcpy of 1 MiB (reference)",
                                    (1 << 20) * 2000 / copy / 1e6))
end)
case(function()
  local keys = {}
  for i = 1, 10000 do keys["key" .. i] = i end
  throughput("(c) table of 10,000 string keys", 300, keys)
end)
case(function()
  local records = {}
  for i = 1, 1000 do records[i] = { id = i, name = "n" .. i, score = i / 7 } end
  throughput("    1,000 records {id, name, score}", 300, records)
end)
case(function()
  local function pure(a, b) return a + b end
  local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
  latency("(d) cached function re-sent", 200000, pure)
  latency("    function with an upvalue", 50000, fib)
  latency("    C function by name (math.sqrt)", 200000, math.sqrt)
  latency("    one integer (baseline)", 200000, 1)
end)
