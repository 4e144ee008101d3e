/* Trust-boundary tests: the RPC between gatewayd, logicd and mimctl
 * (docs/rpc.md, docs/security.md), the per-user device limit, and the real
 * mimctl binary against a real logicd.
 *
 *   test-trust [NAME]   runs every test, or only the test called NAME
 *
 * Every test starts its own daemons (harness.c) on loopback ports. Raw RPC
 * peers are plain blocking sockets driven by this file, so that a test can
 * be a gateway that lies, stays silent or stops answering. Exit status 77
 * (skipped) when the daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mim/auth.h>
#include <mim/codec.h>
#include <mim/common.h>
#include <mim/rpc.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

#define ADMIN_SECRET "operator-secret-0123456789abcdef"
#define TOKEN_SECRET "trust-token-secret-0123456789abcdef"

/* Creates and starts a harness: both daemons, or logicd only. */
static struct harness *start(const struct h_opts *o, bool gateway) {
  struct harness *h = NULL;
  assert_int_equal(h_create(&h, WS, o), 0);
  int rc = gateway ? h_start(h) : h_start_logicd(h);
  if (rc != 0)
    h_dump_logs(h);
  assert_int_equal(rc, 0);
  return h;
}

/* ---- a raw RPC peer ---- */

struct raw {
  int fd;
  struct mim_stream_decoder *dec;
};

static void raw_attach(struct raw *r, int fd) {
  assert_true(fd >= 0);
  r->fd = fd;
  assert_int_equal(mim_stream_decoder_create(&r->dec, 16u << 20), 0);
}

static void raw_tcp(struct raw *r, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  raw_attach(r, fd);
}

static void raw_unix(struct raw *r, const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  raw_attach(r, fd);
}

static void raw_close(struct raw *r) {
  if (r->fd >= 0)
    close(r->fd);
  r->fd = -1;
  mim_stream_decoder_destroy(r->dec);
  r->dec = NULL;
}

