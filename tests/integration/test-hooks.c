/* Webhooks end to end: the real logicd and gatewayd, real websocket
 * clients, and an HTTP receiver on 127.0.0.1 in a thread of this process
 * that checks each POST's X-Mim-Signature and can answer 500 or hang.
 *
 *   test-hooks [NAME]   runs every test, or only the test called NAME
 *
 * hooks_signed_messages     message.created arrives signed, with its
 *                           recipients and which of them were offline
 * hooks_presence_groups     user.online / user.offline, group.changed
 * hooks_retry_after_500     a receiver answering 500 gets retries with
 *                           backoff, then the events
 * hooks_receiver_hangs      sends keep their ack latency while the
 *                           receiver holds every POST open
 * hooks_queue_bound         a receiver that is down costs at most
 *                           webhook_queue_max events: the rest is dropped,
 *                           counted and logged
 * hooks_retries_are_bounded a batch failing retry_max + 1 times is dropped
 *                           (logged); later events still arrive
 * hooks_queue_bytes_bound   the queue is bounded in bytes too
 * hooks_config_refused      non-http(s) URLs, too many, no secret
 *
 * Each test gets its own daemon pair. Exit status 77 (skipped) when the
 * daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

#define SECRET "webhook-test-secret-0123456789"

static struct wsc_ctx *WS;

/* ---- the receiver ---- */

#define RCV_EVENTS_MAX 4096

struct rcv {
  int lfd;
  int port;
  pthread_t th;
  pthread_mutex_t mu;
  /* behaviour, under mu */
  int fail_left;      /* answer 500 while > 0 */
  bool hang;          /* hold each request unanswered while set */
  bool stop;
  /* what arrived, under mu */
  int requests;       /* every POST */
  int answered_ok;    /* POSTs answered 200 */
  int bad_sig;        /* POSTs whose signature did not verify */
  int no_timestamp;
  int64_t first_ms, last_fail_ms, ok_after_fail_ms;
  json_t *events;     /* every event of the POSTs answered 200 */
};

/* Reads one request (headers + Content-Length body) from `fd`. Returns
 * the body (malloc'd, NUL-terminated) and the signature header, or NULL
 * at EOF/error. */
static char *read_request(struct rcv *r, int fd, char *sig, size_t sig_cap,
                          bool *has_ts) {
  char buf[65536];
  size_t n = 0;
  char *end = NULL;
  while (end == NULL) {
    if (n == sizeof buf - 1)
      return NULL;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, 200);
    pthread_mutex_lock(&r->mu);
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    if (stop)
      return NULL;
    if (pr <= 0)
      continue;
    ssize_t got = read(fd, buf + n, sizeof buf - 1 - n);
    if (got <= 0)
      return NULL;
    n += (size_t)got;
    buf[n] = '\0';
    end = strstr(buf, "\r\n\r\n");
  }
  *end = '\0';
  size_t head_len = (size_t)(end - buf) + 4;
  size_t clen = 0;
  sig[0] = '\0';
  *has_ts = false;
  for (char *line = strstr(buf, "\r\n"); line != NULL;
       line = strstr(line + 2, "\r\n")) {
    char *l = line + 2;
    if (strncasecmp(l, "Content-Length:", 15) == 0)
      clen = strtoul(l + 15, NULL, 10);
    else if (strncasecmp(l, "X-Mim-Signature:", 16) == 0) {
      char *v = l + 16;
      while (*v == ' ')
        v++;
      size_t k = strcspn(v, "\r");
      if (k >= sig_cap)
        k = sig_cap - 1;
      memcpy(sig, v, k);
      sig[k] = '\0';
    } else if (strncasecmp(l, "X-Mim-Timestamp:", 16) == 0)
      *has_ts = true;
  }
  char *body = malloc(clen + 1);
  if (body == NULL)
    return NULL;
  size_t have = n - head_len;
  if (have > clen)
    have = clen;
  memcpy(body, buf + head_len, have);
  while (have < clen) {
    ssize_t got = read(fd, body + have, clen - have);
    if (got <= 0) {
      free(body);
      return NULL;
    }
    have += (size_t)got;
  }
  body[clen] = '\0';
  return body;
}

