/*
** remoteq.c: queues across processes (remoteq.h). The host links each
** of its queues that a peer knows under an id, carries out the peer's
** requests on the queue and replies at once: a wait is never held in the
** host, but a wake future is given to the queue and, once it fires, the
** host tells the peer, which tries again. The peer's proxy is a
** conc_chanq_t whose remote sends each operation and waits for its
** reply, handed over by whichever thread reads.
*/
#include <stdlib.h>
#include <string.h>

#include "remoteq.h"


/* {======================================================================
** The host
** ======================================================================= */

/* A peer's place in the host's line of waits of one kind (fifo). */
typedef struct qturn {
  conc__queue node;             /* in the host's 'line'; self-linked: none */
  conc__qlink *l;
} qturn;

#define turnof(n) conc__container_of(n, qturn, node)

/* A queue of the host that a peer knows, under one id: a reference held
** while the peer may use it. */
struct conc__qlink {
  conc__qlink *next;            /* in its peer's list */
  conc__qpeer *peer;
  conc_chanq_t *q;
  uint64_t id;                  /* with CONC__QID */
  uint32_t mentions;            /* in payloads sent, not yet dropped */
  conc__qwatch *armed[2];       /* a wait of the peer for putters, getters */
  qturn turn[2];                /* its place in line for putters, getters */
};

/* A wake future given to a queue for a peer that waits: 'fire' pushes it
** on the host's stack, and the host tells the peer. */
struct conc__qwatch {
  conc__wnode w;
  conc__qwatch *firednext;
  conc__qhost *h;
  conc__qlink *l;               /* NULL once the peer is gone */
  conc_future_t *f;
  int getters;
  int fired;                    /* under the future's lock */
};

/* Under the future's lock, on any thread, as forward.c's 'fire'. */
static void qwatch_fire(conc__wnode *n) {
  conc__qwatch *w = conc__container_of(n, conc__qwatch, w);
  conc__qhost *h = w->h;
  w->fired = 1;
  w->firednext = __atomic_load_n(&h->fired, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&h->fired, &w->firednext, w, 1,
                                      __ATOMIC_RELEASE, __ATOMIC_RELAXED))
    ;
  h->wake(h);
}

/* The link of 'q' for 'peer', made on first use (with an id of its own);
** NULL when out of memory. */
static conc__qlink *linkqueue(conc__qpeer *peer, conc_chanq_t *q) {
  conc__qlink *l;
  for (l = peer->links; l != NULL && l->q != q; l = l->next)
    ;
  if (l == NULL && (l = (conc__qlink *)calloc(1, sizeof(*l))) != NULL) {
    int k;
    for (k = 0; k < 2; k++) {
      conc__queue_init(&l->turn[k].node);
      l->turn[k].l = l;
    }
    l->peer = peer;
    l->q = q;
    l->id = ++peer->host->fwd->nextid | CONC__QID;
    conc_chanq_ref(q);
    l->next = peer->links;
    peer->links = l;
  }
  return l;
}

static conc__qlink *linkbyid(conc__qpeer *peer, uint64_t id) {
  conc__qlink *l;
  for (l = peer->links; l != NULL && l->id != id; l = l->next)
    ;
  return l;
}

/* The peer's brief frame (remoteq.h): 'type', 'id', then 'code' as a
** u32 (F_QREPLY) or a u8. */
static void setbrief(conc__qpeer *peer, int type, uint64_t id,
                     unsigned code) {
  conc__wbuf b = { peer->brief, 0, 0, sizeof(peer->brief), 0 };
  size_t at = conc__frame_begin(&b, type);  /* room enough: never grown */
  conc__put64(&b, id);
  if (type == F_QREPLY)
    conc__put32(&b, code);
  else
    conc__put8(&b, code);
  conc__frame_end(&b, at);
  peer->nbrief = b.n;
}

static void endframe(conc__qpeer *peer, size_t at) {
  conc__frame_end(peer->out, at);
  peer->host->sent(peer->host, peer);
}

