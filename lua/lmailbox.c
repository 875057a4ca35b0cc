/*
** lmailbox.c: the per-state owner: its mailbox, Lua callbacks at safe
** points, cf.dispatch and cf.notify_fd, and waiting on watch sets.
*/

/***
 * Callbacks and event loops.
 * @submodule concurrent.futures
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lconcurrent.h"

#define WATCH_MT "concurrent.watch"

static const char owner_key = 'o';  /* registry: the owner userdata */

/* Owner userdata uservalues: */
#define UV_HANDLES 1    /* weak: light userdata(future) -> handle */
#define UV_CALLBACKS 2  /* handle -> { {fn, n, args...}, ... } */
#define UV_DEFERRED 3   /* FIFO of handles whose callbacks wait: [first..last] */

/*
** How deep callbacks nest: a callback that completes a future (or adds
** a callback to a done one) runs its callbacks at once, inside itself,
** up to this depth. Deeper, they wait in the owner's FIFO of deferred
** handles until the outermost callback returns, which runs them there:
** so a chain of callbacks each completing the next (cf.all, cf.any,
** cf.async over each other) takes a bounded C stack however long it is,
** instead of failing with "C stack overflow" near Lua's limit of 200
** nested C calls (LUAI_MAXCCALLS); a level takes about one.
*/
#if !defined(LCONC_MAXNEST)
#define LCONC_MAXNEST 32
#endif

/* The state closes: close what is still open, then let go of the
** futures that handles kept past their finalizer, for callbacks that an
** older executor's finalizer would run (see fut_gc). Such a handle has
** callbacks, so it is in the handle table; every handle there has been
** finalized by now (the owner is older than them all), or was made
** while the state closes and never will be. */
static int owner_gc(lua_State *L) {
  lconc_owner *o = (lconc_owner *)lua_touserdata(L, 1);
  while (o->closers != NULL) {
    lconc_closer *c = o->closers;
    lconc_removecloser(c);
    c->close(c);
  }
  /* (no table: the owner's making failed, before its uservalues) */
  if (lua_getiuservalue(L, 1, UV_HANDLES) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      lconc_releasefuture(L, -1);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (o->mb != NULL) {
    conc_mailbox_close(o->mb);
    conc_mailbox_unref(o->mb);
    o->mb = NULL;
  }
  return 0;
}

static void pushowner(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &owner_key);
}

lconc_owner *lconc_getowner(lua_State *L) {
  lconc_owner *o;
  pushowner(L);
  o = (lconc_owner *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return o;
}

/* The state's mailbox; gone only while the state closes, after the
** owner's finalizer ran (a finalizer of a later object may still call). */
static conc_mailbox_t *getmailbox(lua_State *L) {
  conc_mailbox_t *mb = lconc_getowner(L)->mb;
  if (mb == NULL)
    luaL_error(L, "the Lua state is closing");
  return mb;
}

/*
** Whether the state is closing: its owner was finalized, or the code
** running is a finalizer with no Lua code below it, which is how
** lua_close runs them (Lua gives no finalizer to what is made then, so
** an executor or a future handle made there would never be released).
** A finalizer is the only code for which lua_gc answers -1; a host's own
** lua_gc called from C at the top level looks the same, and is refused
** too (README, "From C"). Lua 5.4 (lstate.c, lgc.c) shows no exact
** sign of lua_close: the flag it sets (GCSTPCLS) is read only inside
** the collector; it resets the main thread's CallInfo, as a top-level
** call has it; a sentinel finalized only there (as the owner, anchored)
** runs after the finalizers of every newer object, so it speaks only
** for older ones; and a weak value, cleared before a normal collection's
** finalizers but kept at lua_close, says nothing once a collection has
** cleared it and no call outside a finalizer has set it again (a
** script's last collectgarbage(), then its end).
*/
int lconc_closing(lua_State *L) {
  return lconc_ownerclosing(L, lconc_getowner(L));
}

int lconc_ownerclosing(lua_State *L, lconc_owner *o) {
  lua_Debug ar;
  int n = 0;
  if (o->mb == NULL)
    return 1;
  if (lua_gc(L, LUA_GCISRUNNING) >= 0)
    return 0;
  while (lua_getstack(L, n, &ar))
    n++;
  return n > 0 && lua_getstack(L, n - 1, &ar) && lua_getinfo(L, "n", &ar)
         && ar.name != NULL && strcmp(ar.name, "__gc") == 0;
}

void lconc_checkopen(lua_State *L) {
  if (lconc_closing(L))
    luaL_error(L, "the Lua state is closing");
}

void lconc_addcloser(lua_State *L, lconc_closer *c) {
  lconc_owner *o = lconc_getowner(L);
  c->owner = o;
  if (lconc_ownerclosing(L, o))
    luaL_error(L, "the Lua state is closing");
  c->next = o->closers;
  if (c->next != NULL)
    c->next->prev = &c->next;
  c->prev = &o->closers;
  o->closers = c;
}

void lconc_removecloser(lconc_closer *c) {
  if (c->prev == NULL)
    return;
  *c->prev = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
  c->next = NULL;
  c->prev = NULL;
}

/* Reopening the module keeps the state's owner: its handles and pending
** callbacks stay valid. */
void lconc_open_owner(lua_State *L) {
  lconc_owner *o;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &owner_key) != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  o = (lconc_owner *)lua_newuserdatauv(L, sizeof(*o), 3);
  o->mb = NULL;
  o->in_callback = 0;
  o->dfirst = 1;
  o->dlast = 0;
  o->closers = NULL;
  o->ctl = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, owner_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  o->mb = conc_mailbox_new();
  if (o->mb == NULL)
    luaL_error(L, "cannot create the state's mailbox");
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setiuservalue(L, -2, UV_HANDLES);
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_CALLBACKS);
  lua_newtable(L);
  lua_setiuservalue(L, -2, UV_DEFERRED);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &owner_key);
}

