/* The logic's writes (commit.c): pending answers, in-flight dedup, the
 * write budget with its parked writes, and what follows a commit. Built on
 * conn.h; reaches logic.c only through struct logic_up. */
#ifndef MIM_LOGIC_COMMIT_H
#define MIM_LOGIC_COMMIT_H

#include "logic/large.h"

/* The write budget. */
/* Whether a write of `weight` store writes from `c` (NULL: an operator)
 * may join the open batch now: a connection with parked writes waits
 * behind them, and a batch takes what fits its budget, or one write of
 * any size when empty. */
bool mim__logic_batch_room(const struct mim_logic *l, const struct conn *c,
                           uint64_t weight);
/* Counts `weight` writes of `c` (NULL: an operator) that just joined the
 * open batch. */
void mim__logic_batch_charge(struct mim_logic *l, struct conn *c,
                             uint64_t weight);
/* Parks request (cmd, body) of `c` until a batch has room: in `s` if
 * given (it keeps its place in the reply order), else in a new slot. The
 * body is copied, and so is `group` (NULL unless a group message).
 * Errors: -ENOMEM. */
int mim__logic_park(struct mim_logic *l, struct conn *c, uint32_t cmd,
                    const uint8_t *body, size_t len, uint64_t weight,
                    const char *group, struct slot *s);
/* Takes `c` out of the round robin of parked writes (it closes). */
void mim__logic_park_remove(struct mim_logic *l, struct conn *c);
/* Store writes of one message to `group` from `sender` (NULL: the
 * server): its member count, from a small cache or the store (1 when the
 * group is unknown or `sender` is not a member: the store refuses that
 * send without writing). */
uint64_t mim__logic_group_weight(struct mim_logic *l, const char *group,
                                 const char *sender);
/* A message to `group` joined the open batch: the next ones count less
 * (they write to the inbox pages it dirtied). */
void mim__logic_group_joined(struct mim_logic *l, const char *group);
/* The member count of `group` (from the same cache; 1 when unknown). */
uint64_t mim__logic_group_members(struct mim_logic *l, const char *group);
void mim__logic_group_weights_finish(struct mim_logic *l);

/* Pending operations: what each op of a batch answers once committed. */
struct pending *mim__logic_pending_new(struct mim_logic *l,
                                       enum pending_kind kind, size_t op);
int mim__logic_waiter_add(struct pending *p, const struct conn *c,
                          struct slot *s, int64_t req_seq);
int mim__logic_waiter_add_admin(struct pending *p, uint64_t req_id);
struct pending *mim__logic_inflight_find(struct mim_logic *l, const char *key,
                                         size_t key_len);
int mim__logic_inflight_add(struct mim_logic *l, struct pending *p,
                            const char *key, size_t key_len);
void mim__logic_pending_finish(struct mim_logic *l);

#endif /* MIM_LOGIC_COMMIT_H */
