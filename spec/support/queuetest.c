/*
** queuetest.c: the core queue (chanq.c), timer (timer.c) and block caches
** (bufcache.c, and payload.c's) driven from C alone, as a C host would.
** "queuetest <case>" runs one case and prints "ok <case>"; "queuetest
** list" names them.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "concurrent.h"
#include "ctest.h"

/* The bytes the program's blocks hold: the sanitizer's count under one,
** else malloc's. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED
#endif
#if defined(SANITIZED)
#include <sanitizer/allocator_interface.h>
static size_t heapbytes(void) {
  return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>
static size_t heapbytes(void) {
  return mallinfo2().uordblks;
}
#endif

/* A case that takes longer than this has hung. */
#define CASE_TIMEOUT 60


static int freed;  /* items released through 'freeint' (atomic) */

static void freeint(void *p) {
  __atomic_add_fetch(&freed, 1, __ATOMIC_RELAXED);
  free(p);
}

static int *newint(int v) {
  int *p = (int *)malloc(sizeof(*p));
  CHECK(p != NULL);
  *p = v;
  return p;
}

/* Take one item, which must hold 'want'. */
static void getint(conc_chanq_t *q, int want, double deadline) {
  void *data;
  size_t len;
  conc_free_fn fn;
  CHECK(conc_chanq_get(q, &data, &len, &fn, deadline) == 0);
  CHECK(len == sizeof(int) && *(int *)data == want && fn == freeint);
  fn(data);
}

static void case_fifo(void) {
  conc_chanq_t *q = conc_chanq_new(0);
  int i;
  CHECK(q != NULL && conc_chanq_maxsize(q) == 0);
  for (i = 0; i < 1000; i++)
    CHECK(conc_chanq_put(q, newint(i), sizeof(int), freeint, CONC_FOREVER) == 0);
  CHECK(conc_chanq_len(q) == 1000);
  for (i = 0; i < 1000; i++)
    getint(q, i, CONC_FOREVER);
  CHECK(conc_chanq_len(q) == 0);
  CHECK(conc_chanq_get(q, NULL, NULL, NULL, conc_deadline(0.01))
        == CONC_ETIMEDOUT);
  conc_chanq_unref(q);
}

static void case_bounded(void) {
  conc_chanq_t *q = conc_chanq_new(2);
  int *third = newint(3);
  CHECK(conc_chanq_put(q, newint(1), sizeof(int), freeint, CONC_FOREVER) == 0);
  CHECK(conc_chanq_tryput(q, newint(2), sizeof(int), freeint, NULL) == 0);
  CHECK(conc_chanq_put(q, third, sizeof(int), freeint, conc_deadline(0.01))
        == CONC_ETIMEDOUT);
  CHECK(conc_chanq_tryput(q, third, sizeof(int), freeint, NULL)
        == CONC_ETIMEDOUT);
  getint(q, 1, CONC_FOREVER);
  CHECK(conc_chanq_tryput(q, third, sizeof(int), freeint, NULL) == 0);
  getint(q, 2, CONC_FOREVER);
  getint(q, 3, CONC_FOREVER);
  conc_chanq_unref(q);
}

static void *producer(void *arg) {
  conc_chanq_t *q = (conc_chanq_t *)arg;
  int i;
  for (i = 1; i <= 100000; i++)
    CHECK(conc_chanq_put(q, newint(i), sizeof(int), freeint, CONC_FOREVER) == 0);
  conc_chanq_close(q);
  return NULL;
}

/* One thread puts 100,000 items through a queue of 16, then closes it. */
static void case_threads(void) {
  conc_chanq_t *q = conc_chanq_new(16);
  pthread_t t;
  long sum = 0, n = 0;
  void *data;
  size_t len;
  conc_free_fn fn;
  int r;
  CHECK(pthread_create(&t, NULL, producer, q) == 0);
  while ((r = conc_chanq_get(q, &data, &len, &fn, CONC_FOREVER)) == 0) {
    CHECK(conc_chanq_len(q) <= 16);
    sum += *(int *)data;
    n++;
    fn(data);
  }
  CHECK(r == CONC_ECLOSED);
  CHECK(n == 100000 && sum == 100000L * 100001L / 2);
  pthread_join(t, NULL);
  conc_chanq_unref(q);
}

