/*
** remoteq.h: queues across processes (remoteq.c). A task sent to another
** process may hold queues of this one (the host's): the peer that runs
** it gets a proxy for each, whose operations come back as requests
** (frame.h's F_Q* frames) that the host carries out on the queue itself.
** Shared by the back-ends that send tasks over a transport: the process
** pool (proc.c hosts, child.c proxies) and the MPI pool (mpi/mpicomm.c,
** rank 0 hosts, the worker ranks proxy). Internal to core/.
*/
#ifndef CONC_REMOTEQ_H
#define CONC_REMOTEQ_H

#include <stdint.h>

#include "forward.h"


/* {======================================================================
** The host: its queues, as its peers know them
** ======================================================================= */

typedef struct conc__qhost conc__qhost;
typedef struct conc__qlink conc__qlink;
typedef struct conc__qwatch conc__qwatch;

/* A peer of the host (a child, a rank), private to the host's thread.
** 'brief' holds, whole and length-prefixed as in 'out', the frame that
** stands in for the one last made in 'out' if that one cannot be sent:
** for a reply, the same reply saying CONC_ENOMEM; for a change notice,
** itself. Small and in place, it needs no memory to send. */
typedef struct conc__qpeer {
  conc__qlink *links;           /* the queues it knows */
  uintptr_t who;                /* its name in 'host->fwd' */
  conc__qhost *host;
  conc__wbuf *out;              /* where frames to it are made */
  char brief[24];
  size_t nbrief;
} conc__qpeer;

/* One back-end's host. 'sent' is told of each frame ended in a peer's
** 'out', to send it: the peer waits for it, so one that cannot be sent
** (the buffer 'failed': out of memory) must end that wait some other
** way (the peer's 'brief', or ending the peer). 'wake' is called on any
** thread, under a future's lock, to make the back-end's thread call
** conc__qhost_tell. */
struct conc__qhost {
  conc__fwdtab *fwd;            /* futures forwarded beside: its ids
                                ** number the queues too */
  conc__qwatch *fired;          /* stack of fired waits, pushed atomically */
  void (*wake)(conc__qhost *h);
  void (*sent)(conc__qhost *h, conc__qpeer *peer);
  int fifo;                     /* see conc__qhost_fifo */
  conc__queue line[2];          /* the peers' waits for putters, getters,
                                ** in the order they came (fifo) */
};

/* From now on the peers' waits on a queue are served in the order they
** came: what the queue holds (its values for getters, its free slots for
** putters) goes first to the peers that wait longest, and a later peer's
** try waits behind them. The back-end then calls conc__qhost_release
** when a peer's task ends, since a task stopped while it waited never
** says so. Threads of the host itself take their turn as they come. */
CONC__FUNC void conc__qhost_fifo(conc__qhost *h);
/* The peer's task ended: its waits leave the line (a wait of a thread
** that outlived its task is still told when the queue changes). */
CONC__FUNC void conc__qhost_release(conc__qpeer *peer);

/* The ids under which the futures and queues of 'pl' cross to the peer
** (malloc'd; NULL when none, or with '*ok' 0 when out of memory). Its
** first parameter is a conc__qpeer *, so that it serves as
** conc__fwd_putnews's 'ids'. */
CONC__FUNC uint64_t *conc__qhost_ids(void *peer, const conc_payload_t *pl,
                                     int *ok);
/* Fill the entries of 'pl' (from 'peer') with the host's queues that
** 'ids' name: 0, or -1 when one is not a queue 'peer' knows. */
CONC__FUNC int conc__qhost_bind(conc__qpeer *peer, conc_payload_t *pl,
                                const uint64_t *ids);
/* Whether a frame of 'type' from a peer is a queue request. */
CONC__FUNC int conc__qhost_isrequest(unsigned type);
/* Carry out the request of 'type' at 'r' from 'peer' and reply ('toobig':
** only the head of an F_QPUT came, its value did not fit in memory): 0,
** or -1 when the frame is corrupt. */
CONC__FUNC int conc__qhost_request(conc__qpeer *peer, conc__rd *r,
                                   unsigned type, int toobig);
/* Tell each peer whose wait fired that its queue changed. */
CONC__FUNC void conc__qhost_tell(conc__qhost *h);
/* The peer is gone, or the host ends: it knows no queue any more. */
CONC__FUNC void conc__qhost_forget(conc__qpeer *peer);

/* }====================================================================== */


/* {======================================================================
** The proxies: a peer's side
** ======================================================================= */

typedef struct conc__qproxy conc__qproxy;
typedef struct conc__qreq conc__qreq;

/* A peer's proxies of its host's queues. 'begin' starts a frame of
** 'type' to the host, taking the writer (it cannot fail, as the host's);
** 'send' sends the frame ended in
** 'w' (unless 'drop') and gives the writer back; 'asked' (optional,
** under 'mu') learns that a request awaits its reply; 'readpayload'
** reads the payload of a reply with its proxies bound (it does not
** return on corruption). */
typedef struct conc__qproxies {
  pthread_mutex_t *mu;          /* the back-end's: guards what follows,
                                ** up to 'qmu' */
  pthread_cond_t rcv;           /* a reply came (waited with 'mu') */
  conc__qreq *reqs;             /* awaiting their reply */
  int stop;                     /* no reply will come any more */
  uint64_t nextreq;             /* atomic */
  pthread_mutex_t qmu;          /* guards 'list' */
  conc__qproxy *list;
  conc__wbuf *(*begin)(struct conc__qproxies *t, int type, size_t *at);
  void (*send)(struct conc__qproxies *t, conc__wbuf *w, int drop);
  void (*asked)(struct conc__qproxies *t);
  conc_payload_t *(*readpayload)(struct conc__qproxies *t, conc__rd *r);
} conc__qproxies;

/* 0, or CONC_ESYS; the hooks are the caller's to set (before or after). */
CONC__FUNC int conc__qproxies_init(conc__qproxies *t, pthread_mutex_t *mu);
/* The proxy of the host's queue 'id', named once more by a payload from
** the host, made on first sight: a reference for the caller, or NULL
** when out of memory. */
CONC__FUNC conc_chanq_t *conc__qproxies_get(conc__qproxies *t, uint64_t id);
/* The ids under which the shared objects of 'p' go back to the host
** ('*ids' malloc'd, NULL when none): 0, CONC_ENOMEM, or CONC_EINVAL when
** one cannot: only the host's own queues can (a future, or a queue made
** here, could not be told from the host's). */
CONC__FUNC int conc__qproxies_outids(const conc_payload_t *p,
                                     uint64_t **ids);
/* Handle an F_QREPLY or F_QCHANGED at 'r' (its type read): 0, or -1
** when it is corrupt. */
CONC__FUNC int conc__qproxies_onframe(conc__qproxies *t, unsigned type,
                                      conc__rd *r);
/* (Under 'mu'.) No reply will come: every request waiting fails with
** CONC_EBROKEN, and later ones at once. */
CONC__FUNC void conc__qproxies_stop(conc__qproxies *t);
/* (Not under 'mu', after conc__qproxies_stop.) Wake every wait here on
** a queue of the host: each asks again and fails, as no change notice
** can come any more. */
CONC__FUNC void conc__qproxies_wakeall(conc__qproxies *t);

/* }====================================================================== */

#endif
