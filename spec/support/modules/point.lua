-- A class that is a module (spec/10-names_spec.lua): its instances keep
-- the class as their metatable across a transfer.
local Point = {}
Point.__index = Point

function Point.new(x, y)
  return setmetatable({ x = x, y = y }, Point)
end

function Point:norm2()
  return self.x * self.x + self.y * self.y
end

return Point
