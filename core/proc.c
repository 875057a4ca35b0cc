/*
** proc.c: the process pool. One supervisor thread per pool owns every
** child: it forks them lazily, writes tasks to their sockets, reads
** results, forwards the completion of futures that tasks were given,
** carries out the children's operations on queues they were given
** (remoteq.c, shared with the MPI pool), and watches each child's exit
** through a pidfd, all in one poll loop.
** No signal handler is installed in the host process.
*/
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"
#include "remoteq.h"

/* Bytes of a frame's head kept when its body does not fit in memory:
** its type and task id. */
#define HEADKEPT 9

/* Tasks a child holds at once: the running one and one ahead (API.md:
** those count as running and cannot be cancelled). */
#define AHEAD 2

/* Bytes read from a child per read call. */
#define READCHUNK (64 * 1024)

typedef struct proc proc;
typedef struct child child;

/* A submitted task: queued in 'pending', then in its child's 'inflight',
** then, with its outcome, in the supervisor's 'done'. */
typedef struct ptask {
  conc__queue q;
  conc_future_t *f;
  conc_payload_t *payload;  /* freed once it starts (see 'sendtask');
                            ** then its outcome */
  int failed;               /* of that outcome */
  uint64_t id;
  double timeout;           /* seconds from its start in the child, or 0 */
  int stopsent;             /* a running cancel was sent for it */
  proc *p;
  child *c;                 /* its child, from written to done */
  conc__queue cq;           /* in 'p->cancels' while 'incq' */
  int incq;
} ptask;

/* A child, private to the supervisor thread. */
struct child {
  child *next;
  pid_t pid;
  int sock, pidfd;          /* pidfd -1: the kernel has none */
  int started;              /* F_START came */
  int stuck;                /* F_STUCK came: it exits (see 'onresult') */
  int stopping;             /* F_STOP sent */
  int eof;                  /* its socket ended: no more polling of it */
  conc__queue inflight;     /* ptasks written, results awaited in order */
  int ninflight;
  long sent;                /* tasks written, for max_tasks_per_child */
  size_t memory;            /* bytes its state held after its last task */
  conc__wbuf out;
  unsigned char hdr[4];     /* the frame being read: its length, */
  size_t hdrgot;
  char *body;               /* then its body */
  size_t bodylen, bodygot, bodysize;
  int toobig;               /* the body did not fit in memory: skipped */
  conc__qpeer qp;           /* the queues it knows */
};

struct proc {
  conc_executor_t base;
  conc_executor_opts_t o;
  pid_t self;
  int wakefd;               /* eventfd: work, shutdown or a fired future
                            ** (made with the supervisor, else -1) */
  conc__fwdtab fwd;         /* the supervisor's, but for its fired stack */
  conc__qhost qh;           /* the children's queues, but for its
                            ** fired stack the supervisor's */
  pthread_mutex_t mu;       /* guards what follows, up to 'children' */
  conc__queue pending;      /* ptasks not yet written */
  conc__queue cancels;      /* written ptasks a running cancel asks to stop */
  size_t memory;            /* the children's, for stats */
  int nspawned;             /* numbers the children */
  long npending;
  uint64_t nexttask;
  int shutdown;
  int broken;
  int startfailed;          /* a child's start failed for lack of
                            ** resources since the last submit: no new
                            ** child until the next (see 'onstart') */
  char *brokenmsg;
  int supervising, joined;
  pthread_t sup;
  int nworkers, nidle;      /* the supervisor's view, for stats */
  long running, completed, failed, cancelled;
  ptask *moving;            /* from pending to running: counted running
                            ** before its future is, so stats count it
                            ** cancelled once its future is */
  /* the supervisor's own */
  child *children;
  int nchildren;
  conc__queue done;         /* ptasks whose outcome came, to complete */
  conc__queue resend;       /* ptasks held ahead by a child that ended a
                            ** stuck task, never started: written again
                            ** before 'pending' */
  char *scratch;            /* READCHUNK bytes */
  struct pollfd *fds;       /* the wake-up fd, then each child's socket
                            ** and pidfd, in the order of 'children' */
  int nfds;                 /* 0: 'children' changed, refill 'fds' */
  unsigned long forks;      /* conc__forks() when made (see 'forked') */
};

#define qtask(n) conc__container_of((void *)(n), ptask, q)

static void wake(proc *p) {
  uint64_t one = 1;
  ssize_t k;
  if (p->wakefd < 0)  /* no supervisor to wake */
    return;
  do
    k = write(p->wakefd, &one, sizeof(one));
  while (k < 0 && errno == EINTR);
}

/* A future of the pool ends: counted before it completes, so that stats
** read after a wait include it ('failed': how). */
static void count(proc *p, int running, int failed) {
  pthread_mutex_lock(&p->mu);
  p->running -= running;
  if (failed)
    p->failed++;
  else
    p->completed++;
  pthread_mutex_unlock(&p->mu);
}

static void freetask(ptask *t) {
  conc_payload_free(t->payload);
  conc_future_unref(t->f);
  free(t);
}

/* A running cancel (under the future's lock, any thread): the
** supervisor tells the task's child. A task written again (see
** 'resendahead') runs this once more as it is written, and may still be
** listed from the first time. */
static void stoptask(void *arg) {
  ptask *t = (ptask *)arg;
  proc *p = t->p;
  pthread_mutex_lock(&p->mu);
  if (!t->incq)
    conc__queue_insert_tail(&p->cancels, &t->cq);
  t->incq = 1;
  pthread_mutex_unlock(&p->mu);
  wake(p);
}

/* End a RUNNING task with 'out', or CANCELLED when a running cancel got
** there first; counted before it completes, then freed. */
static void endtask(proc *p, ptask *t, conc_payload_t *out, int failed,
                    int running) {
  if (conc__future_end(t->f)) {
    pthread_mutex_lock(&p->mu);
    if (t->incq)
      conc__queue_remove(&t->cq);
    p->running -= running;
    p->cancelled++;
    pthread_mutex_unlock(&p->mu);
    conc_payload_free(out);
    conc__future_stopped(t->f);
  } else {
    count(p, running, failed);
    conc__payload_complete(t->f, out, failed);
  }
  freetask(t);
}

