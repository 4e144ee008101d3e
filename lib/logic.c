/* The logic's public face: creation, the events it is fed, and the handler
 * of each client command. Connections and effects live in logic_conn.c,
 * writes and what follows their commit in logic_commit.c. */
#include "logic_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <mim/auth.h>

void mim_logic_config_init(struct mim_logic_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->pull_limit_default = 100;
  cfg->pull_limit_max = 500;
  cfg->content_max = 32 * 1024;
  cfg->batch_max_ops = 4096;
  cfg->conn_pending_max = 256;
  cfg->rate_per_sec = 200;
  cfg->rate_burst = 400;
  cfg->inflight_push_max = 1024;
  cfg->cursor_flush_ms = 200;
  cfg->group_request_members_max = 1000;
  cfg->user_devices_max = 16;
  cfg->reply_bytes_max = MIM_REPLY_BYTES_DEFAULT;
  cfg->read_turn_bytes = 1024 * 1024;
}

size_t mim_logic_reply_bytes_min(uint32_t content_max) {
  return MIM_REPLY_OVERHEAD + MIM_REPLY_ENTRY_OVERHEAD + 3 * MIM_ID_MAX +
         MIM_CLIENT_MSG_ID_MAX + (size_t)content_max;
}

int mim_logic_create(struct mim_logic **out, const struct mim_logic_config *cfg) {
  if (out == NULL || cfg == NULL || cfg->backend == NULL ||
      cfg->backend->ops == NULL)
    return -EINVAL;
  if (!cfg->dev_auth &&
      (cfg->secret == NULL || cfg->secret_len < MIM_SECRET_MIN))
    return -EINVAL;
  struct mim_logic *l = calloc(1, sizeof *l);
  if (l == NULL)
    return -ENOMEM;
  l->cfg = *cfg;
  if (l->cfg.pull_limit_max == 0)
    l->cfg.pull_limit_max = 500;
  if (l->cfg.pull_limit_default == 0 ||
      l->cfg.pull_limit_default > l->cfg.pull_limit_max)
    l->cfg.pull_limit_default = l->cfg.pull_limit_max;
  if (l->cfg.batch_max_ops == 0)
    l->cfg.batch_max_ops = 4096;
  if (l->cfg.conn_pending_max == 0)
    l->cfg.conn_pending_max = 256;
  if (l->cfg.group_request_members_max == 0)
    l->cfg.group_request_members_max = 1000;
  l->open_batch = 1;
  if (l->cfg.reply_bytes_max == 0)
    l->cfg.reply_bytes_max = MIM_REPLY_BYTES_DEFAULT;
  if (l->cfg.reply_bytes_max < mim_logic_reply_bytes_min(l->cfg.content_max)) {
    /* the largest message would not fit a reply on its own */
    free(l);
    return -EINVAL;
  }
  int rc = -ENOMEM;
  if (cfg->secret != NULL && cfg->secret_len > 0) {
    l->secret = malloc(cfg->secret_len);
    if (l->secret == NULL)
      goto fail;
    memcpy(l->secret, cfg->secret, cfg->secret_len);
    l->cfg.secret = l->secret;
  }
  rc = -EINVAL;
  if (cfg->ticket_key != NULL) {
    if (cfg->ticket_key_len < MIM_SECRET_MIN)
      goto fail;
    /* any length works as an HMAC key; keep a fixed-size derivation */
    if ((rc = mim_ticket_key_derive(cfg->ticket_key, cfg->ticket_key_len,
                                    l->ticket_key)) < 0)
      goto fail;
  } else if (l->secret != NULL && cfg->secret_len >= MIM_SECRET_MIN) {
    if ((rc = mim_ticket_key_derive(l->secret, cfg->secret_len,
                                    l->ticket_key)) < 0)
      goto fail;
  } else if (RAND_bytes(l->ticket_key, sizeof l->ticket_key) != 1) {
    rc = -EIO;
    goto fail;
  }
  l->cfg.ticket_key = NULL; /* borrowed by the caller: not kept */
  l->cfg.ticket_key_len = 0;
  if ((rc = mim_sessions_create(&l->sessions)) < 0)
    goto fail;
  mim_sessions_set_user_max(l->sessions, l->cfg.user_devices_max);
  mim__hkey_init(&l->hkey, l);
  if ((rc = mim_fanout_create(&l->fanout)) < 0)
    goto fail;
  if ((rc = mim_write_batch_create(&l->open)) < 0)
    goto fail;
  if (cfg->dev_auth)
    mim__warn("DEVELOPMENT AUTH: every token is accepted");
  *out = l;
  return 0;
fail:
  mim_fanout_destroy(l->fanout);
  mim_sessions_destroy(l->sessions);
  OPENSSL_cleanse(l->ticket_key, sizeof l->ticket_key);
  free(l->secret);
  free(l);
  return rc;
}

void mim_logic_destroy(struct mim_logic *l) {
  if (l == NULL)
    return;
  mim__logic_pending_finish(l);
  mim__logic_conns_finish(l);
  mim__logic_cursors_finish(l);
  mim__logic_effects_finish(l);
  mim_write_batch_destroy(l->open);
  mim_write_batch_destroy(l->spare);
  mim__logic_group_weights_finish(l);
  /* l->out belongs to whoever took it */
  mim_fanout_destroy(l->fanout);
  mim_sessions_destroy(l->sessions);
  for (size_t i = 0; i < l->n_gateways; i++)
    free(l->gateways[i].name);
  free(l->gateways);
  OPENSSL_cleanse(l->ticket_key, sizeof l->ticket_key);
  free(l->secret);
  free(l);
}

const struct mim_sessions *mim_logic_sessions(const struct mim_logic *l) {
  return l->sessions;
}

/* ---- token expiry ---- */

/* A token expiry (unix seconds) in ms; a token may say up to 2^63-1 s,
 * which as ms is past the end of time: never. */
static int64_t expiry_ms(int64_t expires_at) {
  return expires_at > INT64_MAX / 1000 ? INT64_MAX : expires_at * 1000;
}

static bool session_expired(const struct conn *c, int64_t now_ms) {
  return c->authed && c->expires_at != 0 && expiry_ms(c->expires_at) <= now_ms;
}

