/*
** threadexec.c: the thread pool as an executor back-end. Tasks are
** payloads that a worker hands to the runtime; the outcome completes the
** task's future here, so the runtime never touches a future.
*/
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct texec {
  conc_executor_t base;
  conc_pool_t *pool;
  conc_runtime_t rt;
  pthread_mutex_t mu;
  char *why;       /* the last worker start failure, for a broken pool */
  int nostart;     /* no worker could ever start: broken without the pool */
} texec;

/* A task: the core task plus the encoded fn and arguments. */
typedef struct ttask {
  conc_task_t base;
  texec *ex;
  conc_payload_t *payload;
} ttask;

static void task_run(conc_task_t *t, void *ctx) {
  ttask *tt = (ttask *)t;
  int failed = 1;
  conc_payload_t *out = tt->ex->rt.run(ctx, tt->payload, &failed);
  conc__payload_complete(t->future, out, failed);
  conc_payload_free(tt->payload);
  free(tt);
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
    char *msg = brokenmsg(tt->ex);
    conc__payload_complete(t->future, msg != NULL ? conc_payload_error(
        tt->ex->base.ops->broken_class, msg) : NULL, 1);
    free(msg);
  }
  conc_payload_free(tt->payload);
  free(tt);
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

static int worker_start(void *ud, void **ctx) {
  texec *ex = (texec *)ud;
  char *why = NULL;
  int r = ex->rt.start(ex->rt.ud, ctx, &why);
  if (r != 0) {
    setwhy(ex, r == CONC_EBROKEN ? "initializer failed: "
                                 : "cannot start a worker: ",
           why != NULL ? why : conc_strerror(r));
    free(why);
  }
  return r;
}

static void worker_stop(void *ud, void *ctx) {
  texec *ex = (texec *)ud;
  ex->rt.stop(ex->rt.ud, ctx);
}

static int tx_submit(conc_executor_t *b, conc_future_t *f,
                     conc_payload_t *task) {
  texec *ex = (texec *)b;
  ttask *t;
  int r;
  if (__atomic_load_n(&ex->nostart, __ATOMIC_ACQUIRE))
    return CONC_EBROKEN;
  t = (ttask *)calloc(1, sizeof(*t));
  if (t == NULL)
    return CONC_ENOMEM;
  t->ex = ex;
  t->payload = task;
  t->base.run = task_run;
  t->base.drop = task_drop;
  t->base.future = f;
  conc_future_ref(f);
  r = conc_pool_submit(ex->pool, &t->base);
  if (r != 0) {
    conc_future_unref(f);
    free(t);
  }
  if (r == CONC_ESYS) {  /* no worker at all could start: it is broken */
    setwhy(ex, "cannot start a worker: ", "cannot create a thread");
    __atomic_store_n(&ex->nostart, 1, __ATOMIC_RELEASE);
    r = CONC_EBROKEN;
  }
  return r;
}

static int tx_shutdown(conc_executor_t *b, int wait, int cancel) {
  return conc_pool_shutdown(((texec *)b)->pool, wait, cancel);
}

static void tx_stats(conc_executor_t *b, conc_pool_stats_t *s) {
  texec *ex = (texec *)b;
  conc_pool_stats(ex->pool, s);
  s->broken = s->broken || __atomic_load_n(&ex->nostart, __ATOMIC_ACQUIRE);
}

static char *tx_broken(conc_executor_t *b) {
  conc_pool_stats_t s;
  tx_stats(b, &s);
  return s.broken ? brokenmsg((texec *)b) : NULL;
}

static void tx_free(conc_executor_t *b) {
  texec *ex = (texec *)b;
  conc_pool_free(ex->pool);
  pthread_mutex_destroy(&ex->mu);
  free(ex->why);
  free(ex);
}

static const conc_executor_ops_t ops = {
  "ThreadPoolExecutor", "BrokenThreadPool",
  tx_submit, tx_shutdown, tx_stats, tx_broken, tx_free
};

conc_executor_t *conc_threadexec_new(const conc_executor_opts_t *o) {
  conc_pool_opts_t po;
  texec *ex = (texec *)calloc(1, sizeof(*ex));
  if (ex == NULL)
    return NULL;
  if (pthread_mutex_init(&ex->mu, NULL) != 0) {
    free(ex);
    return NULL;
  }
  ex->base.ops = &ops;
  ex->rt = o->runtime;
  memset(&po, 0, sizeof(po));
  po.max_workers = o->max_workers;
  po.name_prefix = o->name_prefix;
  po.worker_start = worker_start;
  po.worker_stop = worker_stop;
  po.ud = ex;
  ex->pool = conc_pool_new(&po);
  if (ex->pool == NULL) {
    pthread_mutex_destroy(&ex->mu);
    free(ex);
    return NULL;
  }
  return &ex->base;
}
