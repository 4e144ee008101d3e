/* The raw TCP gateway: an lws vhost of its own (LWS_SERVER_OPTION_ONLY_RAW,
 * the raw-skt role) on gatewayd's one lws context and loop, optionally
 * with TLS from the same tls_cert/tls_key as wss.
 *
 * Why lws and not libev directly: the listener then shares everything the
 * websocket already has on this loop for free: accept() and the admission
 * filter (front.c: caps per address and in total, fd_reserve), TLS,
 * partial writes buffered by lws and flushed before the next WRITEABLE,
 * per-connection timeouts, and the close at context teardown.
 *
 * A connection is a struct client with transport GW_T_TCP. Bytes read go
 * to gw_clients_input() (the websocket's rate limits and rx.c's
 * reassembly, in stream mode); frames leave through tx.c (back to back,
 * several per send()); kicks and refusals are the websocket's (the Kick or
 * Error packet, then a FIN instead of a close frame). What differs:
 *
 *  - no upgrade: the "handshake" the upgrade deadline waits for is the
 *    first application byte (after TLS, when TLS is on);
 *  - no pings: a TCP client proves itself alive by sending (heartbeats,
 *    cmd 0); idle.c closes one silent for idle_timeout_s with Kick IDLE,
 *    as it does a websocket (tx.c never writes it a ping). */
#include "tcp.h"

#include "clients.h"
#include "front.h"
#include "gateway.h"
#include "tx.h"

#include <log.h>
#include <string.h>

static int on_adopt(struct gw *gw, struct client *c, struct lws *wsi) {
  /* counted by the caps, and on the upgrade deadline until it speaks */
  if (gw_front_accepted(gw, wsi) < 0)
    return -1;
  if (gw_clients_open(gw, c, wsi, GW_T_TCP) < 0)
    return -1;
  /* valid_us (the websocket's last lws_validity_confirmed()) marks here
   * that nothing was read yet */
  c->valid_us = 0;
  return 0;
}

static int on_rx(struct gw *gw, struct client *c, struct lws *wsi,
                 const uint8_t *in, size_t len) {
  if (c->id == 0)
    return -1;
  if (c->valid_us == 0) {
    /* the first bytes: the upgrade deadline is met, and over TLS lws's own
     * handshake timeouts (the last lasting its context's timeout_secs, 20 s)
     * must not outlive the handshake; idle.c keeps the connection's
     * deadline from here on. Once closing, the close grace stays. */
    c->valid_us = lws_now_usecs();
    gw_front_upgraded(gw, wsi);
    if (!c->closing)
      lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
  }
  gw_clients_input(gw, c, in, len, false, false);
  return 0;
}

static int tcp_cb(struct lws *wsi, enum lws_callback_reasons reason,
                  void *user, void *in, size_t len) {
  struct gw *gw = lws_context_user(lws_get_context(wsi));
  struct client *c = user;

  switch (reason) {
  case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    /* the same caps as the websocket: one count for both listeners */
    return gw->state != GW_RUNNING || !gw_front_admit(gw, user);
  case LWS_CALLBACK_RAW_ADOPT:
    return on_adopt(gw, c, wsi);
  case LWS_CALLBACK_RAW_RX:
    return on_rx(gw, c, wsi, in, len);
  case LWS_CALLBACK_RAW_WRITEABLE:
    return c != NULL && c->id ? gw_writeable(gw, c) : -1;
  case LWS_CALLBACK_RAW_CLOSE:
    if (c != NULL)
      gw_clients_closed(gw, c);
    return 0;
  case LWS_CALLBACK_WSI_DESTROY:
    /* lws skips RAW_CLOSE for a socket that never became established (a
     * TLS handshake that failed): it is forgotten here */
    if (c != NULL)
      gw_clients_closed(gw, c);
    gw_front_destroyed(gw, wsi);
    return 0;
  default:
    return 0;
  }
}

void gw_tcp_protocols(struct gw *gw, struct lws_protocols p[2]) {
  memset(p, 0, 2 * sizeof *p);
  p[0].name = "mim-tcp";
  p[0].callback = tcp_cb;
  p[0].per_session_data_size = sizeof(struct client);
  p[0].user = gw;
}

int gw_tcp_listen(struct gw *gw) {
  const struct gw_config *cfg = gw->cfg;
  if (cfg->tcp_port == 0)
    return 0;
  struct lws_context_creation_info vi;
  memset(&vi, 0, sizeof vi);
  vi.vhost_name = "gatewayd-tcp";
  vi.protocols = gw->tcp_protocols;
  vi.user = gw;
  vi.port = cfg->tcp_port;
  vi.iface = cfg->tcp_host;
  /* every accepted socket is raw-skt, bound to protocols[0] */
  vi.options = LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG |
               LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  if (cfg->tcp_host && strchr(cfg->tcp_host, ':') == NULL)
    vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  if (cfg->tcp_tls_on) {
    vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    vi.ssl_cert_filepath = cfg->tls_cert;
    vi.ssl_private_key_filepath = cfg->tls_key;
  }
  gw->tcp_vhost = lws_create_vhost(gw->context, &vi);
  if (gw->tcp_vhost == NULL) {
    mimd_error("cannot listen on %s for TCP (address in use, not an address "
               "of this host%s?)",
               cfg->tcp_listen, cfg->tcp_tls_on ? ", or bad TLS files" : "");
    return -1;
  }
  const char *host = cfg->tcp_host ? cfg->tcp_host : "0.0.0.0";
  bool v6 = strchr(host, ':') != NULL;
  mimd_info("gatewayd listening on %s://%s%s%s:%d", cfg->tcp_tls_on ? "tls" : "tcp",
            v6 ? "[" : "", host, v6 ? "]" : "",
            lws_get_vhost_listen_port(gw->tcp_vhost));
  return 0;
}
