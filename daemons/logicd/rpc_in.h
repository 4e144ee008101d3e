/* rpc_in.c: frames from links into the logic (HELLO, REQUEST, SESSIONS,
 * CONN_CLOSED, admin requests) and link liveness. Calls rpc_out.c and
 * rpc_link.c. Private to logicd. */
#ifndef LOGICD_RPC_IN_H
#define LOGICD_RPC_IN_H

#include "rpc_server_internal.h"

/* One decoded frame from `k`. Returns -1 when the link must close. */
int rpc_on_frame(struct server *s, struct link *k, const struct mim_frame *f);

/* Closes links that missed the HELLO deadline or stayed silent past
 * dead_ms, and PINGs links silent for ping_ms. `now` is monotonic ms. */
void rpc_check_links(struct server *s, int64_t now);

#endif