static bool sig_ok(const char *body, const char *sig) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  char want[8 + 2 * EVP_MAX_MD_SIZE + 1] = "sha256=";
  HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)body,
       strlen(body), mac, &len);
  for (unsigned i = 0; i < len; i++)
    sprintf(want + 7 + 2 * i, "%02x", mac[i]);
  return strlen(sig) == strlen(want) &&
         CRYPTO_memcmp(sig, want, strlen(want)) == 0;
}

static void respond(int fd, int status) {
  char out[128];
  int n = snprintf(out, sizeof out,
                   "HTTP/1.1 %d %s\r\nContent-Length: 0\r\n\r\n", status,
                   status == 200 ? "OK" : "Internal Server Error");
  if (write(fd, out, (size_t)n) < 0) {
    /* the client gave up (timeout): nothing to do */
  }
}

static void serve_conn(struct rcv *r, int fd) {
  for (;;) {
    char sig[256];
    bool has_ts;
    char *body = read_request(r, fd, sig, sizeof sig, &has_ts);
    if (body == NULL)
      return;
    pthread_mutex_lock(&r->mu);
    r->requests++;
    if (r->first_ms == 0)
      r->first_ms = h_mono_ms();
    bool good = sig_ok(body, sig);
    if (!good)
      r->bad_sig++;
    if (!has_ts)
      r->no_timestamp++;
    /* a hung receiver: hold the request until released or the client
     * gives up (its timeout closes the connection) */
    while (r->hang && !r->stop) {
      pthread_mutex_unlock(&r->mu);
      struct pollfd p = {.fd = fd, .events = POLLIN};
      int pr = poll(&p, 1, 100);
      pthread_mutex_lock(&r->mu);
      if (pr > 0) { /* EOF: the client timed out */
        char c;
        if (read(fd, &c, 1) <= 0) {
          pthread_mutex_unlock(&r->mu);
          free(body);
          return;
        }
      }
    }
    int status = 200;
    if (r->fail_left > 0) {
      r->fail_left--;
      r->last_fail_ms = h_mono_ms();
      status = 500;
    } else if (good) {
      json_error_t err;
      json_t *doc = json_loads(body, JSON_REJECT_DUPLICATES, &err);
      json_t *evs = json_object_get(doc, "events");
      size_t i;
      json_t *e;
      json_array_foreach(evs, i, e) json_array_append(r->events, e);
      if (json_integer_value(json_object_get(doc, "sent_ms")) <= 0)
        r->no_timestamp++;
      json_decref(doc);
      r->answered_ok++;
      if (r->last_fail_ms != 0 && r->ok_after_fail_ms == 0)
        r->ok_after_fail_ms = h_mono_ms();
    } else {
      status = 401;
    }
    pthread_mutex_unlock(&r->mu);
    free(body);
    respond(fd, status);
  }
}

static void *rcv_main(void *arg) {
  struct rcv *r = arg;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    bool stop = r->stop;
    pthread_mutex_unlock(&r->mu);
    if (stop)
      return NULL;
    struct pollfd p = {.fd = r->lfd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0)
      continue;
    int fd = accept(r->lfd, NULL, NULL);
    if (fd < 0)
      continue;
    serve_conn(r, fd);
    close(fd);
  }
}

static struct rcv *rcv_start(void) {
  struct rcv *r = calloc(1, sizeof *r);
  assert_non_null(r);
  pthread_mutex_init(&r->mu, NULL);
  r->events = json_array();
  r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(r->lfd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(r->lfd, 16), 0);
  socklen_t len = sizeof a;
  assert_int_equal(getsockname(r->lfd, (struct sockaddr *)&a, &len), 0);
  r->port = ntohs(a.sin_port);
  assert_int_equal(pthread_create(&r->th, NULL, rcv_main, r), 0);
  return r;
}

