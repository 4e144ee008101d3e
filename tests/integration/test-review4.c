/* Findings of an attacker-minded review of the HTTP API, webhooks and the
 * raw TCP gateway (issues 10 and 11), each reproduced against the real
 * daemons.
 *
 *   test-review4 [NAME]   runs every test, or only the test called NAME
 *
 * api_refuses_transfer_encoding  a request with both Transfer-Encoding
 *                        and Content-Length was read by its Content-Length
 *                        and the connection kept: behind a proxy that goes
 *                        by Transfer-Encoding (RFC 9112 §6.3 says it wins),
 *                        the rest of the chunked body was taken as a second
 *                        request (request smuggling). It is now refused and
 *                        the connection closed.
 *
 * api_pipelined_body_no_hang  a request with a body pipelined behind
 *                        another (GET /healthz, then a POST, in one write,
 *                        no API key needed) made lws call BODY_COMPLETION
 *                        in an endless loop inside one service call:
 *                        logicd's loop spun at 100% CPU for good (no HTTP,
 *                        no RPC, deaf to SIGTERM). Now the connection
 *                        closes and logicd serves on.
 *
 * gw_body_requests_closed  the same spin, in gatewayd: a POST with a body
 *                        pipelined behind a GET, on the public port
 *                        (anyone on the internet) or on metrics_listen,
 *                        hung gatewayd's loop (every client with it). Both
 *                        GET-only ports now close a request with a body.
 *
 * Each test gets its own daemons. Exit status 77 (skipped) when the
 * daemons are not built.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "tclient.h"
#include "wsclient.h"

static struct wsc_ctx *WS;

#define KEY "review4-api-key-0123456789"

/* Reads what the peer sends until it closes (or `ms` pass) into `buf`;
 * returns whether it closed. */
static bool read_until_closed(int fd, int ms, char *buf, size_t cap) {
  int64_t end = h_mono_ms() + ms;
  size_t got = 0;
  buf[0] = '\0';
  while (h_mono_ms() < end) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) <= 0)
      continue;
    ssize_t r = read(fd, buf + got, cap - 1 - got);
    if (r <= 0)
      return true;
    got += (size_t)r;
    buf[got] = '\0';
  }
  return false;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* ---- fixture: logicd alone, with the HTTP API on a free port ---- */

struct fixture {
  struct harness *h;
  bool passed;
  const char *name;
  int port;
  char listen[64];
  const char *args[8];
};

static int setup_api(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  struct h_opts o;
  if (f == NULL)
    return -1;
  f->name = "api";
  f->port = h_free_port();
  snprintf(f->listen, sizeof f->listen, "127.0.0.1:%d", f->port);
  size_t n = 0;
  f->args[n++] = "--http-listen";
  f->args[n++] = f->listen;
  f->args[n++] = "--api-key";
  f->args[n++] = KEY;
  f->args[n] = NULL;
  h_opts_init(&o);
  o.logicd_args = f->args;
  h_watchdog(60, f->name);
  if (f->port <= 0 || h_create(&f->h, WS, &o) != 0) {
    free(f);
    return -1;
  }
  if (h_start_logicd(f->h) != 0) {
    h_dump_logs(f->h);
    h_destroy(f->h);
    free(f);
    return -1;
  }
  h_watchdog(120, f->name);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  h_watchdog(60, "teardown");
  tc_free_all();
  if (f != NULL) {
    if (!f->passed) {
      fprintf(stderr, "[%s] failed; daemon logs follow\n", f->name);
      h_dump_logs(f->h);
    }
    h_destroy(f->h);
    free(f);
  }
  return 0;
}

/* ---- the findings ---- */

/* TE.CL smuggling: the front end goes by Transfer-Encoding and forwards
 * the whole chunked body; logicd went by Content-Length (4: the chunk
 * size line) and read the chunk's data as the next request, here a
 * presence query the front end never saw. Now: one answer (400), then
 * the connection closes. */
