#!/bin/sh
# Run the spec command "$@" (busted under lua5.4 or under the sanitizer host)
# so that the output always ends with "N passed, M failed" and the status
# is nonzero on any failure.  spec/support/summary.lua prints that line and
# keeps the counts in $SPEC_PROGRESS; if the process dies first (a crash, a
# sanitizer report) or fails after the line (a leak found at exit), the
# line is printed again with that death counted as one more failure.

SPEC_PROGRESS=$(mktemp "${TMPDIR:-/tmp}/concurrent-spec.XXXXXX") || exit 1
export SPEC_PROGRESS
trap 'rm -f "$SPEC_PROGRESS"' EXIT

# SPEC_TIMEOUT (seconds) bounds the run, so a hung spec fails the build
# instead of stalling it; --foreground keeps ^C working.
if [ -n "${SPEC_TIMEOUT:-}" ]; then
  set -- timeout --foreground -k 10 "$SPEC_TIMEOUT" "$@"
fi
"$@"
status=$?

passed=0 failed=0 done=
read -r passed failed done <"$SPEC_PROGRESS"
: "${passed:=0}" "${failed:=0}"

# busted exits 0 when all passed and 1 when something failed
if [ "$done" = end ]; then
  if [ "$status" = 0 ] && [ "$failed" = 0 ]; then exit 0; fi
  if [ "$status" = 1 ] && [ "$failed" != 0 ]; then exit 1; fi
fi

if [ "$status" = 124 ] && [ -n "${SPEC_TIMEOUT:-}" ]; then
  how="timed out after ${SPEC_TIMEOUT}s"
elif [ "$status" -gt 128 ]; then
  how="was killed by signal $((status - 128))"
else
  how="exited with status $status"
fi
echo  # after busted's progress dots
if [ "$done" = end ]; then
  echo "the spec run $how after its summary (see the report above)"
else
  echo "the spec run $how before the end of the suite"
fi
echo "$passed passed, $((failed + 1)) failed"
[ "$status" = 0 ] && exit 1
exit "$status"
