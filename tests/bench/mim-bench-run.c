/* mim-bench: one worker process - its share of the connections, the
 * scenario's state machine, verification, and the records to the parent.
 *
 * Phases: CONNECT (open + authenticate every connection, at most
 * --concurrency at a time) -> SETUP (group: create the groups; sync: store
 * the messages) -> WAIT_GO (READY sent; the parent starts every worker at
 * the same instant) -> WARMUP -> MEASURE -> DRAIN (no new sends; wait for
 * replies and pushes in flight) for c2c and group; HOLD for idle; SYNC
 * (users connect and pull) for sync -> REPORTED (RESULT sent; wait for
 * FINISH so the parent can read the gateway's memory with everything still
 * open). Every phase has a time limit; alarm() backs them all up. */
#include "mim-bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEND_SEQ_BASE (INT64_C(1) << 40) /* request seq of message seq 0 */
#define GROUP_CHUNK 500                  /* members per create/add request */
/* --online / --large: logicd's default group_request_members_max, so a
 * 100,000-member group takes 100 requests */
#define GROUP_CHUNK_BIG 1000
#define CONTENT_MAGIC "mb1 "
#define MAX_RETRIES_PER_SENDER 100000
#define BACKOFF_MIN_NS (INT64_C(20) * 1000000)   /* first retry after 20 ms */
#define BACKOFF_MAX_NS (INT64_C(1000) * 1000000)
#define FINISH_WAIT_NS (INT64_C(60) * 1000000000)
#define NS (INT64_C(1000000000))
#define MAX_CONNECT_TRIES 5
#define REDIAL_BASE_NS (INT64_C(100) * 1000000) /* 100 ms, doubling */

static int64_t sec_ns(double s) { return (int64_t)(s * 1e9); }

/* ---- records to the parent ---- */

static void write_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  /* bounded by len: every pass writes at least one byte or gives up */
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      _exit(3); /* the parent is gone */
    p += n;
    len -= (size_t)n;
  }
}

static void send_rec(struct worker *w, uint32_t type, const void *body,
                     uint32_t len) {
  struct rec_hdr h = {type, len};
  write_all(w->up_fd, &h, sizeof h);
  if (len > 0)
    write_all(w->up_fd, body, len);
}

void fail_worker(struct worker *w, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!w->fatal)
    send_rec(w, REC_FAIL, msg, (uint32_t)strlen(msg) + 1);
  w->fatal = true;
  w->stop = true;
}

static void set_phase(struct worker *w, enum phase ph) {
  w->phase = ph;
  w->t_phase = now_ns();
}

/* ---- helpers ---- */

static bool measuring(const struct worker *w, int64_t t) {
  return w->t_meas_start != 0 && t >= w->t_meas_start && t < w->t_meas_end;
}

static void count_error(struct worker *w, int32_t code) {
  int slot = code > 1000 && code < 1000 + BENCH_ERR_SLOTS ? code - 1000 : 0;
  w->res.errors[slot]++;
}

static uint32_t pow2_at_least(uint32_t n) {
  uint32_t p = 1;
  while (p < n && p < (1u << 30))
    p <<= 1;
  return p;
}

static bool new_sends_allowed(const struct worker *w, const struct sender *s) {
  if (s->limit > 0)
    return w->phase == PH_SETUP && s->next_seq < s->limit;
  return w->phase == PH_WARMUP || w->phase == PH_MEASURE;
}

/* ---- sending messages ---- */

/* Queues message `seq` of `s`. Returns false when it could not be queued
 * (the connection is gone): the caller stops sending on it. */
static bool send_msg(struct worker *w, struct sender *s, uint64_t seq,
                     int64_t ts, int64_t now) {
  const struct bench_opts *o = w->o;
  struct bconn *c = &w->conns[s->conn];
  char cmid[32];
  int n = snprintf(w->content, o->size + 64, CONTENT_MAGIC "%" PRIu32
                   " %" PRIu64 " %" PRId64 " ",
                   s->sid, seq, ts);
  if (n < 0)
    n = 0;
  if ((uint32_t)n < o->size) {
    memset(w->content + n, 'x', o->size - (uint32_t)n);
    n = (int)o->size;
  }
  w->content[n] = '\0';
  snprintf(cmid, sizeof cmid, "m%" PRIu64, seq);

  struct mim_packet p;
  mim_packet_init(&p);
  if (o->sc == SC_GROUP) {
    p.cmd = MIM_CMD_C2G_SEND_REQ;
    p.group = s->to;
  } else {
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    p.to = s->to;
  }
  p.content = w->content;
  p.seq = SEND_SEQ_BASE + (int64_t)seq;
  p.client_msg_id = cmid;
  int r = net_queue(c, &p);
  if (r != 0) {
    if (r != -ENOTCONN)
      fail_worker(w, "%s: cannot queue a send: %d", c->uid, r);
    s->failed++;
    w->res.send_failed++;
    return false;
  }
  s->ring[seq & s->ring_mask] = now;
  s->tsring[seq & s->ring_mask] = ts;
  /* inflight <= window < ring size: the FIFO never overflows */
  s->fifo[(s->fifo_head + s->fifo_len++) & s->ring_mask] = seq;
  s->inflight++;
  w->inflight_total++;
  w->res.sent++;
  if (measuring(w, now))
    w->res.sent_in_window++;
  return true;
}

/* Sends what the sender may: retries first, then new messages (as fast as
 * the window allows, or when due at the fixed rate). Bounded by the
 * window. */
static void pump(struct worker *w, struct sender *s, int64_t now) {
  const struct bench_opts *o = w->o;
  if (w->conns[s->conn].state != CS_READY)
    return;
  while (s->inflight < o->window) {
    if (s->nretry > 0) {
      /* a retryable error pauses the sender (new messages too), as a
       * client backing off would */
      if (now < s->t_retry)
        break;
      uint64_t seq = s->retry[--s->nretry];
      w->res.retried++;
      if (bm_set(&s->retried, seq) != 0) {
        fail_worker(w, "out of memory");
        break;
      }
      /* the very same message: same client_msg_id, same content */
      if (!send_msg(w, s, seq, s->tsring[seq & s->ring_mask], now))
        break;
      continue;
    }
    if (!new_sends_allowed(w, s))
      break;
    int64_t ts = now;
    if (o->rate > 0 && s->limit == 0) {
      if (s->t_next > now)
        break;
      ts = s->t_next; /* the intended time: a late send shows as latency */
      s->t_next += s->interval;
    }
    if (!send_msg(w, s, s->next_seq++, ts, now))
      break;
  }
}

static void pump_all(struct worker *w, int64_t now) {
  for (uint32_t i = 0; i < w->nsenders; i++)
    pump(w, &w->senders[i], now);
}

