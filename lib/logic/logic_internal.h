/* The logic's private state and types, shared by its modules. Private.
 *
 * Modules, lowest first; each calls only the ones below it, and reports
 * upward through struct logic_up, set at creation:
 *   conn.c   (conn.h)   connections, ordered replies, effects, reads in
 *                       turn, pushes in flight and ack cursors
 *   large.c  (large.h)  large groups' live followers
 *   commit.c (commit.h) write batches: pending answers, in-flight dedup,
 *                       the write budget (parked writes), commit outcomes
 *   auth.c, send.c, group.c, read.c (requests.h)
 *                       one request family each: logins and token expiry,
 *                       sends and acks, groups, pull and history
 *   admin.c             operators' requests, reusing the families
 *   logic.c             the public API: creation, gateways, events in,
 *                       dispatch, deferred and parked requests; sets
 *                       struct logic_up
 * This header holds the types all three share and includes none of theirs. */
#ifndef MIM_LOGIC_INTERNAL_H
#define MIM_LOGIC_INTERNAL_H

#include <mim/auth.h>
#include <mim/logic.h>
#include <mim/backend.h>

#include "codec/codec_internal.h"
#include "util/htable.h"
#include "util/internal.h"

/* Largest body of a pull, history or group-list request: each waits in its
 * connection's queue until its turn (the fields they have need < 600). */
#define READ_REQ_MAX 4096
/* What scanning one member's read position weighs on the turn's read
 * budget (read_turn_bytes), in reply bytes: a read-by looks up every
 * member of the group whatever page it returns, so its reply size says
 * nothing of its cost (docs/protocol.md §18). */
#define MIM__READ_BY_MEMBER_COST 32

/* ---- ordered replies ---- */

enum slot_state {
  SLOT_WAITING = 0,  /* its write has not committed yet */
  SLOT_READY = 1,    /* `body` holds the encoded reply */
  SLOT_DEFERRED = 2, /* a read that runs once every earlier slot is done, so
                        a client reads its own writes */
  SLOT_SILENT = 3,   /* done, with nothing to send (acks) */
  SLOT_PARKED = 4,   /* a write waiting for room in a batch: `body` holds
                        the request, `weight` its writes (commit.c) */
};

/* One request's place in its connection's reply order. */
struct slot {
  struct slot *next;
  uint64_t id;
  enum slot_state state;
  uint32_t cmd;      /* READY: reply cmd; DEFERRED: request cmd */
  uint8_t *body;     /* READY: encoded reply; DEFERRED: the request body */
  size_t body_len;
  uint64_t weight;   /* PARKED: store writes the request will make */
  bool session_after; /* once sent, tell the gateway the connection's
                         session (an AuthResponse, a LogoutResponse) */
  int32_t err_code;   /* READY with an Error packet: its code (stats) */
};

/* A push this connection was sent and has not acknowledged, for seed
 * clients that ack by msg_id only. */
struct inflight {
  uint64_t msg_id;
  uint64_t inbox_seq;
  bool acked;
  /* a one-to-one push whose sender asked for receipts (MIM_CAP_READ):
   * told DELIVERED up to conv_seq once this device acknowledges it */
  char *notify;                /* owned; NULL: nobody to tell */
  uint64_t conv_seq;
};

/* The capabilities this version grants (enum mim_caps): a login keeps only
 * these, and AuthResponse.caps says which. A feature adds its bit here. */
#define MIM__CAPS_GRANTED                                                      \
  (MIM_CAP_BATCH | MIM_CAP_TRANSIENT | MIM_CAP_PULL_NO_ACK | MIM_CAP_READ | \
   MIM_CAP_CHANGE | MIM_CAP_TYPING | MIM_CAP_PRESENCE | MIM_CAP_LARGE)

