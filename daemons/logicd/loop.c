#include "loop.h"

#include "log.h"
#include "lwsloop.h"
#include "timer.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef MIMD_HAVE_LIBEV
#include <ev.h>
#endif

struct loop {
  /* read by loop_wake() from signal handlers and the writer thread */
  struct lws_context *volatile ctx;
  struct lws_vhost *vh_tcp;
  struct lws_vhost *vh_unix;
  struct lws_vhost *vh_admin;
  bool stop;
  struct mimd_timer timer; /* loop_timer() */
#ifdef MIMD_HAVE_LIBEV
  struct ev_loop *ev;         /* NULL on the poll loop */
#endif
};

static bool on_libev(const struct loop *l) {
#ifdef MIMD_HAVE_LIBEV
  return l->ev != NULL;
#else
  (void)l;
  return false;
#endif
}

/* lws reads at most this much per socket read; RPC frames can be large */
#define RX_CHUNK (64 * 1024)

static struct lws_context *make_context(struct loop *l,
                                        const struct loop_config *cfg,
                                        bool libev) {
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  info.user = cfg->user;
  info.pt_serv_buf_size = RX_CHUNK;
  void *ev = NULL;
  struct lws_context *ctx = mimd_lws_context_create(&info, libev, &ev);
#ifdef MIMD_HAVE_LIBEV
  l->ev = ev;
#endif
  return ctx;
}

/* lws's bind unlinks an existing unix socket path before binding, which
 * would silently steal the socket of a logicd still running on it. */
static bool unix_socket_in_use(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (path[0] == '@' || strlen(path) >= sizeof sa.sun_path)
    return false;
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  bool live = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
  close(fd);
  return live;
}

static struct lws_vhost *make_vhost(struct loop *l,
                                    const struct loop_config *cfg,
                                    const char *name, const char *iface,
                                    int port, bool unix_sock) {
  struct lws_context_creation_info vi;
  memset(&vi, 0, sizeof vi);
  vi.vhost_name = name;
  vi.protocols = cfg->protocols;
  vi.user = cfg->user;
  vi.options = LWS_SERVER_OPTION_ADOPT_APPLY_LISTEN_ACCEPT_CONFIG |
               LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  vi.listen_accept_role = "raw-skt";
  vi.listen_accept_protocol = cfg->accept_protocol;
  vi.iface = iface;
  vi.port = port;
  if (unix_sock) {
    vi.options |= LWS_SERVER_OPTION_UNIX_SOCK;
    vi.port = 0; /* lws binds the unix path only with port 0 */
  } else if (strchr(iface, ':') == NULL) {
    /* an IPv4 address: an IPv6 socket would not bind to it */
    vi.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  }
  return lws_create_vhost(l->ctx, &vi);
}