static void raw_send(struct raw *r, const struct mim_rpc *m) {
  size_t cap = mim_rpc_encoded_size(m), len = 0;
  uint8_t *buf = malloc(cap);
  assert_non_null(buf);
  assert_int_equal(mim_rpc_encode(m, buf, cap, &len), 0);
  assert_int_equal(send(r->fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
  free(buf);
}

/* The next frame, decoded into `m` (finish it). 0; -ETIMEDOUT; -ECONNRESET
 * when the peer closed. */
static int raw_read(struct raw *r, int timeout_ms, struct mim_rpc *m) {
  int64_t deadline = h_mono_ms() + timeout_ms;
  for (;;) {
    struct mim_frame f;
    int rc = mim_stream_decoder_next(r->dec, &f);
    if (rc == 0) {
      mim_rpc_init(m);
      rc = mim_rpc_decode(m, f.header.cmd, f.body, f.header.body_len);
      assert_int_equal(rc, 0);
      return 0;
    }
    assert_int_equal(rc, -EAGAIN);
    int64_t left = deadline - h_mono_ms();
    if (left <= 0)
      return -ETIMEDOUT;
    struct pollfd p = {.fd = r->fd, .events = POLLIN};
    if (poll(&p, 1, (int)left) <= 0)
      continue;
    uint8_t buf[65536];
    ssize_t n = recv(r->fd, buf, sizeof buf, 0);
    if (n <= 0)
      return -ECONNRESET;
    assert_int_equal(mim_stream_decoder_feed(r->dec, buf, (size_t)n), 0);
  }
}

/* Reads frames (answering none) until the peer closes; returns when, in
 * monotonic ms, or -1 if it did not within `timeout_ms`. Counts PINGs. */
static int64_t raw_wait_closed(struct raw *r, int timeout_ms, int *pings) {
  int64_t deadline = h_mono_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - h_mono_ms();
    if (left <= 0)
      return -1;
    struct mim_rpc m;
    int rc = raw_read(r, (int)left, &m);
    if (rc == -ECONNRESET)
      return h_mono_ms();
    if (rc == -ETIMEDOUT)
      return -1;
    if (m.cmd == MIM_RPC_PING && pings != NULL)
      (*pings)++;
    mim_rpc_finish(&m);
  }
}

/* HELLO as `id` with `secret`; returns HELLO_ACK.status. */
static int32_t raw_hello(struct raw *r, const char *id, const char *secret) {
  struct mim_rpc m;
  mim_rpc_init(&m);
  m.cmd = MIM_RPC_HELLO;
  m.gateway_id = id;
  m.secret = secret;
  m.version = MIM_RPC_VERSION;
  raw_send(r, &m);
  assert_int_equal(raw_read(r, 5000, &m), 0);
  assert_int_equal(m.cmd, MIM_RPC_HELLO_ACK);
  int32_t st = m.status;
  mim_rpc_finish(&m);
  return st;
}

/* Sends ADMIN (a client packet `req`) and returns the decoded reply packet
 * (finish it). Skips PINGs. */
static void raw_admin(struct raw *r, const struct mim_packet *req,
                      struct mim_packet *out) {
  uint8_t body[1024];
  size_t len;
  assert_int_equal(mim_packet_encode_body(req, body, sizeof body, &len), 0);
  struct mim_rpc m;
  mim_rpc_init(&m);
  m.cmd = MIM_RPC_ADMIN;
  m.req_id = 42;
  m.inner_cmd = req->cmd;
  m.body = body;
  m.body_len = len;
  raw_send(r, &m);
  for (;;) {
    assert_int_equal(raw_read(r, 5000, &m), 0);
    if (m.cmd == MIM_RPC_ADMIN_REPLY)
      break;
    mim_rpc_finish(&m);
  }
  assert_int_equal(m.req_id, 42);
  mim_packet_init(out);
  assert_int_equal(mim_packet_decode(out, m.inner_cmd, m.body, m.body_len), 0);
  mim_rpc_finish(&m);
}

static void group_create_req(struct mim_packet *p, const char *gid) {
  static const char *const members[] = {"alice", "bob"};
  mim_packet_init(p);
  p->cmd = MIM_CMD_GROUP_CREATE_REQ;
  p->group = gid;
  p->members = members;
  p->n_members = 2;
}

/* ---- running programs ---- */

struct run {
  int status; /* exit code, or 128 + signal, or -1 timed out (killed) */
  char out[16384];
  char err[16384];
};

static void slurp(int fd, char *buf, size_t cap) {
  size_t n = 0;
  ssize_t r;
  while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
    n += (size_t)r;
  buf[n] = '\0';
}

/* Runs argv with stdout and stderr in temporary files, killing it after
 * `timeout_ms`. */
static void run(struct run *res, int timeout_ms, const char *const *argv) {
  char of[] = "/tmp/mim-trust-outXXXXXX", ef[] = "/tmp/mim-trust-errXXXXXX";
  int o = mkstemp(of), e = mkstemp(ef);
  assert_true(o >= 0 && e >= 0);
  unlink(of);
  unlink(ef);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(o, 1);
    dup2(e, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  int64_t deadline = h_mono_ms() + timeout_ms;
  int st = 0;
  res->status = -1;
  for (;;) {
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (h_mono_ms() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      break;
    }
    usleep(20000);
  }
  lseek(o, 0, SEEK_SET);
  lseek(e, 0, SEEK_SET);
  slurp(o, res->out, sizeof res->out);
  slurp(e, res->err, sizeof res->err);
  close(o);
  close(e);
}

/* mimctl with `args` (NULL-terminated, at most 30). */
static void mimctl(struct run *res, const char *const *args) {
  const char *argv[32];
  int n = 0;
  argv[n++] = h_mimctl_path();
  assert_non_null(argv[0]);
  while (*args != NULL && n < 31)
    argv[n++] = *args++;
  argv[n] = NULL;
  run(res, 15000, argv);
}

static void show(const char *what, const struct run *r) {
  fprintf(stderr, "%s: status %d\n--- stdout\n%s--- stderr\n%s---\n", what,
          r->status, r->out, r->err);
}

#define EXPECT_RUN(r, st, what)                                                \
  do {                                                                         \
    if ((r)->status != (st))                                                   \
      show(what, r);                                                           \
    assert_int_equal((r)->status, (st));                                       \
  } while (0)

/* logicd with `flags` (NULL-terminated) on a data dir of `h`: it must exit
 * within 5 s; returns its status with its output in `res`. */
static void logicd_expect_exit(struct harness *h, struct run *res,
                               const char *const *flags) {
  const char *argv[32];
  char dir[400];
  int n = 0;
  snprintf(dir, sizeof dir, "%s/refused", h->root);
  argv[n++] = h_logicd_path();
  argv[n++] = "--data-dir";
  argv[n++] = dir;
  while (*flags != NULL && n < 31)
    argv[n++] = *flags++;
  argv[n] = NULL;
  run(res, 5000, argv);
}

/* ---- RPC trust ---- */

/* A gateway with the wrong secret is refused (FORBIDDEN) and cut off; the
 * right one is accepted. */
static void rpc_wrong_secret(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = start(&o, false);
  struct raw r;
  raw_tcp(&r, h->logic_port);
  assert_int_equal(raw_hello(&r, "gw-wrong", "not-the-secret"), E_FORBIDDEN);
  assert_true(raw_wait_closed(&r, 5000, NULL) >= 0);
  raw_close(&r);
  raw_tcp(&r, h->logic_port);
  assert_int_equal(raw_hello(&r, "gw-wrong", ""), E_FORBIDDEN);
  raw_close(&r);
  raw_tcp(&r, h->logic_port);
  assert_int_equal(raw_hello(&r, "gw-right", h->rpc_secret), 0);
  raw_close(&r);
  h_destroy(h);
}

/* Refused configurations: logicd exits 2 with a reason, before it listens.
 * The non-loopback listener is only bound if the check is missing (then
 * the test kills it); nothing is ever sent off this host. */
static void rpc_config_refused(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = NULL;
  assert_int_equal(h_create(&h, WS, &o), 0);
  struct run res;

  /* a non-loopback listener without rpc_secret */
  logicd_expect_exit(h, &res, (const char *const[]){
      "--listen", "0.0.0.0:0", "--dev-auth", "--dev-auth-allow-remote",
      NULL});
  EXPECT_RUN(&res, 2, "logicd 0.0.0.0 without rpc_secret");
  assert_non_null(strstr(res.err, "rpc_secret is empty"));

  /* dev_auth together with a token secret */
  logicd_expect_exit(h, &res, (const char *const[]){
      "--listen", "127.0.0.1:0", "--dev-auth", "--token-secret",
      TOKEN_SECRET, NULL});
  EXPECT_RUN(&res, 2, "logicd dev_auth + token secret");
  assert_non_null(strstr(res.err, "dev_auth"));

  /* dev_auth on a non-loopback listener without the override */
  logicd_expect_exit(h, &res, (const char *const[]){
      "--listen", "0.0.0.0:0", "--rpc-secret", "rpc-secret-0123456789abcdef",
      "--dev-auth", NULL});
  EXPECT_RUN(&res, 2, "logicd dev_auth on 0.0.0.0");
  assert_non_null(strstr(res.err, "dev_auth_allow_remote"));

  /* the admin secret must not be the gateways' secret */
  logicd_expect_exit(h, &res, (const char *const[]){
      "--listen", "127.0.0.1:0", "--dev-auth", "--rpc-secret", ADMIN_SECRET,
      "--admin-secret", ADMIN_SECRET, NULL});
  EXPECT_RUN(&res, 2, "logicd admin_secret == rpc_secret");
  assert_non_null(strstr(res.err, "admin_secret equals rpc_secret"));
  h_destroy(h);
}

/* A link that sends nothing is closed after hello_timeout_s. */
static void rpc_idle_before_hello(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){"--hello-timeout-s", "1", NULL};
  struct harness *h = start(&o, false);
  struct raw r;
  int64_t t0 = h_mono_ms();
  raw_tcp(&r, h->logic_port);
  int64_t closed = raw_wait_closed(&r, 6000, NULL);
  if (closed < 0)
    h_dump_logs(h);
  assert_true(closed >= 0);
  fprintf(stderr, "idle link closed after %lld ms\n",
          (long long)(closed - t0));
  assert_true(closed - t0 >= 900);
  raw_close(&r);
  h_destroy(h);
}

/* A second link with a gateway id already connected replaces the first,
 * which logicd closes. */
static void rpc_duplicate_gateway_id(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = start(&o, false);
  struct raw a, b;
  raw_tcp(&a, h->logic_port);
  assert_int_equal(raw_hello(&a, "gw-dup", h->rpc_secret), 0);
  raw_tcp(&b, h->logic_port);
  assert_int_equal(raw_hello(&b, "gw-dup", h->rpc_secret), 0);
  assert_true(raw_wait_closed(&a, 5000, NULL) >= 0);
  /* the new link is the gateway now: it is served */
  struct mim_rpc m;
  mim_rpc_init(&m);
  m.cmd = MIM_RPC_PING;
  m.req_id = 7;
  raw_send(&b, &m);
  assert_int_equal(raw_read(&b, 5000, &m), 0);
  assert_int_equal(m.cmd, MIM_RPC_PONG);
  assert_int_equal(m.req_id, 7);
  mim_rpc_finish(&m);
  raw_close(&a);
  raw_close(&b);
  h_destroy(h);
}

/* A gateway that stops answering (stopped process, half-open link) is
 * PINGed and then closed within rpc_timeout_s; one that answers stays. */
static void rpc_half_open_gateway(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){"--rpc-ping-s", "1", "--rpc-timeout-s",
                                        "3", NULL};
  struct harness *h = start(&o, false);
  struct raw mute, live;
  raw_tcp(&mute, h->logic_port);
  assert_int_equal(raw_hello(&mute, "gw-mute", h->rpc_secret), 0);
  int64_t t0 = h_mono_ms();
  raw_tcp(&live, h->logic_port);
  assert_int_equal(raw_hello(&live, "gw-live", h->rpc_secret), 0);

  /* for 5 s (past the timeout; longer until the mute one is closed, at most
   * 10 s) the live one answers every PING, the mute one answers nothing */
  int live_pings = 0, pings = 0;
  int64_t closed = -1;
  while (h_mono_ms() - t0 < 10000 && (closed < 0 || h_mono_ms() - t0 < 5000)) {
    struct mim_rpc m;
    int rc = raw_read(&live, 50, &m);
    assert_int_not_equal(rc, -ECONNRESET);
    if (rc == 0 && m.cmd == MIM_RPC_PING) {
      live_pings++;
      m.cmd = MIM_RPC_PONG;
      raw_send(&live, &m);
    }
    if (rc == 0)
      mim_rpc_finish(&m);
    if (closed >= 0)
      continue;
    rc = raw_read(&mute, 50, &m);
    if (rc == -ECONNRESET) {
      closed = h_mono_ms();
    } else if (rc == 0) {
      pings += m.cmd == MIM_RPC_PING;
      mim_rpc_finish(&m);
    }
  }
  assert_true(live_pings >= 2);
  if (closed < 0)
    h_dump_logs(h);
  assert_true(closed >= 0);
  fprintf(stderr, "silent gateway closed %lld ms after its HELLO, after %d "
                  "PINGs; the answering one got %d PINGs and stays\n",
          (long long)(closed - t0), pings, live_pings);
  assert_true(pings >= 1);
  /* the timeout, not sooner; later only by scheduling delays on a busy
   * machine */
  assert_true(closed - t0 >= 2500 && closed - t0 <= 9000);
  raw_close(&mute);
  raw_close(&live);
  h_destroy(h);
}

