/* The HTTP API (docs/http-api.md): routes, keys, the rate bucket, JSON
 * to operator packets and operator replies back to JSON. */
#include "api.h"
#include "b64.h"
#include "pjson.h"

#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "rpc_out.h"
#include "rpc_server_internal.h"

#include <mim/auth.h>
#include <mim/codec.h>
#include <mim/session.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct bucket {
  int64_t tokens_milli;
  int64_t refilled_ms;
};

struct api {
  struct server *s;
  struct mimd_httpd *http;
  struct api_config cfg;   /* cfg.keys unused: see keys */
  /* the api's own copies of the keys (api_set_keys() replaces them on a
   * reload, when the config that held the old ones is freed); wiped when
   * dropped */
  char *keys[API_KEYS_MAX];
  size_t n_keys;
  struct bucket buckets[API_KEYS_MAX]; /* one per key, by index */
};

/* What an operator request waits for, and what to make of its reply. */
enum call_kind {
  CALL_PUSH,
  CALL_SEND,
  CALL_GROUP,        /* create, or a list: the reply is the group */
  CALL_GROUP_CHANGE, /* add/remove: then list the whole group */
  CALL_PULL,
  CALL_GROUPS,       /* a user's groups */
  CALL_GROUP_PAGE,   /* a page of a group's members: the reply has has_more */
  CALL_CONVS,        /* a user's conversations */
  CALL_READ_BY,      /* who read a group message */
  CALL_CHANGE,       /* an operator's recall (docs/protocol.md §19) */
};

struct call {
  struct api *api;
  struct mimd_http_req *req;
  enum call_kind kind;
  char name[MIM_ID_MAX + 1]; /* the group (a change), the inbox owner (a pull) */
};

#define JSON_TYPE "application/json"

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- replies ---- */

static int status_of(int err) {
  switch (-err) {
  case MIM_ERR_UNAUTHENTICATED:
    return 401;
  case MIM_ERR_FORBIDDEN:
  case MIM_ERR_NOT_MEMBER:
    return 403;
  case MIM_ERR_NO_SUCH_GROUP:
  case MIM_ERR_NOT_FOUND:
    return 404;
  case MIM_ERR_GROUP_EXISTS:
  case MIM_ERR_DEDUP_CONFLICT:
  case MIM_ERR_GROUP_FULL:
  case MIM_ERR_TOO_MANY_DEVICES:
  case MIM_ERR_WINDOW_PASSED:
    return 409;
  case MIM_ERR_TOO_LARGE:
  case MIM_ERR_FRAME_TOO_BIG:
    return 413;
  case MIM_ERR_RATE_LIMITED:
    return 429;
  case MIM_ERR_BUSY:
  case MIM_ERR_UNAVAILABLE:
  case MIM_ERR_STORE:
  case MIM_ERR_STORE_FULL:
    return 503;
  case MIM_ERR_MALFORMED:
  case MIM_ERR_UNKNOWN_CMD:
  case MIM_ERR_BAD_UTF8:
  case MIM_ERR_TOKEN_INVALID:
  case MIM_ERR_BAD_VERSION:
    return 400;
  default:
    return err == -ENOMEM ? 503 : 500;
  }
}

/* {"error": {"code", "name", "message"}}: `err` a library error. */
static char *error_json(int err, const char *message, size_t *len) {
  const char *name = mim_err_name(err);
  if (strncmp(name, "MIM_ERR_", 8) == 0)
    name += 8; /* the wire names of docs/protocol.md: NOT_MEMBER */
  json_t *o = json_pack("{s:{s:i,s:s,s:s}}", "error", "code",
                        (json_int_t)mim_err_wire_code(err), "name", name,
                        "message",
                        message != NULL ? message : mim_strerror(err));
  char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  *len = s != NULL ? strlen(s) : 0;
  return s;
}

static void reply_json(struct mimd_http_req *r, int status, json_t *o) {
  char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (s == NULL) {
    mimd_http_reply(r, 500, NULL, NULL, 0, NULL);
    return;
  }
  mimd_http_reply(r, status, JSON_TYPE, s, strlen(s), NULL);
}

static void reply_error_hdr(struct mimd_http_req *r, int status, int err,
                            const char *message, const char *extra) {
  size_t len;
  char *s = error_json(err, message, &len);
  mimd_http_reply(r, status, JSON_TYPE, s, len, extra);
}

static void reply_error(struct mimd_http_req *r, int err,
                        const char *message) {
  reply_error_hdr(r, status_of(err), err, message, NULL);
}

/* The bodies of the answers httpd gives itself. */
static char *own_error_body(void *user, int status, size_t *len) {
  (void)user;
  int err;
  const char *msg;
  switch (status) {
  case 404:
    err = -MIM_ERR_MALFORMED;
    msg = "no such path";
    break;
  case 405:
    err = -MIM_ERR_MALFORMED;
    msg = "method not allowed on this path";
    break;
  case 408:
    err = -MIM_ERR_MALFORMED;
    msg = "the request did not arrive in time";
    break;
  case 411:
    err = -MIM_ERR_MALFORMED;
    msg = "a body needs a Content-Length";
    break;
  case 413:
    err = -MIM_ERR_TOO_LARGE;
    msg = "request body too large";
    break;
  case 414:
    err = -MIM_ERR_TOO_LARGE;
    msg = "query too long";
    break;
  default:
    err = -MIM_ERR_MALFORMED;
    msg = "bad request";
    break;
  }
  return error_json(err, msg, len);
}

/* ---- keys, rate, readiness ---- */

