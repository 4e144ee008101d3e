/* Requests awaiting their answer, per connection.
 *
 * Replies on one connection come in request order, Errors included, and a
 * seed client matches them by order alone (docs/protocol.md §4). logicd
 * keeps that order for what it answers; the gateway must keep it for what
 * it answers itself and for what logicd can no longer answer:
 *
 *  - every request forwarded to logicd that expects a reply (all but the
 *    push acks) is recorded as (seq, cmd); each reply DELIVERed to the
 *    connection answers the oldest;
 *  - an answer made here (BUSY while the RPC output is over its high-water
 *    mark, BAD_VERSION, UNKNOWN_CMD/FORBIDDEN for server commands,
 *    UNAUTHENTICATED before login, RATE_LIMITED) goes out at once if
 *    nothing is pending, otherwise it is recorded and sent when the replies
 *    before it have gone out;
 *  - when the link dies, every forwarded request is answered UNAVAILABLE
 *    (retryable; a heartbeat with its usual reply, as the gateway answers
 *    heartbeats itself while logicd is away), in order with the local
 *    answers between them. From then on nothing is pending, so what the
 *    gateway answers while the link is down comes after all of these.
 *
 * The FIFO is a ring that grows by doubling up to GW_PENDING_MAX entries;
 * once a burst has drained, a ring of more than RING_KEEP entries is freed,
 * so an idle connection keeps 4-16 entries (64-256 bytes) at most. */
#include "pending.h"

#include "gateway.h"
#include "tx.h"

#include <log.h>
#include <stdlib.h>

#define RING_MIN 4
/* an empty ring bigger than this is given back */
#define RING_KEEP 16

/* The client commands that get no reply: the push acks, and TYPING_REQ
 * (docs/protocol.md §20). */
static bool is_ack(uint32_t cmd) {
  return cmd == MIM_CMD_C2C_PUSH_ACK || cmd == MIM_CMD_C2G_PUSH_ACK ||
         cmd == MIM_CMD_SERVER_PUSH_ACK || cmd == MIM_CMD_TYPING_REQ;
}

int gw_pending_reserve(struct client *c, uint32_t cmd) {
  /* an ack is never recorded when forwarded, and answered at once when
   * nothing is pending */
  if (c->pend_n < c->pend_cap || (is_ack(cmd) && c->pend_n == 0))
    return 0;
  if (c->pend_n >= GW_PENDING_MAX)
    return -ENOBUFS;
  uint16_t cap = c->pend_cap ? (uint16_t)(c->pend_cap * 2) : RING_MIN;
  struct pending_req *v = malloc(cap * sizeof *v);
  if (v == NULL)
    return -ENOMEM;
  /* unwrap the ring: the head moves to 0 */
  for (uint16_t i = 0; i < c->pend_n; i++)
    v[i] = c->pend[(c->pend_head + i) % c->pend_cap];
  free(c->pend);
  c->pend = v;
  c->pend_cap = cap;
  c->pend_head = 0;
  return 0;
}

static void push(struct client *c, int64_t seq, uint32_t cmd, int answer) {
  /* the caller reserved: there is room */
  struct pending_req *r = &c->pend[(c->pend_head + c->pend_n) % c->pend_cap];
  r->seq = seq;
  r->cmd = cmd;
  r->answer = answer;
  c->pend_n++;
}

static struct pending_req pop(struct client *c) {
  struct pending_req r = c->pend[c->pend_head];
  c->pend_head = (uint16_t)((c->pend_head + 1) % c->pend_cap);
  c->pend_n--;
  if (c->pend_n == 0) {
    c->pend_head = 0;
    if (c->pend_cap > RING_KEEP)
      gw_pending_free(c);
  }
  return r;
}

void gw_pending_free(struct client *c) {
  free(c->pend);
  c->pend = NULL;
  c->pend_cap = c->pend_head = c->pend_n = 0;
}

static void send_answer(struct gw *gw, struct client *c, int64_t seq,
                        uint32_t cmd, int answer) {
  if (answer == GW_ANSWER_HEARTBEAT) {
    struct mim_packet p;
    mim_packet_init(&p);
    p.cmd = MIM_CMD_HEARTBEAT_RSP;
    (void)gw_send_packet(gw, c, &p, false);
  } else {
    (void)gw_send_error(gw, c, answer, seq, cmd, NULL);
  }
}

