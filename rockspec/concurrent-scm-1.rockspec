-- The scm rockspec: builds concurrent.core from the same C sources as the
-- Makefile ('make lint' checks that the two lists agree).
rockspec_format = "3.0"
package = "concurrent"
version = "scm-1"

-- No public home yet: the url names the working tree. "luarocks make"
-- builds the checkout in place and never fetches it.
source = {
  url = "git+file:///work/main",
}

description = {
  summary = "Python's concurrent.futures for Lua 5.4: futures and executors",
  license = "MIT",
  detailed = [[
    Futures, a thread pool whose workers each own a lua_State, a process
    pool, as_completed/wait/map and done-callbacks, written in C over
    pthreads with a Lua-agnostic core.
  ]],
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

build = {
  type = "builtin",
  modules = {
    ["concurrent.core"] = {
      sources = {
        "core/chanq.c",
        "core/child.c",
        "core/clock.c",
        "core/frame.c",
        "core/future.c",
        "core/mailbox.c",
        "core/payload.c",
        "core/pool.c",
        "core/proc.c",
        "core/threadexec.c",
        "core/timer.c",
        "lua/lcodec.c",
        "lua/lconcurrent.c",
        "lua/lerror.c",
        "lua/lexecutor.c",
        "lua/lfuncs.c",
        "lua/lfuture.c",
        "lua/lmailbox.c",
        "lua/lqueue.c",
        "lua/ltimer.c",
        "lua/lwait.c",
        "lua/lworker.c",
      },
      incdirs = { "core/include", "core", "lua" },
      defines = { "_GNU_SOURCE" },
      libraries = { "pthread" },
    },
    ["concurrent.futures"] = "lua/concurrent/futures.lua",
  },
}
