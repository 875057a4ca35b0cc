/*
** chanq.c: a FIFO of byte payloads shared between threads (cf.Queue),
** bounded or not, with close. Blocking waits use the queue's condition
** variable; an owner that must keep running callbacks while it waits
** passes a 'wake' future instead, which the queue cancels when it
** changes, so the owner waits on it in a watch set with its mailbox.
** A proxy (a queue of the parent process, in a forked worker) keeps only
** its wake lists here: every operation goes to its 'remote' (child.c).
*/
#include <stdlib.h>

#include "internal.h"

typedef struct item {
  void *data;
  size_t len;
  conc_free_fn freefn;
} item;

/* Futures to cancel at the next change of one kind. */
typedef struct wakelist {
  conc_future_t **v;
  size_t n, cap;
} wakelist;

struct conc_chanq {
  int kind;                /* CONC_SHARED_QUEUE: first (see payload.c) */
  pthread_mutex_t mu;
  pthread_cond_t cv;       /* blocking get/put of C callers */
  int refs;                /* atomic */
  int closed;
  int waiters;             /* threads blocked on 'cv' */
  size_t maxsize;          /* 0: unbounded */
  item *ring;              /* 'count' items from 'head', 'cap' slots */
  size_t head, count, cap;
  wakelist getters;        /* woken by a put or close */
  wakelist putters;        /* woken by a get or close */
  const conc__qremote *remote;  /* a proxy's operations, or NULL */
  void *rctx;              /* the proxy's, for 'remote' */
};

#define CHANQ_MINCAP 8


conc_chanq_t *conc_chanq_new(size_t maxsize) {
  conc_chanq_t *q = (conc_chanq_t *)calloc(1, sizeof(*q));
  if (q == NULL)
    return NULL;
  if (pthread_mutex_init(&q->mu, NULL) != 0) {
    free(q);
    return NULL;
  }
  if (conc__cond_init(&q->cv) != 0) {
    pthread_mutex_destroy(&q->mu);
    free(q);
    return NULL;
  }
  q->kind = CONC_SHARED_QUEUE;
  q->refs = 1;
  q->maxsize = maxsize;
  return q;
}

void conc_chanq_ref(conc_chanq_t *q) {
  if (q != NULL)
    __atomic_add_fetch(&q->refs, 1, __ATOMIC_RELAXED);
}

/* The queue is freed: each waiter still registered is woken (its wake
** cancelled, as for a change), or it would wait out its timeout, or
** for ever, for a queue that is gone (its owner's handle was finalized
** by hand while it waited: lua/lqueue.c then raises). */
static void dropwakes(wakelist *w) {
  size_t i;
  for (i = 0; i < w->n; i++) {
    conc_future_cancel(w->v[i]);
    conc_future_unref(w->v[i]);
  }
  free(w->v);
}

conc_chanq_t *conc__chanq_newremote(const conc__qremote *remote,
                                    void *ctx) {
  conc_chanq_t *q = conc_chanq_new(0);
  if (q != NULL) {
    q->remote = remote;
    q->rctx = ctx;
  }
  return q;
}

void *conc__chanq_remotectx(conc_chanq_t *q) {
  return q->remote != NULL ? q->rctx : NULL;
}

