/* Frames from the links into the logic: the HELLO handshake, then
 * gateway requests, session restores, closed connections and admin
 * requests (docs/rpc.md). */
#include "rpc_in.h"

#include "rpc_out.h"
#include "rpc_server_internal.h"

#include "log.h"

#include <mim/auth.h>
#include <mim/rpc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void send_hello_ack(struct link *k, int err, const char *msg) {
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_HELLO_ACK;
  r.status = mim_err_wire_code(err);
  r.text = msg;
  (void)rpc_send(k, &r);
}

/* Constant-time in the configured secret: the loop always runs over all of
 * it, whatever the peer sent. An empty `want` accepts anything. */
static bool same_secret(const char *want, size_t want_len, const char *given) {
  if (want_len == 0)
    return true;
  size_t glen = given != NULL ? strlen(given) : 0;
  volatile unsigned char diff = glen != want_len;
  for (size_t i = 0; i < want_len; i++) {
    unsigned char g = i < glen ? (unsigned char)given[i] : 0;
    diff |= (unsigned char)(g ^ (unsigned char)want[i]);
  }
  return diff == 0;
}

static bool secret_ok(const struct server *s, const char *given) {
  return same_secret(s->rpc_secret, s->rpc_secret_len, given);
}

/* Operator rights come from where the link came in and what it proves, never
 * from the name it gives: the admin socket (file mode 0600, plus
 * admin_secret when one is set), or admin_secret on the RPC listener. A
 * gateway host holds rpc_secret, which grants nothing here. Returns NULL if
 * the link may be an admin link, else why not. */
static const char *admin_refusal(const struct server *s,
                                 const struct link *k, const char *given) {
  if (k->via_admin)
    return same_secret(s->admin_secret, s->admin_secret_len, given)
               ? NULL
               : "wrong admin secret";
  if (s->admin_secret_len == 0)
    return "operator links use the admin socket (admin_listen) or "
           "admin_secret; rpc_secret grants no admin rights";
  return same_secret(s->admin_secret, s->admin_secret_len, given)
             ? NULL
             : "wrong admin secret";
}

static int attach_gateway(struct server *s, struct link *k, const char *id) {
  struct link *old = rpc_find_gateway_id(s, id);
  if (old != NULL) {
    mimd_warn("gateway %s connected again from %s: dropping its old link",
              id, k->peer);
    rpc_detach(s, old);
    link_kill(old);
  }
  uint32_t h = rpc_new_handle(s);
  int rc = mim_logic_gateway_up(s->logic, h, id);
  if (rc < 0)
    return rc;
  k->role = LINK_GATEWAY;
  k->gateway = h;
  return 0;
}

static int on_hello(struct server *s, struct link *k, const struct mim_rpc *r) {
  int err = 0;
  const char *why = NULL;
  bool admin_id = r->gateway_id != NULL && strcmp(r->gateway_id, ADMIN_ID) == 0;
  if (r->version != MIM_RPC_VERSION) {
    err = -MIM_ERR_BAD_VERSION;
    why = "unsupported RPC version";
  } else if (k->via_admin && !admin_id) {
    err = -MIM_ERR_FORBIDDEN;
    why = "the admin socket is for mimctl; gateways connect to `listen`";
  } else if (admin_id) {
    why = admin_refusal(s, k, r->secret);
    if (why != NULL)
      err = -MIM_ERR_FORBIDDEN;
    else
      k->role = LINK_ADMIN;
  } else if (!secret_ok(s, r->secret)) {
    err = -MIM_ERR_FORBIDDEN;
    why = "wrong rpc secret";
  } else if (r->gateway_id == NULL || !mim_id_valid(r->gateway_id)) {
    err = -MIM_ERR_MALFORMED;
    why = "invalid gateway_id";
  } else {
    err = attach_gateway(s, k, r->gateway_id);
    why = "logic unavailable";
  }
  if (err < 0) {
    mimd_warn("%s: HELLO refused: %s", link_name(k), why);
    send_hello_ack(k, err, why);
    link_close_soon(k);
    return 0;
  }
  snprintf(k->id, sizeof k->id, "%s", r->gateway_id);
  send_hello_ack(k, 0, "ok");
  if (k->role == LINK_GATEWAY)
    mimd_info("gateway %s up (handle %u)", link_name(k),
              (unsigned)k->gateway);
  else
    mimd_info("admin link %s up", link_name(k));
  return 0;
}

