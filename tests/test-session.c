/* Route table and fan-out (lib/session.c, lib/fanout.c). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mim/session.h>

#include "util/htable.h" /* lib/: the keyed hash every client-keyed table uses */

static struct mim_conn_ref conn(uint32_t gateway, uint64_t conn_id) {
  struct mim_conn_ref c = {gateway, conn_id};
  return c;
}

static int sessions_setup(void **state) {
  struct mim_sessions *s = NULL;
  assert_int_equal(mim_sessions_create(&s), 0);
  *state = s;
  return 0;
}

static int sessions_teardown(void **state) {
  mim_sessions_destroy(*state); /* frees whatever a test left bound */
  return 0;
}

/* Binds and checks the call succeeded without replacing anything. */
static void bind_new(struct mim_sessions *s, const char *uid,
                     const char *device, struct mim_conn_ref c) {
  bool did_replace = true;
  assert_int_equal(mim_sessions_bind(s, uid, device, c, 0, NULL, &did_replace),
                   0);
  assert_false(did_replace);
}

/* Collects what foreach_device / unbind_gateway hand to their callback. */
struct seen {
  size_t n;
  struct mim_conn_ref conn[16];
  char uid[16][32];
  char device[16][32];
};

static void collect(void *user, const struct mim_route *r) {
  struct seen *v = user;
  assert_true(v->n < 16);
  v->conn[v->n] = r->conn;
  snprintf(v->uid[v->n], sizeof v->uid[0], "%s", r->uid);
  snprintf(v->device[v->n], sizeof v->device[0], "%s", r->device);
  v->n++;
}

/* ---- sessions ---- */

static void bind_then_lookup_copies_strings(void **state) {
  struct mim_sessions *s = *state;
  char uid[] = "alice", device[] = "phone";
  assert_int_equal(mim_sessions_bind(s, uid, device, conn(1, 42), 7, NULL,
                                     NULL),
                   0);
  /* The table must own its copies, not the caller's buffers. */
  memset(uid, 'x', sizeof uid - 1);
  memset(device, 'y', sizeof device - 1);

  struct mim_route r;
  assert_int_equal(mim_sessions_lookup(s, conn(1, 42), &r), 0);
  assert_string_equal(r.uid, "alice");
  assert_string_equal(r.device, "phone");
  assert_int_equal(r.conn.gateway, 1);
  assert_int_equal(r.conn.conn_id, 42);
  assert_int_equal(r.caps, 7);
  assert_int_equal(mim_sessions_count(s), 1);

  /* Same conn_id on another gateway is another connection. */
  assert_int_equal(mim_sessions_lookup(s, conn(2, 42), &r), -ENOENT);
  assert_int_equal(mim_sessions_lookup(s, conn(1, 43), &r), -ENOENT);
}

static void two_devices_of_one_uid_coexist(void **state) {
  struct mim_sessions *s = *state;
  bind_new(s, "alice", "phone", conn(1, 1));
  bind_new(s, "alice", "laptop", conn(2, 1));
  bind_new(s, "bob", "phone", conn(1, 2));
  assert_int_equal(mim_sessions_count(s), 3);

  struct seen v = {0};
  assert_int_equal(mim_sessions_foreach_device(s, "alice", collect, &v), 2);
  assert_int_equal(v.n, 2);
  /* Login order. */
  assert_string_equal(v.device[0], "phone");
  assert_int_equal(v.conn[0].gateway, 1);
  assert_string_equal(v.device[1], "laptop");
  assert_int_equal(v.conn[1].gateway, 2);
  assert_string_equal(v.uid[0], "alice");
  assert_string_equal(v.uid[1], "alice");

  assert_int_equal(mim_sessions_foreach_device(s, "bob", NULL, NULL), 1);
  assert_int_equal(mim_sessions_foreach_device(s, "carol", collect, &v), 0);
}

