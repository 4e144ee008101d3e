/* Large groups by read diffusion end to end (docs/protocol.md §22): the
 * real logicd (group_large_min = 5) and gatewayd on loopback ports, real
 * LMDB files, real websocket clients.
 *
 *   test-large [NAME]   runs every test, or only the test called NAME
 *
 * large_switch        a 3-member group is small (its message is in a
 *                     member's pull); adding 2 makes it large: later
 *                     messages are in nobody's pull, MIM_CAP_LARGE
 *                     connections get cmd 12 with inbox_seq 0 and the next
 *                     conv_seq (an ack of it is ignored), the switching
 *                     add's notice reaches each member once, shrinking
 *                     does not switch back, and sync returns the whole
 *                     timeline, dense and ascending, with last_conv_seq
 * large_seed          a connection without MIM_CAP_LARGE gets no push of a
 *                     large group's message and reads it with history
 *                     (or sync: no capability needed)
 * large_sync_paging   30 messages read by sync pages of 7: oldest first,
 *                     every conv_seq once, next_after and has_more; pages
 *                     cut by reply bytes (20 x 30,000 bytes) lose nothing
 * large_restart       a member offline over 10 messages and a logicd
 *                     restart with a higher group_large_min: conv_list
 *                     (large, last_conv_seq, unread), sync from its
 *                     position gets exactly the 10, live pushes after login
 *                     and to a connection that lived through the restart,
 *                     the group stays large, a new group of 5 is small
 * large_membership    a removed member hears of it once, stops getting
 *                     pushes at once (a new login of it too), its sync is
 *                     NOT_MEMBER and its conversation list keeps the group
 *                     without what came after; a member added later sees
 *                     pushes, sync and unread only from its join point; a
 *                     member added back follows again from the new join
 * large_non_member    sync by a non-member of a large group, a small group
 *                     or an unknown group: the same NOT_MEMBER
 * large_other_device  the sender's connection gets the reply, its other
 *                     device and the members the push, each exactly once
 *                     (a batch client too); a replaced login and a logout
 *                     follow no more
 * large_receipts      mark read (also "all") and the conversation list's
 *                     unread, the read sync to the other device, read-by
 *                     counting the reader
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

/* The wire numbers of docs/protocol.md §22, spelled out so that a renumbered
 * enum cannot make the test agree with a wrong server. */
enum {
  CAP_LARGE = 128,
  CMD_SYNC_REQ = 54,
  CMD_SYNC_RSP = 55,
  LARGE_MIN = 5, /* group_large_min of these daemons */
  QUIET_MS = 300, /* how long "nothing arrives" is watched */
};

#define LCAPS (CAP_LARGE | MIM_CAP_READ)

/* Where struct mim_packet keeps GroupSyncRequest/Response's fields
 * (include/mim/codec.h): after_conv_seq and next_after in after_seq,
 * last_conv_seq in conv_seq; ConvItem.large. */
#define SYNC_AFTER(p) ((p).after_seq)
#define SYNC_NEXT(p) ((p).after_seq)
#define SYNC_LAST(p) ((p).conv_seq)
#define CONV_LARGE(it) ((it).large)

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
};

#define PASSED(f) ((f)->passed = true)

