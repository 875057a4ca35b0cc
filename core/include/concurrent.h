/*
** concurrent.h: the public C API of the Lua-agnostic core of `concurrent`.
** Futures, owner mailboxes, watch sets and the thread pool, over pthreads.
*/
#ifndef CONCURRENT_H
#define CONCURRENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CONC_VERSION "0.1.0"

/*
** Error codes: every core function that can fail returns 0 (or a count)
** on success and one of these negative codes on failure. Nothing in the
** core prints or aborts on a recoverable error.
*/
#define CONC_EINVAL     (-1)  /* bad argument */
#define CONC_ESTATE     (-2)  /* future not in a state that allows it */
#define CONC_ETIMEDOUT  (-3)  /* deadline passed */
#define CONC_ENOMEM     (-4)  /* allocation failed */
#define CONC_ESHUTDOWN  (-5)  /* pool no longer accepts work */
#define CONC_EBROKEN    (-6)  /* pool is broken */
#define CONC_ESYS       (-7)  /* a system call failed; see errno */
#define CONC_ECLOSED    (-8)  /* mailbox closed */
#define CONC_E2BIG      (-9)  /* a payload too large for a worker process */
#define CONC_ECYCLE     (-10) /* a value would hold the queue it goes into */

/* A readable, static description of an error code. */
const char *conc_strerror(int code);

/*
** Deadlines are absolute CLOCK_MONOTONIC times in seconds.
** 'conc_deadline(timeout)' turns a relative timeout into one; a negative
** timeout means "forever" and yields CONC_FOREVER, and so does one of
** 2^50 seconds or more (math.maxinteger, inf: no time_t overflow).
*/
#define CONC_FOREVER (-1.0)
double conc_now(void);
double conc_deadline(double timeout);


/* {======================================================================
** Futures
** ======================================================================= */

typedef struct conc_future conc_future_t;

typedef enum conc_state {
  CONC_PENDING = 0,
  CONC_RUNNING,
  CONC_FINISHED,
  CONC_CANCELLED
} conc_state_t;

/*
** A future's payload is opaque bytes owned by the future once set:
** 'freefn' (may be NULL) is called on 'data' when the last reference goes.
** 'failed' tells a result from an exception.
*/
typedef void (*conc_free_fn)(void *data);

/* A C callback: runs exactly once, after the future is done, on the
** thread that completed it (or at once, on the registering thread, if the
** future is already done). It must not block for long. It may release a
** reference to 'f', the last one included: the future stays valid for
** the call and goes once the callbacks returned. */
typedef void (*conc_callback_fn)(conc_future_t *f, void *arg);

/* A NULL future (a failed conc_future_new, a host's tofuture of what is
** no future) is refused: conc_future_ref and _unref do nothing with it,
** and the functions below that return an int return CONC_EINVAL; only
** conc_future_state and conc_future_done need a future. */

/* A new PENDING future with one reference, or NULL when out of memory. */
conc_future_t *conc_future_new(void);
void conc_future_ref(conc_future_t *f);
void conc_future_unref(conc_future_t *f);

conc_state_t conc_future_state(conc_future_t *f);
int conc_future_done(conc_future_t *f);  /* FINISHED or CANCELLED */

/* PENDING -> RUNNING: returns 1; already CANCELLED: returns 0 (the caller
** must not run the work); anything else: CONC_ESTATE. */
int conc_future_set_running_or_notify_cancel(conc_future_t *f);

/* PENDING or RUNNING -> FINISHED with a payload. CONC_ESTATE if already
** done; the payload is then NOT taken (the caller still owns 'data'). */
int conc_future_set_result(conc_future_t *f, void *data, size_t len,
                           conc_free_fn freefn);
int conc_future_set_exception(conc_future_t *f, void *data, size_t len,
                              conc_free_fn freefn);

/* PENDING -> CANCELLED: returns 1 (also when already cancelled);
** RUNNING or FINISHED: returns 0. */
int conc_future_cancel(conc_future_t *f);

/* As conc_future_cancel, and a RUNNING future whose executor can stop
** its task (an executor of this core) is asked to: 1, and the future
** ends CANCELLED once the task has unwound, whatever it did meanwhile.
** 0 when it is done, or running where nothing can stop it. */
int conc_future_cancel_running(conc_future_t *f);

/* The same for a RUNNING future whose work is not a task of an executor
** of this core (a host's own, cf.async's coroutine): from now on
** conc_future_cancel_running calls 'stopper(arg)' (at most once, in the
** cancelling thread, under the future's lock: it must not call into
** this future) and returns 1. The work must then end with
** conc_future_stop_end before it completes the future, so that 'arg'
** outlives every call of 'stopper'. CONC_ESTATE unless RUNNING. */
int conc_future_set_stopper(conc_future_t *f, void (*stopper)(void *arg),
                            void *arg);
