/* gatewayd's raw TCP listener (tcp_listen) against the real daemons: the
 * same frames on a byte stream, reaching the same sessions, limits and
 * kicks as the websocket.
 *
 *   test-tcp [NAME]   runs every test, or only the test called NAME
 *
 * Each test starts its own logicd + gatewayd with a TCP listener on a free
 * loopback port (and the settings it needs); tcpclient.c is the TCP client,
 * tclient.c/wsclient.c the websocket one. Exit status 77 (skipped) when
 * the daemons are not built. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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
#include "tcpclient.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

struct fixture {
  struct harness *h;
  int tcp_port;
  char tcp_listen[32];
  char cert[400], key[400];
  bool passed;
  const char *name;
};

#define PASSED(f) ((f)->passed = true)
#define MAX_ARGS 24

/* Starts a fresh pair: gatewayd with a TCP listener and `gw_args`
 * (NULL-terminated), logicd with `logic_args`. With `tls`, gatewayd gets
 * a self-signed certificate (its websocket is then wss, which the test's
 * websocket client does not speak: the link is awaited over TCP). */
static int setup_with(void **state, const char *name,
                      const char *const *logic_args,
                      const char *const *gw_args, bool tls) {
  struct fixture *f = calloc(1, sizeof(*f));
  static const char *args[MAX_ARGS];
  struct h_opts o;
  int n = 0;

  if (f == NULL)
    return -1;
  f->name = name;
  h_watchdog(120, name);
  f->tcp_port = h_free_port();
  if (f->tcp_port <= 0)
    goto fail;
  snprintf(f->tcp_listen, sizeof f->tcp_listen, "127.0.0.1:%d", f->tcp_port);
  h_opts_init(&o);
  if (h_create(&f->h, WS, &o) != 0)
    goto fail;
  args[n++] = "--tcp-listen";
  args[n++] = f->tcp_listen;
  if (tls) {
    if (h_make_cert(f->h, "tls", "127.0.0.1", f->cert, f->key,
                    sizeof f->cert) != 0)
      goto fail;
    args[n++] = "--tls-cert";
    args[n++] = f->cert;
    args[n++] = "--tls-key";
    args[n++] = f->key;
  }
  for (size_t i = 0; gw_args != NULL && gw_args[i] != NULL; i++)
    args[n++] = gw_args[i];
  args[n] = NULL;
  f->h->opts.gatewayd_args = args;
  f->h->opts.logicd_args = logic_args;
  if (!tls) {
    if (h_start(f->h) != 0)
      goto fail;
  } else {
    if (h_start_logicd(f->h) != 0 || h_start_gatewayd(f->h) != 0)
      goto fail;
  }
  *state = f;
  return 0;

fail:
  fprintf(stderr, "[%s] setup failed\n", name);
  if (f->h)
    h_dump_logs(f->h);
  h_destroy(f->h);
  free(f);
  return -1;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = f != NULL ? h_finish(f->h, f->name, f->passed, H_CHECK_GATEWAYD | H_STOP_GATEWAYD)
                    : h_finish(NULL, NULL, false, 0);

  free(f);
  *state = NULL;
  return r;
}

#define SETUP(fn, tls, ...)                                                    \
  static int setup_##fn(void **state) {                                        \
    static const char *const args[] = {__VA_ARGS__ NULL};                      \
    return setup_with(state, #fn, NULL, args, tls);                            \
  }

/* A TCP connection logged in as uid/device (status 0 asserted). */
static struct tcpc *tcp_login(struct fixture *f, bool tls, const char *uid,
                              const char *device, uint32_t caps) {
  struct tcpc *c = NULL;
  assert_int_equal(tcpc_connect(f->tcp_port, tls, 0, &c), 0);
  assert_int_equal(tcpc_login(c, uid, device, caps), 0);
  return c;
}

static void tcp_c2c(struct tcpc *c, int64_t seq, const char *to,
                    const char *content) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_SEND_REQ;
  p.seq = seq;
  p.to = to;
  p.content = content;
  p.ts = tc_now_ms();
  assert_int_equal(tcpc_send_packet(c, &p), 0);
}

