/* gwmetrics.c: gatewayd's metrics (docs/operations.md, "Metrics and
 * health") and the operators' listener, `metrics_listen`.
 *
 * The counters below are updated where things happen (rx, tx); they are
 * NULL until gw_metrics_register() ran, and updating NULL is a no-op. The
 * gauges (connections by state, the logicd link) are read at scrape time.
 * Depends on <metrics.h> only, so any module may include it; gwmetrics.c
 * itself sits at the top with gateway.c. */
#ifndef GATEWAYD_GWMETRICS_H
#define GATEWAYD_GWMETRICS_H

#include <metrics.h>
#include <stdint.h>

struct gw;

/* mim_packets_in_total{cmd}, mim_packets_out_total{cmd}: series 0..29
 * are the client commands, GW_M_CMD_OTHER anything else. */
#define GW_M_CMD_OTHER 30
extern struct mimd_metric *gw_m_packets_in, *gw_m_packets_out;
/* mim_kicks_total{reason}: enum mim_kick_reason, GW_M_KICK_OTHER beyond. */
#define GW_M_KICK_OTHER 6
extern struct mimd_metric *gw_m_kicks;

static inline size_t gw_m_cmd(uint32_t cmd) {
  return cmd < GW_M_CMD_OTHER ? cmd : GW_M_CMD_OTHER;
}
static inline size_t gw_m_kick(int32_t reason) {
  return reason >= 0 && reason < GW_M_KICK_OTHER ? (size_t)reason
                                                 : GW_M_KICK_OTHER;
}

/* Registers gatewayd's metrics (once per process). Returns 0 or -ENOMEM. */
int gw_metrics_register(struct gw *gw);

/* Starts the `metrics_listen` vhost if configured. Returns 0 or -1
 * (logged). */
int gw_metrics_listen(struct gw *gw);

/* Whether gatewayd is ready for clients: its logicd link is up and it is
 * not stopping (GET /readyz, mim_ready). */
bool gw_metrics_ready(void *gw);

#endif
