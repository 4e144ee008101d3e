/* Issue 13, the logic's side of docs/protocol.md, against the real
 * daemons: group notices on every device and offline (§5.1, §10), the
 * list of one's own groups (§10), leaving twice (§10), the ack rules (§8),
 * which message types a client may send (§5), Error.ts and the ts of
 * group list replies (§5, §13).
 *
 *   test-p13logic [NAME]   runs every test, or only the test called NAME
 *
 * Each test starts its own daemon pair (development auth). Exit status 77
 * (skipped) when the daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "tclient.h"

static struct wsc_ctx *WS;

static struct harness *start(void) {
  struct h_opts o;
  h_opts_init(&o);
  /* cursors reach the store at once: relogins see them */
  o.logicd_args = (const char *const[]){"--cursor-flush-ms", "0", NULL};
  struct harness *h = NULL;
  assert_int_equal(h_create(&h, WS, &o), 0);
  assert_int_equal(h_start(h), 0);
  return h;
}

/* The next C2G push of `c`, asserted to be the SYSTEM notice of `group`
 * whose content holds `action` and every string of `has` (NULL-ended). */
static uint64_t expect_notice(struct tc *c, const char *group,
                              const char *action, const char *const *has) {
  struct mim_packet p;
  tc_push(c, MIM_CMD_C2G_PUSH, &p);
  char d[512];
  if (p.type != MIM_MSG_SYSTEM || strcmp(p.group, group) != 0)
    fail_msg("%s/%s: want the notice of %s, got %s", c->uid, c->device,
             group, tc_describe(&p, d, sizeof d));
  assert_string_equal(p.from, ""); /* the server */
  char want[64];
  snprintf(want, sizeof want, "\"action\":\"%s\"", action);
  if (strstr(p.content, want) == NULL)
    fail_msg("%s: notice '%s' lacks %s", c->uid, p.content, want);
  for (; has != NULL && *has != NULL; has++)
    if (strstr(p.content, *has) == NULL)
      fail_msg("%s: notice '%s' lacks %s", c->uid, p.content, *has);
  assert_true(p.inbox_seq > 0);
  uint64_t seq = p.inbox_seq;
  mim_packet_finish(&p);
  return seq;
}

/* Pulls everything of `c` after `after` and returns how many SYSTEM
 * notices of `group` with `action` it holds. */
static int pulled_notices(struct tc *c, uint64_t after, const char *group,
                          const char *action) {
  struct tc_items it = {0};
  tc_pull_all(c, after, &it);
  char want[64];
  snprintf(want, sizeof want, "\"action\":\"%s\"", action);
  int n = 0;
  for (size_t i = 0; i < it.n; i++)
    if (it.v[i].type == MIM_MSG_SYSTEM &&
        strcmp(it.v[i].group, group) == 0 &&
        strstr(it.v[i].content, want) != NULL)
      n++;
  tc_items_free(&it);
  return n;
}

/* Create, add and leave reach every device of every member affected,
 * online as a push and offline in the inbox; a large add stores a bounded
 * notice. */