int loop_create(struct loop **out, const struct loop_config *cfg) {
  struct loop *l = calloc(1, sizeof *l);
  if (l == NULL)
    return -ENOMEM;
  struct lws_context *ctx = NULL;
  if (cfg->prefer_libev) {
#ifdef MIMD_HAVE_LIBEV
    ctx = make_context(l, cfg, true);
    if (ctx == NULL)
      mimd_warn("cannot start lws on libev (is the libwebsockets-evlib-ev "
                "plugin installed?); falling back to the poll() loop");
#else
    mimd_warn("built without libev; using lws's poll() loop");
#endif
  }
  if (ctx == NULL)
    ctx = make_context(l, cfg, false);
  if (ctx == NULL) {
    mimd_error("cannot create the lws context");
    free(l);
    return -ENOMEM;
  }
  l->ctx = ctx;
  mimd_timer_init(&l->timer, NULL, NULL);
#ifdef MIMD_HAVE_LIBEV
  mimd_timer_bind(&l->timer, ctx, l->ev);
#else
  mimd_timer_bind(&l->timer, ctx, NULL);
#endif

  int rc = 0;
  if (cfg->host != NULL) {
    l->vh_tcp = make_vhost(l, cfg, "rpc-tcp", cfg->host, cfg->port, false);
    if (l->vh_tcp == NULL) {
      mimd_error("cannot listen on %s:%d (address in use, or not an address "
                 "of this host?)", cfg->host, cfg->port);
      rc = -EADDRINUSE;
      goto fail;
    }
  }
  if (cfg->unix_path != NULL && cfg->unix_path[0] != '\0') {
    if (unix_socket_in_use(cfg->unix_path)) {
      mimd_error("unix socket %s is in use by a running process",
                 cfg->unix_path);
      rc = -EADDRINUSE;
      goto fail;
    }
    /* created owner/group-only: the socket is a way into the RPC, which
     * may have no secret on local links */
    mode_t old = umask(0117);
    l->vh_unix = make_vhost(l, cfg, "rpc-unix", cfg->unix_path, 0, true);
    umask(old);
    if (l->vh_unix == NULL) {
      mimd_error("cannot listen on unix socket %s", cfg->unix_path);
      rc = -EIO;
      goto fail;
    }
  }
  if (cfg->admin_path != NULL && cfg->admin_path[0] != '\0') {
    if (unix_socket_in_use(cfg->admin_path)) {
      mimd_error("admin socket %s is in use by a running process",
                 cfg->admin_path);
      rc = -EADDRINUSE;
      goto fail;
    }
    /* owner only: whoever can connect here has operator rights */
    mode_t old = umask(0177);
    l->vh_admin = make_vhost(l, cfg, "rpc-admin", cfg->admin_path, 0, true);
    umask(old);
    if (l->vh_admin == NULL) {
      mimd_error("cannot listen on admin socket %s", cfg->admin_path);
      rc = -EIO;
      goto fail;
    }
  }
  *out = l;
  return 0;

fail:
  loop_destroy(l);
  return rc;
}

void loop_destroy(struct loop *l) {
  if (l == NULL)
    return;
  struct lws_context *ctx = l->ctx;
  /* before the context and the libev loop it runs on go */
  mimd_timer_cancel(&l->timer);
  /* loop_wake() must not reach a context being torn down */
  l->ctx = NULL;
  lws_context_destroy(ctx);
#ifdef MIMD_HAVE_LIBEV
  if (l->ev != NULL) {
    ev_loop_destroy(l->ev);
  }
#endif
  free(l);
}

const char *loop_backend(const struct loop *l) {
  return on_libev(l) ? "libev" : "poll";
}

bool loop_is_admin(const struct loop *l, struct lws *wsi) {
  return l->vh_admin != NULL && lws_get_vhost(wsi) == l->vh_admin;
}

struct lws_context *loop_context(const struct loop *l) { return l->ctx; }

void *loop_ev(const struct loop *l) {
#ifdef MIMD_HAVE_LIBEV
  return l->ev;
#else
  (void)l;
  return NULL;
#endif
}

int loop_port(const struct loop *l) {
  return l->vh_tcp != NULL ? lws_get_vhost_listen_port(l->vh_tcp) : 0;
}

void loop_run(struct loop *l) {
  l->stop = false;
#ifdef MIMD_HAVE_LIBEV
  if (l->ev != NULL) {
    ev_run(l->ev, 0);
    return;
  }
#endif
  while (!l->stop)
    if (lws_service(l->ctx, 0) < 0)
      break;
}

void loop_stop(struct loop *l) {
  l->stop = true;
#ifdef MIMD_HAVE_LIBEV
  if (l->ev != NULL)
    ev_break(l->ev, EVBREAK_ALL);
#endif
}

void loop_wake(struct loop *l) {
  struct lws_context *ctx = l != NULL ? l->ctx : NULL;
  if (ctx != NULL)
    lws_cancel_service(ctx);
}

void loop_timer(struct loop *l, int64_t ms, void (*cb)(void *user),
                void *user) {
  if (ms < 0)
    ms = 0;
  l->timer.cb = cb;
  l->timer.arg = user;
  mimd_timer_set(&l->timer, (lws_usec_t)ms * LWS_US_PER_MS);
}
