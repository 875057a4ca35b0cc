/*
** pool.c: the thread pool of one executor. Lazily started workers take
** intrusive tasks from one queue (a mutex and a condition variable).
*/
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/*
** Default worker stack. A Lua worker runs Lua code that may recurse
** through C calls (a C function calling back into Lua, pattern matching,
** the codec): Lua allows LUAI_MAXCCALLS (200) C levels, a few KiB each.
** 1 MiB holds that with room to spare; glibc's default (8 MiB, from the
** stack rlimit) would reserve much address space in large pools.
** Sanitizers grow stack frames severalfold, so their builds get 4x.
*/
#if !defined(CONC_POOL_STACK)
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CONC_POOL_STACK (4 * 1024 * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CONC_POOL_STACK (4 * 1024 * 1024)
#endif
#endif
#endif
#if !defined(CONC_POOL_STACK)
#define CONC_POOL_STACK (1024 * 1024)
#endif

/* Linux limits a thread name to 15 bytes and its NUL. */
#define NAMELEN 15

/* Prefix of the thread names when the options give none. */
#define DEFPREFIX "conc"

/*
** How long (seconds) one idle worker polls the queue before it sleeps.
** A task submitted meanwhile starts without a wake-up system call: this
** cuts a sequential submit/wait round trip about threefold (a Lua
** 'submit' right after a 'result' comes within microseconds). Only one
** worker polls at a time, only while a core is left for it (see
** conc__spin_begin), and it yields its core between polls, so a busy
** owner thread on a small machine still gets the CPU.
*/
#if !defined(CONC_POOL_SPIN)
#define CONC_POOL_SPIN 50e-6
#endif

/* Room for so many worker thread ids at first (grown on demand). */
#define INITTIDS 16

/* The task links are the pool's 'void *q_[2]'. */
typedef char qsize_check[sizeof(((conc_task_t *)0)->q_) == sizeof(conc__queue)
                         ? 1 : -1];

#define taskq(t) ((conc__queue *)(void *)(t)->q_)
#define qtask(q) conc__container_of((void *)(q), conc_task_t, q_)

/*
** A task's life in the pool: its state (the low bits of its 'ps_',
** above them its pool), read and written under the pool lock. At
** submit the pool registers 'conc__pool_done' on the task's future, so
** a user's cancel drops a queued task at once. Both 'conc__pool_done'
** and a thread that took the task off the queue (a worker, shutdown, a
** broken pool's drain) may learn that the future was cancelled; the
** second of the two to look drops the task, so the first never touches
** it again and neither sees it freed.
*/
enum {
  T_SUBMITTING,   /* the hook ('conc__pool_done') registered, not queued */
  T_QUEUED,       /* linked in 'p->queue' */
  T_TAKEN,        /* off the queue: the taker asks the future what to do */
  T_SEEN,         /* the hook saw it cancelled first: the taker drops it */
  T_LEFT,         /* the taker saw it cancelled first: the hook drops it */
  T_REFUSED       /* submit failed: the task is the caller's again */
};

/* A task's pool and state share its 'ps_' (a pool is malloc'd, so its
** low bits are free): the state changes under the pool lock while other
** threads read the pool without it, so the word is accessed atomically. */
#define SMASK ((uintptr_t)7)
#define tpool(t) \
  ((conc_pool_t *)(__atomic_load_n(&(t)->ps_, __ATOMIC_RELAXED) & ~SMASK))
#define tstate(t) ((int)(__atomic_load_n(&(t)->ps_, __ATOMIC_RELAXED) & SMASK))
#define tset(t, s) __atomic_store_n(&(t)->ps_, \
  (__atomic_load_n(&(t)->ps_, __ATOMIC_RELAXED) & ~SMASK) | (uintptr_t)(s), \
  __ATOMIC_RELAXED)

