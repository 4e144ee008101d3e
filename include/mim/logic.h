/* libmim — the message logic: a sans-I/O state machine.
 *
 * Events go in: a gateway came up or went down, a client packet arrived on a
 * connection, a connection closed, time passed. Effects come out: packets to
 * deliver to connections (replies, pushes, errors), kicks, and batches of
 * store writes to commit. The logic never blocks and never does I/O; the
 * daemon (or a test) moves bytes and runs commits.
 *
 * Driving it:
 *   feed:   mim_logic_receive() / _conn_closed() / _gateway_*() / _tick()
 *   commit: mim_logic_take_batch() -> mim_backend_commit() (any thread) ->
 *           mim_logic_batch_done()      (or just mim_logic_flush())
 *   drain:  while (mim_logic_next_effect(l, &e) == 0) deliver(e);
 *           (pulls and histories run here, in turns: tick when
 *           mim_logic_next_timeout() says so)
 *
 * Guarantees (docs/architecture.md §4): a connection must authenticate first; `from`
 * is always the authenticated uid; send replies and pushes go out only after
 * the commit that holds the message; replies on a connection leave in request
 * order; a retried (sender, client_msg_id) shares the original's outcome,
 * committed or not. Not thread-safe: one thread owns the logic; only the
 * commit of a taken batch may run on another thread.
 */
#ifndef MIM_LOGIC_H
#define MIM_LOGIC_H

