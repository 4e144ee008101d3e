/* Wire codec (lib/codec/): headers, frames, the stream
 * decoder, and typed encode/decode of every client and RPC packet. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

#include <mim/codec.h>
#include <mim/rpc.h>

#include "util/internal.h"

/* lib/codec/packet.c: 0, or -EINVAL with the first table bug described in `why`. */
#include "codec/codec_internal.h"
#include "reference.h"

/* ---- fixtures: a packet with every field set ---- */

/* The fields of struct mim_packet, as bits: which ones a command carries. */
#define P_SEQ (UINT64_C(1) << 0)
#define P_TS (UINT64_C(1) << 1)
#define P_TOKEN (UINT64_C(1) << 2)
#define P_UID (UINT64_C(1) << 3)
#define P_DEVICE (UINT64_C(1) << 4)
#define P_FROM (UINT64_C(1) << 5)
#define P_TO (UINT64_C(1) << 6)
#define P_GROUP (UINT64_C(1) << 7)
#define P_PEER (UINT64_C(1) << 8)
#define P_CONTENT (UINT64_C(1) << 9)
#define P_CLIENT_MSG_ID (UINT64_C(1) << 10)
#define P_TEXT (UINT64_C(1) << 11)
#define P_PAYLOAD (UINT64_C(1) << 12)
#define P_CAPS (UINT64_C(1) << 13)
#define P_TYPE (UINT64_C(1) << 14)
#define P_STATUS (UINT64_C(1) << 15)
#define P_REASON (UINT64_C(1) << 16)
#define P_LIMIT (UINT64_C(1) << 17)
#define P_FAILED_CMD (UINT64_C(1) << 18)
#define P_RETRYABLE (UINT64_C(1) << 19)
#define P_HAS_MORE (UINT64_C(1) << 20)
#define P_AFTER_SEQ (UINT64_C(1) << 21)
#define P_MSG_ID (UINT64_C(1) << 22)
#define P_INBOX_SEQ (UINT64_C(1) << 23)
#define P_LAST_INBOX_SEQ (UINT64_C(1) << 24)
#define P_ACK_SEQ (UINT64_C(1) << 25)
#define P_BEFORE_CONV_SEQ (UINT64_C(1) << 26)
#define P_MEMBERS (UINT64_C(1) << 27)
#define P_ITEMS (UINT64_C(1) << 28)
#define P_AFTER_GROUP (UINT64_C(1) << 29)
#define P_GROUPS (UINT64_C(1) << 30)
#define P_CONV_SEQ (UINT64_C(1) << 31)
#define P_READ_SEQ (UINT64_C(1) << 32)
#define P_UNREAD (UINT64_C(1) << 33)
#define P_READ_COUNT (UINT64_C(1) << 34)
#define P_MEMBER_COUNT (UINT64_C(1) << 35)
#define P_AFTER_UID (UINT64_C(1) << 36)
#define P_CONVS (UINT64_C(1) << 37)
#define P_UNTIL (UINT64_C(1) << 38)
#define P_AFTER_MEMBER (UINT64_C(1) << 39)
#define P_CHANGE_TIME (UINT64_C(1) << 40)
#define P_SUBSCRIBE (UINT64_C(1) << 41)
#define P_ONLINE (UINT64_C(1) << 42)
#define P_LAST_SEEN (UINT64_C(1) << 43)
#define P_PRESENCES (UINT64_C(1) << 44)

/* What each command carries, written from client.proto independently of
 * the tables in lib/codec/packet.c. */
#define ACK_FIELDS (P_MSG_ID | P_TS | P_SEQ | P_INBOX_SEQ)
#define GROUP_FIELDS (P_GROUP | P_MEMBERS | P_TS | P_SEQ)
#define GROUP_REQ_FIELDS (GROUP_FIELDS | P_AFTER_GROUP | P_LIMIT | P_AFTER_MEMBER)
#define GROUP_RSP_FIELDS (GROUP_FIELDS | P_GROUPS | P_HAS_MORE)
#define READ_STATE_FIELDS (P_PEER | P_GROUP | P_READ_SEQ | P_UNREAD | P_TS | P_SEQ)
static const uint64_t cmd_fields[MIM_CMD__COUNT] = {
  [MIM_CMD_HEARTBEAT_REQ] = 0,
  [MIM_CMD_HEARTBEAT_RSP] = 0,
  [MIM_CMD_AUTH_REQ] = P_TOKEN | P_UID | P_TS | P_SEQ | P_DEVICE | P_CAPS,
  [MIM_CMD_AUTH_RSP] = P_STATUS | P_TEXT | P_TS | P_SEQ | P_LAST_INBOX_SEQ |
                       P_ACK_SEQ | P_CAPS,
  [MIM_CMD_LOGOUT_REQ] = P_TOKEN | P_UID | P_TS | P_SEQ,
  [MIM_CMD_LOGOUT_RSP] = P_TS | P_SEQ,
  [MIM_CMD_C2C_SEND_REQ] = P_FROM | P_TO | P_CONTENT | P_TS | P_SEQ |
                           P_CLIENT_MSG_ID | P_TYPE,
  [MIM_CMD_C2C_SEND_RSP] = ACK_FIELDS,
  [MIM_CMD_C2C_PUSH] = P_FROM | P_TO | P_CONTENT | P_MSG_ID | P_TS | P_SEQ |
                       P_TYPE | P_CLIENT_MSG_ID | P_INBOX_SEQ | P_CONV_SEQ,
  [MIM_CMD_C2C_PUSH_ACK] = ACK_FIELDS,
  [MIM_CMD_C2G_SEND_REQ] = P_FROM | P_GROUP | P_CONTENT | P_TS | P_SEQ |
                           P_CLIENT_MSG_ID | P_TYPE,
  [MIM_CMD_C2G_SEND_RSP] = ACK_FIELDS,
  [MIM_CMD_C2G_PUSH] = P_FROM | P_TO | P_GROUP | P_CONTENT | P_MSG_ID | P_TS |
                       P_SEQ | P_TYPE | P_CLIENT_MSG_ID | P_INBOX_SEQ |
                       P_CONV_SEQ,
  [MIM_CMD_C2G_PUSH_ACK] = ACK_FIELDS,
  [MIM_CMD_PULL_REQ] = P_UID | P_MSG_ID | P_LIMIT | P_TS | P_SEQ | P_AFTER_SEQ,
  [MIM_CMD_PULL_RSP] = P_ITEMS | P_TS | P_SEQ | P_HAS_MORE | P_LAST_INBOX_SEQ,
  [MIM_CMD_KICK] = P_REASON | P_TS | P_SEQ | P_UID | P_TEXT,
  [MIM_CMD_ERROR] = P_STATUS | P_TEXT | P_SEQ | P_FAILED_CMD | P_RETRYABLE |
                    P_TS,
  [MIM_CMD_GROUP_CREATE_REQ] = GROUP_REQ_FIELDS,
  [MIM_CMD_GROUP_CREATE_RSP] = GROUP_RSP_FIELDS,
  [MIM_CMD_GROUP_ADD_REQ] = GROUP_REQ_FIELDS,
  [MIM_CMD_GROUP_ADD_RSP] = GROUP_RSP_FIELDS,
  [MIM_CMD_GROUP_REMOVE_REQ] = GROUP_REQ_FIELDS,
  [MIM_CMD_GROUP_REMOVE_RSP] = GROUP_RSP_FIELDS,
  [MIM_CMD_GROUP_LIST_REQ] = GROUP_REQ_FIELDS,
  [MIM_CMD_GROUP_LIST_RSP] = GROUP_RSP_FIELDS,
  [MIM_CMD_HISTORY_REQ] = P_PEER | P_GROUP | P_BEFORE_CONV_SEQ | P_LIMIT |
                          P_TS | P_SEQ | P_UID,
  [MIM_CMD_HISTORY_RSP] = P_ITEMS | P_HAS_MORE | P_TS | P_SEQ,
  [MIM_CMD_SERVER_PUSH] = P_FROM | P_TO | P_CONTENT | P_PAYLOAD | P_MSG_ID |
                          P_TS | P_SEQ | P_TYPE | P_INBOX_SEQ | P_MEMBERS,
  [MIM_CMD_SERVER_PUSH_ACK] = ACK_FIELDS,
  [MIM_CMD_CONV_LIST_REQ] = P_MSG_ID | P_LIMIT | P_TS | P_SEQ | P_UID,
  [MIM_CMD_CONV_LIST_RSP] = P_CONVS | P_HAS_MORE | P_TS | P_SEQ,
  [MIM_CMD_MARK_READ_REQ] = P_PEER | P_GROUP | P_CONV_SEQ | P_TS | P_SEQ,
  [MIM_CMD_MARK_READ_RSP] = READ_STATE_FIELDS,
  [MIM_CMD_READ_SYNC] = READ_STATE_FIELDS,
  [MIM_CMD_READ_RECEIPT] = P_FROM | P_READ_SEQ | P_TS | P_SEQ,
  [MIM_CMD_READ_BY_REQ] = P_GROUP | P_CONV_SEQ | P_AFTER_UID | P_LIMIT | P_TS |
                          P_SEQ,
  [MIM_CMD_READ_BY_RSP] = P_GROUP | P_CONV_SEQ | P_READ_COUNT |
                          P_MEMBER_COUNT | P_MEMBERS | P_HAS_MORE | P_TS |
                          P_SEQ,
  [MIM_CMD_DELIVERED] = P_FROM | P_CONV_SEQ | P_TS | P_SEQ,
  [MIM_CMD_GROUP_MANAGE_REQ] = P_GROUP | P_TYPE | P_TO | P_UNTIL | P_CONTENT |
                               P_TEXT | P_TS | P_SEQ,
  [MIM_CMD_GROUP_MANAGE_RSP] = GROUP_RSP_FIELDS,
  [MIM_CMD_GROUP_INFO_REQ] = GROUP_REQ_FIELDS,
  [MIM_CMD_GROUP_INFO_RSP] = P_GROUP | P_FROM | P_MEMBERS | P_GROUPS | P_CAPS |
                             P_CONTENT | P_TEXT | P_TS | P_SEQ,
  [MIM_CMD_MSG_CHANGE_REQ] = P_MSG_ID | P_TYPE | P_CONTENT | P_PEER | P_GROUP |
                             P_TS | P_SEQ,
  [MIM_CMD_MSG_CHANGE_RSP] = P_MSG_ID | P_TYPE | P_FROM | P_PEER | P_GROUP |
                             P_CONV_SEQ | P_CONTENT | P_CHANGE_TIME | P_TS |
                             P_SEQ,
  [MIM_CMD_MSG_CHANGED] = P_MSG_ID | P_TYPE | P_FROM | P_PEER | P_GROUP |
                          P_CONV_SEQ | P_CONTENT | P_CHANGE_TIME | P_TS | P_SEQ,
  [MIM_CMD_TYPING_REQ] = P_PEER | P_GROUP | P_TS | P_SEQ,
  [MIM_CMD_TYPING] = P_FROM | P_GROUP | P_TS | P_SEQ,
  [MIM_CMD_PRESENCE_REQ] = P_MEMBERS | P_SUBSCRIBE | P_TS | P_SEQ,
  [MIM_CMD_PRESENCE_RSP] = P_PRESENCES | P_TS | P_SEQ,
  [MIM_CMD_PRESENCE] = P_UID | P_ONLINE | P_LAST_SEEN | P_TS | P_SEQ,
  [MIM_CMD_GROUP_SYNC_REQ] = P_GROUP | P_AFTER_SEQ | P_LIMIT | P_TS | P_SEQ,
  [MIM_CMD_GROUP_SYNC_RSP] = P_ITEMS | P_HAS_MORE | P_AFTER_SEQ | P_CONV_SEQ |
                             P_TS | P_SEQ,
};

static const uint8_t payload_bytes[] = {0x00, 0xff, 0x10, 0x00, 0x7f};
static const char *const members[] = {"alice", "bob", "carol"};
static const char *const groups[] = {"g-1", "g-2"};
static const struct mim_presence_item presences[] = {
  {.uid = "bob", .online = true, .last_seen = 0},
  {.uid = "carol", .online = false, .last_seen = 1700000000123},
};
static const struct mim_conv_item convs[] = {
  {
    .peer = "bob",
    .group = "",
    .last_from = "bob",
    .preview = "h\xc3\xa9",
    .last_msg_id = MIM_MSG_ID_MAX,
    .last_conv_seq = 9,
    .last_time = 1700000000999,
    .last_type = MIM_MSG_TEXT,
    .preview_cut = true,
    .read_seq = 7,
    .unread = 2,
    .peer_read_seq = UINT64_MAX,
    .last_state = MIM_MSG_STATE_RECALLED,
    .large = true,
  },
  {
    .peer = "",
    .group = "g-1",
    .last_from = "",
    .preview = "",
    .last_msg_id = 1,
    .last_conv_seq = 1,
  },
};
static const struct mim_pull_item items[] = {
  {
    .from = "bob",
    .to = "alice",
    .group = "g-1",
    .content = "first",
    .client_msg_id = "c-1",
    .payload = payload_bytes,
    .payload_len = sizeof(payload_bytes),
    .msg_id = 1,
    .send_time = 1700000000001,
    .inbox_seq = 11,
    .conv_seq = 101,
    .type = MIM_MSG_CUSTOM,
    .state = MIM_MSG_STATE_EDITED,
    .change_time = 1700000000002,
  },
  {
    .from = "carol",
    .to = "alice",
    .group = "g-2",
    .content = "second, longer \xe2\x9c\x93",
    .client_msg_id = "c-2",
    .payload = payload_bytes + 1,
    .payload_len = 2,
    .msg_id = MIM_MSG_ID_MAX,
    .send_time = -5, /* int64: negative survives */
    .inbox_seq = UINT64_MAX,
    .conv_seq = 102,
    .type = MIM_MSG_PUSH,
  },
};

/* Every field non-zero, extremes where the wire type makes them interesting
 * (negative int64/int32, full uint32/uint64, the largest msg_id). */
