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
#include "lexecutor.h"
#include "mpicomm.h"

#define MPIPOOL_MT "concurrent.MPIPoolExecutor"
#define MODNAME "concurrent.futures.mpi"

static int rank_, size_;
static pid_t mpipid;  /* the process that started MPI (atomic) */

/* Whether this is a forked copy of the process that started MPI (a
** process pool's worker on rank 0): it has MPI's state without the
** communication thread, and may make no MPI call. A pool made there
** waited for that thread for ever (its first result, its shutdown),
** and the process pool that forked it, at its own shutdown, for it. */
static int forkedcopy(void) {
  pid_t pid = __atomic_load_n(&mpipid, __ATOMIC_ACQUIRE);
  return pid != 0 && pid != getpid();
}


/* {======================================================================
** Worker ranks: a pool's runtime from its setup "path\0cpath\0cap"
** ======================================================================= */

/* The field after the one at 's' (NUL-ended, or cut by 'end'). */
static const char *nextfield(const char *s, const char *end) {
  s += strnlen(s, (size_t)(end - s));
  return s < end ? s + 1 : end;
}

/* The cap, max_memory in decimal (0: none), as makempi writes it. */
static size_t readcap(const char *s, const char *end) {
  size_t cap = 0;
  for (; s < end && *s >= '0' && *s <= '9'; s++)
    cap = cap * 10 + (size_t)(*s - '0');
  return cap;
}

static int w_open(const char *setup, size_t len, conc_payload_t *init,
                  conc_runtime_t *rt) {
  lconc_shared *sh = lconc_shared_new();
  const char *end = setup + len;
  const char *cpath = nextfield(setup, end), *cap = nextfield(cpath, end);
  if (sh == NULL) {
    conc_payload_free(init);
    return CONC_ENOMEM;
  }
  sh->init = init;
  sh->path = strndup(setup, strnlen(setup, len));
  sh->cpath = strndup(cpath, strnlen(cpath, (size_t)(end - cpath)));
  sh->max_memory = readcap(cap, end);
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


/* 's' as a Lua string literal: Lua's %q, without the script's string
** library, which it may have changed. */
static void addquoted(luaL_Buffer *b, const char *s) {
  luaL_addchar(b, '"');
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      luaL_addchar(b, '\\');
      luaL_addchar(b, (char)c);
    } else if (c < 32 || c == 127) {
      char esc[8];
      snprintf(esc, sizeof(esc), "\\%03u", (unsigned)c);
      luaL_addstring(b, esc);
    } else {
      luaL_addchar(b, (char)c);
    }
  }
  luaL_addchar(b, '"');
}

/* A job of one rank (the script started without mpiexec): spawn 'n'
** workers (0: cpu_count()),
** each "<this interpreter> -e <rank 0's paths> -l concurrent.futures.mpi",
** as mpi4py.futures does without its launch line. The paths are the
** pool's ('sh', read as every pool reads them): built with the script's
** globals (string.format, package), a script that had changed them got
** an error that named none of this, or spawned workers with no -e
** argument (NULL), whose failure aborted the whole job. */
static void spawnworkers(lua_State *L, int n, const lconc_shared *sh) {
  char exe[4096];
  char *argv[5];
  const char *why;
  luaL_Buffer b;
  ssize_t k = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  int top = lua_gettop(L);
  if (n <= 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? (int)cpus : 1;
  }
  if (k <= 0)
    luaL_error(L, "no worker ranks, and no interpreter to spawn them");
  exe[k] = '\0';
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "package.path = ");
  addquoted(&b, sh->path);
  luaL_addstring(&b, " package.cpath = ");
  addquoted(&b, sh->cpath);
  luaL_pushresult(&b);
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

