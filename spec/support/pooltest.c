/*
** pooltest.c: the core thread pool driven from C alone, as a C host would.
** "pooltest <case>" runs one case and prints "ok <case>"; "pooltest list"
** names them; "pooltest bench [n]" measures trivial tasks per second.
*/
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "concurrent.h"
#include "ctest.h"

/* A case that takes longer than this has hung. */
#define CASE_TIMEOUT 120


static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}


/* {======================================================================
** Gates: tasks that block until the test opens them
** ======================================================================= */

typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int open;
  int waiting;  /* threads blocked in gate_pass */
} gate;

static void gate_init(gate *g) {
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  g->open = 0;
  g->waiting = 0;
}

static void gate_pass(gate *g) {
  pthread_mutex_lock(&g->mu);
  g->waiting++;
  pthread_cond_broadcast(&g->cv);
  while (!g->open)
    pthread_cond_wait(&g->cv, &g->mu);
  g->waiting--;
  pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate *g) {
  pthread_mutex_lock(&g->mu);
  g->open = 1;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

/* Wait until 'n' threads are blocked at the gate. */
static void gate_await(gate *g, int n) {
  pthread_mutex_lock(&g->mu);
  while (g->waiting < n)
    pthread_cond_wait(&g->cv, &g->mu);
  pthread_mutex_unlock(&g->mu);
}

static void gate_free(gate *g) {
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
}

/* }====================================================================== */


/* {======================================================================
** Tasks: x -> x + 1, each task malloc'd by the "host" and freed by run
** or drop; counters record what the pool did with them.
** ======================================================================= */

typedef struct counters {
  long runs, drops, broken;  /* atomic */
} counters;

typedef struct ttask {
  conc_task_t base;
  long x;
  gate *g;             /* pass it before computing, if set */
  counters *c;
  char **name_out;     /* gets the worker's thread name, if set */
} ttask;

static void t_run(conc_task_t *t, void *ctx) {
  ttask *tt = (ttask *)t;
  conc_future_t *f = t->future;
  long *res = (long *)malloc(sizeof(*res));
  (void)ctx;
  CHECK(res != NULL);
  if (tt->g != NULL)
    gate_pass(tt->g);
  if (tt->name_out != NULL) {
    *tt->name_out = (char *)malloc(16);
    CHECK(*tt->name_out != NULL);
    pthread_getname_np(pthread_self(), *tt->name_out, 16);
  }
  *res = tt->x + 1;
  __atomic_add_fetch(&tt->c->runs, 1, __ATOMIC_RELAXED);
  free(tt);  /* before completing: the pool must not need the task */
  if (conc_future_set_result(f, res, sizeof(*res), free) != 0)
    free(res);
}

/* A task that raises: its future ends with an exception. */
static void t_run_fail(conc_task_t *t, void *ctx) {
  ttask *tt = (ttask *)t;
  conc_future_t *f = t->future;
  (void)ctx;
  __atomic_add_fetch(&tt->c->runs, 1, __ATOMIC_RELAXED);
  free(tt);
  CHECK(conc_future_set_exception(f, NULL, 0, NULL) == 0);
}

static void t_drop(conc_task_t *t, int why) {
  ttask *tt = (ttask *)t;
  if (why == CONC_EBROKEN) {
    CHECK(conc_future_state(t->future) == CONC_RUNNING);
    __atomic_add_fetch(&tt->c->broken, 1, __ATOMIC_RELAXED);
    CHECK(conc_future_set_exception(t->future, NULL, 0, NULL) == 0);
  }
  else {
    CHECK(why == 0);
    CHECK(conc_future_done(t->future));
    __atomic_add_fetch(&tt->c->drops, 1, __ATOMIC_RELAXED);
  }
  free(tt);
}

/* A new task and future: '*fp' gets the caller's own reference; the
** task holds the one the pool takes over at submit. */
static ttask *new_task(long x, counters *c, gate *g, conc_future_t **fp) {
  ttask *tt = (ttask *)calloc(1, sizeof(*tt));
  CHECK(tt != NULL);
  tt->base.future = conc_future_new();
  CHECK(tt->base.future != NULL);
  tt->base.run = t_run;
  tt->base.drop = t_drop;
  tt->x = x;
  tt->g = g;
  tt->c = c;
  conc_future_ref(tt->base.future);
  *fp = tt->base.future;
  return tt;
}

/* Submit x -> x + 1; returns the caller's future reference. */
static conc_future_t *submit(conc_pool_t *p, long x, counters *c, gate *g) {
  conc_future_t *f;
  ttask *tt = new_task(x, c, g, &f);
  CHECK(conc_pool_submit(p, &tt->base) == 0);
  return f;
}

static long result_of(conc_future_t *f) {
  const void *data;
  size_t len;
  int failed;
  CHECK(conc_future_wait(f, conc_deadline(60)) == 0);
  CHECK(conc_future_payload(f, &data, &len, &failed) == 0);
  CHECK(!failed && len == sizeof(long));
  return *(const long *)data;
}

static long load(long *v) {
  return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static conc_pool_t *new_pool(int max_workers) {
  conc_pool_opts_t o;
  conc_pool_t *p;
  memset(&o, 0, sizeof(o));
  o.max_workers = max_workers;
  o.name_prefix = "pooltest";
  p = conc_pool_new(&o);
  CHECK(p != NULL);
  return p;
}

static void stats(conc_pool_t *p, conc_pool_stats_t *s) {
  conc_pool_stats(p, s);
  CHECK(s->workers >= 0 && s->idle >= 0 && s->idle <= s->workers);
  CHECK(s->pending >= 0 && s->running >= 0);
}

/* Poll the stats until 'field' reaches 'want' (a worker going idle
** happens just after its task's future completed). */
#define AWAIT_STAT(p, field, want) do { \
    conc_pool_stats_t s_; int i_; \
    for (i_ = 0; i_ < 10000; i_++) { \
      stats(p, &s_); \
      if (s_.field == (want)) break; \
      sleep_ms(1); \
    } \
    CHECK(s_.field == (want)); \
  } while (0)

/* }====================================================================== */


/* {======================================================================
** Cases
** ======================================================================= */

/* 'n' tasks on 'w' workers: every result right, every worker used at
** most as allowed, stats add up. */
static void many(int w, long n) {
  conc_pool_t *p = new_pool(w);
  conc_future_t **fs = (conc_future_t **)malloc((size_t)n * sizeof(*fs));
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  long i;
  CHECK(fs != NULL);
  for (i = 0; i < n; i++)
    fs[i] = submit(p, i, &c, NULL);
  stats(p, &s);
  CHECK(s.workers >= 1 && s.workers <= w);
  for (i = 0; i < n; i++) {
    CHECK(result_of(fs[i]) == i + 1);
    conc_future_unref(fs[i]);
  }
  CHECK(load(&c.runs) == n && load(&c.drops) == 0);
  stats(p, &s);  /* every outcome counted before its waiters woke */
  CHECK(s.completed == n && s.running == 0 && s.pending == 0);
  conc_pool_shutdown(p, 1, 0);
  stats(p, &s);
  CHECK(s.workers == 0 && s.completed == n && s.pending == 0);
  CHECK(s.running == 0 && s.failed == 0 && s.cancelled == 0);
  conc_pool_free(p);
  free(fs);
}

static void case_many1(void) { many(1, 20000); }
static void case_many2(void) { many(2, 20000); }
static void case_many8(void) { many(8, 20000); }

/* Workers start one per submit while none is idle, never before. */
static void case_lazy(void) {
  conc_pool_t *p = new_pool(4);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *f[4];
  gate g;
  gate_init(&g);
  stats(p, &s);
  CHECK(s.workers == 0);
  f[0] = submit(p, 0, &c, &g);
  gate_await(&g, 1);
  stats(p, &s);
  CHECK(s.workers == 1 && s.running == 1 && s.idle == 0);
  f[1] = submit(p, 1, &c, &g);  /* none idle: a second worker */
  gate_await(&g, 2);
  stats(p, &s);
  CHECK(s.workers == 2 && s.running == 2);
  gate_open(&g);
  CHECK(result_of(f[0]) == 1 && result_of(f[1]) == 2);
  AWAIT_STAT(p, idle, 2);
  f[2] = submit(p, 2, &c, NULL);  /* idle workers: no new one */
  CHECK(result_of(f[2]) == 3);
  AWAIT_STAT(p, idle, 2);
  f[3] = submit(p, 3, &c, NULL);
  CHECK(result_of(f[3]) == 4);
  stats(p, &s);
  CHECK(s.workers == 2 && s.completed == 4 && s.running == 0);
  conc_pool_free(p);
  conc_future_unref(f[0]);
  conc_future_unref(f[1]);
  conc_future_unref(f[2]);
  conc_future_unref(f[3]);
  gate_free(&g);
}

/* Never more than max_workers threads, however many tasks wait. */
static void case_maxworkers(void) {
  conc_pool_t *p = new_pool(2);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *f[10];
  gate g;
  int i;
  gate_init(&g);
  for (i = 0; i < 10; i++)
    f[i] = submit(p, i, &c, &g);
  gate_await(&g, 2);
  stats(p, &s);
  CHECK(s.workers == 2 && s.running == 2 && s.pending == 8);
  gate_open(&g);
  for (i = 0; i < 10; i++) {
    CHECK(result_of(f[i]) == i + 1);
    conc_future_unref(f[i]);
  }
  stats(p, &s);  /* counted before the futures' waiters woke */
  CHECK(s.workers == 2 && s.completed == 10 && s.running == 0);
  conc_pool_free(p);
  gate_free(&g);
}

/* Cancelling a queued task drops it at once, on the cancelling thread,
** without a worker: it leaves 'pending' and its memory is freed. */
static void case_cancelqueued(void) {
  conc_pool_t *p = new_pool(1);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *busy, *f[100];
  gate g;
  int i;
  gate_init(&g);
  busy = submit(p, -1, &c, &g);
  gate_await(&g, 1);
  for (i = 0; i < 100; i++)
    f[i] = submit(p, i, &c, NULL);
  for (i = 0; i < 100; i += 2) {
    CHECK(conc_future_cancel(f[i]) == 1);
    CHECK(load(&c.drops) == i / 2 + 1);  /* dropped inside cancel */
  }
  stats(p, &s);
  CHECK(s.pending == 50 && s.cancelled == 50 && s.running == 1);
  CHECK(conc_future_cancel(busy) == 0);  /* running: not cancellable */
  gate_open(&g);
  CHECK(result_of(busy) == 0);
  for (i = 0; i < 100; i++) {
    if (i % 2 == 0)
      CHECK(conc_future_state(f[i]) == CONC_CANCELLED);
    else
      CHECK(result_of(f[i]) == i + 1);
    conc_future_unref(f[i]);
  }
  conc_future_unref(busy);
  conc_pool_shutdown(p, 1, 0);
  stats(p, &s);
  CHECK(s.completed == 51 && s.cancelled == 50 && s.pending == 0);
  CHECK(load(&c.runs) == 51 && load(&c.drops) == 50);
  conc_pool_free(p);
  gate_free(&g);
}

/* A task whose future is already cancelled is accepted and dropped. */
static void case_precancelled(void) {
  conc_pool_t *p = new_pool(1);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *f;
  ttask *tt = new_task(1, &c, NULL, &f);
  CHECK(conc_future_cancel(f) == 1);
  CHECK(conc_pool_submit(p, &tt->base) == 0);
  CHECK(load(&c.drops) == 1 && load(&c.runs) == 0);
  stats(p, &s);
  CHECK(s.cancelled == 1 && s.pending == 0 && s.workers == 0);
  conc_future_unref(f);
  conc_pool_free(p);
}

/* A task that raises counts as failed; the worker keeps going. */
static void case_failed(void) {
  conc_pool_t *p = new_pool(1);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *f, *g;
  const void *data;
  size_t len;
  int failed;
  ttask *tt = new_task(1, &c, NULL, &f);
  tt->base.run = t_run_fail;
  CHECK(conc_pool_submit(p, &tt->base) == 0);
  CHECK(conc_future_wait(f, conc_deadline(60)) == 0);
  CHECK(conc_future_payload(f, &data, &len, &failed) == 0 && failed);
  g = submit(p, 5, &c, NULL);
  CHECK(result_of(g) == 6);
  conc_pool_shutdown(p, 1, 0);
  stats(p, &s);
  CHECK(s.failed == 1 && s.completed == 1 && s.workers == 0);
  conc_future_unref(f);
  conc_future_unref(g);
  conc_pool_free(p);
}

/* shutdown(wait) runs every queued task first, then joins. */
static void case_shutdownwait(void) {
  conc_pool_t *p = new_pool(2);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *f[200];
  gate g;
  int i;
  gate_init(&g);
  for (i = 0; i < 200; i++)
    f[i] = submit(p, i, &c, i < 2 ? &g : NULL);
  gate_await(&g, 2);
  gate_open(&g);
  conc_pool_shutdown(p, 1, 0);
  stats(p, &s);
  CHECK(s.workers == 0 && s.idle == 0 && s.completed == 200);
  CHECK(s.pending == 0 && s.running == 0);
  for (i = 0; i < 200; i++) {
    CHECK(conc_future_state(f[i]) == CONC_FINISHED);
    CHECK(result_of(f[i]) == i + 1);
    conc_future_unref(f[i]);
  }
  CHECK(conc_pool_shutdown(p, 1, 0) == 0);  /* idempotent */
  conc_pool_free(p);
  gate_free(&g);
}

/* shutdown(cancel) cancels what is queued; the running task finishes. */
static void case_shutdowncancel(void) {
  conc_pool_t *p = new_pool(1);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *busy, *f[100];
  gate g;
  int i;
  gate_init(&g);
  busy = submit(p, -1, &c, &g);
  gate_await(&g, 1);
  for (i = 0; i < 100; i++)
    f[i] = submit(p, i, &c, NULL);
  CHECK(conc_future_cancel(f[7]) == 1);  /* one already cancelled */
  conc_pool_shutdown(p, 0, 1);
  for (i = 0; i < 100; i++)
    CHECK(conc_future_state(f[i]) == CONC_CANCELLED);
  CHECK(load(&c.drops) == 100);
  stats(p, &s);
  CHECK(s.pending == 0 && s.cancelled == 100 && s.running == 1);
  gate_open(&g);
  conc_pool_shutdown(p, 1, 0);
  CHECK(result_of(busy) == 0);
  stats(p, &s);
  CHECK(s.workers == 0 && s.completed == 1);
  for (i = 0; i < 100; i++)
    conc_future_unref(f[i]);
  conc_future_unref(busy);
  conc_pool_free(p);
  gate_free(&g);
}

/* After shutdown, submit refuses: the task stays the caller's and its
** future is cancelled. */
static void case_aftershutdown(void) {
  conc_pool_t *p = new_pool(2);
  counters c = {0, 0, 0};
  conc_future_t *f, *g;
  ttask *tt;
  g = submit(p, 1, &c, NULL);
  conc_pool_shutdown(p, 0, 0);
  tt = new_task(1, &c, NULL, &f);
  CHECK(conc_pool_submit(p, &tt->base) == CONC_ESHUTDOWN);
  CHECK(conc_future_state(f) == CONC_CANCELLED);
  CHECK(load(&c.drops) == 0);
  conc_future_unref(f);  /* the task's reference, still ours */
  free(tt);
  CHECK(result_of(g) == 2);
  conc_future_unref(f);
  conc_future_unref(g);
  conc_pool_free(p);
}

/* worker_start failures, gated so that tasks queue up first. */
typedef struct startctl {
  gate g;
  int fail_from;  /* workers numbered from 0 fail from this one on */
  int started, stopped;  /* atomic */
} startctl;

static int ws_start(void *ud, void **ctx) {
  startctl *sc = (startctl *)ud;
  int n = __atomic_fetch_add(&sc->started, 1, __ATOMIC_RELAXED);
  if (n >= sc->fail_from) {
    gate_pass(&sc->g);
    return CONC_EBROKEN;
  }
  *ctx = sc;
  return 0;
}

static void ws_stop(void *ud, void *ctx) {
  startctl *sc = (startctl *)ud;
  CHECK(ctx == ud);
  __atomic_add_fetch(&sc->stopped, 1, __ATOMIC_RELAXED);
}

static conc_pool_t *new_startpool(startctl *sc, int max, int fail_from) {
  conc_pool_opts_t o;
  conc_pool_t *p;
  memset(&o, 0, sizeof(o));
  memset(sc, 0, sizeof(*sc));
  gate_init(&sc->g);
  sc->fail_from = fail_from;
  o.max_workers = max;
  o.worker_start = ws_start;
  o.worker_stop = ws_stop;
  o.ud = sc;
  p = conc_pool_new(&o);
  CHECK(p != NULL);
  return p;
}

/* The first worker fails to start: queued tasks fail with EBROKEN, so
** does every later submit. */
static void case_broken(void) {
  startctl sc;
  conc_pool_t *p = new_startpool(&sc, 1, 0);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *f[10], *g;
  ttask *tt;
  const void *data;
  size_t len;
  int i, failed;
  for (i = 0; i < 10; i++)
    f[i] = submit(p, i, &c, NULL);
  CHECK(conc_future_cancel(f[3]) == 1);
  gate_await(&sc.g, 1);
  gate_open(&sc.g);
  for (i = 0; i < 10; i++) {
    CHECK(conc_future_wait(f[i], conc_deadline(60)) == 0);
    if (i == 3)
      CHECK(conc_future_state(f[i]) == CONC_CANCELLED);
    else
      CHECK(conc_future_payload(f[i], &data, &len, &failed) == 0 && failed);
    conc_future_unref(f[i]);
  }
  AWAIT_STAT(p, workers, 0);
  CHECK(load(&c.broken) == 9 && load(&c.drops) == 1 && load(&c.runs) == 0);
  tt = new_task(1, &c, NULL, &g);
  CHECK(conc_pool_submit(p, &tt->base) == CONC_EBROKEN);
  conc_future_unref(g);
  free(tt);
  conc_future_unref(g);
  conc_pool_shutdown(p, 1, 0);
  stats(p, &s);
  CHECK(s.failed == 9 && s.cancelled == 1 && s.pending == 0);
  CHECK(sc.stopped == 0);  /* a worker that never started does not stop */
  conc_pool_free(p);
  gate_free(&sc.g);
}

/* The second worker fails: the first one's running task completes, the
** queued ones fail, the healthy worker exits and stops. */
static void case_brokenlater(void) {
  startctl sc;
  conc_pool_t *p = new_startpool(&sc, 2, 1);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *busy, *f[5];
  gate g;
  int i;
  gate_init(&g);
  busy = submit(p, -1, &c, &g);
  gate_await(&g, 1);
  for (i = 0; i < 5; i++)  /* the first starts worker 2, which fails */
    f[i] = submit(p, i, &c, NULL);
  gate_await(&sc.g, 1);
  gate_open(&sc.g);
  for (i = 0; i < 5; i++) {
    CHECK(conc_future_wait(f[i], conc_deadline(60)) == 0);
    conc_future_unref(f[i]);
  }
  CHECK(load(&c.broken) == 5);
  gate_open(&g);
  CHECK(result_of(busy) == 0);
  conc_future_unref(busy);
  AWAIT_STAT(p, workers, 0);
  CHECK(__atomic_load_n(&sc.stopped, __ATOMIC_RELAXED) == 1);
  stats(p, &s);
  CHECK(s.completed == 1 && s.failed == 5);
  conc_pool_free(p);
  gate_free(&g);
  gate_free(&sc.g);
}

/* shutdown(0) returns at once while a task runs on; free then waits. */
static void case_nowait(void) {
  conc_pool_t *p = new_pool(1);
  counters c = {0, 0, 0};
  conc_future_t *f;
  double t0;
  gate g;
  gate_init(&g);
  f = submit(p, 41, &c, &g);
  gate_await(&g, 1);
  t0 = conc_now();
  conc_pool_shutdown(p, 0, 0);
  conc_pool_shutdown(p, 0, 1);
  CHECK(conc_now() - t0 < 0.5);
  CHECK(conc_future_state(f) == CONC_RUNNING);
  gate_open(&g);
  conc_pool_free(p);  /* joins the worker */
  CHECK(result_of(f) == 42);
  conc_future_unref(f);
  gate_free(&g);
}

/* A worker that cannot be created: the task is refused with ESYS when
** no worker runs. */
static void case_esys(void) {
  conc_pool_opts_t o;
  conc_pool_t *p;
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  conc_future_t *f;
  ttask *tt;
  memset(&o, 0, sizeof(o));
  o.max_workers = 2;
  o.stack_size = (size_t)1 << 46;  /* 64 TiB: no mmap will give it */
  p = conc_pool_new(&o);
  CHECK(p != NULL);
  tt = new_task(1, &c, NULL, &f);
  CHECK(conc_pool_submit(p, &tt->base) == CONC_ESYS);
  stats(p, &s);
  CHECK(s.workers == 0 && s.pending == 0);
  conc_future_unref(f);
  free(tt);
  conc_future_unref(f);
  conc_pool_free(p);
}

/* Threads are named "<prefix>_<n>", the prefix cut to fit 15 bytes. */
static void case_names(void) {
  static const char *const prefixes[2] = {"pooltest", "averyveryverylongprefix"};
  static const char *const want[2] = {"pooltest_0", "averyveryvery_0"};
  int k;
  for (k = 0; k < 2; k++) {
    conc_pool_opts_t o;
    conc_pool_t *p;
    counters c = {0, 0, 0};
    conc_future_t *f;
    char *name = NULL;
    ttask *tt;
    memset(&o, 0, sizeof(o));
    o.max_workers = 1;
    o.name_prefix = prefixes[k];
    p = conc_pool_new(&o);
    CHECK(p != NULL);
    tt = new_task(1, &c, NULL, &f);
    tt->name_out = &name;
    CHECK(conc_pool_submit(p, &tt->base) == 0);
    CHECK(result_of(f) == 2);
    CHECK(name != NULL && strcmp(name, want[k]) == 0);
    free(name);
    conc_future_unref(f);
    conc_pool_free(p);
  }
}

/* Every started worker gets worker_stop with its context, on exit. */
static void case_stopctx(void) {
  startctl sc;
  conc_pool_t *p = new_startpool(&sc, 3, 1000);
  counters c = {0, 0, 0};
  conc_future_t *f[3];
  gate g;
  int i;
  gate_init(&g);
  for (i = 0; i < 3; i++)
    f[i] = submit(p, i, &c, &g);
  gate_await(&g, 3);
  gate_open(&g);
  conc_pool_shutdown(p, 1, 0);
  CHECK(sc.started == 3 && sc.stopped == 3);
  for (i = 0; i < 3; i++) {
    CHECK(result_of(f[i]) == i + 1);
    conc_future_unref(f[i]);
  }
  conc_pool_free(p);
  gate_free(&g);
  gate_free(&sc.g);
}

/* What a worker thread sees of itself, for 'threadattrs'. */
typedef struct probe {
  conc_task_t base;
  size_t stack;     /* its stack size */
  int sigint;       /* SIGINT is blocked */
  int sigsegv;      /* SIGSEGV is blocked */
} probe;

static void probe_run(conc_task_t *t, void *ctx) {
  probe *pr = (probe *)t;
  pthread_attr_t attr;
  sigset_t mask;
  (void)ctx;
  CHECK(pthread_getattr_np(pthread_self(), &attr) == 0);
  CHECK(pthread_attr_getstacksize(&attr, &pr->stack) == 0);
  pthread_attr_destroy(&attr);
  CHECK(pthread_sigmask(SIG_BLOCK, NULL, &mask) == 0);
  pr->sigint = sigismember(&mask, SIGINT);
  pr->sigsegv = sigismember(&mask, SIGSEGV);
  CHECK(conc_future_set_result(t->future, NULL, 0, NULL) == 0);
}

/* Run a probe on a fresh pool with 'stack_size'. */
static void run_probe(size_t stack_size, probe *pr) {
  conc_pool_opts_t o;
  conc_pool_t *p;
  conc_future_t *f = conc_future_new();
  CHECK(f != NULL);
  memset(&o, 0, sizeof(o));
  o.max_workers = 1;
  o.stack_size = stack_size;
  p = conc_pool_new(&o);
  CHECK(p != NULL);
  memset(pr, 0, sizeof(*pr));
  pr->base.future = f;
  pr->base.run = probe_run;
  pr->base.drop = t_drop;
  conc_future_ref(f);
  CHECK(conc_pool_submit(p, &pr->base) == 0);
  CHECK(conc_future_wait(f, conc_deadline(60)) == 0);
  conc_future_unref(f);
  conc_pool_free(p);
}

/* Workers get the requested stack (at least 1 MiB by default) and run
** with asynchronous signals blocked, synchronous ones deliverable. */
static void case_threadattrs(void) {
  probe pr;
  run_probe(0, &pr);
  CHECK(pr.stack >= (size_t)1024 * 1024);
  CHECK(pr.sigint == 1 && pr.sigsegv == 0);
  run_probe((size_t)8 * 1024 * 1024 + 1, &pr);  /* rounded up to pages */
  CHECK(pr.stack > (size_t)8 * 1024 * 1024);
  run_probe(1, &pr);  /* raised to the system's minimum */
  CHECK(pr.stack >= (size_t)PTHREAD_STACK_MIN);
}

/* Stress: submitters race with cancellers and with the workers. */
#define STRESS_THREADS 4
#define STRESS_TASKS 10000

typedef struct stressor {
  pthread_t tid;
  conc_pool_t *p;
  counters *c;
  conc_future_t **fs;
  char *cancelled;   /* the submitter's cancel returned 1 */
  long base;
} stressor;

static void *stress_submit(void *arg) {
  stressor *st = (stressor *)arg;
  long i;
  for (i = 0; i < STRESS_TASKS; i++) {
    conc_future_t *f = submit(st->p, st->base + i, st->c, NULL);
    __atomic_store_n(&st->fs[i], f, __ATOMIC_RELEASE);
    if (i % 3 == 0)
      st->cancelled[i] = (char)conc_future_cancel(f);
  }
  return NULL;
}

/* Cancel other submitters' futures as they appear. */
static void *stress_cancel(void *arg) {
  stressor *sts = (stressor *)arg;
  long i;
  int k;
  for (i = 0; i < STRESS_TASKS; i++)
    for (k = 0; k < STRESS_THREADS; k++) {
      conc_future_t *f;
      while ((f = __atomic_load_n(&sts[k].fs[i], __ATOMIC_ACQUIRE)) == NULL)
        sched_yield();
      if (i % 5 == 1)
        conc_future_cancel(f);
    }
  return NULL;
}

static void case_stress(void) {
  conc_pool_t *p = new_pool(4);
  counters c = {0, 0, 0};
  conc_pool_stats_t s;
  stressor st[STRESS_THREADS];
  pthread_t canceller;
  long done = 0, cancelled = 0;
  int k;
  for (k = 0; k < STRESS_THREADS; k++) {
    st[k].p = p;
    st[k].c = &c;
    st[k].base = (long)k * STRESS_TASKS;
    st[k].fs = (conc_future_t **)calloc(STRESS_TASKS, sizeof(conc_future_t *));
    st[k].cancelled = (char *)calloc(STRESS_TASKS, 1);
    CHECK(st[k].fs != NULL && st[k].cancelled != NULL);
  }
  CHECK(pthread_create(&canceller, NULL, stress_cancel, st) == 0);
  for (k = 0; k < STRESS_THREADS; k++)
    CHECK(pthread_create(&st[k].tid, NULL, stress_submit, &st[k]) == 0);
  for (k = 0; k < STRESS_THREADS; k++)
    CHECK(pthread_join(st[k].tid, NULL) == 0);
  CHECK(pthread_join(canceller, NULL) == 0);
  conc_pool_shutdown(p, 1, 0);
  for (k = 0; k < STRESS_THREADS; k++) {
    long i;
    for (i = 0; i < STRESS_TASKS; i++) {
      conc_future_t *f = st[k].fs[i];
      if (conc_future_state(f) == CONC_CANCELLED)
        cancelled++;
      else {
        CHECK(result_of(f) == st[k].base + i + 1);
        done++;
      }
      CHECK(!st[k].cancelled[i] || conc_future_state(f) == CONC_CANCELLED);
      conc_future_unref(f);
    }
    free(st[k].fs);
    free(st[k].cancelled);
  }
  stats(p, &s);
  CHECK(done + cancelled == (long)STRESS_THREADS * STRESS_TASKS);
  CHECK(load(&c.runs) == done && load(&c.drops) == cancelled);
  CHECK(s.completed == done && s.cancelled == cancelled);
  CHECK(s.pending == 0 && s.running == 0 && s.workers == 0);
  conc_pool_free(p);
}

/* A callback that lets go of the reference it was given (its future's
** last, in the cases below), then one that checks the future is still
** whole and counts its calls. */
static void cb_release(conc_future_t *f, void *arg) {
  (void)arg;
  conc_future_unref(f);
}

static void cb_count(conc_future_t *f, void *arg) {
  CHECK(conc_future_done(f));
  __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST);
}

