/*
** child.c: a forked worker process of the process pool. Its main thread
** runs tasks through the runtime in a fresh state, and reads the frames
** from the parent while idle; while a task runs, a reader thread takes
** the reading over (see 'follow'): it queues tasks and completes the
** proxies of the parent's futures, so a task may wait on one while it
** runs. Proxies of the parent's queues send each operation to the
** parent and wait for its reply (whichever thread reads hands it over).
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "proc.h"
#include "remoteq.h"

/* A queued task. */
typedef struct ctask {
  struct ctask *next;
  uint64_t id;
  double timeout;          /* seconds from its start, or 0 */
  int cancelled;           /* F_CANCEL came before it started */
  conc_payload_t *payload;
} ctask;

/* A proxy of a parent's future, until the parent says it is done. */
typedef struct proxy {
  struct proxy *next;
  uint64_t id;
  conc_future_t *f;
} proxy;

/* Bytes read from the socket, the first 'have' not yet handled. */
typedef struct rdbuf {
  unsigned char *b;
  size_t have, size;
} rdbuf;

typedef struct child {
  int sock;
  pthread_mutex_t wmu;     /* writing to 'sock': results and requests */
  conc__wbuf qw;           /* the requests' frames (under 'wmu') */
  pthread_mutex_t mu;
  uint32_t news;           /* atomic: bumped when a task or the stop
                              comes, or the reading comes back; the
                              main thread waits on it */
  int idle;                /* atomic: the main thread waits on 'news' */
  /* Who reads the socket (see 'follow'); what follows up to 'fnews' is
  ** about that; 'rb' and 'proxies' are the reading thread's. */
  rdbuf rb;
  int mainreads;           /* the main thread, when idle (under 'mu') */
  uint32_t runs;           /* tasks started (under 'mu') */
  int wantreader;          /* a request awaits its reply (under 'mu') */
  int fasleep;             /* the reader thread waits for a task to
                              start, with no time limit (under 'mu') */
  int closing;             /* the main thread ran its last task: it
                              closes its state and reads no more, so
                              the reader thread reads (under 'mu') */
  uint32_t fnews;          /* atomic: the reader thread waits on it */
  conc__qproxies qpx;      /* the parent's queues (requests under 'mu') */
  ctask *head, **tail;     /* tasks not yet run (under 'mu') */
  int stop;                /* F_STOP or end of file: the reading ended,
                              no reply will come (under 'mu') */
  proxy *proxies;
  const conc_runtime_t *rt;
  void *ctx;               /* the runtime's */
  uint64_t running;        /* the running task's id, or 0 (under 'mu') */
  conc__taskstop tstop;    /* its controls, on 'timer' */
  conc__tnode limit;       /* in 'timer' while it runs with a timeout */
  conc__tasktimer timer;
} child;

/* On the thread that runs tasks: the forwarded id of the running task's
** own future (proc.h), which its proxy carries. initial-exec, as
** pool.c's 'cur'. */
static __thread uint64_t runningtag __attribute__((tls_model("initial-exec")));

uint64_t conc__child_running(void) {
  return runningtag;
}

/* Ask the running task to stop for 'why' unless it was asked already
** ('mu' held, or the running task's limit fired: it still runs). */
static void stoprunning(child *c, int why) {
  conc__taskstop_ask(&c->tstop, why);
}

/* Leave without the parent's atexit handlers or stdio buffers, and
** without what a sanitizer's _exit hook would do: its leak check would
** take the parent's heap, copied here, for this process's leaks. */
static void leave(int status) {
  syscall(SYS_exit_group, status);
  _exit(status);  /* not reached */
}

/* The proxy of the parent's future 'id', made on first sight. */
static conc_future_t *proxyof(child *c, uint64_t id) {
  proxy *x;
  for (x = c->proxies; x != NULL; x = x->next)
    if (x->id == id)
      return x->f;
  x = (proxy *)malloc(sizeof(*x));
  if (x == NULL || (x->f = conc__future_new_foreign()) == NULL)
    leave(CONC__CHILD_ENOMEM);
  conc__future_tag_foreign(x->f, id);
  x->id = id;
  x->next = c->proxies;
  c->proxies = x;
  return x->f;
}