/* The back-end over ranks 1..max_workers (0: all the worker ranks),
** spawning them first in a job of one rank. respawn is the process
** pool's option that cannot be kept: Open MPI ends the job with a rank
** that dies, so no pool outlives it. */
static conc_executor_t *makempi(lua_State *L, const conc_executor_opts_t *o,
                                lconc_shared *sh) {
  conc_executor_t *core;
  conc_payload_t *init;
  const char *setup;
  size_t len;
  if (o->respawn)
    luaL_argerror(L, 1, "respawn is not possible in an MPIPoolExecutor (a "
                  "worker rank that dies ends the whole MPI job)");
  setup = lua_pushfstring(L, "%s%c%s%c%I", sh->path, 0, sh->cpath, 0,
                          (lua_Integer)sh->max_memory);
  len = lua_rawlen(L, -1);
  /* else every rank would fail to open the pool ("not enough memory") */
  if (!conc_mpi_setupfits(len, sh->init))
    luaL_error(L, "cannot transfer the initializer and its initargs (%I "
               "bytes: %s)", (lua_Integer)len
               + (lua_Integer)(sh->init != NULL ? sh->init->size : 0),
               conc_strerror(CONC_E2BIG));
  if (size_ < 2)
    spawnworkers(L, o->max_workers, sh);
  init = sh->init;  /* the back-end takes it */
  sh->init = NULL;
  core = conc_mpiexec_new(o->max_workers > 0 ? o->max_workers : size_ - 1,
                          o->max_tasks_per_child, setup, len, init);
  if (core == NULL)
    luaL_error(L, "cannot create the MPIPoolExecutor (not enough memory, "
               "or MPI has stopped)");
  lua_pop(L, 1);
  return core;
}

static const char *const mpioptions[] = {
  "max_workers", "initializer", "initargs", "max_tasks_per_child",
  "task_timeout", "max_memory", "respawn", NULL
};

static const lconc_execkind mpikind = {
  MPIPOOL_MT, mpioptions, makempi, 0, 0
};

/***
 * An `Executor` over the worker ranks, with the methods, options and
 * transfer rules of the process pool. Its broken-pool error is
 * `BrokenMPIPool` (a `BrokenExecutor`), raised when an initializer fails
 * or a rank sends what cannot be read; a rank that dies ends the whole
 * job (Open MPI), so `respawn = true` raises an error. A rank cannot be
 * replaced either: `max_tasks_per_child` gives it a fresh state of the
 * pool (initializer again) after that many tasks. Started without
 * `mpiexec` (one rank), the first pool spawns its workers with
 * `MPI_Comm_spawn`.
 * @function MPIPoolExecutor
 * @tparam[opt] integer|table max_workers the most worker ranks (default
 * and limit: the worker ranks there are), or a table of options:
 * `max_workers`, `initializer`, `initargs`, `max_tasks_per_child`,
 * `task_timeout`, `max_memory`, `respawn` (`false` only)
 * @treturn Executor an executor, shut down by `<close>` and `__gc` too
 * @usage local ex <close> = mpi.MPIPoolExecutor()
 */
static int mpi_MPIPoolExecutor(lua_State *L) {
  if (forkedcopy())
    return luaL_error(L, "MPIPoolExecutor cannot be made in a forked "
                      "process (a process pool's worker): only process %d, "
                      "which started MPI, can use it",
                      (int)__atomic_load_n(&mpipid, __ATOMIC_ACQUIRE));
  return lconc_newexecutor(L, &mpikind);
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

/* mpi._proxies() (for the specs, undocumented): on rank 0, its futures
** forwarded to worker ranks that a rank may still hold; in a task on a
** worker rank, that rank's proxies of them. */
static int mpi_proxies(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)conc_mpi_proxies());
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

/* The class, over the core table's executor_methods (at the top). */
static void newclass(lua_State *L) {
  lua_getfield(L, -1, "executor_methods");
  lconc_newexecclass(L, MPIPOOL_MT);
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
  lua_createtable(L, 0, 5);
  lua_pushcfunction(L, executor);
  lua_setfield(L, -2, "MPIPoolExecutor");
  lua_getfield(L, -2, "BrokenMPIPool");
  lua_setfield(L, -2, "BrokenMPIPool");
  lua_pushcfunction(L, mpi_rank);
  lua_setfield(L, -2, "rank");
  lua_pushcfunction(L, mpi_size);
  lua_setfield(L, -2, "size");
  lua_pushcfunction(L, mpi_proxies);
  lua_setfield(L, -2, "_proxies");
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
  if (forkedcopy()) {  /* rank and size as the copy has them; no start */
    luaL_requiref(L, "concurrent.core", luaopen_concurrent_core, 0);
    pushmodule(L, mpi_MPIPoolExecutor);
    return 1;
  }
  globalmpi();
  if (conc_mpi_start(&rank_, &size_, &why) != 0)
    return luaL_error(L, "cannot start MPI (%s)", why);
  __atomic_store_n(&mpipid, getpid(), __ATOMIC_RELEASE);
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
