-- The scm rockspec. LuaRocks builds with the Makefile ('make', then
-- 'make install'), so both build the same objects with the same flags.
rockspec_format = "3.0"
package = "concurrent"
version = "scm-1"

-- "luarocks make" builds the checkout in place and fetches nothing;
-- "luarocks build" of this file, run at the top of a checkout, clones it.
source = {
  url = "git+file://.",
}

description = {
  summary = "Python's concurrent.futures for Lua 5.4: futures and executors",
  detailed = [[
    Futures, a thread pool whose workers each own a lua_State,
    as_completed/wait/map and done-callbacks, written in C over pthreads
    with a Lua-agnostic core that C hosts can use (concurrent.h and
    libconcurrent.a are installed with the rock).
  ]],
  license = "MIT",
  -- No public home yet (.invalid is reserved for that): set it on release.
  homepage = "https://concurrent.invalid/",
  labels = { "concurrency", "threads", "futures" },
}

-- eventfd and Linux thread names.
supported_platforms = { "linux" }

dependencies = {
  "lua >= 5.4, < 5.5",
}

build = {
  type = "make",
  build_variables = {
    CC = "$(CC)",
    LUA = "$(LUA)",
    LUA_INC = "$(LUA_INCDIR)",
  },
  -- The modules go where LuaRocks deploys them; the header, the static
  -- core and concurrent.pc stay in the rock's own directory
  -- ('luarocks show concurrent' names it).
  install_variables = {
    PREFIX = "$(PREFIX)",
    INSTALL_LMOD = "$(LUADIR)",
    INSTALL_CMOD = "$(LIBDIR)",
  },
  copy_directories = { "examples" },
}

-- 'luarocks test' runs the specs with the system's busted.
test = {
  type = "command",
  command = "make test",
}