/* Ends a session whose token has expired: the client is told why and the
 * gateway closes it (and forgets the session). */
static void expire(struct mim_logic *l, struct conn *c) {
  mim__debug("conn %llu: token of %s/%s expired",
             (unsigned long long)c->ref.conn_id, c->uid, c->device);
  mim__logic_emit_kick(l, c->ref, MIM_KICK_TOKEN_EXPIRED, c->uid,
                       "login token expired");
  mim__logic_conn_unauth(l, c);
}

struct expiry_scan {
  struct mim_logic *l;
  int64_t now, next;
};

static void expiry_visit(void *user, struct mim__hnode *n) {
  struct expiry_scan *x = user;
  struct conn *c = mim__container_of(n, struct conn, node);
  if (!c->authed || c->expires_at == 0)
    return;
  if (session_expired(c, x->now)) {
    expire(x->l, c); /* unauth keeps `c` in the table: safe while walking */
    return;
  }
  int64_t at = expiry_ms(c->expires_at);
  if (x->next == 0 || at < x->next)
    x->next = at;
}

/* Tokens expire on the second, so a scan runs at most about once a second
 * however many connections there are, and only when one is due. */
void mim_logic_tick(struct mim_logic *l) {
  /* Rate limits refill lazily on each send and push acks are bounded by
   * count; a tick starts a new turn of reads and ends the sessions whose
   * token has expired. */
  l->turn_bytes = 0;
  if (l->next_expiry_ms == 0)
    return;
  int64_t now = mim__logic_now(l);
  if (now < l->next_expiry_ms)
    return;
  struct expiry_scan x = {.l = l, .now = now, .next = 0};
  mim__htable_foreach(&l->conns, expiry_visit, &x);
  l->next_expiry_ms = x.next;
}

int64_t mim_logic_next_timeout(const struct mim_logic *l) {
  if (l->cfg.read_turn_bytes != 0 && l->turn_bytes >= l->cfg.read_turn_bytes &&
      mim__logic_reads_ready(l))
    return 0; /* reads wait for the next turn */
  if (l->next_expiry_ms == 0)
    return -1;
  int64_t wait = l->next_expiry_ms - mim__logic_now(l);
  return wait > 0 ? wait : 0;
}

static void expiry_note(struct mim_logic *l, int64_t expires_at) {
  if (expires_at == 0)
    return;
  int64_t at = expiry_ms(expires_at);
  if (l->next_expiry_ms == 0 || at < l->next_expiry_ms)
    l->next_expiry_ms = at;
}

/* ---- gateways ---- */

static ssize_t gateway_index(const struct mim_logic *l, uint32_t gw) {
  struct gw *g = mim__logic_gw_find(l, gw);
  return g != NULL ? g - l->gateways : -1;
}

const char *mim__logic_gateway_id(const struct mim_logic *l, uint32_t handle) {
  struct gw *g = mim__logic_gw_find(l, handle);
  return g != NULL ? g->name : NULL;
}

int mim_logic_gateway_up(struct mim_logic *l, uint32_t gateway,
                         const char *id) {
  if (!mim_id_valid(id))
    return -EINVAL;
  if (gateway_index(l, gateway) >= 0)
    return -EEXIST;
  if (l->n_gateways == l->gateways_cap) {
    size_t cap = l->gateways_cap ? l->gateways_cap * 2 : 8;
    struct gw *g = realloc(l->gateways, cap * sizeof *g);
    if (g == NULL)
      return -ENOMEM;
    l->gateways = g;
    l->gateways_cap = cap;
  }
  char *name = strdup(id);
  if (name == NULL)
    return -ENOMEM;
  l->gateways[l->n_gateways++] = (struct gw){.id = gateway, .name = name};
  return 0;
}

int mim_logic_gateway_pause(struct mim_logic *l, uint32_t gateway,
                            bool paused) {
  struct gw *g = mim__logic_gw_find(l, gateway);
  if (g == NULL)
    return -ENOENT;
  g->paused = paused;
  return 0;
}

struct drop_ctx {
  struct mim_logic *l;
  uint32_t gateway;
};

static void drop_if_on_gateway(void *user, struct mim__hnode *n) {
  struct drop_ctx *d = user;
  struct conn *c = mim__container_of(n, struct conn, node);
  if (c->ref.gateway == d->gateway)
    mim__logic_conn_drop(d->l, c);
}

int mim_logic_gateway_down(struct mim_logic *l, uint32_t gateway) {
  if (gateway_index(l, gateway) < 0)
    return -ENOENT;
  /* its connections leave its read queue before it goes */
  struct drop_ctx d = {l, gateway};
  mim__htable_foreach(&l->conns, drop_if_on_gateway, &d);
  ssize_t i = gateway_index(l, gateway);
  free(l->gateways[i].name);
  l->gateways[i] = l->gateways[--l->n_gateways];
  if (l->rr_gateway >= l->n_gateways)
    l->rr_gateway = 0;
  mim_sessions_unbind_gateway(l->sessions, gateway, NULL, NULL);
  return 0;
}

int mim_logic_conn_closed(struct mim_logic *l, struct mim_conn_ref conn) {
  struct conn *c = mim__logic_conn_find(l, conn);
  if (c != NULL)
    mim__logic_conn_drop(l, c);
  return 0;
}

/* ---- authentication ---- */

struct find_device {
  const char *device;
  bool found;
  struct mim_conn_ref conn;
};

static void match_device(void *user, const struct mim_route *r) {
  struct find_device *f = user;
  if (strcmp(r->device, f->device) == 0) {
    f->found = true;
    f->conn = r->conn;
  }
}

/* Makes `c` the session of (uid, device); a connection that held it is
 * kicked. Reads the device's cursor: logging in writes nothing. */
