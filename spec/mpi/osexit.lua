-- Run by 'make test-mpi' under mpiexec: os.exit while a task still runs
-- and the pool was never shut down. The module's exit handler waits for
-- the task, tells the worker ranks to exit and finalizes MPI, so the job
-- ends with status 0 (a hang fails through the Makefile's timeout).
local mpi = require "concurrent.futures.mpi"
local ex = mpi.MPIPoolExecutor()
ex:submit(function()
  local t = os.clock() + 0.2
  while os.clock() < t do end
  io.write("os.exit: the running task finished\n")
end)
assert(ex:submit(function() return 1 end):result(30) == 1)
os.exit(0)
