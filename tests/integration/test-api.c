/* logicd's HTTP API and health endpoints (docs/http-api.md) against the
 * real daemons, over real HTTP (libcurl) and real websocket clients.
 *
 *   test-api [NAME]   runs every test, or only the test called NAME
 *
 * Exit status 77 (skipped) when the daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mim/codec.h>

#include "curlc.h"
#include "harness.h"
#include "tclient.h"

static struct wsc_ctx *WS;

#define KEY "test-api-key-1"
#define KEY2 "test-api-key-2"
#define SECRET "api-test-token-secret-0123456789"

/* ---- fixture: the daemons with the API on a free port ---- */

struct fx {
  struct harness *h;
  int port;
  char listen[64];
  const char *args[48];
};

/* Starts both daemons, logicd with the API (keys KEY and KEY2) and the
 * extra flags `extra` (NULL-terminated, may be NULL); production auth
 * with SECRET when `prod`. */
static struct fx *fx_start(bool prod, const char *const *extra) {
  struct fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->port = h_free_port();
  snprintf(f->listen, sizeof f->listen, "127.0.0.1:%d", f->port);
  size_t n = 0;
  f->args[n++] = "--http-listen";
  f->args[n++] = f->listen;
  f->args[n++] = "--api-key";
  f->args[n++] = KEY "," KEY2;
  for (; extra != NULL && *extra != NULL && n < 46; extra++)
    f->args[n++] = *extra;
  f->args[n] = NULL;
  struct h_opts o;
  h_opts_init(&o);
  if (prod) {
    o.dev_auth = false;
    o.token_secret = SECRET;
  }
  o.logicd_args = f->args;
  assert_int_equal(h_create(&f->h, WS, &o), 0);
  assert_int_equal(h_start(f->h), 0);
  return f;
}

static void fx_stop(struct fx *f) {
  tc_free_all();
  h_destroy(f->h);
  free(f);
}

/* ---- HTTP ---- */

static struct curlc_resp R; /* the last answer */

/* `method` `path` with `key` (NULL: no Authorization) and a JSON `body`
 * (NULL: none) of `ctype` (NULL: application/json). Returns the status;
 * the answer is in R (R.json parsed when it is JSON). */
static long http_ct(struct fx *f, const char *method, const char *path,
                    const char *key, const char *body, const char *ctype) {
  return curlc_request(&R, f->port, method, path, key, body, ctype);
}

static long http(struct fx *f, const char *method, const char *path,
                 const char *body) {
  return http_ct(f, method, path, KEY, body, NULL);
}

/* Asserts the last answer is `status` with error name `name`. */
static void expect_error(long status, const char *name) {
  if (R.status != status)
    fail_msg("status %ld, want %ld: %s", R.status, status, R.body);
  json_t *e = json_object_get(R.json, "error");
  if (!json_is_object(e) || !json_is_integer(json_object_get(e, "code")) ||
      !json_is_string(json_object_get(e, "message")) ||
      strcmp(json_string_value(json_object_get(e, "name")), name) != 0)
    fail_msg("want error %s: %s", name, R.body);
}

static void expect_ok(void) {
  if (R.status != 200 || R.json == NULL)
    fail_msg("status %ld: %s", R.status, R.body);
}

static json_int_t jint(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  if (!json_is_integer(v))
    fail_msg("no integer \"%s\" in %s", k, R.body);
  return json_integer_value(v);
}

/* Whether the group in R has exactly `want` (comma-separated) members. */
static void expect_members(const char *group, const char *want) {
  expect_ok();
  assert_string_equal(json_string_value(json_object_get(R.json, "group")),
                      group);
  json_t *m = json_object_get(R.json, "members");
  assert_true(json_is_array(m));
  char got[1024] = "";
  for (size_t i = 0; i < json_array_size(m); i++) {
    if (i > 0)
      strcat(got, ",");
    strcat(got, json_string_value(json_array_get(m, i)));
  }
  if (strcmp(got, want) != 0)
    fail_msg("members %s, want %s", got, want);
}

/* ---- tests ---- */

/* Keys, paths, methods, bodies: every refusal with its status and the
 * error shape; health without a key. */
