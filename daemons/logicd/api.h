/* logicd's HTTP API for application backends (docs/http-api.md) and its
 * health endpoints, on `http_listen`: JSON in and out, API keys, a token
 * bucket per key. Every operation goes through the library's operator
 * entry points (mim_logic_admin(), mim_logic_kick_user(),
 * mim_sessions_foreach_device(), mim_token_sign()), exactly as mimctl's
 * RPC requests do; writes are answered after their commit, from the
 * server's effect loop, never blocking it.
 *
 * Part of the RPC server (it shares its logic, loop, pump and admin
 * request table); runs on the loop thread. */
#ifndef LOGICD_API_H
#define LOGICD_API_H

#include <mim/logic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define API_KEY_MAX 256          /* bytes of one key */
#define API_KEYS_MAX 16          /* keys configured at once */
#define API_PRESENCE_MAX 50      /* uids one presence request may name */
#define API_TOKEN_TTL_MAX (366 * 86400) /* longest token an API call mints */

struct api_config {
  const char *host;        /* NULL = no HTTP listener */
  int port;
  const char *const *keys; /* n_keys of them (0..API_KEYS_MAX), copied */
  size_t n_keys;
  uint32_t rate_per_sec;   /* requests per key per second; 0 = no limit */
  uint32_t rate_burst;
  size_t body_max;         /* request body bytes (413 past it) */
  size_t conns_max;        /* concurrent HTTP connections (0 = no cap) */
  int timeout_s;           /* request deadline and keep-alive idle time */
  const uint8_t *token_secret; /* borrowed; NULL = POST /tokens is 403 */
  size_t token_secret_len;
  uint32_t group_request_members_max; /* longest list in a request */
  uint32_t pull_limit_max;            /* largest messages page */
};

struct server;
struct api;

/* Starts the listener on the server's lws context. No key (n_keys 0):
 * every /api/ request is refused 401. Errors: -EINVAL (too many keys, or
 * one too long); -ENOMEM; -EADDRINUSE (logged). `cfg` is
 * copied; the api keeps its own copies of the keys, the other strings
 * (host, token_secret) are borrowed and must outlive the api. */
int api_create(struct api **out, struct server *s,
               const struct api_config *cfg);

/* Replaces the key set (a SIGHUP reload): `keys` (n_keys of them, borrowed
 * for the call) are copied, the old copies wiped and freed, and every
 * key's rate bucket starts full again. Requests already admitted finish;
 * the next one is checked against the new set. Errors: -EINVAL (n_keys is
 * 0 or past API_KEYS_MAX, or a key is longer than API_KEY_MAX), -ENOMEM:
 * then the old keys stay. Loop thread only. */
int api_set_keys(struct api *a, const char *const *keys, size_t n_keys);

/* Stops its timers: before the loop is destroyed. NULL is a no-op. */
void api_stop(struct api *a);

/* Frees the api once the lws context is gone (its connections closed).
 * NULL is a no-op. */
void api_destroy(struct api *a);

/* Whether answers are being written (a stopping logicd lets them go out
 * within its flush grace). NULL: false. */
bool api_writing(const struct api *a);

/* The bound port. */
int api_port(const struct api *a);

/* Constant-time in every configured key: whether `auth` is exactly
 * "Bearer <one of keys>". Exposed for the unit test. */
bool api_key_ok(const char *const *keys, size_t n_keys, const char *auth);

#endif
