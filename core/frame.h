/*
** frame.h: the process pool's wire (frame.c): length-prefixed frames of
** little-endian fields over a socket, shared by the supervisor (proc.c)
** and its children (child.c). Internal to core/.
*/
#ifndef CONC_FRAME_H
#define CONC_FRAME_H

#include <stdint.h>

#include "internal.h"

/*
** frame   := u32 length, then 'length' body bytes
** body    := type field*
**   F_START  (child)   i32 code, message        its runtime started (0)
**                                               or not (a CONC_E* code)
**   F_TASK   (parent)  u64 task, f64 timeout, payload
**                                               run this (timeout 0: no
**                                               time limit)
**   F_RESULT (child)   u64 task, u8 failed, u64 memory, payload
**                                               its outcome, and the bytes
**                                               the child's state holds
**   F_FUTURE (parent)  u64 id, u8 cancelled, u8 failed, payload
**                                               a forwarded future is done
**   F_STOP   (parent)                           finish and exit
**   F_CANCEL (parent)  u64 task                 stop it (running or queued)
**   F_STUCK  (child)   u64 task, u8 failed, u64 memory, payload
**                                               as F_RESULT, for a task
**                                               stuck where no stop
**                                               reaches: its outcome as
**                                               stopped; the child exits
** A child works on the parent's queues by requests, each answered by
** one F_QREPLY; 'wake' asks, when the queue is full (put) or empty
** (get), for an F_QCHANGED at its next change of that kind.
**   F_QPUT   (child)   u64 req, u64 queue, u8 wake, payload
**   F_QGET   (child)   u64 req, u64 queue, u8 wake
**   F_QCLOSE (child)   u64 req, u64 queue
**   F_QLEN   (child)   u64 req, u64 queue
**   F_QUNGET (child)   u64 req, u64 queue, payload
**                                               a value an F_QGET took,
**                                               which its taker could not
**                                               use: first again
**   F_QREPLY (parent)  u64 req, i32 code        0 or a CONC_E* code; then
**                                               a got value's payload
**                                               (F_QGET), or u64 length,
**                                               u64 maxsize, u8 closed
**                                               (F_QLEN)
**   F_QCHANGED (parent) u64 queue, u8 getters   it changed for its getters
**                                               (a put, a close) or its
**                                               putters (a get, a close)
**   F_QDROP  (child)   u64 queue, u32 n         the child holds it no more,
**                                               after n mentions of it in
**                                               payloads the parent sent
** f64     := the bits of an IEEE double, as a u64
** payload := u8 kind, u32 n, u64 id{n}, bytes to the end of the body:
**            the ids name forwarded futures and queues (the parent's
**            numbering; a queue's has CONC__QID set). Only queues of
**            the parent cross from a child.
** message := bytes to the end of the body
*/
enum { F_START = 1, F_TASK, F_RESULT, F_FUTURE, F_STOP, F_CANCEL,
       F_QPUT, F_QGET, F_QCLOSE, F_QLEN, F_QREPLY, F_QCHANGED, F_QDROP,
       F_STUCK, F_QUNGET };

/* The bit of an id that names a queue, not a future. */
#define CONC__QID ((uint64_t)1 << 63)

/* Largest frame body: a longer length is corruption (or a result no
** process should hold), never an allocation. */
#if !defined(CONC_FRAME_MAX)
#define CONC_FRAME_MAX ((size_t)1 << 30)
#endif

/* CONC_FRAME_MAX as messages give it. */
#if !defined(CONC__FRAME_MAXTEXT)
#define CONC__FRAME_MAXTEXT "1 GiB"
#endif

/* Body bytes of an F_TASK and an F_RESULT before their payload: the
** type and the fields before it (the table above). */
#define CONC__TASKHEAD (1 + 8 + 8)
#define CONC__RESULTHEAD (1 + 8 + 1 + 8)
/* ... and of an F_FUTURE, an F_QPUT, an F_QUNGET and an F_QREPLY. */
#define CONC__FUTUREHEAD (1 + 8 + 1 + 1)
#define CONC__QPUTHEAD (1 + 8 + 8 + 1)
#define CONC__QUNGETHEAD (1 + 8 + 8)
#define CONC__QREPLYHEAD (1 + 8 + 4)

