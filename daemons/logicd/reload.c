#include "reload.h"

#include "api.h"
#include "log.h"
#include "notify.h"
#include "reloadwarn.h"
#include "rpc_server_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int server_set_secrets(struct server *s, const char *rpc_secret,
                       const char *admin_secret) {
  char *rpc = NULL, *admin = NULL;
  if (rpc_secret != NULL && (rpc = strdup(rpc_secret)) == NULL)
    return -ENOMEM;
  if (admin_secret != NULL && (admin = strdup(admin_secret)) == NULL) {
    free(rpc);
    return -ENOMEM;
  }
  /* links already up were checked against the old secrets when they said
   * HELLO; they stay (dropping every gateway on a reload would log out
   * every user) */
  if (rpc != NULL) {
    explicit_bzero(s->rpc_secret, s->rpc_secret_len);
    free(s->rpc_secret);
    s->rpc_secret = rpc;
    s->rpc_secret_len = strlen(rpc);
  }
  if (admin != NULL) {
    explicit_bzero(s->admin_secret, s->admin_secret_len);
    free(s->admin_secret);
    s->admin_secret = admin;
    s->admin_secret_len = strlen(admin);
  }
  return 0;
}

/* No lock around the api: logicd_reload() runs on the loop thread (the
 * server's LWS_CALLBACK_EVENT_WAIT_CANCELLED handler, on_wake()), the only
 * thread that serves HTTP requests. */
int server_set_api_keys(struct server *s, const char *const *keys,
                        size_t n_keys) {
  if (s->api == NULL)
    return -ENOENT;
  return api_set_keys(s->api, keys, n_keys);
}

/* Settings that a reload does not apply: a change is logged so that the
 * operator knows a restart is still due. */
static void warn_restart(const struct logicd_config *old,
                         const struct logicd_config *now) {
#define S(f) MIMD_RELOAD_KEY(struct logicd_config, f)
  static const struct mimd_reload_key strs[] = {
      S(listen), S(unix_socket), S(data_dir), S(admin_listen), S(event_loop),
      S(http_listen), S(webhook_url),
  };
#undef S
#define N(f) MIMD_RELOAD_KEY(struct logicd_config, f)
  static const struct mimd_reload_key nums[] = {
      N(hello_timeout_s), N(rpc_ping_s), N(rpc_timeout_s),
      N(user_devices_max), N(user_cursors_max), N(map_size_mb),
      N(map_size_max_mb), N(dedup_window_s), N(pull_limit_max),
      N(rate_per_sec), N(rate_burst), N(content_max), N(batch_max_ops),
      N(cursor_flush_ms), N(group_members_max), N(group_large_min),
      N(group_request_members_max),
      N(rpc_queue_max_mb), N(rpc_queue_pause_kb), N(rpc_queue_resume_kb),
      N(reply_bytes_max), N(read_turn_bytes), N(conv_page_max),
      N(conv_preview_max), N(recall_window_s), N(edit_window_s),
      N(typing_rate_per_s), N(typing_burst),
      N(typing_group_max), N(presence_query_max), N(presence_subscribe_max),
      N(api_rate_per_sec), N(api_rate_burst), N(http_body_max),
      N(http_conns_max), N(http_timeout_s),
      N(webhook_batch_max), N(webhook_queue_max), N(webhook_queue_max_mb),
      N(webhook_timeout_ms), N(webhook_retry_max), N(webhook_backoff_ms),
      N(webhook_backoff_max_ms), N(webhook_max_age_s), N(webhook_content_max),
  };
#undef N
  mimd_reload_warn_restart(old, now, strs, sizeof strs / sizeof strs[0], nums,
                           sizeof nums / sizeof nums[0]);
  if (old->dev_auth_allow_remote != now->dev_auth_allow_remote)
    mimd_warn("reload: dev_auth_allow_remote changed; it takes effect at the "
              "next restart");
  if (old->dev_auth != now->dev_auth ||
      old->secret_len != now->secret_len ||
      (old->secret_len > 0 &&
       memcmp(old->secret, now->secret, old->secret_len) != 0))
    mimd_warn("reload: the token secret (or dev_auth) changed; it takes "
              "effect at the next restart, which logs every client out");
  /* the value (inline or from webhook_secret_file) is compared, never
   * logged */
  if (!mimd_reload_same_str(old->webhook_secret, now->webhook_secret))
    mimd_warn("reload: webhook_secret changed; it takes effect at the next "
              "restart");
}

