/*
** future.c: the refcounted future. PENDING -> RUNNING -> FINISHED, or
** PENDING -> CANCELLED; a lock per future.
*/
#include <linux/futex.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

typedef struct callback {
  struct callback *next;
  conc_callback_fn fn;
  void *arg;
} callback;

/*
** Every pending task of a pool holds a future, so it is kept small: its
** fields ordered (and flags one byte each) so that no padding is left;
** no condition variable (the rare conc_future_wait brings its own, in a
** 'sleeper' watcher); and its lock an int (below), not a 40-byte
** pthread_mutex_t.
*/
struct conc_future {
  int kind;               /* CONC_SHARED_FUTURE: first, as every object
                          ** a payload refers to (payload.c) */
  int refs;               /* atomic */
  int mu;                 /* the lock: lock() and unlock() */
  conc_state_t state;     /* written under 'mu' with set_state; read
                          ** without it by conc_future_state */
  unsigned char settled;  /* done and every C callback returned */
  unsigned char failed;   /* payload is an exception */
  unsigned char foreign;  /* a proxy of another process's future: only
                          ** conc__future_settle_foreign completes it */
  uint64_t tag;           /* a proxy's forwarded id (proc.h), or 0 */
  /* running cancels (conc__future_stoppable onwards) */
  unsigned char stoppable;  /* its executor can stop its task */
  unsigned char stopreq;  /* a running cancel was asked: ends CANCELLED */
  unsigned char ended;    /* the task unwound: too late to stop it */
  void (*stopper)(void *arg);  /* asks the executor to stop the task */
  void *stopperarg;
  void *data;
  size_t len;
  conc_free_fn freefn;
  conc_callback_fn hook;    /* the owning pool's callback, before 'cbs' */
  void *hookarg;
  callback *cbs;            /* C callbacks, the newest first */
  conc__queue watchers;     /* conc__wnode nodes, fired when settled */
};

/*
** The lock: 0 free, 1 held, 2 held and maybe waited for; a waiter
** sleeps on the int as a (process-private) futex. This is the third
** mutex of Drepper's "Futexes Are Tricky": without contention a lock
** and an unlock are one atomic operation each. Critical sections are
** short and never wait on anything, so it does not spin.
*/
static void lock(int *l) {
  int c = 0;
  if (__atomic_compare_exchange_n(l, &c, 1, 0, __ATOMIC_ACQUIRE,
                                  __ATOMIC_RELAXED))
    return;
  if (c != 2)
    c = __atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE);
  while (c != 0) {
    syscall(SYS_futex, l, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    c = __atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE);
  }
}

static void unlock(int *l) {
  if (__atomic_exchange_n(l, 0, __ATOMIC_RELEASE) == 2)
    syscall(SYS_futex, l, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}


const char *conc_strerror(int code) {
  switch (code) {
    case 0: return "success";
    case CONC_EINVAL: return "invalid argument";
    case CONC_ESTATE: return "invalid state";
    case CONC_ETIMEDOUT: return "timed out";
    case CONC_ENOMEM: return "not enough memory";
    case CONC_ESHUTDOWN: return "cannot schedule new futures after shutdown";
    case CONC_EBROKEN: return "the pool is broken";
    case CONC_ESYS: return "system call failed";
    case CONC_ECLOSED: return "mailbox closed";
    default: return "unknown error";
  }
}


conc_future_t *conc_future_new(void) {
  conc_future_t *f = (conc_future_t *)calloc(1, sizeof(*f));
  if (f == NULL)
    return NULL;
  f->kind = CONC_SHARED_FUTURE;
  f->refs = 1;
  f->state = CONC_PENDING;
  conc__queue_init(&f->watchers);
  return f;
}

void conc_future_ref(conc_future_t *f) {
  int r = __atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
  conc_assert(r > 1);  /* a reference is taken only from another one */
  (void)r;
}

/* The last reference: a future that never completed may still hold
** callbacks (never to run) and mailbox posts (dropped). */
void conc_future_unref(conc_future_t *f) {
  callback *cb;
  int r = __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL);
  conc_assert(r >= 0);
  if (r != 0)
    return;
  while ((cb = f->cbs) != NULL) {
    f->cbs = cb->next;
    free(cb);
  }
  while (!conc__queue_empty(&f->watchers)) {
    conc__wnode *n = (conc__wnode *)conc__queue_head(&f->watchers);
    conc__queue_remove(&n->q);
    conc_assert(n->drop != NULL);
    n->drop(n);
  }
  if (f->freefn != NULL)
    f->freefn(f->data);
  free(f);
}

