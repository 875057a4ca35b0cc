/*
** lfuture.c: the Future userdata over a core conc_future_t. One handle
** per future per state; its outcome is decoded once per state.
*/

/***
 * Futures.
 * @submodule concurrent.futures
 */
#include <stdint.h>
#include <string.h>

#include "lconcurrent.h"

/*
** The decoded outcome of a handle. Most tasks return one value: a nil,
** boolean or number is kept in the handle itself (OUT_NIL and the
** rest, OUT_SCALAR and above: 'out' says its type); another
** single value is the handle's entry in the state's outcome table
** (OUT_ONE); otherwise that entry is a table { n = k, failed = b, ... }
** with the results 1..k, or the error value at 1 and its traceback at 2
** (OUT_TABLE). So a handle is a userdata without a uservalue: a pending
** future costs a third less, and the common outcome no table store.
*/
enum { OUT_NONE, OUT_ONE, OUT_TABLE,
       OUT_NIL, OUT_BOOL, OUT_INT, OUT_FLT };
#define OUT_SCALAR OUT_NIL

/* A handle's flags ('bits'). */
#define H_SHARED 1      /* in the state's handle table */
#define H_CALLBACKS 2   /* add_done_callback was called on it */
#define H_SUBSCRIBED 4  /* the state's mailbox is told of its end */

/*
** A handle is known by its size and its tag, 48 bits of the address of
** 'handletag' (this copy of the binding's: the MPI module's copy has
** its own, whose futures this one does not take): two API calls, where
** comparing its metatable took three or four, on each result() and
** finalizer. A userdata of another type fails the size (a light
** userdata has none) or, with the size, the tag: only C code that
** copied this address makes it, so nothing is read past another block,
** and a userdata given the Future metatable by the debug library is
** refused. The flags and the tag fill the room the pointers leave: a
** handle stays 24 bytes.
*/
typedef struct handle {
  conc_future_t *f;
  union { lua_Integer i; lua_Number n; } v;  /* OUT_INT, OUT_FLT, or
                                             ** OUT_BOOL (as 'i') */
  unsigned char out;        /* OUT_* */
  unsigned char bits;       /* H_* */
  unsigned short taghi;     /* bits 32-47 of the tag */
  unsigned int taglo;       /* bits 0-31 */
} handle;

static const char handletag = 'h';
#define TAGLO ((unsigned int)(uintptr_t)&handletag)
#define TAGHI ((unsigned short)((uint64_t)(uintptr_t)&handletag >> 32))

/* Registry keys: the Future metatable (for callers from other files)
** and the outcome table (handle -> outcome, weak keys). The methods
** have the state's owner as their upvalue (a light userdata: it lives
** as long as the state), cheaper than its registry lookup at the safe
** point of every result(). */
static const char FUTMT = 'f';
static const char OUTCOMES = 'o';
#define UP_OWNER lua_upvalueindex(1)

static const char *const statenames[] = {
  "pending", "running", "finished", "cancelled"
};

/* The handle at 'idx', or NULL if it is not one. */
static inline handle *testhandle(lua_State *L, int idx) {
  handle *h = NULL;
  if (lua_rawlen(L, idx) == sizeof(handle))
    h = (handle *)lua_touserdata(L, idx);  /* NULL for a table, string */
  return h != NULL && h->taglo == TAGLO && h->taghi == TAGHI ? h : NULL;
}

/* (Out of line: the check inlined in result() and the finalizer is
** then only its two API calls and the compare.) */
static void __attribute__((noinline, cold)) notfuture(lua_State *L,
                                                      int idx) {
  luaL_typeerror(L, idx, LCONC_FUTURE_MT);
}

static inline handle *checkhandle(lua_State *L, int idx) {
  handle *h = testhandle(L, idx);
  if (h == NULL)
    notfuture(L, idx);
  return h;
}

/* In a method: the handle at 1. */
static handle *checkself(lua_State *L) {
  return checkhandle(L, 1);
}

/* A handle is finalized before the objects made earlier than it while
** its state closes: a callback run then may still reach it. */
static int finalized(lua_State *L) {
  return luaL_error(L, "future handle already finalized (the Lua state "
                    "is closing)");
}

/* In a method: the handle at 1, its future still there. */
static handle *checkselflive(lua_State *L) {
  handle *h = checkself(L);
  if (h->f == NULL)
    finalized(L);
  return h;
}

