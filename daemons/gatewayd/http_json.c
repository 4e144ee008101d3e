/* The JSON side of the HTTP gateway: what a POST body may say, and how
 * replies, inbox entries, errors and kicks read as JSON.
 *
 * Parsing is strict (jansson: UTF-8 checked, duplicate keys refused, "\u0000"
 * refused, since the protocol forbids NUL in strings) and typed: each
 * request takes exactly the fields of its protocol message, by their
 * protocol names; anything else is refused rather than ignored, so a typo
 * ("conent") is an error and not an empty message. Values go into a
 * struct mim_packet and are then encoded as the protocol's protobuf: what
 * logicd receives from an HTTP client is a request like any other, checked
 * by the same code (ids, UTF-8, sizes). */
#include "http_json.h"

#include "b64.h"
#include "pjson.h"

#include <jansson.h>
#include <mim/common.h>
#include <stdlib.h>
#include <string.h>

/* ---- requests ---- */

enum fkind { F_STR, F_I64, F_U64, F_I32, F_U32, F_MEMBERS };

enum { FIELD_CMDS_MAX = 12 };

/* Fields a request may carry; `cmds` lists the commands taking it. */
struct field {
  const char *name;
  enum fkind kind;
  size_t off; /* in struct mim_packet */
  uint32_t cmds[FIELD_CMDS_MAX]; /* ends at the first 0 */
};

#define OFF(f) offsetof(struct mim_packet, f)
#define C(x) MIM_CMD_##x
static const struct field fields[] = {
    {"seq", F_I64, OFF(seq), {0xffffffff}},
    {"ts", F_I64, OFF(ts), {0xffffffff}},
    {"from", F_STR, OFF(from), {C(C2C_SEND_REQ), C(C2G_SEND_REQ)}}, /* ignored by the server */
    {"to", F_STR, OFF(to), {C(C2C_SEND_REQ)}},
    {"group", F_STR, OFF(group),
     {C(C2G_SEND_REQ), C(GROUP_CREATE_REQ), C(GROUP_ADD_REQ),
      C(GROUP_REMOVE_REQ), C(GROUP_LIST_REQ), C(HISTORY_REQ),
      C(MARK_READ_REQ), C(READ_BY_REQ), C(MSG_CHANGE_REQ),
      C(GROUP_SYNC_REQ)}},
    {"content", F_STR, OFF(content),
     {C(C2C_SEND_REQ), C(C2G_SEND_REQ), C(MSG_CHANGE_REQ)}},
    {"client_msg_id", F_STR, OFF(client_msg_id),
     {C(C2C_SEND_REQ), C(C2G_SEND_REQ)}},
    {"type", F_U32, OFF(type), {C(C2C_SEND_REQ), C(C2G_SEND_REQ)}},
    {"after_seq", F_U64, OFF(after_seq), {C(PULL_REQ)}},
    {"msg_id", F_U64, OFF(msg_id),
     {C(PULL_REQ), C(C2C_PUSH_ACK), C(MSG_CHANGE_REQ)}},
    {"action", F_U32, OFF(type), {C(MSG_CHANGE_REQ)}},
    {"limit", F_I32, OFF(limit),
     {C(PULL_REQ), C(HISTORY_REQ), C(CONV_LIST_REQ), C(READ_BY_REQ),
      C(GROUP_SYNC_REQ)}},
    {"peer", F_STR, OFF(peer),
     {C(HISTORY_REQ), C(MARK_READ_REQ), C(MSG_CHANGE_REQ)}},
    {"before_conv_seq", F_U64, OFF(before_conv_seq), {C(HISTORY_REQ)}},
    {"members", F_MEMBERS, OFF(members),
     {C(GROUP_CREATE_REQ), C(GROUP_ADD_REQ), C(GROUP_REMOVE_REQ),
      C(GROUP_LIST_REQ)}},
    {"inbox_seq", F_U64, OFF(inbox_seq), {C(C2C_PUSH_ACK)}},
    {"before_msg_id", F_U64, OFF(msg_id), {C(CONV_LIST_REQ)}},
    {"conv_seq", F_U64, OFF(conv_seq), {C(MARK_READ_REQ), C(READ_BY_REQ)}},
    {"after_uid", F_STR, OFF(after_uid), {C(READ_BY_REQ)}},
    {"after_conv_seq", F_U64, OFF(after_seq), {C(GROUP_SYNC_REQ)}},
};
#undef C

