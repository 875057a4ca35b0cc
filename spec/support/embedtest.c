/*
** embedtest.c: a C host that embeds Lua in several states of its own
** (spec/20-embed_spec.lua). Each case is a program run: 'embedtest CASE'
** prints "ok" and exits 0, or fails (a message, a crash, a sanitizer
** report). It finds the module through LUA_PATH and LUA_CPATH, as
** examples/embed.c does.
**
**   afterclose  a future a state made (with a Lua callback pending) is
**               completed, read and released by a host thread after the
**               only state that loaded the module has closed
**   states      states in host threads of their own, each running a
**               thread pool, hand their futures to each other; a host
**               thread completes them while the states close, in any
**               order, with their pools still busy; the host releases
**               its references after the last state has closed
**   hostgc      a finalizer that makes a future and submits a task, run
**               by the host's own full collection: called through a
**               function (lua_pcall) it may; called at the top level it
**               is refused as if the state were closing (README, "From
**               C": the two cannot be told apart); prints what each got
**   cycle       values that reach the future they would complete (its
**               own handle, or a finished future holding it) are refused
**               with CONC_EINVAL and stay the host's
**   encoderange encode refuses values that are not on the stack (past
**               its top, index 0) and negative counts; prints each call
**   nullfuture  a NULL future (tofuture of no future) passed on: refused
*/
#define _POSIX_C_SOURCE 200809L  /* nanosleep, with plain -std=c99 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "concurrent.h"

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

static void fail(const char *what, const char *why) {
  fprintf(stderr, "embedtest: %s: %s\n", what, why);
  exit(1);
}

static void sleepms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* A state with the module open, and its C API table. */
static lua_State *newstate(const conc_lua_api_t **api) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    fail("luaL_newstate", "out of memory");
  luaL_openlibs(L);
  if (luaL_dostring(L, "require 'concurrent.futures'") != LUA_OK)
    fail("require", lua_tostring(L, -1));
  *api = conc_lua_api(L);
  if (*api == NULL)
    fail("conc_lua_api", "concurrent.core not found");
  return L;
}

/* Run 'code' with the values on the stack above 'nargs'; keep 'nres'. */
static void run(lua_State *L, const char *code, int nargs, int nres) {
  if (luaL_loadstring(L, code) != LUA_OK)
    fail("load", lua_tostring(L, -1));
  lua_insert(L, -nargs - 1);
  if (lua_pcall(L, nargs, nres, 0) != LUA_OK)
    fail("run", lua_tostring(L, -1));
}

static int ccalls;  /* C callbacks run (one host thread at a time) */

static void ccallback(conc_future_t *f, void *arg) {
  (void)f;
  (void)arg;
  ccalls++;
}


/* {======================================================================
** afterclose
** ======================================================================= */

static int case_afterclose(void) {
  const conc_lua_api_t *api;
  lua_State *L = newstate(&api);
  conc_future_t *f;
  const void *data;
  size_t len;
  int failed = -1, r;
  run(L, "local cf = require 'concurrent.futures'\n"
         "local f = cf.Future()\n"
         "f:add_done_callback(function() print('never: the state is gone') end)\n"
         "return f\n", 0, 1);
  f = api->tofuture(L, -1);
  if (f == NULL)
    fail("afterclose", "Lua returned no future");
  api->future_ref(f);
  if (api->future_add_callback(f, ccallback, NULL) != 0)
    fail("afterclose", "future_add_callback refused");
  lua_close(L);
  /* the module's code must still be there for the host's future */
  r = api->future_set_result(f, NULL, 0, NULL);
  if (r != 0)
    fail("future_set_result", api->strerror(r));
  if (!api->future_done(f) || ccalls != 1)
    fail("afterclose", "not done, or the C callback did not run");
  if (api->future_payload(f, &data, &len, &failed) != 0 || failed != 0)
    fail("future_payload", "not a success");
  api->future_unref(f);
  return 0;
}

