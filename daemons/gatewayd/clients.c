/* Client connections: the websocket protocol callback, the conn_id table,
 * the authentication deadline, and what the RPC link asks of clients
 * (DELIVER, KICK, SESSION, SESSIONS).
 *
 * The gateway keeps no session logic of its own and never reads identity
 * from what a client asks: logicd tells it who a connection is (RPC
 * SESSION, right after the AuthResponse, with a ticket it signed) and that
 * it is no longer (SESSION with no uid after a LogoutResponse, or a KICK).
 * The gateway keeps that only to re-register the session with a restarted
 * logicd, which checks the ticket (docs/rpc.md), and to answer what an
 * unauthenticated connection sends besides AuthRequests and heartbeats
 * itself, so that logicd never sees it. */
#include "clients.h"

#include "front.h"
#include "gateway.h"
#include "http_gw.h"
#include "gwmetrics.h"
#include "idle.h"
#include <mim/rpc.h>
#include "pending.h"
#include "rx.h"
#include "tx.h"
#include "web.h"

#include <log.h>
#include <signals.h>
#include <stdlib.h>
#include <string.h>

/* Longest session ticket kept (logicd's are MIM_TICKET_LEN bytes). */
#define TICKET_MAX 256

/* ---- authentication deadline ----
 * Every connection gets the same timeout, so the unauthenticated ones form
 * a list already sorted by deadline (append at the tail) and one timer, for
 * the head, serves them all: O(1) per connection, and a connection storm
 * does not fill a timer heap. */

static void ua_arm(struct gw *gw) {
  if (gw->cl.ua_head == NULL || gw->state == GW_DONE)
    return;
  lws_usec_t wait = gw->cl.ua_head->auth_deadline - lws_now_usecs();
  mimd_timer_set(&gw->cl.auth, wait > 0 ? wait : 1);
}

static void ua_unlink(struct gw *gw, struct client *c) {
  if (!c->in_ua)
    return;
  if (c->ua_prev)
    c->ua_prev->ua_next = c->ua_next;
  else
    gw->cl.ua_head = c->ua_next;
  if (c->ua_next)
    c->ua_next->ua_prev = c->ua_prev;
  else
    gw->cl.ua_tail = c->ua_prev;
  c->ua_prev = c->ua_next = NULL;
  c->in_ua = false;
  /* the timer is left armed: when it fires it finds the new head */
}

static void ua_append(struct gw *gw, struct client *c) {
  ua_unlink(gw, c);
  c->auth_deadline =
      lws_now_usecs() + (lws_usec_t)gw->cfg->auth_timeout_ms * 1000;
  c->ua_prev = gw->cl.ua_tail;
  c->ua_next = NULL;
  if (gw->cl.ua_tail)
    gw->cl.ua_tail->ua_next = c;
  else
    gw->cl.ua_head = c;
  gw->cl.ua_tail = c;
  c->in_ua = true;
  if (gw->cl.ua_head == c)
    ua_arm(gw);
}

void gw_clients_auth_timer(void *arg) {
  struct gw *gw = arg;
  lws_usec_t now = lws_now_usecs();
  while (gw->cl.ua_head && gw->cl.ua_head->auth_deadline <= now) {
    struct client *c = gw->cl.ua_head;
    ua_unlink(gw, c);
    mimd_debug("conn %llu: not authenticated within %lld ms",
               (unsigned long long)c->id, (long long)gw->cfg->auth_timeout_ms);
    gw_close_with_error(gw, c, -MIM_ERR_UNAUTHENTICATED, 0,
                        LWS_CLOSE_STATUS_POLICY_VIOLATION,
                        "authentication timeout");
  }
  ua_arm(gw);
}

/* ---- session state ---- */

static void forget_session(struct client *c) {
  free(c->uid);
  free(c->device);
  free(c->ticket);
  c->uid = c->device = NULL;
  c->ticket = NULL;
  c->ticket_len = 0;
  c->authed = false;
  c->login_accepted = false;
  c->caps = 0;
}

static void free_client(struct client *c) {
  gw_http_free(c);
  gw_queue_free(c);
  gw_pending_free(c);
  gw_rx_reset(c);
  forget_session(c);
}

