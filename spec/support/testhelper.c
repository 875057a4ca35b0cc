/*
** testhelper.c: a spec-only module acting as a C host: it completes
** futures from threads of its own, through conc_lua_api_t only.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua.h"
#include "lauxlib.h"

#include "concurrent.h"

#define JOB_MT "testhelper.job"

typedef enum { SET_RESULT, SET_EXCEPTION, CANCEL } action;

/* One host thread completing 'n' futures, each after 'delay' seconds. */
typedef struct job {
  const conc_lua_api_t *api;
  pthread_t thread;
  int started, joined;
  action act;
  double delay;
  int n;
  conc_future_t **fs;    /* references */
  void **payloads;       /* one encoded payload per future, or NULL */
  size_t *lens;
  conc_free_fn freepayload;
  int rejected;          /* completions refused with CONC_ESTATE */
} job;

static const conc_lua_api_t *getapi(lua_State *L) {
  const conc_lua_api_t *api = conc_lua_api(L);
  if (api == NULL)
    luaL_error(L, "require 'concurrent.core' first");
  return api;
}

static void sleepfor(double secs) {
  struct timespec ts;
  if (secs <= 0) return;
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL);
}

static void *run(void *arg) {
  job *j = (job *)arg;
  int i, r;
  for (i = 0; i < j->n; i++) {
    sleepfor(j->delay);
    if (j->act == CANCEL)
      r = j->api->future_cancel(j->fs[i]) ? 0 : CONC_ESTATE;
    else if (j->act == SET_RESULT)
      r = j->api->future_set_result(j->fs[i], j->payloads[i], j->lens[i],
                                    j->freepayload);
    else
      r = j->api->future_set_exception(j->fs[i], j->payloads[i], j->lens[i],
                                       j->freepayload);
    if (r != 0) {
      j->rejected++;
      if (j->payloads != NULL) j->freepayload(j->payloads[i]);
    }
    if (j->payloads != NULL) j->payloads[i] = NULL;
  }
  return NULL;
}

static void joinjob(job *j) {
  int i;
  if (j->started && !j->joined) {
    pthread_join(j->thread, NULL);
    j->joined = 1;
  }
  for (i = 0; i < j->n; i++) {
    if (j->fs != NULL && j->fs[i] != NULL) j->api->future_unref(j->fs[i]);
    if (j->payloads != NULL && j->payloads[i] != NULL)
      j->freepayload(j->payloads[i]);
  }
  free(j->fs);
  free(j->payloads);
  free(j->lens);
  j->fs = NULL;
  j->payloads = NULL;
  j->lens = NULL;
  j->n = 0;
}

static int job_join(lua_State *L) {
  job *j = (job *)luaL_checkudata(L, 1, JOB_MT);
  int rejected;
  joinjob(j);
  rejected = j->rejected;
  lua_pushinteger(L, rejected);
  return 1;
}

/* th.complete(fs, delay, action, value): a host thread completes each
** future of the array 'fs' in turn, 'delay' seconds apart, with
** 'action' "result" (value 'value' + the index), "exception" ('value')
** or "cancel". Returns a job; job:join() returns how many were refused. */
static int th_complete(lua_State *L) {
  static const char *const acts[] = {"result", "exception", "cancel", NULL};
  const conc_lua_api_t *api = getapi(L);
  int i, n;
  job *j;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (int)luaL_len(L, 1);
  j = (job *)lua_newuserdatauv(L, sizeof(*j), 0);
  memset(j, 0, sizeof(*j));
  luaL_setmetatable(L, JOB_MT);
  j->delay = luaL_optnumber(L, 2, 0);
  j->act = (action)luaL_checkoption(L, 3, "result", acts);
  j->api = api;
  j->freepayload = api->freepayload;
  j->fs = (conc_future_t **)calloc((size_t)n + 1, sizeof(*j->fs));
  j->n = n;
  if (j->act != CANCEL) {
    j->payloads = (void **)calloc((size_t)n + 1, sizeof(void *));
    j->lens = (size_t *)calloc((size_t)n + 1, sizeof(size_t));
  }
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, 1, i + 1);
    j->fs[i] = api->tofuture(L, -1);
    if (j->fs[i] == NULL)
      return luaL_argerror(L, 1, "futures expected");
    api->future_ref(j->fs[i]);
    lua_pop(L, 1);
    if (j->act == SET_RESULT && lua_isinteger(L, 4))
      lua_pushinteger(L, lua_tointeger(L, 4) + i + 1);
    else if (j->act != CANCEL)
      lua_pushvalue(L, 4);
    if (j->act != CANCEL) {
      j->payloads[i] = api->encode(L, lua_gettop(L), 1, &j->lens[i]);
      lua_pop(L, 1);
    }
  }
  if (pthread_create(&j->thread, NULL, run, j) != 0)
    return luaL_error(L, "cannot start a host thread");
  j->started = 1;
  return 1;
}

