/* Running as a service (docs/operations.md, section 13): readiness and
 * stop notifications on a real $NOTIFY_SOCKET, and what SIGHUP reloads in
 * each daemon, against the real daemons and the real mimctl.
 *
 *   test-service [NAME]   runs every test, or only the test called NAME
 *
 * The notification socket is an AF_UNIX datagram socket the test binds in
 * the harness's temporary directory; the daemons inherit NOTIFY_SOCKET from
 * the environment, as under systemd. Exit status 77 when the daemons are
 * not built (or were built without libsystemd, for the notify tests).
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

static struct harness *make(const struct h_opts *o) {
  struct harness *h = NULL;
  assert_int_equal(h_create(&h, WS, o), 0);
  return h;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
  assert_int_equal(chmod(path, 0600), 0);
}

/* ---- the notification socket ---- */

/* Binds a datagram socket at ROOT/NAME and points NOTIFY_SOCKET at it for
 * the daemons started next. */
static int notify_socket(const struct harness *h, const char *name) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  assert_true(strlen(h->root) + 1 + strlen(name) < sizeof a.sun_path);
  memcpy(a.sun_path, h->root, strlen(h->root));
  a.sun_path[strlen(h->root)] = '/';
  memcpy(a.sun_path + strlen(h->root) + 1, name, strlen(name) + 1);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(setenv("NOTIFY_SOCKET", a.sun_path, 1), 0);
  return fd;
}

/* Waits up to `ms` for a datagram holding the line `want` ("READY=1");
 * every datagram read is appended to `seen`. Returns 0 or -ETIMEDOUT. */
static int await_notify(int fd, const char *want, int ms, char *seen,
                        size_t cap) {
  int64_t end = h_mono_ms() + ms;
  for (;;) {
    int left = (int)(end - h_mono_ms());
    if (left <= 0)
      return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, left) <= 0)
      continue;
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
      continue;
    buf[n] = '\0';
    size_t used = strlen(seen);
    snprintf(seen + used, cap - used, "[%s]", buf);
    /* a line of its own: at the start or after a newline */
    for (char *s = strstr(buf, want); s != NULL; s = strstr(s + 1, want))
      if ((s == buf || s[-1] == '\n') &&
          (s[strlen(want)] == '\0' || s[strlen(want)] == '\n'))
        return 0;
  }
}

#define EXPECT_NOTIFY(fd, want, seen)                                          \
  do {                                                                         \
    int rc_ = await_notify(fd, want, 10000, seen, sizeof(seen));               \
    if (rc_ != 0)                                                              \
      fprintf(stderr, "no %s; received: %s\n", want, seen);                    \
    assert_int_equal(rc_, 0);                                                  \
  } while (0)

/* Whether something accepts TCP connections on 127.0.0.1:port now. */
static bool accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

/* Built with libsystemd? The daemons say nothing otherwise: skip. */
static bool notify_built(void) {
  const char *v = getenv("MIM_HAVE_SYSTEMD");
  return v != NULL && strcmp(v, "1") == 0;
}

/* ---- logs ---- */

static size_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Whether `path` holds `needle` past byte `from`, waiting up to `ms`. */
static bool log_has(const char *path, size_t from, const char *needle,
                    int ms) {
  int64_t end = h_mono_ms() + ms;
  do {
    FILE *f = fopen(path, "r");
    if (f != NULL) {
      static char buf[1 << 20];
      fseek(f, (long)from, SEEK_SET);
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      fclose(f);
      buf[n] = '\0';
      if (strstr(buf, needle) != NULL)
        return true;
    }
    usleep(20000);
  } while (h_mono_ms() < end);
  return false;
}

#define EXPECT_LOG(h, path, from, needle)                                      \
  do {                                                                         \
    if (!log_has(path, from, needle, 10000)) {                                 \
      fprintf(stderr, "log lacks \"%s\"\n", needle);                           \
      h_dump_logs(h);                                                          \
      fail();                                                                  \
    }                                                                          \
  } while (0)

/* ---- a program's status and output ---- */

