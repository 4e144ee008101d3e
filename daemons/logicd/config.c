/* logicd's option table and the checks that turn it into a usable config. */

#include "config.h"
#include "log.h"
#include "webhook.h"

#include <addr.h>
#include <secret.h>

#include <mim/auth.h>
#include <mim/common.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define S "logic"
#define C struct logicd_config

static const struct mimd_option options[] = {
    MIMD_OPT(S, "listen", MIMD_STR, C, listen, "127.0.0.1:8090",
             "RPC listener HOST:PORT (\"\" = none; port 0 = any free port)"),
    MIMD_OPT(S, "unix_socket", MIMD_STR, C, unix_socket, "",
             "also listen on this unix socket path"),
    MIMD_OPT(S, "data_dir", MIMD_STR, C, data_dir, "./data/logicd",
             "LMDB directory (created if missing)"),
    MIMD_OPT(S, "token_secret", MIMD_STR, C, token_secret, "",
             "token HMAC secret (prefer token_secret_file)"),
    MIMD_OPT(S, "token_secret_file", MIMD_STR, C, token_secret_file, "",
             "file holding the token secret (trailing newline stripped)"),
    MIMD_OPT(S, "rpc_secret", MIMD_STR, C, rpc_secret, "",
             "secret gateways send in HELLO (\"\" = accept any)"),
    MIMD_OPT(S, "dev_auth", MIMD_BOOL, C, dev_auth, "false",
             "DEVELOPMENT ONLY: accept any login token"),
    MIMD_OPT(S, "dev_auth_allow_remote", MIMD_BOOL, C, dev_auth_allow_remote,
             "false", "let dev_auth run with a non-loopback RPC listener"),
    MIMD_OPT(S, "admin_listen", MIMD_STR, C, admin_listen, "auto",
             "operator (mimctl) socket: unix:/path, \"auto\" = "
             "unix:DATA_DIR/admin.sock, \"\" = none"),
    MIMD_OPT(S, "admin_secret", MIMD_STR, C, admin_secret, "",
             "operator secret (prefer admin_secret_file); lets mimctl in "
             "over the RPC listener too"),
    MIMD_OPT(S, "admin_secret_file", MIMD_STR, C, admin_secret_file, "",
             "file holding the operator secret"),
    MIMD_OPT(S, "hello_timeout_s", MIMD_INT, C, hello_timeout_s, "5",
             "an RPC link that has not sent HELLO by then is closed"),
    MIMD_OPT(S, "rpc_ping_s", MIMD_INT, C, rpc_ping_s, "5",
             "PING an RPC link silent this long (0 = never)"),
    MIMD_OPT(S, "rpc_timeout_s", MIMD_INT, C, rpc_timeout_s, "20",
             "close an RPC link silent this long (half-open, stopped peer)"),
    MIMD_OPT(S, "user_devices_max", MIMD_INT, C, user_devices_max, "16",
             "devices (= connections) one user may have logged in at once "
             "(0 = no limit)"),
    MIMD_OPT(S, "user_cursors_max", MIMD_INT, C, user_cursors_max, "64",
             "read cursors (devices that acknowledged) kept per user; a new "
             "device's replaces the stalest (0 = no limit)"),
    MIMD_OPT(S, "map_size_mb", MIMD_INT, C, map_size_mb, "64",
             "initial LMDB map size in MiB (grows by doubling)"),
    MIMD_OPT(S, "map_size_max_mb", MIMD_INT, C, map_size_max_mb, "0",
             "LMDB map growth limit in MiB (0 = 64 GiB)"),
    MIMD_OPT(S, "dedup_window_s", MIMD_INT, C, dedup_window_s, "86400",
             "seconds a client_msg_id is remembered"),
    MIMD_OPT(S, "pull_limit_max", MIMD_INT, C, pull_limit_max, "500",
             "largest pull/history page"),
    MIMD_OPT(S, "rate_per_sec", MIMD_INT, C, rate_per_sec, "200",
             "sends per connection per second (0 = no limit)"),
    MIMD_OPT(S, "rate_burst", MIMD_INT, C, rate_burst, "400",
             "send burst per connection"),
    MIMD_OPT(S, "content_max", MIMD_INT, C, content_max, "32768",
             "largest message content + payload, bytes"),
    MIMD_OPT(S, "batch_max_ops", MIMD_INT, C, batch_max_ops, "4096",
             "most writes committed in one transaction"),
    MIMD_OPT(S, "group_members_max", MIMD_INT, C, group_members_max, "10000",
             "most members of one group"),
    MIMD_OPT(S, "group_large_min", MIMD_INT, C, group_large_min, "1000",
             "members at which a group switches to read diffusion (0 = "
             "never)"),
    MIMD_OPT(S, "group_request_members_max", MIMD_INT, C,
             group_request_members_max, "1000",
             "most members one group request or server push may name"),
    MIMD_OPT(S, "conv_page_max", MIMD_INT, C, conv_page_max, "100",
             "most conversations (or readers) in one page"),
    MIMD_OPT(S, "conv_preview_max", MIMD_INT, C, conv_preview_max, "256",
             "bytes of a conversation's last message in its preview"),
    MIMD_OPT(S, "recall_window_s", MIMD_INT, C, recall_window_s, "300",
             "a sender may recall a message this long after sending, s (0: never)"),
    MIMD_OPT(S, "edit_window_s", MIMD_INT, C, edit_window_s, "86400",
             "a sender may edit a message this long after sending, s (0: never)"),
    MIMD_OPT(S, "typing_rate_per_s", MIMD_INT, C, typing_rate_per_s, "2",
             "typing indicators a connection may send a second"),
    MIMD_OPT(S, "typing_burst", MIMD_INT, C, typing_burst, "5",
             "typing indicators a connection may send at once"),
    MIMD_OPT(S, "typing_group_max", MIMD_INT, C, typing_group_max, "500",
             "typing is not relayed in groups with more members"),
    MIMD_OPT(S, "presence_query_max", MIMD_INT, C, presence_query_max, "100",
             "most uids one presence request may name"),
    MIMD_OPT(S, "presence_subscribe_max", MIMD_INT, C, presence_subscribe_max,
             "1000", "most users one connection may subscribe to"),
    MIMD_OPT(S, "cursor_flush_ms", MIMD_INT, C, cursor_flush_ms, "200",
             "under load, ack cursors are written at most this often, ms"),
    MIMD_OPT(S, "rpc_queue_max_mb", MIMD_INT, C, rpc_queue_max_mb, "64",
             "output queued for one RPC link before it is cut off, MiB"),
    MIMD_OPT(S, "rpc_queue_pause_kb", MIMD_INT, C, rpc_queue_pause_kb, "4096",
             "output queued for one RPC link above which logicd stops "
             "reading it (and running its reads), KiB"),
    MIMD_OPT(S, "rpc_queue_resume_kb", MIMD_INT, C, rpc_queue_resume_kb,
             "1024", "a paused RPC link is read again below this, KiB"),
    MIMD_OPT(S, "reply_bytes_max", MIMD_INT, C, reply_bytes_max, "524288",
             "largest pull/history reply body, bytes (then has_more)"),
    MIMD_OPT(S, "read_turn_bytes", MIMD_INT, C, read_turn_bytes, "1048576",
             "reply bytes pulls/histories may produce per loop turn "
             "(0 = no limit)"),
    MIMD_OPT(S, "webhook_url", MIMD_LIST, C, webhook_url, "",
             "POST events to this http(s) URL (repeat the key, or a comma "
             "list; at most 8; \"\" = no webhooks)"),
    MIMD_OPT(S, "webhook_secret", MIMD_STR, C, webhook_secret, "",
             "HMAC-SHA256 key of X-Mim-Signature (prefer "
             "webhook_secret_file)"),
    MIMD_OPT(S, "webhook_secret_file", MIMD_STR, C, webhook_secret_file, "",
             "file holding the webhook secret"),
    MIMD_OPT(S, "webhook_batch_max", MIMD_INT, C, webhook_batch_max, "100",
             "most events in one webhook POST"),
    MIMD_OPT(S, "webhook_queue_max", MIMD_INT, C, webhook_queue_max, "10000",
             "events queued per webhook receiver; more are dropped"),
    MIMD_OPT(S, "webhook_queue_max_mb", MIMD_INT, C, webhook_queue_max_mb,
             "64", "JSON queued per webhook receiver, MiB; more is dropped"),
    MIMD_OPT(S, "webhook_timeout_ms", MIMD_INT, C, webhook_timeout_ms, "5000",
             "one webhook POST (connect included) before it counts as failed"),
    MIMD_OPT(S, "webhook_retry_max", MIMD_INT, C, webhook_retry_max, "10",
             "retries of a failed webhook batch before its events are "
             "dropped"),
    MIMD_OPT(S, "webhook_backoff_ms", MIMD_INT, C, webhook_backoff_ms, "500",
             "first webhook retry delay, ms (doubles per retry)"),
    MIMD_OPT(S, "webhook_backoff_max_ms", MIMD_INT, C, webhook_backoff_max_ms,
             "60000", "longest webhook retry delay, ms"),
    MIMD_OPT(S, "webhook_max_age_s", MIMD_INT, C, webhook_max_age_s, "3600",
             "a webhook event queued longer is dropped, not sent"),
    MIMD_OPT(S, "webhook_content_max", MIMD_INT, C, webhook_content_max,
             "4096", "message bytes (content + payload) copied into "
             "message.created; larger ones carry their size only"),
    MIMD_OPT(S, "http_listen", MIMD_STR, C, http_listen, "",
             "HTTP API + /healthz + /readyz HOST:PORT (\"\" = none)"),
    MIMD_OPT(S, "api_key", MIMD_STR, C, api_key, "",
             "HTTP API key(s), comma-separated (prefer api_key_file)"),
    MIMD_OPT(S, "api_key_file", MIMD_STR, C, api_key_file, "",
             "file holding HTTP API keys, one per line"),
    MIMD_OPT(S, "api_rate_per_sec", MIMD_INT, C, api_rate_per_sec, "1000",
             "HTTP API requests per key per second (0 = no limit)"),
    MIMD_OPT(S, "api_rate_burst", MIMD_INT, C, api_rate_burst, "2000",
             "HTTP API request burst per key"),
    MIMD_OPT(S, "http_body_max", MIMD_INT, C, http_body_max, "1048576",
             "largest HTTP request body, bytes (413 past it)"),
    MIMD_OPT(S, "http_conns_max", MIMD_INT, C, http_conns_max, "1024",
             "concurrent HTTP connections (0 = no cap)"),
    MIMD_OPT(S, "http_timeout_s", MIMD_INT, C, http_timeout_s, "10",
             "an HTTP request must arrive within this; idle keep-alive too"),
    MIMD_OPT(S, "event_loop", MIMD_STR, C, event_loop, "libev",
             "libev (falls back to poll if unavailable) or poll"),
    MIMD_OPT(S, "log_level", MIMD_STR, C, log_level, "info",
             "error, warn, info or debug"),
};

