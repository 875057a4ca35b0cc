/*
** lexecutor.c: cf.ThreadPoolExecutor and cf.ProcessPoolExecutor, one Lua
** face over the core's executor back-ends (conc_executor_ops_t), whose
** workers run the Lua runtime of lworker.c.
*/
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lconcurrent.h"
#include "lexecutor.h"

#define THREADPOOL_MT "concurrent.ThreadPoolExecutor"
#define PROCESSPOOL_MT "concurrent.ProcessPoolExecutor"


/* Most arguments of a task in submit's table form (a C call's limit is
** about LUAI_MAXCCALLS stack slots away; this stays well inside). */
#define MAXARGS 250

typedef struct executor {
  const char *tag;         /* &exectag: what makes it an executor */
  void *buffer;            /* the codec's buffer, its user value */
  conc_executor_t *core;   /* NULL once shut down and freed */
  lconc_shared *sh;        /* the runtime's data, freed after 'core' */
  const char *name;        /* "ThreadPoolExecutor" */
  const char *broken_class;  /* "BrokenThreadPool" */
  lconc_closer closer;     /* linked to the owner while 'core' lives */
  int shutdown;            /* no new submissions */
  int local;               /* its tasks stay in the process (threads):
                           ** LCONC_ENC_LOCAL */
  double task_timeout;     /* seconds, or 0: no limit */
  conc_pool_stats_t last;  /* the final counts, once 'core' is freed */
} executor;

/* Upvalues of every method and metamethod: the Future's metatable
** and the codec's buffer (cheaper than their registry lookups on every
** submit). */
#define UP_FUTUREMT lua_upvalueindex(1)
#define UP_BUFFER lua_upvalueindex(2)  /* the codec's buffer */
#define NUPS 2

/* Every executor's 'tag' holds its address: this copy of the module's
** (the MPI module has its own copy of the binding, whose executors this
** one cannot run). Checking the userdata's size and then the tag costs
** a third of a metatable compare through the API, on every submit. A
** userdata of another type fails the size check or, if it has the size,
** the tag (only C code that copied this address could forge it), so its
** bytes are read only within the block; a light userdata has no size.
** It also accepts an executor of a class added by lconc_newexecclass
** (the MPI module's), which this copy of the module made. */
static const char exectag = 'x';

static void __attribute__((noinline, cold)) notexecutor(lua_State *L) {
  luaL_typeerror(L, 1, "executor");
}

static inline executor *toexecutor(lua_State *L) {
  executor *ex = NULL;
  if (lua_rawlen(L, 1) == sizeof(executor))
    ex = (executor *)lua_touserdata(L, 1);  /* NULL for a table */
  if (ex == NULL || ex->tag != &exectag)
    notexecutor(L);
  return ex;
}

/* Free the back-end (waiting for its work) and the runtime's data. */
static void release(executor *ex) {
  conc_executor_t *core = ex->core;
  lconc_removecloser(&ex->closer);
  ex->core = NULL;
  ex->shutdown = 1;
  if (core != NULL) {
    core->ops->stats(core, &ex->last);
    core->ops->free(core);
  }
  lconc_shared_free(ex->sh);
  ex->sh = NULL;
}

/* The owner's finalizer, when the state closes with 'ex' open. */
static void closer_close(lconc_closer *c) {
  release((executor *)((char *)c - offsetof(executor, closer)));
}

/* Raise the back-end's broken-pool error if it broke. */
static void checkbroken(lua_State *L, executor *ex) {
  char *msg = ex->core != NULL ? ex->core->ops->broken(ex->core) : NULL;
  if (msg != NULL) {
    lua_pushstring(L, msg);
    free(msg);
    lconc_pusherror(L, ex->broken_class, lua_tostring(L, -1));
    lua_error(L);
  }
}