/* }====================================================================== */


/* {======================================================================
** states
** ======================================================================= */

#define NSTATES 5
#define ROUNDS 4

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static conc_future_t *shared[NSTATES];  /* each state's, the host's refs */
static const conc_lua_api_t *sapi;
static int live;  /* states not yet closed */

static const char stateprog[] =
  "local cf = require 'concurrent.futures'\n"
  "local ex = cf.ThreadPoolExecutor(2)\n"
  "local fs = {}\n"
  "for i = 1, 12 do\n"
  "  fs[i] = ex:submit(function(n)\n"
  "    local s = 0 for k = 1, n do s = s + k end return s\n"
  "  end, 20000 * i)\n"
  "end\n"
  "assert(fs[1]:result(30) == 20000 * 20001 // 2)\n"
  "local mine = cf.Future()\n"
  "mine:add_done_callback(function(f) _G.seen = true end)\n"
  "_G.ex, _G.fs, _G.mine = ex, fs, mine\n"
  "return mine\n";

static const char takeprog[] =
  "local f = ...\n"
  "f:add_done_callback(function(g) _G.other = true end)\n"
  "_G.theirs = f\n";

static void *stateth(void *arg) {
  long id = (long)arg;
  const conc_lua_api_t *api;
  lua_State *L = newstate(&api);
  conc_future_t *f, *other;
  run(L, stateprog, 0, 1);
  f = api->tofuture(L, -1);
  if (f == NULL)
    fail("states", "Lua returned no future");
  api->future_ref(f);
  lua_pop(L, 1);
  pthread_mutex_lock(&mu);
  shared[id] = f;
  sapi = api;
  other = shared[(id + NSTATES - 1) % NSTATES];
  if (other != NULL)
    api->future_ref(other);
  pthread_mutex_unlock(&mu);
  if (other != NULL) {  /* a future of another state, handed to this one */
    api->pushfuture(L, other);
    run(L, takeprog, 1, 0);
    api->future_unref(other);
  }
  sleepms(id * 3 % 7);
  lua_close(L);  /* its pool still has work; its futures may be pending */
  pthread_mutex_lock(&mu);
  live--;
  pthread_mutex_unlock(&mu);
  return NULL;
}

/* Completes every state's future as soon as it is there, closing or not. */
static void *completer(void *arg) {
  int done = 0, i;
  (void)arg;
  while (done < NSTATES) {
    sleepms(1);
    for (i = 0; i < NSTATES; i++) {
      conc_future_t *f;
      const conc_lua_api_t *api;
      pthread_mutex_lock(&mu);
      f = shared[i];
      api = sapi;
      if (f != NULL)
        api->future_ref(f);
      pthread_mutex_unlock(&mu);
      if (f == NULL)
        continue;
      if (!api->future_done(f)) {
        int r = api->future_set_result(f, NULL, 0, NULL);
        if (r != 0)
          fail("future_set_result", api->strerror(r));
        done++;
      }
      api->future_unref(f);
    }
  }
  return NULL;
}

static int case_states(void) {
  int round, i;
  for (round = 0; round < ROUNDS; round++) {
    pthread_t th[NSTATES], c;
    memset(shared, 0, sizeof(shared));
    live = NSTATES;
    for (i = 0; i < NSTATES; i++)
      if (pthread_create(&th[i], NULL, stateth, (void *)(long)i) != 0)
        fail("states", "cannot start a host thread");
    if (pthread_create(&c, NULL, completer, NULL) != 0)
      fail("states", "cannot start the completing thread");
    for (i = 0; i < NSTATES; i++)
      pthread_join(th[i], NULL);
    pthread_join(c, NULL);
    if (live != 0)
      fail("states", "a state did not close");
    /* every state is closed: the host's references are all that is left */
    for (i = 0; i < NSTATES; i++) {
      if (!sapi->future_done(shared[i]))
        fail("states", "a future was left pending");
      sapi->future_unref(shared[i]);
    }
  }
  return 0;
}