static void same_device_on_new_conn_replaces_and_reports_old(void **state) {
  struct mim_sessions *s = *state;
  bind_new(s, "alice", "phone", conn(1, 10));
  bind_new(s, "alice", "laptop", conn(1, 11));

  struct mim_conn_ref old = {0, 0};
  bool did_replace = false;
  assert_int_equal(mim_sessions_bind(s, "alice", "phone", conn(2, 20), 3, &old,
                                     &did_replace),
                   0);
  assert_true(did_replace);
  assert_int_equal(old.gateway, 1);
  assert_int_equal(old.conn_id, 10);

  /* One route per (uid, device): the old connection has none left. */
  assert_int_equal(mim_sessions_count(s), 2);
  struct mim_route r;
  assert_int_equal(mim_sessions_lookup(s, conn(1, 10), &r), -ENOENT);
  assert_int_equal(mim_sessions_lookup(s, conn(2, 20), &r), 0);
  assert_string_equal(r.uid, "alice");
  assert_string_equal(r.device, "phone");
  assert_int_equal(r.caps, 3);

  struct seen v = {0};
  assert_int_equal(mim_sessions_foreach_device(s, "alice", collect, &v), 2);
  assert_true((v.conn[0].gateway == 2 && v.conn[0].conn_id == 20) ||
              (v.conn[1].gateway == 2 && v.conn[1].conn_id == 20));
}

static void stale_unbind_after_replace_keeps_new_route(void **state) {
  struct mim_sessions *s = *state;
  bind_new(s, "alice", "phone", conn(1, 10));
  assert_int_equal(
      mim_sessions_bind(s, "alice", "phone", conn(1, 11), 0, NULL, NULL), 0);

  /* The kicked connection closes after the new login: it must not take the
   * new route with it (the seed's bug). */
  assert_int_equal(mim_sessions_unbind(s, conn(1, 10)), -ENOENT);
  assert_int_equal(mim_sessions_count(s), 1);
  struct mim_route r;
  assert_int_equal(mim_sessions_lookup(s, conn(1, 11), &r), 0);
  assert_int_equal(mim_sessions_foreach_device(s, "alice", NULL, NULL), 1);

  assert_int_equal(mim_sessions_unbind(s, conn(1, 11)), 0);
  assert_int_equal(mim_sessions_unbind(s, conn(1, 11)), -ENOENT);
  assert_int_equal(mim_sessions_count(s), 0);
  assert_int_equal(mim_sessions_foreach_device(s, "alice", NULL, NULL), 0);

  /* The connection may log in again once unbound. */
  bind_new(s, "alice", "phone", conn(1, 11));
  assert_int_equal(mim_sessions_count(s), 1);
}

static void conn_with_a_route_cannot_bind_again(void **state) {
  struct mim_sessions *s = *state;
  bind_new(s, "alice", "phone", conn(1, 1));
  bool did_replace = true;
  assert_int_equal(mim_sessions_bind(s, "bob", "tablet", conn(1, 1), 0, NULL,
                                     &did_replace),
                   -EEXIST);
  assert_false(did_replace);
  assert_int_equal(
      mim_sessions_bind(s, "alice", "phone", conn(1, 1), 0, NULL, NULL),
      -EEXIST);
  /* Nothing changed. */
  assert_int_equal(mim_sessions_count(s), 1);
  assert_int_equal(mim_sessions_foreach_device(s, "bob", NULL, NULL), 0);
  struct mim_route r;
  assert_int_equal(mim_sessions_lookup(s, conn(1, 1), &r), 0);
  assert_string_equal(r.uid, "alice");
}

