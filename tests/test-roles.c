/* Group roles: the rules table for every role x action (against a table
 * written out here independently), and the LMDB store enforcing it inside
 * the commit: transfer, promote, admin removes, member cannot, mutes,
 * info bounds, dissolve, and a store made before roles. */
#include "testutil.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mim/backend.h>
#include <mim/lmdb.h>
#include <mim/store.h>

/* ---- the table ---- */

/* Expected answers, one line per action: who may (M member, A admin, O
 * owner, X operator) and to which target (m, a, o, or - for none). Written
 * from docs/protocol.md §17, not from lib/store/roles.c. */
static const struct {
  enum mim_group_action action;
  const char *allowed; /* "actor:target" pairs, space separated */
} expect[] = {
    {MIM_GA_ADD, "A:- O:- X:-"},
    {MIM_GA_REMOVE, "A:m O:m O:a X:m X:a X:o"},
    {MIM_GA_LEAVE, "M:m A:a"},
    {MIM_GA_TRANSFER, "O:m O:a X:m X:a"},
    {MIM_GA_PROMOTE, "O:m X:m"},
    {MIM_GA_DEMOTE, "O:a X:a"},
    {MIM_GA_MUTE, "A:m O:m O:a X:m X:a X:o"},
    {MIM_GA_UNMUTE, "A:m O:m O:a X:m X:a X:o"},
    {MIM_GA_MUTE_ALL, "A:- O:- X:-"},
    {MIM_GA_UNMUTE_ALL, "A:- O:- X:-"},
    {MIM_GA_SET_INFO, "A:- O:- X:-"},
    {MIM_GA_DISSOLVE, "O:- X:-"},
    {MIM_GA_INFO, "M:- A:- O:- X:-"},
    {MIM_GA_SEND, "M:- A:- O:-"},
    /* docs/protocol.md §19: owner and admins recall others' messages
     * (target: the sender's role, - a former member) */
    {MIM_GA_RECALL, "A:- A:m O:- O:m O:a X:- X:m X:a X:o"},
};

static const char actor_ch[] = {'N', 'M', 'A', 'O', 'X'};
static const char target_ch[] = {'-', 'm', 'a', 'o', '?'};

static void rules_table_every_role_and_action(void **state) {
  (void)state;
  size_t checked = 0;
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
    for (int a = MIM_ROLE_NONE; a < MIM_ROLE__COUNT; a++) {
      for (int t = MIM_ROLE_NONE; t <= MIM_ROLE_OWNER; t++) {
        char pair[4] = {actor_ch[a], ':', target_ch[t], '\0'};
        bool want = strstr(expect[i].allowed, pair) != NULL;
        int got = mim_group_rule_check((enum mim_group_role)a,
                                       expect[i].action,
                                       (enum mim_group_role)t);
        print_message("action %d %s -> %d\n", (int)expect[i].action, pair,
                      got);
        if (want)
          assert_int_equal(got, 0);
        else
          assert_int_equal(got, a == MIM_ROLE_NONE ? -MIM_ERR_NOT_MEMBER
                                                   : -MIM_ERR_FORBIDDEN);
        checked++;
      }
    }
  }
  assert_int_equal(checked, (MIM_GA__COUNT - 1) * MIM_ROLE__COUNT * 4);
  assert_int_equal(mim_group_rule_check(MIM_ROLE__COUNT, MIM_GA_ADD, 0),
                   -EINVAL);
  assert_int_equal(mim_group_rule_check(MIM_ROLE_OWNER, MIM_GA__COUNT, 0),
                   -EINVAL);
  assert_int_equal(mim_group_rule_check(MIM_ROLE_OWNER, 0, 0), -EINVAL);
}