/* Whether `needle` appears in the file `path` after byte `from`. */
static bool log_has(const char *path, long from, const char *needle) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return false;
  static char buf[1 << 20];
  fseek(f, from, SEEK_SET);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strstr(buf, needle) != NULL;
}

static long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* The real gatewayd stopped (SIGSTOP): logicd closes its link within
 * rpc_timeout_s; after SIGCONT the gateway reconnects and serves again. */
static void rpc_stopped_gatewayd(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){"--rpc-ping-s", "1", "--rpc-timeout-s",
                                        "3", NULL};
  struct harness *h = start(&o, true);
  long from = file_size(h->logic_log);
  assert_int_equal(kill(h->gw_pid, SIGSTOP), 0);
  int64_t t0 = h_mono_ms();
  bool seen = false;
  while (!seen && h_mono_ms() - t0 < 10000) {
    usleep(100000);
    seen = log_has(h->logic_log, from, "gw-integ (127.0.0.1): nothing "
                                         "received for");
  }
  int64_t t1 = h_mono_ms();
  kill(h->gw_pid, SIGCONT);
  if (!seen)
    h_dump_logs(h);
  assert_true(seen);
  fprintf(stderr, "stopped gatewayd cut off after %lld ms\n",
          (long long)(t1 - t0));
  assert_true(t1 - t0 >= 2000 && t1 - t0 <= 10000);
  assert_int_equal(h_wait_linked(h, 20000), 0);
  struct tc *c = tc_login(h, "after", "stop");
  tc_barrier(c);
  tc_free(c);
  h_destroy(h);
}

