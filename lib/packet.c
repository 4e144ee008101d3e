/* struct mim_packet / struct mim_rpc <-> protobuf wire format.
 *
 * Table-driven: each protobuf message has a list of rows, one per field,
 * naming the protobuf field and the member of the flat struct it maps onto.
 * Generic walkers use the protobuf-c descriptors to find each field:
 * wire_size()/wire_write() encode a flat struct straight to the wire and
 * wire_need()/wire_fill() decode into one; build() + pack and unpack +
 * fill() go through protobuf-c instead and are the references the tests
 * and fuzzers compare them with.
 *
 * Why tables: the same dozen scalar conversions (proto3-style omission of
 * zero values, msg_id range checks, repeated fields) would otherwise be
 * written out once per message and direction, ~50 times, and the copies
 * drift. A row's member type is checked at compile time (OFF below) and
 * mim__codec_check_tables() checks at test time that every row names a field
 * of the right protobuf type and that every protobuf field has a row, so a
 * field added to a .proto without a mapping fails the unit tests.
 */
#include "codec_internal.h"
#include "internal.h"
#include "varint.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include <mim/codec.h>

#include "client.pb-c.h"
#include "rpc.pb-c.h"

/* How a protobuf field converts to a flat-struct member. */
enum kind {
  K_IGNORE,  /* protobuf field with no flat member: read and dropped */
  K_STR,     /* string <-> const char * ("" when absent after decode) */
  K_I64,     /* int64 <-> int64_t */
  K_I32,     /* int32 <-> int32_t */
  K_U32,     /* uint32 <-> uint32_t */
  K_U64,     /* uint64 <-> uint64_t */
  K_BOOL,    /* bool <-> bool */
  K_MSG_ID,  /* int64 <-> uint64_t in 0..MIM_MSG_ID_MAX */
  K_OPT_U64, /* uint64 <-> uint64_t + bool presence member (aux) */
  K_BYTES,   /* bytes <-> const uint8_t * + size_t length member (aux) */
  K_STRS,    /* repeated string <-> const char *const * + size_t count */
  K_MSGS,    /* repeated message <-> array of flat structs + size_t count */
};

/* The C type of a kind's member (CTYPE_) and of its aux member (ATYPE_). */
#define CTYPE_STR const char *
#define CTYPE_I64 int64_t
#define CTYPE_I32 int32_t
#define CTYPE_U32 uint32_t
#define CTYPE_U64 uint64_t
#define CTYPE_BOOL bool
#define CTYPE_MSG_ID uint64_t
#define CTYPE_OPT_U64 uint64_t
#define CTYPE_BYTES const uint8_t *
#define CTYPE_STRS const char *const *
#define ATYPE_OPT_U64 bool
#define ATYPE_BYTES size_t
#define ATYPE_STRS size_t

struct msg_map;

struct row {
  const char *name; /* protobuf field name */
  enum kind kind;
  size_t off;       /* flat member */
  size_t aux;       /* K_OPT_U64, K_BYTES, K_STRS, K_MSGS: second member */
  const struct msg_map *sub; /* K_MSGS: how each element maps */
};

/* A row's field descriptor, looked up by name once and then kept: the
 * by-name search (a binary search of strcmps) would otherwise run on
 * every field of every encode and decode. Atomic (relaxed) because
 * several threads may share the codec; they all store the same pointer. */
typedef _Atomic(const ProtobufCFieldDescriptor *) field_cache;

/* What the wire codec needs of a row, resolved once for all maps (see
 * wire_index_all): its field number and the wire types protobuf-c accepts
 * for it (a bit per type). */
struct row_wire {
  uint32_t id;
  uint8_t wts;
};

/* Field numbers below this find their row by table; larger ones by search. */
#define ID_DIRECT 32

struct msg_map {
  const ProtobufCMessageDescriptor *desc; /* NULL: the body is empty */
  const struct row *rows;
  size_t n_rows;
  size_t flat_size; /* sizeof the flat struct: the stride of K_MSGS arrays */
  field_cache *fds; /* n_rows entries, filled on first use */
  struct row_wire *rw; /* n_rows entries, filled by wire_index_all() */
  uint8_t *by_id;      /* ID_DIRECT entries: row index + 1, or 0 */
};

/* offsetof(FLAT, m), which only compiles when member `m` has type `type`:
 * a row whose kind does not match its member is a build error, not a
 * silently corrupted field. FLAT is #defined before each group of tables. */
#define OFF(m, type) _Generic(((FLAT *)0)->m, type: offsetof(FLAT, m))

