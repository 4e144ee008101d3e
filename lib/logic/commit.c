/* The logic's writes: requests that change the store become operations of
 * the open batch; the batch is committed elsewhere; its outcomes come back
 * here and turn into replies (in request order) and pushes (per gateway). */
#include "logic/commit.h"

#include <stdlib.h>
#include <string.h>

/* ---- pending operations ---- */

static int pending_list_add(struct pending_list *pl, struct pending *p) {
  if (pl->count == pl->cap) {
    size_t cap = pl->cap ? pl->cap * 2 : 64;
    struct pending **items = realloc(pl->items, cap * sizeof *items);
    if (items == NULL)
      return -ENOMEM;
    pl->items = items;
    pl->cap = cap;
  }
  pl->items[pl->count++] = p;
  return 0;
}

struct pending *mim__logic_pending_new(struct mim_logic *l,
                                       enum pending_kind kind, size_t op) {
  struct pending *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  p->kind = kind;
  p->op_index = op;
  if (pending_list_add(&l->open_pending, p) < 0) {
    free(p);
    return NULL;
  }
  return p;
}

static int waiter_push(struct pending *p, struct waiter *w) {
  /* append: waiters are answered in the order they arrived */
  struct waiter **tail = &p->waiters;
  while (*tail != NULL)
    tail = &(*tail)->next;
  *tail = w;
  return 0;
}

int mim__logic_waiter_add(struct pending *p, const struct conn *c,
                          struct slot *s, int64_t req_seq) {
  struct waiter *w = calloc(1, sizeof *w);
  if (w == NULL)
    return -ENOMEM;
  w->ref = c->ref;
  w->conn_gen = c->gen;
  w->slot_id = s->id;
  w->req_seq = req_seq;
  return waiter_push(p, w);
}

int mim__logic_waiter_add_admin(struct pending *p, uint64_t req_id) {
  struct waiter *w = calloc(1, sizeof *w);
  if (w == NULL)
    return -ENOMEM;
  w->admin = true;
  w->req_id = req_id;
  return waiter_push(p, w);
}

static void pending_free(struct mim_logic *l, struct pending *p) {
  if (p->dedup_key != NULL)
    mim__htable_remove(&l->inflight, &p->dedup_node);
  struct waiter *w = p->waiters;
  while (w != NULL) {
    struct waiter *next = w->next;
    free(w);
    w = next;
  }
  free(p->dedup_key);
  free(p);
}

static void pending_list_clear(struct mim_logic *l, struct pending_list *pl) {
  for (size_t i = 0; i < pl->count; i++)
    pending_free(l, pl->items[i]);
  pl->count = 0;
}

void mim__logic_pending_finish(struct mim_logic *l) {
  pending_list_clear(l, &l->open_pending);
  pending_list_clear(l, &l->out_pending);
  free(l->open_pending.items);
  free(l->out_pending.items);
  mim__htable_finish(&l->inflight);
}

/* ---- in-flight dedup: retries that arrive before the commit ---- */

struct pending *mim__logic_inflight_find(struct mim_logic *l, const char *key,
                                         size_t key_len) {
  /* (sender, client_msg_id): both chosen by the client, so keyed */
  uint64_t h = mim__hash_keyed(&l->hkey, key, key_len);
  for (struct mim__hnode *n = mim__htable_find(&l->inflight, h); n != NULL;
       n = mim__htable_next(n)) {
    struct pending *p = mim__container_of(n, struct pending, dedup_node);
    if (p->dedup_key_len == key_len && memcmp(p->dedup_key, key, key_len) == 0)
      return p;
  }
  return NULL;
}

int mim__logic_inflight_add(struct mim_logic *l, struct pending *p,
                            const char *key, size_t key_len) {
  p->dedup_key = malloc(key_len);
  if (p->dedup_key == NULL)
    return -ENOMEM;
  memcpy(p->dedup_key, key, key_len);
  p->dedup_key_len = key_len;
  uint64_t h = mim__hash_keyed(&l->hkey, key, key_len);
  if (mim__htable_insert(&l->inflight, &p->dedup_node, h) < 0) {
    free(p->dedup_key);
    p->dedup_key = NULL;
    return -ENOMEM;
  }
  return 0;
}

/* ---- the write budget: parked writes, taking turns ----
 *
 * One group message is as many store writes as the group has members, and
 * one commit is one transaction of the single writer: a member flooding a
 * large group would otherwise fill every batch, and everybody's sends
 * would wait for transactions of millions of writes. So the open batch
 * takes at most batch_max_ops writes (one oversized write goes alone in
 * an empty batch). A client write that does not fit is parked in its
 * connection's reply queue, in order (its later writes park behind it,
 * its later reads wait for its reply). When a batch is taken, connections
 * with parked writes fill the next one in turns, one write each per round;
 * those served go to the back, those that did not fit keep their place.
 * So a flooder gets at most every other batch while others wait, and the
 * queue a flooder can build is its own (conn_pending_max). */

bool mim__logic_batch_room(const struct mim_logic *l, const struct conn *c,
                           uint64_t weight) {
  if (c != NULL && c->n_parked > 0)
    return false;
  if (l->open_weight == 0)
    return true;
  return weight <= l->cfg.batch_max_ops &&
         l->open_weight + weight <= l->cfg.batch_max_ops;
}

void mim__logic_batch_charge(struct mim_logic *l, struct conn *c,
                             uint64_t weight) {
  l->open_weight += weight > 0 ? weight : 1;
  if (c != NULL)
    c->served_batch = l->open_batch;
}