static void api_auth_and_errors(void **state) {
  (void)state;
  struct fx *f = fx_start(false, NULL);
  /* health and readiness need no key */
  assert_int_equal(http_ct(f, "GET", "/healthz", NULL, NULL, NULL), 200);
  assert_int_equal(http_ct(f, "GET", "/readyz", NULL, NULL, NULL), 200);
  assert_true(json_is_true(json_object_get(R.json, "ready")));
  /* the API does */
  http_ct(f, "GET", "/api/v1/groups/g", NULL, NULL, NULL);
  expect_error(401, "UNAUTHENTICATED");
  assert_non_null(strcasestr(R.headers, "WWW-Authenticate: Bearer"));
  http_ct(f, "GET", "/api/v1/groups/g", "wrong-key", NULL, NULL);
  expect_error(401, "UNAUTHENTICATED");
  http_ct(f, "GET", "/api/v1/groups/g", KEY "x", NULL, NULL);
  expect_error(401, "UNAUTHENTICATED");
  http_ct(f, "GET", "/api/v1/groups/g", "test-api-key-", NULL, NULL);
  expect_error(401, "UNAUTHENTICATED");
  /* both keys work */
  http_ct(f, "GET", "/api/v1/groups/g", KEY2, NULL, NULL);
  expect_error(404, "NO_SUCH_GROUP");
  /* paths and methods */
  http(f, "GET", "/api/v1/nothing", NULL);
  expect_error(404, "MALFORMED");
  http(f, "PUT", "/api/v1/push", "{}");
  expect_error(405, "MALFORMED");
  assert_non_null(strcasestr(R.headers, "Allow: POST"));
  /* bodies */
  http(f, "POST", "/api/v1/push", "{\"to\": [\"a\"], ");
  expect_error(400, "MALFORMED");
  http(f, "POST", "/api/v1/push", "[1,2]");
  expect_error(400, "MALFORMED");
  http(f, "POST", "/api/v1/push", "{\"to\":[\"a\"],\"to\":[\"b\"]}");
  expect_error(400, "MALFORMED"); /* duplicate keys */
  http_ct(f, "POST", "/api/v1/push", KEY, "{\"to\":[\"a\"]}", "text/plain");
  expect_error(415, "MALFORMED");
  http(f, "POST", "/api/v1/push", "{\"to\": \"alice\", \"content\": \"x\"}");
  expect_error(400, "MALFORMED"); /* "to" is a list */
  http(f, "POST", "/api/v1/push", "{\"to\": [], \"content\": \"x\"}");
  expect_error(400, "MALFORMED");
  http(f, "POST", "/api/v1/push", "{\"to\": [\"bad id\"], \"content\": \"x\"}");
  expect_error(400, "MALFORMED");
  http(f, "POST", "/api/v1/push", "{\"to\": [\"a\"], \"content\": 5}");
  expect_error(400, "MALFORMED");
  http(f, "POST", "/api/v1/push",
       "{\"to\": [\"a\"], \"content\": \"x\", \"payload_b64\": \"!!\"}");
  expect_error(400, "MALFORMED");
  /* invalid UTF-8 is refused by the JSON parser: the same rule as the
   * client protocol's strings */
  http(f, "POST", "/api/v1/push", "{\"to\": [\"a\"], \"content\": \"\xc3\x28\"}");
  expect_error(400, "MALFORMED");
  /* NUL inside a string: refused (jansson without JSON_ALLOW_NUL) */
  http(f, "POST", "/api/v1/push", "{\"to\": [\"a\"], \"content\": \"a\\u0000b\"}");
  expect_error(400, "MALFORMED");
  /* a path id that is not an id */
  http(f, "GET", "/api/v1/users/%20x/messages", NULL);
  expect_error(400, "MALFORMED");
  /* unknown fields are ignored */
  http(f, "POST", "/api/v1/push",
       "{\"to\": [\"a\"], \"content\": \"x\", \"future\": {\"y\": 1}}");
  expect_ok();
  /* messages: exactly one of to/group */
  http(f, "POST", "/api/v1/messages", "{\"from\": \"a\", \"content\": \"x\"}");
  expect_error(400, "MALFORMED");
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"a\", \"to\": \"b\", \"group\": \"g\", \"content\": \"x\"}");
  expect_error(400, "MALFORMED");
  /* a system type is the server's, as for a client */
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"a\", \"to\": \"b\", \"content\": \"x\", \"type\": 3}");
  expect_error(403, "FORBIDDEN");
  /* tokens need a token secret (this logicd runs dev auth) */
  http(f, "POST", "/api/v1/tokens", "{\"uid\": \"a\"}");
  expect_error(403, "FORBIDDEN");
  fx_stop(f);
}

/* A push reaches a connected websocket client at once, sits in every
 * inbox at the seq the API reported, and shows in the messages page. */
static void api_push_reaches_client(void **state) {
  (void)state;
  struct fx *f = fx_start(false, NULL);
  struct tc *bob = tc_login(f->h, "bob", "phone");
  http(f, "POST", "/api/v1/push",
       "{\"to\": [\"bob\", \"carol\"], \"content\": \"hello from the backend\","
       " \"payload_b64\": \"AAEC\", \"from\": \"shop\"}");
  expect_ok();
  json_t *res = json_object_get(R.json, "results");
  assert_int_equal(json_array_size(res), 2);
  json_int_t msg_id = 0, bob_seq = 0;
  for (size_t i = 0; i < 2; i++) {
    json_t *e = json_array_get(res, i);
    const char *uid = json_string_value(json_object_get(e, "uid"));
    assert_true(strcmp(uid, "bob") == 0 || strcmp(uid, "carol") == 0);
    msg_id = jint(e, "msg_id");
    assert_true(jint(e, "inbox_seq") >= 1);
    if (strcmp(uid, "bob") == 0)
      bob_seq = jint(e, "inbox_seq");
  }
  assert_true(msg_id > 0);
  struct mim_packet p;
  mim_packet_init(&p);
  tc_push_msg(bob, MIM_CMD_SERVER_PUSH, (uint64_t)msg_id, &p);
  assert_string_equal(p.content, "hello from the backend");
  assert_string_equal(p.from, "shop");
  assert_int_equal(p.inbox_seq, (uint64_t)bob_seq);
  assert_int_equal(p.payload_len, 3);
  assert_int_equal(p.payload[2], 2);
  mim_packet_finish(&p);
  /* the page */
  http(f, "GET", "/api/v1/users/carol/messages?after_seq=0&limit=50", NULL);
  expect_ok();
  json_t *ms = json_object_get(R.json, "messages");
  assert_int_equal(json_array_size(ms), 1);
  json_t *m = json_array_get(ms, 0);
  assert_int_equal(jint(m, "msg_id"), msg_id);
  assert_int_equal(jint(m, "inbox_seq"), 1);
  assert_string_equal(json_string_value(json_object_get(m, "content")),
                      "hello from the backend");
  assert_string_equal(json_string_value(json_object_get(m, "to")), "carol");
  assert_string_equal(json_string_value(json_object_get(m, "payload_b64")),
                      "AAEC");
  assert_true(jint(m, "time_ms") > 0);
  assert_true(json_is_false(json_object_get(R.json, "has_more")));
  fx_stop(f);
}