static void *getter(void *arg) {
  return (void *)(intptr_t)conc_chanq_get((conc_chanq_t *)arg, NULL, NULL,
                                          NULL, CONC_FOREVER);
}

static void *putter(void *arg) {
  conc_chanq_t *q = (conc_chanq_t *)arg;
  int *p = newint(9);
  int r = conc_chanq_put(q, p, sizeof(int), freeint, CONC_FOREVER);
  if (r != 0)
    free(p);  /* refused: still ours */
  return (void *)(intptr_t)r;
}

/* Closing wakes a get on an empty queue and a put on a full one; after
** close, put fails and get drains what is left. */
static void case_close(void) {
  conc_chanq_t *empty = conc_chanq_new(0), *full = conc_chanq_new(1);
  pthread_t g, p;
  void *rg, *rp;
  CHECK(conc_chanq_put(full, newint(1), sizeof(int), freeint, CONC_FOREVER) == 0);
  CHECK(pthread_create(&g, NULL, getter, empty) == 0);
  CHECK(pthread_create(&p, NULL, putter, full) == 0);
  usleep(20000);
  conc_chanq_close(empty);
  conc_chanq_close(full);
  pthread_join(g, &rg);
  pthread_join(p, &rp);
  CHECK((intptr_t)rg == CONC_ECLOSED && (intptr_t)rp == CONC_ECLOSED);
  CHECK(conc_chanq_closed(full) && conc_chanq_len(full) == 1);
  getint(full, 1, CONC_FOREVER);
  CHECK(conc_chanq_get(full, NULL, NULL, NULL, CONC_FOREVER) == CONC_ECLOSED);
  conc_chanq_unref(empty);
  conc_chanq_unref(full);
}

/* An item given back is first again, past maxsize and after close too,
** and wakes a waiting getter; the ring grows for it when full. */
static void case_unget(void) {
  conc_chanq_t *q = conc_chanq_new(2);
  conc_future_t *w = conc_future_new();
  void *data;
  size_t len;
  conc_free_fn fn;
  int i;
  CHECK(conc_chanq_tryget(q, &data, &len, &fn, w) == CONC_ETIMEDOUT);
  CHECK(conc_chanq_unget(q, newint(0), sizeof(int), freeint) == 0);
  CHECK(conc_future_state(w) == CONC_CANCELLED);
  CHECK(conc_chanq_put(q, newint(1), sizeof(int), freeint, CONC_FOREVER) == 0);
  CHECK(conc_chanq_get(q, &data, &len, &fn, CONC_FOREVER) == 0);
  CHECK(conc_chanq_put(q, newint(2), sizeof(int), freeint, CONC_FOREVER) == 0);
  CHECK(conc_chanq_unget(q, data, len, fn) == 0);  /* full: 3 of 2 */
  CHECK(conc_chanq_len(q) == 3);
  CHECK(conc_chanq_tryput(q, data = newint(9), sizeof(int), freeint, NULL)
        == CONC_ETIMEDOUT);
  free(data);
  for (i = 10; i < 20; i++)  /* past the ring's first 8 slots */
    CHECK(conc_chanq_unget(q, newint(i), sizeof(int), freeint) == 0);
  for (i = 19; i >= 10; i--)
    getint(q, i, CONC_FOREVER);
  conc_chanq_close(q);
  CHECK(conc_chanq_get(q, &data, &len, &fn, CONC_FOREVER) == 0);
  CHECK(conc_chanq_unget(q, data, len, fn) == 0);  /* closed */
  getint(q, 0, CONC_FOREVER);
  getint(q, 1, CONC_FOREVER);
  getint(q, 2, CONC_FOREVER);
  CHECK(conc_chanq_get(q, NULL, NULL, NULL, CONC_FOREVER) == CONC_ECLOSED);
  conc_future_unref(w);
  conc_chanq_unref(q);
}