/* Tell the peer of 'l' that its queue changed for its 'getters' (or
** putters): its waits there try again. */
static void notify(conc__qlink *l, int getters) {
  conc__qpeer *peer = l->peer;
  size_t at = conc__frame_begin(peer->out, F_QCHANGED);
  conc__put64(peer->out, l->id);
  conc__put8(peer->out, (unsigned)getters);
  setbrief(peer, F_QCHANGED, l->id, (unsigned)getters);
  endframe(peer, at);
}


/* {======================================================================
** The line of waits (conc__qhost_fifo)
** ======================================================================= */

void conc__qhost_fifo(conc__qhost *h) {
  conc__queue_init(&h->line[0]);
  conc__queue_init(&h->line[1]);
  h->fifo = 1;
}

/* Whether another peer waits for 'k' on the queue of 'l' before it (any
** other, when it does not wait). */
static int ahead(conc__qlink *l, int k) {
  conc__queue *h = &l->peer->host->line[k], *n;
  for (n = conc__queue_head(h); n != h && n != &l->turn[k].node;
       n = n->next)
    if (turnof(n)->l->q == l->q)
      return 1;
  return 0;
}

/* Whether a try of the peer of 'l' for 'k' must wait behind the peers
** before it: only the first in line may take (a value, a free slot), so
** the values go out in the order the peers came. A try that would end
** (a closed queue) goes on. */
static int due(conc__qlink *l, int k) {
  return l->peer->host->fifo && ahead(l, k) && !conc_chanq_closed(l->q);
}

/* 'l' leaves the line of 'k'; the peers behind it for the same queue
** are told to try again ('tell'), as one of them may now come first. */
static void leave(conc__qlink *l, int k, int tell) {
  conc__queue *h = &l->peer->host->line[k], *n;
  if (conc__queue_empty(&l->turn[k].node))
    return;
  for (n = l->turn[k].node.next; tell && n != h; n = n->next)
    if (turnof(n)->l->q == l->q)
      notify(turnof(n)->l, k);
  conc__queue_remove(&l->turn[k].node);
}

/* After a try of the peer of 'l' for 'k' that returned 'code' ('wake':
** it waits if told to): in line while it waits, out once it gave up or
** got through. */
static void line(conc__qlink *l, int k, int wake, int code) {
  conc__qhost *h = l->peer->host;
  if (!h->fifo)
    return;
  if (code != CONC_ETIMEDOUT || !wake)
    leave(l, k, 1);
  else if (conc__queue_empty(&l->turn[k].node))
    conc__queue_insert_tail(&h->line[k], &l->turn[k].node);
}

void conc__qhost_release(conc__qpeer *peer) {
  conc__qlink *l;
  for (l = peer->links; l != NULL; l = l->next) {
    leave(l, 0, 1);
    leave(l, 1, 1);
  }
}

/* }====================================================================== */


/* Release a link: it leaves the line ('tell': telling those behind), a
** wait it armed is disarmed (or, fired already, left to conc__qhost_tell
** without its peer), and the queue let go. */
static void unlinkqueue(conc__qlink *l, int tell) {
  int k;
  for (k = 0; k < 2; k++) {
    conc__qwatch *w = l->armed[k];
    leave(l, k, tell);
    if (w == NULL)
      continue;
    conc__future_unwatch(w->f, &w->w);
    if (w->fired) {
      w->l = NULL;
    } else {
      conc_future_cancel(w->f);  /* the queue drops it */
      conc_future_unref(w->f);
      free(w);
    }
  }
  conc_chanq_unref(l->q);
  free(l);
}

void conc__qhost_forget(conc__qpeer *peer) {
  while (peer->links != NULL) {
    conc__qlink *l = peer->links;
    peer->links = l->next;
    unlinkqueue(l, 0);
  }
}

/* The id under which entry 'i' of 'pl' crosses to 'peer', or 0 when out
** of memory. */
static uint64_t forwardone(conc__qpeer *peer, const conc_payload_t *pl,
                           size_t i) {
  conc_future_t *f = conc_payload_future(pl, i);
  conc__fwd *x;
  conc__qlink *l;
  if (f != NULL)
    return (x = conc__fwd_tell(peer->host->fwd, f, peer->who)) != NULL
           ? x->id : 0;
  if ((l = linkqueue(peer, conc_payload_queue(pl, i))) == NULL)
    return 0;
  l->mentions++;
  return l->id;
}

