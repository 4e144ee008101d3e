/* The HTTP gateway end to end: the real logicd and gatewayd on loopback
 * ports, websocket clients (tclient.c) and a raw-socket HTTP client (this
 * file) speaking POST /http/v1/<command> and GET /http/v1/events (SSE).
 *
 *   test-httpgw [NAME]   runs every test, or only the test called NAME
 *
 * post_and_sse_meet_ws   a curl-style POST send reaches a websocket client;
 *                        a websocket send reaches an SSE stream
 * sse_resume             an SSE client reads part of a stream, drops the
 *                        socket, and resumes with Last-Event-ID while
 *                        messages keep coming (while away and during the
 *                        reconnect): every message once, in order
 * post_keeps_live_session a POST of the same uid + device neither kicks the
 *                        live websocket nor the live SSE stream
 * bad_token_401          production tokens: a bad one is 401 on POST and
 *                        SSE, a good one works
 * oversized_body_413     a body over http_max_body is 413
 * malformed_json_400     invalid JSON, wrong types, unknown fields, bad
 *                        UTF-8, duplicate keys, deep nesting: 400
 * kick_ends_stream       a websocket login of the SSE stream's device ends
 *                        the stream with `event: kick`
 * sse_acks_what_client_says  the stream's paging does not move the cursor;
 *                        Last-Event-ID and POST /ack do
 * slow_sse_reader        a stream that is not read is cut (kick SLOW) at
 *                        send_queue_bytes; its reconnect loses nothing
 * http_rate_per_address  POSTs on fresh connections are limited per
 *                        client address (429)
 * sse_outlives_idle_timeout  a stream (whose client sends nothing) is not
 *                        closed by the idle deadline
 *
 * Each test gets its own daemon pair. Exit status 77 (skipped) when the
 * daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <mim/auth.h>
#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
};

#define PASSED(f) ((f)->passed = true)
#define IO_MS 10000

static int setup_with(void **state, const char *name, const struct h_opts *o) {
  struct fixture *f = calloc(1, sizeof(*f));
  if (f == NULL)
    return -1;
  f->name = name;
  h_watchdog(60, name);
  if (h_create(&f->h, WS, o) != 0 || h_start(f->h) != 0) {
    h_destroy(f->h);
    free(f);
    return -1;
  }
  h_watchdog(120, name);
  *state = f;
  return 0;
}

static int setup(void **state) {
  struct h_opts o;
  h_opts_init(&o);
  return setup_with(state, "httpgw", &o);
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
    if (f->passed && h_stop_gatewayd(f->h, SIGTERM) != 0)
      r = -1;
    if (f->passed && h_stop_logicd(f->h, SIGTERM) != 0)
      r = -1;
    h_destroy(f->h);
    free(f);
  }
  *state = NULL;
  h_watchdog(0, NULL);
  return r;
}

/* ---- a raw HTTP client ---- */

static int dial_buf(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  /* a small window makes the server's writes wait for the reader */
  if (rcvbuf > 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  return fd;
}

static int dial(int port) { return dial_buf(port, 0); }

static void write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return; /* the server may have answered and closed already */
    p += n;
    len -= (size_t)n;
  }
}

/* Reads what arrives within `ms` into buf (appending); returns bytes read,
 * 0 on EOF, -1 on timeout. */
static ssize_t read_some(int fd, char *buf, size_t cap, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, ms) <= 0)
    return -1;
  ssize_t n = recv(fd, buf, cap, 0);
  return n < 0 ? 0 : n;
}

struct hresp {
  int status;
  char buf[1 << 20];
  size_t len;
  const char *body;
  json_t *json;
};

/* POST `path` (with its query) with `auth` (NULL: no Authorization) and
 * `body`; reads the whole answer (the server closes after it). */
