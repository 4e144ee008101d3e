/* The RPC link to logicd (docs/rpc.md): an lws raw client socket (TCP or
 * unix), HELLO + SESSIONS on every (re)connect, a stream decoder for what
 * comes back, an output byte queue written only in RAW_WRITEABLE, and a
 * reconnect with exponential backoff (100 ms doubling to 5 s). */
#include "upstream.h"
#include <mim/rpc.h>

#include <log.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/* logicd must answer HELLO within this; a peer that accepts and says
 * nothing (wrong port, hung process) is dropped and retried */
#define HELLO_TIMEOUT_S 5

/* DELIVERs to thousands of connections are large (docs/rpc.md) */
#define RPC_MAX_BODY (16u << 20)

/* Bytes handed to lws per RAW_WRITEABLE: many small REQUESTs go out in one
 * send() instead of one event-loop turn each. */
#define WRITE_CHUNK (256 * 1024)

/* Past this backlog logicd is not keeping up; new requests get a retryable
 * BUSY instead of growing the queue without bound. CONN_CLOSED and
 * SESSIONS are always queued: they are small and needed for correctness. */
#define QUEUE_HIGH_WATER (32u << 20)

/* How often a READY link's silence is looked at. */
#define LIVE_CHECK_US (250 * LWS_US_PER_MS)

/* The link's state, given to lws as the protocol's user pointer. */
static struct upstream *up_of(struct lws *wsi) {
  return lws_get_protocol(wsi)->user;
}

bool gw_upstream_flushed(const struct upstream *up) {
  /* lws keeps what the socket did not take of the last write: that must
   * be gone too before a stop may destroy the link */
  return up->state != UP_READY ||
         (mimd_outq_len(&up->out) == 0 &&
          (up->wsi == NULL || !lws_partial_buffered(up->wsi)));
}

/* Queues one RPC frame; `force` ignores the high-water mark. */
static int send_rpc(struct upstream *up, const struct mim_rpc *r, bool force) {
  bool was_empty = mimd_outq_len(&up->out) == 0;
  if (!force && mimd_outq_len(&up->out) > QUEUE_HIGH_WATER)
    return -ENOBUFS;
  size_t size = mim_rpc_encoded_size(r);
  uint8_t *dst = mimd_outq_reserve(&up->out, size);
  if (dst == NULL)
    return -ENOMEM;
  size_t len;
  int rc = mim_rpc_encode(r, dst, size, &len);
  if (rc < 0) {
    mimd_error("cannot encode %s: %s", mim_cmd_name(r->cmd), mim_strerror(rc));
    return rc;
  }
  mimd_outq_commit(&up->out, len);
  if (was_empty && up->wsi)
    lws_callback_on_writable(up->wsi);
  return 0;
}

int gw_upstream_send(struct upstream *up, const struct mim_rpc *r) {
  return send_rpc(up, r, true);
}

int gw_upstream_request(struct upstream *up, uint64_t conn_id, uint32_t version,
                        uint32_t cmd, const uint8_t *body, size_t len) {
  if (up->state != UP_READY)
    return -ENOTCONN;
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_REQUEST;
  r.conn_id = conn_id;
  r.version = version;
  r.inner_cmd = cmd;
  r.body = body;
  r.body_len = len;
  return send_rpc(up, &r, false);
}

void gw_upstream_conn_closed(struct upstream *up, uint64_t conn_id) {
  /* with the link down there is nothing to say: logicd drops every route
   * of this gateway when the link dies, and SESSIONS lists the living */
  if (up->state != UP_READY)
    return;
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_CONN_CLOSED;
  r.conn_id = conn_id;
  if (send_rpc(up, &r, true) < 0)
    mimd_error("conn %llu: cannot queue CONN_CLOSED",
               (unsigned long long)conn_id);
}

/* ---- connecting ---- */

static void schedule_retry(struct upstream *up) {
  if (up->stopped)
    return;
  /* failures after the first are only logged at debug level */
  mimd_debug("connecting to logicd again in %u ms", (unsigned)up->backoff_ms);
  mimd_timer_set(&up->retry, (lws_usec_t)up->backoff_ms * 1000);
  up->backoff_ms *= 2;
  if (up->backoff_ms > BACKOFF_MAX_MS)
    up->backoff_ms = BACKOFF_MAX_MS;
}