/* A waiter that cannot block on the queue's condition variable passes a
** future: a put, a get or close cancels it. */
static void case_wake(void) {
  conc_chanq_t *q = conc_chanq_new(1);
  conc_future_t *w1 = conc_future_new(), *w2 = conc_future_new(),
                *w3 = conc_future_new();
  void *data;
  size_t len;
  conc_free_fn fn;
  CHECK(conc_chanq_tryget(q, &data, &len, &fn, w1) == CONC_ETIMEDOUT);
  CHECK(conc_future_state(w1) == CONC_PENDING);
  CHECK(conc_chanq_tryput(q, newint(1), sizeof(int), freeint, NULL) == 0);
  CHECK(conc_future_state(w1) == CONC_CANCELLED);
  CHECK(conc_chanq_tryput(q, data = newint(2), sizeof(int), freeint, w2)
        == CONC_ETIMEDOUT);
  free(data);
  getint(q, 1, CONC_FOREVER);
  CHECK(conc_future_state(w2) == CONC_CANCELLED);
  CHECK(conc_chanq_tryget(q, &data, &len, &fn, w3) == CONC_ETIMEDOUT);
  conc_chanq_close(q);
  CHECK(conc_future_state(w3) == CONC_CANCELLED);
  conc_future_unref(w1);
  conc_future_unref(w2);
  conc_future_unref(w3);
  conc_chanq_unref(q);
}

/* The last reference frees what is left, and cancels its wake futures:
** a waiter would otherwise wait for a queue that is gone (a Lua handle
** finalized by hand while its own state waited on it). */
static void case_unref(void) {
  conc_chanq_t *q = conc_chanq_new(0);
  conc_future_t *w = conc_future_new();
  int i, before = freed;
  void *data;
  size_t len;
  conc_free_fn fn;
  for (i = 0; i < 5; i++)
    CHECK(conc_chanq_tryput(q, newint(i), sizeof(int), freeint, NULL) == 0);
  conc_chanq_ref(q);
  conc_chanq_unref(q);
  CHECK(freed == before);
  conc_chanq_unref(q);
  CHECK(freed == before + 5);
  q = conc_chanq_new(0);
  CHECK(conc_chanq_tryget(q, &data, &len, &fn, w) == CONC_ETIMEDOUT);
  conc_chanq_unref(q);
  CHECK(conc_future_state(w) == CONC_CANCELLED);
  conc_future_unref(w);
}

/* A timer cancels each future at its deadline, in deadline order, and
** leaves alone those done before. */
static void case_timer(void) {
  conc_timer_t *t = conc_timer_new();
  conc_future_t *late = conc_future_new(), *soon = conc_future_new(),
                *done = conc_future_new(), *never = conc_future_new();
  CHECK(t != NULL);
  CHECK(conc_timer_cancel_at(t, late, conc_deadline(0.2)) == 0);
  CHECK(conc_timer_cancel_at(t, soon, conc_deadline(0.02)) == 0);
  CHECK(conc_timer_cancel_at(t, done, conc_deadline(0.02)) == 0);
  CHECK(conc_timer_cancel_at(t, never, conc_deadline(3600)) == 0);
  CHECK(conc_future_set_result(done, NULL, 0, NULL) == 0);
  CHECK(conc_future_wait(soon, conc_deadline(10)) == 0);
  CHECK(conc_future_state(soon) == CONC_CANCELLED);
  CHECK(conc_future_state(late) == CONC_PENDING);
  CHECK(conc_future_wait(late, conc_deadline(10)) == 0);
  CHECK(conc_future_state(late) == CONC_CANCELLED);
  CHECK(conc_future_state(done) == CONC_FINISHED);
  conc_timer_free(t);  /* joins; 'never' stays pending */
  CHECK(conc_future_state(never) == CONC_PENDING);
  conc_future_unref(late);
  conc_future_unref(soon);
  conc_future_unref(done);
  conc_future_unref(never);
}

