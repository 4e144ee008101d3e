/* libmim — the storage backend interface, for implementors.
 *
 * A backend stores what write batches ask and answers the reads the logic
 * makes; <mim/store.h> is what its users call, this header is what an
 * implementation provides (struct mim_backend_ops) and the calls only an
 * implementation makes on batches and message lists. The LMDB backend
 * (lib/store/lmdb/, <mim/lmdb.h>) is one implementation; another engine
 * sits beside it as lib/store/<engine>/ with its own constructor header.
 *
 * What every implementation must guarantee:
 *  - commit() applies all the ops of a batch in one durable transaction:
 *    after it returns 0 they survive a crash; when it fails nothing of the
 *    batch is visible, and every op reports the error.
 *  - An op that fails alone (not a member, no such group, a dedup conflict,
 *    a full group) fails before it changes anything, and the other ops of
 *    the batch still apply.
 *  - Ops apply in the order added; a later op sees the earlier ones.
 *  - A timeline's new entry gets the seq after its newest one (inbox,
 *    conversation), msg_ids only increase, and neither is ever reused,
 *    across restarts too.
 *  - A retried message (same sender and client_msg_id within the dedup
 *    window) is reported as a duplicate with the original's outcome.
 *  - commit() is called by one thread at a time; the reads may run from
 *    any number of threads concurrently and never wait for a commit.
 *  - Every string the backend returns is valid UTF-8.
 * tests/test-store.c checks these against any backend.
 */
#ifndef MIM_BACKEND_H
#define MIM_BACKEND_H

#include <mim/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- message lists ---- */

/* For backend implementors: appends a deep copy of `m` (borrowed).
 * Errors: -ENOMEM. */
MIM_API int mim_message_list_push(struct mim_message_list *l,
                                  const struct mim_message *m);

/* ---- write batches, as a backend sees them ---- */

/* For backend implementors: a read-only view of operation `index`. */
struct mim_write_op {
  enum mim_write_op_kind kind;
  const struct mim_message_in *message; /* MESSAGE */
  const char *uid, *device;             /* CURSOR; READ: uid */
  uint64_t seq;                         /* CURSOR; READ: conv seq */
  const char *group;                    /* GROUP_*; READ: group or "" */
  const char *const *members;           /* GROUP_* */
  size_t n_members;
  int64_t server_time;                  /* GROUP_* */
  const char *actor;                    /* GROUP_*: "" for an operator */
  const char *peer;                     /* READ: one-to-one peer, or "" */
  bool notice;                          /* GROUP_*: store the group notice
                                           (<mim/store.h>) if it changes
                                           anything */
  /* MIM_OP_GROUP_MANAGE (mim_write_batch_add_group_manage) */
  enum mim_group_action action;
  const char *target;                   /* "" when none */
  int64_t until;
  const char *name, *metadata;          /* NULL: leave as is */
  /* MIM_OP_CHANGE (mim_write_batch_add_change): actor is `actor`, the
   * conversation `peer` or `group`, the time `server_time`. */
  uint64_t msg_id;
  enum mim_change_action change;
  const uint8_t *content;               /* EDIT */
  size_t content_len;
  int64_t recall_window_ms, edit_window_ms;
};
MIM_API int mim_write_batch_op(const struct mim_write_batch *b, size_t index,
                               struct mim_write_op *out);

/* For backend implementors: record operation `index`'s outcome. `o` and all
 * it points to are borrowed and copied. Errors: -EINVAL, -ENOMEM. */
MIM_API int mim_write_batch_set_outcome(struct mim_write_batch *b,
                                        size_t index,
                                        const struct mim_op_outcome *o);

/* For backend implementors: mark the batch committed with `status`; a
 * non-zero status also becomes every operation's status. A batch committed
 * with status 0 is closed (adding to it or committing it again: -EINVAL); a
 * failed one may be committed again. */
MIM_API void mim_write_batch_set_status(struct mim_write_batch *b, int status);

/* ---- the operations ---- */

struct mim_group_member {
  const char *uid;
  uint64_t joined_conv_seq; /* the group's conv_seq when they joined: they
                               see messages with a higher conv_seq */
};

/* Operations every backend implements. `impl` is the backend's own state.
 * Lists and outputs are filled by the backend; the caller owns them. */
