/* logicd's metrics (docs/operations.md, "Metrics and health"): the
 * library's counters (mim_logic_stats(), mim_lmdb_usage()) and the
 * daemon's own numbers turned into Prometheus families of the registry in
 * <metrics.h>. Everything but the commit histograms is read at scrape
 * time, on the loop thread; the histograms are observed by the writer
 * thread (atomics). The HTTP side (GET /metrics on `http_listen`) belongs
 * to logicd's HTTP server, which calls mimd_metrics_render().
 *
 * Depends on <metrics.h> and libmim only, so that a unit test can build it
 * without the rest of logicd. */
#ifndef LOGICD_LMETRICS_H
#define LOGICD_LMETRICS_H

#include <metrics.h>
#include <mim/logic.h>
#include <mim/store.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the numbers come from; copied by lmetrics_register(). Every
 * callback runs on the loop thread with `user`; NULL ones read as 0
 * (ready: as not ready). */
struct lmetrics_src {
  struct mim_logic *logic;   /* borrowed, must outlive the registry */
  struct mim_backend *store; /* borrowed; LMDB (mim_lmdb_usage) */
  bool (*ready)(void *user); /* store open and writable, serving */
  size_t (*rpc_links)(void *user);       /* gateway links up */
  size_t (*rpc_queue_bytes)(void *user); /* bytes queued on all links */
  /* webhook counters, any thread's view: [0] POSTs answered 2xx, [1]
   * failed POSTs, [2] events dropped (NULL: webhooks off, all 0); called
   * with webhook_user */
  void (*webhook_counts)(void *webhook_user, uint64_t out[3]);
  void *webhook_user;
  void *user;
};

/* mim_commit_seconds and mim_commit_batch_ops: observed by the writer
 * thread for each commit (NULL before lmetrics_register(): no-ops). */
extern struct mimd_metric *lmetrics_commit_seconds, *lmetrics_commit_ops;

/* Registers logicd's families, once per process (after
 * mimd_metrics_reset() again). Returns 0, or -ENOMEM / -EEXIST. */
int lmetrics_register(const struct lmetrics_src *src);

#endif