/* A NULL queue (a failed conc_chanq_new): refused, never a crash (each
** call read address 0). */
static void case_null(void) {
  conc_chanq_t *q = conc_chanq_new(0);
  int *v = newint(7);
  void *data;
  size_t len;
  conc_free_fn fn;
  CHECK(q != NULL);
  CHECK(conc_chanq_put(NULL, v, sizeof(*v), freeint, CONC_FOREVER)
        == CONC_EINVAL);
  CHECK(conc_chanq_tryput(NULL, v, sizeof(*v), freeint, NULL) == CONC_EINVAL);
  CHECK(conc_chanq_unget(NULL, v, sizeof(*v), freeint) == CONC_EINVAL);
  CHECK(conc_chanq_get(NULL, &data, &len, &fn, CONC_FOREVER) == CONC_EINVAL);
  CHECK(conc_chanq_tryget(NULL, &data, &len, &fn, NULL) == CONC_EINVAL);
  conc_chanq_ref(NULL);
  conc_chanq_close(NULL);
  conc_chanq_unref(NULL);
  CHECK(conc_chanq_len(NULL) == 0 && conc_chanq_maxsize(NULL) == 0);
  CHECK(conc_chanq_closed(NULL) == 1);
  CHECK(conc_chanq_put(q, v, sizeof(*v), freeint, CONC_FOREVER) == 0);
  getint(q, 7, CONC_FOREVER);
  conc_chanq_unref(q);
}

/* Deadlines that never come: CONC_FOREVER (conc_deadline of a negative
** or infinite timeout) sorted first and cancelled its future at once;
** a NaN at the heap's top held every later entry back for ever. */
static void case_timerforever(void) {
  conc_timer_t *t = conc_timer_new();
  conc_future_t *inf = conc_future_new(), *nan = conc_future_new(),
                *soon = conc_future_new();
  volatile double zero = 0;
  CHECK(t != NULL);
  CHECK(conc_timer_cancel_at(t, nan, zero / zero) == 0);
  CHECK(conc_timer_cancel_at(t, inf, conc_deadline(-1)) == 0);
  CHECK(conc_timer_cancel_at(t, inf, conc_deadline(1 / zero)) == 0);
  CHECK(conc_timer_cancel_at(t, soon, conc_deadline(0.02)) == 0);
  CHECK(conc_future_wait(soon, conc_deadline(10)) == 0);
  CHECK(conc_future_state(soon) == CONC_CANCELLED);
  CHECK(conc_future_state(inf) == CONC_PENDING);
  CHECK(conc_future_state(nan) == CONC_PENDING);
  conc_timer_remove(t, inf);  /* none there: harmless */
  conc_timer_free(t);
  CHECK(conc_future_state(inf) == CONC_PENDING);
  conc_future_unref(inf);
  conc_future_unref(nan);
  conc_future_unref(soon);
}

