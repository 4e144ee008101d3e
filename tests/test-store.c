/* The message store: write batches, message lists (lib/store/batch.c) and the LMDB
 * backend (lib/store/lmdb/).
 *
 * The behavioural checks reach the store only through `struct mim_backend *`
 * built by `make_backend`, so they can run unchanged against another backend
 * (docs/architecture.md §7). The few white-box checks (schema tampering, injected
 * failures, pruning, map size) are LMDB-specific and say so. */
#include "testutil.h"

#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mim/auth.h>
#include <mim/store.h>
#include <mim/lmdb.h>
#include <mim/backend.h>

#include "store/store_internal.h"

/* ---- fixture ---- */

struct fx {
  char *dir; /* this test's store directory, inside base_dir */
  struct mim_lmdb_config cfg;
  struct mim_backend *be;
};

static char *base_dir;
static unsigned test_no;

static int open_lmdb(struct fx *f) { return mim_lmdb_open(&f->be, &f->cfg); }

/* The backend under test. */
static int (*make_backend)(struct fx *f) = open_lmdb;

static int group_setup(void **state) {
  (void)state;
  base_dir = tu_mkdtemp();
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  tu_rmdir_free(base_dir);
  base_dir = NULL;
  return 0;
}

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  char path[600];
  snprintf(path, sizeof path, "%s/t%u", base_dir, ++test_no);
  f->dir = strdup(path);
  assert_non_null(f->dir);
  mim_lmdb_config_init(&f->cfg);
  f->cfg.path = f->dir;
  f->cfg.no_sync = true; /* durability has its own test and the benchmark */
  assert_int_equal(make_backend(f), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fx *f = *state;
  mim_backend_destroy(f->be);
  tu_rmdir_free(f->dir);
  free(f);
  return 0;
}

/* Closes and reopens the backend over the same files. */
static void reopen(struct fx *f) {
  mim_backend_destroy(f->be);
  f->be = NULL;
  assert_int_equal(make_backend(f), 0);
}

/* ---- helpers ---- */

static struct mim_message_in c2c(const char *from, const char *to,
                                 const char *text, const char *cmid,
                                 int64_t t) {
  struct mim_message_in m = {0};
  m.type = MIM_MSG_TEXT;
  m.conv_kind = MIM_CONV_C2C;
  m.sender = from;
  m.sender_device = "phone";
  m.peer = to;
  m.client_msg_id = cmid;
  m.content = (const uint8_t *)text;
  m.content_len = strlen(text);
  m.server_time = t;
  return m;
}

static struct mim_message_in grp(const char *from, const char *group,
                                 const char *text, const char *cmid,
                                 int64_t t) {
  struct mim_message_in m = c2c(from, NULL, text, cmid, t);
  m.conv_kind = MIM_CONV_GROUP;
  m.group = group;
  return m;
}

/* The outcome of one op, copied out of its batch. */
struct sent {
  int status;
  bool dup;
  uint64_t msg_id, conv_seq, sender_seq;
  int64_t time;
  size_t n;
  char uid[8][MIM_ID_MAX + 1];
  uint64_t seq[8];
};

static struct sent outcome_of(struct mim_write_batch *b, size_t i) {
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, i, &o), 0);
  struct sent s = {0};
  s.status = o->status;
  s.dup = o->duplicate;
  s.msg_id = o->msg_id;
  s.conv_seq = o->conv_seq;
  s.sender_seq = o->sender_inbox_seq;
  s.time = o->server_time;
  s.n = o->n_recipients;
  assert_true(s.n <= 8);
  for (size_t k = 0; k < s.n; k++) {
    snprintf(s.uid[k], sizeof s.uid[k], "%s", o->recipients[k].uid);
    s.seq[k] = o->recipients[k].inbox_seq;
  }
  return s;
}

/* Commits a one-message batch; the batch itself must succeed. */
static struct sent send1(struct fx *f, struct mim_message_in m) {
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  struct sent s = outcome_of(b, 0);
  mim_write_batch_destroy(b);
  return s;
}

/* Commits one group op; returns its status and the members it reports,
 * joined with ',' in `members`. */
static int group_op(struct fx *f, enum mim_write_op_kind kind,
                    const char *group, const char *const *members, size_t n,
                    char *list, size_t cap) {
  struct mim_write_batch *b;
  size_t idx;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(
      mim_write_batch_add_group(b, kind, group, members, n, 1000, &idx), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, idx, &o), 0);
  if (list != NULL) {
    list[0] = '\0';
    for (size_t i = 0; i < o->n_members; i++) {
      if (i > 0)
        strncat(list, ",", cap - strlen(list) - 1);
      strncat(list, o->members[i], cap - strlen(list) - 1);
    }
  }
  int status = o->status;
  mim_write_batch_destroy(b);
  return status;
}

static void cursor_set(struct fx *f, const char *uid, const char *dev,
                       uint64_t seq) {
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_cursor(b, uid, dev, seq, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
}

static uint64_t last_seq(struct fx *f, const char *uid) {
  uint64_t seq = 99;
  assert_int_equal(f->be->ops->inbox_last_seq(f->be->impl, uid, &seq), 0);
  return seq;
}

static uint64_t cursor_of(struct fx *f, const char *uid, const char *dev) {
  uint64_t seq = 99;
  assert_int_equal(f->be->ops->cursor_get(f->be->impl, uid, dev, &seq), 0);
  return seq;
}

static void inbox(struct fx *f, const char *uid, uint64_t after, size_t limit,
                  struct mim_message_list *l) {
  mim_message_list_init(l);
  assert_int_equal(f->be->ops->read_inbox(f->be->impl, uid, after, limit, l),
                   0);
}

static void history(struct fx *f, const char *a, const char *b,
                    const char *group, uint64_t before, uint64_t after,
                    size_t limit, struct mim_message_list *l) {
  mim_message_list_init(l);
  assert_int_equal(f->be->ops->read_conversation(f->be->impl, a, b, group,
                                                 before, after, limit, l),
                   0);
}

static void assert_content(const struct mim_message *m, const char *text) {
  assert_int_equal(m->content_len, strlen(text));
  assert_memory_equal(m->content, text, strlen(text));
}

/* Every entry of `uid`'s inbox has seq 1, 2, 3, ... n, and n is the
 * inbox's last seq. Returns n. */
static size_t assert_inbox_contiguous(struct fx *f, const char *uid) {
  struct mim_message_list l;
  inbox(f, uid, 0, SIZE_MAX, &l);
  for (size_t i = 0; i < l.count; i++)
    assert_int_equal(l.items[i].inbox_seq, i + 1);
  assert_false(l.has_more);
  assert_int_equal(last_seq(f, uid), l.count);
  size_t n = l.count;
  mim_message_list_finish(&l);
  return n;
}

/* ---- batches and lists ---- */

static void batch_rejects_invalid_arguments(void **state) {
  struct fx *f = *state;
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(NULL), -EINVAL);
  assert_int_equal(mim_write_batch_create(&b), 0);

  struct mim_message_in ok = c2c("alice", "bob", "hi", NULL, 1);
  struct mim_message_in m = ok;
  assert_int_equal(mim_write_batch_add_message(NULL, &m, NULL), -EINVAL);
  assert_int_equal(mim_write_batch_add_message(b, NULL, NULL), -EINVAL);
  m.peer = NULL;
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  m = ok;
  m.sender = "";
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  m = ok;
  m.type = 99;
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  m = ok;
  m.conv_kind = 0;
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  m = ok;
  m.conv_kind = MIM_CONV_GROUP; /* no group */
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  m = ok;
  m.conv_kind = MIM_CONV_PUSH; /* no recipients */
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  m = ok;
  m.content = NULL; /* with content_len 2 */
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  char longid[MIM_ID_MAX + 2];
  memset(longid, 'x', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  m = ok;
  m.peer = longid;
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  char longcmid[MIM_CLIENT_MSG_ID_MAX + 2];
  memset(longcmid, 'c', sizeof longcmid - 1);
  longcmid[sizeof longcmid - 1] = '\0';
  m = ok;
  m.client_msg_id = longcmid;
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);

  assert_int_equal(mim_write_batch_add_cursor(b, NULL, "d", 1, NULL), -EINVAL);
  assert_int_equal(mim_write_batch_add_cursor(b, "u", "", 1, NULL), -EINVAL);
  const char *members[] = {"a", ""};
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_MESSAGE, "g", members,
                                             1, 0, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_ADD, "", members,
                                             1, 0, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_ADD, "g", NULL,
                                             2, 0, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_ADD, "g", members,
                                             2, 0, NULL),
                   -EINVAL);
  /* nothing of the refused calls was added */
  assert_int_equal(mim_write_batch_count(b), 0);

  size_t idx = 7;
  assert_int_equal(mim_write_batch_add_message(b, &ok, &idx), 0);
  assert_int_equal(idx, 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_status(b), -EAGAIN);
  assert_int_equal(mim_write_batch_outcome(b, 0, &o), -EAGAIN);
  assert_int_equal(mim_write_batch_outcome(b, 1, &o), -EINVAL);
  assert_int_equal(mim_backend_commit(NULL, b), -EINVAL);
  assert_int_equal(mim_backend_commit(f->be, NULL), -EINVAL);

  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_write_batch_outcome(b, 0, &o), 0);
  assert_int_equal(o->status, 0);
  /* a committed batch is closed: a second commit would store it twice */
  assert_int_equal(mim_backend_commit(f->be, b), -EINVAL);
  assert_int_equal(mim_write_batch_add_message(b, &ok, NULL), -EINVAL);
  assert_int_equal(last_seq(f, "bob"), 1);
  mim_write_batch_destroy(b);

  /* lmdb config */
  struct mim_lmdb_config cfg;
  struct mim_backend *be = NULL;
  mim_lmdb_config_init(&cfg);
  assert_null(cfg.path);
  assert_int_equal(mim_lmdb_open(&be, &cfg), -EINVAL);
  assert_int_equal(mim_lmdb_open(NULL, &f->cfg), -EINVAL);
  assert_null(be);
}

static void batch_owns_copies_and_reset_reuses_it(void **state) {
  (void)state;
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  char sender[16] = "alice", peer[16] = "bob", cmid[16] = "c1";
  uint8_t content[4] = {1, 2, 3, 4};
  char r1[8] = "x", r2[8] = "y";
  const char *rcpts[] = {r1, r2};
  struct mim_message_in m = c2c(sender, peer, "", cmid, 5);
  m.content = content;
  m.content_len = sizeof content;
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  struct mim_message_in p = c2c("", NULL, "", NULL, 6);
  p.conv_kind = MIM_CONV_PUSH;
  p.recipients = rcpts;
  p.n_recipients = 2;
  assert_int_equal(mim_write_batch_add_message(b, &p, NULL), 0);
  char member[8] = "m1";
  const char *members[] = {member};
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_CREATE, "g",
                                             members, 1, 77, NULL),
                   0);
  assert_int_equal(mim_write_batch_add_cursor(b, "u", "d", 9, NULL), 0);
  /* the caller's buffers change after the calls */
  strcpy(sender, "mallory");
  strcpy(peer, "eve");
  strcpy(cmid, "zz");
  content[0] = 9;
  strcpy(r1, "q");
  strcpy(member, "m2");

  struct mim_write_op op;
  assert_int_equal(mim_write_batch_count(b), 4);
  assert_int_equal(mim_write_batch_op(b, 0, &op), 0);
  assert_int_equal(op.kind, MIM_OP_MESSAGE);
  assert_string_equal(op.message->sender, "alice");
  assert_string_equal(op.message->peer, "bob");
  assert_string_equal(op.message->client_msg_id, "c1");
  assert_string_equal(op.message->group, ""); /* NULL became "" */
  assert_int_equal(op.message->content[0], 1);
  assert_int_equal(mim_write_batch_op(b, 1, &op), 0);
  assert_int_equal(op.message->n_recipients, 2);
  assert_string_equal(op.message->recipients[0], "x");
  assert_int_equal(mim_write_batch_op(b, 2, &op), 0);
  assert_int_equal(op.kind, MIM_OP_GROUP_CREATE);
  assert_string_equal(op.members[0], "m1");
  assert_int_equal(op.server_time, 77);
  assert_int_equal(mim_write_batch_op(b, 3, &op), 0);
  assert_string_equal(op.uid, "u");
  assert_int_equal(op.seq, 9);
  assert_int_equal(mim_write_batch_op(b, 4, &op), -EINVAL);

  /* outcomes are copies too */
  struct mim_recipient rc[1] = {{"bob", 3}};
  char added[8] = "m1";
  const char *addedv[] = {added};
  struct mim_op_outcome o = {.msg_id = 4, .recipients = rc, .n_recipients = 1};
  assert_int_equal(mim_write_batch_set_outcome(b, 0, &o), 0);
  struct mim_op_outcome og = {.members = addedv, .n_members = 1};
  assert_int_equal(mim_write_batch_set_outcome(b, 2, &og), 0);
  strcpy(added, "no");
  rc[0].uid = "changed";
  mim_write_batch_set_status(b, 0);
  const struct mim_op_outcome *got;
  assert_int_equal(mim_write_batch_outcome(b, 0, &got), 0);
  assert_string_equal(got->recipients[0].uid, "bob");
  assert_int_equal(got->recipients[0].inbox_seq, 3);
  assert_int_equal(mim_write_batch_outcome(b, 2, &got), 0);
  assert_string_equal(got->members[0], "m1");
  /* a failure status becomes every op's status */
  mim_write_batch_set_status(b, -EIO);
  assert_int_equal(mim_write_batch_outcome(b, 0, &got), 0);
  assert_int_equal(got->status, -EIO);
  assert_int_equal(got->n_recipients, 0);

  mim_write_batch_reset(b);
  assert_int_equal(mim_write_batch_count(b), 0);
  assert_int_equal(mim_write_batch_status(b), -EAGAIN);
  /* reused many times: the arena keeps its chunks */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 500; i++)
      assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
    assert_int_equal(mim_write_batch_count(b), 500);
    assert_int_equal(mim_write_batch_op(b, 499, &op), 0);
    assert_string_equal(op.message->sender, "mallory");
    mim_write_batch_reset(b);
  }
  mim_write_batch_destroy(b);
  mim_write_batch_destroy(NULL);
}

