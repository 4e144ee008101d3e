/* The codec's field tables: one row per protobuf field, naming the flat
 * struct member it maps onto (client.proto, rpc.proto), the lookups by
 * command, the wire index built from them once, and their self-check.
 *
 * Why tables: the same dozen scalar conversions (proto3-style omission of
 * zero values, msg_id range checks, repeated fields) would otherwise be
 * written out once per message and direction, ~50 times, and the copies
 * drift. A row's member type is checked at compile time (OFF in table.h)
 * and mim__codec_check_tables() checks at test time that every row names a
 * field of the right protobuf type and that every protobuf field has a row,
 * so a field added to a .proto without a mapping fails the unit tests. */
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

/* ---- client messages (client.proto) ---- */

#define FLAT struct mim_pull_item
static const struct row pull_msg_rows[] = {
  F(STR, "from", from),
  F(STR, "group", group),
  F(STR, "content", content),
  F(MSG_ID, "msg_id", msg_id),
  F(I64, "send_time", send_time),
  /* PullMsg.ts/seq carry nothing per message: the reply's own ts/seq
   * carry the request correlation. */
  IGNORE("ts"),
  IGNORE("seq"),
  F(U64, "inbox_seq", inbox_seq),
  F(STR, "to", to),
  F(U32, "type", type),
  F(STR, "client_msg_id", client_msg_id),
  F2(BYTES, "payload", payload, payload_len),
  F(U64, "conv_seq", conv_seq),
  F(U32, "state", state),
  F(I64, "change_time", change_time),
};
static const struct msg_map pull_msg_map =
  MAP(pull_msg, pull_msg_rows, struct mim_pull_item);
#undef FLAT

#define FLAT struct mim_conv_item
static const struct row conv_item_rows[] = {
  F(STR, "peer", peer),
  F(STR, "group", group),
  F(MSG_ID, "last_msg_id", last_msg_id),
  F(U64, "last_conv_seq", last_conv_seq),
  F(I64, "last_time", last_time),
  F(STR, "last_from", last_from),
  F(U32, "last_type", last_type),
  F(STR, "preview", preview),
  F(BOOL, "preview_cut", preview_cut),
  F(U64, "read_seq", read_seq),
  F(U64, "unread", unread),
  F(U64, "peer_read_seq", peer_read_seq),
  F(U32, "last_state", last_state),
  F(BOOL, "large", large),
};
static const struct msg_map conv_item_map =
  MAP(conv_item, conv_item_rows, struct mim_conv_item);
#undef FLAT