static int login(struct mim_logic *l, struct conn *c, const char *uid,
                 const char *device, uint32_t caps, int64_t expires_at,
                 uint64_t *last_seq) {
  struct mim_backend *be = l->cfg.backend;
  uint64_t cursor = 0, last = 0;
  int rc = be->ops->cursor_get(be->impl, uid, device, &cursor);
  if (rc == 0)
    rc = be->ops->inbox_last_seq(be->impl, uid, &last);
  if (rc < 0)
    return rc;
  char *u = strdup(uid), *d = strdup(device);
  if (u == NULL || d == NULL) {
    free(u);
    free(d);
    return -ENOMEM;
  }
  struct mim_conn_ref old;
  bool replaced = false;
  rc = mim_sessions_bind(l->sessions, uid, device, c->ref, caps, &old,
                         &replaced);
  if (rc < 0) {
    free(u);
    free(d);
    return rc;
  }
  if (replaced) {
    struct conn *oc = mim__logic_conn_find(l, old);
    mim__logic_emit_kick(l, old, MIM_KICK_OTHER_LOGIN, uid,
                         "logged in from another connection");
    if (oc != NULL)
      mim__logic_conn_unauth(l, oc); /* writes its cursor; its route is
                                        already the new one's */
  }
  /* acks not yet committed (from the connection just replaced, or one that
   * closed a moment ago) count: the device has seen those messages */
  uint64_t pending = mim__logic_cursor_pending(l, uid, device);
  if (pending > cursor)
    cursor = pending;
  c->authed = true;
  c->uid = u;
  c->device = d;
  c->caps = caps & MIM_CAP_BATCH;
  c->expires_at = expires_at;
  expiry_note(l, expires_at);
  c->cursor = cursor;
  c->pulled_upto = 0;
  c->seen_max = last > cursor ? last : cursor;
  if (c->ring == NULL && l->cfg.inflight_push_max > 0) {
    c->ring = calloc(l->cfg.inflight_push_max, sizeof *c->ring);
    c->ring_cap = c->ring ? l->cfg.inflight_push_max : 0;
  }
  c->ring_start = c->ring_len = 0;
  *last_seq = last;
  return 0;
}

static void handle_auth(struct mim_logic *l, struct conn *c,
                        const struct mim_packet *p) {
  struct mim_packet r;
  mim_packet_init(&r);
  r.cmd = MIM_CMD_AUTH_RSP;
  r.seq = p->seq;
  r.ts = mim__logic_now(l);
  const char *device =
      p->device != NULL && p->device[0] != '\0' ? p->device : MIM_DEFAULT_DEVICE;
  int rc = 0;
  uint64_t last = 0;
  int64_t expires_at = 0; /* development tokens never expire */
  if (c->authed || c->logging_out)
    rc = -MIM_ERR_ALREADY_AUTHENTICATED;
  else if (!mim_id_valid(p->uid) || !mim_id_valid(device))
    rc = -MIM_ERR_MALFORMED;
  else if (!l->cfg.dev_auth)
    rc = mim_token_verify(l->cfg.secret, l->cfg.secret_len,
                          p->token ? p->token : "", p->uid, device,
                          r.ts / 1000, &expires_at);
  if (rc == 0)
    rc = login(l, c, p->uid, device, p->caps, expires_at, &last);
  if (rc < 0) {
    r.status = mim_err_wire_code(rc);
    r.text = mim_strerror(rc);
  } else {
    r.text = "ok";
    r.last_inbox_seq = last;
    r.ack_seq = c->cursor;
    r.caps = c->caps;
  }
  struct slot *s = mim__logic_slot_push(c);
  if (s == NULL)
    return;
  mim__logic_slot_set_packet(s, &r);
  /* only a login that succeeded tells the gateway who this is: the
   * gateway never learns identity from what the client asked */
  s->session_after = rc == 0;
  mim__logic_conn_flush(l, c);
}

int mim_logic_session_restore(struct mim_logic *l, struct mim_conn_ref conn,
                              const char *uid, const char *device,
                              uint32_t caps, const uint8_t *ticket,
                              size_t ticket_len) {
  ssize_t gi = gateway_index(l, conn.gateway);
  if (gi < 0)
    return -ENOENT;
  if (device == NULL || device[0] == '\0')
    device = MIM_DEFAULT_DEVICE;
  /* a connection the logic knows is live on this link (restored already,
   * or it sent requests): a second claim on it is refused, never merged */
  if (mim__logic_conn_find(l, conn) != NULL)
    return -EEXIST;
  int rc = 0;
  if (!mim_id_valid(uid) || !mim_id_valid(device))
    rc = -EINVAL;
  struct mim_ticket t = {
      .gateway_id = l->gateways[gi].name,
      .conn_id = conn.conn_id,
      .uid = uid,
      .device = device,
      .caps = caps,
  };
  if (rc == 0)
    rc = mim_ticket_verify(l->ticket_key, sizeof l->ticket_key, ticket,
                           ticket_len, &t, mim__logic_now(l) / 1000);
  if (rc < 0) {
    /* nothing is restored; the client learns it must log in again */
    mim__logic_emit_kick(l, conn, MIM_KICK_TOKEN_EXPIRED,
                         rc == -EINVAL ? NULL : uid,
                         rc == -MIM_ERR_TOKEN_EXPIRED
                             ? "login token expired"
                             : "session not restored: log in again");
    return rc;
  }
  struct find_device f = {.device = device};
  mim_sessions_foreach_device(l->sessions, uid, match_device, &f);
  if (f.found) {
    /* a login that reached us first is newer than this leftover */
    mim__logic_emit_kick(l, conn, MIM_KICK_OTHER_LOGIN, uid,
                         "logged in from another connection");
    return 0;
  }
  struct conn *c = mim__logic_conn_get(l, conn);
  if (c == NULL)
    return -ENOMEM;
  uint64_t last;
  rc = login(l, c, uid, device, caps, t.expires_at, &last);
  if (rc < 0)
    mim__logic_conn_drop(l, c);
  return rc;
}

/* ---- sends ---- */

/* Token bucket per connection; refills lazily. */
static bool rate_ok(struct mim_logic *l, struct conn *c) {
  if (l->cfg.rate_per_sec == 0)
    return true;
  int64_t now = mim__logic_now(l);
  int64_t cap = (int64_t)l->cfg.rate_burst * 1000;
  if (cap <= 0)
    cap = (int64_t)l->cfg.rate_per_sec * 1000;
  if (now > c->refilled_at) {
    c->tokens_milli += (now - c->refilled_at) * l->cfg.rate_per_sec;
    if (c->tokens_milli > cap)
      c->tokens_milli = cap;
    c->refilled_at = now;
  }
  if (c->tokens_milli < 1000)
    return false;
  c->tokens_milli -= 1000;
  return true;
}

