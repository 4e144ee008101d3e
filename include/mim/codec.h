/* libmim — wire codec: the seed's 12-byte frame header, stream and
 * per-message frame decoding, and typed encode/decode of every client
 * packet. The daemons' internal RPC codec is <mim/rpc.h> (unstable).
 *
 * Frame: big-endian uint32 version, uint32 cmd, uint32 body_len, then
 * body_len bytes of protobuf. On a websocket, one binary message holds one
 * frame (or, for clients with MIM_CAP_BATCH, several back to back); on a
 * byte stream the header delimits frames.
 *
 * Nothing here does I/O or allocates for a frame larger than the configured
 * maximum body size: an oversized header is reported before its body is read.
 */
#ifndef MIM_CODEC_H
#define MIM_CODEC_H

#include <mim/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MIM_HEADER_SIZE 12
#define MIM_PROTOCOL_VERSION 0            /* what the seed sends */
#define MIM_MAX_BODY_DEFAULT (64 * 1024)  /* bytes */

/* Client commands. Seed numbers 0..15 are fixed; libmim adds 16 and up. */
enum mim_cmd {
  MIM_CMD_HEARTBEAT_REQ = 0,
  MIM_CMD_HEARTBEAT_RSP = 1,
  MIM_CMD_AUTH_REQ = 2,
  MIM_CMD_AUTH_RSP = 3,
  MIM_CMD_LOGOUT_REQ = 4,
  MIM_CMD_LOGOUT_RSP = 5,
  MIM_CMD_C2C_SEND_REQ = 6,
  MIM_CMD_C2C_SEND_RSP = 7,
  MIM_CMD_C2C_PUSH = 8,
  MIM_CMD_C2C_PUSH_ACK = 9,
  MIM_CMD_C2G_SEND_REQ = 10,
  MIM_CMD_C2G_SEND_RSP = 11,
  MIM_CMD_C2G_PUSH = 12,
  MIM_CMD_C2G_PUSH_ACK = 13,
  MIM_CMD_PULL_REQ = 14,
  MIM_CMD_PULL_RSP = 15,
  MIM_CMD_KICK = 16,
  MIM_CMD_ERROR = 17,
  MIM_CMD_GROUP_CREATE_REQ = 18,
  MIM_CMD_GROUP_CREATE_RSP = 19,
  MIM_CMD_GROUP_ADD_REQ = 20,
  MIM_CMD_GROUP_ADD_RSP = 21,
  MIM_CMD_GROUP_REMOVE_REQ = 22,
  MIM_CMD_GROUP_REMOVE_RSP = 23,
  MIM_CMD_GROUP_LIST_REQ = 24,
  MIM_CMD_GROUP_LIST_RSP = 25,
  MIM_CMD_HISTORY_REQ = 26,
  MIM_CMD_HISTORY_RSP = 27,
  MIM_CMD_SERVER_PUSH = 28,
  MIM_CMD_SERVER_PUSH_ACK = 29,
  /* conversations and receipts (docs/protocol.md §18) */
  MIM_CMD_CONV_LIST_REQ = 30,
  MIM_CMD_CONV_LIST_RSP = 31,
  MIM_CMD_MARK_READ_REQ = 32,
  MIM_CMD_MARK_READ_RSP = 33,
  MIM_CMD_READ_SYNC = 34,    /* server -> the reader's other devices */
  MIM_CMD_READ_RECEIPT = 35, /* server -> the peer's devices */
  MIM_CMD_READ_BY_REQ = 36,
  MIM_CMD_READ_BY_RSP = 37,
  MIM_CMD_DELIVERED = 38,    /* server -> the sender's devices */
  /* group roles (docs/protocol.md §17) */
  MIM_CMD_GROUP_MANAGE_REQ = 40, /* GroupManageRequest */
  MIM_CMD_GROUP_MANAGE_RSP = 41, /* GroupResponse: group, members [target] */
  MIM_CMD_GROUP_INFO_REQ = 42,   /* GroupRequest: group */
  MIM_CMD_GROUP_INFO_RSP = 43,   /* GroupInfo */
  /* recall, edit, delete-for-me (docs/protocol.md §19) */
  MIM_CMD_MSG_CHANGE_REQ = 44,   /* MsgChangeRequest */
  MIM_CMD_MSG_CHANGE_RSP = 45,   /* MsgChanged */
  MIM_CMD_MSG_CHANGED = 46,      /* MsgChanged: server -> participants'
                                    MIM_CAP_CHANGE devices */
  /* typing and presence (docs/protocol.md §20, §21) */
  MIM_CMD_TYPING_REQ = 48,       /* TypingRequest: no reply */
  MIM_CMD_TYPING = 49,           /* Typing: push */
  MIM_CMD_PRESENCE_REQ = 50,     /* PresenceRequest: members = uids */
  MIM_CMD_PRESENCE_RSP = 51,     /* PresenceResponse: presences */
  MIM_CMD_PRESENCE = 52,         /* Presence: push */
  /* a group's timeline forward (docs/protocol.md §22) */
  MIM_CMD_GROUP_SYNC_REQ = 54,   /* GroupSyncRequest: group, after_seq =
                                    after_conv_seq, limit */
  MIM_CMD_GROUP_SYNC_RSP = 55,   /* GroupSyncResponse: items, has_more,
                                    after_seq = next_after, conv_seq =
                                    last_conv_seq */
  /* Numbers below this without a name are unassigned: mim_cmd_known()
   * says false for them. */
  MIM_CMD__COUNT = 56,
};

