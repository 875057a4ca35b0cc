-- A module that fails to load where FAIL_BROKEN is set
-- (spec/10-names_spec.lua).
if FAIL_BROKEN then error("broken on purpose") end  -- luacheck: globals FAIL_BROKEN
return { ok = true }