static void rcv_stop(struct rcv *r) {
  if (r == NULL)
    return;
  pthread_mutex_lock(&r->mu);
  r->stop = true;
  pthread_mutex_unlock(&r->mu);
  pthread_join(r->th, NULL);
  close(r->lfd);
  json_decref(r->events);
  pthread_mutex_destroy(&r->mu);
  free(r);
}

/* The first received event of `type` whose data has `key` equal to the
 * string `val` (NULL: any), or NULL. Borrowed: call under nothing, the
 * array only grows while the test holds its reference. */
static json_t *find_event(struct rcv *r, const char *type, const char *key,
                          const char *val) {
  json_t *found = NULL;
  pthread_mutex_lock(&r->mu);
  size_t i;
  json_t *e;
  json_array_foreach(r->events, i, e) {
    if (strcmp(json_string_value(json_object_get(e, "type")), type) != 0)
      continue;
    json_t *d = json_object_get(e, "data");
    const char *v = key ? json_string_value(json_object_get(d, key)) : NULL;
    if (key == NULL || (v != NULL && strcmp(v, val) == 0)) {
      found = json_incref(e);
      break;
    }
  }
  pthread_mutex_unlock(&r->mu);
  return found;
}

/* Waits (up to `ms`) for find_event(); the caller json_decref()s it. */
static json_t *wait_event(struct rcv *r, const char *type, const char *key,
                          const char *val, int ms) {
  int64_t until = h_mono_ms() + ms;
  json_t *e;
  while ((e = find_event(r, type, key, val)) == NULL && h_mono_ms() < until)
    usleep(20000);
  if (e == NULL)
    fprintf(stderr, "no %s event with %s = %s arrived in %d ms\n", type,
            key ? key : "-", val ? val : "-", ms);
  return e;
}

static size_t count_events(struct rcv *r, const char *type) {
  size_t n = 0, i;
  json_t *e;
  pthread_mutex_lock(&r->mu);
  json_array_foreach(r->events, i, e) {
    if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0)
      n++;
  }
  pthread_mutex_unlock(&r->mu);
  return n;
}

static bool json_has_string(json_t *arr, const char *s) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
      return true;
  }
  return false;
}

/* ---- fixture ---- */

struct fixture {
  struct harness *h;
  struct rcv *r;
  bool passed;
  const char *name;
  char url[64];
  const char *args[40];
  char argbuf[8][64];
};

#define PASSED(f) ((f)->passed = true)

/* Starts the receiver, then the daemons with webhook_url pointing at it
 * and `extra` logicd flags (NULL-terminated pairs). */
static int setup_hooks(void **state, const char *name, const char *const *extra) {
  struct fixture *f = calloc(1, sizeof *f);
  struct h_opts o;
  if (f == NULL)
    return -1;
  f->name = name;
  h_watchdog(60, name);
  f->r = rcv_start();
  snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/hook", f->r->port);
  size_t n = 0;
  f->args[n++] = "--webhook-url";
  f->args[n++] = f->url;
  f->args[n++] = "--webhook-secret";
  f->args[n++] = SECRET;
  f->args[n++] = "--webhook-backoff-ms";
  f->args[n++] = "100";
  f->args[n++] = "--webhook-backoff-max-ms";
  f->args[n++] = "400";
  for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 38; i++)
    f->args[n++] = extra[i];
  f->args[n] = NULL;
  h_opts_init(&o);
  o.logicd_args = f->args;
  if (h_create(&f->h, WS, &o) != 0 || h_start(f->h) != 0) {
    h_destroy(f->h);
    rcv_stop(f->r);
    free(f);
    return -1;
  }
  h_watchdog(120, name);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = 0;
  h_watchdog(60, f != NULL ? f->name : "teardown");
  tc_free_all();
  if (f != NULL) {
    if (!h_logicd_alive(f->h) || !h_gatewayd_alive(f->h)) {
      fprintf(stderr, "[%s] a daemon died during the test\n", f->name);
      r = -1;
    }
    if (!f->passed || r != 0) {
      fprintf(stderr, "[%s] failed; daemon logs follow\n", f->name);
      h_dump_logs(f->h);
    }
    /* let a held request go, so logicd's shutdown is not held either */
    pthread_mutex_lock(&f->r->mu);
    f->r->hang = false;
    pthread_mutex_unlock(&f->r->mu);
    if (f->passed && h_stop_gatewayd(f->h, SIGTERM) != 0)
      r = -1;
    if (f->passed && h_stop_logicd(f->h, SIGTERM) != 0)
      r = -1;
    h_destroy(f->h);
    rcv_stop(f->r);
    free(f);
  }
  *state = NULL;
  h_watchdog(0, NULL);
  return r;
}

