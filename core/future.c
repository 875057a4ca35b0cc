/*
** future.c: the refcounted future. PENDING -> RUNNING -> FINISHED, or
** PENDING -> CANCELLED; a lock per future.
*/
#include <linux/futex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "frame.h"  /* CONC__FRAME_MAXTEXT */
#include "internal.h"

/* A C callback: a watcher whose 'fire' is NULL, run outside the lock
** by settle. */
typedef struct callback {
  conc__wnode n;
  conc_callback_fn fn;
  void *arg;
} callback;

/*
** Every pending task of a pool holds a future, so it is kept small (48
** bytes): no condition variable (the rare conc_future_wait brings its
** own, in a 'sleeper' watcher); its lock an int (below), not a 40-byte
** pthread_mutex_t; one list for watchers and C callbacks, headed by one
** pointer; and what only a future that runs needs shares its room with
** what only a finished one needs. A proxy of another process's future
** carries its forwarded id after the struct.
*/
struct conc_future {
  int kind;               /* CONC_SHARED_FUTURE: first, as every object
                          ** a payload refers to (payload.c) */
  int refs;               /* atomic */
  int mu;                 /* the lock: lock() and unlock() */
  unsigned char state;    /* conc_state_t, written under 'mu' with
                          ** set_state; read without it by
                          ** conc_future_state */
  unsigned char failed;   /* payload is an exception */
  unsigned char foreign;  /* a proxy of another process's future: only
                          ** conc__future_settle_foreign completes it;
                          ** set before anyone else sees the future */
  unsigned char settled:1;  /* done and every C callback returned */
  /* running cancels (conc__future_stoppable onwards), under 'mu' */
  unsigned char stoppable:1;  /* its executor can stop its task */
  unsigned char stopreq:1;  /* a running cancel was asked: ends CANCELLED */
  unsigned char ended:1;  /* the task unwound: too late to stop it */
  unsigned char inslab:1;  /* its block is a slab's (below): set when
                           ** made, read at the last reference only */
  union {
    struct {              /* until it is done: */
      void (*stopper)(void *arg);  /* asks the executor to stop the task
                                   ** (only while RUNNING) */
      void *stopperarg;
      void *hookarg;      /* the owning pool's task (conc__future_hook),
                          ** or NULL */
    } run;
    struct {              /* once FINISHED (set_state orders it): */
      void *data;
      size_t len;
      conc_free_fn freefn;
    } out;
  } u;
  conc__wnode *watchers;  /* first node of a ring, or NULL: conc__wnode
                          ** nodes (fired when settled) and callbacks */
};

#define TAG(f) ((uint64_t *)(void *)((f) + 1))  /* a proxy's id */

/*
** The lock: 0 free, 1 held, 2 held and maybe waited for; a waiter
** sleeps on the int as a (process-private) futex. This is the third
** mutex of Drepper's "Futexes Are Tricky": without contention a lock
** and an unlock are one atomic operation each. Critical sections are
** short and never wait on anything, so it does not spin.
*/
static void lock(int *l) {
  int c = 0;
  if (__atomic_compare_exchange_n(l, &c, 1, 0, __ATOMIC_ACQUIRE,
                                  __ATOMIC_RELAXED))
    return;
  if (c != 2)
    c = __atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE);
  while (c != 0) {
    syscall(SYS_futex, l, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    c = __atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE);
  }
}