/* Many entries at once (cf.await's timeouts of 200,000 coroutines):
** adding and removing each stays cheap. Before, every add scanned the
** whole heap (for done futures) and every remove searched it: minutes
** for these, here a bound of 10 s (a sanitizer build takes well under
** 1 s). Entries fire, are done before their deadline and are removed
** meanwhile. */
#define MANY 200000
static void case_timermany(void) {
  conc_timer_t *t = conc_timer_new();
  conc_future_t **fs = (conc_future_t **)malloc(MANY * sizeof(*fs));
  double t0 = conc_now();
  int i;
  CHECK(t != NULL && fs != NULL);
  for (i = 0; i < MANY; i++) {
    int soon = i % 1000 == 0;
    fs[i] = conc_future_new();
    CHECK(fs[i] != NULL);
    CHECK(conc_timer_cancel_at(t, fs[i], soon ? conc_deadline(0.001 * (i % 7))
                                              : conc_deadline(3600 + i * 1e-3))
          == 0);
    if (!soon && i % 3 == 1)  /* done before its deadline, never removed */
      CHECK(conc_future_set_result(fs[i], NULL, 0, NULL) == 0);
  }
  for (i = MANY - 1; i >= 0; i--)
    if (i % 1000 != 0)
      conc_timer_remove(t, fs[i]);
  for (i = 0; i < MANY; i += 1000) {
    CHECK(conc_future_wait(fs[i], conc_deadline(10)) == 0);
    CHECK(conc_future_state(fs[i]) == CONC_CANCELLED);
    conc_timer_remove(t, fs[i]);  /* fired: harmless */
  }
  CHECK(conc_now() - t0 < 10);
  conc_timer_free(t);
  for (i = 0; i < MANY; i++) {
    CHECK(conc_future_state(fs[i]) == (i % 1000 == 0 ? CONC_CANCELLED
                                       : i % 3 == 1  ? CONC_FINISHED
                                                     : CONC_PENDING));
    conc_future_unref(fs[i]);
  }
  free(fs);
}

/* Threads of this process, from /proc/self/status. */
static int nthreads(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  CHECK(f != NULL);
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "Threads:", 8) == 0)
      n = atoi(line + 8);
  fclose(f);
  return n;
}

/* The thread count once it stopped changing for 100 ms (a sanitizer
** may start a thread of its own along the way). */
static int settled(void) {
  int n = nthreads(), i;
  for (i = 0; i < 100; i++) {
    usleep(100000);
    if (nthreads() == n)
      return n;
    n = nthreads();
  }
  return n;
}

/* Past the time the timer's thread stays once nothing is due
** (CONC_TIMER_LINGER in core/timer.c, 0.5 s). */
#define PASTLINGER 700000

/* The thread leaves once nothing is due (entries fired or removed) and
** a later entry starts a new one. */
static void case_timeridle(void) {
  conc_timer_t *t = conc_timer_new();
  conc_future_t *a = conc_future_new(), *b = conc_future_new(),
                *c = conc_future_new();
  int base;
  CHECK(conc_timer_cancel_at(t, a, conc_deadline(0.01)) == 0);
  CHECK(conc_future_wait(a, conc_deadline(10)) == 0);
  usleep(PASTLINGER);
  base = settled();  /* without the timer's thread, if it left */
  CHECK(conc_timer_cancel_at(t, b, conc_deadline(3600)) == 0);
  CHECK(nthreads() == base + 1);
  conc_timer_remove(t, b);
  conc_timer_remove(t, b);  /* not there any more: harmless */
  usleep(PASTLINGER);
  CHECK(settled() == base);
  CHECK(conc_future_state(b) == CONC_PENDING);
  CHECK(conc_timer_cancel_at(t, c, conc_deadline(0.01)) == 0);
  CHECK(conc_future_wait(c, conc_deadline(10)) == 0);
  CHECK(conc_future_state(c) == CONC_CANCELLED);
  conc_timer_free(t);
  conc_future_unref(a);
  conc_future_unref(b);
  conc_future_unref(c);
}

/* {======================================================================
** A queue in a process-pool child: a proxy whose blocking put and get
** (the C API's) go through the parent. Items crossing are payloads.
** ======================================================================= */

static conc_payload_t *intpayload(int v) {
  conc_payload_t *p = conc_payload_new(&v, sizeof(v), 0);
  CHECK(p != NULL);
  return p;
}

static int payloadint(void *data) {
  int v;
  memcpy(&v, conc_payload_data((conc_payload_t *)data), sizeof(v));
  return v;
}