/* Pushes one acknowledged message makes: every other ONLINE member's
 * connection (offline members have no connection to push to). */
static uint64_t fanout(const struct worker *w) {
  return w->o->sc == SC_GROUP ? w->o->online - 1 : 1;
}

/* Replies (and Errors) on a connection come in request order: the answer
 * must be for the oldest request outstanding. */
static void check_reply_order(struct worker *w, struct sender *s,
                              uint64_t seq) {
  if (s->fifo_len == 0)
    return;
  uint64_t head = s->fifo[s->fifo_head & s->ring_mask];
  s->fifo_head++;
  s->fifo_len--;
  if (head != seq)
    w->res.reply_order++;
}

/* The sender role of a connection, or NULL. */
static struct sender *sender_of(struct worker *w, const struct bconn *c) {
  if (c->kind == CK_SENDER || c->kind == CK_FILLER)
    return &w->senders[c->role];
  if (c->kind == CK_MEMBER && c->sender != UINT32_MAX)
    return &w->senders[c->sender];
  return NULL;
}

static void on_send_reply(struct worker *w, struct sender *s,
                          const struct mim_packet *p, int64_t now) {
  uint64_t seq = (uint64_t)(p->seq - SEND_SEQ_BASE);
  if (p->seq < SEND_SEQ_BASE || seq >= s->next_seq || s->inflight == 0) {
    w->res.misrouted++;
    return;
  }
  check_reply_order(w, s, seq);
  s->inflight--;
  w->inflight_total--;
  if (bm_test(&s->okmap, seq)) {
    w->res.misrouted++; /* a second reply for one message */
  } else if (bm_set(&s->okmap, seq) != 0) {
    fail_worker(w, "out of memory");
    return;
  } else {
    s->ok++;
    s->backoff = 0;
    w->res.replied_ok++;
    w->expect_deliveries += s->limit > 0 ? 0 : fanout(w);
    if (s->limit > 0)
      w->res.prefill_msgs++;
    if (measuring(w, s->ring[seq & s->ring_mask]))
      hist_add(&w->res.lat_reply, (uint64_t)(now - s->ring[seq & s->ring_mask]));
  }
  pump(w, s, now);
}

static void on_send_error(struct worker *w, struct sender *s,
                          const struct mim_packet *p, int64_t now) {
  uint64_t seq = (uint64_t)(p->seq - SEND_SEQ_BASE);
  if (p->seq < SEND_SEQ_BASE || seq >= s->next_seq || s->inflight == 0) {
    w->res.misrouted++;
    return;
  }
  check_reply_order(w, s, seq);
  s->inflight--;
  w->inflight_total--;
  if (p->retryable && s->nretry < MAX_RETRIES_PER_SENDER &&
      w->phase != PH_REPORTED) {
    if (s->nretry == s->retry_cap) {
      uint32_t cap = s->retry_cap ? s->retry_cap * 2 : 64;
      uint64_t *nr = realloc(s->retry, cap * sizeof *nr);
      if (nr == NULL) {
        fail_worker(w, "out of memory");
        return;
      }
      s->retry = nr;
      s->retry_cap = cap;
    }
    s->retry[s->nretry++] = seq;
    /* one pause per round: the rest of a refused window shares it; the
     * pause doubles only when messages sent after it are refused again */
    if (now >= s->t_retry) {
      s->backoff = s->backoff ? s->backoff * 2 : BACKOFF_MIN_NS;
      if (s->backoff > BACKOFF_MAX_NS)
        s->backoff = BACKOFF_MAX_NS;
      s->t_retry = now + s->backoff;
    }
  } else {
    s->failed++;
    w->res.send_failed++;
  }
  pump(w, s, now);
}

/* ---- receiving messages ---- */

static void queue_ack(struct worker *w, struct bconn *c, uint32_t cmd,
                      uint64_t inbox_seq) {
  struct mim_packet a;
  mim_packet_init(&a);
  a.cmd = cmd;
  a.inbox_seq = inbox_seq;
  if (net_queue(c, &a) == 0)
    w->res.acks_sent++;
}

/* Parses "mb1 SID SEQ TS ..." */
static bool parse_content(const char *s, uint32_t *sid, uint64_t *seq,
                          int64_t *ts) {
  if (strncmp(s, CONTENT_MAGIC, 4) != 0)
    return false;
  char *end;
  const char *q = s + 4;
  unsigned long long a = strtoull(q, &end, 10);
  if (end == q || *end != ' ')
    return false;
  q = end + 1;
  unsigned long long b = strtoull(q, &end, 10);
  if (end == q || *end != ' ')
    return false;
  q = end + 1;
  long long t = strtoll(q, &end, 10);
  if (end == q || (*end != ' ' && *end != '\0'))
    return false;
  *sid = (uint32_t)a;
  *seq = b;
  *ts = t;
  return true;
}

/* Records message `seq` in `t`: duplicates, order. Returns true when new. */
static bool track_seen(struct worker *w, struct track *t, uint64_t seq,
                       const struct sender *from) {
  if (bm_test(&t->seen, seq)) {
    w->res.dup++;
    return false;
  }
  if (bm_set(&t->seen, seq) != 0) {
    fail_worker(w, "out of memory (sequence %" PRIu64 ")", seq);
    return false;
  }
  if (seq < t->hi) {
    if (from != NULL && bm_test(&from->retried, seq))
      w->res.ooo_retried++;
    else
      w->res.ooo++;
  } else
    t->hi = seq + 1;
  w->res.distinct++;
  return true;
}

/* --large: a push of a read-diffusion group (cmd 12, inbox_seq 0, conv_seq
 * set). Every message and notice takes the next conv_seq of the group's
 * timeline, so a connection must see them in ascending order, each once and
 * without holes once it has its first; a sending connection is not pushed
 * its own messages, so its holes are checked against its own sends in
 * verify(). Only pushes that pass every check count as deliveries. */
