/* gatewayd's front door against the real daemons: what an unauthenticated
 * or hostile client can make the gateway (and logicd) do.
 *
 *   test-front [NAME]   runs every test, or only the test called NAME
 *
 * Each test starts its own logicd + gatewayd with the settings it needs.
 * Where a test must show that the gateway answered something itself, it
 * stops logicd with SIGSTOP: the link stays up, so anything forwarded would
 * never be answered. Raw TCP (and a minimal hand-written websocket client)
 * stands in for clients that lws's client would never be: a slow upgrade, a
 * frame header followed by silence, a storm of sockets.
 * Exit status 77 (skipped) when the daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* Starts a fresh pair with `gw_args` (NULL-terminated) for gatewayd. */
static int setup_with(void **state, const char *name,
                      const char *const *gw_args, unsigned timeout_s) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;

  if (f == NULL)
    return -1;
  f->name = name;
  h_opts_init(&o);
  o.gatewayd_args = gw_args;
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

#define SETUP(fn, secs, ...)                                                   \
  static int setup_##fn(void **state) {                                        \
    static const char *const args[] = {__VA_ARGS__, NULL};                     \
    return setup_with(state, #fn, args, secs);                                 \
  }

/* ---- raw sockets ---- */

/* A TCP connection to 127.0.0.1:`port` from address `src` (any 127/8
 * address; NULL: the kernel's choice). Returns the fd or -errno. */
static int tcp_connect(int port, const char *src) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  if (fd < 0)
    return -errno;
  if (src != NULL) {
    struct sockaddr_in b = {.sin_family = AF_INET};

    inet_pton(AF_INET, src, &b.sin_addr);
    if (bind(fd, (struct sockaddr *)&b, sizeof(b)) != 0) {
      int e = -errno;

      close(fd);
      return e;
    }
  }
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  /* bounded: a listener that stopped accepting leaves SYNs unanswered
   * once its queue is full */
  fcntl(fd, F_SETFL, O_NONBLOCK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    struct pollfd p = {fd, POLLOUT, 0};
    int err = errno;
    socklen_t sl = sizeof(err);

    if (err == EINPROGRESS) {
      if (poll(&p, 1, 2000) <= 0)
        err = ETIMEDOUT;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl) != 0)
        err = errno;
    }
    if (err != 0) {
      close(fd);
      return -err;
    }
  }
  fcntl(fd, F_SETFL, 0);
  return fd;
}

/* Whether the peer closed `fd` within `ms` (EOF or reset); data is read
 * and dropped. */
static bool peer_closed(int fd, int ms) {
  int64_t end = h_mono_ms() + ms;

  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int64_t left = end - h_mono_ms();
    char buf[4096];
    ssize_t n;

    if (left < 0)
      left = 0;
    if (poll(&p, 1, (int)left) <= 0)
      return false;
    n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
      return true;
    if (left == 0)
      return false;
  }
}

static const char UPGRADE[] =
    "GET /ws HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";

