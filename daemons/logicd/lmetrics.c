/* logicd's metrics (lmetrics.h). */
#include "lmetrics.h"

#include <mim/common.h>
#include <mim/lmdb.h>

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct mimd_metric *lmetrics_commit_seconds, *lmetrics_commit_ops;

static struct lmetrics_src src;

/* Label values from fixed tables, built once: "1008" and "not_member". */
static char err_code[MIM_STATS_ERR_CODES][8];
static char err_name[MIM_STATS_ERR_CODES][40];
static const char *const kick_names[] = {
    "other_login", "admin", "shutdown", "slow", "protocol", "token_expired"};
#define N_KICKS (sizeof kick_names / sizeof kick_names[0])

static void names_init(void) {
  for (int i = 0; i < MIM_STATS_ERR_CODES; i++) {
    int code = MIM_ERR__FIRST + i;
    snprintf(err_code[i], sizeof err_code[i], "%d", code);
    const char *n = code <= MIM_ERR__LAST ? mim_err_name(-code) : "";
    if (strncmp(n, "MIM_ERR_", 8) == 0)
      n += 8;
    size_t k = 0;
    for (; n[k] && k + 1 < sizeof err_name[i]; k++)
      err_name[i][k] = (char)tolower((unsigned char)n[k]);
    err_name[i][k] = '\0';
  }
}

/* The logic's stats; zeroed if there is no logic. */
static struct mim_logic_stats stats(void) {
  struct mim_logic_stats s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  if (src.logic == NULL || mim_logic_stats(src.logic, &s) < 0)
    memset(&s, 0, sizeof s);
  return s;
}

static void collect_ready(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL, src.ready && src.ready(src.user) ? 1 : 0);
}

static void collect_messages(void *u, struct mimd_sink *out) {
  (void)u;
  struct mim_logic_stats s = stats();
  const char *l[] = {"kind", "c2c", NULL};
  mimd_sink_sample(out, l, (double)s.messages_c2c);
  l[1] = "group";
  mimd_sink_sample(out, l, (double)s.messages_group);
  l[1] = "push";
  mimd_sink_sample(out, l, (double)s.messages_push);
}

static void collect_inbox(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL, (double)stats().inbox_appends);
}

static void collect_deliveries(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL, (double)stats().deliveries);
}

static void collect_logins(void *u, struct mimd_sink *out) {
  (void)u;
  struct mim_logic_stats s = stats();
  const char *ok[] = {"result", "ok", "reason", "ok", NULL};
  mimd_sink_sample(out, ok, (double)s.logins_ok);
  uint64_t by_code = 0;
  for (int i = 0; i < MIM_STATS_ERR_CODES; i++) {
    int code = MIM_ERR__FIRST + i;
    /* the two reasons every deployment sees are always there, so that
     * rate() has a series from the start; others once they happen */
    bool always = code == MIM_ERR_TOKEN_INVALID || code == MIM_ERR_TOKEN_EXPIRED;
    by_code += s.logins_failed_by_code[i];
    if (!always && s.logins_failed_by_code[i] == 0)
      continue;
    const char *l[] = {"result", "failed", "reason", err_name[i], NULL};
    mimd_sink_sample(out, l, (double)s.logins_failed_by_code[i]);
  }
  if (s.logins_failed > by_code) {
    const char *l[] = {"result", "failed", "reason", "other", NULL};
    mimd_sink_sample(out, l, (double)(s.logins_failed - by_code));
  }
}

static void collect_errors(void *u, struct mimd_sink *out) {
  (void)u;
  struct mim_logic_stats s = stats();
  for (int i = 0; i <= MIM_ERR__LAST - MIM_ERR__FIRST; i++) {
    const char *l[] = {"code", err_code[i], "name", err_name[i], NULL};
    mimd_sink_sample(out, l, (double)s.errors_by_code[i]);
  }
}

static void collect_kicks(void *u, struct mimd_sink *out) {
  (void)u;
  struct mim_logic_stats s = stats();
  for (size_t i = 0; i < N_KICKS; i++) {
    const char *l[] = {"reason", kick_names[i], NULL};
    mimd_sink_sample(out, l, (double)s.kicks_by_reason[i]);
  }
}