#define N_OPTIONS (sizeof options / sizeof options[0])

/* Limits chosen so that every value fits the library's uint32 fields and an
 * RPC frame carrying the largest message stays far below the 16 MiB RPC
 * frame limit. */
struct range {
  const char *key;
  size_t offset;
  int64_t min, max;
};

static const struct range ranges[] = {
    {"map_size_mb", offsetof(C, map_size_mb), 1, INT64_C(1) << 24},
    {"map_size_max_mb", offsetof(C, map_size_max_mb), 0, INT64_C(1) << 24},
    {"dedup_window_s", offsetof(C, dedup_window_s), 1, INT64_C(10) * 366 * 86400},
    {"pull_limit_max", offsetof(C, pull_limit_max), 1, 100000},
    {"rate_per_sec", offsetof(C, rate_per_sec), 0, 10000000},
    {"rate_burst", offsetof(C, rate_burst), 0, 100000000},
    {"content_max", offsetof(C, content_max), 1, 8 * 1024 * 1024},
    {"batch_max_ops", offsetof(C, batch_max_ops), 1, 1000000},
    /* one message to a group is one store write per member, all in one
     * transaction: 100,000 keeps that below a second of writer time */
    {"group_members_max", offsetof(C, group_members_max), 1, 100000},
    {"group_large_min", offsetof(C, group_large_min), 0, 100000},
    {"group_request_members_max", offsetof(C, group_request_members_max), 1,
     100000},
    {"cursor_flush_ms", offsetof(C, cursor_flush_ms), 0, 60000},
    {"conv_page_max", offsetof(C, conv_page_max), 1, 1000},
    {"conv_preview_max", offsetof(C, conv_preview_max), 1, 4096},
    {"recall_window_s", offsetof(C, recall_window_s), 0, 365 * 86400},
    {"edit_window_s", offsetof(C, edit_window_s), 0, 365 * 86400},
    {"typing_rate_per_s", offsetof(C, typing_rate_per_s), 1, 1000},
    {"typing_burst", offsetof(C, typing_burst), 1, 1000},
    {"typing_group_max", offsetof(C, typing_group_max), 1, 100000},
    {"presence_query_max", offsetof(C, presence_query_max), 1, 1000},
    {"presence_subscribe_max", offsetof(C, presence_subscribe_max), 1,
     100000},
    {"rpc_queue_max_mb", offsetof(C, rpc_queue_max_mb), 1, 65536},
    {"rpc_queue_pause_kb", offsetof(C, rpc_queue_pause_kb), 64,
     INT64_C(65536) * 1024},
    {"rpc_queue_resume_kb", offsetof(C, rpc_queue_resume_kb), 0,
     INT64_C(65536) * 1024},
    /* a reply rides in one RPC frame (16 MiB body): half of it leaves room
     * for the frame's targets and fields */
    {"reply_bytes_max", offsetof(C, reply_bytes_max), 4096, 8 * 1024 * 1024},
    {"read_turn_bytes", offsetof(C, read_turn_bytes), 0, INT64_C(1) << 30},
    {"hello_timeout_s", offsetof(C, hello_timeout_s), 1, 3600},
    {"rpc_ping_s", offsetof(C, rpc_ping_s), 0, 3600},
    {"rpc_timeout_s", offsetof(C, rpc_timeout_s), 2, 86400},
    {"user_devices_max", offsetof(C, user_devices_max), 0, 1000000},
    {"user_cursors_max", offsetof(C, user_cursors_max), 0, 1000000},
    {"webhook_batch_max", offsetof(C, webhook_batch_max), 1, 10000},
    /* the queue is a ring of pointers allocated at start: 8 MiB at most */
    {"webhook_queue_max", offsetof(C, webhook_queue_max), 1, 1000000},
    {"webhook_queue_max_mb", offsetof(C, webhook_queue_max_mb), 1, 65536},
    {"webhook_timeout_ms", offsetof(C, webhook_timeout_ms), 100, 600000},
    {"webhook_retry_max", offsetof(C, webhook_retry_max), 0, 1000},
    {"webhook_backoff_ms", offsetof(C, webhook_backoff_ms), 1, 3600000},
    {"webhook_backoff_max_ms", offsetof(C, webhook_backoff_max_ms), 1,
     86400000},
    {"webhook_max_age_s", offsetof(C, webhook_max_age_s), 1, 7 * 86400},
    {"webhook_content_max", offsetof(C, webhook_content_max), 0,
     8 * 1024 * 1024},
    {"api_rate_per_sec", offsetof(C, api_rate_per_sec), 0, 10000000},
    {"api_rate_burst", offsetof(C, api_rate_burst), 0, 100000000},
    {"http_body_max", offsetof(C, http_body_max), 4096, 64 * 1024 * 1024},
    {"http_conns_max", offsetof(C, http_conns_max), 0, 1000000},
    {"http_timeout_s", offsetof(C, http_timeout_s), 1, 3600},
};