bool api_key_ok(const char *const *keys, size_t n_keys, const char *auth) {
  static const char prefix[] = "Bearer ";
  if (auth == NULL || strncmp(auth, prefix, sizeof prefix - 1) != 0)
    return false;
  const char *given = auth + sizeof prefix - 1;
  size_t glen = strlen(given);
  /* every key compared in full, whatever matched: the time depends only
   * on the configured keys and the length of what was sent */
  volatile unsigned char any = 0;
  for (size_t k = 0; k < n_keys; k++) {
    size_t klen = strlen(keys[k]);
    volatile unsigned char diff = glen != klen;
    for (size_t i = 0; i < klen; i++) {
      unsigned char g = i < glen ? (unsigned char)given[i] : 0;
      diff |= (unsigned char)(g ^ (unsigned char)keys[k][i]);
    }
    any |= (unsigned char)(diff == 0);
  }
  return any != 0;
}

/* The index of the key `auth` carries, or -1 (constant time as above). */
static int key_index(const struct api *a, const char *auth) {
  int found = -1;
  for (size_t k = 0; k < a->n_keys; k++)
    if (api_key_ok((const char *const *)&a->keys[k], 1, auth))
      found = (int)k;
  return found;
}

static bool rate_ok(struct api *a, int key) {
  if (a->cfg.rate_per_sec == 0)
    return true;
  struct bucket *b = &a->buckets[key];
  int64_t now = mono_ms();
  int64_t cap = (int64_t)(a->cfg.rate_burst > 0 ? a->cfg.rate_burst
                                                : a->cfg.rate_per_sec) *
                1000;
  if (now > b->refilled_ms) {
    b->tokens_milli += (now - b->refilled_ms) * a->cfg.rate_per_sec;
    if (b->tokens_milli > cap)
      b->tokens_milli = cap;
    b->refilled_ms = now;
  }
  if (b->tokens_milli < 1000)
    return false;
  b->tokens_milli -= 1000;
  return true;
}

/* Why logicd takes no requests at all now, or NULL. */
static const char *stopped(const struct server *s) {
  if (s->phase != RUNNING)
    return "logicd is shutting down";
  if (s->store_failed != 0 || writer_health(s->writer) < 0)
    return "the store failed and cannot be written";
  return NULL;
}

/* Why logicd is not ready (/readyz), or NULL: also while commits fail
 * (a full map or disk). Requests still go through then, each answered
 * with its own error, so that a commit can succeed and end the streak. */
static const char *not_ready(const struct server *s) {
  const char *why = stopped(s);
  if (why == NULL && s->commit_failures > 0)
    why = "store commits are failing (disk or map full, or failing)";
  return why;
}

/* Every /api/ request: the key, then the rate, then readiness. Returns
 * false after answering. */
static bool admit(struct api *a, struct mimd_http_req *r) {
  int key = key_index(a, mimd_http_req_authorization(r));
  if (key < 0) {
    reply_error_hdr(r, 401, -MIM_ERR_UNAUTHENTICATED,
                    "missing or wrong API key (Authorization: Bearer KEY)",
                    "WWW-Authenticate: Bearer");
    return false;
  }
  if (!rate_ok(a, key)) {
    reply_error_hdr(r, 429, -MIM_ERR_RATE_LIMITED,
                    "too many requests for this API key", "Retry-After: 1");
    return false;
  }
  const char *why = stopped(a->s);
  if (why != NULL) {
    reply_error_hdr(r, 503, -MIM_ERR_UNAVAILABLE, why, "Retry-After: 1");
    return false;
  }
  return true;
}

/* A JSON object body (strict UTF-8, no duplicate keys); NULL after
 * answering 400/415. */
static json_t *body_object(struct mimd_http_req *r) {
  const char *ct = mimd_http_req_content_type(r);
  if (strncasecmp(ct, JSON_TYPE, sizeof JSON_TYPE - 1) != 0 ||
      (ct[sizeof JSON_TYPE - 1] != '\0' && ct[sizeof JSON_TYPE - 1] != ';' &&
       ct[sizeof JSON_TYPE - 1] != ' ')) {
    reply_error_hdr(r, 415, -MIM_ERR_MALFORMED,
                    "Content-Type must be application/json", NULL);
    return NULL;
  }
  size_t len;
  const uint8_t *body = mimd_http_req_body(r, &len);
  json_error_t je;
  json_t *o = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &je);
  if (o == NULL || !json_is_object(o)) {
    char msg[200];
    snprintf(msg, sizeof msg, "body is not a JSON object%s%s",
             o == NULL ? ": " : "", o == NULL ? je.text : "");
    json_decref(o);
    reply_error(r, -MIM_ERR_MALFORMED, msg);
    return NULL;
  }
  return o;
}

/* ---- field helpers: each returns 0 or answers and returns -1 ---- */

/* A string field; `required` or NULL when absent. */
static int get_string(struct mimd_http_req *r, json_t *o, const char *name,
                      bool required, const char **out) {
  json_t *v = json_object_get(o, name);
  *out = NULL;
  if (v == NULL || json_is_null(v)) {
    if (!required)
      return 0;
  } else if (json_is_string(v)) {
    *out = json_string_value(v);
    return 0;
  }
  char msg[160];
  snprintf(msg, sizeof msg, "\"%s\" must be a string%s", name,
           required ? " and is required" : "");
  reply_error(r, -MIM_ERR_MALFORMED, msg);
  return -1;
}

/* A valid id (mim_id_valid(): the client protocol's rule). */
static int get_id(struct mimd_http_req *r, json_t *o, const char *name,
                  bool required, const char **out) {
  if (get_string(r, o, name, required, out) < 0)
    return -1;
  if (*out == NULL || mim_id_valid(*out))
    return 0;
  char msg[160];
  snprintf(msg, sizeof msg, "\"%s\" is not a valid id", name);
  reply_error(r, -MIM_ERR_MALFORMED, msg);
  return -1;
}

