/*
** lmpi.c: the module concurrent.futures.mpi (make mpi): MPIPoolExecutor
** over the MPI back-end of core/mpi/mpicomm.c, whose worker ranks run the
** same worker runtime as threads and processes (lworker.c). The module
** links its own copy of the core and the binding, so it must be the one
** that opens concurrent.core in the state: loading it makes the launch
** line's choice (`lua5.4 -l concurrent.futures.mpi script.lua`). On a
** rank >= 1, loading it turns the process into a worker that never
** returns to the script.
*/
/***
 * MPI pools (optional, `make mpi`, needs Open MPI): the executor API over
 * the ranks of an MPI job, launched as
 * `mpiexec -n N lua5.4 -l concurrent.futures.mpi script.lua`. On ranks
 * >= 1 loading the module makes the process a worker that serves until
 * rank 0's script ends; on rank 0 `require` returns and the script runs.
 * @module concurrent.futures.mpi
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lconcurrent.h"
#include "lworker.h"
#include "mpicomm.h"

#define MPIPOOL_MT "concurrent.MPIPoolExecutor"
#define MODNAME "concurrent.futures.mpi"

/* Most workers one may ask for (more are cut to the ranks there are). */
#define MAXWORKERS 100000

static int rank_, size_;


/* {======================================================================
** Worker ranks: a pool's runtime from its setup "path\0cpath"
** ======================================================================= */

static int w_open(const char *setup, size_t len, conc_payload_t *init,
                  conc_runtime_t *rt) {
  lconc_shared *sh = lconc_shared_new();
  size_t n = strnlen(setup, len);
  if (sh == NULL) {
    conc_payload_free(init);
    return CONC_ENOMEM;
  }
  sh->init = init;
  sh->path = strndup(setup, n);
  sh->cpath = n < len ? strndup(setup + n + 1, len - n - 1) : strdup("");
  if (sh->path == NULL || sh->cpath == NULL) {
    lconc_shared_free(sh);
    return CONC_ENOMEM;
  }
  *rt = lconc_runtime(sh);
  return 0;
}

static void w_close(conc_runtime_t *rt) {
  lconc_shared_free((lconc_shared *)rt->ud);
}

static const conc_mpi_worker worker = { w_open, w_close };

/* }====================================================================== */


/* {======================================================================
** The executor
** ======================================================================= */

typedef struct mexec {
  conc_executor_t *core;   /* NULL once shut down and freed */
  lconc_closer closer;     /* linked to the owner while 'core' lives */
  int shutdown;
  conc_pool_stats_t last;  /* the final counts, once 'core' is freed */
} mexec;

static mexec *checkmexec(lua_State *L) {
  return (mexec *)luaL_checkudata(L, 1, MPIPOOL_MT);
}

static void release(mexec *ex) {
  conc_executor_t *core = ex->core;
  lconc_removecloser(&ex->closer);
  ex->core = NULL;
  ex->shutdown = 1;
  if (core != NULL) {
    core->ops->stats(core, &ex->last);
    core->ops->free(core);
  }
}

static void closer_close(lconc_closer *c) {
  release((mexec *)((char *)c - offsetof(mexec, closer)));
}

static void checkbroken(lua_State *L, mexec *ex) {
  char *msg = ex->core != NULL ? ex->core->ops->broken(ex->core) : NULL;
  if (msg != NULL) {
    lua_pushstring(L, msg);
    free(msg);
    lconc_pusherror(L, ex->core->ops->broken_class, lua_tostring(L, -1));
    lua_error(L);
  }
}

static void checkopen(lua_State *L, mexec *ex) {
  if (ex->shutdown || ex->core == NULL)
    luaL_error(L, "cannot schedule new futures after shutdown");
  checkbroken(L, ex);
}