static void on_large_push(struct worker *w, struct bconn *c,
                          struct receiver *r, const struct mim_packet *p,
                          int64_t now) {
  const struct bench_opts *o = w->o;
  uint32_t sid;
  uint64_t seq;
  int64_t ts;
  bool ours = p->content != NULL && parse_content(p->content, &sid, &seq, &ts);
  (void)c;
  if (p->inbox_seq > 0 || p->conv_seq == 0) {
    if (ours) {
      w->res.not_large++; /* a bench message by write diffusion */
      return;
    }
    /* a member just added gets the add notice in its inbox: it still
     * holds a timeline position */
    if (p->conv_seq > 0 && r->conv_last > 0 && p->conv_seq == r->conv_last + 1)
      r->conv_last = p->conv_seq;
    w->res.other_pushes++;
    return;
  }
  if (r->conv_last > 0) {
    if (p->conv_seq <= r->conv_last) {
      w->res.conv_dup++;
      return;
    }
    r->conv_gaps += p->conv_seq - r->conv_last - 1;
  }
  r->conv_last = p->conv_seq;
  if (!ours) {
    if (p->type == MIM_MSG_SYSTEM)
      w->res.notices++; /* the group's create/add notices */
    else
      w->res.other_pushes++;
    return;
  }
  const struct group *g = &w->groups[r->group];
  if (sid >= r->ntracks || p->group == NULL || p->from == NULL ||
      strcmp(p->group, g->id) != 0 ||
      strcmp(p->from, w->conns[g->first_conn + sid].uid) != 0) {
    w->res.misrouted++;
    return;
  }
  if (p->msg_id == 0) {
    w->res.not_large++;
    return;
  }
  if (!track_seen(w, &r->tracks[sid], seq,
                  &w->senders[r->group * o->senders + sid]))
    return;
  w->res.delivered++;
  if (measuring(w, now))
    w->res.delivered_in_window++;
  if (now >= ts) {
    uint64_t lat = (uint64_t)(now - ts);
    if (measuring(w, ts))
      hist_add(&w->res.lat_push, lat);
    hist_add(&w->ival, lat);
  }
}

static void on_push(struct worker *w, struct bconn *c,
                    const struct mim_packet *p, int64_t now) {
  const struct bench_opts *o = w->o;
  uint32_t ack_cmd = p->cmd == MIM_CMD_C2G_PUSH ? MIM_CMD_C2G_PUSH_ACK
                     : p->cmd == MIM_CMD_SERVER_PUSH ? MIM_CMD_SERVER_PUSH_ACK
                                                     : MIM_CMD_C2C_PUSH_ACK;
  if (p->inbox_seq > 0) {
    if (c->batch && o->ack_coalesce) {
      if (p->inbox_seq > c->ack_max) {
        c->ack_max = p->inbox_seq;
        c->ack_cmd = ack_cmd;
      }
    } else {
      queue_ack(w, c, ack_cmd, p->inbox_seq);
    }
  }
  if (c->kind != CK_RECEIVER && c->kind != CK_MEMBER) {
    w->res.other_pushes++;
    return;
  }
  struct receiver *r = &w->receivers[c->role];
  if (o->large && p->cmd == MIM_CMD_C2G_PUSH) {
    on_large_push(w, c, r, p, now);
    return;
  }
  /* a sending member's own messages take inbox positions without a push
   * to it: gaps are only meaningful for pure receivers */
  if (p->inbox_seq > 0 && c->sender == UINT32_MAX) {
    if (r->last_inbox > 0 && p->inbox_seq != r->last_inbox + 1)
      w->res.inbox_gaps++;
    if (p->inbox_seq > r->last_inbox)
      r->last_inbox = p->inbox_seq;
  }
  uint32_t sid;
  uint64_t seq;
  int64_t ts;
  if (p->cmd == MIM_CMD_SERVER_PUSH ||
      !parse_content(p->content, &sid, &seq, &ts)) {
    w->res.other_pushes++;
    return;
  }
  struct track *t = NULL;
  const struct sender *from = NULL;
  if (o->sc == SC_GROUP) {
    const struct group *g = &w->groups[r->group];
    if (p->cmd == MIM_CMD_C2G_PUSH && sid < r->ntracks &&
        strcmp(p->group, g->id) == 0 &&
        strcmp(p->from, w->conns[g->first_conn + sid].uid) == 0) {
      t = &r->tracks[sid];
      from = &w->senders[r->group * o->senders + sid];
    }
  } else if (p->cmd == MIM_CMD_C2C_PUSH && sid == r->first_sid &&
             strcmp(p->from, r->from) == 0) {
    t = &r->tracks[0];
    from = &w->senders[c->role];
  }
  if (t == NULL) {
    w->res.misrouted++;
    return;
  }
  w->res.delivered++;
  if (measuring(w, now))
    w->res.delivered_in_window++;
  if (!track_seen(w, t, seq, from))
    return;
  if (now >= ts) {
    uint64_t lat = (uint64_t)(now - ts);
    if (measuring(w, ts))
      hist_add(&w->res.lat_push, lat);
    hist_add(&w->ival, lat);
  }
}

void on_message_end(struct worker *w, struct bconn *c) {
  if (c->ack_max > 0) {
    queue_ack(w, c, c->ack_cmd, c->ack_max);
    c->ack_max = 0;
  }
}

/* ---- groups ---- */

static void group_request(struct worker *w, struct group *g) {
  const struct bench_opts *o = w->o;
  struct bconn *c = &w->conns[g->first_conn];
  uint32_t total = o->members - 1;
  uint32_t n = total - g->added;
  uint32_t chunk = o->large || o->online < o->members ? GROUP_CHUNK_BIG
                                                       : GROUP_CHUNK;
  if (n > chunk)
    n = chunk;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = g->added == 0 ? MIM_CMD_GROUP_CREATE_REQ : MIM_CMD_GROUP_ADD_REQ;
  p.group = g->id;
  p.members = g->uids + g->added;
  p.n_members = n;
  p.seq = ++c->req_seq;
  g->added += n;
  int r = net_queue(c, &p);
  if (r != 0)
    fail_worker(w, "%s: cannot queue a group request: %d", c->uid, r);
}

static void on_group_reply(struct worker *w, struct bconn *c) {
  const struct bench_opts *o = w->o;
  struct group *g = &w->groups[w->receivers[c->role].group];
  if (g->ready)
    return;
  w->res.group_reqs++;
  w->res.t_setup_end = now_ns();
  if (g->added < o->members - 1 && o->members > 1) {
    group_request(w, g);
    return;
  }
  g->ready = true;
  w->groups_ready++;
  w->res.groups_ready++;
}

/* ---- sync ---- */

static void send_pull(struct worker *w, struct bconn *c, uint64_t after) {
  struct receiver *r = &w->receivers[c->role];
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.has_after_seq = true;
  p.after_seq = after;
  p.limit = (int32_t)w->o->pull_limit;
  p.seq = ++c->req_seq;
  r->t_pull = now_ns();
  if (net_queue(c, &p) != 0)
    fail_worker(w, "%s: cannot queue a pull", c->uid);
}

static void user_done(struct worker *w, struct receiver *r, int64_t now) {
  if (r->done)
    return;
  r->done = true;
  w->users_done++;
  w->res.sync_users_done++;
  if (r->pulled != w->o->messages)
    w->res.sync_bad++;
  if (now > w->res.t_sync_end)
    w->res.t_sync_end = now;
}