/* A non-empty array of strings, at most `max` (each checked later by the
 * library as a client's list is). `*out` is malloc'd. */
static int get_list(struct mimd_http_req *r, json_t *o, const char *name,
                    size_t max, const char ***out, size_t *n) {
  json_t *v = json_object_get(o, name);
  *out = NULL;
  *n = 0;
  char msg[160];
  if (!json_is_array(v) || json_array_size(v) == 0) {
    snprintf(msg, sizeof msg, "\"%s\" must be a non-empty array of ids",
             name);
    reply_error(r, -MIM_ERR_MALFORMED, msg);
    return -1;
  }
  if (json_array_size(v) > max) {
    snprintf(msg, sizeof msg, "\"%s\" names more than %zu ids", name, max);
    reply_error(r, -MIM_ERR_TOO_LARGE, msg);
    return -1;
  }
  const char **list = calloc(json_array_size(v), sizeof *list);
  if (list == NULL) {
    reply_error(r, -ENOMEM, NULL);
    return -1;
  }
  for (size_t i = 0; i < json_array_size(v); i++) {
    json_t *e = json_array_get(v, i);
    if (!json_is_string(e) || !mim_id_valid(json_string_value(e))) {
      free(list);
      snprintf(msg, sizeof msg, "\"%s\"[%zu] is not a valid id", name, i);
      reply_error(r, -MIM_ERR_MALFORMED, msg);
      return -1;
    }
    list[i] = json_string_value(e);
  }
  *out = list;
  *n = json_array_size(v);
  return 0;
}

/* ---- operator requests, answered after their commit ---- */

static void call_done(void *user, const struct mim_effect *e);

/* Hands packet `p` to the logic as an operator request, exactly as an RPC
 * ADMIN frame from mimctl is (encoded and decoded the same way: one
 * path). The reply comes to call_done(). `pump`: false when called from
 * inside the server's effect loop (which drains what this queues). */
static void submit(struct call *c, const struct mim_packet *p, bool pump) {
  struct server *s = c->api->s;
  size_t need = mim_packet_encoded_size(p);
  uint8_t *body = need >= MIM_HEADER_SIZE ? malloc(need) : NULL;
  size_t len = 0;
  int rc = body == NULL ? (need == 0 ? -MIM_ERR_MALFORMED : -ENOMEM)
                        : mim_packet_encode_body(p, body, need, &len);
  struct admin_req *a = NULL;
  if (rc == 0 && (s->n_admin >= ADMIN_PENDING_MAX ||
                  (a = malloc(sizeof *a)) == NULL))
    rc = -MIM_ERR_BUSY;
  if (rc < 0) {
    free(body);
    reply_error(c->req, rc, NULL);
    free(c);
    return;
  }
  *a = (struct admin_req){.next = s->admin, .id = ++s->last_admin_id,
                          .done = call_done, .done_user = c};
  s->admin = a;
  s->n_admin++;
  rc = mim_logic_admin(s->logic, a->id, p->cmd, body, len);
  free(body);
  if (rc < 0) {
    free(rpc_admin_take(s, a->id));
    reply_error(c->req, rc, NULL);
    free(c);
    return;
  }
  if (pump)
    server_pump(s);
}

static struct call *call_new(struct api *a, struct mimd_http_req *r,
                             enum call_kind kind) {
  struct call *c = calloc(1, sizeof *c);
  if (c == NULL) {
    reply_error(r, -ENOMEM, NULL);
    return NULL;
  }
  c->api = a;
  c->req = r;
  c->kind = kind;
  return c;
}

static json_t *string_array(const char *const *v, size_t n) {
  json_t *arr = json_array();
  for (size_t i = 0; arr != NULL && i < n; i++)
    json_array_append_new(arr, json_string(v[i]));
  return arr;
}

/* {"group","members"}, plus "has_more" when `paged` or when the list was
 * cut to its first page (a group too large for one reply). */
static json_t *group_json(const struct mim_packet *p, bool paged) {
  if (paged || p->has_more)
    return json_pack("{s:s,s:o,s:b}", "group", p->group, "members",
                     string_array(p->members, p->n_members), "has_more",
                     p->has_more);
  return json_pack("{s:s,s:o}", "group", p->group, "members",
                   string_array(p->members, p->n_members));
}

/* `owner`: whose inbox the page is (a server push's "to"). */
static json_t *messages_json(const struct mim_packet *p, const char *owner) {
  json_t *arr = json_array();
  for (size_t i = 0; arr != NULL && i < p->n_items; i++) {
    const struct mim_pull_item *it = &p->items[i];
    json_t *m = json_pack("{s:I,s:I,s:s,s:s,s:I,s:i}", "inbox_seq",
                          (json_int_t)it->inbox_seq, "msg_id",
                          (json_int_t)it->msg_id, "from", it->from,
                          "content", it->content, "time_ms",
                          (json_int_t)it->send_time, "type", (int)it->type);
    if (m == NULL)
      continue;
    if (it->group != NULL && it->group[0] != '\0')
      json_object_set_new(m, "group", json_string(it->group));
    else
      json_object_set_new(m, "to", json_string(it->to[0] != '\0' ? it->to
                                                                  : owner));
    if (it->client_msg_id != NULL && it->client_msg_id[0] != '\0')
      json_object_set_new(m, "client_msg_id", json_string(it->client_msg_id));
    if (it->state != 0) { /* a recall, an edit, a change entry (§19) */
      json_object_set_new(m, "state", json_integer(it->state));
      json_object_set_new(m, "change_time", json_integer(it->change_time));
    }
    if (it->payload_len > 0) {
      char *b = mimd_b64_encode(it->payload, it->payload_len);
      if (b != NULL)
        json_object_set_new(m, "payload_b64", json_string(b));
      free(b);
    }
    json_array_append_new(arr, m);
  }
  return json_pack("{s:o,s:b}", "messages", arr, "has_more", p->has_more);
}

