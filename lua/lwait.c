/*
** lwait.c: waiting on many futures: cf.as_completed and cf.wait, over
** one watch set each (registered once, not once per step).
*/

/***
 * Waiting on many futures.
 * @submodule concurrent.futures
 */
#include <string.h>

#include "lconcurrent.h"

#define WAITER_MT "concurrent.waiter"

typedef struct waiter {
  conc_watch_t *set;
  int total;        /* distinct futures */
  int yielded;      /* reported done so far */
  int own;          /* the calling task's own future is among them */
  double deadline;
} waiter;

static int waiter_close(lua_State *L) {
  waiter *w = (waiter *)luaL_checkudata(L, 1, WAITER_MT);
  if (w->set != NULL) {
    conc_watch_free(w->set);
    w->set = NULL;
  }
  return 0;
}

/* Check the array of futures at 1 and push a waiter
** over its distinct futures (its uservalue: them, in input order).
** The array is read as cf.all and cf.any read theirs, through __len and
** __index (a proxy's length was taken and its entries read raw: "future
** expected at index 1, got nil" for an entry that is there). Tables are
** sized by what the array really holds, not by '#fs' (a __len may
** claim a billion): the first missing entry is an error. */
static waiter *newwaiter(lua_State *L) {
  lua_Integer i, n;
  int hint;
  waiter *w;
  if (!lua_istable(L, 1))
    return luaL_typeerror(L, 1, "table of futures"), (waiter *)NULL;
  n = luaL_len(L, 1);
  hint = (int)(lua_rawlen(L, 1) < (lua_Unsigned)n ? lua_rawlen(L, 1)
                                                   : (lua_Unsigned)n);
  w = (waiter *)lua_newuserdatauv(L, sizeof(*w), 1);
  memset(w, 0, sizeof(*w));
  luaL_setmetatable(L, WAITER_MT);
  lua_createtable(L, hint, 0);  /* distinct futures */
  lua_createtable(L, 0, hint);  /* seen */
  w->set = lconc_watchnew(L);
  for (i = 1; i <= n; i++) {
    conc_future_t *f;
    lua_geti(L, 1, i);
    f = lconc_testfuture(L, -1);
    if (f == NULL)
      return luaL_argerror(L, 1, lua_pushfstring(L,
               "future expected at index %I, got %s", i,
               luaL_typename(L, -1))), (waiter *)NULL;
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TNIL) {
      lua_pushvalue(L, -2);
      lua_pushboolean(L, 1);
      lua_rawset(L, -5);
      lua_pushvalue(L, -2);
      lua_rawseti(L, -5, ++w->total);
      if (conc_watch_add(w->set, f, (uintptr_t)w->total) != 0)
        return luaL_error(L, "not enough memory"), (waiter *)NULL;
      w->own = w->own || (!conc_future_done(f) && conc_future_is_current(f));
    }
    lua_pop(L, 2);
  }
  lua_pop(L, 1);  /* seen */
  lua_setiuservalue(L, -2, 1);
  return w;
}

/* The next completed future of the waiter at 'idx', pushed; or nothing
** and 0 once its deadline passed. 'drop' forgets it in the waiter:
** as_completed keeps no future it yielded (a long loop would hold them
** all), while wait's 'partition' reads them all again. The calling
** task's own future cannot end while the task waits: once it is the only
** one left, waiting would last forever (as result() on it: lfuture.c). */
static int nextdone(lua_State *L, int idx, waiter *w, int drop) {
  uintptr_t tag;
  if (w->own && w->yielded == w->total - 1)
    return lconc_raise(L, "InvalidStateError",
                       "a task cannot wait for its own future");
  if (!lconc_watchnext(L, w->set, w->deadline, &tag))
    return 0;
  w->yielded++;
  lua_getiuservalue(L, idx, 1);
  lua_rawgeti(L, -1, (lua_Integer)tag);
  if (drop) {
    lua_pushnil(L);
    lua_rawseti(L, -3, (lua_Integer)tag);
  }
  lua_remove(L, -2);
  lconc_firecallbacks(L, -1, 0);
  return 1;
}


