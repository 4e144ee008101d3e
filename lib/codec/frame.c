/* The 12-byte frame header, whole-frame decoding (websocket messages), the
 * incremental stream decoder (byte streams) and command names.
 *
 * Nothing here trusts a header: body_len is checked against the maximum
 * before anything is reserved for the body, so a peer announcing a 4 GiB
 * frame costs us 12 bytes, not 4 GiB. */
#include "util/internal.h"
#include "util/varint.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <mim/codec.h>
#include <mim/rpc.h>

/* Largest protobuf field number (2^29 - 1): a larger one has no valid tag. */
#define PB_FIELD_MAX ((UINT32_C(1) << 29) - 1)


/* ---- commands ---- */

static const char *const cmd_names[MIM_CMD__COUNT] = {
  [MIM_CMD_HEARTBEAT_REQ] = "HEARTBEAT_REQ",
  [MIM_CMD_HEARTBEAT_RSP] = "HEARTBEAT_RSP",
  [MIM_CMD_AUTH_REQ] = "AUTH_REQ",
  [MIM_CMD_AUTH_RSP] = "AUTH_RSP",
  [MIM_CMD_LOGOUT_REQ] = "LOGOUT_REQ",
  [MIM_CMD_LOGOUT_RSP] = "LOGOUT_RSP",
  [MIM_CMD_C2C_SEND_REQ] = "C2C_SEND_REQ",
  [MIM_CMD_C2C_SEND_RSP] = "C2C_SEND_RSP",
  [MIM_CMD_C2C_PUSH] = "C2C_PUSH",
  [MIM_CMD_C2C_PUSH_ACK] = "C2C_PUSH_ACK",
  [MIM_CMD_C2G_SEND_REQ] = "C2G_SEND_REQ",
  [MIM_CMD_C2G_SEND_RSP] = "C2G_SEND_RSP",
  [MIM_CMD_C2G_PUSH] = "C2G_PUSH",
  [MIM_CMD_C2G_PUSH_ACK] = "C2G_PUSH_ACK",
  [MIM_CMD_PULL_REQ] = "PULL_REQ",
  [MIM_CMD_PULL_RSP] = "PULL_RSP",
  [MIM_CMD_KICK] = "KICK",
  [MIM_CMD_ERROR] = "ERROR",
  [MIM_CMD_GROUP_CREATE_REQ] = "GROUP_CREATE_REQ",
  [MIM_CMD_GROUP_CREATE_RSP] = "GROUP_CREATE_RSP",
  [MIM_CMD_GROUP_ADD_REQ] = "GROUP_ADD_REQ",
  [MIM_CMD_GROUP_ADD_RSP] = "GROUP_ADD_RSP",
  [MIM_CMD_GROUP_REMOVE_REQ] = "GROUP_REMOVE_REQ",
  [MIM_CMD_GROUP_REMOVE_RSP] = "GROUP_REMOVE_RSP",
  [MIM_CMD_GROUP_LIST_REQ] = "GROUP_LIST_REQ",
  [MIM_CMD_GROUP_LIST_RSP] = "GROUP_LIST_RSP",
  [MIM_CMD_HISTORY_REQ] = "HISTORY_REQ",
  [MIM_CMD_HISTORY_RSP] = "HISTORY_RSP",
  [MIM_CMD_SERVER_PUSH] = "SERVER_PUSH",
  [MIM_CMD_SERVER_PUSH_ACK] = "SERVER_PUSH_ACK",
  [MIM_CMD_CONV_LIST_REQ] = "CONV_LIST_REQ",
  [MIM_CMD_CONV_LIST_RSP] = "CONV_LIST_RSP",
  [MIM_CMD_MARK_READ_REQ] = "MARK_READ_REQ",
  [MIM_CMD_MARK_READ_RSP] = "MARK_READ_RSP",
  [MIM_CMD_READ_SYNC] = "READ_SYNC",
  [MIM_CMD_READ_RECEIPT] = "READ_RECEIPT",
  [MIM_CMD_READ_BY_REQ] = "READ_BY_REQ",
  [MIM_CMD_READ_BY_RSP] = "READ_BY_RSP",
  [MIM_CMD_DELIVERED] = "DELIVERED",
  [MIM_CMD_TYPING_REQ] = "TYPING_REQ",
  [MIM_CMD_TYPING] = "TYPING",
  [MIM_CMD_PRESENCE_REQ] = "PRESENCE_REQ",
  [MIM_CMD_PRESENCE_RSP] = "PRESENCE_RSP",
  [MIM_CMD_PRESENCE] = "PRESENCE",
  [MIM_CMD_GROUP_MANAGE_REQ] = "GROUP_MANAGE_REQ",
  [MIM_CMD_GROUP_MANAGE_RSP] = "GROUP_MANAGE_RSP",
  [MIM_CMD_GROUP_INFO_REQ] = "GROUP_INFO_REQ",
  [MIM_CMD_GROUP_INFO_RSP] = "GROUP_INFO_RSP",
  [MIM_CMD_MSG_CHANGE_REQ] = "MSG_CHANGE_REQ",
  [MIM_CMD_MSG_CHANGE_RSP] = "MSG_CHANGE_RSP",
  [MIM_CMD_MSG_CHANGED] = "MSG_CHANGED",
  [MIM_CMD_GROUP_SYNC_REQ] = "GROUP_SYNC_REQ",
  [MIM_CMD_GROUP_SYNC_RSP] = "GROUP_SYNC_RSP",
};