#include <mim/codec.h>
#include <mim/common.h>
#include <mim/session.h>
#include <mim/store.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mim_logic_config {
  /* sizeof(struct mim_logic_config) as the caller was built with; set by
   * mim_logic_config_init(). It lets fields be added at the end without
   * breaking callers built against an older header: mim_logic_create()
   * takes the fields a smaller struct has and the defaults for the rest,
   * and refuses a larger size it does not know (-EINVAL). */
  size_t size;
  struct mim_backend *backend; /* borrowed; must outlive the logic */
  const uint8_t *secret;       /* token secret, copied; NULL only with
                                  dev_auth */
  size_t secret_len;
  bool dev_auth;               /* DEVELOPMENT ONLY: accept any token; such
                                  sessions never expire */
  /* Key of the session tickets (<mim/auth.h>), copied; MIM_SECRET_MIN..
   * bytes. NULL: derived from `secret` (mim_ticket_key_derive()), or with
   * dev_auth and no secret a random key, so that sessions granted before a
   * restart cannot be restored after it. A daemon that must restore
   * sessions across restarts without a secret persists a key and passes
   * it here. */
  const uint8_t *ticket_key;
  size_t ticket_key_len;
  /* Clock in ms since the epoch; NULL = CLOCK_REALTIME. */
  int64_t (*now_ms)(void *user);
  void *clock_user;
  uint32_t pull_limit_default; /* pull without a limit (default 100) */
  uint32_t pull_limit_max;     /* larger limits are clamped (default 500) */
  uint32_t content_max;        /* bytes of content + payload (default 32 KiB) */
  uint32_t batch_max_ops;      /* store writes per write batch (default
                                  4096): a message counts one per
                                  recipient, a group change one per member
                                  named. Client writes beyond it wait for
                                  the next batch, connections taking turns;
                                  one larger write gets a batch alone */
  uint32_t conn_pending_max;   /* requests queued per connection before
                                  BUSY errors (default 256) */
  uint32_t rate_per_sec;       /* sends per connection per second, 0 = off
                                  (default 200) */
  uint32_t rate_burst;         /* token-bucket depth (default 400) */
  uint32_t inflight_push_max;  /* pushes remembered per connection for
                                  seed-style msg_id acks (default 1024) */
  /* While other writes keep the writer busy, moved ack cursors ride along
   * with at most one batch per this many ms (default 200); a batch with
   * nothing else in it always takes them, and so does a connection that
   * ends. A crash forgets at most this much of acknowledgement: those
   * messages are delivered again (at-least-once), never lost. 0 = every
   * batch carries them. */
  uint32_t cursor_flush_ms;
  /* A pull or history reply holds at most this many bytes (its encoded
   * body); entries that do not fit are left for the next page, with
   * has_more (default MIM_REPLY_BYTES_DEFAULT, 512 KiB). Must be at least
   * mim_logic_reply_bytes_min(content_max), so the largest message always
   * fits; 0 = the default. Admin pulls and histories obey it too. */
  uint32_t reply_bytes_max;
  /* Reply bytes the queued reads (pull, history, group list) may produce
   * between two mim_logic_tick() calls: one "turn" of the daemon's loop
   * (default 1 MiB; each read counts at least 1 KiB). Past it reads wait
   * and mim_logic_next_timeout() returns 0. 0 = no limit. */
  uint32_t read_turn_bytes;
  /* Sessions (logged-in devices) one uid may hold at once; a login on a
   * further device is refused with MIM_ERR_TOO_MANY_DEVICES, a login on a
   * device that is already logged in replaces it as always. A device holds
   * at most one connection, so this also bounds a user's connections.
   * 0 = no limit (default 16). */
  uint32_t user_devices_max;
  /* Most members one request may name: GROUP_CREATE/ADD/REMOVE and an
   * operator's SERVER_PUSH list (default 1000). More: MIM_ERR_TOO_LARGE,
   * before anything is looked up. The size of a group itself is bounded by
   * the store (mim_lmdb_config.group_members_max, MIM_ERR_GROUP_FULL). */
  uint32_t group_request_members_max;
  /* Where this logic's log lines go: `log` (NULL: the process-wide handler
   * of mim_log_set_handler()) with `log_user`, for lines at `log_level` or
   * more severe (default MIM_LOG_INFO; used only with `log`). */
  mim_log_fn log;
  void *log_user;
  enum mim_log_level log_level;
  /* Most entries of one conversation list page (cmd 30) and of one page
   * of readers (cmd 36); a request asking more gets this many, one asking
   * 0 or less gets it too (default 100; 0 = the default). Pages are also
   * bounded by reply_bytes_max. */
  uint32_t conv_page_max;
  /* Bytes of a conversation's newest message shown as its preview in the
   * list, cut at a UTF-8 boundary (default 256; 0 = the default). */
  uint32_t conv_preview_max;
  /* Recall and edit (docs/protocol.md §19): how long after sending the
   * sender may recall (default 300 s) or edit (default 86,400 s) their
   * message; 0 = never. Group owners and admins recall at any time;
   * operators recall and edit at any time. */
  uint32_t recall_window_s;
  uint32_t edit_window_s;
  /* Typing (cmd 48, docs/protocol.md §20): per connection, at most
   * `typing_rate_per_s` indicators a second with bursts of `typing_burst`
   * (defaults 2 and 5; 0 = the default); more are dropped silently and
   * counted (typing_dropped). In groups of more than `typing_group_max`
   * members (default 500) typing is not relayed at all. */
  uint32_t typing_rate_per_s;
  uint32_t typing_burst;
  uint32_t typing_group_max;
  /* Presence (cmds 50-52, §21): most uids one PresenceRequest may name
   * (default 100; more: TOO_LARGE) and most uids one connection may be
   * subscribed to (default 1000; uids past it are answered but not
   * subscribed). */
  uint32_t presence_query_max;
  uint32_t presence_subscribe_max;
};

/* Encoded bytes of a pull/history reply beyond its entries, and of one
 * entry beyond its strings, content and payload (tags, lengths, numbers):
 * upper bounds the reply byte cap is computed with. */
#define MIM_REPLY_OVERHEAD 256
#define MIM_REPLY_ENTRY_OVERHEAD 128
#define MIM_REPLY_BYTES_DEFAULT (512u * 1024)

/* The smallest reply_bytes_max that holds one entry with `content_max`
 * bytes of content + payload and the longest ids. */
MIM_API size_t mim_logic_reply_bytes_min(uint32_t content_max);

/* Fills `cfg` with the defaults above, no backend and no secret. */
MIM_API void mim_logic_config_init(struct mim_logic_config *cfg);

struct mim_logic;

/* Errors: -EINVAL no backend, or no secret (>= MIM_SECRET_MIN bytes) without
 * dev_auth, or reply_bytes_max below mim_logic_reply_bytes_min(content_max),
 * or cfg->size not set by mim_logic_config_init() (too small to hold
 * `backend`, or larger than this library's struct); -ENOMEM. `cfg` is borrowed for the call. */
MIM_API int mim_logic_create(struct mim_logic **out,
                             const struct mim_logic_config *cfg);