static void group_ok(struct tc *c, uint32_t cmd, const char *group,
                     const char *const *members, size_t n) {
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = cmd;
  req.group = group;
  req.members = members;
  req.n_members = n;
  tc_call(c, &req, &rsp);
  tc_expect_cmd(&rsp, cmd + 1);
  mim_packet_finish(&rsp);
}

/* ---- tests ---- */

static int setup_hooks_signed_messages(void **state) {
  return setup_hooks(state, "hooks_signed_messages", NULL);
}

static void hooks_signed_messages(void **state) {
  struct fixture *f = *state;
  struct rcv *r = f->r;
  struct tc *alice = tc_login(f->h, "alice", "phone");
  struct tc *bob = tc_login(f->h, "bob", NULL);
  uint64_t id1 = tc_c2c(alice, "bob", "hello bob", "m-1", NULL);
  /* bob goes away: the next message names him as offline */
  tc_free(bob);
  json_t *off = wait_event(r, "user.offline", "uid", "bob", 10000);
  assert_non_null(off);
  json_decref(off);
  uint64_t id2 = tc_c2c(alice, "bob", "are you there?", "m-2", NULL);
  /* a retried send is deduplicated: no second event */
  uint64_t id2b = tc_c2c(alice, "bob", "are you there?", "m-2", NULL);
  assert_int_equal(id2, id2b);

  char want[32];
  snprintf(want, sizeof want, "msg-%llu", (unsigned long long)id1);
  json_t *e1 = wait_event(r, "message.created", "content", "hello bob", 10000);
  assert_non_null(e1);
  assert_string_equal(json_string_value(json_object_get(e1, "id")), want);
  assert_true(json_integer_value(json_object_get(e1, "time_ms")) > 0);
  json_t *d1 = json_object_get(e1, "data");
  assert_int_equal(json_integer_value(json_object_get(d1, "msg_id")), id1);
  assert_string_equal(json_string_value(json_object_get(d1, "from")), "alice");
  assert_string_equal(json_string_value(json_object_get(d1, "from_device")),
                      "phone");
  assert_string_equal(json_string_value(json_object_get(d1, "to")), "bob");
  assert_string_equal(json_string_value(json_object_get(d1, "conv")), "c2c");
  assert_string_equal(json_string_value(json_object_get(d1, "type")), "text");
  assert_string_equal(json_string_value(json_object_get(d1, "client_msg_id")),
                      "m-1");
  assert_int_equal(json_integer_value(json_object_get(d1, "content_size")), 9);
  json_t *rc1 = json_object_get(d1, "recipients");
  assert_int_equal(json_array_size(rc1), 1); /* the sender's copy is not one */
  assert_string_equal(
      json_string_value(json_object_get(json_array_get(rc1, 0), "uid")), "bob");
  assert_true(json_integer_value(
                  json_object_get(json_array_get(rc1, 0), "inbox_seq")) >= 1);
  /* bob was online for the first one */
  assert_int_equal(json_array_size(json_object_get(d1, "offline")), 0);

  json_t *e2 =
      wait_event(r, "message.created", "content", "are you there?", 10000);
  assert_non_null(e2);
  json_t *d2 = json_object_get(e2, "data");
  assert_int_equal(json_integer_value(json_object_get(d2, "msg_id")), id2);
  assert_true(json_has_string(json_object_get(d2, "offline"), "bob"));

  /* a server push through mimctl is not needed here: the same path */
  tc_barrier(alice);
  usleep(300000);
  assert_int_equal(count_events(r, "message.created"), 2);
  pthread_mutex_lock(&r->mu);
  assert_int_equal(r->bad_sig, 0);
  assert_int_equal(r->no_timestamp, 0);
  assert_true(r->answered_ok >= 1);
  pthread_mutex_unlock(&r->mu);
  json_decref(e1);
  json_decref(e2);
  tc_free(alice);
  PASSED(f);
}

