/* Findings of the security review of the trust and store changes
 * (docs/security.md §8), each tested against the real daemons.
 *
 *   test-review1 [NAME]   runs every test, or only the test called NAME
 *
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
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mim/codec.h>
#include <mim/rpc.h>

#include "harness.h"
#include "tclient.h"

static struct wsc_ctx *WS;

#define ADMIN_SECRET "operator-secret-0123456789abcdef"

struct run {
  int status; /* exit code, or 128 + signal, or -1 timed out (killed) */
  char err[16384];
};

/* Runs logicd with `flags` (NULL-terminated) for at most `timeout_ms`,
 * its stderr in res->err. A logicd still running then is killed: status -1
 * (it started, so the configuration was accepted). */
static void logicd_run(struct run *res, int timeout_ms,
                       const char *const *flags) {
  const char *argv[32];
  int n = 0;
  argv[n++] = h_logicd_path();
  while (*flags != NULL && n < 31)
    argv[n++] = *flags++;
  argv[n] = NULL;
  char ef[] = "/tmp/mim-review1-errXXXXXX";
  int e = mkstemp(ef);
  assert_true(e >= 0);
  unlink(ef);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
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
  lseek(e, 0, SEEK_SET);
  ssize_t got = read(e, res->err, sizeof res->err - 1);
  res->err[got > 0 ? got : 0] = '\0';
  close(e);
}

#define EXPECT_STATUS(r, st, what)                                             \
  do {                                                                         \
    if ((r)->status != (st))                                                   \
      fprintf(stderr, "%s: status %d\n--- stderr\n%s---\n", what,             \
              (r)->status, (r)->err);                                          \
    assert_int_equal((r)->status, (st));                                       \
  } while (0)

static void rm_rf(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
}

/* Without admin_secret, the admin socket's file mode (0600) is all that
 * stands between a local user and operator rights. logicd refuses to start
 * where that mode protects nothing: an abstract socket (no file, any local
 * user connects) and a directory others may write to (anyone can replace
 * the socket and receive mimctl's requests). With admin_secret the abstract
 * socket is allowed; a safe directory starts as before. */
static void admin_socket_unsafe_places(void **state) {
  (void)state;
  char root[] = "/tmp/mim-review1-XXXXXX";
  assert_non_null(mkdtemp(root));
  char data[300], open_dir[300], listen[400], abstract[100];
  snprintf(data, sizeof data, "%s/data", root);
  snprintf(open_dir, sizeof open_dir, "%s/open", root);
  assert_int_equal(mkdir(open_dir, 0700), 0);
  assert_int_equal(chmod(open_dir, 0777), 0); /* umask-proof */
  struct run res;

  /* an abstract socket without a secret */
  snprintf(abstract, sizeof abstract, "unix:@mim-review1-%d", (int)getpid());
  logicd_run(&res, 3000, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth",
      "--admin-listen", abstract, NULL});
  EXPECT_STATUS(&res, 2, "logicd abstract admin socket, no secret");
  assert_non_null(strstr(res.err, "abstract socket"));

  /* an admin socket in a world-writable directory */
  snprintf(listen, sizeof listen, "unix:%s/admin.sock", open_dir);
  logicd_run(&res, 3000, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth",
      "--admin-listen", listen, NULL});
  EXPECT_STATUS(&res, 2, "logicd admin socket in a 0777 directory");
  assert_non_null(strstr(res.err, "writable by others"));

  /* the default, data_dir/admin.sock, in a data_dir made 0777 */
  assert_int_equal(mkdir(data, 0700), 0);
  assert_int_equal(chmod(data, 0777), 0);
  logicd_run(&res, 3000, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth", NULL});
  EXPECT_STATUS(&res, 2, "logicd admin socket in a 0777 data_dir");
  assert_non_null(strstr(res.err, "writable by others"));

  /* accepted: the abstract socket with a secret, a 0700 data_dir (both keep
   * running until killed) */
  logicd_run(&res, 1500, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth",
      "--admin-listen", abstract, "--admin-secret", ADMIN_SECRET, NULL});
  EXPECT_STATUS(&res, -1, "logicd abstract admin socket with a secret");
  assert_int_equal(chmod(data, 0700), 0);
  logicd_run(&res, 1500, (const char *const[]){
      "--data-dir", data, "--listen", "127.0.0.1:0", "--dev-auth", NULL});
  EXPECT_STATUS(&res, -1, "logicd admin socket in a 0700 data_dir");
  rm_rf(root);
}

/* Whether `fd`'s peer closed within `ms` (reads and drops what comes). */
static bool closed_within(int fd, int ms) {
  int64_t deadline = h_mono_ms() + ms;
  char buf[4096];
  for (;;) {
    int left = (int)(deadline - h_mono_ms());
    if (left <= 0)
      return false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, left) <= 0)
      continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
      return true;
  }
}