static struct hresp *post_raw(int port, const char *path, const char *auth,
                              const char *body, size_t blen, size_t claim) {
  struct hresp *r = calloc(1, sizeof *r);
  assert_non_null(r);
  int fd = dial(port);
  char head[1024];
  int hl = snprintf(head, sizeof head,
                    "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%s%s"
                    "Content-Type: application/json\r\n"
                    "Content-Length: %zu\r\n\r\n",
                    path, auth ? "Authorization: Bearer " : "", auth ? auth : "",
                    auth ? "\r\n" : "", claim);
  write_all(fd, head, (size_t)hl);
  write_all(fd, body, blen);
  for (;;) {
    ssize_t n = read_some(fd, r->buf + r->len, sizeof r->buf - 1 - r->len, IO_MS);
    assert_true(n >= 0); /* no timeout */
    if (n == 0)
      break;
    r->len += (size_t)n;
  }
  close(fd);
  r->buf[r->len] = '\0';
  assert_int_equal(sscanf(r->buf, "HTTP/1.1 %d", &r->status), 1);
  char *b = strstr(r->buf, "\r\n\r\n");
  assert_non_null(b);
  r->body = b + 4;
  json_error_t e;
  r->json = json_loads(r->body, 0, &e);
  if (r->json == NULL)
    fprintf(stderr, "not JSON: %s\n", r->buf);
  assert_non_null(r->json);
  return r;
}

static struct hresp *post(int port, const char *path, const char *auth,
                          const char *body) {
  return post_raw(port, path, auth, body, strlen(body), strlen(body));
}

static void hresp_free(struct hresp *r) {
  json_decref(r->json);
  free(r);
}

static const char *err_name(const struct hresp *r) {
  json_t *e = json_object_get(r->json, "error");
  return e ? json_string_value(json_object_get(e, "name")) : "";
}

/* ---- a raw SSE client ---- */

struct sse {
  int fd;
  int status;
  char buf[1 << 20];
  size_t len;
  bool eof;
};

struct sse_ev {
  char name[32];
  uint64_t id;
  bool has_id;
  json_t *data;
};

/* GET /http/v1/events?`query` with `auth` (NULL: none) and `last` (NULL:
 * no Last-Event-ID); reads the headers. */
static struct sse *sse_open(int port, const char *query, const char *auth,
                            const char *last) {
  struct sse *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->fd = dial_buf(port, 4096);
  char head[1024];
  int hl = snprintf(head, sizeof head,
                    "GET /http/v1/events?%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Accept: text/event-stream\r\n%s%s%s%s%s%s\r\n",
                    query, auth ? "Authorization: Bearer " : "", auth ? auth : "",
                    auth ? "\r\n" : "", last ? "Last-Event-ID: " : "",
                    last ? last : "", last ? "\r\n" : "");
  write_all(s->fd, head, (size_t)hl);
  return s;
}

static bool sse_fill(struct sse *s, int ms) {
  if (s->eof)
    return false;
  ssize_t n = read_some(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len, ms);
  if (n < 0)
    return false;
  if (n == 0) {
    s->eof = true;
    return false;
  }
  s->len += (size_t)n;
  s->buf[s->len] = '\0';
  return true;
}

static void sse_consume(struct sse *s, size_t n) {
  memmove(s->buf, s->buf + n, s->len - n);
  s->len -= n;
  s->buf[s->len] = '\0';
}

/* Reads the response head; returns the status. */
static int sse_head(struct sse *s) {
  char *e;
  while ((e = strstr(s->buf, "\r\n\r\n")) == NULL)
    assert_true(sse_fill(s, IO_MS));
  assert_int_equal(sscanf(s->buf, "HTTP/1.1 %d", &s->status), 1);
  if (s->status == 200)
    assert_non_null(strstr(s->buf, "text/event-stream"));
  sse_consume(s, (size_t)(e + 4 - s->buf));
  return s->status;
}

static bool sse_next(struct sse *s, struct sse_ev *ev, int ms) {
  memset(ev, 0, sizeof *ev);
  int64_t deadline = h_mono_ms() + ms;
  for (;;) {
    char *end = strstr(s->buf, "\n\n");
    if (end == NULL) {
      int64_t left = deadline - h_mono_ms();
      /* comments (pings) keep arriving: the deadline is for an event */
      if (left <= 0 || !sse_fill(s, (int)left))
        return false;
      continue;
    }
    *end = '\0';
    bool any = false;
    for (char *line = s->buf, *next; line && *line; line = next) {
      next = strchr(line, '\n');
      if (next)
        *next++ = '\0';
      if (strncmp(line, "event: ", 7) == 0) {
        snprintf(ev->name, sizeof ev->name, "%s", line + 7);
        any = true;
      } else if (strncmp(line, "id: ", 4) == 0) {
        ev->id = strtoull(line + 4, NULL, 10);
        ev->has_id = true;
      } else if (strncmp(line, "data: ", 6) == 0) {
        json_error_t e;
        ev->data = json_loads(line + 6, 0, &e);
        assert_non_null(ev->data);
        any = true;
      }
    }
    sse_consume(s, (size_t)(end + 2 - s->buf));
    if (any) {
      if (ev->name[0] == '\0')
        strcpy(ev->name, "message");
      return true;
    }
  }
}