static void manage_notices_are_json(void **state) {
  (void)state;
  char buf[MIM_GROUP_NOTICE_MAX];
  size_t len;
  const char *bob[] = {"bob"};
  assert_int_equal(mim_group_manage_notice_format(buf, sizeof buf, &len, "g",
                                                  "alice", MIM_GA_TRANSFER,
                                                  bob, 1, 0, NULL),
                   0);
  assert_string_equal(buf, "{\"v\":1,\"group\":\"g\",\"action\":\"role\","
                           "\"actor\":\"alice\",\"members\":[\"bob\"],"
                           "\"count\":1,\"role\":\"owner\"}");
  assert_int_equal(len, strlen(buf));
  assert_int_equal(mim_group_manage_notice_format(buf, sizeof buf, &len, "g",
                                                  "", MIM_GA_MUTE, bob, 1,
                                                  1234, NULL),
                   0);
  assert_non_null(strstr(buf, "\"action\":\"mute\""));
  assert_non_null(strstr(buf, ",\"muted\":true,\"until\":1234}"));
  assert_int_equal(mim_group_manage_notice_format(buf, sizeof buf, &len, "g",
                                                  "a", MIM_GA_MUTE_ALL, NULL,
                                                  0, 0, NULL),
                   0);
  assert_non_null(strstr(buf, "\"members\":[],\"count\":0,\"all\":true}"));
  /* a name is escaped: quotes, backslashes and control characters */
  assert_int_equal(mim_group_manage_notice_format(
                       buf, sizeof buf, &len, "g", "a", MIM_GA_SET_INFO, NULL,
                       0, 0, "x\"y\\z\n\xc3\xa9"),
                   0);
  assert_non_null(strstr(buf, ",\"name\":\"x\\\"y\\\\z\\u000a\xc3\xa9\"}"));
  assert_int_equal(mim_group_manage_notice_format(buf, 10, &len, "g", "a",
                                                  MIM_GA_DISSOLVE, NULL, 0, 0,
                                                  NULL),
                   -ENOBUFS);
  assert_int_equal(mim_group_manage_notice_format(buf, sizeof buf, &len, "g",
                                                  "a", MIM_GA_ADD, NULL, 0, 0,
                                                  NULL),
                   -EINVAL);
}

/* ---- the store enforces it ---- */

struct fx {
  char *dir;
  struct mim_backend *be;
};

static char *base_dir;
static unsigned test_no;

static int group_setup(void **state) {
  (void)state;
  base_dir = tu_mkdtemp();
  return base_dir == NULL;
}

static int group_teardown(void **state) {
  (void)state;
  tu_rmdir_free(base_dir);
  return 0;
}

static void open_be(struct fx *f) {
  struct mim_lmdb_config cfg;
  mim_lmdb_config_init(&cfg);
  cfg.path = f->dir;
  cfg.no_sync = true;
  assert_int_equal(mim_lmdb_open(&f->be, &cfg), 0);
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  char path[600];
  snprintf(path, sizeof path, "%s/r%u", base_dir, ++test_no);
  f->dir = strdup(path);
  open_be(f);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  mim_backend_destroy(f->be);
  free(f->dir);
  free(f);
  return 0;
}

/* One group add/create/remove by `actor` (NULL: operator); the status. */
static int change(struct fx *f, enum mim_write_op_kind kind, const char *g,
                  const char *actor, const char *const *m, size_t n) {
  struct mim_write_batch *b;
  size_t idx;
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_group(b, kind, g, m, n, 1000, &idx), 0);
  assert_int_equal(mim_write_batch_set_notice(b, idx, actor), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_write_batch_outcome(b, idx, &o), 0);
  int st = o->status;
  mim_write_batch_destroy(b);
  return st;
}

/* One management change; the status, and its notice in *notice_id. */
static int manage(struct fx *f, const char *g, const char *actor,
                  enum mim_group_action a, const char *target, int64_t until,
                  const char *name, const char *meta, uint64_t *notice_id) {
  struct mim_write_batch *b;
  size_t idx;
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_group_manage(b, g, actor, a, target,
                                                    until, name, meta, 2000,
                                                    &idx),
                   0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_write_batch_outcome(b, idx, &o), 0);
  int st = o->status;
  if (notice_id != NULL)
    *notice_id = o->msg_id;
  mim_write_batch_destroy(b);
  return st;
}

static int send_at(struct fx *f, const char *g, const char *from, int64_t t) {
  struct mim_message_in m = {0};
  m.type = MIM_MSG_TEXT;
  m.conv_kind = MIM_CONV_GROUP;
  m.sender = from;
  m.sender_device = "phone";
  m.group = g;
  m.content = (const uint8_t *)"hi";
  m.content_len = 2;
  m.server_time = t;
  struct mim_write_batch *b;
  size_t idx;
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_message(b, &m, &idx), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_write_batch_outcome(b, idx, &o), 0);
  int st = o->status;
  mim_write_batch_destroy(b);
  return st;
}

