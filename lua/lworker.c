/*
** lworker.c: the worker runtime. A worker (a pool thread, or a forked
** child) owns one lua_State, made once (protected, like lua.c's pmain)
** and reused for every task. A task payload goes in, an outcome payload
** comes out: the runtime never touches a future.
*/

/***
 * Workers.
 * @submodule concurrent.futures
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lualib.h"

#include "lconcurrent.h"
#include "lfuncs.h"
#include "lworker.h"


/* {======================================================================
** Shared executor data
** ======================================================================= */

lconc_shared *lconc_shared_new(void) {
  lconc_shared *sh = (lconc_shared *)calloc(1, sizeof(lconc_shared));
  if (sh != NULL)
    sh->pid = (long)getpid();
  return sh;
}

void lconc_shared_free(lconc_shared *sh) {
  if (sh == NULL)
    return;
  free(sh->path);
  free(sh->cpath);
  conc_payload_free(sh->init);
  free(sh);
}

/* }====================================================================== */


/* {======================================================================
** Workers: a state, its memory and its running task's controls
** ======================================================================= */

/* Bytes of big freed blocks a worker state keeps for its next ones: a
** worker that decodes, builds and encodes the same shapes task after
** task then allocates them without malloc, and malloc no longer gives
** their memory back to the kernel only to take it again. */
#if !defined(LCONC_WORKERCACHE)
#define LCONC_WORKERCACHE (512 * 1024)
#endif

/* A worker's context. The extra space of its state (and of the threads
** made in it) points here, for the hook. */
typedef struct worker {
  lua_State *W;
  lconc_owner *owner;   /* W's, which holds the running task's controls */
  conc_mailbox_t *mb;   /* W's mailbox (a reference), woken to stop */
  conc_taskctl_t *ctl;  /* the running task's, or NULL */
  conc_bufcache_t *cache;  /* W's big freed blocks (W's thread only) */
  size_t used;          /* bytes W holds; written by W's thread only */
  size_t limit;         /* max_memory, or 0 */
  int lifted;           /* the cap does not hold (lconc_liftcap) */
  int id;
  int phase;            /* how far the running task got (RUN_*) */
  const conc_payload_t *task;  /* the running task's payload */
  conc_payload_t *out;  /* its outcome, once encoded */
  lua_Integer tasks;    /* tasks started, the running one included */
  lua_Integer kept;     /* the task that is a chunk ('tasks'), or 0 */
  lconc_loadmemo funcs; /* the functions of W's tasks, by their bytes */
} worker;

/* The steps of a task (see run_task): only an error raised in RUN_CALL
** is the task's own. */
enum { RUN_DECODE, RUN_CALL, RUN_ENCODE };

static const char workerkey = 'w';  /* registry: light userdata worker */

/* Registry keys of what a chunk's task kept (core._chunkkeep): the
** function that gives the error for its results' refusal, and the table
** that wraps its calls' results. */
static const char keptkey = 'k';
static const char wrapkey = 'o';

static void release(worker *w, void *p, size_t n) {
  if (!conc_bufcache_keep(w->cache, p, n))
    free(p);
}

/*
** max_memory bounds what W's allocator holds, its blocks in use and
** those it keeps: kept blocks are malloc's memory that this worker
** holds as much as the ones in use, and a worker at its cap with 512
** KiB kept made the process hold that much more than the cap. So before
** W's allocator asks malloc for 'more' bytes, kept blocks go back until
** the bytes in use, the kept ones and those fit the cap. The cap itself
** counts only the bytes in use (checked in 'countalloc'): kept blocks
** make way for a task, never fail it. A freed block that is kept moves
** its bytes from in use to kept, and one taken back the other way, so
** neither passes the cap.
*/
static void makeroom(worker *w, size_t more) {
  /* 'more' may be a whole new block while the old one is still in use
  ** (resize), so 'used + more' can pass the cap: then nothing is kept */
  if (w->limit != 0)
    conc_bufcache_trim(w->cache, w->used + more < w->limit
                                     ? w->limit - w->used - more : 0);
}