static void sse_ev_finish(struct sse_ev *ev) {
  json_decref(ev->data);
  ev->data = NULL;
}

/* Reads the `ready` event that opens a stream. */
static void sse_ready(struct sse *s) {
  assert_int_equal(sse_head(s), 200);
  struct sse_ev ev;
  assert_true(sse_next(s, &ev, IO_MS));
  assert_string_equal(ev.name, "ready");
  sse_ev_finish(&ev);
}

/* The next message event: asserts it is one and returns its id, copying
 * its content into `content`. */
static uint64_t sse_message(struct sse *s, char *content, size_t cap) {
  struct sse_ev ev;
  if (!sse_next(s, &ev, IO_MS))
    fail_msg("no SSE event within %d ms", IO_MS);
  assert_string_equal(ev.name, "message");
  assert_true(ev.has_id);
  assert_int_equal(json_integer_value(json_object_get(ev.data, "inbox_seq")),
                   ev.id);
  snprintf(content, cap, "%s",
           json_string_value(json_object_get(ev.data, "content")));
  sse_ev_finish(&ev);
  return ev.id;
}

static void sse_close(struct sse *s) {
  close(s->fd);
  free(s);
}

/* Conversations over HTTP (docs/protocol.md §16.2, §18): the list with
 * unread counts, a mark-read that reaches the peer's websocket as a
 * receipt, and read-by in a group. */
static void http_conversations(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  struct tc *alice = tc_login_caps(f->h, "alice", "phone", MIM_CAP_READ);
  tc_c2c(alice, "bob", "one", NULL, NULL);
  tc_c2c(alice, "bob", "two", NULL, NULL);
  struct hresp *r = post(port, "/http/v1/conv_list?uid=bob&device=script",
                         "token", "{\"limit\":10,\"seq\":3}");
  assert_int_equal(r->status, 200);
  assert_int_equal(json_integer_value(json_object_get(r->json, "seq")), 3);
  json_t *cs = json_object_get(r->json, "conversations");
  assert_int_equal(json_array_size(cs), 1);
  json_t *c = json_array_get(cs, 0);
  assert_string_equal(json_string_value(json_object_get(c, "peer")), "alice");
  assert_string_equal(json_string_value(json_object_get(c, "preview")), "two");
  assert_int_equal(json_integer_value(json_object_get(c, "unread")), 2);
  assert_int_equal(json_integer_value(json_object_get(c, "last_conv_seq")), 2);
  hresp_free(r);

  r = post(port, "/http/v1/mark_read?uid=bob&device=script", "token",
           "{\"peer\":\"alice\",\"conv_seq\":2}");
  assert_int_equal(r->status, 200);
  assert_int_equal(json_integer_value(json_object_get(r->json, "read_seq")), 2);
  assert_int_equal(json_integer_value(json_object_get(r->json, "unread")), 0);
  hresp_free(r);
  struct mim_packet p;
  mim_packet_init(&p);
  assert_int_equal(wsc_recv_cmd(alice->ws, MIM_CMD_READ_RECEIPT, 5000, &p), 0);
  assert_string_equal(p.from, "bob");
  assert_int_equal(p.read_seq, 2);
  mim_packet_finish(&p);

  /* read by 1 (the sender) of 2 in a group */
  r = post(port, "/http/v1/group_create?uid=alice&device=script", "token",
           "{\"group\":\"g\",\"members\":[\"bob\"]}");
  assert_int_equal(r->status, 200);
  hresp_free(r);
  r = post(port, "/http/v1/send_group?uid=alice&device=script", "token",
           "{\"group\":\"g\",\"content\":\"hi all\"}");
  assert_int_equal(r->status, 200);
  hresp_free(r);
  r = post(port, "/http/v1/conv_list?uid=alice&device=script", "token", "{}");
  assert_int_equal(r->status, 200);
  c = json_array_get(json_object_get(r->json, "conversations"), 0);
  assert_string_equal(json_string_value(json_object_get(c, "group")), "g");
  json_int_t gseq = json_integer_value(json_object_get(c, "last_conv_seq"));
  hresp_free(r);
  char body[128];
  snprintf(body, sizeof body,
           "{\"group\":\"g\",\"conv_seq\":%lld,\"limit\":5}",
           (long long)gseq);
  r = post(port, "/http/v1/read_by?uid=bob&device=script", "token", body);
  assert_int_equal(r->status, 200);
  assert_int_equal(json_integer_value(json_object_get(r->json, "read_count")), 1);
  assert_int_equal(json_integer_value(json_object_get(r->json, "member_count")),
                   2);
  assert_string_equal(json_string_value(json_array_get(
                          json_object_get(r->json, "readers"), 0)),
                      "alice");
  hresp_free(r);
  /* strict bodies: a member the command does not take */
  r = post(port, "/http/v1/mark_read?uid=bob&device=script", "token",
           "{\"peer\":\"alice\",\"after_uid\":\"x\"}");
  assert_int_equal(r->status, 400);
  hresp_free(r);
  PASSED(f);
}

