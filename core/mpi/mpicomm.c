/*
** mpicomm.c: the MPI back-end. One communication thread per process
** makes every MPI call. On rank 0 it does what the process pool's
** supervisor does over sockets (proc.c): tasks out to the worker ranks,
** results and initializer outcomes back, the completion of futures that
** tasks were given forwarded, the ranks' operations on queues that
** tasks were given carried out (remoteq.c, as the supervisor does for
** its children), running cancels sent. On ranks >= 1 it queues what
** comes for the worker loop (conc_mpi_serve, the caller's thread, which
** runs tasks through a runtime, each under its stop and time limit),
** stops the running task when told, sends what that loop answers and the
** requests of the proxies of rank 0's queues, and hands their replies
** over. Receives are
** non-blocking probes (MPI_Improbe) with a back-off (see SPIN); rank 0
** sleeps without probing while it awaits nothing and no rank knows one
** of its queues.
** Message bodies are frame.c's frames without their length prefix.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <mpi.h>

#include "mpicomm.h"
#include "remoteq.h"

/*
** body := type field*
**   M_OPEN   (0 -> w)  u32 pool, u32 maxtasks, u32 n, setup{n}, u8 hasinit,
**                      [payload]             (maxtasks: a state's tasks
**                                            before a fresh one, 0: all)
**   M_START  (w -> 0)  u32 pool, i32 code, message   the pool's runtime
**                                                    started (0) or not;
**                                                    a fresh state says
**                                                    only if not
**   M_TASK   (0 -> w)  u32 pool, u64 task, f64 timeout, payload
**                                                    (timeout 0: none)
**   M_RESULT (w -> 0)  u32 pool, u64 task, u8 failed, u64 memory, payload
**                                                    (memory: bytes the
**                                                    pool's state holds)
**   M_FUTURE (0 -> w)  u64 id, u8 state, u8 failed, [payload]
**   M_CANCEL (0 -> w)  u32 pool, u64 task            stop it (running or
**                                                    queued)
**   M_CLOSE  (0 -> w)  u32 pool                      release the runtime
**   M_EXIT   (0 -> w)                                finalize and exit
**   M_FDROP  (w -> 0)  u64 id, u32 n                 the rank holds the
**                                                    proxy of future 'id'
**                                                    no more, after n
**                                                    mentions of it
** payload and the state/failed bytes: as frame.h and forward.h say.
** Queues: a rank's requests and rank 0's replies and news are frame.h's
** F_Q* frames (ids as there), whose types the M_ types stay apart
** from.
*/
enum { M_OPEN = 64, M_START, M_TASK, M_RESULT, M_FUTURE, M_CANCEL, M_CLOSE,
       M_EXIT, M_FDROP };

#define TAG 1071
/* Body bytes of an M_TASK and an M_RESULT before their payload: the type
** and the fields before it (the table above). */
#define MTASKHEAD (1 + 4 + 8 + 8)
#define MRESULTHEAD (1 + 4 + 8 + 1 + 8)
/* ... and of an M_OPEN, before its setup's bytes. */
#define MOPENHEAD (1 + 4 + 4 + 4)
/* Tasks a rank holds at once per pool: the running one and one ahead. */
#define AHEAD 2
/* Probing: back to back for SPIN seconds after the last message in or
** out (a round trip then costs no sleep and wake-up; a sched_yield there
** would hand the core to another process for a whole time slice on a
** busy machine), then naps doubling from BACKOFF_MIN up to BUSY_MAX
** seconds while rank 0 awaits results, IDLE_MAX otherwise. */
#define SPIN 100e-6
#define BACKOFF_MIN 5e-6
#define BUSY_MAX 200e-6
#define IDLE_MAX 1e-3

/* A frame on its way out: queued, then sent with MPI_Isend. */
typedef struct out {
  struct out *next;
  conc__wbuf w;
  int dest;
  MPI_Request req;
} out;

typedef struct mpool mpool;

/* Rank 0: a submitted task, pending, then in flight on a rank. */
typedef struct mtask {
  conc__queue q;
  conc_future_t *f;
  conc_payload_t *payload;  /* the task; then the outcome, when done */
  uint64_t id;
  double timeout;           /* seconds from its start on the rank, or 0 */
  int failed;
  int stopped;              /* a running cancel ended it (when done) */
  mpool *p;
  int rank;                 /* where it runs, once sent */
  conc__queue cq;           /* in G.cancels while 'incq' (under G.cmu) */
  int incq;
} mtask;

#define qtask(n) conc__container_of((void *)(n), mtask, q)

/* Rank 0: what a pool has on one rank. */
typedef struct mrank {
  conc__queue inflight;     /* in order of sending */
  int ninflight;
  int opened, started;      /* M_OPEN sent; M_START 0 came */
  size_t memory;            /* its state's bytes, after its last task */
  int ran;                  /* results of its state (under 'maxtasks') */
  int retired;              /* its state closed after its last task; a
                            ** fresh one opens with its next */
} mrank;

struct mpool {
  conc_executor_t base;
  struct mpool *next;       /* in G.pools */
  uint32_t id;
  int nranks;               /* it uses ranks 1..nranks */
  int maxtasks;             /* max_tasks_per_child, or 0 */
  mrank *ranks;
  char *setup;
  size_t setuplen;
  conc_payload_t *init;
  conc__queue pending;
  long npending;
  uint64_t nexttask;
  int shutdown, broken, closed;
  char *brokenmsg;
  long running, completed, failed, cancelled;
};

/* Ranks >= 1: what the worker loop is asked to do, in order. */
typedef struct job {
  struct job *next;
  int type;                 /* M_OPEN, M_TASK, M_CLOSE or M_EXIT */
  uint32_t pool;
  uint64_t task;
  double timeout;           /* M_TASK's, or 0 */
  int maxtasks;             /* M_OPEN's */
  int cancelled;            /* M_CANCEL came before it started */
  int started;              /* it runs with its controls armed */
  conc_payload_t *payload;  /* the task, or the initializer */
  char *setup;
  size_t setuplen;
} job;

/* Rank 0: a worker rank as the host of the queues knows it, with the
** frame being made to it. */
typedef struct qrank {
  conc__qpeer qp;
  conc__wbuf w;
} qrank;

/* Ranks >= 1: a proxy of one of rank 0's futures, until its news comes
** or no one on the rank holds it (then M_FDROP says so). */
typedef struct proxy {
  struct proxy *next;
  uint64_t id;
  conc_future_t *f;
  uint32_t mentions;        /* of it in payloads that came */
} proxy;

/* Serializes conc_mpi_start and conc_mpi_stop. */
static pthread_mutex_t startmu = PTHREAD_MUTEX_INITIALIZER;

static struct {
  int startcalled, ready, running;
  int err;
  const char *why;
  int rank, size;
  pthread_t thread;
  MPI_Comm world;
  pthread_mutex_t mu;       /* what follows, up to the comm thread's own */
  pthread_cond_t cv;        /* ready, a pool closed, a job queued */
  out *outq, **outtail;     /* frames other threads made, to send */
  /* rank 0 */
  int spawnreq;             /* 1: asked, 0: answered (spawnerr) */
  const char *spawncmd, *spawnerr;
  char **spawnargv;
  int spawnn, spawned;
  int testnomem;            /* see testnomem() */
  mpool *pools;
  uint32_t nextpool;
  int exiting;
  /* ranks >= 1 */
  job *jobs, **jobtail;
  int mainstop;             /* the worker loop ended */
  job *current;             /* the task taken by the worker loop */
  long jobsdone;            /* jobs the worker loop is done with */
  /* rank 0: the tasks a running cancel asks to stop, under their own
  ** lock, which a stopper takes under its future's */
  pthread_mutex_t cmu;
  conc__queue cancels;
  /* waking the comm thread: its own lock, taken under any other */
  pthread_mutex_t wmu;
  pthread_cond_t wcv;
  int woken;
  conc__fwdtab fwd;         /* rank 0: forwarded futures, the comm
                            ** thread's but for their fired stack */
  conc__qhost qh;           /* rank 0: its queues that ranks know, the
                            ** same */
  conc__qproxies qpx;       /* ranks >= 1: rank 0's queues (requests
                            ** under 'mu') */
  /* the comm thread's own */
  out *sending;
  qrank **qranks;           /* rank 0: by rank, made on first use */
  int nqranks;
  MPI_Comm inter;           /* to the spawned ranks, or to the parent */
  long nsent;               /* frames handed to MPI_Isend */
  proxy *proxies;
  long nproxies;            /* atomic: read by other threads (specs) */
  long swept;               /* G.jobsdone at the last sweep */
  int exitseen;
  /* ranks >= 1: the worker loop's */
  conc__taskstop tstop;     /* the running task's controls, on 'timer' */
  conc__tnode limit;        /* in 'timer' while it runs with a timeout */
  conc__tasktimer timer;
} G;


