/* Metrics and health of gatewayd, end to end: the real daemons, a real
 * websocket client, plain HTTP over loopback sockets, and the Prometheus
 * text checked by a real parser (tests/metrics/check-metrics.py on
 * python3-prometheus-client).
 *
 *   test-metrics [NAME]   runs every test, or only the test called NAME
 *
 * metrics_counters_move  two scrapes of metrics_listen around logins and
 *                        sends: both parse, the agreed names are there, the
 *                        packet counters moved, the gauges tell the truth
 * readyz_follows_logicd  /readyz is 200 with the logicd link up, 503 once
 *                        logicd is stopped, 200 again after its restart
 * healthz_public_port    GET /healthz on the websocket port answers 200
 *                        "ok"; other paths and methods are refused
 * metrics_conn_cap       the operators' port takes at most 64 sockets
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
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mim/codec.h>
#include <mim/common.h>

#include "harness.h"
#include "httpc.h"
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
  if (f->mport <= 0 || h_begin(&f->h, WS, &o, name, 120) != 0) {
    free(f);
    return -1;
  }
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

/* Saves a scrape of /metrics to `file` and returns its text (caller frees). */
static char *scrape(struct fixture *f, const char *file) {
  struct httpc_rsp r;
  assert_int_equal(httpc_request(f->mport, "GET", "/metrics", &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strcasestr(r.head, "text/plain; version=0.0.4"));
  FILE *fp = fopen(file, "w");
  assert_non_null(fp);
  assert_int_equal(fwrite(r.body, 1, r.body_len, fp), r.body_len);
  fclose(fp);
  return r.body;
}

/* The value of the sample line starting with `series` + ' ', or -1. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (strncmp(p, series, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return -1;
}

/* Runs the checker (python3-prometheus-client's parser) with `args`;
 * returns its exit status. */
static int run_checker(const char *args) {
  const char *py = getenv("PYTHON3") ? getenv("PYTHON3") : "/usr/bin/python3";
  const char *chk = getenv("CHECK_METRICS");
  char cmd[4096];
  assert_non_null(chk);
  snprintf(cmd, sizeof cmd, "'%s' '%s' %s", py, chk, args);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *const required[] = {
    "mim_build_info", "process_start_time_seconds", "mim_connections",
    "mim_packets_in_total", "mim_packets_out_total", "mim_kicks_total",
    "mim_logic_link_up", "mim_logic_link_queue_bytes", "mim_ready",
};

/* ---- tests ---- */

SETUP(metrics_counters_move)
static void metrics_counters_move(void **state) {
  struct fixture *f = *state;
  char before[512], after[512], args[4096];
  struct mim_packet rsp, push;

  assert_true(httpc_wait_status(f->mport, "/readyz", 200, 10000));
  snprintf(before, sizeof before, "%s/scrape-1.txt", f->h->root);
  snprintf(after, sizeof after, "%s/scrape-2.txt", f->h->root);
  free(scrape(f, before));

  struct tc *alice = tc_login(f->h, "met-alice", NULL);
  struct tc *bob = tc_login(f->h, "met-bob", NULL);
  for (int i = 0; i < 3; i++) {
    char cmid[32];
    snprintf(cmid, sizeof cmid, "met-%d", i);
    uint64_t id = tc_c2c(alice, "met-bob", "hello", cmid, &rsp);
    mim_packet_finish(&rsp);
    tc_push(bob, MIM_CMD_C2C_PUSH, &push);
    assert_int_equal(push.msg_id, id);
    mim_packet_finish(&push);
  }
  tc_barrier(alice);
  tc_barrier(bob);

  char *text = scrape(f, after);
  /* the gauges read at scrape time */
  assert_true(sample(text, "mim_connections{state=\"authenticated\"}") == 2);
  assert_true(sample(text, "mim_logic_link_up") == 1);
  assert_true(sample(text, "mim_ready") == 1);
  assert_true(sample(text, "mim_packets_in_total{cmd=\"C2C_SEND_REQ\"}") == 3);
  assert_true(sample(text, "mim_packets_out_total{cmd=\"C2C_PUSH\"}") == 3);
  free(text);

  /* a real parser, the agreed names, counters that moved */
  int n = snprintf(args, sizeof args, "'%s'", after);
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
    n += snprintf(args + n, sizeof args - (size_t)n, " --require %s",
                  required[i]);
  snprintf(args + n, sizeof args - (size_t)n,
           " --before '%s'"
           " --increased 'mim_packets_in_total{cmd=\"AUTH_REQ\"}'"
           " --increased 'mim_packets_in_total{cmd=\"C2C_SEND_REQ\"}'"
           " --increased 'mim_packets_out_total{cmd=\"C2C_SEND_RSP\"}'"
           " --increased 'mim_packets_out_total{cmd=\"C2C_PUSH\"}'",
           before);
  assert_int_equal(run_checker(args), 0);
  /* and the checker does fail on what did not move */
  snprintf(args, sizeof args,
           "'%s' --before '%s' --increased 'mim_kicks_total{reason=\"admin\"}'",
           after, before);
  assert_int_equal(run_checker(args), 1);
  /* the URL form, as an operator would run it */
  snprintf(args, sizeof args, "http://127.0.0.1:%d/metrics --require mim_ready",
           f->mport);
  assert_int_equal(run_checker(args), 0);

  tc_free(alice);
  tc_free(bob);
  PASSED(f);
}

SETUP(readyz_follows_logicd)
static void readyz_follows_logicd(void **state) {
  struct fixture *f = *state;

  assert_true(httpc_wait_status(f->mport, "/readyz", 200, 10000));
  assert_int_equal(h_stop_logicd(f->h, SIGTERM), 0);
  assert_true(httpc_wait_status(f->mport, "/readyz", 503, 10000));
  /* still alive, and says why in the metrics */
  assert_int_equal(httpc_status(f->mport, "/healthz"), 200);
  char file[512];
  snprintf(file, sizeof file, "%s/scrape-down.txt", f->h->root);
  char *text = scrape(f, file);
  assert_true(sample(text, "mim_logic_link_up") == 0);
  assert_true(sample(text, "mim_ready") == 0);
  free(text);

  assert_int_equal(h_start_logicd(f->h), 0);
  assert_true(httpc_wait_status(f->mport, "/readyz", 200, 15000));
  PASSED(f);
}

SETUP(healthz_public_port)
static void healthz_public_port(void **state) {
  struct fixture *f = *state;
  struct httpc_rsp r;

  assert_int_equal(httpc_request(f->h->gw_port, "GET", "/healthz", &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "ok\n");
  free(r.body);
  /* nothing else is served on the public port, metrics least of all */
  assert_int_equal(httpc_status(f->h->gw_port, "/metrics"), 404);
  assert_int_equal(httpc_status(f->h->gw_port, "/readyz"), 404);
  /* the operators' port: known paths, GET only */
  assert_int_equal(httpc_status(f->mport, "/nope"), 404);
  assert_int_equal(httpc_request(f->mport, "POST", "/metrics", &r), 0);
  assert_int_equal(r.status, 405);
  free(r.body);
  /* the websocket path still works beside it */
  struct tc *c = tc_login(f->h, "met-carol", NULL);
  tc_free(c);
  PASSED(f);
}

/* The operators' port holds at most 64 sockets (gwmetrics.c sets httpd's
 * conns_max), idle or not: a flood of them is refused at accept and cannot take the
 * gateway's descriptors, and every closed one is counted out again. */
SETUP(metrics_conn_cap)
static void metrics_conn_cap(void **state) {
  struct fixture *f = *state;
  enum { CAP = 64 };
  int fds[CAP];

  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < CAP; i++) {
      struct sockaddr_in a = {.sin_family = AF_INET,
                              .sin_port = htons(f->mport)};
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      fds[i] = socket(AF_INET, SOCK_STREAM, 0);
      assert_true(fds[i] >= 0);
      assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
    }
    usleep(300 * 1000); /* the daemon accepts them all */
    assert_int_equal(httpc_status(f->mport, "/healthz"), -1);
    /* clients are not affected */
    struct tc *c = tc_login(f->h, "met-dave", NULL);
    tc_free(c);
    for (int i = 0; i < CAP; i++)
      close(fds[i]);
    assert_true(httpc_wait_status(f->mport, "/healthz", 200, 5000));
  }
  /* sequential scrapes never run into the cap: nothing leaks */
  for (int i = 0; i < 3 * CAP; i++)
    assert_int_equal(httpc_status(f->mport, "/readyz"), 200);
  PASSED(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_##fn, teardown)

static const struct CMUnitTest all_tests[] = {
    T(metrics_counters_move),
    T(readyz_follows_logicd),
    T(healthz_public_port),
    T(metrics_conn_cap),
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv) {
  return h_main(argc, argv, "integration-metrics", all_tests, COUNT(all_tests),
                &WS, 0);
}