static conc_future_t *checkselffuture(lua_State *L) {
  return checkselflive(L)->f;
}

conc_future_t *lconc_testfuture(lua_State *L, int idx) {
  handle *h = testhandle(L, idx);
  return h != NULL ? h->f : NULL;
}

conc_future_t *lconc_checkfuture(lua_State *L, int idx) {
  conc_future_t *f = checkhandle(L, idx)->f;
  if (f == NULL)
    finalized(L);
  return f;
}

/* A handle of 'f' with the metatable at 'mt' (0: from the registry). */
static handle *newhandlemt(lua_State *L, conc_future_t *f, int mt) {
  handle *h = (handle *)lua_newuserdatauv(L, sizeof(*h), 0);
  memset(h, 0, sizeof(*h));
  h->taglo = TAGLO;
  h->taghi = TAGHI;
  if (mt != 0)
    lua_pushvalue(L, mt);
  else
    lua_rawgetp(L, LUA_REGISTRYINDEX, &FUTMT);
  lua_setmetatable(L, -2);
  if (f != NULL)
    conc_future_ref(f);
  h->f = f;
  return h;
}

static handle *newhandle(lua_State *L, conc_future_t *f) {
  return newhandlemt(L, f, 0);
}

void lconc_newfuture(lua_State *L, conc_future_t *f) {
  newhandle(L, f);
}

conc_future_t **lconc_newfuturemt(lua_State *L, conc_future_t *f,
                                  int mt) {
  return &newhandlemt(L, f, mt)->f;
}

void lconc_sharefuture(lua_State *L, int idx) {
  handle *h = checkhandle(L, idx);
  if (h->bits & H_SHARED)
    return;
  idx = lua_absindex(L, idx);
  lconc_pushhandles(L);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, h->f);
  lua_pop(L, 1);
  h->bits |= H_SHARED;
}

int lconc_hascallbacks(lua_State *L, int idx) {
  return (((handle *)lua_touserdata(L, idx))->bits & H_CALLBACKS) != 0;
}

int lconc_subscribed(lua_State *L, int idx) {
  return (((handle *)lua_touserdata(L, idx))->bits & H_SUBSCRIBED) != 0;
}

void lconc_setsubscribed(lua_State *L, int idx) {
  ((handle *)lua_touserdata(L, idx))->bits |= H_SUBSCRIBED;
}

/* Push the state's handle of a future that came from elsewhere (a
** transfer, a host), making it (and taking a reference) on first sight. */
void lconc_pushfuture(lua_State *L, conc_future_t *f) {
  lconc_stackcheck_begin(L);
  lconc_pushhandles(L);
  if (lua_rawgetp(L, -1, f) == LUA_TNIL) {
    lua_pop(L, 1);
    lconc_checkopen(L);
    newhandle(L, f)->bits |= H_SHARED;
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, f);
  }
  lua_remove(L, -2);
  lconc_stackcheck_end(L, 1);
}

static void release(handle *h) {
  if (h->f != NULL) {
    conc_future_unref(h->f);
    h->f = NULL;
  }
}

void lconc_releasefuture(lua_State *L, int idx) {
  release((handle *)lua_touserdata(L, idx));
}

/* A handle whose callbacks have not run yet is anchored by the state's
** owner (a key of its callback table): it is collected only when the
** state closes. Lua finalizes the newest objects first then, so an
** executor made before the handle is finalized after it, and ends the
** handle's task there: its callbacks run and read the handle. So such
** a handle keeps its future; the owner, made before any handle and so
** finalized after them all, lets go of it (owner_gc). A callback that
** calls __gc by hand on its own handle finds its list taken already:
** that handle lets go at once, as any other. */
static int fut_gc(lua_State *L) {
  handle *h = checkself(L);
  if (!((h->bits & H_CALLBACKS) && lconc_haspending(L, 1)))
    release(h);
  return 0;
}

/***
 * `tostring(f)`: the future's state, e.g. `Future<finished>`.
 * @function Future:__tostring
 * @treturn string `Future<pending>`, `Future<running>`, `Future<finished>` or `Future<cancelled>`
 */
static int fut_tostring(lua_State *L) {
  conc_future_t *f = checkselffuture(L);
  lua_pushfstring(L, "Future<%s>", statenames[conc_future_state(f)]);
  return 1;
}