/* {======================================================================
** Waking, sending, receiving
** ======================================================================= */

static void wake(void) {
  pthread_mutex_lock(&G.wmu);
  G.woken = 1;
  pthread_cond_signal(&G.wcv);
  pthread_mutex_unlock(&G.wmu);
}

/* The comm thread sleeps until woken or 'timeout' seconds (< 0: none). */
static void nap(double timeout) {
  if (timeout == 0)
    return;
  pthread_mutex_lock(&G.wmu);
  if (!G.woken)
    conc__cond_wait(&G.wcv, &G.wmu, timeout < 0 ? CONC_FOREVER
                                                : conc_now() + timeout);
  G.woken = 0;
  pthread_mutex_unlock(&G.wmu);
}

/* A frame of 'type' for 'dest', or NULL when out of memory. */
static out *newout(int dest, int type) {
  out *o = (out *)calloc(1, sizeof(*o));
  if (o == NULL)
    return NULL;
  o->dest = dest;
  conc__frame_begin(&o->w, type);
  return o;
}

static void freeout(out *o) {
  conc__wbuf_free(&o->w);
  free(o);
}

/* End the frame of 'o': 'o', or NULL (freed) when an append failed. */
static out *endout(out *o) {
  conc__frame_end(&o->w, 0);
  if (o->w.failed) {
    freeout(o);
    return NULL;
  }
  return o;
}

/* (Comm thread.) Start sending 'o': 0, or -1 (then 'o' is freed). */
static int isend(out *o) {
  if (MPI_Isend(o->w.b + 4, (int)(o->w.n - 4), MPI_BYTE, o->dest, TAG,
                G.world, &o->req) != MPI_SUCCESS) {
    freeout(o);
    return -1;
  }
  o->next = G.sending;
  G.sending = o;
  G.nsent++;
  return 0;
}

/* (Comm thread.) Send the frame 'b' ('n' bytes with its length prefix)
** to 'dest' from where it lies, before returning: for what a rank waits
** for when no memory is left to queue it. A small frame leaves at once
** (MPI's eager protocol); a rank's comm thread never blocks, so it takes
** a large one soon. */
static void sendnow(const char *b, size_t n, int dest) {
  MPI_Send(b + 4, (int)(n - 4), MPI_BYTE, dest, TAG, G.world);
  G.nsent++;
}

/* A test-only hook (the specs set it with mpiexec -x): rank 0 takes a
** queue reply or a future's news to a rank longer than TESTNOMEM_MAX
** bytes, and its orders (stop a task, close a pool, exit), as frames it
** found no memory for. */
#define TESTNOMEM_MAX 64
static int testnomem(const conc__wbuf *w) {
  return G.testnomem && w->n > TESTNOMEM_MAX;
}

/* (Comm thread.) Send the order made in 'w' (a few bytes on the
** caller's stack) to 'dest': from a copy queued for MPI_Isend or, with
** no memory for one, from 'w' itself. Never lost: a task whose stop
** was dropped could spin on its rank forever, a pool whose close was
** dropped would keep its state there. */
static void sendorder(const conc__wbuf *w, int dest) {
  out *o = G.testnomem ? NULL : (out *)calloc(1, sizeof(*o));
  if (o != NULL && (o->w.b = (char *)malloc(w->n)) != NULL) {
    memcpy(o->w.b, w->b, w->n);
    o->w.n = o->w.size = w->n;
    o->dest = dest;
    isend(o);
  } else {
    free(o);
    sendnow(w->b, w->n, dest);
  }
}