static void message_list_push_copies(void **state) {
  (void)state;
  struct mim_message_list l;
  mim_message_list_init(&l);
  assert_int_equal(mim_message_list_push(&l, NULL), -EINVAL);
  char text[8] = "hello";
  for (int i = 0; i < 40; i++) {
    struct mim_message m = {0};
    m.msg_id = (uint64_t)i + 1;
    m.sender = "alice";
    m.content = (const uint8_t *)text;
    m.content_len = 5;
    assert_int_equal(mim_message_list_push(&l, &m), 0);
  }
  text[0] = 'j';
  assert_int_equal(l.count, 40);
  assert_int_equal(l.items[39].msg_id, 40);
  assert_string_equal(l.items[0].sender, "alice");
  assert_string_equal(l.items[0].peer, ""); /* NULL became "" */
  assert_non_null(l.items[0].payload);      /* never NULL, even empty */
  assert_memory_equal(l.items[0].content, "hello", 5);
  mim_message_list_finish(&l);
  assert_int_equal(l.count, 0);
  assert_null(l.items);
  mim_message_list_finish(&l); /* finish twice is harmless */
}

/* ---- messages ---- */

static void c2c_lands_in_both_inboxes_and_the_conversation(void **state) {
  struct fx *f = *state;
  struct mim_message_in m = c2c("alice", "bob", "hello bob", "m1", 1000);
  m.type = MIM_MSG_CUSTOM;
  m.payload = (const uint8_t *)"\x00\x01";
  m.payload_len = 2;
  struct sent s = send1(f, m);
  assert_int_equal(s.status, 0);
  assert_false(s.dup);
  assert_int_equal(s.msg_id, 1);
  assert_int_equal(s.conv_seq, 1);
  assert_int_equal(s.time, 1000);
  assert_int_equal(s.n, 2);
  assert_string_equal(s.uid[0], "bob");
  assert_int_equal(s.seq[0], 1);
  assert_string_equal(s.uid[1], "alice");
  assert_int_equal(s.seq[1], 1);
  assert_int_equal(s.sender_seq, 1);

  struct mim_message_list l;
  inbox(f, "bob", 0, 10, &l);
  assert_int_equal(l.count, 1);
  const struct mim_message *r = &l.items[0];
  assert_int_equal(r->msg_id, 1);
  assert_int_equal(r->inbox_seq, 1);
  assert_int_equal(r->conv_seq, 1);
  assert_int_equal(r->server_time, 1000);
  assert_int_equal(r->type, MIM_MSG_CUSTOM);
  assert_int_equal(r->conv_kind, MIM_CONV_C2C);
  assert_string_equal(r->sender, "alice");
  assert_string_equal(r->sender_device, "phone");
  assert_string_equal(r->peer, "bob");
  assert_string_equal(r->group, "");
  assert_string_equal(r->client_msg_id, "m1");
  assert_content(r, "hello bob");
  assert_int_equal(r->payload_len, 2);
  assert_memory_equal(r->payload, "\x00\x01", 2);
  mim_message_list_finish(&l);

  inbox(f, "alice", 0, 10, &l);
  assert_int_equal(l.count, 1);
  assert_int_equal(l.items[0].msg_id, 1);
  mim_message_list_finish(&l);

  /* the reply shares the conversation, whatever the argument order */
  send1(f, c2c("bob", "alice", "hi alice", NULL, 1001));
  history(f, "alice", "bob", NULL, 0, 0, 10, &l);
  assert_int_equal(l.count, 2);
  assert_content(&l.items[0], "hi alice");
  assert_int_equal(l.items[0].conv_seq, 2);
  assert_int_equal(l.items[0].inbox_seq, 0);
  assert_content(&l.items[1], "hello bob");
  mim_message_list_finish(&l);
  history(f, "bob", "alice", NULL, 0, 0, 10, &l);
  assert_int_equal(l.count, 2);
  mim_message_list_finish(&l);
  /* another pair is another conversation */
  history(f, "alice", "carol", NULL, 0, 0, 10, &l);
  assert_int_equal(l.count, 0);
  mim_message_list_finish(&l);
}

static void self_message_has_one_inbox_entry(void **state) {
  struct fx *f = *state;
  struct sent s = send1(f, c2c("alice", "alice", "note to self", NULL, 1));
  assert_int_equal(s.status, 0);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.uid[0], "alice");
  assert_int_equal(s.seq[0], 1);
  assert_int_equal(s.sender_seq, 1);
  assert_int_equal(last_seq(f, "alice"), 1);
  struct mim_message_list l;
  history(f, "alice", "alice", NULL, 0, 0, 10, &l);
  assert_int_equal(l.count, 1);
  mim_message_list_finish(&l);
}

static void inbox_seqs_are_contiguous_per_user(void **state) {
  struct fx *f = *state;
  const char *users[] = {"u0", "u1", "u2", "u3"};
  uint64_t expect[4] = {0};
  for (int batch = 0; batch < 5; batch++) {
    struct mim_write_batch *b;
    assert_int_equal(mim_write_batch_create(&b), 0);
    for (int i = 0; i < 7; i++) {
      int from = (batch + i) % 4, to = (batch * 3 + i * 5) % 4;
      struct mim_message_in m = c2c(users[from], users[to], "x", NULL, i);
      assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
    }
    assert_int_equal(mim_backend_commit(f->be, b), 0);
    for (size_t i = 0; i < 7; i++) {
      struct sent s = outcome_of(b, i);
      /* every reported seq is the next one of that user */
      for (size_t k = 0; k < s.n; k++) {
        int u = s.uid[k][1] - '0';
        assert_int_equal(s.seq[k], ++expect[u]);
      }
    }
    mim_write_batch_destroy(b);
  }
  for (int u = 0; u < 4; u++)
    assert_int_equal(assert_inbox_contiguous(f, users[u]), expect[u]);
  assert_int_equal(last_seq(f, "nobody"), 0);
}

static void msg_ids_increase_in_commit_order(void **state) {
  struct fx *f = *state;
  const char *members[] = {"a", "b"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "g", members, 2, NULL, 0),
                   0);
  uint64_t prev = 0;
  for (int batch = 0; batch < 4; batch++) {
    struct mim_write_batch *b;
    assert_int_equal(mim_write_batch_create(&b), 0);
    for (int i = 0; i < 5; i++) {
      struct mim_message_in m = i % 2 ? grp("a", "g", "x", NULL, 1)
                                      : c2c("a", "b", "y", NULL, 1);
      assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
      assert_int_equal(mim_write_batch_add_cursor(b, "a", "d", 1, NULL), 0);
    }
    assert_int_equal(mim_backend_commit(f->be, b), 0);
    for (size_t i = 0; i < mim_write_batch_count(b); i += 2) {
      struct sent s = outcome_of(b, i);
      assert_int_equal(s.msg_id, prev + 1); /* no gaps either */
      prev = s.msg_id;
    }
    mim_write_batch_destroy(b);
  }
  struct mim_message_list l;
  inbox(f, "b", 0, 100, &l);
  assert_int_equal(l.count, 20);
  for (size_t i = 1; i < l.count; i++)
    assert_true(l.items[i].msg_id > l.items[i - 1].msg_id);
  mim_message_list_finish(&l);
}

/* ---- dedup ---- */

static void dedup_in_the_same_batch_shares_the_original(void **state) {
  struct fx *f = *state;
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  struct mim_message_in m = c2c("alice", "bob", "once", "cm-1", 100);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  m.server_time = 150; /* the retry arrives later */
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  struct sent first = outcome_of(b, 0), again = outcome_of(b, 1);
  mim_write_batch_destroy(b);
  assert_false(first.dup);
  assert_true(again.dup);
  assert_int_equal(again.status, 0);
  assert_int_equal(again.msg_id, first.msg_id);
  assert_int_equal(again.time, 100); /* the original's */
  assert_int_equal(again.conv_seq, first.conv_seq);
  assert_int_equal(again.sender_seq, first.sender_seq);
  assert_int_equal(again.n, 0);
  assert_int_equal(last_seq(f, "bob"), 1);
  assert_int_equal(last_seq(f, "alice"), 1);
}

static void dedup_in_a_later_batch_returns_the_original(void **state) {
  struct fx *f = *state;
  send1(f, c2c("alice", "bob", "before", NULL, 10));
  struct sent first = send1(f, c2c("alice", "bob", "payload", "cm-7", 20));
  send1(f, c2c("bob", "alice", "reply", NULL, 30));
  struct sent again = send1(f, c2c("alice", "bob", "payload", "cm-7", 40));
  assert_true(again.dup);
  assert_int_equal(again.msg_id, first.msg_id);
  assert_int_equal(again.time, 20);
  assert_int_equal(again.conv_seq, 2);
  assert_int_equal(again.sender_seq, 2);
  assert_int_equal(again.n, 0);
  /* no new entries anywhere */
  assert_int_equal(last_seq(f, "bob"), 3);
  assert_int_equal(last_seq(f, "alice"), 3);
  struct mim_message_list l;
  history(f, "alice", "bob", NULL, 0, 0, 10, &l);
  assert_int_equal(l.count, 3);
  mim_message_list_finish(&l);
  /* the next new message takes the next msg_id */
  assert_int_equal(send1(f, c2c("alice", "bob", "n", NULL, 50)).msg_id, 4);
}

static void dedup_conflict_on_other_content_or_target(void **state) {
  struct fx *f = *state;
  const char *members[] = {"alice", "bob"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", members, 2, NULL, 0);
  struct sent first = send1(f, c2c("alice", "bob", "original", "cm", 1));
  assert_int_equal(first.status, 0);

  struct mim_message_in other = c2c("alice", "bob", "changed", "cm", 2);
  assert_int_equal(send1(f, other).status, -MIM_ERR_DEDUP_CONFLICT);
  other = c2c("alice", "carol", "original", "cm", 2);
  assert_int_equal(send1(f, other).status, -MIM_ERR_DEDUP_CONFLICT);
  other = c2c("alice", "bob", "original", "cm", 2);
  other.type = MIM_MSG_CUSTOM;
  assert_int_equal(send1(f, other).status, -MIM_ERR_DEDUP_CONFLICT);
  other = c2c("alice", "bob", "original", "cm", 2);
  other.payload = (const uint8_t *)"p";
  other.payload_len = 1;
  assert_int_equal(send1(f, other).status, -MIM_ERR_DEDUP_CONFLICT);
  other = grp("alice", "g", "original", "cm", 2);
  assert_int_equal(send1(f, other).status, -MIM_ERR_DEDUP_CONFLICT);
  /* a conflict writes nothing */
  assert_int_equal(last_seq(f, "bob"), 1);
  assert_int_equal(last_seq(f, "carol"), 0);
  /* the sender device is not part of the comparison: a retry may come from
   * another device of the same user */
  other = c2c("alice", "bob", "original", "cm", 3);
  other.sender_device = "laptop";
  struct sent dup = send1(f, other);
  assert_true(dup.dup);
  assert_int_equal(dup.msg_id, first.msg_id);
}

static void dedup_is_per_sender_and_needs_a_client_msg_id(void **state) {
  struct fx *f = *state;
  struct sent a = send1(f, c2c("alice", "bob", "same", "cm", 1));
  struct sent b = send1(f, c2c("carol", "bob", "same", "cm", 1));
  assert_false(b.dup);
  assert_int_not_equal(a.msg_id, b.msg_id);
  /* NULL and "" client_msg_id: never deduplicated */
  struct sent n1 = send1(f, c2c("alice", "bob", "again", NULL, 2));
  struct sent n2 = send1(f, c2c("alice", "bob", "again", NULL, 2));
  struct sent e1 = send1(f, c2c("alice", "bob", "again", "", 2));
  struct sent e2 = send1(f, c2c("alice", "bob", "again", "", 2));
  assert_false(n2.dup);
  assert_false(e2.dup);
  assert_int_equal(n2.msg_id, n1.msg_id + 1);
  assert_int_equal(e1.msg_id, n2.msg_id + 1);
  assert_int_equal(e2.msg_id, e1.msg_id + 1);
  assert_int_equal(last_seq(f, "bob"), 6);
}

static void expired_dedup_entry_makes_a_new_message(void **state) {
  struct fx *f = *state;
  f->cfg.dedup_window_ms = 1000;
  reopen(f);
  struct sent first = send1(f, c2c("alice", "bob", "x", "cm", 10000));
  struct sent in = send1(f, c2c("alice", "bob", "x", "cm", 11000));
  assert_true(in.dup); /* exactly at the window's edge: still remembered */
  assert_int_equal(in.msg_id, first.msg_id);
  struct sent late = send1(f, c2c("alice", "bob", "x", "cm", 11001));
  assert_false(late.dup);
  assert_int_not_equal(late.msg_id, first.msg_id);
  /* the id now belongs to the new message, even with other content */
  struct sent again = send1(f, c2c("alice", "bob", "x", "cm", 11500));
  assert_true(again.dup);
  assert_int_equal(again.msg_id, late.msg_id);
  struct sent reuse = send1(f, c2c("alice", "bob", "new text", "cm", 13000));
  assert_false(reuse.dup);
  assert_int_equal(reuse.status, 0);
  assert_int_equal(last_seq(f, "bob"), 3);
}

/* White-box (LMDB): commits prune expired dedup entries. */
static size_t raw_entries(const char *dir, const char *db) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_stat st;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
  assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
  assert_int_equal(mdb_stat(txn, dbi, &st), 0);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return st.ms_entries;
}

static void expired_dedup_entries_are_pruned(void **state) {
  struct fx *f = *state;
  f->cfg.dedup_window_ms = 1000;
  reopen(f);
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  for (int i = 0; i < 300; i++) {
    char cmid[16];
    snprintf(cmid, sizeof cmid, "old-%d", i);
    struct mim_message_in m = c2c("alice", "bob", "x", cmid, 1000 + i);
    assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  }
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
  mim_backend_destroy(f->be);
  f->be = NULL;
  assert_int_equal(raw_entries(f->dir, "dedup"), 300);
  assert_int_equal(raw_entries(f->dir, "dedup_time"), 300);
  assert_int_equal(make_backend(f), 0);
  /* far later: every old entry has expired. A commit prunes 256 expired
   * entries plus one per entry it adds (here 257), the next the rest. */
  send1(f, c2c("alice", "bob", "x", "new", 100000));
  mim_backend_destroy(f->be);
  f->be = NULL;
  assert_int_equal(raw_entries(f->dir, "dedup"), 300 - 257 + 1);
  assert_int_equal(raw_entries(f->dir, "dedup_time"), 300 - 257 + 1);
  assert_int_equal(make_backend(f), 0);
  send1(f, c2c("alice", "bob", "x", "newer", 100001));
  mim_backend_destroy(f->be);
  f->be = NULL;
  assert_int_equal(raw_entries(f->dir, "dedup"), 2);
  assert_int_equal(raw_entries(f->dir, "dedup_time"), 2);
  assert_int_equal(make_backend(f), 0);
  /* the live entries still deduplicate */
  assert_true(send1(f, c2c("alice", "bob", "x", "new", 100002)).dup);
}