/* A big block: a kept one, else malloc's. Out of memory, the blocks
** kept (of other sizes) go back to malloc, and it is asked again. */
static void *bigalloc(worker *w, size_t n) {
  void *p = conc_bufcache_take(w->cache, n);
  if (p != NULL)
    return p;
  makeroom(w, n);
  if ((p = malloc(n)) == NULL && conc_bufcache_empty(w->cache))
    p = malloc(n);
  return p;
}

/* Lua's realloc of 'p' ('o' bytes, 0 when NULL) to 'n' > 0 bytes. A big
** block comes from the cache, and one given up for it goes there. A
** shrink never fails: when realloc would, the block stays as it is. */
static void *resize(worker *w, void *p, size_t o, size_t n) {
  void *np;
  if (n <= o) {
    np = realloc(p, n);
    return np != NULL ? np : p;
  }
  if (n < CONC_BUFCACHE_MIN || n > CONC_BUFCACHE_MAX) {
    makeroom(w, n - o);
    return realloc(p, n);
  }
  if ((np = bigalloc(w, n)) == NULL)
    return NULL;
  if (o > 0)
    memcpy(np, p, o);
  if (w->limit != 0 && w->used + n > w->limit)
    free(p);  /* kept, the old block would put W past its cap */
  else
    release(w, p, o);
  return np;
}

/* W's allocator: counts its bytes (read atomically by stats) and
** refuses to grow past the cap; shrinking never fails, as Lua needs. */
static void *countalloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  worker *w = (worker *)ud;
  size_t old = ptr != NULL ? osize : 0;
  void *np;
  if (nsize == 0) {
    release(w, ptr, old);
    __atomic_store_n(&w->used, w->used - old, __ATOMIC_RELAXED);
    return NULL;
  }
  if (w->limit != 0 && nsize > old && w->used + (nsize - old) > w->limit
      && !w->lifted)
    return NULL;
  np = resize(w, ptr, old, nsize);
  if (np != NULL)
    __atomic_store_n(&w->used, w->used - old + nsize, __ATOMIC_RELAXED);
  return np;
}

/* The module's own errors are a few hundred bytes: made while a task
** holds its whole max_memory (its waits' timeouts, its stop), they must
** still say what happened, not "not enough memory". Only W's thread
** allocates in W, so the flag is its own. */
void lconc_liftcap(lua_State *L, int lift) {
  void *ud;
  if (lua_getallocf(L, &ud) == countalloc)
    ((worker *)ud)->lifted = lift;
}

static void stophook(lua_State *L, lua_Debug *ar);

static int stopasked(worker *w) {
  return w->ctl != NULL
         && __atomic_load_n(&w->ctl->stop, __ATOMIC_SEQ_CST) != CONC_STOP_NONE;
}

/* Remove the hook unless a stop is asked: 1 if it stays. A stopper sets
** the flag and then the hook, from its own thread; its lua_sethook may
** land just before ours removes the hook, so the flag is read again
** after the removal (the fence keeps our writes to the hook before that
** read), and a stop seen then sets the hook again. */
static int unhook(lua_State *L, worker *w) {
  lua_sethook(L, NULL, 0, 0);
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
  if (!stopasked(w))
    return 0;
  lua_sethook(L, stophook, LUA_MASKCOUNT, 1);
  return 1;
}

