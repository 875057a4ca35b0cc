-- Counts how often it is loaded, in the global of the state loading it
-- (spec/10-names_spec.lua): a module crosses by name, not by copy.
-- luacheck: globals COUNTED_LOADS
COUNTED_LOADS = (COUNTED_LOADS or 0) + 1
return { loads = COUNTED_LOADS }
