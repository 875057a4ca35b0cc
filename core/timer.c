/*
** timer.c: deadlines. A binary heap of nodes served by one thread that
** runs only while nodes are due (and a moment after), so an idle pool or
** state keeps no thread (a process pool forking later meets fewer
** threads). The executors' task time limits are nodes
** (conc__tasktimer_*); conc_timer_t, for cf.await's timeouts, is a heap
** whose nodes cancel futures.
*/
#include <stdint.h>
#include <stdlib.h>

#include "internal.h"

/* The timer thread only fires nodes (a task's stop, a future's cancel
** and the C callbacks and watchers that run then): a small stack is
** plenty. */
#if !defined(CONC_TIMER_STACK)
#define CONC_TIMER_STACK (256 * 1024)
#endif

/* How long (seconds) the thread stays once the heap is empty: a pool
** that cancels or times out task after task keeps one thread, instead
** of starting one per stop. */
#if !defined(CONC_TIMER_LINGER)
#define CONC_TIMER_LINGER 0.5
#endif


/* {======================================================================
** The heap and its thread
** ======================================================================= */

int conc__tasktimer_init(conc__tasktimer *t) {
  t->heap = NULL;
  t->n = t->size = 0;
  t->started = t->running = t->quit = 0;
  t->firing = NULL;
  if (pthread_mutex_init(&t->mu, NULL) != 0)
    return CONC_ESYS;
  if (conc__cond_init(&t->cv) != 0) {
    pthread_mutex_destroy(&t->mu);
    return CONC_ESYS;
  }
  if (conc__cond_init(&t->fired) != 0) {
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    return CONC_ESYS;
  }
  return 0;
}

static void place(conc__tasktimer *t, conc__tnode *n, int i) {
  t->heap[i] = n;
  n->at = i;
}

static void siftup(conc__tasktimer *t, int i) {
  conc__tnode *n = t->heap[i];
  while (i > 0 && t->heap[(i - 1) / 2]->deadline > n->deadline) {
    place(t, t->heap[(i - 1) / 2], i);
    i = (i - 1) / 2;
  }
  place(t, n, i);
}

static void siftdown(conc__tasktimer *t, int i) {
  conc__tnode *n = t->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= t->n)
      break;
    if (c + 1 < t->n && t->heap[c + 1]->deadline < t->heap[c]->deadline)
      c++;
    if (t->heap[c]->deadline >= n->deadline)
      break;
    place(t, t->heap[c], i);
    i = c;
  }
  place(t, n, i);
}

/* Unlink the node at 'i' (lock held). */
static void unlink_at(conc__tasktimer *t, int i) {
  conc__tnode *last = t->heap[--t->n];
  t->heap[i]->at = -1;
  if (i == t->n)
    return;
  place(t, last, i);
  siftup(t, i);
  siftdown(t, last->at);
}

static int reserve(conc__tasktimer *t);

