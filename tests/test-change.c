/* Recall, edit and delete-for-me in the store (MIM_OP_CHANGE,
 * docs/protocol.md §19) on real LMDB files: the tombstone keeps the
 * record but not its content, windows, the roles rule, delete-for-me per
 * user, the change entries offline devices pull, and the checks made
 * inside the write transaction (a recall in the batch that removes the
 * member, a recall in the batch of later deliveries). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mim/backend.h>
#include <mim/lmdb.h>
#include <mim/store.h>

struct fx {
  char *dir;
  struct mim_lmdb_config cfg;
  struct mim_backend *be;
};

enum { MIN = 60 * 1000, RECALL_W = 5 * MIN, EDIT_W = 60 * MIN };

static int setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->dir = tu_mkdtemp();
  mim_lmdb_config_init(&f->cfg);
  f->cfg.path = f->dir;
  f->cfg.no_sync = true;
  assert_int_equal(mim_lmdb_open(&f->be, &f->cfg), 0);
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

static void reopen(struct fx *f) {
  mim_backend_destroy(f->be);
  assert_int_equal(mim_lmdb_open(&f->be, &f->cfg), 0);
}

static uint64_t send_msg(struct fx *f, const char *from, const char *peer,
                         const char *group, const char *text, int64_t t) {
  struct mim_message_in m = {0};
  m.type = MIM_MSG_TEXT;
  m.conv_kind = group ? MIM_CONV_GROUP : MIM_CONV_C2C;
  m.sender = from;
  m.sender_device = "phone";
  m.peer = peer;
  m.group = group;
  m.content = (const uint8_t *)text;
  m.content_len = strlen(text);
  m.server_time = t;
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_message(b, &m, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, 0, &o), 0);
  assert_int_equal(o->status, 0);
  uint64_t id = o->msg_id;
  mim_write_batch_destroy(b);
  return id;
}

struct chg {
  int status;
  size_t n;            /* change entries filed */
  uint64_t conv_seq;
};

static struct chg change(struct fx *f, const char *actor, uint64_t id,
                         enum mim_change_action a, const char *peer,
                         const char *group, const char *text, int64_t t) {
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_change(
                       b, actor, id, a, peer, group, (const uint8_t *)text,
                       text ? strlen(text) : 0, t, RECALL_W, EDIT_W, NULL),
                   0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, 0, &o), 0);
  struct chg c = {o->status, o->n_recipients, o->conv_seq};
  mim_write_batch_destroy(b);
  return c;
}

static void group_create(struct fx *f, const char *g,
                         const char *const *members, size_t n) {
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_CREATE, g,
                                             members, n, 1000, NULL),
                   0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  mim_write_batch_destroy(b);
}

static void promote(struct fx *f, const char *g, const char *who) {
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_group_manage(b, g, "", MIM_GA_PROMOTE,
                                                    who, 0, NULL, NULL, 1000,
                                                    NULL),
                   0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, 0, &o), 0);
  assert_int_equal(o->status, 0);
  mim_write_batch_destroy(b);
}

/* The message `id` as `viewer` reads it in its conversation (NULL: not
 * there). */
static const struct mim_message *in_history(struct mim_message_list *l,
                                            struct fx *f, const char *viewer,
                                            const char *peer,
                                            const char *group, uint64_t id) {
  mim_message_list_init(l);
  assert_int_equal(f->be->ops->read_conversation(f->be->impl, viewer, peer,
                                                 group, 0, 0, 100, l),
                   0);
  for (size_t i = 0; i < l->count; i++)
    if (l->items[i].msg_id == id)
      return &l->items[i];
  return NULL;
}

/* Whether the bytes of `needle` occur anywhere in the data file. */
static bool file_holds(const char *dir, const char *needle) {
  char path[600];
  snprintf(path, sizeof path, "%s/data.mdb", dir);
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
  fclose(fp);
  size_t k = strlen(needle);
  bool found = false;
  for (long i = 0; !found && i + (long)k <= n; i++)
    found = memcmp(buf + i, needle, k) == 0;
  free(buf);
  return found;
}