/* logicd's --group-large-min; a test may change it before a restart */
static char large_min[16];

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;
  if (f == NULL)
    return -1;
  f->name = "large";
  snprintf(large_min, sizeof large_min, "%d", LARGE_MIN);
  /* static: the harness keeps the pointer and a restart reads it again */
  static const char *largs[] = {"--group-large-min", large_min, NULL};
  h_opts_init(&o);
  o.logicd_args = largs;
  if (h_begin(&f->h, WS, &o, f->name, 180) != 0) {
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

/* A login with `caps`; asserts the server granted MIM_CAP_LARGE when
 * asked. */
static struct tc *login(struct harness *h, const char *uid,
                        const char *device, uint32_t caps) {
  struct tc *c = tc_login_caps(h, uid, device, caps);
  if ((caps & CAP_LARGE) != 0 && (c->caps & CAP_LARGE) == 0)
    fail_msg("%s/%s: AuthResponse.caps 0x%x does not grant CAP_LARGE", uid,
             device ? device : "", c->caps);
  return c;
}

/* `owner` creates `group` with the `n` members (the owner not among them);
 * asserts every one of them is in the reply. */
static void create(struct tc *owner, const char *group,
                   const char *const *members, size_t n) {
  struct mim_packet rsp;
  tc_group_call(owner, MIM_CMD_GROUP_CREATE_REQ, group, members, n, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_CREATE_RSP);
  assert_int_equal(rsp.n_members, n + 1);
  mim_packet_finish(&rsp);
}

/* The group everyone in these tests uses: alice + bob, carol, dave, erin
 * (5 = group_large_min: large from its creation). */
static const char *const FOUR[] = {"bob", "carol", "dave", "erin"};

static void group_add(struct tc *c, const char *group,
                      const char *const *members, size_t n) {
  struct mim_packet rsp;
  tc_group_call(c, MIM_CMD_GROUP_ADD_REQ, group, members, n, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_ADD_RSP);
  assert_int_equal(rsp.n_members, n);
  mim_packet_finish(&rsp);
}

static void group_remove(struct tc *c, const char *group, const char *uid) {
  struct mim_packet rsp;
  tc_group_call(c, MIM_CMD_GROUP_REMOVE_REQ, group, &uid, 1, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_GROUP_REMOVE_RSP);
  assert_int_equal(rsp.n_members, 1);
  mim_packet_finish(&rsp);
}

/* Sends `content` to the large group `group`: the reply is cmd 11 with a
 * msg_id and inbox_seq 0 (nothing is written to an inbox). Returns the
 * msg_id. */
static uint64_t lsend(struct tc *c, const char *group, const char *content) {
  struct mim_packet req, rsp;
  char d[512];
  mim_packet_init(&req);
  req.cmd = MIM_CMD_C2G_SEND_REQ;
  req.group = group;
  req.content = content;
  tc_call(c, &req, &rsp);
  if (rsp.cmd != MIM_CMD_C2G_SEND_RSP)
    fail_msg("%s: send to %s answered by %s", c->uid, group,
             tc_describe(&rsp, d, sizeof d));
  assert_int_equal(rsp.seq, c->seq);
  assert_true(rsp.msg_id > 0 && rsp.msg_id <= MIM_MSG_ID_MAX);
  if (rsp.inbox_seq != 0)
    fail_msg("%s: send to large group %s: reply inbox_seq %llu, want 0",
             c->uid, group, (unsigned long long)rsp.inbox_seq);
  uint64_t id = rsp.msg_id;
  mim_packet_finish(&rsp);
  return id;
}

/* Waits for the live push (cmd 12) of the large group's message `msg_id`
 * and checks it: inbox_seq 0, `conv_seq` (0: not checked), sender, group,
 * content. Returns its conv_seq. */
static uint64_t lpush(struct tc *c, uint64_t msg_id, uint64_t conv_seq,
                      const char *from, const char *group,
                      const char *content) {
  struct mim_packet p;
  tc_push_msg(c, MIM_CMD_C2G_PUSH, msg_id, &p);
  if (p.inbox_seq != 0)
    fail_msg("%s/%s: push of large-group msg %llu has inbox_seq %llu, want "
             "0", c->uid, c->device, (unsigned long long)msg_id,
             (unsigned long long)p.inbox_seq);
  if (conv_seq != 0 && p.conv_seq != conv_seq)
    fail_msg("%s/%s: push of msg %llu has conv_seq %llu, want %llu", c->uid,
             c->device, (unsigned long long)msg_id,
             (unsigned long long)p.conv_seq, (unsigned long long)conv_seq);
  assert_true(p.conv_seq > 0);
  assert_string_equal(p.from, from);
  assert_string_equal(p.group, group);
  assert_string_equal(p.content, content);
  assert_true(p.ts > 0);
  uint64_t cs = p.conv_seq;
  mim_packet_finish(&p);
  return cs;
}

/* Watches `c` for QUIET_MS (servicing every connection) and asserts no
 * push (cmd 12) of `msg_id` is queued for it. */
static void no_push(struct tc *c, uint64_t msg_id) {
  wsc_ctx_service(WS, QUIET_MS);
  tc_barrier(c);
  tc_assert_no_msg(c, MIM_CMD_C2G_PUSH, msg_id);
}

/* One sync request (cmd 54); `rsp` is the caller's to finish (a reply or an
 * Error, not asserted). */
static void sync_try(struct tc *c, const char *group, uint64_t after,
                     int32_t limit, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = CMD_SYNC_REQ;
  req.group = group;
  req.has_after_seq = true;
  SYNC_AFTER(req) = after;
  req.limit = limit;
  tc_call(c, &req, rsp);
}

/* What one sync of the whole timeline found. */
struct synced {
  struct tc_items items;
  uint64_t last_conv_seq; /* of the first page */
  size_t pages;
};

static char *dup_s(const char *s) {
  char *d = strdup(s != NULL ? s : "");
  assert_non_null(d);
  return d;
}

static void items_add(struct tc_items *it, const struct mim_pull_item *src) {
  if (it->n == it->cap) {
    size_t cap = it->cap ? it->cap * 2 : 64;
    struct tc_item *v = realloc(it->v, cap * sizeof(*v));
    assert_non_null(v);
    it->v = v;
    it->cap = cap;
  }
  struct tc_item *d = &it->v[it->n++];
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

/* Syncs `group` after `after` in pages of `limit` until has_more is false,
 * asserting on every page: a reply (cmd 55) echoing the seq, at most
 * `limit` items, items in strictly ascending conv_seq and each > after,
 * every item of the group, inbox_seq 0, next_after at or past the page's
 * last conv_seq and moving on while has_more, has_more until
 * last_conv_seq is reached, the same last_conv_seq on every page and no
 * item above it. Pages are not required to be dense (entries a viewer
 * deleted for themself are holes); callers check that with dense(). */
static void sync_all(struct tc *c, const char *group, uint64_t after,
                     int32_t limit, struct synced *out) {
  uint64_t pos = after, prev = after;
  memset(out, 0, sizeof *out);
  for (int page = 0; page < 1000; page++) {
    struct mim_packet rsp;
    char d[512];
    sync_try(c, group, pos, limit, &rsp);
    if (rsp.cmd != CMD_SYNC_RSP)
      fail_msg("%s: sync %s after %llu answered by %s", c->uid, group,
               (unsigned long long)pos, tc_describe(&rsp, d, sizeof d));
    assert_int_equal(rsp.seq, c->seq);
    out->pages++;
    if (page == 0)
      out->last_conv_seq = SYNC_LAST(rsp);
    else if (SYNC_LAST(rsp) != out->last_conv_seq)
      fail_msg("%s: sync page %d: last_conv_seq %llu, first page said %llu",
               c->uid, page, (unsigned long long)SYNC_LAST(rsp),
               (unsigned long long)out->last_conv_seq);
    if (limit > 0 && rsp.n_items > (size_t)limit)
      fail_msg("%s: sync page of %zu items, limit %d", c->uid, rsp.n_items,
               limit);
    for (size_t i = 0; i < rsp.n_items; i++) {
      const struct mim_pull_item *it = &rsp.items[i];
      if (it->conv_seq <= pos)
        fail_msg("%s: sync after %llu: item %zu has conv_seq %llu (not "
                 "ascending / not after the position)",
                 c->uid, (unsigned long long)after, out->items.n,
                 (unsigned long long)it->conv_seq);
      if (it->conv_seq > SYNC_LAST(rsp))
        fail_msg("%s: sync item conv_seq %llu above last_conv_seq %llu",
                 c->uid, (unsigned long long)it->conv_seq,
                 (unsigned long long)SYNC_LAST(rsp));
      assert_string_equal(it->group, group);
      assert_int_equal(it->inbox_seq, 0);
      assert_true(it->msg_id > 0);
      pos = it->conv_seq;
      items_add(&out->items, it);
    }
    /* the next page starts at next_after: at or past the page's last item
     * (past it over entries the viewer cannot see), never past the end */
    if (SYNC_NEXT(rsp) < pos || SYNC_NEXT(rsp) > SYNC_LAST(rsp))
      fail_msg("%s: sync page %d: next_after %llu, its last conv_seq %llu, "
               "last_conv_seq %llu", c->uid, page,
               (unsigned long long)SYNC_NEXT(rsp), (unsigned long long)pos,
               (unsigned long long)SYNC_LAST(rsp));
    bool more = rsp.has_more;
    if (more && SYNC_NEXT(rsp) <= prev)
      fail_msg("%s: sync page %d says has_more but next_after %llu does not "
               "move on from %llu", c->uid, page,
               (unsigned long long)SYNC_NEXT(rsp), (unsigned long long)prev);
    if (!more && SYNC_NEXT(rsp) < SYNC_LAST(rsp))
      fail_msg("%s: sync page %d ends (has_more false) at %llu before "
               "last_conv_seq %llu", c->uid, page,
               (unsigned long long)SYNC_NEXT(rsp),
               (unsigned long long)SYNC_LAST(rsp));
    pos = prev = SYNC_NEXT(rsp);
    mim_packet_finish(&rsp);
    if (!more)
      return;
  }
  fail_msg("%s: sync of %s did not end", c->uid, group);
}

/* Asserts the items hold exactly the conv_seqs from+1 .. to, in order. */
static void dense(const struct tc_items *it, uint64_t from, uint64_t to) {
  if (it->n != to - from)
    fail_msg("sync returned %zu items, want %llu (conv_seq %llu..%llu)",
             it->n, (unsigned long long)(to - from),
             (unsigned long long)from + 1, (unsigned long long)to);
  for (size_t i = 0; i < it->n; i++)
    if (it->v[i].conv_seq != from + 1 + i)
      fail_msg("sync item %zu has conv_seq %llu, want %llu", i,
               (unsigned long long)it->v[i].conv_seq,
               (unsigned long long)(from + 1 + i));
}

/* The index of `msg_id` in the items, or -1. */
static long find_msg(const struct tc_items *it, uint64_t msg_id) {
  for (size_t i = 0; i < it->n; i++)
    if (it->v[i].msg_id == msg_id)
      return (long)i;
  return -1;
}

/* The group's newest conv seq as a sync tells `c`. */
static uint64_t last_seq(struct tc *c, const char *group) {
  struct mim_packet rsp;
  char d[512];
  sync_try(c, group, 0, 1, &rsp);
  if (rsp.cmd != CMD_SYNC_RSP)
    fail_msg("%s: sync %s answered by %s", c->uid, group,
             tc_describe(&rsp, d, sizeof d));
  uint64_t last = SYNC_LAST(rsp);
  mim_packet_finish(&rsp);
  return last;
}

/* Whether `msg_id` is in `c`'s inbox (a pull of everything). */
static bool in_pull(struct tc *c, uint64_t msg_id) {
  struct tc_items it = {0};
  tc_pull_all(c, 0, &it);
  bool found = find_msg(&it, msg_id) >= 0;
  tc_items_free(&it);
  return found;
}

static void conv_list(struct tc *c, struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_CONV_LIST_REQ;
  tc_call(c, &req, rsp);
  tc_expect_cmd(rsp, MIM_CMD_CONV_LIST_RSP);
}

/* The list entry of `group` in `c`'s conversation list (strings cleared). */
static struct mim_conv_item conv_of(struct tc *c, const char *group) {
  struct mim_packet l;
  struct mim_conv_item it = {0};
  bool found = false;
  conv_list(c, &l);
  for (size_t i = 0; i < l.n_convs; i++) {
    const struct mim_conv_item *x = &l.convs[i];
    if (x->group != NULL && strcmp(x->group, group) == 0) {
      if (found)
        fail_msg("%s: group %s listed twice", c->uid, group);
      it = *x;
      it.peer = it.group = it.last_from = it.preview = NULL; /* owned by l */
      found = true;
    }
  }
  mim_packet_finish(&l);
  if (!found)
    fail_msg("%s: no conversation with group %s", c->uid, group);
  return it;
}

static void mark_read(struct tc *c, const char *group, uint64_t conv_seq,
                      struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_MARK_READ_REQ;
  req.group = group;
  req.conv_seq = conv_seq;
  tc_call(c, &req, rsp);
  tc_expect_cmd(rsp, MIM_CMD_MARK_READ_RSP);
}

/* ---- tests ---- */

/* A 3-member group writes to inboxes; the add that brings it to
 * group_large_min switches it to the timeline for good. */
static void large_switch(void **state) {
  struct fixture *f = *state;
  struct tc *a = login(f->h, "alice", "phone", LCAPS);
  struct tc *b = login(f->h, "bob", "phone", LCAPS);
  struct tc *d = login(f->h, "dave", "phone", LCAPS);
  const char *two[] = {"bob", "carol"};
  create(a, "g", two, 2);

  /* small: the message is in bob's inbox, pushed with an inbox seq */
  uint64_t m1 = tc_c2g(a, "g", "small", NULL, NULL);
  struct mim_packet p;
  tc_push_msg(b, MIM_CMD_C2G_PUSH, m1, &p);
  assert_true(p.inbox_seq > 0);
  mim_packet_finish(&p);
  assert_true(in_pull(b, m1));

  /* the 4th and 5th members make it large */
  const char *more[] = {"dave", "erin"};
  group_add(a, "g", more, 2);
  /* its notice: once to dave (in his inbox, he was just added), once to
   * bob (live) */
  tc_push(d, MIM_CMD_C2G_PUSH, &p);
  assert_int_equal(p.type, MIM_MSG_SYSTEM);
  assert_true(p.inbox_seq > 0);
  assert_non_null(strstr(p.content, "\"action\":\"add\""));
  uint64_t add_notice = p.msg_id;
  mim_packet_finish(&p);
  tc_push_msg(b, MIM_CMD_C2G_PUSH, add_notice, &p);
  mim_packet_finish(&p);
  uint64_t prev = last_seq(b, "g");
  assert_true(prev >= 3); /* create notice, m1, add notice */

  uint64_t m2 = lsend(a, "g", "large");
  lpush(b, m2, prev + 1, "alice", "g", "large");
  lpush(d, m2, prev + 1, "alice", "g", "large"); /* a new member too */
  /* an ack of a push without inbox seq is ignored: no error, no kick */
  tc_ack(b, MIM_CMD_C2G_PUSH_ACK, m2, 0);
  tc_barrier(b);
  tc_assert_no_cmd(b, MIM_CMD_ERROR);
  tc_assert_no_cmd(b, MIM_CMD_KICK);
  /* in nobody's inbox: bob's, dave's */
  assert_false(in_pull(b, m2));
  assert_false(in_pull(d, m2));
  assert_true(in_pull(b, m1)); /* what was stored before stays */
  no_push(a, m2); /* the sending connection has the reply */
  tc_assert_no_msg(b, MIM_CMD_C2G_PUSH, add_notice);
  tc_assert_no_msg(d, MIM_CMD_C2G_PUSH, add_notice);
  tc_assert_no_msg(b, MIM_CMD_C2G_PUSH, m2);
  tc_assert_no_msg(d, MIM_CMD_C2G_PUSH, m2);

  /* a second one takes the next seq, and the switch is for good: a member
   * leaving (4 < 5) changes nothing */
  group_remove(a, "g", "erin");
  uint64_t prev2 = last_seq(b, "g");
  assert_true(prev2 >= prev + 2); /* m2, remove notice */
  uint64_t m3 = lsend(a, "g", "still large");
  lpush(b, m3, prev2 + 1, "alice", "g", "still large");
  assert_false(in_pull(b, m3));

  /* the whole timeline, oldest first, messages and notices */
  struct synced s;
  sync_all(b, "g", 0, 100, &s);
  assert_int_equal(s.last_conv_seq, prev2 + 1);
  dense(&s.items, 0, prev2 + 1);
  assert_int_equal(s.items.v[0].type, MIM_MSG_SYSTEM); /* the create */
  long i1 = find_msg(&s.items, m1), i2 = find_msg(&s.items, m2),
       i3 = find_msg(&s.items, m3);
  assert_true(i1 >= 0 && i2 > i1 && i3 > i2);
  assert_int_equal(s.items.v[i2].conv_seq, prev + 1);
  assert_string_equal(s.items.v[i2].content, "large");
  assert_string_equal(s.items.v[i2].from, "alice");
  assert_int_equal(s.items.v[i3].conv_seq, prev2 + 1);
  size_t notices = 0;
  for (size_t i = 0; i < s.items.n; i++)
    notices += s.items.v[i].type == MIM_MSG_SYSTEM;
  assert_int_equal(notices, 3); /* create, add, remove */
  assert_int_equal(s.items.n, 6);
  tc_items_free(&s.items);
  PASSED(f);
}

/* A seed client (no MIM_CAP_LARGE) is never pushed a large group's
 * message; history shows it. */
static void large_seed(void **state) {
  struct fixture *f = *state;
  struct tc *a = login(f->h, "alice", "phone", LCAPS);
  create(a, "g", FOUR, 4);
  struct tc *b = login(f->h, "bob", "seed", 0);
  struct tc *c = login(f->h, "carol", "phone", LCAPS);
  assert_int_equal(b->caps & CAP_LARGE, 0);

  uint64_t m = lsend(a, "g", "for the timeline");
  lpush(c, m, 0, "alice", "g", "for the timeline"); /* it was pushed */
  wsc_ctx_service(WS, QUIET_MS);
  /* a later message from carol: bob's next packet is that one, nothing
   * of the group came before it */
  uint64_t cm = tc_c2c(c, "bob", "direct", NULL, NULL);
  struct mim_packet p;
  char d[512];
  assert_int_equal(wsc_recv(b->ws, TC_PUSH_MS, &p), 0);
  if (p.cmd != MIM_CMD_C2C_PUSH || p.msg_id != cm)
    fail_msg("seed client's next packet: %s msg_id %llu, want the c2c push "
             "%llu", tc_describe(&p, d, sizeof d),
             (unsigned long long)p.msg_id, (unsigned long long)cm);
  mim_packet_finish(&p);
  tc_barrier(b);
  tc_assert_no_msg(b, MIM_CMD_C2G_PUSH, m);
  assert_false(in_pull(b, m));

  /* history (newest first) has it */
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_HISTORY_REQ;
  req.group = "g";
  req.limit = 10;
  tc_call(b, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_HISTORY_RSP);
  assert_true(rsp.n_items >= 1);
  assert_int_equal(rsp.items[0].msg_id, m);
  assert_string_equal(rsp.items[0].content, "for the timeline");
  assert_string_equal(rsp.items[0].from, "alice");
  assert_int_equal(rsp.items[0].conv_seq, last_seq(a, "g"));
  mim_packet_finish(&rsp);
  /* a seed client may sync too: no capability needed */
  struct synced s;
  sync_all(b, "g", 0, 0, &s);
  assert_true(find_msg(&s.items, m) >= 0);
  tc_items_free(&s.items);
  PASSED(f);
}

/* Sync pages of 7 through 30 messages (and the create notice). */
static void large_sync_paging(void **state) {
  struct fixture *f = *state;
  enum { N = 30, LIMIT = 7 };
  struct tc *a = login(f->h, "alice", "phone", LCAPS);
  create(a, "g", FOUR, 4);
  struct tc *b = login(f->h, "bob", "phone", LCAPS);
  uint64_t ids[N];
  char text[32];
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "m%02d", i);
    ids[i] = lsend(a, "g", text);
  }
  struct synced s;
  sync_all(b, "g", 0, LIMIT, &s);
  assert_int_equal(s.last_conv_seq, N + 1);
  dense(&s.items, 0, N + 1); /* every conv_seq once, ascending */
  assert_int_equal(s.pages, (N + 1 + LIMIT - 1) / LIMIT);
  assert_int_equal(s.items.v[0].type, MIM_MSG_SYSTEM);
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "m%02d", i);
    assert_int_equal(s.items.v[i + 1].msg_id, ids[i]);
    assert_string_equal(s.items.v[i + 1].content, text);
  }
  tc_items_free(&s.items);

  /* each page by hand: full pages say has_more, the last does not */
  struct mim_packet rsp;
  sync_try(b, "g", 0, LIMIT, &rsp);
  tc_expect_cmd(&rsp, CMD_SYNC_RSP);
  assert_int_equal(rsp.n_items, LIMIT);
  assert_true(rsp.has_more);
  assert_int_equal(SYNC_NEXT(rsp), LIMIT);
  mim_packet_finish(&rsp);
  sync_try(b, "g", 28, LIMIT, &rsp);
  tc_expect_cmd(&rsp, CMD_SYNC_RSP);
  assert_int_equal(rsp.n_items, 3);
  assert_false(rsp.has_more);
  assert_int_equal(SYNC_NEXT(rsp), N + 1);
  assert_int_equal(rsp.items[0].conv_seq, 29);
  mim_packet_finish(&rsp);
  /* at the end: empty, nothing more, the position kept */
  sync_try(b, "g", N + 1, LIMIT, &rsp);
  tc_expect_cmd(&rsp, CMD_SYNC_RSP);
  assert_int_equal(rsp.n_items, 0);
  assert_false(rsp.has_more);
  assert_int_equal(SYNC_NEXT(rsp), N + 1);
  assert_int_equal(SYNC_LAST(rsp), N + 1);
  mim_packet_finish(&rsp);

  /* pages also stop at reply_bytes_max (512 KiB): 20 messages of 30,000
   * bytes cannot come in one page, and next_after then says where the
   * page was cut, not where the window ended */
  enum { NB = 20, BIG = 30000 };
  create(a, "big", FOUR, 4);
  char *body = malloc(BIG + 1);
  assert_non_null(body);
  for (int i = 0; i < NB; i++) {
    memset(body, 'a' + i, BIG);
    body[BIG] = '\0';
    lsend(a, "big", body);
  }
  sync_try(b, "big", 0, 100, &rsp);
  tc_expect_cmd(&rsp, CMD_SYNC_RSP);
  assert_true(rsp.n_items > 1 && rsp.n_items < NB);
  assert_true(rsp.has_more);
  assert_int_equal(SYNC_NEXT(rsp), rsp.items[rsp.n_items - 1].conv_seq);
  mim_packet_finish(&rsp);
  sync_all(b, "big", 0, 100, &s);
  assert_true(s.pages >= 2);
  dense(&s.items, 0, NB + 1);
  for (int i = 0; i < NB; i++) {
    assert_int_equal(strlen(s.items.v[i + 1].content), BIG);
    assert_int_equal(s.items.v[i + 1].content[0], 'a' + i);
  }
  tc_items_free(&s.items);
  free(body);
  PASSED(f);
}