/* ====================================================================== */

static void post_and_sse_meet_ws(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  struct tc *bob = tc_login(f->h, "bob", "phone");
  struct tc *alice = tc_login(f->h, "alice", "phone");

  /* curl → websocket */
  struct hresp *r = post(port, "/http/v1/send?uid=alice&device=script", "token",
                         "{\"to\":\"bob\",\"content\":\"from curl\","
                         "\"client_msg_id\":\"c1\",\"seq\":7}");
  assert_int_equal(r->status, 200);
  json_int_t msg_id = json_integer_value(json_object_get(r->json, "msg_id"));
  assert_true(msg_id > 0);
  assert_int_equal(json_integer_value(json_object_get(r->json, "seq")), 7);
  struct mim_packet p;
  mim_packet_init(&p);
  tc_push_msg(bob, MIM_CMD_C2C_PUSH, (uint64_t)msg_id, &p);
  assert_string_equal(p.content, "from curl");
  assert_string_equal(p.from, "alice");
  mim_packet_finish(&p);
  hresp_free(r);

  /* websocket → SSE */
  struct sse *s = sse_open(port, "uid=carol&device=web", "token", NULL);
  sse_ready(s);
  uint64_t id = tc_c2c(alice, "carol", "to the stream", NULL, NULL);
  (void)id;
  char content[256];
  uint64_t seq = sse_message(s, content, sizeof content);
  assert_int_equal(seq, 1);
  assert_string_equal(content, "to the stream");

  /* and a pull through POST sees it too */
  r = post(port, "/http/v1/pull?uid=carol&device=script", "token",
           "{\"after_seq\":0}");
  assert_int_equal(r->status, 200);
  json_t *msg = json_object_get(r->json, "msg");
  assert_int_equal(json_array_size(msg), 1);
  assert_string_equal(
      json_string_value(json_object_get(json_array_get(msg, 0), "content")),
      "to the stream");
  hresp_free(r);
  sse_close(s);
  (void)bob;
  PASSED(f);
}

/* Sends m<first>..m<first+n-1> from `from` to `to` without waiting: the
 * commits happen while the caller does something else. */
static void send_pipelined(struct tc *from, const char *to, int first, int n) {
  char text[64];
  for (int i = first; i < first + n; i++) {
    struct mim_packet p;
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    snprintf(text, sizeof text, "m%d", i);
    p.to = to;
    p.content = text;
    p.seq = ++from->seq;
    assert_int_equal(wsc_send_packet(from->ws, &p), 0);
  }
}

/* Collects `n` send replies (in request order). */
static void send_replies(struct tc *from, int n) {
  for (int i = 0; i < n; i++) {
    struct mim_packet p;
    mim_packet_init(&p);
    assert_int_equal(wsc_recv_cmd(from->ws, MIM_CMD_C2C_SEND_RSP, IO_MS, &p), 0);
    mim_packet_finish(&p);
  }
}

/* Reads events up to `upto`, asserting each is `*next` in turn: no gap, no
 * duplicate, the content of that send. */
static void read_upto(struct sse *s, uint64_t *next, uint64_t upto) {
  char content[256], want[64];
  while (*next <= upto) {
    uint64_t got = sse_message(s, content, sizeof content);
    if (got != *next)
      fail_msg("event %llu where %llu was due", (unsigned long long)got,
               (unsigned long long)*next);
    snprintf(want, sizeof want, "m%llu", (unsigned long long)*next);
    assert_string_equal(content, want);
    (*next)++;
  }
}

