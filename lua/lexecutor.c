/*
** lexecutor.c: cf.ThreadPoolExecutor, the Lua face of a core pool whose
** workers each own a lua_State (lworker.c).
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lconcurrent.h"
#include "lworker.h"

#define EXECUTOR_MT "concurrent.ThreadPoolExecutor"

typedef struct executor {
  conc_pool_t *pool;
  lconc_shared *sh;
  int shutdown;   /* no new submissions */
  conc_pool_stats_t last;  /* the pool's final counts, once it is freed */
} executor;

/* A task of this pool: the core task plus its encoded fn and arguments. */
typedef struct ltask {
  conc_task_t base;
  lconc_shared *sh;
  conc_payload_t *payload;
} ltask;

static void task_run(conc_task_t *t, void *ctx) {
  ltask *lt = (ltask *)t;
  lconc_worker_run((lua_State *)ctx, lt->payload, t->future);
  conc_payload_free(lt->payload);
  free(lt);
}

/* Never to run: cancelled (the future says so already), or the pool is
** broken (the future learns it here). */
static void task_drop(conc_task_t *t, int why) {
  ltask *lt = (ltask *)t;
  if (why == CONC_EBROKEN) {
    conc_payload_t *p = lconc_shared_brokenpayload(lt->sh);
    if (conc_future_set_exception(t->future, p, conc_payload_sizeof(p),
                                  conc_payload_free) != 0)
      conc_payload_free(p);
  }
  conc_payload_free(lt->payload);
  free(lt);
}

static executor *checkexecutor(lua_State *L) {
  return (executor *)luaL_checkudata(L, 1, EXECUTOR_MT);
}

/* Raise BrokenThreadPool if the pool broke. */
static void checkbroken(lua_State *L, executor *ex) {
  char *msg = lconc_shared_broken(ex->sh);
  if (msg != NULL) {
    lconc_pusherror(L, "BrokenThreadPool", msg);
    free(msg);
    lua_error(L);
  }
}


/* Queue the encoded task 'p' for the future 'f'. On failure frees 'p' and
** raises; the pool holds its own reference to 'f' once queued. */
static void submit(lua_State *L, executor *ex, conc_future_t *f,
                   conc_payload_t *p) {
  ltask *t = (ltask *)calloc(1, sizeof(*t));
  int r;
  if (t == NULL) {
    conc_payload_free(p);
    luaL_error(L, "not enough memory");
  }
  t->sh = ex->sh;
  t->payload = p;
  t->base.run = task_run;
  t->base.drop = task_drop;
  t->base.future = f;
  conc_future_ref(f);
  r = conc_pool_submit(ex->pool, &t->base);
  if (r != 0) {
    conc_future_unref(f);
    conc_payload_free(p);
    free(t);
    checkbroken(L, ex);
    lconc_coreerror(L, r, "submit");
  }
}

/* ex:submit(fn, ...) -> Future. 'fn' is argument #1 of the transfer. */
static int ex_submit(lua_State *L) {
  executor *ex = checkexecutor(L);
  conc_future_t *f;
  conc_payload_t *p;
  lconc_checkcallable(L, 2);
  if (ex->shutdown)
    return luaL_error(L, "cannot schedule new futures after shutdown");
  checkbroken(L, ex);
  f = conc_future_new();
  if (f == NULL)
    return luaL_error(L, "not enough memory");
  lconc_newfuture(L, f);  /* the handle owns 'f' from here */
  conc_future_unref(f);
  lua_insert(L, 2);
  p = lconc_encode(L, 3, lua_gettop(L) - 2, "argument", 1);
  submit(L, ex, f, p);
  lua_settop(L, 2);
  return 1;
}

/* Stop the pool: no new work; cancel what is queued if asked; wait for
** the rest if asked (joining the workers), running callbacks at safe
** points before and after. */
static void shutdown(lua_State *L, executor *ex, int wait, int cancel) {
  ex->shutdown = 1;
  if (ex->pool != NULL) {
    conc_pool_shutdown(ex->pool, 0, cancel);
    lconc_safepoint(L);
    if (!wait)
      return;
    conc_pool_shutdown(ex->pool, 1, 0);
    conc_pool_stats(ex->pool, &ex->last);
    conc_pool_free(ex->pool);
    ex->pool = NULL;
  }
  if (wait && ex->sh != NULL) {
    lconc_shared_free(ex->sh);
    ex->sh = NULL;
    lconc_safepoint(L);
  }
}

/* ex:shutdown([wait=true], [cancel_futures=false]) */
static int ex_shutdown(lua_State *L) {
  executor *ex = checkexecutor(L);
  int wait = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  shutdown(L, ex, wait, lua_toboolean(L, 3));
  return 0;
}

/* __gc and __close: shutdown(true). */
static int ex_gc(lua_State *L) {
  shutdown(L, checkexecutor(L), 1, 0);
  return 0;
}

static int ex_stats(lua_State *L) {
  executor *ex = checkexecutor(L);
  conc_pool_stats_t st = ex->last;
  if (ex->pool != NULL)
    conc_pool_stats(ex->pool, &st);
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, st.workers); lua_setfield(L, -2, "workers");
  lua_pushinteger(L, st.idle); lua_setfield(L, -2, "idle");
  lua_pushinteger(L, st.pending); lua_setfield(L, -2, "pending");
  lua_pushinteger(L, st.running); lua_setfield(L, -2, "running");
  lua_pushinteger(L, st.completed); lua_setfield(L, -2, "completed");
  lua_pushinteger(L, st.failed); lua_setfield(L, -2, "failed");
  lua_pushinteger(L, st.cancelled); lua_setfield(L, -2, "cancelled");
  return 1;
}

