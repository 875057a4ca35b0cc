/*
** frame.c: the process pool's frames (format: frame.h). Appending never
** fails on the spot: an out-of-memory append marks the buffer failed,
** and its owner drops the frame.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "frame.h"

void conc__wbuf_free(conc__wbuf *w) {
  free(w->b);
  memset(w, 0, sizeof(*w));
}

/* Room for 'k' more bytes at 'n' (a written prefix is dropped first). */
static int reserve(conc__wbuf *w, size_t k) {
  if (w->failed)
    return 0;
  if (w->off > 0 && w->off == w->n)
    w->off = w->n = 0;
  if (w->size - w->n < k) {
    size_t want = w->size ? w->size : 256;
    char *b;
    while (want - w->n < k) {
      if (want > ((size_t)-1) / 2) {
        w->failed = 1;
        return 0;
      }
      want *= 2;
    }
    b = (char *)realloc(w->b, want);
    if (b == NULL) {
      w->failed = 1;
      return 0;
    }
    w->b = b;
    w->size = want;
  }
  return 1;
}

void conc__putbytes(conc__wbuf *w, const void *b, size_t n) {
  if (n > 0 && reserve(w, n)) {
    memcpy(w->b + w->n, b, n);
    w->n += n;
  }
}

void conc__put8(conc__wbuf *w, unsigned v) {
  unsigned char c = (unsigned char)v;
  conc__putbytes(w, &c, 1);
}

void conc__put32(conc__wbuf *w, uint32_t v) {
  unsigned char c[4];
  int i;
  for (i = 0; i < 4; i++)
    c[i] = (unsigned char)(v >> (8 * i));
  conc__putbytes(w, c, 4);
}

void conc__put64(conc__wbuf *w, uint64_t v) {
  conc__put32(w, (uint32_t)v);
  conc__put32(w, (uint32_t)(v >> 32));
}

void conc__putf64(conc__wbuf *w, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof(bits));
  conc__put64(w, bits);
}

size_t conc__frame_begin(conc__wbuf *w, int type) {
  size_t start;
  w->failed = 0;
  if (w->off > 0 && w->off == w->n)
    w->off = w->n = 0;
  start = w->n;
  conc__put32(w, 0);
  conc__put8(w, (unsigned)type);
  return start;
}

void conc__frame_end(conc__wbuf *w, size_t start) {
  conc__frame_endtail(w, start, 0);
}

/* Patch the length; a failed or oversized frame is taken back whole. */
void conc__frame_endtail(conc__wbuf *w, size_t start, size_t tail) {
  size_t len = w->n - start - 4 + tail;
  int i;
  if (w->failed || tail > CONC_FRAME_MAX || len > CONC_FRAME_MAX) {
    w->n = start;
    w->failed = 1;
    return;
  }
  for (i = 0; i < 4; i++)
    w->b[start + i] = (char)(unsigned char)(len >> (8 * i));
}

void conc__putpayloadhead(conc__wbuf *w, const conc_payload_t *p,
                          const uint64_t *ids) {
  size_t i;
  conc__put8(w, (unsigned)p->kind);
  conc__put32(w, (uint32_t)p->nfutures);
  for (i = 0; i < p->nfutures; i++)
    conc__put64(w, ids[i]);
}

int conc__payload_fits(const conc_payload_t *p, size_t head) {
  size_t list = 1 + 4;  /* kind, count, then an id per entry */
  if (p->nfutures > (CONC_FRAME_MAX - list) / 8)
    return 0;
  list += 8 * p->nfutures;
  return head + list <= CONC_FRAME_MAX
         && p->size <= CONC_FRAME_MAX - head - list;
}

conc_payload_t *conc__payload_fitting(conc_payload_t *out, size_t head,
                                      int *failed) {
  char msg[160];
  if (out == NULL || conc__payload_fits(out, head))
    return out;
  snprintf(msg, sizeof(msg), "cannot transfer %s (%zu bytes: %s)",
           *failed ? "error" : "results", out->size,
           conc_strerror(CONC_E2BIG));
  conc_payload_free(out);
  *failed = 1;
  return conc_payload_error("", msg);
}

