/* Large groups (read diffusion, docs/architecture.md §6.3): their
 * messages are in no inbox, so the logic keeps, per large group, the
 * connections that follow it live: the online MIM_CAP_LARGE connections
 * of its members. A message then costs work per such connection, never
 * per member.
 *
 * The index is kept in step with what can change it: a login (the user's
 * large groups, from the store), the end of a session, a committed add or
 * remove, a dissolve and the switch of a group to large. It lives in
 * memory only; after a restart every connection logs in again and
 * rebuilds it. A login's read and a commit that changes the same
 * membership can land in either order, so adding is idempotent and
 * removing tolerates absence.
 *
 * Both directions are arrays with back-indices, so joining and leaving
 * are O(1) and a push walks one array. */
#include "logic/large.h"

#include <stdlib.h>
#include <string.h>

/* A large group with followers online. */
struct lgroup {
  struct mim__hnode node; /* in l->large, by group id */
  char *group;
  struct lfollow *v;      /* its followers */
  size_t n, cap;
};

/* A connection following a large group. */
struct lfollow {
  struct conn *c;
  size_t back; /* its index in c->lrefs */
};

/* A large group a connection follows (struct conn.lrefs). */
struct lref {
  struct lgroup *g;
  size_t pos; /* its index in g->v */
};

static uint64_t group_hash(const struct mim_logic *l, const char *group) {
  return mim__hash_keyed(&l->hkey, group, strlen(group));
}

static struct lgroup *lgroup_find(const struct mim_logic *l,
                                  const char *group) {
  uint64_t h = group_hash(l, group);
  for (struct mim__hnode *n = mim__htable_find(&l->large, h); n != NULL;
       n = mim__htable_next(n)) {
    struct lgroup *g = mim__container_of(n, struct lgroup, node);
    if (n->hash == h && strcmp(g->group, group) == 0)
      return g;
  }
  return NULL;
}

static struct lgroup *lgroup_get(struct mim_logic *l, const char *group) {
  struct lgroup *g = lgroup_find(l, group);
  if (g != NULL)
    return g;
  if ((g = calloc(1, sizeof *g)) == NULL)
    return NULL;
  if ((g->group = strdup(group)) == NULL ||
      mim__htable_insert(&l->large, &g->node, group_hash(l, group)) < 0) {
    free(g->group);
    free(g);
    return NULL;
  }
  return g;
}

static void lgroup_free(struct mim_logic *l, struct lgroup *g) {
  mim__htable_remove(&l->large, &g->node);
  free(g->v);
  free(g->group);
  free(g);
}

static bool grow(void **v, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return true;
  size_t c = *cap ? *cap * 2 : 4;
  while (c < need)
    c *= 2;
  void *p = realloc(*v, c * size);
  if (p == NULL)
    return false;
  *v = p;
  *cap = c;
  return true;
}

/* Makes `c` follow `group` (once: `fresh` says `c` cannot follow it yet,
 * as at a login, which reads each group once; otherwise it is looked for
 * first, an O(groups followed) walk a login would make quadratic). Out of
 * memory: it does not, and pulls what it missed by sync, as after any gap
 * (docs/protocol.md §22). */
static void follow(struct mim_logic *l, struct conn *c, const char *group,
                   bool fresh) {
  for (size_t i = 0; !fresh && i < c->n_lrefs; i++)
    if (strcmp(c->lrefs[i].g->group, group) == 0)
      return;
  struct lgroup *g = lgroup_get(l, group);
  if (g == NULL)
    goto oom;
  if (!grow((void **)&g->v, &g->cap, g->n + 1, sizeof *g->v) ||
      !grow((void **)&c->lrefs, &c->lrefs_cap, c->n_lrefs + 1,
            sizeof *c->lrefs)) {
    if (g->n == 0)
      lgroup_free(l, g);
    goto oom;
  }
  g->v[g->n] = (struct lfollow){c, c->n_lrefs};
  c->lrefs[c->n_lrefs] = (struct lref){g, g->n};
  g->n++;
  c->n_lrefs++;
  return;
oom:
  mim__log_to(&l->log, MIM_LOG_WARN,
              "logic: out of memory: a connection of %s does not follow "
              "large group %s live", c->uid, group);
}

/* Drops entry `i` of c->lrefs (and its follower entry). */
static void unfollow_at(struct mim_logic *l, struct conn *c, size_t i) {
  struct lref r = c->lrefs[i];
  struct lgroup *g = r.g;
  /* swap the group's last follower into the hole */
  g->v[r.pos] = g->v[--g->n];
  if (r.pos < g->n)
    g->v[r.pos].c->lrefs[g->v[r.pos].back].pos = r.pos;
  /* and the connection's last group */
  c->lrefs[i] = c->lrefs[--c->n_lrefs];
  if (i < c->n_lrefs)
    c->lrefs[i].g->v[c->lrefs[i].pos].back = i;
  if (g->n == 0)
    lgroup_free(l, g);
}