/* A callback may release the last reference to its future, whichever
** completion runs it (set_result, cancel, a pool's task), and the
** callbacks after it still see the future. */
static void case_cbrelease(void) {
  conc_pool_t *p = new_pool(1);
  counters c = {0, 0, 0};
  conc_future_t *f;
  int calls = 0, i;
  ttask *tt;
  alarm(30);  /* it hung (a lock in the freed future) */
  for (i = 0; i < 100; i++) {
    CHECK((f = conc_future_new()) != NULL);
    CHECK(conc_future_add_callback(f, cb_release, NULL) == 0);
    CHECK(conc_future_add_callback(f, cb_count, &calls) == 0);
    if (i % 2 == 0)
      CHECK(conc_future_set_result(f, NULL, 0, NULL) == 0);
    else
      CHECK(conc_future_cancel(f) == 1);
  }
  CHECK(calls == 100);
  for (i = 0; i < 100; i++) {  /* on the worker, the pool's hook first */
    tt = new_task(i, &c, NULL, &f);
    CHECK(conc_future_add_callback(f, cb_release, NULL) == 0);
    CHECK(conc_future_add_callback(f, cb_count, &calls) == 0);
    CHECK(conc_pool_submit(p, &tt->base) == 0);
  }
  conc_pool_shutdown(p, 1, 0);
  CHECK(calls == 200 && load(&c.runs) == 100);
  conc_pool_free(p);
}