/* A reference on a queue that may be losing its last one: 1, or 0 when
** it had none left (its release is under way). */
int conc__chanq_tryref(conc_chanq_t *q) {
  int n = __atomic_load_n(&q->refs, __ATOMIC_RELAXED);
  while (n > 0)
    if (__atomic_compare_exchange_n(&q->refs, &n, n + 1, 1,
                                    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
      return 1;
  return 0;
}

void conc_chanq_unref(conc_chanq_t *q) {
  if (q == NULL || __atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) != 0)
    return;
  if (q->remote != NULL)
    q->remote->release(q);  /* it calls conc__chanq_free */
  else
    conc__chanq_free(q);
}

void conc__chanq_free(conc_chanq_t *q) {
  while (q->count > 0) {
    item *it = &q->ring[q->head];
    if (it->freefn != NULL)
      it->freefn(it->data);
    q->head = (q->head + 1) % q->cap;
    q->count--;
  }
  free(q->ring);
  dropwakes(&q->getters);
  dropwakes(&q->putters);
  pthread_cond_destroy(&q->cv);
  pthread_mutex_destroy(&q->mu);
  free(q);
}

size_t conc_chanq_len(conc_chanq_t *q) {
  size_t n;
  int closed;
  if (q == NULL)
    return 0;
  if (q->remote != NULL)
    return q->remote->info(q, &n, NULL, &closed) == 0 ? n : 0;
  pthread_mutex_lock(&q->mu);
  n = q->count;
  pthread_mutex_unlock(&q->mu);
  return n;
}

size_t conc_chanq_maxsize(conc_chanq_t *q) {
  size_t n, max;
  int closed;
  if (q == NULL)
    return 0;
  if (q->remote != NULL)
    return q->remote->info(q, &n, &max, &closed) == 0 ? max : 0;
  return q->maxsize;
}

int conc_chanq_closed(conc_chanq_t *q) {
  size_t n;
  int c;
  if (q == NULL)  /* takes nothing, as a closed one */
    return 1;
  if (q->remote != NULL)
    return q->remote->info(q, &n, NULL, &c) == 0 ? c : 1;
  pthread_mutex_lock(&q->mu);
  c = q->closed;
  pthread_mutex_unlock(&q->mu);
  return c;
}


/* {======================================================================
** Wake-ups
** ======================================================================= */

/* With the lock held: cancel 'wake' at the next change of that kind.
** Futures done already (a waiter that gave up cancels its own) are
** dropped first, so repeated timed-out waits do not pile up. */
static int addwake(wakelist *w, conc_future_t *wake) {
  size_t i, n = 0;
  for (i = 0; i < w->n; i++) {
    if (conc_future_done(w->v[i]))
      conc_future_unref(w->v[i]);
    else
      w->v[n++] = w->v[i];
  }
  w->n = n;
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 4;
    conc_future_t **v = (conc_future_t **)realloc(w->v, cap * sizeof(*v));
    if (v == NULL)
      return CONC_ENOMEM;
    w->v = v;
    w->cap = cap;
  }
  conc_future_ref(wake);
  w->v[w->n++] = wake;
  return 0;
}

/* With the lock held: take the list out, to be fired by 'fire' once the
** lock is released (cancelling runs watchers that take other locks). */
static wakelist takewakes(wakelist *w) {
  wakelist out = *w;
  w->v = NULL;
  w->n = w->cap = 0;
  return out;
}

static void fire(wakelist *w) {
  size_t i;
  for (i = 0; i < w->n; i++) {
    conc_future_cancel(w->v[i]);
    conc_future_unref(w->v[i]);
  }
  free(w->v);
}

/* With the lock held: a change of one kind happened; unlocks. */
static void changed(conc_chanq_t *q, wakelist *kind) {
  wakelist w = takewakes(kind);
  if (q->waiters > 0)
    pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
  fire(&w);
}

/* }====================================================================== */


/* With the lock held: room for one more item, growing the ring. */
static int room(conc_chanq_t *q) {
  if (q->count == q->cap) {
    size_t cap = q->cap ? 2 * q->cap : CHANQ_MINCAP, i;
    item *ring = (item *)malloc(cap * sizeof(*ring));
    if (ring == NULL)
      return CONC_ENOMEM;
    for (i = 0; i < q->count; i++)
      ring[i] = q->ring[(q->head + i) % q->cap];
    free(q->ring);
    q->ring = ring;
    q->head = 0;
    q->cap = cap;
  }
  return 0;
}

static void setitem(item *it, void *data, size_t len, conc_free_fn fn) {
  it->data = data;
  it->len = len;
  it->freefn = fn;
}

