/* libmim — message store: the backend interface the logic writes and reads
 * through, write batches (group commit), and the LMDB implementation.
 *
 * The interface is shaped around operations (append a message to its
 * conversation and its recipients' inboxes, move a cursor, change a group,
 * read an inbox or a conversation after a position), not around
 * transactions, so that other engines (NATS JetStream, DESIGN.md §7) can
 * implement it. tests/test-store.c runs the same checks against any backend.
 *
 * Threads: a backend's commit() is called from one writer thread at a time;
 * reads may run concurrently from other threads and never wait for commits.
 */
#ifndef MIM_STORE_H
#define MIM_STORE_H

#include <mim/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- messages ---- */

/* A stored message as read back. All pointers are owned by the list (or
 * outcome) it came from. Strings are never NULL ("" when absent); content
 * and payload are followed by a NUL byte that their lengths do not count,
 * so text content can be used as a C string. */
struct mim_message {
  uint64_t msg_id;
  uint64_t inbox_seq;   /* in the reader's inbox; 0 in conversation reads */
  uint64_t conv_seq;    /* in its conversation (0 for MIM_CONV_PUSH) */
  int64_t server_time;  /* ms since the epoch */
  uint32_t type;        /* enum mim_msg_type */
  uint32_t conv_kind;   /* enum mim_conv_kind */
  const char *sender;
  const char *sender_device;
  const char *peer;     /* c2c: the receiver */
  const char *group;    /* group messages */
  const char *client_msg_id;
  const uint8_t *content;
  size_t content_len;
  const uint8_t *payload;
  size_t payload_len;
};

/* A list of messages read from a backend. Caller-allocated: init, pass to a
 * read, use, finish. */
struct mim_message_list {
  struct mim_message *items;
  size_t count;
  bool has_more;        /* more entries follow the last one returned */
  void *priv_;
};

MIM_API void mim_message_list_init(struct mim_message_list *l);

/* Frees everything the list owns and re-initialises it. */
MIM_API void mim_message_list_finish(struct mim_message_list *l);

/* For backend implementors: appends a deep copy of `m` (borrowed).
 * Errors: -ENOMEM. */
MIM_API int mim_message_list_push(struct mim_message_list *l,
                                  const struct mim_message *m);

/* ---- write batches ---- */

/* What a send asks to store. Every pointer is borrowed for the call that
 * takes it (the batch copies). */
struct mim_message_in {
  uint32_t type;          /* enum mim_msg_type */
  uint32_t conv_kind;     /* MIM_CONV_C2C, MIM_CONV_GROUP or MIM_CONV_PUSH */
  const char *sender;     /* authenticated uid, or "" for server pushes */
  const char *sender_device;
  const char *peer;       /* C2C: receiver */
  const char *group;      /* GROUP */
  const char *client_msg_id; /* NULL or "": never deduplicated */
  const uint8_t *content;
  size_t content_len;
  const uint8_t *payload;
  size_t payload_len;
  int64_t server_time;    /* ms; the logic's clock */
  const char *const *recipients; /* PUSH: who gets it in their inbox */
  size_t n_recipients;
};

/* A server push: stored once, one inbox entry per listed recipient, no
 * conversation timeline. */
#define MIM_CONV_PUSH 3

enum mim_write_op_kind {
  MIM_OP_MESSAGE = 1,       /* store a message, fan it out to inboxes */
  MIM_OP_CURSOR = 2,        /* raise a device's ack cursor */
  MIM_OP_GROUP_CREATE = 3,  /* create a group with its first members */
  MIM_OP_GROUP_ADD = 4,     /* add members */
  MIM_OP_GROUP_REMOVE = 5,  /* remove members */
};

/* One delivery a committed message produced. */
struct mim_recipient {
  const char *uid;
  uint64_t inbox_seq;
};