struct conn {
  struct mim__hnode node;      /* in logic.conns, by (gateway, conn_id) */
  struct mim_conn_ref ref;
  uint64_t gen;                /* unique per conn object: stale completions
                                  of a closed connection are recognised */
  bool authed;
  char *uid;
  char *device;
  uint32_t caps;
  int64_t expires_at;          /* the login token's expiry, unix seconds;
                                  0 = never (development auth) */
  uint64_t cursor;             /* this device's ack cursor (memory is ahead
                                  of the store until the cursor op commits) */
  uint64_t pulled_upto;        /* seed pulls: last inbox seq handed out */
  uint64_t seen_max;           /* highest inbox seq this connection was told
                                  of: acks beyond it are clamped */
  bool cursor_dirty;           /* cursor moved; written at the next batch */
  bool logging_out;            /* a logout is queued: refuse what follows */
  /* replies in request order */
  struct slot *head, *tail;
  size_t n_slots;
  uint64_t next_slot_id;
  /* pushes in flight, ascending inbox_seq (a ring) */
  struct inflight *ring;
  size_t ring_cap, ring_start, ring_len;
  /* send rate limit (token bucket, milli-tokens) */
  int64_t tokens_milli;
  int64_t refilled_at;
  /* writes waiting for room in a batch (SLOT_PARKED), and this
   * connection's place in the logic's round robin over them */
  size_t n_parked;
  /* group changes waiting (SLOT_DEFERRED) for this connection's earlier
   * requests: its later writes wait behind them (logic.c dispatch) */
  size_t n_deferred_writes;
  struct conn *park_prev, *park_next;
  bool in_park;
  uint64_t served_batch;       /* the last batch a write of it joined */
  /* in its gateway's queue of connections whose head is a read to run */
  struct conn *rq_next, *rq_prev;
  bool in_rq;
  /* typing rate limit (token bucket, milli-tokens; presence.c) */
  int64_t typing_tokens_milli;
  int64_t typing_refilled_at;
  /* the presence subscriptions of this connection (presence.c): at most
   * cfg.presence_subscribe_max, dropped with the session */
  struct psub **psubs;
  size_t n_psubs, psubs_cap;
  /* the large groups this connection follows live (large.c) */
  struct lref *lrefs;
  size_t n_lrefs, lrefs_cap;
};

/* A gateway link the logic knows. Reads (pull, history, group list) do not
 * run when they reach the head of their connection's queue: the connection
 * joins its gateway's read queue, and mim_logic_next_effect() runs them one
 * per connection in turn, round robin over gateways, within the turn's byte
 * budget and never for a paused gateway. So one client's pipelined reads
 * cannot fill a link or the loop ahead of everyone else's. */
struct gw {
  uint32_t id;                 /* the daemon's handle */
  char *name;                  /* its HELLO gateway_id: tickets bind it */
  bool paused;                 /* mim_logic_gateway_pause() */
  struct conn *rq_head, *rq_tail;
};

/* ---- effects ---- */

struct effect_node {
  struct effect_node *next;
  struct mim_effect e;
  uint8_t *body;                   /* owned */
  struct mim_rpc_target *targets;  /* owned */
  char *uid, *device;              /* owned (SESSION) */
  struct mim_recipient *recipients; /* owned, with their uids (ADMIN_REPLY) */
  uint8_t ticket[MIM_TICKET_LEN];  /* SESSION */
};


/* ---- pending writes ---- */

/* Someone waiting for a write's outcome: the request that made it, or a
 * retry with the same client_msg_id that arrived before it committed. */
struct waiter {
  struct waiter *next;
  struct mim_conn_ref ref;
  uint64_t conn_gen;
  uint64_t slot_id;
  int64_t req_seq;
  bool admin;
  uint64_t req_id;      /* admin */
};

enum pending_kind {
  PENDING_SEND = 1,     /* c2c / c2g / server push */
  PENDING_CURSOR = 2,
  PENDING_GROUP = 3,
  PENDING_READ = 4,     /* mark read (conv.c); answered in commit.c */
  PENDING_CHANGE = 5,   /* recall/edit/delete-for-me (change.c); answered
                           in commit.c */
};

struct pending {
  struct mim__hnode dedup_node; /* in logic.inflight when dedup_key */
  enum pending_kind kind;
  size_t op_index;      /* in its batch */
  uint32_t req_cmd;     /* the request's cmd (C2C_SEND_REQ, ...) */
  struct waiter *waiters;
  char *dedup_key;      /* "sender\0client_msg_id", owned; NULL if none */
  size_t dedup_key_len;
  struct mim_conn_ref sender_conn; /* excluded from the fan-out */
  bool has_sender_conn;
  bool in_open;         /* in the open batch (else in the one out) */
};

/* A cursor written to a batch but not yet known to be committed: a login of
 * the device in between must not report (or pull from) an older one. */
