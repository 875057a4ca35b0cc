/*
** codechelper.c: a spec-only module for the transfer codec: round trips
** into a second, fresh lua_State, through conc_lua_api_t only.
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

#include "concurrent.h"  /* the payload layout, for raw bytes */
#include "ltable54.h"    /* the encoder's view of arrays, linked in */

#define STATE_MT "codechelper.State"

/* What runs in the second state, on a payload from the first. */
enum { OP_ROUNDTRIP, OP_CALL, OP_DOSTRING, OP_RAW };

typedef struct Trip {
  const conc_lua_api_t *api;
  int op;
  const void *in;       /* payload to decode there */
  const char *raw;      /* OP_RAW: bytes to decode there instead */
  size_t rawlen;
  void *out;            /* payload encoded there */
  int failed;           /* OP_CALL, OP_DOSTRING: 'out' is the error */
} Trip;

typedef struct State {
  lua_State *L;
} State;

static const conc_lua_api_t *getapi(lua_State *L) {
  const conc_lua_api_t *api = conc_lua_api(L);
  if (api == NULL)
    luaL_error(L, "require 'concurrent.core' first");
  return api;
}

/* Push a payload (in a userdata, so nothing leaks on a decode error)
** holding a copy of raw bytes and no futures. */
static const void *pushraw(lua_State *L, const char *b, size_t n) {
  conc_payload_t *p = (conc_payload_t *)lua_newuserdatauv(
      L, sizeof(conc_payload_t) + n, 0);
  p->size = n;
  p->nfutures = 0;
  p->kind = CONC_PAYLOAD_VALUES;
  memcpy(p + 1, b, n);
  return p;
}

/* Runs in the second state (protected): decode, do the operation,
** encode what goes back. */
static int there(lua_State *L) {
  Trip *t = (Trip *)lua_touserdata(L, 1);
  size_t len;
  int n;
  lua_settop(L, 0);
  if (t->op == OP_RAW) {
    n = t->api->decode(L, pushraw(L, t->raw, t->rawlen));
    lua_remove(L, 1);
  } else {
    n = t->api->decode(L, t->in);
  }
  if (t->op == OP_DOSTRING) {
    if (luaL_loadstring(L, luaL_checkstring(L, 1)) != LUA_OK)
      return lua_error(L);
    lua_replace(L, 1);
  }
  if (t->op == OP_CALL || t->op == OP_DOSTRING) {
    t->failed = lua_pcall(L, n - 1, LUA_MULTRET, 0) != LUA_OK;
    n = lua_gettop(L);
  }
  t->out = t->api->encode(L, 1, n, &len);
  return 0;
}

/* Runs in the first state (protected): decode what came back. */
static int back(lua_State *L) {
  Trip *t = (Trip *)lua_touserdata(L, 1);
  lua_settop(L, 0);
  return t->api->decode(L, t->out);
}

/* Decode a payload (1) with the api (2) and drop the values. */
static int back_raw(lua_State *L) {
  const void *p = lua_touserdata(L, 1);
  const conc_lua_api_t *api = (const conc_lua_api_t *)lua_touserdata(L, 2);
  api->decode(L, p);
  return 0;
}

/* Send the values from 'first' to the top to the second state, run 'op'
** there and push what comes back; raise what failed. */
static int trip(lua_State *L, State *s, int op, int first) {
  Trip t;
  size_t len;
  int status;
  memset(&t, 0, sizeof(t));
  t.api = getapi(L);
  t.op = op;
  if (op == OP_RAW)
    t.raw = luaL_checklstring(L, first, &t.rawlen);
  else
    t.in = t.api->encode(L, first, lua_gettop(L) - first + 1, &len);
  lua_pushcfunction(s->L, there);
  lua_pushlightuserdata(s->L, &t);
  status = lua_pcall(s->L, 1, 0, 0);
  t.api->freepayload((void *)t.in);
  if (status != LUA_OK) {
    lua_pushstring(L, luaL_tolstring(s->L, -1, NULL));
    lua_pop(s->L, 2);
    return lua_error(L);
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, back);
  lua_pushlightuserdata(L, &t);
  status = lua_pcall(L, 1, LUA_MULTRET, 0);
  t.api->freepayload(t.out);
  if (status != LUA_OK || t.failed)
    return lua_error(L);
  return lua_gettop(L);
}