uint64_t *conc__qhost_ids(void *ud, const conc_payload_t *pl, int *ok) {
  conc__qpeer *peer = (conc__qpeer *)ud;
  uint64_t *ids = NULL;
  size_t i;
  *ok = 1;
  if (pl->nfutures == 0)
    return NULL;
  ids = (uint64_t *)malloc(pl->nfutures * sizeof(*ids));
  for (i = 0; ids != NULL && i < pl->nfutures; i++)
    if ((ids[i] = forwardone(peer, pl, i)) == 0)
      break;
  if (ids == NULL || i < pl->nfutures) {
    free(ids);
    *ok = 0;
    return NULL;
  }
  return ids;
}

int conc__qhost_bind(conc__qpeer *peer, conc_payload_t *pl,
                     const uint64_t *ids) {
  size_t i;
  for (i = 0; i < pl->nfutures; i++) {
    conc__qlink *l = linkbyid(peer, ids[i]);
    if (l == NULL)
      return -1;
    conc_payload_setqueue(pl, i, l->q);
  }
  return 0;
}

/* The wake future for a wait of 'l's peer on 'getters' (or putters): 0
** and a new one in '*pw', or NULL when none is asked ('wake' 0) or one
** is armed already; CONC_ENOMEM (a wait nothing would end). */
static int newwatch(conc__qlink *l, int getters, int wake,
                    conc__qwatch **pw) {
  conc__qwatch *w;
  *pw = NULL;
  if (!wake || l->armed[getters] != NULL)
    return 0;
  if ((w = (conc__qwatch *)calloc(1, sizeof(*w))) == NULL)
    return CONC_ENOMEM;
  if ((w->f = conc_future_new()) == NULL) {
    free(w);
    return CONC_ENOMEM;
  }
  w->h = l->peer->host;
  w->l = l;
  w->getters = getters;
  w->w.fire = qwatch_fire;
  *pw = w;
  return 0;
}

/* After a try with 'w' (may be NULL) that returned 'r': the queue holds
** the wake future only if it said wait, and then the link is armed. */
static void arm(conc__qwatch *w, int r) {
  if (w == NULL)
    return;
  if (r != CONC_ETIMEDOUT) {
    conc_future_unref(w->f);
    free(w);
    return;
  }
  w->l->armed[w->getters] = w;
  if (!conc__future_watch(w->f, &w->w))
    qwatch_fire(&w->w);  /* changed already: told on the next round */
}

/* A try of the peer of 'l' for 'k' waits behind the peers before it
** ('due'): the queue is given the wake of 'w' (when one is asked), so
** its next change tells this peer too. */
static int holdback(conc__qlink *l, int k, conc__qwatch *w) {
  return w != NULL && conc__chanq_addwake(l->q, k, w->f) != 0
         ? CONC_ENOMEM : CONC_ETIMEDOUT;
}

void conc__qhost_tell(conc__qhost *h) {
  conc__qwatch *w = __atomic_exchange_n(&h->fired, NULL, __ATOMIC_ACQUIRE);
  while (w != NULL) {
    conc__qwatch *next = w->firednext;
    if (w->l != NULL) {
      notify(w->l, w->getters);
      w->l->armed[w->getters] = NULL;
    }
    conc_future_unref(w->f);
    free(w);
    w = next;
  }
}

/* Start the reply to request 'req' of 'peer' (its brief form says
** CONC_ENOMEM, should this one fail: a value too big for memory). */
static size_t beginreply(conc__qpeer *peer, uint64_t req, int code) {
  size_t at = conc__frame_begin(peer->out, F_QREPLY);
  conc__put64(peer->out, req);
  conc__put32(peer->out, (uint32_t)code);
  setbrief(peer, F_QREPLY, req, (uint32_t)CONC_ENOMEM);
  return at;
}

static void reply(conc__qpeer *peer, uint64_t req, int code) {
  endframe(peer, beginreply(peer, req, code));
}