static size_t strlen0(const char *s) { return s ? strlen(s) : 0; }

/* Queues message `m` for the open batch, answered to `c` (in `slot`, or
 * a new slot when NULL) or to an admin request. A retry of a message
 * still in flight joins it. `weight`: the store writes it makes, counted
 * against the batch budget. */
static int queue_message(struct mim_logic *l, struct conn *c, int64_t req_seq,
                         uint32_t req_cmd, const struct mim_message_in *m,
                         bool admin, uint64_t req_id, struct slot *slot,
                         uint64_t weight) {
  char key[MIM_ID_MAX + 1 + MIM_CLIENT_MSG_ID_MAX + 1];
  size_t key_len = 0;
  struct pending *p = NULL;
  bool has_cmid = m->client_msg_id != NULL && m->client_msg_id[0] != '\0';
  if (has_cmid) {
    key_len = mim__key_pair(key, m->sender, m->client_msg_id);
    p = mim__logic_inflight_find(l, key, key_len);
  }
  if (p != NULL) {
    /* a retry of a message not yet committed: it shares the outcome if it
     * is the same message */
    struct mim_write_op op;
    struct mim_write_batch *b = p->in_open ? l->open : l->out;
    if (b == NULL || mim_write_batch_op(b, p->op_index, &op) < 0 ||
        !mim__message_same(op.message, m))
      return -MIM_ERR_DEDUP_CONFLICT;
  } else {
    /* clients wait for room (parked) before they get here; an operator's
     * push is bounded by group_request_members_max and goes in */
    if (mim_write_batch_count(l->open) >= l->cfg.batch_max_ops)
      return -MIM_ERR_BUSY;
    size_t idx;
    int rc = mim_write_batch_add_message(l->open, m, &idx);
    if (rc < 0)
      return rc;
    mim__logic_batch_charge(l, c, weight);
    p = mim__logic_pending_new(l, PENDING_SEND, idx);
    if (p == NULL)
      return -ENOMEM; /* the op commits unanswered; a retry dedups */
    p->req_cmd = req_cmd;
    p->in_open = true;
    if (c != NULL) {
      p->sender_conn = c->ref;
      p->has_sender_conn = true;
    }
    /* Out of memory here only loses the in-flight join: a retry queued
     * before the commit becomes its own op, and the store's dedup (the same
     * rule, mim__message_same) answers it as a duplicate or a conflict.
     * The op is already in the batch, so failing the send would be wrong. */
    if (has_cmid && mim__logic_inflight_add(l, p, key, key_len) < 0)
      mim__warn("logic: out of memory for the in-flight dedup entry");
  }
  if (admin)
    return mim__logic_waiter_add_admin(p, req_id);
  struct slot *s = slot != NULL ? slot : mim__logic_slot_push(c);
  if (s == NULL)
    return -ENOMEM;
  s->state = SLOT_WAITING;
  int rc = mim__logic_waiter_add(p, c, s, req_seq);
  if (rc < 0)
    s->state = SLOT_SILENT;
  return 0;
}

static int check_send(struct mim_logic *l, const struct mim_packet *p) {
  if (strlen0(p->content) + p->payload_len > l->cfg.content_max)
    return -MIM_ERR_TOO_LARGE;
  if (strlen0(p->client_msg_id) > MIM_CLIENT_MSG_ID_MAX)
    return -MIM_ERR_MALFORMED;
  /* stored text goes back out in `string` fields: one invalid byte would
   * make every strict reader fail on every page that holds it */
  if (!mim_utf8_valid(p->content, strlen0(p->content)) ||
      !mim_utf8_valid(p->client_msg_id, strlen0(p->client_msg_id)))
    return -MIM_ERR_BAD_UTF8;
  if (p->type != MIM_MSG_TEXT && p->type != MIM_MSG_CUSTOM)
    return -MIM_ERR_FORBIDDEN; /* system and push types are the server's */
  return 0;
}

/* Queues a checked send of `c` for the open batch (reply in `slot`, or a
 * new one when NULL). */
static int send_message(struct mim_logic *l, struct conn *c,
                        const struct mim_packet *p, struct slot *slot,
                        uint64_t weight) {
  bool c2c = p->cmd == MIM_CMD_C2C_SEND_REQ;
  const char *target = c2c ? p->to : p->group;
  struct mim_message_in m = {
      .type = p->type,
      .conv_kind = c2c ? MIM_CONV_C2C : MIM_CONV_GROUP,
      .sender = c->uid, /* never the client's `from` */
      .sender_device = c->device,
      .peer = c2c ? target : NULL,
      .group = c2c ? NULL : target,
      .client_msg_id = p->client_msg_id,
      .content = (const uint8_t *)(p->content ? p->content : ""),
      .content_len = strlen0(p->content),
      .server_time = mim__logic_now(l),
  };
  int rc = queue_message(l, c, p->seq, p->cmd, &m, false, 0, slot, weight);
  if (rc == 0 && !c2c)
    mim__logic_group_joined(l, target);
  return rc;
}

static int handle_send(struct mim_logic *l, struct conn *c,
                       const struct mim_packet *p, const uint8_t *body,
                       size_t len) {
  bool c2c = p->cmd == MIM_CMD_C2C_SEND_REQ;
  const char *target = c2c ? p->to : p->group;
  if (!mim_id_valid(target))
    return -MIM_ERR_MALFORMED;
  int rc = check_send(l, p);
  if (rc < 0)
    return rc;
  if (!rate_ok(l, c))
    return -MIM_ERR_RATE_LIMITED;
  /* one group message is one store write per member */
  uint64_t weight = c2c ? 1 : mim__logic_group_weight(l, target, c->uid);
  if (!mim__logic_batch_room(l, c, weight))
    return mim__logic_park(l, c, p->cmd, body, len, weight,
                           c2c ? NULL : target, NULL);
  return send_message(l, c, p, NULL, weight);
}

/* ---- acks ---- */