struct conc_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;       /* idle workers: work queued, or closing */
  pthread_cond_t donecv;   /* shutdown waiters: a worker or task ended */
  conc__queue queue;       /* T_QUEUED tasks, through their 'q_' */
  int shutdown;
  int broken;              /* written atomically under the lock, for
                           ** conc__pool_broken */
  int workers;             /* started and not yet exited */
  int nidle;               /* workers waiting on 'cv' */
  int nwake;               /* signals sent to idle workers, not yet taken */
  int nspin;               /* workers polling 'pending' (0 or 1) */
  int nstarted;            /* names the next worker "<prefix>_<n>" */
  int nthreads, njoined, ntids;  /* 'tids' made, joined and allocated */
  pthread_t *tids;
  long tasks;              /* accepted and not yet run or dropped */
  long pending;            /* queued tasks; written atomically for 'spin' */
  long accepted;           /* tasks ever queued (or dropped at submit) */
  /*
  ** Outcomes, counted atomically, some by 'conc__pool_ended' without the
  ** lock. Each end is one step, and 'running' is what 'accepted' leaves
  ** beside 'pending' and them: a counter of its own, moved down and the
  ** outcome up in two steps outside the lock, let stats read in between
  ** miss the task.
  */
  long completed, failed, cancelled;
  size_t stack;
  char prefix[NAMELEN + 1];
  conc_pool_opts_t opts;
};


/* Lock held. 'spin' reads 'pending' without the lock. */
#define addpending(p, d) __atomic_add_fetch(&(p)->pending, (d), __ATOMIC_RELAXED)

#define bump(p, field, d) __atomic_add_fetch(&(p)->field, (d), __ATOMIC_RELAXED)
#define peek(p, field) __atomic_load_n(&(p)->field, __ATOMIC_RELAXED)

/*
** The task a worker thread is running, so that 'conc__pool_ended' counts
** its outcome while the future completes, before the future is seen
** done: stats read after f:done() or a wait include the task. It is
** found through the thread (not the task, which 'run' may have freed
** already), and set only on a pool's own workers: a future completed on
** any other thread is counted by its worker once 'run' returned.
*/
typedef struct current {
  conc_pool_t *p;
  conc_future_t *f;   /* the future of the running task, or NULL */
  int counted;        /* 'conc__pool_ended' counted its outcome */
} current;

/* initial-exec: glibc then reserves it when the module loads, instead
** of a lazy allocation on a thread's first use, which aborts the whole
** process when it fails ("cannot allocate memory for thread-local"). */
static __thread current *cur __attribute__((tls_model("initial-exec")));

/* A task ran: count its outcome ('failed' tells an exception). */
static void count_ran(conc_pool_t *p, int failed) {
  if (failed)
    bump(p, failed, 1);
  else
    bump(p, completed, 1);
}

/* {======================================================================
** Task endings
** ======================================================================= */

/* A task ran or was dropped (lock held): wake shutdown waiters when the
** last one ends. */
static void task_end(conc_pool_t *p) {
  p->tasks--;
  if (p->tasks == 0 && (p->shutdown || p->broken))
    pthread_cond_broadcast(&p->donecv);
}

/* Hand 't' to its 'drop' (without the lock), then release the pool's
** future reference. 'why' is 0 (cancelled) or CONC_EBROKEN; the caller
** counted the task's end first, so that a broken task is in the stats
** once its future fails. */
static void drop_task(conc_pool_t *p, conc_task_t *t, int why) {
  conc_future_t *f = t->future;
  t->drop(t, why);  /* frees 't' */
  conc_future_unref(f);
  pthread_mutex_lock(&p->mu);
  task_end(p);
  pthread_mutex_unlock(&p->mu);
}

/*
** The taker of 't' asked its future to start (or to cancel) and got 'r':
** 0 means it is cancelled, and whichever of the taker and 'conc__pool_done'
** looks second drops it ('conc__pool_done' counted it either way);
** CONC_ESTATE means someone else completed it, so the task will never
** run and is dropped at once.
*/
static void unrun(conc_pool_t *p, conc_task_t *t, int r) {
  int mine = 1;
  if (r == 0) {
    pthread_mutex_lock(&p->mu);
    mine = (tstate(t) == T_SEEN);
    if (!mine)
      tset(t, T_LEFT);
    pthread_mutex_unlock(&p->mu);
  }
  if (r != 0)
    bump(p, cancelled, 1);
  if (mine)
    drop_task(p, t, 0);
}