/* No stopper runs from now on: 1 if a stop was asked (the future is now
** CANCELLED), else 0 (complete it as usual). Idempotent. */
int conc_future_stop_end(conc_future_t *f);

/* Block until the future is done or 'deadline' (absolute, conc_deadline)
** passes: 0 or CONC_ETIMEDOUT. When it returns 0, every C callback of the
** future has returned, but in one case: called from one of the future's
** own C callbacks (the callbacks of a future that the calling thread is
** running), it returns 0 at once, as the future is done, instead of
** waiting for itself. */
int conc_future_wait(conc_future_t *f, double deadline);

/* The payload of a FINISHED future: 0 and the fields (each pointer may
** be NULL: not wanted), or CONC_ESTATE if it is not finished (pending,
** running or cancelled). The data stays owned by the future: keep a
** reference while using it. */
int conc_future_payload(conc_future_t *f, const void **data, size_t *len,
                        int *failed);

/* Register a C callback. Returns 0, CONC_EINVAL (a NULL 'fn') or
** CONC_ENOMEM. If the future is done already, 'fn' runs before this
** returns. */
int conc_future_add_callback(conc_future_t *f, conc_callback_fn fn,
                             void *arg);

/* }====================================================================== */


/* {======================================================================
** Payloads: what a task, a result or an error is made of, as one block:
** bytes plus the futures and queues the bytes refer to (by index into
** the block's list, so the bytes hold no pointer and mean the same in a
** thread, over a socket or over MPI). The block owns one reference per
** entry.
** ======================================================================= */

typedef struct conc_payload conc_payload_t;
typedef struct conc_chanq conc_chanq_t;  /* a queue (Queues, below) */

/* What a payload's list refers to: futures, queues and shared bytes,
** each starting with its kind (an int), so an entry tells what it is. */
enum { CONC_SHARED_FUTURE = 0, CONC_SHARED_QUEUE = 1, CONC_SHARED_BYTES = 2 };
/* Take or give back a reference on any of them, by its kind. */
void conc_shared_ref(void *obj);
void conc_shared_unref(void *obj);

/* Shared bytes: an immutable, refcounted block of bytes that payloads
** name instead of carrying a copy (a thread pool's tasks name the dump
** of their function so: one copy for every task that sends it). Only a
** payload that stays in the process may hold them: the transports of
** the process and MPI pools carry futures and queues only. */
typedef struct conc_bytes conc_bytes_t;
/* A copy of 'len' bytes with one reference, or NULL. */
conc_bytes_t *conc_bytes_new(const void *b, size_t len);
void conc_bytes_ref(conc_bytes_t *s);
void conc_bytes_unref(conc_bytes_t *s);
const char *conc_bytes_data(const conc_bytes_t *s, size_t *len);

/* What the bytes are: the Lua codec's encoding of values, or an error
** made by the core (a broken pool): "<class>\0<message>". */
enum { CONC_PAYLOAD_VALUES = 0, CONC_PAYLOAD_ERROR = 1 };

/* The header is spelled out for hosts that build payloads of raw bytes;
** the bytes follow it, then (pointer-aligned) the future list. */
struct conc_payload {
  size_t size;         /* bytes, right after this header */
  uint32_t nfutures;   /* entries of the future list */
  unsigned char kind;  /* CONC_PAYLOAD_* */
  unsigned char inblock;  /* made by an executor's 'newtask': it lives in
                          ** its future's block, and conc_payload_free
                          ** releases only its list */
};

/* A block holding a copy of 'len' bytes (or room for them when 'bytes'
** is NULL) and 'nfutures' empty list entries; NULL when out of memory. */
conc_payload_t *conc_payload_new(const void *bytes, size_t len,
                                 size_t nfutures);
/* The same over a malloc'd 'block' that already holds the header's room
** and then the 'len' bytes (it is realloc'd): NULL when out of memory,
** and then 'block' is still the caller's. */
conc_payload_t *conc_payload_adopt(void *block, size_t len,
                                   size_t nfutures);