/* Offline over 10 messages and a logicd restart. */
static void large_restart(void **state) {
  struct fixture *f = *state;
  enum { N = 10 };
  struct tc *a = login(f->h, "alice", "phone", LCAPS);
  create(a, "g", FOUR, 4);
  uint64_t first = lsend(a, "g", "before");
  struct tc *b = login(f->h, "bob", "phone", LCAPS);
  struct tc *c = login(f->h, "carol", "phone", LCAPS);
  /* bob has seen everything so far and says so */
  uint64_t seen = last_seq(b, "g");
  assert_int_equal(seen, 2);
  struct mim_packet r;
  mark_read(b, "g", seen, &r);
  assert_int_equal(r.read_seq, seen);
  assert_int_equal(r.unread, 0);
  mim_packet_finish(&r);
  tc_free(b);

  uint64_t ids[N];
  char text[32];
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "offline %d", i);
    ids[i] = lsend(a, "g", text);
    lpush(c, ids[i], seen + 1 + i, "alice", "g", text);
  }
  (void)first;

  /* logicd comes back with a higher threshold: the group stays large (the
   * switch is for good), a new group of 5 is small */
  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);
  snprintf(large_min, sizeof large_min, "%d", 1000);
  assert_int_equal(h_start_logicd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 10000), 0);

  tc_free(a);
  a = login(f->h, "alice", "phone", LCAPS);
  b = login(f->h, "bob", "phone", LCAPS);
  struct mim_conv_item it = conv_of(b, "g");
  assert_true(CONV_LARGE(it));
  assert_int_equal(it.last_conv_seq, seen + N);
  assert_int_equal(it.last_msg_id, ids[N - 1]);
  assert_int_equal(it.read_seq, seen);
  assert_int_equal(it.unread, N);

  struct synced s;
  sync_all(b, "g", seen, 0, &s);
  assert_int_equal(s.last_conv_seq, seen + N);
  dense(&s.items, seen, seen + N);
  for (int i = 0; i < N; i++) {
    snprintf(text, sizeof text, "offline %d", i);
    assert_int_equal(s.items.v[i].msg_id, ids[i]);
    assert_string_equal(s.items.v[i].content, text);
  }
  tc_items_free(&s.items);

  /* live again: to bob who logged in after the restart, and to carol whose
   * connection lived through it (the gateway restored her session) */
  uint64_t m = lsend(a, "g", "after");
  lpush(b, m, seen + N + 1, "alice", "g", "after");
  lpush(c, m, seen + N + 1, "alice", "g", "after");
  create(a, "g2", FOUR, 4);
  uint64_t s2 = tc_c2g(a, "g2", "small again", NULL, NULL); /* inbox seq */
  assert_true(in_pull(b, s2));
  assert_false(CONV_LARGE(conv_of(b, "g2")));
  PASSED(f);
}