/* Frees the logic, a taken batch excluded (the caller owns it). NULL is a
 * no-op. */
MIM_API void mim_logic_destroy(struct mim_logic *l);

/* ---- events in ---- */

/* A gateway link is up; `gateway` is the daemon's handle for it (unique
 * among live links) and `id` its name (the HELLO gateway_id: stable across
 * reconnects, copied), which the session tickets granted on it are bound
 * to. Errors: -EEXIST already up; -EINVAL `id` not a valid id; -ENOMEM. */
MIM_API int mim_logic_gateway_up(struct mim_logic *l, uint32_t gateway,
                                 const char *id);

/* The daemon's link to `gateway` is congested (its output queue is above
 * a high-water mark: `paused` true) or has drained again (false). While a
 * gateway is paused, no queued read (pull, history, group list) of its
 * connections runs: they wait, in order, and everything else (writes, acks,
 * pushes, other replies) goes on. Errors: -ENOENT unknown gateway. */
MIM_API int mim_logic_gateway_pause(struct mim_logic *l, uint32_t gateway,
                                    bool paused);

/* A gateway link went down: every connection and route of it is dropped.
 * Errors: -ENOENT unknown gateway. */
MIM_API int mim_logic_gateway_down(struct mim_logic *l, uint32_t gateway);

/* A gateway re-registers a session it kept while the logic was away
 * (RpcSessions), presenting the ticket (`ticket_len` bytes, borrowed) that
 * a logic with the same ticket key granted for exactly this gateway id,
 * conn_id, uid, device and caps. Only then does the connection count as
 * authenticated as (uid, device), until the token expiry the ticket
 * carries. A newer login of the same (uid, device) already present wins
 * and the restored one is kicked (OTHER_LOGIN, returns 0). A connection
 * the logic already knows is left alone: -EEXIST. A ticket that does not
 * verify or whose token has expired restores nothing and the connection is
 * kicked (TOKEN_EXPIRED) so that its client logs in again. Errors: -ENOENT
 * unknown gateway; -EEXIST the connection is known (a second restore, or
 * it sent requests); -EINVAL bad ids; -MIM_ERR_TOKEN_INVALID;
 * -MIM_ERR_TOKEN_EXPIRED; -ENOMEM. */
MIM_API int mim_logic_session_restore(struct mim_logic *l,
                                      struct mim_conn_ref conn,
                                      const char *uid, const char *device,
                                      uint32_t caps, const uint8_t *ticket,
                                      size_t ticket_len);

/* One client packet (command `cmd`, protobuf `body` of `len` bytes, borrowed
 * for the call) arrived on `conn`. Anything wrong with the packet is answered
 * with an Error effect to `conn`, not with a return value. Errors: -ENOENT
 * unknown gateway; -ENOMEM (the request was dropped; the client times out). */
MIM_API int mim_logic_receive(struct mim_logic *l, struct mim_conn_ref conn,
                              uint32_t cmd, const uint8_t *body, size_t len);

/* The connection closed: its route (if it still owns one) is removed, its
 * queued replies dropped; writes it started still commit. An unknown
 * connection is nothing to do. Always returns 0. */
MIM_API int mim_logic_conn_closed(struct mim_logic *l,
                                  struct mim_conn_ref conn);

/* An operator request (mimctl, HTTP admin API): a client-protocol packet
 * executed with admin rights: GROUP_* requests, SERVER_PUSH (to `to` or the
 * `members` list), HISTORY, PULL of `uid`, C2C_SEND_REQ / C2G_SEND_REQ
 * on behalf of the user named in `from` (the checks, the dedup of
 * (from, client_msg_id) and the membership check of the user's own send;
 * no per-connection rate limit), and the group role commands
 * GROUP_MANAGE_REQ (answered GROUP_MANAGE_RSP once durable) and
 * GROUP_INFO_REQ (GROUP_INFO_RSP) with the "operator" rights of the rules
 * table (mim_group_rule_check(), docs/protocol.md §17), CONV_LIST_REQ of
 * `uid` (that user's conversations with their unread counts) and
 * READ_BY_REQ of any group (docs/protocol.md §18). The reply comes back as a
 * MIM_EFFECT_ADMIN_REPLY with `req_id`; a request that fails is answered
 * with an Error packet there. Errors: -ENOMEM when not even that reply
 * could be queued (the operator gets no reply for `req_id`). */