/* Push the state's handle table (UV_HANDLES) or callback table. */
static void pushownertable(lua_State *L, int which) {
  pushowner(L);
  lua_getiuservalue(L, -1, which);
  lua_remove(L, -2);
}

void lconc_pushhandles(lua_State *L) {
  pushownertable(L, UV_HANDLES);
}


/* {======================================================================
** Callbacks
** ======================================================================= */

/* A callback's error and its traceback. The text is the worker's
** (lconc_errortext): a __tostring that raises or returns no string
** gave the message of its own error, or no message at all. */
static int msgh(lua_State *L) {
  luaL_traceback(L, L, lconc_errortext(L, 1), 1);
  return 1;
}

/* (Protected.) Call fn(handle, args...) of the callback entry at 1 with
** the handle at 2. Unpacking the entry may need memory (a larger stack
** for many arguments): done here, running out fails this callback like
** an error of its own, never the loop of its caller, which would leave
** the owner inside a callback for good (no safe point would run any). */
static int callentry(lua_State *L) {
  int n, i;
  lua_getfield(L, 1, "n");
  n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 2, "too many callback arguments");
  lua_rawgeti(L, 1, 1);
  lua_pushvalue(L, 2);
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, 1, i + 1);
  lua_call(L, n + 1, 0);
  return 0;
}

/* Call the callback of the entry table at 'e' on the handle at 'h'; an
** error goes to stderr and does not stop the caller. */
static void callone(lua_State *L, int h, int e) {
  int base;
  lua_pushcfunction(L, msgh);
  base = lua_gettop(L);
  lua_pushcfunction(L, callentry);
  lua_pushvalue(L, e);
  lua_pushvalue(L, h);
  if (lua_pcall(L, 2, 0, base) != LUA_OK) {
    fprintf(stderr, "concurrent: error in done callback: %s\n",
            lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);  /* msgh */
}

/* Put the handle at 'h' at the end of the owner's deferred FIFO. Its
** callbacks stay in the callback table until they run: if this fails
** (out of memory), the mailbox, which the handle's future completing
** was posted to, still runs them at the next safe point. */
static void defer(lua_State *L, lconc_owner *o, int h) {
  pushownertable(L, UV_DEFERRED);
  lua_pushvalue(L, h);
  lua_rawseti(L, -2, o->dlast + 1);
  o->dlast++;
  lua_pop(L, 1);
}

/* (The outermost callback has returned.) Run the callbacks of the
** deferred handles, oldest first; those may defer more. */
static void rundeferred(lua_State *L, lconc_owner *o) {
  while (o->dfirst <= o->dlast) {
    pushownertable(L, UV_DEFERRED);
    lua_rawgeti(L, -1, o->dfirst);
    lua_pushnil(L);
    lua_rawseti(L, -3, o->dfirst);
    o->dfirst++;
    lconc_firecallbacks(L, -1, 1);
    lua_pop(L, 2);
  }
  o->dfirst = 1;
  o->dlast = 0;
}

static int runlist(lua_State *L, int h, int list) {
  lconc_owner *o = lconc_getowner(L);
  lua_Integer i, n = luaL_len(L, list);
  o->in_callback++;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    callone(L, h, lua_gettop(L));
    lua_pop(L, 1);
  }
  o->in_callback--;
  if (o->in_callback == 0)
    rundeferred(L, o);
  return (int)n;
}

