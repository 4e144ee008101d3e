/* A byte queue for one socket's output, shared by the daemons: frames are
 * appended at the tail and written from the head in the WRITEABLE callback.
 * LWS_PRE bytes of headroom always precede the head, so lws_write() can use
 * the queued bytes in place, without a copy. A zeroed struct is a valid,
 * empty queue. */
#ifndef MIMD_OUTQ_H
#define MIMD_OUTQ_H

#include <stddef.h>
#include <stdint.h>

struct mimd_outq {
  uint8_t *buf;
  size_t cap;
  size_t head; /* first unwritten byte; >= LWS_PRE once allocated */
  size_t tail; /* end of the queued bytes */
};

/* Room for `n` more bytes at the tail; write them, then mimd_outq_commit().
 * NULL when out of memory (the queue is unchanged). */
uint8_t *mimd_outq_reserve(struct mimd_outq *q, size_t n);

/* Appends the `n` bytes written after the last reserve. */
void mimd_outq_commit(struct mimd_outq *q, size_t n);

/* Bytes queued and not yet written. */
size_t mimd_outq_len(const struct mimd_outq *q);

/* The first unwritten byte (LWS_PRE bytes of headroom before it) and, in
 * `*len`, how many follow; NULL when empty. */
uint8_t *mimd_outq_peek(const struct mimd_outq *q, size_t *len);

/* Drops the first `n` bytes (written). An emptied queue keeps a small
 * buffer for reuse and frees a large one, so one burst does not pin its
 * memory for the socket's lifetime. */
void mimd_outq_consume(struct mimd_outq *q, size_t n);

/* Frees the buffer and empties the queue. */
void mimd_outq_finish(struct mimd_outq *q);

#endif