static void handle_ack(struct mim_logic *l, struct conn *c,
                       const struct mim_packet *p) {
  if (p->inbox_seq > 0)
    mim__logic_cursor_raise(l, c, p->inbox_seq);
  else if (p->msg_id > 0)
    mim__logic_cursor_raise(l, c, mim__logic_ring_ack_msg(c, p->msg_id));
}

/* ---- groups ---- */

static int group_members_valid(const struct mim_logic *l,
                               const struct mim_packet *p) {
  if (!mim_id_valid(p->group))
    return -MIM_ERR_MALFORMED;
  /* before anything else looks at the list */
  if (p->n_members > l->cfg.group_request_members_max)
    return -MIM_ERR_TOO_LARGE;
  for (size_t i = 0; i < p->n_members; i++)
    if (!mim_id_valid(p->members[i]))
      return -MIM_ERR_MALFORMED;
  return 0;
}

/* Queues a group change. `slot` is the request's place in the reply order
 * when it was deferred or parked; NULL pushes a new one. A client's change
 * that does not fit the open batch is parked (request `body`, `len`)
 * unless it was `admitted` from there. */
static int queue_group(struct mim_logic *l, struct conn *c,
                       const struct mim_packet *p, bool admin,
                       uint64_t req_id, struct slot *slot,
                       const uint8_t *body, size_t len, bool admitted) {
  int rc = group_members_valid(l, p);
  if (rc < 0)
    return rc;
  enum mim_write_op_kind kind = p->cmd == MIM_CMD_GROUP_CREATE_REQ
                                    ? MIM_OP_GROUP_CREATE
                                    : p->cmd == MIM_CMD_GROUP_ADD_REQ
                                          ? MIM_OP_GROUP_ADD
                                          : MIM_OP_GROUP_REMOVE;
  const char **members = (const char **)p->members;
  size_t n = p->n_members;
  const char **with_creator = NULL;
  if (!admin) {
    struct mim_backend *be = l->cfg.backend;
    uint64_t joined;
    if (kind != MIM_OP_GROUP_CREATE) {
      /* members manage the group; anyone else learns nothing about it */
      rc = be->ops->member_get(be->impl, p->group, c->uid, &joined);
      if (rc < 0)
        return rc == -MIM_ERR_NO_SUCH_GROUP ? -MIM_ERR_NOT_MEMBER : rc;
      if (kind == MIM_OP_GROUP_REMOVE)
        for (size_t i = 0; i < n; i++)
          if (strcmp(members[i], c->uid) != 0)
            return -MIM_ERR_FORBIDDEN; /* members may only leave */
    } else {
      /* the creator is always a member of what they create */
      with_creator = malloc((n + 1) * sizeof *with_creator);
      if (with_creator == NULL)
        return -ENOMEM;
      with_creator[0] = c->uid;
      size_t k = 1;
      for (size_t i = 0; i < n; i++)
        if (strcmp(members[i], c->uid) != 0)
          with_creator[k++] = members[i];
      members = with_creator;
      n = k;
    }
  }
  if (n == 0 && kind != MIM_OP_GROUP_CREATE) {
    free(with_creator);
    return -MIM_ERR_MALFORMED;
  }
  /* one store write per member named (and the group's own for a create) */
  if (!admin && !admitted && !mim__logic_batch_room(l, c, n + 1)) {
    free(with_creator);
    return mim__logic_park(l, c, p->cmd, body, len, n + 1, NULL, slot);
  }
  size_t idx;
  rc = mim_write_batch_add_group(l->open, kind, p->group,
                                 (const char *const *)members, n,
                                 mim__logic_now(l), &idx);
  free(with_creator);
  if (rc < 0)
    return rc;
  mim__logic_batch_charge(l, admin ? NULL : c, n + 1);
  struct pending *pd = mim__logic_pending_new(l, PENDING_GROUP, idx);
  if (pd == NULL)
    return -ENOMEM;
  pd->req_cmd = p->cmd;
  if (admin)
    return mim__logic_waiter_add_admin(pd, req_id);
  struct slot *s = slot != NULL ? slot : mim__logic_slot_push(c);
  if (s == NULL)
    return -ENOMEM;
  s->state = SLOT_WAITING;
  if (mim__logic_waiter_add(pd, c, s, p->seq) < 0)
    s->state = SLOT_SILENT;
  return 0;
}

struct member_collect {
  const char **uids;
  size_t n, cap;
  int err;
};

static void collect_member(void *user, const struct mim_group_member *m) {
  struct member_collect *mc = user;
  if (mc->err < 0)
    return;
  if (mc->n == mc->cap) {
    size_t cap = mc->cap ? mc->cap * 2 : 16;
    const char **u = realloc(mc->uids, cap * sizeof *u);
    if (u == NULL) {
      mc->err = -ENOMEM;
      return;
    }
    mc->uids = u;
    mc->cap = cap;
  }
  char *d = strdup(m->uid);
  if (d == NULL) {
    mc->err = -ENOMEM;
    return;
  }
  mc->uids[mc->n++] = d;
}

static void member_collect_finish(struct member_collect *mc) {
  for (size_t i = 0; i < mc->n; i++)
    free((char *)mc->uids[i]);
  free(mc->uids);
}

/* GROUP_LIST: `viewer` NULL = admin. */
static int read_group_list(struct mim_logic *l, const char *viewer,
                           const struct mim_packet *p, struct mim_packet *r,
                           struct member_collect *mc) {
  struct mim_backend *be = l->cfg.backend;
  if (!mim_id_valid(p->group))
    return -MIM_ERR_MALFORMED;
  if (viewer != NULL) {
    uint64_t joined;
    int rc = be->ops->member_get(be->impl, p->group, viewer, &joined);
    if (rc < 0)
      return rc == -MIM_ERR_NO_SUCH_GROUP ? -MIM_ERR_NOT_MEMBER : rc;
  }
  int rc = be->ops->members_list(be->impl, p->group, collect_member, mc);
  if (rc == 0)
    rc = mc->err;
  if (rc < 0)
    return rc;
  r->cmd = MIM_CMD_GROUP_LIST_RSP;
  r->group = p->group;
  r->members = mc->uids;
  r->n_members = mc->n;
  return 0;
}

/* ---- reads: pull, history, group list ---- */