/*
** The hook that stops a task: installed only when one must stop (from
** another thread, as lua.c's Ctrl-C handler does from a signal), so a
** task that is not stopped runs without a hook. It raises at every
** instruction until the task unwound, so a 'pcall' in the task cannot
** keep it alive. Found stale (the task ended), it removes itself.
** Its error leaves with the hooks off until a pcall catches it: an
** xpcall's message handler runs so, out of any stop's reach. So it
** stamps 'ctl->raised' first; it runs again, and stamps again, at the
** first Lua instruction after the catch, and rt_run clears the stamp
** once the task unwound: a stamp that grows old tells the back-end the
** task is stuck where no stop reaches (a process pool ends it).
*/
static void stophook(lua_State *L, lua_Debug *ar) {
  worker *w = *(worker **)lua_getextraspace(L);
  double now;
  (void)ar;
  if (!stopasked(w) && !unhook(L, w))
    return;
  lua_sethook(L, stophook, LUA_MASKCOUNT, 1);
  now = conc_now();
  __atomic_store(&w->ctl->raised, &now, __ATOMIC_RELEASE);
  lconc_checkstop(L);
}

/* Any thread: the running task must stop. lua_sethook may be called
** asynchronously (ldebug.c); a coroutine of the task is stopped when it
** yields or returns to the task's own thread. */
static void rt_interrupt(void *ctx) {
  worker *w = (worker *)ctx;
  lua_sethook(w->W, stophook, LUA_MASKCOUNT, 1);
  conc_mailbox_interrupt(w->mb, 1);
}

static size_t rt_memory(void *ctx) {
  return __atomic_load_n(&((worker *)ctx)->used, __ATOMIC_RELAXED);
}

/***
 * Inside a task: the worker running it.
 * @function worker
 * @treturn ?table `{id =, name =, pid =, tasks =}` (`tasks` counts the
 * tasks it started, this one included), or `nil` in a state that is no
 * worker
 */
static int cf_worker(lua_State *L) {
  worker *w;
  char name[32];
  lua_rawgetp(L, LUA_REGISTRYINDEX, &workerkey);
  w = (worker *)lua_touserdata(L, -1);
  if (w == NULL)
    return 1;
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, w->id);
  lua_setfield(L, -2, "id");
  if (pthread_getname_np(pthread_self(), name, sizeof(name)) != 0)
    name[0] = '\0';
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, (lua_Integer)getpid());
  lua_setfield(L, -2, "pid");
  lua_pushinteger(L, w->tasks);
  lua_setfield(L, -2, "tasks");
  return 1;
}

/* core._memory(): inside a task, the bytes its worker's state uses and
** the bytes its allocator keeps besides (freed big blocks), for the
** specs of max_memory; nothing in a state that is no worker. */
static int cf_memory(lua_State *L) {
  worker *w;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &workerkey);
  w = (worker *)lua_touserdata(L, -1);
  if (w == NULL)
    return 0;
  lua_pushinteger(L, (lua_Integer)w->used);
  lua_pushinteger(L, (lua_Integer)conc_bufcache_held(w->cache));
  return 2;
}

static int cf_chunkerror(lua_State *W);
static int cf_chunkresults(lua_State *W);
static int cf_chunkkeep(lua_State *W);

static const luaL_Reg workerfuncs[] = {
  {"worker", cf_worker},
  {"_memory", cf_memory},
  {"_chunkerror", cf_chunkerror},
  {"_chunkresults", cf_chunkresults},
  {"_chunkkeep", cf_chunkkeep},
  {NULL, NULL}
};

void lconc_open_worker(lua_State *L) {
  luaL_setfuncs(L, workerfuncs, 0);
}

/* }====================================================================== */


/* {======================================================================
** Running code in a worker state
** ======================================================================= */

/* Message handler, at 1 on a worker's stack between tasks (see
** run_task): for an error of the task itself (RUN_CALL), it keeps the
** error value as it is (it crosses back to the owner unchanged) and
** stores the traceback in the upvalue table; any other error goes by
** untouched, as if no handler ran. One per worker state, made once (a
** table and a closure per task were a sixth of a small task's cost in
** the worker, with their collection). */
static int msgh(lua_State *W) {
  worker *w = *(worker **)lua_getextraspace(W);
  if (w->phase != RUN_CALL)
    return 1;
  luaL_traceback(W, W, lconc_errortext(W, 1), 1);
  lua_rawseti(W, lua_upvalueindex(1), 1);
  lua_settop(W, 1);
  if (lua_isnil(W, 1))  /* as lua.c reports error() */
    lua_pushliteral(W, "(error object is a nil value)"), lua_replace(W, 1);
  return 1;
}