/***
 * A future bound to no executor, for code that implements its own
 * executors or bridges: complete it with `set_running_or_notify_cancel`,
 * `set_result` and `set_exception`.
 * @function Future
 * @treturn Future a pending future
 */
static int fut_new(lua_State *L) {
  conc_future_t *f;
  lconc_checkopen(L);
  f = conc_future_new();
  if (f == NULL)
    return luaL_error(L, "not enough memory");
  lconc_newfuture(L, f);
  conc_future_unref(f);  /* the handle holds it now */
  return 1;
}


/* {======================================================================
** Waiting and outcomes
** ======================================================================= */

/* Block until the future of the handle at 1 is done or 'deadline'
** passes (0), running callbacks at safe points; when done, this state's
** callbacks of it have run (unless called inside a callback). A
** callback may finalize the handle by hand (getmetatable(f).__gc(f)),
** letting go of its future: the caller checks 'h->f' again after it. */
static int waitdone(lua_State *L, lconc_owner *o, handle *h,
                    double deadline) {
  conc_future_t *f;
  lconc_stackcheck_begin(L);
  lconc_ownersafepoint(L, o);
  if ((f = h->f) == NULL)
    finalized(L);
  if (!conc_future_done(f)) {
    conc_watch_t *set;
    uintptr_t tag;
    int got;
    if (conc_future_is_current(f))
      lconc_raise(L, "InvalidStateError",
                  "a task cannot wait for its own future");
    set = lconc_pushwatch(L);
    if (conc_watch_add(set, f, 0) != 0)
      return luaL_error(L, "not enough memory");
    got = lconc_watchnext(L, set, deadline, &tag);
    lconc_closewatch(L, -1);
    lua_pop(L, 1);
    if (!got)
      return 0;
  }
  if (h->bits & H_CALLBACKS)
    lconc_firecallbacks(L, 1, 0);
  lconc_stackcheck_end(L, 0);
  return 1;
}

/* Push the state's outcome table, made on first use. */
static void pushoutcomes(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &OUTCOMES) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &OUTCOMES);
}

/* Keep a single nil, boolean or number at the top in the handle: 1, or
** 0 for any other value. */
static int keepscalar(lua_State *L, handle *h) {
  switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
      if (lua_isinteger(L, -1)) {
        h->v.i = lua_tointeger(L, -1);
        h->out = OUT_INT;
      } else {
        h->v.n = lua_tonumber(L, -1);
        h->out = OUT_FLT;
      }
      return 1;
    case LUA_TBOOLEAN:
      h->v.i = lua_toboolean(L, -1);
      h->out = OUT_BOOL;
      return 1;
    case LUA_TNIL:
      h->out = OUT_NIL;
      return 1;
    default: return 0;
  }
}

/* Push the outcome kept in the handle (OUT_SCALAR and above). */
static void pushscalar(lua_State *L, const handle *h) {
  switch (h->out) {
    case OUT_INT: lua_pushinteger(L, h->v.i); break;
    case OUT_FLT: lua_pushnumber(L, h->v.n); break;
    case OUT_BOOL: lua_pushboolean(L, (int)h->v.i); break;
    default: lua_pushnil(L);
  }
}

/* Keep the 'n' values at the top as the outcome of the handle at 1,
** and leave it on the stack: the single value, or the table. The handle
** says it has an outcome only once it is stored: out of memory before
** leaves it with none (to decode again), not one that reads as nil. */
static int keepoutcome(lua_State *L, handle *h, int n, int failed) {
  int i, out = OUT_ONE;
  if (n == 1 && !failed) {
    if (keepscalar(L, h))
      return OUT_ONE;
  } else {
    lua_createtable(L, n, 2);
    lua_insert(L, -n - 1);
    for (i = n; i >= 1; i--)
      lua_rawseti(L, -(i + 1), i);
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    lua_pushboolean(L, failed);
    lua_setfield(L, -2, "failed");
    out = OUT_TABLE;
  }
  pushoutcomes(L);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  h->out = (unsigned char)out;
  return out;
}