/* Fail a RUNNING task's future with the pool's broken error. */
static void failtask(proc *p, ptask *t, const char *msg, int running) {
  endtask(p, t, conc_payload_error(p->base.ops->broken_class, msg), 1,
          running);
}

/* Tell each child to stop the tasks a running cancel asked for: those
** still in flight (a task that ended left the list; one waiting in
** 'resend' is told when it is written again). */
static void sendcancels(proc *p) {
  conc__queue cq;
  conc__queue_init(&cq);
  pthread_mutex_lock(&p->mu);
  conc__queue_move(&p->cancels, &cq);
  while (!conc__queue_empty(&cq)) {
    ptask *t = conc__container_of((void *)conc__queue_head(&cq), ptask, cq);
    size_t at;
    conc__queue_remove(&t->cq);
    t->incq = 0;
    if (t->c == NULL)  /* its outcome came: past stopping */
      continue;
    t->stopsent = 1;
    at = conc__frame_begin(&t->c->out, F_CANCEL);
    conc__put64(&t->c->out, t->id);
    conc__frame_end(&t->c->out, at);
  }
  pthread_mutex_unlock(&p->mu);
}


/* Kill 'c' through its pidfd when there is one: a host that ignores
** SIGCHLD (or reaps every child itself) lets the kernel reap 'c' as it
** exits, and its pid may then name another process. */
static void killchild(child *c) {
  if (c->pidfd >= 0) {
    if (syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0) == 0
        || errno != ENOSYS)
      return;  /* sent, or it is gone (ESRCH) */
  }
  kill(c->pid, SIGKILL);
}


/* {======================================================================
** Forwarded futures
** ======================================================================= */

static void fwd_wake(conc__fwdtab *t) {
  wake(conc__container_of(t, proc, fwd));
}

/* The id under which 'f' crosses when it is the future of one of the
** pool's tasks that has not ended (sent to a child: only this thread
** frees those; or pending): CONC__FWD_TASK and its task's id; else 0. */
static uint64_t fwd_taskid(conc__fwdtab *tab, conc_future_t *f) {
  proc *p = conc__container_of(tab, proc, fwd);
  ptask *t = (ptask *)conc__future_stopperarg(f, stoptask);
  uint64_t id = 0;
  conc__queue *q;
  if (t != NULL && t->p == p)
    return CONC__FWD_TASK | t->id;
  pthread_mutex_lock(&p->mu);
  for (q = conc__queue_head(&p->pending); q != &p->pending; q = q->next)
    if (qtask(q)->f == f)
      id = CONC__FWD_TASK | qtask(q)->id;
  pthread_mutex_unlock(&p->mu);
  return id;
}

/* Forward every fired future to the children that know it. A frame
** that could not be made (no memory) leaves that child's proxy pending:
** the child then breaks the pool by dying, rather than waiting forever. */
static void forward_fired(proc *p) {
  conc__fwd *x = conc__fwd_takefired(&p->fwd);
  while (x != NULL) {
    conc__fwd *next = x->firednext;
    int i;
    for (i = 0; i < x->nknows; i++) {
      child *c = (child *)x->knows[i];
      size_t at = conc__frame_begin(&c->out, F_FUTURE);
      conc__fwd_putnews(&c->out, x, conc__qhost_ids, &c->qp);
      conc__frame_end(&c->out, at);
      if (c->out.failed)
        killchild(c);
    }
    conc__fwd_free(x);
    x = next;
  }
}

/* A child is gone: it knows nothing any more. */
static void forgetchild(proc *p, child *c) {
  conc__qhost_forget(&c->qp);
  conc__fwd_forget(&p->fwd, (uintptr_t)c);
}

/* }====================================================================== */


/* {======================================================================
** Queues that children were given
** ======================================================================= */

static void qh_wake(conc__qhost *h) {
  wake(conc__container_of(h, proc, qh));
}

/* A frame to 'c' goes out with the rest of its buffer; a child waits for
** what it is told, so one that cannot be told is ended rather than left
** waiting. */
static void qh_sent(conc__qhost *h, conc__qpeer *peer) {
  (void)h;
  if (peer->out->failed)
    killchild(conc__container_of(peer, child, qp));
}

/* }====================================================================== */


/* {======================================================================
** Children
** ======================================================================= */

/* The child's end of its socket moved to a high descriptor number
** before the fork: a fork handler of another library runs in the child
** before conc__child_main and may close and reuse low numbers there.
** libuv's closes, by number, the pipe it made when first used in the
** parent, and makes a new one; in a pool made inside a child that old
** number could be this socket, which then was a pipe by the child's
** first frame. Best effort: where no number that high is allowed (a low
** 'ulimit -n'), the socket stays where it is. */
static void movehigh(int *fd) {
  int hi = fcntl(*fd, F_DUPFD_CLOEXEC, CONC__CHILD_FDFLOOR);
  if (hi >= 0) {
    close(*fd);
    *fd = hi;
  }
}

/* A new child, or NULL: then '*what' names the call that failed and
** errno tells why ('*what' NULL: out of memory). The supervisor thread
** forks it, so PR_SET_PDEATHSIG in the child fires when this thread
** exits, which it does only after reaping every child. */
static child *spawn(proc *p, const char **what) {
  int sv[2];
  child *c = (child *)calloc(1, sizeof(*c));
  *what = NULL;
  if (c == NULL)
    return NULL;
  *what = "socketpair";
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    free(c);
    return NULL;
  }
  *what = "fork";
  movehigh(&sv[1]);
  c->pid = fork();
  if (c->pid == 0) {
    close(sv[0]);
    conc__child_main(sv[1], &p->o.runtime, p->o.max_tasks_per_child,
                     p->self, p->nspawned + 1);
  }
  close(sv[1]);
  if (c->pid < 0) {
    int e = errno;
    close(sv[0]);
    free(c);
    errno = e;
    return NULL;
  }
  p->nspawned++;
  c->sock = sv[0];
  fcntl(c->sock, F_SETFL, fcntl(c->sock, F_GETFL) | O_NONBLOCK);
  c->pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
  conc__queue_init(&c->inflight);
  c->qp.who = (uintptr_t)c;
  c->qp.host = &p->qh;
  c->qp.out = &c->out;
  c->next = p->children;
  p->children = c;
  p->nchildren++;
  p->nfds = 0;
  return c;
}