/* Push the traceback msgh kept (nil if it did not run: a memory
** error), emptying its slot for the next task. */
static void pushtraceback(lua_State *W, int handler) {
  lua_getupvalue(W, handler, 1);
  lua_rawgeti(W, -1, 1);
  lua_pushnil(W);
  lua_rawseti(W, -3, 1);
  lua_remove(W, -2);
}

/* (Protected.) Encode the values 4..top; 1 is the label, 2 a light
** userdata where the payload goes, 3 the encoder's flags. */
static int encode_outcome(lua_State *W) {
  conc_payload_t **out = (conc_payload_t **)lua_touserdata(W, 2);
  *out = lconc_encodex(W, 4, lua_gettop(W) - 3, lua_tostring(W, 1), 1,
                       (int)lua_tointeger(W, 3), NULL, NULL, 0);
  return 0;
}

/* Encode the outcome at 'first'..top (with lconc_encodex's 'flags'): 0,
** or the message of the refusal on the stack. */
static int tryencode(lua_State *W, int first, const char *label, int flags,
                     conc_payload_t **out) {
  int i, top = lua_gettop(W);
  lua_pushcfunction(W, encode_outcome);
  lua_pushstring(W, label);
  lua_pushlightuserdata(W, out);
  lua_pushinteger(W, flags);
  for (i = first; i <= top; i++)
    lua_pushvalue(W, i);
  if (lua_pcall(W, top - first + 4, 0, 0) == LUA_OK)
    return 0;
  return 1;
}

/* The encoder's flags for the 'n' values at 'idx' of W's running task:
** LCONC_ENC_WRAP when they are the one table that wraps a chunk's
** results (core._chunkkeep), else 0. */
static int wrapflags(worker *w, int idx, int n) {
  int wrap;
  if (n != 1 || w->kept != w->tasks || !lua_istable(w->W, idx))
    return 0;
  lua_rawgetp(w->W, LUA_REGISTRYINDEX, &wrapkey);
  wrap = lua_rawequal(w->W, idx, -1);
  lua_pop(w->W, 1);
  return wrap ? LCONC_ENC_WRAP : 0;
}

/* A payload where the back-end keeps the outcome ('ud' is the running
** task's controls), or NULL. */
static conc_payload_t *placeout(void *ud, size_t len, size_t nfutures) {
  conc_taskctl_t *ctl = (conc_taskctl_t *)ud;
  return ctl->place != NULL ? ctl->place(ctl, len, nfutures) : NULL;
}

/*
** (Protected, under msgh.) Run the worker's task: decode it (fn,
** args...), call it and encode its results into 'out'. One protected
** call for the whole task, where a second one around the call alone
** cost a tenth of a small task: 'phase' tells rt_run whose error
** ended it, the task's own (RUN_CALL, which msgh saw) or the decoder's
** or encoder's (which msgh let pass as they were).
*/
static int run_task(lua_State *W) {
  worker *w = *(worker **)lua_getextraspace(W);
  int n = lconc_decodememo(W, w->task, &w->funcs);
  w->phase = RUN_CALL;
  lua_call(W, n - 1, LUA_MULTRET);
  w->phase = RUN_ENCODE;
  n = lua_gettop(W);  /* the task is read: its room may take them */
  w->out = lconc_encodescalars(W, 1, n, placeout, w->ctl);
  if (w->out == NULL)
    w->out = lconc_encodex(W, 1, n, "result", 1, wrapflags(w, 1, n),
                           placeout, w->ctl, 0);
  return 0;
}