void conc__putpayload(conc__wbuf *w, const conc_payload_t *p,
                      const uint64_t *ids) {
  conc__putpayloadhead(w, p, ids);
  conc__putbytes(w, conc_payload_data(p), p->size);
}

/* Sockets only: MSG_NOSIGNAL, so that a dead peer is an EPIPE, never a
** SIGPIPE in a host that did not ask for one. */
int conc__wbuf_flush(int fd, conc__wbuf *w) {
  while (w->off < w->n) {
    ssize_t k = send(fd, w->b + w->off, w->n - w->off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 0;
    if (k < 0)
      return CONC_ESYS;
    w->off += (size_t)k;
  }
  w->off = w->n = 0;
  return 0;
}

int conc__wbuf_flushall(int fd, conc__wbuf *w) {
  return conc__wbuf_flushtail(fd, w, NULL, 0);
}

/* One sendmsg of both parts, as long as the socket takes them whole. */
int conc__wbuf_flushtail(int fd, conc__wbuf *w, const void *tail,
                         size_t n) {
  const char *t = (const char *)tail;
  while (w->off < w->n || n > 0) {
    struct iovec iov[2];
    struct msghdr m;
    size_t head = w->n - w->off;
    ssize_t k;
    memset(&m, 0, sizeof(m));
    m.msg_iov = iov;
    if (head > 0) {
      iov[m.msg_iovlen].iov_base = w->b + w->off;
      iov[m.msg_iovlen++].iov_len = head;
    }
    if (n > 0) {
      iov[m.msg_iovlen].iov_base = (void *)t;
      iov[m.msg_iovlen++].iov_len = n;
    }
    k = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0)
      return CONC_ESYS;
    if ((size_t)k <= head) {
      w->off += (size_t)k;
    } else {
      w->off = w->n;
      t += (size_t)k - head;
      n -= (size_t)k - head;
    }
  }
  w->off = w->n = 0;
  return 0;
}

unsigned conc__get8(conc__rd *r) {
  if (r->end - r->p < 1) {
    r->bad = 1;
    return 0;
  }
  return *r->p++;
}

uint32_t conc__get32(conc__rd *r) {
  uint32_t v = 0;
  int i;
  if (r->end - r->p < 4) {
    r->bad = 1;
    return 0;
  }
  for (i = 0; i < 4; i++)
    v |= (uint32_t)r->p[i] << (8 * i);
  r->p += 4;
  return v;
}

uint64_t conc__get64(conc__rd *r) {
  uint64_t lo = conc__get32(r);
  return lo | (uint64_t)conc__get32(r) << 32;
}

double conc__getf64(conc__rd *r) {
  uint64_t bits = conc__get64(r);
  double v;
  memcpy(&v, &bits, sizeof(v));
  return v;
}

conc_payload_t *conc__getpayload(conc__rd *r, uint64_t **ids, int *nomem) {
  unsigned kind = conc__get8(r);
  uint32_t n = conc__get32(r), i;
  conc_payload_t *p;
  *ids = NULL;
  *nomem = 0;
  if (r->bad || kind > CONC_PAYLOAD_ERROR || n > (size_t)(r->end - r->p) / 8)
    return NULL;
  if (n > 0 && (*ids = (uint64_t *)malloc(n * sizeof(uint64_t))) == NULL) {
    *nomem = 1;
    return NULL;
  }
  for (i = 0; i < n; i++)
    (*ids)[i] = conc__get64(r);
  p = conc_payload_new(r->p, (size_t)(r->end - r->p), n);
  if (p == NULL) {
    free(*ids);
    *ids = NULL;
    *nomem = 1;
    return NULL;
  }
  p->kind = (int)kind;
  r->p = r->end;
  return p;
}
