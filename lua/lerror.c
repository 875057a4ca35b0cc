/*
** lerror.c: the module's error classes and the mapping of core codes.
** A class is a metatable registered as "concurrent.<Name>", so its
** instances cross states by name and Class:is(e) still holds there.
*/

/***
 * Errors.
 * @submodule concurrent.futures
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "lconcurrent.h"

#define PREFIX "concurrent."

/* name, parent (NULL for a root class) */
static const char *const classes[][2] = {
  {"CancelledError", NULL},
  {"TimeoutError", NULL},
  {"InvalidStateError", NULL},
  {"BrokenExecutor", NULL},
  {"BrokenThreadPool", "BrokenExecutor"},
  {"BrokenProcessPool", "BrokenExecutor"},
  {"BrokenMPIPool", "BrokenExecutor"},  /* concurrent.futures.mpi */
};

#define NCLASSES (sizeof(classes) / sizeof(classes[0]))

static void getclass(lua_State *L, const char *name) {
  lua_pushfstring(L, PREFIX "%s", name);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

/* An instance: { message = msg } with the class as metatable. */
static void newerror(lua_State *L, int cls, const char *msg) {
  cls = lua_absindex(L, cls);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushvalue(L, cls);
  lua_setmetatable(L, -2);
}

/* (Protected.) The error of class 1 whose message is 2, or is formatted
** from 2 with the va_list at 3 (when not NULL), left at the top. */
static int makeerror(lua_State *L) {
  const char *cls = (const char *)lua_touserdata(L, 1);
  const char *msg = (const char *)lua_touserdata(L, 2);
  va_list *ap = (va_list *)lua_touserdata(L, 3);
  if (ap != NULL)
    msg = lua_pushvfstring(L, msg, *ap);
  getclass(L, cls);
  newerror(L, -1, msg);
  return 1;
}

/* Push the error of class 'cls' (message 'msg', formatted when 'ap' is
** not NULL). It is made with a worker's max_memory lifted
** (lconc_liftcap): a task that holds all of it still gets the
** TimeoutError of its wait, not "not enough memory". The cap holds
** again before anything else runs, whatever the making did (hence the
** protected call, whose own error is pushed if it failed all the same). */
static void pushmade(lua_State *L, const char *cls, const char *msg,
                     va_list *ap) {
  lconc_liftcap(L, 1);
  lua_pushcfunction(L, makeerror);
  lua_pushlightuserdata(L, (void *)cls);
  lua_pushlightuserdata(L, (void *)msg);
  lua_pushlightuserdata(L, ap);
  lua_pcall(L, 3, 1, 0);
  lconc_liftcap(L, 0);
}

void lconc_pusherror(lua_State *L, const char *cls, const char *msg) {
  pushmade(L, cls, msg, NULL);
}

int lconc_raise(lua_State *L, const char *cls, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pushmade(L, cls, fmt, &ap);
  va_end(ap);
  return lua_error(L);
}

/* The text of the error value at 'idx' for a traceback, as lua.c's
** msghandler makes it; pushed on the stack. Its __tostring runs
** protected: one that raises or yields would replace the error of a task
** or a callback (in their message handlers) or end a chunk before its
** earlier calls' results (cf_chunkerror), so it gives the text of a
** value without one. */
const char *lconc_errortext(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  idx = lua_absindex(L, idx);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_pushvalue(L, idx);  /* converted on the copy, not in place */
    return lua_tostring(L, -1);
  }
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) {
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
      return lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  return lua_pushfstring(L, "(error object is a %s value)",
                         luaL_typename(L, idx));
}

int lconc_coreerror(lua_State *L, int code, const char *what) {
  switch (code) {
    case CONC_ETIMEDOUT: return lconc_raise(L, "TimeoutError", "%s timed out", what);
    case CONC_ESTATE: return lconc_raise(L, "InvalidStateError", "%s: invalid state", what);
    case CONC_ESYS: return luaL_error(L, "%s: %s", what, strerror(errno));
    default: return luaL_error(L, "%s: %s", what, conc_strerror(code));
  }
}


/***
 * The error classes `CancelledError`, `TimeoutError`,
 * `InvalidStateError`, `BrokenExecutor` and its subclasses
 * `BrokenThreadPool`, `BrokenProcessPool` and `BrokenMPIPool` (the
 * MPI pool of the optional `concurrent.futures.mpi`). Calling a class makes an
 * error value: `tostring(e)` reads well and `e.message` holds the message.
 * @function ErrorClass
 * @tparam[opt] string message
 * @treturn table an error of that class
 */
static int cls_call(lua_State *L) {
  const char *msg = luaL_optstring(L, 2, "");
  newerror(L, 1, msg);
  return 1;
}

/***
 * Whether `e` is an error of this class or a subclass, also after it
 * crossed from a worker.
 * @function ErrorClass:is
 * @param e any value
 * @treturn boolean
 */
static int cls_is(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_istable(L, 2) || !lua_getmetatable(L, 2))
    return lua_pushboolean(L, 0), 1;
  while (!lua_rawequal(L, -1, 1)) {
    if (lua_getfield(L, -1, "parent") != LUA_TTABLE)
      return lua_pushboolean(L, 0), 1;
    lua_remove(L, -2);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int err_tostring(lua_State *L) {
  luaL_getmetafield(L, 1, "name");
  lua_getfield(L, 1, "message");
  if (lua_isstring(L, -1) && lua_rawlen(L, -1) > 0)
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
  else
    lua_pushvalue(L, -2);
  return 1;
}

/* Each class table: __name, name, parent, __index (itself), __tostring,
** is; callable through the shared metatable at 'mt'. Reopening the
** module reuses the registered classes, so errors stay comparable. */
static void makeclass(lua_State *L, int module, int mt, const char *name,
                      const char *parent) {
  lua_pushfstring(L, PREFIX "%s", name);
  if (luaL_newmetatable(L, lua_tostring(L, -1))) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, err_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, cls_is);
    lua_setfield(L, -2, "is");
    if (parent != NULL) {
      getclass(L, parent);
      lua_setfield(L, -2, "parent");
    }
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
  }
  lua_setfield(L, module, name);
  lua_pop(L, 1);  /* the name */
}

/* Adds the classes to the module table at the top. */
void lconc_open_errors(lua_State *L) {
  int module = lua_gettop(L);
  size_t i;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, cls_call);
  lua_setfield(L, -2, "__call");
  for (i = 0; i < NCLASSES; i++)
    makeclass(L, module, module + 1, classes[i][0], classes[i][1]);
  lua_pop(L, 1);
}
