/* Authentication: logins, restored sessions, and token expiry of live
 * connections. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <mim/auth.h>

/* A token expiry (unix seconds) in ms; a token may say up to 2^63-1 s,
 * which as ms is past the end of time: never. */
static int64_t expiry_ms(int64_t expires_at) {
  return expires_at > INT64_MAX / 1000 ? INT64_MAX : expires_at * 1000;
}

bool mim__logic_session_expired(const struct conn *c, int64_t now_ms) {
  return c->authed && c->expires_at != 0 && expiry_ms(c->expires_at) <= now_ms;
}

/* Ends a session whose token has expired: the client is told why and the
 * gateway closes it (and forgets the session). */
void mim__logic_expire(struct mim_logic *l, struct conn *c) {
  mim__log_to(&l->log, MIM_LOG_DEBUG, "conn %llu: token of %s/%s expired",
             (unsigned long long)c->ref.conn_id, c->uid, c->device);
  mim__logic_emit_kick(l, c->ref, MIM_KICK_TOKEN_EXPIRED, c->uid,
                       "login token expired");
  mim__logic_conn_unauth(l, c);
}


void mim__logic_expiry_visit(void *user, struct mim__hnode *n) {
  struct expiry_scan *x = user;
  struct conn *c = mim__container_of(n, struct conn, node);
  if (!c->authed || c->expires_at == 0)
    return;
  if (mim__logic_session_expired(c, x->now)) {
    mim__logic_expire(x->l, c); /* unauth keeps `c` in the table: safe while walking */
    return;
  }
  int64_t at = expiry_ms(c->expires_at);
  if (x->next == 0 || at < x->next)
    x->next = at;
}

static void expiry_note(struct mim_logic *l, int64_t expires_at) {
  if (expires_at == 0)
    return;
  int64_t at = expiry_ms(expires_at);
  if (l->next_expiry_ms == 0 || at < l->next_expiry_ms)
    l->next_expiry_ms = at;
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
 * kicked. Reads the device's cursor: logging in writes nothing. A
 * MIM_CAP_TRANSIENT session takes no route: it kicks nobody and gets no
 * pushes. */
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
  caps &= MIM__CAPS_GRANTED;
  if ((caps & MIM_CAP_TRANSIENT) == 0)
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
  c->caps = caps;
  c->expires_at = expires_at;
  expiry_note(l, expires_at);
  c->cursor = cursor;
  c->pulled_upto = 0;
  c->seen_max = last > cursor ? last : cursor;
  if (!replaced) /* a replaced device was online already */
    mim__logic_presence_changed(l, uid, device, true);
  if (c->ring == NULL && l->cfg.inflight_push_max > 0) {
    c->ring = calloc(l->cfg.inflight_push_max, sizeof *c->ring);
    c->ring_cap = c->ring ? l->cfg.inflight_push_max : 0;
  }
  mim__logic_ring_clear(c);
  mim__logic_large_login(l, c);
  *last_seq = last;
  return 0;
}

void mim__logic_handle_auth(struct mim_logic *l, struct conn *c,
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
  int64_t expires_at = 0; /* development tokens never mim__logic_expire */
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
    l->stats.logins_failed++;
    if (r.status >= MIM_ERR__FIRST &&
        r.status - MIM_ERR__FIRST < MIM_STATS_ERR_CODES)
      l->stats.logins_failed_by_code[r.status - MIM_ERR__FIRST]++;
  } else {
    l->stats.logins_ok++;
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
  ssize_t gi = mim__logic_gateway_index(l, conn.gateway);
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
  if (f.found && (caps & MIM_CAP_TRANSIENT) == 0) {
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