static void on_pull_reply(struct worker *w, struct bconn *c,
                          const struct mim_packet *p, int64_t now) {
  const struct bench_opts *o = w->o;
  struct receiver *r = &w->receivers[c->role];
  if (r->done)
    return;
  w->res.pull_pages++;
  hist_add(&w->res.lat_reply, (uint64_t)(now - r->t_pull));
  for (size_t i = 0; i < p->n_items; i++) {
    const struct mim_pull_item *it = &p->items[i];
    if (it->inbox_seq != r->last_inbox + 1)
      w->res.inbox_gaps++;
    if (it->inbox_seq > r->last_inbox)
      r->last_inbox = it->inbox_seq;
    uint32_t sid;
    uint64_t seq;
    int64_t ts;
    if (!parse_content(it->content, &sid, &seq, &ts) ||
        sid != w->glo + c->role) {
      w->res.misrouted++;
      continue;
    }
    /* filler i stored user i's messages; a retried one may sit later */
    if (track_seen(w, &r->tracks[0], seq, &w->senders[c->role])) {
      r->pulled++;
      w->res.pulled++;
    }
  }
  if (p->has_more && p->n_items > 0 && r->pulled < (uint64_t)o->messages * 2) {
    send_pull(w, c, r->last_inbox);
    return;
  }
  /* processed everything: acknowledge it, as a client would */
  if (r->last_inbox > 0)
    queue_ack(w, c, MIM_CMD_C2C_PUSH_ACK, r->last_inbox);
  user_done(w, r, now);
}

/* ---- connections ---- */

void on_conn_open(struct worker *w, struct bconn *c) {
  const struct bench_opts *o = w->o;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.token = "bench"; /* logicd runs with --dev-auth */
  p.uid = c->uid;
  p.device = o->device;
  p.seq = ++c->req_seq;
  p.caps = o->batch ? MIM_CAP_BATCH : 0;
  if (o->large)
    p.caps |= MIM_CAP_LARGE;
  if (net_queue(c, &p) != 0)
    net_drop(c);
}

/* One connection of the range being opened is done (ready or failed). */
static void settle(struct worker *w) {
  if (w->connecting > 0)
    w->connecting--;
  w->settled++;
}

void on_conn_error(struct worker *w, struct bconn *c, const char *why) {
  if (c->state != CS_CONNECTING && c->state != CS_AUTHING)
    return;
  if (c->tries + 1 < MAX_CONNECT_TRIES &&
      (w->phase == PH_CONNECT || w->phase == PH_SYNC)) {
    /* reconnected by pace_connects() after a backoff, as a client would */
    c->state = CS_IDLE;
    c->t_start = now_ns() + (REDIAL_BASE_NS << c->tries);
    c->tries++;
    w->res.conn_retries++;
    if (w->connecting > 0)
      w->connecting--;
    w->redial[w->nredial++] = c->id; /* room for every connection */
    return;
  }
  if (w->res.conns_failed++ < 3)
    fprintf(stderr, "mim-bench[%d]: %s: connect failed: %s\n", w->idx, c->uid,
            why);
  c->state = CS_FAILED;
  settle(w);
  if (c->kind == CK_USER)
    user_done(w, &w->receivers[c->role], now_ns());
}

void on_conn_closed(struct worker *w, struct bconn *c) {
  bool was_ready = c->state == CS_READY;
  if (!was_ready) {
    /* closed before the AuthResponse (an overloaded gateway's auth
     * deadline): reconnect, as a client would, a bounded number of times */
    if (c->tries + 1 < MAX_CONNECT_TRIES &&
        (w->phase == PH_CONNECT || w->phase == PH_SYNC)) {
      on_conn_error(w, c, "closed before the login completed");
      return;
    }
    c->state = CS_CLOSED;
    w->res.auth_failed++;
    settle(w);
  }
  c->state = CS_CLOSED;
  if (w->phase != PH_DONE && !(c->kind == CK_USER && w->receivers[c->role].done))
    w->res.closed_unexpected++;
  if (c->kind == CK_USER)
    user_done(w, &w->receivers[c->role], now_ns());
  /* a sender's messages in flight will never be answered */
  struct sender *s = sender_of(w, c);
  if (s != NULL) {
    w->inflight_total -= s->inflight;
    w->res.unanswered += s->inflight;
    s->inflight = 0;
    s->fifo_len = 0;
    s->nretry = 0;
  }
}

static void on_auth(struct worker *w, struct bconn *c,
                    const struct mim_packet *p, int64_t now) {
  const struct bench_opts *o = w->o;
  if (c->state != CS_AUTHING)
    return;
  if (p->status != 0) {
    if (w->res.auth_failed++ < 3)
      fprintf(stderr, "mim-bench[%d]: %s: login refused: %d %s\n", w->idx,
              c->uid, p->status, p->text);
    c->state = CS_FAILED;
    settle(w);
    net_drop(c);
    return;
  }
  c->batch = (p->caps & MIM_CAP_BATCH) != 0;
  if (o->batch && !c->batch)
    w->res.batch_refused++;
  c->large = (p->caps & MIM_CAP_LARGE) != 0;
  if (o->large && !c->large)
    w->res.large_refused++;
  c->state = CS_READY;
  w->res.conns_ok++;
  settle(w);
  hist_add(&w->res.lat_conn, (uint64_t)(now - c->t_start));
  if (w->res.t_conn_first == 0 || c->t_start < w->res.t_conn_first)
    w->res.t_conn_first = c->t_start;
  if (now > w->res.t_conn_last)
    w->res.t_conn_last = now;
  if (c->kind == CK_USER) {
    if (p->last_inbox_seq != o->messages)
      w->res.sync_bad++;
    send_pull(w, c, 0);
  }
}

