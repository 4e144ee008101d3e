/* The top of gatewayd: the lws context it runs on, the websocket listener,
 * the loop, the orderly stop, and the wiring of the client side to the
 * logicd link.
 *
 * Dependency order (each module uses only those before it; gateway.h
 * describes each):
 *
 *   timer, conntab, client -> tx -> pending -> front -> rx, idle -> clients
 *   timer -> upstream
 *   clients, front -> tcp
 *   clients, upstream, front, tcp -> gateway (this file)
 *
 * clients and upstream do not know each other. What logicd sends
 * (DELIVER, KICK, SESSION, the link going up or down) reaches the client
 * side through upstream_ops below; what clients ask of logicd (requests,
 * CONN_CLOSED, SESSIONS) reaches the link through clients_ops.
 *
 * The loop is a libev loop that gatewayd creates and hands to lws (a
 * "foreign" loop for lws's libev plugin): owning it, the daemon stops it
 * exactly when its shutdown drain has finished, with ev_break(). Without
 * libev (not built in, or the plugin fails to load) lws's own poll() loop
 * runs instead. */
#include "gateway.h"

#include "clients.h"
#include "front.h"
#include "gwmetrics.h"
#include "tcp.h"
#include "idle.h"
#include <timer.h>
#include "tx.h"
#include "upstream.h"

#include <log.h>
#include <lwsloop.h>
#include <notify.h>
#include <signals.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MIMD_HAVE_LIBEV
#include <ev.h>
#endif

/* How long a stop waits for clients to take their kick and close frames
 * and for CONN_CLOSED to reach logicd. */
#define DRAIN_TIMEOUT_S 5

/* lws reads at most this much per socket read; one buffer per thread (so
 * its size costs nothing per connection). What one read of the logicd
 * link holds is what one loop turn writes out: at 64 KiB a large group's
 * DELIVERs (a target list of ~7 KiB each) came 9 to a turn, and each
 * connection got ~8 pushes per send(); at 1 MiB a turn carries ~150 and
 * the sends are that much fuller (docs/benchmarks.md, "Large groups"). */
#define READ_CHUNK (1024 * 1024)

/* The signal handler has only a function pointer to call: it reaches the
 * context through this. NULL outside the loop's lifetime. */
static struct lws_context *volatile wake_context;

static void wake(void) {
  struct lws_context *ctx = wake_context;
  if (ctx != NULL)
    lws_cancel_service(ctx);
}

static void drain_timeout(void *arg);
static void check_drained(struct gw *gw);

#ifdef MIMD_HAVE_LIBEV
/* lws services its own timers (pings, idle hangups, close and handshake
 * timeouts) after any socket event, or when its timer watcher fires — which,
 * after the re-arming problem described at struct mimd_timer, may be much
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

/* ---- wiring: client side <-> logicd link ---- */

static int up_ready(void *user) { return gw_clients_sessions(user); }

static void up_deliver(void *user, const struct mim_rpc *r) {
  gw_clients_deliver(user, r);
}

static void up_kick(void *user, uint64_t conn_id, int32_t reason,
                    const char *text) {
  gw_clients_kick(user, conn_id, reason, text);
}

static void up_session(void *user, const struct mim_rpc *r) {
  gw_clients_session(user, r);
}

static void up_link_lost(void *user) {
  struct gw *gw = user;
  /* nothing to answer once the daemon is done: the close callbacks only
   * free */
  if (gw->state != GW_DONE)
    gw_clients_link_down(gw);
}

static void on_idle(void *user) { check_drained(user); }

static const struct gw_upstream_ops upstream_ops = {
    .ready = up_ready,
    .deliver = up_deliver,
    .kick = up_kick,
    .session = up_session,
    .link_lost = up_link_lost,
    .idle = on_idle,
};

static int cl_request(void *user, uint64_t conn_id, uint32_t version,
                      uint32_t cmd, const uint8_t *body, size_t len) {
  struct gw *gw = user;
  return gw_upstream_request(&gw->up, conn_id, version, cmd, body, len);
}

static void cl_conn_closed(void *user, uint64_t conn_id) {
  struct gw *gw = user;
  gw_upstream_conn_closed(&gw->up, conn_id);
}

static int cl_send(void *user, const struct mim_rpc *r) {
  struct gw *gw = user;
  return gw_upstream_send(&gw->up, r);
}

static void cl_stop(void *user) { gw_begin_stop(user); }
static void cl_reload(void *user) { gw_reload(user); }

