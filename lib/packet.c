/* struct mim_packet / struct mim_rpc <-> protobuf wire format.
 *
 * Table-driven: each protobuf message has a list of rows, one per field,
 * naming the protobuf field and the member of the flat struct it maps onto.
 * Generic walkers use the protobuf-c descriptors to find each field:
 * wire_size()/wire_write() encode a flat struct straight to the wire,
 * fill() fills a flat struct from a message protobuf-c unpacked, pointing
 * into it, and build() makes a protobuf-c message of a flat struct (the
 * reference encoder the tests compare the direct one with).
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
 * by-name search (a binary search of strcmps) on every field of every
 * encode and decode was 2-3% of each daemon's CPU. Atomic (relaxed) because
 * several threads may share the codec; they all store the same pointer. */
typedef _Atomic(const ProtobufCFieldDescriptor *) field_cache;

struct msg_map {
  const ProtobufCMessageDescriptor *desc; /* NULL: the body is empty */
  const struct row *rows;
  size_t n_rows;
  size_t flat_size; /* sizeof the flat struct: the stride of K_MSGS arrays */
  field_cache *fds; /* n_rows entries, filled on first use */
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
   (field_cache[MIM_ARRAY_SIZE(rows)]){0}}

/* ---- client messages (client.proto) ---- */

#define FLAT struct mim_pull_item
static const struct row pull_msg_rows[] = {
  F(STR, "from", from),
  F(STR, "group", group),
  F(STR, "content", content),
  F(MSG_ID, "msg_id", msg_id),
  F(I64, "send_time", send_time),
  /* The seed's PullMsg.ts/seq were never meaningful per message; the
   * reply's own ts/seq carry the request correlation. */
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
                                         NULL};
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
  F(U32, "caps", caps),
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

