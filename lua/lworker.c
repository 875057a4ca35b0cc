/*
** lworker.c: the worker runtime of the thread pool. Each worker thread
** owns one lua_State, made once (protected, like lua.c's pmain) and
** reused for every task; tasks and outcomes cross as codec payloads.
*/
#include <stdlib.h>
#include <string.h>

#include "lualib.h"

#include "lconcurrent.h"
#include "lworker.h"


/* (Protected.) Encode the value at 1, or an error of class 'cls' (upvalue)
** with message at 1; returns the payload as a light userdata. */
static int encode_one(lua_State *W) {
  if (!lua_isnone(W, lua_upvalueindex(1)))
    lconc_pusherror(W, lua_tostring(W, lua_upvalueindex(1)),
                    lua_tostring(W, 1));
  lua_pushlightuserdata(W, lconc_encode(W, lua_gettop(W), 1, "error", 1));
  return 1;
}

/* A payload of one string, or of a new error object of class 'cls'
** (when not NULL); NULL if even that cannot be made (no memory). */
static lconc_payload *encode_message(lua_State *W, const char *cls,
                                     const char *msg) {
  lconc_payload *p = NULL;
  if (cls != NULL) lua_pushstring(W, cls);
  lua_pushcclosure(W, encode_one, cls != NULL);
  lua_pushstring(W, msg);
  if (lua_pcall(W, 1, 1, 0) == LUA_OK)
    p = (lconc_payload *)lua_touserdata(W, -1);
  lua_pop(W, 1);
  return p;
}


/* {======================================================================
** Shared executor data
** ======================================================================= */

lconc_shared *lconc_shared_new(void) {
  lconc_shared *sh = (lconc_shared *)calloc(1, sizeof(*sh));
  if (sh == NULL)
    return NULL;
  if (pthread_mutex_init(&sh->mu, NULL) != 0) {
    free(sh);
    return NULL;
  }
  return sh;
}

/* Only after the pool is freed: no worker can touch it any more. */
void lconc_shared_free(lconc_shared *sh) {
  if (sh == NULL)
    return;
  free(sh->path);
  free(sh->cpath);
  free(sh->brokenmsg);
  lconc_payload_free(sh->init);
  lconc_payload_free(sh->broken);
  pthread_mutex_destroy(&sh->mu);
  free(sh);
}

/* The message of a broken pool (a copy), or NULL while it is not. Every
** submit asks: the flag spares it the lock while the pool is sound. */
char *lconc_shared_broken(lconc_shared *sh) {
  char *msg = NULL;
  if (!__atomic_load_n(&sh->isbroken, __ATOMIC_ACQUIRE))
    return NULL;
  pthread_mutex_lock(&sh->mu);
  if (sh->brokenmsg != NULL)
    msg = strdup(sh->brokenmsg);
  pthread_mutex_unlock(&sh->mu);
  return msg;
}

