/* Conversations, unread counts, read positions and receipts end to end
 * (docs/protocol.md §18): the real logicd and gatewayd on loopback ports,
 * real websocket clients, two users with two devices each.
 *
 *   test-conv [NAME]   runs every test, or only the test called NAME
 *
 * conv_unread_devices    unread counts across devices and a reconnect,
 *                        read sync to the other device, the 1:1 receipt
 *                        to the sender's devices, own messages never unread
 * conv_group_read_by     a group message's "read by N of M" and who
 * conv_restart           a logicd restart keeps lists and read positions
 * conv_seed_nothing_new  a client without MIM_CAP_READ gets no new push
 * conv_read_races_sends  mark-read racing new messages: the position never
 *                        passes what was stored, later ones stay unread
 * conv_delivered         delivery receipts when the receiver's device acks
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
  f->name = "conv";
  h_opts_init(&o);
  if (h_begin(&f->h, WS, &o, f->name, 120) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
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

/* The caller's conversation list (first page); `rsp` is the caller's to
 * finish. */
static void conv_list(struct tc *c, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_CONV_LIST_REQ;
  tc_call(c, &req, rsp);
  tc_expect_cmd(rsp, MIM_CMD_CONV_LIST_RSP);
}

/* The list entry of `peer` (or group `group`) in `c`'s list. */
static struct mim_conv_item conv_of(struct tc *c, const char *peer,
                                    const char *group) {
  struct mim_packet l;
  struct mim_conv_item it = {0};
  bool found = false;
  conv_list(c, &l);
  for (size_t i = 0; i < l.n_convs; i++) {
    const struct mim_conv_item *x = &l.convs[i];
    if ((peer != NULL && strcmp(x->peer, peer) == 0) ||
        (group != NULL && strcmp(x->group, group) == 0)) {
      it = *x;
      it.peer = it.group = it.last_from = it.preview = NULL; /* owned by l */
      found = true;
    }
  }
  mim_packet_finish(&l);
  if (!found)
    fail_msg("%s: no conversation with %s", c->uid, peer ? peer : group);
  return it;
}

static void mark_read(struct tc *c, const char *peer, const char *group,
                      uint64_t conv_seq, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_MARK_READ_REQ;
  req.peer = peer;
  req.group = group;
  req.conv_seq = conv_seq;
  tc_call(c, &req, rsp);
  tc_expect_cmd(rsp, MIM_CMD_MARK_READ_RSP);
}

/* ---- tests ---- */

static void conv_unread_devices(void **state) {
  struct fixture *f = *state;
  struct tc *a1 = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct tc *a2 = tc_login_caps(f->h, "alice", "laptop", MIM_CAP_READ);
  struct tc *b1 = tc_login_caps(f->h, "bob", "phone", MIM_CAP_READ);
  struct tc *b2 = tc_login_caps(f->h, "bob", "laptop", MIM_CAP_READ);
  assert_int_equal(a1->caps, MIM_CAP_READ);
  tc_c2c(b1, "alice", "one", NULL, NULL);
  tc_c2c(b1, "alice", "two", NULL, NULL);
  tc_c2c(b2, "alice", "three", NULL, NULL);

  struct mim_conv_item a = conv_of(a1, "bob", NULL);
  assert_int_equal(a.unread, 3);
  assert_int_equal(a.last_conv_seq, 3);
  assert_int_equal(conv_of(a2, "bob", NULL).unread, 3);
  /* bob's own messages are never unread for him, on either device */
  assert_int_equal(conv_of(b1, "alice", NULL).unread, 0);
  assert_int_equal(conv_of(b2, "alice", NULL).unread, 0);

  /* alice reads two on her laptop: her phone follows at once, bob's
   * devices get the receipt */
  struct mim_packet r, p;
  mark_read(a2, "bob", NULL, 2, &r);
  assert_int_equal(r.read_seq, 2);
  assert_int_equal(r.unread, 1);
  mim_packet_finish(&r);
  tc_push(a1, MIM_CMD_READ_SYNC, &p);
  assert_string_equal(p.peer, "bob");
  assert_int_equal(p.read_seq, 2);
  assert_int_equal(p.unread, 1);
  mim_packet_finish(&p);
  tc_push(b1, MIM_CMD_READ_RECEIPT, &p);
  assert_string_equal(p.from, "alice");
  assert_int_equal(p.read_seq, 2);
  mim_packet_finish(&p);
  tc_push(b2, MIM_CMD_READ_RECEIPT, &p);
  assert_int_equal(p.read_seq, 2);
  mim_packet_finish(&p);
  tc_barrier(a2);
  tc_assert_no_cmd(a2, MIM_CMD_READ_SYNC); /* it has the reply */
  assert_int_equal(conv_of(b1, "alice", NULL).peer_read_seq, 2);

  /* a reconnect sees the same count */
  tc_free(a1);
  a1 = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  assert_int_equal(conv_of(a1, "bob", NULL).unread, 1);
  /* never backwards */
  mark_read(a1, "bob", NULL, 1, &r);
  assert_int_equal(r.read_seq, 2);
  mim_packet_finish(&r);
  /* alice answers: the conversation is read for her */
  tc_c2c(a1, "bob", "four", NULL, NULL);
  a = conv_of(a2, "bob", NULL);
  assert_int_equal(a.unread, 0);
  assert_int_equal(a.read_seq, 4);
  assert_int_equal(conv_of(b2, "alice", NULL).unread, 1);
  PASSED(f);
}