static void fill_all(struct mim_packet *p, uint32_t cmd) {
  mim_packet_init(p);
  p->cmd = cmd;
  p->seq = -1234567890123;
  p->ts = 1700000000123;
  p->token = "tok.en";
  p->uid = "alice";
  p->device = "phone";
  p->from = "bob";
  p->to = "carol";
  p->group = "g-42";
  p->peer = "dave";
  p->content = "h\xc3\xa9llo w\xc3\xb6rld";
  p->client_msg_id = "cmid-1";
  p->text = "some text";
  p->payload = payload_bytes;
  p->payload_len = sizeof(payload_bytes);
  p->caps = 0x80000001u;
  p->type = MIM_MSG_SYSTEM;
  p->status = -7;
  p->reason = MIM_KICK_PROTOCOL;
  p->limit = 50;
  p->failed_cmd = MIM_CMD_C2C_SEND_REQ;
  p->retryable = true;
  p->has_more = true;
  p->has_after_seq = true;
  p->after_seq = UINT64_C(1) << 40;
  p->msg_id = MIM_MSG_ID_MAX;
  p->inbox_seq = UINT64_MAX;
  p->last_inbox_seq = 77;
  p->ack_seq = 66;
  p->before_conv_seq = 55;
  p->members = members;
  p->n_members = MIM_ARRAY_SIZE(members);
  p->items = items;
  p->n_items = MIM_ARRAY_SIZE(items);
  p->after_group = "g-after";
  p->after_member = "m-after";
  p->groups = groups;
  p->n_groups = MIM_ARRAY_SIZE(groups);
  p->conv_seq = 31;
  p->read_seq = 32;
  p->unread = 33;
  p->read_count = 34;
  p->member_count = 35;
  p->after_uid = "u-after";
  p->convs = convs;
  p->n_convs = MIM_ARRAY_SIZE(convs);
  p->until = -1700000000999;
  p->change_time = 1700000000777;
  p->subscribe = true;
  p->online = true;
  p->last_seen = 1700000000456;
  p->presences = presences;
  p->n_presences = MIM_ARRAY_SIZE(presences);
}

static void check_conv(const struct mim_conv_item *got,
                       const struct mim_conv_item *want) {
  assert_string_equal(got->peer, want->peer);
  assert_string_equal(got->group, want->group);
  assert_string_equal(got->last_from, want->last_from);
  assert_string_equal(got->preview, want->preview);
  assert_int_equal(got->last_msg_id, want->last_msg_id);
  assert_int_equal(got->last_conv_seq, want->last_conv_seq);
  assert_int_equal(got->last_time, want->last_time);
  assert_int_equal(got->last_type, want->last_type);
  assert_int_equal(got->preview_cut, want->preview_cut);
  assert_int_equal(got->read_seq, want->read_seq);
  assert_int_equal(got->unread, want->unread);
  assert_int_equal(got->peer_read_seq, want->peer_read_seq);
  assert_int_equal(got->last_state, want->last_state);
  assert_int_equal(got->large, want->large);
}

/* A string of a decoded packet: `want` if carried, else "" (never NULL). */
static void check_str(const char *got, const char *want, bool carried) {
  assert_non_null(got);
  assert_string_equal(got, carried ? want : "");
}

static void check_bytes(const uint8_t *got, size_t got_len,
                        const uint8_t *want, size_t want_len) {
  assert_int_equal(got_len, want_len);
  if (want_len > 0)
    assert_memory_equal(got, want, want_len);
  else
    assert_null(got);
}

static void check_item(const struct mim_pull_item *got,
                       const struct mim_pull_item *want) {
  check_str(got->from, want->from, true);
  check_str(got->to, want->to, true);
  check_str(got->group, want->group, true);
  check_str(got->content, want->content, true);
  check_str(got->client_msg_id, want->client_msg_id, true);
  check_bytes(got->payload, got->payload_len, want->payload, want->payload_len);
  assert_int_equal(got->msg_id, want->msg_id);
  assert_int_equal(got->send_time, want->send_time);
  assert_int_equal(got->inbox_seq, want->inbox_seq);
  assert_int_equal(got->conv_seq, want->conv_seq);
  assert_int_equal(got->type, want->type);
  assert_int_equal(got->state, want->state);
  assert_int_equal(got->change_time, want->change_time);
}

/* Every field of `got`: equal to `want` when in `mask`, else zero/empty. */
static void check_packet(const struct mim_packet *got,
                         const struct mim_packet *want, uint64_t mask) {
#define HAS(f) ((mask & (f)) != 0)
#define NUM(f, m) assert_int_equal(got->m, HAS(f) ? want->m : 0)
  assert_int_equal(got->cmd, want->cmd);
  NUM(P_SEQ, seq);
  NUM(P_TS, ts);
  NUM(P_UNTIL, until);
  NUM(P_CHANGE_TIME, change_time);
  check_str(got->token, want->token, HAS(P_TOKEN));
  check_str(got->uid, want->uid, HAS(P_UID));
  check_str(got->device, want->device, HAS(P_DEVICE));
  check_str(got->from, want->from, HAS(P_FROM));
  check_str(got->to, want->to, HAS(P_TO));
  check_str(got->group, want->group, HAS(P_GROUP));
  check_str(got->peer, want->peer, HAS(P_PEER));
  check_str(got->content, want->content, HAS(P_CONTENT));
  check_str(got->client_msg_id, want->client_msg_id, HAS(P_CLIENT_MSG_ID));
  check_str(got->text, want->text, HAS(P_TEXT));
  if (HAS(P_PAYLOAD))
    check_bytes(got->payload, got->payload_len, want->payload,
                want->payload_len);
  else
    check_bytes(got->payload, got->payload_len, NULL, 0);
  NUM(P_CAPS, caps);
  NUM(P_TYPE, type);
  NUM(P_STATUS, status);
  NUM(P_REASON, reason);
  NUM(P_LIMIT, limit);
  NUM(P_FAILED_CMD, failed_cmd);
  NUM(P_RETRYABLE, retryable);
  NUM(P_HAS_MORE, has_more);
  NUM(P_AFTER_SEQ, has_after_seq);
  NUM(P_AFTER_SEQ, after_seq);
  NUM(P_MSG_ID, msg_id);
  NUM(P_INBOX_SEQ, inbox_seq);
  NUM(P_LAST_INBOX_SEQ, last_inbox_seq);
  NUM(P_ACK_SEQ, ack_seq);
  NUM(P_BEFORE_CONV_SEQ, before_conv_seq);
  NUM(P_MEMBERS, n_members);
  for (size_t i = 0; i < got->n_members; i++)
    assert_string_equal(got->members[i], want->members[i]);
  NUM(P_ITEMS, n_items);
  for (size_t i = 0; i < got->n_items; i++)
    check_item(&got->items[i], &want->items[i]);
  check_str(got->after_group, want->after_group, HAS(P_AFTER_GROUP));
  check_str(got->after_member, want->after_member, HAS(P_AFTER_MEMBER));
  NUM(P_GROUPS, n_groups);
  for (size_t i = 0; i < got->n_groups; i++)
    assert_string_equal(got->groups[i], want->groups[i]);
  NUM(P_CONV_SEQ, conv_seq);
  NUM(P_READ_SEQ, read_seq);
  NUM(P_UNREAD, unread);
  NUM(P_READ_COUNT, read_count);
  NUM(P_MEMBER_COUNT, member_count);
  check_str(got->after_uid, want->after_uid, HAS(P_AFTER_UID));
  NUM(P_CONVS, n_convs);
  for (size_t i = 0; i < got->n_convs; i++)
    check_conv(&got->convs[i], &want->convs[i]);
  NUM(P_SUBSCRIBE, subscribe);
  NUM(P_ONLINE, online);
  NUM(P_LAST_SEEN, last_seen);
  NUM(P_PRESENCES, n_presences);
  for (size_t i = 0; i < got->n_presences; i++) {
    assert_string_equal(got->presences[i].uid, want->presences[i].uid);
    assert_int_equal(got->presences[i].online, want->presences[i].online);
    assert_int_equal(got->presences[i].last_seen,
                     want->presences[i].last_seen);
  }
#undef NUM
#undef HAS
}

/* Encodes `p` as a frame, checks the frame, decodes it into `out`. */
static void roundtrip(const struct mim_packet *p, struct mim_packet *out) {
  uint8_t buf[2048], body[2048];
  struct mim_frame f;
  size_t len = 0, consumed = 0, body_len = 0;

  assert_int_equal(mim_packet_encode(p, buf, sizeof(buf), &len), 0);
  assert_int_equal(mim_packet_encoded_size(p), len);
  assert_int_equal(mim_frame_decode(buf, len, 0, &f, &consumed), 0);
  assert_int_equal(consumed, len);
  assert_int_equal(f.header.version, MIM_PROTOCOL_VERSION);
  assert_int_equal(f.header.cmd, p->cmd);
  /* encode_body writes exactly the frame's body. */
  assert_int_equal(mim_packet_encode_body(p, body, sizeof(body), &body_len), 0);
  assert_int_equal(body_len, f.header.body_len);
  if (body_len > 0)
    assert_memory_equal(body, f.body, body_len);
  mim_packet_init(out);
  assert_int_equal(mim_packet_decode(out, f.header.cmd, f.body, body_len), 0);
}

/* ---- commands ---- */

/* The request -> reply table: every request's reply is named by its
 * *_RSP (or *_ACK) name, and commands that are not requests have none. */
static void cmd_reply_table(void **state) {
  (void)state;
  size_t pairs = 0;
  for (uint32_t c = 0; c < MIM_CMD__COUNT; c++) {
    int r = mim_cmd_reply(c);
    const char *n = mim_cmd_name(c);
    size_t len = strlen(n);
    bool req = len > 4 && strcmp(n + len - 4, "_REQ") == 0;
    if (c == MIM_CMD_SERVER_PUSH)
      req = true;
    if (c == MIM_CMD_TYPING_REQ)
      req = false; /* ephemeral: never answered (docs/protocol.md §20) */
    if (!req) {
      assert_int_equal(r, -EINVAL);
      continue;
    }
    assert_true(r >= 0);
    char want[64];
    if (c == MIM_CMD_SERVER_PUSH)
      snprintf(want, sizeof want, "SERVER_PUSH_ACK");
    else
      snprintf(want, sizeof want, "%.*s_RSP", (int)(len - 4), n);
    assert_string_equal(mim_cmd_name((uint32_t)r), want);
    pairs++;
  }
  /* 12 seed-era + 3 conversation + 2 roles + 1 change + 1 presence + 1
   * group sync */
  assert_int_equal(pairs, 20);
  assert_int_equal(mim_cmd_reply(MIM_CMD__COUNT), -EINVAL);
  assert_int_equal(mim_cmd_reply(MIM_RPC_HELLO), -EINVAL);
  assert_int_equal(mim_cmd_reply(UINT32_MAX), -EINVAL);
}

/* The one Error builder fills every field a client relies on. */
static void error_packet_builder(void **state) {
  (void)state;
  struct mim_packet e;
  mim_error_packet_init(&e, -MIM_ERR_BUSY, MIM_CMD_C2C_SEND_REQ, 42);
  assert_int_equal(e.cmd, MIM_CMD_ERROR);
  assert_int_equal(e.seq, 42);
  assert_int_equal(e.status, mim_err_wire_code(-MIM_ERR_BUSY));
  assert_string_equal(e.text, mim_strerror(-MIM_ERR_BUSY));
  assert_int_equal(e.failed_cmd, MIM_CMD_C2C_SEND_REQ);
  assert_true(e.retryable == mim_err_retryable(-MIM_ERR_BUSY));
  assert_true(e.retryable);
  mim_error_packet_init(&e, -MIM_ERR_MALFORMED, MIM_CMD_PULL_REQ, 0);
  assert_false(e.retryable);
  assert_int_equal(e.ts, 0);
}

static void cmd_names_and_known(void **state) {
  (void)state;
  for (uint32_t c = 0; c < MIM_CMD__COUNT; c++) {
    if (c == 39 || c == 47 || c == 53) /* unassigned */
      continue;
    assert_true(mim_cmd_known(c));
    assert_string_not_equal(mim_cmd_name(c), "UNKNOWN");
    for (uint32_t d = 0; d < c; d++)
      if (mim_cmd_known(d))
        assert_string_not_equal(mim_cmd_name(c), mim_cmd_name(d));
  }
  assert_string_equal(mim_cmd_name(MIM_CMD_HEARTBEAT_REQ), "HEARTBEAT_REQ");
  assert_string_equal(mim_cmd_name(MIM_CMD_C2C_SEND_REQ), "C2C_SEND_REQ");
  assert_string_equal(mim_cmd_name(MIM_CMD_SERVER_PUSH_ACK), "SERVER_PUSH_ACK");
  assert_false(mim_cmd_known(MIM_CMD__COUNT));
  assert_false(mim_cmd_known(MIM_RPC_HELLO));
  assert_false(mim_cmd_known(UINT32_MAX));
  assert_string_equal(mim_cmd_name(MIM_CMD__COUNT), "UNKNOWN");
  assert_string_equal(mim_cmd_name(UINT32_MAX), "UNKNOWN");
  assert_string_equal(mim_cmd_name(MIM_RPC_DELIVER), "RPC_DELIVER");
}

static void inbox_seq_field_numbers(void **state) {
  (void)state;
  assert_int_equal(mim_cmd_inbox_seq_field(MIM_CMD_C2C_PUSH), 9);
  assert_int_equal(mim_cmd_inbox_seq_field(MIM_CMD_C2G_PUSH), 10);
  assert_int_equal(mim_cmd_inbox_seq_field(MIM_CMD_SERVER_PUSH), 9);
  assert_int_equal(mim_cmd_inbox_seq_field(MIM_CMD_C2C_SEND_RSP), 0);
  assert_int_equal(mim_cmd_inbox_seq_field(MIM_CMD_PULL_RSP), 0);
  assert_int_equal(mim_cmd_inbox_seq_field(MIM_RPC_DELIVER), 0);
}

static void tables_match_protos(void **state) {
  char why[256] = "";
  (void)state;
  if (mim__codec_check_tables(why, sizeof(why)) != 0)
    fail_msg("codec tables: %s", why);
}

/* ---- header and frames ---- */

static void header_is_big_endian(void **state) {
  const uint8_t want[] = {0, 0, 0, 1, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d};
  struct mim_header h = {1, 0x01020304, 0x0a0b0c0d}, back;
  uint8_t buf[MIM_HEADER_SIZE];
  (void)state;

  mim_header_encode(buf, &h);
  assert_memory_equal(buf, want, sizeof(want));
  mim_header_decode(buf, &back);
  assert_int_equal(back.version, 1);
  assert_int_equal(back.cmd, 0x01020304);
  assert_int_equal(back.body_len, 0x0a0b0c0d);
}