static State *checkstate(lua_State *L) {
  State *s = (State *)luaL_checkudata(L, 1, STATE_MT);
  luaL_argcheck(L, s->L != NULL, 1, "closed state");
  return s;
}

/* s:roundtrip(...): the values there and back again. */
static int st_roundtrip(lua_State *L) {
  return trip(L, checkstate(L), OP_ROUNDTRIP, 2);
}

/* s:call(fn, ...): fn(...) there; its results back, or its error. */
static int st_call(lua_State *L) {
  return trip(L, checkstate(L), OP_CALL, 2);
}

/* s:dostring(code, ...): run a chunk there with the arguments. */
static int st_dostring(lua_State *L) {
  luaL_checkstring(L, 2);
  return trip(L, checkstate(L), OP_DOSTRING, 2);
}

/* s:decode(bytes): decode raw bytes there; the values back. */
static int st_decode(lua_State *L) {
  return trip(L, checkstate(L), OP_RAW, 2);
}

static int st_close(lua_State *L) {
  State *s = (State *)luaL_checkudata(L, 1, STATE_MT);
  if (s->L != NULL) {
    lua_close(s->L);
    s->L = NULL;
  }
  return 0;
}

/* Copy package[field] of L into L2. */
static void copypath(lua_State *L, lua_State *L2, const char *field) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, field);
  lua_getglobal(L2, "package");
  lua_pushstring(L2, lua_tostring(L, -1));
  lua_setfield(L2, -2, field);
  lua_pop(L2, 1);
  lua_pop(L, 2);
}

/* ch.state(): a fresh state with the standard libraries, this state's
** package paths, and concurrent.core required. */
static int ch_state(lua_State *L) {
  State *s = (State *)lua_newuserdatauv(L, sizeof(State), 0);
  s->L = NULL;
  luaL_setmetatable(L, STATE_MT);
  s->L = luaL_newstate();
  if (s->L == NULL)
    return luaL_error(L, "cannot create a state");
  luaL_openlibs(s->L);
  copypath(L, s->L, "path");
  copypath(L, s->L, "cpath");
  if (luaL_dostring(s->L, "require 'concurrent.core'") != LUA_OK) {
    lua_pushstring(L, lua_tostring(s->L, -1));
    st_close(L);
    return lua_error(L);
  }
  return 1;
}

/* ch.encode(...): the bytes of one transfer of the values, and the
** number of futures it carries. */
static int ch_encode(lua_State *L) {
  const conc_lua_api_t *api = getapi(L);
  size_t len;
  const conc_payload_t *p = (const conc_payload_t *)api->encode(
      L, 1, lua_gettop(L), &len);
  lua_pushlstring(L, (const char *)(p + 1), p->size);
  lua_pushinteger(L, (lua_Integer)p->nfutures);
  api->freepayload((void *)p);
  return 2;
}

/* ch.decode(bytes): decode raw bytes (no futures) in this state. */
static int ch_decode(lua_State *L) {
  const conc_lua_api_t *api = getapi(L);
  size_t n;
  const char *b = luaL_checklstring(L, 1, &n);
  const void *p = pushraw(L, b, n);
  lua_replace(L, 1);
  lua_settop(L, 1);
  return api->decode(L, p);
}