/* The payload is written before the state (release), so a reader that
** sees FINISHED (acquire) sees the payload too, which never changes
** again: reading either needs no lock. */
static void set_state(conc_future_t *f, conc_state_t s) {
  conc_assert(f->state == CONC_PENDING || f->state == CONC_RUNNING);
  __atomic_store_n(&f->state, s, __ATOMIC_RELEASE);
}

conc_state_t conc_future_state(conc_future_t *f) {
  return __atomic_load_n(&f->state, __ATOMIC_ACQUIRE);
}

int conc_future_done(conc_future_t *f) {
  conc_state_t s = conc_future_state(f);
  return s == CONC_FINISHED || s == CONC_CANCELLED;
}

int conc_future_set_running_or_notify_cancel(conc_future_t *f) {
  int r;
  lock(&f->mu);
  switch (f->state) {
    case CONC_PENDING: set_state(f, CONC_RUNNING); r = 1; break;
    case CONC_CANCELLED: r = 0; break;
    default: r = CONC_ESTATE; break;
  }
  unlock(&f->mu);
  return r;
}


/*
** Completion, in three steps so that waiters never see a half-done
** future: (1) under the lock, the state and payload change and the
** callback list is taken; (2) the C callbacks run outside the lock, so
** they may call back into this future; (3) under the lock again, the
** future is 'settled' and its watchers fire (waking its waiters). Lock
** order: future, then whatever a watcher takes (a mailbox's lock).
*/
static void settle(conc_future_t *f) {
  callback *cb = NULL, *next;
  conc_callback_fn hook = f->hook;
  while (f->cbs != NULL) {  /* reversed: in registration order */
    next = f->cbs->next;
    f->cbs->next = cb;
    cb = f->cbs;
    f->cbs = next;
  }
  f->hook = NULL;
  unlock(&f->mu);
  if (hook != NULL)
    hook(f, f->hookarg);
  while (cb != NULL) {
    next = cb->next;
    cb->fn(f, cb->arg);
    free(cb);
    cb = next;
  }
  lock(&f->mu);
  f->settled = 1;
  while (!conc__queue_empty(&f->watchers)) {
    conc__wnode *n = (conc__wnode *)conc__queue_head(&f->watchers);
    conc__queue_remove(&n->q);
    n->fire(n);
  }
  unlock(&f->mu);
}

static int finish(conc_future_t *f, void *data, size_t len,
                  conc_free_fn freefn, int failed) {
  lock(&f->mu);
  if (f->state == CONC_FINISHED || f->state == CONC_CANCELLED
      || f->foreign) {
    unlock(&f->mu);
    return CONC_ESTATE;
  }
  f->failed = (unsigned char)(failed != 0);
  f->data = data;
  f->len = len;
  f->freefn = freefn;
  set_state(f, CONC_FINISHED);
  settle(f);  /* unlocks */
  return 0;
}

int conc_future_set_result(conc_future_t *f, void *data, size_t len,
                           conc_free_fn freefn) {
  return finish(f, data, len, freefn, 0);
}

int conc_future_set_exception(conc_future_t *f, void *data, size_t len,
                              conc_free_fn freefn) {
  return finish(f, data, len, freefn, 1);
}

