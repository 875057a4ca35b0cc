-- cancel.lua: a future can be cancelled while it waits in the queue;
-- once running, it cannot (Python's Future.cancel()).
local cf = require "concurrent.futures"

local ex <close> = cf.ThreadPoolExecutor(1)
local gate = cf.Future()
local running = ex:submit(function(g) return g:result() end, gate)
local queued = ex:submit(function() return "never printed" end)

while not running:running() do cf.dispatch(0.001) end
print("cancel queued:", queued:cancel(), queued:cancelled())
print("cancel running:", running:cancel())
gate:set_result("running task finished")
print(running:result())
local ok, err = pcall(queued.result, queued)
print("queued result raises CancelledError:", not ok and cf.CancelledError:is(err))
