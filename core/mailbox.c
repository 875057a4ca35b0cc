/*
** mailbox.c: an owner's inbox of completed futures (posts), with an
** eventfd for event loops, and watch sets that wait on many futures.
*/
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

struct conc_mailbox {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int refs;            /* atomic */
  int closed;
  int waiters;         /* threads blocked on 'cv' */
  int interrupted;     /* waits return at once (also read atomically) */
  int efd;             /* readable while 'posts' is not empty; made on
                       ** first demand (conc_mailbox_fd), else -1 */
  conc__queue posts;   /* fired post watchers, oldest first */
  int nposts;          /* their number, also read atomically by 'poll' */
};

/* How long (seconds) a waiting owner polls before it sleeps: a result
** that arrives within it costs no sleep and wake-up on either side. */
#if !defined(CONC_WAIT_SPIN)
#define CONC_WAIT_SPIN 50e-6
#endif

struct conc_watch {
  conc_mailbox_t *mb;  /* a reference; its lock guards 'ready' */
  conc__queue ready;   /* fired watch nodes */
  int nready;          /* their number, also read atomically by 'poll' */
  conc__queue all;     /* every node of the set, for conc_watch_free */
};

/*
** One node per (future, interest). A post holds a reference to its
** mailbox, and to its future only once fired (so a forgotten pending
** future is still freed); a watch node's set holds the future.
*/
typedef struct watcher {
  conc__wnode fnode;    /* in the future's watcher list until fired */
  conc__queue mnode;    /* in 'posts' or the set's 'ready' once fired */
  conc__queue snode;    /* a watch node in its set's 'all' */
  conc_future_t *f;
  conc_mailbox_t *mb;
  conc_watch_t *set;    /* NULL for a post */
  uintptr_t tag;
} watcher;


conc_mailbox_t *conc_mailbox_new(void) {
  conc_mailbox_t *mb = (conc_mailbox_t *)calloc(1, sizeof(*mb));
  if (mb == NULL)
    return NULL;
  mb->efd = -1;
  if (pthread_mutex_init(&mb->mu, NULL) != 0) {
    free(mb);
    return NULL;
  }
  if (conc__cond_init(&mb->cv) != 0) {
    pthread_mutex_destroy(&mb->mu);
    free(mb);
    return NULL;
  }
  mb->refs = 1;
  conc__queue_init(&mb->posts);
  return mb;
}

void conc_mailbox_ref(conc_mailbox_t *mb) {
  __atomic_add_fetch(&mb->refs, 1, __ATOMIC_RELAXED);
}

void conc_mailbox_unref(conc_mailbox_t *mb) {
  int r = __atomic_sub_fetch(&mb->refs, 1, __ATOMIC_ACQ_REL);
  conc_assert(r >= 0);
  if (r != 0)
    return;
  conc_assert(conc__queue_empty(&mb->posts));
  if (mb->efd >= 0)
    close(mb->efd);
  pthread_cond_destroy(&mb->cv);
  pthread_mutex_destroy(&mb->mu);
  free(mb);
}

/* With 'mb->mu' held: the fd follows whether posts are queued. */
static void signal_fd(conc_mailbox_t *mb, int readable) {
  uint64_t v = 1;
  ssize_t r;
  if (mb->efd < 0)  /* no one polls it yet */
    return;
  if (readable)
    r = write(mb->efd, &v, sizeof(v));
  else
    r = read(mb->efd, &v, sizeof(v));
  (void)r;  /* EAGAIN: already in the wanted state */
}

/* The eventfd is made on first demand: a state that never polls one
** (every worker) holds no descriptor, so a low 'ulimit -n' does not stop
** it from starting. */
int conc_mailbox_fd(conc_mailbox_t *mb) {
  int fd;
  pthread_mutex_lock(&mb->mu);
  if (mb->efd < 0) {
    mb->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (mb->efd >= 0 && mb->nposts > 0)
      signal_fd(mb, 1);
  }
  fd = mb->efd;
  pthread_mutex_unlock(&mb->mu);
  return fd;
}

static void wake(conc_mailbox_t *mb) {
  if (mb->waiters > 0)
    pthread_cond_broadcast(&mb->cv);
}

/* A post that will never be taken: release what it holds. */
static void post_free(watcher *w, int fired) {
  if (fired)
    conc_future_unref(w->f);
  conc_mailbox_unref(w->mb);
  free(w);
}