static void unfollow(struct mim_logic *l, struct conn *c, const char *group) {
  for (size_t i = 0; i < c->n_lrefs; i++)
    if (strcmp(c->lrefs[i].g->group, group) == 0) {
      unfollow_at(l, c, i);
      return;
    }
}

static bool follows_large(const struct conn *c) {
  return c->authed && (c->caps & MIM_CAP_LARGE) != 0;
}

struct login_ctx {
  struct mim_logic *l;
  struct conn *c;
  bool fresh; /* it follows nothing yet (always, at a login) */
};

static void follow_cb(void *user, const char *group) {
  struct login_ctx *x = user;
  follow(x->l, x->c, group, x->fresh);
}

void mim__logic_large_login(struct mim_logic *l, struct conn *c) {
  if (!follows_large(c) || (c->caps & MIM_CAP_TRANSIENT) != 0)
    return;
  struct login_ctx x = {l, c, c->n_lrefs == 0};
  int rc = mim_backend_large_groups_of(l->cfg.backend, c->uid, follow_cb, &x);
  if (rc < 0 && rc != -ENOTSUP)
    mim__log_to(&l->log, MIM_LOG_WARN,
                "logic: large groups of %s unread (%s): they sync by hand",
                c->uid, mim_strerror(rc));
}

void mim__logic_large_logout(struct mim_logic *l, struct conn *c) {
  while (c->n_lrefs > 0)
    unfollow_at(l, c, c->n_lrefs - 1);
  free(c->lrefs);
  c->lrefs = NULL;
  c->lrefs_cap = 0;
}

struct user_ctx {
  struct mim_logic *l;
  const char *group;
  bool join;
  uint64_t joined_max; /* member_cb: only members who joined by then */
};

static void user_route(void *user, const struct mim_route *r) {
  struct user_ctx *x = user;
  struct conn *c = mim__logic_conn_find(x->l, r->conn);
  if (c == NULL || !follows_large(c))
    return;
  if (x->join)
    follow(x->l, c, x->group, false);
  else
    unfollow(x->l, c, x->group);
}

void mim__logic_large_member(struct mim_logic *l, const char *group,
                             const char *uid, bool join) {
  struct user_ctx x = {l, group, join, UINT64_MAX};
  mim_sessions_foreach_device(l->sessions, uid, user_route, &x);
}

static void member_cb(void *user, const struct mim_group_member *m) {
  struct user_ctx *x = user;
  /* a member added later in the same batch (the list is read after its
   * commit) follows from its own add on: the messages between are from
   * before its join */
  if (m->joined_conv_seq > x->joined_max)
    return;
  mim_sessions_foreach_device(x->l->sessions, m->uid, user_route, x);
}

void mim__logic_large_switched(struct mim_logic *l, const char *group,
                               uint64_t joined_max) {
  /* once per group: a member list read, then lookups of who is online */
  struct user_ctx x = {l, group, true, joined_max};
  struct mim_backend *be = l->cfg.backend;
  int rc = be->ops->members_list(be->impl, group, member_cb, &x);
  if (rc < 0)
    mim__log_to(&l->log, MIM_LOG_WARN,
                "logic: members of large group %s unread (%s): they follow "
                "it from their next login", group, mim_strerror(rc));
}

void mim__logic_large_dissolved(struct mim_logic *l, const char *group) {
  struct lgroup *g = lgroup_find(l, group);
  while (g != NULL && g->n > 0) {
    struct lfollow f = g->v[g->n - 1];
    bool last = g->n == 1;
    unfollow_at(l, f.c, f.back); /* frees g with its last follower */
    if (last)
      break;
  }
}

size_t mim__logic_large_push(struct mim_logic *l, const char *group,
                             uint32_t cap, const struct mim_conn_ref *exclude,
                             const struct mim_packet *pkt) {
  struct lgroup *g = lgroup_find(l, group);
  if (g == NULL)
    return 0;
  mim_fanout_reset(l->fanout);
  size_t n = 0;
  for (size_t i = 0; i < g->n; i++) {
    struct mim_conn_ref r = g->v[i].c->ref;
    if ((g->v[i].c->caps & cap) != cap)
      continue;
    if (exclude != NULL && r.gateway == exclude->gateway &&
        r.conn_id == exclude->conn_id)
      continue;
    if (mim_fanout_add_conn(l->fanout, r, 0) == 0)
      n++;
  }
  mim__logic_fanout_emit(l, pkt);
  return n;
}

static void lgroup_free_cb(void *user, struct mim__hnode *n) {
  struct mim_logic *l = user;
  lgroup_free(l, mim__container_of(n, struct lgroup, node));
}

void mim__logic_large_finish(struct mim_logic *l) {
  mim__htable_foreach(&l->large, lgroup_free_cb, l);
  mim__htable_finish(&l->large);
}
