/* The logic's public face: creation, gateways, the events it is fed and
 * their dispatch to the request families (auth.c, send.c, group.c,
 * read.c; admin.c for operators). Connections and effects live in conn.c,
 * writes and what follows their commit in commit.c. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <mim/auth.h>

/* The handlers the lower modules call back through struct logic_up. */
static void run_deferred(struct mim_logic *l, struct conn *c, uint32_t cmd,
                         const uint8_t *body, size_t len, struct slot *s);
static void run_parked(struct mim_logic *l, struct conn *c, uint32_t cmd,
                       const uint8_t *body, size_t len, struct slot *s);

/* Members who left a group share one conversation less with everyone in
 * it: their presence subscriptions end both ways (presence.c). */
static void members_left(struct mim_logic *l, const char *group,
                         const char *const *uids, size_t n) {
  (void)group;
  for (size_t i = 0; i < n; i++)
    mim__logic_presence_forget(l, uids[i]);
}

void mim_logic_config_init(struct mim_logic_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->size = sizeof *cfg;
  cfg->log_level = MIM_LOG_INFO;
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
  cfg->conv_page_max = 100;
  cfg->conv_preview_max = 256;
  cfg->recall_window_s = 300;
  cfg->edit_window_s = 86400;
  cfg->typing_rate_per_s = 2;
  cfg->typing_burst = 5;
  cfg->typing_group_max = 500;
  cfg->presence_query_max = 100;
  cfg->presence_subscribe_max = 1000;
}

size_t mim_logic_reply_bytes_min(uint32_t content_max) {
  return MIM_REPLY_OVERHEAD + MIM_REPLY_ENTRY_OVERHEAD + 3 * MIM_ID_MAX +
         MIM_CLIENT_MSG_ID_MAX + (size_t)content_max;
}

/* Copies `in` into `out` as this library's struct: a caller built with an
 * older, smaller struct gets the defaults for the fields it lacks. -EINVAL
 * when in->size is not one a caller can have: too small to hold the
 * backend, or larger than the struct this library knows. */
static int config_adopt(struct mim_logic_config *out,
                        const struct mim_logic_config *in) {
  size_t need = offsetof(struct mim_logic_config, backend) + sizeof in->backend;
  if (in->size < need || in->size > sizeof *out)
    return -EINVAL;
  mim_logic_config_init(out);
  memcpy(out, in, in->size);
  out->size = sizeof *out;
  return 0;
}

