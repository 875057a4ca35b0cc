/*
** forward.c: forwarded futures. A task sent to another process may hold
** futures of this one; the peer gets a proxy for each, under an id, and
** this process tells it once the future is done. An entry per future
** watches it; the thread that completes the future (any thread) only
** pushes the entry on a lock-free stack and wakes the back-end's thread,
** which sends the news to every peer told of it and frees the entry.
*/
#include <stdio.h>
#include <stdlib.h>

#include "forward.h"

/* Under the future's lock, on any thread: no lock of the back-end. */
static void fire(conc__wnode *w) {
  conc__fwd *x = conc__container_of(w, conc__fwd, w);
  conc__fwdtab *t = x->tab;
  x->firednext = __atomic_load_n(&t->fired, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&t->fired, &x->firednext, x, 1,
                                      __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    ;
  t->wake(t);
}

static conc__fwd *newentry(conc__fwdtab *t, conc_future_t *f) {
  conc__fwd *x = (conc__fwd *)calloc(1, sizeof(*x));
  uint64_t id = t->taskid != NULL ? t->taskid(t, f) : 0;
  if (x == NULL)
    return NULL;
  x->tab = t;
  x->f = f;
  x->id = id != 0 ? id : ++t->nextid;
  x->w.fire = fire;
  conc_future_ref(f);
  x->next = t->list;
  t->list = x;
  __atomic_add_fetch(&t->n, 1, __ATOMIC_RELAXED);
  if (!conc__future_watch(f, &x->w))
    fire(&x->w);  /* done already: the news goes out on the next round */
  return x;
}

conc__fwd *conc__fwd_tell(conc__fwdtab *t, conc_future_t *f,
                          uintptr_t peer) {
  conc__fwd *x;
  int i;
  for (x = t->list; x != NULL && x->f != f; x = x->next)
    ;
  if (x == NULL && (x = newentry(t, f)) == NULL)
    return NULL;
  for (i = 0; i < x->nknows; i++)
    if (x->knows[i] == peer) {
      x->mentions[i]++;
      return x;
    }
  if (x->nknows == x->sizeknows) {
    int n = x->sizeknows ? 2 * x->sizeknows : 2;
    uintptr_t *k = (uintptr_t *)realloc(x->knows, (size_t)n * sizeof(*k));
    uint32_t *m;
    if (k == NULL)
      return NULL;
    x->knows = k;
    m = (uint32_t *)realloc(x->mentions, (size_t)n * sizeof(*m));
    if (m == NULL)
      return NULL;
    x->mentions = m;
    x->sizeknows = n;
  }
  x->mentions[x->nknows] = 1;
  x->knows[x->nknows++] = peer;
  return x;
}

/* Forget 'peer' at 'i' of the peers told of 'x'. */
static void untell(conc__fwd *x, int i) {
  x->nknows--;
  x->knows[i] = x->knows[x->nknows];
  x->mentions[i] = x->mentions[x->nknows];
}

void conc__fwd_drop(conc__fwdtab *t, uint64_t id, uintptr_t peer,
                    uint32_t n) {
  conc__fwd *x;
  int i;
  for (x = t->list; x != NULL && x->id != id; x = x->next)
    ;
  if (x == NULL)
    return;
  for (i = 0; i < x->nknows && x->knows[i] != peer; i++)
    ;
  if (i == x->nknows)
    return;
  if (n < x->mentions[i]) {
    x->mentions[i] -= n;
    return;
  }
  untell(x, i);
  if (x->nknows == 0 && conc__future_unwatch(x->f, &x->w))
    conc__fwd_free(x);  /* else it fired: freed from the fired list */
}

int conc__fwd_told(const conc__fwdtab *t) {
  const conc__fwd *x;
  for (x = t->list; x != NULL; x = x->next)
    if (x->nknows > 0)
      return 1;
  return 0;
}

conc__fwd *conc__fwd_takefired(conc__fwdtab *t) {
  return __atomic_exchange_n(&t->fired, NULL, __ATOMIC_ACQUIRE);
}

void conc__fwd_free(conc__fwd *x) {
  conc__fwd **px;
  for (px = &x->tab->list; *px != x; px = &(*px)->next)
    ;
  *px = x->next;
  __atomic_sub_fetch(&x->tab->n, 1, __ATOMIC_RELAXED);
  free(x->knows);
  free(x->mentions);
  conc_future_unref(x->f);
  free(x);
}

void conc__fwd_forget(conc__fwdtab *t, uintptr_t peer) {
  conc__fwd *x;
  for (x = t->list; x != NULL; x = x->next) {
    int i;
    for (i = 0; i < x->nknows; i++)
      if (x->knows[i] == peer)
        untell(x, i--);
  }
}

void conc__fwd_clear(conc__fwdtab *t) {
  conc__fwd *x;
  while ((x = t->list) != NULL) {
    conc__future_unwatch(x->f, &x->w);
    conc__fwd_free(x);
  }
  t->fired = NULL;  /* those were in the list too: freed */
}

/* The error that goes to the child in place of a future's outcome 'pl'
** too large for a frame (else it could not be told at all), or NULL. */
static conc_payload_t *toolarge(const conc_payload_t *pl) {
  char msg[160];
  snprintf(msg, sizeof(msg), "cannot transfer the future's %s (%zu "
           "bytes: %s)", pl->kind == CONC_PAYLOAD_VALUES ? "results"
           : "error", pl->size, conc_strerror(CONC_E2BIG));
  return conc_payload_error("", msg);
}

void conc__fwd_putnews(conc__wbuf *w, const conc__fwd *x,
                       conc__fwd_ids ids, void *ud) {
  const void *data;
  size_t len;
  int failed = 0, ok = 1;
  conc_state_t s = conc_future_state(x->f);
  const conc_payload_t *pl = NULL;
  conc_payload_t *err = NULL;
  uint64_t *pids = NULL;
  if (s == CONC_FINISHED && conc_future_payload(x->f, &data, &len,
                                                &failed) == 0)
    pl = (const conc_payload_t *)data;
  if (pl != NULL && !conc__payload_fits(pl, CONC__FUTUREHEAD)) {
    pl = err = toolarge(pl);  /* NULL (no memory): no values */
    failed = 1;
  }
  if (pl != NULL)
    pids = ids(ud, pl, &ok);
  conc__put64(w, x->id);
  conc__put8(w, s == CONC_CANCELLED ? CONC__FWD_CANCELLED
                : pl != NULL && ok ? CONC__FWD_VALUES : CONC__FWD_NOVALUES);
  conc__put8(w, (unsigned)failed);
  if (s != CONC_CANCELLED && pl != NULL && ok)
    conc__putpayload(w, pl, pids);
  free(pids);
  conc_payload_free(err);
}
