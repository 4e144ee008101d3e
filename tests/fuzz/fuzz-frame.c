/* Frame decoding: mim_frame_decode() over the input as a websocket message
 * holding back-to-back frames, and the stream decoder over the same bytes
 * fed in input-dependent chunks. The two must agree frame for frame. */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <mim/codec.h>
#include <mim/rpc.h>


/* Small, so that both verdicts (fits, too big) are easy to reach. */
#define MAX_BODY 300

/* Decodes each frame's body as the packet its cmd names, if any: frames
 * that pass the framing layer go there next in the daemons. */
static void decode_body(const struct mim_frame *f) {
  if (mim_cmd_known(f->header.cmd)) {
    struct mim_packet p;
    mim_packet_init(&p);
    mim_packet_decode(&p, f->header.cmd, f->body, f->header.body_len);
    mim_packet_finish(&p);
  } else {
    struct mim_rpc r;
    mim_rpc_init(&r);
    mim_rpc_decode(&r, f->header.cmd, f->body, f->header.body_len);
    mim_rpc_finish(&r);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct mim_stream_decoder *d;
  struct mim_frame f, g;
  size_t off = 0, consumed = 0, pos = 0, sd_off = 0;
  int r, sr = -EAGAIN;

  /* Reference: frame after frame with mim_frame_decode(). */
  while ((r = mim_frame_decode(data + off, size - off, MAX_BODY, &f,
                               &consumed)) == 0) {
    check(consumed == MIM_HEADER_SIZE + f.header.body_len);
    check(f.body == data + off + MIM_HEADER_SIZE);
    decode_body(&f);
    off += consumed;
  }
  check(r == -EAGAIN || r == -MIM_ERR_FRAME_TOO_BIG);

  /* The stream decoder, fed in chunks of 1..64 bytes picked from the data
   * itself, must return the same frames and then the same verdict. */
  if (mim_stream_decoder_create(&d, MAX_BODY) != 0)
    return 0;
  while (pos < size) {
    size_t n = 1 + data[pos] % 64;
    int fr;
    if (n > size - pos)
      n = size - pos;
    fr = mim_stream_decoder_feed(d, data + pos, n);
    check(fr == 0 || fr == -MIM_ERR_FRAME_TOO_BIG);
    pos += n;
    while ((sr = mim_stream_decoder_next(d, &g)) == 0) {
      check(sd_off < off);
      mim_header_decode(data + sd_off, &f.header);
      check(g.header.cmd == f.header.cmd);
      check(g.header.version == f.header.version);
      check(g.header.body_len == f.header.body_len);
      check(memcmp(g.body, data + sd_off + MIM_HEADER_SIZE,
                   g.header.body_len) == 0);
      sd_off += MIM_HEADER_SIZE + g.header.body_len;
    }
    if (sr == -MIM_ERR_FRAME_TOO_BIG)
      break;
    check(sr == -EAGAIN);
    check(mim_stream_decoder_pending(d) == pos - sd_off);
  }
  check(sd_off == off);
  check(sr == r);
  mim_stream_decoder_destroy(d);
  return 0;
}

/* Streams of valid frames: a few packets back to back. */
size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap) {
  static const uint32_t cmds[] = {
    MIM_CMD_HEARTBEAT_REQ, MIM_CMD_AUTH_REQ,   MIM_CMD_C2C_SEND_REQ,
    MIM_CMD_C2C_PUSH,      MIM_CMD_PULL_REQ,   MIM_CMD_ERROR,
    MIM_CMD_GROUP_ADD_REQ, MIM_CMD_SERVER_PUSH,
  };
  size_t len = 0, n;

  if (i >= 8)
    return 0;
  for (size_t k = 0; k <= i; k++) {
    struct mim_packet p;
    mim_packet_init(&p);
    p.cmd = cmds[(i + k) % 8];
    p.seq = (int64_t)k + 1;
    p.uid = "alice";
    p.token = "token";
    p.to = "bob";
    p.content = "hello";
    p.msg_id = 1000 + k;
    p.inbox_seq = k;
    p.has_after_seq = k % 2;
    if (mim_packet_encode(&p, buf + len, cap - len, &n) != 0)
      break;
    len += n;
  }
  if (i == 7) {
    /* Ends in an oversized header. */
    struct mim_header h = {0, MIM_CMD_AUTH_REQ, MAX_BODY + 1};
    if (cap - len >= MIM_HEADER_SIZE) {
      mim_header_encode(buf + len, &h);
      len += MIM_HEADER_SIZE;
    }
  }
  return len;
}
