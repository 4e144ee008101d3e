/* Operators: mimctl's requests (mim_logic_admin), answered by req_id. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <mim/auth.h>

/* ---- operators ---- */

static int admin_reply_error(struct mim_logic *l, uint64_t req_id,
                             uint32_t cmd, int err) {
  struct mim_packet e;
  mim_error_packet_init(&e, err, cmd, 0);
  e.ts = mim__logic_now(l);
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
  return mim__logic_queue_message(l, NULL, 0, MIM_CMD_SERVER_PUSH, &m, true, req_id,
                       NULL, n);
}

/* A message on a user's behalf (an application backend, a bot): the same
 * checks as the user's own send (ids, content rules, the store's
 * membership check inside the commit) and the same dedup of
 * (from, client_msg_id), answered after the commit. Unlike a client it
 * has no connection, so no per-connection rate limit applies (the HTTP API
 * has its own) and every device of `from` gets the push too. */
static int admin_send(struct mim_logic *l, uint64_t req_id,
                      const struct mim_packet *p) {
  bool c2c = p->cmd == MIM_CMD_C2C_SEND_REQ;
  const char *target = c2c ? p->to : p->group;
  if (!mim_id_valid(p->from) || !mim_id_valid(target))
    return -MIM_ERR_MALFORMED;
  int rc = mim__logic_check_send(l, p);
  if (rc < 0)
    return rc;
  uint64_t weight = c2c ? 1 : mim__logic_group_weight(l, target, p->from);
  struct mim_message_in m = {
      .type = p->type,
      .conv_kind = c2c ? MIM_CONV_C2C : MIM_CONV_GROUP,
      .sender = p->from,
      .sender_device = "",
      .peer = c2c ? target : NULL,
      .group = c2c ? NULL : target,
      .client_msg_id = p->client_msg_id,
      .content = (const uint8_t *)(p->content ? p->content : ""),
      .content_len = strlen0(p->content),
      .server_time = mim__logic_now(l),
  };
  rc = mim__logic_queue_message(l, NULL, 0, p->cmd, &m, true, req_id, NULL,
                                weight);
  if (rc == 0 && !c2c)
    mim__logic_group_joined(l, target);
  return rc;
}

struct conn_refs {
  struct mim_conn_ref refs[64];
  size_t n;
};

static void collect_ref(void *user, const struct mim_route *r) {
  struct conn_refs *cr = user;
  if (cr->n < sizeof cr->refs / sizeof cr->refs[0])
    cr->refs[cr->n++] = r->conn;
}

int mim_logic_kick_user(struct mim_logic *l, const char *uid, size_t *kicked) {
  if (kicked != NULL)
    *kicked = 0;
  if (!mim_id_valid(uid))
    return -MIM_ERR_MALFORMED;
  size_t total = 0;
  /* in rounds: unbinding changes the table the walk reads */
  for (;;) {
    struct conn_refs cr = {.n = 0};
    mim_sessions_foreach_device(l->sessions, uid, collect_ref, &cr);
    if (cr.n == 0)
      break;
    size_t before = total, gone = 0;
    for (size_t i = 0; i < cr.n; i++) {
      struct conn *c = mim__logic_conn_find(l, cr.refs[i]);
      if (c == NULL || !c->authed) {
        if (mim_sessions_unbind(l->sessions, cr.refs[i]) == 0)
          gone++;
        continue;
      }
      if (mim__logic_emit_kick(l, c->ref, MIM_KICK_ADMIN, c->uid,
                               "kicked by the operator") < 0)
        return -ENOMEM;
      mim__logic_conn_unauth(l, c);
      total++;
    }
    if (total == before && gone == 0)
      break; /* nothing moved: never spin */
  }
  if (kicked != NULL)
    *kicked = total;
  return 0;
}

int mim_logic_admin(struct mim_logic *l, uint64_t req_id, uint32_t cmd,
                    const uint8_t *body, size_t len) {
  struct mim_packet p, r;
  struct mim_message_list ml;
  struct member_collect mc = {0};
  struct mim__group_info_copy gi = {0};
  struct mim_pull_item *items = NULL;
  struct mim_conv_list cl;
  struct mim_conv_item *citems = NULL;
  mim_packet_init(&p);
  mim_packet_init(&r);
  mim_message_list_init(&ml);
  mim_conv_list_init(&cl);
  int rc = mim_packet_decode(&p, cmd, body, len);
  if (rc == 0) {
    switch (cmd) {
    case MIM_CMD_GROUP_CREATE_REQ:
    case MIM_CMD_GROUP_ADD_REQ:
    case MIM_CMD_GROUP_REMOVE_REQ:
      rc = mim__logic_queue_group(l, NULL, &p, true, req_id, NULL, NULL, 0, false);
      break;
    case MIM_CMD_SERVER_PUSH:
      rc = admin_server_push(l, req_id, &p);
      break;
    case MIM_CMD_C2C_SEND_REQ: /* on behalf of `from` */
    case MIM_CMD_C2G_SEND_REQ:
      rc = admin_send(l, req_id, &p);
      break;
    case MIM_CMD_GROUP_MANAGE_REQ:
      rc = mim__logic_queue_manage(l, NULL, &p, true, req_id, NULL, NULL, 0,
                                   false);
      break;
    case MIM_CMD_MSG_CHANGE_REQ: /* recall or edit any message, no window */
      rc = mim__logic_queue_change_admin(l, &p, NULL, req_id);
      break;
    case MIM_CMD_GROUP_INFO_REQ:
      if ((rc = mim__logic_read_group_info(l, NULL, &p, &r, &gi)) == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_GROUP_LIST_REQ:
      if ((rc = mim__logic_read_group_list(l, NULL, &p, &r, &mc)) == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_HISTORY_REQ: /* a group's, or `uid`'s with `peer` */
      if (p.group[0] == '\0' && !mim_id_valid(p.uid))
        rc = -MIM_ERR_MALFORMED;
      else
        rc = mim__logic_do_history(l, p.group[0] ? NULL : p.uid, &p, &ml, &r, &items);
      if (rc == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_CONV_LIST_REQ: /* `uid`'s conversation list */
      rc = mim_id_valid(p.uid) ? 0 : -MIM_ERR_MALFORMED;
      if (rc == 0 &&
          (rc = mim__logic_do_conv_list(l, p.uid, &p, &r, &cl, &citems)) == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_READ_BY_REQ: /* any group's, as the operator */
      if ((rc = mim__logic_do_read_by(l, NULL, &p, &r, &mc)) == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_PULL_REQ: /* read-only: moves no cursor */
      rc = mim_id_valid(p.uid) ? 0 : -MIM_ERR_MALFORMED;
      uint64_t upto;
      if (rc == 0)
        rc = mim__logic_read_inbox(l, p.uid, p.after_seq, 0, true, mim__logic_clamp_limit(l, p.limit),
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
  free(citems);
  mim_conv_list_finish(&cl);
  mim__logic_member_collect_finish(&mc);
  mim__logic_group_info_finish(&gi);
  mim_message_list_finish(&ml);
  mim_packet_finish(&p);
  return out;
}