static int ex_tostring(lua_State *L) {
  executor *ex = checkexecutor(L);
  lua_pushfstring(L, "ThreadPoolExecutor<%s>",
                  ex->shutdown ? "shutdown" : "running");
  return 1;
}


/* {======================================================================
** Construction
** ======================================================================= */

static char *copystring(lua_State *L, int idx) {
  const char *s = lua_tostring(L, idx);
  char *c = strdup(s != NULL ? s : "");
  if (c == NULL)
    luaL_error(L, "not enough memory");
  return c;
}

/* The initializer and initargs of the option table at 1, encoded as one
** transfer: in errors the initializer is "initializer #0" and its
** arguments "initializer #1" onwards. */
static void readinit(lua_State *L, lconc_shared *sh) {
  int base, i, n = 0;
  if (lua_getfield(L, 1, "initializer") == LUA_TNIL) {
    if (lua_getfield(L, 1, "initargs") != LUA_TNIL)
      luaL_argerror(L, 1, "initargs given without an initializer");
    lua_pop(L, 2);
    return;
  }
  base = lua_gettop(L);
  lconc_checkcallable(L, base);
  if (lua_getfield(L, 1, "initargs") != LUA_TNIL) {
    if (!lua_istable(L, -1))
      luaL_argerror(L, 1, lua_pushfstring(L, "initargs must be a table, "
                    "got %s", luaL_typename(L, -1)));
    n = lua_getfield(L, -1, "n") == LUA_TNUMBER
        ? (int)lua_tointeger(L, -1) : (int)luaL_len(L, -2);
    lua_pop(L, 1);
    luaL_argcheck(L, n >= 0 && n <= 250, 1, "initargs has too many values");
    luaL_checkstack(L, n, "too many initargs");
    for (i = 1; i <= n; i++)
      lua_geti(L, base + 1, i);
  }
  lua_remove(L, base + 1);
  sh->init = lconc_encode(L, base, n + 1, "initializer", 0);
  lua_settop(L, base - 1);
}

/* The option table at 1: fills 'o' (its strings stay on the stack). */
static void readoptions(lua_State *L, conc_pool_opts_t *o) {
  if (lua_getfield(L, 1, "max_workers") != LUA_TNIL) {
    lua_Integer m = lua_tointeger(L, -1);
    if (!lua_isinteger(L, -1) || m <= 0 || m > 100000)
      luaL_argerror(L, 1, "max_workers must be a positive integer");
    o->max_workers = (int)m;
  }
  if (lua_getfield(L, 1, "thread_name_prefix") != LUA_TNIL
      && lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, 1, "thread_name_prefix must be a string");
  o->name_prefix = lua_tostring(L, -1);
}

/* The caller's package.path and cpath, for the workers. */
static void readpaths(lua_State *L, lconc_shared *sh) {
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    lua_getfield(L, -1, "path");
    lua_getfield(L, -2, "cpath");
  } else {
    lua_pushliteral(L, "");
    lua_pushliteral(L, "");
  }
  sh->path = copystring(L, -2);
  sh->cpath = copystring(L, -1);
  lua_pop(L, 3);
}

/* cf.ThreadPoolExecutor([max_workers] or {opts}) */
static int cf_ThreadPoolExecutor(lua_State *L) {
  conc_pool_opts_t o;
  executor *ex;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  memset(&o, 0, sizeof(o));
  o.max_workers = (int)(cpus > 0 ? cpus : 1) * 5;
  if (lua_istable(L, 1))
    readoptions(L, &o);
  else if (!lua_isnoneornil(L, 1)) {
    lua_Integer m = lua_tointeger(L, 1);
    if (!lua_isnumber(L, 1))
      return luaL_typeerror(L, 1, "integer or table");
    if (!lua_isinteger(L, 1) || m <= 0 || m > 100000)
      return luaL_argerror(L, 1, "max_workers must be a positive integer");
    o.max_workers = (int)m;
  }
  ex = (executor *)lua_newuserdatauv(L, sizeof(*ex), 0);
  memset(ex, 0, sizeof(*ex));
  luaL_setmetatable(L, EXECUTOR_MT);
  ex->sh = lconc_shared_new();
  if (ex->sh == NULL)
    return luaL_error(L, "not enough memory");
  readpaths(L, ex->sh);
  if (lua_istable(L, 1))
    readinit(L, ex->sh);
  o.worker_start = lconc_worker_start;
  o.worker_stop = lconc_worker_stop;
  o.ud = ex->sh;
  ex->pool = conc_pool_new(&o);
  if (ex->pool == NULL)
    return luaL_error(L, "cannot create the thread pool");
  return 1;
}

/* }====================================================================== */


static const luaL_Reg methods[] = {
  {"submit", ex_submit},
  {"shutdown", ex_shutdown},
  {"stats", ex_stats},
  {NULL, NULL}
};

static const luaL_Reg metamethods[] = {
  {"__gc", ex_gc},
  {"__close", ex_gc},
  {"__tostring", ex_tostring},
  {"__index", NULL},
  {NULL, NULL}
};

/* Adds ThreadPoolExecutor to the module table at the top, and
** 'executor_methods' (the methods table, where futures.lua adds map). */
void lconc_open_executor(lua_State *L) {
  if (luaL_newmetatable(L, EXECUTOR_MT)) {
    luaL_setfuncs(L, metamethods, 0);
    luaL_newlibtable(L, methods);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "executor_methods");
  lua_pop(L, 1);
  lua_pushcfunction(L, cf_ThreadPoolExecutor);
  lua_setfield(L, -2, "ThreadPoolExecutor");
}