static int items_from(const struct mim_message_list *ml,
                      struct mim_pull_item **out) {
  struct mim_pull_item *items = calloc(ml->count + 1, sizeof *items);
  if (items == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < ml->count; i++) {
    const struct mim_message *m = &ml->items[i];
    items[i].from = m->sender;
    items[i].to = m->peer;
    items[i].group = m->group;
    /* content is stored NUL-terminated (store.h) */
    items[i].content = (const char *)m->content;
    items[i].client_msg_id = m->client_msg_id;
    items[i].payload = m->payload;
    items[i].payload_len = m->payload_len;
    items[i].msg_id = m->msg_id;
    items[i].send_time = m->server_time;
    items[i].inbox_seq = m->inbox_seq;
    items[i].conv_seq = m->conv_seq;
    items[i].type = m->type;
  }
  *out = items;
  return 0;
}

/* A bound on what `it` adds to an encoded reply: its variable fields plus
 * MIM_REPLY_ENTRY_OVERHEAD for tags, lengths and numbers. */
static size_t item_bytes(const struct mim_pull_item *it) {
  return strlen0(it->from) + strlen0(it->to) + strlen0(it->group) +
         strlen0(it->content) + strlen0(it->client_msg_id) + it->payload_len +
         MIM_REPLY_ENTRY_OVERHEAD;
}

/* Keeps the first entries of `r` that fit reply_bytes_max, at least one,
 * and says has_more when some were left out. Returns how many are kept. */
static size_t cap_bytes(const struct mim_logic *l, struct mim_packet *r) {
  size_t total = MIM_REPLY_OVERHEAD, n = 0;
  while (n < r->n_items) {
    size_t b = item_bytes(&r->items[n]);
    if (n > 0 && total + b > l->cfg.reply_bytes_max)
      break;
    total += b;
    n++;
  }
  if (n < r->n_items) {
    r->n_items = n;
    r->has_more = true;
  }
  return n;
}

static uint32_t clamp_limit(const struct mim_logic *l, int32_t limit) {
  if (limit <= 0)
    return l->cfg.pull_limit_default;
  return (uint32_t)limit > l->cfg.pull_limit_max ? l->cfg.pull_limit_max
                                                 : (uint32_t)limit;
}

/* Reads `uid`'s inbox after `from` into `r`, keeping only msg_id > min_id
 * (seed pulls "after msg_id": inbox order is commit order, so msg_ids rise
 * along it). */
static int read_inbox(struct mim_logic *l, const char *uid, uint64_t from,
                      uint64_t min_id, uint32_t limit,
                      struct mim_message_list *ml, struct mim_packet *r,
                      struct mim_pull_item **items, uint64_t *read_upto) {
  struct mim_backend *be = l->cfg.backend;
  int rc = be->ops->read_inbox(be->impl, uid, from, limit, ml);
  if (rc < 0)
    return rc;
  /* the last entry read, kept or filtered out: where the next page starts */
  *read_upto = ml->count > 0 ? ml->items[ml->count - 1].inbox_seq : from;
  if (min_id > 0) {
    size_t k = 0;
    for (size_t i = 0; i < ml->count; i++)
      if (ml->items[i].msg_id > min_id)
        ml->items[k++] = ml->items[i];
    ml->count = k;
  }
  uint64_t last = 0;
  if ((rc = be->ops->inbox_last_seq(be->impl, uid, &last)) < 0)
    return rc;
  if ((rc = items_from(ml, items)) < 0)
    return rc;
  r->cmd = MIM_CMD_PULL_RSP;
  r->items = *items;
  r->n_items = ml->count;
  r->has_more = ml->has_more;
  r->last_inbox_seq = last;
  r->ts = mim__logic_now(l);
  size_t kept = cap_bytes(l, r);
  if (kept < ml->count)
    *read_upto = ml->items[kept - 1].inbox_seq; /* the rest comes next */
  return 0;
}

static int do_pull(struct mim_logic *l, struct conn *c,
                   const struct mim_packet *p, struct mim_message_list *ml,
                   struct mim_packet *r, struct mim_pull_item **items) {
  uint64_t from;
  if (p->has_after_seq) {
    from = p->after_seq;
    mim__logic_cursor_raise(l, c, p->after_seq);
  } else {
    /* seed pull: from the cursor, and past whatever this connection was
     * already handed, which it evidently received since it asks again */
    if (c->pulled_upto > c->cursor)
      mim__logic_cursor_raise(l, c, c->pulled_upto);
    from = c->pulled_upto > c->cursor ? c->pulled_upto : c->cursor;
  }
  uint64_t upto;
  int rc = read_inbox(l, c->uid, from, p->has_after_seq ? 0 : p->msg_id,
                      clamp_limit(l, p->limit), ml, r, items, &upto);
  if (rc < 0)
    return rc;
  if (r->last_inbox_seq > c->seen_max)
    c->seen_max = r->last_inbox_seq;
  if (!p->has_after_seq)
    c->pulled_upto = upto;
  return 0;
}

static int do_history(struct mim_logic *l, const char *viewer,
                      const struct mim_packet *p, struct mim_message_list *ml,
                      struct mim_packet *r, struct mim_pull_item **items) {
  struct mim_backend *be = l->cfg.backend;
  uint32_t limit = clamp_limit(l, p->limit);
  int rc;
  if (p->group != NULL && p->group[0] != '\0') {
    if (!mim_id_valid(p->group))
      return -MIM_ERR_MALFORMED;
    uint64_t joined = 0;
    if (viewer != NULL) {
      rc = be->ops->member_get(be->impl, p->group, viewer, &joined);
      if (rc < 0)
        return rc == -MIM_ERR_NO_SUCH_GROUP ? -MIM_ERR_NOT_MEMBER : rc;
    }
    /* a member sees the group from the point they joined */
    rc = be->ops->read_conversation(be->impl, NULL, NULL, p->group,
                                    p->before_conv_seq, joined, limit, ml);
  } else if (mim_id_valid(p->peer)) {
    rc = be->ops->read_conversation(be->impl, viewer, p->peer, NULL,
                                    p->before_conv_seq, 0, limit, ml);
  } else {
    return -MIM_ERR_MALFORMED;
  }
  if (rc < 0)
    return rc;
  if ((rc = items_from(ml, items)) < 0)
    return rc;
  for (size_t i = 0; i < ml->count; i++)
    (*items)[i].inbox_seq = 0;
  r->cmd = MIM_CMD_HISTORY_RSP;
  r->items = *items;
  r->n_items = ml->count;
  r->has_more = ml->has_more;
  r->ts = mim__logic_now(l);
  cap_bytes(l, r);
  return 0;
}