static void park_append(struct mim_logic *l, struct conn *c) {
  c->park_next = NULL;
  c->park_prev = l->park_tail;
  if (l->park_tail != NULL)
    l->park_tail->park_next = c;
  else
    l->park_head = c;
  l->park_tail = c;
  c->in_park = true;
}

void mim__logic_park_remove(struct mim_logic *l, struct conn *c) {
  if (!c->in_park)
    return;
  if (c->park_prev != NULL)
    c->park_prev->park_next = c->park_next;
  else
    l->park_head = c->park_next;
  if (c->park_next != NULL)
    c->park_next->park_prev = c->park_prev;
  else
    l->park_tail = c->park_prev;
  c->park_prev = c->park_next = NULL;
  c->in_park = false;
}

int mim__logic_park(struct mim_logic *l, struct conn *c, uint32_t cmd,
                    const uint8_t *body, size_t len, uint64_t weight,
                    const char *group, struct slot *s) {
  /* the request, then (for a group message) its group id, so admission
   * can weigh it again without decoding it */
  size_t glen = group != NULL ? strlen(group) : 0;
  uint8_t *copy = malloc(len + 1 + glen + 1);
  if (copy == NULL)
    return -ENOMEM;
  if (len > 0)
    memcpy(copy, body, len);
  copy[len] = '\0';
  if (glen > 0)
    memcpy(copy + len + 1, group, glen);
  copy[len + 1 + glen] = '\0';
  if (s == NULL && (s = mim__logic_slot_push(c)) == NULL) {
    free(copy);
    return -ENOMEM;
  }
  free(s->body);
  s->body = copy;
  s->body_len = len;
  s->cmd = cmd;
  s->weight = weight;
  s->state = SLOT_PARKED;
  c->n_parked++;
  if (!c->in_park)
    park_append(l, c);
  return 0;
}

static struct slot *first_parked(const struct conn *c) {
  for (struct slot *s = c->head; s != NULL; s = s->next)
    if (s->state == SLOT_PARKED)
      return s;
  return NULL;
}

static uint64_t parked_weight(struct mim_logic *l, const struct slot *s);

/* Runs the first parked write of `c` if it fits the open batch; one
 * larger than the whole budget fits an empty batch when `alone` allows. */
static bool admit_one(struct mim_logic *l, struct conn *c, bool alone) {
  struct slot *s = first_parked(c);
  if (s == NULL) {
    c->n_parked = 0;
    return false;
  }
  uint64_t w = parked_weight(l, s);
  if ((l->open_weight > 0 || !alone) &&
      (w > l->cfg.batch_max_ops ||
       l->open_weight + w > l->cfg.batch_max_ops))
    return false;
  s->weight = w;
  uint8_t *req = s->body;
  size_t req_len = s->body_len;
  s->body = NULL;
  s->body_len = 0;
  s->state = SLOT_SILENT; /* the handler gives it its reply or a waiter */
  c->n_parked--;
  l->up.run_parked(l, c, s->cmd, req, req_len, s);
  free(req);
  mim__logic_conn_flush(l, c); /* an error reply may be ready at once */
  return true;
}

/* Fills the open batch from parked writes, in turns (see above). The
 * first round skips connections that had a write in the batch just taken,
 * so those that had none go first. Every other batch starts with the
 * writes that fit it, and a write larger than the whole budget may have it
 * alone only if none does: small writes never wait behind more than one
 * oversized one, and oversized ones still get every other batch. */
static void admit_parked(struct mim_logic *l) {
  bool small_first = l->open_batch % 2 == 0;
  for (int round = 0; l->park_head != NULL; round++) {
    bool progress = false;
    bool alone = !small_first || l->open_weight > 0;
    struct conn *waiting_head = NULL, *waiting_tail = NULL;
    struct conn *served_head = NULL, *served_tail = NULL;
    while (l->park_head != NULL) {
      struct conn *c = l->park_head;
      mim__logic_park_remove(l, c);
      bool just_served = c->served_batch + 1 == l->open_batch;
      bool ran = (round > 0 || !just_served) && admit_one(l, c, alone);
      progress |= ran;
      /* done, or parked again by a request its reply let run (a group
       * change that heads its queue now): then it is in the ring already */
      if (c->n_parked == 0 || c->in_park)
        continue;
      /* a private list, re-linked into the ring below */
      struct conn **head = ran ? &served_head : &waiting_head;
      struct conn **tail = ran ? &served_tail : &waiting_tail;
      c->park_next = NULL;
      c->park_prev = *tail;
      if (*tail != NULL)
        (*tail)->park_next = c;
      else
        *head = c;
      *tail = c;
    }
    for (struct conn *c = waiting_head, *next; c != NULL; c = next) {
      next = c->park_next;
      park_append(l, c);
    }
    for (struct conn *c = served_head, *next; c != NULL; c = next) {
      next = c->park_next;
      park_append(l, c);
    }
    if (!progress && round > 0) {
      if (alone || l->open_weight > 0)
        break;
      small_first = false; /* nothing small waits: a large one may go */
    }
  }
}

/* ---- members per group: the weight of a group message ----
 *
 * A direct-mapped cache (no chains, so no key can make a lookup slow),
 * indexed by the logic's keyed hash, filled from the store on a miss and
 * refreshed by each committed group message (its recipient count) and
 * dropped by each committed group change. */

