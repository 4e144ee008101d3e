#include "outq.h"

#include <stdlib.h>
#include <string.h>

/* An idle link keeps no buffer larger than this: one burst (a 16 MiB
 * DELIVER) must not pin its memory for the link's lifetime. */
#define KEEP_MAX (256 * 1024)
#define CAP_MIN 4096

void outq_init(struct outq *q, size_t headroom) {
  *q = (struct outq){.headroom = headroom, .head = headroom, .tail = headroom};
}

void outq_finish(struct outq *q) {
  free(q->buf);
  outq_init(q, q->headroom);
}

size_t outq_len(const struct outq *q) { return q->tail - q->head; }

uint8_t *outq_reserve(struct outq *q, size_t n) {
  if (q->buf != NULL && q->cap - q->tail >= n)
    return q->buf + q->tail;
  size_t used = outq_len(q);
  if (used > SIZE_MAX - q->headroom - n)
    return NULL;
  size_t need = q->headroom + used + n;
  if (q->buf != NULL && need <= q->cap) {
    /* the consumed bytes at the front make enough room */
    memmove(q->buf + q->headroom, q->buf + q->head, used);
  } else {
    size_t cap = q->cap > CAP_MIN ? q->cap : CAP_MIN;
    while (cap < need) {
      if (cap > SIZE_MAX / 2)
        return NULL;
      cap *= 2;
    }
    uint8_t *nb = malloc(cap);
    if (nb == NULL)
      return NULL;
    if (used > 0)
      memcpy(nb + q->headroom, q->buf + q->head, used);
    free(q->buf);
    q->buf = nb;
    q->cap = cap;
  }
  q->head = q->headroom;
  q->tail = q->headroom + used;
  return q->buf + q->tail;
}

void outq_commit(struct outq *q, size_t n) { q->tail += n; }

uint8_t *outq_peek(const struct outq *q, size_t *len) {
  *len = outq_len(q);
  return *len > 0 ? q->buf + q->head : NULL;
}

void outq_consume(struct outq *q, size_t n) {
  q->head += n;
  if (q->head < q->tail)
    return;
  q->head = q->tail = q->headroom;
  if (q->cap > KEEP_MAX) {
    free(q->buf);
    q->buf = NULL;
    q->cap = 0;
  }
}