/* Forget the outcome kept for the handle at 1 (nothing allocates). */
static void forgetoutcome(lua_State *L, handle *h) {
  if (h->out == OUT_ONE || h->out == OUT_TABLE) {
    pushoutcomes(L);  /* there: keepoutcome stored in it */
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  h->out = OUT_NONE;
}

/* Push the outcome of the FINISHED future of the handle 'h' at 1,
** decoding it on first use: the single result itself (OUT_ONE), at the
** top, or the table, at 2 (the stack is cut to the handle first). */
static int pushoutcome(lua_State *L, handle *h) {
  const void *data;
  size_t len;
  int failed;
  lconc_scalar s;
  if (h->out >= OUT_SCALAR) {
    pushscalar(L, h);
    return OUT_ONE;
  }
  if (h->out != OUT_NONE) {
    lua_settop(L, 1);
    pushoutcomes(L);
    lua_pushvalue(L, 1);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    return h->out;
  }
  if (conc_future_payload(h->f, &data, &len, &failed) != 0)
    luaL_error(L, "future has no outcome");
  if (data == NULL)
    luaL_error(L, "the future's values could not be transferred to this state");
  if (!failed && lconc_peekscalar((const conc_payload_t *)data, &s)) {
    if (s.type == LUA_TNUMBER && !s.isint) {
      h->v.n = s.v.n;
      h->out = OUT_FLT;
    } else {
      h->v.i = s.v.i;
      h->out = s.type == LUA_TNUMBER ? OUT_INT
               : s.type == LUA_TBOOLEAN ? OUT_BOOL : OUT_NIL;
    }
    pushscalar(L, h);
    return OUT_ONE;
  }
  lua_settop(L, 1);
  return keepoutcome(L, h, lconc_decode(L, (const conc_payload_t *)data),
                     failed);
}

/* Wait (argument 2 is the timeout) and push the outcome as
** pushoutcome does; raises TimeoutError or CancelledError. */
static int outcome(lua_State *L, const char *what) {
  int top = lua_gettop(L);
  lconc_owner *o = (lconc_owner *)lua_touserdata(L, UP_OWNER);
  handle *h = checkself(L);
  double deadline;
  if (h->f == NULL)
    finalized(L);
  deadline = top < 2 ? CONC_FOREVER : lconc_optdeadline(L, 2);
  if (!waitdone(L, o, h, deadline))
    lconc_raise(L, "TimeoutError", "%s timed out", what);
  if (h->f == NULL)  /* finalized by a callback that ran meanwhile */
    finalized(L);
  if (conc_future_state(h->f) == CONC_CANCELLED)
    lconc_raise(L, "CancelledError", "the future was cancelled");
  return pushoutcome(L, h);
}

/***
 * All the values the task returned (multiple returns are kept), waiting
 * for them up to `timeout` seconds. Callbacks of this state run meanwhile
 * (a safe point). Decoded once per state: every call returns the same
 * values.
 * @function Future:result
 * @tparam[opt] number timeout seconds; `nil` waits forever, `0` does not block
 * @return the task's results
 * @raise `TimeoutError` on timeout, `CancelledError` if cancelled, or the
 * task's own error value (a deep copy) if the task raised
 */
static int fut_result(lua_State *L) {
  int n, i;
  if (outcome(L, "result") == OUT_ONE)
    return 1;
  if (lua_getfield(L, 2, "failed"), lua_toboolean(L, -1)) {
    lua_rawgeti(L, 2, 1);
    return lua_error(L);
  }
  lua_getfield(L, 2, "n");
  n = (int)lua_tointeger(L, -1);
  luaL_checkstack(L, n, "too many results");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, 2, i);
  return n;
}

/***
 * The task's error value, or `nil` if it succeeded (API.md). Waits as
 * `result`.
 * @function Future:exception
 * @tparam[opt] number timeout seconds
 * @return the error value, or `nil`
 * @raise `TimeoutError`, `CancelledError`
 */
static int fut_exception(lua_State *L) {
  if (outcome(L, "exception") == OUT_ONE
      || (lua_getfield(L, 2, "failed"), !lua_toboolean(L, -1))) {
    lua_pushnil(L);  /* one value: type(f:exception()) works */
    return 1;
  }
  lua_rawgeti(L, 2, 1);
  return 1;
}

/***
 * The worker-side traceback of a failed task.
 * @function Future:traceback
 * @treturn ?string the traceback, or `nil` if the future did not fail
 */
static int fut_traceback(lua_State *L) {
  handle *h = checkselflive(L);
  const void *data;
  size_t len;
  int failed;
  if (conc_future_payload(h->f, &data, &len, &failed) != 0 || !failed) {
    lua_pushnil(L);  /* one value, as for a failure without one */
    return 1;
  }
  pushoutcome(L, h);  /* a table (failed), at 2 */
  lua_rawgeti(L, 2, 2);
  return 1;
}