static void connect_now(struct upstream *up) {
  struct lws_client_connect_info i;
  memset(&i, 0, sizeof i);
  i.context = up->context;
  i.vhost = up->vhost;
  i.address = up->address;
  i.port = up->cfg->logic_unix ? 0 : up->cfg->logic_port;
  i.host = i.address;
  i.method = "RAW";
  i.local_protocol_name = "mim-rpc";
  i.pwsi = &up->wsi;
  /* no lws keepalive/validity on this link (the raw role has none) */
  static const lws_retry_bo_t no_validity = {0};
  i.retry_and_idle_policy = &no_validity;
  up->state = UP_CONNECTING;
  if (lws_client_connect_via_info(&i) == NULL) {
    /* failed on the spot (e.g. no such unix socket); lws calls nothing */
    up->wsi = NULL;
    up->state = UP_IDLE;
    if (!up->failing)
      mimd_warn("cannot connect to logicd at %s; retrying", up->cfg->logic);
    up->failing = true;
    schedule_retry(up);
  }
}

/* A logicd that is stopped, or a link that is half-open (the host went
 * away, a firewall forgot the flow), sends nothing and never closes: TCP
 * keepalive cannot tell a stopped process from a quiet one, since its kernel
 * still answers. So a silent logicd is PINGed, and one that stays silent is
 * dropped and reconnected to; clients get UNAVAILABLE meanwhile. */
void gw_upstream_live(void *arg) {
  struct upstream *up = arg;
  if (up->stopped || up->state != UP_READY || up->wsi == NULL)
    return;
  lws_usec_t now = lws_now_usecs();
  lws_usec_t silent = now - up->heard;
  lws_usec_t ping = (lws_usec_t)up->cfg->logic_ping_s * LWS_US_PER_SEC;
  lws_usec_t dead = (lws_usec_t)up->cfg->logic_timeout_s * LWS_US_PER_SEC;
  if (silent >= dead) {
    mimd_warn("nothing from logicd at %s for %lld ms (stopped, or the link "
              "is half-open); dropping the link", up->cfg->logic,
              (long long)(silent / LWS_US_PER_MS));
    /* the close callback runs link_down() and schedules the reconnect */
    lws_set_timeout(up->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT,
                    LWS_TO_KILL_ASYNC);
    /* the asynchronous kill is an lws timer: have the loop look at it now */
    lws_cancel_service(up->context);
    return;
  }
  if (silent >= ping && (up->pinged == 0 || now - up->pinged >= ping)) {
    struct mim_rpc r;
    mim_rpc_init(&r);
    r.cmd = MIM_RPC_PING;
    r.req_id = ++up->nonce;
    up->pinged = now;
    (void)send_rpc(up, &r, true);
  }
  mimd_timer_set(&up->live, LIVE_CHECK_US);
}

void gw_upstream_retry(void *arg) {
  struct upstream *up = arg;
  if (!up->stopped && up->state == UP_IDLE)
    connect_now(up);
}

int gw_upstream_start(struct upstream *up, const struct gw_config *cfg,
                      struct lws_context *context, struct lws_vhost *vhost,
                      const struct gw_upstream_ops *ops, void *user) {
  up->cfg = cfg;
  up->context = context;
  up->vhost = vhost;
  up->ops = ops;
  up->ops_user = user;
  up->backoff_ms = BACKOFF_MIN_MS;
  if (up->cfg->logic_unix) {
    /* lws's spelling of a unix socket address */
    size_t n = strlen(up->cfg->logic_unix) + 2;
    up->address = malloc(n);
    if (up->address == NULL)
      return -ENOMEM;
    snprintf(up->address, n, "+%s", up->cfg->logic_unix);
  } else {
    up->address = strdup(up->cfg->logic_host);
    if (up->address == NULL)
      return -ENOMEM;
  }
  connect_now(up);
  return 0;
}

/* The link is gone (closed, refused, timed out): forget its state and try
 * again later. */