int mim_logic_create(struct mim_logic **out,
                     const struct mim_logic_config *caller_cfg) {
  struct mim_logic_config adopted;
  if (out == NULL || caller_cfg == NULL ||
      config_adopt(&adopted, caller_cfg) < 0)
    return -EINVAL;
  const struct mim_logic_config *cfg = &adopted;
  if (cfg->backend == NULL || cfg->backend->ops == NULL)
    return -EINVAL;
  if (!cfg->dev_auth &&
      (cfg->secret == NULL || cfg->secret_len < MIM_SECRET_MIN))
    return -EINVAL;
  struct mim_logic *l = calloc(1, sizeof *l);
  if (l == NULL)
    return -ENOMEM;
  l->cfg = *cfg;
  l->up = (struct logic_up){run_deferred, run_parked, mim__logic_park_remove,
                            mim__logic_pending_new, mim__logic_large_logout,
                            members_left};
  l->log = (struct mim__log_sink){cfg->log, cfg->log_user, cfg->log_level};
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
  if (l->cfg.conv_page_max == 0)
    l->cfg.conv_page_max = 100;
  if (l->cfg.conv_preview_max == 0)
    l->cfg.conv_preview_max = 256;
  if (l->cfg.typing_rate_per_s == 0)
    l->cfg.typing_rate_per_s = 2;
  if (l->cfg.typing_burst == 0)
    l->cfg.typing_burst = 5;
  if (l->cfg.typing_group_max == 0)
    l->cfg.typing_group_max = 500;
  if (l->cfg.presence_query_max == 0)
    l->cfg.presence_query_max = 100;
  if (l->cfg.presence_subscribe_max == 0)
    l->cfg.presence_subscribe_max = 1000;
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
    mim__log_to(&l->log, MIM_LOG_WARN,
                "DEVELOPMENT AUTH: every token is accepted");
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
  mim__logic_presence_finish(l);
  mim__logic_large_finish(l);
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

void mim_logic_set_event_cb(struct mim_logic *l, mim_logic_event_fn fn,
                            void *user) {
  l->event_fn = fn;
  l->event_user = user;
}

const struct mim_sessions *mim_logic_sessions(const struct mim_logic *l) {
  return l->sessions;
}

int mim_logic_stats(const struct mim_logic *l, struct mim_logic_stats *out) {
  if (l == NULL || out == NULL || out->size == 0 ||
      out->size > sizeof *out)
    return -EINVAL;
  struct mim_logic_stats s = l->stats;
  s.size = out->size;
  s.connections = l->conns.count;
  s.sessions = mim_sessions_count(l->sessions);
  s.gateways = l->n_gateways;
  s.writes_gathering = mim_write_batch_count(l->open);
  uint64_t parked = 0;
  for (const struct conn *c = l->park_head; c != NULL; c = c->park_next)
    parked += c->n_parked;
  s.writes_parked = parked;
  s.batch_out = l->out != NULL;
  memcpy(out, &s, out->size);
  return 0;
}

/* ---- token expiry ---- */

/* Tokens mim__logic_expire on the second, so a scan runs at most about once a second
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
  mim__htable_foreach(&l->conns, mim__logic_expiry_visit, &x);
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

/* ---- gateways ---- */


int mim_logic_gateway_up(struct mim_logic *l, uint32_t gateway,
                         const char *id) {
  if (!mim_id_valid(id))
    return -EINVAL;
  if (mim__logic_gateway_index(l, gateway) >= 0)
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
  if (mim__logic_gateway_index(l, gateway) < 0)
    return -ENOENT;
  /* its connections leave its read queue before it goes */
  struct drop_ctx d = {l, gateway};
  mim__htable_foreach(&l->conns, drop_if_on_gateway, &d);
  ssize_t i = mim__logic_gateway_index(l, gateway);
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

/* Group changes are deferred until the connection's earlier requests are
 * answered (their permission check must see the connection's own earlier
 * writes, which only the store knows once committed). */
static bool is_deferred_write(uint32_t cmd) {
  return cmd == MIM_CMD_GROUP_ADD_REQ || cmd == MIM_CMD_GROUP_REMOVE_REQ ||
         cmd == MIM_CMD_GROUP_MANAGE_REQ;
}

static void run_deferred(struct mim_logic *l, struct conn *c, uint32_t cmd,
                         const uint8_t *body, size_t len, struct slot *s) {
  struct mim_packet p, r;
  struct mim_message_list ml;
  struct member_collect mc = {0};
  struct mim__group_info_copy gi = {0};
  struct mim_pull_item *items = NULL;
  struct mim_conv_list cl;
  struct mim_conv_item *citems = NULL;
  bool queued = false;
  mim_packet_init(&p);
  mim_packet_init(&r);
  mim_message_list_init(&ml);
  mim_conv_list_init(&cl);
  if (is_deferred_write(cmd))
    c->n_deferred_writes--;
  int rc = mim_packet_decode(&p, cmd, body, len);
  if (rc == 0 && !c->authed)
    rc = -MIM_ERR_UNAUTHENTICATED; /* kicked while this waited */
  if (rc == 0) {
    switch (cmd) {
    case MIM_CMD_C2C_SEND_REQ: /* behind a group change (dispatch) */
    case MIM_CMD_C2G_SEND_REQ:
      rc = mim__logic_handle_send(l, c, &p, body, len, s);
      queued = rc == 0;
      break;
    case MIM_CMD_MARK_READ_REQ:
      rc = mim__logic_queue_mark_read(l, c, &p, s, body, len, false);
      queued = rc == 0;
      break;
    case MIM_CMD_GROUP_CREATE_REQ:
      rc = mim__logic_queue_group(l, c, &p, false, 0, s, body, len, false);
      queued = rc == 0;
      break;
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
      rc = mim__logic_queue_group(l, c, &p, false, 0, s, body, len, false);
      queued = rc == 0;
      break;
    case MIM_CMD_GROUP_MANAGE_REQ:
      rc = mim__logic_queue_manage(l, c, &p, false, 0, s, body, len, false);
      queued = rc == 0;
      break;
    case MIM_CMD_GROUP_INFO_REQ:
      rc = mim__logic_read_group_info(l, c->uid, &p, &r, &gi);
      break;
    case MIM_CMD_PULL_REQ:
      rc = mim__logic_do_pull(l, c, &p, &ml, &r, &items);
      break;
    case MIM_CMD_HISTORY_REQ:
      rc = mim__logic_do_history(l, c->uid, &p, &ml, &r, &items);
      break;
    case MIM_CMD_GROUP_SYNC_REQ:
      rc = mim__logic_do_group_sync(l, c->uid, &p, &ml, &r, &items);
      break;
    case MIM_CMD_CONV_LIST_REQ:
      rc = mim__logic_do_conv_list(l, c->uid, &p, &r, &cl, &citems);
      break;
    case MIM_CMD_READ_BY_REQ:
      rc = mim__logic_do_read_by(l, c->uid, &p, &r, &mc);
      break;
    default:
      rc = mim__logic_read_group_list(l, c->uid, &p, &r, &mc);
      break;
    }
  }
  if (rc < 0) {
    mim__logic_slot_set_error(l, s, cmd, p.seq, rc);
  } else if (!queued) {
    r.seq = p.seq;
    mim__logic_slot_set_packet(s, &r);
  }
  free(items);
  free(citems);
  mim_conv_list_finish(&cl);
  mim__logic_member_collect_finish(&mc);
  mim__logic_group_info_finish(&gi);
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
       cmd == MIM_CMD_GROUP_SYNC_REQ || cmd == MIM_CMD_GROUP_LIST_REQ ||
       cmd == MIM_CMD_CONV_LIST_REQ || cmd == MIM_CMD_READ_BY_REQ))
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
  if (is_deferred_write(cmd))
    c->n_deferred_writes++;
  mim__logic_conn_flush(l, c);
  return 0;
}