/* The byte bounds must nest, or one user's reads could still cut a link:
 *   mim_logic_reply_bytes_min(content_max) <= reply_bytes_max
 *       (the largest message fits a reply on its own, so a page always
 *        makes progress; reply_bytes_max <= 8 MiB < the 16 MiB RPC body)
 *   rpc_queue_resume < rpc_queue_pause
 *   rpc_queue_pause + max(reply_bytes_max,
 *                         group_members_max * (MIM_ID_MAX + 3)) + 64 KiB
 *       <= rpc_queue_max
 *       (reads stop at the pause mark; the one reply that crossed it, a
 *        page or a whole group's member list, and the frame around it
 *        still fit under the cut-off; the range of group_members_max keeps
 *        a member list under the 16 MiB RPC body). */
static int check_bounds(const struct logicd_config *cfg) {
  size_t min = mim_logic_reply_bytes_min((uint32_t)cfg->content_max);
  if ((size_t)cfg->reply_bytes_max < min) {
    fprintf(stderr, "logicd: reply_bytes_max = %lld cannot hold one message "
                    "of content_max = %lld bytes: it must be at least %zu "
                    "(raise reply_bytes_max or lower content_max)\n",
            (long long)cfg->reply_bytes_max, (long long)cfg->content_max,
            min);
    return -1;
  }
  if (cfg->rpc_queue_resume_kb >= cfg->rpc_queue_pause_kb) {
    fprintf(stderr, "logicd: rpc_queue_resume_kb (%lld) must be below "
                    "rpc_queue_pause_kb (%lld)\n",
            (long long)cfg->rpc_queue_resume_kb,
            (long long)cfg->rpc_queue_pause_kb);
    return -1;
  }
  /* A group's member list is paged within reply_bytes_max now
   * (docs/protocol.md §10); the bound still allows a whole list, the larger
   * of the two, as a margin for any reply that names every member. Each
   * member costs at most MIM_ID_MAX bytes plus a tag and a 2-byte length;
   * the group id and the frame around it fit in the 64 KiB slack. */
  int64_t reply = cfg->reply_bytes_max;
  int64_t group_list = cfg->group_members_max * (int64_t)(MIM_ID_MAX + 3);
  if (group_list > reply)
    reply = group_list;
  int64_t need = cfg->rpc_queue_pause_kb * 1024 + reply + 64 * 1024;
  if (need > cfg->rpc_queue_max_mb * 1024 * 1024) {
    fprintf(stderr, "logicd: rpc_queue_max_mb = %lld is too small for "
                    "rpc_queue_pause_kb = %lld, reply_bytes_max = %lld and "
                    "group_members_max = %lld: it must hold pause + the "
                    "largest reply + 64 KiB (%lld bytes), or one user's "
                    "reads could cut a gateway off\n",
            (long long)cfg->rpc_queue_max_mb,
            (long long)cfg->rpc_queue_pause_kb,
            (long long)cfg->reply_bytes_max,
            (long long)cfg->group_members_max, (long long)need);
    return -1;
  }
  return 0;
}

