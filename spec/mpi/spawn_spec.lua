-- Run by 'make test-mpi' as a plain busted run (no mpiexec): a singleton
-- MPI job, whose first MPIPoolExecutor spawns its worker ranks
-- (MPI_Comm_spawn), as mpi4py.futures does without its launch line.

local mpi = require "concurrent.futures.mpi"
local cf = require "concurrent.futures"

describe("concurrent.futures.mpi started without mpiexec", function()
  it("is rank 0 of 1, and spawns the workers of its first pool", function()
    assert.equal(0, mpi.rank())
    assert.equal(1, mpi.size())
    -- the workers' command line is the module's own: neither the script's
    -- string.format (here one of another meaning, whose table made a
    -- worker's -e argument NULL and aborted the job) nor quotes, newlines
    -- and backslashes in its package.path change it
    local format, path = string.format, package.path
    package.path = path .. ';/no/such/"dir\\\n/?.lua'
    string.format = function() return {} end
    local ok, ex = pcall(mpi.MPIPoolExecutor, 2)
    string.format = format
    assert.is_true(ok, tostring(ex))
    local _ <close> = ex
    assert.equal(package.path, ex:submit(function() return package.path end):result(30))
    package.path = path
    assert.equal(3, mpi.size())
    local gate = cf.Future()
    local function rank(g)
      g:result(30)
      return require("concurrent.futures.mpi").rank()
    end
    local a, b = ex:submit(rank, gate), ex:submit(rank, gate)
    gate:set_result(true)
    local ranks = { a:result(30), b:result(30) }
    table.sort(ranks)
    assert.same({ 1, 2 }, ranks)
    local e = ex:submit(function() error({ code = 3 }) end)
    assert.same({ code = 3 }, e:exception(30))
    assert.matches("in function", e:traceback())
  end)

  it("serves later pools with the spawned ranks", function()
    local ex <close> = mpi.MPIPoolExecutor { initializer = function(v) _G.v = v end,
                                             initargs = { 7 } }
    local out = {}
    for i, v in ex:map { function(x) return x * _G.v end, { 1, 2, 3 }, chunksize = 2 } do
      out[i] = v
    end
    assert.same({ 7, 14, 21 }, out)
    assert.equal(3, mpi.size())
  end)
end)