/* A CONC_PAYLOAD_ERROR block, or NULL. An empty class (or NULL) makes
** the message itself the error value; a NULL message is empty. */
conc_payload_t *conc_payload_error(const char *cls, const char *msg);
/* Releases the futures and the block; NULL is allowed (a conc_free_fn). */
void conc_payload_free(void *p);
size_t conc_payload_sizeof(const conc_payload_t *p);  /* block; NULL: 0 */
char *conc_payload_data(const conc_payload_t *p);     /* its bytes */
/* Entry 'i' if it is a future (a queue, shared bytes), else NULL. */
conc_future_t *conc_payload_future(const conc_payload_t *p, size_t i);
conc_chanq_t *conc_payload_queue(const conc_payload_t *p, size_t i);
conc_bytes_t *conc_payload_bytes(const conc_payload_t *p, size_t i);
/* Fill the empty entry 'i' with 'f', taking a reference. */
void conc_payload_setfuture(conc_payload_t *p, size_t i, conc_future_t *f);
void conc_payload_setqueue(conc_payload_t *p, size_t i, conc_chanq_t *q);
/* The same for any shared object (shared bytes among them), by its
** kind. */
void conc_payload_setshared(conc_payload_t *p, size_t i, void *obj);
/* A copy; each future gains a reference. NULL when out of memory. */
conc_payload_t *conc_payload_dup(const conc_payload_t *p);
/* Whether future 'f' is among the shared objects 'p' carries or, through
** the outcomes of finished futures and the items of queues among them,
** holds (1), or not (0); -1 out of memory. Completing 'f' with such a
** payload would make a cycle of references (f -> payload -> ... -> f)
** that nothing breaks. */
int conc_payload_reaches(const conc_payload_t *p, conc_future_t *f);
/* Complete 'f' with 'p' (taken in every case): its result, or its
** exception when 'failed'. When 'p' reaches 'f' (or memory runs out to
** tell), 'f' gets the error 'cls: msg' instead (as conc_payload_error),
** or no values when 'msg' is NULL. For payloads that hold futures the check and the completion
** are one step, so two threads completing 'a' with 'b' and 'b' with 'a'
** at once cannot both pass it. 0, or CONC_ESTATE when 'f' was done. */
int conc_payload_finish(conc_future_t *f, conc_payload_t *p, int failed,
                        const char *cls, const char *msg);
/* conc_chanq_tryput of 'p' into 'q' (freed with conc_payload_free),
** unless 'p' reaches 'q' as conc_payload_reaches reaches a future: the
** queue would then hold itself, a cycle of references that nothing
** breaks, and CONC_ECYCLE is returned (CONC_ENOMEM when memory runs out
** to tell). The check and the put are one step, as in
** conc_payload_finish. On failure 'p' stays the caller's. */
int conc_payload_tryput(conc_chanq_t *q, conc_payload_t *p,
                        conc_future_t *wake);
/* As conc_payload_finish, but a payload that reaches 'f' is refused:
** CONC_EINVAL (CONC_ENOMEM when memory ran out to tell); then, as on
** CONC_ESTATE, 'p' is not taken (the caller still owns it). */
int conc_payload_settle(conc_future_t *f, conc_payload_t *p, int failed);

/* }====================================================================== */


/* {======================================================================
** Block caches (bufcache.c): blocks of CONC_BUFCACHE_MIN to _MAX bytes
** that a thread frees and soon needs again (a payload per task, a worker
** state's tables) are kept, up to a bound, instead of going back to
** malloc, which gives their memory back to the kernel and takes it
** again. Not thread-safe: one per thread, or under the user's lock; the
** caller calls malloc and free itself, outside that lock.
** ======================================================================= */

#define CONC_BUFCACHE_MIN ((size_t)4096)
#define CONC_BUFCACHE_MAX ((size_t)256 * 1024)

typedef struct conc_bufcache conc_bufcache_t;

/* A cache keeping at most 'max' bytes; NULL when out of memory. */
conc_bufcache_t *conc_bufcache_new(size_t max);
/* A kept block of at least 'n' bytes (taken out of the cache), or NULL:
** none, 'n' out of range, or 'c' NULL. */
void *conc_bufcache_take(conc_bufcache_t *c, size_t n);
/* Keep 'p', a malloc'd block of at least 'n' bytes: 1, the cache owns it
** now; 0 when it does not fit (the caller still owns it). */
int conc_bufcache_keep(conc_bufcache_t *c, void *p, size_t n);
/* The size at or above 'n' that suits a block made for 'n' bytes: kept
** at that size, it is taken back for any 'n' that rounds to it (a block
** kept at a size of its own is taken only for requests up to it). */
size_t conc_bufcache_round(size_t n);
/* Gives every kept block back to malloc (out of memory, so that malloc
** may try again): 1 if there was any. NULL is allowed. */
int conc_bufcache_empty(conc_bufcache_t *c);
/* The bytes the blocks kept have (0 for NULL). */
size_t conc_bufcache_held(const conc_bufcache_t *c);
/* Gives kept blocks back to malloc, the oldest first, until at most
** 'max' bytes are kept. NULL is allowed. */
void conc_bufcache_trim(conc_bufcache_t *c, size_t max);
/* Frees every kept block and the cache; NULL is allowed. */
void conc_bufcache_free(conc_bufcache_t *c);

/* }====================================================================== */


/* {======================================================================
** Mailboxes: one per owner thread (a Lua state, a host's event loop).
** Futures post to it; the owner drains it on its own thread. Its fd (an
** eventfd) is readable while posts are queued, for event loops.
** ======================================================================= */

typedef struct conc_mailbox conc_mailbox_t;