/* Replace the error value at 'idx', which cannot cross for the reason
** at the top (the encoder's refusal, popped), by the text the owner
** gets instead: "<text of the error> (<reason>)". */
static void errorwhy(lua_State *W, int idx) {
  int why = lua_gettop(W);
  const char *text = lconc_errortext(W, idx);
  lua_pushfstring(W, "%s (%s)", text, lua_tostring(W, why));
  lua_replace(W, idx);
  lua_settop(W, why - 1);
}

/* (Protected.) Encode the error of a task that raised (at 2; msgh at 1)
** with its traceback into 'out'. An error value that cannot cross is
** kept as its text ('tostring'), with its traceback:
** "<text of the error> (cannot transfer error #1.x (...))". */
static int encode_failure(lua_State *W) {
  worker *w = *(worker **)lua_getextraspace(W);
  pushtraceback(W, 1);
  if (tryencode(W, 2, "error", wrapflags(w, 2, 1), &w->out) != 0) {
    errorwhy(W, 2);
    w->out = lconc_encode(W, 2, 2, "error", 1);
  }
  return 0;
}

/*
** A chunk of map's calls runs as one task (run_chunk, in futures.lua),
** and its call j fails as that call's own task would. The functions
** below tell run_chunk what crosses back for a call, by the encodes
** and the text of a task's outcome above; results of a chunk that
** cannot cross are found only once the worker's encode of them refused
** ('refused'): a chunk that crosses costs no check.
*/

/* core._chunkerror(e): 'e' if it crosses as a task's error, else the
** text that crosses for it (encode_failure). */
static int cf_chunkerror(lua_State *W) {
  conc_payload_t *p = NULL;
  lua_settop(W, 1);
  if (tryencode(W, 1, "error", 0, &p) != 0)
    errorwhy(W, 1);
  conc_payload_free(p);
  return 1;
}

/* Whether the results of call 'j' of a chunk cross as a task's
** (run_task); if not, pushes the refusal. 'out', at 1, holds each
** call's pcall packed (its results from index 2). */
static int resultscross(lua_State *W, lua_Integer j) {
  conc_payload_t *p = NULL;
  lua_Integer i, n;
  int r = lua_gettop(W) + 1;
  lua_rawgeti(W, 1, j);
  luaL_checktype(W, r, LUA_TTABLE);
  lua_getfield(W, r, "n");
  n = lua_tointeger(W, -1);
  lua_pop(W, 1);
  if (n > LUAI_MAXSTACK)  /* no call returns that many */
    luaL_error(W, "too many results");
  luaL_checkstack(W, 2 * (int)n + 8, "too many results");
  for (i = 2; i <= n; i++)
    lua_rawgeti(W, r, i);
  if (tryencode(W, r + 1, "result", 0, &p) != 0) {
    lua_replace(W, r);
    lua_settop(W, r);
    return 0;
  }
  conc_payload_free(p);
  lua_settop(W, r - 1);
  return 1;
}

/* core._chunkresults(out, n): nothing if the results of calls 1..n of
** a chunk (out[j], a call's pcall packed) all cross as a task's; else
** the first j whose results do not and the error that says so. */
static int cf_chunkresults(lua_State *W) {
  lua_Integer j, n = luaL_checkinteger(W, 2);
  luaL_checktype(W, 1, LUA_TTABLE);
  lua_settop(W, 2);
  for (j = 1; j <= n; j++)
    if (!resultscross(W, j)) {
      lua_pushinteger(W, j);
      lua_insert(W, -2);
      return 2;
    }
  return 0;
}

