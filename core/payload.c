/*
** payload.c: what crosses between owners and workers. Bytes (the Lua
** codec's encoding, or an error made by the core) plus the shared
** objects (futures, queues) the bytes name by index; one malloc'd block,
** no Lua.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define HEAD sizeof(conc_payload_t)
#define PTRALIGN(n) \
  (((n) + sizeof(void *) - 1) / sizeof(void *) * sizeof(void *))

/* The list of shared objects (futures, queues) starts at the first
** pointer-aligned offset after the bytes. Each object's first member is
** its kind (CONC_SHARED_*). */
static void **objects(const conc_payload_t *p) {
  return (void **)((char *)p + PTRALIGN(HEAD + p->size));
}

static int kindof(const void *obj) {
  return *(const int *)obj;
}

/* Shared bytes: immutable once made, so only the count needs care. */
struct conc_bytes {
  int kind;         /* CONC_SHARED_BYTES: first, as every shared object */
  int refs;         /* atomic */
  size_t len;
  char data[1];     /* 'len' bytes */
};

conc_bytes_t *conc_bytes_new(const void *b, size_t len) {
  conc_bytes_t *s;
  if (len > SIZE_MAX - sizeof(*s))
    return NULL;
  s = (conc_bytes_t *)malloc(offsetof(conc_bytes_t, data) + len);
  if (s == NULL)
    return NULL;
  s->kind = CONC_SHARED_BYTES;
  s->refs = 1;
  s->len = len;
  memcpy(s->data, b, len);
  return s;
}