static const size_t rpc_strings[] = {
  OFF(gateway_id, const char *), OFF(secret, const char *),
  OFF(text, const char *),
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

#define RPC_COUNT (MIM_RPC_ADMIN_REPLY - MIM_RPC_HELLO + 1)

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

/* Unpacks `body` with `map` into `flat`; on success `*priv` owns what the
 * flat struct points into. On error nothing is left allocated. */
static int decode(const struct msg_map *map, const uint8_t *body, size_t len,
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
  r = fill(map, dec->msg, flat, &dec->arena);
  if (r < 0)
    goto fail;
  *priv = dec;
  return 0;

fail:
  decoded_free(dec);
  return r;
}

/* Encodes the body of `flat` into `buf`; `*len` is the body size, also on
 * -ENOBUFS. */
/* ---- direct wire encoding ----
 *
 * The encoder writes protobuf's wire format straight from the flat struct,
 * walking the same rows: what build() + protobuf_c_message_pack() produce,
 * byte for byte (rows are in field-number order, which the table check
 * enforces; zero values are left out as build() does), without building a
 * protobuf-c message, allocating, or walking it twice more to size and
 * pack it. Building was ~30% of logicd's CPU in an offline sync (a pull
 * reply of 500 messages). mim__codec_encode_reference() keeps the
 * protobuf-c path so tests can compare the two on every command. */

enum { WT_VARINT = 0, WT_LEN = 2 };

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static uint8_t *varint_put(uint8_t *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *p++ = (uint8_t)v;
  return p;
}

static uint64_t tag_of(const ProtobufCFieldDescriptor *fd, unsigned wt) {
  return ((uint64_t)fd->id << 3) | wt;
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
  const ProtobufCFieldDescriptor *fd = field_of(map, row);
  const char *src = CAT(flat, row->off);
  uint64_t v;

  *out = 0;
  if (fd == NULL)
    return -EINVAL; /* a table bug; mim__codec_check_tables() catches it */
  switch (row->kind) {
  case K_IGNORE:
    return 0;
  case K_STR: {
    const char *str = *(const char *const *)src;
    if (str != NULL && str[0] != '\0') {
      size_t n = strlen(str);
      *out = varint_len(tag_of(fd, WT_LEN)) + varint_len(n) + n;
    }
    return 0;
  }
  case K_BYTES: {
    size_t n = *(const size_t *)CAT(flat, row->aux);
    if (n == 0)
      return 0;
    if (*(const uint8_t *const *)src == NULL)
      return -EINVAL;
    *out = varint_len(tag_of(fd, WT_LEN)) + varint_len(n) + n;
    return 0;
  }
  case K_STRS: {
    const char *const *strs = *(const char *const *const *)src;
    size_t n = *(const size_t *)CAT(flat, row->aux), total = 0;
    if (n > 0 && strs == NULL)
      return -EINVAL;
    for (size_t k = 0; k < n; k++) {
      size_t len = strs[k] != NULL ? strlen(strs[k]) : 0;
      total += varint_len(tag_of(fd, WT_LEN)) + varint_len(len) + len;
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
      total += varint_len(tag_of(fd, WT_LEN)) + varint_len(len) + len;
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
    *out = varint_len(tag_of(fd, WT_VARINT)) + varint_len(v);
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

static uint8_t *put_len(uint8_t *p, const ProtobufCFieldDescriptor *fd,
                        const void *data, size_t n) {
  p = varint_put(p, tag_of(fd, WT_LEN));
  p = varint_put(p, n);
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
    const ProtobufCFieldDescriptor *fd = field_of(map, row);
    const char *src = CAT(flat, row->off);
    uint64_t v;

    switch (row->kind) {
    case K_IGNORE:
      break;
    case K_STR: {
      const char *str = *(const char *const *)src;
      if (str != NULL && str[0] != '\0')
        p = put_len(p, fd, str, strlen(str));
      break;
    }
    case K_BYTES: {
      size_t n = *(const size_t *)CAT(flat, row->aux);
      if (n > 0)
        p = put_len(p, fd, *(const uint8_t *const *)src, n);
      break;
    }
    case K_STRS: {
      const char *const *strs = *(const char *const *const *)src;
      size_t n = *(const size_t *)CAT(flat, row->aux);
      for (size_t k = 0; k < n; k++)
        p = put_len(p, fd, strs[k] != NULL ? strs[k] : "",
                    strs[k] != NULL ? strlen(strs[k]) : 0);
      break;
    }
    case K_MSGS: {
      const char *elems = *(const char *const *)src;
      size_t n = *(const size_t *)CAT(flat, row->aux);
      for (size_t k = 0; k < n; k++) {
        const void *e = elems + k * row->sub->flat_size;
        size_t len = 0;
        p = varint_put(p, tag_of(fd, WT_LEN));
        if (slack) {
          uint8_t *end = wire_write(row->sub, e, p + LEN_ROOM, true);
          len = (size_t)(end - (p + LEN_ROOM));
          uint8_t *at = varint_put(p, len);
          memmove(at, p + LEN_ROOM, len);
          p = at + len;
        } else {
          (void)wire_size(row->sub, e, &len); /* validated by the caller */
          p = varint_put(p, len);
          p = wire_write(row->sub, e, p, false);
        }
      }
      break;
    }
    default:
      if (row_varint(row, flat, &v)) {
        p = varint_put(p, tag_of(fd, WT_VARINT));
        p = varint_put(p, v);
      }
      break;
    }
  }
  return p;
}

static int encode_body(const struct msg_map *map, const void *flat,
                       uint8_t *buf, size_t cap, size_t *len) {
  size_t n;
  int r;

  if (map->desc == NULL) {
    *len = 0;
    return 0;
  }
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

void mim_packet_finish(struct mim_packet *p) {
  decoded_free(p->priv_);
  *p = (struct mim_packet){0};
}

int mim_packet_decode(struct mim_packet *p, uint32_t cmd, const uint8_t *body,
                      size_t len) {
  const struct msg_map *map = client_map(cmd);
  int r;

  mim_packet_finish(p);
  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  p->cmd = cmd;
  set_empty_strings(p, packet_strings, MIM_ARRAY_SIZE(packet_strings));
  r = decode(map, body, len, p, &p->priv_);
  if (r < 0)
    mim_packet_finish(p);
  return r;
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

int mim_rpc_decode(struct mim_rpc *r, uint32_t cmd, const uint8_t *body,
                   size_t len) {
  const struct msg_map *map = rpc_map(cmd);
  int err;

  mim_rpc_finish(r);
  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  r->cmd = cmd;
  set_empty_strings(r, rpc_strings, MIM_ARRAY_SIZE(rpc_strings));
  err = decode(map, body, len, r, &r->priv_);
  if (err < 0)
    mim_rpc_finish(r);
  return err;
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