static void send_pong(struct link *k, uint64_t nonce) {
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_PONG;
  r.req_id = nonce;
  (void)rpc_send(k, &r);
}

static const uint8_t *body_of(const struct mim_rpc *r) {
  static const uint8_t empty[1];
  return r->body != NULL ? r->body : empty;
}

static void on_request(struct server *s, struct link *k,
                       const struct mim_rpc *r) {
  struct mim_conn_ref c = {.gateway = k->gateway, .conn_id = r->conn_id};
  int rc = mim_logic_receive(s->logic, c, r->inner_cmd, body_of(r),
                             r->body_len);
  if (rc < 0)
    mimd_warn("%s: request dropped (conn %llu, cmd %u): %s", link_name(k),
              (unsigned long long)r->conn_id, (unsigned)r->inner_cmd,
              mim_strerror(rc));
}

/* SESSIONS may only re-register what logicd granted: each entry needs a
 * ticket logicd signed for this gateway id, conn_id, uid, device and caps,
 * whose token has not expired (mim_logic_session_restore()). A conn_id the
 * logic already knows on this link is never overwritten. */
static void on_sessions(struct server *s, struct link *k,
                        const struct mim_rpc *r) {
  size_t restored = 0, refused = 0, expired = 0;
  for (size_t i = 0; i < r->n_sessions; i++) {
    const struct mim_rpc_session *se = &r->sessions[i];
    struct mim_conn_ref c = {.gateway = k->gateway, .conn_id = se->conn_id};
    int rc = mim_logic_session_restore(s->logic, c, se->uid, se->device,
                                       se->caps, se->ticket, se->ticket_len);
    if (rc == 0) {
      restored++;
    } else if (rc == -MIM_ERR_TOKEN_EXPIRED) {
      expired++;
      mimd_debug("%s: session %llu (%s) not restored: token expired",
                 link_name(k), (unsigned long long)se->conn_id, se->uid);
    } else {
      refused++;
      /* a gateway of ours only presents tickets we granted: anything else
       * is a forgery, a changed token secret or a confused gateway */
      if (refused <= 10)
        mimd_warn("%s: session %llu (%s/%s) refused: %s", link_name(k),
                  (unsigned long long)se->conn_id, se->uid, se->device,
                  mim_strerror(rc));
    }
  }
  if (r->n_sessions > 0)
    mimd_info("%s: %zu sessions restored, %zu expired, %zu refused",
              link_name(k), restored, expired, refused);
}

static void admin_error(struct link *k, uint64_t req_id, uint32_t cmd,
                        int err) {
  struct mim_packet p;
  mim_error_packet_init(&p, err, cmd, 0);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now); /* Error.ts: the server's time */
  p.ts = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
  uint8_t body[256];
  size_t len;
  if (mim_packet_encode_body(&p, body, sizeof body, &len) < 0)
    return;
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_ADMIN_REPLY;
  r.req_id = req_id;
  r.inner_cmd = MIM_CMD_ERROR;
  r.body = body;
  r.body_len = len;
  (void)rpc_send(k, &r);
}

static void on_admin(struct server *s, struct link *k,
                     const struct mim_rpc *r) {
  struct admin_req *a = NULL;
  if (s->n_admin < ADMIN_PENDING_MAX)
    a = malloc(sizeof *a);
  if (a == NULL) {
    admin_error(k, r->req_id, r->inner_cmd, -MIM_ERR_BUSY);
    return;
  }
  *a = (struct admin_req){.next = s->admin, .id = ++s->last_admin_id,
                          .client_id = r->req_id, .link = k};
  s->admin = a;
  s->n_admin++;
  int rc = mim_logic_admin(s->logic, a->id, r->inner_cmd, body_of(r),
                           r->body_len);
  if (rc < 0) {
    free(rpc_admin_take(s, a->id));
    admin_error(k, r->req_id, r->inner_cmd, rc);
  }
}