int conc_future_cancel(conc_future_t *f) {
  lock(&f->mu);
  switch (f->state) {
    case CONC_PENDING:
      set_state(f, CONC_CANCELLED);
      settle(f);  /* unlocks */
      return 1;
    case CONC_CANCELLED:
      unlock(&f->mu);
      return 1;
    default:
      unlock(&f->mu);
      return 0;
  }
}

/* The stopper runs under the future's lock, so once conc__future_end
** returned no stopper runs or will run: the executor may free what the
** stopper touches. Lock order: future, then what the stopper takes. */
int conc_future_cancel_running(conc_future_t *f) {
  lock(&f->mu);
  if (f->state == CONC_RUNNING && f->stoppable && !f->ended) {
    if (!f->stopreq) {
      f->stopreq = 1;
      if (f->stopper != NULL)
        f->stopper(f->stopperarg);
    }
    unlock(&f->mu);
    return 1;
  }
  unlock(&f->mu);
  return conc_future_cancel(f);
}

void conc__future_stoppable(conc_future_t *f) {
  lock(&f->mu);
  f->stoppable = 1;
  unlock(&f->mu);
}

void conc__future_begin(conc_future_t *f, void (*stopper)(void *arg),
                        void *arg) {
  lock(&f->mu);
  f->stopper = stopper;
  f->stopperarg = arg;
  if (f->stopreq && !f->ended)
    stopper(arg);
  unlock(&f->mu);
}

void *conc__future_stopperarg(conc_future_t *f,
                              void (*stopper)(void *arg)) {
  void *arg;
  lock(&f->mu);
  arg = f->stopper == stopper ? f->stopperarg : NULL;
  unlock(&f->mu);
  return arg;
}

int conc__future_end(conc_future_t *f) {
  int r;
  lock(&f->mu);
  f->ended = 1;
  f->stopper = NULL;
  r = f->stopreq;
  unlock(&f->mu);
  return r;
}

void conc__future_stopped(conc_future_t *f) {
  lock(&f->mu);
  if (f->state != CONC_RUNNING) {
    unlock(&f->mu);
    return;
  }
  set_state(f, CONC_CANCELLED);
  settle(f);  /* unlocks */
}

/* A thread blocked in conc_future_wait: a watcher on its own stack,
** with its own mutex for its condition variable ('fired' is written
** under both that mutex and the future's lock). */
typedef struct sleeper {
  conc__wnode n;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int fired;
} sleeper;

