/* Client packet bodies: the first byte picks a cmd (0..63, so some are
 * unknown), the rest is the body. A body that decodes must re-encode, decode
 * again to the same packet, and re-encode to the same bytes. */
#include "fuzz.h"
#include "reference.h"

#include <stdlib.h>
#include <string.h>

#include <mim/codec.h>

#include "codec/codec_internal.h"


static void same_packet(const struct mim_packet *a, const struct mim_packet *b) {
  check(a->cmd == b->cmd && a->seq == b->seq && a->ts == b->ts);
  same_str(a->token, b->token);
  same_str(a->uid, b->uid);
  same_str(a->device, b->device);
  same_str(a->from, b->from);
  same_str(a->to, b->to);
  same_str(a->group, b->group);
  same_str(a->peer, b->peer);
  same_str(a->content, b->content);
  same_str(a->client_msg_id, b->client_msg_id);
  same_str(a->text, b->text);
  same_bytes(a->payload, a->payload_len, b->payload, b->payload_len);
  check(a->caps == b->caps && a->type == b->type && a->status == b->status);
  check(a->reason == b->reason && a->limit == b->limit);
  check(a->failed_cmd == b->failed_cmd && a->retryable == b->retryable);
  check(a->has_more == b->has_more && a->has_after_seq == b->has_after_seq);
  check(a->after_seq == b->after_seq && a->msg_id == b->msg_id);
  check(a->msg_id <= MIM_MSG_ID_MAX);
  check(a->inbox_seq == b->inbox_seq);
  check(a->last_inbox_seq == b->last_inbox_seq && a->ack_seq == b->ack_seq);
  check(a->before_conv_seq == b->before_conv_seq);
  check(a->n_members == b->n_members);
  for (size_t i = 0; i < a->n_members; i++)
    same_str(a->members[i], b->members[i]);
  check(a->n_items == b->n_items);
  for (size_t i = 0; i < a->n_items; i++) {
    const struct mim_pull_item *x = &a->items[i], *y = &b->items[i];
    same_str(x->from, y->from);
    same_str(x->to, y->to);
    same_str(x->group, y->group);
    same_str(x->content, y->content);
    same_str(x->client_msg_id, y->client_msg_id);
    same_bytes(x->payload, x->payload_len, y->payload, y->payload_len);
    check(x->msg_id == y->msg_id && x->msg_id <= MIM_MSG_ID_MAX);
    check(x->send_time == y->send_time && x->inbox_seq == y->inbox_seq);
    check(x->conv_seq == y->conv_seq && x->type == y->type);
  }
  check(a->conv_seq == b->conv_seq && a->read_seq == b->read_seq);
  check(a->unread == b->unread && a->read_count == b->read_count);
  check(a->member_count == b->member_count);
  same_str(a->after_uid, b->after_uid);
  check(a->n_convs == b->n_convs);
  for (size_t i = 0; i < a->n_convs; i++) {
    const struct mim_conv_item *x = &a->convs[i], *y = &b->convs[i];
    same_str(x->peer, y->peer);
    same_str(x->group, y->group);
    same_str(x->last_from, y->last_from);
    same_str(x->preview, y->preview);
    check(x->last_msg_id == y->last_msg_id &&
          x->last_msg_id <= MIM_MSG_ID_MAX);
    check(x->last_conv_seq == y->last_conv_seq &&
          x->last_time == y->last_time && x->last_type == y->last_type);
    check(x->preview_cut == y->preview_cut && x->read_seq == y->read_seq);
    check(x->unread == y->unread && x->peer_read_seq == y->peer_read_seq);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct mim_packet p, q;
  uint32_t cmd;
  uint8_t *enc = NULL, *enc2 = NULL;
  size_t len = 0, len2 = 0, need;
  int r;

  if (size == 0)
    return 0;
  cmd = data[0] % 64;
  mim_packet_init(&p);
  mim_packet_init(&q);
  r = mim_packet_decode(&p, cmd, data + 1, size - 1);
  /* the direct decoder accepts what protobuf-c's unpack accepts, and
   * decodes it alike */
  {
    struct mim_packet ref;
    mim_packet_init(&ref);
    int rr = mim__codec_decode_reference(false, cmd, data + 1, size - 1, &ref);
    check((r == 0) == (rr == 0) && (r == 0 || r == rr || r == -ENOMEM ||
                                    rr == -ENOMEM));
    if (r == 0)
      same_packet(&p, &ref);
    mim_packet_finish(&ref);
  }
  if (r != 0) {
    check(r == -MIM_ERR_MALFORMED || r == -MIM_ERR_UNKNOWN_CMD || r == -ENOMEM);
    check(r != -MIM_ERR_UNKNOWN_CMD || !mim_cmd_known(cmd));
    check(p.priv_ == NULL && p.cmd == 0);
    return 0;
  }
  check(mim_cmd_known(cmd) && p.cmd == cmd);

  /* Re-encode: sized by encoded_size, exactly. */
  need = mim_packet_encoded_size(&p);
  check(need >= MIM_HEADER_SIZE);
  enc = malloc(need);
  check(enc != NULL);
  check(mim_packet_encode(&p, enc, need, &len) == 0 && len == need);
  check(mim_packet_decode(&q, cmd, enc + MIM_HEADER_SIZE,
                          len - MIM_HEADER_SIZE) == 0);
  same_packet(&p, &q);

  /* Our encoding is canonical: encoding the copy gives the same bytes. */
  enc2 = malloc(need);
  check(enc2 != NULL);
  check(mim_packet_encode(&q, enc2, need, &len2) == 0);
  check(len2 == len && memcmp(enc, enc2, len) == 0);

  /* ... and protobuf-c's: the direct encoder matches the reference */
  check(mim__codec_encode_reference(false, &q, enc2, need, &len2) == 0);
  check(len2 == len - MIM_HEADER_SIZE &&
        memcmp(enc + MIM_HEADER_SIZE, enc2, len2) == 0);

  free(enc2);
  free(enc);
  mim_packet_finish(&q);
  mim_packet_finish(&p);
  return 0;
}

/* One packet per command with most fields set: cmd byte, then the body. */
size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap) {
  static const char *const members[] = {"alice", "bob"};
  static const uint8_t payload[] = {1, 0, 2};
  struct mim_pull_item items[2] = {
    {.from = "bob", .to = "alice", .content = "hi", .msg_id = 7,
     .inbox_seq = 3, .conv_seq = 2, .payload = payload, .payload_len = 3},
    {.from = "carol", .group = "g", .content = "yo", .msg_id = 8,
     .send_time = 12345, .type = 1},
  };
  struct mim_packet p;
  size_t len = 0;

  if (i >= MIM_CMD__COUNT || cap < 1)
    return 0;
  mim_packet_init(&p);
  p.cmd = (uint32_t)i;
  p.seq = 42;
  p.ts = 1700000000000;
  p.token = "token";
  p.uid = "alice";
  p.device = "phone";
  p.from = "alice";
  p.to = "bob";
  p.group = "g";
  p.peer = "bob";
  p.content = "hello";
  p.client_msg_id = "c1";
  p.text = "text";
  p.payload = payload;
  p.payload_len = sizeof(payload);
  p.caps = 1;
  p.type = 2;
  p.status = -3;
  p.reason = 1;
  p.limit = 10;
  p.failed_cmd = 6;
  p.retryable = true;
  p.has_more = true;
  p.has_after_seq = true;
  p.after_seq = 5;
  p.msg_id = 99;
  p.inbox_seq = 100;
  p.last_inbox_seq = 101;
  p.ack_seq = 98;
  p.before_conv_seq = 50;
  p.members = members;
  p.n_members = 2;
  p.items = items;
  p.n_items = 2;
  buf[0] = (uint8_t)i;
  if (mim_packet_encode_body(&p, buf + 1, cap - 1, &len) != 0)
    return 1;
  return 1 + len;
}
