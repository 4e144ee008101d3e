/* Client connections: the websocket protocol callback, the conn_id table,
 * the authentication deadline, and what the RPC link asks of clients
 * (DELIVER, KICK, SESSIONS).
 *
 * The gateway keeps no session logic of its own: it learns which
 * connections are authenticated from the traffic it relays (an
 * AuthRequest's uid/device, the AuthResponse's status, a LogoutResponse)
 * to re-register them with a restarted logicd (docs/rpc.md), and to answer
 * what an unauthenticated connection sends besides AuthRequests and
 * heartbeats itself, so that logicd never sees it. */
#include "gateway.h"

#include <log.h>
#include <signals.h>
#include <stdlib.h>
#include <string.h>

/* AuthRequests a connection may have in flight: one is normal, a few are
 * tolerated (a retry after a slow reply); more is abuse. */
#define MAX_PENDING_AUTH 4

/* ---- authentication deadline ----
 * Every connection gets the same timeout, so the unauthenticated ones form
 * a list already sorted by deadline (append at the tail) and one timer, for
 * the head, serves them all: O(1) per connection, and a connection storm
 * does not fill a timer heap. */

static void ua_arm(struct gw *gw) {
  if (gw->ua_head == NULL || gw->state == GW_DONE)
    return;
  lws_usec_t wait = gw->ua_head->auth_deadline - lws_now_usecs();
  gw_timer_set(&gw->auth, wait > 0 ? wait : 1);
}

static void ua_unlink(struct gw *gw, struct client *c) {
  if (!c->in_ua)
    return;
  if (c->ua_prev)
    c->ua_prev->ua_next = c->ua_next;
  else
    gw->ua_head = c->ua_next;
  if (c->ua_next)
    c->ua_next->ua_prev = c->ua_prev;
  else
    gw->ua_tail = c->ua_prev;
  c->ua_prev = c->ua_next = NULL;
  c->in_ua = false;
  /* the timer is left armed: when it fires it finds the new head */
}

static void ua_append(struct gw *gw, struct client *c) {
  ua_unlink(gw, c);
  c->auth_deadline =
      lws_now_usecs() + (lws_usec_t)gw->cfg->auth_timeout_ms * 1000;
  c->ua_prev = gw->ua_tail;
  c->ua_next = NULL;
  if (gw->ua_tail)
    gw->ua_tail->ua_next = c;
  else
    gw->ua_head = c;
  gw->ua_tail = c;
  c->in_ua = true;
  if (gw->ua_head == c)
    ua_arm(gw);
}