/* Pushes and sync follow the membership. */
static void large_membership(void **state) {
  struct fixture *f = *state;
  struct tc *a = login(f->h, "alice", "phone", LCAPS);
  create(a, "g", FOUR, 4);
  struct tc *b = login(f->h, "bob", "phone", LCAPS);
  struct tc *c = login(f->h, "carol", "phone", LCAPS);
  struct tc *fr = login(f->h, "frank", "phone", LCAPS);

  uint64_t m1 = lsend(a, "g", "one");
  lpush(b, m1, 2, "alice", "g", "one");
  lpush(c, m1, 2, "alice", "g", "one");
  no_push(fr, m1);

  group_remove(a, "g", "bob");
  /* bob learns he was removed: the notice reaches his inbox and device */
  struct mim_packet n;
  tc_push(b, MIM_CMD_C2G_PUSH, &n);
  assert_int_equal(n.type, MIM_MSG_SYSTEM);
  assert_true(n.inbox_seq > 0);
  assert_non_null(strstr(n.content, "\"action\":\"remove\""));
  uint64_t rm_notice = n.msg_id;
  mim_packet_finish(&n);
  uint64_t m2 = lsend(a, "g", "two");
  lpush(c, m2, 4, "alice", "g", "two"); /* it went out ... */
  no_push(b, m2);                       /* ... not to bob */
  tc_assert_no_msg(b, MIM_CMD_C2G_PUSH, rm_notice); /* only once */
  no_push(fr, m2);
  struct mim_packet rsp;
  sync_try(b, "g", 0, 0, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, CMD_SYNC_REQ);
  mim_packet_finish(&rsp);
  sync_try(b, "g", 3, 0, &rsp);
  tc_expect_error(&rsp, E_NOT_MEMBER, CMD_SYNC_REQ);
  mim_packet_finish(&rsp);

  /* a new login of bob does not follow the group again either */
  struct tc *b2 = login(f->h, "bob", "laptop", LCAPS);

  /* frank joins at conv seq 4: he sees the add notice (5) and on */
  const char *fk = "frank";
  group_add(a, "g", &fk, 1);
  tc_push(fr, MIM_CMD_C2G_PUSH, &n); /* his notice, in his inbox */
  assert_int_equal(n.type, MIM_MSG_SYSTEM);
  assert_true(n.inbox_seq > 0);
  assert_int_equal(n.conv_seq, 5);
  uint64_t add_notice = n.msg_id;
  mim_packet_finish(&n);
  uint64_t m3 = lsend(a, "g", "three");
  lpush(fr, m3, 6, "alice", "g", "three");
  lpush(c, m3, 6, "alice", "g", "three");
  no_push(b, m3);
  no_push(b2, m3);
  tc_assert_no_msg(fr, MIM_CMD_C2G_PUSH, add_notice); /* only once */
  struct synced s;
  sync_all(fr, "g", 0, 0, &s);
  assert_int_equal(s.last_conv_seq, 6);
  dense(&s.items, 4, 6);
  assert_int_equal(s.items.v[0].type, MIM_MSG_SYSTEM); /* the add */
  assert_int_equal(s.items.v[1].msg_id, m3);
  assert_int_equal(find_msg(&s.items, m1), -1);
  assert_int_equal(find_msg(&s.items, m2), -1);
  tc_items_free(&s.items);
  /* asking for what came before the join changes nothing */
  sync_all(fr, "g", 1, 0, &s);
  dense(&s.items, 4, 6);
  tc_items_free(&s.items);

  /* the conversation lists: frank's counts from his join; bob's stops at
   * his removal and shows nothing sent after it */
  struct mim_conv_item it = conv_of(fr, "g");
  assert_true(CONV_LARGE(it));
  assert_int_equal(it.last_conv_seq, 6);
  assert_int_equal(it.last_msg_id, m3);
  assert_int_equal(it.unread, 2);
  struct mim_packet l;
  bool listed = false;
  conv_list(b2, &l);
  for (size_t i = 0; i < l.n_convs; i++) {
    const struct mim_conv_item *x = &l.convs[i];
    if (x->group == NULL || strcmp(x->group, "g") != 0)
      continue;
    const char *pv = x->preview != NULL ? x->preview : "";
    listed = true; /* a group one left stays listed (§18) */
    assert_int_equal(x->unread, 0);
    assert_int_equal(x->last_conv_seq, 3); /* the notice of his removal */
    assert_true(x->last_msg_id != m2 && x->last_msg_id != m3);
    assert_string_not_equal(pv, "two");
    assert_string_not_equal(pv, "three");
  }
  mim_packet_finish(&l);
  assert_true(listed);

  /* bob is added back (at conv seq 6): both his connections follow again,
   * and he sees the group from this join on, not from his first */
  const char *bk = "bob";
  group_add(a, "g", &bk, 1);
  uint64_t m4 = lsend(a, "g", "four");
  lpush(b, m4, 8, "alice", "g", "four");
  lpush(b2, m4, 8, "alice", "g", "four");
  no_push(b, m4);
  tc_assert_no_msg(b2, MIM_CMD_C2G_PUSH, m4);
  sync_all(b, "g", 0, 0, &s);
  assert_int_equal(s.last_conv_seq, 8);
  dense(&s.items, 6, 8);
  assert_int_equal(s.items.v[1].msg_id, m4);
  tc_items_free(&s.items);
  it = conv_of(b, "g");
  assert_true(CONV_LARGE(it));
  assert_int_equal(it.last_conv_seq, 8);
  assert_int_equal(it.unread, 2);
  PASSED(f);
}