/* Record the first failure: its text, and (when a state is at hand) the
** BrokenThreadPool error encoded for the futures that will never run. */
static void setbroken(lconc_shared *sh, lua_State *W, const char *why) {
  char *msg = (char *)malloc(strlen(why) + 32);
  lconc_payload *p = NULL;
  if (msg != NULL)
    strcpy(msg, "initializer failed: "), strcat(msg, why);
  if (W != NULL && msg != NULL)
    p = encode_message(W, "BrokenThreadPool", msg);
  pthread_mutex_lock(&sh->mu);
  if (sh->brokenmsg == NULL) {
    sh->brokenmsg = msg;
    sh->broken = p;
    msg = NULL;
    p = NULL;
    __atomic_store_n(&sh->isbroken, 1, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&sh->mu);
  free(msg);
  lconc_payload_free(p);
}

/* }====================================================================== */


/* {======================================================================
** Running code in a worker state
** ======================================================================= */

/* Message handler: keeps the error value as it is (it crosses back to the
** owner unchanged) and stores the traceback in the upvalue table. */
static int msgh(lua_State *W) {
  const char *msg = lua_tostring(W, 1);
  if (msg == NULL)
    msg = lua_pushfstring(W, "(error object is a %s value)",
                          luaL_typename(W, 1));
  luaL_traceback(W, W, msg, 1);
  lua_rawseti(W, lua_upvalueindex(1), 1);
  lua_settop(W, 1);
  if (lua_isnil(W, 1))  /* as lua.c reports error() */
    lua_pushliteral(W, "(error object is a nil value)"), lua_replace(W, 1);
  return 1;
}

/* Decode the payload at 1 (fn, args...) and call it under 'msgh'. Leaves
** the call's status, then its results or (error, traceback). */
static int call_payload(lua_State *W) {
  const lconc_payload *p = (const lconc_payload *)lua_touserdata(W, 1);
  int n, status;
  lua_settop(W, 0);
  lua_newtable(W);                      /* 1: traceback slot */
  lua_pushvalue(W, 1);
  lua_pushcclosure(W, msgh, 1);         /* 2: handler */
  n = lconc_decode(W, p);
  status = lua_pcall(W, n - 1, LUA_MULTRET, 2);
  if (status != LUA_OK)
    lua_rawgeti(W, 1, 1);               /* the traceback */
  lua_pushinteger(W, status);
  lua_replace(W, 2);                    /* 2: status */
  return lua_gettop(W) - 1;
}

/* (Protected.) Run a task's payload at 1; return (failed, outcome) with
** the outcome encoded, results or error + traceback. */
static int run_task(lua_State *W) {
  int failed, n;
  lconc_payload *out;
  call_payload(W);
  failed = lua_tointeger(W, 2) != LUA_OK;
  n = lua_gettop(W) - 2;
  out = lconc_encode(W, 3, n, failed ? "error" : "result", 1);
  lua_settop(W, 0);
  lua_pushboolean(W, failed);
  lua_pushlightuserdata(W, out);
  return 2;
}

void lconc_worker_run(lua_State *W, const lconc_payload *task,
                      conc_future_t *f) {
  lconc_payload *out;
  int failed;
  lua_settop(W, 0);
  lua_pushcfunction(W, run_task);
  lua_pushlightuserdata(W, (void *)task);
  if (lua_pcall(W, 1, 2, 0) == LUA_OK) {
    failed = lua_toboolean(W, 1);
    out = (lconc_payload *)lua_touserdata(W, 2);
  } else {  /* the task could not be decoded or its outcome encoded */
    failed = 1;
    out = encode_message(W, NULL, lua_tostring(W, -1));
  }
  if (lconc_payload_reaches(out, f) != 0) {  /* a cycle no one breaks */
    lconc_payload_free(out);
    failed = 1;
    out = encode_message(W, "InvalidStateError",
                         "a task's outcome cannot hold its own future");
  }
  lua_settop(W, 0);
  if (failed)
    conc_future_set_exception(f, out, lconc_payload_sizeof(out),
                              lconc_payload_free);
  else
    conc_future_set_result(f, out, lconc_payload_sizeof(out),
                           lconc_payload_free);
}

/* (Protected.) Make a worker state: libraries, the owner's package
** paths, this module, then the initializer. */
static int pmain(lua_State *W) {
  lconc_shared *sh = (lconc_shared *)lua_touserdata(W, 1);
  luaL_openlibs(W);
  lua_gc(W, LUA_GCGEN, 0, 0);  /* as lua.c; incremental piles up futures */
  lua_getglobal(W, "package");
  lua_pushstring(W, sh->path);
  lua_setfield(W, -2, "path");
  lua_pushstring(W, sh->cpath);
  lua_setfield(W, -2, "cpath");
  luaL_requiref(W, "concurrent.core", luaopen_concurrent_core, 0);
  lua_settop(W, 0);
  if (sh->init != NULL) {
    lua_pushcfunction(W, call_payload);
    lua_pushlightuserdata(W, sh->init);
    lua_call(W, 1, LUA_MULTRET);
    if (lua_tointeger(W, 1) != LUA_OK)  /* error value, traceback */
      return lua_pushvalue(W, 2), lua_error(W);
  }
  return 0;
}

int lconc_worker_start(void *ud, void **ctx) {
  lconc_shared *sh = (lconc_shared *)ud;
  lua_State *W = luaL_newstate();
  if (W == NULL) {
    setbroken(sh, NULL, "cannot create a worker state");
    return -1;
  }
  lua_pushcfunction(W, pmain);
  lua_pushlightuserdata(W, sh);
  if (lua_pcall(W, 1, 0, 0) != LUA_OK) {
    const char *why = luaL_tolstring(W, -1, NULL);
    setbroken(sh, W, why);
    lua_close(W);
    return -1;
  }
  *ctx = W;
  return 0;
}

void lconc_worker_stop(void *ud, void *ctx) {
  (void)ud;
  lua_close((lua_State *)ctx);
}

/* A copy of the pool's BrokenThreadPool payload, for one future. */
lconc_payload *lconc_shared_brokenpayload(lconc_shared *sh) {
  lconc_payload *p = NULL;
  pthread_mutex_lock(&sh->mu);
  if (sh->broken != NULL)
    p = lconc_payload_dup(sh->broken);
  pthread_mutex_unlock(&sh->mu);
  return p;
}

/* }====================================================================== */