/* The next packet must be `cmd` with `seq`. */
static void tcp_expect(struct tcpc *c, uint32_t cmd, int64_t seq,
                       struct mim_packet *out) {
  char d[512];
  assert_int_equal(tcpc_recv(c, TC_REPLY_MS, out), 0);
  if (out->cmd != cmd || out->seq != seq) {
    fprintf(stderr, "expected cmd %u seq %lld, got %s\n", cmd, (long long)seq,
            tc_describe(out, d, sizeof d));
    fail();
  }
}

/* ---- a TCP client and a websocket client chat both ways ---- */

SETUP(tcp_ws_chat, false, )

static void tcp_ws_chat(void **state) {
  struct fixture *f = *state;
  struct tcpc *alice = tcp_login(f, false, "alice", "phone", 0);
  struct tc *bob = tc_login(f->h, "bob", "web");
  struct mim_packet p;

  /* TCP -> websocket */
  tcp_c2c(alice, 2, "bob", "hello over tcp");
  tcp_expect(alice, MIM_CMD_C2C_SEND_RSP, 2, &p);
  uint64_t id1 = p.msg_id;
  mim_packet_finish(&p);
  tc_push_msg(bob, MIM_CMD_C2C_PUSH, id1, &p);
  assert_string_equal(p.content, "hello over tcp");
  assert_string_equal(p.from, "alice");
  mim_packet_finish(&p);

  /* websocket -> TCP: a push with its inbox_seq, then acked */
  uint64_t id2 = tc_c2c(bob, "alice", "hello over ws", NULL, NULL);
  assert_int_equal(tcpc_recv_cmd(alice, MIM_CMD_C2C_PUSH, TC_PUSH_MS, &p), 0);
  assert_int_equal(p.msg_id, id2);
  assert_string_equal(p.content, "hello over ws");
  assert_true(p.inbox_seq > 0);
  uint64_t seq = p.inbox_seq;
  mim_packet_finish(&p);
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_PUSH_ACK;
  p.msg_id = id2;
  p.inbox_seq = seq;
  assert_int_equal(tcpc_send_packet(alice, &p), 0);

  /* several frames in one write, answered in order (a stream needs no
   * capability for that) */
  uint8_t buf[3 * MIM_HEADER_SIZE];
  for (int i = 0; i < 3; i++)
    tc_frame(buf + i * MIM_HEADER_SIZE, MIM_CMD_HEARTBEAT_REQ, NULL, 0);
  assert_int_equal(tcpc_send(alice, buf, sizeof buf), 0);
  for (int i = 0; i < 3; i++) {
    tcp_expect(alice, MIM_CMD_HEARTBEAT_RSP, 0, &p);
    mim_packet_finish(&p);
  }
  tcpc_close(alice);
  tc_free(bob);
  PASSED(f);
}

/* ---- TLS over TCP ---- */

SETUP(tcp_tls, true, )

static void tcp_tls(void **state) {
  struct fixture *f = *state;
  struct tcpc *alice = NULL, *bob = NULL;
  struct mim_packet p;
  int64_t deadline = h_mono_ms() + 10000;

  /* the link to logicd: until it is up, the gateway answers UNAVAILABLE */
  for (;;) {
    assert_int_equal(tcpc_connect(f->tcp_port, true, 0, &alice), 0);
    if (tcpc_login(alice, "alice", "phone", 0) == 0)
      break;
    tcpc_close(alice);
    alice = NULL;
    assert_true(h_mono_ms() < deadline);
    h_sleep_ms(100);
  }
  bob = tcp_login(f, true, "bob", "laptop", 0);
  tcp_c2c(alice, 2, "bob", "secret");
  tcp_expect(alice, MIM_CMD_C2C_SEND_RSP, 2, &p);
  mim_packet_finish(&p);
  assert_int_equal(tcpc_recv_cmd(bob, MIM_CMD_C2C_PUSH, TC_PUSH_MS, &p), 0);
  assert_string_equal(p.content, "secret");
  mim_packet_finish(&p);

  /* plaintext on the TLS port is not a login: the handshake fails and
   * the connection is closed without an answer */
  struct tcpc *plain = NULL;
  assert_int_equal(tcpc_connect(f->tcp_port, false, 0, &plain), 0);
  assert_int_equal(tcpc_login(plain, "eve", NULL, 0) < 0, 1);
  tcpc_close(plain);

  /* a kick over TLS: the Kick, then the end of the stream */
  struct tcpc *again = tcp_login(f, true, "alice", "phone", 0);
  assert_int_equal(tcpc_recv_cmd(alice, MIM_CMD_KICK, TC_PUSH_MS, &p), 0);
  assert_int_equal(p.reason, MIM_KICK_OTHER_LOGIN);
  mim_packet_finish(&p);
  assert_int_equal(tcpc_wait_closed(alice, 5000, NULL), 0);
  tcpc_close(again);
  tcpc_close(alice);
  tcpc_close(bob);
  PASSED(f);
}