static void unlock(int *l) {
  if (__atomic_exchange_n(l, 0, __ATOMIC_RELEASE) == 2)
    syscall(SYS_futex, l, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* The watcher list (lock held): a ring of nodes without a sentinel, so
** its head is one pointer; a node out of the ring is self-linked. */
static void link_tail(conc_future_t *f, conc__wnode *n) {
  if (f->watchers == NULL) {
    conc__queue_init(&n->q);
    f->watchers = n;
  } else {
    conc__queue_insert_tail(&f->watchers->q, &n->q);
  }
}

/* Harmless when 'n' is not linked. */
static void unlink_node(conc_future_t *f, conc__wnode *n) {
  if (f->watchers == n)
    f->watchers = n->q.next == &n->q ? NULL
                  : conc__container_of(n->q.next, conc__wnode, q);
  conc__queue_remove(&n->q);
}

/* Unlink and return the first node, or NULL. */
static conc__wnode *pop_first(conc_future_t *f) {
  conc__wnode *n = f->watchers;
  if (n != NULL)
    unlink_node(f, n);
  return n;
}


const char *conc_strerror(int code) {
  switch (code) {
    case 0: return "success";
    case CONC_EINVAL: return "invalid argument";
    case CONC_ESTATE: return "invalid state";
    case CONC_ETIMEDOUT: return "timed out";
    case CONC_ENOMEM: return "not enough memory";
    case CONC_ESHUTDOWN: return "cannot schedule new futures after shutdown";
    case CONC_EBROKEN: return "the pool is broken";
    case CONC_ESYS: return "system call failed";
    case CONC_ECLOSED: return "mailbox closed";
    case CONC_E2BIG:
      return "too large for a worker process, " CONC__FRAME_MAXTEXT " at most";
    case CONC_ECYCLE: return "a value cannot hold the queue it goes into";
    default: return "unknown error";
  }
}


/* {======================================================================
** Task blocks
** ======================================================================= */

/*
** A thread pool's task lives in its future's block (future, task and
** payload: 152 bytes for x -> x+1), made at submit and freed at the last
** reference, one per task. At that size glibc serves it from neither
** its fast bins nor, once a collection frees thousands at a time, its
** thread cache: malloc and free cost some 335 instructions a task. So
** blocks of up to SLOT bytes are carved from slabs of SLAB bytes,
** aligned to their size so that a block finds its slab by masking its
** address: taking or giving one back is a lock, a pop or push and a
** count. The slabs are cut from chunks that mmap gives: page aligned,
** so the slabs inside are aligned with nothing lost (posix_memalign
** left a fragment beside each slab that the process never filled), and
** a page past the slabs cut so far is no memory yet. A chunk's header
** sits in its first slab, in the room the slots leave. An empty slab
** goes back to its chunk, and a chunk with none in use goes back to the
** system, but for one empty slab kept while a thread pool exists, so
** that a loop whose blocks all go and come does not make a slab each
** time. A kept future keeps its slab (4 KiB, 26 blocks) and its chunk
** mapped. Chunks are big so that even millions of pending tasks take a
** few thousand mappings at most (mmap failing, blocks are malloc's).
** Under AddressSanitizer every block is malloc's, so that LeakSanitizer
** names a leaked future and a use after free is caught. Under valgrind
** chunks are malloc's: memcheck scans mapped memory for pointers, and a
** leaked future in a mapped chunk points at itself (its task does); a
** leak in a chunk of malloc is reported as the chunk's. The fault
** sweep's build (CONC_FAULTS, ASan too) keeps the slabs, so that a
** chunk's mmap can fail there: its free slots are poisoned, and a chunk
** still mapped when the module unloads (every thread pool gone) is a
** leaked block, which LeakSanitizer cannot see in mapped memory.
*/
#if !defined(CONC__ASAN) || defined(CONC_FAULTS)
#include <sys/mman.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#if !defined(RUNNING_ON_VALGRIND)
#define RUNNING_ON_VALGRIND 0
#endif

#define SLAB 4096
#define SLOT 152
#define CHUNK (64 * SLAB)

typedef struct chunk chunk;

typedef struct slab {
  struct slab *next, *prev;  /* in 'partial' while it has a free slot;
                             ** empty in its chunk, 'next' links them */
  void *free;                /* first free slot, which links the next */
  chunk *home;               /* the chunk it was cut from */
  int used;                  /* slots taken */
  unsigned gen;              /* 'gen' when cut: another process's if
                             ** not the current one (after a fork) */
} slab;

/* In its first slab, after that slab's header. */
struct chunk {
  chunk *next, *prev;  /* in 'open' while it has a slab to give */
  slab *empty;         /* its empty slabs */
  int cut;             /* slabs cut so far */
  int inuse;           /* slabs out of it, 'spare' included */
  int mapped;          /* mmap's, else malloc's (under valgrind) */
};

#define HDR ((sizeof(slab) + 7) & ~(size_t)7)
/* Every slab leaves room for a chunk header: only the first holds one. */
#define NSLOTS ((int)((SLAB - HDR - sizeof(chunk)) / SLOT))
#define NSLABS (CHUNK / SLAB)

static int slotfits(size_t room) {
  return room <= SLOT - sizeof(conc_future_t);
}

static int slabmu;               /* the lock of what follows */
static slab *partial;            /* slabs with free slots (a ring) */
static slab *spare;              /* an empty slab kept, or NULL */
static chunk *open;              /* chunks with a slab to give (a list) */
static int slabusers;            /* thread pools alive */
static unsigned gen;             /* forks of this process's line */

#if defined(CONC_FAULTS)
#include <stdio.h>

static int nchunks;              /* chunks held (lock held) */
#define counted(d) (nchunks += (d))

/* The module unloads once every state that opened it closed, so every
** thread pool and future is gone: a chunk still held holds a block that
** was never given back. (A forked worker never unloads it.) */
__attribute__((destructor)) static void leakcheck(void) {
  if (nchunks == 0)
    return;
  fprintf(stderr, "leak: %d chunks of task blocks still held\n", nchunks);
  abort();
}
#else
#define counted(d) ((void)0)
#endif

static void ring_add(slab *s) {
  if (partial == NULL)
    s->next = s->prev = s;
  else {
    s->next = partial;
    s->prev = partial->prev;
    partial->prev->next = s;
    partial->prev = s;
  }
  partial = s;
}

static void ring_remove(slab *s) {
  if (s->next == s)
    partial = NULL;
  else {
    s->prev->next = s->next;
    s->next->prev = s->prev;
    if (partial == s)
      partial = s->next;
  }
}

static void open_add(chunk *c) {
  c->prev = NULL;
  c->next = open;
  if (open != NULL)
    open->prev = c;
  open = c;
}

static void open_remove(chunk *c) {
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    open = c->next;
  if (c->next != NULL)
    c->next->prev = c->prev;
}

static int chunk_full(const chunk *c) {
  return c->empty == NULL && c->cut == NSLABS;
}

/* A new chunk, in 'open' (lock held), or NULL. */
static chunk *chunk_new(void) {
  void *m = NULL;
  int mapped = !RUNNING_ON_VALGRIND;
  chunk *c;
  if (mapped) {
    m = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
      return NULL;
  } else if (posix_memalign(&m, SLAB, CHUNK) != 0)
    return NULL;
  counted(1);
  c = (chunk *)((char *)m + HDR);
  c->mapped = mapped;
  c->empty = NULL;
  c->cut = 0;
  c->inuse = 0;
  open_add(c);
  return c;
}

/* The next slab place of 'c', with every slot free. */
static slab *slab_cut(chunk *c) {
  slab *s = (slab *)((char *)c - HDR + (size_t)c->cut++ * SLAB);
  char *at = (char *)s + SLAB;
  int i;
  s->home = c;
  s->gen = gen;
  s->free = NULL;
  for (i = 0; i < NSLOTS; i++) {  /* the lowest address first */
    at -= SLOT;
    *(void **)at = s->free;
    s->free = at;
    conc__poison(at, SLOT);
  }
  s->used = 0;
  return s;
}

/* An empty slab, in 'partial' (lock held), or NULL. */
static slab *slab_new(void) {
  slab *s = spare;
  chunk *c;
  if (s != NULL)
    spare = NULL;
  else {
    c = open != NULL ? open : chunk_new();
    if (c == NULL)
      return NULL;
    if (c->empty != NULL) {  /* its slots all free, as they were left */
      s = c->empty;
      c->empty = s->next;
    } else
      s = slab_cut(c);
    if (chunk_full(c))
      open_remove(c);
    c->inuse++;
  }
  ring_add(s);
  return s;
}

/* An empty slab back to its chunk (lock held); the chunk, out of every
** list, when it has no slab out any more (to unmap), else NULL. */
static chunk *slab_drop(slab *s) {
  chunk *c = s->home;
  if (chunk_full(c))
    open_add(c);
  s->next = c->empty;
  c->empty = s;
  if (--c->inuse > 0)
    return NULL;
  open_remove(c);
  counted(-1);
  return c;
}

static void chunk_free(chunk *c) {
  if (c == NULL)
    return;
  conc__unpoison((char *)c - HDR, CHUNK);
  if (c->mapped)
    munmap((char *)c - HDR, CHUNK);
  else
    free((char *)c - HDR);
}

/* A block of SLOT bytes, or NULL. */
static void *slot_take(void) {
  slab *s;
  void *b = NULL;
  lock(&slabmu);
  s = partial != NULL ? partial : slab_new();
  if (s != NULL) {
    b = s->free;
    conc__unpoison(b, SLOT);
    s->free = *(void **)b;
    if (++s->used == NSLOTS)
      ring_remove(s);
  }
  unlock(&slabmu);
  return b;
}

/* Give back a block of slot_take. A slab of the process this one forked
** from is left as it is: its state may have been half changed. */
static void slot_give(void *b) {
  slab *s = (slab *)((uintptr_t)b & ~(uintptr_t)(SLAB - 1));
  chunk *gone = NULL;
  if (s->gen != gen)
    return;
  lock(&slabmu);
  *(void **)b = s->free;
  s->free = b;
  conc__poison(b, SLOT);
  if (s->used-- == NSLOTS)
    ring_add(s);
  if (s->used == 0) {
    ring_remove(s);
    if (spare == NULL && slabusers > 0)
      spare = s;
    else
      gone = slab_drop(s);
  }
  unlock(&slabmu);
  chunk_free(gone);
}

void conc__future_blockuse(int delta) {
  chunk *gone = NULL;
  lock(&slabmu);
  slabusers += delta;
  if (slabusers == 0 && spare != NULL) {
    gone = slab_drop(spare);
    spare = NULL;
  }
  unlock(&slabmu);
  chunk_free(gone);
}

/* In a forked child: the parent's slabs and chunks are left alone. */
void conc__future_forked(void) {
  slabmu = 0;
  partial = spare = NULL;
  open = NULL;
  slabusers = 0;
  gen++;
}
#else
static int slotfits(size_t room) { (void)room; return 0; }
static void *slot_take(void) { return NULL; }
static void slot_give(void *b) { (void)b; }
void conc__future_blockuse(int delta) { (void)delta; }
void conc__future_forked(void) {}
#endif

/* }====================================================================== */


/* Fill the header of a future's block. */
static conc_future_t *init_future(void *block) {
  conc_future_t *f = (conc_future_t *)block;
  memset(f, 0, sizeof(*f));
  f->kind = CONC_SHARED_FUTURE;
  f->refs = 1;
  f->state = CONC_PENDING;
  return f;
}

/* A future followed by 'extra' bytes in the same block, which its
** maker fills (zeroing them would cost every task's submit). */
static conc_future_t *alloc_future(size_t extra) {
  void *b = malloc(sizeof(conc_future_t) + extra);
  return b != NULL ? init_future(b) : NULL;
}

conc_future_t *conc_future_new(void) {
  return alloc_future(0);
}

conc_future_t *conc__future_new_room(size_t room, int stoppable) {
  conc_future_t *f = NULL;
  void *b;
  if (slotfits(room) && (b = slot_take()) != NULL) {
    f = init_future(b);
    f->inslab = 1;
  } else if (room <= SIZE_MAX - sizeof(*f))
    f = alloc_future(room);
  if (f != NULL)
    f->stoppable = stoppable != 0;
  return f;
}

void *conc__future_room(conc_future_t *f) {
  return f + 1;
}

void conc_future_ref(conc_future_t *f) {
  int r;
  if (f == NULL)
    return;
  r = __atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
  conc_assert(r > 1);  /* a reference is taken only from another one */
  (void)r;
}

/* The last reference: a future that never completed may still hold
** callbacks (never to run) and mailbox posts (dropped). */
void conc_future_unref(conc_future_t *f) {
  conc__wnode *n;
  int r;
  if (f == NULL)
    return;
  r = __atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL);
  conc_assert(r >= 0);
  if (r != 0)
    return;
  while ((n = pop_first(f)) != NULL) {
    conc_assert(n->drop != NULL);
    n->drop(n);
  }
  if (f->state == CONC_FINISHED && f->u.out.freefn != NULL)
    f->u.out.freefn(f->u.out.data);
  if (f->inslab)
    slot_give(f);
  else
    free(f);
}

/* The payload is written before the state (release), so a reader that
** sees FINISHED (acquire) sees the payload too, which never changes
** again: reading either needs no lock. */
static void set_state(conc_future_t *f, conc_state_t s) {
  conc_assert(f->state == CONC_PENDING || f->state == CONC_RUNNING);
  __atomic_store_n(&f->state, (unsigned char)s, __ATOMIC_RELEASE);
}

conc_state_t conc_future_state(conc_future_t *f) {
  return (conc_state_t)__atomic_load_n(&f->state, __ATOMIC_ACQUIRE);
}

int conc_future_done(conc_future_t *f) {
  conc_state_t s = conc_future_state(f);
  return s == CONC_FINISHED || s == CONC_CANCELLED;
}

int conc_future_set_running_or_notify_cancel(conc_future_t *f) {
  int r;
  if (f == NULL)
    return CONC_EINVAL;
  lock(&f->mu);
  switch (f->state) {
    case CONC_PENDING: set_state(f, CONC_RUNNING); r = 1; break;
    case CONC_CANCELLED: r = 0; break;
    default: r = CONC_ESTATE; break;
  }
  unlock(&f->mu);
  return r;
}


/*
** The futures whose C callbacks the calling thread is running, the
** innermost first (a callback may complete another future): a chain of
** frames on that thread's stack. Such a future is done but not yet
** settled, and it settles only once this thread's callbacks returned,
** so a wait on it here (conc_future_wait, a watch) would wait for
** itself: it counts as settled instead (settled_here).
** initial-exec: reserved when the library loads, as pool.c's 'cur'.
*/
typedef struct running_cbs {
  conc_future_t *f;
  struct running_cbs *outer;
} running_cbs;

static __thread running_cbs *cbs_top
    __attribute__((tls_model("initial-exec")));

/* Lock held: whether a wait on 'f' by this thread is over. */
static int settled_here(conc_future_t *f) {
  running_cbs *r;
  if (f->settled)
    return 1;
  for (r = cbs_top; r != NULL; r = r->outer)
    if (r->f == f)
      return 1;
  return 0;
}

/*
** Completion, in three steps so that waiters never see a half-done
** future: (1) under the lock, the state and payload change and the
** callbacks are taken off the list; (2) the pool's hook of a cancelled
** future ('hookarg') and the C callbacks run outside the lock, so they
** may call back into this future; (3) under the lock again, the future
** is 'settled' and its watchers fire (waking its waiters). Lock order:
** future, then whatever a watcher takes (a mailbox's lock). A task's
** usual end has neither, so the lock is held once instead of twice.
** While the hook and the callbacks run, settle holds a reference of its
** own: a callback may release the last one its caller had (its owner
** letting go of the future once it is done), and step (3) still needs
** the future.
*/
static void settle(conc_future_t *f, void *hookarg) {
  conc__queue cbs;
  conc__wnode *n = f->watchers, *next;
  running_cbs me;
  int held = 0;
  conc__queue_init(&cbs);
  while (n != NULL) {  /* from the first: in registration order */
    next = n->q.next == &f->watchers->q ? NULL
           : conc__container_of(n->q.next, conc__wnode, q);
    if (n->fire == NULL) {
      unlink_node(f, n);
      conc__queue_insert_tail(&cbs, &n->q);
    }
    n = next;
  }
  if (!conc__queue_empty(&cbs) || hookarg != NULL) {
    held = 1;
    conc_future_ref(f);
    unlock(&f->mu);
    me.f = f;
    me.outer = cbs_top;
    cbs_top = &me;
    if (hookarg != NULL)
      conc__pool_done(f, hookarg);
    while (!conc__queue_empty(&cbs)) {
      callback *cb = conc__container_of(conc__queue_head(&cbs), callback,
                                        n.q);
      conc__queue_remove(&cb->n.q);
      cb->fn(f, cb->arg);
      free(cb);
    }
    cbs_top = me.outer;
    lock(&f->mu);
  }
  f->settled = 1;
  while ((n = pop_first(f)) != NULL)
    n->fire(n);
  unlock(&f->mu);
  if (held)
    conc_future_unref(f);
}

/* Set the payload (lock held, RUNNING or PENDING), in the room that
** was the running future's: a pool's task is counted first, while its
** hook is still there to tell (conc__pool_ended), and the hook has
** nothing left to do for a task that ran. Then settle. */
static void complete(conc_future_t *f, void *data, size_t len,
                     conc_free_fn freefn, int failed) {
  if (f->u.run.hookarg != NULL)
    conc__pool_ended(f, CONC_FINISHED, failed);
  f->failed = (unsigned char)(failed != 0);
  f->u.out.data = data;
  f->u.out.len = len;
  f->u.out.freefn = freefn;
  set_state(f, CONC_FINISHED);
  settle(f, NULL);  /* unlocks */
}

/* Cancel (lock held, RUNNING or PENDING), then settle: a running
** task's worker stopped it, and counts it first (conc__pool_ended). */
static void cancel_now(conc_future_t *f) {
  if (f->state == CONC_RUNNING && f->u.run.hookarg != NULL)
    conc__pool_ended(f, CONC_CANCELLED, 0);
  set_state(f, CONC_CANCELLED);
  settle(f, f->u.run.hookarg);  /* unlocks */
}

static int finish(conc_future_t *f, void *data, size_t len,
                  conc_free_fn freefn, int failed) {
  if (f == NULL)
    return CONC_EINVAL;
  lock(&f->mu);
  if (f->state == CONC_FINISHED || f->state == CONC_CANCELLED
      || f->foreign) {
    unlock(&f->mu);
    return CONC_ESTATE;
  }
  complete(f, data, len, freefn, failed);
  return 0;
}

int conc_future_set_result(conc_future_t *f, void *data, size_t len,
                           conc_free_fn freefn) {
  return finish(f, data, len, freefn, 0);
}

int conc_future_set_exception(conc_future_t *f, void *data, size_t len,
                              conc_free_fn freefn) {
  return finish(f, data, len, freefn, 1);
}

int conc_future_cancel(conc_future_t *f) {
  if (f == NULL)
    return CONC_EINVAL;
  lock(&f->mu);
  switch (f->state) {
    case CONC_PENDING:
      cancel_now(f);
      return 1;
    case CONC_CANCELLED:
      unlock(&f->mu);
      return 1;
    default:
      unlock(&f->mu);
      return 0;
  }
}

/* The stopper runs under the future's lock, so once conc__future_end
** returned no stopper runs or will run: the executor may free what the
** stopper touches. Lock order: future, then what the stopper takes. */
int conc_future_cancel_running(conc_future_t *f) {
  if (f == NULL)
    return CONC_EINVAL;
  lock(&f->mu);
  if (f->state == CONC_RUNNING && f->stoppable && !f->ended) {
    if (!f->stopreq) {
      f->stopreq = 1;
      if (f->u.run.stopper != NULL)
        f->u.run.stopper(f->u.run.stopperarg);
    }
    unlock(&f->mu);
    return 1;
  }
  unlock(&f->mu);
  return conc_future_cancel(f);
}

int conc_future_set_stopper(conc_future_t *f, void (*stopper)(void *arg),
                            void *arg) {
  if (f == NULL)
    return CONC_EINVAL;
  lock(&f->mu);
  if (f->state != CONC_RUNNING || f->ended) {
    unlock(&f->mu);
    return CONC_ESTATE;
  }
  f->stoppable = 1;
  f->u.run.stopper = stopper;
  f->u.run.stopperarg = arg;
  unlock(&f->mu);
  return 0;
}

int conc_future_stop_end(conc_future_t *f) {
  if (f == NULL)
    return CONC_EINVAL;
  if (!conc__future_end(f))
    return 0;
  conc__future_stopped(f);
  return 1;
}

void conc__future_stoppable(conc_future_t *f) {
  lock(&f->mu);
  f->stoppable = 1;
  unlock(&f->mu);
}

/* The stopper's room is the payload's once the future finished (someone
** else may complete a running future): it is read and written only
** while the future is RUNNING. */
void conc__future_begin(conc_future_t *f, void (*stopper)(void *arg),
                        void *arg) {
  lock(&f->mu);
  if (f->state == CONC_RUNNING) {
    f->u.run.stopper = stopper;
    f->u.run.stopperarg = arg;
    if (f->stopreq && !f->ended)
      stopper(arg);
  }
  unlock(&f->mu);
}

void *conc__future_stopperarg(conc_future_t *f,
                              void (*stopper)(void *arg)) {
  void *arg = NULL;
  lock(&f->mu);
  if (f->state == CONC_RUNNING && f->u.run.stopper == stopper)
    arg = f->u.run.stopperarg;
  unlock(&f->mu);
  return arg;
}

int conc__future_end(conc_future_t *f) {
  int r;
  lock(&f->mu);
  f->ended = 1;
  if (f->state == CONC_RUNNING)
    f->u.run.stopper = NULL;
  r = f->stopreq;
  unlock(&f->mu);
  return r;
}

void conc__future_stopped(conc_future_t *f) {
  lock(&f->mu);
  if (f->state != CONC_RUNNING) {
    unlock(&f->mu);
    return;
  }
  cancel_now(f);
}

/* A thread blocked in conc_future_wait: a watcher on its own stack,
** with its own mutex for its condition variable ('fired' is written
** under both that mutex and the future's lock). */
typedef struct sleeper {
  conc__wnode n;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int fired;
} sleeper;

static void sleeper_fire(conc__wnode *n) {
  sleeper *s = conc__container_of(n, sleeper, n);
  pthread_mutex_lock(&s->mu);
  s->fired = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* Link a sleeper (lock held): 0, or CONC_ESYS with nothing made. */
static int sleeper_init(conc_future_t *f, sleeper *s) {
  if (pthread_mutex_init(&s->mu, NULL) != 0)
    return CONC_ESYS;
  if (conc__cond_init(&s->cv) != 0) {
    pthread_mutex_destroy(&s->mu);
    return CONC_ESYS;
  }
  s->fired = 0;
  s->n.fire = sleeper_fire;
  s->n.drop = NULL;  /* the caller holds a reference */
  link_tail(f, &s->n);
  return 0;
}

/* Once the sleeper is woken or its deadline passed, the future's lock
** tells: either 'fire' has returned (it runs under that lock, so the
** sleeper may go), or it never will (the sleeper is unlinked first). */
int conc_future_wait(conc_future_t *f, double deadline) {
  sleeper s;
  int r = 0, fired;
  if (f == NULL)
    return CONC_EINVAL;
  lock(&f->mu);
  if (settled_here(f)) {
    unlock(&f->mu);
    return 0;
  }
  r = sleeper_init(f, &s);
  unlock(&f->mu);
  if (r != 0)
    return r;
  pthread_mutex_lock(&s.mu);
  while (!s.fired && r == 0)
    r = conc__cond_wait(&s.cv, &s.mu, deadline);
  pthread_mutex_unlock(&s.mu);
  lock(&f->mu);
  fired = s.fired;
  if (!fired)
    unlink_node(f, &s.n);
  unlock(&f->mu);
  pthread_cond_destroy(&s.cv);
  pthread_mutex_destroy(&s.mu);
  return fired ? 0 : CONC_ETIMEDOUT;
}

int conc_future_payload(conc_future_t *f, const void **data, size_t *len,
                        int *failed) {
  if (f == NULL)
    return CONC_EINVAL;
  if (conc_future_state(f) != CONC_FINISHED)
    return CONC_ESTATE;
  if (data != NULL) *data = f->u.out.data;  /* each one is optional */
  if (len != NULL) *len = f->u.out.len;
  if (failed != NULL) *failed = f->failed;
  return 0;
}

/* A never-run callback goes with its future. */
static void callback_drop(conc__wnode *n) {
  free(conc__container_of(n, callback, n));
}

int conc_future_add_callback(conc_future_t *f, conc_callback_fn fn,
                             void *arg) {
  callback *cb;
  if (f == NULL || fn == NULL)  /* settle would call it */
    return CONC_EINVAL;
  lock(&f->mu);
  if (f->state == CONC_FINISHED || f->state == CONC_CANCELLED) {
    unlock(&f->mu);
    fn(f, arg);
    return 0;
  }
  cb = (callback *)malloc(sizeof(*cb));
  if (cb == NULL) {
    unlock(&f->mu);
    return CONC_ENOMEM;
  }
  cb->n.fire = NULL;  /* a callback, not a watcher (settle) */
  cb->n.drop = callback_drop;
  cb->fn = fn;
  cb->arg = arg;
  link_tail(f, &cb->n);
  unlock(&f->mu);
  return 0;
}


/* The pool's callback (conc__pool_done) in the future's own slot: no
** allocation. One per future, so a future that has one already (its
** task submitted, not done) refuses another: a second hook would have
** replaced the first, whose task a cancel then never dropped (and its
** pool never finished). At once if it is done already. */
int conc__future_hook(conc_future_t *f, void *task) {
  lock(&f->mu);
  if (f->state == CONC_FINISHED || f->state == CONC_CANCELLED) {
    unlock(&f->mu);
    conc__pool_done(f, task);
    return 0;
  }
  if (f->u.run.hookarg != NULL) {
    unlock(&f->mu);
    return CONC_ESTATE;
  }
  f->u.run.hookarg = task;
  unlock(&f->mu);
  return 0;
}

/* No thread but the caller's sees 'f' yet (its maker's): no lock. */
void conc__future_hooknew(conc_future_t *f, void *task) {
  conc_assert(f->state == CONC_PENDING && f->u.run.hookarg == NULL);
  f->u.run.hookarg = task;
}


/* A proxy stands for a future of the parent process in a forked worker
** (proc.c): RUNNING from the start, so no one here cancels it, and
** completed only with what the parent forwards. */
conc_future_t *conc__future_new_foreign(void) {
  conc_future_t *f = alloc_future(sizeof(uint64_t));
  if (f != NULL) {
    f->foreign = 1;
    f->state = CONC_RUNNING;
  }
  return f;
}

int conc__future_held(conc_future_t *f) {
  return __atomic_load_n(&f->refs, __ATOMIC_ACQUIRE) > 1;
}

void conc__future_tag_foreign(conc_future_t *f, uint64_t id) {
  *TAG(f) = id;
}

/* A task waiting on its own future waits forever: on a pool's worker
** thread, that future; in a forked child, the proxy of it (its tag
** names the running task). */
int conc_future_is_current(conc_future_t *f) {
  return f == conc_pool_current()
         || (f->foreign && *TAG(f) != 0 && *TAG(f) == conc__child_running());
}

/* Complete a proxy: FINISHED with the payload, or CANCELLED ('data' is
** then NULL). */
void conc__future_settle_foreign(conc_future_t *f, int cancelled,
                                 void *data, size_t len, conc_free_fn freefn,
                                 int failed) {
  lock(&f->mu);
  conc_assert(f->foreign && f->state == CONC_RUNNING);
  if (cancelled)
    cancel_now(f);
  else
    complete(f, data, len, freefn, failed);
}


/* {======================================================================
** Watchers (mailbox.c): nodes that fire under the future's lock once it
** is settled, and can be unlinked until then.
** ======================================================================= */

int conc__future_watch(conc_future_t *f, conc__wnode *n) {
  int linked;
  lock(&f->mu);
  linked = !settled_here(f);
  if (linked)
    link_tail(f, n);
  else  /* out of the ring, as a fired node: unwatching it is harmless
        ** (a forwarded future's entry, made zeroed, fired at once and
        ** unwatched as the MPI pool stopped, followed null links) */
    conc__queue_init(&n->q);
  unlock(&f->mu);
  return linked;
}

int conc__future_unwatch(conc_future_t *f, conc__wnode *n) {
  int linked;
  lock(&f->mu);
  /* out of the ring a node is self-linked: linked if not, or if it is
  ** the ring's only node */
  linked = f->watchers == n || n->q.next != &n->q;
  unlink_node(f, n);  /* harmless when already unlinked */
  unlock(&f->mu);
  return linked;
}

/* }====================================================================== */