/* With the mailbox's lock held: 'w' of 'set' has fired. */
static void setready(conc_watch_t *set, watcher *w) {
  conc__queue_insert_tail(&set->ready, &w->mnode);
  __atomic_store_n(&set->nready, set->nready + 1, __ATOMIC_RELEASE);
}

static void watcher_fire(conc__wnode *node) {
  watcher *w = conc__container_of(node, watcher, fnode);
  conc_mailbox_t *mb = w->mb;
  int dropped = 0;
  pthread_mutex_lock(&mb->mu);
  if (w->set != NULL)
    setready(w->set, w);
  else if (mb->closed)
    dropped = 1;
  else {
    conc_future_ref(w->f);
    if (conc__queue_empty(&mb->posts))
      signal_fd(mb, 1);
    conc__queue_insert_tail(&mb->posts, &w->mnode);
    __atomic_store_n(&mb->nposts, mb->nposts + 1, __ATOMIC_RELEASE);
  }
  wake(mb);
  pthread_mutex_unlock(&mb->mu);
  if (dropped)
    post_free(w, 0);
}

static void watcher_drop(conc__wnode *node) {
  watcher *w = conc__container_of(node, watcher, fnode);
  post_free(w, 0);
}


int conc_mailbox_subscribe(conc_mailbox_t *mb, conc_future_t *f,
                           uintptr_t tag) {
  watcher *w = (watcher *)calloc(1, sizeof(*w));
  if (w == NULL)
    return CONC_ENOMEM;
  conc_mailbox_ref(mb);
  w->f = f;
  w->mb = mb;
  w->tag = tag;
  w->fnode.fire = watcher_fire;
  w->fnode.drop = watcher_drop;
  conc__queue_init(&w->fnode.q);
  conc__queue_init(&w->mnode);
  if (!conc__future_watch(f, &w->fnode))
    watcher_fire(&w->fnode);  /* settled already: post at once */
  return 0;
}

int conc_mailbox_take(conc_mailbox_t *mb, conc_future_t **f,
                      uintptr_t *tag) {
  watcher *w;
  if (__atomic_load_n(&mb->nposts, __ATOMIC_ACQUIRE) == 0)
    return 0;  /* the common case at a safe point: no lock */
  pthread_mutex_lock(&mb->mu);
  if (conc__queue_empty(&mb->posts)) {
    pthread_mutex_unlock(&mb->mu);
    return 0;
  }
  w = conc__container_of(conc__queue_head(&mb->posts), watcher, mnode);
  conc__queue_remove(&w->mnode);
  __atomic_store_n(&mb->nposts, mb->nposts - 1, __ATOMIC_RELAXED);
  if (conc__queue_empty(&mb->posts))
    signal_fd(mb, 0);
  pthread_mutex_unlock(&mb->mu);
  *f = w->f;  /* the post's reference passes to the caller */
  *tag = w->tag;
  conc_mailbox_unref(w->mb);
  free(w);
  return 1;
}

int conc_mailbox_wait(conc_mailbox_t *mb, double deadline) {
  int r = 0;
  pthread_mutex_lock(&mb->mu);
  mb->waiters++;
  while (conc__queue_empty(&mb->posts) && r == 0 && !mb->interrupted)
    r = conc__cond_wait(&mb->cv, &mb->mu, deadline);
  mb->waiters--;
  if (!conc__queue_empty(&mb->posts) || mb->interrupted) r = 0;
  pthread_mutex_unlock(&mb->mu);
  return r;
}

/* Clearing a flag that is clear needs no lock (a worker does it before
** every task): a concurrent 'on' then simply comes after it. */
void conc_mailbox_interrupt(conc_mailbox_t *mb, int on) {
  if (!on && __atomic_load_n(&mb->interrupted, __ATOMIC_ACQUIRE) == 0)
    return;
  pthread_mutex_lock(&mb->mu);
  __atomic_store_n(&mb->interrupted, on, __ATOMIC_RELEASE);
  if (on)
    wake(mb);
  pthread_mutex_unlock(&mb->mu);
}

void conc_mailbox_close(conc_mailbox_t *mb) {
  conc__queue posts;
  pthread_mutex_lock(&mb->mu);
  mb->closed = 1;
  if (!conc__queue_empty(&mb->posts))
    signal_fd(mb, 0);
  conc__queue_move(&mb->posts, &posts);
  __atomic_store_n(&mb->nposts, 0, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&mb->mu);
  while (!conc__queue_empty(&posts)) {
    watcher *w = conc__container_of(conc__queue_head(&posts), watcher, mnode);
    conc__queue_remove(&w->mnode);
    post_free(w, 1);
  }
}


