/* A security review of conversations, read positions and receipts
 * (docs/protocol.md §18) against the real logicd and gatewayd: what a
 * stranger, a removed member or a hostile client can learn or make the
 * server do.
 *
 *   test-rev5 [NAME]   runs every test, or only the test called NAME
 *
 * rev5_removed_member_learns_nothing  a member removed from a group gets
 *                        NOT_MEMBER from read-by and mark-read, no
 *                        receipts, and a list entry frozen at what they
 *                        saw (not the count of messages sent since)
 * rev5_receipts_reach_only_the_peer   READ_RECEIPT and READ_SYNC reach
 *                        only the peer and the reader's own devices with
 *                        MIM_CAP_READ; a mark-read on a stranger or a
 *                        made-up peer moves nothing, tells nobody and adds
 *                        nothing to any list
 * rev5_integer_edges     conv_seq 0 and UINT64_MAX, read-by past the
 *                        newest message, unknown and invalid after_uid,
 *                        limits and before_msg_id out of range (raw
 *                        frames): answered, never a crash
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

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;

  if (f == NULL)
    return -1;
  f->name = "rev5";
  h_opts_init(&o);
  h_watchdog(120, f->name);
  if (h_create(&f->h, WS, &o) != 0) {
    free(f);
    return -1;
  }
  if (h_start(f->h) != 0) {
    h_destroy(f->h);
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = 0;

  h_watchdog(60, "teardown");
  tc_free_all();
  if (f != NULL) {
    if (!h_logicd_alive(f->h) || !h_gatewayd_alive(f->h)) {
      fprintf(stderr, "[%s] a daemon died during the test\n", f->name);
      r = -1;
    }
    if (!f->passed || r != 0) {
      fprintf(stderr, "[%s] failed; daemon logs follow\n", f->name);
      h_dump_logs(f->h);
    }
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

static void conv_list(struct tc *c, int32_t limit, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_CONV_LIST_REQ;
  req.limit = limit;
  tc_call(c, &req, rsp);
  tc_expect_cmd(rsp, MIM_CMD_CONV_LIST_RSP);
}

/* The list entry of `peer` (or group `group`) in `c`'s list; fails when
 * there is none. Strings are cleared (they belonged to the reply). */
static struct mim_conv_item conv_of(struct tc *c, const char *peer,
                                    const char *group) {
  struct mim_packet l;
  struct mim_conv_item it = {0};
  bool found = false;
  conv_list(c, 0, &l);
  for (size_t i = 0; i < l.n_convs; i++) {
    const struct mim_conv_item *x = &l.convs[i];
    if ((peer != NULL && strcmp(x->peer, peer) == 0) ||
        (group != NULL && strcmp(x->group, group) == 0)) {
      it = *x;
      it.peer = it.group = it.last_from = it.preview = NULL;
      found = true;
    }
  }
  mim_packet_finish(&l);
  if (!found)
    fail_msg("%s: no conversation with %s", c->uid, peer ? peer : group);
  return it;
}

static size_t conv_count(struct tc *c) {
  struct mim_packet l;
  conv_list(c, 0, &l);
  size_t n = l.n_convs;
  assert_false(l.has_more);
  mim_packet_finish(&l);
  return n;
}

static void mark_read_try(struct tc *c, const char *peer, const char *group,
                          uint64_t conv_seq, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_MARK_READ_REQ;
  req.peer = peer;
  req.group = group;
  req.conv_seq = conv_seq;
  tc_call(c, &req, rsp);
}

static void mark_read(struct tc *c, const char *peer, const char *group,
                      uint64_t conv_seq, struct mim_packet *rsp) {
  mark_read_try(c, peer, group, conv_seq, rsp);
  tc_expect_cmd(rsp, MIM_CMD_MARK_READ_RSP);
}

static void read_by(struct tc *c, const char *group, uint64_t conv_seq,
                    const char *after, int32_t limit, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_READ_BY_REQ;
  req.group = group;
  req.conv_seq = conv_seq;
  req.after_uid = after;
  req.limit = limit;
  tc_call(c, &req, rsp);
}

/* Asserts no READ_SYNC / READ_RECEIPT is queued for `c` (after a barrier). */
static void no_read_pushes(struct tc *c) {
  tc_barrier(c);
  tc_assert_no_cmd(c, MIM_CMD_READ_SYNC);
  tc_assert_no_cmd(c, MIM_CMD_READ_RECEIPT);
}

