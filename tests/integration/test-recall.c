/* Recall, edit and delete-for-me end to end (docs/protocol.md §19): the
 * real logicd and gatewayd on loopback ports, real websocket clients, two
 * users with two devices each.
 *
 *   test-recall [NAME]   runs every test, or only the test called NAME
 *
 * recall_devices      a recall reaches the online MIM_CAP_CHANGE devices at
 *                     once (cmd 46), the offline device learns it on
 *                     reconnect (the change entry of its pull), a seed
 *                     client sees nothing new
 * recall_disk_restart the content is gone from data.mdb after a recall and
 *                     a restart, and the tombstone survives the restart
 * recall_group_admin  a group admin recalls a member's message past the
 *                     window; a member cannot recall another's; a removed
 *                     member cannot recall its own
 * recall_window       the sender's window (recall_window_s) expires; an
 *                     edit still works inside edit_window_s
 * recall_http_api     DELETE /api/v1/messages/{id}: the operator's recall
 * recall_http_gateway POST /http/v1/msg_change: cmd 44 over HTTP
 *
 * Each test gets its own daemon pair. Exit status 77 (skipped) when the
 * daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mim/codec.h>
#include <mim/common.h>
#include <mim/store.h>

#include "curlc.h"
#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

#define KEY "recall-api-key"
#define WINDOW_S 3 /* recall_window_s of these daemons */

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
  int api_port;
  char listen[64];
  /* logicd's extra flags: the harness keeps the pointer and reads them
   * again when a test restarts logicd, so they live with the fixture */
  const char *largs[8];
};

#define PASSED(f) ((f)->passed = true)

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;
  if (f == NULL)
    return -1;
  f->name = "recall";
  f->api_port = h_free_port();
  snprintf(f->listen, sizeof f->listen, "127.0.0.1:%d", f->api_port);
  static char window[16];
  snprintf(window, sizeof window, "%d", WINDOW_S);
  const char *largs[] = {"--http-listen", f->listen, "--api-key", KEY,
                         "--recall-window-s", window, NULL};
  memcpy(f->largs, largs, sizeof largs);
  h_opts_init(&o);
  o.logicd_args = f->largs;
  if (h_begin(&f->h, WS, &o, f->name, 120) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = 0;
  if (f != NULL) {
    r = h_finish(f->h, f->name, f->passed,
                 H_CHECK_GATEWAYD | H_CHECK_LOGICD | H_STOP_GATEWAYD |
                     H_STOP_LOGICD);
    free(f);
  }
  *state = NULL;
  return r;
}

/* ---- helpers ---- */

enum { E_NOT_FOUND = 1041, E_WINDOW_PASSED = 1042 };

/* Sends MsgChangeRequest and returns the answer in `rsp` (reply or
 * Error); the caller finishes it. */
static void change(struct tc *c, uint64_t id, uint32_t action,
                   const char *peer, const char *group, const char *content,
                   struct mim_packet *rsp) {
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_MSG_CHANGE_REQ;
  req.msg_id = id;
  req.type = action;
  req.peer = peer;
  req.group = group;
  req.content = content;
  tc_call(c, &req, rsp);
}

static void change_ok(struct tc *c, uint64_t id, uint32_t action,
                      const char *peer, const char *group,
                      const char *content) {
  struct mim_packet r;
  change(c, id, action, peer, group, content, &r);
  tc_expect_cmd(&r, MIM_CMD_MSG_CHANGE_RSP);
  assert_int_equal(r.msg_id, id);
  mim_packet_finish(&r);
}

static void change_err(struct tc *c, uint64_t id, uint32_t action,
                       const char *peer, const char *group, int32_t code) {
  struct mim_packet r;
  change(c, id, action, peer, group, action == 2 ? "x" : NULL, &r);
  tc_expect_error(&r, code, MIM_CMD_MSG_CHANGE_REQ);
  mim_packet_finish(&r);
}

/* Expects push 46 for `id` on `c`. */
static void changed(struct tc *c, uint64_t id, uint32_t action,
                    const char *actor, const char *peer) {
  struct mim_packet p;
  assert_int_equal(wsc_recv_cmd(c->ws, MIM_CMD_MSG_CHANGED, TC_PUSH_MS, &p),
                   0);
  assert_int_equal(p.msg_id, id);
  assert_int_equal(p.type, action);
  assert_string_equal(p.from, actor);
  if (peer != NULL)
    assert_string_equal(p.peer, peer);
  assert_true(p.change_time > 0);
  mim_packet_finish(&p);
}

/* The history item `id` of `c`'s conversation (peer or group); its state
 * and content. */