struct info_copy {
  char owner[MIM_ID_MAX + 1], name[MIM_GROUP_NAME_MAX + 1];
  char admins[256], muted[256];
  bool muted_all, legacy;
};

static void join(char *out, size_t cap, const char *const *v, size_t n) {
  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (i > 0)
      strncat(out, ",", cap - strlen(out) - 1);
    strncat(out, v[i], cap - strlen(out) - 1);
  }
}

static void take_info(void *user, const struct mim_group_info *i) {
  struct info_copy *c = user;
  snprintf(c->owner, sizeof c->owner, "%s", i->owner);
  snprintf(c->name, sizeof c->name, "%s", i->name);
  join(c->admins, sizeof c->admins, i->admins, i->n_admins);
  join(c->muted, sizeof c->muted, i->muted, i->n_muted);
  c->muted_all = i->muted_all;
  c->legacy = i->legacy;
}

static struct info_copy info(struct fx *f, const char *g) {
  struct info_copy c;
  memset(&c, 0, sizeof c);
  assert_int_equal(mim_backend_group_info(f->be, g, take_info, &c), 0);
  return c;
}

static const char *abcd[] = {"alice", "bob", "carol", "dave"};

static void creator_owns_and_transfers(void **state) {
  struct fx *f = *state;
  assert_int_equal(change(f, MIM_OP_GROUP_CREATE, "g", "alice", abcd, 4), 0);
  struct info_copy c = info(f, "g");
  assert_string_equal(c.owner, "alice");
  assert_false(c.legacy);
  /* only the owner transfers */
  assert_int_equal(manage(f, "g", "bob", MIM_GA_TRANSFER, "carol", 0, NULL,
                          NULL, NULL),
                   -MIM_ERR_FORBIDDEN);
  uint64_t id = 0;
  assert_int_equal(manage(f, "g", "alice", MIM_GA_TRANSFER, "bob", 0, NULL,
                          NULL, &id),
                   0);
  assert_true(id > 0); /* a notice */
  c = info(f, "g");
  assert_string_equal(c.owner, "bob");
  assert_string_equal(c.admins, "alice"); /* the old owner stays an admin */
  /* the owner cannot leave; the others can */
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "bob", abcd + 1, 1),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "dave", abcd + 3, 1),
                   0);
  /* nobody in the group removes the owner, not even an admin */
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "alice", abcd + 1, 1),
                   -MIM_ERR_FORBIDDEN);
  /* to someone outside the group: not a member */
  assert_int_equal(manage(f, "g", "bob", MIM_GA_TRANSFER, "zed", 0, NULL, NULL,
                          NULL),
                   -MIM_ERR_NOT_MEMBER);
  /* the roles survive a reopen */
  mim_backend_destroy(f->be);
  open_be(f);
  c = info(f, "g");
  assert_string_equal(c.owner, "bob");
  assert_string_equal(c.admins, "alice");
}

