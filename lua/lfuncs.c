/*
** lfuncs.c: functions across states. Lua functions travel as bytecode
** dumps, cached on both sides; C functions travel by qualified name.
*/
#include <stdint.h>
#include <string.h>

#include "lfuncs.h"

/*
** The receiving cache holds at most this many dumps per state; past it,
** it starts over (a program that makes functions with 'load' in a loop
** must not grow a worker without bound).
*/
#if !defined(CONC_MAXFUNCCACHE)
#define CONC_MAXFUNCCACHE 1024
#endif

/* Stack slots the functions below use at most (the codec calls them
** deep in a nested value, where only a few are guaranteed). */
#define STACKNEED 16

/* Registry keys (static addresses, one per cache). */
static const char DUMPS = 'd';   /* function -> dump, weak keys */
static const char LOADS = 'l';   /* dump hash -> {dump, closure}, n = count */
static const char CNAMES = 'c';  /* C function -> {module, key} */

/* Push the registry table at 'key', making it (with metatable mode
** 'mode', or none) on first use. */
static void getcache(lua_State *L, const void *key, const char *mode) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_newtable(L);
  if (mode != NULL) {
    lua_createtable(L, 0, 1);
    lua_pushstring(L, mode);
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}


/* {======================================================================
** Dumping (the sending side)
** ======================================================================= */

/* lua_dump writes into a luaL_Buffer made on the first call, as
** lstrlib.c's str_dump does (the buffer lives on the stack above the
** function being dumped). */
typedef struct Writer {
  int init;
  luaL_Buffer B;
} Writer;

static int writer(lua_State *L, const void *b, size_t n, void *ud) {
  Writer *w = (Writer *)ud;
  if (!w->init) {
    w->init = 1;
    luaL_buffinit(L, &w->B);
  }
  luaL_addlstring(&w->B, (const char *)b, n);
  return 0;
}

/* The cache is keyed by the function value in a weak-keyed table, so an
** entry goes with its function: a later function at the same address
** can never see a stale dump. Debug info is kept (tracebacks, upvalue
** names, which the receiver needs to find '_ENV'). */
const char *lconc_dumpfunc(lua_State *L, int idx, size_t *len) {
  Writer w;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, STACKNEED, NULL);
  getcache(L, &DUMPS, "k");
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TSTRING) {
    lua_remove(L, -2);
    return lua_tolstring(L, -1, len);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  w.init = 0;
  lua_dump(L, writer, &w, 0);
  luaL_pushresult(&w.B);     /* a Lua function always dumps some bytes */
  lua_remove(L, -2);         /* the function copy */
  lua_pushvalue(L, idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);         /* cache[f] = dump */
  lua_remove(L, -2);         /* the cache */
  return lua_tolstring(L, -1, len);
}

/* }====================================================================== */


/* {======================================================================
** Loading (the receiving side)
** ======================================================================= */

/* A word-at-a-time hash of a dump: cheap next to hashing it as a Lua
** string key; a collision only costs a reload (entries are compared in
** full). */
static lua_Integer dumphash(const char *b, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15u ^ (uint64_t)n;
  uint64_t w;
  for (; n >= 8; b += 8, n -= 8) {
    memcpy(&w, b, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdu;
    h ^= h >> 32;
  }
  w = 0;
  memcpy(&w, b, n);
  h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
  h ^= h >> 29;
  return (lua_Integer)h;
}

typedef struct Reader {
  const char *b;
  size_t n;
} Reader;

static const char *reader(lua_State *L, void *ud, size_t *size) {
  Reader *r = (Reader *)ud;
  (void)L;
  *size = r->n;
  r->n = 0;
  return *size > 0 ? r->b : NULL;
}

int lconc_nupvalues(lua_State *L, int idx) {
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">u", &ar);
  return ar.nups;
}

/* Are all upvalues of the Lua function at the top named '_ENV'? */
static int onlyenv(lua_State *L) {
  const char *name;
  int i, n = lconc_nupvalues(L, -1);
  for (i = 1; i <= n; i++) {
    if ((name = lua_getupvalue(L, -1, i)) == NULL)
      return 0;  /* bad bytecode: the codec refuses it */
    lua_pop(L, 1);
    if (strcmp(name, "_ENV") != 0)
      return 0;
  }
  return 1;
}

/* With the cache at the top, push its closure for the dump if it holds
** one (returns 1), else nothing (returns 0). */
static int cached(lua_State *L, lua_Integer h, const char *b, size_t n) {
  const char *d;
  size_t dn;
  if (lua_rawgeti(L, -1, h) != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_rawgeti(L, -1, 1);
  d = lua_tolstring(L, -1, &dn);
  if (d == NULL || dn != n || memcmp(d, b, n) != 0) {
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 1);
  lua_rawgeti(L, -1, 2);
  lua_remove(L, -2);
  return 1;
}

/* With the cache at -2 and the closure at -1, remember the closure. */
static void remember(lua_State *L, lua_Integer h, const char *b, size_t n) {
  lua_Integer count;
  lua_getfield(L, -2, "n");
  count = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (count >= CONC_MAXFUNCCACHE) {  /* start over */
    lua_newtable(L);
    lua_replace(L, -3);
    lua_pushvalue(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &LOADS);
    count = 0;
  }
  lua_createtable(L, 2, 0);
  lua_pushlstring(L, b, n);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 2);
  lua_rawseti(L, -3, h);
  lua_pushinteger(L, count + 1);
  lua_setfield(L, -3, "n");
}