int lconc_firecallbacks(lua_State *L, int h, int always) {
  lconc_owner *o;
  int n = 0;
  lconc_stackcheck_begin(L);
  h = lua_absindex(L, h);
  if (!lconc_hascallbacks(L, h))
    return 0;
  o = lconc_getowner(L);
  if (!always && o->in_callback)
    return 0;
  if (o->in_callback >= LCONC_MAXNEST) {
    defer(L, o, h);
    return 0;
  }
  pushownertable(L, UV_CALLBACKS);
  lua_pushvalue(L, h);
  if (lua_rawget(L, -2) == LUA_TTABLE) {
    lua_pushvalue(L, h);
    lua_pushnil(L);
    lua_rawset(L, -4);  /* each callback runs once */
    n = runlist(L, h, lua_gettop(L));
  }
  lua_pop(L, 2);
  lconc_stackcheck_end(L, 0);
  return n;
}

/* The first callback of a handle subscribes the state's mailbox to its
** future (once: a list emptied by lconc_removecallback and made again
** needs no second subscription, which would pile up on a future never
** done); the handle stays anchored (as a key) until they have run.
** The entry is made first: an allocation may run a finalizer, and an
** executor's (shutdown) is a safe point that may fire the handle's list.
** Between fetching the list and appending to it nothing allocates, so
** the entry never lands in a list that was fired meanwhile (it would
** never run). A new list is made before it is stored: a safe point
** then finds none, and the caller's done check runs the callback. */
void lconc_addcallback(lua_State *L, int h, int fn) {
  int i, n = lua_gettop(L) - fn;
  lconc_stackcheck_begin(L);
  h = lua_absindex(L, h);
  lua_createtable(L, n + 1, 1);
  for (i = 0; i <= n; i++) {
    lua_pushvalue(L, fn + i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  pushownertable(L, UV_CALLBACKS);
  lua_pushvalue(L, h);
  if (lua_rawget(L, -2) == LUA_TNIL) {
    if (!lconc_subscribed(L, h)) {
      int r = conc_mailbox_subscribe(getmailbox(L),
                                     lconc_checkfuture(L, h), 0);
      if (r != 0)
        lconc_coreerror(L, r, "add_done_callback");
      lconc_setsubscribed(L, h);
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, h);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_pushvalue(L, -3);  /* the entry */
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 3);
  lconc_stackcheck_end(L, 0);
}

int lconc_haspending(lua_State *L, int h) {
  int t;
  h = lua_absindex(L, h);
  pushownertable(L, UV_CALLBACKS);
  lua_pushvalue(L, h);
  t = lua_rawget(L, -2);
  lua_pop(L, 2);
  return t != LUA_TNIL;
}

void lconc_removecallback(lua_State *L, int h, int fn) {
  lua_Integer i, j = 0, n;
  lconc_stackcheck_begin(L);
  h = lua_absindex(L, h);
  fn = lua_absindex(L, fn);
  pushownertable(L, UV_CALLBACKS);
  lua_pushvalue(L, h);
  if (lua_rawget(L, -2) == LUA_TTABLE) {  /* its list: compacted in place */
    n = (lua_Integer)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      lua_rawgeti(L, -1, 1);
      if (lua_rawequal(L, -1, fn)) {
        lua_pop(L, 2);
        continue;
      }
      lua_pop(L, 1);
      lua_rawseti(L, -2, ++j);
    }
    for (i = j + 1; i <= n; i++) {
      lua_pushnil(L);
      lua_rawseti(L, -2, i);
    }
    if (j == 0) {  /* none left: the handle is anchored no more */
      lua_pushvalue(L, h);
      lua_pushnil(L);
      lua_rawset(L, -4);
    }
  }
  lua_pop(L, 2);
  lconc_stackcheck_end(L, 0);
}

int lconc_safepoint(lua_State *L) {
  return lconc_ownersafepoint(L, lconc_getowner(L));
}

/* Run the callbacks of the post 'f' and of every later one. Out of
** line: a safe point that finds no post (nearly every result()) then
** sets up no frame for this loop. */
static int __attribute__((noinline)) runposts(lua_State *L, lconc_owner *o,
                                              conc_future_t *f) {
  uintptr_t tag;
  int ran = 0;
  lconc_stackcheck_begin(L);
  do {
    pushownertable(L, UV_HANDLES);
    if (lua_rawgetp(L, -1, f) != LUA_TNIL)
      ran += lconc_firecallbacks(L, -1, 0);
    lua_pop(L, 2);
    conc_future_unref(f);
  } while (conc_mailbox_take(o->mb, &f, &tag));
  lconc_stackcheck_end(L, 0);
  return ran;
}

int lconc_ownersafepoint(lua_State *L, lconc_owner *o) {
  conc_future_t *f;
  uintptr_t tag;
  if (o->in_callback || o->mb == NULL || !conc_mailbox_take(o->mb, &f, &tag))
    return 0;
  return runposts(L, o, f);
}

/* }====================================================================== */


/* {======================================================================
** Watch sets and waiting
** ======================================================================= */

static int watch_close(lua_State *L) {
  conc_watch_t **p = (conc_watch_t **)luaL_checkudata(L, 1, WATCH_MT);
  if (*p != NULL) {
    conc_watch_free(*p);
    *p = NULL;
  }
  return 0;
}

conc_watch_t *lconc_watchnew(lua_State *L) {
  conc_watch_t *set = conc_watch_new(getmailbox(L));
  if (set == NULL)
    luaL_error(L, "not enough memory");
  return set;
}

/* (Protected.) The userdata of a watch, empty. */
static int newwatch(lua_State *L) {
  conc_watch_t **p = (conc_watch_t **)lua_newuserdatauv(L, sizeof(*p), 0);
  *p = NULL;
  if (luaL_newmetatable(L, WATCH_MT)) {
    lua_pushcfunction(L, watch_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, watch_close);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  return 1;
}

/* The userdata is made past a worker's max_memory (lconc_liftcap), as
** the module's errors are: a task that holds all of it waits, and its
** wait ends as it should (a TimeoutError), not in "not enough memory". */
conc_watch_t *lconc_pushwatch(lua_State *L) {
  conc_watch_t **p;
  int st;
  lconc_liftcap(L, 1);
  lua_pushcfunction(L, newwatch);
  st = lua_pcall(L, 0, 1, 0);
  lconc_liftcap(L, 0);
  if (st != LUA_OK)
    lua_error(L);
  p = (conc_watch_t **)lua_touserdata(L, -1);
  *p = lconc_watchnew(L);
  return *p;
}

void lconc_closewatch(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, watch_close);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 0);
}