static bool history_item(struct tc *c, const char *peer, const char *group,
                         uint64_t id, uint32_t *state, char *content,
                         size_t cap) {
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_HISTORY_REQ;
  req.peer = peer;
  req.group = group;
  req.limit = 100;
  tc_call(c, &req, &rsp);
  tc_expect_cmd(&rsp, MIM_CMD_HISTORY_RSP);
  bool found = false;
  for (size_t i = 0; i < rsp.n_items; i++)
    if (rsp.items[i].msg_id == id) {
      *state = rsp.items[i].state;
      snprintf(content, cap, "%s", rsp.items[i].content);
      found = true;
    }
  mim_packet_finish(&rsp);
  return found;
}

/* Whether data.mdb under `dir` holds the bytes of `needle`. */
static bool file_holds(const char *dir, const char *needle) {
  char path[600];
  snprintf(path, sizeof path, "%s/data.mdb", dir);
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  size_t k = strlen(needle), n = 0, cap = 1 << 20;
  char *buf = malloc(cap);
  assert_non_null(buf);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n, fp)) > 0) {
    n += got;
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  fclose(fp);
  bool found = false;
  for (size_t i = 0; !found && i + k <= n; i++)
    found = memcmp(buf + i, needle, k) == 0;
  free(buf);
  return found;
}

/* ---- tests ---- */

static void recall_devices(void **state) {
  struct fixture *f = *state;
  struct tc *a1 = tc_login_caps(f->h, "alice", "phone", MIM_CAP_CHANGE);
  struct tc *a2 = tc_login_caps(f->h, "alice", "laptop", MIM_CAP_CHANGE);
  struct tc *b1 = tc_login_caps(f->h, "bob", "phone", MIM_CAP_CHANGE);
  struct tc *seed = tc_login_caps(f->h, "bob", "seed", 0);
  assert_int_equal(a1->caps & MIM_CAP_CHANGE, MIM_CAP_CHANGE);
  /* bob's laptop was here once and left */
  struct tc *b2 = tc_login_caps(f->h, "bob", "laptop", MIM_CAP_CHANGE);
  tc_free(b2);

  uint64_t id = tc_c2c(a1, "bob", "see you at nine", NULL, NULL);
  struct mim_packet p;
  tc_push_msg(seed, MIM_CMD_C2C_PUSH, id, &p);
  uint64_t seed_seq = p.inbox_seq;
  mim_packet_finish(&p);
  tc_ack(seed, MIM_CMD_C2C_PUSH_ACK, id, 0);

  change_ok(a1, id, MIM_CHANGE_RECALL, "bob", NULL, NULL);
  /* at once: the sender's other device and the peer's */
  changed(a2, id, MIM_CHANGE_RECALL, "alice", "bob");
  changed(b1, id, MIM_CHANGE_RECALL, "alice", "alice");
  /* the seed client: nothing new, not even in its pull */
  tc_barrier(seed);
  tc_assert_no_cmd(seed, MIM_CMD_MSG_CHANGED);
  tc_pull(seed, true, seed_seq, 100, &p);
  assert_int_equal(p.n_items, 0);
  mim_packet_finish(&p);
  tc_barrier(a1);
  tc_assert_no_cmd(a1, MIM_CMD_MSG_CHANGED); /* it has the reply */

  /* the laptop comes back: its pull holds the message, a tombstone now,
   * and the change entry that tells a device which had it already */
  b2 = tc_login_caps(f->h, "bob", "laptop", MIM_CAP_CHANGE);
  tc_pull(b2, true, 0, 100, &p);
  assert_int_equal(p.n_items, 2);
  assert_int_equal(p.items[0].msg_id, id);
  assert_int_equal(p.items[0].state, MIM_MSG_STATE_RECALLED);
  assert_string_equal(p.items[0].content, "");
  assert_int_equal(p.items[1].msg_id, id);
  assert_int_equal(p.items[1].inbox_seq, p.items[0].inbox_seq + 1);
  assert_int_equal(p.items[1].state, MIM_MSG_STATE_RECALLED);
  assert_true(p.items[1].change_time > 0);
  mim_packet_finish(&p);
  /* history shows the tombstone to both sides */
  uint32_t st;
  char text[64];
  assert_true(history_item(b1, "alice", NULL, id, &st, text, sizeof text));
  assert_int_equal(st, MIM_MSG_STATE_RECALLED);
  assert_string_equal(text, "");

  /* delete-for-me: bob's other CAP_CHANGE devices only */
  uint64_t id2 = tc_c2c(a1, "bob", "keep this", NULL, NULL);
  change_ok(b1, id2, MIM_CHANGE_DELETE_FOR_ME, "alice", NULL, NULL);
  changed(b2, id2, MIM_CHANGE_DELETE_FOR_ME, "bob", NULL);
  tc_barrier(a2);
  tc_assert_no_cmd(a2, MIM_CMD_MSG_CHANGED);
  assert_false(history_item(b2, "alice", NULL, id2, &st, text, sizeof text));
  assert_true(history_item(a2, "bob", NULL, id2, &st, text, sizeof text));
  assert_string_equal(text, "keep this");
  PASSED(f);
}

