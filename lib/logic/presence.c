/* Typing indicators (cmd 48 -> push 49) and presence (cmd 50 -> 51, push
 * 52): docs/protocol.md §20, §21. Neither writes to the store: typing is
 * ephemeral and goes through the route table only (never waits for the
 * writer), presence is the route table's "at least one device" rule
 * (mim__logic_user_online(), the one the HTTP API uses too) plus the time
 * the last device went away.
 *
 * Who may see whom: only people who share a conversation. A one-to-one
 * pair shares one when its timeline holds a message (one read of one
 * entry); a group when both are members (one member lookup per group of
 * the asked user, at most PRESENCE_GROUPS_SCAN groups). Strangers and
 * unknown uids look the same: left out. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Groups of an asked user looked at when deciding whether the caller
 * shares one with them: bounds the work of one uid (docs/protocol.md §21:
 * a user in more groups may be left out, never a stranger shown). */
enum { PRESENCE_GROUPS_SCAN = 256 };
/* Users whose last_seen is remembered: past it no new one is recorded
 * (they read as 0, unknown) until restart. One entry per user. */
enum { LAST_SEEN_MAX = 1 << 20 };

/* A uid some connections subscribed to. */
struct psub {
  struct mim__hnode node;  /* in l->psubs */
  char *uid;
  struct conn **conns;
  size_t n, cap;
};

struct seen {
  struct mim__hnode node;  /* in l->last_seen */
  int64_t ms;
  char uid[];
};

static uint64_t uid_hash(const struct mim_logic *l, const char *uid) {
  return mim__hash_keyed(&l->hkey, uid, strlen(uid));
}

static struct psub *psub_find(const struct mim_logic *l, const char *uid) {
  uint64_t h = uid_hash(l, uid);
  for (struct mim__hnode *n = mim__htable_find(&l->psubs, h); n != NULL;
       n = mim__htable_next(n)) {
    struct psub *s = mim__container_of(n, struct psub, node);
    if (n->hash == h && strcmp(s->uid, uid) == 0)
      return s;
  }
  return NULL;
}

static struct seen *seen_find(const struct mim_logic *l, const char *uid) {
  uint64_t h = uid_hash(l, uid);
  for (struct mim__hnode *n = mim__htable_find(&l->last_seen, h); n != NULL;
       n = mim__htable_next(n)) {
    struct seen *s = mim__container_of(n, struct seen, node);
    if (n->hash == h && strcmp(s->uid, uid) == 0)
      return s;
  }
  return NULL;
}

int64_t mim__logic_last_seen(const struct mim_logic *l, const char *uid) {
  const struct seen *s = seen_find(l, uid);
  if (s != NULL)
    return s->ms;
  /* gone before this process started (or the table was full): the store
   * has it, if it was ever committed */
  int64_t ms = 0;
  if (mim_backend_last_seen(l->cfg.backend, uid, &ms) < 0)
    ms = 0;
  return ms;
}

int64_t mim_logic_last_seen(const struct mim_logic *l, const char *uid) {
  if (l == NULL || uid == NULL)
    return 0;
  return mim__logic_last_seen(l, uid);
}

static void seen_set(struct mim_logic *l, const char *uid, int64_t ms) {
  struct seen *s = seen_find(l, uid);
  if (s == NULL) {
    if (l->last_seen.count >= LAST_SEEN_MAX)
      return;
    size_t len = strlen(uid);
    s = malloc(sizeof *s + len + 1);
    if (s == NULL)
      return;
    memcpy(s->uid, uid, len + 1);
    if (mim__htable_insert(&l->last_seen, &s->node, uid_hash(l, uid)) < 0) {
      free(s);
      return;
    }
  }
  s->ms = ms;
}

/* ---- pushes ---- */