/* ch.bench(n, ...): encode the values and decode them back in this state
** 'n' times; returns the CPU seconds of this thread it took (other
** processes on the machine do not count) and the size of one encoding. */
static int ch_bench(lua_State *L) {
  const conc_lua_api_t *api = getapi(L);
  lua_Integer i, n = luaL_checkinteger(L, 1);
  int top = lua_gettop(L), nv = top - 1;
  size_t len = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  for (i = 0; i < n; i++) {
    const conc_payload_t *p = (const conc_payload_t *)api->encode(L, 2, nv,
                                                                &len);
    len = p->size;
    lua_pushcfunction(L, back_raw);
    lua_pushlightuserdata(L, (void *)p);
    lua_pushlightuserdata(L, (void *)api);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
      api->freepayload((void *)p);
      return lua_error(L);
    }
    api->freepayload((void *)p);
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  lua_pushnumber(L, (double)(t1.tv_sec - t0.tv_sec) +
                    (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
  lua_pushinteger(L, (lua_Integer)len);
  return 2;
}

/* ch.memcpy(size, n): CPU seconds for n copies of 'size' bytes, the
** reference for the string throughput. */
static int ch_memcpy(lua_State *L) {
  size_t size = (size_t)luaL_checkinteger(L, 1);
  lua_Integer i, n = luaL_checkinteger(L, 2);
  char *a = (char *)malloc(size), *b = (char *)malloc(size);
  struct timespec t0, t1;
  if (a == NULL || b == NULL) {
    free(a);
    free(b);
    return luaL_error(L, "not enough memory");
  }
  memset(a, 'x', size);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  for (i = 0; i < n; i++) {
    memcpy(b, a, size);
    a[i % size] = b[(i + 1) % size];  /* keep the copies observable */
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  free(a);
  free(b);
  lua_pushnumber(L, (double)(t1.tv_sec - t0.tv_sec) +
                    (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
  return 1;
}

/* ch.arrayview(t): whether the encoder's check of Lua's table layout
** (lua/ltable54.c) passes in this state and, if so, what its view of
** t's array part reads: a list of slots, each a number, true (another
** value) or false (nil), for the specs to compare with rawget. */
static int ch_arrayview(lua_State *L) {
  const lconc_slot *s;
  lua_Unsigned n, i;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushboolean(L, lconc_arraycheck(L));
  if (!lua_toboolean(L, -1))
    return 1;
  lua_newtable(L);  /* allocates before the view is read; nothing after */
  s = lconc_arraypart(L, 1, &n);
  for (i = 0; i < n; i++) {
    if (s[i].tt == LCONC_VNUMINT)
      lua_pushinteger(L, s[i].v.i);
    else if (s[i].tt == LCONC_VNUMFLT)
      lua_pushnumber(L, s[i].v.n);
    else
      lua_pushboolean(L, !lconc_slotisnil(&s[i]));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 2;
}

/* ch.hashview(): whether the check of Lua's table layout for the hash
** part (lua/ltable54.c, used on package.loaded by lua/lnames.c)
** passes in this state. */
static int ch_hashview(lua_State *L) {
  lua_pushboolean(L, lconc_hashcheck(L));
  return 1;
}

static const luaL_Reg st_methods[] = {
  {"roundtrip", st_roundtrip},
  {"call", st_call},
  {"dostring", st_dostring},
  {"decode", st_decode},
  {"close", st_close},
  {NULL, NULL}
};

static const luaL_Reg funcs[] = {
  {"state", ch_state},
  {"encode", ch_encode},
  {"decode", ch_decode},
  {"bench", ch_bench},
  {"memcpy", ch_memcpy},
  {"arrayview", ch_arrayview},
  {"hashview", ch_hashview},
  {NULL, NULL}
};

__attribute__((visibility("default")))
LUAMOD_API int luaopen_codechelper(lua_State *L);

LUAMOD_API int luaopen_codechelper(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "concurrent.core");
  lua_call(L, 1, 0);
  if (luaL_newmetatable(L, STATE_MT)) {
    luaL_newlib(L, st_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, st_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, st_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