/* Sends on a user's behalf: delivered, stored in both inboxes,
 * deduplicated by client_msg_id, a conflicting retry refused, group
 * membership checked; the group endpoints on the way. */
static void api_send_and_groups(void **state) {
  (void)state;
  struct fx *f = fx_start(false, NULL);
  struct tc *bob = tc_login(f->h, "bob", "phone");
  const char *send = "{\"from\": \"alice\", \"to\": \"bob\", \"content\": "
                     "\"hi bob\", \"client_msg_id\": \"m-1\"}";
  http(f, "POST", "/api/v1/messages", send);
  expect_ok();
  json_int_t id = jint(R.json, "msg_id");
  struct mim_packet p;
  mim_packet_init(&p);
  tc_push_msg(bob, MIM_CMD_C2C_PUSH, (uint64_t)id, &p);
  assert_string_equal(p.from, "alice");
  assert_string_equal(p.content, "hi bob");
  mim_packet_finish(&p);
  /* the same again: the same msg_id, nothing new stored or pushed */
  http(f, "POST", "/api/v1/messages", send);
  expect_ok();
  assert_int_equal(jint(R.json, "msg_id"), id);
  /* the same id, other content: a conflict */
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"alice\", \"to\": \"bob\", \"content\": \"other\", "
       "\"client_msg_id\": \"m-1\"}");
  expect_error(409, "DEDUP_CONFLICT");
  tc_barrier(bob);
  tc_assert_no_cmd(bob, MIM_CMD_C2C_PUSH);
  http(f, "GET", "/api/v1/users/alice/messages", NULL);
  expect_ok();
  assert_int_equal(json_array_size(json_object_get(R.json, "messages")), 1);
  assert_string_equal(
      json_string_value(json_object_get(
          json_array_get(json_object_get(R.json, "messages"), 0), "to")),
      "bob");

  /* groups */
  http(f, "POST", "/api/v1/groups",
       "{\"group\": \"team\", \"members\": [\"alice\", \"bob\"]}");
  expect_members("team", "alice,bob");
  http(f, "POST", "/api/v1/groups",
       "{\"group\": \"team\", \"members\": [\"carol\"]}");
  expect_error(409, "GROUP_EXISTS");
  http(f, "GET", "/api/v1/groups/team", NULL);
  expect_members("team", "alice,bob");
  http(f, "GET", "/api/v1/groups/nope", NULL);
  expect_error(404, "NO_SUCH_GROUP");
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"carol\", \"group\": \"team\", \"content\": \"x\"}");
  expect_error(403, "NOT_MEMBER");
  http(f, "POST", "/api/v1/groups/team/members", "{\"members\": [\"carol\"]}");
  expect_members("team", "alice,bob,carol");
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"carol\", \"group\": \"team\", \"content\": \"to all\"}");
  expect_ok();
  id = jint(R.json, "msg_id");
  mim_packet_init(&p);
  tc_push_msg(bob, MIM_CMD_C2G_PUSH, (uint64_t)id, &p);
  assert_string_equal(p.group, "team");
  assert_string_equal(p.from, "carol");
  mim_packet_finish(&p);
  /* a user's groups, paged */
  http(f, "POST", "/api/v1/groups",
       "{\"group\": \"book-club\", \"members\": [\"bob\"]}");
  expect_ok();
  http(f, "GET", "/api/v1/users/bob/groups?limit=1", NULL);
  expect_ok();
  json_t *gs = json_object_get(R.json, "groups");
  assert_int_equal(json_array_size(gs), 1);
  assert_true(json_is_true(json_object_get(R.json, "has_more")));
  char first[64], path[160];
  snprintf(first, sizeof first, "%s", json_string_value(json_array_get(gs, 0)));
  snprintf(path, sizeof path, "/api/v1/users/bob/groups?after=%s", first);
  http(f, "GET", path, NULL);
  expect_ok();
  gs = json_object_get(R.json, "groups");
  assert_int_equal(json_array_size(gs), 1);
  assert_string_not_equal(json_string_value(json_array_get(gs, 0)), first);
  assert_true(json_is_false(json_object_get(R.json, "has_more")));
  http(f, "GET", "/api/v1/users/bob/groups?limit=0", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/users/nobody/groups", NULL);
  expect_ok();
  assert_int_equal(json_array_size(json_object_get(R.json, "groups")), 0);
  http(f, "DELETE", "/api/v1/groups/team/members/bob", NULL);
  expect_members("team", "alice,carol");
  http(f, "DELETE", "/api/v1/groups/nope/members/bob", NULL);
  assert_true(R.status == 404 || R.status == 403);
  http(f, "GET", "/api/v1/users/bob/messages?after_seq=0", NULL);
  expect_ok();
  /* the one-to-one message, the group message, and the group's notices
   * (type 1, docs/protocol.md §5.3) of bob's joining and leaving */
  json_t *ms = json_object_get(R.json, "messages");
  size_t group_msgs = 0, notices = 0;
  for (size_t i = 0; i < json_array_size(ms); i++) {
    json_t *m = json_array_get(ms, i);
    const char *g = json_string_value(json_object_get(m, "group"));
    if (jint(m, "type") == MIM_MSG_SYSTEM)
      notices++;
    else if (g != NULL && strcmp(g, "team") == 0)
      group_msgs++;
    assert_int_equal(jint(m, "inbox_seq"), (json_int_t)i + 1);
  }
  assert_int_equal(group_msgs, 1);
  assert_true(notices >= 1);
  fx_stop(f);
}

