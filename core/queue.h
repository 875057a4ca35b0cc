/*
** queue.h: an intrusive circular doubly linked queue, as libuv's.
** A queue head and its elements are the same node type; no allocation.
*/
#ifndef CONC_QUEUE_H
#define CONC_QUEUE_H

#include <stddef.h>

typedef struct conc__queue {
  struct conc__queue *next, *prev;
} conc__queue;

#define conc__container_of(ptr, type, field) \
  ((type *)((char *)(ptr) - offsetof(type, field)))

static inline void conc__queue_init(conc__queue *q) {
  q->next = q->prev = q;
}

static inline int conc__queue_empty(const conc__queue *q) {
  return q->next == q;
}

static inline void conc__queue_insert_tail(conc__queue *h, conc__queue *q) {
  q->next = h;
  q->prev = h->prev;
  h->prev->next = q;
  h->prev = q;
}

/* Unlink 'q' and leave it self-linked, so removing twice is harmless and
** 'conc__queue_empty(q)' tells whether an element is linked. */
static inline void conc__queue_remove(conc__queue *q) {
  q->prev->next = q->next;
  q->next->prev = q->prev;
  conc__queue_init(q);
}

static inline conc__queue *conc__queue_head(const conc__queue *h) {
  return h->next;
}

/* Move every element of 'h' to the (empty) head 'n'. */
static inline void conc__queue_move(conc__queue *h, conc__queue *n) {
  if (conc__queue_empty(h))
    conc__queue_init(n);
  else {
    n->next = h->next;
    n->prev = h->prev;
    n->next->prev = n;
    n->prev->next = n;
    conc__queue_init(h);
  }
}

#endif
