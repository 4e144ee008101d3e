#include "outq.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

/* Memory kept after the queue empties. */
#define KEEP_CAP (256 * 1024)
#define CAP_MIN 4096

uint8_t *mimd_outq_reserve(struct mimd_outq *q, size_t n) {
  if (q->buf != NULL && q->tail + n <= q->cap)
    return q->buf + q->tail;
  size_t used = mimd_outq_len(q);
  /* compacting moves `used` bytes; do it only when that frees at least as
   * much, which keeps copying amortised O(1) per byte */
  if (q->buf != NULL && LWS_PRE + used + n <= q->cap &&
      q->head - LWS_PRE >= used) {
    memmove(q->buf + LWS_PRE, q->buf + q->head, used);
    q->head = LWS_PRE;
    q->tail = LWS_PRE + used;
    return q->buf + q->tail;
  }
  if (used > SIZE_MAX - LWS_PRE - n)
    return NULL;
  size_t need = LWS_PRE + used + n;
  size_t cap = q->cap ? q->cap : CAP_MIN;
  while (cap < need) {
    if (cap > SIZE_MAX / 2)
      return NULL;
    cap *= 2;
  }
  uint8_t *nb = malloc(cap);
  if (nb == NULL)
    return NULL;
  if (used > 0)
    memcpy(nb + LWS_PRE, q->buf + q->head, used);
  free(q->buf);
  q->buf = nb;
  q->cap = cap;
  q->head = LWS_PRE;
  q->tail = LWS_PRE + used;
  return q->buf + q->tail;
}

void mimd_outq_commit(struct mimd_outq *q, size_t n) { q->tail += n; }

size_t mimd_outq_len(const struct mimd_outq *q) {
  return q->buf ? q->tail - q->head : 0;
}

uint8_t *mimd_outq_peek(const struct mimd_outq *q, size_t *len) {
  *len = mimd_outq_len(q);
  return *len > 0 ? q->buf + q->head : NULL;
}

void mimd_outq_consume(struct mimd_outq *q, size_t n) {
  q->head += n;
  if (q->head < q->tail)
    return;
  if (q->cap > KEEP_CAP) {
    mimd_outq_finish(q);
    return;
  }
  q->head = q->tail = LWS_PRE;
}

void mimd_outq_finish(struct mimd_outq *q) {
  free(q->buf);
  memset(q, 0, sizeof *q);
}