/* Whether the payload 'p' fits in a frame whose body has 'head' bytes
** before the payload's own (its kind, list and bytes): frame_end takes
** a frame past CONC_FRAME_MAX back whole. */
CONC__FUNC int conc__payload_fits(const conc_payload_t *p, size_t head);
/* A task's outcome 'out' (taken; 'failed' its kind), or, when it does
** not fit after 'head' bytes, an error saying so in its place (and
** '*failed' set); NULL when 'out' is, or no memory is left for the
** error. Sent as it is, such an outcome's frame would be taken back, and
** the worker could not answer for its task. */
CONC__FUNC conc_payload_t *conc__payload_fitting(conc_payload_t *out,
                                                 size_t head, int *failed);

/* Bytes to write: frames appended at 'n', written from 'off'. */
typedef struct conc__wbuf {
  char *b;
  size_t n, off, size;
  int failed;   /* an append ran out of memory: the frame is incomplete */
} conc__wbuf;

CONC__FUNC void conc__wbuf_free(conc__wbuf *w);
/* Start a frame of 'type' (its length is patched by frame_end). */
CONC__FUNC size_t conc__frame_begin(conc__wbuf *w, int type);
CONC__FUNC void conc__frame_end(conc__wbuf *w, size_t start);
/* As frame_end, for a frame whose last 'tail' bytes are not in 'w': they
** go out after it (conc__wbuf_flushtail). */
CONC__FUNC void conc__frame_endtail(conc__wbuf *w, size_t start,
                                    size_t tail);
CONC__FUNC void conc__put8(conc__wbuf *w, unsigned v);
CONC__FUNC void conc__put32(conc__wbuf *w, uint32_t v);
CONC__FUNC void conc__put64(conc__wbuf *w, uint64_t v);
CONC__FUNC void conc__putf64(conc__wbuf *w, double v);
CONC__FUNC void conc__putbytes(conc__wbuf *w, const void *b, size_t n);
/* A payload whose futures are named by 'ids'. */
CONC__FUNC void conc__putpayload(conc__wbuf *w, const conc_payload_t *p,
                                 const uint64_t *ids);
/* The same but its bytes (conc_payload_data, p->size), for a frame that
** sends them as its tail. */
CONC__FUNC void conc__putpayloadhead(conc__wbuf *w, const conc_payload_t *p,
                                     const uint64_t *ids);
/* Write what the socket takes without blocking: 0, or CONC_ESYS. */
CONC__FUNC int conc__wbuf_flush(int fd, conc__wbuf *w);
/* Write everything to the socket, blocking: 0, or CONC_ESYS. */
CONC__FUNC int conc__wbuf_flushall(int fd, conc__wbuf *w);
/* The same, then the 'n' bytes at 'tail', in one call where the socket
** takes them (no copy of the tail into 'w'). */
CONC__FUNC int conc__wbuf_flushtail(int fd, conc__wbuf *w, const void *tail,
                                    size_t n);

/* A frame body being read. */
typedef struct conc__rd {
  const unsigned char *p, *end;
  int bad;     /* read past the end: the frame is corrupt */
} conc__rd;

CONC__FUNC unsigned conc__get8(conc__rd *r);
CONC__FUNC uint32_t conc__get32(conc__rd *r);
CONC__FUNC uint64_t conc__get64(conc__rd *r);
CONC__FUNC double conc__getf64(conc__rd *r);
/* The payload at 'r' (to the end of the body) with its ids in '*ids'
** (malloc'd; NULL when none): NULL when corrupt or out of memory
** ('*nomem' tells which); its future entries are left empty. */
CONC__FUNC conc_payload_t *conc__getpayload(conc__rd *r, uint64_t **ids,
                                            int *nomem);

#endif