static void link_down(struct upstream *up, const char *why) {
  if (up->stopped) {
    mimd_debug("link to logicd closed");
  } else if (up->state == UP_READY)
    mimd_info("link to logicd at %s down%s%s", up->cfg->logic, why ? ": " : "",
              why ? why : "");
  else if (!up->failing)
    mimd_warn("cannot reach logicd at %s%s%s; retrying", up->cfg->logic,
              why ? ": " : "", why ? why : "");
  /* a link that held for a while starts the backoff over (a restarted
   * logicd is reached within 100 ms); one that failed right after the
   * handshake keeps backing off, so a logicd that accepts and then chokes
   * on us is not hammered ten times a second */
  if (up->state == UP_READY && lws_now_usecs() - up->ready_since >=
                                   (lws_usec_t)BACKOFF_MAX_MS * LWS_US_PER_MS)
    up->backoff_ms = BACKOFF_MIN_MS;
  bool was_ready = up->state == UP_READY;
  mimd_timer_cancel(&up->live);
  up->failing = !was_ready;
  up->state = UP_IDLE;
  up->wsi = NULL;
  /* what was queued was for that logicd; a new one starts from HELLO */
  mimd_outq_finish(&up->out);
  mim_stream_decoder_destroy(up->dec);
  up->dec = NULL;
  /* no reply comes for what that logicd had not answered: answer it now,
   * before anything the gateway answers while the link is down */
  if (was_ready)
    up->ops->link_lost(up->ops_user);
  schedule_retry(up);
  up->ops->idle(up->ops_user);
}

static int on_connected(struct upstream *up, struct lws *wsi) {
  up->wsi = wsi;
  mimd_outq_finish(&up->out);
  mim_stream_decoder_destroy(up->dec);
  up->dec = NULL;
  if (mim_stream_decoder_create(&up->dec, RPC_MAX_BODY) < 0)
    return -1;
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_HELLO;
  r.gateway_id = up->cfg->id;
  r.secret = up->cfg->rpc_secret;
  r.version = MIM_RPC_VERSION;
  if (send_rpc(up, &r, true) < 0)
    return -1;
  up->state = UP_HELLO;
  lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, HELLO_TIMEOUT_S);
  return 0;
}

/* ---- what logicd sends ---- */

static int on_hello_ack(struct upstream *up, struct lws *wsi,
                        const struct mim_rpc *r) {
  if (r->status != 0) {
    /* wrong secret or version: logicd closes; retrying with backoff keeps
     * the log readable and picks up a fixed logicd config */
    mimd_error("logicd at %s refused this gateway: %s (%d)%s%s", up->cfg->logic,
               mim_strerror(-r->status), (int)r->status,
               r->text && r->text[0] ? ": " : "", r->text ? r->text : "");
    up->failing = true;
    return -1;
  }
  lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
  up->state = UP_READY;
  up->heard = lws_now_usecs();
  up->pinged = 0;
  mimd_timer_set(&up->live, LIVE_CHECK_US);
  up->gen++;
  up->ready_since = lws_now_usecs();
  up->failing = false;
  mimd_info("link to logicd at %s up (gateway id %s)", up->cfg->logic,
            up->cfg->id);
  return up->ops->ready(up->ops_user) < 0 ? -1 : 0;
}

static int dispatch(struct upstream *up, struct lws *wsi, const struct mim_frame *f) {
  struct mim_rpc r;
  mim_rpc_init(&r);
  int rc = mim_rpc_decode(&r, f->header.cmd, f->body, f->header.body_len);
  if (rc == -MIM_ERR_UNKNOWN_CMD) {
    /* a newer logicd: what this gateway does not know it can ignore */
    mimd_debug("ignoring RPC command %u from logicd", f->header.cmd);
    return 0;
  }
  if (rc < 0) {
    mimd_error("malformed %s from logicd: %s", mim_cmd_name(f->header.cmd),
               mim_strerror(rc));
    return -1;
  }
  rc = 0;
  if (up->state == UP_HELLO) {
    if (r.cmd == MIM_RPC_HELLO_ACK) {
      rc = on_hello_ack(up, wsi, &r);
    } else {
      /* anything before the handshake completes is a broken peer */
      mimd_error("%s from logicd before HELLO_ACK", mim_cmd_name(r.cmd));
      rc = -1;
    }
  } else if (r.cmd == MIM_RPC_DELIVER) {
    up->ops->deliver(up->ops_user, &r);
  } else if (r.cmd == MIM_RPC_KICK) {
    up->ops->kick(up->ops_user, r.conn_id, r.reason, r.text);
  } else if (r.cmd == MIM_RPC_PING) {
    struct mim_rpc pong;
    mim_rpc_init(&pong);
    pong.cmd = MIM_RPC_PONG;
    pong.req_id = r.req_id;
    rc = send_rpc(up, &pong, true);
  } else if (r.cmd == MIM_RPC_PONG) {
    /* on_rx already noted that logicd is alive */
  } else if (r.cmd == MIM_RPC_SESSION) {
    up->ops->session(up->ops_user, &r);
  } else {
    mimd_debug("ignoring %s from logicd", mim_cmd_name(r.cmd));
  }
  mim_rpc_finish(&r);
  return rc;
}

