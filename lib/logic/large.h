/* Large groups' live followers (large.c, docs/architecture.md §6.3): the
 * online MIM_CAP_LARGE connections of each large group's members, so a
 * message to such a group costs work per follower, never per member.
 * Above conn.c, below commit.c. */
#ifndef MIM_LOGIC_LARGE_H
#define MIM_LOGIC_LARGE_H

#include "logic/conn.h"

/* A login of `c`: it follows the user's large groups (one store read)
 * when it asked for MIM_CAP_LARGE. */
void mim__logic_large_login(struct mim_logic *l, struct conn *c);
/* The session of `c` ends: it follows nothing (also frees what it held). */
void mim__logic_large_logout(struct mim_logic *l, struct conn *c);
/* `uid` joined (`join`) or left large group `group`: its MIM_CAP_LARGE
 * connections follow it or stop. Idempotent both ways. */
void mim__logic_large_member(struct mim_logic *l, const char *group,
                             const char *uid, bool join);
/* `group` switched to large: every online member's MIM_CAP_LARGE
 * connection follows it (one read of the member list, once per group). */
void mim__logic_large_switched(struct mim_logic *l, const char *group,
                               uint64_t joined_max);
/* `group` is gone: nobody follows it. */
void mim__logic_large_dissolved(struct mim_logic *l, const char *group);
/* Pushes `pkt` to every follower of `group` that has capability `cap`
 * (0: any) but `exclude` (NULL: none), one DELIVER per gateway, no inbox
 * seq. Returns how many it reached. */
size_t mim__logic_large_push(struct mim_logic *l, const char *group,
                             uint32_t cap, const struct mim_conn_ref *exclude,
                             const struct mim_packet *pkt);
void mim__logic_large_finish(struct mim_logic *l);

#endif