/* What a callback saw of its own future's waits. */
typedef struct cbwaits {
  int wait, timed, watch;  /* returns of the waits */
  conc_future_t *outer, *inner;  /* the inner one is completed inside
                                 ** the outer one's callback */
  conc_mailbox_t *mb;
} cbwaits;

static void cb_waitself(conc_future_t *f, void *arg) {
  cbwaits *w = (cbwaits *)arg;
  conc_watch_t *ws = conc_watch_new(w->mb);
  uintptr_t tag = 0;
  CHECK(ws != NULL);
  w->wait = conc_future_wait(f, CONC_FOREVER);
  w->timed = conc_future_wait(f, conc_deadline(30));
  CHECK(conc_watch_add(ws, f, 7) == 0);
  w->watch = conc_watch_wait(ws, CONC_FOREVER, 0);
  CHECK(conc_watch_take(ws, &tag) == 1 && tag == 7);
  conc_watch_free(ws);
}

/* The outer future's callback completes 'inner', whose callback waits
** on the outer one: the thread runs both futures' callbacks. */
static void cb_completeinner(conc_future_t *f, void *arg) {
  cbwaits *w = (cbwaits *)arg;
  (void)f;
  CHECK(conc_future_set_result(w->inner, NULL, 0, NULL) == 0);
}

