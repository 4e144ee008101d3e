/* Typing indicators and presence end to end (docs/protocol.md §20, §21):
 * the real logicd and gatewayd on loopback ports, real websocket clients.
 *
 *   test-presence [NAME]   runs every test, or only the test called NAME
 *
 * presence_typing          typing reaches the peer's CAP_TYPING devices
 *                          only: not the typist's, not a seed client, not
 *                          a stranger, not from a non-member
 * presence_typing_rate     over typing_burst, indicators are dropped
 * presence_query_push      a query hides strangers; a subscriber hears the
 *                          peer's last device leave and the first return
 * presence_last_seen       last_seen survives a logicd restart
 * presence_subscribe_cap   past presence_subscribe_max, uids are answered
 *                          but not subscribed
 * presence_reply_order     a presence reply pops the gateway's pending
 *                          FIFO: a gateway-local answer queued behind it
 *                          still arrives
 *
 * Each test gets its own daemon pair. Exit status 77 (skipped) when the
 * daemons are not built.
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

#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
};

#define PASSED(f) ((f)->passed = true)

static int setup_with(void **state, const char *const *logicd_args) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;
  if (f == NULL)
    return -1;
  f->name = "presence";
  h_opts_init(&o);
  o.logicd_args = logicd_args;
  if (h_begin(&f->h, WS, &o, f->name, 120) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int setup(void **state) { return setup_with(state, NULL); }

static int setup_rate(void **state) {
  static const char *const args[] = {"--typing-burst", "3",
                                     "--typing-rate-per-s", "1", NULL};
  return setup_with(state, args);
}

static int setup_cap(void **state) {
  static const char *const args[] = {"--presence-subscribe-max", "1", NULL};
  return setup_with(state, args);
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = 0;
  if (f != NULL) {
    r = h_finish(f->h, f->name, f->passed,
                 H_CHECK_GATEWAYD | H_CHECK_LOGICD | H_STOP_GATEWAYD |
                     H_STOP_LOGICD);
    free(f);
  }
  *state = NULL;
  return r;
}

/* ---- helpers ---- */

/* Sends a TypingRequest (no reply comes) and waits until logicd has
 * handled it. */
static void typing(struct tc *c, const char *peer, const char *group) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_TYPING_REQ;
  req.peer = peer;
  req.group = group;
  req.ts = tc_now_ms();
  if (wsc_send_packet(c->ws, &req) != 0)
    fail_msg("%s: sending typing failed", c->uid);
}

/* Every client's earlier packets handled and their pushes arrived. */
static void settle(struct tc *const *cs, size_t n) {
  for (size_t i = 0; i < n; i++)
    tc_barrier(cs[i]);
  for (size_t i = 0; i < n; i++)
    tc_barrier(cs[i]);
}

static void presence_call(struct tc *c, const char *const *uids, size_t n,
                          bool subscribe, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_PRESENCE_REQ;
  req.members = uids;
  req.n_members = n;
  req.subscribe = subscribe;
  tc_call(c, &req, rsp);
  tc_expect_cmd(rsp, MIM_CMD_PRESENCE_RSP);
}

static const struct mim_presence_item *item_of(const struct mim_packet *r,
                                               const char *uid) {
  for (size_t i = 0; i < r->n_presences; i++)
    if (strcmp(r->presences[i].uid, uid) == 0)
      return &r->presences[i];
  return NULL;
}

/* ---- tests ---- */