static void frame_decode_short_header_is_eagain(void **state) {
  uint8_t buf[MIM_HEADER_SIZE] = {0};
  struct mim_frame f;
  size_t consumed = 0;
  (void)state;

  for (size_t len = 0; len < MIM_HEADER_SIZE; len++)
    assert_int_equal(mim_frame_decode(buf, len, 100, &f, &consumed), -EAGAIN);
  /* 12 bytes announcing an empty body is a whole frame. */
  assert_int_equal(mim_frame_decode(buf, sizeof(buf), 100, &f, &consumed), 0);
  assert_int_equal(consumed, MIM_HEADER_SIZE);
}

static void frame_decode_truncated_body_is_eagain(void **state) {
  uint8_t buf[64], body[20];
  struct mim_frame f;
  size_t len = 0, consumed = 0;
  (void)state;

  memset(body, 'x', sizeof(body));
  assert_int_equal(mim_frame_encode(buf, sizeof(buf), MIM_CMD_AUTH_REQ, body,
                                    sizeof(body), &len), 0);
  assert_int_equal(len, MIM_HEADER_SIZE + sizeof(body));
  for (size_t cut = MIM_HEADER_SIZE; cut < len; cut++)
    assert_int_equal(mim_frame_decode(buf, cut, 100, &f, &consumed), -EAGAIN);
  assert_int_equal(mim_frame_decode(buf, len, 100, &f, &consumed), 0);
  assert_ptr_equal(f.body, buf + MIM_HEADER_SIZE);
  assert_int_equal(f.header.body_len, sizeof(body));
}

static void frame_decode_body_over_max_is_too_big(void **state) {
  uint8_t buf[MIM_HEADER_SIZE];
  struct mim_frame f;
  size_t consumed = 0;
  (void)state;

  /* Only the header is there: the verdict must not wait for the body. */
  mim_header_encode(buf, &(struct mim_header){0, MIM_CMD_AUTH_REQ, 101});
  assert_int_equal(mim_frame_decode(buf, sizeof(buf), 100, &f, &consumed),
                   -MIM_ERR_FRAME_TOO_BIG);
  mim_header_encode(buf, &(struct mim_header){0, MIM_CMD_AUTH_REQ, 100});
  assert_int_equal(mim_frame_decode(buf, sizeof(buf), 100, &f, &consumed),
                   -EAGAIN);
  /* 0 means MIM_MAX_BODY_DEFAULT, as for the stream decoder. */
  mim_header_encode(buf, &(struct mim_header){0, 2, MIM_MAX_BODY_DEFAULT + 1});
  assert_int_equal(mim_frame_decode(buf, sizeof(buf), 0, &f, &consumed),
                   -MIM_ERR_FRAME_TOO_BIG);
  mim_header_encode(buf, &(struct mim_header){0, 2, UINT32_MAX});
  assert_int_equal(mim_frame_decode(buf, sizeof(buf), SIZE_MAX, &f, &consumed),
                   -EAGAIN);
}

static void frame_decode_walks_a_batch(void **state) {
  uint8_t buf[256];
  size_t len = 0, n = 0, off = 0, consumed;
  struct mim_frame f;
  (void)state;

  /* A MIM_CAP_BATCH websocket message: three frames back to back. */
  for (uint32_t i = 0; i < 3; i++) {
    uint8_t body[3] = {(uint8_t)i, (uint8_t)i, (uint8_t)i};
    assert_int_equal(mim_frame_encode(buf + len, sizeof(buf) - len, i, body,
                                      i, &n), 0);
    len += n;
  }
  for (uint32_t i = 0; i < 3; i++) {
    assert_int_equal(mim_frame_decode(buf + off, len - off, 100, &f,
                                      &consumed), 0);
    assert_int_equal(f.header.cmd, i);
    assert_int_equal(f.header.body_len, i);
    assert_ptr_equal(f.body, buf + off + MIM_HEADER_SIZE);
    off += consumed;
  }
  assert_int_equal(off, len);
  assert_int_equal(mim_frame_decode(buf + off, 0, 100, &f, &consumed), -EAGAIN);
}

static void frame_encode_reports_needed_size(void **state) {
  const uint8_t body[5] = {1, 2, 3, 4, 5};
  uint8_t buf[32];
  size_t len = 0;
  (void)state;

  for (size_t cap = 0; cap < MIM_HEADER_SIZE + sizeof(body); cap++) {
    len = 0;
    assert_int_equal(mim_frame_encode(buf, cap, 7, body, sizeof(body), &len),
                     -ENOBUFS);
    assert_int_equal(len, MIM_HEADER_SIZE + sizeof(body));
  }
  assert_int_equal(mim_frame_encode(NULL, 0, 1, NULL, 0, &len), -ENOBUFS);
  assert_int_equal(len, MIM_HEADER_SIZE);
  assert_int_equal(mim_frame_encode(buf, MIM_HEADER_SIZE, 1, NULL, 0, &len), 0);
  assert_int_equal(len, MIM_HEADER_SIZE);
}

static void frame_encode_body_in_place(void **state) {
  struct mim_packet p;
  uint8_t buf[128];
  size_t body_len = 0, len = 0, consumed = 0;
  struct mim_frame f;
  (void)state;

  /* The common pattern: encode the body after room for the header, then
   * frame it without a copy. */
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_SEND_REQ;
  p.to = "bob";
  p.content = "hi";
  assert_int_equal(mim_packet_encode_body(&p, buf + MIM_HEADER_SIZE,
                                          sizeof(buf) - MIM_HEADER_SIZE,
                                          &body_len), 0);
  assert_int_equal(mim_frame_encode(buf, sizeof(buf), p.cmd,
                                    buf + MIM_HEADER_SIZE, body_len, &len), 0);
  assert_int_equal(mim_frame_decode(buf, len, 0, &f, &consumed), 0);
  assert_int_equal(mim_packet_decode(&p, f.header.cmd, f.body,
                                     f.header.body_len), 0);
  assert_string_equal(p.to, "bob");
  assert_string_equal(p.content, "hi");
  mim_packet_finish(&p);
}

static void encode_with_field_appends_varint(void **state) {
  const uint8_t body[] = {0x0a, 0x01, 'x'};
  /* body, then tag 9<<3|0 = 0x48 and 300 as a varint (0xac 0x02). */
  const uint8_t want[] = {0x0a, 0x01, 'x', 0x48, 0xac, 0x02};
  uint8_t buf[64];
  struct mim_header h;
  size_t len = 0;
  (void)state;

  assert_int_equal(mim_frame_encode_with_field(buf, sizeof(buf), 8, body,
                                               sizeof(body), 9, 300, &len), 0);
  assert_int_equal(len, MIM_HEADER_SIZE + sizeof(want));
  mim_header_decode(buf, &h);
  assert_int_equal(h.cmd, 8);
  assert_int_equal(h.body_len, sizeof(want));
  assert_memory_equal(buf + MIM_HEADER_SIZE, want, sizeof(want));

  /* Too small: the needed size includes the appended field. */
  assert_int_equal(mim_frame_encode_with_field(buf, len - 1, 8, body,
                                               sizeof(body), 9, 300, &len),
                   -ENOBUFS);
  assert_int_equal(len, MIM_HEADER_SIZE + sizeof(want));

  /* field 0 or value 0: nothing appended. */
  assert_int_equal(mim_frame_encode_with_field(buf, sizeof(buf), 8, body,
                                               sizeof(body), 0, 300, &len), 0);
  assert_int_equal(len, MIM_HEADER_SIZE + sizeof(body));
  assert_int_equal(mim_frame_encode_with_field(buf, sizeof(buf), 8, body,
                                               sizeof(body), 9, 0, &len), 0);
  assert_int_equal(len, MIM_HEADER_SIZE + sizeof(body));
}

static void encode_with_field_sets_inbox_seq_of_pushes(void **state) {
  const uint32_t cmds[] = {MIM_CMD_C2C_PUSH, MIM_CMD_C2G_PUSH,
                           MIM_CMD_SERVER_PUSH};
  (void)state;

  for (size_t i = 0; i < MIM_ARRAY_SIZE(cmds); i++) {
    struct mim_packet p, want, got;
    uint8_t body[1024], buf[1100];
    size_t body_len = 0, len = 0, consumed = 0;
    struct mim_frame f;

    /* One body for the whole fan-out, encoded without an inbox_seq. */
    fill_all(&p, cmds[i]);
    p.inbox_seq = 0;
    assert_int_equal(mim_packet_encode_body(&p, body, sizeof(body),
                                            &body_len), 0);
    assert_int_equal(mim_frame_encode_with_field(
                         buf, sizeof(buf), cmds[i], body, body_len,
                         mim_cmd_inbox_seq_field(cmds[i]), 4242, &len), 0);
    assert_int_equal(mim_frame_decode(buf, len, 0, &f, &consumed), 0);
    mim_packet_init(&got);
    assert_int_equal(mim_packet_decode(&got, f.header.cmd, f.body,
                                       f.header.body_len), 0);
    want = p;
    want.inbox_seq = 4242;
    check_packet(&got, &want, cmd_fields[cmds[i]]);

    /* A body that already has one: the appended field wins, as protobuf
     * readers keep the last value of a scalar. */
    p.inbox_seq = 7;
    assert_int_equal(mim_packet_encode_body(&p, body, sizeof(body),
                                            &body_len), 0);
    assert_int_equal(mim_frame_encode_with_field(
                         buf, sizeof(buf), cmds[i], body, body_len,
                         mim_cmd_inbox_seq_field(cmds[i]), 4242, &len), 0);
    assert_int_equal(mim_frame_decode(buf, len, 0, &f, &consumed), 0);
    assert_int_equal(mim_packet_decode(&got, f.header.cmd, f.body,
                                       f.header.body_len), 0);
    assert_int_equal(got.inbox_seq, 4242);
    mim_packet_finish(&got);
  }
}

/* ---- client packets ---- */

static void roundtrip_every_client_cmd(void **state) {
  (void)state;
  for (uint32_t cmd = 0; cmd < MIM_CMD__COUNT; cmd++) {
    if (!mim_cmd_known(cmd))
      continue;
    struct mim_packet p, got;

    print_message("cmd %u %s\n", (unsigned)cmd, mim_cmd_name(cmd));
    fill_all(&p, cmd);
    roundtrip(&p, &got);
    check_packet(&got, &p, cmd_fields[cmd]);
    mim_packet_finish(&got);
  }
}

/* The protobuf field number of each packet field, per message, transcribed
 * from client.proto. A round trip cannot tell two swapped fields apart; the
 * numbers on the wire can. */
struct fnum {
  uint64_t bit;
  uint32_t num;
};
static const struct fnum auth_req_nums[] = {
  {P_TOKEN, 1}, {P_UID, 2}, {P_TS, 3}, {P_SEQ, 4}, {P_DEVICE, 5}, {P_CAPS, 6},
};
static const struct fnum auth_rsp_nums[] = {
  {P_STATUS, 1},         {P_TEXT, 2},    {P_TS, 3},   {P_SEQ, 4},
  {P_LAST_INBOX_SEQ, 5}, {P_ACK_SEQ, 6}, {P_CAPS, 7},
};
static const struct fnum logout_req_nums[] = {
  {P_TOKEN, 1}, {P_UID, 2}, {P_TS, 3}, {P_SEQ, 4},
};
static const struct fnum logout_rsp_nums[] = {{P_TS, 1}, {P_SEQ, 2}};
static const struct fnum c2c_send_req_nums[] = {
  {P_FROM, 1}, {P_TO, 2},          {P_CONTENT, 3}, {P_TS, 4},
  {P_SEQ, 5},  {P_CLIENT_MSG_ID, 6}, {P_TYPE, 7},
};
static const struct fnum ack_nums[] = {
  {P_MSG_ID, 1}, {P_TS, 2}, {P_SEQ, 3}, {P_INBOX_SEQ, 4},
};
static const struct fnum c2c_push_nums[] = {
  {P_FROM, 1}, {P_TO, 2},   {P_CONTENT, 3},       {P_MSG_ID, 4},    {P_TS, 5},
  {P_SEQ, 6},  {P_TYPE, 7}, {P_CLIENT_MSG_ID, 8}, {P_INBOX_SEQ, 9},
  {P_CONV_SEQ, 10},
};
static const struct fnum c2g_send_req_nums[] = {
  {P_FROM, 1}, {P_GROUP, 2},         {P_CONTENT, 3}, {P_TS, 4},
  {P_SEQ, 5},  {P_CLIENT_MSG_ID, 6}, {P_TYPE, 7},
};
static const struct fnum c2g_push_nums[] = {
  {P_FROM, 1}, {P_TO, 2},   {P_GROUP, 3},         {P_CONTENT, 4},
  {P_MSG_ID, 5}, {P_TS, 6}, {P_SEQ, 7},           {P_TYPE, 8},
  {P_CLIENT_MSG_ID, 9},     {P_INBOX_SEQ, 10}, {P_CONV_SEQ, 11},
};
static const struct fnum pull_req_nums[] = {
  {P_UID, 1}, {P_MSG_ID, 2}, {P_LIMIT, 3}, {P_TS, 4}, {P_SEQ, 5},
  {P_AFTER_SEQ, 6},
};
static const struct fnum pull_rsp_nums[] = {
  {P_ITEMS, 1}, {P_TS, 2}, {P_SEQ, 3}, {P_HAS_MORE, 4}, {P_LAST_INBOX_SEQ, 5},
};
static const struct fnum kick_nums[] = {
  {P_REASON, 1}, {P_TS, 2}, {P_SEQ, 3}, {P_UID, 4}, {P_TEXT, 5},
};
static const struct fnum error_nums[] = {
  {P_STATUS, 1},    {P_TEXT, 2},      {P_SEQ, 3},
  {P_FAILED_CMD, 4}, {P_RETRYABLE, 5}, {P_TS, 6},
};
static const struct fnum group_req_nums[] = {
  {P_GROUP, 1}, {P_MEMBERS, 2}, {P_TS, 3}, {P_SEQ, 4},
  {P_AFTER_GROUP, 5}, {P_LIMIT, 6}, {P_AFTER_MEMBER, 7},
};
static const struct fnum group_rsp_nums[] = {
  {P_GROUP, 1}, {P_MEMBERS, 2}, {P_TS, 3}, {P_SEQ, 4},
  {P_GROUPS, 5}, {P_HAS_MORE, 6},
};
static const struct fnum history_req_nums[] = {
  {P_PEER, 1},  {P_GROUP, 2}, {P_BEFORE_CONV_SEQ, 3},
  {P_LIMIT, 4}, {P_TS, 5},    {P_SEQ, 6}, {P_UID, 7},
};
static const struct fnum history_rsp_nums[] = {
  {P_ITEMS, 1}, {P_HAS_MORE, 2}, {P_TS, 3}, {P_SEQ, 4},
};
static const struct fnum group_manage_nums[] = {
  {P_GROUP, 1}, {P_TYPE, 2},  {P_TO, 3}, {P_UNTIL, 4},
  {P_CONTENT, 5}, {P_TEXT, 6}, {P_TS, 7}, {P_SEQ, 8},
};
static const struct fnum group_info_nums[] = {
  {P_GROUP, 1}, {P_FROM, 2},    {P_MEMBERS, 3}, {P_GROUPS, 4}, {P_CAPS, 5},
  {P_CONTENT, 6}, {P_TEXT, 7},  {P_TS, 8},      {P_SEQ, 9},
};
static const struct fnum server_push_nums[] = {
  {P_FROM, 1}, {P_TO, 2},   {P_CONTENT, 3},   {P_PAYLOAD, 4},  {P_MSG_ID, 5},
  {P_TS, 6},   {P_SEQ, 7},  {P_TYPE, 8},      {P_INBOX_SEQ, 9}, {P_MEMBERS, 10},
};
static const struct fnum conv_list_req_nums[] = {
  {P_MSG_ID, 1}, {P_LIMIT, 2}, {P_TS, 3}, {P_SEQ, 4}, {P_UID, 5},
};
static const struct fnum conv_list_rsp_nums[] = {
  {P_CONVS, 1}, {P_HAS_MORE, 2}, {P_TS, 3}, {P_SEQ, 4},
};
static const struct fnum mark_read_req_nums[] = {
  {P_PEER, 1}, {P_GROUP, 2}, {P_CONV_SEQ, 3}, {P_TS, 4}, {P_SEQ, 5},
};
static const struct fnum read_state_nums[] = {
  {P_PEER, 1}, {P_GROUP, 2}, {P_READ_SEQ, 3}, {P_UNREAD, 4}, {P_TS, 5},
  {P_SEQ, 6},
};
static const struct fnum read_receipt_nums[] = {
  {P_FROM, 1}, {P_READ_SEQ, 2}, {P_TS, 3}, {P_SEQ, 4},
};
static const struct fnum delivered_nums[] = {
  {P_FROM, 1}, {P_CONV_SEQ, 2}, {P_TS, 3}, {P_SEQ, 4},
};
static const struct fnum read_by_req_nums[] = {
  {P_GROUP, 1}, {P_CONV_SEQ, 2}, {P_AFTER_UID, 3}, {P_LIMIT, 4}, {P_TS, 5},
  {P_SEQ, 6},
};
static const struct fnum msg_change_req_nums[] = {
  {P_MSG_ID, 1}, {P_TYPE, 2}, {P_CONTENT, 3}, {P_PEER, 4}, {P_GROUP, 5},
  {P_TS, 6},     {P_SEQ, 7},
};
static const struct fnum msg_changed_nums[] = {
  {P_MSG_ID, 1},   {P_TYPE, 2},    {P_FROM, 3},        {P_PEER, 4},
  {P_GROUP, 5},    {P_CONV_SEQ, 6}, {P_CONTENT, 7},    {P_CHANGE_TIME, 8},
  {P_TS, 9},       {P_SEQ, 10},
};
static const struct fnum read_by_rsp_nums[] = {
  {P_GROUP, 1},      {P_CONV_SEQ, 2}, {P_READ_COUNT, 3}, {P_MEMBER_COUNT, 4},
  {P_MEMBERS, 5},    {P_HAS_MORE, 6}, {P_TS, 7},         {P_SEQ, 8},
};