static void invalid_ids_are_rejected(void **state) {
  struct mim_sessions *s = *state;
  char max[MIM_ID_MAX + 2];
  memset(max, 'a', sizeof max);
  max[MIM_ID_MAX] = '\0';

  const char *bad[] = {"", "a b", "a\tb", "a\nb", "a\x7f", "\x01x",
                       "\xc3" /* truncated UTF-8 */};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(
        mim_sessions_bind(s, bad[i], "phone", conn(1, i), 0, NULL, NULL),
        -EINVAL);
    assert_int_equal(
        mim_sessions_bind(s, "alice", bad[i], conn(1, i), 0, NULL, NULL),
        -EINVAL);
  }
  assert_int_equal(mim_sessions_bind(s, NULL, "phone", conn(1, 1), 0, NULL,
                                     NULL),
                   -EINVAL);
  assert_int_equal(mim_sessions_bind(s, "alice", NULL, conn(1, 1), 0, NULL,
                                     NULL),
                   -EINVAL);
  assert_int_equal(mim_sessions_count(s), 0);

  /* Exactly MIM_ID_MAX bytes passes, one more fails. */
  bind_new(s, max, max, conn(1, 100));
  max[MIM_ID_MAX] = 'a';
  max[MIM_ID_MAX + 1] = '\0';
  assert_int_equal(mim_sessions_bind(s, max, "phone", conn(1, 101), 0, NULL,
                                     NULL),
                   -EINVAL);
  assert_int_equal(mim_sessions_bind(s, "alice", max, conn(1, 101), 0, NULL,
                                     NULL),
                   -EINVAL);
  /* UTF-8 is allowed. */
  bind_new(s, "\xe5\xbc\xa0\xe4\xb8\x89", "\xc3\xa9t\xc3\xa9", conn(1, 102));
  assert_int_equal(mim_sessions_count(s), 2);
  assert_int_equal(mim_sessions_foreach_device(s, "a b", NULL, NULL), 0);
  assert_int_equal(mim_sessions_foreach_device(s, NULL, NULL, NULL), 0);
}

static void unbind_gateway_removes_only_that_gateway(void **state) {
  struct mim_sessions *s = *state;
  /* alice's first device (head of her device list) is on the dying gateway. */
  bind_new(s, "alice", "phone", conn(1, 1));
  bind_new(s, "alice", "laptop", conn(2, 1));
  bind_new(s, "alice", "tablet", conn(3, 1));
  bind_new(s, "bob", "phone", conn(1, 2));
  bind_new(s, "carol", "phone", conn(2, 2));

  struct seen v = {0};
  assert_int_equal(mim_sessions_unbind_gateway(s, 1, collect, &v), 2);
  assert_int_equal(v.n, 2);
  for (size_t i = 0; i < v.n; i++) {
    assert_int_equal(v.conn[i].gateway, 1);
    assert_true(strcmp(v.uid[i], "alice") == 0 || strcmp(v.uid[i], "bob") == 0);
  }
  assert_string_not_equal(v.uid[0], v.uid[1]);

  assert_int_equal(mim_sessions_count(s), 3);
  struct mim_route r;
  assert_int_equal(mim_sessions_lookup(s, conn(1, 1), &r), -ENOENT);
  assert_int_equal(mim_sessions_lookup(s, conn(1, 2), &r), -ENOENT);
  assert_int_equal(mim_sessions_lookup(s, conn(2, 1), &r), 0);
  assert_int_equal(mim_sessions_lookup(s, conn(3, 1), &r), 0);
  assert_int_equal(mim_sessions_lookup(s, conn(2, 2), &r), 0);

  struct seen a = {0};
  assert_int_equal(mim_sessions_foreach_device(s, "alice", collect, &a), 2);
  assert_string_equal(a.device[0], "laptop");
  assert_string_equal(a.device[1], "tablet");
  assert_int_equal(mim_sessions_foreach_device(s, "bob", NULL, NULL), 0);

  /* The dead gateway's devices can log in again elsewhere. */
  bind_new(s, "alice", "phone", conn(3, 9));
  assert_int_equal(mim_sessions_foreach_device(s, "alice", NULL, NULL), 3);

  assert_int_equal(mim_sessions_unbind_gateway(s, 7, collect, &v), 0);
  assert_int_equal(mim_sessions_unbind_gateway(s, 2, NULL, NULL), 2);
  assert_int_equal(mim_sessions_count(s), 2);
}

#define MANY 10000

