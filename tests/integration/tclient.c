/* Integration-test mim client (tclient.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *S(const char *s) { return s != NULL ? s : ""; }

int64_t tc_now_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *tc_describe(const struct mim_packet *p, char *buf, size_t cap) {
  switch (p->cmd) {
  case MIM_CMD_ERROR:
    snprintf(buf, cap,
             "cmd=17 ERROR code=%d seq=%lld failed_cmd=%u retryable=%d "
             "msg='%s'",
             p->status, (long long)p->seq, p->failed_cmd, p->retryable,
             S(p->text));
    break;
  case MIM_CMD_KICK:
    snprintf(buf, cap, "cmd=16 KICK reason=%d uid='%s' msg='%s'", p->reason,
             S(p->uid), S(p->text));
    break;
  case MIM_CMD_AUTH_RSP:
    snprintf(buf, cap,
             "cmd=3 AUTH_RSP status=%d seq=%lld last_inbox_seq=%llu "
             "ack_seq=%llu msg='%s'",
             p->status, (long long)p->seq,
             (unsigned long long)p->last_inbox_seq,
             (unsigned long long)p->ack_seq, S(p->text));
    break;
  default:
    snprintf(buf, cap,
             "cmd=%u %s seq=%lld msg_id=%llu inbox_seq=%llu from='%s' "
             "to='%s' group='%s' content='%.60s' n_items=%zu",
             p->cmd, mim_cmd_name(p->cmd), (long long)p->seq,
             (unsigned long long)p->msg_id, (unsigned long long)p->inbox_seq,
             S(p->from), S(p->to), S(p->group), S(p->content), p->n_items);
    break;
  }
  return buf;
}

/* ---- items ---- */

static char *dup_s(const char *s) {
  char *d = strdup(S(s));

  assert_non_null(d);
  return d;
}

static void items_add(struct tc_items *it, const struct mim_pull_item *src) {
  struct tc_item *d;

  if (it->n == it->cap) {
    size_t cap = it->cap ? it->cap * 2 : 64;
    struct tc_item *v = realloc(it->v, cap * sizeof(*v));

    assert_non_null(v);
    it->v = v;
    it->cap = cap;
  }
  d = &it->v[it->n++];
  d->from = dup_s(src->from);
  d->to = dup_s(src->to);
  d->group = dup_s(src->group);
  d->content = dup_s(src->content);
  d->client_msg_id = dup_s(src->client_msg_id);
  d->msg_id = src->msg_id;
  d->inbox_seq = src->inbox_seq;
  d->conv_seq = src->conv_seq;
  d->type = src->type;
}

void tc_items_free(struct tc_items *it) {
  for (size_t i = 0; i < it->n; i++) {
    free(it->v[i].from);
    free(it->v[i].to);
    free(it->v[i].group);
    free(it->v[i].content);
    free(it->v[i].client_msg_id);
  }
  free(it->v);
  memset(it, 0, sizeof(*it));
}

/* ---- connection and auth ---- */

/* Every open test client, so that a test that fails half-way does not leave
 * its connections to the next test (tc_free_all in teardown). */
static struct tc *all_clients;

static void track(struct tc *c) {
  c->next_ = all_clients;
  all_clients = c;
}

static void untrack(struct tc *c) {
  for (struct tc **p = &all_clients; *p != NULL; p = &(*p)->next_) {
    if (*p == c) {
      *p = c->next_;
      return;
    }
  }
}

struct tc *tc_open(struct harness *h) {
  struct tc *c = calloc(1, sizeof(*c));
  int r;

  assert_non_null(c);
  c->h = h;
  r = wsc_connect(h->ws, h->gw_port, "/ws", &c->ws);
  if (r != 0) {
    free(c);
    fail_msg("websocket connect to the gateway failed: %s (%d)",
             wsc_last_error(), r);
  }
  track(c);
  return c;
}

const char *tc_token(const struct harness *h, const char *uid,
                     const char *device, char buf[MIM_TOKEN_MAX]) {
  int r;

  if (h->opts.dev_auth || h->opts.token_secret == NULL) {
    snprintf(buf, MIM_TOKEN_MAX, "token");
    return buf;
  }
  r = mim_token_sign((const uint8_t *)h->opts.token_secret,
                     strlen(h->opts.token_secret), uid,
                     device != NULL ? device : MIM_DEFAULT_DEVICE,
                     (int64_t)time(NULL) + 3600, buf, MIM_TOKEN_MAX);
  assert_int_equal(r, 0);
  return buf;
}

