/*
** clock.c: monotonic deadlines. Every timed wait of the core is on
** CLOCK_MONOTONIC, so a wall-clock change never shortens or stretches it.
*/
#include <errno.h>
#include <math.h>
#include <time.h>

#include "internal.h"

double conc_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Past this many seconds a timeout is "forever": math.maxinteger and
** 1e300 are how people write that, and now + timeout must stay well
** inside time_t and exact in a double (2^50 s is 35 million years). */
#if !defined(CONC_MAXTIMEOUT)
#define CONC_MAXTIMEOUT 1125899906842624.0
#endif

double conc_deadline(double timeout) {
  if (!(timeout >= 0 && timeout < CONC_MAXTIMEOUT))  /* also NaN */
    return CONC_FOREVER;
  return conc_now() + timeout;
}

int conc__never(double deadline) {
  return deadline == CONC_FOREVER || !(deadline < 2 * CONC_MAXTIMEOUT);
}

int conc__cond_init(pthread_cond_t *cv) {
  pthread_condattr_t attr;
  int r;
  if (pthread_condattr_init(&attr) != 0)
    return CONC_ESYS;
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  r = pthread_cond_init(cv, &attr);
  pthread_condattr_destroy(&attr);
  return r == 0 ? 0 : CONC_ESYS;
}

int conc__cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu,
                    double deadline) {
  struct timespec ts;
  double secs;
  if (conc__never(deadline)) {
    pthread_cond_wait(cv, mu);
    return 0;
  }
  if (conc_now() >= deadline)
    return CONC_ETIMEDOUT;
  secs = floor(deadline);
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((deadline - secs) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  return pthread_cond_timedwait(cv, mu, &ts) == ETIMEDOUT ? CONC_ETIMEDOUT : 0;
}