/*
** The future of the task this thread runs ends, with the future's lock
** held and before its new state is published: count the outcome now,
** so that a thread that sees the future done (even by a lock-free
** f:done()) reads stats that include it. A future completed on any
** other thread is counted by its worker once 'run' returned.
*/
void conc__pool_ended(conc_future_t *f, conc_state_t s, int failed) {
  if (cur == NULL || cur->f != f)
    return;
  if (s == CONC_CANCELLED)
    bump(cur->p, cancelled, 1);
  else
    count_ran(cur->p, failed);
  cur->counted = 1;
}

/*
** The C callback of every accepted task's future, its hook
** (conc__future_hook). When the future was cancelled the task never
** ran, so 't' is alive until this callback and its taker agree who
** drops it; the cancel is counted here, under the lock that moves the
** task out of 'pending', so that the task is cancelled in the stats by
** the time the cancel returns (a worker may not look at a task it took
** for a while). A cancel before the task was queued is counted by
** 'submit', which has not counted the task accepted yet. A finished
** future means the task ran or was dropped by the pool (its outcome
** counted already, 'conc__pool_ended'), and 't' may be gone: it is not
** touched.
** It may run on any thread, inside conc_future_cancel, with no future
** lock held: the lock order is never future -> pool.
*/
void conc__pool_done(conc_future_t *f, void *arg) {
  conc_task_t *t = (conc_task_t *)arg;
  conc_pool_t *p;
  int mine = 0;
  if (conc_future_state(f) == CONC_FINISHED
      || (cur != NULL && cur->f == f))  /* its worker stopped it running */
    return;
  p = tpool(t);  /* not finished but done: cancelled */
  pthread_mutex_lock(&p->mu);
  switch (tstate(t)) {
    case T_QUEUED:
      conc__queue_remove(taskq(t));
      addpending(p, -1);
      bump(p, cancelled, 1);
      mine = 1;
      break;
    case T_LEFT:
      bump(p, cancelled, 1);
      mine = 1;
      break;
    case T_TAKEN:
      bump(p, cancelled, 1);
      tset(t, T_SEEN);
      break;
    case T_SUBMITTING:
      tset(t, T_SEEN);
      break;
    default:  /* T_REFUSED: the caller's task */
      break;
  }
  pthread_mutex_unlock(&p->mu);
  if (mine)
    drop_task(p, t, 0);
}

/* Move every queued task to 'to' as T_TAKEN (lock held). */
static void take_all(conc_pool_t *p, conc__queue *to) {
  conc__queue *q;
  conc__queue_move(&p->queue, to);
  for (q = conc__queue_head(to); q != to; q = q->next) {
    tset(qtask(q), T_TAKEN);
    addpending(p, -1);
  }
}

/*
** End the tasks taken by 'take_all' (without the lock). shutdown cancels
** their futures; a broken pool makes them RUNNING, which no cancel can
** undo, so that 'drop' completes them with an exception undisturbed.
*/
static void end_taken(conc_pool_t *p, conc__queue *taken, int broken) {
  while (!conc__queue_empty(taken)) {
    conc__queue *q = conc__queue_head(taken);
    conc_task_t *t = qtask(q);
    int r;
    conc__queue_remove(q);
    if (!broken)
      unrun(p, t, conc_future_cancel(t->future) == 1 ? 0 : CONC_ESTATE);
    else if ((r = conc_future_set_running_or_notify_cancel(t->future))
             == 1) {
      bump(p, failed, 1);
      drop_task(p, t, CONC_EBROKEN);
    }
    else
      unrun(p, t, r);
  }
}

/* }====================================================================== */


/* {======================================================================
** Workers
** ======================================================================= */

