/*
** lworker.c: the worker runtime. A worker (a pool thread, or a forked
** child) owns one lua_State, made once (protected, like lua.c's pmain)
** and reused for every task. A task payload goes in, an outcome payload
** comes out: the runtime never touches a future.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lualib.h"

#include "lconcurrent.h"
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
** Running code in a worker state
** ======================================================================= */

/* (Protected.) Encode the string at 1 as a one-value payload; returns
** it as a light userdata. */
static int encode_string(lua_State *W) {
  lua_pushlightuserdata(W, lconc_encode(W, 1, 1, "error", 1));
  return 1;
}

/* A payload of one string, or NULL when even that cannot be made (no
** memory). Nothing here allocates outside the protected call: a light C
** function and a light userdata cost no memory. */
static conc_payload_t *encode_message(lua_State *W, const char *msg) {
  conc_payload_t *p = NULL;
  lua_pushcfunction(W, encode_string);
  lua_pushlightuserdata(W, (void *)msg);
  if (lua_pcall(W, 1, 1, 0) == LUA_OK)
    p = (conc_payload_t *)lua_touserdata(W, -1);
  lua_pop(W, 1);
  return p;
}

/* The text of the error value at 'idx' for a traceback, as lua.c's
** msghandler makes it; pushed on the stack. */
static const char *errortext(lua_State *W, int idx) {
  int t = lua_type(W, idx);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_pushvalue(W, idx);  /* converted on the copy, not in place */
    return lua_tostring(W, -1);
  }
  if (luaL_callmeta(W, idx, "__tostring") && lua_type(W, -1) == LUA_TSTRING)
    return lua_tostring(W, -1);
  return lua_pushfstring(W, "(error object is a %s value)",
                         luaL_typename(W, idx));
}

/* Message handler: keeps the error value as it is (it crosses back to the
** owner unchanged) and stores the traceback in the upvalue table. */
static int msgh(lua_State *W) {
  luaL_traceback(W, W, errortext(W, 1), 1);
  lua_rawseti(W, lua_upvalueindex(1), 1);
  lua_settop(W, 1);
  if (lua_isnil(W, 1))  /* as lua.c reports error() */
    lua_pushliteral(W, "(error object is a nil value)"), lua_replace(W, 1);
  return 1;
}

/* Decode the payload at 1 (fn, args...) and call it under 'msgh'. Leaves
** the call's status, then its results or (error, traceback). */
static int call_payload(lua_State *W) {
  const conc_payload_t *p = (const conc_payload_t *)lua_touserdata(W, 1);
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

/* (Protected.) Encode the values 3..top; 1 is the label, 2 a light
** userdata where the payload goes. */
static int encode_outcome(lua_State *W) {
  conc_payload_t **out = (conc_payload_t **)lua_touserdata(W, 2);
  *out = lconc_encode(W, 3, lua_gettop(W) - 2, lua_tostring(W, 1), 1);
  return 0;
}

/* Encode the outcome at 'first'..top: 0, or the message of the refusal
** on the stack. */
static int tryencode(lua_State *W, int first, const char *label,
                     conc_payload_t **out) {
  int i, top = lua_gettop(W);
  lua_pushcfunction(W, encode_outcome);
  lua_pushstring(W, label);
  lua_pushlightuserdata(W, out);
  for (i = first; i <= top; i++)
    lua_pushvalue(W, i);
  if (lua_pcall(W, top - first + 3, 0, 0) == LUA_OK)
    return 0;
  return 1;
}

/* (Protected.) Run a task's payload at 1; return (failed, outcome, the
** call's status) with the outcome encoded, results or error + traceback. An outcome that
** cannot cross becomes an error that says so: an error value is then
** kept as its text ('tostring'), with its traceback. */
static int run_task(lua_State *W) {
  conc_payload_t *out = NULL;
  int failed, status;
  call_payload(W);
  status = (int)lua_tointeger(W, 2);
  failed = status != LUA_OK;
  if (tryencode(W, 3, failed ? "error" : "result", &out) == 0) {
    lua_settop(W, 0);
  } else if (!failed) {  /* results that cannot cross: the message */
    lua_replace(W, 3);
    lua_settop(W, 3);
    failed = 1;
  } else {  /* "<text of the error> (cannot transfer error #1.x (...))" */
    const char *why = lua_tostring(W, -1);
    lua_pushfstring(W, "%s (%s)", errortext(W, 3), why);
    lua_replace(W, 3);
    lua_settop(W, 4);
  }
  if (out == NULL)
    out = lconc_encode(W, 3, lua_gettop(W) - 2, "error", 1);
  lua_settop(W, 0);
  lua_pushboolean(W, failed);
  lua_pushlightuserdata(W, out);
  lua_pushinteger(W, status);
  return 3;
}

static conc_payload_t *rt_run(void *ctx, const conc_payload_t *task,
                              int *failed) {
  lua_State *W = (lua_State *)ctx;
  conc_payload_t *out;
  int status;
  lua_settop(W, 0);
  lua_pushcfunction(W, run_task);
  lua_pushlightuserdata(W, (void *)task);
  status = lua_pcall(W, 1, 3, 0);
  if (status == LUA_OK) {
    *failed = lua_toboolean(W, 1);
    out = (conc_payload_t *)lua_touserdata(W, 2);
    status = (int)lua_tointeger(W, 3);  /* the task's own */
  } else {  /* the task could not be decoded or its outcome encoded */
    *failed = 1;
    out = encode_message(W, lua_tostring(W, -1));
  }
  lua_settop(W, 0);
  /* a task that ran out of memory leaves its garbage: collect it now,
  ** not when the worker next allocates */
  if (status == LUA_ERRMEM || out == NULL)
    lua_gc(W, LUA_GCCOLLECT);
  return out;
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
  lconc_shared *sh = (lconc_shared *)lua_touserdata(W, 1);
  int *ininit = (int *)lua_touserdata(W, 2);
  luaL_openlibs(W);
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
  if (sh->init != NULL) {
    *ininit = 1;
    lua_pushcfunction(W, call_payload);
    lua_pushlightuserdata(W, sh->init);
    lua_call(W, 1, LUA_MULTRET);
    if (lua_tointeger(W, 1) != LUA_OK)  /* error value, traceback */
      return lua_pushvalue(W, 2), lua_error(W);
  }
  return 0;
}

static int rt_start(void *ud, void **ctx, char **why) {
  lua_State *W = luaL_newstate();
  int ininit = 0, status;
  if (W == NULL) {
    *why = strdup("cannot create a Lua state (not enough memory)");
    return CONC_ENOMEM;
  }
  lua_pushcfunction(W, pmain);
  lua_pushlightuserdata(W, ud);
  lua_pushlightuserdata(W, &ininit);
  status = lua_pcall(W, 2, 0, 0);
  if (status != LUA_OK) {
    const char *msg = lua_tostring(W, -1);
    *why = strdup(msg != NULL ? msg : "(error object is not a string)");
    lua_close(W);
    return ininit && status != LUA_ERRMEM ? CONC_EBROKEN : CONC_ENOMEM;
  }
  *ctx = W;
  return 0;
}

static void rt_stop(void *ud, void *ctx) {
  (void)ud;
  lua_close((lua_State *)ctx);
}

conc_runtime_t lconc_runtime(lconc_shared *sh) {
  conc_runtime_t rt;
  rt.start = rt_start;
  rt.stop = rt_stop;
  rt.run = rt_run;
  rt.ud = sh;
  return rt;
}

/* }====================================================================== */