static const struct fnum typing_req_nums[] = {
  {P_PEER, 1}, {P_GROUP, 2}, {P_TS, 3}, {P_SEQ, 4},
};
static const struct fnum typing_nums[] = {
  {P_FROM, 1}, {P_GROUP, 2}, {P_TS, 3}, {P_SEQ, 4},
};
static const struct fnum presence_req_nums[] = {
  {P_MEMBERS, 1}, {P_SUBSCRIBE, 2}, {P_TS, 3}, {P_SEQ, 4},
};
static const struct fnum presence_rsp_nums[] = {
  {P_PRESENCES, 1}, {P_TS, 2}, {P_SEQ, 3},
};
static const struct fnum presence_nums[] = {
  {P_UID, 1}, {P_ONLINE, 2}, {P_LAST_SEEN, 3}, {P_TS, 4}, {P_SEQ, 5},
};
static const struct fnum group_sync_req_nums[] = {
  {P_GROUP, 1}, {P_AFTER_SEQ, 2}, {P_LIMIT, 3}, {P_TS, 4}, {P_SEQ, 5},
};
static const struct fnum group_sync_rsp_nums[] = {
  {P_ITEMS, 1}, {P_HAS_MORE, 2}, {P_AFTER_SEQ, 3}, {P_CONV_SEQ, 4},
  {P_TS, 5},    {P_SEQ, 6},
};

#define NUMS(a) {a, MIM_ARRAY_SIZE(a)}
static const struct {
  const struct fnum *nums;
  size_t n;
} cmd_nums[MIM_CMD__COUNT] = {
  [MIM_CMD_AUTH_REQ] = NUMS(auth_req_nums),
  [MIM_CMD_AUTH_RSP] = NUMS(auth_rsp_nums),
  [MIM_CMD_LOGOUT_REQ] = NUMS(logout_req_nums),
  [MIM_CMD_LOGOUT_RSP] = NUMS(logout_rsp_nums),
  [MIM_CMD_C2C_SEND_REQ] = NUMS(c2c_send_req_nums),
  [MIM_CMD_C2C_SEND_RSP] = NUMS(ack_nums),
  [MIM_CMD_C2C_PUSH] = NUMS(c2c_push_nums),
  [MIM_CMD_C2C_PUSH_ACK] = NUMS(ack_nums),
  [MIM_CMD_C2G_SEND_REQ] = NUMS(c2g_send_req_nums),
  [MIM_CMD_C2G_SEND_RSP] = NUMS(ack_nums),
  [MIM_CMD_C2G_PUSH] = NUMS(c2g_push_nums),
  [MIM_CMD_C2G_PUSH_ACK] = NUMS(ack_nums),
  [MIM_CMD_PULL_REQ] = NUMS(pull_req_nums),
  [MIM_CMD_PULL_RSP] = NUMS(pull_rsp_nums),
  [MIM_CMD_KICK] = NUMS(kick_nums),
  [MIM_CMD_ERROR] = NUMS(error_nums),
  [MIM_CMD_GROUP_CREATE_REQ] = NUMS(group_req_nums),
  [MIM_CMD_GROUP_CREATE_RSP] = NUMS(group_rsp_nums),
  [MIM_CMD_GROUP_ADD_REQ] = NUMS(group_req_nums),
  [MIM_CMD_GROUP_ADD_RSP] = NUMS(group_rsp_nums),
  [MIM_CMD_GROUP_REMOVE_REQ] = NUMS(group_req_nums),
  [MIM_CMD_GROUP_REMOVE_RSP] = NUMS(group_rsp_nums),
  [MIM_CMD_GROUP_LIST_REQ] = NUMS(group_req_nums),
  [MIM_CMD_GROUP_LIST_RSP] = NUMS(group_rsp_nums),
  [MIM_CMD_HISTORY_REQ] = NUMS(history_req_nums),
  [MIM_CMD_HISTORY_RSP] = NUMS(history_rsp_nums),
  [MIM_CMD_SERVER_PUSH] = NUMS(server_push_nums),
  [MIM_CMD_SERVER_PUSH_ACK] = NUMS(ack_nums),
  [MIM_CMD_CONV_LIST_REQ] = NUMS(conv_list_req_nums),
  [MIM_CMD_CONV_LIST_RSP] = NUMS(conv_list_rsp_nums),
  [MIM_CMD_MARK_READ_REQ] = NUMS(mark_read_req_nums),
  [MIM_CMD_MARK_READ_RSP] = NUMS(read_state_nums),
  [MIM_CMD_READ_SYNC] = NUMS(read_state_nums),
  [MIM_CMD_READ_RECEIPT] = NUMS(read_receipt_nums),
  [MIM_CMD_READ_BY_REQ] = NUMS(read_by_req_nums),
  [MIM_CMD_READ_BY_RSP] = NUMS(read_by_rsp_nums),
  [MIM_CMD_DELIVERED] = NUMS(delivered_nums),
  [MIM_CMD_GROUP_MANAGE_REQ] = NUMS(group_manage_nums),
  [MIM_CMD_GROUP_MANAGE_RSP] = NUMS(group_rsp_nums),
  [MIM_CMD_GROUP_INFO_REQ] = NUMS(group_req_nums),
  [MIM_CMD_GROUP_INFO_RSP] = NUMS(group_info_nums),
  [MIM_CMD_MSG_CHANGE_REQ] = NUMS(msg_change_req_nums),
  [MIM_CMD_MSG_CHANGE_RSP] = NUMS(msg_changed_nums),
  [MIM_CMD_MSG_CHANGED] = NUMS(msg_changed_nums),
  [MIM_CMD_TYPING_REQ] = NUMS(typing_req_nums),
  [MIM_CMD_TYPING] = NUMS(typing_nums),
  [MIM_CMD_PRESENCE_REQ] = NUMS(presence_req_nums),
  [MIM_CMD_PRESENCE_RSP] = NUMS(presence_rsp_nums),
  [MIM_CMD_PRESENCE] = NUMS(presence_nums),
  [MIM_CMD_GROUP_SYNC_REQ] = NUMS(group_sync_req_nums),
  [MIM_CMD_GROUP_SYNC_RSP] = NUMS(group_sync_rsp_nums),
};

/* `src` with every field but the one of `bit` cleared. */
static void keep_only(struct mim_packet *p, const struct mim_packet *src,
                      uint64_t bit) {
  mim_packet_init(p);
  p->cmd = src->cmd;
  switch (bit) {
#define KEEP(b, m)                                                             \
  case b:                                                                      \
    p->m = src->m;                                                             \
    break
    KEEP(P_SEQ, seq);
    KEEP(P_TS, ts);
    KEEP(P_TOKEN, token);
    KEEP(P_UID, uid);
    KEEP(P_DEVICE, device);
    KEEP(P_FROM, from);
    KEEP(P_TO, to);
    KEEP(P_GROUP, group);
    KEEP(P_PEER, peer);
    KEEP(P_CONTENT, content);
    KEEP(P_CLIENT_MSG_ID, client_msg_id);
    KEEP(P_TEXT, text);
    KEEP(P_CAPS, caps);
    KEEP(P_TYPE, type);
    KEEP(P_STATUS, status);
    KEEP(P_REASON, reason);
    KEEP(P_LIMIT, limit);
    KEEP(P_FAILED_CMD, failed_cmd);
    KEEP(P_RETRYABLE, retryable);
    KEEP(P_HAS_MORE, has_more);
    KEEP(P_MSG_ID, msg_id);
    KEEP(P_INBOX_SEQ, inbox_seq);
    KEEP(P_LAST_INBOX_SEQ, last_inbox_seq);
    KEEP(P_ACK_SEQ, ack_seq);
    KEEP(P_BEFORE_CONV_SEQ, before_conv_seq);
    KEEP(P_AFTER_GROUP, after_group);
    KEEP(P_CONV_SEQ, conv_seq);
    KEEP(P_READ_SEQ, read_seq);
    KEEP(P_UNREAD, unread);
    KEEP(P_READ_COUNT, read_count);
    KEEP(P_MEMBER_COUNT, member_count);
    KEEP(P_AFTER_UID, after_uid);
    KEEP(P_UNTIL, until);
    KEEP(P_AFTER_MEMBER, after_member);
    KEEP(P_CHANGE_TIME, change_time);
    KEEP(P_SUBSCRIBE, subscribe);
    KEEP(P_ONLINE, online);
    KEEP(P_LAST_SEEN, last_seen);
#undef KEEP
  case P_PRESENCES:
    p->presences = src->presences;
    p->n_presences = src->n_presences;
    break;
  case P_CONVS:
    p->convs = src->convs;
    p->n_convs = src->n_convs;
    break;
  case P_GROUPS:
    p->groups = src->groups;
    p->n_groups = src->n_groups;
    break;
  case P_PAYLOAD:
    p->payload = src->payload;
    p->payload_len = src->payload_len;
    break;
  case P_AFTER_SEQ:
    p->has_after_seq = src->has_after_seq;
    p->after_seq = src->after_seq;
    break;
  case P_MEMBERS:
    p->members = src->members;
    p->n_members = src->n_members;
    break;
  case P_ITEMS:
    p->items = src->items;
    p->n_items = src->n_items;
    break;
  default:
    fail_msg("bit %#llx", (unsigned long long)bit);
  }
}

/* Whether a field goes out length-delimited (wire type 2) or as a varint. */
static bool length_delimited(uint64_t bit) {
  return (bit & (P_TOKEN | P_UID | P_DEVICE | P_FROM | P_TO | P_GROUP |
                 P_PEER | P_CONTENT | P_CLIENT_MSG_ID | P_TEXT | P_PAYLOAD |
                 P_MEMBERS | P_ITEMS | P_AFTER_GROUP | P_GROUPS |
                 P_AFTER_UID | P_CONVS | P_AFTER_MEMBER | P_PRESENCES)) !=
         0;
}

/* The first tag of an encoded body (one- or two-byte varint). */
static uint32_t first_tag(const uint8_t *buf, size_t len) {
  assert_true(len >= 1);
  if (buf[0] < 0x80)
    return buf[0];
  assert_true(len >= 2 && buf[1] < 0x80);
  return (uint32_t)(buf[0] & 0x7f) | (uint32_t)buf[1] << 7;
}

static void fields_have_their_proto_numbers(void **state) {
  (void)state;
  for (uint32_t cmd = 0; cmd < MIM_CMD__COUNT; cmd++) {
    if (!mim_cmd_known(cmd))
      continue;
    uint64_t seen = 0;
    struct mim_packet all, one;

    fill_all(&all, cmd);
    for (size_t i = 0; i < cmd_nums[cmd].n; i++) {
      const struct fnum *fn = &cmd_nums[cmd].nums[i];
      uint8_t buf[1024];
      size_t len = 0;

      print_message("cmd %s field %u\n", mim_cmd_name(cmd), (unsigned)fn->num);
      keep_only(&one, &all, fn->bit);
      assert_int_equal(mim_packet_encode_body(&one, buf, sizeof(buf), &len),
                       0);
      assert_int_equal(first_tag(buf, len),
                       fn->num << 3 | (length_delimited(fn->bit) ? 2 : 0));
      seen |= fn->bit;
    }
    /* The numbers cover exactly what the command carries. */
    assert_int_equal(seen, cmd_fields[cmd]);
  }
}

