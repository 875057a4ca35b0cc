-- as_completed.lua: Python's
--   future_to_url = {executor.submit(load_url, url, 60): url for url in URLS}
--   for future in as_completed(future_to_url): ...
-- with "loading" simulated by work of different lengths.
local cf = require "concurrent.futures"

local function load(name, size)
  local t = os.clock() + size / 1000
  while os.clock() < t do end
  if name == "broken.example" then error("connection refused: " .. name, 0) end
  return size * 1024
end

local sites = { ["a.example"] = 40, ["b.example"] = 10, ["broken.example"] = 5, ["c.example"] = 20 }
local ex <close> = cf.ThreadPoolExecutor(4)
local future_to_site, fs = {}, {}
for name, size in pairs(sites) do
  local f = ex:submit(load, name, size)
  future_to_site[f] = name
  fs[#fs + 1] = f
end

local count = 0
for f in cf.as_completed(fs, 60) do
  local site = future_to_site[f]
  local err = f:exception()
  if err then
    print(("%s generated an error: %s"):format(site, err))
  else
    print(("%s page is %d bytes"):format(site, f:result()))
  end
  count = count + 1
end
print(("%d of %d sites done"):format(count, #fs))