#define FLAT struct mim_presence_item
static const struct row presence_item_rows[] = {
  F(STR, "uid", uid),
  F(BOOL, "online", online),
  F(I64, "last_seen", last_seen),
};
static const struct msg_map presence_item_map =
  MAP(presence_item, presence_item_rows, struct mim_presence_item);
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
  F(U64, "conv_seq", conv_seq),
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
  F(U64, "conv_seq", conv_seq),
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
/* GroupRequest and GroupResponse share their first four fields. */
static const struct row group_req_rows[] = {
  F(STR, "group", group),
  F2(STRS, "members", members, n_members),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F(STR, "after_group", after_group),
  F(I32, "limit", limit),
  F(STR, "after_member", after_member),
};
static const struct row group_rsp_rows[] = {
  F(STR, "group", group),
  F2(STRS, "members", members, n_members),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F2(STRS, "groups", groups, n_groups),
  F(BOOL, "has_more", has_more),
};
static const struct row group_manage_rows[] = {
  F(STR, "group", group),
  F(U32, "action", type),
  F(STR, "target", to),
  F(I64, "until", until),
  F(STR, "name", content),
  F(STR, "metadata", text),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row group_info_rows[] = {
  F(STR, "group", group),
  F(STR, "owner", from),
  F2(STRS, "admins", members, n_members),
  F2(STRS, "muted", groups, n_groups),
  F(U32, "flags", caps),
  F(STR, "name", content),
  F(STR, "metadata", text),
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
static const struct row group_sync_req_rows[] = {
  F(STR, "group", group),
  F2(OPT_U64, "after_conv_seq", after_seq, has_after_seq),
  F(I32, "limit", limit),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row group_sync_rsp_rows[] = {
  MSGS("msg", items, n_items, struct mim_pull_item, &pull_msg_map),
  F(BOOL, "has_more", has_more),
  F2(OPT_U64, "next_after", after_seq, has_after_seq),
  F(U64, "last_conv_seq", conv_seq),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row conv_list_req_rows[] = {
  F(MSG_ID, "before_msg_id", msg_id),
  F(I32, "limit", limit),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
  F(STR, "uid", uid),
};
static const struct row conv_list_rsp_rows[] = {
  MSGS("convs", convs, n_convs, struct mim_conv_item, &conv_item_map),
  F(BOOL, "has_more", has_more),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row mark_read_req_rows[] = {
  F(STR, "peer", peer),
  F(STR, "group", group),
  F(U64, "conv_seq", conv_seq),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row read_state_rows[] = {
  F(STR, "peer", peer),
  F(STR, "group", group),
  F(U64, "read_seq", read_seq),
  F(U64, "unread", unread),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row read_receipt_rows[] = {
  F(STR, "from", from),
  F(U64, "read_seq", read_seq),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row delivery_receipt_rows[] = {
  F(STR, "from", from),
  F(U64, "conv_seq", conv_seq),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row read_by_req_rows[] = {
  F(STR, "group", group),
  F(U64, "conv_seq", conv_seq),
  F(STR, "after_uid", after_uid),
  F(I32, "limit", limit),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row read_by_rsp_rows[] = {
  F(STR, "group", group),
  F(U64, "conv_seq", conv_seq),
  F(U64, "read_count", read_count),
  F(U64, "member_count", member_count),
  F2(STRS, "readers", members, n_members),
  F(BOOL, "has_more", has_more),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row msg_change_req_rows[] = {
  F(MSG_ID, "msg_id", msg_id),
  F(U32, "action", type),
  F(STR, "content", content),
  F(STR, "peer", peer),
  F(STR, "group", group),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row msg_changed_rows[] = {
  F(MSG_ID, "msg_id", msg_id),
  F(U32, "action", type),
  F(STR, "actor", from),
  F(STR, "peer", peer),
  F(STR, "group", group),
  F(U64, "conv_seq", conv_seq),
  F(STR, "content", content),
  F(I64, "change_time", change_time),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row typing_req_rows[] = {
  F(STR, "peer", peer),
  F(STR, "group", group),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row typing_rows[] = {
  F(STR, "from", from),
  F(STR, "group", group),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row presence_req_rows[] = {
  F2(STRS, "uids", members, n_members),
  F(BOOL, "subscribe", subscribe),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row presence_rsp_rows[] = {
  MSGS("items", presences, n_presences, struct mim_presence_item,
       &presence_item_map),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};
static const struct row presence_rows[] = {
  F(STR, "uid", uid),
  F(BOOL, "online", online),
  F(I64, "last_seen", last_seen),
  F(I64, "ts", ts),
  F(I64, "seq", seq),
};

#undef FLAT

static const struct msg_map empty_map = {NULL, NULL, 0, sizeof(struct mim_packet),
                                         NULL, NULL, NULL};
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
  MAP(group_request, group_req_rows, struct mim_packet);
static const struct msg_map group_rsp_map =
  MAP(group_response, group_rsp_rows, struct mim_packet);
static const struct msg_map group_manage_map =
  MAP(group_manage_request, group_manage_rows, struct mim_packet);
static const struct msg_map group_info_map =
  MAP(group_info, group_info_rows, struct mim_packet);
static const struct msg_map history_req_map =
  MAP(history_request, history_req_rows, struct mim_packet);
static const struct msg_map history_rsp_map =
  MAP(history_response, history_rsp_rows, struct mim_packet);
static const struct msg_map server_push_map =
  MAP(server_push, server_push_rows, struct mim_packet);

static const struct msg_map conv_list_req_map =
  MAP(conv_list_request, conv_list_req_rows, struct mim_packet);
static const struct msg_map conv_list_rsp_map =
  MAP(conv_list_response, conv_list_rsp_rows, struct mim_packet);
static const struct msg_map mark_read_req_map =
  MAP(mark_read_request, mark_read_req_rows, struct mim_packet);
static const struct msg_map read_state_map =
  MAP(read_state, read_state_rows, struct mim_packet);
static const struct msg_map read_receipt_map =
  MAP(read_receipt, read_receipt_rows, struct mim_packet);
static const struct msg_map delivery_receipt_map =
  MAP(delivery_receipt, delivery_receipt_rows, struct mim_packet);
static const struct msg_map read_by_req_map =
  MAP(read_by_request, read_by_req_rows, struct mim_packet);
static const struct msg_map read_by_rsp_map =
  MAP(read_by_response, read_by_rsp_rows, struct mim_packet);

static const struct msg_map msg_change_req_map =
  MAP(msg_change_request, msg_change_req_rows, struct mim_packet);
static const struct msg_map msg_changed_map =
  MAP(msg_changed, msg_changed_rows, struct mim_packet);

static const struct msg_map typing_req_map =
  MAP(typing_request, typing_req_rows, struct mim_packet);
static const struct msg_map typing_map =
  MAP(typing, typing_rows, struct mim_packet);
static const struct msg_map presence_req_map =
  MAP(presence_request, presence_req_rows, struct mim_packet);
static const struct msg_map presence_rsp_map =
  MAP(presence_response, presence_rsp_rows, struct mim_packet);
static const struct msg_map presence_map =
  MAP(presence, presence_rows, struct mim_packet);
static const struct msg_map group_sync_req_map =
  MAP(group_sync_request, group_sync_req_rows, struct mim_packet);
static const struct msg_map group_sync_rsp_map =
  MAP(group_sync_response, group_sync_rsp_rows, struct mim_packet);

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
  [MIM_CMD_CONV_LIST_REQ] = &conv_list_req_map,
  [MIM_CMD_CONV_LIST_RSP] = &conv_list_rsp_map,
  [MIM_CMD_MARK_READ_REQ] = &mark_read_req_map,
  [MIM_CMD_MARK_READ_RSP] = &read_state_map,
  [MIM_CMD_READ_SYNC] = &read_state_map,
  [MIM_CMD_READ_RECEIPT] = &read_receipt_map,
  [MIM_CMD_READ_BY_REQ] = &read_by_req_map,
  [MIM_CMD_READ_BY_RSP] = &read_by_rsp_map,
  [MIM_CMD_DELIVERED] = &delivery_receipt_map,
  [MIM_CMD_GROUP_MANAGE_REQ] = &group_manage_map,
  [MIM_CMD_GROUP_MANAGE_RSP] = &group_rsp_map,
  [MIM_CMD_GROUP_INFO_REQ] = &group_req_map,
  [MIM_CMD_GROUP_INFO_RSP] = &group_info_map,
  [MIM_CMD_MSG_CHANGE_REQ] = &msg_change_req_map,
  [MIM_CMD_MSG_CHANGE_RSP] = &msg_changed_map,
  [MIM_CMD_MSG_CHANGED] = &msg_changed_map,
  [MIM_CMD_TYPING_REQ] = &typing_req_map,
  [MIM_CMD_TYPING] = &typing_map,
  [MIM_CMD_PRESENCE_REQ] = &presence_req_map,
  [MIM_CMD_PRESENCE_RSP] = &presence_rsp_map,
  [MIM_CMD_PRESENCE] = &presence_map,
  [MIM_CMD_GROUP_SYNC_REQ] = &group_sync_req_map,
  [MIM_CMD_GROUP_SYNC_RSP] = &group_sync_rsp_map,
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
  F(U32, "caps", caps), F2(BYTES, "ticket", ticket, ticket_len),
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
/* SESSION: one RpcSession, flattened into struct mim_rpc */
static const struct row rpc_session_one_rows[] = {
  F(U64, "conn_id", conn_id), F(STR, "uid", uid), F(STR, "device", device),
  F(U32, "caps", caps), F2(BYTES, "ticket", ticket, ticket_len),
};

static const struct row rpc_ping_rows[] = {
  F(U64, "nonce", req_id),
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
static const struct msg_map rpc_ping_map =
  MAP(rpc_ping, rpc_ping_rows, struct mim_rpc);

static const struct msg_map rpc_session_one_map =
  MAP(rpc_session, rpc_session_one_rows, struct mim_rpc);

#define RPC_COUNT (MIM_RPC_SESSION - MIM_RPC_HELLO + 1)

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
  [MIM_RPC_PING - MIM_RPC_HELLO] = &rpc_ping_map,
  [MIM_RPC_PONG - MIM_RPC_HELLO] = &rpc_ping_map,
  [MIM_RPC_SESSION - MIM_RPC_HELLO] = &rpc_session_one_map,
};

const struct msg_map *mim__codec_client_map(uint32_t cmd) {
  return cmd < MIM_CMD__COUNT ? client_maps[cmd] : NULL;
}

const struct msg_map *mim__codec_rpc_map(uint32_t cmd) {
  if (cmd < MIM_RPC_HELLO || cmd - MIM_RPC_HELLO >= RPC_COUNT)
    return NULL;
  return rpc_maps[cmd - MIM_RPC_HELLO];
}

/* ---- allocation ---- */


/* `n` * `size` zeroed bytes, or NULL on overflow or out of memory. */
void *mim__codec_arena_alloc(struct arena *a, size_t n, size_t size) {
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

void mim__codec_arena_free(struct arena *a) {
  while (a->head != NULL) {
    struct block *b = a->head;
    a->head = b->next;
    free(b);
  }
}


void mim__codec_decoded_free(struct decoded *dec) {
  if (dec == NULL)
    return;
  mim__codec_arena_free(&dec->arena);
  if (dec->ref_free != NULL)
    dec->ref_free(dec->ref);
  free(dec);
}


/* ---- generic field access ---- */


const ProtobufCFieldDescriptor *mim__codec_field_of(const struct msg_map *map,
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

/* The wire types protobuf-c accepts for field `fd`, a bit each: bools take
 * any (it reads any non-zero bit as true), the rest their own. */
static uint8_t wts_of(const ProtobufCFieldDescriptor *fd) {
  switch (fd->type) {
  case PROTOBUF_C_TYPE_BOOL:
    return 1u << WT_VARINT | 1u << WT_I64 | 1u << WT_LEN | 1u << WT_I32;
  case PROTOBUF_C_TYPE_STRING:
  case PROTOBUF_C_TYPE_BYTES:
  case PROTOBUF_C_TYPE_MESSAGE:
    return 1u << WT_LEN;
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_FLOAT:
    return 1u << WT_I32;
  case PROTOBUF_C_TYPE_FIXED64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_DOUBLE:
    return 1u << WT_I64;
  default:
    return 1u << WT_VARINT;
  }
}

/* The index of the row of field `id`, or -1. */
ptrdiff_t mim__codec_row_for(const struct msg_map *map, uint32_t id) {
  if (id < ID_DIRECT)
    return (ptrdiff_t)map->by_id[id] - 1;
  for (size_t i = 0; i < map->n_rows; i++)
    if (map->rw[i].id == id)
      return (ptrdiff_t)i;
  return -1;
}

/* Fills the row_wire and by_id tables of `map` and of its sub-maps. */
static void wire_index(const struct msg_map *map) {
  for (size_t i = 0; i < map->n_rows; i++) {
    const ProtobufCFieldDescriptor *fd = mim__codec_field_of(map, &map->rows[i]);
    if (fd == NULL)
      continue; /* a table bug: the row stays id 0, which encoding refuses */
    map->rw[i].id = fd->id;
    map->rw[i].wts = wts_of(fd);
    if (fd->id < ID_DIRECT)
      map->by_id[fd->id] = (uint8_t)(i + 1);
    if (map->rows[i].kind == K_MSGS)
      wire_index(map->rows[i].sub);
  }
}


static void wire_index_all(void) {
  for (uint32_t cmd = 0; cmd < MIM_CMD__COUNT; cmd++)
    if (mim__codec_client_map(cmd) != NULL)
      wire_index(mim__codec_client_map(cmd));
  for (uint32_t cmd = MIM_RPC_HELLO; mim__codec_rpc_map(cmd) != NULL; cmd++)
    wire_index(mim__codec_rpc_map(cmd));
}

/* The wire tables are built once, before the first encode or mim__codec_decode;
 * pthread_once makes them visible to every thread. */
void mim__codec_wire_ready(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, wire_index_all);
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
  if (map->n_rows > 32) {
    /* wire_fill() counts repeated rows in a 32-entry array */
    snprintf(why, why_cap, "%s: %zu rows, the codec handles 32", d->name,
             map->n_rows);
    return -EINVAL;
  }
  for (size_t i = 0; i < map->n_rows; i++) {
    const struct row *row = &map->rows[i];
    const ProtobufCFieldDescriptor *fd = mim__codec_field_of(map, row);

    if (fd == NULL || !kind_fits(row, fd)) {
      snprintf(why, why_cap, "%s.%s: %s", d->name, row->name,
               fd == NULL ? "no such field" : "type does not match the row");
      return -EINVAL;
    }
    /* the direct encoder writes rows in order, and protobuf-c packs in
     * field-number order: the same bytes need the same order */
    if (i > 0 && mim__codec_field_of(map, &map->rows[i - 1])->id >= fd->id) {
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

    if (client_maps[cmd] == NULL && !mim_cmd_known(cmd))
      continue; /* an unassigned number */
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
