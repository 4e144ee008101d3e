/* Keep-alive and the idle deadline (docs/protocol.md §11).
 *
 * A connection silent for ping_interval_s gets a websocket ping; one from
 * which nothing (no websocket message, no pong) was heard for
 * idle_timeout_s is told so with Kick IDLE and closed with code 4002.
 *
 * Why not lws's own validity policy: it would drop such a connection
 * without a word (no Kick, no close frame), and its pings have an empty
 * payload, whose pongs lws never reports to the protocol callback, so the
 * gateway could not know a pong came. These pings carry a payload; lws's
 * policy stays armed a few seconds after ours only as a backstop
 * (gateway.c).
 *
 * Every connection gets the same intervals, so two lists ordered by when
 * each connection was last heard from are also ordered by deadline:
 * `fresh` (not pinged since) and `pinged`. Hearing from a connection moves
 * it to the tail of `fresh`, O(1); the timer moves the heads of `fresh`
 * that are due a ping to `pinged`, and closes the heads of `pinged` that
 * are due the idle close. One timer, for the earlier of the two heads,
 * serves them all (like the auth deadline in clients.c). */
#include "idle.h"

#include "gateway.h"
#include "tx.h"

#include <log.h>

enum { L_NONE, L_FRESH, L_PINGED };

struct ends {
  struct client **head, **tail;
};

static struct ends list_of(struct gw *gw, int which) {
  if (which == L_FRESH)
    return (struct ends){&gw->cl.idle_head, &gw->cl.idle_tail};
  return (struct ends){&gw->cl.ping_head, &gw->cl.ping_tail};
}

static lws_usec_t secs(int64_t s) { return (lws_usec_t)s * LWS_US_PER_SEC; }

static void arm(struct gw *gw) {
  if (gw->state == GW_DONE)
    return;
  lws_usec_t due = 0;
  bool any = false;
  if (gw->cl.idle_head) {
    due = gw->cl.idle_head->heard_us + secs(gw->cfg->ping_interval_s);
    any = true;
  }
  if (gw->cl.ping_head) {
    lws_usec_t d = gw->cl.ping_head->heard_us + secs(gw->cfg->idle_timeout_s);
    if (!any || d < due)
      due = d;
    any = true;
  }
  if (!any)
    return;
  lws_usec_t wait = due - lws_now_usecs();
  mimd_timer_set(&gw->cl.idle, wait > 0 ? wait : 1);
}

void gw_idle_unlink(struct gw *gw, struct client *c) {
  if (c->idle_list == L_NONE)
    return;
  struct ends e = list_of(gw, c->idle_list);
  if (c->idle_prev)
    c->idle_prev->idle_next = c->idle_next;
  else
    *e.head = c->idle_next;
  if (c->idle_next)
    c->idle_next->idle_prev = c->idle_prev;
  else
    *e.tail = c->idle_prev;
  c->idle_prev = c->idle_next = NULL;
  c->idle_list = L_NONE;
  /* the timer is left armed: when it fires it finds the new heads */
}

static void append(struct gw *gw, struct client *c, int which) {
  struct ends e = list_of(gw, which);
  c->idle_prev = *e.tail;
  c->idle_next = NULL;
  if (*e.tail)
    (*e.tail)->idle_next = c;
  else
    *e.head = c;
  *e.tail = c;
  c->idle_list = (uint8_t)which;
}

/* Deadlines move in steps of this much: a connection heard from again
 * within it stays where it is (its deadlines are then up to this much
 * early), so a busy connection costs no list work per message. */
#define TOUCH_STEP_US (LWS_US_PER_SEC / 4)

void gw_idle_touch(struct gw *gw, struct client *c) {
  if (c->closing)
    return;
  lws_usec_t now = lws_now_usecs();
  if (c->idle_list == L_FRESH && now - c->heard_us < TOUCH_STEP_US)
    return;
  bool was_armed = gw->cl.idle_head != NULL || gw->cl.ping_head != NULL;
  gw_idle_unlink(gw, c);
  c->heard_us = now;
  append(gw, c, L_FRESH);
  /* an armed timer fires no later than this connection's deadlines and
   * re-arms for the heads it then finds: only an idle gateway needs it
   * armed now */
  if (!was_armed)
    arm(gw);
}

void gw_idle_timer(void *arg) {
  struct gw *gw = arg;
  lws_usec_t now = lws_now_usecs();
  lws_usec_t ping_limit = now - secs(gw->cfg->ping_interval_s);
  lws_usec_t idle_limit = now - secs(gw->cfg->idle_timeout_s);

  while (gw->cl.idle_head && gw->cl.idle_head->heard_us <= ping_limit) {
    struct client *c = gw->cl.idle_head;
    gw_idle_unlink(gw, c);
    append(gw, c, L_PINGED);
    if (!c->closing) {
      c->ping_due = true;
      lws_callback_on_writable(c->wsi);
    }
  }
  while (gw->cl.ping_head && gw->cl.ping_head->heard_us <= idle_limit) {
    struct client *c = gw->cl.ping_head;
    gw_idle_unlink(gw, c);
    if (c->closing)
      continue;
    mimd_debug("conn %llu: nothing heard for %lld s: closing",
               (unsigned long long)c->id, (long long)gw->cfg->idle_timeout_s);
    c->ping_due = false;
    gw_send_kick(gw, c, MIM_KICK_IDLE, "idle timeout");
    gw_close(gw, c, GW_CLOSE_IDLE, "idle timeout");
  }
  arm(gw);
}