static void cb_waitouter(conc_future_t *f, void *arg) {
  cbwaits *w = (cbwaits *)arg;
  (void)f;
  w->wait = conc_future_wait(w->outer, CONC_FOREVER);
}

/* A future's callback that waits on that future (conc_future_wait, with
** or without a deadline, or a watch set) returns at once: the future
** is done. So does one of a future its callback completed. */
static void case_cbwait(void) {
  cbwaits w;
  conc_future_t *f = conc_future_new();
  alarm(30);  /* it hung: the wait waited for its own callback */
  memset(&w, 0, sizeof(w));
  w.wait = w.timed = w.watch = 99;
  w.mb = conc_mailbox_new();
  CHECK(f != NULL && w.mb != NULL);
  CHECK(conc_future_add_callback(f, cb_waitself, &w) == 0);
  CHECK(conc_future_set_result(f, NULL, 0, NULL) == 0);
  CHECK(w.wait == 0 && w.timed == 0 && w.watch == 0);
  CHECK(conc_future_wait(f, CONC_FOREVER) == 0);
  conc_mailbox_unref(w.mb);
  conc_future_unref(f);
  /* nested: the outer's callback completes the inner, whose callback
  ** waits on the outer */
  memset(&w, 0, sizeof(w));
  w.wait = 99;
  CHECK((w.outer = conc_future_new()) != NULL);
  CHECK((w.inner = conc_future_new()) != NULL);
  CHECK(conc_future_add_callback(w.inner, cb_waitouter, &w) == 0);
  CHECK(conc_future_add_callback(w.outer, cb_completeinner, &w) == 0);
  CHECK(conc_future_cancel(w.outer) == 1);
  CHECK(w.wait == 0);
  conc_future_unref(w.inner);
  conc_future_unref(w.outer);
}