/* Fill the entries of 'p' with the proxies its ids name. */
static void bindproxies(child *c, conc_payload_t *p, const uint64_t *ids) {
  size_t i;
  for (i = 0; i < p->nfutures; i++)
    if (ids[i] & CONC__QID) {
      conc_chanq_t *q = conc__qproxies_get(&c->qpx, ids[i]);
      if (q == NULL)
        leave(CONC__CHILD_ENOMEM);
      conc_payload_setqueue(p, i, q);
      conc_chanq_unref(q);
    } else {
      conc_payload_setfuture(p, i, proxyof(c, ids[i]));
    }
}

/* The payload at 'r' with its proxies; leaves on corruption. */
static conc_payload_t *readpayload(child *c, conc__rd *r) {
  uint64_t *ids;
  int nomem;
  conc_payload_t *p = conc__getpayload(r, &ids, &nomem);
  if (p == NULL)
    leave(nomem ? CONC__CHILD_ENOMEM : CONC__CHILD_EPROTO);
  bindproxies(c, p, ids);
  free(ids);
  return p;
}


/* {======================================================================
** Proxies of the parent's queues (remoteq.c): how their requests go
** ======================================================================= */

static conc__wbuf *qpx_begin(conc__qproxies *t, int type, size_t *at) {
  child *c = conc__container_of(t, child, qpx);
  pthread_mutex_lock(&c->wmu);
  *at = conc__frame_begin(&c->qw, type);
  return &c->qw;
}

static void qpx_send(conc__qproxies *t, conc__wbuf *w, int drop) {
  child *c = conc__container_of(t, child, qpx);
  if (!drop && conc__wbuf_flushall(c->sock, w) != 0)
    leave(CONC__CHILD_EPROTO);  /* the parent is gone */
  w->off = w->n = 0;  /* sent, or dropped */
  pthread_mutex_unlock(&c->wmu);
}

static void tellreader(child *c);

/* (Under 'mu'.) When the main thread, which would read the reply, runs
** a task, the reader thread reads from now on. */
static void qpx_asked(conc__qproxies *t) {
  child *c = conc__container_of(t, child, qpx);
  int wake = c->mainreads && c->running != 0;
  c->wantreader |= wake;
  if (wake)
    tellreader(c);
}

static conc_payload_t *qpx_readpayload(conc__qproxies *t, conc__rd *r) {
  return readpayload(conc__container_of(t, child, qpx), r);
}

/* }====================================================================== */