/* logicd stopped (SIGSTOP): the gateway notices within logic_timeout_s,
 * answers its clients UNAVAILABLE instead of leaving them waiting, and is
 * linked again once logicd runs (SIGCONT). */
static void rpc_half_open_logicd(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.gatewayd_args = (const char *const[]){"--logic-ping-s", "1",
                                          "--logic-timeout-s", "3", NULL};
  struct harness *h = start(&o, true);
  struct tc *c = tc_login(h, "alice", "phone");
  assert_int_equal(kill(h->logic_pid, SIGSTOP), 0);
  int64_t t0 = h_mono_ms();
  struct mim_packet req, rsp;
  mim_packet_init(&req);
  req.cmd = MIM_CMD_HEARTBEAT_REQ;
  req.seq = ++c->seq;
  req.ts = tc_now_ms();
  assert_int_equal(wsc_send_packet(c->ws, &req), 0);
  mim_packet_init(&req);
  req.cmd = MIM_CMD_C2C_SEND_REQ;
  req.seq = ++c->seq;
  req.to = "bob";
  req.content = "while logicd is stopped";
  req.client_msg_id = "stopped-1";
  assert_int_equal(wsc_send_packet(c->ws, &req), 0);
  int64_t want = req.seq;
  /* the send is answered UNAVAILABLE once the gateway gives up the link */
  int rc;
  for (;;) {
    rc = wsc_recv(c->ws, 12000, &rsp);
    if (rc != 0 || rsp.seq == want)
      break;
    mim_packet_finish(&rsp);
  }
  int64_t t1 = h_mono_ms();
  kill(h->logic_pid, SIGCONT);
  if (rc != 0)
    h_dump_logs(h);
  assert_int_equal(rc, 0);
  tc_expect_error(&rsp, E_UNAVAILABLE, MIM_CMD_C2C_SEND_REQ);
  mim_packet_finish(&rsp);
  fprintf(stderr, "stopped logicd noticed after %lld ms\n",
          (long long)(t1 - t0));
  assert_true(t1 - t0 >= 2000 && t1 - t0 <= 12000);
  /* running again: the gateway reconnects and relays */
  assert_int_equal(h_wait_linked(h, 20000), 0);
  tc_free(c);
  h_destroy(h);
}