/* }====================================================================== */


/* {======================================================================
** State
** ======================================================================= */

/***
 * Cancel the future if it has not started; its callbacks of this state
 * run at once. With `{running = true}`, a running task of an executor is
 * stopped too: it is interrupted in its worker, and the future ends
 * cancelled once the task has unwound.
 * @function Future:cancel
 * @tparam[opt] table opts `{running = true}` to stop a running task
 * @treturn boolean `true` if it is (now, already, or soon) cancelled,
 * `false` if it is done (or, without `running`, running)
 */
static int fut_cancel(lua_State *L) {
  static const char *const canceloptions[] = { "running", NULL };
  conc_future_t *f = checkselffuture(L);
  int running = 0, r;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lconc_checkoptions(L, 2, canceloptions);
    if (lua_getfield(L, 2, "running") != LUA_TNIL && !lua_isboolean(L, -1))
      luaL_argerror(L, 2, lua_pushfstring(L, "running must be a boolean, "
                    "got %s", luaL_typename(L, -1)));
    running = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  r = running ? conc_future_cancel_running(f) : conc_future_cancel(f);
  if (r && conc_future_done(f))  /* a running task ends later */
    lconc_firecallbacks(L, 1, 1);
  lua_pushboolean(L, r);
  return 1;
}

/***
 * @function Future:cancelled
 * @treturn boolean whether it was cancelled
 */
static int fut_cancelled(lua_State *L) {
  lua_pushboolean(L, conc_future_state(checkselffuture(L))
                     == CONC_CANCELLED);
  return 1;
}

/***
 * @function Future:running
 * @treturn boolean whether its task is running
 */
static int fut_running(lua_State *L) {
  lua_pushboolean(L, conc_future_state(checkselffuture(L))
                     == CONC_RUNNING);
  return 1;
}

/***
 * @function Future:done
 * @treturn boolean whether it finished or was cancelled (not a safe point)
 */
static int fut_done(lua_State *L) {
  lua_pushboolean(L, conc_future_done(checkselffuture(L)));
  return 1;
}

/***
 * Call `fn(f, ...)` once the future is done, in this state and its own
 * thread, at a safe point (at once if it is already done). An error in a
 * callback is reported on stderr and does not stop the others.
 * @function Future:add_done_callback
 * @tparam function fn the callback
 * @param ... arguments bound after the future
 * @usage f:add_done_callback(function(fut, id) print(id, fut:result()) end, 1)
 */
static int fut_add_done_callback(lua_State *L) {
  conc_future_t *f = checkselffuture(L);
  lconc_checkcallable(L, 2);
  ((handle *)lua_touserdata(L, 1))->bits |= H_CALLBACKS;
  lconc_sharefuture(L, 1);  /* the mailbox posts it back by pointer */
  lconc_addcallback(L, 1, 2);
  if (conc_future_done(f))
    lconc_firecallbacks(L, 1, 1);
  return 0;
}

/***
 * Mark a bare future as running, unless it was cancelled.
 * @function Future:set_running_or_notify_cancel
 * @treturn boolean `false` if it was cancelled (do not run the work), `true` if it now runs
 * @raise `InvalidStateError` if it is running or done
 */
static int fut_set_running_or_notify_cancel(lua_State *L) {
  conc_future_t *f = checkselffuture(L);
  int r = conc_future_set_running_or_notify_cancel(f);
  if (r < 0)
    return lconc_raise(L, "InvalidStateError", "future is %s",
                       statenames[conc_future_state(f)]);
  lua_pushboolean(L, r);
  return 1;
}

/* Encode the 'n' (at 1) values above it; a light userdata result. */
static int encode_protected(lua_State *L) {
  int n = (int)lua_tointeger(L, 1);
  conc_payload_t *p = lconc_encode(L, 2, n, "result", 1);
  lua_pushlightuserdata(L, p);
  return 1;
}

/* (Protected.) keep_protected(handle, failed, values...): keep the
** values as the outcome of the handle. */
static int keep_protected(lua_State *L) {
  int failed = lua_toboolean(L, 2);
  lua_remove(L, 2);
  keepoutcome(L, (handle *)lua_touserdata(L, 1), lua_gettop(L) - 1, failed);
  return 0;
}

