/*
** lqueue.c: cf.Queue, the Queue userdata over a core conc_chanq_t. Values
** are encoded on put and decoded on get (Transfer rules); waits are
** safe points. One handle per queue per state, as for futures.
*/

/***
 * Queues.
 * @submodule concurrent.futures
 */
#include "lconcurrent.h"

static const char handles_key = 'q';  /* registry: weak chanq -> handle */

typedef struct qhandle {
  conc_chanq_t *q;
} qhandle;

/* A payload waiting for room, freed by the collector if an error
** unwinds the wait. */
#define BOX_MT "concurrent.payloadbox"

static int box_gc(lua_State *L) {
  conc_payload_t **b = (conc_payload_t **)lua_touserdata(L, 1);
  conc_payload_free(*b);
  *b = NULL;
  return 0;
}

/* (Protected.) Push an empty box. */
static int newbox(lua_State *L) {
  conc_payload_t **b = (conc_payload_t **)lua_newuserdatauv(L, sizeof(*b), 0);
  *b = NULL;
  if (luaL_newmetatable(L, BOX_MT)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return 1;
}

conc_chanq_t *lconc_testqueue(lua_State *L, int idx) {
  qhandle *h = (qhandle *)luaL_testudata(L, idx, LCONC_QUEUE_MT);
  return h != NULL ? h->q : NULL;
}

static qhandle *checkhandle(lua_State *L) {
  return (qhandle *)luaL_checkudata(L, 1, LCONC_QUEUE_MT);
}

/* The queue of the handle 'h', which a hand-called __gc
** (getmetatable(q).__gc(q)) may have let go of, also during a method's
** safe point or an allocation's finalizer: each method checks again
** after such a step. */
static conc_chanq_t *liveq(lua_State *L, const qhandle *h) {
  if (h->q == NULL)
    luaL_error(L, "queue handle already finalized");
  return h->q;
}

static conc_chanq_t *checkqueue(lua_State *L) {
  return liveq(L, checkhandle(L));
}

/* Push this state's handle of 'q' (taking a reference on first sight). */
void lconc_pushqueue(lua_State *L, conc_chanq_t *q) {
  qhandle *h;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &handles_key);
  if (lua_rawgetp(L, -1, q) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  lconc_checkopen(L);
  h = (qhandle *)lua_newuserdatauv(L, sizeof(*h), 0);
  h->q = NULL;
  luaL_setmetatable(L, LCONC_QUEUE_MT);
  conc_chanq_ref(q);
  h->q = q;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, q);
  lua_remove(L, -2);
}

/* Called by hand, the handle is still this state's handle of its
** queue: it leaves the handle table first, or a queue made later at the
** same address would be given this dead handle. */
static int q_gc(lua_State *L) {
  qhandle *h = checkhandle(L);
  if (h->q != NULL) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &handles_key) == LUA_TTABLE
        && lua_rawgetp(L, -1, h->q) == LUA_TUSERDATA
        && lua_touserdata(L, -1) == (void *)h) {
      lua_pushnil(L);
      lua_rawsetp(L, -3, h->q);
    }
    lua_settop(L, 1);
    conc_chanq_unref(h->q);
    h->q = NULL;
  }
  return 0;
}

/***
 * A FIFO of values shared across states like a future: it crosses into
 * tasks of both pools as a handle (in a worker process, a proxy whose
 * operations the parent carries out), so workers stream values to the caller
 * or to each other. Values are copied in on `put` (the rules of
 * `Executor:submit`) and decoded on `get`.
 * @function Queue
 * @tparam[opt=0] integer maxsize the most values it holds; 0 = unbounded
 * @treturn Queue
 * @usage local q = cf.Queue(100)
 * ex:submit(function(out) for i = 1, 10 do out:put(i) end out:close() end, q)
 * for v in q:values() do print(v) end
 */
