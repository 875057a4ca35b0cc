/*
** embed.c: a C host that embeds Lua. It opens the module in its own
** state, hands Lua a future, and completes it from a thread of its own;
** then it reads futures that Lua completed, from C.
*/
#define _POSIX_C_SOURCE 200809L  /* nanosleep, with plain -std=c99 */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "concurrent.h"  /* before or after lua.h: either order works */

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

struct job {
  const conc_lua_api_t *api;  /* the module's core: futures Lua sees */
  conc_future_t *f;
  void *payload;
  size_t len;
  conc_free_fn freefn;
  pthread_t thread;
  int started;
};

/* The host's own thread: some work, then the result for Lua. */
static void *worker(void *arg) {
  struct job *j = (struct job *)arg;
  struct timespec ms20 = {0, 20000000};
  nanosleep(&ms20, NULL);
  if (j->api->future_set_result(j->f, j->payload, j->len, j->freefn) != 0)
    j->freefn(j->payload);
  return NULL;
}

/* The script's 'start': the host's thread starts its work once Lua
** holds the future (so Lua sees it pending, however slow its start). */
static int start(lua_State *L) {
  struct job *j = (struct job *)lua_touserdata(L, lua_upvalueindex(1));
  if (j->started)
    return luaL_error(L, "the host's work has started already");
  if (pthread_create(&j->thread, NULL, worker, j) != 0)
    return luaL_error(L, "cannot start the host thread");
  j->started = 1;
  return 0;
}

static const char script[] =
  "local cf = require 'concurrent.futures'\n"
  "local f, start = ...\n"
  "f:add_done_callback(function(fut) print('callback saw', fut:result()) end)\n"
  "print('lua waits on', f)\n"
  "start()\n"
  "print('result from the host thread:', f:result(10))\n"
  "local ex <close> = cf.ThreadPoolExecutor(1)\n"
  "return ex:submit(function(a, b) return a .. b, #a end, 'con', 'current'),\n"
  "       ex:submit(error, 'boom', 0)\n";

/* Print the values of the finished future 'f', read from C: the module
** decodes them into L, and C takes them from the stack. */
static void report(lua_State *L, const conc_lua_api_t *api,
                   conc_future_t *f) {
  int failed = 0, n, i;
  api->future_wait(f, api->deadline(10));
  n = api->pushvalues(L, f, &failed);
  if (n < 0) {
    printf("no values: %s\n", api->strerror(n));
    return;
  }
  if (failed)  /* the error value, then the worker's traceback */
    printf("host read an error: %s%s\n", lua_tostring(L, -n),
           n > 1 && lua_isstring(L, -n + 1) ? " (with a traceback)" : "");
  else {
    printf("host read:");
    for (i = n; i >= 1; i--)
      printf(" %s", lua_isstring(L, -i) ? lua_tostring(L, -i) : "?");
    printf("\n");
  }
  lua_pop(L, n);
}

/* Futures Lua returned: their values, an error, and a code described. */
static void readback(lua_State *L, const conc_lua_api_t *api) {
  conc_future_t *ok = api->tofuture(L, -2), *bad = api->tofuture(L, -1);
  conc_future_t *pending = api->future_new();
  if (ok == NULL || bad == NULL || pending == NULL) {
    fprintf(stderr, "embed: Lua did not return two futures\n");
    return;
  }
  report(L, api, ok);
  report(L, api, bad);
  printf("a pending future is done: %d; waiting 0 s: %s\n",
         api->future_done(pending),
         api->strerror(api->future_wait(pending, api->deadline(0))));
  api->future_unref(pending);
}

int main(void) {
  lua_State *L = luaL_newstate();
  const conc_lua_api_t *api;
  struct job j;
  int status;
  luaL_openlibs(L);
  /* the module is found as any Lua finds it: LUA_PATH and LUA_CPATH
  ** ('make' sets them to the build tree), else the installed paths */
  if (luaL_dostring(L, "require 'concurrent.core'") != LUA_OK) {
    fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  api = conc_lua_api(L);
  if (api == NULL) {
    fprintf(stderr, "embed: concurrent.core not found\n");
    lua_close(L);
    return 1;
  }
  /* the result is encoded here, in the state's thread: "hello", 42 */
  lua_pushstring(L, "hello");
  lua_pushinteger(L, 42);
  j.payload = api->encode(L, lua_gettop(L) - 1, 2, &j.len);
  j.freefn = api->freepayload;
  lua_pop(L, 2);
  j.api = api;
  j.started = 0;
  j.f = api->future_new();
  if (j.f == NULL) {
    fprintf(stderr, "embed: no memory for a future\n");
    return 1;
  }
  if (luaL_loadstring(L, script) != LUA_OK) {  /* a bug in 'script' */
    fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    return 1;
  }
  api->pushfuture(L, j.f);
  lua_pushlightuserdata(L, &j);
  lua_pushcclosure(L, start, 1);
  status = lua_pcall(L, 2, 2, 0);
  if (status != LUA_OK)
    fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
  else
    readback(L, api);
  if (j.started)
    pthread_join(j.thread, NULL);
  else  /* the host's result was never handed over */
    j.freefn(j.payload);
  api->future_unref(j.f);
  lua_close(L);
  return status == LUA_OK ? 0 : 1;
}