static void recall_leaves_a_tombstone_without_content(void **state) {
  struct fx *f = *state;
  uint64_t id = send_msg(f, "alice", "bob", NULL, "secret-xyzzy-42", 1000);
  uint64_t later = send_msg(f, "bob", "alice", NULL, "reply", 2000);
  struct chg c = change(f, "alice", id, MIM_CHANGE_RECALL, "bob", NULL, NULL,
                        1000 + MIN);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.n, 2); /* one change entry each */
  assert_int_equal(c.conv_seq, 1);
  struct mim_message_list l;
  const struct mim_message *m = in_history(&l, f, "bob", "alice", NULL, id);
  assert_non_null(m);
  assert_int_equal(m->state, MIM_MSG_STATE_RECALLED);
  assert_int_equal(m->change_time, 1000 + MIN);
  assert_int_equal(m->content_len, 0);
  assert_string_equal(m->sender, "alice");
  assert_int_equal(m->conv_seq, 1);
  assert_int_equal(m->server_time, 1000);
  mim_message_list_finish(&l);
  /* the other message is untouched */
  m = in_history(&l, f, "bob", "alice", NULL, later);
  assert_int_equal(m->state, 0);
  assert_int_equal(m->content_len, 5);
  mim_message_list_finish(&l);
  /* bob's inbox: the message (a tombstone now), the reply, the change */
  mim_message_list_init(&l);
  assert_int_equal(f->be->ops->read_inbox(f->be->impl, "bob", 0, 10, &l), 0);
  assert_int_equal(l.count, 3);
  assert_false(l.items[0].change_entry);
  assert_int_equal(l.items[0].state, MIM_MSG_STATE_RECALLED);
  assert_true(l.items[2].change_entry);
  assert_int_equal(l.items[2].msg_id, id);
  assert_int_equal(l.items[2].inbox_seq, 3);
  assert_int_equal(l.items[2].state, MIM_MSG_STATE_RECALLED);
  mim_message_list_finish(&l);
  /* the conversation list's preview shows the tombstone (reply is newer:
   * recall the reply too and look again) */
  assert_int_equal(change(f, "bob", later, MIM_CHANGE_RECALL, "alice", NULL,
                          NULL, 2000 + MIN).status, 0);
  struct mim_conv_list cl;
  mim_conv_list_init(&cl);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &cl), 0);
  assert_int_equal(cl.count, 1);
  assert_int_equal(cl.items[0].last_state, MIM_MSG_STATE_RECALLED);
  assert_int_equal(cl.items[0].preview_len, 0);
  mim_conv_list_finish(&cl);
  /* recalling again changes nothing and files nothing */
  c = change(f, "alice", id, MIM_CHANGE_RECALL, "bob", NULL, NULL, 3000);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.n, 0);
  /* an edit of a tombstone is refused */
  c = change(f, "alice", id, MIM_CHANGE_EDIT, "bob", NULL, "x", 3000);
  assert_int_equal(c.status, -MIM_ERR_FORBIDDEN);
  /* gone from the file too once LMDB has reused the freed pages, which a
   * few commits do (docs/security.md) */
  for (int i = 0; i < 4; i++)
    send_msg(f, "carol", "dave", NULL, "filler", 5000 + i);
  reopen(f);
  assert_false(file_holds(f->dir, "secret-xyzzy-42"));
  m = in_history(&l, f, "alice", "bob", NULL, id);
  assert_int_equal(m->state, MIM_MSG_STATE_RECALLED); /* survives reopen */
  mim_message_list_finish(&l);
}