/* The reply of an operator request (e NULL: logicd dropped it, at exit). */
static void call_done(void *user, const struct mim_effect *e) {
  struct call *c = user;
  struct mimd_http_req *r = c->req;
  struct mim_packet p;
  mim_packet_init(&p);
  if (e == NULL) {
    reply_error(r, -MIM_ERR_UNAVAILABLE, "logicd is shutting down");
    goto out;
  }
  if (mim_packet_decode(&p, e->cmd, e->body, e->body_len) < 0) {
    reply_error(r, -MIM_ERR_STORE, "unreadable reply");
    goto out;
  }
  if (e->cmd == MIM_CMD_ERROR) {
    int err = p.status > 0 ? -p.status : -MIM_ERR_STORE;
    reply_error(r, err, p.text[0] != '\0' ? p.text : NULL);
    goto out;
  }
  switch (c->kind) {
  case CALL_PUSH: {
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < e->n_recipients; i++)
      json_array_append_new(
          arr, json_pack("{s:s,s:I,s:I}", "uid", e->recipients[i].uid,
                         "msg_id", (json_int_t)p.msg_id, "inbox_seq",
                         (json_int_t)e->recipients[i].inbox_seq));
    reply_json(r, 200, json_pack("{s:o}", "results", arr));
    break;
  }
  case CALL_SEND:
    reply_json(r, 200, json_pack("{s:I}", "msg_id", (json_int_t)p.msg_id));
    break;
  case CALL_GROUP:
  case CALL_GROUP_PAGE:
    reply_json(r, 200, group_json(&p, c->kind == CALL_GROUP_PAGE));
    break;
  case CALL_GROUP_CHANGE: {
    /* the change is committed; the answer is the whole group */
    struct mim_packet q;
    mim_packet_init(&q);
    q.cmd = MIM_CMD_GROUP_LIST_REQ;
    q.group = c->name;
    c->kind = CALL_GROUP;
    submit(c, &q, false);
    mim_packet_finish(&p);
    return; /* `c` lives on (or was freed by submit) */
  }
  case CALL_PULL:
    reply_json(r, 200, messages_json(&p, c->name));
    break;
  case CALL_GROUPS:
    reply_json(r, 200, json_pack("{s:o,s:b}", "groups",
                                 string_array(p.groups, p.n_groups),
                                 "has_more", p.has_more));
    break;
  case CALL_CONVS:
    reply_json(r, 200, mimd_pjson_conv_list(&p));
    break;
  case CALL_CHANGE:
    reply_json(r, 200,
               json_pack("{s:I,s:s,s:s,s:I,s:I}", "msg_id",
                         (json_int_t)p.msg_id, "peer", p.peer, "group",
                         p.group, "conv_seq", (json_int_t)p.conv_seq,
                         "change_time", (json_int_t)p.change_time));
    break;
  case CALL_READ_BY:
    reply_json(r, 200, mimd_pjson_read_by(&p));
    break;
  }
out:
  mim_packet_finish(&p);
  free(c);
}

/* ---- handlers ---- */

#define API_HANDLER(name)                                                     \
  static void name(void *user, struct mimd_http_req *r,                       \
                   const char *const *params, size_t n_params)

API_HANDLER(h_push) {
  (void)params, (void)n_params;
  struct api *a = user;
  if (!admit(a, r))
    return;
  json_t *o = body_object(r);
  if (o == NULL)
    return;
  const char **to = NULL;
  size_t n_to = 0;
  const char *content = NULL, *payload_b64 = NULL, *from = NULL;
  uint8_t *payload = NULL;
  size_t payload_len = 0;
  if (get_list(r, o, "to", a->cfg.group_request_members_max, &to, &n_to) < 0 ||
      get_string(r, o, "content", false, &content) < 0 ||
      get_string(r, o, "payload_b64", false, &payload_b64) < 0 ||
      get_id(r, o, "from", false, &from) < 0)
    goto out;
  if (payload_b64 != NULL &&
      mimd_b64_decode(payload_b64, &payload, &payload_len) < 0) {
    reply_error(r, -MIM_ERR_MALFORMED, "\"payload_b64\" is not base64");
    goto out;
  }
  struct call *c = call_new(a, r, CALL_PUSH);
  if (c == NULL)
    goto out;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_SERVER_PUSH;
  p.members = to;
  p.n_members = n_to;
  p.from = from;
  p.content = content;
  p.payload = payload;
  p.payload_len = payload_len;
  submit(c, &p, true);
out:
  free(payload);
  free(to);
  json_decref(o);
}