static int setup_hooks_presence_groups(void **state) {
  return setup_hooks(state, "hooks_presence_groups", NULL);
}

static void hooks_presence_groups(void **state) {
  struct fixture *f = *state;
  struct rcv *r = f->r;
  struct tc *a1 = tc_login(f->h, "ann", "laptop");
  json_t *on = wait_event(r, "user.online", "uid", "ann", 10000);
  assert_non_null(on);
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(on, "data"), "device")),
      "laptop");
  json_decref(on);
  /* a second device is not a second "online"; closing one of two is not
   * "offline" */
  struct tc *a2 = tc_login(f->h, "ann", "phone");
  tc_barrier(a2);
  tc_free(a1);
  tc_barrier(a2);

  const char *m1[] = {"ann", "ben"};
  group_ok(a2, MIM_CMD_GROUP_CREATE_REQ, "team", m1, 2);
  const char *m2[] = {"cat"};
  group_ok(a2, MIM_CMD_GROUP_ADD_REQ, "team", m2, 1);
  /* ann owns the group (she created it) and removes a member; she could
   * not leave without handing it over (group roles) */
  const char *m3[] = {"cat"};
  group_ok(a2, MIM_CMD_GROUP_REMOVE_REQ, "team", m3, 1);
  json_t *g = wait_event(r, "group.changed", "change", "members_removed", 10000);
  assert_non_null(g);
  assert_true(json_has_string(json_object_get(json_object_get(g, "data"),
                                              "members"), "cat"));
  json_decref(g);
  g = find_event(r, "group.changed", "change", "created");
  assert_non_null(g);
  json_t *gd = json_object_get(g, "data");
  assert_string_equal(json_string_value(json_object_get(gd, "group")), "team");
  assert_true(json_has_string(json_object_get(gd, "members"), "ann"));
  assert_true(json_has_string(json_object_get(gd, "members"), "ben"));
  json_decref(g);
  g = find_event(r, "group.changed", "change", "members_added");
  assert_non_null(g);
  json_decref(g);

  assert_int_equal(count_events(r, "user.online"), 1);
  assert_int_equal(count_events(r, "user.offline"), 0);
  tc_free(a2); /* the last device */
  json_t *off = wait_event(r, "user.offline", "uid", "ann", 10000);
  assert_non_null(off);
  json_decref(off);
  assert_int_equal(count_events(r, "user.offline"), 1);
  PASSED(f);
}

static int setup_hooks_retry_after_500(void **state) {
  return setup_hooks(state, "hooks_retry_after_500", NULL);
}

