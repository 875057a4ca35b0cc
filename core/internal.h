/*
** internal.h: declarations shared inside core/ only (the conc__ tier).
** Nothing here is part of the public API or exported from the library.
*/
#ifndef CONC_INTERNAL_H
#define CONC_INTERNAL_H

#include <pthread.h>
#include <time.h>

#include "concurrent.h"
#include "queue.h"

#if defined(__GNUC__)
#define CONC__FUNC __attribute__((visibility("hidden"))) extern
#else
#define CONC__FUNC extern
#endif

/* Invariant checks, on in debug builds (-DCONC_DEBUG) only. */
#if defined(CONC_DEBUG)
#include <assert.h>
#define conc_assert(c) assert(c)
#else
#define conc_assert(c) ((void)0)
#endif

/* clock.c: condition variables wait on CLOCK_MONOTONIC. */
CONC__FUNC int conc__cond_init(pthread_cond_t *cv);
/* Wait on 'cv' until signalled or 'deadline' (CONC_FOREVER: no limit):
** 0, or CONC_ETIMEDOUT once the deadline has passed. */
CONC__FUNC int conc__cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu,
                               double deadline);

/* mailbox.c: a watcher node linked in a future's list. 'fire' runs when
** the future is settled, with the future's lock held (lock order: future,
** then mailbox); 'drop' when a future that never completed is freed. */
CONC__FUNC void conc__watcher_fire(conc__queue *node);
CONC__FUNC void conc__watcher_drop(conc__queue *node);

/* future.c: watcher lists of a future (used by mailbox.c). Returns 1 if
** the watcher was linked, 0 if the future is already done (then it is
** not linked and the caller handles it as completed). */
CONC__FUNC int conc__future_watch(conc_future_t *f, conc__queue *node);
CONC__FUNC void conc__future_unwatch(conc_future_t *f, conc__queue *node);

#endif
