/* The logic's connections: the table of them, each one's queue of replies in
 * request order, its pushes in flight and its ack cursor; and the queue of
 * effects the daemon drains. */
#include "logic/conn.h"
#include "logic/requests.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t mim__logic_now(const struct mim_logic *l) {
  if (l->cfg.now_ms != NULL)
    return l->cfg.now_ms(l->cfg.clock_user);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the connection table ---- */

/* Unkeyed on purpose: conn_id is chosen by our own gateway (a counter),
 * never by a client, and the gateway handle by logicd. */
static uint64_t conn_hash(struct mim_conn_ref ref) {
  return mim__hash_u64(ref.conn_id ^ mim__hash_u64(ref.gateway));
}

struct conn *mim__logic_conn_find(const struct mim_logic *l,
                                  struct mim_conn_ref ref) {
  uint64_t h = conn_hash(ref);
  for (struct mim__hnode *n = mim__htable_find(&l->conns, h); n != NULL;
       n = mim__htable_next(n)) {
    struct conn *c = mim__container_of(n, struct conn, node);
    if (c->ref.gateway == ref.gateway && c->ref.conn_id == ref.conn_id)
      return c;
  }
  return NULL;
}

struct conn *mim__logic_conn_get(struct mim_logic *l, struct mim_conn_ref ref) {
  struct conn *c = mim__logic_conn_find(l, ref);
  if (c != NULL)
    return c;
  c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->ref = ref;
  c->gen = ++l->next_gen;
  c->next_slot_id = 1;
  c->tokens_milli = (int64_t)l->cfg.rate_burst * 1000;
  c->refilled_at = mim__logic_now(l);
  if (mim__htable_insert(&l->conns, &c->node, conn_hash(ref)) < 0) {
    free(c);
    return NULL;
  }
  return c;
}

static void slots_free(struct conn *c) {
  struct slot *s = c->head;
  while (s != NULL) {
    struct slot *next = s->next;
    free(s->body);
    free(s);
    s = next;
  }
  c->head = c->tail = NULL;
  c->n_slots = 0;
}

static void dirty_forget(struct mim_logic *l, const struct conn *c) {
  for (size_t i = 0; i < l->n_dirty; i++) {
    if (l->dirty[i] == c) {
      l->dirty[i] = l->dirty[--l->n_dirty];
      return;
    }
  }
}

/* Ends the session of `c` (logout, kick, close): its route, if it still owns
 * one, goes; a cursor that moved is written with the next batch first. */
void mim__logic_conn_unauth(struct mim_logic *l, struct conn *c) {
  if (!c->authed)
    return;
  mim__logic_presence_unsubscribe_all(l, c);
  l->up.large_logout(l, c);
  if (c->cursor_dirty) {
    /* write it now: after this the connection no longer names the device */
    mim__logic_cursor_write(l, c->uid, c->device, c->cursor);
    c->cursor_dirty = false;
    dirty_forget(l, c);
  }
  /* -ENOENT: a newer login owns the route; the user is online still */
  if (mim_sessions_unbind(l->sessions, c->ref) == 0)
    mim__logic_presence_changed(l, c->uid, c->device, false);
  free(c->uid);
  free(c->device);
  c->uid = c->device = NULL;
  c->authed = false;
  c->logging_out = false;
  c->caps = 0;
  c->expires_at = 0;
  c->cursor = c->pulled_upto = c->seen_max = 0;
  mim__logic_ring_clear(c);
}

void mim__logic_conn_drop(struct mim_logic *l, struct conn *c) {
  mim__logic_rq_remove(l, c);
  l->up.park_remove(l, c);
  mim__logic_conn_unauth(l, c);
  mim__htable_remove(&l->conns, &c->node);
  slots_free(c);
  mim__logic_ring_clear(c);
  free(c->ring);
  free(c);
}

static void conn_free_cb(void *user, struct mim__hnode *n) {
  (void)user;
  struct conn *c = mim__container_of(n, struct conn, node);
  slots_free(c);
  free(c->uid);
  free(c->device);
  mim__logic_ring_clear(c);
  free(c->ring);
  free(c->psubs); /* the subscriptions themselves go with the logic's index */
  free(c->lrefs); /* and the large groups followed with theirs */
  free(c);
}