conc_mailbox_t *conc_mailbox_new(void);   /* one reference, or NULL */
void conc_mailbox_ref(conc_mailbox_t *mb);
void conc_mailbox_unref(conc_mailbox_t *mb);

/* After close, posts are dropped (their future references released) and
** queued ones are discarded. The owner calls it when it goes away. */
void conc_mailbox_close(conc_mailbox_t *mb);

/* The eventfd readable while posts are queued, made on first call; -1
** (errno set) when it cannot be made. */
int conc_mailbox_fd(conc_mailbox_t *mb);

/* Ask 'f' to post itself to 'mb' once when done (at once if it is done).
** 'tag' is returned with the post. 0 or CONC_ENOMEM. */
int conc_mailbox_subscribe(conc_mailbox_t *mb, conc_future_t *f,
                           uintptr_t tag);

/* Take one post without blocking: 1 and the future (a reference the
** caller must release) and its tag, or 0 when none is queued. */
int conc_mailbox_take(conc_mailbox_t *mb, conc_future_t **f,
                      uintptr_t *tag);

/* Block until a post is queued or 'deadline' passes: 0 or
** CONC_ETIMEDOUT. */
int conc_mailbox_wait(conc_mailbox_t *mb, double deadline);

/* 'on': wake every thread blocked in conc_mailbox_wait or
** conc_watch_wait on 'mb', and make later waits return at once, as for
** a post, until it is called with 'on' 0 (any thread may call it). So a
** worker's blocking calls return while its running task must stop. */
void conc_mailbox_interrupt(conc_mailbox_t *mb, int on);

/* }====================================================================== */


/* {======================================================================
** Watch sets: wait for any of many futures, as each completes, while
** also waking for the owner's mailbox posts (so an owner can run its
** callbacks while it blocks). A set belongs to one mailbox and one thread.
** ======================================================================= */

typedef struct conc_watch conc_watch_t;

conc_watch_t *conc_watch_new(conc_mailbox_t *mb);  /* or NULL */
void conc_watch_free(conc_watch_t *w);  /* unregisters what is left */

/* Add a future (a reference is kept). 'tag' comes back when it is done. */
int conc_watch_add(conc_watch_t *w, conc_future_t *f, uintptr_t tag);

/* Take the tag of one completed future without blocking: 1, or 0. */
int conc_watch_take(conc_watch_t *w, uintptr_t *tag);

/* Block until a watched future completes, 'deadline' passes, or (if
** 'posts' is nonzero) a mailbox post is queued: 0 or CONC_ETIMEDOUT.
** Spurious returns are allowed. */
int conc_watch_wait(conc_watch_t *w, double deadline, int posts);

/* }====================================================================== */

/* {======================================================================
** Thread pool: one per executor. Tasks are intrusive (embed conc_task_t
** in your own struct, as uv_work_t): the pool never allocates per task.
** ======================================================================= */

typedef struct conc_pool conc_pool_t;
typedef struct conc_task conc_task_t;

struct conc_task {
  /* set by the submitter */
  /* the pool takes over one reference at submit and releases it after
  ** 'run' or 'drop' returned; it counts completed/failed stats from the
  ** future's payload once 'run' returned */
  conc_future_t *future;
  /* Runs on a worker after the future went RUNNING; must complete the
  ** future (set_result or set_exception) and may free the task. 'ctx' is
  ** the worker's context from 'worker_start'. */
  void (*run)(conc_task_t *t, void *ctx);
  /* The task will never run: 'why' is 0 when its future was cancelled
  ** (or completed by someone else), CONC_EBROKEN when the pool broke. In
  ** the broken case the future is not done yet (the pool made it RUNNING,
  ** so no cancel races with 'drop') and 'drop' must complete it
  ** (set_exception). Frees t. May run on any thread, including a thread
  ** that called conc_future_cancel on the future. */
  void (*drop)(conc_task_t *t, int why);
  /* private to the pool */
  void *q_[2];
  uintptr_t ps_;  /* the pool, its low bits the task's state there */
};

/* The most workers a pool or an executor may have: a pool asked for
** more would start a thread (or a process) per queued task, far past
** what a machine can hold, before it failed. */
#define CONC_MAX_WORKERS 100000

typedef struct conc_pool_opts {
  int max_workers;            /* 1 to CONC_MAX_WORKERS */
  const char *name_prefix;    /* OS thread names "<prefix>_<n>"; or NULL */
  size_t stack_size;          /* 0: the pool's default */
  /* Optional: make a worker's context on its own thread before its first
  ** task. CONC_EBROKEN breaks the pool: queued tasks are dropped with
  ** CONC_EBROKEN and later submits fail with CONC_EBROKEN. Any other
  ** nonzero return (no resources) breaks it only when no other worker is
  ** left; otherwise this worker just does not start. */
  int (*worker_start)(void *ud, void **ctx);
  void (*worker_stop)(void *ud, void *ctx);   /* on the worker, at exit */
  void *ud;
} conc_pool_opts_t;

