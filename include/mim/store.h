/* libmim — message store: messages, write batches (group commit) and the
 * calls the logic makes on a storage backend. Implementing a backend:
 * <mim/backend.h>; the LMDB backend: <mim/lmdb.h>.
 *
 * The interface is shaped around operations (append a message to its
 * conversation and its recipients' inboxes, move a cursor, change a group,
 * read an inbox or a conversation after a position), not around
 * transactions, so that other engines (NATS JetStream, docs/architecture.md §7) can
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
  /* Recall and edit (docs/protocol.md §19): MIM_MSG_STATE_*, and the time
   * (ms) of the change (0 when never changed). */
  uint32_t state;
  int64_t change_time;
  /* An inbox read only: this entry is not the message arriving but a
   * change to it (a recall, an edit, or a delete for this reader) filed
   * in the inbox so that offline devices learn of it; `state` says which. */
  bool change_entry;
};

/* What became of a stored message (MessageRecord.state, PullMsg.state). */
enum mim_msg_state {
  MIM_MSG_STATE_NORMAL = 0,
  MIM_MSG_STATE_RECALLED = 1, /* a tombstone: content and payload gone */
  MIM_MSG_STATE_EDITED = 2,   /* content is the edited one */
  MIM_MSG_STATE_DELETED = 3,  /* only on a change entry of the reader's own
                                 inbox: the reader deleted it for themself */
};