static void run_parked(struct mim_logic *l, struct conn *c, uint32_t cmd,
                           const uint8_t *body, size_t len, struct slot *s) {
  struct mim_packet p;
  mim_packet_init(&p);
  int rc = mim_packet_decode(&p, cmd, body, len);
  if (rc == 0 && !c->authed)
    rc = -MIM_ERR_UNAUTHENTICATED; /* kicked while this waited */
  if (rc == 0) {
    if (cmd == MIM_CMD_C2C_SEND_REQ || cmd == MIM_CMD_C2G_SEND_REQ)
      rc = mim__logic_send_message(l, c, &p, s, s->weight);
    else if (cmd == MIM_CMD_MARK_READ_REQ)
      rc = mim__logic_queue_mark_read(l, c, &p, s, body, len, true);
    else if (cmd == MIM_CMD_MSG_CHANGE_REQ)
      rc = mim__logic_queue_change(l, c, &p, s, body, len, true);
    else if (cmd == MIM_CMD_GROUP_MANAGE_REQ)
      rc = mim__logic_queue_manage(l, c, &p, false, 0, s, body, len, true);
    else
      rc = mim__logic_queue_group(l, c, &p, false, 0, s, body, len, true);
  }
  if (rc < 0)
    mim__logic_slot_set_error(l, s, cmd, p.seq, rc);
  mim_packet_finish(&p);
}

/* ---- dispatch ---- */