static void windows_and_who_may(void **state) {
  struct fx *f = *state;
  uint64_t id = send_msg(f, "alice", "bob", NULL, "hello", 1000);
  /* not the sender: forbidden, whatever the time */
  assert_int_equal(change(f, "bob", id, MIM_CHANGE_RECALL, "alice", NULL,
                          NULL, 1001).status, -MIM_ERR_FORBIDDEN);
  assert_int_equal(change(f, "bob", id, MIM_CHANGE_EDIT, "alice", NULL, "x",
                          1001).status, -MIM_ERR_FORBIDDEN);
  /* the sender past the recall window, inside the edit window */
  assert_int_equal(change(f, "alice", id, MIM_CHANGE_RECALL, "bob", NULL,
                          NULL, 1000 + RECALL_W + 1).status,
                   -MIM_ERR_WINDOW_PASSED);
  struct chg c = change(f, "alice", id, MIM_CHANGE_EDIT, "bob", NULL,
                        "hello, edited", 1000 + RECALL_W + 1);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.n, 2);
  struct mim_message_list l;
  const struct mim_message *m = in_history(&l, f, "bob", "alice", NULL, id);
  assert_int_equal(m->state, MIM_MSG_STATE_EDITED);
  assert_int_equal(m->change_time, 1000 + RECALL_W + 1);
  assert_int_equal(m->content_len, strlen("hello, edited"));
  assert_memory_equal(m->content, "hello, edited", m->content_len);
  mim_message_list_finish(&l);
  assert_int_equal(change(f, "alice", id, MIM_CHANGE_EDIT, "bob", NULL, "y",
                          1000 + EDIT_W + 1).status,
                   -MIM_ERR_WINDOW_PASSED);
  /* an operator: any time */
  assert_int_equal(change(f, "", id, MIM_CHANGE_RECALL, NULL, NULL, NULL,
                          1000 + EDIT_W * 10).status, 0);
}

static void strangers_learn_nothing(void **state) {
  struct fx *f = *state;
  uint64_t id = send_msg(f, "alice", "bob", NULL, "hello", 1000);
  send_msg(f, "carol", "dave", NULL, "other", 1000);
  /* the same answer for "not yours to see" and "does not exist" */
  assert_int_equal(change(f, "carol", id, MIM_CHANGE_RECALL, "alice", NULL,
                          NULL, 1001).status, -MIM_ERR_NOT_FOUND);
  assert_int_equal(change(f, "carol", id, MIM_CHANGE_DELETE_FOR_ME, "bob",
                          NULL, NULL, 1001).status, -MIM_ERR_NOT_FOUND);
  assert_int_equal(change(f, "alice", 999, MIM_CHANGE_RECALL, "bob", NULL,
                          NULL, 1001).status, -MIM_ERR_NOT_FOUND);
  /* the right message named in the wrong conversation */
  assert_int_equal(change(f, "alice", id, MIM_CHANGE_RECALL, "carol", NULL,
                          NULL, 1001).status, -MIM_ERR_NOT_FOUND);
  assert_int_equal(change(f, "alice", id, MIM_CHANGE_RECALL, NULL, "g", NULL,
                          1001).status, -MIM_ERR_NOT_FOUND);
  assert_int_equal(change(f, "zed", id, MIM_CHANGE_RECALL, "bob", NULL, NULL,
                          1001).status, -MIM_ERR_NOT_FOUND);
}

static void group_admins_recall_at_any_time(void **state) {
  struct fx *f = *state;
  const char *m[] = {"owner", "adm", "mem", "mem2"};
  group_create(f, "g", m, 4); /* an operator's create: owner = first */
  promote(f, "g", "adm");
  uint64_t a = send_msg(f, "mem", NULL, "g", "one", 10000);
  uint64_t b = send_msg(f, "owner", NULL, "g", "two", 10000);
  int64_t late = 10000 + RECALL_W * 100;
  /* a plain member may not recall another's, nor its own past the window */
  assert_int_equal(change(f, "mem2", a, MIM_CHANGE_RECALL, NULL, "g", NULL,
                          10001).status, -MIM_ERR_FORBIDDEN);
  assert_int_equal(change(f, "mem", a, MIM_CHANGE_RECALL, NULL, "g", NULL,
                          late).status, -MIM_ERR_WINDOW_PASSED);
  /* an admin may not recall the owner's */
  assert_int_equal(change(f, "adm", b, MIM_CHANGE_RECALL, NULL, "g", NULL,
                          late).status, -MIM_ERR_FORBIDDEN);
  /* an admin recalls a member's, late: a change entry per member */
  struct chg c = change(f, "adm", a, MIM_CHANGE_RECALL, NULL, "g", NULL, late);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.n, 4);
  /* the owner recalls anyone's */
  assert_int_equal(change(f, "owner", b, MIM_CHANGE_RECALL, NULL, "g", NULL,
                          late).status, 0);
  /* nobody but the sender edits, admins included */
  uint64_t d = send_msg(f, "mem", NULL, "g", "three", late);
  assert_int_equal(change(f, "owner", d, MIM_CHANGE_EDIT, NULL, "g", "x",
                          late).status, -MIM_ERR_FORBIDDEN);
}