/* PullMsg, the element of pull and history replies: each field of an item
 * alone, inside a C2SPullMessageResponse {msg: [item]}. */
static void pull_item_fields_have_their_proto_numbers(void **state) {
  static const struct {
    size_t field; /* 0..10, the switch below */
    uint32_t tag;
  } want[] = {
    {0, 1 << 3 | 2},  {1, 9 << 3 | 2},  {2, 2 << 3 | 2}, {3, 3 << 3 | 2},
    {4, 11 << 3 | 2}, {5, 12 << 3 | 2}, {6, 4 << 3},     {7, 5 << 3},
    {8, 8 << 3},      {9, 13 << 3},     {10, 10 << 3},
  };
  (void)state;

  for (size_t i = 0; i < MIM_ARRAY_SIZE(want); i++) {
    const struct mim_pull_item *src = &items[0];
    struct mim_pull_item it = {0};
    struct mim_packet p;
    uint8_t buf[256];
    size_t len = 0;

    switch (want[i].field) {
    case 0: it.from = src->from; break;
    case 1: it.to = src->to; break;
    case 2: it.group = src->group; break;
    case 3: it.content = src->content; break;
    case 4: it.client_msg_id = src->client_msg_id; break;
    case 5:
      it.payload = src->payload;
      it.payload_len = src->payload_len;
      break;
    case 6: it.msg_id = src->msg_id; break;
    case 7: it.send_time = src->send_time; break;
    case 8: it.inbox_seq = src->inbox_seq; break;
    case 9: it.conv_seq = src->conv_seq; break;
    case 10: it.type = src->type; break;
    }
    mim_packet_init(&p);
    p.cmd = MIM_CMD_PULL_RSP;
    p.items = &it;
    p.n_items = 1;
    assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len), 0);
    /* 0x0a <len> <the item's fields> */
    assert_true(len >= 3);
    assert_int_equal(buf[0], 0x0a);
    assert_int_equal(buf[1], len - 2);
    assert_int_equal(first_tag(buf + 2, len - 2), want[i].tag);
  }
}

static void zero_fields_are_omitted(void **state) {
  struct mim_packet p;
  uint8_t buf[64];
  size_t len = 99;
  (void)state;

  /* A default C2CSendResponse: every field zero, nothing on the wire. */
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_SEND_RSP;
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len), 0);
  assert_int_equal(len, 0);
  assert_int_equal(mim_packet_encoded_size(&p), MIM_HEADER_SIZE);

  /* "" is absent like NULL; false is absent; only uid remains. */
  p.cmd = MIM_CMD_AUTH_REQ;
  p.token = "";
  p.uid = "al";
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len), 0);
  assert_int_equal(len, 4);
  assert_memory_equal(buf, ((const uint8_t[]){0x12, 0x02, 'a', 'l'}), 4);

  mim_packet_init(&p);
  p.cmd = MIM_CMD_ERROR;
  p.retryable = false;
  p.status = 0;
  p.text = "";
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len), 0);
  assert_int_equal(len, 0);

  /* Empty arrays are absent too, whatever their pointer. */
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_RSP;
  p.items = items;
  p.n_items = 0;
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len), 0);
  assert_int_equal(len, 0);
}

static void after_seq_presence_round_trips(void **state) {
  struct mim_packet p, got;
  uint8_t buf[64];
  size_t len = 0;
  (void)state;

  /* Present and zero: written as field 6 = 0. */
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.has_after_seq = true;
  p.after_seq = 0;
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len), 0);
  assert_int_equal(len, 2);
  assert_memory_equal(buf, ((const uint8_t[]){0x30, 0x00}), 2);
  mim_packet_init(&got);
  assert_int_equal(mim_packet_decode(&got, p.cmd, buf, len), 0);
  assert_true(got.has_after_seq);
  assert_int_equal(got.after_seq, 0);

  /* Absent: a stray after_seq value is not written. */
  p.has_after_seq = false;
  p.after_seq = 99;
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len), 0);
  assert_int_equal(len, 0);
  assert_int_equal(mim_packet_decode(&got, p.cmd, buf, len), 0);
  assert_false(got.has_after_seq);
  assert_int_equal(got.after_seq, 0);

  /* The seed's pull {uid, limit: 10} has no after_seq. */
  assert_int_equal(mim_packet_decode(&got, p.cmd,
                                     (const uint8_t[]){0x0a, 0x01, 'a', 0x18,
                                                       0x0a}, 5), 0);
  assert_false(got.has_after_seq);
  assert_string_equal(got.uid, "a");
  assert_int_equal(got.limit, 10);
  mim_packet_finish(&got);
}

/* AuthRequest {token: "token", uid: "alice", ts: 123} as the seed's proto3
 * encoder writes it. */
static const uint8_t seed_auth[] = {
  0x0a, 0x05, 't', 'o', 'k', 'e', 'n', /* 1: token */
  0x12, 0x05, 'a', 'l', 'i', 'c', 'e', /* 2: uid */
  0x18, 0x7b,                          /* 3: ts = 123 */
};

static void seed_auth_request_decodes(void **state) {
  struct mim_packet p;
  uint8_t buf[64];
  size_t len = 0;
  (void)state;

  mim_packet_init(&p);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_AUTH_REQ, seed_auth,
                                     sizeof(seed_auth)), 0);
  assert_int_equal(p.cmd, MIM_CMD_AUTH_REQ);
  assert_string_equal(p.token, "token");
  assert_string_equal(p.uid, "alice");
  assert_int_equal(p.ts, 123);
  assert_int_equal(p.seq, 0);
  assert_string_equal(p.device, "");
  assert_int_equal(p.caps, 0);

  /* And we write the very same bytes back. */
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len), 0);
  assert_int_equal(len, sizeof(seed_auth));
  assert_memory_equal(buf, seed_auth, sizeof(seed_auth));
  mim_packet_finish(&p);
}

static void seed_frame_decodes(void **state) {
  uint8_t msg[MIM_HEADER_SIZE + sizeof(seed_auth)] = {
    0, 0, 0, 0, /* version 0 */
    0, 0, 0, 2, /* cmd 2: AuthReq */
    0, 0, 0, sizeof(seed_auth),
  };
  struct mim_packet p;
  struct mim_frame f;
  size_t consumed = 0;
  (void)state;

  memcpy(msg + MIM_HEADER_SIZE, seed_auth, sizeof(seed_auth));
  assert_int_equal(mim_frame_decode(msg, sizeof(msg), 512, &f, &consumed), 0);
  assert_int_equal(consumed, sizeof(msg));
  assert_int_equal(f.header.version, 0);
  mim_packet_init(&p);
  assert_int_equal(mim_packet_decode(&p, f.header.cmd, f.body,
                                     f.header.body_len), 0);
  assert_string_equal(p.uid, "alice");
  mim_packet_finish(&p);
}

static void unknown_fields_are_ignored(void **state) {
  uint8_t body[sizeof(seed_auth) + 16];
  size_t n = sizeof(seed_auth);
  struct mim_packet p;
  (void)state;

  /* A newer peer's additions: field 99 as a varint and as a string. */
  memcpy(body, seed_auth, n);
  body[n++] = 0x98; /* 99 << 3 | 0 = 792 */
  body[n++] = 0x06;
  body[n++] = 0x2a;
  body[n++] = 0x9a; /* 99 << 3 | 2 */
  body[n++] = 0x06;
  body[n++] = 0x02;
  body[n++] = 'h';
  body[n++] = 'i';
  mim_packet_init(&p);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_AUTH_REQ, body, n), 0);
  assert_string_equal(p.token, "token");
  assert_string_equal(p.uid, "alice");
  assert_int_equal(p.ts, 123);
  mim_packet_finish(&p);
}

static void garbage_bodies_are_malformed(void **state) {
  static const struct {
    const char *what;
    uint8_t bytes[12];
    size_t len;
  } cases[] = {
    {"overlong varint", {0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                         0xff, 0xff, 0x01}, 12},
    {"string past the end", {0x0a, 0x05, 't', 'o'}, 4},
    {"varint cut short", {0x18, 0xff}, 2},
    {"tag cut short", {0x98}, 1},
    {"field number 0", {0x00, 0x01}, 2},
    {"start group", {0x0b}, 1},
  };
  struct mim_packet p;
  (void)state;

  mim_packet_init(&p);
  for (size_t i = 0; i < MIM_ARRAY_SIZE(cases); i++) {
    print_message("%s\n", cases[i].what);
    assert_int_equal(mim_packet_decode(&p, MIM_CMD_AUTH_REQ, cases[i].bytes,
                                       cases[i].len), -MIM_ERR_MALFORMED);
    assert_null(p.priv_);
    assert_int_equal(p.cmd, 0);
  }
  /* token (field 1, a string) sent with the varint wire type. */
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_AUTH_REQ,
                                     (const uint8_t[]){0x08, 0x01}, 2),
                   -MIM_ERR_MALFORMED);
  /* A pull reply whose embedded PullMsg is cut. */
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_PULL_RSP,
                                     (const uint8_t[]){0x0a, 0x04, 0x0a, 0x05,
                                                       'a', 'b'}, 6),
                   -MIM_ERR_MALFORMED);
  /* RPC bodies go through the same checks. */
  struct mim_rpc r;
  mim_rpc_init(&r);
  assert_int_equal(mim_rpc_decode(&r, MIM_RPC_HELLO,
                                  (const uint8_t[]){0x0a, 0x09, 'g'}, 3),
                   -MIM_ERR_MALFORMED);
  assert_null(r.priv_);
}

static void out_of_range_msg_id_is_malformed(void **state) {
  /* C2CSendResponse.msg_id = -1 (ten-byte varint). */
  const uint8_t negative[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                              0xff, 0xff, 0xff, 0xff, 0x01};
  /* msg_id = 2^53, one past MIM_MSG_ID_MAX. */
  const uint8_t too_big[] = {0x08, 0x80, 0x80, 0x80, 0x80,
                             0x80, 0x80, 0x80, 0x10};
  /* 2^53 - 1 is fine. */
  const uint8_t max[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f};
  /* A pull reply with one item whose msg_id (field 4) is -1. */
  const uint8_t item[] = {0x0a, 0x0b, 0x20, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0xff, 0xff, 0x01};
  struct mim_packet p;
  (void)state;

  mim_packet_init(&p);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_C2C_SEND_RSP, negative,
                                     sizeof(negative)), -MIM_ERR_MALFORMED);
  assert_null(p.priv_);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_C2C_SEND_RSP, too_big,
                                     sizeof(too_big)), -MIM_ERR_MALFORMED);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_C2C_PUSH_ACK, max,
                                     sizeof(max)), 0);
  assert_int_equal(p.msg_id, MIM_MSG_ID_MAX);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_PULL_RSP, item,
                                     sizeof(item)), -MIM_ERR_MALFORMED);
  assert_int_equal(p.n_items, 0);
  assert_null(p.items);
  assert_null(p.priv_);
  mim_packet_finish(&p);
}

static void invalid_packets_do_not_encode(void **state) {
  struct mim_packet p;
  uint8_t buf[64];
  size_t len = 0;
  (void)state;

  /* An id no reader would accept is refused rather than written. */
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_SEND_RSP;
  p.msg_id = MIM_MSG_ID_MAX + 1;
  assert_int_equal(mim_packet_encode(&p, buf, sizeof(buf), &len), -EINVAL);
  assert_int_equal(mim_packet_encoded_size(&p), 0);
  /* A length without its data. */
  mim_packet_init(&p);
  p.cmd = MIM_CMD_SERVER_PUSH;
  p.payload_len = 3;
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len),
                   -EINVAL);
}

static void unknown_cmd_is_refused(void **state) {
  struct mim_packet p;
  struct mim_rpc r;
  uint8_t buf[64];
  size_t len = 0;
  (void)state;

  mim_packet_init(&p);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD__COUNT, seed_auth,
                                     sizeof(seed_auth)), -MIM_ERR_UNKNOWN_CMD);
  assert_int_equal(mim_packet_decode(&p, MIM_RPC_HELLO, NULL, 0),
                   -MIM_ERR_UNKNOWN_CMD);
  assert_null(p.priv_);
  p.cmd = MIM_CMD__COUNT;
  assert_int_equal(mim_packet_encode(&p, buf, sizeof(buf), &len),
                   -MIM_ERR_UNKNOWN_CMD);
  assert_int_equal(mim_packet_encode_body(&p, buf, sizeof(buf), &len),
                   -MIM_ERR_UNKNOWN_CMD);
  assert_int_equal(mim_packet_encoded_size(&p), 0);

  mim_rpc_init(&r);
  assert_int_equal(mim_rpc_decode(&r, MIM_RPC_SESSION + 1, NULL, 0),
                   -MIM_ERR_UNKNOWN_CMD);
  assert_int_equal(mim_rpc_decode(&r, MIM_RPC_HELLO - 1, NULL, 0),
                   -MIM_ERR_UNKNOWN_CMD);
  assert_int_equal(mim_rpc_decode(&r, MIM_CMD_AUTH_REQ, NULL, 0),
                   -MIM_ERR_UNKNOWN_CMD);
  r.cmd = MIM_CMD_AUTH_REQ;
  assert_int_equal(mim_rpc_encode(&r, buf, sizeof(buf), &len),
                   -MIM_ERR_UNKNOWN_CMD);
  assert_int_equal(mim_rpc_encoded_size(&r), 0);
}

static void strings_are_never_null_after_decode(void **state) {
  /* A pull reply holding one empty PullMsg. */
  const uint8_t body[] = {0x0a, 0x00};
  struct mim_packet p;
  struct mim_rpc r;
  (void)state;

  mim_packet_init(&p);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_PULL_RSP, body, sizeof(body)),
                   0);
  const char *const all[] = {p.token, p.uid,     p.device,        p.from,
                             p.to,    p.group,   p.peer,          p.content,
                             p.client_msg_id, p.text};
  for (size_t i = 0; i < MIM_ARRAY_SIZE(all); i++)
    assert_string_equal(all[i], "");
  assert_int_equal(p.n_items, 1);
  assert_string_equal(p.items[0].from, "");
  assert_string_equal(p.items[0].to, "");
  assert_string_equal(p.items[0].group, "");
  assert_string_equal(p.items[0].content, "");
  assert_string_equal(p.items[0].client_msg_id, "");
  assert_null(p.items[0].payload);
  assert_int_equal(p.items[0].payload_len, 0);
  mim_packet_finish(&p);

  mim_rpc_init(&r);
  assert_int_equal(mim_rpc_decode(&r, MIM_RPC_SESSIONS, body, sizeof(body)),
                   0);
  assert_string_equal(r.gateway_id, "");
  assert_string_equal(r.secret, "");
  assert_string_equal(r.text, "");
  assert_int_equal(r.n_sessions, 1);
  assert_string_equal(r.sessions[0].uid, "");
  assert_string_equal(r.sessions[0].device, "");
  mim_rpc_finish(&r);
}