/* A peer that has not sent HELLO (it needs no secret to connect) cannot
 * make logicd buffer more than a HELLO's worth: a header announcing a
 * 16 MiB HELLO followed by 64 KiB of it gets the link closed at once, long
 * before hello_timeout_s (60 s here). A real HELLO still works. */
static void rpc_big_frame_before_hello(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){"--hello-timeout-s", "60", NULL};
  struct harness *h = NULL;
  assert_int_equal(h_create(&h, WS, &o), 0);
  assert_int_equal(h_start_logicd(h), 0);

  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)h->logic_port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  uint8_t hdr[MIM_HEADER_SIZE];
  uint32_t f[3] = {htonl(MIM_RPC_VERSION), htonl(MIM_RPC_HELLO),
                   htonl(16u * 1024 * 1024)};
  memcpy(hdr, f, sizeof hdr);
  assert_int_equal(send(fd, hdr, sizeof hdr, MSG_NOSIGNAL), (ssize_t)sizeof hdr);
  static uint8_t junk[64 * 1024];
  memset(junk, 'x', sizeof junk);
  size_t sent = 0;
  while (sent < sizeof junk) {
    ssize_t n = send(fd, junk + sent, sizeof junk - sent, MSG_NOSIGNAL);
    if (n <= 0)
      break; /* already closed: what we want */
    sent += (size_t)n;
  }
  int64_t t0 = h_mono_ms();
  assert_true(closed_within(fd, 3000));
  assert_true(h_mono_ms() - t0 < 3000);
  close(fd);

  /* logicd still serves: a gateway links up */
  assert_int_equal(h_start_gatewayd(h), 0);
  assert_int_equal(h_wait_linked(h, 10000), 0);
  h_destroy(h);
}

/* Device names are the client's to choose, and each device that
 * acknowledged keeps a read cursor: logicd's user_cursors_max bounds them
 * per user. bob reads on three devices in turn with a limit of 2: the
 * first device's cursor (the one that read least) is gone when the third
 * writes its own, the other two are kept. */
static void user_cursors_are_bounded(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){"--user-cursors-max", "2",
                                        "--user-devices-max", "2",
                                        "--cursor-flush-ms", "0", NULL};
  struct harness *h = NULL;
  assert_int_equal(h_create(&h, WS, &o), 0);
  assert_int_equal(h_start(h), 0);
  struct tc *a = tc_login(h, "r1-alice", "phone");
  for (int i = 0; i < 3; i++)
    (void)tc_c2c(a, "r1-bob", "hi", NULL, NULL);
  static const char *const devs[] = {"dev-1", "dev-2", "dev-3"};
  for (int i = 0; i < 3; i++) {
    struct tc *b = tc_login(h, "r1-bob", devs[i]);
    struct mim_packet rsp;
    tc_pull(b, true, (uint64_t)(i + 1), 10, &rsp); /* acks up to i + 1 */
    mim_packet_finish(&rsp);
    tc_barrier(b);
    tc_free(b);
    usleep(300 * 1000); /* the cursor reaches the store */
  }
  uint64_t want[] = {0, 2, 3};
  for (int i = 0; i < 3; i++) {
    struct tc *b = tc_login(h, "r1-bob", devs[i]);
    if (b->ack_seq != want[i])
      fail_msg("%s logged in again: ack_seq %llu, want %llu", devs[i],
               (unsigned long long)b->ack_seq, (unsigned long long)want[i]);
    tc_free(b);
  }
  tc_free(a);
  h_destroy(h);
}

/* Encodes `r` into `buf` (cap bytes); returns the frame's length. */
static size_t rpc_frame(const struct mim_rpc *r, uint8_t *buf, size_t cap) {
  size_t len = 0;
  assert_int_equal(mim_rpc_encode(r, buf, cap, &len), 0);
  return len;
}

/* Reads frames from blocking `fd` until one of `cmd` (with req_id `id` when
 * id != 0) arrives, or `ms` pass. Returns whether it came. */
static bool await_rpc(int fd, struct mim_stream_decoder *d, uint32_t cmd,
                      uint64_t id, int ms, struct mim_rpc *out) {
  int64_t deadline = h_mono_ms() + ms;
  uint8_t buf[65536];
  for (;;) {
    struct mim_frame f;
    while (mim_stream_decoder_next(d, &f) == 0) {
      if (f.header.cmd != cmd)
        continue;
      mim_rpc_init(out);
      assert_int_equal(mim_rpc_decode(out, cmd, f.body, f.header.body_len), 0);
      if (id == 0 || out->req_id == id)
        return true;
      mim_rpc_finish(out);
    }
    int left = (int)(deadline - h_mono_ms());
    if (left <= 0)
      return false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, left) <= 0)
      continue;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      return false;
    assert_int_equal(mim_stream_decoder_feed(d, buf, (size_t)n), 0);
  }
}

/* A gateway that sends PINGs and reads nothing is paused when its PONGs
 * reach the pause mark (logicd stops reading it), as a link whose replies
 * pile up is, instead of being cut off at rpc_queue_max_mb: cutting the
 * link would cut off every user of that gateway. Once it reads, it is
 * served again. Small marks (pause 64 KiB, cut 1 MiB) keep the flood
 * short. */