static int job_gc(lua_State *L) {
  joinjob((job *)luaL_checkudata(L, 1, JOB_MT));
  return 0;
}


/* A C callback that counts its calls in an int the spec can read. */
static void count_cb(conc_future_t *f, void *arg) {
  (void)f;
  __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

static int counter_get(lua_State *L) {
  int *c = (int *)luaL_checkudata(L, 1, "testhelper.counter");
  lua_pushinteger(L, __atomic_load_n(c, __ATOMIC_SEQ_CST));
  return 1;
}

/* th.c_callback(f) -> counter; counter:get() is how often it ran. The
** counter must outlive the future's completion: the spec keeps it. */
static int th_c_callback(lua_State *L) {
  const conc_lua_api_t *api = getapi(L);
  conc_future_t *f = api->tofuture(L, 1);
  int *c;
  luaL_argcheck(L, f != NULL, 1, "future expected");
  c = (int *)lua_newuserdatauv(L, sizeof(int), 0);
  *c = 0;
  luaL_setmetatable(L, "testhelper.counter");
  if (api->future_add_callback(f, count_cb, c) != 0)
    return luaL_error(L, "not enough memory");
  return 1;
}

/* th.wait_c(f, timeout) -> true if done: the core's own wait. */
static int th_wait_c(lua_State *L) {
  const conc_lua_api_t *api = getapi(L);
  conc_future_t *f = api->tofuture(L, 1);
  luaL_argcheck(L, f != NULL, 1, "future expected");
  lua_pushboolean(L, api->future_wait(f,
                     api->deadline(luaL_checknumber(L, 2))) == 0);
  return 1;
}

/* th.userdata(size, byte) -> a full userdata of 'size' bytes, each
** 'byte', with no metatable: another library's object, for the checks
** of what a method takes as its self. */
static int th_userdata(lua_State *L) {
  size_t size = (size_t)luaL_checkinteger(L, 1);
  void *u = lua_newuserdatauv(L, size, 0);
  memset(u, (int)luaL_checkinteger(L, 2), size);
  return 1;
}

/* th.lightuserdata(n) -> the light userdata (void *)n. */
static int th_lightuserdata(lua_State *L) {
  lua_pushlightuserdata(L, (void *)(size_t)luaL_checkinteger(L, 1));
  return 1;
}

/* th.set_raw(f, bytes[, "exception"]) -> the code: a host completing
** 'f' with raw bytes (a malloc'd copy freed with free), not a payload
** of 'encode'. A refused block stays the host's: freed here. With nil
** for 'bytes', NULL: no values, which the API allows. */
static int th_set_raw(lua_State *L) {
  const conc_lua_api_t *api = getapi(L);
  conc_future_t *f = api->tofuture(L, 1);
  size_t len;
  const char *b;
  int exc = lua_toboolean(L, 3);
  void *copy;
  int r;
  luaL_argcheck(L, f != NULL, 1, "future expected");
  if (lua_isnil(L, 2)) {
    r = exc ? api->future_set_exception(f, NULL, 0, NULL)
            : api->future_set_result(f, NULL, 0, NULL);
    lua_pushinteger(L, r);
    return 1;
  }
  b = luaL_checklstring(L, 2, &len);
  if ((copy = malloc(len + 1)) == NULL)
    return luaL_error(L, "not enough memory");
  memcpy(copy, b, len + 1);
  r = exc ? api->future_set_exception(f, copy, len, free)
          : api->future_set_result(f, copy, len, free);
  if (r != 0)
    free(copy);
  lua_pushinteger(L, r);
  return 1;
}


/* {======================================================================
** failalloc: a state's Lua allocator that fails on cue
** ======================================================================= */

/* The allocator it replaced, and how many more allocations (new blocks
** or growths) it grants; past them, every one fails until failalloc()
** puts the old allocator back. Frees and shrinks never fail: Lua takes
** them as infallible. Its code must stay mapped while any state uses it,
** even after a state has dlclose'd this library: it is linked with
** -z nodelete (Makefile), so dlclose leaves it loaded. */
typedef struct failer {
  lua_Alloc f;
  void *ud;
  long left;
} failer;

static void *failing(void *ud, void *ptr, size_t osize, size_t nsize) {
  failer *fl = (failer *)ud;
  int grows = nsize > 0 && (ptr == NULL || nsize > osize);
  if (grows) {
    if (fl->left <= 0)
      return NULL;
    fl->left--;
  }
  return fl->f(fl->ud, ptr, osize, nsize);
}

/* Put back the allocator 'fl' replaced, if it is in place. */
static void restorealloc(lua_State *L) {
  void *ud;
  if (lua_getallocf(L, &ud) == failing) {
    failer *fl = (failer *)ud;
    lua_setallocf(L, fl->f, fl->ud);
    free(fl);
  }
}

/*
** th.failalloc(n): the calling state's allocator grants 'n' more
** allocations, then fails each until th.failalloc() (no argument) puts
** the old one back. Lua code between the two must not need memory of
** its own (a closure, a larger stack for the next call), or its error
** is raised outside any pcall: th.failalloc(n, fn, ...) instead arms it,
** calls fn(...) in protected mode and disarms it, returning what pcall
** would, after how many of the 'n' grants were left unused. Disarming
** returns that count (nil when none was armed).
*/
static int th_failalloc(lua_State *L) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  long n = lua_isnoneornil(L, 1) ? 0 : (long)luaL_checkinteger(L, 1);
  failer *fl;
  int top, st;
  if (lua_isnoneornil(L, 1)) {
    if (f == failing)
      lua_pushinteger(L, ((failer *)ud)->left);
    else
      lua_pushnil(L);
    restorealloc(L);
    return 1;
  }
  if (f == failing)
    fl = (failer *)ud;
  else {
    if ((fl = (failer *)malloc(sizeof(*fl))) == NULL)
      return luaL_error(L, "not enough memory");
    fl->f = f;
    fl->ud = ud;
  }
  luaL_checkstack(L, 4, NULL);
  fl->left = n;
  lua_setallocf(L, failing, fl);
  if (lua_isnone(L, 2))
    return 0;
  top = lua_gettop(L);
  st = lua_pcall(L, top - 2, LUA_MULTRET, 0);
  n = fl->left;
  restorealloc(L);
  lua_pushinteger(L, n);
  lua_replace(L, 1);
  lua_pushboolean(L, st == LUA_OK);
  lua_insert(L, 2);
  return lua_gettop(L);
}

/* }====================================================================== */

int luaopen_testhelper(lua_State *L);

__attribute__((visibility("default")))
int luaopen_testhelper(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"complete", th_complete},
    {"c_callback", th_c_callback},
    {"wait_c", th_wait_c},
    {"set_raw", th_set_raw},
    {"failalloc", th_failalloc},
    {"userdata", th_userdata},
    {"lightuserdata", th_lightuserdata},
    {NULL, NULL}
  };
  if (luaL_newmetatable(L, JOB_MT)) {
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, job_gc);
    lua_setfield(L, -2, "__close");
    lua_newtable(L);
    lua_pushcfunction(L, job_join);
    lua_setfield(L, -2, "join");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, "testhelper.counter")) {
    lua_newtable(L);
    lua_pushcfunction(L, counter_get);
    lua_setfield(L, -2, "get");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
