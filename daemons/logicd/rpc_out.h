/* rpc_out.c: the logic's effects out to links, and the link bookkeeping
 * (handles, doomed links, pauses, pending admin requests) that rpc_in.c
 * and rpc_server.c share. Calls only rpc_link.c. Private to logicd. */
#ifndef LOGICD_RPC_OUT_H
#define LOGICD_RPC_OUT_H

#include "rpc_server_internal.h"

/* The live (not closing) gateway link the logic knows as `handle`. */
struct link *rpc_find_gateway(const struct server *s, uint32_t handle);

/* The gateway link named `id`, closing or not. */
struct link *rpc_find_gateway_id(const struct server *s, const char *id);

/* A handle no live gateway uses. */
uint32_t rpc_new_handle(struct server *s);

/* The link stops being a gateway: the logic drops its routes. */
void rpc_detach(struct server *s, struct link *k);

/* Queues a frame on `k`; on failure the link is doomed (see rpc_out.c).
 * Errors: -EPIPE closing or doomed; link_send() errors. */
int rpc_send(struct link *k, const struct mim_rpc *r);

/* Cuts off the doomed links; returns whether any was. */
bool rpc_sweep_doomed(struct server *s);

/* Pauses `k` if its output queue is above the pause mark: it is not read,
 * and the logic runs no reads of its gateway, until it drains. */
void rpc_check_pause(struct server *s, struct link *k);

/* Sends one effect where it belongs. */
void rpc_route(struct server *s, const struct mim_effect *e);

/* Removes and returns the pending admin request `id` (NULL if unknown). */
struct admin_req *rpc_admin_take(struct server *s, uint64_t id);

#endif
