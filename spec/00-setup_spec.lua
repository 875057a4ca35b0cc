-- mk/deps.sh: the Debian package check in front of 'make test', 'make demo',
-- 'make asan' and 'make tsan'.  Fake 'id' and 'apt-get' commands on a
-- private PATH stand in for root, non-root and the package manager.

local LUA = os.getenv("LUA") or "lua5.4"
local LUA_INC = os.getenv("LUA_INC") or "/usr/include/lua5.4"

local function shell(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

local function writefile(path, text, mode)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  if mode then assert(shell("chmod " .. mode .. " " .. path) == 0) end
end

local function which(name)
  local code, out = shell("command -v " .. name)
  assert(code == 0, name .. " not found")
  return (out:gsub("\n$", ""))
end

-- Run mk/deps.sh with the environment 'env' (a table) and the needs given.
local function deps(env, ...)
  local vars = { "CONCURRENT_NO_INSTALL=" .. (env.NO_INSTALL or "1") }
  for _, k in ipairs({ "PATH", "LUA", "LUA_INC", "LUA_CPATH_5_4", "CC" }) do
    if env[k] then vars[#vars + 1] = k .. "='" .. env[k] .. "'" end
  end
  -- env -u: the caller's DEBIAN_FRONTEND must not hide the script's own
  return shell("env -u DEBIAN_FRONTEND " .. table.concat(vars, " ") ..
               " /bin/sh mk/deps.sh " ..
               table.concat({ ... }, " "))
end

local function message(pkgs, sudo)
  sudo = sudo and "sudo " or ""
  return ("missing Debian packages: %s\nrun: %sapt-get update && " ..
          "%sapt-get install -y %s\n"):format(pkgs, sudo, sudo, pkgs)
end

describe("mk/deps.sh", function()
  local tmp, bin, empty

  -- A bin directory holding only what a test puts there, 'id' answering
  -- uid 'uid', and the interpreter unless 'nolua'.
  local function fakebin(uid, nolua)
    assert(shell("rm -rf " .. bin .. " && mkdir " .. bin) == 0)
    writefile(bin .. "/id", "#!/bin/sh\necho " .. uid .. "\n", "755")
    if not nolua then
      assert(shell("ln -s " .. which(LUA) .. " " .. bin .. "/" .. LUA) == 0)
    end
    return bin
  end

  before_each(function()
    local code, out = shell("mktemp -d")
    assert(code == 0, out)
    tmp = out:gsub("\n$", "")
    bin, empty = tmp .. "/bin", tmp .. "/include"
    assert(shell("mkdir " .. empty) == 0)
  end)

  after_each(function()
    shell("rm -rf " .. tmp)
  end)

  it("is silent and succeeds when everything is there", function()
    local code, out = deps({ LUA = LUA, LUA_INC = LUA_INC },
                           "cc", "lua", "headers", "busted", "luv")
    assert.are.equal("", out)
    assert.are.equal(0, code)
  end)

  it("names liblua5.4-dev for an empty include directory", function()
    local code, out = deps({ PATH = fakebin(0), LUA = LUA, LUA_INC = empty },
                           "lua", "headers", "luv")
    assert.are.equal(message("liblua5.4-dev"), out)
    assert.are.equal(1, code)
  end)

  it("names lua-busted for a PATH without busted", function()
    local code, out = deps({ PATH = fakebin(0), LUA = LUA, LUA_INC = LUA_INC },
                           "lua", "headers", "busted")
    assert.are.equal(message("lua-busted"), out)
    assert.are.equal(1, code)
  end)

  it("names valgrind and python3 for a PATH without them", function()
    local code, out = deps({ PATH = fakebin(0), LUA = LUA, LUA_INC = LUA_INC },
                           "lua", "valgrind", "headers", "python3")
    assert.are.equal(message("valgrind python3"), out)
    assert.are.equal(1, code)
  end)

  it("names the packaging, documentation and chart tools", function()
    local code, out = deps({ PATH = fakebin(0), LUA = LUA, LUA_INC = LUA_INC },
                           "luarocks", "pkgconfig", "script", "gnuplot")
    assert.are.equal(message("luarocks pkg-config bsdutils gnuplot-nox"), out)
    assert.are.equal(1, code)
    code, out = deps({ PATH = fakebin(0), LUA = LUA, LUA_INC = LUA_INC }, "ldoc")
    assert.matches("missing Debian packages: lua%-ldoc", out)
    assert.are.equal(1, code)
  end)

  it("names each missing package once, in the order asked", function()
    local code, out = deps({ PATH = fakebin(0), LUA = LUA, LUA_INC = empty },
                           "headers", "busted", "headers", "lua", "busted")
    assert.are.equal(message("liblua5.4-dev lua-busted"), out)
    assert.are.equal(1, code)
  end)

  it("names lua5.4 when the interpreter is missing", function()
    local code, out = deps({ PATH = fakebin(0, true), LUA = LUA,
                             LUA_INC = empty }, "lua", "headers")
    assert.are.equal(message("lua5.4 liblua5.4-dev"), out)
    assert.are.equal(1, code)
  end)

  it("names lua-luv when the interpreter cannot load luv", function()
    local code, out = deps({ PATH = fakebin(0), LUA = LUA, LUA_INC = LUA_INC,
                             LUA_CPATH_5_4 = ";" }, "lua", "headers", "luv")
    assert.are.equal(message("lua-luv"), out)
    assert.are.equal(1, code)
  end)

  it("tells a non-root user the sudo command", function()
    local code, out = deps({ PATH = fakebin(1000), LUA = LUA,
                             LUA_INC = empty, NO_INSTALL = "0" }, "headers")
    assert.are.equal(message("liblua5.4-dev", true), out)
    assert.are.equal(1, code)
  end)

  -- A fake clang on a full PATH: -dumpversion answers 'version', and
  -- linking succeeds only if 'links'.
  local function fake_clang(version, links)
    fakebin(0)
    writefile(bin .. "/clang", ([[
#!/bin/sh
if [ "$1" = -dumpversion ]; then echo %s; exit 0; fi
%s
]]):format(version, links and "exit 0" or "exit 1"), "755")
    return bin .. ":" .. os.getenv("PATH")
  end

  it("names the libclang-rt package of clang's version for the fuzzer", function()
    local code, out = deps({ PATH = fake_clang("15.0.7", false), LUA = LUA,
                             CC = "clang" }, "cc", "fuzzer")
    assert.are.equal(message("libclang-rt-15-dev"), out)
    assert.are.equal(1, code)
  end)

  it("is content when clang links a fuzzer target", function()
    local code, out = deps({ PATH = fake_clang("14.0.6", true), LUA = LUA,
                             CC = "clang" }, "cc", "fuzzer")
    assert.are.equal("", out)
    assert.are.equal(0, code)
  end)

  it("wants clang for the fuzzer", function()
    local code, out = deps({ CC = "gcc" }, "fuzzer")
    assert.are.equal("mk/deps.sh: the fuzzer need wants CC=clang, not 'gcc'\n",
                     out)
    assert.are.equal(2, code)
  end)

  it("rejects an unknown need", function()
    local code, out = deps({}, "lua", "pony")
    assert.are.equal("mk/deps.sh: unknown need 'pony'\n", out)
    assert.are.equal(2, code)
  end)

  describe("as root", function()
    -- An apt-get that logs its calls; 'install' runs 'action' as well.
    local function fake_apt(action, status)
      writefile(bin .. "/apt-get", ([[
#!/bin/sh
echo "$DEBIAN_FRONTEND $*" >>%s/apt.log
if [ "$1" = install ]; then %s; fi
exit %d
]]):format(tmp, action or ":", status or 0), "755")
    end

    local function apt_log()
      local f = io.open(tmp .. "/apt.log")
      if not f then return "" end
      local text = f:read("a")
      f:close()
      return text
    end

    it("installs the missing packages noninteractively", function()
      fakebin(0)
      fake_apt(which("touch") .. " " .. empty .. "/lua.h " .. empty .. "/lauxlib.h " ..
               empty .. "/lualib.h")
      local code, out = deps({ PATH = bin, LUA = LUA, LUA_INC = empty,
                               NO_INSTALL = "0" }, "lua", "headers")
      assert.are.equal(" update\nnoninteractive install -y liblua5.4-dev\n",
                       apt_log())
      assert.are.equal("installing missing Debian packages: liblua5.4-dev\n",
                       out)
      assert.are.equal(0, code)
    end)

    it("fails when apt-get did not provide the package", function()
      fakebin(0)
      fake_apt()
      local code, out = deps({ PATH = bin, LUA = LUA, LUA_INC = empty,
                               NO_INSTALL = "0" }, "headers")
      assert.are.equal(" update\nnoninteractive install -y liblua5.4-dev\n",
                       apt_log())
      assert.matches("still missing after apt%-get: liblua5%.4%-dev\n$", out)
      assert.are.equal(1, code)
    end)

    it("stops when apt-get fails", function()
      fakebin(0)
      fake_apt(nil, 100)
      local code = deps({ PATH = bin, LUA = LUA, LUA_INC = empty,
                          NO_INSTALL = "0" }, "headers")
      assert.are.equal(" update\n", apt_log())
      assert.are.equal(1, code)
    end)

    it("only reports when CONCURRENT_NO_INSTALL=1", function()
      fakebin(0)
      fake_apt()
      local code, out = deps({ PATH = bin, LUA = LUA, LUA_INC = empty,
                               NO_INSTALL = "1" }, "headers")
      assert.are.equal("", apt_log())
      assert.are.equal(message("liblua5.4-dev"), out)
      assert.are.equal(1, code)
    end)
  end)
end)

-- mk/specrun.sh with spec/support/summary.lua: the output of every spec run
-- ends with "N passed, M failed", whatever happened to the process.
describe("mk/specrun.sh", function()
  local tmp, busted, summary

  setup(function()
    busted = which("busted")
    local code, pwd = shell("pwd")
    assert(code == 0, pwd)
    summary = pwd:gsub("\n$", "") .. "/spec/support/summary.lua"
  end)

  before_each(function()
    local code, out = shell("mktemp -d")
    assert(code == 0, out)
    tmp = out:gsub("\n$", "")
  end)

  after_each(function()
    shell("rm -rf " .. tmp)
  end)

  -- Run the spec file made of 'body' through the wrapper; 'wrap' is an
  -- optional shell prefix standing between the wrapper and busted.
  -- 'env' holds variable assignments.  The fixture runs in its own directory, away
  -- from this project's .busted.
  local function run(body, wrap, env)
    writefile(tmp .. "/fixture_spec.lua", body)
    local code, out = shell((env and env .. " " or "") ..
                            "sh mk/specrun.sh " .. (wrap or "") .. LUA ..
                            " " .. busted .. " -C " .. tmp .. " -o " .. summary ..
                            " fixture_spec.lua")
    return code, out, out:match("([^\n]*)\n$")
  end

  it("ends with the counts and succeeds when all pass", function()
    local code, _, last = run([[
      it("one", function() end)
      it("two", function() end)
      pending("later")
    ]])
    assert.are.equal("2 passed, 0 failed", last)
    assert.are.equal(0, code)
  end)

  it("counts failures and errors as failed", function()
    local code, _, last = run([[
      it("passes", function() end)
      it("fails", function() assert.are.equal(1, 2) end)
      it("errors", function() error("boom") end)
      describe("broken", function() error("while describing") end)
    ]])
    assert.are.equal("1 passed, 3 failed", last)
    assert.are.equal(1, code)
  end)

  it("counts a spec file that does not load as failed", function()
    local code, _, last = run("it('x', function() end) +")
    assert.are.equal("0 passed, 1 failed", last)
    assert.are.equal(1, code)
  end)

  it("counts a process killed mid-suite as one more failure", function()
    local code, out, last = run([[
      it("passes", function() end)
      it("dies", function() os.execute("kill -SEGV $PPID") end)
      it("never runs", function() end)
    ]])
    assert.matches("the spec run was killed by signal 11 before the end " ..
                   "of the suite\n", out)
    assert.are.equal("1 passed, 1 failed", last)
    assert.are.equal(128 + 11, code)
  end)

  it("counts a failure after the summary, as a leak report", function()
    local code, out, last = run([[
      it("passes", function() end)
    ]], [[sh -c '"$@"; exit 23' sh ]])
    assert.matches("1 passed, 0 failed\n\nthe spec run exited with status " ..
                   "23 after its summary", out)
    assert.are.equal("1 passed, 1 failed", last)
    assert.are.equal(23, code)
  end)

  it("fails a run that exceeds SPEC_TIMEOUT", function()
    local code, out, last = run([[
      it("passes", function() end)
      it("hangs", function() while true do end end)
    ]], nil, "SPEC_TIMEOUT=1")
    assert.matches("the spec run timed out after 1s %(SPEC_TIMEOUT%) " ..
                   "before the end", out)
    assert.are.equal("1 passed, 1 failed", last)
    assert.are.equal(128 + 15, code)
  end)

  it("fails a run that grows past SPEC_RSS_MB", function()
    local code, out, last = run([[
      it("passes", function() end)
      it("grows", function()
        local t = {}
        for i = 1, 400 do t[i] = string.rep("x", 1 << 20) .. i end
        while true do end
      end)
    ]], nil, "SPEC_RSS_MB=100")
    assert.matches("the spec run grew past 100 MB %(SPEC_RSS_MB%) " ..
                   "before the end", out)
    assert.are.equal("1 passed, 1 failed", last)
    assert.are.equal(128 + 9, code)
  end)
end)

describe("the Makefile", function()
  -- What 'make -n' would run for 'target' with an empty build directory,
  -- away from the make running this suite (its MAKEFLAGS carry BUILD=).
  local function plan(target)
    local code, tmp = shell("mktemp -d")
    assert(code == 0, tmp)
    tmp = tmp:gsub("\n$", "")
    local c, out = shell("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -n BUILD=" ..
                         tmp .. " " .. target)
    shell("rm -rf " .. tmp)
    assert(c == 0, out)
    return out, tmp
  end

  it("builds the main module before the MPI specs, which load it", function()
    -- mpi_spec.lua runs examples/mpi_primes.lua in a plain lua5.4 too,
    -- which loads concurrent.core, not the MPI module
    local out, tmp = plan("mpi-specs")
    local core = out:find("-o " .. tmp .. "/concurrent/core.so", 1, true)
    local mpiexec = out:find("mpiexec", 1, true)
    assert.is_not_nil(core, out)
    assert.is_not_nil(mpiexec, out)
    assert.is_true(core < mpiexec, out)
  end)
end)