static void collect_batches(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL, (double)stats().batches);
}

static void collect_batch_failures(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL, (double)stats().batches_failed);
}

/* typing and presence (docs/protocol.md §20, §21): user = which */
static void collect_presence(void *u, struct mimd_sink *out) {
  struct mim_logic_stats s = stats();
  uint64_t v[] = {s.typing_relayed, s.typing_dropped, s.presence_pushes};
  mimd_sink_sample(out, NULL, (double)v[(intptr_t)u]);
}

static void collect_queue(void *u, struct mimd_sink *out) {
  (void)u;
  struct mim_logic_stats s = stats();
  mimd_sink_sample(out, NULL, (double)(s.writes_gathering + s.writes_parked));
}

static void collect_conns(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL, (double)stats().connections);
}

static void collect_sessions(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL, (double)stats().sessions);
}

static void collect_links(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL,
                   src.rpc_links ? (double)src.rpc_links(src.user) : 0);
}

static void collect_link_bytes(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(
      out, NULL, src.rpc_queue_bytes ? (double)src.rpc_queue_bytes(src.user) : 0);
}

/* which: 0 deliveries, 1 failures, 2 dropped */
static void collect_webhook(void *u, struct mimd_sink *out) {
  uint64_t c[3] = {0, 0, 0};
  if (src.webhook_counts != NULL)
    src.webhook_counts(src.webhook_user, c);
  mimd_sink_sample(out, NULL, (double)c[(intptr_t)u]);
}

/* which: 0 map size, 1 used, 2 growth limit */
static void collect_lmdb(void *u, struct mimd_sink *out) {
  int which = (int)(intptr_t)u;
  struct mim_lmdb_usage us;
  if (mim_lmdb_usage(src.store, &us) < 0)
    return; /* not LMDB: no sample */
  mimd_sink_sample(out, NULL,
                   (double)(which == 0   ? us.map_size
                            : which == 1 ? us.used_bytes
                                         : us.map_size_max));
}

static void collect_corrupt(void *u, struct mimd_sink *out) {
  (void)u;
  mimd_sink_sample(out, NULL, (double)mim_lmdb_corrupt_skipped(src.store));
}

/* Group commits take one fdatasync: ~0.1 ms on NVMe with a write cache,
 * tens of ms on spinning disks. */
static const double commit_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,  0.1,    0.25,  0.5,
                                       1,      2.5,   5,      10};
static const double ops_bounds[] = {1,   2,   5,    10,   20,   50,   100,
                                    200, 500, 1000, 2000, 4096, 10000};

#define N(a) (sizeof a / sizeof a[0])

struct fam {
  enum mimd_metric_type type;
  const char *name, *help;
  mimd_collect_fn fn;
  void *user;
};