void mim__logic_run_deferred(struct mim_logic *l, struct conn *c, uint32_t cmd,
                         const uint8_t *body, size_t len, struct slot *s) {
  struct mim_packet p, r;
  struct mim_message_list ml;
  struct member_collect mc = {0};
  struct mim_pull_item *items = NULL;
  bool queued = false;
  mim_packet_init(&p);
  mim_packet_init(&r);
  mim_message_list_init(&ml);
  int rc = mim_packet_decode(&p, cmd, body, len);
  if (rc == 0 && !c->authed)
    rc = -MIM_ERR_UNAUTHENTICATED; /* kicked while this waited */
  if (rc == 0) {
    switch (cmd) {
    case MIM_CMD_LOGOUT_REQ:
      mim__logic_conn_unauth(l, c);
      s->session_after = true; /* the gateway hears "unbound" after it */
      r.cmd = MIM_CMD_LOGOUT_RSP;
      r.ts = mim__logic_now(l);
      break;
    case MIM_CMD_GROUP_ADD_REQ:
    case MIM_CMD_GROUP_REMOVE_REQ:
      /* its permission check now sees this connection's earlier writes;
       * on success the slot waits for the commit */
      rc = queue_group(l, c, &p, false, 0, s, body, len, false);
      queued = rc == 0;
      break;
    case MIM_CMD_PULL_REQ:
      rc = do_pull(l, c, &p, &ml, &r, &items);
      break;
    case MIM_CMD_HISTORY_REQ:
      rc = do_history(l, c->uid, &p, &ml, &r, &items);
      break;
    default:
      rc = read_group_list(l, c->uid, &p, &r, &mc);
      break;
    }
  }
  if (rc < 0) {
    mim__logic_slot_set_error(s, cmd, p.seq, rc);
  } else if (!queued) {
    r.seq = p.seq;
    mim__logic_slot_set_packet(s, &r);
  }
  free(items);
  member_collect_finish(&mc);
  mim_message_list_finish(&ml);
  mim_packet_finish(&p);
}

/* Queues a request behind the connection's earlier ones, to run when they
 * are answered: a client that sends and then pulls sees its own message, a
 * group it just created can be changed, a logout ends the session after
 * everything before it. */
static int queue_read(struct mim_logic *l, struct conn *c, uint32_t cmd,
                      const uint8_t *body, size_t len) {
  /* the body waits in the slot: a pull, history or group list needs a few
   * hundred bytes, so 256 queued ones hold at most 1 MiB */
  if (len > READ_REQ_MAX &&
      (cmd == MIM_CMD_PULL_REQ || cmd == MIM_CMD_HISTORY_REQ ||
       cmd == MIM_CMD_GROUP_LIST_REQ))
    return -MIM_ERR_MALFORMED;
  struct slot *s = mim__logic_slot_push(c);
  if (s == NULL)
    return -ENOMEM;
  s->body = malloc(len + 1);
  if (s->body == NULL) {
    s->state = SLOT_SILENT;
    return -ENOMEM;
  }
  if (len > 0)
    memcpy(s->body, body, len);
  s->body_len = len;
  s->cmd = cmd;
  s->state = SLOT_DEFERRED;
  mim__logic_conn_flush(l, c);
  return 0;
}

void mim__logic_run_parked(struct mim_logic *l, struct conn *c, uint32_t cmd,
                           const uint8_t *body, size_t len, struct slot *s) {
  struct mim_packet p;
  mim_packet_init(&p);
  int rc = mim_packet_decode(&p, cmd, body, len);
  if (rc == 0 && !c->authed)
    rc = -MIM_ERR_UNAUTHENTICATED; /* kicked while this waited */
  if (rc == 0) {
    if (cmd == MIM_CMD_C2C_SEND_REQ || cmd == MIM_CMD_C2G_SEND_REQ)
      rc = send_message(l, c, &p, s, s->weight);
    else
      rc = queue_group(l, c, &p, false, 0, s, body, len, true);
  }
  if (rc < 0)
    mim__logic_slot_set_error(s, cmd, p.seq, rc);
  mim_packet_finish(&p);
}

/* ---- dispatch ---- */

/* Handles an authenticated request; returns an error to answer with. */
static int dispatch(struct mim_logic *l, struct conn *c,
                    const struct mim_packet *p, const uint8_t *body,
                    size_t len) {
  switch (p->cmd) {
  case MIM_CMD_LOGOUT_REQ:
    /* takes effect in order: requests before it still run as this user,
     * requests after it are refused */
    c->logging_out = true;
    return queue_read(l, c, p->cmd, body, len);
  case MIM_CMD_C2C_SEND_REQ:
  case MIM_CMD_C2G_SEND_REQ:
    return handle_send(l, c, p, body, len);
  case MIM_CMD_C2C_PUSH_ACK:
  case MIM_CMD_C2G_PUSH_ACK:
  case MIM_CMD_SERVER_PUSH_ACK:
    handle_ack(l, c, p);
    return 0;
  case MIM_CMD_PULL_REQ:
  case MIM_CMD_HISTORY_REQ:
  case MIM_CMD_GROUP_LIST_REQ:
    return queue_read(l, c, p->cmd, body, len);
  case MIM_CMD_GROUP_CREATE_REQ:
    return queue_group(l, c, p, false, 0, NULL, body, len, false);
  case MIM_CMD_GROUP_ADD_REQ:
  case MIM_CMD_GROUP_REMOVE_REQ:
    return queue_read(l, c, p->cmd, body, len); /* checks membership first */
  case MIM_CMD_SERVER_PUSH:
    return -MIM_ERR_FORBIDDEN; /* operators push, clients do not */
  default:
    return -MIM_ERR_UNKNOWN_CMD; /* a server-to-client command */
  }
}

