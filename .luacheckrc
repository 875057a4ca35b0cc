-- luacheck settings ('make lint' runs luacheck when it is installed).
std = "lua54"
max_line_length = 100
exclude_files = { "build/", "build-asan/", "build-tsan/", "build-fuzz/",
                  "build-debug/", "build-faults/" }

files["spec/"] = { std = "+busted" }
-- Tasks set and read globals of the worker states on purpose.
files["spec/04-threadpool_spec.lua"] = {
  globals = { "caller_only_global", "worker_counter", "init_value" },
  -- 'ok' of pcall left unchecked, long 'it' lines, a loop left by
  -- 'break' at once: older specs, cleaned up when next touched
  ignore = { "211/ok", "231/ok", "512" },
  max_line_length = 125,
}
files[".busted"] = { std = "lua54" }

-- A rockspec is a Lua file that sets these globals.
files["rockspec/"] = {
  allow_defined_top = true,
  globals = {
    "rockspec_format", "package", "version", "source", "description",
    "dependencies", "build_dependencies", "test_dependencies", "build", "test",
  },
}