#define F(kind, name, m) {name, K_##kind, OFF(m, CTYPE_##kind), 0, NULL}
#define F2(kind, name, m, aux)                                                 \
  {name, K_##kind, OFF(m, CTYPE_##kind), OFF(aux, ATYPE_##kind), NULL}
#define MSGS(name, m, n, elem, submap)                                         \
  {name, K_MSGS, OFF(m, const elem *), OFF(n, size_t), submap}
#define IGNORE(name) {name, K_IGNORE, 0, 0, NULL}

/* The field cache is a file-scope compound literal: static and writable. */
#define MAP(pbname, rows, flat)                                                \
  {&mimpb__##pbname##__descriptor, rows, MIM_ARRAY_SIZE(rows), sizeof(flat), \
   (field_cache[MIM_ARRAY_SIZE(rows)]){NULL},                                  \
   (struct row_wire[MIM_ARRAY_SIZE(rows)]){{0, 0}}, (uint8_t[ID_DIRECT]){0}}

/* ---- client messages (client.proto) ---- */

#define FLAT struct mim_pull_item
static const struct row pull_msg_rows[] = {
  F(STR, "from", from),
  F(STR, "group", group),
  F(STR, "content", content),
  F(MSG_ID, "msg_id", msg_id),
  F(I64, "send_time", send_time),
  /* PullMsg.ts/seq carry nothing per message: the reply's own ts/seq
   * carry the request correlation. */
  IGNORE("ts"),
  IGNORE("seq"),
  F(U64, "inbox_seq", inbox_seq),
  F(STR, "to", to),
  F(U32, "type", type),
  F(STR, "client_msg_id", client_msg_id),
  F2(BYTES, "payload", payload, payload_len),
  F(U64, "conv_seq", conv_seq),
};
static const struct msg_map pull_msg_map =
  MAP(pull_msg, pull_msg_rows, struct mim_pull_item);
#undef FLAT

#define FLAT struct mim_packet
static const struct row auth_req_rows[] = {
  F(STR, "token", token),   F(STR, "uid", uid), F(I64, "ts", ts),
  F(I64, "seq", seq),       F(STR, "device", device),
  F(U32, "caps", caps),
};
static const struct row auth_rsp_rows[] = {
  F(I32, "status", status),
  F(STR, "msg", text),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F(U64, "last_inbox_seq", last_inbox_seq),
  F(U64, "ack_seq", ack_seq),
  F(U32, "caps", caps),
};
static const struct row logout_req_rows[] = {
  F(STR, "token", token), F(STR, "uid", uid), F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row logout_rsp_rows[] = {
  F(I64, "ts", ts), F(I64, "seq", seq),
};
static const struct row c2c_send_req_rows[] = {
  F(STR, "from", from), F(STR, "to", to),   F(STR, "content", content),
  F(I64, "ts", ts),     F(I64, "seq", seq), F(STR, "client_msg_id", client_msg_id),
  F(U32, "type", type),
};
/* C2C/C2G send responses and push acks share one layout. */
static const struct row msg_ack_rows[] = {
  F(MSG_ID, "msg_id", msg_id), F(I64, "ts", ts), F(I64, "seq", seq),
  F(U64, "inbox_seq", inbox_seq),
};
static const struct row c2c_push_rows[] = {
  F(STR, "from", from),
  F(STR, "to", to),
  F(STR, "content", content),
  F(MSG_ID, "msg_id", msg_id),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F(U32, "type", type),
  F(STR, "client_msg_id", client_msg_id),
  F(U64, "inbox_seq", inbox_seq),
};
static const struct row c2g_send_req_rows[] = {
  F(STR, "from", from), F(STR, "group", group), F(STR, "content", content),
  F(I64, "ts", ts),     F(I64, "seq", seq),     F(STR, "client_msg_id", client_msg_id),
  F(U32, "type", type),
};
static const struct row c2g_push_rows[] = {
  F(STR, "from", from),
  F(STR, "to", to),
  F(STR, "group", group),
  F(STR, "content", content),
  F(MSG_ID, "msg_id", msg_id),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F(U32, "type", type),
  F(STR, "client_msg_id", client_msg_id),
  F(U64, "inbox_seq", inbox_seq),
};
static const struct row pull_req_rows[] = {
  F(STR, "uid", uid),
  F(MSG_ID, "msg_id", msg_id),
  F(I32, "limit", limit),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  /* Presence matters: after_seq = 0 acknowledges nothing but still asks
   * for the whole inbox, which differs from the seed's cursor-based pull. */
  F2(OPT_U64, "after_seq", after_seq, has_after_seq),
};
static const struct row pull_rsp_rows[] = {
  MSGS("msg", items, n_items, struct mim_pull_item, &pull_msg_map),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F(BOOL, "has_more", has_more),
  F(U64, "last_inbox_seq", last_inbox_seq),
};
static const struct row kick_rows[] = {
  F(I32, "reason", reason), F(I64, "ts", ts), F(I64, "seq", seq),
  F(STR, "uid", uid),       F(STR, "msg", text),
};
static const struct row error_rows[] = {
  F(I32, "code", status),  F(STR, "msg", text),
  F(I64, "seq", seq),      F(U32, "cmd", failed_cmd),
  F(BOOL, "retryable", retryable),
  F(I64, "ts", ts),
};
/* GroupRequest and GroupResponse share one layout. */
static const struct row group_rows[] = {
  F(STR, "group", group),
  F2(STRS, "members", members, n_members),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row history_req_rows[] = {
  F(STR, "peer", peer),
  F(STR, "group", group),
  F(U64, "before_conv_seq", before_conv_seq),
  F(I32, "limit", limit),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F(STR, "uid", uid),
};
static const struct row history_rsp_rows[] = {
  MSGS("msg", items, n_items, struct mim_pull_item, &pull_msg_map),
  F(BOOL, "has_more", has_more),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row server_push_rows[] = {
  F(STR, "from", from),
  F(STR, "to", to),
  F(STR, "content", content),
  F2(BYTES, "payload", payload, payload_len),
  F(MSG_ID, "msg_id", msg_id),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F(U32, "type", type),
  F(U64, "inbox_seq", inbox_seq),
  F2(STRS, "members", members, n_members),
};

/* Strings that must not be NULL after a decode, used by the cmd or not. */
static const size_t packet_strings[] = {
  OFF(token, const char *),   OFF(uid, const char *),
  OFF(device, const char *),  OFF(from, const char *),
  OFF(to, const char *),      OFF(group, const char *),
  OFF(peer, const char *),    OFF(content, const char *),
  OFF(client_msg_id, const char *), OFF(text, const char *),
};
#undef FLAT

static const struct msg_map empty_map = {NULL, NULL, 0, sizeof(struct mim_packet),
                                         NULL, NULL, NULL};
static const struct msg_map auth_req_map =
  MAP(auth_request, auth_req_rows, struct mim_packet);
static const struct msg_map auth_rsp_map =
  MAP(auth_response, auth_rsp_rows, struct mim_packet);
static const struct msg_map logout_req_map =
  MAP(logout_request, logout_req_rows, struct mim_packet);
static const struct msg_map logout_rsp_map =
  MAP(logout_response, logout_rsp_rows, struct mim_packet);
static const struct msg_map c2c_send_req_map =
  MAP(c2_csend_request, c2c_send_req_rows, struct mim_packet);
static const struct msg_map c2c_send_rsp_map =
  MAP(c2_csend_response, msg_ack_rows, struct mim_packet);
static const struct msg_map c2c_push_map =
  MAP(c2_cpush_request, c2c_push_rows, struct mim_packet);
static const struct msg_map c2c_push_ack_map =
  MAP(c2_cpush_response, msg_ack_rows, struct mim_packet);
static const struct msg_map c2g_send_req_map =
  MAP(c2_gsend_request, c2g_send_req_rows, struct mim_packet);
static const struct msg_map c2g_send_rsp_map =
  MAP(c2_gsend_response, msg_ack_rows, struct mim_packet);
static const struct msg_map c2g_push_map =
  MAP(c2_gpush_request, c2g_push_rows, struct mim_packet);
static const struct msg_map c2g_push_ack_map =
  MAP(c2_gpush_response, msg_ack_rows, struct mim_packet);
static const struct msg_map pull_req_map =
  MAP(c2_spull_message_request, pull_req_rows, struct mim_packet);
static const struct msg_map pull_rsp_map =
  MAP(c2_spull_message_response, pull_rsp_rows, struct mim_packet);
static const struct msg_map kick_map = MAP(kick, kick_rows, struct mim_packet);
static const struct msg_map error_map =
  MAP(error, error_rows, struct mim_packet);
static const struct msg_map group_req_map =
  MAP(group_request, group_rows, struct mim_packet);
static const struct msg_map group_rsp_map =
  MAP(group_response, group_rows, struct mim_packet);
static const struct msg_map history_req_map =
  MAP(history_request, history_req_rows, struct mim_packet);
static const struct msg_map history_rsp_map =
  MAP(history_response, history_rsp_rows, struct mim_packet);
static const struct msg_map server_push_map =
  MAP(server_push, server_push_rows, struct mim_packet);

static const struct msg_map *const client_maps[MIM_CMD__COUNT] = {
  [MIM_CMD_HEARTBEAT_REQ] = &empty_map,
  [MIM_CMD_HEARTBEAT_RSP] = &empty_map,
  [MIM_CMD_AUTH_REQ] = &auth_req_map,
  [MIM_CMD_AUTH_RSP] = &auth_rsp_map,
  [MIM_CMD_LOGOUT_REQ] = &logout_req_map,
  [MIM_CMD_LOGOUT_RSP] = &logout_rsp_map,
  [MIM_CMD_C2C_SEND_REQ] = &c2c_send_req_map,
  [MIM_CMD_C2C_SEND_RSP] = &c2c_send_rsp_map,
  [MIM_CMD_C2C_PUSH] = &c2c_push_map,
  [MIM_CMD_C2C_PUSH_ACK] = &c2c_push_ack_map,
  [MIM_CMD_C2G_SEND_REQ] = &c2g_send_req_map,
  [MIM_CMD_C2G_SEND_RSP] = &c2g_send_rsp_map,
  [MIM_CMD_C2G_PUSH] = &c2g_push_map,
  [MIM_CMD_C2G_PUSH_ACK] = &c2g_push_ack_map,
  [MIM_CMD_PULL_REQ] = &pull_req_map,
  [MIM_CMD_PULL_RSP] = &pull_rsp_map,
  [MIM_CMD_KICK] = &kick_map,
  [MIM_CMD_ERROR] = &error_map,
  [MIM_CMD_GROUP_CREATE_REQ] = &group_req_map,
  [MIM_CMD_GROUP_CREATE_RSP] = &group_rsp_map,
  [MIM_CMD_GROUP_ADD_REQ] = &group_req_map,
  [MIM_CMD_GROUP_ADD_RSP] = &group_rsp_map,
  [MIM_CMD_GROUP_REMOVE_REQ] = &group_req_map,
  [MIM_CMD_GROUP_REMOVE_RSP] = &group_rsp_map,
  [MIM_CMD_GROUP_LIST_REQ] = &group_req_map,
  [MIM_CMD_GROUP_LIST_RSP] = &group_rsp_map,
  [MIM_CMD_HISTORY_REQ] = &history_req_map,
  [MIM_CMD_HISTORY_RSP] = &history_rsp_map,
  [MIM_CMD_SERVER_PUSH] = &server_push_map,
  /* The seed's push ack message serves server pushes too. */
  [MIM_CMD_SERVER_PUSH_ACK] = &c2c_push_ack_map,
};

/* ---- RPC messages (rpc.proto) ---- */

#define FLAT struct mim_rpc_target
static const struct row rpc_target_rows[] = {
  F(U64, "conn_id", conn_id), F(U64, "inbox_seq", inbox_seq),
};
static const struct msg_map rpc_target_map =
  MAP(rpc_target, rpc_target_rows, struct mim_rpc_target);
#undef FLAT

#define FLAT struct mim_rpc_session
static const struct row rpc_session_rows[] = {
  F(U64, "conn_id", conn_id), F(STR, "uid", uid), F(STR, "device", device),
  F(U32, "caps", caps), F2(BYTES, "ticket", ticket, ticket_len),
};
static const struct msg_map rpc_session_map =
  MAP(rpc_session, rpc_session_rows, struct mim_rpc_session);
#undef FLAT

#define FLAT struct mim_rpc
static const struct row rpc_hello_rows[] = {
  F(STR, "gateway_id", gateway_id), F(STR, "secret", secret),
  F(U32, "version", version),
};
static const struct row rpc_hello_ack_rows[] = {
  F(I32, "status", status), F(STR, "msg", text),
};
static const struct row rpc_request_rows[] = {
  F(U64, "conn_id", conn_id),
  F(U32, "cmd", inner_cmd),
  F2(BYTES, "body", body, body_len),
  F(U32, "version", version),
};
static const struct row rpc_deliver_rows[] = {
  MSGS("targets", targets, n_targets, struct mim_rpc_target, &rpc_target_map),
  F(U32, "cmd", inner_cmd),
  F2(BYTES, "body", body, body_len),
  F(U32, "seq_field", seq_field),
};
static const struct row rpc_kick_rows[] = {
  F(U64, "conn_id", conn_id), F(I32, "reason", reason), F(STR, "msg", text),
};
static const struct row rpc_conn_closed_rows[] = {
  F(U64, "conn_id", conn_id),
};
static const struct row rpc_sessions_rows[] = {
  MSGS("sessions", sessions, n_sessions, struct mim_rpc_session,
       &rpc_session_map),
};
static const struct row rpc_admin_rows[] = {
  F(U64, "req_id", req_id), F(U32, "cmd", inner_cmd),
  F2(BYTES, "body", body, body_len),
};
/* SESSION: one RpcSession, flattened into struct mim_rpc */
static const struct row rpc_session_one_rows[] = {
  F(U64, "conn_id", conn_id), F(STR, "uid", uid), F(STR, "device", device),
  F(U32, "caps", caps), F2(BYTES, "ticket", ticket, ticket_len),
};

static const struct row rpc_ping_rows[] = {
  F(U64, "nonce", req_id),
};

static const size_t rpc_strings[] = {
  OFF(gateway_id, const char *), OFF(secret, const char *),
  OFF(text, const char *), OFF(uid, const char *), OFF(device, const char *),
};
#undef FLAT

static const struct msg_map rpc_hello_map =
  MAP(rpc_hello, rpc_hello_rows, struct mim_rpc);
static const struct msg_map rpc_hello_ack_map =
  MAP(rpc_hello_ack, rpc_hello_ack_rows, struct mim_rpc);
static const struct msg_map rpc_request_map =
  MAP(rpc_request, rpc_request_rows, struct mim_rpc);
static const struct msg_map rpc_deliver_map =
  MAP(rpc_deliver, rpc_deliver_rows, struct mim_rpc);
static const struct msg_map rpc_kick_map =
  MAP(rpc_kick, rpc_kick_rows, struct mim_rpc);
static const struct msg_map rpc_conn_closed_map =
  MAP(rpc_conn_closed, rpc_conn_closed_rows, struct mim_rpc);
static const struct msg_map rpc_sessions_map =
  MAP(rpc_sessions, rpc_sessions_rows, struct mim_rpc);
static const struct msg_map rpc_admin_map =
  MAP(rpc_admin, rpc_admin_rows, struct mim_rpc);
static const struct msg_map rpc_ping_map =
  MAP(rpc_ping, rpc_ping_rows, struct mim_rpc);

static const struct msg_map rpc_session_one_map =
  MAP(rpc_session, rpc_session_one_rows, struct mim_rpc);

#define RPC_COUNT (MIM_RPC_SESSION - MIM_RPC_HELLO + 1)

static const struct msg_map *const rpc_maps[RPC_COUNT] = {
  [MIM_RPC_HELLO - MIM_RPC_HELLO] = &rpc_hello_map,
  [MIM_RPC_HELLO_ACK - MIM_RPC_HELLO] = &rpc_hello_ack_map,
  [MIM_RPC_REQUEST - MIM_RPC_HELLO] = &rpc_request_map,
  [MIM_RPC_DELIVER - MIM_RPC_HELLO] = &rpc_deliver_map,
  [MIM_RPC_KICK - MIM_RPC_HELLO] = &rpc_kick_map,
  [MIM_RPC_CONN_CLOSED - MIM_RPC_HELLO] = &rpc_conn_closed_map,
  [MIM_RPC_SESSIONS - MIM_RPC_HELLO] = &rpc_sessions_map,
  [MIM_RPC_ADMIN - MIM_RPC_HELLO] = &rpc_admin_map,
  [MIM_RPC_ADMIN_REPLY - MIM_RPC_HELLO] = &rpc_admin_map,
  [MIM_RPC_PING - MIM_RPC_HELLO] = &rpc_ping_map,
  [MIM_RPC_PONG - MIM_RPC_HELLO] = &rpc_ping_map,
  [MIM_RPC_SESSION - MIM_RPC_HELLO] = &rpc_session_one_map,
};

static const struct msg_map *client_map(uint32_t cmd) {
  return cmd < MIM_CMD__COUNT ? client_maps[cmd] : NULL;
}

static const struct msg_map *rpc_map(uint32_t cmd) {
  if (cmd < MIM_RPC_HELLO || cmd - MIM_RPC_HELLO >= RPC_COUNT)
    return NULL;
  return rpc_maps[cmd - MIM_RPC_HELLO];
}

/* ---- allocation ---- */

/* A list of blocks freed together: the protobuf-c message tree built for
 * one encode, or the flat arrays (items, targets, sessions) of one decode. */
struct arena {
  struct block *head;
};

struct block {
  struct block *next;
  max_align_t data[];
};

/* `n` * `size` zeroed bytes, or NULL on overflow or out of memory. */
static void *arena_alloc(struct arena *a, size_t n, size_t size) {
  struct block *b;

  if (size != 0 && n > (SIZE_MAX - sizeof(*b)) / size)
    return NULL;
  b = calloc(1, sizeof(*b) + n * size);
  if (b == NULL)
    return NULL;
  b->next = a->head;
  a->head = b;
  return b->data;
}

static void arena_free(struct arena *a) {
  while (a->head != NULL) {
    struct block *b = a->head;
    a->head = b->next;
    free(b);
  }
}

/* What a decoded packet's priv_ points at. */
struct decoded {
  ProtobufCMessage *msg; /* unpacked with malloc; the flat strings point here */
  struct arena arena;
};

static void decoded_free(struct decoded *dec) {
  if (dec == NULL)
    return;
  arena_free(&dec->arena);
  if (dec->msg != NULL)
    protobuf_c_message_free_unpacked(dec->msg, NULL);
  free(dec);
}

/* protobuf-c reports a failed allocation and a malformed body alike (NULL),
 * so the allocator notes which one happened. It is plain malloc/free, which
 * lets protobuf_c_message_free_unpacked() use the default allocator later. */
static void *pb_alloc(void *data, size_t size) {
  void *p = malloc(size != 0 ? size : 1);

  if (p == NULL)
    *(bool *)data = true;
  return p;
}

static void pb_free(void *data, void *p) {
  (void)data;
  free(p);
}

/* ---- generic field access ---- */

#define AT(base, off) ((char *)(base) + (off))
#define CAT(base, off) ((const char *)(base) + (off))

/* protobuf-c's message structs use `char *` and `uint8_t *` so that unpack
 * can fill them; pack only reads, so handing it our const data is safe. */
static void *unconst(const void *p) { return (void *)(uintptr_t)p; }

static const ProtobufCFieldDescriptor *field_of(const struct msg_map *map,
                                                const struct row *row) {
  field_cache *slot = &map->fds[row - map->rows];
  const ProtobufCFieldDescriptor *fd =
      atomic_load_explicit(slot, memory_order_relaxed);
  if (fd == NULL) {
    fd = protobuf_c_message_descriptor_get_field_by_name(map->desc, row->name);
    atomic_store_explicit(slot, fd, memory_order_relaxed);
  }
  return fd;
}

/* Marks an optional scalar or bytes field present. */
static void set_has(ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd) {
  *(protobuf_c_boolean *)AT(m, fd->quantifier_offset) = 1;
}

static bool get_has(const ProtobufCMessage *m,
                    const ProtobufCFieldDescriptor *fd) {
  return *(const protobuf_c_boolean *)CAT(m, fd->quantifier_offset) != 0;
}

static int build(const struct msg_map *map, const void *flat, struct arena *a,
                 ProtobufCMessage **out);

/* Copies one flat member into `m`, leaving zero values out (proto3). */
static int build_field(const struct row *row,
                       const ProtobufCFieldDescriptor *fd, const void *flat,
                       ProtobufCMessage *m, struct arena *a) {
  void *dst = AT(m, fd->offset);
  const char *src = CAT(flat, row->off);

  switch (row->kind) {
  case K_IGNORE:
    break;
  case K_STR: {
    const char *s = *(const char *const *)src;
    char *w = unconst(s);
    if (s != NULL && s[0] != '\0')
      memcpy(dst, &w, sizeof(w));
    break;
  }
  case K_I64: {
    int64_t v = *(const int64_t *)src;
    if (v != 0) {
      *(int64_t *)dst = v;
      set_has(m, fd);
    }
    break;
  }
  case K_I32: {
    int32_t v = *(const int32_t *)src;
    if (v != 0) {
      *(int32_t *)dst = v;
      set_has(m, fd);
    }
    break;
  }
  case K_U32: {
    uint32_t v = *(const uint32_t *)src;
    if (v != 0) {
      *(uint32_t *)dst = v;
      set_has(m, fd);
    }
    break;
  }
  case K_U64: {
    uint64_t v = *(const uint64_t *)src;
    if (v != 0) {
      *(uint64_t *)dst = v;
      set_has(m, fd);
    }
    break;
  }
  case K_BOOL:
    if (*(const bool *)src) {
      *(protobuf_c_boolean *)dst = 1;
      set_has(m, fd);
    }
    break;
  case K_MSG_ID: {
    uint64_t v = *(const uint64_t *)src;
    /* A larger id would come back as an error (or, past 2^63, negative):
     * refuse to write what no reader accepts. */
    if (v > MIM_MSG_ID_MAX)
      return -EINVAL;
    if (v != 0) {
      *(int64_t *)dst = (int64_t)v;
      set_has(m, fd);
    }
    break;
  }
  case K_OPT_U64:
    if (*(const bool *)CAT(flat, row->aux)) {
      *(uint64_t *)dst = *(const uint64_t *)src;
      set_has(m, fd);
    }
    break;
  case K_BYTES: {
    const uint8_t *data = *(const uint8_t *const *)src;
    size_t len = *(const size_t *)CAT(flat, row->aux);
    ProtobufCBinaryData bd = {len, unconst(data)};
    if (len == 0)
      break;
    if (data == NULL)
      return -EINVAL;
    memcpy(dst, &bd, sizeof(bd));
    set_has(m, fd);
    break;
  }
  case K_STRS: {
    const char *const *v = *(const char *const *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux);
    char **arr;
    if (n == 0)
      break;
    if (v == NULL)
      return -EINVAL;
    /* A copy, because a NULL entry must go out as "" (protobuf-c would
     * strlen() it). */
    arr = arena_alloc(a, n, sizeof(*arr));
    if (arr == NULL)
      return -ENOMEM;
    for (size_t i = 0; i < n; i++)
      arr[i] = unconst(v[i] != NULL ? v[i] : "");
    *(size_t *)AT(m, fd->quantifier_offset) = n;
    memcpy(dst, &arr, sizeof(arr));
    break;
  }
  case K_MSGS: {
    const char *elems = *(const char *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux);
    ProtobufCMessage **arr;
    if (n == 0)
      break;
    if (elems == NULL)
      return -EINVAL;
    arr = arena_alloc(a, n, sizeof(*arr));
    if (arr == NULL)
      return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
      int r = build(row->sub, elems + i * row->sub->flat_size, a, &arr[i]);
      if (r < 0)
        return r;
    }
    *(size_t *)AT(m, fd->quantifier_offset) = n;
    memcpy(dst, &arr, sizeof(arr));
    break;
  }
  }
  return 0;
}

/* Builds the protobuf-c message of `map` from `flat`, allocated in `a`. */
static int build(const struct msg_map *map, const void *flat, struct arena *a,
                 ProtobufCMessage **out) {
  ProtobufCMessage *m = arena_alloc(a, 1, map->desc->sizeof_message);

  if (m == NULL)
    return -ENOMEM;
  protobuf_c_message_init(map->desc, m);
  for (size_t i = 0; i < map->n_rows; i++) {
    const ProtobufCFieldDescriptor *fd = field_of(map, &map->rows[i]);
    int r;

    if (fd == NULL)
      return -EINVAL; /* a table bug; mim__codec_check_tables() catches it */
    r = build_field(&map->rows[i], fd, flat, m, a);
    if (r < 0)
      return r;
  }
  *out = m;
  return 0;
}

static int fill(const struct msg_map *map, const ProtobufCMessage *m,
                void *flat, struct arena *a);

/* Copies one field of the unpacked `m` into `flat`, pointing into `m`. */
static int fill_field(const struct row *row,
                      const ProtobufCFieldDescriptor *fd,
                      const ProtobufCMessage *m, void *flat, struct arena *a) {
  const char *src = CAT(m, fd->offset);
  char *dst = AT(flat, row->off);

  /* Absent scalars need no has_ check: unpack leaves them at the
   * descriptor's default, 0 for every field we have. */
  switch (row->kind) {
  case K_IGNORE:
    break;
  case K_STR: {
    const char *s;
    memcpy(&s, src, sizeof(s));
    /* Absent strings decode as "", never NULL, so that readers can use any
     * string of a decoded packet without a NULL check. */
    *(const char **)dst = s != NULL ? s : "";
    break;
  }
  case K_I64:
    *(int64_t *)dst = *(const int64_t *)src;
    break;
  case K_I32:
    *(int32_t *)dst = *(const int32_t *)src;
    break;
  case K_U32:
    *(uint32_t *)dst = *(const uint32_t *)src;
    break;
  case K_U64:
    *(uint64_t *)dst = *(const uint64_t *)src;
    break;
  case K_BOOL:
    *(bool *)dst = *(const protobuf_c_boolean *)src != 0;
    break;
  case K_MSG_ID: {
    int64_t v = *(const int64_t *)src;
    if (v < 0 || (uint64_t)v > MIM_MSG_ID_MAX)
      return -MIM_ERR_MALFORMED;
    *(uint64_t *)dst = (uint64_t)v;
    break;
  }
  case K_OPT_U64: {
    bool has = get_has(m, fd);
    *(uint64_t *)dst = has ? *(const uint64_t *)src : 0;
    *(bool *)AT(flat, row->aux) = has;
    break;
  }
  case K_BYTES: {
    ProtobufCBinaryData bd;
    memcpy(&bd, src, sizeof(bd));
    if (!get_has(m, fd) || bd.len == 0)
      bd = (ProtobufCBinaryData){0, NULL};
    *(const uint8_t **)dst = bd.data;
    *(size_t *)AT(flat, row->aux) = bd.len;
    break;
  }
  case K_STRS: {
    size_t n = *(const size_t *)CAT(m, fd->quantifier_offset);
    const char *const *v;
    /* protobuf-c's char ** array serves as the const char *const * one. */
    memcpy(&v, src, sizeof(v));
    *(const char *const **)dst = n != 0 ? v : NULL;
    *(size_t *)AT(flat, row->aux) = n;
    break;
  }
  case K_MSGS: {
    size_t n = *(const size_t *)CAT(m, fd->quantifier_offset);
    const ProtobufCMessage *const *v;
    char *elems = NULL;
    memcpy(&v, src, sizeof(v));
    if (n != 0) {
      elems = arena_alloc(a, n, row->sub->flat_size);
      if (elems == NULL)
        return -ENOMEM;
      for (size_t i = 0; i < n; i++) {
        int r = fill(row->sub, v[i], elems + i * row->sub->flat_size, a);
        if (r < 0)
          return r;
      }
    }
    memcpy(dst, &elems, sizeof(elems));
    *(size_t *)AT(flat, row->aux) = n;
    break;
  }
  }
  return 0;
}

/* Fills `flat` from the unpacked `m`; arrays are allocated in `a`. */
static int fill(const struct msg_map *map, const ProtobufCMessage *m,
                void *flat, struct arena *a) {
  for (size_t i = 0; i < map->n_rows; i++) {
    const ProtobufCFieldDescriptor *fd = field_of(map, &map->rows[i]);
    int r;

    if (fd == NULL)
      return -EINVAL;
    r = fill_field(&map->rows[i], fd, m, flat, a);
    if (r < 0)
      return r;
  }
  return 0;
}

/* ---- encode / decode drivers shared by packets and RPCs ---- */

static bool string_has_nul(const struct msg_map *map, const uint8_t *body,
                           size_t len);

/* The protobuf-c path: unpack, then fill() from the unpacked message. Only
 * the tests use it, as the reference the direct decoder must match.
 * Unpacks `body` with `map` into `flat`; on success `*priv` owns what the
 * flat struct points into. On error nothing is left allocated. */
static int decode_reference(const struct msg_map *map, const uint8_t *body, size_t len,
                  void *flat, void **priv) {
  static const uint8_t none[1];
  ProtobufCAllocator allocator = {pb_alloc, pb_free, NULL};
  struct decoded *dec;
  bool oom = false;
  int r;

  /* An empty-body command ignores whatever body it came with: heartbeats
   * carry nothing a reader could act on. */
  if (map->desc == NULL)
    return 0;
  if (body == NULL && len != 0)
    return -EINVAL;
  dec = calloc(1, sizeof(*dec));
  if (dec == NULL)
    return -ENOMEM;
  allocator.allocator_data = &oom;
  dec->msg = protobuf_c_message_unpack(map->desc, &allocator, len,
                                       body != NULL ? body : none);
  if (dec->msg == NULL) {
    r = oom ? -ENOMEM : -MIM_ERR_MALFORMED;
    goto fail;
  }
  /* protobuf-c keeps a string's bytes up to its first NUL only, so the
   * rule the direct decoder applies (no NUL inside a string) is checked on
   * the body protobuf-c accepted */
  if (string_has_nul(map, body, len)) {
    r = -MIM_ERR_MALFORMED;
    goto fail;
  }
  r = fill(map, dec->msg, flat, &dec->arena);
  if (r < 0)
    goto fail;
  *priv = dec;
  return 0;

fail:
  decoded_free(dec);
  return r;
}

/* ---- direct wire decoding ----
 *
 * The decoder reads protobuf's wire format straight into the flat struct,
 * walking the rows: what protobuf-c's unpack + fill() give, field for field
 * (the fuzz targets compare the two on every input), with one allocation
 * for everything the packet owns instead of one per string and message.
 * Unknown fields are skipped; a repeated non-repeated field: the last one
 * wins; a known field with another wire type, a truncated or overlong
 * varint or length, a group: malformed. */

/* protobuf wire types */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

struct wfield {
  uint32_t id;
  unsigned wt;
  uint64_t v;          /* WT_VARINT */
  const uint8_t *data; /* WT_LEN: the value */
  size_t len;
  const uint8_t *raw;  /* the whole value as on the wire (length prefix */
  size_t raw_len;      /* included): what protobuf-c reads a bool from */
};

/* The next field at *p, or false when the bytes are malformed. Tags are
 * read as protobuf-c reads them: at most 5 bytes, 32 bits kept, and only a
 * zero first byte's field bits is an error. */
static bool next_field(const uint8_t **p, const uint8_t *end,
                       struct wfield *f) {
  uint64_t key, n;
  if (*p == end || (**p & 0xf8) == 0 || !mim__varint_get(p, end, 5, &key))
    return false;
  f->id = (uint32_t)(key >> 3);
  f->wt = (unsigned)(key & 7);
  f->raw = *p;
  switch (f->wt) {
  case WT_VARINT:
    if (!mim__varint_get(p, end, 10, &f->v))
      return false;
    break;
  case WT_I64:
  case WT_I32:
    n = f->wt == WT_I64 ? 8 : 4;
    if ((uint64_t)(end - *p) < n)
      return false;
    *p += n;
    break;
  case WT_LEN:
    if (!mim__varint_get(p, end, 5, &n) || n > INT_MAX || n > (uint64_t)(end - *p))
      return false;
    f->data = *p;
    f->len = (size_t)n;
    *p += n;
    break;
  default:
    return false; /* groups (3, 4) and wire types 6, 7 */
  }
  f->raw_len = (size_t)(*p - f->raw);
  return true;
}

/* The wire types protobuf-c accepts for field `fd`, a bit each: bools take
 * any (it reads any non-zero bit as true), the rest their own. */
static uint8_t wts_of(const ProtobufCFieldDescriptor *fd) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_BOOL:
    return 1u << WT_VARINT | 1u << WT_I64 | 1u << WT_LEN | 1u << WT_I32;
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_BYTES:
  case PROTOBUF_C_TYPE_MESSAGE:
    return 1u << WT_LEN;
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_FLOAT:
    return 1u << WT_I32;
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_DOUBLE:
    return 1u << WT_I64;
  default:
    return 1u << WT_VARINT;
  }
}

static bool raw_bool(const struct wfield *f) {
  for (size_t i = 0; i < f->raw_len; i++)
    if (f->raw[i] & 0x7f)
      return true;
  return false;
}

/* The index of the row of field `id`, or -1. */
static ptrdiff_t row_for(const struct msg_map *map, uint32_t id) {
  if (id < ID_DIRECT)
    return (ptrdiff_t)map->by_id[id] - 1;
  for (size_t i = 0; i < map->n_rows; i++)
    if (map->rw[i].id == id)
      return (ptrdiff_t)i;
  return -1;
}

/* Fills the row_wire and by_id tables of `map` and of its sub-maps. */
static void wire_index(const struct msg_map *map) {
  for (size_t i = 0; i < map->n_rows; i++) {
    const ProtobufCFieldDescriptor *fd = field_of(map, &map->rows[i]);
    if (fd == NULL)
      continue; /* a table bug: the row stays id 0, which encoding refuses */
    map->rw[i].id = fd->id;
    map->rw[i].wts = wts_of(fd);
    if (fd->id < ID_DIRECT)
      map->by_id[fd->id] = (uint8_t)(i + 1);
    if (map->rows[i].kind == K_MSGS)
      wire_index(map->rows[i].sub);
  }
}

static const struct msg_map *client_map(uint32_t cmd);
static const struct msg_map *rpc_map(uint32_t cmd);

static void wire_index_all(void) {
  for (uint32_t cmd = 0; cmd < MIM_CMD__COUNT; cmd++)
    if (client_map(cmd) != NULL)
      wire_index(client_map(cmd));
  for (uint32_t cmd = MIM_RPC_HELLO; rpc_map(cmd) != NULL; cmd++)
    wire_index(rpc_map(cmd));
}

/* The wire tables are built once, before the first encode or decode;
 * pthread_once makes them visible to every thread. */
static void wire_ready(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, wire_index_all);
}