API_HANDLER(h_message) {
  (void)params, (void)n_params;
  struct api *a = user;
  if (!admit(a, r))
    return;
  json_t *o = body_object(r);
  if (o == NULL)
    return;
  const char *from, *to, *group, *content, *cmid;
  json_t *type = json_object_get(o, "type");
  if (get_id(r, o, "from", true, &from) < 0 ||
      get_id(r, o, "to", false, &to) < 0 ||
      get_id(r, o, "group", false, &group) < 0 ||
      get_string(r, o, "content", false, &content) < 0 ||
      get_string(r, o, "client_msg_id", false, &cmid) < 0)
    goto out;
  if ((to == NULL) == (group == NULL)) {
    reply_error(r, -MIM_ERR_MALFORMED,
                "exactly one of \"to\" and \"group\" is required");
    goto out;
  }
  if (type != NULL && !json_is_integer(type)) {
    reply_error(r, -MIM_ERR_MALFORMED, "\"type\" must be an integer");
    goto out;
  }
  struct call *c = call_new(a, r, CALL_SEND);
  if (c == NULL)
    goto out;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = to != NULL ? MIM_CMD_C2C_SEND_REQ : MIM_CMD_C2G_SEND_REQ;
  p.from = from;
  p.to = to;
  p.group = group;
  p.content = content;
  p.client_msg_id = cmid;
  /* out of range becomes a type the library refuses, never a wrap */
  json_int_t t = type != NULL ? json_integer_value(type) : MIM_MSG_TEXT;
  p.type = t >= 0 && t <= 255 ? (uint32_t)t : 255;
  submit(c, &p, true);
out:
  json_decref(o);
}

API_HANDLER(h_group_create) {
  (void)params, (void)n_params;
  struct api *a = user;
  if (!admit(a, r))
    return;
  json_t *o = body_object(r);
  if (o == NULL)
    return;
  const char *group;
  const char **members = NULL;
  size_t n = 0;
  if (get_id(r, o, "group", true, &group) < 0 ||
      get_list(r, o, "members", a->cfg.group_request_members_max, &members,
               &n) < 0)
    goto out;
  struct call *c = call_new(a, r, CALL_GROUP);
  if (c == NULL)
    goto out;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_GROUP_CREATE_REQ;
  p.group = group;
  p.members = members;
  p.n_members = n;
  submit(c, &p, true);
out:
  free(members);
  json_decref(o);
}

/* A path parameter that must be a valid id. */
static bool param_id(struct mimd_http_req *r, const char *v, const char *what) {
  if (mim_id_valid(v))
    return true;
  char msg[96];
  snprintf(msg, sizeof msg, "the %s in the path is not a valid id", what);
  reply_error(r, -MIM_ERR_MALFORMED, msg);
  return false;
}

static bool parse_u64(const char *s, uint64_t *out);

API_HANDLER(h_group_get) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r) || !param_id(r, params[0], "group"))
    return;
  /* ?after=<uid>&limit=<n>: a page of the members (docs/http-api.md 5.4) */
  const char *after = "";
  uint64_t limit = 0;
  bool paged = false;
  for (size_t i = 0; i < mimd_http_req_nargs(r); i++) {
    const char *arg = mimd_http_req_arg(r, i);
    bool ok = true;
    if (strncmp(arg, "after=", 6) == 0) {
      after = arg + 6;
      ok = after[0] == '\0' || mim_id_valid(after);
      paged = true;
    } else if (strncmp(arg, "limit=", 6) == 0) {
      ok = parse_u64(arg + 6, &limit) && limit >= 1 && limit <= 500;
      paged = true;
    }
    if (!ok) {
      reply_error(r, -MIM_ERR_MALFORMED,
                  "after must be a uid and limit 1..500");
      return;
    }
  }
  struct call *c = call_new(a, r, paged ? CALL_GROUP_PAGE : CALL_GROUP);
  if (c == NULL)
    return;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_GROUP_LIST_REQ;
  p.group = params[0];
  if (paged) {
    /* no limit given: 100 (the protocol's default page) */
    p.limit = limit > 0 ? (int32_t)limit : 100;
    p.after_member = after;
  }
  submit(c, &p, true);
}

static void group_change(struct api *a, struct mimd_http_req *r, uint32_t cmd,
                         const char *group, const char *const *members,
                         size_t n) {
  struct call *c = call_new(a, r, CALL_GROUP_CHANGE);
  if (c == NULL)
    return;
  snprintf(c->name, sizeof c->name, "%s", group);
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = cmd;
  p.group = group;
  p.members = members;
  p.n_members = n;
  submit(c, &p, true);
}

API_HANDLER(h_group_add) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r) || !param_id(r, params[0], "group"))
    return;
  json_t *o = body_object(r);
  if (o == NULL)
    return;
  const char **members = NULL;
  size_t n = 0;
  if (get_list(r, o, "members", a->cfg.group_request_members_max, &members,
               &n) == 0)
    group_change(a, r, MIM_CMD_GROUP_ADD_REQ, params[0], members, n);
  free(members);
  json_decref(o);
}

API_HANDLER(h_group_remove) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r) || !param_id(r, params[0], "group") ||
      !param_id(r, params[1], "uid"))
    return;
  const char *one[1] = {params[1]};
  group_change(a, r, MIM_CMD_GROUP_REMOVE_REQ, params[0], one, 1);
}

/* Strict decimal u64 ("0".."18446744073709551615"). */
static bool parse_u64(const char *s, uint64_t *out) {
  if (*s < '0' || *s > '9' || strlen(s) > 20)
    return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || *end != '\0')
    return false;
  *out = v;
  return true;
}

API_HANDLER(h_messages) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r) || !param_id(r, params[0], "uid"))
    return;
  uint64_t after = 0, limit = 50;
  for (size_t i = 0; i < mimd_http_req_nargs(r); i++) {
    const char *arg = mimd_http_req_arg(r, i);
    bool ok = true;
    if (strncmp(arg, "after_seq=", 10) == 0)
      ok = parse_u64(arg + 10, &after);
    else if (strncmp(arg, "limit=", 6) == 0)
      ok = parse_u64(arg + 6, &limit) && limit >= 1 &&
           limit <= a->cfg.pull_limit_max;
    if (!ok) {
      char msg[128];
      snprintf(msg, sizeof msg,
               "after_seq must be a number and limit 1..%u",
               (unsigned)a->cfg.pull_limit_max);
      reply_error(r, -MIM_ERR_MALFORMED, msg);
      return;
    }
  }
  struct call *c = call_new(a, r, CALL_PULL);
  if (c == NULL)
    return;
  snprintf(c->name, sizeof c->name, "%s", params[0]); /* the owner */
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.uid = params[0];
  p.after_seq = after;
  p.has_after_seq = true;
  p.limit = (int32_t)limit;
  submit(c, &p, true);
}