void gw_clients_session(struct gw *gw, const struct mim_rpc *r) {
  struct client *c = conntab_get(&gw->cl.conns, r->conn_id);
  if (c == NULL || c->closing)
    return; /* closed meanwhile; logicd hears CONN_CLOSED */
  bool was = c->authed;
  forget_session(c);
  if (r->uid == NULL || r->uid[0] == '\0') {
    if (was) {
      mimd_debug("conn %llu: logged out", (unsigned long long)c->id);
      /* unauthenticated again: the same deadline as a new connection */
      ua_append(gw, c);
    }
    return;
  }
  if (r->ticket_len > TICKET_MAX) {
    mimd_warn("conn %llu: session ticket of %zu bytes from logicd ignored",
              (unsigned long long)c->id, r->ticket_len);
  } else if (r->ticket_len > 0) {
    c->ticket = malloc(r->ticket_len);
    if (c->ticket != NULL) {
      memcpy(c->ticket, r->ticket, r->ticket_len);
      c->ticket_len = r->ticket_len;
    }
  }
  c->uid = strdup(r->uid);
  c->device = strdup(r->device && r->device[0] ? r->device
                                                : MIM_DEFAULT_DEVICE);
  if (c->uid == NULL || c->device == NULL ||
      (r->ticket_len > 0 && r->ticket_len <= TICKET_MAX && c->ticket == NULL)) {
    forget_session(c);
    /* a session we could not keep could not be re-registered later */
    gw_close_with_error(gw, c, -ENOMEM, MIM_CMD_AUTH_REQ,
                        LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
    return;
  }
  c->authed = true;
  c->caps = r->caps;
  ua_unlink(gw, c);
  mimd_debug("conn %llu: authenticated as %s/%s", (unsigned long long)c->id,
             c->uid, c->device);
}

/* ---- frames from the client ---- */

/* GW_PENDING_MAX requests unanswered: the next answer could not be kept in
 * order. Kick SLOW, as logicd does past its own limit; the replies already
 * queued go out before it. */
static void flooding(struct gw *gw, struct client *c) {
  mimd_info("conn %llu: %d requests unanswered: flooding, closing",
            (unsigned long long)c->id, GW_PENDING_MAX);
  gw_send_kick(gw, c, MIM_KICK_SLOW, "too many requests");
  gw_close(gw, c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too many requests");
}

/* Commands a client may send (docs/protocol.md §4): the requests and the
 * push acks. Everything else is the server's, or unknown. */
static bool client_cmd(uint32_t cmd) {
  switch (cmd) {
  case MIM_CMD_HEARTBEAT_REQ:
  case MIM_CMD_AUTH_REQ:
  case MIM_CMD_LOGOUT_REQ:
  case MIM_CMD_C2C_SEND_REQ:
  case MIM_CMD_C2C_PUSH_ACK:
  case MIM_CMD_C2G_SEND_REQ:
  case MIM_CMD_C2G_PUSH_ACK:
  case MIM_CMD_PULL_REQ:
  case MIM_CMD_GROUP_CREATE_REQ:
  case MIM_CMD_GROUP_ADD_REQ:
  case MIM_CMD_GROUP_REMOVE_REQ:
  case MIM_CMD_GROUP_LIST_REQ:
  case MIM_CMD_HISTORY_REQ:
  case MIM_CMD_GROUP_MANAGE_REQ:
  case MIM_CMD_GROUP_INFO_REQ:
  case MIM_CMD_SERVER_PUSH_ACK:
  case MIM_CMD_CONV_LIST_REQ:
  case MIM_CMD_MARK_READ_REQ:
  case MIM_CMD_READ_BY_REQ:
  case MIM_CMD_MSG_CHANGE_REQ:
  case MIM_CMD_TYPING_REQ:
  case MIM_CMD_PRESENCE_REQ:
  case MIM_CMD_GROUP_SYNC_REQ:
    return true;
  default:
    return false;
  }
}

/* The error a frame is refused with from its header alone, or 0. */
static int header_refusal(const struct mim_header *h) {
  if (h->version != MIM_PROTOCOL_VERSION)
    return -MIM_ERR_BAD_VERSION;
  if (h->cmd == MIM_CMD_SERVER_PUSH)
    return -MIM_ERR_FORBIDDEN; /* operators push, clients do not */
  if (!client_cmd(h->cmd))
    return -MIM_ERR_UNKNOWN_CMD;
  return 0;
}

/* Before login only these reach logicd: everything else is answered here,
 * so an unauthenticated connection cannot make logicd decode, queue or
 * answer anything but a login attempt. */
static bool allowed_before_login(uint32_t cmd) {
  return cmd == MIM_CMD_AUTH_REQ || cmd == MIM_CMD_HEARTBEAT_REQ;
}

static enum gw_screen client_screen(struct gw *gw, struct client *c,
                                const struct mim_header *h) {
  if (c->closing)
    return GW_CLOSED;
  /* a login is a token, a uid and a device: a few hundred bytes. Nothing
   * bigger is needed before it, so nothing bigger is buffered. */
  if (((!c->authed && !c->login_accepted) || h->cmd == MIM_CMD_AUTH_REQ) &&
      h->body_len > (uint64_t)gw->cfg->auth_max_body) {
    mimd_debug("conn %llu: %u-byte %s %s", (unsigned long long)c->id,
               h->body_len, mim_cmd_name(h->cmd),
               c->authed ? "AuthRequest" : "before login");
    gw_close_with_error(gw, c, -MIM_ERR_FRAME_TOO_BIG, h->cmd,
                        LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                        "frame larger than allowed before login");
    return GW_CLOSED;
  }
  /* a heartbeat's body, if any, is never read (on_frame) */
  if (h->cmd == MIM_CMD_HEARTBEAT_REQ && h->body_len > 0)
    return GW_SKIP;
  return header_refusal(h) < 0 ? GW_SKIP : GW_TAKE;
}

/* The client keeps sending while refused with RATE_LIMITED: Kick SLOW, as
 * logicd does for BUSY; the answers already queued go out before it. */
static void rate_abuse(struct gw *gw, struct client *c) {
  mimd_info("conn %llu: %lld requests refused for the rate limit within "
            "%d s: closing",
            (unsigned long long)c->id, (long long)gw->cfg->rate_strikes,
            GW_STRIKE_WINDOW_S);
  gw_send_kick(gw, c, MIM_KICK_SLOW, "rate limit exceeded");
  gw_close(gw, c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "rate limit exceeded");
}

/* Answers a request of an unauthenticated connection here, as logicd
 * would: MALFORMED (seq 0) for a body that does not parse, otherwise
 * UNAUTHENTICATED with the request's seq. */
static void answer_unauthenticated(struct gw *gw, struct client *c,
                                   const struct mim_header *h,
                                   const uint8_t *body) {
  struct mim_packet p;
  mim_packet_init(&p);
  int rc = mim_packet_decode(&p, h->cmd, body, h->body_len);
  int64_t seq = rc == 0 ? p.seq : 0;
  mim_packet_finish(&p);
  gw_pending_answer(gw, c, seq, h->cmd,
                    rc < 0 ? rc : -MIM_ERR_UNAUTHENTICATED);
}

static void on_frame(struct gw *gw, struct client *c, const struct mim_header *h,
                     const uint8_t *body) {
  mimd_counter_inc(gw_m_packets_in, gw_m_cmd(h->cmd));
  if (c->closing)
    return;
  /* A heartbeat has no message: a body is ignored, whatever it holds, and
   * the reply is the empty HEARTBEAT_RSP (docs/protocol.md §11). Its bytes
   * were counted against the limits like any frame's. */
  struct mim_header empty;
  if (h->cmd == MIM_CMD_HEARTBEAT_REQ && h->body_len > 0) {
    static const uint8_t none[1];
    empty = *h;
    empty.body_len = 0;
    h = &empty;
    body = none;
  }
  int rc = gw_pending_reserve(c, h->cmd);
  if (rc == -ENOBUFS) {
    flooding(gw, c);
    return;
  }
  if (rc < 0) {
    gw_close_with_error(gw, c, rc, h->cmd,
                        LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
    return;
  }
  /* every frame costs a request token, refused ones too: a flood of
   * unknown commands is a flood */
  rc = gw_rate_take(gw, c);
  if (rc == -ECONNABORTED) {
    rate_abuse(gw, c);
    return;
  }
  int refusal = header_refusal(h);
  if (rc < 0) {
    /* the seq is read only from a body that was kept (and a version that
     * is known) */
    int64_t seq = body && refusal == 0 ? gw_request_seq(h, body) : 0;
    gw_pending_answer(gw, c, seq, h->cmd, rc);
    return;
  }
  if (refusal < 0) {
    /* docs/protocol.md §2, §4: an Error for this request, the connection
     * stays; the body was not read, not even for its seq */
    mimd_debug("conn %llu: refused frame version %u cmd %u",
               (unsigned long long)c->id, h->version, h->cmd);
    gw_pending_answer(gw, c, 0, h->cmd, refusal);
    return;
  }
  if (!c->authed && !c->login_accepted && !allowed_before_login(h->cmd)) {
    answer_unauthenticated(gw, c, h, body);
    return;
  }
  rc = gw->cl.ops->request(gw->cl.ops_user, c->id, h->version, h->cmd, body, h->body_len);
  if (rc == 0) {
    gw_pending_forwarded(c, h, body);
    return;
  }
  /* logicd cannot take it: a heartbeat is answered as usual, anything
   * else with a retryable error naming the request; after the replies
   * still due, like any answer */
  int answer = h->cmd == MIM_CMD_HEARTBEAT_REQ ? GW_ANSWER_HEARTBEAT
               : rc == -ENOTCONN               ? -MIM_ERR_UNAVAILABLE
                                               : -MIM_ERR_BUSY;
  gw_pending_answer(gw, c, gw_request_seq(h, body), h->cmd, answer);
}

/* ---- the lws protocol ---- */

static const struct gw_rx_ops rx_ops = {
    .screen = client_screen,
    .frame = on_frame,
};

static bool path_ok(struct gw *gw, struct lws *wsi) {
  char uri[256];
  int n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
  return n > 0 && strcmp(uri, gw->cfg->path) == 0;
}

/* Registers a connection: `c` is zeroed but for its transport's fields. */
static int register_client(struct gw *gw, struct client *c, struct lws *wsi) {
  c->wsi = wsi;
  c->id = gw->cl.next_conn_id++;
  if (conntab_put(&gw->cl.conns, c->id, c) < 0) {
    mimd_error("out of memory registering a connection");
    c->id = 0;
    return -1;
  }
  c->valid_us = lws_now_usecs();
  gw_rate_init(gw, c);
  ua_append(gw, c);
  /* an HTTP client sends nothing after its request: a POST is bounded by
   * its own timeout, a stream's liveness is its heartbeat being written */
  if (c->take == NULL)
    gw_idle_touch(gw, c);
  mimd_debug("conn %llu: open", (unsigned long long)c->id);
  return 0;
}

int gw_clients_open(struct gw *gw, struct client *c, struct lws *wsi,
                    enum gw_transport transport) {
  memset(c, 0, sizeof *c);
  c->transport = transport;
  return register_client(gw, c, wsi);
}

/* The HTTP gateway's connections: http_gw.c has set their fields. */
static int open_http(struct gw *gw, struct client *c, struct lws *wsi) {
  gw_front_upgraded(gw, wsi);
  return register_client(gw, c, wsi);
}

/* The HTTP gateway makes the frames an HTTP client would have sent and
 * hands them to the same path as websocket frames. */
static const struct gw_http_ops http_ops = {
    .open = open_http,
    .frame = on_frame,
};

static bool http_path(struct gw *gw, const char *uri, size_t len) {
  size_t pl = strlen(GW_HTTP_PREFIX);
  return gw->cfg->http_gateway && gw->state == GW_RUNNING && len > pl &&
         strncmp(uri, GW_HTTP_PREFIX, pl) == 0;
}

void gw_clients_input(struct gw *gw, struct client *c, const uint8_t *in,
                      size_t len, bool first, bool final) {
  gw_idle_touch(gw, c);
  gw_rate_bytes(gw, c, len);
  gw_rx(gw, &rx_ops, c, in, len, first, final);
}

static int on_established(struct gw *gw, struct client *c, struct lws *wsi) {
  gw_front_upgraded(gw, wsi);
  return gw_clients_open(gw, c, wsi, GW_T_WS);
}

void gw_clients_closed(struct gw *gw, struct client *c) {
  if (c->id == 0)
    return;
  mimd_debug("conn %llu: closed", (unsigned long long)c->id);
  ua_unlink(gw, c);
  gw_idle_unlink(gw, c);
  conntab_del(&gw->cl.conns, c->id);
  free_client(c);
  if (gw->state != GW_DONE)
    gw->cl.ops->conn_closed(gw->cl.ops_user, c->id);
  c->id = 0;
  gw->cl.ops->idle(gw->cl.ops_user);
}

/* Traffic proves the peer alive as well as a pong does. Telling lws costs a
 * sorted insert into its timer list, so it is done at most once per half
 * ping interval, not per message. */
static void confirm_alive(struct gw *gw, struct client *c) {
  lws_usec_t now = lws_now_usecs();
  if (now - c->valid_us >= (lws_usec_t)gw->cfg->ping_interval_s * 500000) {
    c->valid_us = now;
    lws_validity_confirmed(c->wsi);
  }
}

static int on_receive(struct gw *gw, struct client *c, struct lws *wsi,
                      const uint8_t *in, size_t len) {
  if (c->id == 0)
    return -1;
  confirm_alive(gw, c);
  bool first = lws_is_first_fragment(wsi);
  if (first && !lws_frame_is_binary(wsi) && !c->closing) {
    /* a fatal framing fault: said with a Kick, then the close frame
     * (docs/protocol.md §1); the rest of the message is dropped unread */
    mimd_debug("conn %llu: text message", (unsigned long long)c->id);
    gw_send_kick(gw, c, MIM_KICK_PROTOCOL, "binary messages only");
    gw_close(gw, c, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
             "binary messages only");
    return 0;
  }
  gw_clients_input(gw, c, in, len, first, lws_is_final_fragment(wsi));
  return 0;
}

static int client_cb(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len) {
  struct gw *gw = lws_context_user(lws_get_context(wsi));
  struct client *c = user;

  switch (reason) {
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    /* lws_cancel_service(): the signal handler (or gateway.c's pump) */
    if (mimd_stop_signal && gw->state == GW_RUNNING)
      gw->cl.ops->stop(gw->cl.ops_user);
    /* cleared first: a SIGHUP during the reload asks for another */
    if (mimd_reload_signal && gw->state == GW_RUNNING) {
      mimd_reload_signal = 0;
      gw->cl.ops->reload(gw->cl.ops_user);
    }
    return 0;
  case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    /* refuse while stopping, and past the caps */
    return gw->state != GW_RUNNING || !gw_front_admit(gw, user);
  case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
    return gw_front_accepted(gw, wsi);
  case LWS_CALLBACK_WSI_DESTROY:
    gw_front_destroyed(gw, wsi);
    return 0;
  case LWS_CALLBACK_HTTP:
    if (c != NULL && in != NULL && http_path(gw, in, strlen(in)))
      return gw_http_request(gw, &http_ops, c, wsi, in);
    /* not a websocket upgrade: only the load balancers' liveness probe; a
     * request with a body is closed unread (mimd_http_has_body()) */
    if (mimd_http_has_body(wsi))
      return -1;
    if (in != NULL && gw->cfg->web_page && gw_web_is_page(in))
      return gw_web_serve(wsi, in);
    if (in != NULL && strcmp(in, "/healthz") == 0 &&
        lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
      return mimd_http_reply_static(wsi, HTTP_STATUS_OK, "ok\n");
    if (lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL))
      return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    if (gw->state != GW_RUNNING || !path_ok(gw, wsi)) {
      mimd_debug("refused a websocket upgrade (wrong path or stopping)");
      return 1;
    }
    return 0;
  case LWS_CALLBACK_ESTABLISHED:
    return on_established(gw, c, wsi);
  case LWS_CALLBACK_RECEIVE:
    return on_receive(gw, c, wsi, in, len);
  case LWS_CALLBACK_RECEIVE_PONG:
    /* the answer to lws's ping: the peer is alive */
    if (c->id != 0)
      gw_idle_touch(gw, c);
    return 0;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    return c->id ? gw_writeable(gw, c) : -1;
  case LWS_CALLBACK_CLOSED:
    gw_clients_closed(gw, c);
    return 0;
  /* the HTTP gateway (http_gw.c) */
  case LWS_CALLBACK_HTTP_BODY:
    return c && c->http ? gw_http_body(gw, c, in, len) : 0;
  case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    return c && c->http ? gw_http_body_done(gw, c) : 0;
  case LWS_CALLBACK_HTTP_WRITEABLE:
    return c && c->http ? gw_http_writeable(gw, c) : 0;
  case LWS_CALLBACK_TIMER:
    return c && c->http ? gw_http_timer(gw, c) : 0;
  case LWS_CALLBACK_CLOSED_HTTP:
    if (c != NULL && c->http != NULL) {
      gw_http_free(c);
      gw_clients_closed(gw, c);
    }
    return 0;
  default:
    return 0;
  }
}

void gw_clients_protocol(struct gw *gw, struct lws_protocols *p,
                         const struct gw_clients_ops *ops, void *user) {
  gw->cl.ops = ops;
  gw->cl.ops_user = user;
  memset(p, 0, sizeof *p);
  p->name = "mim";
  p->callback = client_cb;
  p->per_session_data_size = sizeof(struct client);
  /* lws keeps a receive buffer of this size per connection: small keeps an
   * idle connection near 2 KB (docs/architecture.md §5); bigger frames are
   * reassembled by rx.c */
  p->rx_buffer_size = 512;
  /* without this lws would also cap each send() at rx_buffer_size and copy
   * the rest of every larger frame into its own buffer */
  p->tx_packet_size = 128 * 1024;
  p->user = gw;
}

/* ---- from the RPC link ---- */

/* Whether a DELIVER is an AuthResponse saying yes. The SESSION that binds
 * the connection follows it on the link, possibly in a later read; a
 * client that answers at once must not be refused in between. */
static bool login_accepted(const struct mim_rpc *r) {
  if (r->inner_cmd != MIM_CMD_AUTH_RSP)
    return false;
  struct mim_packet p;
  mim_packet_init(&p);
  bool yes = mim_packet_decode(&p, MIM_CMD_AUTH_RSP, r->body, r->body_len) ==
                 0 &&
             p.status == 0;
  mim_packet_finish(&p);
  return yes;
}

/* A frame from logicd larger than send_message_max: a client that sized
 * its receive buffer by docs/protocol.md §2 must never get it. A reply is
 * answered TOO_LARGE instead, in its place; a push is dropped (it is in
 * the inbox: the gap in inbox_seq sends the client to pull it, and pull
 * replies are capped by logicd's reply_bytes_max). */
static void too_large_out(struct gw *gw, struct client *c,
                          const struct mim_rpc *r, size_t len, bool reply) {
  mimd_warn("conn %llu: %s of %zu bytes is over send_message_max (%lld): "
            "%s",
            (unsigned long long)c->id, mim_cmd_name(r->inner_cmd), len,
            (long long)gw->cfg->send_message_max,
            reply ? "answered TOO_LARGE" : "dropped");
  if (!reply)
    return;
  int64_t seq = 0;
  uint32_t cmd = 0;
  (void)gw_pending_head(c, &seq, &cmd);
  (void)gw_send_error(gw, c, -MIM_ERR_TOO_LARGE, seq, cmd,
                      "reply larger than the server sends");
  gw_pending_replied(gw, c);
}

void gw_clients_deliver(struct gw *gw, const struct mim_rpc *r) {
  bool reply = gw_pending_is_reply(r->inner_cmd, r->body, r->body_len);
  bool accepted = login_accepted(r);
  /* the largest frame: body + the appended varint field (tag <= 5 bytes,
   * value <= 10) */
  size_t cap = MIM_HEADER_SIZE + r->body_len + 16;
  const size_t out_max = (size_t)gw->cfg->send_message_max;
  for (size_t i = 0; i < r->n_targets; i++) {
    struct client *c = conntab_get(&gw->cl.conns, r->targets[i].conn_id);
    if (c == NULL || c->closing)
      continue; /* closed meanwhile; logicd hears CONN_CLOSED */
    if (MIM_HEADER_SIZE + r->body_len > out_max) {
      too_large_out(gw, c, r, MIM_HEADER_SIZE + r->body_len, reply);
      continue;
    }
    struct qnode *n = gw_qnode_new(cap);
    int rc = n ? mim_frame_encode_with_field(
                     n->data + LWS_PRE, cap, r->inner_cmd, r->body, r->body_len,
                     r->seq_field, r->targets[i].inbox_seq, &n->len)
               : -ENOMEM;
    if (rc < 0) {
      mimd_error("conn %llu: cannot queue %s: %s", (unsigned long long)c->id,
                 mim_cmd_name(r->inner_cmd), mim_strerror(rc));
      free(n);
      /* a reply lost here would leave the client waiting forever: the
       * connection ends, with an Error that says so */
      gw_close_with_error(gw, c, rc, r->inner_cmd,
                          LWS_CLOSE_STATUS_UNEXPECTED_CONDITION,
                          "internal error");
      continue;
    }
    if (n->len > out_max) {
      too_large_out(gw, c, r, n->len, reply);
      free(n);
      continue;
    }
    /* an AuthResponse is queued before logicd's SESSION that follows it
     * makes the client batchable: it is never coalesced with what follows
     * (the client learns about batching from it) */
    gw_queue(gw, c, n);
    if (accepted)
      c->login_accepted = true;
    if (reply)
      gw_pending_replied(gw, c);
  }
}

void gw_clients_kick(struct gw *gw, uint64_t conn_id, int32_t reason,
                     const char *msg) {
  struct client *c = conntab_get(&gw->cl.conns, conn_id);
  if (c == NULL || c->closing)
    return;
  mimd_debug("conn %llu: kicked (reason %d)", (unsigned long long)conn_id,
             (int)reason);
  gw_send_kick(gw, c, reason, msg);
  /* logicd has dropped the session: it must not come back in SESSIONS */
  forget_session(c);
  gw_close(gw, c,
           reason == MIM_KICK_OTHER_LOGIN ? 4001
                                          : LWS_CLOSE_STATUS_POLICY_VIOLATION,
           reason == MIM_KICK_OTHER_LOGIN ? "logged in elsewhere" : "kicked");
}

/* SESSIONS goes out in slices so that a big gateway stays far below the
 * 16 MiB RPC body limit (each session is ~30-300 bytes). */
#define SESSIONS_PER_MSG 4096

int gw_clients_sessions(struct gw *gw) {
  struct mim_rpc_session *s = calloc(SESSIONS_PER_MSG, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  size_t n = 0, total = 0;
  int rc = 0;
  bool sent_any = false;
  for (size_t i = 0; i <= gw->cl.conns.cap && rc == 0; i++) {
    bool end = i == gw->cl.conns.cap;
    if (!end) {
      struct client *c = gw->cl.conns.slots[i].value;
      if (gw->cl.conns.slots[i].key == 0 || !c->authed || c->closing)
        continue;
      s[n].conn_id = c->id;
      s[n].uid = c->uid;
      s[n].device = c->device;
      s[n].caps = c->caps;
      s[n].ticket = c->ticket;
      s[n].ticket_len = c->ticket_len;
      n++;
    }
    /* an empty SESSIONS is still sent: it is part of the handshake */
    if (n == SESSIONS_PER_MSG || (end && (n > 0 || !sent_any))) {
      struct mim_rpc r;
      mim_rpc_init(&r);
      r.cmd = MIM_RPC_SESSIONS;
      r.sessions = s;
      r.n_sessions = n;
      rc = gw->cl.ops->send(gw->cl.ops_user, &r);
      total += n;
      n = 0;
      sent_any = true;
    }
  }
  free(s);
  if (rc == 0)
    mimd_info("re-registered %zu authenticated connection(s) with logicd",
              total);
  return rc;
}

void gw_clients_shutdown(struct gw *gw) {
  for (size_t i = 0; i < gw->cl.conns.cap; i++) {
    struct client *c = gw->cl.conns.slots[i].value;
    if (gw->cl.conns.slots[i].key == 0 || c->closing)
      continue;
    gw_send_kick(gw, c, MIM_KICK_SHUTDOWN, "server shutting down");
    ua_unlink(gw, c);
    gw_close(gw, c, LWS_CLOSE_STATUS_GOINGAWAY, "going away");
  }
}

void gw_clients_finish(struct gw *gw) {
  /* lws_context_destroy() has closed every connection (on_closed ran for
   * each); anything left would be a bug, but is freed all the same */
  for (size_t i = 0; i < gw->cl.conns.cap; i++)
    if (gw->cl.conns.slots[i].key != 0)
      free_client(gw->cl.conns.slots[i].value);
  conntab_free(&gw->cl.conns);
}

void gw_clients_link_down(struct gw *gw) {
  for (size_t i = 0; i < gw->cl.conns.cap; i++) {
    struct client *c = gw->cl.conns.slots[i].value;
    /* answering never closes or frees a connection here (a send queue
     * over its bound only marks it closing), so the table does not change
     * under the loop */
    if (gw->cl.conns.slots[i].key != 0)
      gw_pending_link_down(gw, c);
  }
}