/* Whether `cmd` is a client command this version knows. */
MIM_API bool mim_cmd_known(uint32_t cmd);

/* The command that answers request `req_cmd` on success (C2C_SEND_REQ ->
 * C2C_SEND_RSP, SERVER_PUSH -> SERVER_PUSH_ACK, ...); a failed request is
 * answered by MIM_CMD_ERROR instead. The one table of request/reply pairs:
 * callers must not derive one number from the other. Returns the reply
 * command (>= 0), or -EINVAL when `req_cmd` is not a request that has a
 * reply (pushes, acks, KICK, ERROR, unknown numbers). */
MIM_API int mim_cmd_reply(uint32_t req_cmd);

/* Whether `cmd` is the success reply of some request (the inverse of
 * mim_cmd_reply(), from the same table): false for pushes, KICK, ERROR
 * and unknown numbers. */
MIM_API bool mim_cmd_is_reply(uint32_t cmd);

/* "C2C_SEND_REQ", "RPC_DELIVER" etc.; "UNKNOWN" for others. Static. */
MIM_API const char *mim_cmd_name(uint32_t cmd);

/* ---- frames ---- */

struct mim_header {
  uint32_t version;
  uint32_t cmd;
  uint32_t body_len;
};

/* A decoded frame. `body` is borrowed: see the function that produced it. */
struct mim_frame {
  struct mim_header header;
  const uint8_t *body;
};

/* Writes the 12-byte header into `buf` (at least MIM_HEADER_SIZE bytes). */
MIM_API void mim_header_encode(uint8_t *buf, const struct mim_header *h);

/* Reads a header from `buf` (at least MIM_HEADER_SIZE bytes). Checks nothing. */
MIM_API void mim_header_decode(const uint8_t *buf, struct mim_header *out);

/* Decodes the frame at the start of `data` (`len` bytes), as found in a
 * websocket message. On success `out->body` points into `data` (borrowed from
 * the caller, valid as long as `data`) and `*consumed` is the frame's total
 * size; a message that must hold exactly one frame checks `*consumed == len`.
 * max_body 0 means MIM_MAX_BODY_DEFAULT. The header's version is not checked.
 * Errors: -EAGAIN `data` holds less than one whole frame (for a websocket
 * message: a truncated frame); -MIM_ERR_FRAME_TOO_BIG body_len > max_body. */
MIM_API int mim_frame_decode(const uint8_t *data, size_t len, size_t max_body,
                             struct mim_frame *out, size_t *consumed);

/* Encodes a frame (header + `body`) into `buf`. `body` may be NULL when
 * body_len is 0. Returns -ENOBUFS with `*len` = the needed size when `cap`
 * is too small; otherwise 0 and `*len` = bytes written. */
MIM_API int mim_frame_encode(uint8_t *buf, size_t cap, uint32_t cmd,
                             const uint8_t *body, size_t body_len, size_t *len);

/* Encodes a frame whose body is `body` followed by the protobuf varint field
 * (`field`, `value`): how a gateway personalises one encoded push for each
 * receiver (RpcDeliver). field == 0 or value == 0 appends nothing.
 * Errors as mim_frame_encode. */
MIM_API int mim_frame_encode_with_field(uint8_t *buf, size_t cap, uint32_t cmd,
                                        const uint8_t *body, size_t body_len,
                                        uint32_t field, uint64_t value,
                                        size_t *len);

/* Incremental decoder for byte streams (TCP, unix sockets). */
struct mim_stream_decoder;

/* Creates a decoder for frames of at most `max_body` body bytes (0 means
 * MIM_MAX_BODY_DEFAULT). Errors: -ENOMEM. */
MIM_API int mim_stream_decoder_create(struct mim_stream_decoder **out,
                                      size_t max_body);

/* NULL is a no-op. */
MIM_API void mim_stream_decoder_destroy(struct mim_stream_decoder *d);

