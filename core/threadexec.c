/*
** threadexec.c: the thread pool as an executor back-end. Tasks are
** payloads that a worker hands to the runtime; the outcome completes the
** task's future here, so the runtime never touches a future.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

typedef struct texec {
  conc_executor_t base;
  conc_pool_t *pool;
  conc_runtime_t rt;
  conc__tasktimer timer;  /* the time limits of running tasks */
  pthread_mutex_t mu;
  char *why;       /* the last worker start failure, for a broken pool */
  int nostart;     /* no worker could ever start: broken without the pool */
  int nextid;      /* numbers the workers */
  void **ctxs;     /* the started workers' contexts (under 'mu') */
  pid_t self;      /* the process that made it, */
  unsigned long forks;  /* and conc__forks() then (see 'forked') */
  int nctxs, sizectxs;
} texec;

/* A task: the core task plus the encoded fn and arguments. It waits
** in the queue, so it holds only what a pending task needs (its
** executor is its pool's 'ud': conc__task_ud). Made by 'tx_newtask', it
** lives in its future's block, its payload right after it. */
typedef struct ttask {
  conc_task_t base;
  conc_payload_t *payload;
  double timeout;      /* seconds from its start, or 0 */
} ttask;

/* What stops a running task, on its worker's stack while it runs: the
** stopper runs only between conc__future_begin and conc__future_end,
** and the timer lets go of 'limit' and the stop's 'again' before the
** task ends. */
typedef struct trun {
  texec *ex;
  ttask *tt;
  int placed;          /* the outcome took its payload's room */
  conc__taskstop stop; /* its controls, the worker's interrupt */
  conc__tnode limit;   /* in the timer while it runs with a timeout */
} trun;

/* A running cancel (under the future's lock, any thread). */
static void task_stopper(void *arg) {
  conc__taskstop_ask(&((trun *)arg)->stop, CONC_STOP_CANCEL);
}

/* The task's time is up (on the timer's thread). */
static void task_expired(conc__tnode *n) {
  conc__taskstop_ask(&conc__container_of(n, trun, limit)->stop,
                     CONC_STOP_TIMEOUT);
}

/* Release what the task holds: its payload's references, and its
** memory unless that is its future's. */
static void task_free(ttask *tt) {
  int inblock = tt->payload->inblock;
  conc_payload_free(tt->payload);
  if (!inblock)
    free(tt);
}

/* Free the task once it ran; the outcome '*out' moves into the room
** its payload leaves in its future's block, when it fits. */
static void taskdone(ttask *tt, conc_payload_t **out) {
  conc_payload_t *args = tt->payload;
  size_t room = conc__payload_room(args->size, args->nfutures);
  int inblock = args->inblock;
  task_free(tt);
  if (inblock)
    *out = conc__payload_move(*out, args, room);
}

/* The runtime's outcome, made in the room its task's payload leaves in
** its future's block when it fits: where taskdone would copy it, from
** a block of its own that the worker made for it and then freed (a
** tenth of a small task's cost in the worker). The runtime read the
** payload already, so it gives back its references first. */
static conc_payload_t *task_place(conc_taskctl_t *ctl, size_t len,
                                  size_t nfutures) {
  trun *r = conc__container_of(ctl, trun, stop.ctl);
  conc_payload_t *args = r->tt->payload;
  size_t need = conc__payload_room(len, nfutures);
  if (r->placed || !args->inblock || need == 0
      || need > conc__payload_room(args->size, args->nfutures))
    return NULL;
  conc_payload_free(args);
  r->placed = 1;
  return conc__payload_place(args, len, nfutures);
}

/* Run the task with its stoppers armed; a running cancel asked before
** it unwound ends its future CANCELLED, whatever came out. */
static void task_run(conc_task_t *t, void *ctx) {
  ttask *tt = (ttask *)t;
  conc_future_t *f = t->future;
  conc_payload_t *out;
  trun r;
  int failed = 1, stopped;
  r.ex = (texec *)conc__task_ud(t);
  r.tt = tt;
  r.placed = 0;
  conc__taskstop_init(&r.stop, &r.ex->timer, r.ex->rt.interrupt, ctx);
  r.stop.ctl.timeout = tt->timeout;
  r.stop.ctl.place = task_place;
  r.limit.fire = task_expired;
  r.limit.at = -1;
  conc__future_begin(f, task_stopper, &r);
  out = conc__taskstop_run(&r.stop, &r.limit, &r.ex->rt, tt->payload,
                           &failed);
  stopped = conc__future_end(f);  /* no stopper runs after this */
  conc__taskstop_end(&r.stop);
  if (!r.placed)  /* else the payload is given back, in its block */
    taskdone(tt, &out);
  if (stopped) {
    conc_payload_free(out);
    conc__future_stopped(f);
  } else {
    conc__payload_complete(f, out, failed);
  }
}

