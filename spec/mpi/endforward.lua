-- Run by 'make test-mpi' under mpiexec, ten times: a future that a rank
-- knows (a task was given it) is set, with a done future in its value,
-- just before the script ends. Rank 0 forwards its news while it stops:
-- the done future's forwarding entry, whose watch fired at once, was
-- then unwatched through null links, a segfault at the job's end. With
-- an argument the script leaves by os.exit (the exit handler stops MPI).
local mpi = require "concurrent.futures.mpi"
local cf = require "concurrent.futures"
local ex = mpi.MPIPoolExecutor(2)
local outer, inner = cf.Future(), cf.Future()
ex:submit(function(o) _G.kept = o end, outer):result(30)
ex:shutdown()
inner:set_result(1)
outer:set_result({ inner })
io.write("endforward: set\n")
io.stdout:flush()
if arg[1] == "exit" then os.exit(0) end