enum { GROUP_WEIGHTS = 1024 };

struct group_weight {
  char *group;  /* owned; NULL = empty */
  uint64_t members;
  bool large;   /* read diffusion: a message is one write whatever the
                   member count */
  uint64_t batch; /* l->open_batch when a message to it last joined one */
};

/* A message to a group that already has one in the open batch writes to
 * the very inbox pages the first one dirtied: measured, an append to a
 * page already dirty in the transaction costs about a tenth of a member's
 * first write (its page copied, written and synced). It counts this much
 * less. */
enum { GROUP_REPEAT_DISCOUNT = 8 };

/* Each member of a group costs the message this many writes on their own
 * pages: the inbox entry, the read position record (`uconv`) and the
 * conversation-list entry (`uclist`, moved: one delete, one put, on one
 * page). Counting only the inbox let a group flood make transactions
 * three times longer than the budget means, and others' sends waited. */
enum { GROUP_WRITES_PER_MEMBER = 3 };

static uint64_t members_weight(uint64_t members) {
  return (members > 0 ? members : 1) * GROUP_WRITES_PER_MEMBER;
}

static uint64_t discounted(const struct mim_logic *l,
                           const struct group_weight *g) {
  if (g->large)
    return 1;
  if (g->batch != l->open_batch)
    return members_weight(g->members);
  uint64_t w = members_weight(g->members) / GROUP_REPEAT_DISCOUNT;
  return w > 0 ? w : 1;
}

static struct group_weight *group_weight_slot(struct mim_logic *l,
                                              const char *group) {
  if (l->group_weights == NULL) {
    l->group_weights = calloc(GROUP_WEIGHTS, sizeof *l->group_weights);
    if (l->group_weights == NULL)
      return NULL;
  }
  uint64_t h = mim__hash_keyed(&l->hkey, group, strlen(group));
  return &l->group_weights[h & (GROUP_WEIGHTS - 1)];
}

static void group_weight_set(struct mim_logic *l, const char *group,
                             uint64_t members, bool large) {
  struct group_weight *g = group_weight_slot(l, group);
  if (g == NULL)
    return;
  if (g->group == NULL || strcmp(g->group, group) != 0) {
    char *copy = strdup(group);
    if (copy == NULL)
      return;
    free(g->group);
    g->group = copy;
    g->batch = 0;
  }
  g->members = members > 0 ? members : 1;
  g->large = large;
}

static void group_weight_forget(struct mim_logic *l, const char *group) {
  struct group_weight *g = group_weight_slot(l, group);
  if (g != NULL && g->group != NULL && strcmp(g->group, group) == 0) {
    free(g->group);
    g->group = NULL;
  }
}

struct size_info {
  bool large;
  uint64_t members;
};

static void size_of_group(void *user, const struct mim_group_info *i) {
  struct size_info *z = user;
  z->large = i->large;
  z->members = i->member_count;
}

static void count_member(void *user, const struct mim_group_member *m) {
  (void)m;
  (*(uint64_t *)user)++;
}

uint64_t mim__logic_group_weight(struct mim_logic *l, const char *group,
                                 const char *sender) {
  struct group_weight *g = group_weight_slot(l, group);
  if (g != NULL && g->group != NULL && strcmp(g->group, group) == 0)
    return discounted(l, g);
  struct mim_backend *be = l->cfg.backend;
  uint64_t n = 0;
  /* a non-member's send is refused without writes: it must not make us
   * read a big group's member list (one cheap lookup instead) */
  if (sender != NULL &&
      be->ops->member_get(be->impl, group, sender, NULL) < 0)
    return 1;
  /* a large group's member list is not read at all */
  struct size_info z = {false, 0};
  if (mim_backend_group_info(be, group, size_of_group, &z) == 0 && z.large) {
    group_weight_set(l, group, z.members, true);
    return 1;
  }
  if (be->ops->members_list(be->impl, group, count_member, &n) < 0)
    return 1; /* no such group (refused without writes) or a read error */
  group_weight_set(l, group, n, false);
  return members_weight(n);
}

uint64_t mim__logic_group_members(struct mim_logic *l, const char *group) {
  (void)mim__logic_group_weight(l, group, NULL); /* fills the cache */
  struct group_weight *g = group_weight_slot(l, group);
  if (g != NULL && g->group != NULL && strcmp(g->group, group) == 0)
    return g->members;
  return 1;
}

void mim__logic_group_joined(struct mim_logic *l, const char *group) {
  struct group_weight *g = group_weight_slot(l, group);
  if (g != NULL && g->group != NULL && strcmp(g->group, group) == 0)
    g->batch = l->open_batch;
}

/* The weight of parked write `s` if it joined the open batch now: a
 * message to a group may have become a repeat since it was parked. */
static uint64_t parked_weight(struct mim_logic *l, const struct slot *s) {
  if (s->cmd != MIM_CMD_C2G_SEND_REQ || l->group_weights == NULL)
    return s->weight;
  const char *group = (const char *)s->body + s->body_len + 1;
  struct group_weight *g = group_weight_slot(l, group);
  if (g != NULL && g->group != NULL && strcmp(g->group, group) == 0)
    return discounted(l, g);
  return s->weight;
}

void mim__logic_group_weights_finish(struct mim_logic *l) {
  if (l->group_weights == NULL)
    return;
  for (size_t i = 0; i < GROUP_WEIGHTS; i++)
    free(l->group_weights[i].group);
  free(l->group_weights);
  l->group_weights = NULL;
}