static bool online(struct fx *f, const char *uid, const char *device) {
  char path[128];
  snprintf(path, sizeof path, "/api/v1/presence?uid=%s&uid=nobody", uid);
  http(f, "GET", path, NULL);
  expect_ok();
  json_t *users = json_object_get(R.json, "users");
  json_t *nobody = json_object_get(users, "nobody");
  assert_true(json_is_false(json_object_get(nobody, "online")));
  json_t *u = json_object_get(users, uid);
  assert_non_null(u);
  json_t *devs = json_object_get(u, "devices");
  bool on = json_is_true(json_object_get(u, "online"));
  assert_int_equal(on, json_array_size(devs) > 0);
  if (on && device != NULL)
    assert_string_equal(json_string_value(json_array_get(devs, 0)), device);
  return on;
}

/* Presence follows login and logout; a kick closes every connection of
 * the user and they are offline at once. */
static void api_presence_and_kick(void **state) {
  (void)state;
  struct fx *f = fx_start(false, NULL);
  assert_false(online(f, "alice", NULL));
  struct tc *a = tc_login(f->h, "alice", "laptop");
  assert_true(online(f, "alice", "laptop"));
  /* logout */
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  mim_packet_init(&rsp);
  req.cmd = MIM_CMD_LOGOUT_REQ;
  req.uid = "alice";
  tc_call(a, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_LOGOUT_RSP);
  mim_packet_finish(&rsp);
  assert_false(online(f, "alice", NULL));
  tc_free(a);
  /* two devices, kicked together */
  struct tc *a1 = tc_login(f->h, "alice", "phone");
  struct tc *a2 = tc_login(f->h, "alice", "tablet");
  struct tc *b = tc_login(f->h, "bob", "phone");
  assert_true(online(f, "alice", NULL));
  http(f, "DELETE", "/api/v1/users/alice/sessions", NULL);
  expect_ok();
  assert_int_equal(jint(R.json, "kicked"), 2);
  assert_false(online(f, "alice", NULL));
  struct mim_packet k;
  mim_packet_init(&k);
  tc_push(a1, MIM_CMD_KICK, &k);
  assert_int_equal(k.reason, MIM_KICK_ADMIN);
  mim_packet_finish(&k);
  int code = 0;
  assert_int_equal(wsc_wait_closed(a1->ws, 10000, &code), 0);
  assert_int_equal(wsc_wait_closed(a2->ws, 10000, &code), 0);
  /* bob is untouched */
  assert_true(online(f, "bob", "phone"));
  tc_barrier(b);
  http(f, "DELETE", "/api/v1/users/alice/sessions", NULL);
  expect_ok();
  assert_int_equal(jint(R.json, "kicked"), 0);
  /* more uids than a request may name (50), more parameters than the
   * server keeps (64) */
  char path[2048] = "/api/v1/presence?uid=u0";
  for (int i = 1; i < 51; i++)
    snprintf(path + strlen(path), sizeof path - strlen(path), "&uid=u%d", i);
  http(f, "GET", path, NULL);
  expect_error(413, "TOO_LARGE");
  for (int i = 51; i < 65; i++)
    snprintf(path + strlen(path), sizeof path - strlen(path), "&uid=u%d", i);
  http(f, "GET", path, NULL);
  expect_error(414, "TOO_LARGE");
  http(f, "GET", "/api/v1/presence", NULL);
  expect_error(400, "MALFORMED");
  fx_stop(f);
}

/* Pages of a user's inbox: limit, has_more, after_seq; bad values. */
static void api_messages_paging(void **state) {
  (void)state;
  struct fx *f = fx_start(false, NULL);
  for (int i = 0; i < 5; i++) {
    char body[128];
    snprintf(body, sizeof body, "{\"to\": [\"dave\"], \"content\": \"n%d\"}",
             i);
    http(f, "POST", "/api/v1/push", body);
    expect_ok();
  }
  http(f, "GET", "/api/v1/users/dave/messages?after_seq=0&limit=2", NULL);
  expect_ok();
  json_t *ms = json_object_get(R.json, "messages");
  assert_int_equal(json_array_size(ms), 2);
  assert_true(json_is_true(json_object_get(R.json, "has_more")));
  assert_int_equal(jint(json_array_get(ms, 1), "inbox_seq"), 2);
  http(f, "GET", "/api/v1/users/dave/messages?after_seq=2&limit=50", NULL);
  expect_ok();
  ms = json_object_get(R.json, "messages");
  assert_int_equal(json_array_size(ms), 3);
  assert_string_equal(
      json_string_value(json_object_get(json_array_get(ms, 0), "content")),
      "n2");
  assert_true(json_is_false(json_object_get(R.json, "has_more")));
  http(f, "GET", "/api/v1/users/dave/messages?limit=0", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/users/dave/messages?limit=501", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/users/dave/messages?after_seq=-1", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/users/dave/messages?after_seq=x", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/users/nobody/messages", NULL);
  expect_ok();
  assert_int_equal(json_array_size(json_object_get(R.json, "messages")), 0);
  /* a page is cut at reply_bytes_max (512 KiB) with has_more, and an
   * answer that large is written in pieces */
  static char body[40000];
  char *text = malloc(30001);
  memset(text, 'z', 30000);
  text[30000] = '\0';
  for (int i = 0; i < 20; i++) {
    snprintf(body, sizeof body, "{\"to\": [\"erin\"], \"content\": \"%s\"}",
             text);
    http(f, "POST", "/api/v1/push", body);
    expect_ok();
  }
  free(text);
  http(f, "GET", "/api/v1/users/erin/messages?limit=50", NULL);
  expect_ok();
  ms = json_object_get(R.json, "messages");
  if (json_array_size(ms) < 10 || json_array_size(ms) >= 20)
    fail_msg("%zu messages, %zu bytes", json_array_size(ms), R.len);
  assert_true(json_is_true(json_object_get(R.json, "has_more")));
  assert_true(R.len > 300000);
  fx_stop(f);
}

