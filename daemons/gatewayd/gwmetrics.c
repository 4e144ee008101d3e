/* gatewayd's metrics and its operators' listener (gwmetrics.h). */
#include "gwmetrics.h"

#include "gateway.h"

#include <addr.h>
#include <httpd.h>
#include <log.h>
#include <mim/codec.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The operators' listener: an operator's scraper needs a socket or two; a
 * flood of them (idle or keep-alive: httpd counts every socket from
 * accept to close) must not take the gateway's descriptors. */
#define METRICS_CONNS 64
/* Seconds a request has to arrive whole, and an idle socket to stay. */
#define METRICS_TIMEOUT_S 10
/* Bytes of request body read (and ignored). */
#define METRICS_BODY_MAX 1024

#define TEXT_TYPE "text/plain; charset=utf-8"

struct mimd_metric *gw_m_packets_in, *gw_m_packets_out, *gw_m_kicks;

/* The label values, fixed tables: filled from mim_cmd_name() once. */
static const char *cmd_values[GW_M_CMD_OTHER + 1];
static const char *const kick_values[GW_M_KICK_OTHER + 1] = {
    "other_login", "admin", "shutdown", "slow", "protocol", "token_expired",
    "other"};

bool gw_metrics_ready(void *user) {
  const struct gw *gw = user;
  return gw->state == GW_RUNNING && gw->up.state == UP_READY;
}

/* Connections by state, counted at scrape time: a walk of the table is
 * cheap next to a scrape interval and cannot drift from the truth the way
 * counts kept at each transition could. */
static void collect_conns(void *user, struct mimd_sink *out) {
  const struct gw *gw = user;
  size_t authed = 0, open = 0;
  for (size_t i = 0; i < gw->cl.conns.cap; i++) {
    const struct client *c = gw->cl.conns.slots[i].value;
    if (gw->cl.conns.slots[i].key == 0)
      continue;
    open++;
    if (c->authed)
      authed++;
  }
  /* accepted sockets not (yet) websockets: upgrading, or plain HTTP such
   * as /healthz probes */
  size_t socks = gw->front.n_socks;
  size_t hs = socks > open ? socks - open : 0;
  const char *l[] = {"state", "handshake", NULL};
  mimd_sink_sample(out, l, (double)hs);
  l[1] = "unauthenticated";
  mimd_sink_sample(out, l, (double)(open - authed));
  l[1] = "authenticated";
  mimd_sink_sample(out, l, (double)authed);
}

static void collect_link_up(void *user, struct mimd_sink *out) {
  const struct gw *gw = user;
  mimd_sink_sample(out, NULL, gw->up.state == UP_READY ? 1 : 0);
}

static void collect_link_queue(void *user, struct mimd_sink *out) {
  const struct gw *gw = user;
  mimd_sink_sample(out, NULL, (double)mimd_outq_len(&gw->up.out));
}

static void collect_ready(void *user, struct mimd_sink *out) {
  mimd_sink_sample(out, NULL, gw_metrics_ready(user) ? 1 : 0);
}

int gw_metrics_register(struct gw *gw) {
  for (uint32_t i = 0; i < GW_M_CMD_OTHER; i++)
    cmd_values[i] = mim_cmd_name(i);
  cmd_values[GW_M_CMD_OTHER] = "other";
  if (mimd_metrics_register_process("gatewayd") < 0)
    return -ENOMEM;
  gw_m_packets_in = mimd_metric_new(
      MIMD_COUNTER, "mim_packets_in_total",
      "Client frames received, by command (after the frame limits).", "cmd",
      cmd_values, GW_M_CMD_OTHER + 1);
  gw_m_packets_out = mimd_metric_new(
      MIMD_COUNTER, "mim_packets_out_total",
      "Frames queued to clients, by command (replies, pushes, errors, "
      "kicks).",
      "cmd", cmd_values, GW_M_CMD_OTHER + 1);
  gw_m_kicks = mimd_metric_new(
      MIMD_COUNTER, "mim_kicks_total",
      "Kick packets sent to clients, by reason (the gateway's own and "
      "logicd's).",
      "reason", kick_values, GW_M_KICK_OTHER + 1);
  if (gw_m_packets_in == NULL || gw_m_packets_out == NULL ||
      gw_m_kicks == NULL ||
      mimd_collector_new(MIMD_GAUGE, "mim_connections",
                         "Client connections open, by state.", collect_conns,
                         gw) == NULL ||
      mimd_collector_new(MIMD_GAUGE, "mim_logic_link_up",
                         "1 when the RPC link to logicd is up (HELLO "
                         "accepted), else 0.",
                         collect_link_up, gw) == NULL ||
      mimd_collector_new(MIMD_GAUGE, "mim_logic_link_queue_bytes",
                         "Bytes queued for logicd on the RPC link.",
                         collect_link_queue, gw) == NULL ||
      mimd_collector_new(MIMD_GAUGE, "mim_ready",
                         "1 when the gateway serves clients (logicd link up, "
                         "not stopping), else 0.",
                         collect_ready, gw) == NULL)
    return -ENOMEM;
  return 0;
}