/* Returns -1 to close the link. */
int rpc_on_frame(struct server *s, struct link *k,
                    const struct mim_frame *f) {
  uint32_t cmd = f->header.cmd;
  struct mim_rpc r;
  mim_rpc_init(&r);
  int rc = mim_rpc_decode(&r, cmd, f->body, f->header.body_len);
  if (rc < 0) {
    mimd_warn("%s: bad RPC frame (cmd %u): %s; closing", link_name(k),
              (unsigned)cmd, mim_strerror(rc));
    return -1;
  }
  const char *wrong = NULL;
  if (k->role != LINK_NEW && (cmd == MIM_RPC_PING || cmd == MIM_RPC_PONG)) {
    /* a PONG only proves the peer is alive, which on_rx already noted */
    if (cmd == MIM_RPC_PING) {
      send_pong(k, r.req_id);
      /* a peer that floods PINGs and reads nothing is paused at the mark
       * like one whose reads pile up, not cut off at rpc_queue_max */
      rpc_check_pause(s, k);
    }
  } else if (k->role == LINK_NEW) {
    if (cmd == MIM_RPC_HELLO)
      rc = on_hello(s, k, &r);
    else
      wrong = "before HELLO";
  } else if (k->role == LINK_ADMIN) {
    /* operator rights only for links that said they are mimctl: a gateway
     * relays untrusted clients and has no use for them */
    if (cmd == MIM_RPC_ADMIN)
      on_admin(s, k, &r);
    else
      wrong = "on an admin link";
  } else if (cmd == MIM_RPC_REQUEST) {
    k->sessions_closed = true;
    on_request(s, k, &r);
  } else if (cmd == MIM_RPC_CONN_CLOSED) {
    k->sessions_closed = true;
    struct mim_conn_ref c = {.gateway = k->gateway, .conn_id = r.conn_id};
    (void)mim_logic_conn_closed(s->logic, c); /* unknown conn: nothing to do */
  } else if (cmd == MIM_RPC_SESSIONS && !k->sessions_closed) {
    /* only right after HELLO (a big gateway sends several in a row): later
     * the link's connections are live and a re-registration could only be
     * an attempt to claim one */
    on_sessions(s, k, &r);
  } else if (cmd == MIM_RPC_ADMIN) {
    /* a gateway relays untrusted clients: it never has operator rights.
     * Refused with an error, not a cut link, so that a bug or an intruder
     * on one gateway host does not cut every user of that gateway off */
    mimd_warn("%s: ADMIN from a gateway link refused", link_name(k));
    admin_error(k, r.req_id, r.inner_cmd, -MIM_ERR_FORBIDDEN);
    rpc_check_pause(s, k);
  } else if (cmd == MIM_RPC_SESSIONS) {
    wrong = "after the link's first REQUEST or CONN_CLOSED";
  } else {
    wrong = "from a gateway";
  }
  mim_rpc_finish(&r);
  if (wrong != NULL) {
    mimd_warn("%s: unexpected RPC cmd %u %s; closing", link_name(k),
              (unsigned)cmd, wrong);
    return -1;
  }
  return rc < 0 ? -1 : 0;
}

/* ---- deadlines ---- */

void rpc_check_links(struct server *s, int64_t now) {
  for (struct link *k = s->links; k != NULL; k = k->next) {
    if (k->closing || k->doomed)
      continue;
    if (k->role == LINK_NEW) {
      if (now - k->born_ms >= s->hello_timeout_ms) {
        mimd_warn("%s: no HELLO within %lld ms; closing", link_name(k),
                  (long long)s->hello_timeout_ms);
        k->doomed = true; /* swept (killed) by the caller's pump */
      }
      continue;
    }
    int64_t silent = now - k->heard_ms;
    if (silent >= s->dead_ms) {
      /* a stopped or unreachable peer (half-open TCP) never says so: its
       * routes would stay and its pushes pile up until rpc_queue_max */
      mimd_warn("%s: nothing received for %lld ms (peer stopped, or the "
                "link is half-open); closing", link_name(k),
                (long long)silent);
      k->doomed = true;
    } else if (s->ping_ms > 0 && silent >= s->ping_ms &&
               (k->pinged_ms == 0 || now - k->pinged_ms >= s->ping_ms)) {
      struct mim_rpc r;
      mim_rpc_init(&r);
      r.cmd = MIM_RPC_PING;
      r.req_id = ++s->last_nonce;
      k->pinged_ms = now;
      (void)rpc_send(k, &r);
    }
  }
}