/* Set the count of tasks in flight to 'c'. A child with any counts as
** a busy worker (conc__spin_busy): a thread waiting for a result polls
** only while a core is left beside the busy children. */
static void setinflight(child *c, int n) {
  if ((c->ninflight > 0) != (n > 0))
    conc__spin_busy(n > 0 ? 1 : -1);
  c->ninflight = n;
}

/* Close a child's descriptors and free it (it is reaped). */
static void freechild(proc *p, child *c) {
  child **pc;
  setinflight(c, 0);
  for (pc = &p->children; *pc != c; pc = &(*pc)->next)
    ;
  *pc = c->next;
  p->nchildren--;
  p->nfds = 0;
  forgetchild(p, c);
  close(c->sock);
  if (c->pidfd >= 0)
    close(c->pidfd);
  conc__wbuf_free(&c->out);
  free(c->body);
  free(c);
}

/* A wait status that the pool could not learn: the child was reaped by
** someone else (waitpid failed with ECHILD). */
#define UNKNOWN (-1)

/* What a wait status says, for messages ('when': " while starting" or
** ""). */
static void describe(char *buf, size_t n, pid_t pid, int status,
                     const char *when) {
  if (status == UNKNOWN) {
    snprintf(buf, n, "a worker process terminated abruptly%s (pid %d, exit "
             "status unknown: reaped outside the pool)", when, (int)pid);
  } else if (WIFSIGNALED(status)) {
    const char *name = sigabbrev_np(WTERMSIG(status));
    snprintf(buf, n, "a worker process terminated abruptly%s (pid %d, "
             "killed by signal %d%s%s)", when, (int)pid, WTERMSIG(status),
             name != NULL ? ", SIG" : "", name != NULL ? name : "");
  } else {
    snprintf(buf, n, "a worker process terminated abruptly%s (pid %d, exit "
             "status %d)", when, (int)pid, WEXITSTATUS(status));
  }
}

/* }====================================================================== */


/* {======================================================================
** Breaking
** ======================================================================= */

/* The pool is broken ('msg'): every pending and running future fails
** with it, every child is killed and reaped, later submits fail. */
static void breakpool(proc *p, const char *msg) {
  conc__queue taken;
  pthread_mutex_lock(&p->mu);
  if (!p->broken) {
    p->broken = 1;
    p->brokenmsg = strdup(msg);
  }
  conc__queue_init(&taken);
  conc__queue_move(&p->pending, &taken);
  p->npending = 0;
  pthread_mutex_unlock(&p->mu);
  while (!conc__queue_empty(&taken)) {
    ptask *t = qtask(conc__queue_head(&taken));
    int r;
    conc__queue_remove(&t->q);
    r = conc_future_set_running_or_notify_cancel(t->f);
    if (r == 1) {
      failtask(p, t, msg, 0);
    } else {
      if (r == 0) {
        pthread_mutex_lock(&p->mu);
        p->cancelled++;
        pthread_mutex_unlock(&p->mu);
      }
      freetask(t);
    }
  }
  while (!conc__queue_empty(&p->resend)) {  /* the supervisor's own */
    ptask *t = qtask(conc__queue_head(&p->resend));
    conc__queue_remove(&t->q);
    failtask(p, t, msg, 1);
  }
  while (p->children != NULL) {
    child *c = p->children;
    int status;
    killchild(c);
    while (waitpid(c->pid, &status, 0) < 0 && errno == EINTR)
      ;
    while (!conc__queue_empty(&c->inflight)) {
      ptask *t = qtask(conc__queue_head(&c->inflight));
      conc__queue_remove(&t->q);
      failtask(p, t, msg, 1);
    }
    freechild(p, c);
  }
}

static void breakf(proc *p, const char *fmt, pid_t pid) {
  char msg[160];
  snprintf(msg, sizeof(msg), fmt, (int)pid);
  breakpool(p, msg);
}

/* }====================================================================== */


/* {======================================================================
** Writing tasks
** ======================================================================= */

/* Write 't' to 'c'; 0, or -1 when out of memory (then 't' is still the
** caller's, and RUNNING). A task that goes ahead of another keeps its
** payload until it starts (see 'onresult'): should its child end a
** stuck task first, it is written again to another. */
static int sendtask(child *c, ptask *t) {
  int ok;
  uint64_t *ids = conc__qhost_ids(&c->qp, t->payload, &ok);
  size_t at;
  if (!ok)
    return -1;
  at = conc__frame_begin(&c->out, F_TASK);
  conc__put64(&c->out, t->id);
  conc__putf64(&c->out, t->timeout);
  conc__putpayload(&c->out, t->payload, ids);
  conc__frame_end(&c->out, at);
  free(ids);
  if (c->out.failed)
    return -1;
  if (c->ninflight == 0) {
    conc_payload_free(t->payload);
    t->payload = NULL;
  }
  conc__queue_insert_tail(&c->inflight, &t->q);
  setinflight(c, c->ninflight + 1);
  c->sent++;
  t->c = c;
  conc__future_begin(t->f, stoptask, t);
  return 0;
}

/* The error of a task 'sendtask' could not write: past the size check
** at submit, only memory for its frame can be missing. */
static conc_payload_t *unsent(const ptask *t) {
  char msg[128];
  snprintf(msg, sizeof(msg), "not enough memory to send a task of %zu "
           "bytes to a worker process", t->payload->size);
  return conc_payload_error("", msg);
}

/*
** Whether 'c' may take another task now: once it started, that is once
** its initializer returned (F_START). A task written to a child still
** in its initializer would count as running while nothing runs it: a
** running cancel or a time limit could not reach it, and an
** initializer that never returns held it for ever. Not once the child
** said it exits stuck either: what it would hold ahead would only be
** written again.
*/
static int takes(proc *p, child *c, int ahead) {
  return c->started && !c->stopping && !c->stuck
         && c->ninflight < (ahead ? AHEAD : 1)
         && (p->o.max_tasks_per_child == 0
             || c->sent < p->o.max_tasks_per_child);
}