/* Fire what is due (again after its period, for a repeating node),
** sleep until the next deadline; leave on 'quit' or once the heap has
** been empty for CONC_TIMER_LINGER. A node fires with the lock released (it may
** cancel a future, whose watchers may come back to this timer), marked
** as 'firing' so that removing it waits until it is done. */
static void *timer_main(void *arg) {
  conc__tasktimer *t = (conc__tasktimer *)arg;
  double idle = 0;  /* when the heap emptied */
  pthread_mutex_lock(&t->mu);
  while (!t->quit) {
    if (t->n == 0) {  /* leave once idle for CONC_TIMER_LINGER */
      if (idle == 0)
        idle = conc_now();
      else if (conc_now() - idle >= CONC_TIMER_LINGER)
        break;
      conc__cond_wait(&t->cv, &t->mu, idle + CONC_TIMER_LINGER);
    } else if (t->heap[0]->deadline <= conc_now()) {
      conc__tnode *n = t->heap[0];
      int repeats = n->period > 0;  /* else 'fire' may free 'n' */
      unlink_at(t, 0);
      t->firing = n;
      pthread_mutex_unlock(&t->mu);
      n->fire(n);
      pthread_mutex_lock(&t->mu);
      if (repeats && n->period > 0 && n->at < 0 && reserve(t) == 0) {
        n->deadline = conc_now() + n->period;
        place(t, n, t->n++);
        siftup(t, n->at);
      }
      t->firing = NULL;
      pthread_cond_broadcast(&t->fired);
      idle = 0;
    } else {
      idle = 0;
      conc__cond_wait(&t->cv, &t->mu, t->heap[0]->deadline);
    }
  }
  t->running = 0;
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

/* Lock held: a thread serves the heap, the previous one (which left when
** the heap emptied and no longer needs the lock) joined. */
static int serve(conc__tasktimer *t) {
  if (t->running)
    return 0;
  if (t->started) {
    pthread_join(t->tid, NULL);
    t->started = 0;
  }
  if (conc__thread_start(&t->tid, CONC_TIMER_STACK, timer_main, t) != 0)
    return CONC_ESYS;
  t->started = t->running = 1;
  return 0;
}

/* Lock held: room for one more node. */
static int reserve(conc__tasktimer *t) {
  if (t->n == t->size) {
    int size = t->size ? 2 * t->size : 8;
    conc__tnode **h = (conc__tnode **)realloc(t->heap,
                                              (size_t)size * sizeof(*h));
    if (h == NULL)
      return CONC_ENOMEM;
    t->heap = h;
    t->size = size;
  }
  return 0;
}

/* Lock held: 'n' in the heap at 'deadline', again every 'period' (if
** positive). */
static int add(conc__tasktimer *t, conc__tnode *n, double deadline,
               double period) {
  int r = reserve(t);
  if (r == 0)
    r = serve(t);
  if (r == 0) {
    n->deadline = deadline;
    n->period = period;
    place(t, n, t->n++);
    siftup(t, n->at);
    if (n->at == 0)
      pthread_cond_signal(&t->cv);  /* it sleeps until a later deadline */
  }
  return r;
}

int conc__tasktimer_add(conc__tasktimer *t, conc__tnode *n, double deadline) {
  int r;
  pthread_mutex_lock(&t->mu);
  r = add(t, n, deadline, 0);
  pthread_mutex_unlock(&t->mu);
  return r;
}

int conc__tasktimer_every(conc__tasktimer *t, conc__tnode *n,
                          double period) {
  int r = 0;
  pthread_mutex_lock(&t->mu);
  if (n->at < 0 && t->firing != n)
    r = add(t, n, conc_now() + period, period);
  pthread_mutex_unlock(&t->mu);
  return r;
}

static void stop_again(conc__tnode *n) {
  conc__taskstop *s = conc__container_of(n, conc__taskstop, again);
  if (s->watch != NULL)
    s->watch(s);
  s->interrupt(s->ctx);
}

void conc__taskstop_init(conc__taskstop *s, conc__tasktimer *t,
                         void (*interrupt)(void *ctx), void *ctx) {
  s->ctl.stop = CONC_STOP_NONE;
  s->ctl.timeout = 0;
  s->ctl.place = NULL;
  s->ctl.raised = 0;
  s->timer = t;
  s->again.fire = stop_again;
  s->again.at = -1;
  s->interrupt = interrupt;
  s->ctx = ctx;
  s->watch = NULL;
}

void conc__taskstop_ask(conc__taskstop *s, int why) {
  int none = CONC_STOP_NONE;
  if (__atomic_compare_exchange_n(&s->ctl.stop, &none, why, 0,
                                  __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    s->interrupt(s->ctx);
    conc__tasktimer_every(s->timer, &s->again, CONC__STOP_AGAIN);
  }
}

void conc__taskstop_end(conc__taskstop *s) {
  if (__atomic_load_n(&s->ctl.stop, __ATOMIC_ACQUIRE) != CONC_STOP_NONE)
    conc__tasktimer_remove(s->timer, &s->again);
}

conc_payload_t *conc__taskstop_run(conc__taskstop *s, conc__tnode *limit,
                                   const conc_runtime_t *rt,
                                   conc_payload_t *task, int *failed) {
  conc_payload_t *out;
  double timeout = s->ctl.timeout;
  int timed = timeout > 0
              && conc__tasktimer_add(s->timer, limit, conc_now() + timeout)
                 == 0;
  if (timeout > 0 && !timed)
    out = conc_payload_error("", "cannot start the timer of task_timeout");
  else
    out = rt->run(s->ctx, task, &s->ctl, failed);
  /* No outcome is one that not even an error could be made for: a
  ** failure, whatever '*failed' says (a thread pool's future finished
  ** as a success without values when the runtime left it 0). */
  if (out == NULL || (timeout > 0 && !timed))
    *failed = 1;
  if (timed)
    conc__tasktimer_remove(s->timer, limit);
  return out;
}

void conc__tasktimer_remove(conc__tasktimer *t, conc__tnode *n) {
  pthread_mutex_lock(&t->mu);
  if (n->at >= 0) {
    unlink_at(t, n->at);
    if (t->n == 0)
      pthread_cond_signal(&t->cv);  /* nothing left: it lingers, leaves */
  } else if (t->firing == n) {
    n->period = 0;  /* not again */
    if (!pthread_equal(pthread_self(), t->tid))
      while (t->firing == n)
        conc__cond_wait(&t->fired, &t->mu, CONC_FOREVER);
  }
  pthread_mutex_unlock(&t->mu);
}

/* Stop the thread and wait for it: the nodes left are the caller's. */
static void stop(conc__tasktimer *t) {
  pthread_mutex_lock(&t->mu);
  t->quit = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  if (t->started)
    pthread_join(t->tid, NULL);
  t->started = 0;
}

void conc__tasktimer_free(conc__tasktimer *t) {
  stop(t);
  pthread_cond_destroy(&t->fired);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t->heap);
}

/* }====================================================================== */


/* {======================================================================
** conc_timer_t: nodes that cancel futures
** ======================================================================= */

typedef struct entry {
  conc__tnode node;
  conc_future_t *f;     /* a reference */
  struct entry *next;   /* in its bucket of the timer's index */
  conc_timer_t *timer;
} entry;

/* The entries are also found by future, in a hash index (buckets of
** chained entries, as many buckets as entries or more): remove runs once
** per await that did not time out, and a scan of the heap made 100,000
** awaits pending at once take minutes. Done futures' entries are dropped
** in passing, once the heap has doubled since the last such purge, so
** that an add costs O(log n) amortized. Both under the heap's lock. */
struct conc_timer {
  conc__tasktimer heap;
  entry **index;
  size_t nbuckets;      /* a power of 2, or 0 */
  size_t nindexed;
  int purgeat;          /* purge once the heap holds this many */
};

/* Below this many entries a purge is cheap whenever. */
#define PURGE_MIN 64

conc_timer_t *conc_timer_new(void) {
  conc_timer_t *t = (conc_timer_t *)malloc(sizeof(*t));
  if (t != NULL && conc__tasktimer_init(&t->heap) != 0) {
    free(t);
    t = NULL;
  }
  if (t != NULL) {
    t->index = NULL;
    t->nbuckets = t->nindexed = 0;
    t->purgeat = PURGE_MIN;
  }
  return t;
}

/* The bucket of 'f' among 'nb' (a power of 2). */
static size_t hashf(const conc_future_t *f, size_t nb) {
  uint64_t h = (uint64_t)(uintptr_t)f * UINT64_C(0x9E3779B97F4A7C15);
  return (size_t)(h >> 32) & (nb - 1);
}

static size_t bucket(const conc_timer_t *t, const conc_future_t *f) {
  return hashf(f, t->nbuckets);
}

/* Lock held: room in the index for one more entry. */
static int index_reserve(conc_timer_t *t) {
  size_t nb, i;
  entry **b;
  if (t->nindexed < t->nbuckets)
    return 0;
  nb = t->nbuckets ? 2 * t->nbuckets : 16;
  b = (entry **)calloc(nb, sizeof(*b));
  if (b == NULL)
    return CONC_ENOMEM;
  for (i = 0; i < t->nbuckets; i++) {
    entry *e = t->index[i];
    while (e != NULL) {
      entry *next = e->next;
      size_t k = hashf(e->f, nb);
      e->next = b[k];
      b[k] = e;
      e = next;
    }
  }
  free(t->index);
  t->index = b;
  t->nbuckets = nb;
  return 0;
}

/* Lock held, after index_reserve. */
static void index_add(conc_timer_t *t, entry *e) {
  size_t k = bucket(t, e->f);
  e->next = t->index[k];
  t->index[k] = e;
  t->nindexed++;
}

/* Lock held: 'e' out of the index. */
static void index_del(conc_timer_t *t, entry *e) {
  entry **p = &t->index[bucket(t, e->f)];
  while (*p != e)
    p = &(*p)->next;
  *p = e->next;
  t->nindexed--;
}

static void drop(entry *e) {
  conc_future_unref(e->f);
  free(e);
}

/* On the timer's thread, the entry out of the heap (its removal waits
** for this, or finds it no more): it is ours once out of the index. */
static void entry_fire(conc__tnode *n) {
  entry *e = conc__container_of(n, entry, node);
  pthread_mutex_lock(&e->timer->heap.mu);
  index_del(e->timer, e);
  pthread_mutex_unlock(&e->timer->heap.mu);
  conc_future_cancel(e->f);
  drop(e);
}

static entry *entry_at(conc_timer_t *t, int i) {
  return conc__container_of(t->heap.heap[i], entry, node);
}

/* Lock held: drop the entries whose futures are done already (a C
** host's wait that ended without conc_timer_remove), so they do not
** pile up; the rest is made a heap again. */
static void purge(conc_timer_t *t) {
  int i, k = 0;
  for (i = 0; i < t->heap.n; i++) {
    entry *e = entry_at(t, i);
    if (conc_future_done(e->f)) {
      index_del(t, e);
      drop(e);
    } else {
      place(&t->heap, &e->node, k++);
    }
  }
  t->heap.n = k;
  for (i = k / 2 - 1; i >= 0; i--)
    siftdown(&t->heap, i);
  t->purgeat = k < PURGE_MIN / 2 ? PURGE_MIN : 2 * k;
}

int conc_timer_cancel_at(conc_timer_t *t, conc_future_t *f,
                         double deadline) {
  entry *e;
  int r;
  /* A deadline that never comes is no entry: CONC_FOREVER (-1) sorted
  ** first and cancelled 'f' at once, and a NaN at the heap's top, which
  ** no comparison moves, held every later entry back for ever. */
  if (conc__never(deadline))
    return 0;
  if ((e = (entry *)malloc(sizeof(*e))) == NULL)
    return CONC_ENOMEM;
  e->f = f;
  e->timer = t;
  e->node.fire = entry_fire;
  e->node.at = -1;
  pthread_mutex_lock(&t->heap.mu);
  if (t->heap.n >= t->purgeat)
    purge(t);
  r = index_reserve(t);
  if (r == 0)
    r = add(&t->heap, &e->node, deadline, 0);
  if (r == 0) {
    conc_future_ref(f);
    index_add(t, e);
  }
  pthread_mutex_unlock(&t->heap.mu);
  if (r != 0)
    free(e);
  return r;
}

void conc_timer_remove(conc_timer_t *t, conc_future_t *f) {
  entry *e = NULL;
  pthread_mutex_lock(&t->heap.mu);
  if (t->nbuckets > 0) {
    /* one in the heap: an entry that fires now is the timer's */
    for (e = t->index[bucket(t, f)]; e != NULL; e = e->next)
      if (e->f == f && e->node.at >= 0)
        break;
  }
  if (e != NULL) {
    index_del(t, e);
    unlink_at(&t->heap, e->node.at);
    if (t->heap.n == 0)
      pthread_cond_signal(&t->heap.cv);  /* nothing left: it lingers */
  }
  pthread_mutex_unlock(&t->heap.mu);
  if (e != NULL)
    drop(e);
}

void conc_timer_free(conc_timer_t *t) {
  int i;
  stop(&t->heap);
  for (i = 0; i < t->heap.n; i++)
    drop(entry_at(t, i));
  conc__tasktimer_free(&t->heap);
  free(t->index);
  free(t);
}

/* }====================================================================== */
