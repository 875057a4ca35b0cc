/*
** lworker.h: the thread pool's worker runtime (lworker.c), used by the
** executor binding (lexecutor.c).
*/
#ifndef LWORKER_H
#define LWORKER_H

#include <pthread.h>

#include "lconcurrent.h"

/* What an executor shares with its workers: read-only after creation,
** but for the broken state under 'mu'. Freed after the pool. */
typedef struct lconc_shared {
  char *path, *cpath;        /* the owner's package.path / cpath */
  conc_payload_t *init;       /* initializer and initargs, or NULL */
  pthread_mutex_t mu;
  char *brokenmsg;           /* why the pool broke, or NULL */
  int isbroken;              /* brokenmsg is set (read without 'mu') */
  conc_payload_t *broken;     /* that, as an encoded BrokenThreadPool */
} lconc_shared;

LCONC_FUNC lconc_shared *lconc_shared_new(void);
LCONC_FUNC void lconc_shared_free(lconc_shared *sh);
LCONC_FUNC char *lconc_shared_broken(lconc_shared *sh);
LCONC_FUNC conc_payload_t *lconc_shared_brokenpayload(lconc_shared *sh);

/* conc_pool_opts_t worker_start / worker_stop, with 'ud' the shared data */
LCONC_FUNC int lconc_worker_start(void *ud, void **ctx);
LCONC_FUNC void lconc_worker_stop(void *ud, void *ctx);
/* run a task payload (fn, args...) in worker state W and complete 'f' */
LCONC_FUNC void lconc_worker_run(lua_State *W, const conc_payload_t *task,
                                 conc_future_t *f);

#endif
