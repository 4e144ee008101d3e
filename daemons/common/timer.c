/* One-shot timers on libev or lws's poll() loop (timer.h says why both). */
#include "timer.h"

#include <string.h>

static void timer_sul_cb(lws_sorted_usec_list_t *sul) {
  struct mimd_timer *t = lws_container_of(sul, struct mimd_timer, sul);
  t->cb(t->arg);
}

#ifdef MIMD_HAVE_LIBEV
static void timer_ev_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct mimd_timer *t = lws_container_of(w, struct mimd_timer, ev);
  t->cb(t->arg);
}
#endif

void mimd_timer_init(struct mimd_timer *t, void (*cb)(void *arg), void *arg) {
  memset(t, 0, sizeof *t);
  t->cb = cb;
  t->arg = arg;
#ifdef MIMD_HAVE_LIBEV
  ev_timer_init(&t->ev, timer_ev_cb, 0., 0.);
#endif
}

void mimd_timer_bind(struct mimd_timer *t, struct lws_context *ctx,
                     void *ev_loop) {
  t->ctx = ctx;
  t->ev_loop = ev_loop;
}

void mimd_timer_set(struct mimd_timer *t, lws_usec_t delay_us) {
  if (t->ctx == NULL)
    return;
  if (delay_us < 0)
    delay_us = 0;
#ifdef MIMD_HAVE_LIBEV
  if (t->ev_loop) {
    struct ev_loop *loop = t->ev_loop;
    ev_timer_stop(loop, &t->ev);
    ev_timer_set(&t->ev, (double)delay_us / 1e6, 0.);
    ev_timer_start(loop, &t->ev);
    return;
  }
#endif
  lws_sul_schedule(t->ctx, 0, &t->sul, timer_sul_cb, delay_us);
}

void mimd_timer_cancel(struct mimd_timer *t) {
  if (t->ctx == NULL)
    return;
#ifdef MIMD_HAVE_LIBEV
  if (t->ev_loop) {
    ev_timer_stop((struct ev_loop *)t->ev_loop, &t->ev);
    return;
  }
#endif
  lws_sul_cancel(&t->sul);
}
