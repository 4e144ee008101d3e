/* What docs/protocol.md promises about the connection itself, against the
 * real daemons: how every closure the server starts is signalled (a Kick or
 * an Error, then a close frame with the documented code), the login and
 * idle deadlines, the size of what the server sends, the queue limit of the
 * gateway, the `seq` echo rule and the fields of the gateway's Errors.
 *
 *   test-p13gw [NAME]   runs every test, or only the test called NAME
 *
 * Each test starts its own logicd + gatewayd with short timeouts or small
 * bounds where it needs them, so nothing waits long. A hand-written
 * websocket client (raw TCP) stands in where lws's client would hide what
 * is checked: pongs (it never answers a ping) and message sizes.
 * Exit status 77 (skipped) when the daemons are not built. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

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
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int setup_with(void **state, const char *name,
                      const char *const *gw_args,
                      const char *const *logic_args, unsigned timeout_s) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;

  if (f == NULL)
    return -1;
  f->name = name;
  h_opts_init(&o);
  o.gatewayd_args = gw_args;
  o.logicd_args = logic_args;
  if (h_begin(&f->h, WS, &o, name, timeout_s) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = f != NULL ? h_finish(f->h, f->name, f->passed, H_CHECK_GATEWAYD | H_STOP_GATEWAYD)
                    : h_finish(NULL, NULL, false, 0);

  free(f);
  *state = NULL;
  return r;
}

/* SETUP(fn, secs, ARGS(gatewayd flags), ARGS(logicd flags) or NULL);
 * development auth, as h_opts_init() sets */
#define SETUP(fn, secs, GW, LOGIC)                                             \
  static int setup_##fn(void **state) {                                        \
    static const char *const gw[] = {GW};                                      \
    static const char *const lg[] = {LOGIC};                                   \
    return setup_with(state, #fn, gw, lg[0] ? lg : NULL, secs);                \
  }
#define ARGS(...) __VA_ARGS__, NULL

/* ---- a websocket client by hand ---- */

static const char UPGRADE[] =
    "GET /ws HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

static int raw_open(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  char resp[1024];
  size_t got = 0;

  assert_true(fd >= 0);
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(h_send_all(fd, UPGRADE, sizeof(UPGRADE) - 1), 0);
  while (got < sizeof(resp) - 1) {
    if (h_recv_all(fd, resp + got, 1, 5000) != 0)
      fail_msg("no websocket upgrade response");
    got++;
    resp[got] = '\0';
    if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  if (strncmp(resp, "HTTP/1.1 101", 12) != 0)
    fail_msg("upgrade refused: %s", resp);
  return fd;
}

/* One masked, final client message. */
static void raw_send(int fd, uint8_t opcode, const uint8_t *p, size_t len) {
  uint8_t hdr[14], *buf;
  size_t h = 0;
  const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};

  hdr[h++] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    hdr[h++] = (uint8_t)(0x80 | len);
  } else if (len <= 0xffff) {
    hdr[h++] = 0x80 | 126;
    hdr[h++] = (uint8_t)(len >> 8);
    hdr[h++] = (uint8_t)len;
  } else {
    hdr[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  memcpy(hdr + h, mask, 4);
  h += 4;
  buf = malloc(h + len);
  assert_non_null(buf);
  memcpy(buf, hdr, h);
  for (size_t i = 0; i < len; i++)
    buf[h + i] = p[i] ^ mask[i % 4];
  assert_int_equal(h_send_all(fd, buf, h + len), 0);
  free(buf);
}

/* The next server websocket frame: its opcode and payload (malloc'd in
 * *out, `*len` bytes). Returns 0, or -1 on timeout / EOF. */
static int raw_next(int fd, int ms, uint8_t *opcode, uint8_t **out,
                    size_t *len) {
  uint8_t h[2], ext[8];
  uint64_t n;

  if (h_recv_all(fd, h, 2, ms) != 0)
    return -1;
  *opcode = h[0] & 0x0f;
  n = h[1] & 0x7f;
  if (n == 126) {
    if (h_recv_all(fd, ext, 2, ms) != 0)
      return -1;
    n = (uint64_t)ext[0] << 8 | ext[1];
  } else if (n == 127) {
    if (h_recv_all(fd, ext, 8, ms) != 0)
      return -1;
    n = 0;
    for (int i = 0; i < 8; i++)
      n = n << 8 | ext[i];
  }
  assert_true(n < (64u << 20));
  *out = malloc(n ? n : 1);
  assert_non_null(*out);
  if (n > 0 && h_recv_all(fd, *out, (size_t)n, ms) != 0) {
    free(*out);
    return -1;
  }
  *len = (size_t)n;
  return 0;
}

/* Sends `p` as one binary message. */
static void raw_send_packet(int fd, const struct mim_packet *p) {
  uint8_t buf[8192];
  size_t n;

  assert_int_equal(mim_packet_encode(p, buf, sizeof(buf), &n), 0);
  raw_send(fd, 2, buf, n);
}

/* Decodes the first frame of a binary message into `out`. */
static void decode_first(const uint8_t *msg, size_t len,
                         struct mim_packet *out) {
  struct mim_frame fr;
  size_t used;

  assert_int_equal(mim_frame_decode(msg, len, 0, &fr, &used), 0);
  mim_packet_init(out);
  assert_int_equal(
      mim_packet_decode(out, fr.header.cmd, fr.body, fr.header.body_len), 0);
}

/* Logs in over a raw websocket (development auth) with `caps`. */
static int raw_login(int port, const char *uid, uint32_t caps) {
  int fd = raw_open(port);
  struct mim_packet p, r;
  uint8_t op, *msg;
  size_t len;

  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.token = "token";
  p.uid = uid;
  p.seq = 1;
  p.caps = caps;
  raw_send_packet(fd, &p);
  for (;;) {
    assert_int_equal(raw_next(fd, TC_REPLY_MS, &op, &msg, &len), 0);
    if (op == 2)
      break;
    free(msg);
  }
  decode_first(msg, len, &r);
  free(msg);
  assert_int_equal(r.cmd, MIM_CMD_AUTH_RSP);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.caps, caps);
  mim_packet_finish(&r);
  return fd;
}

