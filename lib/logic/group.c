/* Groups: create, add and remove members, and the member list. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <mim/auth.h>

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

/* Whether `members[0..n)` names only `self` (a client leaving). */
static bool only_self(const char *const *members, size_t n, const char *self) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if (strcmp(members[i], self) != 0)
      return false;
  return true;
}

/* A client leaving a group it is not in (any more, or never: a group that
 * does not exist looks the same): done already, so the answer is success
 * with no member changed, nothing stored and no notice. Answered in
 * `slot` (a new one when NULL), in request order. */
static int leave_again(struct mim_logic *l, struct conn *c,
                       const struct mim_packet *p, struct slot *slot) {
  struct slot *s = slot != NULL ? slot : mim__logic_slot_push(c);
  if (s == NULL)
    return -ENOMEM;
  struct mim_packet r;
  mim_packet_init(&r);
  r.cmd = MIM_CMD_GROUP_REMOVE_RSP;
  r.group = p->group;
  r.seq = p->seq;
  r.ts = mim__logic_now(l);
  mim__logic_slot_set_packet(s, &r);
  return 0;
}

int mim__logic_group_wait(struct mim_logic *l, struct conn *c, uint32_t cmd,
                          int64_t seq, bool admin, uint64_t req_id,
                          struct slot *slot, size_t idx, uint64_t weight) {
  mim__logic_batch_charge(l, admin ? NULL : c, weight);
  struct pending *pd = mim__logic_pending_new(l, PENDING_GROUP, idx);
  if (pd == NULL)
    return -ENOMEM;
  pd->req_cmd = cmd;
  if (admin)
    return mim__logic_waiter_add_admin(pd, req_id);
  struct slot *s = slot != NULL ? slot : mim__logic_slot_push(c);
  if (s == NULL)
    return -ENOMEM;
  s->state = SLOT_WAITING;
  if (mim__logic_waiter_add(pd, c, s, seq) < 0)
    s->state = SLOT_SILENT;
  return 0;
}

/* Queues a group change. `slot` is the request's place in the reply order
 * when it was deferred or parked; NULL pushes a new one. A client's change
 * that does not fit the open batch is parked (request `body`, `len`)
 * unless it was `admitted` from there. */
int mim__logic_queue_group(struct mim_logic *l, struct conn *c,
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
      if (rc == -MIM_ERR_NO_SUCH_GROUP)
        rc = -MIM_ERR_NOT_MEMBER;
      if (rc == -MIM_ERR_NOT_MEMBER && kind == MIM_OP_GROUP_REMOVE &&
          only_self(members, n, c->uid))
        return leave_again(l, c, p, slot);
      if (rc < 0)
        return rc;
      /* who may add or remove whom (members only leave, admins remove
       * members, nobody removes the owner) is the store's to decide, in
       * the commit: mim_group_rule_check() */
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
  /* one store write per member named (and the group's own for a create),
   * plus the notice: one inbox write per member after the change, like a
   * group message (removed members are among those named) */
  uint64_t weight = n + 1 +
                    (kind == MIM_OP_GROUP_CREATE
                         ? n
                         : mim__logic_group_weight(l, p->group, NULL));
  if (!admin && !admitted && !mim__logic_batch_room(l, c, weight)) {
    free(with_creator);
    return mim__logic_park(l, c, p->cmd, body, len, weight, NULL, slot);
  }
  size_t idx;
  rc = mim_write_batch_add_group(l->open, kind, p->group,
                                 (const char *const *)members, n,
                                 mim__logic_now(l), &idx);
  free(with_creator);
  if (rc < 0)
    return rc;
  /* the notice names who made the change (an operator: nobody) */
  if (mim_write_batch_set_notice(l->open, idx, admin ? "" : c->uid) < 0)
    mim__log_to(&l->log, MIM_LOG_WARN,
                "logic: out of memory for a group notice's actor");
  return mim__logic_group_wait(l, c, p->cmd, p->seq, admin, req_id, slot, idx,
                               weight);
}


void mim__logic_member_collect_uid(void *user, const char *uid) {
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
  char *d = strdup(uid);
  if (d == NULL) {
    mc->err = -ENOMEM;
    return;
  }
  mc->uids[mc->n++] = d;
}

static void collect_member(void *user, const struct mim_group_member *m) {
  mim__logic_member_collect_uid(user, m->uid);
}

void mim__logic_member_collect_finish(struct member_collect *mc) {
  for (size_t i = 0; i < mc->n; i++)
    free((char *)mc->uids[i]);
  free(mc->uids);
}


/* The most groups in one page of a user's groups (docs/protocol.md §10:
 * "at most 500"). */
enum { GROUPS_PAGE_MAX = 500 };

/* GROUP_LIST without a group: the groups of `uid`, a page after
 * p->after_group, at most the clamped p->limit. */