/* A gateway link has no operator rights: HELLO as "mimctl" with the
 * gateways' rpc_secret is refused, ADMIN on a gateway link is refused
 * (the link stays up), and nothing was changed. */
static void rpc_gateway_sends_admin(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){"--admin-secret", ADMIN_SECRET, NULL};
  struct harness *h = start(&o, false);
  struct raw r;
  struct mim_packet req, rsp;

  /* the name "mimctl" with rpc_secret: no */
  raw_tcp(&r, h->logic_port);
  assert_int_equal(raw_hello(&r, "mimctl", h->rpc_secret), E_FORBIDDEN);
  raw_close(&r);

  /* ADMIN on an accepted gateway link: Error FORBIDDEN, link kept */
  raw_tcp(&r, h->logic_port);
  assert_int_equal(raw_hello(&r, "gw-evil", h->rpc_secret), 0);
  group_create_req(&req, "pwned");
  raw_admin(&r, &req, &rsp);
  assert_int_equal(rsp.cmd, MIM_CMD_ERROR);
  assert_int_equal(rsp.status, E_FORBIDDEN);
  mim_packet_finish(&rsp);
  struct mim_rpc m;
  mim_rpc_init(&m);
  m.cmd = MIM_RPC_PING;
  m.req_id = 9;
  raw_send(&r, &m);
  assert_int_equal(raw_read(&r, 5000, &m), 0);
  assert_int_equal(m.cmd, MIM_RPC_PONG);
  mim_rpc_finish(&m);
  raw_close(&r);

  /* the operator, with admin_secret over TCP: the group does not exist */
  raw_tcp(&r, h->logic_port);
  assert_int_equal(raw_hello(&r, "mimctl", ADMIN_SECRET), 0);
  mim_packet_init(&req);
  req.cmd = MIM_CMD_GROUP_LIST_REQ;
  req.group = "pwned";
  raw_admin(&r, &req, &rsp);
  assert_int_equal(rsp.cmd, MIM_CMD_ERROR);
  assert_int_equal(rsp.status, 1009); /* NO_SUCH_GROUP, not another error */
  mim_packet_finish(&rsp);
  raw_close(&r);

  /* ... and on the admin socket (mode 0600), which needs the secret too
   * when one is set */
  char sock[400];
  struct stat st;
  snprintf(sock, sizeof sock, "%s/admin.sock", h->data_dir);
  assert_int_equal(stat(sock, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  raw_unix(&r, sock);
  assert_int_equal(raw_hello(&r, "mimctl", "wrong"), E_FORBIDDEN);
  raw_close(&r);
  raw_unix(&r, sock);
  assert_int_equal(raw_hello(&r, "gw-on-admin", h->rpc_secret), E_FORBIDDEN);
  raw_close(&r);
  raw_unix(&r, sock);
  assert_int_equal(raw_hello(&r, "mimctl", ADMIN_SECRET), 0);
  group_create_req(&req, "team");
  raw_admin(&r, &req, &rsp);
  assert_int_equal(rsp.cmd, MIM_CMD_GROUP_CREATE_RSP);
  mim_packet_finish(&rsp);
  raw_close(&r);
  h_destroy(h);
}

/* ---- per-user limits ---- */

static void user_device_limit(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){"--user-devices-max", "3", NULL};
  struct harness *h = start(&o, true);
  struct tc *d1 = tc_login(h, "ulim", "d1");
  struct tc *d2 = tc_login(h, "ulim", "d2");
  struct tc *d3 = tc_login(h, "ulim", "d3");
  char tok[MIM_TOKEN_MAX];

  /* a fourth device: refused with TOO_MANY_DEVICES */
  struct tc *d4 = tc_open(h);
  assert_int_equal(tc_auth(d4, "ulim", "d4", tc_token(h, "ulim", "d4", tok), 0),
                   1021);
  /* the same device again replaces its old connection: allowed */
  struct tc *d2b = tc_open(h);
  assert_int_equal(
      tc_auth(d2b, "ulim", "d2", tc_token(h, "ulim", "d2", tok), 0), 0);
  /* other users are not affected */
  struct tc *other = tc_login(h, "someone-else", "d1");
  /* one device logs out: room for another */
  tc_free(d1);
  tc_barrier(d3);
  int32_t st = -1;
  for (int i = 0; i < 50 && st != 0; i++) {
    /* the gateway reports the close asynchronously: retry briefly */
    struct tc *t = tc_open(h);
    st = tc_auth(t, "ulim", "d4", tc_token(h, "ulim", "d4", tok), 0);
    if (st != 0) {
      assert_int_equal(st, 1021);
      tc_free(t);
      usleep(100000);
    }
  }
  assert_int_equal(st, 0);
  (void)d2;
  (void)other;
  tc_free_all();
  h_destroy(h);
}