/* A minted token logs in on the gateway, for its device only. */
static void api_tokens(void **state) {
  (void)state;
  struct fx *f = fx_start(true, NULL);
  http(f, "POST", "/api/v1/tokens",
       "{\"uid\": \"erin\", \"device\": \"phone\", \"ttl_s\": 600}");
  expect_ok();
  char token[MIM_TOKEN_MAX];
  snprintf(token, sizeof token, "%s",
           json_string_value(json_object_get(R.json, "token")));
  json_int_t exp = jint(R.json, "expires_at");
  assert_true(exp >= (json_int_t)time(NULL) + 590 &&
              exp <= (json_int_t)time(NULL) + 610);
  struct tc *c = tc_open(f->h);
  assert_int_equal(tc_auth(c, "erin", "phone", token, 0), 0);
  struct tc *d = tc_open(f->h);
  assert_int_equal(tc_auth(d, "erin", "laptop", token, 0), E_TOKEN_INVALID);
  assert_int_equal(tc_auth(d, "frank", "phone", token, 0), E_TOKEN_INVALID);
  http(f, "POST", "/api/v1/tokens", "{\"uid\": \"erin\", \"ttl_s\": 0}");
  expect_error(400, "MALFORMED");
  http(f, "POST", "/api/v1/tokens", "{\"uid\": \"erin\", \"ttl_s\": \"1\"}");
  expect_error(400, "MALFORMED");
  http(f, "POST", "/api/v1/tokens", "{\"device\": \"x\"}");
  expect_error(400, "MALFORMED");
  /* without a device: any device */
  http(f, "POST", "/api/v1/tokens", "{\"uid\": \"erin\"}");
  expect_ok();
  snprintf(token, sizeof token, "%s",
           json_string_value(json_object_get(R.json, "token")));
  assert_int_equal(tc_auth(d, "erin", "laptop", token, 0), 0);
  fx_stop(f);
}

/* The bounds: the body (http_body_max), a list (group_request_members_max)
 * and content (content_max). */
static void api_body_too_large(void **state) {
  (void)state;
  const char *const extra[] = {"--http-body-max", "4096",
                               "--group-request-members-max", "3",
                               "--content-max", "1000",
                               "--reply-bytes-max", "65536", NULL};
  struct fx *f = fx_start(false, extra);
  static char body[8192];
  char *big = malloc(5000);
  memset(big, 'x', 4999);
  big[4999] = '\0';
  /* a small message in a body past http_body_max (an unknown field makes
   * it large): refused before it is read */
  snprintf(body, sizeof body,
           "{\"to\": [\"a\"], \"content\": \"x\", \"pad\": \"%s\"}", big);
  http(f, "POST", "/api/v1/push", body);
  expect_error(413, "TOO_LARGE");
  /* the connection was closed, the next request is fine */
  big[1001] = '\0';
  snprintf(body, sizeof body, "{\"to\": [\"a\"], \"content\": \"%s\"}", big);
  http(f, "POST", "/api/v1/push", body);
  expect_error(413, "TOO_LARGE"); /* content_max */
  big[1000] = '\0';
  snprintf(body, sizeof body, "{\"to\": [\"a\"], \"content\": \"%s\"}", big);
  http(f, "POST", "/api/v1/push", body);
  expect_ok();
  http(f, "POST", "/api/v1/push",
       "{\"to\": [\"a\", \"b\", \"c\", \"d\"], \"content\": \"x\"}");
  expect_error(413, "TOO_LARGE");
  http(f, "POST", "/api/v1/groups",
       "{\"group\": \"g\", \"members\": [\"a\", \"b\", \"c\", \"d\"]}");
  expect_error(413, "TOO_LARGE");
  http(f, "POST", "/api/v1/groups",
       "{\"group\": \"g\", \"members\": [\"a\", \"b\", \"c\"]}");
  expect_members("g", "a,b,c");
  free(big);
  fx_stop(f);
}

/* A key's requests past its bucket are answered 429 with Retry-After; the
 * other key has its own bucket; the bucket refills. */