/* The close code of a close frame's payload (1005 when it has none). */
static int close_code_of(const uint8_t *p, size_t len) {
  return len >= 2 ? (p[0] << 8 | p[1]) : 1005;
}

/* ---- expectations ---- */

/* The next packet is a Kick with `reason`; then the server closes with
 * `code`. */
static void expect_kick_close(struct tc *c, int32_t reason, int code,
                              const char *what) {
  struct mim_packet p;
  char d[512];
  int got = 0;

  if (wsc_recv(c->ws, TC_REPLY_MS, &p) != 0)
    fail_msg("%s: no Kick before the close", what);
  if (p.cmd != MIM_CMD_KICK || p.reason != reason)
    fail_msg("%s: want Kick reason %d, got %s", what, reason,
             tc_describe(&p, d, sizeof(d)));
  assert_true(p.ts > 0);
  assert_int_equal(p.seq, 0);
  mim_packet_finish(&p);
  if (wsc_wait_closed(c->ws, 10000, &got) != 0)
    fail_msg("%s: not closed after the Kick", what);
  if (got != code)
    fail_msg("%s: close code %d, want %d", what, got, code);
}

/* An Error of the gateway: code, seq, cmd and a server time within
 * [t0, now]. */
static void expect_error_fields(const struct mim_packet *p, int32_t code,
                                int64_t seq, uint32_t cmd, int64_t t0) {
  char d[512];

  if (p->cmd != MIM_CMD_ERROR || p->status != code || p->seq != seq ||
      p->failed_cmd != cmd)
    fail_msg("want Error %d seq %lld cmd %u, got %s", code, (long long)seq,
             cmd, tc_describe(p, d, sizeof(d)));
  if (p->ts < t0 || p->ts > tc_now_ms() + 1000)
    fail_msg("Error ts %lld is not the server's time (test started %lld)",
             (long long)p->ts, (long long)t0);
}

/* ====================================================================== */

/* §1, close codes: a fatal framing fault is a Kick PROTOCOL, then 1003
 * (text message) or 1007 (a message that is not whole frames); a frame
 * over max_frame is an Error FRAME_TOO_BIG (with ts), then 1009. */
