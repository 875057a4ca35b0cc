/*
** prochelper.c: a spec-only module for process-pool specs: what a task
** needs to misbehave as a worker process could (raw writes to its
** socket, signals) and to see the process it runs in, and what a host
** program may do around a pool (its SIGCHLD disposition, fork, its
** process limit, another user).
*/
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
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

/* A host's SIGCHLD handler that reaps every child it can. */
static void reapall(int sig) {
  int e = errno;
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0)
    ;
  errno = e;
}

/* sigchld("ignore" | "reap" | "default"): the host's SIGCHLD
** disposition, as a host program may set it before using a pool. */
static int ph_sigchld(lua_State *L) {
  static const char *const modes[] = {"ignore", "reap", "default", NULL};
  struct sigaction sa;
  int m = luaL_checkoption(L, 1, NULL, modes);
  memset(&sa, 0, sizeof(sa));
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = m == 0 ? SIG_IGN : m == 1 ? reapall : SIG_DFL;
  sa.sa_flags = m == 1 ? SA_RESTART : 0;
  lua_pushboolean(L, sigaction(SIGCHLD, &sa, NULL) == 0);
  return 1;
}

/* sigchld_state() -> "ignore" | "default" | "handler", and whether
** SIGCHLD is blocked: what the calling process has. */
static int ph_sigchld_state(lua_State *L) {
  struct sigaction sa;
  sigset_t mask;
  sigaction(SIGCHLD, NULL, &sa);
  pthread_sigmask(SIG_BLOCK, NULL, &mask);
  lua_pushstring(L, sa.sa_handler == SIG_IGN ? "ignore"
                    : sa.sa_handler == SIG_DFL ? "default" : "handler");
  lua_pushboolean(L, sigismember(&mask, SIGCHLD));
  return 2;
}

/* block_sigchld(): block SIGCHLD in the calling thread. */
static int ph_block_sigchld(lua_State *L) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGCHLD);
  lua_pushboolean(L, pthread_sigmask(SIG_BLOCK, &s, NULL) == 0);
  return 1;
}

/* fork() -> pid (0 in the child) */
static int ph_fork(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)fork());
  return 1;
}

/* waitpid(pid) -> exit status, or 128 + signal, or -1 */
static int ph_waitpid(lua_State *L) {
  int st;
  pid_t r;
  do
    r = waitpid((pid_t)luaL_checkinteger(L, 1), &st, 0);
  while (r < 0 && errno == EINTR);
  lua_pushinteger(L, r < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st)
                                                : 128 + WTERMSIG(st));
  return 1;
}

/* _exit(status): leave at once, as a forked host child may. */
static int ph_exit(lua_State *L) {
  _exit((int)luaL_optinteger(L, 1, 0));
  return 0;
}

/* become(uid): run as that user from now on (a root process only), so
** that RLIMIT_NPROC binds (root is exempt from it); true on success. */
static int ph_become(lua_State *L) {
  uid_t uid = (uid_t)luaL_checkinteger(L, 1);
  int ok = getuid() == 0 && setgroups(0, NULL) == 0 && setgid(uid) == 0
           && setuid(uid) == 0;
  if (ok)  /* a sanitizer's leak check at exit needs it */
    prctl(PR_SET_DUMPABLE, 1);
  lua_pushboolean(L, ok);
  return 1;
}

/* nproc(n): set the soft RLIMIT_NPROC to n (nil: back to the hard
** limit); true on success. */
static int ph_nproc(lua_State *L) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NPROC, &rl) != 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  rl.rlim_cur = lua_isnoneornil(L, 1) ? rl.rlim_max
                                      : (rlim_t)luaL_checkinteger(L, 1);
  lua_pushboolean(L, setrlimit(RLIMIT_NPROC, &rl) == 0);
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
    {"sigchld", ph_sigchld},
    {"sigchld_state", ph_sigchld_state},
    {"block_sigchld", ph_block_sigchld},
    {"fork", ph_fork},
    {"waitpid", ph_waitpid},
    {"exit", ph_exit},
    {"become", ph_become},
    {"nproc", ph_nproc},
    {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  return 1;
}
