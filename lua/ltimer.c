/*
** ltimer.c: the state's timer (core/timer.c), made on first use, and
** core._timer(f, timeout), which cancels the future behind a cf.await
** timeout.
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
    if (*p == NULL)  /* its finalizer ran: the state is closing */
      luaL_error(L, "the Lua state is closing");
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

/* core._timer(f, timeout): cancel the future 'f' once 'timeout' seconds
** have passed; returns whether a timer was set (not for "forever"). */
static int cf_timer(lua_State *L) {
  conc_future_t *f = lconc_checkfuture(L, 1);
  lua_Number t = luaL_checknumber(L, 2);
  int r;
  luaL_argcheck(L, t == t, 2, "timeout is not a number (NaN)");
  luaL_argcheck(L, t >= 0, 2, "timeout must be non-negative");
  if (t > MAXTIMEOUT) {
    lua_pushboolean(L, 0);
    return 1;
  }
  r = conc_timer_cancel_at(gettimer(L), f, conc_deadline(t));
  if (r != 0)
    return lconc_coreerror(L, r, "timer");
  lua_pushboolean(L, 1);
  return 1;
}

/* core._untimer(f): the wait behind 'f' ended first; forget it, so that
** the timer's thread can leave once nothing is due. */
static int cf_untimer(lua_State *L) {
  conc_future_t *f = lconc_checkfuture(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &timer_key) != LUA_TNIL) {
    conc_timer_t **p = (conc_timer_t **)lua_touserdata(L, -1);
    if (*p != NULL)
      conc_timer_remove(*p, f);
  }
  return 0;
}

void lconc_open_timer(lua_State *L) {
  lua_pushcfunction(L, cf_timer);
  lua_setfield(L, -2, "_timer");
  lua_pushcfunction(L, cf_untimer);
  lua_setfield(L, -2, "_untimer");
}