/* Whether a queue's value fits in a reply to a peer: one past a frame's
** limit stays in the queue (its frame would be taken back whole, and
** the value lost), and the peer's get fails. */
static int replyable(const void *data, size_t len, conc_free_fn freefn) {
  if (freefn == conc_payload_free
      ? !conc__payload_fits((const conc_payload_t *)data, CONC__QREPLYHEAD)
      : len > CONC_FRAME_MAX - CONC__QREPLYHEAD - 5)
    return CONC_E2BIG;
  return 0;
}

/* A value got for 'peer' ('freefn' frees it): a payload, its futures and
** queues forwarded; raw bytes of a C host, as a payload of them. */
static int putvalue(conc__qpeer *peer, uint64_t req, void *data,
                    size_t len, conc_free_fn freefn) {
  const conc_payload_t *pl = (const conc_payload_t *)data;
  uint64_t *ids = NULL;
  int ok = 1;
  size_t at;  /* it fits: onqget's 'replyable' let it be taken, or a
              ** proxy's value came in a frame of this very kind */
  if (freefn == conc_payload_free)
    ids = conc__qhost_ids(peer, pl, &ok);
  if (!ok)
    return CONC_ENOMEM;
  at = beginreply(peer, req, 0);
  if (freefn == conc_payload_free)
    conc__putpayload(peer->out, pl, ids);
  else {
    conc__put8(peer->out, CONC_PAYLOAD_VALUES);
    conc__put32(peer->out, 0);
    conc__putbytes(peer->out, data, len);
  }
  endframe(peer, at);
  free(ids);
  return 0;
}

/* The value at 'r' that 'peer' sent for the queue of 'l', its queues
** bound, in '*pl' (NULL when out of memory): 0, or -1 when the frame is
** corrupt ('l' NULL: an unknown queue). */
static int readvalue(conc__qpeer *peer, conc__rd *r, conc__qlink *l,
                     conc_payload_t **pl) {
  uint64_t *ids = NULL;
  int nomem = 0;
  *pl = conc__getpayload(r, &ids, &nomem);
  if (l == NULL || (*pl == NULL && !nomem)
      || (*pl != NULL && ids != NULL
          && conc__qhost_bind(peer, *pl, ids) != 0)) {
    conc_payload_free(*pl);
    free(ids);
    return -1;
  }
  free(ids);
  return 0;
}

/* F_QPUT; a value too big for memory ('toobig') is refused. */
static int onqput(conc__qpeer *peer, conc__rd *r, int toobig) {
  uint64_t req = conc__get64(r);
  conc__qlink *l;
  int wake, code;
  conc_payload_t *pl;
  conc__qwatch *w;
  if (toobig) {  /* only its head was kept */
    reply(peer, req, CONC_ENOMEM);
    return 0;
  }
  l = linkbyid(peer, conc__get64(r));
  wake = (int)conc__get8(r);
  if (readvalue(peer, r, l, &pl) != 0)
    return -1;
  if (pl == NULL) {
    reply(peer, req, CONC_ENOMEM);
    return 0;
  }
  if ((code = newwatch(l, 0, wake, &w)) == 0) {
    code = due(l, 0) ? holdback(l, 0, w)
           : conc_payload_tryput(l->q, pl, w != NULL ? w->f : NULL);
    arm(w, code);
  }
  if (code != 0)
    conc_payload_free(pl);
  reply(peer, req, code);
  line(l, 0, wake, code);
  return 0;
}

/* F_QGET: a value taken for 'peer' is gone with it if it dies. */
static int onqget(conc__qpeer *peer, conc__rd *r) {
  uint64_t req = conc__get64(r);
  conc__qlink *l = linkbyid(peer, conc__get64(r));
  int wake = (int)conc__get8(r), code;
  void *data;
  size_t len;
  conc_free_fn freefn;
  conc__qwatch *w;
  if (l == NULL)
    return -1;
  if ((code = newwatch(l, 1, wake, &w)) == 0) {
    code = due(l, 1) ? holdback(l, 1, w)
           : conc__chanq_trygetif(l->q, replyable, &data, &len, &freefn,
                                  w != NULL ? w->f : NULL);
    arm(w, code);
  }
  if (code == 0) {
    code = putvalue(peer, req, data, len, freefn);
    if (freefn != NULL)
      freefn(data);
  }
  if (code != 0)
    reply(peer, req, code);
  line(l, 1, wake, code);
  return 0;
}