static int read_groups_of(struct mim_logic *l, const char *uid,
                          const struct mim_packet *p, struct mim_packet *r,
                          struct member_collect *mc) {
  const char *after = p->after_group != NULL ? p->after_group : "";
  if (after[0] != '\0' && !mim_id_valid(after))
    return -MIM_ERR_MALFORMED;
  /* at most GROUPS_PAGE_MAX whatever pull_limit_max says: a user may be
   * in any number of groups, and the page's bytes (each id up to
   * MIM_ID_MAX) must stay within what the RPC queue bounds and the
   * gateway's send_message_max count on (docs/protocol.md §12) */
  uint32_t limit = mim__logic_clamp_limit(l, p->limit);
  if (limit > GROUPS_PAGE_MAX)
    limit = GROUPS_PAGE_MAX;
  bool more = false;
  int rc = mim_backend_groups_of(l->cfg.backend, uid, after, limit,
                                 mim__logic_member_collect_uid, mc, &more);
  if (rc == 0)
    rc = mc->err;
  if (rc < 0)
    return rc == -ENOTSUP ? -MIM_ERR_UNKNOWN_CMD : rc;
  r->cmd = MIM_CMD_GROUP_LIST_RSP;
  r->groups = mc->uids;
  r->n_groups = mc->n;
  r->has_more = more;
  r->ts = mim__logic_now(l);
  return 0;
}

/* What one member adds to an encoded GroupResponse: the uid, its tag and
 * a length of up to 2 bytes (uids are at most MIM_ID_MAX). */
static size_t member_bytes(const char *uid) { return strlen(uid) + 3; }

/* How many of the first `n` uids fit in reply_bytes_max (at least one when
 * n > 0): a page never exceeds the bound whatever the uids' lengths. */
static size_t members_that_fit(const struct mim_logic *l,
                               const char *const *uids, size_t n) {
  size_t total = MIM_REPLY_OVERHEAD, k = 0;
  while (k < n) {
    size_t b = member_bytes(uids[k]);
    if (k > 0 && total + b > l->cfg.reply_bytes_max)
      break;
    total += b;
    k++;
  }
  return k;
}

/* GROUP_LIST of `group` paged (docs/protocol.md §10): the members after
 * `after` ("" = from the first), at most the clamped p->limit and
 * GROUPS_PAGE_MAX, cut to reply_bytes_max; has_more when more follow. The
 * caller checked the group id and the viewer's membership. */
static int read_members_page(struct mim_logic *l, const struct mim_packet *p,
                             const char *after, struct mim_packet *r,
                             struct member_collect *mc) {
  if (after[0] != '\0' && !mim_id_valid(after))
    return -MIM_ERR_MALFORMED;
  uint32_t limit = mim__logic_clamp_limit(l, p->limit);
  if (limit > GROUPS_PAGE_MAX)
    limit = GROUPS_PAGE_MAX;
  bool more = false;
  int rc = mim_backend_members_page(l->cfg.backend, p->group, after, limit,
                                    mim__logic_member_collect_uid, mc,
                                    &more);
  if (rc == 0)
    rc = mc->err;
  if (rc < 0)
    return rc == -ENOTSUP ? -MIM_ERR_UNKNOWN_CMD : rc;
  /* mc keeps every uid (freed by its owner); the reply shows the first */
  size_t kept = members_that_fit(l, mc->uids, mc->n);
  r->cmd = MIM_CMD_GROUP_LIST_RSP;
  r->group = p->group;
  r->members = mc->uids;
  r->n_members = kept;
  r->has_more = more || kept < mc->n;
  r->ts = mim__logic_now(l);
  return 0;
}

/* GROUP_LIST: `viewer` NULL = admin. Without a group it lists groups
 * instead: the viewer's, or (admin) those of the one uid in `members`.
 * With a group: a page of members when the request has a limit or an
 * after_member; else (a seed client) the whole list in uid order when it
 * fits reply_bytes_max, or else the first page with has_more. */
int mim__logic_read_group_list(struct mim_logic *l, const char *viewer,
                               const struct mim_packet *p, struct mim_packet *r,
                               struct member_collect *mc) {
  struct mim_backend *be = l->cfg.backend;
  if (p->group == NULL || p->group[0] == '\0') {
    if (viewer == NULL) {
      if (p->n_members != 1 || !mim_id_valid(p->members[0]))
        return -MIM_ERR_MALFORMED;
      viewer = p->members[0];
    }
    return read_groups_of(l, viewer, p, r, mc);
  }
  if (!mim_id_valid(p->group))
    return -MIM_ERR_MALFORMED;
  if (viewer != NULL) {
    uint64_t joined;
    int rc = be->ops->member_get(be->impl, p->group, viewer, &joined);
    if (rc < 0)
      return rc == -MIM_ERR_NO_SUCH_GROUP ? -MIM_ERR_NOT_MEMBER : rc;
  }
  const char *after = p->after_member != NULL ? p->after_member : "";
  if (p->limit > 0 || after[0] != '\0')
    return read_members_page(l, p, after, r, mc);
  int rc = be->ops->members_list(be->impl, p->group, collect_member, mc);
  if (rc == 0)
    rc = mc->err;
  if (rc < 0)
    return rc;
  if (members_that_fit(l, mc->uids, mc->n) < mc->n) {
    /* too large for one reply (long uids in a large group): the first
     * page instead, so that the reply stays within the bound and a client
     * that knows has_more can page on */
    mim__logic_member_collect_finish(mc);
    *mc = (struct member_collect){0};
    return read_members_page(l, p, "", r, mc);
  }
  r->cmd = MIM_CMD_GROUP_LIST_RSP;
  r->group = p->group;
  r->members = mc->uids;
  r->n_members = mc->n;
  r->ts = mim__logic_now(l);
  return 0;
}