static void group_notices_everywhere(void **state) {
  (void)state;
  struct harness *h = start();
  struct tc *phone = tc_login(h, "alice", "phone");
  struct tc *laptop = tc_login(h, "alice", "laptop");
  struct tc *bob = tc_login(h, "bob", "phone");
  struct mim_packet rsp;

  const char *const bob_only[] = {"bob"};
  tc_group_call(phone, MIM_CMD_GROUP_CREATE_REQ, "n-team", bob_only, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_finish(&rsp);
  const char *const created[] = {"\"actor\":\"alice\"", "\"bob\"",
                                 "\"group\":\"n-team\"", "\"count\":2", NULL};
  /* the requesting device too: the push tells it the notice's inbox_seq */
  expect_notice(phone, "n-team", "create", created);
  expect_notice(laptop, "n-team", "create", created);
  expect_notice(bob, "n-team", "create", created);

  /* carol is offline when added (by alice: she owns the group; plain
   * members do not add since group roles) */
  const char *const carol[] = {"carol"};
  tc_group_call(laptop, MIM_CMD_GROUP_ADD_REQ, "n-team", carol, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_ADD_RSP);
  mim_packet_finish(&rsp);
  const char *const added[] = {"\"actor\":\"alice\"", "\"carol\"", NULL};
  expect_notice(phone, "n-team", "add", added);
  expect_notice(laptop, "n-team", "add", added);
  expect_notice(bob, "n-team", "add", added);

  /* bob leaves: he learns it too, on every device */
  tc_group_call(bob, MIM_CMD_GROUP_REMOVE_REQ, "n-team", bob_only, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_REMOVE_RSP);
  mim_packet_finish(&rsp);
  const char *const left[] = {"\"actor\":\"bob\"", "\"bob\"", NULL};
  expect_notice(bob, "n-team", "leave", left);
  expect_notice(phone, "n-team", "leave", left);
  expect_notice(laptop, "n-team", "leave", left);

  /* carol, offline all along, finds her add and bob's leave in her inbox */
  struct tc *carol_c = tc_login(h, "carol", "phone");
  assert_int_equal(pulled_notices(carol_c, 0, "n-team", "add"), 1);
  assert_int_equal(pulled_notices(carol_c, 0, "n-team", "leave"), 1);
  assert_int_equal(pulled_notices(carol_c, 0, "n-team", "create"), 0);
  /* so does a device of alice that was never online */
  struct tc *tablet = tc_login(h, "alice", "tablet");
  assert_int_equal(pulled_notices(tablet, 0, "n-team", "create"), 1);
  assert_int_equal(pulled_notices(tablet, 0, "n-team", "leave"), 1);

  /* a large add: one notice per inbox, naming at most 16 uids */
  const char *many[40];
  char names[40][16];
  for (int i = 0; i < 40; i++) {
    snprintf(names[i], sizeof names[i], "m%02d", i);
    many[i] = names[i];
  }
  tc_group_call(phone, MIM_CMD_GROUP_ADD_REQ, "n-team", many, 40, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_ADD_RSP);
  assert_int_equal(rsp.n_members, 40);
  mim_packet_finish(&rsp);
  struct mim_packet p;
  tc_push(laptop, MIM_CMD_C2G_PUSH, &p);
  assert_int_equal(p.type, MIM_MSG_SYSTEM);
  assert_non_null(strstr(p.content, "\"count\":40"));
  assert_non_null(strstr(p.content, "\"m15\""));
  assert_null(strstr(p.content, "\"m16\""));
  assert_true(strlen(p.content) < 1024);
  mim_packet_finish(&p);
  struct tc *m39 = tc_login(h, "m39", NULL);
  assert_int_equal(pulled_notices(m39, 0, "n-team", "add"), 1);
  tc_free_all();
  h_destroy(h);
}

/* GROUP_LIST without a group: the caller's groups, in pages. */
static void list_my_groups(void **state) {
  (void)state;
  struct harness *h = start();
  struct tc *a = tc_login(h, "lg-alice", NULL);
  struct tc *b = tc_login(h, "lg-bob", NULL);
  struct mim_packet rsp;
  const char *mine[] = {"lg-1", "lg-2", "lg-3"};
  for (int i = 0; i < 3; i++) {
    tc_group_call(a, MIM_CMD_GROUP_CREATE_REQ, mine[i], NULL, 0, &rsp);
    tc_expect_cmd(&rsp, MIM_CMD_GROUP_CREATE_RSP);
    mim_packet_finish(&rsp);
  }
  tc_group_call(b, MIM_CMD_GROUP_CREATE_REQ, "lg-bobs", NULL, 0, &rsp);
  mim_packet_finish(&rsp);
  const char *const alice[] = {"lg-alice"};
  tc_group_call(b, MIM_CMD_GROUP_CREATE_REQ, "lg-shared", alice, 1, &rsp);
  mim_packet_finish(&rsp);

  /* page 1 of 2 */
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_LIST_REQ;
  req.limit = 3;
  int64_t before = tc_now_ms();
  tc_call(a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_LIST_RSP);
  assert_int_equal(rsp.n_groups, 3);
  assert_true(rsp.has_more);
  assert_true(rsp.ts >= before - 1000 && rsp.ts <= tc_now_ms() + 1000);
  assert_int_equal(rsp.n_members, 0);
  char got[4][MIM_ID_MAX + 1];
  for (size_t i = 0; i < 3; i++)
    snprintf(got[i], sizeof got[i], "%s", rsp.groups[i]);
  mim_packet_finish(&rsp);
  /* page 2 after the last one received */
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_LIST_REQ;
  req.limit = 3;
  req.after_group = got[2];
  tc_call(a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_LIST_RSP);
  assert_int_equal(rsp.n_groups, 1);
  assert_false(rsp.has_more);
  snprintf(got[3], sizeof got[3], "%s", rsp.groups[0]);
  mim_packet_finish(&rsp);
  /* every group of alice's once, none of bob's own */
  const char *want[] = {"lg-1", "lg-2", "lg-3", "lg-shared"};
  for (int w = 0; w < 4; w++) {
    int n = 0;
    for (int g = 0; g < 4; g++)
      n += strcmp(got[g], want[w]) == 0;
    if (n != 1)
      fail_msg("%s listed %d times", want[w], n);
  }
  /* after leaving, a group is no longer listed */
  tc_group_call(a, MIM_CMD_GROUP_REMOVE_REQ, "lg-shared", alice, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_REMOVE_RSP);
  mim_packet_finish(&rsp);
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_LIST_REQ; /* default limit */
  tc_call(a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_LIST_RSP);
  assert_int_equal(rsp.n_groups, 3);
  assert_false(rsp.has_more);
  for (size_t i = 0; i < rsp.n_groups; i++)
    assert_string_not_equal(rsp.groups[i], "lg-shared");
  mim_packet_finish(&rsp);
  /* a list of one group's members still works, and has ts */
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_LIST_REQ;
  req.group = "lg-1";
  tc_call(a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_LIST_RSP);
  assert_int_equal(rsp.n_members, 1);
  assert_true(rsp.ts > 0);
  mim_packet_finish(&rsp);
  tc_free_all();
  h_destroy(h);
}

/* Leaving is idempotent: a second leave, or a leave of a group one was
 * never in (or that does not exist), succeeds with nothing changed. */
static void leave_twice(void **state) {
  (void)state;
  struct harness *h = start();
  struct tc *a = tc_login(h, "lv-alice", NULL);
  struct tc *b = tc_login(h, "lv-bob", NULL);
  struct mim_packet rsp;
  const char *const bob[] = {"lv-bob"};
  tc_group_call(a, MIM_CMD_GROUP_CREATE_REQ, "lv-g", bob, 1, &rsp);
  mim_packet_finish(&rsp);
  tc_group_call(b, MIM_CMD_GROUP_REMOVE_REQ, "lv-g", bob, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_REMOVE_RSP);
  assert_int_equal(rsp.n_members, 1);
  mim_packet_finish(&rsp);
  tc_group_call(b, MIM_CMD_GROUP_REMOVE_REQ, "lv-g", bob, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_REMOVE_RSP);
  assert_int_equal(rsp.n_members, 0);
  assert_string_equal(rsp.group, "lv-g");
  mim_packet_finish(&rsp);
  tc_group_call(b, MIM_CMD_GROUP_REMOVE_REQ, "lv-nosuch", bob, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_REMOVE_RSP);
  assert_int_equal(rsp.n_members, 0);
  mim_packet_finish(&rsp);
  /* the second leave stored no second notice */
  tc_barrier(b);
  assert_int_equal(pulled_notices(b, 0, "lv-g", "leave"), 1);
  /* a non-member removing someone else still learns nothing */
  const char *const alice[] = {"lv-alice"};
  tc_group_call(b, MIM_CMD_GROUP_REMOVE_REQ, "lv-g", alice, 1, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_GROUP_REMOVE_REQ);
  mim_packet_finish(&rsp);
  tc_free_all();
  h_destroy(h);
}

static struct tc *relogin(struct harness *h, struct tc **c, const char *uid,
                          const char *device) {
  tc_barrier(*c);
  tc_free(*c);
  usleep(200 * 1000); /* the closed connection's cursor is written */
  *c = tc_login(h, uid, device);
  return *c;
}

/* §8: an ack of inbox_seq N means "this device has everything up to N",
 * clamped to the inbox's end; a seed ack (msg_id) moves the cursor only
 * through pushes acknowledged without a gap. */
static void ack_rules(void **state) {
  (void)state;
  struct harness *h = start();
  struct tc *alice = tc_login(h, "ak-alice", NULL);
  struct tc *first = tc_login(h, "ak-bob", "phone");
  tc_c2c(alice, "ak-bob", "one", NULL, NULL);
  tc_c2c(alice, "ak-bob", "two", NULL, NULL);
  struct mim_packet p;
  tc_push(first, MIM_CMD_C2C_PUSH, &p);
  mim_packet_finish(&p);
  tc_push(first, MIM_CMD_C2C_PUSH, &p);
  mim_packet_finish(&p);
  /* never acked: the same device logs in again (the first is kicked) */
  struct tc *second = tc_login(h, "ak-bob", "phone");
  assert_int_equal(second->last_inbox_seq, 2);
  assert_int_equal(second->ack_seq, 0);
  uint64_t id3 = tc_c2c(alice, "ak-bob", "three", NULL, NULL);
  tc_push_msg(second, MIM_CMD_C2C_PUSH, id3, &p);
  assert_int_equal(p.inbox_seq, 3);
  mim_packet_finish(&p);
  /* a seed-style ack of push 3 alone: 1 and 2 were not acknowledged */
  tc_ack(second, MIM_CMD_C2C_PUSH_ACK, id3, 0);
  relogin(h, &second, "ak-bob", "phone");
  assert_int_equal(second->ack_seq, 0);
  /* an ack of inbox_seq 3 says "I have 1..3" */
  tc_ack(second, MIM_CMD_C2C_PUSH_ACK, 0, 3);
  relogin(h, &second, "ak-bob", "phone");
  assert_int_equal(second->ack_seq, 3);
  /* an ack past the inbox's end is clamped to it, so later messages are
   * not skipped */
  tc_ack(second, MIM_CMD_C2C_PUSH_ACK, 0, 1000);
  relogin(h, &second, "ak-bob", "phone");
  assert_int_equal(second->ack_seq, 3);
  tc_free(second);
  tc_c2c(alice, "ak-bob", "four", NULL, NULL);
  second = tc_login(h, "ak-bob", "phone");
  assert_int_equal(second->last_inbox_seq, 4);
  assert_int_equal(second->ack_seq, 3);
  struct tc_items it = {0};
  tc_pull_all(second, second->ack_seq, &it);
  assert_int_equal(it.n, 1);
  assert_string_equal(it.v[0].content, "four");
  tc_items_free(&it);
  tc_free_all();
  h_destroy(h);
}

static void send_typed(struct tc *c, uint32_t cmd, uint32_t type,
                       struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = cmd;
  if (cmd == MIM_CMD_C2C_SEND_REQ)
    req.to = "ty-bob";
  else
    req.group = "ty-g";
  req.content = "typed";
  req.type = type;
  tc_call(c, &req, rsp);
}

/* §5: a client sends types 0 (TEXT) and 2 (CUSTOM) only. */
static void client_message_types(void **state) {
  (void)state;
  struct harness *h = start();
  struct tc *a = tc_login(h, "ty-alice", NULL);
  struct mim_packet rsp;
  tc_group_call(a, MIM_CMD_GROUP_CREATE_REQ, "ty-g", NULL, 0, &rsp);
  mim_packet_finish(&rsp);
  const uint32_t cmds[] = {MIM_CMD_C2C_SEND_REQ, MIM_CMD_C2G_SEND_REQ};
  const uint32_t refused[] = {1, 3, 4, 7, 1000};
  for (int c = 0; c < 2; c++) {
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
      send_typed(a, cmds[c], refused[i], &rsp);
      tc_expect_error(&rsp, E_FORBIDDEN, cmds[c]);
      mim_packet_finish(&rsp);
    }
    send_typed(a, cmds[c], MIM_MSG_TEXT, &rsp);
    tc_expect_cmd(&rsp, mim_cmd_reply(cmds[c]));
    mim_packet_finish(&rsp);
    send_typed(a, cmds[c], MIM_MSG_CUSTOM, &rsp);
    tc_expect_cmd(&rsp, mim_cmd_reply(cmds[c]));
    mim_packet_finish(&rsp);
  }
  tc_free_all();
  h_destroy(h);
}