static void sleeper_fire(conc__wnode *n) {
  sleeper *s = conc__container_of(n, sleeper, n);
  pthread_mutex_lock(&s->mu);
  s->fired = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Link a sleeper (lock held): 0, or CONC_ESYS with nothing made. */
static int sleeper_init(conc_future_t *f, sleeper *s) {
  if (pthread_mutex_init(&s->mu, NULL) != 0)
    return CONC_ESYS;
  if (conc__cond_init(&s->cv) != 0) {
    pthread_mutex_destroy(&s->mu);
    return CONC_ESYS;
  }
  s->fired = 0;
  s->n.fire = sleeper_fire;
  s->n.drop = NULL;  /* the caller holds a reference */
  conc__queue_insert_tail(&f->watchers, &s->n.q);
  return 0;
}

/* Once the sleeper is woken or its deadline passed, the future's lock
** tells: either 'fire' has returned (it runs under that lock, so the
** sleeper may go), or it never will (the sleeper is unlinked first). */
int conc_future_wait(conc_future_t *f, double deadline) {
  sleeper s;
  int r = 0, fired;
  lock(&f->mu);
  if (f->settled) {
    unlock(&f->mu);
    return 0;
  }
  r = sleeper_init(f, &s);
  unlock(&f->mu);
  if (r != 0)
    return r;
  pthread_mutex_lock(&s.mu);
  while (!s.fired && r == 0)
    r = conc__cond_wait(&s.cv, &s.mu, deadline);
  pthread_mutex_unlock(&s.mu);
  lock(&f->mu);
  fired = s.fired;
  if (!fired)
    conc__queue_remove(&s.n.q);
  unlock(&f->mu);
  pthread_cond_destroy(&s.cv);
  pthread_mutex_destroy(&s.mu);
  return fired ? 0 : CONC_ETIMEDOUT;
}

int conc_future_payload(conc_future_t *f, const void **data, size_t *len,
                        int *failed) {
  if (conc_future_state(f) != CONC_FINISHED)
    return CONC_ESTATE;
  *data = f->data;
  *len = f->len;
  *failed = f->failed;
  return 0;
}

int conc_future_add_callback(conc_future_t *f, conc_callback_fn fn,
                             void *arg) {
  callback *cb;
  lock(&f->mu);
  if (f->state == CONC_FINISHED || f->state == CONC_CANCELLED) {
    unlock(&f->mu);
    fn(f, arg);
    return 0;
  }
  cb = (callback *)malloc(sizeof(*cb));
  if (cb == NULL) {
    unlock(&f->mu);
    return CONC_ENOMEM;
  }
  cb->next = f->cbs;
  cb->fn = fn;
  cb->arg = arg;
  f->cbs = cb;
  unlock(&f->mu);
  return 0;
}


/* The pool's callback in the future's own slot: no allocation, cannot
** fail. One per future; at once if it is done already. */
void conc__future_hook(conc_future_t *f, conc_callback_fn fn, void *arg) {
  lock(&f->mu);
  if (f->state == CONC_FINISHED || f->state == CONC_CANCELLED) {
    unlock(&f->mu);
    fn(f, arg);
    return;
  }
  conc_assert(f->hook == NULL);
  f->hook = fn;
  f->hookarg = arg;
  unlock(&f->mu);
}


/* A proxy stands for a future of the parent process in a forked worker
** (proc.c): RUNNING from the start, so no one here cancels it, and
** completed only with what the parent forwards. */
conc_future_t *conc__future_new_foreign(void) {
  conc_future_t *f = conc_future_new();
  if (f != NULL) {
    f->foreign = 1;
    f->state = CONC_RUNNING;
  }
  return f;
}

void conc__future_tag_foreign(conc_future_t *f, uint64_t id) {
  f->tag = id;
}

/* A task waiting on its own future waits forever: on a pool's worker
** thread, that future; in a forked child, the proxy of it (its tag
** names the running task). */
int conc_future_is_current(conc_future_t *f) {
  return f == conc_pool_current()
         || (f->tag != 0 && f->tag == conc__child_running());
}

/* Complete a proxy: FINISHED with the payload, or CANCELLED ('data' is
** then NULL). */
void conc__future_settle_foreign(conc_future_t *f, int cancelled,
                                 void *data, size_t len, conc_free_fn freefn,
                                 int failed) {
  lock(&f->mu);
  conc_assert(f->foreign && f->state == CONC_RUNNING);
  if (!cancelled) {
    f->failed = (unsigned char)(failed != 0);
    f->data = data;
    f->len = len;
    f->freefn = freefn;
  }
  set_state(f, cancelled ? CONC_CANCELLED : CONC_FINISHED);
  settle(f);  /* unlocks */
}


/* {======================================================================
** Watchers (mailbox.c): nodes that fire under the future's lock once it
** is settled, and can be unlinked until then.
** ======================================================================= */

int conc__future_watch(conc_future_t *f, conc__wnode *n) {
  int linked;
  lock(&f->mu);
  linked = !f->settled;
  if (linked)
    conc__queue_insert_tail(&f->watchers, &n->q);
  unlock(&f->mu);
  return linked;
}

void conc__future_unwatch(conc_future_t *f, conc__wnode *n) {
  lock(&f->mu);
  conc__queue_remove(&n->q);  /* harmless when already unlinked */
  unlock(&f->mu);
}

/* }====================================================================== */