/* ---- groups ---- */

static void group_create_add_remove_report_members(void **state) {
  struct fx *f = *state;
  char list[256];
  const char *abb[] = {"bob", "alice", "bob"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "g1", abb, 3, list,
                            sizeof list),
                   0);
  assert_string_equal(list, "bob,alice"); /* each once */
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "g1", abb, 1, list,
                            sizeof list),
                   -MIM_ERR_GROUP_EXISTS);
  assert_string_equal(list, "");
  const char *bc[] = {"bob", "carol"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "g1", bc, 2, list,
                            sizeof list),
                   0);
  assert_string_equal(list, "carol");
  const char *az[] = {"alice", "zed", "nobody-ever-seen"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_REMOVE, "g1", az, 3, list,
                            sizeof list),
                   0);
  assert_string_equal(list, "alice");
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "nope", bc, 2, list,
                            sizeof list),
                   -MIM_ERR_NO_SUCH_GROUP);
  assert_int_equal(group_op(f, MIM_OP_GROUP_REMOVE, "nope", bc, 2, list,
                            sizeof list),
                   -MIM_ERR_NO_SUCH_GROUP);
  /* an empty group is a group */
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "empty", NULL, 0, list,
                            sizeof list),
                   0);

  uint64_t joined = 99;
  const struct mim_backend_ops *ops = f->be->ops;
  assert_int_equal(ops->member_get(f->be->impl, "g1", "bob", &joined), 0);
  assert_int_equal(joined, 0);
  assert_int_equal(ops->member_get(f->be->impl, "g1", "alice", &joined),
                   -MIM_ERR_NOT_MEMBER);
  assert_int_equal(ops->member_get(f->be->impl, "g1", "stranger", &joined),
                   -MIM_ERR_NOT_MEMBER);
  assert_int_equal(ops->member_get(f->be->impl, "nope", "bob", &joined),
                   -MIM_ERR_NO_SUCH_GROUP);
}

struct collected {
  char names[16][32];
  uint64_t joined[16];
  size_t n;
};

static void collect_member(void *user, const struct mim_group_member *m) {
  struct collected *c = user;
  assert_true(c->n < 16);
  snprintf(c->names[c->n], sizeof c->names[c->n], "%s", m->uid);
  c->joined[c->n++] = m->joined_conv_seq;
}

