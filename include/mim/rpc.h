/* libmim — the internal RPC of the reference daemons (gatewayd <-> logicd,
 * mimctl -> logicd): typed encode/decode of every RPC packet, framed as
 * client packets are (<mim/codec.h>).
 *
 * UNSTABLE: the internal RPC of the reference daemons; not covered by the
 * ABI. Its structs and commands change whenever the daemons need them to
 * (MIM_RPC_VERSION guards the wire, nothing guards the C API), so this
 * header is not included by <mim/mim.h>: a program includes it explicitly
 * and accepts rebuilding with each release. See docs/rpc.md.
 */
#ifndef MIM_RPC_H
#define MIM_RPC_H

#include <mim/codec.h>

#ifdef __cplusplus
extern "C" {
#endif

enum mim_rpc_cmd {
  MIM_RPC_HELLO = 1000,       /* gateway -> logic */
  MIM_RPC_HELLO_ACK = 1001,   /* logic -> gateway */
  MIM_RPC_REQUEST = 1002,     /* gateway -> logic: a client packet */
  MIM_RPC_DELIVER = 1003,     /* logic -> gateway: packet to connections */
  MIM_RPC_KICK = 1004,        /* logic -> gateway */
  MIM_RPC_CONN_CLOSED = 1005, /* gateway -> logic */
  MIM_RPC_SESSIONS = 1006,    /* gateway -> logic: live sessions */
  MIM_RPC_ADMIN = 1007,       /* mimctl -> logic */
  MIM_RPC_ADMIN_REPLY = 1008, /* logic -> mimctl */
  MIM_RPC_PING = 1009,        /* either way: are you there? */
  MIM_RPC_PONG = 1010,        /* either way: the answer to a PING */
  MIM_RPC_SESSION = 1011,     /* logic -> gateway: a session (un)bound */
};

/* 2: the gateway learns sessions from SESSION and SESSIONS carries tickets;
 * a version-1 gateway cannot restore sessions, so HELLO refuses it. */
#define MIM_RPC_VERSION 2

struct mim_rpc_session {
  uint64_t conn_id;
  const char *uid;
  const char *device;
  uint32_t caps;
  const uint8_t *ticket; /* <mim/auth.h> mim_ticket_sign() */
  size_t ticket_len;
};

/* Every RPC packet, flattened as struct mim_packet is. */
struct mim_rpc {
  uint32_t cmd;            /* enum mim_rpc_cmd */
  const char *gateway_id;  /* HELLO */
  const char *secret;      /* HELLO */
  const char *text;        /* HELLO_ACK.msg, KICK.msg */
  uint32_t version;        /* HELLO, REQUEST */
  int32_t status;          /* HELLO_ACK */
  uint64_t conn_id;        /* REQUEST, KICK, CONN_CLOSED, SESSION */
  uint64_t req_id;         /* ADMIN, ADMIN_REPLY; PING/PONG: the nonce */
  uint32_t inner_cmd;      /* REQUEST, DELIVER, ADMIN*: client command */
  const uint8_t *body;     /* REQUEST, DELIVER, ADMIN*: client body */
  size_t body_len;
  const struct mim_rpc_target *targets; /* DELIVER */
  size_t n_targets;
  uint32_t seq_field;      /* DELIVER */
  int32_t reason;          /* KICK */
  const struct mim_rpc_session *sessions; /* SESSIONS */
  size_t n_sessions;
  const char *uid;         /* SESSION ("" = unbound) */
  const char *device;      /* SESSION */
  uint32_t caps;           /* SESSION */
  const uint8_t *ticket;   /* SESSION */
  size_t ticket_len;
  void *priv_;
};

MIM_API void mim_rpc_init(struct mim_rpc *r);
MIM_API void mim_rpc_finish(struct mim_rpc *r);

/* As mim_packet_decode(), for RPC bodies. */
MIM_API int mim_rpc_decode(struct mim_rpc *r, uint32_t cmd,
                           const uint8_t *body, size_t len);

/* Encodes a whole RPC frame (header + body). Errors as mim_packet_encode(). */
MIM_API int mim_rpc_encode(const struct mim_rpc *r, uint8_t *buf, size_t cap,
                           size_t *len);

/* The size mim_rpc_encode() needs for `r` (0 if it cannot be encoded). */
MIM_API size_t mim_rpc_encoded_size(const struct mim_rpc *r);

#ifdef __cplusplus
}
#endif

#endif /* MIM_RPC_H */