/* Tasks waiting for a child: pending ones and those to write again. */
static long waiting(proc *p) {
  conc__queue *q;
  long n;
  pthread_mutex_lock(&p->mu);
  n = p->npending;
  pthread_mutex_unlock(&p->mu);
  for (q = conc__queue_head(&p->resend); q != &p->resend; q = q->next)
    n++;
  return n;
}

static int startfailed(proc *p) {
  int r;
  pthread_mutex_lock(&p->mu);
  r = p->startfailed;
  pthread_mutex_unlock(&p->mu);
  return r;
}

/* The child for the next task: an idle one; else, below the maximum,
** new ones (one per waiting task beyond the children not started yet),
** whose start the task waits for, as it does for any such child; else
** a busy one with room for a task ahead. NULL when none (or, with no
** child at all, when none could start: broken). */
static child *pick(proc *p) {
  child *c;
  long unstarted = 0;  /* children not started yet */
  for (c = p->children; c != NULL; c = c->next) {
    if (takes(p, c, 0))
      return c;
    unstarted += !c->started && !c->stopping;
  }
  if (p->nchildren < p->o.max_workers
      && (p->nchildren == 0 || !startfailed(p))) {
    const char *what = NULL;
    long n;
    int failed = 0;
    for (n = waiting(p) - unstarted; n > 0 && !failed
         && p->nchildren < p->o.max_workers; n--) {
      failed = spawn(p, &what) == NULL;
      unstarted += !failed;
    }
    if (failed && p->nchildren == 0) {
      char msg[160];
      if (what == NULL)
        snprintf(msg, sizeof(msg), "cannot start a worker process: not "
                 "enough memory");
      else
        snprintf(msg, sizeof(msg), "cannot start a worker process: %s: %s",
                 what, strerror(errno));
      breakpool(p, msg);
      return NULL;
    }
  }
  if (unstarted > 0)  /* not ahead of a busy child's task */
    return NULL;
  for (c = p->children; c != NULL; c = c->next)
    if (takes(p, c, 1))
      return c;
  return NULL;
}

/* Write again the tasks held ahead by a child that ended (RUNNING, and
** counted so all along), first: they were submitted before the pending
** ones. */
static void sendagain(proc *p) {
  child *c;
  while (!conc__queue_empty(&p->resend) && !p->broken
         && (c = pick(p)) != NULL) {
    ptask *t = qtask(conc__queue_head(&p->resend));
    conc__queue_remove(&t->q);
    if (sendtask(c, t) != 0)
      endtask(p, t, unsent(t), 1, 1);
  }
}

/* Hand pending tasks to children while some can take one. */
static void assign(proc *p) {
  sendagain(p);
  if (!conc__queue_empty(&p->resend))
    return;  /* no child for them: none for later ones either */
  for (;;) {
    child *c;
    ptask *t = NULL;
    int r, any;
    pthread_mutex_lock(&p->mu);
    any = !conc__queue_empty(&p->pending) && !p->broken;
    pthread_mutex_unlock(&p->mu);
    if (!any || (c = pick(p)) == NULL)
      return;
    /* From pending to running in one step, as stats see it: a task in
    ** neither would look ended, and shutdown(true) would stop running
    ** the callbacks it may wait for. A shutdown may have taken them all. */
    pthread_mutex_lock(&p->mu);
    if (!conc__queue_empty(&p->pending)) {
      t = qtask(conc__queue_head(&p->pending));
      conc__queue_remove(&t->q);
      p->npending--;
      p->running++;
      p->moving = t;
    }
    pthread_mutex_unlock(&p->mu);
    if (t == NULL)
      return;
    r = conc_future_set_running_or_notify_cancel(t->f);
    pthread_mutex_lock(&p->mu);
    p->moving = NULL;
    if (r != 1) {  /* cancelled while it was pending */
      p->running--;
      if (r == 0)
        p->cancelled++;
    }
    pthread_mutex_unlock(&p->mu);
    if (r != 1)
      freetask(t);
    else if (sendtask(c, t) != 0)
      endtask(p, t, unsent(t), 1, 1);
  }
}

/* }====================================================================== */


/* {======================================================================
** Reading results
** ======================================================================= */

/* Whether a child may say that its task 't' is stuck: the pool asked
** it to stop (a running cancel, or its time limit). */
static int stoppable(const ptask *t) {
  return t->stopsent || t->timeout > 0;
}

/* The tasks 'c' held ahead of its stuck one never started: they are
** written again to another child (their payloads were kept, see
** 'sendtask'). */
static void resendahead(proc *p, child *c) {
  while (!conc__queue_empty(&c->inflight)) {
    ptask *t = qtask(conc__queue_head(&c->inflight));
    conc__queue_remove(&t->q);
    t->c = NULL;
    conc__queue_insert_tail(&p->resend, &t->q);
  }
  setinflight(c, 0);
}

