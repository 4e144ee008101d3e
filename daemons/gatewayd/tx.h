/* tx.c: per-connection send queue, local packets, closing. Depends on
 * client.h only. */
#ifndef GATEWAYD_TX_H
#define GATEWAYD_TX_H

#include "client.h"

struct gw;

/* A node for a `frame_len`-byte frame (LWS_PRE headroom included), or
 * NULL. The caller fills data + LWS_PRE and may lower `len`. */
struct qnode *gw_qnode_new(size_t frame_len);
/* Takes `n`. Dropped if `c` is closing; over send_queue_bytes the client
 * is cut off as a slow consumer. */
void gw_queue(struct gw *gw, struct client *c, struct qnode *n);
/* Encodes `p` and queues it; `force` ignores the bound (for the one packet
 * that explains a close). Errors: -EINVAL, -ENOMEM, encoder errors. */
int gw_send_packet(struct gw *gw, struct client *c, const struct mim_packet *p,
                   bool force);
/* Queues Error{code of `err` (a negative libmim code), msg (NULL: the
 * standard text), seq, cmd, retryable}. */
int gw_send_error(struct gw *gw, struct client *c, int err, int64_t seq,
                  uint32_t cmd, const char *msg);
/* Queues Kick{reason, text, uid of `c`}, past the queue bound: the packet
 * that explains the close that follows. */
void gw_send_kick(struct gw *gw, struct client *c, int32_t reason,
                  const char *text);
/* Stops taking frames for `c`; once its queue is written it gets a close
 * frame with `code` and `reason` (a static string); a TCP stream gets a
 * FIN instead (no code). A client that does not read is dropped after a
 * grace period. */
/* A closing connection gets this long (seconds) to take its last frames
 * and the close frame; then lws drops it. */
#define GW_CLOSE_GRACE_S 3

void gw_close(struct gw *gw, struct client *c, uint16_t code,
              const char *reason);
/* The same, after an Error{err, msg = reason, cmd} (seq 0: a frame that
 * is refused was never read that far). */
void gw_close_with_error(struct gw *gw, struct client *c, int err, uint32_t cmd,
                         uint16_t code, const char *reason);
/* LWS_CALLBACK_SERVER_WRITEABLE (websocket) or LWS_CALLBACK_RAW_WRITEABLE
 * (TCP). Returns -1 to have lws close. */
int gw_writeable(struct gw *gw, struct client *c);
void gw_queue_free(struct client *c);
/* Wall clock in ms (the `ts` of packets made here). */
int64_t gw_now_ms(void);

#endif