typedef struct conc_pool_stats {
  int workers, idle;
  int broken;
  long pending, running, completed, failed, cancelled;
  size_t memory;  /* executors: bytes their workers' states hold */
} conc_pool_stats_t;

/* A pool with no workers yet (they start lazily), or NULL: errno
** EINVAL when 'opts' is NULL or its max_workers is out of range,
** ENOMEM when out of memory. */
conc_pool_t *conc_pool_new(const conc_pool_opts_t *opts);

/* Queue a task; starts a worker if none is idle and the maximum is not
** reached. 0, CONC_EINVAL, CONC_ESTATE (its future is another task's
** that is not done: a future runs one task), CONC_ESHUTDOWN,
** CONC_EBROKEN, CONC_ENOMEM or CONC_ESYS (no worker could start). On
** failure the task never runs and stays the caller's, with the future
** reference; after any failure but CONC_EINVAL and CONC_ESTATE its
** future is cancelled (unless it was started or completed by someone
** else). A
** task whose future is already cancelled is accepted and dropped at
** once. */
int conc_pool_submit(conc_pool_t *p, conc_task_t *t);

/* No new tasks. cancel: cancel every queued task. wait: return once
** every task ended and every worker exited. Workers leave only once the
** queue is empty. Idempotent. Returns 0; or CONC_EINVAL, and does
** nothing, when called with 'wait' on one of the pool's own workers (in
** a task, a callback it runs, worker_start): it would wait for itself. */
int conc_pool_shutdown(conc_pool_t *p, int wait, int cancel);

/* shutdown(wait, no cancel), then free: it waits for running and queued
** tasks to end, even after shutdown(0, ...). Not on the pool's own
** workers (see conc_pool_shutdown). */
void conc_pool_free(conc_pool_t *p);

void conc_pool_stats(conc_pool_t *p, conc_pool_stats_t *s);

/* On a pool's worker thread, the future of the task it runs (NULL
** elsewhere): waiting on it there could only deadlock. */
conc_future_t *conc_pool_current(void);

/* Whether 'f' is the future of the task the calling thread runs, in a
** thread pool or (through the proxy of its future) in a process pool's
** worker: waiting on it there could only deadlock. */
int conc_future_is_current(conc_future_t *f);

/* }====================================================================== */

/* {======================================================================
** Timers: a thread that cancels futures at their deadlines (running
** only while some are due; joined by conc_timer_free).
** ======================================================================= */

typedef struct conc_timer conc_timer_t;

conc_timer_t *conc_timer_new(void);  /* or NULL */
/* Stops the thread; futures not yet due are left as they are. */
void conc_timer_free(conc_timer_t *t);

/* Cancel 'f' (if still pending) once the absolute 'deadline' passed; a
** reference is kept until then, until removed, or until 'f' is done (a
** later add drops the entries of done futures in passing). Adding and
** removing cost O(log n) for n entries. A deadline that never comes
** (CONC_FOREVER, as conc_deadline gives for a negative or infinite
** timeout; NaN) adds nothing. 0, CONC_ENOMEM or CONC_ESYS (the thread
** could not start). */
int conc_timer_cancel_at(conc_timer_t *t, conc_future_t *f,
                         double deadline);
/* Forget 'f' (its wait ended otherwise), if it is still there. */
void conc_timer_remove(conc_timer_t *t, conc_future_t *f);

/* }====================================================================== */

/* {======================================================================
** Queues: a FIFO of payloads (bytes owned by the queue until taken, as a
** future's) shared between threads; bounded by 'maxsize' (0: no bound).
** After close, put fails with CONC_ECLOSED and get drains what is left,
** then fails with CONC_ECLOSED.
** ======================================================================= */

/* A NULL queue (a failed conc_chanq_new) is refused: put, get, their
** try forms and unget return CONC_EINVAL, ref, unref and close do
** nothing, len and maxsize are 0 and closed is 1. */
conc_chanq_t *conc_chanq_new(size_t maxsize);  /* one reference, or NULL */
void conc_chanq_ref(conc_chanq_t *q);
/* the last reference frees the items left with their free functions and
** cancels the wakes still registered (below): the queue is gone */
void conc_chanq_unref(conc_chanq_t *q);

/* Block until there is room, or 'deadline' passes: 0 (the queue owns
** 'data' now), CONC_ETIMEDOUT, CONC_ECLOSED or CONC_ENOMEM (on failure
** the caller still owns 'data'); in a process pool's worker, CONC_E2BIG
** for a value past what a frame to the parent carries. */
int conc_chanq_put(conc_chanq_t *q, void *data, size_t len,
                   conc_free_fn freefn, double deadline);
