/* Fuzz target: arbitrary bytes as the JSON body of an HTTP gateway request
 * (daemons/gatewayd/http_json.c). The first byte picks the command, the
 * rest is the body. Parsing must not crash; a body it accepts must encode
 * as the protocol's request and decode back to the same fields (the
 * gateway forwards exactly what the client said); a refusal is MALFORMED
 * with a reason. Replies made from the decoded packet must be JSON. */
#include "fuzz.h"

#include <jansson.h>
#include <mim/common.h>

#include "gatewayd/http_json.h"

static const char *const names[] = {
    "send",       "send_group",   "pull",      "history",
    "group_create", "group_add",  "group_remove", "group_list",
    "ack",        "logout",
};
#define N_NAMES (sizeof names / sizeof names[0])

static const char *const seeds[] = {
    "\x00{\"to\":\"bob\",\"content\":\"hi\",\"client_msg_id\":\"c-1\",\"seq\":1}",
    "\x01{\"group\":\"team\",\"content\":\"x\",\"type\":2}",
    "\x02{\"after_seq\":0,\"limit\":50}",
    "\x03{\"peer\":\"bob\",\"before_conv_seq\":9}",
    "\x04{\"group\":\"g\",\"members\":[\"a\",\"b\",null]}",
    "\x08{\"inbox_seq\":18446744073709551615}",
    "\x00{\"to\":\"bob\",\"to\":\"eve\"}",
    "\x00{\"content\":\"a\\u0000b\"}",
    "\x00[[[[[[[[[[1]]]]]]]]]]",
    "\x00{\"content\":\"\xff\"}",
    "\x09",
};

size_t fuzz_seed(size_t i, uint8_t *buf, size_t cap) {
  if (i >= sizeof(seeds) / sizeof(seeds[0]))
    return 0;
  size_t n = strlen(seeds[i] + 1) + 1;
  if (n > cap)
    n = cap;
  memcpy(buf, seeds[i], n);
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  uint32_t cmd = gw_json_cmd(names[data[0] % N_NAMES]);
  check(cmd != 0);
  struct gw_json_req r;
  memset(&r, 0, sizeof r);
  const char *why = NULL;
  int rc = gw_json_request(cmd, data + 1, size - 1, &r, &why);
  if (rc < 0) {
    check(rc == -MIM_ERR_MALFORMED || rc == -ENOMEM);
    check(why != NULL);
    return 0;
  }
  size_t cap = mim_packet_encoded_size(&r.p), len = 0;
  uint8_t *buf = cap ? malloc(cap) : NULL;
  if (buf != NULL && mim_packet_encode_body(&r.p, buf, cap, &len) == 0) {
    struct mim_packet d;
    mim_packet_init(&d);
    if (mim_packet_decode(&d, cmd, buf, len) == 0) {
      check(d.seq == r.p.seq);
      if (cmd == MIM_CMD_C2C_SEND_REQ) {
        same_str(d.to, r.p.to ? r.p.to : "");
        same_str(d.content, r.p.content ? r.p.content : "");
      }
      if (cmd == MIM_CMD_PULL_REQ)
        check(d.has_after_seq == r.p.has_after_seq);
      check(d.n_members == r.p.n_members);
      /* a reply made of these fields is JSON */
      d.cmd = MIM_CMD_GROUP_LIST_RSP;
      size_t jl = 0;
      char *j = gw_json_reply(&d, &jl);
      if (j != NULL) {
        json_error_t e;
        json_t *back = json_loads(j, 0, &e);
        check(back != NULL);
        json_decref(back);
        free(j);
      }
    }
    mim_packet_finish(&d);
  }
  free(buf);
  gw_json_req_free(&r);
  return 0;
}