static void members_list_is_in_uid_order(void **state) {
  struct fx *f = *state;
  /* ids are assigned in this (non-alphabetical) order */
  const char *m[] = {"zoe", "adam", "mia"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", m, 3, NULL, 0);
  send1(f, grp("zoe", "g", "one", NULL, 1));
  const char *late[] = {"bea"};
  group_op(f, MIM_OP_GROUP_ADD, "g", late, 1, NULL, 0);
  struct collected c = {0};
  const struct mim_backend_ops *ops = f->be->ops;
  assert_int_equal(ops->members_list(f->be->impl, "g", collect_member, &c), 0);
  assert_int_equal(c.n, 4);
  assert_string_equal(c.names[0], "adam");
  assert_string_equal(c.names[1], "bea");
  assert_int_equal(c.joined[1], 1);
  assert_string_equal(c.names[2], "mia");
  assert_string_equal(c.names[3], "zoe");
  assert_int_equal(c.joined[3], 0);
  c.n = 0;
  assert_int_equal(ops->members_list(f->be->impl, "nope", collect_member, &c),
                   -MIM_ERR_NO_SUCH_GROUP);
  assert_int_equal(c.n, 0);
}

static void group_message_reaches_every_member(void **state) {
  struct fx *f = *state;
  const char *members[] = {"alice", "bob", "carol"};
  group_op(f, MIM_OP_GROUP_CREATE, "team", members, 3, NULL, 0);
  send1(f, c2c("bob", "carol", "private", NULL, 1)); /* bob, carol at 1 */
  struct sent s = send1(f, grp("alice", "team", "hello team", "g1", 2));
  assert_int_equal(s.status, 0);
  assert_int_equal(s.conv_seq, 1);
  assert_int_equal(s.n, 3);
  int seen = 0;
  for (size_t k = 0; k < s.n; k++) {
    if (strcmp(s.uid[k], "alice") == 0) {
      assert_int_equal(s.seq[k], 1);
      assert_int_equal(s.sender_seq, 1);
      seen |= 1;
    } else if (strcmp(s.uid[k], "bob") == 0) {
      assert_int_equal(s.seq[k], 2);
      seen |= 2;
    } else if (strcmp(s.uid[k], "carol") == 0) {
      assert_int_equal(s.seq[k], 2);
      seen |= 4;
    }
  }
  assert_int_equal(seen, 7);
  struct mim_message_list l;
  inbox(f, "carol", 1, 10, &l);
  assert_int_equal(l.count, 1);
  assert_int_equal(l.items[0].conv_kind, MIM_CONV_GROUP);
  assert_string_equal(l.items[0].group, "team");
  assert_string_equal(l.items[0].sender, "alice");
  assert_content(&l.items[0], "hello team");
  mim_message_list_finish(&l);
  history(f, NULL, NULL, "team", 0, 0, 10, &l);
  assert_int_equal(l.count, 1);
  assert_int_equal(l.items[0].msg_id, s.msg_id);
  mim_message_list_finish(&l);
  /* the group's timeline and a c2c timeline of the same ids never mix */
  history(f, "bob", "carol", NULL, 0, 0, 10, &l);
  assert_int_equal(l.count, 1);
  assert_content(&l.items[0], "private");
  mim_message_list_finish(&l);
  /* a group retry is deduplicated too */
  struct sent again = send1(f, grp("alice", "team", "hello team", "g1", 3));
  assert_true(again.dup);
  assert_int_equal(again.conv_seq, 1);
  assert_int_equal(again.sender_seq, 1);
}

static void non_member_send_is_refused_and_writes_nothing(void **state) {
  struct fx *f = *state;
  const char *members[] = {"alice", "bob"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", members, 2, NULL, 0);
  send1(f, c2c("mallory", "bob", "known user", NULL, 1)); /* msg_id 1 */
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  struct mim_message_in m = grp("mallory", "g", "let me in", "x1", 2);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  m = grp("stranger", "g", "never seen before", "x2", 2);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  m = grp("alice", "g", "members only", NULL, 2);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_write_batch_status(b), 0);
  struct sent r0 = outcome_of(b, 0), r1 = outcome_of(b, 1),
              r2 = outcome_of(b, 2);
  mim_write_batch_destroy(b);
  assert_int_equal(r0.status, -MIM_ERR_NOT_MEMBER);
  assert_int_equal(r0.msg_id, 0);
  assert_int_equal(r1.status, -MIM_ERR_NOT_MEMBER);
  /* the others in the batch are unaffected, and the refused ops did not
   * consume a msg_id or a conv_seq */
  assert_int_equal(r2.status, 0);
  assert_int_equal(r2.msg_id, 2);
  assert_int_equal(r2.conv_seq, 1);
  assert_int_equal(last_seq(f, "bob"), 2);
  assert_int_equal(last_seq(f, "mallory"), 1);
  assert_int_equal(last_seq(f, "stranger"), 0);
  /* the refused cmid was not remembered: after joining, it is new */
  const char *join[] = {"mallory"};
  group_op(f, MIM_OP_GROUP_ADD, "g", join, 1, NULL, 0);
  struct sent later = send1(f, grp("mallory", "g", "let me in", "x1", 3));
  assert_int_equal(later.status, 0);
  assert_false(later.dup);
}

static void group_send_to_unknown_group(void **state) {
  struct fx *f = *state;
  struct sent s = send1(f, grp("alice", "ghost", "anyone?", "c", 1));
  assert_int_equal(s.status, -MIM_ERR_NO_SUCH_GROUP);
  s = send1(f, grp("", "ghost", "system", NULL, 1));
  assert_int_equal(s.status, -MIM_ERR_NO_SUCH_GROUP);
  assert_int_equal(last_seq(f, "alice"), 0);
  /* the next real message gets msg_id 1: nothing was consumed */
  assert_int_equal(send1(f, c2c("alice", "bob", "x", NULL, 2)).msg_id, 1);
}

static void late_joiner_sees_only_later_messages(void **state) {
  struct fx *f = *state;
  const char *first[] = {"alice"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", first, 1, NULL, 0);
  send1(f, grp("alice", "g", "one", NULL, 1));
  send1(f, grp("alice", "g", "two", NULL, 2));
  const char *late[] = {"bob"};
  group_op(f, MIM_OP_GROUP_ADD, "g", late, 1, NULL, 0);
  uint64_t joined = 0;
  assert_int_equal(f->be->ops->member_get(f->be->impl, "g", "bob", &joined),
                   0);
  assert_int_equal(joined, 2);
  struct sent s = send1(f, grp("alice", "g", "three", NULL, 3));
  assert_int_equal(s.conv_seq, 3);
  assert_true(s.conv_seq > joined);
  assert_int_equal(s.n, 2);
  struct mim_message_list l;
  inbox(f, "bob", 0, 10, &l);
  assert_int_equal(l.count, 1);
  assert_content(&l.items[0], "three");
  mim_message_list_finish(&l);
  /* history after the join point is exactly what bob may see */
  history(f, NULL, NULL, "g", 0, joined, 10, &l);
  assert_int_equal(l.count, 1);
  assert_content(&l.items[0], "three");
  mim_message_list_finish(&l);
  /* removed members stop receiving */
  group_op(f, MIM_OP_GROUP_REMOVE, "g", late, 1, NULL, 0);
  s = send1(f, grp("alice", "g", "four", NULL, 4));
  assert_int_equal(s.n, 1);
  assert_int_equal(last_seq(f, "bob"), 1);
  assert_int_equal(send1(f, grp("bob", "g", "hey", NULL, 5)).status,
                   -MIM_ERR_NOT_MEMBER);
}

static void system_message_and_server_push(void **state) {
  struct fx *f = *state;
  const char *members[] = {"alice", "bob"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", members, 2, NULL, 0);
  struct mim_message_in sys = grp("", "g", "bob joined", NULL, 1);
  sys.type = MIM_MSG_SYSTEM;
  struct sent s = send1(f, sys);
  assert_int_equal(s.status, 0);
  assert_int_equal(s.n, 2);
  assert_int_equal(s.sender_seq, 0);
  assert_int_equal(s.conv_seq, 1);

  const char *to[] = {"carol", "alice", "carol"};
  struct mim_message_in push = c2c("", NULL, "promo", "push-1", 2);
  push.type = MIM_MSG_PUSH;
  push.conv_kind = MIM_CONV_PUSH;
  push.recipients = to;
  push.n_recipients = 3;
  push.payload = (const uint8_t *)"{}";
  push.payload_len = 2;
  s = send1(f, push);
  assert_int_equal(s.status, 0);
  assert_int_equal(s.n, 2); /* carol once */
  assert_int_equal(s.conv_seq, 0);
  assert_int_equal(s.sender_seq, 0);
  assert_int_equal(last_seq(f, "carol"), 1);
  assert_int_equal(last_seq(f, "alice"), 2);
  struct mim_message_list l;
  inbox(f, "carol", 0, 10, &l);
  assert_int_equal(l.count, 1);
  assert_int_equal(l.items[0].conv_kind, MIM_CONV_PUSH);
  assert_int_equal(l.items[0].conv_seq, 0);
  assert_string_equal(l.items[0].sender, "");
  assert_memory_equal(l.items[0].payload, "{}", 2);
  mim_message_list_finish(&l);
  /* a push is in no conversation */
  history(f, NULL, NULL, "g", 0, 0, 10, &l);
  assert_int_equal(l.count, 1);
  mim_message_list_finish(&l);
  /* server pushes are deduplicated by their client_msg_id as well */
  s = send1(f, push);
  assert_true(s.dup);
  assert_int_equal(last_seq(f, "carol"), 1);
}

static void cursors_only_rise(void **state) {
  struct fx *f = *state;
  assert_int_equal(cursor_of(f, "alice", "phone"), 0);
  cursor_set(f, "alice", "phone", 5);
  assert_int_equal(cursor_of(f, "alice", "phone"), 5);
  cursor_set(f, "alice", "phone", 3);
  assert_int_equal(cursor_of(f, "alice", "phone"), 5);
  cursor_set(f, "alice", "phone", 9);
  assert_int_equal(cursor_of(f, "alice", "phone"), 9);
  /* per device and per user */
  assert_int_equal(cursor_of(f, "alice", "laptop"), 0);
  assert_int_equal(cursor_of(f, "bob", "phone"), 0);
  cursor_set(f, "alice", "laptop", 2);
  assert_int_equal(cursor_of(f, "alice", "laptop"), 2);
  assert_int_equal(cursor_of(f, "alice", "phone"), 9);
  /* the highest of several in one batch wins, in any order */
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_cursor(b, "bob", "d", 12, NULL), 0);
  assert_int_equal(mim_write_batch_add_cursor(b, "bob", "d", 4, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
  assert_int_equal(cursor_of(f, "bob", "d"), 12);
}

/* ---- reads ---- */

static void read_inbox_pages_in_order(void **state) {
  struct fx *f = *state;
  for (int i = 0; i < 10; i++) {
    char text[8];
    snprintf(text, sizeof text, "m%d", i + 1);
    send1(f, c2c("alice", "bob", text, NULL, i));
  }
  struct mim_message_list l;
  inbox(f, "bob", 0, 4, &l);
  assert_int_equal(l.count, 4);
  assert_true(l.has_more);
  assert_int_equal(l.items[3].inbox_seq, 4);
  mim_message_list_finish(&l);
  inbox(f, "bob", 4, 6, &l); /* exactly the rest */
  assert_int_equal(l.count, 6);
  assert_false(l.has_more);
  assert_int_equal(l.items[0].inbox_seq, 5);
  assert_content(&l.items[5], "m10");
  mim_message_list_finish(&l);
  inbox(f, "bob", 10, 5, &l);
  assert_int_equal(l.count, 0);
  assert_false(l.has_more);
  mim_message_list_finish(&l);
  inbox(f, "bob", 2, 0, &l);
  assert_int_equal(l.count, 0);
  assert_true(l.has_more);
  mim_message_list_finish(&l);
  /* unknown users just have an empty inbox */
  inbox(f, "nobody", 0, 5, &l);
  assert_int_equal(l.count, 0);
  mim_message_list_finish(&l);
  /* reads append to the list */
  inbox(f, "bob", 0, 2, &l);
  assert_int_equal(f->be->ops->read_inbox(f->be->impl, "alice", 8, 5, &l), 0);
  assert_int_equal(l.count, 4);
  assert_int_equal(l.items[2].inbox_seq, 9);
  mim_message_list_finish(&l);
  assert_int_equal(f->be->ops->read_inbox(f->be->impl, NULL, 0, 5, &l),
                   -EINVAL);
}

static void read_conversation_pages_newest_first(void **state) {
  struct fx *f = *state;
  for (int i = 1; i <= 10; i++) {
    char text[8];
    snprintf(text, sizeof text, "m%d", i);
    send1(f, i % 2 ? c2c("alice", "bob", text, NULL, i)
                   : c2c("bob", "alice", text, NULL, i));
  }
  struct mim_message_list l;
  history(f, "alice", "bob", NULL, 0, 0, 4, &l);
  assert_int_equal(l.count, 4);
  assert_true(l.has_more);
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(l.items[i].conv_seq, 10 - i);
  assert_content(&l.items[0], "m10");
  uint64_t before = l.items[3].conv_seq;
  mim_message_list_finish(&l);
  history(f, "alice", "bob", NULL, before, 0, 4, &l);
  assert_int_equal(l.count, 4);
  assert_true(l.has_more);
  assert_int_equal(l.items[0].conv_seq, 6);
  before = l.items[3].conv_seq;
  mim_message_list_finish(&l);
  history(f, "alice", "bob", NULL, before, 0, 4, &l);
  assert_int_equal(l.count, 2);
  assert_false(l.has_more);
  assert_int_equal(l.items[1].conv_seq, 1);
  mim_message_list_finish(&l);
  /* both bounds: (after, before) */
  history(f, "alice", "bob", NULL, 8, 5, 10, &l);
  assert_int_equal(l.count, 2);
  assert_int_equal(l.items[0].conv_seq, 7);
  assert_int_equal(l.items[1].conv_seq, 6);
  assert_false(l.has_more);
  mim_message_list_finish(&l);
  history(f, "alice", "bob", NULL, 0, 7, 3, &l); /* exactly the rest */
  assert_int_equal(l.count, 3);
  assert_false(l.has_more);
  mim_message_list_finish(&l);
  /* a conversation before another pair's keys: still bounded */
  send1(f, c2c("zed", "zoe", "other", NULL, 11));
  history(f, "alice", "bob", NULL, 0, 0, 100, &l);
  assert_int_equal(l.count, 10);
  mim_message_list_finish(&l);
  history(f, "zed", "zoe", NULL, 0, 0, 100, &l);
  assert_int_equal(l.count, 1);
  mim_message_list_finish(&l);
  history(f, NULL, NULL, "no-group", 0, 0, 10, &l);
  assert_int_equal(l.count, 0);
  mim_message_list_finish(&l);
  assert_int_equal(f->be->ops->read_conversation(f->be->impl, "a", NULL, NULL,
                                                 0, 0, 5, &l),
                   -EINVAL);
}

/* ---- durability and the LMDB environment ---- */

static void data_survives_reopen(void **state) {
  struct fx *f = *state;
  f->cfg.no_sync = false; /* the real thing */
  reopen(f);
  const char *members[] = {"alice", "bob"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", members, 2, NULL, 0);
  struct sent s1 = send1(f, c2c("alice", "bob", "persist me", "p1", 10));
  send1(f, grp("bob", "g", "group msg", NULL, 11));
  cursor_set(f, "bob", "phone", 2);
  reopen(f);
  assert_int_equal(last_seq(f, "bob"), 2);
  assert_int_equal(last_seq(f, "alice"), 2);
  assert_int_equal(cursor_of(f, "bob", "phone"), 2);
  uint64_t joined;
  assert_int_equal(f->be->ops->member_get(f->be->impl, "g", "alice", &joined),
                   0);
  struct mim_message_list l;
  inbox(f, "bob", 0, 10, &l);
  assert_int_equal(l.count, 2);
  assert_content(&l.items[0], "persist me");
  assert_string_equal(l.items[1].group, "g");
  mim_message_list_finish(&l);
  history(f, NULL, NULL, "g", 0, 0, 10, &l);
  assert_int_equal(l.count, 1);
  mim_message_list_finish(&l);
  /* dedup remembered, ids and seqs continue */
  struct sent dup = send1(f, c2c("alice", "bob", "persist me", "p1", 12));
  assert_true(dup.dup);
  assert_int_equal(dup.msg_id, s1.msg_id);
  struct sent next = send1(f, c2c("bob", "alice", "after reopen", NULL, 13));
  assert_int_equal(next.msg_id, 3);
  assert_int_equal(next.conv_seq, 2);
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "g", members, 1, NULL, 0),
                   -MIM_ERR_GROUP_EXISTS);
  assert_inbox_contiguous(f, "alice");
  assert_inbox_contiguous(f, "bob");
}

/* White-box (LMDB): rewrites meta "schema" with raw LMDB. */
static void set_raw_schema(const char *dir, uint8_t version) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
  assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
  uint8_t v4[4] = {0, 0, 0, version};
  MDB_val k = {6, "schema"}, v = {4, v4};
  assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

static uint8_t raw_schema(const char *dir) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
  assert_int_equal(mdb_env_open(env, dir, MDB_RDONLY, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
  MDB_val k = {6, "schema"}, v;
  assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
  assert_int_equal(v.mv_size, 4);
  uint8_t version = ((const uint8_t *)v.mv_data)[3];
  mdb_txn_abort(txn);
  mdb_env_close(env);
  return version;
}

static void schema_mismatch_is_refused(void **state) {
  struct fx *f = *state;
  send1(f, c2c("alice", "bob", "x", NULL, 1));
  mim_backend_destroy(f->be);
  f->be = NULL;
  assert_int_equal(raw_schema(f->dir), MIM_LMDB_SCHEMA_VERSION);
  set_raw_schema(f->dir, MIM_LMDB_SCHEMA_VERSION + 1);
  assert_int_equal(mim_lmdb_open(&f->be, &f->cfg), -MIM_ERR_SCHEMA_MISMATCH);
  assert_null(f->be);
  /* nothing was written: the version is still the tampered one */
  assert_int_equal(raw_schema(f->dir), MIM_LMDB_SCHEMA_VERSION + 1);
  set_raw_schema(f->dir, MIM_LMDB_SCHEMA_VERSION);
  assert_int_equal(mim_lmdb_open(&f->be, &f->cfg), 0);
  assert_int_equal(last_seq(f, "bob"), 1);

  /* someone else's LMDB files are refused too, and left alone */
  char other[700];
  snprintf(other, sizeof other, "%s-foreign", f->dir);
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mkdir(other, 0700), 0);
  assert_int_equal(mdb_env_open(env, other, 0, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
  MDB_val k = {3, "key"}, v = {3, "val"};
  assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  struct mim_lmdb_config cfg = f->cfg;
  cfg.path = other;
  struct mim_backend *be = NULL;
  assert_int_equal(mim_lmdb_open(&be, &cfg), -MIM_ERR_SCHEMA_MISMATCH);
  tu_rmdir_free(strdup(other));
}

static void map_grows_when_full(void **state) {
  struct fx *f = *state;
  f->cfg.map_size = 256 << 10;
  reopen(f);
  size_t initial = mim__store_lmdb_map_size(f->be);
  assert_true(initial <= 256 << 10);
  char text[300];
  memset(text, 'x', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  const char *users[] = {"a", "b", "c", "d", "e"};
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  uint64_t next_id = 1;
  for (int batch = 0; batch < 40; batch++) {
    for (int i = 0; i < 100; i++) {
      char cmid[24];
      snprintf(cmid, sizeof cmid, "b%d-%d", batch, i);
      /* never to oneself: two inbox entries per message */
      struct mim_message_in m = c2c(users[i % 5],
                                    users[(i + 1 + batch % 4) % 5], text,
                                    cmid, batch);
      assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
    }
    assert_int_equal(mim_backend_commit(f->be, b), 0);
    for (size_t i = 0; i < 100; i++) {
      struct sent s = outcome_of(b, i);
      assert_int_equal(s.status, 0);
      assert_int_equal(s.msg_id, next_id++);
    }
    mim_write_batch_reset(b);
  }
  mim_write_batch_destroy(b);
  /* 4000 messages of 300 bytes cannot fit in 256 KiB: several doublings */
  assert_true(mim__store_lmdb_map_size(f->be) >= 8 * initial);
  size_t total = 0, of_a = assert_inbox_contiguous(f, "a");
  for (int u = 0; u < 5; u++)
    total += assert_inbox_contiguous(f, users[u]);
  assert_int_equal(total, 8000);
  struct mim_message_list l;
  history(f, "a", "b", NULL, 0, 0, 1, &l);
  assert_int_equal(l.count, 1);
  assert_content(&l.items[0], text);
  mim_message_list_finish(&l);
  reopen(f); /* 256 KiB asked again: LMDB maps at least the data */
  assert_int_equal(assert_inbox_contiguous(f, "a"), of_a);
}

static void map_growth_stops_at_the_limit(void **state) {
  struct fx *f = *state;
  f->cfg.map_size = 128 << 10;
  f->cfg.map_size_max = 512 << 10;
  reopen(f);
  char text[2000];
  memset(text, 'y', sizeof text - 1);
  text[sizeof text - 1] = '\0';
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  int status = 0, batches = 0;
  uint64_t stored = 0;
  while (status == 0 && batches < 100) {
    mim_write_batch_reset(b);
    for (int i = 0; i < 20; i++) {
      struct mim_message_in m = c2c("a", "b", text, NULL, batches);
      assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
    }
    assert_int_equal(mim_write_batch_add_cursor(b, "a", "d", 1000, NULL), 0);
    status = mim_backend_commit(f->be, b);
    batches++;
    if (status == 0)
      stored += 20;
  }
  assert_int_equal(status, -MIM_ERR_STORE_FULL);
  assert_int_equal(mim_write_batch_status(b), -MIM_ERR_STORE_FULL);
  for (size_t i = 0; i < mim_write_batch_count(b); i++)
    assert_int_equal(outcome_of(b, i).status, -MIM_ERR_STORE_FULL);
  mim_write_batch_destroy(b);
  assert_true(stored > 0);
  assert_int_equal(mim__store_lmdb_map_size(f->be), 512 << 10);
  /* the failed batch left nothing; what was committed is intact */
  assert_int_equal(assert_inbox_contiguous(f, "b"), stored);
  assert_int_equal(cursor_of(f, "a", "d"), stored ? 1000 : 0);
}

/* White-box (LMDB): a failure in the middle of a batch leaves nothing. */
static void failed_commit_leaves_nothing(void **state) {
  struct fx *f = *state;
  const char *members[] = {"alice", "bob"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", members, 2, NULL, 0);
  uint64_t writes[] = {1, 3, 9, 0};
  int errors[] = {-EIO, -ENOSPC, MDB_CORRUPTED, -EIO};
  int expect[] = {-EIO, -MIM_ERR_STORE_FULL, -MIM_ERR_STORE, -EIO};
  for (size_t t = 0; t < 4; t++) {
    mim__store_lmdb_inject_failure(f->be, writes[t], errors[t]);
    struct mim_write_batch *b;
    assert_int_equal(mim_write_batch_create(&b), 0);
    struct mim_message_in m = c2c("alice", "bob", "lost", "cm", 1);
    assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
    m = grp("alice", "g", "lost too", NULL, 1);
    assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
    assert_int_equal(mim_write_batch_add_cursor(b, "bob", "d", 5, NULL), 0);
    const char *carol[] = {"carol"};
    assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_ADD, "g",
                                               carol, 1, 1, NULL),
                     0);
    assert_int_equal(mim_backend_commit(f->be, b), expect[t]);
    assert_int_equal(mim_write_batch_status(b), expect[t]);
    for (size_t i = 0; i < 4; i++) {
      struct sent s = outcome_of(b, i);
      assert_int_equal(s.status, expect[t]);
      assert_int_equal(s.n, 0);
    }
    /* a failed batch may be committed again: now it goes through */
    if (t == 3) {
      assert_int_equal(mim_backend_commit(f->be, b), 0);
      assert_int_equal(outcome_of(b, 0).msg_id, 1);
    }
    mim_write_batch_destroy(b);
    if (t == 3)
      break;
    assert_int_equal(last_seq(f, "bob"), 0);
    assert_int_equal(last_seq(f, "alice"), 0);
    assert_int_equal(cursor_of(f, "bob", "d"), 0);
    assert_int_equal(f->be->ops->member_get(f->be->impl, "g", "carol", NULL),
                     -MIM_ERR_NOT_MEMBER);
    struct mim_message_list l;
    history(f, NULL, NULL, "g", 0, 0, 10, &l);
    assert_int_equal(l.count, 0);
    mim_message_list_finish(&l);
  }
  /* the retried batch stored everything once, with fresh ids */
  assert_int_equal(last_seq(f, "bob"), 2);
  assert_int_equal(cursor_of(f, "bob", "d"), 5);
  assert_int_equal(f->be->ops->member_get(f->be->impl, "g", "carol", NULL), 0);
  struct sent s = send1(f, c2c("alice", "bob", "lost", "cm", 2));
  assert_true(s.dup);
  assert_int_equal(s.msg_id, 1);
}

/* ---- concurrency ---- */

struct reader {
  struct mim_backend *be;
  atomic_bool stop;
  atomic_bool bad;
  atomic_uint reads;
  atomic_uint partial;   /* reads that saw some batches, not all */
  atomic_size_t max_seen;
};

static void *reader_main(void *arg) {
  struct reader *r = arg;
  size_t prev = 0;
  while (!atomic_load(&r->stop)) {
    struct mim_message_list l;
    mim_message_list_init(&l);
    uint64_t before = 0, after = 0;
    bool bad = false;
    if (r->be->ops->inbox_last_seq(r->be->impl, "bob", &before) != 0 ||
        r->be->ops->read_inbox(r->be->impl, "bob", 0, SIZE_MAX, &l) != 0 ||
        r->be->ops->inbox_last_seq(r->be->impl, "bob", &after) != 0)
      bad = true;
    /* one snapshot: seqs 1..n, nothing missing, nothing half-written */
    for (size_t i = 0; i < l.count; i++)
      if (l.items[i].inbox_seq != i + 1 || l.items[i].content_len != 64 ||
          (i > 0 && l.items[i].msg_id <= l.items[i - 1].msg_id))
        bad = true;
    if (l.count < before || l.count > after || l.count < prev)
      bad = true;
    /* commits are atomic: a batch of 50 shows up whole */
    if (l.count % 50 != 0)
      bad = true;
    if (bad)
      atomic_store(&r->bad, true);
    if (l.count > 0 && l.count < 3000)
      atomic_fetch_add(&r->partial, 1);
    prev = l.count;
    size_t seen = atomic_load(&r->max_seen);
    while (l.count > seen &&
           !atomic_compare_exchange_weak(&r->max_seen, &seen, l.count))
      ;
    atomic_fetch_add(&r->reads, 1);
    mim_message_list_finish(&l);
  }
  return NULL;
}

/* Waits until the readers finish one more read (or one failed). */
static void await_a_read(struct reader *r) {
  unsigned n = atomic_load(&r->reads);
  while (atomic_load(&r->reads) == n && !atomic_load(&r->bad))
    sched_yield();
}

static void readers_see_consistent_snapshots(void **state) {
  struct fx *f = *state;
  f->cfg.map_size = 256 << 10; /* growth happens while readers run */
  reopen(f);
  struct reader r = {.be = f->be};
  atomic_init(&r.stop, false);
  atomic_init(&r.bad, false);
  atomic_init(&r.reads, 0);
  atomic_init(&r.partial, 0);
  atomic_init(&r.max_seen, 0);
  pthread_t th[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&th[i], NULL, reader_main, &r), 0);
  char text[65];
  memset(text, 'r', 64);
  text[64] = '\0';
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  await_a_read(&r);
  for (int batch = 0; batch < 60; batch++) {
    for (int i = 0; i < 50; i++) {
      struct mim_message_in m = c2c("alice", "bob", text, NULL, batch);
      assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
    }
    assert_int_equal(mim_backend_commit(f->be, b), 0);
    mim_write_batch_reset(b);
    /* Now and then let a whole read happen between two commits, so some
     * reads are guaranteed to see the store half-way. */
    if (batch % 10 == 9)
      await_a_read(&r);
  }
  mim_write_batch_destroy(b);
  /* let the readers see the final state at least once */
  while (atomic_load(&r.max_seen) < 3000 && !atomic_load(&r.bad))
    sched_yield();
  atomic_store(&r.stop, true);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  assert_false(atomic_load(&r.bad));
  assert_true(atomic_load(&r.partial) > 0);
  assert_int_equal(atomic_load(&r.max_seen), 3000);
  assert_true(mim__store_lmdb_map_size(f->be) > 256 << 10);
}

/* ---- corrupt records (LMDB-specific: written behind the backend's back) */

/* Puts (key, value) into database `db` of the environment in `dir`, with
 * no backend open on it. */
static void raw_put(const char *dir, const char *db, const void *k,
                    size_t kl, const void *v, size_t vl) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
  assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, db, 0, &dbi), 0);
  MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
  assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

static void be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

/* Replaces the stored record of `msg_id`. */
static void raw_record(struct fx *f, uint64_t msg_id, const void *rec,
                       size_t len) {
  uint8_t k[8];
  be64(k, msg_id);
  raw_put(f->dir, "msgs", k, sizeof k, rec, len);
}

/* version 1, type 0, sender "alice", conv_kind 1, peer "bob", content
 * c3 28: well-formed protobuf whose text is not UTF-8. */
static const uint8_t BAD_UTF8_RECORD[] = {
    0x08, 0x01, 0x10, 0x00, 0x1a, 0x05, 'a',  'l',  'i',  'c', 'e',
    0x28, 0x01, 0x32, 0x03, 'b',  'o',  'b',  0x42, 0x02, 0xc3, 0x28};
static const uint8_t GARBAGE_RECORD[] = {0xff, 0xff, 0xff, 0xff, 0x0f};

static void corrupt_records_are_skipped_by_reads(void **state) {
  struct fx *f = *state;
  uint64_t ids[8];
  for (int i = 0; i < 8; i++) {
    char text[16];
    snprintf(text, sizeof text, "m%d", i);
    ids[i] = send1(f, c2c("alice", "bob", text, NULL, 10 + i)).msg_id;
  }
  mim_backend_destroy(f->be);
  f->be = NULL;
  raw_record(f, ids[1], GARBAGE_RECORD, sizeof GARBAGE_RECORD);
  raw_record(f, ids[3], BAD_UTF8_RECORD, sizeof BAD_UTF8_RECORD);
  /* bob's inbox entry 6 (msg 5) points nowhere sensible: 3 bytes */
  uint8_t k[16];
  be64(k, 2); /* bob's user id: alice is 1 */
  be64(k + 8, 6);
  raw_put(f->dir, "inbox", k, sizeof k, "bad", 3);
  /* and entry 7 (msg 6) names a message that does not exist */
  uint8_t missing[8];
  be64(missing, 999);
  be64(k + 8, 7);
  raw_put(f->dir, "inbox", k, sizeof k, missing, sizeof missing);
  assert_int_equal(make_backend(f), 0);
  assert_int_equal(mim_lmdb_corrupt_skipped(f->be), 0);

  /* pages of 2: each returns what it can, in order, none fails */
  static const char *const want[] = {"m0", "m2", "m4", "m7"};
  size_t got = 0;
  uint64_t after = 0;
  for (int page = 0; page < 8; page++) {
    struct mim_message_list l;
    inbox(f, "bob", after, 2, &l);
    for (size_t i = 0; i < l.count; i++) {
      assert_true(got < 4);
      assert_content(&l.items[i], want[got++]);
      assert_true(l.items[i].inbox_seq > after);
      after = l.items[i].inbox_seq;
    }
    bool more = l.has_more;
    mim_message_list_finish(&l);
    if (!more)
      break;
  }
  assert_int_equal(got, 4);
  assert_true(mim_lmdb_corrupt_skipped(f->be) >= 4);

  /* the conversation skips the two bad records (its index is intact) */
  struct mim_message_list l;
  history(f, "alice", "bob", NULL, 0, 0, 100, &l);
  assert_int_equal(l.count, 6);
  for (size_t i = 0; i < l.count; i++)
    assert_true(l.items[i].msg_id != ids[1] && l.items[i].msg_id != ids[3]);
  mim_message_list_finish(&l);
  /* alice's inbox too */
  inbox(f, "alice", 0, 100, &l);
  assert_int_equal(l.count, 6);
  mim_message_list_finish(&l);
}

static void corrupt_dedup_record_does_not_fail_batches(void **state) {
  struct fx *f = *state;
  struct sent first = send1(f, c2c("alice", "bob", "hello", "cm-1", 10));
  cursor_set(f, "bob", "d", 1);
  mim_backend_destroy(f->be);
  f->be = NULL;
  raw_record(f, first.msg_id, GARBAGE_RECORD, sizeof GARBAGE_RECORD);
  /* bob's cursor value of the wrong size */
  uint8_t k[16];
  be64(k, 2);
  be64(k + 8, 3); /* device "d": ids alice 1, bob 2, d 3 */
  raw_put(f->dir, "cursors", k, sizeof k, "xx", 2);
  assert_int_equal(make_backend(f), 0);

  /* the retry's dedup lookup meets the corrupt record: the batch (with a
   * cursor raise next to it) commits; the message is stored again */
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  struct mim_message_in m = c2c("alice", "bob", "hello", "cm-1", 11);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  assert_int_equal(mim_write_batch_add_cursor(b, "bob", "d", 2, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  struct sent again = outcome_of(b, 0);
  assert_int_equal(again.status, 0);
  assert_false(again.dup);
  assert_true(again.msg_id > first.msg_id);
  assert_int_equal(outcome_of(b, 1).status, 0);
  mim_write_batch_destroy(b);
  assert_int_equal(cursor_of(f, "bob", "d"), 2);
  assert_true(mim_lmdb_corrupt_skipped(f->be) >= 2);
  /* and the new entry deduplicates the next retry */
  struct sent third = send1(f, c2c("alice", "bob", "hello", "cm-1", 12));
  assert_true(third.dup);
  assert_int_equal(third.msg_id, again.msg_id);
  assert_int_equal(mim_backend_health(f->be), 0);
}

static void batch_refuses_text_that_is_not_utf8(void **state) {
  (void)state;
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  struct mim_message_in m = c2c("alice", "bob", "bad \xc3\x28", NULL, 1);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL),
                   -MIM_ERR_BAD_UTF8);
  m = c2c("alice", "bob", "ok", "\xed\xa0\x80", 1); /* surrogate cmid */
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL),
                   -MIM_ERR_BAD_UTF8);
  m = c2c("al\xffice", "bob", "ok", NULL, 1);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
  m = c2c("alice", "bob", "\xc3\xa9t\xc3\xa9", NULL, 1);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  const char *members[] = {"ok", "b\xc0\x80" "d"};
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_CREATE, "g",
                                             members, 2, 1, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_cursor(b, "bob", "\xf4\x90\x80\x80",
                                              1, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_count(b), 1);
  mim_write_batch_destroy(b);
}