/* Copies `len` bytes of `data` (borrowed for the call) into the decoder.
 * Memory stays within 12 + max_body when the caller takes every frame with
 * next() before feeding more; whole frames not yet taken stay buffered.
 * Bytes after an oversized header are never stored. Errors: -ENOMEM (sticky:
 * part of `data` may be stored, the stream cannot resynchronise); a sticky
 * error from next() is returned again. */
MIM_API int mim_stream_decoder_feed(struct mim_stream_decoder *d,
                                    const uint8_t *data, size_t len);

/* Takes the next whole frame. `out->body` is valid until the next call on
 * `d`. Frames before an oversized one are still returned. Errors: -EAGAIN
 * no whole frame buffered (feed more); -MIM_ERR_FRAME_TOO_BIG a header
 * announced a body over the maximum. The latter is sticky: the stream
 * cannot be resynchronised, close it. */
MIM_API int mim_stream_decoder_next(struct mim_stream_decoder *d,
                                    struct mim_frame *out);

/* Bytes buffered and not yet returned as frames. */
MIM_API size_t mim_stream_decoder_pending(const struct mim_stream_decoder *d);

/* ---- client packets ---- */

/* One message as carried in a pull or history reply (PullMsg). */
struct mim_pull_item {
  const char *from;
  const char *to;
  const char *group;
  const char *content;
  const char *client_msg_id;
  const uint8_t *payload;
  size_t payload_len;
  uint64_t msg_id;
  int64_t send_time;  /* ms since the epoch */
  uint64_t inbox_seq;
  uint64_t conv_seq;
  uint32_t type;
  uint32_t state;       /* enum mim_msg_state (docs/protocol.md §19) */
  int64_t change_time;  /* ms; 0 when never changed */
};

/* One user's presence (PresenceItem). */
struct mim_presence_item {
  const char *uid;
  bool online;
  int64_t last_seen;     /* ms since the epoch; 0 = unknown */
};

/* One conversation of a ConvListResponse (ConvItem). */
struct mim_conv_item {
  const char *peer;
  const char *group;
  const char *last_from;
  const char *preview;
  uint64_t last_msg_id;
  uint64_t last_conv_seq;
  int64_t last_time;     /* ms since the epoch */
  uint32_t last_type;
  bool preview_cut;
  uint64_t read_seq;
  uint64_t unread;
  uint64_t peer_read_seq;
  uint32_t last_state;   /* enum mim_msg_state of the newest message */
  bool large;            /* a large group (read diffusion, §22) */
};

/* Every client packet, flattened: each command uses the fields its protobuf
 * message has (docs/protocol.md lists them) and ignores the others.
 * Strings: NULL and "" both mean absent when encoding; after a successful
 * decode no string is NULL (absent: ""), used by the command or not.
 * Decoded pointers are owned by the packet and valid until
 * mim_packet_finish(). PullMsg's seed fields ts and seq are not kept. */
struct mim_packet {
  uint32_t cmd;
  int64_t seq;           /* request correlation; 0 on server-initiated.
                            A reply or Error echoes the request's seq as
                            decoded here, any value, whenever the body
                            decodes; 0 when it does not or was not read
                            (docs/protocol.md §4): gatewayd and the logic
                            both take it from mim_packet_decode() */
  int64_t ts;
  const char *token;     /* AuthRequest, LogoutRequest */
  const char *uid;       /* AuthRequest, LogoutRequest, PullReq, Kick */
  const char *device;    /* AuthRequest */
  const char *from;
  const char *to;
  const char *group;
  const char *peer;      /* HistoryRequest */
  const char *content;
  const char *client_msg_id;
  const char *text;      /* AuthResponse.msg, Error.msg, Kick.msg */
  const uint8_t *payload;
  size_t payload_len;
  uint32_t caps;
  uint32_t type;
  int32_t status;        /* AuthResponse.status, Error.code */
  int32_t reason;        /* Kick.reason */
  int32_t limit;         /* PullReq, HistoryReq, GroupRequest (list),
                            ConvListReq, ReadByReq */
  uint32_t failed_cmd;   /* Error.cmd */
  bool retryable;        /* Error.retryable */
  bool has_more;         /* PullRsp, HistoryRsp, GroupResponse (list) */
  bool has_after_seq;    /* PullReq: after_seq was present */
  uint64_t msg_id;       /* ConvListRequest: before_msg_id */
  uint64_t inbox_seq;
  uint64_t last_inbox_seq;
  uint64_t ack_seq;
  uint64_t after_seq;
  uint64_t before_conv_seq;
  const char *const *members;  /* GroupRequest / GroupResponse;
                                  ReadByResponse: readers */
  size_t n_members;
  const struct mim_pull_item *items; /* PullRsp, HistoryRsp */
  size_t n_items;
  const char *after_group;     /* GroupRequest: list my groups after it */
  const char *const *groups;   /* GroupResponse: the caller's groups */
  size_t n_groups;
  uint64_t conv_seq;           /* MarkReadRequest, ReadBy* */
  uint64_t read_seq;           /* ReadState, ReadReceipt */
  uint64_t unread;             /* ReadState */
  uint64_t read_count;         /* ReadByResponse */
  uint64_t member_count;       /* ReadByResponse */
  const char *after_uid;       /* ReadByRequest */
  const struct mim_conv_item *convs; /* ConvListResponse */
  size_t n_convs;
  /* GroupManageRequest: until (MUTE, ms since the epoch, 0 = for good).
   * The role commands reuse the members above: GroupManageRequest:
   * group, type = action (enum mim_group_action), to = target, content =
   * name, text = metadata. GroupInfo: group, from = owner, members =
   * admins, groups = muted members, caps = flags (bit 0: the whole group
   * is muted), content = name, text = metadata. */
  int64_t until;
  const char *after_member;    /* GroupRequest: page the group's members
                                  after this uid (see docs/protocol.md §10) */
  /* MsgChangeRequest / MsgChanged (docs/protocol.md §19): msg_id, type =
   * action (enum mim_change_action), content, peer, group; MsgChanged
   * also from = actor, conv_seq and change_time (ms). */
  int64_t change_time;
  /* Presence (cmds 50-52). PresenceRequest.uids are the members above. */
  bool subscribe;              /* PresenceRequest */
  bool online;                 /* Presence */
  int64_t last_seen;           /* Presence: ms, 0 = unknown */
  const struct mim_presence_item *presences; /* PresenceResponse */
  size_t n_presences;
  void *priv_;           /* decoder storage; do not touch */
};

