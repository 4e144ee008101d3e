/* Group roles end to end (docs/protocol.md §17): the real logicd and
 * gatewayd on loopback ports, real websocket clients.
 *
 *   test-roles [NAME]   runs every test, or only the test called NAME
 *
 * roles_admins         the creator owns; the owner promotes; an admin adds
 *                      and removes members, a plain member cannot; the
 *                      owner cannot leave; transfer; notices on every
 *                      device of every member
 * roles_mute           a muted member and a muted group get MUTED (1040),
 *                      admins still speak
 * roles_info_dissolve  name and metadata set by an admin and read by the
 *                      members, not by strangers; dissolve by the owner
 *                      reaches everyone and the group is gone
 * roles_restart        roles survive a logicd restart
 *
 * Each test gets its own daemon pair. Exit status 77 (skipped) when the
 * daemons are not built. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mim/codec.h>
#include <mim/common.h>
#include <mim/store.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

enum { E_MUTED = 1040, E_NO_SUCH_GROUP = 1009 };

static struct wsc_ctx *WS;

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
};

static int setup_named(void **state, const char *name) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;
  if (f == NULL)
    return -1;
  f->name = name;
  h_opts_init(&o);
  h_watchdog(60, name);
  if (h_create(&f->h, WS, &o) != 0 || h_start(f->h) != 0) {
    if (f->h != NULL)
      h_destroy(f->h);
    free(f);
    return -1;
  }
  h_watchdog(120, name);
  *state = f;
  return 0;
}

static int setup(void **state) { return setup_named(state, "roles"); }

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = 0;
  h_watchdog(60, "teardown");
  tc_free_all();
  if (f != NULL) {
    if (!f->passed)
      h_dump_logs(f->h);
    if (f->passed && h_stop_gatewayd(f->h, SIGTERM) != 0)
      r = -1;
    if (f->passed && h_stop_logicd(f->h, SIGTERM) != 0)
      r = -1;
    h_destroy(f->h);
    free(f);
  }
  *state = NULL;
  h_watchdog(0, NULL);
  return r;
}

/* ---- helpers ---- */