void mim__logic_conns_finish(struct mim_logic *l) {
  mim__htable_foreach(&l->conns, conn_free_cb, NULL);
  mim__htable_finish(&l->conns);
  free(l->dirty);
  l->dirty = NULL;
  l->n_dirty = l->dirty_cap = 0;
}

/* ---- replies in request order ---- */

struct slot *mim__logic_slot_push(struct conn *c) {
  struct slot *s = calloc(1, sizeof *s);
  if (s == NULL)
    return NULL;
  s->id = c->next_slot_id++;
  if (c->tail != NULL)
    c->tail->next = s;
  else
    c->head = s;
  c->tail = s;
  c->n_slots++;
  return s;
}

struct slot *mim__logic_slot_find(struct conn *c, uint64_t id) {
  for (struct slot *s = c->head; s != NULL; s = s->next)
    if (s->id == id)
      return s;
  return NULL;
}

int mim__logic_slot_set_packet(struct slot *s, const struct mim_packet *p) {
  free(s->body);
  s->body = NULL;
  s->body_len = 0;
  int rc = mim__packet_encode_body_alloc(p, &s->body, &s->body_len);
  if (rc < 0) {
    s->state = SLOT_SILENT; /* out of memory: the client's request times out */
    return rc;
  }
  s->cmd = p->cmd;
  s->err_code = p->cmd == MIM_CMD_ERROR ? p->status : 0;
  s->state = SLOT_READY;
  return 0;
}

void mim__logic_slot_set_error(struct mim_logic *l, struct slot *s,
                               uint32_t req_cmd, int64_t req_seq, int err) {
  struct mim_packet p;
  mim_error_packet_init(&p, err, req_cmd, req_seq);
  p.ts = mim__logic_now(l); /* every Error carries the server's time */
  mim__logic_slot_set_packet(s, &p);
}

/* ---- reads, in turn ---- */

static bool is_read(uint32_t cmd) {
  return cmd == MIM_CMD_PULL_REQ || cmd == MIM_CMD_HISTORY_REQ ||
         cmd == MIM_CMD_GROUP_SYNC_REQ || cmd == MIM_CMD_GROUP_LIST_REQ || cmd == MIM_CMD_CONV_LIST_REQ ||
         cmd == MIM_CMD_READ_BY_REQ;
}

struct gw *mim__logic_gw_find(const struct mim_logic *l, uint32_t id) {
  for (size_t i = 0; i < l->n_gateways; i++)
    if (l->gateways[i].id == id)
      return &l->gateways[i];
  return NULL;
}

/* The index of gateway `gw` in l->gateways, or -1. */
ssize_t mim__logic_gateway_index(const struct mim_logic *l, uint32_t gw) {
  struct gw *g = mim__logic_gw_find(l, gw);
  return g != NULL ? g - l->gateways : -1;
}

const char *mim__logic_gateway_id(const struct mim_logic *l, uint32_t handle) {
  struct gw *g = mim__logic_gw_find(l, handle);
  return g != NULL ? g->name : NULL;
}

static void rq_push(struct mim_logic *l, struct conn *c) {
  struct gw *g = mim__logic_gw_find(l, c->ref.gateway);
  if (c->in_rq || g == NULL)
    return;
  c->rq_next = NULL;
  c->rq_prev = g->rq_tail;
  if (g->rq_tail != NULL)
    g->rq_tail->rq_next = c;
  else
    g->rq_head = c;
  g->rq_tail = c;
  c->in_rq = true;
}

void mim__logic_rq_remove(struct mim_logic *l, struct conn *c) {
  if (!c->in_rq)
    return;
  struct gw *g = mim__logic_gw_find(l, c->ref.gateway);
  if (g != NULL) {
    if (c->rq_prev != NULL)
      c->rq_prev->rq_next = c->rq_next;
    else
      g->rq_head = c->rq_next;
    if (c->rq_next != NULL)
      c->rq_next->rq_prev = c->rq_prev;
    else
      g->rq_tail = c->rq_prev;
  }
  c->rq_next = c->rq_prev = NULL;
  c->in_rq = false;
}

bool mim__logic_reads_ready(const struct mim_logic *l) {
  for (size_t i = 0; i < l->n_gateways; i++)
    if (!l->gateways[i].paused && l->gateways[i].rq_head != NULL)
      return true;
  return false;
}

/* A read that produced an empty or tiny reply still cost a store lookup:
 * it counts this much against the turn's budget. */
#define READ_COST_MIN 1024