SETUP(framing_faults_kick_and_close, 90, ARGS("--auth-timeout-ms", "60000"),
      NULL)
static void framing_faults_kick_and_close(void **state) {
  struct fixture *f = *state;
  struct tc *c;
  uint8_t frame[64];
  size_t n;
  struct mim_packet p;
  int64_t t0 = tc_now_ms();

  c = tc_login(f->h, "fr-text", NULL);
  assert_int_equal(wsc_send_raw(c->ws, "{\"cmd\":0}", 9, false), 0);
  expect_kick_close(c, MIM_KICK_PROTOCOL, 1003, "text message");
  tc_free(c);

  /* two frames in one message without MIM_CAP_BATCH */
  c = tc_login(f->h, "fr-extra", NULL);
  n = tc_frame(frame, MIM_CMD_HEARTBEAT_REQ, NULL, 0);
  n += tc_frame(frame + n, MIM_CMD_HEARTBEAT_REQ, NULL, 0);
  assert_int_equal(wsc_send_raw(c->ws, frame, n, true), 0);
  expect_kick_close(c, MIM_KICK_PROTOCOL, 1007, "bytes after the frame");
  tc_free(c);

  /* a header announcing more body than the message holds; also before
   * login */
  c = tc_open(f->h);
  {
    struct mim_header hd = {0, MIM_CMD_PULL_REQ, 10};

    mim_header_encode(frame, &hd);
    memset(frame + 12, 0, 3);
    assert_int_equal(wsc_send_raw(c->ws, frame, 15, true), 0);
  }
  expect_kick_close(c, MIM_KICK_PROTOCOL, 1007, "truncated frame");
  tc_free(c);

  /* an empty message */
  c = tc_login(f->h, "fr-empty", NULL);
  assert_int_equal(wsc_send_raw(c->ws, "", 0, true), 0);
  expect_kick_close(c, MIM_KICK_PROTOCOL, 1007, "empty message");
  tc_free(c);

  /* too big: an Error naming the cmd, with the server's time, then 1009 */
  c = tc_login(f->h, "fr-big", NULL);
  {
    struct mim_header hd = {0, MIM_CMD_C2C_SEND_REQ, 70000};
    int code = 0;

    mim_header_encode(frame, &hd);
    assert_int_equal(wsc_send_raw(c->ws, frame, 12, true), 0);
    assert_int_equal(wsc_recv(c->ws, TC_REPLY_MS, &p), 0);
    expect_error_fields(&p, E_FRAME_TOO_BIG, 0, MIM_CMD_C2C_SEND_REQ, t0);
    mim_packet_finish(&p);
    assert_int_equal(wsc_wait_closed(c->ws, 10000, &code), 0);
    assert_int_equal(code, 1009);
  }
  tc_free(c);

  /* none of it touched anyone else */
  c = tc_login(f->h, "fr-after", NULL);
  tc_barrier(c);
  tc_free(c);
  PASSED(f);
}

/* §11: a connection that answers pings stays open however silent it is; one
 * that answers nothing is sent Kick IDLE and a close frame 4002 after
 * idle_timeout_s, not a bare TCP close. */
SETUP(idle_close_is_signalled, 90,
      ARGS("--ping-interval-s", "1", "--idle-timeout-s", "3",
           "--auth-timeout-ms", "60000"),
      NULL)