/* ---- taking and returning batches ---- */

bool mim_logic_has_writes(const struct mim_logic *l) {
  return mim_write_batch_count(l->open) > 0 || l->n_dirty > 0 ||
         l->park_head != NULL;
}

int mim_logic_take_batch(struct mim_logic *l, struct mim_write_batch **out) {
  if (l->out != NULL)
    return -EAGAIN;
  if (mim_write_batch_count(l->open) == 0)
    admit_parked(l);
  if (l->n_dirty > 0) {
    /* cursors are per connection, and every connection that acked since
     * the last write has one: under load they would outnumber the
     * messages. A batch of nothing else, or one past the interval, takes
     * them. */
    int64_t now = mim__logic_now(l);
    if (mim_write_batch_count(l->open) == 0 || now < l->cursors_written_at ||
        now - l->cursors_written_at >= (int64_t)l->cfg.cursor_flush_ms) {
      mim__logic_cursors_write(l);
      l->cursors_written_at = now;
    }
  }
  if (mim_write_batch_count(l->open) == 0)
    return -EAGAIN;
  struct mim_write_batch *next = l->spare;
  l->spare = NULL;
  if (next == NULL) {
    int rc = mim_write_batch_create(&next);
    if (rc < 0)
      return rc;
  }
  l->out = l->open;
  l->open = next;
  struct pending_list tmp = l->out_pending;
  l->out_pending = l->open_pending;
  l->open_pending = tmp; /* empty, keeps its array */
  for (size_t i = 0; i < l->out_pending.count; i++)
    l->out_pending.items[i]->in_open = false;
  l->open_weight = 0;
  l->open_batch++;
  /* the next batch gathers while this one commits: parked writes first */
  admit_parked(l);
  *out = l->out;
  return 0;
}

/* The waiter's connection and slot, if both still exist. */
static struct slot *waiter_slot(struct mim_logic *l, const struct waiter *w,
                                struct conn **conn) {
  struct conn *c = mim__logic_conn_find(l, w->ref);
  if (c == NULL || c->gen != w->conn_gen)
    return NULL;
  *conn = c;
  return mim__logic_slot_find(c, w->slot_id);
}

/* Answers every waiter of `p`: `reply` (its seq set per waiter) or `err`. */
static void answer_waiters_to(struct mim_logic *l, struct pending *p,
                              struct mim_packet *reply, uint32_t req_cmd,
                              int err, const struct mim_op_outcome *o) {
  for (struct waiter *w = p->waiters; w != NULL; w = w->next) {
    if (w->admin) {
      if (err < 0) {
        struct mim_packet e;
        mim_error_packet_init(&e, err, req_cmd, 0);
        e.ts = mim__logic_now(l);
        mim__logic_emit_admin(l, w->req_id, &e);
      } else {
        reply->seq = 0;
        if (o != NULL)
          mim__logic_emit_admin_recipients(l, w->req_id, reply,
                                           o->recipients, o->n_recipients);
        else
          mim__logic_emit_admin(l, w->req_id, reply);
      }
      continue;
    }
    struct conn *c = NULL;
    struct slot *s = waiter_slot(l, w, &c);
    if (s == NULL)
      continue; /* the connection closed: the client will pull */
    if (err < 0) {
      mim__logic_slot_set_error(l, s, req_cmd, w->req_seq, err);
    } else {
      reply->seq = w->req_seq;
      mim__logic_slot_set_packet(s, reply);
    }
    mim__logic_conn_flush(l, c);
  }
}

static void answer_waiters(struct mim_logic *l, struct pending *p,
                           struct mim_packet *reply, uint32_t req_cmd,
                           int err) {
  answer_waiters_to(l, p, reply, req_cmd, err, NULL);
}

/* Copies `len` bytes into a NUL-terminated string: protobuf strings are
 * length-delimited, our packet fields are C strings. */
static char *cstr(const uint8_t *data, size_t len) {
  char *s = malloc(len + 1);
  if (s != NULL) {
    if (len > 0)
      memcpy(s, data, len);
    s[len] = '\0';
  }
  return s;
}

/* The push that tells receivers about a committed message. */
static int push_packet(const struct mim_message_in *m,
                       const struct mim_op_outcome *o, char *content,
                       struct mim_packet *p) {
  mim_packet_init(p);
  switch (m->conv_kind) {
  case MIM_CONV_C2C:
    p->cmd = MIM_CMD_C2C_PUSH;
    p->to = m->peer;
    break;
  case MIM_CONV_GROUP:
    p->cmd = MIM_CMD_C2G_PUSH;
    p->group = m->group;
    break;
  default:
    p->cmd = MIM_CMD_SERVER_PUSH;
    p->payload = m->payload;
    p->payload_len = m->payload_len;
    break;
  }
  p->from = m->sender;
  p->content = content;
  p->msg_id = o->msg_id;
  p->ts = o->server_time;
  p->conv_seq = o->conv_seq;
  p->type = m->type;
  p->client_msg_id = m->client_msg_id;
  return 0;
}

/* Whether `uid` has a connection that asked for receipts: only then does
 * a push to its peer remember whom to tell (a copy of the uid per push). */
static void any_read_cap(void *user, const struct mim_route *r) {
  if (r->caps & MIM_CAP_READ)
    *(bool *)user = true;
}

static bool wants_receipts(const struct mim_logic *l, const char *uid) {
  bool yes = false;
  mim_sessions_foreach_device(l->sessions, uid, any_read_cap, &yes);
  return yes;
}

