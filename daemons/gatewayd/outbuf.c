#include "outbuf.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

/* Memory kept after the queue empties; a bigger buffer (after a burst) is
 * released so one spike does not pin memory for the process lifetime. */
#define KEEP_CAP (256 * 1024)

uint8_t *gw_outbuf_reserve(struct gw_outbuf *b, size_t n) {
  if (b->buf != NULL && b->tail + n <= b->cap)
    return b->buf + b->tail;
  size_t pending = gw_outbuf_pending(b);
  /* compacting moves `pending` bytes; worth it when it frees at least as
   * much, which keeps the copying amortised O(1) per byte */
  if (b->buf != NULL && LWS_PRE + pending + n <= b->cap &&
      b->head - LWS_PRE >= pending) {
    memmove(b->buf + LWS_PRE, b->buf + b->head, pending);
    b->head = LWS_PRE;
    b->tail = LWS_PRE + pending;
    return b->buf + b->tail;
  }
  size_t need = LWS_PRE + pending + n;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < need) {
    if (cap > SIZE_MAX / 2)
      return NULL;
    cap *= 2;
  }
  uint8_t *nb = malloc(cap);
  if (nb == NULL)
    return NULL;
  if (pending > 0)
    memcpy(nb + LWS_PRE, b->buf + b->head, pending);
  free(b->buf);
  b->buf = nb;
  b->cap = cap;
  b->head = LWS_PRE;
  b->tail = LWS_PRE + pending;
  return b->buf + b->tail;
}

void gw_outbuf_commit(struct gw_outbuf *b, size_t n) { b->tail += n; }

size_t gw_outbuf_pending(const struct gw_outbuf *b) {
  return b->buf ? b->tail - b->head : 0;
}

uint8_t *gw_outbuf_head(struct gw_outbuf *b) { return b->buf + b->head; }

void gw_outbuf_consume(struct gw_outbuf *b, size_t n) {
  b->head += n;
  if (b->head == b->tail) {
    if (b->cap > KEEP_CAP) {
      gw_outbuf_reset(b);
      return;
    }
    b->head = b->tail = LWS_PRE;
  }
}

void gw_outbuf_reset(struct gw_outbuf *b) {
  free(b->buf);
  memset(b, 0, sizeof *b);
}