static void idle_close_is_signalled(void **state) {
  struct fixture *f = *state;
  struct tc *alive = tc_login(f->h, "idle-alive", NULL);
  int fd = raw_login(f->h->gw_port, "idle-mute", 0);
  int64_t t0 = h_mono_ms();
  bool kicked = false, pinged = false;
  int code = 0;

  /* the raw client never pongs: it sees pings, then the Kick, then the
   * close frame */
  for (;;) {
    uint8_t op, *msg;
    size_t len;

    /* the lws client is serviced meanwhile, so that it answers pings */
    int64_t until = h_mono_ms() + 10000;
    struct pollfd q = {fd, POLLIN, 0};

    while (poll(&q, 1, 0) == 0 && h_mono_ms() < until)
      wsc_ctx_service(WS, 50);
    if (raw_next(fd, 10000, &op, &msg, &len) != 0)
      fail_msg("the idle connection ended without a close frame "
               "(kick seen: %d)", kicked);
    if (op == 9) {
      pinged = true;
    } else if (op == 2) {
      struct mim_packet p;

      decode_first(msg, len, &p);
      assert_int_equal(p.cmd, MIM_CMD_KICK);
      assert_int_equal(p.reason, MIM_KICK_IDLE);
      assert_string_equal(p.uid, "idle-mute");
      mim_packet_finish(&p);
      kicked = true;
    } else if (op == 8) {
      code = close_code_of(msg, len);
      free(msg);
      break;
    }
    free(msg);
  }
  close(fd);
  assert_true(pinged);
  assert_true(kicked);
  assert_int_equal(code, 4002);
  /* not before the timeout (the raw client's login counts as heard) */
  assert_true(h_mono_ms() - t0 >= 2500);

  /* lws's client answers the pings: still open well past the timeout */
  while (h_mono_ms() - t0 < 5000)
    wsc_ctx_service(WS, 100);
  assert_true(wsc_is_open(alive->ws));
  tc_barrier(alive);
  PASSED(f);
}

/* §6: the login deadline counts from the upgrade; a failed login leaves
 * the connection open until then, heartbeats are answered but do not
 * extend it; then Error UNAUTHENTICATED (seq 0, cmd 0, ts) and close 1008. */
SETUP(login_deadline, 60, ARGS("--auth-timeout-ms", "2000"),
      NULL)
static void login_deadline(void **state) {
  struct fixture *f = *state;
  int64_t w0 = tc_now_ms(), t0 = h_mono_ms();
  struct tc *c = tc_open(f->h);
  struct mim_packet p;
  int code = 0;

  assert_int_equal(tc_auth(c, "bad uid", NULL, "token", 0), E_MALFORMED);
  for (int i = 0; i < 3; i++) {
    tc_barrier(c); /* heartbeats still answered after the failed login */
    wsc_ctx_service(WS, 300);
  }
  assert_true(wsc_is_open(c->ws));
  assert_int_equal(wsc_recv_cmd(c->ws, MIM_CMD_ERROR, 5000, &p), 0);
  expect_error_fields(&p, E_UNAUTHENTICATED, 0, 0, w0);
  mim_packet_finish(&p);
  assert_int_equal(wsc_wait_closed(c->ws, 5000, &code), 0);
  assert_int_equal(code, 1008);
  /* from the upgrade, not from the last heartbeat or the failed login */
  assert_true(h_mono_ms() - t0 >= 1800);
  assert_true(h_mono_ms() - t0 < 4000);
  tc_free(c);
  PASSED(f);
}

/* §2: no websocket message from the server is larger than
 * send_message_max. Pull pages (logicd's reply_bytes_max below it) arrive
 * whole, in messages within the bound, batching included; a group list
 * of a big group (once answered TOO_LARGE) comes as its first page with
 * has_more, within the bound (§10). */
SETUP(server_message_bound, 180,
      ARGS("--send-message-max", "65536", "--auth-timeout-ms", "60000"),
      ARGS("--reply-bytes-max", "60000"))