static void growth_keeps_every_route(void **state) {
  struct mim_sessions *s = *state;
  char uid[32], dev[32];
  /* Two devices per uid on different gateways. */
  for (unsigned i = 0; i < MANY; i++) {
    snprintf(uid, sizeof uid, "user-%u", i / 2);
    snprintf(dev, sizeof dev, "dev-%u", i % 2);
    bind_new(s, uid, dev, conn(1 + i % 3, 1000 + i));
  }
  assert_int_equal(mim_sessions_count(s), MANY);

  struct mim_route r;
  for (unsigned i = 0; i < MANY; i++) {
    assert_int_equal(mim_sessions_lookup(s, conn(1 + i % 3, 1000 + i), &r), 0);
    snprintf(uid, sizeof uid, "user-%u", i / 2);
    snprintf(dev, sizeof dev, "dev-%u", i % 2);
    assert_string_equal(r.uid, uid);
    assert_string_equal(r.device, dev);
  }
  /* Unbind every dev-0: each uid keeps exactly its dev-1. */
  for (unsigned i = 0; i < MANY; i += 2)
    assert_int_equal(mim_sessions_unbind(s, conn(1 + i % 3, 1000 + i)), 0);
  assert_int_equal(mim_sessions_count(s), MANY / 2);
  for (unsigned i = 0; i < MANY; i++) {
    int rc = mim_sessions_lookup(s, conn(1 + i % 3, 1000 + i), &r);
    if (i % 2 == 0) {
      assert_int_equal(rc, -ENOENT);
      continue;
    }
    assert_int_equal(rc, 0);
    snprintf(uid, sizeof uid, "user-%u", i / 2);
    assert_string_equal(r.uid, uid);
    assert_string_equal(r.device, "dev-1");
    struct seen v = {0};
    assert_int_equal(mim_sessions_foreach_device(s, uid, collect, &v), 1);
    assert_int_equal(v.conn[0].conn_id, 1000 + i);
  }
  /* Duplicate login still detected in a grown table. */
  struct mim_conn_ref old;
  bool did_replace = false;
  assert_int_equal(mim_sessions_bind(s, "user-77", "dev-1", conn(9, 1), 0,
                                     &old, &did_replace),
                   0);
  assert_true(did_replace);
  assert_int_equal(old.conn_id, 1000 + 155);

  /* Mass removal (and the shrink behind it) keeps the rest reachable. */
  size_t gone = mim_sessions_unbind_gateway(s, 1, NULL, NULL) +
                mim_sessions_unbind_gateway(s, 2, NULL, NULL);
  assert_int_equal(mim_sessions_count(s), MANY / 2 - gone);
  size_t left = 0;
  for (unsigned i = 1; i < MANY; i += 2)
    if (mim_sessions_lookup(s, conn(1 + i % 3, 1000 + i), &r) == 0) {
      assert_int_equal(r.conn.gateway, 3);
      left++;
    }
  assert_int_equal(left + 1, mim_sessions_count(s)); /* + user-77 on gw 9 */
  /* teardown destroys a non-empty table: ASan checks nothing leaks */
}

/* ---- fan-out ---- */

static void expect_group(const struct mim_fanout *f, size_t i,
                         uint32_t gateway, const uint64_t *conn_ids,
                         size_t n, uint64_t inbox_seq) {
  uint32_t gw = 0;
  const struct mim_rpc_target *t = NULL;
  size_t nt = 0;
  assert_int_equal(mim_fanout_gateway(f, i, &gw, &t, &nt), 0);
  assert_int_equal(gw, gateway);
  assert_int_equal(nt, n);
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(t[k].conn_id, conn_ids[k]);
    assert_int_equal(t[k].inbox_seq, inbox_seq);
  }
}