static bool same_keys(const struct logicd_config *a,
                      const struct logicd_config *b) {
  if (a->n_api_keys != b->n_api_keys)
    return false;
  for (size_t k = 0; k < a->n_api_keys; k++)
    if (strcmp(a->api_keys[k], b->api_keys[k]) != 0)
      return false;
  return true;
}

/* The HTTP API keys of `now`, applied when they differ from the running
 * ones. Returns "changed", "unchanged" or "kept" (not applied: logged). */
static const char *reload_api_keys(struct logicd_reload *r,
                                   const struct logicd_config *now) {
  const struct logicd_config *run = r->running;
  if (run->http_host == NULL || same_keys(run, now))
    return "unchanged"; /* no HTTP API (http_listen needs a restart) */
  if (now->n_api_keys == 0) {
    /* an empty or half-written key file must not lock every backend out
     * (a loopback listener may start keyless; a reload may not drop to
     * none) */
    mimd_error("reload: api_key / api_key_file now hold no key; keeping "
               "the running API keys");
    return "kept";
  }
  int rc = server_set_api_keys(r->server, now->api_keys, now->n_api_keys);
  if (rc < 0) {
    mimd_error("reload: cannot apply the new API keys (%s); keeping the "
               "running ones", strerror(-rc));
    return "kept";
  }
  return "changed";
}

static void swap_str(char **a, char **b) {
  char *t = *a;
  *a = *b;
  *b = t;
}

/* Moves the key settings and the storage api_keys point into. */
static void swap_api_keys(struct logicd_config *a, struct logicd_config *b) {
  swap_str(&a->api_key, &b->api_key);
  swap_str(&a->api_key_file, &b->api_key_file);
  swap_str(&a->api_key_list, &b->api_key_list);
  swap_str(&a->api_key_file_buf, &b->api_key_file_buf);
  size_t len = a->api_key_file_len;
  a->api_key_file_len = b->api_key_file_len;
  b->api_key_file_len = len;
  const char *keys[API_KEYS_MAX];
  memcpy(keys, a->api_keys, sizeof keys);
  memcpy(a->api_keys, b->api_keys, sizeof keys);
  memcpy(b->api_keys, keys, sizeof keys);
  size_t n = a->n_api_keys;
  a->n_api_keys = b->n_api_keys;
  b->n_api_keys = n;
  a->api.n_keys = a->n_api_keys; /* api.keys points at a->api_keys */
  b->api.n_keys = b->n_api_keys;
}

void logicd_reload(void *user) {
  struct logicd_reload *r = user;
  mimd_notify_reloading();
  mimd_info("SIGHUP: reloading the configuration");
  struct logicd_config now;
  if (logicd_config_load(&now, r->argc, r->argv) != 0) {
    mimd_error("reload: the configuration has errors (on stderr above); "
               "keeping the running settings");
    goto out;
  }
  warn_restart(r->running, &now);
  bool rpc_changed = !mimd_reload_same_str(r->running->rpc_secret, now.rpc_secret);
  bool admin_changed = !mimd_reload_same_str(r->running->admin_secret, now.admin_secret);
  if (server_set_secrets(r->server, rpc_changed ? now.rpc_secret : NULL,
                         admin_changed ? now.admin_secret : NULL) < 0) {
    mimd_error("reload: out of memory; keeping the running settings");
    goto out;
  }
  /* the running config owns what is in force; `now` frees the old values
   * (logicd_config_free wipes the secrets) */
  swap_str(&r->running->rpc_secret, &now.rpc_secret);
  swap_str(&r->running->admin_secret, &now.admin_secret);
  swap_str(&r->running->log_level, &now.log_level);
  r->running->log_level_num = now.log_level_num;
  mimd_log_init("logicd", (enum mim_log_level)now.log_level_num);
  /* the api holds its own copies; the running config keeps the set in
   * force too, for the next reload to compare with */
  const char *keys = reload_api_keys(r, &now);
  if (strcmp(keys, "changed") == 0)
    swap_api_keys(r->running, &now);
  mimd_info("reloaded: log_level %s, rpc_secret %s, admin_secret %s, API "
            "keys %s", r->running->log_level,
            rpc_changed ? "changed" : "unchanged",
            admin_changed ? "changed" : "unchanged", keys);
out:
  logicd_config_free(&now);
  mimd_notify_ready("serving (reloaded)");
}
