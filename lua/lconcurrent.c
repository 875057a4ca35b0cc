/*
** lconcurrent.c: luaopen_concurrent_core, the module's only export. It
** opens each part of the binding into one table and publishes the C API
** for hosts (conc_lua_api_t) in the registry.
*/

/***
 * Functions.
 * @submodule concurrent.futures
 */
#include <string.h>
#include <unistd.h>

#include "lconcurrent.h"

/***
 * @function cpu_count
 * @treturn integer the number of online processors
 */
static int cf_cpu_count(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

void lconc_checkcallable(lua_State *L, int arg) {
  if (lua_isfunction(L, arg))
    return;
  if (!luaL_getmetafield(L, arg, "__call"))
    luaL_typeerror(L, arg, "function");
  lua_pop(L, 1);
}

int lconc_isname(lua_State *L, const char *const *names) {
  if (lua_type(L, -1) != LUA_TSTRING)
    return 0;
  for (; *names != NULL; names++)
    if (strcmp(lua_tostring(L, -1), *names) == 0)
      return 1;
  return 0;
}

const char *lconc_unknownkey(lua_State *L, int t, const char *const *names,
                             int integers) {
  t = lua_absindex(L, t);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (!(integers && lua_isinteger(L, -1)) && !lconc_isname(L, names))
      return luaL_tolstring(L, -1, NULL);
  }
  return NULL;
}

void lconc_checkoptions(lua_State *L, int arg, const char *const *names) {
  const char *key = lconc_unknownkey(L, arg, names, 0);
  if (key != NULL) {
    const char *const *o;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (o = names; *o != NULL; o++) {
      luaL_addstring(&b, o == names ? "" : ", ");
      luaL_addstring(&b, *o);
    }
    luaL_pushresult(&b);
    luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s' (known: "
                  "%s)", key, lua_tostring(L, -1)));
  }
}

/* Monotonic seconds, for deadlines computed in Lua (map's timeout). */
void lconc_setgcmeta(lua_State *L, const void *key, lua_CFunction gc) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
  }
  lua_setmetatable(L, -2);
}

static int cf_now(lua_State *L) {
  lua_pushnumber(L, conc_now());
  return 1;
}


/* {======================================================================
** The C API for hosts
** ======================================================================= */

/* A NULL future made a handle that claimed to be finalized, and raised
** only when used. */
static void capi_pushfuture(lua_State *L, conc_future_t *f) {
  if (f == NULL)
    luaL_error(L, "cannot push a future: NULL");
  lconc_pushfuture(L, f);
}

/* The host now holds the pointer and may push it back. */
static conc_future_t *capi_tofuture(lua_State *L, int idx) {
  conc_future_t *f = lconc_testfuture(L, idx);
  if (f != NULL)
    lconc_sharefuture(L, idx);
  return f;
}

/* The values must be on the stack: the encoder pushes its own below
** the top, and read past it, they were encoded (a nil, its memo: "value
** #4 (userdata)"), as was index 0; a negative count made a transfer
** that no state could decode. */
static void *capi_encode(lua_State *L, int first, int n, size_t *len) {
  conc_payload_t *p;
  int top = lua_gettop(L), at = first;
  if (at < 0 && at > LUA_REGISTRYINDEX)
    at = lua_absindex(L, at);
  if (at < 1 || n < 0 || (long)at - 1 + n > top)
    luaL_error(L, "cannot transfer %d values from stack index %d: the "
               "stack has %d", n, first, top);
  p = lconc_encode(L, at, n, "value", 1);
  if (len != NULL)
    *len = conc_payload_sizeof(p);
  return p;
}

static int capi_decode(lua_State *L, const void *payload) {
  return lconc_decode(L, (const conc_payload_t *)payload);
}

/* What a host completes a future with is what a state will decode: a
** payload of 'encode', freed with 'freepayload' (the only mark a payload
** carries), or NULL for no values. Raw bytes would be read as a
** payload's header and a transfer: refused, and they stay the host's.
** Values that reach the future they complete (a cycle) are refused too,
** by conc_payload_settle. */
static int capi_isvalues(void *data, size_t len, conc_free_fn freefn) {
  return data == NULL
         || (freefn == conc_payload_free
             && len == conc_payload_sizeof((const conc_payload_t *)data));
}

/* A host's NULL, no values, as a payload: a future finished with none
** is one whose values cannot reach other states (kept by the state
** that set them, or no memory was left to send them), which result()
** reports. A failure gets an error that says so. */
static int capi_setnone(conc_future_t *f, int failed) {
  conc_payload_t *p = failed ? lconc_encodetext(
      "the future failed without an error value") : lconc_encodenone();
  if (p == NULL)
    return CONC_ENOMEM;
  return conc_payload_finish(f, p, failed, NULL, NULL);  /* frees a refused p */
}

static int capi_set_result(conc_future_t *f, void *data, size_t len,
                           conc_free_fn freefn) {
  if (!capi_isvalues(data, len, freefn))
    return CONC_EINVAL;
  if (data == NULL)
    return capi_setnone(f, 0);
  return conc_payload_settle(f, (conc_payload_t *)data, 0);
}

static int capi_set_exception(conc_future_t *f, void *data, size_t len,
                              conc_free_fn freefn) {
  if (!capi_isvalues(data, len, freefn))
    return CONC_EINVAL;
  if (data == NULL)
    return capi_setnone(f, 1);
  return conc_payload_settle(f, (conc_payload_t *)data, 1);
}

/* The values of a FINISHED future, decoded in L (conc_lua_api_t). */
static int capi_pushvalues(lua_State *L, conc_future_t *f, int *failed) {
  const void *data;
  size_t len;
  int fl, r;
  if ((r = conc_future_payload(f, &data, &len, &fl)) != 0)
    return r;  /* CONC_ESTATE; CONC_EINVAL for no future */
  if (data == NULL)
    return CONC_EINVAL;
  if (failed != NULL)
    *failed = fl;
  return lconc_decode(L, (const conc_payload_t *)data);
}

static const conc_lua_api_t capi = {
  CONC_LUA_API_VERSION,
  capi_pushfuture,
  capi_tofuture,
  capi_encode,
  capi_decode,
  conc_payload_free,
  conc_future_new,
  conc_future_ref,
  conc_future_unref,
  conc_future_state,
  conc_future_set_running_or_notify_cancel,
  capi_set_result,
  capi_set_exception,
  conc_future_cancel,
  conc_future_wait,
  conc_future_add_callback,
  conc_deadline,
  conc_future_done,
  conc_future_payload,
  capi_pushvalues,
  conc_strerror
};

/* }====================================================================== */


LUAMOD_API int luaopen_concurrent_core(lua_State *L) {
  lua_newtable(L);
  lconc_open_errors(L);  /* first: any later failure can be classed */
  lconc_open_mailbox(L);
  lconc_open_future(L);
  lconc_open_wait(L);
  lconc_open_executor(L);
  lconc_open_timer(L);
  lconc_open_queue(L);
  lconc_open_worker(L);
  lua_pushcfunction(L, cf_cpu_count);
  lua_setfield(L, -2, "cpu_count");
  lua_pushcfunction(L, cf_now);
  lua_setfield(L, -2, "now");
  lua_pushliteral(L, CONC_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushlightuserdata(L, (void *)&capi);
  lua_setfield(L, LUA_REGISTRYINDEX, CONC_LUA_API_KEY);
  return 1;
}
