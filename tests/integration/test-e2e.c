/* End-to-end tests: the real logicd + gatewayd on loopback ports, driven by
 * a real websocket client (docs/architecture.md §3-5, docs/protocol.md, docs/rpc.md).
 *
 *   test-e2e [NAME]   runs every test, or only the test called NAME
 *
 * Tests that only need a running pair share one (started once, restarted
 * if a test left a daemon dead); crash and restart tests get their own.
 * Exit status 77 (skipped) when the daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mim/auth.h>
#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

/* ---- fixtures ---- */

static struct wsc_ctx *WS;        /* the process's websocket client context */
static struct harness *SHARED;    /* the shared daemon pair */

/* A secret for production-auth tests (>= MIM_SECRET_MIN bytes). */
#define PROD_SECRET "integration-token-secret-0123456789abcdef"

struct fixture {
  struct harness *h;
  bool own;      /* h belongs to this test */
  bool passed;   /* the test reached its end */
  const char *name;
  unsigned timeout_s;
};

/* Tests end with PASSED(f): teardown prints the daemons' logs for tests
 * that did not get there. */
#define PASSED(f) ((f)->passed = true)

static int start_harness(struct harness **out, const struct h_opts *o) {
  int r = h_create(out, WS, o);

  if (r != 0)
    return r;
  r = h_start(*out);
  if (r != 0) {
    h_destroy(*out);
    *out = NULL;
  }
  return r;
}

static int group_setup_shared(void **state) {
  struct h_opts o;

  (void)state;
  h_opts_init(&o);
  h_watchdog(60, "shared daemon start");
  if (start_harness(&SHARED, &o) != 0) {
    fprintf(stderr, "could not start the shared daemons\n");
    return -1;
  }
  h_watchdog(0, NULL);
  return 0;
}

static int group_teardown_shared(void **state) {
  int r = 0;

  (void)state;
  if (SHARED != NULL) {
    /* A clean stop is part of what the daemons promise. */
    if (SHARED->gw_pid > 0 && h_stop_gatewayd(SHARED, SIGTERM) != 0)
      r = -1;
    if (SHARED->logic_pid > 0 && h_stop_logicd(SHARED, SIGTERM) != 0)
      r = -1;
  }
  h_destroy(SHARED);
  SHARED = NULL;
  return r;
}

static int fixture_begin(void **state, struct harness *h, bool own,
                         const char *name, unsigned timeout_s) {
  struct fixture *f = calloc(1, sizeof(*f));

  if (f == NULL)
    return -1;
  f->h = h;
  f->own = own;
  f->name = name;
  f->timeout_s = timeout_s;
  *state = f;
  h_watchdog(timeout_s, name);
  return 0;
}

/* Per-test setup on the shared pair. If an earlier test left a daemon dead,
 * start a fresh pair so that this test is judged on its own. */
static int setup_shared_named(void **state, const char *name, unsigned t) {
  if (SHARED == NULL || !h_logicd_alive(SHARED) || !h_gatewayd_alive(SHARED)) {
    struct h_opts o;

    fprintf(stderr, "[%s] shared daemons are down; starting a fresh pair\n",
            name);
    h_destroy(SHARED);
    SHARED = NULL;
    h_opts_init(&o);
    if (start_harness(&SHARED, &o) != 0)
      return -1;
  }
  return fixture_begin(state, SHARED, false, name, t);
}

static int setup_fresh(void **state, const struct h_opts *o, const char *name,
                       unsigned t) {
  struct harness *h = NULL;

  h_watchdog(60, name);
  if (start_harness(&h, o) != 0)
    return -1;
  return fixture_begin(state, h, true, name, t);
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = 0;

  h_watchdog(60, f != NULL ? f->name : "teardown");
  tc_free_all(); /* what a failed test left open */
  if (f == NULL) {
    h_watchdog(0, NULL);
    return 0;
  }
  if (f->h != NULL) {
    bool logic_ok = f->h->logic_pid == 0 || h_logicd_alive(f->h);
    bool gw_ok = f->h->gw_pid == 0 || h_gatewayd_alive(f->h);

    if (!logic_ok || !gw_ok) {
      fprintf(stderr, "[%s] a daemon died during the test\n", f->name);
      r = -1;
    }
    if (!f->passed || r != 0) {
      fprintf(stderr, "[%s] failed; daemon logs follow\n", f->name);
      h_dump_logs(f->h);
    }
    if (f->own) {
      /* Fresh pairs must stop cleanly too. */
      if (f->passed && f->h->gw_pid > 0 &&
          h_stop_gatewayd(f->h, SIGTERM) != 0)
        r = -1;
      if (f->passed && f->h->logic_pid > 0 &&
          h_stop_logicd(f->h, SIGTERM) != 0)
        r = -1;
      h_destroy(f->h);
    }
  }
  free(f);
  *state = NULL;
  h_watchdog(0, NULL);
  return r;
}

#define SHARED_SETUP(fn, secs)                                                 \
  static int setup_##fn(void **state) {                                        \
    return setup_shared_named(state, #fn, secs);                               \
  }
#define FRESH_DEV_SETUP(fn, secs)                                              \
  static int setup_##fn(void **state) {                                        \
    struct h_opts o;                                                           \
    h_opts_init(&o);                                                           \
    return setup_fresh(state, &o, #fn, secs);                                  \
  }

/* ---- small helpers ---- */

static void expect_error_or_close(struct harness *h, const char *uid,
                                  const uint8_t *bytes, size_t len,
                                  const char *what);

/* The first packet that is not a push: the next reply, by order. */
static bool match_not_push(const struct mim_packet *p, void *user) {
  (void)user;
  return p->cmd != MIM_CMD_C2C_PUSH && p->cmd != MIM_CMD_C2G_PUSH &&
         p->cmd != MIM_CMD_SERVER_PUSH && p->cmd != MIM_CMD_KICK;
}

static const char *S(const char *s) { return s != NULL ? s : ""; }

static void assert_str(const char *got, const char *want) {
  assert_string_equal(S(got), S(want));
}

/* AuthResponse.ack_seq of a fresh login, with the reason in the message. */
#define expect_ack_seq(c, want, why)                                           \
  do {                                                                         \
    if ((c)->ack_seq != (uint64_t)(want))                                      \
      fail_msg("%s/%s logged in again: AuthResponse.ack_seq %llu, want %llu " \
               "(%s)",                                                         \
               (c)->uid, (c)->device, (unsigned long long)(c)->ack_seq,        \
               (unsigned long long)(want), why);                               \
  } while (0)

/* Two witnesses exchange a message: the gateway and logicd still serve
 * other clients after whatever the test just did. */
static void witness_check(struct tc *w1, struct tc *w2, const char *tag) {
  struct mim_packet push;
  uint64_t id = tc_c2c(w1, w2->uid, tag, NULL, NULL);

  tc_push_msg(w2, MIM_CMD_C2C_PUSH, id, &push);
  assert_str(push.content, tag);
  assert_str(push.from, w1->uid);
  mim_packet_finish(&push);
}

static void check_c2c_push(const struct mim_packet *p, const char *from,
                           const char *to, const char *content,
                           uint64_t msg_id, uint64_t inbox_seq) {
  char d[512];

  if (p->cmd != MIM_CMD_C2C_PUSH || strcmp(S(p->from), from) != 0 ||
      strcmp(S(p->to), to) != 0 || strcmp(S(p->content), content) != 0 ||
      p->msg_id != msg_id || (inbox_seq != 0 && p->inbox_seq != inbox_seq))
    fail_msg("want C2C_PUSH from=%s to=%s content='%s' msg_id=%llu "
             "inbox_seq=%llu, got %s",
             from, to, content, (unsigned long long)msg_id,
             (unsigned long long)inbox_seq, tc_describe(p, d, sizeof(d)));
  assert_int_equal(p->seq, 0);
}

/* Client-side token bucket that stays under the documented per-connection
 * send limit (200/s, bursts of 400), so that RATE_LIMITED is a finding. */
struct pacer {
  double tokens, rate, burst;
  int64_t last;
};

static void pacer_init(struct pacer *p, double rate, double burst) {
  p->tokens = burst;
  p->rate = rate;
  p->burst = burst;
  p->last = h_mono_ms();
}

static bool pacer_take(struct pacer *p) {
  int64_t now = h_mono_ms();

  p->tokens += (double)(now - p->last) * p->rate / 1000.0;
  if (p->tokens > p->burst)
    p->tokens = p->burst;
  p->last = now;
  if (p->tokens < 1.0)
    return false;
  p->tokens -= 1.0;
  return true;
}

/* ====================================================================== */
/* c2c                                                                    */
/* ====================================================================== */

SHARED_SETUP(c2c_online, 60)
static void c2c_online(void **state) {
  struct fixture *f = *state;
  struct tc *alice = tc_login(f->h, "c2con-alice", NULL);
  struct tc *bob = tc_login(f->h, "c2con-bob", NULL);
  struct mim_packet rsp, push;
  uint64_t id, id2;

  assert_int_equal(bob->last_inbox_seq, 0);
  assert_int_equal(bob->ack_seq, 0);

  id = tc_c2c(alice, "c2con-bob", "hello bob", "c2con-1", &rsp);
  assert_int_equal(rsp.inbox_seq, 1); /* the sender's own inbox */
  assert_true(rsp.ts > 0);
  mim_packet_finish(&rsp);

  tc_push(bob, MIM_CMD_C2C_PUSH, &push);
  check_c2c_push(&push, "c2con-alice", "c2con-bob", "hello bob", id, 1);
  assert_str(push.client_msg_id, "c2con-1");
  mim_packet_finish(&push);
  tc_ack(bob, MIM_CMD_C2C_PUSH_ACK, id, 1);

  /* Bob answers: his send reply and Alice's push name the same message. */
  id2 = tc_c2c(bob, "c2con-alice", "hi alice", "c2con-2", &rsp);
  assert_true(id2 > id);
  assert_int_equal(rsp.inbox_seq, 2); /* bob: received 1, sent 2 */
  mim_packet_finish(&rsp);
  tc_push(alice, MIM_CMD_C2C_PUSH, &push);
  check_c2c_push(&push, "c2con-bob", "c2con-alice", "hi alice", id2, 2);
  mim_packet_finish(&push);

  /* The sending connection gets no push of its own message. */
  tc_barrier(alice);
  tc_barrier(bob);
  tc_assert_no_cmd(alice, MIM_CMD_C2C_PUSH);
  tc_assert_no_cmd(bob, MIM_CMD_C2C_PUSH);

  tc_free(alice);
  tc_free(bob);
  PASSED(f);
}