static void recall_disk_restart(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_CHANGE);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_CHANGE);
  const char *secret = "launch-code-7d1f0c2b";
  uint64_t id = tc_c2c(a, "bob", secret, NULL, NULL);
  change_ok(a, id, MIM_CHANGE_RECALL, "bob", NULL, NULL);
  /* a few more commits let LMDB reuse the freed page (docs/security.md) */
  for (int i = 0; i < 3; i++)
    tc_c2c(b, "alice", "after", NULL, NULL);
  tc_free(a);
  tc_free(b);
  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);
  assert_false(file_holds(f->h->data_dir, secret));
  assert_int_equal(h_start_logicd(f->h), 0);
  assert_int_equal(h_wait_linked(f->h, 10000), 0);
  b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_CHANGE);
  uint32_t st;
  char text[64];
  assert_true(history_item(b, "alice", NULL, id, &st, text, sizeof text));
  assert_int_equal(st, MIM_MSG_STATE_RECALLED);
  assert_string_equal(text, "");
  /* and recalled stays recalled: an edit is refused */
  a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_CHANGE);
  change_err(a, id, MIM_CHANGE_EDIT, "bob", NULL, E_FORBIDDEN);
  PASSED(f);
}

static void recall_group_admin(void **state) {
  struct fixture *f = *state;
  struct tc *own = tc_login_caps(f->h, "owner", "phone", MIM_CAP_CHANGE);
  struct tc *adm = tc_login_caps(f->h, "adm", "phone", MIM_CAP_CHANGE);
  struct tc *m1 = tc_login_caps(f->h, "mem", "phone", MIM_CAP_CHANGE);
  struct tc *m2 = tc_login_caps(f->h, "mem2", "phone", MIM_CAP_CHANGE);
  const char *members[] = {"adm", "mem", "mem2"};
  struct mim_packet r;
  tc_group_call(own, MIM_CMD_GROUP_CREATE_REQ, "team", members, 3, &r);
  tc_expect_cmd(&r, MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_finish(&r);
  struct mim_packet req;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_MANAGE_REQ;
  req.group = "team";
  req.type = MIM_GA_PROMOTE;
  req.to = "adm";
  tc_call(own, &req, &r);
  tc_expect_cmd(&r, MIM_CMD_GROUP_MANAGE_RSP);
  mim_packet_finish(&r);

  uint64_t id = tc_c2g(m1, "team", "off topic", NULL, NULL);
  uint64_t own_id = tc_c2g(m2, "team", "mine", NULL, NULL);
  /* another member may not; an outsider cannot tell it exists */
  change_err(m2, id, MIM_CHANGE_RECALL, NULL, "team", E_FORBIDDEN);
  struct tc *out = tc_login_caps(f->h, "outsider", "phone", MIM_CAP_CHANGE);
  change_err(out, id, MIM_CHANGE_RECALL, NULL, "team", E_NOT_FOUND);
  /* past the sender's window, the admin may */
  h_sleep_ms(WINDOW_S * 1000 + 300);
  change_err(m1, id, MIM_CHANGE_RECALL, NULL, "team", E_WINDOW_PASSED);
  change_ok(adm, id, MIM_CHANGE_RECALL, NULL, "team", NULL);
  changed(own, id, MIM_CHANGE_RECALL, "adm", NULL);
  changed(m1, id, MIM_CHANGE_RECALL, "adm", NULL);
  changed(m2, id, MIM_CHANGE_RECALL, "adm", NULL);
  /* removed, mem2 cannot recall its own message any more */
  tc_group_call(own, MIM_CMD_GROUP_REMOVE_REQ, "team",
                (const char *const[]){"mem2"}, 1, &r);
  tc_expect_cmd(&r, MIM_CMD_GROUP_REMOVE_RSP);
  mim_packet_finish(&r);
  change_err(m2, own_id, MIM_CHANGE_DELETE_FOR_ME, NULL, "team", E_NOT_FOUND);
  PASSED(f);
}

static void recall_window(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_CHANGE);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_CHANGE);
  uint64_t id = tc_c2c(a, "bob", "helo", NULL, NULL);
  change_err(b, id, MIM_CHANGE_RECALL, "alice", NULL, E_FORBIDDEN);
  h_sleep_ms(WINDOW_S * 1000 + 300);
  change_err(a, id, MIM_CHANGE_RECALL, "bob", NULL, E_WINDOW_PASSED);
  change_ok(a, id, MIM_CHANGE_EDIT, "bob", NULL, "hello");
  struct mim_packet p;
  assert_int_equal(wsc_recv_cmd(b->ws, MIM_CMD_MSG_CHANGED, TC_PUSH_MS, &p),
                   0);
  assert_int_equal(p.type, MIM_CHANGE_EDIT);
  assert_string_equal(p.content, "hello");
  mim_packet_finish(&p);
  uint32_t st;
  char text[64];
  assert_true(history_item(b, "alice", NULL, id, &st, text, sizeof text));
  assert_int_equal(st, MIM_MSG_STATE_EDITED);
  assert_string_equal(text, "hello");
  PASSED(f);
}