bool mim__logic_run_read(struct mim_logic *l) {
  size_t n = l->n_gateways;
  for (size_t i = 0; i < n; i++) {
    size_t gi = (l->rr_gateway + i) % n;
    struct gw *g = &l->gateways[gi];
    if (g->paused || g->rq_head == NULL)
      continue;
    struct conn *c = g->rq_head;
    mim__logic_rq_remove(l, c);
    l->rr_gateway = (gi + 1) % n;
    struct slot *s = c->head;
    if (s != NULL && s->state == SLOT_DEFERRED) {
      uint8_t *req = s->body;
      size_t req_len = s->body_len;
      s->body = NULL;
      s->body_len = 0;
      s->state = SLOT_SILENT;
      l->up.run_deferred(l, c, s->cmd, req, req_len, s);
      free(req);
      l->turn_bytes += s->body_len > READ_COST_MIN ? s->body_len
                                                   : READ_COST_MIN;
    }
    /* sends its reply and whatever follows it; a next read queues the
     * connection again, behind the others */
    mim__logic_conn_flush(l, c);
    return true;
  }
  return false;
}

void mim__logic_conn_flush(struct mim_logic *l, struct conn *c) {
  while (c->head != NULL) {
    struct slot *s = c->head;
    if (s->state == SLOT_WAITING || s->state == SLOT_PARKED)
      return;
    if (s->state == SLOT_DEFERRED && is_read(s->cmd)) {
      rq_push(l, c); /* runs in its turn (mim__logic_run_read) */
      return;
    }
    if (s->state == SLOT_DEFERRED) {
      uint8_t *req = s->body;
      size_t req_len = s->body_len;
      s->body = NULL;
      s->body_len = 0;
      s->state = SLOT_SILENT;
      l->up.run_deferred(l, c, s->cmd, req, req_len, s);
      free(req);
      continue;
    }
    if (s->state == SLOT_READY) {
      struct mim_rpc_target t = {.conn_id = c->ref.conn_id, .inbox_seq = 0};
      mim__logic_emit_deliver(l, c->ref.gateway, s->cmd, s->body, s->body_len,
                              0, &t, 1);
      if (s->cmd == MIM_CMD_ERROR)
        mim__logic_count_error(l, s->err_code);
      /* right behind the reply: the gateway starts treating the client as
       * authenticated (batching its frames) only once the client has
       * been told so */
      if (s->session_after)
        mim__logic_emit_session(l, c);
    }
    c->head = s->next;
    if (c->head == NULL)
      c->tail = NULL;
    c->n_slots--;
    free(s->body);
    free(s);
  }
}

void mim__logic_reply(struct mim_logic *l, struct conn *c,
                      const struct mim_packet *p) {
  struct slot *s = mim__logic_slot_push(c);
  if (s == NULL)
    return;
  mim__logic_slot_set_packet(s, p);
  mim__logic_conn_flush(l, c);
}

void mim__logic_reply_error(struct mim_logic *l, struct conn *c,
                            uint32_t req_cmd, int64_t req_seq, int err) {
  struct slot *s = mim__logic_slot_push(c);
  if (s == NULL)
    return;
  mim__logic_slot_set_error(l, s, req_cmd, req_seq, err);
  mim__logic_conn_flush(l, c);
}

/* ---- effects ---- */

static struct effect_node *effect_push(struct mim_logic *l) {
  struct effect_node *e = calloc(1, sizeof *e);
  if (e == NULL)
    return NULL;
  if (l->effects_tail != NULL)
    l->effects_tail->next = e;
  else
    l->effects_head = e;
  l->effects_tail = e;
  return e;
}

static void effect_free(struct effect_node *e) {
  if (e == NULL)
    return;
  free(e->body);
  free(e->targets);
  free(e->uid);
  free(e->device);
  free(e->recipients);
  free(e);
}

int mim__logic_emit_deliver(struct mim_logic *l, uint32_t gateway,
                            uint32_t cmd, const uint8_t *body, size_t len,
                            uint32_t seq_field,
                            const struct mim_rpc_target *targets, size_t n) {
  uint8_t *b = malloc(len + 1);
  struct mim_rpc_target *t = malloc(n * sizeof *targets + 1);
  struct effect_node *e = b && t ? effect_push(l) : NULL;
  if (e == NULL) {
    free(b);
    free(t);
    return -ENOMEM;
  }
  if (len > 0)
    memcpy(b, body, len);
  memcpy(t, targets, n * sizeof *targets);
  e->body = b;
  e->targets = t;
  e->e.kind = MIM_EFFECT_DELIVER;
  e->e.gateway = gateway;
  e->e.cmd = cmd;
  e->e.body = b;
  e->e.body_len = len;
  e->e.seq_field = seq_field;
  e->e.targets = t;
  e->e.n_targets = n;
  return 0;
}