static int setup_sse_resume(void **state) {
  /* one sender sends faster than a user may by default */
  static const char *const la[] = {"--rate-per-sec", "100000", "--rate-burst",
                                   "100000", NULL};
  static const char *const ga[] = {"--rate-requests-per-s", "100000",
                                   "--rate-requests-burst", "100000", NULL};
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = la;
  o.gatewayd_args = ga;
  return setup_with(state, "sse_resume", &o);
}

static void sse_resume(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  struct tc *alice = tc_login(f->h, "alice", "phone");
  /* sends go in chunks of CHUNK unanswered: logicd answers BUSY past 256
   * queued requests of one connection */
  enum { ROUNDS = 4, CHUNK = 200, AWAY = 3 };
  int sent = 0;
  uint64_t next = 1;

  struct sse *s = sse_open(port, "uid=carol&device=web", "token", NULL);
  sse_ready(s);
  for (int round = 0; round < ROUNDS; round++) {
    /* live pushes; the reader takes only part of them */
    send_pipelined(alice, "carol", sent + 1, CHUNK);
    sent += CHUNK;
    read_upto(s, &next, next + 30 + (uint64_t)round * 7);
    /* gone mid-stream, with events unread in flight */
    sse_close(s);
    send_replies(alice, CHUNK);
    /* many more while away: the catch-up takes several pages */
    for (int i = 0; i < AWAY; i++) {
      send_pipelined(alice, "carol", sent + 1, CHUNK);
      sent += CHUNK;
      send_replies(alice, CHUNK);
    }
    /* back after the last event read; more arrive during the catch-up */
    char lid[32];
    snprintf(lid, sizeof lid, "%llu", (unsigned long long)(next - 1));
    s = sse_open(port, "uid=carol&device=web", "token", lid);
    send_pipelined(alice, "carol", sent + 1, CHUNK / 4);
    sent += CHUNK / 4;
    sse_ready(s);
    /* the reader's pace holds the catch-up back: these land during it */
    for (int i = 0; i < 3; i++) {
      read_upto(s, &next, next + 20);
      send_pipelined(alice, "carol", sent + 1, CHUNK / 4);
      sent += CHUNK / 4;
    }
    read_upto(s, &next, next + 20);
    send_replies(alice, CHUNK);
  }
  read_upto(s, &next, (uint64_t)sent);
  /* and nothing more */
  struct sse_ev ev;
  assert_false(sse_next(s, &ev, 500));
  sse_close(s);

  /* the query form of Last-Event-ID, for clients that cannot set headers */
  char q[96];
  snprintf(q, sizeof q, "uid=carol&device=web&last_event_id=%d", sent - 2);
  s = sse_open(port, q, "token", NULL);
  sse_ready(s);
  next = (uint64_t)sent - 1;
  read_upto(s, &next, (uint64_t)sent);
  sse_close(s);
  PASSED(f);
}

/* The device's ack cursor, as a websocket login of it reports it. */
static uint64_t cursor_of(struct fixture *f, const char *uid,
                          const char *device) {
  struct tc *c = tc_login(f->h, uid, device);
  uint64_t a = c->ack_seq;
  tc_free(c);
  return a;
}

static void sse_acks_what_client_says(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  struct tc *alice = tc_login(f->h, "alice", "phone");
  for (int i = 0; i < 250; i += 125) {
    send_pipelined(alice, "carol", i + 1, 125);
    send_replies(alice, 125);
  }
  /* a whole stream, read to the end over several pages: nothing acked */
  struct sse *s = sse_open(port, "uid=carol&device=web", "token", NULL);
  sse_ready(s);
  uint64_t next = 1;
  read_upto(s, &next, 250);
  sse_close(s);
  assert_int_equal(cursor_of(f, "carol", "web"), 0);
  /* Last-Event-ID acks what it names */
  s = sse_open(port, "uid=carol&device=web", "token", "100");
  sse_ready(s);
  next = 101;
  read_upto(s, &next, 250);
  sse_close(s);
  assert_int_equal(cursor_of(f, "carol", "web"), 100);
  /* and so does POST /ack */
  struct hresp *r = post(port, "/http/v1/ack?uid=carol&device=web", "token",
                         "{\"inbox_seq\":200}");
  assert_int_equal(r->status, 200);
  hresp_free(r);
  assert_int_equal(cursor_of(f, "carol", "web"), 200);
  PASSED(f);
}

