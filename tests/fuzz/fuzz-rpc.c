/* Internal RPC bodies: the first byte picks a cmd in 1000..1013 (the last
 * two unknown), the rest is the body. A body that decodes must re-encode,
 * decode again to the same RPC, and re-encode to the same bytes. */
#include "fuzz.h"
#include "reference.h"

#include <stdlib.h>
#include <string.h>

#include <mim/codec.h>
#include <mim/rpc.h>

#include "codec/codec_internal.h"


#define N_CMDS 14

static void same_rpc(const struct mim_rpc *a, const struct mim_rpc *b) {
  check(a->cmd == b->cmd);
  same_str(a->gateway_id, b->gateway_id);
  same_str(a->secret, b->secret);
  same_str(a->text, b->text);
  check(a->version == b->version && a->status == b->status);
  check(a->conn_id == b->conn_id && a->req_id == b->req_id);
  check(a->inner_cmd == b->inner_cmd && a->body_len == b->body_len);
  check(a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0);
  check(a->seq_field == b->seq_field && a->reason == b->reason);
  check(a->n_targets == b->n_targets);
  for (size_t i = 0; i < a->n_targets; i++) {
    check(a->targets[i].conn_id == b->targets[i].conn_id);
    check(a->targets[i].inbox_seq == b->targets[i].inbox_seq);
  }
  check(a->n_sessions == b->n_sessions);
  for (size_t i = 0; i < a->n_sessions; i++) {
    check(a->sessions[i].conn_id == b->sessions[i].conn_id);
    check(a->sessions[i].caps == b->sessions[i].caps);
    same_str(a->sessions[i].uid, b->sessions[i].uid);
    same_str(a->sessions[i].device, b->sessions[i].device);
    check(a->sessions[i].ticket_len == b->sessions[i].ticket_len);
    check(a->sessions[i].ticket_len == 0 ||
          memcmp(a->sessions[i].ticket, b->sessions[i].ticket,
                 a->sessions[i].ticket_len) == 0);
  }
  same_str(a->uid, b->uid);
  same_str(a->device, b->device);
  check(a->caps == b->caps && a->ticket_len == b->ticket_len);
  check(a->ticket_len == 0 || memcmp(a->ticket, b->ticket, a->ticket_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct mim_rpc a, b;
  uint32_t cmd;
  uint8_t *enc = NULL, *enc2 = NULL;
  size_t len = 0, len2 = 0, need;
  int r;

  if (size == 0)
    return 0;
  cmd = MIM_RPC_HELLO + data[0] % N_CMDS;
  mim_rpc_init(&a);
  mim_rpc_init(&b);
  r = mim_rpc_decode(&a, cmd, data + 1, size - 1);
  {
    struct mim_rpc ref;
    mim_rpc_init(&ref);
    int rr = mim__codec_decode_reference(true, cmd, data + 1, size - 1, &ref);
    check((r == 0) == (rr == 0));
    if (r == 0)
      same_rpc(&a, &ref);
    mim_rpc_finish(&ref);
  }
  if (r != 0) {
    check(r == -MIM_ERR_MALFORMED || r == -MIM_ERR_UNKNOWN_CMD || r == -ENOMEM);
    check(r != -MIM_ERR_UNKNOWN_CMD || cmd > MIM_RPC_SESSION);
    check(a.priv_ == NULL && a.cmd == 0);
    return 0;
  }
  check(cmd <= MIM_RPC_SESSION && a.cmd == cmd);

  need = mim_rpc_encoded_size(&a);
  check(need >= MIM_HEADER_SIZE);
  enc = malloc(need);
  check(enc != NULL);
  check(mim_rpc_encode(&a, enc, need, &len) == 0 && len == need);
  check(mim_rpc_decode(&b, cmd, enc + MIM_HEADER_SIZE,
                       len - MIM_HEADER_SIZE) == 0);
  same_rpc(&a, &b);

  enc2 = malloc(need);
  check(enc2 != NULL);
  check(mim_rpc_encode(&b, enc2, need, &len2) == 0);
  check(len2 == len && memcmp(enc, enc2, len) == 0);

  /* ... and protobuf-c's: the direct encoder matches the reference */
  check(mim__codec_encode_reference(true, &b, enc2, need, &len2) == 0);
  check(len2 == len - MIM_HEADER_SIZE &&
        memcmp(enc + MIM_HEADER_SIZE, enc2, len2) == 0);

  free(enc2);
  free(enc);
  mim_rpc_finish(&b);
  mim_rpc_finish(&a);
  return 0;
}

/* One RPC per command with every field set: cmd byte, then the body. */
size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap) {
  static const uint8_t body[] = {0x0a, 0x03, 'b', 'o', 'b', 0x48, 0x05};
  static const struct mim_rpc_target targets[] = {{1, 10}, {2, 0}, {3, 12}};
  static const uint8_t ticket[] = {1, 2, 3, 4};
  static const struct mim_rpc_session sessions[] = {
    {1, "alice", "phone", 1, ticket, sizeof(ticket)},
    {2, "bob", "default", 0, NULL, 0}};
  uint8_t frame[1024];
  struct mim_rpc r;
  size_t len = 0;

  if (i >= N_CMDS - 2 || cap < 1)
    return 0;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_HELLO + (uint32_t)i;
  r.gateway_id = "gw-1";
  r.secret = "secret";
  r.text = "msg";
  r.version = MIM_RPC_VERSION;
  r.status = -1;
  r.conn_id = 77;
  r.req_id = 5;
  r.inner_cmd = MIM_CMD_C2C_PUSH;
  r.body = body;
  r.body_len = sizeof(body);
  r.targets = targets;
  r.n_targets = 3;
  r.seq_field = 9;
  r.reason = 2;
  r.sessions = sessions;
  r.n_sessions = 2;
  r.uid = "carol";
  r.device = "tablet";
  r.caps = 1;
  r.ticket = ticket;
  r.ticket_len = sizeof(ticket);
  /* mim_rpc_encode() writes a whole frame; the target wants the body. */
  if (mim_rpc_encode(&r, frame, sizeof(frame), &len) != 0 ||
      len - MIM_HEADER_SIZE > cap - 1)
    return 0;
  buf[0] = (uint8_t)i;
  memcpy(buf + 1, frame + MIM_HEADER_SIZE, len - MIM_HEADER_SIZE);
  return 1 + len - MIM_HEADER_SIZE;
}