MIM_API int mim_logic_admin(struct mim_logic *l, uint64_t req_id, uint32_t cmd,
                            const uint8_t *body, size_t len);

/* Kicks every connection of `uid` (Kick reason MIM_KICK_ADMIN): each gets
 * a KICK effect and is no longer authenticated at once, so that it counts
 * as offline in mim_logic_sessions() before its gateway closes it. `uid`
 * is borrowed; `*kicked` (may be NULL) is how many connections were
 * kicked. Errors: -MIM_ERR_MALFORMED `uid` is not a valid id; -ENOMEM
 * (connections already kicked stay kicked, `*kicked` is not set). */
MIM_API int mim_logic_kick_user(struct mim_logic *l, const char *uid,
                                size_t *kicked);

/* Lets time-based work happen: starts a new turn of reads (see
 * read_turn_bytes) and kicks (TOKEN_EXPIRED) the sessions whose login token
 * has expired. Call at least every second, or at mim_logic_next_timeout();
 * early calls find nothing to do. */
MIM_API void mim_logic_tick(struct mim_logic *l);

/* Milliseconds until mim_logic_tick() has work (a token expires), or -1 for
 * none; 0 when it is due now, or when reads wait for a new turn (tick once
 * the loop has served other work). */
MIM_API int64_t mim_logic_next_timeout(const struct mim_logic *l);

/* ---- store writes ---- */

/* Takes the next batch of writes to commit. Ownership passes to the caller,
 * who commits it (mim_backend_commit(), on any thread) and hands it back with
 * mim_logic_batch_done(). At most one batch is out at a time: while one is,
 * writes gather for the next (group commit). Errors: -EAGAIN nothing to
 * write, or a batch is already out. */
MIM_API int mim_logic_take_batch(struct mim_logic *l,
                                 struct mim_write_batch **out);

/* Returns a committed batch (ownership passes back) and turns its outcomes
 * into effects: replies, pushes, errors. Errors: -EINVAL not the batch that
 * was taken. */
MIM_API int mim_logic_batch_done(struct mim_logic *l,
                                 struct mim_write_batch *b);

/* Commits every pending write on the calling thread, through the backend,
 * until none is left. For tests and single-threaded embedders.
 * Returns 0 or the last failed batch status (whose errors went out as
 * effects). */
MIM_API int mim_logic_flush(struct mim_logic *l);

/* Whether writes are waiting for mim_logic_take_batch(). */
MIM_API bool mim_logic_has_writes(const struct mim_logic *l);

/* ---- effects out ---- */

enum mim_effect_kind {
  /* Send one client packet (cmd + body) to each target connection of one
   * gateway; when seq_field and a target's inbox_seq are non-zero, append
   * that varint field (mim_frame_encode_with_field()). Maps 1:1 onto
   * RpcDeliver. */
  MIM_EFFECT_DELIVER = 1,
  /* Send the connection a Kick packet (cmd 16 body in `body`) and close it. */
  MIM_EFFECT_KICK = 2,
  /* Reply to an admin request `req_id` (cmd + body). */
  MIM_EFFECT_ADMIN_REPLY = 3,
  /* Tell the gateway who connection `conn_id` is now: authenticated as
   * (uid, device) with `caps`, and the session ticket it presents in
   * RpcSessions after a restart of the logic; uid "" = no longer
   * authenticated (logout). Maps 1:1 onto RpcSession (MIM_RPC_SESSION).
   * Follows the AuthResponse (LogoutResponse) DELIVER of that connection,
   * so the gateway knows the session from the moment the client does. */
  MIM_EFFECT_SESSION = 4,
};

/* An effect. Everything it points to is owned by the logic and valid until
 * the next mim_logic_next_effect() or mim_logic_destroy(). */
