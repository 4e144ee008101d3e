#include "reload.h"

#include "log.h"
#include "notify.h"
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

static bool same_str(const char *a, const char *b) {
  return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* Settings that a reload does not apply: a change is logged so that the
 * operator knows a restart is still due. */
static void warn_restart(const struct logicd_config *old,
                         const struct logicd_config *now) {
  static const struct {
    const char *key;
    size_t off;
  } strs[] = {
#define S(f) {#f, offsetof(struct logicd_config, f)}
      S(listen), S(unix_socket), S(data_dir), S(admin_listen), S(event_loop),
#undef S
  };
  static const struct {
    const char *key;
    size_t off;
  } nums[] = {
#define N(f) {#f, offsetof(struct logicd_config, f)}
      N(hello_timeout_s), N(rpc_ping_s), N(rpc_timeout_s),
      N(user_devices_max), N(user_cursors_max), N(map_size_mb),
      N(map_size_max_mb), N(dedup_window_s), N(pull_limit_max),
      N(rate_per_sec), N(rate_burst), N(content_max), N(batch_max_ops),
      N(cursor_flush_ms), N(group_members_max), N(group_request_members_max),
      N(rpc_queue_max_mb), N(rpc_queue_pause_kb), N(rpc_queue_resume_kb),
      N(reply_bytes_max), N(read_turn_bytes),
#undef N
  };
  const char *o = (const char *)old, *n = (const char *)now;
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
    if (!same_str(*(char *const *)(o + strs[i].off),
                  *(char *const *)(n + strs[i].off)))
      mimd_warn("reload: %s changed; it takes effect at the next restart",
                strs[i].key);
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
    if (*(const int64_t *)(o + nums[i].off) !=
        *(const int64_t *)(n + nums[i].off))
      mimd_warn("reload: %s changed; it takes effect at the next restart",
                nums[i].key);
  if (old->dev_auth_allow_remote != now->dev_auth_allow_remote)
    mimd_warn("reload: dev_auth_allow_remote changed; it takes effect at the "
              "next restart");
  if (old->dev_auth != now->dev_auth ||
      old->secret_len != now->secret_len ||
      (old->secret_len > 0 &&
       memcmp(old->secret, now->secret, old->secret_len) != 0))
    mimd_warn("reload: the token secret (or dev_auth) changed; it takes "
              "effect at the next restart, which logs every client out");
}

static void swap_str(char **a, char **b) {
  char *t = *a;
  *a = *b;
  *b = t;
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
  bool rpc_changed = !same_str(r->running->rpc_secret, now.rpc_secret);
  bool admin_changed = !same_str(r->running->admin_secret, now.admin_secret);
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
  mimd_info("reloaded: log_level %s, rpc_secret %s, admin_secret %s",
            r->running->log_level, rpc_changed ? "changed" : "unchanged",
            admin_changed ? "changed" : "unchanged");
out:
  logicd_config_free(&now);
  mimd_notify_ready("serving (reloaded)");
}
