-- mpi_primes.lua: count the primes up to 2,000,000, in chunks of 100,000
-- numbers per task, across the worker ranks of an MPI job:
--   mpiexec -n 3 lua5.4 -l concurrent.futures.mpi examples/mpi_primes.lua
-- Rank 0 runs this script; ranks 1 and 2 serve the tasks. Without the
-- launch line it runs the same tasks on a process pool, or on a thread
-- pool given the argument "thread": the answer is the same.
local cf = require "concurrent.futures"

local mpi = package.loaded["concurrent.futures.mpi"]
local kind = ... or (mpi and mpi.size() > 1 and "mpi" or "process")

-- Primes in [lo, hi], and the largest, by trial division by odd numbers.
local function primes(lo, hi)
  local count, largest = 0, nil
  for n = lo, hi do
    local prime = n == 2 or (n > 2 and n % 2 == 1)
    local d = 3
    while prime and d * d <= n do
      if n % d == 0 then prime = false end
      d = d + 2
    end
    if prime then count, largest = count + 1, n end
  end
  return count, largest
end

local N, STEP = 2000000, 100000
local ex <close> = kind == "mpi" and mpi.MPIPoolExecutor()
                   or kind == "thread" and cf.ThreadPoolExecutor(2)
                   or cf.ProcessPoolExecutor(2)

local fs = {}
for lo = 1, N, STEP do
  fs[#fs + 1] = ex:submit(primes, lo, math.min(lo + STEP - 1, N))
end
local total, largest = 0, 0
for f in cf.as_completed(fs) do
  local count, top = f:result()
  total, largest = total + count, math.max(largest, top or 0)
end
print(("%d primes up to %d, the largest %d"):format(total, N, largest))
print(("%d tasks on %s workers: %d completed"):format(#fs, kind,
  ex:stats().completed))