/* A task that shuts its own pool down: with 'wait' it is refused (the
** worker would join itself), without it goes through. */
typedef struct selftask {
  conc_task_t base;
  conc_pool_t *p;
  int waited, nowait;  /* what the two shutdowns returned */
} selftask;

static void self_run(conc_task_t *t, void *ctx) {
  selftask *st = (selftask *)t;
  (void)ctx;
  st->waited = conc_pool_shutdown(st->p, 1, 0);
  st->nowait = conc_pool_shutdown(st->p, 0, 0);
  CHECK(conc_future_set_result(t->future, NULL, 0, NULL) == 0);
}

/* An executor's runtime for the cases below: 'ud' is the executor's
** slot, so a task can reach its own executor. */
typedef struct xslot {
  conc_executor_t *ex;
  int shut;  /* what a shutdown(wait) from inside returned */
} xslot;

static int x_start(void *ud, int id, void **ctx, char **why) {
  (void)id; (void)why;
  *ctx = ud;
  return 0;
}

static void x_stop(void *ud, void *ctx) {
  (void)ud; (void)ctx;
}

static conc_payload_t *x_runshut(void *ctx, const conc_payload_t *task,
                                 conc_taskctl_t *ctl, int *failed) {
  xslot *x = (xslot *)ctx;
  (void)task; (void)ctl;
  x->shut = x->ex->ops->shutdown(x->ex, 1, 0);
  *failed = 0;
  return conc_payload_new(NULL, 0, 0);
}

static conc_payload_t *x_runnothing(void *ctx, const conc_payload_t *task,
                                    conc_taskctl_t *ctl, int *failed) {
  (void)ctx; (void)task; (void)ctl;
  *failed = 0;
  return conc_payload_new(NULL, 0, 0);
}

static void x_options(conc_executor_opts_t *o, int workers, xslot *x,
                      conc_payload_t *(*run)(void *, const conc_payload_t *,
                                             conc_taskctl_t *, int *)) {
  memset(o, 0, sizeof(*o));
  o->max_workers = workers;
  o->runtime.start = x_start;
  o->runtime.stop = x_stop;
  o->runtime.run = run;
  o->runtime.ud = x;
}

/* A process pool's C callbacks run on its supervisor thread. */
static void cb_shutdown(conc_future_t *f, void *arg) {
  xslot *x = (xslot *)arg;
  (void)f;
  x->shut = x->ex->ops->shutdown(x->ex, 1, 0);
}

/* A shutdown with 'wait' from one of the pool's or executor's own
** threads is refused with CONC_EINVAL (it joined itself: a hang). */
static void case_shutdownself(void) {
  selftask st;
  conc_executor_opts_t o;
  conc_future_t *f;
  xslot x;
  alarm(30);
  memset(&st, 0, sizeof(st));
  st.p = new_pool(1);
  st.waited = st.nowait = 99;
  CHECK((st.base.future = f = conc_future_new()) != NULL);
  conc_future_ref(f);
  st.base.run = self_run;
  st.base.drop = t_drop;
  CHECK(conc_pool_submit(st.p, &st.base) == 0);
  CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
  CHECK(st.waited == CONC_EINVAL && st.nowait == 0);
  conc_future_unref(f);
  conc_pool_free(st.p);  /* joins the worker */
  /* a thread pool executor's task */
  x.shut = 99;
  x_options(&o, 1, &x, x_runshut);
  CHECK((x.ex = conc_threadexec_new(&o)) != NULL);
  CHECK((f = conc_future_new()) != NULL);
  CHECK(x.ex->ops->submit(x.ex, f, conc_payload_new(NULL, 0, 0), 0) == 0);
  CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
  CHECK(x.shut == CONC_EINVAL);
  conc_future_unref(f);
  x.ex->ops->free(x.ex);
  /* a process pool's callback, on its supervisor */
  x.shut = 99;
  x_options(&o, 1, &x, x_runnothing);
  CHECK((x.ex = conc_procexec_new(&o)) != NULL);
  CHECK((f = conc_future_new()) != NULL);
  CHECK(conc_future_add_callback(f, cb_shutdown, &x) == 0);
  CHECK(x.ex->ops->submit(x.ex, f, conc_payload_new(NULL, 0, 0), 0) == 0);
  CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
  CHECK(x.shut == CONC_EINVAL);
  conc_future_unref(f);
  x.ex->ops->free(x.ex);
}

/* max_workers past CONC_MAX_WORKERS (or not positive) is refused at
** once with EINVAL, by the pool and by both executors: such a pool
** started a thread per queued task until the system refused. */
static void case_maxbound(void) {
  static const int bad[] = {0, -1, CONC_MAX_WORKERS + 1, INT_MAX};
  conc_pool_opts_t po;
  conc_executor_opts_t o;
  conc_pool_t *p;
  conc_executor_t *ex;
  xslot x;
  size_t i;
  memset(&po, 0, sizeof(po));
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    po.max_workers = bad[i];
    errno = 0;
    CHECK(conc_pool_new(&po) == NULL && errno == EINVAL);
    x_options(&o, bad[i], &x, x_runnothing);
    errno = 0;
    CHECK(conc_threadexec_new(&o) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(conc_procexec_new(&o) == NULL && errno == EINVAL);
  }
  errno = 0;
  CHECK(conc_pool_new(NULL) == NULL && errno == EINVAL);
  CHECK(conc_threadexec_new(NULL) == NULL && errno == EINVAL);
  CHECK(conc_procexec_new(NULL) == NULL && errno == EINVAL);
  po.max_workers = CONC_MAX_WORKERS;  /* the most: workers start lazily */
  CHECK((p = conc_pool_new(&po)) != NULL);
  conc_pool_free(p);
  x_options(&o, CONC_MAX_WORKERS, &x, x_runnothing);
  CHECK((ex = conc_threadexec_new(&o)) != NULL);
  ex->ops->free(ex);
  CHECK((ex = conc_procexec_new(&o)) != NULL);
  ex->ops->free(ex);
}

/* A task that runs until it is asked to stop, read at its own checks
** (a runtime without 'interrupt'). */
static conc_payload_t *x_runspin(void *ctx, const conc_payload_t *task,
                                 conc_taskctl_t *ctl, int *failed) {
  (void)ctx; (void)task;
  while (__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) == CONC_STOP_NONE)
    sleep_ms(1);
  *failed = 1;
  return conc_payload_error("", "stopped");
}