SHARED_SETUP(c2c_offline, 60)
static void c2c_offline(void **state) {
  struct fixture *f = *state;
  struct tc *alice = tc_login(f->h, "c2coff-alice", NULL);
  struct tc *carol;
  struct mim_packet rsp;
  uint64_t ids[5];
  char content[64], cmid[64];

  for (int i = 0; i < 5; i++) {
    snprintf(content, sizeof(content), "offline %d", i);
    snprintf(cmid, sizeof(cmid), "c2coff-%d", i);
    ids[i] = tc_c2c(alice, "c2coff-carol", content, cmid, NULL);
    if (i > 0)
      assert_true(ids[i] > ids[i - 1]);
  }

  carol = tc_login(f->h, "c2coff-carol", NULL);
  assert_int_equal(carol->last_inbox_seq, 5);
  assert_int_equal(carol->ack_seq, 0);

  tc_pull(carol, true, 0, 100, &rsp);
  assert_int_equal(rsp.n_items, 5);
  assert_false(rsp.has_more);
  assert_int_equal(rsp.last_inbox_seq, 5);
  for (size_t i = 0; i < rsp.n_items; i++) {
    const struct mim_pull_item *it = &rsp.items[i];

    snprintf(content, sizeof(content), "offline %zu", i);
    snprintf(cmid, sizeof(cmid), "c2coff-%zu", i);
    assert_int_equal(it->inbox_seq, i + 1);
    assert_int_equal(it->msg_id, ids[i]);
    assert_str(it->content, content);
    assert_str(it->from, "c2coff-alice");
    assert_str(it->to, "c2coff-carol");
    assert_str(it->group, "");
    assert_str(it->client_msg_id, cmid);
    assert_true(it->send_time > 0);
  }
  mim_packet_finish(&rsp);

  /* Once: nothing after the last, no pushes of what was pulled. */
  tc_pull(carol, true, 5, 100, &rsp);
  assert_int_equal(rsp.n_items, 0);
  assert_false(rsp.has_more);
  mim_packet_finish(&rsp);
  tc_barrier(carol);
  tc_assert_no_cmd(carol, MIM_CMD_C2C_PUSH);

  /* The pull with after_seq 5 acknowledged up to 5. */
  tc_free(carol);
  carol = tc_login(f->h, "c2coff-carol", NULL);
  expect_ack_seq(carol, 5, "the last pull had after_seq 5");
  assert_int_equal(carol->last_inbox_seq, 5);
  tc_pull(carol, true, carol->ack_seq, 100, &rsp);
  assert_int_equal(rsp.n_items, 0);
  mim_packet_finish(&rsp);

  tc_free(alice);
  tc_free(carol);
  PASSED(f);
}

/* 1,000 messages, at most 64 unacknowledged sends: every one reaches the
 * receiver once, in send order, and the replies come in request order. */
SHARED_SETUP(c2c_order_1000, 150)
static void c2c_order_1000(void **state) {
  enum { N = 1000, WINDOW = 64 };
  struct fixture *f = *state;
  struct tc *s = tc_login(f->h, "ord-sender", NULL);
  struct tc *r = tc_login(f->h, "ord-receiver", NULL);
  static uint64_t reply_ids[N], push_ids[N];
  int64_t first_seq = s->seq + 1;
  int sent = 0, replied = 0, received = 0;
  int64_t deadline = h_mono_ms() + 120000;
  struct pacer pace;
  struct tc_items all = {0};
  char content[64], cmid[64], d[512];

  pacer_init(&pace, 150, 300);
  while (replied < N || received < N) {
    struct mim_packet p;
    int rc;

    if (h_mono_ms() > deadline)
      fail_msg("1000 messages: only %d replies and %d pushes after 120 s",
               replied, received);
    while (sent < N && sent - replied < WINDOW && pacer_take(&pace)) {
      struct mim_packet req;

      mim_packet_init(&req);
      snprintf(content, sizeof(content), "msg %d", sent);
      snprintf(cmid, sizeof(cmid), "ord-%d", sent);
      req.cmd = MIM_CMD_C2C_SEND_REQ;
      req.seq = ++s->seq;
      req.to = "ord-receiver";
      req.content = content;
      req.client_msg_id = cmid;
      assert_int_equal(wsc_queue_packet(s->ws, &req), 0);
      sent++;
    }
    wsc_ctx_service(WS, 5);
    while ((rc = wsc_recv(s->ws, 0, &p)) == 0) {
      if (p.cmd != MIM_CMD_C2C_SEND_RSP || p.seq != first_seq + replied)
        fail_msg("reply %d: want C2C_SEND_RSP seq %lld, got %s", replied,
                 (long long)(first_seq + replied),
                 tc_describe(&p, d, sizeof(d)));
      reply_ids[replied++] = p.msg_id;
      mim_packet_finish(&p);
    }
    if (rc != -ETIMEDOUT)
      fail_msg("sender: %d (%s)", rc, wsc_last_error());
    while ((rc = wsc_recv(r->ws, 0, &p)) == 0) {
      if (p.cmd != MIM_CMD_C2C_PUSH)
        fail_msg("receiver: unexpected %s", tc_describe(&p, d, sizeof(d)));
      if (received >= N)
        fail_msg("receiver: push beyond the %d sent: %s", N,
                 tc_describe(&p, d, sizeof(d)));
      snprintf(content, sizeof(content), "msg %d", received);
      if (strcmp(S(p.content), content) != 0 ||
          p.inbox_seq != (uint64_t)received + 1)
        fail_msg("receiver: push %d should be '%s' at inbox_seq %d, got %s",
                 received, content, received + 1,
                 tc_describe(&p, d, sizeof(d)));
      assert_str(p.from, "ord-sender");
      push_ids[received++] = p.msg_id;
      if (received % 64 == 0)
        tc_ack(r, MIM_CMD_C2C_PUSH_ACK, 0, (uint64_t)received);
      mim_packet_finish(&p);
    }
    if (rc != -ETIMEDOUT)
      fail_msg("receiver: %d (%s)", rc, wsc_last_error());
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(push_ids[i], reply_ids[i]);
    if (i > 0)
      assert_true(reply_ids[i] > reply_ids[i - 1]);
  }
  /* Nothing twice. */
  tc_barrier(r);
  tc_assert_no_cmd(r, MIM_CMD_C2C_PUSH);

  /* The inbox holds the same 1000, in order. */
  tc_pull_all(r, 0, &all);
  assert_int_equal(all.n, N);
  for (int i = 0; i < N; i++) {
    snprintf(content, sizeof(content), "msg %d", i);
    assert_str(all.v[i].content, content);
    assert_int_equal(all.v[i].msg_id, reply_ids[i]);
  }
  tc_items_free(&all);
  tc_free(s);
  tc_free(r);
  PASSED(f);
}

/* ====================================================================== */
/* groups, devices, logins                                                */
/* ====================================================================== */

static bool has_member(const struct mim_packet *p, const char *uid) {
  for (size_t i = 0; i < p->n_members; i++)
    if (strcmp(S(p->members[i]), uid) == 0)
      return true;
  return false;
}

SHARED_SETUP(c2g_group, 60)
static void c2g_group(void **state) {
  struct fixture *f = *state;
  struct tc *u1a = tc_login(f->h, "c2g-u1", "d1");
  struct tc *u1b = tc_login(f->h, "c2g-u1", "d2");
  struct tc *u2 = tc_login(f->h, "c2g-u2", NULL);
  struct tc *out = tc_login(f->h, "c2g-outsider", NULL);
  struct tc *u3;
  const char *members[] = {"c2g-u2", "c2g-u3"};
  struct mim_packet req, rsp, push;
  struct tc_items items = {0};
  uint64_t id;
  int found = 0;

  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_CREATE_REQ;
  req.group = "c2g-grp";
  req.members = members;
  req.n_members = 2;
  tc_call(u1a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_CREATE_RSP);
  assert_str(rsp.group, "c2g-grp");
  assert_int_equal(rsp.n_members, 3);
  assert_true(has_member(&rsp, "c2g-u1"));
  assert_true(has_member(&rsp, "c2g-u2"));
  assert_true(has_member(&rsp, "c2g-u3"));
  mim_packet_finish(&rsp);

  id = tc_c2g(u1a, "c2g-grp", "hello group", "c2g-1", NULL);

  /* Online member and the sender's other device get it. */
  tc_push_msg(u2, MIM_CMD_C2G_PUSH, id, &push);
  assert_str(push.from, "c2g-u1");
  assert_str(push.group, "c2g-grp");
  assert_str(push.content, "hello group");
  assert_int_equal(push.type, MIM_MSG_TEXT);
  assert_true(push.inbox_seq > 0);
  mim_packet_finish(&push);
  tc_push_msg(u1b, MIM_CMD_C2G_PUSH, id, &push);
  assert_str(push.from, "c2g-u1");
  assert_str(push.group, "c2g-grp");
  assert_str(push.content, "hello group");
  mim_packet_finish(&push);

  /* A non-member is refused and hears nothing. */
  tc_call(out, &(struct mim_packet){.cmd = MIM_CMD_C2G_SEND_REQ,
                                    .group = "c2g-grp",
                                    .content = "let me in"},
          &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_C2G_SEND_REQ);
  assert_int_equal(rsp.seq, out->seq);
  assert_false(rsp.retryable);
  mim_packet_finish(&rsp);

  tc_barrier(u1a);
  tc_barrier(out);
  tc_assert_no_msg(u1a, MIM_CMD_C2G_PUSH, id);
  tc_assert_no_cmd(out, MIM_CMD_C2G_PUSH);

  /* The offline member finds it in its inbox, once; "let me in" is not
   * stored anywhere. */
  u3 = tc_login(f->h, "c2g-u3", NULL);
  tc_pull_all(u3, 0, &items);
  for (size_t i = 0; i < items.n; i++) {
    assert_true(strcmp(items.v[i].content, "let me in") != 0);
    if (items.v[i].msg_id != id)
      continue;
    found++;
    assert_str(items.v[i].from, "c2g-u1");
    assert_str(items.v[i].group, "c2g-grp");
    assert_str(items.v[i].content, "hello group");
    assert_str(items.v[i].client_msg_id, "c2g-1");
  }
  assert_int_equal(found, 1);
  tc_items_free(&items);

  tc_free(u1a);
  tc_free(u1b);
  tc_free(u2);
  tc_free(u3);
  tc_free(out);
  PASSED(f);
}