struct pending_cursor {
  struct mim__hnode node;  /* in logic.cursors, by "uid\0device" */
  uint64_t seq;
  size_t key_len;
  char key[];              /* "uid\0device" */
};

struct pending_list {
  struct pending **items;
  size_t count, cap;
};

/* The calls the lower modules make upward, set by mim_logic_create(): conn.c
 * and commit.c report through these and never call into the modules that
 * include them (see the order at the top of this file). */
struct logic_up {
  /* logic.c: runs a deferred request now that it heads its connection's
   * queue (pull, history, group list and change, logout). */
  void (*run_deferred)(struct mim_logic *l, struct conn *c, uint32_t cmd,
                       const uint8_t *body, size_t len, struct slot *s);
  /* logic.c: runs a parked write (slot `s` of `c`) now that it has room in
   * the open batch; its reply goes to `s`. */
  void (*run_parked)(struct mim_logic *l, struct conn *c, uint32_t cmd,
                     const uint8_t *body, size_t len, struct slot *s);
  /* commit.c: takes `c` out of the round robin of parked writes (it
   * closes). */
  void (*park_remove)(struct mim_logic *l, struct conn *c);
  /* commit.c: a pending answer for op `op` of the open batch; NULL when
   * out of memory. */
  struct pending *(*pending_new)(struct mim_logic *l, enum pending_kind kind,
                                 size_t op);
  /* large.c: the session of `c` ends; it follows no large group. */
  void (*large_logout)(struct mim_logic *l, struct conn *c);
  /* logic.c: `uids` left `group` (removed, left, dissolved; committed). */
  void (*members_left)(struct mim_logic *l, const char *group,
                       const char *const *uids, size_t n);
};

struct mim_logic {
  struct logic_up up;
  struct mim_logic_config cfg;
  struct mim__log_sink log; /* cfg.log, or the process-wide handler */
  uint8_t *secret;
  struct mim_sessions *sessions;
  struct mim_fanout *fanout;
  struct mim__htable conns;
  struct gw *gateways;
  size_t n_gateways, gateways_cap;
  size_t rr_gateway;            /* where the next read is looked for */
  size_t turn_bytes;            /* reply bytes reads made this turn */
  uint8_t ticket_key[MIM_TICKET_KEY_LEN];
  /* the earliest token expiry (ms) of an authenticated connection, or 0:
   * nothing can expire. Never later than the real earliest one. */
  int64_t next_expiry_ms;
  uint64_t next_gen;
  /* writes: `open` gathers, `out` is being committed */
  struct mim_write_batch *open;
  struct pending_list open_pending;
  struct mim_write_batch *out;
  struct pending_list out_pending;
  struct mim_write_batch *spare;  /* the last batch back, reset for reuse */
  /* The write budget: store writes the open batch will make (a message
   * as many as it has recipients, a group change as many as it names
   * members). Client writes that do not fit wait, parked, in their
   * connection's queue; connections with parked writes take turns when
   * a batch is taken (commit.c). */
  uint64_t open_weight;
  uint64_t open_batch;          /* numbers the open batch, from 1 */
  struct conn *park_head, *park_tail;
  struct group_weight *group_weights; /* members per group (a cache) */
  struct mim__htable inflight;  /* dedup_key -> pending */
  struct mim__htable cursors;   /* struct pending_cursor */
  struct mim__hkey hkey;        /* both are keyed by client-chosen ids */
  struct conn **dirty;          /* connections whose cursor must be written */
  size_t n_dirty, dirty_cap;
  int64_t cursors_written_at;   /* mim__logic_now() of the last write */
  /* effects */
  struct effect_node *effects_head, *effects_tail;
  struct effect_node *current;  /* handed out by next_effect */
  /* mim_logic_stats(): the counters (the "now" fields are computed) */
  struct mim_logic_stats stats;
  /* events for the application (mim_logic_set_event_cb()) */
  mim_logic_event_fn event_fn;
  void *event_user;
  /* presence (presence.c): uid -> the connections subscribed to it, and
   * uid -> when its last device went away (ms) */
  struct mim__htable psubs;
  struct mim__htable last_seen;
  /* large groups with followers online (large.c): group -> connections */
  struct mim__htable large;
};


#endif /* MIM_LOGIC_INTERNAL_H */
