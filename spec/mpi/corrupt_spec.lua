-- Run by 'make test-mpi' under mpiexec -n 2 with the test-only switch
-- CONCURRENT_MPI_TEST_CORRUPT=1: worker rank 1 cuts every result short.
-- Rank 0 must break the pool with a clear error, and the job must still
-- end cleanly (rank 1 exits when told).

local mpi = require "concurrent.futures.mpi"
local cf = require "concurrent.futures"

describe("concurrent.futures.mpi with a rank that sends corrupt frames", function()
  it("breaks the pool with BrokenMPIPool naming the rank", function()
    local ex <close> = mpi.MPIPoolExecutor()
    local fs = {}
    for i = 1, 5 do fs[i] = ex:submit(function(x) return x end, i) end
    for i = 1, 5 do
      local e = fs[i]:exception(30)
      assert.is_true(mpi.BrokenMPIPool:is(e), tostring(e))
      assert.is_true(cf.BrokenExecutor:is(e))
    end
    assert.matches("worker rank 1 sent a corrupt frame", tostring(fs[1]:exception()))
    assert.has_error(function() ex:submit(print) end)
  end)
end)