SHARED_SETUP(multi_device, 60)
static void multi_device(void **state) {
  struct fixture *f = *state;
  struct tc *phone = tc_login(f->h, "md-user", "phone");
  struct tc *laptop = tc_login(f->h, "md-user", "laptop");
  struct tc *s = tc_login(f->h, "md-sender", NULL);
  struct mim_packet push, rsp;
  uint64_t ids[3];
  char content[32];

  for (int i = 0; i < 3; i++) {
    snprintf(content, sizeof(content), "md %d", i);
    ids[i] = tc_c2c(s, "md-user", content, NULL, NULL);
  }
  for (int i = 0; i < 3; i++) {
    snprintf(content, sizeof(content), "md %d", i);
    tc_push(phone, MIM_CMD_C2C_PUSH, &push);
    check_c2c_push(&push, "md-sender", "md-user", content, ids[i], i + 1);
    mim_packet_finish(&push);
    tc_push(laptop, MIM_CMD_C2C_PUSH, &push);
    check_c2c_push(&push, "md-sender", "md-user", content, ids[i], i + 1);
    mim_packet_finish(&push);
  }
  /* Each device keeps its own cursor. */
  tc_ack(phone, MIM_CMD_C2C_PUSH_ACK, 0, 3);
  tc_ack(laptop, MIM_CMD_C2C_PUSH_ACK, 0, 1);
  tc_barrier(phone);
  tc_barrier(laptop);
  tc_free(phone);
  tc_free(laptop);

  phone = tc_login(f->h, "md-user", "phone");
  laptop = tc_login(f->h, "md-user", "laptop");
  assert_int_equal(phone->last_inbox_seq, 3);
  assert_int_equal(laptop->last_inbox_seq, 3);
  expect_ack_seq(phone, 3, "it acked inbox_seq 3 before closing");
  expect_ack_seq(laptop, 1, "it acked inbox_seq 1 before closing");

  tc_pull(laptop, true, laptop->ack_seq, 100, &rsp);
  assert_int_equal(rsp.n_items, 2);
  assert_int_equal(rsp.items[0].msg_id, ids[1]);
  assert_int_equal(rsp.items[1].msg_id, ids[2]);
  mim_packet_finish(&rsp);

  tc_free(phone);
  tc_free(laptop);
  tc_free(s);
  PASSED(f);
}

/* MIM_CAP_BATCH: several frames per websocket message both ways, replies
 * still in request order; clients without it get one frame per message
 * (wsclient reports anything else as a protocol error) and may not send
 * more. */
SHARED_SETUP(batch_client, 60)
static void batch_client(void **state) {
  enum { N = 20 };
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "bat-a", NULL, MIM_CAP_BATCH);
  struct tc *b = tc_login_caps(f->h, "bat-b", NULL, MIM_CAP_BATCH);
  struct tc *c = tc_login(f->h, "bat-c", NULL);
  uint8_t msg[N * 128];
  size_t off = 0;
  uint64_t ids[N];
  int64_t first = a->seq + 1;
  char content[32], d[512];

  assert_int_equal(a->caps & MIM_CAP_BATCH, MIM_CAP_BATCH);
  assert_int_equal(c->caps & MIM_CAP_BATCH, 0);

  /* N sends in one websocket message, alternately to b and c. */
  for (int i = 0; i < N; i++) {
    struct mim_packet req;
    size_t len;

    snprintf(content, sizeof(content), "batch %d", i);
    mim_packet_init(&req);
    req.cmd = MIM_CMD_C2C_SEND_REQ;
    req.seq = first + i;
    req.to = i % 2 ? "bat-c" : "bat-b";
    req.content = content;
    assert_int_equal(mim_packet_encode(&req, msg + off, sizeof(msg) - off,
                                       &len),
                     0);
    off += len;
  }
  a->seq = first + N - 1;
  assert_int_equal(wsc_send_raw(a->ws, msg, off, true), 0);
  for (int i = 0; i < N; i++) {
    struct mim_packet rsp;
    int r = wsc_recv_match(a->ws, TC_REPLY_MS, match_not_push, NULL, &rsp);

    if (r != 0)
      fail_msg("batched send %d: no reply (%d %s)", i, r,
               r == -ETIMEDOUT ? "" : wsc_last_error());
    if (rsp.cmd != MIM_CMD_C2C_SEND_RSP || rsp.seq != first + i)
      fail_msg("batched send %d: want C2C_SEND_RSP seq %lld, got %s", i,
               (long long)(first + i), tc_describe(&rsp, d, sizeof(d)));
    ids[i] = rsp.msg_id;
    mim_packet_finish(&rsp);
  }
  for (int i = 0; i < N; i++) {
    struct mim_packet push;

    snprintf(content, sizeof(content), "batch %d", i);
    tc_push(i % 2 ? c : b, MIM_CMD_C2C_PUSH, &push);
    check_c2c_push(&push, "bat-a", i % 2 ? "bat-c" : "bat-b", content, ids[i],
                   (uint64_t)i / 2 + 1);
    mim_packet_finish(&push);
  }
  tc_barrier(c);
  tc_assert_no_cmd(c, MIM_CMD_C2C_PUSH);

  /* Two frames in one message from a client without the capability. */
  {
    uint8_t two[2 * MIM_HEADER_SIZE];
    struct mim_header hb = {0, MIM_CMD_HEARTBEAT_REQ, 0};

    mim_header_encode(two, &hb);
    mim_header_encode(two + MIM_HEADER_SIZE, &hb);
    expect_error_or_close(f->h, "bat-d", two, sizeof(two),
                          "two frames in one message without MIM_CAP_BATCH");
  }

  witness_check(b, c, "after batching");
  tc_free(a);
  tc_free(b);
  tc_free(c);
  PASSED(f);
}

/* A burst of pushes of every websocket header size (7-bit, 16-bit length)
 * reaches a seed device one frame per message and a MIM_CAP_BATCH device
 * in frames, both complete and in order: gatewayd writes many queued
 * messages with one send(), framing them itself. */
SHARED_SETUP(burst_of_sizes, 60)
static void burst_of_sizes(void **state) {
  enum { N = 48 };
  static const size_t sizes[] = {5, 125, 126, 300, 4000, 30000, 65};
  struct fixture *f = *state;
  struct tc *s = tc_login(f->h, "burst-s", NULL);
  struct tc *seed = tc_login(f->h, "burst-r", "seed");
  struct tc *bat = tc_login_caps(f->h, "burst-r", "batch", MIM_CAP_BATCH);
  static char content[N][30001];
  char d[512];

  int64_t first = s->seq + 1;
  for (int i = 0; i < N; i++) {
    struct mim_packet req;
    size_t n = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];

    memset(content[i], 'a' + i % 26, n);
    content[i][n] = '\0';
    mim_packet_init(&req);
    req.cmd = MIM_CMD_C2C_SEND_REQ;
    req.seq = ++s->seq;
    req.to = "burst-r";
    req.content = content[i];
    assert_int_equal(wsc_queue_packet(s->ws, &req), 0);
  }
  for (int i = 0; i < N; i++) {
    struct mim_packet rsp;
    int r = wsc_recv_match(s->ws, TC_REPLY_MS, match_not_push, NULL, &rsp);

    if (r != 0)
      fail_msg("send %d: no reply (%d %s)", i, r,
               r == -ETIMEDOUT ? "" : wsc_last_error());
    if (rsp.cmd != MIM_CMD_C2C_SEND_RSP || rsp.seq != first + i)
      fail_msg("send %d: want C2C_SEND_RSP seq %lld, got %s", i,
               (long long)(first + i), tc_describe(&rsp, d, sizeof(d)));
    mim_packet_finish(&rsp);
  }
  struct tc *devices[] = {seed, bat};
  for (size_t k = 0; k < 2; k++) {
    for (int i = 0; i < N; i++) {
      struct mim_packet push;

      tc_push(devices[k], MIM_CMD_C2C_PUSH, &push);
      if (strcmp(S(push.content), content[i]) != 0 ||
          push.inbox_seq != (uint64_t)i + 1)
        fail_msg("%s device, push %d: want %zu bytes at inbox_seq %d, got %s",
                 k ? "batch" : "seed", i, strlen(content[i]), i + 1,
                 tc_describe(&push, d, sizeof(d)));
      mim_packet_finish(&push);
    }
  }
  tc_barrier(seed);
  tc_assert_no_cmd(seed, MIM_CMD_C2C_PUSH);
  tc_free(s);
  tc_free(seed);
  tc_free(bat);
  PASSED(f);
}

/* A device's cursor, moved by an ack or by a pull's after_seq, is what its
 * very next login reports, however quickly that login follows the close.
 * Repeated because a stale read is a race. */
