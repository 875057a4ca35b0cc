/*
** prochelper.c: a spec-only module for process-pool specs: what a task
** needs to misbehave as a worker process could (raw writes to its
** socket, signals) and to see the process it runs in.
*/
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"

/* write(fd, bytes) -> number of bytes written (raw, unbuffered) */
static int ph_write(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  lua_pushinteger(L, (lua_Integer)write((int)luaL_checkinteger(L, 1), s, n));
  return 1;
}

static int ph_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int ph_ppid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getppid());
  return 1;
}

/* kill(pid, signal number) -> 0 or -1 */
static int ph_kill(lua_State *L) {
  lua_pushinteger(L, kill((pid_t)luaL_checkinteger(L, 1),
                          (int)luaL_checkinteger(L, 2)));
  return 1;
}

int luaopen_prochelper(lua_State *L);

__attribute__((visibility("default")))
int luaopen_prochelper(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"write", ph_write},
    {"pid", ph_pid},
    {"ppid", ph_ppid},
    {"kill", ph_kill},
    {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  return 1;
}