/* An outcome, of an F_RESULT or ('stuck') of an F_STUCK: the head task
** of 'c' ends with it. After an F_STUCK, 'c' exits: its task was stuck
** where no stop reaches (CONC__CHILD_GRACE), and what it held ahead
** goes to another child. */
static void onresult(proc *p, child *c, conc__rd *r, int stuck) {
  uint64_t id = conc__get64(r);
  unsigned failed = c->toobig ? 1 : conc__get8(r);
  uint64_t memory = c->toobig ? c->memory : conc__get64(r);
  conc_payload_t *out = NULL;
  ptask *t;
  uint64_t *ids = NULL;
  int nomem = 0;
  if (c->toobig) {
    char msg[96];
    snprintf(msg, sizeof(msg), "not enough memory for a result of %zu "
             "bytes", c->bodylen);
    out = conc_payload_error("", msg);
  } else if (failed != CONC__FWD_NOVALUES && !r->bad) {
    out = conc__getpayload(r, &ids, &nomem);
  }
  if (r->bad || conc__queue_empty(&c->inflight)
      || qtask(conc__queue_head(&c->inflight))->id != id
      || (stuck && !stoppable(qtask(conc__queue_head(&c->inflight))))
      || failed > CONC__FWD_NOVALUES
      || (out == NULL && !nomem && failed != CONC__FWD_NOVALUES)
      || (ids != NULL && conc__qhost_bind(&c->qp, out, ids) != 0)) {
    conc_payload_free(out);
    free(ids);
    breakf(p, "a worker process sent a corrupt frame (pid %d)", c->pid);
    return;
  }
  free(ids);
  t = qtask(conc__queue_head(&c->inflight));
  conc__queue_remove(&t->q);
  setinflight(c, c->ninflight - 1);
  pthread_mutex_lock(&p->mu);  /* in stats once the future completes */
  p->memory = p->memory - c->memory + (size_t)memory;
  pthread_mutex_unlock(&p->mu);
  c->memory = (size_t)memory;
  if (out == NULL || failed == CONC__FWD_NOVALUES)
    failed = 1;
  t->payload = out;
  if (stuck) {
    c->stuck = 1;
    resendahead(p, c);
  } else if (!conc__queue_empty(&c->inflight)) {  /* the next one starts */
    ptask *next = qtask(conc__queue_head(&c->inflight));
    conc_payload_free(next->payload);
    next->payload = NULL;
  }
  t->failed = (int)failed;
  t->c = NULL;
  conc__queue_insert_tail(&p->done, &t->q);
}

/* Complete the tasks whose outcome came: after the turn's frames went
** out, so that a child has the tasks that replace its results before
** the supervisor spends time on their futures (and their waiters). */
static void completedone(proc *p) {
  while (!conc__queue_empty(&p->done)) {
    ptask *t = qtask(conc__queue_head(&p->done));
    conc_payload_t *out = t->payload;
    conc__queue_remove(&t->q);
    t->payload = NULL;
    endtask(p, t, out, t->failed, 1);
  }
}

/* Whether a child other than 'c' is there to take the tasks (started,
** or starting), and not on its way out. */
static int others(proc *p, child *c) {
  child *o;
  for (o = p->children; o != NULL; o = o->next)
    if (o != c && !o->stopping && !o->stuck)
      return 1;
  return 0;
}

/* A child's start failed: CONC_EBROKEN (the user's setup) breaks the
** pool; a lack of resources only when no other child is left (the
** runtime's contract, as a thread pool's worker): then this one just
** exits (with status 0, as told), and the tasks wait for the others,
** or for a child started later. */
static void onstart(proc *p, child *c, conc__rd *r) {
  int code = (int)conc__get32(r);
  char msg[512], none[CONC__STARTWHY];
  const char *why = (const char *)r->p;
  int len = (int)(r->end - r->p);
  if (code == 0) {
    c->started = 1;
    return;
  }
  if (code != CONC_EBROKEN && others(p, c)) {
    c->stopping = 1;
    /* no child in its place until the next submit, as a thread pool
    ** tries a worker again only then: tasks waiting behind a start that
    ** keeps failing would fork one child after another */
    pthread_mutex_lock(&p->mu);
    p->startfailed = 1;
    pthread_mutex_unlock(&p->mu);
    return;
  }
  if (len == 0) {  /* the runtime gave no reason */
    conc__startwhy(none, sizeof(none), code);
    why = none;
    len = (int)strlen(none);
  }
  snprintf(msg, sizeof(msg), "%s%.*s", code == CONC_EBROKEN
           ? "initializer failed: " : "cannot start a worker process: ",
           len, why);
  breakpool(p, msg);
}

/* One whole frame body of 'len' bytes came from 'c' at 'body' (only
** its head when 'c->toobig'): 0, or nonzero when it broke the pool
** (then 'c' is gone). */
static int onframe(proc *p, child *c, const void *body, size_t len) {
  conc__rd r;
  unsigned type;
  r.p = (const unsigned char *)body;
  r.end = r.p + (c->toobig && len > HEADKEPT ? HEADKEPT : len);
  r.bad = 0;
  type = conc__get8(&r);
  if (type == F_RESULT || type == F_STUCK)
    onresult(p, c, &r, type == F_STUCK);
  else if (type == F_START && !c->started && !c->toobig)
    onstart(p, c, &r);
  else if (!conc__qhost_isrequest(type)
           || conc__qhost_request(&c->qp, &r, type, c->toobig) != 0)
    breakf(p, "a worker process sent a corrupt frame (pid %d)", c->pid);
  return p->broken;
}

/* Take 'k' read bytes of a frame body. A body that does not fit in
** memory keeps only its head (type and task id: HEADKEPT bytes, room
** made when its length came) and fails its task. */
static void addbody(child *c, const char *b, size_t k) {
  size_t want = c->bodygot + k;
  if (!c->toobig && want > c->bodysize) {
    size_t n = c->bodysize;
    char *nb;
    while (n < want)
      n *= 2;
    if (n > c->bodylen)
      n = c->bodylen;
    nb = (char *)realloc(c->body, n);
    if (nb == NULL)
      c->toobig = 1;
    else {
      c->body = nb;
      c->bodysize = n;
    }
  }
  if (!c->toobig)
    memcpy(c->body + c->bodygot, b, k);
  else if (c->bodygot < HEADKEPT)
    memcpy(c->body + c->bodygot, b,
           k < HEADKEPT - c->bodygot ? k : HEADKEPT - c->bodygot);
  c->bodygot = want;
}

/* The length of a frame from 'c' whose header is at 'h': 0 when it
** breaks the pool. */
static size_t framelen(proc *p, child *c, const unsigned char *h) {
  size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16
               | (size_t)h[3] << 24;
  if (len == 0 || len > CONC_FRAME_MAX) {
    breakf(p, "a worker process sent a corrupt frame (pid %d)", c->pid);
    return 0;
  }
  return len;
}

/* A frame's length came in pieces: 0, or -1 when it breaks the pool. */
static int startbody(proc *p, child *c) {
  c->bodygot = 0;
  c->toobig = 0;
  if ((c->bodylen = framelen(p, c, c->hdr)) == 0)
    return -1;
  if (c->bodysize < 256) {
    char *nb = (char *)realloc(c->body, 256);
    if (nb == NULL) {
      breakf(p, "out of memory reading from a worker process (pid %d)",
             c->pid);
      return -1;
    }
    c->body = nb;
    c->bodysize = 256;
  }
  return 0;
}