SHARED_SETUP(ack_cursor_relogin, 60)
static void ack_cursor_relogin(void **state) {
  enum { ROUNDS = 20 };
  struct fixture *f = *state;
  struct tc *s = tc_login(f->h, "cur-sender", NULL);
  struct tc *u = tc_login(f->h, "cur-user", "phone");
  struct mim_packet push, rsp;
  char content[32];

  for (int i = 0; i < ROUNDS; i++) {
    uint64_t id;

    snprintf(content, sizeof(content), "cursor %d", i);
    id = tc_c2c(s, "cur-user", content, NULL, NULL);
    tc_push_msg(u, MIM_CMD_C2C_PUSH, id, &push);
    assert_int_equal(push.inbox_seq, (uint64_t)i + 1);
    if (i % 2 == 0) {
      tc_ack(u, MIM_CMD_C2C_PUSH_ACK, 0, push.inbox_seq);
      tc_barrier(u);
    } else {
      tc_pull(u, true, push.inbox_seq, 1, &rsp);
      mim_packet_finish(&rsp);
    }
    mim_packet_finish(&push);
    tc_free(u);
    u = tc_login(f->h, "cur-user", "phone");
    if (u->ack_seq != (uint64_t)i + 1)
      fail_msg("round %d: the %s moved the cursor to %d, then the "
               "connection closed; the next login reports "
               "AuthResponse.ack_seq %llu",
               i, i % 2 == 0 ? "ack (cmd 9, inbox_seq)" : "pull (after_seq)",
               i + 1, (unsigned long long)u->ack_seq);
  }
  tc_free(u);
  tc_free(s);
  PASSED(f);
}

SHARED_SETUP(duplicate_login, 60)
static void duplicate_login(void **state) {
  struct fixture *f = *state;
  struct tc *first = tc_login(f->h, "dup-user", "dev");
  struct tc *peer = tc_login(f->h, "dup-peer", NULL);
  struct tc *second, *other;
  struct mim_packet kick, push;
  uint64_t id;
  int code = 0, r;

  second = tc_login(f->h, "dup-user", "dev");

  r = wsc_recv_cmd(first->ws, MIM_CMD_KICK, TC_PUSH_MS, &kick);
  if (r != 0)
    fail_msg("the first connection got no Kick (%d %s)", r,
             r == -ETIMEDOUT ? "" : wsc_last_error());
  assert_int_equal(kick.reason, MIM_KICK_OTHER_LOGIN);
  assert_int_equal(kick.seq, 0);
  mim_packet_finish(&kick);
  assert_int_equal(wsc_wait_closed(first->ws, 5000, &code), 0);
  assert_int_equal(code, 4001);

  /* The old connection's close did not take the new one's route. */
  tc_barrier(second);
  id = tc_c2c(peer, "dup-user", "to the second", NULL, NULL);
  tc_push_msg(second, MIM_CMD_C2C_PUSH, id, &push);
  check_c2c_push(&push, "dup-peer", "dup-user", "to the second", id, 0);
  mim_packet_finish(&push);
  id = tc_c2c(second, "dup-peer", "from the second", NULL, NULL);
  tc_push_msg(peer, MIM_CMD_C2C_PUSH, id, &push);
  check_c2c_push(&push, "dup-user", "dup-peer", "from the second", id, 0);
  mim_packet_finish(&push);

  /* Another device of the same user coexists. */
  other = tc_login(f->h, "dup-user", "other");
  tc_barrier(second);
  tc_assert_no_cmd(second, MIM_CMD_KICK);
  assert_true(wsc_is_open(second->ws));

  /* The device's cursor goes with it: what the connection being replaced
   * acknowledged is what the replacing login reports. */
  tc_ack(second, MIM_CMD_C2C_PUSH_ACK, 0, 2);
  tc_barrier(second);
  tc_free(first);
  first = tc_login(f->h, "dup-user", "dev");
  expect_ack_seq(first, 2, "the connection it replaced acked inbox_seq 2");

  tc_free(first);
  tc_free(second);
  tc_free(other);
  tc_free(peer);
  PASSED(f);
}

/* ====================================================================== */
/* security                                                               */
/* ====================================================================== */

SHARED_SETUP(sec_unauthenticated, 60)
static void sec_unauthenticated(void **state) {
  struct fixture *f = *state;
  struct tc *w1 = tc_login(f->h, "secu-w1", NULL);
  struct tc *w2 = tc_login(f->h, "secu-w2", NULL);
  struct tc *victim = tc_login(f->h, "secu-victim", NULL);
  struct tc *x = tc_open(f->h);
  struct mim_packet rsp, push;
  char token[MIM_TOKEN_MAX];
  uint64_t id;

  tc_call(x, &(struct mim_packet){.cmd = MIM_CMD_C2C_SEND_REQ,
                                  .to = "secu-victim",
                                  .content = "unauthenticated"},
          &rsp);
  tc_expect_error(&rsp, E_UNAUTHENTICATED, MIM_CMD_C2C_SEND_REQ);
  assert_int_equal(rsp.seq, x->seq);
  assert_false(rsp.retryable);
  mim_packet_finish(&rsp);

  tc_call(x, &(struct mim_packet){.cmd = MIM_CMD_PULL_REQ, .uid = "secu-victim",
                                  .has_after_seq = true},
          &rsp);
  tc_expect_error(&rsp, E_UNAUTHENTICATED, MIM_CMD_PULL_REQ);
  mim_packet_finish(&rsp);

  tc_call(x, &(struct mim_packet){.cmd = MIM_CMD_C2G_SEND_REQ,
                                  .group = "secu-g", .content = "x"},
          &rsp);
  tc_expect_error(&rsp, E_UNAUTHENTICATED, MIM_CMD_C2G_SEND_REQ);
  mim_packet_finish(&rsp);

  tc_call(x, &(struct mim_packet){.cmd = MIM_CMD_GROUP_CREATE_REQ,
                                  .group = "secu-g"},
          &rsp);
  tc_expect_error(&rsp, E_UNAUTHENTICATED, MIM_CMD_GROUP_CREATE_REQ);
  mim_packet_finish(&rsp);

  /* Heartbeats are answered at any time. */
  tc_barrier(x);

  /* Nothing reached the victim. */
  tc_barrier(victim);
  tc_assert_no_cmd(victim, MIM_CMD_C2C_PUSH);
  tc_pull(victim, true, 0, 100, &rsp);
  assert_int_equal(rsp.n_items, 0);
  mim_packet_finish(&rsp);

  /* The connection stayed usable: it may still log in. */
  assert_int_equal(
      tc_auth(x, "secu-x", NULL, tc_token(f->h, "secu-x", NULL, token), 0), 0);
  id = tc_c2c(x, "secu-victim", "now authenticated", NULL, NULL);
  tc_push_msg(victim, MIM_CMD_C2C_PUSH, id, &push);
  assert_str(push.from, "secu-x");
  mim_packet_finish(&push);

  witness_check(w1, w2, "after unauthenticated requests");
  tc_free(x);
  tc_free(victim);
  tc_free(w1);
  tc_free(w2);
  PASSED(f);
}

SHARED_SETUP(sec_forged_from, 60)
static void sec_forged_from(void **state) {
  struct fixture *f = *state;
  struct tc *mallory = tc_login(f->h, "secf-mallory", NULL);
  struct tc *victim = tc_login(f->h, "secf-victim", NULL);
  struct mim_packet rsp, push;
  uint64_t id;

  tc_call(mallory, &(struct mim_packet){.cmd = MIM_CMD_C2C_SEND_REQ,
                                        .from = "secf-alice",
                                        .to = "secf-victim",
                                        .content = "I am alice"},
          &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_C2C_SEND_RSP);
  id = rsp.msg_id;
  mim_packet_finish(&rsp);

  tc_push_msg(victim, MIM_CMD_C2C_PUSH, id, &push);
  check_c2c_push(&push, "secf-mallory", "secf-victim", "I am alice", id, 0);
  mim_packet_finish(&push);

  tc_pull(victim, true, 0, 100, &rsp);
  assert_int_equal(rsp.n_items, 1);
  assert_str(rsp.items[0].from, "secf-mallory");
  mim_packet_finish(&rsp);

  tc_free(mallory);
  tc_free(victim);
  PASSED(f);
}

SHARED_SETUP(sec_pull_other_inbox, 60)
static void sec_pull_other_inbox(void **state) {
  struct fixture *f = *state;
  struct tc *alice = tc_login(f->h, "secp-alice", NULL);
  struct tc *bob = tc_login(f->h, "secp-bob", NULL);
  struct tc *mallory;
  struct mim_packet rsp, push;
  uint64_t id, mine;

  id = tc_c2c(bob, "secp-alice", "secret for alice", NULL, NULL);
  tc_push_msg(alice, MIM_CMD_C2C_PUSH, id, &push);
  mim_packet_finish(&push);
  tc_free(alice); /* offline, cursor 0 */

  mallory = tc_login(f->h, "secp-mallory", NULL);
  mine = tc_c2c(mallory, "secp-bob", "mallory's own", NULL, NULL);

  /* libmim-style pull naming the victim: only one's own inbox. */
  tc_call(mallory, &(struct mim_packet){.cmd = MIM_CMD_PULL_REQ,
                                        .uid = "secp-alice",
                                        .has_after_seq = true,
                                        .after_seq = 0,
                                        .limit = 100},
          &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_PULL_RSP);
  assert_int_equal(rsp.n_items, 1);
  assert_int_equal(rsp.items[0].msg_id, mine);
  assert_str(rsp.items[0].content, "mallory's own");
  assert_int_equal(rsp.last_inbox_seq, 1);
  mim_packet_finish(&rsp);

  /* Seed-style pull naming the victim. */
  tc_call(mallory, &(struct mim_packet){.cmd = MIM_CMD_PULL_REQ,
                                        .uid = "secp-alice", .limit = 10},
          &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_PULL_RSP);
  for (size_t i = 0; i < rsp.n_items; i++)
    assert_true(rsp.items[i].msg_id != id);
  mim_packet_finish(&rsp);

  /* A pull that would acknowledge the victim's inbox moves nothing of hers. */
  tc_call(mallory, &(struct mim_packet){.cmd = MIM_CMD_PULL_REQ,
                                        .uid = "secp-alice",
                                        .has_after_seq = true,
                                        .after_seq = 1},
          &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_PULL_RSP);
  mim_packet_finish(&rsp);

  alice = tc_login(f->h, "secp-alice", NULL);
  expect_ack_seq(alice, 0, "only mallory's pulls named her");
  assert_int_equal(alice->last_inbox_seq, 1);
  tc_pull(alice, true, 0, 100, &rsp);
  assert_int_equal(rsp.n_items, 1);
  assert_int_equal(rsp.items[0].msg_id, id);
  assert_str(rsp.items[0].content, "secret for alice");
  mim_packet_finish(&rsp);

  tc_free(alice);
  tc_free(bob);
  tc_free(mallory);
  PASSED(f);
}