/* A websocket connection by hand: connect and upgrade. Returns the fd. */
static int raw_ws_open(int port) {
  int fd = tcp_connect(port, NULL);
  char resp[1024];
  size_t got = 0;

  assert_true(fd >= 0);
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

/* Sends one masked websocket frame (RFC 6455 5.2). */
static void raw_ws_send(int fd, bool fin, uint8_t opcode, const uint8_t *p,
                        size_t len) {
  uint8_t hdr[14], *buf;
  size_t h = 0;
  const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};

  hdr[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
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

/* Receives one unmasked server frame's payload (at most `cap`); its length,
 * or -1. */
static long raw_ws_recv(int fd, uint8_t *out, size_t cap, int ms) {
  uint8_t h[2], ext[8];
  uint64_t len;

  if (h_recv_all(fd, h, 2, ms) != 0)
    return -1;
  len = h[1] & 0x7f;
  if (len == 126) {
    if (h_recv_all(fd, ext, 2, ms) != 0)
      return -1;
    len = (uint64_t)ext[0] << 8 | ext[1];
  } else if (len == 127) {
    if (h_recv_all(fd, ext, 8, ms) != 0)
      return -1;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | ext[i];
  }
  if (len > cap || h_recv_all(fd, out, (size_t)len, ms) != 0)
    return -1;
  return (long)len;
}

/* Logs in over a raw websocket (development auth) and returns the fd. */
static int raw_ws_login(int port, const char *uid) {
  int fd = raw_ws_open(port);
  struct mim_packet p, r;
  uint8_t buf[4096];
  size_t n;
  long got;
  struct mim_frame fr;

  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.token = "token";
  p.uid = uid;
  p.seq = 1;
  assert_int_equal(mim_packet_encode(&p, buf, sizeof(buf), &n), 0);
  raw_ws_send(fd, true, 2, buf, n);
  for (;;) {
    got = raw_ws_recv(fd, buf, sizeof(buf), 10000);
    assert_true(got >= MIM_HEADER_SIZE);
    assert_int_equal(mim_frame_decode(buf, (size_t)got, 0, &fr, &n), 0);
    if (fr.header.cmd == MIM_CMD_AUTH_RSP)
      break;
  }
  mim_packet_init(&r);
  assert_int_equal(
      mim_packet_decode(&r, MIM_CMD_AUTH_RSP, fr.body, fr.header.body_len), 0);
  assert_int_equal(r.status, 0);
  mim_packet_finish(&r);
  return fd;
}

/* Closes (and sets to -1) the sockets of `fds` the peer has closed, for up
 * to `ms` or until `want` remain open; returns how many remain. The
 * gateway refuses a socket right after accept(), but a busy machine may
 * take a moment to get to the accept. */
static int settle(int *fds, int n, int want, int ms) {
  int64_t end = h_mono_ms() + ms;
  int open;

  for (;;) {
    open = 0;
    for (int i = 0; i < n; i++) {
      if (fds[i] < 0)
        continue;
      if (peer_closed(fds[i], 0)) {
        close(fds[i]);
        fds[i] = -1;
      } else {
        open++;
      }
    }
    if (open <= want || h_mono_ms() >= end)
      return open;
    h_sleep_ms(100);
  }
}

/* A field of /proc/PID/status in kB ("VmRSS:"), or -1. */
static long proc_kb(pid_t pid, const char *field) {
  char path[64], line[256];
  long v = -1;
  FILE *fp;

  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  fp = fopen(path, "r");
  if (fp == NULL)
    return -1;
  while (fgets(line, sizeof(line), fp))
    if (strncmp(line, field, strlen(field)) == 0) {
      v = strtol(line + strlen(field), NULL, 10);
      break;
    }
  fclose(fp);
  return v;
}

/* How many times the gateway's log says its link to logicd came up. */
static int links_up(const struct harness *h) {
  char line[1024];
  int n = 0;
  FILE *fp = fopen(h->gw_log, "r");

  if (fp == NULL)
    return 0;
  while (fgets(line, sizeof(line), fp))
    if (strstr(line, "link to logicd at") && strstr(line, " up "))
      n++;
  fclose(fp);
  return n;
}

static void expect_error_seq(struct tc *c, int32_t code, uint32_t failed_cmd,
                             int64_t seq) {
  struct mim_packet rsp;
  char d[512];

  if (wsc_recv(c->ws, TC_REPLY_MS, &rsp) != 0)
    fail_msg("no answer to request seq %lld (cmd %u): %s", (long long)seq,
             failed_cmd, wsc_last_error());
  if (rsp.cmd != MIM_CMD_ERROR || rsp.status != code ||
      rsp.failed_cmd != failed_cmd || rsp.seq != seq)
    fail_msg("want Error %d for cmd %u seq %lld, got %s", code, failed_cmd,
             (long long)seq, tc_describe(&rsp, d, sizeof(d)));
  mim_packet_finish(&rsp);
}

/* ====================================================================== */

/* Before login only AUTH and HEARTBEAT reach logicd: a flood of other
 * requests is answered by the gateway, in request order, with the request's
 * seq. logicd is stopped meanwhile, so an answer can only come from the
 * gateway, and nothing waits in the link for it afterwards. */
SETUP(front_unauth_flood, 90, "--auth-timeout-ms", "60000")
static void front_unauth_flood(void **state) {
  struct fixture *f = *state;
  struct tc *x = tc_open(f->h);
  enum { N = 400 };
  static const uint32_t cmds[] = {
      MIM_CMD_PULL_REQ,         MIM_CMD_C2C_SEND_REQ, MIM_CMD_C2G_SEND_REQ,
      MIM_CMD_GROUP_CREATE_REQ, MIM_CMD_HISTORY_REQ,  MIM_CMD_LOGOUT_REQ,
      MIM_CMD_GROUP_LIST_REQ,
  };

  assert_int_equal(kill(f->h->logic_pid, SIGSTOP), 0);
  for (int i = 1; i <= N; i++) {
    struct mim_packet p;

    mim_packet_init(&p);
    p.cmd = cmds[i % (sizeof(cmds) / sizeof(cmds[0]))];
    p.seq = i;
    p.to = "someone";
    p.group = "g";
    p.content = "flood";
    p.has_after_seq = true;
    assert_int_equal(wsc_queue_packet(x->ws, &p), 0);
  }
  for (int i = 1; i <= N; i++)
    expect_error_seq(x, E_UNAUTHENTICATED,
                     cmds[i % (sizeof(cmds) / sizeof(cmds[0]))], i);
  /* a body that does not parse is MALFORMED with seq 0, as from logicd */
  {
    uint8_t frame[64], junk[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    size_t n = tc_frame(frame, MIM_CMD_PULL_REQ, junk, sizeof(junk));

    assert_int_equal(wsc_send_raw(x->ws, frame, n, true), 0);
    expect_error_seq(x, E_MALFORMED, MIM_CMD_PULL_REQ, 0);
  }
  assert_true(wsc_is_open(x->ws));
  assert_int_equal(kill(f->h->logic_pid, SIGCONT), 0);

  /* logicd, awake, had nothing of it queued: the connection logs in and
   * its first reply is the AuthResponse */
  x->seq = 100000;
  assert_int_equal(tc_auth(x, "front-flood", NULL, "token", 0), 0);
  tc_barrier(x);
  /* had any of the flood been forwarded as well, logicd's own answers to
   * it would have come after the gateway's */
  tc_assert_no_cmd(x, MIM_CMD_ERROR);
  tc_free(x);
  PASSED(f);
}

/* Server-to-client commands (and unknown ones) are refused from their
 * header: never decoded (a body that would not parse is not MALFORMED),
 * never forwarded (answered while logicd is stopped), never buffered. */
SETUP(front_server_cmds, 90, "--auth-timeout-ms", "60000")
static void front_server_cmds(void **state) {
  struct fixture *f = *state;
  static const uint32_t server_cmds[] = {
      MIM_CMD_HEARTBEAT_RSP, MIM_CMD_AUTH_RSP,         MIM_CMD_LOGOUT_RSP,
      MIM_CMD_C2C_SEND_RSP,  MIM_CMD_C2C_PUSH,         MIM_CMD_C2G_SEND_RSP,
      MIM_CMD_C2G_PUSH,      MIM_CMD_PULL_RSP,         MIM_CMD_KICK,
      MIM_CMD_ERROR,         MIM_CMD_GROUP_CREATE_RSP, MIM_CMD_GROUP_ADD_RSP,
      MIM_CMD_GROUP_REMOVE_RSP, MIM_CMD_GROUP_LIST_RSP, MIM_CMD_HISTORY_RSP,
      MIM_CMD_SERVER_PUSH,   MIM_CMD_CONV_LIST_RSP,    MIM_CMD_MARK_READ_RSP,
      MIM_CMD_READ_SYNC,     MIM_CMD_READ_RECEIPT,     MIM_CMD_READ_BY_RSP,
      MIM_CMD_DELIVERED,     MIM_CMD_MSG_CHANGE_RSP,   MIM_CMD_MSG_CHANGED,
      MIM_CMD_TYPING,        MIM_CMD_PRESENCE_RSP,     MIM_CMD_PRESENCE,
      MIM_CMD__COUNT,        999,
  };
  const size_t n_cmds = sizeof(server_cmds) / sizeof(server_cmds[0]);
  struct tc *x = tc_login(f->h, "front-srv", NULL);
  struct tc *y = tc_open(f->h);
  size_t big = 60000;
  uint8_t *frame = malloc(MIM_HEADER_SIZE + big);

  assert_non_null(frame);
  assert_int_equal(kill(f->h->logic_pid, SIGSTOP), 0);
  uint8_t *junk = malloc(big);

  assert_non_null(junk);
  memset(junk, 0xff, big); /* not protobuf: decoding it would fail */
  for (size_t i = 0; i < n_cmds; i++) {
    size_t n;

    n = tc_frame(frame, server_cmds[i], junk, big);
    assert_int_equal(wsc_queue_raw(x->ws, frame, n, true), 0);
    /* before login too (small bodies: the pre-login cap comes first) */
    n = tc_frame(frame, server_cmds[i], junk, 100);
    assert_int_equal(wsc_queue_raw(y->ws, frame, n, true), 0);
  }
  for (size_t i = 0; i < n_cmds; i++) {
    int32_t code = server_cmds[i] == MIM_CMD_SERVER_PUSH ? E_FORBIDDEN
                                                         : E_UNKNOWN_CMD;

    expect_error_seq(x, code, server_cmds[i], 0);
    expect_error_seq(y, code, server_cmds[i], 0);
  }
  assert_true(wsc_is_open(x->ws));
  assert_true(wsc_is_open(y->ws));
  assert_int_equal(kill(f->h->logic_pid, SIGCONT), 0);
  tc_barrier(x);
  tc_barrier(y);
  /* nothing was forwarded: logicd, awake, answers none of it */
  tc_assert_no_cmd(x, MIM_CMD_ERROR);
  tc_assert_no_cmd(y, MIM_CMD_ERROR);
  tc_free(x);
  tc_free(y);
  free(frame);
  free(junk);
  PASSED(f);
}

/* The AuthRequest body, and any frame before login, is capped at
 * auth_max_body (4096 by default): larger is FRAME_TOO_BIG and a close
 * (1009), without reaching logicd. */
SETUP(front_auth_cap, 90, "--auth-timeout-ms", "60000")
static void front_auth_cap(void **state) {
  struct fixture *f = *state;
  static char token[6000];
  struct mim_packet p, rsp;
  int code = 0;

  memset(token, 'a', sizeof(token) - 1);

  /* just under the cap: logicd answers (a bad uid: refused) */
  {
    struct tc *x = tc_open(f->h);

    token[3900] = '\0';
    mim_packet_init(&p);
    p.cmd = MIM_CMD_AUTH_REQ;
    p.token = token;
    p.uid = "bad uid";
    p.seq = 1;
    assert_int_equal(wsc_send_packet(x->ws, &p), 0);
    assert_int_equal(wsc_recv(x->ws, TC_REPLY_MS, &rsp), 0);
    assert_int_equal(rsp.cmd, MIM_CMD_AUTH_RSP);
    assert_int_not_equal(rsp.status, 0);
    mim_packet_finish(&rsp);
    tc_free(x);
    token[3900] = 'a';
  }
  /* over it: an AuthRequest, a pull before login, an AuthRequest after */
  for (int k = 0; k < 3; k++) {
    struct tc *x = k == 2 ? tc_login(f->h, "front-cap", NULL) : tc_open(f->h);
    uint32_t cmd = k == 1 ? MIM_CMD_PULL_REQ : MIM_CMD_AUTH_REQ;

    token[5000] = '\0';
    mim_packet_init(&p);
    p.cmd = cmd;
    p.token = token;
    p.uid = token; /* PullRequest.uid: the seed's field, ignored */
    p.seq = 7;
    assert_int_equal(wsc_send_packet(x->ws, &p), 0);
    assert_int_equal(wsc_recv(x->ws, TC_REPLY_MS, &rsp), 0);
    if (rsp.cmd != MIM_CMD_ERROR || rsp.status != E_FRAME_TOO_BIG ||
        rsp.failed_cmd != cmd) {
      char d[512];

      fail_msg("case %d: want FRAME_TOO_BIG, got %s", k,
               tc_describe(&rsp, d, sizeof(d)));
    }
    mim_packet_finish(&rsp);
    assert_int_equal(wsc_wait_closed(x->ws, 5000, &code), 0);
    assert_int_equal(code, 1009);
    tc_free(x);
    token[5000] = 'a';
  }
  PASSED(f);
}

/* A frame header announcing a large body, then silence: the gateway holds
 * only what arrived. 40 authenticated connections each announce 8 MiB and
 * send 100 bytes; allocating at the header's word would map 320 MiB. */
SETUP(front_huge_header, 120, "--max-frame", "8388608", "--rate-bytes-burst",
      "16777216", "--auth-timeout-ms", "60000")
static void front_huge_header(void **state) {
  struct fixture *f = *state;
  enum { N = 40 };
  int fds[N];
  long data0, rss0, data1, rss1;
  uint8_t piece[MIM_HEADER_SIZE + 100];
  struct mim_header hd = {0, MIM_CMD_C2C_SEND_REQ, 8u << 20};
  char uid[32];

  for (int i = 0; i < N; i++) {
    snprintf(uid, sizeof(uid), "front-huge-%d", i);
    fds[i] = raw_ws_login(f->h->gw_port, uid);
  }
  h_sleep_ms(300);
  data0 = proc_kb(f->h->gw_pid, "VmData:");
  rss0 = proc_kb(f->h->gw_pid, "VmRSS:");
  assert_true(data0 > 0 && rss0 > 0);

  mim_header_encode(piece, &hd);
  memset(piece + MIM_HEADER_SIZE, 0, 100);
  for (int i = 0; i < N; i++)
    raw_ws_send(fds[i], false, 2, piece, sizeof(piece)); /* FIN 0: more due */
  h_sleep_ms(1000);
  data1 = proc_kb(f->h->gw_pid, "VmData:");
  rss1 = proc_kb(f->h->gw_pid, "VmRSS:");
  printf("gatewayd with %d connections each announcing 8 MiB: VmData %ld -> "
         "%ld kB, VmRSS %ld -> %ld kB\n",
         N, data0, data1, rss0, rss1);
  /* the connections are still open: nothing was refused, only not
   * allocated */
  for (int i = 0; i < N; i++)
    assert_false(peer_closed(fds[i], 0));
  assert_true(data1 - data0 < 16 * 1024);
  assert_true(rss1 - rss0 < 16 * 1024);
  for (int i = 0; i < N; i++)
    close(fds[i]);
  PASSED(f);
}

/* A TCP connection that does not complete the websocket upgrade within
 * handshake_timeout_s (2 here) is closed, whether it is silent or trickles
 * its request a byte at a time; lws alone would give it 5 s of silence and
 * then 10 s per header table. Websocket connections are not affected. */
SETUP(front_slow_upgrade, 90, "--handshake-timeout-s", "2")
static void front_slow_upgrade(void **state) {
  struct fixture *f = *state;
  int silent = tcp_connect(f->h->gw_port, NULL);
  int slow = tcp_connect(f->h->gw_port, NULL);
  int64_t t0 = h_mono_ms(), closed_silent = -1, closed_slow = -1;
  size_t sent = 0;
  struct tc *ok = tc_login(f->h, "front-slow-ok", NULL);

  assert_true(silent >= 0 && slow >= 0);
  /* bounded: 8 s at most */
  while (h_mono_ms() - t0 < 8000 && (closed_silent < 0 || closed_slow < 0)) {
    if (closed_slow < 0 && sent < sizeof(UPGRADE) - 1) {
      if (h_send_all(slow, UPGRADE + sent, 1) == 0)
        sent++;
    }
    if (closed_silent < 0 && peer_closed(silent, 0))
      closed_silent = h_mono_ms() - t0;
    if (closed_slow < 0 && peer_closed(slow, 0))
      closed_slow = h_mono_ms() - t0;
    h_sleep_ms(200);
  }
  printf("closed after: silent %lld ms, trickling %lld ms (%zu bytes sent)\n",
         (long long)closed_silent, (long long)closed_slow, sent);
  assert_true(closed_silent >= 1500 && closed_silent <= 4500);
  assert_true(closed_slow >= 1500 && closed_slow <= 4500);
  close(silent);
  close(slow);
  /* the websocket that upgraded at once is past the deadline and fine */
  tc_barrier(ok);
  assert_true(wsc_is_open(ok->ws));
  tc_free(ok);
  PASSED(f);
}

/* A storm of sockets from one address, then from several: at most
 * max_conns_per_ip from each and max_conns in all stay open; the rest are
 * closed at once. Closing one makes room for one. */
SETUP(front_conn_caps, 90, "--max-conns-per-ip", "5", "--max-conns", "8",
      "--handshake-timeout-s", "60")
static void front_conn_caps(void **state) {
  struct fixture *f = *state;
  enum { STORM = 30 };
  int a[STORM], b[STORM], c, open_a = 0, open_b = 0;

  h_sleep_ms(300); /* the harness's link probe has closed */

  for (int i = 0; i < STORM; i++) {
    a[i] = tcp_connect(f->h->gw_port, "127.0.0.1");
    assert_true(a[i] >= 0);
  }
  open_a = settle(a, STORM, 5, 5000);
  printf("storm from 127.0.0.1: %d of %d kept\n", open_a, STORM);
  assert_int_equal(open_a, 5);

  /* another address has its own 5, but the total stops at 8 */
  for (int i = 0; i < STORM; i++) {
    b[i] = tcp_connect(f->h->gw_port, "127.0.0.2");
    assert_true(b[i] >= 0);
  }
  open_b = settle(b, STORM, 3, 5000);
  printf("then from 127.0.0.2: %d of %d kept\n", open_b, STORM);
  assert_int_equal(open_b, 3);
  c = tcp_connect(f->h->gw_port, "127.0.0.3");
  assert_true(c >= 0);
  assert_true(peer_closed(c, 2000));
  close(c);

  /* one closes: one more fits */
  for (int i = 0; i < STORM; i++)
    if (a[i] >= 0) {
      close(a[i]);
      a[i] = -1;
      break;
    }
  h_sleep_ms(300);
  c = tcp_connect(f->h->gw_port, "127.0.0.3");
  assert_true(c >= 0);
  assert_false(peer_closed(c, 500));
  close(c);

  for (int i = 0; i < STORM; i++) {
    if (a[i] >= 0)
      close(a[i]);
    if (b[i] >= 0)
      close(b[i]);
  }
  h_sleep_ms(300);
  /* all gone: a websocket client logs in */
  tc_free(tc_login(f->h, "front-caps", NULL));
  PASSED(f);
}

/* gatewayd at its open-file limit (RLIMIT_NOFILE 200 here): clients fill
 * it up to fd_reserve, the next are refused at once (not left in the
 * listen queue while accept() fails), and the descriptors kept free let the
 * link to a restarted logicd come back while clients keep knocking. */
#define FD_LIMIT 200
static int setup_front_fd_limit(void **state) {
  static const char *const args[] = {
      "--fd-reserve",       "32",    "--max-conns-per-ip",  "0",
      "--handshake-timeout-s", "120", "--auth-timeout-ms", "120000", NULL};
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;
  struct rlimit old, low;
  int r;

  if (f == NULL)
    return -1;
  f->name = "front_fd_limit";
  h_watchdog(60, f->name);
  h_opts_init(&o);
  o.gatewayd_args = args;
  if (h_create(&f->h, WS, &o) != 0 || h_start_logicd(f->h) != 0)
    goto fail;
  /* the gateway inherits the limit at fork; this process keeps its own */
  getrlimit(RLIMIT_NOFILE, &old);
  low = old;
  low.rlim_cur = FD_LIMIT;
  if (setrlimit(RLIMIT_NOFILE, &low) != 0)
    goto fail;
  r = h_start_gatewayd(f->h);
  setrlimit(RLIMIT_NOFILE, &old);
  if (r != 0 || h_wait_linked(f->h, 10000) != 0)
    goto fail;
  *state = f;
  h_watchdog(150, f->name);
  return 0;
fail:
  h_destroy(f->h);
  free(f);
  return -1;
}

static void front_fd_limit(void **state) {
  struct fixture *f = *state;
  enum { MAX = 2 * FD_LIMIT };
  static int fds[MAX];
  int n = 0, kept = 0, refused = 0, links;

  /* batches of 20 until some are refused (bounded: 2 x the limit) */
  while (n < MAX && refused == 0) {
    int start = n;

    for (int i = 0; i < 20 && n < MAX; i++) {
      fds[n] = tcp_connect(f->h->gw_port, NULL);
      if (fds[n] < 0)
        fail_msg("connection %d: %s (not accepted, not refused)", n,
                 strerror(-fds[n]));
      n++;
    }
    h_sleep_ms(300);
    for (int i = start; i < n; i++) {
      if (peer_closed(fds[i], 0)) {
        close(fds[i]);
        fds[i] = -1;
        refused++;
      } else {
        kept++;
      }
    }
  }
  /* sockets the gateway had not got to yet when looked at count too */
  kept = settle(fds, n, 0, 1000);
  printf("limit %d, fd_reserve 32: %d connection(s) kept, then refused\n",
         FD_LIMIT, kept);
  assert_true(refused > 0);
  assert_true(kept >= FD_LIMIT - 32 - 40 && kept <= FD_LIMIT - 32);

  /* logicd dies; clients keep knocking while it is away */
  links = links_up(f->h);
  assert_int_equal(h_stop_logicd(f->h, SIGKILL), 0);
  for (int i = 0; i < 20; i++) {
    int fd = tcp_connect(f->h->gw_port, NULL);

    assert_true(fd >= 0);
    assert_true(peer_closed(fd, 2000)); /* refused: no room */
    close(fd);
  }
  assert_int_equal(h_start_logicd(f->h), 0);
  {
    int64_t end = h_mono_ms() + 15000;

    while (links_up(f->h) <= links && h_mono_ms() < end)
      h_sleep_ms(100);
  }
  assert_true(links_up(f->h) > links);

  /* some clients leave: a fresh one logs in through the new link */
  for (int i = 0, closed = 0; i < n && closed < 10; i++)
    if (fds[i] >= 0) {
      close(fds[i]);
      fds[i] = -1;
      closed++;
    }
  h_sleep_ms(300);
  {
    struct tc *x = tc_login(f->h, "front-fd", NULL);

    tc_barrier(x);
    tc_free(x);
  }
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  PASSED(f);
}

/* Requests per connection: a burst of 20, then 5/s. A pipelined burst of
 * 40 heartbeats gets 20 answers (give or take the refill) and then
 * RATE_LIMITED, in order; going on regardless (more than 30 refusals in
 * 10 s) is Kick SLOW and a close. */
SETUP(front_rate_requests, 90, "--rate-requests-per-s", "5",
      "--rate-requests-burst", "20", "--rate-strikes", "30")
static void front_rate_requests(void **state) {
  struct fixture *f = *state;
  struct tc *x = tc_login(f->h, "front-rate", NULL);
  struct mim_packet hb, rsp;
  int ok = 0, limited = 0, code = 0;
  bool kicked = false;

  mim_packet_init(&hb);
  hb.cmd = MIM_CMD_HEARTBEAT_REQ;
  for (int i = 0; i < 40; i++)
    assert_int_equal(wsc_queue_packet(x->ws, &hb), 0);
  for (int i = 0; i < 40; i++) {
    char d[512];

    assert_int_equal(wsc_recv(x->ws, TC_REPLY_MS, &rsp), 0);
    if (rsp.cmd == MIM_CMD_HEARTBEAT_RSP) {
      if (limited > 0)
        fail_msg("a heartbeat answered after a RATE_LIMITED one");
      ok++;
    } else if (rsp.cmd == MIM_CMD_ERROR && rsp.status == E_RATE_LIMITED &&
               rsp.retryable && rsp.failed_cmd == MIM_CMD_HEARTBEAT_REQ) {
      limited++;
    } else {
      fail_msg("unexpected %s", tc_describe(&rsp, d, sizeof(d)));
    }
    mim_packet_finish(&rsp);
  }
  printf("40 pipelined heartbeats: %d answered, %d RATE_LIMITED\n", ok,
         limited);
  /* the login took one token */
  assert_true(ok >= 18 && ok <= 25);
  assert_true(wsc_is_open(x->ws));

  /* the bucket refills: one more passes after a pause */
  h_sleep_ms(1000);
  tc_barrier(x);

  for (int i = 0; i < 40; i++)
    if (wsc_queue_packet(x->ws, &hb) != 0)
      break;
  for (;;) {
    if (wsc_recv(x->ws, 5000, &rsp) != 0)
      break;
    if (rsp.cmd == MIM_CMD_KICK) {
      assert_int_equal(rsp.reason, MIM_KICK_SLOW);
      kicked = true;
    }
    mim_packet_finish(&rsp);
  }
  assert_true(kicked);
  assert_int_equal(wsc_wait_closed(x->ws, 5000, &code), 0);
  assert_int_equal(code, 1008);
  tc_free(x);
  PASSED(f);
}

/* Bytes per connection: a burst of 20,000, then 10,000/s. Five pipelined
 * 6,000-byte sends: three fit, the next two are RATE_LIMITED (with their
 * seq, retryable); after a pause sends pass again. */
SETUP(front_rate_bytes, 90, "--rate-bytes-per-s", "10000",
      "--rate-bytes-burst", "20000", "--max-frame", "16384")
static void front_rate_bytes(void **state) {
  struct fixture *f = *state;
  struct tc *x = tc_login(f->h, "front-bytes", NULL);
  struct tc *y = tc_login(f->h, "front-bytes-to", NULL);
  static char content[6001];
  struct mim_packet p, rsp;
  int64_t first;
  char d[512];

  memset(content, 'b', sizeof(content) - 1);
  first = x->seq + 1;
  for (int i = 0; i < 5; i++) {
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    p.to = "front-bytes-to";
    p.content = content;
    p.seq = ++x->seq;
    assert_int_equal(wsc_queue_packet(x->ws, &p), 0);
  }
  for (int i = 0; i < 5; i++) {
    assert_int_equal(wsc_recv_cmd(x->ws, i < 3 ? MIM_CMD_C2C_SEND_RSP
                                               : MIM_CMD_ERROR,
                                  TC_REPLY_MS, &rsp),
                     0);
    if (i < 3) {
      tc_expect_cmd(&rsp, MIM_CMD_C2C_SEND_RSP);
    } else if (rsp.status != E_RATE_LIMITED || !rsp.retryable) {
      fail_msg("send %d: want RATE_LIMITED, got %s", i,
               tc_describe(&rsp, d, sizeof(d)));
    }
    assert_int_equal(rsp.seq, first + i);
    mim_packet_finish(&rsp);
  }
  /* the debt is paid back at 10,000/s */
  h_sleep_ms(2500);
  tc_c2c(x, "front-bytes-to", content, NULL, NULL);
  tc_free(x);
  tc_free(y);
  PASSED(f);
}

/* ====================================================================== */

/* Each websocket fragment costs gatewayd a callback and a reassembly step
 * whatever its size, so tiny messages are charged at least
 * GW_RX_PIECE_COST bytes: 200 heartbeats sent one byte per websocket
 * fragment are 2,400 bytes (inside the 20,000-byte burst) but 2,400
 * pieces, and most must be refused RATE_LIMITED. */
SETUP(front_tiny_ws_pieces, 90, "--rate-bytes-per-s", "10000",
      "--rate-bytes-burst", "20000", "--max-frame", "16384",
      "--rate-strikes", "100000")
static void front_tiny_ws_pieces(void **state) {
  struct fixture *f = *state;
  int fd = raw_ws_login(f->h->gw_port, "front-tiny");
  uint8_t buf[4096];
  size_t n;
  enum { FRAMES = 200 };
  for (int i = 0; i < FRAMES; i++) {
    struct mim_packet p;
    mim_packet_init(&p);
    p.cmd = MIM_CMD_HEARTBEAT_REQ;
    p.seq = 100 + i;
    assert_int_equal(mim_packet_encode(&p, buf, sizeof buf, &n), 0);
    /* one websocket message per frame, one byte per fragment */
    for (size_t j = 0; j < n; j++)
      raw_ws_send(fd, j + 1 == n, j == 0 ? 2 : 0, buf + j, 1);
  }
  int ok = 0, limited = 0;
  while (ok + limited < FRAMES) {
    struct mim_frame fr;
    size_t used;
    long got = raw_ws_recv(fd, buf, sizeof buf, 10000);
    if (got < 0)
      break;
    if (got < MIM_HEADER_SIZE ||
        mim_frame_decode(buf, (size_t)got, 0, &fr, &used) != 0)
      continue;
    if (fr.header.cmd == MIM_CMD_HEARTBEAT_RSP)
      ok++;
    else if (fr.header.cmd == MIM_CMD_ERROR) {
      struct mim_packet e;
      mim_packet_init(&e);
      assert_int_equal(
          mim_packet_decode(&e, MIM_CMD_ERROR, fr.body, fr.header.body_len),
          0);
      if (e.status != E_RATE_LIMITED)
        fail_msg("want RATE_LIMITED, got status %d", (int)e.status);
      mim_packet_finish(&e);
      limited++;
    }
  }
  fprintf(stderr, "[front_tiny_ws_pieces] %d answered, %d refused\n",
          ok, limited);
  assert_true(limited > FRAMES / 2);
  close(fd);
  PASSED(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

static const struct CMUnitTest tests[] = {
    T(front_unauth_flood), T(front_server_cmds),  T(front_auth_cap),
    T(front_huge_header),  T(front_slow_upgrade), T(front_conn_caps),
    T(front_fd_limit),     T(front_rate_requests), T(front_rate_bytes),
    T(front_tiny_ws_pieces),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-front", tests, COUNT(tests), &WS, 0);
}
