/* Recall, edit and delete-for-me (cmd 44, docs/protocol.md §19): checked
 * here for shape and size, queued as one MIM_OP_CHANGE in the open batch,
 * answered (and pushed, cmd 46) after its commit in commit.c. Who may
 * change what is decided by the store inside the write transaction, so a
 * recall racing a delivery or a member's removal sees one consistent
 * state. */
#include "logic/requests.h"

#include <string.h>

/* The writes a change makes: the record (or the hidden key) and one inbox
 * entry per participant it is filed for. A group's is charged like a
 * message to it (members_weight), a little more than it writes. */
static uint64_t change_weight(struct mim_logic *l, const struct mim_packet *p,
                              const char *actor) {
  if (p->type == MIM_CHANGE_DELETE_FOR_ME)
    return 2;
  if (p->group[0] != '\0')
    return mim__logic_group_weight(l, p->group, actor) + 1;
  return 3;
}

/* The request's shape, as for a send: one conversation, a known action,
 * an edit's content bounded and UTF-8. */
static int check_change(const struct mim_logic *l, const struct mim_packet *p,
                        bool admin) {
  bool has_peer = p->peer[0] != '\0', has_group = p->group[0] != '\0';
  if ((has_peer && has_group) || (!admin && !has_peer && !has_group) ||
      (has_peer && !mim_id_valid(p->peer)) ||
      (has_group && !mim_id_valid(p->group)) || p->msg_id == 0 ||
      p->type < MIM_CHANGE_RECALL || p->type > MIM_CHANGE_DELETE_FOR_ME ||
      (admin && p->type == MIM_CHANGE_DELETE_FOR_ME))
    return -MIM_ERR_MALFORMED;
  if (p->type == MIM_CHANGE_EDIT) {
    size_t n = strlen0(p->content);
    if (n > l->cfg.content_max)
      return -MIM_ERR_TOO_LARGE;
    if (!mim_utf8_valid(p->content, n))
      return -MIM_ERR_BAD_UTF8;
  }
  return 0;
}

static int add_change(struct mim_logic *l, const struct mim_packet *p,
                      const char *actor, size_t *idx) {
  const char *content = p->type == MIM_CHANGE_EDIT ? p->content : "";
  int rc = mim_write_batch_add_change(
      l->open, actor, p->msg_id, (enum mim_change_action)p->type, p->peer,
      p->group, (const uint8_t *)content, strlen0(content), mim__logic_now(l),
      (int64_t)l->cfg.recall_window_s * 1000,
      (int64_t)l->cfg.edit_window_s * 1000, idx);
  return rc == -EINVAL ? -MIM_ERR_MALFORMED : rc;
}

int mim__logic_queue_change(struct mim_logic *l, struct conn *c,
                            const struct mim_packet *p, struct slot *slot,
                            const uint8_t *body, size_t len, bool admitted) {
  int rc = check_change(l, p, false);
  if (rc < 0)
    return rc;
  uint64_t weight = change_weight(l, p, c->uid);
  if (!admitted) {
    /* a recall costs a write per member of a group: rate-limited like a
     * send, so that one client cannot flood the writer with them */
    if (!mim__logic_rate_ok(l, c))
      return -MIM_ERR_RATE_LIMITED;
    if (!mim__logic_batch_room(l, c, weight))
      return mim__logic_park(l, c, p->cmd, body, len, weight, NULL, slot);
  }
  size_t idx;
  if ((rc = add_change(l, p, c->uid, &idx)) < 0)
    return rc;
  mim__logic_batch_charge(l, c, weight);
  struct pending *pd = mim__logic_pending_new(l, PENDING_CHANGE, idx);
  if (pd == NULL)
    return -ENOMEM;
  pd->req_cmd = p->cmd;
  pd->sender_conn = c->ref; /* it gets the reply, not the push */
  pd->has_sender_conn = true;
  struct slot *s = slot != NULL ? slot : mim__logic_slot_push(c);
  if (s == NULL)
    return -ENOMEM;
  s->state = SLOT_WAITING;
  if (mim__logic_waiter_add(pd, c, s, p->seq) < 0)
    s->state = SLOT_SILENT;
  return 0;
}

int mim__logic_queue_change_admin(struct mim_logic *l,
                                  const struct mim_packet *p, const char *actor,
                                  uint64_t req_id) {
  if (actor == NULL)
    actor = "";
  int rc = check_change(l, p, actor[0] == '\0');
  if (rc < 0)
    return rc;
  size_t idx;
  if ((rc = add_change(l, p, actor, &idx)) < 0)
    return rc;
  mim__logic_batch_charge(l, NULL, change_weight(l, p, NULL));
  struct pending *pd = mim__logic_pending_new(l, PENDING_CHANGE, idx);
  if (pd == NULL)
    return -ENOMEM;
  pd->req_cmd = p->cmd;
  return mim__logic_waiter_add_admin(pd, req_id);
}