/* Encodes `pkt` once and hands it to the connections the fanout holds. */
static size_t fanout_emit(struct mim_logic *l, const struct mim_packet *pkt) {
  size_t n_gw = mim_fanout_gateway_count(l->fanout), sent = 0;
  if (n_gw == 0)
    return 0;
  uint8_t *body = NULL;
  size_t len = 0;
  if (mim__packet_encode_body_alloc(pkt, &body, &len) < 0)
    return 0; /* out of memory: an ephemeral push is lost, like a full link */
  for (size_t g = 0; g < n_gw; g++) {
    uint32_t gw;
    const struct mim_rpc_target *tg;
    size_t n;
    if (mim_fanout_gateway(l->fanout, g, &gw, &tg, &n) == 0 &&
        mim__logic_emit_deliver(l, gw, pkt->cmd, body, len, 0, tg, n) == 0)
      sent += n;
  }
  free(body);
  return sent;
}

void mim__logic_presence_push(struct mim_logic *l, const char *uid,
                              bool online, int64_t last_seen) {
  struct psub *s = psub_find(l, uid);
  if (s == NULL)
    return; /* nobody subscribed: a change costs nothing */
  mim_fanout_reset(l->fanout);
  for (size_t i = 0; i < s->n; i++)
    (void)mim_fanout_add_conn(l->fanout, s->conns[i]->ref, 0);
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PRESENCE;
  p.uid = uid;
  p.online = online;
  p.last_seen = last_seen;
  p.ts = mim__logic_now(l);
  l->stats.presence_pushes += fanout_emit(l, &p);
}

void mim__logic_presence_went(struct mim_logic *l, const char *uid,
                              bool online) {
  int64_t now = mim__logic_now(l);
  if (!online) {
    seen_set(l, uid, now);
    /* durable with the next batch, weighed like a cursor write: a restart
     * then still knows when. Never written at startup: a user online when
     * logicd died keeps the last_seen of their previous departure (or
     * none) until their devices come back or leave again (§21). */
    size_t idx;
    if (mim_write_batch_add_last_seen(l->open, uid, now, &idx) == 0)
      mim__logic_batch_charge(l, NULL, 1);
  }
  mim__logic_presence_push(l, uid, online,
                           online ? mim__logic_last_seen(l, uid) : now);
}

/* ---- subscriptions ---- */

/* Subscribes `c` to `uid`. Returns 1 when added, 0 when it already was,
 * -ENOBUFS at the connection's cap, -ENOMEM. */
static int subscribe(struct mim_logic *l, struct conn *c, const char *uid) {
  struct psub *s = psub_find(l, uid);
  if (s != NULL) {
    for (size_t i = 0; i < c->n_psubs; i++)
      if (c->psubs[i] == s)
        return 0;
  }
  if (c->n_psubs >= l->cfg.presence_subscribe_max)
    return -ENOBUFS;
  if (c->n_psubs == c->psubs_cap) {
    size_t cap = c->psubs_cap ? c->psubs_cap * 2 : 8;
    struct psub **v = realloc(c->psubs, cap * sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    c->psubs = v;
    c->psubs_cap = cap;
  }
  bool fresh = s == NULL;
  if (fresh) {
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->uid = strdup(uid)) == NULL) {
      free(s);
      return -ENOMEM;
    }
  }
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 4;
    struct conn **v = realloc(s->conns, cap * sizeof *v);
    if (v == NULL)
      goto fail;
    s->conns = v;
    s->cap = cap;
  }
  if (fresh && mim__htable_insert(&l->psubs, &s->node, uid_hash(l, uid)) < 0)
    goto fail;
  s->conns[s->n++] = c;
  c->psubs[c->n_psubs++] = s;
  return 1;
fail:
  if (fresh) {
    free(s->conns);
    free(s->uid);
    free(s);
  }
  return -ENOMEM;
}

void mim__logic_presence_unsubscribe_all(struct mim_logic *l, struct conn *c) {
  for (size_t i = 0; i < c->n_psubs; i++) {
    struct psub *s = c->psubs[i];
    for (size_t j = 0; j < s->n; j++) {
      if (s->conns[j] == c) {
        s->conns[j] = s->conns[--s->n];
        break;
      }
    }
    if (s->n == 0) {
      mim__htable_remove(&l->psubs, &s->node);
      free(s->conns);
      free(s->uid);
      free(s);
    }
  }
  free(c->psubs);
  c->psubs = NULL;
  c->n_psubs = c->psubs_cap = 0;
}