void gw_clients_auth_timer(struct gw *gw) {
  lws_usec_t now = lws_now_usecs();
  while (gw->ua_head && gw->ua_head->auth_deadline <= now) {
    struct client *c = gw->ua_head;
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

static void free_pending(struct pending_auth *p) {
  free(p->uid);
  free(p->device);
  free(p);
}

static void forget_session(struct client *c) {
  free(c->uid);
  free(c->device);
  c->uid = c->device = NULL;
  c->authed = false;
  c->caps = 0;
}

static void free_client(struct client *c) {
  gw_queue_free(c);
  gw_pending_free(c);
  gw_rx_reset(c);
  forget_session(c);
  while (c->auth_head) {
    struct pending_auth *p = c->auth_head;
    c->auth_head = p->next;
    free_pending(p);
  }
  c->auth_tail = NULL;
  c->n_auth = 0;
}

static char *dup_or(const char *s, const char *fallback) {
  return strdup(s && s[0] ? s : fallback);
}

/* Remembers who a forwarded AuthRequest claims to be, to learn the session
 * if the reply says yes. Out of memory closes the connection: the session
 * could not be re-registered later. */
static void note_auth_request(struct gw *gw, struct client *c,
                              const uint8_t *body, size_t len) {
  struct mim_packet p;
  mim_packet_init(&p);
  /* a body that does not parse is forwarded all the same: logicd answers
   * it with MALFORMED, which keeps the reply in request order */
  bool parsed = mim_packet_decode(&p, MIM_CMD_AUTH_REQ, body, len) == 0;
  struct pending_auth *a = calloc(1, sizeof *a);
  if (a != NULL) {
    a->link_gen = gw->up.gen;
    a->caps = parsed ? p.caps : 0;
    a->uid = dup_or(parsed ? p.uid : NULL, "");
    a->device = dup_or(parsed ? p.device : NULL, MIM_DEFAULT_DEVICE);
  }
  mim_packet_finish(&p);
  if (a == NULL || a->uid == NULL || a->device == NULL) {
    if (a)
      free_pending(a);
    gw_close_with_error(gw, c, -ENOMEM, MIM_CMD_AUTH_REQ,
                        LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
    return;
  }
  if (c->auth_tail)
    c->auth_tail->next = a;
  else
    c->auth_head = a;
  c->auth_tail = a;
  c->n_auth++;
}

/* Entries sent on an earlier link never get their reply (that logicd is
 * gone). Links only move forward, so they are at the head. */
static void drop_stale_auth(struct gw *gw, struct client *c) {
  while (c->auth_head && c->auth_head->link_gen != gw->up.gen) {
    struct pending_auth *a = c->auth_head;
    c->auth_head = a->next;
    c->n_auth--;
    free_pending(a);
  }
  if (c->auth_head == NULL)
    c->auth_tail = NULL;
}

/* An AuthResponse to `c` went by: it answers the oldest AuthRequest
 * pending on this link. */
static void note_auth_response(struct gw *gw, struct client *c, bool ok,
                               uint32_t granted) {
  drop_stale_auth(gw, c);
  struct pending_auth *a = c->auth_head;
  if (a == NULL)
    return; /* a reply we did not see the request of: nothing to learn */
  c->auth_head = a->next;
  if (c->auth_head == NULL)
    c->auth_tail = NULL;
  c->n_auth--;
  if (ok && !c->authed) {
    c->uid = a->uid;
    c->device = a->device;
    a->uid = a->device = NULL;
    c->authed = true;
    c->caps = a->caps & granted;
    ua_unlink(gw, c);
    mimd_debug("conn %llu: authenticated as %s/%s", (unsigned long long)c->id,
               c->uid, c->device);
  }
  free_pending(a);
}

static void note_logout(struct gw *gw, struct client *c) {
  if (!c->authed)
    return;
  mimd_debug("conn %llu: logged out", (unsigned long long)c->id);
  forget_session(c);
  /* unauthenticated again: the same deadline as a new connection */
  ua_append(gw, c);
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
  case MIM_CMD_SERVER_PUSH_ACK:
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

enum gw_screen gw_client_screen(struct gw *gw, struct client *c,
                                const struct mim_header *h) {
  if (c->closing)
    return GW_CLOSED;
  /* a login is a token, a uid and a device: a few hundred bytes. Nothing
   * bigger is needed before it, so nothing bigger is buffered. */
  if ((!c->authed || h->cmd == MIM_CMD_AUTH_REQ) &&
      h->body_len > (uint64_t)gw->cfg->auth_max_body) {
    mimd_debug("conn %llu: %u-byte %s %s", (unsigned long long)c->id,
               h->body_len, mim_cmd_name(h->cmd),
               c->authed ? "AuthRequest" : "before login");
    gw_close_with_error(gw, c, -MIM_ERR_FRAME_TOO_BIG, h->cmd,
                        LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                        "frame larger than allowed before login");
    return GW_CLOSED;
  }
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

void gw_client_on_frame(struct gw *gw, struct client *c,
                        const struct mim_header *h, const uint8_t *body) {
  if (c->closing)
    return;
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
  if (!c->authed && !allowed_before_login(h->cmd)) {
    answer_unauthenticated(gw, c, h, body);
    return;
  }
  bool auth = h->cmd == MIM_CMD_AUTH_REQ;
  if (auth)
    drop_stale_auth(gw, c);
  if (auth && c->n_auth >= MAX_PENDING_AUTH) {
    gw_close(gw, c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
             "too many auth requests in flight");
    return;
  }
  rc = gw_upstream_request(gw, c->id, h->version, h->cmd, body, h->body_len);
  if (rc == 0) {
    if (auth)
      note_auth_request(gw, c, body, h->body_len);
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

static bool path_ok(struct gw *gw, struct lws *wsi) {
  char uri[256];
  int n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
  return n > 0 && strcmp(uri, gw->cfg->path) == 0;
}

static int on_established(struct gw *gw, struct client *c, struct lws *wsi) {
  memset(c, 0, sizeof *c);
  c->wsi = wsi;
  c->id = gw->next_conn_id++;
  if (conntab_put(&gw->conns, c->id, c) < 0) {
    mimd_error("out of memory registering a connection");
    c->id = 0;
    return -1;
  }
  c->valid_us = lws_now_usecs();
  gw_front_upgraded(gw, wsi);
  gw_rate_init(gw, c);
  ua_append(gw, c);
  mimd_debug("conn %llu: open", (unsigned long long)c->id);
  return 0;
}

static void on_closed(struct gw *gw, struct client *c) {
  if (c->id == 0)
    return;
  mimd_debug("conn %llu: closed", (unsigned long long)c->id);
  ua_unlink(gw, c);
  conntab_del(&gw->conns, c->id);
  free_client(c);
  if (gw->state != GW_DONE)
    gw_upstream_conn_closed(gw, c->id);
  c->id = 0;
  gw_check_drained(gw);
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
  gw_rate_bytes(gw, c, len);
  bool first = lws_is_first_fragment(wsi);
  if (first && !lws_frame_is_binary(wsi) && !c->closing) {
    static const char why[] = "binary frames only";
    mimd_debug("conn %llu: text message", (unsigned long long)c->id);
    lws_close_reason(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                     (unsigned char *)(uintptr_t)why, sizeof why - 1);
    return -1;
  }
  gw_rx(gw, c, in, len, first, lws_is_final_fragment(wsi));
  return 0;
}

static int client_cb(struct lws *wsi, enum lws_callback_reasons reason,
                     void *user, void *in, size_t len) {
  struct gw *gw = lws_context_user(lws_get_context(wsi));
  struct client *c = user;

  switch (reason) {
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    /* lws_cancel_service(): the signal handler (or loop.c's pump) */
    if (mimd_stop_signal && gw->state == GW_RUNNING)
      gw_begin_stop(gw);
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
    /* not a websocket upgrade: nothing to serve here */
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
  case LWS_CALLBACK_SERVER_WRITEABLE:
    return c->id ? gw_writeable(gw, c) : -1;
  case LWS_CALLBACK_CLOSED:
    on_closed(gw, c);
    return 0;
  default:
    return 0;
  }
}

void gw_clients_protocol(struct gw *gw, struct lws_protocols *p) {
  memset(p, 0, sizeof *p);
  p->name = "mim";
  p->callback = client_cb;
  p->per_session_data_size = sizeof(struct client);
  /* lws keeps a receive buffer of this size per connection: small keeps an
   * idle connection near 2 KB (DESIGN.md §5); bigger frames are
   * reassembled by rx.c */
  p->rx_buffer_size = 512;
  /* without this lws would also cap each send() at rx_buffer_size and copy
   * the rest of every larger frame into its own buffer */
  p->tx_packet_size = 128 * 1024;
  p->user = gw;
}

/* ---- from the RPC link ---- */

void gw_clients_deliver(struct gw *gw, const struct mim_rpc *r) {
  bool reply = gw_pending_is_reply(r->inner_cmd, r->body, r->body_len);
  bool auth_rsp = r->inner_cmd == MIM_CMD_AUTH_RSP;
  bool logout_rsp = r->inner_cmd == MIM_CMD_LOGOUT_RSP;
  bool auth_ok = false;
  uint32_t granted = 0;
  if (auth_rsp) {
    struct mim_packet p;
    mim_packet_init(&p);
    if (mim_packet_decode(&p, MIM_CMD_AUTH_RSP, r->body, r->body_len) == 0) {
      auth_ok = p.status == 0;
      granted = p.caps;
    }
    mim_packet_finish(&p);
  }
  /* the largest frame: body + the appended varint field (tag <= 5 bytes,
   * value <= 10) */
  size_t cap = MIM_HEADER_SIZE + r->body_len + 16;
  for (size_t i = 0; i < r->n_targets; i++) {
    struct client *c = conntab_get(&gw->conns, r->targets[i].conn_id);
    if (c == NULL || c->closing)
      continue; /* closed meanwhile; logicd hears CONN_CLOSED */
    struct qnode *n = gw_qnode_new(cap);
    int rc = n ? mim_frame_encode_with_field(
                     n->data + LWS_PRE, cap, r->inner_cmd, r->body, r->body_len,
                     r->seq_field, r->targets[i].inbox_seq, &n->len)
               : -ENOMEM;
    if (rc < 0) {
      mimd_error("conn %llu: cannot queue %s: %s", (unsigned long long)c->id,
                 mim_cmd_name(r->inner_cmd), mim_strerror(rc));
      free(n);
      /* a reply lost here would leave the client waiting forever */
      gw_close(gw, c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "internal error");
      continue;
    }
    /* queued first, so the AuthResponse itself is never coalesced with
     * what follows it (the client learns about batching from it) */
    gw_queue(gw, c, n);
    if (auth_rsp)
      note_auth_response(gw, c, auth_ok, granted);
    else if (logout_rsp)
      note_logout(gw, c);
    if (reply)
      gw_pending_replied(gw, c);
  }
}

void gw_clients_kick(struct gw *gw, uint64_t conn_id, int32_t reason,
                     const char *msg) {
  struct client *c = conntab_get(&gw->conns, conn_id);
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
  for (size_t i = 0; i <= gw->conns.cap && rc == 0; i++) {
    bool end = i == gw->conns.cap;
    if (!end) {
      struct client *c = gw->conns.slots[i].value;
      if (gw->conns.slots[i].key == 0 || !c->authed || c->closing)
        continue;
      s[n].conn_id = c->id;
      s[n].uid = c->uid;
      s[n].device = c->device;
      s[n].caps = c->caps;
      n++;
    }
    /* an empty SESSIONS is still sent: it is part of the handshake */
    if (n == SESSIONS_PER_MSG || (end && (n > 0 || !sent_any))) {
      struct mim_rpc r;
      mim_rpc_init(&r);
      r.cmd = MIM_RPC_SESSIONS;
      r.sessions = s;
      r.n_sessions = n;
      rc = gw_upstream_send(gw, &r);
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
  for (size_t i = 0; i < gw->conns.cap; i++) {
    struct client *c = gw->conns.slots[i].value;
    if (gw->conns.slots[i].key == 0 || c->closing)
      continue;
    gw_send_kick(gw, c, MIM_KICK_SHUTDOWN, "server shutting down");
    ua_unlink(gw, c);
    gw_close(gw, c, LWS_CLOSE_STATUS_GOINGAWAY, "going away");
  }
}

void gw_clients_finish(struct gw *gw) {
  /* lws_context_destroy() has closed every connection (on_closed ran for
   * each); anything left would be a bug, but is freed all the same */
  for (size_t i = 0; i < gw->conns.cap; i++)
    if (gw->conns.slots[i].key != 0)
      free_client(gw->conns.slots[i].value);
  conntab_free(&gw->conns);
}