static void server_message_bound(void **state) {
  struct fixture *f = *state;
  enum { N = 30, SIZE = 20000, MAX = 65536 };
  struct tc *s = tc_login(f->h, "big-sender", NULL);
  char *content = malloc(SIZE + 1);
  struct mim_packet p;
  int fd;
  uint64_t after = 0, got = 0;
  size_t largest = 0;

  assert_non_null(content);
  memset(content, 'x', SIZE);
  content[SIZE] = '\0';
  for (int i = 0; i < N; i++)
    tc_c2c(s, "big-reader", content, NULL, NULL);
  free(content);

  /* a batching reader pulls it all with limit 500 */
  fd = raw_login(f->h->gw_port, "big-reader", MIM_CAP_BATCH);
  for (int page = 0; page < 100; page++) {
    struct mim_packet rq;
    bool more = false;
    uint8_t op, *msg;
    size_t len;

    mim_packet_init(&rq);
    rq.cmd = MIM_CMD_PULL_REQ;
    rq.seq = 100 + page;
    rq.limit = 500;
    rq.has_after_seq = true;
    rq.after_seq = after;
    raw_send_packet(fd, &rq);
    for (;;) {
      struct mim_packet r;

      assert_int_equal(raw_next(fd, TC_REPLY_MS, &op, &msg, &len), 0);
      if (op != 2) {
        free(msg);
        continue;
      }
      if (len > largest)
        largest = len;
      assert_true(len <= MAX);
      decode_first(msg, len, &r);
      free(msg);
      if (r.cmd != MIM_CMD_PULL_RSP) {
        mim_packet_finish(&r);
        continue;
      }
      assert_int_equal(r.seq, 100 + page);
      for (size_t i = 0; i < r.n_items; i++) {
        assert_int_equal(r.items[i].inbox_seq, after + 1);
        after = r.items[i].inbox_seq;
        got++;
      }
      more = r.has_more;
      mim_packet_finish(&r);
      break;
    }
    if (!more)
      break;
  }
  close(fd);
  assert_int_equal(got, N);
  assert_true(largest > MAX / 2); /* pages were cut by bytes, not tiny */

  /* a group list larger than the bound: ~1,000 members of 100 bytes */
  {
    static char names[1000][101];
    const char *members[200];
    struct mim_packet rq;

    mim_packet_init(&rq);
    rq.cmd = MIM_CMD_GROUP_CREATE_REQ;
    rq.group = "big-group";
    tc_call(s, &rq, &p);
    tc_expect_cmd(&p, MIM_CMD_GROUP_CREATE_RSP);
    mim_packet_finish(&p);
    for (int b = 0; b < 5; b++) {
      for (int i = 0; i < 200; i++) {
        snprintf(names[b * 200 + i], sizeof(names[0]), "%04d-%095d",
                 b * 200 + i, 0);
        members[i] = names[b * 200 + i];
      }
      mim_packet_init(&rq);
      rq.cmd = MIM_CMD_GROUP_ADD_REQ;
      rq.group = "big-group";
      rq.members = members;
      rq.n_members = 200;
      tc_call(s, &rq, &p);
      tc_expect_cmd(&p, MIM_CMD_GROUP_ADD_RSP);
      mim_packet_finish(&p);
    }
    mim_packet_init(&rq);
    rq.cmd = MIM_CMD_GROUP_LIST_REQ;
    rq.group = "big-group";
    tc_call(s, &rq, &p); /* asserts the seq is echoed */
    tc_expect_cmd(&p, MIM_CMD_GROUP_LIST_RSP);
    assert_true(p.has_more);
    assert_true(p.n_members > 0 && p.n_members < 1001);
    mim_packet_finish(&p);
  }
  /* the connection goes on, in order */
  tc_barrier(s);
  PASSED(f);
}

/* §12: the gateway's bound on unanswered requests counts every request it
 * has read and not answered, heartbeats included, whether they came one
 * per message or 1,100 in one: past 1,024 the connection gets Kick SLOW
 * and close 1008. logicd is stopped so that nothing is answered. */
SETUP(unanswered_requests_bound, 90,
      ARGS("--rate-requests-burst", "100000", "--auth-timeout-ms", "60000"),
      NULL)
static void unanswered_requests_bound(void **state) {
  struct fixture *f = *state;
  enum { N = 1100 };
  struct tc *c = tc_login_caps(f->h, "flood-hb", NULL, MIM_CAP_BATCH);
  uint8_t *buf = malloc(N * MIM_HEADER_SIZE);
  size_t n = 0;

  assert_non_null(buf);
  for (int i = 0; i < N; i++)
    n += tc_frame(buf + n, MIM_CMD_HEARTBEAT_REQ, NULL, 0);
  assert_int_equal(kill(f->h->logic_pid, SIGSTOP), 0);
  assert_int_equal(wsc_send_raw(c->ws, buf, n, true), 0);
  free(buf);
  expect_kick_close(c, MIM_KICK_SLOW, 1008, "1,100 unanswered requests");
  assert_int_equal(kill(f->h->logic_pid, SIGCONT), 0);
  tc_free(c);
  c = tc_login(f->h, "flood-after", NULL);
  tc_barrier(c);
  PASSED(f);
}