/* The handle is made first, then the queue attached (liolib's order). */
static int q_new(lua_State *L) {
  lua_Integer max = 0;
  qhandle *h;
  if (!lua_isnoneornil(L, 1)) {
    int isint;
    max = lua_tointegerx(L, 1, &isint);
    luaL_argexpected(L, lua_type(L, 1) == LUA_TNUMBER, 1, "number");
    luaL_argcheck(L, isint && max >= 0, 1,
                  "maxsize must be a non-negative integer");
  }
  lconc_checkopen(L);
  h = (qhandle *)lua_newuserdatauv(L, sizeof(*h), 0);
  h->q = NULL;
  luaL_setmetatable(L, LCONC_QUEUE_MT);
  if ((h->q = conc_chanq_new((size_t)max)) == NULL)
    return luaL_error(L, "not enough memory");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &handles_key);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, h->q);
  lua_pop(L, 1);
  return 1;
}


/* {======================================================================
** Waiting for a change
** ======================================================================= */

#define WAKE_MT "concurrent.queuewake"

static int wake_gc(lua_State *L) {
  conc_future_t **w = (conc_future_t **)lua_touserdata(L, 1);
  if (*w != NULL) {
    conc_future_unref(*w);
    *w = NULL;
  }
  return 0;
}

/* Push a new future for the queue to cancel when it changes, anchored
** in a userdata made first (an allocation error then leaks nothing).
** The slot is to-be-closed: popping it (or an error, or the return of
** the C function) releases the future at once. Left to the collector, a
** wake made in a finalizer while the state closes was never released
** (Lua runs no finalizer of what is made then). */
static conc_future_t *newwake(lua_State *L) {
  conc_future_t **w = (conc_future_t **)lua_newuserdatauv(L, sizeof(*w), 0);
  *w = NULL;
  if (luaL_newmetatable(L, WAKE_MT)) {
    lua_pushcfunction(L, wake_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, wake_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  if ((*w = conc_future_new()) == NULL)
    luaL_error(L, "not enough memory");
  return *w;
}

/* Wait for 'wake' (the queue changed) until 'deadline', running
** callbacks at safe points: 1, or 0 on timeout (then 'wake' is
** cancelled, so the queue forgets it). */
static int waitchange(lua_State *L, conc_future_t *wake, double deadline) {
  conc_watch_t *set = lconc_pushwatch(L);
  uintptr_t tag;
  int got;
  if (conc_watch_add(set, wake, 0) != 0)
    return luaL_error(L, "not enough memory");
  got = lconc_watchnext(L, set, deadline, &tag);
  lconc_closewatch(L, -1);
  lua_pop(L, 1);
  if (!got)
    conc_future_cancel(wake);
  return got;
}

/* }====================================================================== */


/* {======================================================================
** put
** ======================================================================= */

/* The queue was full: box the payload (an error while waiting must not
** leak it) and wait for room. 0 once the queue took it; otherwise the
** payload is freed and the code returned. */
static int putslow(lua_State *L, const qhandle *h, conc_payload_t *p,
                   double deadline) {
  conc_payload_t **b;
  int r = CONC_ETIMEDOUT;
  lua_pushcfunction(L, newbox);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {  /* out of memory */
    conc_payload_free(p);
    return lua_error(L);
  }
  b = (conc_payload_t **)lua_touserdata(L, -1);
  *b = p;
  while (r == CONC_ETIMEDOUT) {
    conc_future_t *wake = newwake(L);
    r = conc_payload_tryput(liveq(L, h), p, wake);
    if (r == CONC_ETIMEDOUT && !waitchange(L, wake, deadline)) {
      r = conc_payload_tryput(liveq(L, h), p, NULL);
      if (r == CONC_ETIMEDOUT)
        break;
    }
    lua_pop(L, 1);  /* wake */
  }
  if (r != 0)
    conc_payload_free(p);
  *b = NULL;
  return r;
}

static int queueerror(lua_State *L, int r, const char *what) {
  if (r == CONC_ECLOSED)
    return luaL_error(L, "queue is closed");
  if (r == CONC_EINVAL)  /* a put into the parent's queue, in a process */
    return luaL_error(L, "a future, or a queue made in a worker process, "
                      "cannot leave it");
  if (r == CONC_ETIMEDOUT)
    return lconc_raise(L, "TimeoutError", "%s timed out", what);
  if (r == CONC_ECYCLE)  /* a cycle of references that nothing breaks */
    return luaL_error(L, "cannot put a queue into itself (the value holds "
                      "it, or a queue or a finished future that does)");
  return lconc_coreerror(L, r, what);
}

/***
 * Copy `v` in at the back, waiting while the queue is full. Callbacks of
 * this state run meanwhile (a safe point).
 * @function Queue:put
 * @param v the value (`nil` too)
 * @tparam[opt] number timeout seconds; `nil` waits forever, `0` does not block
 * @raise `TimeoutError` on timeout, "queue is closed" once closed (also
 * while it waits), or "cannot transfer argument #1.x (userdata)" naming
 * a value that cannot cross; in a worker process, putting a future or a
 * queue made there into the parent's queue raises "a future, or a queue
 * made in a worker process, cannot leave it"; "cannot put a queue into
 * itself" for a value that holds the queue, directly or through the
 * queues and finished futures it holds (a cycle nothing would free)
 */
static int q_put(lua_State *L) {
  qhandle *h = checkhandle(L);
  double deadline = lconc_optdeadline(L, 3);
  conc_chanq_t *q;
  conc_payload_t *p;
  int r;
  liveq(L, h);
  luaL_checkany(L, 2);
  lua_settop(L, 2);
  lconc_safepoint(L);
  p = lconc_encode(L, 2, 1, "argument", 1);
  if ((q = h->q) == NULL) {  /* finalized by the safe point or the encode */
    conc_payload_free(p);
    return liveq(L, h), 0;
  }
  r = conc_payload_tryput(q, p, NULL);
  if (r == CONC_ETIMEDOUT)
    r = putslow(L, h, p, deadline);
  else if (r != 0)
    conc_payload_free(p);
  return r == 0 ? 0 : queueerror(L, r, "put");
}

/* }====================================================================== */


/* {======================================================================
** get
** ======================================================================= */

static int decode_protected(lua_State *L) {
  const conc_payload_t *p = (const conc_payload_t *)lua_touserdata(L, 1);
  lua_pop(L, 1);
  return lconc_decode(L, p);
}

/* (Protected.) The message of error 1, saying that the value is lost. */
static int lostmsg(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  lua_pushliteral(L, " (the value taken from the queue is lost)");
  lua_concat(L, 2);
  return 1;
}

/* Push the value of an item taken from 'q'. A decode that fails (a
** worker's max_memory, a state that closes) gives the item back at the
** front of 'q', where the next get finds it again, and raises its error:
** the value is not lost for a failure of this taker (a process pool's
** worker sends it back to its parent's queue). Where it cannot go back
** (no memory, a parent gone, a value that holds a future), the error
** says that the value is lost. The caller gave a reference to
** 'q', released here: a finalizer that the decode runs may let go of
** the handle's. */
static int pushitem(lua_State *L, conc_chanq_t *q, void *data, size_t len,
                    conc_free_fn freefn) {
  int top = lua_gettop(L), r;
  lua_pushcfunction(L, decode_protected);
  lua_pushlightuserdata(L, data);
  r = lua_pcall(L, 1, LUA_MULTRET, 0);
  if (r == LUA_OK) {
    conc_chanq_unref(q);
    if (freefn != NULL)
      freefn(data);
    return lua_gettop(L) - top;
  }
  r = conc_chanq_unget(q, data, len, freefn);
  conc_chanq_unref(q);
  if (r != 0) {
    if (freefn != NULL)
      freefn(data);
    lua_pushcfunction(L, lostmsg);
    lua_insert(L, -2);
    lconc_liftcap(L, 1);  /* (as the module's errors: past the cap) */
    lua_pcall(L, 1, 1, 0);  /* (its own error, if it fails all the same) */
    lconc_liftcap(L, 0);
  }
  return lua_error(L);
}

/* The next value (and true), or nil, false once closed and drained. */
static int getvalue(lua_State *L, const qhandle *h, double deadline) {
  conc_chanq_t *q;
  void *data;
  size_t len;
  conc_free_fn freefn;
  int r;
  lconc_safepoint(L);
  r = conc_chanq_tryget(liveq(L, h), &data, &len, &freefn, NULL);
  while (r == CONC_ETIMEDOUT) {
    conc_future_t *wake = newwake(L);
    r = conc_chanq_tryget(liveq(L, h), &data, &len, &freefn, wake);
    if (r == CONC_ETIMEDOUT && !waitchange(L, wake, deadline)) {
      r = conc_chanq_tryget(liveq(L, h), &data, &len, &freefn, NULL);
      if (r == CONC_ETIMEDOUT)
        return queueerror(L, r, "get");
    }
    lua_pop(L, 1);  /* wake */
  }
  if (r == CONC_ECLOSED) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  if (r != 0)
    return queueerror(L, r, "get");
  q = h->q;  /* (live: nothing ran since the get) */
  conc_chanq_ref(q);
  r = pushitem(L, q, data, len, freefn);
  lua_pushboolean(L, 1);
  return r + 1;
}

/***
 * Take the value at the front, waiting while the queue is empty (a safe
 * point). Once the queue is closed, what is left is still returned, then
 * `nil, false`.
 * @function Queue:get
 * @tparam[opt] number timeout seconds; `nil` waits forever, `0` does not block
 * @return the value and `true`; or `nil, false` when closed and drained
 * @raise `TimeoutError` on timeout; the error of a value that cannot be
 * made here (a task's `max_memory`): that value stays first in the queue
 */
static int q_get(lua_State *L) {
  qhandle *h = checkhandle(L);
  double deadline = lconc_optdeadline(L, 2);
  liveq(L, h);
  return getvalue(L, h, deadline);
}

static int q_valuesstep(lua_State *L) {
  qhandle *h = checkhandle(L);
  int n;
  liveq(L, h);
  lua_settop(L, 1);
  n = getvalue(L, h, CONC_FOREVER);
  if (!lua_toboolean(L, -1))
    return 0;  /* closed and drained: the loop ends */
  lua_pop(L, 1);
  return n - 1;  /* the value alone */
}

/***
 * Iterate over the values until the queue is closed and drained (a
 * `nil` value ends the loop early: use `get` for queues that carry nils).
 * @function Queue:values
 * @return an iterator for a generic `for`
 * @usage for v in q:values() do print(v) end
 */
static int q_values(lua_State *L) {
  checkqueue(L);
  lua_pushcfunction(L, q_valuesstep);
  lua_pushvalue(L, 1);
  return 2;
}

/* }====================================================================== */


/***
 * Refuse further `put`s and wake every waiting `get` and `put`; `get`
 * still returns what is left. Idempotent.
 * @function Queue:close
 */
static int q_close(lua_State *L) {
  conc_chanq_close(checkqueue(L));
  return 0;
}

/***
 * `#q`: how many values the queue holds now.
 * @function Queue:__len
 * @treturn integer
 */
static int q_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc_chanq_len(checkqueue(L)));
  return 1;
}

/***
 * `tostring(q)`, e.g. `Queue<open, 3 items>`.
 * @function Queue:__tostring
 * @treturn string
 */
static int q_tostring(lua_State *L) {
  conc_chanq_t *q = checkqueue(L);
  lua_pushfstring(L, "Queue<%s, %d items>",
                  conc_chanq_closed(q) ? "closed" : "open",
                  (int)conc_chanq_len(q));
  return 1;
}

static const luaL_Reg methods[] = {
  {"put", q_put},
  {"get", q_get},
  {"close", q_close},
  {"values", q_values},
  {NULL, NULL}
};

static const luaL_Reg metamethods[] = {
  {"__gc", q_gc},
  {"__len", q_len},
  {"__tostring", q_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

/* Adds Queue() to the module table at the top. */
void lconc_open_queue(lua_State *L) {
  if (luaL_newmetatable(L, LCONC_QUEUE_MT)) {
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlibtable(L, methods);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &handles_key) == LUA_TNIL) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &handles_key);
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, q_new);
  lua_setfield(L, -2, "Queue");
}