int lconc_loadfunc(lua_State *L, const char *b, size_t n) {
  lua_Integer h = dumphash(b, n);
  Reader r;
  int shared;
  luaL_checkstack(L, STACKNEED, NULL);
  getcache(L, &LOADS, NULL);
  if (cached(L, h, b, n)) {
    lua_remove(L, -2);
    return 1;
  }
  r.b = b;
  r.n = n;
  if (lua_load(L, reader, &r, "=(transfer)", "b") != LUA_OK) {
    lua_remove(L, -2);
    return -1;
  }
  shared = onlyenv(L);
  if (shared)
    remember(L, h, b, n);
  lua_remove(L, -2);
  return shared;
}

/* }====================================================================== */


/* {======================================================================
** C functions by name
** ======================================================================= */

/* Record in the cache at 'cache' every C function field of the module
** table at the top, named 'mod', that has no name yet. */
static void scanmodule(lua_State *L, int cache, int mod) {
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_iscfunction(L, -1)) {
      if (lua_rawget(L, cache) == LUA_TNIL) {  /* pops the copy below */
        lua_pop(L, 1);
        lua_pushvalue(L, -1);                    /* the key again */
        lua_rawget(L, -3);
        lua_createtable(L, 2, 0);
        lua_pushvalue(L, mod);
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, -3);
        lua_rawseti(L, -2, 2);
        lua_rawset(L, cache);
      } else {
        lua_pop(L, 1);
      }
    } else {
      lua_pop(L, 1);
    }
  }
}

/* Scan package.loaded into the cache at 'cache'; "_G" comes last, so
** that a library function is named by its library (string.rep). */
static void scanloaded(lua_State *L, int cache) {
  int pass;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  for (pass = 0; pass < 2; pass++) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1) &&
          (strcmp(lua_tostring(L, -2), "_G") == 0) == pass)
        scanmodule(L, cache, lua_absindex(L, -2));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* Is package.loaded[entry[1]][entry[2]] (entry at the top) still the
** function at 'f'? If so, leave module and key pushed in place of the
** entry; if not, pop the entry. */
static int stillnamed(lua_State *L, int f) {
  int top = lua_gettop(L);
  int ok = 0;
  lua_rawgeti(L, top, 1);
  lua_rawgeti(L, top, 2);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_istable(L, -1)) {
    lua_pushvalue(L, top + 1);
    if (lua_rawget(L, -2) == LUA_TTABLE) {
      lua_pushvalue(L, top + 2);
      lua_rawget(L, -2);
      ok = lua_rawequal(L, -1, f);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (ok)
    lua_remove(L, top);
  else
    lua_settop(L, top - 1);
  return ok;
}

int lconc_cfuncname(lua_State *L, int idx) {
  int cache, pass;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, STACKNEED, NULL);
  getcache(L, &CNAMES, NULL);
  cache = lua_gettop(L);
  for (pass = 0; pass < 2; pass++) {
    lua_pushvalue(L, idx);
    if (lua_rawget(L, cache) == LUA_TTABLE && stillnamed(L, idx)) {
      lua_remove(L, cache);
      return 1;
    }
    if (pass == 0) {  /* unknown or stale: rescan what is loaded now */
      lua_settop(L, cache);
      lua_newtable(L);
      lua_replace(L, cache);
      lua_pushvalue(L, cache);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &CNAMES);
      scanloaded(L, cache);
    }
  }
  lua_settop(L, cache - 1);
  return 0;
}

/* Call require(mod) in protected mode; leaves nothing on the stack. */
static void requiremodule(lua_State *L, int mod) {
  if (lua_getglobal(L, "require") != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, mod);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    lua_pop(L, 1);
}

int lconc_cfunclookup(lua_State *L, int mod, int key, int userequire) {
  luaL_checkstack(L, STACKNEED, NULL);
  mod = lua_absindex(L, mod);
  key = lua_absindex(L, key);
  if (userequire) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, mod);
    if (lua_rawget(L, -2) == LUA_TNIL)
      requiremodule(L, mod);
    lua_pop(L, 2);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_istable(L, -1)) {
    lua_pushvalue(L, mod);
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushfstring(L, "module '%s' not loaded", lua_tostring(L, mod));
    return 0;
  }
  lua_pushvalue(L, key);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_type(L, -1) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lua_pushfstring(L, "no function '%s.%s'", lua_tostring(L, mod),
                    lua_tostring(L, key));
    return 0;
  }
  return 1;
}

/* }====================================================================== */
