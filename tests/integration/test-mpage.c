/* A group's member list is paged (docs/protocol.md §10): a 10,000-member
 * group of 128-byte uids (~1.3 MB of uids, over gatewayd's
 * send_message_max) is read by a websocket client a page at a time, never
 * TOO_LARGE, and through the HTTP API's GET /api/v1/groups/{g}?after=&limit=.
 *
 *   test-mpage [NAME]   runs every test, or only the test called NAME
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
#include <jansson.h>
#include <netinet/in.h>
#include <stdbool.h>
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
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- fixture: the daemons with the API on a free port ---- */

struct fx {
  struct harness *h;
  int port;
  char listen[64];
  const char *args[48];
};

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

enum { N = 10000, UID_LEN = 128 };
static char names[N][UID_LEN + 1];
static bool seen[N];

/* member i: "owner" for 0, else "%05d-000...0" (128 bytes) */
static int member_index(const char *uid) {
  if (strcmp(uid, "owner") == 0)
    return 0;
  int k = atoi(uid);
  assert_true(k > 0 && k < N);
  assert_string_equal(uid, names[k]);
  return k;
}

static void mpage_members(void **state) {
  (void)state;
  const char *gw_args[] = {"--rate-requests-burst", "100000",
                           "--auth-timeout-ms", "60000", NULL};
  struct fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->port = h_free_port();
  snprintf(f->listen, sizeof f->listen, "127.0.0.1:%d", f->port);
  const char *largs[] = {"--http-listen", f->listen, "--api-key", KEY, NULL};
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = largs;
  o.gatewayd_args = gw_args;
  assert_int_equal(h_create(&f->h, WS, &o), 0);
  assert_int_equal(h_start(f->h), 0);

  struct tc *s = tc_login(f->h, "owner", NULL);
  struct mim_packet rq, p;
  mim_packet_init(&rq);
  rq.cmd = MIM_CMD_GROUP_CREATE_REQ;
  rq.group = "big";
  tc_call(s, &rq, &p);
  tc_expect_cmd(&p, MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_finish(&p);
  snprintf(names[0], sizeof names[0], "owner");
  for (int i = 1; i < N; i++)
    snprintf(names[i], sizeof names[i], "%05d-%0*d", i, UID_LEN - 6, 0);
  for (int i = 1; i < N; i += 200) {
    const char *members[200];
    size_t n = 0;
    for (int k = i; k < N && n < 200; k++)
      members[n++] = names[k];
    mim_packet_init(&rq);
    rq.cmd = MIM_CMD_GROUP_ADD_REQ;
    rq.group = "big";
    rq.members = members;
    rq.n_members = n;
    tc_call(s, &rq, &p);
    tc_expect_cmd(&p, MIM_CMD_GROUP_ADD_RSP);
    mim_packet_finish(&p);
  }

  /* a seed request (no limit): the first page with has_more, not
   * TOO_LARGE (the whole list is ~1.3 MB) */
  mim_packet_init(&rq);
  rq.cmd = MIM_CMD_GROUP_LIST_REQ;
  rq.group = "big";
  tc_call(s, &rq, &p);
  tc_expect_cmd(&p, MIM_CMD_GROUP_LIST_RSP);
  assert_true(p.has_more);
  assert_true(p.n_members > 0 && p.n_members < N);
  mim_packet_finish(&p);

  /* page through over the websocket */
  char after[UID_LEN + 1] = "";
  size_t total = 0, pages = 0;
  bool more = true;
  memset(seen, 0, sizeof seen);
  while (more) {
    assert_true(pages++ < 100);
    mim_packet_init(&rq);
    rq.cmd = MIM_CMD_GROUP_LIST_REQ;
    rq.group = "big";
    rq.limit = 500;
    rq.after_member = after;
    tc_call(s, &rq, &p);
    tc_expect_cmd(&p, MIM_CMD_GROUP_LIST_RSP);
    assert_true(p.n_members > 0 && p.n_members <= 500);
    for (size_t i = 0; i < p.n_members; i++) {
      int k = member_index(p.members[i]);
      assert_false(seen[k]);
      seen[k] = true;
      total++;
    }
    snprintf(after, sizeof after, "%s", p.members[p.n_members - 1]);
    more = p.has_more;
    mim_packet_finish(&p);
  }
  assert_int_equal(total, N);

  /* the HTTP API: the default shape, then pages with has_more */
  assert_int_equal(http(f, "GET", "/api/v1/groups/big", NULL), 200);
  assert_non_null(R.json);
  assert_true(json_is_array(json_object_get(R.json, "members")));
  assert_true(json_is_true(json_object_get(R.json, "has_more")));
  memset(seen, 0, sizeof seen);
  after[0] = '\0';
  total = pages = 0;
  more = true;
  while (more) {
    assert_true(pages++ < 100);
    char path[512];
    snprintf(path, sizeof path, "/api/v1/groups/big?limit=500&after=%s",
             after);
    assert_int_equal(http(f, "GET", path, NULL), 200);
    json_t *m = json_object_get(R.json, "members");
    assert_true(json_is_array(m));
    size_t n = json_array_size(m);
    assert_true(n > 0 && n <= 500);
    for (size_t i = 0; i < n; i++) {
      int k = member_index(json_string_value(json_array_get(m, i)));
      assert_false(seen[k]);
      seen[k] = true;
      total++;
    }
    snprintf(after, sizeof after, "%s",
             json_string_value(json_array_get(m, n - 1)));
    json_t *hm = json_object_get(R.json, "has_more");
    assert_true(json_is_boolean(hm));
    more = json_is_true(hm);
  }
  assert_int_equal(total, N);
  assert_int_equal(http(f, "GET", "/api/v1/groups/big?limit=501", NULL), 400);
  tc_free_all();
  h_destroy(f->h);
  free(f);
}

int main(int argc, char **argv) {
  static const struct CMUnitTest all_tests[] = {
      cmocka_unit_test(mpage_members),
  };
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = h_main(argc, argv, "mpage", all_tests, COUNT(all_tests), &WS, 170);
  json_decref(R.json);
  curl_global_cleanup();
  return rc;
}