static void post_keeps_live_session(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  struct tc *bob = tc_login(f->h, "bob", "phone");
  struct tc *alice = tc_login(f->h, "alice", "phone");
  struct sse *s = sse_open(port, "uid=carol&device=web", "token", NULL);
  sse_ready(s);

  /* requests as bob/phone and carol/web, the live sessions' devices */
  for (int i = 0; i < 3; i++) {
    struct hresp *r = post(port, "/http/v1/pull?uid=bob&device=phone", "token",
                           "{\"after_seq\":0}");
    assert_int_equal(r->status, 200);
    hresp_free(r);
    r = post(port, "/http/v1/send?uid=carol&device=web", "token",
             "{\"to\":\"alice\",\"content\":\"hi\"}");
    assert_int_equal(r->status, 200);
    hresp_free(r);
  }
  /* both live sessions still get their pushes */
  uint64_t id = tc_c2c(alice, "bob", "still there?", NULL, NULL);
  struct mim_packet p;
  mim_packet_init(&p);
  tc_push_msg(bob, MIM_CMD_C2C_PUSH, id, &p);
  mim_packet_finish(&p);
  tc_barrier(bob);
  tc_assert_no_cmd(bob, MIM_CMD_KICK);
  tc_c2c(alice, "carol", "stream still there?", NULL, NULL);
  char content[256];
  /* carol's own sends are in her inbox too: three of them, then this */
  for (int i = 0; i < 3; i++) {
    sse_message(s, content, sizeof content);
    assert_string_equal(content, "hi");
  }
  sse_message(s, content, sizeof content);
  assert_string_equal(content, "stream still there?");
  sse_close(s);
  PASSED(f);
}

static int setup_bad_token_401(void **state) {
  struct h_opts o;
  h_opts_init(&o);
  o.dev_auth = false;
  o.token_secret = "0123456789abcdef0123456789abcdef";
  return setup_with(state, "bad_token_401", &o);
}

static void bad_token_401(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  char tok[MIM_TOKEN_MAX];
  tc_token(f->h, "alice", "script", tok);

  struct hresp *r = post(port, "/http/v1/send?uid=alice&device=script",
                         "v1.9999999999.AAAA", "{\"to\":\"bob\",\"content\":\"x\"}");
  assert_int_equal(r->status, 401);
  assert_string_equal(err_name(r), "TOKEN_INVALID");
  hresp_free(r);
  /* a token for another uid */
  r = post(port, "/http/v1/send?uid=mallory&device=script", tok,
           "{\"to\":\"bob\",\"content\":\"x\"}");
  assert_int_equal(r->status, 401);
  hresp_free(r);
  /* none at all */
  r = post(port, "/http/v1/send?uid=alice&device=script", NULL,
           "{\"to\":\"bob\",\"content\":\"x\"}");
  assert_int_equal(r->status, 401);
  hresp_free(r);
  /* the right one */
  r = post(port, "/http/v1/send?uid=alice&device=script", tok,
           "{\"to\":\"bob\",\"content\":\"x\"}");
  assert_int_equal(r->status, 200);
  hresp_free(r);

  struct sse *s = sse_open(port, "uid=alice&device=script&token=v1.1.AAAA",
                           NULL, NULL);
  assert_int_equal(sse_head(s), 401);
  sse_close(s);
  s = sse_open(port, "uid=alice&device=script", tok, NULL);
  sse_ready(s);
  sse_close(s);
  PASSED(f);
}

static void oversized_body_413(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  /* announced too big: refused before a byte of it is read */
  struct hresp *r = post_raw(port, "/http/v1/send?uid=alice", "token", "", 0,
                             65537);
  assert_int_equal(r->status, 413);
  hresp_free(r);
  /* a chunked body (of any size) is refused: 411, not a hang */
  int fd = dial(port);
  static const char chunked[] =
      "POST /http/v1/send?uid=alice HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Bearer token\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\n{\"a\":\r\n0\r\n\r\n";
  write_all(fd, chunked, sizeof chunked - 1);
  char buf[512] = "";
  ssize_t got = read_some(fd, buf, sizeof buf - 1, IO_MS);
  assert_true(got > 0);
  int status = 0;
  assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &status), 1);
  assert_int_equal(status, 411);
  close(fd);
  /* within the limit, it works */
  size_t n = 60000;
  char *big = malloc(n + 64);
  assert_non_null(big);
  int hl = snprintf(big, n + 64, "{\"to\":\"bob\",\"content\":\"");
  memset(big + hl, 'a', 30000);
  strcpy(big + hl + 30000, "\"}");
  r = post(port, "/http/v1/send?uid=alice", "token", big);
  assert_int_equal(r->status, 200);
  hresp_free(r);
  free(big);
  PASSED(f);
}