static void recall_http_api(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_CHANGE);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_CHANGE);
  uint64_t id = tc_c2c(a, "bob", "regrettable", NULL, NULL);
  h_sleep_ms(WINDOW_S * 1000 + 300); /* the operator has no window */
  static struct curlc_resp R;
  char path[64];
  snprintf(path, sizeof path, "/api/v1/messages/%llu", (unsigned long long)id);
  assert_int_equal(curlc_request(&R, f->api_port, "DELETE", path, NULL, NULL,
                                 NULL),
                   401);
  assert_int_equal(curlc_request(&R, f->api_port, "DELETE", path, KEY, NULL,
                                 NULL),
                   200);
  assert_non_null(R.json);
  assert_int_equal(json_integer_value(json_object_get(R.json, "msg_id")),
                   (json_int_t)id);
  changed(a, id, MIM_CHANGE_RECALL, "", "bob");
  changed(b, id, MIM_CHANGE_RECALL, "", "alice");
  /* an operator's edit: PATCH with the new content */
  uint64_t id2 = tc_c2c(a, "bob", "v1", NULL, NULL);
  snprintf(path, sizeof path, "/api/v1/messages/%llu",
           (unsigned long long)id2);
  assert_int_equal(curlc_request(&R, f->api_port, "PATCH", path, KEY,
                                 "{\"content\":\"v2 by the operator\"}",
                                 NULL),
                   200);
  struct mim_packet p;
  assert_int_equal(wsc_recv_cmd(b->ws, MIM_CMD_MSG_CHANGED, TC_PUSH_MS, &p),
                   0);
  assert_int_equal(p.msg_id, id2);
  assert_int_equal(p.type, MIM_CHANGE_EDIT);
  assert_string_equal(p.content, "v2 by the operator");
  mim_packet_finish(&p);
  assert_int_equal(curlc_request(&R, f->api_port, "DELETE",
                                 "/api/v1/messages/999999", KEY, NULL, NULL),
                   404);
  assert_int_equal(curlc_request(&R, f->api_port, "DELETE",
                                 "/api/v1/messages/abc", KEY, NULL, NULL),
                   400);
  json_decref(R.json);
  R.json = NULL;
  PASSED(f);
}

/* The HTTP gateway's POST /http/v1/msg_change mirrors cmd 44. */
static void recall_http_gateway(void **state) {
  struct fixture *f = *state;
  struct tc *a = tc_login_caps(f->h, "alice", "phone", MIM_CAP_CHANGE);
  struct tc *b = tc_login_caps(f->h, "bob", "phone", MIM_CAP_CHANGE);
  uint64_t id = tc_c2c(a, "bob", "typo", NULL, NULL);
  static struct curlc_resp R;
  char body[160];
  snprintf(body, sizeof body,
           "{\"msg_id\":%llu,\"action\":2,\"peer\":\"bob\","
           "\"content\":\"typo fixed\",\"seq\":5}",
           (unsigned long long)id);
  assert_int_equal(curlc_request(&R, f->h->gw_port, "POST",
                                 "/http/v1/msg_change?uid=alice&device=script",
                                 "token", body, NULL),
                   200);
  assert_non_null(R.json);
  assert_int_equal(json_integer_value(json_object_get(R.json, "msg_id")),
                   (json_int_t)id);
  assert_int_equal(json_integer_value(json_object_get(R.json, "seq")), 5);
  struct mim_packet p;
  assert_int_equal(wsc_recv_cmd(b->ws, MIM_CMD_MSG_CHANGED, TC_PUSH_MS, &p),
                   0);
  assert_string_equal(p.content, "typo fixed");
  mim_packet_finish(&p);
  /* bob may not recall alice's message: 403 */
  snprintf(body, sizeof body, "{\"msg_id\":%llu,\"action\":1,"
           "\"peer\":\"alice\"}", (unsigned long long)id);
  assert_int_equal(curlc_request(&R, f->h->gw_port, "POST",
                                 "/http/v1/msg_change?uid=bob&device=script",
                                 "token", body, NULL),
                   403);
  json_decref(R.json);
  R.json = NULL;
  PASSED(f);
}

/* ====================================================================== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const struct CMUnitTest all_tests[] = {
    T(recall_devices),    T(recall_disk_restart), T(recall_group_admin),
    T(recall_window),     T(recall_http_api),     T(recall_http_gateway),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-recall", all_tests, COUNT(all_tests),
                &WS, 0);
}
