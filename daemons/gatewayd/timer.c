/* One-shot timers on gatewayd's loop: an ev_timer on libev, an lws_sul on
 * lws's poll() loop (timer.h says why). */
#include "timer.h"

#include "gateway.h"

#include <string.h>

static void timer_sul_cb(lws_sorted_usec_list_t *sul) {
  struct gw_timer *t = lws_container_of(sul, struct gw_timer, sul);
  t->cb(t->gw);
}

#ifdef MIMD_HAVE_LIBEV
static void timer_ev_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct gw_timer *t = lws_container_of(w, struct gw_timer, ev);
  t->cb(t->gw);
}

#endif

void gw_timer_init(struct gw *gw, struct gw_timer *t, void (*cb)(struct gw *)) {
  memset(t, 0, sizeof *t);
  t->gw = gw;
  t->cb = cb;
#ifdef MIMD_HAVE_LIBEV
  ev_timer_init(&t->ev, timer_ev_cb, 0., 0.);
#endif
}

void gw_timer_set(struct gw_timer *t, lws_usec_t delay_us) {
#ifdef MIMD_HAVE_LIBEV
  if (t->gw->ev_loop) {
    struct ev_loop *loop = t->gw->ev_loop;
    ev_timer_stop(loop, &t->ev);
    ev_timer_set(&t->ev, (double)delay_us / 1e6, 0.);
    ev_timer_start(loop, &t->ev);
    return;
  }
#endif
  lws_sul_schedule(t->gw->context, 0, &t->sul, timer_sul_cb, delay_us);
}

void gw_timer_cancel(struct gw_timer *t) {
#ifdef MIMD_HAVE_LIBEV
  if (t->gw->ev_loop) {
    ev_timer_stop((struct ev_loop *)t->gw->ev_loop, &t->ev);
    return;
  }
#endif
  lws_sul_cancel(&t->sul);
}

