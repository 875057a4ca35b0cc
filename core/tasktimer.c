/*
** tasktimer.c: the time limits of an executor's running tasks. One thread
** per executor sleeps until the earliest deadline of a binary heap.
*/
#include <stdlib.h>

#include "internal.h"

int conc__tasktimer_init(conc__tasktimer *t) {
  t->heap = NULL;
  t->n = t->size = 0;
  t->started = t->quit = 0;
  if (pthread_mutex_init(&t->mu, NULL) != 0)
    return CONC_ESYS;
  if (conc__cond_init(&t->cv) != 0) {
    pthread_mutex_destroy(&t->mu);
    return CONC_ESYS;
  }
  return 0;
}

static void place(conc__tasktimer *t, conc__tnode *n, int i) {
  t->heap[i] = n;
  n->at = i;
}

static void siftup(conc__tasktimer *t, int i) {
  conc__tnode *n = t->heap[i];
  while (i > 0 && t->heap[(i - 1) / 2]->deadline > n->deadline) {
    place(t, t->heap[(i - 1) / 2], i);
    i = (i - 1) / 2;
  }
  place(t, n, i);
}

static void siftdown(conc__tasktimer *t, int i) {
  conc__tnode *n = t->heap[i];
  for (;;) {
    int c = 2 * i + 1;
    if (c >= t->n)
      break;
    if (c + 1 < t->n && t->heap[c + 1]->deadline < t->heap[c]->deadline)
      c++;
    if (t->heap[c]->deadline >= n->deadline)
      break;
    place(t, t->heap[c], i);
    i = c;
  }
  place(t, n, i);
}

/* Unlink the node at 'i' (lock held). */
static void unlink_at(conc__tasktimer *t, int i) {
  conc__tnode *last = t->heap[--t->n];
  t->heap[i]->at = -1;
  if (i == t->n)
    return;
  place(t, last, i);
  siftup(t, i);
  siftdown(t, last->at);
}

/* Fire what is due, sleep until the next deadline; leave on 'quit'. */
static void *timer_main(void *arg) {
  conc__tasktimer *t = (conc__tasktimer *)arg;
  pthread_mutex_lock(&t->mu);
  while (!t->quit) {
    if (t->n > 0 && t->heap[0]->deadline <= conc_now()) {
      conc__tnode *n = t->heap[0];
      unlink_at(t, 0);
      n->fire(n);
    } else {
      conc__cond_wait(&t->cv, &t->mu,
                      t->n > 0 ? t->heap[0]->deadline : CONC_FOREVER);
    }
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

/* The thread (lock held). */
static int start(conc__tasktimer *t) {
  if (conc__thread_start(&t->tid, 0, timer_main, t) != 0)
    return CONC_ESYS;
  t->started = 1;
  return 0;
}

int conc__tasktimer_add(conc__tasktimer *t, conc__tnode *n, double deadline) {
  int r = 0;
  pthread_mutex_lock(&t->mu);
  if (!t->started)
    r = start(t);
  if (r == 0 && t->n == t->size) {
    int size = t->size ? 2 * t->size : 8;
    conc__tnode **h = (conc__tnode **)realloc(t->heap,
                                              (size_t)size * sizeof(*h));
    if (h == NULL)
      r = CONC_ENOMEM;
    else {
      t->heap = h;
      t->size = size;
    }
  }
  if (r == 0) {
    n->deadline = deadline;
    place(t, n, t->n++);
    siftup(t, n->at);
    if (n->at == 0)
      pthread_cond_signal(&t->cv);
  }
  pthread_mutex_unlock(&t->mu);
  return r;
}

void conc__tasktimer_remove(conc__tasktimer *t, conc__tnode *n) {
  pthread_mutex_lock(&t->mu);
  if (n->at >= 0)
    unlink_at(t, n->at);
  pthread_mutex_unlock(&t->mu);
}

void conc__tasktimer_free(conc__tasktimer *t) {
  pthread_mutex_lock(&t->mu);
  t->quit = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  if (t->started)
    pthread_join(t->tid, NULL);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t->heap);
}