/* F_QUNGET: a value that 'peer' got, and whose taker could not use it
** (its decode failed), goes back first in the queue, as
** conc_chanq_unget puts a thread's back. The raw bytes of a C host's
** value come back as the payload that carried them. Refused when it
** does not fit in memory ('toobig'), and then lost. */
static int onqunget(conc__qpeer *peer, conc__rd *r, int toobig) {
  uint64_t req = conc__get64(r);
  conc__qlink *l;
  conc_payload_t *pl;
  int code;
  if (toobig) {  /* only its head was kept */
    reply(peer, req, CONC_ENOMEM);
    return 0;
  }
  l = linkbyid(peer, conc__get64(r));
  if (readvalue(peer, r, l, &pl) != 0)
    return -1;
  code = pl == NULL ? CONC_ENOMEM
         : conc_chanq_unget(l->q, pl, conc_payload_sizeof(pl),
                            conc_payload_free);
  if (code != 0)
    conc_payload_free(pl);
  reply(peer, req, code);
  return 0;
}

static int onqlen(conc__qpeer *peer, conc__rd *r) {
  uint64_t req = conc__get64(r);
  conc__qlink *l = linkbyid(peer, conc__get64(r));
  size_t at;
  if (l == NULL)
    return -1;
  at = beginreply(peer, req, 0);
  conc__put64(peer->out, (uint64_t)conc_chanq_len(l->q));
  conc__put64(peer->out, (uint64_t)conc_chanq_maxsize(l->q));
  conc__put8(peer->out, (unsigned)conc_chanq_closed(l->q));
  endframe(peer, at);
  return 0;
}

static int onqclose(conc__qpeer *peer, conc__rd *r) {
  uint64_t req = conc__get64(r);
  conc__qlink *l = linkbyid(peer, conc__get64(r));
  if (l == NULL)
    return -1;
  conc_chanq_close(l->q);
  reply(peer, req, 0);
  return 0;
}

/* F_QDROP: 'peer' holds the queue no more after 'n' mentions; those
** sent since keep the link. */
static int onqdrop(conc__qpeer *peer, conc__rd *r) {
  conc__qlink *l = linkbyid(peer, conc__get64(r)), **pl;
  uint32_t n = conc__get32(r);
  if (l == NULL || n > l->mentions)
    return -1;
  if ((l->mentions -= n) > 0)
    return 0;
  for (pl = &peer->links; *pl != l; pl = &(*pl)->next)
    ;
  *pl = l->next;
  unlinkqueue(l, 1);
  return 0;
}

int conc__qhost_isrequest(unsigned type) {
  return type == F_QPUT || type == F_QGET || type == F_QLEN
         || type == F_QCLOSE || type == F_QDROP || type == F_QUNGET;
}

int conc__qhost_request(conc__qpeer *peer, conc__rd *r, unsigned type,
                        int toobig) {
  int bad;
  if (toobig && type != F_QPUT && type != F_QUNGET)
    return -1;
  switch (type) {
    case F_QPUT: bad = onqput(peer, r, toobig); break;
    case F_QUNGET: bad = onqunget(peer, r, toobig); break;
    case F_QGET: bad = onqget(peer, r); break;
    case F_QLEN: bad = onqlen(peer, r); break;
    case F_QCLOSE: bad = onqclose(peer, r); break;
    default: bad = onqdrop(peer, r); break;
  }
  return bad || r->bad ? -1 : 0;
}

/* }====================================================================== */


/* {======================================================================
** The proxies
** ======================================================================= */

