-- Counts how often it is loaded, in the global of the state loading it
-- (spec/10-names_spec.lua): a module crosses by name, not by copy.
COUNTED_LOADS = (COUNTED_LOADS or 0) + 1  -- luacheck: globals COUNTED_LOADS
return { loads = COUNTED_LOADS }