#define ALIGN_UP(n) \
  (((n) + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1))

/* Validates a body and adds the bytes its decode needs to *need. */
static int wire_need(const struct msg_map *map, const uint8_t *p, size_t n,
                     size_t *need) {
  const uint8_t *end = p + n;
  while (p < end) {
    struct wfield f;
    if (!next_field(&p, end, &f))
      return -MIM_ERR_MALFORMED;
    ptrdiff_t i = row_for(map, f.id);
    if (i < 0)
      continue;
    const struct row *row = &map->rows[i];
    /* ignored fields are still fields protobuf-c checks */
    if (!(map->rw[i].wts >> f.wt & 1))
      return -MIM_ERR_MALFORMED;
    /* a NUL inside a string would silently cut it short for every C
     * reader ("alice\0x" read as "alice"): refused, not truncated */
    if ((row->kind == K_STR || row->kind == K_STRS) &&
        memchr(f.data, '\0', f.len) != NULL)
      return -MIM_ERR_MALFORMED;
    switch (row->kind) {
    case K_STR:
    case K_BYTES:
      *need += f.len + 1;
      break;
    /* an array's element, and room to align the array once more than
     * needed: strings between arrays leave them unaligned */
    case K_STRS:
      *need += sizeof(char *) + _Alignof(max_align_t) + f.len + 1;
      break;
    case K_MSGS: {
      *need += row->sub->flat_size + _Alignof(max_align_t);
      int r = wire_need(row->sub, f.data, f.len, need);
      if (r < 0)
        return r;
      break;
    }
    default:
      break;
    }
  }
  return 0;
}