struct mim_backend_ops {
  /* Applies every op of `b` in one durable transaction, sets each outcome
   * and the batch status. Returns the batch status. */
  int (*commit)(void *impl, struct mim_write_batch *b);
  /* Up to `limit` entries of `uid`'s inbox with inbox_seq > after_seq, in
   * seq order, appended to `out`; out->has_more says whether more follow. */
  int (*read_inbox)(void *impl, const char *uid, uint64_t after_seq,
                    size_t limit, struct mim_message_list *out);
  /* Up to `limit` messages of a conversation with conv_seq < before
   * (0: from the newest) and conv_seq > after, newest first. The c2c
   * conversation of `a` and `b` (any order), or the group `group` when
   * `group` is not NULL. Unknown users or groups give an empty list. The
   * read is for user `a` (in a group read `a` may be NULL: for nobody):
   * messages `a` deleted for themself are left out. */
  int (*read_conversation)(void *impl, const char *a, const char *b,
                           const char *group, uint64_t before, uint64_t after,
                           size_t limit, struct mim_message_list *out);
  /* The newest seq in `uid`'s inbox (0 when empty). */
  int (*inbox_last_seq)(void *impl, const char *uid, uint64_t *seq);
  /* The ack cursor of (`uid`, `device`) (0 when never set). */
  int (*cursor_get)(void *impl, const char *uid, const char *device,
                    uint64_t *seq);
  /* Whether `uid` is a member of `group` and since when.
   * Errors: -MIM_ERR_NO_SUCH_GROUP; -MIM_ERR_NOT_MEMBER. */
  int (*member_get)(void *impl, const char *group, const char *uid,
                    uint64_t *joined_conv_seq);
  /* Every member of `group`, in uid order: calls `fn` once per member
   * (borrowed for the call). Errors: -MIM_ERR_NO_SUCH_GROUP. */
  int (*members_list)(void *impl, const char *group,
                      void (*fn)(void *user, const struct mim_group_member *m),
                      void *user);
  /* Frees `impl`. */
  void (*destroy)(void *impl);
  /* Optional (NULL: always healthy). 0 while the backend can still commit,
   * else the negative error after which it never will again in this
   * process (see mim_backend_health). Any thread. */
  int (*health)(void *impl);
  /* Optional (NULL: mim_backend_groups_of says -ENOTSUP). The groups of
   * `uid` after `after` (""), at most `limit`, in a stable order; `fn`
   * called per group id; *has_more set. From an index, not a scan. */
  int (*groups_of)(void *impl, const char *uid, const char *after,
                   size_t limit, void (*fn)(void *user, const char *group),
                   void *user, bool *has_more);
  /* Optional (NULL: -ENOTSUP). mim_backend_conv_list(), arguments
   * checked. */
  int (*conv_list)(void *impl, const char *uid, uint64_t before_msg_id,
                   size_t limit, size_t preview_max,
                   struct mim_conv_list *out);
  /* Optional (NULL: -ENOTSUP). mim_backend_read_by(), arguments checked
   * (after is "" when none; fn may be NULL). */
  int (*read_by)(void *impl, const char *group, uint64_t conv_seq,
                 const char *after, size_t limit, uint64_t *read_count,
                 uint64_t *member_count,
                 void (*fn)(void *user, const char *uid), void *user,
                 bool *has_more);
  /* Optional (NULL: mim_backend_group_info says -ENOTSUP). The roles and
   * info of `group`, passed to `fn` once. A backend that stores groups
   * also enforces mim_group_rule_check() in commit(). */
  int (*group_info)(void *impl, const char *group,
                    void (*fn)(void *user, const struct mim_group_info *i),
                    void *user);
  /* Optional (NULL: mim_backend_members_page says -ENOTSUP). The members
   * of `group` after member `after` ("" = from the first), at most
   * `limit`, in a stable order (not uid order); `fn` called per uid;
   * *has_more set. A cursor seek in the group's members, not a scan.
   * Errors: -MIM_ERR_NO_SUCH_GROUP. */
  int (*members_page)(void *impl, const char *group, const char *after,
                      size_t limit, void (*fn)(void *user, const char *uid),
                      void *user, bool *has_more);
  /* Optional (NULL: mim_backend_last_seen says -ENOTSUP). The time of the
   * last MIM_OP_LAST_SEEN of `uid` (0 when none). */
  int (*last_seen)(void *impl, const char *uid, int64_t *ms);
  /* Optional (NULL: mim_backend_large_groups_of says -ENOTSUP). The large
   * groups of `uid`, `fn` called per group id. A backend that has it
   * stores large groups' messages once (no inbox entries) and lists them
   * in conv_list by their newest message. */
  int (*large_groups_of)(void *impl, const char *uid,
                         void (*fn)(void *user, const char *group),
                         void *user);
};

/* A backend: ops plus state. */
struct mim_backend {
  const struct mim_backend_ops *ops;
  void *impl;
};

#ifdef __cplusplus
}
#endif

#endif /* MIM_BACKEND_H */
