/*
** forward.h: the futures that tasks sent to other processes were given
** (forward.c), forwarded once done. Shared by the back-ends that send
** tasks over a transport: the process pool's supervisor (proc.c) and the
** MPI pool's communication thread (mpi/mpicomm.c). Internal to core/.
*/
#ifndef CONC_FORWARD_H
#define CONC_FORWARD_H

#include <stdint.h>

#include "frame.h"

/* The state byte of an outcome that F_FUTURE (and F_RESULT's 'failed')
** carries: values, a cancel, or no values (they could not be made). */
enum { CONC__FWD_VALUES = 0, CONC__FWD_CANCELLED = 1 };
#define CONC__FWD_NOVALUES 2

typedef struct conc__fwdtab conc__fwdtab;

/* A future that was sent to peers (children, ranks), known there by
** 'id'. It watches its future ('w'); the thread that completes it
** pushes it on its table's fired stack. */
typedef struct conc__fwd {
  conc__wnode w;
  struct conc__fwd *next;       /* in its table's list */
  struct conc__fwd *firednext;  /* on the fired stack */
  conc__fwdtab *tab;
  conc_future_t *f;             /* a reference */
  uint64_t id;
  uintptr_t *knows;             /* the peers told of it */
  uint32_t *mentions;           /* of it in payloads sent to each, not
                                ** yet dropped (conc__fwd_drop) */
  int nknows, sizeknows;
} conc__fwd;

/* One back-end's forwarded futures, private to its thread, except for
** the fired stack. 'wake' (called on whatever thread completes a future,
** under that future's lock) must only make the back-end's thread run;
** 'taskid' (optional) gives the id of a future that has one of its own,
** else 0 and the next of 'nextid' is taken. */
struct conc__fwdtab {
  conc__fwd *list;
  long n;                       /* entries in 'list' (atomic: read by
                                ** other threads, for the specs) */
  conc__fwd *fired;             /* stack, pushed atomically */
  uint64_t nextid;
  void (*wake)(conc__fwdtab *t);
  uint64_t (*taskid)(conc__fwdtab *t, conc_future_t *f);
};

/* The entry of 'f' (made on first use), with 'peer' among those told
** of it; NULL when out of memory. */
CONC__FUNC conc__fwd *conc__fwd_tell(conc__fwdtab *t, conc_future_t *f,
                                     uintptr_t peer);
/* 'peer' holds the proxy of future 'id' no more, after 'n' mentions of
** it: those sent since keep it told. Once no peer is, the entry stops
** watching and is freed (a fired one is freed with the fired list):
** a future no peer holds needs no news, and one that is never set would
** keep its entry, and the peers' proxies, forever. An unknown id or
** peer is a drop that crossed the news of the future: nothing to do.
** Exact only where ids never repeat (no 'taskid'): the MPI pool's. */
CONC__FUNC void conc__fwd_drop(conc__fwdtab *t, uint64_t id, uintptr_t peer,
                               uint32_t n);
/* Whether some peer is told of an entry (it may drop it). */
CONC__FUNC int conc__fwd_told(const conc__fwdtab *t);
/* The entries fired since the last call, as a list through 'firednext'. */
CONC__FUNC conc__fwd *conc__fwd_takefired(conc__fwdtab *t);
/* Unlink and free a fired entry (its future's watch has gone). */
CONC__FUNC void conc__fwd_free(conc__fwd *x);
/* A peer is gone: no entry lists it any more. */
CONC__FUNC void conc__fwd_forget(conc__fwdtab *t, uintptr_t peer);
/* The back-end ends: every entry stops watching and is freed (the fired
** ones with them: their peers are gone). */
CONC__FUNC void conc__fwd_clear(conc__fwdtab *t);

/* Put into 'w' the body of the news that the future of 'x' is done: its
** id, how it ended and, finished with values, its payload, whose own
** futures and queues cross under the ids that 'ids' gives (malloc'd;
** NULL with '*ok' 0 when out of memory: the news then says no values). */
typedef uint64_t *(*conc__fwd_ids)(void *ud, const conc_payload_t *pl,
                                   int *ok);
CONC__FUNC void conc__fwd_putnews(conc__wbuf *w, const conc__fwd *x,
                                  conc__fwd_ids ids, void *ud);

#endif