/* Sends the committed message to every connection of every recipient but
 * the sending one, one DELIVER per gateway, and remembers each push for
 * seed-style acks. */
static void fan_out(struct mim_logic *l, const struct mim_conn_ref *exclude,
                    const struct mim_message_in *m,
                    const struct mim_op_outcome *o) {
  mim_fanout_reset(l->fanout);
  for (size_t i = 0; i < o->n_recipients; i++)
    mim_fanout_add_user(l->fanout, l->sessions, o->recipients[i].uid,
                        o->recipients[i].inbox_seq, exclude);
  size_t n_gw = mim_fanout_gateway_count(l->fanout);
  if (n_gw == 0)
    return; /* everyone is offline: the inboxes hold it */

  char *content = cstr(m->content, m->content_len);
  if (content == NULL)
    return; /* receivers find it when they pull */
  struct mim_packet push;
  push_packet(m, o, content, &push);
  uint8_t *body = NULL;
  size_t len = 0;
  /* one-to-one: the sender hears DELIVERED when a device acknowledges */
  const char *notify = m->conv_kind == MIM_CONV_C2C &&
                               strcmp(m->sender, m->peer) != 0 &&
                               wants_receipts(l, m->sender)
                           ? m->sender
                           : NULL;
  if (mim__packet_encode_body_alloc(&push, &body, &len) == 0) {
    uint32_t field = mim_cmd_inbox_seq_field(push.cmd);
    for (size_t g = 0; g < n_gw; g++) {
      uint32_t gw;
      const struct mim_rpc_target *t;
      size_t n;
      if (mim_fanout_gateway(l->fanout, g, &gw, &t, &n) < 0)
        continue;
      mim__logic_emit_deliver(l, gw, push.cmd, body, len, field, t, n);
      l->stats.deliveries += n;
      for (size_t i = 0; i < n; i++) {
        struct conn *c =
            mim__logic_conn_find(l, (struct mim_conn_ref){gw, t[i].conn_id});
        if (c == NULL || !c->authed)
          continue;
        if (t[i].inbox_seq > c->seen_max)
          c->seen_max = t[i].inbox_seq;
        mim__logic_ring_add(c, o->msg_id, t[i].inbox_seq, false,
                            strcmp(c->uid, m->sender) != 0 ? notify : NULL,
                            o->conv_seq);
      }
    }
  }
  free(body);
  free(content);
}

/* A committed message or notice of a large group: to its followers (the
 * online MIM_CAP_LARGE connections of its members) but `exclude`, with its
 * conv seq and no inbox seq (docs/protocol.md §22); nothing to acknowledge,
 * so nothing in the ack rings. */
static void large_out(struct mim_logic *l, const struct mim_conn_ref *exclude,
                      const struct mim_message_in *m,
                      const struct mim_op_outcome *o) {
  char *content = cstr(m->content, m->content_len);
  if (content == NULL)
    return; /* followers find it when they sync */
  struct mim_packet push;
  push_packet(m, o, content, &push);
  l->stats.deliveries +=
      mim__logic_large_push(l, m->group, 0, exclude, &push);
  free(content);
}

/* A device's own send counts as delivered to it. */
static void sender_delivered(struct mim_logic *l, const struct pending *p,
                             const struct mim_op_outcome *o) {
  if (!p->has_sender_conn || o->sender_inbox_seq == 0)
    return;
  struct conn *c = mim__logic_conn_find(l, p->sender_conn);
  if (c == NULL || !c->authed)
    return;
  if (o->sender_inbox_seq > c->seen_max)
    c->seen_max = o->sender_inbox_seq;
  mim__logic_ring_add(c, o->msg_id, o->sender_inbox_seq, true, NULL, 0);
  mim__logic_cursor_raise(l, c, c->cursor);
}

/* The successful outcome of `p`'s operation in committed batch `b`, with
 * the operation itself; false after answering p's waiters with the error
 * (the whole batch failed, the backend left the outcome unset, or the
 * operation alone was refused). */
static bool op_succeeded(struct mim_logic *l, struct pending *p,
                         const struct mim_write_batch *b,
                         const struct mim_op_outcome **o,
                         struct mim_write_op *op) {
  int st = mim_write_batch_status(b);
  if (st < 0 && st != -EAGAIN) {
    answer_waiters(l, p, NULL, p->req_cmd, st); /* nothing was stored */
    return false;
  }
  if (mim_write_batch_outcome(b, p->op_index, o) < 0 ||
      mim_write_batch_op(b, p->op_index, op) < 0) {
    /* a backend that left outcomes unset: fail loudly, never hang the
     * connection's reply queue */
    answer_waiters(l, p, NULL, p->req_cmd, -MIM_ERR_STORE);
    return false;
  }
  if ((*o)->status < 0) {
    answer_waiters(l, p, NULL, p->req_cmd, (*o)->status);
    return false;
  }
  return true;
}

/* MESSAGE_CREATED for a committed message: its recipients but the
 * sender, and which of them have no device online right now. */