/* A C2CSendRequest{to, content} frame of `total` bytes whose content is
 * 'A's; `total` must be at least 2 MiB (4-byte varint length). */
static uint8_t *big_send_frame(size_t total, const char *to) {
  uint8_t *frame = malloc(total);
  size_t off = MIM_HEADER_SIZE, content_len, to_len = strlen(to);
  struct mim_header hd = {0, MIM_CMD_C2C_SEND_REQ,
                          (uint32_t)(total - MIM_HEADER_SIZE)};

  assert_non_null(frame);
  assert_true(to_len < 128);
  mim_header_encode(frame, &hd);
  frame[off++] = 0x12; /* field 2 (to), length-delimited */
  frame[off++] = (uint8_t)to_len;
  memcpy(frame + off, to, to_len);
  off += to_len;
  frame[off++] = 0x1a; /* field 3 (content), length as a 4-byte varint */
  content_len = total - off - 4;
  frame[off++] = (uint8_t)(0x80 | (content_len & 0x7f));
  frame[off++] = (uint8_t)(0x80 | ((content_len >> 7) & 0x7f));
  frame[off++] = (uint8_t)(0x80 | ((content_len >> 14) & 0x7f));
  frame[off++] = (uint8_t)((content_len >> 21) & 0x7f);
  assert_int_equal(off + content_len, total);
  memset(frame + off, 'A', content_len);
  return frame;
}

/* Takes what a closed connection left queued: fails on a send reply, and
 * returns whether an Error (which must be FRAME_TOO_BIG) was among it. */
static bool drain_after_big(struct tc *x) {
  struct mim_packet p;
  bool got_error = false;
  char d[512];

  while (wsc_recv(x->ws, 0, &p) == 0) {
    if (p.cmd == MIM_CMD_C2C_SEND_RSP)
      fail_msg("an oversized frame was accepted: %s",
               tc_describe(&p, d, sizeof(d)));
    if (p.cmd == MIM_CMD_ERROR) {
      tc_expect_error(&p, E_FRAME_TOO_BIG, 0);
      assert_false(p.retryable);
      got_error = true;
    }
    mim_packet_finish(&p);
  }
  return got_error;
}

SHARED_SETUP(sec_oversized_frame, 90)
static void sec_oversized_frame(void **state) {
  enum { TOTAL = 4 * 1024 * 1024 };
  struct fixture *f = *state;
  struct tc *w1 = tc_login(f->h, "secb-w1", NULL);
  struct tc *w2 = tc_login(f->h, "secb-w2", NULL);
  struct tc *x = tc_login(f->h, "secb-x", NULL);
  uint8_t *frame = big_send_frame(TOTAL, "secb-w2");
  int code = 0, r;

  /* 1. A header announcing a 4 MiB body (only its first bytes follow in
   * the message): refused on the header alone — Error FRAME_TOO_BIG, then
   * a proper close. Deterministic: the client has nothing left to send. */
  assert_int_equal(wsc_send_raw(x->ws, frame, 4096, true), 0);
  r = wsc_wait_closed(x->ws, 10000, &code);
  if (r != 0)
    fail_msg("a frame announcing a 4 MiB body did not close the connection "
             "within 10 s");
  if (!drain_after_big(x))
    fail_msg("a frame announcing a 4 MiB body: no Error FRAME_TOO_BIG "
             "before the close (close code %d)",
             code);
  if (code == WSC_CLOSE_ABNORMAL)
    fail_msg("a frame announcing a 4 MiB body: the connection ended without "
             "a close frame");
  tc_free(x);

  /* 2. The whole 4 MiB message: refused and closed; nothing stored. */
  x = tc_login(f->h, "secb-x", NULL);
  r = wsc_send_raw(x->ws, frame, TOTAL, true);
  assert_true(r == 0 || r == -EPIPE);
  r = wsc_wait_closed(x->ws, 10000, &code);
  if (r != 0)
    fail_msg("the connection that sent a 4 MiB message is still open after "
             "10 s");
  if (!drain_after_big(x) && code != 1009)
    fprintf(stderr,
            "[sec_oversized_frame] NOTE: whole 4 MiB message: neither Error "
            "FRAME_TOO_BIG nor close 1009 reached the client (close code "
            "%d): the gateway reset the connection while the client was "
            "still sending, and the reset discarded its Error and close "
            "frame\n",
            code);
  free(frame);

  /* Nothing was stored or delivered, and the others are fine. */
  tc_barrier(w2);
  tc_assert_no_cmd(w2, MIM_CMD_C2C_PUSH);
  witness_check(w1, w2, "after a 4 MiB frame");
  tc_free(x);
  x = tc_login(f->h, "secb-x", NULL);
  witness_check(x, w2, "the sender of the 4 MiB frame logs in again");

  tc_free(x);
  tc_free(w1);
  tc_free(w2);
  PASSED(f);
}

/* Sends raw bytes on a fresh authenticated connection and asserts the
 * server answers with an Error or closes — never silence. */
static void expect_error_or_close(struct harness *h, const char *uid,
                                  const uint8_t *bytes, size_t len,
                                  const char *what) {
  struct tc *c = tc_login(h, uid, NULL);
  struct mim_packet p;
  int r;

  r = wsc_send_raw(c->ws, bytes, len, true);
  assert_true(r == 0 || r == -EPIPE);
  r = wsc_recv(c->ws, 5000, &p);
  if (r == 0) {
    char d[512];

    if (p.cmd != MIM_CMD_ERROR && p.cmd != MIM_CMD_KICK)
      fail_msg("%s: want an Error or Kick, got %s", what,
               tc_describe(&p, d, sizeof(d)));
    mim_packet_finish(&p);
  } else if (r != -ENOTCONN) {
    fail_msg("%s: neither an Error nor a close within 5 s (%d)", what, r);
  }
  tc_free(c);
}