/* Take the 'k' bytes read into the scratch buffer: a frame wholly in
** them is handled where it lies, the pieces of one split across reads
** are gathered in 'c->body'. 0, or 1 when the pool broke. */
static int handle(proc *p, child *c, size_t k) {
  const unsigned char *b = (const unsigned char *)p->scratch;
  size_t i = 0, len;
  while (i < k) {
    if (c->hdrgot == 0 && k - i >= 4) {
      if ((len = framelen(p, c, b + i)) == 0)
        return 1;
      if (k - i - 4 >= len) {
        if (onframe(p, c, b + i + 4, len) != 0)
          return 1;
        i += 4 + len;
        continue;
      }
    }
    if (c->hdrgot < 4) {
      c->hdr[c->hdrgot++] = b[i++];
      if (c->hdrgot == 4 && startbody(p, c) != 0)
        return 1;
    } else {
      len = k - i;
      if (len > c->bodylen - c->bodygot)
        len = c->bodylen - c->bodygot;
      addbody(c, (const char *)b + i, len);
      i += len;
    }
    if (c->hdrgot == 4 && c->bodygot == c->bodylen) {
      c->hdrgot = 0;
      if (onframe(p, c, c->body, c->bodylen) != 0)
        return 1;
      c->toobig = 0;  /* the frames handled in place fit */
    }
  }
  return 0;
}

/* Read what 'c' sent: 0; 1 when the pool broke (then 'c' is gone); -1
** at the end of its socket. Unless 'drain', a read that did not fill the
** chunk ends it: it took what the socket held (a stream socket's read
** gathers the queued bytes it has room for), and poll tells of more,
** without a second read to learn that the socket is empty. */
static int readchild(proc *p, child *c, int drain) {
  for (;;) {
    ssize_t k = read(c->sock, p->scratch, READCHUNK);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    if (k == 0)
      return -1;
    if (handle(p, c, (size_t)k) != 0)
      return 1;
    if (k < READCHUNK && !drain)
      return 0;
  }
}

/* }====================================================================== */


/* {======================================================================
** The supervisor
** ======================================================================= */

/* 'c' exited with 'status' (UNKNOWN: reaped by someone else): expected
** when it was told to stop, when it ran its last task
** (max_tasks_per_child) and answered all, or when it said its task was
** stuck (F_STUCK, which ended that task and sent the rest elsewhere:
** the pool asked for the stop, so it does not break, whatever the exit
** status, and a host that reaps its children itself leaves none); 'c'
** is replaced when work comes. Anything else breaks the pool, a child
** that died before its F_STUCK came too (it could not make or send
** it): nothing said it would exit, and the supervisor makes no outcome
** of its own for a task. With 'respawn' a worker that dies is
** replaced, but not one that died while starting (its initializer, or
** loading the module, ended it): its successor would most likely die
** the same way, and one per task would be forked for ever. That breaks
** the pool, as an initializer that raises does. */
static void onexit(proc *p, child *c, int status) {
  int retired = p->o.max_tasks_per_child > 0
                && c->sent >= p->o.max_tasks_per_child;
  char msg[160];
  if (c->stuck) {
    freechild(p, c);
    return;
  }
  if (c->ninflight == 0 && (c->stopping || retired)
      && (status == UNKNOWN
          || (WIFEXITED(status) && WEXITSTATUS(status) == 0))) {
    freechild(p, c);
    return;
  }
  describe(msg, sizeof(msg), c->pid, status,
           c->started ? "" : " while starting");
  if (!p->o.respawn || !c->started) {
    breakpool(p, msg);
    return;
  }
  while (!conc__queue_empty(&c->inflight)) {  /* respawn: only its own */
    ptask *t = qtask(conc__queue_head(&c->inflight));
    conc__queue_remove(&t->q);
    failtask(p, t, msg, 1);
  }
  setinflight(c, 0);
  freechild(p, c);  /* 'assign' starts another when work comes */
}

/* Reap 'c' if it exited ('block': it is known to exit). 1 if it did
** (and is handled), 0 if it still runs. What it wrote before it exited
** is read first. */
static int reap(proc *p, child *c, int block) {
  int status;
  pid_t r;
  if (!c->eof && readchild(p, c, 1) > 0)
    return 1;  /* broken: 'c' is gone */
  do
    r = waitpid(c->pid, &status, block ? 0 : WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0)
    return 0;
  if (r < 0)  /* reaped by the kernel (SIGCHLD ignored) or a host's
              ** SIGCHLD handler: what it held fails, with no status */
    status = UNKNOWN;
  onexit(p, c, status);
  return 1;
}

/* Whether the pool closes: shut down and nothing left to run. */
static int draining(proc *p) {
  int r;
  pthread_mutex_lock(&p->mu);
  r = (p->shutdown || p->broken) && p->npending == 0;
  pthread_mutex_unlock(&p->mu);
  return r;
}

/* Idle children of a closing pool are told to stop. */
static void stopidle(proc *p) {
  child *c;
  for (c = p->children; c != NULL; c = c->next)
    if (!c->stopping && !c->stuck && c->ninflight == 0) {
      size_t at = conc__frame_begin(&c->out, F_STOP);
      conc__frame_end(&c->out, at);
      c->stopping = 1;
      if (c->out.failed)  /* cannot even say it: end it */
        killchild(c);
    }
}

/* Publish the supervisor's view for stats: before the turn's futures
** complete (completedone), as their counts are (count), so that stats
** read once a result is out count its child idle. */
static void publish(proc *p) {
  child *c;
  int idle = 0;
  size_t memory = 0;
  for (c = p->children; c != NULL; c = c->next) {
    idle += c->started && c->ninflight == 0 && !c->stopping && !c->stuck;
    memory += c->memory;
  }
  pthread_mutex_lock(&p->mu);
  p->nworkers = p->nchildren;
  p->nidle = idle;
  p->memory = memory;
  pthread_mutex_unlock(&p->mu);
}

