/*
** internal.h: declarations shared inside core/ only (the conc__ tier).
** Nothing here is part of the public API or exported from the library.
*/
#ifndef CONC_INTERNAL_H
#define CONC_INTERNAL_H

#include <pthread.h>
#include <time.h>

#include "concurrent.h"
#include "queue.h"

#if defined(__GNUC__)
#define CONC__FUNC __attribute__((visibility("hidden"))) extern
#else
#define CONC__FUNC extern
#endif
#define CONC__DATA CONC__FUNC  /* the same, for a variable */

/* Invariant checks, on in debug builds (-DCONC_DEBUG) only. */
#if defined(CONC_DEBUG)
#include <assert.h>
#define conc_assert(c) assert(c)
#else
#define conc_assert(c) ((void)0)
#endif

/* Built with AddressSanitizer: memory the core keeps for reuse is
** poisoned or not kept at all, so that its checks still see it. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONC__ASAN
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(CONC__ASAN)
#define CONC__ASAN
#endif

/* Kept memory poisoned under ASan: a use after free of a block the core
** keeps for reuse is still reported. */
#if defined(CONC__ASAN)
#include <sanitizer/asan_interface.h>
#define conc__poison(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define conc__unpoison(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define conc__poison(p, n) ((void)(p), (void)(n))
#define conc__unpoison(p, n) ((void)(p), (void)(n))
#endif

/* Memory left on purpose to the process's exit (a forked copy of a
** pool, see proc.c): not a leak for LeakSanitizer, which then also
** takes what it points to as reachable. */
#if defined(CONC__ASAN)
#include <sanitizer/lsan_interface.h>
#define conc__keep(p) __lsan_ignore_object(p)
#else
#define conc__keep(p) ((void)(p))
#endif

/* A hint to the CPU inside a polling loop. */
static inline void conc__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/*
** pool.c: who may poll. A waiting owner and an idle worker poll a while
** before they sleep, which spares a wake-up when the work comes soon;
** but a polling thread takes a core, and on a small machine that core
** may be the one a worker with a task needs. So a thread polls only
** while the workers running tasks (of every pool of the process) and
** the threads polling, itself included, fit in the cores the process
** may use; and it stops as soon as they no longer do.
*/
CONC__FUNC void conc__spin_busy(int d);  /* a worker starts (1)/ends (-1) */
CONC__FUNC int conc__spin_begin(void);   /* 1: poll, then conc__spin_end */
CONC__FUNC void conc__spin_end(void);
CONC__FUNC int conc__spin_ok(void);      /* polling may go on */

/* clock.c: condition variables wait on CLOCK_MONOTONIC. */
CONC__FUNC int conc__cond_init(pthread_cond_t *cv);
/* Wait on 'cv' until signalled or 'deadline' (CONC_FOREVER: no limit):
** 0, or CONC_ETIMEDOUT once the deadline has passed. */
CONC__FUNC int conc__cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu,
                               double deadline);
/* Whether 'deadline' never comes: CONC_FOREVER, NaN, or past what
** conc_deadline makes of any finite timeout. */
CONC__FUNC int conc__never(double deadline);

/* thread.c: whether 'o' can make an executor (threadexec.c, proc.c):
** 1 and its runtime in '*rt', with a no-op for each optional hook left
** NULL (so no caller checks); or 0 with errno EINVAL. */
CONC__FUNC int conc__execopts(const conc_executor_opts_t *o,
                              conc_runtime_t *rt);

/* thread.c: the reason a worker did not start when its runtime's
** 'start' returned 'code' and gave none (its '*why' NULL): what failed
** and the code, so that the pool's error never ends in nothing. */
#define CONC__STARTWHY 64
CONC__FUNC void conc__startwhy(char *buf, size_t n, int code);

/* thread.c: start a thread running fn(arg) with 'stack' bytes of stack
** (0: the default) and every asynchronous signal blocked: 0, or
** CONC_ESYS with errno set. */
CONC__FUNC int conc__thread_start(pthread_t *tid, size_t stack,
                                  void *(*fn)(void *), void *arg);