static void heartbeat_has_an_empty_body(void **state) {
  struct mim_packet p;
  uint8_t buf[MIM_HEADER_SIZE];
  size_t len = 99;
  struct mim_header h;
  (void)state;

  mim_packet_init(&p);
  p.cmd = MIM_CMD_HEARTBEAT_REQ;
  p.seq = 5; /* not carried: the body is empty */
  assert_int_equal(mim_packet_encode_body(&p, NULL, 0, &len), 0);
  assert_int_equal(len, 0);
  assert_int_equal(mim_packet_encode(&p, buf, sizeof(buf), &len), 0);
  assert_int_equal(len, MIM_HEADER_SIZE);
  mim_header_decode(buf, &h);
  assert_int_equal(h.cmd, MIM_CMD_HEARTBEAT_REQ);
  assert_int_equal(h.body_len, 0);

  assert_int_equal(mim_packet_decode(&p, MIM_CMD_HEARTBEAT_RSP, NULL, 0), 0);
  assert_int_equal(p.cmd, MIM_CMD_HEARTBEAT_RSP);
  /* Bytes in a heartbeat mean nothing and are ignored, even garbage. */
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_HEARTBEAT_REQ,
                                     (const uint8_t[]){0xff, 0xff}, 2), 0);
  assert_int_equal(p.cmd, MIM_CMD_HEARTBEAT_REQ);
  assert_int_equal(p.seq, 0);
  mim_packet_finish(&p);
}

static void packet_encode_reports_needed_size(void **state) {
  struct mim_packet p;
  uint8_t buf[2048];
  size_t need, len = 0, body_len = 0;
  (void)state;

  fill_all(&p, MIM_CMD_PULL_RSP);
  need = mim_packet_encoded_size(&p);
  assert_true(need > MIM_HEADER_SIZE);
  for (size_t cap = 0; cap < need; cap += 7) {
    len = 0;
    assert_int_equal(mim_packet_encode(&p, buf, cap, &len), -ENOBUFS);
    assert_int_equal(len, need);
  }
  assert_int_equal(mim_packet_encode(&p, buf, need - 1, &len), -ENOBUFS);
  assert_int_equal(mim_packet_encode(&p, buf, need, &len), 0);
  assert_int_equal(len, need);
  assert_int_equal(mim_packet_encode_body(&p, buf, 3, &body_len), -ENOBUFS);
  assert_int_equal(body_len, need - MIM_HEADER_SIZE);
}

static void decode_reuses_and_finish_is_idempotent(void **state) {
  struct mim_packet p, src, zero;
  uint8_t buf[2048];
  size_t len = 0;
  (void)state;

  /* A zeroed packet finishes fine, twice. */
  memset(&zero, 0, sizeof(zero));
  mim_packet_finish(&zero);
  mim_packet_finish(&zero);

  /* Decoding over a decoded packet frees the first (ASan's leak check
   * would catch it) and leaves nothing of it behind. */
  fill_all(&src, MIM_CMD_HISTORY_RSP);
  assert_int_equal(mim_packet_encode_body(&src, buf, sizeof(buf), &len), 0);
  mim_packet_init(&p);
  assert_int_equal(mim_packet_decode(&p, src.cmd, buf, len), 0);
  assert_int_equal(p.n_items, 2);
  assert_int_equal(mim_packet_decode(&p, MIM_CMD_AUTH_REQ, seed_auth,
                                     sizeof(seed_auth)), 0);
  assert_int_equal(p.n_items, 0);
  assert_null(p.items);
  assert_string_equal(p.uid, "alice");
  mim_packet_finish(&p);
  assert_null(p.priv_);
  assert_null(p.uid);
  mim_packet_finish(&p);
}

static void decoded_packet_owns_its_data(void **state) {
  struct mim_packet src, p;
  uint8_t *buf = malloc(2048);
  size_t len = 0;
  (void)state;

  assert_non_null(buf);
  fill_all(&src, MIM_CMD_GROUP_LIST_RSP);
  assert_int_equal(mim_packet_encode_body(&src, buf, 2048, &len), 0);
  mim_packet_init(&p);
  assert_int_equal(mim_packet_decode(&p, src.cmd, buf, len), 0);
  /* The body is borrowed for the call only: scribble over it and free it. */
  memset(buf, 0xee, len);
  free(buf);
  assert_string_equal(p.group, src.group);
  assert_int_equal(p.n_members, 3);
  assert_string_equal(p.members[2], "carol");
  mim_packet_finish(&p);
}

/* ---- RPC ---- */

enum {
  R_GATEWAY_ID = 1u << 0,
  R_SECRET = 1u << 1,
  R_TEXT = 1u << 2,
  R_VERSION = 1u << 3,
  R_STATUS = 1u << 4,
  R_CONN_ID = 1u << 5,
  R_REQ_ID = 1u << 6,
  R_INNER_CMD = 1u << 7,
  R_BODY = 1u << 8,
  R_TARGETS = 1u << 9,
  R_SEQ_FIELD = 1u << 10,
  R_REASON = 1u << 11,
  R_SESSIONS = 1u << 12,
  R_UID = 1u << 13,
  R_DEVICE = 1u << 14,
  R_CAPS = 1u << 15,
  R_TICKET = 1u << 16,
};

static uint32_t rpc_fields(uint32_t cmd) {
  switch (cmd) {
  case MIM_RPC_HELLO:
    return R_GATEWAY_ID | R_SECRET | R_VERSION;
  case MIM_RPC_HELLO_ACK:
    return R_STATUS | R_TEXT;
  case MIM_RPC_REQUEST:
    return R_CONN_ID | R_INNER_CMD | R_BODY | R_VERSION;
  case MIM_RPC_DELIVER:
    return R_TARGETS | R_INNER_CMD | R_BODY | R_SEQ_FIELD;
  case MIM_RPC_KICK:
    return R_CONN_ID | R_REASON | R_TEXT;
  case MIM_RPC_CONN_CLOSED:
    return R_CONN_ID;
  case MIM_RPC_SESSIONS:
    return R_SESSIONS;
  case MIM_RPC_ADMIN:
  case MIM_RPC_ADMIN_REPLY:
    return R_REQ_ID | R_INNER_CMD | R_BODY;
  case MIM_RPC_PING:
  case MIM_RPC_PONG:
    return R_REQ_ID; /* the nonce */
  case MIM_RPC_SESSION:
    return R_CONN_ID | R_UID | R_DEVICE | R_CAPS | R_TICKET;
  default:
    fail_msg("no such rpc cmd %u", (unsigned)cmd);
    return 0;
  }
}

static const struct mim_rpc_target targets[] = {
  {1, 10}, {UINT64_MAX, 0}, {3, UINT64_MAX},
};
static const uint8_t ticket_bytes[] = {1, 0, 0xff, 7};
static const struct mim_rpc_session sessions[] = {
  {7, "alice", "phone", MIM_CAP_BATCH, ticket_bytes, sizeof(ticket_bytes)},
  {UINT64_MAX, "bob", "default", 0xffffffffu, NULL, 0},
};

static void fill_all_rpc(struct mim_rpc *r, uint32_t cmd) {
  mim_rpc_init(r);
  r->cmd = cmd;
  r->gateway_id = "gw-1";
  r->secret = "s3cret";
  r->text = "bye";
  r->version = MIM_RPC_VERSION;
  r->status = -1004;
  r->conn_id = UINT64_MAX - 1;
  r->req_id = 99;
  r->inner_cmd = MIM_CMD_C2C_PUSH;
  r->body = payload_bytes;
  r->body_len = sizeof(payload_bytes);
  r->targets = targets;
  r->n_targets = MIM_ARRAY_SIZE(targets);
  r->seq_field = 9;
  r->reason = MIM_KICK_ADMIN;
  r->sessions = sessions;
  r->n_sessions = MIM_ARRAY_SIZE(sessions);
  r->uid = "carol";
  r->device = "tablet";
  r->caps = MIM_CAP_BATCH;
  r->ticket = ticket_bytes;
  r->ticket_len = sizeof(ticket_bytes);
}

static void check_rpc(const struct mim_rpc *got, const struct mim_rpc *want,
                      uint32_t mask) {
#define HAS(f) ((mask & (f)) != 0)
#define NUM(f, m) assert_int_equal(got->m, HAS(f) ? want->m : 0)
  assert_int_equal(got->cmd, want->cmd);
  check_str(got->gateway_id, want->gateway_id, HAS(R_GATEWAY_ID));
  check_str(got->secret, want->secret, HAS(R_SECRET));
  check_str(got->text, want->text, HAS(R_TEXT));
  NUM(R_VERSION, version);
  NUM(R_STATUS, status);
  NUM(R_CONN_ID, conn_id);
  NUM(R_REQ_ID, req_id);
  NUM(R_INNER_CMD, inner_cmd);
  if (HAS(R_BODY))
    check_bytes(got->body, got->body_len, want->body, want->body_len);
  else
    check_bytes(got->body, got->body_len, NULL, 0);
  NUM(R_TARGETS, n_targets);
  for (size_t i = 0; i < got->n_targets; i++) {
    assert_int_equal(got->targets[i].conn_id, want->targets[i].conn_id);
    assert_int_equal(got->targets[i].inbox_seq, want->targets[i].inbox_seq);
  }
  NUM(R_SEQ_FIELD, seq_field);
  NUM(R_REASON, reason);
  NUM(R_SESSIONS, n_sessions);
  for (size_t i = 0; i < got->n_sessions; i++) {
    assert_int_equal(got->sessions[i].conn_id, want->sessions[i].conn_id);
    assert_string_equal(got->sessions[i].uid, want->sessions[i].uid);
    assert_string_equal(got->sessions[i].device, want->sessions[i].device);
    assert_int_equal(got->sessions[i].caps, want->sessions[i].caps);
    check_bytes(got->sessions[i].ticket, got->sessions[i].ticket_len,
                want->sessions[i].ticket, want->sessions[i].ticket_len);
  }
  check_str(got->uid, want->uid, HAS(R_UID));
  check_str(got->device, want->device, HAS(R_DEVICE));
  NUM(R_CAPS, caps);
  if (HAS(R_TICKET))
    check_bytes(got->ticket, got->ticket_len, want->ticket, want->ticket_len);
  else
    check_bytes(got->ticket, got->ticket_len, NULL, 0);
#undef NUM
#undef HAS
}

/* Encodes `flat` both ways and requires the same result and bytes. */
static void same_as_reference(bool rpc, const void *flat, const char *what) {
  static uint8_t direct[8192], ref[8192];
  size_t dn = 0, rn = 0;
  int dr = rpc ? mim_rpc_encode(flat, direct, sizeof(direct), &dn)
               : mim_packet_encode(flat, direct, sizeof(direct), &dn);
  int rr = mim__codec_encode_reference(rpc, flat, ref, sizeof(ref), &rn);
  if (dr != rr)
    fail_msg("%s: direct encoder %d, protobuf-c %d", what, dr, rr);
  if (dr < 0)
    return;
  /* the direct encode includes the 12-byte header */
  if (dn != MIM_HEADER_SIZE + rn ||
      memcmp(direct + MIM_HEADER_SIZE, ref, rn) != 0)
    fail_msg("%s: direct encoder wrote %zu body bytes unlike protobuf-c's %zu",
             what, dn - MIM_HEADER_SIZE, rn);
}

/* The direct wire encoder writes exactly protobuf-c's bytes: every command
 * fully populated, every command empty, and with each string blanked. */
static void direct_encoder_matches_protobuf_c(void **state) {
  (void)state;
  char what[64];
  for (uint32_t cmd = 0; cmd < MIM_CMD__COUNT; cmd++) {
    struct mim_packet p;
    if (!mim_cmd_known(cmd))
      continue;
    snprintf(what, sizeof(what), "client cmd %u full", (unsigned)cmd);
    fill_all(&p, cmd);
    same_as_reference(false, &p, what);
    p.content = "";
    p.uid = NULL;
    p.seq = 0;
    p.retryable = false;
    p.has_after_seq = false;
    p.n_items = 1;
    snprintf(what, sizeof(what), "client cmd %u partial", (unsigned)cmd);
    same_as_reference(false, &p, what);
    mim_packet_init(&p);
    p.cmd = cmd;
    snprintf(what, sizeof(what), "client cmd %u empty", (unsigned)cmd);
    same_as_reference(false, &p, what);
    /* refusals agree too: an id past MIM_MSG_ID_MAX */
    fill_all(&p, cmd);
    p.msg_id = MIM_MSG_ID_MAX + 1;
    snprintf(what, sizeof(what), "client cmd %u bad msg_id", (unsigned)cmd);
    same_as_reference(false, &p, what);
  }
  for (uint32_t cmd = MIM_RPC_HELLO; cmd <= MIM_RPC_SESSION; cmd++) {
    struct mim_rpc r;
    fill_all_rpc(&r, cmd);
    snprintf(what, sizeof(what), "rpc cmd %u full", (unsigned)cmd);
    same_as_reference(true, &r, what);
    mim_rpc_init(&r);
    r.cmd = cmd;
    snprintf(what, sizeof(what), "rpc cmd %u empty", (unsigned)cmd);
    same_as_reference(true, &r, what);
  }
}

/* Bodies at the edges of the wire format decode exactly as protobuf-c
 * decodes them (accepted or not, and to what): a bool in another wire type
 * (protobuf-c reads any non-zero bit of it), overlong varints and tags,
 * tag 0, ignored fields of the wrong type, a repeated singular field. */
