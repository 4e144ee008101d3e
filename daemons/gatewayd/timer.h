/* gatewayd's one-shot timers (timer.c): below every other module. */
#ifndef GATEWAYD_TIMER_H
#define GATEWAYD_TIMER_H

#include <libwebsockets.h>

#ifdef MIMD_HAVE_LIBEV
#include <ev.h>
#endif

struct gw;

/* A one-shot timer on the daemon's loop (loop.c). On libev it is an
 * ev_timer, not an lws_sul: lws 4.1.6's libev glue re-arms its own timer
 * watcher while it is still active (ev_timer_set + ev_timer_start, a no-op
 * on an active watcher), so an lws_sul due before the one lws armed fires
 * late — seconds late for an auth deadline. On lws's poll() loop it is an
 * lws_sul, which that loop services correctly. */
struct gw_timer {
  struct gw *gw;
  void (*cb)(struct gw *gw);
  lws_sorted_usec_list_t sul;
#ifdef MIMD_HAVE_LIBEV
  ev_timer ev;
#endif
};

void gw_timer_init(struct gw *gw, struct gw_timer *t, void (*cb)(struct gw *));
/* (Re)arms `t` to fire once after `delay_us`. */
void gw_timer_set(struct gw_timer *t, lws_usec_t delay_us);
void gw_timer_cancel(struct gw_timer *t);

#endif
