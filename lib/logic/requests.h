/* The request families of the logic, one file each: auth.c, send.c,
 * group.c, read.c (built on commit.h and conn.h), then admin.c (operators,
 * which reuses them), then logic.c (the public API and dispatch). A family
 * calls only below it: never admin.c or logic.c (tests/layering.sh). */
#ifndef MIM_LOGIC_REQUESTS_H
#define MIM_LOGIC_REQUESTS_H

#include "logic/commit.h"

#include <string.h>

struct member_collect {
  const char **uids;
  size_t n, cap;
  int err;
};

static inline size_t strlen0(const char *s) { return s ? strlen(s) : 0; }

/* auth.c */
/* What mim_logic_tick() hands mim__logic_expiry_visit() per connection. */
struct expiry_scan {
  struct mim_logic *l;
  int64_t now, next;
};
void mim__logic_expire(struct mim_logic *l, struct conn *c);
void mim__logic_expiry_visit(void *user, struct mim__hnode *n);
void mim__logic_handle_auth(struct mim_logic *l, struct conn *c,
                            const struct mim_packet *p);
bool mim__logic_session_expired(const struct conn *c, int64_t now_ms);

/* group.c */
void mim__logic_member_collect_finish(struct member_collect *mc);
/* Appends a copy of `uid` to `user` (a struct member_collect); on failure
 * sets its err and keeps nothing more. A callback of the backend's
 * member, group and reader walks. */
void mim__logic_member_collect_uid(void *user, const char *uid);
/* A group change queued at batch entry `idx`: charges `weight` to the
 * batch and makes its reply wait for the commit (an operator's by
 * `req_id`, a client's in `slot` or a new one). 0 or -ENOMEM. */
int mim__logic_group_wait(struct mim_logic *l, struct conn *c, uint32_t cmd,
                          int64_t seq, bool admin, uint64_t req_id,
                          struct slot *slot, size_t idx, uint64_t weight);
int mim__logic_queue_group(struct mim_logic *l, struct conn *c,
                           const struct mim_packet *p, bool admin,
                           uint64_t req_id, struct slot *slot,
                           const uint8_t *body, size_t len, bool admitted);
int mim__logic_read_group_list(struct mim_logic *l, const char *viewer,
                               const struct mim_packet *p, struct mim_packet *r,
                               struct member_collect *mc);

/* roles.c */
struct mim__group_info_copy {
  char *owner, *name, *metadata;
  const char **admins, **muted;
  size_t n_admins, n_muted;
  bool muted_all;
  bool large;
  int err;
};
int mim__logic_queue_manage(struct mim_logic *l, struct conn *c,
                            const struct mim_packet *p, bool admin,
                            uint64_t req_id, struct slot *slot,
                            const uint8_t *body, size_t len, bool admitted);
int mim__logic_read_group_info(struct mim_logic *l, const char *viewer,
                               const struct mim_packet *p, struct mim_packet *r,
                               struct mim__group_info_copy *g);
void mim__logic_group_info_finish(struct mim__group_info_copy *g);

/* read.c */
uint32_t mim__logic_clamp_limit(const struct mim_logic *l, int32_t limit);
int mim__logic_do_history(struct mim_logic *l, const char *viewer,
                      const struct mim_packet *p, struct mim_message_list *ml,
                          struct mim_packet *r, struct mim_pull_item **items);
/* GROUP_SYNC (docs/protocol.md §22): `viewer`'s group timeline after a
 * conv seq, oldest first, into `r` (items in `*items`, owned by the
 * caller, pointing into `ml`). Errors: MIM_ERR_MALFORMED, NOT_MEMBER (also
 * for a group that does not exist), store errors. */
int mim__logic_do_group_sync(struct mim_logic *l, const char *viewer,
                             const struct mim_packet *p,
                             struct mim_message_list *ml, struct mim_packet *r,
                             struct mim_pull_item **items);
int mim__logic_do_pull(struct mim_logic *l, struct conn *c,
                       const struct mim_packet *p, struct mim_message_list *ml,
                       struct mim_packet *r, struct mim_pull_item **items);