static void create_group(struct tc *owner, const char *group,
                         const char *const *members, size_t n) {
  struct mim_packet rsp;
  tc_group_call(owner, MIM_CMD_GROUP_CREATE_REQ, group, members, n, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_finish(&rsp);
}

/* ---- tests ---- */

static void rev5_removed_member_learns_nothing(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_READ);
  struct tc *c = tc_login_caps(f->h, "carol", "phone", MIM_CAP_READ);
  const char *members[] = {"bob", "carol"};
  create_group(a, "team", members, 2);
  tc_c2g(a, "team", "before", NULL, NULL);
  struct mim_conv_item seen = conv_of(c, NULL, "team");
  uint64_t at_removal = seen.last_conv_seq;
  assert_int_equal(seen.unread, 2); /* the create notice and "before" */

  struct mim_packet rsp;
  const char *carol[] = {"carol"};
  tc_group_call(a, MIM_CMD_GROUP_REMOVE_REQ, "team", carol, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_REMOVE_RSP);
  mim_packet_finish(&rsp);
  for (int i = 0; i < 5; i++)
    tc_c2g(a, "team", "after", NULL, NULL);
  uint64_t tail = conv_of(a, NULL, "team").last_conv_seq;
  assert_true(tail > at_removal + 5);

  /* read-by and mark-read: NOT_MEMBER, as to any stranger */
  read_by(c, "team", at_removal, NULL, 10, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_READ_BY_REQ);
  mim_packet_finish(&rsp);
  read_by(c, "team", tail, NULL, 0, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_READ_BY_REQ);
  mim_packet_finish(&rsp);
  mark_read_try(c, NULL, "team", tail, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_MARK_READ_REQ);
  mim_packet_finish(&rsp);

  /* a member reading tells the removed one nothing */
  mark_read(b, NULL, "team", tail, &rsp);
  assert_int_equal(rsp.unread, 0);
  mim_packet_finish(&rsp);
  no_read_pushes(c);

  /* the list keeps the group as carol last saw it: not the messages
   * sent since (their count nor their text), nothing unread */
  struct mim_packet l;
  conv_list(c, 0, &l);
  bool found = false;
  for (size_t i = 0; i < l.n_convs; i++) {
    const struct mim_conv_item *x = &l.convs[i];
    if (strcmp(x->group, "team") != 0)
      continue;
    found = true;
    assert_int_equal(x->unread, 0);
    assert_true(x->last_conv_seq <= at_removal + 1); /* + the removal */
    assert_true(strcmp(x->preview, "after") != 0);
  }
  assert_true(found);
  mim_packet_finish(&l);

  /* the other members count carol out */
  read_by(a, "team", tail, NULL, 10, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_int_equal(rsp.member_count, 2);
  for (size_t i = 0; i < rsp.n_members; i++)
    assert_string_not_equal(rsp.members[i], "carol");
  mim_packet_finish(&rsp);
  PASSED(f);
}

static void rev5_receipts_reach_only_the_peer(void **state) {
  struct fixture *f = *state;
  struct tc *a1 = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct tc *a2 = tc_login_caps(f->h, "alice", "seed", 0);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_READ);
  struct tc *e = tc_login_caps(f->h, "eve", "phone", MIM_CAP_READ);
  tc_c2c(b, "alice", "hi", NULL, NULL);
  tc_c2c(e, "bob", "eve and bob", NULL, NULL);

  struct mim_packet rsp, p;
  mark_read(a1, "bob", NULL, 1, &rsp);
  assert_int_equal(rsp.read_seq, 1);
  mim_packet_finish(&rsp);
  tc_push(b, MIM_CMD_READ_RECEIPT, &p);
  assert_string_equal(p.from, "alice");
  mim_packet_finish(&p);
  /* eve shares a conversation with bob, not with alice: nothing */
  no_read_pushes(e);
  no_read_pushes(a2); /* a seed device of the reader: nothing new */

  /* alice on eve (no conversation between them): nothing moves, eve
   * hears nothing */
  mark_read(a1, "eve", NULL, UINT64_MAX, &rsp);
  assert_int_equal(rsp.read_seq, 0);
  assert_int_equal(rsp.unread, 0);
  mim_packet_finish(&rsp);
  no_read_pushes(e);

  /* made-up peers, pipelined: answered, no list grows, nobody told */
  enum { N = 300 };
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_MARK_READ_REQ;
  req.conv_seq = UINT64_MAX;
  char peer[32];
  for (int i = 0; i < N; i++) {
    snprintf(peer, sizeof peer, "nobody-%d", i);
    req.peer = peer;
    req.seq = ++a1->seq;
    assert_int_equal(wsc_queue_packet(a1->ws, &req), 0);
  }
  /* each is answered: a read state, or (past conn_pending_max) an
   * overload error */
  int answered = 0, refused = 0;
  while (answered + refused < N) {
    struct mim_packet r;
    assert_int_equal(wsc_recv(a1->ws, TC_REPLY_MS, &r), 0);
    if (r.cmd == MIM_CMD_MARK_READ_RSP) {
      assert_int_equal(r.read_seq, 0);
      assert_int_equal(r.unread, 0);
      answered++;
    } else if (r.cmd == MIM_CMD_ERROR) {
      refused++;
    }
    mim_packet_finish(&r);
  }
  assert_true(answered > 0);
  assert_int_equal(conv_count(a1), 1);
  /* a made-up peer read on is not a user: sending to it makes one, whose
   * list holds only that message */
  no_read_pushes(a1);
  PASSED(f);
}

