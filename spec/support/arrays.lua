-- Checks for the codec specs (03 and 19, and the child process that
-- spec 19's huge case runs in).
local M = {}

-- Deep equality keeping subtypes (-0.0, NaN) and the sharing shape.
function M.same(a, b, fwd, back)
  fwd, back = fwd or {}, back or {}
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if math.type(a) ~= math.type(b) then return false end
    if a ~= a then return b ~= b end
    if a == 0 and b == 0 then return 1 / a == 1 / b end
    return a == b
  end
  if type(a) == "function" then return a() == b() end
  if type(a) ~= "table" then return a == b end
  if fwd[a] ~= nil or back[b] ~= nil then
    return fwd[a] == b and back[b] == a
  end
  fwd[a], back[b] = b, a
  for k, v in next, a do
    if not M.same(v, rawget(b, k), fwd, back) then return false end
  end
  for k in next, b do
    if rawget(a, k) == nil then return false end
  end
  return M.same(getmetatable(a), getmetatable(b), fwd, back)
end

function M.npairs(t)
  local n = 0
  for _ in next, t do n = n + 1 end
  return n
end

-- The counts 'narr' and 'nhash' of the one table of a transfer (lcodec.c,
-- the format): together they must be its number of pairs, or a key was
-- dropped or sent twice (a decoder keeps the last of two: the copy alone
-- would not show it).
function M.counts(bytes)
  local at = 5  -- version, flags, count 1, the tag TABLE or TABLEMT
  assert(bytes:byte(3) == 1 and (bytes:byte(4) == 6 or bytes:byte(4) == 7))
  local function varint()
    local x, shift = 0, 0
    repeat
      local c = bytes:byte(at)
      at = at + 1
      x = x | ((c & 0x7f) << shift)
      shift = shift + 7
    until c < 0x80
    return x
  end
  local narr = varint()
  return narr, varint()
end

function M.seq(n, f)
  local t = {}
  for i = 1, n do t[i] = f(i) end
  return t
end

return M