static int rt_start(void *ud, int id, void **ctx, char **why) {
  (void)ud; (void)id; (void)why;
  *ctx = NULL;
  return 0;
}

static void rt_stop(void *ud, void *ctx) {
  (void)ud; (void)ctx;
}

static void rt_interrupt(void *ctx) {
  (void)ctx;
}

static size_t rt_memory(void *ctx) {
  (void)ctx;
  return 0;
}

/* In the child: why the steps failed, or NULL. The task carries the
** queues 'out' (maxsize 2) and 'in'. */
static const char *childsteps(const conc_payload_t *task) {
  conc_chanq_t *out = conc_payload_queue(task, 0);
  conc_chanq_t *in = conc_payload_queue(task, 1);
  void *data;
  size_t len;
  conc_free_fn fn;
  int i;
  if (out == NULL || in == NULL || conc_chanq_maxsize(out) != 2)
    return "the queues did not cross";
  for (i = 0; i < 10; i++) {  /* waits while the parent has not taken */
    conc_payload_t *p = intpayload(i);
    if (conc_chanq_put(out, p, conc_payload_sizeof(p), conc_payload_free,
                       conc_deadline(30)) != 0)
      return "put failed";
  }
  if (conc_chanq_get(in, &data, &len, &fn, conc_deadline(0.05))
      != CONC_ETIMEDOUT)
    return "get did not time out";
  conc_chanq_close(out);  /* the parent puts 42 once it sees this */
  if (!conc_chanq_closed(out))
    return "close failed";
  if (conc_chanq_get(in, &data, &len, &fn, conc_deadline(30)) != 0)
    return "get failed";
  i = payloadint(data);
  fn(data);
  return i == 42 && conc_chanq_len(in) == 0 ? NULL : "get took a wrong value";
}

static conc_payload_t *rt_run(void *ctx, const conc_payload_t *task,
                              conc_taskctl_t *ctl, int *failed) {
  const char *why = childsteps(task);
  (void)ctx; (void)ctl;
  *failed = why != NULL;
  return why != NULL ? conc_payload_error("", why) : intpayload(7);
}

/* The options of a pool of 'workers' running tasks with 'run' and the
** runtime above. */
static void pooloptions(conc_executor_opts_t *o, int workers,
                        conc_payload_t *(*run)(void *, const conc_payload_t *,
                                               conc_taskctl_t *, int *)) {
  memset(o, 0, sizeof(*o));
  o->max_workers = workers;
  o->runtime.start = rt_start;
  o->runtime.stop = rt_stop;
  o->runtime.run = run;
  o->runtime.interrupt = rt_interrupt;
  o->runtime.memory = rt_memory;
}

static void case_process(void) {
  conc_executor_opts_t o;
  conc_executor_t *ex;
  conc_chanq_t *out = conc_chanq_new(2), *in = conc_chanq_new(0);
  conc_payload_t *task = conc_payload_new(NULL, 0, 2), *v;
  conc_future_t *f = conc_future_new();
  const void *res;
  size_t len;
  void *data;
  conc_free_fn fn;
  int i, failed;
  pooloptions(&o, 1, rt_run);
  CHECK((ex = conc_procexec_new(&o)) != NULL && task != NULL && f != NULL);
  conc_payload_setqueue(task, 0, out);
  conc_payload_setqueue(task, 1, in);
  CHECK(ex->ops->submit(ex, f, task, 0) == 0);
  for (i = 0; i < 10; i++) {
    CHECK(conc_chanq_get(out, &data, &len, &fn, conc_deadline(30)) == 0);
    CHECK(fn == conc_payload_free && payloadint(data) == i);
    fn(data);
  }
  CHECK(conc_chanq_get(out, &data, &len, &fn, conc_deadline(30))
        == CONC_ECLOSED);
  v = intpayload(42);
  CHECK(conc_chanq_put(in, v, conc_payload_sizeof(v), conc_payload_free,
                       CONC_FOREVER) == 0);
  CHECK(conc_future_wait(f, conc_deadline(30)) == 0);
  CHECK(conc_future_payload(f, &res, &len, &failed) == 0);
  if (failed)
    fprintf(stderr, "child: %s\n",
            strchr(conc_payload_data((const conc_payload_t *)res), 0) + 1);
  CHECK(!failed && payloadint((void *)res) == 7);
  ex->ops->free(ex);
  conc_future_unref(f);
  conc_chanq_unref(out);
  conc_chanq_unref(in);
}