/* How often (seconds) a blocked owner looks for a new hook. */
#if !defined(LCONC_HOOKPOLL)
#define LCONC_HOOKPOLL 0.05
#endif

/* The deadline of one slice of a wait on 'deadline'. A signal does not
** end a wait on a condition variable, so a blocked owner wakes up now
** and then to look at its hook. */
static double slice(double deadline) {
  double end = conc_now() + LCONC_HOOKPOLL;
  return (deadline == CONC_FOREVER || deadline > end) ? end : deadline;
}

/* The state's main thread: lua.c's SIGINT handler (as other
** interrupters) sets its hook there, also while a wait runs in a
** coroutine, whose own hook it never touches. */
static lua_State *mainthread(lua_State *L) {
  lua_State *M;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  M = lua_tothread(L, -1);
  lua_pop(L, 1);
  return M;
}

/* An interrupter's hook stops the state at its next instruction; a C
** function blocked in a wait runs none. So when the main thread's hook
** changed since the wait began ('*h'), give it to L (a coroutine's is
** its own) and call a Lua function: the hook fires there (lua.c's
** raises "interrupted!" through this wait to the script). */
static void checkhook(lua_State *L, lua_Hook *h) {
  lua_State *M = mainthread(L);
  lua_Hook now = lua_gethook(M);
  if (now == *h)
    return;
  *h = now;
  if (now != NULL) {
    if (M != L)
      lua_sethook(L, now, lua_gethookmask(M), lua_gethookcount(M));
    if (luaL_loadbuffer(L, "return", 6, "=(interrupt)") != LUA_OK)
      lua_error(L);
    lua_call(L, 0, 0);
  }
}

