#!/bin/sh
# Instructions per task of w1 (x -> x+1 tasks on 2 workers), counted by
# callgrind: noise-free on a shared machine, unlike wall-clock time.
# usage: sh callgrind.sh [lua] [tasks]   (LUA_PATH/LUA_CPATH as 'make'
# sets them; 'make callgrind' runs it). The owner thread's count is its
# total with N tasks minus its total with none, over N; the script
# submits every task, waits once (shutdown), then reads every result, so
# the count does not depend on how the threads were scheduled.
LUA=${1:-lua5.4}
N=${2:-20000}
dir=$(mktemp -d "${TMPDIR:-/tmp}/concurrent-callgrind.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
cat >"$dir/w1.lua" <<'LUA'
local cf = require "concurrent.futures"
local n = tonumber(arg[1])
local function inc(x) return x + 1 end
local ex = cf.ThreadPoolExecutor(2)
local fs = {}
for i = 1, n do fs[i] = ex:submit(inc, i) end
ex:shutdown(true)
local sum = 0
for i = 1, n do sum = sum + fs[i]:result() end
assert(sum == n * (n + 1) // 2 + n)
LUA
run() {
  valgrind --tool=callgrind --separate-threads=yes \
    --callgrind-out-file="$dir/$1.%p" "$LUA" "$dir/w1.lua" "$2" \
    >/dev/null 2>"$dir/$1.log" || { cat "$dir/$1.log"; exit 1; }
}
total() { sed -n 's/^summary: //p' "$1"; }
run base 0
run work "$N"
base=$(total "$(ls "$dir"/base.*-01)")
owner=$(ls "$dir"/work.*-01)
echo "owner thread: instructions per task $(( ($(total "$owner") - base) / N ))"
for f in "$dir"/work.*-0[2-9]; do
  [ -e "$f" ] && echo "worker thread ${f##*-}: instructions per task $(( $(total "$f") / N ))"
done
echo "owner thread, functions by own instructions (per task):"
callgrind_annotate "$owner" 2>/dev/null |
  awk -v n="$N" '/^ *[0-9,]+ \(/ && !/PROGRAM TOTALS/ {
    v = $1; gsub(",", "", v); $1 = ""; $2 = ""
    if (shown++ < 15) printf "%8.0f %s\n", v / n, $0 }'
