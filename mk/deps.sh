#!/bin/sh
# Check the Debian packages a make target needs; install the missing ones
# with apt-get when run as root, otherwise print the command to run.
#
# Usage: mk/deps.sh NEED...   where NEED is one of
#   cc       the C compiler $CC (gcc, or clang when $CC names it)
#   lua      the interpreter $LUA (lua5.4)
#   headers  lua.h, lauxlib.h and lualib.h in $LUA_INC (liblua5.4-dev)
#   busted   busted in PATH, its runner loadable by $LUA (lua-busted)
#   luv      the luv module loadable by $LUA (lua-luv)
#   fuzzer   $CC (clang) links a libFuzzer target (libclang-rt-<major>-dev)
#   sanitizers $CC (clang) links programs under ASan+UBSan and under TSan
#            (libclang-rt-<major>-dev)
#   valgrind valgrind in PATH (valgrind)
#   python3  python3 in PATH, the benchmark's Python baseline (python3)
#   luarocks luarocks in PATH (luarocks)
#   pkgconfig pkg-config in PATH (pkg-config)
#   ldoc     ldoc in PATH, the API reference generator (lua-ldoc), and
#            the Markdown module it formats with (lua-markdown)
#   script   script in PATH, a pseudo-terminal for the specs (bsdutils)
#   gnuplot  gnuplot in PATH, the benchmark chart (gnuplot-nox)
#   mpi      Open MPI: mpicc and mpiexec in PATH (libopenmpi-dev,
#            openmpi-bin), for make mpi and make test-mpi only
#   mpi4py   mpi4py importable by Debian's /usr/bin/python3 (python3-mpi4py), the MPI
#            benchmark's baseline
# Environment: LUA (default lua5.4), LUA_INC (default /usr/include/lua5.4),
# CC (default gcc; a versioned clang such as clang-16 is its own package);
# CONCURRENT_NO_INSTALL=1 reports instead of installing
# even as root (the specs use it).

LUA=${LUA:-lua5.4}
LUA_INC=${LUA_INC:-/usr/include/lua5.4}
CC=${CC:-gcc}

have_cmd() {
  command -v "$1" >/dev/null 2>&1
}

have_lua() {
  have_cmd "$LUA"
}

# Can $LUA require module $1?  Without an interpreter the answer comes from
# dpkg (package $2), so a missing lua5.4 does not also flag every module.
have_module() {
  if have_lua; then
    "$LUA" -e "require '$1'" >/dev/null 2>&1
  else
    dpkg-query -W -f '${Status}' "$2" 2>/dev/null | grep -q 'ok installed'
  fi
}

# Can $CC link program text $1 with compiler flags $2?  Trying is the only
# sure test: the runtimes sit in a directory named for clang's full version.
can_link() {
  dir=$(mktemp -d "${TMPDIR:-/tmp}/concurrent-deps.XXXXXX") || return 1
  printf '%s\n' "$1" >"$dir/f.c"
  # word splitting of $2 is wanted: one argument per flag
  "$CC" $2 "$dir/f.c" -o "$dir/f" >/dev/null 2>&1
  ok=$?
  rm -rf "$dir"
  return $ok
}

have_fuzzer() {
  can_link '#include <stddef.h>
int LLVMFuzzerTestOneInput(const char *d, size_t n);
int LLVMFuzzerTestOneInput(const char *d, size_t n) { (void)d; (void)n; return 0; }' \
    -fsanitize=fuzzer
}

have_sanitizers() {
  can_link 'int main(void) { return 0; }' -fsanitize=address,undefined &&
    can_link 'int main(void) { return 0; }' -fsanitize=thread
}

# The major version of $CC (clang), for the versioned runtime package:
# from the name of a versioned clang (clang-16), which may not be installed
# yet, else from the compiler; Debian 12's plain clang is 14.
clang_major() {
  case $CC in clang-[0-9]*) echo "${CC#clang-}"; return ;; esac
  v=$("$CC" -dumpversion 2>/dev/null)
  echo "${v%%.*}" | grep -x '[0-9][0-9]*' || echo 14
}

# Print the Debian package providing NEED $1 if it is missing.
check() {
  case $1 in
    cc)
      if ! have_cmd "$CC"; then
        case $CC in clang-[0-9]*) echo "$CC" ;; *clang*) echo clang ;; *) echo gcc ;; esac
      fi ;;
    lua) have_lua || echo lua5.4 ;;
    headers)
      for h in lua.h lauxlib.h lualib.h; do
        if [ ! -r "$LUA_INC/$h" ]; then echo liblua5.4-dev; break; fi
      done ;;
    busted)
      if ! have_cmd busted || ! have_module busted.runner lua-busted; then
        echo lua-busted
      fi ;;
    luv) have_module luv lua-luv || echo lua-luv ;;
    fuzzer) have_fuzzer || echo "libclang-rt-$(clang_major)-dev" ;;
    sanitizers) have_sanitizers || echo "libclang-rt-$(clang_major)-dev" ;;
    valgrind) have_cmd valgrind || echo valgrind ;;
    python3) have_cmd python3 || echo python3 ;;
    luarocks) have_cmd luarocks || echo luarocks ;;
    pkgconfig) have_cmd pkg-config || echo pkg-config ;;
    ldoc)
      p=
      have_cmd ldoc || p=lua-ldoc
      dpkg-query -W -f '${Status}' lua-markdown 2>/dev/null |
        grep -q 'ok installed' || p="${p:+$p }lua-markdown"
      [ -z "$p" ] || echo "$p" ;;
    script) have_cmd script || echo bsdutils ;;
    gnuplot) have_cmd gnuplot || echo gnuplot-nox ;;
    mpi) have_cmd mpicc && have_cmd mpiexec || echo libopenmpi-dev openmpi-bin ;;
    mpi4py)
      /usr/bin/python3 -c 'import mpi4py.futures' >/dev/null 2>&1 || echo python3-mpi4py ;;
  esac
}

missing() {
  list=
  for need in "$@"; do
    pkg=$(check "$need")
    [ -n "$pkg" ] || continue
    case " $list " in
      *" $pkg "*) ;;
      *) list=${list:+$list }$pkg ;;
    esac
  done
  echo "$list"
}

for need in "$@"; do
  case $need in
    cc|lua|headers|busted|luv|valgrind|python3|luarocks|pkgconfig|ldoc|script|gnuplot|mpi|mpi4py) ;;
    fuzzer|sanitizers)
      case $CC in
        *clang*) ;;
        *) echo "mk/deps.sh: the $need need wants CC=clang, not '$CC'" >&2
           exit 2 ;;
      esac ;;
    *) echo "mk/deps.sh: unknown need '$need'" >&2; exit 2 ;;
  esac
done

pkgs=$(missing "$@")
[ -z "$pkgs" ] && exit 0

uid=$(id -u)
if [ "$uid" = 0 ] && [ "${CONCURRENT_NO_INSTALL:-0}" = 0 ]; then
  echo "installing missing Debian packages: $pkgs"
  # word splitting of $pkgs is wanted: one argument per package
  apt-get update &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs || exit 1
  pkgs=$(missing "$@")
  [ -z "$pkgs" ] && exit 0
  echo "still missing after apt-get: $pkgs" >&2
  exit 1
fi

if [ "$uid" = 0 ]; then sudo=; else sudo='sudo '; fi
echo "missing Debian packages: $pkgs" >&2
echo "run: ${sudo}apt-get update && ${sudo}apt-get install -y $pkgs" >&2
exit 1