/* A TLS client that logs in at once and then stays quiet (less than
 * idle_timeout_s) keeps its connection: lws's own TLS timeouts (its
 * context's timeout_secs, 20 s) must not outlive the handshake. */
SETUP(tcp_tls_quiet, true, )

static void tcp_tls_quiet(void **state) {
  struct fixture *f = *state;
  struct tcpc *c = NULL;
  struct mim_packet p;
  uint8_t hb[MIM_HEADER_SIZE];
  int64_t deadline = h_mono_ms() + 10000;

  for (;;) {
    assert_int_equal(tcpc_connect(f->tcp_port, true, 0, &c), 0);
    if (tcpc_login(c, "alice", "phone", 0) == 0)
      break;
    tcpc_close(c);
    assert_true(h_mono_ms() < deadline);
    h_sleep_ms(100);
  }
  h_sleep_ms(25000);
  tc_frame(hb, MIM_CMD_HEARTBEAT_REQ, NULL, 0);
  assert_int_equal(tcpc_send(c, hb, sizeof hb), 0);
  tcp_expect(c, MIM_CMD_HEARTBEAT_RSP, 0, &p);
  mim_packet_finish(&p);
  tcpc_close(c);
  PASSED(f);
}

/* ---- frames split across reads, many frames per read ---- */

SETUP(tcp_split_frames, false, )

static void send_bytewise(struct tcpc *c, const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(tcpc_send(c, b + i, 1), 0);
    if (i % 4 == 0)
      h_sleep_ms(1); /* separate segments, separate reads */
  }
}

static void tcp_split_frames(void **state) {
  struct fixture *f = *state;
  struct tc *bob = tc_login(f->h, "bob", NULL);
  struct tcpc *c = NULL;
  struct mim_packet p;
  uint8_t buf[1024];
  size_t len;

  assert_int_equal(tcpc_connect(f->tcp_port, false, 0, &c), 0);
  /* the login, one byte per write: header and body in pieces */
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.seq = 1;
  p.token = "token";
  p.uid = "alice";
  assert_int_equal(mim_packet_encode(&p, buf, sizeof buf, &len), 0);
  send_bytewise(c, buf, len);
  tcp_expect(c, MIM_CMD_AUTH_RSP, 1, &p);
  assert_int_equal(p.status, 0);
  mim_packet_finish(&p);

  /* a send whose header comes in two pieces and whose body byte by byte */
  char content[300];
  memset(content, 'x', sizeof content - 1);
  content[sizeof content - 1] = '\0';
  mim_packet_init(&p);
  p.cmd = MIM_CMD_C2C_SEND_REQ;
  p.seq = 2;
  p.to = "bob";
  p.content = content;
  assert_int_equal(mim_packet_encode(&p, buf, sizeof buf, &len), 0);
  assert_int_equal(tcpc_send(c, buf, 5), 0);
  h_sleep_ms(50);
  assert_int_equal(tcpc_send(c, buf + 5, 7), 0);
  h_sleep_ms(50);
  send_bytewise(c, buf + 12, len - 12);
  tcp_expect(c, MIM_CMD_C2C_SEND_RSP, 2, &p);
  uint64_t id = p.msg_id;
  mim_packet_finish(&p);
  tc_push_msg(bob, MIM_CMD_C2C_PUSH, id, &p);
  assert_string_equal(p.content, content);
  mim_packet_finish(&p);

  /* 200 frames in one write, the last one cut in the middle and finished
   * by the next write */
  enum { N = 200 };
  static uint8_t many[N * 64];
  size_t at = 0;
  for (int i = 0; i < N; i++) {
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    p.seq = 100 + i;
    p.to = "bob";
    p.content = "m";
    assert_int_equal(mim_packet_encode(&p, many + at, sizeof many - at, &len),
                     0);
    at += len;
  }
  assert_int_equal(tcpc_send(c, many, at - 3), 0);
  h_sleep_ms(100);
  assert_int_equal(tcpc_send(c, many + at - 3, 3), 0);
  for (int i = 0; i < N; i++) {
    tcp_expect(c, MIM_CMD_C2C_SEND_RSP, 100 + i, &p);
    mim_packet_finish(&p);
  }
  tcpc_close(c);
  tc_free(bob);
  PASSED(f);
}

