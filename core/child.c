/*
** child.c: a forked worker process of the process pool. Its main thread
** runs tasks through the runtime in a fresh state; a reader thread takes
** frames from the parent, queues tasks and completes the proxies of the
** parent's futures, so a task may wait on one while it runs.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "frame.h"
#include "proc.h"

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

typedef struct child {
  int sock;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ctask *head, **tail;     /* tasks not yet run (under 'mu') */
  int stop;                /* F_STOP or end of file (under 'mu') */
  proxy *proxies;          /* the reader's own */
  const conc_runtime_t *rt;
  void *ctx;               /* the runtime's */
  uint64_t running;        /* the running task's id, or 0 (under 'mu') */
  conc_taskctl_t ctl;      /* its controls */
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
  int none = CONC_STOP_NONE;
  if (__atomic_compare_exchange_n(&c->ctl.stop, &none, why, 0,
                                  __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
    c->rt->interrupt(c->ctx);
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

/* Fill the future entries of 'p' with the proxies its ids name. */
static void bindproxies(child *c, conc_payload_t *p, const uint64_t *ids) {
  size_t i;
  for (i = 0; i < p->nfutures; i++)
    conc_payload_setfuture(p, i, proxyof(c, ids[i]));
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
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
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

/* The reader thread: frames until F_STOP or the end of the socket. */
static void *reader(void *arg) {
  child *c = (child *)arg;
  unsigned char hdr[4];
  for (;;) {
    conc__rd r;
    unsigned char *body;
    uint32_t len;
    int type;
    if (conc__readall(c->sock, hdr, 4) != 0)
      break;
    len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16
          | (uint32_t)hdr[3] << 24;
    if (len == 0 || len > CONC_FRAME_MAX)
      leave(CONC__CHILD_EPROTO);
    if ((body = (unsigned char *)malloc(len)) == NULL)
      leave(CONC__CHILD_ENOMEM);
    if (conc__readall(c->sock, body, len) != 0)
      leave(CONC__CHILD_EPROTO);
    r.p = body;
    r.end = body + len;
    r.bad = 0;
    type = (int)conc__get8(&r);
    if (type == F_TASK)
      ontask(c, &r);
    else if (type == F_FUTURE)
      onfuture(c, &r);
    else if (type == F_CANCEL)
      oncancel(c, &r);
    free(body);
    if (type == F_STOP)
      break;
    if ((type != F_TASK && type != F_FUTURE && type != F_CANCEL) || r.bad)
      leave(CONC__CHILD_EPROTO);
  }
  pthread_mutex_lock(&c->mu);
  c->stop = 1;
  pthread_cond_signal(&c->cv);
  pthread_mutex_unlock(&c->mu);
  return NULL;
}

/* The next task, or NULL once the parent said stop and none is left. */
static ctask *nexttask(child *c) {
  ctask *t;
  pthread_mutex_lock(&c->mu);
  while (c->head == NULL && !c->stop)
    pthread_cond_wait(&c->cv, &c->mu);
  t = c->head;
  if (t != NULL && (c->head = t->next) == NULL)
    c->tail = &c->head;
  if (t != NULL) {  /* running from here: a cancel now finds it so */
    c->running = t->id;
    __atomic_store_n(&c->ctl.stop, t->cancelled ? CONC_STOP_CANCEL
                                                : CONC_STOP_NONE,
                     __ATOMIC_SEQ_CST);
    c->ctl.timeout = t->timeout;
  }
  pthread_mutex_unlock(&c->mu);
  return t;
}

static void send_frame(child *c, conc__wbuf *w) {
  if (w->failed)
    leave(CONC__CHILD_ENOMEM);
  if (conc__wbuf_flushall(c->sock, w) != 0)
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
  send_frame(c, &w);
  conc__wbuf_free(&w);
}

/* Futures do not cross back to the parent: it could not tell them from
** its own. Such an outcome becomes an error. */
static conc_payload_t *backable(conc_payload_t *out, int *failed) {
  if (out == NULL || out->nfutures == 0)
    return out;
  conc_payload_free(out);
  *failed = 1;
  return conc_payload_error("InvalidStateError",
                            "a future cannot leave a worker process");
}

static void send_result(child *c, conc__wbuf *w, uint64_t id,
                        conc_payload_t *out, int failed) {
  size_t at = conc__frame_begin(w, F_RESULT);
  conc__put64(w, id);
  conc__put8(w, out != NULL ? (unsigned)failed : CONC__FWD_NOVALUES);
  conc__put64(w, (uint64_t)c->rt->memory(c->ctx));
  if (out != NULL)
    conc__putpayload(w, out, NULL);
  conc__frame_end(w, at);
  send_frame(c, w);
}

/* The process image is the parent's: reset what it set for itself (its
** signal handlers and mask, a pool thread's all-blocked mask), keep only
** the socket and the standard streams, drop the parent's buffered
** output, and die with the supervisor thread that forked it. */
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
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    leave(CONC__CHILD_EPROTO);
  if (c->sock != CONC__CHILD_FD) {
    if (dup2(c->sock, CONC__CHILD_FD) < 0)
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

/* Run 't' (made running, its controls armed, by 'nexttask'): the reader
** may stop it meanwhile. */
static conc_payload_t *runtask(child *c, ctask *t, int *failed) {
  conc_payload_t *out;
  int timed = 0;
  if (t->timeout > 0)
    timed = conc__tasktimer_add(&c->timer, &c->limit,
                            conc_now() + t->timeout) == 0;
  runningtag = CONC__FWD_TASK | t->id;
  if (t->timeout > 0 && !timed)
    out = conc_payload_error("", "cannot start the timer of task_timeout");
  else
    out = c->rt->run(c->ctx, t->payload, &c->ctl, failed);
  runningtag = 0;
  if (timed)
    conc__tasktimer_remove(&c->timer, &c->limit);
  pthread_mutex_lock(&c->mu);
  c->running = 0;
  pthread_mutex_unlock(&c->mu);
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
  memset(&c, 0, sizeof(c));
  memset(&w, 0, sizeof(w));
  c.sock = sock;
  c.tail = &c.head;
  c.rt = rt;
  c.limit.fire = expired;
  c.limit.at = -1;
  reset(&c, parent);
  conc__payload_forked();
  snprintf(name, sizeof(name), "conc_proc_%d", id);
  prctl(PR_SET_NAME, name);  /* what cf.worker() and ps show */
  r = rt->start(rt->ud, id, &ctx, &why);
  send_start(&c, r, why);
  if (r != 0)
    leave(0);
  c.ctx = ctx;
  if (pthread_mutex_init(&c.mu, NULL) != 0 || conc__cond_init(&c.cv) != 0
      || conc__tasktimer_init(&c.timer) != 0
      || pthread_create(&tid, NULL, reader, &c) != 0)
    leave(CONC__CHILD_ENOMEM);
  while ((maxtasks == 0 || done < maxtasks) && (t = nexttask(&c)) != NULL) {
    int failed = 1;
    conc_payload_t *out = runtask(&c, t, &failed);
    out = backable(out, &failed);
    fflush(stdout);  /* the task's own output, before its result */
    send_result(&c, &w, t->id, out, failed);
    conc_payload_free(out);
    conc_payload_free(t->payload);
    free(t);
    done++;
  }
  rt->stop(rt->ud, ctx);
  fflush(stdout);
  leave(0);
}
