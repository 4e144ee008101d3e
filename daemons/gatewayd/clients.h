/* clients.c: the websocket protocol callback, the connection table, the
 * auth deadline, DELIVER / KICK / SESSION / SESSIONS on the client side.
 * Depends on rx.h, tx.h, pending.h, front.h, conntab.h, <timer.h>; reports
 * upward through struct gw_clients_ops. */
#ifndef GATEWAYD_CLIENTS_H
#define GATEWAYD_CLIENTS_H

#include "client.h"
#include "conntab.h"
#include <timer.h>

#include <libwebsockets.h>
#include <mim/codec.h>
#include <mim/rpc.h>

struct gw;

/* What the client side asks of the layer above, each with `ops_user`. It
 * knows nothing of the logicd link: the wiring (gateway.c) routes these. */
struct gw_clients_ops {
  /* Forward a request of connection `conn_id` (`body` borrowed). Errors:
   * -ENOTCONN no link; -ENOBUFS logicd is not keeping up; -ENOMEM. */
  int (*request)(void *user, uint64_t conn_id, uint32_t version, uint32_t cmd,
                 const uint8_t *body, size_t len);
  /* Connection `conn_id` closed. */
  void (*conn_closed)(void *user, uint64_t conn_id);
  /* Send an RPC packet to logicd regardless of its backlog (SESSIONS).
   * Errors as for request. */
  int (*send)(void *user, const struct mim_rpc *r);
  /* A stop signal was seen. */
  void (*stop)(void *user);
  /* A reload signal (SIGHUP) was seen. */
  void (*reload)(void *user);
  /* A connection went away (a stop may be complete). */
  void (*idle)(void *user);
};

/* The client side's state. */
struct gw_clients {
  struct conntab conns;
  uint64_t next_conn_id;
  struct client *ua_head, *ua_tail; /* auth deadline list, oldest first */
  struct mimd_timer auth;
  /* idle.c: not pinged since last heard from / pinged; oldest first */
  struct client *idle_head, *idle_tail;
  struct client *ping_head, *ping_tail;
  struct mimd_timer idle;
  const struct gw_clients_ops *ops;
  void *ops_user;
};

/* Fills protocols[0]: the websocket protocol, the vhost's default; `ops`
 * (static) and `user` receive what the client side reports. */
void gw_clients_protocol(struct gw *gw, struct lws_protocols *p,
                         const struct gw_clients_ops *ops, void *user);
/* For each transport's callback (the websocket's is here, TCP's in tcp.c):
 *
 * A connection opened (`c`: its per-session data, `wsi` its socket): is
 * registered under a new conn_id, gets its rate buckets and the auth
 * deadline. Returns -1 (the caller has lws close it) when out of memory. */
int gw_clients_open(struct gw *gw, struct client *c, struct lws *wsi,
                    enum gw_transport transport);
/* Bytes from the client (`in` borrowed for the call), charged to its byte
 * bucket, then framed by rx.c (gw_rx() says what `first`/`final` mean). */
void gw_clients_input(struct gw *gw, struct client *c, const uint8_t *in,
                      size_t len, bool first, bool final);
/* The connection closed: forgets it and tells logicd. Again: no-op. */
void gw_clients_closed(struct gw *gw, struct client *c);
/* The auth deadline timer fired. */
void gw_clients_auth_timer(void *gw);
/* RPC DELIVER / KICK / SESSION from logicd (`r` and `msg` borrowed for
 * the call). */
void gw_clients_deliver(struct gw *gw, const struct mim_rpc *r);
/* logicd bound (or, uid "", unbound) a connection's session. */
void gw_clients_session(struct gw *gw, const struct mim_rpc *r);
void gw_clients_kick(struct gw *gw, uint64_t conn_id, int32_t reason,
                     const char *msg);
/* Queues SESSIONS (every authenticated connection) on a new link.
 * Errors: -ENOMEM. */
int gw_clients_sessions(struct gw *gw);
/* Kicks every client (SHUTDOWN) and starts closing it with 1001. */
void gw_clients_shutdown(struct gw *gw);
/* Frees the table once lws_context_destroy() has closed everything. */
void gw_clients_finish(struct gw *gw);

/* The logicd link went down: every connection's forwarded requests are
 * answered with UNAVAILABLE. */
void gw_clients_link_down(struct gw *gw);

#endif