bool mim_cmd_known(uint32_t cmd) {
  return cmd < MIM_CMD__COUNT && cmd_names[cmd] != NULL;
}

int mim_cmd_reply(uint32_t req_cmd) {
  switch (req_cmd) {
  case MIM_CMD_HEARTBEAT_REQ: return MIM_CMD_HEARTBEAT_RSP;
  case MIM_CMD_AUTH_REQ: return MIM_CMD_AUTH_RSP;
  case MIM_CMD_LOGOUT_REQ: return MIM_CMD_LOGOUT_RSP;
  case MIM_CMD_C2C_SEND_REQ: return MIM_CMD_C2C_SEND_RSP;
  case MIM_CMD_C2G_SEND_REQ: return MIM_CMD_C2G_SEND_RSP;
  case MIM_CMD_PULL_REQ: return MIM_CMD_PULL_RSP;
  case MIM_CMD_GROUP_CREATE_REQ: return MIM_CMD_GROUP_CREATE_RSP;
  case MIM_CMD_GROUP_ADD_REQ: return MIM_CMD_GROUP_ADD_RSP;
  case MIM_CMD_GROUP_REMOVE_REQ: return MIM_CMD_GROUP_REMOVE_RSP;
  case MIM_CMD_GROUP_LIST_REQ: return MIM_CMD_GROUP_LIST_RSP;
  case MIM_CMD_HISTORY_REQ: return MIM_CMD_HISTORY_RSP;
  case MIM_CMD_SERVER_PUSH: return MIM_CMD_SERVER_PUSH_ACK;
  case MIM_CMD_CONV_LIST_REQ: return MIM_CMD_CONV_LIST_RSP;
  case MIM_CMD_MARK_READ_REQ: return MIM_CMD_MARK_READ_RSP;
  case MIM_CMD_READ_BY_REQ: return MIM_CMD_READ_BY_RSP;
  case MIM_CMD_PRESENCE_REQ: return MIM_CMD_PRESENCE_RSP;
  case MIM_CMD_GROUP_MANAGE_REQ: return MIM_CMD_GROUP_MANAGE_RSP;
  case MIM_CMD_GROUP_INFO_REQ: return MIM_CMD_GROUP_INFO_RSP;
  case MIM_CMD_MSG_CHANGE_REQ: return MIM_CMD_MSG_CHANGE_RSP;
  case MIM_CMD_GROUP_SYNC_REQ: return MIM_CMD_GROUP_SYNC_RSP;
  default: return -EINVAL;
  }
}

bool mim_cmd_is_reply(uint32_t cmd) {
  if (cmd >= MIM_CMD__COUNT)
    return false;
  for (uint32_t req = 0; req < MIM_CMD__COUNT; req++)
    if (mim_cmd_reply(req) == (int)cmd)
      return true;
  return false;
}

const char *mim_cmd_name(uint32_t cmd) {
  if (cmd < MIM_CMD__COUNT && cmd_names[cmd] != NULL)
    return cmd_names[cmd];
  if (cmd < MIM_CMD__COUNT)
    return "UNKNOWN";
  /* RPC commands share the frame header and show up in the same logs, so
   * they get names too even though they are not client commands. */
  switch (cmd) {
  case MIM_RPC_HELLO:
    return "RPC_HELLO";
  case MIM_RPC_HELLO_ACK:
    return "RPC_HELLO_ACK";
  case MIM_RPC_REQUEST:
    return "RPC_REQUEST";
  case MIM_RPC_DELIVER:
    return "RPC_DELIVER";
  case MIM_RPC_KICK:
    return "RPC_KICK";
  case MIM_RPC_CONN_CLOSED:
    return "RPC_CONN_CLOSED";
  case MIM_RPC_SESSIONS:
    return "RPC_SESSIONS";
  case MIM_RPC_ADMIN:
    return "RPC_ADMIN";
  case MIM_RPC_ADMIN_REPLY:
    return "RPC_ADMIN_REPLY";
  case MIM_RPC_PING:
    return "RPC_PING";
  case MIM_RPC_PONG:
    return "RPC_PONG";
  case MIM_RPC_SESSION:
    return "RPC_SESSION";
  default:
    return "UNKNOWN";
  }
}

