/* Reads: pull (the inbox after a cursor) and history (a conversation
 * page), in reply-byte-bounded pages. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <mim/auth.h>

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
    items[i].state = m->state;
    items[i].change_time = m->change_time;
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

uint32_t mim__logic_clamp_limit(const struct mim_logic *l, int32_t limit) {
  if (limit <= 0)
    return l->cfg.pull_limit_default;
  return (uint32_t)limit > l->cfg.pull_limit_max ? l->cfg.pull_limit_max
                                                 : (uint32_t)limit;
}

/* Pages of change entries a pull for a connection without MIM_CAP_CHANGE
 * reads past before it hands one out (mim__logic_read_inbox). */
enum { CHANGE_SKIP_PAGES = 16 };

/* Reads `uid`'s inbox after `from` into `r`, keeping only msg_id > min_id
 * (seed pulls "after msg_id": inbox order is commit order, so msg_ids rise
 * along it), and change entries only when `changes` (MIM_CAP_CHANGE,
 * docs/protocol.md §19: for others they are holes). */
int mim__logic_read_inbox(struct mim_logic *l, const char *uid, uint64_t from,
                          uint64_t min_id, bool changes, uint32_t limit,
                          struct mim_message_list *ml, struct mim_packet *r,
                          struct mim_pull_item **items, uint64_t *read_upto) {
  struct mim_backend *be = l->cfg.backend;
  int rc;
  /* A page whose entries were all change entries left out would hold no
   * item and say has_more: a client paging by after_seq could never get
   * past it. So read on (a bounded number of pages); past the bound the
   * last change entry is handed out after all, as a tombstone or edit of
   * a message the client has, so that every page makes progress. */
  for (unsigned pages = 0;; pages++) {
    if ((rc = be->ops->read_inbox(be->impl, uid, from, limit, ml)) < 0)
      return rc;
    /* the last entry read, kept or filtered out: where the next page
     * starts */
    *read_upto = ml->count > 0 ? ml->items[ml->count - 1].inbox_seq : from;
    if (min_id == 0 && changes)
      break;
    size_t k = 0, dropped = SIZE_MAX;
    for (size_t i = 0; i < ml->count; i++) {
      if (ml->items[i].msg_id > min_id &&
          (changes || !ml->items[i].change_entry))
        ml->items[k++] = ml->items[i];
      else if (ml->items[i].change_entry)
        dropped = i;
    }
    /* (a seed pull "after msg_id" keeps its own rule, §9: its page may
     * be empty, the next one starts after it) */
    bool stuck = k == 0 && ml->has_more && !changes && min_id == 0 &&
                 dropped != SIZE_MAX;
    if (stuck && pages + 1 >= CHANGE_SKIP_PAGES && dropped != SIZE_MAX) {
      ml->items[0] = ml->items[dropped];
      k = 1;
      *read_upto = ml->items[0].inbox_seq;
      stuck = false;
    }
    ml->count = k;
    if (!stuck)
      break;
    from = *read_upto;
    mim_message_list_finish(ml);
    mim_message_list_init(ml);
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

int mim__logic_do_pull(struct mim_logic *l, struct conn *c,
                       const struct mim_packet *p, struct mim_message_list *ml,
                       struct mim_packet *r, struct mim_pull_item **items) {
  uint64_t from;
  bool acks = (c->caps & MIM_CAP_PULL_NO_ACK) == 0;
  if (p->has_after_seq) {
    from = p->after_seq;
    if (acks)
      mim__logic_cursor_raise(l, c, p->after_seq);
  } else {
    /* seed pull: from the cursor, and past whatever this connection was
     * already handed, which it evidently received since it asks again */
    if (acks && c->pulled_upto > c->cursor)
      mim__logic_cursor_raise(l, c, c->pulled_upto);
    from = c->pulled_upto > c->cursor ? c->pulled_upto : c->cursor;
  }
  uint64_t upto;
  int rc = mim__logic_read_inbox(l, c->uid, from, p->has_after_seq ? 0 : p->msg_id,
                      (c->caps & MIM_CAP_CHANGE) != 0,
                      mim__logic_clamp_limit(l, p->limit), ml, r, items, &upto);
  if (rc < 0)
    return rc;
  if (r->last_inbox_seq > c->seen_max)
    c->seen_max = r->last_inbox_seq;
  if (!p->has_after_seq)
    c->pulled_upto = upto;
  return 0;
}

int mim__logic_do_history(struct mim_logic *l, const char *viewer,
                      const struct mim_packet *p, struct mim_message_list *ml,
                          struct mim_packet *r, struct mim_pull_item **items) {
  struct mim_backend *be = l->cfg.backend;
  uint32_t limit = mim__logic_clamp_limit(l, p->limit);
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
    rc = be->ops->read_conversation(be->impl, viewer, NULL, p->group,
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

/* Conv seqs of a group are dense (every message and notice takes the next
 * one), so the oldest `limit` entries after `from` are those up to
 * from + limit: a newest-first read of that window, reversed, is the page.
 * Entries the viewer deleted for themself leave holes, which is why the
 * reply says where the next page starts rather than letting the client
 * take the last item's seq (a page of holes only would stall it). */
int mim__logic_do_group_sync(struct mim_logic *l, const char *viewer,
                             const struct mim_packet *p,
                             struct mim_message_list *ml, struct mim_packet *r,
                             struct mim_pull_item **items) {
  struct mim_backend *be = l->cfg.backend;
  if (!mim_id_valid(p->group))
    return -MIM_ERR_MALFORMED;
  uint32_t limit = mim__logic_clamp_limit(l, p->limit);
  uint64_t joined = 0;
  int rc = be->ops->member_get(be->impl, p->group, viewer, &joined);
  if (rc < 0) /* a stranger learns nothing, not even that it exists */
    return rc == -MIM_ERR_NO_SUCH_GROUP ? -MIM_ERR_NOT_MEMBER : rc;
  /* the newest conv seq: one newest-first entry, for nobody in particular */
  uint64_t last = 0;
  rc = be->ops->read_conversation(be->impl, NULL, NULL, p->group, 0, 0, 1, ml);
  if (rc < 0)
    return rc;
  if (ml->count > 0)
    last = ml->items[0].conv_seq;
  mim_message_list_finish(ml);
  mim_message_list_init(ml);
  /* a member sees the group from the point they joined */
  uint64_t from = p->after_seq > joined ? p->after_seq : joined;
  if (from > last)
    from = last;
  uint64_t to = last - from > limit ? from + limit : last;
  if (to > from) {
    rc = be->ops->read_conversation(be->impl, viewer, NULL, p->group, to + 1,
                                    from, limit, ml);
    if (rc < 0)
      return rc;
  }
  for (size_t i = 0, j = ml->count; i + 1 < j; i++, j--) {
    struct mim_message t = ml->items[i];
    ml->items[i] = ml->items[j - 1];
    ml->items[j - 1] = t;
  }
  if ((rc = items_from(ml, items)) < 0)
    return rc;
  for (size_t i = 0; i < ml->count; i++)
    (*items)[i].inbox_seq = 0;
  r->cmd = MIM_CMD_GROUP_SYNC_RSP;
  r->items = *items;
  r->n_items = ml->count;
  r->ts = mim__logic_now(l);
  size_t kept = ml->count > 0 ? cap_bytes(l, r) : 0;
  r->after_seq = kept < ml->count ? ml->items[kept - 1].conv_seq : to;
  r->has_after_seq = true;
  r->has_more = r->after_seq < last;
  r->conv_seq = last;
  return 0;
}