static void conv_group_read_by(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_READ);
  struct tc *c = tc_login_caps(f->h, "carol", "phone", MIM_CAP_READ);
  struct tc *d = tc_login_caps(f->h, "dave", "phone", MIM_CAP_READ);
  const char *members[] = {"bob", "carol"};
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_CREATE_REQ;
  req.group = "team";
  req.members = members;
  req.n_members = 2;
  tc_call(a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_finish(&rsp);
  tc_c2g(a, "team", "hello team", NULL, NULL);
  struct mim_conv_item g = conv_of(b, NULL, "team");
  assert_int_equal(g.unread, 2); /* the create notice and the message */
  uint64_t seq = g.last_conv_seq;
  assert_int_equal(conv_of(a, NULL, "team").unread, 0);
  mark_read(b, NULL, "team", seq, &rsp);
  assert_int_equal(rsp.unread, 0);
  mim_packet_finish(&rsp);

  mim_packet_init(&req);
  req.cmd = MIM_CMD_READ_BY_REQ;
  req.group = "team";
  req.conv_seq = seq;
  req.limit = 10;
  tc_call(a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_int_equal(rsp.read_count, 2);
  assert_int_equal(rsp.member_count, 3);
  assert_int_equal(rsp.n_members, 2);
  assert_string_equal(rsp.members[0], "alice");
  assert_string_equal(rsp.members[1], "bob");
  mim_packet_finish(&rsp);
  /* a page of one, then the next */
  req.limit = 1;
  tc_call(c, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_int_equal(rsp.n_members, 1);
  assert_true(rsp.has_more);
  mim_packet_finish(&rsp);
  req.after_uid = "alice";
  tc_call(c, &req, &rsp);
  assert_int_equal(rsp.n_members, 1);
  assert_string_equal(rsp.members[0], "bob");
  assert_false(rsp.has_more);
  mim_packet_finish(&rsp);
  /* a stranger learns nothing */
  tc_call(d, &req, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, MIM_CMD_READ_BY_REQ);
  mim_packet_finish(&rsp);
  PASSED(f);
}

static void conv_restart(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_READ);
  for (int i = 0; i < 5; i++)
    tc_c2c(b, "alice", "m", NULL, NULL);
  struct mim_packet r;
  mark_read(a, "bob", NULL, 3, &r);
  mim_packet_finish(&r);
  tc_free(a);
  tc_free(b);
  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);
  assert_int_equal(h_start_logicd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 10000), 0);
  a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_READ);
  struct mim_conv_item it = conv_of(a, "bob", NULL);
  assert_int_equal(it.read_seq, 3);
  assert_int_equal(it.unread, 2);
  assert_int_equal(it.last_conv_seq, 5);
  it = conv_of(b, "alice", NULL);
  assert_int_equal(it.unread, 0);
  assert_int_equal(it.peer_read_seq, 3);
  PASSED(f);
}

static void conv_seed_nothing_new(void **state) {
  struct fixture *f = *state;
  struct tc *a1 = tc_login_caps(f->h, "alice", "phone", 0);
  struct tc *a2 = tc_login_caps(f->h, "alice", "laptop", 0);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", 0);
  struct tc *bc = tc_login_caps(f->h, "bob", "laptop", MIM_CAP_READ);
  tc_c2c(b, "alice", "hi", NULL, NULL);
  struct mim_packet r, p;
  mark_read(a1, "bob", NULL, 1, &r);
  mim_packet_finish(&r);
  /* the device that asked for receipts gets one ... */
  tc_push(bc, MIM_CMD_READ_RECEIPT, &p);
  mim_packet_finish(&p);
  /* ... the seed clients nothing */
  tc_barrier(b);
  tc_barrier(a2);
  tc_assert_no_cmd(b, MIM_CMD_READ_RECEIPT);
  tc_assert_no_cmd(a2, MIM_CMD_READ_SYNC);
  /* and nothing else either: only what a seed client knows */
  struct tc *seeds[] = {b, a2};
  for (size_t i = 0; i < 2; i++) {
    struct mim_packet q;
    while (wsc_recv(seeds[i]->ws, 0, &q) == 0) {
      if (q.cmd >= MIM_CMD_CONV_LIST_REQ)
        fail_msg("%s/%s got cmd %u", seeds[i]->uid, seeds[i]->device,
                 (unsigned)q.cmd);
      mim_packet_finish(&q);
    }
  }
  PASSED(f);
}