/* read_bytes_max: a read stops once its entries hold that many bytes
 * (has_more), whatever the entry limit, and always returns one entry. */
static void reads_stop_at_read_bytes_max(void **state) {
  struct fx *f = *state;
  char text[1001];
  memset(text, 'z', 1000);
  text[1000] = '\0';
  for (int i = 0; i < 10; i++)
    send1(f, c2c("alice", "bob", text, NULL, i));
  f->cfg.read_bytes_max = 2500;
  reopen(f);
  struct mim_message_list l;
  inbox(f, "bob", 0, 100, &l);
  assert_int_equal(l.count, 3); /* 1,0xx + 1,0xx < 2,500 <= 3,0xx */
  assert_true(l.has_more);
  assert_int_equal(l.items[2].inbox_seq, 3);
  mim_message_list_finish(&l);
  inbox(f, "bob", 9, 100, &l); /* the last one: nothing more */
  assert_int_equal(l.count, 1);
  assert_false(l.has_more);
  mim_message_list_finish(&l);
  history(f, "alice", "bob", NULL, 0, 0, 100, &l);
  assert_int_equal(l.count, 3);
  assert_true(l.has_more);
  assert_int_equal(l.items[0].conv_seq, 10);
  mim_message_list_finish(&l);
  f->cfg.read_bytes_max = 1; /* smaller than any entry: one per read */
  reopen(f);
  inbox(f, "bob", 0, 100, &l);
  assert_int_equal(l.count, 1);
  assert_true(l.has_more);
  mim_message_list_finish(&l);
}

/* A client names its device freely and each device that acknowledged keeps
 * a cursor record: cursors_per_user_max bounds them per user, a new
 * device's cursor replacing the ones that read least; other users and
 * updates of a kept device are not affected. */
static void cursors_per_user_are_bounded(void **state) {
  struct fx *f = *state;
  f->cfg.cursors_per_user_max = 3;
  reopen(f);
  char dev[16];
  cursor_set(f, "bob", "phone", 5);
  for (unsigned i = 0; i < 10; i++) {
    snprintf(dev, sizeof dev, "d%u", i);
    cursor_set(f, "alice", dev, 10 + i);
  }
  for (unsigned i = 0; i < 10; i++) {
    snprintf(dev, sizeof dev, "d%u", i);
    assert_int_equal(cursor_of(f, "alice", dev), i < 7 ? 0 : 10 + i);
  }
  /* a kept device moves on without evicting anyone */
  cursor_set(f, "alice", "d7", 30);
  assert_int_equal(cursor_of(f, "alice", "d7"), 30);
  assert_int_equal(cursor_of(f, "alice", "d8"), 18);
  assert_int_equal(cursor_of(f, "alice", "d9"), 19);
  /* several new devices in one batch: still three */
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_cursor(b, "alice", "x1", 40, NULL), 0);
  assert_int_equal(mim_write_batch_add_cursor(b, "alice", "x2", 41, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
  assert_int_equal(cursor_of(f, "alice", "d8"), 0);
  assert_int_equal(cursor_of(f, "alice", "d9"), 0);
  assert_int_equal(cursor_of(f, "alice", "d7"), 30);
  assert_int_equal(cursor_of(f, "alice", "x1"), 40);
  assert_int_equal(cursor_of(f, "alice", "x2"), 41);
  assert_int_equal(cursor_of(f, "bob", "phone"), 5);

  /* a limit lowered below what a user has: the next new device trims the
   * user down to it at once */
  f->cfg.cursors_per_user_max = 0; /* none */
  reopen(f);
  for (unsigned i = 0; i < 6; i++) {
    snprintf(dev, sizeof dev, "e%u", i);
    cursor_set(f, "carol", dev, 50 + i);
  }
  assert_int_equal(cursor_of(f, "carol", "e0"), 50);
  f->cfg.cursors_per_user_max = 2;
  reopen(f);
  cursor_set(f, "carol", "new", 99);
  for (unsigned i = 0; i < 6; i++) {
    snprintf(dev, sizeof dev, "e%u", i);
    assert_int_equal(cursor_of(f, "carol", dev), i == 5 ? 55 : 0);
  }
  assert_int_equal(cursor_of(f, "carol", "new"), 99);
}

/* A group without members (an operator's, before anyone is added) lists
 * as empty: no qsort of a NULL array, which the sanitizer build (meson
 * test sets UBSAN_OPTIONS=halt_on_error=1) reports as undefined. */
static void members_list_of_an_empty_group(void **state) {
  struct fx *f = *state;
  group_op(f, MIM_OP_GROUP_CREATE, "empty", NULL, 0, NULL, 0);
  struct collected c = {0};
  const struct mim_backend_ops *ops = f->be->ops;
  assert_int_equal(ops->members_list(f->be->impl, "empty", collect_member, &c),
                   0);
  assert_int_equal(c.n, 0);
}

/* ---- group size limit and transactions too big for LMDB ---- */

static void count_member(void *user, const struct mim_group_member *m) {
  (void)m;
  (*(size_t *)user)++;
}

/* A group never grows past group_members_max: a create or an add that
 * would take it there fails alone, changes nothing, and members already in
 * the group do not count as new. */
static void group_size_is_capped(void **state) {
  struct fx *f = *state;
  mim_backend_destroy(f->be);
  f->cfg.group_members_max = 4;
  assert_int_equal(make_backend(f), 0);
  const char *five[] = {"a", "b", "c", "d", "e"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "big", five, 5, NULL, 0),
                   -MIM_ERR_GROUP_FULL);
  assert_int_equal(f->be->ops->member_get(f->be->impl, "big", "a", NULL),
                   -MIM_ERR_NO_SUCH_GROUP);
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "g", five, 3, NULL, 0),
                   0);
  /* 3 members + d + e = 5 > 4 */
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "g", five + 3, 2, NULL, 0),
                   -MIM_ERR_GROUP_FULL);
  assert_int_equal(f->be->ops->member_get(f->be->impl, "g", "d", NULL),
                   -MIM_ERR_NOT_MEMBER);
  /* a, b already in: only d is new, 4 <= 4 */
  const char *abd[] = {"a", "b", "d"};
  char list[64];
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "g", abd, 3, list,
                            sizeof list),
                   0);
  assert_string_equal(list, "d");
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "g", five + 4, 1, NULL, 0),
                   -MIM_ERR_GROUP_FULL);
  /* leaving makes room again */
  assert_int_equal(group_op(f, MIM_OP_GROUP_REMOVE, "g", five, 1, NULL, 0),
                   0);
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "g", five + 4, 1, NULL, 0),
                   0);
  size_t n = 0;
  assert_int_equal(
      f->be->ops->members_list(f->be->impl, "g", count_member, &n), 0);
  assert_int_equal(n, 4);
}

