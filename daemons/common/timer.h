/* A one-shot timer on a daemon's loop: an ev_timer when the daemon runs
 * lws on its own libev loop, an lws_sul on lws's poll() loop.
 *
 * Why not always an lws_sul: lws 4.1.6's libev glue re-arms its own timer
 * watcher while it is still active (ev_timer_set + ev_timer_start, a no-op
 * on an active watcher), so an lws_sul due before the one lws armed fires
 * late (seconds late for an auth deadline on a quiet daemon). lws's poll()
 * loop services lws_suls correctly.
 *
 * Everything here runs on the loop thread. */
#ifndef MIMD_TIMER_H
#define MIMD_TIMER_H

#include <libwebsockets.h>

#ifdef MIMD_HAVE_LIBEV
#include <ev.h>
#endif

struct mimd_timer {
  struct lws_context *ctx; /* NULL until mimd_timer_bind() */
  void *ev_loop;           /* the daemon's libev loop, NULL on poll() */
  void (*cb)(void *arg);
  void *arg;
  lws_sorted_usec_list_t sul;
#ifdef MIMD_HAVE_LIBEV
  ev_timer ev;
#endif
};

/* Zeroes `t` and sets what it calls: `cb(arg)` on the loop thread (`arg`
 * borrowed). No allocation, no errors. Set and cancel do nothing until
 * mimd_timer_bind(). */
void mimd_timer_init(struct mimd_timer *t, void (*cb)(void *arg), void *arg);

/* Ties `t` to the loop it runs on: `ctx` and, on libev, `ev_loop` (NULL on
 * lws's poll() loop), both borrowed; `t` must be cancelled before either
 * goes away. */
void mimd_timer_bind(struct mimd_timer *t, struct lws_context *ctx,
                     void *ev_loop);

/* (Re)arms `t` to fire once after `delay_us` (negative: at once). */
void mimd_timer_set(struct mimd_timer *t, lws_usec_t delay_us);

/* Disarms `t`; a no-op when it is not armed or not bound. */
void mimd_timer_cancel(struct mimd_timer *t);

#endif