static int raisestate(lua_State *L, conc_future_t *f) {
  return lconc_raise(L, "InvalidStateError", "future is %s",
                     statenames[conc_future_state(f)]);
}

/*
** Finish the future at 1 with the values 2..top: kept as they are for
** this state (so result() returns the very values), encoded for the
** others (NULL when they cannot cross: those states get an error). Both
** are made before the future finishes, so running out of memory in
** either raises "not enough memory" and leaves the future as it was
** (before, an encode out of memory finished it with no values for any
** other state, and a keep out of memory with none for this one either).
** The handle is checked again after them: a finalizer their allocations
** ran may have finalized it by hand (waitdone).
*/
static int finish(lua_State *L, int failed) {
  handle *h = (handle *)lua_touserdata(L, 1);  /* checked by the caller */
  int n = lua_gettop(L) - 1, r;
  conc_payload_t *p = NULL;
  if (conc_future_done(h->f))  /* before keeping: h may have an outcome */
    return raisestate(L, h->f);
  luaL_checkstack(L, n + 3, "too many results");
  lua_pushcfunction(L, encode_protected);
  lua_pushinteger(L, n);
  for (r = 0; r < n; r++)
    lua_pushvalue(L, 2 + r);
  r = lua_pcall(L, n + 1, 1, 0);
  if (r == LUA_ERRMEM)
    return lua_error(L);
  if (r == LUA_OK)
    p = (conc_payload_t *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  lua_pushcfunction(L, keep_protected);
  lua_pushvalue(L, 1);
  lua_pushboolean(L, failed);
  for (r = 0; r < n; r++)
    lua_pushvalue(L, 2 + r);
  if (lua_pcall(L, n + 2, 0, 0) != LUA_OK) {
    conc_payload_free(p);
    return lua_error(L);
  }
  if (h->f == NULL) {
    forgetoutcome(L, h);
    conc_payload_free(p);
    return finalized(L);
  }
  /* (values reaching h->f, a cycle, are kept for this state only) */
  if (conc_payload_finish(h->f, p, failed, NULL, NULL) != 0) {
    forgetoutcome(L, h);  /* finished meanwhile (another thread) */
    return raisestate(L, h->f);
  }
  lconc_firecallbacks(L, 1, 1);
  return 0;
}

/***
 * Finish the future with results; the callbacks registered by this
 * state run at once, those of other states at their safe points.
 * @function Future:set_result
 * @param ... the results (the Transfer rules apply)
 * @raise `InvalidStateError` if it is already done
 */
static int fut_set_result(lua_State *L) {
  checkselffuture(L);
  return finish(L, 0);
}

/* As lua.c reports it, a nil error becomes a string. */
/***
 * Finish the future with an error value.
 * @function Future:set_exception
 * @param err the error value
 * @raise `InvalidStateError` if it is already done
 */
static int fut_set_exception(lua_State *L) {
  checkselffuture(L);
  lua_settop(L, 2);
  if (lua_isnil(L, 2))
    lua_pushliteral(L, "(error object is a nil value)"), lua_replace(L, 2);
  return finish(L, 1);
}

/* core._fail(f, err, traceback): set_exception keeping a traceback for
** f:traceback(), as a failed task's outcome has (cf.async, cf.all). */
static int fut_fail(lua_State *L) {
  lconc_checkfuture(L, 1);
  luaL_checkstring(L, 3);
  lua_settop(L, 3);
  if (lua_isnil(L, 2))
    lua_pushliteral(L, "(error object is a nil value)"), lua_replace(L, 2);
  return finish(L, 1);
}

/* {======================================================================
** Running cancels of cf.async futures
** ======================================================================= */

/* A cf.async run's hold on its future 'out' and on 'sig', a future of
** its own that a running cancel of 'out' cancels (from any thread): a
** done-callback of 'sig' then stops the run at the state's next safe
** point. It keeps a reference to each until the run ends, so 'sig'
** outlives every call of the stopper. */
typedef struct asynchold {
  conc_future_t *out, *sig;
} asynchold;

static const char ASYNCHOLDMT = 'a';

static void asyncstopper(void *sig) {
  conc_future_cancel((conc_future_t *)sig);
}

/* End the hold: 1 if a stop was asked (then 'out' is CANCELLED). */
static int asyncend(asynchold *a) {
  int stopped = 0;
  if (a->out != NULL) {
    stopped = conc_future_stop_end(a->out);
    conc_future_unref(a->out);
    conc_future_unref(a->sig);
    a->out = a->sig = NULL;
  }
  return stopped;
}

static int asynchold_gc(lua_State *L) {
  asyncend((asynchold *)lua_touserdata(L, 1));
  return 0;
}

/* core._asyncstoppable(out, sig) -> hold: a running cancel of the
** RUNNING future 'out' cancels 'sig' (API.md: it stops a running
** cf.async as it stops a task). */
static int fut_asyncstoppable(lua_State *L) {
  conc_future_t *out = lconc_checkfuture(L, 1);
  conc_future_t *sig = lconc_checkfuture(L, 2);
  asynchold *a = (asynchold *)lua_newuserdatauv(L, sizeof(*a), 0);
  a->out = a->sig = NULL;
  lconc_setgcmeta(L, &ASYNCHOLDMT, asynchold_gc);
  if (conc_future_set_stopper(out, asyncstopper, sig) != 0)
    return luaL_error(L, "future is not running");
  conc_future_ref(out);
  conc_future_ref(sig);
  a->out = out;
  a->sig = sig;
  return 1;
}

/* core._asyncend(hold) -> whether a stop was asked: the run ended, no
** stop can come any more; its future is then CANCELLED, else the run
** completes it. */
static int fut_asyncend(lua_State *L) {
  asynchold *a = (asynchold *)lua_touserdata(L, 1);
  int ok = a != NULL && lua_getmetatable(L, 1);
  if (ok) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ASYNCHOLDMT);
    ok = lua_rawequal(L, -1, -2);
  }
  luaL_argcheck(L, ok, 1, "cf.async hold expected");
  lua_pushboolean(L, asyncend(a));
  return 1;
}

