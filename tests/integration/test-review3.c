/* Findings of an attacker-minded review of issue 13 and issue 10 code
 * (group notices and lists, metrics and health, service install), each
 * reproduced against the real daemons.
 *
 *   test-review3 [NAME]   runs every test, or only the test called NAME
 *
 * metrics_port_refuses_websockets  a websocket handshake on the operators'
 *                        port (metrics_listen) is refused: accepted, such a
 *                        socket had no timeout, and 64 of them shut the
 *                        port to Prometheus for as long as they stayed
 *
 * reload_warns_what_it_ignores  a SIGHUP after metrics_listen and
 *                        send_message_max changed says that a restart is
 *                        due (both are read only at start)
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
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
  int mport; /* metrics_listen port */
  char mflag[64];
  const char *gw_args[3];
};

#define PASSED(f) ((f)->passed = true)

static int setup(void **state, const char *name) {
  struct fixture *f = calloc(1, sizeof(*f));
  struct h_opts o;

  if (f == NULL)
    return -1;
  f->name = name;
  f->mport = h_free_port();
  snprintf(f->mflag, sizeof f->mflag, "127.0.0.1:%d", f->mport);
  f->gw_args[0] = "--metrics-listen";
  f->gw_args[1] = f->mflag;
  f->gw_args[2] = NULL;
  h_opts_init(&o);
  o.gatewayd_args = f->gw_args;
  h_watchdog(60, name);
  if (f->mport <= 0 || h_create(&f->h, WS, &o) != 0) {
    free(f);
    return -1;
  }
  if (h_start(f->h) != 0) {
    h_destroy(f->h);
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
    if (!f->passed) {
      fprintf(stderr, "[%s] failed; daemon logs follow\n", f->name);
      h_dump_logs(f->h);
    }
    if (f->passed && h_gatewayd_alive(f->h) &&
        h_stop_gatewayd(f->h, SIGTERM) != 0)
      r = -1;
    if (f->passed && h_logicd_alive(f->h) && h_stop_logicd(f->h, SIGTERM) != 0)
      r = -1;
    h_destroy(f->h);
    free(f);
  }
  *state = NULL;
  h_watchdog(0, NULL);
  return r;
}

#define SETUP(name)                                                            \
  static int setup_##name(void **state) { return setup(state, #name); }

/* A loopback connection to `port` with a 3 s receive timeout, or -1. */
static int dial(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  struct timeval tv = {.tv_sec = 3};
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Sends `req` on a new connection to `port`; the first bytes of the answer
 * (NUL-terminated, "" when the server closed or said nothing) go to `out`.
 * Returns the descriptor, left open, or -1. */
static int ask(int port, const char *req, char *out, size_t cap) {
  int fd = dial(port);
  out[0] = '\0';
  if (fd < 0)
    return -1;
  size_t n = strlen(req);
  if (write(fd, req, n) != (ssize_t)n) {
    close(fd);
    return -1;
  }
  ssize_t got = read(fd, out, cap - 1);
  out[got > 0 ? got : 0] = '\0';
  return fd;
}

static const char upgrade[] =
    "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

SETUP(metrics_port_refuses_websockets)
static void metrics_port_refuses_websockets(void **state) {
  struct fixture *f = *state;
  enum { CAP = 64 }; /* MIMD_METRICS_HTTP_CONNS */
  int fds[CAP];
  char rsp[512];

  /* as many handshakes as the port has room for: none is upgraded */
  for (int i = 0; i < CAP; i++) {
    fds[i] = ask(f->mport, upgrade, rsp, sizeof rsp);
    assert_true(fds[i] >= 0);
    assert_null(strstr(rsp, " 101 "));
  }
  /* and none holds a place: a scrape gets through while they are open */
  const char get[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\n\r\n";
  int fd = ask(f->mport, get, rsp, sizeof rsp);
  assert_true(fd >= 0);
  assert_non_null(strstr(rsp, "HTTP/1.1 200"));
  close(fd);
  for (int i = 0; i < CAP; i++)
    close(fds[i]);
  PASSED(f);
}

/* ---- reloads ---- */

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  assert_int_equal(fclose(f), 0);
}

static size_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Whether `path` holds `needle` past byte `from`, waiting up to 10 s. */
static bool log_has(const char *path, size_t from, const char *needle) {
  int64_t end = h_mono_ms() + 10000;
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

static int setup_plain(void **state) {
  *state = NULL;
  h_watchdog(120, "reload");
  return 0;
}

static int teardown_plain(void **state) {
  (void)state;
  tc_free_all();
  h_watchdog(0, NULL);
  return 0;
}

/* A careless operator edits metrics_listen and send_message_max and sends
 * SIGHUP: neither applies while running, and the log must say so, as it
 * does for every other setting read only at start. */
static void reload_warns_what_it_ignores(void **state) {
  (void)state;
  struct h_opts o;
  struct harness *h = NULL;
  h_opts_init(&o);
  assert_int_equal(h_create(&h, WS, &o), 0);
  int p1 = h_free_port(), p2 = h_free_port();
  assert_true(p1 > 0 && p2 > 0);
  char ini[400], text[400];
  snprintf(ini, sizeof ini, "%s/gatewayd.ini", h->root);
  snprintf(text, sizeof text,
           "[gateway]\nmetrics_listen = 127.0.0.1:%d\n"
           "send_message_max = 1048576\n", p1);
  write_file(ini, text);
  const char *const args[] = {"--config", ini, NULL};
  h->opts.gatewayd_args = args;
  assert_int_equal(h_start_logicd(h), 0);
  assert_int_equal(h_start_gatewayd(h), 0);

  size_t at = file_size(h->gw_log);
  snprintf(text, sizeof text,
           "[gateway]\nmetrics_listen = 127.0.0.1:%d\n"
           "send_message_max = 2097152\n", p2);
  write_file(ini, text);
  assert_int_equal(kill(h->gw_pid, SIGHUP), 0);
  bool reloaded = log_has(h->gw_log, at, "reloaded:");
  bool said_listen = log_has(h->gw_log, at, "metrics_listen changed");
  bool said_max = log_has(h->gw_log, at, "send_message_max changed");
  if (!reloaded || !said_listen || !said_max)
    h_dump_logs(h);
  assert_true(reloaded);
  assert_true(said_listen);
  assert_true(said_max);
  assert_true(h_gatewayd_alive(h));
  assert_int_equal(h_stop_gatewayd(h, SIGTERM), 0);
  assert_int_equal(h_stop_logicd(h, SIGTERM), 0);
  h_destroy(h);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

static const struct CMUnitTest all_tests[] = {
    T(metrics_port_refuses_websockets),
    cmocka_unit_test_setup_teardown(reload_warns_what_it_ignores, setup_plain,
                                    teardown_plain),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-review3", all_tests,
                COUNT(all_tests), &WS, 0);
}