static const struct {
  const char *name;
  uint32_t cmd;
} commands[] = {
    {"send", MIM_CMD_C2C_SEND_REQ},
    {"send_group", MIM_CMD_C2G_SEND_REQ},
    {"pull", MIM_CMD_PULL_REQ},
    {"history", MIM_CMD_HISTORY_REQ},
    {"group_create", MIM_CMD_GROUP_CREATE_REQ},
    {"group_add", MIM_CMD_GROUP_ADD_REQ},
    {"group_remove", MIM_CMD_GROUP_REMOVE_REQ},
    {"group_list", MIM_CMD_GROUP_LIST_REQ},
    {"ack", MIM_CMD_C2C_PUSH_ACK},
    {"logout", MIM_CMD_LOGOUT_REQ},
    {"conv_list", MIM_CMD_CONV_LIST_REQ},
    {"mark_read", MIM_CMD_MARK_READ_REQ},
    {"read_by", MIM_CMD_READ_BY_REQ},
    {"msg_change", MIM_CMD_MSG_CHANGE_REQ},
    {"group_sync", MIM_CMD_GROUP_SYNC_REQ},
};

uint32_t gw_json_cmd(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(commands[i].name, name) == 0)
      return commands[i].cmd;
  return 0;
}

static bool takes(const struct field *f, uint32_t cmd) {
  for (size_t i = 0; i < FIELD_CMDS_MAX && f->cmds[i] != 0; i++)
    if (f->cmds[i] == 0xffffffff || f->cmds[i] == cmd)
      return true;
  return false;
}

/* Nesting depth of JSON text, counted outside strings: a cheap bound
 * before the recursive parser sees it. */
static bool depth_ok(const uint8_t *b, size_t len) {
  int depth = 0;
  bool in_str = false, esc = false;
  for (size_t i = 0; i < len; i++) {
    uint8_t ch = b[i];
    if (in_str) {
      if (esc)
        esc = false;
      else if (ch == '\\')
        esc = true;
      else if (ch == '"')
        in_str = false;
      continue;
    }
    if (ch == '"')
      in_str = true;
    else if (ch == '{' || ch == '[') {
      if (++depth > GW_JSON_DEPTH_MAX)
        return false;
    } else if (ch == '}' || ch == ']')
      depth--;
  }
  return true;
}

static int set_int(struct mim_packet *p, const struct field *f, json_t *v,
                   const char **why) {
  if (!json_is_integer(v)) {
    *why = "a number field is not an integer";
    return -MIM_ERR_MALFORMED;
  }
  json_int_t x = json_integer_value(v);
  char *at = (char *)p + f->off;
  switch (f->kind) {
  case F_I64:
    *(int64_t *)(void *)at = (int64_t)x;
    return 0;
  case F_U64:
    if (x < 0)
      break;
    *(uint64_t *)(void *)at = (uint64_t)x;
    return 0;
  case F_I32:
    if (x < INT32_MIN || x > INT32_MAX)
      break;
    *(int32_t *)(void *)at = (int32_t)x;
    return 0;
  case F_U32:
    if (x < 0 || x > UINT32_MAX)
      break;
    *(uint32_t *)(void *)at = (uint32_t)x;
    return 0;
  default:
    break;
  }
  *why = "a number is out of range for its field";
  return -MIM_ERR_MALFORMED;
}

static int set_members(struct gw_json_req *r, json_t *v, const char **why) {
  if (!json_is_array(v)) {
    *why = "members is not an array";
    return -MIM_ERR_MALFORMED;
  }
  size_t n = json_array_size(v);
  /* the request is bounded by the body size; logicd bounds the count */
  r->members = calloc(n + 1, sizeof *r->members);
  if (r->members == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_array_get(v, i);
    if (!json_is_string(s)) {
      *why = "members holds something that is not a string";
      return -MIM_ERR_MALFORMED;
    }
    r->members[i] = json_string_value(s);
  }
  r->p.members = r->members;
  r->p.n_members = n;
  return 0;
}

int gw_json_request(uint32_t cmd, const uint8_t *buf, size_t len,
                    struct gw_json_req *out, const char **why) {
  mim_packet_init(&out->p);
  out->p.cmd = cmd;
  out->root = NULL;
  out->members = NULL;
  *why = "";
  if (len == 0)
    return 0;
  if (!depth_ok(buf, len)) {
    *why = "JSON nested too deeply";
    return -MIM_ERR_MALFORMED;
  }
  json_error_t err;
  json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES,
                            &err);
  if (root == NULL) {
    *why = "body is not valid JSON (UTF-8, no duplicate keys, no \\u0000)";
    return -MIM_ERR_MALFORMED;
  }
  out->root = root;
  if (!json_is_object(root)) {
    *why = "body is not a JSON object";
    goto malformed;
  }
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    const struct field *f = NULL;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
      if (strcmp(fields[i].name, key) == 0 && takes(&fields[i], cmd))
        f = &fields[i];
    if (f == NULL) {
      *why = "unknown field for this command";
      goto malformed;
    }
    if (json_is_null(v))
      continue; /* null: absent, as in proto3 */
    int rc;
    if (f->kind == F_STR) {
      if (!json_is_string(v)) {
        *why = "a text field is not a string";
        goto malformed;
      }
      *(const char **)(void *)((char *)&out->p + f->off) = json_string_value(v);
      rc = 0;
    } else if (f->kind == F_MEMBERS) {
      rc = set_members(out, v, why);
    } else {
      rc = set_int(&out->p, f, v, why);
    }
    if (rc < 0) {
      gw_json_req_free(out);
      return rc;
    }
    if (strcmp(key, "after_seq") == 0)
      out->p.has_after_seq = true;
  }
  return 0;
