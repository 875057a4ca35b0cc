/*
** thread.c: how the core starts its threads (workers, supervisors,
** timers). Each starts with every asynchronous signal blocked, so that
** a host's handlers (lua.c's SIGINT) run on the host's own threads and
** never on one of ours; faults stay deliverable to the thread that
** makes them. And what every executor's options must be, as their
** workers are threads or processes started here and there.
*/
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>

#include "internal.h"

int conc__thread_start(pthread_t *tid, size_t stack, void *(*fn)(void *),
                       void *arg) {
  pthread_attr_t attr;
  sigset_t all, old;
  int r;
  if (pthread_attr_init(&attr) != 0)
    return CONC_ESYS;
  if (stack > 0 && stack < (size_t)PTHREAD_STACK_MIN)
    stack = (size_t)PTHREAD_STACK_MIN;
  r = stack > 0 ? pthread_attr_setstacksize(&attr, stack) : 0;
  if (r == 0) {
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(tid, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  pthread_attr_destroy(&attr);
  if (r != 0) {
    errno = r;
    return CONC_ESYS;
  }
  return 0;
}

/* The hooks a runtime may leave NULL, as the header says what that
** means. */
static int nostart(void *ud, int id, void **ctx, char **why) {
  (void)ud; (void)id; (void)why;
  *ctx = NULL;
  return 0;
}

static void nostop(void *ud, void *ctx) {
  (void)ud; (void)ctx;
}

static void nointerrupt(void *ctx) {
  (void)ctx;
}

static size_t nomemory(void *ctx) {
  (void)ctx;
  return 0;
}

static conc_payload_t *nooutcome(void *ctx, const conc_taskctl_t *ctl) {
  (void)ctx; (void)ctl;
  return NULL;
}

int conc__execopts(const conc_executor_opts_t *o, conc_runtime_t *rt) {
  if (o == NULL || o->max_workers <= 0 || o->max_workers > CONC_MAX_WORKERS
      || o->runtime.run == NULL) {
    errno = EINVAL;
    return 0;
  }
  *rt = o->runtime;
  if (rt->start == NULL)
    rt->start = nostart;
  if (rt->stop == NULL)
    rt->stop = nostop;
  if (rt->interrupt == NULL)
    rt->interrupt = nointerrupt;
  if (rt->memory == NULL)
    rt->memory = nomemory;
  if (rt->stopped == NULL)
    rt->stopped = nooutcome;
  return 1;
}

void conc__startwhy(char *buf, size_t n, int code) {
  snprintf(buf, n, "its runtime's start returned %d (%s)", code,
           conc_strerror(code));
}

unsigned long conc__nforks;

/* In the child of a fork (one thread only). */
static void forked(void) {
  __atomic_add_fetch(&conc__nforks, 1, __ATOMIC_RELAXED);
}

static pthread_once_t watching = PTHREAD_ONCE_INIT;

static void watch(void) {
  pthread_atfork(NULL, NULL, forked);
}

void conc__forks_watch(void) {
  pthread_once(&watching, watch);
}