/* With the lock held: append, growing the ring. */
static int push(conc_chanq_t *q, void *data, size_t len, conc_free_fn fn) {
  if (room(q) != 0)
    return CONC_ENOMEM;
  setitem(&q->ring[(q->head + q->count) % q->cap], data, len, fn);
  q->count++;
  return 0;
}

static void pop(conc_chanq_t *q, void **data, size_t *len,
                conc_free_fn *fn) {
  item *it = &q->ring[q->head];
  *data = it->data;
  *len = it->len;
  *fn = it->freefn;
  q->head = (q->head + 1) % q->cap;
  q->count--;
}

static int full(conc_chanq_t *q) {
  return q->maxsize > 0 && q->count >= q->maxsize;
}

int conc_chanq_tryput(conc_chanq_t *q, void *data, size_t len,
                      conc_free_fn freefn, conc_future_t *wake) {
  int r;
  if (q == NULL)
    return CONC_EINVAL;
  if (q->remote != NULL)
    return q->remote->tryput(q, data, len, freefn, wake);
  pthread_mutex_lock(&q->mu);
  if (q->closed)
    r = CONC_ECLOSED;
  else if (full(q))
    r = wake != NULL && addwake(&q->putters, wake) != 0 ? CONC_ENOMEM
                                                       : CONC_ETIMEDOUT;
  else if ((r = push(q, data, len, freefn)) == 0) {
    changed(q, &q->getters);
    return 0;
  }
  pthread_mutex_unlock(&q->mu);
  return r;
}

int conc_chanq_tryget(conc_chanq_t *q, void **data, size_t *len,
                      conc_free_fn *freefn, conc_future_t *wake) {
  if (q == NULL)
    return CONC_EINVAL;
  return conc__chanq_trygetif(q, NULL, data, len, freefn, wake);
}

int conc__chanq_trygetif(conc_chanq_t *q, int (*takes)(
    const void *data, size_t len, conc_free_fn freefn), void **data,
    size_t *len, conc_free_fn *freefn, conc_future_t *wake) {
  int r;
  if (q->remote != NULL)  /* its values are not here to look at first */
    return q->remote->tryget(q, data, len, freefn, wake);
  pthread_mutex_lock(&q->mu);
  if (q->count > 0) {
    const item *first = &q->ring[q->head];
    if (takes != NULL
        && (r = takes(first->data, first->len, first->freefn)) != 0) {
      pthread_mutex_unlock(&q->mu);
      return r;
    }
    pop(q, data, len, freefn);
    changed(q, &q->putters);
    return 0;
  }
  if (q->closed)
    r = CONC_ECLOSED;
  else
    r = wake != NULL && addwake(&q->getters, wake) != 0 ? CONC_ENOMEM
                                                       : CONC_ETIMEDOUT;
  pthread_mutex_unlock(&q->mu);
  return r;
}

/* The item goes back first; past 'maxsize' and after close too: it was
** in the queue already (a put admitted meanwhile took the room it left),
** and get drains a closed queue. A getter that waits may take it. */
int conc_chanq_unget(conc_chanq_t *q, void *data, size_t len,
                     conc_free_fn freefn) {
  if (q == NULL)
    return CONC_EINVAL;
  if (q->remote != NULL)  /* its values are the host's: back there */
    return q->remote->unget(q, data, len, freefn);
  pthread_mutex_lock(&q->mu);
  if (room(q) != 0) {
    pthread_mutex_unlock(&q->mu);
    return CONC_ENOMEM;
  }
  q->head = (q->head + q->cap - 1) % q->cap;
  setitem(&q->ring[q->head], data, len, freefn);
  q->count++;
  changed(q, &q->getters);
  return 0;
}

/* With the lock held: wait on the queue's own condition variable. */
static int waitcv(conc_chanq_t *q, double deadline) {
  int r;
  q->waiters++;
  r = conc__cond_wait(&q->cv, &q->mu, deadline);
  q->waiters--;
  return r;
}