static void rpc_ping_flood_pauses(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  o.logicd_args = (const char *const[]){
      "--rpc-queue-max-mb", "1", "--rpc-queue-pause-kb", "64",
      "--rpc-queue-resume-kb", "16", "--content-max", "1024",
      "--reply-bytes-max", "8192", "--group-members-max", "1000", NULL};
  struct harness *h = NULL;
  assert_int_equal(h_create(&h, WS, &o), 0);
  assert_int_equal(h_start_logicd(h), 0);

  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)h->logic_port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  struct mim_stream_decoder *d = NULL;
  assert_int_equal(mim_stream_decoder_create(&d, 0), 0);
  static uint8_t buf[1 << 17];
  struct mim_rpc r, got;
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_HELLO;
  r.version = MIM_RPC_VERSION;
  r.gateway_id = "gw-flood";
  r.secret = h->rpc_secret;
  size_t n = rpc_frame(&r, buf, sizeof buf);
  assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
  assert_true(await_rpc(fd, d, MIM_RPC_HELLO_ACK, 0, 5000, &got));
  assert_int_equal(got.status, 0);
  mim_rpc_finish(&got);

  /* a block of PINGs, sent without reading for up to 8 s / 64 MiB, until
   * logicd stops taking them (1.5 s without progress) or cuts us off */
  size_t blk = 0;
  for (uint64_t i = 1; blk + 32 < sizeof buf; i++) {
    mim_rpc_init(&r);
    r.cmd = MIM_RPC_PING;
    r.req_id = i;
    blk += rpc_frame(&r, buf + blk, sizeof buf - blk);
  }
  assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
  bool cut = false;
  size_t total = 0, off = 0;
  int64_t t_end = h_mono_ms() + 8000, last_progress = h_mono_ms();
  while (h_mono_ms() < t_end && total < ((size_t)64 << 20)) {
    ssize_t w = send(fd, buf + off, blk - off, MSG_NOSIGNAL);
    if (w > 0) {
      total += (size_t)w;
      off = (off + (size_t)w) % blk;
      last_progress = h_mono_ms();
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (h_mono_ms() - last_progress > 1500)
        break; /* logicd stopped taking them: paused */
      usleep(20000);
    } else {
      cut = true; /* EPIPE / ECONNRESET: logicd closed the link */
      break;
    }
  }
  if (cut)
    fail_msg("logicd cut the link after %zu bytes of PINGs", total);

  /* Once it reads, it is served again: read the PONGs while finishing the
   * block that was cut short, then a PING of our own comes back. */
  mim_rpc_init(&r);
  r.cmd = MIM_RPC_PING;
  r.req_id = UINT64_C(1) << 40;
  static uint8_t last[64];
  size_t last_len = rpc_frame(&r, last, sizeof last), last_off = 0;
  bool ponged = false;
  int64_t t_drain = h_mono_ms() + 20000;
  static uint8_t in[65536];
  while (!ponged && h_mono_ms() < t_drain) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (off != 0 || last_off < last_len)
      p.events |= POLLOUT;
    if (poll(&p, 1, 200) <= 0)
      continue;
    if (p.revents & POLLIN) {
      ssize_t got_n = recv(fd, in, sizeof in, 0);
      if (got_n == 0 || (got_n < 0 && errno != EAGAIN && errno != EINTR))
        fail_msg("logicd closed the link while it was being drained");
      if (got_n > 0)
        assert_int_equal(mim_stream_decoder_feed(d, in, (size_t)got_n), 0);
      struct mim_frame f;
      while (mim_stream_decoder_next(d, &f) == 0) {
        if (f.header.cmd != MIM_RPC_PONG)
          continue;
        mim_rpc_init(&got);
        assert_int_equal(mim_rpc_decode(&got, f.header.cmd, f.body,
                                        f.header.body_len), 0);
        ponged |= got.req_id == r.req_id;
        mim_rpc_finish(&got);
      }
    }
    if (p.revents & POLLOUT) {
      ssize_t w = off != 0 ? send(fd, buf + off, blk - off, MSG_NOSIGNAL)
                           : send(fd, last + last_off, last_len - last_off,
                                  MSG_NOSIGNAL);
      if (w > 0 && off != 0)
        off = (off + (size_t)w) % blk;
      else if (w > 0)
        last_off += (size_t)w;
    }
  }
  assert_true(ponged);
  mim_stream_decoder_destroy(d);
  close(fd);
  h_destroy(h);
}

/* ---- main ---- */

static const struct CMUnitTest all_tests[] = {
    cmocka_unit_test(admin_socket_unsafe_places),
    cmocka_unit_test(rpc_big_frame_before_hello),
    cmocka_unit_test(user_cursors_are_bounded),
    cmocka_unit_test(rpc_ping_flood_pauses),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "review1", all_tests, COUNT(all_tests), &WS, 170);
}
