/*
** timer.c: cancel futures at deadlines, from one thread per timer that
** runs only while entries are due (so an idle state keeps no thread: a
** process pool forking later meets fewer threads). The Lua binding uses
** it for cf.await's timeouts (a future that a timer cancels wakes the
** awaiting coroutine through the owner's mailbox).
*/
#include <stdlib.h>

#include "internal.h"

/* The timer thread only cancels futures (and runs the C callbacks and
** watchers that fire then): a small stack is plenty. */
#if !defined(CONC_TIMER_STACK)
#define CONC_TIMER_STACK (256 * 1024)
#endif

typedef struct entry {
  struct entry *next;
  conc_future_t *f;   /* a reference */
  double deadline;
} entry;

struct conc_timer {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  int started;        /* 'thread' is to be joined */
  int running;        /* 'thread' serves the list */
  int stop;
  entry *head;        /* earliest deadline first */
};


conc_timer_t *conc_timer_new(void) {
  conc_timer_t *t = (conc_timer_t *)calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  if (pthread_mutex_init(&t->mu, NULL) != 0) {
    free(t);
    return NULL;
  }
  if (conc__cond_init(&t->cv) != 0) {
    pthread_mutex_destroy(&t->mu);
    free(t);
    return NULL;
  }
  return t;
}

/* Cancel each entry once its deadline passed; sleep until the next;
** leave once the list is empty. The lock is released around the cancel,
** which fires the future's watchers (lock order: timer, never while a
** future's lock is held). */
static void *timer_main(void *arg) {
  conc_timer_t *t = (conc_timer_t *)arg;
  pthread_mutex_lock(&t->mu);
  while (!t->stop) {
    entry *e = t->head;
    if (e == NULL)
      break;
    else if (conc_now() < e->deadline)
      conc__cond_wait(&t->cv, &t->mu, e->deadline);
    else {
      t->head = e->next;
      pthread_mutex_unlock(&t->mu);
      conc_future_cancel(e->f);
      conc_future_unref(e->f);
      free(e);
      pthread_mutex_lock(&t->mu);
    }
  }
  t->running = 0;
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static int start(conc_timer_t *t) {
  if (conc__thread_start(&t->thread, CONC_TIMER_STACK, timer_main, t) != 0)
    return CONC_ESYS;
  t->started = t->running = 1;
  return 0;
}

/* With the lock held: a thread serves the list, the previous one (which
** left when the list emptied and no longer needs the lock) joined. */
static int serve(conc_timer_t *t) {
  if (t->running)
    return 0;
  if (t->started) {
    pthread_join(t->thread, NULL);
    t->started = 0;
  }
  return start(t);
}

/* With the lock held: drop the entries whose futures are done already
** (an await that did not time out), so they do not pile up. */
static void purge(conc_timer_t *t) {
  entry **p = &t->head;
  while (*p != NULL) {
    entry *e = *p;
    if (conc_future_done(e->f)) {
      *p = e->next;
      conc_future_unref(e->f);
      free(e);
    } else
      p = &e->next;
  }
}

int conc_timer_cancel_at(conc_timer_t *t, conc_future_t *f,
                         double deadline) {
  entry *e = (entry *)malloc(sizeof(*e)), **p;
  int r = 0;
  if (e == NULL)
    return CONC_ENOMEM;
  pthread_mutex_lock(&t->mu);
  if ((r = serve(t)) != 0) {
    pthread_mutex_unlock(&t->mu);
    free(e);
    return r;
  }
  purge(t);
  conc_future_ref(f);
  e->f = f;
  e->deadline = deadline;
  for (p = &t->head; *p != NULL && (*p)->deadline <= deadline; p = &(*p)->next)
    ;
  e->next = *p;
  *p = e;
  if (t->head == e)
    pthread_cond_signal(&t->cv);  /* it sleeps until a later deadline */
  pthread_mutex_unlock(&t->mu);
  return 0;
}

void conc_timer_remove(conc_timer_t *t, conc_future_t *f) {
  entry **p, *e = NULL;
  pthread_mutex_lock(&t->mu);
  for (p = &t->head; *p != NULL; p = &(*p)->next)
    if ((*p)->f == f) {
      e = *p;
      *p = e->next;
      break;
    }
  if (e != NULL && t->head == NULL)
    pthread_cond_signal(&t->cv);  /* nothing left: the thread leaves */
  pthread_mutex_unlock(&t->mu);
  if (e != NULL) {
    conc_future_unref(e->f);
    free(e);
  }
}

void conc_timer_free(conc_timer_t *t) {
  pthread_mutex_lock(&t->mu);
  t->stop = 1;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  if (t->started)
    pthread_join(t->thread, NULL);
  while (t->head != NULL) {
    entry *e = t->head;
    t->head = e->next;
    conc_future_unref(e->f);
    free(e);
  }
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  free(t);
}