static void admins_add_and_remove_members_only(void **state) {
  struct fx *f = *state;
  assert_int_equal(change(f, MIM_OP_GROUP_CREATE, "g", "alice", abcd, 3), 0);
  const char *dave[] = {"dave"}, *eve[] = {"eve"};
  /* a plain member neither adds nor removes others */
  assert_int_equal(change(f, MIM_OP_GROUP_ADD, "g", "bob", dave, 1),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "bob", abcd + 2, 1),
                   -MIM_ERR_FORBIDDEN);
  /* only the owner promotes */
  assert_int_equal(manage(f, "g", "carol", MIM_GA_PROMOTE, "bob", 0, NULL,
                          NULL, NULL),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(manage(f, "g", "alice", MIM_GA_PROMOTE, "bob", 0, NULL,
                          NULL, NULL),
                   0);
  assert_int_equal(change(f, MIM_OP_GROUP_ADD, "g", "bob", dave, 1), 0);
  assert_int_equal(change(f, MIM_OP_GROUP_ADD, "g", "bob", eve, 1), 0);
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "bob", dave, 1), 0);
  assert_int_equal(
      f->be->ops->member_get(f->be->impl, "g", "dave", NULL),
      -MIM_ERR_NOT_MEMBER);
  /* an admin does not remove another admin; the owner does */
  assert_int_equal(manage(f, "g", "alice", MIM_GA_PROMOTE, "carol", 0, NULL,
                          NULL, NULL),
                   0);
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "bob", abcd + 2, 1),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "alice", abcd + 2, 1),
                   0);
  /* who left keeps no role */
  struct info_copy c = info(f, "g");
  assert_string_equal(c.admins, "bob");
  assert_int_equal(manage(f, "g", "alice", MIM_GA_DEMOTE, "bob", 0, NULL,
                          NULL, NULL),
                   0);
  assert_string_equal(info(f, "g").admins, "");
  assert_int_equal(change(f, MIM_OP_GROUP_ADD, "g", "bob", dave, 1),
                   -MIM_ERR_FORBIDDEN);
  /* an operator may do everything */
  assert_int_equal(change(f, MIM_OP_GROUP_ADD, "g", NULL, dave, 1), 0);
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", NULL, abcd, 1), 0);
  assert_string_equal(info(f, "g").owner, "");
  assert_int_equal(manage(f, "g", NULL, MIM_GA_TRANSFER, "dave", 0, NULL,
                          NULL, NULL),
                   0);
  assert_string_equal(info(f, "g").owner, "dave");
}