static void malformed_json_400(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  static const char *const bad[] = {
      "{\"to\":\"bob\",",                          /* not JSON */
      "[1,2]",                                     /* not an object */
      "{\"to\":1,\"content\":\"x\"}",              /* wrong type */
      "{\"to\":\"bob\",\"conent\":\"x\"}",         /* unknown field */
      "{\"to\":\"bob\",\"content\":\"\xff\xfe\"}", /* not UTF-8 */
      "{\"to\":\"bob\",\"to\":\"eve\"}",           /* duplicate key */
      "{\"to\":\"bob\",\"content\":\"a\\u0000b\"}", /* NUL */
      "{\"to\":\"bob\",\"type\":-1}",              /* out of range */
      "{\"to\":\"bob\",\"seq\":[[[[[[[[1]]]]]]]]}", /* too deep */
      "{\"to\":\"bad id\",\"content\":\"x\"}",     /* logicd: not an id */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct hresp *r = post(port, "/http/v1/send?uid=alice", "token", bad[i]);
    if (r->status != 400)
      fail_msg("body %zu: status %d: %s", i, r->status, r->buf);
    assert_string_equal(err_name(r), "MALFORMED");
    hresp_free(r);
  }
  struct hresp *r = post(port, "/http/v1/nosuch?uid=alice", "token", "{}");
  assert_int_equal(r->status, 400);
  assert_string_equal(err_name(r), "UNKNOWN_CMD");
  hresp_free(r);
  r = post(port, "/http/v1/send?uid=alice", "token",
           "{\"to\":\"bob\",\"content\":\"fine\"}");
  assert_int_equal(r->status, 200);
  hresp_free(r);
  PASSED(f);
}

static void kick_ends_stream(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  struct sse *s = sse_open(port, "uid=carol&device=web", "token", NULL);
  sse_ready(s);
  /* the same device logs in over a websocket: it replaces the stream */
  struct tc *carol = tc_login(f->h, "carol", "web");
  (void)carol;
  struct sse_ev ev;
  assert_true(sse_next(s, &ev, IO_MS));
  assert_string_equal(ev.name, "kick");
  assert_string_equal(json_string_value(json_object_get(ev.data, "name")),
                      "OTHER_LOGIN");
  sse_ev_finish(&ev);
  /* and the stream ends */
  assert_false(sse_next(s, &ev, IO_MS));
  assert_true(s->eof);
  sse_close(s);
  PASSED(f);
}

static int setup_slow_sse_reader(void **state) {
  static const char *const la[] = {"--rate-per-sec", "100000", "--rate-burst",
                                   "100000", NULL};
  static const char *const ga[] = {"--rate-requests-per-s", "100000",
                                   "--rate-requests-burst", "100000",
                                   "--send-queue-bytes", "65536", NULL};
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = la;
  o.gatewayd_args = ga;
  return setup_with(state, "slow_sse_reader", &o);
}

/* A stream that is not read is cut once its backlog passes
 * send_queue_bytes (kick SLOW), and its reconnect loses nothing. */
static void slow_sse_reader(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  struct tc *alice = tc_login(f->h, "alice", "phone");
  enum { N = 3000, CHUNK = 200 };
  struct sse *s = sse_open(port, "uid=carol&device=web", "token", NULL);
  sse_ready(s);
  tc_barrier(alice);
  /* 3 MB of pushes to a reader that reads nothing meanwhile */
  static char text[1024];
  for (int i = 0; i < N; i += CHUNK) {
    for (int j = i; j < i + CHUNK; j++) {
      struct mim_packet p;
      mim_packet_init(&p);
      p.cmd = MIM_CMD_C2C_SEND_REQ;
      memset(text, 'x', sizeof text - 1);
      snprintf(text, 16, "m%d", j + 1);
      text[strlen(text)] = ' ';
      p.to = "carol";
      p.content = text;
      p.seq = ++alice->seq;
      assert_int_equal(wsc_send_packet(alice->ws, &p), 0);
    }
    send_replies(alice, CHUNK);
  }
  /* what was queued before the cut, then the kick, then the end */
  uint64_t last = 0;
  bool kicked = false;
  struct sse_ev ev;
  while (sse_next(s, &ev, IO_MS)) {
    if (strcmp(ev.name, "kick") == 0) {
      assert_string_equal(json_string_value(json_object_get(ev.data, "name")),
                          "SLOW");
      kicked = true;
    } else {
      assert_false(kicked);
      assert_int_equal(ev.id, last + 1);
      last = ev.id;
    }
    sse_ev_finish(&ev);
  }
  assert_true(s->eof);
  assert_true(kicked);
  assert_true(last < N);
  sse_close(s);
  /* back after the last event it got: the rest, once each */
  char lid[32];
  snprintf(lid, sizeof lid, "%llu", (unsigned long long)last);
  s = sse_open(port, "uid=carol&device=web", "token", lid);
  sse_ready(s);
  for (uint64_t i = last + 1; i <= N; i++) {
    struct sse_ev e2;
    assert_true(sse_next(s, &e2, IO_MS));
    if (e2.id != i)
      fail_msg("event '%s' id %llu where %llu was due", e2.name,
               (unsigned long long)e2.id, (unsigned long long)i);
    sse_ev_finish(&e2);
  }
  sse_close(s);
  PASSED(f);
}

