#!/bin/sh
# Run the spec command "$@" (busted under lua5.4 or under the sanitizer host)
# so that the output always ends with "N passed, M failed" and the status
# is nonzero on any failure.  spec/support/summary.lua prints that line and
# keeps the counts in $SPEC_PROGRESS; if the process dies first (a crash, a
# sanitizer report) or fails after the line (a leak found at exit), the
# line is printed again with that death counted as one more failure.
#
# A watchdog bounds the run: SPEC_TIMEOUT seconds and SPEC_RSS_MB megabytes
# of resident memory (unset or 0: no bound).  A hung or runaway spec then
# fails the build instead of stalling it or waking the OOM killer, which
# TSan's own limits do not prevent.  A run it kills has no report from
# busted: it says instead which test was running, what had failed, and
# (on a timeout, with gdb) where every thread of the run's processes was.

SPEC_PROGRESS=$(mktemp "${TMPDIR:-/tmp}/concurrent-spec.XXXXXX") || exit 1
export SPEC_PROGRESS
why=$SPEC_PROGRESS.why
trap 'rm -f "$SPEC_PROGRESS" "$SPEC_PROGRESS".running "$SPEC_PROGRESS".failed "$why" "$why.stacks"' EXIT

# The threads' stacks of process $1 and of its descendants (a worker
# process may be what hangs), when gdb is there: what a hang report needs.
stacks() {
  command -v gdb >/dev/null || return 0
  for pid in "$1" $(descendants "$1"); do
    echo "-- process $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
    timeout 60 gdb -p "$pid" -batch -nx -ex "thread apply all bt 30" 2>/dev/null \
      | grep -E '^(Thread|#)' | head -60
  done
}

descendants() {
  for kid in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    echo "$kid"
    descendants "$kid"
  done
}

# Kill process $1 once it has run SPEC_TIMEOUT seconds or grown past
# SPEC_RSS_MB, leaving the reason in $why.
watchdog() {
  limit=${SPEC_TIMEOUT:-0} rss_limit=$((${SPEC_RSS_MB:-0} * 1024)) t=0
  while kill -0 "$1" 2>/dev/null; do
    rss=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$1/status" \
          2>/dev/null)
    if [ "$rss_limit" -gt 0 ] && [ "${rss:-0}" -gt "$rss_limit" ]; then
      echo "grew past ${SPEC_RSS_MB} MB (SPEC_RSS_MB)" >"$why"
      kill -KILL "$1"; return
    fi
    if [ "$limit" -gt 0 ] && [ "$t" -ge "$limit" ]; then
      echo "timed out after ${SPEC_TIMEOUT}s (SPEC_TIMEOUT)" >"$why"
      stacks "$1" >"$why.stacks" 2>&1
      kill -TERM "$1"
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        sleep 1; kill -0 "$1" 2>/dev/null || return
      done
      kill -KILL "$1" 2>/dev/null; return
    fi
    sleep 1
    t=$((t + 1))
  done
}

# An asynchronous command of a non-interactive shell ignores SIGINT:
# pass ^C and kill on to it.
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' INT TERM
# (away from stdout: its sleeps must not hold the caller's pipe open)
watchdog "$child" >/dev/null 2>&1 &
dog=$!
status=
while [ -z "$status" ]; do
  wait "$child"
  status=$?
  kill -0 "$child" 2>/dev/null && status=  # 'wait' cut short by a signal
done
kill "$dog" 2>/dev/null
wait "$dog" 2>/dev/null

passed=0 failed=0 done=
read -r passed failed done <"$SPEC_PROGRESS"
: "${passed:=0}" "${failed:=0}"

# busted exits 0 when all passed and 1 when something failed
if [ "$done" = end ]; then
  if [ "$status" = 0 ] && [ "$failed" = 0 ]; then exit 0; fi
  if [ "$status" = 1 ] && [ "$failed" != 0 ]; then exit 1; fi
fi

if [ -s "$why" ]; then
  how=$(cat "$why")
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
  # busted's report never came: say what was running and what had
  # failed, last, nearest the summary line
  if [ -s "$why.stacks" ]; then
    echo "the stacks then:"
    cat "$why.stacks"
  fi
  if [ -s "$SPEC_PROGRESS.failed" ]; then
    echo "failed before then:"
    cat "$SPEC_PROGRESS.failed"
  fi
  if [ -s "$SPEC_PROGRESS.running" ]; then
    echo "running then: $(cat "$SPEC_PROGRESS.running")"
  fi
fi
echo "$passed passed, $((failed + 1)) failed"
[ "$status" = 0 ] && exit 1
exit "$status"