static void mutes_stop_senders(void **state) {
  struct fx *f = *state;
  assert_int_equal(change(f, MIM_OP_GROUP_CREATE, "g", "alice", abcd, 3), 0);
  assert_int_equal(manage(f, "g", "alice", MIM_GA_PROMOTE, "bob", 0, NULL,
                          NULL, NULL),
                   0);
  /* a member mutes nobody; an admin mutes a member until a time */
  assert_int_equal(manage(f, "g", "carol", MIM_GA_MUTE, "bob", 0, NULL, NULL,
                          NULL),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(manage(f, "g", "bob", MIM_GA_MUTE, "carol", 5000, NULL,
                          NULL, NULL),
                   0);
  assert_int_equal(send_at(f, "g", "carol", 4999), -MIM_ERR_MUTED);
  assert_int_equal(send_at(f, "g", "carol", 5000), 0); /* it ended */
  assert_int_equal(manage(f, "g", "bob", MIM_GA_MUTE, "carol", 0, NULL, NULL,
                          NULL),
                   0);
  assert_int_equal(send_at(f, "g", "carol", 99999), -MIM_ERR_MUTED);
  assert_string_equal(info(f, "g").muted, "carol");
  assert_int_equal(manage(f, "g", "bob", MIM_GA_UNMUTE, "carol", 0, NULL,
                          NULL, NULL),
                   0);
  assert_int_equal(send_at(f, "g", "carol", 99999), 0);
  /* an admin does not mute the owner */
  assert_int_equal(manage(f, "g", "bob", MIM_GA_MUTE, "alice", 0, NULL, NULL,
                          NULL),
                   -MIM_ERR_FORBIDDEN);
  /* the whole group: only admins and the owner speak */
  assert_int_equal(manage(f, "g", "bob", MIM_GA_MUTE_ALL, NULL, 0, NULL, NULL,
                          NULL),
                   0);
  assert_true(info(f, "g").muted_all);
  assert_int_equal(send_at(f, "g", "carol", 1), -MIM_ERR_MUTED);
  assert_int_equal(send_at(f, "g", "bob", 1), 0);
  assert_int_equal(send_at(f, "g", "alice", 1), 0);
  assert_int_equal(manage(f, "g", "carol", MIM_GA_UNMUTE_ALL, NULL, 0, NULL,
                          NULL, NULL),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(manage(f, "g", "alice", MIM_GA_UNMUTE_ALL, NULL, 0, NULL,
                          NULL, NULL),
                   0);
  assert_int_equal(send_at(f, "g", "carol", 1), 0);
}

static void info_is_bounded_and_utf8(void **state) {
  struct fx *f = *state;
  assert_int_equal(change(f, MIM_OP_GROUP_CREATE, "g", "alice", abcd, 2), 0);
  assert_int_equal(manage(f, "g", "bob", MIM_GA_SET_INFO, NULL, 0, "x", "",
                          NULL),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(manage(f, "g", "alice", MIM_GA_SET_INFO, NULL, 0,
                          "T\xc3\xa9" "am", "{\"k\":1}", NULL),
                   0);
  assert_string_equal(info(f, "g").name, "T\xc3\xa9" "am");
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  char big[MIM_GROUP_METADATA_MAX + 2];
  memset(big, 'm', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(mim_write_batch_add_group_manage(b, "g", "alice",
                                                    MIM_GA_SET_INFO, NULL, 0,
                                                    NULL, big, 1, NULL),
                   -MIM_ERR_TOO_LARGE);
  big[MIM_GROUP_NAME_MAX + 1] = '\0';
  assert_int_equal(mim_write_batch_add_group_manage(b, "g", "alice",
                                                    MIM_GA_SET_INFO, NULL, 0,
                                                    big, NULL, 1, NULL),
                   -MIM_ERR_TOO_LARGE);
  assert_int_equal(mim_write_batch_add_group_manage(b, "g", "alice",
                                                    MIM_GA_SET_INFO, NULL, 0,
                                                    "\xc3", NULL, 1, NULL),
                   -MIM_ERR_BAD_UTF8);
  /* a target where none belongs, none where one does, unknown actions */
  assert_int_equal(mim_write_batch_add_group_manage(b, "g", "alice",
                                                    MIM_GA_MUTE_ALL, "bob", 0,
                                                    NULL, NULL, 1, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_group_manage(b, "g", "alice",
                                                    MIM_GA_PROMOTE, NULL, 0,
                                                    NULL, NULL, 1, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_group_manage(b, "g", "alice",
                                                    MIM_GA_INFO, NULL, 0,
                                                    NULL, NULL, 1, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_count(b), 0);
  mim_write_batch_destroy(b);
}

static void admins_and_mutes_are_bounded(void **state) {
  struct fx *f = *state;
  enum { N = MIM_GROUP_MUTED_MAX + 2 };
  static char names[N][16];
  const char *m[N];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "u%d", i);
    m[i] = names[i];
  }
  assert_int_equal(change(f, MIM_OP_GROUP_CREATE, "g", "u0", m, N), 0);
  for (int i = 1; i <= MIM_GROUP_ADMINS_MAX; i++)
    assert_int_equal(manage(f, "g", "u0", MIM_GA_PROMOTE, m[i], 0, NULL, NULL,
                            NULL),
                     0);
  assert_int_equal(manage(f, "g", "u0", MIM_GA_PROMOTE,
                          m[MIM_GROUP_ADMINS_MAX + 1], 0, NULL, NULL, NULL),
                   -MIM_ERR_TOO_LARGE);
  for (int i = 1; i <= MIM_GROUP_MUTED_MAX; i++)
    assert_int_equal(manage(f, "g", NULL, MIM_GA_MUTE, m[i], 0, NULL, NULL,
                            NULL),
                     0);
  assert_int_equal(manage(f, "g", NULL, MIM_GA_MUTE,
                          m[MIM_GROUP_MUTED_MAX + 1], 0, NULL, NULL, NULL),
                   -MIM_ERR_TOO_LARGE);
}

static void count_one(void *user, const char *group) {
  (void)group;
  (*(int *)user)++;
}

static void dissolve_removes_everyone(void **state) {
  struct fx *f = *state;
  assert_int_equal(change(f, MIM_OP_GROUP_CREATE, "g", "alice", abcd, 3), 0);
  assert_int_equal(manage(f, "g", "alice", MIM_GA_PROMOTE, "bob", 0, NULL,
                          NULL, NULL),
                   0);
  assert_int_equal(manage(f, "g", "bob", MIM_GA_DISSOLVE, NULL, 0, NULL, NULL,
                          NULL),
                   -MIM_ERR_FORBIDDEN);
  uint64_t id = 0;
  assert_int_equal(manage(f, "g", "alice", MIM_GA_DISSOLVE, NULL, 0, NULL,
                          NULL, &id),
                   0);
  assert_true(id > 0);
  /* every former member has the notice in its inbox */
  for (int i = 0; i < 3; i++) {
    struct mim_message_list ml;
    mim_message_list_init(&ml);
    assert_int_equal(f->be->ops->read_inbox(f->be->impl, abcd[i], 0, 100, &ml),
                     0);
    assert_true(ml.count > 0);
    assert_int_equal(ml.items[ml.count - 1].msg_id, id);
    assert_non_null(strstr((const char *)ml.items[ml.count - 1].content,
                           "\"action\":\"dissolve\""));
    mim_message_list_finish(&ml);
    bool more;
    int n = 0;
    assert_int_equal(mim_backend_groups_of(f->be, abcd[i], "", 10, count_one,
                                           &n, &more),
                     0);
    assert_int_equal(n, 0); /* out of the index too */
  }
  assert_int_equal(f->be->ops->member_get(f->be->impl, "g", "alice", NULL),
                   -MIM_ERR_NO_SUCH_GROUP);
  assert_int_equal(send_at(f, "g", "alice", 1), -MIM_ERR_NO_SUCH_GROUP);
  assert_int_equal(mim_backend_group_info(f->be, "g", take_info, NULL),
                   -MIM_ERR_NO_SUCH_GROUP);
  /* the id can be used again for a new group */
  assert_int_equal(change(f, MIM_OP_GROUP_CREATE, "g", "dave", abcd + 3, 1),
                   0);
  assert_string_equal(info(f, "g").owner, "dave");
}

/* A store made before roles: its groups have no role record (here: the
 * ginfo database dropped, as a store of the previous schema never had
 * it). It opens, keeps the old rules (members add, members only leave),
 * and an operator gives it an owner. */
static void store_before_roles_opens(void **state) {
  struct fx *f = *state;
  assert_int_equal(change(f, MIM_OP_GROUP_CREATE, "g", "alice", abcd, 3), 0);
  mim_backend_destroy(f->be);
  f->be = NULL;
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
  assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "ginfo", 0, &dbi), 0);
  assert_int_equal(mdb_drop(txn, dbi, 1), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  open_be(f);
  struct info_copy c = info(f, "g");
  assert_true(c.legacy);
  assert_string_equal(c.owner, "");
  const char *dave[] = {"dave"};
  assert_int_equal(change(f, MIM_OP_GROUP_ADD, "g", "bob", dave, 1), 0);
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "bob", abcd + 2, 1),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(change(f, MIM_OP_GROUP_REMOVE, "g", "carol", abcd + 2, 1),
                   0);
  assert_int_equal(send_at(f, "g", "bob", 1), 0);
  /* an operator's other changes keep the old rules */
  assert_int_equal(manage(f, "g", NULL, MIM_GA_SET_INFO, NULL, 0, "old", NULL,
                          NULL),
                   0);
  assert_true(info(f, "g").legacy);
  const char *erin[] = {"erin"};
  assert_int_equal(change(f, MIM_OP_GROUP_ADD, "g", "bob", erin, 1), 0);
  assert_int_equal(manage(f, "g", "alice", MIM_GA_TRANSFER, "bob", 0, NULL,
                          NULL, NULL),
                   -MIM_ERR_FORBIDDEN);
  assert_int_equal(manage(f, "g", NULL, MIM_GA_TRANSFER, "alice", 0, NULL,
                          NULL, NULL),
                   0);
  c = info(f, "g");
  assert_false(c.legacy);
  assert_string_equal(c.owner, "alice");
  assert_int_equal(change(f, MIM_OP_GROUP_ADD, "g", "bob", abcd + 2, 1),
                   -MIM_ERR_FORBIDDEN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(rules_table_every_role_and_action),
      cmocka_unit_test(manage_notices_are_json),
      cmocka_unit_test_setup_teardown(creator_owns_and_transfers, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(admins_add_and_remove_members_only,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(mutes_stop_senders, setup, teardown),
      cmocka_unit_test_setup_teardown(info_is_bounded_and_utf8, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(admins_and_mutes_are_bounded, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(dissolve_removes_everyone, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(store_before_roles_opens, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