SHARED_SETUP(sec_garbage_body, 60)
static void sec_garbage_body(void **state) {
  struct fixture *f = *state;
  struct tc *w1 = tc_login(f->h, "secg-w1", NULL);
  struct tc *w2 = tc_login(f->h, "secg-w2", NULL);
  struct tc *x = tc_login(f->h, "secg-x", NULL);
  /* field 1 with the invalid wire type 7, then a length running past the
   * end: no protobuf parser accepts this. */
  static const uint8_t garbage[] = {0x0f, 0xff, 0xff, 0x12, 0x7f, 'a'};
  uint8_t frame[64];
  size_t n = tc_frame(frame, MIM_CMD_C2C_SEND_REQ, garbage, sizeof(garbage));
  struct mim_packet rsp;
  uint64_t id;

  assert_int_equal(wsc_send_raw(x->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv_cmd(x->ws, MIM_CMD_ERROR, TC_REPLY_MS, &rsp), 0);
  tc_expect_error(&rsp, E_MALFORMED, MIM_CMD_C2C_SEND_REQ);
  assert_int_equal(rsp.seq, 0);
  assert_false(rsp.retryable);
  mim_packet_finish(&rsp);

  /* Same connection, still fine. */
  tc_barrier(x);
  id = tc_c2c(x, "secg-w2", "after garbage", NULL, NULL);
  tc_push_msg(w2, MIM_CMD_C2C_PUSH, id, &rsp);
  mim_packet_finish(&rsp);

  /* Not even a frame: 5 bytes; a header whose body_len disagrees with the
   * message; a header with version 7. */
  expect_error_or_close(f->h, "secg-y1", (const uint8_t *)"hello", 5,
                        "a 5-byte message");
  {
    uint8_t bad[12 + 3];
    struct mim_header hd = {0, MIM_CMD_HEARTBEAT_REQ, 10};

    mim_header_encode(bad, &hd);
    memset(bad + 12, 0, 3);
    expect_error_or_close(f->h, "secg-y2", bad, sizeof(bad),
                          "body_len 10 with 3 body bytes");
  }
  witness_check(w1, w2, "after garbage");
  {
    /* §2: a header version other than 0 is Error BAD_VERSION. */
    uint8_t bad[12];
    struct mim_header hd = {7, MIM_CMD_HEARTBEAT_REQ, 0};
    struct tc *y = tc_login(f->h, "secg-y3", NULL);

    mim_header_encode(bad, &hd);
    assert_int_equal(wsc_send_raw(y->ws, bad, sizeof(bad), true), 0);
    if (wsc_recv(y->ws, TC_REPLY_MS, &rsp) != 0)
      fail_msg("a frame with version 7: no answer");
    tc_expect_error(&rsp, E_BAD_VERSION, 0);
    mim_packet_finish(&rsp);
    tc_free(y);
  }

  tc_free(x);
  tc_free(w1);
  tc_free(w2);
  PASSED(f);
}

SHARED_SETUP(sec_unknown_cmd, 60)
static void sec_unknown_cmd(void **state) {
  struct fixture *f = *state;
  struct tc *w1 = tc_login(f->h, "secc-w1", NULL);
  struct tc *w2 = tc_login(f->h, "secc-w2", NULL);
  struct tc *x = tc_login(f->h, "secc-x", NULL);
  uint8_t frame[64];
  size_t n = tc_frame(frame, 999, NULL, 0);
  struct mim_packet rsp;
  uint64_t id;

  assert_int_equal(wsc_send_raw(x->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv_cmd(x->ws, MIM_CMD_ERROR, TC_REPLY_MS, &rsp), 0);
  tc_expect_error(&rsp, E_UNKNOWN_CMD, 999);
  assert_false(rsp.retryable);
  mim_packet_finish(&rsp);

  /* Server-to-client commands from a client. */
  n = tc_frame(frame, MIM_CMD_C2C_PUSH, NULL, 0);
  assert_int_equal(wsc_send_raw(x->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv_cmd(x->ws, MIM_CMD_ERROR, TC_REPLY_MS, &rsp), 0);
  tc_expect_error(&rsp, E_UNKNOWN_CMD, MIM_CMD_C2C_PUSH);
  mim_packet_finish(&rsp);
  n = tc_frame(frame, MIM_CMD_SERVER_PUSH, NULL, 0);
  assert_int_equal(wsc_send_raw(x->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv_cmd(x->ws, MIM_CMD_ERROR, TC_REPLY_MS, &rsp), 0);
  tc_expect_error(&rsp, E_FORBIDDEN, MIM_CMD_SERVER_PUSH);
  mim_packet_finish(&rsp);

  /* The connection stays open and works. */
  assert_true(wsc_is_open(x->ws));
  id = tc_c2c(x, "secc-w2", "after cmd 999", NULL, NULL);
  tc_push_msg(w2, MIM_CMD_C2C_PUSH, id, &rsp);
  mim_packet_finish(&rsp);

  witness_check(w1, w2, "after unknown commands");
  tc_free(x);
  tc_free(w1);
  tc_free(w2);
  PASSED(f);
}

SHARED_SETUP(sec_text_frame, 60)
static void sec_text_frame(void **state) {
  struct fixture *f = *state;
  struct tc *w1 = tc_login(f->h, "sect-w1", NULL);
  struct tc *w2 = tc_login(f->h, "sect-w2", NULL);
  struct tc *x = tc_login(f->h, "sect-x", NULL);
  int code = 0, r;

  r = wsc_send_raw(x->ws, "{\"cmd\":6}", 9, false);
  assert_true(r == 0 || r == -EPIPE);
  r = wsc_wait_closed(x->ws, 5000, &code);
  if (r != 0)
    fail_msg("a text message did not close the connection within 5 s");
  assert_int_equal(code, 1003);

  witness_check(w1, w2, "after a text message");
  tc_free(x);
  x = tc_login(f->h, "sect-x", NULL);
  witness_check(x, w1, "the sender of the text message logs in again");
  tc_free(x);
  tc_free(w1);
  tc_free(w2);
  PASSED(f);
}

/* ====================================================================== */
/* the seed web client                                                    */
/* ====================================================================== */

/* What mimweb sends: no seq, no device, no client_msg_id, token "token". */
static struct tc *seed_login(struct harness *h, const char *uid) {
  struct tc *c = tc_open(h);
  struct mim_packet req, rsp;
  char d[512];

  mim_packet_init(&req);
  req.cmd = MIM_CMD_AUTH_REQ;
  req.token = "token";
  req.uid = uid;
  req.ts = tc_now_ms();
  assert_int_equal(wsc_send_packet(c->ws, &req), 0);
  assert_int_equal(wsc_recv_cmd(c->ws, MIM_CMD_AUTH_RSP, TC_REPLY_MS, &rsp), 0);
  if (rsp.status != 0 || rsp.seq != 0)
    fail_msg("seed login of %s: %s", uid, tc_describe(&rsp, d, sizeof(d)));
  snprintf(c->uid, sizeof(c->uid), "%s", uid);
  snprintf(c->device, sizeof(c->device), "%s", MIM_DEFAULT_DEVICE);
  c->last_inbox_seq = rsp.last_inbox_seq;
  c->ack_seq = rsp.ack_seq;
  mim_packet_finish(&rsp);
  return c;
}

/* A seed request: seq 0, the reply found by order (the first packet that is
 * not a push). */

static void seed_call(struct tc *c, struct mim_packet *req,
                      struct mim_packet *rsp, uint32_t want) {
  char d[512];
  int r;

  req->seq = 0;
  req->ts = tc_now_ms();
  assert_int_equal(wsc_send_packet(c->ws, req), 0);
  r = wsc_recv_match(c->ws, TC_REPLY_MS, match_not_push, NULL, rsp);
  if (r != 0)
    fail_msg("seed %s: no reply to cmd %u (%d)", c->uid, req->cmd, r);
  if (rsp->cmd != want || rsp->seq != 0)
    fail_msg("seed %s: want cmd %u with seq 0, got %s", c->uid, want,
             tc_describe(rsp, d, sizeof(d)));
}

static uint64_t seed_send(struct tc *c, const char *to, const char *content) {
  struct mim_packet req, rsp;
  uint64_t id;

  mim_packet_init(&req);
  req.cmd = MIM_CMD_C2C_SEND_REQ;
  req.from = c->uid;
  req.to = to;
  req.content = content;
  seed_call(c, &req, &rsp, MIM_CMD_C2C_SEND_RSP);
  id = rsp.msg_id;
  assert_true(id > 0 && id <= MIM_MSG_ID_MAX);
  mim_packet_finish(&rsp);
  return id;
}

/* "pull offline": {uid, limit 10}, no msg_id, no after_seq. */
static void seed_pull(struct tc *c, struct mim_packet *rsp) {
  struct mim_packet req;

  mim_packet_init(&req);
  req.cmd = MIM_CMD_PULL_REQ;
  req.uid = c->uid;
  req.limit = 10;
  seed_call(c, &req, rsp, MIM_CMD_PULL_RSP);
}

/* The seed client's automatic ack of a push: cmd 9 with msgId only. */
static void seed_take_push(struct tc *c, const char *from,
                           const char *content, uint64_t id) {
  struct mim_packet push;

  tc_push(c, MIM_CMD_C2C_PUSH, &push);
  check_c2c_push(&push, from, c->uid, content, id, 0);
  tc_ack(c, MIM_CMD_C2C_PUSH_ACK, push.msg_id, 0);
  mim_packet_finish(&push);
}

SHARED_SETUP(seed_client, 60)
static void seed_client(void **state) {
  struct fixture *f = *state;
  struct tc *a = seed_login(f->h, "1");
  struct tc *b = seed_login(f->h, "2");
  struct mim_packet req, rsp;
  uint64_t id0, ids[12], live, prev = 0;
  char content[32];

  id0 = seed_send(a, "2", "seed hello");
  seed_take_push(b, "1", "seed hello", id0);

  /* "disconnect" = LogoutRequest */
  mim_packet_init(&req);
  req.cmd = MIM_CMD_LOGOUT_REQ;
  req.uid = "2";
  seed_call(b, &req, &rsp, MIM_CMD_LOGOUT_RSP);
  mim_packet_finish(&rsp);
  tc_free(b);

  /* 12 messages while "2" is away; replies by order, ids increasing. */
  for (int i = 0; i < 12; i++) {
    snprintf(content, sizeof(content), "seed %d", i);
    ids[i] = seed_send(a, "2", content);
    assert_true(ids[i] > (i ? ids[i - 1] : id0));
  }

  b = seed_login(f->h, "2");
  expect_ack_seq(b, 1, "it acked the one push by msg_id, then logged out");
  assert_int_equal(b->last_inbox_seq, 13);

  /* Pressed three times: 10, the remaining 2, nothing. */
  seed_pull(b, &rsp);
  assert_int_equal(rsp.n_items, 10);
  for (size_t i = 0; i < rsp.n_items; i++) {
    snprintf(content, sizeof(content), "seed %zu", i);
    assert_str(rsp.items[i].content, content);
    assert_str(rsp.items[i].from, "1");
    assert_int_equal(rsp.items[i].msg_id, ids[i]);
    assert_true(rsp.items[i].inbox_seq > prev);
    prev = rsp.items[i].inbox_seq;
  }
  mim_packet_finish(&rsp);
  seed_pull(b, &rsp);
  assert_int_equal(rsp.n_items, 2);
  assert_int_equal(rsp.items[0].msg_id, ids[10]);
  assert_int_equal(rsp.items[1].msg_id, ids[11]);
  assert_str(rsp.items[1].content, "seed 11");
  mim_packet_finish(&rsp);
  seed_pull(b, &rsp);
  assert_int_equal(rsp.n_items, 0);
  mim_packet_finish(&rsp);

  /* Online again: the push is acked by msg_id and not pulled again. */
  live = seed_send(a, "2", "seed live");
  seed_take_push(b, "1", "seed live", live);
  seed_pull(b, &rsp);
  assert_int_equal(rsp.n_items, 0);
  mim_packet_finish(&rsp);

  /* Next connection: everything was acknowledged. */
  tc_free(b);
  b = seed_login(f->h, "2");
  expect_ack_seq(b, 14, "pulls covered 2..13 and the push of 14 was acked");
  assert_int_equal(b->last_inbox_seq, 14);
  seed_pull(b, &rsp);
  assert_int_equal(rsp.n_items, 0);
  mim_packet_finish(&rsp);

  tc_free(a);
  tc_free(b);
  PASSED(f);
}

/* ====================================================================== */
/* production auth (fresh daemons without --dev-auth)                     */
/* ====================================================================== */

static int setup_production_auth(void **state) {
  struct h_opts o;

  h_opts_init(&o);
  o.dev_auth = false;
  o.token_secret = PROD_SECRET;
  return setup_fresh(state, &o, "production_auth", 60);
}

static const char *sign(const char *secret, const char *uid,
                        const char *device, int64_t expires, char *buf) {
  assert_int_equal(mim_token_sign((const uint8_t *)secret, strlen(secret), uid,
                                  device, expires, buf, MIM_TOKEN_MAX),
                   0);
  return buf;
}

static void production_auth(void **state) {
  struct fixture *f = *state;
  int64_t now = (int64_t)time(NULL);
  struct tc *alice = tc_open(f->h);
  struct tc *bob = tc_open(f->h);
  struct mim_packet rsp, push;
  char tok[MIM_TOKEN_MAX];
  uint64_t id;

  assert_int_equal(tc_auth(alice, "pa-alice", "phone",
                           sign(PROD_SECRET, "pa-alice", "phone", now + 3600,
                                tok),
                           0),
                   0);

  /* The seed's literal token is refused outside development mode, and the
   * connection stays open and unauthenticated. */
  assert_int_equal(tc_auth(bob, "pa-bob", NULL, "token", 0), E_TOKEN_INVALID);
  tc_call(bob, &(struct mim_packet){.cmd = MIM_CMD_PULL_REQ,
                                    .has_after_seq = true},
          &rsp);
  tc_expect_error(&rsp, E_UNAUTHENTICATED, MIM_CMD_PULL_REQ);
  mim_packet_finish(&rsp);

  /* Someone else's token, another device's token, another secret, expired. */
  assert_int_equal(tc_auth(bob, "pa-bob", NULL, tok, 0), E_TOKEN_INVALID);
  assert_int_equal(
      tc_auth(bob, "pa-bob", "tablet",
              sign(PROD_SECRET, "pa-bob", "phone", now + 3600, tok), 0),
      E_TOKEN_INVALID);
  assert_int_equal(
      tc_auth(bob, "pa-bob", NULL,
              sign("another-secret-0123456789abcdef", "pa-bob", NULL,
                   now + 3600, tok),
              0),
      E_TOKEN_INVALID);
  assert_int_equal(tc_auth(bob, "pa-bob", NULL,
                           sign(PROD_SECRET, "pa-bob", NULL, now - 60, tok), 0),
                   E_TOKEN_EXPIRED);

  /* A token for every device of the uid works for "default". */
  assert_int_equal(tc_auth(bob, "pa-bob", NULL,
                           sign(PROD_SECRET, "pa-bob", "", now + 3600, tok), 0),
                   0);

  id = tc_c2c(alice, "pa-bob", "signed hello", NULL, NULL);
  tc_push_msg(bob, MIM_CMD_C2C_PUSH, id, &push);
  check_c2c_push(&push, "pa-alice", "pa-bob", "signed hello", id, 1);
  mim_packet_finish(&push);

  tc_free(alice);
  tc_free(bob);
  PASSED(f);
}

/* ====================================================================== */
/* crashes and restarts                                                   */
/* ====================================================================== */

enum { K9_N = 400, K9_WINDOW = 32, K9_KILL_AFTER = 120 };

enum k9_state { K9_UNSENT, K9_INFLIGHT, K9_ACKED, K9_UNAVAILABLE, K9_NOREPLY };

/* The next reply on the sender's connection (pushes excluded). Returns 1 a
 * send reply (*msg_id set), 0 Error UNAVAILABLE, -1 nothing within `ms`;
 * *seq is the reply's seq. Anything else fails the test. */
static int k9_next(struct tc *s, int ms, int64_t *seq, uint64_t *msg_id) {
  struct mim_packet p;
  char d[512];
  int r = wsc_recv_match(s->ws, ms, match_not_push, NULL, &p);

  if (r == -ETIMEDOUT)
    return -1;
  if (r != 0)
    fail_msg("sender: %d (%s)", r, wsc_last_error());
  *seq = p.seq;
  if (p.cmd == MIM_CMD_C2C_SEND_RSP) {
    *msg_id = p.msg_id;
    mim_packet_finish(&p);
    return 1;
  }
  if (p.cmd == MIM_CMD_ERROR && p.status == E_UNAVAILABLE) {
    assert_true(p.retryable);
    mim_packet_finish(&p);
    return 0;
  }
  fail_msg("send seq %lld: unexpected %s", (long long)p.seq,
           tc_describe(&p, d, sizeof(d)));
  return -1;
}

static void k9_names(int i, char *content, char *cmid, size_t cap) {
  snprintf(content, cap, "k9 %d", i);
  snprintf(cmid, cap, "k9-%d", i);
}

FRESH_DEV_SETUP(logicd_kill9, 150)
static void logicd_kill9(void **state) {
  struct fixture *f = *state;
  struct tc *s = tc_login(f->h, "k9-sender", NULL);
  struct tc *r;
  static enum k9_state st[K9_N];
  static uint64_t ids[K9_N];
  int64_t base = s->seq + 1;
  int sent = 0, oldest = 0, inflight = 0, acked = 0;
  int out_of_order = 0, noreply = 0;
  bool killed = false;
  struct pacer pace;
  struct tc_items items = {0};
  int64_t deadline = h_mono_ms() + 60000;
  char content[32], cmid[32];

  memset(st, 0, sizeof(st));
  memset(ids, 0, sizeof(ids));
  pacer_init(&pace, 150, 300);

  /* Phase 1: a window of sends in flight, with client_msg_ids; kill -9
   * logicd in the middle. Every request must still get an answer: its
   * reply, or UNAVAILABLE, in request order. */
  for (;;) {
    int64_t rseq = 0;
    uint64_t id = 0;
    int got, i;

    if (h_mono_ms() > deadline)
      fail_msg("phase 1 did not finish within 60 s");
    while (!killed && sent < K9_N && inflight < K9_WINDOW &&
           pacer_take(&pace)) {
      struct mim_packet req;

      k9_names(sent, content, cmid, sizeof(content));
      mim_packet_init(&req);
      req.cmd = MIM_CMD_C2C_SEND_REQ;
      req.seq = base + sent;
      req.to = "k9-receiver";
      req.content = content;
      req.client_msg_id = cmid;
      req.ts = tc_now_ms();
      assert_int_equal(wsc_queue_packet(s->ws, &req), 0);
      st[sent++] = K9_INFLIGHT;
      inflight++;
    }
    s->seq = base + sent - 1;
    if (!killed && acked >= K9_KILL_AFTER && inflight >= K9_WINDOW / 2) {
      wsc_ctx_service(WS, 0); /* the queued sends leave first */
      assert_int_equal(h_stop_logicd(f->h, SIGKILL), 0);
      killed = true;
      fprintf(stderr, "[logicd_kill9] killed logicd: %d acknowledged, %d in "
                      "flight\n",
              acked, inflight);
    }
    if (!killed && sent == K9_N && inflight == 0)
      fail_msg("all %d sends finished before the kill", K9_N);
    if (killed && inflight == 0)
      break;
    got = k9_next(s, killed ? 5000 : 20, &rseq, &id);
    if (got < 0) {
      if (killed)
        break; /* the rest never get an answer */
      continue;
    }
    i = (int)(rseq - base);
    if (i < 0 || i >= sent || st[i] != K9_INFLIGHT)
      fail_msg("a reply with seq %lld, which is not in flight",
               (long long)rseq);
    while (oldest < sent && st[oldest] != K9_INFLIGHT)
      oldest++;
    if (i != oldest) {
      if (!killed)
        fail_msg("reply to seq %lld before the reply to seq %lld (request "
                 "order)",
                 (long long)rseq, (long long)(base + oldest));
      out_of_order++;
    }
    st[i] = got == 1 ? K9_ACKED : K9_UNAVAILABLE;
    ids[i] = id;
    acked += got == 1;
    inflight--;
  }
  for (int i = 0; i < sent; i++) {
    if (st[i] == K9_INFLIGHT) {
      st[i] = K9_NOREPLY;
      noreply++;
    }
  }
  fprintf(stderr, "[logicd_kill9] after the kill: %d acknowledged, %d "
                  "UNAVAILABLE out of order, %d without any reply\n",
          acked, out_of_order, noreply);

  /* Phase 2: restart on the same data dir. The sender does not log in
   * again: the gateway re-registers its session. Once sends stop being
   * UNAVAILABLE, resend in order every message without a reply, with its
   * client_msg_id. */
  assert_int_equal(h_start_logicd(f->h), 0);
  deadline = h_mono_ms() + 30000;
  for (int i = 0; i < K9_N; i++) {
    if (st[i] == K9_ACKED)
      continue;
    k9_names(i, content, cmid, sizeof(content));
    for (;;) {
      struct mim_packet rsp;

      if (h_mono_ms() > deadline)
        fail_msg("resending message %d: still UNAVAILABLE after 30 s", i);
      while (!pacer_take(&pace))
        wsc_ctx_service(WS, 5);
      tc_c2c_try(s, "k9-receiver", content, cmid, &rsp);
      if (rsp.cmd == MIM_CMD_C2C_SEND_RSP) {
        ids[i] = rsp.msg_id;
        st[i] = K9_ACKED;
        mim_packet_finish(&rsp);
        break;
      }
      tc_expect_error(&rsp, E_UNAVAILABLE, MIM_CMD_C2C_SEND_REQ);
      mim_packet_finish(&rsp);
      wsc_ctx_service(WS, 50); /* not linked yet: back off */
    }
  }

  /* A message acknowledged before the crash, sent again: the dedup record
   * survived and names the original. */
  for (int i = K9_KILL_AFTER - 1; i >= 0; i--) {
    if (ids[i] == 0)
      continue;
    k9_names(i, content, cmid, sizeof(content));
    assert_int_equal(tc_c2c(s, "k9-receiver", content, cmid, NULL), ids[i]);
    break;
  }

  /* Phase 3: the receiver's inbox has each message once, in order, with
   * the msg_id its sender was told. */
  r = tc_login(f->h, "k9-receiver", NULL);
  assert_int_equal(r->last_inbox_seq, K9_N);
  tc_pull_all(r, 0, &items);
  assert_int_equal(items.n, K9_N);
  for (int i = 0; i < K9_N; i++) {
    k9_names(i, content, cmid, sizeof(content));
    if (strcmp(items.v[i].content, content) != 0)
      fail_msg("receiver inbox entry %d is '%s', want '%s'", i,
               items.v[i].content, content);
    assert_str(items.v[i].client_msg_id, cmid);
    assert_str(items.v[i].from, "k9-sender");
    if (items.v[i].msg_id != ids[i])
      fail_msg("receiver inbox entry %d has msg_id %llu; its sender was told "
               "%llu",
               i, (unsigned long long)items.v[i].msg_id,
               (unsigned long long)ids[i]);
  }
  tc_items_free(&items);

  /* And the sender's own inbox, once each. */
  tc_pull_all(s, 0, &items);
  assert_int_equal(items.n, K9_N);
  for (int i = 0; i < K9_N; i++)
    assert_int_equal(items.v[i].msg_id, ids[i]);
  tc_items_free(&items);

  /* No stray reply turned up later. */
  tc_barrier(s);
  if (wsc_pending(s->ws) != 0)
    fail_msg("%zu unexpected packets queued on the sender",
             wsc_pending(s->ws));

  /* Requests in flight when logicd died must be answered (UNAVAILABLE),
   * not dropped, and in request order: a seed client matches replies by
   * order alone. */
  if (noreply > 0 || out_of_order > 0)
    fail_msg("when logicd died, %d sends in flight got no answer at all and "
             "%d later ones were answered UNAVAILABLE ahead of them (want: "
             "every request answered, in request order)",
             noreply, out_of_order);

  tc_free(r);
  tc_free(s);
  PASSED(f);
}

FRESH_DEV_SETUP(gatewayd_restart, 90)
static void gatewayd_restart(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login(f->h, "gwr-a", NULL);
  struct tc *b = tc_login(f->h, "gwr-b", NULL);
  struct mim_packet push, rsp;
  uint64_t ids[10], high = 0;
  char content[32];
  int code;

  for (int i = 0; i < 5; i++) {
    snprintf(content, sizeof(content), "gw %d", i);
    ids[i] = tc_c2c(a, "gwr-b", content, NULL, NULL);
  }
  for (int i = 0; i < 5; i++) {
    snprintf(content, sizeof(content), "gw %d", i);
    tc_push(b, MIM_CMD_C2C_PUSH, &push);
    check_c2c_push(&push, "gwr-a", "gwr-b", content, ids[i], i + 1);
    high = push.inbox_seq;
    mim_packet_finish(&push);
  }
  tc_ack(b, MIM_CMD_C2C_PUSH_ACK, 0, 3);
  tc_barrier(b);

  /* Clean stop: exit 0; every client is told (Kick SHUTDOWN) and gets a
   * proper close ("going away"), not a dropped TCP connection. */
  assert_int_equal(h_stop_gatewayd(f->h, SIGTERM), 0);
  for (int k = 0; k < 2; k++) {
    struct tc *c = k == 0 ? a : b;
    struct mim_packet kick;

    assert_int_equal(wsc_wait_closed(c->ws, 5000, &code), 0);
    if (wsc_recv_cmd(c->ws, MIM_CMD_KICK, 0, &kick) != 0)
      fail_msg("%s: no Kick before the gateway closed the connection",
               c->uid);
    assert_int_equal(kick.reason, MIM_KICK_SHUTDOWN);
    mim_packet_finish(&kick);
    assert_int_equal(code, 1001);
  }
  tc_free(a);
  tc_free(b);

  assert_int_equal(h_start_gatewayd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 10000), 0);

  /* New connections, new logins. */
  a = tc_login(f->h, "gwr-a", NULL);
  assert_int_equal(a->last_inbox_seq, 5);
  for (int i = 5; i < 10; i++) {
    snprintf(content, sizeof(content), "gw %d", i);
    ids[i] = tc_c2c(a, "gwr-b", content, NULL, &rsp);
    assert_int_equal(rsp.inbox_seq, i + 1);
    mim_packet_finish(&rsp);
  }

  b = tc_login(f->h, "gwr-b", NULL);
  assert_int_equal(b->last_inbox_seq, 10);
  expect_ack_seq(b, 3, "it acked inbox_seq 3 before the gateway stopped");
  /* Resync from the last seen inbox_seq: 6..10, no gap, nothing twice. */
  tc_pull(b, true, high, 100, &rsp);
  assert_int_equal(rsp.n_items, 10 - high);
  assert_false(rsp.has_more);
  for (size_t i = 0; i < rsp.n_items; i++) {
    snprintf(content, sizeof(content), "gw %llu",
             (unsigned long long)(high + i));
    assert_int_equal(rsp.items[i].inbox_seq, high + 1 + i);
    assert_int_equal(rsp.items[i].msg_id, ids[high + i]);
    assert_str(rsp.items[i].content, content);
  }
  mim_packet_finish(&rsp);

  /* Live pushes work on the new gateway. */
  witness_check(a, b, "after the gateway restart");

  tc_free(a);
  tc_free(b);
  PASSED(f);
}

FRESH_DEV_SETUP(logicd_restart_sessions, 90)
static void logicd_restart_sessions(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login(f->h, "lrs-a", NULL);
  struct tc *b = tc_login(f->h, "lrs-b", NULL);
  struct mim_packet push, rsp;
  struct tc_items items = {0};
  uint64_t id1, id2 = 0, id3;
  int64_t deadline;
  int unavailable = 0;

  id1 = tc_c2c(a, "lrs-b", "before", "lrs-1", NULL);
  tc_push_msg(b, MIM_CMD_C2C_PUSH, id1, &push);
  tc_ack(b, MIM_CMD_C2C_PUSH_ACK, 0, push.inbox_seq);
  mim_packet_finish(&push);
  tc_barrier(b);

  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);

  /* The gateway keeps its clients, answers heartbeats itself and says
   * UNAVAILABLE (retryable) to everything else. */
  tc_c2c_try(a, "lrs-b", "during", "lrs-2", &rsp);
  tc_expect_error(&rsp, E_UNAVAILABLE, MIM_CMD_C2C_SEND_REQ);
  assert_int_equal(rsp.seq, a->seq);
  assert_true(rsp.retryable);
  mim_packet_finish(&rsp);
  tc_barrier(a);
  assert_true(wsc_is_open(a->ws));
  assert_true(wsc_is_open(b->ws));

  assert_int_equal(h_start_logicd(f->h), 0);

  /* No new login: the retried send succeeds once the gateway is back. */
  deadline = h_mono_ms() + 20000;
  while (id2 == 0) {
    if (h_mono_ms() > deadline)
      fail_msg("sends still UNAVAILABLE 20 s after logicd restarted");
    tc_c2c_try(a, "lrs-b", "during", "lrs-2", &rsp);
    if (rsp.cmd == MIM_CMD_C2C_SEND_RSP) {
      id2 = rsp.msg_id;
    } else {
      tc_expect_error(&rsp, E_UNAVAILABLE, MIM_CMD_C2C_SEND_REQ);
      unavailable++;
      wsc_ctx_service(WS, 50);
    }
    mim_packet_finish(&rsp);
  }
  assert_true(id2 > id1);

  /* The push reaches b, which did not log in again either. */
  tc_push_msg(b, MIM_CMD_C2C_PUSH, id2, &push);
  check_c2c_push(&push, "lrs-a", "lrs-b", "during", id2, 2);
  mim_packet_finish(&push);
  id3 = tc_c2c(b, "lrs-a", "back", NULL, NULL);
  tc_push_msg(a, MIM_CMD_C2C_PUSH, id3, &push);
  check_c2c_push(&push, "lrs-b", "lrs-a", "back", id3, 3);
  mim_packet_finish(&push);

  /* Both survived the restart in b's inbox. */
  tc_pull_all(b, 0, &items);
  assert_int_equal(items.n, 3);
  assert_int_equal(items.v[0].msg_id, id1);
  assert_int_equal(items.v[1].msg_id, id2);
  assert_int_equal(items.v[2].msg_id, id3);
  tc_items_free(&items);

  tc_free(a);
  tc_free(b);
  PASSED(f);
}

/* ====================================================================== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

static const struct CMUnitTest shared_tests[] = {
    T(c2c_online),        T(c2c_offline),        T(c2c_order_1000),
    T(c2g_group),         T(multi_device),       T(batch_client),
    T(burst_of_sizes),
    T(ack_cursor_relogin), T(duplicate_login),
    T(sec_unauthenticated), T(sec_forged_from),  T(sec_pull_other_inbox),
    T(sec_oversized_frame), T(sec_garbage_body), T(sec_unknown_cmd),
    T(sec_text_frame),    T(seed_client),
};

static const struct CMUnitTest fresh_tests[] = {
    T(production_auth),
    T(logicd_kill9),
    T(gatewayd_restart),
    T(logicd_restart_sessions),
};

static size_t select_tests(const struct CMUnitTest *all, size_t n,
                           const char *only, struct CMUnitTest *out) {
  size_t k = 0;

  for (size_t i = 0; i < n; i++)
    if (only == NULL || strcmp(all[i].name, only) == 0)
      out[k++] = all[i];
  return k;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  struct CMUnitTest shared[COUNT(shared_tests)], fresh[COUNT(fresh_tests)];
  size_t ns, nf;
  int failed = 0;

  if (argc > 1 && strcmp(argv[1], "--list") == 0) {
    for (size_t i = 0; i < COUNT(shared_tests); i++)
      printf("%s\n", shared_tests[i].name);
    for (size_t i = 0; i < COUNT(fresh_tests); i++)
      printf("%s\n", fresh_tests[i].name);
    return 0;
  }
  ns = select_tests(shared_tests, COUNT(shared_tests), only, shared);
  nf = select_tests(fresh_tests, COUNT(fresh_tests), only, fresh);
  if (ns + nf == 0) {
    fprintf(stderr, "no test named '%s' (--list shows them)\n", only);
    return 2;
  }
  if (!h_daemons_built()) {
    printf("SKIP: daemons not built (LOGICD='%s' GATEWAYD='%s')\n",
           h_logicd_path() ? h_logicd_path() : "",
           h_gatewayd_path() ? h_gatewayd_path() : "");
    return 77;
  }
  signal(SIGPIPE, SIG_IGN);
  if (wsc_ctx_create(&WS) != 0) {
    fprintf(stderr, "cannot create the websocket client context\n");
    return 1;
  }
  if (ns > 0)
    failed += _cmocka_run_group_tests("integration-shared", shared, ns,
                                      group_setup_shared,
                                      group_teardown_shared);
  if (nf > 0)
    failed += _cmocka_run_group_tests("integration-fresh", fresh, nf, NULL,
                                      NULL);
  wsc_ctx_destroy(WS);
  return failed == 0 ? 0 : 1;
}
