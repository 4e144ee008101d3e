/* rx.c: websocket message -> frames (reassembly, limits, batching).
 * Depends on client.h and tx.h; reports frames through struct gw_rx_ops. */
#ifndef GATEWAYD_RX_H
#define GATEWAYD_RX_H

#include "client.h"

struct gw;

/* What rx.c does with a frame once its header is in. */
enum gw_screen {
  GW_TAKE,   /* buffer the body and hand the frame to gw_client_on_frame() */
  GW_SKIP,   /* refused unread: drop the body, then gw_client_on_frame()
                with body NULL answers it */
  GW_CLOSED, /* refused with a close: nothing more to do */
};

/* Decides about a frame from its header alone (docs/protocol.md §2, §6):
 * server-to-client and unknown commands and unknown versions are never
 * decoded; before login, and for any AuthRequest, bodies above
 * auth_max_body close the connection. */

/* What rx.c reports upward; set by its caller (clients.c). */
struct gw_rx_ops {
  /* Decides about a frame from its header alone. */
  enum gw_screen (*screen)(struct gw *gw, struct client *c,
                           const struct mim_header *h);
  /* A complete frame (body NULL when it was skipped), borrowed for the
   * call. */
  void (*frame)(struct gw *gw, struct client *c, const struct mim_header *h,
                const uint8_t *body);
};


/* One piece of a websocket message, or one read of a TCP stream (then
 * `first` and `final` are false) (`in` borrowed for the call). Complete
 * frames go to ops->frame; a protocol error queues an Error and
 * starts the close, so there is nothing for the caller to do. */
void gw_rx(struct gw *gw, const struct gw_rx_ops *ops, struct client *c,
           const uint8_t *in, size_t len, bool first, bool final);
/* Drops a half-received frame. */
void gw_rx_reset(struct client *c);

#endif