/* The result of one operation, valid until the batch is destroyed. */
struct mim_op_outcome {
  int status;             /* 0, or a negative error for this op alone */
  bool duplicate;         /* MESSAGE: (sender, client_msg_id) seen before;
                             msg_id is the original's, no new entries */
  uint64_t msg_id;        /* MESSAGE */
  int64_t server_time;    /* MESSAGE: the stored time (the original's if dup) */
  uint64_t conv_seq;      /* MESSAGE */
  uint64_t sender_inbox_seq; /* MESSAGE: where it sits in the sender's inbox
                                (0 for server pushes) */
  const struct mim_recipient *recipients; /* MESSAGE: every inbox entry
                                            written, the sender's included */
  size_t n_recipients;
  const char *const *members; /* GROUP_*: the members actually added or
                                 removed (create: all) */
  size_t n_members;
};

/* A set of operations applied in one write transaction with one durable
 * commit. Operations apply in the order added; each may fail alone (for
 * example a group send by a non-member) without affecting the others. */
struct mim_write_batch;

/* Errors: -ENOMEM. */
MIM_API int mim_write_batch_create(struct mim_write_batch **out);

/* NULL is a no-op. */
MIM_API void mim_write_batch_destroy(struct mim_write_batch *b);

/* Removes every operation and outcome; keeps the memory for reuse. */
MIM_API void mim_write_batch_reset(struct mim_write_batch *b);

/* Adds a message (deep-copied from `m`). `*index`, if not NULL, gets the
 * operation's index. Errors: -EINVAL missing sender/peer/group for the kind,
 * msg type or conv kind unknown, an id longer than MIM_ID_MAX or not UTF-8;
 * -MIM_ERR_BAD_UTF8 content or client_msg_id is not valid UTF-8
 * (mim_utf8_valid: the store keeps only what a strict proto3 parser
 * accepts; binary data goes in `payload`); -ENOMEM. */
MIM_API int mim_write_batch_add_message(struct mim_write_batch *b,
                                        const struct mim_message_in *m,
                                        size_t *index);

/* Raises the ack cursor of (`uid`, `device`) to `seq` (never lowers it).
 * Errors: -EINVAL (an id empty, too long or not UTF-8), -ENOMEM. */
MIM_API int mim_write_batch_add_cursor(struct mim_write_batch *b,
                                       const char *uid, const char *device,
                                       uint64_t seq, size_t *index);

/* Group change `kind` (MIM_OP_GROUP_*) of `group` with `members` (borrowed,
 * copied). CREATE fails with -MIM_ERR_GROUP_EXISTS at commit if the group
 * exists; ADD/REMOVE with -MIM_ERR_NO_SUCH_GROUP if it does not. Adding a
 * member twice or removing a non-member is not an error (it is just not
 * reported in the outcome's members). Errors here: -EINVAL (an id empty,
 * too long or not UTF-8), -ENOMEM. */
MIM_API int mim_write_batch_add_group(struct mim_write_batch *b,
                                      enum mim_write_op_kind kind,
                                      const char *group,
                                      const char *const *members,
                                      size_t n_members, int64_t server_time,
                                      size_t *index);

MIM_API size_t mim_write_batch_count(const struct mim_write_batch *b);

/* The outcome of operation `index` after a commit. Errors: -EINVAL index out
 * of range; -EAGAIN the batch has not been committed. */
MIM_API int mim_write_batch_outcome(const struct mim_write_batch *b,
                                    size_t index,
                                    const struct mim_op_outcome **out);

/* The result of the whole commit: 0 when every outcome was decided and made
 * durable, else the error that failed the transaction (then every op's
 * status is that error and nothing was stored). -EAGAIN before commit. */
MIM_API int mim_write_batch_status(const struct mim_write_batch *b);

/* For backend implementors: a read-only view of operation `index`. */
struct mim_write_op {
  enum mim_write_op_kind kind;
  const struct mim_message_in *message; /* MESSAGE */
  const char *uid, *device;             /* CURSOR */
  uint64_t seq;                         /* CURSOR */
  const char *group;                    /* GROUP_* */
  const char *const *members;           /* GROUP_* */
  size_t n_members;
  int64_t server_time;                  /* GROUP_* */
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

/* ---- backend interface ---- */

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
   * `group` is not NULL. Unknown users or groups give an empty list. */
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
};