/* The descriptors to poll: kept between wake-ups, filled again when a
** child came or went; a child's events follow what it has to write. 0,
** or -1 when out of memory. */
static int pollset(proc *p) {
  child *c;
  int n = 1;
  if (p->nfds == 0) {
    struct pollfd *fds = (struct pollfd *)realloc(
        p->fds, (size_t)(1 + 2 * p->nchildren) * sizeof(*fds));
    if (fds == NULL)
      return -1;
    p->fds = fds;
    fds[0].fd = p->wakefd;
    fds[0].events = POLLIN;
    for (c = p->children; c != NULL; c = c->next, n += 2) {
      fds[n + 1].fd = c->pidfd;
      fds[n + 1].events = POLLIN;
    }
    p->nfds = n;
  }
  for (c = p->children, n = 1; c != NULL; c = c->next, n += 2) {
    p->fds[n].fd = c->eof ? -1 : c->sock;
    p->fds[n].events = (short)(POLLIN
                               | (c->out.off < c->out.n ? POLLOUT : 0));
  }
  return 0;
}

/* Wait for the next event and handle it: the wake-up fd, each child's
** socket (results, end of file) and pidfd (exit). */
static void poll_once(proc *p) {
  struct pollfd *fds;
  child *c, *next;
  int i;
  uint64_t v;
  if (pollset(p) != 0) {
    breakpool(p, "out of memory in the process pool's supervisor");
    return;
  }
  fds = p->fds;
  while (poll(fds, (nfds_t)p->nfds, -1) < 0 && errno == EINTR)
    ;
  if (fds[0].revents & POLLIN)
    while (read(p->wakefd, &v, sizeof(v)) < 0 && errno == EINTR)
      ;
  for (c = p->children, i = 1; c != NULL && !p->broken; c = next, i += 2) {
    int gone = 0, r = 0;
    next = c->next;
    if (fds[i].revents & POLLOUT)
      conc__wbuf_flush(c->sock, &c->out);
    if (fds[i].revents & (POLLIN | POLLHUP | POLLERR))
      r = readchild(p, c, 0);
    if (r == 1)
      break;  /* broken: every child is gone */
    if (r < 0)
      c->eof = 1;
    /* exited (pidfd), or its socket ended with no pidfd to tell: the
    ** socket ends only when it exits (nothing else holds it) */
    if ((fds[i + 1].revents & POLLIN) || (r < 0 && c->pidfd < 0))
      gone = reap(p, c, 1);
    if (gone && p->broken)
      break;
  }
}

/* Write what each child has waiting, without blocking. */
static void flushall(proc *p) {
  child *c;
  for (c = p->children; c != NULL; c = c->next)
    conc__wbuf_flush(c->sock, &c->out);
}

static void *supervise(void *arg) {
  proc *p = (proc *)arg;
  for (;;) {
    forward_fired(p);
    conc__qhost_tell(&p->qh);
    sendcancels(p);
    assign(p);
    if (draining(p)) {
      if (p->children == NULL)
        break;
      stopidle(p);
    }
    flushall(p);
    publish(p);
    completedone(p);
    poll_once(p);
  }
  publish(p);
  completedone(p);
  free(p->fds);
  p->fds = NULL;
  return NULL;
}

/* }====================================================================== */


/* {======================================================================
** The executor
** ======================================================================= */

/* Start the supervisor (lock held): 0, or -1 with the reason in 'why'.
** Its wake-up fd is made here, not with the pool, so that a pool that
** never runs a task holds no descriptor. */
static int startsupervisor(proc *p, char *why, size_t n) {
  p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->wakefd < 0) {
    snprintf(why, n, "cannot start the process pool: eventfd: %s",
             strerror(errno));
    return -1;
  }
  if (conc__thread_start(&p->sup, 0, supervise, p) != 0) {
    snprintf(why, n, "cannot start the process pool's supervisor thread: "
             "%s", strerror(errno));
    close(p->wakefd);
    p->wakefd = -1;
    return -1;
  }
  p->supervising = 1;
  return 0;
}

/*
** A host may fork while a pool runs. The child gets a copy of the pool
** without its supervisor thread, whose locks (and those of the futures
** it completes) may have been held at the fork and stay held in the
** copy for ever; its children are the parent's, its eventfd is shared
** with the parent. So in a forked copy no operation takes a lock, wakes
** or joins anything: submit fails (the pool is broken there, with a
** message saying why), shutdown does nothing, stats are empty, and
** free gives back only the copy's descriptor: the rest may be locked
** or still linked from futures, and is left to the process's exit. The
** parent's pool never notices.
*/
static int forked(proc *p) {
  return conc__forks() != p->forks;
}

/* A refused task's future is cancelled, as a thread pool's is (the
** executor contract, concurrent.h): left pending, nothing would ever
** complete it, and a host waiting for it would wait for ever. Called
** without 'mu': the future's callbacks run here, and may submit. */
static int refuse(conc_future_t *f, int r) {
  conc_future_cancel(f);
  return r;
}

static int px_submit(conc_executor_t *b, conc_future_t *f,
                     conc_payload_t *task, double timeout) {
  proc *p = (proc *)b;
  ptask *t;
  char why[128];
  int r = 0, first;
  if (f == NULL || task == NULL)
    return CONC_EINVAL;
  if (forked(p))
    return refuse(f, CONC_EBROKEN);
  if (!conc__payload_fits(task, CONC__TASKHEAD))  /* sendtask could not */
    return refuse(f, CONC_E2BIG);
  if ((t = (ptask *)calloc(1, sizeof(*t))) == NULL)
    return refuse(f, CONC_ENOMEM);
  conc__future_stoppable(f);  /* not under 'mu': a stopper takes it */
  pthread_mutex_lock(&p->mu);
  if (p->broken)
    r = CONC_EBROKEN;
  else if (p->shutdown)
    r = CONC_ESHUTDOWN;
  else if (!p->supervising && startsupervisor(p, why, sizeof(why)) != 0) {
    p->broken = 1;  /* no worker can ever start */
    p->brokenmsg = strdup(why);
    r = CONC_EBROKEN;
  }
  if (r != 0) {
    pthread_mutex_unlock(&p->mu);
    free(t);
    return refuse(f, r);
  }
  t->f = f;
  t->payload = task;
  t->timeout = timeout;
  t->p = p;
  t->id = ++p->nexttask;
  conc_future_ref(f);
  first = conc__queue_empty(&p->pending);
  conc__queue_insert_tail(&p->pending, &t->q);
  p->npending++;
  p->startfailed = 0;  /* a child may start now (see 'onstart') */
  pthread_mutex_unlock(&p->mu);
  if (first)  /* later ones find the supervisor busy with the first */
    wake(p);
  return 0;
}