struct mim_effect {
  enum mim_effect_kind kind;
  uint32_t gateway;                     /* DELIVER, KICK */
  uint32_t cmd;                         /* client command of `body` */
  const uint8_t *body;
  size_t body_len;
  uint32_t seq_field;                   /* DELIVER */
  const struct mim_rpc_target *targets; /* DELIVER */
  size_t n_targets;
  uint64_t conn_id;                     /* KICK, SESSION */
  int32_t reason;                       /* KICK: enum mim_kick_reason */
  uint64_t req_id;                      /* ADMIN_REPLY */
  const char *uid;                      /* SESSION ("" = unbound) */
  const char *device;                   /* SESSION */
  uint32_t caps;                        /* SESSION */
  const uint8_t *ticket;                /* SESSION (ticket_len bytes) */
  size_t ticket_len;
  /* ADMIN_REPLY to a SERVER_PUSH or a send on a user's behalf that was
   * stored: every inbox the message went to, with its seq there (what an
   * operator needs to know where each recipient holds it; the reply body
   * carries only the msg_id). NULL / 0 otherwise. */
  const struct mim_recipient *recipients;
  size_t n_recipients;
};

/* Pops the next effect into `out`. Queued reads (pull, history, group list)
 * run here, once no other effect is queued: one per connection in turn,
 * round robin over gateways, within the turn's read_turn_bytes and not for
 * a paused gateway. Errors: -EAGAIN none queued (reads may still wait for
 * a new turn or an unpaused gateway). */
MIM_API int mim_logic_next_effect(struct mim_logic *l, struct mim_effect *out);

/* ---- events for the application (webhooks, mobile push) ---- */

enum mim_event_kind {
  /* A message was stored (one-to-one, group or server push). Never sent
   * for a retried send that joined an earlier one (dedup). */
  MIM_EVENT_MESSAGE_CREATED = 1,
  /* A user's first logged-in device came online (login or restored
   * session): before it the user had no session on this logic. */
  MIM_EVENT_USER_ONLINE = 2,
  /* A user's last session ended (logout, kick, close, gateway down). */
  MIM_EVENT_USER_OFFLINE = 3,
  /* A group was created, or members were added or removed (a dissolve:
   * MIM_GROUP_MEMBERS_REMOVED with every member). Role, mute and info
   * changes raise no event; their notices reach the members. */
  MIM_EVENT_GROUP_CHANGED = 4,
};

enum mim_group_change {
  MIM_GROUP_CREATED = 1,
  MIM_GROUP_MEMBERS_ADDED = 2,
  MIM_GROUP_MEMBERS_REMOVED = 3,
};

/* One event. Every pointer is borrowed for the callback only; strings are
 * never NULL ("" when absent); fields not listed for a kind are zero. */
struct mim_event {
  enum mim_event_kind kind;
  int64_t time_ms;            /* the logic's clock: the stored time for
                                 messages and group changes */
  /* MESSAGE_CREATED */
  uint64_t msg_id;
  uint32_t msg_type;          /* enum mim_msg_type */
  uint32_t conv_kind;         /* enum mim_conv_kind */
  const char *from;           /* sender uid; "" for a server push */
  const char *from_device;
  const char *to;             /* C2C: the receiver */
  const char *client_msg_id;
  const uint8_t *content;     /* content_len bytes */
  size_t content_len;
  const uint8_t *payload;     /* server push payload, payload_len bytes */
  size_t payload_len;
  /* Every inbox the message was appended to, the sender's own excluded,
   * with the inbox seq it got there. */
  const struct mim_recipient *recipients;
  size_t n_recipients;
  /* The recipients that had no logged-in device on this logic when the
   * message committed: who a mobile-push service should notify. */
  const char *const *offline;
  size_t n_offline;
  /* MESSAGE_CREATED (group messages) and GROUP_CHANGED */
  const char *group;
  /* USER_ONLINE / USER_OFFLINE: the user and the device that came first
   * or left last */
  const char *uid;
  const char *device;
  /* GROUP_CHANGED: what changed and the members actually added or removed
   * (created: all of them) */
  enum mim_group_change change;
  const char *const *members;
  size_t n_members;
  /* MESSAGE_CREATED: a large group's message (read diffusion,
   * docs/protocol.md §22): it is in no inbox, so recipients and offline
   * are empty; whom to notify is the application's to decide from the
   * group's members. */
  bool large;
};

/* Called for each event, with `user` and the event (borrowed for the
 * call). */
typedef void (*mim_logic_event_fn)(void *user, const struct mim_event *ev);

