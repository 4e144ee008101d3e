/* http_gw.c: the HTTP gateway on the public port: POST /http/v1/<command>
 * (one JSON request per HTTP request, a transient login) and GET
 * /http/v1/events (Server-Sent Events: a logged-in stream of the inbox).
 * Depends on client.h, tx.h, front.h, http_json.h; reports upward through
 * struct gw_http_ops (like rx.h), so that the client side's one path for
 * frames (clients.c) serves these transports as well. */
#ifndef GATEWAYD_HTTP_GW_H
#define GATEWAYD_HTTP_GW_H

#include "client.h"

#include <libwebsockets.h>

struct gw;

/* Every path of the HTTP gateway starts with this. */
#define GW_HTTP_PREFIX "/http/v1/"

/* What the HTTP gateway asks of the client side; set by its caller. */
struct gw_http_ops {
  /* Registers `c` (zeroed but for what http_gw.c set) as a connection:
   * a conn_id, the auth deadline, rate buckets. Returns 0 or -1. */
  int (*open)(struct gw *gw, struct client *c, struct lws *wsi);
  /* A frame from the client, as if received: the one request path
   * (limits, pending FIFO, forwarding). `body` borrowed. */
  void (*frame)(struct gw *gw, struct client *c, const struct mim_header *h,
                const uint8_t *body);
};

/* LWS_CALLBACK_HTTP for a path under GW_HTTP_PREFIX (`uri` borrowed): `c`
 * is the connection's zeroed per-session data. Returns what the callback
 * returns (-1: lws closes). */
int gw_http_request(struct gw *gw, const struct gw_http_ops *ops,
                    struct client *c, struct lws *wsi, const char *uri);
/* LWS_CALLBACK_HTTP_BODY / _BODY_COMPLETION. */
int gw_http_body(struct gw *gw, struct client *c, const void *in, size_t len);
int gw_http_body_done(struct gw *gw, struct client *c);
/* LWS_CALLBACK_HTTP_WRITEABLE. Returns -1 to have lws close. */
int gw_http_writeable(struct gw *gw, struct client *c);
/* LWS_CALLBACK_TIMER: the SSE heartbeat. */
int gw_http_timer(struct gw *gw, struct client *c);
/* Frees the HTTP state of `c` (and its queue); idempotent. */
void gw_http_free(struct client *c);

#endif