static void message_event(struct mim_logic *l, const struct mim_message_in *m,
                          const struct mim_op_outcome *o) {
  if (l->event_fn == NULL)
    return;
  size_t n = o->n_recipients;
  struct mim_recipient *rcpt = calloc(n > 0 ? n : 1, sizeof *rcpt);
  const char **offline = calloc(n > 0 ? n : 1, sizeof *offline);
  if (rcpt == NULL || offline == NULL) {
    mim__log_to(&l->log, MIM_LOG_WARN,
                "out of memory: event for message %llu skipped",
                (unsigned long long)o->msg_id);
    goto out;
  }
  const char *sender = m->sender != NULL ? m->sender : "";
  size_t k = 0, off = 0;
  for (size_t i = 0; i < n; i++) {
    const char *uid = o->recipients[i].uid;
    if (m->conv_kind != MIM_CONV_PUSH && strcmp(uid, sender) == 0)
      continue; /* the sender's own copy */
    rcpt[k++] = o->recipients[i];
    if (!mim__logic_user_online(l, uid))
      offline[off++] = uid;
  }
  struct mim_event ev = {
      .kind = MIM_EVENT_MESSAGE_CREATED,
      .time_ms = o->server_time,
      .msg_id = o->msg_id,
      .msg_type = m->type,
      .conv_kind = m->conv_kind,
      .from = sender,
      .from_device = m->sender_device != NULL ? m->sender_device : "",
      .to = m->conv_kind == MIM_CONV_C2C && m->peer != NULL ? m->peer : "",
      .client_msg_id = m->client_msg_id != NULL ? m->client_msg_id : "",
      .content = m->content,
      .content_len = m->content_len,
      .payload = m->payload,
      .payload_len = m->payload_len,
      .recipients = rcpt,
      .n_recipients = k,
      .offline = offline,
      .n_offline = off,
      .group = m->conv_kind == MIM_CONV_GROUP && m->group != NULL ? m->group
                                                                  : "",
      .uid = "",
      .device = "",
      .large = o->large,
  };
  mim__logic_event(l, &ev);
out:
  free(rcpt);
  free(offline);
}

/* GROUP_CHANGED for a committed group change that changed something. */
static void group_event(struct mim_logic *l, const struct mim_write_op *op,
                        const struct mim_op_outcome *o) {
  if (l->event_fn == NULL)
    return;
  if (op->kind != MIM_OP_GROUP_CREATE && o->n_members == 0)
    return; /* everyone named was already in (or already out) */
  if (op->kind == MIM_OP_GROUP_MANAGE && op->action != MIM_GA_DISSOLVE)
    return; /* roles, mutes and info: the notice tells the members */
  struct mim_event ev = {
      .kind = MIM_EVENT_GROUP_CHANGED,
      .time_ms = op->server_time,
      .from = "", .from_device = "", .to = "", .client_msg_id = "",
      .uid = "", .device = "",
      .group = op->group,
      .change = op->kind == MIM_OP_GROUP_CREATE ? MIM_GROUP_CREATED
                : op->kind == MIM_OP_GROUP_ADD  ? MIM_GROUP_MEMBERS_ADDED
                                                : MIM_GROUP_MEMBERS_REMOVED,
      .members = o->members,
      .n_members = o->n_members,
  };
  mim__logic_event(l, &ev);
}

static void send_done(struct mim_logic *l, struct pending *p,
                      struct mim_write_batch *b) {
  const struct mim_op_outcome *o;
  struct mim_write_op op;
  if (!op_succeeded(l, p, b, &o, &op))
    return;
  if (!o->duplicate) {
    if (op.message->conv_kind == MIM_CONV_GROUP)
      l->stats.messages_group++;
    else if (op.message->conv_kind == MIM_CONV_PUSH)
      l->stats.messages_push++;
    else
      l->stats.messages_c2c++;
    l->stats.inbox_appends += o->n_recipients;
    sender_delivered(l, p, o);
    const struct mim_conn_ref *ex = p->has_sender_conn ? &p->sender_conn
                                                       : NULL;
    if (o->large)
      large_out(l, ex, op.message, o);
    else
      fan_out(l, ex, op.message, o);
    /* (a large group's message names no recipients: its cached member
     * count stays) */
    if (op.message->conv_kind == MIM_CONV_GROUP && !o->large)
      group_weight_set(l, op.message->group, o->n_recipients, false);
    message_event(l, op.message, o); /* after the pushes: durable now */
  }
  struct mim_packet reply;
  mim_packet_init(&reply);
  reply.cmd = (uint32_t)mim_cmd_reply(p->req_cmd); /* req_cmd: a send */
  reply.msg_id = o->msg_id;
  reply.ts = o->server_time;
  reply.inbox_seq = o->sender_inbox_seq;
  answer_waiters_to(l, p, &reply, p->req_cmd, 0, o);
}

/* Pushes the notice a committed group change stored (store.h, "group
 * notices") to every connection of its recipients, the requesting one
 * included: its GroupResponse carries no inbox_seq, so the push is how
 * that device learns the notice's place in its inbox. The content is
 * rebuilt from the outcome with the function the store used. */
static void notice_out(struct mim_logic *l, const struct mim_write_op *op,
                       const struct mim_op_outcome *o) {
  char *content = malloc(MIM_GROUP_NOTICE_MAX);
  size_t len;
  int rc = content == NULL ? -ENOMEM
           : op->kind == MIM_OP_GROUP_MANAGE
               ? mim_group_manage_notice_format(
                     content, MIM_GROUP_NOTICE_MAX, &len, op->group,
                     op->actor, op->action, o->members, o->n_members,
                     op->until, op->name)
               : mim_group_notice_format(content, MIM_GROUP_NOTICE_MAX, &len,
                                         op->kind, op->group, op->actor,
                                         o->members, o->n_members);
  if (rc < 0) {
    free(content);
    return; /* the inboxes hold it: receivers find it when they pull */
  }
  struct mim_message_in m = {
      .type = MIM_MSG_SYSTEM,
      .conv_kind = MIM_CONV_GROUP,
      .sender = "",
      .sender_device = "",
      .group = op->group,
      .client_msg_id = "",
      .content = (const uint8_t *)content,
      .content_len = len,
      .server_time = o->server_time,
  };
  fan_out(l, NULL, &m, o); /* the inbox entries (of a large group: those
                              it names) */
  if (o->large)
    large_out(l, NULL, &m, o);
  free(content);
}