static void expect_ts(const struct mim_packet *rsp, int64_t before) {
  char d[512];
  if (rsp->cmd != MIM_CMD_ERROR || rsp->ts < before - 1000 ||
      rsp->ts > tc_now_ms() + 1000)
    fail_msg("want an Error with the server's time, got %s (ts %lld)",
             tc_describe(rsp, d, sizeof d), (long long)rsp->ts);
}

/* §5, §13: every Error logicd makes carries ts. */
static void errors_carry_ts(void **state) {
  (void)state;
  struct harness *h = start();
  struct tc *a = tc_login(h, "ts-alice", NULL);
  struct tc *b = tc_login(h, "ts-bob", NULL);
  struct mim_packet rsp;
  int64_t before = tc_now_ms();
  tc_group_call(a, MIM_CMD_GROUP_CREATE_REQ, "ts-g", NULL, 0, &rsp);
  mim_packet_finish(&rsp);
  /* 1008 NOT_MEMBER (decided by the store's commit) */
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_C2G_SEND_REQ;
  req.group = "ts-g";
  req.content = "let me in";
  tc_call(b, &req, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_C2G_SEND_REQ);
  expect_ts(&rsp, before);
  mim_packet_finish(&rsp);
  /* 1008 from the membership check before any write */
  tc_group_call(b, MIM_CMD_GROUP_LIST_REQ, "ts-g", NULL, 0, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_GROUP_LIST_REQ);
  expect_ts(&rsp, before);
  mim_packet_finish(&rsp);
  /* 1011 DEDUP_CONFLICT */
  tc_c2c(a, "ts-bob", "first", "ts-cmid", NULL);
  tc_c2c_try(a, "ts-bob", "other", "ts-cmid", &rsp);
  tc_expect_error(&rsp, 1011, MIM_CMD_C2C_SEND_REQ);
  expect_ts(&rsp, before);
  mim_packet_finish(&rsp);
  /* 1012 FORBIDDEN, 1018 TOO_LARGE, 1001 MALFORMED */
  send_typed(a, MIM_CMD_C2C_SEND_REQ, 7, &rsp);
  expect_ts(&rsp, before);
  mim_packet_finish(&rsp);
  mim_packet_init(&req);
  req.cmd = MIM_CMD_C2C_SEND_REQ;
  req.to = "bad id";
  tc_call(a, &req, &rsp);
  tc_expect_error(&rsp, E_MALFORMED, MIM_CMD_C2C_SEND_REQ);
  expect_ts(&rsp, before);
  mim_packet_finish(&rsp);
  tc_free_all();
  h_destroy(h);
}

/* ---- main ---- */

static const struct CMUnitTest all_tests[] = {
    cmocka_unit_test(group_notices_everywhere),
    cmocka_unit_test(list_my_groups),
    cmocka_unit_test(leave_twice),
    cmocka_unit_test(ack_rules),
    cmocka_unit_test(client_message_types),
    cmocka_unit_test(errors_carry_ts),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "p13logic", all_tests, COUNT(all_tests), &WS,
                170);
}