/* {======================================================================
** Block caches: a cache alone, then the one of payloads while a thread
** pool lives.
** ======================================================================= */

static void case_bufcache(void) {
  conc_bufcache_t *c = conc_bufcache_new(64 * 1024);
  void *a = malloc(9216), *b = malloc(9216), *big = malloc(16384);
  void *small = malloc(100), *p[5];
  int i, kept = 0;
  CHECK(c != NULL && a != NULL && b != NULL && big != NULL && small != NULL);
  CHECK(conc_bufcache_round(100) == 100);  /* out of range: as it is */
  CHECK(conc_bufcache_round(4096) == 4096);
  CHECK(conc_bufcache_round(4097) == 4608);  /* eighths of 4096 */
  CHECK(conc_bufcache_round(9000) == 9216);
  CHECK(conc_bufcache_round(CONC_BUFCACHE_MAX) == CONC_BUFCACHE_MAX);
  CHECK(conc_bufcache_round(CONC_BUFCACHE_MAX + 1) == CONC_BUFCACHE_MAX + 1);
  CHECK(!conc_bufcache_keep(c, small, 100));  /* still the caller's */
  free(small);
  CHECK(conc_bufcache_keep(c, a, 9216) && conc_bufcache_keep(c, b, 9216));
  CHECK(conc_bufcache_take(c, 9000) == b);  /* the latest first */
  CHECK(conc_bufcache_take(c, 9217) == NULL);  /* none big enough */
  CHECK(conc_bufcache_take(c, 8192) == a);  /* 1/8 more: it serves */
  CHECK(conc_bufcache_keep(c, big, 16384));
  CHECK(conc_bufcache_take(c, 9216) == NULL);  /* would waste too much */
  CHECK(conc_bufcache_take(c, 100) == NULL);
  CHECK(conc_bufcache_take(c, 16000) == big);
  CHECK(conc_bufcache_take(c, 16000) == NULL);  /* taken once */
  for (i = 0; i < 5; i++) {  /* 64 KiB: four of 16 KiB */
    CHECK((p[i] = malloc(16384)) != NULL);
    kept += conc_bufcache_keep(c, p[i], 16384);
  }
  CHECK(kept == 4);
  CHECK(conc_bufcache_take(NULL, 9216) == NULL);
  CHECK(!conc_bufcache_keep(NULL, a, 9216));
  free(a);
  free(b);
  free(big);
  free(p[4]);
  conc_bufcache_free(c);  /* and the four it keeps (ASan: no leak) */
  c = conc_bufcache_new((size_t)64 * 1024 * 1024);  /* bytes: no bound */
  CHECK(c != NULL);
  for (kept = 0; kept < 1000; kept++) {  /* but blocks are bounded */
    void *q = malloc(4096);
    CHECK(q != NULL);
    if (!conc_bufcache_keep(c, q, 4096)) {
      free(q);
      break;
    }
  }
  CHECK(kept > 0 && kept < 1000);
  conc_bufcache_free(c);
}

/* A task's outcome is a copy of it. */
static conc_payload_t *echo_run(void *ctx, const conc_payload_t *task,
                                conc_taskctl_t *ctl, int *failed) {
  (void)ctx; (void)ctl;
  *failed = 0;
  return conc_payload_dup(task);
}

static conc_executor_t *echopool(void) {
  conc_executor_opts_t o;
  conc_executor_t *ex;
  pooloptions(&o, 2, echo_run);
  CHECK((ex = conc_threadexec_new(&o)) != NULL);
  return ex;
}