/* Keeps the followers of a large group in step with a committed change:
 * before the notice goes out, those removed stop following (they heard of
 * it in their inbox) and a group that just switched gets its followers;
 * after it, those added start (the notice reached them in their inbox). */
static void large_before_notice(struct mim_logic *l,
                                const struct mim_write_op *op,
                                const struct mim_op_outcome *o) {
  if (o->became_large) {
    /* the members as of the switch: the list is read now, after the
     * whole batch committed, and may hold members added after it (whose
     * joins are later: the switch's notice's conv seq or above, or, with
     * no notice, above the join of those this op added) */
    uint64_t joined_max = UINT64_MAX;
    struct mim_backend *be = l->cfg.backend;
    if (o->msg_id != 0)
      joined_max = o->conv_seq - 1;
    else if (o->n_members > 0 &&
             be->ops->member_get(be->impl, op->group, o->members[0],
                                 &joined_max) < 0)
      joined_max = UINT64_MAX;
    mim__logic_large_switched(l, op->group, joined_max);
  }
  /* (those just added by a switching add follow after the notice, like
   * any added member: their inbox has it) */
  if (o->large && op->kind != MIM_OP_GROUP_MANAGE)
    for (size_t i = 0; i < o->n_members; i++)
      mim__logic_large_member(l, op->group, o->members[i], false);
}

static void large_after_notice(struct mim_logic *l,
                               const struct mim_write_op *op,
                               const struct mim_op_outcome *o) {
  if (op->kind == MIM_OP_GROUP_MANAGE && op->action == MIM_GA_DISSOLVE)
    mim__logic_large_dissolved(l, op->group);
  else if (o->large &&
           (op->kind == MIM_OP_GROUP_ADD || op->kind == MIM_OP_GROUP_CREATE))
    for (size_t i = 0; i < o->n_members; i++)
      mim__logic_large_member(l, op->group, o->members[i], true);
}

static void group_done(struct mim_logic *l, struct pending *p,
                       struct mim_write_batch *b) {
  const struct mim_op_outcome *o;
  struct mim_write_op op;
  if (!op_succeeded(l, p, b, &o, &op))
    return;
  group_weight_forget(l, op.group);
  large_before_notice(l, &op, o);
  if (o->msg_id != 0)
    notice_out(l, &op, o);
  large_after_notice(l, &op, o);
  if (op.kind == MIM_OP_GROUP_REMOVE ||
      (op.kind == MIM_OP_GROUP_MANAGE && op.action == MIM_GA_DISSOLVE))
    l->up.members_left(l, op.group, o->members, o->n_members);
  group_event(l, &op, o);
  struct mim_packet reply;
  mim_packet_init(&reply);
  reply.cmd = (uint32_t)mim_cmd_reply(p->req_cmd); /* req_cmd: GROUP_*_REQ */
  reply.group = op.group;
  reply.members = o->members;
  reply.n_members = o->n_members;
  reply.ts = op.server_time;
  answer_waiters(l, p, &reply, p->req_cmd, 0);
}

/* ---- read positions (docs/protocol.md §10) ---- */


/* A committed mark-read: the reply, and when the position moved, a
 * READ_SYNC to the reader's other devices and (one-to-one) a READ_RECEIPT
 * to the peer's. Group members ask with READ_BY instead: a push to every
 * member on every read would cost O(members) per read. */
static void read_done(struct mim_logic *l, struct pending *p,
                      struct mim_write_batch *b) {
  const struct mim_op_outcome *o;
  struct mim_write_op op;
  if (!op_succeeded(l, p, b, &o, &op))
    return;
  struct mim_packet reply;
  mim_packet_init(&reply);
  reply.cmd = MIM_CMD_READ_SYNC;
  reply.peer = op.peer;
  reply.group = op.group;
  reply.read_seq = o->read_seq;
  reply.unread = o->unread;
  reply.ts = mim__logic_now(l);
  if (o->read_moved) {
    mim__logic_push_cap(l, MIM_CAP_READ, op.uid,
                        p->has_sender_conn ? &p->sender_conn : NULL, &reply);
    if (op.peer[0] != '\0' && strcmp(op.peer, op.uid) != 0) {
      struct mim_packet rc;
      mim_packet_init(&rc);
      rc.cmd = MIM_CMD_READ_RECEIPT;
      rc.from = op.uid;
      rc.read_seq = o->read_seq;
      rc.ts = reply.ts;
      mim__logic_push_cap(l, MIM_CAP_READ, op.peer, NULL, &rc);
    }
  }
  reply.cmd = (uint32_t)mim_cmd_reply(p->req_cmd); /* MARK_READ_RSP */
  answer_waiters(l, p, &reply, p->req_cmd, 0);
}

/* ---- message changes (docs/protocol.md §19) ---- */