void lconc_timeoutmsg(char *msg, const conc_taskctl_t *ctl) {
  snprintf(msg, LCONC_STOPMSG_SIZE, "task exceeded its %g s time limit",
           ctl->timeout);
}

int lconc_pushstop(lua_State *L, conc_taskctl_t *ctl) {
  int why = __atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE);
  if (why == CONC_STOP_TIMEOUT) {
    char msg[LCONC_STOPMSG_SIZE];
    lconc_timeoutmsg(msg, ctl);
    lconc_pusherror(L, "TimeoutError", msg);
  } else if (why != CONC_STOP_NONE) {
    lconc_pusherror(L, "CancelledError", "the task was cancelled");
  }
  return why != CONC_STOP_NONE;
}

void lconc_checkstop(lua_State *L) {
  conc_taskctl_t *ctl = lconc_getowner(L)->ctl;
  if (ctl != NULL && lconc_pushstop(L, ctl))
    lua_error(L);
}

/* Inside a task that must stop, the wait returns at once (its mailbox
** is interrupted) and raises. */
int lconc_watchnext(lua_State *L, conc_watch_t *set, double deadline,
                    uintptr_t *tag) {
  lua_Hook h = lua_gethook(mainthread(L));
  for (;;) {
    int posts = lconc_getowner(L)->in_callback == 0;
    lconc_checkstop(L);
    lconc_safepoint(L);
    if (conc_watch_take(set, tag))
      return 1;
    if (deadline != CONC_FOREVER && conc_now() >= deadline)
      return 0;
    conc_watch_wait(set, slice(deadline), posts);
    checkhook(L, &h);
  }
}

double lconc_optdeadline(lua_State *L, int arg) {
  lua_Number t;
  if (lua_isnoneornil(L, arg))
    return CONC_FOREVER;
  /* a number only, not a numeric string: as map's and await's timeouts */
  luaL_checktype(L, arg, LUA_TNUMBER);
  t = lua_tonumber(L, arg);
  luaL_argcheck(L, !isnan(t), arg, "timeout is not a number (NaN)");
  luaL_argcheck(L, t >= 0, arg, "timeout must be non-negative");
  return conc_deadline(t);  /* inf, math.maxinteger: forever */
}

/* }====================================================================== */


/* cf.dispatch([timeout]): run the ready callbacks, waiting up to
** 'timeout' for one; returns how many ran. */
/***
 * Run the callbacks of this state that are ready, waiting up to
 * `timeout` seconds for one. For event loops: see `notify_fd`.
 * @function dispatch
 * @tparam[opt] number timeout seconds; `nil` does not wait
 * @treturn integer how many callbacks ran
 */
static int cf_dispatch(lua_State *L) {
  double deadline;
  if (lua_isnoneornil(L, 1))
    deadline = conc_now();  /* no timeout: do not wait */
  else
    deadline = lconc_optdeadline(L, 1);
  lua_pushinteger(L, lconc_dispatch(L, deadline));
  return 1;
}

int lconc_dispatch(lua_State *L, double deadline) {
  int ran;
  lua_Hook h = lua_gethook(mainthread(L));
  ran = lconc_safepoint(L);
  while (ran == 0 && lconc_getowner(L)->in_callback == 0
         && (deadline == CONC_FOREVER || conc_now() < deadline)) {
    conc_mailbox_wait(getmailbox(L), slice(deadline));
    checkhook(L, &h);
    lconc_checkstop(L);
    ran = lconc_safepoint(L);
  }
  return ran;
}

/***
 * A file descriptor that is readable while callbacks of this state wait;
 * an event loop polls it and calls `dispatch(0)`.
 * @function notify_fd
 * @treturn integer the descriptor (an eventfd, made on the first call)
 * @raise when no descriptor can be made (e.g. too many open files)
 */
static int cf_notify_fd(lua_State *L) {
  int fd = conc_mailbox_fd(getmailbox(L));
  if (fd < 0)
    return luaL_error(L, "cannot create the notify fd (%s)", strerror(errno));
  lua_pushinteger(L, fd);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"dispatch", cf_dispatch},
  {"notify_fd", cf_notify_fd},
  {NULL, NULL}
};

void lconc_open_mailbox(lua_State *L) {
  lconc_open_owner(L);
  luaL_setfuncs(L, funcs, 0);
}