/* A proxy of a host's queue (the context of its conc_chanq_t). */
struct conc__qproxy {
  conc__qproxy *next;           /* in the table, while 'linked' */
  int linked;
  uint64_t id;                  /* the host's, with CONC__QID */
  uint32_t mentions;            /* payloads from the host that named it */
  conc_chanq_t *q;
  conc__qproxies *t;
};

/* A queue operation waiting for the host's reply. */
struct conc__qreq {
  conc__qreq *next;
  uint64_t id;
  int type;                     /* F_QPUT ... F_QLEN */
  conc_chanq_t *q;              /* the proxy */
  conc_future_t *wake;          /* given to the proxy if the reply says wait */
  int done, code;
  conc_payload_t *got;          /* F_QGET's value */
  size_t len, max;              /* F_QLEN's answer */
  int closed;
};

int conc__qproxies_init(conc__qproxies *t, pthread_mutex_t *mu) {
  t->mu = mu;
  t->reqs = NULL;
  t->stop = 0;
  t->list = NULL;
  if (pthread_mutex_init(&t->qmu, NULL) != 0)
    return CONC_ESYS;
  if (conc__cond_init(&t->rcv) != 0) {
    pthread_mutex_destroy(&t->qmu);
    return CONC_ESYS;
  }
  return 0;
}

/* The writer is held from here to 'ask': start the frame of request
** 'rq' on the queue of 'x'. */
static conc__wbuf *beginask(conc__qproxy *x, conc__qreq *rq, int type,
                            conc_future_t *wake, size_t *at) {
  conc__qproxies *t = x->t;
  conc__wbuf *b;
  memset(rq, 0, sizeof(*rq));
  rq->id = __atomic_add_fetch(&t->nextreq, 1, __ATOMIC_RELAXED);
  rq->type = type;
  rq->q = x->q;
  rq->wake = wake;
  b = t->begin(t, type, at);
  conc__put64(b, rq->id);
  conc__put64(b, x->id);
  return b;
}

/* Send the request begun at 'at', give the writer back and wait for the
** reply: its code (CONC_EBROKEN when none can come). The host answers
** at once, or at once that the caller must wait for a wake, so this does
** not block for long. */
static int ask(conc__qproxies *t, conc__qreq *rq, conc__wbuf *b,
               size_t at) {
  int r = 0;
  conc__frame_end(b, at);
  pthread_mutex_lock(t->mu);
  if (t->stop)
    r = CONC_EBROKEN;
  else if (b->failed)
    r = CONC_ENOMEM;
  else {
    rq->next = t->reqs;
    t->reqs = rq;
    if (t->asked != NULL)
      t->asked(t);
  }
  pthread_mutex_unlock(t->mu);
  t->send(t, b, r != 0);
  if (r != 0)
    return r;
  pthread_mutex_lock(t->mu);
  while (!rq->done)
    pthread_cond_wait(&t->rcv, t->mu);
  pthread_mutex_unlock(t->mu);
  return rq->code;
}

int conc__qproxies_outids(const conc_payload_t *p, uint64_t **ids) {
  size_t i;
  *ids = NULL;
  for (i = 0; i < p->nfutures; i++) {
    conc_chanq_t *q = conc_payload_queue(p, i);
    if (q == NULL || conc__chanq_remotectx(q) == NULL)
      return CONC_EINVAL;
  }
  if (p->nfutures == 0)
    return 0;
  if ((*ids = (uint64_t *)malloc(p->nfutures * sizeof(**ids))) == NULL)
    return CONC_ENOMEM;
  for (i = 0; i < p->nfutures; i++) {
    conc__qproxy *x = (conc__qproxy *)conc__chanq_remotectx(
        conc_payload_queue(p, i));
    (*ids)[i] = x->id;
  }
  return 0;
}