/* core._chunkkeep(f, out): the running task is a chunk whose calls'
** results 'out' wraps ('wrapflags'); should the results it returns be
** refused, its error is f()'s result ('refused'). Nothing outside a
** task. */
static int cf_chunkkeep(lua_State *W) {
  worker *w;
  luaL_checktype(W, 1, LUA_TFUNCTION);
  luaL_checktype(W, 2, LUA_TTABLE);
  lua_settop(W, 2);
  lua_rawgetp(W, LUA_REGISTRYINDEX, &workerkey);
  w = (worker *)lua_touserdata(W, 3);
  if (w == NULL || w->ctl == NULL)
    return 0;
  lua_pushvalue(W, 1);
  lua_rawsetp(W, LUA_REGISTRYINDEX, &keptkey);
  lua_pushvalue(W, 2);
  lua_rawsetp(W, LUA_REGISTRYINDEX, &wrapkey);
  w->kept = w->tasks;
  return 0;
}

/* Forget what the task kept (it holds its results). */
static void unkeep(worker *w) {
  lua_pushnil(w->W);
  lua_rawsetp(w->W, LUA_REGISTRYINDEX, &keptkey);
  lua_pushnil(w->W);
  lua_rawsetp(w->W, LUA_REGISTRYINDEX, &wrapkey);
  w->kept = 0;
}

/* Whether the refusal at the top, of the results of a task that kept a
** function, is now the task's error that the function gives. It is not
** if the function raised or gave nil (no call's results are refused on
** their own). */
static int refused(worker *w) {
  lua_State *W = w->W;
  if (w->phase != RUN_ENCODE || w->kept != w->tasks)
    return 0;
  lua_rawgetp(W, LUA_REGISTRYINDEX, &keptkey);
  lua_pushnil(W);  /* called once; the wrapping table stays kept for
                   ** the encode of the error it gives (wrapflags) */
  lua_rawsetp(W, LUA_REGISTRYINDEX, &keptkey);
  if (lua_pcall(W, 0, 1, 0) != LUA_OK || lua_isnil(W, -1)) {
    lua_pop(W, 1);
    return 0;
  }
  lua_replace(W, -2);
  return 1;
}

/* The outcome of a task that raised (its error at the top, 'status'
** its call's), encoded; or NULL. An outcome that cannot be encoded
** becomes the message of the error that says so, and '*status' that
** error's status; results refused of a task that kept a function
** become the error it gives ('refused'). */
static conc_payload_t *failure(worker *w, int *status) {
  lua_State *W = w->W;
  int st;
  if (*status == LUA_ERRMEM) {  /* room to report it (max_memory): the
                               ** task's values are garbage by now, once
                               ** a chunk's kept ones are let go */
    if (w->kept != 0)
      unkeep(w);
    lua_gc(W, LUA_GCCOLLECT);
  }
  if (w->phase != RUN_CALL  /* the task could not be decoded or its
                           ** results encoded */
      && !(*status == LUA_ERRRUN && refused(w)))
    return lconc_encodetext(lua_tostring(W, -1));
  lua_pushcfunction(W, encode_failure);
  lua_pushvalue(W, 1);
  lua_pushvalue(W, -3);
  if ((st = lua_pcall(W, 2, 0, 0)) == LUA_OK)
    return w->out;
  *status = st;
  return lconc_encodetext(lua_tostring(W, -1));
}

/* What a stopped task ends with: nothing for a cancel (its future ends
** CANCELLED), a TimeoutError for a time limit. The error is a core error
** payload made in C, which the state that reads the future turns into
** its TimeoutError: built here in the worker's state, it needed room the
** task may have used up (max_memory), and the future then failed with
** an encode error in place of the TimeoutError. */
static conc_payload_t *stopped(const conc_taskctl_t *ctl) {
  char msg[LCONC_STOPMSG_SIZE];
  if (__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) != CONC_STOP_TIMEOUT)
    return NULL;
  lconc_timeoutmsg(msg, ctl);
  return conc_payload_error("TimeoutError", msg);
}