static void direct_decoder_matches_protobuf_c_at_the_edges(void **state) {
  (void)state;
  static const struct {
    uint32_t cmd;
    size_t len;
    const char *body;
  } cases[] = {
    /* PullResponse.has_more (4) as 64-bit, 32-bit, length-delimited */
    {MIM_CMD_PULL_RSP, 9, "\x21\0\0\0\0\0\0\0\0"},
    {MIM_CMD_PULL_RSP, 9, "\x21\0\0\0\0\0\0\x80\0"},
    {MIM_CMD_PULL_RSP, 9, "\x21\0\0\0\0\0\0\x01\0"},
    {MIM_CMD_PULL_RSP, 5, "\x25\0\0\0\0"},
    {MIM_CMD_PULL_RSP, 5, "\x25\0\x02\0\0"},
    {MIM_CMD_PULL_RSP, 2, "\x22\0"},
    {MIM_CMD_PULL_RSP, 3, "\x22\x01\0"},
    {MIM_CMD_PULL_RSP, 4, "\x22\x02\x80\0"},
    {MIM_CMD_PULL_RSP, 3, "\x20\x80\0"},
    /* tag 0 in one byte (malformed) and in two (an unknown field) */
    {MIM_CMD_PULL_RSP, 2, "\x00\x01"},
    {MIM_CMD_PULL_RSP, 3, "\x80\x00\x01"},
    /* a tag past 5 bytes, a varint past 10 */
    {MIM_CMD_PULL_RSP, 7, "\x88\x80\x80\x80\x80\x00\x01"},
    {MIM_CMD_PULL_RSP, 12, "\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"},
    /* PullMsg.ts (6, ignored) as a string: protobuf-c refuses it */
    {MIM_CMD_PULL_RSP, 5, "\x0a\x03\x32\x01\x78"},
    /* seq (3) twice: the last wins */
    {MIM_CMD_PULL_RSP, 4, "\x18\x05\x18\x07"},
    /* a length prefix of 6 bytes */
    {MIM_CMD_PULL_RSP, 8, "\x0a\x80\x80\x80\x80\x80\x00\x00"},
  };
  for (size_t i = 0; i < MIM_ARRAY_SIZE(cases); i++) {
    struct mim_packet a, b;
    mim_packet_init(&a);
    mim_packet_init(&b);
    const uint8_t *body = (const uint8_t *)cases[i].body;
    int ra = mim_packet_decode(&a, cases[i].cmd, body, cases[i].len);
    int rb = mim__codec_decode_reference(false, cases[i].cmd, body,
                                         cases[i].len, &b);
    if (ra != rb)
      fail_msg("case %zu: direct decoder %d, protobuf-c %d", i, ra, rb);
    if (ra == 0) {
      assert_int_equal(a.has_more, b.has_more);
      assert_int_equal(a.seq, b.seq);
      assert_int_equal(a.n_items, b.n_items);
    }
    mim_packet_finish(&a);
    mim_packet_finish(&b);
  }
}

static void roundtrip_every_rpc_cmd(void **state) {
  (void)state;
  for (uint32_t cmd = MIM_RPC_HELLO; cmd <= MIM_RPC_SESSION; cmd++) {
    struct mim_rpc r, got;
    uint8_t buf[1024];
    size_t len = 0, consumed = 0;
    struct mim_frame f;

    print_message("rpc cmd %u %s\n", (unsigned)cmd, mim_cmd_name(cmd));
    fill_all_rpc(&r, cmd);
    assert_int_equal(mim_rpc_encode(&r, buf, sizeof(buf), &len), 0);
    assert_int_equal(mim_rpc_encoded_size(&r), len);
    assert_int_equal(mim_frame_decode(buf, len, 0, &f, &consumed), 0);
    assert_int_equal(consumed, len);
    assert_int_equal(f.header.cmd, cmd);
    mim_rpc_init(&got);
    assert_int_equal(mim_rpc_decode(&got, cmd, f.body, f.header.body_len), 0);
    check_rpc(&got, &r, rpc_fields(cmd));
    mim_rpc_finish(&got);
    assert_null(got.priv_);
  }
}

/* RPC field numbers, transcribed from rpc.proto: each field alone, and its
 * first tag on the wire. */
