-- Run by 'make test-mpi' under mpiexec: a worker rank's state, closed
-- after its task (max_tasks_per_child), runs a finalizer that waits on
-- one of rank 0's queues (told to wait: it is empty), then on one of its
-- futures, which rank 0 never sets before its script ends. Once rank 0
-- has ended no value and no news can come, so each wait must fail and
-- the job end; a rank held in such a wait forever holds the whole job
-- (the Makefile's timeout fails it).
local mpi = require "concurrent.futures.mpi"
local cf = require "concurrent.futures"
local never, empty, started = cf.Future(), cf.Queue(), cf.Queue()
local ex = mpi.MPIPoolExecutor { max_workers = 1, max_tasks_per_child = 1 }
ex:submit(function(f, q, s)
  _G.guard = setmetatable({}, { __gc = function()
    s:put(true)
    local okq, eq = pcall(q.get, q)
    local okf, ef = pcall(f.result, f)
    io.write("endwait: queue ", tostring(okq), " (", tostring(eq), "), future ",
             tostring(okf), " (", tostring(ef), ")\n")
    io.stdout:flush()
  end })
end, never, empty, started):result(30)
started:get(30)
-- the finalizer's get reaches rank 0, which tells it to wait
pcall(cf.Future().result, cf.Future(), 0.3)