/* Sets the event callback (NULL: none, the default). It runs on the
 * logic's thread, inside the call that caused the event: message and group
 * events inside mim_logic_batch_done() (or mim_logic_flush()), so never
 * before the commit that made them durable, and in commit order; online
 * and offline inside mim_logic_receive(), _session_restore(),
 * _conn_closed(), _gateway_down() and _tick(). It must not call into the
 * logic, and should only copy what it needs and return: the logic waits
 * for it. The library does no I/O for events: delivering them (webhooks)
 * is the caller's. An event the logic cannot build for lack of memory is
 * skipped and logged. */
MIM_API void mim_logic_set_event_cb(struct mim_logic *l, mim_logic_event_fn fn,
                                    void *user);

/* ---- inspection ---- */

/* Slots of the per-code arrays of struct mim_logic_stats: index = wire
 * code (enum mim_err value, AuthResponse.status) - MIM_ERR__FIRST. */
#define MIM_STATS_ERR_CODES 64
/* Slots of kicks_by_reason: index = enum mim_kick_reason. */
#define MIM_STATS_KICK_REASONS 16

/* What the logic has done since mim_logic_create(), for monitoring. The
 * counters only grow (a daemon exports them as Prometheus counters, an
 * embedder however it likes); the fields marked "now" are the state at
 * the call. The library keeps no time series and knows no exporter. */
struct mim_logic_stats {
  /* sizeof(struct mim_logic_stats) as the caller was built with: set it
   * before the call. Fields are only ever added at the end, and a caller
   * built with a smaller struct gets the fields it knows. */
  size_t size;
  /* messages committed (duplicates of a client_msg_id not counted), by
   * conversation kind: one-to-one, group, server push */
  uint64_t messages_c2c, messages_group, messages_push;
  uint64_t inbox_appends;   /* inbox entries those messages made */
  uint64_t deliveries;      /* pushes of committed messages handed to
                               connections: one per target connection */
  uint64_t logins_ok;       /* AuthResponses with status 0 */
  uint64_t logins_failed;   /* AuthResponses with an error, all codes */
  /* the failed logins by AuthResponse.status (codes outside the array
   * are in logins_failed only) */
  uint64_t logins_failed_by_code[MIM_STATS_ERR_CODES];
  uint64_t errors;          /* Error packets (to clients and operators) */
  uint64_t errors_by_code[MIM_STATS_ERR_CODES]; /* by Error.code */
  uint64_t kicks_by_reason[MIM_STATS_KICK_REASONS]; /* reasons >= the
                               array are not counted */
  uint64_t batches;         /* write batches returned (batch_done) */
  uint64_t batches_failed;  /* of those, whose commit failed as a whole */
  uint64_t batch_ops;       /* store operations in the batches returned */
  /* now */
  uint64_t connections;     /* connections the logic holds state for */
  uint64_t sessions;        /* authenticated (uid, device) routes */
  uint64_t gateways;        /* gateway links up */
  uint64_t writes_gathering; /* operations in the batch gathering for the
                                next commit */
  uint64_t writes_parked;   /* client writes waiting for room in a batch */
  bool batch_out;           /* a batch is being committed */
  uint64_t typing_relayed;  /* typing indicators relayed (cmd 48 accepted) */
  uint64_t typing_dropped;  /* dropped: over the rate, a stranger, a
                               non-member, a group over typing_group_max */
  uint64_t presence_pushes; /* Presence pushes (cmd 52) handed to
                               connections */
};

/* Fills `out` (caller-owned; out->size set by the caller) with the stats
 * of `l`. Call on the thread that owns the logic. Errors: -EINVAL out is
 * NULL or out->size is 0 or larger than this library's struct. */
MIM_API int mim_logic_stats(const struct mim_logic *l,
                            struct mim_logic_stats *out);

/* The route table the logic keeps (borrowed; read-only). */
MIM_API const struct mim_sessions *mim_logic_sessions(const struct mim_logic *l);

/* When the last device of `uid` (borrowed) went away, ms since the epoch;
 * 0 = unknown (never seen leave, or online since before this store kept
 * it). Remembered since this logic started, else read from the store (one
 * key lookup). Whether the user is online now is the route table's:
 * mim_sessions_foreach_device() > 0. Call on the thread that owns the
 * logic. Returns 0 for a NULL argument. */
MIM_API int64_t mim_logic_last_seen(const struct mim_logic *l,
                                    const char *uid);

#ifdef __cplusplus
}
#endif

#endif /* MIM_LOGIC_H */