void on_packet(struct worker *w, struct bconn *c, const struct mim_packet *p,
               int64_t now) {
  switch (p->cmd) {
  case MIM_CMD_AUTH_RSP:
    on_auth(w, c, p, now);
    break;
  case MIM_CMD_C2C_SEND_RSP:
  case MIM_CMD_C2G_SEND_RSP:
    if (sender_of(w, c) != NULL)
      on_send_reply(w, sender_of(w, c), p, now);
    else
      w->res.misrouted++;
    break;
  case MIM_CMD_C2C_PUSH:
  case MIM_CMD_C2G_PUSH:
  case MIM_CMD_SERVER_PUSH:
    on_push(w, c, p, now);
    break;
  case MIM_CMD_PULL_RSP:
    if (c->kind == CK_USER)
      on_pull_reply(w, c, p, now);
    break;
  case MIM_CMD_GROUP_CREATE_RSP:
  case MIM_CMD_GROUP_ADD_RSP:
    if (c->kind == CK_MEMBER)
      on_group_reply(w, c);
    break;
  case MIM_CMD_KICK:
    w->res.kicked++;
    if (w->res.kicked < 3)
      fprintf(stderr, "mim-bench[%d]: %s kicked: reason %d %s\n", w->idx,
              c->uid, p->reason, p->text);
    break;
  case MIM_CMD_ERROR:
    count_error(w, p->status);
    if ((p->failed_cmd == MIM_CMD_C2C_SEND_REQ ||
         p->failed_cmd == MIM_CMD_C2G_SEND_REQ) &&
        p->seq >= SEND_SEQ_BASE) {
      if (sender_of(w, c) != NULL)
        on_send_error(w, sender_of(w, c), p, now);
      else
        w->res.misrouted++;
    } else if (p->failed_cmd == MIM_CMD_GROUP_CREATE_REQ ||
               p->failed_cmd == MIM_CMD_GROUP_ADD_REQ) {
      fail_worker(w, "%s: group request refused: %d %s", c->uid, p->status,
                  p->text);
    } else if (p->failed_cmd == MIM_CMD_PULL_REQ && c->kind == CK_USER) {
      w->res.sync_bad++;
      user_done(w, &w->receivers[c->role], now);
    } else if (w->res.errors[0] + w->res.errors[4] < 3) {
      /* counted above; e.g. the gateway's auth deadline (1004, cmd 0) */
      fprintf(stderr, "mim-bench[%d]: %s: error %d for cmd %u: %s\n", w->idx,
              c->uid, p->status, p->failed_cmd, p->text);
    }
    break;
  default:
    break;
  }
}

/* ---- layout: this worker's share ---- */

static void share(uint32_t total, int idx, int n, uint32_t *lo, uint32_t *hi) {
  *lo = (uint32_t)((uint64_t)total * (uint64_t)idx / (uint64_t)n);
  *hi = (uint32_t)((uint64_t)total * (uint64_t)(idx + 1) / (uint64_t)n);
}