/* Block until an item is there: 0 and the item (the caller owns it and
** frees it with '*freefn'), CONC_ETIMEDOUT, or CONC_ECLOSED once closed
** and drained; in a process pool's worker, CONC_E2BIG when the first
** item is past what a frame from the parent carries (it stays first). */
int conc_chanq_get(conc_chanq_t *q, void **data, size_t *len,
                   conc_free_fn *freefn, double deadline);
/* Without blocking, as above; CONC_ETIMEDOUT when it would block. Then
** 'wake' (if not NULL) is cancelled at the next get (tryput) or put
** (tryget), at close, or when the queue is freed: for a waiter that
** also watches its mailbox. */
int conc_chanq_tryput(conc_chanq_t *q, void *data, size_t len,
                      conc_free_fn freefn, conc_future_t *wake);
int conc_chanq_tryget(conc_chanq_t *q, void **data, size_t *len,
                      conc_free_fn *freefn, conc_future_t *wake);
/* Give back an item that get took ('data', 'len' and 'freefn' as get
** gave them) when the taker cannot use it (its decode failed): it is
** first again, even if that passes 'maxsize' or the queue is closed. 0
** (the queue owns 'data' again), or CONC_ENOMEM; on failure the caller
** still owns 'data'. In a process pool's worker the item goes back to
** the parent's queue: there also CONC_EBROKEN (the parent is gone),
** CONC_EINVAL (it holds a future, which cannot go back) and CONC_E2BIG
** (it no longer fits in a frame). */
int conc_chanq_unget(conc_chanq_t *q, void *data, size_t len,
                     conc_free_fn freefn);
void conc_chanq_close(conc_chanq_t *q);  /* wakes every waiter */
size_t conc_chanq_len(conc_chanq_t *q);
size_t conc_chanq_maxsize(conc_chanq_t *q);
int conc_chanq_closed(conc_chanq_t *q);

/* }====================================================================== */

/* {======================================================================
** Executors: one interface over the back-ends (the thread pool, the
** process pool). A back-end runs tasks given as payloads through a
** runtime (what a worker does with a payload; the Lua binding supplies
** the Lua one) and completes each task's future with what came back.
** ======================================================================= */

/* Why a running task is asked to stop. */
enum { CONC_STOP_NONE = 0, CONC_STOP_CANCEL, CONC_STOP_TIMEOUT };

/* A running task's controls, owned by the back-end: it sets 'stop'
** (atomically, from any thread) and then calls the runtime's
** 'interrupt'; the runtime reads 'stop' at its own checks. */
typedef struct conc_taskctl {
  int stop;          /* CONC_STOP_*: read with __atomic_load_n */
  double timeout;    /* the task's time limit in seconds, or 0 */
  /* Room the back-end offers for the outcome, or NULL: a payload for
  ** 'len' bytes and 'nfutures' entries (an empty list) that the
  ** back-end keeps, or NULL when it has none, and the runtime makes
  ** its own. The room may be the task's: ask once 'task' is read no
  ** more (its references are given back then). */
  conc_payload_t *(*place)(struct conc_taskctl *ctl, size_t len,
                           size_t nfutures);
  /* The runtime's (0 from the back-end; written and read with
  ** __atomic_store/__atomic_load): when, by conc_now, the runtime last
  ** raised the stop inside the task from where nothing can interrupt
  ** the task until its code catches the error (Lua runs a message
  ** handler for an error raised in a debug hook with the hooks off);
  ** 0 once the task runs interruptible code again, or ended. A process
  ** pool's child ends a task stuck there for a second, with the
  ** runtime's 'stopped' outcome. */
  double raised;
} conc_taskctl_t;

/* What a worker runs: the same for a thread and a forked child. Only
** 'run' is required; a hook left NULL means: 'start', no context (NULL);
** 'stop', nothing to release; 'interrupt', a task notices 'ctl->stop'
** only at its own checks (a cancel or a time limit waits for them);
** 'memory', 0 bytes; 'stopped', NULL (no outcome). */
typedef struct conc_runtime {
  /* Make a worker's context on the worker (its thread, or the child
  ** process); 'id' numbers the workers of an executor from 1. 0; or
  ** CONC_EBROKEN when the user's setup failed (the pool breaks),
  ** another code when resources ran out (the pool breaks only if no
  ** worker is left); then '*why' is a malloc'd reason or NULL. */
  int (*start)(void *ud, int id, void **ctx, char **why);
  void (*stop)(void *ud, void *ctx);
  /* Run 'task' in 'ctx': its outcome (values, or an error when
  ** '*failed'), or NULL when not even an error could be made. A task
  ** whose 'ctl->stop' is set unwinds; a timed out one then fails with
  ** a TimeoutError. */
  conc_payload_t *(*run)(void *ctx, const conc_payload_t *task,
                         conc_taskctl_t *ctl, int *failed);
  /* From any thread, between 'start' and 'stop': the running task's
  ** 'stop' was set, make it notice soon. A call that comes after its
  ** task ended must be harmless to the next one. */
  void (*interrupt)(void *ctx);
  /* From any thread, between 'start' and 'stop': bytes 'ctx' holds. */
  size_t (*memory)(void *ctx);
  void *ud;
  /* From any thread, between 'start' and 'stop': the outcome (an
  ** error) of a task that 'ctl->stop' stopped, as 'run' would end it,
  ** or NULL (a cancel's: its future ends CANCELLED; or no memory).
  ** Called without the task's unwinding: a process pool's child sends
  ** it for a task stuck where no stop reaches ('ctl->raised'), and
  ** exits. Last, after 'ud': a runtime written for the header before
  ** it, with positional initializers, leaves it NULL. */
  conc_payload_t *(*stopped)(void *ctx, const conc_taskctl_t *ctl);
} conc_runtime_t;