/* thread.c: forks of this process, counted in each child by a
** pthread_atfork handler. A pool records the count when it is made and
** compares it on each operation: a difference means that the pool is a
** copy in a forked child (proc.c and threadexec.c say what they do
** then). A load, not getpid(), which is a system call: submit checks it
** per task. conc__forks_watch installs the handler (once; again after
** the module is reloaded: glibc drops a library's handlers at dlclose). */
CONC__FUNC void conc__forks_watch(void);
CONC__DATA unsigned long conc__nforks;
#define conc__forks() __atomic_load_n(&conc__nforks, __ATOMIC_RELAXED)

/* future.c: the one callback of the pool that runs a future's task,
** conc__pool_done(f, task), kept in the future itself (no allocation):
** as conc_future_add_callback, but it runs before the others and needs
** no memory: 0, or CONC_ESTATE (nothing done) when the future has a hook
** already, another task's. */
CONC__FUNC int conc__future_hook(conc_future_t *f, void *task);
/* ... and on a future only its maker's thread sees yet, without the
** lock: conc__pool_submitnew, which submits such a future's task. */
CONC__FUNC void conc__future_hooknew(conc_future_t *f, void *task);
CONC__FUNC int conc__pool_submitnew(conc_pool_t *p, conc_task_t *t);
CONC__FUNC void conc__pool_done(conc_future_t *f, void *task);
/* ... and, with the future's lock held, as a future ends (FINISHED,
** or CANCELLED while RUNNING) before it is seen done: the pool counts
** the outcome of the task the calling worker runs. */
CONC__FUNC void conc__pool_ended(conc_future_t *f, conc_state_t s,
                                 int failed);

/*
** future.c: running cancels. An executor marks a future it can stop at
** submit ('stoppable'); when its task starts, 'begin' registers how to
** stop it ('stopper', run at once if a stop was asked already); once
** the task unwound, 'end' says whether a stop was asked (from then on
** none can be): if so, 'stopped' ends it CANCELLED (RUNNING ->
** CANCELLED), else the executor completes it as usual. So a cancel that
** races the task's own end gives exactly one outcome.
*/
CONC__FUNC void conc__future_stoppable(conc_future_t *f);
CONC__FUNC void conc__future_begin(conc_future_t *f,
                                   void (*stopper)(void *arg), void *arg);
CONC__FUNC int conc__future_end(conc_future_t *f);
CONC__FUNC void conc__future_stopped(conc_future_t *f);

/* timer.c: deadlines on a heap (an executor's task time limits, a
** child's), fired by one thread that runs while nodes are in the heap.
** 'fire' runs on the timer's thread without the lock, but once
** conc__tasktimer_remove returned it neither runs nor will (unless called
** from a 'fire'). */
typedef struct conc__tnode {
  double deadline;
  double period;                            /* > 0: fires again after */
  int at;                                   /* heap index, -1: none */
  void (*fire)(struct conc__tnode *n);
} conc__tnode;
typedef struct conc__tasktimer {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_cond_t fired;     /* 'firing' is done */
  conc__tnode **heap;
  int n, size;
  int started;              /* 'tid' is to be joined */
  int running;              /* 'tid' serves the heap */
  int quit;
  conc__tnode *firing;      /* the node whose 'fire' runs now */
  pthread_t tid;
} conc__tasktimer;
CONC__FUNC int conc__tasktimer_init(conc__tasktimer *t);
CONC__FUNC void conc__tasktimer_free(conc__tasktimer *t);
/* 0, or CONC_ENOMEM / CONC_ESYS (no thread) */
CONC__FUNC int conc__tasktimer_add(conc__tasktimer *t, conc__tnode *n,
                               double deadline);
CONC__FUNC void conc__tasktimer_remove(conc__tasktimer *t, conc__tnode *n);
/* 'n' fires every 'period' seconds from now until removed (unless in
** the heap already): 0, or as conc__tasktimer_add. */
CONC__FUNC int conc__tasktimer_every(conc__tasktimer *t, conc__tnode *n,
                                     double period);

/* timer.c: how often a running task's stop is asked again until the
** task ends. lua_sethook from another thread (how a stop reaches a
** running Lua task) can be undone by the state's own thread turning its
** traps off at the same instant; asked again, it holds. */
#define CONC__STOP_AGAIN 0.01

