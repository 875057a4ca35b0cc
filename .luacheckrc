-- luacheck settings ('make lint' runs luacheck when it is installed).
std = "lua54"
max_line_length = 100
exclude_files = { "build/", "build-asan/", "build-tsan/", "build-fuzz/" }

files["spec/"] = { std = "+busted" }
files[".busted"] = { std = "lua54" }

-- A rockspec is a Lua file that sets these globals.
files["rockspec/"] = {
  allow_defined_top = true,
  globals = {
    "rockspec_format", "package", "version", "source", "description",
    "dependencies", "build_dependencies", "test_dependencies", "build", "test",
  },
}