static bool match_seq_reply(const struct mim_packet *p, void *user) {
  const int64_t *seq = user;

  return p->seq == *seq && p->cmd != MIM_CMD_C2C_PUSH &&
         p->cmd != MIM_CMD_C2G_PUSH && p->cmd != MIM_CMD_SERVER_PUSH &&
         p->cmd != MIM_CMD_KICK;
}

static void wait_reply(struct tc *c, int64_t seq, struct mim_packet *rsp,
                       uint32_t req_cmd) {
  int r = wsc_recv_match(c->ws, TC_REPLY_MS, match_seq_reply, &seq, rsp);

  if (r != 0)
    fail_msg("%s/%s: no reply to cmd %u (%s) seq %lld within %d ms: %s "
             "(%d: %s)",
             c->uid[0] ? c->uid : "(unauthenticated)", c->device, req_cmd,
             mim_cmd_name(req_cmd), (long long)seq, TC_REPLY_MS,
             r == -ENOTCONN ? "connection closed"
             : r == -ETIMEDOUT ? "timeout"
                               : "protocol error",
             r, r == -ETIMEDOUT || r == -ENOTCONN ? "" : wsc_last_error());
}

void tc_call(struct tc *c, struct mim_packet *req, struct mim_packet *rsp) {
  int r;

  req->seq = ++c->seq;
  if (req->ts == 0)
    req->ts = tc_now_ms();
  r = wsc_send_packet(c->ws, req);
  if (r != 0)
    fail_msg("%s: sending cmd %u failed (%d)", c->uid, req->cmd, r);
  wait_reply(c, req->seq, rsp, req->cmd);
}

void tc_group_call(struct tc *c, uint32_t cmd, const char *group,
                   const char *const *members, size_t n,
                   struct mim_packet *rsp) {
  struct mim_packet req;

  mim_packet_init(&req);
  req.cmd = cmd;
  req.group = group;
  req.members = members;
  req.n_members = n;
  tc_call(c, &req, rsp);
}

int32_t tc_auth(struct tc *c, const char *uid, const char *device,
                const char *token, uint32_t caps) {
  struct mim_packet req, rsp;
  char d[256];
  int32_t status;

  mim_packet_init(&req);
  req.cmd = MIM_CMD_AUTH_REQ;
  req.token = token;
  req.uid = uid;
  req.device = device;
  req.caps = caps;
  tc_call(c, &req, &rsp);
  if (rsp.cmd != MIM_CMD_AUTH_RSP)
    fail_msg("%s: AuthRequest answered by %s, want AUTH_RSP (cmd 3)", uid,
             tc_describe(&rsp, d, sizeof(d)));
  status = rsp.status;
  if (status == 0) {
    snprintf(c->uid, sizeof(c->uid), "%s", uid);
    snprintf(c->device, sizeof(c->device), "%s",
             device != NULL && *device ? device : MIM_DEFAULT_DEVICE);
    c->last_inbox_seq = rsp.last_inbox_seq;
    c->ack_seq = rsp.ack_seq;
    c->caps = rsp.caps;
  }
  mim_packet_finish(&rsp);
  return status;
}

struct tc *tc_login_caps(struct harness *h, const char *uid,
                         const char *device, uint32_t caps) {
  char token[MIM_TOKEN_MAX];
  struct tc *c = tc_open(h);
  int32_t st = tc_auth(c, uid, device, tc_token(h, uid, device, token), caps);

  if (st != 0)
    fail_msg("login of %s/%s failed: AuthResponse.status %d", uid,
             device ? device : "(none)", st);
  return c;
}

struct tc *tc_login(struct harness *h, const char *uid, const char *device) {
  return tc_login_caps(h, uid, device, 0);
}

void tc_free(struct tc *c) {
  if (c == NULL)
    return;
  untrack(c);
  wsc_close(c->ws);
  free(c);
}

void tc_free_all(void) {
  while (all_clients != NULL)
    tc_free(all_clients);
}

/* ---- replies ---- */

