/*
** ltimer.c: the state's timer (core/timer.c), made on first use, and
** core._timer(timeout), the future behind cf.await's timeouts.
*/
#include "lconcurrent.h"

static const char timer_key = 't';  /* registry: the timer userdata */

/* Timeouts beyond this many seconds are forever (a deadline that far
** away would overflow the clock's arithmetic). */
#define MAXTIMEOUT 1e9

static int timer_gc(lua_State *L) {
  conc_timer_t **p = (conc_timer_t **)lua_touserdata(L, 1);
  if (*p != NULL) {
    conc_timer_free(*p);
    *p = NULL;
  }
  return 0;
}

/* The state's timer. Its finalizer joins the thread; a state already
** closing (its owner gone) runs no new finalizer, so none is made then. */
static conc_timer_t *gettimer(lua_State *L) {
  conc_timer_t **p;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &timer_key) != LUA_TNIL) {
    p = (conc_timer_t **)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return *p;
  }
  lua_pop(L, 1);
  if (lconc_getowner(L)->mb == NULL)
    luaL_error(L, "the Lua state is closing");
  p = (conc_timer_t **)lua_newuserdatauv(L, sizeof(*p), 0);
  *p = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, timer_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  *p = conc_timer_new();
  if (*p == NULL)
    luaL_error(L, "not enough memory");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &timer_key);
  return *p;
}

/* core._timer(timeout): a new future that is cancelled once 'timeout'
** seconds have passed, or nothing when the timeout is forever. */
static int cf_timer(lua_State *L) {
  lua_Number t = luaL_checknumber(L, 1);
  conc_timer_t *timer;
  conc_future_t *f;
  int r;
  luaL_argcheck(L, t == t, 1, "timeout is not a number");
  luaL_argcheck(L, t >= 0, 1, "timeout must be non-negative");
  if (t > MAXTIMEOUT)
    return 0;
  timer = gettimer(L);
  f = conc_future_new();
  if (f == NULL)
    return luaL_error(L, "not enough memory");
  lconc_newfuture(L, f);
  conc_future_unref(f);  /* the handle holds it now */
  r = conc_timer_cancel_at(timer, f, conc_deadline(t));
  if (r != 0)
    return lconc_coreerror(L, r, "timer");
  return 1;
}

void lconc_open_timer(lua_State *L) {
  lua_pushcfunction(L, cf_timer);
  lua_setfield(L, -2, "_timer");
}