malformed:
  gw_json_req_free(out);
  return -MIM_ERR_MALFORMED;
}

void gw_json_req_free(struct gw_json_req *r) {
  free(r->members);
  r->members = NULL;
  json_decref(r->root);
  r->root = NULL;
  mim_packet_init(&r->p);
}

/* ---- replies ---- */

static char *dump(json_t *o, size_t *len) {
  if (o == NULL)
    return NULL;
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (s != NULL)
    *len = strlen(s);
  return s;
}

static json_t *base64(const uint8_t *d, size_t n) {
  char *s = mimd_b64_encode(d, n);
  if (s == NULL)
    return NULL;
  json_t *j = json_string(s);
  free(s);
  return j;
}

/* Server strings are UTF-8 already (docs/protocol.md §3); an absent one
 * is "". */
static json_t *str(const char *s) { return json_string(s ? s : ""); }

static json_t *item_obj(const struct mim_pull_item *it) {
  json_t *o = json_object();
  if (o == NULL)
    return NULL;
  json_object_set_new(o, "inbox_seq", json_integer((json_int_t)it->inbox_seq));
  json_object_set_new(o, "msg_id", json_integer((json_int_t)it->msg_id));
  json_object_set_new(o, "type", json_integer(it->type));
  json_object_set_new(o, "from", str(it->from));
  json_object_set_new(o, "to", str(it->to));
  json_object_set_new(o, "group", str(it->group));
  json_object_set_new(o, "content", str(it->content));
  json_object_set_new(o, "client_msg_id", str(it->client_msg_id));
  json_object_set_new(o, "send_time", json_integer(it->send_time));
  json_object_set_new(o, "conv_seq", json_integer((json_int_t)it->conv_seq));
  if (it->payload_len > 0)
    json_object_set_new(o, "payload", base64(it->payload, it->payload_len));
  if (it->state != 0) { /* recalled or edited (docs/protocol.md §19) */
    json_object_set_new(o, "state", json_integer(it->state));
    json_object_set_new(o, "change_time", json_integer(it->change_time));
  }
  return o;
}

char *gw_json_item(const struct mim_pull_item *it, size_t *len) {
  return dump(item_obj(it), len);
}

void gw_json_push_item(const struct mim_packet *p, struct mim_pull_item *it) {
  memset(it, 0, sizeof *it);
  it->from = p->from;
  it->to = p->to;
  it->group = p->group;
  it->content = p->content;
  it->client_msg_id = p->client_msg_id;
  it->payload = p->payload;
  it->payload_len = p->payload_len;
  it->msg_id = p->msg_id;
  it->send_time = p->ts;
  it->inbox_seq = p->inbox_seq;
  it->conv_seq = p->conv_seq;
  it->type = p->type;
}

