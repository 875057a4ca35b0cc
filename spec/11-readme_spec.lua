-- Every code block of README.md runs, so the README never rots. A block
-- is found by its fence; its info string names the language, and the word
-- "norun" in it marks a block shown only (shell commands for the reader).
-- A lua block runs in a fresh interpreter; its lines of the form
--   print(...)  --> expected output
-- also check what they print (whitespace-insensitive).

local helpers = require "spec.helpers"

local function readfile(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The fenced blocks of a Markdown text: {info =, line =, code =}.
local function blocks(text)
  local list, cur, lineno = {}, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    lineno = lineno + 1
    if cur then
      if line:match("^```%s*$") then
        cur.code = table.concat(cur.lines, "\n") .. "\n"
        list[#list + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    else
      local info = line:match("^```(.*)$")
      if info then cur = { info = info, line = lineno, lines = {} } end
    end
  end
  assert(cur == nil, "README.md: unclosed code block")
  return list
end

-- The code with each "print(...) --> text" line turned into a check.
local CHECK = [[
local function readme_check(line, want, ...)
  local got = {}
  for i = 1, select("#", ...) do got[i] = tostring((select(i, ...))) end
  print(...)
  local norm = function(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end
  if norm(table.concat(got, " ")) ~= norm(want) then
    error(("README.md line %d printed '%s', the README says '%s'")
      :format(line, table.concat(got, " "), want), 0)
  end
end
]]

local function withchecks(block)
  local out = {}
  for i, line in ipairs(block.lines) do
    local indent, args, want = line:match("^(%s*)print(%b())%s*%-%->%s*(.-)%s*$")
    if indent then
      line = ("%sreadme_check(%d, %q, %s)"):format(indent, block.line + i,
                                                   want, args:sub(2, -2))
    end
    out[#out + 1] = line
  end
  return CHECK .. table.concat(out, "\n") .. "\n"
end

local function words(info)
  local set = {}
  for w in info:gmatch("[%w_-]+") do set[w] = true end
  return set, info:match("^%s*([%w_+-]*)")
end

describe("README.md", function()
  local list = blocks(readfile("README.md"))

  it("has code blocks, each runnable or marked norun", function()
    assert.is_true(#list > 0)
    for _, b in ipairs(list) do
      local set, lang = words(b.info)
      assert(set.norun or lang == "lua",
             ("README.md line %d: a '%s' block cannot run here: mark it norun")
               :format(b.line, lang))
    end
  end)

  for _, b in ipairs(list) do
    local set, lang = words(b.info)
    if lang == "lua" and not set.norun then
      it(("block at line %d runs"):format(b.line), function()
        local out, ok = helpers.run_lua(withchecks(b))
        assert(ok, ("README.md block at line %d failed:\n%s"):format(b.line, out))
      end)
    end
  end

  it("checks what a block prints (a wrong --> fails)", function()
    local b = { line = 0, lines = { 'print(1 + 1)  --> 3' } }
    local out, ok = helpers.run_lua(withchecks(b))
    assert.is_falsy(ok)
    assert.matches("printed '2', the README says '3'", out, 1, true)
  end)
end)