static void fanout_groups_by_gateway_and_excludes_sender(void **state) {
  struct mim_sessions *s = *state;
  struct mim_fanout *f = NULL;
  assert_int_equal(mim_fanout_create(&f), 0);

  /* alice sends from her phone (gw 2, conn 5); her laptop is on gw 1. */
  bind_new(s, "alice", "phone", conn(2, 5));
  bind_new(s, "alice", "laptop", conn(1, 6));
  bind_new(s, "bob", "phone", conn(1, 7));
  bind_new(s, "bob", "web", conn(3, 8));
  bind_new(s, "bob", "tablet", conn(1, 9));

  struct mim_conn_ref sender = conn(2, 5);
  assert_int_equal(mim_fanout_add_user(f, s, "bob", 40, &sender), 3);
  assert_int_equal(mim_fanout_add_user(f, s, "alice", 41, &sender), 1);

  /* Gateways in order of first appearance; within one, order added. */
  assert_int_equal(mim_fanout_gateway_count(f), 2);
  uint32_t gw;
  const struct mim_rpc_target *t;
  size_t nt;
  assert_int_equal(mim_fanout_gateway(f, 0, &gw, &t, &nt), 0);
  assert_int_equal(gw, 1);
  assert_int_equal(nt, 3);
  assert_int_equal(t[0].conn_id, 7);
  assert_int_equal(t[0].inbox_seq, 40);
  assert_int_equal(t[1].conn_id, 9);
  assert_int_equal(t[1].inbox_seq, 40);
  assert_int_equal(t[2].conn_id, 6); /* the sender's other device */
  assert_int_equal(t[2].inbox_seq, 41);
  expect_group(f, 1, 3, (const uint64_t[]){8}, 1, 40);
  assert_int_equal(mim_fanout_gateway(f, 2, &gw, &t, &nt), -EINVAL);

  /* Without an exclusion the sending connection is a target too. */
  assert_int_equal(mim_fanout_add_user(f, s, "alice", 42, NULL), 2);
  assert_int_equal(mim_fanout_gateway_count(f), 3);
  expect_group(f, 2, 2, (const uint64_t[]){5}, 1, 42);

  /* add_conn joins the existing groups. */
  assert_int_equal(mim_fanout_add_conn(f, conn(3, 99), 43), 0);
  assert_int_equal(mim_fanout_gateway(f, 1, &gw, &t, &nt), 0);
  assert_int_equal(nt, 2);
  assert_int_equal(t[1].conn_id, 99);
  assert_int_equal(t[1].inbox_seq, 43);
  mim_fanout_destroy(f);
}

static void fanout_reset_forgets_targets_and_reuses_memory(void **state) {
  struct mim_sessions *s = *state;
  struct mim_fanout *f = NULL;
  assert_int_equal(mim_fanout_create(&f), 0);
  bind_new(s, "bob", "phone", conn(1, 1));
  bind_new(s, "bob", "web", conn(2, 2));

  assert_int_equal(mim_fanout_add_user(f, s, "bob", 1, NULL), 2);
  const struct mim_rpc_target *first;
  assert_int_equal(mim_fanout_gateway(f, 0, NULL, &first, NULL), 0);

  mim_fanout_reset(f);
  assert_int_equal(mim_fanout_gateway_count(f), 0);
  assert_int_equal(mim_fanout_gateway(f, 0, NULL, NULL, NULL), -EINVAL);

  /* Gateway 2 now appears first; gateway 1's old targets must not leak. */
  assert_int_equal(mim_fanout_add_conn(f, conn(2, 3), 5), 0);
  assert_int_equal(mim_fanout_add_conn(f, conn(1, 4), 5), 0);
  expect_group(f, 0, 2, (const uint64_t[]){3}, 1, 5);
  expect_group(f, 1, 1, (const uint64_t[]){4}, 1, 5);
  const struct mim_rpc_target *again;
  assert_int_equal(mim_fanout_gateway(f, 0, NULL, &again, NULL), 0);
  assert_ptr_equal(again, first); /* the first group's array, reused */

  mim_fanout_reset(f);
  assert_int_equal(mim_fanout_add_user(f, s, "bob", 6, NULL), 2);
  expect_group(f, 0, 1, (const uint64_t[]){1}, 1, 6);
  expect_group(f, 1, 2, (const uint64_t[]){2}, 1, 6);
  mim_fanout_destroy(f);
  mim_fanout_destroy(NULL);
}

#define MEMBERS 1000