int mim_logic_receive(struct mim_logic *l, struct mim_conn_ref ref,
                      uint32_t cmd, const uint8_t *body, size_t len) {
  if (gateway_index(l, ref.gateway) < 0)
    return -ENOENT;
  struct conn *c = mim__logic_conn_get(l, ref);
  if (c == NULL)
    return -ENOMEM;
  if (c->n_slots >= 2 * (size_t)l->cfg.conn_pending_max) {
    /* it ignores BUSY errors: stop feeding it */
    mim__logic_emit_kick(l, ref, MIM_KICK_SLOW, c->uid, "too many requests");
    mim__logic_conn_drop(l, c);
    return 0;
  }
  if (c->authed && c->expires_at != 0 &&
      session_expired(c, mim__logic_now(l)))
    expire(l, c); /* before the tick gets to it: refused from now on */
  struct mim_packet p;
  mim_packet_init(&p);
  int rc = mim_packet_decode(&p, cmd, body, len);
  if (rc < 0) {
    mim__logic_reply_error(l, c, cmd, 0, rc);
    return 0;
  }
  if (c->n_slots >= l->cfg.conn_pending_max && cmd != MIM_CMD_C2C_PUSH_ACK &&
      cmd != MIM_CMD_C2G_PUSH_ACK && cmd != MIM_CMD_SERVER_PUSH_ACK) {
    mim__logic_reply_error(l, c, cmd, p.seq, -MIM_ERR_BUSY);
  } else if (cmd == MIM_CMD_HEARTBEAT_REQ) {
    struct mim_packet r;
    mim_packet_init(&r);
    r.cmd = MIM_CMD_HEARTBEAT_RSP;
    mim__logic_reply(l, c, &r);
  } else if (cmd == MIM_CMD_AUTH_REQ) {
    handle_auth(l, c, &p);
  } else if (!c->authed || c->logging_out) {
    mim__logic_reply_error(l, c, cmd, p.seq, -MIM_ERR_UNAUTHENTICATED);
  } else if ((rc = dispatch(l, c, &p, body, len)) < 0) {
    mim__logic_reply_error(l, c, cmd, p.seq, rc);
  }
  mim_packet_finish(&p);
  return 0;
}

/* ---- operators ---- */

static int admin_reply_error(struct mim_logic *l, uint64_t req_id,
                             uint32_t cmd, int err) {
  struct mim_packet e;
  mim_error_packet_init(&e, err, cmd, 0);
  return mim__logic_emit_admin(l, req_id, &e);
}

static int admin_server_push(struct mim_logic *l, uint64_t req_id,
                             const struct mim_packet *p) {
  const char *one[1];
  const char *const *to = p->members;
  size_t n = p->n_members;
  if (p->to != NULL && p->to[0] != '\0') {
    one[0] = p->to;
    to = one;
    n = 1;
  }
  if (n == 0)
    return -MIM_ERR_MALFORMED;
  if (n > l->cfg.group_request_members_max)
    return -MIM_ERR_TOO_LARGE;
  for (size_t i = 0; i < n; i++)
    if (!mim_id_valid(to[i]))
      return -MIM_ERR_MALFORMED;
  if (strlen0(p->content) + p->payload_len > l->cfg.content_max)
    return -MIM_ERR_TOO_LARGE;
  if (!mim_utf8_valid(p->content, strlen0(p->content)) ||
      !mim_utf8_valid(p->from, strlen0(p->from)))
    return -MIM_ERR_BAD_UTF8;
  struct mim_message_in m = {
      .type = MIM_MSG_PUSH,
      .conv_kind = MIM_CONV_PUSH,
      .sender = p->from ? p->from : "",
      .sender_device = "",
      .content = (const uint8_t *)(p->content ? p->content : ""),
      .content_len = strlen0(p->content),
      .payload = p->payload,
      .payload_len = p->payload_len,
      .server_time = mim__logic_now(l),
      .recipients = to,
      .n_recipients = n,
  };
  return queue_message(l, NULL, 0, MIM_CMD_SERVER_PUSH, &m, true, req_id,
                       NULL, n);
}

int mim_logic_admin(struct mim_logic *l, uint64_t req_id, uint32_t cmd,
                    const uint8_t *body, size_t len) {
  struct mim_packet p, r;
  struct mim_message_list ml;
  struct member_collect mc = {0};
  struct mim_pull_item *items = NULL;
  mim_packet_init(&p);
  mim_packet_init(&r);
  mim_message_list_init(&ml);
  int rc = mim_packet_decode(&p, cmd, body, len);
  if (rc == 0) {
    switch (cmd) {
    case MIM_CMD_GROUP_CREATE_REQ:
    case MIM_CMD_GROUP_ADD_REQ:
    case MIM_CMD_GROUP_REMOVE_REQ:
      rc = queue_group(l, NULL, &p, true, req_id, NULL, NULL, 0, false);
      break;
    case MIM_CMD_SERVER_PUSH:
      rc = admin_server_push(l, req_id, &p);
      break;
    case MIM_CMD_GROUP_LIST_REQ:
      if ((rc = read_group_list(l, NULL, &p, &r, &mc)) == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_HISTORY_REQ: /* a group's, or `uid`'s with `peer` */
      if (p.group[0] == '\0' && !mim_id_valid(p.uid))
        rc = -MIM_ERR_MALFORMED;
      else
        rc = do_history(l, p.group[0] ? NULL : p.uid, &p, &ml, &r, &items);
      if (rc == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_PULL_REQ: /* read-only: moves no cursor */
      rc = mim_id_valid(p.uid) ? 0 : -MIM_ERR_MALFORMED;
      uint64_t upto;
      if (rc == 0)
        rc = read_inbox(l, p.uid, p.after_seq, 0, clamp_limit(l, p.limit),
                        &ml, &r, &items, &upto);
      if (rc == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    default:
      rc = -MIM_ERR_UNKNOWN_CMD;
      break;
    }
  }
  /* a failed request is answered with an Error; only when not even that
   * could be queued does the caller hear of it */
  int out = rc < 0 ? admin_reply_error(l, req_id, cmd, rc) : 0;
  free(items);
  member_collect_finish(&mc);
  mim_message_list_finish(&ml);
  mim_packet_finish(&p);
  return out;
}