/* Handles an authenticated request; returns an error to answer with. */
static int dispatch(struct mim_logic *l, struct conn *c,
                    const struct mim_packet *p, const uint8_t *body,
                    size_t len) {
  /* A write behind a group change of the same connection waits for it:
   * otherwise "remove carol, then send" would store the message first
   * (the change waits for earlier replies; the send would not) and carol
   * would get it. Reads need no such wait (they may only see more). */
  if (c->n_deferred_writes > 0 &&
      (p->cmd == MIM_CMD_C2C_SEND_REQ || p->cmd == MIM_CMD_C2G_SEND_REQ ||
       p->cmd == MIM_CMD_MARK_READ_REQ || p->cmd == MIM_CMD_GROUP_CREATE_REQ))
    return queue_read(l, c, p->cmd, body, len);
  switch (p->cmd) {
  case MIM_CMD_LOGOUT_REQ:
    /* takes effect in order: requests before it still run as this user,
     * requests after it are refused */
    c->logging_out = true;
    return queue_read(l, c, p->cmd, body, len);
  case MIM_CMD_C2C_SEND_REQ:
  case MIM_CMD_C2G_SEND_REQ:
    return mim__logic_handle_send(l, c, p, body, len, NULL);
  case MIM_CMD_C2C_PUSH_ACK:
  case MIM_CMD_C2G_PUSH_ACK:
  case MIM_CMD_SERVER_PUSH_ACK:
    mim__logic_handle_ack(l, c, p);
    return 0;
  case MIM_CMD_PULL_REQ:
  case MIM_CMD_HISTORY_REQ:
  case MIM_CMD_GROUP_SYNC_REQ:
  case MIM_CMD_GROUP_LIST_REQ:
  case MIM_CMD_CONV_LIST_REQ:
  case MIM_CMD_READ_BY_REQ:
    return queue_read(l, c, p->cmd, body, len);
  case MIM_CMD_MARK_READ_REQ:
    return mim__logic_queue_mark_read(l, c, p, NULL, body, len, false);
  case MIM_CMD_MSG_CHANGE_REQ:
    return mim__logic_queue_change(l, c, p, NULL, body, len, false);
  case MIM_CMD_TYPING_REQ:
    return mim__logic_handle_typing(l, c, p);
  case MIM_CMD_PRESENCE_REQ:
    return mim__logic_handle_presence(l, c, p);
  case MIM_CMD_GROUP_CREATE_REQ:
    return mim__logic_queue_group(l, c, p, false, 0, NULL, body, len, false);
  case MIM_CMD_GROUP_ADD_REQ:
  case MIM_CMD_GROUP_REMOVE_REQ:
  case MIM_CMD_GROUP_MANAGE_REQ:
  case MIM_CMD_GROUP_INFO_REQ:
    return queue_read(l, c, p->cmd, body, len); /* checks membership first */
  case MIM_CMD_SERVER_PUSH:
    return -MIM_ERR_FORBIDDEN; /* operators push, clients do not */
  default:
    return -MIM_ERR_UNKNOWN_CMD; /* a server-to-client command */
  }
}

int mim_logic_receive(struct mim_logic *l, struct mim_conn_ref ref,
                      uint32_t cmd, const uint8_t *body, size_t len) {
  if (mim__logic_gateway_index(l, ref.gateway) < 0)
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
      mim__logic_session_expired(c, mim__logic_now(l)))
    mim__logic_expire(l, c); /* before the tick gets to it: refused from now on */
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
    mim__logic_handle_auth(l, c, &p);
  } else if (!c->authed || c->logging_out) {
    mim__logic_reply_error(l, c, cmd, p.seq, -MIM_ERR_UNAUTHENTICATED);
  } else if ((rc = dispatch(l, c, &p, body, len)) < 0) {
    mim__logic_reply_error(l, c, cmd, p.seq, rc);
  }
  mim_packet_finish(&p);
  return 0;
}