/* The message of a broken pool (a copy), or NULL. */
static char *brokenmsg(texec *ex) {
  char *msg;
  pthread_mutex_lock(&ex->mu);
  msg = strdup(ex->why != NULL ? ex->why : "a worker failed to start");
  pthread_mutex_unlock(&ex->mu);
  return msg;
}

/* Never to run: cancelled (the future says so already), or the pool is
** broken (the future learns it here). */
static void task_drop(conc_task_t *t, int why) {
  ttask *tt = (ttask *)t;
  if (why == CONC_EBROKEN) {
    texec *ex = (texec *)conc__task_ud(t);
    char *msg = brokenmsg(ex);
    conc__payload_complete(t->future, msg != NULL ? conc_payload_error(
        ex->base.ops->broken_class, msg) : NULL, 1);
    free(msg);
  }
  task_free(tt);
}

/* Record why a worker could not start; "<prefix><reason>". */
static void setwhy(texec *ex, const char *prefix, const char *reason) {
  size_t lp = strlen(prefix), lr = strlen(reason);
  char *msg = (char *)malloc(lp + lr + 1);
  if (msg == NULL)
    return;
  memcpy(msg, prefix, lp);
  memcpy(msg + lp, reason, lr + 1);
  pthread_mutex_lock(&ex->mu);
  free(ex->why);
  ex->why = msg;
  pthread_mutex_unlock(&ex->mu);
}

/* Keep a started worker's context for stats: 0, or CONC_ENOMEM. */
static int addctx(texec *ex, void *ctx) {
  int r = 0;
  pthread_mutex_lock(&ex->mu);
  if (ex->nctxs == ex->sizectxs) {
    int n = ex->sizectxs ? 2 * ex->sizectxs : 8;
    void **c = (void **)realloc(ex->ctxs, (size_t)n * sizeof(*c));
    if (c == NULL)
      r = CONC_ENOMEM;
    else {
      ex->ctxs = c;
      ex->sizectxs = n;
    }
  }
  if (r == 0)
    ex->ctxs[ex->nctxs++] = ctx;
  pthread_mutex_unlock(&ex->mu);
  return r;
}

static int worker_start(void *ud, void **ctx) {
  texec *ex = (texec *)ud;
  char *why = NULL;
  int id = __atomic_add_fetch(&ex->nextid, 1, __ATOMIC_RELAXED);
  int r = ex->rt.start(ex->rt.ud, id, ctx, &why);
  if (r == 0 && (r = addctx(ex, *ctx)) != 0)
    ex->rt.stop(ex->rt.ud, *ctx);
  if (r != 0) {
    char none[CONC__STARTWHY];
    if (why == NULL)
      conc__startwhy(none, sizeof(none), r);
    setwhy(ex, r == CONC_EBROKEN ? "initializer failed: "
                                 : "cannot start a worker: ",
           why != NULL ? why : none);
    free(why);
  }
  return r;
}

static void worker_stop(void *ud, void *ctx) {
  texec *ex = (texec *)ud;
  int i;
  pthread_mutex_lock(&ex->mu);
  for (i = 0; i < ex->nctxs; i++)
    if (ex->ctxs[i] == ctx) {
      ex->ctxs[i] = ex->ctxs[--ex->nctxs];
      break;
    }
  pthread_mutex_unlock(&ex->mu);
  ex->rt.stop(ex->rt.ud, ctx);
}

/* A host may fork while the pool runs: the child's copy has none of its
** threads, and their locks may have been held at the fork. As in a
** forked copy of a process pool (proc.c), no operation of the copy
** takes a lock or waits: submit fails (broken there, saying why),
** shutdown does nothing, stats are empty, free leaves it to the exit. */
static int forked(texec *ex) {
  return conc__forks() != ex->forks;
}

static int tx_submit(conc_executor_t *b, conc_future_t *f,
                     conc_payload_t *task, double timeout) {
  texec *ex = (texec *)b;
  ttask *t;
  int r;
  if (f == NULL || task == NULL)
    return CONC_EINVAL;
  /* refused before the pool saw it: its future is cancelled here, as
  ** the pool cancels those it refuses (the executor contract) */
  if (forked(ex) || __atomic_load_n(&ex->nostart, __ATOMIC_ACQUIRE)) {
    conc_future_cancel(f);
    return CONC_EBROKEN;
  }
  t = task->inblock ? (ttask *)conc__future_room(f)
                    : (ttask *)calloc(1, sizeof(*t));
  if (t == NULL) {
    conc_future_cancel(f);
    return CONC_ENOMEM;
  }
  conc_assert(!task->inblock || t->payload == task);  /* its own future */
  t->payload = task;
  t->timeout = timeout;
  t->base.run = task_run;
  t->base.drop = task_drop;
  t->base.future = f;
  conc_future_ref(f);
  if (!task->inblock)  /* (tx_newtask made its future stoppable) */
    conc__future_stoppable(f);
  r = task->inblock  /* its future was made for it, just now */
      ? conc__pool_submitnew(ex->pool, &t->base)
      : conc_pool_submit(ex->pool, &t->base);
  if (r != 0) {
    conc_future_unref(f);
    if (!task->inblock)
      free(t);
  }
  if (r == CONC_ESYS) {  /* no worker at all could start: it is broken */
    setwhy(ex, "cannot start a worker: ", "cannot create a thread");
    __atomic_store_n(&ex->nostart, 1, __ATOMIC_RELEASE);
    r = CONC_EBROKEN;
  }
  return r;
}

