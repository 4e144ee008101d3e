/* A small HTTP listener for operators: GET /metrics (mimd_metrics_render()),
 * GET /readyz (200 or 503 from a readiness callback) and GET /healthz
 * (200 while the loop runs), as an extra vhost of a daemon's lws context.
 *
 * It is deliberately separate from a daemon's other listeners (gatewayd's
 * `[gateway] metrics_listen`) so that it can be bound to loopback or a
 * private network while the public port stays public. Only GET
 * of those three paths is served (HEAD too is 405); anything else is
 * 404 or 405, and a websocket handshake is refused. At most
 * MIMD_METRICS_HTTP_CONNS sockets at once (idle or not: more are closed at
 * accept), each closed after MIMD_METRICS_HTTP_TIMEOUT_S seconds without
 * a request. Runs on the loop thread. */
#ifndef MIMD_METRICS_HTTP_H
#define MIMD_METRICS_HTTP_H

#include <libwebsockets.h>
#include <stdbool.h>

#define MIMD_METRICS_HTTP_CONNS 64
#define MIMD_METRICS_HTTP_TIMEOUT_S 10

struct mimd_metrics_http {
  struct lws_vhost *vhost;
  struct lws_protocols protocols[2];
  bool (*ready)(void *user); /* /readyz: true = 200 */
  void *user;
  unsigned conns; /* sockets accepted and not yet destroyed */
  char iface[64];
};

/* Listens on `addr` ("HOST:PORT", see addr.h; not unix sockets) as a new
 * vhost of `context` (which must have been created with
 * LWS_SERVER_OPTION_EXPLICIT_VHOSTS). `h` is caller-owned and must stay put
 * until the context is destroyed; `ready` (may be NULL: always ready) is
 * called on the loop thread with `user`. Errors: -EINVAL bad address;
 * -EADDRINUSE cannot bind (logged by the caller). */
int mimd_metrics_http_start(struct mimd_metrics_http *h,
                            struct lws_context *context, const char *addr,
                            bool (*ready)(void *user), void *user);

/* The port bound (useful with port 0), or -1. */
int mimd_metrics_http_port(const struct mimd_metrics_http *h);

/* Answers a plain HTTP request on another vhost (a websocket port's
 * LWS_CALLBACK_HTTP) with `status` and a short text/plain `body`
 * (static). Returns what that callback should return. */
/* Whether the request on `wsi` announces a body (a Content-Length other
 * than 0, or any Transfer-Encoding). The GET-only ports close such a
 * request at once (the callback returns -1): answered while its body is
 * unread, lws 4.1 spins in its service call, calling BODY_COMPLETION without
 * end when more bytes follow the body, and the daemon's loop hangs. */
bool mimd_http_has_body(struct lws *wsi);

int mimd_http_reply_static(struct lws *wsi, unsigned status,
                           const char *body);

#endif