static int ac_step(lua_State *L) {
  waiter *w = (waiter *)luaL_checkudata(L, lua_upvalueindex(1), WAITER_MT);
  if (w->set == NULL || w->yielded == w->total)
    return 0;
  if (!nextdone(L, lua_upvalueindex(1), w, 1))
    return lconc_raise(L, "TimeoutError", "%d (of %d) futures unfinished",
                       w->total - w->yielded, w->total);
  return 1;
}

/***
 * Each future of `fs` once, as it completes (those already done first);
 * duplicates are yielded once. Leaving the loop early unregisters at once.
 * @function as_completed
 * @tparam {Future,...} fs an array of futures
 * @tparam[opt] number timeout seconds for the whole loop
 * @return an iterator for a generic `for`
 * @raise `TimeoutError` ("2 (of 4) futures unfinished") when time runs out
 * @usage for f in cf.as_completed(fs, 30) do print(f:result()) end
 */
static int cf_as_completed(lua_State *L) {
  waiter *w;
  double deadline = lconc_optdeadline(L, 2);
  lua_settop(L, 1);
  w = newwaiter(L);
  w->deadline = deadline;
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, ac_step, 1);
  lua_insert(L, -2);
  lua_pushnil(L);
  lua_insert(L, -2);
  lua_pushnil(L);
  lua_insert(L, -2);
  return 4;
}


static const char *const modes[] = {
  "ALL_COMPLETED", "FIRST_COMPLETED", "FIRST_EXCEPTION", NULL
};

enum { ALL, FIRST, FIRSTEXC };

static int failed(conc_future_t *f) {
  const void *data;
  size_t len;
  int fail = 0;
  return conc_future_payload(f, &data, &len, &fail) == 0 && fail;
}

/* Push the arrays done, not_done (input order) of the waiter at 'idx'. */
static void partition(lua_State *L, int idx, waiter *w) {
  int i, nd = 0, nn = 0;
  lua_getiuservalue(L, idx, 1);
  lua_createtable(L, w->total, 0);
  lua_createtable(L, 0, 0);
  for (i = 1; i <= w->total; i++) {
    lua_rawgeti(L, -3, i);
    if (conc_future_done(lconc_testfuture(L, -1))) {
      lconc_firecallbacks(L, -1, 0);
      lua_rawseti(L, -3, ++nd);
    } else
      lua_rawseti(L, -2, ++nn);
  }
  lua_remove(L, -3);
}

/***
 * Wait until `return_when` holds or `timeout` passes.
 * @function wait
 * @tparam {Future,...} fs an array of futures
 * @tparam[opt] number timeout seconds
 * @tparam[opt="ALL_COMPLETED"] string return_when `cf.ALL_COMPLETED`,
 * `cf.FIRST_COMPLETED` or `cf.FIRST_EXCEPTION`
 * @treturn {Future,...} done, in input order
 * @treturn {Future,...} not done, in input order
 */
static int cf_wait(lua_State *L) {
  double deadline = lconc_optdeadline(L, 2);
  int mode = luaL_checkoption(L, 3, "ALL_COMPLETED", modes);
  waiter *w;
  lua_settop(L, 1);
  w = newwaiter(L);
  w->deadline = deadline;
  while (w->yielded < w->total && !(mode == FIRST && w->yielded > 0)) {
    if (!nextdone(L, 2, w, 0))
      break;
    if (mode == FIRSTEXC && failed(lconc_testfuture(L, -1)))
      break;
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  partition(L, 2, w);
  conc_watch_free(w->set);  /* at once, not at the next collection */
  w->set = NULL;
  return 2;
}

void lconc_open_wait(lua_State *L) {
  int i;
  if (luaL_newmetatable(L, WAITER_MT)) {
    lua_pushcfunction(L, waiter_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, waiter_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, cf_as_completed);
  lua_setfield(L, -2, "as_completed");
  lua_pushcfunction(L, cf_wait);
  lua_setfield(L, -2, "wait");
  for (i = 0; modes[i] != NULL; i++) {
    lua_pushstring(L, modes[i]);
    lua_setfield(L, -2, modes[i]);
  }
}