static void unsubscribe_route(void *user, const struct mim_route *r) {
  struct mim_logic *l = user;
  struct conn *c = mim__logic_conn_find(l, r->conn);
  if (c != NULL)
    mim__logic_presence_unsubscribe_all(l, c);
}

void mim__logic_presence_forget(struct mim_logic *l, const char *uid) {
  /* those subscribed to uid */
  struct psub *s = psub_find(l, uid);
  if (s != NULL) {
    for (size_t j = 0; j < s->n; j++) {
      struct conn *c = s->conns[j];
      for (size_t i = 0; i < c->n_psubs; i++)
        if (c->psubs[i] == s) {
          c->psubs[i] = c->psubs[--c->n_psubs];
          break;
        }
    }
    mim__htable_remove(&l->psubs, &s->node);
    free(s->conns);
    free(s->uid);
    free(s);
  }
  /* and uid's own subscriptions */
  mim_sessions_foreach_device(l->sessions, uid, unsubscribe_route, l);
}

static void free_psub(void *user, struct mim__hnode *n) {
  (void)user;
  struct psub *s = mim__container_of(n, struct psub, node);
  free(s->conns);
  free(s->uid);
  free(s);
}

static void free_seen(void *user, struct mim__hnode *n) {
  (void)user;
  free(mim__container_of(n, struct seen, node));
}

void mim__logic_presence_finish(struct mim_logic *l) {
  mim__htable_foreach(&l->psubs, free_psub, NULL);
  mim__htable_finish(&l->psubs);
  mim__htable_foreach(&l->last_seen, free_seen, NULL);
  mim__htable_finish(&l->last_seen);
}

/* ---- who shares a conversation with whom ---- */

/* Whether the one-to-one conversation of `a` and `b` holds a message. */
static bool pair_talked(struct mim_logic *l, const char *a, const char *b) {
  struct mim_backend *be = l->cfg.backend;
  struct mim_message_list ml;
  mim_message_list_init(&ml);
  int rc = be->ops->read_conversation(be->impl, a, b, NULL, 0, 0, 1, &ml);
  bool talked = rc == 0 && ml.count > 0;
  mim_message_list_finish(&ml);
  return talked;
}

struct shared_scan {
  struct mim_logic *l;
  const char *other;
  bool found;
};

static void group_has_other(void *user, const char *group) {
  struct shared_scan *s = user;
  struct mim_backend *be = s->l->cfg.backend;
  if (!s->found && be->ops->member_get(be->impl, group, s->other, NULL) == 0)
    s->found = true;
}

/* Whether `viewer` may see the presence of `uid`: itself, a one-to-one
 * peer it talked with, or someone in one of the (first
 * PRESENCE_GROUPS_SCAN) groups of `uid`. */
static bool shares(struct mim_logic *l, const char *viewer, const char *uid) {
  if (strcmp(viewer, uid) == 0)
    return true;
  if (pair_talked(l, viewer, uid))
    return true;
  struct shared_scan s = {l, viewer, false};
  bool more = false;
  (void)mim_backend_groups_of(l->cfg.backend, uid, "", PRESENCE_GROUPS_SCAN,
                              group_has_other, &s, &more);
  return s.found;
}

/* ---- typing (cmd 48) ---- */

static bool typing_rate_ok(struct mim_logic *l, struct conn *c) {
  int64_t now = mim__logic_now(l);
  int64_t cap = (int64_t)l->cfg.typing_burst * 1000;
  if (c->typing_refilled_at == 0) { /* first indicator: a full bucket */
    c->typing_tokens_milli = cap;
    c->typing_refilled_at = now;
  }
  if (now > c->typing_refilled_at) {
    c->typing_tokens_milli += (now - c->typing_refilled_at) *
                              (int64_t)l->cfg.typing_rate_per_s;
    if (c->typing_tokens_milli > cap)
      c->typing_tokens_milli = cap;
    c->typing_refilled_at = now;
  }
  if (c->typing_tokens_milli < 1000)
    return false;
  c->typing_tokens_milli -= 1000;
  return true;
}

struct typing_targets {
  struct mim_logic *l;
  const char *sender;
};