/* The groups `uid` is a member of, a page at a time (the listing of one's
 * groups of docs/protocol.md §10, for that user). */
API_HANDLER(h_user_groups) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r) || !param_id(r, params[0], "uid"))
    return;
  const char *after = "";
  uint64_t limit = 100;
  for (size_t i = 0; i < mimd_http_req_nargs(r); i++) {
    const char *arg = mimd_http_req_arg(r, i);
    bool ok = true;
    if (strncmp(arg, "after=", 6) == 0) {
      after = arg + 6;
      ok = after[0] == '\0' || mim_id_valid(after);
    } else if (strncmp(arg, "limit=", 6) == 0) {
      ok = parse_u64(arg + 6, &limit) && limit >= 1 &&
           limit <= a->cfg.pull_limit_max;
    }
    if (!ok) {
      char msg[128];
      snprintf(msg, sizeof msg,
               "after must be a group id and limit 1..%u",
               (unsigned)a->cfg.pull_limit_max);
      reply_error(r, -MIM_ERR_MALFORMED, msg);
      return;
    }
  }
  struct call *c = call_new(a, r, CALL_GROUPS);
  if (c == NULL)
    return;
  const char *one[1] = {params[0]};
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_GROUP_LIST_REQ;
  p.members = one;
  p.n_members = 1;
  p.after_group = after;
  p.limit = (int32_t)limit;
  submit(c, &p, true);
}

/* The conversations of `uid`, newest first, with unread counts and read
 * positions (docs/protocol.md §18), a page at a time. */
API_HANDLER(h_user_convs) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r) || !param_id(r, params[0], "uid"))
    return;
  uint64_t before = 0, limit = 0;
  for (size_t i = 0; i < mimd_http_req_nargs(r); i++) {
    const char *arg = mimd_http_req_arg(r, i);
    bool ok = true;
    if (strncmp(arg, "before=", 7) == 0)
      ok = parse_u64(arg + 7, &before) && before <= INT64_MAX;
    else if (strncmp(arg, "limit=", 6) == 0)
      ok = parse_u64(arg + 6, &limit) && limit >= 1 && limit <= 1000;
    if (!ok) {
      reply_error(r, -MIM_ERR_MALFORMED,
                  "before must be a msg_id and limit 1..1000");
      return;
    }
  }
  struct call *c = call_new(a, r, CALL_CONVS);
  if (c == NULL)
    return;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_CONV_LIST_REQ;
  p.uid = params[0];
  p.msg_id = before;
  p.limit = (int32_t)limit; /* 0: logicd's conv_page_max */
  submit(c, &p, true);
}

/* Who read the message at ?conv_seq=N of a group ("read by N of M"). */
API_HANDLER(h_group_read_by) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r) || !param_id(r, params[0], "group"))
    return;
  const char *after = "";
  uint64_t seq = 0, limit = 0;
  for (size_t i = 0; i < mimd_http_req_nargs(r); i++) {
    const char *arg = mimd_http_req_arg(r, i);
    bool ok = true;
    if (strncmp(arg, "conv_seq=", 9) == 0) {
      ok = parse_u64(arg + 9, &seq) && seq >= 1;
    } else if (strncmp(arg, "after=", 6) == 0) {
      after = arg + 6;
      ok = after[0] == '\0' || mim_id_valid(after);
    } else if (strncmp(arg, "limit=", 6) == 0) {
      ok = parse_u64(arg + 6, &limit) && limit <= 1000;
    }
    if (!ok || seq == 0) {
      reply_error(r, -MIM_ERR_MALFORMED,
                  "conv_seq >= 1 is required; after must be a uid and "
                  "limit 0..1000");
      return;
    }
  }
  struct call *c = call_new(a, r, CALL_READ_BY);
  if (c == NULL)
    return;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_READ_BY_REQ;
  p.group = params[0];
  p.conv_seq = seq;
  p.after_uid = after;
  p.limit = (int32_t)limit; /* 0: only the counts */
  submit(c, &p, true);
}

/* The msg_id a path names; false after answering 400. */
static bool path_msg_id(struct mimd_http_req *r, const char *v,
                        uint64_t *id) {
  if (!parse_u64(v, id) || *id == 0 || *id > MIM_MSG_ID_MAX) {
    reply_error(r, -MIM_ERR_MALFORMED, "the path must name a msg_id");
    return false;
  }
  return true;
}

/* An operator's recall of any message: no window, no conversation named
 * (docs/protocol.md §19); every participant's devices are told. */
API_HANDLER(h_message_recall) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r))
    return;
  uint64_t id;
  if (!path_msg_id(r, params[0], &id))
    return;
  struct call *c = call_new(a, r, CALL_CHANGE);
  if (c == NULL)
    return;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_MSG_CHANGE_REQ;
  p.msg_id = id;
  p.type = MIM_CHANGE_RECALL;
  submit(c, &p, true);
}

/* An operator's edit of any message: {"content": "..."}, no window (the
 * content rules of a send apply). */