static int check_ranges(const struct logicd_config *cfg) {
  for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
    int64_t v = *(const int64_t *)((const char *)cfg + ranges[i].offset);
    if (v < ranges[i].min || v > ranges[i].max) {
      fprintf(stderr, "logicd: %s = %lld is out of range [%lld, %lld]\n",
              ranges[i].key, (long long)v, (long long)ranges[i].min,
              (long long)ranges[i].max);
      return -1;
    }
  }
  if (cfg->map_size_max_mb != 0 && cfg->map_size_max_mb < cfg->map_size_mb) {
    fprintf(stderr, "logicd: map_size_max_mb is below map_size_mb\n");
    return -1;
  }
  /* devices logged in at once must not evict each other's cursors */
  if (cfg->user_cursors_max != 0 && cfg->user_devices_max != 0 &&
      cfg->user_cursors_max < cfg->user_devices_max) {
    fprintf(stderr, "logicd: user_cursors_max (%lld) must be at least "
                    "user_devices_max (%lld)\n",
            (long long)cfg->user_cursors_max,
            (long long)cfg->user_devices_max);
    return -1;
  }
  /* a live peer answers a PING within the timeout only if one is sent
   * well before it */
  if (cfg->rpc_ping_s != 0 && cfg->rpc_ping_s * 2 > cfg->rpc_timeout_s) {
    fprintf(stderr, "logicd: rpc_timeout_s (%lld) must be at least twice "
                    "rpc_ping_s (%lld)\n", (long long)cfg->rpc_timeout_s,
            (long long)cfg->rpc_ping_s);
    return -1;
  }
  return 0;
}

/* `listen` may name a TCP address, "unix:/path" (same as unix_socket) or
 * nothing (then unix_socket must be set). */
static int resolve_listen(struct logicd_config *cfg) {
  if (cfg->listen[0] != '\0') {
    char *unix_path = NULL;
    if (mimd_parse_addr(cfg->listen, &cfg->listen_host, &cfg->listen_port,
                        &unix_path) < 0) {
      fprintf(stderr, "logicd: bad listen address '%s' (want HOST:PORT or "
                      "unix:/path)\n", cfg->listen);
      return -1;
    }
    if (unix_path != NULL) {
      if (cfg->unix_socket[0] != '\0' && strcmp(cfg->unix_socket, unix_path)) {
        fprintf(stderr, "logicd: listen = unix:... and unix_socket name two "
                        "different sockets\n");
        free(unix_path);
        return -1;
      }
      free(cfg->unix_socket);
      cfg->unix_socket = unix_path;
    }
  }
  if (cfg->listen_host == NULL && cfg->unix_socket[0] == '\0') {
    fprintf(stderr, "logicd: nothing to listen on: set listen or "
                    "unix_socket\n");
    return -1;
  }
  return 0;
}

static int resolve_secret(struct logicd_config *cfg) {
  bool in_file = cfg->token_secret_file[0] != '\0';
  bool inline_ = cfg->token_secret[0] != '\0';
  if (in_file && inline_) {
    fprintf(stderr, "logicd: set token_secret or token_secret_file, not "
                    "both\n");
    return -1;
  }
  if (in_file) {
    if (mimd_read_secret_file("logicd", cfg->token_secret_file, &cfg->secret,
                         &cfg->secret_len) < 0)
      return -1;
  } else if (inline_) {
    cfg->secret_len = strlen(cfg->token_secret);
    cfg->secret = malloc(cfg->secret_len);
    if (cfg->secret == NULL) {
      fprintf(stderr, "logicd: out of memory\n");
      return -1;
    }
    memcpy(cfg->secret, cfg->token_secret, cfg->secret_len);
  }
  if (!cfg->dev_auth && cfg->secret_len < MIM_SECRET_MIN) {
    fprintf(stderr,
            "logicd: refusing to start: the token secret is %s (at least %d "
            "bytes are needed).\n"
            "  Set token_secret_file (or token_secret) in [logic], or "
            "dev_auth = true for development only.\n",
            cfg->secret_len == 0 ? "missing" : "too short", MIM_SECRET_MIN);
    return -1;
  }
  if (cfg->secret != NULL && cfg->secret_len < MIM_SECRET_MIN) {
    /* dev_auth with a short secret: the logic would reject it; tokens are
     * not checked anyway, so drop it rather than fail */
    explicit_bzero(cfg->secret, cfg->secret_len);
    free(cfg->secret);
    cfg->secret = NULL;
    cfg->secret_len = 0;
  }
  return 0;
}