/* ex:submit(fn, ...) -> Future, as the other executors. */
static int mx_submit(lua_State *L) {
  mexec *ex = checkmexec(L);
  conc_future_t *f;
  conc_payload_t *p;
  int r;
  lconc_checkcallable(L, 2);
  checkopen(L, ex);
  if (lconc_closing(L))
    return luaL_error(L, "the Lua state is closing");
  f = conc_future_new();
  if (f == NULL)
    return luaL_error(L, "not enough memory");
  lconc_newfuture(L, f);
  conc_future_unref(f);
  lua_insert(L, 2);
  p = lconc_encode(L, 3, lua_gettop(L) - 2, "argument", 1);
  if (ex->shutdown || ex->core == NULL) {  /* closed by a finalizer */
    conc_payload_free(p);
    checkopen(L, ex);
  }
  r = ex->core->ops->submit(ex->core, f, p, 0);
  if (r != 0) {
    conc_payload_free(p);
    checkbroken(L, ex);
    lconc_coreerror(L, r, "submit");
  }
  lua_settop(L, 2);
  return 1;
}

/* As the other executors: callbacks run at safe points meanwhile. */
static void shutdown(lua_State *L, mexec *ex, int wait, int cancel) {
  ex->shutdown = 1;
  if (ex->core != NULL) {
    ex->core->ops->shutdown(ex->core, 0, cancel);
    lconc_safepoint(L);
    if (wait && ex->core != NULL) {
      ex->core->ops->shutdown(ex->core, 1, 0);
      release(ex);
      lconc_safepoint(L);
    }
  }
  if (wait)
    release(ex);
}

static int mx_shutdown(lua_State *L) {
  mexec *ex = checkmexec(L);
  int wait = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
  shutdown(L, ex, wait, lua_toboolean(L, 3));
  return 0;
}

static int mx_gc(lua_State *L) {
  shutdown(L, checkmexec(L), 1, 0);
  return 0;
}

static void setintfield(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static int mx_stats(lua_State *L) {
  mexec *ex = checkmexec(L);
  conc_pool_stats_t st = ex->last;
  if (ex->core != NULL)
    ex->core->ops->stats(ex->core, &st);
  lua_createtable(L, 0, 7);
  setintfield(L, "workers", st.workers);
  setintfield(L, "idle", st.idle);
  setintfield(L, "pending", st.pending);
  setintfield(L, "running", st.running);
  setintfield(L, "completed", st.completed);
  setintfield(L, "failed", st.failed);
  setintfield(L, "cancelled", st.cancelled);
  return 1;
}

static int mx_tostring(lua_State *L) {
  mexec *ex = checkmexec(L);
  lua_pushfstring(L, "MPIPoolExecutor<%s>",
                  ex->shutdown ? "shutdown" : "running");
  return 1;
}

/* }====================================================================== */


/* {======================================================================
** Construction
** ======================================================================= */

static int checkcount(lua_State *L, int idx) {
  int isint;
  lua_Integer m = lua_tointegerx(L, idx, &isint);
  if (!isint || m <= 0 || m > MAXWORKERS)
    luaL_argerror(L, 1, "max_workers must be a positive integer");
  return (int)m;
}

/* Every key of the option table at 1 is a known one. */
static void checkoptions(lua_State *L) {
  static const char *const known[] = {
    "max_workers", "initializer", "initargs", NULL
  };
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    const char *const *o;
    lua_pop(L, 1);
    for (o = known; *o != NULL; o++)
      if (lua_type(L, -1) == LUA_TSTRING
          && strcmp(lua_tostring(L, -1), *o) == 0)
        break;
    if (*o == NULL)
      luaL_argerror(L, 1, lua_pushfstring(L, "unknown option '%s' (known: "
                    "max_workers, initializer, initargs)",
                    luaL_tolstring(L, -1, NULL)));
  }
}