/* timer.c: a running task's stop, for the back-ends that run tasks
** (threadexec.c, child.c). Whichever of a running cancel and the task's
** time limit comes first sets 'ctl.stop' and interrupts the runtime;
** 'again', on 'timer', then asks again every CONC__STOP_AGAIN until
** conc__taskstop_end. Init leaves 'watch' NULL. */
typedef struct conc__taskstop {
  conc_taskctl_t ctl;                /* the running task's controls */
  conc__tasktimer *timer;
  conc__tnode again;                 /* in 'timer' once a stop was asked */
  void (*interrupt)(void *ctx);      /* the runtime's */
  void *ctx;
  /* NULL, or the back-end's look at the stopped task before each
  ** 'again' (on the timer's thread): child.c's ends a stuck one. */
  void (*watch)(struct conc__taskstop *s);
} conc__taskstop;
CONC__FUNC void conc__taskstop_init(conc__taskstop *s, conc__tasktimer *t,
                                    void (*interrupt)(void *ctx),
                                    void *ctx);
/* Ask the task to stop for 'why', unless it was asked already. */
CONC__FUNC void conc__taskstop_ask(conc__taskstop *s, int why);
/* The task ended and no stopper can run any more: 'again' is let go
** (a task no one stopped skips the timer's lock). */
CONC__FUNC void conc__taskstop_end(conc__taskstop *s);
/* Run 'task' through 'rt' (whose context is the stop's) with the stop's
** controls and, when 'ctl.timeout' > 0, its time limit: 'limit' (its
** 'fire' set, asking the stop with CONC_STOP_TIMEOUT) on the stop's
** timer until the run returns. The outcome, as 'rt->run' gives it. */
CONC__FUNC conc_payload_t *conc__taskstop_run(conc__taskstop *s,
                                              conc__tnode *limit,
                                              const conc_runtime_t *rt,
                                              conc_payload_t *task,
                                              int *failed);

/* pool.c: whether the pool broke (a worker could not start), without
** its lock. */
CONC__FUNC int conc__pool_broken(conc_pool_t *p);
/* pool.c: the 'ud' of the pool a task was submitted to (from 'run' or
** 'drop'), so a task need not hold it. */
CONC__FUNC void *conc__task_ud(const conc_task_t *t);
/* payload.c: in a forked child, before anything else runs: the locks of
** conc_payload_finish and of the block cache, which a parent's thread
** may have held. */
CONC__FUNC void conc__payload_forked(void);
/* payload.c: a thread pool starts (+1) or ends (-1) using the cache of
** big payload blocks; the last one to end frees it. */
CONC__FUNC void conc__payload_cacheuse(int delta);

/* payload.c: the bytes a payload of 'len' bytes and 'nfutures' list
** entries takes (a multiple of the pointer size; 0: too large), and such
** a payload made at 'at' (that many bytes, pointer-aligned) inside its
** future's block (an executor's 'newtask'). */
CONC__FUNC size_t conc__payload_room(size_t len, size_t nfutures);
CONC__FUNC conc_payload_t *conc__payload_place(void *at, size_t len,
                                               size_t nfutures);
/* payload.c: 'p' (taken) moved to 'at' (pointer-aligned, 'room' bytes:
** a released payload's room in its future's block) when it fits there,
** its list with it; else 'p' itself (NULL, an outcome that could not be
** made, stays NULL). */
CONC__FUNC conc_payload_t *conc__payload_move(conc_payload_t *p, void *at,
                                              size_t room);

/* future.c: a future followed by 'room' bytes of its block (pointer-
** aligned, not zeroed), which go with it: NULL when out of memory.
** 'stoppable': made so, as conc__future_stoppable would (without its
** lock: no one else sees the future yet). */
CONC__FUNC conc_future_t *conc__future_new_room(size_t room,
                                                int stoppable);
CONC__FUNC void *conc__future_room(conc_future_t *f);
/* future.c: a thread pool starts (+1) or ends (-1) using the slabs of
** task blocks (an empty one is kept while any does); in a forked child,
** before anything else runs, the parent's slabs are left alone. */
CONC__FUNC void conc__future_blockuse(int delta);
CONC__FUNC void conc__future_forked(void);

/* payload.c: complete 'f' with a task's outcome 'p' (taken, even when
** 'f' is done); an outcome that holds 'f' fails it instead (a cycle). */
CONC__FUNC void conc__payload_complete(conc_future_t *f, conc_payload_t *p,
                                       int failed);

