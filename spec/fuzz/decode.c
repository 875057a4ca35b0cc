/*
** decode.c: libFuzzer target for the transfer decoder (lua/lcodec.c), on
** raw bytes as from a pipe, for an untrusted peer (LCONC_DEC_NOCODE).
*/
#include <stdint.h>
#include <stdlib.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "lconcurrent.h"

/* The Lua heap is capped, so that a decoder that allocated for data
** that is not there would fail here loudly (a single allocation over
** MAXALLOC is a finding); a capped total turns into a memory error. */
#define MAXALLOC ((size_t)16 << 20)
#define MAXTOTAL ((size_t)256 << 20)

int luaopen_concurrent_core(lua_State *L);

static size_t total;

static void *capped(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (ptr == NULL)
    osize = 0;
  if (nsize == 0) {
    free(ptr);
    total -= osize;
    return NULL;
  }
  if (nsize > MAXALLOC)
    abort();
  if (total - osize + nsize > MAXTOTAL)
    return NULL;
  ptr = realloc(ptr, nsize);
  if (ptr != NULL)
    total = total - osize + nsize;
  return ptr;
}

static int decode(lua_State *L) {
  const void *b = lua_touserdata(L, 1);
  size_t n = (size_t)lua_tointeger(L, 2);
  lua_settop(L, 0);
  return lconc_decode_bytes(L, b, n, LCONC_DEC_NOCODE);
}

/* A state with a few libraries (C functions to name, none that touches
** the outside world if a decoded metatable makes it a finalizer), the
** module (its error classes are registry-named tables) and one more
** named table. */
static lua_State *newstate(void) {
  lua_State *L = lua_newstate(capped, NULL);
  if (L == NULL)
    abort();
  luaL_requiref(L, "string", luaopen_string, 0);
  luaL_requiref(L, "math", luaopen_math, 0);
  luaL_requiref(L, "table", luaopen_table, 0);
  luaL_requiref(L, "concurrent.core", luaopen_concurrent_core, 0);
  luaL_newmetatable(L, "fuzz.Named");
  lua_settop(L, 0);
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  static unsigned runs;
  if (L == NULL)
    L = newstate();
  lua_pushcfunction(L, decode);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)size);
  lua_pcall(L, 2, 0, 0);
  lua_settop(L, 0);
  if (++runs % 4096 == 0)  /* run the finalizers of what was decoded */
    lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