int mim__logic_emit_kick(struct mim_logic *l, struct mim_conn_ref to,
                         int32_t reason, const char *uid, const char *text) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_KICK;
  p.reason = reason;
  if (reason >= 0 && reason < MIM_STATS_KICK_REASONS)
    l->stats.kicks_by_reason[reason]++;
  p.uid = uid;
  p.text = text;
  p.ts = mim__logic_now(l);
  struct effect_node *e = effect_push(l);
  if (e == NULL)
    return -ENOMEM;
  int rc = mim__packet_encode_body_alloc(&p, &e->body, &e->e.body_len);
  if (rc < 0)
    e->e.body_len = 0;
  e->e.kind = MIM_EFFECT_KICK;
  e->e.gateway = to.gateway;
  e->e.conn_id = to.conn_id;
  e->e.reason = reason;
  e->e.cmd = MIM_CMD_KICK;
  e->e.body = e->body;
  return 0;
}

int mim__logic_emit_admin(struct mim_logic *l, uint64_t req_id,
                          const struct mim_packet *p) {
  struct effect_node *e = effect_push(l);
  if (e == NULL)
    return -ENOMEM;
  int rc = mim__packet_encode_body_alloc(p, &e->body, &e->e.body_len);
  if (rc < 0)
    e->e.body_len = 0;
  if (p->cmd == MIM_CMD_ERROR)
    mim__logic_count_error(l, p->status);
  e->e.kind = MIM_EFFECT_ADMIN_REPLY;
  e->e.cmd = p->cmd;
  e->e.body = e->body;
  e->e.req_id = req_id;
  return 0;
}

int mim__logic_emit_admin_recipients(struct mim_logic *l, uint64_t req_id,
                                     const struct mim_packet *p,
                                     const struct mim_recipient *r, size_t n) {
  int rc = mim__logic_emit_admin(l, req_id, p);
  if (rc < 0 || n == 0)
    return rc;
  /* one allocation: the array, then the uids it points to */
  size_t bytes = n * sizeof *r;
  for (size_t i = 0; i < n; i++)
    bytes += strlen(r[i].uid) + 1;
  struct mim_recipient *copy = malloc(bytes);
  if (copy == NULL)
    return 0; /* the reply goes out without the per-recipient seqs */
  char *str = (char *)(copy + n);
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(r[i].uid) + 1;
    memcpy(str, r[i].uid, len);
    copy[i].uid = str;
    copy[i].inbox_seq = r[i].inbox_seq;
    str += len;
  }
  l->effects_tail->recipients = copy;
  l->effects_tail->e.recipients = copy;
  l->effects_tail->e.n_recipients = n;
  return 0;
}

int mim__logic_emit_session(struct mim_logic *l, const struct conn *c) {
  struct effect_node *e = effect_push(l);
  if (e == NULL)
    return -ENOMEM;
  e->e.kind = MIM_EFFECT_SESSION;
  e->e.gateway = c->ref.gateway;
  e->e.conn_id = c->ref.conn_id;
  e->e.uid = "";
  e->e.device = "";
  if (!c->authed)
    return 0; /* unbound */
  e->uid = strdup(c->uid);
  e->device = strdup(c->device);
  if (e->uid == NULL || e->device == NULL) {
    /* sent as unbound: the gateway then treats the client as not logged
     * in, which errs on the safe side */
    free(e->uid);
    free(e->device);
    e->uid = e->device = NULL;
    return -ENOMEM;
  }
  e->e.uid = e->uid;
  e->e.device = e->device;
  e->e.caps = c->caps;
  const char *gw_id = mim__logic_gateway_id(l, c->ref.gateway);
  struct mim_ticket t = {
      .gateway_id = gw_id,
      .conn_id = c->ref.conn_id,
      .uid = c->uid,
      .device = c->device,
      .caps = c->caps,
      .issued_at = mim__logic_now(l) / 1000,
      .expires_at = c->expires_at,
  };
  size_t len = 0;
  int rc = gw_id == NULL ? -ENOENT
                         : mim_ticket_sign(l->ticket_key, sizeof l->ticket_key,
                                           &t, e->ticket, sizeof e->ticket,
                                           &len);
  if (rc < 0) {
    /* bound without a ticket: it works until the logic restarts, when
     * SESSIONS cannot restore it and the client logs in again */
    mim__log_to(&l->log, MIM_LOG_WARN, "conn %llu: no session ticket: %s",
              (unsigned long long)c->ref.conn_id, mim_strerror(rc));
    return 0;
  }
  e->e.ticket = e->ticket;
  e->e.ticket_len = len;
  return 0;
}