static void conn_setup(struct worker *w, uint32_t i, uint8_t kind,
                       uint32_t global, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void conn_setup(struct worker *w, uint32_t i, uint8_t kind,
                       uint32_t global, const char *fmt, ...) {
  struct bconn *c = &w->conns[i];
  va_list ap;
  c->w = w;
  c->id = i;
  c->kind = kind;
  c->state = CS_IDLE;
  c->sender = UINT32_MAX;
  c->url = (uint16_t)(global % (uint32_t)w->o->nurls);
  va_start(ap, fmt);
  vsnprintf(c->uid, sizeof c->uid, fmt, ap);
  va_end(ap);
}

static int sender_init(struct worker *w, struct sender *s, uint32_t conn,
                       uint32_t sid, const char *to, uint64_t limit) {
  const struct bench_opts *o = w->o;
  s->conn = conn;
  s->sid = sid;
  s->to = to;
  s->limit = limit;
  /* larger than the window, so that a message sent again after a retryable
   * error keeps its slot while newer ones go out */
  s->ring_mask = pow2_at_least(4 * o->window) - 1;
  s->ring = calloc((size_t)s->ring_mask + 1, sizeof *s->ring);
  s->tsring = calloc((size_t)s->ring_mask + 1, sizeof *s->tsring);
  s->fifo = calloc((size_t)s->ring_mask + 1, sizeof *s->fifo);
  return s->ring && s->tsring && s->fifo ? 0 : -ENOMEM;
}

static int layout(struct worker *w) {
  const struct bench_opts *o = w->o;
  const char *px = o->prefix;
  uint32_t lo = 0, hi = 0;

  switch (o->sc) {
  case SC_C2C: {
    share(o->pairs, w->idx, w->nworkers, &lo, &hi);
    uint32_t n = hi - lo;
    w->nconns = 2 * n;
    w->conns = calloc(w->nconns ? w->nconns : 1, sizeof *w->conns);
    w->senders = calloc(n ? n : 1, sizeof *w->senders);
    w->receivers = calloc(n ? n : 1, sizeof *w->receivers);
    if (!w->conns || !w->senders || !w->receivers)
      return -ENOMEM;
    w->nsenders = w->nreceivers = n;
    for (uint32_t i = 0; i < n; i++) {
      uint32_t g = lo + i;
      conn_setup(w, 2 * i, CK_SENDER, 2 * g, "%s-s%" PRIu32, px, g);
      conn_setup(w, 2 * i + 1, CK_RECEIVER, 2 * g + 1, "%s-r%" PRIu32, px, g);
      w->conns[2 * i].role = i;
      w->conns[2 * i + 1].role = i;
      if (sender_init(w, &w->senders[i], 2 * i, g, w->conns[2 * i + 1].uid, 0))
        return -ENOMEM;
      struct receiver *r = &w->receivers[i];
      r->conn = 2 * i + 1;
      r->first_sid = g;
      r->from = w->conns[2 * i].uid;
      r->ntracks = 1;
      r->tracks = calloc(1, sizeof *r->tracks);
      if (r->tracks == NULL)
        return -ENOMEM;
    }
    break;
  }
  case SC_GROUP: {
    share(o->groups, w->idx, w->nworkers, &lo, &hi);
    /* N of the S members of each group connect (--online); the others
     * are only named in the create/add requests */
    uint32_t ng = hi - lo, S = o->members, N = o->online, K = o->senders;
    w->ngroups = ng;
    w->nconns = ng * N;
    w->conns = calloc(w->nconns ? w->nconns : 1, sizeof *w->conns);
    w->groups = calloc(ng ? ng : 1, sizeof *w->groups);
    w->senders = calloc(ng * K > 0 ? ng * K : 1, sizeof *w->senders);
    w->receivers = calloc(w->nconns ? w->nconns : 1, sizeof *w->receivers);
    if (!w->conns || !w->groups || !w->senders || !w->receivers)
      return -ENOMEM;
    w->nsenders = ng * K;
    w->nreceivers = w->nconns;
    for (uint32_t gi = 0; gi < ng; gi++) {
      struct group *g = &w->groups[gi];
      uint32_t gg = lo + gi;
      snprintf(g->id, sizeof g->id, "%s-g%" PRIu32, px, gg);
      g->first_conn = gi * N;
      g->uids = calloc(S, sizeof *g->uids);
      if (g->uids == NULL)
        return -ENOMEM;
      if (N < S) {
        size_t cap = (size_t)(S - N) * (strlen(px) + 24);
        g->offline_uids = malloc(cap);
        if (g->offline_uids == NULL)
          return -ENOMEM;
        size_t off = 0;
        for (uint32_t m = N; m < S; m++) {
          int k = snprintf(g->offline_uids + off, cap - off,
                           "%s-g%" PRIu32 "m%" PRIu32, px, gg, m);
          if (k < 0 || (size_t)k >= cap - off)
            return -ENOMEM;
          g->uids[m - 1] = g->offline_uids + off;
          off += (size_t)k + 1;
        }
      }
      for (uint32_t m = 0; m < N; m++) {
        uint32_t ci = gi * N + m;
        conn_setup(w, ci, CK_MEMBER, gg * N + m, "%s-g%" PRIu32 "m%" PRIu32,
                   px, gg, m);
        w->conns[ci].role = ci;
        struct receiver *r = &w->receivers[ci];
        r->conn = ci;
        r->group = gi;
        r->ntracks = K;
        r->tracks = calloc(K, sizeof *r->tracks);
        if (r->tracks == NULL)
          return -ENOMEM;
        if (m > 0)
          g->uids[m - 1] = w->conns[ci].uid;
        if (m < K) {
          w->conns[ci].sender = gi * K + m;
          if (sender_init(w, &w->senders[gi * K + m], ci, m, g->id, 0))
            return -ENOMEM;
          w->senders[gi * K + m].group = gi;
        }
      }
    }
    break;
  }
  case SC_IDLE: {
    share(o->conns, w->idx, w->nworkers, &lo, &hi);
    w->nconns = hi - lo;
    w->conns = calloc(w->nconns ? w->nconns : 1, sizeof *w->conns);
    if (!w->conns)
      return -ENOMEM;
    for (uint32_t i = 0; i < w->nconns; i++)
      conn_setup(w, i, CK_IDLE, lo + i, "%s-i%" PRIu32, px, lo + i);
    break;
  }
  case SC_SYNC: {
    share(o->users, w->idx, w->nworkers, &lo, &hi);
    uint32_t n = hi - lo;
    w->nconns = 2 * n;
    w->conns = calloc(w->nconns ? w->nconns : 1, sizeof *w->conns);
    w->senders = calloc(n ? n : 1, sizeof *w->senders);
    w->receivers = calloc(n ? n : 1, sizeof *w->receivers);
    if (!w->conns || !w->senders || !w->receivers)
      return -ENOMEM;
    w->nsenders = w->nreceivers = n;
    for (uint32_t i = 0; i < n; i++) {
      uint32_t g = lo + i;
      conn_setup(w, i, CK_FILLER, 2 * g, "%s-f%" PRIu32, px, g);
      conn_setup(w, n + i, CK_USER, 2 * g + 1, "%s-u%" PRIu32, px, g);
      w->conns[i].role = i;
      w->conns[n + i].role = i;
      if (sender_init(w, &w->senders[i], i, g, w->conns[n + i].uid,
                      o->messages))
        return -ENOMEM;
      struct receiver *r = &w->receivers[i];
      r->conn = n + i;
      r->ntracks = 1;
      r->tracks = calloc(1, sizeof *r->tracks);
      if (r->tracks == NULL)
        return -ENOMEM;
    }
    break;
  }
  }
  w->glo = lo;
  w->ghi = hi;
  w->res.conns_target = w->nconns;
  w->redial = calloc(w->nconns ? w->nconns : 1, sizeof *w->redial);
  return w->redial ? 0 : -ENOMEM;
}

static void layout_free(struct worker *w) {
  for (uint32_t i = 0; i < w->nconns; i++) {
    free(w->conns[i].tx);
    free(w->conns[i].rx);
  }
  for (uint32_t i = 0; i < w->nsenders; i++) {
    free(w->senders[i].ring);
    free(w->senders[i].tsring);
    free(w->senders[i].fifo);
    free(w->senders[i].retry);
    bm_free(&w->senders[i].okmap);
    bm_free(&w->senders[i].retried);
  }
  for (uint32_t i = 0; i < w->nreceivers; i++) {
    for (uint32_t k = 0; k < w->receivers[i].ntracks; k++)
      bm_free(&w->receivers[i].tracks[k].seen);
    free(w->receivers[i].tracks);
  }
  for (uint32_t i = 0; i < w->ngroups; i++) {
    free(w->groups[i].uids);
    free(w->groups[i].offline_uids);
  }
  free(w->redial);
  free(w->conns);
  free(w->senders);
  free(w->receivers);
  free(w->groups);
}

/* ---- verification ---- */

static void verify(struct worker *w) {
  const struct bench_opts *o = w->o;
  struct result *res = &w->res;
  if (o->sc == SC_C2C) {
    for (uint32_t i = 0; i < w->nsenders; i++) {
      const struct sender *s = &w->senders[i];
      const struct track *t = &w->receivers[i].tracks[0];
      res->expected += s->ok;
      res->lost += bm_count_andnot(&s->okmap, &t->seen, s->next_seq);
      res->extra += bm_count_andnot(&t->seen, &s->okmap, s->next_seq);
    }
  } else if (o->sc == SC_GROUP) {
    for (uint32_t i = 0; i < w->nsenders; i++) {
      const struct sender *s = &w->senders[i];
      const struct group *g = &w->groups[s->group];
      for (uint32_t m = 0; m < o->online; m++) {
        if (m == s->sid)
          continue; /* the sending connection gets no push of its own */
        const struct track *t =
            &w->receivers[g->first_conn + m].tracks[s->sid];
        res->expected += s->ok;
        res->lost += bm_count_andnot(&s->okmap, &t->seen, s->next_seq);
        res->extra += bm_count_andnot(&t->seen, &s->okmap, s->next_seq);
      }
    }
  } else if (o->sc == SC_SYNC) {
    for (uint32_t i = 0; i < w->nreceivers; i++) {
      const struct receiver *r = &w->receivers[i];
      res->expected += o->messages;
      if (r->pulled < o->messages)
        res->lost += o->messages - r->pulled;
    }
  }
  for (uint32_t i = 0; i < w->nsenders; i++)
    res->unanswered += w->senders[i].inflight + w->senders[i].nretry;
  if (o->sc == SC_GROUP && o->large) {
    /* a sending connection's holes may be its own messages (not pushed to
     * it): at most as many as it had acknowledged */
    for (uint32_t i = 0; i < w->nreceivers; i++) {
      const struct receiver *r = &w->receivers[i];
      const struct bconn *c = &w->conns[r->conn];
      uint64_t own = c->sender != UINT32_MAX ? w->senders[c->sender].ok : 0;
      uint64_t mine = r->conv_gaps < own ? r->conv_gaps : own;
      res->own_gaps += mine;
      res->conv_gaps += r->conv_gaps - mine;
    }
  }
}

/* ---- phases ---- */

static void start_connects(struct worker *w, uint32_t lo, uint32_t hi) {
  w->conn_lo = w->conn_next = lo;
  w->conn_hi = hi;
  w->settled = 0;
  w->connecting = 0;
}

/* Starts connections while fewer than --concurrency are in progress.
 * Bounded by the range. */
static void pace_connects(struct worker *w) {
  if (w->nredial > 0) {
    int64_t now = now_ns();
    uint32_t keep = 0, n_old = w->nredial;
    /* each connection is in the list at most once, so it never holds more
     * than nconns entries */
    for (uint32_t i = 0; i < n_old; i++) {
      struct bconn *c = &w->conns[w->redial[i]];
      if (c->state == CS_IDLE && c->t_start <= now &&
          w->connecting < w->o->concurrency && !w->stop) {
        w->connecting++;
        net_connect(w, c); /* may queue it again (after nredial's end) */
      } else if (c->state == CS_IDLE) {
        w->redial[keep++] = w->redial[i];
      }
    }
    /* connections that failed at once were appended after the old end:
     * move them down */
    for (uint32_t i = n_old; i < w->nredial; i++)
      w->redial[keep++] = w->redial[i];
    w->nredial = keep;
  }
  while (w->conn_next < w->conn_hi &&
         w->connecting < w->o->concurrency && !w->stop) {
    struct bconn *c = &w->conns[w->conn_next++];
    if (c->state != CS_IDLE)
      continue;
    w->connecting++;
    net_connect(w, c);
  }
}

static bool connects_done(const struct worker *w) {
  return w->settled >= w->conn_hi - w->conn_lo;
}

static void send_progress(struct worker *w, int64_t now) {
  struct progress p;
  memset(&p, 0, sizeof p);
  p.phase = w->phase;
  p.t = now;
  p.conns_ok = w->res.conns_ok;
  p.conns_failed = w->res.conns_failed + w->res.auth_failed;
  p.closed = w->res.closed_unexpected;
  p.sent = w->res.sent;
  p.replied = w->res.replied_ok;
  p.delivered = w->res.delivered;
  p.inflight = w->inflight_total;
  for (int i = 0; i < BENCH_ERR_SLOTS; i++)
    p.errors += w->res.errors[i];
  p.pulled = w->res.pulled;
  p.ival_p99_ns = hist_quantile(&w->ival, 0.99);
  hist_reset(&w->ival);
  send_rec(w, REC_PROGRESS, &p, sizeof p);
  w->t_last_progress = now;
}

static void enter_wait_go(struct worker *w) {
  set_phase(w, PH_WAIT_GO);
  send_rec(w, REC_READY, NULL, 0);
}

static void finish_run(struct worker *w, int64_t now) {
  if (w->o->sc == SC_SYNC) {
    w->res.t_win_end = now;
    w->res.cpu_ns = cpu_self_ns() - w->cpu_start;
  }
  verify(w);
  send_progress(w, now);
  send_rec(w, REC_RESULT, &w->res, sizeof w->res);
  set_phase(w, PH_REPORTED);
}

static void start_run(struct worker *w, int64_t t_go) {
  const struct bench_opts *o = w->o;
  w->t_go = t_go;
  if (o->sc == SC_C2C || o->sc == SC_GROUP) {
    w->t_meas_start = t_go + sec_ns(o->warmup);
    w->t_meas_end = w->t_meas_start + sec_ns(o->duration);
    w->t_drain_end = w->t_meas_end + sec_ns(o->drain);
    w->res.t_win_start = w->t_meas_start;
    w->res.t_win_end = w->t_meas_end;
    if (o->rate > 0) {
      /* the offered rate is shared evenly by every sender of every worker */
      uint64_t all = o->sc == SC_C2C ? o->pairs
                                     : (uint64_t)o->groups * o->senders;
      int64_t interval = (int64_t)(1e9 * (double)all / o->rate);
      if (interval < 1)
        interval = 1;
      for (uint32_t i = 0; i < w->nsenders; i++) {
        struct sender *s = &w->senders[i];
        s->interval = interval;
        /* staggered so the senders do not fire together */
        s->t_next = t_go + (int64_t)((double)interval * (double)i /
                                     (double)(w->nsenders ? w->nsenders : 1));
      }
    }
    set_phase(w, PH_WARMUP);
    pump_all(w, now_ns());
  } else if (o->sc == SC_IDLE) {
    w->t_meas_start = t_go;
    w->t_meas_end = t_go + sec_ns(o->hold);
    set_phase(w, PH_HOLD);
  } else {
    uint32_t n = w->nreceivers;
    int64_t now = now_ns();
    w->cpu_start = cpu_self_ns();
    w->res.t_win_start = now;
    w->res.t_sync_start = now;
    w->t_meas_end = now + sec_ns(o->duration);
    set_phase(w, PH_SYNC);
    start_connects(w, n, 2 * n);
    pace_connects(w);
  }
}

static void read_control(struct worker *w) {
  struct rec_hdr h;
  /* bounded: the pipe holds at most a few records */
  for (int i = 0; i < 16; i++) {
    ssize_t n = read(w->down_fd, &h, sizeof h);
    if (n == 0) {
      fail_worker(w, "parent went away");
      return;
    }
    if (n < 0)
      return; /* EAGAIN: nothing */
    if (n != (ssize_t)sizeof h) {
      fail_worker(w, "short control record");
      return;
    }
    int64_t t = 0;
    if (h.len == sizeof t) {
      /* a record is written whole; wait briefly for its body */
      int fl = fcntl(w->down_fd, F_GETFL);
      fcntl(w->down_fd, F_SETFL, fl & ~O_NONBLOCK);
      if (read(w->down_fd, &t, sizeof t) != (ssize_t)sizeof t) {
        fail_worker(w, "short control record");
        return;
      }
      fcntl(w->down_fd, F_SETFL, fl);
    }
    switch (h.type) {
    case REC_GO:
      /* started by tick() at that instant, together with the others */
      if (w->phase == PH_WAIT_GO && t > 0)
        w->t_go = t;
      break;
    case REC_FINISH:
      set_phase(w, PH_DONE);
      w->stop = true;
      break;
    case REC_ABORT:
    default:
      w->fatal = true; /* the parent knows; nothing to report */
      w->stop = true;
      break;
    }
  }
}

static bool drained(const struct worker *w) {
  if (w->inflight_total > 0)
    return false;
  for (uint32_t i = 0; i < w->nsenders; i++)
    if (w->senders[i].nretry > 0)
      return false;
  return w->res.distinct >= w->expect_deliveries;
}

static bool prefill_done(const struct worker *w) {
  for (uint32_t i = 0; i < w->nsenders; i++) {
    const struct sender *s = &w->senders[i];
    if (s->ok + s->failed < s->limit || s->inflight > 0 || s->nretry > 0)
      return false;
  }
  return true;
}

static void enter_setup(struct worker *w, int64_t now) {
  const struct bench_opts *o = w->o;
  set_phase(w, PH_SETUP);
  if (o->sc == SC_GROUP) {
    w->res.t_setup_start = now;
    for (uint32_t g = 0; g < w->ngroups; g++)
      group_request(w, &w->groups[g]);
  } else if (o->sc == SC_SYNC) {
    w->res.t_prefill_start = now;
    pump_all(w, now);
  } else {
    enter_wait_go(w);
  }
}

static void tick(struct worker *w) {
  const struct bench_opts *o = w->o;
  int64_t now = now_ns();

  read_control(w);
  if (getppid() != w->ppid)
    fail_worker(w, "parent went away");
  if (w->stop)
    return;
  switch (w->phase) {
  case PH_CONNECT:
    pace_connects(w);
    if (connects_done(w)) {
      uint32_t want = w->conn_hi - w->conn_lo;
      if (w->res.conns_ok < want && o->sc != SC_IDLE) {
        fail_worker(w, "%" PRIu64 " of %" PRIu32
                       " connections failed to open or log in",
                    (uint64_t)want - w->res.conns_ok, want);
        return;
      }
      if (o->sc == SC_IDLE) {
        w->res.cpu_ns = cpu_self_ns() - w->cpu_start;
        w->res.t_win_end = now;
      }
      enter_setup(w, now);
    } else if (now - w->t_phase > sec_ns(o->connect_timeout)) {
      w->res.timed_out++;
      if (o->sc != SC_IDLE) {
        fail_worker(w, "connecting timed out after %.0f s (%" PRIu64
                       " of %" PRIu32 " logged in)",
                    o->connect_timeout, w->res.conns_ok, w->nconns);
        return;
      }
      w->res.cpu_ns = cpu_self_ns() - w->cpu_start;
      w->res.t_win_end = now;
      enter_setup(w, now);
    }
    break;
  case PH_SETUP:
    if (o->sc == SC_GROUP && w->groups_ready == w->ngroups) {
      enter_wait_go(w);
    } else if (o->sc == SC_SYNC && (pump_all(w, now), prefill_done(w))) {
      w->res.t_prefill_end = now;
      enter_wait_go(w);
    } else if (now - w->t_phase > sec_ns(o->setup_timeout)) {
      fail_worker(w, "setup timed out after %.0f s", o->setup_timeout);
      return;
    }
    break;
  case PH_WARMUP:
  case PH_MEASURE:
    if (w->phase == PH_WARMUP && now >= w->t_meas_start) {
      w->cpu_start = cpu_self_ns();
      set_phase(w, PH_MEASURE);
    }
    if (w->phase == PH_MEASURE && now >= w->t_meas_end) {
      w->res.cpu_ns = cpu_self_ns() - w->cpu_start;
      set_phase(w, PH_DRAIN);
    }
    pump_all(w, now); /* due messages (--rate) and retries after backoff */
    break;
  case PH_DRAIN:
    pump_all(w, now); /* retries only */
    if (drained(w)) {
      w->res.drain_ns = (uint64_t)(now - w->t_meas_end);
      finish_run(w, now);
    } else if (now >= w->t_drain_end) {
      w->res.drain_ns = (uint64_t)(now - w->t_meas_end);
      w->res.timed_out++;
      finish_run(w, now);
    }
    break;
  case PH_HOLD:
    if (now >= w->t_meas_end)
      finish_run(w, now);
    break;
  case PH_SYNC:
    pace_connects(w);
    if (w->users_done >= w->nreceivers) {
      finish_run(w, now);
    } else if (now >= w->t_meas_end) {
      w->res.timed_out++;
      finish_run(w, now);
    }
    break;
  case PH_REPORTED:
    if (now - w->t_phase > FINISH_WAIT_NS)
      w->stop = true;
    break;
  case PH_WAIT_GO:
    if (w->t_go > 0 && now >= w->t_go)
      start_run(w, w->t_go);
    break;
  case PH_DONE:
    break;
  }
  if (!w->stop && now - w->t_last_progress >= NS && w->phase != PH_REPORTED)
    send_progress(w, now);
}

static void tick_cb(lws_sorted_usec_list_t *sul) {
  struct worker *w = lws_container_of(sul, struct worker, tick_sul);
  tick(w);
  if (!w->stop)
    lws_sul_schedule(w->ctx, 0, &w->tick_sul, tick_cb, w->tick_us);
}

/* Upper bound of a worker's life, for alarm(). */
static unsigned budget_s(const struct bench_opts *o) {
  double t = o->connect_timeout + o->setup_timeout + o->warmup + o->duration +
             o->drain + o->hold + FINISH_WAIT_NS / 1e9 + 60;
  return (unsigned)t;
}

int worker_main(const struct bench_opts *o, int idx, int nworkers, int up_fd,
                int down_fd) {
  static struct worker wk; /* large (histograms): not on the stack */
  struct worker *w = &wk;
  int rc = 0;

  memset(w, 0, sizeof *w);
  w->o = o;
  w->idx = idx;
  w->nworkers = nworkers;
  w->up_fd = up_fd;
  w->down_fd = down_fd;
  w->ppid = getppid();
  w->rng = (uint32_t)(now_ns() ^ ((int64_t)getpid() << 16)) | 1;
  w->res.workers = 1;
  w->tick_us = o->rate > 0 ? 1000 : 5000;
  alarm(budget_s(o));
  signal(SIGPIPE, SIG_IGN);
  fcntl(down_fd, F_SETFL, fcntl(down_fd, F_GETFL) | O_NONBLOCK);

  w->content = malloc(o->size + 128);
  if (w->content == NULL || layout(w) != 0) {
    fail_worker(w, "out of memory laying out %s", o->prefix);
    rc = 1;
    goto out;
  }
  mim_packet_init(&w->pkt);
  if (net_init(w) != 0) {
    fail_worker(w, "cannot create the lws context");
    rc = 1;
    goto out;
  }
  w->cpu_start = cpu_self_ns();
  set_phase(w, PH_CONNECT);
  w->t_last_progress = now_ns();
  if (o->sc == SC_IDLE)
    w->res.t_win_start = w->t_phase; /* idle: the window is the connecting */
  start_connects(w, 0, o->sc == SC_SYNC ? w->nconns / 2 : w->nconns);
  pace_connects(w);
  lws_sul_schedule(w->ctx, 0, &w->tick_sul, tick_cb, w->tick_us);
  /* bounded by the phase time limits (tick) and alarm() */
  while (!w->stop)
    net_run_once(w);
  lws_sul_cancel(&w->tick_sul);
  rc = w->fatal ? 1 : 0;
out:
  mim_packet_finish(&w->pkt);
  net_destroy(w);
  layout_free(w);
  free(w->content);
  return rc;
}
