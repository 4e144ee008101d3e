/* The RPC server: accepts gateway and mimctl links, feeds what they send into
 * the logic, sends the logic's effects back as RPC frames, and moves write
 * batches between the logic and the writer thread (docs/rpc.md).
 *
 * Everything runs on the loop thread, apart from the commit itself (writer
 * thread) and server_wake() (any thread, signal handlers). */
#ifndef LOGICD_RPC_SERVER_H
#define LOGICD_RPC_SERVER_H

#include "api.h"

#include <mim/logic.h>
#include <mim/store.h>
#include <signal.h>
#include <stdbool.h>

struct server_config {
  const char *host;         /* TCP listener; NULL = none */
  int port;                 /* 0 = any free port */
  const char *unix_path;    /* unix listener; NULL or "" = none */
  const char *rpc_secret;   /* "" = accept any (copied) */
  size_t link_queue_max;    /* output bytes per link before cutting it off */
  size_t link_queue_pause;  /* above this a link is not read (and its
                               gateway's reads do not run) ... */
  size_t link_queue_resume; /* ... until its queue is below this */
  const char *admin_unix_path; /* operator socket (mode 0600); NULL = none */
  const char *admin_secret; /* operators' HELLO secret; "" or NULL = none
                               (then only the admin socket grants admin) */
  int64_t hello_timeout_ms; /* a link must have sent HELLO by then */
  int64_t ping_ms;          /* PING a link silent this long; 0 = never */
  int64_t dead_ms;          /* close a link silent this long */
  bool prefer_libev;
  const struct api_config *api; /* the HTTP API; NULL = none (api.h) */
  /* set (by a signal handler) to ask for a graceful stop */
  const volatile sig_atomic_t *stop_flag;
  /* set (by a signal handler) to ask for a reload: the loop clears it and
   * calls reload(reload_user) while running; NULL = no reloads */
  volatile sig_atomic_t *reload_flag;
  void (*reload)(void *user);
  void *reload_user;
};

struct server;

/* Starts listening and starts the writer thread. `logic` and `be` are
 * borrowed and must outlive the server. Errors: -ENOMEM, -EADDRINUSE, -EIO,
 * -EAGAIN. */
int server_create(struct server **out, const struct server_config *cfg,
                  struct mim_logic *logic, struct mim_backend *be);

/* "libev" or "poll". */
const char *server_loop_backend(const struct server *s);

/* The bound HTTP API port (0 without one). */
int server_http_port(const struct server *s);

/* The bound TCP port (0 without a TCP listener). */
int server_port(const struct server *s);

/* "127.0.0.1:8090 and unix:/run/mim.sock": where it listens, with the port
 * actually bound. Valid until server_destroy(). */
const char *server_address(struct server *s);

/* Serves until *stop_flag is set, then stops reading requests, lets every
 * pending write commit, delivers what that produced (best effort, a couple
 * of seconds at most), and returns. */
void server_run(struct server *s);

/* The exit status of logicd when it stopped because the store became
 * unusable (docs/operations.md): its supervisor restarts it, and the
 * restart opens the store afresh from its last durable state. */
#define LOGICD_EXIT_STORE 3

/* 0, or the error that made the store unusable and server_run() return on
 * its own: every request still pending got an error reply, and nothing
 * that failed was acknowledged. */
int server_store_failed(const struct server *s);

/* For GET /readyz and mim_ready: serving (not stopping) with a store that
 * can still commit. Loop thread. */
bool server_ready(const struct server *s);

/* Gateway links up (HELLO accepted), and the bytes queued for output on
 * all links (metrics). Loop thread. */
size_t server_gateway_links(const struct server *s);
size_t server_queue_bytes(const struct server *s);

/* Wakes the loop so that it looks at the stop flag. Async-signal-safe. */
void server_wake(struct server *s);

/* Replaces the secrets new HELLOs are checked against (copied; links that
 * are up stay up). NULL leaves that one as it is. Errors: -ENOMEM (nothing
 * changed). Loop thread only (daemons/logicd/reload.c). */
int server_set_secrets(struct server *s, const char *rpc_secret,
                       const char *admin_secret);

/* Replaces the HTTP API's key set (copied: api_set_keys()). Errors:
 * -ENOENT (no HTTP API: http_listen was unset at start), -EINVAL,
 * -ENOMEM (the old keys stay). Loop thread only (daemons/logicd/reload.c). */
int server_set_api_keys(struct server *s, const char *const *keys,
                        size_t n_keys);

/* Joins the writer, closes every link, frees the server. NULL: no-op. */
void server_destroy(struct server *s);

#endif