/* Arm the task's controls: no hook left from an earlier task, waits
** not interrupted, unless this one was asked to stop before it began. */
static void arm(worker *w, conc_taskctl_t *ctl) {
  conc_mailbox_interrupt(w->mb, 0);
  w->ctl = ctl;
  w->owner->ctl = ctl;
  w->tasks++;
  if (unhook(w->W, w))
    conc_mailbox_interrupt(w->mb, 1);
}

static void disarm(worker *w) {
  lua_sethook(w->W, NULL, 0, 0);
  w->ctl = NULL;
  w->owner->ctl = NULL;
}

static conc_payload_t *rt_run(void *ctx, const conc_payload_t *task,
                              conc_taskctl_t *ctl, int *failed) {
  worker *wk = (worker *)ctx;
  lua_State *W = wk->W;
  conc_payload_t *out;
  double unwound = 0;  /* no stop error in flight (see stophook) */
  int status;
  arm(wk, ctl);
  wk->task = task;
  wk->phase = RUN_DECODE;
  lua_pushcfunction(W, run_task);
  status = lua_pcall(W, 0, 0, 1);  /* leaves msgh alone, if OK */
  __atomic_store(&ctl->raised, &unwound, __ATOMIC_RELEASE);
  *failed = status != LUA_OK;
  if (status == LUA_OK)
    out = wk->out;
  else {
    out = failure(wk, &status);
    lua_settop(W, 1);
  }
  if (wk->kept != 0)
    unkeep(wk);
  disarm(wk);
  if (__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) != CONC_STOP_NONE) {
    conc_payload_free(out);
    out = stopped(ctl);
    *failed = 1;
  }
  /* a task that ran out of memory leaves its garbage: collect it now,
  ** not when the worker next allocates */
  if (status == LUA_ERRMEM || out == NULL)
    lua_gc(W, LUA_GCCOLLECT);
  return out;
}

/* Any thread: the outcome of a task stopped where it does not unwind
** (a process pool's child ends it stuck): the one 'rt_run' gives. */
static conc_payload_t *rt_stopped(void *ctx, const conc_taskctl_t *ctl) {
  (void)ctx;
  return stopped(ctl);
}