/* Anything that can run Lua (an allocation's finalizer, a callback at a
** safe point) may shut 'ex' down under a method's feet: each method
** checks again after such a step, as liolib's 'tofile' does. */
static void checkopen(lua_State *L, executor *ex) {
  if (ex->shutdown || ex->core == NULL)
    luaL_error(L, "cannot schedule new futures after shutdown");
  checkbroken(L, ex);
}

/* Longer time limits (about 31 years) mean none: a deadline must stay
** a representable time. */
#define MAXLIMIT 1e9

/* A time limit at 'idx' (nil: 'def'): a positive number of seconds,
** inf (or past MAXLIMIT) for none (0); else an error on argument 'arg'
** naming 'what'. */
static double checklimit(lua_State *L, int idx, int arg, const char *what,
                         double def) {
  lua_Number t;
  if (lua_isnil(L, idx))
    return def;
  t = lua_tonumber(L, idx);
  if (lua_type(L, idx) == LUA_TNUMBER && t != t)
    luaL_argerror(L, arg, lua_pushfstring(L, "%s is not a number (NaN)",
                                          what));
  if (lua_type(L, idx) != LUA_TNUMBER || !(t > 0))
    luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a positive "
                                          "number", what));
  return t > MAXLIMIT ? 0 : (double)t;
}

/* The table form at 2, {fn, args..., n =, timeout =}: leaves fn and
** its arguments at 2.. instead; returns the task's time limit. */
static double unpacktask(lua_State *L, executor *ex) {
  static const char *const taskfields[] = { "n", "timeout", NULL };
  const char *key;
  lua_Integer n, i;
  double timeout;
  int isint;
  if (lua_gettop(L) > 2)
    luaL_argerror(L, 3, "no value expected after a task table");
  key = lconc_unknownkey(L, 2, taskfields, 1);
  if (key != NULL)
    luaL_argerror(L, 2, lua_pushfstring(L, "unknown field '%s' in the task "
                  "table (known: n, timeout, and the function and its "
                  "arguments at 1, 2, ...)", key));
  if (lua_getfield(L, 2, "n") == LUA_TNIL)
    n = luaL_len(L, 2) - 1;
  else {
    n = lua_tointegerx(L, -1, &isint);
    if (!isint || lua_type(L, -1) != LUA_TNUMBER || n < 0)
      luaL_argerror(L, 2, "n must be a non-negative integer");
  }
  if (n < 0)  /* {} or {fn}: fn alone (nil for {}) */
    n = 0;
  if (n > MAXARGS)
    luaL_argerror(L, 2, "too many arguments");
  lua_getfield(L, 2, "timeout");
  timeout = checklimit(L, -1, 2, "timeout", ex->task_timeout);
  lua_settop(L, 2);
  luaL_checkstack(L, (int)n + 2, "too many arguments");
  for (i = 1; i <= n + 1; i++)  /* fn, then its arguments */
    lua_geti(L, 2, i);
  lua_remove(L, 2);
  lconc_checkcallable(L, 2);
  return timeout;
}

/* The largest encoding (bytes) that goes in its future's block: a
** finished future keeps its block as long as it lives, so a bigger one
** goes in a payload of its own, freed once its task ends. */
#define BLOCKMAX 256

/* The payload of a task whose back-end makes future, task and payload
** as one block ('newtask'): the future goes to 'f'. NULL (the encoder
** makes a payload of its own, and the task a future of its own) when
** the encoding is big, when the block cannot be had, or when finalizers
** that ran during the encode freed the back-end (ex_submit checks that
** next). */
typedef struct taskalloc {
  executor *ex;
  conc_future_t *f;
  conc_payload_t *p;
} taskalloc;

static conc_payload_t *allocblock(void *ud, size_t len, size_t nfutures) {
  taskalloc *a = (taskalloc *)ud;
  conc_executor_t *core = a->ex->core;
  if (core == NULL || len > BLOCKMAX)
    return NULL;
  a->f = core->ops->newtask(core, len, nfutures, &a->p);
  return a->f != NULL ? a->p : NULL;
}