API_HANDLER(h_message_edit) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r))
    return;
  uint64_t id;
  if (!path_msg_id(r, params[0], &id))
    return;
  json_t *o = body_object(r);
  if (o == NULL)
    return;
  const char *content;
  if (get_string(r, o, "content", true, &content) < 0)
    goto out;
  struct call *c = call_new(a, r, CALL_CHANGE);
  if (c == NULL)
    goto out;
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_MSG_CHANGE_REQ;
  p.msg_id = id;
  p.type = MIM_CHANGE_EDIT;
  p.content = content;
  submit(c, &p, true);
out:
  json_decref(o);
}

static void add_device(void *user, const struct mim_route *rt) {
  json_array_append_new(user, json_string(rt->device));
}

API_HANDLER(h_presence) {
  (void)params, (void)n_params;
  struct api *a = user;
  if (!admit(a, r))
    return;
  json_t *users = json_object();
  size_t n = 0;
  const struct mim_sessions *ss = mim_logic_sessions(a->s->logic);
  for (size_t i = 0; users != NULL && i < mimd_http_req_nargs(r); i++) {
    const char *arg = mimd_http_req_arg(r, i);
    if (strncmp(arg, "uid=", 4) != 0)
      continue;
    const char *uid = arg + 4;
    if (!mim_id_valid(uid)) {
      json_decref(users);
      reply_error(r, -MIM_ERR_MALFORMED, "a uid is not a valid id");
      return;
    }
    if (++n > API_PRESENCE_MAX) {
      json_decref(users);
      char msg[96];
      snprintf(msg, sizeof msg, "at most %d uids per request",
               API_PRESENCE_MAX);
      reply_error(r, -MIM_ERR_TOO_LARGE, msg);
      return;
    }
    json_t *devices = json_array();
    size_t routes = mim_sessions_foreach_device(ss, uid, add_device, devices);
    /* last_seen: ms, 0 while online or unknown (docs/protocol.md §21) */
    json_int_t seen =
        routes > 0 ? 0 : (json_int_t)mim_logic_last_seen(a->s->logic, uid);
    json_object_set_new(users, uid,
                        json_pack("{s:b,s:o,s:I}", "online", routes > 0,
                                  "devices", devices, "last_seen", seen));
  }
  if (n == 0) {
    json_decref(users);
    reply_error(r, -MIM_ERR_MALFORMED, "name at least one uid (?uid=a&uid=b)");
    return;
  }
  reply_json(r, 200, json_pack("{s:o}", "users", users));
}

API_HANDLER(h_kick) {
  (void)n_params;
  struct api *a = user;
  if (!admit(a, r) || !param_id(r, params[0], "uid"))
    return;
  size_t kicked = 0;
  int rc = mim_logic_kick_user(a->s->logic, params[0], &kicked);
  if (rc < 0) {
    reply_error(r, rc, NULL);
    return;
  }
  server_pump(a->s); /* the kicks go out to the gateways now */
  mimd_info("api: kicked %zu connection(s) of %s", kicked, params[0]);
  reply_json(r, 200, json_pack("{s:I}", "kicked", (json_int_t)kicked));
}

API_HANDLER(h_token) {
  (void)params, (void)n_params;
  struct api *a = user;
  if (!admit(a, r))
    return;
  if (a->cfg.token_secret == NULL) {
    reply_error(r, -MIM_ERR_FORBIDDEN,
                "logicd has no token_secret (development auth): no tokens "
                "to mint");
    return;
  }
  json_t *o = body_object(r);
  if (o == NULL)
    return;
  const char *uid, *device;
  json_t *ttl = json_object_get(o, "ttl_s");
  if (get_id(r, o, "uid", true, &uid) < 0 ||
      get_id(r, o, "device", false, &device) < 0)
    goto out;
  json_int_t ttl_s = 86400;
  if (ttl != NULL) {
    if (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
        json_integer_value(ttl) > API_TOKEN_TTL_MAX) {
      char msg[96];
      snprintf(msg, sizeof msg, "\"ttl_s\" must be an integer 1..%d",
               API_TOKEN_TTL_MAX);
      reply_error(r, -MIM_ERR_MALFORMED, msg);
      goto out;
    }
    ttl_s = json_integer_value(ttl);
  }
  int64_t expires = (int64_t)time(NULL) + ttl_s;
  char token[MIM_TOKEN_MAX];
  int rc = mim_token_sign(a->cfg.token_secret, a->cfg.token_secret_len, uid,
                          device, expires, token, sizeof token);
  if (rc < 0) {
    reply_error(r, rc, NULL);
    goto out;
  }
  reply_json(r, 200, json_pack("{s:s,s:I}", "token", token, "expires_at",
                               (json_int_t)expires));
  explicit_bzero(token, sizeof token);
out:
  json_decref(o);
}

