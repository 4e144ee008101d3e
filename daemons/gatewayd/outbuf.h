/* A byte queue for one stream link: bytes are appended at the tail and
 * written from the head. At least LWS_PRE bytes always precede the head
 * (free headroom at first, already-written bytes later), so lws_write() can
 * be handed the head directly, without a copy. */
#ifndef GATEWAYD_OUTBUF_H
#define GATEWAYD_OUTBUF_H

#include <stddef.h>
#include <stdint.h>

struct gw_outbuf {
  uint8_t *buf;
  size_t cap;
  size_t head; /* first unwritten byte; >= LWS_PRE */
  size_t tail; /* end of data */
};

/* Space for `n` more bytes at the tail, or NULL (out of memory). Write at
 * most `n` bytes there, then gw_outbuf_commit() what was written. */
uint8_t *gw_outbuf_reserve(struct gw_outbuf *b, size_t n);
void gw_outbuf_commit(struct gw_outbuf *b, size_t n);

/* Bytes queued and not yet consumed; where they start. */
size_t gw_outbuf_pending(const struct gw_outbuf *b);
uint8_t *gw_outbuf_head(struct gw_outbuf *b);

/* Drops `n` (<= pending) bytes from the head, once written. */
void gw_outbuf_consume(struct gw_outbuf *b, size_t n);

/* Drops everything and frees the memory. */
void gw_outbuf_reset(struct gw_outbuf *b);

#endif