static void api_rate_limit(void **state) {
  (void)state;
  const char *const extra[] = {"--api-rate-per-sec", "2", "--api-rate-burst",
                               "5", NULL};
  struct fx *f = fx_start(false, extra);
  int ok = 0, limited = 0;
  for (int i = 0; i < 12; i++) {
    long st = http(f, "GET", "/api/v1/presence?uid=a", NULL);
    if (st == 200)
      ok++;
    else if (st == 429) {
      expect_error(429, "RATE_LIMITED");
      assert_non_null(strcasestr(R.headers, "Retry-After:"));
      limited++;
    }
  }
  /* 5 of burst plus at most a few refilled while the loop ran */
  assert_true(ok >= 5 && ok <= 8);
  assert_true(limited >= 4);
  assert_int_equal(http_ct(f, "GET", "/api/v1/presence?uid=a", KEY2, NULL,
                           NULL), 200);
  /* health is not rate-limited */
  assert_int_equal(http_ct(f, "GET", "/healthz", NULL, NULL, NULL), 200);
  usleep(1100 * 1000);
  assert_int_equal(http(f, "GET", "/api/v1/presence?uid=a", NULL), 200);
  fx_stop(f);
}

/* Whether the peer closes `fd` within `ms` (reads until EOF or error). */
static bool closed_within(int fd, int ms) {
  int64_t end = h_mono_ms() + ms;
  char buf[4096];
  while (h_mono_ms() < end) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0)
      continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0)
      return true;
  }
  return false;
}

/* http_conns_max: connections past the cap are closed at accept; one
 * closing makes room. */
static void api_conn_cap(void **state) {
  (void)state;
  const char *const extra[] = {"--http-conns-max", "3", NULL};
  struct fx *f = fx_start(false, extra);
  int fds[3];
  for (int i = 0; i < 3; i++) {
    fds[i] = h_tcp_connect(f->port);
    assert_true(fds[i] >= 0);
  }
  usleep(300 * 1000); /* let logicd accept them */
  int extra_fd = h_tcp_connect(f->port);
  assert_true(extra_fd >= 0); /* the kernel accepts; logicd closes */
  assert_true(closed_within(extra_fd, 3000));
  close(extra_fd);
  /* the held ones are still open */
  for (int i = 0; i < 3; i++)
    assert_false(closed_within(fds[i], 100));
  close(fds[0]);
  usleep(300 * 1000);
  assert_int_equal(http_ct(f, "GET", "/healthz", NULL, NULL, NULL), 200);
  for (int i = 1; i < 3; i++)
    close(fds[i]);
  fx_stop(f);
}

/* Reads what the peer sends until it closes (or `ms` pass) into `buf`;
 * returns whether it closed. */
static bool read_until_closed(int fd, int ms, char *buf, size_t cap) {
  int64_t end = h_mono_ms() + ms;
  size_t got = 0;
  buf[0] = '\0';
  while (h_mono_ms() < end) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0)
      continue;
    ssize_t r = read(fd, buf + got, cap - 1 - got);
    if (r <= 0)
      return true;
    got += (size_t)r;
    buf[got] = '\0';
  }
  return false;
}

/* http_timeout_s: a body that does not arrive in time gets 408 and the
 * connection closes; headers that do not, a silent connection and an idle
 * keep-alive connection are closed; all within about the timeout (lws's
 * own timeouts are 5 to 30 s), on a quiet logicd. A complete request on a
 * kept-alive connection works. */
static void api_request_deadline(void **state) {
  (void)state;
  const char *const extra[] = {"--http-timeout-s", "1", NULL};
  struct fx *f = fx_start(false, extra);
  int fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  char req[512], ans[4096];
  int n = snprintf(req, sizeof req,
                   "POST /api/v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: "
                   "Bearer " KEY "\r\nContent-Type: application/json\r\n"
                   "Content-Length: 100\r\n\r\n{\"to\":");
  assert_int_equal(write(fd, req, (size_t)n), n);
  int64_t t0 = h_mono_ms();
  assert_true(read_until_closed(fd, 3000, ans, sizeof ans));
  assert_true(h_mono_ms() - t0 >= 500);
  assert_non_null(strstr(ans, "408"));
  close(fd);
  /* headers that never end */
  fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, "GET /heal", 9), 9);
  assert_true(closed_within(fd, 3000));
  close(fd);
  /* a connection that says nothing */
  fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  assert_true(closed_within(fd, 3000));
  close(fd);
  /* keep-alive: two requests on one connection */
  fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  const char *two = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(write(fd, two, strlen(two)), (ssize_t)strlen(two));
  char buf[4096] = "";
  size_t got = 0;
  int64_t end = h_mono_ms() + 5000;
  while (h_mono_ms() < end && strstr(buf, "\"ready\"") == NULL) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0)
      continue;
    ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
    if (r <= 0)
      break;
    got += (size_t)r;
    buf[got] = '\0';
  }
  assert_non_null(strstr(buf, "\"status\":\"ok\""));
  assert_non_null(strstr(buf, "\"ready\":true"));
  /* and the idle keep-alive connection is closed after the timeout */
  assert_true(closed_within(fd, 3000));
  close(fd);
  fx_stop(f);
}

/* /readyz is 503 while commits fail (the map is full), and writes get
 * their own error (STORE_FULL: 503). */
static void api_readyz_store_full(void **state) {
  (void)state;
  const char *const extra[] = {"--map-size-mb", "1", "--map-size-max-mb",
                               "1", NULL};
  struct fx *f = fx_start(false, extra);
  assert_int_equal(http_ct(f, "GET", "/readyz", NULL, NULL, NULL), 200);
  static char body[20000];
  char *text = malloc(16001);
  memset(text, 'y', 16000);
  text[16000] = '\0';
  int full = 0;
  for (int i = 0; i < 400 && full == 0; i++) {
    snprintf(body, sizeof body, "{\"to\": [\"u%d\"], \"content\": \"%s\"}",
             i % 7, text);
    long st = http(f, "POST", "/api/v1/push", body);
    if (st == 503) {
      expect_error(503, "STORE_FULL");
      full++;
    } else {
      expect_ok();
    }
  }
  assert_int_equal(full, 1);
  assert_int_equal(http_ct(f, "GET", "/readyz", NULL, NULL, NULL), 503);
  assert_true(json_is_false(json_object_get(R.json, "ready")));
  assert_true(json_is_string(json_object_get(R.json, "reason")));
  /* still live */
  assert_int_equal(http_ct(f, "GET", "/healthz", NULL, NULL, NULL), 200);
  free(text);
  fx_stop(f);
}