static const struct gw_clients_ops clients_ops = {
    .request = cl_request,
    .conn_closed = cl_conn_closed,
    .send = cl_send,
    .stop = cl_stop,
    .reload = cl_reload,
    .idle = on_idle,
};

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
  /* idle.c pings a connection silent for ping_interval_s and closes one
   * silent (no pong, no message) for idle_timeout_s, with a Kick and a
   * close frame. lws's own policy, which would hang up without either,
   * comes only after that and the close's grace period: a backstop */
  gw->ws_policy.secs_since_valid_ping =
      (uint16_t)(cfg->idle_timeout_s + GW_CLOSE_GRACE_S + 1);
  gw->ws_policy.secs_since_valid_hangup =
      (uint16_t)(cfg->idle_timeout_s + GW_CLOSE_GRACE_S + 2);
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
  /* the listener is bound; the logicd link comes up on its own (clients
   * get UNAVAILABLE until then), so readiness does not wait for it */
  char status[300];
  snprintf(status, sizeof status, "serving %s://%s:%d%s, logic %s",
           cfg->tls ? "wss" : "ws", host, port, cfg->path, cfg->logic);
  mimd_notify_ready(status);
}

int gw_start(struct gw *gw, struct gw_config *cfg) {
  memset(gw, 0, sizeof *gw);
  gw->cfg = cfg;
  /* conn_ids start at the clock in microseconds: unique in this process
   * and, unless connections arrive faster than 1 per µs for the whole
   * uptime, above every id a previous run of this gateway handed out */
  gw->cl.next_conn_id = (uint64_t)gw_now_ms() * 1000;
  mimd_timer_init(&gw->drain, drain_timeout, gw);
  mimd_timer_init(&gw->cl.auth, gw_clients_auth_timer, gw);
  mimd_timer_init(&gw->cl.idle, gw_idle_timer, gw);
  mimd_timer_init(&gw->up.retry, gw_upstream_retry, &gw->up);
  mimd_timer_init(&gw->front.handshake, gw_front_handshake_timer, gw);
  mimd_timer_init(&gw->up.live, gw_upstream_live, &gw->up);
  gw_clients_protocol(gw, &gw->protocols[0], &clients_ops, gw); /* the default protocol */
  gw_upstream_protocol(&gw->up, &gw->protocols[1]);
  /* protocols[2] stays zeroed: the terminator */
  gw_tcp_protocols(gw, gw->tcp_protocols);

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
  struct mimd_timer *timers[] = {&gw->drain, &gw->cl.auth, &gw->up.retry,
                                 &gw->front.handshake, &gw->up.live,
                                 &gw->cl.idle};
  for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++)
    mimd_timer_bind(timers[i], gw->context, gw->ev_loop);
  /* the descriptors open before any client or link are counted here */
  if (make_vhost(gw) < 0 || gw_tcp_listen(gw) < 0 || gw_front_start(gw) < 0 ||
      gw_upstream_start(&gw->up, gw->cfg, gw->context, gw->vhost,
                        &upstream_ops, gw) < 0)
    return -1;
  if (gw_metrics_register(gw) < 0 || gw_metrics_listen(gw) < 0)
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
  mimd_timer_cancel(&gw->drain);
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

static void drain_timeout(void *arg) {
  struct gw *gw = arg;
  mimd_warn("stop: %zu connection(s) still open after %d s; closing anyway",
            gw->cl.conns.count, DRAIN_TIMEOUT_S);
  loop_break(gw);
}

void gw_begin_stop(struct gw *gw) {
  if (gw->state != GW_RUNNING)
    return;
  mimd_info("signal %d: stopping; closing %zu connection(s)",
            (int)mimd_stop_signal, gw->cl.conns.count);
  mimd_notify_stopping();
  gw->state = GW_DRAINING;
  gw_clients_shutdown(gw);
  mimd_timer_set(&gw->drain, (lws_usec_t)DRAIN_TIMEOUT_S * LWS_US_PER_SEC);
  check_drained(gw);
}

static void check_drained(struct gw *gw) {
  if (gw->state == GW_DRAINING && gw->cl.conns.count == 0 &&
      gw_upstream_flushed(&gw->up))
    loop_break(gw);
}

void gw_finish(struct gw *gw) {
  wake_context = NULL;
  gw->state = GW_DONE;
  /* the timers go before the context (the poll loop keeps them in it) */
  gw_upstream_stop(&gw->up);
  mimd_timer_cancel(&gw->drain);
  mimd_timer_cancel(&gw->cl.auth);
  mimd_timer_cancel(&gw->cl.idle);
  mimd_timer_cancel(&gw->front.handshake);
  mimd_httpd_stop(gw->metrics);
#ifdef MIMD_HAVE_LIBEV
  if (gw->ev_loop)
    ev_timer_stop(gw->ev_loop, &gw->pump);
#endif
  /* closes every socket; the close callbacks still run and find the
   * daemon stopped, so they only free */
  lws_context_destroy(gw->context);
  gw->context = NULL;
  mimd_httpd_destroy(gw->metrics); /* its sockets went with the context */
  gw->metrics = NULL;
  gw_clients_finish(gw);
  gw_front_finish(gw);
  gw_upstream_finish(&gw->up);
  mimd_metrics_reset();
#ifdef MIMD_HAVE_LIBEV
  if (gw->ev_loop) {
    ev_loop_destroy(gw->ev_loop);
    gw->ev_loop = NULL;
  }
#endif
}