/* Encode the task at 2.. ('n' values) and push its handle, which owns
** its future 'f'. When the back-end makes future and payload as one
** block, the handle comes first, without a future, so that nothing can
** raise between the block's allocation and its owner. */
static conc_payload_t *maketask(lua_State *L, executor *ex, int n,
                                int flags, conc_future_t **f) {
  taskalloc a;
  conc_payload_t *p;
  conc_future_t **slot;
  flags |= ex->local ? LCONC_ENC_LOCAL : 0;
  if (ex->core->ops->newtask == NULL) {
    if ((*f = conc_future_new()) == NULL)
      luaL_error(L, "not enough memory");
    lconc_newfuturemt(L, *f, UP_FUTUREMT);  /* the handle owns 'f' now */
    conc_future_unref(*f);
    return lconc_encodex(L, 2, n, "argument", 1, flags, NULL, NULL,
                         UP_BUFFER);
  }
  slot = lconc_newfuturemt(L, NULL, UP_FUTUREMT);
  a.ex = ex;
  a.f = NULL;
  p = ex->local && !(flags & LCONC_ENC_WRAP)
      ? lconc_encodeplain(L, 2, n, allocblock, &a, ex->buffer) : NULL;
  if (p == NULL)
    p = lconc_encodex(L, 2, n, "argument", 1, flags, allocblock, &a,
                      UP_BUFFER);
  if (a.f == NULL && (a.f = conc_future_new()) == NULL) {
    conc_payload_free(p);
    luaL_error(L, "not enough memory");
  }
  *slot = *f = a.f;  /* the handle's reference */
  return p;
}

/* ex:submit(fn, ...) or ex:submit{fn, ..., n =, timeout =} -> Future.
** 'fn' is argument #1 of the transfer; 'flags' are the encoder's
** (LCONC_ENC_WRAP for a chunk of map's calls). */
static int submitx(lua_State *L, int flags) {
  int top = lua_gettop(L);
  executor *ex = toexecutor(L);
  conc_future_t *f;
  conc_payload_t *p;
  double timeout = ex->task_timeout;
  size_t size;
  int r;
  if (lua_type(L, 2) != LUA_TFUNCTION) {  /* (else the common case) */
    lua_settop(L, top);
    if (lua_type(L, 2) == LUA_TTABLE && !luaL_getmetafield(L, 2, "__call"))
      timeout = unpacktask(L, ex);
    else if (lua_type(L, 2) == LUA_TTABLE)
      lua_pop(L, 1);  /* the __call field */
    lconc_checkcallable(L, 2);
    top = lua_gettop(L);
  }
  checkopen(L, ex);
  if (lconc_ownerclosing(L, ex->closer.owner))
    return luaL_error(L, "the Lua state is closing");
  p = maketask(L, ex, top - 1, flags, &f);  /* fn and its args, at 2.. */
  if (ex->shutdown || ex->core == NULL) {  /* closed by a finalizer */
    conc_payload_free(p);
    checkopen(L, ex);
  }
  size = p->size;
  r = ex->core->ops->submit(ex->core, f, p, timeout);
  if (r != 0) {
    conc_payload_free(p);
    checkbroken(L, ex);
    if (r == CONC_E2BIG)
      return luaL_error(L, "cannot transfer arguments (%I bytes: %s)",
                        (lua_Integer)size, conc_strerror(r));
    lconc_coreerror(L, r, "submit");
  }
  return 1;  /* the handle, at the top */
}

static int ex_submit(lua_State *L) {
  return submitx(L, 0);
}

/* core._submitchunk(ex, run_chunk, fn, chunk), or its table form: the
** submit of a chunk of map's calls (futures.lua), whose arguments lie
** two tables deep in 'chunk'. Those two levels do not count toward the
** codec's nesting limit: an argument as deep as one a task takes
** crosses in a chunk too (the worker's decode allows them by the
** transfer's flag). */
static int cf_submitchunk(lua_State *L) {
  return submitx(L, LCONC_ENC_WRAP);
}