/* Sends the local answers that have reached the head. */
static void flush_local(struct gw *gw, struct client *c) {
  while (c->pend_n > 0 && c->pend[c->pend_head].answer != 0) {
    struct pending_req r = pop(c);
    send_answer(gw, c, r.seq, r.cmd, r.answer);
  }
}

int64_t gw_request_seq(const struct mim_header *h, const uint8_t *body) {
  if (h->body_len == 0)
    return 0;
  struct mim_packet p;
  mim_packet_init(&p);
  int64_t seq = 0;
  if (mim_packet_decode(&p, h->cmd, body, h->body_len) == 0)
    seq = p.seq;
  mim_packet_finish(&p);
  return seq;
}

void gw_pending_forwarded(struct client *c, const struct mim_header *h,
                          const uint8_t *body) {
  if (!is_ack(h->cmd))
    push(c, gw_request_seq(h, body), h->cmd, 0);
}

void gw_pending_answer(struct gw *gw, struct client *c, int64_t seq,
                       uint32_t cmd, int answer) {
  if (c->pend_n == 0)
    send_answer(gw, c, seq, cmd, answer);
  else
    push(c, seq, cmd, answer);
}

/* Which commands are replies, from the codec's one request/reply table
 * (a reply that this list missed would never pop the FIFO, and a local
 * answer queued behind it would wait for ever): built once. */
static bool reply_cmds[MIM_CMD__COUNT];
static bool reply_cmds_ready;

static bool is_reply_cmd(uint32_t cmd) {
  if (!reply_cmds_ready) {
    for (uint32_t c = 0; c < MIM_CMD__COUNT; c++)
      reply_cmds[c] = mim_cmd_is_reply(c);
    reply_cmds_ready = true;
  }
  return cmd < MIM_CMD__COUNT && reply_cmds[cmd];
}

bool gw_pending_is_reply(uint32_t cmd, const uint8_t *body, size_t len) {
  if (is_reply_cmd(cmd))
    return cmd != MIM_CMD_SERVER_PUSH_ACK; /* a client's, never logicd's */
  switch (cmd) {
  case MIM_CMD_ERROR: {
    /* an ack that fails (malformed, not authenticated) is answered with an
     * Error naming it; acks are not in the FIFO */
    struct mim_packet e;
    mim_packet_init(&e);
    bool ack =
        mim_packet_decode(&e, cmd, body, len) == 0 && is_ack(e.failed_cmd);
    mim_packet_finish(&e);
    return !ack;
  }
  default:
    return false; /* pushes 8, 12, 28 */
  }
}

void gw_pending_replied(struct gw *gw, struct client *c) {
  /* empty: a reply to a request this gateway did not record (it could not
   * have been sent on this link), nothing to match */
  if (c->pend_n == 0)
    return;
  (void)pop(c);
  flush_local(gw, c);
}

bool gw_pending_head(const struct client *c, int64_t *seq, uint32_t *cmd) {
  /* local answers never stay at the head (flush_local sends them): the
   * head, if any, was forwarded */
  if (c->pend_n == 0)
    return false;
  *seq = c->pend[c->pend_head].seq;
  *cmd = c->pend[c->pend_head].cmd;
  return true;
}

static void answer_all(struct gw *gw, struct client *c) {
  unsigned n = 0;
  while (c->pend_n > 0) {
    struct pending_req r = pop(c);
    int answer = r.answer;
    if (answer == 0) {
      /* the gateway answers heartbeats itself while logicd is away */
      answer = r.cmd == MIM_CMD_HEARTBEAT_REQ ? GW_ANSWER_HEARTBEAT
                                              : -MIM_ERR_UNAVAILABLE;
      n++;
    }
    send_answer(gw, c, r.seq, r.cmd, answer);
  }
  if (n > 0)
    mimd_debug("conn %llu: answered %u request(s) the lost link left "
               "unanswered",
               (unsigned long long)c->id, n);
}

void gw_pending_link_down(struct gw *gw, struct client *c) {
  if (c->pend_n == 0)
    return;
  if (c->closing)
    gw_pending_free(c);
  else
    answer_all(gw, c);
}