void conc_bytes_ref(conc_bytes_t *s) {
  __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

void conc_bytes_unref(conc_bytes_t *s) {
  if (s != NULL && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0)
    free(s);
}

const char *conc_bytes_data(const conc_bytes_t *s, size_t *len) {
  *len = s->len;
  return s->data;
}

/* Take (+1) or release (-1) a reference on a shared object. */
static void objref(void *obj, int delta) {
  if (kindof(obj) == CONC_SHARED_QUEUE) {
    if (delta > 0) conc_chanq_ref((conc_chanq_t *)obj);
    else conc_chanq_unref((conc_chanq_t *)obj);
  } else if (kindof(obj) == CONC_SHARED_BYTES) {
    if (delta > 0) conc_bytes_ref((conc_bytes_t *)obj);
    else conc_bytes_unref((conc_bytes_t *)obj);
  } else {
    if (delta > 0) conc_future_ref((conc_future_t *)obj);
    else conc_future_unref((conc_future_t *)obj);
  }
}

void conc_shared_ref(void *obj) {
  objref(obj, 1);
}

void conc_shared_unref(void *obj) {
  objref(obj, -1);
}

static size_t total(size_t size, size_t nfutures) {
  if (size > SIZE_MAX / 2 || nfutures > UINT32_MAX
      || nfutures > SIZE_MAX / (4 * sizeof(void *)))
    return 0;
  return PTRALIGN(HEAD + size) + nfutures * sizeof(conc_future_t *);
}

/* {======================================================================
** The cache of payload blocks
** ======================================================================= */

/* A big payload (a task's arguments, its results) is made on one thread
** and freed on another, task after task, and malloc's arenas then give
** its memory back to the kernel and take it again every few tasks (brk,
** madvise, mprotect, then page faults). While a thread pool lives, one
** cache for the process keeps such blocks for the next payloads. Every
** block of a payload (but one in its future's block) has room for the
** rounded size of its whole (conc_bufcache_round), so a kept one serves
** any payload that rounds alike. */
#if !defined(CONC_PAYLOADCACHE)
#define CONC_PAYLOADCACHE (4 * 1024 * 1024)
#endif

static pthread_mutex_t cachemu = PTHREAD_MUTEX_INITIALIZER;
static conc_bufcache_t *cache;  /* while 'cacheusers' > 0 */
static int cacheusers;          /* (both under 'cachemu') */

void conc__payload_cacheuse(int delta) {
  conc_bufcache_t *old = NULL;
  pthread_mutex_lock(&cachemu);
  cacheusers += delta;
  if (cacheusers > 0 && cache == NULL)
    cache = conc_bufcache_new(CONC_PAYLOADCACHE);
  else if (cacheusers == 0) {
    old = cache;
    cache = NULL;
  }
  pthread_mutex_unlock(&cachemu);
  conc_bufcache_free(old);
}

static int cacheable(size_t n) {
  return n >= CONC_BUFCACHE_MIN && n <= CONC_BUFCACHE_MAX;
}

/* Out of memory: the blocks kept go back to malloc (1), if any. */
static int emptycache(void) {
  int had;
  pthread_mutex_lock(&cachemu);
  had = conc_bufcache_empty(cache);
  pthread_mutex_unlock(&cachemu);
  return had;
}

/* A block for a payload of 'n' bytes in all (rounded up): a kept one,
** else malloc's, asked again once the cache gave its blocks back. */
static void *blockalloc(size_t n) {
  void *b = NULL;
  n = conc_bufcache_round(n);
  if (cacheable(n)) {
    pthread_mutex_lock(&cachemu);
    b = conc_bufcache_take(cache, n);
    pthread_mutex_unlock(&cachemu);
  }
  if (b == NULL && (b = malloc(n)) == NULL && cacheable(n) && emptycache())
    b = malloc(n);
  return b;
}

/* Free the block of 'p', which is no future's. */
static void blockfree(conc_payload_t *p) {
  size_t n = conc_bufcache_round(total(p->size, p->nfutures));
  int kept = 0;
  if (cacheable(n)) {
    pthread_mutex_lock(&cachemu);
    kept = conc_bufcache_keep(cache, p, n);
    pthread_mutex_unlock(&cachemu);
  }
  if (!kept)
    free(p);
}

/* }====================================================================== */


/* Fill the header of a block of the right size. */
static conc_payload_t *init(void *block, size_t size, size_t nfutures,
                            int kind) {
  conc_payload_t *p = (conc_payload_t *)block;
  p->size = size;
  p->nfutures = (uint32_t)nfutures;
  p->kind = (unsigned char)kind;
  p->inblock = 0;
  if (nfutures > 0)
    memset(objects(p), 0, nfutures * sizeof(void *));
  return p;
}

size_t conc__payload_room(size_t len, size_t nfutures) {
  return total(len, nfutures);
}

conc_payload_t *conc__payload_place(void *at, size_t len, size_t nfutures) {
  conc_payload_t *p = init(at, len, nfutures, CONC_PAYLOAD_VALUES);
  p->inblock = 1;
  return p;
}

/* The owner frees a task's outcome with its future: in the block the
** owner allocated, rather than in a worker's malloc'd block, whose free
** from the owner's thread costs a cross-thread free every task. */
conc_payload_t *conc__payload_move(conc_payload_t *p, void *at,
                                   size_t room) {
  size_t n;
  if (p == NULL || p->inblock)  /* none (no memory), or in a block */
    return p;
  n = conc_payload_sizeof(p);
  if (n > room)
    return p;
  memcpy(at, p, n);  /* header, bytes and list: the references move */
  blockfree(p);
  p = (conc_payload_t *)at;
  p->inblock = 1;
  return p;
}

conc_payload_t *conc_payload_new(const void *bytes, size_t len,
                                 size_t nfutures) {
  size_t n = total(len, nfutures);
  void *b = n != 0 ? blockalloc(n) : NULL;
  if (b == NULL)
    return NULL;
  if (bytes != NULL && len > 0)
    memcpy((char *)b + HEAD, bytes, len);
  return init(b, len, nfutures, CONC_PAYLOAD_VALUES);
}

conc_payload_t *conc_payload_adopt(void *block, size_t len,
                                   size_t nfutures) {
  size_t n = total(len, nfutures);
  void *b = n != 0 ? realloc(block, conc_bufcache_round(n)) : NULL;
  if (b == NULL)
    return NULL;
  return init(b, len, nfutures, CONC_PAYLOAD_VALUES);
}

conc_payload_t *conc_payload_error(const char *cls, const char *msg) {
  size_t lc, lm;
  conc_payload_t *p;
  if (cls == NULL)  /* as an empty class (strlen read address 0) */
    cls = "";
  if (msg == NULL)
    msg = "";
  lc = strlen(cls);
  lm = strlen(msg);
  if ((p = conc_payload_new(NULL, lc + 1 + lm, 0)) == NULL)
    return NULL;
  memcpy(conc_payload_data(p), cls, lc + 1);
  memcpy(conc_payload_data(p) + lc + 1, msg, lm);
  p->kind = CONC_PAYLOAD_ERROR;
  return p;
}

/* A payload in its future's block (inblock) gives back its references
** and keeps its bytes: they go with the block. */
void conc_payload_free(void *data) {
  conc_payload_t *p = (conc_payload_t *)data;
  size_t i;
  if (p == NULL)
    return;
  for (i = 0; i < p->nfutures; i++)
    if (objects(p)[i] != NULL)
      objref(objects(p)[i], -1);
  if (p->inblock) {
    if (p->nfutures > 0)  /* (a call saved on most outcomes) */
      memset(objects(p), 0, p->nfutures * sizeof(void *));
  }
  else
    blockfree(p);
}

size_t conc_payload_sizeof(const conc_payload_t *p) {
  return p != NULL ? total(p->size, p->nfutures) : 0;
}

char *conc_payload_data(const conc_payload_t *p) {
  return (char *)p + HEAD;
}

conc_future_t *conc_payload_future(const conc_payload_t *p, size_t i) {
  void *obj = i < p->nfutures ? objects(p)[i] : NULL;
  return obj != NULL && kindof(obj) == CONC_SHARED_FUTURE
         ? (conc_future_t *)obj : NULL;
}

conc_chanq_t *conc_payload_queue(const conc_payload_t *p, size_t i) {
  void *obj = i < p->nfutures ? objects(p)[i] : NULL;
  return obj != NULL && kindof(obj) == CONC_SHARED_QUEUE
         ? (conc_chanq_t *)obj : NULL;
}

conc_bytes_t *conc_payload_bytes(const conc_payload_t *p, size_t i) {
  void *obj = i < p->nfutures ? objects(p)[i] : NULL;
  return obj != NULL && kindof(obj) == CONC_SHARED_BYTES
         ? (conc_bytes_t *)obj : NULL;
}

void conc_payload_setshared(conc_payload_t *p, size_t i, void *obj) {
  conc_assert(i < p->nfutures && objects(p)[i] == NULL);
  objref(obj, 1);
  objects(p)[i] = obj;
}

void conc_payload_setfuture(conc_payload_t *p, size_t i, conc_future_t *f) {
  conc_payload_setshared(p, i, f);
}

void conc_payload_setqueue(conc_payload_t *p, size_t i, conc_chanq_t *q) {
  conc_payload_setshared(p, i, q);
}

conc_payload_t *conc_payload_dup(const conc_payload_t *p) {
  size_t n = conc_payload_sizeof(p), i;
  conc_payload_t *q;
  if (p == NULL || (q = (conc_payload_t *)blockalloc(n)) == NULL)
    return NULL;
  memcpy(q, p, n);
  q->inblock = 0;
  for (i = 0; i < q->nfutures; i++)
    if (objects(q)[i] != NULL)
      objref(objects(q)[i], 1);
  return q;
}

/* Complete 'f' with 'p' (taken; NULL when even an error could not be
** made: the future then fails without values). Freed if 'f' is done
** already. An outcome reaching 'f' (a task returned a queue or a future
** that holds its own future) is a cycle no one breaks: 'f' fails. */
void conc__payload_complete(conc_future_t *f, conc_payload_t *p, int failed) {
  conc_payload_finish(f, p, failed, "InvalidStateError",
                      "a task's outcome cannot hold its own future");
}

/* The walk of conc_payload_reaches: a set of the shared objects met
** (open addressing, a power-of-two size at most half full), each with a
** reference of the walk's, so that none is freed, nor its address
** reused, before the walk ends; a stack of those to visit; the target. */
typedef struct Walk {
  void **set;
  size_t nset, sizeset;
  void **stack;
  size_t nstack, sizestack;
  const void *target;
} Walk;

static size_t hashptr(const void *f, size_t size) {
  uintptr_t h = (uintptr_t)f;
  h ^= h >> 17;
  h *= (uintptr_t)0x9E3779B97F4A7C15u;
  return (size_t)(h >> 7) & (size - 1);
}

/* The slot of 'obj' in a set of 'size' slots: where it is, or the empty
** slot where it goes. */
static size_t slotof(void **set, size_t size, const void *obj) {
  size_t i = hashptr(obj, size);
  while (set[i] != NULL && set[i] != obj)
    i = (i + 1) & (size - 1);
  return i;
}

/* Add 'obj' to the set: 1 if new, 0 if there, -1 out of memory. */
static int walk_mark(Walk *w, void *obj) {
  size_t i;
  if (2 * (w->nset + 1) > w->sizeset) {
    size_t n = w->sizeset ? 2 * w->sizeset : 16, j;
    void **ns = (void **)calloc(n, sizeof(*ns));
    if (ns == NULL)
      return -1;
    for (j = 0; j < w->sizeset; j++)
      if (w->set[j] != NULL)
        ns[slotof(ns, n, w->set[j])] = w->set[j];
    free(w->set);
    w->set = ns;
    w->sizeset = n;
  }
  i = slotof(w->set, w->sizeset, obj);
  if (w->set[i] == obj)
    return 0;
  w->set[i] = obj;
  w->nset++;
  return 1;
}

static int walk_push(Walk *w, void *obj) {
  if (w->nstack == w->sizestack) {
    size_t n = w->sizestack ? 2 * w->sizestack : 16;
    void **ns = (void **)realloc(w->stack, n * sizeof(*ns));
    if (ns == NULL)
      return -1;
    w->stack = ns;
    w->sizestack = n;
  }
  w->stack[w->nstack++] = obj;
  return 0;
}

/* Meet the shared object 'obj': 1 when it is the target, else 0 (a new
** one is referenced and pushed, to visit), -1 out of memory. Shared
** bytes hold nothing; a proxy of a parent's queue holds nothing here. */
static int walk_meet(Walk *w, void *obj) {
  int r;
  if (obj == w->target)
    return 1;
  if (kindof(obj) == CONC_SHARED_BYTES
      || (kindof(obj) == CONC_SHARED_QUEUE
          && conc__chanq_remotectx((conc_chanq_t *)obj) != NULL))
    return 0;
  if ((r = walk_mark(w, obj)) <= 0)
    return r;
  objref(obj, 1);
  return walk_push(w, obj);
}

/* Meet every object that payload 'p' holds. */
static int walk_payload(Walk *w, const conc_payload_t *p) {
  size_t i;
  int r;
  for (i = 0; i < p->nfutures; i++)
    if (objects(p)[i] != NULL && (r = walk_meet(w, objects(p)[i])) != 0)
      return r;
  return 0;
}

/* (conc__chanq_each, under the queue's lock.) An item of a queue: its
** objects, if it is a payload (a C program's queue may hold other data,
** which holds none). The walk's references keep them once the item is
** taken out and freed. */
static int walk_item(void *ud, void *data, conc_free_fn freefn) {
  if (freefn != conc_payload_free || data == NULL)
    return 0;
  return walk_payload((Walk *)ud, (const conc_payload_t *)data);
}

/* Depth-first over the shared objects that 'p' holds, what those hold
** (a finished future its outcome, a queue its items), and so on: 1 when
** the target is among them, 0 if not, -1 out of memory. A finished
** future's payload lives, unchanged, as long as the future, which the
** walk's reference keeps; a queue's items are read under its lock. */
static int walk(Walk *w, const conc_payload_t *p) {
  int r = walk_payload(w, p);
  while (r == 0 && w->nstack > 0) {
    void *obj = w->stack[--w->nstack];
    const void *data;
    size_t len;
    int failed;
    if (kindof(obj) == CONC_SHARED_QUEUE)
      r = conc__chanq_each((conc_chanq_t *)obj, walk_item, w);
    else if (conc_future_payload((conc_future_t *)obj, &data, &len,
                                 &failed) == 0 && data != NULL)
      r = walk_payload(w, (const conc_payload_t *)data);
  }
  return r;
}

/* Whether 'p' reaches the future or queue 'target' (1, 0, -1). */
static int reaches(const conc_payload_t *p, const void *target) {
  Walk w;
  size_t i;
  int r;
  if (p == NULL || p->nfutures == 0)
    return 0;
  memset(&w, 0, sizeof(w));
  w.target = target;
  r = walk(&w, p);
  for (i = 0; i < w.sizeset; i++)
    if (w.set[i] != NULL)
      objref(w.set[i], -1);
  free(w.set);
  free(w.stack);
  return r;
}

int conc_payload_reaches(const conc_payload_t *p, conc_future_t *f) {
  return reaches(p, f);
}

/* Held from the cycle check to the completion of every payload that
** holds futures or queues, and to the put of every such payload into a
** queue: only those add edges that a cycle needs, so one lock for them
** all costs the common case (no shared objects) nothing.
** Recursive: a C callback run by the completion may complete another. */
static pthread_mutex_t cyclemu = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

void conc__payload_forked(void) {
  pthread_mutex_t fresh = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
  pthread_mutex_t freshcache = PTHREAD_MUTEX_INITIALIZER;
  cyclemu = fresh;
  cachemu = freshcache;
  cache = NULL;  /* the parent's, maybe half changed: left alone */
  cacheusers = 0;  /* the parent's pools have no thread here */
  conc__future_forked();
}

/* The completion of conc_payload_finish and of conc_payload_settle:
** a payload reaching 'f' is replaced ('refuse' 0: by 'cls: msg', or no
** values) or refused ('refuse' 1: CONC_EINVAL, or CONC_ENOMEM when
** memory ran out to tell, and 'p' stays the caller's). */
static int finishp(conc_future_t *f, conc_payload_t *p, int failed,
                   const char *cls, const char *msg, int refuse) {
  int locked = p != NULL && p->nfutures > 0, r = 0;
  if (locked) {
    pthread_mutex_lock(&cyclemu);
    if ((r = conc_payload_reaches(p, f)) != 0) {
      if (refuse) {
        pthread_mutex_unlock(&cyclemu);
        return r < 0 ? CONC_ENOMEM : CONC_EINVAL;
      }
      conc_payload_free(p);
      p = msg != NULL ? conc_payload_error(cls, msg) : NULL;
      failed = failed || msg != NULL;
    }
  }
  r = failed ? conc_future_set_exception(f, p, conc_payload_sizeof(p),
                                         conc_payload_free)
             : conc_future_set_result(f, p, conc_payload_sizeof(p),
                                      conc_payload_free);
  if (locked)
    pthread_mutex_unlock(&cyclemu);
  if (r != 0 && !refuse)
    conc_payload_free(p);
  return r;
}

int conc_payload_tryput(conc_chanq_t *q, conc_payload_t *p,
                        conc_future_t *wake) {
  /* a proxy's put is its parent's to check, where the queue is */
  int locked = p != NULL && p->nfutures > 0
               && conc__chanq_remotectx(q) == NULL, r;
  if (locked) {
    pthread_mutex_lock(&cyclemu);
    if ((r = reaches(p, q)) != 0) {
      pthread_mutex_unlock(&cyclemu);
      return r < 0 ? CONC_ENOMEM : CONC_ECYCLE;
    }
  }
  r = conc_chanq_tryput(q, p, conc_payload_sizeof(p), conc_payload_free,
                        wake);
  if (locked)
    pthread_mutex_unlock(&cyclemu);
  return r;
}

int conc_payload_finish(conc_future_t *f, conc_payload_t *p, int failed,
                        const char *cls, const char *msg) {
  return finishp(f, p, failed, cls, msg, 0);
}

int conc_payload_settle(conc_future_t *f, conc_payload_t *p, int failed) {
  return finishp(f, p, failed, NULL, NULL, 1);
}
