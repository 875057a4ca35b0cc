/*
** faults.c: fault injection for 'make faults' (spec/faults/sweep.lua).
** Linked into the module with -Wl,--wrap=malloc,... so that the Nth
** call the module itself makes fails, and nothing else does.
*/
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lua.h"

/*
** Why --wrap and not an LD_PRELOAD shim: a shim also fails the
** interpreter's, the C library's and the sanitizer's own calls, so the
** numbering would depend on the host, busted and libc internals, and
** most failures would land where the module has no say (lua.c's main
** state, dlopen). Wrapped, call N is the module's own Nth call to one of
** these functions, the same from run to run (but for the order of
** threads), and the sanitizer runtime still sees every allocation.
** mmap gives only the chunks of task blocks (core/future.c, which
** keeps its slabs in this build: CONC_FAULTS). luaL_newstate is wrapped
** too: it fails as a call of its own
** ("newstate"), and the states the module makes (workers) allocate
** through a failing allocator ("lua"), where Lua's own memory errors,
** and any Lua API call outside a protected call, show.
**
** Settings, read from the environment when the module loads:
**   CONC_FAULT=N        fail call number N (1-based; 0 or unset: none)
**   CONC_FAULT_FROM=1   fail call N and every later one (memory and
**                       threads gone for good) instead of call N only
**   CONC_FAULT_ONLY=fn  count only calls of 'fn' (malloc, fork, ...)
**   CONC_FAULT_COUNT=f  write the number of calls counted to file 'f'
**                       when the module unloads (sizes the sweep)
*/

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg);
int __real_eventfd(unsigned int v, int flags);
int __real_socketpair(int d, int type, int proto, int sv[2]);
pid_t __real_fork(void);
void *__real_mmap(void *a, size_t n, int prot, int flags, int fd,
                  off_t off);
lua_State *__real_luaL_newstate(void);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg);
int __wrap_eventfd(unsigned int v, int flags);
int __wrap_socketpair(int d, int type, int proto, int sv[2]);
pid_t __wrap_fork(void);
void *__wrap_mmap(void *a, size_t n, int prot, int flags, int fd,
                  off_t off);
lua_State *__wrap_luaL_newstate(void);

static long target;
static int from;
static const char *only;
static const char *countfile;
static long calls;  /* atomic */

__attribute__((constructor)) static void faults_init(void) {
  const char *n = getenv("CONC_FAULT");
  target = n != NULL ? atol(n) : 0;
  only = getenv("CONC_FAULT_ONLY");
  from = getenv("CONC_FAULT_FROM") != NULL;
  countfile = getenv("CONC_FAULT_COUNT");
}

__attribute__((destructor)) static void faults_fini(void) {
  FILE *f;
  if (countfile == NULL || (f = fopen(countfile, "w")) == NULL)
    return;
  fprintf(f, "%ld\n", __atomic_load_n(&calls, __ATOMIC_RELAXED));
  fclose(f);
}

/* Count a call of 'fn': whether it is the one to fail. */
static int fails(const char *fn) {
  long n;
  if (only != NULL && strcmp(only, fn) != 0)
    return 0;
  n = __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
  return target > 0 && (from ? n >= target : n == target);
}

void *__wrap_malloc(size_t n) {
  if (fails("malloc")) {
    errno = ENOMEM;
    return NULL;
  }
  return __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n) {
  if (fails("calloc")) {
    errno = ENOMEM;
    return NULL;
  }
  return __real_calloc(k, n);
}

/* realloc(p, 0) frees: it cannot fail. */
void *__wrap_realloc(void *p, size_t n) {
  if (n > 0 && fails("realloc")) {
    errno = ENOMEM;
    return NULL;
  }
  return __real_realloc(p, n);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a,
                          void *(*fn)(void *), void *arg) {
  if (fails("pthread_create"))
    return EAGAIN;
  return __real_pthread_create(t, a, fn, arg);
}

int __wrap_eventfd(unsigned int v, int flags) {
  if (fails("eventfd")) {
    errno = EMFILE;
    return -1;
  }
  return __real_eventfd(v, flags);
}

int __wrap_socketpair(int d, int type, int proto, int sv[2]) {
  if (fails("socketpair")) {
    errno = EMFILE;
    return -1;
  }
  return __real_socketpair(d, type, proto, sv);
}

pid_t __wrap_fork(void) {
  if (fails("fork")) {
    errno = EAGAIN;
    return -1;
  }
  return __real_fork();
}

/* The chunks of task blocks (future.c, built with CONC_FAULTS). */
void *__wrap_mmap(void *a, size_t n, int prot, int flags, int fd,
                  off_t off) {
  if (fails("mmap")) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return __real_mmap(a, n, prot, flags, fd, off);
}

/* As lauxlib's allocator, but growth may fail; Lua assumes shrinking
** never does. */
static void *l_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    free(p);
    return NULL;
  }
  if ((p == NULL || nsize > osize) && fails("lua"))
    return NULL;
  return __real_realloc(p, nsize);
}

/* As lauxlib's: an error outside any protected call aborts. */
static int l_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n",
          msg != NULL ? msg : "?");
  fflush(stderr);
  return 0;
}

lua_State *__wrap_luaL_newstate(void) {
  lua_State *L;
  if (fails("newstate"))
    return NULL;
  L = lua_newstate(l_alloc, NULL);
  if (L != NULL)
    lua_atpanic(L, l_panic);
  return L;
}