int lmetrics_register(const struct lmetrics_src *s) {
  src = *s;
  names_init();
  int rc = mimd_metrics_register_process("logicd");
  if (rc < 0)
    return rc;
  static const struct fam fams[] = {
      {MIMD_GAUGE, "mim_ready",
       "1 when the store is open and writable and logicd serves, else 0.",
       collect_ready, NULL},
      {MIMD_COUNTER, "mim_messages_stored_total",
       "Messages committed to the store (retries of a client_msg_id not "
       "counted), by kind: c2c, group, push.",
       collect_messages, NULL},
      {MIMD_COUNTER, "mim_inbox_appends_total",
       "Inbox entries written by those messages (one per recipient and the "
       "sender).",
       collect_inbox, NULL},
      {MIMD_COUNTER, "mim_deliveries_total",
       "Pushes of committed messages handed to online connections (one per "
       "connection).",
       collect_deliveries, NULL},
      {MIMD_COUNTER, "mim_logins_total",
       "Logins (AuthRequests) answered, by result and, when failed, reason.",
       collect_logins, NULL},
      {MIMD_COUNTER, "mim_errors_total",
       "Error packets sent to clients and operators, by code.",
       collect_errors, NULL},
      {MIMD_COUNTER, "mim_kicks_total",
       "Kicks the logic decided, by reason.", collect_kicks, NULL},
      {MIMD_COUNTER, "mim_commit_batches_total",
       "Write batches committed (successfully or not).", collect_batches,
       NULL},
      {MIMD_COUNTER, "mim_commit_failures_total",
       "Write batches whose commit failed as a whole (disk full, I/O "
       "error).",
       collect_batch_failures, NULL},
      {MIMD_GAUGE, "mim_writer_queue_depth",
       "Store operations waiting for the writer: gathered for the next "
       "commit, or parked for room in a batch.",
       collect_queue, NULL},
      {MIMD_GAUGE, "mim_logic_connections",
       "Client connections the logic holds state for.", collect_conns, NULL},
      {MIMD_GAUGE, "mim_sessions",
       "Authenticated (uid, device) sessions in the route table.",
       collect_sessions, NULL},
      {MIMD_GAUGE, "mim_rpc_links", "Gateway RPC links up (HELLO accepted).",
       collect_links, NULL},
      {MIMD_GAUGE, "mim_rpc_queue_bytes",
       "Bytes queued for output on all RPC links.", collect_link_bytes,
       NULL},
      {MIMD_GAUGE, "mim_lmdb_map_size_bytes",
       "Current LMDB map size (it doubles when full, up to the max).",
       collect_lmdb, (void *)(intptr_t)0},
      {MIMD_GAUGE, "mim_lmdb_map_used_bytes",
       "LMDB pages in use up to the highest written, in bytes.",
       collect_lmdb, (void *)(intptr_t)1},
      {MIMD_GAUGE, "mim_lmdb_map_max_bytes",
       "The LMDB map growth limit (map_size_max_mb); past it sends fail "
       "with STORE_FULL.",
       collect_lmdb, (void *)(intptr_t)2},
      {MIMD_COUNTER, "mim_webhook_deliveries_total",
       "Webhook POSTs the receivers answered with 2xx.", collect_webhook,
       (void *)(intptr_t)0},
      {MIMD_COUNTER, "mim_webhook_failures_total",
       "Webhook POSTs that failed (error, timeout or non-2xx); retried.",
       collect_webhook, (void *)(intptr_t)1},
      {MIMD_COUNTER, "mim_webhook_dropped_total",
       "Webhook events given up: queue full, retries or age exhausted.",
       collect_webhook, (void *)(intptr_t)2},
      {MIMD_COUNTER, "mim_typing_relayed_total",
       "Typing indicators relayed to the other participants.",
       collect_presence, (void *)(intptr_t)0},
      {MIMD_COUNTER, "mim_typing_dropped_total",
       "Typing indicators dropped: over the rate, no shared conversation, "
       "or a group over typing_group_max.",
       collect_presence, (void *)(intptr_t)1},
      {MIMD_COUNTER, "mim_presence_pushes_total",
       "Presence changes pushed to subscribed connections.",
       collect_presence, (void *)(intptr_t)2},
      {MIMD_COUNTER, "mim_lmdb_corrupt_records_total",
       "Stored records skipped because they could not be read.",
       collect_corrupt, NULL},
  };
  for (size_t i = 0; i < N(fams); i++)
    if (mimd_collector_new(fams[i].type, fams[i].name, fams[i].help,
                           fams[i].fn, fams[i].user) == NULL)
      return -ENOMEM;
  lmetrics_commit_seconds = mimd_histogram_new(
      "mim_commit_seconds",
      "Time the writer thread took to commit one write batch (one LMDB "
      "transaction and its fdatasync).",
      commit_bounds, N(commit_bounds));
  lmetrics_commit_ops = mimd_histogram_new(
      "mim_commit_batch_ops",
      "Store operations per committed write batch (group commit size).",
      ops_bounds, N(ops_bounds));
  if (lmetrics_commit_seconds == NULL || lmetrics_commit_ops == NULL)
    return -ENOMEM;
  return 0;
}