/* Cancel the pending tasks (they never reached a child). */
static void cancelpending(proc *p) {
  conc__queue taken;
  conc__queue_init(&taken);
  pthread_mutex_lock(&p->mu);
  conc__queue_move(&p->pending, &taken);
  p->npending = 0;
  pthread_mutex_unlock(&p->mu);
  while (!conc__queue_empty(&taken)) {
    ptask *t = qtask(conc__queue_head(&taken));
    conc__queue_remove(&t->q);
    if (conc_future_cancel(t->f) == 1) {
      pthread_mutex_lock(&p->mu);
      p->cancelled++;
      pthread_mutex_unlock(&p->mu);
    }
    freetask(t);
  }
}

static int px_shutdown(conc_executor_t *b, int wait, int cancel) {
  proc *p = (proc *)b;
  int join;
  if (forked(p))
    return 0;
  pthread_mutex_lock(&p->mu);
  if (wait && p->supervising && pthread_equal(p->sup, pthread_self())) {
    pthread_mutex_unlock(&p->mu);  /* a callback it runs: it would join */
    return CONC_EINVAL;            /* itself */
  }
  p->shutdown = 1;
  pthread_mutex_unlock(&p->mu);
  if (cancel)
    cancelpending(p);
  wake(p);
  if (!wait)
    return 0;
  pthread_mutex_lock(&p->mu);
  join = p->supervising && !p->joined;
  p->joined = 1;
  pthread_mutex_unlock(&p->mu);
  if (join)
    pthread_join(p->sup, NULL);
  return 0;
}

static void px_stats(conc_executor_t *b, conc_pool_stats_t *s) {
  proc *p = (proc *)b;
  conc__queue *q;
  long gone = 0;
  if (forked(p)) {
    memset(s, 0, sizeof(*s));
    s->broken = 1;
    return;
  }
  pthread_mutex_lock(&p->mu);
  s->workers = p->nworkers;
  s->idle = p->nidle;
  s->broken = p->broken;
  /* A pending task cancelled stays queued until the supervisor takes it
  ** (when a child is free), which then counts it cancelled: it is
  ** counted so from its cancel on, so that stats read after a wait on
  ** its future say it ended. The state is read without its lock, which
  ** would nest in ours (stoptask takes ours under it). */
  for (q = conc__queue_head(&p->pending); q != &p->pending; q = q->next)
    if (conc_future_state(qtask(q)->f) == CONC_CANCELLED)
      gone++;
  s->pending = p->npending - gone;
  s->running = p->running;
  s->cancelled = p->cancelled + gone;
  if (p->moving != NULL
      && conc_future_state(p->moving->f) == CONC_CANCELLED) {
    s->running--;  /* cancelled as the supervisor took it */
    s->cancelled++;
  }
  s->completed = p->completed;
  s->failed = p->failed;
  s->memory = p->memory;
  pthread_mutex_unlock(&p->mu);
}

static char *px_broken(conc_executor_t *b) {
  proc *p = (proc *)b;
  char *msg = NULL;
  if (forked(p)) {
    char buf[128];
    snprintf(buf, sizeof(buf), "this process pool belongs to process %d: "
             "a forked child cannot use it", (int)p->self);
    return strdup(buf);
  }
  pthread_mutex_lock(&p->mu);
  if (p->broken)
    msg = strdup(p->brokenmsg != NULL ? p->brokenmsg : "the pool is broken");
  pthread_mutex_unlock(&p->mu);
  return msg;
}

/* After the supervisor ended: forwarding entries still watching their
** futures are unlinked from them (a later completion must not reach a
** freed pool); fired ones are on the stack. */
static void px_free(conc_executor_t *b) {
  proc *p = (proc *)b;
  if (forked(p)) {
    if (p->wakefd >= 0)
      close(p->wakefd);
    p->wakefd = -1;
    conc__keep(p);
    return;
  }
  px_shutdown(b, 1, 0);
  conc__fwd_clear(&p->fwd);
  conc__qhost_tell(&p->qh);  /* frees the fired waits: their children
                             ** are gone */
  if (p->wakefd >= 0)
    close(p->wakefd);
  pthread_mutex_destroy(&p->mu);
  free(p->brokenmsg);
  free(p->scratch);
  free(p);
}

static const conc_executor_ops_t ops = {
  "ProcessPoolExecutor", "BrokenProcessPool",
  px_submit, px_shutdown, px_stats, px_broken, px_free, NULL
};

conc_executor_t *conc_procexec_new(const conc_executor_opts_t *o) {
  conc_runtime_t rt;
  proc *p;
  if (!conc__execopts(o, &rt))
    return NULL;
  p = (proc *)calloc(1, sizeof(*p));
  if (p == NULL)
    return NULL;
  p->scratch = (char *)malloc(READCHUNK);
  p->wakefd = -1;
  p->fwd.wake = fwd_wake;
  p->fwd.taskid = fwd_taskid;
  p->qh.fwd = &p->fwd;
  p->qh.wake = qh_wake;
  p->qh.sent = qh_sent;
  if (p->scratch == NULL || pthread_mutex_init(&p->mu, NULL) != 0) {
    free(p->scratch);
    free(p);
    return NULL;
  }
  p->base.ops = &ops;
  p->o = *o;
  p->o.runtime = rt;
  p->o.name_prefix = NULL;  /* the caller's string may go */
  p->self = getpid();
  conc__forks_watch();
  p->forks = conc__forks();
  conc__queue_init(&p->pending);
  conc__queue_init(&p->cancels);
  conc__queue_init(&p->done);
  conc__queue_init(&p->resend);
  return &p->base;
}

/* }====================================================================== */