/* (Comm thread.) Free the sends that completed; the number left. */
static int testsends(void) {
  out **po = &G.sending, *o;
  int left = 0;
  while ((o = *po) != NULL) {
    int flag = 0;
    if (MPI_Test(&o->req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS
        || flag) {
      *po = o->next;
      freeout(o);
    } else {
      left++;
      po = &o->next;
    }
  }
  return left;
}

/* (Comm thread.) Take one message if one came: 1 and its body (malloc'd)
** and source; 0 when none; -1 when it could not be kept (no memory, or
** longer than any frame): it is consumed, '*src' tells whose it was. */
static int receive(unsigned char **body, size_t *len, int *src) {
  static char sink[16];
  MPI_Message m;
  MPI_Status st;
  int flag = 0, n = 0;
  if (MPI_Improbe(MPI_ANY_SOURCE, TAG, G.world, &flag, &m, &st)
      != MPI_SUCCESS || !flag)
    return 0;
  *src = st.MPI_SOURCE;
  MPI_Get_count(&st, MPI_BYTE, &n);
  *body = n > 0 && (size_t)n <= CONC_FRAME_MAX
          ? (unsigned char *)malloc((size_t)n) : NULL;
  if (*body == NULL) {  /* consumed into a sink: a truncation error */
    MPI_Mrecv(sink, (int)sizeof(sink), MPI_BYTE, &m, MPI_STATUS_IGNORE);
    return -1;
  }
  MPI_Mrecv(*body, n, MPI_BYTE, &m, MPI_STATUS_IGNORE);
  *len = (size_t)n;
  return 1;
}

/* The wait before the next probe, 'idle' seconds after the last message
** ('b': the previous wait, 'max': its cap): none while spinning. */
static double backoff(double b, double idle, double max) {
  if (idle < SPIN) {
    conc__cpu_relax();
    return 0;
  }
  b *= 2;
  return b < BACKOFF_MIN ? BACKOFF_MIN : b > max ? max : b;
}

/* }====================================================================== */


/* {======================================================================
** Rank 0: forwarded futures
** ======================================================================= */

/* Called under a future's lock, on any thread: only the wake lock is
** taken. */
static void fwd_wake(conc__fwdtab *t) {
  (void)t;
  wake();
}

/* The host's peer 'rank', made on first use when 'make' (the ranks
** are all there by then: a job of one rank spawns them before its first
** pool); NULL when out of memory or, unless 'make', unknown. */
static conc__qpeer *qpeerof(int rank, int make) {
  if (rank >= G.nqranks && make) {
    qrank **v = (qrank **)realloc(G.qranks, (size_t)G.size * sizeof(*v));
    if (v == NULL)
      return NULL;
    memset(v + G.nqranks, 0, (size_t)(G.size - G.nqranks) * sizeof(*v));
    G.qranks = v;
    G.nqranks = G.size;
  }
  if (rank < 1 || rank >= G.nqranks)
    return NULL;
  if (G.qranks[rank] == NULL && make
      && (G.qranks[rank] = (qrank *)calloc(1, sizeof(qrank))) != NULL) {
    G.qranks[rank]->qp.who = (uintptr_t)rank;
    G.qranks[rank]->qp.host = &G.qh;
    G.qranks[rank]->qp.out = &G.qranks[rank]->w;
  }
  return G.qranks[rank] != NULL ? &G.qranks[rank]->qp : NULL;
}

/* Put 'pl' in 'o' with its futures and queues forwarded to 'rank': 0,
** or -1. */
static int putforwarded(out *o, const conc_payload_t *pl, int rank) {
  int ok = 0;
  conc__qpeer *peer = qpeerof(rank, 1);
  uint64_t *ids = peer != NULL ? conc__qhost_ids(peer, pl, &ok) : NULL;
  if (!ok)
    return -1;
  conc__putpayload(&o->w, pl, ids);
  free(ids);
  return 0;
}

/* As conc__qhost_ids when out of memory: the news goes without values. */
static uint64_t *noids(void *ud, const conc_payload_t *pl, int *ok) {
  (void)ud;
  (void)pl;
  *ok = 0;
  return NULL;
}

/* The news of 'x' without its values, from the stack: a rank's proxy is
** settled even when no memory is left for its values (its result()
** then raises that they could not be transferred). */
static void sendbare(const conc__fwd *x, int rank) {
  char b[32];
  conc__wbuf w = { b, 0, 0, sizeof(b), 0 };
  size_t at = conc__frame_begin(&w, M_FUTURE);  /* never grown */
  conc__fwd_putnews(&w, x, noids, NULL);
  conc__frame_end(&w, at);
  sendnow(w.b, w.n, rank);
}

/* Tell each rank that knows a fired future that it is done. */
static void forward_fired(void) {
  conc__fwd *x = conc__fwd_takefired(&G.fwd);
  while (x != NULL) {
    conc__fwd *next = x->firednext;
    int i;
    for (i = 0; i < x->nknows; i++) {
      int rank = (int)x->knows[i];
      out *o = newout(rank, M_FUTURE);
      if (o != NULL) {
        conc__fwd_putnews(&o->w, x, conc__qhost_ids, qpeerof(rank, 0));
        o = endout(o);
      }
      if (o != NULL && testnomem(&o->w)) {
        freeout(o);
        o = NULL;
      }
      if (o != NULL)
        isend(o);
      else
        sendbare(x, rank);
    }
    conc__fwd_free(x);
    x = next;
  }
}

/* }====================================================================== */


/* {======================================================================
** Rank 0: queues that ranks were given (the comm thread's own)
** ======================================================================= */

static void qh_wake(conc__qhost *h) {
  (void)h;
  wake();
}

/* A frame made in a rank's own buffer is moved to an 'out' of its own
** and sent; without memory for an 'out' it is sent from the buffer. One
** that could not be made (no memory for its value) is replaced by the
** peer's brief form: the rank waits for it. */
static void qh_sent(conc__qhost *h, conc__qpeer *peer) {
  conc__wbuf *w = peer->out;
  int fits = !w->failed && !testnomem(w);
  out *o = NULL;
  (void)h;
  if (fits && (o = (out *)calloc(1, sizeof(*o))) != NULL) {
    o->w = *w;
    o->dest = (int)peer->who;
    memset(w, 0, sizeof(*w));
    isend(o);
  } else if (fits) {
    sendnow(w->b, w->n, (int)peer->who);
  } else {
    sendnow(peer->brief, peer->nbrief, (int)peer->who);
  }
  w->n = w->off = 0;
}

/* A queue request of 'src': 0, or -1 when corrupt (unlocked: the
** queue's wake-ups run other threads' watchers). */
static int onrequest(const unsigned char *body, size_t len, int src) {
  conc__qpeer *peer = qpeerof(src, 0);
  conc__rd r;
  r.p = body + 1;
  r.end = body + len;
  r.bad = 0;
  return peer != NULL ? conc__qhost_request(peer, &r, body[0], 0) : -1;
}

/* Whether a rank knows a queue: it may still use it (a thread its task
** left), and it says when it no longer does (F_QDROP, once its pool's
** state closed), so rank 0 keeps probing. */
static int linked(void) {
  int i;
  for (i = 0; i < G.nqranks; i++)
    if (G.qranks[i] != NULL && G.qranks[i]->qp.links != NULL)
      return 1;
  return 0;
}

/* The end: no rank knows a queue any more. */
static void forgetqueues(void) {
  int i;
  for (i = 0; i < G.nqranks; i++)
    if (G.qranks[i] != NULL) {
      conc__qhost_forget(&G.qranks[i]->qp);
      conc__wbuf_free(&G.qranks[i]->w);
      free(G.qranks[i]);
    }
  free(G.qranks);
  G.qranks = NULL;
  G.nqranks = 0;
  conc__qhost_tell(&G.qh);  /* frees the fired waits: no one to tell */
}

/* }====================================================================== */


/* {======================================================================
** Rank 0: pools (everything under G.mu unless said)
** ======================================================================= */

static void freetask(mtask *t) {
  conc_payload_free(t->payload);
  conc_future_unref(t->f);
  free(t);
}

/* 't' ends with 'outcome' (taken), or CANCELLED when a running cancel
** got there first: queued on 'done', completed once the lock is released
** (callbacks must not run under it). */
static void finish(mpool *p, mtask *t, conc_payload_t *outcome, int failed,
                   conc__queue *done) {
  conc_payload_free(t->payload);
  t->payload = outcome;
  t->failed = failed || outcome == NULL;
  t->stopped = conc__future_end(t->f);  /* no stopper runs after this */
  pthread_mutex_lock(&G.cmu);
  if (t->incq)
    conc__queue_remove(&t->cq);
  pthread_mutex_unlock(&G.cmu);
  p->running--;
  if (t->stopped)
    p->cancelled++;
  else if (t->failed)
    p->failed++;
  else
    p->completed++;
  conc__queue_insert_tail(done, &t->q);
}

/* (Unlocked.) Complete the futures of 'done'. */
static void complete(conc__queue *done) {
  while (!conc__queue_empty(done)) {
    mtask *t = qtask(conc__queue_head(done));
    conc__queue_remove(&t->q);
    if (t->stopped) {
      conc__future_stopped(t->f);  /* the outcome goes with 't' */
    } else {
      conc__payload_complete(t->f, t->payload, t->failed);
      t->payload = NULL;
    }
    freetask(t);
  }
}

/* A running cancel (under the future's lock, any thread): the comm
** thread tells the task's rank. */
static void stoptask(void *arg) {
  mtask *t = (mtask *)arg;
  pthread_mutex_lock(&G.cmu);
  conc__queue_insert_tail(&G.cancels, &t->cq);
  t->incq = 1;
  pthread_mutex_unlock(&G.cmu);
  wake();
}

/* Tell the rank of 't' (in flight) to stop it. */
static void tellstop(mtask *t) {
  char b[32];
  conc__wbuf w = { b, 0, 0, sizeof(b), 0 };
  size_t at = conc__frame_begin(&w, M_CANCEL);  /* never grown */
  conc__put32(&w, t->p->id);
  conc__put64(&w, t->id);
  conc__frame_end(&w, at);
  sendorder(&w, t->rank);
}

/* Tell the ranks to stop the tasks a running cancel asked for: all
** still in flight, as 'finish' takes a task off the list. */
static void sendcancels(void) {
  pthread_mutex_lock(&G.cmu);
  while (!conc__queue_empty(&G.cancels)) {
    mtask *t = conc__container_of((void *)conc__queue_head(&G.cancels),
                                  mtask, cq);
    conc__queue_remove(&t->cq);
    t->incq = 0;
    tellstop(t);
  }
  pthread_mutex_unlock(&G.cmu);
}

static void sendclose(mpool *p) {
  int i;
  for (i = 0; i < p->nranks; i++) {
    char b[16];
    conc__wbuf w = { b, 0, 0, sizeof(b), 0 };
    size_t at;
    if (!p->ranks[i].opened)
      continue;
    at = conc__frame_begin(&w, M_CLOSE);  /* never grown */
    conc__put32(&w, p->id);
    conc__frame_end(&w, at);
    sendorder(&w, i + 1);
  }
}

static void closepool(mpool *p) {
  if (!p->closed) {
    sendclose(p);
    p->closed = 1;
    pthread_cond_broadcast(&G.cv);
  }
}

/* The pool breaks ('msg'): its pending and running futures fail with it,
** later submits fail, its ranks stop what they run (a task blocked on a
** queue too; their answers are ignored) and release its runtime. */
static void breakpool(mpool *p, const char *msg, conc__queue *done) {
  int i;
  if (p->broken)
    return;
  p->broken = 1;
  p->brokenmsg = strdup(msg);
  while (!conc__queue_empty(&p->pending)) {
    mtask *t = qtask(conc__queue_head(&p->pending));
    int r;
    conc__queue_remove(&t->q);
    p->npending--;
    r = conc_future_set_running_or_notify_cancel(t->f);
    if (r == 1) {
      p->running++;
      finish(p, t, conc_payload_error(p->base.ops->broken_class, msg), 1,
             done);
    } else {
      p->cancelled += r == 0;
      freetask(t);
    }
  }
  for (i = 0; i < p->nranks; i++) {
    mrank *k = &p->ranks[i];
    while (!conc__queue_empty(&k->inflight)) {
      mtask *t = qtask(conc__queue_head(&k->inflight));
      conc__queue_remove(&t->q);
      tellstop(t);
      finish(p, t, conc_payload_error(p->base.ops->broken_class, msg), 1,
             done);
    }
    k->ninflight = 0;
  }
  closepool(p);
}

static void breakf(mpool *p, const char *fmt, int rank, conc__queue *done) {
  char msg[160];
  snprintf(msg, sizeof(msg), fmt, rank);
  breakpool(p, msg, done);
}

static int sendopen(mpool *p, int rank) {
  out *o = newout(rank, M_OPEN);
  if (o == NULL)
    return -1;
  conc__put32(&o->w, p->id);
  conc__put32(&o->w, (uint32_t)p->maxtasks);
  conc__put32(&o->w, (uint32_t)p->setuplen);
  conc__putbytes(&o->w, p->setup, p->setuplen);
  conc__put8(&o->w, p->init != NULL);
  if (p->init != NULL && putforwarded(o, p->init, rank) != 0) {
    freeout(o);
    return -1;
  }
  if ((o = endout(o)) == NULL || isend(o) != 0)
    return -1;
  p->ranks[rank - 1].opened = 1;
  return 0;
}

static int sendtask(mpool *p, int rank, mtask *t) {
  out *o = newout(rank, M_TASK);
  if (o == NULL)
    return -1;
  conc__put32(&o->w, p->id);
  conc__put64(&o->w, t->id);
  conc__putf64(&o->w, t->timeout);
  if (putforwarded(o, t->payload, rank) != 0) {
    freeout(o);
    return -1;
  }
  if ((o = endout(o)) == NULL || isend(o) != 0)
    return -1;
  conc_payload_free(t->payload);
  t->payload = NULL;
  t->rank = rank;
  conc__future_begin(t->f, stoptask, t);  /* a stop asked: told at once */
  return 0;
}

/* (Under G.mu.) The tasks every pool has in flight on worker rank
** 'rank': the rank runs them one at a time, whichever pool sent them. */
static int rankload(int rank) {
  mpool *q;
  int n = 0;
  for (q = G.pools; q != NULL; q = q->next)
    if (rank <= q->nranks)
      n += q->ranks[rank - 1].ninflight;
  return n;
}

/* The rank index for the next task: one no pool keeps busy, else one
** idle for this pool, else one with room for a task ahead; -1 when none.
** Pools live at once share the ranks: a task sent behind another pool's
** would wait for it (forever, if that one waits on a queue this one
** feeds) while another rank idles. */
static int pick(mpool *p) {
  int i;
  for (i = 0; i < p->nranks; i++)
    if (p->ranks[i].ninflight == 0 && rankload(i + 1) == 0)
      return i;
  for (i = 0; i < p->nranks; i++)
    if (p->ranks[i].ninflight == 0)
      return i;
  for (i = 0; i < p->nranks; i++)
    if (p->ranks[i].ninflight < AHEAD)
      return i;
  return -1;
}

static void assign(mpool *p, conc__queue *done) {
  int i;
  while (!p->broken && !conc__queue_empty(&p->pending)
         && (i = pick(p)) >= 0) {
    mtask *t;
    int r;
    if (!p->ranks[i].opened && sendopen(p, i + 1) != 0) {
      breakf(p, "cannot start worker rank %d (not enough memory)", i + 1,
             done);
      return;
    }
    t = qtask(conc__queue_head(&p->pending));
    conc__queue_remove(&t->q);
    p->npending--;
    r = conc_future_set_running_or_notify_cancel(t->f);
    if (r != 1) {
      p->cancelled += r == 0;
      freetask(t);
      continue;
    }
    p->running++;
    if (sendtask(p, i + 1, t) != 0) {
      finish(p, t, NULL, 1, done);  /* no memory for the frame */
      continue;
    }
    conc__queue_insert_tail(&p->ranks[i].inflight, &t->q);
    p->ranks[i].ninflight++;
    p->ranks[i].retired = 0;  /* it opens a fresh state for it */
  }
}

/* Whether the comm thread awaits a message for 'p'. */
static int awaits(mpool *p) {
  int i;
  for (i = 0; i < p->nranks; i++)
    if (p->ranks[i].ninflight > 0
        || (p->ranks[i].opened && !p->ranks[i].started))
      return 1;
  return 0;
}

static mpool *findpool(uint32_t id) {
  mpool *p;
  for (p = G.pools; p != NULL && p->id != id; p = p->next)
    ;
  return p;
}

static void onresult(mpool *p, int rank, conc__rd *r, conc__queue *done) {
  uint64_t id = conc__get64(r);
  unsigned failed = conc__get8(r);
  uint64_t memory = conc__get64(r);
  conc_payload_t *outcome = NULL;
  uint64_t *ids = NULL;
  int nomem = 0;
  mrank *k = &p->ranks[rank - 1];
  mtask *t;
  if (failed != CONC__FWD_NOVALUES && !r->bad)
    outcome = conc__getpayload(r, &ids, &nomem);
  if (r->bad || conc__queue_empty(&k->inflight)
      || qtask(conc__queue_head(&k->inflight))->id != id
      || failed > CONC__FWD_NOVALUES
      || (outcome == NULL && !nomem && failed != CONC__FWD_NOVALUES)
      || (ids != NULL && (qpeerof(rank, 0) == NULL
                          || conc__qhost_bind(qpeerof(rank, 0), outcome,
                                              ids) != 0))) {
    conc_payload_free(outcome);
    free(ids);
    breakf(p, "worker rank %d sent a corrupt frame", rank, done);
    return;
  }
  free(ids);
  t = qtask(conc__queue_head(&k->inflight));
  conc__queue_remove(&t->q);
  k->ninflight--;
  k->memory = (size_t)memory;  /* in stats once the future completes */
  if (p->maxtasks > 0 && ++k->ran == p->maxtasks) {  /* its state closed */
    k->ran = 0;
    k->retired = k->ninflight == 0;  /* else a fresh one runs the next */
  }
  finish(p, t, outcome, failed != 0, done);
}

static void onstart(mpool *p, int rank, conc__rd *r, conc__queue *done) {
  int code = (int)conc__get32(r);
  char msg[512];
  if (r->bad) {
    breakf(p, "worker rank %d sent a corrupt frame", rank, done);
    return;
  }
  if (code == 0) {
    p->ranks[rank - 1].started = 1;
    return;
  }
  snprintf(msg, sizeof(msg), "%s%.*s (rank %d)", code == CONC_EBROKEN
           ? "initializer failed: " : "cannot start a worker: ",
           (int)(r->end - r->p), (const char *)r->p, rank);
  breakpool(p, msg, done);
}

/* Every pool that uses 'rank' breaks: it sent what cannot be read. */
static void badrank(int rank, const char *fmt, conc__queue *done) {
  mpool *p;
  for (p = G.pools; p != NULL; p = p->next)
    if (rank >= 1 && rank <= p->nranks && !p->closed)
      breakf(p, fmt, rank, done);
}

static void onmessage(const unsigned char *body, size_t len, int src,
                      conc__queue *done) {
  conc__rd r;
  unsigned type;
  mpool *p;
  r.p = body;
  r.end = body + len;
  r.bad = 0;
  type = conc__get8(&r);
  p = findpool(conc__get32(&r));
  if (r.bad || (type != M_RESULT && type != M_START)) {
    badrank(src, "worker rank %d sent a corrupt frame", done);
    return;
  }
  if (type == M_RESULT && qpeerof(src, 0) != NULL)
    conc__qhost_release(qpeerof(src, 0));  /* its task's waits are over */
  /* answers for a pool that broke or went are dropped */
  if (p == NULL || p->broken || src < 1 || src > p->nranks)
    return;
  if (type == M_RESULT)
    onresult(p, src, &r, done);
  else
    onstart(p, src, &r, done);
}

/* }====================================================================== */


/* {======================================================================
** Rank 0: the communication loop
** ======================================================================= */

/* A new world of this rank and the spawned ones, whose ranks follow. */
static const char *spawn(const char *cmd, char **argv, int n) {
  MPI_Comm merged;
  int size;
  MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
  if (MPI_Comm_spawn(cmd, argv, n, MPI_INFO_NULL, 0, MPI_COMM_SELF,
                     &G.inter, MPI_ERRCODES_IGNORE) != MPI_SUCCESS) {
    G.inter = MPI_COMM_NULL;
    return "MPI_Comm_spawn failed";
  }
  if (MPI_Intercomm_merge(G.inter, 0, &merged) != MPI_SUCCESS) {
    MPI_Comm_disconnect(&G.inter);
    return "MPI_Intercomm_merge failed";
  }
  MPI_Comm_set_errhandler(merged, MPI_ERRORS_RETURN);
  MPI_Comm_size(merged, &size);
  MPI_Comm_free(&G.world);
  G.world = merged;
  pthread_mutex_lock(&G.mu);
  G.size = size;
  pthread_mutex_unlock(&G.mu);
  return NULL;
}

/* Answer a request of conc_mpi_spawn (MPI calls unlocked: it may take
** a second, during which submits must not wait). */
static void spawnasked(void) {
  const char *err;
  pthread_mutex_lock(&G.mu);
  if (G.spawnreq != 1) {
    pthread_mutex_unlock(&G.mu);
    return;
  }
  pthread_mutex_unlock(&G.mu);
  err = spawn(G.spawncmd, G.spawnargv, G.spawnn);
  pthread_mutex_lock(&G.mu);
  G.spawnerr = err;
  G.spawnreq = 0;
  pthread_cond_broadcast(&G.cv);
  pthread_mutex_unlock(&G.mu);
}

/* One round of local work: forwards, tasks out, pools closed. Returns
** whether a message is awaited; '*quit' when everything is over. */
static int round0(conc__queue *done, int *quit) {
  mpool *p;
  int awaited = 0, open = 0;
  pthread_mutex_lock(&G.mu);
  forward_fired();
  sendcancels();
  for (p = G.pools; p != NULL; p = p->next) {
    if (p->closed)
      continue;
    assign(p, done);
    if (p->shutdown && conc__queue_empty(&p->pending) && !awaits(p))
      closepool(p);
    awaited |= awaits(p);
    open |= !p->closed;
  }
  *quit = G.exiting && !open;
  pthread_mutex_unlock(&G.mu);
  return awaited;
}

static int ondrop(const unsigned char *body, size_t len, int src);

/* What came from 'src' ('r' as receive says): queue requests are carried
** out unlocked (the queue's wake-ups run other threads' watchers), the
** rest under G.mu. */
static void onreceived(int r, const unsigned char *body, size_t len,
                       int src, conc__queue *done) {
  int request = r > 0 && conc__qhost_isrequest(body[0]);
  int drop = r > 0 && body[0] == M_FDROP;
  if (request && onrequest(body, len, src) == 0)
    return;
  pthread_mutex_lock(&G.mu);
  if (r < 0)
    badrank(src, "a message from worker rank %d could not be read", done);
  else if (request || (drop && ondrop(body, len, src) != 0))
    badrank(src, "worker rank %d sent a corrupt frame", done);
  else if (!drop)
    onmessage(body, len, src, done);
  pthread_mutex_unlock(&G.mu);
}

/* M_FDROP of 'src': 0, or -1 when corrupt. */
static int ondrop(const unsigned char *body, size_t len, int src) {
  conc__rd r;
  uint64_t id;
  uint32_t n;
  r.p = body + 1;
  r.end = body + len;
  r.bad = 0;
  id = conc__get64(&r);
  n = conc__get32(&r);
  if (r.bad || r.p != r.end || src < 1)
    return -1;
  conc__fwd_drop(&G.fwd, id, (uintptr_t)src, n);
  return 0;
}

/* Every worker rank exits: it waits for the order, never lost. */
static void sayexit(void) {
  char b[8];
  conc__wbuf w = { b, 0, 0, sizeof(b), 0 };
  size_t at = conc__frame_begin(&w, M_EXIT);  /* never grown */
  int i;
  conc__frame_end(&w, at);
  for (i = 1; i < G.size; i++)
    sendorder(&w, i);
  while (testsends() > 0)
    nap(BACKOFF_MIN);
}

static void master(void) {
  double wait = 0, last = conc_now();
  for (;;) {
    conc__queue done;
    unsigned char *body;
    size_t len;
    long sent = G.nsent;
    int src, got, quit, awaited, r;
    conc__queue_init(&done);
    spawnasked();
    conc__qhost_tell(&G.qh);
    awaited = round0(&done, &quit);
    got = G.nsent != sent;
    complete(&done);
    if (quit)
      break;
    awaited |= testsends() > 0;
    while ((r = receive(&body, &len, &src)) != 0) {
      onreceived(r, body, len, src, &done);
      if (r > 0)
        free(body);
      complete(&done);
      got++;
    }
    if (got > 0) {
      wait = 0;
      last = conc_now();
      continue;
    }
    /* a rank that knows a forwarded future may say it dropped it */
    if (!awaited && !linked() && !conc__fwd_told(&G.fwd)) {
      wait = 0;
      nap(-1);
      last = conc_now();  /* woken for new work */
    } else {
      nap(wait = backoff(wait, conc_now() - last,
                         awaited ? BUSY_MAX : IDLE_MAX));
    }
  }
  sayexit();
  conc__fwd_clear(&G.fwd);
  forgetqueues();
  spawnasked();  /* one asked while it stopped: none made */
}

/* }====================================================================== */


/* {======================================================================
** Rank 0: the executor
** ======================================================================= */

/* A submit refused: 'f' is cancelled, as the executor contract says
** (nothing else would complete it), without G.mu: its callbacks run
** here, and may submit. */
static int refuse(conc_future_t *f, int r) {
  conc_future_cancel(f);
  return r;
}

static int mx_submit(conc_executor_t *b, conc_future_t *f,
                     conc_payload_t *task, double timeout) {
  mpool *p = (mpool *)b;
  mtask *t;
  int r = 0;
  if (f == NULL || task == NULL)
    return CONC_EINVAL;
  /* refused here, not once the comm thread failed to make its frame:
  ** the caller's submit raises, as a process pool's does */
  if (!conc__payload_fits(task, MTASKHEAD))
    return refuse(f, CONC_E2BIG);
  if ((t = (mtask *)calloc(1, sizeof(*t))) == NULL)
    return refuse(f, CONC_ENOMEM);
  conc__future_stoppable(f);  /* not under G.mu: a stopper may run */
  pthread_mutex_lock(&G.mu);
  if (p->broken)
    r = CONC_EBROKEN;
  else if (p->shutdown || G.exiting)
    r = CONC_ESHUTDOWN;
  if (r != 0) {
    pthread_mutex_unlock(&G.mu);
    free(t);
    return refuse(f, r);
  }
  t->f = f;
  t->payload = task;
  t->timeout = timeout;
  t->p = p;
  t->id = ++p->nexttask;
  conc_future_ref(f);
  conc__queue_insert_tail(&p->pending, &t->q);
  p->npending++;
  pthread_mutex_unlock(&G.mu);
  wake();
  return 0;
}

/* (Locked.) Move the pending tasks of 'p' to 'q', to be cancelled. */
static void takepending(mpool *p, conc__queue *q) {
  conc__queue_move(&p->pending, q);
  p->npending = 0;
}

/* (Unlocked.) Cancel the tasks of 'q', counting them in 'p'. */
static void cancelall(mpool *p, conc__queue *q) {
  while (!conc__queue_empty(q)) {
    mtask *t = qtask(conc__queue_head(q));
    conc__queue_remove(&t->q);
    if (conc_future_cancel(t->f) == 1) {
      pthread_mutex_lock(&G.mu);
      p->cancelled++;
      pthread_mutex_unlock(&G.mu);
    }
    freetask(t);
  }
}

static int mx_shutdown(conc_executor_t *b, int wait, int cancel) {
  mpool *p = (mpool *)b;
  conc__queue taken;
  conc__queue_init(&taken);
  pthread_mutex_lock(&G.mu);
  p->shutdown = 1;
  if (cancel)
    takepending(p, &taken);
  pthread_mutex_unlock(&G.mu);
  cancelall(p, &taken);
  wake();
  if (wait) {
    pthread_mutex_lock(&G.mu);
    while (!p->closed && G.running)
      conc__cond_wait(&G.cv, &G.mu, CONC_FOREVER);
    pthread_mutex_unlock(&G.mu);
  }
  return 0;
}

static void mx_stats(conc_executor_t *b, conc_pool_stats_t *s) {
  mpool *p = (mpool *)b;
  int i;
  pthread_mutex_lock(&G.mu);
  s->workers = s->idle = 0;
  s->memory = 0;
  for (i = 0; i < p->nranks; i++)
    if (p->ranks[i].started && !p->ranks[i].retired && !p->closed) {
      s->workers++;
      s->idle += p->ranks[i].ninflight == 0;
      s->memory += p->ranks[i].memory;
    }
  s->broken = p->broken;
  s->pending = p->npending;
  s->running = p->running;
  s->completed = p->completed;
  s->failed = p->failed;
  s->cancelled = p->cancelled;
  pthread_mutex_unlock(&G.mu);
}

static char *mx_broken(conc_executor_t *b) {
  mpool *p = (mpool *)b;
  char *msg = NULL;
  pthread_mutex_lock(&G.mu);
  if (p->broken)
    msg = strdup(p->brokenmsg != NULL ? p->brokenmsg : "the pool is broken");
  pthread_mutex_unlock(&G.mu);
  return msg;
}

/* Once closed, the comm thread reaches a pool only through G.pools. */
static void mx_free(conc_executor_t *b) {
  mpool *p = (mpool *)b, **pp;
  mx_shutdown(b, 1, 0);
  pthread_mutex_lock(&G.mu);
  for (pp = &G.pools; *pp != NULL && *pp != p; pp = &(*pp)->next)
    ;
  if (*pp != NULL)
    *pp = p->next;
  pthread_mutex_unlock(&G.mu);
  free(p->brokenmsg);
  free(p->setup);
  free(p->ranks);
  conc_payload_free(p->init);
  free(p);
}

static const conc_executor_ops_t ops = {
  "MPIPoolExecutor", "BrokenMPIPool",
  mx_submit, mx_shutdown, mx_stats, mx_broken, mx_free, NULL
};

int conc_mpi_setupfits(size_t len, const conc_payload_t *init) {
  if (len > CONC_FRAME_MAX - MOPENHEAD - 1)
    return 0;
  return init == NULL || conc__payload_fits(init, MOPENHEAD + len + 1);
}

conc_executor_t *conc_mpiexec_new(int max_workers, int max_tasks,
                                  const void *setup, size_t len,
                                  conc_payload_t *init) {
  mpool *p;
  int i;
  if (max_workers > G.size - 1)
    max_workers = G.size - 1;
  if (!G.running || G.rank != 0 || max_workers <= 0
      || (p = (mpool *)calloc(1, sizeof(*p))) == NULL) {
    conc_payload_free(init);
    return NULL;
  }
  p->ranks = (mrank *)calloc((size_t)max_workers, sizeof(mrank));
  p->setup = (char *)malloc(len > 0 ? len : 1);
  if (p->ranks == NULL || p->setup == NULL) {
    free(p->ranks);
    free(p->setup);
    free(p);
    conc_payload_free(init);
    return NULL;
  }
  memcpy(p->setup, setup, len);
  p->setuplen = len;
  p->init = init;
  p->base.ops = &ops;
  p->nranks = max_workers;
  p->maxtasks = max_tasks;
  for (i = 0; i < max_workers; i++)
    conc__queue_init(&p->ranks[i].inflight);
  conc__queue_init(&p->pending);
  pthread_mutex_lock(&G.mu);
  p->id = ++G.nextpool;
  p->shutdown = G.exiting;
  p->next = G.pools;
  G.pools = p;
  pthread_mutex_unlock(&G.mu);
  return &p->base;
}

int conc_mpi_spawn(const char *cmd, char **argv, int n, int *size,
                   const char **why) {
  int r = 0;
  pthread_mutex_lock(&startmu);
  pthread_mutex_lock(&G.mu);
  if (!G.running || G.rank != 0 || G.size != 1 || G.spawned || G.exiting) {
    *why = G.spawned ? "workers were spawned already" : "not rank 0 alone";
    r = CONC_ESYS;
  } else {
    G.spawned = 1;
    G.spawncmd = cmd;
    G.spawnargv = argv;
    G.spawnn = n;
    G.spawnreq = 1;
    pthread_mutex_unlock(&G.mu);
    wake();
    pthread_mutex_lock(&G.mu);
    while (G.spawnreq == 1)
      conc__cond_wait(&G.cv, &G.mu, CONC_FOREVER);
    if (G.spawnerr != NULL) {
      *why = G.spawnerr;
      r = CONC_ESYS;
    }
  }
  *size = G.size;
  pthread_mutex_unlock(&G.mu);
  pthread_mutex_unlock(&startmu);
  return r;
}

void conc_mpi_stop(void) {
  mpool *p;
  pthread_mutex_lock(&startmu);
  if (!G.running || G.rank != 0) {
    pthread_mutex_unlock(&startmu);
    return;
  }
  for (;;) {  /* cancel what is queued, pool by pool, then exit */
    conc__queue taken;
    conc__queue_init(&taken);
    pthread_mutex_lock(&G.mu);
    G.exiting = 1;
    for (p = G.pools; p != NULL && conc__queue_empty(&p->pending);
         p = p->next)
      p->shutdown = 1;
    if (p != NULL) {
      p->shutdown = 1;
      takepending(p, &taken);
    }
    pthread_mutex_unlock(&G.mu);
    if (p == NULL)
      break;
    cancelall(p, &taken);
  }
  wake();
  pthread_join(G.thread, NULL);
  pthread_mutex_lock(&G.mu);
  G.running = 0;
  pthread_cond_broadcast(&G.cv);
  pthread_mutex_unlock(&G.mu);
  pthread_mutex_unlock(&startmu);
}

/* }====================================================================== */


/* {======================================================================
** Ranks >= 1: the communication loop
** ======================================================================= */

/* The proxy of rank 0's future 'id', made on first sight, with
** 'mention' more mentions; NULL when out of memory. */
static conc_future_t *proxyof(uint64_t id, int mention) {
  proxy *x;
  for (x = G.proxies; x != NULL; x = x->next)
    if (x->id == id) {
      x->mentions += (uint32_t)mention;
      return x->f;
    }
  x = (proxy *)malloc(sizeof(*x));
  if (x == NULL || (x->f = conc__future_new_foreign()) == NULL) {
    free(x);
    return NULL;
  }
  x->id = id;
  x->mentions = (uint32_t)mention;
  x->next = G.proxies;
  G.proxies = x;
  __atomic_add_fetch(&G.nproxies, 1, __ATOMIC_RELAXED);
  return x->f;
}

/* Let go of the proxy at '*px'. */
static void freeproxy(proxy **px) {
  proxy *x = *px;
  *px = x->next;
  conc_future_unref(x->f);
  free(x);
  __atomic_sub_fetch(&G.nproxies, 1, __ATOMIC_RELAXED);
}

/* (Comm thread.) Drop the proxies that no one on this rank holds any
** more (their tasks ended, their handles were collected), telling rank
** 0: one whose future is never set (a task cancelled before it ran was
** given it, its owner let it go) would otherwise stay here, and its
** entry on rank 0, for as long as the job runs. No new reference to
** such a proxy can appear but from this thread (readpayload). Without
** memory for the message it stays, for the next sweep. */
static void sweepproxies(void) {
  proxy **px = &G.proxies, *x;
  while ((x = *px) != NULL) {
    out *o;
    if (conc__future_held(x->f) || (o = newout(0, M_FDROP)) == NULL) {
      px = &x->next;
      continue;
    }
    conc__put64(&o->w, x->id);
    conc__put32(&o->w, x->mentions);
    if ((o = endout(o)) == NULL || isend(o) != 0) {
      px = &x->next;
      continue;
    }
    freeproxy(px);
  }
}

long conc_mpi_proxies(void) {
  return G.rank == 0 ? __atomic_load_n(&G.fwd.n, __ATOMIC_RELAXED)
                     : __atomic_load_n(&G.nproxies, __ATOMIC_RELAXED);
}

/* A worker rank that cannot go on leaves without finalizing (from
** either thread), which ends the job: Open MPI cannot lose one rank and
** keep the others. */
static void fail(const char *what) {
  fprintf(stderr, "concurrent.futures.mpi: worker rank %d: %s\n", G.rank,
          what);
  _exit(71);
}

/* The payload at 'r' with its proxies. */
static conc_payload_t *readpayload(conc__rd *r) {
  uint64_t *ids;
  int nomem;
  size_t i;
  conc_payload_t *p = conc__getpayload(r, &ids, &nomem);
  if (p == NULL)
    fail(nomem ? "out of memory" : "rank 0 sent a corrupt frame");
  for (i = 0; i < p->nfutures; i++) {
    if (ids[i] & CONC__QID) {
      conc_chanq_t *q = conc__qproxies_get(&G.qpx, ids[i]);
      if (q == NULL)
        fail("out of memory");
      conc_payload_setqueue(p, i, q);
      conc_chanq_unref(q);
    } else {
      conc_future_t *f = proxyof(ids[i], 1);
      if (f == NULL)
        fail("out of memory");
      conc_payload_setfuture(p, i, f);
    }
  }
  free(ids);
  return p;
}

static void post(out *o);

/* The proxies' hooks (remoteq.h): a request is a message of its own,
** which the comm thread sends; it reads every reply. */
static conc__wbuf *qpx_begin(conc__qproxies *t, int type, size_t *at) {
  out *o = newout(0, type);
  (void)t;
  if (o == NULL)
    fail("out of memory");
  *at = 0;
  return &o->w;
}

static void qpx_send(conc__qproxies *t, conc__wbuf *w, int drop) {
  out *o = conc__container_of(w, out, w);
  (void)t;
  if (drop)
    freeout(o);
  else
    post(o);
}

static conc_payload_t *qpx_readpayload(conc__qproxies *t, conc__rd *r) {
  (void)t;
  return readpayload(r);
}

/* Settle and let go of every proxy: rank 0 has ended (M_EXIT), so no
** news of its futures will come. A wait on one (in a finalizer as a
** pool's state closes, in a thread a task left) then fails as one on
** its queues does, instead of holding this rank, and with it the whole
** job, forever. */
static void endproxies(void) {
  while (G.proxies != NULL) {
    conc_payload_t *e = conc_payload_error(ops.broken_class,
                                           "rank 0 has ended");
    conc__future_settle_foreign(G.proxies->f, e == NULL, e,
                                conc_payload_sizeof(e), conc_payload_free,
                                1);
    freeproxy(&G.proxies);
  }
}

static void onfuture(conc__rd *r) {
  uint64_t id = conc__get64(r);
  unsigned state = conc__get8(r);
  int failed = (int)conc__get8(r);
  conc_future_t *f = proxyof(id, 0);
  conc_payload_t *p = NULL;
  proxy **px, *x;
  if (f == NULL)
    fail("out of memory");
  if (state == CONC__FWD_VALUES)
    p = readpayload(r);
  conc__future_settle_foreign(f, state == CONC__FWD_CANCELLED, p,
                              conc_payload_sizeof(p), conc_payload_free,
                              failed);
  for (px = &G.proxies; (x = *px) != NULL; px = &x->next)
    if (x->id == id) {
      freeproxy(px);
      break;
    }
}

/* (Under G.mu.) If 'j' is task 'task' of 'pool', stop it: at once when
** it runs, else when it starts. */
static void stopjob(job *j, uint32_t pool, uint64_t task) {
  if (j == NULL || j->type != M_TASK || j->pool != pool || j->task != task)
    return;
  if (j->started)
    conc__taskstop_ask(&G.tstop, CONC_STOP_CANCEL);
  else
    j->cancelled = 1;
}

/* M_CANCEL: the task taken or queued stops; one that ended is past
** stopping (rank 0 knows from its result). */
static void oncancel(conc__rd *r) {
  uint32_t pool = conc__get32(r);
  uint64_t task = conc__get64(r);
  job *j;
  if (r->bad)
    fail("rank 0 sent a corrupt frame");
  pthread_mutex_lock(&G.mu);
  stopjob(G.current, pool, task);
  for (j = G.jobs; j != NULL; j = j->next)
    stopjob(j, pool, task);
  pthread_mutex_unlock(&G.mu);
}

static void queuejob(job *j) {
  pthread_mutex_lock(&G.mu);
  *G.jobtail = j;
  G.jobtail = &j->next;
  pthread_cond_signal(&G.cv);
  pthread_mutex_unlock(&G.mu);
}

static void onorder(const unsigned char *body, size_t len) {
  conc__rd r;
  job *j = (job *)calloc(1, sizeof(*j));
  if (j == NULL)
    fail("out of memory");
  r.p = body;
  r.end = body + len;
  r.bad = 0;
  j->type = (int)conc__get8(&r);
  if (j->type == F_QREPLY || j->type == F_QCHANGED) {
    int bad = conc__qproxies_onframe(&G.qpx, (unsigned)j->type, &r) != 0;
    free(j);
    if (bad)
      fail("rank 0 sent a corrupt frame");
    return;
  }
  if (j->type == M_FUTURE || j->type == M_CANCEL) {
    int type = j->type;
    free(j);
    if (type == M_FUTURE)
      onfuture(&r);
    else
      oncancel(&r);
    return;
  }
  if (j->type != M_EXIT)
    j->pool = conc__get32(&r);
  if (j->type == M_OPEN) {
    uint32_t n;
    j->maxtasks = (int)conc__get32(&r);
    n = conc__get32(&r);
    if (!r.bad && n <= (size_t)(r.end - r.p)) {
      if ((j->setup = (char *)malloc(n + 1)) == NULL)
        fail("out of memory");
      memcpy(j->setup, r.p, n);
      j->setuplen = n;
      r.p += n;
      if (conc__get8(&r) && !r.bad)
        j->payload = readpayload(&r);
    } else {
      r.bad = 1;
    }
  } else if (j->type == M_TASK) {
    j->task = conc__get64(&r);
    j->timeout = conc__getf64(&r);
    if (!r.bad)
      j->payload = readpayload(&r);
  } else if (j->type == M_EXIT) {
    G.exitseen = 1;
    pthread_mutex_lock(&G.mu);
    conc__qproxies_stop(&G.qpx);  /* rank 0 reads no more */
    pthread_mutex_unlock(&G.mu);
    conc__qproxies_wakeall(&G.qpx);  /* nor says a queue changed */
    endproxies();
  } else if (j->type != M_CLOSE) {
    r.bad = 1;
  }
  if (r.bad)
    fail("rank 0 sent a corrupt frame");
  queuejob(j);
}

static void worker(void) {
  double wait = 0, last = conc_now();
  for (;;) {
    out *q, *next;
    unsigned char *body;
    size_t len;
    int src, r, got = 0, stop, left;
    long jobsdone;
    pthread_mutex_lock(&G.mu);
    q = G.outq;
    G.outq = NULL;
    G.outtail = &G.outq;
    stop = G.mainstop;
    jobsdone = G.jobsdone;
    pthread_mutex_unlock(&G.mu);
    if (jobsdone != G.swept && !G.exitseen) {  /* what a job held is let
                                               ** go by its end */
      G.swept = jobsdone;
      sweepproxies();
    }
    for (; q != NULL; q = next, got++) {
      next = q->next;
      if (isend(q) != 0)
        fail("cannot send to rank 0");
    }
    left = testsends();
    if (stop && left == 0)
      break;
    while (!G.exitseen && (r = receive(&body, &len, &src)) != 0) {
      if (r < 0 || src != 0)
        fail(r < 0 ? "out of memory" : "a message from a worker rank");
      onorder(body, len);
      free(body);
      got++;
    }
    if (got > 0) {
      wait = 0;
      last = conc_now();
    } else {
      nap(wait = backoff(wait, conc_now() - last, IDLE_MAX));
    }
  }
  endproxies();
}

/* }====================================================================== */


/* {======================================================================
** Ranks >= 1: the worker loop (the caller's thread)
** ======================================================================= */

/* A pool's runtime on this rank. */
typedef struct wpool {
  struct wpool *next;
  uint32_t id;
  conc_runtime_t rt;
  void *ctx;
  int ok;                   /* its runtime is made */
  int live;                 /* a state of it runs ('ctx') */
  int maxtasks, ran;        /* tasks a state serves (0: all); its count */
} wpool;

static job *nextjob(void) {
  job *j;
  pthread_mutex_lock(&G.mu);
  while (G.jobs == NULL)
    conc__cond_wait(&G.cv, &G.mu, CONC_FOREVER);
  j = G.jobs;
  if ((G.jobs = j->next) == NULL)
    G.jobtail = &G.jobs;
  if (j->type == M_TASK)  /* a cancel finds it from now on */
    G.current = j;
  pthread_mutex_unlock(&G.mu);
  return j;
}

/* The running task's time is up (on the timer's thread). */
static void expired(conc__tnode *n) {
  (void)n;
  conc__taskstop_ask(&G.tstop, CONC_STOP_TIMEOUT);
}

/* Run task 'j' (G.current) on the runtime of 'p', or not when 'p' is
** NULL: a cancel or its time limit may stop it meanwhile. */
static conc_payload_t *runcurrent(wpool *p, job *j, int *failed) {
  conc_payload_t *res = NULL;
  if (p != NULL) {
    pthread_mutex_lock(&G.mu);
    conc__taskstop_init(&G.tstop, &G.timer, p->rt.interrupt, p->ctx);
    G.tstop.ctl.timeout = j->timeout;
    /* a cancel that came before it started is asked as one that comes
    ** now: the flag alone left the stop unrepeated (the timer's 'again'),
    ** lost once the task took its first stop hook off (debug.sethook in
    ** an xpcall handler) and ran on */
    if (j->cancelled)
      conc__taskstop_ask(&G.tstop, CONC_STOP_CANCEL);
    j->started = 1;
    pthread_mutex_unlock(&G.mu);
    res = conc__taskstop_run(&G.tstop, &G.limit, &p->rt, j->payload,
                             failed);
  }
  pthread_mutex_lock(&G.mu);
  G.current = NULL;  /* no stop for it after this */
  pthread_mutex_unlock(&G.mu);
  if (p != NULL)
    conc__taskstop_end(&G.tstop);
  return res;
}

static void post(out *o) {
  if (o == NULL)
    fail("out of memory");
  pthread_mutex_lock(&G.mu);
  *G.outtail = o;
  G.outtail = &o->next;
  pthread_mutex_unlock(&G.mu);
  wake();
}

static void sendstart(uint32_t pool, int code, const char *why) {
  out *o = newout(0, M_START);
  if (o == NULL)
    fail("out of memory");
  conc__put32(&o->w, pool);
  conc__put32(&o->w, (uint32_t)code);
  if (code != 0) {
    const char *msg = why != NULL ? why : conc_strerror(code);
    conc__putbytes(&o->w, msg, strlen(msg));
  }
  post(endout(o));
}

/* Start a state of 'p' (its runtime made): its first, or a fresh one
** after the last served its max_tasks_per_child. 0; or the code and
** '*why' of the failure, and then the runtime is released. */
static int startstate(const conc_mpi_worker *w, wpool *p, char **why) {
  int code = p->rt.start(p->rt.ud, G.rank, &p->ctx, why);
  p->live = code == 0;
  if (code != 0) {
    w->close(&p->rt);
    p->ok = 0;
  }
  return code;
}

static void openpool(const conc_mpi_worker *w, wpool **pools, job *j) {
  wpool *p = (wpool *)calloc(1, sizeof(*p));
  char *why = NULL;
  int code;
  if (p == NULL)
    fail("out of memory");
  p->id = j->pool;
  p->maxtasks = j->maxtasks;
  code = w->open(j->setup, j->setuplen, j->payload, &p->rt);
  j->payload = NULL;
  p->ok = code == 0;
  if (code == 0)
    code = startstate(w, p, &why);
  p->next = *pools;
  *pools = p;
  sendstart(p->id, code, why);
  free(why);
}

/* Close the state of 'p' (max_tasks_per_child, or the pool's end). */
static void endstate(wpool *p) {
  p->rt.stop(p->rt.ud, p->ctx);
  p->live = 0;
  p->ran = 0;
}

static void closepool_w(const conc_mpi_worker *w, wpool **pools,
                        uint32_t id) {
  wpool **pp, *p;
  for (pp = pools; (p = *pp) != NULL; pp = &p->next)
    if (p->id == id) {
      *pp = p->next;
      if (p->live)
        endstate(p);
      if (p->ok)
        w->close(&p->rt);
      free(p);
      return;
    }
}

/* A test-only hook (the specs set it with mpiexec -x): every result of
** this rank is sent cut short, as a corrupt frame. */
static int corrupt(void) {
  const char *e = getenv("CONCURRENT_MPI_TEST_CORRUPT");
  return e != NULL && strcmp(e, "1") == 0;
}

/* Send the result 'res' (taken) of 'j' with the bytes its pool's state
** holds ('memory'). */
static void sendresult(job *j, conc_payload_t *res, int failed,
                       size_t memory, int cut) {
  uint64_t *ids = NULL;
  int r;
  out *o;
  res = conc__payload_fitting(res, MRESULTHEAD, &failed);
  if (res != NULL && (r = conc__qproxies_outids(res, &ids)) != 0) {
    /* only rank 0's own queues cross back: it could not tell others
    ** from its own */
    conc_payload_free(res);
    failed = 1;
    res = r == CONC_ENOMEM ? conc_payload_error("", "not enough memory")
          : conc_payload_error("InvalidStateError", "a future, or a queue "
                               "made in a worker rank, cannot leave it");
  }
  fflush(stdout);  /* the task's own output, before its result */
  if ((o = newout(0, M_RESULT)) == NULL)
    fail("out of memory");
  conc__put32(&o->w, j->pool);
  if (!cut) {
    conc__put64(&o->w, j->task);
    conc__put8(&o->w, res != NULL ? (unsigned)failed : CONC__FWD_NOVALUES);
    conc__put64(&o->w, (uint64_t)memory);
    if (res != NULL)
      conc__putpayload(&o->w, res, ids);
  }
  free(ids);
  conc_payload_free(res);
  post(endout(o));
}

/* Run 'j' in its pool's state. A pool with max_tasks_per_child closes
** its state once that many tasks ran there (a rank cannot be replaced
** as a worker process is) and opens a fresh one, with its initializer,
** for its next task; one that cannot start breaks the pool (M_START). */
static void runtask(const conc_mpi_worker *w, wpool *pools, job *j,
                    int cut) {
  wpool *p;
  conc_payload_t *res;
  int failed = 1, last;
  for (p = pools; p != NULL && p->id != j->pool; p = p->next)
    ;
  if (p != NULL && p->ok && !p->live) {
    char *why = NULL;
    int code = startstate(w, p, &why);
    if (code != 0)
      sendstart(p->id, code, why);
    free(why);
  }
  res = runcurrent(p != NULL && p->ok ? p : NULL, j, &failed);
  if (p == NULL || !p->ok)
    res = conc_payload_error("", "the pool's worker did not start");
  last = p != NULL && p->ok && p->maxtasks > 0 && ++p->ran == p->maxtasks;
  sendresult(j, res, failed, p != NULL && p->ok && !last
                             ? p->rt.memory(p->ctx) : 0, cut);
  if (last)  /* after its result: the future need not wait for it */
    endstate(p);
}

int conc_mpi_serve(const conc_mpi_worker *w) {
  wpool *pools = NULL;
  int cut = corrupt();
  for (;;) {
    job *j = nextjob();
    int type = j->type;
    if (type == M_OPEN)
      openpool(w, &pools, j);
    else if (type == M_TASK)
      runtask(w, pools, j, cut);
    else if (type == M_CLOSE)
      closepool_w(w, &pools, j->pool);
    conc_payload_free(j->payload);
    free(j->setup);
    free(j);
    if (type == M_EXIT)
      break;
    pthread_mutex_lock(&G.mu);
    G.jobsdone++;
    pthread_mutex_unlock(&G.mu);
    wake();
  }
  while (pools != NULL)
    closepool_w(w, &pools, pools->id);
  fflush(stdout);
  pthread_mutex_lock(&G.mu);
  G.mainstop = 1;
  pthread_mutex_unlock(&G.mu);
  wake();
  pthread_join(G.thread, NULL);
  return 0;
}

/* }====================================================================== */


/* {======================================================================
** Starting
** ======================================================================= */

static void started(int err, const char *why) {
  pthread_mutex_lock(&G.mu);
  G.err = err;
  G.why = why;
  G.ready = 1;
  pthread_cond_broadcast(&G.cv);
  pthread_mutex_unlock(&G.mu);
}

static void *comm_main(void *arg) {
  int provided = 0;
  (void)arg;
  /* naps of tens of microseconds, not the default 50 us of slack more */
  prctl(PR_SET_TIMERSLACK, 1UL);
  if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)
      != MPI_SUCCESS) {
    started(1, "MPI_Init_thread failed");
    return NULL;
  }
  /* a spawned worker's world is its parent's merged with its siblings */
  MPI_Comm_get_parent(&G.inter);
  if ((G.inter != MPI_COMM_NULL
       ? MPI_Intercomm_merge(G.inter, 1, &G.world)
       : MPI_Comm_dup(MPI_COMM_WORLD, &G.world)) != MPI_SUCCESS) {
    MPI_Finalize();
    started(1, "cannot make the communicator");
    return NULL;
  }
  /* a failing call returns its code where the MPI library can */
  MPI_Comm_set_errhandler(G.world, MPI_ERRORS_RETURN);
  MPI_Comm_rank(G.world, &G.rank);
  MPI_Comm_size(G.world, &G.size);
  G.testnomem = G.rank == 0 && getenv("CONCURRENT_MPI_TEST_NOMEM") != NULL
                && strcmp(getenv("CONCURRENT_MPI_TEST_NOMEM"), "1") == 0;
  started(0, NULL);
  if (G.rank == 0)
    master();
  else
    worker();
  MPI_Comm_free(&G.world);
  if (G.inter != MPI_COMM_NULL)
    MPI_Comm_disconnect(&G.inter);
  MPI_Finalize();
  return NULL;
}