typedef struct conc_executor conc_executor_t;

typedef struct conc_executor_ops {
  const char *name;          /* "ThreadPoolExecutor" */
  const char *broken_class;  /* "BrokenThreadPool": the error of a break */
  /* Queue 'task' for 'f' (PENDING), to be stopped 'timeout' seconds
  ** after it starts (0: no limit): 0, and the executor owns 'task' and
  ** one reference to 'f'; or a negative code and both stay the caller's
  ** (CONC_EINVAL for a NULL 'f' or 'task', CONC_ESTATE when 'f' is a
  ** thread pool's task's already, CONC_ESHUTDOWN, CONC_EBROKEN,
  ** CONC_ENOMEM, CONC_ESYS, CONC_E2BIG for a process pool's task whose
  ** frame would pass CONC_FRAME_MAX). After any failure but CONC_EINVAL and
  ** CONC_ESTATE, 'f' is cancelled (its callbacks run in the call,
  ** unless it was started or completed by someone else): nothing
  ** else would ever complete it. */
  int (*submit)(conc_executor_t *ex, conc_future_t *f, conc_payload_t *task,
                double timeout);
  /* As conc_pool_shutdown: CONC_EINVAL with 'wait' on one of the
  ** executor's own threads (a thread pool's worker; a process pool's
  ** supervisor, which runs its futures' C callbacks). */
  int (*shutdown)(conc_executor_t *ex, int wait, int cancel);
  void (*stats)(conc_executor_t *ex, conc_pool_stats_t *s);
  /* Why it broke (a malloc'd copy), or NULL while it is sound. */
  char *(*broken)(conc_executor_t *ex);
  /* shutdown(wait), then release everything (not on the executor's
  ** own threads, as shutdown). */
  void (*free)(conc_executor_t *ex);
  /* Optional (NULL: none). A new PENDING future in one block with what
  ** the back-end needs to queue its task, and room for that task's
  ** payload of 'len' bytes and 'nfutures' list entries: '*task', to be
  ** filled (its list is empty) and then handed to 'submit' with that
  ** future only. So a queued task costs one allocation; its payload's
  ** bytes go with the future. NULL when out of memory or too large. */
  conc_future_t *(*newtask)(conc_executor_t *ex, size_t len,
                            size_t nfutures, conc_payload_t **task);
} conc_executor_ops_t;

/* Every back-end starts with this. */
struct conc_executor {
  const conc_executor_ops_t *ops;
};

typedef struct conc_executor_opts {
  int max_workers;             /* 1 to CONC_MAX_WORKERS */
  const char *name_prefix;     /* threads: OS thread names; or NULL */
  int max_tasks_per_child;     /* processes: 0 = no limit */
  int respawn;                 /* processes: a dead worker is replaced */
  conc_runtime_t runtime;
} conc_executor_opts_t;

/* A thread pool (pool.c) running payloads; NULL with errno EINVAL for
** bad options (max_workers out of range, no runtime.run), ENOMEM when
** out of memory. */
conc_executor_t *conc_threadexec_new(const conc_executor_opts_t *o);
/* A pool of forked processes (proc.c); NULL as conc_threadexec_new. Each
** child runs the runtime in a fresh process image copy: 'start' runs in
** the child after fork. Futures in a task's payload are forwarded to
** the child, where they are proxies that complete when the parent's do;
** queues become proxies whose operations the parent carries out (their
** items must then be payloads, freed with conc_payload_free). */
conc_executor_t *conc_procexec_new(const conc_executor_opts_t *o);

/* }====================================================================== */

/* {======================================================================
** The Lua side, for hosts that embed Lua. After require "concurrent.core"
** (or luaopen_concurrent_core) in a state, the registry field
** CONC_LUA_API_KEY holds a light userdata pointing to this table. The
** core itself never includes lua.h. A host that embeds Lua uses only
** this table for futures its states see (examples/embed.c); the plain
** conc_ functions are for programs that use the core without the module.
** The module is never unloaded once loaded: the table, and the futures
** a host holds, stay usable after its last state is closed.
** ======================================================================= */

struct lua_State;