static void delete_for_me_hides_for_one_user(void **state) {
  struct fx *f = *state;
  const char *m[] = {"alice", "bob", "carol"};
  group_create(f, "g", m, 3);
  uint64_t id = send_msg(f, "bob", NULL, "g", "hi all", 5000);
  uint64_t last_bob = 0;
  assert_int_equal(f->be->ops->inbox_last_seq(f->be->impl, "bob", &last_bob),
                   0);
  struct chg c = change(f, "alice", id, MIM_CHANGE_DELETE_FOR_ME, NULL, "g",
                        NULL, 5001);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.n, 1); /* alice's own inbox only */
  /* nothing written for the others */
  uint64_t now_bob = 0;
  assert_int_equal(f->be->ops->inbox_last_seq(f->be->impl, "bob", &now_bob), 0);
  assert_int_equal(now_bob, last_bob);
  struct mim_message_list l;
  assert_null(in_history(&l, f, "alice", NULL, "g", id));
  mim_message_list_finish(&l);
  assert_non_null(in_history(&l, f, "carol", NULL, "g", id));
  mim_message_list_finish(&l);
  /* alice's inbox: the message left out, the change entry kept (state
   * DELETED, no content) so her other devices drop it */
  mim_message_list_init(&l);
  assert_int_equal(f->be->ops->read_inbox(f->be->impl, "alice", 0, 10, &l), 0);
  bool saw_entry = false;
  for (size_t i = 0; i < l.count; i++) {
    if (l.items[i].msg_id != id)
      continue;
    assert_true(l.items[i].change_entry);
    assert_int_equal(l.items[i].state, MIM_MSG_STATE_DELETED);
    assert_int_equal(l.items[i].content_len, 0);
    assert_string_equal((const char *)l.items[i].content, "");
    saw_entry = true;
  }
  assert_true(saw_entry);
  mim_message_list_finish(&l);
  /* her list preview no longer shows it; carol's does */
  struct mim_conv_list cl;
  mim_conv_list_init(&cl);
  assert_int_equal(mim_backend_conv_list(f->be, "alice", 0, 10, 64, &cl), 0);
  assert_int_equal(cl.items[0].preview_len, 0);
  assert_int_equal(cl.items[0].last_state, MIM_MSG_STATE_DELETED);
  mim_conv_list_finish(&cl);
  mim_conv_list_init(&cl);
  assert_int_equal(mim_backend_conv_list(f->be, "carol", 0, 10, 64, &cl), 0);
  assert_int_equal(cl.items[0].preview_len, strlen("hi all"));
  mim_conv_list_finish(&cl);
  /* twice: no second entry */
  c = change(f, "alice", id, MIM_CHANGE_DELETE_FOR_ME, NULL, "g", NULL, 5002);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.n, 0);
}

/* The checks run in the transaction, in op order: a recall after the
 * removal of its sender in the same batch is refused; a recall in the
 * batch of later messages reaches the members as they are then. */