/* A batch whose transaction fails with MDB_TXN_FULL is split and every op
 * that fits a transaction of its own is stored, in order, with its own
 * outcome; one op too big alone fails with TOO_LARGE, alone. (LMDB's own
 * limit is modelled at a small scale: see mim__store_lmdb_txn_writes_max.) */
static void txn_full_splits_the_batch(void **state) {
  struct fx *f = *state;
  char name[32];
  const char *members[40];
  char names[40][8];
  for (int i = 0; i < 40; i++) {
    snprintf(names[i], sizeof names[i], "m%02d", i);
    members[i] = names[i];
  }
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "big", members, 40,
                            NULL, 0),
                   0);
  mim__store_lmdb_txn_writes_max(f->be, 30);
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  enum { N = 41 };
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "c%d", i);
    struct mim_message_in m =
        i == 20 ? grp("m00", "big", "to forty", "g", 5)
                : c2c("alice", "bob", "hi", name, 5);
    assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  }
  /* the whole batch is far more than 30 writes, yet it commits */
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_write_batch_status(b), 0);
  uint64_t prev = 0;
  for (int i = 0; i < N; i++) {
    const struct mim_op_outcome *o;
    assert_int_equal(mim_write_batch_outcome(b, (size_t)i, &o), 0);
    if (i == 20) {
      assert_int_equal(o->status, -MIM_ERR_TOO_LARGE);
      continue;
    }
    assert_int_equal(o->status, 0);
    assert_true(o->msg_id > prev); /* stored in batch order */
    prev = o->msg_id;
  }
  mim_write_batch_destroy(b);
  assert_int_equal(assert_inbox_contiguous(f, "bob"), N - 1);
  assert_int_equal(assert_inbox_contiguous(f, "alice"), N - 1);
  assert_int_equal(last_seq(f, "m05"), 0); /* the refused one left nothing */
  /* a batch that fits is not split and stays atomic */
  mim__store_lmdb_txn_writes_max(f->be, 0);
  assert_int_equal(mim_write_batch_create(&b), 0);
  struct mim_message_in m = grp("m00", "big", "fits now", "g2", 6);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
  assert_int_equal(last_seq(f, "m05"), 1);
}

/* A real group message to a group at the default limit is one transaction:
 * LMDB (0.9 spills dirty pages) commits it without MDB_TXN_FULL, with one
 * inbox entry per member. */
static void message_to_a_full_size_group_commits(void **state) {
  struct fx *f = *state;
  /* write diffusion at its largest (read diffusion has its own tests) */
  mim_backend_destroy(f->be);
  f->cfg.group_large_min = 0;
  assert_int_equal(make_backend(f), 0);
  enum { N = MIM_GROUP_MEMBERS_MAX_DEFAULT };
  static char names[N][12];
  static const char *members[N];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "u%05d", i);
    members[i] = names[i];
  }
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "huge", members, N, NULL,
                            0),
                   0);
  const char *one_more[] = {"extra"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "huge", one_more, 1, NULL,
                            0),
                   -MIM_ERR_GROUP_FULL);
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  for (int i = 0; i < 3; i++) {
    struct mim_message_in m = grp(names[i], "huge", "hello all", NULL, 7);
    assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  }
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  for (size_t i = 0; i < 3; i++) {
    const struct mim_op_outcome *o;
    assert_int_equal(mim_write_batch_outcome(b, i, &o), 0);
    assert_int_equal(o->status, 0);
    assert_int_equal(o->n_recipients, N);
  }
  mim_write_batch_destroy(b);
  assert_int_equal(last_seq(f, names[N - 1]), 3);
}


/* ---- large groups (read diffusion) ---- */

static void count_name(void *user, const char *name) {
  (void)name;
  (*(size_t *)user)++;
}

/* The add that makes a group reach group_large_min switches it in its own
 * transaction; from then on a message writes one timeline entry and no
 * inbox entry (the sender's neither), and says so in its outcome. */
static void large_group_stores_a_message_once(void **state) {
  struct fx *f = *state;
  mim_backend_destroy(f->be);
  f->cfg.group_large_min = 4;
  assert_int_equal(make_backend(f), 0);
  const char *three[] = {"a", "b", "c"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_CREATE, "g", three, 3, NULL, 0),
                   0);
  size_t n = 0;
  assert_int_equal(mim_backend_large_groups_of(f->be, "a", count_name, &n), 0);
  assert_int_equal(n, 0);
  const char *d[] = {"d"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "g", d, 1, NULL, 0), 0);
  uint64_t before = last_seq(f, "b");
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  struct mim_message_in m = grp("a", "g", "once", NULL, 7);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, 0, &o), 0);
  assert_int_equal(o->status, 0);
  assert_true(o->large);
  assert_int_equal(o->n_recipients, 0);
  assert_int_equal(o->sender_inbox_seq, 0);
  uint64_t conv_seq = o->conv_seq;
  mim_write_batch_destroy(b);
  assert_int_equal(last_seq(f, "b"), before);
  assert_int_equal(last_seq(f, "a"), 0);
  struct mim_message_list ml;
  mim_message_list_init(&ml);
  assert_int_equal(f->be->ops->read_conversation(f->be->impl, "b", NULL, "g",
                                                 0, 0, 10, &ml),
                   0);
  assert_int_equal(ml.count, 1);
  assert_int_equal(ml.items[0].conv_seq, conv_seq);
  mim_message_list_finish(&ml);
  n = 0;
  assert_int_equal(mim_backend_large_groups_of(f->be, "d", count_name, &n), 0);
  assert_int_equal(n, 1);
  /* removed: no longer among the user's large groups */
  assert_int_equal(group_op(f, MIM_OP_GROUP_REMOVE, "g", d, 1, NULL, 0), 0);
  n = 0;
  assert_int_equal(mim_backend_large_groups_of(f->be, "d", count_name, &n), 0);
  assert_int_equal(n, 0);
}

/* Others add a user to groups: what a login follows and a list page
 * merges stays bounded however many large groups the user is in. */
static void large_groups_of_a_user_are_bounded(void **state) {
  struct fx *f = *state;
  mim_backend_destroy(f->be);
  f->cfg.group_large_min = 2;
  assert_int_equal(make_backend(f), 0);
  enum { N = MIM_USER_LARGE_GROUPS_MAX + 5 };
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  const char *two[] = {"victim", "x"};
  for (int i = 0; i < N; i++) {
    char g[16];
    snprintf(g, sizeof g, "g%05d", i);
    assert_int_equal(
        mim_write_batch_add_group(b, MIM_OP_GROUP_CREATE, g, two, 2, 1000,
                                  NULL),
        0);
  }
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
  size_t n = 0;
  assert_int_equal(
      mim_backend_large_groups_of(f->be, "victim", count_name, &n), 0);
  assert_int_equal(n, MIM_USER_LARGE_GROUPS_MAX);
}

/* struct mim_lmdb_config.size: a caller built with an older, smaller struct
 * gets the defaults for what it lacks; a size from a newer header, or none
 * at all, is refused. */
static void config_size_is_checked(void **state) {
  struct fx *f = *state;
  mim_backend_destroy(f->be);
  f->be = NULL;
  struct mim_lmdb_config cfg = f->cfg;
  cfg.size = sizeof cfg + 8;
  assert_int_equal(mim_lmdb_open(&f->be, &cfg), -EINVAL);
  cfg.size = 0;
  assert_int_equal(mim_lmdb_open(&f->be, &cfg), -EINVAL);
  /* an "older" caller that knew every field up to group_members_max: the
   * log fields it lacks take their defaults (the process-wide handler) */
  cfg = f->cfg;
  cfg.size = offsetof(struct mim_lmdb_config, log);
  cfg.log = (mim_log_fn)(uintptr_t)1; /* beyond its size: never read */
  assert_int_equal(mim_lmdb_open(&f->be, &cfg), 0);
}

struct log_seen {
  unsigned lines;
};

static void count_line(void *user, enum mim_log_level level, const char *msg) {
  (void)level;
  (void)msg;
  ((struct log_seen *)user)->lines++;
}

/* A backend's own log handler gets its lines; the process-wide one,
 * installed too, gets none of them. */
static void config_log_is_per_backend(void **state) {
  struct fx *f = *state;
  mim_backend_destroy(f->be);
  f->be = NULL;
  struct log_seen mine = {0}, global = {0};
  mim_log_set_handler(count_line, &global, MIM_LOG_DEBUG);
  struct mim_lmdb_config cfg = f->cfg;
  cfg.map_size = 1 << 20; /* small, so the commit below grows it (INFO) */
  cfg.map_size_max = 64 << 20;
  cfg.log = count_line;
  cfg.log_user = &mine;
  cfg.log_level = MIM_LOG_DEBUG;
  assert_int_equal(mim_lmdb_open(&f->be, &cfg), 0);
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  static uint8_t big[200000];
  for (int i = 0; i < 16; i++) {
    struct mim_message_in m = {.type = MIM_MSG_TEXT, .conv_kind = MIM_CONV_C2C,
                               .sender = "alice", .peer = "bob",
                               .content = big, .content_len = sizeof big,
                               .server_time = 1000};
    assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  }
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
  mim_log_set_handler(NULL, NULL, MIM_LOG_INFO);
  assert_true(mine.lines > 0);
  assert_int_equal(global.lines, 0);
}

/* Library write batches apply the same id rule as the client, RPC and
 * admin entry points (mim_id_valid): no space, control or empty id. */
static void batch_ids_follow_mim_id_valid(void **state) {
  (void)state;
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  const char *bad[] = {"a b", "tab\there", "nl\n", "\x7f", "c1\xc2\x85"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_false(mim_id_valid(bad[i]));
    struct mim_message_in m = c2c("alice", "bob", "hi", NULL, 1);
    m.peer = bad[i];
    assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
    m = c2c("alice", "bob", "hi", NULL, 1);
    m.sender = bad[i];
    assert_int_equal(mim_write_batch_add_message(b, &m, NULL), -EINVAL);
    assert_int_equal(mim_write_batch_add_cursor(b, bad[i], "d", 1, NULL),
                     -EINVAL);
    assert_int_equal(mim_write_batch_add_cursor(b, "u", bad[i], 1, NULL),
                     -EINVAL);
    const char *members[] = {bad[i]};
    assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_CREATE, "g",
                                               members, 1, 0, NULL),
                     -EINVAL);
    const char *ok_members[] = {"m1"};
    assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_CREATE, bad[i],
                                               ok_members, 1, 0, NULL),
                     -EINVAL);
  }
  assert_int_equal(mim_write_batch_count(b), 0);
  mim_write_batch_destroy(b);
}

/* ---- group notices and a user's groups (issue 13) ---- */

/* The notice's format is stable and documented (store.h): exact bytes. */
static void group_notice_format_is_stable(void **state) {
  (void)state;
  char buf[MIM_GROUP_NOTICE_MAX];
  size_t len = 0;
  const char *ab[] = {"alice", "bo\"b\\"};
  assert_int_equal(mim_group_notice_format(buf, sizeof buf, &len,
                                           MIM_OP_GROUP_CREATE, "g1", "alice",
                                           ab, 2),
                   0);
  assert_string_equal(buf, "{\"v\":1,\"group\":\"g1\",\"action\":\"create\","
                           "\"actor\":\"alice\",\"members\":[\"alice\","
                           "\"bo\\\"b\\\\\"],\"count\":2}");
  assert_int_equal(len, strlen(buf));
  const char *b[] = {"bob"};
  assert_int_equal(mim_group_notice_format(buf, sizeof buf, &len,
                                           MIM_OP_GROUP_REMOVE, "g1", "bob",
                                           b, 1),
                   0);
  assert_non_null(strstr(buf, "\"action\":\"leave\""));
  assert_int_equal(mim_group_notice_format(buf, sizeof buf, &len,
                                           MIM_OP_GROUP_REMOVE, "g1", NULL,
                                           b, 1),
                   0);
  assert_non_null(strstr(buf, "\"action\":\"remove\",\"actor\":\"\""));
  /* bounded: 1,000 names of 128 bytes make a notice of 16 names */
  static char names[1000][MIM_ID_MAX + 1];
  static const char *many[1000];
  for (int i = 0; i < 1000; i++) {
    memset(names[i], '\\', MIM_ID_MAX); /* escaping doubles each byte */
    snprintf(names[i] + MIM_ID_MAX - 4, 5, "%04d", i);
    many[i] = names[i];
  }
  char gid[MIM_ID_MAX + 1];
  memset(gid, '"', MIM_ID_MAX);
  gid[MIM_ID_MAX] = '\0';
  assert_int_equal(mim_group_notice_format(buf, sizeof buf, &len,
                                           MIM_OP_GROUP_ADD, gid, names[0],
                                           many, 1000),
                   0);
  assert_true(len < MIM_GROUP_NOTICE_MAX);
  assert_non_null(strstr(buf, "0015\""));
  assert_null(strstr(buf, "0016\""));
  assert_non_null(strstr(buf, "\"count\":1000}"));
  assert_int_equal(mim_group_notice_format(buf, 20, &len, MIM_OP_GROUP_ADD,
                                           "g", "a", ab, 2),
                   -ENOBUFS);
  assert_int_equal(mim_group_notice_format(buf, sizeof buf, &len,
                                           MIM_OP_MESSAGE, "g", "a", ab, 2),
                   -EINVAL);
}

/* group_op with the notice asked for; returns the status, the outcome's
 * notice msg_id and recipients in `rcpt` ("uid:seq,..."). */
static int group_op_notice(struct fx *f, enum mim_write_op_kind kind,
                           const char *group, const char *const *members,
                           size_t n, const char *actor, uint64_t *msg_id,
                           char *rcpt, size_t cap) {
  struct mim_write_batch *b;
  size_t idx;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(
      mim_write_batch_add_group(b, kind, group, members, n, 1000, &idx), 0);
  assert_int_equal(mim_write_batch_set_notice(b, idx, actor), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, idx, &o), 0);
  *msg_id = o->msg_id;
  rcpt[0] = '\0';
  for (size_t i = 0; i < o->n_recipients; i++) {
    char one[160];
    snprintf(one, sizeof one, "%s%s:%llu", i > 0 ? "," : "",
             o->recipients[i].uid,
             (unsigned long long)o->recipients[i].inbox_seq);
    strncat(rcpt, one, cap - strlen(rcpt) - 1);
  }
  int status = o->status;
  mim_write_batch_destroy(b);
  return status;
}

