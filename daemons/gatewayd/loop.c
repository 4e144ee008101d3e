/* The lws context gatewayd runs on, the websocket listener, the loop, and
 * the orderly stop.
 *
 * The loop is a libev loop that gatewayd creates and hands to lws (a
 * "foreign" loop for lws's libev plugin): owning it, the daemon stops it
 * exactly when its shutdown drain has finished, with ev_break(). Without
 * libev (not built in, or the plugin fails to load) lws's own poll() loop
 * runs instead. */
#include "gateway.h"

#include <log.h>
#include <lwsloop.h>
#include <signals.h>
#include <stdlib.h>
#include <string.h>

#ifdef MIMD_HAVE_LIBEV
#include <ev.h>
#endif

/* How long a stop waits for clients to take their kick and close frames
 * and for CONN_CLOSED to reach logicd. */
#define DRAIN_TIMEOUT_S 5

/* lws reads at most this much per socket read; one buffer per thread */
#define READ_CHUNK (64 * 1024)

/* The signal handler has only a function pointer to call: it reaches the
 * context through this. NULL outside the loop's lifetime. */
static struct lws_context *volatile wake_context;

static void wake(void) {
  struct lws_context *ctx = wake_context;
  if (ctx != NULL)
    lws_cancel_service(ctx);
}

static void drain_timeout(struct gw *gw);

/* ---- timers ---- */

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

/* lws services its own timers (pings, idle hangups, close and handshake
 * timeouts) after any socket event, or when its timer watcher fires — which,
 * after the re-arming problem described at struct gw_timer, may be much
 * later than due on a quiet gateway. Waking lws once a second bounds that
 * lateness to a second for the cost of one pipe write. */
#define PUMP_INTERVAL_S 1.0

static void pump_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct gw *gw = lws_container_of(w, struct gw, pump);
  lws_cancel_service(gw->context);
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

/* ---- context, listener, loop ---- */

static struct lws_context *make_context(struct gw *gw, bool libev) {
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  /* listeners are made by make_vhost(), so that a busy port is told apart
   * from a missing event-lib plugin */
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  if (gw->cfg->tls)
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.user = gw;
  info.pt_serv_buf_size = READ_CHUNK;
  return mimd_lws_context_create(&info, libev, &gw->ev_loop);
}

static int make_vhost(struct gw *gw) {
  const struct gw_config *cfg = gw->cfg;
  struct lws_context_creation_info vi;
  memset(&vi, 0, sizeof vi);
  vi.vhost_name = "gatewayd";
  vi.protocols = gw->protocols;
  vi.user = gw;
  vi.port = cfg->listen_port;
  vi.iface = cfg->listen_host;
  vi.options = LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  /* an IPv4 address cannot be bound on an IPv6 socket */
  if (cfg->listen_host && strchr(cfg->listen_host, ':') == NULL)
    vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  /* lws pings a connection silent for ping_interval_s and drops one
   * silent (no pong, no message) for idle_timeout_s */
  gw->ws_policy.secs_since_valid_ping = (uint16_t)cfg->ping_interval_s;
  gw->ws_policy.secs_since_valid_hangup = (uint16_t)cfg->idle_timeout_s;
  vi.retry_and_idle_policy = &gw->ws_policy;
  if (cfg->tls) {
    vi.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    vi.ssl_cert_filepath = cfg->tls_cert;
    vi.ssl_private_key_filepath = cfg->tls_key;
  }
  gw->vhost = lws_create_vhost(gw->context, &vi);
  if (gw->vhost == NULL) {
    mimd_error("cannot listen on %s (address in use, not an address of this "
               "host%s?)",
               cfg->listen, cfg->tls ? ", or bad TLS files" : "");
    return -1;
  }
  return 0;
}

static void announce(struct gw *gw) {
  const struct gw_config *cfg = gw->cfg;
  int port = lws_get_vhost_listen_port(gw->vhost);
  const char *host = cfg->listen_host ? cfg->listen_host : "0.0.0.0";
  bool v6 = strchr(host, ':') != NULL;
  mimd_info("gatewayd listening on %s://%s%s%s:%d%s", cfg->tls ? "wss" : "ws",
            v6 ? "[" : "", host, v6 ? "]" : "", port, cfg->path);
  mimd_info("ready (loop %s, logic %s, id %s)", gw->ev_loop ? "libev" : "poll",
            cfg->logic, cfg->id);
}