/* Whether a string field of a body protobuf-c unpacked holds a NUL byte
 * (the reference decoder's copy of wire_need()'s rule; a walk of its own so
 * that the two are still compared). */
static bool string_has_nul(const struct msg_map *map, const uint8_t *body,
                           size_t len) {
  const uint8_t *p = body, *end = body + len;
  wire_ready();
  while (p < end) {
    struct wfield f;
    if (!next_field(&p, end, &f))
      return false; /* unpack accepted it: cannot happen */
    ptrdiff_t i = row_for(map, f.id);
    if (i < 0 || f.wt != WT_LEN)
      continue;
    const struct row *row = &map->rows[i];
    if ((row->kind == K_STR || row->kind == K_STRS) &&
        memchr(f.data, '\0', f.len) != NULL)
      return true;
    if (row->kind == K_MSGS && string_has_nul(row->sub, f.data, f.len))
      return true;
  }
  return false;
}

/* Bump allocation in the one block wire_need() measured. */
struct bump {
  char *p;
  size_t left;
};

/* `n` bytes of the block; NULL should wire_need() have measured short
 * (a bug: never written past the block). */
static void *bump_take(struct bump *b, size_t n, bool aligned) {
  size_t pad = aligned ? (size_t)(-(uintptr_t)b->p) &
                             (_Alignof(max_align_t) - 1)
                       : 0;
  if (pad > b->left || n > b->left - pad)
    return NULL;
  void *r = b->p + pad;
  b->p += pad + n;
  b->left -= pad + n;
  return r;
}