/* The initializer and its initargs (table.unpack(initargs, 1, initargs.n
** or #initargs)) of the option table at 1 as one transfer, or NULL. */
static conc_payload_t *readinit(lua_State *L) {
  int base, i, n = 0;
  conc_payload_t *p;
  if (lua_getfield(L, 1, "initializer") == LUA_TNIL) {
    if (lua_getfield(L, 1, "initargs") != LUA_TNIL)
      luaL_argerror(L, 1, "initargs given without an initializer");
    lua_pop(L, 2);
    return NULL;
  }
  base = lua_gettop(L);
  lconc_checkcallable(L, base);
  if (lua_getfield(L, 1, "initargs") != LUA_TNIL) {
    lua_Integer k;
    int isint = 1;
    if (!lua_istable(L, -1))
      luaL_argerror(L, 1, lua_pushfstring(L, "initargs must be a table, "
                    "got %s", luaL_typename(L, -1)));
    if (lua_getfield(L, -1, "n") == LUA_TNIL)
      k = luaL_len(L, -2);
    else
      k = lua_tointegerx(L, -1, &isint);
    if (!isint || (lua_type(L, -1) != LUA_TNIL
                   && lua_type(L, -1) != LUA_TNUMBER))
      luaL_argerror(L, 1, "initargs.n must be an integer");
    lua_pop(L, 1);
    if (k < 0 || k > 250)
      luaL_argerror(L, 1, "initargs has too many values");
    n = (int)k;
    luaL_checkstack(L, n, "too many initargs");
    for (i = 1; i <= n; i++)
      lua_geti(L, base + 1, i);
  }
  lua_remove(L, base + 1);
  p = lconc_encode(L, base, n + 1, "initializer", 0);
  lua_settop(L, base - 1);
  return p;
}

/* The caller's package.path and cpath as "path\0cpath", pushed. */
static void pushsetup(lua_State *L) {
  if (lua_getglobal(L, "package") == LUA_TTABLE) {
    lua_getfield(L, -1, "path");
    lua_getfield(L, -2, "cpath");
  } else {
    lua_pushliteral(L, "");
    lua_pushliteral(L, "");
  }
  lua_pushfstring(L, "%s%c%s", lua_tostring(L, -2) ? lua_tostring(L, -2)
                  : "", 0, lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
  lua_replace(L, -4);
  lua_pop(L, 2);
}

/* A job of one rank (the script started without mpiexec): spawn 'n'
** workers (0: cpu_count()),
** each "<this interpreter> -e <rank 0's paths> -l concurrent.futures.mpi",
** as mpi4py.futures does without its launch line. */
static void spawnworkers(lua_State *L, int n) {
  char exe[4096];
  char *argv[5];
  const char *why;
  ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  int top = lua_gettop(L);
  if (n <= 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? (int)cpus : 1;
  }
  if (k <= 0)
    luaL_error(L, "no worker ranks, and no interpreter to spawn them");
  exe[k] = '\0';
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "format");
  lua_pushliteral(L, "package.path = %q package.cpath = %q");
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_getfield(L, -2, "cpath");
  lua_remove(L, -3);
  lua_call(L, 3, 1);
  argv[0] = (char *)"-e";
  argv[1] = (char *)lua_tostring(L, -1);
  argv[2] = (char *)"-l";
  argv[3] = (char *)MODNAME;
  argv[4] = NULL;
  if (conc_mpi_spawn(exe, argv, n, &size_, &why) != 0)
    luaL_error(L, "no worker ranks, and none could be spawned (%s): launch "
               "with mpiexec -n N lua5.4 -l " MODNAME " script.lua", why);
  lua_settop(L, top);
}

/***
 * An `Executor` over the worker ranks, with the methods, options and
 * transfer rules of the process pool. Its broken-pool error is
 * `BrokenMPIPool` (a `BrokenExecutor`), raised when an initializer fails
 * or a rank sends what cannot be read; a rank that dies ends the whole
 * job (Open MPI). Started without `mpiexec` (one rank), the first pool
 * spawns its workers with `MPI_Comm_spawn`.
 * @function MPIPoolExecutor
 * @tparam[opt] integer|table max_workers the most worker ranks (default
 * and limit: the worker ranks there are), or a table of options:
 * `max_workers`, `initializer`, `initargs`
 * @treturn Executor an executor, shut down by `<close>` and `__gc` too
 * @usage local ex <close> = mpi.MPIPoolExecutor()
 */