/* §4 `seq`: echoed as sent, negative values included, whenever the server
 * knows the request's message and its body decodes; 0 for frames refused
 * from their header (unknown or server commands, before login too: the
 * header checks come first) and bodies that do not decode. A heartbeat's
 * body is ignored and its reply is empty. Every Error carries ts. */
SETUP(seq_echo_rule, 60, ARGS("--auth-timeout-ms", "60000"),
      NULL)
static void seq_echo_rule(void **state) {
  struct fixture *f = *state;
  int64_t t0 = tc_now_ms();
  struct tc *c = tc_open(f->h);
  struct mim_packet rq, p;
  uint8_t body[64], frame[128];
  size_t bl, n;

  /* before login: a known request is UNAUTHENTICATED with its seq, even
   * a negative one */
  mim_packet_init(&rq);
  rq.cmd = MIM_CMD_PULL_REQ;
  rq.seq = -5;
  assert_int_equal(wsc_send_packet(c->ws, &rq), 0);
  assert_int_equal(wsc_recv(c->ws, TC_REPLY_MS, &p), 0);
  expect_error_fields(&p, E_UNAUTHENTICATED, -5, MIM_CMD_PULL_REQ, t0);
  mim_packet_finish(&p);

  /* an unknown cmd whose body carries a seq: UNKNOWN_CMD, seq 0, before
   * login as after */
  assert_int_equal(mim_packet_encode_body(&rq, body, sizeof(body), &bl), 0);
  n = tc_frame(frame, 999, body, bl);
  assert_int_equal(wsc_send_raw(c->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv(c->ws, TC_REPLY_MS, &p), 0);
  expect_error_fields(&p, E_UNKNOWN_CMD, 0, 999, t0);
  mim_packet_finish(&p);

  /* a heartbeat with a body (here: garbage) is a heartbeat, before
   * login and after */
  {
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x0f};

    n = tc_frame(frame, MIM_CMD_HEARTBEAT_REQ, junk, sizeof(junk));
    assert_int_equal(wsc_send_raw(c->ws, frame, n, true), 0);
    assert_int_equal(wsc_recv(c->ws, TC_REPLY_MS, &p), 0);
    assert_int_equal(p.cmd, MIM_CMD_HEARTBEAT_RSP);
    mim_packet_finish(&p);
  }

  assert_int_equal(tc_auth(c, "seq-user", NULL, "token", 0), 0);
  n = tc_frame(frame, MIM_CMD_HEARTBEAT_REQ, body, bl);
  assert_int_equal(wsc_send_raw(c->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv(c->ws, TC_REPLY_MS, &p), 0);
  assert_int_equal(p.cmd, MIM_CMD_HEARTBEAT_RSP);
  assert_int_equal(p.seq, 0);
  mim_packet_finish(&p);

  /* after login a negative seq is echoed by logicd's reply */
  mim_packet_init(&rq);
  rq.cmd = MIM_CMD_PULL_REQ;
  rq.seq = -7;
  rq.has_after_seq = true;
  assert_int_equal(wsc_send_packet(c->ws, &rq), 0);
  assert_int_equal(wsc_recv(c->ws, TC_REPLY_MS, &p), 0);
  assert_int_equal(p.cmd, MIM_CMD_PULL_RSP);
  assert_int_equal(p.seq, -7);
  mim_packet_finish(&p);

  /* unknown cmd after login: seq 0 as well; the connection stays */
  n = tc_frame(frame, 999, body, bl);
  assert_int_equal(wsc_send_raw(c->ws, frame, n, true), 0);
  assert_int_equal(wsc_recv(c->ws, TC_REPLY_MS, &p), 0);
  expect_error_fields(&p, E_UNKNOWN_CMD, 0, 999, t0);
  mim_packet_finish(&p);
  tc_barrier(c);
  tc_free(c);
  PASSED(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

int main(int argc, char **argv) {
  static const struct CMUnitTest tests[] = {
      T(framing_faults_kick_and_close),
      T(idle_close_is_signalled),
      T(login_deadline),
      T(server_message_bound),
      T(unanswered_requests_bound),
      T(seq_echo_rule),
  };

  return h_main(argc, argv, "integration-p13gw", tests, COUNT(tests), &WS, 0);
}