/* A message change (MIM_OP_CHANGE); the value is MsgChangeRequest.action. */
enum mim_change_action {
  MIM_CHANGE_RECALL = 1,
  MIM_CHANGE_EDIT = 2,
  MIM_CHANGE_DELETE_FOR_ME = 3,
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

enum mim_write_op_kind {
  MIM_OP_MESSAGE = 1,       /* store a message, fan it out to inboxes */
  MIM_OP_CURSOR = 2,        /* raise a device's ack cursor */
  MIM_OP_GROUP_CREATE = 3,  /* create a group with its first members */
  MIM_OP_GROUP_ADD = 4,     /* add members */
  MIM_OP_GROUP_REMOVE = 5,  /* remove members */
  MIM_OP_GROUP_MANAGE = 6,  /* a role, mute, info or dissolve change
                               (mim_write_batch_add_group_manage) */
  MIM_OP_READ = 7,          /* raise a user's read position in a
                               conversation (docs/architecture.md §6.1) */
  MIM_OP_CHANGE = 8,        /* recall, edit or delete-for-me a stored
                               message (mim_write_batch_add_change) */
  MIM_OP_LAST_SEEN = 9,     /* when a user's last device went away
                               (docs/protocol.md §21) */
};

/* ---- group roles (docs/protocol.md §17) ----
 *
 * Every group created since roles exist has one owner (its creator; for an
 * operator's create, the first member named), any number of admins (at
 * most MIM_GROUP_ADMINS_MAX) and plain members. A group from a store made
 * before roles has no owner until an operator transfers it; in such a
 * group every member may add members (the behaviour it was created with).
 * Who may do what is ONE table, mim_group_rule_check(); the store applies
 * it inside the write transaction of every change, whoever asked. */
enum mim_group_role {
  MIM_ROLE_NONE = 0,     /* not a member (as a target: no target) */
  MIM_ROLE_MEMBER = 1,
  MIM_ROLE_ADMIN = 2,
  MIM_ROLE_OWNER = 3,
  MIM_ROLE_OPERATOR = 4, /* the embedder or an operator (actor ""):
                            never a target */
  MIM_ROLE__COUNT = 5,
};

/* What a group change does; the value is GroupManage.action on the wire
 * for the actions a client names (TRANSFER..DISSOLVE). */
enum mim_group_action {
  MIM_GA_ADD = 1,        /* add a non-member */
  MIM_GA_REMOVE = 2,     /* remove another member */
  MIM_GA_LEAVE = 3,      /* remove oneself */
  MIM_GA_TRANSFER = 4,   /* make a member the owner; the old owner becomes
                            an admin */
  MIM_GA_PROMOTE = 5,    /* member -> admin */
  MIM_GA_DEMOTE = 6,     /* admin -> member */
  MIM_GA_MUTE = 7,       /* mute one member (until a time, or for good) */
  MIM_GA_UNMUTE = 8,
  MIM_GA_MUTE_ALL = 9,   /* only admins and the owner may send */
  MIM_GA_UNMUTE_ALL = 10,
  MIM_GA_SET_INFO = 11,  /* name and metadata */
  MIM_GA_DISSOLVE = 12,  /* every member removed, the group gone */
  MIM_GA_INFO = 13,      /* read the group info (not a change) */
  MIM_GA_SEND = 14,      /* send to the group (mutes apply on top) */
  MIM_GA_RECALL = 15,    /* recall another member's message, no window
                            (target: the sender's role now) */
  MIM_GA__COUNT = 16,
};

#define MIM_GROUP_ADMINS_MAX 64     /* admins of one group */
#define MIM_GROUP_MUTED_MAX 256     /* individually muted members */
/* Large groups of one user that are followed live and listed in its
 * conversation list: the first ones in the backend's order. Others add a
 * user to groups, so without a bound one user's login and list pages
 * would cost as much as others made them; groups past it are read with
 * GROUP_SYNC (docs/protocol.md §22). */
#define MIM_USER_LARGE_GROUPS_MAX 1024
#define MIM_GROUP_NAME_MAX 256      /* bytes of UTF-8 */
#define MIM_GROUP_METADATA_MAX 4096 /* bytes of UTF-8 */

/* The rules table: whether an `actor` of that role may do `action` to a
 * `target` of that role (MIM_ROLE_NONE for actions without a target, and
 * for ADD, whose target is not a member yet; LEAVE's target is the actor
 * itself). Returns 0, -MIM_ERR_NOT_MEMBER (actor not a member), or
 * -MIM_ERR_FORBIDDEN; -EINVAL for values outside the enums. Mutes are not
 * in the table: a SEND that the table allows is refused with
 * -MIM_ERR_MUTED when the sender is muted, or the group is muted and the
 * sender is a plain member. */
MIM_API int mim_group_rule_check(enum mim_group_role actor,
                                 enum mim_group_action action,
                                 enum mim_group_role target);

/* A group's roles and info as read back (all borrowed from the reader). */
struct mim_group_info {
  const char *group;
  const char *owner;              /* "" = none (a group older than roles) */
  const char *name;               /* "" = none */
  const char *metadata;           /* "" = none; UTF-8, NUL-terminated */
  const char *const *admins;
  size_t n_admins;
  const char *const *muted;       /* individually muted members */
  const int64_t *muted_until;     /* per muted member: ms, 0 = for good */
  size_t n_muted;
  bool muted_all;                 /* only admins and the owner may send */
  bool legacy;                    /* a group from a store before roles
                                     that no operator has given an owner
                                     yet: every member may add */
  bool large;                     /* read diffusion: messages stored once
                                     (mim_lmdb_config.group_large_min) */
  uint64_t member_count;          /* members now (0: the backend does not
                                     say) */
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
  /* READ: the user's read position after the op (conv seq; never lower
   * than before), whether the op moved it, and the unread count after it
   * (newest conv seq - max(read, joined)). */
  uint64_t read_seq;
  bool read_moved;
  uint64_t unread;
  /* GROUP_*: when members changed and the op asked for its notice
   * (mim_write_batch_set_notice), the op also stored one SYSTEM message
   * (the group notice, mim_group_notice_format()) in the group's
   * conversation and in the inbox of every member after the change and of
   * every member removed: msg_id, server_time, conv_seq and recipients
   * describe it. msg_id 0 = nothing changed, no notice. */
  /* CHANGE: msg_id and conv_seq are the changed message's, server_time
   * the change time, recipients the change entries filed (one per
   * participant; DELETE_FOR_ME: the actor's only). The message's sender,
   * one-to-one peer (or "") and group (or "") as stored: */
  const char *change_sender, *change_peer, *change_group;
  /* MESSAGE to a group, GROUP_*: the group is large (read diffusion,
   * mim_lmdb_config.group_large_min): a message or notice is in no
   * member's inbox (recipients lists only the inbox entries written: the
   * members a notice names), and online members learn of it by conv seq.
   * became_large: this op switched it. */
  bool large, became_large;
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

/* Records that the last device of `uid` went away at `ms` (ms since the
 * epoch): its presence "last seen" (docs/protocol.md §21). A later time
 * replaces an earlier one, never the reverse. Errors: -EINVAL (uid not a
 * valid id, ms <= 0), -ENOMEM. */
MIM_API int mim_write_batch_add_last_seen(struct mim_write_batch *b,
                                          const char *uid, int64_t ms,
                                          size_t *index);

/* Raises the read position of `uid` in a conversation to `seq` (a conv
 * seq; clamped to the conversation's newest seq, never lowered): the
 * one-to-one conversation with `peer` when `group` is NULL or "", else
 * group `group` (then `uid` must be a member at commit, else the op fails
 * alone with -MIM_ERR_NOT_MEMBER; -MIM_ERR_NO_SUCH_GROUP when it does
 * not exist). A conversation that does not exist yet leaves the position
 * at 0 (status 0). Errors here: -EINVAL (an id empty, too long or not
 * UTF-8, both or neither of peer/group), -ENOMEM. */
MIM_API int mim_write_batch_add_read(struct mim_write_batch *b,
                                     const char *uid, const char *peer,
                                     const char *group, uint64_t seq,
                                     size_t *index);

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

/* A group management change (MIM_OP_GROUP_MANAGE) of `group` by `actor`
 * (NULL or "": an operator): `action` one of MIM_GA_TRANSFER..DISSOLVE;
 * `target` the member it concerns (TRANSFER, PROMOTE, DEMOTE, MUTE,
 * UNMUTE; NULL otherwise); `until` for MUTE (ms since the epoch, 0 = for
 * good); `name` and `metadata` for SET_INFO (NULL: left as is). All
 * borrowed, copied. The store checks mim_group_rule_check() at commit
 * (outcome status -MIM_ERR_FORBIDDEN, -MIM_ERR_NOT_MEMBER,
 * -MIM_ERR_NO_SUCH_GROUP, -MIM_ERR_TOO_LARGE past MIM_GROUP_ADMINS_MAX /
 * MIM_GROUP_MUTED_MAX) and stores the notice like any group change (the
 * outcome's members: the target, or for DISSOLVE every member removed).
 * Errors here: -EINVAL bad ids or action; -MIM_ERR_TOO_LARGE name or
 * metadata past MIM_GROUP_NAME_MAX / MIM_GROUP_METADATA_MAX;
 * -MIM_ERR_BAD_UTF8; -ENOMEM. */
MIM_API int mim_write_batch_add_group_manage(
    struct mim_write_batch *b, const char *group, const char *actor,
    enum mim_group_action action, const char *target, int64_t until,
    const char *name, const char *metadata, int64_t server_time,
    size_t *index);

/* Asks group change `index` to store the group notice (below) when it
 * changes anything, naming `actor` (borrowed, copied; NULL or "": an
 * operator) as who made it. The logic asks it of every group change, from
 * clients and operators alike; without it a change stores no notice.
 * Errors: -EINVAL `index` is not a group change, `actor` not a valid id;
 * -ENOMEM. */
MIM_API int mim_write_batch_set_notice(struct mim_write_batch *b, size_t index,
                                      const char *actor);

/* Changes stored message `msg_id` (MIM_OP_CHANGE, docs/protocol.md §19)
 * on behalf of `actor` (NULL or "": an operator, who may RECALL or EDIT
 * any message without a window), who names the message's conversation:
 * one-to-one with `peer`, or group `group` (exactly one of them; an
 * operator may leave both empty). At commit, in the transaction:
 *  - the message must exist and lie in that conversation, and the actor
 *    must be a participant who can see it (a member who joined before it):
 *    else -MIM_ERR_NOT_FOUND (the same for "does not exist" and "not
 *    yours to see");
 *  - RECALL: the sender while server_time - sent <= recall_window_ms
 *    (else -MIM_ERR_WINDOW_PASSED), or a group owner/admin
 *    (mim_group_rule_check MIM_GA_RECALL) at any time, else
 *    -MIM_ERR_FORBIDDEN. The record is rewritten without content and
 *    payload, state RECALLED; a recall of a recalled message changes
 *    nothing and succeeds;
 *  - EDIT: only the sender within edit_window_ms, not of a recalled
 *    message (-MIM_ERR_FORBIDDEN); the content replaced, state EDITED;
 *  - DELETE_FOR_ME: any participant; the message hidden from the actor's
 *    reads (never written per member).
 * RECALL and EDIT file one change entry in the inbox of each participant
 * (the members of a group now, both users of a pair); DELETE_FOR_ME in
 * the actor's only. `content` (EDIT only) is borrowed and copied.
 * The size of an edit's content is the caller's limit (the logic applies
 * content_max, as for a send). Errors here: -EINVAL bad ids or action,
 * both peer and group, neither for a user; -MIM_ERR_BAD_UTF8; -ENOMEM. */
MIM_API int mim_write_batch_add_change(struct mim_write_batch *b,
                                       const char *actor, uint64_t msg_id,
                                       enum mim_change_action action,
                                       const char *peer, const char *group,
                                       const uint8_t *content,
                                       size_t content_len,
                                       int64_t server_time,
                                       int64_t recall_window_ms,
                                       int64_t edit_window_ms, size_t *index);

MIM_API size_t mim_write_batch_count(const struct mim_write_batch *b);

/* ---- group notices ----
 *
 * A group change that changed anything stores one SYSTEM message (type
 * MIM_MSG_SYSTEM, conversation of the group, sender "") whose content is
 * this one-line JSON object, keys in this order:
 *
 *   {"v":1,"group":"<gid>","action":"create|add|remove|leave",
 *    "actor":"<uid, or \"\" for an operator>","members":["<uid>",...],
 *    "count":<n>}
 *
 * `members` lists the first MIM_GROUP_NOTICE_NAMES_MAX uids that changed
 * (create: the first members, the creator first when a client created it),
 * in the order of the request; `count` is how many changed in all, so a
 * 1,000-member change still stores one small record. "leave" is a removal
 * of exactly the actor. A MIM_OP_GROUP_MANAGE change has action "role"
 * (members: [target], and "role":"owner|admin|member" the target's new
 * role), "mute" ("muted":true|false and "until":<ms> for one member;
 * members [] and "all":true|false for the whole group), "info"
 * ("name":"<new name>") or "dissolve" (members: those removed); these
 * keys follow "count" (mim_group_manage_notice_format). Strings are escaped as JSON ('"' and '\'; ids hold
 * no control characters). docs/protocol.md §5.1 is the client's view. */
#define MIM_GROUP_NOTICE_NAMES_MAX 16
/* Larger than any notice: 16 names and the ids escaped, with room. */
#define MIM_GROUP_NOTICE_MAX 8192

/* Writes the notice of change `kind` of `group` by `actor` (NULL or "": an
 * operator) that changed `members[0..n)` into `buf` (NUL-terminated; its
 * length without the NUL in *len). Every pointer is borrowed for the call.
 * Errors: -EINVAL a NULL argument or kind not a group change; -ENOBUFS
 * `cap` too small (MIM_GROUP_NOTICE_MAX always suffices for valid ids). */
MIM_API int mim_group_notice_format(char *buf, size_t cap, size_t *len,
                                    enum mim_write_op_kind kind,
                                    const char *group, const char *actor,
                                    const char *const *members, size_t n);

/* The notice of a MIM_OP_GROUP_MANAGE change (the format above): `action`
 * of `group` by `actor` concerning `members[0..n)` (the target, or those a
 * dissolve removed); `until` for MUTE; `name` for SET_INFO (escaped as a
 * JSON string). Errors as mim_group_notice_format(). */
MIM_API int mim_group_manage_notice_format(char *buf, size_t cap, size_t *len,
                                           const char *group,
                                           const char *actor,
                                           enum mim_group_action action,
                                           const char *const *members,
                                           size_t n, int64_t until,
                                           const char *name);

/* The outcome of operation `index` after a commit. Errors: -EINVAL index out
 * of range; -EAGAIN the batch has not been committed. */
MIM_API int mim_write_batch_outcome(const struct mim_write_batch *b,
                                    size_t index,
                                    const struct mim_op_outcome **out);

/* The result of the whole commit: 0 when every outcome was decided and made
 * durable, else the error that failed the transaction (then every op's
 * status is that error and nothing was stored). -EAGAIN before commit. */
MIM_API int mim_write_batch_status(const struct mim_write_batch *b);

/* ---- backends ----
 *
 * A backend is opened by its own constructor (the LMDB one: <mim/lmdb.h>)
 * and used through the calls below. What a backend implements, and the
 * calls only an implementation makes, are in <mim/backend.h>. */

struct mim_backend;

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

/* The groups `uid` (borrowed) belongs to, at most `limit` of them, in the
 * backend's stable group order, starting after group `after` ("" or NULL:
 * from the first): `fn` is called once per group id (borrowed for the
 * call), after the read ended. *has_more says whether more follow the last
 * one (page on with after = that group). An index (uid → group) answers it:
 * no scan of other users' memberships. Errors: -EINVAL; -ENOTSUP the
 * backend has no groups_of op; store errors. An unknown uid or `after`
 * gives no groups. */
MIM_API int mim_backend_groups_of(struct mim_backend *be, const char *uid,
                                  const char *after, size_t limit,
                                  void (*fn)(void *user, const char *group),
                                  void *user, bool *has_more);

/* The large groups (struct mim_group_info.large) `uid` (borrowed) is a
 * member of, at most MIM_USER_LARGE_GROUPS_MAX: `fn` is called once per
 * group id (borrowed for the call),
 * after the read ended. From the user's index of groups: no scan of the
 * groups' members. Errors: -EINVAL; -ENOTSUP the backend has no
 * large_groups_of op; store errors. An unknown uid gives none. */
MIM_API int mim_backend_large_groups_of(struct mim_backend *be,
                                        const char *uid,
                                        void (*fn)(void *user,
                                                   const char *group),
                                        void *user);

/* ---- conversations (docs/architecture.md §6.1) ---- */

/* One conversation of a user's list. Pointers are owned by the list. */
struct mim_conv_info {
  const char *peer;        /* one-to-one: the other user ("" for a group) */
  const char *group;       /* group conversations ("" for one-to-one) */
  uint64_t last_msg_id;    /* the newest message: the list's sort key */
  uint64_t last_conv_seq;  /* the conversation's newest conv seq */
  int64_t last_time;       /* its server time (ms) */
  const char *last_sender; /* "" for the server (group notices) */
  uint32_t last_type;      /* enum mim_msg_type */
  const uint8_t *preview;  /* the first bytes of its content, cut at a
                              UTF-8 boundary, NUL-terminated (not counted) */
  size_t preview_len;
  bool preview_cut;        /* the content was longer than the preview */
  uint64_t read_seq;       /* the user's read position */
  uint64_t unread;         /* newest conv seq - max(read, joined) */
  uint64_t peer_read_seq;  /* one-to-one: the peer's read position */
  /* The newest message's MIM_MSG_STATE_* (RECALLED: the preview is empty;
   * DELETED: the user deleted it for themself, the preview is empty) and
   * the time of that change (ms, 0: none). */
  uint32_t last_state;
  int64_t last_change_time;
  bool large;              /* a large group: listed by its timeline's
                              newest message (its members' list entries
                              do not move per message) */
};

/* Caller-allocated: init, pass to mim_backend_conv_list, use, finish. */
struct mim_conv_list {
  struct mim_conv_info *items;
  size_t count;
  bool has_more;           /* older conversations follow the last one */
  void *priv_;
};

MIM_API void mim_conv_list_init(struct mim_conv_list *l);

/* Frees everything the list owns and re-initialises it. NULL: no-op. */
MIM_API void mim_conv_list_finish(struct mim_conv_list *l);

/* The conversations of `uid` (borrowed) whose newest message is older
 * than `before_msg_id` (0: from the newest), newest first, at most
 * `limit`, each with a preview of at most `preview_max` bytes, appended to
 * `out` (init'ed by the caller; finish it even on error). A page costs one
 * index walk and a few lookups per entry: never a scan of messages.
 * Errors: -EINVAL; -ENOTSUP the backend has no conv_list op; -ENOMEM;
 * store errors. An unknown uid gives an empty list. */
MIM_API int mim_backend_conv_list(struct mim_backend *be, const char *uid,
                                  uint64_t before_msg_id, size_t limit,
                                  size_t preview_max,
                                  struct mim_conv_list *out);

/* Who has read the message at conv seq `conv_seq` of group `group`: the
 * members who joined before it and whose read position is at or past it.
 * *read_count gets how many, *member_count how many members the group
 * has; when `fn` is not NULL it is called (after the read ended) with the
 * uids of at most `limit` readers in the backend's stable member order,
 * starting after member `after` ("" or NULL: from the first), and
 * *has_more says whether more readers follow. Reads only (one position
 * lookup per member, bounded by the group's size). Errors: -EINVAL;
 * -ENOTSUP; -MIM_ERR_NO_SUCH_GROUP; store errors. */
MIM_API int mim_backend_read_by(struct mim_backend *be, const char *group,
                                uint64_t conv_seq, const char *after,
                                size_t limit, uint64_t *read_count,
                                uint64_t *member_count,
                                void (*fn)(void *user, const char *uid),
                                void *user, bool *has_more);
/* The roles and info of `group` (borrowed): `fn` is called once with them
 * (borrowed for the call). Errors: -EINVAL; -ENOTSUP the backend has no
 * group_info op; -MIM_ERR_NO_SUCH_GROUP; store errors. */
MIM_API int mim_backend_group_info(struct mim_backend *be, const char *group,
                                   void (*fn)(void *user,
                                              const struct mim_group_info *i),
                                   void *user);

/* One page of the members of `group` (borrowed): at most `limit` uids, in
 * the backend's stable member order (the order members_list sorts is not
 * kept: a page is read with a cursor seek, never the whole group), starting
 * after member `after` ("" or NULL: from the first). `fn` is called once
 * per uid (borrowed for the call), after the read ended. *has_more says
 * whether more follow the last one (page on with after = that uid). An
 * `after` that names no known user gives an empty page (no has_more); one
 * that left the group still pages on after it. Errors: -EINVAL (NULL
 * argument); -ENOTSUP the backend has no members_page op;
 * -MIM_ERR_NO_SUCH_GROUP; store errors. */
MIM_API int mim_backend_members_page(struct mim_backend *be, const char *group,
                                     const char *after, size_t limit,
                                     void (*fn)(void *user, const char *uid),
                                     void *user, bool *has_more);

/* When the last device of `uid` (borrowed) went away, as the last
 * MIM_OP_LAST_SEEN committed for it says (ms; 0 when none was). One key
 * lookup. Errors: -EINVAL; -ENOTSUP the backend has no last_seen op;
 * store errors. */
MIM_API int mim_backend_last_seen(struct mim_backend *be, const char *uid,
                                  int64_t *ms);

/* Closes the backend (ops->destroy) and frees `be`. NULL is a no-op. */
MIM_API void mim_backend_destroy(struct mim_backend *be);

#ifdef __cplusplus
}
#endif

#endif /* MIM_STORE_H */