/* A short text answer, not cached (a probe must see the state of now). */
static void reply_text(struct mimd_http_req *r, int status, const char *text) {
  char *body = strdup(text);
  mimd_http_reply(r, status, TEXT_TYPE, body, body ? strlen(body) : 0,
                  "Cache-Control: no-store");
}

static void on_healthz(void *user, struct mimd_http_req *r,
                       const char *const *params, size_t n_params) {
  (void)user, (void)params, (void)n_params;
  reply_text(r, 200, "ok\n");
}

static void on_readyz(void *user, struct mimd_http_req *r,
                      const char *const *params, size_t n_params) {
  (void)params, (void)n_params;
  bool ready = gw_metrics_ready(user);
  reply_text(r, ready ? 200 : 503, ready ? "ready\n" : "not ready\n");
}

static void on_metrics(void *user, struct mimd_http_req *r,
                       const char *const *params, size_t n_params) {
  (void)user, (void)params, (void)n_params;
  size_t len = 0;
  char *body = mimd_metrics_render(&len);
  if (body == NULL) {
    reply_text(r, 503, "out of memory\n");
    return;
  }
  mimd_http_reply(r, 200, MIMD_METRICS_CONTENT_TYPE, body, len, NULL);
}

/* Only GET of these: anything else is httpd's 404 or 405 (HEAD too). */
static const struct mimd_http_route metrics_routes[] = {
    {"GET", "/metrics", on_metrics},
    {"GET", "/readyz", on_readyz},
    {"GET", "/healthz", on_healthz},
};

/* The bodies of the answers httpd gives itself. */
static char *metrics_error_body(void *user, int status, size_t *len) {
  (void)user;
  const char *text;
  switch (status) {
  case 404:
    text = "not found\n";
    break;
  case 405:
    text = "method not allowed\n";
    break;
  default:
    text = "bad request\n";
    break;
  }
  char *body = strdup(text);
  *len = body != NULL ? strlen(body) : 0;
  return body;
}

int gw_metrics_listen(struct gw *gw) {
  const char *addr = gw->cfg->metrics_listen;
  if (addr == NULL || addr[0] == '\0')
    return 0;
  char *host = NULL;
  int port = 0;
  if (mimd_parse_addr(addr, &host, &port, NULL) < 0) {
    mimd_error("bad metrics_listen address %s", addr);
    return -1;
  }
  struct mimd_httpd_config hc = {
      .name = "metrics",
      .host = host,
      .port = port,
      .routes = metrics_routes,
      .n_routes = sizeof metrics_routes / sizeof metrics_routes[0],
      .user = gw,
      /* scrapes and probes have none; a small one is read and the request
       * answered as without it (404, 405), a larger one is 413 */
      .body_max = METRICS_BODY_MAX,
      .conns_max = METRICS_CONNS,
      .timeout_s = METRICS_TIMEOUT_S,
      .error_body = metrics_error_body,
      .error_content_type = TEXT_TYPE,
      .ev_loop = gw->ev_loop,
  };
  int rc = mimd_httpd_create(&gw->metrics, gw->context, &hc);
  free(host); /* httpd keeps its own copy */
  if (rc < 0) {
    mimd_error("cannot listen on metrics_listen %s (address in use?)", addr);
    return -1;
  }
  mimd_info("metrics on http://%s/metrics (port %d)", addr,
            mimd_httpd_port(gw->metrics));
  return 0;
}