void tc_expect_cmd(const struct mim_packet *rsp, uint32_t cmd) {
  char d[512];

  if (rsp->cmd != cmd)
    fail_msg("want cmd %u (%s), got %s", cmd, mim_cmd_name(cmd),
             tc_describe(rsp, d, sizeof(d)));
}

void tc_expect_error(const struct mim_packet *rsp, int32_t code,
                     uint32_t failed_cmd) {
  char d[512];

  if (rsp->cmd != MIM_CMD_ERROR || rsp->status != code ||
      (failed_cmd != 0 && rsp->failed_cmd != failed_cmd))
    fail_msg("want Error code %d for cmd %u, got %s", code, failed_cmd,
             tc_describe(rsp, d, sizeof(d)));
}

static void send_req(struct tc *c, uint32_t cmd, const char *to,
                     const char *group, const char *content, const char *cmid,
                     struct mim_packet *rsp) {
  struct mim_packet req;

  mim_packet_init(&req);
  req.cmd = cmd;
  req.to = to;
  req.group = group;
  req.content = content;
  req.client_msg_id = cmid;
  tc_call(c, &req, rsp);
}

static uint64_t check_send_reply(struct tc *c, struct mim_packet *rsp,
                                 uint32_t want, struct mim_packet *out) {
  uint64_t id;

  tc_expect_cmd(rsp, want);
  assert_int_equal(rsp->seq, c->seq);
  assert_true(rsp->msg_id > 0);
  assert_true(rsp->msg_id <= MIM_MSG_ID_MAX);
  assert_true(rsp->inbox_seq > 0);
  id = rsp->msg_id;
  if (out != NULL)
    *out = *rsp;
  else
    mim_packet_finish(rsp);
  return id;
}

uint64_t tc_c2c(struct tc *c, const char *to, const char *content,
                const char *cmid, struct mim_packet *out) {
  struct mim_packet rsp;

  send_req(c, MIM_CMD_C2C_SEND_REQ, to, NULL, content, cmid, &rsp);
  return check_send_reply(c, &rsp, MIM_CMD_C2C_SEND_RSP, out);
}

void tc_c2c_try(struct tc *c, const char *to, const char *content,
                const char *cmid, struct mim_packet *rsp) {
  send_req(c, MIM_CMD_C2C_SEND_REQ, to, NULL, content, cmid, rsp);
}

uint64_t tc_c2g(struct tc *c, const char *group, const char *content,
                const char *cmid, struct mim_packet *out) {
  struct mim_packet rsp;

  send_req(c, MIM_CMD_C2G_SEND_REQ, NULL, group, content, cmid, &rsp);
  return check_send_reply(c, &rsp, MIM_CMD_C2G_SEND_RSP, out);
}

void tc_pull(struct tc *c, bool has_after, uint64_t after_seq, int32_t limit,
             struct mim_packet *rsp) {
  struct mim_packet req;

  mim_packet_init(&req);
  req.cmd = MIM_CMD_PULL_REQ;
  req.has_after_seq = has_after;
  req.after_seq = after_seq;
  req.limit = limit;
  tc_call(c, &req, rsp);
  tc_expect_cmd(rsp, MIM_CMD_PULL_RSP);
}

void tc_pull_all(struct tc *c, uint64_t after_seq, struct tc_items *out) {
  uint64_t after = after_seq;

  for (int page = 0; page < 10000; page++) {
    struct mim_packet rsp;
    bool more;

    tc_pull(c, true, after, 500, &rsp);
    for (size_t i = 0; i < rsp.n_items; i++) {
      if (rsp.items[i].inbox_seq != after + 1)
        fail_msg("%s: pull after %llu: item %zu has inbox_seq %llu, want "
                 "%llu (ascending, no gaps)",
                 c->uid, (unsigned long long)after_seq, out->n,
                 (unsigned long long)rsp.items[i].inbox_seq,
                 (unsigned long long)after + 1);
      after = rsp.items[i].inbox_seq;
      items_add(out, &rsp.items[i]);
    }
    more = rsp.has_more;
    if (more && rsp.n_items == 0)
      fail_msg("%s: pull reply with has_more and no items", c->uid);
    mim_packet_finish(&rsp);
    if (!more)
      return;
  }
  fail_msg("%s: pull_all did not end", c->uid);
}

/* ---- pushes and acks ---- */