static int mpi_MPIPoolExecutor(lua_State *L) {
  int max = size_ - 1;
  mexec *ex;
  conc_payload_t *init = NULL;
  const char *setup;
  size_t len;
  if (lua_istable(L, 1)) {
    checkoptions(L);
    if (lua_getfield(L, 1, "max_workers") != LUA_TNIL)
      max = checkcount(L, -1);
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, 1)) {
    if (!lua_isnumber(L, 1))
      return luaL_typeerror(L, 1, "integer or table");
    max = checkcount(L, 1);
  }
  if (size_ < 2) {
    spawnworkers(L, max);
    if (max <= 0)
      max = size_ - 1;
  }
  if (lconc_closing(L))
    return luaL_error(L, "the Lua state is closing");
  ex = (mexec *)lua_newuserdatauv(L, sizeof(*ex), 0);
  memset(ex, 0, sizeof(*ex));
  ex->shutdown = 1;  /* until it has a back-end */
  luaL_setmetatable(L, MPIPOOL_MT);
  pushsetup(L);
  setup = lua_tolstring(L, -1, &len);
  if (lua_istable(L, 1))
    init = readinit(L);  /* leaves the stack as it found it */
  lconc_addcloser(L, &ex->closer);
  ex->closer.close = closer_close;
  ex->core = conc_mpiexec_new(max, setup, len, init);
  if (ex->core == NULL)
    return luaL_error(L, "cannot create the MPIPoolExecutor (not enough "
                      "memory, or MPI has stopped)");
  ex->shutdown = 0;
  lua_pop(L, 1);
  return 1;
}

/* }====================================================================== */


/* {======================================================================
** The module
** ======================================================================= */

/***
 * This process's rank: 0 in the script, the worker's rank in a task.
 * @function rank
 * @treturn integer
 */
static int mpi_rank(lua_State *L) {
  lua_pushinteger(L, rank_);
  return 1;
}

/***
 * The number of ranks (rank 0 and the workers).
 * @function size
 * @treturn integer
 */
static int mpi_size(lua_State *L) {
  lua_pushinteger(L, size_);
  return 1;
}

/* The state closes (its registry sentinel goes): the pools are shut
** down by then; the worker ranks are told to exit and MPI finalizes. */
static int sentinel_gc(lua_State *L) {
  (void)L;
  conc_mpi_stop();
  return 0;
}

/* os.exit without closing the state: the same, at exit. */
static void stop_atexit(void) {
  conc_mpi_stop();
}

static const luaL_Reg methods[] = {
  {"submit", mx_submit},
  {"shutdown", mx_shutdown},
  {"stats", mx_stats},
  {NULL, NULL}
};

static const luaL_Reg metamethods[] = {
  {"__gc", mx_gc},
  {"__close", mx_gc},
  {"__tostring", mx_tostring},
  {NULL, NULL}
};

/* The class: its own methods, then futures.lua's executor_methods (map
** and whatever is added there). */
static void newclass(lua_State *L) {
  luaL_newmetatable(L, MPIPOOL_MT);
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);
  lua_newtable(L);
  lua_getfield(L, -4, "executor_methods");  /* the core table at -3 */
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* Open MPI loads its components with dlopen; they need libmpi's
** symbols global, and Lua's loader opened this module RTLD_LOCAL. */
static void globalmpi(void) {
  static const char *const names[] = { "libmpi.so.40", "libmpi.so", NULL };
  int i;
  for (i = 0; names[i] != NULL; i++)
    if (dlopen(names[i], RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD) != NULL)
      return;
}