/* os.exit([code [, close]]) in a forked worker: as Lua's, but the
** process image is the parent's, whose atexit handlers and stdio
** buffers are not this process's to run or flush. The worker's own
** output is flushed; 'close' closes the worker's state first. */
static int child_exit(lua_State *W) {
  int code;
  if (lua_isboolean(W, 1))
    code = lua_toboolean(W, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    code = (int)luaL_optinteger(W, 1, EXIT_SUCCESS);
  if (lua_toboolean(W, 2))
    lua_close(W);
  fflush(stdout);
  fflush(stderr);
  syscall(SYS_exit_group, code);
  return 0;  /* not reached */
}

/* (Protected.) Make a worker state: libraries, the owner's package
** paths, this module, then the initializer (the flag at 2 tells that it
** started: an error after it is the user's). */
static int pmain(lua_State *W) {
  worker *w = (worker *)lua_touserdata(W, 1);
  lconc_shared *sh = (lconc_shared *)lua_touserdata(W, 3);
  int *ininit = (int *)lua_touserdata(W, 2);
  luaL_openlibs(W);
  lua_gc(W, LUA_GCGEN, 0, 0);  /* as lua.c; incremental piles up futures */
  if ((long)getpid() != sh->pid) {  /* a forked worker process */
    lua_getglobal(W, "os");
    lua_pushcfunction(W, child_exit);
    lua_setfield(W, -2, "exit");
    lua_pop(W, 1);
  }
  lua_getglobal(W, "package");
  lua_pushstring(W, sh->path);
  lua_setfield(W, -2, "path");
  lua_pushstring(W, sh->cpath);
  lua_setfield(W, -2, "cpath");
  luaL_requiref(W, "concurrent.core", luaopen_concurrent_core, 0);
  lua_settop(W, 0);
  w->owner = lconc_getowner(W);
  w->mb = w->owner->mb;
  conc_mailbox_ref(w->mb);
  lua_pushlightuserdata(W, w);
  lua_rawsetp(W, LUA_REGISTRYINDEX, &workerkey);
  lua_createtable(W, 1, 0);
  lua_pushcclosure(W, msgh, 1);  /* 1 */
  if (sh->init != NULL) {
    int n, status;
    *ininit = 1;
    n = lconc_decodememo(W, sh->init, &w->funcs);
    w->phase = RUN_CALL;
    if ((status = lua_pcall(W, n - 1, 0, 1)) != LUA_OK) {
      if (status == LUA_ERRMEM)  /* room to report it */
        lua_gc(W, LUA_GCCOLLECT);
      lconc_errortext(W, -1);  /* the pool's error is a message: a table's
                         ** __tostring, or its type, not "not a string" */
      return lua_error(W);
    }
  }
  lua_settop(W, 1);
  return 1;  /* msgh, which stays at 1 */
}

/* Close the worker's state and free it. */
static void closeworker(worker *w) {
  lua_close(w->W);
  lconc_loadmemo_free(&w->funcs);
  if (w->mb != NULL)
    conc_mailbox_unref(w->mb);
  conc_bufcache_free(w->cache);
  free(w);
}

/* A worker: luaL_newstate's state (its panic and warning functions)
** with the counting allocator, which starts from what it holds (the
** blocks of luaL_newstate's allocator: free() frees them too). */
static worker *newworker(lconc_shared *sh, int id) {
  worker *w = (worker *)calloc(1, sizeof(*w));
  if (w == NULL || (w->cache = conc_bufcache_new(LCONC_WORKERCACHE)) == NULL
      || (w->W = luaL_newstate()) == NULL) {
    if (w != NULL)
      conc_bufcache_free(w->cache);
    free(w);
    return NULL;
  }
  w->used = (size_t)lua_gc(w->W, LUA_GCCOUNT) * 1024
            + (size_t)lua_gc(w->W, LUA_GCCOUNTB);
  w->limit = sh->max_memory;
  w->id = id;
  lconc_loadmemo_init(&w->funcs);
  lua_setallocf(w->W, countalloc, w);
  *(worker **)lua_getextraspace(w->W) = w;
  return w;
}

static int rt_start(void *ud, int id, void **ctx, char **why) {
  worker *w = newworker((lconc_shared *)ud, id);
  int ininit = 0, status;
  if (w == NULL) {
    *why = strdup("cannot create a Lua state (not enough memory)");
    return CONC_ENOMEM;
  }
  lua_pushcfunction(w->W, pmain);
  lua_pushlightuserdata(w->W, w);
  lua_pushlightuserdata(w->W, &ininit);
  lua_pushlightuserdata(w->W, ud);
  status = lua_pcall(w->W, 3, 1, 0);
  if (status != LUA_OK) {
    const char *msg = lua_tostring(w->W, -1);
    char cap[96];
    if (status == LUA_ERRMEM && w->limit != 0) {  /* say which bound */
      snprintf(cap, sizeof(cap), "not enough memory (max_memory is %zu "
               "bytes)", w->limit);
      msg = cap;
    }
    *why = strdup(msg != NULL ? msg : "(error object is not a string)");
    closeworker(w);
    return ininit && status != LUA_ERRMEM ? CONC_EBROKEN : CONC_ENOMEM;
  }
  *ctx = w;
  return 0;
}

static void rt_stop(void *ud, void *ctx) {
  (void)ud;
  closeworker((worker *)ctx);
}

conc_runtime_t lconc_runtime(lconc_shared *sh) {
  conc_runtime_t rt;
  rt.start = rt_start;
  rt.stop = rt_stop;
  rt.run = rt_run;
  rt.interrupt = rt_interrupt;
  rt.memory = rt_memory;
  rt.stopped = rt_stopped;
  rt.ud = sh;
  return rt;
}

/* }====================================================================== */