int mim_logic_next_effect(struct mim_logic *l, struct mim_effect *out) {
  effect_free(l->current);
  l->current = NULL;
  /* reads go after everything else that is ready (acks, pushes), and only
   * within this turn's budget */
  while (l->effects_head == NULL &&
         (l->cfg.read_turn_bytes == 0 ||
          l->turn_bytes < l->cfg.read_turn_bytes) &&
         mim__logic_run_read(l))
    ;
  struct effect_node *e = l->effects_head;
  if (e == NULL)
    return -EAGAIN;
  l->effects_head = e->next;
  if (l->effects_head == NULL)
    l->effects_tail = NULL;
  l->current = e;
  *out = e->e;
  return 0;
}

void mim__logic_effects_finish(struct mim_logic *l) {
  effect_free(l->current);
  l->current = NULL;
  struct effect_node *e = l->effects_head;
  while (e != NULL) {
    struct effect_node *next = e->next;
    effect_free(e);
    e = next;
  }
  l->effects_head = l->effects_tail = NULL;
}

/* ---- pushes to connections that asked for a capability ---- */

struct cap_targets {
  struct mim_logic *l;
  uint32_t cap;
  const struct mim_conn_ref *exclude;
};

static void add_if_cap(void *user, const struct mim_route *r) {
  struct cap_targets *t = user;
  if ((r->caps & t->cap) == 0)
    return; /* seed clients and others that did not ask see nothing new */
  if (t->exclude != NULL && r->conn.gateway == t->exclude->gateway &&
      r->conn.conn_id == t->exclude->conn_id)
    return;
  (void)mim_fanout_add_conn(t->l->fanout, r->conn, 0);
}

void mim__logic_push_cap(struct mim_logic *l, uint32_t cap, const char *uid,
                         const struct mim_conn_ref *exclude,
                         const struct mim_packet *pkt) {
  mim_fanout_reset(l->fanout);
  struct cap_targets t = {l, cap, exclude};
  mim_sessions_foreach_device(l->sessions, uid, add_if_cap, &t);
  mim__logic_fanout_emit(l, pkt);
}

void mim__logic_fanout_emit(struct mim_logic *l, const struct mim_packet *pkt) {
  size_t n_gw = mim_fanout_gateway_count(l->fanout);
  if (n_gw == 0)
    return;
  uint8_t *body = NULL;
  size_t len = 0;
  if (mim__packet_encode_body_alloc(pkt, &body, &len) == 0) {
    for (size_t g = 0; g < n_gw; g++) {
      uint32_t gw;
      const struct mim_rpc_target *tg;
      size_t n;
      if (mim_fanout_gateway(l->fanout, g, &gw, &tg, &n) == 0)
        mim__logic_emit_deliver(l, gw, pkt->cmd, body, len, 0, tg, n);
    }
  }
  free(body);
}

void mim__logic_push_delivered(struct mim_logic *l, const char *reader,
                               const char *sender, uint64_t conv_seq) {
  struct mim_packet d;
  mim_packet_init(&d);
  d.cmd = MIM_CMD_DELIVERED;
  d.from = reader;
  d.conv_seq = conv_seq;
  d.ts = mim__logic_now(l);
  mim__logic_push_cap(l, MIM_CAP_READ, sender, NULL, &d);
}

/* ---- pushes in flight and the ack cursor ---- */

static struct inflight *ring_at(struct conn *c, size_t i) {
  return &c->ring[(c->ring_start + i) % c->ring_cap];
}

/* The DELIVERED receipts an ack owes, gathered while it advances the ring
 * so that a run of pushes from one sender costs one receipt. */
