/* gatewayd: the daemon state and its top, gateway.c.
 *
 * Modules, lowest first; each includes only headers above it in this list
 * and calls only their functions; what a lower module must report upward
 * goes through an ops struct set at its creation:
 *
 *   <timer.h>   one-shot timers on the daemon's loop (daemons/common)
 *   conntab.h   conn_id -> connection hash table
 *   client.h    one client connection (data only)
 *   tx.h        per-connection send queue, local packets, closing
 *   pending.h   requests awaiting their answer: reply order, link loss
 *   front.h     connection caps, fd headroom, upgrade deadline, rate limits
 *   rx.h        websocket message -> frames       (reports: gw_rx_ops)
 *   idle.h      keep-alive pings, idle deadline
 *   http_json.h the HTTP gateway's JSON mapping (jansson)
 *   http_gw.h   HTTP POST / SSE <-> frames        (reports: gw_http_ops)
 *   clients.h   the websocket protocol, sessions  (reports: gw_clients_ops)
 *   tcp.h       the raw TCP listener: frames on a stream, same clients
 *   upstream.h  the RPC link to logicd            (reports: gw_upstream_ops)
 *   gateway.h   context, loop, stop; gateway.c wires clients <-> upstream
 *
 * The client side (clients and what is below it) and the logicd link
 * (upstream) do not know each other. upstream works on its own struct
 * only; the client-side modules are handed the whole `struct gw` but read
 * only cfg, context, state and their own member.
 *
 * Everything runs on the one lws service thread; nothing here is locked. */
#ifndef GATEWAYD_GATEWAY_H
#define GATEWAYD_GATEWAY_H

#include "client.h"
#include "clients.h"
#include "config.h"
#include "front.h"
#include <httpd.h>
#include <timer.h>
#include "upstream.h"

#include <libwebsockets.h>
#include <stdbool.h>

#ifdef MIMD_HAVE_LIBEV
#include <ev.h>
#endif

enum gw_state { GW_RUNNING, GW_DRAINING, GW_DONE };

struct gw {
  struct gw_config *cfg;
  struct lws_context *context;
  struct lws_vhost *vhost;
  struct lws_protocols protocols[3];
  lws_retry_bo_t ws_policy;
  void *ev_loop; /* our libev loop, NULL on lws's poll() loop */
#ifdef MIMD_HAVE_LIBEV
  ev_timer pump; /* see gateway.c */
#endif
  bool loop_stop;
  enum gw_state state;
  struct mimd_timer drain;

  struct gw_clients cl;

  struct upstream up;

  struct front front; /* front.c: who may connect, and for how long */

  struct mimd_httpd *metrics; /* gwmetrics.c: metrics_listen, or NULL */

  /* tcp.c: the raw TCP listener (NULL without tcp_listen) */
  struct lws_vhost *tcp_vhost;
  struct lws_protocols tcp_protocols[2];
};

/* Builds the context, the listener and the RPC link; prints "ready".
 * `cfg` is borrowed until gw_finish(). Returns 0 or -1 (logged). */
int gw_start(struct gw *gw, struct gw_config *cfg);
/* Runs until a stop has drained. Returns 0, or -1 if the loop failed. */
int gw_run(struct gw *gw);
/* Closes everything and frees; also after a failed gw_start(). */
void gw_finish(struct gw *gw);
/* SIGTERM/SIGINT: refuse new clients, kick the others with 1001, let the
 * CONN_CLOSEDs reach logicd, then end gw_run() (or after a deadline). */
void gw_begin_stop(struct gw *gw);
/* SIGHUP (reload.c): re-read the configuration and apply what can change
 * while running: log_level, rpc_secret (used from the next HELLO), the TLS
 * certificate and key (new handshakes); the rest is logged as needing a
 * restart. A configuration that does not load changes nothing. */
void gw_reload(struct gw *gw);


#endif