/* Sync by a stranger: a large group, a small group, no group at all all
 * answer the same NOT_MEMBER. */
static void large_non_member(void **state) {
  struct fixture *f = *state;
  struct tc *a = login(f->h, "alice", "phone", LCAPS);
  create(a, "g", FOUR, 4);
  const char *one = "bob";
  create(a, "small", &one, 1);
  lsend(a, "g", "secret");
  struct tc *e = login(f->h, "eve", "phone", LCAPS);
  const char *groups[] = {"g", "small", "nosuch"};
  char text[3][256];
  for (size_t i = 0; i < 3; i++) {
    struct mim_packet rsp;
    sync_try(e, groups[i], 0, 10, &rsp);
    tc_expect_error(&rsp, E_NOT_MEMBER, CMD_SYNC_REQ);
    assert_int_equal(rsp.seq, e->seq);
    snprintf(text[i], sizeof text[i], "%s", rsp.text ? rsp.text : "");
    mim_packet_finish(&rsp);
  }
  assert_string_equal(text[0], text[2]);
  assert_string_equal(text[1], text[2]);
  /* a member of the small group may sync it (any group) */
  struct tc *b = login(f->h, "bob", "phone", 0);
  struct synced s;
  sync_all(b, "small", 0, 0, &s);
  dense(&s.items, 0, 1);
  tc_items_free(&s.items);
  PASSED(f);
}