static void add_typing_route(void *user, const struct mim_route *r) {
  struct typing_targets *t = user;
  if ((r->caps & MIM_CAP_TYPING) == 0)
    return; /* seed clients and others that did not ask see nothing new */
  if (strcmp(r->uid, t->sender) == 0)
    return; /* never to the typist's own devices */
  (void)mim_fanout_add_conn(t->l->fanout, r->conn, 0);
}

static void add_typing_member(void *user, const char *uid) {
  struct typing_targets *t = user;
  if (strcmp(uid, t->sender) != 0)
    (void)mim_sessions_foreach_device(t->l->sessions, uid, add_typing_route,
                                      t);
}

int mim__logic_handle_typing(struct mim_logic *l, struct conn *c,
                             const struct mim_packet *p) {
  bool has_peer = p->peer[0] != '\0', has_group = p->group[0] != '\0';
  if (has_peer == has_group || (has_peer && !mim_id_valid(p->peer)) ||
      (has_group && !mim_id_valid(p->group)))
    return -MIM_ERR_MALFORMED;
  /* everything below is dropped silently: no reply, no hint of why */
  if (!typing_rate_ok(l, c) || (has_peer && strcmp(p->peer, c->uid) == 0))
    goto drop;
  struct mim_backend *be = l->cfg.backend;
  struct typing_targets t = {l, c->uid};
  mim_fanout_reset(l->fanout);
  if (has_peer) {
    if (!pair_talked(l, c->uid, p->peer))
      goto drop; /* nobody can ping strangers */
    (void)mim_sessions_foreach_device(l->sessions, p->peer, add_typing_route,
                                      &t);
  } else {
    if (be->ops->member_get(be->impl, p->group, c->uid, NULL) < 0)
      goto drop;
    bool more = false;
    /* one page of the bound: a bigger group (more follow) relays nothing */
    int rc = mim_backend_members_page(be, p->group, "",
                                      (size_t)l->cfg.typing_group_max,
                                      add_typing_member, &t, &more);
    if (rc < 0 || more)
      goto drop;
  }
  struct mim_packet out;
  mim_packet_init(&out);
  out.cmd = MIM_CMD_TYPING;
  out.from = c->uid;
  out.group = has_group ? p->group : "";
  out.ts = mim__logic_now(l);
  (void)fanout_emit(l, &out);
  l->stats.typing_relayed++;
  return 0;
drop:
  mim_fanout_reset(l->fanout);
  l->stats.typing_dropped++;
  return 0;
}

/* ---- presence query (cmd 50) ---- */

int mim__logic_handle_presence(struct mim_logic *l, struct conn *c,
                               const struct mim_packet *p) {
  if (p->n_members > l->cfg.presence_query_max)
    return -MIM_ERR_TOO_LARGE;
  for (size_t i = 0; i < p->n_members; i++)
    if (!mim_id_valid(p->members[i]))
      return -MIM_ERR_MALFORMED;
  struct mim_presence_item *items =
      calloc(p->n_members ? p->n_members : 1, sizeof *items);
  if (items == NULL)
    return -ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < p->n_members; i++) {
    const char *uid = p->members[i];
    bool dup = false;
    for (size_t j = 0; j < n && !dup; j++)
      dup = strcmp(items[j].uid, uid) == 0;
    if (dup || !shares(l, c->uid, uid))
      continue;
    bool online = mim__logic_user_online(l, uid);
    items[n].uid = uid;
    items[n].online = online;
    items[n].last_seen = online ? 0 : mim__logic_last_seen(l, uid);
    n++;
    /* a transient session (one HTTP request) receives no pushes */
    if (p->subscribe && (c->caps & MIM_CAP_PRESENCE) != 0 &&
        (c->caps & MIM_CAP_TRANSIENT) == 0)
      (void)subscribe(l, c, uid); /* past the cap: answered, not subscribed */
  }
  struct mim_packet r;
  mim_packet_init(&r);
  r.cmd = MIM_CMD_PRESENCE_RSP;
  r.seq = p->seq;
  r.ts = mim__logic_now(l);
  r.presences = items;
  r.n_presences = n;
  mim__logic_reply(l, c, &r);
  free(items);
  return 0;
}