struct owed {
  struct mim_logic *l;
  const char *reader;
  char *to;           /* owned: the sender, or NULL */
  uint64_t conv_seq;
};

static void owed_flush(struct owed *o) {
  if (o->to != NULL && o->l != NULL)
    mim__logic_push_delivered(o->l, o->reader, o->to, o->conv_seq);
  free(o->to);
  o->to = NULL;
  o->conv_seq = 0;
}

/* Drops the oldest entry; when `o` is not NULL the device acknowledged it,
 * and its sender (if it asked) is owed a receipt. */
static void ring_pop(struct conn *c, struct owed *o) {
  struct inflight *f = ring_at(c, 0);
  if (f->notify != NULL && o != NULL) {
    if (o->to != NULL && strcmp(o->to, f->notify) != 0)
      owed_flush(o);
    if (o->to == NULL) {
      o->to = f->notify; /* taken */
      f->notify = NULL;
    }
    if (f->conv_seq > o->conv_seq)
      o->conv_seq = f->conv_seq;
  }
  free(f->notify);
  f->notify = NULL;
  c->ring_start = (c->ring_start + 1) % c->ring_cap;
  c->ring_len--;
}

void mim__logic_ring_clear(struct conn *c) {
  while (c->ring_len > 0)
    ring_pop(c, NULL);
  c->ring_start = 0;
}

/* Drops entries the cursor already covers, then advances the cursor over
 * acknowledged entries that continue it without a gap. Both kinds were
 * received by the device: their senders are owed DELIVERED. */
static uint64_t ring_advance(struct mim_logic *l, struct conn *c,
                             uint64_t cursor) {
  struct owed o = {l, c->uid, NULL, 0};
  while (c->ring_len > 0) {
    struct inflight *f = ring_at(c, 0);
    if (f->inbox_seq <= cursor) {
      ring_pop(c, &o);
    } else if (f->acked && f->inbox_seq == cursor + 1) {
      cursor = f->inbox_seq;
      ring_pop(c, &o);
    } else {
      break;
    }
  }
  owed_flush(&o);
  return cursor;
}

void mim__logic_ring_add(struct conn *c, uint64_t msg_id, uint64_t inbox_seq,
                         bool acked, const char *notify, uint64_t conv_seq) {
  if (c->ring_cap == 0)
    return;
  if (c->ring_len == c->ring_cap)
    ring_pop(c, NULL); /* the oldest is forgotten: a pull will resend it */
  struct inflight *f = ring_at(c, c->ring_len);
  f->msg_id = msg_id;
  f->inbox_seq = inbox_seq;
  f->acked = acked;
  /* out of memory: no receipt for this one, the read receipt still comes */
  f->notify = notify != NULL ? strdup(notify) : NULL;
  f->conv_seq = conv_seq;
  c->ring_len++;
}

uint64_t mim__logic_ring_ack_msg(struct mim_logic *l, struct conn *c,
                                 uint64_t msg_id) {
  for (size_t i = 0; i < c->ring_len; i++) {
    struct inflight *f = ring_at(c, i);
    if (f->msg_id == msg_id) {
      f->acked = true;
      break;
    }
  }
  return ring_advance(l, c, c->cursor);
}

void mim__logic_cursor_raise(struct mim_logic *l, struct conn *c,
                             uint64_t seq) {
  if (seq > c->seen_max)
    seq = c->seen_max;
  seq = ring_advance(l, c, seq > c->cursor ? seq : c->cursor);
  if (seq <= c->cursor)
    return;
  c->cursor = seq;
  if (c->cursor_dirty)
    return;
  if (l->n_dirty == l->dirty_cap) {
    size_t cap = l->dirty_cap ? l->dirty_cap * 2 : 64;
    struct conn **d = realloc(l->dirty, cap * sizeof *d);
    if (d == NULL)
      return; /* the cursor stays in memory; a later ack writes it */
    l->dirty = d;
    l->dirty_cap = cap;
  }
  l->dirty[l->n_dirty++] = c;
  c->cursor_dirty = true;
}

void mim__logic_cursors_write(struct mim_logic *l) {
  for (size_t i = 0; i < l->n_dirty; i++) {
    struct conn *c = l->dirty[i];
    mim__logic_cursor_write(l, c->uid, c->device, c->cursor);
    c->cursor_dirty = false;
  }
  l->n_dirty = 0;
}