/* A payload of 'len' bytes, 'seed' + i at each. */
static conc_payload_t *bytespayload(size_t len, int seed) {
  conc_payload_t *p = conc_payload_new(NULL, len, 0);
  size_t i;
  CHECK(p != NULL);
  for (i = 0; i < len; i++)
    conc_payload_data(p)[i] = (char)(seed + (int)i);
  return p;
}

static int samebytes(const conc_payload_t *p, size_t len, int seed) {
  size_t i;
  for (i = 0; i < len; i++)
    if (conc_payload_data(p)[i] != (char)(seed + (int)i))
      return 0;
  return p->size == len;
}

/* Tasks of every size, their outcomes made from blocks their arguments
** gave back (on the workers) and the other way round (here). */
static void echotasks(conc_executor_t *ex) {
  conc_future_t *f[200];
  size_t len[200];
  int i;
  for (i = 0; i < 200; i++) {
    len[i] = 3000 + (size_t)i * 1531 % 300000;
    CHECK((f[i] = conc_future_new()) != NULL);
    CHECK(ex->ops->submit(ex, f[i], bytespayload(len[i], i), 0) == 0);
  }
  for (i = 0; i < 200; i++) {
    const void *data;
    size_t n;
    int failed;
    CHECK(conc_future_wait(f[i], conc_deadline(30)) == 0);
    CHECK(conc_future_payload(f[i], &data, &n, &failed) == 0 && !failed);
    CHECK(samebytes((const conc_payload_t *)data, len[i], i));
    conc_future_unref(f[i]);
  }
}

/* Each payload's block goes to the cache, which the last pool frees. */
static void case_payloadcache(void) {
  conc_executor_t *ex;
  conc_payload_t *p, *q[16];
  void *other;
  size_t before, kept;
  int i;
  conc_payload_free(bytespayload(30000, 1));  /* malloc's own first needs */
  before = heapbytes();
  conc_payload_free(bytespayload(30000, 1));  /* no pool: freed */
  CHECK(heapbytes() == before);
  ex = echopool();
  p = bytespayload(9000, 2);
  conc_payload_free(p);
  other = malloc(9216);  /* malloc would give this one 'p''s block */
  q[0] = conc_payload_new(NULL, 8990, 2);  /* the same class, a list */
  CHECK(q[0] == p && other != p);  /* (compared, never read) */
  CHECK(conc_payload_future(q[0], 0) == NULL);
  CHECK(conc_payload_future(q[0], 1) == NULL);
  conc_payload_free(q[0]);
  free(other);
  echotasks(ex);
  ex->ops->free(ex);
  ex = echopool();
  before = heapbytes();
  for (i = 0; i < 16; i++)
    q[i] = bytespayload(30000 + (size_t)i * 1000, i);
  for (i = 0; i < 16; i++)
    conc_payload_free(q[i]);
  kept = heapbytes();
  CHECK(kept - before >= 16 * 30000);  /* kept */
  ex->ops->free(ex);
  CHECK(kept - heapbytes() >= 16 * 30000);  /* but not past the pool */
}

/* }====================================================================== */


static const ctest_case cases[] = {
  {"fifo", case_fifo},
  {"bounded", case_bounded},
  {"threads", case_threads},
  {"close", case_close},
  {"wake", case_wake},
  {"unget", case_unget},
  {"unref", case_unref},
  {"timer", case_timer},
  {"timerforever", case_timerforever},
  {"null", case_null},
  {"timeridle", case_timeridle},
  {"timermany", case_timermany},
  {"process", case_process},
  {"bufcache", case_bufcache},
  {"payloadcache", case_payloadcache},
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s list | all | <case>...\n", argv[0]);
    return 2;
  }
  return ctest_main(argc, argv, cases, NCASES, CASE_TIMEOUT);
}