int conc_mpi_start(int *rank, int *size, const char **why) {
  int r = 0;
  pthread_mutex_lock(&startmu);
  if (!G.startcalled) {
    G.startcalled = 1;
    G.outtail = &G.outq;
    G.jobtail = &G.jobs;
    G.fwd.wake = fwd_wake;
    G.qh.fwd = &G.fwd;
    G.qh.wake = qh_wake;
    G.qh.sent = qh_sent;
    conc__qhost_fifo(&G.qh);
    G.qpx.begin = qpx_begin;
    G.qpx.send = qpx_send;
    G.qpx.readpayload = qpx_readpayload;
    conc__queue_init(&G.cancels);
    G.limit.fire = expired;
    G.limit.at = -1;
    if (pthread_mutex_init(&G.mu, NULL) != 0 || conc__cond_init(&G.cv) != 0
        || conc__qproxies_init(&G.qpx, &G.mu) != 0
        || pthread_mutex_init(&G.cmu, NULL) != 0
        || conc__tasktimer_init(&G.timer) != 0
        || pthread_mutex_init(&G.wmu, NULL) != 0
        || conc__cond_init(&G.wcv) != 0) {
      G.err = 1;
      G.why = "cannot make the communication thread's locks";
    } else {
      if (conc__thread_start(&G.thread, 0, comm_main, NULL) != 0) {
        G.err = 1;
        G.why = "cannot start the communication thread";
      }
      if (!G.err) {
        pthread_mutex_lock(&G.mu);
        while (!G.ready)
          conc__cond_wait(&G.cv, &G.mu, CONC_FOREVER);
        pthread_mutex_unlock(&G.mu);
        if (G.err)
          pthread_join(G.thread, NULL);
        else
          G.running = 1;
      }
    }
  }
  if (G.err) {
    r = CONC_ESYS;
    *why = G.why;
  }
  *rank = G.rank;
  *size = G.size;
  pthread_mutex_unlock(&startmu);
  return r;
}

/* }====================================================================== */