/* The sender's other device is pushed; nobody gets a message twice. */
static void large_other_device(void **state) {
  struct fixture *f = *state;
  struct tc *a1 = login(f->h, "alice", "phone", LCAPS);
  create(a1, "g", FOUR, 4);
  struct tc *a2 = login(f->h, "alice", "laptop", LCAPS);
  struct tc *b = login(f->h, "bob", "phone", LCAPS);
  /* a batch client (several frames per websocket message) too */
  struct tc *b2 = login(f->h, "bob", "laptop", LCAPS | MIM_CAP_BATCH);

  for (int k = 0; k < 3; k++) {
    uint64_t m = lsend(a1, "g", "hi");
    lpush(a2, m, 2 + k, "alice", "g", "hi");
    lpush(b, m, 2 + k, "alice", "g", "hi");
    lpush(b2, m, 2 + k, "alice", "g", "hi");
    no_push(a1, m);
    tc_assert_no_msg(a2, MIM_CMD_C2G_PUSH, m);
    tc_assert_no_msg(b, MIM_CMD_C2G_PUSH, m);
    tc_assert_no_msg(b2, MIM_CMD_C2G_PUSH, m);
  }
  /* the other way round: bob's laptop sends */
  uint64_t m = lsend(b2, "g", "back");
  lpush(b, m, 5, "bob", "g", "back");
  lpush(a1, m, 5, "bob", "g", "back");
  lpush(a2, m, 5, "bob", "g", "back");
  no_push(b2, m);
  tc_assert_no_msg(b, MIM_CMD_C2G_PUSH, m);
  tc_assert_no_msg(a1, MIM_CMD_C2G_PUSH, m);
  tc_assert_no_msg(a2, MIM_CMD_C2G_PUSH, m);

  /* bob's phone logs in again on a new connection (the old one is kicked):
   * the new one gets each message once, the old one nothing more */
  struct tc *b3 = login(f->h, "bob", "phone", LCAPS);
  struct mim_packet k;
  assert_int_equal(wsc_recv_cmd(b->ws, MIM_CMD_KICK, TC_REPLY_MS, &k), 0);
  mim_packet_finish(&k);
  m = lsend(a1, "g", "again");
  lpush(b3, m, 6, "alice", "g", "again");
  lpush(b2, m, 6, "alice", "g", "again");
  no_push(b3, m);
  tc_assert_no_msg(b2, MIM_CMD_C2G_PUSH, m);
  tc_assert_no_msg(b, MIM_CMD_C2G_PUSH, m);

  /* bob's laptop logs out and stays connected (until its login deadline):
   * it follows the group no more */
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_LOGOUT_REQ;
  req.uid = "bob";
  tc_call(b2, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_LOGOUT_RSP);
  mim_packet_finish(&rsp);
  m = lsend(a1, "g", "gone");
  lpush(b3, m, 7, "alice", "g", "gone");
  no_push(b3, m);
  wsc_ctx_service(WS, QUIET_MS);
  tc_assert_no_msg(b2, MIM_CMD_C2G_PUSH, m);
  PASSED(f);
}

