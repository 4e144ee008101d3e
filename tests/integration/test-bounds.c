/* Bounded work per request and per connection, against the real daemons
 * (docs/security.md §4): a pull or history reply is capped in bytes,
 * pipelined full pulls neither blow up logicd's memory nor cut the gateway
 * link every user shares, logicd stops reading a link whose output is
 * above its pause mark, a link that does not read at all is cut at
 * rpc_queue_max_mb and may come back, and the per-connection limits (BUSY
 * at conn_pending_max, the kick at twice that, gatewayd's slow-consumer
 * kick) hold.
 *
 *   test-bounds [NAME]   runs every test, or only the test called NAME
 *
 * Every test starts its own daemons. Some talk to logicd as a gateway
 * would, over a raw RPC socket (rawgw below), to be a gateway that does
 * not read. Exit status 77 (skipped) when the daemons are not built.
 */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mim/codec.h>
#include <mim/common.h>
#include <mim/rpc.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

#define REPLY_CAP (512 * 1024) /* logicd's default reply_bytes_max */
#define BIG 30000              /* bytes of content per message */

/* ---- fixtures ---- */

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
};

#define PASSED(f) ((f)->passed = true)

static int setup_with(void **state, const char *name,
                      const char *const *logicd_args,
                      const char *const *gatewayd_args) {
  struct fixture *f = calloc(1, sizeof *f);
  struct h_opts o;
  if (f == NULL)
    return -1;
  f->name = name;
  /* these cases load logicd through one connection on purpose: the
   * gateway's per-connection rate limits (test-front.c) stay out of it */
  static const char *gw_args[32] = {"--rate-requests-per-s", "0",
                                    "--rate-bytes-per-s", "0"};
  size_t n = 4;
  for (size_t i = 0; gatewayd_args != NULL && gatewayd_args[i] != NULL &&
                     n < sizeof gw_args / sizeof *gw_args - 1;
       i++)
    gw_args[n++] = gatewayd_args[i];
  h_opts_init(&o);
  o.logicd_args = logicd_args;
  o.gatewayd_args = gw_args;
  if (h_begin(&f->h, WS, &o, name, 90) != 0) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  int r = f != NULL ? h_finish(f->h, f->name, f->passed, 0)
                    : h_finish(NULL, NULL, false, 0);

  free(f);
  *state = NULL;
  return r;
}

/* ---- helpers ---- */

/* logicd's peak resident set (VmHWM), KiB; -1 if unreadable. */
static long vm_hwm_kb(pid_t pid) {
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return -1;
  while (fgets(line, sizeof line, fp) != NULL)
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
      break;
  fclose(fp);
  return kb;
}

static char *big_text(char c) {
  char *t = malloc(BIG + 1);
  assert_non_null(t);
  memset(t, c, BIG);
  t[BIG] = '\0';
  return t;
}

/* `n` messages of BIG bytes from `from` to `to`, each acknowledged. */
static void fill_inbox(struct tc *from, const char *to, int n) {
  for (int i = 0; i < n; i++) {
    char *t = big_text((char)('a' + i % 26));
    tc_c2c(from, to, t, NULL, NULL);
    free(t);
  }
}

/* Sends a PULL (after_seq 0, `limit`) without waiting for its reply. */
static void queue_pull(struct tc *c, int32_t limit) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_PULL_REQ;
  p.seq = ++c->seq;
  p.has_after_seq = true;
  p.after_seq = 0;
  p.limit = limit;
  assert_int_equal(wsc_queue_packet(c->ws, &p), 0);
}

/* carol sends bob a message; bob must have it within `ms`. Returns the
 * time it took. */
static int64_t witness(struct tc *carol, struct tc *bob, const char *text,
                       int64_t ms) {
  int64_t t0 = h_mono_ms();
  uint64_t id = tc_c2c(carol, bob->uid, text, NULL, NULL);
  struct mim_packet p;
  mim_packet_init(&p);
  int64_t left = ms;
  for (;;) {
    int r = wsc_recv_cmd(bob->ws, MIM_CMD_C2C_PUSH, (int)left, &p);
    assert_int_equal(r, 0);
    bool hit = p.msg_id == id;
    mim_packet_finish(&p);
    if (hit)
      break;
    left = ms - (h_mono_ms() - t0);
    assert_true(left > 0);
  }
  return h_mono_ms() - t0;
}

/* ---- a raw RPC gateway: says HELLO, then does what the test says ---- */

struct rawgw {
  int fd;
  struct mim_stream_decoder *dec;
};