/* ---- an oversized header: Error FRAME_TOO_BIG, then the end ---- */

SETUP(tcp_oversized_header, false, )

/* Sends a header announcing `body_len` and then `junk` bytes of its body,
 * twice (the client goes on writing, as a real one would), and asserts the
 * stream then holds Error FRAME_TOO_BIG naming `cmd` and ends cleanly:
 * the FIN, not a reset that could have destroyed the Error. */
static void oversized(struct tcpc *c, uint32_t cmd, uint32_t body_len,
                      size_t junk) {
  uint8_t hdr[MIM_HEADER_SIZE];
  struct mim_header h = {.version = 0, .cmd = cmd, .body_len = body_len};
  struct mim_packet p;
  mim_header_encode(hdr, &h);
  assert_int_equal(tcpc_send(c, hdr, sizeof hdr), 0);
  uint8_t *b = calloc(1, junk ? junk : 1);
  assert_non_null(b);
  /* the server reads and drops it while closing: the write completes */
  assert_int_equal(tcpc_send(c, b, junk), 0);
  h_sleep_ms(200);
  /* and more after the server has answered: a server that closed at once
   * would answer these bytes with a reset (failing this write, and
   * possibly destroying the Error before it is read); this one reads and
   * drops them until the client ends or the close grace passes */
  assert_int_equal(tcpc_send(c, b, junk), 0);
  free(b);
  h_sleep_ms(200);
  assert_int_equal(tcpc_recv_cmd(c, MIM_CMD_ERROR, TC_REPLY_MS, &p), 0);
  assert_int_equal(p.status, E_FRAME_TOO_BIG);
  assert_int_equal(p.failed_cmd, cmd);
  mim_packet_finish(&p);
  assert_int_equal(tcpc_wait_closed(c, 5000, NULL), 0);
}

static void tcp_oversized_header(void **state) {
  struct fixture *f = *state;
  struct tcpc *c = NULL;

  /* before login: more than auth_max_body */
  assert_int_equal(tcpc_connect(f->tcp_port, false, 0, &c), 0);
  oversized(c, MIM_CMD_AUTH_REQ, 0x7fffffff, 256 * 1024);
  tcpc_close(c);
  /* after login: more than max_frame */
  c = tcp_login(f, false, "alice", NULL, 0);
  oversized(c, MIM_CMD_C2C_SEND_REQ, 65537, 256 * 1024);
  tcpc_close(c);
  PASSED(f);
}

/* ---- a slow reader: Kick SLOW and the end, others unaffected ---- */

static const char *const slow_logic_args[] = {"--rate-burst", "100000",
                                              "--rate-per-sec", "0", NULL};
static const char *const slow_gw_args[] = {"--send-queue-bytes", "262144",
                                           NULL};

static int setup_tcp_slow_reader(void **state) {
  return setup_with(state, "tcp_slow_reader", slow_logic_args, slow_gw_args,
                    false);
}

