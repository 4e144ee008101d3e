/* gatewayd's SIGHUP: re-read the configuration (the same --config file and
 * flags as at start) and apply what can change while running
 * (docs/operations.md, "Reloading"). */
#include "gateway.h"

#include <log.h>
#include <notify.h>
#include <reloadwarn.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a reload does not apply: say so, so that a restart is not
 * forgotten. */
static void warn_restart(const struct gw_config *old,
                         const struct gw_config *now) {
#define S(f) MIMD_RELOAD_KEY(struct gw_config, f)
  static const struct mimd_reload_key strs[] = {
      S(id), S(listen), S(path), S(logic), S(tls_cert), S(tls_key),
      S(tcp_listen),
      S(metrics_listen),
  };
#undef S
#define N(f) MIMD_RELOAD_KEY(struct gw_config, f)
  static const struct mimd_reload_key nums[] = {
      N(max_frame), N(auth_timeout_ms), N(ping_interval_s),
      N(idle_timeout_s), N(send_queue_bytes), N(auth_max_body),
      N(rate_requests_per_s), N(rate_requests_burst), N(rate_bytes_per_s),
      N(rate_bytes_burst), N(rate_strikes), N(max_conns),
      N(max_conns_per_ip), N(handshake_timeout_s), N(fd_reserve),
      N(logic_ping_s), N(logic_timeout_s), N(send_message_max),
  };
#undef N
  mimd_reload_warn_restart(old, now, strs, sizeof strs / sizeof strs[0], nums,
                           sizeof nums / sizeof nums[0]);
}

/* Whether `cert` (PEM, the first certificate of the chain) and `key` (PEM)
 * load and belong together: checked before lws swaps them in, because a
 * half-written or mismatched pair would leave the listener unable to
 * complete any handshake. */
static bool tls_pair_ok(const char *cert, const char *key) {
  bool ok = false;
  X509 *x = NULL;
  EVP_PKEY *k = NULL;
  FILE *f = fopen(cert, "r");
  if (f == NULL) {
    mimd_error("reload: cannot open tls_cert %s", cert);
    return false;
  }
  x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  if ((f = fopen(key, "r")) == NULL) {
    mimd_error("reload: cannot open tls_key %s", key);
    goto out;
  }
  k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  if (x == NULL || k == NULL)
    mimd_error("reload: %s is not a PEM %s", x == NULL ? cert : key,
               x == NULL ? "certificate" : "private key");
  else if (X509_check_private_key(x, k) != 1)
    mimd_error("reload: tls_key does not match tls_cert");
  else
    ok = true;
out:
  EVP_PKEY_free(k);
  X509_free(x);
  return ok;
}

void gw_reload(struct gw *gw) {
  struct gw_config *cfg = gw->cfg;
  mimd_notify_reloading();
  mimd_info("SIGHUP: reloading the configuration");
  struct gw_config now;
  memset(&now, 0, sizeof now);
  if (gw_config_load(&now, cfg->argc, cfg->argv) != 0) {
    mimd_error("reload: the configuration has errors (on stderr above); "
               "keeping the running settings");
    goto out;
  }
  warn_restart(cfg, &now);
  const char *tls = "off";
  if (cfg->tls) {
    /* the same paths (a change needs a restart): the files' new contents
     * serve every handshake from now on; connections up keep theirs */
    tls = "kept (the files did not load)";
    if (tls_pair_ok(cfg->tls_cert, cfg->tls_key)) {
      lws_tls_cert_updated(gw->context, cfg->tls_cert, cfg->tls_key, NULL, 0,
                           NULL, 0);
      tls = "reloaded";
    }
  }
  bool rpc_changed = !mimd_reload_same_str(cfg->rpc_secret, now.rpc_secret);
  /* upstream.c reads cfg->rpc_secret at each HELLO: the link that is up
   * stays, a reconnect uses the new one */
  char *t = cfg->rpc_secret;
  cfg->rpc_secret = now.rpc_secret;
  now.rpc_secret = t;
  t = cfg->log_level;
  cfg->log_level = now.log_level;
  now.log_level = t;
  cfg->level = now.level;
  mimd_log_init("gatewayd", cfg->level);
  mimd_info("reloaded: log_level %s, rpc_secret %s, tls %s", cfg->log_level,
            rpc_changed ? "changed" : "unchanged", tls);
out:
  if (now.rpc_secret != NULL)
    explicit_bzero(now.rpc_secret, strlen(now.rpc_secret));
  gw_config_free(&now);
  mimd_notify_ready("serving (reloaded)");
}