int gw_start(struct gw *gw, struct gw_config *cfg) {
  memset(gw, 0, sizeof *gw);
  gw->cfg = cfg;
  /* conn_ids start at the clock in microseconds: unique in this process
   * and, unless connections arrive faster than 1 per µs for the whole
   * uptime, above every id a previous run of this gateway handed out */
  gw->next_conn_id = (uint64_t)gw_now_ms() * 1000;
  gw_timer_init(gw, &gw->drain, drain_timeout);
  gw_timer_init(gw, &gw->auth, gw_clients_auth_timer);
  gw_timer_init(gw, &gw->up.retry, gw_upstream_retry);
  gw_timer_init(gw, &gw->up.live, gw_upstream_live);
  gw_clients_protocol(gw, &gw->protocols[0]); /* the default protocol */
  gw_upstream_protocol(gw, &gw->protocols[1]);
  /* protocols[2] stays zeroed: the terminator */

#ifdef MIMD_HAVE_LIBEV
  gw->context = make_context(gw, true);
  if (gw->context == NULL)
    mimd_warn("cannot start lws on libev (is the libwebsockets-evlib-ev "
              "plugin installed?); falling back to the poll() loop");
#else
  mimd_warn("built without libev; using lws's poll() loop");
#endif
  if (gw->context == NULL)
    gw->context = make_context(gw, false);
  if (gw->context == NULL) {
    mimd_error("cannot create the lws context");
    return -1;
  }
  if (make_vhost(gw) < 0 || gw_upstream_start(gw) < 0)
    return -1;
#ifdef MIMD_HAVE_LIBEV
  if (gw->ev_loop) {
    ev_timer_init(&gw->pump, pump_cb, PUMP_INTERVAL_S, PUMP_INTERVAL_S);
    ev_timer_start(gw->ev_loop, &gw->pump);
  }
#endif
  wake_context = gw->context;
  mimd_signals_install(wake);
  announce(gw);
  return 0;
}

static void loop_break(struct gw *gw) {
  gw->state = GW_DONE;
  gw_timer_cancel(&gw->drain);
#ifdef MIMD_HAVE_LIBEV
  if (gw->ev_loop) {
    ev_break(gw->ev_loop, EVBREAK_ALL);
    return;
  }
#endif
  gw->loop_stop = true;
}

int gw_run(struct gw *gw) {
  /* a signal before the loop ran has already poked the event pipe; the
   * loop sees it as LWS_CALLBACK_EVENT_WAIT_CANCELLED */
#ifdef MIMD_HAVE_LIBEV
  if (gw->ev_loop) {
    ev_run(gw->ev_loop, 0);
    return 0;
  }
#endif
  while (!gw->loop_stop)
    if (lws_service(gw->context, 0) < 0)
      return -1;
  return 0;
}

static void drain_timeout(struct gw *gw) {
  mimd_warn("stop: %zu connection(s) still open after %d s; closing anyway",
            gw->conns.count, DRAIN_TIMEOUT_S);
  loop_break(gw);
}

void gw_begin_stop(struct gw *gw) {
  if (gw->state != GW_RUNNING)
    return;
  mimd_info("signal %d: stopping; closing %zu connection(s)",
            (int)mimd_stop_signal, gw->conns.count);
  gw->state = GW_DRAINING;
  gw_clients_shutdown(gw);
  gw_timer_set(&gw->drain, (lws_usec_t)DRAIN_TIMEOUT_S * LWS_US_PER_SEC);
  gw_check_drained(gw);
}

void gw_check_drained(struct gw *gw) {
  if (gw->state == GW_DRAINING && gw->conns.count == 0 &&
      gw_upstream_flushed(gw))
    loop_break(gw);
}

void gw_finish(struct gw *gw) {
  wake_context = NULL;
  gw->state = GW_DONE;
  /* the timers go before the context (the poll loop keeps them in it) */
  gw_upstream_stop(gw);
  gw_timer_cancel(&gw->drain);
  gw_timer_cancel(&gw->auth);
#ifdef MIMD_HAVE_LIBEV
  if (gw->ev_loop)
    ev_timer_stop(gw->ev_loop, &gw->pump);
#endif
  /* closes every socket; the close callbacks still run and find the
   * daemon stopped, so they only free */
  lws_context_destroy(gw->context);
  gw->context = NULL;
  gw_clients_finish(gw);
  gw_upstream_finish(gw);
#ifdef MIMD_HAVE_LIBEV
  if (gw->ev_loop) {
    ev_loop_destroy(gw->ev_loop);
    gw->ev_loop = NULL;
  }
#endif
}
