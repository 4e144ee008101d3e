/* Group roles: a role, mute, info or dissolve change (GROUP_MANAGE), and
 * the group info read (GROUP_INFO). Who may do what is decided by the
 * store inside the commit (mim_group_rule_check(), <mim/store.h>), for
 * clients and operators alike; the checks here only refuse early what can
 * never succeed, so that a stranger learns nothing about a group. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool action_needs_target(uint32_t a) {
  return a == MIM_GA_TRANSFER || a == MIM_GA_PROMOTE || a == MIM_GA_DEMOTE ||
         a == MIM_GA_MUTE || a == MIM_GA_UNMUTE;
}

int mim__logic_queue_manage(struct mim_logic *l, struct conn *c,
                            const struct mim_packet *p, bool admin,
                            uint64_t req_id, struct slot *slot,
                            const uint8_t *body, size_t len, bool admitted) {
  if (!mim_id_valid(p->group) || p->type < MIM_GA_TRANSFER ||
      p->type > MIM_GA_DISSOLVE || p->until < 0)
    return -MIM_ERR_MALFORMED;
  const char *target = p->to != NULL ? p->to : "";
  if (action_needs_target(p->type) ? !mim_id_valid(target)
                                   : target[0] != '\0')
    return -MIM_ERR_MALFORMED;
  if (!admin) {
    /* members manage the group; anyone else learns nothing about it */
    uint64_t joined;
    struct mim_backend *be = l->cfg.backend;
    int rc = be->ops->member_get(be->impl, p->group, c->uid, &joined);
    if (rc == -MIM_ERR_NO_SUCH_GROUP)
      rc = -MIM_ERR_NOT_MEMBER;
    if (rc < 0)
      return rc;
  }
  bool info = p->type == MIM_GA_SET_INFO;
  /* the group's record, and the notice to every member; a dissolve also
   * deletes each membership and its index entry */
  /* (a dissolve touches every member, large group or not: it weighs by
   * the member count, a message's weight times three) */
  uint64_t weight =
      2 + (p->type == MIM_GA_DISSOLVE
               ? 9 * mim__logic_group_members(l, p->group)
               : mim__logic_group_weight(l, p->group, NULL));
  if (!admin && !admitted && !mim__logic_batch_room(l, c, weight))
    return mim__logic_park(l, c, p->cmd, body, len, weight, NULL, slot);
  size_t idx;
  int rc = mim_write_batch_add_group_manage(
      l->open, p->group, admin ? "" : c->uid, (enum mim_group_action)p->type,
      target, p->until, info ? (p->content ? p->content : "") : NULL,
      info ? (p->text ? p->text : "") : NULL, mim__logic_now(l), &idx);
  if (rc == -EINVAL)
    return -MIM_ERR_MALFORMED;
  if (rc < 0)
    return rc;
  return mim__logic_group_wait(l, c, p->cmd, p->seq, admin, req_id, slot, idx,
                               weight);
}

static char *dup_or_err(const char *s, int *err) {
  char *d = strdup(s != NULL ? s : "");
  if (d == NULL)
    *err = -ENOMEM;
  return d;
}

static int dup_list(const char *const *src, size_t n, const char ***out,
                    size_t *n_out) {
  const char **v = calloc(n ? n : 1, sizeof *v);
  if (v == NULL)
    return -ENOMEM;
  *out = v;
  for (size_t i = 0; i < n; i++) {
    if ((v[i] = strdup(src[i])) == NULL)
      return -ENOMEM;
    *n_out = i + 1;
  }
  return 0;
}

struct info_ctx {
  struct mim__group_info_copy *copy;
  int64_t now;
};

static void copy_info(void *user, const struct mim_group_info *i) {
  struct info_ctx *ctx = user;
  struct mim__group_info_copy *g = ctx->copy;
  int err = 0;
  g->owner = dup_or_err(i->owner, &err);
  g->name = dup_or_err(i->name, &err);
  g->metadata = dup_or_err(i->metadata, &err);
  g->muted_all = i->muted_all;
  g->large = i->large;
  if (err == 0)
    err = dup_list(i->admins, i->n_admins, &g->admins, &g->n_admins);
  /* only the mutes in force: an expired one is no mute */
  const char *live[MIM_GROUP_MUTED_MAX];
  size_t n = 0;
  for (size_t k = 0; k < i->n_muted && n < MIM_GROUP_MUTED_MAX; k++)
    if (i->muted_until[k] == 0 || i->muted_until[k] > ctx->now)
      live[n++] = i->muted[k];
  if (err == 0)
    err = dup_list(live, n, &g->muted, &g->n_muted);
  g->err = err;
}

void mim__logic_group_info_finish(struct mim__group_info_copy *g) {
  free(g->owner);
  free(g->name);
  free(g->metadata);
  for (size_t i = 0; i < g->n_admins; i++)
    free((char *)g->admins[i]);
  free(g->admins);
  for (size_t i = 0; i < g->n_muted; i++)
    free((char *)g->muted[i]);
  free(g->muted);
  memset(g, 0, sizeof *g);
}

int mim__logic_read_group_info(struct mim_logic *l, const char *viewer,
                               const struct mim_packet *p, struct mim_packet *r,
                               struct mim__group_info_copy *g) {
  struct mim_backend *be = l->cfg.backend;
  if (!mim_id_valid(p->group))
    return -MIM_ERR_MALFORMED;
  if (viewer != NULL) {
    uint64_t joined;
    int rc = be->ops->member_get(be->impl, p->group, viewer, &joined);
    if (rc < 0)
      return rc == -MIM_ERR_NO_SUCH_GROUP ? -MIM_ERR_NOT_MEMBER : rc;
  }
  struct info_ctx ctx = {g, mim__logic_now(l)};
  int rc = mim_backend_group_info(be, p->group, copy_info, &ctx);
  if (rc == 0)
    rc = g->err;
  if (rc < 0)
    return rc == -ENOTSUP ? -MIM_ERR_UNKNOWN_CMD : rc;
  r->cmd = MIM_CMD_GROUP_INFO_RSP;
  r->group = p->group;
  r->from = g->owner;
  r->members = g->admins;
  r->n_members = g->n_admins;
  r->groups = g->muted;
  r->n_groups = g->n_muted;
  r->caps = (g->muted_all ? 1u : 0u) | (g->large ? 2u : 0u);
  r->content = g->name;
  r->text = g->metadata;
  r->ts = mim__logic_now(l);
  return 0;
}