/* ---- mimctl ---- */

/* Writes a config file for mimctl naming the harness's logicd; returns
 * its path in `path`. */
static void write_config(const struct harness *h, char *path, size_t cap,
                         const char *extra) {
  snprintf(path, cap, "%s/mim.ini", h->root);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "[logic]\nlisten = 127.0.0.1:%d\ndata_dir = %s\n%s\n"
             "[gateway]\nid = ignored\n",
          h->logic_port, h->data_dir, extra != NULL ? extra : "");
  fclose(f);
}

/* Every mimctl command against a real logicd (through its admin socket,
 * found from the config like an operator's), with a client watching. */
static void mimctl_commands(void **state) {
  (void)state;
  if (h_mimctl_path() == NULL)
    skip();
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = start(&o, true);
  char conf[400];
  write_config(h, conf, sizeof conf, NULL);
  struct run r;

  /* token: signed locally, verifiable with the secret */
  mimctl(&r, (const char *const[]){"token", "alice", "phone",
                                   "--token-secret", TOKEN_SECRET, "--ttl",
                                   "600", NULL});
  EXPECT_RUN(&r, 0, "mimctl token");
  r.out[strcspn(r.out, "\n")] = '\0';
  int64_t exp = 0;
  assert_int_equal(mim_token_verify((const uint8_t *)TOKEN_SECRET,
                                    strlen(TOKEN_SECRET), r.out, "alice",
                                    "phone", time(NULL), &exp),
                   0);
  assert_true(exp > time(NULL) && exp <= time(NULL) + 601);
  mimctl(&r, (const char *const[]){"token", "alice", NULL});
  EXPECT_RUN(&r, 2, "mimctl token without a secret");

  /* groups */
  mimctl(&r, (const char *const[]){"--config", conf, "group", "create",
                                   "team", "--members", "alice,bob", NULL});
  EXPECT_RUN(&r, 0, "mimctl group create");
  assert_non_null(strstr(r.out, "team"));
  mimctl(&r, (const char *const[]){"--config", conf, "group", "create",
                                   "team", NULL});
  EXPECT_RUN(&r, 1, "mimctl group create (exists)");
  assert_non_null(strstr(r.err, "GROUP_EXISTS"));
  mimctl(&r, (const char *const[]){"--config", conf, "group", "add", "team",
                                   "carol", "dave", NULL});
  EXPECT_RUN(&r, 0, "mimctl group add");
  mimctl(&r, (const char *const[]){"--config", conf, "group", "remove",
                                   "team", "bob", NULL});
  EXPECT_RUN(&r, 0, "mimctl group remove");
  mimctl(&r, (const char *const[]){"--config", conf, "group", "list", "team",
                                   NULL});
  EXPECT_RUN(&r, 0, "mimctl group list");
  assert_non_null(strstr(r.out, "alice\n"));
  assert_non_null(strstr(r.out, "carol\n"));
  assert_non_null(strstr(r.out, "dave\n"));
  assert_null(strstr(r.out, "bob"));
  mimctl(&r, (const char *const[]){"--config", conf, "group", "list",
                                   "nosuch", NULL});
  EXPECT_RUN(&r, 1, "mimctl group list (no such group)");
  mimctl(&r, (const char *const[]){"--config", conf, "group", NULL});
  EXPECT_RUN(&r, 2, "mimctl group (usage)");

  /* push: stored and delivered to alice's connection */
  struct tc *alice = tc_login(h, "alice", "phone");
  mimctl(&r, (const char *const[]){"--config", conf, "push", "--text",
                                   "hello from ops", "--from", "ops",
                                   "alice", NULL});
  EXPECT_RUN(&r, 0, "mimctl push");
  struct mim_packet p;
  tc_push(alice, MIM_CMD_SERVER_PUSH, &p);
  assert_string_equal(p.content, "hello from ops");
  mim_packet_finish(&p);

  /* inbox: read-only view of alice's inbox */
  mimctl(&r, (const char *const[]){"--config", conf, "inbox", "alice", NULL});
  EXPECT_RUN(&r, 0, "mimctl inbox");
  assert_non_null(strstr(r.out, "hello from ops"));
  /* alice's inbox: the notices of create, add and remove (1..3), then the
   * push (4): listing from 5 leaves it out */
  mimctl(&r, (const char *const[]){"--config", conf, "inbox", "alice",
                                   "--from", "5", NULL});
  EXPECT_RUN(&r, 0, "mimctl inbox --from 5");
  assert_null(strstr(r.out, "hello from ops"));

  /* unknown command and --help */
  mimctl(&r, (const char *const[]){"frobnicate", NULL});
  EXPECT_RUN(&r, 2, "mimctl unknown command");
  mimctl(&r, (const char *const[]){"--help", NULL});
  EXPECT_RUN(&r, 0, "mimctl --help");

  /* without --config or --logic mimctl looks in ./data/logicd: here there
   * is no logicd, which it must say */
  mimctl(&r, (const char *const[]){"--logic",
                                   "unix:/nonexistent/admin.sock", "group",
                                   "list", "team", NULL});
  EXPECT_RUN(&r, 1, "mimctl, no such socket");
  assert_non_null(strstr(r.err, "is logicd running"));
  tc_free(alice);
  h_destroy(h);
}

