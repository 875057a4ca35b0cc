-- busted output handler: busted's own terminal output, then one last line
-- "N passed, M failed" (errors count as failed) for make and the CI log.
-- If SPEC_PROGRESS names a file, the running counts are kept there so that
-- mk/specrun.sh can still end the output with that line if the process dies;
-- beside it, SPEC_PROGRESS.running names the test in progress and
-- SPEC_PROGRESS.failed lists each failure as it happens, since busted
-- prints its failures only at the end, which a killed run never reaches.

local progress_file = os.getenv("SPEC_PROGRESS")

return function(options)
  local busted = require "busted"
  local name = options.defaultOutput or "plainTerminal"
  local handler = require("busted.outputHandlers." .. name)(options)

  local function counts()
    return handler.successesCount, handler.failuresCount + handler.errorsCount
  end

  -- Rewritten after every test and error: a crash loses at most the test
  -- that was running, and the wrapper counts that one as failed.
  local function save(done)
    if not progress_file then return end
    local f = io.open(progress_file, "w")
    if f then
      local passed, failed = counts()
      f:write(passed, " ", failed, done and " end" or "", "\n")
      f:close()
    end
  end

  local function on_event()
    save(false)
    return nil, true
  end

  local function on_test_start(element)
    if progress_file then
      local f = io.open(progress_file .. ".running", "w")
      if f then
        local trace = element.trace or {}
        f:write(handler.getFullName(element), " (", trace.short_src or "?",
                ":", trace.currentline or "?", ")\n")
        f:close()
      end
    end
    return nil, true
  end

  local function on_failure(element, _, message)
    save(false)
    if progress_file then
      local f = io.open(progress_file .. ".failed", "a")
      if f then
        f:write("- ", handler.getFullName(element), "\n  ",
                tostring(message):gsub("\n", "\n  "), "\n")
        f:close()
      end
    end
    return nil, true
  end

  -- Subscribed after the terminal handler, so the line comes after its
  -- report; the base handler's counters run first (priority 1).
  local function on_suite_end()
    local passed, failed = counts()
    io.write(("%d passed, %d failed\n"):format(passed, failed))
    io.flush()
    save(true)
    return nil, true
  end

  busted.subscribe({ "test", "start" }, on_test_start)
  busted.subscribe({ "test", "end" }, on_event)
  busted.subscribe({ "error" }, on_failure)
  busted.subscribe({ "failure" }, on_failure)
  busted.subscribe({ "suite", "end" }, on_suite_end)
  return handler
end