/* Runs `argv` (15 s at most), output in `out`; returns its exit status. */
static int run(const char *const *argv, char *out, size_t cap) {
  char tmpl[] = "/tmp/mim-service-XXXXXX";
  int fd = mkstemp(tmpl);
  assert_true(fd >= 0);
  unlink(tmpl);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  int status = -1;
  int64_t end = h_mono_ms() + 15000;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (h_mono_ms() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(20000);
  }
  lseek(fd, 0, SEEK_SET);
  ssize_t n = read(fd, out, cap - 1);
  out[n > 0 ? n : 0] = '\0';
  close(fd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- readiness ---- */

/* logicd says READY=1 once its listener accepts (not before: the
 * connection made right after READY=1 succeeds), and STOPPING=1 on
 * SIGTERM, before it exits 0. */
static void notify_logicd(void **state) {
  (void)state;
  if (!notify_built())
    skip();
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = make(&o);
  char seen[4096] = "";
  int fd = notify_socket(h, "notify-logicd");
  assert_int_equal(h_start_logicd(h), 0);
  unsetenv("NOTIFY_SOCKET");
  EXPECT_NOTIFY(fd, "READY=1", seen);
  assert_true(accepts(h->logic_port));
  assert_non_null(strstr(seen, "STATUS=serving on 127.0.0.1:"));
  assert_null(strstr(seen, "STOPPING=1"));
  assert_int_equal(h_stop_logicd(h, SIGTERM), 0);
  EXPECT_NOTIFY(fd, "STOPPING=1", seen);
  close(fd);
  h_destroy(h);
}

/* gatewayd: READY=1 once its client listener accepts, STOPPING=1 on
 * SIGTERM. */
static void notify_gatewayd(void **state) {
  (void)state;
  if (!notify_built())
    skip();
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = make(&o);
  assert_int_equal(h_start_logicd(h), 0);
  char seen[4096] = "";
  int fd = notify_socket(h, "notify-gatewayd");
  assert_int_equal(h_start_gatewayd(h), 0);
  unsetenv("NOTIFY_SOCKET");
  EXPECT_NOTIFY(fd, "READY=1", seen);
  assert_true(accepts(h->gw_port));
  assert_non_null(strstr(seen, "STATUS=serving ws://"));
  assert_int_equal(h_stop_gatewayd(h, SIGTERM), 0);
  EXPECT_NOTIFY(fd, "STOPPING=1", seen);
  close(fd);
  h_destroy(h);
}

/* ---- reloads ---- */

/* logicd on SIGHUP: RELOADING=1 then READY=1; the new log_level applies
 * (debug lines appear); a broken file changes nothing and logicd runs
 * on; SIGHUP no longer terminates it. */
static void reload_logicd_log_level(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = make(&o);
  char ini[400];
  snprintf(ini, sizeof ini, "%s/logicd.ini", h->root);
  write_file(ini, "[logic]\nlog_level = info\n");
  const char *const args[] = {"--config", ini, NULL};
  h->opts.logicd_args = args;
  int fd = -1;
  char seen[4096] = "";
  if (notify_built())
    fd = notify_socket(h, "notify-reload");
  assert_int_equal(h_start_logicd(h), 0);
  unsetenv("NOTIFY_SOCKET");
  if (fd >= 0)
    EXPECT_NOTIFY(fd, "READY=1", seen);

  size_t at = file_size(h->logic_log);
  write_file(ini, "[logic]\nlog_level = debug\nmap_size_mb = 128\n");
  assert_int_equal(kill(h->logic_pid, SIGHUP), 0);
  EXPECT_LOG(h, h->logic_log, at, "reloaded: log_level debug");
  EXPECT_LOG(h, h->logic_log, at,
             "reload: map_size_mb changed; it takes effect at the next "
             "restart");
  if (fd >= 0) {
    seen[0] = '\0';
    EXPECT_NOTIFY(fd, "RELOADING=1", seen);
    EXPECT_NOTIFY(fd, "READY=1", seen);
  }
  /* a debug line: an RPC link (the gateway) arriving */
  assert_int_equal(h_start_gatewayd(h), 0);
  EXPECT_LOG(h, h->logic_log, at, " DEBUG logicd: RPC link from");

  at = file_size(h->logic_log);
  write_file(ini, "[logic]\nlog_level = loud\n");
  assert_int_equal(kill(h->logic_pid, SIGHUP), 0);
  EXPECT_LOG(h, h->logic_log, at, "keeping the running settings");
  usleep(200000);
  assert_true(h_logicd_alive(h));
  if (fd >= 0)
    close(fd);
  assert_int_equal(h_stop_gatewayd(h, SIGTERM), 0);
  assert_int_equal(h_stop_logicd(h, SIGTERM), 0);
  h_destroy(h);
}

static int mimctl_push(const struct harness *h, const char *secret_file,
                       char *out, size_t cap) {
  char logic[400];
  snprintf(logic, sizeof logic, "unix:%s/admin.sock", h->data_dir);
  const char *const argv[] = {h_mimctl_path(), "--logic", logic,
                              "--admin-secret-file", secret_file, "push",
                              "--text", "reload test", "alice", NULL};
  return run(argv, out, cap);
}

/* admin_secret_file is re-read on SIGHUP: the old secret stops working
 * for mimctl, the new one works. */
static void reload_logicd_admin_secret(void **state) {
  (void)state;
  if (h_mimctl_path() == NULL)
    skip();
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = make(&o);
  char ini[400], secret[400], old_copy[400], out[4096];
  snprintf(ini, sizeof ini, "%s/logicd.ini", h->root);
  snprintf(secret, sizeof secret, "%s/admin.secret", h->root);
  snprintf(old_copy, sizeof old_copy, "%s/admin.secret.old", h->root);
  write_file(secret, "first-admin-secret-0123456789\n");
  write_file(old_copy, "first-admin-secret-0123456789\n");
  char text[600];
  snprintf(text, sizeof text, "[logic]\nadmin_secret_file = %s\n", secret);
  write_file(ini, text);
  const char *const args[] = {"--config", ini, NULL};
  h->opts.logicd_args = args;
  assert_int_equal(h_start_logicd(h), 0);
  int st = mimctl_push(h, secret, out, sizeof out);
  if (st != 0)
    fprintf(stderr, "mimctl: %s\n", out);
  assert_int_equal(st, 0);

  size_t at = file_size(h->logic_log);
  write_file(secret, "second-admin-secret-9876543210\n");
  assert_int_equal(kill(h->logic_pid, SIGHUP), 0);
  EXPECT_LOG(h, h->logic_log, at, "admin_secret changed");
  assert_int_equal(mimctl_push(h, old_copy, out, sizeof out), 1);
  assert_non_null(strstr(out, "wrong admin secret"));
  st = mimctl_push(h, secret, out, sizeof out);
  if (st != 0)
    fprintf(stderr, "mimctl: %s\n", out);
  assert_int_equal(st, 0);
  assert_int_equal(h_stop_logicd(h, SIGTERM), 0);
  h_destroy(h);
}

/* The status of GET /api/v1/users/alice/groups on logicd's HTTP API with
 * `key` as the bearer, or -1 (no connection or answer within 5 s). */
static int api_status(int port, const char *key) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int status = -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /api/v1/users/alice/groups HTTP/1.1\r\n"
                     "Host: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     "Connection: close\r\n\r\n", key);
    char buf[64] = "";
    size_t got = 0;
    ssize_t r = 0;
    if (write(fd, req, (size_t)n) == n)
      while (got < sizeof buf - 1 &&
             (r = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
      status = -1;
  }
  close(fd);
  return status;
}

/* Polls api_status() until it is `want` (up to 10 s): logicd may still be
 * opening its HTTP listener. */
static int api_status_wait(int port, const char *key, int want) {
  int st = -1;
  for (int i = 0; i < 100 && (st = api_status(port, key)) != want; i++)
    usleep(100000);
  return st;
}

/* logicd on SIGHUP applies a new api_key_file: the old key is refused
 * (401) and the new one accepted, without a restart; a changed HTTP limit
 * is logged as restart-only; a reload that finds the key file empty keeps
 * the running keys. */
static void reload_logicd_api_keys(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = make(&o);
  static const char old_key[] = "old-api-key-0123456789abcdef";
  static const char new_key[] = "new-api-key-fedcba9876543210";
  char ini[400], keys[400], text[1000];
  snprintf(ini, sizeof ini, "%s/logicd.ini", h->root);
  snprintf(keys, sizeof keys, "%s/api.keys", h->root);
  int port = h_free_port();
  write_file(keys, "# the backend's key\nold-api-key-0123456789abcdef\n");
  snprintf(text, sizeof text,
           "[logic]\nhttp_listen = 127.0.0.1:%d\napi_key_file = %s\n", port,
           keys);
  write_file(ini, text);
  const char *const args[] = {"--config", ini, NULL};
  h->opts.logicd_args = args;
  int fd = -1;
  char seen[4096] = "";
  if (notify_built())
    fd = notify_socket(h, "notify-keys");
  assert_int_equal(h_start_logicd(h), 0);
  unsetenv("NOTIFY_SOCKET");
  if (fd >= 0)
    EXPECT_NOTIFY(fd, "READY=1", seen);
  assert_int_equal(api_status_wait(port, old_key, 200), 200);
  assert_int_equal(api_status(port, new_key), 401);

  size_t at = file_size(h->logic_log);
  write_file(keys, "new-api-key-fedcba9876543210\n");
  /* an HTTP limit is restart-only: logged as such */
  snprintf(text, sizeof text,
           "[logic]\nhttp_listen = 127.0.0.1:%d\napi_key_file = %s\n"
           "http_timeout_s = 20\n", port, keys);
  write_file(ini, text);
  assert_int_equal(kill(h->logic_pid, SIGHUP), 0);
  if (fd >= 0) {
    seen[0] = '\0';
    EXPECT_NOTIFY(fd, "RELOADING=1", seen);
    EXPECT_NOTIFY(fd, "READY=1", seen);
  }
  EXPECT_LOG(h, h->logic_log, at, "API keys changed");
  EXPECT_LOG(h, h->logic_log, at,
             "reload: http_timeout_s changed; it takes effect at the next "
             "restart");
  assert_int_equal(api_status(port, old_key), 401);
  assert_int_equal(api_status(port, new_key), 200);

  /* an empty key file (a half-done rotation): the running keys stay */
  at = file_size(h->logic_log);
  write_file(keys, "");
  assert_int_equal(kill(h->logic_pid, SIGHUP), 0);
  if (fd >= 0) {
    seen[0] = '\0';
    EXPECT_NOTIFY(fd, "RELOADING=1", seen);
    EXPECT_NOTIFY(fd, "READY=1", seen);
  }
  EXPECT_LOG(h, h->logic_log, at, "keeping the running API keys");
  assert_int_equal(api_status(port, new_key), 200);
  assert_int_equal(api_status(port, old_key), 401);
  assert_true(h_logicd_alive(h));
  if (fd >= 0)
    close(fd);
  assert_int_equal(h_stop_logicd(h, SIGTERM), 0);
  h_destroy(h);
}

/* gatewayd on SIGHUP: the new log_level applies, a broken file changes
 * nothing, and it keeps running. */
static void reload_gatewayd_log_level(void **state) {
  (void)state;
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = make(&o);
  char ini[400];
  snprintf(ini, sizeof ini, "%s/gatewayd.ini", h->root);
  write_file(ini, "[gateway]\nlog_level = info\n");
  const char *const args[] = {"--config", ini, NULL};
  h->opts.gatewayd_args = args;
  int fd = -1;
  char seen[4096] = "";
  assert_int_equal(h_start_logicd(h), 0);
  if (notify_built())
    fd = notify_socket(h, "notify-gw-reload");
  assert_int_equal(h_start_gatewayd(h), 0);
  unsetenv("NOTIFY_SOCKET");
  if (fd >= 0)
    EXPECT_NOTIFY(fd, "READY=1", seen);

  size_t at = file_size(h->gw_log);
  write_file(ini, "[gateway]\nlog_level = debug\nsend_queue_bytes = 2097152\n");
  assert_int_equal(kill(h->gw_pid, SIGHUP), 0);
  EXPECT_LOG(h, h->gw_log, at, "reloaded: log_level debug");
  EXPECT_LOG(h, h->gw_log, at, "reload: send_queue_bytes changed");
  if (fd >= 0) {
    seen[0] = '\0';
    EXPECT_NOTIFY(fd, "RELOADING=1", seen);
    EXPECT_NOTIFY(fd, "READY=1", seen);
  }
  /* a debug line: a client connection opening */
  assert_true(accepts(h->gw_port));
  struct wsc_client *c = NULL;
  if (wsc_connect(WS, h->gw_port, "/ws", &c) == 0)
    wsc_close(c);
  EXPECT_LOG(h, h->gw_log, at, " DEBUG gatewayd: ");

  at = file_size(h->gw_log);
  write_file(ini, "[gateway]\nlog_level = loud\n");
  assert_int_equal(kill(h->gw_pid, SIGHUP), 0);
  EXPECT_LOG(h, h->gw_log, at, "keeping the running settings");
  usleep(200000);
  assert_true(h_gatewayd_alive(h));
  if (fd >= 0)
    close(fd);
  assert_int_equal(h_stop_gatewayd(h, SIGTERM), 0);
  assert_int_equal(h_stop_logicd(h, SIGTERM), 0);
  h_destroy(h);
}

/* ---- TLS certificates ---- */

/* The SHA-256 fingerprint of a certificate file, or of the one served on
 * 127.0.0.1:port (crt NULL). */
static void fingerprint(const char *crt, int port, char *out, size_t cap) {
  char cmd[800];
  if (crt != NULL)
    snprintf(cmd, sizeof cmd,
             "openssl x509 -in '%s' -noout -fingerprint -sha256", crt);
  else
    snprintf(cmd, sizeof cmd,
             "timeout 10 openssl s_client -connect 127.0.0.1:%d "
             "</dev/null 2>/dev/null | openssl x509 -noout -fingerprint "
             "-sha256",
             port);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  out[0] = '\0';
  if (fgets(out, (int)cap, p) == NULL)
    out[0] = '\0';
  pclose(p);
}

static void copy_file(const char *from, const char *to) {
  char cmd[900];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
  assert_int_equal(system(cmd), 0);
}

/* gatewayd serving wss:// re-reads tls_cert/tls_key on SIGHUP: new
 * handshakes get the new certificate; a key that does not match is
 * refused and the served certificate stays. */
static void reload_gatewayd_tls(void **state) {
  (void)state;
  if (system("openssl version >/dev/null 2>&1") != 0)
    skip();
  struct h_opts o;
  h_opts_init(&o);
  struct harness *h = make(&o);
  char crt1[400], key1[400], crt2[400], key2[400], crt[400], key[400];
  assert_int_equal(h_make_cert(h, "one", "one", crt1, key1, sizeof crt1), 0);
  assert_int_equal(h_make_cert(h, "two", "two", crt2, key2, sizeof crt2), 0);
  snprintf(crt, sizeof crt, "%s/served.crt", h->root);
  snprintf(key, sizeof key, "%s/served.key", h->root);
  copy_file(crt1, crt);
  copy_file(key1, key);
  char ini[400], text[1200];
  snprintf(ini, sizeof ini, "%s/gatewayd.ini", h->root);
  snprintf(text, sizeof text, "[gateway]\ntls_cert = %s\ntls_key = %s\n",
           crt, key);
  write_file(ini, text);
  const char *const args[] = {"--config", ini, NULL};
  h->opts.gatewayd_args = args;
  assert_int_equal(h_start_logicd(h), 0);
  assert_int_equal(h_start_gatewayd(h), 0);

  char want1[200], want2[200], got[200];
  fingerprint(crt1, 0, want1, sizeof want1);
  fingerprint(crt2, 0, want2, sizeof want2);
  assert_string_not_equal(want1, want2);
  fingerprint(NULL, h->gw_port, got, sizeof got);
  assert_string_equal(got, want1);

  size_t at = file_size(h->gw_log);
  copy_file(crt2, crt);
  copy_file(key2, key);
  assert_int_equal(kill(h->gw_pid, SIGHUP), 0);
  EXPECT_LOG(h, h->gw_log, at, "tls reloaded");
  fingerprint(NULL, h->gw_port, got, sizeof got);
  assert_string_equal(got, want2);

  /* a mismatched pair (half of a renewal) is refused */
  at = file_size(h->gw_log);
  copy_file(crt1, crt);
  assert_int_equal(kill(h->gw_pid, SIGHUP), 0);
  EXPECT_LOG(h, h->gw_log, at, "tls_key does not match tls_cert");
  EXPECT_LOG(h, h->gw_log, at, "tls kept");
  fingerprint(NULL, h->gw_port, got, sizeof got);
  assert_string_equal(got, want2);
  assert_true(h_gatewayd_alive(h));
  assert_int_equal(h_stop_gatewayd(h, SIGTERM), 0);
  assert_int_equal(h_stop_logicd(h, SIGTERM), 0);
  h_destroy(h);
}

/* ---- main ---- */

static const struct CMUnitTest all_tests[] = {
    cmocka_unit_test(notify_logicd),
    cmocka_unit_test(notify_gatewayd),
    cmocka_unit_test(reload_logicd_log_level),
    cmocka_unit_test(reload_logicd_admin_secret),
    cmocka_unit_test(reload_logicd_api_keys),
    cmocka_unit_test(reload_gatewayd_log_level),
    cmocka_unit_test(reload_gatewayd_tls),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "service", all_tests, COUNT(all_tests), &WS, 170);
}