/* {======================================================================
** Watch sets
** ======================================================================= */

conc_watch_t *conc_watch_new(conc_mailbox_t *mb) {
  conc_watch_t *set = (conc_watch_t *)malloc(sizeof(*set));
  if (set == NULL)
    return NULL;
  conc_mailbox_ref(mb);
  set->mb = mb;
  set->nready = 0;
  conc__queue_init(&set->ready);
  conc__queue_init(&set->all);
  return set;
}

int conc_watch_add(conc_watch_t *set, conc_future_t *f, uintptr_t tag) {
  watcher *w = (watcher *)calloc(1, sizeof(*w));
  if (w == NULL)
    return CONC_ENOMEM;
  conc_future_ref(f);
  w->f = f;
  w->mb = set->mb;
  w->set = set;
  w->tag = tag;
  w->fnode.fire = watcher_fire;
  w->fnode.drop = NULL;  /* the set keeps its futures alive */
  conc__queue_init(&w->fnode.q);
  conc__queue_init(&w->mnode);
  conc__queue_insert_tail(&set->all, &w->snode);
  if (!conc__future_watch(f, &w->fnode)) {
    pthread_mutex_lock(&set->mb->mu);
    setready(set, w);
    pthread_mutex_unlock(&set->mb->mu);
  }
  return 0;
}

int conc_watch_take(conc_watch_t *set, uintptr_t *tag) {
  watcher *w = NULL;
  pthread_mutex_lock(&set->mb->mu);
  if (!conc__queue_empty(&set->ready)) {
    w = conc__container_of(conc__queue_head(&set->ready), watcher, mnode);
    conc__queue_remove(&w->mnode);
    __atomic_store_n(&set->nready, set->nready - 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&set->mb->mu);
  if (w == NULL)
    return 0;
  *tag = w->tag;
  return 1;
}

/* Poll (no lock) until something is ready or CONC_WAIT_SPIN passes, or
** the workers running tasks need the cores (conc__spin_ok); yield the
** core now and then: on a busy machine the thread we wait for may need
** it. */
static int poll(conc_watch_t *set, double deadline, int posts) {
  double end = conc_now() + CONC_WAIT_SPIN;
  unsigned i;
  if (deadline != CONC_FOREVER && deadline < end)
    end = deadline;
  for (i = 1; ; i++) {
    if (__atomic_load_n(&set->nready, __ATOMIC_ACQUIRE) > 0
        || __atomic_load_n(&set->mb->interrupted, __ATOMIC_ACQUIRE)
        || (posts && __atomic_load_n(&set->mb->nposts, __ATOMIC_ACQUIRE) > 0))
      return 1;
    conc__cpu_relax();
    if (i % 64 == 0) {
      if (conc_now() >= end || !conc__spin_ok())
        return 0;
      sched_yield();
    }
  }
}

int conc_watch_wait(conc_watch_t *set, double deadline, int posts) {
  conc_mailbox_t *mb = set->mb;
  int r = 0, ready;
  if (conc__spin_begin()) {
    ready = poll(set, deadline, posts);
    conc__spin_end();
    if (ready)
      return 0;
  }
  pthread_mutex_lock(&mb->mu);
  if (conc__queue_empty(&set->ready) && !mb->interrupted
      && (!posts || conc__queue_empty(&mb->posts))) {
    mb->waiters++;
    r = conc__cond_wait(&mb->cv, &mb->mu, deadline);
    mb->waiters--;
  }
  pthread_mutex_unlock(&mb->mu);
  return r;
}

/* Unlink each node from its future first (after that it cannot fire),
** then from the ready list. */
void conc_watch_free(conc_watch_t *set) {
  while (!conc__queue_empty(&set->all)) {
    watcher *w = conc__container_of(conc__queue_head(&set->all), watcher,
                                    snode);
    conc__queue_remove(&w->snode);
    conc__future_unwatch(w->f, &w->fnode);
    pthread_mutex_lock(&set->mb->mu);
    conc__queue_remove(&w->mnode);
    pthread_mutex_unlock(&set->mb->mu);
    conc_future_unref(w->f);
    free(w);
  }
  conc_assert(conc__queue_empty(&set->ready));
  conc_mailbox_unref(set->mb);
  free(set);
}

/* }====================================================================== */
