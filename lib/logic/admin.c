/* Operators: mimctl's requests (mim_logic_admin), answered by req_id. */
#include "logic/requests.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <mim/auth.h>

/* ---- operators ---- */

static int admin_reply_error(struct mim_logic *l, uint64_t req_id,
                             uint32_t cmd, int err) {
  struct mim_packet e;
  mim_error_packet_init(&e, err, cmd, 0);
  e.ts = mim__logic_now(l);
  return mim__logic_emit_admin(l, req_id, &e);
}

static int admin_server_push(struct mim_logic *l, uint64_t req_id,
                             const struct mim_packet *p) {
  const char *one[1];
  const char *const *to = p->members;
  size_t n = p->n_members;
  if (p->to != NULL && p->to[0] != '\0') {
    one[0] = p->to;
    to = one;
    n = 1;
  }
  if (n == 0)
    return -MIM_ERR_MALFORMED;
  if (n > l->cfg.group_request_members_max)
    return -MIM_ERR_TOO_LARGE;
  for (size_t i = 0; i < n; i++)
    if (!mim_id_valid(to[i]))
      return -MIM_ERR_MALFORMED;
  if (strlen0(p->content) + p->payload_len > l->cfg.content_max)
    return -MIM_ERR_TOO_LARGE;
  if (!mim_utf8_valid(p->content, strlen0(p->content)) ||
      !mim_utf8_valid(p->from, strlen0(p->from)))
    return -MIM_ERR_BAD_UTF8;
  struct mim_message_in m = {
      .type = MIM_MSG_PUSH,
      .conv_kind = MIM_CONV_PUSH,
      .sender = p->from ? p->from : "",
      .sender_device = "",
      .content = (const uint8_t *)(p->content ? p->content : ""),
      .content_len = strlen0(p->content),
      .payload = p->payload,
      .payload_len = p->payload_len,
      .server_time = mim__logic_now(l),
      .recipients = to,
      .n_recipients = n,
  };
  return mim__logic_queue_message(l, NULL, 0, MIM_CMD_SERVER_PUSH, &m, true, req_id,
                       NULL, n);
}

int mim_logic_admin(struct mim_logic *l, uint64_t req_id, uint32_t cmd,
                    const uint8_t *body, size_t len) {
  struct mim_packet p, r;
  struct mim_message_list ml;
  struct member_collect mc = {0};
  struct mim__group_info_copy gi = {0};
  struct mim_pull_item *items = NULL;
  mim_packet_init(&p);
  mim_packet_init(&r);
  mim_message_list_init(&ml);
  int rc = mim_packet_decode(&p, cmd, body, len);
  if (rc == 0) {
    switch (cmd) {
    case MIM_CMD_GROUP_CREATE_REQ:
    case MIM_CMD_GROUP_ADD_REQ:
    case MIM_CMD_GROUP_REMOVE_REQ:
      rc = mim__logic_queue_group(l, NULL, &p, true, req_id, NULL, NULL, 0, false);
      break;
    case MIM_CMD_SERVER_PUSH:
      rc = admin_server_push(l, req_id, &p);
      break;
    case MIM_CMD_GROUP_MANAGE_REQ:
      rc = mim__logic_queue_manage(l, NULL, &p, true, req_id, NULL, NULL, 0,
                                   false);
      break;
    case MIM_CMD_GROUP_INFO_REQ:
      if ((rc = mim__logic_read_group_info(l, NULL, &p, &r, &gi)) == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_GROUP_LIST_REQ:
      if ((rc = mim__logic_read_group_list(l, NULL, &p, &r, &mc)) == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_HISTORY_REQ: /* a group's, or `uid`'s with `peer` */
      if (p.group[0] == '\0' && !mim_id_valid(p.uid))
        rc = -MIM_ERR_MALFORMED;
      else
        rc = mim__logic_do_history(l, p.group[0] ? NULL : p.uid, &p, &ml, &r, &items);
      if (rc == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    case MIM_CMD_PULL_REQ: /* read-only: moves no cursor */
      rc = mim_id_valid(p.uid) ? 0 : -MIM_ERR_MALFORMED;
      uint64_t upto;
      if (rc == 0)
        rc = mim__logic_read_inbox(l, p.uid, p.after_seq, 0, mim__logic_clamp_limit(l, p.limit),
                        &ml, &r, &items, &upto);
      if (rc == 0)
        rc = mim__logic_emit_admin(l, req_id, &r);
      break;
    default:
      rc = -MIM_ERR_UNKNOWN_CMD;
      break;
    }
  }
  /* a failed request is answered with an Error; only when not even that
   * could be queued does the caller hear of it */
  int out = rc < 0 ? admin_reply_error(l, req_id, cmd, rc) : 0;
  free(items);
  mim__logic_member_collect_finish(&mc);
  mim__logic_group_info_finish(&gi);
  mim_message_list_finish(&ml);
  mim_packet_finish(&p);
  return out;
}