/* Sends a raw ConvListRequest body and returns the answer (a list or an
 * Error), asserting one arrives. */
static void raw_conv_list(struct tc *c, const uint8_t *body, size_t len,
                          struct mim_packet *out) {
  uint8_t frame[MIM_HEADER_SIZE + 64];
  assert_true(len <= 64);
  size_t n = tc_frame(frame, MIM_CMD_CONV_LIST_REQ, body, len);
  assert_int_equal(wsc_send_raw(c->ws, frame, n, true), 0);
  for (;;) {
    assert_int_equal(wsc_recv(c->ws, TC_REPLY_MS, out), 0);
    if (out->cmd == MIM_CMD_CONV_LIST_RSP || out->cmd == MIM_CMD_ERROR)
      return;
    mim_packet_finish(out);
  }
}

static void rev5_integer_edges(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_READ);
  for (int i = 0; i < 3; i++)
    tc_c2c(b, "alice", "m", NULL, NULL);
  struct mim_packet rsp;
  /* 0 reads nothing; UINT64_MAX is clamped to the newest message */
  mark_read(a, "bob", NULL, 0, &rsp);
  assert_int_equal(rsp.read_seq, 0);
  assert_int_equal(rsp.unread, 3);
  mim_packet_finish(&rsp);
  mark_read(a, "bob", NULL, UINT64_MAX, &rsp);
  assert_int_equal(rsp.read_seq, 3);
  assert_int_equal(rsp.unread, 0);
  mim_packet_finish(&rsp);
  /* a later message is unread: nobody reads ahead */
  tc_c2c(b, "alice", "m", NULL, NULL);
  assert_int_equal(conv_of(a, "bob", NULL).unread, 1);
  /* one's own conversation with oneself */
  mark_read(a, "alice", NULL, UINT64_MAX, &rsp);
  assert_int_equal(rsp.read_seq, 0);
  mim_packet_finish(&rsp);

  const char *members[] = {"bob"};
  create_group(a, "g", members, 1);
  uint64_t seq = conv_of(a, NULL, "g").last_conv_seq;
  read_by(a, "g", 0, NULL, 10, &rsp);
  tc_expect_error(&rsp, E_MALFORMED, MIM_CMD_READ_BY_REQ);
  mim_packet_finish(&rsp);
  read_by(a, "g", UINT64_MAX, NULL, 10, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_int_equal(rsp.read_count, 0);
  assert_int_equal(rsp.member_count, 2);
  mim_packet_finish(&rsp);
  read_by(a, "g", seq, "zz-unknown", 10, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_int_equal(rsp.n_members, 0);
  assert_false(rsp.has_more);
  mim_packet_finish(&rsp);
  read_by(a, "g", seq, "bad uid", 10, &rsp);
  tc_expect_error(&rsp, E_MALFORMED, MIM_CMD_READ_BY_REQ);
  mim_packet_finish(&rsp);
  read_by(a, "g", seq, NULL, INT32_MIN, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_int_equal(rsp.n_members, 0); /* counts only */
  mim_packet_finish(&rsp);
  read_by(a, "g", seq, NULL, INT32_MAX, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_true(rsp.n_members <= 2);
  mim_packet_finish(&rsp);

  /* list limits: negative and huge give the default page */
  conv_list(a, -5, &rsp);
  assert_int_equal(rsp.n_convs, 2); /* bob, g */
  mim_packet_finish(&rsp);
  conv_list(a, INT32_MAX, &rsp);
  assert_int_equal(rsp.n_convs, 2); /* bob, g */
  mim_packet_finish(&rsp);
  /* raw: before_msg_id -1 (int64, 10-byte varint), limit -5, and
   * before_msg_id INT64_MAX: an error or a page, the daemons stay up */
  static const uint8_t neg[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0xff, 0x01, 0x10, 0xfb, 0xff,
                                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                0x01, 0x20, 0x07};
  static const uint8_t big[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                0xff, 0xff, 0x7f, 0x20, 0x08};
  struct mim_packet r;
  raw_conv_list(a, neg, sizeof neg, &r);
  if (r.cmd == MIM_CMD_CONV_LIST_RSP)
    assert_true(r.n_convs <= 2);
  mim_packet_finish(&r);
  raw_conv_list(a, big, sizeof big, &r);
  if (r.cmd == MIM_CMD_CONV_LIST_RSP)
    assert_true(r.n_convs <= 2);
  mim_packet_finish(&r);
  tc_barrier(a);
  assert_true(h_logicd_alive(f->h));
  assert_true(h_gatewayd_alive(f->h));
  PASSED(f);
}

/* ====================================================================== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const struct CMUnitTest all_tests[] = {
    T(rev5_removed_member_learns_nothing),
    T(rev5_receipts_reach_only_the_peer),
    T(rev5_integer_edges),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-rev5", all_tests, COUNT(all_tests),
                &WS, 0);
}