/* mimctl with a wrong or missing admin secret is refused (exit 1, a clear
 * message); with the right one it works over TCP and the socket. */
static void mimctl_wrong_secret(void **state) {
  (void)state;
  if (h_mimctl_path() == NULL)
    skip();
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){"--admin-secret", ADMIN_SECRET, NULL};
  struct harness *h = start(&o, false);
  char tcp[64], conf[400];
  snprintf(tcp, sizeof tcp, "127.0.0.1:%d", h->logic_port);
  struct run r;

  /* the gateways' secret is no operator secret */
  mimctl(&r, (const char *const[]){"--logic", tcp, "--admin-secret",
                                   h->rpc_secret, "group", "list", "x",
                                   NULL});
  EXPECT_RUN(&r, 1, "mimctl with rpc_secret");
  assert_non_null(strstr(r.err, "FORBIDDEN"));
  mimctl(&r, (const char *const[]){"--logic", tcp, "group", "list", "x",
                                   NULL});
  EXPECT_RUN(&r, 1, "mimctl without a secret over TCP");
  assert_non_null(strstr(r.err, "FORBIDDEN"));
  /* right secret over TCP */
  mimctl(&r, (const char *const[]){"--logic", tcp, "--admin-secret",
                                   ADMIN_SECRET, "group", "create", "g1",
                                   NULL});
  EXPECT_RUN(&r, 0, "mimctl with admin secret over TCP");
  /* the admin socket with a wrong secret from the config file */
  write_config(h, conf, sizeof conf, "admin_secret = wrong-wrong-wrong-wrong");
  mimctl(&r, (const char *const[]){"--config", conf, "group", "list", "g1",
                                   NULL});
  EXPECT_RUN(&r, 1, "mimctl with a wrong admin secret on the socket");
  assert_non_null(strstr(r.err, "wrong admin secret"));
  /* ... and the right one, from a file */
  char sf[420];
  snprintf(sf, sizeof sf, "%s/admin.secret", h->root);
  FILE *f = fopen(sf, "w");
  assert_non_null(f);
  fprintf(f, "%s\n", ADMIN_SECRET);
  fclose(f);
  mimctl(&r, (const char *const[]){"--config", conf, "--admin-secret-file",
                                   sf, "group", "list", "g1", NULL});
  EXPECT_RUN(&r, 0, "mimctl with --admin-secret-file");
  h_destroy(h);
}

