/*
** lworker.h: the worker runtime (lworker.c): what a worker thread or a
** forked worker process does with a task payload. lexecutor.c hands it
** to a core back-end as a conc_runtime_t.
*/
#ifndef LWORKER_H
#define LWORKER_H

#include "lconcurrent.h"

/* What an executor gives its workers: read-only once made, freed after
** the back-end (no worker can read it any more). */
typedef struct lconc_shared {
  char *path, *cpath;        /* the owner's package.path / cpath */
  conc_payload_t *init;      /* initializer and initargs, or NULL */
  long pid;                  /* the owner's process: a worker state made
                             ** in another one is in a forked child */
  size_t max_memory;         /* each worker state's cap, or 0 */
} lconc_shared;

LCONC_FUNC lconc_shared *lconc_shared_new(void);
LCONC_FUNC void lconc_shared_free(lconc_shared *sh);
/* The Lua runtime over 'sh': each worker makes its state once (libraries,
** paths, this module, the initializer) and runs every task in it. */
LCONC_FUNC conc_runtime_t lconc_runtime(lconc_shared *sh);

#endif