/* A task or the stop came: wake the main thread if it waits for one.
** Not a condition variable: the main thread would take 'mu' back on
** waking, and its unlock would then cost a system call a task. */
static void tellmain(child *c) {
  __atomic_add_fetch(&c->news, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&c->idle, __ATOMIC_SEQ_CST))
    syscall(SYS_futex, &c->news, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Wake the reader thread: the reading is its, or a task it must watch
** started, or the end came. */
static void tellreader(child *c) {
  __atomic_add_fetch(&c->fnews, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &c->fnews, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void ontask(child *c, conc__rd *r) {
  ctask *t = (ctask *)malloc(sizeof(*t));
  if (t == NULL)
    leave(CONC__CHILD_ENOMEM);
  t->id = conc__get64(r);
  t->timeout = conc__getf64(r);
  t->cancelled = 0;
  t->payload = readpayload(c, r);
  t->next = NULL;
  pthread_mutex_lock(&c->mu);
  *c->tail = t;
  c->tail = &t->next;
  pthread_mutex_unlock(&c->mu);
  tellmain(c);
}

/* A forwarded future is done: complete its proxy, then forget it (the
** task's handles keep the proxy alive). */
static void onfuture(child *c, conc__rd *r) {
  uint64_t id = conc__get64(r);
  unsigned state = conc__get8(r);
  int failed = (int)conc__get8(r);
  conc_future_t *f = proxyof(c, id);
  proxy **px, *x;
  conc_payload_t *p = NULL;
  if (state == CONC__FWD_VALUES)
    p = readpayload(c, r);
  conc__future_settle_foreign(f, state == CONC__FWD_CANCELLED, p,
                              conc_payload_sizeof(p), conc_payload_free,
                              failed);
  for (px = &c->proxies; (x = *px) != NULL; px = &x->next)
    if (x->id == id) {
      *px = x->next;
      conc_future_unref(x->f);
      free(x);
      break;
    }
}

/* Stop task 'id': the running one at once, a queued one when it starts;
** one that ended is past stopping (the parent knows from its result). */
static void oncancel(child *c, conc__rd *r) {
  uint64_t id = conc__get64(r);
  ctask *t;
  pthread_mutex_lock(&c->mu);
  if (c->running == id)
    stoprunning(c, CONC_STOP_CANCEL);
  for (t = c->head; t != NULL; t = t->next)
    if (t->id == id)
      t->cancelled = 1;
  pthread_mutex_unlock(&c->mu);
}

/* Handle one frame body of 'len' bytes at 'body': 0, or 1 for F_STOP;
** leaves on a corrupt frame. */
static int onframe(child *c, const unsigned char *body, uint32_t len) {
  conc__rd r;
  int type;
  r.p = body;
  r.end = body + len;
  r.bad = 0;
  type = (int)conc__get8(&r);
  switch (type) {
    case F_TASK: ontask(c, &r); break;
    case F_FUTURE: onfuture(c, &r); break;
    case F_CANCEL: oncancel(c, &r); break;
    case F_QREPLY: case F_QCHANGED:
      if (conc__qproxies_onframe(&c->qpx, (unsigned)type, &r) != 0)
        leave(CONC__CHILD_EPROTO);
      break;
    case F_STOP: return 1;
    default: leave(CONC__CHILD_EPROTO);
  }
  if (r.bad)
    leave(CONC__CHILD_EPROTO);
  return 0;
}

/* Bytes asked for per read: a frame longer than that gets a buffer of
** its own size, given back once it is handled. */
#define RDCHUNK (16 * 1024)

/* The length of the frame whose first 'have' bytes are at 'b' (0 while
** its header is not all there); leaves on a corrupt one. */
static uint32_t headlen(const unsigned char *b, size_t have) {
  uint32_t len;
  if (have < 4)
    return 0;
  len = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16
        | (uint32_t)b[3] << 24;
  if (len == 0 || len > CONC_FRAME_MAX)
    leave(CONC__CHILD_EPROTO);
  return len;
}

/* Handle every whole frame 'rb' holds, then keep the rest at its start
** with room for the frame it begins: 0, or 1 after F_STOP. */
static int onframes(child *c, rdbuf *rb) {
  size_t at = 0, want;
  uint32_t len;
  for (;;) {
    len = headlen(rb->b + at, rb->have - at);
    if (len == 0 || rb->have - at - 4 < len)
      break;
    if (onframe(c, rb->b + at + 4, len))
      return 1;
    at += 4 + (size_t)len;
  }
  rb->have -= at;
  if (rb->have > 0 && at > 0)
    memmove(rb->b, rb->b + at, rb->have);
  want = len > 0 ? 4 + (size_t)len : RDCHUNK;
  if (want < RDCHUNK)
    want = RDCHUNK;
  if (want != rb->size) {  /* what is kept is shorter than 'want' */
    unsigned char *b = (unsigned char *)realloc(rb->b, want);
    if (b == NULL)
      leave(CONC__CHILD_ENOMEM);
    rb->b = b;
    rb->size = want;
  }
  return 0;
}

/* The parent said stop, or the socket ended: no reply will come. */
static void ended(child *c) {
  pthread_mutex_lock(&c->mu);
  c->stop = 1;
  conc__qproxies_stop(&c->qpx);
  pthread_mutex_unlock(&c->mu);
  tellmain(c);
  tellreader(c);
}

/* By the thread that reads: one read, which takes what the socket
** holds, and every whole frame in it handled. 0; 1 once the parent said
** stop or the socket ended. */
static int readsome(child *c) {
  rdbuf *rb = &c->rb;
  ssize_t k;
  do
    k = read(c->sock, rb->b + rb->have, rb->size - rb->have);
  while (k < 0 && errno == EINTR);
  if (k <= 0 && rb->have >= 4)  /* the end inside a frame's body */
    leave(CONC__CHILD_EPROTO);
  if (k > 0) {
    rb->have += (size_t)k;
    if (onframes(c, rb) == 0)
      return 0;
  }
  ended(c);
  return 1;
}

/* How long a task runs before the reader thread takes the reading over
** from the main thread, in nanoseconds (less than a second). */
#define FOLLOW_NS 200000

/*
** Who reads. An idle main thread reads the socket itself, so that a
** task that comes wakes only the thread that runs it. While a task runs
** something must read (a cancel, a forwarded future, a queue's reply):
** the reader thread takes the reading over once the same task has run
** for FOLLOW_NS, or at once when a request awaits its reply. It gives it
** back once it finds the main thread idle after a read. While tasks
** start it wakes every FOLLOW_NS to look; when none started in a whole
** period it waits until one does. Returns 1 with the reading taken, 0
** once the parent said stop.
*/
static int follow(child *c) {
  uint32_t runs = 0;
  int first = 1;
  for (;;) {
    uint32_t seen = __atomic_load_n(&c->fnews, __ATOMIC_SEQ_CST);
    struct timespec period = { 0, FOLLOW_NS };
    int still, asleep;
    pthread_mutex_lock(&c->mu);
    c->fasleep = 0;
    still = !first && c->runs == runs;  /* no task started meanwhile */
    if (c->stop) {
      pthread_mutex_unlock(&c->mu);
      return 0;
    }
    if (c->mainreads && (c->closing
                         || (c->running != 0 && (c->wantreader || still)))) {
      c->mainreads = c->wantreader = 0;
      pthread_mutex_unlock(&c->mu);
      return 1;
    }
    asleep = c->fasleep = still && c->running == 0;
    runs = c->runs;
    first = 0;
    pthread_mutex_unlock(&c->mu);
    syscall(SYS_futex, &c->fnews, FUTEX_WAIT_PRIVATE, seen,
            asleep ? NULL : &period, NULL, 0);
  }
}

/* By the reader thread after a read: give the reading back to the main
** thread if it is idle. */
static int handback(child *c) {
  int idle;
  pthread_mutex_lock(&c->mu);
  if ((idle = c->running == 0 && !c->stop && !c->closing))
    c->mainreads = 1;
  pthread_mutex_unlock(&c->mu);
  if (idle)
    tellmain(c);
  return idle;
}

/* The reader thread: reads while the main thread runs a task. */
static void *reader(void *arg) {
  child *c = (child *)arg;
  while (follow(c))
    while (readsome(c) == 0 && !handback(c))
      ;
  return NULL;
}

/* Take the next task (NULL when there is none), made running with its
** controls armed, under 'mu'; '*reads' tells whether the main thread
** reads, '*stop' whether the parent said stop. */
static ctask *taketask(child *c, int *reads, int *stop) {
  ctask *t;
  int wake = 0;
  pthread_mutex_lock(&c->mu);
  t = c->head;
  if (t != NULL && (c->head = t->next) == NULL)
    c->tail = &c->head;
  if (t != NULL) {  /* running from here: a cancel now finds it so */
    c->running = t->id;
    __atomic_store_n(&c->tstop.ctl.stop, CONC_STOP_NONE, __ATOMIC_SEQ_CST);
    c->tstop.ctl.timeout = t->timeout;
    /* a cancel that came before it started is asked as one that comes
    ** now: setting the flag alone left it unwatched ('watchstuck'), and
    ** stuck for ever if it got stuck where no stop reaches */
    if (t->cancelled)
      stoprunning(c, CONC_STOP_CANCEL);
    c->runs++;
    wake = c->fasleep && c->mainreads;
  }
  *reads = c->mainreads;
  *stop = c->stop;
  pthread_mutex_unlock(&c->mu);
  if (wake)  /* it must watch this task's time */
    tellreader(c);
  return t;
}

/* The next task, or NULL once the parent said stop and none is left.
** 'news' is read before the queue is looked at: a task queued after
** the look bumped it, and the futex does not wait then. */
static ctask *nexttask(child *c) {
  for (;;) {
    uint32_t seen = __atomic_load_n(&c->news, __ATOMIC_SEQ_CST);
    int reads, stop;
    ctask *t = taketask(c, &reads, &stop);
    if (t != NULL || stop)
      return t;
    if (reads) {
      readsome(c);
      continue;
    }
    __atomic_store_n(&c->idle, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&c->news, __ATOMIC_SEQ_CST) == seen)
      syscall(SYS_futex, &c->news, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    __atomic_store_n(&c->idle, 0, __ATOMIC_SEQ_CST);
  }
}

/* Send what 'w' holds, then the 'n' bytes at 'tail'. */
static void send_frame(child *c, conc__wbuf *w, const void *tail, size_t n) {
  if (w->failed)
    leave(CONC__CHILD_ENOMEM);
  if (conc__wbuf_flushtail(c->sock, w, tail, n) != 0)
    leave(CONC__CHILD_EPROTO);  /* the parent is gone */
}

static void send_start(child *c, int code, const char *why) {
  conc__wbuf w;
  size_t at;
  memset(&w, 0, sizeof(w));
  at = conc__frame_begin(&w, F_START);
  conc__put32(&w, (uint32_t)code);
  if (why != NULL)
    conc__putbytes(&w, why, strlen(why));
  conc__frame_end(&w, at);
  send_frame(c, &w, NULL, 0);
  conc__wbuf_free(&w);
}

/* Of shared objects, only the parent's queues cross back (see
** conc__qproxies_outids); an outcome with another becomes an error.
** '*ids' names them. */
static conc_payload_t *backable(conc_payload_t *out, int *failed,
                                uint64_t **ids) {
  int r;
  *ids = NULL;
  if (out == NULL || (r = conc__qproxies_outids(out, ids)) == 0)
    return out;
  conc_payload_free(out);
  *failed = 1;
  if (r == CONC_ENOMEM)
    return conc_payload_error("", "not enough memory");
  return conc_payload_error("InvalidStateError", "a future, or a queue "
                            "made in a worker process, cannot leave it");
}

/* Send task 'id's outcome in a frame of 'type' (F_RESULT or F_STUCK),
** 'wmu' held: its bytes go out from the payload itself, after the
** head. */
static void send_outcome(child *c, conc__wbuf *w, int type, uint64_t id,
                         conc_payload_t *out, int failed,
                         const uint64_t *ids) {
  size_t at = conc__frame_begin(w, type);
  size_t n = out != NULL ? out->size : 0;
  conc__put64(w, id);
  conc__put8(w, out != NULL ? (unsigned)failed : CONC__FWD_NOVALUES);
  conc__put64(w, (uint64_t)c->rt->memory(c->ctx));
  if (out != NULL)
    conc__putpayloadhead(w, out, ids);
  conc__frame_endtail(w, at, n);
  send_frame(c, w, n > 0 ? conc_payload_data(out) : NULL, n);
}

static void send_result(child *c, conc__wbuf *w, uint64_t id,
                        conc_payload_t *out, int failed,
                        const uint64_t *ids) {
  pthread_mutex_lock(&c->wmu);
  send_outcome(c, w, F_RESULT, id, out, failed, ids);
  pthread_mutex_unlock(&c->wmu);
}

/* The process image is the parent's: reset what it set for itself (its
** signal handlers and mask, a pool thread's all-blocked mask), keep only
** the socket and the standard streams, drop the parent's buffered
** output, and die with the supervisor thread that forked it. SIGCHLD
** goes back to its default even when the host ignored it (or set
** SA_NOCLDWAIT): then the kernel reaps a task's own children itself,
** and os.execute or io.popen's close in a task get ECHILD, not their
** exit status. Other ignored signals stay ignored, as across exec. */
static void reset(child *c, pid_t parent) {
  sigset_t none;
  struct sigaction dfl;
  int s;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (s = 1; s < NSIG; s++) {
    struct sigaction old;
    if (sigaction(s, NULL, &old) == 0 && old.sa_handler != SIG_IGN
        && old.sa_handler != SIG_DFL)
      sigaction(s, &dfl, NULL);
  }
  sigaction(SIGCHLD, &dfl, NULL);
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    leave(CONC__CHILD_EPROTO);
  /* close-on-exec, as it was made: a program a task starts must not
  ** hold the socket (the parent would not see it end when this process
  ** does) nor be able to write frames to it */
  if (c->sock != CONC__CHILD_FD) {
    if (dup3(c->sock, CONC__CHILD_FD, O_CLOEXEC) < 0)
      leave(CONC__CHILD_EPROTO);
    c->sock = CONC__CHILD_FD;
  }
  if (syscall(SYS_close_range, CONC__CHILD_FD + 1, ~0U, 0) != 0) {
    long fd, max = sysconf(_SC_OPEN_MAX);
    for (fd = CONC__CHILD_FD + 1; fd < max && fd < 65536; fd++)
      close((int)fd);
  }
  __fpurge(stdout);
  __fpurge(stderr);
}

/* The running task's time is up (on the timer's thread). */
static void expired(conc__tnode *n) {
  stoprunning(conc__container_of(n, child, limit), CONC_STOP_TIMEOUT);
}

/* The running task is asked to stop (on the timer's thread, every
** CONC__STOP_AGAIN): one the runtime raised its stop into where no stop
** reaches, and that has stayed there CONC__CHILD_GRACE seconds, ends
** with this process (proc.h). One in a foreign C call was not raised
** into: it stops when the call returns. */
static void watchstuck(conc__taskstop *s) {
  child *c = conc__container_of(s, child, tstop);
  conc__wbuf w;
  uint64_t id;
  double raised;
  __atomic_load(&s->ctl.raised, &raised, __ATOMIC_ACQUIRE);
  if (raised == 0 || conc_now() - raised < CONC__CHILD_GRACE)
    return;
  pthread_mutex_lock(&c->mu);
  id = c->running;
  pthread_mutex_unlock(&c->mu);
  __atomic_load(&s->ctl.raised, &raised, __ATOMIC_ACQUIRE);
  if (id == 0 || raised == 0)
    return;  /* it unwound meanwhile */
  /* The task ends with the outcome the runtime gives a stopped task,
  ** sent as its unwinding would have sent it, but in an F_STUCK: the
  ** parent learns from the frame that this process exits, not from an
  ** exit status that a host reaping its children itself would never
  ** show it. 'wmu' is kept to the end, so F_STUCK is the last frame; no
  ** Lua code runs while the main thread holds it, so it is let go
  ** soon. A frame that cannot be made or sent ends this process with
  ** the reason's status (send_frame): a worker that died. */
  memset(&w, 0, sizeof(w));
  pthread_mutex_lock(&c->wmu);
  send_outcome(c, &w, F_STUCK, id, c->rt->stopped(c->ctx, &s->ctl), 1,
               NULL);
  leave(CONC__CHILD_STUCK);
}

/* Run 't' (made running, its controls armed, by 'nexttask'): the reader
** may stop it meanwhile. */
static conc_payload_t *runtask(child *c, ctask *t, int *failed) {
  conc_payload_t *out;
  runningtag = CONC__FWD_TASK | t->id;
  out = conc__taskstop_run(&c->tstop, &c->limit, c->rt, t->payload, failed);
  runningtag = 0;
  pthread_mutex_lock(&c->mu);
  c->running = 0;  /* no stop for it after this */
  pthread_mutex_unlock(&c->mu);
  conc__taskstop_end(&c->tstop);
  return out;
}

void conc__child_main(int sock, const conc_runtime_t *rt, int maxtasks,
                      pid_t parent, int id) {
  child c;
  conc__wbuf w;
  pthread_t tid;
  void *ctx = NULL;
  char *why = NULL;
  ctask *t;
  char name[16];
  int r, done = 0;
  pid_t self = getpid();
  memset(&c, 0, sizeof(c));
  memset(&w, 0, sizeof(w));
  c.sock = sock;
  c.tail = &c.head;
  c.rt = rt;
  c.limit.fire = expired;
  c.limit.at = -1;
  c.mainreads = 1;
  c.rb.size = RDCHUNK;
  reset(&c, parent);
  conc__payload_forked();
  snprintf(name, sizeof(name), "conc_proc_%d", id);
  prctl(PR_SET_NAME, name);  /* what cf.worker() and ps show */
  r = rt->start(rt->ud, id, &ctx, &why);
  if (r != 0) {
    send_start(&c, r, why);
    leave(0);
  }
  c.ctx = ctx;
  c.qpx.begin = qpx_begin;
  c.qpx.send = qpx_send;
  c.qpx.asked = qpx_asked;
  c.qpx.readpayload = qpx_readpayload;
  conc__taskstop_init(&c.tstop, &c.timer, rt->interrupt, ctx);
  c.tstop.watch = watchstuck;
  if ((c.rb.b = (unsigned char *)malloc(RDCHUNK)) == NULL
      || pthread_mutex_init(&c.mu, NULL) != 0
      || pthread_mutex_init(&c.wmu, NULL) != 0
      || conc__qproxies_init(&c.qpx, &c.mu) != 0
      || conc__tasktimer_init(&c.timer) != 0)
    leave(CONC__CHILD_ENOMEM);
  /* a thread can fail for want of memory or, as often, of processes (a
  ** low RLIMIT_NPROC): the parent's error names it, not an exit status */
  if ((r = pthread_create(&tid, NULL, reader, &c)) != 0) {
    char msg[128];
    snprintf(msg, sizeof(msg), "its reader thread: %s", strerror(r));
    send_start(&c, CONC_ESYS, msg);
    leave(0);
  }
  /* started once everything it serves with runs, its reader too */
  pthread_mutex_lock(&c.wmu);
  send_start(&c, 0, NULL);
  pthread_mutex_unlock(&c.wmu);
  while ((maxtasks == 0 || done < maxtasks) && (t = nexttask(&c)) != NULL) {
    int failed = 1;
    uint64_t *ids;
    conc_payload_t *out = runtask(&c, t, &failed);
    if (getpid() != self) {
      /* The task forked and this is its copy, returning (or raising)
      ** into the loop: it has no reader thread, and its frames on the
      ** socket it shares with this worker would answer a task twice
      ** and leave the worker waiting for what the copy read. It ends
      ** here, as a C child that returns from its task's function should
      ** have exited: 0 when the task returned, 1 when it raised. */
      fflush(stdout);
      leave(failed ? 1 : 0);
    }
    out = conc__payload_fitting(out, CONC__RESULTHEAD, &failed);
    out = backable(out, &failed, &ids);
    fflush(stdout);  /* the task's own output, before its result */
    send_result(&c, &w, t->id, out, failed, ids);
    free(ids);
    conc_payload_free(out);
    conc_payload_free(t->payload);
    free(t);
    done++;
  }
  /* Closing the state may still run queue operations (a finalizer, a
  ** thread the state keeps, which it joins): their replies need a
  ** reader. */
  pthread_mutex_lock(&c.mu);
  c.closing = 1;
  pthread_mutex_unlock(&c.mu);
  tellreader(&c);
  rt->stop(rt->ud, ctx);
  fflush(stdout);
  leave(0);
}