uint32_t mim_cmd_inbox_seq_field(uint32_t cmd) {
  /* Field numbers of `inbox_seq` in client.proto; test-codec checks them by
   * appending the field and decoding the result. */
  switch (cmd) {
  case MIM_CMD_C2C_PUSH:
    return 9;  /* C2CPushRequest.inbox_seq */
  case MIM_CMD_C2G_PUSH:
    return 10; /* C2GPushRequest.inbox_seq */
  case MIM_CMD_SERVER_PUSH:
    return 9;  /* ServerPush.inbox_seq */
  default:
    return 0;
  }
}

/* ---- header and frames ---- */

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

void mim_header_encode(uint8_t *buf, const struct mim_header *h) {
  put_be32(buf, h->version);
  put_be32(buf + 4, h->cmd);
  put_be32(buf + 8, h->body_len);
}

void mim_header_decode(const uint8_t *buf, struct mim_header *out) {
  out->version = get_be32(buf);
  out->cmd = get_be32(buf + 4);
  out->body_len = get_be32(buf + 8);
}

/* 0 means the default. body_len is a uint32_t, so a larger maximum means
 * "no maximum"; the stream decoder also needs MIM_HEADER_SIZE + max_body to
 * fit a size_t, which only bites on 32-bit systems. */
static size_t effective_max_body(size_t max_body) {
  if (max_body == 0)
    return MIM_MAX_BODY_DEFAULT;
  if (max_body > UINT32_MAX)
    return UINT32_MAX;
  return max_body;
}

int mim_frame_decode(const uint8_t *data, size_t len, size_t max_body,
                     struct mim_frame *out, size_t *consumed) {
  struct mim_header h;

  if (len < MIM_HEADER_SIZE)
    return -EAGAIN;
  mim_header_decode(data, &h);
  /* Before the length check: a too-big frame is an error whatever follows,
   * and the caller must not wait for a body it will never accept. */
  if (h.body_len > effective_max_body(max_body))
    return -MIM_ERR_FRAME_TOO_BIG;
  if (len - MIM_HEADER_SIZE < h.body_len)
    return -EAGAIN;
  out->header = h;
  out->body = data + MIM_HEADER_SIZE;
  *consumed = MIM_HEADER_SIZE + (size_t)h.body_len;
  return 0;
}

int mim_frame_encode_with_field(uint8_t *buf, size_t cap, uint32_t cmd,
                                const uint8_t *body, size_t body_len,
                                uint32_t field, uint64_t value, size_t *len) {
  size_t extra = 0, total;
  uint64_t tag = 0;

  if (field > PB_FIELD_MAX)
    return -EINVAL;
  if (field != 0 && value != 0) {
    tag = (uint64_t)field << 3; /* wire type 0: varint */
    extra = mim__varint_len(tag) + mim__varint_len(value);
  }
  /* The header stores the body length in 32 bits. */
  if (body_len > UINT32_MAX - MIM_HEADER_SIZE - 2 * MIM__VARINT_MAX)
    return -EMSGSIZE;
  total = MIM_HEADER_SIZE + body_len + extra;
  if (cap < total) {
    *len = total;
    return -ENOBUFS;
  }
  /* memmove: a caller may have encoded the body in place at buf + 12. */
  if (body_len > 0 && body != buf + MIM_HEADER_SIZE)
    memmove(buf + MIM_HEADER_SIZE, body, body_len);
  if (extra > 0) {
    uint8_t *p = buf + MIM_HEADER_SIZE + body_len;
    p = mim__varint_put(p, tag);
    mim__varint_put(p, value);
  }
  mim_header_encode(buf, &(struct mim_header){
                             .version = MIM_PROTOCOL_VERSION,
                             .cmd = cmd,
                             .body_len = (uint32_t)(body_len + extra),
                         });
  *len = total;
  return 0;
}

int mim_frame_encode(uint8_t *buf, size_t cap, uint32_t cmd,
                     const uint8_t *body, size_t body_len, size_t *len) {
  return mim_frame_encode_with_field(buf, cap, cmd, body, body_len, 0, 0, len);
}

/* ---- stream decoder ----
 *
 * One buffer: [0, start) holds frames already returned by next() (kept
 * because the last one's body is still borrowed), [start, scan) whole frames
 * not yet returned, [scan, end) the start of the next frame. feed() copies at
 * most up to the end of the frame at `scan` before looking at the next
 * header, so an oversized header is seen before any of its body is stored
 * and the bytes after it are never buffered. Space is reclaimed by moving
 * [start, end) to the front when the tail is too short. */