#define CONC_LUA_API_KEY "concurrent.capi"
/* Fields are only ever appended: a table of version N has every field
** of versions 1..N. */
#define CONC_LUA_API_VERSION 2

typedef struct conc_lua_api {
  int version;  /* the module's CONC_LUA_API_VERSION */
  /* push the state's handle of 'f' (one handle per future per state);
  ** raises "the Lua state is closing" in a finalizer run by lua_close,
  ** where a handle it made would never be released, and an error for a
  ** NULL 'f' */
  void (*pushfuture)(struct lua_State *L, conc_future_t *f);
  /* the future of the handle at 'idx', or NULL if it is not a future */
  conc_future_t *(*tofuture)(struct lua_State *L, int idx);
  /* encode n values from stack index 'first' as one transfer (raises a
  ** Lua error naming the value's path on refusal, or saying that the n
  ** values from 'first', an index or a negative offset from the top,
  ** are not all on the stack); free with 'freepayload' or hand it to
  ** conc_future_set_result/exception with that free fn */
  void *(*encode)(struct lua_State *L, int first, int n, size_t *len);
  /* push the values of an encoded payload; returns their number */
  int (*decode)(struct lua_State *L, const void *payload);
  conc_free_fn freepayload;
  /* The module's own core, for every future a host shares with Lua
  ** states: a separately linked copy of the core (libconcurrent.a) may
  ** differ in layout, so it must never touch the module's futures. */
  conc_future_t *(*future_new)(void);
  void (*future_ref)(conc_future_t *f);
  void (*future_unref)(conc_future_t *f);
  conc_state_t (*future_state)(conc_future_t *f);
  int (*future_set_running_or_notify_cancel)(conc_future_t *f);
  /* 'data' must be NULL (no values; for an exception, the error "the
  ** future failed without an error value"; CONC_ENOMEM when no memory
  ** is left to make them) or a payload of 'encode' with its 'len' and
  ** 'freepayload' as 'freefn': anything else (raw bytes a state would
  ** misread as a transfer) is refused with CONC_EINVAL, and 'data'
  ** stays the caller's. So are values that reach 'f' (its own handle,
  ** or a finished future's whose values do, as conc_payload_reaches): a
  ** cycle of references that nothing would ever free. */
  int (*future_set_result)(conc_future_t *f, void *data, size_t len,
                           conc_free_fn freefn);
  int (*future_set_exception)(conc_future_t *f, void *data, size_t len,
                              conc_free_fn freefn);
  int (*future_cancel)(conc_future_t *f);
  int (*future_wait)(conc_future_t *f, double deadline);
  int (*future_add_callback)(conc_future_t *f, conc_callback_fn fn,
                             void *arg);
  double (*deadline)(double timeout);
  /* Version 2: reading a future from C. */
  int (*future_done)(conc_future_t *f);  /* FINISHED or CANCELLED */
  /* The payload of a FINISHED future, as conc_future_payload: 'failed'
  ** tells an error from results; 'data' is what 'decode' takes (NULL
  ** when the values could not be encoded). */
  int (*future_payload)(conc_future_t *f, const void **data, size_t *len,
                        int *failed);
  /* Push the values of a FINISHED future in L and return how many: its
  ** results, or (with '*failed' set to 1) its error value, followed by
  ** the worker's traceback for a task's error. CONC_ESTATE when it is not
  ** finished (pending, running or cancelled), CONC_EINVAL when its
  ** values cannot reach this state (the state that set them keeps what
  ** cannot cross, a coroutine say; or no memory was left to send them);
  ** nothing is pushed then. Decoding may raise a Lua error (out
  ** of memory, a module the state cannot require). */
  int (*pushvalues)(struct lua_State *L, conc_future_t *f, int *failed);
  /* conc_strerror: a readable description of a CONC_E* code. */
  const char *(*strerror)(int code);
} conc_lua_api_t;

/* The table of a state that has opened the module, or NULL (not opened,
** or a module older than this header). A macro, so that lua.h may be
** included before or after this header: the Lua functions it needs are
** named where it is used. */
#define conc_lua_api(L) \
  conc_lua_api_((L), lua_getfield, lua_touserdata, lua_settop, \
                LUA_REGISTRYINDEX)

static inline const conc_lua_api_t *conc_lua_api_(
    struct lua_State *L,
    int (*getfield)(struct lua_State *, int, const char *),
    void *(*touserdata)(struct lua_State *, int),
    void (*settop)(struct lua_State *, int), int registry) {
  const conc_lua_api_t *api;
  getfield(L, registry, CONC_LUA_API_KEY);
  api = (const conc_lua_api_t *)touserdata(L, -1);
  settop(L, -2);
  return api != NULL && api->version >= CONC_LUA_API_VERSION ? api : NULL;
}

/* }====================================================================== */

#ifdef __cplusplus
}
#endif

#endif