/* A proxy's blocking put (no 'gdata') or get: it tries again each time
** a wake future says the queue changed, until 'deadline'. */
static int waitremote(conc_chanq_t *q, void *data, size_t len,
                      conc_free_fn freefn, void **gdata, size_t *glen,
                      conc_free_fn *gfreefn, double deadline) {
  for (;;) {
    conc_future_t *wake = conc_future_new();
    int r, late = 0;
    if (wake == NULL)
      return CONC_ENOMEM;
    r = gdata == NULL ? conc_chanq_tryput(q, data, len, freefn, wake)
                      : conc_chanq_tryget(q, gdata, glen, gfreefn, wake);
    if (r == CONC_ETIMEDOUT && conc_future_wait(wake, deadline) != 0) {
      conc_future_cancel(wake);  /* the last try, then give up */
      late = 1;
      r = gdata == NULL ? conc_chanq_tryput(q, data, len, freefn, NULL)
                        : conc_chanq_tryget(q, gdata, glen, gfreefn, NULL);
    }
    conc_future_unref(wake);
    if (r != CONC_ETIMEDOUT || late)
      return r;
  }
}

int conc_chanq_put(conc_chanq_t *q, void *data, size_t len,
                   conc_free_fn freefn, double deadline) {
  int r = 0;
  if (q == NULL)
    return CONC_EINVAL;
  if (q->remote != NULL)
    return waitremote(q, data, len, freefn, NULL, NULL, NULL, deadline);
  pthread_mutex_lock(&q->mu);
  while (!q->closed && full(q) && r == 0)
    r = waitcv(q, deadline);
  if (q->closed)
    r = CONC_ECLOSED;
  else if (!full(q) && (r = push(q, data, len, freefn)) == 0) {
    changed(q, &q->getters);
    return 0;
  }
  pthread_mutex_unlock(&q->mu);
  return r;
}

int conc_chanq_get(conc_chanq_t *q, void **data, size_t *len,
                   conc_free_fn *freefn, double deadline) {
  int r = 0;
  if (q == NULL)
    return CONC_EINVAL;
  if (q->remote != NULL)
    return waitremote(q, NULL, 0, NULL, data, len, freefn, deadline);
  pthread_mutex_lock(&q->mu);
  while (q->count == 0 && !q->closed && r == 0)
    r = waitcv(q, deadline);
  if (q->count > 0) {
    pop(q, data, len, freefn);
    changed(q, &q->putters);
    return 0;
  }
  pthread_mutex_unlock(&q->mu);
  return q->closed ? CONC_ECLOSED : r;
}

void conc_chanq_close(conc_chanq_t *q) {
  wakelist g;
  if (q == NULL)
    return;
  if (q->remote != NULL) {
    q->remote->close(q);
    return;
  }
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  g = takewakes(&q->getters);
  changed(q, &q->putters);
  fire(&g);
}


int conc__chanq_each(conc_chanq_t *q,
                     int (*fn)(void *ud, void *data, conc_free_fn freefn),
                     void *ud) {
  size_t i;
  int r = 0;
  if (q->remote != NULL)  /* its values are not here */
    return 0;
  pthread_mutex_lock(&q->mu);
  for (i = 0; i < q->count && r == 0; i++) {
    const item *it = &q->ring[(q->head + i) % q->cap];
    r = fn(ud, it->data, it->freefn);
  }
  pthread_mutex_unlock(&q->mu);
  return r;
}


/* {======================================================================
** Proxies: their wake lists, kept here for their remote
** ======================================================================= */

int conc__chanq_addwake(conc_chanq_t *q, int getters, conc_future_t *wake) {
  int r;
  pthread_mutex_lock(&q->mu);
  r = addwake(getters ? &q->getters : &q->putters, wake);
  pthread_mutex_unlock(&q->mu);
  return r;
}

void conc__chanq_wakeup(conc_chanq_t *q, int getters) {
  pthread_mutex_lock(&q->mu);
  changed(q, getters ? &q->getters : &q->putters);
}

/* }====================================================================== */