static void group_changes_store_their_notice(void **state) {
  struct fx *f = *state;
  char r[512];
  uint64_t id = 0;
  const char *ab[] = {"alice", "bob"};
  assert_int_equal(group_op_notice(f, MIM_OP_GROUP_CREATE, "g", ab, 2,
                                   "alice", &id, r, sizeof r),
                   0);
  assert_true(id > 0);
  assert_string_equal(r, "alice:1,bob:1");
  /* the notice is a SYSTEM message of the group, from the server */
  struct mim_message_list ml;
  mim_message_list_init(&ml);
  assert_int_equal(f->be->ops->read_inbox(f->be->impl, "bob", 0, 10, &ml), 0);
  assert_int_equal(ml.count, 1);
  assert_int_equal(ml.items[0].msg_id, id);
  assert_int_equal(ml.items[0].type, MIM_MSG_SYSTEM);
  assert_string_equal(ml.items[0].group, "g");
  assert_string_equal(ml.items[0].sender, "");
  assert_int_equal(ml.items[0].conv_seq, 1);
  assert_non_null(strstr((const char *)ml.items[0].content,
                         "\"action\":\"create\",\"actor\":\"alice\""));
  mim_message_list_finish(&ml);
  /* an add reaches the members after it, the new one included */
  const char *c[] = {"carol", "bob"};
  /* (by the owner: since group roles, plain members do not add) */
  assert_int_equal(group_op_notice(f, MIM_OP_GROUP_ADD, "g", c, 2, "alice", &id,
                                   r, sizeof r),
                   0);
  assert_string_equal(r, "alice:2,bob:2,carol:1");
  /* carol sees from the notice of her joining on */
  mim_message_list_init(&ml);
  assert_int_equal(f->be->ops->read_conversation(f->be->impl, NULL, NULL, "g",
                                                 0, 0, 10, &ml),
                   0);
  assert_int_equal(ml.count, 2);
  mim_message_list_finish(&ml);
  uint64_t joined = 0;
  assert_int_equal(f->be->ops->member_get(f->be->impl, "g", "carol", &joined),
                   0);
  assert_int_equal(joined, 1); /* the add's notice is conv_seq 2 */
  /* a removal reaches those who stay and those removed */
  const char *ba[] = {"bob", "alice"};
  assert_int_equal(group_op_notice(f, MIM_OP_GROUP_REMOVE, "g", ba, 2, NULL,
                                   &id, r, sizeof r),
                   0);
  assert_string_equal(r, "carol:2,bob:3,alice:3");
  /* nothing changed: no notice */
  assert_int_equal(group_op_notice(f, MIM_OP_GROUP_REMOVE, "g", ba, 2, NULL,
                                   &id, r, sizeof r),
                   0);
  assert_int_equal(id, 0);
  assert_string_equal(r, "");
  assert_int_equal(last_seq(f, "alice"), 3);
  /* without set_notice (store-level callers): no notice */
  char list[64];
  const char *d[] = {"dave"};
  assert_int_equal(group_op(f, MIM_OP_GROUP_ADD, "g", d, 1, list, sizeof list),
                   0);
  assert_int_equal(last_seq(f, "carol"), 2);
  assert_int_equal(last_seq(f, "dave"), 0);
}

struct names {
  char v[16][MIM_ID_MAX + 1];
  size_t n;
};

static void name_add(void *user, const char *group) {
  struct names *ns = user;
  assert_true(ns->n < 16);
  snprintf(ns->v[ns->n++], sizeof ns->v[0], "%s", group);
}

static void groups_of_pages_through_the_index(void **state) {
  struct fx *f = *state;
  const char *a[] = {"alice"};
  const char *b[] = {"bob"};
  const char *ab[] = {"alice", "bob"};
  group_op(f, MIM_OP_GROUP_CREATE, "g3", a, 1, NULL, 0);
  group_op(f, MIM_OP_GROUP_CREATE, "g1", ab, 2, NULL, 0);
  group_op(f, MIM_OP_GROUP_CREATE, "g2", b, 1, NULL, 0);
  group_op(f, MIM_OP_GROUP_CREATE, "g4", a, 1, NULL, 0);
  struct names ns = {0};
  bool more = true;
  assert_int_equal(
      mim_backend_groups_of(f->be, "alice", NULL, 2, name_add, &ns, &more), 0);
  assert_int_equal(ns.n, 2);
  assert_true(more);
  /* in creation order (the group's id), paged after the last */
  assert_string_equal(ns.v[0], "g3");
  assert_string_equal(ns.v[1], "g1");
  assert_int_equal(mim_backend_groups_of(f->be, "alice", ns.v[1], 2, name_add,
                                         &ns, &more),
                   0);
  assert_int_equal(ns.n, 3);
  assert_false(more);
  assert_string_equal(ns.v[2], "g4");
  /* a removal leaves the index */
  group_op(f, MIM_OP_GROUP_REMOVE, "g1", a, 1, NULL, 0);
  ns.n = 0;
  assert_int_equal(
      mim_backend_groups_of(f->be, "alice", "", 10, name_add, &ns, &more), 0);
  assert_int_equal(ns.n, 2);
  assert_string_equal(ns.v[0], "g3");
  assert_string_equal(ns.v[1], "g4");
  /* unknown users and groups give nothing */
  ns.n = 0;
  assert_int_equal(
      mim_backend_groups_of(f->be, "nobody", "", 10, name_add, &ns, &more), 0);
  assert_int_equal(mim_backend_groups_of(f->be, "alice", "nosuch", 10,
                                         name_add, &ns, &more),
                   0);
  assert_int_equal(ns.n, 0);
  assert_false(more);
  assert_int_equal(
      mim_backend_groups_of(f->be, "alice", "", 10, NULL, &ns, &more), -EINVAL);

  /* White-box (LMDB): a store made before the index gets it at open */
  mim_backend_destroy(f->be);
  f->be = NULL;
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  assert_int_equal(mdb_env_create(&env), 0);
  assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
  assert_int_equal(mdb_env_open(env, f->dir, 0, 0600), 0);
  assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
  assert_int_equal(mdb_dbi_open(txn, "ugroups", 0, &dbi), 0);
  assert_int_equal(mdb_drop(txn, dbi, 1), 0);
  assert_int_equal(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
  assert_int_equal(make_backend(f), 0);
  ns.n = 0;
  assert_int_equal(
      mim_backend_groups_of(f->be, "bob", "", 10, name_add, &ns, &more), 0);
  assert_int_equal(ns.n, 2);
  assert_string_equal(ns.v[0], "g1");
  assert_string_equal(ns.v[1], "g2");
}

/* ---- conversations and read positions (docs/architecture.md §6.1) ---- */

/* Commits a mark-read; the op's outcome in *o_read / *o_unread. */
static int mark_read(struct fx *f, const char *uid, const char *peer,
                     const char *group, uint64_t seq, uint64_t *o_read,
                     uint64_t *o_unread, bool *moved) {
  struct mim_write_batch *b;
  size_t idx;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_read(b, uid, peer, group, seq, &idx), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, idx, &o), 0);
  int st = o->status;
  if (o_read != NULL)
    *o_read = o->read_seq;
  if (o_unread != NULL)
    *o_unread = o->unread;
  if (moved != NULL)
    *moved = o->read_moved;
  mim_write_batch_destroy(b);
  return st;
}

static void conv_list_orders_and_counts_unread(void **state) {
  struct fx *f = *state;
  const char *ab[] = {"alice", "bob"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", ab, 2, NULL, 0); /* no notice */
  send1(f, c2c("bob", "alice", "hi alice", NULL, 10));
  send1(f, c2c("bob", "alice", "again", NULL, 11));
  send1(f, c2c("carol", "alice", "from carol", NULL, 12));
  send1(f, grp("bob", "g", "in the group", NULL, 13));
  struct mim_conv_list l;
  mim_conv_list_init(&l);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &l), 0);
  assert_int_equal(l.count, 3);
  assert_false(l.has_more);
  /* newest first: the group, carol, bob */
  assert_string_equal(l.items[0].group, "g");
  assert_string_equal(l.items[0].peer, "");
  assert_int_equal(l.items[0].unread, 1);
  assert_string_equal(l.items[0].last_sender, "bob");
  assert_string_equal((const char *)l.items[0].preview, "in the group");
  assert_string_equal(l.items[1].peer, "carol");
  assert_int_equal(l.items[1].unread, 1);
  assert_string_equal(l.items[2].peer, "bob");
  assert_int_equal(l.items[2].unread, 2);
  assert_int_equal(l.items[2].last_conv_seq, 2);
  assert_int_equal(l.items[2].last_time, 11);
  /* paged: after the first, the rest */
  uint64_t cut = l.items[0].last_msg_id;
  mim_conv_list_finish(&l);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", cut, 1, 64, &l), 0);
  assert_int_equal(l.count, 1);
  assert_true(l.has_more);
  assert_string_equal(l.items[0].peer, "carol");
  mim_conv_list_finish(&l);
  /* the sender's own messages are never unread */
  assert_int_equal(mim_backend_conv_list(f->be, "bob", 0, 10, 64, &l), 0);
  assert_int_equal(l.count, 2);
  assert_int_equal(l.items[0].unread, 0);
  assert_int_equal(l.items[1].unread, 0);
  mim_conv_list_finish(&l);
  /* an answer moves the conversation to the top and reads it */
  send1(f, c2c("alice", "bob", "hello bob", NULL, 14));
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &l), 0);
  assert_string_equal(l.items[0].peer, "bob");
  assert_int_equal(l.items[0].unread, 0);
  assert_int_equal(l.items[0].read_seq, 3);
  mim_conv_list_finish(&l);
  /* bob sees that alice read up to her own message (receipt) */
  assert_int_equal(mim_backend_conv_list(f->be, "bob", 0, 10, 64, &l), 0);
  assert_string_equal(l.items[0].peer, "alice");
  assert_int_equal(l.items[0].unread, 1);
  assert_int_equal(l.items[0].peer_read_seq, 3);
  mim_conv_list_finish(&l);
  /* unknown users have no conversations */
  assert_int_equal(mim_backend_conv_list(f->be, "nobody", 0, 10, 64, &l), 0);
  assert_int_equal(l.count, 0);
  mim_conv_list_finish(&l);
  assert_int_equal(mim_backend_conv_list(f->be, NULL, 0, 10, 64, &l), -EINVAL);
}

static void conv_preview_is_cut_at_a_character(void **state) {
  struct fx *f = *state;
  send1(f, c2c("bob", "alice", "h\xc3\xa9llo", NULL, 10)); /* é: 2 bytes */
  struct mim_conv_list l;
  mim_conv_list_init(&l);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 2, &l), 0);
  assert_int_equal(l.count, 1);
  assert_int_equal(l.items[0].preview_len, 1);
  assert_true(l.items[0].preview_cut);
  assert_string_equal((const char *)l.items[0].preview, "h");
  mim_conv_list_finish(&l);
}

static void mark_read_never_moves_backwards(void **state) {
  struct fx *f = *state;
  for (int i = 0; i < 5; i++)
    send1(f, c2c("bob", "alice", "m", NULL, 10 + i));
  uint64_t r, u;
  bool moved;
  assert_int_equal(mark_read(f, "alice", "bob", NULL, 3, &r, &u, &moved), 0);
  assert_int_equal(r, 3);
  assert_int_equal(u, 2);
  assert_true(moved);
  assert_int_equal(mark_read(f, "alice", "bob", NULL, 2, &r, &u, &moved), 0);
  assert_int_equal(r, 3);
  assert_false(moved);
  /* clamped to the newest message: a read ahead does not hide later ones */
  assert_int_equal(mark_read(f, "alice", "bob", NULL, 99, &r, &u, &moved), 0);
  assert_int_equal(r, 5);
  assert_int_equal(u, 0);
  send1(f, c2c("bob", "alice", "later", NULL, 20));
  struct mim_conv_list l;
  mim_conv_list_init(&l);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &l), 0);
  assert_int_equal(l.items[0].unread, 1);
  mim_conv_list_finish(&l);
  /* survives a reopen */
  reopen(f);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &l), 0);
  assert_int_equal(l.count, 1);
  assert_int_equal(l.items[0].read_seq, 5);
  assert_int_equal(l.items[0].unread, 1);
  mim_conv_list_finish(&l);
  /* no conversation yet: nothing to read, not an error */
  assert_int_equal(mark_read(f, "alice", "nobody", NULL, 3, &r, &u, NULL), 0);
  assert_int_equal(r, 0);
  /* groups: members only */
  const char *a[] = {"alice"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", a, 1, NULL, 0);
  assert_int_equal(mark_read(f, "bob", NULL, "g", 1, NULL, NULL, NULL),
                   -MIM_ERR_NOT_MEMBER);
  assert_int_equal(mark_read(f, "bob", NULL, "nosuch", 1, NULL, NULL, NULL),
                   -MIM_ERR_NO_SUCH_GROUP);
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_read(b, "alice", "bob", "g", 1, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_read(b, "alice", NULL, NULL, 1, NULL),
                   -EINVAL);
  mim_write_batch_destroy(b);
}