static char *bump_str(struct bump *b, const uint8_t *data, size_t len) {
  char *s = bump_take(b, len + 1, false);
  if (s == NULL)
    return NULL;
  if (len > 0)
    memcpy(s, data, len);
  s[len] = '\0';
  return s;
}

/* Fills `flat` from a body wire_need() accepted. */
static int wire_fill(const struct msg_map *map, const uint8_t *body, size_t n,
                     void *flat, struct bump *b) {
  const uint8_t *p, *end = body + n;
  /* repeated rows: count, then give each its array */
  size_t counts[32] = {0}; /* n_rows <= 32: mim__codec_check_tables() */
  bool repeated = false;
  for (size_t i = 0; i < map->n_rows; i++)
    repeated |= map->rows[i].kind == K_STRS || map->rows[i].kind == K_MSGS;
  if (repeated) {
    if (map->n_rows > 32)
      return -EINVAL;
    for (p = body; p < end;) {
      struct wfield f;
      (void)next_field(&p, end, &f);
      ptrdiff_t i = row_for(map, f.id);
      if (i >= 0 && (map->rows[i].kind == K_STRS || map->rows[i].kind == K_MSGS))
        counts[i]++;
    }
    for (size_t i = 0; i < map->n_rows; i++) {
      const struct row *row = &map->rows[i];
      if (counts[i] == 0 || (row->kind != K_STRS && row->kind != K_MSGS))
        continue;
      size_t elem = row->kind == K_STRS ? sizeof(char *) : row->sub->flat_size;
      /* wire_need() reserved an aligned slot per element: room enough */
      void *arr = bump_take(b, counts[i] * elem, true);
      if (arr == NULL)
        return -ENOMEM;
      memset(arr, 0, counts[i] * elem);
      memcpy(AT(flat, row->off), &arr, sizeof(arr));
      counts[i] = 0; /* now the fill index */
    }
  }
  for (p = body; p < end;) {
    struct wfield f;
    (void)next_field(&p, end, &f);
    ptrdiff_t ri = row_for(map, f.id);
    if (ri < 0)
      continue;
    const struct row *row = &map->rows[ri];
    char *dst = AT(flat, row->off);
    switch (row->kind) {
    case K_IGNORE:
      break;
    case K_STR:
      if ((*(const char **)dst = bump_str(b, f.data, f.len)) == NULL)
        return -ENOMEM;
      break;
    case K_I64:
      *(int64_t *)dst = (int64_t)f.v;
      break;
    case K_I32:
      *(int32_t *)dst = (int32_t)(uint32_t)f.v;
      break;
    case K_U32:
      *(uint32_t *)dst = (uint32_t)f.v;
      break;
    case K_U64:
    case K_MSG_ID:
      *(uint64_t *)dst = f.v;
      break;
    case K_BOOL:
      *(bool *)dst = raw_bool(&f);
      break;
    case K_OPT_U64:
      *(uint64_t *)dst = f.v;
      *(bool *)AT(flat, row->aux) = true;
      break;
    case K_BYTES: {
      const uint8_t *d = NULL;
      if (f.len > 0 && (d = (const uint8_t *)bump_str(b, f.data, f.len)) == NULL)
        return -ENOMEM;
      *(const uint8_t **)dst = d;
      *(size_t *)AT(flat, row->aux) = f.len;
      break;
    }
    case K_STRS: {
      size_t i = (size_t)(row - map->rows);
      char **arr;
      memcpy(&arr, dst, sizeof(arr));
      if ((arr[counts[i]++] = bump_str(b, f.data, f.len)) == NULL)
        return -ENOMEM;
      *(size_t *)AT(flat, row->aux) = counts[i];
      break;
    }
    case K_MSGS: {
      size_t i = (size_t)(row - map->rows);
      char *arr;
      memcpy(&arr, dst, sizeof(arr));
      void *e = arr + counts[i]++ * row->sub->flat_size;
      int r = wire_fill(row->sub, f.data, f.len, e, b);
      if (r < 0)
        return r;
      *(size_t *)AT(flat, row->aux) = counts[i];
      break;
    }
    }
  }
  /* what unpack + fill() would leave: "" for absent strings, and msg_ids
   * (the last of repeated ones) in range */
  for (size_t i = 0; i < map->n_rows; i++) {
    const struct row *row = &map->rows[i];
    char *dst = AT(flat, row->off);
    if (row->kind == K_STR && *(const char **)dst == NULL)
      *(const char **)dst = "";
    if (row->kind == K_MSG_ID && *(const uint64_t *)dst > MIM_MSG_ID_MAX)
      return -MIM_ERR_MALFORMED;
  }
  return 0;
}