static int on_rx(struct upstream *up, struct lws *wsi, const uint8_t *in,
                 size_t len) {
  if (up->dec == NULL)
    return -1;
  up->heard = lws_now_usecs();
  up->pinged = 0;
  int rc = mim_stream_decoder_feed(up->dec, in, len);
  if (rc < 0) {
    mimd_error("RPC stream from logicd: %s", mim_strerror(rc));
    return -1;
  }
  struct mim_frame f;
  while ((rc = mim_stream_decoder_next(up->dec, &f)) == 0) {
    if (dispatch(up, wsi, &f) < 0)
      return -1;
    if (up->dec == NULL) /* the link went down meanwhile */
      return -1;
  }
  if (rc != -EAGAIN) {
    mimd_error("RPC stream from logicd: %s", mim_strerror(rc));
    return -1;
  }
  return 0;
}

static int on_writeable(struct upstream *up, struct lws *wsi) {
  size_t n;
  uint8_t *head = mimd_outq_peek(&up->out, &n);
  if (n > WRITE_CHUNK)
    n = WRITE_CHUNK;
  if (n > 0) {
    int w = lws_write(wsi, head, n, LWS_WRITE_RAW);
    if (w < 0 || (size_t)w < n) {
      mimd_error("write to logicd failed");
      return -1;
    }
    mimd_outq_consume(&up->out, n);
  }
  /* more queued, or lws still holds part of this write (it calls back
   * once that is out) */
  if (mimd_outq_len(&up->out) > 0 || lws_partial_buffered(wsi))
    lws_callback_on_writable(wsi);
  else
    up->ops->idle(up->ops_user);
  return 0;
}

static int rpc_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                  void *in, size_t len) {
  (void)user;
  struct upstream *up = up_of(wsi);
  switch (reason) {
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    /* a websocket client asking for this subprotocol by name */
    return 1;
  case LWS_CALLBACK_RAW_CONNECTED:
    return on_connected(up, wsi);
  case LWS_CALLBACK_RAW_RX:
    return on_rx(up, wsi, in, len);
  case LWS_CALLBACK_RAW_WRITEABLE:
    return on_writeable(up, wsi);
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    if (wsi == up->wsi || up->state == UP_CONNECTING)
      link_down(up, in ? (const char *)in : "connection failed");
    return 0;
  case LWS_CALLBACK_RAW_CLOSE:
    if (wsi == up->wsi)
      link_down(up, up->state == UP_READY ? "connection closed"
                                             : "closed during the handshake");
    return 0;
  default:
    return 0;
  }
}

void gw_upstream_protocol(struct upstream *up, struct lws_protocols *p) {
  memset(p, 0, sizeof *p);
  p->name = "mim-rpc";
  p->callback = rpc_cb;
  /* lws caps each send() at this (default: rx_buffer_size); one chunk of
   * the output queue should go in one call */
  p->tx_packet_size = WRITE_CHUNK;
  p->user = up;
}

void gw_upstream_stop(struct upstream *up) {
  up->stopped = true;
  /* before the context goes: on poll() the timer list lives in it */
  mimd_timer_cancel(&up->retry);
  mimd_timer_cancel(&up->live);
}

void gw_upstream_finish(struct upstream *up) {
  mimd_outq_finish(&up->out);
  mim_stream_decoder_destroy(up->dec);
  up->dec = NULL;
  free(up->address);
  up->address = NULL;
}