static void presence_typing(void **state) {
  struct fixture *f = *state;
  const uint32_t T = MIM_CAP_TYPING;
  struct tc *a1 = tc_login_caps(f->h, "alice", "phone", T);
  struct tc *a2 = tc_login_caps(f->h, "alice", "laptop", T);
  struct tc *b1 = tc_login_caps(f->h, "bob", "phone", T);
  struct tc *b2 = tc_login_caps(f->h, "bob", "seed", 0);
  struct tc *c = tc_login_caps(f->h, "carol", "phone", T);
  struct tc *d = tc_login_caps(f->h, "dave", "phone", T);
  struct tc *all[] = {a1, a2, b1, b2, c, d};
  /* no conversation yet: a stranger cannot be pinged */
  typing(a1, "bob", NULL);
  settle(all, 6);
  tc_assert_no_cmd(b1, MIM_CMD_TYPING);
  tc_c2c(b1, "alice", "hi", NULL, NULL);
  typing(a1, "bob", NULL);
  settle(all, 6);
  struct mim_packet p;
  tc_push(b1, MIM_CMD_TYPING, &p);
  assert_string_equal(p.from, "alice");
  assert_string_equal(p.group, "");
  mim_packet_finish(&p);
  tc_assert_no_cmd(b2, MIM_CMD_TYPING); /* seed client: nothing new */
  tc_assert_no_cmd(a1, MIM_CMD_TYPING); /* never to the typist */
  tc_assert_no_cmd(a2, MIM_CMD_TYPING);
  tc_assert_no_cmd(c, MIM_CMD_TYPING);
  tc_assert_no_cmd(d, MIM_CMD_TYPING);
  tc_assert_no_cmd(a1, MIM_CMD_ERROR); /* never answered */
  /* carol never talked with alice */
  typing(c, "alice", NULL);
  /* a group: a non-member's typing goes nowhere, a member's to members */
  const char *m[] = {"bob"};
  struct mim_packet rsp;
  tc_group_call(a1, MIM_CMD_GROUP_CREATE_REQ, "pt-team", m, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_finish(&rsp);
  typing(d, NULL, "pt-team");
  settle(all, 6);
  tc_assert_no_cmd(b1, MIM_CMD_TYPING);
  tc_assert_no_cmd(a1, MIM_CMD_TYPING);
  tc_assert_no_cmd(a2, MIM_CMD_TYPING);
  typing(a1, NULL, "pt-team");
  settle(all, 6);
  tc_push(b1, MIM_CMD_TYPING, &p);
  assert_string_equal(p.from, "alice");
  assert_string_equal(p.group, "pt-team");
  mim_packet_finish(&p);
  tc_assert_no_cmd(a2, MIM_CMD_TYPING);
  tc_assert_no_cmd(b2, MIM_CMD_TYPING);
  /* malformed: peer and group both */
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_TYPING_REQ;
  req.peer = "bob";
  req.group = "pt-team";
  tc_call(a1, &req, &rsp);
  tc_expect_error(&rsp, E_MALFORMED, MIM_CMD_TYPING_REQ);
  mim_packet_finish(&rsp);
  PASSED(f);
}

static void presence_typing_rate(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_TYPING);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_TYPING);
  struct tc *all[] = {a, b};
  tc_c2c(b, "alice", "hi", NULL, NULL);
  for (int i = 0; i < 12; i++)
    typing(a, "bob", NULL);
  settle(all, 2);
  struct mim_packet p;
  /* the burst of 3, and at most one more if a second went by */
  for (int i = 0; i < 3; i++) {
    tc_push(b, MIM_CMD_TYPING, &p);
    mim_packet_finish(&p);
  }
  size_t extra = 0;
  while (extra < 10 && wsc_recv_cmd(b->ws, MIM_CMD_TYPING, 200, &p) == 0) {
    mim_packet_finish(&p);
    extra++;
  }
  assert_true(extra <= 1);
  tc_assert_no_cmd(a, MIM_CMD_ERROR); /* dropped silently */
  PASSED(f);
}

static void presence_query_push(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_PRESENCE);
  struct tc *b1 = tc_login_caps(f->h, "bob", "phone", 0);
  struct tc *b2 = tc_login_caps(f->h, "bob", "laptop", 0);
  struct tc *c = tc_login_caps(f->h, "carol", "phone", MIM_CAP_PRESENCE);
  tc_c2c(b1, "alice", "hi", NULL, NULL);
  const char *ask[] = {"bob", "carol", "nobody", "alice"};
  struct mim_packet r;
  presence_call(a, ask, 4, true, &r);
  assert_int_equal(r.n_presences, 2);
  assert_true(item_of(&r, "bob")->online);
  assert_true(item_of(&r, "alice")->online);
  assert_null(item_of(&r, "carol"));  /* a stranger and an unknown uid */
  assert_null(item_of(&r, "nobody")); /* look the same: absent */
  mim_packet_finish(&r);
  /* carol, a stranger, learns nothing of alice */
  const char *ask_c[] = {"alice"};
  presence_call(c, ask_c, 1, true, &r);
  assert_int_equal(r.n_presences, 0);
  mim_packet_finish(&r);
  int64_t before = tc_now_ms();
  tc_free(b1); /* bob is still on his laptop */
  tc_barrier(a);
  tc_barrier(a);
  tc_assert_no_cmd(a, MIM_CMD_PRESENCE);
  tc_free(b2);
  struct mim_packet p;
  tc_push(a, MIM_CMD_PRESENCE, &p);
  assert_string_equal(p.uid, "bob");
  assert_false(p.online);
  assert_true(p.last_seen >= before);
  int64_t seen = p.last_seen;
  mim_packet_finish(&p);
  presence_call(a, ask, 1, false, &r);
  assert_int_equal(r.n_presences, 1);
  assert_false(r.presences[0].online);
  assert_int_equal(r.presences[0].last_seen, seen);
  mim_packet_finish(&r);
  b1 = tc_login_caps(f->h, "bob", "phone", 0);
  tc_push(a, MIM_CMD_PRESENCE, &p);
  assert_string_equal(p.uid, "bob");
  assert_true(p.online);
  mim_packet_finish(&p);
  /* alice's own comings and goings reach no stranger */
  tc_barrier(c);
  tc_assert_no_cmd(c, MIM_CMD_PRESENCE);
  PASSED(f);
}

