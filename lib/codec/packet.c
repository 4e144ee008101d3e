/* struct mim_packet / struct mim_rpc <-> wire: the public codec calls,
 * over the tables (table.c), the decoder (decode.c) and the encoder
 * (encode.c). The tests and fuzz targets compare the decoder and encoder
 * with protobuf-c's pack and unpack driven by the same rows
 * (tests/support/reference.c). */
#include "codec/codec_internal.h"
#include "codec/table.h"
#include "util/internal.h"
#include "util/varint.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLAT struct mim_packet
/* Strings that must not be NULL after a mim__codec_decode, used by the cmd or not. */
static const size_t packet_strings[] = {
  OFF(token, const char *),   OFF(uid, const char *),
  OFF(device, const char *),  OFF(from, const char *),
  OFF(to, const char *),      OFF(group, const char *),
  OFF(peer, const char *),    OFF(content, const char *),
  OFF(client_msg_id, const char *), OFF(text, const char *),
  OFF(after_group, const char *),
  OFF(after_uid, const char *),
  OFF(after_member, const char *),
};
#undef FLAT

#define FLAT struct mim_rpc
static const size_t rpc_strings[] = {
  OFF(gateway_id, const char *), OFF(secret, const char *),
  OFF(text, const char *), OFF(uid, const char *), OFF(device, const char *),
};
#undef FLAT

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
  mim__codec_decoded_free(p->priv_);
  *p = (struct mim_packet){0};
}

int mim__codec_packet_decode_with(decoder_fn *fn, struct mim_packet *p,
                              uint32_t cmd, const uint8_t *body, size_t len) {
  const struct msg_map *map = mim__codec_client_map(cmd);
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
  return mim__codec_packet_decode_with(mim__codec_decode, p, cmd, body, len);
}

int mim_packet_encode_body(const struct mim_packet *p, uint8_t *buf,
                           size_t cap, size_t *len) {
  const struct msg_map *map = mim__codec_client_map(p->cmd);

  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  return mim__codec_encode_body(map, p, buf, cap, len);
}

int mim_packet_encode(const struct mim_packet *p, uint8_t *buf, size_t cap,
                      size_t *len) {
  const struct msg_map *map = mim__codec_client_map(p->cmd);

  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  return mim__codec_encode_frame(map, p->cmd, p, buf, cap, len);
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
  mim__codec_decoded_free(r->priv_);
  *r = (struct mim_rpc){0};
}

int mim__codec_rpc_decode_with(decoder_fn *fn, struct mim_rpc *r, uint32_t cmd,
                               const uint8_t *body, size_t len) {
  const struct msg_map *map = mim__codec_rpc_map(cmd);
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
  return mim__codec_rpc_decode_with(mim__codec_decode, r, cmd, body, len);
}

int mim_rpc_encode(const struct mim_rpc *r, uint8_t *buf, size_t cap,
                   size_t *len) {
  const struct msg_map *map = mim__codec_rpc_map(r->cmd);

  if (map == NULL)
    return -MIM_ERR_UNKNOWN_CMD;
  return mim__codec_encode_frame(map, r->cmd, r, buf, cap, len);
}

size_t mim_rpc_encoded_size(const struct mim_rpc *r) {
  size_t len = 0;

  if (mim_rpc_encode(r, NULL, 0, &len) != -ENOBUFS)
    return 0;
  return len;
}