struct mim_stream_decoder {
  uint8_t *buf;
  size_t cap;
  size_t start;
  size_t scan;
  size_t end;
  size_t max_body;
  bool poisoned; /* the header at `scan` announces more than max_body */
  int err;       /* sticky, once next() has reported it */
};

int mim_stream_decoder_create(struct mim_stream_decoder **out,
                              size_t max_body) {
  struct mim_stream_decoder *d = calloc(1, sizeof(*d));

  if (d == NULL)
    return -ENOMEM;
  d->max_body = effective_max_body(max_body);
  if (d->max_body > SIZE_MAX - MIM_HEADER_SIZE)
    d->max_body = SIZE_MAX - MIM_HEADER_SIZE;
  *out = d;
  return 0;
}

void mim_stream_decoder_destroy(struct mim_stream_decoder *d) {
  if (d == NULL)
    return;
  free(d->buf);
  free(d);
}

/* Makes room for `n` more bytes at `end`. The buffer doubles but stops at
 * one maximal frame, so a caller that drains next() before each feed never
 * makes it grow past MIM_HEADER_SIZE + max_body; only whole frames it left
 * unreturned can push it further. */
static int reserve(struct mim_stream_decoder *d, size_t n) {
  size_t want, cap, frame_max;
  uint8_t *p;

  if (d->cap - d->end >= n)
    return 0;
  if (d->start > 0) {
    memmove(d->buf, d->buf + d->start, d->end - d->start);
    d->scan -= d->start;
    d->end -= d->start;
    d->start = 0;
    if (d->cap - d->end >= n)
      return 0;
  }
  if (n > SIZE_MAX - d->end)
    return -ENOMEM;
  want = d->end + n;
  frame_max = MIM_HEADER_SIZE + d->max_body;
  cap = d->cap == 0 ? 256 : d->cap <= SIZE_MAX / 2 ? d->cap * 2 : want;
  if (cap > frame_max)
    cap = frame_max;
  if (cap < want)
    cap = want;
  p = realloc(d->buf, cap);
  if (p == NULL)
    return -ENOMEM;
  d->buf = p;
  d->cap = cap;
  return 0;
}

/* Moves `scan` past every whole frame; stops at the first incomplete one or
 * at an oversized header. Returns how many bytes the frame at `scan` still
 * lacks (0 when poisoned). */
static size_t advance(struct mim_stream_decoder *d) {
  for (;;) {
    size_t have = d->end - d->scan;
    struct mim_header h;

    if (have < MIM_HEADER_SIZE)
      return MIM_HEADER_SIZE - have;
    mim_header_decode(d->buf + d->scan, &h);
    if (h.body_len > d->max_body) {
      d->poisoned = true;
      return 0;
    }
    if (have - MIM_HEADER_SIZE < h.body_len)
      return MIM_HEADER_SIZE + (size_t)h.body_len - have;
    d->scan += MIM_HEADER_SIZE + (size_t)h.body_len;
  }
}

int mim_stream_decoder_feed(struct mim_stream_decoder *d, const uint8_t *data,
                            size_t len) {
  bool copied = false;

  if (d->err != 0)
    return d->err;
  if (d->start == d->end) {
    /* Everything was returned: start over at the front for free. */
    d->start = d->scan = d->end = 0;
  }
  while (len > 0 && !d->poisoned) {
    size_t need = advance(d), n;
    int r;

    if (d->poisoned)
      break; /* the stream is dead; next() reports it after the good frames */
    n = need < len ? need : len;
    r = reserve(d, n);
    if (r < 0) {
      /* Part of `data` already in: the caller cannot resend just the rest,
       * so the stream is lost. Nothing in: it may simply try again. */
      if (copied)
        d->err = r;
      return r;
    }
    copied = true;
    memcpy(d->buf + d->end, data, n);
    d->end += n;
    data += n;
    len -= n;
  }
  /* A frame completed by the last copy is only counted here. */
  if (!d->poisoned)
    advance(d);
  return 0;
}

int mim_stream_decoder_next(struct mim_stream_decoder *d,
                            struct mim_frame *out) {
  struct mim_header h;

  if (d->err != 0)
    return d->err;
  if (d->start == d->scan) {
    if (d->poisoned) {
      d->err = -MIM_ERR_FRAME_TOO_BIG;
      return d->err;
    }
    return -EAGAIN;
  }
  mim_header_decode(d->buf + d->start, &h);
  out->header = h;
  out->body = d->buf + d->start + MIM_HEADER_SIZE;
  d->start += MIM_HEADER_SIZE + (size_t)h.body_len;
  return 0;
}

size_t mim_stream_decoder_pending(const struct mim_stream_decoder *d) {
  return d->end - d->start;
}