static int setup_http_rate_per_address(void **state) {
  static const char *const ga[] = {"--http-rate-per-s", "1",
                                   "--http-rate-burst", "5", NULL};
  struct h_opts o;
  h_opts_init(&o);
  o.gatewayd_args = ga;
  return setup_with(state, "http_rate_per_address", &o);
}

/* One POST per connection: the per-connection limits cannot slow a
 * client that opens one after another; the per-address bucket does. */
static void http_rate_per_address(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  int ok = 0, limited = 0;
  for (int i = 0; i < 8; i++) {
    struct hresp *r = post(port, "/http/v1/send?uid=alice", "token",
                           "{\"to\":\"bob\",\"content\":\"x\"}");
    if (r->status == 200) {
      ok++;
    } else {
      assert_int_equal(r->status, 429);
      assert_string_equal(err_name(r), "RATE_LIMITED");
      limited++;
    }
    hresp_free(r);
  }
  assert_true(ok >= 5 && ok <= 6); /* the burst, and a second's refill */
  assert_true(limited >= 2);
  struct sse *s = sse_open(port, "uid=carol", "token", NULL);
  assert_int_equal(sse_head(s), 429);
  sse_close(s);
  /* the bucket refills */
  usleep(2100 * 1000);
  struct hresp *r = post(port, "/http/v1/send?uid=alice", "token",
                         "{\"to\":\"bob\",\"content\":\"x\"}");
  assert_int_equal(r->status, 200);
  hresp_free(r);
  PASSED(f);
}

static int setup_sse_outlives_idle_timeout(void **state) {
  static const char *const ga[] = {"--ping-interval-s", "1",
                                   "--idle-timeout-s", "3", "--sse-ping-s",
                                   "1", NULL};
  struct h_opts o;
  h_opts_init(&o);
  o.gatewayd_args = ga;
  return setup_with(state, "sse_outlives_idle_timeout", &o);
}

/* An SSE client never sends anything after its request: the websocket
 * idle deadline must not close it; its heartbeat comments keep coming. */
static void sse_outlives_idle_timeout(void **state) {
  struct fixture *f = *state;
  int port = f->h->gw_port;
  struct sse *s = sse_open(port, "uid=carol&device=web", "token", NULL);
  sse_ready(s);
  struct sse_ev ev;
  /* twice the idle timeout: no event (pings are comments), no end */
  assert_false(sse_next(s, &ev, 6500));
  assert_false(s->eof);
  struct tc *alice = tc_login(f->h, "alice", "phone");
  tc_c2c(alice, "carol", "still here", NULL, NULL);
  char content[64];
  assert_int_equal(sse_message(s, content, sizeof content), 1);
  assert_string_equal(content, "still here");
  sse_close(s);
  PASSED(f);
}

/* ====================================================================== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TS(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

static const struct CMUnitTest all_tests[] = {
    T(post_and_sse_meet_ws), TS(sse_resume),         T(post_keeps_live_session),
    TS(bad_token_401),       T(oversized_body_413), T(malformed_json_400),
    T(kick_ends_stream), T(sse_acks_what_client_says), TS(slow_sse_reader),
    TS(http_rate_per_address), TS(sse_outlives_idle_timeout),
    T(http_conversations),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-httpgw", all_tests, COUNT(all_tests),
                &WS, 0);
}