/* (Protected.) Open this copy of the core in a scratch state. */
static int opencore(lua_State *T) {
  luaL_requiref(T, "concurrent.core", luaopen_concurrent_core, 0);
  return 0;
}

/* This copy's conc_lua_api_t, by which a state tells whose core it has
** opened (a state whose concurrent.core is another module's cannot take
** this module's futures); made once per process. */
static const void *myapi;
static void findapi(void) {
  lua_State *T = luaL_newstate();
  if (T == NULL)
    return;
  lua_pushcfunction(T, opencore);
  if (lua_pcall(T, 0, 0, 0) == LUA_OK) {
    lua_getfield(T, LUA_REGISTRYINDEX, CONC_LUA_API_KEY);
    myapi = lua_touserdata(T, -1);
  }
  lua_close(T);
}

static int mpi_noexecutor(lua_State *L) {
  return luaL_error(L, "MPIPoolExecutor runs on rank 0 only (this is "
                    "rank %d)", rank_);
}

/* The module table over the core table at the top. */
static void pushmodule(lua_State *L, lua_CFunction executor) {
  lua_createtable(L, 0, 4);
  lua_pushcfunction(L, executor);
  lua_setfield(L, -2, "MPIPoolExecutor");
  lua_getfield(L, -2, "BrokenMPIPool");
  lua_setfield(L, -2, "BrokenMPIPool");
  lua_pushcfunction(L, mpi_rank);
  lua_setfield(L, -2, "rank");
  lua_pushcfunction(L, mpi_size);
  lua_setfield(L, -2, "size");
}

/* Rank 0's first state stops MPI when it closes (a registry sentinel's
** __gc), or at exit when it is never closed. */
static void addsentinel(lua_State *L) {
  static int made;
  if (made)
    return;
  made = 1;
  lua_newuserdatauv(L, 0, 0);
  lua_newtable(L);
  lua_pushcfunction(L, sentinel_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, MODNAME);
  atexit(stop_atexit);
}

__attribute__((visibility("default")))
LUAMOD_API int luaopen_concurrent_futures_mpi(lua_State *L);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int serving;  /* this process is a worker rank's */

LUAMOD_API int luaopen_concurrent_futures_mpi(lua_State *L) {
  const char *why = NULL;
  pthread_once(&once, findapi);
  lua_getfield(L, LUA_REGISTRYINDEX, CONC_LUA_API_KEY);
  if (!lua_isnil(L, -1) && lua_touserdata(L, -1) != myapi)
    return luaL_error(L, MODNAME " must be loaded before concurrent.core "
                      "(launch with lua5.4 -l " MODNAME " script.lua)");
  lua_settop(L, 1);
  if (serving) {  /* a task's state on a worker rank: rank and size */
    luaL_requiref(L, "concurrent.core", luaopen_concurrent_core, 0);
    pushmodule(L, mpi_noexecutor);
    return 1;
  }
  globalmpi();
  if (conc_mpi_start(&rank_, &size_, &why) != 0)
    return luaL_error(L, "cannot start MPI (%s)", why);
  if (rank_ > 0) {  /* a worker: serve until rank 0 is done, then leave */
    serving = 1;
    fflush(stdout);
    exit(conc_mpi_serve(&worker));
  }
  /* rank 0: this copy of the core is the state's concurrent.core */
  luaL_requiref(L, "concurrent.core", luaopen_concurrent_core, 0);
  lua_getglobal(L, "require");  /* futures.lua adds map to the methods */
  lua_pushliteral(L, "concurrent.futures");
  lua_call(L, 1, 0);
  addsentinel(L);
  if (luaL_getmetatable(L, MPIPOOL_MT) == LUA_TNIL) {
    lua_pop(L, 1);
    newclass(L);
  } else {
    lua_pop(L, 1);
  }
  pushmodule(L, mpi_MPIPoolExecutor);
  return 1;
}

/* }====================================================================== */