static int raw_write(struct rawgw *g, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(g->fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int raw_send(struct rawgw *g, const struct mim_rpc *r) {
  size_t need = mim_rpc_encoded_size(r), len;
  uint8_t *buf = malloc(need);
  assert_non_null(buf);
  assert_int_equal(mim_rpc_encode(r, buf, need, &len), 0);
  int rc = raw_write(g, buf, len);
  free(buf);
  return rc;
}

/* Encodes `p` as a REQUEST of connection `conn` into `out` (appended). */
static void raw_request_frame(uint64_t conn, const struct mim_packet *p,
                              uint8_t **out, size_t *len) {
  uint8_t body[256];
  size_t blen;
  assert_int_equal(mim_packet_encode_body(p, body, sizeof body, &blen), 0);
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_REQUEST;
  r.conn_id = conn;
  r.version = MIM_PROTOCOL_VERSION;
  r.inner_cmd = p->cmd;
  r.body = body;
  r.body_len = blen;
  size_t need = mim_rpc_encoded_size(&r), n;
  uint8_t *b = realloc(*out, *len + need);
  assert_non_null(b);
  assert_int_equal(mim_rpc_encode(&r, b + *len, need, &n), 0);
  *out = b;
  *len += n;
}

/* The next frame from logicd into `out` (to finish). Errors: -ETIMEDOUT,
 * -ENOTCONN (closed). */
static int raw_recv(struct rawgw *g, int timeout_ms, struct mim_rpc *out) {
  int64_t end = h_mono_ms() + timeout_ms;
  for (;;) {
    struct mim_frame fr;
    int rc = mim_stream_decoder_next(g->dec, &fr);
    if (rc == 0) {
      mim_rpc_init(out);
      assert_int_equal(
          mim_rpc_decode(out, fr.header.cmd, fr.body, fr.header.body_len), 0);
      out->cmd = fr.header.cmd;
      return 0;
    }
    assert_int_equal(rc, -EAGAIN);
    int64_t left = end - h_mono_ms();
    if (left <= 0)
      return -ETIMEDOUT;
    struct pollfd pfd = {.fd = g->fd, .events = POLLIN};
    if (poll(&pfd, 1, (int)left) <= 0)
      continue;
    uint8_t buf[65536];
    ssize_t n = read(g->fd, buf, sizeof buf);
    if (n <= 0)
      return -ENOTCONN;
    assert_int_equal(mim_stream_decoder_feed(g->dec, buf, (size_t)n), 0);
  }
}

/* Connects to logicd as gateway `id`; `rcvbuf` > 0 shrinks the socket's
 * receive buffer first (so a gateway that does not read stops taking
 * bytes soon). Returns the HELLO_ACK status. */
static int32_t raw_connect(struct harness *h, const char *id, int rcvbuf,
                           struct rawgw *g) {
  g->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(g->fd >= 0);
  if (rcvbuf > 0)
    setsockopt(g->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)h->logic_port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(g->fd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(mim_stream_decoder_create(&g->dec, 32u << 20), 0);
  struct mim_rpc r;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_HELLO;
  r.version = MIM_RPC_VERSION;
  r.secret = h->rpc_secret;
  r.gateway_id = id;
  assert_int_equal(raw_send(g, &r), 0);
  struct mim_rpc a;
  assert_int_equal(raw_recv(g, 5000, &a), 0);
  assert_int_equal(a.cmd, MIM_RPC_HELLO_ACK);
  int32_t st = a.status;
  mim_rpc_finish(&a);
  return st;
}

static void raw_close(struct rawgw *g) {
  if (g->fd >= 0)
    close(g->fd);
  g->fd = -1;
  mim_stream_decoder_destroy(g->dec);
  g->dec = NULL;
}

/* Logs connection `conn` of the raw gateway in as `uid` (dev auth). */
static void raw_login(struct rawgw *g, uint64_t conn, const char *uid) {
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.seq = 1;
  p.uid = uid;
  p.token = "token";
  uint8_t *buf = NULL;
  size_t len = 0;
  raw_request_frame(conn, &p, &buf, &len);
  assert_int_equal(raw_write(g, buf, len), 0);
  free(buf);
  for (;;) {
    struct mim_rpc r;
    assert_int_equal(raw_recv(g, 5000, &r), 0);
    bool done = r.cmd == MIM_RPC_DELIVER && r.inner_cmd == MIM_CMD_AUTH_RSP;
    if (done) {
      struct mim_packet a;
      mim_packet_init(&a);
      assert_int_equal(mim_packet_decode(&a, r.inner_cmd, r.body, r.body_len),
                       0);
      assert_int_equal(a.status, 0);
      mim_packet_finish(&a);
    }
    mim_rpc_finish(&r);
    if (done)
      return;
  }
}

/* ====================================================================== */

/* The reproduction of the report: an inbox of 500 messages of 30 KB, then
 * 200 pipelined pulls of everything (and 100 histories of it). logicd stays small, the gateway link
 * stays up, another user of the gateway is served meanwhile, and every
 * reply is under the byte cap with has_more. */
static int setup_pipelined_full_pulls(void **state) {
  return setup_with(state, "pipelined_full_pulls", NULL, NULL);
}

static void pipelined_full_pulls(void **state) {
  struct fixture *f = *state;
  struct harness *h = f->h;
  const char *e = getenv("MIM_BOUNDS_PULLS"); /* to check a revert cheaply */
  int pulls = e != NULL ? atoi(e) : 200;
  struct tc *filler = tc_login(h, "filler", NULL);
  struct tc *eve = tc_login(h, "eve", NULL);
  struct tc *bob = tc_login(h, "bob", NULL);
  struct tc *carol = tc_login(h, "carol", NULL);
  int64_t t0 = h_mono_ms();
  fill_inbox(filler, "eve", 500);
  fprintf(stderr, "filled 500 x %d bytes in %lld ms\n", BIG,
          (long long)(h_mono_ms() - t0));
  /* one page: capped in bytes, the rest announced */
  struct mim_packet rsp;
  mim_packet_init(&rsp);
  tc_pull(eve, true, 0, 500, &rsp);
  assert_true(rsp.n_items >= 1 && rsp.n_items < 500);
  assert_true(rsp.has_more);
  assert_true(mim_packet_encoded_size(&rsp) <= REPLY_CAP + MIM_HEADER_SIZE);
  fprintf(stderr, "one full pull: %zu of 500 entries, %zu bytes\n",
          rsp.n_items, mim_packet_encoded_size(&rsp));
  mim_packet_finish(&rsp);
  size_t links_before = h_log_count(h->gw_log, "link to logicd");

  for (int i = 0; i < pulls; i++) {
    queue_pull(eve, 500);
    if (i % 2 == 0) { /* and histories of the same 15 MB */
      struct mim_packet hq;
      mim_packet_init(&hq);
      hq.cmd = MIM_CMD_HISTORY_REQ;
      hq.seq = ++eve->seq;
      hq.peer = "filler";
      hq.limit = 500;
      assert_int_equal(wsc_queue_packet(eve->ws, &hq), 0);
    }
  }
  wsc_ctx_service(WS, 0);
  /* meanwhile: another user of the same gateway gets a message */
  int64_t took = witness(carol, bob, "while eve pulls", 5000);
  fprintf(stderr, "bob got carol's message in %lld ms during the flood\n",
          (long long)took);

  /* eve reads her replies, or is dropped by the gateway as a slow
   * consumer (send_queue_bytes): either way no reply is over the cap */
  int got = 0;
  size_t max_len = 0;
  int64_t end = h_mono_ms() + 25000;
  int want = pulls + (pulls + 1) / 2, busy = 0;
  while (got + busy < want && h_mono_ms() < end) {
    struct mim_packet p;
    mim_packet_init(&p);
    int r = wsc_recv(eve->ws, 1000, &p);
    if (r == -ENOTCONN)
      break;
    if (r == -ETIMEDOUT)
      continue;
    assert_int_equal(r, 0);
    if (p.cmd == MIM_CMD_PULL_RSP || p.cmd == MIM_CMD_HISTORY_RSP) {
      size_t len = mim_packet_encoded_size(&p);
      assert_true(len <= REPLY_CAP + MIM_HEADER_SIZE);
      assert_true(p.has_more);
      if (len > max_len)
        max_len = len;
      got++;
    } else if (p.cmd == MIM_CMD_ERROR) {
      assert_int_equal(p.status, E_BUSY); /* past 256 queued requests */
      busy++;
    }
    mim_packet_finish(&p);
  }
  long hwm = vm_hwm_kb(h->logic_pid);
  fprintf(stderr, "eve got %d of %d replies (largest %zu bytes) and %d "
          "BUSY%s; logicd VmHWM %ld KiB\n", got, want, max_len, busy,
          wsc_is_open(eve->ws) ? "" : ", then was dropped as slow", hwm);
  assert_true(got >= 1);
  assert_true(got + busy == want || !wsc_is_open(eve->ws));
  assert_true(hwm > 0);
  assert_true(hwm < 300 * 1024);
  /* the link all users share was never cut */
  assert_int_equal(h_log_count(h->logic_log, "cutting it off"), 0);
  assert_int_equal(h_log_count(h->logic_log, " up (handle"), 1);
  assert_int_equal(h_log_count(h->gw_log, "link to logicd"), links_before);
  witness(carol, bob, "after the flood", 5000);
  tc_free(filler);
  tc_free(eve);
  tc_free(bob);
  tc_free(carol);
  PASSED(f);
}

/* A gateway that pipelines 200 full pulls and reads nothing for a while:
 * logicd pauses the link at its pause mark instead of queueing 100 MB,
 * so it is not cut off at rpc_queue_max_mb; once the gateway reads, every
 * reply arrives, in order. */
static const char *const paused_args[] = {
    "--rpc-queue-max-mb", "2", "--rpc-queue-pause-kb", "512",
    "--rpc-queue-resume-kb", "128", NULL};

static int setup_unread_link_is_paused_not_cut(void **state) {
  return setup_with(state, "unread_link_is_paused_not_cut", paused_args, NULL);
}

static void unread_link_is_paused_not_cut(void **state) {
  struct fixture *f = *state;
  struct harness *h = f->h;
  struct tc *filler = tc_login(h, "filler", NULL);
  fill_inbox(filler, "eve", 100); /* 3 MB: each full pull is capped */
  struct rawgw g;
  assert_int_equal(raw_connect(h, "rawgw", 64 * 1024, &g), 0);
  raw_login(&g, 1, "eve");
  uint8_t *buf = NULL;
  size_t len = 0;
  for (int i = 0; i < 200; i++) {
    struct mim_packet p;
    mim_packet_init(&p);
    p.cmd = MIM_CMD_PULL_REQ;
    p.seq = 100 + i;
    p.has_after_seq = true;
    p.limit = 500;
    raw_request_frame(1, &p, &buf, &len);
  }
  assert_int_equal(raw_write(&g, buf, len), 0);
  free(buf);
  sleep(3); /* not reading: logicd must pause, not cut */
  assert_int_equal(h_log_count(h->logic_log, "cutting it off"), 0);
  /* the other users are still served meanwhile (another gateway) */
  struct tc *bob = tc_login(h, "bob", NULL);
  struct tc *carol = tc_login(h, "carol", NULL);
  witness(carol, bob, "while rawgw is paused", 5000);
  /* now read: all 200 replies, in order, each under the cap */
  int got = 0;
  while (got < 200) {
    struct mim_rpc r;
    int rc = raw_recv(&g, 10000, &r);
    assert_int_equal(rc, 0);
    if (r.cmd == MIM_RPC_DELIVER && r.inner_cmd == MIM_CMD_PULL_RSP) {
      struct mim_packet p;
      mim_packet_init(&p);
      assert_int_equal(mim_packet_decode(&p, r.inner_cmd, r.body, r.body_len),
                       0);
      assert_int_equal(p.seq, 100 + got);
      assert_true(p.has_more);
      assert_true(r.body_len <= REPLY_CAP);
      mim_packet_finish(&p);
      got++;
    }
    mim_rpc_finish(&r);
  }
  assert_int_equal(h_log_count(h->logic_log, "cutting it off"), 0);
  fprintf(stderr, "200 replies after the pause; logicd VmHWM %ld KiB\n",
          vm_hwm_kb(h->logic_pid));
  raw_close(&g);
  tc_free(filler);
  tc_free(bob);
  tc_free(carol);
  PASSED(f);
}

/* A gateway that stops reading altogether while pushes keep coming for
 * its users: past rpc_queue_max_mb logicd cuts it off (and says so); it
 * can connect again under the same id, and the other gateway's users
 * never notice. */
static const char *const cut_args[] = {
    "--rpc-queue-max-mb", "1", "--rpc-queue-pause-kb", "256",
    "--rpc-queue-resume-kb", "64", "--reply-bytes-max", "262144",
    "--rate-burst", "100000", "--rate-per-sec", "0",
    "--group-members-max", "1000", NULL};

static int setup_stuck_link_is_cut_and_reconnects(void **state) {
  return setup_with(state, "stuck_link_is_cut_and_reconnects", cut_args,
                    NULL);
}

static void stuck_link_is_cut_and_reconnects(void **state) {
  struct fixture *f = *state;
  struct harness *h = f->h;
  struct rawgw g;
  assert_int_equal(raw_connect(h, "rawgw", 16 * 1024, &g), 0);
  raw_login(&g, 1, "eve");
  struct tc *filler = tc_login(h, "filler", NULL);
  /* pushes to eve, unread: the kernel's buffers, then 1 MiB queue */
  for (int i = 0; i < 400 && h_log_count(h->logic_log, "cutting it off") == 0;
       i++) {
    char *t = big_text('p');
    tc_c2c(filler, "eve", t, NULL, NULL);
    free(t);
  }
  assert_int_equal(h_log_count(h->logic_log, "rawgw (127.0.0.1) is not reading"),
                   1);
  /* the socket was closed: reading ends in EOF */
  int rc = 0;
  for (int i = 0; i < 100000 && rc == 0; i++) {
    struct mim_rpc r;
    rc = raw_recv(&g, 5000, &r);
    if (rc == 0)
      mim_rpc_finish(&r);
  }
  assert_int_equal(rc, -ENOTCONN);
  raw_close(&g);
  /* it comes back under the same id */
  assert_int_equal(raw_connect(h, "rawgw", 0, &g), 0);
  raw_login(&g, 1, "eve");
  struct tc *bob = tc_login(h, "bob", NULL);
  struct tc *carol = tc_login(h, "carol", NULL);
  witness(carol, bob, "after the cut", 5000);
  raw_close(&g);
  tc_free(filler);
  tc_free(bob);
  tc_free(carol);
  PASSED(f);
}

/* conn_pending_max (256): a connection with 256 requests unanswered gets
 * BUSY for more; one that goes on to 512 is kicked (SLOW). Through a raw
 * gateway so that all requests reach logicd before the first commit. */
static const char *const busy_args[] = {"--rate-burst", "100000",
                                        "--rate-per-sec", "0", NULL};

static int setup_busy_at_256_kick_at_512(void **state) {
  return setup_with(state, "busy_at_256_kick_at_512", busy_args, NULL);
}

static void send_many(struct rawgw *g, uint64_t conn, int n) {
  uint8_t *buf = NULL;
  size_t len = 0;
  for (int i = 0; i < n; i++) {
    struct mim_packet p;
    mim_packet_init(&p);
    p.cmd = MIM_CMD_C2C_SEND_REQ;
    p.seq = 1000 + i;
    p.to = "bob";
    p.content = "x";
    raw_request_frame(conn, &p, &buf, &len);
  }
  assert_int_equal(raw_write(g, buf, len), 0);
  free(buf);
}

static void busy_at_256_kick_at_512(void **state) {
  struct fixture *f = *state;
  struct rawgw g;
  assert_int_equal(raw_connect(f->h, "rawgw", 0, &g), 0);
  raw_login(&g, 1, "eve");
  raw_login(&g, 2, "mal");
  send_many(&g, 1, 300); /* one write: logicd takes them in one read */
  int ok = 0, busy = 0;
  while (ok + busy < 300) {
    struct mim_rpc r;
    assert_int_equal(raw_recv(&g, 10000, &r), 0);
    if (r.cmd == MIM_RPC_DELIVER && r.targets[0].conn_id == 1) {
      struct mim_packet p;
      mim_packet_init(&p);
      assert_int_equal(mim_packet_decode(&p, r.inner_cmd, r.body, r.body_len),
                       0);
      if (p.cmd == MIM_CMD_C2C_SEND_RSP) {
        assert_int_equal(busy, 0); /* in order: the accepted come first */
        ok++;
      } else {
        assert_int_equal(p.cmd, MIM_CMD_ERROR);
        assert_int_equal(p.status, E_BUSY);
        assert_true(p.retryable);
        busy++;
      }
      mim_packet_finish(&p);
    }
    mim_rpc_finish(&r);
  }
  fprintf(stderr, "300 sends at once: %d accepted, %d BUSY\n", ok, busy);
  assert_int_equal(ok, 256);
  assert_int_equal(busy, 44);
  /* 600 at once: kicked when the 513th arrives */
  send_many(&g, 2, 600);
  bool kicked = false;
  for (int i = 0; i < 2000 && !kicked; i++) {
    struct mim_rpc r;
    if (raw_recv(&g, 10000, &r) != 0)
      break;
    if (r.cmd == MIM_RPC_KICK && r.conn_id == 2) {
      assert_int_equal(r.reason, MIM_KICK_SLOW);
      kicked = true;
    }
    mim_rpc_finish(&r);
  }
  assert_true(kicked);
  raw_close(&g);
  PASSED(f);
}

/* gatewayd: a client that does not read is dropped once its send queue
 * passes send_queue_bytes (Kick SLOW), and the others go on. */
static const char *const slow_gw_args[] = {"--send-queue-bytes", "262144",
                                           NULL};
static const char *const slow_logic_args[] = {"--rate-burst", "100000",
                                              "--rate-per-sec", "0", NULL};

static int setup_slow_consumer_is_kicked(void **state) {
  return setup_with(state, "slow_consumer_is_kicked", slow_logic_args,
                    slow_gw_args);
}

/* A websocket client by hand, which then never reads. */
static int lazy_ws_login(struct harness *h, const char *uid) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int rcv = 8192;
  assert_true(fd >= 0);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)h->gw_port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n", h->gw_port);
  assert_int_equal(write(fd, req, (size_t)n), n);
  char rsp[1024];
  size_t got = 0;
  while (got < sizeof rsp - 1) {
    ssize_t r = read(fd, rsp + got, 1);
    assert_true(r == 1);
    got++;
    rsp[got] = '\0';
    if (got >= 4 && strcmp(rsp + got - 4, "\r\n\r\n") == 0)
      break;
  }
  assert_non_null(strstr(rsp, " 101 "));
  struct mim_packet p;
  mim_packet_init(&p);
  p.cmd = MIM_CMD_AUTH_REQ;
  p.seq = 1;
  p.uid = uid;
  p.token = "token";
  uint8_t frame[256], ws[300];
  size_t flen;
  assert_int_equal(mim_packet_encode(&p, frame, sizeof frame, &flen), 0);
  /* one masked binary websocket frame (mask 0: the bytes go as they are) */
  ws[0] = 0x82;
  ws[1] = (uint8_t)(0x80 | flen);
  memset(ws + 2, 0, 4);
  memcpy(ws + 6, frame, flen);
  assert_int_equal(write(fd, ws, 6 + flen), (ssize_t)(6 + flen));
  return fd;
}

static void slow_consumer_is_kicked(void **state) {
  struct fixture *f = *state;
  struct harness *h = f->h;
  int fd = lazy_ws_login(h, "sloth");
  struct tc *filler = tc_login(h, "filler", NULL);
  struct tc *bob = tc_login(h, "bob", NULL);
  usleep(200 * 1000); /* the login is processed */
  for (int i = 0; i < 200 &&
                  h_log_count(h->gw_log, "slow consumer, closing") == 0;
       i++) {
    char *t = big_text('s');
    tc_c2c(filler, "sloth", t, NULL, NULL);
    free(t);
  }
  assert_int_equal(h_log_count(h->gw_log, "slow consumer, closing"), 1);
  witness(filler, bob, "after the sloth", 5000);
  close(fd);
  tc_free(filler);
  tc_free(bob);
  PASSED(f);
}

/* gatewayd's queue towards logicd: while logicd does not read (stopped),
 * requests past its 32 MiB are refused BUSY by the gateway itself (the
 * answer takes its place in the connection's reply order), and once
 * logicd runs again the rest are answered on the same link. */
static const char *const upstream_args[] = {
    "--rate-burst", "100000", "--rate-per-sec", "0", "--content-max", "65536",
    NULL};

static int setup_gateway_upstream_queue_busy(void **state) {
  return setup_with(state, "gateway_upstream_queue_busy", upstream_args,
                    NULL);
}

static void gateway_upstream_queue_busy(void **state) {
  struct fixture *f = *state;
  struct harness *h = f->h;
  /* four senders of 200 requests each: under logicd's own 256 per
   * connection, so every BUSY here is the gateway's */
  enum { K = 4, N = 200, SZ = 60000 };
  struct tc *eve[K];
  int64_t first[K];
  char uid[16];
  for (int k = 0; k < K; k++) {
    snprintf(uid, sizeof uid, "eve%d", k);
    eve[k] = tc_login(h, uid, NULL);
  }
  struct tc *bob = tc_login(h, "bob", NULL);
  struct tc *carol = tc_login(h, "carol", NULL);
  size_t links = h_log_count(h->gw_log, "link to logicd");
  assert_int_equal(kill(h->logic_pid, SIGSTOP), 0);
  /* 48 MB of requests: 32 MiB of queue plus what the sockets hold */
  char *t = malloc(SZ + 1);
  assert_non_null(t);
  memset(t, 'q', SZ);
  t[SZ] = '\0';
  for (int k = 0; k < K; k++) {
    first[k] = eve[k]->seq + 1;
    for (int i = 0; i < N; i++) {
      struct mim_packet p;
      mim_packet_init(&p);
      p.cmd = MIM_CMD_C2C_SEND_REQ;
      p.seq = ++eve[k]->seq;
      p.to = "zed"; /* offline: 48 MB of pushes would make anyone slow */
      p.content = t;
      assert_int_equal(wsc_send_packet(eve[k]->ws, &p), 0);
    }
  }
  free(t);
  wsc_ctx_service(WS, 500); /* the gateway takes what it can */
  assert_int_equal(kill(h->logic_pid, SIGCONT), 0);
  int ok = 0, busy = 0;
  for (int k = 0; k < K; k++) {
    for (int i = 0; i < N; i++) {
      struct mim_packet p;
      mim_packet_init(&p);
      assert_int_equal(wsc_recv_match(eve[k]->ws, 30000, NULL, NULL, &p), 0);
      assert_int_equal(p.seq, first[k] + i); /* in request order */
      if (p.cmd == MIM_CMD_C2C_SEND_RSP) {
        ok++;
      } else {
        assert_int_equal(p.cmd, MIM_CMD_ERROR);
        assert_int_equal(p.status, E_BUSY);
        assert_true(p.retryable);
        busy++;
      }
      mim_packet_finish(&p);
    }
  }
  fprintf(stderr, "%d sends of %d bytes with logicd stopped: %d accepted, "
          "%d BUSY from the gateway\n", K * N, SZ, ok, busy);
  assert_true(busy >= 1);
  assert_true(ok >= 100);
  witness(carol, bob, "after the stop", 10000);
  assert_int_equal(h_log_count(h->gw_log, "link to logicd"), links);
  for (int k = 0; k < K; k++)
    tc_free(eve[k]);
  tc_free(bob);
  tc_free(carol);
  PASSED(f);
}

/* Byte bounds that do not nest are refused at start-up, with a message
 * naming the setting (docs/operations.md, "Bounded work"). */
static int setup_bad_bounds_are_refused(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  if (f == NULL)
    return -1;
  f->name = "bad_bounds_are_refused";
  h_watchdog(60, f->name);
  *state = f;
  return 0;
}

/* Runs logicd with `extra` flags; returns its exit status (124: it was
 * still running after `secs` s, i.e. it accepted the settings) and its
 * output in `out`. */
static int run_logicd_for(int secs, const char *extra, char *out, size_t cap) {
  char dir[] = "/tmp/mim-bounds-XXXXXX", cmd[1024];
  assert_non_null(mkdtemp(dir));
  snprintf(cmd, sizeof cmd,
           "timeout %d '%s' --dev-auth --listen 127.0.0.1:0 --data-dir %s/d %s "
           "2>&1 </dev/null",
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

static int run_logicd(const char *extra, char *out, size_t cap) {
  return run_logicd_for(10, extra, out, cap);
}

static void bad_bounds_are_refused(void **state) {
  struct fixture *f = *state;
  char out[8192];
  /* one message of content_max must fit a reply */
  assert_int_equal(run_logicd("--content-max 1000000", out, sizeof out), 2);
  assert_non_null(strstr(out, "reply_bytes_max"));
  assert_non_null(strstr(out, "content_max"));
  assert_int_equal(
      run_logicd("--content-max 600000 --reply-bytes-max 600000", out,
                 sizeof out), 2);
  /* reads must stop (pause) well before the link is cut */
  assert_int_equal(run_logicd("--rpc-queue-max-mb 4 --rpc-queue-pause-kb "
                              "4096", out, sizeof out), 2);
  assert_non_null(strstr(out, "rpc_queue_max_mb"));
  assert_int_equal(run_logicd("--rpc-queue-pause-kb 1024 "
                              "--rpc-queue-resume-kb 1024", out, sizeof out),
                   2);
  assert_non_null(strstr(out, "rpc_queue_resume_kb"));
  /* a consistent set is accepted: logicd is still serving when stopped */
  assert_int_equal(run_logicd_for(3, "--content-max 1000000 "
                                  "--reply-bytes-max 1100000", out, sizeof out),
                   124);
  assert_non_null(strstr(out, "ready"));
  PASSED(f);
}

/* A gateway that reads its replies slowly keeps its link paused for
 * longer than rpc_timeout_s. logicd does not read a paused link, so it
 * hears no PONG from it; the gateway taking logicd's output is what shows
 * it is alive, and the link must not be closed as half-open. */
static const char *const slow_reader_args[] = {
    "--rpc-queue-max-mb", "2", "--rpc-queue-pause-kb", "512",
    "--rpc-queue-resume-kb", "128", "--rpc-ping-s", "1",
    "--rpc-timeout-s", "2", NULL};

static int setup_slow_reader_stays_paused_not_dead(void **state) {
  return setup_with(state, "slow_reader_stays_paused_not_dead",
                    slow_reader_args, NULL);
}

static void slow_reader_stays_paused_not_dead(void **state) {
  struct fixture *f = *state;
  struct harness *h = f->h;
  struct tc *filler = tc_login(h, "filler", NULL);
  fill_inbox(filler, "eve", 40); /* 1.2 MB: each full pull is capped */
  struct rawgw g;
  assert_int_equal(raw_connect(h, "rawgw", 64 * 1024, &g), 0);
  raw_login(&g, 1, "eve");
  uint8_t *buf = NULL;
  size_t len = 0;
  enum { PULLS = 40 };
  for (int i = 0; i < PULLS; i++) {
    struct mim_packet p;
    mim_packet_init(&p);
    p.cmd = MIM_CMD_PULL_REQ;
    p.seq = 100 + i;
    p.has_after_seq = true;
    p.limit = 500;
    raw_request_frame(1, &p, &buf, &len);
  }
  assert_int_equal(raw_write(&g, buf, len), 0);
  free(buf);
  /* read ~1 MB/s for 5 s (the replies are 20 MB), answering PINGs */
  int got = 0;
  int64_t end = h_mono_ms() + 5000;
  while (h_mono_ms() < end && got < PULLS) {
    uint8_t chunk[16 * 1024];
    ssize_t n = read(g.fd, chunk, sizeof chunk);
    assert_true(n > 0);
    assert_int_equal(mim_stream_decoder_feed(g.dec, chunk, (size_t)n), 0);
    struct mim_frame fr;
    while (mim_stream_decoder_next(g.dec, &fr) == 0) {
      struct mim_rpc r;
      mim_rpc_init(&r);
      assert_int_equal(
          mim_rpc_decode(&r, fr.header.cmd, fr.body, fr.header.body_len), 0);
      if (fr.header.cmd == MIM_RPC_PING) {
        struct mim_rpc pong;
        mim_rpc_init(&pong);
        pong.cmd = MIM_RPC_PONG;
        pong.req_id = r.req_id;
        assert_int_equal(raw_send(&g, &pong), 0);
      } else if (fr.header.cmd == MIM_RPC_DELIVER &&
                 r.inner_cmd == MIM_CMD_PULL_RSP) {
        got++;
      }
      mim_rpc_finish(&r);
    }
    usleep(16 * 1000);
  }
  fprintf(stderr, "%d of %d replies read slowly in 5 s\n", got, PULLS);
  assert_true(got < PULLS); /* it really was paused the whole time */
  assert_int_equal(h_log_count(h->logic_log, "nothing received"), 0);
  assert_int_equal(h_log_count(h->logic_log, "cutting it off"), 0);
  /* then it reads fast: every reply arrives on the same link */
  while (got < PULLS) {
    struct mim_rpc r;
    assert_int_equal(raw_recv(&g, 10000, &r), 0);
    if (r.cmd == MIM_RPC_DELIVER && r.inner_cmd == MIM_CMD_PULL_RSP)
      got++;
    mim_rpc_finish(&r);
  }
  raw_close(&g);
  tc_free(filler);
  PASSED(f);
}

/* ====================================================================== */

/* A GroupListResponse lists the whole group and is not cut by
 * reply_bytes_max: with 100,000 members of 128-byte ids it is ~13 MB. One
 * GROUP_LIST read after the pause mark must still fit under
 * rpc_queue_max, or one member of a big group cuts the link every user of
 * the gateway shares. Such settings are refused at start-up. */
static void group_list_bound_is_checked(void **state) {
  struct fixture *f = *state;
  h_watchdog(60, "group_list_bound_is_checked");
  char out[8192];
  assert_int_equal(run_logicd_for(10, "--rpc-queue-max-mb 8 --rpc-queue-pause-kb 4096 "
                              "--group-members-max 100000",
                              out, sizeof out),
                   2);
  assert_non_null(strstr(out, "group_members_max"));
  /* 20,000 members (~2.6 MB) fit the same queue */
  assert_int_equal(run_logicd_for(10, "--rpc-queue-max-mb 8 --rpc-queue-pause-kb 4096 "
                              "--group-members-max 20000",
                              out, sizeof out),
                   124);
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
    T(pipelined_full_pulls),
    T(unread_link_is_paused_not_cut),
    T(stuck_link_is_cut_and_reconnects),
    T(busy_at_256_kick_at_512),
    T(slow_consumer_is_kicked),
    T(gateway_upstream_queue_busy),
    T(bad_bounds_are_refused),
    T(group_list_bound_is_checked),
    T(slow_reader_stays_paused_not_dead),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "bounds", tests, COUNT(tests), &WS, 0);
}