/* mimctl's RPC requests and the HTTP API are one implementation: a message
 * sent with `mimctl send` and retried over HTTP with the same
 * client_msg_id is one message; a conflicting retry is refused by both. */
static void api_shares_mimctl_path(void **state) {
  (void)state;
  const char *mimctl = getenv("MIMCTL");
  if (mimctl == NULL || access(mimctl, X_OK) != 0)
    skip();
  struct fx *f = fx_start(false, NULL);
  struct tc *bob = tc_login(f->h, "bob", "phone");
  char cmd[1200];
  snprintf(cmd, sizeof cmd,
           "%s --logic unix:%s/admin.sock send --from alice --to bob "
           "--text 'one message' --id shared-1 2>&1",
           mimctl, f->h->data_dir);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  char out[256] = "";
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  assert_int_equal(pclose(p), 0);
  unsigned long long id = 0;
  if (sscanf(out, "sent: msg_id %llu", &id) != 1)
    fail_msg("mimctl send: %s", out);
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"alice\", \"to\": \"bob\", \"content\": \"one message\","
       " \"client_msg_id\": \"shared-1\"}");
  expect_ok();
  assert_int_equal(jint(R.json, "msg_id"), (json_int_t)id);
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"alice\", \"to\": \"bob\", \"content\": \"changed\","
       " \"client_msg_id\": \"shared-1\"}");
  expect_error(409, "DEDUP_CONFLICT");
  snprintf(cmd, sizeof cmd,
           "%s --logic unix:%s/admin.sock send --from alice --to bob "
           "--text changed --id shared-1 >/dev/null 2>&1",
           mimctl, f->h->data_dir);
  assert_int_not_equal(system(cmd), 0);
  struct mim_packet m;
  mim_packet_init(&m);
  tc_push_msg(bob, MIM_CMD_C2C_PUSH, id, &m);
  mim_packet_finish(&m);
  tc_barrier(bob);
  tc_assert_no_cmd(bob, MIM_CMD_C2C_PUSH);
  http(f, "GET", "/api/v1/users/bob/messages", NULL);
  expect_ok();
  assert_int_equal(json_array_size(json_object_get(R.json, "messages")), 1);
  fx_stop(f);
}

/* GET /metrics on http_listen, without a key: Prometheus text format
 * 0.0.4 that a real parser (python3-prometheus-client, through
 * tests/metrics/check-metrics.py) accepts, with counters that move. */
static void api_metrics_on_http_listen(void **state) {
  (void)state;
  struct fx *f = fx_start(false, NULL);
  assert_int_equal(http_ct(f, "GET", "/metrics", NULL, NULL, NULL), 200);
  assert_non_null(strcasestr(R.headers, "text/plain; version=0.0.4"));
  assert_non_null(strstr(R.body, "# TYPE mim_messages_stored_total counter"));
  char before[512];
  snprintf(before, sizeof before, "%s/metrics-before.txt", f->h->root);
  FILE *out = fopen(before, "w");
  assert_non_null(out);
  assert_int_equal(fwrite(R.body, 1, R.len, out), R.len);
  fclose(out);
  for (int i = 0; i < 3; i++) {
    http(f, "POST", "/api/v1/push", "{\"to\": [\"m\"], \"content\": \"x\"}");
    expect_ok();
  }
  const char *py = getenv("PYTHON3"), *chk = getenv("CHECK_METRICS");
  if (py == NULL || chk == NULL) {
    fx_stop(f);
    skip();
  }
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "%s %s http://127.0.0.1:%d/metrics --require mim_ready "
           "--require mim_commit_seconds --before %s "
           "--increased mim_messages_stored_total",
           py, chk, f->port, before);
  assert_int_equal(system(cmd), 0);
  fx_stop(f);
}

/* logicd refuses an HTTP listener other hosts reach without a key. */
static void api_config_refused(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  const char *const args[] = {"--http-listen", "0.0.0.0:0", NULL};
  o.logicd_args = args;
  struct harness *h;
  assert_int_equal(h_create(&h, WS, &o), 0);
  assert_true(h_start_logicd(h) < 0);
  h_destroy(h);
}

/* On loopback an http_listen without a key is allowed, as the operations
 * guide says: logicd starts, health answers, every /api/ request is 401. */