/* A backend: ops plus state. */
struct mim_backend {
  const struct mim_backend_ops *ops;
  void *impl;
};

/* Thin wrappers over b->ops, for readability at call sites. */
MIM_API int mim_backend_commit(struct mim_backend *be, struct mim_write_batch *b);

/* 0 while `be` (borrowed) can commit; otherwise the negative error after
 * which it cannot any more in this process, e.g. after LMDB's MDB_PANIC (a
 * failed meta-page write) or a failed write or sync of the data file
 * (-EIO): every later commit fails, reads may return stale or no data. A
 * daemon should then stop (so that its supervisor restarts it and the
 * store is opened afresh) rather than go on answering while every write
 * fails. Safe from any thread. Errors: -EINVAL `be` NULL. */
MIM_API int mim_backend_health(const struct mim_backend *be);

/* Closes the backend (ops->destroy) and frees `be`. NULL is a no-op. */
MIM_API void mim_backend_destroy(struct mim_backend *be);

/* ---- the LMDB backend ---- */

struct mim_lmdb_config {
  const char *path;          /* directory; created if missing */
  size_t map_size;           /* initial map size in bytes (default 64 MiB);
                                grows by doubling when full */
  size_t map_size_max;       /* growth limit (default 64 GiB) */
  int64_t dedup_window_ms;   /* how long client_msg_ids are remembered
                                (default 24 h) */
  bool no_sync;              /* tests only: skip fsync (NOT durable) */
  size_t read_bytes_max;     /* an inbox or conversation read stops (with
                                has_more) once the entries it returned hold
                                this many bytes of content, payload and ids;
                                at least one entry always. 0 = no limit
                                (default). Bounds what one read copies. */
  size_t cursors_per_user_max; /* read cursors kept per user, one per
                                device that acknowledged (default 64, 0 = no
                                limit): a new device's cursor beyond it
                                replaces the user's cursors that read least,
                                so a user inventing device names cannot grow
                                the store without bound. */
  /* Most members one group may have (default
   * MIM_GROUP_MEMBERS_MAX_DEFAULT; 0 = no limit). A group op that would
   * take a group past it fails alone with MIM_ERR_GROUP_FULL and changes
   * nothing. Bounds the writes of one group message, which are as many as
   * the group has members. */
  uint32_t group_members_max;
};

/* The default of mim_lmdb_config.group_members_max. */
#define MIM_GROUP_MEMBERS_MAX_DEFAULT 10000

/* Fills `cfg` with the defaults above and path NULL. */
MIM_API void mim_lmdb_config_init(struct mim_lmdb_config *cfg);

/* Opens (creating if needed) the LMDB environment at cfg->path and returns a
 * backend over it in `*out` (free with mim_backend_destroy()). `cfg` is
 * borrowed for the call. Only one backend may write an environment at a
 * time (logicd takes a lock file for it): the writer keeps the newest ids
 * and each timeline's last seq in memory (~2 MiB) between commits. Errors: -EINVAL no path; -MIM_ERR_SCHEMA_MISMATCH the
 * files were written by an incompatible schema version; -ENOMEM; -EIO,
 * -EACCES, -ENOSPC and other errno values from opening the files. */
MIM_API int mim_lmdb_open(struct mim_backend **out,
                          const struct mim_lmdb_config *cfg);

/* How many records reads and commits of the LMDB backend `be` (borrowed)
 * skipped because they could not be parsed (a record or index entry of the
 * wrong size, a record missing or not valid protobuf, a string not valid
 * UTF-8) since it was opened. Each skip is also logged (WARN; the first
 * few, then at every power of two). A corrupt record never fails a page or
 * a batch: a read leaves it out, a commit treats a corrupt dedup entry or
 * cursor as absent and overwrites it. 0 for a NULL or non-LMDB `be`. */
MIM_API uint64_t mim_lmdb_corrupt_skipped(const struct mim_backend *be);

/* The schema version this library writes. */
#define MIM_LMDB_SCHEMA_VERSION 1

#ifdef __cplusplus
}
#endif

#endif /* MIM_STORE_H */