int mim__logic_read_inbox(struct mim_logic *l, const char *uid, uint64_t from,
                          uint64_t min_id, bool changes, uint32_t limit,
                          struct mim_message_list *ml, struct mim_packet *r,
                          struct mim_pull_item **items, uint64_t *read_upto);

/* conv.c: conversations, read positions, read-by (docs/protocol.md §10) */
int mim__logic_do_conv_list(struct mim_logic *l, const char *viewer,
                            const struct mim_packet *p, struct mim_packet *r,
                            struct mim_conv_list *cl,
                            struct mim_conv_item **items);
int mim__logic_do_read_by(struct mim_logic *l, const char *viewer,
                          const struct mim_packet *p, struct mim_packet *r,
                          struct member_collect *mc);
int mim__logic_queue_mark_read(struct mim_logic *l, struct conn *c,
                               const struct mim_packet *p, struct slot *slot,
                               const uint8_t *body, size_t len, bool admitted);

/* change.c: recall, edit, delete-for-me (cmd 44, docs/protocol.md §19): a
 * write through the batch, answered after its commit (commit.c). `c` NULL:
 * an operator's (admin.c), waiting on `req_id`. */
int mim__logic_queue_change(struct mim_logic *l, struct conn *c,
                            const struct mim_packet *p, struct slot *slot,
                            const uint8_t *body, size_t len, bool admitted);
int mim__logic_queue_change_admin(struct mim_logic *l,
                                  const struct mim_packet *p, const char *actor,
                                  uint64_t req_id);
/* presence.c: typing (cmd 48) and presence (cmds 50-52) */
int mim__logic_handle_typing(struct mim_logic *l, struct conn *c,
                             const struct mim_packet *p);
int mim__logic_handle_presence(struct mim_logic *l, struct conn *c,
                               const struct mim_packet *p);
/* The first device of `uid` came (`online`) or the last went: remembers
 * last_seen and pushes PRESENCE to the subscribed connections. */
void mim__logic_presence_went(struct mim_logic *l, const char *uid,
                              bool online);
void mim__logic_presence_push(struct mim_logic *l, const char *uid,
                              bool online, int64_t last_seen);
/* When `uid`'s last device went away (ms), 0 = unknown. */
int64_t mim__logic_last_seen(const struct mim_logic *l, const char *uid);
/* `uid` left a group (removed, left, dissolved): the subscriptions between
 * it and others may now join strangers, and checking each against what
 * they still share would cost a membership scan per subscriber. So they
 * end, both ways; clients subscribe again (the notice tells them), and
 * the query decides afresh (docs/protocol.md §21). */
void mim__logic_presence_forget(struct mim_logic *l, const char *uid);
/* Drops every presence subscription of `c` (its session ends). */
void mim__logic_presence_unsubscribe_all(struct mim_logic *l, struct conn *c);
void mim__logic_presence_finish(struct mim_logic *l);

/* send.c */
/* Whether `c` may make one more write now (rate_per_sec, rate_burst);
 * counts it when so. */
bool mim__logic_rate_ok(struct mim_logic *l, struct conn *c);
int mim__logic_check_send(const struct mim_logic *l,
                          const struct mim_packet *p);
void mim__logic_handle_ack(struct mim_logic *l, struct conn *c,
                           const struct mim_packet *p);
/* A client's send: queued in the open batch, or parked when it does not
 * fit; answered in `slot` (NULL: a new one). */
int mim__logic_handle_send(struct mim_logic *l, struct conn *c,
                           const struct mim_packet *p, const uint8_t *body,
                           size_t len, struct slot *slot);
int mim__logic_queue_message(struct mim_logic *l, struct conn *c, int64_t req_seq,
                             uint32_t req_cmd, const struct mim_message_in *m,
                             bool admin, uint64_t req_id, struct slot *slot,
                             uint64_t weight);
int mim__logic_send_message(struct mim_logic *l, struct conn *c,
                            const struct mim_packet *p, struct slot *slot,
                            uint64_t weight);

#endif /* MIM_LOGIC_REQUESTS_H */
