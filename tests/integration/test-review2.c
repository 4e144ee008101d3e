/* Attacker review of the front door and the bounds (docs/security.md):
 * regressions for what the review found, one meson test per case. The
 * fixture and raw websocket helpers are those of test-front.c.
 * Exit status 77 (skipped) when the daemons are not built. */
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
#include <sys/wait.h>
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

static int64_t mono_ms(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

  nanosleep(&ts, NULL);
}

/* Starts a fresh pair with `gw_args` (NULL-terminated) for gatewayd. */
static int setup_with(void **state, const char *name,
                      const char *const *gw_args, unsigned timeout_s) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;

  if (f == NULL)
    return -1;
  f->name = name;
  h_watchdog(60, name);
  h_opts_init(&o);
  o.gatewayd_args = gw_args;
  if (h_create(&f->h, WS, &o) != 0 || h_start(f->h) != 0) {
    h_destroy(f->h);
    free(f);
    return -1;
  }
  *state = f;
  h_watchdog(timeout_s, name);
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = 0;

  h_watchdog(60, f != NULL ? f->name : "teardown");
  tc_free_all();
  if (f == NULL) {
    h_watchdog(0, NULL);
    return 0;
  }
  if (f->h != NULL) {
    if (f->h->logic_pid > 0)
      kill(f->h->logic_pid, SIGCONT); /* a test that failed while stopped */
    if (f->h->gw_pid > 0 && !h_gatewayd_alive(f->h)) {
      fprintf(stderr, "[%s] gatewayd died during the test\n", f->name);
      r = -1;
    }
    if (!f->passed || r != 0) {
      fprintf(stderr, "[%s] failed; daemon logs follow\n", f->name);
      h_dump_logs(f->h);
    }
    if (f->passed && f->h->gw_pid > 0 && h_stop_gatewayd(f->h, SIGTERM) != 0)
      r = -1;
    h_destroy(f->h);
  }
  free(f);
  *state = NULL;
  h_watchdog(0, NULL);
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
  int64_t end = mono_ms() + ms;

  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int64_t left = end - mono_ms();
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