/* Decodes `body` with `map` into `flat`; on success `*priv` owns what the
 * flat struct points into. On error nothing is left allocated. */
static int decode(const struct msg_map *map, const uint8_t *body, size_t len,
                  void *flat, void **priv) {
  /* An empty-body command ignores whatever body it came with: heartbeats
   * carry nothing a reader could act on. */
  if (map->desc == NULL)
    return 0;
  if (body == NULL && len != 0)
    return -EINVAL;
  wire_ready();
  size_t need = 0;
  int r = wire_need(map, body, len, &need);
  if (r < 0)
    return r;
  struct decoded *dec = calloc(1, sizeof(*dec));
  if (dec == NULL)
    return -ENOMEM;
  struct bump b = {NULL, 0};
  if (need > 0) {
    b.p = arena_alloc(&dec->arena, 1, need + _Alignof(max_align_t));
    if (b.p == NULL) {
      free(dec);
      return -ENOMEM;
    }
    b.left = need + _Alignof(max_align_t);
  }
  r = wire_fill(map, body, len, flat, &b);
  if (r < 0) {
    decoded_free(dec);
    return r;
  }
  *priv = dec;
  return 0;
}

/* ---- direct wire encoding ----
 *
 * The encoder writes protobuf's wire format straight from the flat struct,
 * walking the same rows: what build() + protobuf_c_message_pack() produce,
 * byte for byte (rows are in field-number order, which the table check
 * enforces; zero values are left out as build() does), without building a
 * protobuf-c message, allocating, or walking it twice more to size and
 * pack it: a pull reply of 500 messages is the hot path of an offline
 * sync (docs/benchmarks.md has the figures). mim__codec_encode_reference() keeps the
 * protobuf-c path so tests can compare the two on every command. */

static uint64_t tag_of(uint32_t id, unsigned wt) {
  return ((uint64_t)id << 3) | wt;
}

/* A scalar row's value as a varint, or false when it is left out. Signed
 * values go out as protobuf's int32/int64 do: sign-extended to 64 bits. */
static bool row_varint(const struct row *row, const void *flat,
                       uint64_t *v) {
  const char *src = CAT(flat, row->off);
  switch (row->kind) {
  case K_I64:
    *v = (uint64_t) * (const int64_t *)src;
    return *v != 0;
  case K_I32:
    *v = (uint64_t)(int64_t) * (const int32_t *)src;
    return *v != 0;
  case K_U32:
    *v = *(const uint32_t *)src;
    return *v != 0;
  case K_U64:
  case K_MSG_ID:
    *v = *(const uint64_t *)src;
    return *v != 0;
  case K_BOOL:
    *v = 1;
    return *(const bool *)src;
  case K_OPT_U64:
    *v = *(const uint64_t *)src;
    return *(const bool *)CAT(flat, row->aux);
  default:
    return false;
  }
}

static int wire_size(const struct msg_map *map, const void *flat,
                     size_t *out);