static void hooks_retry_after_500(void **state) {
  struct fixture *f = *state;
  struct rcv *r = f->r;
  pthread_mutex_lock(&r->mu);
  r->fail_left = 4;
  pthread_mutex_unlock(&r->mu);
  struct tc *a = tc_login(f->h, "amy", NULL);
  tc_c2c(a, "zed", "retry me", NULL, NULL);
  json_t *e = wait_event(r, "message.created", "content", "retry me", 20000);
  assert_non_null(e);
  json_decref(e);
  pthread_mutex_lock(&r->mu);
  /* four 500s, then the batch again */
  assert_true(r->requests >= 5);
  assert_int_equal(r->fail_left, 0);
  assert_int_equal(r->bad_sig, 0);
  pthread_mutex_unlock(&r->mu);
  /* the events of a failed batch are not lost, nor delivered twice once
   * accepted */
  assert_int_equal(count_events(r, "message.created"), 1);
  assert_int_equal(count_events(r, "user.online"), 1);
  tc_free(a);
  PASSED(f);
}

static const char *const hang_args[] = {"--webhook-timeout-ms", "3000", NULL};

static int setup_hooks_receiver_hangs(void **state) {
  return setup_hooks(state, "hooks_receiver_hangs", hang_args);
}

static void hooks_receiver_hangs(void **state) {
  struct fixture *f = *state;
  struct rcv *r = f->r;
  pthread_mutex_lock(&r->mu);
  r->hang = true;
  pthread_mutex_unlock(&r->mu);
  struct tc *a = tc_login(f->h, "hal", NULL);
  struct tc *b = tc_login(f->h, "ivy", NULL);
  /* wait until logicd's POST is held open */
  int64_t until = h_mono_ms() + 10000;
  for (;;) {
    pthread_mutex_lock(&r->mu);
    int n = r->requests;
    pthread_mutex_unlock(&r->mu);
    if (n > 0 || h_mono_ms() > until)
      break;
    usleep(20000);
  }
  int64_t worst = 0;
  for (int i = 0; i < 30; i++) {
    char text[32];
    snprintf(text, sizeof text, "while hung %d", i);
    int64_t t0 = h_mono_ms();
    tc_c2c(a, "ivy", text, NULL, NULL);
    int64_t dt = h_mono_ms() - t0;
    if (dt > worst)
      worst = dt;
    if (dt >= 1500)
      break; /* asserted below */
  }
  printf("hooks: worst send ack latency while the receiver hangs: %lld ms\n",
         (long long)worst);
  /* a POST is held for 3 s at a time: an ack waiting for one would take
   * that long; generous for 2 busy cores */
  assert_true(worst < 1500);
  /* the receiver recovers: everything arrives, nothing was dropped */
  pthread_mutex_lock(&r->mu);
  r->hang = false;
  pthread_mutex_unlock(&r->mu);
  until = h_mono_ms() + 20000;
  while (count_events(r, "message.created") < 30 && h_mono_ms() < until)
    usleep(50000);
  assert_int_equal(count_events(r, "message.created"), 30);
  tc_free(a);
  tc_free(b);
  PASSED(f);
}

static const char *const bound_args[] = {
    "--webhook-queue-max", "5", "--webhook-batch-max", "2",
    "--webhook-timeout-ms", "20000", NULL};

static int setup_hooks_queue_bound(void **state) {
  return setup_hooks(state, "hooks_queue_bound", bound_args);
}

static void hooks_queue_bound(void **state) {
  struct fixture *f = *state;
  struct rcv *r = f->r;
  pthread_mutex_lock(&r->mu);
  r->hang = true;
  pthread_mutex_unlock(&r->mu);
  struct tc *a = tc_login(f->h, "max", NULL);
  for (int i = 0; i < 40; i++) {
    char text[32];
    snprintf(text, sizeof text, "flood %d", i);
    tc_c2c(a, "nobody", text, NULL, NULL);
  }
  tc_barrier(a);
  pthread_mutex_lock(&r->mu);
  r->hang = false;
  pthread_mutex_unlock(&r->mu);
  /* what was queued drains; the rest was dropped when the queue was full */
  int64_t until = h_mono_ms() + 10000;
  size_t last = 0, same = 0;
  while (h_mono_ms() < until && same < 10) {
    usleep(100000);
    size_t n = count_events(r, "message.created");
    same = n == last ? same + 1 : 0;
    last = n;
  }
  size_t got = count_events(r, "message.created");
  printf("hooks: %zu of 40 message events delivered with a 5-event queue\n",
         got);
  /* at most the queue (5) plus nothing beyond it: the batch in flight is
   * part of the queue until answered */
  assert_true(got >= 1);
  assert_true(got <= 5);
  /* counted and logged */
  char cmd[512], out[4096];
  snprintf(cmd, sizeof cmd, "grep -c 'webhook queue full' '%s'",
           f->h->logic_log);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  pclose(p);
  assert_true(atoi(out) >= 1);
  /* rate-limited: 35 drops within a second or two are one or two lines */
  assert_true(atoi(out) <= 3);
  tc_free(a);
  PASSED(f);
}

