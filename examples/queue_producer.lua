-- queue_producer.lua: a task streams its results into a cf.Queue while
-- the main state drains it and other tasks keep running. The queue is
-- bounded, so a fast producer waits for the consumer instead of piling
-- values up; closing it ends the consumer's loop.
local cf = require "concurrent.futures"

local ex <close> = cf.ThreadPoolExecutor(3)
local lines = cf.Queue(8)

-- The producer: each "record" it makes crosses as a copy.
local producer = ex:submit(function(q, count)
  for i = 1, count do
    q:put({ id = i, square = i * i })
  end
  q:close()
  return count
end, lines, 50)

-- Meanwhile, unrelated work runs on the other workers.
local others = {}
for k = 1, 4 do
  others[k] = ex:submit(function(n)
    local s = 0
    for i = 1, n do s = s + i end
    return s
  end, k * 1000)
end

local received, total = 0, 0
for record in lines:values() do
  received = received + 1
  total = total + record.square
end

print(("received %d records from a producer that sent %d"):format(received, producer:result()))
print(("sum of squares: %d"):format(total))
for k, f in ipairs(others) do
  print(("other task %d: %d"):format(k, f:result()))
end
print(("queue after close: %s"):format(tostring(lines)))