/* The bytes of one row on the wire (tags included). */
static int row_size(const struct msg_map *map, size_t i, const void *flat,
                    size_t *out) {
  const struct row *row = &map->rows[i];
  uint32_t id = map->rw[i].id;
  const char *src = CAT(flat, row->off);
  uint64_t v;

  *out = 0;
  if (id == 0)
    return -EINVAL; /* a table bug; mim__codec_check_tables() catches it */
  switch (row->kind) {
  case K_IGNORE:
    return 0;
  case K_STR: {
    const char *str = *(const char *const *)src;
    if (str != NULL && str[0] != '\0') {
      size_t n = strlen(str);
      *out = mim__varint_len(tag_of(id, WT_LEN)) + mim__varint_len(n) + n;
    }
    return 0;
  }
  case K_BYTES: {
    size_t n = *(const size_t *)CAT(flat, row->aux);
    if (n == 0)
      return 0;
    if (*(const uint8_t *const *)src == NULL)
      return -EINVAL;
    *out = mim__varint_len(tag_of(id, WT_LEN)) + mim__varint_len(n) + n;
    return 0;
  }
  case K_STRS: {
    const char *const *strs = *(const char *const *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux), total = 0;
    if (n > 0 && strs == NULL)
      return -EINVAL;
    for (size_t k = 0; k < n; k++) {
      size_t len = strs[k] != NULL ? strlen(strs[k]) : 0;
      total += mim__varint_len(tag_of(id, WT_LEN)) + mim__varint_len(len) + len;
    }
    *out = total;
    return 0;
  }
  case K_MSGS: {
    const char *elems = *(const char *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux), total = 0;
    if (n > 0 && elems == NULL)
      return -EINVAL;
    for (size_t k = 0; k < n; k++) {
      size_t len;
      int r = wire_size(row->sub, elems + k * row->sub->flat_size, &len);
      if (r < 0)
        return r;
      total += mim__varint_len(tag_of(id, WT_LEN)) + mim__varint_len(len) + len;
    }
    *out = total;
    return 0;
  }
  case K_MSG_ID:
    /* A larger id would come back as an error (or, past 2^63, negative):
     * refuse to write what no reader accepts. */
    if (*(const uint64_t *)src > MIM_MSG_ID_MAX)
      return -EINVAL;
    break;
  default:
    break;
  }
  if (row_varint(row, flat, &v))
    *out = mim__varint_len(tag_of(id, WT_VARINT)) + mim__varint_len(v);
  return 0;
}

static int wire_size(const struct msg_map *map, const void *flat,
                     size_t *out) {
  size_t total = 0;
  for (size_t i = 0; i < map->n_rows; i++) {
    size_t n;
    int r = row_size(map, i, flat, &n);
    if (r < 0)
      return r;
    total += n;
  }
  *out = total;
  return 0;
}

static uint8_t *put_len(uint8_t *p, uint32_t id, const void *data,
                        size_t n) {
  p = mim__varint_put(p, tag_of(id, WT_LEN));
  p = mim__varint_put(p, n);
  if (n > 0)
    memcpy(p, data, n);
  return p + n;
}

/* Room a length prefix may need: 5 varint bytes cover lengths < 2^35. */
#define LEN_ROOM 5

/* Writes what wire_size() measured (and so validated) of `flat`. With
 * `slack` (LEN_ROOM bytes to spare past the measured end), a sub-message
 * is written first and its length put before it, one memmove instead of
 * measuring it a second time. */
static uint8_t *wire_write(const struct msg_map *map, const void *flat,
                           uint8_t *p, bool slack) {
  for (size_t i = 0; i < map->n_rows; i++) {
    const struct row *row = &map->rows[i];
    uint32_t id = map->rw[i].id;
    const char *src = CAT(flat, row->off);
    uint64_t v;

    switch (row->kind) {
    case K_IGNORE:
      break;
    case K_STR: {
      const char *str = *(const char *const *)src;
      if (str != NULL && str[0] != '\0')
        p = put_len(p, id, str, strlen(str));
      break;
    }
    case K_BYTES: {
      size_t n = *(const size_t *)CAT(flat, row->aux);
      if (n > 0)
        p = put_len(p, id, *(const uint8_t *const *)src, n);
      break;
    }
    case K_STRS: {
      const char *const *strs = *(const char *const *const *)src;
      size_t n = *(const size_t *)CAT(flat, row->aux);
      for (size_t k = 0; k < n; k++)
        p = put_len(p, id, strs[k] != NULL ? strs[k] : "",
                    strs[k] != NULL ? strlen(strs[k]) : 0);
      break;
    }
    case K_MSGS: {
      const char *elems = *(const char *const *)src;
      size_t n = *(const size_t *)CAT(flat, row->aux);
      for (size_t k = 0; k < n; k++) {
        const void *e = elems + k * row->sub->flat_size;
        size_t len = 0;
        p = mim__varint_put(p, tag_of(id, WT_LEN));
        if (slack) {
          uint8_t *end = wire_write(row->sub, e, p + LEN_ROOM, true);
          len = (size_t)(end - (p + LEN_ROOM));
          uint8_t *at = mim__varint_put(p, len);
          memmove(at, p + LEN_ROOM, len);
          p = at + len;
        } else {
          (void)wire_size(row->sub, e, &len); /* validated by the caller */
          p = mim__varint_put(p, len);
          p = wire_write(row->sub, e, p, false);
        }
      }
      break;
    }
    default:
      if (row_varint(row, flat, &v)) {
        p = mim__varint_put(p, tag_of(id, WT_VARINT));
        p = mim__varint_put(p, v);
      }
      break;
    }
  }
  return p;
}

/* Encodes the body of `flat` into `buf`; `*len` is the body size, also on
 * -ENOBUFS. */
static int encode_body(const struct msg_map *map, const void *flat,
                       uint8_t *buf, size_t cap, size_t *len) {
  size_t n;
  int r;

  if (map->desc == NULL) {
    *len = 0;
    return 0;
  }
  wire_ready();
  r = wire_size(map, flat, &n);
  if (r < 0)
    return r;
  *len = n;
  if (n > cap)
    return -ENOBUFS;
  if (n > 0)
    wire_write(map, flat, buf, cap - n >= LEN_ROOM);
  return 0;
}

int mim__packet_encode_body_alloc(const struct mim_packet *p, uint8_t **body,
                                  size_t *len) {
  const struct msg_map *map = client_map(p->cmd);
  size_t n = 0;
  int r;

  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  wire_ready();
  if (map->desc != NULL && (r = wire_size(map, p, &n)) < 0)
    return r;
  *body = malloc(n + LEN_ROOM);
  if (*body == NULL)
    return -ENOMEM;
  if (n > 0)
    wire_write(map, p, *body, true);
  *len = n;
  return 0;
}

/* The protobuf-c path: build() then pack. Only the tests use it, as the
 * reference the direct encoder must match. */
static int encode_body_reference(const struct msg_map *map, const void *flat,
                                 uint8_t *buf, size_t cap, size_t *len) {
  struct arena a = {NULL};
  ProtobufCMessage *m;
  size_t n;
  int r;

  if (map->desc == NULL) {
    *len = 0;
    return 0;
  }
  r = build(map, flat, &a, &m);
  if (r < 0)
    goto out;
  n = protobuf_c_message_get_packed_size(m);
  *len = n;
  if (n > cap) {
    r = -ENOBUFS;
    goto out;
  }
  if (n > 0)
    protobuf_c_message_pack(m, buf);
out:
  arena_free(&a);
  return r;
}

int mim__codec_encode_reference(bool rpc, const void *flat, uint8_t *buf,
                                size_t cap, size_t *len) {
  const struct msg_map *map =
      rpc ? rpc_map(((const struct mim_rpc *)flat)->cmd)
          : client_map(((const struct mim_packet *)flat)->cmd);
  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  return encode_body_reference(map, flat, buf, cap, len);
}

/* Encodes header + body, the body built in place after the header. */
static int encode_frame(const struct msg_map *map, uint32_t cmd,
                        const void *flat, uint8_t *buf, size_t cap,
                        size_t *len) {
  bool room = buf != NULL && cap >= MIM_HEADER_SIZE;
  size_t body_len = 0;
  int r;

  r = encode_body(map, flat, room ? buf + MIM_HEADER_SIZE : NULL,
                  room ? cap - MIM_HEADER_SIZE : 0, &body_len);
  if (r == -ENOBUFS) {
    *len = MIM_HEADER_SIZE + body_len;
    return r;
  }
  if (r < 0)
    return r;
  /* The body is already at buf + 12; this writes the header (or reports
   * -ENOBUFS for a body-less frame that does not fit). */
  return mim_frame_encode(buf, cap, cmd, room ? buf + MIM_HEADER_SIZE : NULL,
                          body_len, len);
}