/* An executor whose runtime has 'run' only: tasks run, a time limit and
** a running cancel stop them, stats count no memory, free stops the
** workers (the NULL hooks were called: a crash). */
static void nullhooks(conc_executor_t *(*make)(const conc_executor_opts_t *)) {
  conc_executor_opts_t o;
  conc_executor_t *ex;
  conc_pool_stats_t s;
  conc_future_t *f, *g;
  xslot x;
  x_options(&o, 2, &x, x_runspin);
  o.runtime.start = NULL;
  o.runtime.stop = NULL;
  o.runtime.ud = NULL;
  CHECK((ex = make(&o)) != NULL);
  CHECK((f = conc_future_new()) != NULL && (g = conc_future_new()) != NULL);
  CHECK(ex->ops->submit(ex, f, conc_payload_new(NULL, 0, 0), 0.05) == 0);
  CHECK(ex->ops->submit(ex, g, conc_payload_new(NULL, 0, 0), 0) == 0);
  CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
  CHECK(conc_future_state(f) == CONC_FINISHED);
  while (conc_future_state(g) != CONC_RUNNING)
    sleep_ms(1);
  ex->ops->stats(ex, &s);
  CHECK(s.memory == 0);
  CHECK(conc_future_cancel_running(g) == 1);
  CHECK(conc_future_wait(g, conc_deadline(30)) == 0);
  CHECK(conc_future_state(g) == CONC_CANCELLED);
  ex->ops->free(ex);
  conc_future_unref(f);
  conc_future_unref(g);
  o.runtime.run = NULL;  /* the one hook it needs */
  errno = 0;
  CHECK(make(&o) == NULL && errno == EINVAL);
}

static void case_nullhooks(void) {
  alarm(60);
  nullhooks(conc_threadexec_new);
  nullhooks(conc_procexec_new);
}

/* A runtime whose start fails with the code in '*ud' and no reason. */
static int x_startfail(void *ud, int id, void **ctx, char **why) {
  (void)id; (void)ctx; (void)why;
  return *(int *)ud;
}

/* Submit a fresh future with a callback to 'ex', which refuses it with
** 'want': the future is cancelled, its callback ran, nothing stays with
** the executor. Returns whether all of that held (so that a forked
** child can report it through its exit status). */
static int refusedcancels(conc_executor_t *ex, int want) {
  conc_future_t *f = conc_future_new();
  conc_payload_t *t = conc_payload_new(NULL, 0, 0);
  int calls = 0, r, ok;
  if (f == NULL || t == NULL)
    return 0;
  if (conc_future_add_callback(f, cb_count, &calls) != 0)
    return 0;
  r = ex->ops->submit(ex, f, t, 0);
  ok = r == want && conc_future_state(f) == CONC_CANCELLED
       && __atomic_load_n(&calls, __ATOMIC_SEQ_CST) == 1;
  if (r != 0)
    conc_payload_free(t);
  conc_future_unref(f);
  return ok;
}

/* The message of the error that fails 'f', a CONC_PAYLOAD_ERROR
** ("<class>\0<message>", not terminated), in 'buf'. */
static const char *errmsg(conc_future_t *f, char *buf, size_t n) {
  const void *data;
  size_t len, lc;
  int failed;
  const conc_payload_t *p;
  CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
  CHECK(conc_future_payload(f, &data, &len, &failed) == 0 && failed);
  p = (const conc_payload_t *)data;
  CHECK(p != NULL && p->kind == CONC_PAYLOAD_ERROR);
  lc = strnlen(conc_payload_data(p), p->size);
  CHECK(lc < p->size && p->size - lc - 1 < n);
  memcpy(buf, conc_payload_data(p) + lc + 1, p->size - lc - 1);
  buf[p->size - lc - 1] = '\0';
  return buf;
}

/* A runtime's start that fails without a reason: the pool's error says
** that it did, with its code (it was empty in a process pool, "the pool
** is broken" in a thread pool). */
static void startfail(conc_executor_t *(*make)(const conc_executor_opts_t *),
                      int code, const char *want) {
  conc_executor_opts_t o;
  conc_executor_t *ex;
  conc_future_t *f;
  char *why, msg[256];
  xslot x;
  x_options(&o, 1, &x, x_runnothing);
  o.runtime.start = x_startfail;
  o.runtime.ud = &code;
  CHECK((ex = make(&o)) != NULL && (f = conc_future_new()) != NULL);
  CHECK(ex->ops->submit(ex, f, conc_payload_new(NULL, 0, 0), 0) == 0);
  if (strcmp(errmsg(f, msg, sizeof(msg)), want) != 0) {
    fprintf(stderr, "got '%s', want '%s'\n", msg, want);
    CHECK(0);
  }
  CHECK((why = ex->ops->broken(ex)) != NULL && strcmp(why, want) == 0);
  free(why);
  CHECK(refusedcancels(ex, CONC_EBROKEN));  /* later submits */
  ex->ops->free(ex);
  conc_future_unref(f);
}

static void case_startwhy(void) {
  int k;
  alarm(60);
  for (k = 0; k < 2; k++) {
    conc_executor_t *(*make)(const conc_executor_opts_t *) =
        k == 0 ? conc_threadexec_new : conc_procexec_new;
    startfail(make, CONC_EBROKEN, "initializer failed: its runtime's start "
              "returned -6 (the pool is broken)");
    /* a process pool's worker that could not start is a process */
    startfail(make, CONC_ENOMEM, k == 0
              ? "cannot start a worker: its runtime's start returned -4 "
                "(not enough memory)"
              : "cannot start a worker process: its runtime's start "
                "returned -4 (not enough memory)");
    startfail(make, 42, k == 0
              ? "cannot start a worker: its runtime's start returned 42 "
                "(unknown error)"
              : "cannot start a worker process: its runtime's start "
                "returned 42 (unknown error)");
  }
}

/* A task that takes a while: every worker is asked for. */
static conc_payload_t *x_runslow(void *ctx, const conc_payload_t *task,
                                 conc_taskctl_t *ctl, int *failed) {
  (void)ctx; (void)task; (void)ctl;
  sleep_ms(20);
  *failed = 0;
  return conc_payload_new(NULL, 0, 0);
}

/* Starts made by x_startfail1, counted across the children of a
** process pool (a shared mapping made before the pool). */
static long *startcount;

/* Every worker's start but the first runs out of resources. */
static int x_startfail1(void *ud, int id, void **ctx, char **why) {
  (void)ud; (void)why;
  *ctx = NULL;
  __atomic_add_fetch(startcount, 1, __ATOMIC_RELAXED);
  return id >= 2 ? CONC_ENOMEM : 0;
}

/* A worker whose start runs out of resources breaks the pool only when
** no other worker is left (the runtime's contract): the others take the
** tasks (a process pool broke at once, failing every task), and a start
** that failed is tried again only at the next submit, as a thread
** pool's (a process pool then forked one child after another for as
** long as its tasks waited). */
static void case_startsome(void) {
  int k, i;
  alarm(60);
  startcount = (long *)mmap(NULL, sizeof(long), PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(startcount != MAP_FAILED);
  for (k = 0; k < 2; k++) {
    conc_executor_t *(*make)(const conc_executor_opts_t *) =
        k == 0 ? conc_threadexec_new : conc_procexec_new;
    conc_executor_opts_t o;
    conc_executor_t *ex;
    conc_future_t *f[6];
    const void *data;
    size_t len;
    int failed;
    char *why;
    xslot x;
    *startcount = 0;
    x_options(&o, 3, &x, x_runslow);
    o.runtime.start = x_startfail1;
    CHECK((ex = make(&o)) != NULL);
    for (i = 0; i < 6; i++) {
      CHECK((f[i] = conc_future_new()) != NULL);
      CHECK(ex->ops->submit(ex, f[i], conc_payload_new(NULL, 0, 0), 0) == 0);
    }
    for (i = 0; i < 6; i++) {
      CHECK(conc_future_wait(f[i], conc_deadline(30)) == 0);
      CHECK(conc_future_payload(f[i], &data, &len, &failed) == 0);
      if (failed) {
        char msg[256];
        fprintf(stderr, "%s: task %d: %s\n", ex->ops->name, i,
                errmsg(f[i], msg, sizeof(msg)));
        CHECK(0);
      }
      conc_future_unref(f[i]);
    }
    why = ex->ops->broken(ex);
    CHECK(why == NULL);
    if (*startcount > 6) {  /* at most 3 workers, each tried once or twice */
      fprintf(stderr, "%s: %ld starts\n", ex->ops->name, *startcount);
      CHECK(0);
    }
    ex->ops->free(ex);
  }
  munmap(startcount, sizeof(long));
}

/* A runtime that cannot make even an error, and says it succeeded. */
static conc_payload_t *x_runnull(void *ctx, const conc_payload_t *task,
                                 conc_taskctl_t *ctl, int *failed) {
  (void)ctx; (void)task; (void)ctl;
  *failed = 0;
  return NULL;
}

/* A runtime's run that returns NULL (no outcome: not even an error
** could be made) fails its task, whatever it left in '*failed': a
** thread pool's future finished as a success without values, a process
** pool's failed. */
static void case_nullrun(void) {
  int k;
  alarm(60);
  for (k = 0; k < 2; k++) {
    conc_executor_opts_t o;
    conc_executor_t *ex;
    conc_future_t *f;
    const void *data;
    size_t len;
    int failed = 0;
    xslot x;
    x_options(&o, 1, &x, x_runnull);
    CHECK((ex = (k == 0 ? conc_threadexec_new : conc_procexec_new)(&o))
          != NULL);
    CHECK((f = conc_future_new()) != NULL);
    CHECK(ex->ops->submit(ex, f, conc_payload_new(NULL, 0, 0), 0) == 0);
    CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
    CHECK(conc_future_payload(f, &data, &len, &failed) == 0);
    if (!failed)
      fprintf(stderr, "%s: a success without values\n", ex->ops->name);
    CHECK(failed);
    conc_future_unref(f);
    ex->ops->free(ex);
  }
}

/* A task of one byte is stuck where its stop was raised and no stop
** reaches: once asked to stop it stamps 'ctl->raised', as the Lua
** runtime's hook does, and never returns. Others return at once. */
static conc_payload_t *x_runstuck(void *ctx, const conc_payload_t *task,
                                  conc_taskctl_t *ctl, int *failed) {
  double now;
  (void)ctx;
  *failed = 0;
  if (task->size == 0)
    return conc_payload_new(NULL, 0, 0);
  while (__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) == CONC_STOP_NONE)
    sleep_ms(1);
  now = conc_now();
  __atomic_store(&ctl->raised, &now, __ATOMIC_RELEASE);
  for (;;)
    sleep_ms(100);
}