static void checks_see_the_batch_before_them(void **state) {
  struct fx *f = *state;
  const char *m[] = {"owner", "mem", "other"};
  group_create(f, "g", m, 3);
  uint64_t id = send_msg(f, "mem", NULL, "g", "mine", 1000);
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  const char *gone[] = {"mem"};
  assert_int_equal(mim_write_batch_add_group(b, MIM_OP_GROUP_REMOVE, "g", gone,
                                             1, 1001, NULL),
                   0);
  size_t idx;
  assert_int_equal(mim_write_batch_add_change(b, "mem", id, MIM_CHANGE_RECALL,
                                              NULL, "g", NULL, 0, 1001,
                                              RECALL_W, EDIT_W, &idx),
                   0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  const struct mim_op_outcome *o;
  assert_int_equal(mim_write_batch_outcome(b, idx, &o), 0);
  assert_int_equal(o->status, -MIM_ERR_NOT_FOUND);
  mim_write_batch_destroy(b);

  /* a send and a recall of an earlier message in one batch */
  uint64_t first = send_msg(f, "owner", NULL, "g", "first", 2000);
  struct mim_message_in msg = {0};
  msg.type = MIM_MSG_TEXT;
  msg.conv_kind = MIM_CONV_GROUP;
  msg.sender = "other";
  msg.sender_device = "d";
  msg.group = "g";
  msg.content = (const uint8_t *)"second";
  msg.content_len = 6;
  msg.server_time = 2001;
  assert_int_equal(mim_write_batch_create(&b), 0);
  assert_int_equal(mim_write_batch_add_message(b, &msg, NULL), 0);
  assert_int_equal(mim_write_batch_add_change(b, "owner", first,
                                              MIM_CHANGE_RECALL, NULL, "g",
                                              NULL, 0, 2002, RECALL_W, EDIT_W,
                                              &idx),
                   0);
  assert_int_equal(mim_write_batch_add_message(b, &msg, NULL), 0);
  assert_int_equal(mim_backend_commit(f->be, b), 0);
  assert_int_equal(mim_write_batch_outcome(b, idx, &o), 0);
  assert_int_equal(o->status, 0);
  assert_int_equal(o->n_recipients, 2); /* owner and other: mem left */
  mim_write_batch_destroy(b);
  struct mim_message_list l;
  const struct mim_message *mm = in_history(&l, f, "other", NULL, "g", first);
  assert_int_equal(mm->state, MIM_MSG_STATE_RECALLED);
  mim_message_list_finish(&l);
  /* other's inbox stays gap-free around the change entry */
  mim_message_list_init(&l);
  assert_int_equal(f->be->ops->read_inbox(f->be->impl, "other", 0, 100, &l), 0);
  for (size_t i = 0; i < l.count; i++)
    assert_int_equal(l.items[i].inbox_seq, i + 1);
  mim_message_list_finish(&l);
}

static void batch_add_change_checks_its_arguments(void **state) {
  (void)state;
  struct mim_write_batch *b;
  assert_int_equal(mim_write_batch_create(&b), 0);
  /* both conversations, neither for a user, no msg_id, bad action */
  assert_int_equal(mim_write_batch_add_change(b, "a", 1, MIM_CHANGE_RECALL,
                                              "b", "g", NULL, 0, 1, 1, 1, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_change(b, "a", 1, MIM_CHANGE_RECALL,
                                              NULL, NULL, NULL, 0, 1, 1, 1,
                                              NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_change(b, "a", 0, MIM_CHANGE_RECALL,
                                              "b", NULL, NULL, 0, 1, 1, 1,
                                              NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_change(b, "a", 1,
                                              (enum mim_change_action)9, "b",
                                              NULL, NULL, 0, 1, 1, 1, NULL),
                   -EINVAL);
  /* an operator has no "me" to delete for */
  assert_int_equal(mim_write_batch_add_change(b, "", 1,
                                              MIM_CHANGE_DELETE_FOR_ME, NULL,
                                              NULL, NULL, 0, 1, 1, 1, NULL),
                   -EINVAL);
  assert_int_equal(mim_write_batch_add_change(b, "a", 1, MIM_CHANGE_EDIT, "b",
                                              NULL, (const uint8_t *)"\xff", 1,
                                              1, 1, 1, NULL),
                   -MIM_ERR_BAD_UTF8);
  assert_int_equal(mim_write_batch_count(b), 0);
  mim_write_batch_destroy(b);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(recall_leaves_a_tombstone_without_content),
      T(windows_and_who_may),
      T(strangers_learn_nothing),
      T(group_admins_recall_at_any_time),
      T(delete_for_me_hides_for_one_user),
      T(checks_see_the_batch_before_them),
      cmocka_unit_test(batch_add_change_checks_its_arguments),
  };
#undef T
  return cmocka_run_group_tests_name("change", tests, NULL, NULL);
}