static const char *const retry_bound_args[] = {"--webhook-retry-max", "2",
                                                NULL};

static int setup_hooks_retries_are_bounded(void **state) {
  return setup_hooks(state, "hooks_retries_are_bounded", retry_bound_args);
}

/* Counts the lines of logicd's log that contain `what`. */
static int log_lines(struct fixture *f, const char *what) {
  char cmd[600], out[64];
  snprintf(cmd, sizeof cmd, "grep -c '%s' '%s'", what, f->h->logic_log);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  pclose(p);
  return atoi(out);
}

static void hooks_retries_are_bounded(void **state) {
  struct fixture *f = *state;
  struct rcv *r = f->r;
  pthread_mutex_lock(&r->mu);
  r->fail_left = 1000;
  pthread_mutex_unlock(&r->mu);
  struct tc *a = tc_login(f->h, "rex", NULL);
  tc_c2c(a, "sam", "given up", NULL, NULL);
  /* first attempt + 2 retries, then the batch is dropped */
  int64_t until = h_mono_ms() + 10000;
  while (log_lines(f, "dropped after") == 0 && h_mono_ms() < until)
    usleep(50000);
  assert_int_equal(log_lines(f, "dropped after"), 1);
  pthread_mutex_lock(&r->mu);
  int tries = r->requests;
  r->fail_left = 0;
  pthread_mutex_unlock(&r->mu);
  assert_int_equal(tries, 3);
  /* the receiver is back: later events arrive, the dropped one never */
  tc_c2c(a, "sam", "after recovery", NULL, NULL);
  json_t *e = wait_event(r, "message.created", "content", "after recovery",
                         10000);
  assert_non_null(e);
  json_decref(e);
  assert_null(find_event(r, "message.created", "content", "given up"));
  tc_free(a);
  PASSED(f);
}

static const char *const bytes_bound_args[] = {
    "--webhook-queue-max-mb", "1", "--webhook-content-max", "32768",
    "--webhook-timeout-ms", "20000", NULL};

static int setup_hooks_queue_bytes_bound(void **state) {
  return setup_hooks(state, "hooks_queue_bytes_bound", bytes_bound_args);
}

static void hooks_queue_bytes_bound(void **state) {
  struct fixture *f = *state;
  struct rcv *r = f->r;
  pthread_mutex_lock(&r->mu);
  r->hang = true;
  pthread_mutex_unlock(&r->mu);
  struct tc *a = tc_login(f->h, "big", NULL);
  static char text[30001];
  memset(text, 'x', sizeof text - 1);
  /* 60 events of 30 KB: 1.8 MB against a 1 MiB queue */
  for (int i = 0; i < 60; i++) {
    text[0] = (char)('A' + i % 26);
    tc_c2c(a, "nobody", text, NULL, NULL);
  }
  tc_barrier(a);
  pthread_mutex_lock(&r->mu);
  r->hang = false;
  pthread_mutex_unlock(&r->mu);
  int64_t until = h_mono_ms() + 10000;
  size_t last = 0, same = 0;
  while (h_mono_ms() < until && same < 10) {
    usleep(100000);
    size_t n = count_events(r, "message.created");
    same = n == last ? same + 1 : 0;
    last = n;
  }
  size_t got = count_events(r, "message.created");
  printf("hooks: %zu of 60 30-KB message events delivered with a 1 MiB "
         "queue\n", got);
  assert_true(got >= 1);
  assert_true(got <= 40); /* 34 fit 1 MiB */
  assert_true(log_lines(f, "webhook queue full") >= 1);
  tc_free(a);
  PASSED(f);
}