/* future.c: proxies of another process's futures (proc.c), which only
** the process pool completes: users of this process cannot set them. */
CONC__FUNC conc_future_t *conc__future_new_foreign(void);
/* child.c: the forwarded id (proc.h) of the future of the task the
** calling thread runs in a process pool's child, or 0. */
CONC__FUNC uint64_t conc__child_running(void);
/* Name proxy 'f' by its forwarded id, before anyone else sees it. */
CONC__FUNC void conc__future_tag_foreign(conc_future_t *f, uint64_t id);
/* Whether another reference than the caller's one is held: when not,
** none can appear but from the caller's (a reference is taken only from
** another one). */
CONC__FUNC int conc__future_held(conc_future_t *f);
/* The argument of 'f's stopper when it is 'stopper' (its task runs), or
** NULL. */
CONC__FUNC void *conc__future_stopperarg(conc_future_t *f,
                                         void (*stopper)(void *arg));
CONC__FUNC void conc__future_settle_foreign(conc_future_t *f, int cancelled,
                                            void *data, size_t len,
                                            conc_free_fn freefn, int failed);

/* chanq.c: proxies of another process's queues (child.c). A proxy is a
** conc_chanq_t whose operations all go to its 'remote'; only its wake
** lists stay here, which the remote fills and fires. 'release' runs
** when the last reference went, and calls conc__chanq_free. */
typedef struct conc__qremote {
  int (*tryput)(conc_chanq_t *q, void *data, size_t len,
                conc_free_fn freefn, conc_future_t *wake);
  int (*tryget)(conc_chanq_t *q, void **data, size_t *len,
                conc_free_fn *freefn, conc_future_t *wake);
  int (*unget)(conc_chanq_t *q, void *data, size_t len,
               conc_free_fn freefn);
  void (*close)(conc_chanq_t *q);
  /* its length, maxsize (when 'max' is not NULL) and closed flag: 0 or
  ** a negative code */
  int (*info)(conc_chanq_t *q, size_t *len, size_t *max, int *closed);
  void (*release)(conc_chanq_t *q);
} conc__qremote;
CONC__FUNC conc_chanq_t *conc__chanq_newremote(const conc__qremote *remote,
                                               void *ctx);
CONC__FUNC void *conc__chanq_remotectx(conc_chanq_t *q);  /* NULL: local */
CONC__FUNC int conc__chanq_tryref(conc_chanq_t *q);
CONC__FUNC void conc__chanq_free(conc_chanq_t *q);
/* Call 'fn(ud, data, freefn)' on each item, first to last, under the
** queue's lock ('fn' must not call into the queue); stops at a nonzero
** return of 'fn' and returns it, else 0. A proxy has no items here. */
CONC__FUNC int conc__chanq_each(conc_chanq_t *q,
                                int (*fn)(void *ud, void *data,
                                          conc_free_fn freefn),
                                void *ud);
/* Cancel 'wake' at the queue's next change of that kind (0, or
** CONC_ENOMEM); fire those of a kind now. */
CONC__FUNC int conc__chanq_addwake(conc_chanq_t *q, int getters,
                                   conc_future_t *wake);
CONC__FUNC void conc__chanq_wakeup(conc_chanq_t *q, int getters);
/* conc_chanq_tryget that takes the first item only if 'takes' accepts
** it (0); else that code, and the item stays first. A proxy's item is
** taken unseen (it came in a frame: it fits in another of its kind). */
CONC__FUNC int conc__chanq_trygetif(conc_chanq_t *q, int (*takes)(
    const void *data, size_t len, conc_free_fn freefn), void **data,
    size_t *len, conc_free_fn *freefn, conc_future_t *wake);

/* A node in a future's watcher list. 'fire' runs once the future is
** settled, with the future's lock held (lock order: future, then
** anything 'fire' takes); 'drop' when a future that never completed is
** freed (NULL for nodes whose owner keeps the future alive). */
typedef struct conc__wnode {
  conc__queue q;
  void (*fire)(struct conc__wnode *n);
  void (*drop)(struct conc__wnode *n);
} conc__wnode;

/* future.c: link 'n' to the future's watchers: 1, or 0 if the future is
** settled already, or done with its C callbacks running on the calling
** thread (then it is not linked, but self-linked as a fired node, and
** the caller treats it as fired: it would fire only once they
** returned). Unlinking an unlinked node is harmless; unwatch returns
** whether 'n' was linked (1), or fired (0). */
CONC__FUNC int conc__future_watch(conc_future_t *f, conc__wnode *n);
CONC__FUNC int conc__future_unwatch(conc_future_t *f, conc__wnode *n);

#endif