static void set_empty_strings(void *flat, const size_t *offs, size_t n) {
  for (size_t i = 0; i < n; i++)
    *(const char **)AT(flat, offs[i]) = "";
}

/* ---- client packets ---- */

void mim_packet_init(struct mim_packet *p) { *p = (struct mim_packet){0}; }

void mim_error_packet_init(struct mim_packet *p, int err, uint32_t failed_cmd,
                           int64_t seq) {
  mim_packet_init(p);
  p->cmd = MIM_CMD_ERROR;
  p->seq = seq;
  p->status = mim_err_wire_code(err);
  p->text = mim_strerror(err);
  p->failed_cmd = failed_cmd;
  p->retryable = mim_err_retryable(err);
}

void mim_packet_finish(struct mim_packet *p) {
  decoded_free(p->priv_);
  *p = (struct mim_packet){0};
}

/* decode() or decode_reference(). */
typedef int decoder_fn(const struct msg_map *map, const uint8_t *body,
                       size_t len, void *flat, void **priv);

static int packet_decode_with(decoder_fn *fn, struct mim_packet *p,
                              uint32_t cmd, const uint8_t *body, size_t len) {
  const struct msg_map *map = client_map(cmd);
  int r;

  mim_packet_finish(p);
  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  p->cmd = cmd;
  set_empty_strings(p, packet_strings, MIM_ARRAY_SIZE(packet_strings));
  r = fn(map, body, len, p, &p->priv_);
  if (r < 0)
    mim_packet_finish(p);
  return r;
}

int mim_packet_decode(struct mim_packet *p, uint32_t cmd, const uint8_t *body,
                      size_t len) {
  return packet_decode_with(decode, p, cmd, body, len);
}

int mim_packet_encode_body(const struct mim_packet *p, uint8_t *buf,
                           size_t cap, size_t *len) {
  const struct msg_map *map = client_map(p->cmd);

  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  return encode_body(map, p, buf, cap, len);
}

int mim_packet_encode(const struct mim_packet *p, uint8_t *buf, size_t cap,
                      size_t *len) {
  const struct msg_map *map = client_map(p->cmd);

  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  return encode_frame(map, p->cmd, p, buf, cap, len);
}

size_t mim_packet_encoded_size(const struct mim_packet *p) {
  size_t len = 0;

  /* Every frame is at least 12 bytes, so 0 unambiguously means "cannot be
   * encoded" (unknown cmd, invalid field, out of memory). */
  if (mim_packet_encode(p, NULL, 0, &len) != -ENOBUFS)
    return 0;
  return len;
}

/* ---- RPC ---- */

void mim_rpc_init(struct mim_rpc *r) { *r = (struct mim_rpc){0}; }

void mim_rpc_finish(struct mim_rpc *r) {
  decoded_free(r->priv_);
  *r = (struct mim_rpc){0};
}

static int rpc_decode_with(decoder_fn *fn, struct mim_rpc *r, uint32_t cmd,
                           const uint8_t *body, size_t len) {
  const struct msg_map *map = rpc_map(cmd);
  int err;

  mim_rpc_finish(r);
  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  r->cmd = cmd;
  set_empty_strings(r, rpc_strings, MIM_ARRAY_SIZE(rpc_strings));
  err = fn(map, body, len, r, &r->priv_);
  if (err < 0)
    mim_rpc_finish(r);
  return err;
}

int mim_rpc_decode(struct mim_rpc *r, uint32_t cmd, const uint8_t *body,
                   size_t len) {
  return rpc_decode_with(decode, r, cmd, body, len);
}

int mim_rpc_encode(const struct mim_rpc *r, uint8_t *buf, size_t cap,
                   size_t *len) {
  const struct msg_map *map = rpc_map(r->cmd);

  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  return encode_frame(map, r->cmd, r, buf, cap, len);
}

size_t mim_rpc_encoded_size(const struct mim_rpc *r) {
  size_t len = 0;

  if (mim_rpc_encode(r, NULL, 0, &len) != -ENOBUFS)
    return 0;
  return len;
}

/* ---- table self-check (for test-codec) ---- */


static bool kind_fits(const struct row *row,
                      const ProtobufCFieldDescriptor *fd) {
  bool repeated = fd->label == PROTOBUF_C_LABEL_REPEATED;

  switch (row->kind) {
  case K_IGNORE:
    return true;
  case K_STR:
    return !repeated && fd->type == PROTOBUF_C_TYPE_STRING;
  case K_I64:
  case K_MSG_ID:
    return !repeated && fd->type == PROTOBUF_C_TYPE_INT64;
  case K_I32:
    return !repeated && fd->type == PROTOBUF_C_TYPE_INT32;
  case K_U32:
    return !repeated && fd->type == PROTOBUF_C_TYPE_UINT32;
  case K_U64:
  case K_OPT_U64:
    return !repeated && fd->type == PROTOBUF_C_TYPE_UINT64;
  case K_BOOL:
    return !repeated && fd->type == PROTOBUF_C_TYPE_BOOL;
  case K_BYTES:
    return !repeated && fd->type == PROTOBUF_C_TYPE_BYTES;
  case K_STRS:
    return repeated && fd->type == PROTOBUF_C_TYPE_STRING;
  case K_MSGS:
    return repeated && fd->type == PROTOBUF_C_TYPE_MESSAGE &&
           row->sub != NULL && fd->descriptor == row->sub->desc;
  }
  return false;
}

/* Checks one map: every row names a field of a matching type, and every
 * field of the message has exactly one row. */
static int check_map(const struct msg_map *map, char *why, size_t why_cap) {
  const ProtobufCMessageDescriptor *d = map->desc;

  if (d == NULL)
    return 0;
  if (map->n_rows > 32) {
    /* wire_fill() counts repeated rows in a 32-entry array */
    snprintf(why, why_cap, "%s: %zu rows, the codec handles 32", d->name,
             map->n_rows);
    return -EINVAL;
  }
  for (size_t i = 0; i < map->n_rows; i++) {
    const struct row *row = &map->rows[i];
    const ProtobufCFieldDescriptor *fd = field_of(map, row);

    if (fd == NULL || !kind_fits(row, fd)) {
      snprintf(why, why_cap, "%s.%s: %s", d->name, row->name,
               fd == NULL ? "no such field" : "type does not match the row");
      return -EINVAL;
    }
    /* the direct encoder writes rows in order, and protobuf-c packs in
     * field-number order: the same bytes need the same order */
    if (i > 0 && field_of(map, &map->rows[i - 1])->id >= fd->id) {
      snprintf(why, why_cap, "%s.%s: rows out of field-number order",
               d->name, row->name);
      return -EINVAL;
    }
    if (row->kind == K_MSGS) {
      int r = check_map(row->sub, why, why_cap);
      if (r < 0)
        return r;
    }
  }
  for (unsigned f = 0; f < d->n_fields; f++) {
    unsigned rows = 0;

    for (size_t i = 0; i < map->n_rows; i++)
      rows += strcmp(map->rows[i].name, d->fields[f].name) == 0;
    if (rows != 1) {
      snprintf(why, why_cap, "%s.%s: %u rows, want 1", d->name,
               d->fields[f].name, rows);
      return -EINVAL;
    }
  }
  return 0;
}

/* Returns 0, or -EINVAL with a description of the first table bug in `why`.
 * Internal, for test-codec: this file has no private header to declare it. */
int mim__codec_check_tables(char *why, size_t why_cap) {
  for (uint32_t cmd = 0; cmd < MIM_CMD__COUNT; cmd++) {
    int r;

    if (client_maps[cmd] == NULL) {
      snprintf(why, why_cap, "cmd %u has no table", (unsigned)cmd);
      return -EINVAL;
    }
    r = check_map(client_maps[cmd], why, why_cap);
    if (r < 0)
      return r;
  }
  for (size_t i = 0; i < RPC_COUNT; i++) {
    int r;

    if (rpc_maps[i] == NULL) {
      snprintf(why, why_cap, "rpc cmd %zu has no table", MIM_RPC_HELLO + i);
      return -EINVAL;
    }
    r = check_map(rpc_maps[i], why, why_cap);
    if (r < 0)
      return r;
  }
  return 0;
}

/* ---- reference decoder (for tests) ---- */

int mim__codec_decode_reference(bool rpc, uint32_t cmd, const uint8_t *body,
                                size_t len, void *flat) {
  return rpc ? rpc_decode_with(decode_reference, flat, cmd, body, len)
             : packet_decode_with(decode_reference, flat, cmd, body, len);
}