/* Zeroes `p`. */
MIM_API void mim_packet_init(struct mim_packet *p);

/* Initialises `p` as the Error packet that answers request `failed_cmd`
 * (seq `seq`, 0 for none) with library error `err` (negative): wire status
 * mim_err_wire_code(err), text mim_strerror(err) (static; the caller may
 * point `text` elsewhere), retryable mim_err_retryable(err). The one
 * builder of Error packets, for the logic and the daemons alike; fields it
 * does not name (ts) are zero. Never fails. */
MIM_API void mim_error_packet_init(struct mim_packet *p, int err,
                                   uint32_t failed_cmd, int64_t seq);

/* Frees what mim_packet_decode() allocated and zeroes `p`. Safe on an
 * initialised or zeroed packet. */
MIM_API void mim_packet_finish(struct mim_packet *p);

/* Decodes the protobuf `body` (borrowed for the call; nothing points into it
 * afterwards) of command `cmd` into `p`, which must be initialised and is
 * finished first. Numbers out of range for their fields (msg_id < 0) are
 * errors. Errors: -MIM_ERR_UNKNOWN_CMD; -MIM_ERR_MALFORMED the body does not
 * parse; -ENOMEM. On error `p` is left initialised and empty. */
MIM_API int mim_packet_decode(struct mim_packet *p, uint32_t cmd,
                              const uint8_t *body, size_t len);

/* Encodes the body (no header) of `p` into `buf`. Fields that are zero,
 * false, NULL or "" are left out, as proto3 does; after_seq is written when
 * has_after_seq is set. Errors: -MIM_ERR_UNKNOWN_CMD; -EINVAL msg_id over
 * MIM_MSG_ID_MAX or a NULL pointer with a non-zero length; -ENOBUFS with
 * `*len` = the needed size; -ENOMEM. */
MIM_API int mim_packet_encode_body(const struct mim_packet *p, uint8_t *buf,
                                   size_t cap, size_t *len);

/* Like mim_packet_encode_body() but writes a whole frame (header + body). */
MIM_API int mim_packet_encode(const struct mim_packet *p, uint8_t *buf,
                              size_t cap, size_t *len);

/* The protobuf field number of the inbox_seq field in the body of `cmd`
 * (C2C_PUSH, C2G_PUSH, SERVER_PUSH), or 0 if it has none. Used with
 * mim_frame_encode_with_field(). */
MIM_API uint32_t mim_cmd_inbox_seq_field(uint32_t cmd);

/* ---- delivery targets ----
 *
 * One receiving connection of a delivered packet and the inbox seq it
 * carries there: what mim_logic effects and mim_fanout hand a gateway.
 * The RPC that carries them between the daemons is <mim/rpc.h>. */

struct mim_rpc_target {
  uint64_t conn_id;
  uint64_t inbox_seq;
};

/* The size mim_packet_encode() needs for `p` (0 if it cannot be encoded:
 * an unknown cmd or invalid fields; a frame is never shorter than 12). */
MIM_API size_t mim_packet_encoded_size(const struct mim_packet *p);

#ifdef __cplusplus
}
#endif

#endif /* MIM_CODEC_H */