static void conv_read_races_sends(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_READ);
  enum { N = 30 };
  tc_c2c(b, "alice", "first", NULL, NULL);
  /* alice marks "everything" read while bob's messages keep coming: the
   * position lands on what was stored when the mark committed */
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_MARK_READ_REQ;
  req.peer = "bob";
  req.conv_seq = 1000000;
  int64_t seqs[N];
  for (int i = 0; i < N; i++) {
    req.seq = seqs[i] = ++a->seq;
    assert_int_equal(wsc_send_packet(a->ws, &req), 0);
    tc_c2c(b, "alice", "more", NULL, NULL);
  }
  uint64_t last = 0;
  for (int i = 0; i < N; i++) {
    struct mim_packet r;
    int64_t want = seqs[i];
    /* replies come in request order */
    assert_int_equal(wsc_recv_cmd(a->ws, MIM_CMD_MARK_READ_RSP, TC_REPLY_MS,
                                  &r), 0);
    assert_int_equal(r.seq, want);
    assert_true(r.read_seq >= last); /* never backwards */
    assert_true(r.read_seq <= (uint64_t)N + 1);
    last = r.read_seq;
    mim_packet_finish(&r);
  }
  struct mim_conv_item it = conv_of(a, "bob", NULL);
  assert_int_equal(it.last_conv_seq, N + 1);
  assert_int_equal(it.read_seq, last);
  assert_int_equal(it.unread, N + 1 - last);
  /* bob's devices saw the receipts rise, never fall */
  uint64_t seen = 0;
  for (;;) {
    struct mim_packet p;
    if (wsc_recv_cmd(b->ws, MIM_CMD_READ_RECEIPT, 0, &p) != 0)
      break;
    assert_true(p.read_seq > seen);
    seen = p.read_seq;
    mim_packet_finish(&p);
  }
  tc_barrier(b);
  mim_packet_init(&rsp);
  (void)rsp;
  PASSED(f);
}

/* Delivery receipts end to end: bob's device acks alice's pushes, and
 * alice's devices that asked hear DELIVERED up to the newest; her seed
 * device does not. */
static void conv_delivered(void **state) {
  struct fixture *f = *state;
  struct tc *a1 = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct tc *a2 = tc_login_caps(f->h, "alice", "seed", 0);
  struct tc *b = tc_login(f->h, "bob", "phone");
  uint64_t last_seq = 0, id = 0;
  for (int i = 0; i < 3; i++)
    id = tc_c2c(a1, "bob", "hello", NULL, NULL);
  struct mim_packet p;
  tc_push_msg(b, MIM_CMD_C2C_PUSH, id, &p);
  last_seq = p.inbox_seq;
  assert_int_equal(p.conv_seq, 3);
  mim_packet_finish(&p);
  tc_ack(b, MIM_CMD_C2C_PUSH_ACK, 0, last_seq);
  tc_barrier(b);
  tc_push(a1, MIM_CMD_DELIVERED, &p);
  assert_string_equal(p.from, "bob");
  assert_int_equal(p.conv_seq, 3);
  mim_packet_finish(&p);
  tc_barrier(a2);
  tc_assert_no_cmd(a2, MIM_CMD_DELIVERED);
  PASSED(f);
}

/* The gateway matches replies to requests in order: a reply of the new
 * commands (30-46) must pop its entry, or an answer the gateway makes
 * itself (here UNKNOWN_CMD for cmd 999) waits behind it for ever. */
static void conv_reply_pops_gateway_queue(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  struct mim_packet q, r;
  mim_packet_init(&q);
  q.cmd = MIM_CMD_CONV_LIST_REQ;
  q.seq = ++a->seq;
  assert_int_equal(wsc_send_packet(a->ws, &q), 0);
  uint8_t frame[64];
  size_t n = tc_frame(frame, 999, NULL, 0);
  assert_int_equal(wsc_send_raw(a->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv_cmd(a->ws, MIM_CMD_CONV_LIST_RSP, 5000, &r), 0);
  mim_packet_finish(&r);
  assert_int_equal(wsc_recv_cmd(a->ws, MIM_CMD_ERROR, 5000, &r), 0);
  assert_int_equal(r.status, 1002 /* UNKNOWN_CMD */);
  mim_packet_finish(&r);
  PASSED(f);
}

/* ====================================================================== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const struct CMUnitTest all_tests[] = {
    T(conv_unread_devices),
    T(conv_group_read_by),
    T(conv_restart),
    T(conv_seed_nothing_new),
    T(conv_read_races_sends),
    T(conv_delivered),
    T(conv_reply_pops_gateway_queue),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-conv", all_tests, COUNT(all_tests),
                &WS, 0);
}
