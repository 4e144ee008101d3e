/* logicd's configuration: the option table (INI section [logic], flags
 * override), its validation, and the token secret it resolves. */
#ifndef LOGICD_CONFIG_H
#define LOGICD_CONFIG_H

/* The shared option machinery; spelled with its directory because this
 * file has the same name. */
#include "../common/config.h"

#include "rpc_server.h"

#include <mim/logic.h>
#include <mim/store.h>
#include <mim/lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest rpc_secret / admin_secret: a HELLO, which carries one, must fit
 * in what logicd reads before HELLO (rpc_server.c HELLO_BYTES_MAX). */
#define LOGICD_SECRET_MAX 4096

struct logicd_config {
  /* as read: INI [logic] and flags (daemons/common/config.h) */
  char *listen;            /* "HOST:PORT"; port 0 picks a free one */
  char *unix_socket;       /* "" = no unix socket listener */
  char *data_dir;
  char *token_secret;
  char *token_secret_file;
  char *rpc_secret;        /* "" = accept any HELLO secret (loopback only) */
  char *log_level;
  char *event_loop;        /* "libev" or "poll" */
  bool dev_auth;
  bool dev_auth_allow_remote; /* dev_auth with a non-loopback listener */
  char *admin_listen;      /* "auto", "unix:/path" or "" (none) */
  char *admin_secret;      /* "" = the admin socket's mode is the guard;
                              admin_secret_file is read into it */
  char *admin_secret_file;
  int64_t hello_timeout_s;
  int64_t rpc_ping_s;      /* 0 = no PINGs */
  int64_t rpc_timeout_s;
  int64_t user_devices_max;
  int64_t user_cursors_max; /* 0 = no limit */
  int64_t map_size_mb;
  int64_t map_size_max_mb; /* 0 = the store's default */
  int64_t dedup_window_s;
  int64_t pull_limit_max;
  int64_t rate_per_sec;
  int64_t rate_burst;
  int64_t content_max;
  int64_t batch_max_ops;
  int64_t cursor_flush_ms;
  int64_t group_members_max;
  int64_t group_large_min;
  int64_t group_request_members_max;
  int64_t conv_page_max;
  int64_t conv_preview_max;
  int64_t recall_window_s;
  int64_t edit_window_s;
  int64_t typing_rate_per_s;
  int64_t typing_burst;
  int64_t typing_group_max;
  int64_t presence_query_max;
  int64_t presence_subscribe_max;
  int64_t rpc_queue_max_mb;
  int64_t rpc_queue_pause_kb;
  int64_t rpc_queue_resume_kb;
  int64_t reply_bytes_max;
  int64_t read_turn_bytes;
  char *webhook_url;       /* comma list; repeatable key (MIMD_LIST) */
  char *webhook_secret;    /* admin-style: webhook_secret_file read in */
  char *webhook_secret_file;
  int64_t webhook_batch_max;
  int64_t webhook_queue_max;
  int64_t webhook_queue_max_mb;
  int64_t webhook_timeout_ms;
  int64_t webhook_retry_max;
  int64_t webhook_backoff_ms;
  int64_t webhook_backoff_max_ms;
  int64_t webhook_max_age_s;
  int64_t webhook_content_max;
  char *http_listen;       /* HTTP API "HOST:PORT"; "" = none */
  char *api_key;           /* comma-separated keys */
  char *api_key_file;      /* one key per line */
  int64_t api_rate_per_sec;
  int64_t api_rate_burst;
  int64_t http_body_max;
  int64_t http_conns_max;
  int64_t http_timeout_s;

  /* resolved by logicd_config_load() */
  int log_level_num;       /* enum mim_log_level */
  char *listen_host;       /* from `listen` */
  int listen_port;
  uint8_t *secret;         /* token secret bytes (from the file or the key),
                              NULL if none; wiped by logicd_config_free() */
  size_t secret_len;
  char *admin_path;        /* the admin unix socket, NULL = none */
  char **webhook_urls;     /* from webhook_url, checked http(s) */
  size_t n_webhook_urls;
  char *http_host;         /* from http_listen, NULL = no HTTP API */
  int http_port;
  char *api_key_list;      /* api_key, split in place into api_keys */
  char *api_key_file_buf;  /* the key file, split in place */
  size_t api_key_file_len;
  const char *api_keys[API_KEYS_MAX];
  size_t n_api_keys;
  struct api_config api;   /* what logicd_config_server() points at */
};

/* Reads defaults, the --config file and flags, then checks every value and
 * resolves the token secret. Returns 0 to run, 1 when --help/--version was
 * printed (exit 0), -1 after printing why to stderr (exit 2). */
int logicd_config_load(struct logicd_config *cfg, int argc, char **argv);

/* Logs the loud warnings a risky configuration deserves (dev_auth, an empty
 * rpc_secret). Call once logging is set up. */
void logicd_config_warn(const struct logicd_config *cfg);

/* The library and server configurations this config describes. Pointers in
 * them borrow from `cfg`, which must outlive their use. */
void logicd_config_store(const struct logicd_config *cfg,
                         struct mim_lmdb_config *out);
void logicd_config_logic(const struct logicd_config *cfg,
                         struct mim_backend *be, struct mim_logic_config *out);
void logicd_config_server(const struct logicd_config *cfg,
                          const volatile sig_atomic_t *stop_flag,
                          struct server_config *out);

/* The webhook configuration (webhook.h); false when webhooks are off (no
 * webhook_url). Pointers borrow from `cfg`. */
struct webhook_config;
bool logicd_config_webhook(const struct logicd_config *cfg,
                           struct webhook_config *out);

/* Frees everything and wipes the secret. Safe on a zeroed struct. */
void logicd_config_free(struct logicd_config *cfg);

#endif
