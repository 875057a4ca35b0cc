#!/bin/sh
# Install the way users do, from a clean copy of the committed tree (HEAD),
# and use what was installed with nothing else on the paths:
#  1. luarocks make --tree <tmp>: the build leaves the copy clean (git
#     status), the module exports only luaopen_concurrent_core, the header,
#     the static core and concurrent.pc come along, and an example runs
#     with only that tree on LUA_PATH/LUA_CPATH;
#  2. make install DESTDIR=<tmp>: examples/embed.c builds against the
#     installed header through pkg-config and runs with the installed
#     module; make uninstall removes every file again.
# Ends with "N passed, M failed". Environment: LUA, LUA_INC, CC.

LUA=${LUA:-lua5.4}
LUA_INC=${LUA_INC:-/usr/include/lua5.4}
CC=${CC:-gcc}
top=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/concurrent-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

check() {  # check NAME COMMAND...: run it, count it, show its output on failure
  name=$1
  shift
  if out=$("$@" 2>&1); then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "installcheck: $name failed:"
    printf '%s\n' "$out" | tail -20
  fi
}

# A clean copy of HEAD, committed in a repository of its own so that
# 'git status' can tell what a build left behind.
copy() {
  mkdir "$tmp/$1" &&
    git -C "$top" archive --format=tar HEAD | tar -x -C "$tmp/$1" &&
    git -C "$tmp/$1" init -q &&
    git -C "$tmp/$1" add -A &&
    git -C "$tmp/$1" -c user.name=ci -c user.email=ci@localhost \
      commit -q -m copy
}

clean_tree() {
  st=$(git -C "$tmp/$1" status --porcelain)
  [ -z "$st" ] || { echo "left in the tree:"; echo "$st"; return 1; }
}

rock_build() {
  (cd "$tmp/rock" &&
    luarocks --lua-version 5.4 make --tree "$tmp/tree" \
      rockspec/concurrent-scm-1.rockspec)
}

rock_exports() {
  so=$tmp/tree/lib/lua/5.4/concurrent/core.so
  syms=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBR]$/ { print $3 }')
  [ "$syms" = luaopen_concurrent_core ] ||
    { echo "exported: $syms"; return 1; }
}

rock_c_files() {
  for f in concurrent.h libconcurrent.a concurrent.pc; do
    [ -n "$(find "$tmp/tree" -name "$f")" ] || { echo "no $f"; return 1; }
  done
}

# Only the tree on the paths (no ';;': the default paths stay out), run
# from elsewhere so that nothing of the checkout is found.
rock_example() {
  share=$tmp/tree/share/lua/5.4
  (cd / && LUA_PATH="$share/?.lua;$share/?/init.lua" \
    LUA_CPATH="$tmp/tree/lib/lua/5.4/?.so" \
    "$LUA" "$tmp/rock/examples/hello.lua")
}

dest_install() {
  make -C "$tmp/dest" --no-print-directory -s install \
    DESTDIR="$tmp/root" PREFIX=/usr/local LUA="$LUA" LUA_INC="$LUA_INC" \
    CC="$CC"
}

# pkg-config reads the installed concurrent.pc (its paths say /usr/local,
# the sysroot maps them under DESTDIR); Lua's own flags come from lua5.4.pc.
dest_embed() {
  pc=$tmp/root/usr/local/lib/pkgconfig
  flags=$(PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$tmp/root \
          pkg-config --cflags concurrent) || return 1
  case $flags in *"$tmp/root/usr/local/include"*) ;;
    *) echo "pkg-config --cflags concurrent: $flags"; return 1 ;; esac
  luaflags=$(pkg-config --cflags --libs lua5.4 2>/dev/null) ||
    luaflags="-I$LUA_INC -llua5.4"
  # shellcheck disable=SC2086 # the flags are lists of words
  "$CC" -std=c99 -Wall -Werror -o "$tmp/embed" "$tmp/dest/examples/embed.c" \
    $flags $luaflags -pthread -lm -ldl -Wl,-E &&
    share=$tmp/root/usr/local/share/lua/5.4 &&
    (cd / && LUA_PATH="$share/?.lua" \
      LUA_CPATH="$tmp/root/usr/local/lib/lua/5.4/?.so" "$tmp/embed")
}

dest_uninstall() {
  make -C "$tmp/dest" --no-print-directory -s uninstall \
    DESTDIR="$tmp/root" PREFIX=/usr/local &&
    left=$(find "$tmp/root" -type f) &&
    { [ -z "$left" ] || { echo "left: $left"; return 1; }; }
}

if copy rock; then
  check "luarocks make" rock_build
  check "clean tree after luarocks make" clean_tree rock
  check "exports of the rock's core.so" rock_exports
  check "the rock's C files" rock_c_files
  check "example from the rock tree" rock_example
else
  fail=$((fail + 1)); echo "installcheck: cannot copy HEAD"
fi
if copy dest; then
  check "make install DESTDIR" dest_install
  check "embed.c through pkg-config" dest_embed
  check "make uninstall" dest_uninstall
else
  fail=$((fail + 1)); echo "installcheck: cannot copy HEAD"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