static int send_all(int fd, const void *p, size_t len) {
  const uint8_t *b = p;

  while (len > 0) {
    ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    b += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads exactly `len` bytes within `ms`. */
static int recv_all(int fd, void *p, size_t len, int ms) {
  uint8_t *b = p;
  int64_t end = mono_ms() + ms;

  while (len > 0) {
    struct pollfd q = {fd, POLLIN, 0};
    int64_t left = end - mono_ms();
    ssize_t n;

    if (left <= 0 || poll(&q, 1, (int)left) <= 0)
      return -ETIMEDOUT;
    n = recv(fd, b, len, 0);
    if (n == 0)
      return -ECONNRESET;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      return -errno;
    }
    b += n;
    len -= (size_t)n;
  }
  return 0;
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
  assert_int_equal(send_all(fd, UPGRADE, sizeof(UPGRADE) - 1), 0);
  while (got < sizeof(resp) - 1) {
    if (recv_all(fd, resp + got, 1, 5000) != 0)
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
  assert_int_equal(send_all(fd, buf, h + len), 0);
  free(buf);
}

/* Receives one unmasked server frame's payload (at most `cap`); its length,
 * or -1. */
static long raw_ws_recv(int fd, uint8_t *out, size_t cap, int ms) {
  uint8_t h[2], ext[8];
  uint64_t len;

  if (recv_all(fd, h, 2, ms) != 0)
    return -1;
  len = h[1] & 0x7f;
  if (len == 126) {
    if (recv_all(fd, ext, 2, ms) != 0)
      return -1;
    len = (uint64_t)ext[0] << 8 | ext[1];
  } else if (len == 127) {
    if (recv_all(fd, ext, 8, ms) != 0)
      return -1;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = len << 8 | ext[i];
  }
  if (len > cap || recv_all(fd, out, (size_t)len, ms) != 0)
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

/* Runs logicd with `extra` flags; returns its exit status (124: it was
 * still running after 10 s, i.e. it accepted the settings; --help exits
 * before the settings are checked) and its output in `out`. */
static int run_logicd(const char *extra, char *out, size_t cap) {
  char dir[] = "/tmp/mim-review2-XXXXXX", cmd[1024];
  assert_non_null(mkdtemp(dir));
  snprintf(cmd, sizeof cmd,
           "timeout 10 '%s' --dev-auth --listen 127.0.0.1:0 --data-dir %s/d %s "
           "2>&1 </dev/null",
           h_logicd_path(), dir, extra);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A GroupListResponse lists the whole group and is not cut by
 * reply_bytes_max: with 100,000 members of 128-byte ids it is ~13 MB. One
 * GROUP_LIST read after the pause mark must still fit under
 * rpc_queue_max, or one member of a big group cuts the link every user of
 * the gateway shares. Such settings are refused at start-up. */
static void group_list_bound_is_checked(void **state) {
  struct fixture *f = *state;
  h_watchdog(60, "group_list_bound_is_checked");
  char out[8192];
  assert_int_equal(run_logicd("--rpc-queue-max-mb 8 --rpc-queue-pause-kb 4096 "
                              "--group-members-max 100000",
                              out, sizeof out),
                   2);
  assert_non_null(strstr(out, "group_members_max"));
  /* 20,000 members (~2.6 MB) fit the same queue */
  assert_int_equal(run_logicd("--rpc-queue-max-mb 8 --rpc-queue-pause-kb 4096 "
                              "--group-members-max 20000",
                              out, sizeof out),
                   124);
  PASSED(f);
}


/* Each websocket fragment costs gatewayd a callback and a reassembly step
 * whatever its size, so tiny messages are charged at least
 * GW_RX_PIECE_COST bytes: 200 heartbeats sent one byte per websocket
 * fragment are 2,400 bytes (inside the 20,000-byte burst) but 2,400
 * pieces, and most must be refused RATE_LIMITED. */
SETUP(tiny_ws_messages_cost_bytes, 90, "--rate-bytes-per-s", "10000",
      "--rate-bytes-burst", "20000", "--max-frame", "16384",
      "--rate-strikes", "100000")
static void tiny_ws_messages_cost_bytes(void **state) {
  struct fixture *f = *state;
  int fd = raw_ws_login(f->h->gw_port, "review2-tiny");
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
  fprintf(stderr, "[tiny_ws_messages_cost_bytes] %d answered, %d refused\n",
          ok, limited);
  assert_true(limited > FRAMES / 2);
  close(fd);
  PASSED(f);
}

static int setup_group_list_bound_is_checked(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  if (f == NULL)
    return -1;
  f->name = "group_list_bound_is_checked";
  h_watchdog(60, f->name);
  *state = f;
  return 0;
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

static const struct CMUnitTest tests[] = {
    T(group_list_bound_is_checked),
    T(tiny_ws_messages_cost_bytes),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  struct CMUnitTest sel[COUNT(tests)];
  size_t n = 0;
  for (size_t i = 0; i < COUNT(tests); i++)
    if (only == NULL || strcmp(tests[i].name, only) == 0)
      sel[n++] = tests[i];
  if (n == 0) {
    fprintf(stderr, "no test named '%s'\n", only);
    return 2;
  }
  if (!h_daemons_built()) {
    printf("SKIP: daemons not built\n");
    return 77;
  }
  (void)sleep_ms; /* helpers shared with test-front.c */
  (void)peer_closed;
  signal(SIGPIPE, SIG_IGN);
  if (wsc_ctx_create(&WS) != 0)
    return 1;
  int failed = _cmocka_run_group_tests("review2", sel, n, NULL, NULL);
  wsc_ctx_destroy(WS);
  return failed == 0 ? 0 : 1;
}