/* Whether a TCP listener on `host` is reachable from this machine only:
 * 127.0.0.0/8, ::1 (also v4-mapped), "localhost" or the loopback interface.
 * No host (a unix socket only) counts as local. Wildcards (0.0.0.0, ::),
 * other addresses and names are not. */
static bool is_loopback(const char *host) {
  if (host == NULL || strcmp(host, "localhost") == 0 || strcmp(host, "lo") == 0)
    return true;
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, host, &a4) == 1)
    return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, host, &a6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&a6) ||
           (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
  return false;
}

/* The admin socket's only guard, when there is no admin_secret, is its file
 * mode (0600), so refuse the places where that mode protects nothing:
 *  - an abstract socket ("@name", Linux): it has no file and no mode, any
 *    local user may connect and would be an operator;
 *  - a directory others may write to without the sticky bit (e.g. a
 *    0777 data_dir): anyone could remove our socket and bind their own in
 *    its place, and mimctl would send them its requests (and admin_secret).
 * Returns -1 (with a message) when the path is unsafe. */
static int admin_path_unsafe(const struct logicd_config *cfg) {
  const char *path = cfg->admin_path;
  if (path[0] == '@') {
    if (cfg->admin_secret[0] != '\0')
      return 0;
    fprintf(stderr, "logicd: admin_listen = unix:%s is an abstract socket, "
                    "which has no file mode: every local user could connect "
                    "as an operator.\n  Use a path (unix:/run/mim/admin.sock) "
                    "or set admin_secret.\n", path);
    return -1;
  }
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    snprintf(dir, sizeof dir, ".");
  else if (slash == path)
    snprintf(dir, sizeof dir, "/");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  struct stat st;
  if (stat(dir, &st) != 0)
    return 0; /* a missing data_dir is created (0700) or reported later */
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0) {
    fprintf(stderr, "logicd: the admin socket's directory %s is writable by "
                    "others (mode %03o) without the sticky bit: anyone could "
                    "replace the socket\n  and receive mimctl's requests. "
                    "chmod go-w %s, or set admin_listen elsewhere.\n", dir,
            (unsigned)(st.st_mode & 07777), dir);
    return -1;
  }
  return 0;
}

/* The operator's way in: its own unix socket (mode 0600, under data_dir by
 * default) and/or its own secret, never the gateways' rpc_secret. */