/* logicd down: mimctl fails (exit 1) promptly with a message, whether the
 * socket is gone or the TCP port refuses. */
static void mimctl_logicd_down(void **state) {
  (void)state;
  if (h_mimctl_path() == NULL)
    skip();
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = start(&o, false);
  char tcp[64], conf[400];
  snprintf(tcp, sizeof tcp, "127.0.0.1:%d", h->logic_port);
  write_config(h, conf, sizeof conf, NULL);
  struct run r;
  mimctl(&r, (const char *const[]){"--config", conf, "group", "create", "g",
                                   NULL});
  EXPECT_RUN(&r, 0, "mimctl with logicd up");
  assert_int_equal(h_stop_logicd(h, SIGTERM), 0);
  int64_t t0 = h_mono_ms();
  mimctl(&r, (const char *const[]){"--config", conf, "group", "list", "g",
                                   NULL});
  EXPECT_RUN(&r, 1, "mimctl, logicd down (socket)");
  assert_non_null(strstr(r.err, "cannot connect to logicd"));
  mimctl(&r, (const char *const[]){"--logic", tcp, "--admin-secret",
                                   ADMIN_SECRET, "inbox", "alice", NULL});
  EXPECT_RUN(&r, 1, "mimctl, logicd down (TCP)");
  assert_non_null(strstr(r.err, "cannot connect to logicd"));
  assert_true(h_mono_ms() - t0 < 5000);
  /* a logicd that accepts but never answers: the --timeout bounds it */
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t sl = sizeof sa;
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(lfd, 4), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
  snprintf(tcp, sizeof tcp, "127.0.0.1:%d", ntohs(sa.sin_port));
  t0 = h_mono_ms();
  mimctl(&r, (const char *const[]){"--logic", tcp, "--timeout", "1",
                                   "group", "list", "g", NULL});
  EXPECT_RUN(&r, 1, "mimctl, mute logicd");
  assert_non_null(strstr(r.err, "no answer"));
  assert_true(h_mono_ms() - t0 < 5000);
  close(lfd);
  h_destroy(h);
}

/* ---- main ---- */

static const struct CMUnitTest all_tests[] = {
    cmocka_unit_test(rpc_wrong_secret),
    cmocka_unit_test(rpc_config_refused),
    cmocka_unit_test(rpc_idle_before_hello),
    cmocka_unit_test(rpc_duplicate_gateway_id),
    cmocka_unit_test(rpc_half_open_gateway),
    cmocka_unit_test(rpc_half_open_logicd),
    cmocka_unit_test(rpc_stopped_gatewayd),
    cmocka_unit_test(rpc_gateway_sends_admin),
    cmocka_unit_test(user_device_limit),
    cmocka_unit_test(mimctl_commands),
    cmocka_unit_test(mimctl_wrong_secret),
    cmocka_unit_test(mimctl_logicd_down),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "trust", all_tests, COUNT(all_tests), &WS, 170);
}