static void read_by_counts_positions(void **state) {
  struct fx *f = *state;
  const char *abc[] = {"alice", "bob", "carol"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", abc, 3, NULL, 0); /* no notice */
  send1(f, grp("alice", "g", "one", NULL, 10));           /* seq 1 */
  send1(f, grp("alice", "g", "two", NULL, 11));           /* seq 2 */
  const char *d[] = {"dave"};
  group_op(f, MIM_OP_GROUP_ADD, "g", d, 1, NULL, 0);      /* joined at 2 */
  assert_int_equal(mark_read(f, "bob", NULL, "g", 1, NULL, NULL, NULL), 0);
  assert_int_equal(mark_read(f, "dave", NULL, "g", 2, NULL, NULL, NULL), 0);
  uint64_t n, m;
  bool more;
  struct names ns = {0};
  /* message 1: alice (sent it) and bob; dave joined after it */
  assert_int_equal(mim_backend_read_by(f->be, "g", 1, NULL, 10, &n, &m,
                                       name_add, &ns, &more), 0);
  assert_int_equal(n, 2);
  assert_int_equal(m, 4);
  assert_int_equal(ns.n, 2);
  assert_string_equal(ns.v[0], "alice");
  assert_string_equal(ns.v[1], "bob");
  assert_false(more);
  /* message 2: alice only (dave joined at it); paged */
  ns.n = 0;
  assert_int_equal(mim_backend_read_by(f->be, "g", 2, NULL, 10, &n, &m,
                                       name_add, &ns, &more), 0);
  assert_int_equal(n, 1);
  ns.n = 0;
  assert_int_equal(mim_backend_read_by(f->be, "g", 1, NULL, 1, &n, &m,
                                       name_add, &ns, &more), 0);
  assert_int_equal(ns.n, 1);
  assert_true(more);
  assert_int_equal(mim_backend_read_by(f->be, "g", 1, ns.v[0], 1, &n, &m,
                                       name_add, &ns, &more), 0);
  assert_int_equal(ns.n, 2);
  assert_string_equal(ns.v[1], "bob");
  assert_false(more);
  assert_int_equal(mim_backend_read_by(f->be, "nosuch", 2, NULL, 1, &n, &m,
                                       NULL, NULL, &more),
                   -MIM_ERR_NO_SUCH_GROUP);
}

/* mim_backend_members_page: a cursor over one group's members, in the
 * order the store first saw each uid, paged after a uid. */
static void members_page_pages_one_group(void **state) {
  struct fx *f = *state;
  const char *first[] = {"zed", "amy"};
  const char *more_m[] = {"kim", "bob"};
  const char *other[] = {"amy", "xyz"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", first, 2, NULL, 0);
  group_op(f, MIM_OP_GROUP_CREATE, "h", other, 2, NULL, 0);
  group_op(f, MIM_OP_GROUP_ADD, "g", more_m, 2, NULL, 0);
  struct names ns = {0};
  bool more = false;
  assert_int_equal(
      mim_backend_members_page(f->be, "g", NULL, 3, name_add, &ns, &more), 0);
  assert_int_equal(ns.n, 3);
  assert_true(more);
  assert_string_equal(ns.v[0], "zed");
  assert_string_equal(ns.v[1], "amy");
  assert_string_equal(ns.v[2], "kim");
  assert_int_equal(mim_backend_members_page(f->be, "g", ns.v[2], 3, name_add,
                                            &ns, &more),
                   0);
  assert_int_equal(ns.n, 4);
  assert_false(more);
  assert_string_equal(ns.v[3], "bob"); /* not "xyz" of the other group */
  /* a member who left still works as a cursor */
  const char *k[] = {"kim"};
  group_op(f, MIM_OP_GROUP_REMOVE, "g", k, 1, NULL, 0);
  ns.n = 0;
  assert_int_equal(
      mim_backend_members_page(f->be, "g", "kim", 10, name_add, &ns, &more), 0);
  assert_int_equal(ns.n, 1);
  assert_string_equal(ns.v[0], "bob");
  /* an unknown cursor: nothing; an unknown group: NO_SUCH_GROUP */
  ns.n = 0;
  assert_int_equal(mim_backend_members_page(f->be, "g", "nobody", 10,
                                            name_add, &ns, &more),
                   0);
  assert_int_equal(ns.n, 0);
  assert_false(more);
  assert_int_equal(
      mim_backend_members_page(f->be, "nosuch", "", 10, name_add, &ns, &more),
      -MIM_ERR_NO_SUCH_GROUP);
  assert_int_equal(
      mim_backend_members_page(f->be, "g", "", 10, NULL, &ns, &more), -EINVAL);
}

/* ---- review: conversations against corrupt records and left groups ---- */

static void conv_key(uint8_t k[17], uint64_t a, uint64_t b) {
  k[0] = 'c';
  be64(k + 1, a < b ? a : b);
  be64(k + 9, a < b ? b : a);
}

/* Damaged read positions and list entries are skipped (counted), never
 * fail the list or the next message, and never show a conversation twice. */
static void conv_corrupt_records_are_skipped(void **state) {
  struct fx *f = *state;
  /* ids in order of first use: bob 1, alice 2, carol 3, dave 4 */
  send1(f, c2c("bob", "alice", "from bob", NULL, 10));
  send1(f, c2c("carol", "alice", "from carol", NULL, 11));
  send1(f, c2c("dave", "alice", "from dave", NULL, 12));
  mim_backend_destroy(f->be);
  f->be = NULL;
  uint8_t k[8 + 17], c[17];
  /* alice's read position with carol: 3 bytes */
  be64(k, 2);
  conv_key(k + 8, 2, 3);
  raw_put(f->dir, "uconv", k, sizeof k, "bad", 3);
  /* list entries (the newest keys): a short one, an unknown kind, one
   * whose message does not exist, one whose peer id names nobody */
  uint8_t lk[16];
  be64(lk, 2);
  be64(lk + 8, 999990);
  raw_put(f->dir, "uclist", lk, sizeof lk, "x", 1);
  memset(c, 0, sizeof c);
  c[0] = 'x';
  be64(lk + 8, 999991);
  raw_put(f->dir, "uclist", lk, sizeof lk, c, sizeof c);
  conv_key(c, 2, 1);
  be64(lk + 8, 999992);
  raw_put(f->dir, "uclist", lk, sizeof lk, c, sizeof c);
  conv_key(c, 2, 77);
  be64(lk + 8, 999993);
  raw_put(f->dir, "uclist", lk, sizeof lk, c, sizeof c);
  assert_int_equal(make_backend(f), 0);
  struct mim_conv_list l;
  mim_conv_list_init(&l);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &l), 0);
  assert_int_equal(l.count, 3);
  assert_string_equal(l.items[0].peer, "dave");
  assert_string_equal(l.items[1].peer, "carol");
  assert_int_equal(l.items[1].read_seq, 0); /* the bad position: none */
  assert_string_equal(l.items[2].peer, "bob");
  mim_conv_list_finish(&l);
  assert_true(mim_lmdb_corrupt_skipped(f->be) >= 4);
  /* the next message rewrites the position; carol is listed once */
  send1(f, c2c("carol", "alice", "again", NULL, 13));
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &l), 0);
  size_t carol = 0;
  for (size_t i = 0; i < l.count; i++)
    carol += strcmp(l.items[i].peer, "carol") == 0;
  assert_int_equal(carol, 1);
  assert_string_equal(l.items[0].peer, "carol");
  assert_int_equal(l.items[0].unread, 2);
  assert_int_equal(l.count, 3);
  mim_conv_list_finish(&l);
}

/* A member who left (or was removed) keeps the group in their list as
 * they last saw it: the list does not tell them how many messages were
 * sent since, nor anything newer. */
static void conv_list_hides_a_left_groups_later_activity(void **state) {
  struct fx *f = *state;
  const char *abc[] = {"alice", "bob", "carol"};
  const char *c[] = {"carol"};
  group_op(f, MIM_OP_GROUP_CREATE, "g", abc, 3, NULL, 0);
  send1(f, grp("bob", "g", "before", NULL, 10));
  assert_int_equal(group_op(f, MIM_OP_GROUP_REMOVE, "g", c, 1, NULL, 0), 0);
  send1(f, grp("bob", "g", "after 1", NULL, 11));
  send1(f, grp("bob", "g", "after 2", NULL, 12));
  send1(f, grp("bob", "g", "after 3", NULL, 13));
  struct mim_conv_list l;
  mim_conv_list_init(&l);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &l), 0);
  assert_int_equal(l.count, 1);
  uint64_t tail = l.items[0].last_conv_seq;
  mim_conv_list_finish(&l);
  assert_int_equal(mim_backend_conv_list(f->be, "carol", 0, 10, 64, &l), 0);
  assert_int_equal(l.count, 1);
  assert_string_equal(l.items[0].group, "g");
  assert_string_equal((const char *)l.items[0].preview, "before");
  assert_int_equal(l.items[0].unread, 0);
  assert_true(l.items[0].last_conv_seq < tail);
  assert_int_equal(l.items[0].last_conv_seq, tail - 3);
  mim_conv_list_finish(&l);
}

/* A list entry whose message record holds text that is not UTF-8 (stored
 * before the library checked, or damaged) is listed without its text: the
 * preview and sender go out in protobuf `string` fields (and JSON), where
 * one bad byte makes a strict parser drop the whole page. */
static void conv_list_text_is_always_utf8(void **state) {
  struct fx *f = *state;
  /* alice 1, bob 2: BAD_UTF8_RECORD is alice's message to bob */
  send1(f, c2c("alice", "bob", "fine", NULL, 10));
  uint64_t id = send1(f, c2c("alice", "bob", "to be damaged", NULL, 11)).msg_id;
  mim_backend_destroy(f->be);
  f->be = NULL;
  raw_record(f, id, BAD_UTF8_RECORD, sizeof BAD_UTF8_RECORD);
  assert_int_equal(make_backend(f), 0);
  struct mim_conv_list l;
  mim_conv_list_init(&l);
  assert_int_equal(mim_backend_conv_list(f->be, "bob", 0, 10, 64, &l), 0);
  assert_int_equal(l.count, 1); /* still listed: positions are intact */
  assert_string_equal(l.items[0].peer, "alice");
  assert_int_equal(l.items[0].unread, 2);
  assert_true(mim_utf8_valid((const char *)l.items[0].preview,
                             l.items[0].preview_len));
  assert_true(mim_utf8_valid(l.items[0].last_sender,
                             strlen(l.items[0].last_sender)));
  mim_conv_list_finish(&l);
  assert_true(mim_lmdb_corrupt_skipped(f->be) >= 1);
}

/* A group notice is not unread for the member whose change it tells of
 * (as a sender's own message); everyone else has it unread. */
static void own_group_change_is_not_unread(void **state) {
  struct fx *f = *state;
  const char *abc[] = {"alice", "bob", "carol"};
  uint64_t id;
  char rcpt[512];
  assert_int_equal(group_op_notice(f, MIM_OP_GROUP_CREATE, "own", abc, 3,
                                   "alice", &id, rcpt, sizeof rcpt),
                   0);
  const char *dave[] = {"dave"};
  assert_int_equal(group_op_notice(f, MIM_OP_GROUP_ADD, "own", dave, 1,
                                   "alice", &id, rcpt, sizeof rcpt),
                   0);
  struct mim_conv_list l;
  const char *who[] = {"alice", "bob", "carol", "dave"};
  const uint64_t want[] = {0, 2, 2, 1};
  for (size_t i = 0; i < 4; i++) {
    mim_conv_list_init(&l);
    assert_int_equal(mim_backend_conv_list(f->be, who[i], 0, 10, 64, &l), 0);
    assert_int_equal(l.count, 1);
    if (l.items[0].unread != want[i])
      fail_msg("%s: %llu unread, want %llu", who[i],
               (unsigned long long)l.items[0].unread,
               (unsigned long long)want[i]);
    mim_conv_list_finish(&l);
  }
}

/* last_seen (docs/protocol.md §21): durable across a reopen, a later time
 * wins whatever the order, per user, bad input refused. */
static void last_seen_set(struct fx *f, const char *uid, int64_t ms) {
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_last_seen(b, uid, ms, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
}

static int64_t last_seen_of(struct fx *f, const char *uid) {
  int64_t ms = 99;
  assert_int_equal(mim_backend_last_seen(f->be, uid, &ms), 0);
  return ms;
}

static void last_seen_is_durable_and_only_moves_forward(void **state) {
  struct fx *f = *state;
  assert_int_equal(last_seen_of(f, "alice"), 0); /* unknown user */
  last_seen_set(f, "alice", 1700000000500);
  assert_int_equal(last_seen_of(f, "alice"), 1700000000500);
  last_seen_set(f, "alice", 1700000000400);
  assert_int_equal(last_seen_of(f, "alice"), 1700000000500);
  last_seen_set(f, "bob", 1700000000100);
  reopen(f);
  assert_int_equal(last_seen_of(f, "alice"), 1700000000500);
  assert_int_equal(last_seen_of(f, "bob"), 1700000000100);
  assert_int_equal(last_seen_of(f, "carol"), 0);
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_last_seen(b, "", 1, NULL), -EINVAL);
  assert_int_equal(mim_write_batch_add_last_seen(b, "bob", 0, NULL), -EINVAL);
  mim_write_batch_destroy(b);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(batch_rejects_invalid_arguments),
      T(batch_owns_copies_and_reset_reuses_it),
      T(message_list_push_copies),
      T(c2c_lands_in_both_inboxes_and_the_conversation),
      T(self_message_has_one_inbox_entry),
      T(inbox_seqs_are_contiguous_per_user),
      T(msg_ids_increase_in_commit_order),
      T(dedup_in_the_same_batch_shares_the_original),
      T(dedup_in_a_later_batch_returns_the_original),
      T(dedup_conflict_on_other_content_or_target),
      T(dedup_is_per_sender_and_needs_a_client_msg_id),
      T(expired_dedup_entry_makes_a_new_message),
      T(expired_dedup_entries_are_pruned),
      T(group_create_add_remove_report_members),
      T(members_list_is_in_uid_order),
      T(group_message_reaches_every_member),
      T(non_member_send_is_refused_and_writes_nothing),
      T(group_send_to_unknown_group),
      T(late_joiner_sees_only_later_messages),
      T(system_message_and_server_push),
      T(cursors_only_rise),
      T(read_inbox_pages_in_order),
      T(read_conversation_pages_newest_first),
      T(data_survives_reopen),
      T(schema_mismatch_is_refused),
      T(map_grows_when_full),
      T(map_growth_stops_at_the_limit),
      T(failed_commit_leaves_nothing),
      T(readers_see_consistent_snapshots),
      T(corrupt_records_are_skipped_by_reads),
      T(corrupt_dedup_record_does_not_fail_batches),
      T(batch_refuses_text_that_is_not_utf8),
      T(reads_stop_at_read_bytes_max),
      T(cursors_per_user_are_bounded),
      T(members_list_of_an_empty_group),
      T(group_size_is_capped),
      T(txn_full_splits_the_batch),
      T(message_to_a_full_size_group_commits),
      T(large_group_stores_a_message_once),
      T(large_groups_of_a_user_are_bounded),
      T(config_size_is_checked),
      T(config_log_is_per_backend),
      T(batch_ids_follow_mim_id_valid),
      T(group_notice_format_is_stable),
      T(group_changes_store_their_notice),
      T(groups_of_pages_through_the_index),
      T(conv_list_orders_and_counts_unread),
      T(own_group_change_is_not_unread),
      T(conv_preview_is_cut_at_a_character),
      T(mark_read_never_moves_backwards),
      T(read_by_counts_positions),
      T(conv_corrupt_records_are_skipped),
      T(conv_list_hides_a_left_groups_later_activity),
      T(conv_list_text_is_always_utf8),
      T(members_page_pages_one_group),
      T(last_seen_is_durable_and_only_moves_forward),
  };
#undef T
  return cmocka_run_group_tests_name("store", tests, group_setup,
                                     group_teardown);
}