/* }====================================================================== */


/* {======================================================================
** hostgc
** ======================================================================= */

/* Garbage whose finalizer makes a future and submits a task, and prints
** what each gave ('how' names the collection). */
static const char gcprog[] =
  "local how = ...\n"
  "local cf = require 'concurrent.futures'\n"
  "_G.ex = _G.ex or cf.ThreadPoolExecutor(1)\n"
  "setmetatable({}, { __gc = function()\n"
  "  local _, f = pcall(cf.Future)\n"
  "  local ok2, g = pcall(_G.ex.submit, _G.ex, function() return 1 end)\n"
  "  io.write(how, ': ', tostring(f), '; ',\n"
  "    ok2 and tostring(g:result(30)) or tostring(g), '\\n')\n"
  "end })\n";

static int collect(lua_State *L) {
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}

static int case_hostgc(void) {
  const conc_lua_api_t *api;
  lua_State *L = newstate(&api);
  lua_pushliteral(L, "through a call");
  run(L, gcprog, 1, 0);
  lua_pushcfunction(L, collect);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK)
    fail("hostgc", lua_tostring(L, -1));
  lua_pushliteral(L, "at the top level");
  run(L, gcprog, 1, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  fflush(stdout);
  lua_close(L);
  return 0;
}

/* }====================================================================== */


/* {======================================================================
** cycle
** ======================================================================= */

/* The values at the top of L, encoded (and popped). */
static void *encodetop(lua_State *L, const conc_lua_api_t *api,
                       size_t *len) {
  void *p = api->encode(L, -1, 1, len);
  lua_pop(L, 1);
  return p;
}

static void expect(const char *what, int got, int want) {
  char msg[64];
  if (got != want) {
    snprintf(msg, sizeof(msg), "returned %d, expected %d", got, want);
    fail(what, msg);
  }
}

/* Completing f with values that hold f made a cycle of references
** (f -> its payload -> f) that nothing freed: the host's call returned
** 0 and both leaked. */
static int case_cycle(void) {
  const conc_lua_api_t *api;
  lua_State *L = newstate(&api);
  conc_future_t *f = api->future_new(), *g = api->future_new();
  void *p;
  size_t len;
  int i;
  if (f == NULL || g == NULL)
    fail("future_new", "out of memory");
  for (i = 0; i < 2; i++) {  /* a result, then an error */
    int (*set)(conc_future_t *, void *, size_t, conc_free_fn) =
        i == 0 ? api->future_set_result : api->future_set_exception;
    api->pushfuture(L, f);  /* f's own handle */
    p = encodetop(L, api, &len);
    expect("f with f", set(f, p, len, api->freepayload), CONC_EINVAL);
    api->freepayload(p);  /* still the host's */
  }
  api->pushfuture(L, f);  /* g holds f, f would hold g */
  p = encodetop(L, api, &len);
  expect("g with f", api->future_set_result(g, p, len, api->freepayload), 0);
  api->pushfuture(L, g);
  p = encodetop(L, api, &len);
  expect("f with g", api->future_set_result(f, p, len, api->freepayload),
         CONC_EINVAL);
  expect("f pending", api->future_state(f), CONC_PENDING);
  api->freepayload(p);
  lua_pushinteger(L, 42);  /* and values without it are taken */
  p = encodetop(L, api, &len);
  expect("f with 42", api->future_set_result(f, p, len, api->freepayload), 0);
  api->future_unref(g);
  api->future_unref(f);
  lua_close(L);
  return 0;
}

/* }====================================================================== */


/* {======================================================================
** encoderange
** ======================================================================= */

