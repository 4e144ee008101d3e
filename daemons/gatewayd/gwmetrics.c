/* gatewayd's metrics and its operators' listener (gwmetrics.h). */
#include "gwmetrics.h"

#include "gateway.h"

#include <log.h>
#include <metrics_http.h>
#include <mim/codec.h>
#include <stdio.h>
#include <string.h>

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

int gw_metrics_listen(struct gw *gw) {
  const char *addr = gw->cfg->metrics_listen;
  if (addr == NULL || addr[0] == '\0')
    return 0;
  if (mimd_metrics_http_start(&gw->metrics, gw->context, addr,
                              gw_metrics_ready, gw) < 0) {
    mimd_error("cannot listen on metrics_listen %s (address in use?)", addr);
    return -1;
  }
  mimd_info("metrics on http://%s/metrics (port %d)", addr,
            mimd_metrics_http_port(&gw->metrics));
  return 0;
}