API_HANDLER(h_healthz) {
  (void)user, (void)params, (void)n_params;
  reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

API_HANDLER(h_readyz) {
  (void)params, (void)n_params;
  struct api *a = user;
  const char *why = not_ready(a->s);
  if (why != NULL)
    reply_json(r, 503, json_pack("{s:b,s:s}", "ready", false, "reason", why));
  else
    reply_json(r, 200, json_pack("{s:b}", "ready", true));
}

/* Prometheus text format of every registered family (lmetrics.c and the
 * library's stats), rendered on the loop thread that owns them. */
API_HANDLER(h_metrics) {
  (void)user, (void)params, (void)n_params;
  size_t len = 0;
  char *text = mimd_metrics_render(&len);
  if (text == NULL) {
    reply_error(r, -ENOMEM, "out of memory");
    return;
  }
  mimd_http_reply(r, 200, MIMD_METRICS_CONTENT_TYPE, text, len, NULL);
}

static const struct mimd_http_route routes[] = {
    {"GET", "/healthz", h_healthz},
    {"GET", "/readyz", h_readyz},
    {"GET", "/metrics", h_metrics}, /* no key, as the health endpoints */
    {"POST", "/api/v1/push", h_push},
    {"POST", "/api/v1/messages", h_message},
    {"DELETE", "/api/v1/messages/*", h_message_recall},
    {"PATCH", "/api/v1/messages/*", h_message_edit},
    {"POST", "/api/v1/groups", h_group_create},
    {"GET", "/api/v1/groups/*", h_group_get},
    {"POST", "/api/v1/groups/*/members", h_group_add},
    {"DELETE", "/api/v1/groups/*/members/*", h_group_remove},
    {"GET", "/api/v1/users/*/messages", h_messages},
    {"GET", "/api/v1/users/*/groups", h_user_groups},
    {"GET", "/api/v1/users/*/conversations", h_user_convs},
    {"GET", "/api/v1/groups/*/read_by", h_group_read_by},
    {"DELETE", "/api/v1/users/*/sessions", h_kick},
    {"GET", "/api/v1/presence", h_presence},
    {"POST", "/api/v1/tokens", h_token},
};

/* ---- lifecycle ---- */

/* A stopping logicd waits (its flush grace) for the answers going out;
 * the last one written lets it finish at once. */
static void answer_written(void *user) {
  struct api *a = user;
  if (a->s->phase == FLUSHING)
    server_pump(a->s); /* ends in the stop check */
}

bool api_writing(const struct api *a) {
  return a != NULL && mimd_httpd_writing(a->http) > 0;
}

static void keys_wipe(char **keys, size_t n) {
  for (size_t k = 0; k < n; k++) {
    explicit_bzero(keys[k], strlen(keys[k]));
    free(keys[k]);
    keys[k] = NULL;
  }
}

/* Copies `n` keys into `out` (all or none). Errors: -EINVAL (n is 0 or
 * past API_KEYS_MAX, or a key is NULL or longer than API_KEY_MAX),
 * -ENOMEM. */
static int keys_copy(char **out, const char *const *keys, size_t n) {
  if (n > API_KEYS_MAX)
    return -EINVAL;
  for (size_t k = 0; k < n; k++)
    if (keys[k] == NULL || strlen(keys[k]) > API_KEY_MAX)
      return -EINVAL;
  for (size_t k = 0; k < n; k++)
    if ((out[k] = strdup(keys[k])) == NULL) {
      keys_wipe(out, k);
      return -ENOMEM;
    }
  return 0;
}

/* Every key's bucket full, as at start: a new key set owes nothing to
 * what the old keys spent (buckets go by index, not by key). */
static void buckets_fill(struct api *a) {
  int64_t now = mono_ms();
  for (size_t k = 0; k < API_KEYS_MAX; k++) {
    a->buckets[k].refilled_ms = now;
    a->buckets[k].tokens_milli =
        (int64_t)(a->cfg.rate_burst > 0 ? a->cfg.rate_burst
                                        : a->cfg.rate_per_sec) *
        1000;
  }
}

int api_set_keys(struct api *a, const char *const *keys, size_t n_keys) {
  char *copy[API_KEYS_MAX];
  if (n_keys == 0)
    return -EINVAL; /* a reload never leaves the API without its keys */
  int rc = keys_copy(copy, keys, n_keys);
  if (rc < 0)
    return rc;
  /* no lock: the api is only ever used on the loop thread, and a reload
   * runs there too (from the server's wake callback), between requests */
  keys_wipe(a->keys, a->n_keys);
  memcpy(a->keys, copy, n_keys * sizeof copy[0]);
  a->n_keys = n_keys;
  explicit_bzero(copy, sizeof copy);
  buckets_fill(a);
  return 0;
}

int api_create(struct api **out, struct server *s,
               const struct api_config *cfg) {
  /* no key is allowed (on loopback only, config.c): every /api/ request
   * is then refused 401, health and metrics still answer */
  if (cfg->n_keys > API_KEYS_MAX)
    return -EINVAL;
  struct api *a = calloc(1, sizeof *a);
  if (a == NULL)
    return -ENOMEM;
  a->s = s;
  a->cfg = *cfg;
  a->cfg.keys = NULL; /* borrowed from a config a reload frees */
  a->cfg.n_keys = 0;
  int rc = keys_copy(a->keys, cfg->keys, cfg->n_keys);
  if (rc < 0) {
    free(a);
    return rc;
  }
  a->n_keys = cfg->n_keys;
  buckets_fill(a);
  struct mimd_httpd_config hc = {
      .name = "http-api",
      .host = cfg->host,
      .port = cfg->port,
      .routes = routes,
      .n_routes = sizeof routes / sizeof routes[0],
      .user = a,
      .body_max = cfg->body_max,
      .conns_max = cfg->conns_max,
      .timeout_s = cfg->timeout_s,
      .error_body = own_error_body,
      .error_content_type = JSON_TYPE,
      .ev_loop = loop_ev(s->loop),
      .written = answer_written,
  };
  rc = mimd_httpd_create(&a->http, loop_context(s->loop), &hc);
  if (rc < 0) {
    mimd_error("cannot listen for HTTP on %s:%d (address in use, or not an "
               "address of this host?)", cfg->host, cfg->port);
    keys_wipe(a->keys, a->n_keys);
    free(a);
    return rc;
  }
  *out = a;
  return 0;
}

void api_stop(struct api *a) {
  if (a != NULL)
    mimd_httpd_stop(a->http);
}

void api_destroy(struct api *a) {
  if (a == NULL)
    return;
  mimd_httpd_destroy(a->http);
  keys_wipe(a->keys, a->n_keys);
  free(a);
}

int api_port(const struct api *a) { return mimd_httpd_port(a->http); }
