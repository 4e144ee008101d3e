/* A per-link output queue: encoded frames waiting for the socket, as one
 * contiguous byte range. Frames are encoded straight into it (reserve, then
 * commit) and written from it without a copy: at least `headroom` spare
 * bytes always precede the unread data, which is what lws_write() needs
 * (LWS_PRE) in front of the buffer it is given. */
#ifndef LOGICD_OUTQ_H
#define LOGICD_OUTQ_H

#include <stddef.h>
#include <stdint.h>

struct outq {
  uint8_t *buf;
  size_t head;     /* first unread byte; >= headroom */
  size_t tail;     /* end of the queued bytes */
  size_t cap;
  size_t headroom;
};

void outq_init(struct outq *q, size_t headroom);

/* Frees the buffer. */
void outq_finish(struct outq *q);

/* Bytes queued. */
size_t outq_len(const struct outq *q);

/* Room for `n` more bytes at the tail, valid until the next call on `q`;
 * NULL when out of memory. Nothing is queued until outq_commit(). */
uint8_t *outq_reserve(struct outq *q, size_t n);

/* Queues `n` bytes written at the pointer outq_reserve() gave. */
void outq_commit(struct outq *q, size_t n);

/* The unread bytes (`*len` of them), with `headroom` writable bytes before
 * the returned pointer. NULL when empty. */
uint8_t *outq_peek(const struct outq *q, size_t *len);

/* Drops `n` written bytes from the head. */
void outq_consume(struct outq *q, size_t n);

#endif