/* Whether 'ex' still has tasks queued or running. */
static int busy(executor *ex) {
  conc_pool_stats_t st;
  ex->core->ops->stats(ex->core, &st);
  return st.pending + st.running > 0;
}

/* How often (seconds) shutdown(true) looks whether the work is done
** while it runs callbacks that come. */
#define SHUTDOWN_POLL 0.01

/* Stop the executor: no new work; cancel what is queued if asked; wait
** for the rest if asked (workers joined or reaped). Callbacks run while
** it waits, as in any blocking call of the module: one of them may be
** what lets a running task end. A callback may release 'ex' itself. */
static void shutdown(lua_State *L, executor *ex, int wait, int cancel) {
  ex->shutdown = 1;
  if (ex->core != NULL) {
    ex->core->ops->shutdown(ex->core, 0, cancel);
    lconc_safepoint(L);
    /* (inside a callback none runs: then it only waits, below) */
    while (wait && ex->core != NULL && !lconc_getowner(L)->in_callback
           && busy(ex))
      lconc_dispatch(L, conc_deadline(SHUTDOWN_POLL));
    if (wait && ex->core != NULL) {
      ex->core->ops->shutdown(ex->core, 1, 0);
      release(ex);
      lconc_safepoint(L);
    }
  }
  if (wait)
    release(ex);  /* also what a failed construction left */
}

/* ex:shutdown([wait=true], [cancel_futures=false]) */
static int ex_shutdown(lua_State *L) {
  executor *ex = toexecutor(L);
  int wait = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  shutdown(L, ex, wait, lua_toboolean(L, 3));
  return 0;
}

/* __gc and __close: shutdown(true). */
static int ex_gc(lua_State *L) {
  shutdown(L, toexecutor(L), 1, 0);
  return 0;
}

