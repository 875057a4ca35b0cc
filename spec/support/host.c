/*
** host.c: a minimal 'lua script [args]' interpreter for 'make asan/tsan'.
** Built with -fsanitize=..., it puts the sanitizer runtime in the process
** before any C module is loaded; see the Makefile.
*/

#include <stdio.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"


/* Error handler: add a traceback to the message, as lua.c does. */
static int msghandler (lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {  /* error object is not a string? */
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}


/* The global 'arg' as lua.c builds it: the script at 0, the host at -1. */
static void createargtable (lua_State *L, char **argv, int argc) {
  int i;
  lua_createtable(L, argc - 2, 2);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
}


/*
** Runs in protected mode: open the libraries, load the script and call it
** with argv[2..] as its '...'.  Returns true when the script succeeded.
*/
static int pmain (lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int i, status;
  luaL_checkversion(L);
  luaL_openlibs(L);
  createargtable(L, argv, argc);
  lua_gc(L, LUA_GCGEN, 0, 0);  /* the stock lua5.4 runs in this mode too */
  lua_pushcfunction(L, msghandler);
  status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) {
    for (i = 2; i < argc; i++)
      lua_pushstring(L, argv[i]);
    status = lua_pcall(L, argc - 2, 0, 3);  /* 3: 'msghandler' */
  }
  if (status != LUA_OK) {
    fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
    fflush(stderr);
  }
  lua_pushboolean(L, status == LUA_OK);
  return 1;
}


/*
** The state is closed before returning, so LeakSanitizer reports only what
** the modules leak, not Lua's own live objects.  (A script ending in
** 'os.exit(code, true)', as busted does on failure, closes it itself.)
*/
int main (int argc, char **argv) {
  int status, ok;
  lua_State *L;
  if (argc < 2) {
    fprintf(stderr, "usage: %s script [args]\n", argv[0]);
    return EXIT_FAILURE;
  }
  L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", argv[0]);
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  ok = (status == LUA_OK) && lua_toboolean(L, -1);
  if (status != LUA_OK)  /* only a memory error can get here */
    fprintf(stderr, "%s: %s\n", argv[0], lua_tostring(L, -1));
  lua_close(L);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