/* Send the value 'data' to the host's queue of 'q' in an F_QPUT (with
** 'wake') or an F_QUNGET ('head': its bytes before the payload): the
** reply's code; on 0 the host's queue holds its copy, and this one is
** freed. */
static int askvalue(conc_chanq_t *q, int type, size_t head, void *data,
                    conc_free_fn freefn, conc_future_t *wake) {
  conc__qproxy *x = (conc__qproxy *)conc__chanq_remotectx(q);
  conc_payload_t *p = (conc_payload_t *)data;
  uint64_t *ids;
  conc__qreq rq;
  conc__wbuf *b;
  size_t at;
  int r = freefn != conc_payload_free ? CONC_EINVAL
          : !conc__payload_fits(p, head) ? CONC_E2BIG
          : conc__qproxies_outids(p, &ids);
  if (r != 0)
    return r;
  b = beginask(x, &rq, type, wake, &at);
  if (type == F_QPUT)
    conc__put8(b, wake != NULL);
  conc__putpayload(b, p, ids);
  free(ids);
  r = ask(x->t, &rq, b, at);
  if (r == 0)
    conc_payload_free(p);
  return r;
}

static int qp_tryput(conc_chanq_t *q, void *data, size_t len,
                     conc_free_fn freefn, conc_future_t *wake) {
  (void)len;
  return askvalue(q, F_QPUT, CONC__QPUTHEAD, data, freefn, wake);
}

/* A value that a get here took from the host's queue goes back there
** first. Only the host's queues can go back in it (conc__qproxies_
** outids): one that holds a future cannot (CONC_EINVAL). */
static int qp_unget(conc_chanq_t *q, void *data, size_t len,
                    conc_free_fn freefn) {
  (void)len;
  return askvalue(q, F_QUNGET, CONC__QUNGETHEAD, data, freefn, NULL);
}

static int qp_tryget(conc_chanq_t *q, void **data, size_t *len,
                     conc_free_fn *freefn, conc_future_t *wake) {
  conc__qproxy *x = (conc__qproxy *)conc__chanq_remotectx(q);
  conc__qreq rq;
  size_t at;
  conc__wbuf *b = beginask(x, &rq, F_QGET, wake, &at);
  int r;
  conc__put8(b, wake != NULL);
  if ((r = ask(x->t, &rq, b, at)) == 0) {
    *data = rq.got;
    *len = conc_payload_sizeof(rq.got);
    *freefn = conc_payload_free;
  }
  return r;
}

static void qp_close(conc_chanq_t *q) {
  conc__qproxy *x = (conc__qproxy *)conc__chanq_remotectx(q);
  conc__qreq rq;
  size_t at;
  conc__wbuf *b = beginask(x, &rq, F_QCLOSE, NULL, &at);
  ask(x->t, &rq, b, at);
}

static int qp_info(conc_chanq_t *q, size_t *len, size_t *max, int *closed) {
  conc__qproxy *x = (conc__qproxy *)conc__chanq_remotectx(q);
  conc__qreq rq;
  size_t at;
  conc__wbuf *b = beginask(x, &rq, F_QLEN, NULL, &at);
  int r = ask(x->t, &rq, b, at);
  *len = rq.len;
  if (max != NULL)
    *max = rq.max;
  *closed = rq.closed;
  return r;
}

/* The last reference went: out of the table (unless the reader took it
** out already), and the host may let go of the queue once it has seen
** as many mentions dropped as it sent. */
static void qp_release(conc_chanq_t *q) {
  conc__qproxy *x = (conc__qproxy *)conc__chanq_remotectx(q), **px;
  conc__qproxies *t = x->t;
  int stop;
  pthread_mutex_lock(&t->qmu);
  if (x->linked) {
    for (px = &t->list; *px != x; px = &(*px)->next)
      ;
    *px = x->next;
  }
  pthread_mutex_unlock(&t->qmu);
  pthread_mutex_lock(t->mu);
  stop = t->stop;  /* then the host forgets it when this peer ends */
  pthread_mutex_unlock(t->mu);
  if (!stop) {
    size_t at;
    conc__wbuf *b = t->begin(t, F_QDROP, &at);
    conc__put64(b, x->id);
    conc__put32(b, x->mentions);
    conc__frame_end(b, at);
    t->send(t, b, b->failed);
  }
  conc__chanq_free(q);
  free(x);
}

static const conc__qremote qremote = {
  qp_tryput, qp_tryget, qp_unget, qp_close, qp_info, qp_release
};