static void group_req(struct tc *c, uint32_t cmd, const char *group,
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

static void group_ok(struct tc *c, uint32_t cmd, const char *group,
                     const char *const *members, size_t n) {
  struct mim_packet rsp;
  group_req(c, cmd, group, members, n, &rsp);
  tc_expect_cmd(&rsp, (uint32_t)mim_cmd_reply(cmd));
  mim_packet_finish(&rsp);
}

static void group_err(struct tc *c, uint32_t cmd, const char *group,
                      const char *const *members, size_t n, int32_t code) {
  struct mim_packet rsp;
  group_req(c, cmd, group, members, n, &rsp);
  tc_expect_error(&rsp, code, cmd);
  mim_packet_finish(&rsp);
}

/* GROUP_MANAGE: 0 on success, else the Error code. */
static int32_t manage(struct tc *c, const char *group, uint32_t action,
                      const char *target, int64_t until, const char *name,
                      const char *meta) {
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_MANAGE_REQ;
  req.group = group;
  req.type = action;
  req.to = target;
  req.until = until;
  req.content = name;
  req.text = meta;
  tc_call(c, &req, &rsp);
  int32_t code = 0;
  if (rsp.cmd == MIM_CMD_ERROR) {
    code = rsp.status;
  } else {
    tc_expect_cmd(&rsp, MIM_CMD_GROUP_MANAGE_RSP);
    assert_string_equal(rsp.group, group);
  }
  mim_packet_finish(&rsp);
  return code;
}

/* GROUP_INFO into `rsp` (the caller finishes it). */
static void info(struct tc *c, const char *group, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_INFO_REQ;
  req.group = group;
  tc_call(c, &req, rsp);
}

/* Waits for the notice of `group` with `action` and `has` (or NULL),
 * passing over at most 8 notices of other actions before it. */
static void expect_notice(struct tc *c, const char *group, const char *action,
                          const char *has) {
  struct mim_packet p;
  char want[64], d[512];
  snprintf(want, sizeof want, "\"action\":\"%s\"", action);
  for (int skip = 0;; skip++) {
    tc_push(c, MIM_CMD_C2G_PUSH, &p);
    if (skip >= 8 || p.type != MIM_MSG_SYSTEM ||
        strstr(p.content, want) != NULL)
      break;
    tc_ack(c, MIM_CMD_C2G_PUSH_ACK, 0, p.inbox_seq);
    mim_packet_finish(&p);
  }
  if (p.type != MIM_MSG_SYSTEM || strcmp(p.group, group) != 0)
    fail_msg("%s/%s: want the notice of %s, got %s", c->uid, c->device, group,
             tc_describe(&p, d, sizeof d));
  if (strstr(p.content, want) == NULL ||
      (has != NULL && strstr(p.content, has) == NULL))
    fail_msg("%s/%s: notice '%s' lacks %s / %s", c->uid, c->device,
             p.content, want, has ? has : "");
  tc_ack(c, MIM_CMD_C2G_PUSH_ACK, 0, p.inbox_seq);
  mim_packet_finish(&p);
}

static int32_t send_code(struct tc *c, const char *group) {
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_C2G_SEND_REQ;
  req.group = group;
  req.content = "hello";
  tc_call(c, &req, &rsp);
  int32_t code = rsp.cmd == MIM_CMD_ERROR ? rsp.status : 0;
  if (code == 0)
    tc_expect_cmd(&rsp, MIM_CMD_C2G_SEND_RSP);
  mim_packet_finish(&rsp);
  return code;
}

/* ---- tests ---- */

static void roles_admins(void **state) {
  struct fixture *f = *state;
  struct tc *a1 = tc_login(f->h, "ra-alice", "phone");
  struct tc *a2 = tc_login(f->h, "ra-alice", "laptop");
  struct tc *b = tc_login(f->h, "ra-bob", "phone");
  struct tc *c = tc_login(f->h, "ra-carol", "phone");
  const char *bc[] = {"ra-bob", "ra-carol"}, *dave[] = {"ra-dave"};
  const char *carol[] = {"ra-carol"}, *alice[] = {"ra-alice"};
  const char *bob[] = {"ra-bob"};
  struct mim_packet rsp;

  /* a seed-style create: the creator is the owner */
  group_ok(a1, MIM_CMD_GROUP_CREATE_REQ, "ra-g", bc, 2);
  expect_notice(a1, "ra-g", "create", NULL);
  expect_notice(a2, "ra-g", "create", NULL);
  expect_notice(b, "ra-g", "create", NULL);
  expect_notice(c, "ra-g", "create", NULL);
  info(b, "ra-g", &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_INFO_RSP);
  assert_string_equal(rsp.from, "ra-alice");
  assert_int_equal(rsp.n_members, 0);
  mim_packet_finish(&rsp);

  /* a plain member neither adds nor removes nor promotes */
  group_err(b, MIM_CMD_GROUP_ADD_REQ, "ra-g", dave, 1, E_FORBIDDEN);
  group_err(b, MIM_CMD_GROUP_REMOVE_REQ, "ra-g", carol, 1, E_FORBIDDEN);
  assert_int_equal(manage(b, "ra-g", MIM_GA_PROMOTE, "ra-bob", 0, NULL, NULL),
                   E_FORBIDDEN);

  /* the owner promotes; the admin adds and removes a member */
  assert_int_equal(manage(a1, "ra-g", MIM_GA_PROMOTE, "ra-bob", 0, NULL, NULL),
                   0);
  expect_notice(a1, "ra-g", "role", "\"role\":\"admin\"");
  expect_notice(a2, "ra-g", "role", "\"role\":\"admin\"");
  expect_notice(b, "ra-g", "role", "\"role\":\"admin\"");
  expect_notice(c, "ra-g", "role", "\"role\":\"admin\"");
  group_ok(b, MIM_CMD_GROUP_ADD_REQ, "ra-g", dave, 1);
  expect_notice(a2, "ra-g", "add", "ra-dave");
  group_ok(b, MIM_CMD_GROUP_REMOVE_REQ, "ra-g", dave, 1);
  expect_notice(a2, "ra-g", "remove", "ra-dave");
  /* nobody removes the owner, and the owner does not just leave */
  group_err(b, MIM_CMD_GROUP_REMOVE_REQ, "ra-g", alice, 1, E_FORBIDDEN);
  group_err(a1, MIM_CMD_GROUP_REMOVE_REQ, "ra-g", alice, 1, E_FORBIDDEN);

  /* transfer: bob owns, alice stays an admin, then may leave */
  assert_int_equal(manage(a1, "ra-g", MIM_GA_TRANSFER, "ra-bob", 0, NULL,
                          NULL),
                   0);
  expect_notice(a2, "ra-g", "role", "\"role\":\"owner\"");
  expect_notice(c, "ra-g", "role", "\"role\":\"owner\"");
  info(c, "ra-g", &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_INFO_RSP);
  assert_string_equal(rsp.from, "ra-bob");
  assert_int_equal(rsp.n_members, 1);
  assert_string_equal(rsp.members[0], "ra-alice");
  mim_packet_finish(&rsp);
  group_ok(a1, MIM_CMD_GROUP_REMOVE_REQ, "ra-g", alice, 1);
  expect_notice(b, "ra-g", "leave", NULL);
  /* a seed client's own cmds keep working for the new owner */
  group_ok(b, MIM_CMD_GROUP_REMOVE_REQ, "ra-g", carol, 1);
  group_ok(b, MIM_CMD_GROUP_ADD_REQ, "ra-g", alice, 1);
  (void)bob;
  f->passed = true;
}

static void roles_mute(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login(f->h, "rm-alice", "phone");
  struct tc *b = tc_login(f->h, "rm-bob", "phone");
  struct tc *c = tc_login(f->h, "rm-carol", "phone");
  const char *bc[] = {"rm-bob", "rm-carol"};
  group_ok(a, MIM_CMD_GROUP_CREATE_REQ, "rm-g", bc, 2);
  assert_int_equal(manage(a, "rm-g", MIM_GA_PROMOTE, "rm-bob", 0, NULL, NULL),
                   0);
  /* a member mutes nobody; an admin mutes a member */
  assert_int_equal(manage(c, "rm-g", MIM_GA_MUTE, "rm-bob", 0, NULL, NULL),
                   E_FORBIDDEN);
  assert_int_equal(manage(b, "rm-g", MIM_GA_MUTE, "rm-carol", 0, NULL, NULL),
                   0);
  assert_int_equal(send_code(c, "rm-g"), E_MUTED);
  assert_int_equal(send_code(b, "rm-g"), 0);
  /* a mute that already ended is no mute */
  assert_int_equal(manage(b, "rm-g", MIM_GA_MUTE, "rm-carol", 1000, NULL,
                          NULL),
                   0);
  assert_int_equal(send_code(c, "rm-g"), 0);
  assert_int_equal(manage(b, "rm-g", MIM_GA_MUTE_ALL, NULL, 0, NULL, NULL), 0);
  assert_int_equal(send_code(c, "rm-g"), E_MUTED);
  assert_int_equal(send_code(b, "rm-g"), 0);
  assert_int_equal(send_code(a, "rm-g"), 0);
  struct mim_packet rsp;
  info(c, "rm-g", &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_INFO_RSP);
  assert_int_equal(rsp.caps & 1u, 1u);
  mim_packet_finish(&rsp);
  assert_int_equal(manage(a, "rm-g", MIM_GA_UNMUTE_ALL, NULL, 0, NULL, NULL),
                   0);
  assert_int_equal(send_code(c, "rm-g"), 0);
  f->passed = true;
}

static void roles_info_dissolve(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login(f->h, "rd-alice", "phone");
  struct tc *b = tc_login(f->h, "rd-bob", "phone");
  struct tc *b2 = tc_login(f->h, "rd-bob", "tablet");
  struct tc *z = tc_login(f->h, "rd-zed", "phone");
  const char *bob[] = {"rd-bob"};
  group_ok(a, MIM_CMD_GROUP_CREATE_REQ, "rd-g", bob, 1);
  expect_notice(b2, "rd-g", "create", NULL);
  assert_int_equal(manage(b, "rd-g", MIM_GA_SET_INFO, NULL, 0, "x", NULL),
                   E_FORBIDDEN);
  assert_int_equal(manage(a, "rd-g", MIM_GA_SET_INFO, NULL, 0,
                          "Caf\xc3\xa9 \"team\"", "{\"topic\":\"x\"}"),
                   0);
  expect_notice(b2, "rd-g", "info", "Caf\xc3\xa9 \\\"team\\\"");
  struct mim_packet rsp;
  info(b, "rd-g", &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_INFO_RSP);
  assert_string_equal(rsp.content, "Caf\xc3\xa9 \"team\"");
  assert_string_equal(rsp.text, "{\"topic\":\"x\"}");
  mim_packet_finish(&rsp);
  /* strangers learn nothing */
  info(z, "rd-g", &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_GROUP_INFO_REQ);
  mim_packet_finish(&rsp);
  assert_int_equal(manage(z, "rd-g", MIM_GA_DISSOLVE, NULL, 0, NULL, NULL),
                   E_NOT_MEMBER);
  /* too large a name is refused */
  char big[MIM_GROUP_NAME_MAX + 2];
  memset(big, 'n', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(manage(a, "rd-g", MIM_GA_SET_INFO, NULL, 0, big, NULL),
                   1018);
  /* dissolve: only the owner; everyone hears it; the group is gone */
  assert_int_equal(manage(b, "rd-g", MIM_GA_DISSOLVE, NULL, 0, NULL, NULL),
                   E_FORBIDDEN);
  assert_int_equal(manage(a, "rd-g", MIM_GA_DISSOLVE, NULL, 0, NULL, NULL), 0);
  expect_notice(a, "rd-g", "create", NULL);
  expect_notice(a, "rd-g", "info", NULL);
  expect_notice(a, "rd-g", "dissolve", NULL);
  expect_notice(b, "rd-g", "create", NULL);
  expect_notice(b, "rd-g", "info", NULL);
  expect_notice(b, "rd-g", "dissolve", NULL);
  expect_notice(b2, "rd-g", "dissolve", NULL);
  int32_t code = send_code(b, "rd-g");
  assert_true(code == E_NOT_MEMBER || code == E_NO_SUCH_GROUP);
  group_req(a, MIM_CMD_GROUP_LIST_REQ, "", NULL, 0, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_LIST_RSP);
  assert_int_equal(rsp.n_groups, 0);
  mim_packet_finish(&rsp);
  f->passed = true;
}

static void roles_restart(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login(f->h, "rr-alice", "phone");
  const char *bc[] = {"rr-bob", "rr-carol"};
  group_ok(a, MIM_CMD_GROUP_CREATE_REQ, "rr-g", bc, 2);
  assert_int_equal(manage(a, "rr-g", MIM_GA_PROMOTE, "rr-bob", 0, NULL, NULL),
                   0);
  assert_int_equal(manage(a, "rr-g", MIM_GA_MUTE, "rr-carol", 0, NULL, NULL),
                   0);
  tc_free_all();
  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);
  assert_int_equal(h_start_logicd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 20000), 0);
  struct tc *b = tc_login(f->h, "rr-bob", "phone");
  struct tc *c = tc_login(f->h, "rr-carol", "phone");
  struct mim_packet rsp;
  info(c, "rr-g", &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_INFO_RSP);
  assert_string_equal(rsp.from, "rr-alice");
  assert_int_equal(rsp.n_members, 1);
  assert_string_equal(rsp.members[0], "rr-bob");
  assert_int_equal(rsp.n_groups, 1);
  assert_string_equal(rsp.groups[0], "rr-carol");
  mim_packet_finish(&rsp);
  assert_int_equal(send_code(c, "rr-g"), E_MUTED);
  const char *dave[] = {"rr-dave"};
  group_ok(b, MIM_CMD_GROUP_ADD_REQ, "rr-g", dave, 1);
  f->passed = true;
}

int main(int argc, char **argv) {
  const struct CMUnitTest all_tests[] = {
      cmocka_unit_test_setup_teardown(roles_admins, setup, teardown),
      cmocka_unit_test_setup_teardown(roles_mute, setup, teardown),
      cmocka_unit_test_setup_teardown(roles_info_dissolve, setup, teardown),
      cmocka_unit_test_setup_teardown(roles_restart, setup, teardown),
  };
  return h_main(argc, argv, "integration-roles", all_tests,
                sizeof all_tests / sizeof all_tests[0], &WS, 0);
}