/* Future, task and payload in one block: the payload's room follows the
** task (a multiple of the pointer size). */
static conc_future_t *tx_newtask(conc_executor_t *b, size_t len,
                                 size_t nfutures, conc_payload_t **task) {
  size_t room = conc__payload_room(len, nfutures);
  conc_future_t *f;
  ttask *t;
  (void)b;
  if (room == 0
      || (f = conc__future_new_room(sizeof(*t) + room, 1)) == NULL)
    return NULL;
  t = (ttask *)conc__future_room(f);
  t->payload = *task = conc__payload_place(t + 1, len, nfutures);
  return f;
}

static int tx_shutdown(conc_executor_t *b, int wait, int cancel) {
  if (forked((texec *)b))
    return 0;
  return conc_pool_shutdown(((texec *)b)->pool, wait, cancel);
}

static void tx_stats(conc_executor_t *b, conc_pool_stats_t *s) {
  texec *ex = (texec *)b;
  int i;
  if (forked(ex)) {
    memset(s, 0, sizeof(*s));
    s->broken = 1;
    return;
  }
  conc_pool_stats(ex->pool, s);
  s->broken = s->broken || __atomic_load_n(&ex->nostart, __ATOMIC_ACQUIRE);
  s->memory = 0;
  pthread_mutex_lock(&ex->mu);
  for (i = 0; i < ex->nctxs; i++)
    s->memory += ex->rt.memory(ex->ctxs[i]);
  pthread_mutex_unlock(&ex->mu);
}

/* On every submit: the pool's flag alone, not the whole stats. */
static char *tx_broken(conc_executor_t *b) {
  texec *ex = (texec *)b;
  int broken;
  if (forked(ex)) {
    char buf[128];
    snprintf(buf, sizeof(buf), "this thread pool belongs to process %d: "
             "a forked child cannot use it", (int)ex->self);
    return strdup(buf);
  }
  broken = conc__pool_broken(ex->pool)
           || __atomic_load_n(&ex->nostart, __ATOMIC_ACQUIRE);
  return broken ? brokenmsg(ex) : NULL;
}

static void tx_free(conc_executor_t *b) {
  texec *ex = (texec *)b;
  if (forked(ex)) {
    conc__keep(ex);
    return;
  }
  conc_pool_free(ex->pool);
  conc__payload_cacheuse(-1);
  conc__future_blockuse(-1);
  conc__tasktimer_free(&ex->timer);
  pthread_mutex_destroy(&ex->mu);
  free(ex->why);
  free(ex->ctxs);
  free(ex);
}

static const conc_executor_ops_t ops = {
  "ThreadPoolExecutor", "BrokenThreadPool",
  tx_submit, tx_shutdown, tx_stats, tx_broken, tx_free, tx_newtask
};

conc_executor_t *conc_threadexec_new(const conc_executor_opts_t *o) {
  conc_pool_opts_t po;
  conc_runtime_t rt;
  texec *ex;
  if (!conc__execopts(o, &rt))
    return NULL;
  if ((ex = (texec *)calloc(1, sizeof(*ex))) == NULL)
    return NULL;
  if (conc__tasktimer_init(&ex->timer) != 0) {
    free(ex);
    return NULL;
  }
  if (pthread_mutex_init(&ex->mu, NULL) != 0) {
    conc__tasktimer_free(&ex->timer);
    free(ex);
    return NULL;
  }
  ex->base.ops = &ops;
  ex->self = getpid();
  conc__forks_watch();
  ex->forks = conc__forks();
  ex->rt = rt;
  memset(&po, 0, sizeof(po));
  po.max_workers = o->max_workers;
  po.name_prefix = o->name_prefix;
  po.worker_start = worker_start;
  po.worker_stop = worker_stop;
  po.ud = ex;
  ex->pool = conc_pool_new(&po);
  if (ex->pool == NULL) {
    conc__tasktimer_free(&ex->timer);
    pthread_mutex_destroy(&ex->mu);
    free(ex);
    return NULL;
  }
  conc__payload_cacheuse(1);
  conc__future_blockuse(1);
  return &ex->base;
}
