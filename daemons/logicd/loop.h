/* The event loop logicd runs on: an lws context with its listeners, driven
 * by a libev loop that logicd owns (lws's libev event-lib plugin), or by
 * lws's own poll() loop when libev is unavailable.
 *
 * Owning the loop lets the daemon stop it exactly when its shutdown drain is
 * finished (loop_stop) and arm its own timer. Everything here runs on the
 * loop thread except loop_wake(). */
#ifndef LOGICD_LOOP_H
#define LOGICD_LOOP_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>

struct loop;

struct loop_config {
  const struct lws_protocols *protocols; /* borrowed, must outlive the loop */
  const char *accept_protocol;  /* protocol accepted sockets bind to */
  void *user;                   /* lws_context_user() */
  const char *host;             /* TCP listener; NULL = none */
  int port;                     /* 0 = any free port */
  const char *unix_path;        /* unix listener; NULL or "" = none */
  const char *admin_path;       /* operator unix listener (mode 0600);
                                   NULL or "" = none */
  bool prefer_libev;
};

/* Creates the context and its listeners. Errors: -ENOMEM; -EADDRINUSE or
 * -EIO when a listener cannot be set up (lws logs why). */
int loop_create(struct loop **out, const struct loop_config *cfg);

/* Closes every connection (their close callbacks run now) and frees the
 * loop. NULL is a no-op. */
void loop_destroy(struct loop *l);

/* "libev" or "poll". */
const char *loop_backend(const struct loop *l);

/* Whether `wsi` was accepted on the operator listener. */
bool loop_is_admin(const struct loop *l, struct lws *wsi);

/* The lws context, for other vhosts on the same loop (the HTTP API). */
struct lws_context *loop_context(const struct loop *l);

/* The libev loop lws runs on, or NULL on lws's poll() loop (for timers:
 * common/timer.h). */
void *loop_ev(const struct loop *l);

/* The bound TCP port (useful with port 0), or 0 without a TCP listener. */
int loop_port(const struct loop *l);

/* Runs until loop_stop(). */
void loop_run(struct loop *l);

/* Makes loop_run() return once the current callback is done. */
void loop_stop(struct loop *l);

/* Interrupts the loop's wait: every protocol gets
 * LWS_CALLBACK_EVENT_WAIT_CANCELLED (once per vhost) on the loop thread.
 * Safe from any thread and from a signal handler. */
void loop_wake(struct loop *l);

/* Calls `cb(user)` once on the loop thread after `ms` milliseconds,
 * replacing any earlier timer. */
void loop_timer(struct loop *l, int64_t ms, void (*cb)(void *user),
                void *user);

#endif