/* core._uncallback(f, fn): drop the callbacks 'fn' of 'f' that have not
** run. For cf.await's driver once the await is over (timed out, or the
** run stopped), and cf.all and cf.any once decided: their callback
** would stay (with what it holds) until 'f' is done, for ever for a
** future never done. */
static int fut_uncallback(lua_State *L) {
  checkhandle(L, 1);
  luaL_checkany(L, 2);
  lconc_removecallback(L, 1, 2);
  return 0;
}

/* core._closing() -> whether the state is closing (lua_close runs its
** finalizers, and the callbacks an executor's finalizer runs). The
** handles of cf.async's run may be finalized by then: its driver
** leaves the run alone, as Lua leaves a suspended coroutine. */
static int fut_closing(lua_State *L) {
  lua_pushboolean(L, lconc_closing(L));
  return 1;
}

/* }====================================================================== */

static const luaL_Reg methods[] = {
  {"result", fut_result},
  {"exception", fut_exception},
  {"traceback", fut_traceback},
  {"cancel", fut_cancel},
  {"cancelled", fut_cancelled},
  {"running", fut_running},
  {"done", fut_done},
  {"add_done_callback", fut_add_done_callback},
  {"set_running_or_notify_cancel", fut_set_running_or_notify_cancel},
  {"set_result", fut_set_result},
  {"set_exception", fut_set_exception},
  {NULL, NULL}
};

static const luaL_Reg metamethods[] = {
  {"__gc", fut_gc},
  {"__tostring", fut_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

/* Adds Future() to the module table at the top. */
void lconc_open_future(lua_State *L) {
  if (luaL_newmetatable(L, LCONC_FUTURE_MT)) {
    lua_pushlightuserdata(L, lconc_getowner(L));
    luaL_setfuncs(L, metamethods, 1);
    luaL_newlibtable(L, methods);
    lua_pushlightuserdata(L, lconc_getowner(L));
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &FUTMT);
  lua_pushcfunction(L, fut_new);
  lua_setfield(L, -2, "Future");
  lua_pushcfunction(L, fut_fail);
  lua_setfield(L, -2, "_fail");
  lua_pushcfunction(L, fut_asyncstoppable);
  lua_setfield(L, -2, "_asyncstoppable");
  lua_pushcfunction(L, fut_asyncend);
  lua_setfield(L, -2, "_asyncend");
  lua_pushcfunction(L, fut_closing);
  lua_setfield(L, -2, "_closing");
  lua_pushcfunction(L, fut_uncallback);
  lua_setfield(L, -2, "_uncallback");
}