/* The runtime's outcome of a stopped task: its own message. */
static conc_payload_t *x_stopped(void *ctx, const conc_taskctl_t *ctl) {
  char msg[64];
  (void)ctx;
  if (__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE) != CONC_STOP_TIMEOUT)
    return NULL;
  snprintf(msg, sizeof(msg), "runtime's stop after %g s", ctl->timeout);
  return conc_payload_error("TimeoutError", msg);
}

/* A process pool's child ends a task stuck where no stop reaches with
** the runtime's outcome of a stopped task ('stopped'): the supervisor
** made a message of its own. A task held ahead runs on another child,
** a running cancel still cancels, and the pool does not break. */
static void case_stuck(void) {
  conc_executor_opts_t o;
  conc_executor_t *ex;
  conc_pool_stats_t s;
  conc_future_t *f, *g, *h;
  char msg[64];
  xslot x;
  alarm(60);
  x_options(&o, 1, &x, x_runstuck);
  o.runtime.stopped = x_stopped;
  CHECK((ex = conc_procexec_new(&o)) != NULL);
  CHECK((f = conc_future_new()) != NULL && (g = conc_future_new()) != NULL);
  CHECK(ex->ops->submit(ex, f, conc_payload_new("s", 1, 0), 0.05) == 0);
  CHECK(ex->ops->submit(ex, g, conc_payload_new(NULL, 0, 0), 0) == 0);
  if (strcmp(errmsg(f, msg, sizeof(msg)), "runtime's stop after 0.05 s")) {
    fprintf(stderr, "got '%s'\n", msg);
    CHECK(0);
  }
  CHECK(conc_future_wait(g, conc_deadline(30)) == 0);
  CHECK(conc_future_state(g) == CONC_FINISHED);
  CHECK((h = conc_future_new()) != NULL);
  CHECK(ex->ops->submit(ex, h, conc_payload_new("s", 1, 0), 0) == 0);
  while (conc_future_state(h) != CONC_RUNNING)
    sleep_ms(1);
  CHECK(conc_future_cancel_running(h) == 1);
  CHECK(conc_future_wait(h, conc_deadline(30)) == 0);
  CHECK(conc_future_state(h) == CONC_CANCELLED);
  CHECK(ex->ops->broken(ex) == NULL);
  ex->ops->stats(ex, &s);
  CHECK(s.completed == 1 && s.failed == 1 && s.cancelled == 1
        && s.running == 0);
  ex->ops->free(ex);
  conc_future_unref(f);
  conc_future_unref(g);
  conc_future_unref(h);
}

/* A callback that submits a task to its executor, shut down by then:
** refused, the task still the callback's. */
typedef struct latesub {
  conc_executor_t *ex;
  int r;
  conc_state_t state;
} latesub;

static void cb_latesubmit(conc_future_t *f, void *arg) {
  latesub *ls = (latesub *)arg;
  conc_future_t *g = conc_future_new();
  conc_payload_t *t = conc_payload_new(NULL, 0, 0);
  (void)f;
  CHECK(g != NULL && t != NULL);
  ls->r = ls->ex->ops->submit(ls->ex, g, t, 0);
  ls->state = conc_future_state(g);
  if (ls->r != 0)
    conc_payload_free(t);
  conc_future_unref(g);
}

/* Every refused submit cancels its future, in both executors (a process
** pool left it pending: a host waiting for it waited for ever; so did a
** thread pool's forked copy). */
static void case_refused(void) {
  conc_executor_opts_t o;
  conc_executor_t *ex;
  conc_future_t *f;
  xslot x;
  pid_t pid;
  int k, st;
  alarm(60);
  for (k = 0; k < 2; k++) {
    conc_executor_t *(*make)(const conc_executor_opts_t *) =
        k == 0 ? conc_threadexec_new : conc_procexec_new;
    x_options(&o, 1, &x, x_runnothing);
    CHECK((ex = make(&o)) != NULL);
    /* a started executor's copy in a forked child: broken there */
    CHECK((f = conc_future_new()) != NULL);  /* its workers started */
    CHECK(ex->ops->submit(ex, f, conc_payload_new(NULL, 0, 0), 0) == 0);
    CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
    conc_future_unref(f);
    fflush(NULL);
    CHECK((pid = fork()) >= 0);
    if (pid == 0)
      _exit(refusedcancels(ex, CONC_EBROKEN) ? 0 : 1);
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* shut down */
    CHECK(ex->ops->shutdown(ex, 0, 0) == 0);
    CHECK(refusedcancels(ex, CONC_ESHUTDOWN));
    ex->ops->free(ex);
  }
}