static void rpc_fields_have_their_proto_numbers(void **state) {
  static const struct {
    uint32_t cmd;
    uint32_t bit;
    uint32_t tag;
  } want[] = {
    {MIM_RPC_HELLO, R_GATEWAY_ID, 1 << 3 | 2},
    {MIM_RPC_HELLO, R_SECRET, 2 << 3 | 2},
    {MIM_RPC_HELLO, R_VERSION, 3 << 3},
    {MIM_RPC_HELLO_ACK, R_STATUS, 1 << 3},
    {MIM_RPC_HELLO_ACK, R_TEXT, 2 << 3 | 2},
    {MIM_RPC_REQUEST, R_CONN_ID, 1 << 3},
    {MIM_RPC_REQUEST, R_INNER_CMD, 2 << 3},
    {MIM_RPC_REQUEST, R_BODY, 3 << 3 | 2},
    {MIM_RPC_REQUEST, R_VERSION, 4 << 3},
    {MIM_RPC_DELIVER, R_TARGETS, 1 << 3 | 2},
    {MIM_RPC_DELIVER, R_INNER_CMD, 2 << 3},
    {MIM_RPC_DELIVER, R_BODY, 3 << 3 | 2},
    {MIM_RPC_DELIVER, R_SEQ_FIELD, 4 << 3},
    {MIM_RPC_KICK, R_CONN_ID, 1 << 3},
    {MIM_RPC_KICK, R_REASON, 2 << 3},
    {MIM_RPC_KICK, R_TEXT, 3 << 3 | 2},
    {MIM_RPC_CONN_CLOSED, R_CONN_ID, 1 << 3},
    {MIM_RPC_SESSIONS, R_SESSIONS, 1 << 3 | 2},
    {MIM_RPC_ADMIN, R_REQ_ID, 1 << 3},
    {MIM_RPC_ADMIN, R_INNER_CMD, 2 << 3},
    {MIM_RPC_ADMIN, R_BODY, 3 << 3 | 2},
    {MIM_RPC_ADMIN_REPLY, R_REQ_ID, 1 << 3},
    {MIM_RPC_ADMIN_REPLY, R_INNER_CMD, 2 << 3},
    {MIM_RPC_ADMIN_REPLY, R_BODY, 3 << 3 | 2},
    {MIM_RPC_PING, R_REQ_ID, 1 << 3},
    {MIM_RPC_PONG, R_REQ_ID, 1 << 3},
    {MIM_RPC_SESSION, R_CONN_ID, 1 << 3},
    {MIM_RPC_SESSION, R_UID, 2 << 3 | 2},
    {MIM_RPC_SESSION, R_DEVICE, 3 << 3 | 2},
    {MIM_RPC_SESSION, R_CAPS, 4 << 3},
    {MIM_RPC_SESSION, R_TICKET, 5 << 3 | 2},
  };
  uint32_t seen[MIM_RPC_SESSION - MIM_RPC_HELLO + 1] = {0};
  (void)state;

  for (size_t i = 0; i < MIM_ARRAY_SIZE(want); i++) {
    struct mim_rpc all, r;
    uint8_t buf[256];
    size_t len = 0;

    fill_all_rpc(&all, want[i].cmd);
    mim_rpc_init(&r);
    r.cmd = want[i].cmd;
    switch (want[i].bit) {
    case R_GATEWAY_ID: r.gateway_id = all.gateway_id; break;
    case R_SECRET: r.secret = all.secret; break;
    case R_TEXT: r.text = all.text; break;
    case R_VERSION: r.version = all.version; break;
    case R_STATUS: r.status = all.status; break;
    case R_CONN_ID: r.conn_id = all.conn_id; break;
    case R_REQ_ID: r.req_id = all.req_id; break;
    case R_INNER_CMD: r.inner_cmd = all.inner_cmd; break;
    case R_SEQ_FIELD: r.seq_field = all.seq_field; break;
    case R_REASON: r.reason = all.reason; break;
    case R_BODY:
      r.body = all.body;
      r.body_len = all.body_len;
      break;
    case R_TARGETS:
      r.targets = all.targets;
      r.n_targets = all.n_targets;
      break;
    case R_SESSIONS:
      r.sessions = all.sessions;
      r.n_sessions = all.n_sessions;
      break;
    case R_UID: r.uid = all.uid; break;
    case R_DEVICE: r.device = all.device; break;
    case R_CAPS: r.caps = all.caps; break;
    case R_TICKET:
      r.ticket = all.ticket;
      r.ticket_len = all.ticket_len;
      break;
    }
    assert_int_equal(mim_rpc_encode(&r, buf, sizeof(buf), &len), 0);
    assert_int_equal(first_tag(buf + MIM_HEADER_SIZE, len - MIM_HEADER_SIZE),
                     want[i].tag);
    seen[want[i].cmd - MIM_RPC_HELLO] |= want[i].bit;
  }
  for (uint32_t cmd = MIM_RPC_HELLO; cmd <= MIM_RPC_SESSION; cmd++)
    assert_int_equal(seen[cmd - MIM_RPC_HELLO], rpc_fields(cmd));

  /* Inside the repeated messages: RpcTarget {conn_id = 1, inbox_seq = 2},
   * RpcSession {conn_id = 1, uid = 2, device = 3, caps = 4}. */
  {
    const struct mim_rpc_target t = {5, 6};
    const struct mim_rpc_session s = {5, "u", "d", 6, NULL, 0};
    const uint8_t want_t[] = {0x0a, 0x04, 0x08, 0x05, 0x10, 0x06};
    const uint8_t want_s[] = {0x0a, 0x0a, 0x08, 0x05, 0x12, 0x01, 'u',
                              0x1a, 0x01, 'd',  0x20, 0x06};
    struct mim_rpc r;
    uint8_t buf[64];
    size_t len = 0;

    mim_rpc_init(&r);
    r.cmd = MIM_RPC_DELIVER;
    r.targets = &t;
    r.n_targets = 1;
    assert_int_equal(mim_rpc_encode(&r, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, MIM_HEADER_SIZE + sizeof(want_t));
    assert_memory_equal(buf + MIM_HEADER_SIZE, want_t, sizeof(want_t));
    mim_rpc_init(&r);
    r.cmd = MIM_RPC_SESSIONS;
    r.sessions = &s;
    r.n_sessions = 1;
    assert_int_equal(mim_rpc_encode(&r, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, MIM_HEADER_SIZE + sizeof(want_s));
    assert_memory_equal(buf + MIM_HEADER_SIZE, want_s, sizeof(want_s));
  }
}

static void rpc_encode_reports_needed_size(void **state) {
  struct mim_rpc r;
  uint8_t buf[1024];
  size_t need, len = 0;
  (void)state;

  fill_all_rpc(&r, MIM_RPC_SESSIONS);
  need = mim_rpc_encoded_size(&r);
  assert_true(need > MIM_HEADER_SIZE);
  assert_int_equal(mim_rpc_encode(&r, buf, need - 1, &len), -ENOBUFS);
  assert_int_equal(len, need);
  assert_int_equal(mim_rpc_encode(&r, NULL, 0, &len), -ENOBUFS);
  assert_int_equal(len, need);
  assert_int_equal(mim_rpc_encode(&r, buf, need, &len), 0);
  assert_int_equal(len, need);
}

/* The gateway's fan-out: one DELIVER, one personalised frame per target. */
static void rpc_deliver_personalises_each_target(void **state) {
  struct mim_packet push, got;
  struct mim_rpc r, dec;
  uint8_t body[1024], buf[1200], out[1200];
  size_t body_len = 0, len = 0, consumed = 0;
  struct mim_frame f;
  (void)state;

  fill_all(&push, MIM_CMD_C2G_PUSH);
  push.inbox_seq = 0;
  assert_int_equal(mim_packet_encode_body(&push, body, sizeof(body),
                                          &body_len), 0);
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_DELIVER;
  r.inner_cmd = push.cmd;
  r.body = body;
  r.body_len = body_len;
  r.targets = targets;
  r.n_targets = MIM_ARRAY_SIZE(targets);
  r.seq_field = mim_cmd_inbox_seq_field(push.cmd);
  assert_int_equal(mim_rpc_encode(&r, buf, sizeof(buf), &len), 0);
  assert_int_equal(mim_frame_decode(buf, len, 0, &f, &consumed), 0);
  mim_rpc_init(&dec);
  assert_int_equal(mim_rpc_decode(&dec, f.header.cmd, f.body,
                                  f.header.body_len), 0);
  mim_packet_init(&got);
  for (size_t i = 0; i < dec.n_targets; i++) {
    assert_int_equal(mim_frame_encode_with_field(
                         out, sizeof(out), dec.inner_cmd, dec.body,
                         dec.body_len, dec.seq_field,
                         dec.targets[i].inbox_seq, &len), 0);
    assert_int_equal(mim_frame_decode(out, len, 0, &f, &consumed), 0);
    assert_int_equal(mim_packet_decode(&got, f.header.cmd, f.body,
                                       f.header.body_len), 0);
    assert_int_equal(got.inbox_seq, targets[i].inbox_seq);
    assert_string_equal(got.content, push.content);
    assert_int_equal(got.msg_id, push.msg_id);
  }
  mim_packet_finish(&got);
  mim_rpc_finish(&dec);
}

/* ---- stream decoder ---- */

/* A stream of assorted frames: empty bodies, small and large ones, and a
 * cmd no packet decoder knows (the stream decoder must not care). */
static size_t build_stream(uint8_t *buf, size_t cap, size_t *n_frames) {
  static const uint32_t cmds[] = {
    MIM_CMD_HEARTBEAT_REQ, MIM_CMD_AUTH_REQ, MIM_CMD_PULL_RSP,
    MIM_CMD_HEARTBEAT_RSP, MIM_CMD_C2C_PUSH, MIM_CMD_ERROR,
    MIM_CMD_GROUP_LIST_RSP,
  };
  size_t len = 0, n = 0;

  for (size_t i = 0; i < MIM_ARRAY_SIZE(cmds); i++) {
    struct mim_packet p;
    fill_all(&p, cmds[i]);
    assert_int_equal(mim_packet_encode(&p, buf + len, cap - len, &n), 0);
    len += n;
  }
  assert_int_equal(mim_frame_encode(buf + len, cap - len, 4000,
                                    (const uint8_t *)"opaque", 6, &n), 0);
  len += n;
  *n_frames = MIM_ARRAY_SIZE(cmds) + 1;
  return len;
}

/* Takes every whole frame out of `d`, re-encoding each onto `out`: the
 * output then equals the input stream iff the frames came out intact. */
static void drain(struct mim_stream_decoder *d, uint8_t *out, size_t cap,
                  size_t *out_len, size_t *frames) {
  struct mim_frame f;
  size_t n;
  int r;

  while ((r = mim_stream_decoder_next(d, &f)) == 0) {
    assert_int_equal(mim_frame_encode(out + *out_len, cap - *out_len,
                                      f.header.cmd, f.body, f.header.body_len,
                                      &n), 0);
    *out_len += n;
    (*frames)++;
  }
  assert_int_equal(r, -EAGAIN);
}

static void stream_split_at_every_offset(void **state) {
  uint8_t in[4096], out[4096];
  size_t len, want_frames;
  (void)state;

  len = build_stream(in, sizeof(in), &want_frames);
  for (size_t cut = 0; cut <= len; cut++) {
    struct mim_stream_decoder *d;
    size_t out_len = 0, frames = 0;

    assert_int_equal(mim_stream_decoder_create(&d, 0), 0);
    assert_int_equal(mim_stream_decoder_feed(d, in, cut), 0);
    drain(d, out, sizeof(out), &out_len, &frames);
    assert_int_equal(mim_stream_decoder_pending(d), cut - out_len);
    assert_int_equal(mim_stream_decoder_feed(d, in + cut, len - cut), 0);
    drain(d, out, sizeof(out), &out_len, &frames);
    assert_int_equal(frames, want_frames);
    assert_int_equal(out_len, len);
    assert_memory_equal(out, in, len);
    assert_int_equal(mim_stream_decoder_pending(d), 0);
    mim_stream_decoder_destroy(d);
  }
}

static void stream_one_byte_at_a_time(void **state) {
  uint8_t in[4096], out[4096];
  size_t len, want_frames, out_len = 0, frames = 0;
  struct mim_stream_decoder *d;
  (void)state;

  len = build_stream(in, sizeof(in), &want_frames);
  assert_int_equal(mim_stream_decoder_create(&d, 512), 0);
  for (size_t i = 0; i < len; i++) {
    assert_int_equal(mim_stream_decoder_feed(d, in + i, 1), 0);
    drain(d, out, sizeof(out), &out_len, &frames);
    /* Only the partial frame stays buffered. */
    assert_int_equal(mim_stream_decoder_pending(d), i + 1 - out_len);
  }
  assert_int_equal(frames, want_frames);
  assert_int_equal(out_len, len);
  assert_memory_equal(out, in, len);
  mim_stream_decoder_destroy(d);
}

static void stream_several_frames_in_one_feed(void **state) {
  uint8_t in[4096], out[4096];
  size_t len, want_frames, out_len = 0, frames = 0;
  struct mim_stream_decoder *d;
  struct mim_frame f;
  (void)state;

  len = build_stream(in, sizeof(in), &want_frames);
  assert_int_equal(mim_stream_decoder_create(&d, 0), 0);
  assert_int_equal(mim_stream_decoder_next(d, &f), -EAGAIN);
  assert_int_equal(mim_stream_decoder_feed(d, in, len), 0);
  assert_int_equal(mim_stream_decoder_pending(d), len);
  drain(d, out, sizeof(out), &out_len, &frames);
  assert_int_equal(frames, want_frames);
  assert_memory_equal(out, in, len);
  assert_int_equal(mim_stream_decoder_pending(d), 0);
  /* The decoder is reusable after running dry; NULL/0 feeds are no-ops. */
  assert_int_equal(mim_stream_decoder_feed(d, NULL, 0), 0);
  assert_int_equal(mim_stream_decoder_feed(d, in, len), 0);
  out_len = frames = 0;
  drain(d, out, sizeof(out), &out_len, &frames);
  assert_int_equal(frames, want_frames);
  mim_stream_decoder_destroy(d);
  mim_stream_decoder_destroy(NULL);
}

static void stream_too_big_is_sticky_and_early(void **state) {
  uint8_t buf[64], hdr[MIM_HEADER_SIZE], junk[200];
  struct mim_stream_decoder *d;
  struct mim_frame f;
  size_t len = 0;
  (void)state;

  /* A good frame, then a header announcing 101 bytes to a 100-byte max.
   * Header bytes trickle in: only the last one makes the verdict. */
  assert_int_equal(mim_frame_encode(buf, sizeof(buf), 1, (const uint8_t *)"ok",
                                    2, &len), 0);
  mim_header_encode(hdr, &(struct mim_header){0, MIM_CMD_AUTH_REQ, 101});
  assert_int_equal(mim_stream_decoder_create(&d, 100), 0);
  assert_int_equal(mim_stream_decoder_feed(d, buf, len), 0);
  assert_int_equal(mim_stream_decoder_feed(d, hdr, MIM_HEADER_SIZE - 1), 0);
  assert_int_equal(mim_stream_decoder_next(d, &f), 0);
  assert_int_equal(f.header.body_len, 2);
  assert_memory_equal(f.body, "ok", 2);
  assert_int_equal(mim_stream_decoder_next(d, &f), -EAGAIN);
  assert_int_equal(mim_stream_decoder_feed(d, hdr + MIM_HEADER_SIZE - 1, 1),
                   0);
  /* No body byte was fed. */
  assert_int_equal(mim_stream_decoder_next(d, &f), -MIM_ERR_FRAME_TOO_BIG);
  assert_int_equal(mim_stream_decoder_next(d, &f), -MIM_ERR_FRAME_TOO_BIG);
  memset(junk, 0, sizeof(junk));
  assert_int_equal(mim_stream_decoder_feed(d, junk, sizeof(junk)),
                   -MIM_ERR_FRAME_TOO_BIG);
  assert_int_equal(mim_stream_decoder_next(d, &f), -MIM_ERR_FRAME_TOO_BIG);
  mim_stream_decoder_destroy(d);

  /* Bytes after an oversized header in the same feed are not kept. */
  assert_int_equal(mim_stream_decoder_create(&d, 100), 0);
  assert_int_equal(mim_stream_decoder_feed(d, hdr, sizeof(hdr)), 0);
  assert_int_equal(mim_stream_decoder_feed(d, junk, sizeof(junk)), 0);
  assert_true(mim_stream_decoder_pending(d) <= MIM_HEADER_SIZE);
  assert_int_equal(mim_stream_decoder_next(d, &f), -MIM_ERR_FRAME_TOO_BIG);
  mim_stream_decoder_destroy(d);
}

static void stream_max_body_bounds(void **state) {
  uint8_t hdr[MIM_HEADER_SIZE];
  struct mim_stream_decoder *d;
  struct mim_frame f;
  (void)state;

  /* 0 means MIM_MAX_BODY_DEFAULT: exactly the maximum is fine... */
  mim_header_encode(hdr, &(struct mim_header){0, 2, MIM_MAX_BODY_DEFAULT});
  assert_int_equal(mim_stream_decoder_create(&d, 0), 0);
  assert_int_equal(mim_stream_decoder_feed(d, hdr, sizeof(hdr)), 0);
  assert_int_equal(mim_stream_decoder_next(d, &f), -EAGAIN);
  mim_stream_decoder_destroy(d);
  /* ...one more is not. */
  mim_header_encode(hdr, &(struct mim_header){0, 2, MIM_MAX_BODY_DEFAULT + 1});
  assert_int_equal(mim_stream_decoder_create(&d, 0), 0);
  assert_int_equal(mim_stream_decoder_feed(d, hdr, sizeof(hdr)), 0);
  assert_int_equal(mim_stream_decoder_next(d, &f), -MIM_ERR_FRAME_TOO_BIG);
  mim_stream_decoder_destroy(d);
}

static void stream_large_frame_in_pieces(void **state) {
  const size_t body_len = 50000;
  uint8_t *in = malloc(MIM_HEADER_SIZE + body_len);
  struct mim_stream_decoder *d;
  struct mim_frame f;
  size_t len = 0, off = 0;
  (void)state;

  assert_non_null(in);
  for (size_t i = 0; i < body_len; i++)
    in[MIM_HEADER_SIZE + i] = (uint8_t)(i * 31);
  assert_int_equal(mim_frame_encode(in, MIM_HEADER_SIZE + body_len, 3,
                                    in + MIM_HEADER_SIZE, body_len, &len), 0);
  assert_int_equal(mim_stream_decoder_create(&d, body_len), 0);
  /* Uneven pieces, a prime apart, so the buffer grows and compacts. */
  while (off < len) {
    size_t n = len - off < 4099 ? len - off : 4099;
    assert_int_equal(mim_stream_decoder_feed(d, in + off, n), 0);
    off += n;
    if (off < len)
      assert_int_equal(mim_stream_decoder_next(d, &f), -EAGAIN);
  }
  assert_int_equal(mim_stream_decoder_next(d, &f), 0);
  assert_int_equal(f.header.body_len, body_len);
  assert_memory_equal(f.body, in + MIM_HEADER_SIZE, body_len);
  assert_int_equal(mim_stream_decoder_pending(d), 0);
  mim_stream_decoder_destroy(d);
  free(in);
}

/* Encodes `p`'s body, turns every '#' in it into a NUL, and decodes it with
 * both decoders: `want` from each. */
static void decode_with_nul(const struct mim_packet *p, int want) {
  uint8_t body[512];
  size_t len = 0;
  assert_int_equal(mim_packet_encode_body(p, body, sizeof body, &len), 0);
  size_t hashes = 0;
  for (size_t i = 0; i < len; i++)
    if (body[i] == '#') {
      body[i] = '\0';
      hashes++;
    }
  assert_true(hashes > 0);
  struct mim_packet a, b;
  mim_packet_init(&a);
  mim_packet_init(&b);
  assert_int_equal(mim_packet_decode(&a, p->cmd, body, len), want);
  assert_int_equal(mim__codec_decode_reference(false, p->cmd, body, len, &b),
                   want);
  mim_packet_finish(&a);
  mim_packet_finish(&b);
}

/* A NUL inside a string (uid "alice\0x") would be cut short by every C
 * reader, so the uid checked would not be the uid sent: both decoders
 * refuse it (top-level strings, repeated strings, strings of nested
 * messages); a NUL in a bytes field is data and stays. */
static void strings_with_nul_are_malformed(void **state) {
  (void)state;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.uid = "alice#x";
  p.token = "t";
  decode_with_nul(&p, -MIM_ERR_MALFORMED);
  p.uid = "alice";
  p.token = "tok#en";
  decode_with_nul(&p, -MIM_ERR_MALFORMED);

  static const char *const names[] = {"bob", "car#ol"};
  mim_packet_init(&p);
  p.cmd = MIM_CMD_GROUP_ADD_REQ;
  p.group = "g";
  p.members = names;
  p.n_members = 2;
  decode_with_nul(&p, -MIM_ERR_MALFORMED);

  struct mim_pull_item item = {.from = "bob", .content = "hi#there",
                               .msg_id = 7};
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_RSP;
  p.items = &item;
  p.n_items = 1;
  decode_with_nul(&p, -MIM_ERR_MALFORMED);

  static const uint8_t payload[] = {'a', '#', 'b'};
  item.content = "hi";
  item.payload = payload;
  item.payload_len = sizeof payload;
  decode_with_nul(&p, 0);

  /* an RPC string (HELLO's gateway_id) too */
  struct mim_rpc r, d;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_HELLO;
  r.version = 1;
  r.gateway_id = "mimctl#gw";
  uint8_t buf[256];
  size_t len = 0;
  assert_int_equal(mim_rpc_encode(&r, buf, sizeof buf, &len), 0);
  uint8_t *nul = memchr(buf, '#', len);
  assert_non_null(nul);
  *nul = '\0';
  mim_rpc_init(&d);
  assert_int_equal(mim_rpc_decode(&d, MIM_RPC_HELLO, buf + MIM_HEADER_SIZE,
                                  len - MIM_HEADER_SIZE),
                   -MIM_ERR_MALFORMED);
  mim_rpc_finish(&d);
  mim_rpc_init(&d);
  assert_int_equal(mim__codec_decode_reference(true, MIM_RPC_HELLO,
                                               buf + MIM_HEADER_SIZE,
                                               len - MIM_HEADER_SIZE, &d),
                   -MIM_ERR_MALFORMED);
  mim_rpc_finish(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(cmd_names_and_known),
    cmocka_unit_test(cmd_reply_table),
    cmocka_unit_test(error_packet_builder),
    cmocka_unit_test(inbox_seq_field_numbers),
    cmocka_unit_test(tables_match_protos),
    cmocka_unit_test(header_is_big_endian),
    cmocka_unit_test(frame_decode_short_header_is_eagain),
    cmocka_unit_test(frame_decode_truncated_body_is_eagain),
    cmocka_unit_test(frame_decode_body_over_max_is_too_big),
    cmocka_unit_test(frame_decode_walks_a_batch),
    cmocka_unit_test(frame_encode_reports_needed_size),
    cmocka_unit_test(frame_encode_body_in_place),
    cmocka_unit_test(encode_with_field_appends_varint),
    cmocka_unit_test(encode_with_field_sets_inbox_seq_of_pushes),
    cmocka_unit_test(roundtrip_every_client_cmd),
    cmocka_unit_test(fields_have_their_proto_numbers),
    cmocka_unit_test(pull_item_fields_have_their_proto_numbers),
    cmocka_unit_test(zero_fields_are_omitted),
    cmocka_unit_test(after_seq_presence_round_trips),
    cmocka_unit_test(seed_auth_request_decodes),
    cmocka_unit_test(seed_frame_decodes),
    cmocka_unit_test(unknown_fields_are_ignored),
    cmocka_unit_test(garbage_bodies_are_malformed),
    cmocka_unit_test(out_of_range_msg_id_is_malformed),
    cmocka_unit_test(invalid_packets_do_not_encode),
    cmocka_unit_test(unknown_cmd_is_refused),
    cmocka_unit_test(strings_are_never_null_after_decode),
    cmocka_unit_test(heartbeat_has_an_empty_body),
    cmocka_unit_test(packet_encode_reports_needed_size),
    cmocka_unit_test(decode_reuses_and_finish_is_idempotent),
    cmocka_unit_test(decoded_packet_owns_its_data),
    cmocka_unit_test(roundtrip_every_rpc_cmd),
    cmocka_unit_test(direct_encoder_matches_protobuf_c),
    cmocka_unit_test(direct_decoder_matches_protobuf_c_at_the_edges),
    cmocka_unit_test(rpc_fields_have_their_proto_numbers),
    cmocka_unit_test(rpc_encode_reports_needed_size),
    cmocka_unit_test(rpc_deliver_personalises_each_target),
    cmocka_unit_test(stream_split_at_every_offset),
    cmocka_unit_test(stream_one_byte_at_a_time),
    cmocka_unit_test(stream_several_frames_in_one_feed),
    cmocka_unit_test(stream_too_big_is_sticky_and_early),
    cmocka_unit_test(stream_max_body_bounds),
    cmocka_unit_test(stream_large_frame_in_pieces),
    cmocka_unit_test(strings_with_nul_are_malformed),
  };
  return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
