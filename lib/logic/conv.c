/* Conversations and read positions (docs/protocol.md §10): the
 * conversation list (cmd 30), mark read (cmd 32, a write: it goes through
 * the batch like a send and is answered after its commit, in commit.c)
 * and "read by" (cmd 36). Positions only: docs/architecture.md §6.1. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A request's page size: <= 0 or above the maximum gives the maximum. */
static uint32_t page_limit(const struct mim_logic *l, int32_t limit) {
  if (limit <= 0 || (uint32_t)limit > l->cfg.conv_page_max)
    return l->cfg.conv_page_max;
  return (uint32_t)limit;
}

/* A bound on what one ConvItem adds to an encoded reply. */
static size_t conv_item_bytes(const struct mim_conv_item *it) {
  return strlen0(it->peer) + strlen0(it->group) + strlen0(it->last_from) +
         strlen0(it->preview) + MIM_REPLY_ENTRY_OVERHEAD;
}

int mim__logic_do_conv_list(struct mim_logic *l, const char *viewer,
                            const struct mim_packet *p, struct mim_packet *r,
                            struct mim_conv_list *cl,
                            struct mim_conv_item **items) {
  int rc = mim_backend_conv_list(l->cfg.backend, viewer, p->msg_id,
                                 page_limit(l, p->limit),
                                 l->cfg.conv_preview_max, cl);
  if (rc < 0)
    return rc == -ENOTSUP ? -MIM_ERR_UNKNOWN_CMD : rc;
  struct mim_conv_item *it = calloc(cl->count + 1, sizeof *it);
  if (it == NULL)
    return -ENOMEM;
  size_t total = MIM_REPLY_OVERHEAD, n = 0;
  bool more = cl->has_more;
  for (; n < cl->count; n++) {
    const struct mim_conv_info *ci = &cl->items[n];
    struct mim_conv_item *o = &it[n];
    o->peer = ci->peer;
    o->group = ci->group;
    o->last_from = ci->last_sender;
    /* content is stored NUL-terminated and cut at a character boundary;
     * a message whose content holds a NUL shows its text up to it */
    o->preview = (const char *)ci->preview;
    o->last_msg_id = ci->last_msg_id;
    o->last_conv_seq = ci->last_conv_seq;
    o->last_time = ci->last_time;
    o->last_type = ci->last_type;
    o->preview_cut = ci->preview_cut;
    o->read_seq = ci->read_seq;
    o->unread = ci->unread;
    o->peer_read_seq = ci->peer_read_seq;
    o->last_state = ci->last_state;
    o->large = ci->large;
    size_t b = conv_item_bytes(o);
    if (n > 0 && total + b > l->cfg.reply_bytes_max) {
      more = true; /* the rest comes with the next page */
      break;
    }
    total += b;
  }
  *items = it;
  r->cmd = MIM_CMD_CONV_LIST_RSP;
  r->convs = it;
  r->n_convs = n;
  r->has_more = more;
  r->ts = mim__logic_now(l);
  return 0;
}

int mim__logic_do_read_by(struct mim_logic *l, const char *viewer,
                          const struct mim_packet *p, struct mim_packet *r,
                          struct member_collect *mc) {
  struct mim_backend *be = l->cfg.backend;
  if (!mim_id_valid(p->group) ||
      (p->after_uid[0] != '\0' && !mim_id_valid(p->after_uid)) ||
      p->conv_seq == 0)
    return -MIM_ERR_MALFORMED;
  /* members only (the operator, viewer NULL, may ask about any group);
   * anyone else learns nothing about the group */
  int rc;
  uint64_t joined = 0; /* the operator: from the first message */
  if (viewer != NULL &&
      (rc = be->ops->member_get(be->impl, p->group, viewer, &joined)) < 0)
    return rc == -MIM_ERR_NO_SUCH_GROUP ? -MIM_ERR_NOT_MEMBER : rc;
  /* a member sees the group from the point they joined (as history):
   * who read what came before is none of theirs */
  if (p->conv_seq <= joined)
    return -MIM_ERR_NOT_MEMBER;
  uint64_t n = 0, m = 0;
  bool more = false;
  /* limit 0 (or less): only the counts */
  rc = mim_backend_read_by(be, p->group, p->conv_seq, p->after_uid,
                           page_limit(l, p->limit), &n, &m,
                           p->limit > 0 ? mim__logic_member_collect_uid : NULL,
                           mc, &more);
  /* the scan's cost, on top of the reply's (mim__logic_run_read) */
  l->turn_bytes += (size_t)m * MIM__READ_BY_MEMBER_COST;
  if (rc == 0)
    rc = mc->err;
  if (rc < 0)
    return rc == -ENOTSUP ? -MIM_ERR_UNKNOWN_CMD : rc;
  /* conv_page_max uids of up to MIM_ID_MAX bytes can pass the bound:
   * keep the first that fit (at least one); the rest by after_uid */
  size_t total = MIM_REPLY_OVERHEAD + 2 * MIM_ID_MAX, kept = 0;
  while (kept < mc->n) {
    size_t b = strlen(mc->uids[kept]) + 3; /* tag, length, the uid */
    if (kept > 0 && total + b > l->cfg.reply_bytes_max)
      break;
    total += b;
    kept++;
  }
  more = more || kept < mc->n;
  r->cmd = MIM_CMD_READ_BY_RSP;
  r->group = p->group;
  r->conv_seq = p->conv_seq;
  r->read_count = n;
  r->member_count = m;
  r->members = mc->uids;
  r->n_members = kept; /* mc keeps every uid (freed by its owner) */
  r->has_more = more;
  r->ts = mim__logic_now(l);
  return 0;
}

int mim__logic_queue_mark_read(struct mim_logic *l, struct conn *c,
                               const struct mim_packet *p, struct slot *slot,
                               const uint8_t *body, size_t len,
                               bool admitted) {
  bool has_peer = p->peer[0] != '\0', has_group = p->group[0] != '\0';
  if (has_peer == has_group || (has_peer && !mim_id_valid(p->peer)) ||
      (has_group && !mim_id_valid(p->group)))
    return -MIM_ERR_MALFORMED;
  /* one store write (the user's position), like a cursor */
  if (!admitted && !mim__logic_batch_room(l, c, 1))
    return mim__logic_park(l, c, p->cmd, body, len, 1, NULL, slot);
  size_t idx;
  int rc = mim_write_batch_add_read(l->open, c->uid, has_peer ? p->peer : NULL,
                                    has_group ? p->group : NULL, p->conv_seq,
                                    &idx);
  if (rc < 0)
    return rc == -EINVAL ? -MIM_ERR_MALFORMED : rc;
  mim__logic_batch_charge(l, c, 1);
  struct pending *pd = mim__logic_pending_new(l, PENDING_READ, idx);
  if (pd == NULL)
    return -ENOMEM;
  pd->req_cmd = p->cmd;
  pd->sender_conn = c->ref; /* its other devices are told, not this one */
  pd->has_sender_conn = true;
  struct slot *s = slot != NULL ? slot : mim__logic_slot_push(c);
  if (s == NULL)
    return -ENOMEM;
  s->state = SLOT_WAITING;
  if (mim__logic_waiter_add(pd, c, s, p->seq) < 0)
    s->state = SLOT_SILENT;
  return 0;
}