static void fanout_of_big_group_has_one_batch_per_gateway(void **state) {
  struct mim_sessions *s = *state;
  struct mim_fanout *f = NULL;
  assert_int_equal(mim_fanout_create(&f), 0);
  char uid[32];
  /* Member i on gateway 3, 1, 2, 3, 1, 2 ...; every 10th also has a web
   * device on gateway 2. */
  size_t want[4] = {0};
  for (unsigned i = 0; i < MEMBERS; i++) {
    snprintf(uid, sizeof uid, "m%u", i);
    uint32_t gw = (i + 2) % 3 + 1;
    bind_new(s, uid, "phone", conn(gw, i));
    want[gw]++;
    if (i % 10 == 0) {
      bind_new(s, uid, "web", conn(2, 100000 + i));
      want[2]++;
    }
  }
  /* m0 sends from its phone. */
  struct mim_conn_ref sender = conn(3, 0);
  want[3]--;
  int total = 0;
  for (unsigned i = 0; i < MEMBERS; i++) {
    snprintf(uid, sizeof uid, "m%u", i);
    int rc = mim_fanout_add_user(f, s, uid, 1000 + i, &sender);
    assert_true(rc >= 1);
    total += rc;
  }
  assert_int_equal(total, want[1] + want[2] + want[3]);
  assert_int_equal(mim_fanout_gateway_count(f), 3);
  const uint32_t order[3] = {2, 1, 3}; /* m0's web device, then m1 */
  for (size_t g = 0; g < 3; g++) {
    uint32_t gw;
    const struct mim_rpc_target *t;
    size_t nt;
    assert_int_equal(mim_fanout_gateway(f, g, &gw, &t, &nt), 0);
    assert_int_equal(gw, order[g]);
    assert_int_equal(nt, want[gw]);
    /* Members were added in order: inbox_seq never goes back. */
    for (size_t k = 1; k < nt; k++)
      assert_true(t[k].inbox_seq >= t[k - 1].inbox_seq);
  }
  mim_fanout_destroy(f);
}

static void fanout_of_unknown_uid_adds_nothing(void **state) {
  struct mim_sessions *s = *state;
  struct mim_fanout *f = NULL;
  assert_int_equal(mim_fanout_create(&f), 0);
  bind_new(s, "alice", "phone", conn(1, 1));
  assert_int_equal(mim_fanout_add_user(f, s, "nobody", 1, NULL), 0);
  assert_int_equal(mim_fanout_add_user(f, s, "", 1, NULL), 0);
  assert_int_equal(mim_fanout_gateway_count(f), 0);

  /* A uid whose only route is the excluded one adds nothing either. */
  struct mim_conn_ref self = conn(1, 1);
  assert_int_equal(mim_fanout_add_user(f, s, "alice", 1, &self), 0);
  assert_int_equal(mim_fanout_gateway_count(f), 0);
  mim_fanout_destroy(f);
}

static void fanout_handles_many_gateways(void **state) {
  (void)state;
  struct mim_fanout *f = NULL;
  assert_int_equal(mim_fanout_create(&f), 0);
  /* 200 gateways, round-robin, 5 rounds: the gateway index must grow and
   * still find every group. */
  for (uint32_t round = 0; round < 5; round++)
    for (uint32_t g = 0; g < 200; g++)
      assert_int_equal(
          mim_fanout_add_conn(f, conn(1000 + g * 7, round * 1000u + g), round),
          0);
  assert_int_equal(mim_fanout_gateway_count(f), 200);
  for (uint32_t g = 0; g < 200; g++) {
    uint32_t gw;
    const struct mim_rpc_target *t;
    size_t nt;
    assert_int_equal(mim_fanout_gateway(f, g, &gw, &t, &nt), 0);
    assert_int_equal(gw, 1000 + g * 7);
    assert_int_equal(nt, 5);
    for (size_t k = 0; k < nt; k++) {
      assert_int_equal(t[k].conn_id, k * 1000 + g);
      assert_int_equal(t[k].inbox_seq, k);
    }
  }
  mim_fanout_destroy(f);
}

