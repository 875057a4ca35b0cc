-- luv_async.lua: sequential-looking code inside a luv event loop. An
-- async function awaits three pool tasks one after the other while a
-- timer keeps ticking: the loop never blocks. The module's notify fd is
-- readable while callbacks wait; cf.dispatch(0) runs them (and so
-- resumes the coroutine), then the loop goes on.
local uv = require "luv"
local cf = require "concurrent.futures"

local ex = cf.ThreadPoolExecutor(2)

local poll = uv.new_poll(cf.notify_fd())
poll:start("r", function() cf.dispatch(0) end)

local ticks = 0
local timer = uv.new_timer()
timer:start(5, 5, function() ticks = ticks + 1 end)

-- A task that keeps its worker busy for about 'secs' seconds.
local function crunch(n, secs)
  local stop = os.clock() + secs
  while os.clock() < stop do end
  return n * n
end

local job = cf.async(function(count)
  local total = 0
  for i = 1, count do
    local sq = cf.await(ex:submit(crunch, i, 0.05))
    print(("step %d: %d squared is %d, %d timer ticks so far")
      :format(i, i, sq, ticks))
    total = total + sq
  end
  return total
end, 3)

job:add_done_callback(function(f)
  print("total: " .. f:result())
  timer:stop()
  timer:close()
  poll:stop()
  poll:close()
end)

uv.run()
ex:shutdown()
print(("the loop ended cleanly after %d timer ticks"):format(ticks))