char *gw_json_reply(const struct mim_packet *p, size_t *len) {
  json_t *o = json_object();
  if (o == NULL)
    return NULL;
  json_object_set_new(o, "seq", json_integer(p->seq));
  json_object_set_new(o, "ts", json_integer(p->ts));
  switch (p->cmd) {
  case MIM_CMD_C2C_SEND_RSP:
  case MIM_CMD_C2G_SEND_RSP:
    json_object_set_new(o, "msg_id", json_integer((json_int_t)p->msg_id));
    json_object_set_new(o, "inbox_seq", json_integer((json_int_t)p->inbox_seq));
    break;
  case MIM_CMD_PULL_RSP:
  case MIM_CMD_HISTORY_RSP:
  case MIM_CMD_GROUP_SYNC_RSP: {
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < p->n_items; i++)
      json_array_append_new(a, item_obj(&p->items[i]));
    json_object_set_new(o, "msg", a);
    json_object_set_new(o, "has_more", json_boolean(p->has_more));
    if (p->cmd == MIM_CMD_PULL_RSP)
      json_object_set_new(o, "last_inbox_seq",
                          json_integer((json_int_t)p->last_inbox_seq));
    if (p->cmd == MIM_CMD_GROUP_SYNC_RSP) {
      json_object_set_new(o, "next_after",
                          json_integer((json_int_t)p->after_seq));
      json_object_set_new(o, "last_conv_seq",
                          json_integer((json_int_t)p->conv_seq));
    }
    break;
  }
  case MIM_CMD_GROUP_CREATE_RSP:
  case MIM_CMD_GROUP_ADD_RSP:
  case MIM_CMD_GROUP_REMOVE_RSP:
  case MIM_CMD_GROUP_LIST_RSP: {
    json_object_set_new(o, "group", str(p->group));
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < p->n_members; i++)
      json_array_append_new(a, str(p->members[i]));
    json_object_set_new(o, "members", a);
    break;
  }
  case MIM_CMD_CONV_LIST_RSP:
    json_object_update_new(o, mimd_pjson_conv_list(p));
    break;
  case MIM_CMD_MARK_READ_RSP:
    json_object_update_new(o, mimd_pjson_read_state(p));
    break;
  case MIM_CMD_READ_BY_RSP:
    json_object_update_new(o, mimd_pjson_read_by(p));
    break;
  case MIM_CMD_MSG_CHANGE_RSP:
    json_object_set_new(o, "msg_id", json_integer((json_int_t)p->msg_id));
    json_object_set_new(o, "action", json_integer(p->type));
    json_object_set_new(o, "peer", str(p->peer));
    json_object_set_new(o, "group", str(p->group));
    json_object_set_new(o, "conv_seq", json_integer((json_int_t)p->conv_seq));
    json_object_set_new(o, "change_time", json_integer(p->change_time));
    break;
  default: /* logout, heartbeat (the ack's confirmation): seq and ts */
    break;
  }
  return dump(o, len);
}

static const char *err_name(int32_t code) {
  const char *n = mim_err_name(-code);
  return strncmp(n, "MIM_ERR_", 8) == 0 ? n + 8 : n;
}

char *gw_json_error(int32_t code, const char *msg, size_t *len) {
  json_t *e = json_object(), *o = json_object();
  if (e == NULL || o == NULL) {
    json_decref(e);
    json_decref(o);
    return NULL;
  }
  json_object_set_new(e, "code", json_integer(code));
  json_object_set_new(e, "name", json_string(err_name(code)));
  /* the text comes from the server, or from logicd (UTF-8 checked there);
   * json_string refuses anything else, and the standard text replaces it */
  json_t *m = msg ? json_string(msg) : NULL;
  json_object_set_new(e, "message", m ? m : json_string(mim_strerror(-code)));
  json_object_set_new(e, "retryable", json_boolean(mim_err_retryable(-code)));
  json_object_set_new(o, "error", e);
  return dump(o, len);
}

static const char *kick_name(int32_t reason) {
  static const char *const names[] = {"OTHER_LOGIN", "ADMIN", "SHUTDOWN",
                                      "SLOW", "PROTOCOL", "TOKEN_EXPIRED",
                                      "IDLE"};
  return reason >= 0 && reason < (int32_t)(sizeof names / sizeof names[0])
             ? names[reason]
             : "UNKNOWN";
}

char *gw_json_kick(int32_t reason, const char *msg, size_t *len) {
  json_t *o = json_object();
  if (o == NULL)
    return NULL;
  json_object_set_new(o, "reason", json_integer(reason));
  json_object_set_new(o, "name", json_string(kick_name(reason)));
  json_t *m = msg ? json_string(msg) : NULL;
  json_object_set_new(o, "message", m ? m : json_string(""));
  return dump(o, len);
}

int gw_json_http_status(int32_t code) {
  switch (code) {
  case MIM_ERR_UNAUTHENTICATED:
  case MIM_ERR_TOKEN_INVALID:
  case MIM_ERR_TOKEN_EXPIRED:
    return 401;
  case MIM_ERR_FORBIDDEN:
  case MIM_ERR_NOT_MEMBER:
  case MIM_ERR_TOO_MANY_DEVICES:
    return 403;
  case MIM_ERR_NO_SUCH_GROUP:
  case MIM_ERR_NOT_FOUND:
    return 404;
  case MIM_ERR_GROUP_EXISTS:
  case MIM_ERR_DEDUP_CONFLICT:
  case MIM_ERR_ALREADY_AUTHENTICATED:
  case MIM_ERR_GROUP_FULL:
  case MIM_ERR_WINDOW_PASSED:
    return 409;
  case MIM_ERR_TOO_LARGE:
  case MIM_ERR_FRAME_TOO_BIG:
    return 413;
  case MIM_ERR_RATE_LIMITED:
    return 429;
  case MIM_ERR_STORE:
  case MIM_ERR_SCHEMA_MISMATCH:
    return 500;
  case MIM_ERR_BUSY:
  case MIM_ERR_UNAVAILABLE:
  case MIM_ERR_STORE_FULL:
    return 503;
  default: /* MALFORMED, BAD_UTF8, UNKNOWN_CMD, BAD_VERSION, ... */
    return 400;
  }
}