static void presence_last_seen(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_PRESENCE);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", 0);
  tc_c2c(b, "alice", "hi", NULL, NULL);
  const char *ask[] = {"bob"};
  struct mim_packet r;
  presence_call(a, ask, 1, true, &r);
  mim_packet_finish(&r);
  tc_free(b);
  struct mim_packet p;
  tc_push(a, MIM_CMD_PRESENCE, &p);
  int64_t seen = p.last_seen;
  assert_true(seen > 0);
  mim_packet_finish(&p);
  tc_barrier(a); /* the next batch carried it; a clean stop commits it */
  tc_free(a);
  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);
  assert_int_equal(h_start_logicd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 10000), 0);
  a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_PRESENCE);
  presence_call(a, ask, 1, false, &r);
  assert_int_equal(r.n_presences, 1);
  assert_false(r.presences[0].online);
  assert_int_equal(r.presences[0].last_seen, seen); /* not "now" */
  mim_packet_finish(&r);
  PASSED(f);
}

static void presence_subscribe_cap(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_PRESENCE);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", 0);
  struct tc *c = tc_login_caps(f->h, "carol", "phone", 0);
  tc_c2c(b, "alice", "hi", NULL, NULL);
  tc_c2c(c, "alice", "hi", NULL, NULL);
  const char *ask[] = {"bob", "carol"};
  struct mim_packet r;
  presence_call(a, ask, 2, true, &r);
  assert_int_equal(r.n_presences, 2); /* both answered */
  mim_packet_finish(&r);
  tc_free(b);
  tc_free(c);
  struct mim_packet p;
  tc_push(a, MIM_CMD_PRESENCE, &p);
  assert_string_equal(p.uid, "bob"); /* the first, within the cap */
  mim_packet_finish(&p);
  tc_barrier(a);
  tc_barrier(a);
  tc_assert_no_cmd(a, MIM_CMD_PRESENCE);
  PASSED(f);
}

static void presence_reply_order(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_PRESENCE);
  const char *ask[] = {"alice"};
  struct mim_packet r;
  /* one presence reply, then a command the gateway answers itself: the
   * answer waits for the reply ahead of it, then must follow it */
  presence_call(a, ask, 1, false, &r);
  mim_packet_finish(&r);
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_PRESENCE_REQ;
  req.members = ask;
  req.n_members = 1;
  req.seq = 4001;
  assert_int_equal(wsc_send_packet(a->ws, &req), 0);
  uint8_t frame[MIM_HEADER_SIZE + 1];
  size_t n = tc_frame(frame, 38, "", 0); /* unassigned: refused by gw */
  assert_int_equal(wsc_send_raw(a->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv_cmd(a->ws, MIM_CMD_PRESENCE_RSP, TC_REPLY_MS, &r),
                   0);
  assert_int_equal(r.seq, 4001);
  mim_packet_finish(&r);
  /* without the fix it waited forever behind replies never matched */
  assert_int_equal(wsc_recv_cmd(a->ws, MIM_CMD_ERROR, 3000, &r), 0);
  assert_int_equal(r.status, E_UNKNOWN_CMD);
  mim_packet_finish(&r);
  PASSED(f);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  const struct CMUnitTest all_tests[] = {
      cmocka_unit_test_setup_teardown(presence_typing, setup, teardown),
      cmocka_unit_test_setup_teardown(presence_typing_rate, setup_rate,
                                      teardown),
      cmocka_unit_test_setup_teardown(presence_query_push, setup, teardown),
      cmocka_unit_test_setup_teardown(presence_last_seen, setup, teardown),
      cmocka_unit_test_setup_teardown(presence_subscribe_cap, setup_cap,
                                      teardown),
      cmocka_unit_test_setup_teardown(presence_reply_order, setup, teardown),
  };
  return h_main(argc, argv, "integration-presence", all_tests,
                COUNT(all_tests), &WS, 0);
}