/* Misuse a host may make of the API: refused with a code, no crash,
** hang or leak. */
static void case_misuse(void) {
  conc_executor_opts_t o;
  conc_executor_t *ex;
  conc_future_t *f, *g;
  conc_payload_t *t;
  counters c = {0, 0, 0};
  conc_pool_t *p;
  ttask *t1, *t2;
  gate gt;
  latesub ls;
  xslot x;
  const void *data;
  size_t len;
  int k;
  alarm(60);
  /* an error with a NULL class (strlen read address 0), as an empty one:
  ** the message alone; made so for a cycle conc_payload_finish refused */
  CHECK((t = conc_payload_error(NULL, "just this")) != NULL);
  CHECK(t->kind == CONC_PAYLOAD_ERROR && t->size == 10
        && memcmp(conc_payload_data(t), "\0just this", 10) == 0);
  conc_payload_free(t);
  CHECK((f = conc_future_new()) != NULL);
  CHECK((t = conc_payload_new(NULL, 0, 1)) != NULL);
  conc_payload_setfuture(t, 0, f);
  CHECK(conc_payload_finish(f, t, 0, NULL, "a cycle") == 0);
  CHECK(conc_future_payload(f, &data, &len, &k) == 0 && k == 1);
  CHECK(len == conc_payload_sizeof((const conc_payload_t *)data)
        && memcmp(conc_payload_data((const conc_payload_t *)data),
                  "\0a cycle", 8) == 0);
  conc_future_unref(f);
  /* a NULL future (a failed conc_future_new): refused, never a crash */
  conc_future_ref(NULL);
  conc_future_unref(NULL);
  CHECK(conc_future_set_running_or_notify_cancel(NULL) == CONC_EINVAL);
  CHECK(conc_future_set_result(NULL, NULL, 0, NULL) == CONC_EINVAL);
  CHECK(conc_future_set_exception(NULL, NULL, 0, NULL) == CONC_EINVAL);
  CHECK(conc_future_cancel(NULL) == CONC_EINVAL);
  CHECK(conc_future_cancel_running(NULL) == CONC_EINVAL);
  CHECK(conc_future_set_stopper(NULL, NULL, NULL) == CONC_EINVAL);
  CHECK(conc_future_stop_end(NULL) == CONC_EINVAL);
  CHECK(conc_future_wait(NULL, conc_deadline(0)) == CONC_EINVAL);
  CHECK(conc_future_payload(NULL, &data, &len, &k) == CONC_EINVAL);
  CHECK(conc_future_add_callback(NULL, cb_latesubmit, NULL) == CONC_EINVAL);
  /* and a payload's fields are each optional */
  CHECK((f = conc_future_new()) != NULL);
  CHECK(conc_future_set_result(f, NULL, 0, NULL) == 0);
  CHECK(conc_future_payload(f, NULL, NULL, NULL) == 0);
  conc_future_unref(f);
  /* a NULL callback (it was called at completion) */
  CHECK((f = conc_future_new()) != NULL);
  CHECK(conc_future_add_callback(f, NULL, NULL) == CONC_EINVAL);
  CHECK(conc_future_set_result(f, NULL, 0, NULL) == 0);
  CHECK(conc_future_add_callback(f, NULL, NULL) == CONC_EINVAL);
  conc_future_unref(f);
  /* one future for two tasks of a pool: the second is refused (it took
  ** the first one's hook, so a cancel never dropped the first and the
  ** pool never finished) */
  gate_init(&gt);
  p = new_pool(1);
  g = submit(p, 0, &c, &gt);
  gate_await(&gt, 1);
  t1 = new_task(1, &c, NULL, &f);
  t2 = (ttask *)calloc(1, sizeof(*t2));
  CHECK(t2 != NULL);
  *t2 = *t1;
  CHECK(conc_pool_submit(p, &t1->base) == 0);
  CHECK(conc_pool_submit(p, &t2->base) == CONC_ESTATE);
  free(t2);
  CHECK(conc_future_cancel(f) == 1);
  CHECK(load(&c.drops) == 1);
  gate_open(&gt);
  conc_pool_free(p);
  CHECK(load(&c.runs) == 1);
  conc_future_unref(f);
  conc_future_unref(g);
  gate_free(&gt);
  for (k = 0; k < 2; k++) {
    conc_executor_t *(*make)(const conc_executor_opts_t *) =
        k == 0 ? conc_threadexec_new : conc_procexec_new;
    x_options(&o, 1, &x, x_runnothing);
    CHECK((ex = make(&o)) != NULL);
    /* NULL future or task */
    CHECK((f = conc_future_new()) != NULL);
    CHECK((t = conc_payload_new(NULL, 0, 0)) != NULL);
    CHECK(ex->ops->submit(ex, NULL, t, 0) == CONC_EINVAL);
    CHECK(ex->ops->submit(ex, f, NULL, 0) == CONC_EINVAL);
    /* a callback that submits once its executor is shut down (on the
    ** worker or supervisor, or here if the task ended already) */
    ls.ex = ex;
    ls.r = 99;
    CHECK(ex->ops->submit(ex, f, t, 0) == 0);
    ex->ops->shutdown(ex, 0, 0);
    CHECK(conc_future_add_callback(f, cb_latesubmit, &ls) == 0);
    CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
    CHECK(ls.r == CONC_ESHUTDOWN);  /* refused: its future cancelled */
    CHECK(ls.state == CONC_CANCELLED);
    ex->ops->free(ex);
    conc_future_unref(f);
  }
}

/* }====================================================================== */


/* {======================================================================
** Benchmark: one submitter, two workers, x -> x + 1 tasks allocated by
** the host in one array (the pool never allocates per task). Counts
** submit to last result, futures made and released inside the loop.
** ======================================================================= */

typedef struct btask {
  conc_task_t base;
  long x, res;
} btask;

static void b_run(conc_task_t *t, void *ctx) {
  btask *bt = (btask *)t;
  (void)ctx;
  bt->res = bt->x + 1;
  conc_future_set_result(t->future, &bt->res, sizeof(bt->res), NULL);
}

static void b_drop(conc_task_t *t, int why) {
  (void)t;
  (void)why;
  ctest_fail(__FILE__, __LINE__, "no benchmark task is dropped");
}

static double bench(long n, int workers) {
  conc_pool_t *p = new_pool(workers);
  btask *ts = (btask *)calloc((size_t)n, sizeof(*ts));
  double t0, t;
  long i, sum = 0;
  CHECK(ts != NULL);
  t0 = conc_now();
  for (i = 0; i < n; i++) {
    ts[i].x = i;
    ts[i].base.future = conc_future_new();
    CHECK(ts[i].base.future != NULL);
    conc_future_ref(ts[i].base.future);
    ts[i].base.run = b_run;
    ts[i].base.drop = b_drop;
    CHECK(conc_pool_submit(p, &ts[i].base) == 0);
  }
  for (i = 0; i < n; i++) {
    conc_future_wait(ts[i].base.future, CONC_FOREVER);
    sum += ts[i].res;
    conc_future_unref(ts[i].base.future);
  }
  t = conc_now() - t0;
  CHECK(sum == n * (n + 1) / 2);
  conc_pool_free(p);
  free(ts);
  return (double)n / t;
}

/* Sequential round trips: submit then wait, one at a time. */
static double roundtrip(long n) {
  conc_pool_t *p = new_pool(2);
  btask bt;
  double t0;
  long i;
  t0 = conc_now();
  for (i = 0; i < n; i++) {
    memset(&bt, 0, sizeof(bt));
    bt.x = i;
    bt.base.future = conc_future_new();
    CHECK(bt.base.future != NULL);
    conc_future_ref(bt.base.future);
    bt.base.run = b_run;
    bt.base.drop = b_drop;
    CHECK(conc_pool_submit(p, &bt.base) == 0);
    conc_future_wait(bt.base.future, CONC_FOREVER);
    CHECK(bt.res == i + 1);
    conc_future_unref(bt.base.future);
  }
  t0 = (conc_now() - t0) / (double)n;
  conc_pool_free(p);
  return t0;
}

static void run_bench(long n) {
  int rep;
  for (rep = 0; rep < 3; rep++)
    printf("bench: %ld trivial tasks, 1 submitter, 2 workers: %.0f tasks/s\n",
           n, bench(n, 2));
  printf("bench: sequential submit+wait round trip: %.2f us\n",
         roundtrip(n / 10) * 1e6);
}

/* }====================================================================== */


static const ctest_case cases[] = {
  {"many1", case_many1},
  {"many2", case_many2},
  {"many8", case_many8},
  {"lazy", case_lazy},
  {"maxworkers", case_maxworkers},
  {"cancelqueued", case_cancelqueued},
  {"precancelled", case_precancelled},
  {"failed", case_failed},
  {"shutdownwait", case_shutdownwait},
  {"shutdowncancel", case_shutdowncancel},
  {"aftershutdown", case_aftershutdown},
  {"broken", case_broken},
  {"brokenlater", case_brokenlater},
  {"nowait", case_nowait},
  {"esys", case_esys},
  {"names", case_names},
  {"stopctx", case_stopctx},
  {"threadattrs", case_threadattrs},
  {"stress", case_stress},
  {"cbrelease", case_cbrelease},
  {"cbwait", case_cbwait},
  {"shutdownself", case_shutdownself},
  {"maxbound", case_maxbound},
  {"nullhooks", case_nullhooks},
  {"stuck", case_stuck},
  {"startwhy", case_startwhy},
  {"startsome", case_startsome},
  {"nullrun", case_nullrun},
  {"misuse", case_misuse},
  {"refused", case_refused},
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s list | bench [n] | all | <case>...\n", argv[0]);
    return 2;
  }
  if (strcmp(argv[1], "bench") == 0) {
    run_bench(argc > 2 ? atol(argv[2]) : 1000000L);
    return 0;
  }
  return ctest_main(argc, argv, cases, NCASES, CASE_TIMEOUT);
}
