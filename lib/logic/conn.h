/* The logic's lowest module (conn.c): connections, replies in request
 * order, effects, reads in turn, pushes in flight and ack cursors. Calls
 * nothing above it: it reaches commit.c and logic.c only through
 * struct logic_up (logic_internal.h). */
#ifndef MIM_LOGIC_CONN_H
#define MIM_LOGIC_CONN_H

#include "logic/logic_internal.h"

#include <sys/types.h>

int64_t mim__logic_now(const struct mim_logic *l);
struct conn *mim__logic_conn_find(const struct mim_logic *l,
                                  struct mim_conn_ref ref);
struct conn *mim__logic_conn_get(struct mim_logic *l, struct mim_conn_ref ref);
void mim__logic_conn_drop(struct mim_logic *l, struct conn *c);
void mim__logic_conns_finish(struct mim_logic *l);
void mim__logic_conn_unauth(struct mim_logic *l, struct conn *c);

struct slot *mim__logic_slot_push(struct conn *c);
struct slot *mim__logic_slot_find(struct conn *c, uint64_t id);
/* Sets a slot's reply to `p` (encoded now). */
int mim__logic_slot_set_packet(struct slot *s, const struct mim_packet *p);
/* Sets a slot's reply to the Error for `err`, stamped with the logic's
 * clock (Error.ts). */
void mim__logic_slot_set_error(struct mim_logic *l, struct slot *s,
                               uint32_t req_cmd, int64_t req_seq, int err);
/* Emits the ready slots at the head of `c`'s queue, running deferred
 * reads as they reach the head. */
void mim__logic_conn_flush(struct mim_logic *l, struct conn *c);

/* Queues a reply to `c` in order: a ready slot, then flush. */
void mim__logic_reply(struct mim_logic *l, struct conn *c,
                      const struct mim_packet *p);
void mim__logic_reply_error(struct mim_logic *l, struct conn *c,
                            uint32_t req_cmd, int64_t req_seq, int err);

/* Counts an Error packet with wire code `code` (mim_logic_stats()). */
void mim__logic_count_error(struct mim_logic *l, int32_t code);

int mim__logic_emit_deliver(struct mim_logic *l, uint32_t gateway,
                            uint32_t cmd, const uint8_t *body, size_t len,
                            uint32_t seq_field,
                            const struct mim_rpc_target *targets, size_t n);
int mim__logic_emit_kick(struct mim_logic *l, struct mim_conn_ref to,
                         int32_t reason, const char *uid, const char *text);
int mim__logic_emit_admin(struct mim_logic *l, uint64_t req_id,
                          const struct mim_packet *p);
/* The same, with the inboxes a stored message went to (copied): the
 * effect's `recipients`. Out of memory for the copy leaves them out. */
int mim__logic_emit_admin_recipients(struct mim_logic *l, uint64_t req_id,
                                     const struct mim_packet *p,
                                     const struct mim_recipient *r, size_t n);
/* Tells the gateway of `c` its session now: bound (with a fresh ticket)
 * or, when `c` is not authenticated, unbound. */
int mim__logic_emit_session(struct mim_logic *l, const struct conn *c);
/* The name of gateway `handle`, or NULL. */
const char *mim__logic_gateway_id(const struct mim_logic *l, uint32_t handle);
void mim__logic_effects_finish(struct mim_logic *l);

/* Events for the application: hands `ev` to the event callback, if any. */
void mim__logic_event(struct mim_logic *l, const struct mim_event *ev);
/* Whether `uid` has a logged-in device now. */
bool mim__logic_user_online(const struct mim_logic *l, const char *uid);
/* USER_ONLINE (`online`) or USER_OFFLINE of (uid, device), if the route
 * table says it was the first device on or the last one off. Call right
 * after the bind or unbind. */
void mim__logic_presence_changed(struct mim_logic *l, const char *uid,
                                 const char *device, bool online);

/* Pushes `pkt` to every connection of `uid` that asked for capability
 * `cap` (MIM_CAP_*), but `exclude` (NULL: none): the one way a feature
 * sends something new, so connections that did not ask (seed clients)
 * see nothing of it. Not stored; lost on a full output like any push. */
void mim__logic_push_cap(struct mim_logic *l, uint32_t cap, const char *uid,
                         const struct mim_conn_ref *exclude,
                         const struct mim_packet *pkt);

/* Sends `pkt` (encoded once) to the connections collected in l->fanout,
 * one DELIVER per gateway; nothing when it is empty. */
void mim__logic_fanout_emit(struct mim_logic *l, const struct mim_packet *pkt);

/* A DELIVERED receipt (docs/protocol.md §18): `reader`'s device
 * acknowledged `sender`'s one-to-one messages up to `conv_seq`; pushed to
 * the sender's connections with MIM_CAP_READ. */
void mim__logic_push_delivered(struct mim_logic *l, const char *reader,
                               const char *sender, uint64_t conv_seq);

/* Cursor bookkeeping. */
/* Remembers a push to `c`; `notify` (borrowed, copied; NULL: none) is the
 * sender to tell DELIVERED up to `conv_seq` when `c` acknowledges it. */
void mim__logic_ring_add(struct conn *c, uint64_t msg_id, uint64_t inbox_seq,
                         bool acked, const char *notify, uint64_t conv_seq);
/* Forgets every remembered push (a logout, a closed connection). */
void mim__logic_ring_clear(struct conn *c);
/* Marks a seed ack by msg_id; returns the new contiguous cursor. */
uint64_t mim__logic_ring_ack_msg(struct mim_logic *l, struct conn *c,
                                 uint64_t msg_id);
/* Raises c->cursor to `seq` (clamped to what the connection has seen) and
 * marks it for writing with the next batch; many acks cost one write. */
void mim__logic_cursor_raise(struct mim_logic *l, struct conn *c,
                             uint64_t seq);
/* Adds a cursor op for every dirty connection to the open batch. */
void mim__logic_cursors_write(struct mim_logic *l);
/* Adds a cursor op for (uid, device) to the open batch and remembers it
 * until its batch is done. */
void mim__logic_cursor_write(struct mim_logic *l, const char *uid,
                             const char *device, uint64_t seq);
/* The highest uncommitted cursor of (uid, device), 0 if none. */
uint64_t mim__logic_cursor_pending(const struct mim_logic *l, const char *uid,
                                   const char *device);
/* A cursor op of a returned batch: forget it once the store has it. */
void mim__logic_cursor_done(struct mim_logic *l, const char *uid,
                            const char *device, uint64_t seq);
void mim__logic_cursors_finish(struct mim_logic *l);

/* The index of gateway `gw` in l->gateways, or -1. */
ssize_t mim__logic_gateway_index(const struct mim_logic *l, uint32_t gw);
/* The gateway `id`, NULL if not up. */
struct gw *mim__logic_gw_find(const struct mim_logic *l, uint32_t id);
/* Takes `c` out of its gateway's read queue, if it is in it. */
void mim__logic_rq_remove(struct mim_logic *l, struct conn *c);
/* Runs one queued read (the next in round-robin order); false if none may
 * run (none queued, or their gateways are paused). */
bool mim__logic_run_read(struct mim_logic *l);
/* Whether a read is queued for a gateway that is not paused. */
bool mim__logic_reads_ready(const struct mim_logic *l);

#endif /* MIM_LOGIC_CONN_H */
