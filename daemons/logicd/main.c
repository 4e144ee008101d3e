/* logicd: the libmim logic daemon.
 *
 * Reads its config, opens the LMDB store, builds the logic, serves gateways
 * and mimctl over the internal RPC until SIGTERM/SIGINT, then commits what is
 * pending and exits 0. The parts: config.c (options), datalock.c (one logicd
 * per data dir), rpc_server.c (links, effects, batches, shutdown), writer.c
 * (the commit thread), loop.c (lws on libev), rpc_link.c + outq.c (framing
 * and output). */
#include "config.h"
#include "datalock.h"
#include "lmetrics.h"
#include "log.h"
#include "notify.h"
#include "reload.h"
#include "rpc_server.h"
#include "signals.h"
#include "ticketkey.h"
#include "webhook.h"

#include <mim/logic.h>
#include <mim/store.h>
#include <mim/lmdb.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct server *volatile running;

/* GET /metrics on http_listen renders these (lmetrics.h). */
static bool metrics_ready(void *s) { return server_ready(s); }
static size_t metrics_links(void *s) { return server_gateway_links(s); }
static size_t metrics_bytes(void *s) { return server_queue_bytes(s); }

static void metrics_webhooks(void *w, uint64_t out[3]) {
  struct webhook_stats s;
  webhook_stats(w, &s);
  out[0] = s.deliveries;
  out[1] = s.failures;
  out[2] = s.dropped;
}

static int register_metrics(struct server *server, struct mim_logic *logic,
                            struct mim_backend *store, struct webhook *hooks) {
  struct lmetrics_src src = {
      .logic = logic,
      .store = store,
      .ready = metrics_ready,
      .rpc_links = metrics_links,
      .rpc_queue_bytes = metrics_bytes,
      .webhook_counts = metrics_webhooks,
      .webhook_user = hooks,
      .user = server,
  };
  return lmetrics_register(&src);
}

/* Signal handler context: only wakes the loop, which reads the flag. */
static void wake(void) { server_wake(running); }

int main(int argc, char **argv) {
  struct logicd_config cfg;
  int rc = logicd_config_load(&cfg, argc, argv);
  if (rc != 0) {
    logicd_config_free(&cfg);
    return rc > 0 ? EXIT_SUCCESS : 2;
  }
  mimd_log_init("logicd", (enum mim_log_level)cfg.log_level_num);
  logicd_config_warn(&cfg);
  int status = EXIT_FAILURE;

  struct mim_lmdb_config store_cfg;
  logicd_config_store(&cfg, &store_cfg);
  struct mim_backend *store;
  rc = mim_lmdb_open(&store, &store_cfg);
  if (rc < 0) {
    mimd_error("cannot open the store in %s: %s", cfg.data_dir,
               mim_strerror(rc));
    goto out_config;
  }
  int lock = datalock_acquire(cfg.data_dir);
  if (lock < 0)
    goto out_store;

  struct mim_logic_config logic_cfg;
  logicd_config_logic(&cfg, store, &logic_cfg);
  /* without a token secret (dev_auth) the session tickets need a key that
   * survives restarts: a random one kept in the data directory */
  uint8_t ticket_key[TICKETKEY_LEN];
  if (logic_cfg.secret == NULL) {
    if (ticketkey_load(cfg.data_dir, ticket_key) < 0)
      goto out_lock;
    logic_cfg.ticket_key = ticket_key;
    logic_cfg.ticket_key_len = sizeof ticket_key;
  }
  struct mim_logic *logic;
  rc = mim_logic_create(&logic, &logic_cfg);
  explicit_bzero(ticket_key, sizeof ticket_key); /* the logic has a copy */
  if (rc < 0) {
    mimd_error("cannot create the logic: %s", mim_strerror(rc));
    goto out_lock;
  }

  /* webhooks hear the logic's events from the first commit on */
  struct webhook *hooks = NULL;
  struct webhook_config hook_cfg;
  if (logicd_config_webhook(&cfg, &hook_cfg)) {
    rc = webhook_create(&hooks, &hook_cfg);
    if (rc < 0) {
      mimd_error("cannot start webhooks: %s", mim_strerror(rc));
      goto out_logic;
    }
    mim_logic_set_event_cb(logic, webhook_on_event, hooks);
    mimd_info("webhooks: posting events to %zu receiver(s)", hook_cfg.n_urls);
  }

  struct server_config server_cfg;
  logicd_config_server(&cfg, &mimd_stop_signal, &server_cfg);
  struct logicd_reload reload = {.argc = argc, .argv = argv, .running = &cfg};
  server_cfg.reload_flag = &mimd_reload_signal;
  server_cfg.reload = logicd_reload;
  server_cfg.reload_user = &reload;
  struct server *server;
  rc = server_create(&server, &server_cfg, logic, store);
  if (rc < 0)
    goto out_hooks;
  running = server;
  reload.server = server;
  mimd_signals_install(wake);
  /* before server_run(): no batch reaches the writer thread (which
   * observes the commit histograms) until the loop runs */
  if (register_metrics(server, logic, store, hooks) < 0)
    mimd_warn("metrics unavailable: out of memory");

  mimd_info("logicd listening on %s, data in %s (%s loop)",
            server_address(server), cfg.data_dir, server_loop_backend(server));
  if (server_http_port(server) > 0)
    mimd_info("HTTP API on http://%s:%d/api/v1/ (health: /healthz, /readyz)",
              cfg.http_host, server_http_port(server));
  mimd_info("ready");
  /* the listeners are bound (connections wait in their backlogs until the
   * loop runs) and the store is open: the service manager may start what
   * depends on logicd */
  char ready_status[900];
  snprintf(ready_status, sizeof ready_status, "serving on %s",
           server_address(server));
  mimd_notify_ready(ready_status);
  server_run(server);
  status = server_store_failed(server) < 0 ? LOGICD_EXIT_STORE : EXIT_SUCCESS;

  running = NULL;
  server_destroy(server);
  mimd_metrics_reset(); /* after the writer thread is joined */
  mimd_info("stopped");
out_hooks:
  /* after the server: its last commits' events are queued by now */
  mim_logic_set_event_cb(logic, NULL, NULL);
  webhook_destroy(hooks);
out_logic:
  mim_logic_destroy(logic);
out_lock:
  datalock_release(lock);
out_store:
  mim_backend_destroy(store);
out_config:
  logicd_config_free(&cfg);
  return status;
}
