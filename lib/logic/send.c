/* Sends and acks: a message checked, deduplicated while in flight, and
 * queued into the open batch (or parked until it has room). */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <mim/auth.h>

/* ---- sends ---- */

/* Token bucket per connection; refills lazily. */
bool mim__logic_rate_ok(struct mim_logic *l, struct conn *c) {
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


/* Queues message `m` for the open batch, answered to `c` (in `slot`, or
 * a new slot when NULL) or to an admin request. A retry of a message
 * still in flight joins it. `weight`: the store writes it makes, counted
 * against the batch budget. */
int mim__logic_queue_message(struct mim_logic *l, struct conn *c, int64_t req_seq,
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
      mim__log_to(&l->log, MIM_LOG_WARN,
                  "logic: out of memory for the in-flight dedup entry");
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

/* The content rules of every send, a client's or an operator's on a
 * user's behalf (admin.c): one copy of them. */
int mim__logic_check_send(const struct mim_logic *l,
                          const struct mim_packet *p) {
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
int mim__logic_send_message(struct mim_logic *l, struct conn *c,
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
  int rc = mim__logic_queue_message(l, c, p->seq, p->cmd, &m, false, 0, slot, weight);
  if (rc == 0 && !c2c)
    mim__logic_group_joined(l, target);
  return rc;
}

int mim__logic_handle_send(struct mim_logic *l, struct conn *c,
                           const struct mim_packet *p, const uint8_t *body,
                           size_t len, struct slot *slot) {
  bool c2c = p->cmd == MIM_CMD_C2C_SEND_REQ;
  const char *target = c2c ? p->to : p->group;
  if (!mim_id_valid(target))
    return -MIM_ERR_MALFORMED;
  int rc = mim__logic_check_send(l, p);
  if (rc < 0)
    return rc;
  if (!mim__logic_rate_ok(l, c))
    return -MIM_ERR_RATE_LIMITED;
  /* one group message is one store write per member */
  uint64_t weight = c2c ? 1 : mim__logic_group_weight(l, target, c->uid);
  if (!mim__logic_batch_room(l, c, weight))
    return mim__logic_park(l, c, p->cmd, body, len, weight,
                           c2c ? NULL : target, slot);
  return mim__logic_send_message(l, c, p, slot, weight);
}

/* ---- acks ---- */

void mim__logic_handle_ack(struct mim_logic *l, struct conn *c,
                           const struct mim_packet *p) {
  if (p->inbox_seq > 0)
    mim__logic_cursor_raise(l, c, p->inbox_seq);
  else if (p->msg_id > 0)
    mim__logic_cursor_raise(l, c, mim__logic_ring_ack_msg(l, c, p->msg_id));
}