static int setup_hooks_config_refused(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  if (f == NULL)
    return -1;
  f->name = "hooks_config_refused";
  h_watchdog(90, f->name);
  *state = f;
  return 0;
}

static int teardown_plain(void **state) {
  free(*state);
  *state = NULL;
  h_watchdog(0, NULL);
  return 0;
}

/* Runs logicd with `extra` flags; its exit status (124: still running
 * after `secs`, i.e. accepted) and output. */
static int run_logicd(int secs, const char *extra, char *out, size_t cap) {
  char dir[] = "/tmp/mim-hooks-XXXXXX", cmd[2048];
  assert_non_null(mkdtemp(dir));
  snprintf(cmd, sizeof cmd,
           "timeout %d '%s' --dev-auth --listen 127.0.0.1:0 --data-dir %s/d "
           "--admin-listen '' %s 2>&1 </dev/null",
           secs, h_logicd_path(), dir, extra);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void hooks_config_refused(void **state) {
  struct fixture *f = *state;
  char out[8192];
  const char *sec = "--webhook-secret " SECRET " ";
  char args[1024];
  snprintf(args, sizeof args, "%s--webhook-url file:///etc/passwd", sec);
  assert_int_equal(run_logicd(10, args, out, sizeof out), 2);
  assert_non_null(strstr(out, "webhook_url"));
  snprintf(args, sizeof args, "%s--webhook-url gopher://127.0.0.1:70/", sec);
  assert_int_equal(run_logicd(10, args, out, sizeof out), 2);
  snprintf(args, sizeof args, "%s--webhook-url 127.0.0.1:9/x", sec);
  assert_int_equal(run_logicd(10, args, out, sizeof out), 2);
  /* no secret: receivers could not tell forged events */
  assert_int_equal(
      run_logicd(10, "--webhook-url http://127.0.0.1:9/x", out, sizeof out), 2);
  assert_non_null(strstr(out, "webhook_secret"));
  /* at most 8 receivers, as a comma list or repeated */
  snprintf(args, sizeof args,
           "%s--webhook-url http://127.0.0.1:9/1,http://127.0.0.1:9/2,"
           "http://127.0.0.1:9/3,http://127.0.0.1:9/4,http://127.0.0.1:9/5 "
           "--webhook-url http://127.0.0.1:9/6,http://127.0.0.1:9/7,"
           "http://127.0.0.1:9/8 --webhook-url http://127.0.0.1:9/9",
           sec);
  assert_int_equal(run_logicd(10, args, out, sizeof out), 2);
  assert_non_null(strstr(out, "at most 8"));
  /* a good list is accepted */
  snprintf(args, sizeof args,
           "%s--webhook-url http://127.0.0.1:9/a --webhook-url "
           "https://hooks.example.com/b",
           sec);
  assert_int_equal(run_logicd(3, args, out, sizeof out), 124);
  assert_non_null(strstr(out, "2 receiver(s)"));
  PASSED(f);
}

/* ====================================================================== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

static const struct CMUnitTest all_tests[] = {
    T(hooks_signed_messages),
    T(hooks_presence_groups),
    T(hooks_retry_after_500),
    T(hooks_receiver_hangs),
    T(hooks_queue_bound),
    T(hooks_retries_are_bounded),
    T(hooks_queue_bytes_bound),
    cmocka_unit_test_setup_teardown(hooks_config_refused,
                                    setup_hooks_config_refused, teardown_plain),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-hooks", all_tests, COUNT(all_tests),
                &WS, 0);
}