static void setintfield(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static int ex_stats(lua_State *L) {
  executor *ex = toexecutor(L);
  conc_pool_stats_t st = ex->last;
  if (ex->core != NULL)
    ex->core->ops->stats(ex->core, &st);
  lua_createtable(L, 0, 8);
  setintfield(L, "workers", st.workers);
  setintfield(L, "idle", st.idle);
  setintfield(L, "pending", st.pending);
  setintfield(L, "running", st.running);
  setintfield(L, "completed", st.completed);
  setintfield(L, "failed", st.failed);
  setintfield(L, "cancelled", st.cancelled);
  setintfield(L, "memory", (lua_Integer)st.memory);
  return 1;
}

static int ex_tostring(lua_State *L) {
  executor *ex = toexecutor(L);
  lua_pushfstring(L, "%s<%s>", ex->name,
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

/* A positive integer option at 'idx', at most 'max' (4.0 is an integer
** to Lua; a numeric string is no number here, as for the time limits). */
static int checkcount(lua_State *L, int idx, const char *what,
                      lua_Integer max) {
  int isint;
  lua_Integer m = lua_tointegerx(L, idx, &isint);
  if (!isint || lua_type(L, idx) != LUA_TNUMBER || m <= 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "%s must be a positive integer",
                                        what));
  if (m > max)
    luaL_argerror(L, 1, lua_pushfstring(L, "%s must be at most %I", what,
                                        max));
  return (int)m;
}

/* The number of initargs, as table.unpack(initargs, 1, initargs.n or
** #initargs) would take them: 'n' must then be an integer, and one
** below 1 gives none. */
static int initcount(lua_State *L, int t) {
  lua_Integer n;
  int isint;
  if (lua_getfield(L, t, "n") == LUA_TNIL) {
    lua_pop(L, 1);
    n = luaL_len(L, t);
  } else {
    n = lua_tointegerx(L, -1, &isint);
    if (!isint || lua_type(L, -1) != LUA_TNUMBER)
      luaL_argerror(L, 1, "initargs.n must be an integer");
    lua_pop(L, 1);
  }
  if (n < 0)
    n = 0;
  if (n > 250)
    luaL_argerror(L, 1, "initargs has too many values (at most 250)");
  return (int)n;
}

/* Push the option 'name' of the option table at 1: read raw, as its
** keys are checked (lconc_checkoptions), so that the table's __index is
** never asked for an option it does not hold (a process pool asked
** for thread_name_prefix reported an option it has not). */
static int option(lua_State *L, const char *name) {
  lua_pushstring(L, name);
  return lua_rawget(L, 1);
}

/* The initializer and initargs of the option table at 1, encoded as one
** transfer (LCONC_ENC_INIT names them in errors). */
static void readinit(lua_State *L, lconc_shared *sh) {
  int base, i, n = 0;
  if (option(L, "initializer") == LUA_TNIL) {
    if (option(L, "initargs") != LUA_TNIL)
      luaL_argerror(L, 1, "initargs given without an initializer");
    lua_pop(L, 2);
    return;
  }
  base = lua_gettop(L);
  /* lconc_checkcallable would name the stack slot, not argument #1 */
  if (!lua_isfunction(L, base) && !luaL_getmetafield(L, base, "__call"))
    luaL_argerror(L, 1, lua_pushfstring(L, "initializer must be a function "
                  "or callable, got %s", luaL_typename(L, base)));
  lua_settop(L, base);
  if (option(L, "initargs") != LUA_TNIL) {
    if (!lua_istable(L, -1))
      luaL_argerror(L, 1, lua_pushfstring(L, "initargs must be a table, "
                    "got %s", luaL_typename(L, -1)));
    n = initcount(L, base + 1);
    luaL_checkstack(L, n, "too many initargs");
    for (i = 1; i <= n; i++)
      lua_geti(L, base + 1, i);
  }
  lua_remove(L, base + 1);
  sh->init = lconc_encodex(L, base, n + 1, "initializer", 0, LCONC_ENC_INIT,
                           NULL, NULL, 0);
  lua_settop(L, base - 1);
}

/* A byte count option at 'idx': a positive integer. */
static size_t checkbytes(lua_State *L, int idx, const char *what) {
  int isint;
  lua_Integer m = lua_tointegerx(L, idx, &isint);
  if (!isint || lua_type(L, idx) != LUA_TNUMBER || m <= 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "%s must be a positive integer "
                                        "(bytes)", what));
  return (size_t)m;
}

/* The running-work options of the table at 1 (API.md, "Running work"). */
static void readlimits(lua_State *L, executor *ex,
                       conc_executor_opts_t *o) {
  if (option(L, "respawn") != LUA_TNIL) {
    if (!lua_isboolean(L, -1))
      luaL_argerror(L, 1, "respawn must be a boolean");
    o->respawn = lua_toboolean(L, -1);
  }
  option(L, "task_timeout");
  ex->task_timeout = checklimit(L, -1, 1, "task_timeout", 0);
  if (option(L, "max_memory") != LUA_TNIL)
    ex->sh->max_memory = checkbytes(L, -1, "max_memory");
  lua_pop(L, 3);
}

/* The option table at 1: fills 'o' (its strings stay on the stack). */
static void readoptions(lua_State *L, const lconc_execkind *k,
                        conc_executor_opts_t *o) {
  lua_pushliteral(L, "respawn");
  if (!lconc_isname(L, k->options)
      && option(L, "respawn") != LUA_TNIL)
    luaL_argerror(L, 1, "respawn is an option of ProcessPoolExecutor only");
  lconc_checkoptions(L, 1, k->options);
  if (option(L, "max_workers") != LUA_TNIL)
    o->max_workers = checkcount(L, -1, "max_workers", CONC_MAX_WORKERS);
  if (option(L, "thread_name_prefix") != LUA_TNIL
      && lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, 1, "thread_name_prefix must be a string");
  o->name_prefix = lua_tostring(L, -1);
  if (option(L, "max_tasks_per_child") != LUA_TNIL)
    o->max_tasks_per_child = checkcount(L, -1, "max_tasks_per_child",
                                         INT_MAX);
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

/*
** What an executor holds outside the Lua heap, as the collector should
** count it: its workers' threads (or processes) and their Lua states,
** about this many KiB each while they live. The collector sees only the
** userdata; a program that drops executors in a loop (their finalizer
** joins the workers) made so little Lua garbage that hundreds of them,
** with their threads, could wait for a cycle.
*/
#if !defined(LCONC_WORKER_KB)
#define LCONC_WORKER_KB 64
#endif
/* The charge stops growing here: beyond, a pool's workers start as
** tasks come, and a bigger bound says nothing about how many will. */
#define CHARGED_WORKERS 16

/* (A collector the program stopped stays stopped: LUA_GCSTEP would run
** it regardless.) */
static void chargecollector(lua_State *L, int max_workers) {
  int n = max_workers < CHARGED_WORKERS ? max_workers : CHARGED_WORKERS;
  if (lua_gc(L, LUA_GCISRUNNING) == 1)
    lua_gc(L, LUA_GCSTEP, n * LCONC_WORKER_KB);
}

/* cf.XPoolExecutor([max_workers] or {opts}) */
int lconc_newexecutor(lua_State *L, const lconc_execkind *k) {
  conc_executor_opts_t o;
  executor *ex;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  memset(&o, 0, sizeof(o));
  o.max_workers = (int)(cpus > 0 ? cpus : 1) * k->defworkers;
  if (lua_istable(L, 1))
    readoptions(L, k, &o);
  else if (!lua_isnoneornil(L, 1)) {
    if (lua_type(L, 1) != LUA_TNUMBER)
      return luaL_typeerror(L, 1, "integer or table");
    o.max_workers = checkcount(L, 1, "max_workers", CONC_MAX_WORKERS);
  }
  lconc_checkopen(L);  /* before anything that a finalizer must free */
  ex = (executor *)lua_newuserdatauv(L, sizeof(*ex), 1);
  memset(ex, 0, sizeof(*ex));
  ex->tag = &exectag;
  luaL_setmetatable(L, k->mt);
  /* the buffer at hand for submit's plain form (reading it from the
  ** method's upvalue cost some 40 instructions a task) */
  lconc_pushencbuffer(L);
  ex->buffer = lua_touserdata(L, -1);
  lua_setiuservalue(L, -2, 1);
  ex->name = k->mt + sizeof("concurrent.") - 1;
  ex->local = k->sharedinit;
  ex->shutdown = 1;  /* until it has a back-end */
  ex->closer.close = closer_close;
  lconc_addcloser(L, &ex->closer);  /* raises while the state closes */
  ex->sh = lconc_shared_new();
  if (ex->sh == NULL)
    return luaL_error(L, "not enough memory");
  readpaths(L, ex->sh);
  if (lua_istable(L, 1)) {
    readinit(L, ex->sh);
    readlimits(L, ex, &o);
  }
  /* a forked child starts from a copy of the initializer's payload: a
  ** future or queue there would be a copy of the parent's memory */
  if (!k->sharedinit && ex->sh->init != NULL && ex->sh->init->nfutures > 0)
    luaL_argerror(L, 1, lua_pushfstring(L, "initargs of a %s cannot hold a "
                  "future or a queue", ex->name));
  o.runtime = lconc_runtime(ex->sh);
  ex->core = k->make(L, &o, ex->sh);
  if (ex->core == NULL)
    return luaL_error(L, "cannot create the %s (not enough memory)",
                      ex->name);
  ex->broken_class = ex->core->ops->broken_class;
  ex->shutdown = 0;
  chargecollector(L, o.max_workers);
  return 1;
}

static const char *const threadoptions[] = {
  "max_workers", "initializer", "initargs", "thread_name_prefix",
  "task_timeout", "max_memory", NULL
};
static const char *const processoptions[] = {
  "max_workers", "initializer", "initargs", "max_tasks_per_child",
  "task_timeout", "max_memory", "respawn", NULL
};

static conc_executor_t *makethreads(lua_State *L,
                                    const conc_executor_opts_t *o,
                                    lconc_shared *sh) {
  (void)L; (void)sh;
  return conc_threadexec_new(o);
}

static conc_executor_t *makeprocesses(lua_State *L,
                                      const conc_executor_opts_t *o,
                                      lconc_shared *sh) {
  (void)L; (void)sh;
  return conc_procexec_new(o);
}

static const lconc_execkind threadkind = {
  THREADPOOL_MT, threadoptions, makethreads, 5, 1
};
static const lconc_execkind processkind = {
  PROCESSPOOL_MT, processoptions, makeprocesses, 1, 0
};

static int cf_ThreadPoolExecutor(lua_State *L) {
  return lconc_newexecutor(L, &threadkind);
}

static int cf_ProcessPoolExecutor(lua_State *L) {
  return lconc_newexecutor(L, &processkind);
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
  {NULL, NULL}
};

/* Push the upvalues of the methods: the Future's metatable and the
** buffer from 'base' on (the methods table follows them). */
static void pushups(lua_State *L, int base) {
  int i;
  for (i = 0; i < NUPS; i++)
    lua_pushvalue(L, base + i);
}

/* Fill the class metatable at 'mt': metamethods, __index the methods. */
static void setclass(lua_State *L, int base, int mt) {
  lua_pushvalue(L, mt);
  pushups(L, base);
  luaL_setfuncs(L, metamethods, NUPS);
  lua_pushvalue(L, base + NUPS);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* The class metatable 'mt' of another module's executors (MPI's) over
** the methods table at the top, with these classes' metamethods. */
void lconc_newexecclass(lua_State *L, const char *mt) {
  int base;
  luaL_newmetatable(L, mt);
  base = lua_gettop(L) + 1;
  luaL_getmetatable(L, LCONC_FUTURE_MT);
  lconc_pushencbuffer(L);
  lua_pushvalue(L, base - 2);  /* the methods */
  setclass(L, base, base - 1);
  lua_settop(L, base - 2);
}

/* Registry key of core._submitchunk, made with the classes (it takes
** the methods' upvalues) and kept for a reopened module. */
static const char SUBMITCHUNK = 's';

/* Adds both executor classes to the module table at the top, and
** 'executor_methods' (the methods table, where futures.lua adds map).
** Reopening the module keeps the classes' methods table. */
void lconc_open_executor(lua_State *L) {
  if (luaL_getmetatable(L, THREADPOOL_MT) == LUA_TNIL) {
    int base = lua_gettop(L);  /* the nil: the thread class goes there */
    lua_pop(L, 1);
    luaL_newmetatable(L, THREADPOOL_MT);
    luaL_newmetatable(L, PROCESSPOOL_MT);
    luaL_getmetatable(L, LCONC_FUTURE_MT);  /* the upvalues, at base + 2 */
    lconc_pushencbuffer(L);
    luaL_newlibtable(L, methods);
    pushups(L, base + 2);
    luaL_setfuncs(L, methods, NUPS);
    setclass(L, base + 2, base);
    setclass(L, base + 2, base + 1);
    pushups(L, base + 2);
    lua_pushcclosure(L, cf_submitchunk, NUPS);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SUBMITCHUNK);
    lua_replace(L, base);
    lua_settop(L, base);
  } else {
    lua_getfield(L, -1, "__index");
    lua_remove(L, -2);
  }
  lua_setfield(L, -2, "executor_methods");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SUBMITCHUNK);
  lua_setfield(L, -2, "_submitchunk");
  lua_pushcfunction(L, cf_ThreadPoolExecutor);
  lua_setfield(L, -2, "ThreadPoolExecutor");
  lua_pushcfunction(L, cf_ProcessPoolExecutor);
  lua_setfield(L, -2, "ProcessPoolExecutor");
}