static void api_without_key_on_loopback(void **state) {
  (void)state;
  struct fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->port = h_free_port();
  snprintf(f->listen, sizeof f->listen, "127.0.0.1:%d", f->port);
  f->args[0] = "--http-listen";
  f->args[1] = f->listen;
  f->args[2] = NULL;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = f->args;
  assert_int_equal(h_create(&f->h, WS, &o), 0);
  assert_int_equal(h_start(f->h), 0);
  assert_int_equal(http_ct(f, "GET", "/healthz", NULL, NULL, NULL), 200);
  http(f, "GET", "/api/v1/presence?uid=a", NULL);
  expect_error(401, "UNAUTHENTICATED");
  fx_stop(f);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A user's conversation list and a group message's readers, as the
 * operator sees them (docs/http-api.md 5.7b, 5.7c). */
static void api_conversations_and_read_by(void **state) {
  (void)state;
  struct fx *f = fx_start(false, NULL);
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"alice\", \"to\": \"bob\", \"content\": \"one\"}");
  expect_ok();
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"alice\", \"to\": \"bob\", \"content\": \"two\"}");
  expect_ok();
  http(f, "POST", "/api/v1/groups",
       "{\"group\": \"team\", \"members\": [\"alice\", \"bob\"]}");
  expect_ok();
  http(f, "POST", "/api/v1/messages",
       "{\"from\": \"alice\", \"group\": \"team\", \"content\": \"lunch?\"}");
  expect_ok();
  /* bob: the group first (newest), then alice; both unread */
  http(f, "GET", "/api/v1/users/bob/conversations", NULL);
  expect_ok();
  json_t *cs = json_object_get(R.json, "conversations");
  assert_int_equal(json_array_size(cs), 2);
  json_t *g = json_array_get(cs, 0), *c = json_array_get(cs, 1);
  assert_string_equal(json_string_value(json_object_get(g, "group")), "team");
  assert_string_equal(json_string_value(json_object_get(g, "preview")),
                      "lunch?");
  assert_string_equal(json_string_value(json_object_get(g, "last_from")),
                      "alice");
  json_int_t team_seq = jint(g, "last_conv_seq");
  assert_true(jint(g, "unread") >= 1);
  assert_string_equal(json_string_value(json_object_get(c, "peer")), "alice");
  assert_int_equal(jint(c, "unread"), 2);
  assert_int_equal(jint(c, "last_conv_seq"), 2);
  assert_true(json_is_false(json_object_get(R.json, "has_more")));
  /* alice sent everything: nothing unread; bob has read nothing */
  http(f, "GET", "/api/v1/users/alice/conversations?limit=1", NULL);
  expect_ok();
  cs = json_object_get(R.json, "conversations");
  assert_int_equal(json_array_size(cs), 1);
  assert_int_equal(jint(json_array_get(cs, 0), "unread"), 0);
  assert_true(json_is_true(json_object_get(R.json, "has_more")));
  char path[160];
  snprintf(path, sizeof path, "/api/v1/users/alice/conversations?before=%lld",
           (long long)jint(json_array_get(cs, 0), "last_msg_id"));
  http(f, "GET", path, NULL);
  expect_ok();
  cs = json_object_get(R.json, "conversations");
  assert_int_equal(json_array_size(cs), 1);
  assert_string_equal(
      json_string_value(json_object_get(json_array_get(cs, 0), "peer")), "bob");
  assert_int_equal(jint(json_array_get(cs, 0), "peer_read_seq"), 0);
  /* read by 1 (the sender) of 2 */
  snprintf(path, sizeof path, "/api/v1/groups/team/read_by?conv_seq=%lld&limit=10",
           (long long)team_seq);
  http(f, "GET", path, NULL);
  expect_ok();
  assert_int_equal(jint(R.json, "read_count"), 1);
  assert_int_equal(jint(R.json, "member_count"), 2);
  json_t *rd = json_object_get(R.json, "readers");
  assert_int_equal(json_array_size(rd), 1);
  assert_string_equal(json_string_value(json_array_get(rd, 0)), "alice");
  /* only the counts without a limit */
  snprintf(path, sizeof path, "/api/v1/groups/team/read_by?conv_seq=%lld",
           (long long)team_seq);
  http(f, "GET", path, NULL);
  expect_ok();
  assert_int_equal(json_array_size(json_object_get(R.json, "readers")), 0);
  /* refusals */
  http(f, "GET", "/api/v1/groups/team/read_by", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/groups/team/read_by?conv_seq=0", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/groups/nosuch/read_by?conv_seq=1", NULL);
  expect_error(404, "NO_SUCH_GROUP");
  http(f, "GET", "/api/v1/users/bob/conversations?limit=0", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/users/bob/conversations?before=x", NULL);
  expect_error(400, "MALFORMED");
  http(f, "GET", "/api/v1/users/nobody/conversations", NULL);
  expect_ok();
  assert_int_equal(
      json_array_size(json_object_get(R.json, "conversations")), 0);
  fx_stop(f);
}

int main(int argc, char **argv) {
  static const struct CMUnitTest all_tests[] = {
      cmocka_unit_test(api_auth_and_errors),
      cmocka_unit_test(api_push_reaches_client),
      cmocka_unit_test(api_send_and_groups),
      cmocka_unit_test(api_presence_and_kick),
      cmocka_unit_test(api_messages_paging),
      cmocka_unit_test(api_tokens),
      cmocka_unit_test(api_body_too_large),
      cmocka_unit_test(api_rate_limit),
      cmocka_unit_test(api_conn_cap),
      cmocka_unit_test(api_request_deadline),
      cmocka_unit_test(api_readyz_store_full),
      cmocka_unit_test(api_config_refused),
      cmocka_unit_test(api_without_key_on_loopback),
      cmocka_unit_test(api_shares_mimctl_path),
      cmocka_unit_test(api_metrics_on_http_listen),
      cmocka_unit_test(api_conversations_and_read_by),
  };
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = h_main(argc, argv, "api", all_tests, COUNT(all_tests), &WS, 170);
  json_decref(R.json);
  curl_global_cleanup();
  return rc;
}