static void api_refuses_transfer_encoding(void **state) {
  struct fixture *f = *state;
  const char *smuggled = "GET /api/v1/presence?uid=smuggled HTTP/1.1\r\n"
                         "Host: x\r\nAuthorization: Bearer " KEY "\r\n\r\n";
  char req[1024], ans[8192];
  int n = snprintf(req, sizeof req,
                   "POST /api/v1/push HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer " KEY "\r\n"
                   "Content-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                   "%zx\r\n%s\r\n0\r\n\r\n",
                   strlen(smuggled), smuggled);
  assert_true(n > 0 && (size_t)n < sizeof req);
  int fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, req, (size_t)n), n);
  bool closed = read_until_closed(fd, 3000, ans, sizeof ans);
  close(fd);
  assert_null(strstr(ans, "smuggled"));
  assert_int_equal(count(ans, "HTTP/1.1 "), 1);
  assert_non_null(strstr(ans, "HTTP/1.1 400"));
  assert_true(closed);
  /* a chunked body without a length is still 411 */
  fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  const char *chunked = "POST /api/v1/push HTTP/1.1\r\nHost: x\r\n"
                        "Authorization: Bearer " KEY "\r\n"
                        "Content-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
  assert_int_equal(write(fd, chunked, strlen(chunked)),
                   (ssize_t)strlen(chunked));
  assert_true(read_until_closed(fd, 3000, ans, sizeof ans));
  close(fd);
  assert_non_null(strstr(ans, "HTTP/1.1 411"));
  f->passed = true;
}

/* Pipelined requests with bodies: logicd must answer a fresh connection
 * afterwards (and stop on SIGTERM, checked by the harness's teardown). */
static void api_pipelined_body_no_hang(void **state) {
  struct fixture *f = *state;
  const char *body = "{\"to\":[\"a\"],\"content\":\"x\"}";
  char req[2048], ans[8192];
  int n = snprintf(req, sizeof req,
                   "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                   "POST /api/v1/push HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer not-the-key\r\n"
                   "Content-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   strlen(body), body);
  int fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, req, (size_t)n), n);
  read_until_closed(fd, 1000, ans, sizeof ans);
  close(fd);
  /* the same with a key: the first answer waits for a commit */
  n = snprintf(req, sizeof req,
               "POST /api/v1/push HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer " KEY "\r\n"
               "Content-Type: application/json\r\n"
               "Content-Length: %zu\r\n\r\n%s",
               strlen(body), body);
  char two[4096];
  snprintf(two, sizeof two, "%s%s", req, req);
  fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, two, strlen(two)), (ssize_t)strlen(two));
  read_until_closed(fd, 1000, ans, sizeof ans);
  close(fd);
  /* logicd still answers */
  fd = h_tcp_connect(f->port);
  assert_true(fd >= 0);
  const char *get = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n";
  assert_int_equal(write(fd, get, strlen(get)), (ssize_t)strlen(get));
  read_until_closed(fd, 3000, ans, sizeof ans);
  close(fd);
  assert_non_null(strstr(ans, "\"status\":\"ok\""));
  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);
  f->passed = true;
}

static int setup_gw(void **state) {
  struct fixture *f = calloc(1, sizeof *f);
  struct h_opts o;
  if (f == NULL)
    return -1;
  f->name = "gw";
  f->port = h_free_port(); /* metrics_listen */
  snprintf(f->listen, sizeof f->listen, "127.0.0.1:%d", f->port);
  f->args[0] = "--metrics-listen";
  f->args[1] = f->listen;
  f->args[2] = NULL;
  h_opts_init(&o);
  o.gatewayd_args = f->args;
  h_watchdog(60, f->name);
  if (f->port <= 0 || h_create(&f->h, WS, &o) != 0) {
    free(f);
    return -1;
  }
  if (h_start(f->h) != 0) {
    h_dump_logs(f->h);
    h_destroy(f->h);
    free(f);
    return -1;
  }
  h_watchdog(120, f->name);
  *state = f;
  return 0;
}