/* ---- per-user limit ---- */

static void user_max_refuses_one_more_device(void **state) {
  struct mim_sessions *s = *state;
  mim_sessions_set_user_max(s, 3);
  bind_new(s, "u", "d1", conn(1, 1));
  bind_new(s, "u", "d2", conn(1, 2));
  bind_new(s, "u", "d3", conn(2, 3));
  assert_int_equal(mim_sessions_bind(s, "u", "d4", conn(1, 4), 0, NULL, NULL),
                   -MIM_ERR_TOO_MANY_DEVICES);
  assert_int_equal(mim_sessions_lookup(s, conn(1, 4), NULL), -ENOENT);
  assert_int_equal(mim_sessions_count(s), 3);
  /* a device already bound may log in again: it replaces itself */
  struct mim_conn_ref old;
  bool replaced = false;
  assert_int_equal(
      mim_sessions_bind(s, "u", "d2", conn(1, 5), 0, &old, &replaced), 0);
  assert_true(replaced);
  assert_int_equal(old.conn_id, 2);
  /* other users have their own budget */
  bind_new(s, "v", "d1", conn(1, 6));
  /* a device leaves: room for another */
  assert_int_equal(mim_sessions_unbind(s, conn(1, 1)), 0);
  bind_new(s, "u", "d4", conn(1, 4));
  assert_int_equal(mim_sessions_foreach_device(s, "u", NULL, NULL), 3);
  /* 0 lifts the limit */
  mim_sessions_set_user_max(s, 0);
  bind_new(s, "u", "d5", conn(1, 7));
  assert_int_equal(mim_sessions_foreach_device(s, "u", NULL, NULL), 4);
}

/* ---- keyed hashing ---- */

/* Tables keyed by client-chosen ids hash under a random per-table key: the
 * same id lands in unrelated buckets in two tables (or two runs), so no set
 * of colliding ids can be computed in advance. */
static void keyed_hash_depends_on_a_random_key(void **state) {
  (void)state;
  struct mim__hkey a, b;
  mim__hkey_init(&a, "table a");
  mim__hkey_init(&b, "table b");
  assert_false(a.k0 == b.k0 && a.k1 == b.k1);
  const char *ids[] = {"alice", "bob", "device-1", "g", ""};
  size_t differ = 0;
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    size_t n = strlen(ids[i]);
    assert_true(mim__hash_keyed(&a, ids[i], n) ==
                mim__hash_keyed(&a, ids[i], n));
    differ += mim__hash_keyed(&a, ids[i], n) != mim__hash_keyed(&b, ids[i], n);
  }
  assert_int_equal(differ, 5);
  /* every byte and the length count: "ab" and "ab\0" differ */
  assert_true(mim__hash_keyed(&a, "ab", 2) != mim__hash_keyed(&a, "ab\0", 3));
  assert_true(mim__hash_keyed(&a, "abcdefgh1", 9) !=
              mim__hash_keyed(&a, "abcdefgh2", 9));
}

#define T(name) cmocka_unit_test_setup_teardown(name, sessions_setup, \
                                                sessions_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(bind_then_lookup_copies_strings),
      T(two_devices_of_one_uid_coexist),
      T(same_device_on_new_conn_replaces_and_reports_old),
      T(stale_unbind_after_replace_keeps_new_route),
      T(conn_with_a_route_cannot_bind_again),
      T(invalid_ids_are_rejected),
      T(unbind_gateway_removes_only_that_gateway),
      T(growth_keeps_every_route),
      T(fanout_groups_by_gateway_and_excludes_sender),
      T(fanout_reset_forgets_targets_and_reuses_memory),
      T(fanout_of_big_group_has_one_batch_per_gateway),
      T(fanout_of_unknown_uid_adds_nothing),
      T(fanout_handles_many_gateways),
      T(user_max_refuses_one_more_device),
      T(keyed_hash_depends_on_a_random_key),
  };
  return cmocka_run_group_tests_name("session", tests, NULL, NULL);
}