static bool match_push(const struct mim_packet *p, void *user) {
  return p->cmd == *(const uint32_t *)user;
}

void tc_push(struct tc *c, uint32_t cmd, struct mim_packet *out) {
  int r = wsc_recv_match(c->ws, TC_PUSH_MS, match_push, &cmd, out);

  if (r != 0)
    fail_msg("%s/%s: no push cmd %u within %d ms (%d%s%s)", c->uid,
             c->device, cmd, TC_PUSH_MS, r, r == -ETIMEDOUT ? "" : ": ",
             r == -ETIMEDOUT ? "" : wsc_last_error());
  assert_int_equal(out->seq, 0);
}

struct msg_match {
  uint32_t cmd;
  uint64_t msg_id;
};

static bool match_msg(const struct mim_packet *p, void *user) {
  const struct msg_match *m = user;

  return p->cmd == m->cmd && p->msg_id == m->msg_id;
}

void tc_push_msg(struct tc *c, uint32_t cmd, uint64_t msg_id,
                 struct mim_packet *out) {
  struct msg_match m = {cmd, msg_id};
  int r = wsc_recv_match(c->ws, TC_PUSH_MS, match_msg, &m, out);

  if (r != 0)
    fail_msg("%s/%s: no push cmd %u of msg_id %llu within %d ms (%d%s%s)",
             c->uid, c->device, cmd, (unsigned long long)msg_id, TC_PUSH_MS,
             r, r == -ETIMEDOUT ? "" : ": ",
             r == -ETIMEDOUT ? "" : wsc_last_error());
  assert_int_equal(out->seq, 0);
}

void tc_ack(struct tc *c, uint32_t cmd, uint64_t msg_id, uint64_t inbox_seq) {
  struct mim_packet req;
  int r;

  mim_packet_init(&req);
  req.cmd = cmd;
  req.msg_id = msg_id;
  req.inbox_seq = inbox_seq;
  req.ts = tc_now_ms();
  r = wsc_send_packet(c->ws, &req);
  if (r != 0)
    fail_msg("%s: sending ack failed (%d)", c->uid, r);
}

void tc_barrier(struct tc *c) {
  struct mim_packet req, rsp;
  int r;

  mim_packet_init(&req);
  req.cmd = MIM_CMD_HEARTBEAT_REQ;
  r = wsc_send_packet(c->ws, &req);
  if (r != 0)
    fail_msg("%s: sending a heartbeat failed (%d)", c->uid, r);
  r = wsc_recv_cmd(c->ws, MIM_CMD_HEARTBEAT_RSP, TC_REPLY_MS, &rsp);
  if (r != 0)
    fail_msg("%s/%s: no heartbeat reply within %d ms (%d)", c->uid,
             c->device, TC_REPLY_MS, r);
  mim_packet_finish(&rsp);
}

void tc_assert_no_cmd(struct tc *c, uint32_t cmd) {
  struct mim_packet p;
  char d[512];
  int r = wsc_recv_cmd(c->ws, cmd, 0, &p);

  if (r == 0)
    fail_msg("%s/%s: unexpected %s", c->uid, c->device,
             tc_describe(&p, d, sizeof(d)));
  if (r != -ETIMEDOUT && r != -ENOTCONN)
    fail_msg("%s/%s: protocol error from the server: %s", c->uid, c->device,
             wsc_last_error());
}

void tc_assert_no_msg(struct tc *c, uint32_t cmd, uint64_t msg_id) {
  struct msg_match m = {cmd, msg_id};
  struct mim_packet p;
  char d[512];
  int r = wsc_recv_match(c->ws, 0, match_msg, &m, &p);

  if (r == 0)
    fail_msg("%s/%s: unexpected %s", c->uid, c->device,
             tc_describe(&p, d, sizeof(d)));
  if (r != -ETIMEDOUT && r != -ENOTCONN)
    fail_msg("%s/%s: protocol error from the server: %s", c->uid, c->device,
             wsc_last_error());
}

size_t tc_frame(uint8_t *out, uint32_t cmd, const void *body, size_t len) {
  struct mim_header hd = {MIM_PROTOCOL_VERSION, cmd, (uint32_t)len};

  mim_header_encode(out, &hd);
  if (len > 0)
    memcpy(out + MIM_HEADER_SIZE, body, len);
  return MIM_HEADER_SIZE + len;
}