/* With 'qmu' held: the proxy of queue 'id' with a new reference, or
** NULL. One whose last reference is going is taken out of the table. */
static conc__qproxy *findproxy(conc__qproxies *t, uint64_t id) {
  conc__qproxy **px, *x;
  for (px = &t->list; (x = *px) != NULL; px = &x->next)
    if (x->id == id) {
      if (conc__chanq_tryref(x->q))
        return x;
      *px = x->next;
      x->linked = 0;
      return NULL;
    }
  return NULL;
}

conc_chanq_t *conc__qproxies_get(conc__qproxies *t, uint64_t id) {
  conc__qproxy *x;
  pthread_mutex_lock(&t->qmu);
  if ((x = findproxy(t, id)) == NULL) {
    x = (conc__qproxy *)calloc(1, sizeof(*x));
    if (x == NULL || (x->q = conc__chanq_newremote(&qremote, x)) == NULL) {
      pthread_mutex_unlock(&t->qmu);
      free(x);
      return NULL;
    }
    x->id = id;
    x->t = t;
    x->linked = 1;
    x->next = t->list;
    t->list = x;
  }
  x->mentions++;
  pthread_mutex_unlock(&t->qmu);
  return x->q;
}

/* The reply to a request: the reader hands it over. A wait's wake is
** added to the proxy here, before any later F_QCHANGED is read. */
static int onqreply(conc__qproxies *t, conc__rd *r) {
  uint64_t id = conc__get64(r);
  int code = (int)(int32_t)conc__get32(r);
  conc__qreq *rq, **pr;
  pthread_mutex_lock(t->mu);
  for (pr = &t->reqs; (rq = *pr) != NULL && rq->id != id; pr = &rq->next)
    ;
  if (rq != NULL)
    *pr = rq->next;
  pthread_mutex_unlock(t->mu);
  if (rq == NULL || r->bad)
    return -1;
  if (code == 0 && rq->type == F_QGET)
    rq->got = t->readpayload(t, r);
  else if (code == 0 && rq->type == F_QLEN) {
    rq->len = (size_t)conc__get64(r);
    rq->max = (size_t)conc__get64(r);
    rq->closed = (int)conc__get8(r);
  } else if (code == CONC_ETIMEDOUT && rq->wake != NULL
             && conc__chanq_addwake(rq->q, rq->type == F_QGET, rq->wake) != 0)
    code = CONC_ENOMEM;
  pthread_mutex_lock(t->mu);
  rq->code = code;
  rq->done = 1;
  pthread_cond_broadcast(&t->rcv);
  pthread_mutex_unlock(t->mu);
  return 0;
}

/* A queue of the host changed: wake the waiters of that kind here. */
static void onqchanged(conc__qproxies *t, conc__rd *r) {
  uint64_t id = conc__get64(r);
  int getters = (int)conc__get8(r);
  conc__qproxy *x;
  pthread_mutex_lock(&t->qmu);
  x = findproxy(t, id);
  pthread_mutex_unlock(&t->qmu);
  if (x != NULL) {
    conc__chanq_wakeup(x->q, getters);
    conc_chanq_unref(x->q);
  }
}

int conc__qproxies_onframe(conc__qproxies *t, unsigned type, conc__rd *r) {
  if (type != F_QREPLY)
    onqchanged(t, r);
  else if (onqreply(t, r) != 0)
    return -1;
  return r->bad ? -1 : 0;
}

void conc__qproxies_stop(conc__qproxies *t) {
  t->stop = 1;
  while (t->reqs != NULL) {
    conc__qreq *rq = t->reqs;
    t->reqs = rq->next;
    rq->code = CONC_EBROKEN;
    rq->done = 1;
  }
  pthread_cond_broadcast(&t->rcv);
}

void conc__qproxies_wakeall(conc__qproxies *t) {
  conc__qproxy *x;
  pthread_mutex_lock(&t->qmu);
  for (x = t->list; x != NULL; x = x->next) {
    conc__chanq_wakeup(x->q, 1);
    conc__chanq_wakeup(x->q, 0);
  }
  pthread_mutex_unlock(&t->qmu);
}

/* }====================================================================== */