/* Name the calling worker "<prefix>_<n>", shortening the prefix so that
** the number always fits in the name. */
static void set_name(conc_pool_t *p, int n) {
  char num[16], name[NAMELEN + 1];
  size_t len = (size_t)snprintf(num, sizeof(num), "_%d", n);
  size_t plen = strlen(p->prefix);
  if (plen > NAMELEN - len)
    plen = NAMELEN - len;
  memcpy(name, p->prefix, plen);
  memcpy(name + plen, num, len + 1);
  pthread_setname_np(pthread_self(), name);
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Workers running a task and threads polling, in the whole process;
** the cores the process may use (0: not known yet). A forked child
** inherits the counts of that moment, which never go down there: it
** polls less, never more. */
static int nbusy, nspinning, ncores;

static int cores(void) {
  int n = __atomic_load_n(&ncores, __ATOMIC_RELAXED);
  if (n == 0) {
    cpu_set_t set;
    n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
        : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
      n = 1;
    __atomic_store_n(&ncores, n, __ATOMIC_RELAXED);
  }
  return n;
}

void conc__spin_busy(int d) {
  __atomic_add_fetch(&nbusy, d, __ATOMIC_RELAXED);
}

int conc__spin_ok(void) {
  return __atomic_load_n(&nbusy, __ATOMIC_RELAXED)
         + __atomic_load_n(&nspinning, __ATOMIC_RELAXED) <= cores();
}

int conc__spin_begin(void) {
  __atomic_add_fetch(&nspinning, 1, __ATOMIC_RELAXED);
  if (conc__spin_ok())
    return 1;
  conc__spin_end();
  return 0;
}

void conc__spin_end(void) {
  __atomic_sub_fetch(&nspinning, 1, __ATOMIC_RELAXED);
}

/* Poll for queued work for up to CONC_POOL_SPIN seconds (no lock held),
** while the cores allow (conc__spin_ok). */
static void spin(conc_pool_t *p) {
  double end = conc_now() + CONC_POOL_SPIN;
  unsigned i;
  for (i = 1; __atomic_load_n(&p->pending, __ATOMIC_RELAXED) == 0; i++) {
    cpu_relax();
    if (i % 64 == 0) {
      if (conc_now() >= end || !conc__spin_ok())
        return;
      sched_yield();
    }
  }
}

/*
** The next task for a worker (lock held), or NULL once the pool is
** closing and the queue is empty: queued tasks run before workers exit.
** A worker finds its next task without sleeping while the queue has
** one; on an empty queue it polls a while (if no other worker does),
** then sleeps.
*/
static conc_task_t *next_task(conc_pool_t *p) {
  conc_task_t *t;
  int spun = 0;
  while (conc__queue_empty(&p->queue)) {
    if (p->shutdown || p->broken)
      return NULL;
    if (p->nspin == 0 && !spun && conc__spin_begin()) {
      p->nspin++;
      pthread_mutex_unlock(&p->mu);
      spin(p);
      conc__spin_end();
      pthread_mutex_lock(&p->mu);
      p->nspin--;
      spun = 1;
      continue;
    }
    p->nidle++;
    pthread_cond_wait(&p->cv, &p->mu);
    p->nidle--;
    if (p->nwake > 0)
      p->nwake--;
    spun = 0;
  }
  t = qtask(conc__queue_head(&p->queue));
  conc__queue_remove(taskq(t));
  tset(t, T_TAKEN);
  addpending(p, -1);
  return t;
}

/* Run 't' unless its future was cancelled: 1 if it ran, 0 if it was
** dropped (and counted as such). */
static int perform(conc_pool_t *p, conc_task_t *t, void *ctx) {
  conc_future_t *f = t->future;  /* 'run' may free 't' */
  const void *data;
  size_t len;
  int failed;
  int r = conc_future_set_running_or_notify_cancel(f);
  if (r != 1) {
    unrun(p, t, r);
    return 0;
  }
  cur->f = f;
  cur->counted = 0;
  t->run(t, ctx);
  cur->f = NULL;
  /* completed elsewhere, or by a 'run' that broke its contract and left
  ** its future unfinished: then the task counts as failed */
  if (!cur->counted)
    count_ran(p, conc_future_payload(f, &data, &len, &failed) != 0 || failed);
  conc_future_unref(f);
  return 1;
}

/* Take and run tasks until the pool closes and its queue is empty. */
static void work(conc_pool_t *p, void *ctx) {
  conc_task_t *t;
  pthread_mutex_lock(&p->mu);
  while ((t = next_task(p)) != NULL) {
    int ran;
    pthread_mutex_unlock(&p->mu);
    conc__spin_busy(1);
    ran = perform(p, t, ctx);
    conc__spin_busy(-1);
    pthread_mutex_lock(&p->mu);
    if (ran)
      task_end(p);
  }
  pthread_mutex_unlock(&p->mu);
}

/* A worker could not start: the pool is broken. Every queued task is
** dropped with CONC_EBROKEN and the other workers leave once idle. */
static void pool_break(conc_pool_t *p) {
  conc__queue taken;
  pthread_mutex_lock(&p->mu);
  __atomic_store_n(&p->broken, 1, __ATOMIC_RELEASE);
  take_all(p, &taken);
  p->workers--;
  pthread_cond_broadcast(&p->cv);
  pthread_cond_broadcast(&p->donecv);
  pthread_mutex_unlock(&p->mu);
  end_taken(p, &taken, 1);
}

/* A worker could not start ('r' from worker_start). CONC_EBROKEN (the
** user's setup failed) breaks the pool; a lack of resources breaks it
** only when no other worker is left to take the queued tasks. */
static void leave_unstarted(conc_pool_t *p, int r) {
  int others;
  pthread_mutex_lock(&p->mu);
  others = p->workers > 1 && !p->broken;
  if (r != CONC_EBROKEN && others) {
    p->workers--;
    pthread_cond_broadcast(&p->donecv);
  }
  pthread_mutex_unlock(&p->mu);
  if (r == CONC_EBROKEN || !others)
    pool_break(p);
}

static void *worker_main(void *arg) {
  conc_pool_t *p = (conc_pool_t *)arg;
  current me;
  void *ctx = NULL;
  int n, r;
  me.p = p;
  me.f = NULL;
  me.counted = 0;
  cur = &me;
  pthread_mutex_lock(&p->mu);
  n = p->nstarted++;
  pthread_mutex_unlock(&p->mu);
  set_name(p, n);
  if (p->opts.worker_start != NULL &&
      (r = p->opts.worker_start(p->opts.ud, &ctx)) != 0) {
    leave_unstarted(p, r);  /* a worker that never started does not stop */
    return NULL;
  }
  work(p, ctx);
  if (p->opts.worker_stop != NULL)
    p->opts.worker_stop(p->opts.ud, ctx);
  pthread_mutex_lock(&p->mu);
  p->workers--;
  pthread_cond_broadcast(&p->donecv);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* Start one more worker (lock held: it waits for the lock to begin). */
static int spawn(conc_pool_t *p) {
  pthread_t tid;
  int r;
  if (p->nthreads == p->ntids) {
    int n = p->ntids * 2;
    pthread_t *tids = (pthread_t *)realloc(p->tids, (size_t)n * sizeof(*tids));
    if (tids == NULL)
      return CONC_ENOMEM;
    p->tids = tids;
    p->ntids = n;
  }
  r = conc__thread_start(&tid, p->stack, worker_main, p);
  if (r != 0)
    return r;
  p->tids[p->nthreads++] = tid;
  p->workers++;
  return 0;
}

/* }====================================================================== */


/* {======================================================================
** Pool
** ======================================================================= */

static size_t stack_size(size_t want) {
  long page = sysconf(_SC_PAGESIZE);
  size_t min = (size_t)PTHREAD_STACK_MIN;
  if (want == 0)
    want = CONC_POOL_STACK;
  if (want < min)
    want = min;
  if (page > 0 && want % (size_t)page != 0)
    want += (size_t)page - want % (size_t)page;
  return want;
}

/* Initialize the pool's locks: 0, or nonzero with nothing left held. */
static int init_sync(conc_pool_t *p) {
  if (pthread_mutex_init(&p->mu, NULL) != 0)
    return -1;
  if (pthread_cond_init(&p->cv, NULL) != 0) {
    pthread_mutex_destroy(&p->mu);
    return -1;
  }
  if (pthread_cond_init(&p->donecv, NULL) != 0) {
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    return -1;
  }
  return 0;
}

conc_pool_t *conc_pool_new(const conc_pool_opts_t *opts) {
  conc_pool_t *p;
  const char *prefix;
  if (opts == NULL || opts->max_workers <= 0
      || opts->max_workers > CONC_MAX_WORKERS) {
    errno = EINVAL;
    return NULL;
  }
  p = (conc_pool_t *)calloc(1, sizeof(*p));
  if (p == NULL)
    return NULL;
  p->ntids = opts->max_workers < INITTIDS ? opts->max_workers : INITTIDS;
  p->tids = (pthread_t *)malloc((size_t)p->ntids * sizeof(*p->tids));
  if (p->tids == NULL || init_sync(p) != 0) {
    free(p->tids);
    free(p);
    errno = ENOMEM;
    return NULL;
  }
  conc__queue_init(&p->queue);
  p->opts = *opts;
  prefix = opts->name_prefix != NULL ? opts->name_prefix : DEFPREFIX;
  snprintf(p->prefix, sizeof(p->prefix), "%s", prefix);
  p->opts.name_prefix = p->prefix;  /* the caller's string may go */
  p->stack = stack_size(opts->stack_size);
  return p;
}

/* Why 'p' takes no task, or 0 (lock held). */
static int closed(conc_pool_t *p) {
  return p->broken ? CONC_EBROKEN : p->shutdown ? CONC_ESHUTDOWN : 0;
}

/* Make sure a worker will take the next task (lock held): a new one
** starts when none is idle, up to the maximum. Only a pool without any
** worker must refuse the task when one cannot start. */
static int ensure_worker(conc_pool_t *p) {
  int r;
  if (p->nidle > p->nwake || p->nspin > p->pending ||
      p->workers >= p->opts.max_workers)
    return 0;
  r = spawn(p);
  return p->workers > 0 ? 0 : r;
}

/* Queue an admitted task and wake one sleeping worker if any, unless a
** polling worker will take it (lock held). */
static void enqueue(conc_pool_t *p, conc_task_t *t) {
  conc__queue_insert_tail(&p->queue, taskq(t));
  tset(t, T_QUEUED);
  addpending(p, 1);
  p->tasks++;
  p->accepted++;
  if (p->nidle > p->nwake && p->pending > p->nspin) {
    p->nwake++;
    pthread_cond_signal(&p->cv);
  }
}

/*
** A refused task goes back to its caller, but 'conc__pool_done' stays
** registered on its future. Cancel the future and wait until its
** callbacks returned, so that 'conc__pool_done' has seen T_REFUSED and
** can never look at the task again. A future someone else already
** started or completed never reaches 'conc__pool_done' as cancelled.
*/
static void refuse(conc_task_t *t) {
  if (conc_future_cancel(t->future) == 1)
    conc_future_wait(t->future, CONC_FOREVER);
}

/*
** Lock order: the pool lock is never held while a future function is
** called here, and 'conc__pool_done' (which takes it) runs outside any
** future lock, so a future's lock and the pool's are never nested.
*/
static int submit(conc_pool_t *p, conc_task_t *t, int fresh) {
  int r;
  if (p == NULL || t == NULL || t->future == NULL || t->run == NULL ||
      t->drop == NULL)
    return CONC_EINVAL;
  t->ps_ = (uintptr_t)p | T_SUBMITTING;
  if (fresh)
    conc__future_hooknew(t->future, t);
  else if (conc__future_hook(t->future, t) != 0)
    return CONC_ESTATE;  /* another task's future: nothing changed */
  pthread_mutex_lock(&p->mu);
  r = closed(p);
  if (r == 0 && tstate(t) == T_SEEN) {  /* cancelled before it was queued */
    p->tasks++;
    p->accepted++;
    bump(p, cancelled, 1);
    pthread_mutex_unlock(&p->mu);
    drop_task(p, t, 0);
    return 0;
  }
  if (r == 0)
    r = ensure_worker(p);
  if (r == 0) {
    enqueue(p, t);
    pthread_mutex_unlock(&p->mu);
    return 0;
  }
  tset(t, T_REFUSED);
  pthread_mutex_unlock(&p->mu);
  refuse(t);
  return r;
}

int conc_pool_submit(conc_pool_t *p, conc_task_t *t) {
  return submit(p, t, 0);
}

/* A task whose future no other thread sees yet: its hook is set without
** the future's lock (a lock round trip less on every submit). */
int conc__pool_submitnew(conc_pool_t *p, conc_task_t *t) {
  return submit(p, t, 1);
}

/* Join the workers no other caller is joining, then wait until every
** worker has exited and every task ended (cancelled tasks may still be
** in their 'drop' on the threads that cancelled them). */
static void join_all(conc_pool_t *p) {
  int i, from, to;
  pthread_mutex_lock(&p->mu);
  from = p->njoined;
  to = p->njoined = p->nthreads;
  pthread_mutex_unlock(&p->mu);
  for (i = from; i < to; i++)
    pthread_join(p->tids[i], NULL);
  pthread_mutex_lock(&p->mu);
  while (p->workers > 0 || p->tasks > 0)
    pthread_cond_wait(&p->donecv, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

/* With 'wait', refused on one of the pool's own workers (a task, a
** callback it runs, worker_start): the worker would join itself. No
** worker starts after shutdown, so 'tids' no longer moves once
** 'shutdown' is set. */
int conc_pool_shutdown(conc_pool_t *p, int wait, int cancel) {
  conc__queue taken;
  if (wait && cur != NULL && cur->p == p)
    return CONC_EINVAL;
  pthread_mutex_lock(&p->mu);
  p->shutdown = 1;
  conc__queue_init(&taken);
  if (cancel)
    take_all(p, &taken);
  if (p->nidle > 0)
    pthread_cond_broadcast(&p->cv);  /* idle workers leave */
  pthread_mutex_unlock(&p->mu);
  end_taken(p, &taken, 0);
  if (wait)
    join_all(p);
  return 0;
}

/* Freeing waits for running and queued tasks to end (shutdown(1, 0)):
** after shutdown(0, ...), free still joins every worker. */
void conc_pool_free(conc_pool_t *p) {
  if (p == NULL)
    return;
  conc_pool_shutdown(p, 1, 0);
  pthread_cond_destroy(&p->donecv);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->tids);
  free(p);
}

void conc_pool_stats(conc_pool_t *p, conc_pool_stats_t *s) {
  pthread_mutex_lock(&p->mu);
  s->workers = p->workers;
  s->idle = p->nidle - p->nwake + p->nspin;
  s->pending = p->pending;
  s->completed = peek(p, completed);
  s->failed = peek(p, failed);
  s->cancelled = peek(p, cancelled);
  /* the tasks taken and not yet counted ended (some being dropped): a
  ** task leaves 'pending' under this lock before its end is counted */
  s->running = p->accepted - s->pending - s->completed - s->failed
               - s->cancelled;
  s->broken = p->broken;
  pthread_mutex_unlock(&p->mu);
}

/* }====================================================================== */

void *conc__task_ud(const conc_task_t *t) {
  return tpool(t)->opts.ud;
}

int conc__pool_broken(conc_pool_t *p) {
  return __atomic_load_n(&p->broken, __ATOMIC_ACQUIRE);
}

conc_future_t *conc_pool_current(void) {
  return cur != NULL ? cur->f : NULL;
}