/* Read positions and read-by in a large group. */
static void large_receipts(void **state) {
  struct fixture *f = *state;
  struct tc *a = login(f->h, "alice", "phone", LCAPS);
  create(a, "g", FOUR, 4);
  struct tc *b = login(f->h, "bob", "phone", LCAPS);
  struct tc *b2 = login(f->h, "bob", "laptop", LCAPS);
  struct tc *c = login(f->h, "carol", "phone", LCAPS);
  uint64_t last = 0;
  for (int i = 0; i < 3; i++)
    last = lsend(a, "g", "read me");
  struct mim_conv_item it = conv_of(b, "g");
  assert_true(CONV_LARGE(it));
  assert_int_equal(it.last_msg_id, last);
  assert_int_equal(it.last_conv_seq, 4);
  assert_int_equal(it.unread, 4); /* the create notice and 3 messages */
  assert_int_equal(conv_of(a, "g").unread, 0); /* own messages */

  struct mim_packet r, p;
  mark_read(b, "g", UINT64_MAX, &r); /* "all": what is stored, no further */
  assert_int_equal(r.read_seq, 4);
  assert_int_equal(r.unread, 0);
  mim_packet_finish(&r);
  tc_push(b2, MIM_CMD_READ_SYNC, &p); /* bob's other device follows */
  assert_string_equal(p.group, "g");
  assert_int_equal(p.read_seq, 4);
  mim_packet_finish(&p);
  it = conv_of(b, "g");
  assert_int_equal(it.unread, 0);
  assert_int_equal(it.read_seq, 4);
  assert_int_equal(conv_of(c, "g").unread, 4); /* carol's is hers */

  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_READ_BY_REQ;
  req.group = "g";
  req.conv_seq = 4;
  req.limit = 10;
  tc_call(a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_int_equal(rsp.read_count, 2); /* alice (the sender) and bob */
  assert_int_equal(rsp.member_count, 5);
  assert_int_equal(rsp.n_members, 2);
  bool alice = false, bob = false;
  for (size_t i = 0; i < rsp.n_members; i++) {
    alice |= strcmp(rsp.members[i], "alice") == 0;
    bob |= strcmp(rsp.members[i], "bob") == 0;
  }
  assert_true(alice && bob);
  mim_packet_finish(&rsp);
  /* a new message is unread for bob again, and bob reading it counts */
  uint64_t m = lsend(a, "g", "one more");
  lpush(b, m, 5, "alice", "g", "one more");
  assert_int_equal(conv_of(b, "g").unread, 1);
  mark_read(b2, "g", 5, &r);
  mim_packet_finish(&r);
  req.conv_seq = 5;
  req.limit = 0;
  tc_call(c, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_READ_BY_RSP);
  assert_int_equal(rsp.read_count, 2);
  mim_packet_finish(&rsp);
  PASSED(f);
}

/* ====================================================================== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const struct CMUnitTest all_tests[] = {
    T(large_switch),     T(large_seed),         T(large_sync_paging),
    T(large_restart),    T(large_membership),   T(large_non_member),
    T(large_other_device), T(large_receipts),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-large", all_tests, COUNT(all_tests),
                &WS, 0);
}