static void tcp_slow_reader(void **state) {
  struct fixture *f = *state;
  struct tcpc *sloth = NULL;
  enum { BIG = 30000 };
  char *t = malloc(BIG + 1);

  assert_non_null(t);
  memset(t, 's', BIG);
  t[BIG] = '\0';
  assert_int_equal(tcpc_connect(f->tcp_port, false, 8192, &sloth), 0);
  assert_int_equal(tcpc_login(sloth, "sloth", NULL, 0), 0);
  struct tc *filler = tc_login(f->h, "filler", NULL);
  struct tc *bob = tc_login(f->h, "bob", NULL);
  /* the sloth reads nothing from here on */
  for (int i = 0;
       i < 300 && h_log_count(f->h->gw_log, "slow consumer, closing") == 0; i++)
    tc_c2c(filler, "sloth", t, NULL, NULL);
  free(t);
  assert_int_equal(h_log_count(f->h->gw_log, "slow consumer, closing"), 1);
  /* what the sloth finally reads ends with Kick SLOW, then the stream ends
   * (within the close grace) */
  struct mim_packet p;
  assert_int_equal(tcpc_recv_cmd(sloth, MIM_CMD_KICK, 5000, &p), 0);
  assert_int_equal(p.reason, MIM_KICK_SLOW);
  mim_packet_finish(&p);
  assert_int_equal(tcpc_wait_closed(sloth, 5000, NULL), 0);
  tcpc_close(sloth);
  /* the others were never held up */
  uint64_t id = tc_c2c(filler, "bob", "still here", NULL, NULL);
  tc_push_msg(bob, MIM_CMD_C2C_PUSH, id, &p);
  mim_packet_finish(&p);
  tc_free(filler);
  tc_free(bob);
  PASSED(f);
}

/* ---- a kick: the same uid + device logs in over the websocket ---- */

SETUP(tcp_kick, false, )

static void tcp_kick(void **state) {
  struct fixture *f = *state;
  struct tcpc *alice = tcp_login(f, false, "alice", "phone", 0);
  struct mim_packet p;

  struct tc *ws = tc_login(f->h, "alice", "phone");
  assert_int_equal(tcpc_recv_cmd(alice, MIM_CMD_KICK, TC_PUSH_MS, &p), 0);
  assert_int_equal(p.reason, MIM_KICK_OTHER_LOGIN);
  assert_string_equal(p.uid, "alice");
  mim_packet_finish(&p);
  /* nothing after the Kick but the end of the stream */
  size_t after = 99;
  assert_int_equal(tcpc_wait_closed(alice, 5000, &after), 0);
  assert_int_equal(after, 0);
  tcpc_close(alice);
  /* the websocket session is the one that lives; and the other way round:
   * a TCP login of another device does not touch it */
  struct tcpc *tab = tcp_login(f, false, "alice", "tablet", 0);
  tc_barrier(ws);
  tcpc_close(tab);
  tc_free(ws);
  PASSED(f);
}

/* ---- the auth deadline ---- */

SETUP(tcp_auth_deadline, false, "--auth-timeout-ms", "500",)

static void tcp_auth_deadline(void **state) {
  struct fixture *f = *state;
  struct tcpc *c = NULL;
  struct mim_packet p;
  uint8_t hb[MIM_HEADER_SIZE];

  assert_int_equal(tcpc_connect(f->tcp_port, false, 0, &c), 0);
  int64_t t0 = h_mono_ms();
  /* a heartbeat does not extend it */
  tc_frame(hb, MIM_CMD_HEARTBEAT_REQ, NULL, 0);
  assert_int_equal(tcpc_send(c, hb, sizeof hb), 0);
  tcp_expect(c, MIM_CMD_HEARTBEAT_RSP, 0, &p);
  mim_packet_finish(&p);
  assert_int_equal(tcpc_recv_cmd(c, MIM_CMD_ERROR, 5000, &p), 0);
  assert_int_equal(p.status, E_UNAUTHENTICATED);
  mim_packet_finish(&p);
  assert_true(h_mono_ms() - t0 >= 400);
  assert_int_equal(tcpc_wait_closed(c, 5000, NULL), 0);
  tcpc_close(c);
  PASSED(f);
}

/* ---- the idle timeout: a silent TCP client is told and closed ---- */