/* api->encode(L, first, n) from Lua, through a C function: the values
** it encoded, decoded (or the error it raised). */
static int encoderange(lua_State *L) {
  const conc_lua_api_t *api = conc_lua_api(L);
  int first = (int)luaL_checkinteger(L, 1), n = (int)luaL_checkinteger(L, 2);
  size_t len;
  void *p;
  lua_settop(L, 3);  /* the values: 1, 2 and 'x' */
  lua_pushliteral(L, "x");
  lua_replace(L, 3);
  p = api->encode(L, first, n, &len);
  lua_settop(L, 0);
  n = api->decode(L, p);
  api->freepayload(p);
  return n;
}

/* Values past the top (the encoder's own slots were read there), index
** 0 and negative counts (a transfer no state could decode) are refused
** with an error that says so. */
static int case_encoderange(void) {
  const conc_lua_api_t *api;
  lua_State *L = newstate(&api);
  lua_pushcfunction(L, encoderange);
  lua_setglobal(L, "encoderange");
  run(L, "for _, a in ipairs { {1, 3}, {3, 1}, {-2, 2}, {4, 0}, {1, 4},\n"
      "    {3, 2}, {0, 1}, {-4, 1}, {1, -1}, {2, 2147483647} } do\n"
      "  print(a[1], a[2], select(2, pcall(encoderange, a[1], a[2])))\n"
      "end", 0, 0);
  fflush(stdout);
  lua_close(L);
  return 0;
}

/* }====================================================================== */


/* {======================================================================
** nullfuture
** ======================================================================= */

static int pushnull(lua_State *L) {
  conc_lua_api(L)->pushfuture(L, NULL);
  return 1;
}

/* What tofuture gives for what is no future (NULL), passed on as a host
** may: pushfuture raises (it pushed a handle claiming to be finalized),
** the rest return CONC_EINVAL (a crash in each). */
static int case_nullfuture(void) {
  const conc_lua_api_t *api;
  lua_State *L = newstate(&api);
  conc_future_t *none;
  int failed;
  lua_pushinteger(L, 42);
  none = api->tofuture(L, -1);
  lua_pop(L, 1);
  if (none != NULL)
    fail("tofuture", "a future from 42");
  lua_pushcfunction(L, pushnull);
  if (lua_pcall(L, 0, 1, 0) == LUA_OK)
    fail("pushfuture", "pushed a handle of NULL");
  printf("%s\n", lua_tostring(L, -1));
  lua_pop(L, 1);
  api->future_ref(none);
  api->future_unref(none);
  expect("set_running", api->future_set_running_or_notify_cancel(none),
         CONC_EINVAL);
  expect("set_result", api->future_set_result(none, NULL, 0, NULL),
         CONC_EINVAL);
  expect("set_exception", api->future_set_exception(none, NULL, 0, NULL),
         CONC_EINVAL);
  expect("cancel", api->future_cancel(none), CONC_EINVAL);
  expect("wait", api->future_wait(none, api->deadline(0)), CONC_EINVAL);
  expect("add_callback", api->future_add_callback(none, ccallback, NULL),
         CONC_EINVAL);
  expect("payload", api->future_payload(none, NULL, NULL, NULL),
         CONC_EINVAL);
  expect("pushvalues", api->pushvalues(L, none, &failed), CONC_EINVAL);
  lua_close(L);
  return 0;
}

/* }====================================================================== */


int main(int argc, char **argv) {
  int r;
  if (argc != 2)
    fail("usage", "embedtest afterclose|states|hostgc|cycle|encoderange|"
                  "nullfuture");
  if (strcmp(argv[1], "afterclose") == 0)
    r = case_afterclose();
  else if (strcmp(argv[1], "states") == 0)
    r = case_states();
  else if (strcmp(argv[1], "hostgc") == 0)
    r = case_hostgc();
  else if (strcmp(argv[1], "cycle") == 0)
    r = case_cycle();
  else if (strcmp(argv[1], "encoderange") == 0)
    r = case_encoderange();
  else if (strcmp(argv[1], "nullfuture") == 0)
    r = case_nullfuture();
  else {
    fail("unknown case", argv[1]);
    return 1;
  }
  printf("ok\n");
  return r;
}