static struct pending_cursor *cursor_find(const struct mim_logic *l,
                                          const char *key, size_t len,
                                          uint64_t *hash) {
  *hash = mim__hash_keyed(&l->hkey, key, len); /* client-chosen ids */
  for (struct mim__hnode *n = mim__htable_find(&l->cursors, *hash); n != NULL;
       n = mim__htable_next(n)) {
    struct pending_cursor *pc = mim__container_of(n, struct pending_cursor, node);
    if (pc->key_len == len && memcmp(pc->key, key, len) == 0)
      return pc;
  }
  return NULL;
}

void mim__logic_cursor_write(struct mim_logic *l, const char *uid,
                             const char *device, uint64_t seq) {
  size_t idx;
  if (mim_write_batch_add_cursor(l->open, uid, device, seq, &idx) < 0)
    return; /* the cursor stays behind: redelivery, never loss */
  l->up.pending_new(l, PENDING_CURSOR, idx);
  char key[2 * MIM_ID_MAX + 2];
  size_t len = mim__key_pair(key, uid, device);
  uint64_t h;
  struct pending_cursor *pc = cursor_find(l, key, len, &h);
  if (pc != NULL) {
    if (seq > pc->seq)
      pc->seq = seq;
    return;
  }
  pc = malloc(sizeof *pc + len);
  if (pc == NULL)
    return;
  pc->seq = seq;
  pc->key_len = len;
  memcpy(pc->key, key, len);
  if (mim__htable_insert(&l->cursors, &pc->node, h) < 0)
    free(pc);
}

uint64_t mim__logic_cursor_pending(const struct mim_logic *l, const char *uid,
                                   const char *device) {
  char key[2 * MIM_ID_MAX + 2];
  size_t len = mim__key_pair(key, uid, device);
  uint64_t h;
  struct pending_cursor *pc = cursor_find(l, key, len, &h);
  return pc != NULL ? pc->seq : 0;
}

void mim__logic_cursor_done(struct mim_logic *l, const char *uid,
                            const char *device, uint64_t seq) {
  char key[2 * MIM_ID_MAX + 2];
  size_t len = mim__key_pair(key, uid, device);
  uint64_t h;
  struct pending_cursor *pc = cursor_find(l, key, len, &h);
  /* a higher one may be waiting in the next batch: keep it until then */
  if (pc != NULL && pc->seq <= seq) {
    mim__htable_remove(&l->cursors, &pc->node);
    free(pc);
  }
}

static void cursor_free_cb(void *user, struct mim__hnode *n) {
  (void)user;
  free(mim__container_of(n, struct pending_cursor, node));
}

void mim__logic_cursors_finish(struct mim_logic *l) {
  mim__htable_foreach(&l->cursors, cursor_free_cb, NULL);
  mim__htable_finish(&l->cursors);
}

void mim__logic_count_error(struct mim_logic *l, int32_t code) {
  l->stats.errors++;
  if (code >= MIM_ERR__FIRST && code - MIM_ERR__FIRST < MIM_STATS_ERR_CODES)
    l->stats.errors_by_code[code - MIM_ERR__FIRST]++;
}

/* ---- events for the application ---- */

void mim__logic_event(struct mim_logic *l, const struct mim_event *ev) {
  if (l->event_fn != NULL)
    l->event_fn(l->event_user, ev);
}

bool mim__logic_user_online(const struct mim_logic *l, const char *uid) {
  return mim_sessions_foreach_device(l->sessions, uid, NULL, NULL) > 0;
}

void mim__logic_presence_changed(struct mim_logic *l, const char *uid,
                                 const char *device, bool online) {
  size_t n = mim_sessions_foreach_device(l->sessions, uid, NULL, NULL);
  /* online: the bind just made is the only route; offline: none is left */
  if (n != (online ? 1u : 0u))
    return;
  mim__logic_presence_went(l, uid, online); /* last_seen, pushes (§21) */
  if (l->event_fn == NULL)
    return;
  struct mim_event ev = {
      .kind = online ? MIM_EVENT_USER_ONLINE : MIM_EVENT_USER_OFFLINE,
      .time_ms = mim__logic_now(l),
      .uid = uid,
      .device = device != NULL ? device : "",
      .from = "", .from_device = "", .to = "", .client_msg_id = "",
      .group = "",
  };
  mim__logic_event(l, &ev);
}