SETUP(tcp_idle_timeout, false, "--ping-interval-s", "1", "--idle-timeout-s",
      "2",)

static void tcp_idle_timeout(void **state) {
  struct fixture *f = *state;
  struct tcpc *quiet = tcp_login(f, false, "quiet", NULL, 0);
  struct tcpc *chatty = tcp_login(f, false, "chatty", NULL, 0);
  uint8_t hb[MIM_HEADER_SIZE];
  struct mim_packet p;
  int64_t t0 = h_mono_ms();

  tc_frame(hb, MIM_CMD_HEARTBEAT_REQ, NULL, 0);
  /* 4 s: chatty sends a heartbeat every 500 ms and lives; quiet, silent
   * for more than 2 s, is closed */
  while (h_mono_ms() - t0 < 4000) {
    assert_int_equal(tcpc_send(chatty, hb, sizeof hb), 0);
    tcp_expect(chatty, MIM_CMD_HEARTBEAT_RSP, 0, &p);
    mim_packet_finish(&p);
    h_sleep_ms(500);
  }
  /* told why (Kick IDLE), then the end of the stream */
  assert_int_equal(tcpc_recv_cmd(quiet, MIM_CMD_KICK, 1000, &p), 0);
  assert_int_equal(p.reason, MIM_KICK_IDLE);
  mim_packet_finish(&p);
  assert_int_equal(tcpc_wait_closed(quiet, 1000, NULL), 0);
  assert_int_equal(tcpc_send(chatty, hb, sizeof hb), 0);
  tcp_expect(chatty, MIM_CMD_HEARTBEAT_RSP, 0, &p);
  mim_packet_finish(&p);
  tcpc_close(quiet);
  tcpc_close(chatty);
  PASSED(f);
}

/* ---- one connection cap for both listeners ---- */

SETUP(tcp_conn_caps, false, "--max-conns-per-ip", "3",)

static void tcp_conn_caps(void **state) {
  struct fixture *f = *state;
  struct tc *ws = tc_login(f->h, "a", NULL);
  struct tcpc *t1 = tcp_login(f, false, "b", NULL, 0);
  struct tcpc *t2 = tcp_login(f, false, "c", NULL, 0);
  struct tcpc *t3 = NULL;

  /* the fourth socket from 127.0.0.1, websocket or TCP, is closed at once */
  assert_int_equal(tcpc_connect(f->tcp_port, false, 0, &t3), 0);
  assert_int_equal(tcpc_wait_closed(t3, 5000, NULL), 0);
  tcpc_close(t3);
  tcpc_close(t2);
  h_sleep_ms(200);
  /* a place freed by TCP is a place for TCP again */
  t3 = tcp_login(f, false, "d", NULL, 0);
  tc_barrier(ws);
  tcpc_close(t3);
  tcpc_close(t1);
  tc_free(ws);
  PASSED(f);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(tcp_ws_chat, setup_tcp_ws_chat, teardown),
    cmocka_unit_test_setup_teardown(tcp_tls, setup_tcp_tls, teardown),
    cmocka_unit_test_setup_teardown(tcp_tls_quiet, setup_tcp_tls_quiet,
                                    teardown),
    cmocka_unit_test_setup_teardown(tcp_split_frames, setup_tcp_split_frames,
                                    teardown),
    cmocka_unit_test_setup_teardown(tcp_oversized_header,
                                    setup_tcp_oversized_header, teardown),
    cmocka_unit_test_setup_teardown(tcp_slow_reader, setup_tcp_slow_reader,
                                    teardown),
    cmocka_unit_test_setup_teardown(tcp_kick, setup_tcp_kick, teardown),
    cmocka_unit_test_setup_teardown(tcp_auth_deadline,
                                    setup_tcp_auth_deadline, teardown),
    cmocka_unit_test_setup_teardown(tcp_idle_timeout, setup_tcp_idle_timeout,
                                    teardown),
    cmocka_unit_test_setup_teardown(tcp_conn_caps, setup_tcp_conn_caps,
                                    teardown),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-tcp", tests, COUNT(tests), &WS, 0);
}