/* A GET, then a POST with a body, in one write, on each of gatewayd's
 * HTTP ports; then /healthz on a fresh connection must still answer. */
static void gw_body_requests_closed(void **state) {
  struct fixture *f = *state;
  const char *two = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                    "POST /healthz HTTP/1.1\r\nHost: x\r\n"
                    "Content-Length: 5\r\n\r\nhello";
  const char *get = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n";
  int ports[2] = {f->h->gw_port, f->port};
  char ans[8192];
  for (int i = 0; i < 2; i++) {
    int fd = h_tcp_connect(ports[i]);
  assert_true(fd >= 0);
    assert_int_equal(write(fd, two, strlen(two)), (ssize_t)strlen(two));
    read_until_closed(fd, 1000, ans, sizeof ans);
    close(fd);
    fd = h_tcp_connect(ports[i]);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, get, strlen(get)), (ssize_t)strlen(get));
    read_until_closed(fd, 3000, ans, sizeof ans);
    close(fd);
    assert_non_null(strstr(ans, "200 OK"));
  }
  assert_int_equal(h_stop_gatewayd(f->h, SIGTERM), 0);
  f->passed = true;
}

/* The HTTP gateway's POSTs take bodies, so the public port cannot close
 * every request with one: two POSTs with bodies in one write, the first
 * held unanswered, must not hang gatewayd's loop either. A guard: http_gw.c
 * reads each body before answering, which lws 4.1 handles without the
 * spin, and this keeps it so. */
static void gw_http_posts_pipelined_no_hang(void **state) {
  struct fixture *f = *state;
  const char *post = "POST /http/v1/send?uid=r4a&device=d HTTP/1.1\r\n"
                     "Host: x\r\nAuthorization: Bearer token\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: 27\r\n\r\n"
                     "{\"to\":\"r4b\",\"content\":\"hi\"}";
  const char *get = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                    "Connection: close\r\n\r\n";
  char two[1024], ans[8192];
  snprintf(two, sizeof two, "%s%s", post, post);
  /* logicd holds the answer back (stopped, its link still up): the POST
   * stays unanswered while the second one waits behind its body */
  assert_int_equal(kill(f->h->logic_pid, SIGSTOP), 0);
  int fd = h_tcp_connect(f->h->gw_port);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, two, strlen(two)), (ssize_t)strlen(two));
  h_sleep_ms(300);
  int fd2 = h_tcp_connect(f->h->gw_port);
  assert_true(fd2 >= 0);
  assert_int_equal(write(fd2, get, strlen(get)), (ssize_t)strlen(get));
  read_until_closed(fd2, 3000, ans, sizeof ans);
  close(fd2);
  assert_non_null(strstr(ans, "200 OK"));
  assert_int_equal(kill(f->h->logic_pid, SIGCONT), 0);
  read_until_closed(fd, 3000, ans, sizeof ans);
  close(fd);
  fd = h_tcp_connect(f->h->gw_port);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, get, strlen(get)), (ssize_t)strlen(get));
  read_until_closed(fd, 3000, ans, sizeof ans);
  close(fd);
  assert_non_null(strstr(ans, "200 OK"));
  assert_int_equal(h_stop_gatewayd(f->h, SIGTERM), 0);
  f->passed = true;
}

#define T(fn, s) cmocka_unit_test_setup_teardown(fn, s, teardown)

static const struct CMUnitTest all_tests[] = {
    T(api_refuses_transfer_encoding, setup_api),
    T(api_pipelined_body_no_hang, setup_api),
    T(gw_body_requests_closed, setup_gw),
    T(gw_http_posts_pipelined_no_hang, setup_gw),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-review4", all_tests,
                COUNT(all_tests), &WS, 0);
}