struct change_targets {
  struct mim_logic *l;
  const struct mim_conn_ref *exclude;
  uint64_t msg_id, inbox_seq;
};

/* Every online device of a participant: its change entry counts as
 * delivered (an ack cursor moves over it: it holds nothing a seed client
 * could show), and a MIM_CAP_CHANGE connection but the requester's gets
 * the push. */
static void add_change_target(void *user, const struct mim_route *r) {
  struct change_targets *t = user;
  struct conn *c = mim__logic_conn_find(t->l, r->conn);
  if (c != NULL && c->authed) {
    if (t->inbox_seq > c->seen_max)
      c->seen_max = t->inbox_seq;
    mim__logic_ring_add(c, t->msg_id, t->inbox_seq, true, NULL, 0);
  }
  if ((r->caps & MIM_CAP_CHANGE) == 0)
    return; /* seed clients and others that did not ask see nothing new */
  if (t->exclude != NULL && r->conn.gateway == t->exclude->gateway &&
      r->conn.conn_id == t->exclude->conn_id)
    return;
  (void)mim_fanout_add_conn(t->l->fanout, r->conn, 0);
}

/* A committed change: the reply, and MSG_CHANGED to the participants'
 * (for a delete-for-me: the actor's) other CAP_CHANGE devices. In a pair
 * each side sees the other as `peer`; a group's push is one body. */
static void change_done(struct mim_logic *l, struct pending *p,
                        struct mim_write_batch *b) {
  const struct mim_op_outcome *o;
  struct mim_write_op op;
  if (!op_succeeded(l, p, b, &o, &op))
    return;
  struct mim_packet pkt;
  mim_packet_init(&pkt);
  pkt.cmd = MIM_CMD_MSG_CHANGED;
  pkt.msg_id = o->msg_id;
  pkt.type = op.change;
  pkt.from = op.actor;
  pkt.group = o->change_group != NULL ? o->change_group : "";
  pkt.conv_seq = o->conv_seq;
  pkt.content = op.change == MIM_CHANGE_EDIT ? (const char *)op.content : "";
  pkt.change_time = o->server_time;
  pkt.ts = mim__logic_now(l);
  const struct mim_conn_ref *exclude =
      p->has_sender_conn ? &p->sender_conn : NULL;
  bool pair = pkt.group[0] == '\0';
  if (o->large) /* no change entries: to its CAP_CHANGE followers */
    mim__logic_large_push(l, pkt.group, MIM_CAP_CHANGE, exclude, &pkt);
  if (!pair)
    mim_fanout_reset(l->fanout);
  for (size_t i = 0; i < o->n_recipients; i++) {
    const struct mim_recipient *r = &o->recipients[i];
    if (pair) {
      mim_fanout_reset(l->fanout);
      bool is_sender = o->change_sender != NULL &&
                       strcmp(r->uid, o->change_sender) == 0;
      pkt.peer = is_sender ? o->change_peer : o->change_sender;
      if (pkt.peer == NULL)
        pkt.peer = "";
    }
    struct change_targets t = {l, exclude, o->msg_id, r->inbox_seq};
    mim_sessions_foreach_device(l->sessions, r->uid, add_change_target, &t);
    if (pair)
      mim__logic_fanout_emit(l, &pkt);
  }
  if (!pair)
    mim__logic_fanout_emit(l, &pkt);
  struct mim_packet reply = pkt;
  reply.cmd = (uint32_t)mim_cmd_reply(p->req_cmd); /* MSG_CHANGE_RSP */
  reply.peer = op.peer;
  answer_waiters(l, p, &reply, p->req_cmd, 0);
}

int mim_logic_batch_done(struct mim_logic *l, struct mim_write_batch *b) {
  if (b == NULL || b != l->out)
    return -EINVAL;
  int status = mim_write_batch_status(b);
  l->stats.batches++;
  l->stats.batch_ops += mim_write_batch_count(b);
  if (status < 0 && status != -EAGAIN)
    l->stats.batches_failed++;
  if (status < 0)
    mim__log_to(&l->log, MIM_LOG_WARN, "store commit failed: %s; %zu operations answered with errors",
              mim_strerror(status), l->out_pending.count);
  for (size_t i = 0; i < l->out_pending.count; i++) {
    struct pending *p = l->out_pending.items[i];
    switch (p->kind) {
    case PENDING_SEND:
      send_done(l, p, b);
      break;
    case PENDING_GROUP:
      group_done(l, p, b);
      break;
    case PENDING_READ:
      read_done(l, p, b);
      break;
    case PENDING_CHANGE:
      change_done(l, p, b);
      break;
    case PENDING_CURSOR: {
      /* committed or not, forget it: a lost cursor write only means
       * redelivery, never loss */
      struct mim_write_op op;
      if (mim_write_batch_op(b, p->op_index, &op) == 0)
        mim__logic_cursor_done(l, op.uid, op.device, op.seq);
      break;
    }
    }
  }
  pending_list_clear(l, &l->out_pending);
  mim_write_batch_reset(b); /* keeps its memory for the batch after next */
  mim_write_batch_destroy(l->spare);
  l->spare = b;
  l->out = NULL;
  return 0;
}

int mim_logic_flush(struct mim_logic *l) {
  int last = 0;
  struct mim_write_batch *b;
  while (mim_logic_take_batch(l, &b) == 0) {
    int rc = mim_backend_commit(l->cfg.backend, b);
    if (rc < 0)
      last = rc;
    mim_logic_batch_done(l, b);
  }
  return last;
}
