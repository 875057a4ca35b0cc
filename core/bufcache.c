/*
** bufcache.c: a bounded cache of big memory blocks. A thread that frees
** a block and soon needs one of about that size takes it back here,
** instead of making malloc give memory back to the kernel and take it
** again (brk, mprotect, madvise, and page faults after).
*/
#include <stdlib.h>

#include "internal.h"

/* Blocks kept at most, whatever their sizes: a burst of frees (a
** collection) beyond it goes to free(). */
#if !defined(CONC_BUFCACHE_SLOTS)
#define CONC_BUFCACHE_SLOTS 32
#endif

typedef struct Slot {
  void *p;
  size_t size;  /* bytes the block has, at least */
} Slot;

/* The blocks are kept in slots outside them, so that a kept block is
** never written (and can be poisoned whole). */
struct conc_bufcache {
  size_t held, max;  /* bytes kept; their bound */
  int n;             /* slots used */
  Slot slot[CONC_BUFCACHE_SLOTS];
};

static int inrange(size_t n) {
  return n >= CONC_BUFCACHE_MIN && n <= CONC_BUFCACHE_MAX;
}

/* Sizes are rounded up to an eighth of their power of two: a block made
** so wastes at most 1/8 of it, and holds any size that rounds alike. */
size_t conc_bufcache_round(size_t n) {
  int e;
  size_t step;
  if (!inrange(n))
    return n;
  e = (int)(sizeof(unsigned long) * 8 - 1) - __builtin_clzl((unsigned long)n);
  step = (size_t)1 << (e - 3);
  return (n + step - 1) & ~(step - 1);
}

conc_bufcache_t *conc_bufcache_new(size_t max) {
  conc_bufcache_t *c = (conc_bufcache_t *)calloc(1, sizeof(*c));
  if (c != NULL)
    c->max = max;
  return c;
}

/* The latest block kept that fits (warm in the CPU's cache), among those
** no bigger than 9/8 of 'n'. */
void *conc_bufcache_take(conc_bufcache_t *c, size_t n) {
  int i;
  if (c == NULL || !inrange(n))
    return NULL;
  for (i = c->n - 1; i >= 0; i--) {
    Slot s = c->slot[i];
    if (s.size >= n && s.size - n <= n / 8) {
      c->slot[i] = c->slot[--c->n];
      c->held -= s.size;
      conc__unpoison(s.p, s.size);
      return s.p;
    }
  }
  return NULL;
}

int conc_bufcache_keep(conc_bufcache_t *c, void *p, size_t n) {
  if (c == NULL || p == NULL || !inrange(n) || c->held + n > c->max
      || c->n == CONC_BUFCACHE_SLOTS)
    return 0;
  conc__poison(p, n);
  c->slot[c->n].p = p;
  c->slot[c->n++].size = n;
  c->held += n;
  return 1;
}

int conc_bufcache_empty(conc_bufcache_t *c) {
  int i, had = c != NULL && c->n > 0;
  for (i = 0; had && i < c->n; i++) {
    conc__unpoison(c->slot[i].p, c->slot[i].size);
    free(c->slot[i].p);
  }
  if (had)
    c->n = 0, c->held = 0;
  return had;
}

size_t conc_bufcache_held(const conc_bufcache_t *c) {
  return c != NULL ? c->held : 0;
}

/* The slots run from the oldest kept (take moves the last slot into the
** one it empties, so roughly): the latest, warm ones stay. */
void conc_bufcache_trim(conc_bufcache_t *c, size_t max) {
  int i, k;
  if (c == NULL || c->held <= max)
    return;
  for (i = 0; c->held > max; i++) {
    conc__unpoison(c->slot[i].p, c->slot[i].size);
    free(c->slot[i].p);
    c->held -= c->slot[i].size;
  }
  for (k = i; k < c->n; k++)
    c->slot[k - i] = c->slot[k];
  c->n -= i;
}

void conc_bufcache_free(conc_bufcache_t *c) {
  conc_bufcache_empty(c);
  free(c);
}