static int resolve_admin(struct logicd_config *cfg) {
  bool in_file = cfg->admin_secret_file[0] != '\0';
  if (in_file && cfg->admin_secret[0] != '\0') {
    fprintf(stderr, "logicd: set admin_secret or admin_secret_file, not "
                    "both\n");
    return -1;
  }
  if (in_file) {
    uint8_t *buf;
    size_t len;
    if (mimd_read_secret_file("logicd", cfg->admin_secret_file, &buf, &len) < 0)
      return -1;
    if (memchr(buf, '\0', len) != NULL) {
      fprintf(stderr, "logicd: %s holds a NUL byte\n", cfg->admin_secret_file);
      explicit_bzero(buf, len);
      free(buf);
      return -1;
    }
    buf[len] = '\0'; /* the reader leaves one spare byte */
    free(cfg->admin_secret);
    cfg->admin_secret = (char *)buf;
  }
  size_t alen = strlen(cfg->admin_secret);
  if (alen > LOGICD_SECRET_MAX || strlen(cfg->rpc_secret) > LOGICD_SECRET_MAX) {
    fprintf(stderr, "logicd: rpc_secret and admin_secret may be at most %d "
                    "bytes\n", LOGICD_SECRET_MAX);
    return -1;
  }
  if (alen > 0 && alen < MIM_SECRET_MIN) {
    fprintf(stderr, "logicd: admin secret too short (at least %d bytes)\n",
            MIM_SECRET_MIN);
    return -1;
  }
  if (alen > 0 && strcmp(cfg->admin_secret, cfg->rpc_secret) == 0) {
    fprintf(stderr, "logicd: admin_secret equals rpc_secret: every gateway "
                    "host would hold operator rights\n");
    return -1;
  }
  const char *a = cfg->admin_listen;
  if (strcmp(a, "auto") == 0) {
    size_t n = strlen(cfg->data_dir) + sizeof "/admin.sock";
    cfg->admin_path = malloc(n);
    if (cfg->admin_path == NULL)
      return -1;
    snprintf(cfg->admin_path, n, "%s/admin.sock", cfg->data_dir);
  } else if (strncmp(a, "unix:", 5) == 0 && a[5] != '\0') {
    cfg->admin_path = strdup(a + 5);
    if (cfg->admin_path == NULL)
      return -1;
  } else if (a[0] != '\0') {
    fprintf(stderr, "logicd: admin_listen must be unix:/path, auto or empty, "
                    "not '%s' (operators reach the TCP listener with "
                    "admin_secret)\n", a);
    return -1;
  }
  if (cfg->admin_path != NULL && admin_path_unsafe(cfg) < 0)
    return -1;
  if (cfg->admin_path != NULL &&
      strlen(cfg->admin_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    fprintf(stderr, "logicd: admin socket path %s is too long for a unix "
                    "socket; set admin_listen = unix:/shorter/path\n",
            cfg->admin_path);
    return -1;
  }
  return 0;
}

/* Webhooks: the URL list (http and https only, at most WEBHOOK_URLS_MAX)
 * and a secret to sign with: unsigned events could be forged by anyone who
 * can reach the receiver. */
static int resolve_webhooks(struct logicd_config *cfg) {
  bool in_file = cfg->webhook_secret_file[0] != '\0';
  if (in_file && cfg->webhook_secret[0] != '\0') {
    fprintf(stderr, "logicd: set webhook_secret or webhook_secret_file, not "
                    "both\n");
    return -1;
  }
  if (in_file) {
    uint8_t *buf;
    size_t len;
    if (mimd_read_secret_file("logicd", cfg->webhook_secret_file, &buf,
                              &len) < 0)
      return -1;
    buf[len] = '\0'; /* the reader leaves one spare byte */
    if (memchr(buf, '\0', len) != NULL) {
      fprintf(stderr, "logicd: %s holds a NUL byte\n",
              cfg->webhook_secret_file);
      explicit_bzero(buf, len);
      free(buf);
      return -1;
    }
    free(cfg->webhook_secret);
    cfg->webhook_secret = (char *)buf;
  }
  char *list = strdup(cfg->webhook_url);
  if (list == NULL)
    return -1;
  int rc = 0;
  char *save = NULL;
  for (char *u = strtok_r(list, ", \t", &save); u != NULL;
       u = strtok_r(NULL, ", \t", &save)) {
    if (cfg->n_webhook_urls == WEBHOOK_URLS_MAX) {
      fprintf(stderr, "logicd: at most %d webhook_url\n", WEBHOOK_URLS_MAX);
      rc = -1;
      break;
    }
    if (webhook_check_url(u) < 0) {
      fprintf(stderr, "logicd: webhook_url '%s' is not an http:// or "
                      "https:// URL\n", u);
      rc = -1;
      break;
    }
    if (cfg->webhook_urls == NULL &&
        (cfg->webhook_urls = calloc(WEBHOOK_URLS_MAX,
                                    sizeof *cfg->webhook_urls)) == NULL) {
      rc = -1;
      break;
    }
    if ((cfg->webhook_urls[cfg->n_webhook_urls] = strdup(u)) == NULL) {
      rc = -1;
      break;
    }
    cfg->n_webhook_urls++;
  }
  free(list);
  if (rc < 0)
    return -1;
  if (cfg->n_webhook_urls > 0 &&
      strlen(cfg->webhook_secret) < MIM_SECRET_MIN) {
    fprintf(stderr, "logicd: webhook_url is set but webhook_secret is %s "
                    "(at least %d bytes): receivers could not tell our "
                    "events from forged ones\n",
            cfg->webhook_secret[0] == '\0' ? "missing" : "too short",
            MIM_SECRET_MIN);
    return -1;
  }
  if (cfg->webhook_backoff_max_ms < cfg->webhook_backoff_ms) {
    fprintf(stderr, "logicd: webhook_backoff_max_ms must be at least "
                    "webhook_backoff_ms\n");
    return -1;
  }
  return 0;
}

/* Refuses the configurations that expose more than they look like:
 * a network-reachable RPC listener that accepts any peer as a gateway, and
 * development auth next to a real token secret or on such a listener. */
static int check_trust(const struct logicd_config *cfg) {
  bool remote = !is_loopback(cfg->listen_host);
  if (remote && cfg->rpc_secret[0] == '\0') {
    fprintf(stderr,
            "logicd: refusing to start: listen = %s is not a loopback address "
            "and rpc_secret is empty,\n  so anyone who can reach it could "
            "act as a gateway. Set rpc_secret (the same in every gateway's "
            "[gateway] rpc_secret),\n  or listen on 127.0.0.1 / a unix "
            "socket.\n", cfg->listen);
    return -1;
  }
  if (cfg->dev_auth &&
      (cfg->token_secret[0] != '\0' || cfg->token_secret_file[0] != '\0')) {
    fprintf(stderr, "logicd: refusing to start: dev_auth = true and a token "
                    "secret are both set;\n  dev_auth would accept ANY token "
                    "and ignore the secret. Remove one of them.\n");
    return -1;
  }
  if (cfg->dev_auth && remote && !cfg->dev_auth_allow_remote) {
    fprintf(stderr, "logicd: refusing to start: dev_auth = true with listen = "
                    "%s, which is not a loopback address;\n  anyone reaching "
                    "a gateway could log in as anyone. Listen on loopback, or "
                    "set dev_auth_allow_remote = true\n  if this is really a "
                    "development setup.\n", cfg->listen);
    return -1;
  }
  return 0;
}

/* Splits `list` (modified in place) at commas, spaces and newlines into
 * cfg->api_keys. Returns -1 (with a message) on a bad or surplus key. */
static int add_keys(struct logicd_config *cfg, char *list, const char *from) {
  for (char *save = NULL, *k = strtok_r(list, ", \t\r\n", &save); k != NULL;
       k = strtok_r(NULL, ", \t\r\n", &save)) {
    if (k[0] == '#' && strcmp(from, "api_key") != 0) {
      /* a comment line of the key file: skip to its end */
      k = strtok_r(NULL, "\n", &save);
      continue;
    }
    size_t n = strlen(k);
    bool printable = true;
    for (size_t i = 0; i < n; i++)
      printable &= k[i] > 0x20 && k[i] < 0x7f;
    if (n > API_KEY_MAX || !printable) {
      fprintf(stderr, "logicd: an API key in %s is longer than %d bytes or "
                      "holds a byte that is not printable ASCII\n", from,
              API_KEY_MAX);
      return -1;
    }
    if (cfg->n_api_keys == API_KEYS_MAX) {
      fprintf(stderr, "logicd: more than %d API keys\n", API_KEYS_MAX);
      return -1;
    }
    cfg->api_keys[cfg->n_api_keys++] = k;
  }
  return 0;
}

/* http_listen and the API keys. A listener other hosts can reach must
 * have a key: the API acts for every user. */
static int resolve_http(struct logicd_config *cfg) {
  if (cfg->http_listen[0] == '\0')
    return 0;
  char *unix_path = NULL;
  if (mimd_parse_addr(cfg->http_listen, &cfg->http_host, &cfg->http_port,
                      &unix_path) < 0 || unix_path != NULL) {
    free(unix_path);
    fprintf(stderr, "logicd: bad http_listen address '%s' (want HOST:PORT)\n",
            cfg->http_listen);
    return -1;
  }
  if (cfg->api_key[0] != '\0') {
    cfg->api_key_list = strdup(cfg->api_key);
    if (cfg->api_key_list == NULL || add_keys(cfg, cfg->api_key_list,
                                              "api_key") < 0)
      return -1;
  }
  if (cfg->api_key_file[0] != '\0') {
    uint8_t *buf;
    size_t len;
    if (mimd_read_secret_file("logicd", cfg->api_key_file, &buf, &len) < 0)
      return -1;
    buf[len] = '\0'; /* the reader leaves one spare byte */
    cfg->api_key_file_buf = (char *)buf;
    cfg->api_key_file_len = len;
    if (memchr(buf, '\0', len) != NULL) {
      fprintf(stderr, "logicd: %s holds a NUL byte\n", cfg->api_key_file);
      return -1;
    }
    if (add_keys(cfg, cfg->api_key_file_buf, cfg->api_key_file) < 0)
      return -1;
  }
  if (cfg->n_api_keys == 0 && !is_loopback(cfg->http_host)) {
    fprintf(stderr, "logicd: refusing to start: http_listen = %s is not a "
                    "loopback address and no api_key / api_key_file is set;\n"
                    "  the HTTP API would be open to whoever reaches it.\n",
            cfg->http_listen);
    return -1;
  }
  cfg->api = (struct api_config){
      .host = cfg->http_host,
      .port = cfg->http_port,
      .keys = cfg->api_keys,
      .n_keys = cfg->n_api_keys,
      .rate_per_sec = (uint32_t)cfg->api_rate_per_sec,
      .rate_burst = (uint32_t)cfg->api_rate_burst,
      .body_max = (size_t)cfg->http_body_max,
      .conns_max = (size_t)cfg->http_conns_max,
      .timeout_s = (int)cfg->http_timeout_s,
      .token_secret = cfg->secret,
      .token_secret_len = cfg->secret_len,
      .group_request_members_max = (uint32_t)cfg->group_request_members_max,
      .pull_limit_max = (uint32_t)cfg->pull_limit_max,
  };
  return 0;
}

int logicd_config_load(struct logicd_config *cfg, int argc, char **argv) {
  memset(cfg, 0, sizeof *cfg);
  int rc = mimd_config_load(cfg, options, N_OPTIONS, argc, argv, "logicd",
                            "libmim logic daemon: message logic and storage "
                            "behind gatewayd (internal RPC).");
  if (rc != 0)
    return rc;
  cfg->log_level_num = mimd_log_level_parse(cfg->log_level);
  if (cfg->log_level_num < 0) {
    fprintf(stderr, "logicd: unknown log_level '%s'\n", cfg->log_level);
    return -1;
  }
  if (strcmp(cfg->event_loop, "libev") != 0 &&
      strcmp(cfg->event_loop, "poll") != 0) {
    fprintf(stderr, "logicd: event_loop must be libev or poll, not '%s'\n",
            cfg->event_loop);
    return -1;
  }
  if (cfg->data_dir[0] == '\0') {
    fprintf(stderr, "logicd: data_dir is empty\n");
    return -1;
  }
  if (check_ranges(cfg) < 0 || check_bounds(cfg) < 0 ||
      resolve_listen(cfg) < 0 || check_trust(cfg) < 0 ||
      resolve_secret(cfg) < 0 || resolve_admin(cfg) < 0 ||
      resolve_webhooks(cfg) < 0 || resolve_http(cfg) < 0)
    return -1;
  return 0;
}

void logicd_config_warn(const struct logicd_config *cfg) {
  if (cfg->dev_auth) {
    mimd_warn("**************************************************************");
    mimd_warn("* WARNING: dev_auth is ON: ANY login token is accepted.      *");
    mimd_warn("* Anyone who can reach a gateway can log in as ANY user.     *");
    mimd_warn("* For development only. Never run this in production.        *");
    mimd_warn("**************************************************************");
  }
  if (cfg->rpc_secret[0] == '\0') {
    mimd_warn("WARNING: rpc_secret is empty: any process that can connect to "
              "the RPC listener is accepted as a gateway%s",
              is_loopback(cfg->listen_host)
                  ? " (listening on loopback / unix socket only)"
                  : " -- AND THE LISTENER IS NOT ON LOOPBACK");
  }
  if (cfg->http_host != NULL && cfg->n_api_keys == 0)
    mimd_warn("http_listen is set without api_key / api_key_file: every "
              "/api/ request is refused (401); /healthz and /readyz work");
  for (size_t k = 0; cfg->http_host != NULL && k < cfg->n_api_keys; k++)
    if (strlen(cfg->api_keys[k]) < 16 && !is_loopback(cfg->http_host)) {
      mimd_warn("an API key is shorter than 16 bytes on a listener other "
                "hosts reach: use long random keys (openssl rand -hex 32)");
      break;
    }
  if (cfg->http_host != NULL && cfg->api_key[0] != '\0')
    mimd_info("api_key is set inline; api_key_file keeps it out of config "
              "files and process listings");
  if (cfg->api_key_file[0] != '\0') {
    struct stat st;
    if (stat(cfg->api_key_file, &st) == 0 && (st.st_mode & 077) != 0)
      mimd_warn("api_key_file %s is readable by group or others (mode %03o); "
                "chmod 600 it", cfg->api_key_file,
                (unsigned)(st.st_mode & 0777));
  }
  if (cfg->token_secret[0] != '\0')
    mimd_info("token_secret is set inline; token_secret_file keeps it out of "
              "config files and process listings");
  if (cfg->token_secret_file[0] != '\0') {
    struct stat st;
    if (stat(cfg->token_secret_file, &st) == 0 && (st.st_mode & 077) != 0)
      mimd_warn("token_secret_file %s is readable by group or others "
                "(mode %03o); chmod 600 it",
                cfg->token_secret_file, (unsigned)(st.st_mode & 0777));
  }
}

void logicd_config_store(const struct logicd_config *cfg,
                         struct mim_lmdb_config *out) {
  mim_lmdb_config_init(out);
  out->path = cfg->data_dir;
  out->map_size = (size_t)cfg->map_size_mb << 20;
  if (cfg->map_size_max_mb > 0)
    out->map_size_max = (size_t)cfg->map_size_max_mb << 20;
  out->dedup_window_ms = cfg->dedup_window_s * 1000;
  /* a read copies about one reply's worth, not pull_limit_max messages */
  out->read_bytes_max = (size_t)cfg->reply_bytes_max;
  out->cursors_per_user_max = (size_t)cfg->user_cursors_max;
  out->group_members_max = (uint32_t)cfg->group_members_max;
  out->group_large_min = (uint32_t)cfg->group_large_min;
}

void logicd_config_logic(const struct logicd_config *cfg,
                         struct mim_backend *be, struct mim_logic_config *out) {
  mim_logic_config_init(out);
  out->backend = be;
  out->secret = cfg->secret;
  out->secret_len = cfg->secret_len;
  out->dev_auth = cfg->dev_auth;
  /* ranges checked at load: every value fits in uint32 */
  out->pull_limit_max = (uint32_t)cfg->pull_limit_max;
  if (out->pull_limit_default > out->pull_limit_max)
    out->pull_limit_default = out->pull_limit_max;
  out->rate_per_sec = (uint32_t)cfg->rate_per_sec;
  out->rate_burst = (uint32_t)cfg->rate_burst;
  out->content_max = (uint32_t)cfg->content_max;
  out->batch_max_ops = (uint32_t)cfg->batch_max_ops;
  out->cursor_flush_ms = (uint32_t)cfg->cursor_flush_ms;
  out->reply_bytes_max = (uint32_t)cfg->reply_bytes_max;
  out->read_turn_bytes = (uint32_t)cfg->read_turn_bytes;
  out->user_devices_max = (uint32_t)cfg->user_devices_max;
  out->group_request_members_max = (uint32_t)cfg->group_request_members_max;
  out->conv_page_max = (uint32_t)cfg->conv_page_max;
  out->conv_preview_max = (uint32_t)cfg->conv_preview_max;
  out->recall_window_s = (uint32_t)cfg->recall_window_s;
  out->edit_window_s = (uint32_t)cfg->edit_window_s;
  out->typing_rate_per_s = (uint32_t)cfg->typing_rate_per_s;
  out->typing_burst = (uint32_t)cfg->typing_burst;
  out->typing_group_max = (uint32_t)cfg->typing_group_max;
  out->presence_query_max = (uint32_t)cfg->presence_query_max;
  out->presence_subscribe_max = (uint32_t)cfg->presence_subscribe_max;
}

void logicd_config_server(const struct logicd_config *cfg,
                          const volatile sig_atomic_t *stop_flag,
                          struct server_config *out) {
  *out = (struct server_config){
      .host = cfg->listen_host,
      .port = cfg->listen_port,
      .unix_path = cfg->unix_socket,
      .rpc_secret = cfg->rpc_secret,
      .link_queue_max = (size_t)cfg->rpc_queue_max_mb << 20,
      .link_queue_pause = (size_t)cfg->rpc_queue_pause_kb << 10,
      .link_queue_resume = (size_t)cfg->rpc_queue_resume_kb << 10,
      .admin_unix_path = cfg->admin_path,
      .admin_secret = cfg->admin_secret,
      .hello_timeout_ms = cfg->hello_timeout_s * 1000,
      .ping_ms = cfg->rpc_ping_s * 1000,
      .dead_ms = cfg->rpc_timeout_s * 1000,
      .prefer_libev = strcmp(cfg->event_loop, "libev") == 0,
      .stop_flag = stop_flag,
      .api = cfg->http_host != NULL ? &cfg->api : NULL,
  };
}

bool logicd_config_webhook(const struct logicd_config *cfg,
                           struct webhook_config *out) {
  if (cfg->n_webhook_urls == 0)
    return false;
  *out = (struct webhook_config){
      .urls = (const char *const *)cfg->webhook_urls,
      .n_urls = cfg->n_webhook_urls,
      .secret = (const uint8_t *)cfg->webhook_secret,
      .secret_len = strlen(cfg->webhook_secret),
      /* ranges checked at load */
      .batch_max = (uint32_t)cfg->webhook_batch_max,
      .queue_max = (uint32_t)cfg->webhook_queue_max,
      .queue_bytes_max = (size_t)cfg->webhook_queue_max_mb << 20,
      .timeout_ms = (uint32_t)cfg->webhook_timeout_ms,
      .retry_max = (uint32_t)cfg->webhook_retry_max,
      .backoff_ms = (uint32_t)cfg->webhook_backoff_ms,
      .backoff_max_ms = (uint32_t)cfg->webhook_backoff_max_ms,
      .max_age_ms = (uint32_t)cfg->webhook_max_age_s * 1000,
      .content_max = (uint32_t)cfg->webhook_content_max,
  };
  return true;
}

static void wipe_string(char *s) {
  if (s != NULL)
    explicit_bzero(s, strlen(s));
}

void logicd_config_free(struct logicd_config *cfg) {
  wipe_string(cfg->token_secret);
  wipe_string(cfg->rpc_secret);
  wipe_string(cfg->admin_secret);
  wipe_string(cfg->webhook_secret);
  for (size_t i = 0; i < cfg->n_webhook_urls; i++)
    free(cfg->webhook_urls[i]);
  free(cfg->webhook_urls);
  free(cfg->admin_path);
  if (cfg->secret != NULL) {
    explicit_bzero(cfg->secret, cfg->secret_len);
    free(cfg->secret);
  }
  free(cfg->listen_host);
  free(cfg->http_host);
  wipe_string(cfg->api_key);
  wipe_string(cfg->api_key_list);
  free(cfg->api_key_list);
  if (cfg->api_key_file_buf != NULL)
    explicit_bzero(cfg->api_key_file_buf, cfg->api_key_file_len);
  free(cfg->api_key_file_buf);
  mimd_config_free(cfg, options, N_OPTIONS);
  memset(cfg, 0, sizeof *cfg);
}
